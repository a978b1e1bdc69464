//! `qwen3-sft train`: the run config (`--set` overrides), `--dry-run`'s memory budget, `--resume`
//! and `--overwrite`, and signals: the first SIGINT (Ctrl-C), SIGTERM (a scheduler's preemption,
//! `kill`, k8s) or SIGHUP (a closed terminal) finishes the step, saves a checkpoint and exits with
//! 130; a second one while that checkpoint is written waits for it, a second one before that exits
//! at once without a checkpoint (nothing half-written is left: saves go through a temporary
//! directory, and one left by a killed process is removed at the next start).
use crate::config::RunConfig;
use crate::train::{checkpoint, dist, memory, train, Outcome, Resume, Start};
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
    /// Start over in an output directory that holds an earlier run (its checkpoints, final/ and
    /// metrics are deleted; files it did not write are an error)
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
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
    let start = match (&args.resume, args.overwrite) {
        (Some(dir), _) => Start::Resume(dir.clone().map_or(Resume::Latest, Resume::From)),
        (None, true) => Start::Overwrite,
        (None, false) => Start::New,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if !flag.swap(true, Ordering::SeqCst) {
            eprintln!(
                "\nsignal: saving a checkpoint after this step (again to quit now without one)"
            );
        } else if checkpoint::saving() {
            eprintln!("\nsignal: a checkpoint is being written; exiting once it is complete");
        } else {
            eprintln!("\nsecond signal: exiting now without a checkpoint");
            // SAFETY: `_exit` ends the process without running destructors or atexit handlers,
            // which would race libtorch's threads mid-step (an internal assert, seen with exit).
            unsafe { libc::_exit(130) };
        }
    })?;
    let outcome = train(&cfg, start, &stop).inspect_err(dist::tell_torchrun)?;
    match outcome {
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
