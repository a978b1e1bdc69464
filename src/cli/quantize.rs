//! `qwen3-sft quantize`: a base model in bitsandbytes' 4-bit NF4 form, as transformers saves it.
use super::args::ModelArgs;
use crate::infer::quantize_model;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// Base model (--dtype is the dtype it is quantized from and computes in; bf16 for QLoRA)
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output directory (written under a temporary name, then renamed into place)
    #[arg(long)]
    pub output: PathBuf,
    /// Replace an earlier quantize in --output (never a directory quantize did not write)
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(args: &QuantizeArgs) -> Result<()> {
    let spec = args.model.spec()?;
    quantize_model(&spec, &args.output, args.overwrite)?;
    println!(
        "quantized {} to NF4 (bitsandbytes 4-bit, double quantization) -> {}",
        args.model.model,
        args.output.display()
    );
    Ok(())
}
