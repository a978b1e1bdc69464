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
//! Used by [`crate::model::lora::Linear`] and the head when [`applies`]: CPU, bf16 input and weight,
//! at most [`MAX_ROWS`] rows, and no autograd graph to record. Anything else goes to libtorch.
use rayon::prelude::*;
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

/// Rows of `x` up to which the GEMV is used: decode steps of a small batch.
pub const MAX_ROWS: i64 = 8;

/// Output rows per parallel task: large enough to amortise scheduling, small enough to balance.
const TASK_ROWS: usize = 256;

fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether autograd records operations now (tch has no getter: set and restore).
fn grad_enabled() -> bool {
    // SAFETY: plain FFI calls into libtorch's thread-local grad mode; the previous value is restored.
    unsafe {
        let prev = torch_sys::at_grad_set_enabled(0);
        torch_sys::at_grad_set_enabled(prev);
        prev != 0
    }
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

/// `x (.., K)` and `w (N, K)` that this module computes: see the module header.
pub fn applies(x: &Tensor, w: &Tensor) -> bool {
    x.device() == Device::Cpu
        && x.kind() == Kind::BFloat16
        && w.kind() == Kind::BFloat16
        && w.dim() == 2
        && w.is_contiguous()
        && x.numel() as i64 <= MAX_ROWS * w.size()[1]
        && x.size().last() == Some(&w.size()[1])
        && (!grad_enabled() || (!x.requires_grad() && !w.requires_grad()))
        && avx2_fma()
}

/// `x @ w^T` in bf16: `x (.., K)`, `w (N, K)` -> `(.., N)`. Callers check [`applies`] first.
pub fn linear(x: &Tensor, w: &Tensor) -> Tensor {
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
    pool().install(|| {
        (0..n.div_ceil(TASK_ROWS)).into_par_iter().for_each(|t| {
            let rows = t * TASK_ROWS..((t + 1) * TASK_ROWS).min(n);
            let dst = &dst;
            for (row, sums) in dot_rows(xs, ws, k, m, rows) {
                for (i, s) in sums.iter().take(m).enumerate() {
                    // SAFETY: row < n, i < m; each row belongs to one task.
                    unsafe { *dst.0.add(i * n + row) = bf16_bits(*s) };
                }
            }
        })
    });
    out.view(shape.as_slice())
}

struct SendPtr(*mut u16);
// SAFETY: tasks write disjoint elements through it (see `linear`).
unsafe impl Sync for SendPtr {}

/// For each weight row in `rows`: its dot products with the `m` rows of `xs`.
fn dot_rows<'a>(
    xs: &'a [f32],
    ws: &'a [u16],
    k: usize,
    m: usize,
    rows: std::ops::Range<usize>,
) -> impl Iterator<Item = (usize, [f32; MAX_ROWS as usize])> + 'a {
    let start = rows.start;
    let quads = (rows.len() / 4) * 4;
    let four = (start..start + quads).step_by(4).flat_map(move |r| {
        let mut sums = [[0f32; MAX_ROWS as usize]; 4];
        for (i, x) in xs.chunks_exact(k).take(m).enumerate() {
            let d = dot4(x, &ws[r * k..(r + 4) * k], k);
            for j in 0..4 {
                sums[j][i] = d[j];
            }
        }
        (0..4).map(move |j| (r + j, sums[j]))
    });
    let rest = (start + quads..rows.end).map(move |r| {
        let mut sums = [0f32; MAX_ROWS as usize];
        for (i, x) in xs.chunks_exact(k).take(m).enumerate() {
            sums[i] = dot1(x, &ws[r * k..(r + 1) * k]);
        }
        (r, sums)
    });
    four.chain(rest)
}

/// Four weight rows (`w` holds 4 x K) against one `x`: one load of `x` feeds four FMA chains.
fn dot4(x: &[f32], w: &[u16], k: usize) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `applies` checked AVX2 and FMA; the slices have the lengths used.
    unsafe {
        avx2::dot4(x, w, k)
    }
    #[cfg(not(target_arch = "x86_64"))]
    std::array::from_fn(|j| dot1(x, &w[j * k..(j + 1) * k]))
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

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4(x: &[f32], w: &[u16], k: usize) -> [f32; 4] {
        let mut acc = [_mm256_setzero_ps(); 4];
        let main = k / 8 * 8;
        let mut i = 0;
        while i < main {
            let xv = _mm256_loadu_ps(x.as_ptr().add(i));
            for (j, a) in acc.iter_mut().enumerate() {
                let raw = _mm_loadu_si128(w.as_ptr().add(j * k + i) as *const __m128i);
                // bf16 -> fp32: zero-extend to 32 bits and shift into the high half
                let wv = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
                *a = _mm256_fmadd_ps(wv, xv, *a);
            }
            i += 8;
        }
        let mut out = [0f32; 4];
        for (j, a) in acc.iter().enumerate() {
            let lo = _mm256_castps256_ps128(*a);
            let hi = _mm256_extractf128_ps(*a, 1);
            let s = _mm_add_ps(lo, hi);
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
            out[j] = _mm_cvtss_f32(s) + super::dot1(&x[main..k], &w[j * k + main..(j + 1) * k]);
        }
        out
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
                let got = linear(&x, &w);
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
    fn not_used_where_autograd_records_or_for_many_rows() {
        let w = Tensor::zeros([4, 8], (Kind::BFloat16, Device::Cpu)).set_requires_grad(true);
        let x = Tensor::zeros([1, 8], (Kind::BFloat16, Device::Cpu));
        assert!(!applies(&x, &w));
        assert!(tch::no_grad(|| applies(&x, &w)) || !avx2_fma());
        let many = Tensor::zeros([MAX_ROWS + 1, 8], (Kind::BFloat16, Device::Cpu));
        assert!(!tch::no_grad(|| applies(&many, &w)));
        assert!(!tch::no_grad(|| applies(&x.to_kind(Kind::Float), &w)));
    }
}
