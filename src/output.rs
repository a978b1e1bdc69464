//! Output directories that never destroy what this program did not create. Each command that
//! writes a directory (train's run, merge's model, split's files) checks it first: a new or empty
//! directory is used; one holding this program's own earlier output of the same kind (its marker
//! file; train also recognises the files of runs from earlier versions) is replaced only when asked (`--overwrite`);
//! anything else, and any output inside or above an input, is an error naming the path.
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The marker file, holding the kind of output (`train`, `merge`).
pub const MARKER: &str = ".qwen3-sft";

/// `path` made absolute without requiring it to exist (its existing ancestor canonicalised).
fn absolute(path: &Path) -> PathBuf {
    let mut tail = vec![];
    let mut p = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    loop {
        if let Ok(c) = p.canonicalize() {
            return tail.iter().rev().fold(c, |acc: PathBuf, t| acc.join(t));
        }
        match (p.file_name().map(|n| n.to_os_string()), p.parent()) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                p = parent.to_path_buf();
            }
            _ => return p,
        }
    }
}

/// Refuses an output that is an input, lies inside one, or contains one.
pub fn check_apart(out: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    let o = absolute(out);
    for (what, input) in inputs {
        let i = absolute(input);
        if o == i || i.starts_with(&o) || o.starts_with(&i) {
            bail!(
                "output {} would overwrite {what} {} (it is the same, inside it or contains it): choose another output",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// The kind recorded in `dir`'s marker, if any.
pub fn marker(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(MARKER)).ok()?;
    Some(text.trim().to_string())
}

/// Writes `dir`'s marker.
pub fn mark(dir: &Path, kind: &str) -> Result<()> {
    let p = dir.join(MARKER);
    std::fs::write(&p, format!("{kind}\n")).with_context(|| format!("cannot write {}", p.display()))
}

/// Checks `out` for a command writing output of `kind`: a new or empty directory is fine; one
/// holding this program's earlier output of that kind (its marker) only with `overwrite`.
pub fn check_dir(out: &Path, kind: &str, overwrite: bool) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        bail!("output {} exists and is not a directory", out.display());
    }
    let empty = std::fs::read_dir(out)
        .with_context(|| format!("cannot read {}", out.display()))?
        .next()
        .is_none();
    if empty {
        return Ok(());
    }
    let ours = marker(out).is_some_and(|k| k == kind);
    match (ours, overwrite) {
        (true, true) => Ok(()),
        (true, false) => bail!(
            "output {} holds an earlier {kind} output of qwen3-sft: pass --overwrite to replace it, or choose another directory",
            out.display()
        ),
        (false, _) => bail!(
            "output {} is not empty and was not written by qwen3-sft {kind}: choose a new or empty directory",
            out.display()
        ),
    }
}

/// Writes the file `out` under a temporary sibling name, synced, then renames it into place: a
/// crash leaves the old file or the new one, never half of one. An existing `out` is replaced
/// only with `overwrite`.
pub fn write_file(out: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    write_file_with(out, overwrite, |w| Ok(w.write_all(bytes)?))
}

/// [`write_file`] with the contents streamed by `write` (a buffered writer on the temporary
/// file); an error from it removes the temporary file and leaves `out` as it was.
pub fn write_file_with(
    out: &Path,
    overwrite: bool,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    if out.exists() && !overwrite {
        bail!(
            "{} exists: pass --overwrite to replace it, or choose another path",
            out.display()
        );
    }
    let name = out.file_name().context("output path has no file name")?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> Result<()> {
        let f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 22, f);
        write(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, out)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("cannot write {}", out.display()))
}
