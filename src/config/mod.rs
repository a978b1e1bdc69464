//! The run configuration: TOML sections `[model] [data] [train] [lora] [swanlab] [distributed]`
//! and `--set`
//! overrides. Every closed set of values is an enum and every number a type that rejects what it
//! cannot be (serde names the key and the allowed values); `validate` keeps the rules that join
//! two fields. Loading reads the TOML and nothing else: SwanLab's environment and `.netrc` are
//! resolved when the run starts.
use crate::data::encode::Template;
use crate::data::format::{Columns, Format, RowFormat};
use crate::hub;
use crate::log::swanlab::SwanlabSettings;
use crate::model::{lora::Target, DType, DeviceSpec, LoraConfig, Quantization};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Rows of the LM head evaluated at once (bounds the fp32 logits kept in memory).
pub const DEFAULT_LOSS_CHUNK: i64 = 512;

mod choices;
mod distributed;
mod numbers;
pub use choices::{Method, Optim, OptimStateDtype};
pub use distributed::{Backend, DistributedCfg, ZeroStage};
pub use numbers::{Count, Fraction, MaxLength, NonNegative, Positive, Steps};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCfg {
    /// Hub id (`Qwen/Qwen3-1.7B`), local HF directory, or `random:<preset>` (tiny, demo, 0.6b, 1.7b, 4b, 8b).
    pub path: String,
    #[serde(default)]
    pub source: hub::Source,
    #[serde(default = "d_dtype")]
    pub dtype: DType,
    #[serde(default)]
    pub device: DeviceSpec,
    /// `nf4`: the decoder's linears frozen in bitsandbytes' 4-bit NF4 (QLoRA; needs LoRA and
    /// recomputation of every layer). A bitsandbytes 4-bit checkpoint is NF4 whatever this says.
    #[serde(default)]
    pub quantization: Quantization,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataCfg {
    pub train_file: PathBuf,
    pub val_file: Option<PathBuf>,
    #[serde(default = "d_template")]
    pub template: Template,
    #[serde(default = "d_max_length")]
    pub max_length: MaxLength,
    /// Defaults to the recipe's prompt.
    pub system_prompt: Option<String>,
    /// `tokenizer.json` (or its directory); defaults to the model directory's.
    pub tokenizer: Option<PathBuf>,
    /// Row layout: `auto` (a `messages` key in the first row), `columns` or `messages`.
    #[serde(default)]
    pub format: Format,
    /// The fields holding question, reasoning and answer (`columns` rows); default: those names.
    #[serde(default)]
    pub columns: Columns,
}

impl DataCfg {
    /// How the row reader reads the data files.
    pub fn row_format(&self) -> RowFormat {
        RowFormat {
            format: self.format,
            columns: self.columns.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainCfg {
    pub method: Method,
    pub output_dir: PathBuf,
    #[serde(default = "d_epochs")]
    pub epochs: Positive,
    /// Stops after this many optimizer steps when set (overrides epochs, as in transformers).
    pub max_steps: Option<Count>,
    #[serde(default = "d_one")]
    pub batch_size: Count,
    #[serde(default = "d_four")]
    pub grad_accum: Count,
    #[serde(default = "d_lr")]
    pub lr: Positive,
    #[serde(default = "d_zero_steps")]
    pub warmup_steps: Steps,
    #[serde(default = "d_zero")]
    pub weight_decay: NonNegative,
    #[serde(default = "d_one_f")]
    pub max_grad_norm: NonNegative,
    #[serde(default = "d_ten")]
    pub logging_steps: Count,
    #[serde(default = "d_eval")]
    pub eval_steps: Count,
    #[serde(default = "d_save")]
    pub save_steps: Count,
    pub save_total_limit: Option<Count>,
    #[serde(default = "d_true")]
    pub gradient_checkpointing: bool,
    /// How many decoder layers to recompute when checkpointing (default: all). Fewer is faster and
    /// uses more memory; `--dry-run` shows the trade.
    pub checkpoint_layers: Option<Steps>,
    #[serde(default = "d_seed")]
    pub seed: i64,
    /// Shuffle the training set each epoch (false = file order, for reproducing a reference run).
    #[serde(default = "d_true")]
    pub shuffle: bool,
    #[serde(default)]
    pub optim: Optim,
    /// AdamW's moments (`optim = "adamw"` only).
    #[serde(default = "d_optim_dtype")]
    pub optim_state_dtype: OptimStateDtype,
    #[serde(default = "d_betas")]
    pub adam_betas: [Fraction; 2],
    #[serde(default = "d_eps")]
    pub adam_eps: Positive,
    #[serde(default = "d_chunk")]
    pub loss_chunk: Count,
    /// Validation questions answered at each evaluation: format adherence, BLEU/ROUGE
    /// (`eval/format_rate`, ...) and the texts ("Prediction"). 0 turns it off.
    #[serde(default = "d_predictions", alias = "predictions")]
    pub eval_generate: usize,
    #[serde(default = "d_pred_tokens", alias = "prediction_max_new_tokens")]
    pub eval_generate_max_new_tokens: Count,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoraCfg {
    #[serde(default = "d_r")]
    pub r: Count,
    #[serde(default = "d_alpha")]
    pub alpha: Positive,
    #[serde(default = "d_dropout")]
    pub dropout: Fraction,
    #[serde(default = "d_targets")]
    pub targets: Vec<Target>,
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
            dropout: d_dropout(),
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
    pub swanlab: SwanlabSettings,
    #[serde(default)]
    pub distributed: DistributedCfg,
}

fn d_dtype() -> DType {
    DType::Bf16
}
fn d_template() -> Template {
    Template::Qwen3
}
fn d_max_length() -> MaxLength {
    MaxLength(2048)
}
fn d_epochs() -> Positive {
    Positive(2.0)
}
fn d_one() -> Count {
    Count(1)
}
fn d_four() -> Count {
    Count(4)
}
fn d_lr() -> Positive {
    Positive(1e-4)
}
fn d_zero_steps() -> Steps {
    Steps(0)
}
fn d_zero() -> NonNegative {
    NonNegative(0.0)
}
fn d_one_f() -> NonNegative {
    NonNegative(1.0)
}
fn d_ten() -> Count {
    Count(10)
}
fn d_eval() -> Count {
    Count(100)
}
fn d_save() -> Count {
    Count(400)
}
fn d_true() -> bool {
    true
}
fn d_seed() -> i64 {
    42
}
fn d_optim_dtype() -> OptimStateDtype {
    OptimStateDtype::Auto
}
fn d_betas() -> [Fraction; 2] {
    [Fraction(0.9), Fraction(0.999)]
}
fn d_eps() -> Positive {
    Positive(1e-8)
}
fn d_chunk() -> Count {
    Count(DEFAULT_LOSS_CHUNK)
}
fn d_predictions() -> usize {
    3
}
fn d_pred_tokens() -> Count {
    Count(512)
}
fn d_r() -> Count {
    Count(8)
}
fn d_alpha() -> Positive {
    Positive(32.0)
}
fn d_dropout() -> Fraction {
    Fraction(0.0)
}
fn d_targets() -> Vec<Target> {
    vec![Target::QProj, Target::KProj, Target::VProj, Target::OProj]
}

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
    if value.contains(['\n', '\r']) {
        bail!(
            "--set `{key}`: the value spans lines; give one line (a TOML value or a plain string)"
        );
    }
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
    /// Reads the TOML file, applies `--set` overrides, deserialises (unknown keys and bad values
    /// are errors naming them) and checks the rules that join fields.
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
        const SECTIONS: &[&str] = &["model", "data", "train", "lora", "swanlab", "distributed"];
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
        ) -> Result<Option<T>> {
            let named = |e: serde_path_to_error::Error<toml::de::Error>| {
                let key = e.path().to_string();
                anyhow::anyhow!("[{name}] {key}: {}", e.into_inner().message())
            };
            t.remove(name)
                .map(|v| serde_path_to_error::deserialize(v).map_err(named))
                .transpose()
        }
        let required = |name: &str| anyhow::anyhow!("missing section [{name}]");
        let mut cfg = RunConfig {
            model: section(&mut table, "model")?.ok_or_else(|| required("model"))?,
            data: section(&mut table, "data")?.ok_or_else(|| required("data"))?,
            train: section(&mut table, "train")?.ok_or_else(|| required("train"))?,
            lora: section(&mut table, "lora")?.unwrap_or_default(),
            swanlab: section(&mut table, "swanlab")?.unwrap_or_default(),
            distributed: section(&mut table, "distributed")?.unwrap_or_default(),
        };
        // `--set data.val_file=` (empty) turns evaluation off.
        cfg.data.val_file = cfg.data.val_file.filter(|p| !p.as_os_str().is_empty());
        cfg.validate()?;
        Ok(cfg)
    }

    /// The rules that join two fields (each field's own range is its type's).
    fn validate(&self) -> Result<()> {
        self.data.columns.validate()?;
        if self.data.format == Format::Messages && self.data.template == Template::Reference {
            bail!("data.format = \"messages\" needs data.template = \"qwen3\": the reference template is defined only for question/think/answer rows");
        }
        let t = &self.train;
        if t.output_dir.as_os_str().is_empty() {
            bail!("train.output_dir is empty: name a directory for the run");
        }
        if self.distributed.backend == Backend::Nccl && self.model.device == DeviceSpec::Cpu {
            bail!("distributed.backend = \"nccl\" needs CUDA, but model.device = \"cpu\": use \"gloo\" (or \"auto\") on CPU");
        }
        if self.model.quantization == Quantization::Nf4 {
            if t.method != Method::Lora {
                bail!("model.quantization = \"nf4\" freezes the base in 4 bits: it trains with train.method = \"lora\" (QLoRA) only");
            }
            if !t.gradient_checkpointing || t.checkpoint_layers.is_some() {
                bail!("model.quantization = \"nf4\" recomputes every layer (each layer's dequantized weights live only while it runs): set train.gradient_checkpointing = true and remove train.checkpoint_layers");
            }
        }
        if t.optim == Optim::Adamw8bit {
            if t.optim_state_dtype != d_optim_dtype() {
                let dtype = serde_json::to_value(t.optim_state_dtype)?;
                bail!("train.optim_state_dtype = {dtype} applies to train.optim = \"adamw\" only: adamw8bit keeps 8-bit moments (f32 for the embedding and small tensors); remove optim_state_dtype or use adamw");
            }
            if self.distributed.zero_stage != ZeroStage::Ddp {
                bail!(
                    "train.optim = \"adamw8bit\" supports distributed.zero_stage = 0 (DDP) only, not {}: use zero_stage = 0, or train.optim = \"adamw\" with ZeRO",
                    self.distributed.zero_stage as i64
                );
            }
        }
        if self.train.method == Method::Lora && self.lora.targets.is_empty() {
            bail!("lora.targets is empty: name at least one projection to adapt");
        }
        Ok(())
    }

    /// The LoRA adapters to build, for `method = "lora"`.
    pub fn lora_config(&self) -> Option<LoraConfig> {
        let l = &self.lora;
        (self.train.method == Method::Lora).then(|| LoraConfig {
            r: l.r.get(),
            alpha: l.alpha.get(),
            dropout: l.dropout.get(),
            targets: l.targets.iter().map(|t| t.as_str().to_string()).collect(),
            rslora: l.rslora,
        })
    }
}
