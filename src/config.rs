//! The run configuration: TOML sections `[model] [data] [train] [lora] [swanlab]`, `--set`
//! overrides, and validation of every value before anything is loaded.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCfg {
    /// Hub id (`Qwen/Qwen3-1.7B`), local HF directory, or `random:<preset>` (tiny, demo, 0.6b, 1.7b).
    pub path: String,
    #[serde(default = "default_source")]
    pub source: String,
    #[serde(default = "default_dtype")]
    pub dtype: String,
    #[serde(default = "default_device")]
    pub device: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataCfg {
    pub train_file: PathBuf,
    pub val_file: Option<PathBuf>,
    #[serde(default = "default_template")]
    pub template: String,
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Defaults to the recipe's prompt.
    pub system_prompt: Option<String>,
    /// `tokenizer.json` (or its directory); defaults to the model directory's.
    pub tokenizer: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainCfg {
    pub method: String,
    pub output_dir: PathBuf,
    #[serde(default = "d_epochs")]
    pub epochs: f64,
    /// Stops after this many optimizer steps when set (overrides epochs, as in transformers).
    pub max_steps: Option<i64>,
    #[serde(default = "d_one")]
    pub batch_size: i64,
    #[serde(default = "d_four")]
    pub grad_accum: i64,
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default)]
    pub warmup_steps: i64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "d_one_f")]
    pub max_grad_norm: f64,
    #[serde(default = "d_ten")]
    pub logging_steps: i64,
    #[serde(default = "d_eval")]
    pub eval_steps: i64,
    #[serde(default = "d_save")]
    pub save_steps: i64,
    pub save_total_limit: Option<usize>,
    #[serde(default = "d_true")]
    pub gradient_checkpointing: bool,
    /// How many decoder layers to recompute when checkpointing (default: all). Fewer is faster and
    /// uses more memory; `--dry-run` shows the trade.
    pub checkpoint_layers: Option<i64>,
    #[serde(default = "d_seed")]
    pub seed: i64,
    /// Shuffle the training set each epoch (false = file order, for reproducing a reference run).
    #[serde(default = "d_true")]
    pub shuffle: bool,
    /// Precision of AdamW's moments: fp32 (default) or the parameter dtype (`param`, as torch does).
    #[serde(default = "d_optim_dtype")]
    pub optim_state_dtype: String,
    #[serde(default = "d_betas")]
    pub adam_betas: [f64; 2],
    #[serde(default = "d_eps")]
    pub adam_eps: f64,
    /// Rows of the LM head evaluated at once (bounds the fp32 logits kept in memory).
    #[serde(default = "d_chunk")]
    pub loss_chunk: i64,
    /// Validation questions answered and logged ("Prediction") at the end of training.
    #[serde(default = "d_predictions")]
    pub predictions: usize,
    #[serde(default = "d_pred_tokens")]
    pub prediction_max_new_tokens: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoraCfg {
    #[serde(default = "d_r")]
    pub r: i64,
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default = "d_targets")]
    pub targets: Vec<String>,
    #[serde(default)]
    pub rslora: bool,
    /// Start from this peft adapter's weights instead of a fresh adapter (continue training).
    pub adapter: Option<PathBuf>,
}

