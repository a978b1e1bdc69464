//! Safetensors in and out, in the HF layout (mirrors `PreTrainedModel.save_pretrained` /
//! `from_pretrained` for `model.safetensors` and sharded `model.safetensors.index.json`).
//!
//! Loading is strict: every missing, unexpected or wrongly shaped tensor is reported by name.
//! Saving streams one tensor at a time into a temporary directory that is renamed into place, so
//! a crash never leaves a half-written model and no second copy of the model is held in memory.
use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Files copied next to a saved model when the source directory has them.
pub const SIDE_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
];

/// Largest shard written, as transformers' default `max_shard_size="5GB"`.
pub const MAX_SHARD_BYTES: u64 = 5_000_000_000;

fn kind_of(d: Dtype) -> Option<Kind> {
    Some(match d {
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

fn dtype_name(k: Kind) -> Result<&'static str> {
    Ok(match k {
        Kind::BFloat16 => "BF16",
        Kind::Half => "F16",
        Kind::Float => "F32",
        Kind::Double => "F64",
        Kind::Int64 => "I64",
        Kind::Int => "I32",
        Kind::Uint8 => "U8",
        Kind::Bool => "BOOL",
        k => bail!("cannot store {k:?} in safetensors"),
    })
}

/// The safetensors files of a model directory: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json` (each checked to exist).
pub fn model_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("cannot read {}", index.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", index.display()))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .with_context(|| format!("{}: no `weight_map` object", index.display()))?;
        let files: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
        let mut out = vec![];
        for f in files {
            let p = dir.join(f);
            if !p.exists() {
                bail!(
                    "{}: shard {} listed in model.safetensors.index.json is missing",
                    p.display(),
                    f
                );
            }
            out.push(p);
        }
        return Ok(out);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    bail!(
        "{}: no model.safetensors or model.safetensors.index.json (is this an HF model directory?)",
        dir.display()
    )
}

/// The file, memory-mapped for reading.
fn map(path: &Path) -> Result<memmap2::Mmap> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: the file is only read; a concurrent writer truncating it is outside our contract.
    unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))
}

