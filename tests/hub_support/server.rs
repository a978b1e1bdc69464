//! A loopback HTTP server for tests/hub.rs: serves a tiny model and the data set file in the
//! ModelScope URL layout (`/api/v1/{models|datasets}/...`) and the Hugging Face `resolve` layout
//! (with `X-Repo-Commit`/`ETag`), honours `Range`, records every request, and can misbehave on
//! purpose (cut a transfer once, ignore ranges, accept and never answer). 127.0.0.1 only, and every
//! loop is bounded in time.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub headers: HashMap<String, String>,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Normal,
    /// The first GET of a file larger than 200 kB sends half of it, then closes.
    CutOnce,
    /// Ranges are ignored (always 200 with the whole file).
    NoRange,
    /// Accepts connections and never answers.
    Silent,
}

pub struct Server {
    pub port: u16,
    pub log: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

pub fn files() -> HashMap<String, Vec<u8>> {
    let blob = |seed: u8, n: usize| {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    };
    let mut f: HashMap<String, Vec<u8>> = HashMap::new();
    f.insert(
        "config.json".into(),
        br#"{"model_type": "qwen3", "hidden_size": 8}"#.to_vec(),
    );
    f.insert(
        "generation_config.json".into(),
        br#"{"do_sample": true}"#.to_vec(),
    );
    f.insert("tokenizer.json".into(), br#"{"version": "1.0"}"#.to_vec());
    f.insert(
        "tokenizer_config.json".into(),
        br#"{"model_max_length": 131072}"#.to_vec(),
    );
    f.insert(
        "model.safetensors.index.json".into(),
        br#"{"metadata": {"total_size": 1}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}"#.to_vec(),
    );
    f.insert("model-00001-of-00002.safetensors".into(), blob(1, 300_000));
    f.insert("model-00002-of-00002.safetensors".into(), blob(2, 150_000));
    f.insert(
        "r1_data_example.jsonl".into(),
        "{\"question\": \"问\", \"think\": \"想\", \"answer\": \"答\"}\n"
            .repeat(20)
            .into_bytes(),
    );
    f
}

/// The commit every Hugging Face answer names (`X-Repo-Commit`, `sha`, tree listings).
pub const COMMIT: &str = "0123abcd4567ef890123abcd4567ef890123abcd";
pub const MODEL: &str = "Qwen/Qwen3-0.6B";
pub const DATASET: &str = "krisfu/delicate_medical_r1_data";
pub const DATA_FILE: &str = "r1_data_example.jsonl";

/// The files of one repository: the data set holds the data file, the model everything else.
pub fn repo_files(dataset: bool) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = files()
        .into_iter()
        .filter(|(name, _)| (name == DATA_FILE) == dataset)
        .collect();
    v.sort();
    v
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a request gets.
enum Reply {
    File(String),
    Json(String),
    NotFound,
}

/// `%XX` and `+` undone (the clients escape file paths in query strings).
fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A query parameter's value.
fn param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .map(unquote)
}

/// The answer to a request, by the URL layouts of both hubs: ModelScope's file URLs (with or
/// without `Source=SDK`) and file listing, Hugging Face's `resolve` URLs (any revision), repo
/// info and tree listing.
fn route(target: &str) -> Reply {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    for (dataset, repo) in [(false, MODEL), (true, DATASET)] {
        let kind = if dataset { "datasets" } else { "models" };
        let names: Vec<String> = repo_files(dataset).into_iter().map(|f| f.0).collect();
        // ModelScope
        let ms = format!("/api/v1/{kind}/{repo}/repo");
        if path == ms && param(query, "Revision").as_deref() == Some("master") {
            return match param(query, "FilePath") {
                Some(f) if names.contains(&f) => Reply::File(f),
                _ => Reply::NotFound,
            };
        }
        if path == format!("{ms}/files") || path == format!("{ms}/tree") {
            let listing: Vec<String> = repo_files(dataset)
                .iter()
                .map(|(name, bytes)| {
                    format!(
                        r#"{{"Path": "{name}", "Name": "{name}", "Type": "blob", "Size": {}, "Sha256": "{}"}}"#,
                        bytes.len(),
                        sha256_hex(bytes)
                    )
                })
                .collect();
            return Reply::Json(format!(
                r#"{{"Code": 200, "Success": true, "Data": {{"Files": [{}]}}}}"#,
                listing.join(", ")
            ));
        }
        // Hugging Face
        let hf_repo = if dataset {
            format!("/datasets/{repo}")
        } else {
            format!("/{repo}")
        };
        if let Some(rest) = path.strip_prefix(&format!("{hf_repo}/resolve/")) {
            return match rest.split_once('/') {
                Some((rev, f))
                    if (rev == "main" || rev == COMMIT) && names.iter().any(|n| n == f) =>
                {
                    Reply::File(f.to_string())
                }
                _ => Reply::NotFound,
            };
        }
        let api = format!("/api/{kind}/{repo}");
        if path == format!("{api}/revision/main") || path == api {
            let siblings: Vec<String> = names
                .iter()
                .map(|n| format!(r#"{{"rfilename": "{n}"}}"#))
                .collect();
            return Reply::Json(format!(
                r#"{{"id": "{repo}", "sha": "{COMMIT}", "private": false, "siblings": [{}]}}"#,
                siblings.join(", ")
            ));
        }
        if path == format!("{api}/tree/{COMMIT}") || path == format!("{api}/tree/main") {
            let tree: Vec<String> = repo_files(dataset)
                .iter()
                .map(|(name, bytes)| {
                    format!(
                        r#"{{"type": "file", "path": "{name}", "size": {}, "oid": "{}"}}"#,
                        bytes.len(),
                        etag(name)
                    )
                })
                .collect();
            return Reply::Json(format!("[{}]", tree.join(", ")));
        }
    }
    Reply::NotFound
}

/// The Hugging Face ETag of a file (a blob name in the cache).
pub fn etag(name: &str) -> String {
    format!("etag-{}", name.replace('.', "-"))
}

pub fn serve(mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (log, stop) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(AtomicBool::new(false)),
    );
    let (log2, stop2) = (log.clone(), stop.clone());
    std::thread::spawn(move || {
        let files = files();
        let cut = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
            match listener.accept() {
                Ok((s, _)) => {
                    let (files, log, cut, stop) =
                        (files.clone(), log2.clone(), cut.clone(), stop2.clone());
                    std::thread::spawn(move || handle(s, mode, &files, &log, &cut, &stop));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Server { port, log, stop }
}

fn handle(
    mut s: TcpStream,
    mode: Mode,
    files: &HashMap<String, Vec<u8>>,
    log: &Mutex<Vec<Req>>,
    cut: &Mutex<std::collections::HashSet<String>>,
    stop: &AtomicBool,
) {
    s.set_nonblocking(false).unwrap();
    if mode == Mode::Silent {
        // Hold the connection open without a byte, for a bounded time.
        let until = Instant::now() + Duration::from_secs(20);
        while !stop.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        return;
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        if s.read(&mut b).unwrap_or(0) == 0 {
            return;
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, target) = (
        first.next().unwrap_or("").to_string(),
        first.next().unwrap_or("").to_string(),
    );
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    log.lock().unwrap().push(Req {
        method: method.clone(),
        target: target.clone(),
        headers: headers.clone(),
    });
    let (name, body) = match route(&target) {
        Reply::File(f) => {
            let body = files[&f].clone();
            (f, body)
        }
        Reply::Json(json) => {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                json.len()
            );
            return;
        }
        Reply::NotFound => {
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
    };
    let hf = format!("X-Repo-Commit: {COMMIT}\r\nETag: \"{}\"\r\n", etag(&name));
    let start = match (mode, headers.get("range")) {
        (Mode::NoRange, _) | (_, None) => 0,
        (_, Some(r)) => r
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap_or(0),
    };
    let status = if start > 0 {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let range = if start > 0 {
        format!(
            "Content-Range: bytes {start}-{}/{}\r\n",
            body.len() - 1,
            body.len()
        )
    } else {
        String::new()
    };
    let part = &body[start.min(body.len())..];
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{range}{hf}Connection: close\r\n\r\n",
        part.len()
    );
    if method == "HEAD" {
        return;
    }
    let cut_now = mode == Mode::CutOnce && body.len() > 200_000 && cut.lock().unwrap().insert(name);
    let send = if cut_now {
        &part[..part.len() / 2]
    } else {
        part
    };
    let _ = s.write_all(send);
}
