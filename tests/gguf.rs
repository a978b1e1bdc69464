//! `qwen3-sft export --format gguf` against llama.cpp's own tools, on a fine-tuned tiny model and
//! a LoRA run on it (trained here with `qwen3-sft train`; tied head, Qwen3's real tokenizer):
//! - `converter_*` (make test): the PyPI `gguf` package's reader reads every key and tensor of our
//!   file and of what llama.cpp's `convert_hf_to_gguf.py` writes for the same HF directory (the
//!   LoRA run: `qwen3-sft merge`'s output); keys, tensor names, shapes and types equal, values
//!   bit-equal (bf16, f16) and bytes equal (q8_0).
//! - `llama_cpp_*` (make gguf-test; make test skips them, the llama.cpp build is slow): llama.cpp
//!   (llama-cpp-python built from source by scripts/llama_cpp.sh) loads our files, and its greedy
//!   tokens equal `qwen3-sft generate --greedy` for 32 tokens (f16, bf16); for q8_0 they equal
//!   llama.cpp's on its own conversion.
//! - Bad inputs (missing tokenizer, a non-Qwen3 config, a foreign tokenizer, an existing output):
//!   a one-line error, and no file written.
mod common;
use common::{python, root, tokenizer_dir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The binary under test (`QWEN3_SFT_BIN` another build, as in tests/safety.rs).
fn bin() -> Command {
    let exe = std::env::var("QWEN3_SFT_BIN").unwrap_or(env!("CARGO_BIN_EXE_qwen3-sft").into());
    Command::new(exe)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qwen3-sft-gguf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{c:?} failed:\n{text}");
    text
}

/// Runs tests/reference/gguf_ref.py; its last JSON line.
fn reference(test: &str, args: &[&str]) -> Value {
    let mut c = Command::new(python(test));
    c.arg(root().join("tests/reference/gguf_ref.py")).args(args);
    let text = run_ok(c);
    let line = text.lines().rfind(|l| l.starts_with('{')).unwrap_or("{}");
    serde_json::from_str(line).unwrap()
}

/// The models every check exports, made once per test process.
struct Models {
    dir: PathBuf,
    /// `train` full fine-tuning of random:tiny (fp32): an HF directory with the tokenizer files.
    full: PathBuf,
    /// `train` LoRA on `full`, and `merge` of it (the converter's input for the LoRA run).
    adapter: PathBuf,
    merged: PathBuf,
}

/// `train` of `model` on sample row `row` alone, `steps` steps of batch 1 without clipping: a tiny
/// model memorises the row, so its greedy answer is that row's text (no repeated token), with
/// clear top-2 logit gaps (a near-uniform random model's greedy tokens are a coin toss for any
/// two implementations).
fn train(dir: &Path, model: &str, method: &str, row: usize, steps: usize, lr: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("data/sample/r1_data_example.jsonl")).unwrap();
    let line = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .nth(row)
        .unwrap();
    let train = dir.join(format!("row{row}.jsonl"));
    std::fs::write(&train, format!("{line}\n")).unwrap();
    let out = dir.join(format!("run-{method}"));
    let cfg = format!(
        r#"[model]
path = "{model}"
dtype = "fp32"
device = "cpu"
[data]
train_file = "{train}"
tokenizer = "{tok}"
max_length = 160
[train]
method = "{method}"
output_dir = "{out}"
max_steps = {steps}
batch_size = 1
grad_accum = 1
lr = {lr}
max_grad_norm = 0.0
logging_steps = 1000
eval_steps = 1000
save_steps = 1000
shuffle = false
predictions = 0
seed = 7
[lora]
r = 8
alpha = 32
dropout = 0.0
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
[swanlab]
mode = "disabled"
"#,
        train = train.display(),
        tok = tokenizer_dir().display(),
        out = out.display(),
    );
    let cfg_path = dir.join(format!("{method}.toml"));
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut c = bin();
    c.args(["train", "--config", cfg_path.to_str().unwrap()]);
    run_ok(c);
    out.join("final")
}

