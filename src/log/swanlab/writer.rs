//! The background thread that turns logging calls into run-file records, mirroring what the
//! SDK's `BackgroundConsumer` (`sdk/internal/run/components/consumer/`) and `CorePython`
//! (`sdk/internal/core_python/core.py`) do together: auto-created columns before a key's first
//! value, per-key step de-duplication (`core_python/metrics`), text media files named
//! `{step:03d}-{sha256[:8]}.txt`, numbered console lines. Every drained batch is flushed to the
//! OS before the thread waits again, so a killed process loses at most the batch in flight.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use prost::Message;
use sha2::{Digest, Sha256};

use super::proto::*;
use super::store::StoreWriter;
use super::time;
use super::upload::{UploadOutcome, Uploader};
use super::FinishState;

const MAX_STEP: i64 = 1 << 48;
const MAX_KEY_CHARS: usize = 512;
const MAX_LINE_CHARS: usize = 1024;
const MAX_MEDIA_BYTES: usize = 10 * 1024 * 1024;
const MAX_MEDIA_ITEMS: usize = 108;
const SYSTEM_PREFIX: &str = "__swanlab__.";

pub(crate) enum Msg {
    Scalars {
        step: i64,
        ts: Timestamp,
        values: Vec<(String, f64)>,
    },
    Texts {
        key: String,
        step: i64,
        ts: Timestamp,
        items: Vec<String>,
    },
    Console {
        line: String,
        ts: Timestamp,
    },
    Finish {
        state: FinishState,
        ts: Timestamp,
        wait: Duration,
        done: Sender<FinishOutcome>,
    },
}

/// What `finish` learned: the upload result and, if the run file could not be fully written, why.
#[derive(Debug, Default)]
pub(crate) struct FinishOutcome {
    pub upload: UploadOutcome,
    pub file_error: Option<String>,
}

struct Column {
    kind: ColumnType,
    steps: HashSet<i64>,
}

pub(crate) struct Writer {
    store: StoreWriter<BufWriter<File>>,
    media_dir: PathBuf,
    counter: i64,
    epoch: i64,
    columns: HashMap<String, Column>,
    warned: HashSet<String>,
    io_error: Option<String>,
    last_sync: Instant,
    pub(crate) uploader: Option<Uploader>,
}

/// `builder.build_auto_column`'s section with the default `section_rule` 0: the first path part.
fn section_of(key: &str) -> String {
    match key.split_once('/') {
        Some((head, _)) => head.to_string(),
        None => String::new(),
    }
}

fn record(num: i64, kind: RecordType) -> Record {
    Record {
        num,
        timestamp: Some(time::now()),
        record_type: Some(kind),
    }
}

