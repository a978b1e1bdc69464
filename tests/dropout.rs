//! LoRA's CPU dropout (`model::dropout`) against libtorch's: the keep rate and independence of
//! its masks, the same mask for the same seed whatever the thread split, and a LoRA projection
//! using it equal to peft's `lora_B(lora_A(dropout(x))) * scaling` written in libtorch ops with
//! that mask (forward and every gradient).
mod common;
use common::rel_diff;
use qwen3_sft::model::dropout::{keep_mask, reseed};
use qwen3_sft::model::lora::{Linear, LoraConfig};
use tch::{nn, Device, Kind, Tensor};

/// libtorch's thread count is per process: the tests that change it take turns.
static THREADS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn mean(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
}

/// Pearson correlation of two 0/1 masks.
fn corr(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    let (a, b) = (&a - mean(&a), &b - mean(&b));
    mean(&(&a * &b)) / (mean(&(&a * &a)) * mean(&(&b * &b))).sqrt()
}

#[test]
fn masks_keep_one_minus_p_independently_as_torch_does() {
    let n = 1i64 << 22;
    // 4 standard errors of a correlation (or of a rate, below) over n draws
    let bound = 4.0 / (n as f64).sqrt();
    for p in [0.1, 0.3, 0.5] {
        reseed(11);
        let a = keep_mask(&[n], p).unwrap();
        let b = keep_mask(&[n], p).unwrap();
        reseed(12);
        let c = keep_mask(&[n], p).unwrap();
        let se = (p * (1.0 - p) / n as f64).sqrt();
        let ours = mean(&a);
        // libtorch's own dropout of ones: kept elements are 1 / (1 - p), dropped ones 0
        let theirs = mean(
            &Tensor::ones([n], (Kind::Float, Device::Cpu))
                .dropout(p, true)
                .ne(0.0),
        );
        for (who, rate) in [("ours", ours), ("libtorch", theirs)] {
            let z = (rate - (1.0 - p)).abs() / se;
            assert!(
                z < 4.0,
                "p {p}: {who} keeps {rate:.5}, {z:.1} standard errors from {}",
                1.0 - p
            );
        }
        let next = |t: &Tensor| t.narrow(0, 1, n - 1);
        let lag1 = corr(&a.narrow(0, 0, n - 1), &next(&a));
        let lag64 = corr(&a.narrow(0, 0, n - 64), &a.narrow(0, 64, n - 64));
        let calls = corr(&a, &b);
        let seeds = corr(&a, &c);
        for (what, r) in [
            ("neighbours", lag1),
            ("64 apart", lag64),
            ("next mask", calls),
            ("next seed", seeds),
        ] {
            assert!(
                r.abs() < bound,
                "p {p}: correlation with {what} {r:.2e} (bound {bound:.1e})"
            );
        }
    }
}

#[test]
fn a_seed_gives_one_mask_whatever_the_threads() {
    let _t = THREADS.lock().unwrap_or_else(|e| e.into_inner());
    let before = tch::get_num_threads();
    let draw = |threads: i32| {
        tch::set_num_threads(threads);
        reseed(-7);
        let first = keep_mask(&[3, 1000, 333], 0.1).unwrap();
        (first, keep_mask(&[3, 1000, 333], 0.1).unwrap())
    };
    let (one, one_next) = draw(1);
    let (four, four_next) = draw(4);
    tch::set_num_threads(before);
    assert!(
        one.equal(&four) && one_next.equal(&four_next),
        "the thread split changed a mask"
    );
    assert!(!one.equal(&one_next), "two masks of one stream are equal");
}

#[test]
fn lora_projection_with_the_mask_equals_peft_formula() {
    let p = 0.3;
    let cfg = LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: p,
        targets: vec!["q_proj".into()],
        rslora: false,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = Linear::new(&vs.root(), "q_proj", 48, 80, Kind::Float, Some(&cfg), false);
    tch::manual_seed(5);
    tch::no_grad(|| {
        for (_, mut t) in vs.variables() {
            let _ = t.normal_(0.0, 0.2);
        }
    });
    let x = Tensor::randn([2, 7, 48], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let g = Tensor::randn([2, 7, 80], (Kind::Float, Device::Cpu));
    let vars = vs.variables();
    let (w, a, b) = (
        &vars["q_proj.weight"],
        &vars["q_proj.lora_A.weight"],
        &vars["q_proj.lora_B.weight"],
    );
    let grads = |out: Tensor| {
        for t in [&x, a, b] {
            t.grad().defined().then(|| t.grad().zero_());
        }
        (&out * &g).sum(Kind::Float).backward();
        (
            out.detach(),
            x.grad().copy(),
            a.grad().copy(),
            b.grad().copy(),
        )
    };
    reseed(99);
    let ours = grads(lin.forward(&x, true));
    reseed(99);
    // peft: noise = bernoulli(1 - p) / (1 - p) (torch's CPU dropout), x * noise, A, B, scaling
    let noise = keep_mask(&[2, 7, 48], p).unwrap().to_kind(Kind::Float) / (1.0 - p);
    let branch = (&x * noise)
        .linear::<&Tensor>(a, None)
        .linear::<&Tensor>(b, None)
        * cfg.scaling();
    let want = grads(x.linear::<&Tensor>(w, None) + branch);
    let names = ["output", "x.grad", "lora_A.grad", "lora_B.grad"];
    let pairs = [
        (&ours.0, &want.0),
        (&ours.1, &want.1),
        (&ours.2, &want.2),
        (&ours.3, &want.3),
    ];
    for (name, (got, want)) in names.iter().zip(pairs) {
        let d = rel_diff(got, want);
        assert!(d < 1e-6, "{name} differs from peft's formula by {d:.2e}");
    }
    // and without training the branch has no dropout at all
    let eval = lin.forward(&x, false);
    let plain = x.linear::<&Tensor>(w, None)
        + x.linear::<&Tensor>(a, None).linear::<&Tensor>(b, None) * cfg.scaling();
    assert!(rel_diff(&eval, &plain) < 1e-6);
}
