//! A bias-free Linear that may carry a LoRA branch (mirrors peft's `tuners/lora/layer.py::Linear`).
//!
//! LoRA is chosen when the model is built: a targeted projection gets `lora_A` `[r, in]` and
//! `lora_B` `[out, r]` next to its frozen `weight`. As in peft with `autocast_adapter_dtype`, the
//! adapter lives in fp32 whatever the base dtype, the branch is computed in fp32 and the sum is cast
//! back to the base dtype.
use super::dropout;
use super::gemv::linear;
use super::nf4::{self, Nf4Weight};
use tch::{nn, Kind, Tensor};

/// The projections LoRA can adapt (peft's `target_modules` for Qwen3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::QProj => "q_proj",
            Target::KProj => "k_proj",
            Target::VProj => "v_proj",
            Target::OProj => "o_proj",
            Target::GateProj => "gate_proj",
            Target::UpProj => "up_proj",
            Target::DownProj => "down_proj",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub r: i64,
    pub alpha: f64,
    pub dropout: f64,
    /// Module names, e.g. `q_proj`, `v_proj`.
    pub targets: Vec<String>,
    pub rslora: bool,
}

impl LoraConfig {
    pub fn scaling(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }
}

#[derive(Debug)]
pub struct LoraBranch {
    pub a: Tensor,
    pub b: Tensor,
    pub scaling: f64,
    pub dropout: f64,
}

/// A projection's frozen or trainable base weight `[out, in]`.
pub enum Weight {
    /// A tensor in the model dtype (a var-store parameter).
    Dense(Tensor),
    /// bitsandbytes' NF4 form (frozen), dequantized into `Linear::kind` at each use.
    Nf4(Nf4Weight),
    /// An NF4 weight not loaded yet: the loader (or random init) fills it in.
    Pending,
}

pub struct Linear {
    pub weight: Weight,
    pub lora: Option<LoraBranch>,
    /// The model dtype (the compute dtype of an NF4 weight).
    pub kind: Kind,
    pub shape: [i64; 2],
}

impl Linear {
    /// `weight` is `[out, in]` in `kind`; trainable unless a LoRA config is given (then frozen).
    /// With `nf4` it is left `Pending` outside the var store (it is no parameter).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &nn::Path,
        name: &str,
        in_dim: i64,
        out_dim: i64,
        kind: Kind,
        lora: Option<&LoraConfig>,
        nf4: bool,
    ) -> Self {
        let p = p / name;
        let dev = p.device();
        let weight = match nf4 {
            true => Weight::Pending,
            false => Weight::Dense(p.add(
                "weight",
                Tensor::zeros([out_dim, in_dim], (kind, dev)),
                lora.is_none(),
            )),
        };
        let lora = lora
            .filter(|l| l.targets.iter().any(|t| t == name))
            .map(|l| LoraBranch {
                a: (&p / "lora_A").add(
                    "weight",
                    Tensor::zeros([l.r, in_dim], (Kind::Float, dev)),
                    true,
                ),
                b: (&p / "lora_B").add(
                    "weight",
                    Tensor::zeros([out_dim, l.r], (Kind::Float, dev)),
                    true,
                ),
                scaling: l.scaling(),
                dropout: l.dropout,
            });
        Linear {
            weight,
            lora,
            kind,
            shape: [out_dim, in_dim],
        }
    }

    /// The base projection alone.
    fn base(&self, x: &Tensor) -> Tensor {
        match &self.weight {
            Weight::Dense(w) => linear(x, w),
            Weight::Nf4(w) => nf4::matmul(x, w, None, self.kind),
            Weight::Pending => panic!("an NF4 weight was used before it was loaded"),
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let base = self.base(x);
        let Some(l) = &self.lora else {
            return base;
        };
        // dropout's 1 / (1 - p) is applied with `scaling`, to the branch's output (on CPU: see
        // `dropout`; the same product up to fp32 rounding)
        let (xd, keep_scale) = dropout::unscaled(&x.to_kind(l.a.kind()), l.dropout, train);
        // `h @ B^T` with `B^T` made contiguous (r x out, a few KB): autograd then forms lora_B's
        // gradient as `h^T (r, T) @ grad (T, out)`. With the transposed view (`linear`) it takes
        // `grad^T (out, T) @ h (T, r)`: the same product, which MKL runs several times slower at r 8
        // (the projection's whole backward at 1024 tokens: 15.8 -> 7.5 ms at out 3072).
        let delta = xd
            .linear::<&Tensor>(&l.a, None)
            .matmul(&l.b.tr().contiguous())
            * (l.scaling * keep_scale);
        match self.weight {
            // peft's bnb `Linear4bit`: the fp32 branch is cast to the result's dtype, then added
            Weight::Nf4(_) => base + delta.to_kind(self.kind),
            // peft's `Linear`: added in fp32 (type promotion), the sum cast back
            _ => (delta + base).to_kind(self.kind),
        }
    }

    /// The base weight in the model dtype (an NF4 one dequantized).
    pub fn dense_weight(&self) -> Tensor {
        match &self.weight {
            Weight::Dense(w) => w.shallow_clone(),
            Weight::Nf4(w) => w.dequantize(self.kind),
            Weight::Pending => panic!("an NF4 weight was used before it was loaded"),
        }
    }

    /// `W + scaling * B @ A`, computed in fp32 and returned in the model dtype (peft's merge).
    /// An NF4 base is dequantized first: the merge lands in a dense model, never back in 4 bits
    /// (re-quantizing would round the adapter's small update away).
    pub fn merged_weight(&self) -> Tensor {
        let w = self.dense_weight();
        match &self.lora {
            None => w,
            Some(l) => {
                let delta = l.b.to_kind(Kind::Float).matmul(&l.a.to_kind(Kind::Float)) * l.scaling;
                (w.to_kind(Kind::Float) + delta).to_kind(self.kind)
            }
        }
    }
}
