//! The memory budget of a training configuration (`qwen3-sft train --dry-run`), term by term, in
//! bytes: weights, gradients, optimizer state, activations (stored and recomputed layers), the
//! chunked loss head, and the runtime's own footprint. The activation terms count the tensors
//! autograd keeps per token and layer in `model::qwen3`; `make memcheck` compares the total with
//! the measured peak RSS of real steps on CPU (see README, "Memory").
use crate::config::{Optim, OptimStateDtype};
use crate::model::{Config, LoraConfig};
use tch::{Device, Kind};

pub struct Budget {
    pub weights: f64,
    pub gradients: f64,
    pub optimizer: f64,
    pub activations: f64,
    pub logits: f64,
    pub temporaries: f64,
    pub runtime: f64,
}

impl Budget {
    pub fn total(&self) -> f64 {
        self.weights
            + self.gradients
            + self.optimizer
            + self.activations
            + self.logits
            + self.temporaries
            + self.runtime
    }

    pub fn table(&self) -> String {
        let gb = |x: f64| x / 1e9;
        let rows = [
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("optimizer state", self.optimizer),
            ("activations", self.activations),
            ("loss head (logits chunk)", self.logits),
            ("grad/update temporaries", self.temporaries),
            ("runtime", self.runtime),
        ];
        let mut s: String = rows
            .iter()
            .map(|(k, v)| format!("  {k:<26}{:>8.2} GB\n", gb(*v)))
            .collect();
        s += &format!("  {:<26}{:>8.2} GB\n", "total (peak)", gb(self.total()));
        s
    }
}

pub struct Plan<'a> {
    pub cfg: &'a Config,
    pub kind: Kind,
    pub lora: Option<&'a LoraConfig>,
    /// The optimizer (`train.optim`), and AdamW's moments (`train.optim_state_dtype`).
    pub optim: Optim,
    pub moments: OptimStateDtype,
    pub tokens: i64,
    pub recomputed_layers: i64,
    pub chunk: i64,
    pub device: Device,
    /// The decoder's linears in NF4 (QLoRA).
    pub nf4: bool,
}

/// Bytes per NF4 weight: half a byte of code, an 8-bit absmax per 64 values and an f32 nested
/// absmax per 256 of those (model/nf4.rs, as bitsandbytes stores them).
const NF4_BYTES: f64 = 0.5 + 1.0 / 64.0 + 4.0 / (64.0 * 256.0);

/// Parameters of one decoder layer's seven projections.
fn layer_linear_params(cfg: &Config) -> f64 {
    let (c, hd, kvd, i) = (
        cfg.hidden_size,
        cfg.num_attention_heads * cfg.head_dim,
        cfg.num_key_value_heads * cfg.head_dim,
        cfg.intermediate_size,
    );
    (2 * c * hd + 2 * c * kvd + 3 * c * i) as f64
}

fn lora_params(cfg: &Config, l: &LoraConfig) -> f64 {
    let (c, hd, kvd, i) = (
        cfg.hidden_size,
        cfg.num_attention_heads * cfg.head_dim,
        cfg.num_key_value_heads * cfg.head_dim,
        cfg.intermediate_size,
    );
    let per_layer: i64 = l
        .targets
        .iter()
        .map(|t| match t.as_str() {
            "q_proj" => c + hd,
            "k_proj" | "v_proj" => c + kvd,
            "o_proj" => hd + c,
            "gate_proj" | "up_proj" => c + i,
            _ => i + c,
        })
        .sum();
    (per_layer * l.r * cfg.num_hidden_layers) as f64
}

