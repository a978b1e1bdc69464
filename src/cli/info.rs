//! `qwen3-sft info DIR`: a model directory's config and parameter count.
use crate::model::Config;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// HF model directory
    pub model: PathBuf,
}

pub fn run(args: &InfoArgs) -> Result<()> {
    let cfg = Config::from_file(&args.model.join("config.json"))?;
    println!("{cfg:#?}\nparameters: {}", cfg.num_params());
    Ok(())
}
