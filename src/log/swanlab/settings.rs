//! The `[swanlab]` section of the run TOML and its resolution against the environment, mirroring
//! the SDK's `sdk/internal/settings/` (pydantic-settings with prefix `SWANLAB_`, the legacy
//! variables of `settings/compat/`, host derivation of `resolve_hosts`, `.netrc` fallback) and
//! the field constraints of `sdk/internal/pkg/constraints`. Precedence is the SDK's: a key set in
//! the TOML (like an explicit `swanlab.init` argument) beats `SWANLAB_*` variables, which beat the
//! legacy variables, which beat the defaults.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::fields::{
    check, check_project, check_tags, fmt_host, is_workspace_char, key_env, parse_tags,
    resolve_hosts, strip_quotes,
};
use super::netrc;

pub const DEFAULT_PROJECT: &str = "qwen3-sft-medical";
pub use super::fields::DEFAULT_API_HOST;
#[cfg(test)]
use super::fields::DEFAULT_WEB_HOST;

/// Where logs go. The SDK's `online` and `local` modes are accepted as aliases: `local` writes
/// the same run directory as `offline` (this crate ships no local dashboard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[serde(alias = "online")]
    Cloud,
    #[serde(alias = "local")]
    Offline,
    Disabled,
}

impl std::str::FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Mode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cloud" | "online" => Ok(Mode::Cloud),
            "offline" | "local" => Ok(Mode::Offline),
            "disabled" => Ok(Mode::Disabled),
            other => bail!("invalid SwanLab mode '{other}': use cloud (alias online), offline (alias local) or disabled"),
        }
    }
}

/// `[swanlab]` in the run TOML. Every key is optional; unset keys fall back to the environment
/// and then to the defaults (mode `cloud` as in the SDK, project `qwen3-sft-medical`,
/// log_dir `./swanlog`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwanlabSettings {
    pub mode: Option<Mode>,
    pub project: Option<String>,
    pub workspace: Option<String>,
    pub experiment: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub log_dir: Option<PathBuf>,
}

/// The API key, kept out of `Debug` output and error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Settings after the environment, defaults and validation have been applied.
#[derive(Debug, Clone)]
pub struct ResolvedSettings {
    pub mode: Mode,
    pub project: String,
    pub workspace: Option<String>,
    pub experiment: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub log_dir: PathBuf,
    pub api_host: String,
    pub web_host: String,
    /// From `SWANLAB_API_KEY` or `.netrc`; `None` means "prompt if a terminal is attached".
    pub api_key: Option<ApiKey>,
    /// How long `finish` waits for the uploader to drain before giving up on the cloud copy.
    pub finish_timeout: Duration,
    /// How long `start` waits for the cloud experiment to exist so it can print its URL.
    pub start_timeout: Duration,
}

impl SwanlabSettings {
    /// Resolves against the process environment and the current directory.
    pub fn resolve(&self) -> Result<ResolvedSettings> {
        let cwd = std::env::current_dir().context("reading the current directory")?;
        self.resolve_with(&|k| std::env::var(k).ok(), &cwd)
    }

