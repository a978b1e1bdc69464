//! Gradient synchronisation over ranks: DDP (stage 0, gradients all-reduced) and ZeRO stages 1
//! and 2 (each rank owns an equal chunk of every bucket: gradients are reduce-scattered into that
//! chunk, AdamW updates only it, and the updated parameters are all-gathered).
//!
//! Parameters are grouped into buckets along the backward: the head and final norm first, then
//! the layers from the last down, then the embedding. The recompute loop says when each part's
//! gradients are final (`Ready`), and its buckets' collectives start then, overlapping the rest
//! of the backward; `finish` waits for them. Every rank starts the same collectives in the same
//! order (c10d pairs them by order), including a rank whose share of a short window is empty.
use super::c10d::{self, Group, Work};
use crate::config::ZeroStage;
use anyhow::Result;
use std::cmp::Reverse;
use tch::{Kind, Tensor};

/// Parameters of at most this many elements share a bucket (one flat buffer per collective).
pub const BUCKET_ELEMS: i64 = 1 << 24;

/// Collectives in flight at once: each holds its bucket's flat copy, so this bounds them.
const IN_FLIGHT: usize = 2;

/// A point of the backward after which some parameters' gradients are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ready {
    /// The final norm and an untied head.
    Tail,
    /// Layer `i` and every layer above it.
    Layer(Reverse<usize>),
    /// The embedding (and a head tied to it): the end of the backward.
    Embedding,
}

impl Ready {
    pub fn layer(i: usize) -> Ready {
        Ready::Layer(Reverse(i))
    }

    fn of(name: &str) -> Ready {
        let layer = name
            .strip_prefix("model.layers.")
            .and_then(|rest| rest.split('.').next()?.parse().ok());
        match layer {
            Some(i) => Ready::layer(i),
            None if name.starts_with("model.embed_tokens") => Ready::Embedding,
            None => Ready::Tail,
        }
    }
}

struct Bucket {
    ready: Ready,
    /// Indices into `Sync::params`, in flat order.
    params: Vec<usize>,
    numel: i64,
    /// Each rank's share (the bucket padded to `chunk * world`).
    chunk: i64,
    /// Where this bucket's chunk sits in the rank's gradient shard.
    shard_at: i64,
}

/// A part of a parameter this rank updates: `weight` views the parameter's elements
/// `offset..offset + len`, `grad` the matching gradient in the rank's shard.
pub struct Piece {
    pub name: String,
    pub weight: Tensor,
    pub grad: Tensor,
    pub offset: i64,
}

struct Pending {
    bucket: usize,
    work: Work,
    flat: Tensor,
    out: Option<Tensor>,
}

pub struct Sync {
    stage: ZeroStage,
    rank: i64,
    world: i64,
    names: Vec<String>,
    params: Vec<Tensor>,
    buckets: Vec<Bucket>,
    /// Stage 1-2: this rank's chunk of every bucket's gradient, summed over ranks.
    shard: Option<Tensor>,
    /// The next bucket to start this round, and the collectives in flight.
    next: usize,
    pending: Vec<Pending>,
    /// Time spent waiting for collectives to complete (not hidden behind the backward).
    waited: std::time::Duration,
}

impl Sync {
    /// `params`: the trainable (name, tensor) pairs, all of one dtype and device.
    pub fn new(stage: ZeroStage, rank: usize, world: usize, params: &[(String, Tensor)]) -> Sync {
        let world = world as i64;
        let mut order: Vec<usize> = (0..params.len()).collect();
        order.sort_by_key(|&i| Ready::of(&params[i].0)); // stable: name order within a part
        let mut buckets: Vec<Bucket> = vec![];
        let mut shard_at = 0;
        for i in order {
            let (name, t) = &params[i];
            let (ready, n) = (Ready::of(name), t.numel() as i64);
            match buckets.last_mut() {
                Some(b) if b.ready == ready && b.numel + n <= BUCKET_ELEMS => {
                    b.params.push(i);
                    b.numel += n;
                }
                _ => buckets.push(Bucket {
                    ready,
                    params: vec![i],
                    numel: n,
                    chunk: 0,
                    shard_at: 0,
                }),
            }
        }
        for b in &mut buckets {
            b.chunk = (b.numel + world - 1) / world;
            b.shard_at = shard_at;
            shard_at += b.chunk;
        }
        let first = params.first().map(|p| &p.1);
        let shard = (stage != ZeroStage::Ddp).then(|| {
            let (kind, dev) =
                first.map_or((Kind::Float, tch::Device::Cpu), |t| (t.kind(), t.device()));
            Tensor::zeros([shard_at], (kind, dev))
        });
        Sync {
            stage,
            rank: rank as i64,
            world,
            names: params.iter().map(|p| p.0.clone()).collect(),
            params: params.iter().map(|p| p.1.shallow_clone()).collect(),
            buckets,
            shard,
            next: 0,
            pending: vec![],
            waited: Default::default(),
        }
    }

