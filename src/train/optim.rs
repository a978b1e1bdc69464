//! AdamW (torch.optim.AdamW's update, transformers Trainer's defaults), global-norm gradient
//! clipping and the linear schedule with warmup (`get_linear_schedule_with_warmup`).
//!
//! The moments' dtype (`train.optim_state_dtype`): fp32 (8 bytes per trainable parameter), or bf16
//! rounded stochastically (4 bytes; the default for bf16 weights), or the parameter's own dtype
//! with torch's op-by-op rounding (`param`, for like-for-like comparisons with the Trainer). With
//! lr 1e-4 and bf16's 8-bit mantissa, round-to-nearest bf16 moments lose most small gradients'
//! contribution (`v` stops moving); stochastic rounding keeps them right on average. The update
//! is computed in fp32 and rounded once into the weight: on CPU in one pass
//! (`adamw_kernel.rs`), elsewhere with libtorch ops that compute the same values.
use super::adamw_kernel::{self as kernel, Hyper};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// How AdamW keeps its moments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MomentDtype {
    /// bf16 (as `Bf16`) for bf16 parameters, fp32 for the others.
    Auto,
    Fp32,
    /// bf16, rounded stochastically after the fp32 update.
    Bf16,
    /// The parameter's dtype, each op rounded as torch's `_single_tensor_adamw` does.
    Param,
}

/// Elements updated at once. The slice temporaries (4 MB in fp32) stay under glibc's largest
/// mmap threshold (32 MB), so after the first slice they are reused from the heap instead of being
/// mapped, page-faulted in and unmapped again for every slice of every step.
const SLICE_ELEMS: i64 = 1 << 20;
/// The same on a GPU (64 MB in fp32).
pub const GPU_SLICE_ELEMS: i64 = 1 << 24;

pub struct Param {
    pub name: String,
    pub tensor: Tensor,
    pub decay: bool,
    /// Where `tensor` starts within the named parameter (a ZeRO shard's part; else 0).
    pub offset: i64,
    /// The gradient, when it is not `tensor.grad()` (a ZeRO shard's).
    grad: Option<Tensor>,
    m: Tensor,
    v: Tensor,
    /// Hash of the name: the stochastic rounding's stream for this parameter.
    key: u32,
}

impl Param {
    pub fn grad(&self) -> Tensor {
        match &self.grad {
            Some(g) => g.shallow_clone(),
            None => self.tensor.grad(),
        }
    }
}

/// Saved moments: for each parameter name, the parts (element offset, flat values) found in a
/// checkpoint (one whole part from a single process; one per rank that owned some of it).
pub type Moments = BTreeMap<String, Vec<(i64, Tensor)>>;

pub struct AdamW {
    pub params: Vec<Param>,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub moments: MomentDtype,
    /// Use the one-pass CPU kernel where it applies (tests turn it off to compare).
    pub kernel: bool,
    /// Optimizer steps taken (torch's `state['step']`).
    pub step: i64,
}

impl AdamW {
    /// `params`: trainable (name, tensor) pairs. Norm weights get no weight decay, as transformers'
    /// `get_decay_parameter_names` excludes `*norm*` parameters (and biases; Qwen3 has none).
    pub fn new(
        params: Vec<(String, Tensor)>,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
        moments: MomentDtype,
    ) -> Self {
        let parts = params.into_iter().map(|(n, t)| (n, t, 0, None)).collect();
        Self::over(parts, betas, eps, weight_decay, moments)
    }