/// Calls `f(name, tensor)` for every tensor in the file; tensors are CPU copies in stored dtype.
pub fn for_each_tensor(path: &Path, mut f: impl FnMut(&str, Tensor) -> Result<()>) -> Result<()> {
    let mmap = map(path)?;
    let st = SafeTensors::deserialize(&mmap).map_err(|e| {
        anyhow::anyhow!(
            "{}: corrupted or truncated safetensors file ({e:?}); download it again",
            path.display()
        )
    })?;
    for (name, view) in st.tensors() {
        let kind = kind_of(view.dtype()).with_context(|| {
            format!(
                "{}: tensor {name} has unsupported dtype {:?}",
                path.display(),
                view.dtype()
            )
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)
            .with_context(|| format!("{}: cannot read tensor {name}", path.display()))?;
        f(&name, t)?;
    }
    Ok(())
}

/// The `__metadata__` of a safetensors file (empty when it has none).
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let mmap = map(path)?;
    let (_, meta) = SafeTensors::read_metadata(&mmap)
        .map_err(|e| anyhow::anyhow!("{}: corrupted safetensors header ({e:?})", path.display()))?;
    Ok(meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// Copies a checkpoint into `vars` (HF names -> model tensors). Names in `optional` may be absent
/// from the checkpoint; `skip` names are accepted in the checkpoint and ignored (a tied head).
pub fn load_into(
    vars: &HashMap<String, Tensor>,
    files: &[PathBuf],
    optional: impl Fn(&str) -> bool,
    skip: &[&str],
) -> Result<()> {
    load_claiming(vars, files, optional, skip, &mut |_, _| Ok(false))
}

/// `load_into`, offering every tensor that is no var to `claim` first (an NF4 model's linear
/// weights and their quantization state); what it declines is unexpected.
pub fn load_claiming(
    vars: &HashMap<String, Tensor>,
    files: &[PathBuf],
    optional: impl Fn(&str) -> bool,
    skip: &[&str],
    claim: &mut dyn FnMut(&str, Tensor) -> Result<bool>,
) -> Result<()> {
    let mut seen = BTreeSet::new();
    let (mut unexpected, mut bad_shape) = (vec![], vec![]);
    for path in files {
        for_each_tensor(path, |name, t| {
            if skip.contains(&name) {
                return Ok(());
            }
            match vars.get(name) {
                None => {
                    let claimed = claim(name, t)
                        .with_context(|| format!("{}: tensor {name}", path.display()))?;
                    if !claimed {
                        unexpected.push(name.to_string());
                    }
                }
                Some(var) if var.size() != t.size() => bad_shape.push(format!(
                    "{name} (file {:?}, model {:?})",
                    t.size(),
                    var.size()
                )),
                Some(_) if !t.is_floating_point() => bail!(
                    "{}: tensor {name} is {:?}, not a floating-point weight",
                    path.display(),
                    t.kind()
                ),
                Some(var) => {
                    tch::no_grad(|| var.shallow_clone().f_copy_(&t))
                        .with_context(|| format!("{}: cannot copy {name}", path.display()))?;
                    seen.insert(name.to_string());
                }
            }
            Ok(())
        })?;
    }
    let mut missing: Vec<&String> = vars
        .keys()
        .filter(|n| !seen.contains(*n) && !optional(n))
        .collect();
    missing.sort();
    let dir = files
        .first()
        .and_then(|f| f.parent())
        .unwrap_or(Path::new("."));
    let mut errs = vec![];
    if !missing.is_empty() {
        errs.push(format!("missing tensors: {}", join_some(&missing)));
    }
    if !unexpected.is_empty() {
        unexpected.sort();
        errs.push(format!("unexpected tensors: {}", join_some(&unexpected)));
    }
    if !bad_shape.is_empty() {
        errs.push(format!("wrong shapes: {}", join_some(&bad_shape)));
    }
    if !errs.is_empty() {
        bail!(
            "{}: checkpoint does not match the model config: {}",
            dir.display(),
            errs.join("; ")
        );
    }
    Ok(())
}

fn join_some<T: std::fmt::Display>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().take(12).map(|s| s.to_string()).collect();
    let more = items.len().saturating_sub(12);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Writes one safetensors file, streaming tensor by tensor (header first, with offsets).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!(metadata));
    let mut offset = 0u64;
    for (name, t) in tensors {
        let bytes = (t.numel() * t.kind().elt_size_in_bytes()) as u64;
        header.insert(
            name.clone(),
            json!({"dtype": dtype_name(t.kind())?, "shape": t.size(), "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut h = serde_json::to_vec(&header)?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 22, file);
    w.write_all(&(h.len() as u64).to_le_bytes())?;
    w.write_all(&h)?;
    for (name, t) in tensors {
        let t = t.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
        let n = t.numel() * t.kind().elt_size_in_bytes();
        let mut buf = vec![0u8; n];
        t.f_copy_data_u8(&mut buf, t.numel())
            .with_context(|| format!("cannot read tensor {name}"))?;
        w.write_all(&buf)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(())
}

/// Writes `tensors` as an HF model into `tmp_dir`: one `model.safetensors`, or 5 GB shards with
/// `model.safetensors.index.json` as transformers names them.
pub fn write_model_files(tmp_dir: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    write_model_files_sharded(tmp_dir, tensors, MAX_SHARD_BYTES)
}

/// `write_model_files` with a given shard size (tests use small ones).
pub fn write_model_files_sharded(
    tmp_dir: &Path,
    tensors: &[(String, Tensor)],
    max_shard: u64,
) -> Result<()> {
    let meta: BTreeMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let size = |t: &Tensor| (t.numel() * t.kind().elt_size_in_bytes()) as u64;
    let mut shards: Vec<Vec<(String, Tensor)>> = vec![vec![]];
    let mut cur = 0u64;
    for (n, t) in tensors {
        if cur > 0 && cur + size(t) > max_shard {
            shards.push(vec![]);
            cur = 0;
        }
        cur += size(t);
        shards
            .last_mut()
            .unwrap()
            .push((n.clone(), t.shallow_clone()));
    }
    if shards.len() == 1 {
        return write_safetensors(&tmp_dir.join("model.safetensors"), &shards[0], &meta);
    }
    let total: u64 = tensors.iter().map(|(_, t)| size(t)).sum();
    let mut weight_map = BTreeMap::new();
    let n = shards.len();
    for (i, shard) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{:05}.safetensors", i + 1, n);
        write_safetensors(&tmp_dir.join(&file), shard, &meta)?;
        for (name, _) in shard {
            weight_map.insert(name.clone(), file.clone());
        }
    }
    let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    std::fs::write(
        tmp_dir.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&index)?,
    )?;
    Ok(())
}

/// Builds `out` through `write(tmp)` in a sibling temporary directory, then renames it into place
/// (an existing `out` is replaced only after the new one is complete).
pub fn write_dir_atomically(out: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = out
        .file_name()
        .context("output path has no file name")?
        .to_string_lossy()
        .to_string();
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    if out.exists() {
        std::fs::rename(out, &old)
            .with_context(|| format!("cannot move aside {}", out.display()))?;
    }
    std::fs::rename(&tmp, out)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Copies the tokenizer and generation files that exist in `src` into `dst`.
pub fn copy_side_files(src: &Path, dst: &Path) -> Result<()> {
    for f in SIDE_FILES {
        let p = src.join(f);
        if p.exists() {
            std::fs::copy(&p, dst.join(f))
                .with_context(|| format!("cannot copy {}", p.display()))?;
        }
    }
    Ok(())
}

pub fn dtype_str(k: Kind) -> &'static str {
    match k {
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        _ => "float32",
    }
}
