//! Hugging Face Hub downloads in the layout `huggingface_hub` uses, done with our own timed
//! client rather than `hf-hub`'s: `hf-hub` 0.4 builds its ureq agents without a read timeout, so
//! a host that accepts the connection and never answers hangs it forever (tests/hub.rs shows our
//! path fails in time instead). The `hf-hub` crate still names the cache folders.
//!
//! - metadata: `HEAD {endpoint}/[datasets/]{repo}/resolve/main/{file}` without following
//!   redirects (relative ones are followed, as `huggingface_hub` does); `X-Repo-Commit`,
//!   `X-Linked-Etag` or `ETag`;
//! - content: `GET` of the same URL, redirects followed (reqwest drops `Authorization` when the
//!   host changes, so the token never goes to the CDN);
//! - cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`):
//!   `{models|datasets}--{owner}--{name}/blobs/{etag}` (written via `{etag}.incomplete`),
//!   `snapshots/{commit}/{file}` a relative symlink to the blob, `refs/main` holding the commit.

use super::http::{Got, Http, Site};
use super::{HubConfig, RepoKind};
use anyhow::{anyhow, bail, Context, Result};
use hf_hub::{Repo, RepoType};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, LOCATION};
use std::path::{Path, PathBuf};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
const REVISION: &str = "main";

/// One Hugging Face repository (model or data set) in the local cache.
pub struct HuggingFace {
    endpoint: String,
    url_repo: String,
    repo_dir: PathBuf,
    headers: HeaderMap,
    repo: String,
    pub offline: bool,
    pub site: Site,
}

