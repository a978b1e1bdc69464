//! The safetensors form transformers gives a bitsandbytes 4-bit model: what `save_pretrained`
//! writes for a model loaded with `BitsAndBytesConfig(load_in_4bit=True,
//! bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
//! bnb_4bit_use_double_quant=True)` (transformers 5.23 with bitsandbytes 0.50.2:
//! bitsandbytes/functional.py `QuantState.as_dict(packed=True)`, `pack_dict_to_tensor`).
//!
//! For each quantized linear `<m>` (every Linear but `lm_head`; embeddings and norms stay in the
//! model dtype):
//!
//! | tensor | dtype | shape |
//! |---|---|---|
//! | `<m>.weight` | U8 | [out * in / 2, 1] (two codes per byte, first in the high nibble) |
//! | `<m>.weight.absmax` | U8 | [blocks of 64] |
//! | `<m>.weight.quant_map` | F32 | [16] (the NF4 table) |
//! | `<m>.weight.nested_absmax` | F32 | [blocks of 256 absmax] |
//! | `<m>.weight.nested_quant_map` | F32 | [256] (the signed dynamic map) |
//! | `<m>.weight.quant_state.bitsandbytes__nf4` | U8 | [JSON length] |
//!
//! The last is the UTF-8 bytes of Python's `json.dumps` of `{"quant_type": "nf4", "blocksize":
//! 64, "dtype": "bfloat16", "shape": [out, in], "nested_blocksize": 256, "nested_dtype":
//! "float32", "nested_offset": <offset as a double>}`, in that key order. `config.json` gains the
//! `quantization_config` of [`quantization_config`].
use super::blockwise::dynamic_map;
use super::nf4::{Nf4Weight, BLOCK, NESTED_BLOCK, NF4};
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use tch::{Kind, Tensor};

const STATE_KEY: &str = "quant_state.bitsandbytes__nf4";

/// `config.json`'s `quantization_config`, as transformers writes it for QLoRA's NF4.
pub fn quantization_config() -> Value {
    json!({
        "_load_in_4bit": true,
        "_load_in_8bit": false,
        "bnb_4bit_compute_dtype": "bfloat16",
        "bnb_4bit_quant_storage": "uint8",
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": true,
        "llm_int8_enable_fp32_cpu_offload": false,
        "llm_int8_has_fp16_weight": false,
        "llm_int8_skip_modules": null,
        "llm_int8_threshold": 6.0,
        "load_in_4bit": true,
        "load_in_8bit": false,
        "quant_method": "bitsandbytes"
    })
}

fn dtype_name(k: Kind) -> Result<&'static str> {
    Ok(match k {
        Kind::BFloat16 => "bfloat16",
        Kind::Float => "float32",
        Kind::Half => "float16",
        other => bail!("no bitsandbytes dtype name for {other:?}"),
    })
}

fn dtype_of(name: &str) -> Result<Kind> {
    Ok(match name {
        "bfloat16" => Kind::BFloat16,
        "float32" => Kind::Float,
        "float16" => Kind::Half,
        other => bail!("unknown quant_state dtype `{other}`"),
    })
}

