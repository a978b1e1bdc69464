//! What `qwen3-sft data stats` measures: how long the encoded samples of a data file are, per template, before
//! choosing `max_length` (the reference truncates silently at `MAX_LENGTH = 2048`): min, median,
//! p90, p99 and max of the untruncated token counts, how many rows exceed `max_length`, and the
//! label (loss-carrying) tokens that remain after truncation.

use super::encode::{Encoder, Template};
use super::rows::Row;
use super::tokenizer::QwenTokenizer;
use anyhow::{bail, Result};

/// The numbers printed for one template.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub rows: usize,
    pub min: usize,
    pub median: usize,
    pub p90: usize,
    pub p99: usize,
    pub max: usize,
    /// Rows whose full encoding is longer than `max_length` (they get truncated).
    pub over_max: usize,
    /// Loss-carrying tokens over all rows, after truncation.
    pub label_tokens: usize,
    /// All tokens over all rows, after truncation.
    pub tokens: usize,
}

/// Nearest-rank percentile (`p` in 0..=100) of sorted, non-empty `v`: the smallest value with at
/// least p% of the rows at or below it (numpy's `percentile(..., method="inverted_cdf")`).
fn percentile(v: &[usize], p: usize) -> usize {
    let rank = (p * v.len()).div_ceil(100); // integer maths: no float rounding at exact ranks
    v[rank.clamp(1, v.len()) - 1]
}

/// Summarizes `(full_len, kept_len, label_tokens)` per row.
pub fn summarize(samples: &[(usize, usize, usize)], max_length: usize) -> Result<Stats> {
    if samples.is_empty() {
        bail!("no rows to summarize");
    }
    let mut lens: Vec<usize> = samples.iter().map(|s| s.0).collect();
    lens.sort_unstable();
    Ok(Stats {
        rows: lens.len(),
        min: lens[0],
        median: percentile(&lens, 50),
        p90: percentile(&lens, 90),
        p99: percentile(&lens, 99),
        max: lens[lens.len() - 1],
        over_max: lens.iter().filter(|&&l| l > max_length).count(),
        label_tokens: samples.iter().map(|s| s.2).sum(),
        tokens: samples.iter().map(|s| s.1).sum(),
    })
}

/// Encodes every row with `template` (the reference's system prompt for question/think/answer
/// rows; a conversation as it is) and summarizes the lengths.
pub fn measure(
    rows: &[Row],
    tok: &QwenTokenizer,
    template: Template,
    max_length: usize,
) -> Result<Stats> {
    let mut enc = Encoder::new(tok, template);
    enc.max_len = max_length;
    let mut samples = Vec::with_capacity(rows.len());
    for r in rows {
        let e = enc
            .encode_sample(r.sample())
            .map_err(|e| e.context(format!("encoding the row at line {}", r.line())))?;
        samples.push((e.full_len, e.input_ids.len(), e.label_tokens()));
    }
    summarize(&samples, max_length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<usize> = (1..=10).collect();
        assert_eq!(percentile(&v, 50), 5);
        assert_eq!(percentile(&v, 90), 9);
        assert_eq!(percentile(&v, 99), 10);
        assert_eq!(percentile(&[7], 50), 7);
        let s = summarize(&[(10, 10, 4), (30, 20, 15), (20, 20, 9)], 20).unwrap();
        assert_eq!(
            (s.min, s.median, s.max, s.over_max, s.label_tokens, s.tokens),
            (10, 20, 30, 1, 28, 50)
        );
    }
}
