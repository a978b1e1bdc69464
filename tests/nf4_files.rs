//! The 4-bit model files (src/model/quant_io.rs) against transformers 5.23 + bitsandbytes 0.50.2
//! (tests/reference/nf4_model_ref.py): a tiny random bf16 Qwen3 that transformers loads with
//! `BitsAndBytesConfig(load_in_4bit=True, nf4, double quant, bf16 compute)` and saves. We quantize
//! the same base weights and must produce the same tensors byte for byte (the six per linear,
//! the quant_state JSON included, and the unquantized rest); transformers must load the files we
//! write (config.json with our `quantization_config`) and give the same logits; and reading bnb's
//! files back must give the state we made.
mod common;
use common::{golden, python, root};
use qwen3_sft::model::nf4::Nf4Weight;
use qwen3_sft::model::quant_io::{self, nf4_tensors, quantization_config, read_nf4};
use qwen3_sft::model::weights;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

fn run(args: &[&str], dir: &Path) -> String {
    let out = Command::new(python("nf4_files"))
        .arg(root().join("tests/reference/nf4_model_ref.py"))
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "nf4_model_ref.py {args:?} failed:\n{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    log
}

fn bytes(t: &tch::Tensor) -> Vec<u8> {
    let t = t.contiguous();
    let mut buf = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
    t.copy_data_u8(&mut buf, t.numel());
    buf
}

/// The base model's tensors with every linear but the head quantized, as transformers does.
fn quantized(base: &HashMap<String, tch::Tensor>) -> BTreeMap<String, tch::Tensor> {
    let mut out = BTreeMap::new();
    for (name, t) in base {
        if name.ends_with("_proj.weight") {
            let q = Nf4Weight::quantize(t);
            out.extend(nf4_tensors(name, &q).unwrap());
        } else {
            out.insert(name.clone(), t.shallow_clone());
        }
    }
    out
}

#[test]
#[ignore = "live reference (make test)"]
fn live_model_files_match_transformers() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("nf4-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run(&["make"], &dir);
    let base = golden(&dir.join("base/model.safetensors"));
    let bnb = golden(&dir.join("bnb/model.safetensors"));
    let ours = quantized(&base);
    let mut bad = vec![];
    let (got, want): (Vec<&String>, Vec<&String>) = (ours.keys().collect(), {
        let mut k: Vec<&String> = bnb.keys().collect();
        k.sort();
        k
    });
    if got != want {
        bad.push(format!("tensor names differ:\nours {got:?}\nbnb  {want:?}"));
    }
    for (name, t) in &ours {
        let Some(w) = bnb.get(name) else { continue };
        if t.kind() != w.kind() || t.size() != w.size() || bytes(t) != bytes(w) {
            let what = (t.kind(), t.size(), w.kind(), w.size());
            bad.push(format!(
                "{name} differs (ours {:?} {:?}, bnb {:?} {:?})",
                what.0, what.1, what.2, what.3
            ));
        }
    }
    // bnb's files read back: the state we made from the base weights
    for name in base.keys().filter(|n| n.ends_with("_proj.weight")) {
        let read = read_nf4(&bnb, name).unwrap();
        let made = Nf4Weight::quantize(&base[name]);
        let same = read.shape == made.shape
            && read.dtype == made.dtype
            && read.offset.to_bits() == made.offset.to_bits()
            && bytes(&read.dequantize(tch::Kind::BFloat16))
                == bytes(&made.dequantize(tch::Kind::BFloat16));
        if !same {
            bad.push(format!(
                "{name}: read back from bnb's file differs from ours"
            ));
        }
        assert!(quant_io::is_state_tensor(&format!("{name}.absmax")));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // our files, loaded by transformers
    let out = dir.join("ours");
    std::fs::create_dir_all(&out).unwrap();
    let tensors: Vec<(String, tch::Tensor)> = ours.into_iter().collect();
    let meta = [("format".to_string(), "pt".to_string())].into();
    weights::write_safetensors(&out.join("model.safetensors"), &tensors, &meta).unwrap();
    let cfg_text = std::fs::read_to_string(dir.join("base/config.json")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&cfg_text).unwrap();
    cfg["quantization_config"] = quantization_config();
    std::fs::write(out.join("config.json"), cfg.to_string()).unwrap();
    let log = run(&["check"], &dir);
    print!("{log}");
    assert!(
        log.contains("logits: 0.000e+00"),
        "transformers' logits on our files differ: {log}"
    );
    let bnb_cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bnb/config.json")).unwrap())
            .unwrap();
    assert_eq!(bnb_cfg["quantization_config"], quantization_config());
    let _ = std::fs::remove_dir_all(&dir);
}
