//! The Trainer (what transformers' `Trainer.train` does for the seed's recipe): state plus `step`,
//! `evaluate`, `save` and `finish`, and a loop that reads top to bottom. Gradient accumulation is
//! normalised by the label tokens of the whole window, AdamW clips and follows a linear schedule,
//! checkpoints resume exactly, and values go to the progress bar, `metrics.jsonl` and SwanLab.
use super::checkpoint::{self, TrainerState};
use super::dist::{zero, World};
use super::optimizer::Optimizer;
use super::progress::{LogWindow, Progress};
use super::{eval, loss, predict, recompute, setup};
use crate::config::{Method, RunConfig};
use crate::data::encode::Encoded;
use crate::data::tokenizer::QwenTokenizer;
use crate::log::{metrics::MetricsLog, swanlab};
use crate::model::{self, Opened};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// How a run treats its output directory.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// A new run: the output directory must be new, empty, or hold no earlier run.
    New,
    /// A new run replacing an earlier run in the output directory (`--overwrite`): its
    /// checkpoints, `final/` and logs are deleted first; files it did not write are kept.
    Overwrite,
    /// Continue an earlier run (`--resume`).
    Resume(Resume),
}

/// Where `--resume` continues from.
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// The newest complete checkpoint in the run's output directory.
    Latest,
    /// A checkpoint directory, or a run directory whose newest checkpoint is taken.
    From(PathBuf),
}

/// How the run ended.
pub enum Outcome {
    Finished { final_dir: PathBuf },
    Interrupted { checkpoint: PathBuf },
}

/// Runs `qwen3-sft train`: until `max_steps`, or until `stop` is raised (then a checkpoint).
pub fn train(cfg: &RunConfig, start: Start, stop: &AtomicBool) -> Result<Outcome> {
    let mut trainer = Trainer::new(cfg, start)?;
    let result = trainer.run(stop);
    trainer.finish(&result)?;
    result
}

pub struct Trainer<'a> {
    cfg: &'a RunConfig,
    opened: Opened,
    tokenizer: QwenTokenizer,
    train_set: Vec<Encoded>,
    val_set: Vec<Encoded>,
    opt: Optimizer,
    state: TrainerState,
    recompute: Vec<bool>,
    head_loss: loss::ChunkedLoss,
    /// Rank 0's (other ranks of a distributed job log nothing).
    metrics: Option<MetricsLog>,
    run: Option<swanlab::Run>,
    world: World,
    /// Gradient synchronisation over ranks (none in a world of one).
    sync: Option<zero::Sync>,
    /// The epoch whose batch order `batches` holds (computed once per epoch).
    order: Option<(i64, Vec<Vec<usize>>)>,
    window: LogWindow,
    /// This rank's tokens, seconds and steps so far (the end-of-run report).
    speed: (i64, f64, i64),
    progress: Progress,
}

mod step;

impl<'a> Trainer<'a> {
    fn run(&mut self, stop: &AtomicBool) -> Result<Outcome> {
        let t = &self.cfg.train; // the config outlives the trainer: no borrow of `self`
        while self.state.global_step < self.state.max_steps {
            self.step()?;
            let step = self.state.global_step;
            let last = step == self.state.max_steps;
            if step % t.logging_steps.get() == 0 || last {
                self.log_train()?;
            }
            if !self.val_set.is_empty() && (step % t.eval_steps.get() == 0 || last) {
                self.evaluate()?;
            }
            // a signal that reached some ranks stops them all, at the same step
            let interrupted = self.world.any(stop.load(Ordering::SeqCst))?;
            if step % t.save_steps.get() == 0 || interrupted {
                let dir = self.save()?;
                if interrupted {
                    return Ok(Outcome::Interrupted { checkpoint: dir });
                }
            }
        }
        self.report()?;
        self.save_final()
    }

    /// Rank 0 prints each rank's throughput, peak memory and time waiting on collectives, and
    /// the totals.
    fn report(&mut self) -> Result<()> {
        let (rank, n) = (self.world.rank, self.world.size);
        if n == 1 {
            return Ok(());
        }
        let mut mine = vec![0.0; 4 * n];
        let (_, peak) = super::memory::rss_bytes();
        let waited = self.sync.as_ref().map_or(0.0, |s| s.waited().as_secs_f64());
        mine[4 * rank] = self.speed.0 as f64 / self.speed.1.max(1e-9);
        mine[4 * rank + 1] = peak as f64 / 1e9;
        mine[4 * rank + 2] = self.opt.state_bytes() as f64 / 1e9;
        mine[4 * rank + 3] = waited * 1e3 / self.speed.2.max(1) as f64;
        let all = self.world.sum(&mine)?;
        if self.world.is_main() {
            for r in 0..n {
                let v = &all[4 * r..4 * r + 4];
                println!(
                    "rank {r}: {:.0} tokens/s, peak RSS {:.2} GB, optimizer state {:.3} GB, {:.1} ms per step waiting on collectives",
                    v[0], v[1], v[2], v[3]
                );
            }
            let tps: f64 = (0..n).map(|r| all[4 * r]).sum();
            let gb: f64 = (0..n).map(|r| all[4 * r + 1]).sum();
            println!("all {n} ranks: {tps:.0} tokens/s, peak RSS {gb:.2} GB in total");
        }
        Ok(())
    }

