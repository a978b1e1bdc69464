//! Reading a data file (JSON Lines, or one JSON array) into rows that keep every original field in
//! its original order, each checked against the file's layout (`data::format`): three string
//! columns (`question`, `think`, `answer` unless `[data] columns` names others) or a `messages`
//! conversation. This is what the reference does with `json.loads` per line before `process_func`
//! reads its columns; here a bad row is an error naming the file, the line and the field (the
//! file's name for it, and the config key that mapped it) unless the caller asked to skip such rows.

use super::chat::Message;
pub use super::format::RowError;
use super::format::{kind, Columns, Format, RowFormat, Sample};
use anyhow::{bail, Context, Result};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::path::Path;

/// One data row: all of its fields (key order kept) and what they hold, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    fields: Map<String, Value>,
    line: usize,
    sample: Sample,
}

/// The layout a file was found to have (`Format::Auto` resolved).
#[derive(Clone, Copy, Debug)]
enum Layout<'a> {
    Columns(&'a Columns),
    Messages,
}

impl Row {
    /// Checks the row's fields for `layout`; the error says which field is wrong and how.
    fn checked(value: Value, line: usize, layout: Layout) -> std::result::Result<Row, RowError> {
        let fields = match value {
            Value::Object(m) => m,
            other => return Err(RowError::NotObject(kind(&other))),
        };
        let sample = match layout {
            Layout::Messages => Sample::Messages(super::messages::conversation(&fields)?),
            Layout::Columns(c) => columns(&fields, c)?,
        };
        Ok(Row {
            fields,
            line,
            sample,
        })
    }

    /// What the row holds.
    pub fn sample(&self) -> &Sample {
        &self.sample
    }

    /// The question shown beside a prediction: a conversation's last user turn before its last
    /// assistant turn (empty when there is none).
    pub fn question(&self) -> &str {
        match &self.sample {
            Sample::Turn { question, .. } => question,
            Sample::Messages(m) => prompt_of(m)
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map_or("", |m| m.content.as_str()),
        }
    }

    /// The messages a model answers for this row: `system` (if any) and the question, or a
    /// conversation as it is up to its last assistant turn (its own system message, if any).
    pub fn prompt(&self, system: Option<&str>) -> Vec<Message> {
        match &self.sample {
            Sample::Turn { question, .. } => {
                let mut m: Vec<Message> = system.map(Message::system).into_iter().collect();
                m.push(Message::user(question));
                m
            }
            Sample::Messages(m) => prompt_of(m).to_vec(),
        }
    }

    /// Every field of the row, in the file's key order.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// The 1-based line of the file where this row starts.
    pub fn line(&self) -> usize {
        self.line
    }
}

/// The messages before the last assistant turn (`messages` always has one: checked at read).
fn prompt_of(m: &[Message]) -> &[Message] {
    let last = m
        .iter()
        .rposition(|m| m.role == "assistant")
        .unwrap_or(m.len());
    &m[..last]
}

/// The three parts of a column row, under the names `c` maps them to.
fn columns(fields: &Map<String, Value>, c: &Columns) -> std::result::Result<Sample, RowError> {
    let mut parts = Vec::with_capacity(3);
    for (key, name) in c.named() {
        // The config key is named only when it renames the field: `think` needs no gloss.
        let mapped = (key != name).then_some(key);
        match fields.get(name) {
            None => return Err(RowError::Missing(name.to_string(), mapped)),
            Some(Value::String(s)) => parts.push(s.clone()),
            Some(other) => return Err(RowError::NotString(name.to_string(), mapped, kind(other))),
        }
    }
    let [question, think, answer]: [String; 3] = parts.try_into().expect("three columns");
    Ok(Sample::Turn {
        question,
        think,
        answer,
    })
}

/// `read_rows_as` with the default layout: `auto`, default column names.
pub fn read_rows(path: &Path, skip_invalid: bool) -> Result<(Vec<Row>, usize)> {
    read_rows_as(path, &RowFormat::default(), skip_invalid)
}

/// What a valid row of `layout` needs, for the error about a file without any.
fn needs(layout: Option<Layout>) -> String {
    match layout {
        Some(Layout::Messages) => "a `messages` array with an assistant turn".into(),
        Some(Layout::Columns(c)) => {
            format!("string fields {}, {}, {}", c.question, c.think, c.answer)
        }
        None => "a JSON object".into(),
    }
}

