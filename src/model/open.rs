//! One way to open a model, for every command (train, eval, generate, chat, merge): a model spec
//! (hub id, local HF directory or `random:<preset>`), an optional peft adapter, the tokenizer's
//! location, dtype and device, resolved with one set of defaults and one set of error messages.
//! The tokenizer itself is loaded by the caller (`data::tokenizer`): this module only finds it.
use super::{
    config, read_adapter_config, Build, Config, DType, DeviceSpec, LoraConfig, Model, Quantization,
};
use crate::hub;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What to open.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Hub id (`Qwen/Qwen3-1.7B`), local HF directory, or `random:<preset>`.
    pub path: String,
    /// The hub that serves hub ids.
    pub source: hub::Source,
    /// `None`: the dtype config.json names (fp32 when it names none, and for `random:`).
    pub dtype: Option<DType>,
    pub device: DeviceSpec,
    /// A peft adapter directory whose weights are loaded into the adapters.
    pub adapter: Option<PathBuf>,
    /// Fresh LoRA adapters to train (their shape; with `adapter`, that adapter's weights are loaded
    /// into them). `None` with an `adapter`: the adapter's own `adapter_config.json` shape.
    pub new_lora: Option<LoraConfig>,
    /// `tokenizer.json` or a directory holding one; default: the model's directory, then the
    /// adapter's.
    pub tokenizer: Option<PathBuf>,
    /// Seed of a `random:` model's initialisation.
    pub seed: i64,
    /// `None`: as the checkpoint is stored (NF4 for a bitsandbytes 4-bit checkpoint).
    pub quantization: Option<Quantization>,
}

impl ModelSpec {
    /// A spec with the defaults every command shares: ModelScope for hub ids, the stored dtype,
    /// `auto` device, no adapter.
    pub fn new(path: impl Into<String>) -> ModelSpec {
        ModelSpec {
            path: path.into(),
            source: hub::Source::default(),
            dtype: None,
            device: DeviceSpec::Auto,
            adapter: None,
            new_lora: None,
            tokenizer: None,
            seed: 0,
            quantization: None,
        }
    }
}

/// Where the base weights came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Base {
    Dir(PathBuf),
    Random(String),
}

/// An opened model and what came with it.
pub struct Opened {
    pub model: Model,
    pub base: Base,
    /// The resolved `tokenizer.json`, when one was found.
    pub tokenizer: Option<PathBuf>,
}

impl Opened {
    /// The directory whose tokenizer and generation files saved models copy.
    pub fn side_files(&self) -> Option<PathBuf> {
        match &self.base {
            Base::Dir(d) => Some(d.clone()),
            Base::Random(_) => self.tokenizer.as_ref()?.parent().map(Path::to_path_buf),
        }
    }
}

/// A spec checked and located, before any weight is read: everything that can be wrong with the
/// paths, dtype, device or adapter is an error here, in seconds.
pub struct Resolved {
    pub base: Base,
    /// The base model's config.json (or preset).
    pub config: Config,
    pub tokenizer: Option<PathBuf>,
    dtype: DType,
    device: tch::Device,
    lora: Option<LoraConfig>,
    adapter: Option<PathBuf>,
    seed: i64,
    /// Whether the linears are NF4.
    pub nf4: bool,
}