    pub fn stage(&self) -> ZeroStage {
        self.stage
    }

    /// ZeRO (stage 1-2): each rank updates and saves only its parts of the optimizer state.
    pub fn sharded(&self) -> bool {
        self.shard.is_some()
    }

    pub fn waited(&self) -> std::time::Duration {
        self.waited
    }

    fn wait(&mut self, work: Work) -> Result<()> {
        let t = std::time::Instant::now();
        let done = work.wait();
        self.waited += t.elapsed();
        done
    }

    /// Stage 1-2: the parameter parts this rank updates (none for DDP: it updates everything).
    pub fn pieces(&self) -> Vec<Piece> {
        let Some(shard) = &self.shard else {
            return vec![];
        };
        let mut out = vec![];
        for b in &self.buckets {
            let (lo, hi) = (self.rank * b.chunk, (self.rank + 1) * b.chunk);
            let mut at = 0; // the parameter's first element within the bucket
            for &i in &b.params {
                let n = self.params[i].numel() as i64;
                let (s, e) = (at.max(lo), (at + n).min(hi));
                if s < e {
                    out.push(Piece {
                        name: self.names[i].clone(),
                        weight: self.params[i].view([-1]).narrow(0, s - at, e - s),
                        grad: shard.narrow(0, b.shard_at + s - lo, e - s),
                        offset: s - at,
                    });
                }
                at += n;
            }
        }
        out
    }

    /// The bucket's gradients as one padded flat buffer (a parameter without a gradient, on a
    /// rank that ran no micro-batch, counts as zeros).
    fn flat_grads(&self, b: &Bucket) -> Tensor {
        let parts: Vec<Tensor> = b
            .params
            .iter()
            .map(|&i| {
                let (p, g) = (&self.params[i], self.params[i].grad());
                if g.defined() {
                    g.view([-1])
                } else {
                    Tensor::zeros([p.numel() as i64], (p.kind(), p.device()))
                }
            })
            .collect();
        self.padded(b, &parts)
    }

    /// Starts the collectives of every bucket whose gradients are final at `point`.
    pub fn ready(&mut self, group: &Group, point: Ready) -> Result<()> {
        while self.next < self.buckets.len() && self.buckets[self.next].ready <= point {
            self.launch(group, self.next)?;
            self.next += 1;
        }
        Ok(())
    }

    fn launch(&mut self, group: &Group, bi: usize) -> Result<()> {
        let b = &self.buckets[bi];
        let flat = tch::no_grad(|| self.flat_grads(b));
        let (work, out) = match self.stage {
            ZeroStage::Ddp => (group.all_reduce(&flat)?, None),
            ZeroStage::Optimizer | ZeroStage::Gradients => {
                let out = Tensor::empty([b.chunk], (flat.kind(), flat.device()));
                (group.reduce_scatter(&out, &flat)?, Some(out))
            }
        };
        if self.stage == ZeroStage::Gradients {
            // the flat copy is all that is left of this micro-batch's full gradients
            for &i in &b.params {
                c10d::clear_grad(&self.params[i]);
            }
        }
        self.pending.push(Pending {
            bucket: bi,
            work,
            flat,
            out,
        });
        self.drain(IN_FLIGHT)
    }

    /// Starts what is left of this round and waits for all of it: DDP's gradients are then the
    /// sum over ranks, ZeRO's shard has this round added.
    pub fn finish(&mut self, group: &Group) -> Result<()> {
        self.ready(group, Ready::Embedding)?;
        self.next = 0;
        self.drain(0)
    }

