//! Matrix-vector products with bf16 weights for CPU decoding (`x @ W^T` for a few rows of `x`).
//!
//! Decoding one token reads every weight once, so a decode step is bound by memory bandwidth. On
//! CPUs without bf16 dot-product instructions (AVX2 without AVX512-BF16 or AMX) libtorch's bf16
//! GEMV widens element by element and is compute bound at about half the bandwidth: on one core of
//! the AVX2 EPYC this project is developed on, 7 GB/s against 16 GB/s for an fp32 GEMV of the same
//! bytes. Widening bf16 to fp32 is a 16-bit shift, so an AVX2+FMA loop streams bf16 weights at
//! memory speed. Accumulation is fp32 and each output is rounded to bf16 (nearest even), as libtorch
//! does; only the order of the summation differs.
//!
//! Generation installs it ([`decoding`], on its own thread, under `no_grad`); while installed,
//! [`linear`] uses it for the model's projections and head when [`applies`]: CPU, bf16 input and
//! weight, at most [`MAX_ROWS`] rows. Everything else, training included, is plain libtorch.
use rayon::prelude::*;
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

/// Rows of `x` up to which the GEMV is used: decode steps of a small batch.
pub const MAX_ROWS: i64 = 8;

/// Output rows per parallel task: large enough to amortise scheduling, small enough to balance.
const TASK_ROWS: usize = 256;

/// Weights (elements) below which one thread does the product: handing work to the pool costs
/// more than it saves under a few hundred KB.
const PARALLEL_MIN: usize = 1 << 18;

fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

thread_local! {
    /// Set on the decoding thread while a [`decoding`] guard lives: only then does [`linear`]
    /// consider this kernel, so training and every other forward are plain libtorch.
    static INSTALLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The threads libtorch computes with (`OMP_NUM_THREADS`, or `tch::set_num_threads`).
fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(tch::get_num_threads().max(1) as usize)
            .thread_name(|i| format!("gemv-{i}"))
            .build()
            .expect("cannot start the decode GEMV threads")
    })
}

/// Hands the cores to the GEMV's threads while it is alive (see [`decoding`]).
pub struct Exclusive {
    torch_threads: i32,
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        INSTALLED.with(|i| i.set(false));
        tch::set_num_threads(self.torch_threads);
    }
}

/// For a decode loop over `rows` sequences of a `kind` model on `device` that will use this GEMV:
/// libtorch computes on one thread until the guard drops, and the GEMV's pool (sized to
/// libtorch's threads before) holds the cores. Two pools on the same cores fight: libtorch's
/// OpenMP workers spin for a while after every parallel region (each layer's attention), and
/// measured that way a 0.6B decode step took 255 ms instead of 143. The ops left to libtorch
/// while decoding (norms, RoPE, attention over one query) are small.
pub fn decoding(device: Device, kind: Kind, rows: usize) -> Option<Exclusive> {
    if device != Device::Cpu || kind != Kind::BFloat16 || rows as i64 > MAX_ROWS || !avx2_fma() {
        return None;
    }
    pool();
    let torch_threads = tch::get_num_threads();
    tch::set_num_threads(1);
    INSTALLED.with(|i| i.set(true));
    Some(Exclusive { torch_threads })
}

/// `x (.., K)` and `w (N, K)` that this module computes: see the module header. Generation
/// installs it under `no_grad` ([`decoding`]), so no autograd graph is ever skipped.
pub fn applies(x: &Tensor, w: &Tensor) -> bool {
    x.device() == Device::Cpu
        && x.kind() == Kind::BFloat16
        && w.kind() == Kind::BFloat16
        && w.dim() == 2
        && w.is_contiguous()
        && x.numel() as i64 <= MAX_ROWS * w.size()[1]
        && x.size().last() == Some(&w.size()[1])
        && avx2_fma()
}

/// `x @ w^T` without bias for the model's projections and head: this module's kernel where it
/// [`applies`], libtorch's `linear` otherwise.
pub fn linear(x: &Tensor, w: &Tensor) -> Tensor {
    if INSTALLED.with(|i| i.get()) && applies(x, w) {
        matvec(x, w)
    } else {
        x.linear::<&Tensor>(w, None)
    }
}

