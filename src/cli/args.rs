//! Flags several commands share: which model to open (`--model --adapter --tokenizer --dtype
//! --device --source`, one set of defaults for eval, generate, chat and merge), how to sample, and
//! how a data file's rows are laid out (`--format --columns`, the config's `[data] format` and
//! `columns`, for split, data stats, encode, eval and generate).
use crate::data::encode::SYSTEM_PROMPT;
use crate::data::format::{Columns, Format, RowFormat};
use crate::data::tokenizer::QwenTokenizer;
use crate::hub::Source;
use crate::infer::{GenOptions, GenerationConfig};
use crate::model::open::Resolved;
use crate::model::{self, DType, DeviceSpec, ModelSpec, Quantization};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// `[data] format` and `[data] columns` on the command line.
#[derive(clap::Args, Debug, Clone)]
pub struct RowArgs {
    /// Row layout: auto (`messages` when the first row has that key), columns or messages
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// Fields holding the parts of a columns row, e.g. question=Question,think=Complex_CoT,answer=Response
    #[arg(long, default_value = "question=question,think=think,answer=answer")]
    pub columns: Columns,
}

impl RowArgs {
    pub fn row_format(&self) -> RowFormat {
        RowFormat {
            format: self.format,
            columns: self.columns.clone(),
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// HF model directory, hub id (Qwen/Qwen3-1.7B) or random:<preset>
    #[arg(long)]
    pub model: String,
    /// peft LoRA adapter directory applied on top of --model (unmerged)
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// tokenizer.json, or a directory holding one [default: the model's, else the adapter's]
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// fp32, bf16, or auto (the dtype the checkpoint is stored in)
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// auto (CUDA when available), cpu, cuda, cuda:N
    #[arg(long, default_value = "auto")]
    pub device: DeviceSpec,
    /// Hub serving hub ids: modelscope or hf
    #[arg(long, default_value = "modelscope")]
    pub source: Source,
    /// none, nf4 (the decoder's linears in bitsandbytes' 4-bit NF4, QLoRA's base), or auto (as
    /// the checkpoint is stored: nf4 for a bitsandbytes 4-bit checkpoint)
    #[arg(long, default_value = "auto")]
    pub quantization: String,
}

impl ModelArgs {
    pub fn spec(&self) -> Result<ModelSpec> {
        let dtype = match self.dtype.as_str() {
            "auto" => None,
            s => Some(s.parse::<DType>().context("--dtype")?),
        };
        let quantization = match self.quantization.as_str() {
            "auto" => None,
            s => Some(s.parse::<Quantization>().context("--quantization")?),
        };
        Ok(ModelSpec {
            quantization,
            source: self.source,
            dtype,
            device: self.device,
            adapter: self.adapter.clone(),
            tokenizer: self.tokenizer.clone(),
            ..ModelSpec::new(self.model.clone())
        })
    }

    /// The model located and checked, weights not yet read.
    pub fn resolve(&self) -> Result<Resolved> {
        model::open::resolve(&self.spec()?)
    }
}

/// How a question becomes a prompt (generate, chat).
#[derive(clap::Args, Debug, Clone)]
pub struct PromptArgs {
    /// System prompt; "" for none [default: the reference's medical-expert prompt]
    #[arg(long, default_value = SYSTEM_PROMPT, hide_default_value = true)]
    pub system: String,
    /// Qwen3's thinking mode: `off` pre-fills an empty <think> block (enable_thinking=False), the
    /// layout rows without reasoning train; in chat, `/think on|off` switches
    #[arg(long, value_enum, default_value_t = Thinking::On)]
    pub thinking: Thinking,
    /// The same as `--thinking off`
    #[arg(long, hide = true)]
    pub no_think: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thinking {
    On,
    Off,
}

impl PromptArgs {
    /// Whether the answer starts with a think block of the model's own.
    pub fn thinking(&self) -> bool {
        self.thinking == Thinking::On && !self.no_think
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Argmax decoding (overrides the model's generation_config.json)
    #[arg(long, conflicts_with_all = ["temperature", "top_k", "top_p"])]
    pub greedy: bool,
    /// Sampling temperature (turns sampling on) [default: generation_config.json, else 1.0]
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Keep the K most likely tokens, 0 = off (turns sampling on) [default: generation_config.json, else 50]
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Keep the smallest set with probability mass P (turns sampling on) [default: generation_config.json, else 1.0]
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Sampling seed [default: random, printed with --json]
    #[arg(long)]
    pub seed: Option<u64>,
    /// [default: generation_config.json's, else 2048]
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
}

impl SamplingArgs {
    /// The options for a model with generation config `cfg` and `max_positions`, these flags
    /// applied over it (a default longer than the model's positions is shortened to them).
    pub fn options(&self, cfg: &GenerationConfig, max_positions: i64) -> Result<GenOptions> {
        let mut o = GenOptions::from_config(cfg);
        let s = &mut o.sampling;
        if self.greedy {
            s.do_sample = false;
        } else if self.temperature.is_some() || self.top_k.is_some() || self.top_p.is_some() {
            s.do_sample = true;
        }
        s.temperature = self.temperature.unwrap_or(s.temperature);
        s.top_k = self.top_k.unwrap_or(s.top_k);
        s.top_p = self.top_p.unwrap_or(s.top_p);
        s.validate().context("sampling flags")?;
        let limit = max_positions.max(1) as usize;
        o.max_new_tokens = match self.max_new_tokens {
            Some(0) => bail!("--max-new-tokens must be at least 1"),
            Some(n) if n > limit => {
                bail!("--max-new-tokens {n} exceeds the model's max_position_embeddings ({limit})")
            }
            Some(n) => n,
            None => o.max_new_tokens.min(limit),
        };
        o.seed = match self.seed {
            Some(s) => s,
            None => {
                let mut b = [0u8; 8];
                getrandom::getrandom(&mut b).context("drawing a random seed")?;
                u64::from_le_bytes(b)
            }
        };
        Ok(o)
    }
}

/// The model's generation_config.json (and config.json's ids); a `random:<preset>` samples as
/// a Qwen3 release does.
pub fn generation_config(r: &Resolved) -> Result<GenerationConfig> {
    match r.dir() {
        Some(d) => GenerationConfig::from_model_dir(d),
        None => Ok(GenerationConfig::qwen3()),
    }
}

/// The tokenizer of a resolved model.
pub fn tokenizer(r: &Resolved) -> Result<QwenTokenizer> {
    QwenTokenizer::load(r.tokenizer_file()?)
}
