//! bf16 bits by hand, for the CPU kernels that write bf16 tensors directly (NF4 dequantization,
//! the one-pass AdamW): the same roundings as libtorch's `to(bfloat16)`.

/// The f32 value of bf16 bits (exact).
#[inline(always)]
pub fn to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Round to nearest even (libtorch's `to(bfloat16)`), NaN kept NaN.
#[inline(always)]
pub fn nearest(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16;
    if x.is_nan() {
        ((b >> 16) | 0x40) as u16
    } else {
        rounded
    }
}
