//! AdamW in one pass over each parameter on CPU: torch's `_single_tensor_adamw` formula in fp32
//! (decay, `lerp` of the first moment, `v * b2 + (1 - b2) g g`, `addcdiv` by the bias-corrected
//! root), reading the weight, gradient and moments once and writing each once. libtorch's ops take
//! eight passes and temporaries for the same update.
//!
//! Weights and gradients are fp32 or bf16 (the weight rounded to nearest, as torch rounds it).
//! Moments are fp32, or bf16 rounded stochastically: with round-to-nearest `v`'s per-step change
//! (0.001 of itself at beta2 0.999) is below half a bf16 step and `v` stops moving; a stochastic
//! rounding is right on average, and keeps the moments in 4 bytes per parameter instead of 8. The
//! random bits come from a hash of (key, element index), so a step is a pure function of its
//! inputs: resumed runs and any ZeRO split round alike. `optim::sr_bits` computes the same bits
//! with libtorch ops (GPUs, and the reference of tests/adamw_kernel.rs).
use crate::model::bf16;
use tch::{Kind, Tensor};

/// The step's scalars, in fp32 as torch's kernels use them.
#[derive(Clone, Copy, Debug)]
pub struct Hyper {
    /// `1 - lr * weight_decay` (1 when the parameter has no decay).
    pub decay: f32,
    /// `1 - b1`, the first moment's `lerp` weight (computed in f64, as torch passes it).
    pub w1: f32,
    pub b2: f32,
    /// `1 - b2`.
    pub w2: f32,
    pub eps: f32,
    /// `lr / (1 - b1^step)`.
    pub step_size: f32,
    /// `sqrt(1 - b2^step)`.
    pub bc2_sqrt: f32,
    /// The stochastic rounding's key for this parameter and step.
    pub key: u32,
}

pub use crate::model::dropout::hash32;

/// The random bits of element `index`: the low 16 for the first moment, the high 16 for the second.
#[inline(always)]
pub fn sr_bits(key: u32, index: u32) -> u32 {
    hash32(hash32(index) ^ key)
}

/// Stochastic rounding: `r` (16 random bits) added below the kept bits, then truncated, so `x`
/// rounds up with probability equal to its distance from the lower bf16 value.
#[inline(always)]
fn bf16_stochastic(x: f32, r: u32) -> u16 {
    (x.to_bits().wrapping_add(r & 0xFFFF) >> 16) as u16
}

/// A weight or gradient element: fp32 or bf16 bits.
pub trait Elem: Copy + Send + Sync {
    fn get(self) -> f32;
    fn put(x: f32) -> Self;
}

impl Elem for f32 {
    #[inline(always)]
    fn get(self) -> f32 {
        self
    }
    #[inline(always)]
    fn put(x: f32) -> f32 {
        x
    }
}

impl Elem for u16 {
    #[inline(always)]
    fn get(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline(always)]
    fn put(x: f32) -> u16 {
        bf16::nearest(x)
    }
}

/// A moment element: fp32, or bf16 rounded with the given random bits.
pub trait Moment: Copy + Send + Sync {
    fn get(self) -> f32;
    fn put(x: f32, r: u32) -> Self;
}

impl Moment for f32 {
    #[inline(always)]
    fn get(self) -> f32 {
        self
    }
    #[inline(always)]
    fn put(x: f32, _: u32) -> f32 {
        x
    }
}

impl Moment for u16 {
    #[inline(always)]
    fn get(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline(always)]
    fn put(x: f32, r: u32) -> u16 {
        bf16_stochastic(x, r)
    }
}

/// The update of elements `first..first + w.len()` of a parameter.
#[inline(always)]
fn update<W: Elem, G: Elem, M: Moment>(
    w: &mut [W],
    g: &[G],
    m: &mut [M],
    v: &mut [M],
    first: u32,
    h: Hyper,
) {
    let n = w.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        let gi = g[i].get();
        let (mi, vi) = (m[i].get(), v[i].get());
        let mi = mi + h.w1 * (gi - mi); // lerp_(g, 1 - b1)
        let vi = vi * h.b2 + h.w2 * gi * gi; // mul_(b2).addcmul_(g, g, 1 - b2)
        let denom = vi.sqrt() / h.bc2_sqrt + h.eps;
        let wi = w[i].get() * h.decay;
        w[i] = W::put(wi + -h.step_size * (mi / denom)); // addcdiv_(m, denom, -step_size)
        let r = sr_bits(h.key, first.wrapping_add(i as u32));
        m[i] = M::put(mi, r);
        v[i] = M::put(vi, r >> 16);
    }
}

