//! Field rules and helpers of the SwanLab settings: the constraints of the SDK's
//! `sdk/internal/pkg/constraints` (project, workspace, names, tags), the tag parsing of
//! `ExperimentSettings.validate_tags`, the env quote stripping of `settings/compat/env.py`, and
//! the host handling of `pkg/nrc.fmt` and `settings.resolve_hosts`.

use anyhow::{bail, Context, Result};

/// SwanLab cloud's hosts (the SDK's defaults).
pub const DEFAULT_API_HOST: &str = "https://api.swanlab.cn";
pub const DEFAULT_WEB_HOST: &str = "https://swanlab.cn";

pub(crate) fn key_env(key: &str) -> &'static str {
    match key {
        "project" => "PROJECT_NAME",
        "workspace" => "PROJECT_WORKSPACE",
        "experiment" => "EXPERIMENT_NAME",
        "description" => "EXPERIMENT_DESCRIPTION",
        _ => unreachable!("no env variable for {key}"),
    }
}

pub(crate) fn strip_quotes(v: &str) -> &str {
    let b = v.as_bytes();
    if b.len() >= 2 && b[0] == b[b.len() - 1] && (b[0] == b'"' || b[0] == b'\'') {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

pub(crate) fn is_workspace_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

pub(crate) fn check(
    v: &str,
    min: usize,
    max: usize,
    ok: fn(char) -> bool,
    allowed: &str,
) -> Result<String> {
    let n = v.chars().count();
    if n < min || n > max {
        bail!("'{v}' must have {min} to {max} characters, it has {n}");
    }
    if let Some(c) = v.chars().find(|c| !ok(*c)) {
        bail!("'{v}' contains {c:?}: use only {allowed}");
    }
    Ok(v.to_string())
}

pub(crate) fn check_project(v: &str) -> Result<String> {
    check(
        v,
        1,
        100,
        |c| c.is_ascii_alphanumeric() || "_-+.".contains(c),
        "letters, digits, _ - + .",
    )
}

/// `ExperimentSettings.validate_tags`: a JSON array, else comma-separated.
pub(crate) fn parse_tags(v: &str) -> Vec<String> {
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(v) {
        return items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| t.to_string())
            })
            .collect();
    }
    v.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

pub(crate) fn check_tags(tags: Vec<String>) -> Result<Vec<String>> {
    if tags.len() > 30 {
        bail!("at most 30 tags are allowed, got {}", tags.len());
    }
    if let Some(t) = tags.iter().find(|t| t.chars().count() > 512) {
        bail!("tag '{t}' is longer than 512 characters");
    }
    Ok(tags)
}

/// `nrc.fmt`: keeps scheme (default https), host and port, drops any path.
pub fn fmt_host(host: &str) -> Result<String> {
    let host = host.trim();
    if host.is_empty() {
        bail!("host is empty");
    }
    let with_scheme = if host.contains("://") {
        host.to_string()
    } else {
        format!("https://{host}")
    };
    let url =
        reqwest::Url::parse(&with_scheme).with_context(|| format!("invalid host '{host}'"))?;
    let Some(name) = url.host_str() else {
        bail!("invalid host '{host}'")
    };
    Ok(match url.port() {
        Some(p) => format!("{}://{name}:{p}", url.scheme()),
        None => format!("{}://{name}", url.scheme()),
    })
}

/// `resolve_hosts`: the web host of a private deployment defaults to its API host.
pub(crate) fn resolve_hosts(api: Option<&str>, web: Option<&str>) -> (String, String) {
    let is_default_api = |h: &str| h == DEFAULT_API_HOST || h == "http://api.swanlab.cn";
    let is_default_web =
        |h: &str| is_default_api(h) || h == DEFAULT_WEB_HOST || h == "http://swanlab.cn";
    let api = match api {
        Some(a) if !is_default_api(a) => a.to_string(),
        _ => DEFAULT_API_HOST.to_string(),
    };
    let web = match web {
        Some(w) if !is_default_web(w) => w.to_string(),
        Some(_) => DEFAULT_WEB_HOST.to_string(),
        None if api == DEFAULT_API_HOST => DEFAULT_WEB_HOST.to_string(),
        None => api.clone(),
    };
    (api, web)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_follow_the_sdk() {
        assert_eq!(
            fmt_host("example.com:8000/api").unwrap(),
            "https://example.com:8000"
        );
        assert_eq!(
            resolve_hosts(None, Some("https://web.x")),
            (DEFAULT_API_HOST.into(), "https://web.x".into())
        );
        assert_eq!(
            resolve_hosts(Some("http://api.swanlab.cn"), None),
            (DEFAULT_API_HOST.into(), DEFAULT_WEB_HOST.into())
        );
    }
}
