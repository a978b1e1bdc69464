//! NF4 4-bit weights as bitsandbytes==0.50.2 makes and uses them on CPU (QLoRA's frozen base):
//! `quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)`
//! (bitsandbytes/functional.py, with the pure-torch `quantize_4bit` kernel of
//! bitsandbytes/backends/default/ops.py that the CPU backend uses), `dequantize_4bit`
//! (csrc/cpu_ops.cpp `dequantizeBlockwise4bitCpu`) and `bnb.nn.Linear4bit`'s forward in training
//! mode (bitsandbytes/autograd/_functions.py `MatMul4Bit` -> `gemm_4bit`: dequantize to the
//! compute dtype, then `F.linear`).
//!
//! Quantization is a plain-Rust loop on the CPU, bit-identical to bnb's: per block of 64 the
//! absmax; each value times the f32 reciprocal of the absmax (the last, partial block is divided
//! instead, as bnb does), clamped to [-1, 1], takes the NF4 code whose bucket between the f32
//! midpoints of the table holds it (`torch.bucketize`: a value on a midpoint takes the lower
//! code). Two codes per byte, element 2i in the high nibble. The absmax ("double quantization")
//! minus its mean (`offset`) is quantized to 8 bits in blocks of 256 (model/blockwise.rs).
//! Dequantization is tch ops (any device): `nf4[code] * absmax` in f32, rounded once to the
//! compute dtype.
use super::{bf16, blockwise};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// Values per absmax (bnb's `blocksize`; transformers' default for QLoRA).
pub const BLOCK: usize = 64;
/// Absmax values per nested absmax (`quantize_blockwise(absmax - offset, blocksize=256)`).
pub const NESTED_BLOCK: usize = 256;

/// bnb's NF4 table (`get_4bit_type("nf4")`, the f32 values of these doubles): quantiles of
/// N(0, 1) scaled to [-1, 1], sorted.
pub const NF4: [f32; 16] = {
    const F64: [f64; 16] = [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ];
    let mut out = [0f32; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = F64[i] as f32;
        i += 1;
    }
    out
};

/// A weight in bnb's NF4 form with nested absmax: what `Params4bit` and its `QuantState` hold.
pub struct Nf4Weight {
    /// [ceil(n / 2), 1] u8 (bnb's shape): codes of elements 2i (high nibble) and 2i + 1.
    pub packed: Tensor,
    /// [blocks] u8: each 64-block's absmax minus `offset`, 8-bit codes of the signed dynamic map.
    pub absmax: Tensor,
    /// [ceil(blocks / 256)] f32: the absmax of each 256-block of centred absmax values.
    pub nested_absmax: Tensor,
    /// [256] f32: the signed dynamic map (`nested_quant_map`).
    pub nested_code: Tensor,
    /// The mean of the 64-block absmax values (`nested_offset`).
    pub offset: f32,
    /// The weight's shape ([out, in] for a linear).
    pub shape: Vec<i64>,
    /// The dtype of the weight that was quantized (`quant_state.dtype`).
    pub dtype: Kind,
}

/// NF4 codes (one per value, an odd count padded with the code of 0) and per-block absmax of
/// `x`, as bnb's `quantize_4bit` kernel computes them.
pub fn quantize_codes(x: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let bounds: Vec<f32> = NF4.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    // torch.bucketize(right=False): the number of bounds strictly below the value
    let code = |s: f32| bounds.partition_point(|&b| b < s) as u8;
    let full = x.len() / BLOCK * BLOCK;
    let mut codes = Vec::with_capacity(x.len() + 1);
    let mut absmax = Vec::with_capacity(x.len().div_ceil(BLOCK));
    // blocks are independent: spans of 1024 blocks in parallel, joined in order
    let spans: Vec<(Vec<u8>, Vec<f32>)> = x[..full]
        .par_chunks(BLOCK * 1024)
        .map(|span| {
            let mut c = Vec::with_capacity(span.len());
            let mut a = Vec::with_capacity(span.len() / BLOCK);
            for block in span.chunks(BLOCK) {
                let am = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let inv = 1.0 / am.max(1e-38); // `A * (1.0 / absmax.clamp(min=1e-38))`
                c.extend(block.iter().map(|&v| code((v * inv).clamp(-1.0, 1.0))));
                a.push(am);
            }
            (c, a)
        })
        .collect();
    for (c, a) in spans {
        codes.extend(c);
        absmax.extend(a);
    }
    if full < x.len() {
        // the partial block keeps the clamped absmax and is divided, not multiplied
        let rest = &x[full..];
        let am = rest.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-38);
        codes.extend(rest.iter().map(|&v| code((v / am).clamp(-1.0, 1.0))));
        absmax.push(am);
    }
    if codes.len() % 2 == 1 {
        codes.push(code(0.0));
    }
    (codes, absmax)
}

