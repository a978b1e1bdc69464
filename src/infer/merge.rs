//! Merging a peft LoRA adapter into its base model, written as a plain HF model directory (peft's
//! `merge_and_unload()` + `save_pretrained`, `tuners/lora/layer.py::merge`): `W + scaling * B @ A`
//! computed in fp32 and stored in the base dtype; every other tensor (q_norm/k_norm included) is
//! written as loaded, and a tied head stays tied (not written twice). Tokenizer and generation
//! files come from the base directory, else from the adapter's.
use crate::model::weights::{self, SIDE_FILES};
use crate::model::{self, Base, ModelSpec};
use crate::output;
use anyhow::{Context, Result};
use std::path::Path;

/// The marker kind of a merged model directory.
const KIND: &str = "merge";

/// Opens `spec` (a base model plus `spec.adapter`) and saves the merged model to `out`: a new or
/// empty directory, or (with `overwrite`) an earlier merge's; never an input or around one.
pub fn merge_adapter(spec: &ModelSpec, out: &Path, overwrite: bool) -> Result<()> {
    let adapter = spec.adapter.as_deref().context("merge needs an adapter")?;
    let resolved = model::open::resolve(spec)?;
    let mut inputs = vec![("the adapter", adapter)];
    if let Some(base) = resolved.dir() {
        inputs.push(("the base model", base));
    }
    output::check_apart(out, &inputs)?;
    output::check_dir(out, KIND, overwrite)?;
    let opened = resolved.load()?;
    weights::write_dir_atomically(out, |tmp| {
        let side = opened.side_files();
        opened.model.write_hf(tmp, true, side.as_deref())?;
        output::mark(tmp, KIND)?;
        for f in SIDE_FILES {
            let (src, dst) = (adapter.join(f), tmp.join(f));
            if src.is_file() && !dst.exists() {
                std::fs::copy(&src, &dst)
                    .with_context(|| format!("cannot copy {}", src.display()))?;
            }
        }
        Ok(())
    })
    .with_context(|| format!("cannot save the merged model to {}", out.display()))?;
    if !out.join("tokenizer.json").is_file() {
        let base = match &opened.base {
            Base::Dir(d) => d.display().to_string(),
            Base::Random(p) => format!("random:{p}"),
        };
        eprintln!(
            "note: neither {base} nor {} has tokenizer.json; pass --tokenizer when generating with {}",
            adapter.display(),
            out.display()
        );
    }
    Ok(())
}
