//! The one-pass CPU AdamW (`train::adamw_kernel`) against the same update in libtorch ops
//! (`optim::update_by_ops`, the path GPUs take), for every weight/moment dtype, tensors whose
//! length is no multiple of a vector or a thread's share, and ZeRO-style parts of a parameter;
//! the stochastic rounding's statistics; and the fidelity that makes bf16 moments the default:
//! a bf16 model trained with them follows the fp32-moment run more closely than torch's bf16 AdamW.
//! The fp32 kernel is also what the Trainer parity tests (tests/train.rs, vs transformers) run.
use qwen3_sft::train::optim::{round_stochastic, sr_bits, AdamW, MomentDtype};
use std::sync::Mutex;
use tch::{Device, Kind, Tensor};

/// libtorch's RNG is global: the tests of this file draw their data one at a time.
static RNG: Mutex<()> = Mutex::new(());

/// Parameters of awkward sizes (a 2-D one over two threads' shares, a short odd one).
fn params(kind: Kind) -> Vec<(String, Tensor)> {
    tch::manual_seed(0);
    [
        ("a.weight", vec![300, 517]),
        ("b.weight", vec![77]),
        ("c_norm.weight", vec![1000]),
    ]
    .into_iter()
    .map(|(n, s)| {
        let t = (Tensor::randn(s, (Kind::Float, Device::Cpu)) * 0.05).to_kind(kind);
        (n.to_string(), t.set_requires_grad(true))
    })
    .collect()
}

/// `steps` AdamW steps on fixed random gradients (varying in scale, some tiny: the case bf16
/// moments get wrong) with the kernel on or off; the weights and moments after them.
fn run(kind: Kind, moments: MomentDtype, kernel: bool, steps: i64) -> Vec<Tensor> {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let ps = params(kind);
    let shared = ps
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let mut opt = AdamW::new(shared, (0.9, 0.999), 1e-8, 0.01, moments);
    opt.kernel = kernel;
    tch::manual_seed(1);
    for step in 0..steps {
        for (_, p) in &ps {
            let scale = if step % 2 == 0 { 1e-3 } else { 1e-1 };
            let g = (Tensor::randn(p.size(), (Kind::Float, Device::Cpu)) * scale).to_kind(kind);
            let mut grad = qwen3_sft::train::loss::grad_of(p);
            grad.copy_(&g);
        }
        opt.step(1e-3);
    }
    let (state, _) = opt.state_tensors();
    ps.iter()
        .map(|(_, p)| p.detach().copy())
        .chain(state.into_iter().map(|(_, t)| t))
        .collect()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    let d = (&a - &b).abs().max().double_value(&[]);
    d / b.abs().max().double_value(&[]).max(1e-30)
}

#[test]
fn kernel_matches_libtorch_ops() {
    let cases = [
        (Kind::Float, MomentDtype::Fp32),
        (Kind::Float, MomentDtype::Bf16),
        (Kind::BFloat16, MomentDtype::Fp32),
        (Kind::BFloat16, MomentDtype::Bf16),
    ];
    for (kind, moments) in cases {
        let fused = run(kind, moments, true, 6);
        let ops = run(kind, moments, false, 6);
        let worst = fused
            .iter()
            .zip(&ops)
            .map(|(a, b)| max_rel(a, b))
            .fold(0.0, f64::max);
        // bf16 values differ by at most one bf16 step where an fp32 intermediate differs in its
        // last bit (libtorch fuses multiply-adds that Rust does not); fp32 values by a few ulps
        let bar = if kind == Kind::BFloat16 || moments == MomentDtype::Bf16 {
            1e-3
        } else {
            5e-7
        };
        let exact = fused.iter().zip(&ops).filter(|(a, b)| a.equal(b)).count();
        println!("{kind:?} weights, {moments:?} moments: worst relative difference {worst:.2e}, {exact}/{} tensors bit-equal", fused.len());
        assert!(worst <= bar, "{kind:?}/{moments:?}: {worst:.3e} > {bar:e}");
    }
}

