//! The seed's data set file from a hub: `krisfu/delicate_medical_r1_data`, file
//! `r1_data_example.jsonl`, from ModelScope (the reference's `MsDataset.load`, our default) or
//! from the Hugging Face Hub as a data set repository. Cached like models (see `hub`), resumable,
//! and failing with the same one-line, host-naming errors; offline, `--input FILE` is the way out.

use crate::hub::{self, HubConfig, RepoKind, Source};
use anyhow::{anyhow, Result};
use std::path::PathBuf;

/// The seed's data set.
pub const DATASET: &str = "krisfu/delicate_medical_r1_data";
/// Its one data file (about 2,400 JSON lines).
pub const DATA_FILE: &str = "r1_data_example.jsonl";

/// The local path of `file` of data set `dataset`, from the cache or downloaded.
pub fn fetch_dataset(
    dataset: &str,
    file: &str,
    source: Source,
    cfg: &HubConfig,
) -> Result<PathBuf> {
    let repo = hub::Hub::new(cfg, source, RepoKind::Dataset, dataset, "pass --input FILE")?;
    for dir in repo.cached_dirs() {
        let p = dir.join(file);
        if p.is_file() {
            return Ok(p);
        }
    }
    let http = hub::client(cfg)?;
    repo.fetch(&http, file)?.ok_or_else(|| {
        anyhow!(
            "data set {dataset}: file {file} not found on {} (check --dataset_name, --data_file and --source)",
            repo.host()
        )
    })
}