/// Two codes per byte, the first in the high nibble.
pub fn pack(codes: &[u8]) -> Vec<u8> {
    codes.chunks(2).map(|c| (c[0] << 4) | c[1]).collect()
}

impl Nf4Weight {
    /// `quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)`; the state
    /// lives on `w`'s device (the arithmetic runs on the CPU).
    pub fn quantize(w: &Tensor) -> Self {
        let device = w.device();
        let flat = w.to_device(Device::Cpu).to_kind(Kind::Float).reshape([-1]);
        let x = Vec::<f32>::try_from(&flat).expect("a CPU f32 tensor");
        let (codes, absmax) = quantize_codes(&x);
        // the mean as torch computes it (its summation order), so `offset` is bnb's exactly
        let offset = Tensor::from_slice(&absmax)
            .mean(Kind::Float)
            .double_value(&[]) as f32;
        let centred: Vec<f32> = absmax.iter().map(|a| a - offset).collect();
        let q = blockwise::signed();
        let mut qabs = vec![0u8; centred.len()];
        let mut nested = vec![0f32; blockwise::blocks(centred.len(), NESTED_BLOCK)];
        q.quantize(&centred, NESTED_BLOCK, &mut qabs, &mut nested);
        let packed = pack(&codes);
        let bytes = packed.len() as i64;
        Nf4Weight {
            packed: Tensor::from_slice(&packed)
                .view([bytes, 1])
                .to_device(device),
            absmax: Tensor::from_slice(&qabs).to_device(device),
            nested_absmax: Tensor::from_slice(&nested).to_device(device),
            nested_code: Tensor::from_slice(q.code()).to_device(device),
            offset,
            shape: w.size(),
            dtype: w.kind(),
        }
    }

    /// The same state on `device`.
    pub fn to_device(self, device: Device) -> Self {
        if device == self.device() {
            return self;
        }
        Nf4Weight {
            packed: self.packed.to_device(device),
            absmax: self.absmax.to_device(device),
            nested_absmax: self.nested_absmax.to_device(device),
            nested_code: self.nested_code.to_device(device),
            ..self
        }
    }

    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }

    pub fn device(&self) -> Device {
        self.packed.device()
    }

    /// The f32 absmax of every 64-block: `nested_code[q] * nested_absmax[block / 256] + offset`
    /// (`dequantize_blockwise` then `absmax += offset`, two f32 roundings).
    pub fn absmax_f32(&self) -> Tensor {
        let blocks = self.absmax.size()[0];
        let nested = self.nested_absmax.size()[0];
        let vals = self
            .nested_code
            .index_select(0, &self.absmax.to_kind(Kind::Int64));
        // [blocks] -> [nested, 256]: one nested absmax per row
        let vals = vals.constant_pad_nd([0, nested * NESTED_BLOCK as i64 - blocks]);
        let vals = vals.view([nested, NESTED_BLOCK as i64]) * self.nested_absmax.unsqueeze(1);
        vals.view([-1])
            .narrow(0, 0, blocks)
            .g_add_scalar(self.offset as f64)
    }

    /// `dequantize_4bit` into `kind` (bf16 or f32): `nf4[code] * absmax` in f32, rounded once.
    /// On the CPU one pass of plain Rust writes the result (the tensor ops below make int64
    /// codes and three f32 temporaries: 28 bytes per weight for a moment); elsewhere tensor ops.
    pub fn dequantize(&self, kind: Kind) -> Tensor {
        match (self.device(), kind) {
            (Device::Cpu, Kind::BFloat16) => self.dequantize_cpu(kind, bf16::nearest),
            (Device::Cpu, Kind::Float) => self.dequantize_cpu(kind, |v: f32| v),
            _ => self.dequantize_ops(kind, OPS_SLICE_BLOCKS),
        }
    }

    /// The same values with the CPU loop: each 64-block's absmax rebuilt as `absmax_f32` does
    /// (two f32 roundings, no FMA), then every code times it, converted by `put`.
    fn dequantize_cpu<T: Copy + Send>(&self, kind: Kind, put: impl Fn(f32) -> T + Sync) -> Tensor {
        let packed = self.packed.contiguous();
        let qabs = self.absmax.contiguous();
        let bytes = cpu_slice::<u8>(&packed);
        let (code, nested) = (
            Vec::<f32>::try_from(&self.nested_code).expect("f32 nested code"),
            Vec::<f32>::try_from(&self.nested_absmax).expect("f32 nested absmax"),
        );
        let absmax: Vec<f32> = cpu_slice::<u8>(&qabs)
            .iter()
            .enumerate()
            .map(|(i, &q)| code[q as usize] * nested[i / NESTED_BLOCK] + self.offset)
            .collect();
        let out = Tensor::empty(self.shape.as_slice(), (kind, Device::Cpu));
        // SAFETY: `out` is a fresh contiguous CPU tensor of `T`-sized elements, written only here.
        let dst = unsafe {
            std::slice::from_raw_parts_mut(out.data_ptr() as *mut T, self.numel() as usize)
        };
        const SPAN: usize = BLOCK * 256; // elements per parallel task
        dst.par_chunks_mut(SPAN).enumerate().for_each(|(s, chunk)| {
            for (j, o) in chunk.iter_mut().enumerate() {
                let e = s * SPAN + j;
                let byte = bytes[e / 2];
                let c = if e.is_multiple_of(2) {
                    byte >> 4
                } else {
                    byte & 15
                };
                *o = put(NF4[c as usize] * absmax[e / BLOCK]);
            }
        });
        out
    }

    /// `dequantize` in tensor ops, for any device, `slice_blocks` 64-blocks at a time into the
    /// output, so the temporaries (int64 byte indices, f32 value pairs and products: 16 bytes
    /// per value) stay bounded whatever the weight's size ([`OPS_SLICE_BLOCKS`]).
    pub fn dequantize_ops(&self, kind: Kind, slice_blocks: i64) -> Tensor {
        let dev = self.device();
        let (n, per) = (self.numel(), BLOCK as i64);
        // [256, 2]: the two values of every byte, the high nibble's first
        let pairs: Vec<f32> = (0..256).flat_map(|b| [NF4[b >> 4], NF4[b & 15]]).collect();
        let lut = Tensor::from_slice(&pairs).view([256, 2]).to_device(dev);
        let absmax = self.absmax_f32();
        let blocks = absmax.size()[0];
        let bytes = self.packed.view([-1]);
        let out = Tensor::empty([n], (kind, dev));
        let mut b0 = 0;
        while b0 < blocks {
            let nb = slice_blocks.min(blocks - b0);
            let (e0, ne) = (b0 * per, (nb * per).min(n - b0 * per)); // even start: 64 | e0
            let idx = bytes.narrow(0, e0 / 2, (ne + 1) / 2).to_kind(Kind::Int64);
            // [bytes, 2] -> [nb, 64]: one absmax per row (a ragged tail padded, then cut off)
            let vals = lut.index_select(0, &idx).view([-1]);
            let vals = vals.constant_pad_nd([0, nb * per - vals.size()[0]]);
            let vals = vals.view([nb, per]) * absmax.narrow(0, b0, nb).unsqueeze(1);
            out.narrow(0, e0, ne)
                .copy_(&vals.view([-1]).narrow(0, 0, ne));
            b0 += nb;
        }
        out.view(self.shape.as_slice())
    }
}

