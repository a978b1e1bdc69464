//! `qwen3-sft train`: config loading, `--dry-run` memory budget, Ctrl-C handling, exit codes.
use super::memory::{estimate, Plan};
use super::{recompute, train, Outcome};
use crate::config::RunConfig;
use crate::model::{self, Config};
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Run configuration (TOML), e.g. configs/qwen3-1.7b-lora.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config value: `--set train.lr=2e-4 --set lora.targets=["q_proj","v_proj"]`.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Continue from the newest complete checkpoint in the output directory, or from DIR.
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    pub resume: Option<Option<PathBuf>>,
    /// Print the memory budget of this configuration and exit (nothing is loaded).
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let cfg = RunConfig::load(&args.config, &args.set)?;
    if args.dry_run {
        print!("{}", dry_run(&cfg)?);
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // First Ctrl-C: finish the current step, save a checkpoint, exit. Second: exit now.
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: saving a checkpoint after this step (Ctrl-C again to quit now)");
    })?;
    match train(&cfg, args.resume.clone(), stop)? {
        Outcome::Finished { final_dir } => {
            println!("done: {}", final_dir.display());
            Ok(())
        }
        Outcome::Interrupted { checkpoint } => {
            eprintln!(
                "interrupted: saved {}; continue with --resume",
                checkpoint.display()
            );
            std::process::exit(130);
        }
    }
}

/// Model shape for the budget without downloading anything: a local directory's config.json, a
/// `random:` preset, or a released Qwen3 id (same shapes as the presets).
fn shape_of(path: &str) -> Result<Config> {
    if let Some(p) = path.strip_prefix("random:") {
        return model::config::preset(p);
    }
    let dir = std::path::Path::new(path);
    if dir.join("config.json").exists() {
        return Config::from_file(&dir.join("config.json"));
    }
    let known = [
        ("qwen3-0.6b", "0.6b"),
        ("qwen3-1.7b", "1.7b"),
        ("qwen3-4b", "4b"),
    ];
    let lower = path.to_lowercase();
    match known.iter().find(|(id, _)| lower.ends_with(id)) {
        Some((_, preset)) => model::config::preset(preset),
        None => bail!("--dry-run needs the model's config.json: `{path}` is neither a local directory nor a known Qwen3 id"),
    }
}

pub fn dry_run(cfg: &RunConfig) -> Result<String> {
    let shape = shape_of(&cfg.model.path)?;
    let kind = model::parse_dtype(&cfg.model.dtype)?;
    // The budget is for the configured device, which need not be present here.
    let device = match cfg.model.device.as_str() {
        "cpu" => tch::Device::Cpu,
        "auto" => tch::Device::cuda_if_available(),
        _ => tch::Device::Cuda(0),
    };
    let t = &cfg.train;
    let lora = cfg.lora_config();
    let layers = shape.num_hidden_layers as usize;
    let recomputed = recompute::plan(layers, t.gradient_checkpointing, t.checkpoint_layers)
        .iter()
        .filter(|&&r| r)
        .count();
    let tokens = t.batch_size * cfg.data.max_length as i64;
    let b = estimate(&Plan {
        cfg: &shape,
        kind,
        lora: lora.as_ref(),
        fp32_state: t.optim_state_dtype == "fp32",
        tokens,
        recomputed_layers: recomputed as i64,
        chunk: t.loss_chunk,
        device,
    });
    Ok(format!(
        "memory budget on {device:?}: {} ({:.3} B parameters, {}), {} x {} tokens, {recomputed} of {layers} layers recomputed\n{}",
        cfg.model.path,
        shape.num_params() as f64 / 1e9,
        cfg.model.dtype,
        t.batch_size,
        cfg.data.max_length,
        b.table()
    ))
}
