//! What a run needs before its first step: the model source (hub id, directory or
//! `random:<preset>`), the tokenizer, encoded data, the model itself (fresh or from a checkpoint)
//! and the optimizer over exactly its trainable parameters.
use super::eval::EvalArgs;
use super::optim::AdamW;
use crate::config::RunConfig;
use crate::data::encode::{Encoder, Template, SYSTEM_PROMPT};
use crate::data::rows::read_rows;
use crate::data::tokenizer::QwenTokenizer;
use crate::model::{self, Config, LoraConfig, Model};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

pub use crate::data::encode::Encoded;

pub enum Source {
    Dir(PathBuf),
    Random(String),
}

pub struct Setup {
    pub source: Source,
    pub tokenizer: QwenTokenizer,
    tokenizer_dir: Option<PathBuf>,
    template: Template,
    system: String,
    max_length: usize,
    kind: Kind,
    device: Device,
    lora: Option<LoraConfig>,
    adapter: Option<PathBuf>,
    optim: Option<(f64, f64, f64, f64, bool)>,
    seed: i64,
}

fn resolve(path: &str, hub_source: &str) -> Result<Source> {
    if let Some(preset) = path.strip_prefix("random:") {
        model::config::preset(preset)?;
        return Ok(Source::Random(preset.to_string()));
    }
    let hub = match hub_source {
        "hf" => crate::hub::Source::Hf,
        _ => crate::hub::Source::Modelscope,
    };
    Ok(Source::Dir(crate::hub::resolve_model(path, hub)?))
}

/// `tokenizer.json` from an explicit path (file or directory), else the model directory's.
fn find_tokenizer(explicit: Option<&Path>, source: &Source) -> Result<PathBuf> {
    let p = match (explicit, source) {
        (Some(p), _) => p.to_path_buf(),
        (None, Source::Dir(d)) => d.clone(),
        (None, Source::Random(p)) => {
            bail!("model `random:{p}` has no tokenizer: set data.tokenizer (run `make tokenizer`)")
        }
    };
    let file = if p.is_dir() {
        p.join("tokenizer.json")
    } else {
        p
    };
    if !file.exists() {
        bail!("{}: no tokenizer.json; pass --tokenizer PATH (or data.tokenizer), e.g. .cache/qwen3-tokenizer", file.display());
    }
    Ok(file)
}

impl Setup {
    pub fn new(cfg: &RunConfig) -> Result<Self> {
        let source = resolve(&cfg.model.path, &cfg.model.source)?;
        let tok_file = find_tokenizer(cfg.data.tokenizer.as_deref(), &source)?;
        let t = &cfg.train;
        Ok(Setup {
            tokenizer: QwenTokenizer::load(&tok_file)?,
            tokenizer_dir: tok_file.parent().map(Path::to_path_buf),
            source,
            template: cfg.data.template.parse()?,
            system: cfg
                .data
                .system_prompt
                .clone()
                .unwrap_or_else(|| SYSTEM_PROMPT.to_string()),
            max_length: cfg.data.max_length,
            kind: model::parse_dtype(&cfg.model.dtype)?,
            device: model::parse_device(&cfg.model.device)?,
            lora: cfg.lora_config(),
            adapter: cfg
                .lora
                .adapter
                .clone()
                .filter(|_| cfg.train.method == "lora"),
            optim: Some((
                t.adam_betas[0],
                t.adam_betas[1],
                t.adam_eps,
                t.weight_decay,
                t.optim_state_dtype == "fp32",
            )),
            seed: t.seed,
        })
    }

    pub fn for_eval(a: &EvalArgs) -> Result<Self> {
        let source = resolve(&a.model, "hf")?;
        let tok_file = find_tokenizer(a.tokenizer.as_deref(), &source)?;
        let lora = match &a.adapter {
            Some(dir) => Some(model::read_adapter_config(dir)?.0),
            None => None,
        };
        Ok(Setup {
            tokenizer: QwenTokenizer::load(&tok_file)?,
            tokenizer_dir: tok_file.parent().map(Path::to_path_buf),
            source,
            template: a.template.parse()?,
            system: a
                .system
                .clone()
                .unwrap_or_else(|| SYSTEM_PROMPT.to_string()),
            max_length: a.max_length,
            kind: model::parse_dtype(&a.dtype)?,
            device: model::parse_device(&a.device)?,
            lora,
            adapter: a.adapter.clone(),
            optim: None,
            seed: 0,
        })
    }

