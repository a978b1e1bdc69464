//! The generation CLI end to end on the committed generation goldens (tests/golden/generate,
//! from tests/reference/make_generate.py): `generate --json` on raw ids (batched, cached or not),
//! `--adapter` vs `merge`, errors that name the flag, and the streaming printer with the real
//! Qwen3 tokenizer.
mod common;
use common::{golden, root};
use std::path::PathBuf;
use std::process::Command;
use tch::Tensor;

fn gdir() -> PathBuf {
    root().join("tests/golden/generate")
}

/// Rows of a left-padded `(B, T)` batch without their padding.
fn prompts(ids: &Tensor, mask: &Tensor) -> Vec<Vec<i64>> {
    let ids: Vec<Vec<i64>> = Vec::try_from(ids).unwrap();
    let mask: Vec<Vec<i64>> = Vec::try_from(mask).unwrap();
    let keep = |(r, m): (&Vec<i64>, &Vec<i64>)| -> Vec<i64> {
        r.iter()
            .zip(m)
            .filter(|(_, &k)| k == 1)
            .map(|(&t, _)| t)
            .collect()
    };
    ids.iter().zip(&mask).map(keep).collect()
}

fn qwen3_sft(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qwen3-sft"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

/// The CLI end to end: `generate --json` on raw ids (batched, cached or not), `--adapter` vs `merge`.
#[test]
fn cli_generate_and_merge() {
    let g = golden(&gdir().join("tied/golden.safetensors"));
    let rows: Vec<String> = prompts(&g["batch.input_ids"], &g["batch.attention_mask"])
        .iter()
        .map(|r| r.iter().map(i64::to_string).collect::<Vec<_>>().join(","))
        .collect();
    let run = |extra: &[&str]| -> Vec<Vec<i64>> {
        let mut args = vec![
            "generate",
            "--max-new-tokens",
            "48",
            "--json",
            "--batch-size",
            "2",
        ];
        args.extend_from_slice(extra);
        for r in &rows {
            args.extend_from_slice(&["--prompt-ids", r]);
        }
        let out = qwen3_sft(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert!(v["tokens_per_sec"].as_f64().unwrap() > 0.0);
                serde_json::from_value(v["token_ids"].clone()).unwrap()
            })
            .collect()
    };
    let check = |what: &str, got: Vec<Vec<i64>>, want: &Tensor| {
        let want: Vec<Vec<i64>> = Vec::try_from(want).unwrap();
        assert_eq!(got.len(), want.len());
        for (mut r, w) in got.into_iter().zip(want) {
            r.resize(w.len(), 0);
            assert_eq!(r, w, "{what}");
        }
    };
    let tied = gdir().join("tied").display().to_string();
    let lora = gdir().join("lora").display().to_string();
    check("generate", run(&["--model", &tied]), &g["batch.tokens"]);
    check(
        "generate --no-cache",
        run(&["--model", &tied, "--no-cache"]),
        &g["batch.tokens"],
    );
    check(
        "generate --adapter",
        run(&["--model", &tied, "--adapter", &lora]),
        &g["lora.batch.tokens"],
    );
    let out = std::env::temp_dir().join(format!("qwen3-sft-generate-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = out.display().to_string();
    let m = qwen3_sft(&[
        "merge",
        "--model",
        &tied,
        "--adapter",
        &lora,
        "--output",
        &o,
    ]);
    assert!(
        m.status.success(),
        "merge: {}",
        String::from_utf8_lossy(&m.stderr)
    );
    check(
        "generate on the merged dir",
        run(&["--model", &o]),
        &g["lora.batch.tokens"],
    );
    let _ = std::fs::remove_dir_all(&out);
}

fn stderr_of(args: &[&str]) -> String {
    let out = qwen3_sft(args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn bad_input_names_the_flag() {
    let tied = gdir().join("tied").display().to_string();
    let e = stderr_of(&["generate", "--model", &tied, "--prompt", "hi"]);
    assert!(e.contains("has no tokenizer.json: pass --tokenizer"), "{e}");
    let e = stderr_of(&["generate", "--model", &tied, "--prompt-ids", "1,x"]);
    assert!(e.contains("--prompt-ids \"1,x\""), "{e}");
    let e = stderr_of(&["generate", "--model", &tied, "--prompt-ids", "1,9999"]);
    assert!(
        e.contains("token id 9999, outside the model's vocabulary"),
        "{e}"
    );
    let e = stderr_of(&[
        "generate",
        "--model",
        &tied,
        "--prompt-ids",
        "1",
        "--top-p",
        "1.5",
    ]);
    assert!(e.contains("top_p must be in (0, 1]"), "{e}");
    let e = stderr_of(&["generate", "--model", "/nonexistent", "--prompt-ids", "1"]);
    assert!(
        e.contains("`/nonexistent` is neither an existing directory nor a hub id"),
        "{e}"
    );
    let lora = gdir().join("lora").display().to_string();
    let e = stderr_of(&[
        "merge",
        "--model",
        &tied,
        "--adapter",
        &lora,
        "--output",
        &tied,
    ]);
    assert!(e.contains("would overwrite the base model"), "{e}");
    let e = stderr_of(&[
        "merge",
        "--model",
        &tied,
        "--adapter",
        &tied,
        "--output",
        "/tmp/x",
    ]);
    assert!(e.contains("adapter_config.json"), "{e}");
}

/// Token by token, the printer shows the reasoning under its header and then the answer, and
/// never cuts a multi-byte character; the JSON split agrees.
#[test]
fn streaming_and_think_split() {
    use qwen3_sft::infer::text::StreamPrinter;
    use qwen3_sft::infer::Completion;
    let tok = qwen3_sft::data::tokenizer::QwenTokenizer::load(&common::tokenizer_dir()).unwrap();
    let text = "<think>\n患者血糖偏高，应选低升糖指数的食物。\n</think>\n\n建议选择全谷物🍚和豆类。<|im_end|>";
    let ids: Vec<i64> = tok
        .encode(text)
        .unwrap()
        .into_iter()
        .map(i64::from)
        .collect();
    let mut out = Vec::new();
    let mut p = StreamPrinter::new(&tok, &mut out, false);
    let mut pieces = 0;
    for &id in &ids {
        p.push(id).unwrap();
        pieces += 1;
    }
    p.finish().unwrap();
    drop(p);
    let shown = String::from_utf8(out).expect("the stream stays valid UTF-8");
    assert!(pieces > 10);
    assert_eq!(
        shown,
        "思考\n患者血糖偏高，应选低升糖指数的食物。\n\n建议选择全谷物🍚和豆类。\n"
    );
    let c = Completion::decode(&tok, &ids).unwrap();
    assert_eq!(c.think, "患者血糖偏高，应选低升糖指数的食物。");
    assert_eq!(c.answer, "建议选择全谷物🍚和豆类。");
    assert!(!c.text.contains("<|im_end|>"), "special tokens are skipped");
    // The prompt helper renders the official template with the system prompt.
    let prompt = qwen3_sft::infer::prompt_ids(&tok, Some("S"), "Q", None).unwrap();
    let want = tok.encode("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n").unwrap();
    assert_eq!(prompt, want.into_iter().map(i64::from).collect::<Vec<_>>());
}
