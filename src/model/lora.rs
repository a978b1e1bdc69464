//! A bias-free Linear that may carry a LoRA branch (mirrors peft's `tuners/lora/layer.py::Linear`).
//!
//! LoRA is chosen when the model is built: a targeted projection gets `lora_A` `[r, in]` and
//! `lora_B` `[out, r]` next to its frozen `weight`. As in peft with `autocast_adapter_dtype`, the
//! adapter lives in fp32 whatever the base dtype, the branch is computed in fp32 and the sum is cast
//! back to the base dtype.
use super::gemv::linear;
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

#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub lora: Option<LoraBranch>,
}

impl Linear {
    /// `weight` is `[out, in]` in `kind`; trainable unless a LoRA config is given (then frozen).
    pub fn new(
        p: &nn::Path,
        name: &str,
        in_dim: i64,
        out_dim: i64,
        kind: Kind,
        lora: Option<&LoraConfig>,
    ) -> Self {
        let p = p / name;
        let dev = p.device();
        let weight = p.add(
            "weight",
            Tensor::zeros([out_dim, in_dim], (kind, dev)),
            lora.is_none(),
        );
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
        Linear { weight, lora }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let base = linear(x, &self.weight);
        match &self.lora {
            None => base,
            Some(l) => {
                let xf = x.to_kind(l.a.kind()).dropout(l.dropout, train);
                let delta = xf
                    .linear::<&Tensor>(&l.a, None)
                    .linear::<&Tensor>(&l.b, None)
                    * l.scaling;
                (delta + base).to_kind(self.weight.kind())
            }
        }
    }

    /// `W + scaling * B @ A`, computed in fp32 and returned in the base dtype (peft's merge).
    pub fn merged_weight(&self) -> Tensor {
        match &self.lora {
            None => self.weight.shallow_clone(),
            Some(l) => {
                let delta = l.b.to_kind(Kind::Float).matmul(&l.a.to_kind(Kind::Float)) * l.scaling;
                (self.weight.to_kind(Kind::Float) + delta).to_kind(self.weight.kind())
            }
        }
    }
}
