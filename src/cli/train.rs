//! `qwen3-sft train`: the run config (`--set` overrides), `--dry-run`'s memory budget, `--resume`,
//! Ctrl-C (a checkpoint, then exit 130).
use crate::config::RunConfig;
use crate::train::{memory, train, Outcome, Resume};
use anyhow::Result;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Run configuration (TOML), e.g. configs/qwen3-1.7b-lora.toml
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config value: `--set train.lr=2e-4 --set lora.targets=["q_proj","v_proj"]`
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Continue from the newest complete checkpoint in the output directory, or from DIR
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    pub resume: Option<Option<PathBuf>>,
    /// Print the memory budget of this configuration and exit (nothing is loaded)
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let cfg = RunConfig::load(&args.config, &args.set)?;
    if args.dry_run {
        print!("{}", memory::dry_run(&cfg)?);
        return Ok(());
    }
    let resume = args
        .resume
        .clone()
        .map(|dir| dir.map_or(Resume::Latest, Resume::From));
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
    match train(&cfg, resume, &stop)? {
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
