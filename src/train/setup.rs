//! What a run needs before its first step, from the run config: the model spec (and its variant
//! with a checkpoint's weights), the encoded data sets and their limits, the optimizer (and its
//! synchronisation over ranks), the output directory.
use super::adamw8bit::AdamW8bit;
use super::checkpoint;
use super::dist::{zero::Sync, World};
use super::optim::{AdamW, MomentDtype};
use super::optimizer::Optimizer;
use crate::config::{Method, Optim, OptimStateDtype, RunConfig, ZeroStage};
use crate::data::encode::{encode_file, Encoded, Encoder, SYSTEM_PROMPT};
use crate::data::tokenizer::QwenTokenizer;
use crate::log::metrics::MetricsLog;
use crate::model::DeviceSpec;
use crate::model::{self, ModelSpec};
use anyhow::{bail, Context, Result};
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
    let fmt = cfg.data.row_format();
    let train_set = encode_file(&encoder, &cfg.data.train_file, &fmt, "train")?;
    let val_set = match &cfg.data.val_file {
        Some(f) => encode_file(&encoder, f, &fmt, "val")?,
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

/// Optimizer steps per epoch: each takes `batch_size x grad_accum` samples on each of `world` ranks.
pub fn steps_per_epoch(samples: usize, cfg: &RunConfig, world: usize) -> usize {
    let batches = samples.div_ceil(cfg.train.batch_size.get() as usize);
    batches.div_ceil(cfg.train.grad_accum.get() as usize * world)
}

/// The run's model as configured: base, dtype, device, fresh (or continued) adapters. A rank of
/// a distributed job on a GPU machine trains on `cuda:LOCAL_RANK`.
pub fn base_spec(cfg: &RunConfig, world: &World) -> ModelSpec {
    let m = &cfg.model;
    let device = match m.device {
        DeviceSpec::Auto | DeviceSpec::Cuda(_) if world.size > 1 && tch::Cuda::is_available() => {
            DeviceSpec::Cuda(world.local_rank)
        }
        d => d,
    };
    ModelSpec {
        source: m.source,
        dtype: Some(m.dtype),
        device,
        adapter: cfg
            .lora
            .adapter
            .clone()
            .filter(|_| cfg.train.method == Method::Lora),
        new_lora: cfg.lora_config(),
        tokenizer: cfg.data.tokenizer.clone(),
        seed: cfg.train.seed,
        quantization: Some(m.quantization),
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

/// The parameter whose AdamW8bit moments stay f32, as transformers' Trainer keeps every
/// `nn.Embedding`'s for `optim="adamw_bnb_8bit"` (LoRA freezes it; a tied head is this tensor).
pub const EMBEDDING: &str = "model.embed_tokens.weight";

/// `train.optim` over exactly the model's trainable parameters, in name order; in a distributed
/// job also their synchronisation, and with ZeRO AdamW holds only this rank's parts (adamw8bit
/// runs with DDP only). Rank 0's weights are broadcast first, as DDP does, so every rank starts
/// from the same model.
pub fn optimizer(
    m: &model::Model,
    cfg: &RunConfig,
    world: &World,
) -> Result<(Optimizer, Option<Sync>)> {
    let t = &cfg.train;
    let mut params: Vec<(String, tch::Tensor)> =
        m.vs.variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let betas = (t.adam_betas[0].get(), t.adam_betas[1].get());
    let moments = match t.optim_state_dtype {
        OptimStateDtype::Auto => MomentDtype::Auto,
        OptimStateDtype::Fp32 => MomentDtype::Fp32,
        OptimStateDtype::Bf16 => MomentDtype::Bf16,
        OptimStateDtype::Param => MomentDtype::Param,
    };
    let (eps, decay) = (t.adam_eps.get(), t.weight_decay.get());
    let whole = |params| match t.optim {
        Optim::Adamw => Optimizer::AdamW(AdamW::new(params, betas, eps, decay, moments)),
        Optim::Adamw8bit => {
            if m.device() != tch::Device::Cpu && world.is_main() {
                eprintln!("warning: train.optim = \"adamw8bit\" keeps its state in host memory and updates on the CPU: each step copies the trainable weights and gradients from the {:?} to the host and back", m.device());
            }
            let mut o = AdamW8bit::new(params, betas, eps, decay);
            o.keep_fp32(EMBEDDING);
            Optimizer::AdamW8bit(o)
        }
    };
    let Some(group) = world.group() else {
        return Ok((whole(params), None));
    };
    for (name, p) in &params {
        group
            .broadcast(p, 0)?
            .wait()
            .with_context(|| format!("broadcasting {name} from rank 0: {}", world.lost()))?;
    }
    let stage = cfg.distributed.zero_stage;
    let sync = Sync::new(stage, world.rank, world.size, &params);
    let opt = match stage {
        ZeroStage::Ddp => whole(params),
        _ if t.optim == Optim::Adamw8bit => {
            bail!("train.optim = adamw8bit supports distributed.zero_stage = 0 (DDP) only")
        }
        _ => {
            let parts = sync
                .pieces()
                .into_iter()
                .map(|p| (p.name, p.weight, p.offset, Some(p.grad)))
                .collect();
            Optimizer::AdamW(AdamW::over(parts, betas, eps, decay, moments))
        }
    };
    Ok((opt, Some(sync)))
}

/// Prepares the output directory of a run that starts or resumes (rank 0): marked as a run,
/// stale temp directories of dead processes removed, `metrics.jsonl` created or continued.
pub fn run_dir(out: &Path, resumed: bool, step: i64) -> Result<MetricsLog> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    crate::output::mark(out, checkpoint::RUN_KIND)?;
    checkpoint::remove_stale_temps(out);
    match resumed {
        true => MetricsLog::resume(out, step),
        false => MetricsLog::create(out),
    }
}