    /// Completes the oldest collectives until at most `keep` are in flight.
    fn drain(&mut self, keep: usize) -> Result<()> {
        while self.pending.len() > keep {
            let p = self.pending.remove(0);
            self.wait(p.work)?;
            let b = &self.buckets[p.bucket];
            tch::no_grad(|| match (&p.out, &self.shard) {
                (Some(out), Some(shard)) => {
                    let _ = shard.narrow(0, b.shard_at, b.chunk).g_add_(out);
                }
                _ => {
                    let mut at = 0;
                    for &i in &b.params {
                        let param = &self.params[i];
                        let n = param.numel() as i64;
                        let summed = p.flat.narrow(0, at, n).view_as(param);
                        let g = param.grad();
                        if g.defined() && g.data_ptr() == summed.data_ptr() {
                            // reduced in place
                        } else if g.defined() {
                            g.shallow_clone().copy_(&summed);
                        } else {
                            c10d::set_grad(param, &summed.copy());
                        }
                        at += n;
                    }
                }
            });
        }
        Ok(())
    }

    /// Stage 1-2, after the optimizer step: every rank's updated chunks, gathered into every
    /// rank's parameters (at most `IN_FLIGHT` buckets' buffers at once).
    pub fn gather_params(&mut self, group: &Group) -> Result<()> {
        if self.shard.is_none() {
            return Ok(());
        }
        let mut pending = std::collections::VecDeque::new();
        for bi in 0..=self.buckets.len() {
            while pending.len() > IN_FLIGHT || (bi == self.buckets.len() && !pending.is_empty()) {
                let (done, work, all): (usize, Work, Tensor) = pending.pop_front().expect("some");
                self.wait(work)?;
                self.scatter_params(done, &all);
            }
            if let Some(b) = self.buckets.get(bi) {
                let own = self.rank * b.chunk;
                let flat = tch::no_grad(|| self.flat_params(b));
                // a view of the parameter itself is gathered into directly
                let view = flat.numel() == self.params[b.params[0]].numel();
                let mine = flat.narrow(0, own, b.chunk).copy();
                let all = match view {
                    true => flat.detach(), // the parameter's storage, outside autograd
                    false => Tensor::empty([b.chunk * self.world], (mine.kind(), mine.device())),
                };
                pending.push_back((bi, group.all_gather(&all, &mine)?, all));
            }
        }
        Ok(())
    }

    /// The bucket's parameters as one padded flat copy.
    fn flat_params(&self, b: &Bucket) -> Tensor {
        let parts: Vec<Tensor> = b
            .params
            .iter()
            .map(|&i| self.params[i].view([-1]))
            .collect();
        self.padded(b, &parts)
    }

    /// `parts` joined and padded with zeros to `chunk * world` elements: a copy, or a view of
    /// the one part when it needs no padding (a large tensor, the embedding: no copy of it).
    fn padded(&self, b: &Bucket, parts: &[Tensor]) -> Tensor {
        let pad = b.chunk * self.world - b.numel;
        if let ([one], 0) = (parts, pad) {
            return one.shallow_clone();
        }
        let flat = Tensor::cat(parts, 0);
        if pad == 0 {
            return flat;
        }
        let zeros = Tensor::zeros([pad], (flat.kind(), flat.device()));
        Tensor::cat(&[flat, zeros], 0)
    }

    /// Copies a gathered bucket back into its parameters (unless it was gathered in place).
    fn scatter_params(&self, bi: usize, all: &Tensor) {
        if all.data_ptr() == self.params[self.buckets[bi].params[0]].data_ptr() {
            return;
        }
        let mut at = 0;
        tch::no_grad(|| {
            for &i in &self.buckets[bi].params {
                let param = &self.params[i];
                let n = param.numel() as i64;
                param
                    .shallow_clone()
                    .view([-1])
                    .copy_(&all.narrow(0, at, n));
                at += n;
            }
        });
    }

    /// Zeroes the full gradients (ZeRO's AdamW zeroes only its shard).
    pub fn zero_grads(&mut self) {
        for p in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }
}
