//! `qwen3-sft eval` against transformers computing the same loss on the same samples (1e-4 in
//! fp32), for both templates and batch sizes 1 and 4: padding must not change the loss.
mod common;
use serde_json::Value;
use std::process::Command;

fn last_json(out: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[test]
fn eval_matches_transformers() {
    let test = "eval_matches_transformers";
    let Some(py) = common::python(test) else {
        return;
    };
    let Some(tok) = common::tokenizer_dir(test) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("qwen3-sft-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sample =
        std::fs::read_to_string(common::root().join("data/sample/r1_data_example.jsonl")).unwrap();
    let data = dir.join("val.jsonl");
    std::fs::write(
        &data,
        sample.lines().take(10).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let specs = ["reference:160", "reference:2048", "qwen3:160", "qwen3:2048"];
    let reference = last_json(
        &Command::new(&py)
            .arg(common::root().join("tests/reference/eval_reference.py"))
            .args([
                tok.to_str().unwrap(),
                data.to_str().unwrap(),
                dir.to_str().unwrap(),
            ])
            .args(specs)
            .output()
            .unwrap(),
    );
    let mut counts = vec![];
    for spec in specs {
        let (template, max_len) = spec.split_once(':').unwrap();
        let want = &reference[spec];
        for bs in [1, 4] {
            let ours = last_json(
                &Command::new(env!("CARGO_BIN_EXE_qwen3-sft"))
                    .args([
                        "eval",
                        "--model",
                        dir.join("model").to_str().unwrap(),
                        "--data",
                        data.to_str().unwrap(),
                    ])
                    .args([
                        "--template",
                        template,
                        "--max-length",
                        max_len,
                        "--batch-size",
                        &bs.to_string(),
                    ])
                    .args(["--dtype", "fp32", "--device", "cpu", "--json"])
                    .output()
                    .unwrap(),
            );
            let (a, b) = (
                ours["loss"].as_f64().unwrap(),
                want["loss"].as_f64().unwrap(),
            );
            println!(
                "{spec} bs {bs}: ours {a:.7} transformers {b:.7} ({} tokens)",
                ours["tokens"]
            );
            assert_eq!(
                ours["tokens"], want["tokens"],
                "{spec}: label token counts differ"
            );
            assert_eq!(ours["samples"], want["samples"]);
            assert!(
                (a - b).abs() / b < 1e-4,
                "{spec} bs {bs}: loss {a} vs transformers {b}"
            );
        }
        counts.push(want["tokens"].as_i64().unwrap());
    }
    assert!(
        counts[0] < counts[1] && counts[2] < counts[3],
        "max_length 160 must truncate: {counts:?}"
    );
}
