//! The cloud uploader thread (mode `cloud`), mirroring the SDK's online path:
//! `core_python/core.py` (`_start_when_online`, two-phase finish), `transport/worker` (records
//! buffered and sent every 1.5 s, grouped by kind in arrival order, exponential backoff 1 s to
//! 10 s with jitter, immediate retry when finishing), `transport/dispatch` (a failed group keeps
//! itself and every later group pending, a rejected one is dropped) and `heartbeat` (every
//! 10 minutes). The caller only ever takes a lock to append records; `finish` waits a bounded time.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::api::{ApiError, Client};
use super::proto::{FinishRecord, LogLevel, LogRecord, Record, RecordType, RunState, StartRecord};
use super::sender::{self, Remote, Sender};
use super::settings::ApiKey;

const INTERVAL: Duration = Duration::from_millis(1500);
const HEARTBEAT: Duration = Duration::from_secs(600);
const BATCH: usize = 10_000;

pub(crate) struct UploadConfig {
    pub api_host: String,
    pub web_host: String,
    pub api_key: ApiKey,
    pub start: StartRecord,
    pub config: Value,
    pub run_dir: std::path::PathBuf,
}

/// What the cloud got: the run's URL once created, and why the upload is incomplete if it is.
#[derive(Debug, Default, Clone)]
pub(crate) struct UploadOutcome {
    pub url: Option<String>,
    pub problem: Option<String>,
}

#[derive(Default)]
struct State {
    buffer: Vec<Record>,
    finish: Option<FinishRecord>,
    url: Option<String>,
    /// Set once the thread has given up or completed.
    done: Option<UploadOutcome>,
    /// `finish` stopped waiting: the thread exits at its next retry instead of living on.
    abandoned: bool,
    /// `start` stopped waiting for the URL: the thread prints it when it gets one.
    announce_late: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) struct Uploader {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Uploader {
    pub fn start(cfg: UploadConfig) -> Uploader {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("swanlab-upload".into())
            .spawn(move || worker(s, cfg));
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                shared.lock().done = Some(UploadOutcome {
                    url: None,
                    problem: Some(format!("no upload thread: {e}")),
                });
                None
            }
        };
        Uploader { shared, thread }
    }

    /// Waits up to `timeout` for the experiment to exist; its URL, if it does.
    pub fn wait_ready(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while st.url.is_none() && st.done.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if let Some(UploadOutcome {
            problem: Some(p), ..
        }) = &st.done
        {
            eprintln!("swanlab: cloud upload disabled: {p}");
        }
        st.announce_late = st.url.is_none();
        st.url.clone()
    }

    /// Queues records; like the SDK's `Transport.put` it does not wake the thread, which picks
    /// them up on its next 1.5 s tick.
    pub fn push(&self, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        let mut st = self.shared.lock();
        if st.done.is_none() {
            st.buffer.extend(records);
        }
    }

    /// Hands over the finish record and waits at most `wait` for the drain and the final state.
    pub fn finish(mut self, fin: FinishRecord, wait: Duration) -> UploadOutcome {
        let deadline = Instant::now() + wait;
        let mut st = self.shared.lock();
        st.finish = Some(fin);
        self.shared.cv.notify_all();
        while st.done.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                st.abandoned = true;
                let pending = st.buffer.len();
                return UploadOutcome {
                    url: st.url.clone(),
                    problem: Some(format!("gave up after {}s with the server not done ({pending} records still queued)", wait.as_secs())),
                };
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let out = st.done.clone().unwrap_or_default();
        drop(st);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        out
    }
}

/// Exponential backoff as `RetryPolicy`: 1 s doubling to 10 s, times a 0.8-1.2 jitter.
fn backoff(failed_rounds: u32) -> Duration {
    let base = (1u64 << failed_rounds.saturating_sub(1).min(4)) as f64;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let jitter = 0.8 + 0.4 * f64::from(nanos % 1000) / 1000.0;
    Duration::from_secs_f64((base.min(10.0) * jitter).min(10.0))
}