/// The sample row's question every greedy check answers (the full model memorised its answer).
const QUESTION: &str = "高血压患者日常饮食需要注意什么？";

fn models() -> &'static Models {
    static M: OnceLock<Models> = OnceLock::new();
    M.get_or_init(|| {
        let dir = tmp("models");
        // random:tiny (tied head) fine-tuned on row 0, then a LoRA run over it on the same row,
        // which mends some of the answer (its greedy tokens differ from the full model's). The
        // smallest top-2 logit gaps along the 32 greedy tokens measured 0.085 and 0.030 (f16 and
        // bf16 alike); a row of its own for the LoRA run, or fewer steps, gave gaps of 0.002-0.004
        // or a degenerate answer.
        let full = train(&dir, "random:tiny", "full", 0, 150, "2e-2");
        let adapter = train(&dir, full.to_str().unwrap(), "lora", 0, 40, "2e-2");
        let merged = dir.join("merged");
        let mut c = bin();
        c.args(["merge", "--model", full.to_str().unwrap(), "--adapter"])
            .arg(&adapter)
            .arg("--output")
            .arg(&merged);
        run_ok(c);
        Models {
            dir,
            full,
            adapter,
            merged,
        }
    })
}

/// `export` of `model` (+ `adapter`) to `out` as `outtype`.
fn export(model: &Path, adapter: Option<&Path>, outtype: &str, out: &Path) {
    let mut c = bin();
    c.args([
        "export",
        "--format",
        "gguf",
        "--model",
        model.to_str().unwrap(),
    ]);
    if let Some(a) = adapter {
        c.arg("--adapter").arg(a);
    }
    c.args([
        "--outtype",
        outtype,
        "--name",
        "tiny",
        "--no-modelfile",
        "--output",
    ])
    .arg(out);
    run_ok(c);
}

/// The converter's naming heuristics, which export does not reproduce (see src/infer/export.rs).
const HEURISTIC_KEYS: &[&str] = &["general.basename", "general.finetune", "general.version"];

