//! The Qwen3 tokenizer as transformers uses it (`AutoTokenizer.from_pretrained(model_dir)`):
//! a `tokenizer.json` from a model directory (the hub's, or one derived by `data::tiktoken`),
//! encoded with `add_special_tokens=False` (Qwen adds no BOS anyway) and decoded with or without
//! `skip_special_tokens`.
use anyhow::{anyhow, bail, Result};
use std::path::Path;

/// Token ids every Qwen3 tokenizer has; checked when loading.
pub const ENDOFTEXT: u32 = 151643;
pub const IM_START: u32 = 151644;
pub const IM_END: u32 = 151645;
pub const THINK: u32 = 151667;
pub const END_THINK: u32 = 151668;

pub struct QwenTokenizer {
    inner: tokenizers::Tokenizer,
}

impl QwenTokenizer {
    /// Loads `tokenizer.json` (a file, or a model directory holding one).
    pub fn load(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        if !file.is_file() {
            bail!(
                "no tokenizer at {}: point at a Qwen3 model directory, or derive one offline with `qwen3-sft derive-tokenizer --out DIR`",
                file.display()
            );
        }
        let inner = tokenizers::Tokenizer::from_file(&file)
            .map_err(|e| anyhow!("loading {}: {e}", file.display()))?;
        let tok = QwenTokenizer { inner };
        for (name, id) in [
            ("<|endoftext|>", ENDOFTEXT),
            ("<|im_start|>", IM_START),
            ("<|im_end|>", IM_END),
            ("<think>", THINK),
            ("</think>", END_THINK),
        ] {
            let got = tok.token_id(name);
            if got != Some(id) {
                bail!("{}: {name} has id {got:?}, a Qwen3 tokenizer has {id}: is this a Qwen3 model's tokenizer?", file.display());
            }
        }
        Ok(tok)
    }

    /// Token ids of `text`, no special tokens added; special-token strings in the text become
    /// their ids (transformers' default `split_special_tokens=False`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing {} chars: {e}", text.len()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`; `skip_special` drops special tokens but keeps `<think>`/`</think>` and the
    /// tool tags, which Qwen3 marks non-special.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| anyhow!("decoding {} ids: {e}", ids.len()))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Entries in the vocabulary including added tokens (151,669 for Qwen3; the embedding has more rows).
    /// Every id this tokenizer produces must index a row of the model's embedding.
    pub fn check_fits(&self, model_vocab: i64, model: &str) -> Result<()> {
        let ids = self.vocab_size() as i64;
        if ids > model_vocab {
            anyhow::bail!(
                "model {model} has vocab_size {model_vocab} but its tokenizer has {ids} ids: use the model's own tokenizer (or a model with at least {ids} embedding rows)"
            );
        }
        Ok(())
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The underlying `tokenizers` object.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
