//! The decode GEMV (`src/model/gemv.rs`) against libtorch's bf16 `linear` for the matrix shapes of
//! a Qwen3-0.6B decode step, one row of `x`, best of several runs each, in GB/s of weights read.
//! The head (311 MB) streams from memory; the layer shapes (2-6 MB) repeated here stay in cache,
//! so their numbers show the kernels' compute rate rather than the memory's.
//! Usage: cargo run --release --example gemv_bench
use qwen3_sft::model::gemv;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() {
    println!("threads: {}", tch::get_num_threads());
    for (n, k) in [
        (151936i64, 1024i64),
        (3072, 1024),
        (1024, 3072),
        (2048, 1024),
    ] {
        let x = Tensor::randn([1, 1, k], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        let w = Tensor::randn([n, k], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        let reps = (2_000_000_000 / (n * k * 2)).max(5);
        tch::no_grad(|| {
            assert!(
                gemv::applies(&x, &w),
                "no AVX2+FMA: the GEMV does not run here"
            );
            let ours = || gemv::matvec(&x, &w);
            let theirs = || x.linear::<&Tensor>(&w, None);
            let mut best = [f64::MAX; 2];
            for _ in 0..reps {
                for (i, f) in [&ours as &dyn Fn() -> Tensor, &theirs].iter().enumerate() {
                    let t = Instant::now();
                    let _ = f();
                    best[i] = best[i].min(t.elapsed().as_secs_f64());
                }
            }
            let gbs = |s: f64| (n * k * 2) as f64 / s / 1e9;
            println!(
                "({n:>6}, {k}) bf16: ours {:.3} ms ({:.1} GB/s), libtorch {:.3} ms ({:.1} GB/s), {:.2}x",
                best[0] * 1e3,
                gbs(best[0]),
                best[1] * 1e3,
                gbs(best[1]),
                best[1] / best[0]
            );
        });
    }
}
