//! A real training run's SwanLab directory, read by the swanlab==0.10.3 SDK with no network and
//! uploaded by `swanlab sync` to a recording server on loopback: every record parsed, the whole
//! file consumed, start first and finish last, every scalar and the "Prediction" texts as logged.
mod common;
mod swanlab_support;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use swanlab_support::server::Server;
use swanlab_support::spec::{accepted_scalars, swanlab_sync};

#[test]
#[ignore = "live reference (make test)"]
fn training_run_is_read_and_synced_by_the_sdk() {
    let py = common::python("training_run_is_read_and_synced_by_the_sdk");
    let tok = common::tokenizer_dir();
    let dir = std::env::temp_dir().join(format!("qwen3-sft-swanlab-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sample =
        std::fs::read_to_string(common::root().join("data/sample/r1_data_example.jsonl")).unwrap();
    let lines: Vec<&str> = sample.lines().collect();
    std::fs::write(dir.join("train.jsonl"), lines[..12].join("\n")).unwrap();
    std::fs::write(dir.join("val.jsonl"), lines[12..16].join("\n")).unwrap();
    let log_dir = dir.join("swanlog");
    let out = Command::new(env!("CARGO_BIN_EXE_qwen3-sft"))
        .args([
            "train",
            "--config",
            common::root()
                .join("configs/demo-cpu.toml")
                .to_str()
                .unwrap(),
        ])
        .args([
            "--set",
            "model.path=random:tiny",
            "--set",
            &format!("data.tokenizer={}", tok.display()),
        ])
        .args([
            "--set",
            &format!("data.train_file={}", dir.join("train.jsonl").display()),
        ])
        .args([
            "--set",
            &format!("data.val_file={}", dir.join("val.jsonl").display()),
        ])
        .args([
            "--set",
            &format!("train.output_dir={}", dir.join("run").display()),
        ])
        .args([
            "--set",
            "train.max_steps=4",
            "--set",
            "train.logging_steps=1",
            "--set",
            "train.eval_steps=2",
        ])
        .args([
            "--set",
            "train.eval_generate=2",
            "--set",
            "train.eval_generate_max_new_tokens=6",
        ])
        .args([
            "--set",
            "swanlab.mode=offline",
            "--set",
            &format!("swanlab.log_dir={}", log_dir.display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: Vec<_> = std::fs::read_dir(&log_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(runs.len(), 1);
    let run_dir = runs[0].path();

    let sdk = swanlab_support::sdk_read(&py, &run_dir);
    assert_eq!(
        sdk["consumed"], sdk["size"],
        "the SDK stopped before the end of the run file"
    );
    let records = sdk["records"].as_array().unwrap();
    assert!(
        records[0].get("start").is_some(),
        "first record: {}",
        records[0]
    );
    let last = records.last().unwrap();
    assert_eq!(
        last["finish"]["state"], "RUN_STATE_FINISHED",
        "last record: {last}"
    );
    // Scalars in the run file equal metrics.jsonl, key by key and step by step.
    let mut logged: BTreeMap<(String, i64), f64> = BTreeMap::new();
    for l in std::fs::read_to_string(dir.join("run/metrics.jsonl"))
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(l).unwrap();
        for (k, x) in v.as_object().unwrap() {
            if k.contains('/') {
                logged.insert(
                    (k.clone(), v["step"].as_i64().unwrap()),
                    x.as_f64().unwrap(),
                );
            }
        }
    }
    let mut in_file = BTreeMap::new();
    for r in records.iter().filter_map(|r| r.get("scalar")) {
        // protobuf's JSON form omits zero values (a final learning rate of 0.0, for one)
        let step: i64 = r["step"].as_str().map_or(0, |s| s.parse().unwrap());
        let value: f64 = r["value"]["number"]
            .as_str()
            .map_or(0.0, |s| s.parse().unwrap());
        in_file.insert((r["key"].as_str().unwrap().to_string(), step), value);
    }
    assert_eq!(
        in_file.len(),
        logged.len(),
        "scalars in the run file vs metrics.jsonl"
    );
    for (k, v) in &logged {
        let got = in_file[k];
        assert!(
            (got - v).abs() <= 1e-12 * v.abs().max(1.0),
            "{k:?}: {got} vs {v}"
        );
    }
    for key in [
        "eval/loss",
        "train/grad_norm",
        "eval/format_rate",
        "eval/rougeL",
    ] {
        assert!(logged.keys().any(|(k, _)| k == key), "{key} not logged");
    }
    // two answers at each of the two evaluations (steps 2 and 4)
    let texts: Vec<&Value> = sdk["media"].as_object().unwrap().values().collect();
    assert_eq!(texts.len(), 4, "four Prediction texts: {}", sdk["media"]);
    assert!(texts
        .iter()
        .all(|t| t["text"].as_str().unwrap().starts_with("Question: ")));
    assert_eq!(
        sdk["config_values"]["train"]["lr"], "0.003",
        "config: {}",
        sdk["config_values"]
    );

    let server = Server::start();
    let out = swanlab_sync(&py, &server, &run_dir, &dir);
    assert!(
        out.status.success(),
        "swanlab sync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uploaded = accepted_scalars(&server.requests());
    assert_eq!(
        uploaded.len(),
        logged.len(),
        "every scalar uploaded by swanlab sync"
    );
}
