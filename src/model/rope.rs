//! What attention takes besides q, k and v: RoPE tables (transformers' `Qwen3RotaryEmbedding` and
//! `apply_rotary_pos_emb`) and the attention mask.
use tch::{Kind, Tensor};

/// RoPE tables `(B, 1, T, D)` built in fp32 from integer positions, then cast to the activation
/// dtype (positions in bf16 would be wrong past 256).
pub struct Rope {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl Rope {
    pub fn new(positions: &Tensor, head_dim: i64, theta: f64, kind: Kind) -> Self {
        let dev = positions.device();
        let exponents = Tensor::arange_start_step(0, head_dim, 2, (Kind::Int64, dev))
            .to_kind(Kind::Float)
            / head_dim as f64;
        let inv_freq = Tensor::pow_scalar(theta, &exponents).reciprocal(); // (D/2)
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * inv_freq; // (B, T, D/2)
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1); // (B, 1, T, D)
        Rope {
            cos: emb.cos().to_kind(kind),
            sin: emb.sin().to_kind(kind),
        }
    }

    pub(super) fn apply(&self, x: &Tensor) -> Tensor {
        let half = x.size()[3] / 2;
        let (x1, x2) = (x.narrow(-1, 0, half), x.narrow(-1, half, half));
        let rotated = Tensor::cat(&[&x2.neg(), &x1], -1);
        x * &self.cos + rotated * &self.sin
    }
}

/// How attention is masked: pure causal with no padding (lets SDPA pick its fastest kernel), no
/// mask at all (one new token, no padding), or an explicit boolean mask `(B, 1, Tq, Tk)`,
/// true = may attend.
pub enum Mask {
    Causal,
    Full,
    Explicit(Tensor),
}

impl Mask {
    /// From a `(B, Tk)` padding mask (1 = token, 0 = pad) for `tq` queries that follow `past`
    /// cached positions. A query may always see itself, so rows of left padding are not empty
    /// (an all-masked row would make SDPA return NaN); their outputs are never used.
    /// Callers pass `None` when nothing is padded (they know it on the host; looking at the mask
    /// here would make the host wait for the device on every forward).
    pub fn new(padding: Option<&Tensor>, tq: i64, past: i64) -> Mask {
        match (padding, past, tq) {
            (None, 0, _) => return Mask::Causal,
            (None, _, 1) => return Mask::Full,
            _ => {}
        }
        let dev = padding.map_or(tch::Device::Cpu, |p| p.device());
        let tk = past + tq;
        let q = Tensor::arange_start(past, tk, (Kind::Int64, dev)).unsqueeze(1); // (Tq, 1)
        let k = Tensor::arange(tk, (Kind::Int64, dev)).unsqueeze(0); // (1, Tk)
        let mut allowed = k.le_tensor(&q).unsqueeze(0).unsqueeze(0); // (1, 1, Tq, Tk)
        if let Some(p) = padding {
            let keys = p.ne(0).unsqueeze(1).unsqueeze(1); // (B, 1, 1, Tk)
            allowed = allowed
                .logical_and(&keys)
                .logical_or(&k.eq_tensor(&q).unsqueeze(0).unsqueeze(0));
        }
        Mask::Explicit(allowed)
    }
}
