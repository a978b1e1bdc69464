//! bitsandbytes' `AdamW8bit` (bitsandbytes==0.50.2 on CPU): bitsandbytes/optim/optimizer.py
//! (`Optimizer2State.init_state`, `update_step`) with the CPU kernels of
//! bitsandbytes/backends/cpu/ops.py (`_optimizer_update_8bit_blockwise_cpu`,
//! `_optimizer_update_32bit_cpu`).
//!
//! Both moments live as 8-bit codes in blocks of 256 with an f32 absmax per block: m on the
//! signed dynamic map, v on the unsigned one (model/blockwise.rs). Each step dequantizes a block,
//! updates it in f32 and quantizes it again. Tensors under `min_8bit_size` (4096) elements keep
//! f32 moments and take bnb's 32-bit update, whose arithmetic differs (eps scaled by the bias
//! correction, the step folded into one scalar). Weight decay is decoupled,
//! `p *= 1 - lr * weight_decay`, applied only to the parameters marked `decay`.
//!
//! The arithmetic is plain Rust, element by element in f32, in the order and with the roundings
//! of the torch ops bnb calls (so the weights and the codes are bit-identical to bnb's): scalars
//! are computed in f64 as Python does and rounded to f32 as torch does when it applies them;
//! `add_(x, alpha=a)` is one fused multiply-add, as torch's vectorised CPU kernel computes it.
//! Blocks are independent, so they update in parallel, and in slices of whole blocks (`SLICE`),
//! so that no f32 copy of a whole tensor is made.
use crate::model::blockwise::{self, Quantizer};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

mod state;
pub use state::State;

/// Values per absmax of the 8-bit moments.
pub const BLOCK: usize = 256;
/// bnb's `min_8bit_size`: smaller tensors keep f32 moments.
pub const MIN_8BIT_SIZE: usize = 4096;
/// Elements updated at once (1024 blocks): the f32 copies of a slice's weights, gradient and
/// moments are 1 MB each, where whole tensors' would be the embedding's size each (1.2 GB for
/// Qwen3-1.7B's). Every element's arithmetic is the same in slices (torch's sqrt too: its
/// result does not depend on where an element sits in the tensor), so slicing changes no bit.
pub const SLICE: usize = 1 << 18;
/// The f32 copies of one slice alive at once during the update (weights, gradient, both
/// moments, their square root, torch's sqrt input and output, the written-back weights).
pub const SLICE_COPIES: usize = 8;

/// A parameter's moments.
pub enum Moments {
    /// f32 m and v (tensors under `MIN_8BIT_SIZE`).
    Full { m: Vec<f32>, v: Vec<f32> },
    /// 8-bit codes and per-block absmax of m (signed map) and v (unsigned map).
    Quantized {
        m: Vec<u8>,
        v: Vec<u8>,
        absmax_m: Vec<f32>,
        absmax_v: Vec<f32>,
    },
}

impl Moments {
    /// Zero f32 moments for `n` elements.
    fn full(n: usize) -> Self {
        Moments::Full {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }
}

pub struct Param {
    pub name: String,
    pub tensor: Tensor,
    pub decay: bool,
    pub moments: Moments,
}

/// The f32 scalars one step applies, derived as bnb derives them (f64, then rounded by torch).
#[derive(Clone, Copy)]
struct Scalars {
    b1: f32,
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    decay: Option<f32>,
    // 8-bit update: p += (-lr / c1) * m / (sqrt(v) / c2 + eps)
    c2: f32,
    eps: f32,
    neg_lr_c1: f32,
    // 32-bit update: p += (-lr * c2 / c1) * (m / (sqrt(v) + eps * c2))
    eps_c2: f32,
    step_size: f32,
}

impl Scalars {
    fn new(betas: (f64, f64), eps: f64, lr: f64, wd: f64, step: i64) -> Self {
        let (b1, b2) = betas;
        // Python's `beta ** step` is C's pow
        let c1 = 1.0 - b1.powf(step as f64);
        let c2 = (1.0 - b2.powf(step as f64)).sqrt();
        Scalars {
            b1: b1 as f32,
            one_minus_b1: (1.0 - b1) as f32,
            b2: b2 as f32,
            one_minus_b2: (1.0 - b2) as f32,
            decay: (wd > 0.0).then_some((1.0 - lr * wd) as f32),
            c2: c2 as f32,
            eps: eps as f32,
            neg_lr_c1: (-lr / c1) as f32,
            eps_c2: (eps * c2) as f32,
            step_size: (-lr * c2 / c1) as f32,
        }
    }