    /// AdamW over parts of parameters: (name, weight view, offset in the parameter, gradient).
    pub fn over(
        parts: Vec<(String, Tensor, i64, Option<Tensor>)>,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
        moments: MomentDtype,
    ) -> Self {
        let params = parts
            .into_iter()
            .map(|(name, tensor, offset, grad)| {
                let kind = match moments {
                    MomentDtype::Fp32 => Kind::Float,
                    MomentDtype::Bf16 => Kind::BFloat16,
                    MomentDtype::Param => tensor.kind(),
                    MomentDtype::Auto if tensor.kind() == Kind::BFloat16 => Kind::BFloat16,
                    MomentDtype::Auto => Kind::Float,
                };
                let m = Tensor::zeros(tensor.size(), (kind, tensor.device()));
                let v = Tensor::zeros(tensor.size(), (kind, tensor.device()));
                let decay = !name.contains("norm") && !name.ends_with(".bias");
                let key = name_key(&name);
                Param {
                    key,
                    name,
                    tensor,
                    decay,
                    offset,
                    grad,
                    m,
                    v,
                }
            })
            .collect();
        AdamW {
            params,
            betas,
            eps,
            weight_decay,
            moments,
            kernel: true,
            step: 0,
        }
    }

    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let (b1, b2) = self.betas;
        let h = Hyper {
            decay: 1.0,
            w1: (1.0 - b1) as f32,
            b2: b2 as f32,
            w2: (1.0 - b2) as f32,
            eps: self.eps as f32,
            step_size: (lr / (1.0 - b1.powi(self.step as i32))) as f32,
            bc2_sqrt: (1.0 - b2.powi(self.step as i32)).sqrt() as f32,
            key: 0,
        };
        let decay = (1.0 - lr * self.weight_decay) as f32;
        let threads = tch::get_num_threads().max(1) as usize;
        let step_key = kernel::hash32(self.step as u32 ^ 0x5bd1_e995);
        tch::no_grad(|| {
            for p in &mut self.params {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let h = Hyper {
                    decay: if p.decay && self.weight_decay > 0.0 {
                        decay
                    } else {
                        1.0
                    },
                    key: kernel::hash32(p.key ^ step_key),
                    ..h
                };
                let fused = self.moments != MomentDtype::Param
                    && self.kernel
                    && kernel::supports(&p.tensor, &g, &p.m, &p.v);
                if fused {
                    kernel::step(&p.tensor, &g, &p.m, &p.v, p.offset, h, threads);
                } else {
                    update_by_ops(p, &g, h, self.moments);
                }
            }
        });
    }

    /// Bytes of moments this optimizer holds.
    pub fn state_bytes(&self) -> i64 {
        let bytes = |t: &Tensor| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64;
        self.params.iter().map(|p| bytes(&p.m) + bytes(&p.v)).sum()
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Moments for a checkpoint: `exp_avg.<name>`, `exp_avg_sq.<name>`, and for parts of
    /// parameters the metadata `offset.<name>` (their first element).
    pub fn state_tensors(&self) -> (Vec<(String, Tensor)>, BTreeMap<String, String>) {
        let (mut out, mut meta) = (vec![], BTreeMap::new());
        for p in &self.params {
            out.push((format!("exp_avg.{}", p.name), p.m.shallow_clone()));
            out.push((format!("exp_avg_sq.{}", p.name), p.v.shallow_clone()));
            if p.grad.is_some() {
                meta.insert(format!("offset.{}", p.name), p.offset.to_string());
            }
        }
        (out, meta)
    }

    /// Restores the moments of every parameter (part) from `saved` (`exp_avg` and `exp_avg_sq`
    /// keyed `exp_avg.<name>`), whatever split over ranks they were saved with.
    pub fn load_state(&mut self, saved: &Moments, step: i64) -> Result<()> {
        for p in &mut self.params {
            for (prefix, dst) in [("exp_avg", &mut p.m), ("exp_avg_sq", &mut p.v)] {
                let key = format!("{prefix}.{}", p.name);
                let parts = saved
                    .get(&key)
                    .with_context(|| format!("optimizer state has no `{key}`"))?;
                let n = dst.numel() as i64;
                let flat = dst.view([-1]);
                let mut covered = 0;
                for (at, src) in parts {
                    let len = src.numel() as i64;
                    let (s, e) = ((*at).max(p.offset), (at + len).min(p.offset + n));
                    if s < e {
                        let from = src.f_view([-1])?.narrow(0, s - at, e - s);
                        tch::no_grad(|| flat.narrow(0, s - p.offset, e - s).f_copy_(&from))?;
                        covered += e - s;
                    }
                }
                anyhow::ensure!(
                    covered == n,
                    "optimizer state `{key}` covers {covered} of the {n} elements from offset {} (a checkpoint part is missing)",
                    p.offset
                );
            }
        }
        self.step = step;
        Ok(())
    }
}