/// A parameter stepped in two parts (ZeRO shards: offsets into it) equals it stepped whole:
/// the rounding stream follows the element's index in the parameter, not in the part.
#[test]
fn parts_of_a_parameter_round_as_the_whole() {
    let bits = sr_bits(77, 0, 1000, Device::Cpu);
    let split = Tensor::cat(
        &[
            sr_bits(77, 0, 384, Device::Cpu),
            sr_bits(77, 384, 616, Device::Cpu),
        ],
        0,
    );
    assert!(bits.equal(&split));
    // and the kernel's bits (Rust) equal the ops' (libtorch int64 arithmetic)
    let rust: Vec<i64> = (0..1000u32)
        .map(|i| qwen3_sft::train::adamw_kernel::sr_bits(77, i) as i64)
        .collect();
    assert!(bits.equal(&Tensor::from_slice(&rust)));
}

/// Stochastic rounding is right on average: over 4096 draws each value rounds up with
/// probability equal to its position between its two bf16 neighbours.
#[test]
fn stochastic_rounding_is_unbiased() {
    let n = 4096;
    // values between 1 and 1 + 2^-7 (one bf16 step), at 1/8, 1/2 and 7/8 of the step; negative too
    let step = 2f64.powi(-7);
    for frac in [0.125, 0.5, 0.875] {
        for sign in [1.0, -1.0] {
            let x = sign * (1.0 + frac * step);
            let xs = Tensor::full([n], x, (Kind::Float, Device::Cpu));
            let r = sr_bits(12345, 0, n, Device::Cpu).bitwise_and(0xFFFF);
            let y = round_stochastic(&xs, &r).to_kind(Kind::Double);
            let mean = y.mean(Kind::Double).double_value(&[]);
            // the mean's standard error: step * sqrt(p (1 - p) / n)
            let se = step * (frac * (1.0 - frac) / n as f64).sqrt();
            println!(
                "x {x:+.6}: mean of roundings {mean:+.6} (error {:.2} standard errors)",
                (mean - x) / se
            );
            assert!(
                (mean - x).abs() < 4.0 * se,
                "x {x}: mean {mean}, standard error {se:e}"
            );
            let lo = sign * 1.0;
            let hi = sign * (1.0 + step);
            let values_ok = y.eq(lo).logical_or(&y.eq(hi)).all().int64_value(&[]) == 1;
            assert!(
                values_ok,
                "x {x}: rounded to something other than its two neighbours"
            );
        }
    }
}

/// A tiny Qwen3-like regression in bf16: loss curves with fp32 moments (the reference), bf16
/// moments rounded stochastically (our default for bf16) and torch's bf16 AdamW (`Param`).
#[test]
fn bf16_moments_follow_fp32_moments_closer_than_torch_does() {
    let curve = |moments: MomentDtype| -> Vec<f64> {
        let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(3);
        let w = (Tensor::randn([64, 256], (Kind::Float, Device::Cpu)) * 0.05)
            .to_kind(Kind::BFloat16)
            .set_requires_grad(true);
        let target = Tensor::randn([64, 256], (Kind::Float, Device::Cpu)) * 0.05;
        let x = Tensor::randn([32, 64], (Kind::Float, Device::Cpu));
        let y = x.mm(&target);
        let mut opt = AdamW::new(
            vec![("w".into(), w.shallow_clone())],
            (0.9, 0.999),
            1e-8,
            0.0,
            moments,
        );
        (0..300)
            .map(|_| {
                let pred = x.to_kind(Kind::BFloat16).mm(&w).to_kind(Kind::Float);
                let loss = (pred - &y).square().mean(Kind::Float);
                loss.backward();
                opt.step(1e-4);
                opt.zero_grad();
                loss.double_value(&[])
            })
            .collect()
    };
    let reference = curve(MomentDtype::Fp32);
    let gap = |c: &[f64]| {
        c.iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / c.len() as f64
    };
    let (ours, torch) = (
        gap(&curve(MomentDtype::Bf16)),
        gap(&curve(MomentDtype::Param)),
    );
    println!("mean |loss - fp32-moment loss| over 300 steps: bf16 stochastic {ours:.3e}, torch bf16 {torch:.3e}");
    assert!(ours < torch, "bf16 moments {ours:e} vs torch's {torch:e}");
}
