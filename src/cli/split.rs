//! `qwen3-sft split`: the seed's `medical_dataset_splitter.py` with its flags (`--dataset_name
//! --output_dir --train_ratio --seed`, kebab-case accepted too); the data set comes from the hub
//! (or `--input`), the split is `data::split`'s.
use super::args::RowArgs;
use crate::data::download::{fetch_dataset, DATASET, DATA_FILE};
use crate::data::rows::read_rows_as;
use crate::data::split::{split_rows, write_split};
use crate::hub::{HubConfig, Source};
use crate::output;
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct SplitArgs {
    /// Data set id on the hub
    #[arg(long = "dataset_name", alias = "dataset-name", default_value = DATASET)]
    pub dataset_name: String,
    /// File of the data set to split
    #[arg(long = "data_file", alias = "data-file", default_value = DATA_FILE)]
    pub data_file: String,
    /// Directory receiving train.jsonl and val.jsonl
    #[arg(
        long = "output_dir",
        alias = "output-dir",
        default_value = "./data_split"
    )]
    pub output_dir: PathBuf,
    /// Fraction of rows going to train.jsonl, strictly between 0 and 1
    #[arg(
        long = "train_ratio",
        alias = "train-ratio",
        default_value_t = 0.85,
        allow_negative_numbers = true
    )]
    pub train_ratio: f64,
    /// Seed of Python's `random.seed` (the shuffle equals Python's for the same seed)
    #[arg(long, default_value_t = 42, allow_negative_numbers = true)]
    pub seed: i64,
    /// Hub serving the data set: modelscope or hf
    #[arg(long, default_value = "modelscope")]
    pub source: Source,
    /// A local JSONL/JSON file instead of the hub
    #[arg(long)]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub rows: RowArgs,
    /// Drop invalid rows (missing or non-string fields, bad messages, non-JSON lines) instead of failing
    #[arg(long = "skip-invalid", alias = "skip_invalid")]
    pub skip_invalid: bool,
    /// Replace train.jsonl and val.jsonl when --output_dir already has them
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(args: &SplitArgs) -> Result<()> {
    let input = match &args.input {
        Some(p) => p.clone(),
        None => fetch_dataset(
            &args.dataset_name,
            &args.data_file,
            args.source,
            &HubConfig::from_env()?,
        )?,
    };
    for name in ["train.jsonl", "val.jsonl"] {
        let target = args.output_dir.join(name);
        output::check_apart(&target, &[("the input", &input)])?;
        if target.exists() && !args.overwrite {
            bail!(
                "{} exists: pass --overwrite to replace it, or choose another --output_dir",
                target.display()
            );
        }
    }
    // Rows are checked as training reads them and written back as they are.
    let (rows, skipped) = read_rows_as(&input, &args.rows.row_format(), args.skip_invalid)?;
    let total = rows.len();
    let (train, val) = split_rows(rows, args.train_ratio, args.seed)?;
    let (tp, vp) = write_split(&args.output_dir, &train, &val)?;
    if skipped > 0 {
        println!("skipped {skipped} invalid rows of {}", input.display());
    }
    println!(
        "{total} rows from {} (seed {}, train_ratio {})",
        input.display(),
        args.seed,
        args.train_ratio
    );
    println!("train: {} rows -> {}", train.len(), tp.display());
    println!("val:   {} rows -> {}", val.len(), vp.display());
    Ok(())
}