/// The update of `p` with libtorch ops (any device; on CPU where the kernel does not apply, or
/// for `Param` moments): the kernel's formula op by op, each op in the moments' dtype for `Param`
/// (torch's `_single_tensor_adamw`), else in fp32 with bf16 moments rounded by `sr_bits`.
fn update_by_ops(p: &Param, g: &Tensor, h: Hyper, moments: MomentDtype) {
    let rows = p.tensor.size().first().copied().unwrap_or(1).max(1);
    let per_row = (p.tensor.numel() as i64 / rows).max(1);
    // Row slices bound the fp32 temporaries (the embedding alone is 1.2 GB in fp32): 4 MB ones on
    // CPU stay under glibc's mmap threshold; on a GPU the caching allocator reuses 64 MB ones, and
    // few slices mean few kernel launches (memory.rs budgets these temporaries).
    let slice_elems = match p.tensor.device() {
        Device::Cpu => SLICE_ELEMS,
        _ => GPU_SLICE_ELEMS,
    };
    let step_rows = (slice_elems / per_row).max(1);
    let mut start = 0;
    while start < rows {
        let n = step_rows.min(rows - start);
        let slice = |t: &Tensor| {
            if t.dim() == 0 {
                t.shallow_clone()
            } else {
                t.narrow(0, start, n)
            }
        };
        let (mut w, mut m, mut v) = (slice(&p.tensor), slice(&p.m), slice(&p.v));
        let math = if moments == MomentDtype::Param {
            m.kind()
        } else {
            Kind::Float
        };
        let g = slice(g).to_kind(math); // no copy when the kinds agree
        let up = |t: &Tensor| {
            if t.kind() == math {
                t.shallow_clone()
            } else {
                t.to_kind(math)
            }
        };
        let (mut m32, mut v32) = (up(&m), up(&v));
        // the weight's update is always formed in fp32 and rounded once (`addcdiv_`'s opmath)
        let mut w32 = if w.kind() == Kind::Float {
            w.shallow_clone()
        } else {
            w.to_kind(Kind::Float)
        };
        if h.decay != 1.0 {
            let _ = w32.g_mul_scalar_(h.decay as f64);
        }
        let _ = m32.lerp_(&g, h.w1 as f64);
        let _ = v32
            .g_mul_scalar_(h.b2 as f64)
            .addcmul_(&(&g * h.w2 as f64), &g);
        let mut step = v32.sqrt(); // becomes the denominator, then the step
        let _ = step
            .g_div_scalar_(h.bc2_sqrt as f64)
            .g_add_scalar_(h.eps as f64);
        let _ = m32.div_out(&step, &step).g_mul_scalar_(-h.step_size as f64);
        let _ = w32.g_add_(&step);
        if w.kind() != w32.kind() {
            w.copy_(&w32);
        }
        if m.kind() != m32.kind() {
            let first = p.offset + start * per_row;
            let bits =
                sr_bits(h.key, first, m32.numel() as i64, m32.device()).view(m32.size().as_slice());
            m.copy_(&round_stochastic(&m32, &bits.bitwise_and(0xFFFF)));
            v.copy_(&round_stochastic(
                &v32,
                &bits.bitwise_right_shift_tensor_scalar(16),
            ));
        }
        start += n;
    }
}

/// `adamw_kernel::hash32` on int64 tensors holding u32 values (multiplications split so that no
/// product leaves int64).
fn hash32_ops(x: &Tensor) -> Tensor {
    let mul = |x: &Tensor, c: i64| {
        let (lo, hi) = (c & 0xFFFF, c >> 16);
        (x * lo
            + ((x * hi)
                .bitwise_and(0xFFFF)
                .bitwise_left_shift_tensor_scalar(16)))
        .bitwise_and(U32)
    };
    let x = x.bitwise_xor_tensor(&x.bitwise_right_shift_tensor_scalar(16));
    let x = mul(&x, 0x7feb_352d);
    let x = x.bitwise_xor_tensor(&x.bitwise_right_shift_tensor_scalar(15));
    let x = mul(&x, 0x846c_a68b);
    x.bitwise_xor_tensor(&x.bitwise_right_shift_tensor_scalar(16))
}

