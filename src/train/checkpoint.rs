//! Checkpoints `{output_dir}/checkpoint-{step}/` (as transformers' Trainer lays them out): the
//! model (full: an HF directory; LoRA: a peft adapter), `optimizer.safetensors` (the optimizer's
//! state) and `trainer_state.json` (step, data position, ...). Each is written into a temporary
//! directory that is renamed into place, with `trainer_state.json` written last, so a checkpoint
//! directory that exists is complete; a crash or SIGKILL leaves at most a stray temp directory.
use super::dist::World;
use super::optim::Moments;
use super::optimizer::Optimizer;
use crate::config::{Method, Optim, RunConfig};
use crate::model::{weights, Config, Model};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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
    pub method: Method,
    /// `train.optim` (absent in checkpoints of versions that had AdamW only).
    #[serde(default)]
    pub optim: Optim,
    /// The model the run started from (hub id or directory).
    pub base_model: String,
    /// What `--resume` checks (absent in checkpoints of earlier versions: then not checked).
    #[serde(default)]
    pub epochs: Option<f64>,
    #[serde(default)]
    pub model_shape: Option<String>,
    #[serde(default)]
    pub train_file: Option<String>,
    #[serde(default)]
    pub train_sha256: Option<String>,
    #[serde(default)]
    pub lora: Option<String>,
}

impl TrainerState {
    /// The state of a run starting now (`max_steps` is filled in once the data is encoded).
    pub fn fresh(cfg: &RunConfig, shape: &Config, max_steps: i64) -> Result<TrainerState> {
        let f = &cfg.data.train_file;
        let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let lora = cfg.lora_config().map(|l| {
            format!(
                "r {}, alpha {}, rslora {}, targets {}",
                l.r,
                l.alpha,
                l.rslora,
                l.targets.join(",")
            )
        });
        Ok(TrainerState {
            global_step: 0,
            max_steps,
            epoch: 0,
            batches_done: 0,
            epoch_float: 0.0,
            seed: cfg.train.seed,
            method: cfg.train.method,
            optim: cfg.train.optim,
            base_model: cfg.model.path.clone(),
            epochs: Some(cfg.train.epochs.get()),
            model_shape: Some(format!(
                "vocab {}, hidden {}, intermediate {}, layers {}, heads {}/{}, head_dim {}, tied {}",
                shape.vocab_size, shape.hidden_size, shape.intermediate_size, shape.num_hidden_layers,
                shape.num_attention_heads, shape.num_key_value_heads, shape.head_dim, shape.tie_word_embeddings
            )),
            train_file: Some(f.display().to_string()),
            train_sha256: Some(sha),
            lora,
        })
    }

    /// This saved state continued by the run `now`: its position, `now`'s identity and limits
    /// (so the next checkpoint's trainer_state.json keeps no stale values).
    pub fn continued_as(&self, now: &TrainerState) -> TrainerState {
        TrainerState {
            global_step: self.global_step,
            epoch: self.epoch,
            batches_done: self.batches_done,
            epoch_float: self.epoch_float,
            ..now.clone()
        }
    }
}

/// Refuses to continue checkpoint `dir` (state `saved`) with a run that trains something else;
/// a changed length of the run is allowed and said.
pub fn check_resume(dir: &Path, saved: &TrainerState, now: &TrainerState) -> Result<()> {
    let differ = |what: &str, was: &str, is: &str| {
        anyhow::anyhow!(
            "--resume {}: the checkpoint was trained with {what} {was}, this run has {is}; resume with the run's own config, or train into a new train.output_dir",
            dir.display()
        )
    };
    if saved.method != now.method {
        return Err(differ(
            "train.method",
            &saved.method.to_string(),
            &now.method.to_string(),
        ));
    }
    if saved.optim != now.optim {
        let (was, is) = (saved.optim.to_string(), now.optim.to_string());
        return Err(differ("train.optim", &was, &is));
    }
    if saved.base_model != now.base_model {
        return Err(differ("model.path", &saved.base_model, &now.base_model));
    }
    let pairs = [
        ("the model shape", &saved.model_shape, &now.model_shape),
        ("LoRA", &saved.lora, &now.lora),
        (
            "training data sha256",
            &saved.train_sha256,
            &now.train_sha256,
        ),
    ];
    for (what, was, is) in pairs {
        if let (Some(was), Some(is)) = (was, is) {
            if was != is {
                let (was, is) = if what.starts_with("training data") {
                    let file = |s: &TrainerState| s.train_file.clone().unwrap_or_default();
                    (
                        format!("{was} ({})", file(saved)),
                        format!("{is} ({})", file(now)),
                    )
                } else {
                    (was.clone(), is.clone())
                };
                return Err(differ(what, &was, &is));
            }
        }
    }
    if let (Some(was), Some(is)) = (saved.epochs, now.epochs) {
        if was != is {
            println!("--resume: train.epochs changed from {was} to {is}");
        }
    }
    if saved.max_steps != now.max_steps {
        let (was, is) = (saved.max_steps, now.max_steps);
        println!("--resume: the run now ends at step {is} (it was to end at {was})");
    }
    Ok(())
}