/// The element counts of the trainable tensors, each with whether it is the embedding (whose
/// AdamW8bit moments stay f32, setup.rs): the model's tensors, or the adapters' A and B.
pub fn trainable_tensors(cfg: &Config, lora: Option<&LoraConfig>) -> Vec<(i64, bool)> {
    let (c, hd, kvd, i) = (
        cfg.hidden_size,
        cfg.num_attention_heads * cfg.head_dim,
        cfg.num_key_value_heads * cfg.head_dim,
        cfg.intermediate_size,
    );
    let layer: Vec<i64> = match lora {
        // A is (r, in), B (out, r)
        Some(l) => l
            .targets
            .iter()
            .flat_map(|t| {
                let (inp, out) = match t.as_str() {
                    "q_proj" => (c, hd),
                    "k_proj" | "v_proj" => (c, kvd),
                    "o_proj" => (hd, c),
                    "gate_proj" | "up_proj" => (c, i),
                    _ => (i, c),
                };
                [l.r * inp, l.r * out]
            })
            .collect(),
        // q k v o, q_norm k_norm, gate up down, the two norms
        None => {
            let d = cfg.head_dim;
            vec![
                c * hd,
                c * kvd,
                c * kvd,
                hd * c,
                d,
                d,
                c * i,
                c * i,
                i * c,
                c,
                c,
            ]
        }
    };
    let mut all: Vec<(i64, bool)> = vec![];
    if lora.is_none() {
        all.push((cfg.vocab_size * c, true));
    }
    for _ in 0..cfg.num_hidden_layers {
        all.extend(layer.iter().map(|&n| (n, false)));
    }
    if lora.is_none() {
        all.push((c, false)); // the final norm
        if !cfg.tie_word_embeddings {
            all.push((cfg.vocab_size * c, false)); // lm_head: a Linear, 8-bit
        }
    }
    all
}

/// Bytes of optimizer state: AdamW's per parameter, AdamW8bit's tensor by tensor (8-bit codes
/// and a block absmax, or f32 moments for the embedding and tensors under 4096 elements).
fn optimizer_bytes(p: &Plan, trainable: f64, param_bytes: f64) -> f64 {
    let per_param = match p.moments {
        OptimStateDtype::Fp32 => 8.0,
        OptimStateDtype::Bf16 => 4.0,
        OptimStateDtype::Param => 2.0 * param_bytes,
        OptimStateDtype::Auto if param_bytes == 2.0 => 4.0,
        OptimStateDtype::Auto => 8.0,
    };
    match p.optim {
        Optim::Adamw => trainable * per_param,
        Optim::Adamw8bit => trainable_tensors(p.cfg, p.lora)
            .into_iter()
            .map(|(n, fp32)| super::adamw8bit::moment_bytes(n as usize, fp32) as f64)
            .sum(),
    }
}

/// Bytes autograd keeps per token for one decoder layer run with grad.
fn layer_bytes_per_token(cfg: &Config, b: f64, lora: Option<&LoraConfig>) -> f64 {
    let (c, hd, kvd, i) = (
        cfg.hidden_size as f64,
        (cfg.num_attention_heads * cfg.head_dim) as f64,
        (cfg.num_key_value_heads * cfg.head_dim) as f64,
        cfg.intermediate_size as f64,
    );
    // two RMSNorms: fp32 copy of the input + normalised output
    let norms = 2.0 * (4.0 * c + b * c);
    // q/k norms in fp32 and their outputs, RoPE inputs/rotations, repeated K/V, SDPA in/out,
    // the o_proj input copy: 8 tensors of H*D and 3 of KV*D in the activation dtype
    let attn = 4.0 * (hd + kvd) + b * (8.0 * hd + 3.0 * kvd) + 4.0 * cfg.num_attention_heads as f64;
    // gate output, its SiLU, up output, and the product fed to down_proj
    let mlp = 4.0 * b * i;
    // LoRA branches cast their input to fp32, which lora_A keeps (after dropout: the dropped
    // copy, and dropout keeps a one-byte mask)
    let adapters: f64 = lora.map_or(0.0, |l| {
        let drop = if l.dropout > 0.0 { 1.25 } else { 1.0 };
        l.targets
            .iter()
            .map(|t| match t.as_str() {
                "o_proj" => 4.0 * hd,
                "down_proj" => 4.0 * i,
                _ => 4.0 * c,
            })
            .sum::<f64>()
            * drop
    });
    norms + attn + mlp + adapters
}

