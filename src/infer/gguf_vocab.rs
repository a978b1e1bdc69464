//! A Qwen3 tokenizer as GGUF metadata, the keys llama.cpp's `convert_hf_to_gguf.py` writes for it
//! (`TextModel._set_vocab_gpt2` and `get_vocab_base` in `conversion/base.py`, gguf-py's
//! `SpecialVocab` in `gguf-py/gguf/vocab.py`): the byte-level BPE vocabulary padded to the model's
//! `vocab_size` with `[PAD<id>]`, token types, merges, the `qwen2` pre-tokenizer, the special token
//! ids (`tokenizer_config.json` first, then `config.json`), the add-BOS/EOS flags and the chat
//! template (`tokenizer_config.json`'s, else `chat_template.jinja`).
//!
//! The converter names the pre-tokenizer by hashing how the tokenizer splits a test string; this
//! module checks the `tokenizer.json` pre-tokenizer is Qwen2's split regex plus ByteLevel instead,
//! and refuses anything else (llama.cpp would tokenize it differently from the model's training).
use super::gguf::Value;
use crate::data::tiktoken::PAT_STR;
use anyhow::{bail, Context, Result};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::Path;

// gguf-py's TokenType
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// SpecialVocab's token kinds, in its order, with their GGUF key names.
const SPECIAL: [(&str, &str); 7] = [
    ("bos", "bos_token_id"),
    ("eos", "eos_token_id"),
    ("unk", "unknown_token_id"),
    ("sep", "seperator_token_id"), // sic: llama.cpp's key
    ("pad", "padding_token_id"),
    ("cls", "cls_token_id"),
    ("mask", "mask_token_id"),
];

fn read_json(path: &Path) -> Result<Json> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn read_optional(path: &Path) -> Result<Option<Json>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// Whether `pre` (tokenizer.json's `pre_tokenizer`) is Qwen2's: the split regex, then ByteLevel.
fn is_qwen2_pre_tokenizer(pre: &Json) -> bool {
    let parts = match pre.get("pretokenizers").and_then(Json::as_array) {
        Some(p) => p.as_slice(),
        None => std::slice::from_ref(pre),
    };
    let split = parts.iter().any(|p| {
        p["type"] == "Split"
            && p["pattern"]["Regex"].as_str() == Some(PAT_STR)
            && p["behavior"] == "Isolated"
    });
    let byte_level = parts.iter().any(|p| p["type"] == "ByteLevel");
    split && byte_level
}

/// A token looks like a control token (`does_token_look_special` in conversion/base.py).
fn looks_special(t: &str) -> bool {
    ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].contains(&t)
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// The content a `tokenizer_config.json` token entry names (a string or `{"content": ...}`).
fn entry_content(v: &Json) -> Option<&str> {
    v.as_str()
        .or_else(|| v.get("content").and_then(Json::as_str))
}

