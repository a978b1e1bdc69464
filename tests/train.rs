//! Training against the seed's stack run live (transformers Trainer, peft), exact resume after
//! SIGKILL, recomputation equal to the plain backward, bf16 following fp32, and saved models that
//! transformers and peft load with the same logits.
mod common;
use common::{python, rel_diff, root, tokenizer_dir};
use qwen3_sft::model::{LoraConfig, Model};
use qwen3_sft::train::{loss, recompute};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Kind, Tensor};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qwen3-sft"))
}

fn sample_file() -> PathBuf {
    root().join("data/sample/r1_data_example.jsonl")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qwen3-sft-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small config for the CLI: sequential order, no SwanLab, every step logged.
fn config(dir: &Path, model: &str, tok: &Path, method: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[model]
path = "{model}"
dtype = "fp32"
device = "cpu"
[data]
train_file = "{train}"
tokenizer = "{tok}"
template = "reference"
max_length = 256
[train]
method = "{method}"
output_dir = "{out}"
max_steps = 5
batch_size = 2
grad_accum = 2
lr = 1e-3
logging_steps = 1
eval_steps = 1000
save_steps = 1000
shuffle = false
predictions = 0
seed = 42
[lora]
r = 8
alpha = 32
dropout = 0.0
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
[swanlab]
mode = "disabled"
{extra}"#,
        train = dir.join("train.jsonl").display(),
        tok = tok.display(),
        out = dir.join("run").display(),
    );
    let p = dir.join("run.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn first_rows(n: usize, to: &Path) {
    let text = std::fs::read_to_string(sample_file()).unwrap();
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .collect();
    std::fs::write(to, rows.join("\n") + "\n").unwrap();
}

fn metric(run: &Path, key: &str) -> Vec<(i64, f64)> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|v| Some((v["step"].as_i64()?, v.get(key)?.as_f64()?)))
        .collect()
}

fn run_ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "command failed:\n{text}");
    text
}

/// Losses (and grad norms, learning rates) of 5 optimizer steps equal the Trainer's.
fn trainer_parity(method: &str) {
    let test = format!("trainer_parity_{method}");
    let (Some(py), Some(tok)) = (python(&test), tokenizer_dir(&test)) else {
        return;
    };
    let dir = tmp(&test);
    first_rows(20, &dir.join("train.jsonl"));
    let mut c = Command::new(py);
    c.arg(root().join("tests/reference/train_reference.py"))
        .args([
            "--tokenizer",
            tok.to_str().unwrap(),
            "--data",
            dir.join("train.jsonl").to_str().unwrap(),
        ])
        .args([
            "--out",
            dir.join("ref").to_str().unwrap(),
            "--method",
            method,
            "--samples",
            "20",
        ]);
    run_ok(c);
    let reference: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ref/losses.json")).unwrap())
            .unwrap();
    let model = dir.join("ref/model");
    let cfgp = config(&dir, model.to_str().unwrap(), &tok, method, "");
    let mut c = bin();
    c.args(["train", "--config", cfgp.to_str().unwrap()]);
    if method == "lora" {
        c.args([
            "--set",
            &format!("lora.adapter={}", dir.join("ref/init_adapter").display()),
        ]);
    }
    run_ok(c);
    let ours = metric(&dir.join("run"), "train/loss");
    let norms = metric(&dir.join("run"), "train/grad_norm");
    let lrs = metric(&dir.join("run"), "train/learning_rate");
    assert_eq!(
        ours.len(),
        reference.len(),
        "step count: ours {ours:?}, reference {reference:?}"
    );
    for (i, r) in reference.iter().enumerate() {
        let (want, got) = (r["loss"].as_f64().unwrap(), ours[i].1);
        println!(
            "{method} step {}: loss {got:.6} vs {want:.6}, grad_norm {:.5} vs {:.5}",
            i + 1,
            norms[i].1,
            r["grad_norm"]
        );
        assert_eq!(ours[i].0, r["step"].as_i64().unwrap());
        assert!(
            (got - want).abs() / want < 1e-3,
            "{method} step {}: loss {got} vs Trainer {want}",
            i + 1
        );
        let gn = r["grad_norm"].as_f64().unwrap();
        assert!(
            (norms[i].1 - gn).abs() / gn < 1e-2,
            "{method} step {}: grad_norm {} vs {gn}",
            i + 1,
            norms[i].1
        );
        let lr = r["learning_rate"].as_f64().unwrap();
        assert!(
            (lrs[i].1 - lr).abs() <= 1e-9 + 1e-6 * lr,
            "{method} step {}: lr {} vs {lr}",
            i + 1,
            lrs[i].1
        );
    }
}

