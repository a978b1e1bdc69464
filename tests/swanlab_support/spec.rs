//! The run both the SDK and the native uploader log in the upload tests, and readers of what
//! the recording server accepted.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use qwen3_sft::log::swanlab::{ResolvedSettings, Run};
use serde_json::{json, Value};

use super::server::{Req, Server};
use super::settings;

pub const KEY: &str = "testkey-0123456789";

pub fn cloud(server: &Server, log_dir: &Path) -> ResolvedSettings {
    let toml = format!(
        "mode = \"cloud\"\nproject = \"qwen3-sft-test\"\nexperiment = \"exp1\"\ndescription = \"desc\"\ntags = [\"t1\", \"t2\"]\nlog_dir = {:?}",
        log_dir.display().to_string()
    );
    settings(
        &toml,
        &[
            ("SWANLAB_API_HOST", &server.url()),
            ("SWANLAB_API_KEY", KEY),
        ],
    )
}

/// The run both sides log: scalars for 12 steps of 3 keys, 3 texts, 2 console lines, config.
pub fn spec() -> Value {
    let steps: Vec<Value> = (1..=12)
        .map(|s| {
            let s = s as f64;
            json!({"step": s as i64, "values": {"train/loss": 2.0 / s, "train/grad_norm": 0.5 + s / 10.0, "train/learning_rate": 1e-4 * (1.0 - s / 12.0)}})
        })
        .collect();
    json!({
        "project": "qwen3-sft-test",
        "name": "exp1",
        "description": "desc",
        "tags": ["t1", "t2"],
        "config": {"model": "Qwen/Qwen3-0.6B", "learning_rate": 1e-4, "lora": {"r": 8, "alpha": 32}},
        "console": ["first console line", "second console line"],
        "steps": steps,
        "text_key": "Prediction",
        "text_step": 12,
        "texts": ["Question: a\n\nLLM: b", "Question: c\n\nLLM: d", "Question: 中文\n\nLLM: 答案"],
    })
}

pub fn log_spec(run: &Run, spec: &Value) {
    for line in spec["console"].as_array().unwrap() {
        run.console(line.as_str().unwrap());
    }
    for s in spec["steps"].as_array().unwrap() {
        let values: Vec<(&str, f64)> = s["values"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_f64().unwrap()))
            .collect();
        run.scalars(s["step"].as_i64().unwrap(), &values);
    }
    let texts: Vec<String> = spec["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    run.texts(
        spec["text_key"].as_str().unwrap(),
        spec["text_step"].as_i64().unwrap(),
        &texts,
    );
}

/// `(key, step) -> value` of every scalar the server accepted, asserting none arrived twice.
pub fn accepted_scalars(reqs: &[Req]) -> BTreeMap<(String, i64), Value> {
    let mut out = BTreeMap::new();
    for r in reqs
        .iter()
        .filter(|r| r.status == 200 && r.path == "/api/house/metrics")
    {
        let body = r.json();
        if body["type"] != "scalar" {
            continue;
        }
        for m in body["metrics"].as_array().unwrap() {
            let key = (
                m["key"].as_str().unwrap().to_string(),
                m["index"].as_i64().unwrap(),
            );
            assert!(
                out.insert(key.clone(), m["data"].clone()).is_none(),
                "{key:?} accepted twice"
            );
        }
    }
    out
}

/// A float as the test server sees it: serde_json's default float parsing may be off by an ULP,
/// so expected values take the same text-and-parse path as the uploaded ones (the uploader writes
/// shortest round-trip text, so equal text means an exactly equal value).
pub fn wire(v: f64) -> Value {
    serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap()
}

pub fn expected_scalars(spec: &Value) -> BTreeMap<(String, i64), Value> {
    let mut out = BTreeMap::new();
    for s in spec["steps"].as_array().unwrap() {
        for (k, v) in s["values"].as_object().unwrap() {
            out.insert(
                (k.clone(), s["step"].as_i64().unwrap()),
                wire(v.as_f64().unwrap()),
            );
        }
    }
    out
}

pub fn swanlab_sync(py: &Path, server: &Server, dir: &Path, home: &Path) -> std::process::Output {
    let cli = py.parent().unwrap().join("swanlab");
    Command::new(cli)
        .args(["sync", "-h", &server.url(), "-k", KEY])
        .arg(dir)
        .env("HOME", home)
        .env("SWANLAB_ROOT", home.join(".swanlab"))
        .current_dir(home)
        .output()
        .unwrap()
}