impl Default for LoraCfg {
    fn default() -> Self {
        LoraCfg {
            r: d_r(),
            alpha: d_alpha(),
            dropout: 0.0,
            targets: d_targets(),
            rslora: false,
            adapter: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub model: ModelCfg,
    pub data: DataCfg,
    pub train: TrainCfg,
    #[serde(default)]
    pub lora: LoraCfg,
    #[serde(default)]
    pub swanlab: crate::log::swanlab::SwanlabSettings,
}

fn default_source() -> String {
    "modelscope".into()
}
fn default_dtype() -> String {
    "bf16".into()
}
fn default_device() -> String {
    "auto".into()
}
fn default_template() -> String {
    "qwen3".into()
}
fn default_max_length() -> usize {
    2048
}
fn d_epochs() -> f64 {
    2.0
}
fn d_one() -> i64 {
    1
}
fn d_four() -> i64 {
    4
}
fn d_lr() -> f64 {
    1e-4
}
fn d_one_f() -> f64 {
    1.0
}
fn d_ten() -> i64 {
    10
}
fn d_eval() -> i64 {
    100
}
fn d_save() -> i64 {
    400
}
fn d_true() -> bool {
    true
}
fn d_seed() -> i64 {
    42
}
fn d_optim_dtype() -> String {
    "fp32".into()
}
fn d_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn d_eps() -> f64 {
    1e-8
}
fn d_chunk() -> i64 {
    crate::train::loss::DEFAULT_CHUNK
}
fn d_predictions() -> usize {
    3
}
fn d_pred_tokens() -> i64 {
    512
}
fn d_r() -> i64 {
    8
}
fn d_alpha() -> f64 {
    32.0
}
fn d_targets() -> Vec<String> {
    ["q_proj", "k_proj", "v_proj", "o_proj"]
        .map(String::from)
        .to_vec()
}

const LORA_MODULES: &[&str] = &[
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Applies `section.key=value`: the value is read as TOML when it parses as one
/// (`2e-4`, `true`, `["q_proj"]`), else taken as a plain string (`lora`, `runs/x`).
pub fn apply_set(table: &mut toml::Table, set: &str) -> Result<()> {
    let (key, value) = set
        .split_once('=')
        .with_context(|| format!("--set `{set}`: expected section.key=value"))?;
    let (section, field) = key
        .trim()
        .split_once('.')
        .with_context(|| format!("--set `{set}`: key must be section.key, e.g. train.lr"))?;
    let value = value.trim();
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let sec = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .with_context(|| format!("--set `{set}`: `{section}` is not a section"))?;
    sec.insert(field.to_string(), parsed);
    Ok(())
}

impl RunConfig {
    /// Reads the TOML file, applies `--set` overrides, deserialises (unknown keys are errors naming
    /// them) and validates every value.
    pub fn load(path: &Path, sets: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut table: toml::Table = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        for s in sets {
            apply_set(&mut table, s)?;
        }
        Self::from_table(table).with_context(|| format!("invalid config {}", path.display()))
    }

    pub fn from_table(mut table: toml::Table) -> Result<Self> {
        const SECTIONS: &[&str] = &["model", "data", "train", "lora", "swanlab"];
        if let Some(k) = table.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            bail!(
                "unknown section `[{k}]` (expected one of {})",
                SECTIONS.join(", ")
            );
        }
        // Each section on its own so an unknown or bad key is reported with its section.
        fn section<T: serde::de::DeserializeOwned>(
            t: &mut toml::Table,
            name: &str,
            required: bool,
        ) -> Result<Option<T>> {
            match t.remove(name) {
                Some(v) => Ok(Some(
                    v.try_into().map_err(|e| anyhow::anyhow!("[{name}]: {e}"))?,
                )),
                None if required => bail!("missing section [{name}]"),
                None => Ok(None),
            }
        }
        let mut cfg = RunConfig {
            model: section(&mut table, "model", true)?.unwrap(),
            data: section(&mut table, "data", true)?.unwrap(),
            train: section(&mut table, "train", true)?.unwrap(),
            lora: section(&mut table, "lora", false)?.unwrap_or_default(),
            swanlab: section(&mut table, "swanlab", false)?.unwrap_or_default(),
        };
        // `--set data.val_file=` (empty) turns evaluation off.
        cfg.data.val_file = cfg.data.val_file.filter(|p| !p.as_os_str().is_empty());
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let (m, d, t, l) = (&self.model, &self.data, &self.train, &self.lora);
        crate::model::parse_dtype(&m.dtype).context("model.dtype")?;
        if !matches!(m.device.as_str(), "auto" | "cpu" | "cuda") && !m.device.starts_with("cuda:") {
            bail!("model.device = `{}`: use auto, cpu or cuda", m.device);
        }
        if !matches!(m.source.as_str(), "hf" | "modelscope") {
            bail!("model.source = `{}`: use hf or modelscope", m.source);
        }
        if !matches!(d.template.as_str(), "qwen3" | "reference") {
            bail!("data.template = `{}`: use qwen3 or reference", d.template);
        }
        if d.max_length < 8 {
            bail!("data.max_length = {}: must be at least 8", d.max_length);
        }
        if !matches!(t.method.as_str(), "full" | "lora") {
            bail!("train.method = `{}`: use full or lora", t.method);
        }
        let positive = [
            ("train.batch_size", t.batch_size),
            ("train.grad_accum", t.grad_accum),
            ("train.logging_steps", t.logging_steps),
            ("train.eval_steps", t.eval_steps),
            ("train.save_steps", t.save_steps),
            ("train.loss_chunk", t.loss_chunk),
        ];
        for (k, v) in positive {
            if v < 1 {
                bail!("{k} = {v}: must be at least 1");
            }
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            bail!("train.lr = {}: must be a positive number", t.lr);
        }
        if t.max_steps.is_none() && t.epochs <= 0.0 {
            bail!(
                "train.epochs = {}: must be positive (or set train.max_steps)",
                t.epochs
            );
        }
        if t.max_steps.is_some_and(|s| s < 1)
            || t.warmup_steps < 0
            || t.weight_decay < 0.0
            || t.max_grad_norm < 0.0
        {
            bail!("train.max_steps, warmup_steps, weight_decay and max_grad_norm must not be negative");
        }
        if t.checkpoint_layers.is_some_and(|n| n < 0) {
            bail!("train.checkpoint_layers must not be negative");
        }
        if !matches!(t.optim_state_dtype.as_str(), "fp32" | "param") {
            bail!(
                "train.optim_state_dtype = `{}`: use fp32 or param",
                t.optim_state_dtype
            );
        }
        if !(0.0..1.0).contains(&t.adam_betas[0])
            || !(0.0..1.0).contains(&t.adam_betas[1])
            || t.adam_eps <= 0.0
        {
            bail!("train.adam_betas must be in [0, 1) and train.adam_eps positive");
        }
        if t.method == "lora" {
            if l.r < 1 || l.alpha <= 0.0 || !(0.0..1.0).contains(&l.dropout) {
                bail!("lora.r must be >= 1, lora.alpha > 0 and lora.dropout in [0, 1)");
            }
            if l.targets.is_empty() {
                bail!("lora.targets is empty");
            }
            if let Some(bad) = l
                .targets
                .iter()
                .find(|x| !LORA_MODULES.contains(&x.as_str()))
            {
                bail!(
                    "lora.targets: unknown module `{bad}` (choose from {})",
                    LORA_MODULES.join(", ")
                );
            }
        }
        self.swanlab.resolve().context("[swanlab]")?;
        Ok(())
    }

    pub fn lora_config(&self) -> Option<crate::model::LoraConfig> {
        (self.train.method == "lora").then(|| crate::model::LoraConfig {
            r: self.lora.r,
            alpha: self.lora.alpha,
            dropout: self.lora.dropout,
            targets: self.lora.targets.clone(),
            rslora: self.lora.rslora,
        })
    }
}
