//! `qwen3-sft export`: a model (plus an adapter, merged in memory) as one GGUF file for llama.cpp,
//! Ollama and LM Studio, with a Modelfile beside it for `ollama create`.
use super::args::ModelArgs;
use crate::data::encode::SYSTEM_PROMPT;
use crate::infer::export::{export_gguf, ExportOptions, OutType};
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Gguf,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Base model, adapter (merged before export) and tokenizer; --dtype is the dtype weights are
    /// read in (auto: as stored) before conversion to --outtype
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output format
    #[arg(long, value_enum, default_value = "gguf")]
    pub format: Format,
    /// Type of the weight matrices: bf16, f16, or q8_0 (llama.cpp's 8-bit blocks); norms stay f32
    #[arg(long, default_value = "bf16")]
    pub outtype: OutType,
    /// Output file (written under a temporary name, then renamed into place)
    #[arg(long)]
    pub output: PathBuf,
    /// Replace an earlier export at --output (and its Modelfile), never another kind of file
    #[arg(long)]
    pub overwrite: bool,
    /// general.name in the file [default: the model directory's name]
    #[arg(long)]
    pub name: Option<String>,
    /// The Modelfile's SYSTEM prompt: the one the model was trained with (data.system_prompt);
    /// "" for none [default: the recipe's medical-expert prompt, training's default]
    #[arg(long, default_value = SYSTEM_PROMPT, hide_default_value = true)]
    pub system: String,
    /// Write no Modelfile beside the GGUF file
    #[arg(long)]
    pub no_modelfile: bool,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    if args.system.contains("\"\"\"") {
        bail!("--system contains \"\"\", which a Modelfile cannot quote");
    }
    let opts = ExportOptions {
        output: args.output.clone(),
        outtype: args.outtype,
        overwrite: args.overwrite,
        name: args.name.clone(),
        system: (!args.no_modelfile).then(|| args.system.clone()),
    };
    let done = export_gguf(&args.model.spec()?, &opts)?;
    println!(
        "exported {}{} -> {} ({:?}, {} tensors, {:.1} MB)",
        args.model.model,
        args.model
            .adapter
            .as_ref()
            .map(|a| format!(" + {}", a.display()))
            .unwrap_or_default(),
        args.output.display(),
        args.outtype,
        done.tensors,
        done.bytes as f64 / 1e6
    );
    if let Some(mf) = done.modelfile {
        println!(
            "Ollama: cd {} && ollama create NAME -f Modelfile",
            mf.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| ".".into())
        );
    }
    Ok(())
}
