//! `qwen3-sft download`: a model into the ModelScope or Hugging Face cache; prints its directory.
use crate::hub::{resolve_model, Source};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct DownloadArgs {
    /// Hub id (Qwen/Qwen3-1.7B) or a local directory
    #[arg(long)]
    pub model: String,
    /// Hub serving the id: modelscope or hf
    #[arg(long, default_value = "modelscope")]
    pub source: Source,
}

pub fn run(args: &DownloadArgs) -> Result<()> {
    println!("{}", resolve_model(&args.model, args.source)?.display());
    Ok(())
}
