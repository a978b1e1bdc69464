//! Qwen3 forward, loss and gradients against transformers (goldens from tests/reference/make_parity.py).
mod common;
use common::{golden, rel_diff, root};
use qwen3_sft::model::Model;
use qwen3_sft::train::loss;
use tch::{Device, Kind, Tensor};

/// fp32 must agree to 1e-4 of each tensor's max abs value (the bar). bf16: measured
/// worst cases are recorded in README ("Parity"); these bounds leave a small margin above them.
const FP32_TOL: f64 = 1e-4;
const BF16_LOGITS_TOL: f64 = 2e-3;
const BF16_GRAD_TOL: f64 = 1e-2;

fn check(name: &str, kind: Kind) {
    let dir = root().join("tests/golden/parity").join(name);
    let g = golden(&dir.join("golden.safetensors"));
    let tag = if kind == Kind::Float { "fp32" } else { "bf16" };
    let m = Model::load(&dir, kind, Device::Cpu, None).unwrap();
    let ids = &g["input_ids"];
    let mask = &g["attention_mask"];
    let labels = &g["labels"];

    let hidden = m.net.forward(ids, Some(mask), None, true);
    let logits = m.net.logits(&hidden).to_kind(Kind::Float);
    // Padded positions are never used; compare where the mask is 1.
    let valid = mask.unsqueeze(-1).to_kind(Kind::Float);
    let want = &g[&format!("{tag}.logits")];
    let d_logits = rel_diff(&(&logits * &valid), &(want * &valid));

    let shifted = loss::shift_labels(labels);
    let n = shifted.ne(loss::IGNORE).sum(Kind::Int64).double_value(&[]);
    let total = loss::ce_sum(&hidden, m.net.head_weight(), &shifted, 5);
    let got_loss = total.double_value(&[]) / n;
    let want_loss = g[&format!("{tag}.loss")].double_value(&[0]);
    (total / n).backward();

    let (lt, gt) = if kind == Kind::Float {
        (FP32_TOL, FP32_TOL)
    } else {
        (BF16_LOGITS_TOL, BF16_GRAD_TOL)
    };
    println!("{name} {tag}: logits rel diff {d_logits:.3e}, loss {got_loss} vs {want_loss}");
    assert!(
        d_logits < lt,
        "{name} {tag}: logits differ by {d_logits:.3e} (tolerance {lt:.0e})"
    );
    assert!(
        (got_loss - want_loss).abs() / want_loss < lt,
        "{name} {tag}: loss {got_loss} vs {want_loss}"
    );

    let mut worst = (0.0, String::new());
    let mut count = 0;
    for (pname, t) in m.vs.variables() {
        let key = format!("{tag}.grad.{pname}");
        let want = g.get(&key).unwrap_or_else(|| panic!("golden has no {key}"));
        let d = rel_diff(&t.grad(), want);
        if d > worst.0 {
            worst = (d, pname.clone());
        }
        assert!(
            d < gt,
            "{name} {tag}: gradient of {pname} differs by {d:.3e} (tolerance {gt:.0e})"
        );
        count += 1;
    }
    let expected = g
        .keys()
        .filter(|k| k.starts_with(&format!("{tag}.grad.")))
        .count();
    assert_eq!(
        count, expected,
        "{name}: parameter count differs from transformers'"
    );
    println!(
        "{name} {tag}: {count} gradients, worst {:.3e} ({})",
        worst.0, worst.1
    );
}

#[test]
fn tied_gqa_fp32() {
    check("tied", Kind::Float);
}

#[test]
fn untied_fp32() {
    check("untied", Kind::Float);
}

#[test]
fn tied_gqa_bf16() {
    check("tied", Kind::BFloat16);
}

#[test]
fn untied_bf16() {
    check("untied", Kind::BFloat16);
}

/// The per-token losses (not only their mean) match, through the chunked head.
#[test]
fn token_losses_fp32() {
    for name in ["tied", "untied"] {
        let dir = root().join("tests/golden/parity").join(name);
        let g = golden(&dir.join("golden.safetensors"));
        let m = Model::load(&dir, Kind::Float, Device::Cpu, None).unwrap();
        let hidden = tch::no_grad(|| {
            m.net
                .forward(&g["input_ids"], Some(&g["attention_mask"]), None, false)
        });
        let shifted = loss::shift_labels(&g["labels"]);
        let (b, t) = shifted.size2().unwrap();
        let want = &g["fp32.token_loss"]; // (B, T-1), 0 where ignored
        for bi in 0..b {
            for ti in 0..t - 1 {
                let target = shifted.int64_value(&[bi, ti]);
                let h = hidden.narrow(0, bi, 1).narrow(1, ti, 1);
                let s = Tensor::full([1, 1], target, (Kind::Int64, Device::Cpu));
                let got =
                    tch::no_grad(|| loss::ce_sum(&h, m.net.head_weight(), &s, 1)).double_value(&[]);
                let w = want.double_value(&[bi, ti]);
                assert!(
                    (got - w).abs() <= 1e-4 * w.abs().max(1.0),
                    "{name} [{bi},{ti}]: {got} vs {w}"
                );
            }
        }
    }
}
