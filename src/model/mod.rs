//! A Qwen3 model with its parameters: build, random init, load and save in HF and peft layouts.
pub mod bf16;
pub mod blockwise;
pub mod cache;
pub mod config;
pub mod dropout;
pub mod gemv;
pub mod lora;
pub mod nf4;
pub mod norm;
pub mod open;
pub mod quant_io;
pub mod quantized;
pub mod qwen3;
pub mod rope;
pub mod spec;
pub mod weights;

pub use cache::LayerCache;
pub use config::Config;
pub use lora::LoraConfig;
pub use open::{open, Base, ModelSpec, Opened};
pub use qwen3::{Build, Qwen3};
pub use spec::{DType, DeviceSpec, Quantization};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

pub struct Model {
    pub vs: nn::VarStore,
    pub net: Qwen3,
    pub lora: Option<LoraConfig>,
    /// The directory the base weights came from (tokenizer and generation config live there).
    pub source: Option<PathBuf>,
}

const ADAPTER_PREFIX: &str = "base_model.model.";

impl Model {
    fn build(cfg: &Config, b: Build) -> Self {
        let vs = nn::VarStore::new(b.device);
        let net = Qwen3::new(&vs.root(), cfg, b);
        Model {
            vs,
            net,
            lora: b.lora.cloned(),
            source: None,
        }
    }

    /// Random weights as transformers initialises them (normal(0, 0.02), norms at one), LoRA as
    /// peft does (A kaiming-uniform, B zero); deterministic for a seed.
    pub fn random(
        cfg: &Config,
        kind: Kind,
        device: Device,
        lora: Option<&LoraConfig>,
        seed: i64,
    ) -> Self {
        Self::random_with(cfg, Build::new(kind, device, lora), seed)
    }

    /// `random` with any build (an NF4 base draws the same values, then quantizes them).
    pub fn random_with(cfg: &Config, b: Build, seed: i64) -> Self {
        let mut m = Self::build(cfg, b);
        m.init(seed, false);
        m
    }