/// `x @ w^T` in bf16: `x (.., K)`, `w (N, K)` -> `(.., N)`. Callers check [`applies`] first.
pub fn matvec(x: &Tensor, w: &Tensor) -> Tensor {
    let (n, k) = w.size2().unwrap();
    let mut shape = x.size();
    let xf = x.to_kind(Kind::Float).contiguous().view([-1, k]); // (M, K) fp32, a few KB
    let m = xf.size()[0];
    *shape.last_mut().unwrap() = n;
    let out = Tensor::empty([m, n], (Kind::BFloat16, Device::Cpu)); // (M, N)
    let (n, k, m) = (n as usize, k as usize, m as usize);
    // SAFETY: `xf` is (M, K) contiguous f32, `w` (N, K) contiguous bf16 (checked by `applies`),
    // `out` (M, N) freshly allocated; all three outlive the parallel loop, which writes disjoint
    // column ranges of `out`.
    let xs = unsafe { std::slice::from_raw_parts(xf.data_ptr() as *const f32, m * k) };
    let ws = unsafe { std::slice::from_raw_parts(w.data_ptr() as *const u16, n * k) };
    let dst = SendPtr(out.data_ptr() as *mut u16);
    let task = |t: usize| {
        let dst = &dst; // the whole Sync wrapper, not its raw pointer field
        let rows = t * TASK_ROWS..((t + 1) * TASK_ROWS).min(n);
        for row in rows {
            let w = &ws[row * k..(row + 1) * k];
            for (i, x) in xs.chunks_exact(k).enumerate() {
                // SAFETY: row < n, i < m; each row belongs to one task.
                unsafe { *dst.0.add(i * n + row) = bf16_bits(dot(x, w)) };
            }
        }
    };
    let tasks = n.div_ceil(TASK_ROWS);
    if n * k < PARALLEL_MIN {
        (0..tasks).for_each(task);
    } else {
        pool().install(|| (0..tasks).into_par_iter().for_each(task));
    }
    out.view(shape.as_slice())
}

struct SendPtr(*mut u16);
// SAFETY: tasks write disjoint elements through it (see `matvec`).
unsafe impl Sync for SendPtr {}