    /// Reads and encodes a data file; reports truncated samples and drops those left without a
    /// single label token (nothing to learn from them).
    pub fn encode_file(&self, path: &Path, what: &str) -> Result<Vec<Encoded>> {
        let (rows, _) = read_rows(path, false)?;
        let encoder = Encoder {
            tok: &self.tokenizer,
            template: self.template,
            system: Some(self.system.clone()),
            max_len: self.max_length,
        };
        let mut out = Vec::with_capacity(rows.len());
        let (mut truncated, mut empty) = (0, 0);
        for r in &rows {
            let e = encoder
                .encode(r.question(), r.think(), r.answer())
                .with_context(|| format!("{}:{}: cannot encode", path.display(), r.line()))?;
            truncated += e.truncated() as usize;
            if crate::data::batch::label_count(&e.labels) == 0 {
                empty += 1;
                continue;
            }
            out.push(e);
        }
        println!(
            "{what}: {} samples from {} ({truncated} truncated to {} tokens{})",
            out.len(),
            path.display(),
            self.max_length,
            if empty > 0 {
                format!(", {empty} dropped with no label token left")
            } else {
                String::new()
            }
        );
        Ok(out)
    }

    /// The model: from the source (plus a fresh or given adapter), or the weights of a checkpoint.
    pub fn load_model(&self, checkpoint: Option<&Path>) -> Result<Model> {
        let lora = self.lora.as_ref();
        let m = match (&self.source, checkpoint) {
            (Source::Dir(_), Some(ck)) | (Source::Random(_), Some(ck)) if lora.is_none() => {
                Model::load(ck, self.kind, self.device, None)?
            }
            (Source::Dir(d), _) => Model::load(d, self.kind, self.device, lora)?,
            (Source::Random(p), _) => Model::random(
                &model::config::preset(p)?,
                self.kind,
                self.device,
                lora,
                self.seed,
            ),
        };
        if let Some(dir) = checkpoint
            .filter(|_| lora.is_some())
            .or(self.adapter.as_deref())
        {
            m.load_adapter_weights(dir)?;
        }
        Ok(m)
    }

    pub fn optimizer(&self, m: &Model) -> AdamW {
        let (b1, b2, eps, wd, fp32) = self.optim.unwrap_or((0.9, 0.999, 1e-8, 0.0, true));
        let mut params: Vec<(String, tch::Tensor)> =
            m.vs.variables()
                .into_iter()
                .filter(|(_, t)| t.requires_grad())
                .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        AdamW::new(params, (b1, b2), eps, wd, fp32)
    }

    /// Where tokenizer and generation files to copy into saved models come from.
    pub fn side_files(&self) -> Option<PathBuf> {
        match &self.source {
            Source::Dir(d) => Some(d.clone()),
            Source::Random(_) => self.tokenizer_dir.clone(),
        }
    }

    pub fn model_config(&self) -> Result<Config> {
        match &self.source {
            Source::Dir(d) => Config::from_file(&d.join("config.json")),
            Source::Random(p) => model::config::preset(p),
        }
    }

    /// The reference's end-of-training check: answers to the first validation questions, logged
    /// to SwanLab as "Prediction" texts `Question: ...\n\nLLM: ...` (greedy, so reproducible).
    pub fn log_predictions(
        &self,
        model: &Model,
        cfg: &RunConfig,
        run: &crate::log::swanlab::Run,
        step: i64,
    ) -> Result<()> {
        let n = cfg.train.predictions;
        let Some(val) = cfg.data.val_file.as_ref().filter(|_| n > 0) else {
            return Ok(());
        };
        let (rows, _) = read_rows(val, false)?;
        let encoder = Encoder {
            tok: &self.tokenizer,
            template: self.template,
            system: Some(self.system.clone()),
            max_len: self.max_length,
        };
        let mut texts = vec![];
        for r in rows.iter().take(n) {
            let prompt: Vec<i64> = encoder
                .generation_prompt(r.question(), None)?
                .into_iter()
                .map(i64::from)
                .collect();
            let eos = [
                crate::data::tokenizer::IM_END as i64,
                crate::data::tokenizer::ENDOFTEXT as i64,
            ];
            let opts = crate::infer::generate::GenOptions::greedy(
                cfg.train.prediction_max_new_tokens as usize,
                &eos,
            );
            let out = crate::infer::generate::generate(model, &[prompt], &opts)?;
            let ids: Vec<u32> = out[0].token_ids.iter().map(|&t| t as u32).collect();
            let answer = self.tokenizer.decode(&ids, true)?;
            println!("Question: {}\nLLM: {answer}\n", r.question());
            texts.push(format!("Question: {}\n\nLLM: {answer}", r.question()));
        }
        run.texts("Prediction", step, &texts);
        Ok(())
    }
}
