//! `qwen3-sft merge`: folds a peft LoRA adapter into its base model and writes a plain HF model
//! directory (peft's `merge_and_unload()` + `save_pretrained`, `tuners/lora/layer.py::merge`):
//! `W + scaling * B @ A` computed in fp32 and stored in the base dtype; every other tensor
//! (q_norm/k_norm included) is written as loaded, and a tied head stays tied (not written twice).
//! Tokenizer and generation files come from the base directory, else from the adapter's.
use super::cli::resolve_dtype;
use crate::model::weights::{self, SIDE_FILES};
use crate::model::{parse_device, read_adapter_config, Config, Model};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// Base HF model directory the adapter was trained on
    #[arg(long)]
    pub model: PathBuf,
    /// peft LoRA adapter directory (adapter_config.json, adapter_model.safetensors)
    #[arg(long)]
    pub adapter: PathBuf,
    /// Output directory (written under a temporary name, then renamed into place)
    #[arg(long)]
    pub output: PathBuf,
    /// Stored dtype of the merged model: auto (the base's), fp32 or bf16
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Where the merge runs: cpu, cuda, auto
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run_merge(args: &MergeArgs) -> Result<()> {
    let cfg = Config::from_file(&args.model.join("config.json"))
        .with_context(|| format!("--model {} is not a model directory", args.model.display()))?;
    let kind = resolve_dtype(&args.dtype, &cfg)?;
    let device = parse_device(&args.device)?;
    merge_adapter(&args.model, &args.adapter, &args.output, kind, device)?;
    println!(
        "merged {} into {} -> {}",
        args.adapter.display(),
        args.model.display(),
        args.output.display()
    );
    Ok(())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Loads `model_dir` in `kind` with the adapter of `adapter_dir` and saves the merged model to `out`.
pub fn merge_adapter(
    model_dir: &Path,
    adapter_dir: &Path,
    out: &Path,
    kind: Kind,
    device: Device,
) -> Result<()> {
    if same_dir(out, model_dir) || same_dir(out, adapter_dir) {
        bail!(
            "--output {} would replace an input directory: choose a new one",
            out.display()
        );
    }
    let (lora, _) = read_adapter_config(adapter_dir)
        .with_context(|| format!("--adapter {}", adapter_dir.display()))?;
    let model = Model::load(model_dir, kind, device, Some(&lora))?;
    model.load_adapter_weights(adapter_dir)?;
    weights::write_dir_atomically(out, |tmp| {
        model.write_hf(tmp, true, Some(model_dir))?;
        for f in SIDE_FILES {
            let (src, dst) = (adapter_dir.join(f), tmp.join(f));
            if src.is_file() && !dst.exists() {
                std::fs::copy(&src, &dst)
                    .with_context(|| format!("cannot copy {}", src.display()))?;
            }
        }
        Ok(())
    })
    .with_context(|| format!("cannot save the merged model to {}", out.display()))?;
    if !out.join("tokenizer.json").is_file() {
        eprintln!(
            "note: neither {} nor {} has tokenizer.json; pass --tokenizer when generating with {}",
            model_dir.display(),
            adapter_dir.display(),
            out.display()
        );
    }
    Ok(())
}
