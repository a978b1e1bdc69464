//! Reads SwanLab's stored credentials, `~/.swanlab/.netrc`, as `sdk/internal/pkg/nrc.read` does:
//! the first `machine` entry, where machine is the API host, login the web host and password the
//! API key (`machine https://api.swanlab.cn login https://swanlab.cn password KEY`).

use std::path::Path;

use anyhow::{Context, Result};

use super::fields::fmt_host;

pub struct Credentials {
    pub api_host: String,
    pub web_host: String,
    pub api_key: String,
}

/// `Ok(None)` when the file does not exist or holds no complete entry.
pub fn read(path: &Path) -> Result<Option<Credentials>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse(&text))
}

fn parse(text: &str) -> Option<Credentials> {
    let mut tokens = text.split_whitespace();
    let (mut machine, mut login, mut password) = (None, None, None);
    while let Some(tok) = tokens.next() {
        match tok {
            "machine" => {
                if machine.is_some() {
                    break; // only the first entry counts
                }
                machine = tokens.next();
            }
            "login" if machine.is_some() => login = tokens.next(),
            "password" if machine.is_some() => password = tokens.next(),
            "account" => {
                tokens.next();
            }
            _ => {}
        }
    }
    // Old SDKs stored the machine with an `/api` suffix.
    let machine = machine?.trim_end_matches("/api");
    let api_host = fmt_host(machine).ok()?;
    let web_host = fmt_host(login?).ok()?;
    let api_key = password.filter(|p| !p.is_empty())?.to_string();
    Some(Credentials {
        api_host,
        web_host,
        api_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_machine_entry() {
        let c = parse("machine https://api.swanlab.cn/api\n  login https://swanlab.cn\n  password abc\nmachine x login y password z")
            .unwrap();
        assert_eq!(
            (c.api_host.as_str(), c.web_host.as_str(), c.api_key.as_str()),
            ("https://api.swanlab.cn", "https://swanlab.cn", "abc")
        );
        assert!(parse("machine h login w").is_none());
        assert!(parse("").is_none());
    }
}
