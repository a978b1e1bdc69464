//! Autoregressive generation on the training model code (mirrors transformers'
//! `generation/utils.py`, `GenerationMixin._sample`): one prefill over the left-padded prompts,
//! then one token per step through the KV cache, which the caller's loop owns (`LayerCache` per
//! layer) rather than the layers.
//!
//! Batches: prompts of different lengths are left-padded; positions count real tokens only
//! (`cumsum(mask) - 1`, as transformers derives `position_ids`) and the padding mask covers past
//! and new positions. A sequence that stops (eos or `max_new_tokens`) leaves the batch: its rows are
//! dropped from the cache and the mask, and padding columns no remaining row needs are trimmed, so
//! finished sequences cost nothing afterwards. Only the last position's hidden state goes through
//! the head, and the choice is made on its fp32 logits.
use super::config::GenerationConfig;
use super::sampling::{Sampler, SamplingParams};
use crate::model::{LayerCache, Model, Qwen3};
use anyhow::{bail, Result};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug)]
pub struct GenOptions {
    pub sampling: SamplingParams,
    pub max_new_tokens: usize,
    /// Any of these ends a sequence (and is kept as its last token, as transformers returns it).
    pub eos: Vec<i64>,
    /// Fills left padding; masked out, so its value does not matter.
    pub pad: i64,
    pub seed: u64,
    /// `false` recomputes the whole sequence every step: the reference the cache is tested against.
    pub use_cache: bool,
    /// Keep the fp32 logits every token was chosen from (`Generated::logits`).
    pub output_logits: bool,
}

impl GenOptions {
    /// The model's defaults (`generation_config.json`), with cache, seed 0 and no logits kept.
    pub fn from_config(c: &GenerationConfig) -> Self {
        GenOptions {
            sampling: c.sampling.clone(),
            max_new_tokens: c.max_new_tokens,
            eos: c.eos.clone(),
            pad: c.pad,
            seed: 0,
            use_cache: true,
            output_logits: false,
        }
    }

    /// Greedy decoding of up to `max_new_tokens`, stopping at `eos`.
    pub fn greedy(max_new_tokens: usize, eos: &[i64]) -> Self {
        let c = GenerationConfig {
            eos: eos.to_vec(),
            max_new_tokens,
            ..GenerationConfig::default()
        };
        GenOptions {
            sampling: SamplingParams::greedy(),
            ..Self::from_config(&c)
        }
    }
}

/// Why a sequence ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    Eos,
    MaxNewTokens,
    /// The caller's callback asked to stop (Ctrl-C in the chat).
    Interrupted,
}

#[derive(Debug)]
pub struct Generated {
    /// New tokens only; the eos that ended the sequence is the last one.
    pub token_ids: Vec<i64>,
    pub stop: Stop,
    pub prompt_len: usize,
    /// `(steps, V)` fp32 when `output_logits`.
    pub logits: Option<Tensor>,
    /// From the start of the call to this sequence's last token, prefill included.
    pub seconds: f64,
    /// The batch's prefill (prompt forward and first token).
    pub prefill_seconds: f64,
}

impl Generated {
    pub fn tokens_per_sec(&self) -> f64 {
        self.token_ids.len() as f64 / self.seconds.max(1e-9)
    }
}

/// Generates for every prompt (token ids, any lengths) in one batch.
pub fn generate(model: &Model, prompts: &[Vec<i64>], opts: &GenOptions) -> Result<Vec<Generated>> {
    generate_stream(model, prompts, opts, &mut |_, _| true)
}

/// `generate`, calling `on_token(prompt_index, token_id)` as each token is chosen; returning
/// `false` stops every sequence (`Stop::Interrupted`).
pub fn generate_stream(
    model: &Model,
    prompts: &[Vec<i64>],
    opts: &GenOptions,
    on_token: &mut dyn FnMut(usize, i64) -> bool,
) -> Result<Vec<Generated>> {
    check(&model.net, prompts, opts)?;
    tch::no_grad(|| run(&model.net, prompts, opts, on_token))
}

