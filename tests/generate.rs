//! Generation against transformers/peft: greedy tokens and per-step logits (single prompt and a
//! left-padded batch where one row stops at an eos), the KV cache against full recomputation, a
//! LoRA adapter unmerged vs merged (and transformers loading our merged directory), seeded
//! sampling, and the sampling filters against transformers' warpers. Goldens come from
//! tests/reference/make_generate.py; the live tests rerun it and compare ours to its fresh
//! outputs. The CLI: tests/generate_cli.rs.
mod common;
use common::{golden, python, rel_diff, root};
use qwen3_sft::infer::sampling::filtered_probs;
use qwen3_sft::infer::{
    generate, merge_adapter, GenOptions, Generated, GenerationConfig, SamplingParams,
};
use qwen3_sft::model::{read_adapter_config, DType, DeviceSpec, Model, ModelSpec};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

const NEW_TOKENS: usize = 48;

/// `qwen3-sft merge` of the golden LoRA adapter into the tied model, stored in `kind`.
fn merge_into(out: &std::path::Path, kind: Kind) {
    let dtype = if kind == Kind::Float {
        DType::Fp32
    } else {
        DType::Bf16
    };
    let spec = ModelSpec {
        dtype: Some(dtype),
        device: DeviceSpec::Cpu,
        adapter: Some(gdir().join("lora")),
        ..ModelSpec::new(gdir().join("tied").display().to_string())
    };
    merge_adapter(&spec, out, false).unwrap();
}
/// Ten times the worst measured fp32 difference (7.8e-7 per-step logits on the goldens, 1.0e-6 merged).
const FP32_TOL: f64 = 1e-5;

type Golden = HashMap<String, Tensor>;

fn gdir() -> PathBuf {
    root().join("tests/golden/generate")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qwen3-sft-generate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn load(name: &str, adapter: bool) -> Model {
    let dir = gdir().join(name);
    if !adapter {
        return Model::load(&dir, Kind::Float, Device::Cpu, None).unwrap();
    }
    let (lora, _) = read_adapter_config(&gdir().join("lora")).unwrap();
    let m = Model::load(&dir, Kind::Float, Device::Cpu, Some(&lora)).unwrap();
    m.load_adapter_weights(&gdir().join("lora")).unwrap();
    m
}

/// The model directory's own defaults (eos ids, pad; greedy since it sets no `do_sample`).
fn opts(name: &str) -> GenOptions {
    let cfg = GenerationConfig::from_model_dir(&gdir().join(name)).unwrap();
    assert!(!cfg.sampling.do_sample);
    GenOptions {
        max_new_tokens: NEW_TOKENS,
        output_logits: true,
        ..GenOptions::from_config(&cfg)
    }
}

/// Rows of a left-padded `(B, T)` batch without their padding.
fn prompts(ids: &Tensor, mask: &Tensor) -> Vec<Vec<i64>> {
    let ids: Vec<Vec<i64>> = Vec::try_from(ids).unwrap();
    let mask: Vec<Vec<i64>> = Vec::try_from(mask).unwrap();
    ids.iter()
        .zip(&mask)
        .map(|(r, m)| {
            r.iter()
                .zip(m)
                .filter(|(_, &k)| k == 1)
                .map(|(&t, _)| t)
                .collect()
        })
        .collect()
}

/// transformers pads finished rows with `pad` up to the longest; ours stop at their eos.
fn assert_tokens(what: &str, got: &[Generated], want: &Tensor, pad: i64) {
    let want: Vec<Vec<i64>> = Vec::try_from(want).unwrap();
    assert_eq!(got.len(), want.len(), "{what}: batch size");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let mut ids = g.token_ids.clone();
        ids.resize(w.len(), pad);
        assert_eq!(&ids, w, "{what}: row {i} differs from transformers");
    }
}