    /// `m.mul_(b1).add_(g, alpha=1-b1)`; `v.mul_(b2).addcmul_(g, g, value=1-b2)`: torch's CPU
    /// kernels fuse both into a multiply-add (`fmadd(g, alpha, m)`; `v + (value * g) * g`
    /// contracted by the compiler); an unfused `v + value * g * g` differs in about 1 of 6
    /// elements.
    fn moments(&self, m: &mut f32, v: &mut f32, g: f32) {
        *m = g.mul_add(self.one_minus_b1, *m * self.b1);
        *v = (self.one_minus_b2 * g).mul_add(g, *v * self.b2);
    }

    /// The 8-bit kernel's step: decay, then `p.addcdiv_(m, sqrt(v) / c2 + eps, value=-lr/c1)`
    /// (`p + (value * m) / denom`, nothing to fuse).
    fn step_8bit(&self, p: &mut f32, m: f32, root_v: f32, decay: bool) {
        let denom = root_v / self.c2 + self.eps;
        if let (Some(d), true) = (self.decay, decay) {
            *p *= d;
        }
        *p += self.neg_lr_c1 * m / denom;
    }

    /// The 32-bit kernel's step: decay, then `p.add_(m / (sqrt(v) + eps * c2), alpha=step)`.
    fn step_32bit(&self, p: &mut f32, m: f32, root_v: f32, decay: bool) {
        if let (Some(d), true) = (self.decay, decay) {
            *p *= d;
        }
        let update = m / (root_v + self.eps_c2);
        *p = update.mul_add(self.step_size, *p);
    }
}

/// `v.sqrt()` as torch computes it on the CPU: its vectorised sqrt is not IEEE's correctly rounded
/// one (34 of 300 step-1 values differ by an ulp from `f32::sqrt` here), so it comes from libtorch.
fn torch_sqrt(v: &[f32]) -> Vec<f32> {
    Vec::<f32>::try_from(&Tensor::from_slice(v).sqrt()).expect("a CPU f32 tensor")
}

/// Quantizes f32 moments into 256-blocks of codes and absmax (the blocks in parallel).
fn quantize(q: &Quantizer, x: &[f32], codes: &mut [u8], absmax: &mut [f32]) {
    x.par_chunks(BLOCK)
        .zip(codes.par_chunks_mut(BLOCK))
        .zip(absmax.par_iter_mut())
        .for_each(|((x, c), a)| q.quantize(x, BLOCK, c, std::slice::from_mut(a)));
}

/// A tensor's values as f32 on the CPU (bf16 widens exactly).
fn values(t: &Tensor) -> Vec<f32> {
    let flat = t.to_device(Device::Cpu).to_kind(Kind::Float).reshape([-1]);
    Vec::<f32>::try_from(&flat).expect("a CPU f32 tensor")
}

/// Bytes of moments a parameter of `n` elements holds: f32 m and v under `MIN_8BIT_SIZE` (or
/// with `fp32`), else a byte each and an f32 absmax per block of each (`--dry-run` counts these).
pub fn moment_bytes(n: usize, fp32: bool) -> usize {
    match fp32 || n < MIN_8BIT_SIZE {
        true => 8 * n,
        false => 2 * n + 8 * blockwise::blocks(n, BLOCK),
    }
}

impl Param {
    fn new(name: String, tensor: Tensor, decay: bool) -> Self {
        let n = tensor.numel();
        let moments = if n < MIN_8BIT_SIZE {
            Moments::full(n)
        } else {
            let blocks = blockwise::blocks(n, BLOCK);
            Moments::Quantized {
                m: vec![0; n],
                v: vec![0; n],
                absmax_m: vec![0.0; blocks],
                absmax_v: vec![0.0; blocks],
            }
        };
        Param {
            name,
            tensor,
            decay,
            moments,
        }
    }

