//! Data sets of other layouts (`[data] format`, `[data] columns`): the config table is checked at
//! load, bad rows are errors naming the file, the line and the field (the file's name and the key
//! that mapped it, or the message and its field), `--skip-invalid` drops them, `auto` detects
//! conversations, and split, data stats and encode read both layouts. The encodings themselves
//! are compared with transformers/trl in tests/encode.rs.
mod common;

use qwen3_sft::config::RunConfig;
use qwen3_sft::data::format::{Columns, Format, RowFormat, Sample};
use qwen3_sft::data::rows::{read_rows, read_rows_as};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_qwen3-sft");

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qwen3-sft-formats-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn medical_o1() -> Columns {
    Columns {
        question: "Question".into(),
        think: "Complex_CoT".into(),
        answer: "Response".into(),
    }
}

fn sample(name: &str) -> PathBuf {
    common::root().join("data/sample").join(name)
}

fn err_of(text: &str, fmt: &RowFormat, skip: bool) -> (PathBuf, String) {
    // a directory per call: tests run in parallel and each call rewrites its file
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let p = tmp(&format!("err{n}")).join("train.jsonl");
    std::fs::write(&p, text).unwrap();
    let e = read_rows_as(&p, fmt, skip).expect_err("a bad row must fail");
    (p, format!("{e:#}"))
}

#[test]
fn mapped_columns_are_read_and_named_in_errors() {
    let fmt = RowFormat {
        format: Format::Columns,
        columns: medical_o1(),
    };
    let (rows, _) = read_rows_as(&sample("medical_o1_columns.jsonl"), &fmt, false).unwrap();
    let Sample::Turn { question, .. } = rows[1].sample() else {
        panic!("a column row")
    };
    assert!(question.starts_with("A 30-year-old woman"), "{question}");
    let good = r#"{"Question": "q", "Complex_CoT": "t", "Response": "a"}"#;
    for (text, want) in [
        (
            format!("{good}\n{good}\n{{\"Question\": \"q\", \"Response\": \"a\"}}\n"),
            ":3: field `Complex_CoT` (data.columns.think) is missing",
        ),
        (
            "{\"Question\": 1, \"Complex_CoT\": \"t\", \"Response\": \"a\"}\n".to_string(),
            ":1: field `Question` (data.columns.question) is a number, expected a string",
        ),
    ] {
        let (p, e) = err_of(&text, &fmt, false);
        assert!(e.contains(&format!("{}{want}", p.display())), "{e}");
    }
    // The default names stay unglossed; a file of the other names says what it lacks.
    let (p, e) = err_of(&format!("{good}\n"), &RowFormat::default(), false);
    assert!(
        e.contains(&format!("{}:1: field `question` is missing", p.display())),
        "{e}"
    );
    let (_, e) = err_of(&format!("{good}\n"), &RowFormat::default(), true);
    assert!(
        e.contains("each needs string fields question, think, answer"),
        "{e}"
    );
}

