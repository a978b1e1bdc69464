//! Generation defaults read from a model directory, as transformers' `GenerationConfig` resolves
//! them (`generation/configuration_utils.py`): `generation_config.json` first, then `config.json`
//! for the special ids, then the library defaults (greedy, temperature 1, top-k 50, top-p 1).
//! Qwen3 instruct ships `do_sample true, temperature 0.6, top_k 20, top_p 0.95,
//! eos_token_id [151645, 151643], pad_token_id 151643`.
use super::sampling::SamplingParams;
use crate::model::spec::QWEN3_GENERATION_CONFIG;
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::Path;

/// The reference's `generate(max_new_tokens=2048)`.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 2048;

#[derive(Clone, Debug, PartialEq)]
pub struct GenerationConfig {
    pub sampling: SamplingParams,
    /// Generation stops at any of these.
    pub eos: Vec<i64>,
    /// Fills left padding (masked, so any id works); `None` in the files falls back to eos or 0.
    pub pad: i64,
    pub max_new_tokens: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            sampling: SamplingParams {
                do_sample: false,
                temperature: 1.0,
                top_k: 50,
                top_p: 1.0,
            },
            eos: vec![],
            pad: 0,
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
        }
    }
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    Ok(Some(v))
}

/// An id or a list of ids (`eos_token_id` may be either).
fn ids(v: Option<&Value>) -> Vec<i64> {
    match v {
        Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
        _ => vec![],
    }
}

impl GenerationConfig {
    /// Reads `generation_config.json` and `config.json` of `dir`; missing files mean defaults.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        let gen = read_json(&dir.join("generation_config.json"))?.unwrap_or(Value::Null);
        let model = read_json(&dir.join("config.json"))?.unwrap_or(Value::Null);
        Ok(Self::from_json(&gen, &model))
    }

    /// What a Qwen3 release's generation_config.json says (`random:<preset>` models).
    pub fn qwen3() -> Self {
        let gen = serde_json::from_str(QWEN3_GENERATION_CONFIG).expect("a JSON constant");
        Self::from_json(&gen, &Value::Null)
    }

    fn from_json(gen: &Value, model: &Value) -> Self {
        let mut c = GenerationConfig::default();
        let s = &mut c.sampling;
        s.do_sample = gen
            .get("do_sample")
            .and_then(Value::as_bool)
            .unwrap_or(s.do_sample);
        s.temperature = gen
            .get("temperature")
            .and_then(Value::as_f64)
            .unwrap_or(s.temperature);
        s.top_k = gen
            .get("top_k")
            .and_then(Value::as_u64)
            .map_or(s.top_k, |k| k as usize);
        s.top_p = gen.get("top_p").and_then(Value::as_f64).unwrap_or(s.top_p);
        c.eos = ids(gen.get("eos_token_id"));
        if c.eos.is_empty() {
            c.eos = ids(model.get("eos_token_id"));
        }
        let pad = ids(gen.get("pad_token_id"))
            .into_iter()
            .chain(ids(model.get("pad_token_id")))
            .next();
        c.pad = pad.or(c.eos.first().copied()).unwrap_or(0);
        if let Some(n) = gen.get("max_new_tokens").and_then(Value::as_u64) {
            c.max_new_tokens = n as usize;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen3_instruct_generation_config() {
        let dir = std::env::temp_dir().join(format!("qwen3-sft-gencfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("generation_config.json"),
            r#"{"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643],
               "pad_token_id": 151643, "temperature": 0.6, "top_k": 20, "top_p": 0.95}"#,
        )
        .unwrap();
        let c = GenerationConfig::from_model_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            c.sampling,
            SamplingParams {
                do_sample: true,
                temperature: 0.6,
                top_k: 20,
                top_p: 0.95
            }
        );
        assert_eq!(
            (c.eos, c.pad, c.max_new_tokens),
            (vec![151645, 151643], 151643, 2048)
        );
    }

    #[test]
    fn eos_falls_back_to_config_json() {
        let dir = std::env::temp_dir().join(format!("qwen3-sft-gencfg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"eos_token_id": 151645}"#).unwrap();
        let c = GenerationConfig::from_model_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            (c.eos, c.pad, c.sampling.do_sample),
            (vec![151645], 151645, false)
        );
    }
}
