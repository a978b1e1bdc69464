//! ModelScope without its SDK: the file URLs, headers and cache layout of `modelscope` 1.40.2 and
//! the `modelscope_hub` 0.5 library it delegates to.
//!
//! - model file: `{endpoint}/api/v1/models/{owner}/{name}/repo?Revision=master&FilePath={path}`
//!   (`LegacyClient.get_download_url`, values `quote_plus`-escaped);
//! - data set file: `{endpoint}/api/v1/datasets/{owner}/{name}/repo?Source=SDK&Revision=master&FilePath={path}`
//!   (`hf_datasets_util`, what `MsDataset.load` fetches);
//! - endpoint: `MODELSCOPE_ENDPOINT`, else `MODELSCOPE_DOMAIN` (bare domains get `https://`), else
//!   `https://www.modelscope.cn`;
//! - token `MODELSCOPE_API_TOKEN`, sent as `Authorization: Bearer` and cookie `m_session_id`;
//! - cache: we write the classic layout `{MODELSCOPE_CACHE or ~/.cache/modelscope/hub}/{models|datasets}/{owner}/{name with . -> ___}`,
//!   which old SDKs write and `modelscope_hub` still reuses, and also read the newer
//!   `{MODELSCOPE_CACHE or ~/.cache/modelscope}/{kind}s/{owner}--{name}/snapshots/master`.

use super::http::{Got, Http, Site};
use super::{HubConfig, RepoKind};
use anyhow::Result;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, COOKIE};
use std::path::{Path, PathBuf};

pub const DEFAULT_ENDPOINT: &str = "https://www.modelscope.cn";

/// One ModelScope repository (model or data set) and where its files go.
pub struct ModelScope {
    endpoint: String,
    kind: RepoKind,
    owner: String,
    name: String,
    headers: HeaderMap,
    write_dir: PathBuf,
    snapshot_dir: PathBuf,
    pub site: Site,
}

impl ModelScope {
    pub fn new(
        cfg: &HubConfig,
        kind: RepoKind,
        repo: &str,
        fallback: &'static str,
    ) -> Result<Self> {
        let (owner, name) = super::split_repo_id(repo)?;
        let mut headers = HeaderMap::new();
        if let Some(t) = &cfg.modelscope_token {
            let mut bearer = HeaderValue::from_str(&format!("Bearer {}", t.expose()))
                .map_err(|_| anyhow::anyhow!("MODELSCOPE_API_TOKEN contains invalid characters"))?;
            bearer.set_sensitive(true);
            let mut cookie = HeaderValue::from_str(&format!("m_session_id={}", t.expose()))
                .map_err(|_| anyhow::anyhow!("MODELSCOPE_API_TOKEN contains invalid characters"))?;
            cookie.set_sensitive(true);
            headers.insert(AUTHORIZATION, bearer);
            headers.insert(COOKIE, cookie);
        }
        let segment = kind.segment();
        let safe_name = name.replace('.', "___");
        Ok(ModelScope {
            endpoint: cfg.modelscope_endpoint.clone(),
            kind,
            write_dir: cfg
                .modelscope_cache
                .join(segment)
                .join(owner)
                .join(safe_name),
            snapshot_dir: cfg
                .modelscope_hub_cache
                .join(segment)
                .join(format!("{owner}--{name}"))
                .join("snapshots")
                .join("master"),
            owner: owner.to_string(),
            name: name.to_string(),
            headers,
            site: Site {
                host: super::host_of(&cfg.modelscope_endpoint),
                setting: "MODELSCOPE_DOMAIN",
                alt: "--source hf",
                token_var: "MODELSCOPE_API_TOKEN",
                fallback,
            },
        })
    }

    /// The download URL of `file` (revision `master`, as the SDK's default).
    pub fn url(&self, file: &str) -> String {
        let (o, n) = (&self.owner, &self.name);
        let q = quote_plus(file);
        match self.kind {
            RepoKind::Model => format!(
                "{}/api/v1/models/{o}/{n}/repo?Revision=master&FilePath={q}",
                self.endpoint
            ),
            RepoKind::Dataset => format!(
                "{}/api/v1/datasets/{o}/{n}/repo?Source=SDK&Revision=master&FilePath={q}",
                self.endpoint
            ),
        }
    }

    /// Local directories that may hold a copy, the one we write first.
    pub fn dirs(&self) -> Vec<PathBuf> {
        vec![self.write_dir.clone(), self.snapshot_dir.clone()]
    }

    /// `file` from the cache when a complete copy is there (a finished download is only ever
    /// renamed into place), else downloaded into the write directory; `None` on HTTP 404.
    pub fn fetch(&self, http: &Http, file: &str) -> Result<Option<PathBuf>> {
        let dest = self.write_dir.join(file);
        if dest.is_file() {
            return Ok(Some(dest));
        }
        let label = format!("{}/{}/{file}", self.owner, self.name);
        match http.download(&self.url(file), &self.headers, &dest, &label, &self.site)? {
            Got::File(p) => Ok(Some(p)),
            Got::NotFound => Ok(None),
        }
    }

    pub fn write_dir(&self) -> &Path {
        &self.write_dir
    }
}

/// Python's `urllib.parse.quote_plus(s)` (safe=''): unreserved bytes stay, space becomes `+`,
/// everything else `%XX`.
pub fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn quote_plus_like_python() {
        // urllib.parse.quote_plus("sub dir/a+b.json") == "sub+dir%2Fa%2Bb.json"
        assert_eq!(
            super::quote_plus("sub dir/a+b.json"),
            "sub+dir%2Fa%2Bb.json"
        );
        assert_eq!(super::quote_plus("数据.jsonl"), "%E6%95%B0%E6%8D%AE.jsonl");
    }
}
