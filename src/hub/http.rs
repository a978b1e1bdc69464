//! The one HTTP download routine both hubs use: GET into `<dest>.incomplete`, resumed with an HTTP
//! `Range` request when a partial file exists, renamed onto `<dest>` only when every byte arrived
//! (the scheme of `huggingface_hub` and of `modelscope_hub._download_with_resume`). Connect and
//! per-read timeouts keep an unreachable or silent host from hanging the command; failures become
//! one-line errors that name the host and the setting to change.

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, ACCEPT_ENCODING, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Who is being asked, for error messages: the host, the variable that moves it, the other hub,
/// the variable holding its token, and the offline way out ("pass a local directory").
#[derive(Clone, Debug)]
pub struct Site {
    pub host: String,
    pub setting: &'static str,
    pub alt: &'static str,
    pub token_var: &'static str,
    pub fallback: &'static str,
}

impl Site {
    fn hint(&self) -> String {
        format!(
            "set {} or use {}, or {}",
            self.setting, self.alt, self.fallback
        )
    }
}

/// Outcome of a download: the file, or a 404 (optional files may legitimately be absent).
pub enum Got {
    File(PathBuf),
    NotFound,
}

/// A blocking client with the project's timeouts.
pub struct Http {
    client: Client,
    no_redirect: Client,
    read_timeout: Duration,
    progress: bool,
}

impl Http {
    pub fn new(connect: Duration, read: Duration, progress: bool) -> Result<Http> {
        // reqwest's blocking `timeout` bounds the wait for the response head and then every single
        // read of the body, so a stalled transfer fails while a slow but moving one does not.
        let build = |policy| {
            Client::builder()
                .connect_timeout(connect)
                .timeout(read)
                .redirect(policy)
                .user_agent(concat!("qwen3-sft/", env!("CARGO_PKG_VERSION")))
                .build()
                .context("cannot create the HTTP client")
        };
        Ok(Http {
            client: build(reqwest::redirect::Policy::limited(10))?,
            no_redirect: build(reqwest::redirect::Policy::none())?,
            read_timeout: read,
            progress,
        })
    }

    /// A HEAD request that does not follow redirects (the HF metadata probe).
    pub fn head(&self, url: &str, headers: &HeaderMap, site: &Site) -> Result<Response> {
        self.no_redirect
            .head(url)
            .headers(headers.clone())
            .header(ACCEPT_ENCODING, "identity")
            .send()
            .map_err(|e| self.net_error(&e, site))
    }

    /// Maps a transport error to the one-line message users act on.
    pub fn net_error(&self, e: &reqwest::Error, site: &Site) -> anyhow::Error {
        if e.is_timeout() && !e.is_connect() {
            anyhow!(
                "{} did not answer within {}s ({}; QWEN3_SFT_READ_TIMEOUT raises the limit)",
                site.host,
                self.read_timeout.as_secs_f64(),
                site.hint()
            )
        } else if e.is_connect() || e.is_timeout() {
            anyhow!("cannot reach {} ({})", site.host, site.hint())
        } else {
            anyhow!("{}: request failed: {e} ({})", site.host, site.hint())
        }
    }

    /// Downloads `url` to `dest`, `label` naming the file in messages (`owner/name/file`).
    pub fn download(
        &self,
        url: &str,
        headers: &HeaderMap,
        dest: &Path,
        label: &str,
        site: &Site,
    ) -> Result<Got> {
        let part = incomplete_path(dest);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // The partial file stays open and locked for the whole transfer: a second process
        // downloading the same file would otherwise append to it too.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .with_context(|| format!("cannot open {}", part.display()))?;
        if file.try_lock().is_err() {
            bail!(
                "{label}: another process is downloading {} (wait for it to finish)",
                part.display()
            );
        }
        let got = self.transfer(url, headers, &mut file, &part, label, site);
        if !matches!(got, Ok(true)) && file.metadata().is_ok_and(|m| m.len() == 0) {
            // Nothing received (404, refused, ...): leave no empty partial file behind.
            drop(file);
            let _ = std::fs::remove_file(&part);
        }
        if !got? {
            return Ok(Got::NotFound);
        }
        std::fs::rename(&part, dest)
            .with_context(|| format!("cannot rename {} to {}", part.display(), dest.display()))?;
        Ok(Got::File(dest.to_path_buf()))
    }