#[test]
fn trainer_parity_full() {
    trainer_parity("full");
}

#[test]
fn trainer_parity_lora() {
    trainer_parity("lora");
}

/// A config for `random:tiny` (Qwen3 vocabulary, 2 layers) on the first 16 sample rows.
fn tiny_config(dir: &Path, tok: &Path, method: &str, extra: &[&str]) -> (PathBuf, Vec<String>) {
    first_rows(16, &dir.join("train.jsonl"));
    let cfg = config(dir, "random:tiny", tok, method, "");
    let mut sets = vec![
        "train.max_steps=12".to_string(),
        "train.save_steps=2".into(),
        "train.shuffle=true".into(),
        "train.lr=5e-3".into(),
        "train.batch_size=2".into(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    (cfg, sets)
}

fn train_cmd(cfg: &Path, sets: &[String]) -> Command {
    let mut c = bin();
    c.args(["train", "--config", cfg.to_str().unwrap()]);
    for s in sets {
        c.args(["--set", s]);
    }
    c
}

/// SIGKILL between checkpoints, then `--resume`: the same losses step for step as a run that
/// was never interrupted (data order, optimizer state and dropout masks all replayed).
fn resume_exact(method: &str, extra: &[&str]) {
    let test = format!("resume_exact_{method}");
    let Some(tok) = tokenizer_dir(&test) else {
        return;
    };
    let dir = tmp(&test);
    let (cfg, mut sets) = tiny_config(&dir, &tok, method, extra);
    sets.push(format!(
        "train.output_dir={}",
        dir.join("straight").display()
    ));
    run_ok(train_cmd(&cfg, &sets));
    let straight = metric(&dir.join("straight"), "train/loss");

    let out = dir.join("killed");
    *sets.last_mut().unwrap() = format!("train.output_dir={}", out.display());
    let mut child = train_cmd(&cfg, &sets)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !out.join("checkpoint-4").exists() {
        assert!(t0.elapsed().as_secs() < 300, "no checkpoint-4 after 300 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !out.join("final").exists(),
        "the run finished before it could be killed"
    );
    let killed_at = metric(&out, "train/loss").len();
    run_ok({
        let mut c = train_cmd(&cfg, &sets);
        c.arg("--resume");
        c
    });
    let resumed = metric(&out, "train/loss");
    println!("{method}: killed after {killed_at} logged steps");
    assert_eq!(
        resumed.len(),
        straight.len(),
        "resumed run logged {resumed:?}"
    );
    for (a, b) in straight.iter().zip(&resumed) {
        assert_eq!(a.0, b.0);
        assert!(
            (a.1 - b.1).abs() <= 1e-6 * a.1.abs(),
            "step {}: uninterrupted {} vs resumed {}",
            a.0,
            a.1,
            b.1
        );
    }
}

#[test]
fn resume_exact_full() {
    resume_exact("full", &[]);
}

#[test]
fn resume_exact_lora() {
    resume_exact("lora", &["lora.dropout=0.1"]);
}

/// Layer recomputation gives the gradients of the plain backward (LoRA dropout included: each
/// layer reseeds, so both passes draw the same masks).
/// libtorch's default CPU generator is one per process: the in-process tests that seed it and
/// draw from it (dropout masks, random data) take turns, or a parallel test reseeds it midway.
static GLOBAL_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn recompute_equals_plain_backward() {
    let _rng = GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = root().join("tests/golden/parity/tied");
    let lora = LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec!["q_proj".into(), "down_proj".into()],
        rslora: false,
    };
    let ids = Tensor::from_slice(&[5i64, 17, 42, 99, 7, 300, 12, 64, 3, 8, 250, 77]).view([2, 6]);
    let padding = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]).view([2, 6]);
    let labels = Tensor::from_slice(&[-100i64, 17, 42, 99, 7, 300, -100, -100, 3, 8, -100, -100])
        .view([2, 6]);
    let shifted = loss::shift_labels(&labels);
    let grads = |lora: Option<&LoraConfig>, plan: Option<Vec<bool>>| {
        let m = Model::load(&dir, Kind::Float, Device::Cpu, lora).unwrap();
        let mut vars: Vec<(String, Tensor)> = m.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        tch::manual_seed(3);
        tch::no_grad(|| {
            for (n, mut t) in vars {
                if n.contains("lora_B") {
                    let _ = t.normal_(0.0, 0.1);
                }
            }
        });
        match &plan {
            Some(p) => {
                let mut head = loss::ChunkedLoss::new(4);
                recompute::forward_backward(
                    &m.net,
                    &ids,
                    Some(&padding),
                    &shifted,
                    0.1,
                    p,
                    7,
                    &mut head,
                );
            }
            None => {
                let h = m.net.forward(&ids, Some(&padding), None, true);
                (loss::ce_sum(&h, m.net.head_weight(), &shifted, 4) * 0.1).backward();
            }
        }
        let mut g: Vec<(String, Tensor)> =
            m.vs.variables()
                .into_iter()
                .filter(|(_, t)| t.requires_grad())
                .map(|(n, t)| (n, t.grad()))
                .collect();
        g.sort_by(|a, b| a.0.cmp(&b.0));
        g
    };
    let n = 3;
    for lora in [None, Some(&lora)] {
        let plain = grads(lora, None);
        for plan in [vec![true; n], vec![false; n], vec![true, false, true]] {
            let got = grads(lora, Some(plan.clone()));
            assert_eq!(got.len(), plain.len());
            for ((name, a), (_, b)) in got.iter().zip(&plain) {
                let d = rel_diff(a, b);
                assert!(
                    d < 1e-5,
                    "lora {} plan {plan:?}: {name} differs by {d:.2e}",
                    lora.is_some()
                );
            }
        }
    }
    // With dropout, recomputing all layers must equal storing all of them.
    let dropped = LoraConfig {
        dropout: 0.3,
        ..lora.clone()
    };
    let all = grads(Some(&dropped), Some(vec![true; n]));
    let none = grads(Some(&dropped), Some(vec![false; n]));
    let fresh = grads(Some(&dropped), Some(vec![false, true, false]));
    for i in 0..all.len() {
        let d = rel_diff(&all[i].1, &none[i].1);
        assert!(d < 1e-5, "dropout: {} differs by {d:.2e}", all[i].0);
        let d = rel_diff(&fresh[i].1, &none[i].1);
        assert!(d < 1e-5, "dropout: {} differs by {d:.2e}", all[i].0);
    }
}