fn converter_equal(test: &str, run: &str, outtype: &str) {
    let m = models();
    let (hf, adapter) = match run {
        "full" => (&m.full, None),
        _ => (&m.merged, Some(m.adapter.as_path())),
    };
    let base = if adapter.is_some() { &m.full } else { hf };
    let ours = m.dir.join(format!("{run}-{outtype}.gguf"));
    let theirs = m.dir.join(format!("{run}-{outtype}.converter.gguf"));
    export(base, adapter, outtype, &ours);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    reference(test, &["convert", &s(hf), outtype, &s(&theirs), "tiny"]);
    let mut args = vec!["compare".to_string(), s(&ours), s(&theirs)];
    args.extend(HEURISTIC_KEYS.iter().map(|k| k.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = reference(test, &args);
    println!("{run} {outtype}: {r}");
    assert!(
        r["keys"].as_u64().unwrap() > 20 && r["tensors"].as_u64().unwrap() > 10,
        "{r}"
    );
    for k in ["only_ours", "only_theirs", "key_diffs", "tensor_diffs"] {
        assert_eq!(
            r[k],
            serde_json::json!([]),
            "{run} {outtype}: {k} differ: {r}"
        );
    }
}

#[test]
#[ignore = "live reference (make test)"]
fn converter_equal_full() {
    for t in ["bf16", "f16", "q8_0"] {
        converter_equal("converter_equal_full", "full", t);
    }
}

#[test]
#[ignore = "live reference (make test)"]
fn converter_equal_lora() {
    for t in ["bf16", "f16", "q8_0"] {
        converter_equal("converter_equal_lora", "lora", t);
    }
}

/// The prompt every greedy check decodes from: [`QUESTION`] in Qwen3's template with the training
/// system prompt, thinking on.
fn prompt() -> Vec<i64> {
    let tok =
        qwen3_sft::data::tokenizer::QwenTokenizer::load(&tokenizer_dir().join("tokenizer.json"))
            .unwrap();
    let system = qwen3_sft::data::encode::SYSTEM_PROMPT;
    qwen3_sft::infer::prompt_ids(&tok, Some(system), QUESTION, None).unwrap()
}

const NEW_TOKENS: usize = 32;

/// `qwen3-sft generate --greedy` on the prompt ids: the new tokens (an eos that ends it included).
fn our_greedy(model: &Path, adapter: Option<&Path>, ids: &[i64]) -> Vec<i64> {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    let mut c = bin();
    c.args([
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--device",
        "cpu",
        "--dtype",
        "fp32",
    ]);
    if let Some(a) = adapter {
        c.arg("--adapter").arg(a);
    }
    c.args([
        "--greedy",
        "--json",
        "--max-new-tokens",
        &NEW_TOKENS.to_string(),
    ])
    .args(["--prompt-ids", &ids.join(",")]);
    let text = run_ok(c);
    let line = text.lines().rfind(|l| l.starts_with('{')).unwrap();
    let v: Value = serde_json::from_str(line).unwrap();
    serde_json::from_value(v["token_ids"].clone()).unwrap()
}

/// llama.cpp's greedy tokens on `gguf` (32, it does not stop at eos) and its smallest top-2 logit gap.
fn llama_greedy(test: &str, gguf: &Path, ids: &[i64]) -> (Vec<i64>, f64) {
    let ids = serde_json::to_string(ids).unwrap();
    let r = reference(
        test,
        &[
            "greedy",
            gguf.to_str().unwrap(),
            &ids,
            &NEW_TOKENS.to_string(),
        ],
    );
    let toks: Vec<i64> = serde_json::from_value(r["tokens"].clone()).unwrap();
    assert_eq!(r["n_vocab"], 151936, "{r}");
    assert!(
        r["chat_template"].as_str().unwrap().contains("tools"),
        "no chat template: {r}"
    );
    (toks, r["min_margin"].as_f64().unwrap())
}

fn llama_cpp_agrees(test: &str, run: &str) {
    let m = models();
    let (model, adapter) = match run {
        "full" => (&m.full, None),
        _ => (&m.full, Some(m.adapter.as_path())),
    };
    let ids = prompt();
    let ours = our_greedy(model, adapter, &ids);
    let distinct: std::collections::BTreeSet<_> = ours.iter().collect();
    println!("{run}: ours {ours:?}");
    assert!(
        ours.len() == NEW_TOKENS && distinct.len() >= 4,
        "{run}: the test model's greedy answer is degenerate ({ours:?}): train it more"
    );
    if adapter.is_some() {
        let base = our_greedy(model, None, &ids);
        assert_ne!(
            ours, base,
            "the adapter does not change the greedy answer: a useless check"
        );
    }
    for outtype in ["f16", "bf16"] {
        let file = m.dir.join(format!("{run}-{outtype}.greedy.gguf"));
        export(model, adapter, outtype, &file);
        let (theirs, margin) = llama_greedy(test, &file, &ids);
        println!("{run} {outtype}: llama.cpp {theirs:?} (smallest top-2 logit gap {margin:.3})");
        assert_eq!(
            theirs, ours,
            "{run} {outtype}: llama.cpp's greedy tokens differ from ours"
        );
    }
    // q8_0: llama.cpp on our file and on its own conversion of the same HF directory
    let hf = if adapter.is_some() {
        &m.merged
    } else {
        &m.full
    };
    let ours_q = m.dir.join(format!("{run}-q8_0.greedy.gguf"));
    let theirs_q = m.dir.join(format!("{run}-q8_0.greedy.converter.gguf"));
    export(model, adapter, "q8_0", &ours_q);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    reference(test, &["convert", &s(hf), "q8_0", &s(&theirs_q), "tiny"]);
    let (a, _) = llama_greedy(test, &ours_q, &ids);
    let (b, _) = llama_greedy(test, &theirs_q, &ids);
    println!("{run} q8_0: llama.cpp {a:?}");
    assert_eq!(
        a, b,
        "{run} q8_0: llama.cpp decodes our file differently from its own conversion"
    );
}

#[test]
#[ignore = "llama.cpp (make gguf-test)"]
fn llama_cpp_agrees_full() {
    llama_cpp_agrees("llama_cpp_agrees_full", "full");
}

#[test]
#[ignore = "llama.cpp (make gguf-test)"]
fn llama_cpp_agrees_lora() {
    llama_cpp_agrees("llama_cpp_agrees_lora", "lora");
}

/// `export` with `args`: it fails with one line on stderr, and leaves `dir` as it was.
fn listing(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    names
}

fn fails(dir: &Path, args: &[&str], want: &str) {
    let before = listing(dir);
    let out = bin().arg("export").args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line:\n{err}"
    );
    assert!(
        err.starts_with("error: ") && err.contains(want),
        "{args:?}: {err}"
    );
    assert_eq!(before, listing(dir), "{args:?} left files behind");
}

/// Missing tokenizer, non-Qwen3 config, foreign tokenizer, existing or foreign output: one line,
/// no file. Runs in plain `cargo test` (no Python: the tokenizer is derived from the ranks).
#[test]
fn bad_inputs_write_nothing() {
    let dir = tmp("bad");
    let out = dir.join("out.gguf");
    let o = out.to_str().unwrap();
    let tok = tokenizer_dir();
    let t = tok.to_str().unwrap();
    fails(
        &dir,
        &["--model", "random:tiny", "--output", o],
        "has no tokenizer",
    );
    let llama = dir.join("llama");
    std::fs::create_dir_all(&llama).unwrap();
    std::fs::write(
        llama.join("config.json"),
        r#"{"model_type": "llama", "vocab_size": 8, "hidden_size": 8}"#,
    )
    .unwrap();
    fails(
        &dir,
        &[
            "--model",
            llama.to_str().unwrap(),
            "--tokenizer",
            t,
            "--output",
            o,
        ],
        "only `qwen3`",
    );
    // a BPE tokenizer with another pre-tokenizer (GPT-2's): llama.cpp would split text differently
    let foreign = dir.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    let mut tj: Value =
        serde_json::from_str(&std::fs::read_to_string(tok.join("tokenizer.json")).unwrap())
            .unwrap();
    tj["pre_tokenizer"] = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    std::fs::write(foreign.join("tokenizer.json"), tj.to_string()).unwrap();
    fails(
        &dir,
        &[
            "--model",
            "random:tiny",
            "--tokenizer",
            foreign.to_str().unwrap(),
            "--output",
            o,
        ],
        "pre-tokenizer is not Qwen2's",
    );
    let _ = std::fs::remove_dir_all(&foreign);
    let _ = std::fs::remove_dir_all(&llama);
    // an existing file: refused without --overwrite, and never replaced when it is not a GGUF file
    std::fs::write(&out, "not a model").unwrap();
    fails(
        &dir,
        &["--model", "random:tiny", "--tokenizer", t, "--output", o],
        "exists and is not a GGUF file",
    );
    fails(
        &dir,
        &[
            "--model",
            "random:tiny",
            "--tokenizer",
            t,
            "--output",
            o,
            "--overwrite",
        ],
        "exists and is not a GGUF file",
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "not a model");
    std::fs::remove_file(&out).unwrap();
    // a good export, then the same again without --overwrite
    let mut c = bin();
    c.args([
        "export",
        "--model",
        "random:tiny",
        "--tokenizer",
        t,
        "--outtype",
        "q8_0",
        "--output",
        o,
    ]);
    run_ok(c);
    let modelfile = std::fs::read_to_string(dir.join("Modelfile")).unwrap();
    assert!(
        modelfile.contains("FROM ./out.gguf")
            && modelfile.contains("PARAMETER stop \"<|im_end|>\"")
    );
    assert!(modelfile.contains(qwen3_sft::data::encode::SYSTEM_PROMPT));
    fails(
        &dir,
        &["--model", "random:tiny", "--tokenizer", t, "--output", o],
        "pass --overwrite",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
