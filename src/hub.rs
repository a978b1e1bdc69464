//! Getting a model (and, for `data/download.rs`, a data set file) onto local disk: a local
//! directory wins; otherwise a hub id such as `Qwen/Qwen3-1.7B` is found in, or downloaded into,
//! the usual caches of ModelScope (the seed's `snapshot_download` source, our default) or the
//! Hugging Face Hub. Cache first, so an offline machine with a warm cache never touches the network.
//! The files a model needs: config.json, the tokenizer files, generation_config.json when present,
//! and model.safetensors or model.safetensors.index.json plus its shards.

mod hf;
pub mod http;
mod modelscope;

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which hub serves hub ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    #[default]
    Modelscope,
    Hf,
}

impl std::str::FromStr for Source {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Source> {
        match s {
            "modelscope" => Ok(Source::Modelscope),
            "hf" => Ok(Source::Hf),
            other => bail!("unknown hub `{other}`: use modelscope or hf"),
        }
    }
}

/// What kind of repository an id names (they live under different URLs and cache folders).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepoKind {
    Model,
    Dataset,
}

impl RepoKind {
    fn segment(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }
}

/// A token: sent in headers, never shown by `Debug`, never written anywhere.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Endpoints, tokens, cache roots and timeouts; `from_env` reads the variables the Python SDKs
/// read, tests fill it in directly.
#[derive(Clone, Debug)]
pub struct HubConfig {
    pub modelscope_endpoint: String,
    pub modelscope_token: Option<Secret>,
    /// Root of the classic ModelScope layout we write: `MODELSCOPE_CACHE` or `~/.cache/modelscope/hub`.
    pub modelscope_cache: PathBuf,
    /// Root of `modelscope_hub`'s snapshot layout (read only): `MODELSCOPE_CACHE` or `~/.cache/modelscope`.
    pub modelscope_hub_cache: PathBuf,
    pub hf_endpoint: String,
    pub hf_token: Option<Secret>,
    /// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub hf_cache: PathBuf,
    /// `HF_HUB_OFFLINE`: only the cache is used for `--source hf`.
    pub hf_offline: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub progress: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn secs(name: &str, default: f64) -> Result<Duration> {
    let Some(v) = env(name) else {
        return Ok(Duration::from_secs_f64(default));
    };
    match v.trim().parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
        _ => bail!("{name}={v:?} is not a positive number of seconds"),
    }
}

/// `https://` for a bare domain, no trailing slash (what both SDKs do to their endpoint variables).
fn normalize_endpoint(v: &str) -> String {
    let v = v.trim().trim_end_matches('/');
    if v.starts_with("http://") || v.starts_with("https://") {
        v.to_string()
    } else {
        format!("https://{v}")
    }
}

impl HubConfig {
    pub fn from_env() -> Result<HubConfig> {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| ".".into());
        let ms_root = env("MODELSCOPE_CACHE").map(PathBuf::from);
        let hf_home = env("HF_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".cache").join("huggingface"));
        let hf_token = env("HF_TOKEN").or_else(|| {
            let t = std::fs::read_to_string(hf_home.join("token")).ok()?;
            Some(t.trim().to_string()).filter(|t| !t.is_empty())
        });
        let offline = env("HF_HUB_OFFLINE")
            .map(|v| {
                matches!(
                    v.trim().to_ascii_uppercase().as_str(),
                    "1" | "ON" | "YES" | "TRUE"
                )
            })
            .unwrap_or(false);
        Ok(HubConfig {
            modelscope_endpoint: normalize_endpoint(
                &env("MODELSCOPE_ENDPOINT")
                    .or_else(|| env("MODELSCOPE_DOMAIN"))
                    .unwrap_or_else(|| modelscope::DEFAULT_ENDPOINT.into()),
            ),
            modelscope_token: env("MODELSCOPE_API_TOKEN").map(Secret),
            modelscope_cache: ms_root
                .clone()
                .unwrap_or_else(|| home.join(".cache").join("modelscope").join("hub")),
            modelscope_hub_cache: ms_root.unwrap_or_else(|| home.join(".cache").join("modelscope")),
            hf_endpoint: normalize_endpoint(
                &env("HF_ENDPOINT").unwrap_or_else(|| hf::DEFAULT_ENDPOINT.into()),
            ),
            hf_token: hf_token.map(Secret),
            hf_cache: env("HF_HUB_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| hf_home.join("hub")),
            hf_offline: offline,
            connect_timeout: secs("QWEN3_SFT_CONNECT_TIMEOUT", 10.0)?,
            read_timeout: secs("QWEN3_SFT_READ_TIMEOUT", 60.0)?,
            progress: true,
        })
    }
}

/// `owner/name` with the characters hub ids allow.
fn split_repo_id(id: &str) -> Result<(&str, &str)> {
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    match id.split_once('/') {
        Some((o, n)) if ok(o) && ok(n) => Ok((o, n)),
        _ => bail!("`{id}` is neither an existing directory nor a hub id like Qwen/Qwen3-1.7B"),
    }
}

/// The host (and port) of an endpoint URL, for messages.
fn host_of(endpoint: &str) -> String {
    match reqwest::Url::parse(endpoint) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => endpoint.to_string(),
        },
        Err(_) => endpoint.to_string(),
    }
}

