//! `infer::score` against LLaMA-Factory's eval_bleu_rouge.py arithmetic (Python jieba + nltk +
//! rouge-chinese): the committed golden (tests/golden/score, written by
//! `tests/reference/score_ref.py golden tests/golden/score`) and the live reference script.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use qwen3_sft::infer::score::{mean, Scorer, Scores};
use serde_json::{json, Value};

const TOL: f64 = 1e-6;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn golden() -> (Value, Value) {
    let dir = root().join("tests/golden/score");
    (
        read_json(&dir.join("cases.json")),
        read_json(&dir.join("expected.json")),
    )
}

fn pairs(cases: &Value) -> Vec<(String, String)> {
    let row = |c: &Value, k: &str| c[k].as_str().unwrap().to_string();
    cases
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (row(c, "predict"), row(c, "label")))
        .collect()
}

/// Python's {"bleu-4", "rouge-1", "rouge-2", "rouge-l"} as `Scores`.
fn scores(v: &Value) -> Scores {
    let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("no {k} in {v}"));
    Scores {
        bleu4: f("bleu-4"),
        rouge1: f("rouge-1"),
        rouge2: f("rouge-2"),
        rouge_l: f("rouge-l"),
    }
}

fn diffs(a: &Scores, b: &Scores) -> [f64; 4] {
    [
        (a.bleu4 - b.bleu4).abs(),
        (a.rouge1 - b.rouge1).abs(),
        (a.rouge2 - b.rouge2).abs(),
        (a.rouge_l - b.rouge_l).abs(),
    ]
}

