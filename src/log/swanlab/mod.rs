//! SwanLab experiment tracking without Python: a run directory in SwanLab 0.10's layout that the
//! real SDK reads and `swanlab sync` uploads, plus (mode `cloud`) a native uploader speaking the
//! SDK's HTTP protocol. Mirrors `swanlab/sdk/cmd/init.py` (run directory, start record) and
//! `swanlab/sdk/internal/run/__init__.py` (`Run.log`/`finish`) of swanlab==0.10.3.
//!
//! Every call on [`Run`] only enqueues; a background thread writes the run file and feeds the
//! uploader thread, so a slow disk or an unreachable server never stalls training.

mod api;
mod config;
mod fields;
mod ids;
mod netrc;
pub mod proto;
mod sender;
mod settings;
pub mod store;
pub mod time;
mod upload;
mod writer;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

pub use settings::{
    ApiKey, Mode, ResolvedSettings, SwanlabSettings, DEFAULT_API_HOST, DEFAULT_PROJECT,
};

use proto::{ResumeMode, StartRecord};
use upload::{UploadConfig, Uploader};
use writer::{Msg, Writer};

/// How a run ends; written as the run file's last record and sent to the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishState {
    Finished,
    /// Training failed; the message (an error chain or panic text) is stored with the run.
    Crashed(String),
    /// Interrupted by the user (Ctrl-C).
    Aborted,
}

/// One SwanLab run. Cheap to call from the training loop: every method only enqueues.
pub struct Run {
    tx: Option<Sender<Msg>>,
    worker: Option<JoinHandle<()>>,
    dir: PathBuf,
    name: String,
    mode: Mode,
    api_host: String,
    finish_timeout: Duration,
}

impl Run {
    /// Starts a run from the `[swanlab]` settings and the environment; `None` when disabled.
    /// `hyperparams` must be a JSON object (nested values are kept as they are).
    pub fn start(settings: &SwanlabSettings, hyperparams: &Value) -> Result<Option<Run>> {
        Run::start_resolved(&settings.resolve()?, hyperparams)
    }