    /// The requests of one download into the locked partial file: `Ok(true)` once it holds the
    /// whole file, `Ok(false)` on HTTP 404.
    fn transfer(
        &self,
        url: &str,
        headers: &HeaderMap,
        file: &mut File,
        part: &Path,
        label: &str,
        site: &Site,
    ) -> Result<bool> {
        // At most two rounds: a partial file the server will not extend is dropped once.
        for _round in 0..2 {
            let have = file
                .metadata()
                .with_context(|| format!("cannot read {}", part.display()))?
                .len();
            let mut req = self
                .client
                .get(url)
                .headers(headers.clone())
                .header(ACCEPT_ENCODING, "identity");
            if have > 0 {
                req = req.header(RANGE, format!("bytes={have}-"));
            }
            let resp = req.send().map_err(|e| self.net_error(&e, site))?;
            let status = resp.status();
            let (start, total) = match status {
                StatusCode::OK => (0, resp.content_length()),
                StatusCode::PARTIAL_CONTENT => match parse_content_range(&resp) {
                    Some((s, t)) if s == have => (have, t),
                    _ => {
                        truncate(file, part)?;
                        continue;
                    }
                },
                StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
                    // "bytes */N": the partial file may hold all N bytes already.
                    if parse_content_range(&resp).and_then(|r| r.1) == Some(have) {
                        return Ok(true);
                    }
                    truncate(file, part)?;
                    continue;
                }
                StatusCode::NOT_FOUND => return Ok(false),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => bail!(
                    "{} refused {label} (HTTP {}): the repository is private or gated; set {} \
                     (it is sent, never printed)",
                    site.host,
                    status.as_u16(),
                    site.token_var
                ),
                s => bail!(
                    "{} answered HTTP {} for {label} ({})",
                    site.host,
                    s.as_u16(),
                    site.hint()
                ),
            };
            self.receive(resp, file, part, (start, total), label, site)?;
            return Ok(true);
        }
        bail!(
            "{label}: {} does not serve byte ranges consistently; delete {} and retry",
            site.host,
            part.display()
        )
    }

    /// Streams the body into `part` from byte `start` and checks the total length.
    fn receive(
        &self,
        mut resp: Response,
        file: &mut File,
        part: &Path,
        (start, total): (u64, Option<u64>),
        label: &str,
        site: &Site,
    ) -> Result<()> {
        if start == 0 {
            truncate(file, part)?;
        }
        file.seek(SeekFrom::Start(start))
            .with_context(|| format!("cannot seek in {}", part.display()))?;
        let bar = if self.progress {
            let bar = ProgressBar::new(total.unwrap_or(0));
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_message(label.to_string());
            bar.set_position(start);
            bar
        } else {
            ProgressBar::hidden()
        };
        let mut done = start;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    file.flush().ok();
                    bar.abandon();
                    let why = match e.get_ref().and_then(|r| r.downcast_ref::<reqwest::Error>()) {
                        Some(re) if re.is_timeout() => format!(
                            "{} stopped sending for {}s",
                            site.host,
                            self.read_timeout.as_secs_f64()
                        ),
                        _ => format!("connection to {} broke: {e}", site.host),
                    };
                    bail!("{label}: {why} after {done} bytes (run the command again to resume)");
                }
            };
            file.write_all(&buf[..n])
                .with_context(|| format!("cannot write {}", part.display()))?;
            done += n as u64;
            bar.set_position(done);
        }
        file.sync_all()
            .with_context(|| format!("cannot write {}", part.display()))?;
        bar.finish_and_clear();
        if let Some(t) = total {
            if done != t {
                bail!(
                    "{label}: {} sent {done} of {t} bytes (run the command again to resume)",
                    site.host
                );
            }
        }
        Ok(())
    }
}

/// `<dest>.incomplete`, the partial-download name both hub SDKs use.
pub fn incomplete_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".incomplete");
    PathBuf::from(name)
}

fn truncate(file: &mut File, part: &Path) -> Result<()> {
    file.set_len(0)
        .with_context(|| format!("cannot truncate {}", part.display()))
}

/// `Content-Range: bytes a-b/N` -> (a, Some(N)); `bytes */N` -> (0, Some(N)); `N` may be `*`.
fn parse_content_range(resp: &Response) -> Option<(u64, Option<u64>)> {
    let v = resp.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes")?.trim();
    let (range, total) = rest.split_once('/')?;
    let total = total.trim().parse().ok();
    let start = match range.trim() {
        "*" => 0,
        r => r.split_once('-')?.0.trim().parse().ok()?,
    };
    Some((start, total))
}