/// Reads `path` into rows of `fmt`. A file whose first non-blank character is `[` (and whose name
/// does not end in `.jsonl`) is read as one JSON array; anything else as JSON Lines (blank lines
/// ignored, as the reference's `if line.strip()` does). `Format::Auto` decides once per file, on
/// its first JSON object: `messages` if it has that key, else columns. With `skip_invalid`, bad
/// rows are dropped and counted (the second value); without, the first bad row is an error
/// `file:line: what (use --skip-invalid ...)`. A file without any valid row is an error either way.
pub fn read_rows_as(path: &Path, fmt: &RowFormat, skip_invalid: bool) -> Result<(Vec<Row>, usize)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    // `.jsonl` is always JSON Lines (a line may itself hold an array: a bad row, reported as such).
    let jsonl = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
    let array = !jsonl && first == Some(&b'[');
    let mut layout = match fmt.format {
        Format::Columns => Some(Layout::Columns(&fmt.columns)),
        Format::Messages => Some(Layout::Messages),
        Format::Auto => None,
    };
    let mut rows = Vec::new();
    let mut skipped = 0usize;
    let mut seen = 0usize;
    let mut take = |line: usize, value: std::result::Result<Value, RowError>| -> Result<()> {
        seen += 1;
        let checked = value.and_then(|v| {
            let l = match (layout, v.as_object()) {
                (Some(l), _) => l,
                // Only an object decides `auto`; anything else is a bad row in either layout.
                (None, None) => Layout::Columns(&fmt.columns),
                (None, Some(o)) => *layout.insert(match o.contains_key("messages") {
                    true => Layout::Messages,
                    false => Layout::Columns(&fmt.columns),
                }),
            };
            Row::checked(v, line, l)
        });
        match checked {
            Ok(row) => rows.push(row),
            Err(_) if skip_invalid => skipped += 1,
            Err(e) => bail!(
                "{}:{line}: {e} (fix the row; `split` and `data stats` can drop such rows with --skip-invalid)",
                path.display()
            ),
        }
        Ok(())
    };
    if array {
        read_array(path, bytes, &mut take)?;
    } else {
        for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let Ok(text) = std::str::from_utf8(raw) else {
                take(i + 1, Err(RowError::Utf8))?;
                continue;
            };
            if text.trim().is_empty() {
                continue;
            }
            take(i + 1, parse(text))?;
        }
    }
    if seen == 0 {
        bail!(
            "{}: no rows (the file is empty; expected JSON Lines with question/think/answer or messages)",
            path.display()
        );
    }
    if rows.is_empty() {
        bail!(
            "{}: none of its {seen} rows is valid (each needs {})",
            path.display(),
            needs(layout)
        );
    }
    Ok((rows, skipped))
}

/// A JSON array file: the elements are taken as raw slices of the text so that each row's line
/// number is known (serde_json's `Value` does not keep positions). A syntax error in the array as
/// a whole cannot be skipped: it is reported with its line.
fn read_array(
    path: &Path,
    bytes: &[u8],
    take: &mut dyn FnMut(usize, std::result::Result<Value, RowError>) -> Result<()>,
) -> Result<()> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            bail!("{}:{line}: not valid UTF-8", path.display());
        }
    };
    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}: not a valid JSON array ({e})",
            path.display(),
            e.line()
        )
    })?;
    let base = text.as_ptr() as usize;
    for item in items {
        // RawValue borrows from `text`, so the pointer difference is the element's byte offset.
        let offset = item.get().as_ptr() as usize - base;
        let line = 1 + text.as_bytes()[..offset]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        take(line, parse(item.get()))?;
    }
    Ok(())
}

/// One JSON value. serde_json reads the integer `-0` as the float `-0.0`, which would be written
/// back as `-0.0`; Python reads it as the int `0`, so it is rewritten to `0` first (outside
/// strings only; `-0.0` and `-0e1` stay floats, as in Python).
fn parse(text: &str) -> std::result::Result<Value, RowError> {
    let fixed = if text.contains("-0") {
        std::borrow::Cow::Owned(integer_negative_zero_to_zero(text))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    serde_json::from_str::<Value>(&fixed)
        .map_err(|e| {
            // Positions within a single line: the line number is the file's, given by the caller.
            let msg = e.to_string();
            match msg.rsplit_once(" at line ") {
                Some((head, _)) if !text.contains('\n') => {
                    format!("{head} at column {}", e.column())
                }
                _ => msg,
            }
        })
        .map_err(RowError::Json)
}

fn integer_negative_zero_to_zero(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut in_str, mut escaped, mut last) = (false, false, 0usize);
    for i in 0..b.len() {
        let c = b[i];
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        if c == b'"' {
            in_str = true;
        } else if c == b'-' && b.get(i + 1) == Some(&b'0') {
            let next = b.get(i + 2).copied();
            let is_int_zero = !matches!(next, Some(b'0'..=b'9' | b'.' | b'e' | b'E'));
            let starts_number = i == 0 || !b[i - 1].is_ascii_alphanumeric();
            if is_int_zero && starts_number {
                out.push_str(&text[last..i]);
                last = i + 1; // drop the '-'
            }
        }
    }
    out.push_str(&text[last..]);
    out
}
