//! Helpers for tests/tokenizer.rs, tests/encode.rs and tests/data_stats.rs: the derived Qwen3
//! tokenizer, the live reference script `tests/reference/data_ref.py` (tiktoken on the package's
//! ranks, never our derived tokenizer.json), the committed goldens.
#![allow(dead_code)]
use crate::common::{python, ranks, root, tokenizer_dir};
use qwen3_sft::data::tokenizer::QwenTokenizer;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

/// The Qwen3 tokenizer derived by this test process (`common::tokenizer_dir`).
pub fn tokenizer() -> QwenTokenizer {
    let dir = tokenizer_dir();
    QwenTokenizer::load(&dir).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()))
}

/// `common::ranks()` as the string argument the reference script takes.
pub fn ranks_arg() -> String {
    ranks().to_str().expect("a UTF-8 path").to_string()
}

/// Runs `data_ref.py MODE ARGS` with `request` as JSON on stdin and returns its JSON answer.
pub fn reference(test: &str, mode: &str, args: &[&str], request: &Value) -> Value {
    let mut child = Command::new(python(test))
        .arg(root().join("tests/reference/data_ref.py"))
        .arg(mode)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting data_ref.py");
    let body = serde_json::to_vec(request).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Write from a thread: the script may answer before reading everything.
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = child.wait_with_output().expect("running data_ref.py");
    writer.join().unwrap().expect("writing to data_ref.py");
    assert!(
        out.status.success(),
        "{test}: data_ref.py {mode} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("data_ref.py printed JSON")
}

pub fn golden(name: &str) -> Value {
    let p = root().join("tests/golden/data").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The committed sample data set's rows as JSON objects.
pub fn sample_rows() -> Vec<Value> {
    let p = root().join("data/sample/r1_data_example.jsonl");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).expect("sample row is JSON"))
        .collect()
}

pub fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("an id array")
        .iter()
        .map(|x| x.as_i64().expect("an integer id"))
        .collect()
}

pub fn s(v: &Value) -> &str {
    v.as_str().expect("a string")
}

/// A small deterministic generator (tests need reproducible random strings, not quality).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}
