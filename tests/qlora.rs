//! QLoRA (LoRA adapters on an NF4 base, `model.quantization = "nf4"`) against the stack of the
//! seed repository's Qwen3-8B fork run live on this CPU: transformers Trainer + peft +
//! bitsandbytes 0.50.2 with `BitsAndBytesConfig(load_in_4bit, nf4, double quant, bf16 compute)`
//! (tests/reference/train_reference.py `--method qlora`).
//!
//! From the same bf16 signal model (hidden 64: see train_reference.py's `signal_model`) and the
//! same initial adapter, 5 optimizer steps give the Trainer's losses and grad norms; the adapter
//! we save, loaded by peft over the bitsandbytes-quantized base, gives our eval loss
//! (tests/reference/eval_reference.py `--nf4 --adapter`); `merge --quantization nf4` writes what
//! peft's merge into the dequantized bf16 base writes (tests/reference/qlora_ref.py).
//!
//! Planted (then reverted): the LoRA branch added in fp32 before the cast back, as for a dense
//! base, instead of cast to bf16 first as peft's bnb `Linear4bit` does: the first step's loss off
//! by 6.9e-6 and grad norm by 1.3e-3, grad norms up to 2.2e-3 later (fails).
mod common;
use common::{
    config, first_rows, golden, make_signal_model, metric, python, root, run_ok, tmp, tokenizer_dir,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qwen3-sft"))
}

/// Relative. Both sides compute in bf16 (LoRA in fp32), with other summation orders in
/// attention, the chunked loss head and the backward: the first step (same weights) differs at
/// the bf16 level, measured loss 3.4e-7 and grad norm 3.9e-5, and the small differences in the
/// updates compound over the 5 steps to a measured worst of loss 4.1e-5, grad norm 5.4e-4.
const FIRST_LOSS_TOL: f64 = 2e-6;
const FIRST_GRAD_NORM_TOL: f64 = 2e-4;
const LOSS_TOL: f64 = 1e-4;
const GRAD_NORM_TOL: f64 = 1.5e-3;
/// Eval loss of the trained adapter, ours against peft over bnb's base: measured 1.1e-8.
const EVAL_TOL: f64 = 1e-7;

/// train_reference.py's signal model at hidden 64 / MLP 128 (see its `signal_model` on why 64),
/// made once per test process.
fn signal_model() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| make_signal_model("qlora-signal", &["64", "128"]))
}

/// tests/common's config (the Trainer parity's steps and LoRA shape) in bf16 on an NF4 base,
/// starting from `adapter`.
fn qlora_sets(adapter: &Path) -> Vec<String> {
    vec![
        "model.dtype=bf16".to_string(),
        "model.quantization=nf4".to_string(),
        format!("lora.adapter={}", adapter.display()),
    ]
}

fn last_json(text: &str) -> Value {
    let line = text.lines().rfind(|l| l.starts_with('{')).unwrap();
    serde_json::from_str(line).unwrap()
}

/// Our eval loss of `model` (+ `adapter`) with an NF4 base.
fn our_eval(model: &Path, adapter: Option<&Path>, quantization: &str, data: &Path) -> f64 {
    let mut c = bin();
    c.arg("eval")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(data);
    if let Some(a) = adapter {
        c.arg("--adapter").arg(a);
    }
    c.args([
        "--quantization",
        quantization,
        "--dtype",
        "bf16",
        "--device",
        "cpu",
    ])
    .args(["--template", "reference", "--max-length", "256", "--json"]);
    last_json(&run_ok(c))["loss"].as_f64().unwrap()
}

