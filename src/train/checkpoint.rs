//! Checkpoints `{output_dir}/checkpoint-{step}/` (as transformers' Trainer lays them out): the
//! model (full: an HF directory; LoRA: a peft adapter), `optimizer.safetensors` (AdamW moments)
//! and `trainer_state.json` (step, data position, ...). Each is written into a temporary
//! directory that is renamed into place, with `trainer_state.json` written last, so a checkpoint
//! directory that exists is complete; a crash or SIGKILL leaves at most a stray temp directory.
use super::optim::AdamW;
use crate::model::{weights, Model};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub global_step: i64,
    pub max_steps: i64,
    /// The epoch in progress and how many of its batches were consumed.
    pub epoch: i64,
    pub batches_done: usize,
    /// Fractional epoch, as the Trainer reports it.
    pub epoch_float: f64,
    pub seed: i64,
    pub method: String,
    /// The model the run started from (hub id or directory).
    pub base_model: String,
}

pub struct Saved {
    pub dir: PathBuf,
}

pub fn save(
    out_dir: &Path,
    model: &Model,
    opt: &AdamW,
    state: &TrainerState,
    side: Option<&Path>,
) -> Result<Saved> {
    let dir = out_dir.join(format!("checkpoint-{}", state.global_step));
    weights::write_dir_atomically(&dir, |tmp| {
        if model.lora.is_some() {
            model.write_adapter(tmp, &state.base_model, side)?;
        } else {
            model.write_hf(tmp, false, side)?;
        }
        let meta = BTreeMap::new();
        weights::write_safetensors(
            &tmp.join("optimizer.safetensors"),
            &opt.state_tensors(),
            &meta,
        )?;
        std::fs::write(
            tmp.join("trainer_state.json"),
            serde_json::to_string_pretty(state)?,
        )?;
        Ok(())
    })
    .with_context(|| format!("cannot write checkpoint {}", dir.display()))?;
    Ok(Saved { dir })
}

/// Complete checkpoints in `out_dir`, oldest first.
pub fn list(out_dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut found: Vec<(i64, PathBuf)> = std::fs::read_dir(out_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path()
                .join("trainer_state.json")
                .exists()
                .then(|| (step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// Deletes the oldest checkpoints beyond `limit`.
pub fn prune(out_dir: &Path, limit: Option<usize>) -> Result<()> {
    let Some(limit) = limit else { return Ok(()) };
    let all = list(out_dir);
    for (_, dir) in all.iter().take(all.len().saturating_sub(limit.max(1))) {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot remove old checkpoint {}", dir.display()))?;
    }
    Ok(())
}

/// The checkpoint to resume from: `arg` itself when it is a checkpoint, else the newest complete
/// one in `arg` (or the run's output directory).
pub fn find(arg: Option<&Path>, out_dir: &Path) -> Result<PathBuf> {
    let dir = arg.unwrap_or(out_dir);
    if dir.join("trainer_state.json").exists() {
        return Ok(dir.to_path_buf());
    }
    list(dir).pop().map(|(_, p)| p).with_context(|| {
        format!(
            "--resume: no complete checkpoint-*/ (with trainer_state.json) in {}",
            dir.display()
        )
    })
}

pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let p = dir.join("trainer_state.json");
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a trainer state", p.display()))
}

pub fn read_optimizer(dir: &Path) -> Result<BTreeMap<String, tch::Tensor>> {
    let mut out = BTreeMap::new();
    weights::for_each_tensor(&dir.join("optimizer.safetensors"), |name, t| {
        out.insert(name.to_string(), t);
        Ok(())
    })?;
    Ok(out)
}
