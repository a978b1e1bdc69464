//! `qwen3-sft export --format gguf`: a Qwen3 model, a LoRA adapter merged in memory, as one GGUF
//! file llama.cpp (and Ollama, LM Studio) load, the same file llama.cpp's `convert_hf_to_gguf.py`
//! writes for the merged HF directory: its `Qwen3Model` (`conversion/qwen.py`) on `TextModel`
//! (`conversion/base.py`: `set_gguf_parameters`, `prepare_tensors`, `prepare_metadata`) and
//! gguf-py's `Metadata` (`gguf-py/gguf/metadata.py`: the sampling defaults, name, size label).
//!
//! Tensors get llama.cpp's names (`token_embd`, `blk.N.attn_q`, ...; a tied head writes no
//! `output.weight`, llama.cpp then reads `token_embd`); 1-D tensors and norms stay F32, the rest
//! take `--outtype` (Q8_0 falls back to F16 for rows that are not whole blocks, as the converter
//! does). The converter's file-name and model-card heuristics (`general.basename`, `finetune`,
//! `version`, `license`...) are not reproduced: `general.name` is `--name` or the directory's name.
//! Everything is checked before a weight is read, and the file is written under a temporary name
//! and renamed: an error leaves no file behind.
use super::gguf::{GgmlType, Gguf, TensorEntry, Value};
use super::gguf_vocab::tokenizer_kv;
use super::modelfile;
use crate::data::chat::QWEN3_CHAT_TEMPLATE;
use crate::model::{self, spec::QWEN3_GENERATION_CONFIG, Base, Model, ModelSpec};
use crate::output;
use anyhow::{bail, Context, Result};
use serde_json::Value as Json;
use std::io::Read;
use std::path::{Path, PathBuf};

/// `--outtype`: the type of the 2-D weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    Bf16,
    F16,
    Q8_0,
}

impl std::str::FromStr for OutType {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bf16" => Ok(OutType::Bf16),
            "f16" => Ok(OutType::F16),
            "q8_0" => Ok(OutType::Q8_0),
            other => bail!("unknown --outtype `{other}` (bf16, f16, q8_0)"),
        }
    }
}

impl OutType {
    fn ggml(self) -> GgmlType {
        match self {
            OutType::Bf16 => GgmlType::Bf16,
            OutType::F16 => GgmlType::F16,
            OutType::Q8_0 => GgmlType::Q8_0,
        }
    }
    /// `general.file_type` (`LlamaFileType`: MOSTLY_BF16, MOSTLY_F16, MOSTLY_Q8_0).
    fn file_type(self) -> u32 {
        match self {
            OutType::Bf16 => 32,
            OutType::F16 => 1,
            OutType::Q8_0 => 7,
        }
    }
}

pub struct ExportOptions {
    pub output: PathBuf,
    pub outtype: OutType,
    /// Replace an earlier export at `output` (and its Modelfile); never another kind of file.
    pub overwrite: bool,
    /// `general.name` [default: the model directory's name].
    pub name: Option<String>,
    /// The Modelfile's SYSTEM prompt (the one the model was trained with); `None`: no Modelfile.
    pub system: Option<String>,
}

pub struct Exported {
    pub modelfile: Option<PathBuf>,
    pub tensors: usize,
    pub bytes: u64,
}

/// An existing `path` may be replaced only with `overwrite`, and only when `ours` says it is
/// something an export wrote.
fn check_target(path: &Path, overwrite: bool, ours: fn(&Path) -> bool, what: &str) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if !ours(path) {
        bail!(
            "{} exists and is not {what}: choose another path",
            path.display()
        );
    }
    if !overwrite {
        bail!(
            "{} exists: pass --overwrite to replace it, or choose another path",
            path.display()
        );
    }
    Ok(())
}

fn is_gguf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && &magic == b"GGUF"
}