/// The state to continue from checkpoint `dir` with the run `now`, after [`check_resume`].
pub fn resumed(dir: &Path, now: &TrainerState) -> Result<TrainerState> {
    let saved = read_state(dir)?;
    check_resume(dir, &saved, now)?;
    Ok(saved.continued_as(now))
}

/// Set while a checkpoint is being written (a second signal then waits for it).
static SAVING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn saving() -> bool {
    SAVING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Runs `write` (a save) with [`saving`] set.
pub fn while_saving<T>(write: impl FnOnce() -> T) -> T {
    SAVING.store(true, std::sync::atomic::Ordering::SeqCst);
    let out = write();
    SAVING.store(false, std::sync::atomic::Ordering::SeqCst);
    out
}

/// Writes `checkpoint-{step}/` (see the module header). In a distributed job rank 0 writes the
/// model and the state, and with ZeRO (`sharded`) each rank its `optimizer-R-of-N.safetensors`
/// into rank 0's temp directory; the directory is renamed into place only when every rank's part
/// is in.
#[allow(clippy::too_many_arguments)]
pub fn save(
    out_dir: &Path,
    model: &Model,
    opt: &Optimizer,
    state: &TrainerState,
    side: Option<&Path>,
    world: &World,
    sharded: bool,
) -> Result<PathBuf> {
    let name = format!("checkpoint-{}", state.global_step);
    let dir = out_dir.join(&name);
    let optimizer = |tmp: &Path| -> Result<()> {
        let file = match sharded {
            true => format!(
                "optimizer-{:05}-of-{:05}.safetensors",
                world.rank + 1,
                world.size
            ),
            false => "optimizer.safetensors".into(),
        };
        opt.write_state(&tmp.join(file))
    };
    let what = format!("writing {}", dir.display());
    let write = || -> Result<()> {
        if !world.is_main() {
            let tmp = out_dir.join(format!(".{name}.tmp-{}", world.main_pid));
            world.all_ok(Ok(()), &what)?; // rank 0 made the directory
            let mine = if sharded { optimizer(&tmp) } else { Ok(()) };
            world.all_ok(mine, &what)?;
            return world.all_ok(Ok(()), &what); // renamed into place
        }
        let written = weights::write_dir_atomically(&dir, |tmp| {
            let mine = match model.lora.is_some() {
                true => model.write_adapter(tmp, &state.base_model, side),
                false => model.write_hf(tmp, false, side),
            };
            world.all_ok(mine.and_then(|_| optimizer(tmp)), &what)?;
            world.all_ok(Ok(()), &what)?; // every rank's optimizer part is in
            std::fs::write(
                tmp.join("trainer_state.json"),
                serde_json::to_string_pretty(state)?,
            )?;
            Ok(())
        });
        world.all_ok(written, &what)
    };
    while_saving(write).with_context(|| {
        // the last agreement comes after the rename: a rank lost there leaves a whole checkpoint
        match dir.join("trainer_state.json").exists() {
            true => format!(
                "checkpoint {} is complete (--resume starts from it), but the job cannot go on",
                dir.display()
            ),
            false => format!("cannot write checkpoint {}", dir.display()),
        }
    })?;
    Ok(dir)
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

/// The checkpoint to resume from: `dir` itself when it is a checkpoint, else the newest complete
/// one in `dir`.
pub fn find(dir: &Path) -> Result<PathBuf> {
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

/// The marker kind of a training run's output directory.
pub const RUN_KIND: &str = "train";

/// What a run writes into its output directory (all of it is deleted by `--overwrite`).
fn is_run_file(name: &str) -> bool {
    name.starts_with("checkpoint-")
        || ["final", "metrics.jsonl", "loss.png", crate::output::MARKER].contains(&name)
}

/// Checks the output directory of a new run: an earlier run there is an error unless
/// `overwrite`, then its files are deleted; files no run wrote are an error either way.
pub fn prepare_run_dir(out: &Path, overwrite: bool) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(()); // absent: created later
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let (ours, other): (Vec<&String>, Vec<&String>) = names
        .iter()
        .partition(|n| is_run_file(n) || n.starts_with('.'));
    if let Some(f) = other.first() {
        anyhow::bail!(
            "train.output_dir {} holds {f}, which no training run wrote: choose a new or empty directory",
            out.display()
        );
    }
    let earlier = ours.iter().any(|n| is_run_file(n));
    if earlier && !overwrite {
        anyhow::bail!(
            "train.output_dir {} holds an earlier run: --resume continues it, --overwrite starts over (deleting its checkpoints, final/ and metrics), or choose another directory",
            out.display()
        );
    }
    for n in ours.iter().filter(|n| is_run_file(n)) {
        let p = out.join(n);
        let removed = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        removed.with_context(|| format!("--overwrite: cannot remove {}", p.display()))?;
    }
    Ok(())
}

/// Removes the temporary directories (`.checkpoint-N.tmp-PID`, `.final.old-PID`) that a process
/// which no longer runs left in `out` when it was killed during a save.
pub fn remove_stale_temps(out: &Path) {
    for e in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .rsplit_once(".tmp-")
            .or_else(|| name.rsplit_once(".old-"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        let Some(pid) = pid.filter(|_| name.starts_with('.')) else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => println!(
                    "removed {} (left by process {pid}, which is gone)",
                    e.path().display()
                ),
                Err(err) => eprintln!("warning: cannot remove {}: {err}", e.path().display()),
            }
        }
    }
}

pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let p = dir.join("trainer_state.json");
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a trainer state", p.display()))
}