    /// Initialises all parameters, or only the LoRA adapters when `adapters_only`.
    fn init(&mut self, seed: i64, adapters_only: bool) {
        tch::manual_seed(seed);
        let mut vars: Vec<(String, Option<Tensor>)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, Some(t)))
            .collect();
        if adapters_only {
            vars.retain(|(n, _)| n.contains(".lora_"));
        } else {
            vars.extend(self.pending_linears().into_iter().map(|n| (n, None)));
        }
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| {
            for (name, t) in vars {
                let Some(mut t) = t else {
                    self.init_nf4(&name);
                    continue;
                };
                if name.ends_with("norm.weight") {
                    let _ = t.fill_(1.0);
                } else if name.contains(".lora_A.") {
                    let bound = 1.0 / (t.size()[1] as f64).sqrt();
                    let _ = t.uniform_(-bound, bound);
                } else if name.contains(".lora_B.") {
                    let _ = t.zero_();
                } else {
                    let _ = t.normal_(0.0, 0.02);
                }
            }
        });
    }

    /// Loads an HF model directory into `kind` on `device`, adding fresh LoRA adapters if asked.
    pub fn load(dir: &Path, kind: Kind, device: Device, lora: Option<&LoraConfig>) -> Result<Self> {
        Self::load_with(dir, Build::new(kind, device, lora))
    }

    /// `load` with any build: with `b.nf4`, dense linear weights are quantized as they are read
    /// and a bitsandbytes 4-bit checkpoint's are taken as stored.
    pub fn load_with(dir: &Path, b: Build) -> Result<Self> {
        let cfg = Config::from_file(&dir.join("config.json"))?;
        let files = weights::model_files(dir)?;
        let mut m = Self::build(&cfg, b);
        m.init(0, true);
        let skip: &[&str] = if cfg.tie_word_embeddings {
            &["lm_head.weight"]
        } else {
            &[]
        };
        if b.nf4 {
            m.load_nf4(&files, skip)?;
        } else {
            let is_adapter = |n: &str| n.contains(".lora_A.") || n.contains(".lora_B.");
            weights::load_into(&m.vs.variables(), &files, is_adapter, skip)?;
        }
        Ok(Model {
            source: Some(dir.to_path_buf()),
            ..m
        })
    }

    pub fn cfg(&self) -> &Config {
        &self.net.cfg
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The var store's tensors but the LoRA adapters (the whole base of a dense model).
    fn base_vars(&self) -> impl Iterator<Item = (String, Tensor)> {
        self.vs
            .variables()
            .into_iter()
            .filter(|(n, _)| !n.contains(".lora_A.") && !n.contains(".lora_B."))
    }

    /// The base model's tensors under their HF names, LoRA merged in when `merge` (the tied head
    /// is not repeated, as `save_pretrained` does). NF4 linears come dequantized.
    pub fn hf_tensors(&self, merge: bool) -> Vec<(String, Tensor)> {
        let mut out: BTreeMap<String, Tensor> = self.base_vars().collect();
        for (n, l) in self.net.linears() {
            let dense = matches!(l.weight, lora::Weight::Dense(_));
            if merge || !dense {
                let w = if merge {
                    l.merged_weight()
                } else {
                    l.dense_weight()
                };
                out.insert(format!("{n}.weight"), w);
            }
        }
        out.into_iter().collect()
    }

    /// Writes the HF model files (weights in the model dtype, `config.json` naming that dtype,
    /// tokenizer and generation files from `side_files` or the source) into the existing `dir`.
    pub fn write_hf(&self, dir: &Path, merge: bool, side_files: Option<&Path>) -> Result<()> {
        weights::write_model_files(dir, &self.hf_tensors(merge))?;
        self.write_config_and_side_files(dir, None, side_files)
    }

    /// Writes the base model in transformers' bitsandbytes 4-bit form (what `save_pretrained`
    /// writes for a model loaded with QLoRA's `BitsAndBytesConfig`) into the existing `dir`.
    pub fn write_nf4(&self, dir: &Path, side_files: Option<&Path>) -> Result<()> {
        weights::write_model_files(dir, &self.nf4_tensors()?)?;
        let q = quant_io::quantization_config();
        self.write_config_and_side_files(dir, Some(q), side_files)
    }

    /// `config.json` naming the model dtype (and `quantization`, else none), the tokenizer and
    /// generation files.
    fn write_config_and_side_files(
        &self,
        dir: &Path,
        quantization: Option<Value>,
        side_files: Option<&Path>,
    ) -> Result<()> {
        let mut cfg = self.cfg().raw.clone();
        let dtype = weights::dtype_str(self.net.kind);
        if cfg.get("torch_dtype").is_some() {
            cfg["torch_dtype"] = json!(dtype);
        } else {
            cfg["dtype"] = json!(dtype);
        }
        if let Some(obj) = cfg.as_object_mut() {
            obj.remove("quantization_config");
        }
        if let Some(q) = quantization {
            cfg["quantization_config"] = q;
        }
        std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg)?)?;
        if let Some(src) = side_files.or(self.source.as_deref()) {
            weights::copy_side_files(src, dir)?;
        }
        let gen = dir.join("generation_config.json");
        if self.source.is_none() && !gen.exists() {
            std::fs::write(&gen, spec::QWEN3_GENERATION_CONFIG)?; // a random-init Qwen3
        }
        Ok(())
    }

    /// Saves an HF model directory atomically (a crash never leaves a half-written model).
    pub fn save_hf(&self, out: &Path, merge: bool, side_files: Option<&Path>) -> Result<()> {
        weights::write_dir_atomically(out, |tmp| self.write_hf(tmp, merge, side_files))
            .with_context(|| format!("cannot save model to {}", out.display()))
    }

    /// The LoRA tensors under peft's names (`base_model.model.<module>.lora_A.weight`).
    pub fn adapter_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(n, _)| n.contains(".lora_A.") || n.contains(".lora_B."))
            .map(|(n, t)| (format!("{ADAPTER_PREFIX}{n}"), t))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Writes a peft adapter (`adapter_model.safetensors`, `adapter_config.json`) into `dir`.
    pub fn write_adapter(
        &self,
        dir: &Path,
        base_name: &str,
        side_files: Option<&Path>,
    ) -> Result<()> {
        let l = self
            .lora
            .as_ref()
            .context("this model has no LoRA adapter to save")?;
        let cfg = json!({
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": l.r, "lora_alpha": l.alpha,
            "lora_dropout": l.dropout, "target_modules": l.targets, "bias": "none",
            "use_rslora": l.rslora, "use_dora": false, "fan_in_fan_out": false,
            "init_lora_weights": true, "modules_to_save": null, "inference_mode": true,
            "base_model_name_or_path": base_name,
        });
        let meta = [("format".to_string(), "pt".to_string())].into();
        weights::write_safetensors(
            &dir.join("adapter_model.safetensors"),
            &self.adapter_tensors(),
            &meta,
        )?;
        std::fs::write(
            dir.join("adapter_config.json"),
            serde_json::to_string_pretty(&cfg)?,
        )?;
        if let Some(src) = side_files.or(self.source.as_deref()) {
            weights::copy_side_files(src, dir)?;
        }
        Ok(())
    }

    /// Saves a peft adapter directory atomically.
    pub fn save_adapter(
        &self,
        out: &Path,
        base_name: &str,
        side_files: Option<&Path>,
    ) -> Result<()> {
        weights::write_dir_atomically(out, |tmp| self.write_adapter(tmp, base_name, side_files))
            .with_context(|| format!("cannot save adapter to {}", out.display()))
    }

    /// Loads the weights of a peft adapter directory into this model's adapters.
    pub fn load_adapter_weights(&self, dir: &Path) -> Result<()> {
        let vars: HashMap<String, Tensor> = self.adapter_tensors().into_iter().collect();
        let file = dir.join("adapter_model.safetensors");
        weights::load_into(&vars, &[file], |_| false, &[])
            .with_context(|| format!("cannot load adapter {}", dir.display()))
    }
}

/// Reads a peft `adapter_config.json` into a `LoraConfig` (and the base model it names).
pub fn read_adapter_config(dir: &Path) -> Result<(LoraConfig, String)> {
    let path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let get = |k: &str| {
        v.get(k)
            .with_context(|| format!("{}: missing `{k}`", path.display()))
    };
    if get("peft_type")?.as_str() != Some("LORA") {
        anyhow::bail!("{}: only peft_type LORA is supported", path.display());
    }
    let targets = match get("target_modules")? {
        Value::Array(a) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => anyhow::bail!("{}: `target_modules` must be a list", path.display()),
    };
    let cfg = LoraConfig {
        r: get("r")?.as_i64().context("`r` must be an integer")?,
        alpha: get("lora_alpha")?
            .as_f64()
            .context("`lora_alpha` must be a number")?,
        dropout: v.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0),
        targets,
        rslora: v
            .get("use_rslora")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    let base = v
        .get("base_model_name_or_path")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok((cfg, base))
}