#[test]
fn bad_conversations_name_the_message_and_field() {
    let ok = r#"{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}"#;
    let cases = [
        (
            format!(r#"{{"role": "user", "content": "q"}}, {{"role": "bot", "content": "a"}}, {ok}"#),
            ":7: messages[1].role \"bot\" is not system, user or assistant",
        ),
        (
            r#"{"role": "user", "content": "q"}"#.to_string(),
            ":7: messages has no assistant turn",
        ),
        (
            format!(r#"{ok}, {{"role": "user", "content": 5}}"#),
            ":7: messages[2].content is a number, expected a string",
        ),
        (
            format!(r#"{ok}, {{"role": "user"}}"#),
            ":7: messages[2].content is missing",
        ),
        (
            r#"{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "reasoning_content": ["r"]}"#.to_string(),
            ":7: messages[1].reasoning_content is an array, expected a string",
        ),
        (
            format!(r#"{ok}, "hi""#),
            ":7: messages[2] is a string, expected an object",
        ),
    ];
    let good = format!("{{\"messages\": [{ok}]}}\n");
    for (messages, want) in cases {
        let text = format!("{}{{\"messages\": [{messages}]}}\n", good.repeat(6));
        let (p, e) = err_of(&text, &RowFormat::default(), false);
        assert!(e.contains(&format!("{}{want}", p.display())), "{e}");
        assert!(e.contains("--skip-invalid"), "{e}");
        // --skip-invalid carries over: the bad conversation is dropped and counted.
        let (rows, skipped) = read_rows_as(&p, &RowFormat::default(), true).unwrap();
        assert_eq!((rows.len(), skipped), (6, 1));
    }
    let (p, e) = err_of(
        &format!("{good}{{\"messages\": \"hi\"}}\n"),
        &RowFormat::default(),
        false,
    );
    assert!(
        e.contains(&format!("{}:2: field `messages` is a string", p.display())),
        "{e}"
    );
    let (_, e) = err_of("{\"messages\": []}\n", &RowFormat::default(), true);
    assert!(
        e.contains("each needs a `messages` array with an assistant turn"),
        "{e}"
    );
}

#[test]
fn auto_detects_conversations_from_the_first_row() {
    let p = sample("multi_turn_messages.jsonl");
    let (rows, _) = read_rows(&p, false).unwrap();
    assert!(rows
        .iter()
        .all(|r| matches!(r.sample(), Sample::Messages(_))));
    assert_eq!(rows[0].question(), "I take lisinopril for blood pressure.");
    // Forced to columns, the same file lacks the columns.
    let fmt = RowFormat {
        format: Format::Columns,
        ..RowFormat::default()
    };
    let e = format!("{:#}", read_rows_as(&p, &fmt, false).unwrap_err());
    assert!(e.contains(":1: field `question` is missing"), "{e}");
    // A column file is not a conversation, and a non-object first line decides nothing.
    let q = tmp("auto").join("rows.jsonl");
    let conv = r#"{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}"#;
    std::fs::write(&q, format!("[1]\n{conv}\n{{\"question\": \"q\"}}\n")).unwrap();
    let (rows, skipped) = read_rows(&q, true).unwrap();
    assert_eq!((rows.len(), skipped), (1, 2));
    let (rows, _) = read_rows(&sample("r1_data_example.jsonl"), false).unwrap();
    assert!(matches!(rows[0].sample(), Sample::Turn { .. }));
}

fn config(data: &str) -> Result<RunConfig, String> {
    let text = format!(
        "[model]\npath = \"random:tiny\"\n[data]\ntrain_file = \"t.jsonl\"\n{data}\n[train]\nmethod = \"full\"\noutput_dir = \"runs/x\"\n"
    );
    RunConfig::from_table(text.parse().unwrap()).map_err(|e| format!("{e:#}"))
}

#[test]
fn the_config_table_is_checked_at_load() {
    let c = config(
        "columns = { question = \"Question\", think = \"Complex_CoT\", answer = \"Response\" }",
    )
    .unwrap();
    assert_eq!(c.data.columns, medical_o1());
    assert_eq!(c.data.format, Format::Auto);
    let c = config("columns = { think = \"cot\" }").unwrap();
    assert_eq!(
        (
            c.data.columns.question.as_str(),
            c.data.columns.think.as_str()
        ),
        ("question", "cot")
    );
    let e = config("columns = { question = \"Q\", reasoning = \"R\" }").unwrap_err();
    assert!(
        e.contains("[data] columns.reasoning") && e.contains("unknown field"),
        "{e}"
    );
    let e = config("columns = { question = \"x\", answer = \"x\" }").unwrap_err();
    assert!(
        e.contains("data.columns.question and data.columns.answer both name field \"x\""),
        "{e}"
    );
    let e = config("format = \"sharegpt\"").unwrap_err();
    assert!(
        e.contains("[data] format") && e.contains("unknown variant"),
        "{e}"
    );
    let e = config("format = \"messages\"\ntemplate = \"reference\"").unwrap_err();
    assert!(
        e.contains("defined only for question/think/answer rows"),
        "{e}"
    );
}

fn run(args: &[&str], extra: &[&Path]) -> (bool, String) {
    let out = Command::new(BIN).args(args).args(extra).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn split_keeps_conversations_as_they_are() {
    let input = sample("multi_turn_messages.jsonl");
    let out = tmp("split");
    let (ok, text) = run(
        &[
            "split",
            "--train_ratio",
            "0.5",
            "--input",
            input.to_str().unwrap(),
            "--output_dir",
        ],
        &[&out],
    );
    assert!(ok, "{text}");
    let mut got: Vec<String> = ["train.jsonl", "val.jsonl"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(out.join(f))
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut want: Vec<String> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "split rewrote a conversation");
}

#[test]
fn stats_and_encode_read_both_layouts() {
    let tok = common::tokenizer_dir();
    let conv = sample("multi_turn_messages.jsonl");
    let rows: Vec<Value> = std::fs::read_to_string(&conv)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let turns: usize = rows
        .iter()
        .map(|r| {
            r["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["role"] == "assistant")
                .count()
        })
        .sum();
    let (ok, text) = run(
        &[
            "data",
            "stats",
            "--tokenizer",
            tok.to_str().unwrap(),
            "--data",
        ],
        &[&conv],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "{} conversations (5 multi-turn), {turns} assistant turns",
            rows.len()
        )),
        "{text}"
    );
    assert!(
        text.contains("   qwen3: min") && !text.contains("reference:"),
        "{text}"
    );
    let (ok, text) = run(
        &[
            "data",
            "stats",
            "--template",
            "reference",
            "--tokenizer",
            tok.to_str().unwrap(),
            "--data",
        ],
        &[&conv],
    );
    assert!(
        !ok && text.contains("defined only for question/think/answer rows"),
        "{text}"
    );
    let cols = sample("medical_o1_columns.jsonl");
    let mapping = "question=Question,think=Complex_CoT,answer=Response";
    let (ok, text) = run(
        &[
            "data",
            "stats",
            "--columns",
            mapping,
            "--tokenizer",
            tok.to_str().unwrap(),
            "--data",
        ],
        &[&cols],
    );
    assert!(
        ok && text.contains("5 rows (4 with reasoning, 1 without"),
        "{text}"
    );
    let (ok, text) = run(
        &[
            "data",
            "stats",
            "--tokenizer",
            tok.to_str().unwrap(),
            "--data",
        ],
        &[&cols],
    );
    assert!(
        !ok && text.contains(":1: field `question` is missing"),
        "{text}"
    );
    let (ok, text) = run(
        &[
            "encode",
            "--columns",
            "question=Question,thinking=x",
            "--tokenizer",
            tok.to_str().unwrap(),
        ],
        &[&cols],
    );
    assert!(!ok && text.contains("unknown key \"thinking\""), "{text}");
    let (ok, text) = run(
        &[
            "encode",
            "--show",
            "1",
            "--tokenizer",
            tok.to_str().unwrap(),
        ],
        &[&conv],
    );
    assert!(
        ok && text.contains("⟦<think>\nA cough over three weeks"),
        "{text}"
    );
}