#[test]
#[ignore = "live reference (make test)"]
fn qlora_matches_trainer_peft_bitsandbytes() {
    let (py, model) = (python("qlora"), signal_model());
    let dir = tmp("qlora");
    first_rows(20, &dir.join("train.jsonl"));
    let mut c = Command::new(&py);
    c.arg(root().join("tests/reference/train_reference.py"))
        .arg("--tokenizer")
        .arg(tokenizer_dir())
        .arg("--data")
        .arg(dir.join("train.jsonl"))
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(dir.join("ref"))
        .args(["--method", "qlora", "--samples", "20"]);
    run_ok(c);
    let reference: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ref/losses.json")).unwrap())
            .unwrap();
    let cfg = config(&dir, model.to_str().unwrap(), &tokenizer_dir(), "lora", "");
    let mut c = bin();
    c.args(["train", "--config", cfg.to_str().unwrap()]);
    for set in qlora_sets(&dir.join("ref/init_adapter")) {
        c.args(["--set", &set]);
    }
    run_ok(c);
    let run = dir.join("run");
    let (losses, norms) = (metric(&run, "train/loss"), metric(&run, "train/grad_norm"));
    assert_eq!(losses.len(), reference.len());
    let (mut dl, mut dn) = (0f64, 0f64);
    for (i, r) in reference.iter().enumerate() {
        let (want, gn) = (
            r["loss"].as_f64().unwrap(),
            r["grad_norm"].as_f64().unwrap(),
        );
        let (a, b) = (
            (losses[i].1 - want).abs() / want,
            (norms[i].1 - gn).abs() / gn,
        );
        println!(
            "step {}: loss {:.7} vs {want:.7} ({a:.1e}), grad_norm {:.6} vs {gn:.6} ({b:.1e})",
            i + 1,
            losses[i].1,
            norms[i].1
        );
        if i == 0 {
            assert!(a < FIRST_LOSS_TOL, "first step: loss differs by {a:.1e}");
            assert!(
                b < FIRST_GRAD_NORM_TOL,
                "first step: grad norm differs by {b:.1e}"
            );
        }
        (dl, dn) = (dl.max(a), dn.max(b));
    }
    assert!(
        dl < LOSS_TOL,
        "QLoRA losses differ from the Trainer's by up to {dl:.1e}"
    );
    assert!(
        dn < GRAD_NORM_TOL,
        "QLoRA grad norms differ by up to {dn:.1e}"
    );

    // the adapter we saved, loaded by peft over bnb's quantized base
    let (final_dir, data) = (run.join("final"), dir.join("train.jsonl"));
    let mut c = Command::new(&py);
    c.arg(root().join("tests/reference/eval_reference.py"))
        .args(["--nf4", "--adapter"])
        .arg(&final_dir)
        .arg(tokenizer_dir())
        .arg(model)
        .arg(&data)
        .arg("reference:256");
    let peft = last_json(&run_ok(c))["reference:256"]["loss"]
        .as_f64()
        .unwrap();
    let ours = our_eval(model, Some(&final_dir), "nf4", &data);
    let base = our_eval(model, None, "nf4", &data);
    let d = (ours - peft).abs() / peft;
    println!("eval loss: ours {ours:.9}, peft over bnb {peft:.9} ({d:.1e}); base alone {base:.6}");
    assert!(d <= EVAL_TOL, "eval loss of the adapter differs by {d:.1e}");
    assert!((ours - base).abs() > 1e-3, "the adapter changed nothing");
    merge_matches_peft(&dir, model, &final_dir);
    // generation decodes on the NF4 base with the adapter (greedy: the merged model's tokens)
    let gen = |m: &Path, extra: &[&str]| {
        let mut c = bin();
        c.arg("generate").arg("--model").arg(m).args(extra);
        c.args([
            "--device",
            "cpu",
            "--greedy",
            "--json",
            "--max-new-tokens",
            "8",
        ])
        .args([
            "--prompt-ids",
            "151644,872,198,100,151645,198,151644,77091,198",
        ]);
        last_json(&run_ok(c))["token_ids"].clone()
    };
    let adapter = final_dir.to_str().unwrap();
    let on_nf4 = gen(
        model,
        &[
            "--quantization",
            "nf4",
            "--dtype",
            "bf16",
            "--adapter",
            adapter,
        ],
    );
    let merged = gen(&dir.join("merged"), &[]);
    println!("greedy on NF4 + adapter {on_nf4}, on the merged model {merged}");
    assert_eq!(on_nf4.as_array().map(Vec::len), Some(8), "{on_nf4}");
    let _ = std::fs::remove_dir_all(&dir); // kept only when the test fails
}

/// `merge --quantization nf4`: the adapter folded into the dequantized bf16 base, the tensors
/// byte for byte those of peft's merge of the same base, config.json without a quantization.
fn merge_matches_peft(dir: &Path, model: &Path, adapter: &Path) {
    let ours = dir.join("merged");
    let mut c = bin();
    c.arg("merge")
        .arg("--model")
        .arg(model)
        .arg("--adapter")
        .arg(adapter);
    c.args([
        "--quantization",
        "nf4",
        "--dtype",
        "bf16",
        "--device",
        "cpu",
        "--output",
    ])
    .arg(&ours);
    run_ok(c);
    let want = dir.join("peft-merged");
    let mut c = Command::new(python("qlora merge"));
    c.arg(root().join("tests/reference/qlora_ref.py"))
        .arg("merge")
        .args([model, adapter, &want]);
    run_ok(c);
    let (a, b) = (
        golden(&ours.join("model.safetensors")),
        golden(&want.join("model.safetensors")),
    );
    let mut names: Vec<&String> = b.keys().collect();
    names.sort();
    assert_eq!(
        a.len(),
        b.len(),
        "tensor names: ours {:?}, peft {names:?}",
        a.keys()
    );
    for n in names {
        let (x, y) = (&a[n], &b[n]);
        assert_eq!(x.kind(), y.kind(), "{n}: dtype");
        let diff = (x - y).abs().max().double_value(&[]);
        assert_eq!(
            diff, 0.0,
            "{n}: merged weights differ from peft's by {diff:e}"
        );
    }
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(ours.join("config.json")).unwrap()).unwrap();
    assert!(cfg.get("quantization_config").is_none(), "{cfg}");
}
