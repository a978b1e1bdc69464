//! Qwen3's RMSNorm (transformers' `Qwen3RMSNorm` in `models/qwen3/modeling_qwen3.py`).
use tch::{nn, Kind, Tensor};

/// `w * (x_f32 * rsqrt(mean(x_f32^2) + eps)).to(x.dtype)`: the cast back happens before the
/// multiply by `w`, exactly as transformers' `Qwen3RMSNorm`.
#[derive(Debug)]
pub struct RmsNorm {
    pub weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub(super) fn new(p: nn::Path, dim: i64, eps: f64, kind: Kind, trainable: bool) -> Self {
        let weight = p.add("weight", Tensor::ones([dim], (kind, p.device())), trainable);
        RmsNorm { weight, eps }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let xf = x.to_kind(Kind::Float);
        let var = xf.square().mean_dim(-1, true, Kind::Float);
        let y = xf * (var + self.eps).rsqrt();
        &self.weight * y.to_kind(x.kind())
    }
}