const U32: i64 = 0xFFFF_FFFF;

/// `adamw_kernel::sr_bits` for elements `first..first + n`, as int64 `(n)`.
pub fn sr_bits(key: u32, first: i64, n: i64, dev: Device) -> Tensor {
    let idx = Tensor::arange_start(first, first + n, (Kind::Int64, dev)).bitwise_and(U32);
    hash32_ops(&hash32_ops(&idx).bitwise_xor(key as i64))
}

/// fp32 `x` rounded to bf16 with the 16 random bits `r` (int64) added below the kept bits.
pub fn round_stochastic(x: &Tensor, r: &Tensor) -> Tensor {
    let bits = x
        .view_dtype(Kind::Int)
        .to_kind(Kind::Int64)
        .bitwise_and(U32);
    let kept = (bits + r.bitwise_and(0xFFFF)).bitwise_and(0xFFFF_0000); // mod 2^32, low half cleared
    let signed = &kept
        - kept
            .bitwise_right_shift_tensor_scalar(31)
            .bitwise_left_shift_tensor_scalar(32);
    signed
        .to_kind(Kind::Int)
        .view_dtype(Kind::Float)
        .to_kind(Kind::BFloat16) // exact: low half 0
}

/// The hash of a parameter's name (FNV-1a), so its rounding stream does not depend on the
/// parameter's position in the list.
fn name_key(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// The gradients AdamW steps with (for clipping).
pub fn grads(params: &[Param]) -> Vec<Tensor> {
    params
        .iter()
        .map(Param::grad)
        .filter(|g| g.defined())
        .collect()
}

/// Sum of squared per-tensor L2 norms (each in fp32, as torch's `clip_grad_norm_` takes them;
/// squared and summed in f64), as a scalar on the device: no read per parameter (see
/// `crate::host`).
pub fn squared_norm(grads: &[Tensor]) -> Tensor {
    tch::no_grad(|| {
        let Some(first) = grads.first() else {
            return Tensor::zeros([], (Kind::Double, tch::Device::Cpu));
        };
        // per-tensor norms as torch does (and no squared copy of each gradient)
        let norms: Vec<Tensor> = grads
            .iter()
            .map(|g| g.norm_scalaropt_dtype(2, Kind::Float))
            .collect();
        let norms = Tensor::stack(&norms, 0).to_device(first.device());
        norms.to_kind(Kind::Double).square().sum(Kind::Double)
    })
}

/// Scales `grads` so that their global norm `norm` is at most `max_norm` (torch's
/// `clip_grad_norm_`).
pub fn clip_to(grads: &[Tensor], norm: f64, max_norm: f64) {
    if max_norm > 0.0 {
        let coef = (max_norm / (norm + 1e-6)).min(1.0);
        if coef < 1.0 {
            tch::no_grad(|| {
                for g in grads {
                    let _ = g.shallow_clone().g_mul_scalar_(coef);
                }
            });
        }
    }
}

/// Global L2 norm of all gradients (in fp32), then scales them so it is at most `max_norm`.
/// Returns the norm before clipping, as the Trainer logs it.
pub fn clip_grad_norm(params: &[Param], max_norm: f64) -> f64 {
    let grads = grads(params);
    let norm = crate::host::scalar(&squared_norm(&grads)).sqrt();
    clip_to(&grads, norm, max_norm);
    norm
}

/// Learning rate for the optimizer step that follows `done` completed steps: linear warmup over
/// `warmup` steps, then linear decay to zero at `total`.
pub fn linear_lr(base: f64, done: i64, warmup: i64, total: i64) -> f64 {
    if done < warmup {
        return base * done as f64 / warmup.max(1) as f64;
    }
    base * ((total - done) as f64 / (total - warmup).max(1) as f64).max(0.0)
}
