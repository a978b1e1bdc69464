//! The Trainer's optimizer, `train.optim`: torch's AdamW (optim.rs) or bitsandbytes' AdamW8bit
//! (adamw8bit.rs), with the few operations a step and a checkpoint need. Both step every rank's
//! full state identically under DDP; only AdamW holds ZeRO shards (config validation keeps
//! adamw8bit to `zero_stage = 0`).
use super::adamw8bit::AdamW8bit;
use super::optim::{self, AdamW, Moments};
use crate::config::Optim;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use tch::Tensor;

pub enum Optimizer {
    AdamW(AdamW),
    AdamW8bit(AdamW8bit),
}

impl Optimizer {
    /// Which `train.optim` this is.
    pub fn kind(&self) -> Optim {
        match self {
            Optimizer::AdamW(_) => Optim::Adamw,
            Optimizer::AdamW8bit(_) => Optim::Adamw8bit,
        }
    }

    /// The gradients the step applies (for the norm and clipping), on the device.
    pub fn grads(&self) -> Vec<Tensor> {
        match self {
            Optimizer::AdamW(o) => optim::grads(&o.params),
            Optimizer::AdamW8bit(o) => o
                .params
                .iter()
                .map(|p| p.tensor.grad())
                .filter(|g| g.defined())
                .collect(),
        }
    }

    pub fn step(&mut self, lr: f64) {
        match self {
            Optimizer::AdamW(o) => o.step(lr),
            Optimizer::AdamW8bit(o) => o.step(lr),
        }
    }

    pub fn zero_grad(&mut self) {
        match self {
            Optimizer::AdamW(o) => o.zero_grad(),
            Optimizer::AdamW8bit(o) => o.zero_grad(),
        }
    }

    /// Bytes of optimizer state held (this rank's).
    pub fn state_bytes(&self) -> i64 {
        match self {
            Optimizer::AdamW(o) => o.state_bytes(),
            Optimizer::AdamW8bit(o) => o.state_bytes(),
        }
    }

    /// The state for `optimizer.safetensors`, with the metadata `optimizer` naming `train.optim`.
    pub fn state_tensors(&self) -> (Vec<(String, Tensor)>, BTreeMap<String, String>) {
        let (tensors, mut meta) = match self {
            Optimizer::AdamW(o) => o.state_tensors(),
            Optimizer::AdamW8bit(o) => o.state_tensors(),
        };
        meta.insert("optimizer".into(), self.kind().to_string());
        (tensors, meta)
    }

    /// Restores the state read from a checkpoint (`checkpoint::read_optimizer`) and the step
    /// count. AdamW8bit's state is never split (no ZeRO), so each tensor is one whole part.
    pub fn load_state(&mut self, saved: &Moments, step: i64) -> Result<()> {
        match self {
            Optimizer::AdamW(o) => o.load_state(saved, step),
            Optimizer::AdamW8bit(o) => {
                let mut whole = HashMap::new();
                for (name, parts) in saved {
                    let [(0, t)] = parts.as_slice() else {
                        anyhow::bail!("optimizer state `{name}` is split into parts (a ZeRO checkpoint): adamw8bit keeps whole tensors");
                    };
                    whole.insert(name.clone(), t.shallow_clone());
                }
                o.load_state(&whole, step)
                    .context("the checkpoint's adamw8bit state does not fit this model")
            }
        }
    }
}