pub fn estimate(p: &Plan) -> Budget {
    let cfg = p.cfg;
    let b = p.kind.elt_size_in_bytes() as f64;
    let params = cfg.num_params() as f64;
    let adapter = p.lora.map_or(0.0, |l| lora_params(cfg, l));
    let trainable_bytes = if p.lora.is_some() {
        adapter * 4.0
    } else {
        params * b
    };
    let trainable = if p.lora.is_some() { adapter } else { params };
    // two moments per trainable parameter; LoRA's adapters are fp32
    let param_bytes = if p.lora.is_some() { 4.0 } else { b };
    let n = p.tokens as f64;
    let layers = cfg.num_hidden_layers as f64;
    let stored = layers - p.recomputed_layers as f64;
    let per_layer = layer_bytes_per_token(cfg, b, p.lora) * n;
    // Recomputed layers keep their input; one of them is live again during backward. Backward
    // also holds the incoming and outgoing activation gradients of a layer.
    let recompute_live = if p.recomputed_layers > 0 {
        per_layer
    } else {
        0.0
    };
    let activations = stored * per_layer
        + p.recomputed_layers as f64 * n * cfg.hidden_size as f64 * b
        + recompute_live
        + 4.0 * n * cfg.hidden_size as f64 * 4.0
        + n * cfg.hidden_size as f64 * b * 2.0; // embedding output and final norm input
    let rows = (p.chunk as f64).min(n);
    // loss::ChunkedLoss's buffers: one chunk of logits in the activation dtype and its fp32 copy
    // (one tensor when activations are fp32), reused for the gradient
    let logits = rows * cfg.vocab_size as f64 * if b == 4.0 { 4.0 } else { b + 4.0 };
    // AdamW's fp32 slice temporaries (4 of them) on a GPU; the CPU kernel makes none
    // (adamw_kernel.rs; the bound is kept). AdamW8bit's f32 copies of one slice, in host memory.
    // Gradients of the head and embedding are accumulated in place (loss.rs, recompute.rs), so no
    // second full-vocabulary gradient exists.
    let temporaries = match (p.lora.is_some(), p.optim) {
        (true, _) => adapter * 4.0,
        (false, Optim::Adamw) => crate::train::optim::GPU_SLICE_ELEMS as f64 * 4.0 * 4.0,
        (false, Optim::Adamw8bit) => {
            use crate::train::adamw8bit::{SLICE, SLICE_COPIES};
            (SLICE * SLICE_COPIES * 4) as f64
        }
    };
    let runtime = match p.device {
        Device::Cpu => 0.45e9,
        _ => 0.6e9,
    };
    // NF4: the linears at NF4_BYTES; one layer's dequantized weights live at a time (saved by
    // the layer recomputed in backward), plus the bounded slices of the GPU dequantization
    let (weights, dequantized) = if p.nf4 {
        let linear = layer_linear_params(cfg) * layers;
        let slices = match p.device {
            Device::Cpu => 0.0,
            _ => crate::model::nf4::OPS_SLICE_BLOCKS as f64 * 64.0 * 16.0,
        };
        (
            (params - linear) * b + linear * NF4_BYTES,
            layer_linear_params(cfg) * b + slices,
        )
    } else {
        (params * b, 0.0)
    };
    Budget {
        weights: weights + adapter * 4.0,
        gradients: trainable_bytes,
        optimizer: optimizer_bytes(p, trainable, param_bytes),
        activations,
        logits,
        temporaries: temporaries + dequantized,
        runtime,
    }
}

/// Resident set size of this process now and at its peak, from /proc (Linux).
pub fn rss_bytes() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn rss_string() -> String {
    let (now, _) = rss_bytes();
    format!("rss {:.1} GB", now as f64 / 1e9)
}