/// bf16 training follows the fp32 curve (fp32 moments, fp32 update), on the tiny parity model
/// with the trainer's own pieces (recomputation, chunked loss, clipping, AdamW, schedule). In
/// process because libtorch's bf16 GEMM on CPUs without AVX-512 BF16 is a slow reference kernel.
#[test]
fn bf16_follows_fp32() {
    use qwen3_sft::train::optim::{clip_grad_norm, linear_lr, AdamW};
    let _rng = GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = root().join("tests/golden/parity/tied");
    let steps = 12;
    let curve = |kind: Kind| {
        let m = Model::load(&dir, kind, Device::Cpu, None).unwrap();
        let mut params: Vec<(String, Tensor)> = m.vs.variables().into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let mut opt = AdamW::new(params, (0.9, 0.999), 1e-8, 0.0, true);
        let plan = recompute::plan(m.net.layers.len(), true, None);
        tch::manual_seed(11);
        // a small fixed "language": 4 sequences the model can learn to predict
        let ids = Tensor::randint(384, [4, 24], (Kind::Int64, Device::Cpu));
        let shifted = loss::shift_labels(&ids);
        let n = shifted.ne(loss::IGNORE).sum(Kind::Int64).double_value(&[]);
        let mut head = loss::ChunkedLoss::new(64);
        (0..steps)
            .map(|step| {
                let l = recompute::forward_backward(
                    &m.net,
                    &ids,
                    None,
                    &shifted,
                    1.0 / n,
                    &plan,
                    step,
                    &mut head,
                ) / n;
                clip_grad_norm(&opt.params, 1.0);
                opt.step(linear_lr(1e-2, step, 0, steps));
                opt.zero_grad();
                l
            })
            .collect::<Vec<f64>>()
    };
    let (fp32, bf16) = (curve(Kind::Float), curve(Kind::BFloat16));
    assert!(
        fp32[0] - fp32[steps as usize - 1] > 0.5,
        "fp32 loss did not fall: {fp32:?}"
    );
    for (i, (a, b)) in fp32.iter().zip(&bf16).enumerate() {
        println!("step {}: fp32 {a:.4} bf16 {b:.4}", i + 1);
        assert!(
            (a - b).abs() / a < 0.02,
            "step {}: fp32 {a} vs bf16 {b}",
            i + 1
        );
    }
}

