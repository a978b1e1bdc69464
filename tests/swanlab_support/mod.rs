//! Shared helpers of the SwanLab tests: temp dirs, the pinned Python of the live references,
//! settings resolved without the process environment, and run-file decoding.
#![allow(dead_code)]

pub mod pbjson;
pub mod server;
pub mod spec;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use prost::Message;
use qwen3_sft::log::swanlab::proto::{Record, RecordType};
use qwen3_sft::log::swanlab::store::StoreReader;
use qwen3_sft::log::swanlab::{Mode, ResolvedSettings, SwanlabSettings};
use serde_json::Value;

/// A fresh directory under cargo's per-target temp dir.
pub fn tmp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("swanlab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The pinned Python (`.venv/bin/python` with swanlab==0.10.3) that the live checks (`#[ignore]`d
/// tests, run by `make test`) need; missing or another swanlab version is a failure.
pub fn python(test: &str) -> PathBuf {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = Command::new(&py)
        .args([
            "-c",
            "import swanlab, sys; assert swanlab.__version__ == '0.10.3', swanlab.__version__",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{test}: {} cannot import swanlab==0.10.3: run `make pydeps` (live references run under `make test`)",
        py.display()
    );
    py
}

pub fn reference(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(script)
}

/// Settings as the given environment map resolves them (never the process environment).
pub fn settings(toml: &str, env: &[(&str, &str)]) -> ResolvedSettings {
    let s: SwanlabSettings = toml::from_str(toml).unwrap();
    let map: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let r = s
        .resolve_with(&|k| map.get(k).cloned(), Path::new("/nonexistent"))
        .unwrap();
    assert_ne!(r.mode, Mode::Disabled);
    r
}

pub fn offline(log_dir: &Path) -> ResolvedSettings {
    settings(
        &format!(
            "mode = \"offline\"\nlog_dir = {:?}\nexperiment = \"exp\"",
            log_dir.display().to_string()
        ),
        &[],
    )
}

/// The only run directory under `log_dir`.
pub fn run_dir(log_dir: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

pub fn run_file(run_dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "swanlab"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// Every record of a run file with this crate's reader, asserting the whole file is consumed.
pub fn read_records(file: &Path) -> Vec<Record> {
    let bytes = std::fs::read(file).unwrap();
    let size = bytes.len();
    let mut r = StoreReader::from_bytes(bytes).unwrap();
    let mut out = Vec::new();
    while let Some(data) = r.next_record().unwrap() {
        out.push(Record::decode(data.as_slice()).unwrap());
    }
    assert_eq!(
        r.consumed(),
        size,
        "reader stopped before the end of {}",
        file.display()
    );
    out
}

/// `tests/reference/swanlab_read.py`: the SDK's view of a run directory.
pub fn sdk_read(py: &Path, run_dir: &Path) -> Value {
    let out = Command::new(py)
        .arg(reference("swanlab_read.py"))
        .arg(run_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "swanlab_read.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A record's type as a word.
pub fn kind(r: &Record) -> &'static str {
    match r.record_type {
        Some(RecordType::Start(_)) => "start",
        Some(RecordType::Finish(_)) => "finish",
        Some(RecordType::Column(_)) => "column",
        Some(RecordType::Scalar(_)) => "scalar",
        Some(RecordType::Media(_)) => "media",
        Some(RecordType::Log(_)) => "log",
        Some(RecordType::Save(_)) => "save",
        None => "none",
    }
}

/// Runs the test binary's `sigkill_child_writer` (tests/swanlab.rs) in a child process, SIGKILLs it after step 400, and returns the
/// log directory and the records its run file holds.
pub fn sigkilled_run(tag: &str) -> (PathBuf, Vec<Record>) {
    let log_dir = tmp_dir(tag);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SWANLAB_TEST_CHILD_LOG_DIR", &log_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut last = -1i64;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(n) = line.unwrap().strip_prefix("STEP ") {
            last = n.trim().parse().unwrap();
            if last >= 400 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(last >= 400, "child stopped early");
    let records = read_records(&run_file(&run_dir(&log_dir)));
    assert!(records.iter().all(|r| kind(r) != "finish"));
    let steps: Vec<i64> = records
        .iter()
        .filter_map(|r| match &r.record_type {
            Some(RecordType::Scalar(s)) => Some(s.step),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        (0..steps.len() as i64).collect::<Vec<_>>(),
        "steps must be contiguous from 0"
    );
    // "At most the last second lost": steps come every >= 5 ms, so 200 steps exceed a second.
    let kept = steps.len() as i64 - 1;
    println!("SIGKILL after step {last}: file holds steps 0..={kept}");
    assert!(
        kept >= last - 200,
        "only steps up to {kept} of {last} survived"
    );
    (log_dir, records)
}