/// Score every pair, compare with `want` (Python's "samples" and "mean") and return the max
/// difference per metric; panics listing the samples beyond `TOL`.
fn compare(names: &[String], pairs: &[(String, String)], want: &Value) -> [f64; 4] {
    let scorer = Scorer::new();
    let got: Vec<Scores> = pairs.iter().map(|(p, l)| scorer.score(p, l)).collect();
    let want_samples = want["samples"].as_array().unwrap();
    assert_eq!(want_samples.len(), got.len());
    let mut max = [0.0f64; 4];
    let mut bad = Vec::new();
    for ((name, g), w) in names.iter().zip(&got).zip(want_samples) {
        let d = diffs(g, &scores(w));
        max.iter_mut().zip(d).for_each(|(m, x)| *m = m.max(x));
        if d.iter().any(|&x| x > TOL) {
            bad.push(format!("{name}: got {g:?}, python {w}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} samples differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
    let dm = diffs(&mean(&got), &scores(&want["mean"]));
    assert!(
        dm.iter().all(|&x| x <= TOL),
        "mean: got {:?}, python {}",
        mean(&got),
        want["mean"]
    );
    eprintln!("max |rust - python| (bleu4, rouge1, rouge2, rougeL): {max:?}; mean {dm:?}");
    max
}

/// Texts whose Rust segmentation differs from Python's, as readable lines.
fn segment_diffs(scorer: &Scorer, texts: &[String], python: &[Vec<String>]) -> Vec<String> {
    let mut out = Vec::new();
    for (text, want) in texts.iter().zip(python) {
        let got = scorer.segment(text);
        if got != *want {
            out.push(format!("{text:?}\n  rust   {got:?}\n  python {want:?}"));
        }
    }
    out
}

fn case_names(cases: &Value) -> Vec<String> {
    let name = |c: &Value| c["name"].as_str().unwrap().to_string();
    cases.as_array().unwrap().iter().map(name).collect()
}

#[test]
fn golden_scores_match_python() {
    let (cases, expected) = golden();
    compare(&case_names(&cases), &pairs(&cases), &expected);
}

#[test]
fn golden_segmentation_matches_python_jieba() {
    let (_, expected) = golden();
    let segs = expected["segments"].as_array().unwrap();
    let texts: Vec<String> = segs
        .iter()
        .map(|s| s["text"].as_str().unwrap().into())
        .collect();
    let words: Vec<Vec<String>> = segs
        .iter()
        .map(|s| serde_json::from_value(s["words"].clone()).unwrap())
        .collect();
    let bad = segment_diffs(&Scorer::new(), &texts, &words);
    assert!(
        bad.is_empty(),
        "{} of {} texts:\n{}",
        bad.len(),
        texts.len(),
        bad.join("\n")
    );
}

#[test]
fn edge_cases() {
    let s = Scorer::new();
    assert_eq!(s.score("", ""), Scores::default());
    assert_eq!(s.score(" \n", "多喝水"), Scores::default());
    let same = s.score("多喝水，注意休息。", "多喝水，注意休息。");
    assert_eq!(
        same,
        Scores {
            bleu4: 100.0,
            rouge1: 100.0,
            rouge2: 100.0,
            rouge_l: 100.0
        }
    );
    // One character: unigram precision 1, the three higher orders smoothed to 1/2, 1/4, 1/8.
    assert_eq!(s.score("是", "是").bleu4, 35.3553);
    assert_eq!(mean(&[]), Scores::default());
    let m = mean(&[same, Scores::default()]);
    assert_eq!(m.rouge_l, 50.0);
}

// ---- live reference -------------------------------------------------------------------------

fn python(test: &str, args: &[&str], input: &Value) -> Value {
    let py = root().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{test}: {} is missing: run `make pydeps`",
        py.display()
    );
    let mut child = Command::new(&py)
        .arg(root().join("tests/reference/score_ref.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{test}: score_ref.py {args:?} failed: {err}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Questions, thoughts and answers of the sample data set (the real data's style).
fn sample_rows() -> Vec<Value> {
    let path = root().join("data/sample/r1_data_example.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The golden cases plus pairs from the sample data: each answer against its own thought and
/// against the next row's answer.
fn live_pairs() -> (Vec<String>, Vec<(String, String)>) {
    let (cases, _) = golden();
    let (mut names, mut pairs) = (case_names(&cases), pairs(&cases));
    let rows = sample_rows();
    let field = |i: usize, k: &str| rows[i % rows.len()][k].as_str().unwrap().to_string();
    for i in 0..rows.len() {
        names.push(format!("sample{i}:answer~think"));
        pairs.push((field(i, "answer"), field(i, "think")));
        names.push(format!("sample{i}:answer~next"));
        pairs.push((field(i, "answer"), field(i + 1, "answer")));
    }
    (names, pairs)
}

#[test]
#[ignore = "live reference (make test)"]
fn live_scores_match_python() {
    let (names, pairs) = live_pairs();
    let input: Vec<Value> = pairs
        .iter()
        .map(|(p, l)| json!({"predict": p, "label": l}))
        .collect();
    let want = python("live_scores_match_python", &["score"], &Value::from(input));
    compare(&names, &pairs, &want);
    // The golden must be what the installed reference writes today.
    let (cases, expected) = golden();
    let live = python("live_scores_match_python", &["score"], &cases);
    assert_eq!(
        live["samples"], expected["samples"],
        "stale tests/golden/score: regenerate it"
    );
}

#[test]
#[ignore = "live reference (make test)"]
fn live_segmentation_matches_python_jieba() {
    let (_, pairs) = live_pairs();
    let mut texts: Vec<String> = pairs.into_iter().flat_map(|(p, l)| [p, l]).collect();
    for row in sample_rows() {
        texts.extend(["question", "think", "answer"].map(|k| row[k].as_str().unwrap().to_string()));
    }
    texts.sort();
    texts.dedup();
    let want: Vec<Vec<String>> =
        serde_json::from_value(python("segment", &["segment"], &json!(texts))).unwrap();
    let bad = segment_diffs(&Scorer::new(), &texts, &want);
    eprintln!("{} texts segmented, {} differ", texts.len(), bad.len());
    assert!(
        bad.is_empty(),
        "{} of {} texts:\n{}",
        bad.len(),
        texts.len(),
        bad.join("\n")
    );
}
