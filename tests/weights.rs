//! Model directories in and out: both config.json schemas, strict loading with one-line errors
//! naming the file, sharded saving that loads back here and in transformers.
mod common;
use common::{python, rel_diff, root};
use qwen3_sft::model::{weights, Config, Model};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn copy_model(name: &str, to: &str) -> PathBuf {
    let src = root().join("tests/golden/parity").join(name);
    let dst = std::env::temp_dir().join(format!("qwen3-sft-weights-{to}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    dst
}

fn load_err(dir: &Path) -> String {
    let e = format!(
        "{:#}",
        Model::load(dir, Kind::Float, Device::Cpu, None)
            .err()
            .expect("load must fail")
    );
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

#[test]
fn both_config_schemas() {
    let v5: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/golden/parity/tied/config.json")).unwrap(),
    )
    .unwrap();
    let a = Config::from_json(v5.clone()).unwrap();
    // transformers 4.5x: rope_theta and torch_dtype at top level
    let mut v4 = v5.clone();
    let o = v4.as_object_mut().unwrap();
    let theta = o.remove("rope_parameters").unwrap()["rope_theta"].clone();
    o.insert("rope_theta".into(), theta);
    let dtype = o.remove("dtype").unwrap_or("float32".into());
    o.insert("torch_dtype".into(), dtype);
    let b = Config::from_json(v4).unwrap();
    assert_eq!((a.rope_theta, b.rope_theta), (1_000_000.0, 1_000_000.0));
    assert_eq!(a.stored_dtype, b.stored_dtype);
    assert_eq!(
        (a.head_dim, a.num_key_value_heads, a.tie_word_embeddings),
        (24, 2, true)
    );
}

#[test]
fn bad_directories_give_one_line_errors_naming_the_file() {
    // config without num_key_value_heads
    let d = copy_model("tied", "nokv");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    cfg.as_object_mut().unwrap().remove("num_key_value_heads");
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("config.json") && e.contains("num_key_value_heads"),
        "{e}"
    );

    // truncated safetensors
    let d = copy_model("tied", "trunc");
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );

    // corrupted header
    let mut bad = bytes.clone();
    bad[8..40].copy_from_slice(&[b'#'; 32]);
    std::fs::write(d.join("model.safetensors"), &bad).unwrap();
    let e = load_err(&d);
    assert!(e.contains("model.safetensors"), "{e}");

    // a missing shard of a sharded checkpoint
    let d = copy_model("tied", "shards");
    let m = Model::load(&d, Kind::Float, Device::Cpu, None).unwrap();
    let out = d.join("sharded");
    weights::write_model_files_sharded(
        &{
            std::fs::create_dir_all(&out).unwrap();
            out.clone()
        },
        &m.hf_tensors(false),
        100_000,
    )
    .unwrap();
    std::fs::copy(d.join("config.json"), out.join("config.json")).unwrap();
    let shard = out.join("model-00002-of-00009.safetensors");
    assert!(shard.exists(), "expected 9 shards of at most 100 kB");
    std::fs::remove_file(&shard).unwrap();
    let e = load_err(&out);
    assert!(e.contains("model-00002-of-00009.safetensors"), "{e}");

    // a tensor of the wrong shape, and an unexpected one
    let d = copy_model("untied", "shape");
    let mut ts: Vec<(String, Tensor)> =
        Tensor::read_safetensors(d.join("model.safetensors")).unwrap();
    ts.iter_mut()
        .find(|(n, _)| n == "model.norm.weight")
        .unwrap()
        .1 = Tensor::ones([7], (Kind::Float, Device::Cpu));
    ts.push((
        "model.extra.weight".into(),
        Tensor::ones([2], (Kind::Float, Device::Cpu)),
    ));
    ts.retain(|(n, _)| n != "lm_head.weight");
    weights::write_safetensors(&d.join("model.safetensors"), &ts, &Default::default()).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("missing tensors: lm_head.weight")
            && e.contains("model.extra.weight")
            && e.contains("model.norm.weight"),
        "{e}"
    );
}

/// `tied` saved sharded (`model.safetensors.index.json`, shards of at most 100 kB) into a fresh
/// directory: the loaded model and that directory.
fn sharded(to: &str) -> (Model, PathBuf) {
    let d = copy_model("tied", to);
    let m = Model::load(&d, Kind::Float, Device::Cpu, None).unwrap();
    let out = d.join("out");
    weights::write_dir_atomically(&out, |tmp| {
        weights::write_model_files_sharded(tmp, &m.hf_tensors(false), 100_000)?;
        std::fs::copy(d.join("config.json"), tmp.join("config.json"))?;
        Ok(())
    })
    .unwrap();
    assert!(out.join("model.safetensors.index.json").exists());
    (m, out)
}

/// Sharded output loads back here, tensor for tensor.
#[test]
fn sharded_save_round_trips() {
    let (m, out) = sharded("roundtrip");
    let back = Model::load(&out, Kind::Float, Device::Cpu, None).unwrap();
    for (n, t) in m.vs.variables() {
        assert_eq!(rel_diff(&back.vs.variables()[&n], &t), 0.0, "{n}");
    }
}

/// Sharded output loads in transformers (no missing or unexpected keys) with our logits.
#[test]
#[ignore = "live reference (make test)"]
fn sharded_save_loads_in_transformers() {
    let py = python("sharded_save_loads_in_transformers");
    let (m, out) = sharded("transformers");
    let ids = [1i64, 5, 9, 200, 17];
    let want_file = out.with_file_name("logits.safetensors");
    let st = std::process::Command::new(py)
        .arg(root().join("tests/reference/load_check.py"))
        .arg(&out)
        .arg(serde_json::to_string(&ids).unwrap())
        .arg(&want_file)
        .status()
        .unwrap();
    assert!(st.success());
    let want = common::golden(&want_file).remove("logits").unwrap();
    let got = tch::no_grad(|| {
        m.net.logits(
            &m.net
                .forward(&Tensor::from_slice(&ids).view([1, -1]), None, None, false),
        )
    });
    // measured 0 (bit-identical, as tests/parity.rs's live fp32 logits)
    let d = rel_diff(&got, &want);
    println!("logits rel diff {d:.2e}");
    assert!(d < 1e-6, "logits differ by {d:.2e} (tolerance 1e-6)");
}