    /// Resolves with `var` as the environment (tests pass a map) and `cwd` for `./.swanlab/.netrc`.
    pub fn resolve_with(
        &self,
        var: &dyn Fn(&str) -> Option<String>,
        cwd: &Path,
    ) -> Result<ResolvedSettings> {
        // pydantic-settings strips whitespace, the SDK's env source strips paired quotes.
        let env = |k: &str| {
            var(k)
                .map(|v| strip_quotes(v.trim()).to_string())
                .filter(|v| !v.is_empty())
        };
        let pick = |toml: &Option<String>,
                    key: &'static str,
                    legacy: &'static str|
         -> Option<(String, String)> {
            if let Some(v) = toml {
                return Some((v.clone(), format!("[swanlab] {key}")));
            }
            let names = [format!("SWANLAB_{}", key_env(key)), legacy.to_string()];
            names
                .into_iter()
                .filter(|n| !n.is_empty())
                .find_map(|n| env(&n).map(|v| (v, n)))
        };

        let mode = match (self.mode, env("SWANLAB_MODE")) {
            (Some(m), _) => m,
            (None, Some(v)) => v.parse().context("in SWANLAB_MODE")?,
            (None, None) => Mode::Cloud,
        };
        let project = match pick(&self.project, "project", "") {
            Some((v, src)) => check_project(&v).with_context(|| format!("in {src}"))?,
            // The SDK ignores an invalid legacy SWANLAB_PROJ_NAME with a warning.
            None => match env("SWANLAB_PROJ_NAME").map(|v| check_project(&v)) {
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    eprintln!("swanlab: ignoring SWANLAB_PROJ_NAME: {e:#}");
                    DEFAULT_PROJECT.to_string()
                }
                None => DEFAULT_PROJECT.to_string(),
            },
        };
        let workspace = pick(&self.workspace, "workspace", "SWANLAB_WORKSPACE")
            .map(|(v, src)| {
                check(&v, 1, 25, is_workspace_char, "letters, digits, - and _")
                    .with_context(|| format!("in {src}"))
            })
            .transpose()?;
        let experiment = pick(&self.experiment, "experiment", "SWANLAB_EXP_NAME")
            .map(|(v, src)| check(&v, 1, 512, |_| true, "").with_context(|| format!("in {src}")))
            .transpose()?;
        let description = pick(&self.description, "description", "SWANLAB_DESCRIPTION")
            .filter(|(v, _)| !v.is_empty())
            .map(|(v, src)| check(&v, 1, 1024, |_| true, "").with_context(|| format!("in {src}")))
            .transpose()?;
        let tags = match &self.tags {
            Some(t) => check_tags(t.clone()).context("in [swanlab] tags")?,
            None => match ["SWANLAB_EXPERIMENT_TAGS", "SWANLAB_TAGS"]
                .iter()
                .find_map(|n| env(n).map(|v| (v, *n)))
            {
                Some((v, n)) => check_tags(parse_tags(&v)).with_context(|| format!("in {n}"))?,
                None => Vec::new(),
            },
        };
        let log_dir = match (
            &self.log_dir,
            env("SWANLAB_LOG_DIR").or_else(|| env("SWANLAB_LOGDIR")),
        ) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => PathBuf::from(d),
            (None, None) => PathBuf::from("swanlog"),
        };
        if log_dir.exists() && !log_dir.is_dir() {
            bail!(
                "SwanLab log_dir {} exists but is not a directory",
                log_dir.display()
            );
        }

        let api_env = env("SWANLAB_API_HOST")
            .map(|h| fmt_host(&h))
            .transpose()
            .context("in SWANLAB_API_HOST")?;
        let web_env = env("SWANLAB_WEB_HOST")
            .map(|h| fmt_host(&h))
            .transpose()
            .context("in SWANLAB_WEB_HOST")?;
        let (mut api_host, mut web_host) = resolve_hosts(api_env.as_deref(), web_env.as_deref());
        let mut api_key = env("SWANLAB_API_KEY").map(ApiKey);
        if api_key.is_none() {
            let root = env("SWANLAB_ROOT")
                .or_else(|| env("SWANLAB_SAVE_DIR"))
                .map(PathBuf::from);
            let root = root.or_else(|| env("HOME").map(|h| Path::new(&h).join(".swanlab")));
            let files = [Some(cwd.join(".swanlab")), root]
                .into_iter()
                .flatten()
                .map(|d| d.join(".netrc"));
            for file in files {
                let Some(cred) = netrc::read(&file)? else {
                    continue;
                };
                // As the SDK: stored credentials only apply to the host they were saved for.
                if api_env.is_none() || api_env.as_deref() == Some(cred.api_host.as_str()) {
                    api_key = Some(ApiKey(cred.api_key));
                    if api_env.is_none() {
                        api_host = cred.api_host;
                        if web_env.is_none() {
                            web_host = cred.web_host;
                        }
                    }
                }
                break;
            }
        }
        Ok(ResolvedSettings {
            mode,
            project,
            workspace,
            experiment,
            description,
            tags,
            log_dir,
            api_host,
            web_host,
            api_key,
            finish_timeout: Duration::from_secs(20),
            start_timeout: Duration::from_secs(5),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(s: &SwanlabSettings, env: &[(&str, &str)]) -> Result<ResolvedSettings> {
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s.resolve_with(&|k| map.get(k).cloned(), Path::new("/nonexistent-cwd"))
    }

    #[test]
    fn toml_beats_env_beats_legacy_beats_default() {
        let r = resolve(&SwanlabSettings::default(), &[]).unwrap();
        assert_eq!(
            (r.mode, r.project.as_str(), r.log_dir.as_path()),
            (Mode::Cloud, DEFAULT_PROJECT, Path::new("swanlog"))
        );
        assert_eq!(
            (r.api_host.as_str(), r.web_host.as_str()),
            (DEFAULT_API_HOST, DEFAULT_WEB_HOST)
        );
        let env = [
            ("SWANLAB_MODE", "'local'"),
            ("SWANLAB_PROJECT_NAME", "envproj"),
            ("SWANLAB_PROJ_NAME", "legacy"),
            ("SWANLAB_EXP_NAME", "legacy-exp"),
            ("SWANLAB_TAGS", "a, b,,c"),
            ("SWANLAB_API_HOST", "http://127.0.0.1:9/some/path"),
            ("SWANLAB_API_KEY", "\"k\""),
        ];
        let r = resolve(&SwanlabSettings::default(), &env).unwrap();
        assert_eq!(
            (r.mode, r.project.as_str(), r.experiment.as_deref()),
            (Mode::Offline, "envproj", Some("legacy-exp"))
        );
        assert_eq!(r.tags, ["a", "b", "c"]);
        assert_eq!(
            (r.api_host.as_str(), r.web_host.as_str()),
            ("http://127.0.0.1:9", "http://127.0.0.1:9")
        );
        assert_eq!(r.api_key, Some(ApiKey::new("k")));
        assert!(!format!("{r:?}").contains("\"k\""));
        let toml = SwanlabSettings {
            mode: Some(Mode::Disabled),
            project: Some("p".into()),
            ..Default::default()
        };
        let r = resolve(&toml, &env).unwrap();
        assert_eq!((r.mode, r.project.as_str()), (Mode::Disabled, "p"));
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let toml = |t: &str| toml::from_str::<SwanlabSettings>(t);
        assert!(toml("mode = 'online'\nproject = 'x'").is_ok());
        assert!(toml("mode = 'cloudy'")
            .unwrap_err()
            .to_string()
            .contains("unknown variant"));
        assert!(toml("projet = 'x'")
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
        let bad = SwanlabSettings {
            project: Some("has space".into()),
            ..Default::default()
        };
        let e = format!("{:#}", resolve(&bad, &[]).unwrap_err());
        assert!(e.contains("[swanlab] project") && e.contains("' '"), "{e}");
        let e = format!(
            "{:#}",
            resolve(&SwanlabSettings::default(), &[("SWANLAB_MODE", "x")]).unwrap_err()
        );
        assert!(e.contains("SWANLAB_MODE"), "{e}");
        let many = SwanlabSettings {
            tags: Some(vec!["t".into(); 31]),
            ..Default::default()
        };
        assert!(resolve(&many, &[]).is_err());
        // An invalid legacy project name is ignored, as in the SDK.
        assert_eq!(
            resolve(&SwanlabSettings::default(), &[("SWANLAB_PROJ_NAME", "a b")])
                .unwrap()
                .project,
            DEFAULT_PROJECT
        );
    }
}
