//! The Trainer's optimizer, `train.optim`: torch's AdamW (optim.rs) or bitsandbytes' AdamW8bit
//! (adamw8bit.rs), with the few operations a step and a checkpoint need. Both step every rank's
//! full state identically under DDP; only AdamW holds ZeRO shards (config validation keeps
//! adamw8bit to `zero_stage = 0`).
use super::adamw8bit::{AdamW8bit, State};
use super::optim::{self, AdamW, Moments};
use crate::config::Optim;
use crate::model::weights;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::path::Path;
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

    /// Writes `state_tensors` to `file` (safetensors). AdamW8bit's state is written from its own
    /// buffers: copying it into tensors first would double its memory at every save.
    pub fn write_state(&self, file: &Path) -> Result<()> {
        if let Optimizer::AdamW8bit(o) = self {
            let meta = [("optimizer".to_string(), self.kind().to_string())].into();
            return write_borrowed(file, &o.state(), &meta);
        }
        let (tensors, meta) = self.state_tensors();
        weights::write_safetensors(file, &tensors, &meta)
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

/// What `weights::write_safetensors` writes for the 1-D tensors of `state`, from the borrowed
/// buffers: the same header (the metadata, then each tensor in order; padded to 8 bytes), then
/// each buffer's little-endian bytes.
fn write_borrowed(
    path: &Path,
    state: &[(String, State)],
    meta: &BTreeMap<String, String>,
) -> Result<()> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(meta));
    let mut offset = 0u64;
    for (name, s) in state {
        let (dtype, n, bytes) = match s {
            State::Codes(c) => ("U8", c.len(), c.len()),
            State::Values(v) => ("F32", v.len(), 4 * v.len()),
        };
        let end = offset + bytes as u64;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": [n], "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut h = serde_json::to_vec(&header)?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let what = || format!("cannot write {}", path.display());
    let file = std::fs::File::create(path).with_context(what)?;
    let mut w = BufWriter::with_capacity(1 << 22, file);
    w.write_all(&(h.len() as u64).to_le_bytes())?;
    w.write_all(&h)?;
    let mut buf = Vec::with_capacity(1 << 16);
    for (_, s) in state {
        match s {
            State::Codes(c) => w.write_all(c).with_context(what)?,
            State::Values(v) => {
                for chunk in v.chunks(1 << 14) {
                    buf.clear();
                    buf.extend(chunk.iter().flat_map(|x| x.to_le_bytes()));
                    w.write_all(&buf).with_context(what)?;
                }
            }
        }
    }
    let file = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(what)?;
    file.sync_all().with_context(what)?;
    Ok(())
}