fn worker(shared: Arc<Shared>, cfg: UploadConfig) {
    let finish_outcome = |shared: &Shared, out: UploadOutcome| {
        shared.lock().done = Some(out);
        shared.cv.notify_all();
    };
    // Phase 1: log in and create the experiment, retrying transient failures until finish gives up.
    let mut rounds = 0;
    let (mut client, remote) = loop {
        let attempt = Client::login(&cfg.api_host, cfg.api_key.clone()).and_then(|mut c| {
            sender::create_experiment(&mut c, &cfg.start, &cfg.web_host).map(|r| (c, r))
        });
        match attempt {
            Ok(ok) => break ok,
            Err(e) if !e.retryable() => {
                return finish_outcome(
                    &shared,
                    UploadOutcome {
                        url: None,
                        problem: Some(e.message),
                    },
                )
            }
            Err(e) => {
                rounds += 1;
                if rounds == 1 {
                    eprintln!(
                        "swanlab: cannot reach SwanLab yet ({e}); retrying in the background"
                    );
                }
                std::thread::sleep(backoff(rounds));
                if shared.lock().abandoned {
                    return;
                }
            }
        }
    };
    {
        let mut st = shared.lock();
        st.url = Some(remote.url.clone());
        if st.announce_late {
            eprintln!(
                "swanlab: connected; view run {} at {}",
                cfg.start.name, remote.url
            );
        }
        shared.cv.notify_all();
    }
    // The SDK's heartbeat fires at start, then every 10 minutes; failures only log.
    let _ = sender::heartbeat(&mut client, &remote);
    let mut last_beat = Instant::now();

    // Phase 2: ship records.
    let mut pending: Vec<Record> = Vec::new();
    let mut failed_rounds = 0u32;
    let mut retry_at: Option<Instant> = None;
    let mut rejected = 0usize;
    let mut epoch = 0i64;
    let mut finish: Option<FinishRecord> = None;
    loop {
        {
            let mut st = shared.lock();
            loop {
                if finish.is_none() && st.finish.is_some() {
                    break; // `request_finish`: stop waiting out the backoff, retry now
                }
                let due = retry_at.map(|t| Instant::now() >= t).unwrap_or(true);
                if due && (!pending.is_empty() || !st.buffer.is_empty() || finish.is_some()) {
                    break;
                }
                let wait = retry_at
                    .map(|t| t.saturating_duration_since(Instant::now()))
                    .unwrap_or(INTERVAL);
                st = shared
                    .cv
                    .wait_timeout(st, wait.min(INTERVAL))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                if last_beat.elapsed() >= HEARTBEAT {
                    break;
                }
            }
            pending.append(&mut st.buffer);
            for r in &pending {
                if let Some(RecordType::Log(l)) = &r.record_type {
                    epoch = epoch.max(l.epoch);
                }
            }
            if finish.is_none() {
                if let Some(fin) = st.finish.clone() {
                    // Every record is queued by now; a failed run adds its error as a last
                    // console line (ERROR level), as `_finish_when_online` does.
                    if let Some(line) = error_line(&fin, epoch) {
                        pending.push(line);
                    }
                    finish = Some(fin);
                }
            }
        }
        if last_beat.elapsed() >= HEARTBEAT {
            let _ = sender::heartbeat(&mut client, &remote);
            last_beat = Instant::now();
        }
        // The SDK's RecordBuffer keeps one record per number: a later config save replaces the first.
        dedup_by_num(&mut pending);
        let mut tx = Sender {
            client: &mut client,
            remote: &remote,
            config: &cfg.config,
            run_dir: &cfg.run_dir,
        };
        if let Err(e) = send_round(&mut tx, &mut pending, &mut rejected) {
            failed_rounds += 1;
            if failed_rounds == 1 {
                eprintln!("swanlab: upload failed ({e}); retrying automatically");
            }
            retry_at = Some(Instant::now() + backoff(failed_rounds));
            if shared.lock().abandoned {
                return;
            }
            continue;
        }
        if failed_rounds > 0 {
            eprintln!("swanlab: upload recovered");
        }
        failed_rounds = 0;
        retry_at = None;
        let Some(fin) = &finish else { continue };
        let out = finish_cloud(&mut client, &remote, fin, rejected);
        return finish_outcome(&shared, out);
    }
}

/// The ERROR console line of a crashed or aborted run, numbered after the last logged line.
fn error_line(fin: &FinishRecord, epoch: i64) -> Option<Record> {
    if fin.state == RunState::Finished as i32 {
        return None;
    }
    let log = LogRecord {
        line: fin.error.clone(),
        level: LogLevel::Error as i32,
        timestamp: fin.finished_at,
        epoch: epoch + 1,
    };
    Some(Record {
        num: -100,
        timestamp: fin.finished_at,
        record_type: Some(RecordType::Log(log)),
    })
}

fn dedup_by_num(records: &mut Vec<Record>) {
    let mut last = std::collections::HashMap::new();
    for (i, r) in records.iter().enumerate() {
        last.insert(r.num, i);
    }
    let mut i = 0;
    records.retain(|r| {
        let keep = last.get(&r.num) == Some(&i);
        i += 1;
        keep
    });
}

/// One dispatch round: kinds in first-arrival order; a retryable failure leaves the failed group
/// and everything after it pending, a rejected group is dropped and counted.
fn send_round(
    tx: &mut Sender<'_>,
    pending: &mut Vec<Record>,
    rejected: &mut usize,
) -> Result<(), ApiError> {
    let mut kinds: Vec<&'static str> = Vec::new();
    for r in pending.iter() {
        let k = sender::kind(r);
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    for (i, kind) in kinds.iter().enumerate() {
        let group: Vec<Record> = pending
            .iter()
            .filter(|r| sender::kind(r) == *kind)
            .cloned()
            .collect();
        for (c, chunk) in group.chunks(BATCH).enumerate() {
            match tx.send(kind, chunk) {
                Ok(()) => {}
                Err(e) if e.retryable() => {
                    let later = &kinds[i + 1..];
                    let mut keep: Vec<Record> = group[c * BATCH..].to_vec();
                    keep.extend(
                        pending
                            .iter()
                            .filter(|r| later.contains(&sender::kind(r)))
                            .cloned(),
                    );
                    *pending = keep;
                    return Err(e);
                }
                Err(e) => {
                    *rejected += chunk.len();
                    eprintln!(
                        "swanlab: the server rejected {} {kind} record(s): {e}",
                        chunk.len()
                    );
                }
            }
        }
    }
    pending.clear();
    Ok(())
}

/// After the drain: the final state (`stop_experiment`).
fn finish_cloud(
    client: &mut Client,
    remote: &Remote,
    fin: &FinishRecord,
    rejected: usize,
) -> UploadOutcome {
    let name = match RunState::try_from(fin.state) {
        Ok(RunState::Crashed) => "CRASHED",
        Ok(RunState::Aborted) => "ABORTED",
        _ => "FINISHED",
    };
    let problem = match sender::stop_experiment(client, remote, name) {
        Err(e) => Some(format!("final state not recorded: {e}")),
        Ok(()) if rejected > 0 => Some(format!("the server rejected {rejected} record(s)")),
        Ok(()) => None,
    };
    UploadOutcome {
        url: Some(remote.url.clone()),
        problem,
    }
}
