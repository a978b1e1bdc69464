//! A small recording SwanLab API server on 127.0.0.1 for tests: it answers the endpoints the SDK
//! and the native uploader use (login, project get/create, experiment, heartbeat, series,
//! metrics, presigned PUT, profile, state), records every request with the status it got, and
//! can fail (HTTP 500) or stall requests during a time window. Threads stop when it is dropped.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
}

impl Req {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Misbehaviour for requests that arrive during `[from, until)` (except login and set-up calls
/// when `setup_ok`): `status` 500 answers, or a stall until `until` before answering normally.
#[derive(Debug, Clone)]
pub struct Fault {
    pub from: Instant,
    pub until: Instant,
    pub stall: bool,
    pub setup_ok: bool,
}

#[derive(Default)]
struct State {
    requests: Vec<Req>,
    projects: HashSet<String>,
    faults: Vec<Fault>,
    login_status: Option<u16>,
}

pub struct Server {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (st, sp) = (st.clone(), sp.clone());
                        std::thread::spawn(move || serve(conn, port, st, sp));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn fault(&self, f: Fault) {
        self.state.lock().unwrap().faults.push(f);
    }

    pub fn login_status(&self, status: u16) {
        self.state.lock().unwrap().login_status = Some(status);
    }

    pub fn requests(&self) -> Vec<Req> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Method, path, lower-cased headers and body of one HTTP/1.1 request.
type Parsed = (String, String, Vec<(String, String)>, Vec<u8>);

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Parsed> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body).ok()?;
    } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some((method, path, headers, body))
}

fn serve(conn: TcpStream, port: u16, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut w = conn.try_clone().expect("clone stream");
    let mut r = BufReader::new(conn);
    while !stop.load(Ordering::Relaxed) {
        let Some((method, path, headers, body)) = read_request(&mut r) else {
            return;
        };
        let arrived = Instant::now();
        let setup = path.starts_with("/api/login")
            || path.starts_with("/api/project/") && method == "GET"
            || path.ends_with("/experiment")
            || path.starts_with("/api/projects/") && !path.ends_with("/series");
        let fault = state
            .lock()
            .unwrap()
            .faults
            .iter()
            .find(|f| f.from <= arrived && arrived < f.until && !(setup && f.setup_ok))
            .cloned();
        let mut failed = false;
        if let Some(f) = fault {
            if f.stall {
                while Instant::now() < f.until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            } else {
                failed = true;
            }
        }
        let (status, out) = if failed {
            (
                500,
                json!({"code": "internal", "message": "injected failure"}),
            )
        } else {
            route(&method, &path, &body, port, &state)
        };
        state.lock().unwrap().requests.push(Req {
            method,
            path,
            headers,
            body,
            status,
        });
        let data = out.to_string();
        let resp = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{data}",
            data.len()
        );
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

fn route(method: &str, path: &str, body: &[u8], port: u16, state: &Mutex<State>) -> (u16, Value) {
    let p = path.split('?').next().unwrap_or(path);
    let seg: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    let jb: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut st = state.lock().unwrap();
    match (method, seg.as_slice()) {
        ("POST", ["api", "login", "api_key"]) => match st.login_status {
            Some(s) => (s, json!({"code": "unauthorized", "message": "bad key"})),
            None => (
                200,
                json!({"sid": "sid-123", "expiredAt": "2099-01-01T00:00:00.000Z", "userInfo": {"username": "tester", "name": "Tester"}}),
            ),
        },
        ("GET", ["api", "project", ws, name]) => {
            if st.projects.contains(&format!("{ws}/{name}")) {
                let project = json!({"cuid": "proj-cuid", "name": name, "path": format!("/{ws}/{name}"), "version": 1,
                    "group": {"username": ws}, "_count": {"experiments": 3}});
                (200, project)
            } else {
                (
                    404,
                    json!({"code": "not_found", "message": "project not found"}),
                )
            }
        }
        ("POST", ["api", "projects", ws]) => {
            let name = jb
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            st.projects.insert(format!("{ws}/{name}"));
            (201, json!({}))
        }
        ("POST", ["api", "project", _, _, "experiment"]) => (
            201,
            json!({"cuid": "exp-cuid", "name": jb.get("name"), "slug": "exp-slug"}),
        ),
        ("POST", ["api", "resources", "presigned", "put"]) => {
            let paths = jb
                .get("paths")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let urls: Vec<String> = paths
                .iter()
                .filter_map(Value::as_str)
                .map(|p| format!("http://127.0.0.1:{port}/upload/{p}?sig=x"))
                .collect();
            (200, json!({"urls": urls}))
        }
        _ => (200, json!({})),
    }
}