    /// Loads everything a run needs. The cheap checks come first (model located, data encoded, a
    /// resumed checkpoint compared with this run), then SwanLab (a missing API key fails before
    /// minutes of weight loading), then the weights.
    pub fn new(cfg: &'a RunConfig, start: Start) -> Result<Self> {
        let t = &cfg.train;
        let mut world = World::from_env()?;
        let resume = match start {
            Start::Resume(r) => Some(r),
            Start::New | Start::Overwrite if world.is_main() => {
                checkpoint::prepare_run_dir(&t.output_dir, start == Start::Overwrite)?;
                None
            }
            Start::New | Start::Overwrite => None,
        };
        let base = setup::base_spec(cfg, &world);
        let resolved = model::open::resolve(&base)?;
        let tokenizer = QwenTokenizer::load(resolved.tokenizer_file()?)?;
        setup::check_limits(cfg, &resolved.config, &tokenizer)?;
        let (train_set, val_set) = setup::encode_sets(cfg, &tokenizer)?;
        let spe = setup::steps_per_epoch(train_set.len(), cfg, world.size);
        let max_steps = t
            .max_steps
            .map_or((t.epochs.get() * spe as f64).ceil() as i64, |s| s.get());
        let mut state = TrainerState::fresh(cfg, &resolved.config, max_steps)?;
        let resume_dir = match resume {
            Some(Resume::Latest) => Some(checkpoint::find(&t.output_dir)?),
            Some(Resume::From(dir)) => Some(checkpoint::find(&dir)?),
            None => None,
        };
        if let Some(dir) = &resume_dir {
            state = checkpoint::resumed(dir, &state)?;
        }
        world.join(&cfg.distributed, base.device.resolve()?.is_cuda())?;
        let run = match world.is_main() {
            true => swanlab::Run::start(&cfg.swanlab, &serde_json::to_value(cfg)?)?,
            false => None,
        };
        let opened = match &resume_dir {
            Some(dir) => model::open(&setup::resume_spec(cfg, base, dir))?,
            None => resolved.load()?,
        };
        let (mut opt, sync) = setup::optimizer(&opened.model, cfg, &world)?;
        if let Some(dir) = &resume_dir {
            opt.load_state(&checkpoint::read_optimizer(dir)?, state.global_step)?;
            if world.is_main() {
                println!(
                    "resuming from {} (step {})",
                    dir.display(),
                    state.global_step
                );
            }
        }
        let metrics = match world.is_main() {
            true => Some(setup::run_dir(
                &t.output_dir,
                resume_dir.is_some(),
                state.global_step,
            )?),
            false => None,
        };
        let layers = opened.model.net.layers.len();
        let checkpoint_layers = t.checkpoint_layers.map(|n| n.get());
        let recompute = recompute::plan(layers, t.gradient_checkpointing, checkpoint_layers);
        if world.is_main() {
            println!(
                "training {} ({}) on {} samples: {} steps, {spe} per epoch, batch {} x accum {} x {} rank(s), {} of {layers} layers recomputed",
                cfg.model.path, t.method, train_set.len(), state.max_steps, t.batch_size.get(),
                t.grad_accum.get(), world.size, recompute.iter().filter(|&&r| r).count(),
            );
        }
        Ok(Trainer {
            progress: Progress::new(state.max_steps, state.global_step, !world.is_main()),
            head_loss: loss::ChunkedLoss::new(t.loss_chunk.get()),
            cfg,
            opened,
            tokenizer,
            train_set,
            val_set,
            opt,
            state,
            recompute,
            metrics,
            run,
            world,
            sync,
            order: None,
            window: LogWindow::default(),
            speed: (0, 0.0, 0),
        })
    }