/// The optimizer state of checkpoint `dir`: `optimizer.safetensors` (one process, or DDP), or the
/// `optimizer-R-of-N.safetensors` parts of a ZeRO run (all N must be there).
pub fn read_optimizer(dir: &Path) -> Result<Moments> {
    let single = dir.join("optimizer.safetensors");
    let files = match single.exists() {
        true => vec![single],
        false => optimizer_parts(dir)?,
    };
    let mut out = Moments::new();
    for f in &files {
        let offsets = weights::read_metadata(f)?;
        weights::for_each_tensor(f, |name, t| {
            let param = name.split_once('.').map_or(name, |(_, p)| p);
            let at = match offsets.get(&format!("offset.{param}")) {
                Some(v) => v.parse().with_context(|| {
                    format!("{}: offset.{param} = {v} is not a number", f.display())
                })?,
                None => 0,
            };
            out.entry(name.to_string()).or_default().push((at, t));
            Ok(())
        })?;
    }
    Ok(out)
}

/// A ZeRO checkpoint's optimizer parts, checked to be all there.
fn optimizer_parts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut parts: Vec<(usize, usize, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (r, n) = name
                .strip_prefix("optimizer-")?
                .strip_suffix(".safetensors")?
                .split_once("-of-")?;
            Some((r.parse().ok()?, n.parse().ok()?, e.path()))
        })
        .collect();
    parts.sort();
    let n = parts.first().map(|p| p.1).with_context(|| {
        format!(
            "{}: no optimizer.safetensors or optimizer-*-of-*.safetensors",
            dir.display()
        )
    })?;
    let ranks: Vec<usize> = parts.iter().filter(|p| p.1 == n).map(|p| p.0).collect();
    if ranks != (1..=n).collect::<Vec<_>>() || parts.len() != n {
        anyhow::bail!(
            "{}: the optimizer state has parts {ranks:?} of {n}: the checkpoint is incomplete",
            dir.display()
        );
    }
    Ok(parts.into_iter().map(|p| p.2).collect())
}
