//! A model whose decoder linears are NF4 (QLoRA's frozen base, `model.quantization = "nf4"`):
//! loading (a dense checkpoint quantized as it is read, as transformers' `from_pretrained` with a
//! `BitsAndBytesConfig` does, or a bitsandbytes 4-bit checkpoint taken as stored), random
//! initialisation (the same draws as the dense model, then quantized one tensor at a time), and
//! the 4-bit checkpoint form transformers saves (quant_io.rs).
//!
//! Embeddings, norms and the head stay in the model dtype, as bitsandbytes + transformers leave
//! them. Only one linear's dense weight exists at a time while loading, so an 8B base never needs
//! its 16 GB bf16 copy in memory.
use super::lora::Weight;
use super::nf4::Nf4Weight;
use super::{quant_io, weights, Model};
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Whether `config.json` (its `quantization_config`) describes a bitsandbytes NF4 checkpoint;
/// an error for a quantization this crate cannot read.
pub fn is_nf4_checkpoint(raw: &Value, dir: &Path) -> Result<bool> {
    let Some(q) = raw.get("quantization_config") else {
        return Ok(false);
    };
    let s = |k: &str| q.get(k).and_then(Value::as_str).unwrap_or("");
    let b = |k: &str| q.get(k).and_then(Value::as_bool).unwrap_or(false);
    let method = s("quant_method");
    ensure!(
        method == "bitsandbytes" && b("load_in_4bit") && s("bnb_4bit_quant_type") == "nf4",
        "{}: config.json's quantization_config ({}) is not supported: only bitsandbytes 4-bit NF4 \
         checkpoints load (or give the unquantized model with --quantization nf4)",
        dir.join("config.json").display(),
        if method.is_empty() {
            "no quant_method"
        } else {
            method
        }
    );
    ensure!(
        b("bnb_4bit_use_double_quant"),
        "{}: only NF4 with bnb_4bit_use_double_quant = true is supported",
        dir.join("config.json").display()
    );
    Ok(true)
}

impl Model {
    /// Loads `files` into a model built with NF4 linears: dense vars as `weights::load_into`
    /// does, each linear quantized from its dense tensor or assembled from its stored NF4 parts.
    pub(super) fn load_nf4(&mut self, files: &[PathBuf], skip: &[&str]) -> Result<()> {
        let kind = self.net.kind;
        let device = self.device();
        let linears: HashMap<String, [i64; 2]> = self
            .net
            .linears()
            .into_iter()
            .map(|(n, l)| (format!("{n}.weight"), l.shape))
            .collect();
        let mut ready: HashMap<String, Nf4Weight> = HashMap::new();
        let mut parts: HashMap<String, Tensor> = HashMap::new();
        let mut claim = |name: &str, t: Tensor| -> Result<bool> {
            if let Some(shape) = linears.get(name) {
                if t.is_floating_point() {
                    ensure!(
                        t.size() == shape,
                        "shape {:?}, the model config needs {shape:?}",
                        t.size()
                    );
                    let w = Nf4Weight::quantize(&t.f_to_kind(kind)?);
                    ready.insert(name.to_string(), w);
                } else {
                    parts.insert(name.to_string(), t);
                }
                return Ok(true);
            }
            let part_of = |n: &str| linears.contains_key(n);
            if quant_io::is_state_tensor(name) && name_prefixes(name).any(part_of) {
                parts.insert(name.to_string(), t);
                return Ok(true);
            }
            Ok(false)
        };
        let is_adapter = |n: &str| n.contains(".lora_A.") || n.contains(".lora_B.");
        weights::load_claiming(&self.vs.variables(), files, is_adapter, skip, &mut claim)?;
        let dir = files
            .first()
            .and_then(|f| f.parent())
            .unwrap_or(Path::new("."));
        for (name, lin) in self.net.linears_mut() {
            let key = format!("{name}.weight");
            let w = match ready.remove(&key) {
                Some(w) => w,
                None if !parts.contains_key(&key) => {
                    bail!("{}: missing tensor {key}", dir.display())
                }
                None => quant_io::read_nf4(&parts, &key)
                    .with_context(|| format!("{}: a 4-bit checkpoint", dir.display()))?,
            };
            ensure!(
                w.shape == lin.shape,
                "{}: {key} holds a {:?} weight, the model config needs {:?}",
                dir.display(),
                w.shape,
                lin.shape
            );
            lin.weight = Weight::Nf4(w.to_device(device));
        }
        Ok(())
    }

    /// Draws the NF4 linears of a random model in name order with the other parameters (called
    /// by `init`): `normal(0, 0.02)` in the model dtype, quantized, the dense draw dropped.
    pub(super) fn init_nf4(&mut self, name: &str) {
        let kind = self.net.kind;
        let device = self.device();
        for (n, lin) in self.net.linears_mut() {
            if format!("{n}.weight") == name {
                let mut t = Tensor::empty(lin.shape, (kind, device));
                let _ = t.normal_(0.0, 0.02);
                lin.weight = Weight::Nf4(Nf4Weight::quantize(&t));
                return;
            }
        }
        unreachable!("{name} is no linear");
    }

    /// The names of the linears still waiting for their NF4 weight.
    pub(super) fn pending_linears(&self) -> Vec<String> {
        self.net
            .linears()
            .into_iter()
            .filter(|(_, l)| matches!(l.weight, Weight::Pending))
            .map(|(n, _)| format!("{n}.weight"))
            .collect()
    }

    /// The base model in transformers' 4-bit form: NF4 linears as their six tensors each, the
    /// rest (not LoRA) as stored; sorted by name.
    pub fn nf4_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out: Vec<(String, Tensor)> = self.base_vars().collect();
        for (n, l) in self.net.linears() {
            let Weight::Nf4(w) = &l.weight else {
                bail!("{n} is not quantized: build the model with quantization nf4");
            };
            out.extend(quant_io::nf4_tensors(&format!("{n}.weight"), w)?);
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Whether the decoder's linears are NF4.
    pub fn is_nf4(&self) -> bool {
        self.net
            .linears()
            .first()
            .is_some_and(|(_, l)| !matches!(l.weight, Weight::Dense(_)))
    }

    /// Bytes of the NF4 weights (codes and absmax), for memory reports.
    pub fn nf4_bytes(&self) -> i64 {
        let size = |t: &Tensor| (t.numel() * t.kind().elt_size_in_bytes()) as i64;
        self.net
            .linears()
            .iter()
            .map(|(_, l)| match &l.weight {
                Weight::Nf4(w) => size(&w.packed) + size(&w.absmax) + size(&w.nested_absmax),
                _ => 0,
            })
            .sum()
    }
}

/// `a.b.c.d` -> `a.b.c`, `a.b`, `a`: the names a state tensor may belong to.
fn name_prefixes(name: &str) -> impl Iterator<Item = &str> {
    name.rmatch_indices('.').map(move |(i, _)| &name[..i])
}
