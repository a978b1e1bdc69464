//! `qwen3-sft merge`: a LoRA adapter folded into its base model, written as an HF directory.
use super::args::ModelArgs;
use crate::infer::merge_adapter;
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// Base model and adapter (--adapter is required); --dtype is the merged model's stored dtype
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output directory (written under a temporary name, then renamed into place)
    #[arg(long)]
    pub output: PathBuf,
    /// Replace an earlier merge in --output (never a directory merge did not write)
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(args: &MergeArgs) -> Result<()> {
    let spec = args.model.spec()?;
    let adapter = spec
        .adapter
        .clone()
        .context("--adapter DIR is required: the peft adapter to merge")?;
    merge_adapter(&spec, &args.output, args.overwrite)?;
    println!(
        "merged {} into {} -> {}",
        adapter.display(),
        args.model.model,
        args.output.display()
    );
    Ok(())
}