fn check(net: &Qwen3, prompts: &[Vec<i64>], opts: &GenOptions) -> Result<()> {
    if prompts.is_empty() {
        bail!("no prompts to generate for");
    }
    let v = net.cfg.vocab_size;
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            bail!("prompt {i} is empty: generation needs at least one prompt token");
        }
        if let Some(t) = p.iter().find(|&&t| t < 0 || t >= v) {
            bail!("prompt {i} has token id {t}, outside the model's vocabulary (0..{v})");
        }
    }
    if opts.max_new_tokens == 0 {
        bail!("max_new_tokens must be at least 1");
    }
    opts.sampling.validate()
}

/// The running batch: rows are the sequences not finished yet.
struct Batch {
    /// Original prompt index of each row.
    rows: Vec<usize>,
    /// Left padding columns of each row.
    pads: Vec<i64>,
    /// `(B, T)` 1 = token, 0 = pad, over every position so far.
    mask: Tensor,
    /// `(B)` position of each row's next token (its count of real tokens).
    next_pos: Tensor,
    cache: Vec<LayerCache>,
    /// Without a cache: all ids and positions so far, `(B, T)`.
    seq: Tensor,
    seq_pos: Tensor,
}

impl Batch {
    /// The padding mask, when some row is padded (`Mask::new` wants `None` otherwise).
    fn padding(&self) -> Option<Tensor> {
        self.pads
            .iter()
            .any(|&p| p > 0)
            .then(|| self.mask.shallow_clone())
    }

    /// Keeps `keep` (row indices) and trims padding columns no remaining row needs.
    fn retain(&mut self, keep: &[usize]) {
        let idx = Tensor::from_slice(&keep.iter().map(|&r| r as i64).collect::<Vec<_>>())
            .to(self.mask.device());
        let sel = |t: &Tensor| t.index_select(0, &idx);
        self.rows = keep.iter().map(|&r| self.rows[r]).collect();
        self.pads = keep.iter().map(|&r| self.pads[r]).collect();
        self.mask = sel(&self.mask);
        self.next_pos = sel(&self.next_pos);
        self.seq = sel(&self.seq);
        self.seq_pos = sel(&self.seq_pos);
        let trim = *self.pads.iter().min().expect("a row remains");
        for c in &mut self.cache {
            c.retain(&idx, trim);
        }
        if trim > 0 {
            let cut = |t: &Tensor, dim: i64| t.narrow(dim, trim, t.size()[dim as usize] - trim);
            self.pads.iter_mut().for_each(|p| *p -= trim);
            self.mask = cut(&self.mask, 1);
            self.seq = cut(&self.seq, 1);
            self.seq_pos = cut(&self.seq_pos, 1);
        }
    }
}

/// The dtype of the KV cache and of attention while generating. On CPU fp32: libtorch's CPU
/// attention in bf16 runs its reference GEMM where the CPU has no bf16 instructions (3x slower than
/// fp32 at 1024 past tokens on an AVX2 EPYC), and bf16 keys and values are held exactly in fp32;
/// attention is then computed more precisely than transformers' bf16 SDPA, never less. GPUs keep
/// the model's dtype.
fn cache_kind(net: &Qwen3, dev: Device) -> Kind {
    match dev {
        Device::Cpu => Kind::Float,
        _ => net.kind,
    }
}

/// fp32 logits `(B, V)` of the last position only (never the full-vocabulary logits of all positions).
fn last_logits(net: &Qwen3, hidden: &Tensor) -> Tensor {
    net.logits(&hidden.select(1, -1)).to_kind(Kind::Float) // (B, C) -> (B, V)
}

