//! Qwen3 hyperparameters read from an HF `config.json` (mirrors transformers' `Qwen3Config`).
//!
//! Both schemas are accepted: transformers 4.5x (`rope_theta`, `torch_dtype` at top level) and 5.x
//! (`rope_parameters.rope_theta`, `dtype`). Unknown fields are ignored; the original JSON is kept so
//! a saved model writes back exactly what it was loaded with.
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Config {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_key_value_heads: i64,
    pub head_dim: i64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: i64,
    /// The dtype the checkpoint was stored in (`torch_dtype` or `dtype`), e.g. "bfloat16".
    pub stored_dtype: Option<String>,
    /// The config.json as read, written back on save.
    pub raw: Value,
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model config {}", path.display()))?;
        let raw: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        Self::from_json(raw).with_context(|| format!("invalid model config {}", path.display()))
    }

    pub fn from_json(raw: Value) -> Result<Self> {
        let int = |k: &str| -> Result<i64> {
            raw.get(k)
                .and_then(Value::as_i64)
                .with_context(|| format!("missing or non-integer `{k}`"))
        };
        if let Some(mt) = raw.get("model_type").and_then(Value::as_str) {
            if mt != "qwen3" {
                bail!("model_type is `{mt}`, only `qwen3` (dense) is supported");
            }
        }
        let hidden_size = int("hidden_size")?;
        let num_attention_heads = int("num_attention_heads")?;
        let rope_theta = raw
            .get("rope_theta")
            .or_else(|| raw.get("rope_parameters").and_then(|r| r.get("rope_theta")))
            .and_then(Value::as_f64)
            .unwrap_or(10000.0);
        for scaling in ["rope_scaling", "rope_parameters"] {
            if let Some(t) = raw
                .get(scaling)
                .and_then(|r| r.get("rope_type"))
                .and_then(Value::as_str)
            {
                if t != "default" {
                    bail!("`{scaling}.rope_type` is `{t}`; only default RoPE is implemented");
                }
            }
        }
        if raw.get("use_sliding_window").and_then(Value::as_bool) == Some(true) {
            bail!("`use_sliding_window: true` is not supported (no released dense Qwen3 uses it)");
        }
        let cfg = Config {
            vocab_size: int("vocab_size")?,
            hidden_size,
            intermediate_size: int("intermediate_size")?,
            num_hidden_layers: int("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads: int("num_key_value_heads")?,
            // transformers defaults head_dim to 128, not hidden/heads
            head_dim: raw.get("head_dim").and_then(Value::as_i64).unwrap_or(128),
            rms_norm_eps: raw
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            rope_theta,
            tie_word_embeddings: raw
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            max_position_embeddings: raw
                .get("max_position_embeddings")
                .and_then(Value::as_i64)
                .unwrap_or(32768),
            stored_dtype: raw
                .get("dtype")
                .or_else(|| raw.get("torch_dtype"))
                .and_then(Value::as_str)
                .map(str::to_string),
            raw,
        };
        let sizes = [
            ("vocab_size", cfg.vocab_size),
            ("hidden_size", cfg.hidden_size),
            ("intermediate_size", cfg.intermediate_size),
            ("num_hidden_layers", cfg.num_hidden_layers),
            ("num_attention_heads", cfg.num_attention_heads),
            ("num_key_value_heads", cfg.num_key_value_heads),
            ("head_dim", cfg.head_dim),
            ("max_position_embeddings", cfg.max_position_embeddings),
        ];
        if let Some((k, v)) = sizes.iter().find(|(_, v)| *v < 1) {
            bail!("`{k}` is {v}: it must be at least 1");
        }
        if !(cfg.rms_norm_eps > 0.0 && cfg.rope_theta > 0.0) {
            bail!("`rms_norm_eps` and `rope_theta` must be positive");
        }
        if cfg.num_attention_heads % cfg.num_key_value_heads != 0 {
            bail!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                cfg.num_attention_heads,
                cfg.num_key_value_heads
            );
        }
        if cfg.head_dim % 2 != 0 {
            bail!("head_dim ({}) must be even for RoPE", cfg.head_dim);
        }
        Ok(cfg)
    }

    /// Number of parameters of the dense model (the tied head counted once).
    pub fn num_params(&self) -> i64 {
        let (c, d) = (self.hidden_size, self.head_dim);
        let (h, kv, i) = (
            self.num_attention_heads,
            self.num_key_value_heads,
            self.intermediate_size,
        );
        let attn = c * h * d * 2 + c * kv * d * 2 + 2 * d;
        let layer = attn + 3 * c * i + 2 * c;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * c
        };
        self.vocab_size * c + self.num_hidden_layers * layer + c + head
    }
}

/// Shapes for `random:<preset>` models: the released sizes (random weights, for memory and speed
/// measurements) and small ones for demos and tests; all with Qwen3's vocabulary.
pub fn preset(name: &str) -> Result<Config> {
    // (hidden, intermediate, layers, heads, kv heads, head_dim, tied head). The demo's head is
    // its own, as Qwen3-8B's and larger: a small tied model starts out repeating its input token
    // (the logit of the current token is its embedding's squared norm) and takes many epochs to
    // unlearn it; untied, it learns the answer's layout within the demo's minutes.
    let (c, i, l, h, kv, d, tied) = match name {
        "tiny" => (64, 192, 2, 4, 2, 32, true),
        "demo" => (128, 384, 4, 4, 2, 32, false),
        "0.6b" => (1024, 3072, 28, 16, 8, 128, true),
        "1.7b" => (2048, 6144, 28, 16, 8, 128, true),
        "4b" => (2560, 9728, 36, 32, 8, 128, true),
        "8b" => (4096, 12288, 36, 32, 8, 128, false),
        other => bail!("unknown model preset `random:{other}` (tiny, demo, 0.6b, 1.7b, 4b, 8b)"),
    };
    Config::from_json(serde_json::json!({
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936,
        "hidden_size": c, "intermediate_size": i, "num_hidden_layers": l, "num_attention_heads": h,
        "num_key_value_heads": kv, "head_dim": d, "hidden_act": "silu", "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_theta": 1_000_000.0, "rope_type": "default"},
        "max_position_embeddings": 40960, "tie_word_embeddings": tied, "attention_bias": false,
        "use_sliding_window": false, "bos_token_id": 151643, "eos_token_id": 151645, "dtype": "bfloat16",
    }))
}