/// One repository on one hub: cache lookup and downloads.
pub(crate) enum Hub {
    Ms(modelscope::ModelScope),
    Hf(hf::HuggingFace),
}

impl Hub {
    /// `fallback` completes the error hint ("pass a local directory", "pass --input FILE").
    pub(crate) fn new(
        cfg: &HubConfig,
        source: Source,
        kind: RepoKind,
        repo: &str,
        fallback: &'static str,
    ) -> Result<Hub> {
        Ok(match source {
            Source::Modelscope => Hub::Ms(modelscope::ModelScope::new(cfg, kind, repo, fallback)?),
            Source::Hf => Hub::Hf(hf::HuggingFace::new(cfg, kind, repo, fallback)?),
        })
    }

    /// Directories that may hold a complete cached copy.
    pub(crate) fn cached_dirs(&self) -> Vec<PathBuf> {
        match self {
            Hub::Ms(m) => m.dirs(),
            Hub::Hf(h) => h.cached_dir().into_iter().collect(),
        }
    }

    /// One file, downloaded if needed; `None` when the hub says it does not exist.
    pub(crate) fn fetch(&self, http: &http::Http, file: &str) -> Result<Option<PathBuf>> {
        match self {
            Hub::Ms(m) => m.fetch(http, file),
            Hub::Hf(h) => h.fetch(http, file),
        }
    }

    /// Where downloads of this repository go (for messages).
    pub(crate) fn describe(&self) -> String {
        match self {
            Hub::Ms(m) => m.write_dir().display().to_string(),
            Hub::Hf(h) => h
                .cached_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        }
    }

    pub(crate) fn host(&self) -> &str {
        match self {
            Hub::Ms(m) => &m.site.host,
            Hub::Hf(h) => &h.site.host,
        }
    }
}

pub(crate) fn client(cfg: &HubConfig) -> Result<http::Http> {
    http::Http::new(cfg.connect_timeout, cfg.read_timeout, cfg.progress)
}

const TOKENIZER_FILES: [&str; 2] = ["tokenizer.json", "tokenizer_config.json"];
const OPTIONAL_FILES: [&str; 3] = ["generation_config.json", "vocab.json", "merges.txt"];
const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";

/// The shard files an index names, sorted and deduplicated.
fn shards(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index)
        .with_context(|| format!("cannot read {}", index.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", index.display()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| anyhow!("{}: no `weight_map` object", index.display()))?;
    let mut files: Vec<String> = Vec::new();
    for f in map.values() {
        let f = f
            .as_str()
            .filter(|f| !f.contains("..") && !f.starts_with('/'))
            .ok_or_else(|| anyhow!("{}: bad file name in weight_map", index.display()))?;
        files.push(f.to_string());
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// True when `dir` holds everything a model needs.
pub fn model_complete(dir: &Path) -> bool {
    let has = |f: &str| dir.join(f).is_file();
    if !has("config.json") || !TOKENIZER_FILES.iter().all(|f| has(f)) {
        return false;
    }
    if has(SINGLE) {
        return true;
    }
    has(INDEX) && shards(&dir.join(INDEX)).is_ok_and(|s| s.iter().all(|f| has(f)))
}

/// A model name to a local directory: an existing directory as is, else a hub id from the cache
/// or downloaded (settings from the environment).
pub fn resolve_model(name: &str, source: Source) -> Result<PathBuf> {
    resolve_model_with(name, source, &HubConfig::from_env()?)
}

/// `resolve_model` with explicit settings.
pub fn resolve_model_with(name: &str, source: Source, cfg: &HubConfig) -> Result<PathBuf> {
    let local = Path::new(name);
    if local.is_dir() {
        return Ok(local.to_path_buf());
    }
    let hub = Hub::new(cfg, source, RepoKind::Model, name, "pass a local directory")?;
    if let Some(dir) = hub.cached_dirs().into_iter().find(|d| model_complete(d)) {
        return Ok(dir);
    }
    let http = client(cfg)?;
    let need = |file: &str| -> Result<PathBuf> {
        hub.fetch(&http, file)?.ok_or_else(|| {
            anyhow!(
                "{name}: {file} not found on {} (check the model id and --source)",
                hub.host()
            )
        })
    };
    let config = need("config.json")?;
    for f in TOKENIZER_FILES {
        need(f)?;
    }
    for f in OPTIONAL_FILES {
        hub.fetch(&http, f)?;
    }
    if let Some(index) = hub.fetch(&http, INDEX)? {
        for shard in shards(&index)? {
            need(&shard)?;
        }
    } else if hub.fetch(&http, SINGLE)?.is_none() {
        bail!(
            "{name}: neither {SINGLE} nor {INDEX} on {} (only safetensors weights are supported)",
            hub.host()
        );
    }
    let dir = config
        .parent()
        .expect("config.json has a parent")
        .to_path_buf();
    if !model_complete(&dir) {
        bail!(
            "{name}: download finished but {} is incomplete ({})",
            dir.display(),
            hub.describe()
        );
    }
    Ok(dir)
}
