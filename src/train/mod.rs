//! The training loop (what transformers' `Trainer.train` does for the seed's recipe): encoded data,
//! gradient accumulation normalised by the label tokens of the whole window, AdamW with clipping
//! and a linear schedule, evaluation, checkpoints with exact resume, and logging to the progress
//! bar, `metrics.jsonl` and SwanLab. This is the one module that joins model, data and logging.
pub mod checkpoint;
pub mod cli;
pub mod dataset;
pub mod eval;
pub mod loss;
pub mod memory;
pub mod optim;
pub mod recompute;

use crate::config::RunConfig;
use crate::data::batch::{collate, epoch_batches};
use crate::log::{metrics::MetricsLog, swanlab};
use anyhow::{bail, Context, Result};
use checkpoint::TrainerState;
use dataset::Encoded;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How the run ended.
pub enum Outcome {
    Finished { final_dir: PathBuf },
    Interrupted { checkpoint: PathBuf },
}

/// Runs `qwen3-sft train`. `resume`: `Some(None)` = newest checkpoint in the output directory.
pub fn train(
    cfg: &RunConfig,
    resume: Option<Option<PathBuf>>,
    stop: Arc<AtomicBool>,
) -> Result<Outcome> {
    let t = &cfg.train;
    let setup = dataset::Setup::new(cfg)?;
    let train_set = setup.encode_file(&cfg.data.train_file, "train")?;
    let val_set = match &cfg.data.val_file {
        Some(f) => setup.encode_file(f, "val")?,
        None => vec![],
    };
    if train_set.is_empty() {
        bail!(
            "{}: no sample has a label token left after encoding",
            cfg.data.train_file.display()
        );
    }
    let lengths: Vec<usize> = train_set.iter().map(|e| e.input_ids.len()).collect();
    let batches_per_epoch = lengths.len().div_ceil(t.batch_size as usize);
    let steps_per_epoch = batches_per_epoch.div_ceil(t.grad_accum as usize) as i64;
    let max_steps = t
        .max_steps
        .unwrap_or_else(|| (t.epochs * steps_per_epoch as f64).ceil() as i64);

    let resume_dir = match &resume {
        Some(arg) => Some(checkpoint::find(arg.as_deref(), &t.output_dir)?),
        None => None,
    };
    // SwanLab first: a missing API key fails before minutes of model loading.
    let run = swanlab::Run::start(&cfg.swanlab, &serde_json::to_value(cfg)?)?;
    let model = setup.load_model(resume_dir.as_deref())?;
    let mut opt = setup.optimizer(&model);
    let mut state = TrainerState {
        global_step: 0,
        max_steps,
        epoch: 0,
        batches_done: 0,
        epoch_float: 0.0,
        seed: t.seed,
        method: t.method.clone(),
        base_model: cfg.model.path.clone(),
    };
    if let Some(dir) = &resume_dir {
        state = checkpoint::read_state(dir)?;
        opt.load_state(&checkpoint::read_optimizer(dir)?, state.global_step)?;
        println!(
            "resuming from {} (step {})",
            dir.display(),
            state.global_step
        );
    }
    std::fs::create_dir_all(&t.output_dir)
        .with_context(|| format!("cannot create {}", t.output_dir.display()))?;
    let mut metrics = match resume_dir {
        Some(_) => MetricsLog::resume(&t.output_dir, state.global_step)?,
        None => MetricsLog::create(&t.output_dir)?,
    };
    let recompute = recompute::plan(
        model.net.layers.len(),
        t.gradient_checkpointing,
        t.checkpoint_layers,
    );
    println!(
        "training {} ({}) on {} samples: {} steps, {} per epoch, batch {} x accum {}, {} of {} layers recomputed",
        cfg.model.path,
        t.method,
        train_set.len(),
        max_steps,
        steps_per_epoch,
        t.batch_size,
        t.grad_accum,
        recompute.iter().filter(|&&r| r).count(),
        recompute.len()
    );

    let bar = progress_bar(max_steps, state.global_step);
    let side = setup.side_files();
    let mut window_log = LogWindow::default();
    let mut head_loss = loss::ChunkedLoss::new(t.loss_chunk);
    let result: Result<Outcome> = (|| {
        while state.global_step < max_steps {
            let batches = epoch_batches(
                &lengths,
                t.batch_size as usize,
                t.shuffle,
                t.seed,
                state.epoch,
            );
            if state.batches_done >= batches.len() {
                state.epoch += 1;
                state.batches_done = 0;
                continue;
            }
            let end = (state.batches_done + t.grad_accum as usize).min(batches.len());
            let window = &batches[state.batches_done..end];
            let started = Instant::now();
            let (loss_sum, labels, tokens) = accumulate(
                &model,
                &train_set,
                window,
                &recompute,
                t,
                state.global_step,
                &mut head_loss,
            );
            let n = labels.max(1) as f64;
            let step_loss = loss_sum / n;
            if !step_loss.is_finite() {
                opt.zero_grad();
                let last = checkpoint::list(&t.output_dir)
                    .pop()
                    .map(|(_, p)| p.display().to_string());
                bail!(
                    "loss is {step_loss} at step {}; stopping. Last good checkpoint: {}",
                    state.global_step + 1,
                    last.unwrap_or_else(|| "none yet".into())
                );
            }
            let grad_norm = optim::clip_grad_norm(&opt.params, t.max_grad_norm);
            let lr = optim::linear_lr(t.lr, state.global_step, t.warmup_steps, max_steps);
            opt.step(lr);
            opt.zero_grad();
            state.global_step += 1;
            state.batches_done = end;
            state.epoch_float = state.epoch as f64 + end as f64 / batches.len() as f64;
            window_log.add(step_loss, tokens, started.elapsed().as_secs_f64());
            let step = state.global_step;
            bar.set_position(step as u64);
            bar.set_message(format!(
                "loss {step_loss:.4} lr {lr:.2e} {:.0} tok/s {}",
                window_log.tokens_per_sec(),
                memory::rss_string()
            ));
            if step % t.logging_steps == 0 || step == max_steps {
                let values = [
                    ("train/loss", window_log.mean_loss()),
                    ("train/grad_norm", grad_norm),
                    ("train/learning_rate", lr), // the rate this step used, as the Trainer logs it
                    ("train/epoch", state.epoch_float),
                    ("train/tokens_per_sec", window_log.tokens_per_sec()),
                ];
                log_values(&mut metrics, run.as_ref(), step, &values)?;
                say(&bar, format!("step {step}: {}", fmt_values(&values)));
                window_log = LogWindow::default();
            }
            if !val_set.is_empty() && (step % t.eval_steps == 0 || step == max_steps) {
                let (eval_loss, _) =
                    eval::eval_loss(&model.net, &val_set, t.batch_size, t.loss_chunk);
                log_values(
                    &mut metrics,
                    run.as_ref(),
                    step,
                    &[("eval/loss", eval_loss)],
                )?;
                say(&bar, format!("step {step}: eval/loss {eval_loss:.4}"));
            }
            let interrupted = stop.load(Ordering::SeqCst);
            if step % t.save_steps == 0 || interrupted {
                let saved = checkpoint::save(&t.output_dir, &model, &opt, &state, side.as_deref())?;
                checkpoint::prune(&t.output_dir, t.save_total_limit)?;
                if interrupted {
                    return Ok(Outcome::Interrupted {
                        checkpoint: saved.dir,
                    });
                }
            }
        }
        bar.finish();
        let final_dir = t.output_dir.join("final");
        if model.lora.is_some() {
            model.save_adapter(&final_dir, &cfg.model.path, side.as_deref())?;
        } else {
            model.save_hf(&final_dir, false, side.as_deref())?;
        }
        if t.save_steps > 0 && state.global_step % t.save_steps != 0 {
            checkpoint::save(&t.output_dir, &model, &opt, &state, side.as_deref())?;
            checkpoint::prune(&t.output_dir, t.save_total_limit)?;
        }
        if let Some(run) = run.as_ref() {
            setup.log_predictions(&model, cfg, run, state.global_step)?;
        }
        Ok(Outcome::Finished { final_dir })
    })();
    finish(&t.output_dir, run, &result)?;
    result
}