/// `x . w` for one weight row (`K` bf16) against one fp32 `x`, accumulated in fp32.
fn dot(x: &[f32], w: &[u16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `applies` checked AVX2 and FMA; `x` and `w` have the same length.
    unsafe {
        avx2::dot(x, w)
    }
    #[cfg(not(target_arch = "x86_64"))]
    dot1(x, w)
}

fn dot1(x: &[f32], w: &[u16]) -> f32 {
    x.iter().zip(w).map(|(a, &b)| a * bf16_to_f32(b)).sum()
}

fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// fp32 -> bf16 bits, round to nearest even (c10's `round_to_nearest_even`).
fn bf16_bits(f: f32) -> u16 {
    if f.is_nan() {
        return 0x7fc0;
    }
    let b = f.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// 8 bf16 at `p` widened to fp32: zero-extend to 32 bits and shift into the high half.
    macro_rules! widen {
        ($p:expr) => {
            _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_cvtepu16_epi32(_mm_loadu_si128($p as *const __m128i)),
                16,
            ))
        };
    }

    /// Elements ahead of the current position to prefetch: measured on the 311 MB head of
    /// Qwen3-0.6B, one row at a time with a prefetch streams at 15-20 GB/s on two cores where
    /// four interleaved rows without one reached 11-14.
    const AHEAD: usize = 512;

    // Four independent accumulators hide the FMA latency; written out (no array) so that they
    // stay in registers at the dev profile's opt-level 1 too.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(x: &[f32], w: &[u16]) -> f32 {
        let k = w.len();
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        let mut a0 = _mm256_setzero_ps();
        let mut a1 = _mm256_setzero_ps();
        let mut a2 = _mm256_setzero_ps();
        let mut a3 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 32 <= k {
            // a hint only: no fault past the end, and wrapping_add keeps the pointer math defined
            _mm_prefetch(wp.wrapping_add(i + AHEAD) as *const i8, _MM_HINT_T0);
            a0 = _mm256_fmadd_ps(widen!(wp.add(i)), _mm256_loadu_ps(xp.add(i)), a0);
            a1 = _mm256_fmadd_ps(widen!(wp.add(i + 8)), _mm256_loadu_ps(xp.add(i + 8)), a1);
            a2 = _mm256_fmadd_ps(widen!(wp.add(i + 16)), _mm256_loadu_ps(xp.add(i + 16)), a2);
            a3 = _mm256_fmadd_ps(widen!(wp.add(i + 24)), _mm256_loadu_ps(xp.add(i + 24)), a3);
            i += 32;
        }
        while i + 8 <= k {
            a0 = _mm256_fmadd_ps(widen!(wp.add(i)), _mm256_loadu_ps(xp.add(i)), a0);
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        hsum(sum) + super::dot1(&x[i..k], &w[i..k])
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(a: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every output within one bf16 rounding step of libtorch's own bf16 product, for shapes with
    /// row and column remainders, one and several rows of `x`, under no_grad as when decoding.
    #[test]
    fn matches_libtorch_bf16_linear() {
        if !avx2_fma() {
            eprintln!("skipped: no AVX2+FMA");
            return;
        }
        tch::manual_seed(0);
        for (m, n, k) in [(1, 7, 13), (1, 1030, 1024), (3, 517, 200), (8, 64, 3072)] {
            let x = Tensor::randn([m, 1, k], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
            let w = Tensor::randn([n, k], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
            tch::no_grad(|| {
                assert!(applies(&x, &w));
                let got = matvec(&x, &w);
                assert_eq!(got.size(), vec![m, 1, n]);
                // The fp32 product of the same bf16 inputs, rounded once: at most one bf16 step
                // (2^-7 relative) away, plus fp32 summation-order noise near zero.
                let exact = x
                    .to_kind(Kind::Float)
                    .linear::<&Tensor>(&w.to_kind(Kind::Float), None);
                let err = (got.to_kind(Kind::Float) - &exact).abs();
                let step = exact.abs() * 2f64.powi(-7) + 1e-4;
                let worst = (&err / &step).max().double_value(&[]);
                assert!(
                    worst <= 1.0,
                    "({m},{n},{k}): {worst} bf16 steps from the fp32 result"
                );
                // and libtorch's own bf16 product differs from ours by at most one step
                let theirs = x.linear::<&Tensor>(&w, None).to_kind(Kind::Float);
                let apart = (got.to_kind(Kind::Float) - theirs).abs();
                let worst = (apart / step).max().double_value(&[]);
                assert!(
                    worst <= 1.0,
                    "({m},{n},{k}): {worst} bf16 steps from libtorch"
                );
            });
        }
    }

    #[test]
    fn rounding_is_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80); // tie, even stays
        assert_eq!(bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82); // tie, odd rounds up
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(bf16_bits(-2.5), 0xc020);
    }

    #[test]
    fn used_only_while_generation_installs_it() {
        let w = Tensor::zeros([4, 8], (Kind::BFloat16, Device::Cpu));
        let x = Tensor::zeros([1, 8], (Kind::BFloat16, Device::Cpu));
        let active = || INSTALLED.with(|i| i.get()) && applies(&x, &w);
        assert!(
            !active(),
            "used without a decoding guard (training would take it)"
        );
        let guard = decoding(Device::Cpu, Kind::BFloat16, 1);
        assert_eq!(active(), avx2_fma());
        drop(guard);
        assert!(!active(), "still used after the guard dropped");
        let many = Tensor::zeros([MAX_ROWS + 1, 8], (Kind::BFloat16, Device::Cpu));
        assert!(!applies(&many, &w));
        assert!(!applies(&x.to_kind(Kind::Float), &w));
    }
}