/// `update` compiled for AVX-512 or AVX2 when the CPU has them (the loop vectorises: 16 or 8
/// lanes), else for the baseline.
fn update_dispatch<W: Elem, G: Elem, M: Moment>(
    w: &mut [W],
    g: &[G],
    m: &mut [M],
    v: &mut [M],
    first: u32,
    h: Hyper,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        unsafe fn avx512<W: Elem, G: Elem, M: Moment>(
            w: &mut [W],
            g: &[G],
            m: &mut [M],
            v: &mut [M],
            first: u32,
            h: Hyper,
        ) {
            update(w, g, m, v, first, h)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<W: Elem, G: Elem, M: Moment>(
            w: &mut [W],
            g: &[G],
            m: &mut [M],
            v: &mut [M],
            first: u32,
            h: Hyper,
        ) {
            update(w, g, m, v, first, h)
        }
        if std::is_x86_feature_detected!("avx512bw") && std::is_x86_feature_detected!("avx512vl") {
            // SAFETY: the features were detected on this CPU.
            return unsafe { avx512(w, g, m, v, first, h) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { avx2(w, g, m, v, first, h) };
        }
    }
    update(w, g, m, v, first, h)
}

/// Elements per thread at least: below this, a thread costs more than it saves.
const MIN_PER_THREAD: usize = 1 << 16;

/// Splits the update over `threads` scoped threads (libtorch's own are idle meanwhile).
fn run<W: Elem, G: Elem, M: Moment>(
    w: &mut [W],
    g: &[G],
    m: &mut [M],
    v: &mut [M],
    offset: u32,
    h: Hyper,
    threads: usize,
) {
    let n = w.len();
    let per = n
        .div_ceil(threads.max(1))
        .max(MIN_PER_THREAD)
        .next_multiple_of(64);
    if per >= n {
        return update_dispatch(w, g, m, v, offset, h);
    }
    std::thread::scope(|s| {
        let parts = w
            .chunks_mut(per)
            .zip(g.chunks(per))
            .zip(m.chunks_mut(per).zip(v.chunks_mut(per)));
        for (k, ((w, g), (m, v))) in parts.enumerate() {
            let first = offset.wrapping_add((k * per) as u32);
            s.spawn(move || update_dispatch(w, g, m, v, first, h));
        }
    });
}

/// Whether `step` can run for these tensors: CPU, contiguous, weights/gradients fp32 or bf16,
/// both moments fp32 or both bf16, all the same length.
pub fn supports(w: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor) -> bool {
    let float = |t: &Tensor| matches!(t.kind(), Kind::Float | Kind::BFloat16);
    let all = [w, g, m, v];
    all.iter().all(|t| {
        t.device() == tch::Device::Cpu && t.is_contiguous() && float(t) && t.numel() == w.numel()
    }) && m.kind() == v.kind()
}

/// # Safety of the casts below
/// `supports` checked device, contiguity, dtype and length; the four tensors do not overlap
/// (a parameter, its gradient and its two moments are separate allocations).
unsafe fn slice<'a, T>(t: &Tensor) -> &'a mut [T] {
    std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, t.numel())
}

/// One AdamW step of a parameter (elements `offset..` of it: a ZeRO shard's part) in place.
/// Panics unless `supports(w, g, m, v)`.
pub fn step(w: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, offset: i64, h: Hyper, threads: usize) {
    assert!(
        supports(w, g, m, v),
        "adamw_kernel::step: unsupported tensors"
    );
    let off = offset as u32; // the hash's index wraps at 2^32, on both implementations
    use Kind::{BFloat16 as B, Float as F};
    // SAFETY: see `slice`.
    unsafe {
        match (w.kind(), g.kind(), m.kind()) {
            (F, F, F) => run(
                slice::<f32>(w),
                slice::<f32>(g),
                slice::<f32>(m),
                slice::<f32>(v),
                off,
                h,
                threads,
            ),
            (F, F, B) => run(
                slice::<f32>(w),
                slice::<f32>(g),
                slice::<u16>(m),
                slice::<u16>(v),
                off,
                h,
                threads,
            ),
            (B, B, F) => run(
                slice::<u16>(w),
                slice::<u16>(g),
                slice::<f32>(m),
                slice::<f32>(v),
                off,
                h,
                threads,
            ),
            (B, B, B) => run(
                slice::<u16>(w),
                slice::<u16>(g),
                slice::<u16>(m),
                slice::<u16>(v),
                off,
                h,
                threads,
            ),
            (B, F, F) => run(
                slice::<u16>(w),
                slice::<f32>(g),
                slice::<f32>(m),
                slice::<f32>(v),
                off,
                h,
                threads,
            ),
            (B, F, B) => run(
                slice::<u16>(w),
                slice::<f32>(g),
                slice::<u16>(m),
                slice::<u16>(v),
                off,
                h,
                threads,
            ),
            (F, B, F) => run(
                slice::<f32>(w),
                slice::<u16>(g),
                slice::<f32>(m),
                slice::<f32>(v),
                off,
                h,
                threads,
            ),
            (F, B, B) => run(
                slice::<f32>(w),
                slice::<u16>(g),
                slice::<u16>(m),
                slice::<u16>(v),
                off,
                h,
                threads,
            ),
            _ => unreachable!("supports() checked the kinds"),
        }
    }
}
