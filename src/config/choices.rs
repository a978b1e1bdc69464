//! The closed choices of `[train]`: what is trained, by which optimizer, with which moments.
use serde::{Deserialize, Serialize};

/// What training changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Every parameter.
    Full,
    /// LoRA adapters on a frozen base.
    Lora,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Full => "full",
            Method::Lora => "lora",
        })
    }
}

/// The optimizer (`train.optim`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optim {
    /// torch's AdamW, moments in `optim_state_dtype` (src/train/optim.rs).
    #[default]
    Adamw,
    /// bitsandbytes' AdamW8bit as transformers' Trainer runs it for `optim = "adamw_bnb_8bit"`:
    /// 8-bit blockwise moments, f32 ones for the embedding and tensors under 4096 elements
    /// (src/train/adamw8bit.rs).
    Adamw8bit,
}

impl std::fmt::Display for Optim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Optim::Adamw => "adamw",
            Optim::Adamw8bit => "adamw8bit",
        })
    }
}

/// Precision of AdamW's moments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimStateDtype {
    /// bf16 (stochastically rounded) for bf16 parameters, fp32 for fp32 ones.
    Auto,
    /// fp32 moments whatever the parameter dtype (8 bytes per trainable parameter).
    Fp32,
    /// bf16 moments, stochastically rounded after an fp32 update (4 bytes per parameter).
    Bf16,
    /// The parameter's dtype with torch's op-by-op rounding, as the Trainer keeps them.
    Param,
}