    /// As [`Run::start`], with settings already resolved (tests use this to avoid the process
    /// environment).
    pub fn start_resolved(s: &ResolvedSettings, hyperparams: &Value) -> Result<Option<Run>> {
        if s.mode == Mode::Disabled {
            return Ok(None);
        }
        let Value::Object(hp) = hyperparams else {
            let kind = match hyperparams {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            };
            bail!("SwanLab hyperparameters must be a JSON object, got {kind}");
        };
        let api_key = match s.mode {
            Mode::Cloud => Some(api_key(s)?),
            _ => None,
        };
        let log_dir = std::path::absolute(&s.log_dir)
            .with_context(|| format!("resolving SwanLab log_dir {}", s.log_dir.display()))?;
        prepare_log_dir(&log_dir)?;
        let (id, dir) = create_run_dir(&log_dir)?;
        for sub in ["files", "media"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let config = config::format_config(hp);
        let config_path = dir.join("files").join("config.yaml");
        let yaml = config::to_yaml(config.as_object().expect("format_config returns an object"));
        write_atomic(&config_path, yaml.as_bytes())
            .with_context(|| format!("writing {}", config_path.display()))?;

        let name = s.experiment.clone().unwrap_or_else(ids::experiment_name);
        let started_at = time::now();
        let start = StartRecord {
            project: s.project.clone(),
            workspace: s.workspace.clone().unwrap_or_default(),
            name: name.clone(),
            description: s.description.clone().unwrap_or_default(),
            tags: s.tags.clone(),
            color: ids::color(),
            id: id.clone(),
            resume: ResumeMode::Never as i32,
            started_at: Some(started_at),
            ..Default::default()
        };
        let (mut writer, first_records) = Writer::create(&dir, &id, start.clone(), &config_path)?;
        eprintln!("swanlab: Run data saved at {}", dir.display());
        if let Some(key) = api_key {
            let up = Uploader::start(UploadConfig {
                api_host: s.api_host.clone(),
                web_host: s.web_host.clone(),
                api_key: key,
                start,
                config,
                run_dir: dir.clone(),
            });
            up.push(first_records);
            match up.wait_ready(s.start_timeout) {
                Some(url) => eprintln!("swanlab: View run {name} at {url}"),
                None => eprintln!(
                    "swanlab: still connecting to {}; uploads continue in the background",
                    s.api_host
                ),
            }
            writer.uploader = Some(up);
        } else {
            eprintln!(
                "swanlab: Run `{}` to sync this run",
                sync_command(&s.api_host, &dir)
            );
        }
        let (tx, rx) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("swanlab-writer".into())
            .spawn(move || writer.run(rx))
            .context("spawning the SwanLab writer thread")?;
        Ok(Some(Run {
            tx: Some(tx),
            worker: Some(worker),
            dir,
            name,
            mode: s.mode,
            api_host: s.api_host.clone(),
            finish_timeout: s.finish_timeout,
        }))
    }

    fn send(&self, msg: Msg) {
        if let Some(tx) = &self.tx {
            // A dead writer thread has already reported its error; logging must not fail training.
            let _ = tx.send(msg);
        }
    }

    /// Logs scalars (e.g. `("train/loss", 1.2)`) at `step`. A key keeps the first value of a step.
    pub fn scalars(&self, step: i64, values: &[(&str, f64)]) {
        let values = values.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        self.send(Msg::Scalars {
            step,
            ts: time::now(),
            values,
        });
    }

    /// Logs texts (e.g. three generated answers under "Prediction") at `step`.
    pub fn texts(&self, key: &str, step: i64, items: &[String]) {
        self.send(Msg::Texts {
            key: key.to_string(),
            step,
            ts: time::now(),
            items: items.to_vec(),
        });
    }

    /// Records a console line (newlines split it into several lines).
    pub fn console(&self, line: &str) {
        self.send(Msg::Console {
            line: line.to_string(),
            ts: time::now(),
        });
    }

    /// The run directory, `{log_dir}/run-{YYYYMMDD_HHMMSS}-{id}`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the final record and waits (at most the settings' `finish_timeout`) for the cloud
    /// upload to drain. Upload problems are reported with the `swanlab sync` command to finish
    /// the job; only a run file that could not be completed is an error.
    pub fn finish(mut self, state: FinishState) -> Result<()> {
        self.finish_inner(state, self.finish_timeout)
    }

    fn finish_inner(&mut self, state: FinishState, wait: Duration) -> Result<()> {
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        let (done_tx, done_rx) = mpsc::channel();
        let sent = tx.send(Msg::Finish {
            state,
            ts: time::now(),
            wait,
            done: done_tx,
        });
        drop(tx);
        // The writer only needs the uploader's drain time plus a moment to close the file.
        let outcome = sent
            .ok()
            .and_then(|_| done_rx.recv_timeout(wait + Duration::from_secs(5)).ok());
        if let Some(worker) = self.worker.take() {
            if outcome.is_some() {
                let _ = worker.join();
            }
        }
        let Some(outcome) = outcome else {
            bail!(
                "the SwanLab writer thread did not finish {}",
                self.dir.display()
            );
        };
        if self.mode == Mode::Cloud {
            match (&outcome.upload.url, &outcome.upload.problem) {
                (Some(url), None) => eprintln!("swanlab: View run {} at {url}", self.name),
                (_, problem) => eprintln!(
                    "swanlab: cloud upload incomplete ({}); the run is saved locally, upload it with: {}",
                    problem.as_deref().unwrap_or("unknown reason"),
                    sync_command(&self.api_host, &self.dir)
                ),
            }
        } else {
            eprintln!(
                "swanlab: Run `{}` to sync this run",
                sync_command(&self.api_host, &self.dir)
            );
        }
        match outcome.file_error {
            Some(e) => bail!("SwanLab run file {} is incomplete: {e}", self.dir.display()),
            None => Ok(()),
        }
    }
}

impl Drop for Run {
    /// A run dropped without `finish` (a panic unwinding, an early `?`) ends as CRASHED, waiting
    /// only briefly for uploads.
    fn drop(&mut self) {
        if self.tx.is_none() {
            return;
        }
        let why = if std::thread::panicking() {
            "panic"
        } else {
            "Run dropped without finish()"
        };
        let wait = self.finish_timeout.min(Duration::from_secs(5));
        if let Err(e) = self.finish_inner(FinishState::Crashed(why.to_string()), wait) {
            eprintln!("swanlab: {e:#}");
        }
    }
}

/// The command that uploads `dir` later, with `-h` for private deployments.
fn sync_command(api_host: &str, dir: &Path) -> String {
    let quoted = |s: String| if s.contains(' ') { format!("'{s}'") } else { s };
    let dir = quoted(dir.display().to_string());
    if api_host == DEFAULT_API_HOST {
        format!("swanlab sync {dir}")
    } else {
        format!("swanlab sync -h {api_host} {dir}")
    }
}

/// The API key from the settings, else typed at a prompt when a terminal is attached.
fn api_key(s: &ResolvedSettings) -> Result<ApiKey> {
    if let Some(k) = &s.api_key {
        return Ok(k.clone());
    }
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        bail!(
            "SwanLab mode is cloud but no API key was found: set SWANLAB_API_KEY, run `swanlab login`, \
             or set [swanlab] mode = \"offline\" (SWANLAB_MODE=offline) and upload later with `swanlab sync`"
        );
    }
    eprintln!(
        "swanlab: paste an API key from {}/space/~/settings (input is hidden)",
        s.web_host
    );
    let key =
        rpassword::prompt_password("swanlab: API key: ").context("reading the SwanLab API key")?;
    let key = key.trim();
    if key.is_empty() {
        bail!("no SwanLab API key entered");
    }
    Ok(ApiKey::new(key))
}

/// `helper.mkdir_and_append_gitignore`: a new (empty) log dir gets a `.gitignore` of `*`.
fn prepare_log_dir(log_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(log_dir)
        .with_context(|| format!("creating SwanLab log_dir {}", log_dir.display()))?;
    let empty = std::fs::read_dir(log_dir)
        .with_context(|| format!("reading {}", log_dir.display()))?
        .next()
        .is_none();
    if empty {
        let ignore = log_dir.join(".gitignore");
        write_atomic(&ignore, b"*").with_context(|| format!("writing {}", ignore.display()))?;
    }
    Ok(())
}

/// `ensure_run_dir`: `run-{YYYYMMDD_HHMMSS}-{id}`, created atomically (a clash takes a new id).
fn create_run_dir(log_dir: &Path) -> Result<(String, PathBuf)> {
    let mut last_err = None;
    for _ in 0..10 {
        let id = ids::run_id();
        let dir = log_dir.join(format!("run-{}-{id}", time::run_dir_stamp()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => {
                return Err(e).with_context(|| format!("creating run directory {}", dir.display()))
            }
        }
    }
    Err(last_err.expect("loop ran")).context("no unique run directory name after 10 tries")
}

/// Writes `path` through a temporary name and a rename, so readers never see half a file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
