//! What a run needs before its first step, from the run config: the model spec (and its variant
//! with a checkpoint's weights), the encoded data sets and their limits, the optimizer.
use super::optim::AdamW;
use crate::config::{Method, OptimStateDtype, RunConfig};
use crate::data::encode::{encode_file, Encoded, Encoder, SYSTEM_PROMPT};
use crate::data::tokenizer::QwenTokenizer;
use crate::model::{self, ModelSpec};
use anyhow::{bail, Result};
use std::path::Path;

/// The training and validation sets, encoded with the run's template, system prompt and length.
pub fn encode_sets(cfg: &RunConfig, tok: &QwenTokenizer) -> Result<(Vec<Encoded>, Vec<Encoded>)> {
    let system = cfg.data.system_prompt.as_deref().unwrap_or(SYSTEM_PROMPT);
    let encoder = Encoder {
        tok,
        template: cfg.data.template,
        system: Some(system.to_string()),
        max_len: cfg.data.max_length.tokens(),
    };
    let train_set = encode_file(&encoder, &cfg.data.train_file, "train")?;
    let val_set = match &cfg.data.val_file {
        Some(f) => encode_file(&encoder, f, "val")?,
        None => vec![],
    };
    if let (Some(f), true) = (&cfg.data.val_file, val_set.is_empty()) {
        eprintln!(
            "warning: {}: no validation sample has a label token left: training without evaluation",
            f.display()
        );
    }
    if train_set.is_empty() {
        bail!(
            "{}: no sample has a label token left after encoding",
            cfg.data.train_file.display()
        );
    }
    Ok((train_set, val_set))
}

/// The data must fit the model: its tokenizer's ids and the sample length.
pub fn check_limits(cfg: &RunConfig, shape: &model::Config, tok: &QwenTokenizer) -> Result<()> {
    tok.check_fits(shape.vocab_size, &cfg.model.path)?;
    let (len, max) = (cfg.data.max_length.get(), shape.max_position_embeddings);
    if len > max {
        bail!("data.max_length = {len} exceeds the model's max_position_embeddings ({max}): lower data.max_length");
    }
    Ok(())
}

pub fn steps_per_epoch(samples: usize, cfg: &RunConfig) -> usize {
    let batches = samples.div_ceil(cfg.train.batch_size.get() as usize);
    batches.div_ceil(cfg.train.grad_accum.get() as usize)
}

/// The run's model as configured: base, dtype, device, fresh (or continued) adapters.
pub fn base_spec(cfg: &RunConfig) -> ModelSpec {
    let m = &cfg.model;
    ModelSpec {
        source: m.source,
        dtype: Some(m.dtype),
        device: m.device,
        adapter: cfg
            .lora
            .adapter
            .clone()
            .filter(|_| cfg.train.method == Method::Lora),
        new_lora: cfg.lora_config(),
        tokenizer: cfg.data.tokenizer.clone(),
        seed: cfg.train.seed,
        ..ModelSpec::new(m.path.clone())
    }
}

/// The same model with a checkpoint's weights: a full checkpoint is the whole model, a LoRA one
/// the adapter on the configured base.
pub fn resume_spec(cfg: &RunConfig, base: ModelSpec, dir: &Path) -> ModelSpec {
    match cfg.train.method {
        Method::Full => ModelSpec {
            path: dir.display().to_string(),
            ..base
        },
        Method::Lora => ModelSpec {
            adapter: Some(dir.to_path_buf()),
            ..base
        },
    }
}

/// AdamW over exactly the model's trainable parameters, in name order.
pub fn optimizer(m: &model::Model, cfg: &RunConfig) -> AdamW {
    let t = &cfg.train;
    let mut params: Vec<(String, tch::Tensor)> =
        m.vs.variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let betas = (t.adam_betas[0].get(), t.adam_betas[1].get());
    let fp32 = t.optim_state_dtype == OptimStateDtype::Fp32;
    AdamW::new(params, betas, t.adam_eps.get(), t.weight_decay.get(), fp32)
}