/// `train --dry-run`: the budget of `cfg` on its configured device, which need not be present
/// here, for a model shape read without downloading anything.
pub fn dry_run(cfg: &crate::config::RunConfig) -> anyhow::Result<String> {
    let shape = shape_of(&cfg.model.path)?;
    let device = cfg.model.device.planned();
    let t = &cfg.train;
    let lora = cfg.lora_config();
    let layers = shape.num_hidden_layers as usize;
    let checkpoint_layers = t.checkpoint_layers.map(|n| n.get());
    let recomputed = super::recompute::plan(layers, t.gradient_checkpointing, checkpoint_layers)
        .iter()
        .filter(|&&r| r)
        .count();
    let tokens = t.batch_size.get() * cfg.data.max_length.get();
    let mut b = estimate(&Plan {
        cfg: &shape,
        kind: cfg.model.dtype.kind(),
        lora: lora.as_ref(),
        optim: t.optim,
        moments: t.optim_state_dtype,
        tokens,
        recomputed_layers: recomputed as i64,
        chunk: t.loss_chunk.get(),
        device,
        nf4: cfg.model.quantization == crate::model::Quantization::Nf4,
    });
    let world = planned_world(cfg)?;
    let ranks = match world {
        1 => String::new(),
        n => {
            let largest = shape.vocab_size * shape.hidden_size; // the embedding
            let bucket = (largest.max(super::dist::zero::BUCKET_ELEMS) as f64) * b.gradients
                / trainable(&shape, lora.as_ref()) as f64;
            shard(&mut b, cfg.distributed.zero_stage, n, bucket);
            format!(
                ", per rank of {n} (ZeRO stage {})",
                cfg.distributed.zero_stage as i64
            )
        }
    };
    Ok(format!(
        "memory budget on {device:?}{ranks}: {} ({:.3} B parameters, {}{}), {} x {} tokens, {recomputed} of {layers} layers recomputed\n{}",
        cfg.model.path,
        shape.num_params() as f64 / 1e9,
        cfg.model.dtype,
        match cfg.model.quantization {
            crate::model::Quantization::Nf4 => ", linears in NF4",
            crate::model::Quantization::None => "",
        },
        t.batch_size.get(),
        cfg.data.max_length.get(),
        b.table()
    ))
}

/// The world size to plan for: `distributed.world_size`, else torchrun's `WORLD_SIZE`, else 1.
fn planned_world(cfg: &crate::config::RunConfig) -> anyhow::Result<usize> {
    if let Some(n) = cfg.distributed.world_size {
        return Ok(n.get() as usize);
    }
    Ok(super::dist::World::from_env()?.size)
}

fn trainable(shape: &Config, lora: Option<&LoraConfig>) -> i64 {
    lora.map_or(shape.num_params(), |l| lora_params(shape, l) as i64)
}

/// One rank's share under ZeRO: stage 1 and 2 keep 1/n of the optimizer state and a gradient
/// shard; stage 2 frees full gradients bucket by bucket (the largest, `bucket` bytes, remains).
/// Every stage adds the buckets in flight.
fn shard(b: &mut Budget, stage: crate::config::ZeroStage, n: usize, bucket: f64) {
    use crate::config::ZeroStage;
    let n = n as f64;
    let full = b.gradients;
    match stage {
        ZeroStage::Ddp => {}
        ZeroStage::Optimizer => {
            b.optimizer /= n;
            b.gradients = full + full / n;
        }
        ZeroStage::Gradients => {
            b.optimizer /= n;
            b.gradients = full / n + bucket.min(full);
        }
    }
    b.temporaries += (2.0 * bucket / n).min(full);
}

/// A local directory's config.json, a `random:` preset, or a released Qwen3 id (the presets have
/// their shapes).
fn shape_of(path: &str) -> anyhow::Result<Config> {
    if let Some(p) = path.strip_prefix("random:") {
        return crate::model::config::preset(p);
    }
    let dir = std::path::Path::new(path);
    if dir.join("config.json").exists() {
        return Config::from_file(&dir.join("config.json"));
    }
    let known = [
        ("qwen3-0.6b", "0.6b"),
        ("qwen3-1.7b", "1.7b"),
        ("qwen3-4b", "4b"),
        ("qwen3-8b", "8b"),
    ];
    let lower = path.to_lowercase();
    match known.iter().find(|(id, _)| lower.ends_with(id)) {
        Some((_, preset)) => crate::model::config::preset(preset),
        None => anyhow::bail!("--dry-run needs the model's config.json: `{path}` is neither a local directory nor a known Qwen3 id"),
    }
}
