//! The GGUF file format (version 3), written as llama.cpp's gguf-py writes it
//! (`gguf-py/gguf/gguf_writer.py`, `constants.py`; the format in ggml's `docs/gguf.md`), and the
//! tensor encodings an export needs, bit for bit as gguf-py produces them (`gguf-py/gguf/quants.py`):
//! F32, F16 and BF16 (round to nearest even), and Q8_0 (`quantize_row_q8_0_ref` in ggml-quants.c).
//!
//! Layout: magic, version, tensor count, key-value count; the key-value pairs; one info record
//! per tensor (name, dimensions innermost first, type, offset into the data section); zero padding
//! to the alignment (32); each tensor's bytes, padded to the alignment. Little-endian throughout.
use anyhow::{bail, Context, Result};
use std::io::Write;
use tch::{Kind, Tensor};

const MAGIC: &[u8; 4] = b"GGUF";
const VERSION: u32 = 3;
/// gguf-py's `GGUF_DEFAULT_ALIGNMENT` (no `general.alignment` key is written for it).
pub const ALIGNMENT: u64 = 32;
/// ggml's `QK8_0`: values per Q8_0 block (one f16 scale, 32 int8).
pub const Q8_0_BLOCK: usize = 32;

/// A metadata value, with the GGUF value type the writer gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

// GGUFValueType
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;

/// ggml tensor types (`GGMLQuantizationType`) an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q8_0 = 8,
    Bf16 = 30,
}

impl GgmlType {
    /// Bytes of `n` values (a multiple of the block size for Q8_0).
    pub fn nbytes(self, n: usize) -> usize {
        match self {
            GgmlType::F32 => 4 * n,
            GgmlType::F16 | GgmlType::Bf16 => 2 * n,
            GgmlType::Q8_0 => n / Q8_0_BLOCK * (2 + Q8_0_BLOCK),
        }
    }
}

/// One tensor: its GGUF name, shape in PyTorch order (outermost first), type, and the values.
pub struct TensorEntry {
    pub name: String,
    pub shape: Vec<i64>,
    pub ty: GgmlType,
    pub data: Tensor,
}

impl TensorEntry {
    fn nbytes(&self) -> usize {
        self.ty.nbytes(self.shape.iter().product::<i64>() as usize)
    }
}

/// A whole file's contents: metadata in writing order, then tensors in writing order.
#[derive(Default)]
pub struct Gguf {
    pub kv: Vec<(String, Value)>,
    pub tensors: Vec<TensorEntry>,
}