/// 64-blocks per slice of [`Nf4Weight::dequantize_ops`]: 4M values, about 64 MB of temporaries.
pub const OPS_SLICE_BLOCKS: i64 = 65536;

/// The elements of a contiguous CPU tensor.
fn cpu_slice<T>(t: &Tensor) -> &[T] {
    assert!(t.device() == Device::Cpu && t.is_contiguous());
    // SAFETY: a contiguous CPU tensor of `numel` elements of `T`'s size, kept alive by `t`.
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const T, t.numel()) }
}

/// `bnb.nn.Linear4bit` (training mode): a frozen NF4 weight dequantized just in time into the
/// compute dtype, then `F.linear`; the output in the input's dtype.
pub struct Linear4bit {
    pub weight: Nf4Weight,
    pub bias: Option<Tensor>,
    pub compute: Kind,
}

impl Linear4bit {
    /// Quantizes `weight` ([out, in]); `compute` is `bnb_4bit_compute_dtype`.
    pub fn new(weight: &Tensor, bias: Option<Tensor>, compute: Kind) -> Self {
        Linear4bit {
            weight: Nf4Weight::quantize(weight),
            bias,
            compute,
        }
    }

    /// The dequantized weight is a temporary: gradients flow to `x` (and the bias), as bnb's
    /// `MatMul4Bit.backward` (`grad @ dequantize_4bit(W)`), never to the weight.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        matmul(x, &self.weight, self.bias.as_ref(), self.compute)
    }
}

/// `bnb.matmul_4bit` in training mode: `x @ dequantize_4bit(W).T (+ bias)` in `compute`, the
/// result in `x`'s dtype. Under autograd the dequantized weight is kept for the input's gradient
/// until backward, so a model recomputes its layers to keep one layer's worth at a time.
pub fn matmul(x: &Tensor, w: &Nf4Weight, bias: Option<&Tensor>, compute: Kind) -> Tensor {
    let dense = w.dequantize(compute);
    let bias = bias.map(|b| b.to_kind(compute));
    x.to_kind(compute)
        .linear(&dense, bias.as_ref())
        .to_kind(x.kind())
}