/// The HF name -> llama.cpp name map of a Qwen3 tensor (gguf-py's `tensor_mapping.py`).
fn gguf_name(hf: &str) -> Result<String> {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return Ok(g.to_string());
    }
    let rest = hf
        .strip_prefix("model.layers.")
        .context("no llama.cpp name")?;
    let (layer, part) = rest.split_once('.').context("no llama.cpp name")?;
    let layer: usize = layer.parse().context("no llama.cpp name")?;
    let g = match part {
        "input_layernorm.weight" => "attn_norm",
        "self_attn.q_proj.weight" => "attn_q",
        "self_attn.k_proj.weight" => "attn_k",
        "self_attn.v_proj.weight" => "attn_v",
        "self_attn.o_proj.weight" => "attn_output",
        "self_attn.q_norm.weight" => "attn_q_norm",
        "self_attn.k_norm.weight" => "attn_k_norm",
        "post_attention_layernorm.weight" => "ffn_norm",
        "mlp.gate_proj.weight" => "ffn_gate",
        "mlp.up_proj.weight" => "ffn_up",
        "mlp.down_proj.weight" => "ffn_down",
        _ => bail!("no llama.cpp name"),
    };
    Ok(format!("blk.{layer}.{g}.weight"))
}

/// The model's tensors (adapter merged) under llama.cpp's names and types, in the converter's
/// order (the HF names sorted, as the safetensors files list them).
fn tensors(m: &Model, outtype: OutType) -> Result<Vec<TensorEntry>> {
    m.hf_tensors(true)
        .into_iter()
        .map(|(hf, t)| {
            let name =
                gguf_name(&hf).with_context(|| format!("tensor {hf}: not a Qwen3 tensor"))?;
            let shape = t.size();
            let ty = if shape.len() <= 1 || name.ends_with("_norm.weight") {
                GgmlType::F32
            } else if outtype == OutType::Q8_0
                && !(shape[shape.len() - 1] as usize).is_multiple_of(32)
            {
                GgmlType::F16 // gguf-py's QuantError fallback
            } else {
                outtype.ggml()
            };
            Ok(TensorEntry {
                name,
                shape,
                ty,
                data: t,
            })
        })
        .collect()
}

/// gguf-py's `model_weight_count_rounded_notation` (`general.size_label`, e.g. `41M`).
fn size_label(n: u64) -> String {
    let n = n as f64;
    let (scaled, suffix) = match n {
        n if n > 1e12 => (n * 1e-12, "T"),
        n if n > 1e9 => (n * 1e-9, "B"),
        n if n > 1e6 => (n * 1e-6, "M"),
        n => (n * 1e-3, "K"),
    };
    // Python's round() is half-to-even; only its digit count matters here
    let digits = format!("{}", scaled.round_ties_even() as u64);
    let digits = digits.trim_start_matches('0').len();
    let fix = 2usize.saturating_sub(digits);
    format!("{scaled:.fix$}{suffix}")
}

/// `general.sampling.*` from generation_config.json, as gguf-py's `Metadata.load` reads them.
fn sampling_kv(gen: &Json) -> Vec<(String, Value)> {
    let mut kv = vec![];
    if let Some(k) = gen.get("top_k").and_then(Json::as_i64) {
        kv.push(("general.sampling.top_k".into(), Value::I32(k as i32)));
    }
    for (key, gguf) in [
        ("top_p", "top_p"),
        ("min_p", "min_p"),
        ("temperature", "temp"),
    ] {
        if let Some(v) = gen.get(key).and_then(Json::as_f64) {
            kv.push((format!("general.sampling.{gguf}"), Value::F32(v as f32)));
        }
    }
    if let Some(v) = gen.get("repetition_penalty").and_then(Json::as_f64) {
        kv.push((
            "general.sampling.penalty_repeat".into(),
            Value::F32(v as f32),
        ));
    }
    kv
}

