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

/// Which file a request asks for, by the URL layouts of both hubs.
fn route(target: &str) -> Option<String> {
    if let Some((path, query)) = target.split_once('?') {
        let ok = path == "/api/v1/models/Qwen/Qwen3-0.6B/repo"
            && query.starts_with("Revision=master&FilePath=")
            || path == "/api/v1/datasets/krisfu/delicate_medical_r1_data/repo"
                && query.starts_with("Source=SDK&Revision=master&FilePath=");
        return ok.then(|| query.rsplit_once("FilePath=").unwrap().1.to_string());
    }
    [
        "/Qwen/Qwen3-0.6B/resolve/main/",
        "/datasets/krisfu/delicate_medical_r1_data/resolve/main/",
    ]
    .iter()
    .find_map(|p| target.strip_prefix(p).map(str::to_string))
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
    let Some(body) = route(&target).and_then(|f| files.get(&f).map(|b| (f, b))) else {
        let _ = s
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let (name, body) = body;
    let hf = format!(
        "X-Repo-Commit: 0123abcd\r\nETag: \"etag-{}\"\r\n",
        name.replace('.', "-")
    );
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
