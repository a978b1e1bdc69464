//! `qwen3-sft quantize`: a base model saved in the bitsandbytes 4-bit form transformers writes
//! for QLoRA (`from_pretrained(..., quantization_config=BitsAndBytesConfig(load_in_4bit=True,
//! bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=bfloat16))`
//! then `save_pretrained`): the same tensors byte for byte, `quantization_config` in config.json,
//! loadable by transformers and by every command here. The `*-bnb-4bit` checkpoints people
//! download have this form; it is a quarter of the bf16 size for the linears.
use crate::model::{self, weights, ModelSpec, Quantization};
use crate::output;
use anyhow::{Context, Result};
use std::path::Path;

/// The marker kind of a quantized model directory.
const KIND: &str = "quantize";

/// Opens `spec` with NF4 linears and saves it to `out` (a new or empty directory, or with
/// `overwrite` an earlier quantize's), written under a temporary name and renamed.
pub fn quantize_model(spec: &ModelSpec, out: &Path, overwrite: bool) -> Result<()> {
    let spec = ModelSpec {
        quantization: Some(Quantization::Nf4),
        ..spec.clone()
    };
    anyhow::ensure!(
        spec.adapter.is_none(),
        "quantize takes a base model only: merge the adapter first (qwen3-sft merge), or train QLoRA on the quantized base"
    );
    let resolved = model::open::resolve(&spec)?;
    if let Some(base) = resolved.dir() {
        output::check_apart(out, &[("the base model", base)])?;
    }
    output::check_dir(out, KIND, overwrite)?;
    let opened = resolved.load()?;
    weights::write_dir_atomically(out, |tmp| {
        let side = opened.side_files();
        opened.model.write_nf4(tmp, side.as_deref())?;
        output::mark(tmp, KIND)
    })
    .with_context(|| format!("cannot save the quantized model to {}", out.display()))
}