/// Exports `spec` (base model plus optional adapter) as GGUF per `opts`, and its Modelfile.
pub fn export_gguf(spec: &ModelSpec, opts: &ExportOptions) -> Result<Exported> {
    let resolved = model::open::resolve(spec)?;
    let tokenizer = resolved.tokenizer_file()?.to_path_buf();
    let out = &opts.output;
    if out.file_name().is_none() || out.is_dir() {
        bail!(
            "--output {} must be a file path, e.g. model.gguf",
            out.display()
        );
    }
    check_target(out, opts.overwrite, is_gguf, "a GGUF file")?;
    let mf_path = opts.system.as_ref().map(|_| modelfile::path_beside(out));
    if let Some(mf) = &mf_path {
        check_target(
            mf,
            opts.overwrite,
            modelfile::is_ours,
            "a Modelfile qwen3-sft wrote",
        )?;
    }
    let cfg = resolved.config.clone();
    let tok_kv = tokenizer_kv(
        &tokenizer,
        &cfg.raw,
        cfg.vocab_size as usize,
        QWEN3_CHAT_TEMPLATE,
    )?;
    let (name, gen) = match &resolved.base {
        Base::Dir(d) => {
            let g = d.join("generation_config.json");
            let gen = match g.is_file() {
                true => serde_json::from_str(
                    &std::fs::read_to_string(&g)
                        .with_context(|| format!("cannot read {}", g.display()))?,
                )
                .with_context(|| format!("{} is not valid JSON", g.display()))?,
                false => Json::Null,
            };
            let name = d.canonicalize().unwrap_or(d.clone());
            (
                name.file_name().map(|n| n.to_string_lossy().to_string()),
                gen,
            )
        }
        Base::Random(p) => (
            Some(format!("random-{p}")),
            serde_json::from_str(QWEN3_GENERATION_CONFIG)?,
        ),
    };
    let name = opts.name.clone().or(name).unwrap_or_else(|| "qwen3".into());

    let opened = resolved.load()?;
    let tensors = tensors(&opened.model, opts.outtype)?;
    let params: i64 = tensors
        .iter()
        .map(|t| t.shape.iter().product::<i64>())
        .sum();

    let mut g = Gguf::default();
    let a = "qwen3";
    g.add("general.architecture", Value::Str(a.into()));
    g.add("general.type", Value::Str("model".into()));
    g.kv.extend(sampling_kv(&gen));
    g.add("general.name", Value::Str(name));
    g.add("general.size_label", Value::Str(size_label(params as u64)));
    let u = |v: i64| Value::U32(v as u32);
    g.add(&format!("{a}.block_count"), u(cfg.num_hidden_layers));
    g.add(
        &format!("{a}.context_length"),
        u(cfg.max_position_embeddings),
    );
    g.add(&format!("{a}.embedding_length"), u(cfg.hidden_size));
    g.add(
        &format!("{a}.feed_forward_length"),
        u(cfg.intermediate_size),
    );
    g.add(
        &format!("{a}.attention.head_count"),
        u(cfg.num_attention_heads),
    );
    g.add(
        &format!("{a}.attention.head_count_kv"),
        u(cfg.num_key_value_heads),
    );
    // RoPE: Qwen3's NEOX rotation is implied by the architecture; only the base is stored
    g.add(
        &format!("{a}.rope.freq_base"),
        Value::F32(cfg.rope_theta as f32),
    );
    g.add(
        &format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(cfg.rms_norm_eps as f32),
    );
    if cfg.raw.get("head_dim").is_some() {
        g.add(&format!("{a}.attention.key_length"), u(cfg.head_dim));
        g.add(&format!("{a}.attention.value_length"), u(cfg.head_dim));
    }
    g.add("general.file_type", Value::U32(opts.outtype.file_type()));
    g.add("general.quantization_version", Value::U32(2)); // GGML_QUANT_VERSION
    g.kv.extend(tok_kv);
    g.tensors = tensors;

    output::write_file_with(out, opts.overwrite, |w| g.write(w))
        .with_context(|| format!("cannot export {}", out.display()))?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    if let (Some(mf), Some(system)) = (&mf_path, &opts.system) {
        let text = modelfile::render(out, system, &gen);
        output::write_file(mf, text.as_bytes(), opts.overwrite)?;
    }
    Ok(Exported {
        modelfile: mf_path,
        tensors: g.tensors.len(),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_labels_match_gguf_py() {
        assert_eq!(size_label(40_000_000), "40M");
        assert_eq!(size_label(9_800_000), "10M");
        assert_eq!(size_label(1_500_000), "1.5M");
        assert_eq!(size_label(300), "0.30K");
        assert_eq!(size_label(751_632_384), "752M");
        assert_eq!(size_label(2_031_739_904), "2.0B");
        assert_eq!(size_label(10_900), "11K");
    }

    #[test]
    fn names_follow_llama_cpp() {
        assert_eq!(
            gguf_name("model.layers.3.mlp.down_proj.weight").unwrap(),
            "blk.3.ffn_down.weight"
        );
        assert_eq!(
            gguf_name("model.layers.0.self_attn.k_norm.weight").unwrap(),
            "blk.0.attn_k_norm.weight"
        );
        assert!(gguf_name("model.layers.0.mlp.experts.weight").is_err());
    }
}