fn run(
    net: &Qwen3,
    prompts: &[Vec<i64>],
    opts: &GenOptions,
    on_token: &mut dyn FnMut(usize, i64) -> bool,
) -> Result<Vec<Generated>> {
    let start = Instant::now();
    let dev = net.embed_tokens.device();
    let (b, t) = (
        prompts.len(),
        prompts.iter().map(Vec::len).max().unwrap_or(0),
    );
    let mut ids = vec![opts.pad; b * t];
    let mut mask = vec![0i64; b * t];
    for (i, p) in prompts.iter().enumerate() {
        let off = i * t + t - p.len();
        ids[off..off + p.len()].copy_from_slice(p);
        mask[off..off + p.len()].fill(1);
    }
    let shape = [b as i64, t as i64];
    let ids = Tensor::from_slice(&ids).view(shape).to(dev); // (B, T)
    let mask = Tensor::from_slice(&mask).view(shape).to(dev); // (B, T)
    let positions = (mask.cumsum(1, Kind::Int64) - 1).clamp_min(0); // (B, T), pads at 0
    let mut batch = Batch {
        rows: (0..b).collect(),
        pads: prompts.iter().map(|p| (t - p.len()) as i64).collect(),
        next_pos: mask.sum_dim_intlist(1, false, Kind::Int64), // (B)
        mask,
        cache: (0..net.layers.len())
            .map(|_| LayerCache::new(cache_kind(net, dev)))
            .collect(),
        seq: ids.shallow_clone(),
        seq_pos: positions.shallow_clone(),
    };
    let hidden = if opts.use_cache {
        net.forward_cached(
            &ids,
            batch.padding().as_ref(),
            Some(&positions),
            &mut batch.cache,
        )
    } else {
        net.forward(&ids, batch.padding().as_ref(), Some(&positions), false)
    };
    let mut logits = last_logits(net, &hidden);

    let mut out: Vec<Generated> = prompts
        .iter()
        .map(|p| Generated {
            token_ids: Vec::new(),
            stop: Stop::MaxNewTokens,
            prompt_len: p.len(),
            logits: None,
            seconds: 0.0,
            prefill_seconds: 0.0,
        })
        .collect();
    let mut kept_logits: Vec<Vec<Tensor>> = (0..b).map(|_| Vec::new()).collect();
    let mut sampler = Sampler::new(opts.sampling.clone(), opts.seed);
    let mut prefill_seconds = None;
    // one token per row per step from here: the cores go to the decode GEMV (CPU, bf16)
    let _cores = opts
        .use_cache
        .then(|| crate::model::gemv::decoding(dev, net.kind, b))
        .flatten();
    loop {
        let next = sampler.pick(&logits);
        let elapsed = start.elapsed().as_secs_f64();
        let prefill = *prefill_seconds.get_or_insert(elapsed);
        let mut keep = Vec::with_capacity(next.len());
        let mut interrupted = false;
        for (row, &tok) in next.iter().enumerate() {
            let i = batch.rows[row];
            let g = &mut out[i];
            g.token_ids.push(tok);
            g.seconds = elapsed;
            g.prefill_seconds = prefill;
            if opts.output_logits {
                kept_logits[i].push(logits.get(row as i64));
            }
            interrupted |= !on_token(i, tok);
            if opts.eos.contains(&tok) {
                g.stop = Stop::Eos;
            } else if g.token_ids.len() >= opts.max_new_tokens {
                g.stop = Stop::MaxNewTokens;
            } else {
                keep.push(row);
            }
        }
        if interrupted {
            keep.iter()
                .for_each(|&row| out[batch.rows[row]].stop = Stop::Interrupted);
            break;
        }
        if keep.is_empty() {
            break;
        }
        let tokens: Vec<i64> = keep.iter().map(|&r| next[r]).collect();
        if keep.len() < batch.rows.len() {
            batch.retain(&keep);
        }
        let n = keep.len() as i64;
        let tokens = Tensor::from_slice(&tokens).view([n, 1]).to(dev); // (B, 1)
        let pos = batch.next_pos.unsqueeze(1); // (B, 1)
        batch.next_pos = &batch.next_pos + 1;
        batch.mask = Tensor::cat(&[&batch.mask, &batch.mask.ones_like().narrow(1, 0, 1)], 1);
        let hidden = if opts.use_cache {
            net.forward_cached(
                &tokens,
                batch.padding().as_ref(),
                Some(&pos),
                &mut batch.cache,
            )
        } else {
            batch.seq = Tensor::cat(&[&batch.seq, &tokens], 1);
            batch.seq_pos = Tensor::cat(&[&batch.seq_pos, &pos], 1);
            net.forward(
                &batch.seq,
                batch.padding().as_ref(),
                Some(&batch.seq_pos),
                false,
            )
        };
        logits = last_logits(net, &hidden);
    }
    if opts.output_logits {
        for (g, l) in out.iter_mut().zip(kept_logits) {
            g.logits = Some(Tensor::stack(&l, 0)); // (steps, V)
        }
    }
    Ok(out)
}
