//! Run configs: the shipped files load, `--set` reads TOML values or plain strings, unknown keys
//! and bad values are errors that name them, and `--dry-run` budgets stay within the targets.
use qwen3_sft::config::{Method, RunConfig};
use qwen3_sft::model::lora::Target;
use std::path::PathBuf;

fn cfg(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("configs")
        .join(name)
}

fn err(name: &str, sets: &[&str]) -> String {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    format!("{:#}", RunConfig::load(&cfg(name), &sets).unwrap_err())
}

#[test]
fn shipped_configs_load_with_the_seed_recipe() {
    for name in [
        "qwen3-1.7b-full.toml",
        "qwen3-1.7b-lora.toml",
        "qwen3-0.6b-full.toml",
        "qwen3-0.6b-lora.toml",
        "demo-cpu.toml",
    ] {
        RunConfig::load(&cfg(name), &[]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    let c = RunConfig::load(&cfg("qwen3-1.7b-lora.toml"), &[]).unwrap();
    let t = &c.train;
    assert_eq!(
        (
            t.lr.get(),
            t.epochs.get(),
            t.batch_size.get(),
            t.grad_accum.get()
        ),
        (1e-4, 2.0, 1, 4)
    );
    assert_eq!(
        (
            t.logging_steps.get(),
            t.eval_steps.get(),
            t.save_steps.get(),
            t.max_grad_norm.get(),
            t.warmup_steps.get()
        ),
        (10, 100, 400, 1.0, 0)
    );
    assert_eq!(c.data.max_length.get(), 2048);
    let l = &c.lora;
    assert_eq!((l.r.get(), l.alpha.get(), l.dropout.get()), (8, 32.0, 0.1));
    assert_eq!(c.lora.targets.len(), 7);
}

#[test]
fn set_reads_toml_values_or_strings() {
    let sets: Vec<String> = [
        "train.method=lora",
        "train.lr=2e-4",
        r#"lora.targets=["q_proj","v_proj"]"#,
        "train.output_dir=runs/x",
        "train.max_steps=7",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let c = RunConfig::load(&cfg("qwen3-1.7b-full.toml"), &sets).unwrap();
    assert_eq!(c.train.method, Method::Lora);
    assert_eq!(c.train.lr.get(), 2e-4);
    assert_eq!(c.lora.targets, vec![Target::QProj, Target::VProj]);
    assert_eq!(c.train.output_dir, PathBuf::from("runs/x"));
    assert_eq!(c.train.max_steps.map(|s| s.get()), Some(7));
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    assert!(err("demo-cpu.toml", &["train.lrr=1"]).contains("unknown field `lrr`"));
    assert!(err("demo-cpu.toml", &["optimizer.lr=1"]).contains("unknown section `[optimizer]`"));
    assert!(err("demo-cpu.toml", &["train.lr=-1"])
        .contains("[train] lr: -1 is not a finite number above 0"));
    let method = err("demo-cpu.toml", &["train.method=qlora"]);
    assert!(
        method.contains("[train] method: unknown variant `qlora`, expected `full` or `lora`"),
        "{method}"
    );
    assert!(err(
        "demo-cpu.toml",
        &["train.method=lora", r#"lora.targets=["qq_proj"]"#]
    )
    .contains("qq_proj"));
    assert!(err("demo-cpu.toml", &["model.dtype=fp8"]).contains("fp8"));
    assert!(err("demo-cpu.toml", &["data.template=chatml"])
        .contains("[data] template: unknown variant `chatml`"));
    assert!(err("demo-cpu.toml", &["model.device=cuda:x"])
        .contains("[model] device: unknown device `cuda:x`"));
    assert!(err("demo-cpu.toml", &["trainlr=1"]).contains("section.key"));
    assert!(err("demo-cpu.toml", &["model.quantization=nf8"])
        .contains("[model] quantization: unknown variant `nf8`"));
}

/// An NF4 base trains LoRA adapters (QLoRA) with every layer recomputed; anything else is a
/// clear error at load.
#[test]
fn nf4_needs_lora_and_full_recomputation() {
    let full = err(
        "demo-cpu.toml",
        &["model.quantization=nf4", "train.method=full"],
    );
    assert!(
        full.contains("train.method = \"lora\" (QLoRA) only"),
        "{full}"
    );
    let lora = ["model.quantization=nf4", "train.method=lora"];
    let gc = err(
        "demo-cpu.toml",
        &[&lora[..], &["train.gradient_checkpointing=false"]].concat(),
    );
    assert!(gc.contains("train.gradient_checkpointing = true"), "{gc}");
    let some = err(
        "demo-cpu.toml",
        &[&lora[..], &["train.checkpoint_layers=1"]].concat(),
    );
    assert!(some.contains("remove train.checkpoint_layers"), "{some}");
}

/// `train.optim` takes `adamw` (the default) or `adamw8bit`; with adamw8bit a non-default
/// `optim_state_dtype` (AdamW's) and ZeRO stages 1 and 2 are errors at load.
#[test]
fn optim_values_and_the_rules_of_adamw8bit() {
    use qwen3_sft::config::Optim;
    let load = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        RunConfig::load(&cfg("demo-cpu.toml"), &sets)
    };
    assert_eq!(load(&[]).unwrap().train.optim, Optim::Adamw);
    let c = load(&["train.optim=adamw8bit"]).unwrap();
    assert_eq!(c.train.optim, Optim::Adamw8bit);
    // DDP, and `auto` (the default) moments, are fine
    load(&["train.optim=adamw8bit", "distributed.zero_stage=0"]).unwrap();
    load(&["train.optim=adamw8bit", "train.optim_state_dtype=auto"]).unwrap();
    let unknown = err("demo-cpu.toml", &["train.optim=adam8bit"]);
    assert!(
        unknown
            .contains("[train] optim: unknown variant `adam8bit`, expected `adamw` or `adamw8bit`"),
        "{unknown}"
    );
    let dtype = err(
        "demo-cpu.toml",
        &["train.optim=adamw8bit", "train.optim_state_dtype=fp32"],
    );
    assert!(
        dtype
            .contains("train.optim_state_dtype = \"fp32\" applies to train.optim = \"adamw\" only"),
        "{dtype}"
    );
    for stage in [1, 2] {
        let zero = err(
            "demo-cpu.toml",
            &[
                "train.optim=adamw8bit",
                &format!("distributed.zero_stage={stage}"),
            ],
        );
        assert!(
            zero.contains(
                "train.optim = \"adamw8bit\" supports distributed.zero_stage = 0 (DDP) only"
            ),
            "{zero}"
        );
    }
    // AdamW keeps every moment dtype and stage
    load(&["train.optim_state_dtype=fp32", "distributed.zero_stage=2"]).unwrap();
}

/// The seed's recipe on Qwen3-1.7B at 2048 tokens on one GPU: full at most 24 GB (the seed needs
/// 32), LoRA at most 8 GB (the seed needs 28), and the 8B fork's QLoRA at most 10 GB, as the
/// budget counts them.
#[test]
fn dry_run_budgets_meet_the_targets() {
    let total = |name: &str| {
        let c = RunConfig::load(&cfg(name), &["model.device=cuda".to_string()]).unwrap();
        let text = qwen3_sft::train::memory::dry_run(&c).unwrap();
        let line = text.lines().find(|l| l.contains("total (peak)")).unwrap();
        line.split_whitespace()
            .rev()
            .nth(1)
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let (full, lora) = (total("qwen3-1.7b-full.toml"), total("qwen3-1.7b-lora.toml"));
    assert!(full <= 24.0, "full fine-tuning budget {full} GB");
    assert!(lora <= 8.0, "LoRA budget {lora} GB");
    // QLoRA on Qwen3-8B (NF4 base) at most 10 GB
    let qlora = total("qwen3-8b-qlora.toml");
    assert!(qlora <= 10.0, "Qwen3-8B QLoRA budget {qlora} GB");
}
