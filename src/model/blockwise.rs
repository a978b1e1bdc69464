//! bitsandbytes' block-wise 8-bit quantization as its CPU backend does it (bitsandbytes==0.50.2):
//! the dynamic code maps (`create_dynamic_map`, bitsandbytes/functional.py), `quantize_blockwise`
//! (csrc/cpu_ops.cpp `quantize_cpu_impl`, reached through bitsandbytes/backends/cpu/ops.py for
//! fp32 input) and `dequantize_blockwise` (csrc/cpu_ops.cpp `dequantizeBlockwise8bitCpu`).
//!
//! Two users: the nested quantization of NF4's absmax (model/nf4.rs, blocks of 256, signed map)
//! and AdamW8bit's moments (train/adamw8bit.rs, blocks of 256, signed map for m, unsigned for v).
//! Both are plain-Rust loops over f32 because they must be bit-identical to bnb: its CPU
//! quantizer does not pick the nearest code exactly, it rounds the scaled value onto a grid of
//! 65536 points in [-1, 1] and looks the code up in a table built from that grid.
use tch::{Device, Kind, Tensor};

/// Entries in an 8-bit code map.
pub const CODES: usize = 256;
/// Points of the grid bnb's CPU quantizer rounds onto (`kLUTSize`).
const GRID: usize = 65536;

/// bnb's `create_dynamic_map(signed, max_exponent_bits=7, total_bits=8)`: for each decimal
/// exponent 1e-6..1e0 the midpoints of a linspace over [0.1, 1], scaled; then 0 and 1, sorted.
/// The linspace comes from libtorch itself, so it is bit-identical to torch's (its vectorised
/// kernel rounds differently from a naive `start + i * step`).
pub fn dynamic_map(signed: bool) -> [f32; CODES] {
    // Python's `10 ** (i - 6)` as doubles, which torch rounds to f32 when it scales the f32 means
    const SCALE: [f64; 7] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0];
    let mut data: Vec<f32> = Vec::with_capacity(CODES);
    for (i, &scale) in SCALE.iter().enumerate() {
        // signed: 2^i + 1 boundaries (the sign takes a bit); unsigned: 2^(i+1) + 1
        let items = if signed {
            (1 << i) + 1
        } else {
            (1 << (i + 1)) + 1
        };
        let b = Tensor::linspace(0.1, 1.0, items, (Kind::Float, Device::Cpu));
        let b = Vec::<f32>::try_from(&b).expect("a CPU f32 linspace");
        let scale = scale as f32;
        for w in b.windows(2) {
            let mean = (w[0] + w[1]) / 2.0;
            data.push(scale * mean);
            if signed {
                data.push(-scale * mean);
            }
        }
    }
    data.push(0.0);
    data.push(1.0);
    assert_eq!(data.len(), CODES, "the dynamic map has 2^8 entries");
    data.sort_by(f32::total_cmp);
    data.try_into().unwrap()
}

/// The table bnb's CPU quantizer looks codes up in (csrc/cpu_ops.cpp `build_quantize_lut`): for
/// each grid point, the first code whose upper midpoint is not below it.
pub struct Quantizer {
    code: [f32; CODES],
    table: Vec<u8>,
}

impl Quantizer {
    pub fn new(code: &[f32; CODES]) -> Self {
        let mid: Vec<f32> = code.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
        let mut table = vec![0u8; GRID];
        let mut idx = 0;
        for (i, slot) in table.iter_mut().enumerate() {
            // the f32 arithmetic of `-1.0f + (2.0f * i) / (kLUTSize - 1)`
            let val = -1.0f32 + (2.0f32 * i as f32) / (GRID - 1) as f32;
            while idx < CODES - 1 && mid[idx] < val {
                idx += 1;
            }
            *slot = idx as u8;
        }
        Quantizer { code: *code, table }
    }

    pub fn code(&self) -> &[f32; CODES] {
        &self.code
    }

    /// A scaled value's code: clamp to [-1, 1], round onto the grid (C's truncating cast of
    /// `x * 32767.5 + 0.5`), look up.
    fn lookup(&self, scaled: f32) -> u8 {
        let v = scaled.clamp(-1.0, 1.0);
        let at = (v + 1.0) * 0.5 * (GRID - 1) as f32 + 0.5;
        self.table[at as usize]
    }

    /// `quantize_blockwise(x, code, blocksize)`: per block its absmax, and codes of x / absmax
    /// (x times the f32 reciprocal, as bnb computes it). An all-zero block gets absmax 0 and codes
    /// 0 (which decode to `code[0] * 0 = 0`).
    pub fn quantize(&self, x: &[f32], block: usize, codes: &mut [u8], absmax: &mut [f32]) {
        assert_eq!(codes.len(), x.len(), "one code per value");
        assert_eq!(
            absmax.len(),
            x.len().div_ceil(block),
            "one absmax per block"
        );
        for ((xs, cs), am) in x.chunks(block).zip(codes.chunks_mut(block)).zip(absmax) {
            *am = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            if *am == 0.0 {
                cs.fill(0);
                continue;
            }
            let inv = 1.0 / *am;
            for (c, &v) in cs.iter_mut().zip(xs) {
                *c = self.lookup(v * inv);
            }
        }
    }
}

/// `dequantize_blockwise(codes, absmax, code, blocksize)` in f32: `code[q] * absmax[block]`.
pub fn dequantize(
    code: &[f32; CODES],
    codes: &[u8],
    absmax: &[f32],
    block: usize,
    out: &mut [f32],
) {
    assert_eq!(out.len(), codes.len(), "one value per code");
    assert_eq!(
        absmax.len(),
        codes.len().div_ceil(block),
        "one absmax per block"
    );
    for ((cs, os), &am) in codes.chunks(block).zip(out.chunks_mut(block)).zip(absmax) {
        for (o, &c) in os.iter_mut().zip(cs) {
            *o = code[c as usize] * am;
        }
    }
}

/// Blocks of `block` values covering `n` values.
pub fn blocks(n: usize, block: usize) -> usize {
    n.div_ceil(block)
}

/// The signed dynamic map's quantizer (NF4's nested absmax, AdamW8bit's first moment), built once.
pub fn signed() -> &'static Quantizer {
    static Q: std::sync::OnceLock<Quantizer> = std::sync::OnceLock::new();
    Q.get_or_init(|| Quantizer::new(&dynamic_map(true)))
}

/// The unsigned dynamic map's quantizer (AdamW8bit's second moment), built once.
pub fn unsigned() -> &'static Quantizer {
    static Q: std::sync::OnceLock<Quantizer> = std::sync::OnceLock::new();
    Q.get_or_init(|| Quantizer::new(&dynamic_map(false)))
}
