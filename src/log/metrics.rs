//! `metrics.jsonl` in the output directory: one JSON object per logged step, e.g.
//! `{"step":10,"epoch":0.1,"train/loss":1.9,"train/grad_norm":0.8,"train/learning_rate":9e-5}`,
//! or an eval line with `eval/loss`. Each line is written with one `write` and flushed, so a
//! crash leaves at most a torn last line, which `resume` drops.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

pub const FILE_NAME: &str = "metrics.jsonl";

#[derive(Debug)]
pub struct MetricsLog {
    file: File,
    path: PathBuf,
}

impl MetricsLog {
    /// Starts a fresh `out_dir/metrics.jsonl`, replacing any previous one.
    pub fn create(out_dir: &Path) -> Result<MetricsLog> {
        let path = out_dir.join(FILE_NAME);
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(MetricsLog { file, path })
    }

    /// Reopens `out_dir/metrics.jsonl` for appending after resuming at `resume_step`: lines of
    /// later steps (logged after the checkpoint, to be logged again) and a torn last line are
    /// dropped first, through a temporary file and a rename.
    pub fn resume(out_dir: &Path, resume_step: i64) -> Result<MetricsLog> {
        let path = out_dir.join(FILE_NAME);
        if !path.exists() {
            return MetricsLog::create(out_dir);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let lines: Vec<&str> = text.lines().collect();
        let mut kept = String::new();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let step = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v.get("step").and_then(Value::as_i64));
            match step {
                Some(s) if s <= resume_step => {
                    kept.push_str(line);
                    kept.push('\n');
                }
                Some(_) => {}
                None if i + 1 == lines.len() => {} // torn by a crash mid-write
                None => bail!(
                    "{}:{}: not a JSON object with an integer \"step\"",
                    path.display(),
                    i + 1
                ),
            }
        }
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, kept).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(MetricsLog { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `{"step": step, "<key>": value, ...}` in the given key order. Non-finite values
    /// are written as `null` (JSON has no NaN).
    pub fn log(&mut self, step: i64, values: &[(&str, f64)]) -> Result<()> {
        let mut row = Map::new();
        row.insert("step".into(), Value::from(step));
        for (k, v) in values {
            row.insert(
                (*k).to_string(),
                serde_json::Number::from_f64(*v)
                    .map(Value::Number)
                    .unwrap_or(Value::Null),
            );
        }
        self.append(&Value::Object(row))
    }

    /// Appends one JSON object as a line and flushes it.
    pub fn append(&mut self, row: &Value) -> Result<()> {
        if !row.get("step").is_some_and(Value::is_i64) {
            bail!("a metrics row needs an integer \"step\": {row}");
        }
        let mut line = serde_json::to_string(row).context("encoding a metrics row")?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .with_context(|| format!("appending to {}", self.path.display()))
    }
}

/// Reads `(step, value)` pairs of `key` from a metrics file, skipping rows without a number.
pub fn series(metrics_jsonl: &Path, key: &str) -> Result<Vec<(i64, f64)>> {
    let text = std::fs::read_to_string(metrics_jsonl)
        .with_context(|| format!("reading {}", metrics_jsonl.display()))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let (Some(step), Some(x)) = (
            v.get("step").and_then(Value::as_i64),
            v.get(key).and_then(Value::as_f64),
        ) {
            out.push((step, x));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_drops_later_steps_and_a_torn_tail() {
        let dir = std::env::temp_dir().join(format!("metrics-test-{}", std::process::id()));
        let mut m = MetricsLog::create(&dir).unwrap();
        for step in [10, 20, 30] {
            m.log(
                step,
                &[
                    ("epoch", step as f64 / 100.0),
                    ("train/loss", 2.0 - step as f64 / 100.0),
                ],
            )
            .unwrap();
        }
        m.log(30, &[("eval/loss", f64::NAN)]).unwrap();
        drop(m);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(FILE_NAME))
            .unwrap();
        f.write_all(b"{\"step\":40,\"train/lo").unwrap();
        let mut m = MetricsLog::resume(&dir, 20).unwrap();
        m.log(30, &[("train/loss", 1.5)]).unwrap();
        let text = std::fs::read_to_string(m.path()).unwrap();
        assert_eq!(
            text,
            "{\"step\":10,\"epoch\":0.1,\"train/loss\":1.9}\n{\"step\":20,\"epoch\":0.2,\"train/loss\":1.8}\n{\"step\":30,\"train/loss\":1.5}\n"
        );
        assert_eq!(
            series(m.path(), "train/loss").unwrap(),
            vec![(10, 1.9), (20, 1.8), (30, 1.5)]
        );
        std::fs::write(
            dir.join(FILE_NAME),
            "{\"step\":1}\nnot json\n{\"step\":2}\n",
        )
        .unwrap();
        assert!(MetricsLog::resume(&dir, 5)
            .unwrap_err()
            .to_string()
            .contains(":2:"));
        assert!(m.append(&serde_json::json!({"loss": 1})).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