    /// The update, `slice` elements (whole blocks) at a time: each slice's weights and gradient
    /// are read into f32 vectors, updated with their moments, and written back.
    fn update(&mut self, s: &Scalars, grad: &Tensor, slice: usize) {
        let n = self.tensor.numel();
        let (w, g) = (self.tensor.view([-1]), grad.reshape([-1]));
        let decay = self.decay;
        let (sm, sv) = (blockwise::signed(), blockwise::unsigned());
        for start in (0..n).step_by(slice) {
            let end = (start + slice).min(n);
            let part = |t: &Tensor| t.narrow(0, start as i64, (end - start) as i64);
            let g = values(&part(&g));
            let mut p = values(&part(&w));
            match &mut self.moments {
                Moments::Full { m, v } => {
                    let (m, v) = (&mut m[start..end], &mut v[start..end]);
                    for i in 0..p.len() {
                        s.moments(&mut m[i], &mut v[i], g[i]);
                    }
                    let root = torch_sqrt(v);
                    for i in 0..p.len() {
                        s.step_32bit(&mut p[i], m[i], root[i], decay);
                    }
                }
                Moments::Quantized {
                    m: qm,
                    v: qv,
                    absmax_m,
                    absmax_v,
                } => {
                    let (qm, qv) = (&mut qm[start..end], &mut qv[start..end]);
                    let blocks = start / BLOCK..end.div_ceil(BLOCK);
                    let am = &mut absmax_m[blocks.clone()];
                    let av = &mut absmax_v[blocks];
                    let (mut m, mut v) = (vec![0f32; p.len()], vec![0f32; p.len()]);
                    blockwise::dequantize(sm.code(), qm, am, BLOCK, &mut m);
                    blockwise::dequantize(sv.code(), qv, av, BLOCK, &mut v);
                    for i in 0..p.len() {
                        s.moments(&mut m[i], &mut v[i], g[i]);
                    }
                    let root = torch_sqrt(&v);
                    for i in 0..p.len() {
                        s.step_8bit(&mut p[i], m[i], root[i], decay);
                    }
                    quantize(sm, &m, qm, am);
                    quantize(sv, &v, qv, av);
                }
            }
            // `p.data.copy_(p_fp32)`: one rounding into a bf16 weight
            let new = Tensor::from_slice(&p)
                .to_kind(self.tensor.kind())
                .to_device(self.tensor.device());
            tch::no_grad(|| part(&w).copy_(&new));
        }
    }

    /// Bytes of moments held.
    fn state_bytes(&self) -> usize {
        match &self.moments {
            Moments::Full { m, v } => 4 * (m.len() + v.len()),
            Moments::Quantized { m, v, absmax_m, .. } => m.len() + v.len() + 8 * absmax_m.len(),
        }
    }
}

pub struct AdamW8bit {
    pub params: Vec<Param>,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    /// Optimizer steps taken (bnb's `state["step"]`).
    pub step: i64,
    /// Elements updated at once, a multiple of `BLOCK` (`SLICE`; tests set less).
    pub slice: usize,
}

impl AdamW8bit {
    /// `params`: trainable (name, tensor) pairs. As optim.rs's AdamW, norm weights and biases get
    /// no weight decay (transformers puts them in a group with weight_decay 0).
    pub fn new(params: Vec<(String, Tensor)>, betas: (f64, f64), eps: f64, wd: f64) -> Self {
        let params = params
            .into_iter()
            .map(|(name, t)| {
                let decay = !name.contains("norm") && !name.ends_with(".bias");
                Param::new(name, t, decay)
            })
            .collect();
        AdamW8bit {
            params,
            betas,
            eps,
            weight_decay: wd,
            step: 0,
            slice: SLICE,
        }
    }

    /// Keeps f32 moments (and bnb's 32-bit update) for parameter `name` whatever its size, as
    /// bnb's `GlobalOptimManager.register_module_override(module, "weight", {"optim_bits": 32})`
    /// does; transformers' Trainer registers every embedding so for `optim="adamw_bnb_8bit"`.
    /// Before the first step; returns whether `name` is one of the parameters.
    pub fn keep_fp32(&mut self, name: &str) -> bool {
        assert_eq!(
            self.step, 0,
            "keep_fp32 after a step would drop the moments"
        );
        match self.params.iter_mut().find(|p| p.name == name) {
            Some(p) => {
                p.moments = Moments::full(p.tensor.numel());
                true
            }
            None => false,
        }
    }

    /// One step over every parameter with a gradient.
    pub fn step(&mut self, lr: f64) {
        assert!(
            self.slice > 0 && self.slice.is_multiple_of(BLOCK),
            "slices of whole blocks"
        );
        self.step += 1;
        let s = Scalars::new(self.betas, self.eps, lr, self.weight_decay, self.step);
        tch::no_grad(|| {
            for p in &mut self.params {
                let g = p.tensor.grad();
                if g.defined() {
                    p.update(&s, &g, self.slice);
                }
            }
        });
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.tensor.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Bytes of moments this optimizer holds.
    pub fn state_bytes(&self) -> i64 {
        self.params.iter().map(|p| p.state_bytes() as i64).sum()
    }
}

/// The quantizers the moments use (for tests and tools that decode a saved state).
pub fn quantizers() -> (&'static Quantizer, &'static Quantizer) {
    (blockwise::signed(), blockwise::unsigned())
}