/// The final full model loads in transformers, the final adapter in peft, both without missing or
/// unexpected keys, with logits equal to ours.
#[test]
fn saved_models_load_in_transformers_and_peft() {
    let test = "saved_models_load";
    let (Some(py), Some(tok)) = (python(test), tokenizer_dir(test)) else {
        return;
    };
    let dir = tmp(test);
    let ids: Vec<i64> = vec![
        151644, 8948, 198, 100, 2000, 30000, 151645, 198, 151644, 77091, 198,
    ];
    for method in ["full", "lora"] {
        let (cfg, mut sets) = tiny_config(&dir, &tok, method, &["train.max_steps=3"]);
        let out = dir.join(method);
        sets.push(format!("train.output_dir={}", out.display()));
        run_ok(train_cmd(&cfg, &sets));
        let final_dir = out.join("final");
        let (ours, model_dir, adapter) = if method == "full" {
            let m = Model::load(&final_dir, Kind::Float, Device::Cpu, None).unwrap();
            (m, final_dir.clone(), None)
        } else {
            // The base of a random-init LoRA run: the same seed gives the same base weights.
            let base = dir.join("base");
            let cfgm = qwen3_sft::model::config::preset("tiny").unwrap();
            let (lcfg, _) = qwen3_sft::model::read_adapter_config(&final_dir).unwrap();
            let m = Model::random(&cfgm, Kind::Float, Device::Cpu, Some(&lcfg), 42);
            m.save_hf(&base, false, Some(&tok)).unwrap();
            m.load_adapter_weights(&final_dir).unwrap();
            (m, base, Some(final_dir.clone()))
        };
        let want_file = dir.join(format!("{method}.safetensors"));
        let mut c = Command::new(&py);
        c.arg(root().join("tests/reference/load_check.py"))
            .arg(&model_dir)
            .arg(serde_json::to_string(&ids).unwrap())
            .arg(&want_file);
        if let Some(a) = &adapter {
            c.arg(a);
        }
        run_ok(c);
        let want = common::golden(&want_file).remove("logits").unwrap();
        let got = tch::no_grad(|| {
            let x = Tensor::from_slice(&ids).view([1, -1]);
            ours.net.logits(&ours.net.forward(&x, None, None, false))
        });
        let d = rel_diff(&got, &want);
        println!("{method}: logits rel diff {d:.2e}");
        assert!(
            d < 1e-4,
            "{method}: transformers/peft logits differ by {d:.2e}"
        );
    }
}