/// Our greedy generations of `name` (optionally with the LoRA adapter) against one set of
/// reference outputs (`prefix` "" or "lora.").
fn check_greedy(name: &str, adapter: bool, inputs: &Golden, want: &Golden, prefix: &str) {
    let m = load(name, adapter);
    let o = opts(name);
    let single = prompts(
        &inputs["single.prompt"],
        &inputs["single.prompt"].ones_like(),
    );
    let got = generate(&m, &single, &o).unwrap();
    assert_tokens(
        &format!("{name}{prefix} single"),
        &got,
        &want[&format!("{prefix}single.tokens")],
        o.pad,
    );
    let logits = got[0].logits.as_ref().unwrap();
    let want_logits = want[&format!("{prefix}single.logits")].narrow(0, 0, logits.size()[0]);
    let d = rel_diff(logits, &want_logits);
    println!(
        "{name}{prefix}: {} tokens, per-step logits rel diff {d:.2e}",
        got[0].token_ids.len()
    );
    assert!(
        d < FP32_TOL,
        "{name}{prefix}: step logits differ from transformers by {d:.2e}"
    );
    let batch = prompts(&inputs["batch.input_ids"], &inputs["batch.attention_mask"]);
    let got = generate(&m, &batch, &o).unwrap();
    assert_tokens(
        &format!("{name}{prefix} batch"),
        &got,
        &want[&format!("{prefix}batch.tokens")],
        o.pad,
    );
    if prefix.is_empty() {
        // The golden exercises eos: one row stops early while the others run to the limit.
        let lens: Vec<usize> = got.iter().map(|g| g.token_ids.len()).collect();
        assert!(
            lens.iter().any(|&n| n < NEW_TOKENS) && lens.contains(&NEW_TOKENS),
            "{name}: lengths {lens:?}"
        );
    }
}

/// Live: the reference script rerun on the committed model directories (once per test binary).
fn live_outputs() -> &'static PathBuf {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let py = python("generate (transformers live)");
        let out = tmp("live");
        let status = Command::new(py)
            .arg(root().join("tests/reference/make_generate.py"))
            .args(["check".as_ref(), gdir().as_os_str(), out.as_os_str()])
            .status()
            .expect("running make_generate.py");
        assert!(
            status.success(),
            "tests/reference/make_generate.py check failed"
        );
        out
    })
}

#[test]
fn greedy_matches_transformers_golden() {
    for name in ["tied", "untied"] {
        let g = golden(&gdir().join(name).join("golden.safetensors"));
        check_greedy(name, false, &g, &g, "");
    }
}

#[test]
#[ignore = "live reference (make test)"]
fn greedy_matches_transformers_live() {
    let out = live_outputs();
    for name in ["tied", "untied"] {
        let inputs = golden(&gdir().join(name).join("golden.safetensors"));
        let live = golden(&out.join(format!("{name}.safetensors")));
        check_greedy(name, false, &inputs, &live, "");
        if name == "tied" {
            check_greedy(name, true, &inputs, &live, "lora.");
        }
    }
}

/// The same greedy generation with the KV cache and by full recomputation each step.
fn cached_and_recomputed(
    m: &Model,
    prompts: &[Vec<i64>],
    name: &str,
) -> (Vec<Generated>, Vec<Generated>) {
    let cached = generate(m, prompts, &opts(name)).unwrap();
    let plain = GenOptions {
        use_cache: false,
        ..opts(name)
    };
    (cached, generate(m, prompts, &plain).unwrap())
}

#[test]
fn cache_matches_full_recomputation() {
    for name in ["tied", "untied"] {
        let g = golden(&gdir().join(name).join("golden.safetensors"));
        let m = load(name, false);
        let mut batch = prompts(&g["batch.input_ids"], &g["batch.attention_mask"]);
        batch.push(Vec::try_from(&g["single.prompt"].get(0)).unwrap());
        let (cached, full) = cached_and_recomputed(&m, &batch, name);
        for (i, (c, f)) in cached.iter().zip(&full).enumerate() {
            assert_eq!(
                c.token_ids, f.token_ids,
                "{name} row {i}: cache and recomputation pick different tokens"
            );
            let d = rel_diff(c.logits.as_ref().unwrap(), f.logits.as_ref().unwrap());
            println!("{name} row {i}: cached vs recomputed logits {d:.2e}");
            assert!(
                d < 1e-5,
                "{name} row {i}: cached logits differ from recomputed ones by {d:.2e}"
            );
        }
    }
}

