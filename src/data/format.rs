//! How a data file's rows are read (`[data] format` and `[data] columns`): either three string
//! columns holding the question, the reasoning and the answer (any names, mapped by `columns`,
//! e.g. FreedomIntelligence/medical-o1-reasoning-SFT's `Question`/`Complex_CoT`/`Response`), or a
//! `messages` conversation as trl's and LLaMA-Factory's conversational data sets hold it. `auto`
//! picks one per file from its first row, as `trl`'s `is_conversational` looks at a `messages` key.
//! The closed sets are enums and the table is checked once, when the config (or a flag) is read.

use super::chat::Message;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// The row layout of a data file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `messages` when the file's first row (a JSON object) has a `messages` key, else `columns`.
    #[default]
    Auto,
    /// Question, reasoning and answer in three string fields named by `columns`.
    Columns,
    /// `{"messages": [{"role", "content", "reasoning_content"?}, ...]}`.
    Messages,
}

impl std::str::FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Format::Auto),
            "columns" => Ok(Format::Columns),
            "messages" => Ok(Format::Messages),
            _ => bail!("unknown data format {s:?}: expected \"auto\", \"columns\" or \"messages\""),
        }
    }
}

/// Which field of a row holds each part (`[data] columns`); the default is the identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    pub question: String,
    pub think: String,
    pub answer: String,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            question: "question".into(),
            think: "think".into(),
            answer: "answer".into(),
        }
    }
}

impl Columns {
    /// The (role, field name) pairs, in the order rows are checked.
    pub fn named(&self) -> [(&'static str, &str); 3] {
        [
            ("question", &self.question),
            ("think", &self.think),
            ("answer", &self.answer),
        ]
    }

    /// Empty or shared names are mistakes (two parts cannot come from one field).
    pub fn validate(&self) -> Result<()> {
        let named = self.named();
        for (i, (key, name)) in named.iter().enumerate() {
            if name.is_empty() {
                bail!("data.columns.{key} is empty: name the field that holds the {key}");
            }
            if let Some((other, _)) = named[..i].iter().find(|(_, n)| n == name) {
                bail!("data.columns.{other} and data.columns.{key} both name field {name:?}");
            }
        }
        Ok(())
    }

    /// `question=Question,think=Complex_CoT,answer=Response` (the command-line form): keys not
    /// given keep their default name.
    pub fn parse_pairs(s: &str) -> Result<Columns> {
        let mut c = Columns::default();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, name)) = pair.split_once('=') else {
                bail!("--columns {pair:?}: expected KEY=FIELD, e.g. think=Complex_CoT");
            };
            let slot = match key.trim() {
                "question" => &mut c.question,
                "think" => &mut c.think,
                "answer" => &mut c.answer,
                other => {
                    bail!("--columns: unknown key {other:?} (expected question, think or answer)")
                }
            };
            *slot = name.trim().to_string();
        }
        c.validate()?;
        Ok(c)
    }
}

impl std::str::FromStr for Columns {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Columns::parse_pairs(s)
    }
}

/// What `read_rows_as` needs to know: the layout and the column names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowFormat {
    pub format: Format,
    pub columns: Columns,
}

/// What one row holds, checked when it is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sample {
    /// One question, its reasoning (possibly empty) and the answer.
    Turn {
        question: String,
        think: String,
        answer: String,
    },
    /// A conversation: system/user/assistant messages with at least one assistant turn.
    Messages(Vec<Message>),
}

impl Sample {
    /// Assistant turns: 1 for a question/answer row.
    pub fn assistant_turns(&self) -> usize {
        match self {
            Sample::Turn { .. } => 1,
            Sample::Messages(m) => m.iter().filter(|m| m.role == "assistant").count(),
        }
    }

    /// Assistant turns whose reasoning is empty (Qwen3's non-thinking layout).
    pub fn turns_without_reasoning(&self) -> usize {
        match self {
            Sample::Turn { think, .. } => super::chat::no_reasoning(think) as usize,
            Sample::Messages(m) => m
                .iter()
                .filter(|m| m.role == "assistant")
                .filter(|m| super::chat::no_reasoning(super::chat::split_reasoning(m).0))
                .count(),
        }
    }
}

/// Why a row was rejected. A field is named as the file names it, with the `data.columns` key
/// that mapped it when that differs.
#[derive(Debug, Clone, PartialEq)]
pub enum RowError {
    NotObject(&'static str),
    Missing(String, Option<&'static str>),
    NotString(String, Option<&'static str>, &'static str),
    /// A `messages` problem, phrased with the message's index and field.
    Messages(String),
    Json(String),
    Utf8,
}

fn field(name: &str, mapped: &Option<&'static str>) -> String {
    match mapped {
        Some(key) => format!("field `{name}` (data.columns.{key})"),
        None => format!("field `{name}`"),
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowError::NotObject(k) => write!(f, "row is {k}, expected a JSON object"),
            RowError::Missing(name, m) => write!(f, "{} is missing", field(name, m)),
            RowError::NotString(name, m, k) => {
                write!(f, "{} is {k}, expected a string", field(name, m))
            }
            RowError::Messages(msg) => f.write_str(msg),
            RowError::Json(e) => write!(f, "not valid JSON ({e})"),
            RowError::Utf8 => write!(f, "not valid UTF-8"),
        }
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
