//! Qwen3 forward, loss, per-token losses and every parameter's gradient against transformers
//! (tests/reference/make_parity.py), in fp32 and bf16, on two tiny models whose logits carry
//! signal (loss at init 4.17 and 4.02 against ln V = 5.95 and 5.77): tied head + GQA + head_dim !=
//! hidden/heads, and untied MQA-like with theta 1e4.
//!
//! - `live_transformers` (make test) runs make_parity.py now, on this CPU, into a temporary
//!   directory and compares with it: same machine, same libtorch kernels, so the tolerances sit
//!   near the few float roundings by which our computation order differs.
//! - The golden tests compare with tests/golden/parity (written by `make parity`), which travel
//!   to other CPUs: fp32 agrees across CPU kinds to ~1e-6; bf16 does not (see [`GOLDEN_BF16`]).
//!
//! Bugs planted in src/model/qwen3.rs (then reverted): interleaved RoPE fails every check (logits
//! 1.2-1.26 off, fp32 and bf16), q_norm after RoPE too (logits 0.13-0.23). RMSNorm computed in
//! bf16, or its weight multiplied before the cast back, are no-ops in fp32; they fail the live
//! bf16 checks by 2.7e-2-3.0e-2 in the logits (tolerance 1e-5) and the golden bf16 ones narrowly
//! (tied loss 2.1e-3 and 2.8e-3 against 1.5e-3).
mod common;
use common::{golden, python, rel_diff, root};
use qwen3_sft::model::Model;
use qwen3_sft::train::loss;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Relative differences (max abs difference over the reference's max abs value; the loss: abs
/// difference over the loss).
struct Tol {
    logits: f64,
    loss: f64,
    token_loss: f64,
    grad: f64,
}

/// Live, fp32 (measured on the development EPYC, tied / untied): logits 0 / 0 (bit-identical),
/// loss 4.7e-8 / 4.2e-8, per-token 2.0e-7 / 1.0e-7, gradients 6.5e-7 / 9.2e-7 (our fp32 sums
/// add in another order: the chunked head, autograd's accumulation).
const LIVE_FP32: Tol = Tol {
    logits: 1e-6,
    loss: 5e-7,
    token_loss: 2e-6,
    grad: 1e-5,
};

/// Live, bf16 (measured as LIVE_FP32): logits 0 / 0, loss 4.7e-8 / 2.1e-8 (1.6e-7 with the
/// AVX2 kernels of GOLDEN_BF16's table on both sides), per-token 0 / 0, gradients 5.6e-6 / 0 (the
/// tied embedding's, which sums the head's and the lookup's in another order). One bf16 rounding
/// that differs moves an element by 2^-8 of itself: under 1e-5 of the max only for elements
/// under 1/400 of it.
const LIVE_BF16: Tol = Tol {
    logits: 1e-5,
    loss: 1e-6,
    token_loss: 1e-6,
    grad: 5e-5,
};

/// Golden, fp32: worst over the CPU kernels of the table at GOLDEN_BF16 (ATEN_CPU_CAPABILITY=avx2):
/// logits 8.5e-7, loss 7.0e-8, per-token 5.0e-7, gradients 1.8e-6; about 10x that.
const GOLDEN_FP32: Tol = Tol {
    logits: 1e-5,
    loss: 1e-6,
    token_loss: 5e-6,
    grad: 2e-5,
};

/// Golden, bf16: libtorch's bf16 kernels round differently per CPU kind, so this bound is the
/// spread across CPU kinds, measured by emulating them on the EPYC with AVX-512 BF16 that wrote
/// the goldens, through the kernel choice libtorch (ATEN_CPU_CAPABILITY) and oneDNN
/// (ONEDNN_MAX_CPU_ISA) honour:
///
/// ```text
/// ENV cargo test --test parity -- --nocapture                                      # ours
/// ENV .venv/bin/python tests/reference/make_parity.py --check tests/golden/parity  # transformers
/// ```
///
/// Ours and transformers' give the same numbers under every ENV. bf16 against the goldens, tied /
/// untied (ATEN = ATEN_CPU_CAPABILITY, DNN = ONEDNN_MAX_CPU_ISA):
///
/// ```text
/// ENV                      logits           loss             per-token        gradients
/// none, ATEN=avx512,       0       / 0      4.7e-8 / 2.1e-8  0      / 0       5.6e-6 / 0
///   ATEN=default, DNN=AVX512_CORE_BF16, DNN=AVX512_CORE (gemm:jit:bf16, not brg_matmul)
/// ATEN=avx2                1.55e-2 / 1.0e-2 5.4e-4 / 7.3e-4  8.5e-3 / 4.4e-3  3.1e-2 / 3.3e-2
/// DNN=AVX2                 4.3e-3  / 0      1.3e-4 / 2.1e-8  1.3e-3 / 0       1.2e-2 / 0
/// ATEN=default DNN=AVX2    4.3e-3  / 4.6e-3 1.3e-4 / 3.3e-4  1.3e-3 / 2.8e-3  1.2e-2 / 1.1e-2
/// ATEN=avx2 DNN=AVX2       1.55e-2 / 1.0e-2 7.4e-4 / 7.3e-4  8.5e-3 / 4.4e-3  3.0e-2 / 3.3e-2
/// ```
///
/// What moves: ATEN=avx2 changes SDPA's CPU flash-attention kernel (with eager attention the
/// forward stays bit-identical); DNN=AVX2 turns oneDNN off (no primitive in ONEDNN_VERBOSE) and
/// the products go to ATen's own bf16 GEMM. The last row is an AVX2-only CPU, faithfully: under
/// it transformers reproduces bit for bit (fp32 and bf16) the goldens of commit 18661f4, recorded
/// on an AVX2-only EPYC (`git archive 18661f4 tests/golden/parity | tar -x -C /tmp/old`, then
/// `--check /tmp/old/tests/golden/parity`). Without ENV those differed here by 4.3e-3 / 5.6e-3 in
/// the logits, the figures CI reported on the AMX Xeon: AMX rounded them as this CPU does. AMX
/// itself cannot be emulated here. fp32 moves by at most 8.5e-7 (GOLDEN_FP32).
///
/// Bounds: about 2x the worst row (an AVX2 CPU against goldens from an AVX-512 one). A bf16
/// rounding-level bug costs about as much (RMSNorm in bf16: logits 3.0e-2, loss 2.1e-3), so the
/// live test, bit-identical on one machine, is the one that pins bf16 rounding.
const GOLDEN_BF16: Tol = Tol {
    logits: 3e-2,
    loss: 1.5e-3,
    token_loss: 2e-2,
    grad: 7e-2,
};

struct Diffs {
    logits: f64,
    loss: f64,
    token_loss: f64,
    grad: f64,
    worst_grad: String,
}

fn tag(kind: Kind) -> &'static str {
    if kind == Kind::Float {
        "fp32"
    } else {
        "bf16"
    }
}