/// bf16 decoding through the CPU decode path (bf16 GEMV, fp32 attention cache) follows bf16
/// recomputation through libtorch's own kernels (the path training and transformers use), step
/// by step while the two pick the same tokens.
#[test]
fn bf16_decode_path_follows_libtorch() {
    let g = golden(&gdir().join("tied/golden.safetensors"));
    let m = Model::load(&gdir().join("tied"), Kind::BFloat16, Device::Cpu, None).unwrap();
    let prompt = vec![Vec::try_from(&g["single.prompt"].get(0)).unwrap()];
    let (mut fast, mut reference) = cached_and_recomputed(&m, &prompt, "tied");
    let (fast, reference) = (fast.remove(0), reference.remove(0));
    let same = fast
        .token_ids
        .iter()
        .zip(&reference.token_ids)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(
        same >= 8,
        "only {same} equal tokens: {:?} vs {:?}",
        fast.token_ids,
        reference.token_ids
    );
    let (a, b) = (fast.logits.unwrap(), reference.logits.unwrap());
    let d = rel_diff(&a.narrow(0, 0, same as i64), &b.narrow(0, 0, same as i64));
    println!("bf16 decode path vs libtorch: {d:.2e} over {same} steps");
    assert!(
        d < 2e-2,
        "bf16 decode logits differ from libtorch's by {d:.2e} over {same} steps"
    );
}

#[test]
fn lora_adapter_matches_peft_and_its_merge() {
    let g = golden(&gdir().join("tied/golden.safetensors"));
    check_greedy("tied", true, &g, &g, "lora.");
    let out = tmp("merged");
    merge_into(&out, Kind::Float);
    // Same greedy tokens from the merged directory as from base + adapter.
    let merged = Model::load(&out, Kind::Float, Device::Cpu, None).unwrap();
    let batch = prompts(&g["batch.input_ids"], &g["batch.attention_mask"]);
    let got = generate(&merged, &batch, &opts("tied")).unwrap();
    assert_tokens("merged batch", &got, &g["lora.batch.tokens"], 0);
    // q_norm/k_norm kept exactly, tied head not written, same tensor names as the base.
    let base = golden(&gdir().join("tied/model.safetensors"));
    let written = golden(&out.join("model.safetensors"));
    let mut names: Vec<&String> = written.keys().collect();
    let mut base_names: Vec<&String> = base.keys().collect();
    names.sort();
    base_names.sort();
    assert_eq!(
        names, base_names,
        "merged tensor names differ from the base's"
    );
    assert!(!written.contains_key("lm_head.weight"));
    for (n, t) in &written {
        if n.contains("norm") || n.contains("embed_tokens") {
            assert!(t.equal(&base[n]), "{n} changed in the merge");
        } else {
            assert!(
                !t.equal(&base[n]),
                "{n}: the adapter was not merged into it"
            );
        }
    }
    assert!(out.join("generation_config.json").is_file());
    let _ = std::fs::remove_dir_all(&out);
}