    fn log_train(&mut self) -> Result<()> {
        let w = std::mem::take(&mut self.window);
        let values = [
            ("train/loss", w.mean_loss()),
            ("train/grad_norm", w.grad_norm),
            ("train/learning_rate", w.lr), // the rate this step used, as the Trainer logs it
            ("train/epoch", self.state.epoch_float),
            ("train/tokens_per_sec", w.tokens_per_sec()),
        ];
        self.log(&values)
    }

    /// `eval/loss` over the validation set (the mean over all its label tokens; each rank
    /// scores every `world`-th sample).
    pub fn evaluate(&mut self) -> Result<f64> {
        let t = &self.cfg.train;
        let net = &self.opened.model.net;
        let (rank, size) = (self.world.rank, self.world.size);
        let mine: Vec<_> = self
            .val_set
            .iter()
            .skip(rank)
            .step_by(size)
            .cloned()
            .collect();
        let (mean, n) = eval::eval_loss(net, &mine, t.batch_size.get(), t.loss_chunk.get());
        let all = self.world.sum(&[mean * n as f64, n as f64])?;
        let loss = all[0] / all[1].max(1.0);
        let mut values = vec![("eval/loss".to_string(), loss)];
        let model = &self.opened.model;
        let base = match &self.opened.base {
            model::open::Base::Dir(d) => Some(d.as_path()),
            model::open::Base::Random(_) => None,
        };
        let answered = predict::eval_generate(model, base, &self.tokenizer, self.cfg, &self.world)?;
        if let Some(p) = &answered {
            values.extend(p.values.iter().cloned());
        }
        let values: Vec<(&str, f64)> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.log(&values)?;
        if let Some(p) = answered.filter(|_| self.world.is_main()) {
            let step = self.state.global_step;
            predict::log_texts(&p, self.run.as_ref(), step, step == self.state.max_steps);
        }
        Ok(loss)
    }

    fn log(&mut self, values: &[(&str, f64)]) -> Result<()> {
        let step = self.state.global_step;
        if let Some(m) = &mut self.metrics {
            m.log(step, values)?;
        }
        if let Some(run) = &self.run {
            run.scalars(step, values);
        }
        self.progress.say(step, values);
        Ok(())
    }

    /// Writes `checkpoint-{step}/` (every rank its optimizer shard) and prunes beyond
    /// `save_total_limit`.
    pub fn save(&mut self) -> Result<PathBuf> {
        let t = &self.cfg.train;
        let side = self.opened.side_files();
        let sharded = self.sync.as_ref().is_some_and(zero::Sync::sharded);
        let saved = checkpoint::save(
            &t.output_dir,
            &self.opened.model,
            &self.opt,
            &self.state,
            side.as_deref(),
            &self.world,
            sharded,
        )?;
        if self.world.is_main() {
            checkpoint::prune(&t.output_dir, t.save_total_limit.map(|n| n.get() as usize))?;
        }
        Ok(saved)
    }

    /// `final/` (the model or the adapter) and the last checkpoint.
    fn save_final(&mut self) -> Result<Outcome> {
        self.progress.finish();
        let cfg = self.cfg;
        let final_dir = cfg.train.output_dir.join("final");
        let side = self.opened.side_files();
        let model = &self.opened.model;
        let written = match self.world.is_main() {
            true => checkpoint::while_saving(|| match cfg.train.method {
                Method::Lora => model.save_adapter(&final_dir, &cfg.model.path, side.as_deref()),
                Method::Full => model.save_hf(&final_dir, false, side.as_deref()),
            }),
            false => Ok(()),
        };
        self.world.all_ok(written, "writing final/")?;
        if self.state.global_step % cfg.train.save_steps.get() != 0 {
            self.save()?;
        }
        Ok(Outcome::Finished { final_dir })
    }

    /// Plots the loss curves and closes the SwanLab run with the state that matches the outcome.
    pub fn finish(&mut self, result: &Result<Outcome>) -> Result<()> {
        let out_dir: &Path = &self.cfg.train.output_dir;
        let metrics = out_dir.join("metrics.jsonl");
        if self.world.is_main() && metrics.exists() {
            if let Err(e) = crate::log::plot_losses(&metrics, &out_dir.join("loss.png")) {
                eprintln!("warning: could not plot {}: {e:#}", metrics.display());
            }
        }
        if let Some(run) = self.run.take() {
            let state = match result {
                Ok(Outcome::Finished { .. }) => swanlab::FinishState::Finished,
                Ok(Outcome::Interrupted { .. }) => swanlab::FinishState::Aborted,
                Err(e) => swanlab::FinishState::Crashed(format!("{e:#}")),
            };
            run.finish(state)?;
        }
        Ok(())
    }
}