/// Forward and backward over one accumulation window. The loss is normalised by the label tokens
/// of the whole window (transformers' `num_items_in_batch`), not averaged per micro-batch.
fn accumulate(
    model: &crate::model::Model,
    data: &[Encoded],
    window: &[Vec<usize>],
    recompute: &[bool],
    t: &crate::config::TrainCfg,
    step: i64,
    head_loss: &mut loss::ChunkedLoss,
) -> (f64, i64, i64) {
    let device = model.device();
    let batches: Vec<_> = window
        .iter()
        .map(|idx| {
            let samples: Vec<(&[i64], &[i64])> = idx
                .iter()
                .map(|&i| (data[i].input_ids.as_slice(), data[i].labels.as_slice()))
                .collect();
            collate(&samples, device)
        })
        .collect();
    let labels: i64 = batches.iter().map(|b| b.label_tokens).sum();
    let tokens: i64 = batches.iter().map(|b| b.tokens).sum();
    let scale = 1.0 / labels.max(1) as f64;
    let mut loss_sum = 0.0;
    for (micro, b) in batches.iter().enumerate() {
        let shifted = loss::shift_labels(&b.labels);
        let seed = t
            .seed
            .wrapping_mul(7_919)
            .wrapping_add(step * 64 + micro as i64);
        loss_sum += recompute::forward_backward(
            &model.net,
            &b.ids,
            b.padding.as_ref(),
            &shifted,
            scale,
            recompute,
            seed,
            head_loss,
        );
    }
    (loss_sum, labels, tokens)
}