/// Python's `repr` of a double (`json.dumps` writes floats so): the shortest round-trip digits,
/// with an exponent below 1e-4 or from 1e16 on (`5.2e-05`, `1e+16`).
fn python_float(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || (1e-4..1e16).contains(&a) {
        let s = format!("{x:?}"); // Rust's Debug is the shortest round-trip too
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{x:e}"); // `5.2e-5`
    let (mantissa, exp) = s.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    format!(
        "{mantissa}e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

/// The JSON bnb packs into `weight.quant_state.bitsandbytes__nf4`.
pub fn quant_state_json(w: &Nf4Weight) -> Result<String> {
    let shape: Vec<String> = w.shape.iter().map(i64::to_string).collect();
    Ok(format!(
        "{{\"quant_type\": \"nf4\", \"blocksize\": {BLOCK}, \"dtype\": \"{}\", \"shape\": [{}], \
         \"nested_blocksize\": {NESTED_BLOCK}, \"nested_dtype\": \"float32\", \"nested_offset\": {}}}",
        dtype_name(w.dtype)?,
        shape.join(", "),
        python_float(w.offset as f64)
    ))
}

/// The six tensors of one quantized weight, named after the weight (`<m>.weight`).
pub fn nf4_tensors(name: &str, w: &Nf4Weight) -> Result<Vec<(String, Tensor)>> {
    let state = quant_state_json(w)?;
    Ok(vec![
        (name.to_string(), w.packed.shallow_clone()),
        (format!("{name}.absmax"), w.absmax.shallow_clone()),
        (format!("{name}.quant_map"), Tensor::from_slice(&NF4)),
        (
            format!("{name}.nested_absmax"),
            w.nested_absmax.shallow_clone(),
        ),
        (
            format!("{name}.nested_quant_map"),
            w.nested_code.shallow_clone(),
        ),
        (
            format!("{name}.{STATE_KEY}"),
            Tensor::from_slice(state.as_bytes()),
        ),
    ])
}

/// Whether a checkpoint tensor name is part of a quantized weight's state (not a weight itself).
pub fn is_state_tensor(name: &str) -> bool {
    const PARTS: [&str; 5] = [
        ".absmax",
        ".quant_map",
        ".nested_absmax",
        ".nested_quant_map",
        STATE_KEY,
    ];
    PARTS.iter().any(|p| name.ends_with(p))
}

/// One quantized weight back from checkpoint tensors (`name` is `<m>.weight`): only NF4 with
/// blocks of 64 and a nested absmax of blocks of 256, the form this crate writes and QLoRA uses.
pub fn read_nf4(tensors: &HashMap<String, Tensor>, name: &str) -> Result<Nf4Weight> {
    let get = |suffix: &str| {
        let key = if suffix.is_empty() {
            name.to_string()
        } else {
            format!("{name}.{suffix}")
        };
        tensors
            .get(&key)
            .map(Tensor::shallow_clone)
            .with_context(|| format!("4-bit weight {name}: no tensor `{key}`"))
    };
    let bytes = Vec::<u8>::try_from(&get(STATE_KEY)?)
        .with_context(|| format!("{name}.{STATE_KEY} is not a U8 tensor"))?;
    let state: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{name}.{STATE_KEY} is not JSON"))?;
    let field = |k: &str| {
        state
            .get(k)
            .with_context(|| format!("{name}.{STATE_KEY}: no `{k}`"))
    };
    ensure!(
        field("quant_type")?.as_str() == Some("nf4")
            && field("blocksize")?.as_i64() == Some(BLOCK as i64)
            && field("nested_blocksize")?.as_i64() == Some(NESTED_BLOCK as i64),
        "{name}: only NF4 in blocks of 64 with a nested absmax in blocks of 256 is supported, \
         found {state}"
    );
    let shape: Vec<i64> = serde_json::from_value(field("shape")?.clone())
        .with_context(|| format!("{name}.{STATE_KEY}: `shape` is not a list of integers"))?;
    let dtype = dtype_of(field("dtype")?.as_str().unwrap_or(""))
        .with_context(|| format!("{name}.{STATE_KEY}"))?;
    let offset = field("nested_offset")?
        .as_f64()
        .with_context(|| format!("{name}.{STATE_KEY}: `nested_offset` is not a number"))?;
    check_maps(name, &get("quant_map")?, &get("nested_quant_map")?)?;
    let w = Nf4Weight {
        packed: get("")?,
        absmax: get("absmax")?,
        nested_absmax: get("nested_absmax")?,
        nested_code: get("nested_quant_map")?,
        offset: offset as f32,
        shape,
        dtype,
    };
    check_sizes(name, &w)?;
    Ok(w)
}

/// The code maps must be bnb's: dequantization uses NF4 and the dynamic map as constants.
fn check_maps(name: &str, quant_map: &Tensor, nested: &Tensor) -> Result<()> {
    let q = Vec::<f32>::try_from(quant_map).with_context(|| format!("{name}.quant_map"))?;
    ensure!(q == NF4, "{name}.quant_map is not the NF4 table");
    let n = Vec::<f32>::try_from(nested).with_context(|| format!("{name}.nested_quant_map"))?;
    ensure!(
        n == dynamic_map(true),
        "{name}.nested_quant_map is not the signed dynamic map"
    );
    Ok(())
}

fn check_sizes(name: &str, w: &Nf4Weight) -> Result<()> {
    let n = w.numel();
    let ceil = |a: i64, b: usize| (a + b as i64 - 1) / b as i64; // i64::div_ceil is unstable
    let blocks = ceil(n, BLOCK);
    let want = [
        ("", w.packed.numel() as i64, (n + 1) / 2, w.packed.kind()),
        (".absmax", w.absmax.numel() as i64, blocks, w.absmax.kind()),
        (
            ".nested_absmax",
            w.nested_absmax.numel() as i64,
            ceil(blocks, NESTED_BLOCK),
            w.nested_absmax.kind(),
        ),
    ];
    for (suffix, got, expected, kind) in want {
        let want_kind = if suffix == ".nested_absmax" {
            Kind::Float
        } else {
            Kind::Uint8
        };
        let dtype_ok = kind == want_kind;
        ensure!(
            dtype_ok,
            "{name}{suffix} is {kind:?}, bitsandbytes stores it as {want_kind:?}"
        );
        ensure!(
            got == expected,
            "{name}{suffix}: {got} elements for shape {:?} (expected {expected})",
            w.shape
        );
    }
    Ok(())
}
