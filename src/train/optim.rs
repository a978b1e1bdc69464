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
    m: Tensor,
    v: Tensor,
}

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
        let params = params
            .into_iter()
            .map(|(name, tensor)| {
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
                let g = p.tensor.grad();
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

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.tensor.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Moments and step for a checkpoint: `exp_avg.<name>`, `exp_avg_sq.<name>`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![];
        for p in &self.params {
            out.push((format!("exp_avg.{}", p.name), p.m.shallow_clone()));
            out.push((format!("exp_avg_sq.{}", p.name), p.v.shallow_clone()));
        }
        out
    }

    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, step: i64) -> Result<()> {
        for p in &mut self.params {
            for (prefix, dst) in [("exp_avg", &mut p.m), ("exp_avg_sq", &mut p.v)] {
                let key = format!("{prefix}.{}", p.name);
                let src = tensors
                    .get(&key)
                    .with_context(|| format!("optimizer state has no `{key}`"))?;
                anyhow::ensure!(
                    src.size() == dst.size(),
                    "optimizer state `{key}` has shape {:?}",
                    src.size()
                );
                tch::no_grad(|| dst.f_copy_(src))?;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Global L2 norm of all gradients (in fp32), then scales them so it is at most `max_norm`
/// (torch's `clip_grad_norm_`). Returns the norm before clipping, as the Trainer logs it.
pub fn clip_grad_norm(params: &[Param], max_norm: f64) -> f64 {
    let grads: Vec<Tensor> = params
        .iter()
        .map(|p| p.tensor.grad())
        .filter(|g| g.defined())
        .collect();
    if grads.is_empty() {
        return 0.0;
    }
    let sq: f64 = tch::no_grad(|| {
        grads
            .iter()
            .map(|g| {
                // per-tensor norms as torch does (and no squared copy of each gradient)
                let n = g.norm_scalaropt_dtype(2, Kind::Float).double_value(&[]);
                n * n
            })
            .sum()
    });
    let norm = sq.sqrt();
    if max_norm > 0.0 {
        let coef = (max_norm / (norm + 1e-6)).min(1.0);
        if coef < 1.0 {
            tch::no_grad(|| {
                for g in &grads {
                    let _ = g.shallow_clone().g_mul_scalar_(coef);
                }
            });
        }
    }
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
