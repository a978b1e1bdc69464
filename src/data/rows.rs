//! Reading a data file (JSON Lines, or one JSON array) into rows that keep every original field in
//! its original order, checking that `question`, `think` and `answer` are strings. This is what the
//! reference does with `json.loads` per line before `process_func` reads those three columns; here
//! a bad row is an error naming the file and line unless the caller asked to skip such rows.

use anyhow::{bail, Context, Result};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;
use std::path::Path;

/// The fields every row must have, as strings (the reference's `process_func` reads exactly these).
pub const REQUIRED: [&str; 3] = ["question", "think", "answer"];

/// One data row: all of its fields (key order kept), known to have string `question`/`think`/`answer`.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    fields: Map<String, Value>,
    line: usize,
}

impl Row {
    /// Checks the required fields; the error says which field is wrong and how.
    pub fn new(value: Value, line: usize) -> std::result::Result<Row, RowError> {
        let fields = match value {
            Value::Object(m) => m,
            other => return Err(RowError::NotObject(kind(&other))),
        };
        for key in REQUIRED {
            match fields.get(key) {
                None => return Err(RowError::Missing(key)),
                Some(Value::String(_)) => {}
                Some(other) => return Err(RowError::NotString(key, kind(other))),
            }
        }
        Ok(Row { fields, line })
    }

    fn text(&self, key: &str) -> &str {
        // `new` checked that every REQUIRED key holds a string, and the map is never mutated.
        self.fields
            .get(key)
            .and_then(Value::as_str)
            .expect("checked in Row::new")
    }

    /// The user's question (the prompt).
    pub fn question(&self) -> &str {
        self.text("question")
    }

    /// The reasoning, placed inside `<think>...</think>`.
    pub fn think(&self) -> &str {
        self.text("think")
    }

    /// The final answer after the reasoning.
    pub fn answer(&self) -> &str {
        self.text("answer")
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

/// Why a row was rejected.
#[derive(Debug, Clone, PartialEq)]
pub enum RowError {
    NotObject(&'static str),
    Missing(&'static str),
    NotString(&'static str, &'static str),
    Json(String),
    Utf8,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowError::NotObject(k) => write!(f, "row is {k}, expected a JSON object"),
            RowError::Missing(key) => write!(f, "field `{key}` is missing"),
            RowError::NotString(key, k) => write!(f, "field `{key}` is {k}, expected a string"),
            RowError::Json(e) => write!(f, "not valid JSON ({e})"),
            RowError::Utf8 => write!(f, "not valid UTF-8"),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads `path` into rows. A file whose first non-blank character is `[` (and whose name does not
/// end in `.jsonl`) is read as one JSON array; anything else as JSON Lines (blank lines ignored,
/// as the reference's `if line.strip()` does). With `skip_invalid`, bad rows are dropped and counted (the second
/// value); without, the first bad row is an error `file:line: what (use --skip-invalid ...)`.
/// A file without any valid row is an error either way.
pub fn read_rows(path: &Path, skip_invalid: bool) -> Result<(Vec<Row>, usize)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    // `.jsonl` is always JSON Lines (a line may itself hold an array: a bad row, reported as such).
    let jsonl = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
    let array = !jsonl && first == Some(&b'[');
    let mut rows = Vec::new();
    let mut skipped = 0usize;
    let mut seen = 0usize;
    let mut take = |line: usize, value: std::result::Result<Value, RowError>| -> Result<()> {
        seen += 1;
        match value.and_then(|v| Row::new(v, line)) {
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
            "{}: no rows (the file is empty; expected JSON Lines with question/think/answer)",
            path.display()
        );
    }
    if rows.is_empty() {
        bail!(
            "{}: none of its {seen} rows is valid (each needs string fields question, think, answer)",
            path.display()
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