impl Writer {
    /// Opens `run-{id}.swanlab` in `dir` and writes the start and config records synchronously,
    /// so that a run directory that exists always starts with a readable start record.
    pub(crate) fn create(
        dir: &Path,
        id: &str,
        start: StartRecord,
        config_yaml: &Path,
    ) -> Result<(Writer, Vec<Record>)> {
        let path = dir.join(format!("run-{id}.swanlab"));
        let store = StoreWriter::create(&path)?;
        let mut w = Writer {
            store,
            media_dir: dir.join("media"),
            counter: 0,
            epoch: 0,
            columns: HashMap::new(),
            warned: HashSet::new(),
            io_error: None,
            last_sync: Instant::now(),
            uploader: None,
        };
        let save = SaveRecord {
            name: "config".into(),
            source_path: config_yaml.to_string_lossy().into_owned(),
            r#type: SaveType::Config as i32,
            ..Default::default()
        };
        let first = vec![
            record(START_RECORD_NUM, RecordType::Start(start)),
            record(CONFIG_RECORD_NUM, RecordType::Save(save)),
        ];
        for r in &first {
            w.store
                .write(&r.encode_to_vec())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        w.store
            .flush(true)
            .with_context(|| format!("flushing {}", path.display()))?;
        Ok((w, first))
    }

    /// The thread body: drains the channel in batches until `Finish` (or until every sender is
    /// gone, which only happens if `Run` was leaked; the file then ends without a finish record,
    /// which SwanLab reads as a crashed run).
    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let first = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return self.flush(&mut Vec::new()),
            };
            let mut batch = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                if let Msg::Finish {
                    state,
                    ts,
                    wait,
                    done,
                } = msg
                {
                    self.flush(&mut batch);
                    let outcome = self.finish(state, ts, wait);
                    let _ = done.send(outcome);
                    return;
                }
                self.handle(msg, &mut batch);
                if batch.len() < 10_000 {
                    next = rx.try_recv().ok();
                }
            }
            self.flush(&mut batch);
        }
    }

    fn io_failed(&mut self, what: String) {
        if self.io_error.is_none() {
            eprintln!("swanlab: {what}; later records may be lost");
            self.io_error = Some(what);
        }
    }

    fn warn_once(&mut self, what: String) {
        if self.warned.insert(what.clone()) {
            eprintln!("swanlab: {what}");
        }
    }

    fn write(&mut self, r: Record, batch: &mut Vec<Record>) {
        if let Err(e) = self.store.write(&r.encode_to_vec()) {
            self.io_failed(format!("writing the run file failed: {e}"));
        }
        batch.push(r);
    }

    fn flush(&mut self, batch: &mut Vec<Record>) {
        // fsync at most once a second: cheap enough, and bounds what a power loss can take.
        let durable = self.last_sync.elapsed() >= Duration::from_secs(1);
        if let Err(e) = self.store.flush(durable) {
            self.io_failed(format!("{e:#}"));
        }
        if durable {
            self.last_sync = Instant::now();
        }
        if let Some(up) = &self.uploader {
            up.push(std::mem::take(batch));
        }
        batch.clear();
    }

    /// `fmt.validate_key`: trims ` \t\n\r./` at both ends, caps the length, rejects control
    /// characters and the SDK's reserved system prefix.
    fn clean_key(&mut self, key: &str) -> Option<String> {
        let k: String = key
            .trim_matches(|c| " \t\n\r./".contains(c))
            .chars()
            .take(MAX_KEY_CHARS)
            .collect();
        if k.is_empty() || k.chars().any(char::is_control) || k.starts_with(SYSTEM_PREFIX) {
            self.warn_once(format!("metric key {key:?} is invalid and is skipped"));
            return None;
        }
        Some(k)
    }

    /// Checks type and step for `key`, declaring its column first when new.
    fn accept(&mut self, key: &str, kind: ColumnType, step: i64, batch: &mut Vec<Record>) -> bool {
        if !(0..=MAX_STEP).contains(&step) {
            self.warn_once(format!(
                "step {step} of '{key}' is outside 0..=2^48 and is skipped"
            ));
            return false;
        }
        if !self.columns.contains_key(key) {
            let col = ColumnRecord {
                column_class: ColumnClass::Custom as i32,
                column_type: kind as i32,
                column_key: key.to_string(),
                section_name: section_of(key),
                section_type: SectionType::Public as i32,
                ..Default::default()
            };
            self.counter += 1;
            self.write(record(self.counter, RecordType::Column(col)), batch);
            self.columns.insert(
                key.to_string(),
                Column {
                    kind,
                    steps: HashSet::new(),
                },
            );
        }
        let col = self.columns.get_mut(key).expect("column was just declared");
        if col.kind != kind {
            let had = col.kind;
            self.warn_once(format!(
                "'{key}' was logged as {had:?} and cannot take {kind:?} values; skipped"
            ));
            return false;
        }
        // As the SDK: a repeated step for a key keeps its first value.
        col.steps.insert(step)
    }

    fn handle(&mut self, msg: Msg, batch: &mut Vec<Record>) {
        match msg {
            Msg::Scalars { step, ts, values } => {
                for (key, value) in values {
                    let Some(key) = self.clean_key(&key) else {
                        continue;
                    };
                    if !self.accept(&key, ColumnType::Scalar, step, batch) {
                        continue;
                    }
                    let scalar = ScalarRecord {
                        key,
                        step,
                        r#type: ColumnType::Scalar as i32,
                        timestamp: Some(ts),
                        value: Some(ScalarValue { number: value }),
                    };
                    self.counter += 1;
                    self.write(record(self.counter, RecordType::Scalar(scalar)), batch);
                }
            }
            Msg::Texts {
                key,
                step,
                ts,
                items,
            } => {
                let Some(key) = self.clean_key(&key) else {
                    return;
                };
                if items.is_empty() || !self.accept(&key, ColumnType::Text, step, batch) {
                    return;
                }
                let items = self.text_items(&key, step, &items);
                if items.is_empty() {
                    return;
                }
                let media = MediaRecord {
                    key,
                    step,
                    r#type: ColumnType::Text as i32,
                    timestamp: Some(ts),
                    value: Some(MediaValue { items }),
                };
                self.counter += 1;
                self.write(record(self.counter, RecordType::Media(media)), batch);
            }
            Msg::Console { line, ts } => {
                for l in line.split('\n') {
                    let l: String = l
                        .strip_suffix('\r')
                        .unwrap_or(l)
                        .chars()
                        .take(MAX_LINE_CHARS)
                        .collect();
                    self.epoch += 1;
                    self.counter += 1;
                    let log = LogRecord {
                        line: l,
                        level: LogLevel::Info as i32,
                        timestamp: Some(ts),
                        epoch: self.epoch,
                    };
                    self.write(record(self.counter, RecordType::Log(log)), batch);
                }
            }
            Msg::Finish { .. } => unreachable!("handled by run()"),
        }
    }

    /// `transforms/text.Text.transform`: one file per text under `media/text/`.
    fn text_items(&mut self, key: &str, step: i64, texts: &[String]) -> Vec<MediaItem> {
        let mut items = Vec::new();
        for text in texts.iter().take(MAX_MEDIA_ITEMS) {
            let bytes = text.as_bytes();
            if bytes.len() > MAX_MEDIA_BYTES {
                self.warn_once(format!(
                    "a text of '{key}' at step {step} exceeds 10 MB and is dropped"
                ));
                continue;
            }
            let sha = format!("{:x}", Sha256::digest(bytes));
            let filename = format!("{step:03}-{}.txt", &sha[..8]);
            let dir = self.media_dir.join("text");
            let written = std::fs::create_dir_all(&dir)
                .and_then(|_| super::write_atomic(&dir.join(&filename), bytes))
                .with_context(|| format!("writing {}", dir.join(&filename).display()));
            if let Err(e) = written {
                self.warn_once(format!("{e:#}"));
                continue;
            }
            items.push(MediaItem {
                filename,
                sha256: sha,
                size: bytes.len() as i64,
                ..Default::default()
            });
        }
        items
    }

    fn finish(mut self, state: FinishState, ts: Timestamp, wait: Duration) -> FinishOutcome {
        let (state, error) = match state {
            FinishState::Finished => (RunState::Finished, String::new()),
            FinishState::Crashed(e) if e.is_empty() => (RunState::Crashed, "unknown".to_string()),
            FinishState::Crashed(e) => (RunState::Crashed, e),
            FinishState::Aborted => (RunState::Aborted, "KeyboardInterrupt by user".to_string()),
        };
        let fin = FinishRecord {
            state: state as i32,
            error,
            finished_at: Some(ts),
        };
        let mut sink = Vec::new();
        self.write(
            record(FINISH_RECORD_NUM, RecordType::Finish(fin.clone())),
            &mut sink,
        );
        let padded = self.store.pad_block_tail();
        let flushed = self.store.flush(true);
        if let Err(e) = padded.map_err(anyhow::Error::from).and(flushed) {
            self.io_failed(format!("closing the run file failed: {e:#}"));
        }
        let upload = match self.uploader.take() {
            Some(up) => up.finish(fin, wait),
            None => UploadOutcome::default(),
        };
        FinishOutcome {
            upload,
            file_error: self.io_error.take(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sections_use_the_first_path_part() {
        assert_eq!(super::section_of("train/loss"), "train");
        assert_eq!(super::section_of("a/b/c"), "a");
        assert_eq!(super::section_of("Prediction"), "");
    }
}
