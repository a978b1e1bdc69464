//! AdamW (torch.optim.AdamW's update, transformers Trainer's defaults), global-norm gradient
//! clipping and the linear schedule with warmup (`get_linear_schedule_with_warmup`).
//!
//! Moments are kept in fp32 by default even for bf16 weights: with lr 1e-4 and bf16's 8-bit
//! mantissa, bf16 moments lose most small gradients' contribution (v underflows to coarse steps),
//! which is what torch does when the model itself is bf16 (`optim_state_dtype = "param"` restores
//! that behaviour for like-for-like comparisons). The update is computed in fp32 and rounded once
//! into the weight. Cost: 8 bytes per trainable parameter.
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// Elements updated at once. The slice temporaries (4 MB in fp32) stay under glibc's largest
/// mmap threshold (32 MB), so after the first slice they are reused from the heap instead of being
/// mapped, page-faulted in and unmapped again for every slice of every step.
const SLICE_ELEMS: i64 = 1 << 20;

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
        fp32_state: bool,
    ) -> Self {
        let parts = params.into_iter().map(|(n, t)| (n, t, 0, None)).collect();
        Self::over(parts, betas, eps, weight_decay, fp32_state)
    }

    /// AdamW over parts of parameters: (name, weight view, offset in the parameter, gradient).
    pub fn over(
        parts: Vec<(String, Tensor, i64, Option<Tensor>)>,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
        fp32_state: bool,
    ) -> Self {
        let params = parts
            .into_iter()
            .map(|(name, tensor, offset, grad)| {
                let kind = if fp32_state {
                    Kind::Float
                } else {
                    tensor.kind()
                };
                let m = Tensor::zeros(tensor.size(), (kind, tensor.device()));
                let v = Tensor::zeros(tensor.size(), (kind, tensor.device()));
                let decay = !name.contains("norm") && !name.ends_with(".bias");
                Param {
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
            step: 0,
        }
    }

    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2_sqrt = (1.0 - b2.powi(self.step as i32)).sqrt();
        let decay = 1.0 - lr * self.weight_decay;
        tch::no_grad(|| {
            for p in &mut self.params {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let rows = p.tensor.size().first().copied().unwrap_or(1).max(1);
                let per_row = (p.tensor.numel() as i64 / rows).max(1);
                // Row slices bound the fp32 temporaries (the embedding alone is 1.2 GB in fp32).
                let step_rows = (SLICE_ELEMS / per_row).max(1);
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
                    // torch's _single_tensor_adamw, in place: decay, moments, then the step
                    let (mut w, mut m, mut v) = (slice(&p.tensor), slice(&p.m), slice(&p.v));
                    let g = slice(&g).to_kind(m.kind()); // no copy when the kinds agree
                    let mut w32 = if w.kind() == Kind::Float {
                        w.shallow_clone()
                    } else {
                        w.to_kind(Kind::Float)
                    };
                    if p.decay && self.weight_decay > 0.0 {
                        let _ = w32.g_mul_scalar_(decay);
                    }
                    let _ = m.lerp_(&g, 1.0 - b1);
                    let _ = v.g_mul_scalar_(b2).addcmul_(&g, &(&g * (1.0 - b2)));
                    let mut step = v.sqrt(); // becomes the denominator, then the step
                    let _ = step.g_div_scalar_(bc2_sqrt).g_add_scalar_(self.eps);
                    let _ = m.div_out(&step, &step).g_mul_scalar_(lr / bc1);
                    let _ = w32.g_sub_(&step);
                    if w.kind() != Kind::Float {
                        w.copy_(&w32);
                    }
                    start += n;
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

/// The gradients AdamW steps with (for clipping).
pub fn grads(params: &[Param]) -> Vec<Tensor> {
    params
        .iter()
        .map(Param::grad)
        .filter(|g| g.defined())
        .collect()
}

/// Sum of squared per-tensor L2 norms (in fp32, as torch's `clip_grad_norm_` takes them).
pub fn squared_norm(grads: &[Tensor]) -> f64 {
    tch::no_grad(|| {
        grads
            .iter()
            .map(|g| {
                // per-tensor norms as torch does (and no squared copy of each gradient)
                let n = g.norm_scalaropt_dtype(2, Kind::Float).double_value(&[]);
                n * n
            })
            .sum()
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
    let norm = squared_norm(&grads).sqrt();
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