/// Per-token losses `(B, T-1)` (0 where ignored) through the loss's own head, one token at a time.
fn token_losses(hidden: &Tensor, head: &Tensor, shifted: &Tensor) -> Tensor {
    let (b, t) = shifted.size2().unwrap();
    let mut out = vec![];
    for bi in 0..b {
        for ti in 0..t - 1 {
            let h = hidden.narrow(0, bi, 1).narrow(1, ti, 1);
            let target = shifted.int64_value(&[bi, ti]);
            let s = Tensor::full([1, 1], target, (Kind::Int64, Device::Cpu));
            let (rows, targets) = loss::label_rows(&s);
            out.push(loss::ce_sum(&h, head, &rows, &targets, 1).double_value(&[]));
        }
    }
    Tensor::from_slice(&out).view([b, t - 1])
}

/// Our forward, loss and backward on the model and batch in `dir`, against its golden.safetensors.
fn measure(dir: &Path, kind: Kind) -> Diffs {
    let g = golden(&dir.join("golden.safetensors"));
    let tag = tag(kind);
    let m = Model::load(dir, kind, Device::Cpu, None).unwrap();
    let (ids, mask) = (&g["input_ids"], &g["attention_mask"]);

    let hidden = m.net.forward(ids, Some(mask), None, true);
    let logits = m.net.logits(&hidden).to_kind(Kind::Float);
    // Padded positions are never used; compare where the mask is 1.
    let valid = mask.unsqueeze(-1).to_kind(Kind::Float);
    let want = &g[&format!("{tag}.logits")];
    let logits = rel_diff(&(&logits * &valid), &(want * &valid));

    let shifted = loss::shift_labels(&g["labels"]);
    let n = shifted.ne(loss::IGNORE).sum(Kind::Int64).double_value(&[]);
    // fp32: the head in chunks of 5 rows. bf16: in one chunk, as transformers' one product: each
    // chunk's head gradient is rounded to bf16 before autograd sums them (chunks of 5 measured
    // 5.8e-3 on the tied model's embedding gradient).
    let chunk = if kind == Kind::Float { 5 } else { n as i64 };
    let (rows, targets) = loss::label_rows(&shifted);
    let total = loss::ce_sum(&hidden, m.net.head_weight(), &rows, &targets, chunk);
    let got_loss = total.double_value(&[]) / n;
    let want_loss = g[&format!("{tag}.loss")].double_value(&[0]);
    (total / n).backward();
    let tokens = tch::no_grad(|| token_losses(&hidden, m.net.head_weight(), &shifted));

    let (mut grad, mut worst_grad, mut count) = (0.0, String::new(), 0);
    for (pname, t) in m.vs.variables() {
        let key = format!("{tag}.grad.{pname}");
        let want = g.get(&key).unwrap_or_else(|| panic!("golden has no {key}"));
        let d = rel_diff(&t.grad(), want);
        if d.is_nan() || d >= grad {
            (grad, worst_grad) = (d, pname);
        }
        count += 1;
    }
    let prefix = format!("{tag}.grad.");
    let expected = g.keys().filter(|k| k.starts_with(&prefix)).count();
    assert_eq!(
        count, expected,
        "{dir:?}: parameter count differs from transformers'"
    );
    Diffs {
        logits,
        loss: (got_loss - want_loss).abs() / want_loss.abs(),
        token_loss: rel_diff(&tokens, &g[&format!("{tag}.token_loss")]),
        grad,
        worst_grad,
    }
}

