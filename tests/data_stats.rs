//! `qwen3-sft data stats` against the reference encoders + numpy
//! (`tests/reference/stats_reference.py`, encoding with data_ref.py's tiktoken on the package's
//! ranks): the same lengths, percentiles, over-limit counts and label tokens, for both templates,
//! on the sample data set and on the split fixture, with and without truncation. Live only.

mod common;

use qwen3_sft::data::encode::Template;
use qwen3_sft::data::rows::read_rows;
use qwen3_sft::data::stats::{measure, Stats};
use qwen3_sft::data::tokenizer::QwenTokenizer;
use serde_json::Value;
use std::process::Command;

fn want(v: &Value) -> Stats {
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}")) as usize;
    Stats {
        rows: n("rows"),
        min: n("min"),
        median: n("median"),
        p90: n("p90"),
        p99: n("p99"),
        max: n("max"),
        over_max: n("over_max"),
        label_tokens: n("label_tokens"),
        tokens: n("tokens"),
    }
}

#[test]
#[ignore = "live reference (make test)"]
fn stats_match_the_reference_encoders_and_numpy() {
    let py = common::python("stats_match_the_reference_encoders_and_numpy");
    let tok_dir = common::tokenizer_dir();
    let tok = QwenTokenizer::load(&tok_dir).unwrap();
    let root = common::root();
    let files = [
        root.join("data/sample/r1_data_example.jsonl"),
        root.join("tests/golden/data_split/rows.jsonl"),
    ];
    // One Python process for everything: importing transformers dominates its run time.
    let out = Command::new(&py)
        .arg(root.join("tests/reference/stats_reference.py"))
        .arg(common::ranks())
        .arg("2048,50")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stats_reference.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: Value = serde_json::from_slice(&out.stdout).unwrap();
    for file in &files {
        let (rows, _) = read_rows(file, false).unwrap();
        for max_len in [2048usize, 50] {
            let r = &reference[file.to_str().unwrap()][max_len.to_string()];
            for (name, t) in [
                ("reference", Template::Reference),
                ("qwen3", Template::Qwen3),
            ] {
                let got = measure(&rows, &tok, t, max_len).unwrap();
                assert_eq!(
                    got,
                    want(&r[name]),
                    "{} {name} max_len {max_len}",
                    file.display()
                );
            }
        }
    }
    // The command prints those numbers.
    let (rows, _) = read_rows(&files[1], false).unwrap();
    let s = measure(&rows, &tok, Template::Qwen3, 50).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qwen3-sft"))
        .args([
            "data",
            "stats",
            "--template",
            "qwen3",
            "--max-length",
            "50",
            "--data",
        ])
        .arg(&files[1])
        .arg("--tokenizer")
        .arg(&tok_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = format!(
        "qwen3: min {} median {} p90 {} p99 {} max {} | over max_length 50: {} rows",
        s.min, s.median, s.p90, s.p99, s.max, s.over_max
    );
    assert!(text.contains(&line), "{text}\nwant: {line}");
    // rows with and without reasoning (an empty `think` once its newlines are stripped)
    let raw = std::fs::read_to_string(&files[1]).unwrap();
    let plain = raw
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["think"].as_str().unwrap().trim_matches('\n').is_empty()
        })
        .count();
    let kinds = format!("40 rows ({} with reasoning, {plain} without", 40 - plain);
    assert!(text.contains(&kinds), "{text}\nwant: {kinds}");
    assert!(s.over_max > 0, "the fixture must exercise truncation");
}
