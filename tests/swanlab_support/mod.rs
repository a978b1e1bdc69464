//! Shared helpers of the SwanLab tests: temp dirs, the live-reference switch, the pinned Python,
//! settings resolved without the process environment, and run-file decoding.
#![allow(dead_code)]

pub mod pbjson;
pub mod server;
pub mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use qwen3_sft::log::swanlab::proto::Record;
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

/// `QWEN3_SFT_LIVE=1` (set by `make test`): the Python reference must run, a missing one fails.
pub fn live() -> bool {
    std::env::var("QWEN3_SFT_LIVE").is_ok_and(|v| v == "1")
}

/// The pinned Python (`.venv/bin/python` with swanlab==0.10.3), or `None` with a skip line when
/// not live. Live without it is a failure.
pub fn python(test: &str) -> Option<PathBuf> {
    if !live() {
        eprintln!(
            "SKIP {test}: set QWEN3_SFT_LIVE=1 (make test) to run against the real swanlab SDK"
        );
        return None;
    }
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
        "QWEN3_SFT_LIVE=1 but {} cannot import swanlab==0.10.3 (run `make pydeps`)",
        py.display()
    );
    Some(py)
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