/// The tokenizer keys for a model of `vocab_size` whose `tokenizer.json` is `tokenizer_file`
/// (its directory holds `tokenizer_config.json` and the chat template) and whose `config.json`
/// is `config`. `fallback_template` is embedded when the directory has no chat template.
pub fn tokenizer_kv(
    tokenizer_file: &Path,
    config: &Json,
    vocab_size: usize,
    fallback_template: &str,
) -> Result<Vec<(String, Value)>> {
    let dir = tokenizer_file.parent().unwrap_or(Path::new("."));
    let tj = read_json(tokenizer_file)?;
    let what = tokenizer_file.display();
    let model = &tj["model"];
    if model["type"] != "BPE" {
        bail!("{what}: the tokenizer is not BPE (model.type {}): only Qwen3's byte-level BPE tokenizer exports to GGUF", model["type"]);
    }
    if !is_qwen2_pre_tokenizer(&tj["pre_tokenizer"]) {
        bail!("{what}: the pre-tokenizer is not Qwen2's (split regex + ByteLevel): llama.cpp's `qwen2` pre-tokenizer would split text differently; export a Qwen3 tokenizer");
    }
    let vocab = model["vocab"]
        .as_object()
        .with_context(|| format!("{what}: model.vocab is missing"))?;
    let added = tj["added_tokens"].as_array().cloned().unwrap_or_default();

    // id -> (token, added entry)
    let mut by_id: HashMap<usize, (String, Option<&Json>)> = HashMap::new();
    for (tok, id) in vocab {
        let id = id
            .as_u64()
            .with_context(|| format!("{what}: token {tok:?} has no integer id"))?;
        by_id.insert(id as usize, (tok.clone(), None));
    }
    for a in &added {
        let (Some(id), Some(content)) = (a["id"].as_u64(), a["content"].as_str()) else {
            bail!("{what}: an added_tokens entry lacks id or content");
        };
        by_id.insert(id as usize, (content.to_string(), Some(a)));
    }
    if let Some(max) = by_id.keys().max().filter(|&&m| m >= vocab_size) {
        bail!("{what}: token id {max} does not fit the model's vocab_size {vocab_size}: the tokenizer belongs to another model");
    }
    let (mut tokens, mut types) = (
        Vec::with_capacity(vocab_size),
        Vec::with_capacity(vocab_size),
    );
    for i in 0..vocab_size {
        match by_id.get(&i) {
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(UNUSED);
            }
            Some((t, None)) => {
                tokens.push(t.clone());
                types.push(NORMAL);
            }
            Some((t, Some(a))) => {
                if a["special"] == true || looks_special(t) {
                    tokens.push(t.clone());
                    types.push(CONTROL);
                } else {
                    tokens.push(t.replace('\u{2581}', " ")); // pre-normalized user-defined spaces
                    types.push(USER_DEFINED);
                }
            }
        }
    }
    let merges: Vec<String> = match model["merges"].as_array() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|e| match (e.as_str(), e.as_array()) {
                (Some(s), _) => Ok(s.to_string()),
                // transformers 4.45+ pairs; a space inside a part is written as U+0120, as gguf-py does
                (None, Some(p)) if p.len() == 2 && p.iter().all(Json::is_string) => Ok(p
                    .iter()
                    .map(|s| s.as_str().unwrap_or_default().replace(' ', "\u{120}"))
                    .collect::<Vec<_>>()
                    .join(" ")),
                _ => bail!("{what}: unknown model.merges format"),
            })
            .collect::<Result<_>>()?,
        _ => bail!("{what}: model.merges is missing or empty: llama.cpp needs the BPE merges"),
    };

    let mut kv: Vec<(String, Value)> = vec![
        ("tokenizer.ggml.model".into(), Value::Str("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::Str("qwen2".into())),
        ("tokenizer.ggml.tokens".into(), Value::Strs(tokens)),
        ("tokenizer.ggml.token_type".into(), Value::I32s(types)),
        ("tokenizer.ggml.merges".into(), Value::Strs(merges)),
    ];

    // SpecialVocab: ids from tokenizer_config.json's token names, then config.json's *_token_id
    let tc = read_optional(&dir.join("tokenizer_config.json"))?;
    let mut ids: Vec<(&str, u32)> = Vec::new();
    let set = |ids: &mut Vec<(&'static str, u32)>, typ: &'static str, id: Option<u64>| {
        if let Some(id) = id.filter(|&i| (i as usize) < vocab_size) {
            if !ids.iter().any(|(t, _)| *t == typ) {
                ids.push((typ, id as u32));
            }
        }
    };
    if let Some(tc) = &tc {
        for (typ, _) in SPECIAL {
            let content = tc.get(format!("{typ}_token")).and_then(entry_content);
            let id = content.and_then(|c| {
                added
                    .iter()
                    .find(|a| a["content"].as_str() == Some(c))
                    .and_then(|a| a["id"].as_u64())
            });
            set(&mut ids, typ, id);
        }
    }
    for (typ, _) in SPECIAL {
        set(
            &mut ids,
            typ,
            config.get(format!("{typ}_token_id")).and_then(Json::as_u64),
        );
    }
    for (typ, id) in &ids {
        let key = SPECIAL
            .iter()
            .find(|(t, _)| t == typ)
            .map(|(_, k)| *k)
            .unwrap_or_default();
        kv.push((format!("tokenizer.ggml.{key}"), Value::U32(*id)));
    }

    // add_bos/add_eos: a ByteLevel post-processor adds neither; tokenizer_config.json fills the rest
    let mut add: Vec<(&str, bool)> = Vec::new();
    let post = &tj["post_processor"];
    let procs = post["processors"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![post.clone()]);
    if procs.iter().any(|p| p["type"] == "ByteLevel") {
        add.push(("bos", false));
        add.push(("eos", false));
    }
    if let Some(tc) = &tc {
        for (typ, _) in SPECIAL {
            if let Some(b) = tc.get(format!("add_{typ}_token")).and_then(Json::as_bool) {
                if !add.iter().any(|(t, _)| *t == typ) {
                    add.push((typ, b));
                }
            }
        }
    }
    for (typ, b) in add {
        if ["bos", "eos", "sep"].contains(&typ) {
            kv.push((format!("tokenizer.ggml.add_{typ}_token"), Value::Bool(b)));
        }
    }

    let template = match tc.as_ref().and_then(|t| t.get("chat_template")) {
        Some(Json::String(s)) => Some(s.clone()),
        Some(_) => bail!(
            "{}: chat_template is not a string: only a single template exports",
            dir.join("tokenizer_config.json").display()
        ),
        None => {
            let jinja = dir.join("chat_template.jinja");
            match jinja.is_file() {
                true => Some(
                    std::fs::read_to_string(&jinja)
                        .with_context(|| format!("cannot read {}", jinja.display()))?,
                ),
                false => None,
            }
        }
    };
    let template = template.unwrap_or_else(|| {
        eprintln!(
            "note: {} has no chat template; embedding Qwen3's official one (thinking mode included)",
            dir.display()
        );
        fallback_template.to_string()
    });
    kv.push(("tokenizer.chat_template".into(), Value::Str(template)));
    Ok(kv)
}
