//! AdamW's step on CPU: the one-pass kernel (`src/train/adamw_kernel.rs`) against the same update
//! in libtorch ops (`optim::update_by_ops`, what ran before), for a 64M-element bf16 parameter
//! (the size of Qwen3-0.6B's layers together: 0.44 B weights take about 7 of these), best of 5,
//! in ms and in GB/s of the bytes each must move (weight, gradient and moments read and written);
//! then `train.optim = "adamw8bit"` (bnb's update: 8-bit moments, and f32 ones as the embedding
//! keeps them).
//! Usage: cargo run --release --example adamw_bench
use qwen3_sft::train::adamw8bit::AdamW8bit;
use qwen3_sft::train::optim::{AdamW, MomentDtype};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// A bf16 weight of `n` elements with a gradient.
fn weight(n: i64) -> Tensor {
    let w = (Tensor::randn([n / 1024, 1024], (Kind::Float, Device::Cpu)) * 0.02)
        .to_kind(Kind::BFloat16)
        .set_requires_grad(true);
    let mut g = qwen3_sft::train::loss::grad_of(&w);
    g.copy_(&(Tensor::randn([n / 1024, 1024], (Kind::Float, Device::Cpu)) * 1e-3));
    w
}

/// Best of 5 steps, in seconds.
fn best_of_5(mut step: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        step();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let n = 64i64 << 20;
    println!(
        "threads: {}, parameter: {n} bf16 elements",
        tch::get_num_threads()
    );
    for (moments, kernel, label) in [
        (
            MomentDtype::Fp32,
            false,
            "libtorch ops, fp32 moments (before)",
        ),
        (MomentDtype::Fp32, true, "kernel, fp32 moments"),
        (
            MomentDtype::Bf16,
            false,
            "libtorch ops, bf16 stochastic moments",
        ),
        (
            MomentDtype::Bf16,
            true,
            "kernel, bf16 stochastic moments (default)",
        ),
    ] {
        let w = weight(n);
        let mut opt = AdamW::new(
            vec![("w".into(), w.shallow_clone())],
            (0.9, 0.999),
            1e-8,
            0.01,
            moments,
        );
        opt.kernel = kernel;
        let moment_bytes = if moments == MomentDtype::Fp32 {
            4.0
        } else {
            2.0
        };
        // weight read + written, gradient read, two moments read + written
        let bytes = n as f64 * (2.0 * 2.0 + 2.0 + 4.0 * moment_bytes);
        let best = best_of_5(|| opt.step(1e-4));
        println!(
            "{label:<44} {:>8.1} ms  {:>6.1} GB/s",
            best * 1e3,
            bytes / best / 1e9
        );
    }
    for (fp32, label, moment_bytes) in [
        (false, "adamw8bit, 8-bit moments", 1.0 + 4.0 / 256.0),
        (true, "adamw8bit, f32 moments (the embedding's)", 4.0),
    ] {
        let w = weight(n);
        let mut opt = AdamW8bit::new(vec![("w".into(), w)], (0.9, 0.999), 1e-8, 0.01);
        if fp32 {
            opt.keep_fp32("w");
        }
        let bytes = n as f64 * (2.0 * 2.0 + 2.0 + 4.0 * moment_bytes);
        let best = best_of_5(|| opt.step(1e-4));
        println!(
            "{label:<44} {:>8.1} ms  {:>6.1} GB/s",
            best * 1e3,
            bytes / best / 1e9
        );
    }
}