#[derive(Default)]
struct LogWindow {
    losses: Vec<f64>,
    tokens: i64,
    seconds: f64,
}

impl LogWindow {
    fn add(&mut self, loss: f64, tokens: i64, seconds: f64) {
        self.losses.push(loss);
        self.tokens += tokens;
        self.seconds += seconds;
    }
    fn mean_loss(&self) -> f64 {
        self.losses.iter().sum::<f64>() / self.losses.len().max(1) as f64
    }
    fn tokens_per_sec(&self) -> f64 {
        self.tokens as f64 / self.seconds.max(1e-9)
    }
}

fn fmt_values(values: &[(&str, f64)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k} {v:.4e}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn log_values(
    metrics: &mut MetricsLog,
    run: Option<&swanlab::Run>,
    step: i64,
    values: &[(&str, f64)],
) -> Result<()> {
    metrics.log(step, values)?;
    if let Some(run) = run {
        run.scalars(step, values);
    }
    Ok(())
}

/// A log line above the bar in a terminal, or plainly on stdout when the bar is hidden (a pipe or
/// a file), where indicatif would drop it.
fn say(bar: &indicatif::ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

fn progress_bar(total: i64, pos: i64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total as u64);
    let style = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_position(pos as u64);
    bar
}

/// Plots the loss curves and closes the SwanLab run with the state that matches the outcome.
fn finish(out_dir: &Path, run: Option<swanlab::Run>, result: &Result<Outcome>) -> Result<()> {
    let metrics = out_dir.join("metrics.jsonl");
    if metrics.exists() {
        if let Err(e) = crate::log::plot_losses(&metrics, &out_dir.join("loss.png")) {
            eprintln!("warning: could not plot {}: {e:#}", metrics.display());
        }
    }
    if let Some(run) = run {
        let state = match result {
            Ok(Outcome::Finished { .. }) => swanlab::FinishState::Finished,
            Ok(Outcome::Interrupted { .. }) => swanlab::FinishState::Aborted,
            Err(e) => swanlab::FinishState::Crashed(format!("{e:#}")),
        };
        run.finish(state)?;
    }
    Ok(())
}