/// Live: transformers loads our merged directory (fp32 and bf16) with logits equal to ours, peft
/// (base + adapter) agrees, and our merged weights equal peft's `merge_and_unload`.
#[test]
#[ignore = "live reference (make test)"]
fn merged_dir_loads_in_transformers() {
    let py = python("merge (transformers live)");
    let g = golden(&gdir().join("tied/golden.safetensors"));
    let (ids, mask) = (&g["batch.input_ids"], &g["batch.attention_mask"]);
    let inp = tmp("merge-in.safetensors");
    Tensor::write_safetensors(&[("input_ids", ids), ("attention_mask", mask)], &inp).unwrap();
    for kind in [Kind::Float, Kind::BFloat16] {
        let out = tmp(&format!("merged-{kind:?}"));
        merge_into(&out, kind);
        let res = tmp(&format!("merge-out-{kind:?}.safetensors"));
        let status = Command::new(&py)
            .arg(root().join("tests/reference/make_generate.py"))
            .arg("merged")
            .args([
                gdir().join("tied"),
                gdir().join("lora"),
                out.clone(),
                inp.clone(),
                res.clone(),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "make_generate.py merged failed");
        let r = golden(&res);
        assert_eq!(
            r["merged.dtype_bf16"].int64_value(&[0]),
            (kind == Kind::BFloat16) as i64,
            "stored dtype"
        );
        // Ours: base + adapter unmerged, in the same dtype.
        let (lora, _) = read_adapter_config(&gdir().join("lora")).unwrap();
        let m = Model::load(&gdir().join("tied"), kind, Device::Cpu, Some(&lora)).unwrap();
        m.load_adapter_weights(&gdir().join("lora")).unwrap();
        let ours = tch::no_grad(|| m.net.logits(&m.net.forward(ids, Some(mask), None, false)));
        let valid = mask.unsqueeze(-1).to_kind(Kind::Float);
        let tol = if kind == Kind::Float { FP32_TOL } else { 0.05 };
        for key in ["merged.logits", "peft.logits"] {
            let d = rel_diff(&(ours.to_kind(Kind::Float) * &valid), &(&r[key] * &valid));
            println!("{kind:?} {key}: rel diff {d:.2e}");
            assert!(
                d < tol,
                "{kind:?}: our logits vs transformers' {key} differ by {d:.2e}"
            );
        }
        // Merged weights equal peft's merge (fp32), or within one bf16 rounding step.
        let mut worst = 0f64;
        for (n, t) in golden(&out.join("model.safetensors")) {
            let want = &r[&format!("peft_merged.{n}")];
            let d = (t.to_kind(Kind::Float) - want).abs();
            let rel = (&d / (want.abs() + 1e-30)).max().double_value(&[]);
            worst = worst.max(rel);
            let bound = if kind == Kind::Float {
                want.abs() * 1e-6 + 1e-7
            } else {
                want.abs() / 128.0 + 1e-30
            };
            assert!(
                d.le_tensor(&bound).all().int64_value(&[]) == 1,
                "{kind:?} {n}: merged weight differs from peft's"
            );
        }
        println!("{kind:?}: merged weights vs peft's, worst relative {worst:.2e}");
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn sampling_with_a_seed_is_reproducible_and_filtered() {
    let m = load("tied", false);
    let p = vec![vec![5, 17, 230, 44]];
    let sample = |seed: u64, top_k: usize| {
        let o = GenOptions {
            sampling: SamplingParams {
                do_sample: true,
                temperature: 1.5,
                top_k,
                top_p: 1.0,
            },
            seed,
            eos: vec![],
            ..opts("tied")
        };
        generate(&m, &p, &o).unwrap().remove(0)
    };
    let a = sample(1, 0);
    assert_eq!(
        a.token_ids,
        sample(1, 0).token_ids,
        "same seed, different tokens"
    );
    assert_ne!(
        a.token_ids,
        sample(2, 0).token_ids,
        "different seeds gave the same 48 tokens"
    );
    // Sampling really samples: greedy would give another sequence.
    let greedy = generate(
        &m,
        &p,
        &GenOptions {
            eos: vec![],
            ..opts("tied")
        },
    )
    .unwrap()
    .remove(0);
    assert_ne!(a.token_ids, greedy.token_ids);
    // With top-k 3 every drawn token is among the 3 largest logits of its step.
    let k3 = sample(3, 3);
    let logits = k3.logits.as_ref().unwrap();
    for (s, &t) in k3.token_ids.iter().enumerate() {
        let top: Vec<i64> = Vec::try_from(&logits.get(s as i64).topk(3, -1, true, true).1).unwrap();
        assert!(
            top.contains(&t),
            "step {s}: token {t} not in the top 3 {top:?}"
        );
    }
}

fn check_warpers(g: &Golden) {
    let mut worst = 0f64;
    let logits = &g["warp.logits"];
    let settings: Vec<Vec<f64>> = Vec::try_from(&g["warp.settings"]).unwrap();
    for (i, s) in settings.iter().enumerate() {
        let p = SamplingParams {
            do_sample: true,
            temperature: s[0],
            top_k: s[1] as usize,
            top_p: s[2],
        };
        let want = &g[&format!("warp.{i}.probs")];
        for b in 0..logits.size()[0] {
            let dense = Tensor::zeros([logits.size()[1]], (Kind::Double, Device::Cpu));
            for (id, q) in filtered_probs(&logits.get(b), &p) {
                let _ = dense.get(id).fill_(q);
            }
            let d = (dense - want.get(b).to_kind(Kind::Double))
                .abs()
                .max()
                .double_value(&[]);
            worst = worst.max(d);
            assert!(
                d < 1e-6,
                "setting {s:?} row {b}: probabilities differ from transformers' by {d:.2e}"
            );
        }
    }
    println!("warpers: worst probability difference {worst:.2e}");
}

#[test]
fn sampling_filters_match_transformers_golden() {
    check_warpers(&golden(&gdir().join("sampling.safetensors")));
}

#[test]
#[ignore = "live reference (make test)"]
fn sampling_filters_match_transformers_live() {
    check_warpers(&golden(&live_outputs().join("sampling.safetensors")));
}