/// Failures of `d` against `tol`, one line each (empty: all within).
fn over(what: &str, d: &Diffs, tol: &Tol) -> Vec<String> {
    println!(
        "{what}: logits {:.2e}, loss {:.2e}, per-token {:.2e}, gradients {:.2e} ({})",
        d.logits, d.loss, d.token_loss, d.grad, d.worst_grad
    );
    let grad = format!("gradient of {}", d.worst_grad);
    [
        ("logits", d.logits, tol.logits),
        ("loss", d.loss, tol.loss),
        ("per-token losses", d.token_loss, tol.token_loss),
        (grad.as_str(), d.grad, tol.grad),
    ]
    .into_iter()
    .filter(|&(_, got, bound)| got.is_nan() || got > bound)
    .map(|(q, got, bound)| format!("{what}: {q} differs by {got:.2e} (tolerance {bound:.1e})"))
    .collect()
}

fn golden_check(name: &str, kind: Kind) {
    let d = measure(&root().join("tests/golden/parity").join(name), kind);
    let tol = if kind == Kind::Float {
        &GOLDEN_FP32
    } else {
        &GOLDEN_BF16
    };
    let bad = over(&format!("{name} {} vs golden", tag(kind)), &d, tol);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn tied_gqa_fp32() {
    golden_check("tied", Kind::Float);
}

#[test]
fn untied_fp32() {
    golden_check("untied", Kind::Float);
}

#[test]
fn tied_gqa_bf16() {
    golden_check("tied", Kind::BFloat16);
}

#[test]
fn untied_bf16() {
    golden_check("untied", Kind::BFloat16);
}

/// Both models in fp32 and bf16 against make_parity.py run now with the live transformers.
#[test]
#[ignore = "live reference (make test)"]
fn live_transformers() {
    let py = python("live_transformers");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("parity-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = std::process::Command::new(py)
        .arg(root().join("tests/reference/make_parity.py"))
        .arg(&dir)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "make_parity.py failed:\n{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{log}");
    let mut bad = vec![];
    for name in ["tied", "untied"] {
        for (kind, tol) in [(Kind::Float, &LIVE_FP32), (Kind::BFloat16, &LIVE_BF16)] {
            let d = measure(&dir.join(name), kind);
            bad.extend(over(&format!("{name} {} vs live", tag(kind)), &d, tol));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
