//! The split of `qwen3-sft split`: the seed's `medical_dataset_splitter.py` (`--dataset_name --output_dir
//! --train_ratio --seed`). Like the reference (`tests/reference/split_reference.py`) it does
//! `random.seed(seed); random.shuffle(rows)`, takes the first `int(len(rows) * train_ratio)` rows
//! as `train.jsonl` and the rest as `val.jsonl`, each row written as
//! `json.dumps(row, ensure_ascii=False)` plus a newline, so both files equal Python's byte for byte.
//! Both files are written under temporary names and renamed only when both are complete.

use super::pyjson;
use super::pyrandom::PyRandom;
use super::rows::Row;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// `random.seed(seed); random.shuffle(rows)`, then the first `int(len * ratio)` rows are train.
pub fn split_rows(mut rows: Vec<Row>, train_ratio: f64, seed: i64) -> Result<(Vec<Row>, Vec<Row>)> {
    if !(train_ratio > 0.0 && train_ratio < 1.0) {
        bail!("--train_ratio {train_ratio} must be strictly between 0 and 1");
    }
    // Python's random.seed(int) uses abs(seed).
    PyRandom::new(seed.unsigned_abs()).shuffle(&mut rows);
    // Python: int(len(data) * train_ratio), a float product truncated toward zero.
    let n_train = (rows.len() as f64 * train_ratio) as usize;
    if n_train == 0 || n_train == rows.len() {
        bail!(
            "{} rows with --train_ratio {train_ratio} leave {} empty; use more rows or another ratio",
            rows.len(),
            if n_train == 0 { "train" } else { "validation" }
        );
    }
    let val = rows.split_off(n_train);
    Ok((rows, val))
}

/// One row as the reference writes it: `json.dump(row, f, ensure_ascii=False); f.write("\n")`.
pub fn row_line(row: &Row) -> String {
    let mut s = pyjson::map_to_string(row.fields());
    s.push('\n');
    s
}

fn write_rows(path: &Path, rows: &[Row]) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::new(file);
    for r in rows {
        w.write_all(row_line(r).as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let file = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `train.jsonl` and `val.jsonl` into `dir`: both under temporary names first, renamed only
/// once both are complete, so an error never leaves a half-written or mismatched pair.
pub fn write_split(dir: &Path, train: &[Row], val: &[Row]) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pid = std::process::id();
    let targets = [dir.join("train.jsonl"), dir.join("val.jsonl")];
    let temps = [
        dir.join(format!(".train.jsonl.{pid}.tmp")),
        dir.join(format!(".val.jsonl.{pid}.tmp")),
    ];
    let written = write_rows(&temps[0], train).and_then(|_| write_rows(&temps[1], val));
    if let Err(e) = written {
        for t in &temps {
            let _ = std::fs::remove_file(t);
        }
        return Err(e);
    }
    for (t, d) in temps.iter().zip(&targets) {
        std::fs::rename(t, d)
            .with_context(|| format!("cannot rename {} to {}", t.display(), d.display()))?;
    }
    let [train_path, val_path] = targets;
    Ok((train_path, val_path))
}