fn pad(n: u64) -> u64 {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_value(buf: &mut Vec<u8>, v: &Value) {
    let u32le = |buf: &mut Vec<u8>, x: u32| buf.extend_from_slice(&x.to_le_bytes());
    match v {
        Value::U32(x) => {
            u32le(buf, T_U32);
            u32le(buf, *x);
        }
        Value::I32(x) => {
            u32le(buf, T_I32);
            buf.extend_from_slice(&x.to_le_bytes());
        }
        Value::F32(x) => {
            u32le(buf, T_F32);
            buf.extend_from_slice(&x.to_le_bytes());
        }
        Value::Bool(x) => {
            u32le(buf, T_BOOL);
            buf.push(*x as u8);
        }
        Value::Str(s) => {
            u32le(buf, T_STRING);
            put_str(buf, s);
        }
        Value::Strs(items) => {
            u32le(buf, T_ARRAY);
            u32le(buf, T_STRING);
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for s in items {
                put_str(buf, s);
            }
        }
        Value::I32s(items) => {
            u32le(buf, T_ARRAY);
            u32le(buf, T_I32);
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for x in items {
                buf.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
}

impl Gguf {
    pub fn add(&mut self, key: &str, v: Value) {
        self.kv.push((key.to_string(), v));
    }

    /// Everything before the data section: header, metadata, tensor infos, padding.
    fn head(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            put_str(&mut b, k);
            put_value(&mut b, v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut b, &t.name);
            b.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for d in t.shape.iter().rev() {
                b.extend_from_slice(&(*d as u64).to_le_bytes()); // ggml order: innermost first
            }
            b.extend_from_slice(&(t.ty as u32).to_le_bytes());
            b.extend_from_slice(&offset.to_le_bytes());
            offset += pad(t.nbytes() as u64);
        }
        b.resize(pad(b.len() as u64) as usize, 0);
        b
    }

    /// Writes the file to `w`, encoding one tensor at a time (memory: the largest tensor).
    pub fn write(&self, w: &mut dyn Write) -> Result<()> {
        w.write_all(&self.head())?;
        for t in &self.tensors {
            let mut bytes =
                encode(&t.data, t.ty).with_context(|| format!("encoding tensor {}", t.name))?;
            if bytes.len() != t.nbytes() {
                bail!(
                    "tensor {}: {} bytes encoded, {} expected",
                    t.name,
                    bytes.len(),
                    t.nbytes()
                );
            }
            bytes.resize(pad(bytes.len() as u64) as usize, 0);
            w.write_all(&bytes)?;
        }
        Ok(())
    }
}

/// The raw bytes of a CPU tensor of `kind`.
fn raw_bytes(t: &Tensor, kind: Kind) -> Result<Vec<u8>> {
    let t = t
        .f_to_device(tch::Device::Cpu)?
        .f_to_kind(kind)?
        .f_contiguous()?;
    let mut buf = vec![0u8; t.numel() * kind.elt_size_in_bytes()];
    t.f_copy_data_u8(&mut buf, t.numel())?;
    Ok(buf)
}

/// `t`'s values in `ty`. F16 and BF16 round to nearest even from the values' fp32 form, as numpy's
/// `astype(float16)` and gguf-py's BF16 do (libtorch's casts round the same way).
pub fn encode(t: &Tensor, ty: GgmlType) -> Result<Vec<u8>> {
    let t = t.f_to_kind(Kind::Float)?; // gguf-py first converts bf16 to fp32
    match ty {
        GgmlType::F32 => raw_bytes(&t, Kind::Float),
        GgmlType::F16 => raw_bytes(&t, Kind::Half),
        GgmlType::Bf16 => raw_bytes(&t, Kind::BFloat16),
        GgmlType::Q8_0 => {
            let bytes = raw_bytes(&t, Kind::Float)?;
            let values: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if !values.len().is_multiple_of(Q8_0_BLOCK) {
                bail!(
                    "{} values are not a whole number of Q8_0 blocks",
                    values.len()
                );
            }
            Ok(quantize_q8_0(&values))
        }
    }
}

/// Round half away from zero, computed as gguf-py's `np_roundf` (and C's `roundf`).
fn roundf(x: f32) -> f32 {
    let a = x.abs();
    let floored = a.floor();
    (floored + (2.0 * (a - floored)).floor()).copysign(x)
}

/// Q8_0 blocks of `values` (whole blocks of 32): per block `d = max|x| / 127` stored as f16, and
/// `round(x / d)` as int8, computed in fp32 with the reciprocal as ggml's reference does
/// (`id = 1/d`, then `x * id`; a zero block gets `id = 0`).
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / Q8_0_BLOCK * (2 + Q8_0_BLOCK));
    for block in values.chunks_exact(Q8_0_BLOCK) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
        out.extend(block.iter().map(|x| roundf(x * id) as i8 as u8));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_rounds_half_away_and_scales_by_the_reciprocal() {
        let mut v = vec![0f32; 32];
        v[0] = 127.0;
        v[1] = -0.5;
        v[2] = 0.5;
        v[3] = 1.5;
        let q = quantize_q8_0(&v);
        assert_eq!(q.len(), 34);
        assert_eq!(
            half::f16::from_bits(u16::from_le_bytes([q[0], q[1]])).to_f32(),
            1.0
        );
        assert_eq!(&q[2..6], &[127u8, (-1i8) as u8, 1, 2]);
        assert!(quantize_q8_0(&[0.0; 32])[..].iter().all(|&b| b == 0));
    }

    #[test]
    fn head_is_aligned_and_infos_are_innermost_first() {
        let mut g = Gguf::default();
        g.add("general.architecture", Value::Str("qwen3".into()));
        g.tensors.push(TensorEntry {
            name: "w".into(),
            shape: vec![3, 64],
            ty: GgmlType::F16,
            data: Tensor::zeros([3, 64], (Kind::Float, tch::Device::Cpu)),
        });
        let h = g.head();
        assert_eq!(h.len() % 32, 0);
        assert_eq!(&h[..4], b"GGUF");
        let mut buf = Vec::new();
        g.write(&mut buf).unwrap();
        assert_eq!(buf.len(), h.len() + 384);
    }
}