impl HuggingFace {
    pub fn new(
        cfg: &HubConfig,
        kind: RepoKind,
        repo: &str,
        fallback: &'static str,
    ) -> Result<Self> {
        super::split_repo_id(repo)?;
        let hf_repo = match kind {
            RepoKind::Model => Repo::new(repo.to_string(), RepoType::Model),
            RepoKind::Dataset => Repo::new(repo.to_string(), RepoType::Dataset),
        };
        let mut headers = HeaderMap::new();
        if let Some(t) = &cfg.hf_token {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", t.expose()))
                .map_err(|_| anyhow!("HF_TOKEN contains invalid characters"))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        Ok(HuggingFace {
            endpoint: cfg.hf_endpoint.clone(),
            url_repo: hf_repo.url(),
            repo_dir: cfg.hf_cache.join(hf_repo.folder_name()),
            headers,
            repo: repo.to_string(),
            offline: cfg.hf_offline,
            site: Site {
                host: super::host_of(&cfg.hf_endpoint),
                setting: "HF_ENDPOINT",
                alt: "--source modelscope",
                token_var: "HF_TOKEN",
                fallback,
            },
        })
    }

    fn url(&self, file: &str) -> String {
        format!(
            "{}/{}/resolve/{REVISION}/{file}",
            self.endpoint, self.url_repo
        )
    }

    /// The snapshot `refs/main` points at, if any: the only place a cached copy can be.
    pub fn cached_dir(&self) -> Option<PathBuf> {
        let commit = std::fs::read_to_string(self.repo_dir.join("refs").join(REVISION)).ok()?;
        Some(self.repo_dir.join("snapshots").join(commit.trim()))
    }

    /// Asks the hub for `file` and makes sure its blob and snapshot link exist; `None` on 404.
    pub fn fetch(&self, http: &Http, file: &str) -> Result<Option<PathBuf>> {
        if self.offline {
            bail!(
                "{}: {file} is not in the cache {} and HF_HUB_OFFLINE is set \
                 (unset it to download, or pass a local directory)",
                self.repo,
                self.repo_dir.display()
            );
        }
        let url = self.url(file);
        let Some((commit, etag)) = self.metadata(http, &url, file)? else {
            return Ok(None);
        };
        let blob = self.repo_dir.join("blobs").join(&etag);
        let label = format!("{}/{file}", self.repo);
        if !blob.is_file() {
            if let Got::NotFound = http.download(&url, &self.headers, &blob, &label, &self.site)? {
                return Ok(None);
            }
        }
        let snapshot = self.repo_dir.join("snapshots").join(&commit);
        let pointer = snapshot.join(file);
        link(&blob, &pointer)?;
        let refs = self.repo_dir.join("refs");
        std::fs::create_dir_all(&refs)
            .with_context(|| format!("cannot create {}", refs.display()))?;
        write_atomic(&refs.join(REVISION), commit.as_bytes())?;
        Ok(Some(pointer))
    }

    /// HEAD the resolve URL: (commit, etag), following only relative redirects (renamed repos).
    fn metadata(&self, http: &Http, url: &str, file: &str) -> Result<Option<(String, String)>> {
        let mut url = url.to_string();
        for _hop in 0..5 {
            let resp = http.head(&url, &self.headers, &self.site)?;
            let status = resp.status();
            let h = resp.headers();
            let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
            if status.is_redirection() {
                if let Some(loc) = get(LOCATION.as_str()).filter(|l| l.starts_with('/')) {
                    url = format!("{}{loc}", self.endpoint);
                    continue;
                }
            }
            match status.as_u16() {
                404 => return Ok(None),
                401 | 403 => bail!(
                    "{} refused {}/{file} (HTTP {}): the repository is private, gated or does not \
                     exist; set HF_TOKEN (it is sent, never printed)",
                    self.site.host,
                    self.repo,
                    status.as_u16()
                ),
                200..=399 => {}
                s => bail!(
                    "{} answered HTTP {s} for {}/{file}",
                    self.site.host,
                    self.repo
                ),
            }
            let commit = get("x-repo-commit").ok_or_else(|| {
                anyhow!(
                    "{} gave no X-Repo-Commit header for {}/{file}: is {} a Hugging Face hub? (check HF_ENDPOINT)",
                    self.site.host,
                    self.repo,
                    self.endpoint
                )
            })?;
            let etag = get("x-linked-etag")
                .or_else(|| get("etag"))
                .ok_or_else(|| {
                    anyhow!("{} gave no ETag for {}/{file}", self.site.host, self.repo)
                })?;
            let etag = etag.trim_start_matches("W/").replace('"', "");
            if commit.contains(['/', '.']) || etag.contains(['/', '.']) || etag.is_empty() {
                bail!(
                    "{} sent a malformed commit or ETag for {}/{file}",
                    self.site.host,
                    self.repo
                );
            }
            return Ok(Some((commit, etag)));
        }
        bail!(
            "{}: too many redirects for {}/{file}",
            self.site.host,
            self.repo
        )
    }
}

/// `snapshots/{commit}/{file}` -> `../../blobs/{etag}` (one more `..` per directory in `file`).
fn link(blob: &Path, pointer: &Path) -> Result<()> {
    if pointer.exists() {
        return Ok(());
    }
    let dir = pointer.parent().expect("pointer has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _ = std::fs::remove_file(pointer); // a dangling link from an interrupted run
                                           // pointer = repo/snapshots/commit/<file components>; blob = repo/blobs/etag.
    let repo_dir = blob
        .parent()
        .and_then(Path::parent)
        .expect("blob in repo/blobs");
    let depth = pointer
        .strip_prefix(repo_dir)
        .map(|p| p.components().count() - 1)
        .unwrap_or(2);
    let mut target = PathBuf::new();
    for _ in 0..depth {
        target.push("..");
    }
    target.push("blobs");
    target.push(blob.file_name().expect("blob has a name"));
    #[cfg(unix)]
    let linked = std::os::unix::fs::symlink(&target, pointer);
    #[cfg(not(unix))]
    let linked = std::fs::copy(blob, pointer).map(|_| ());
    linked.with_context(|| format!("cannot link {} to {}", pointer.display(), blob.display()))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = super::http::incomplete_path(path);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