/// Resolves `spec` (a hub id is downloaded when not cached).
pub fn resolve(spec: &ModelSpec) -> Result<Resolved> {
    let (base, config) = match spec.path.strip_prefix("random:") {
        Some(preset) => (Base::Random(preset.to_string()), config::preset(preset)?),
        None => {
            let dir = hub::resolve_model(&spec.path, spec.source)?;
            let cfg = Config::from_file(&dir.join("config.json")).with_context(|| {
                format!("model `{}` is not a usable model directory", spec.path)
            })?;
            (Base::Dir(dir), cfg)
        }
    };
    let tokenizer = find_tokenizer(spec, &base)?;
    let dtype = match (spec.dtype, config.stored_dtype.as_deref(), &base) {
        (Some(d), _, _) => d,
        (None, Some(stored), Base::Dir(d)) => DType::from_hf(stored)
            .with_context(|| format!("{}: the dtype in config.json", d.display()))?,
        _ => DType::Fp32,
    };
    let stored_nf4 = match &base {
        Base::Dir(d) => super::quantized::is_nf4_checkpoint(&config.raw, d)?,
        Base::Random(_) => false,
    };
    let nf4 = match (spec.quantization, stored_nf4) {
        (Some(Quantization::None), true) => bail!(
            "model `{}` is a bitsandbytes 4-bit checkpoint: it loads with quantization nf4 only \
             (for a dense model, start from the unquantized base)",
            spec.path
        ),
        (Some(q), _) => q == Quantization::Nf4,
        (None, stored) => stored,
    };
    let device = spec.device.resolve()?;
    let lora = match (&spec.new_lora, &spec.adapter) {
        (Some(l), _) => Some(l.clone()),
        (None, Some(a)) => Some(
            read_adapter_config(a)
                .with_context(|| format!("adapter {}", a.display()))?
                .0,
        ),
        (None, None) => None,
    };
    Ok(Resolved {
        base,
        config,
        tokenizer,
        dtype,
        device,
        lora,
        adapter: spec.adapter.clone(),
        seed: spec.seed,
        nf4,
    })
}

impl Resolved {
    /// Builds the model with its adapters and loads the weights.
    pub fn load(self) -> Result<Opened> {
        let b = Build {
            nf4: self.nf4,
            ..Build::new(self.dtype.kind(), self.device, self.lora.as_ref())
        };
        let model = match &self.base {
            Base::Dir(d) => Model::load_with(d, b)?,
            Base::Random(_) => Model::random_with(&self.config, b, self.seed),
        };
        if let Some(a) = &self.adapter {
            model.load_adapter_weights(a)?;
        }
        Ok(Opened {
            model,
            base: self.base,
            tokenizer: self.tokenizer,
        })
    }

    /// The tokenizer file, or the one error every command gives when there is none.
    pub fn tokenizer_file(&self) -> Result<&Path> {
        self.tokenizer.as_deref().with_context(|| {
            let what = match &self.base {
                Base::Dir(d) => format!("{} has no tokenizer.json", d.display()),
                Base::Random(p) => format!("model `random:{p}` has no tokenizer"),
            };
            format!("{what}: pass --tokenizer DIR (data.tokenizer in a run config), e.g. .cache/qwen3-tokenizer made by `make tokenizer`")
        })
    }

    /// The directory the model is read from (`None` for `random:`).
    pub fn dir(&self) -> Option<&Path> {
        match &self.base {
            Base::Dir(d) => Some(d),
            Base::Random(_) => None,
        }
    }
}

/// Opens the model of `spec`: resolved, built with its adapters, weights loaded.
pub fn open(spec: &ModelSpec) -> Result<Opened> {
    resolve(spec)?.load()
}

/// `spec.tokenizer` (a file or a directory; an error when it holds none), else the model's
/// directory, else the adapter's; `None` when neither has one.
fn find_tokenizer(spec: &ModelSpec, base: &Base) -> Result<Option<PathBuf>> {
    let in_dir = |d: &Path| Some(d.join("tokenizer.json")).filter(|f| f.is_file());
    if let Some(p) = &spec.tokenizer {
        let file = if p.is_dir() {
            in_dir(p)
        } else {
            Some(p.clone())
        };
        match file.filter(|f| f.is_file()) {
            Some(f) => return Ok(Some(f)),
            None => bail!(
                "tokenizer {}: no tokenizer.json there (make tokenizer writes one to .cache/qwen3-tokenizer)",
                p.display()
            ),
        }
    }
    let model_dir = match base {
        Base::Dir(d) => in_dir(d),
        Base::Random(_) => None,
    };
    Ok(model_dir.or_else(|| spec.adapter.as_deref().and_then(in_dir)))
}
