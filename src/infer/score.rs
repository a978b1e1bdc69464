//! Answer-quality scores: per-sample BLEU-4 and ROUGE-1/2/L, computed exactly as LLaMA-Factory's
//! `scripts/eval_bleu_rouge.py` does, so that our numbers can be read against theirs.
//!
//! That script, per sample:
//! - BLEU-4: nltk's `sentence_bleu([list(label)], list(predict),
//!   smoothing_function=SmoothingFunction().method3)`, over *characters* (code points), one
//!   reference (mirrored from `nltk/translate/bleu_score.py` 3.10: modified precision, brevity
//!   penalty, NIST geometric smoothing, `math.fsum` of the weighted logs);
//! - ROUGE-1/2/L: `rouge_chinese.Rouge().get_scores(" ".join(jieba.cut(predict)),
//!   " ".join(jieba.cut(label)))`, the `f` of each (rouge-chinese 1.0.3, see `rouge.rs`), or all 0
//!   when either joined text has no word;
//! - every metric `round(value * 100, 4)`; the report is the plain mean of those over samples.
//!
//! Segmentation is Python jieba's `jieba.cut(text)` (default mode, HMM on), rebuilt on `jieba-rs`
//! with its three known departures from jieba 0.42.1 undone (see [`Scorer::segment`]). Every
//! number is reproduced to the last bit (checked by tests/score.rs against the live Python).

use std::collections::HashMap;

use jieba_rs::Jieba;

use super::rouge::{self, py_space};

/// One sample's scores, or their mean, in percent (0–100) as LLaMA-Factory reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    pub bleu4: f64,
    pub rouge1: f64,
    pub rouge2: f64,
    pub rouge_l: f64,
}

/// Scores prediction/label pairs. Holds the jieba dictionary, which takes a while to build: make
/// one and reuse it.
pub struct Scorer {
    jieba: Jieba,
}

/// A word no block handed to jieba-rs can contain (a private-use character is not in Python's
/// han class), so adding it changes the dictionary's total frequency and nothing else.
const TOTAL_PAD: &str = "\u{E000}";

impl Default for Scorer {
    fn default() -> Self {
        Self::new()
    }
}

impl Scorer {
    pub fn new() -> Self {
        let mut jieba = Jieba::new();
        // Python jieba's dict.txt lists `B超 3 n` twice and sums every line into the total that
        // each word's log-probability is taken against; jieba-rs' copy lists it once. Pad the
        // total by the missing 3 so that route probabilities (and their ties) are the same.
        jieba.add_word(TOTAL_PAD, Some(3), None);
        Scorer { jieba }
    }

    /// `percent(round(x * 100, 4))` of each metric, as eval_bleu_rouge.py's `compute_metrics`.
    pub fn score(&self, predict: &str, label: &str) -> Scores {
        let hyp: Vec<char> = predict.chars().collect();
        let refr: Vec<char> = label.chars().collect();
        let bleu = bleu4(&hyp, &refr);
        let hyp_text = self.segment(predict).join(" ");
        let ref_text = self.segment(label).join(" ");
        // The script scores ROUGE 0 when `" ".join(words).split()` is empty on either side
        // (rouge-chinese would raise on it).
        let [r1, r2, rl] = if has_word(&hyp_text) && has_word(&ref_text) {
            rouge::f_scores(&hyp_text, &ref_text)
        } else {
            [0.0; 3]
        };
        Scores {
            bleu4: percent(bleu),
            rouge1: percent(r1),
            rouge2: percent(r2),
            rouge_l: percent(rl),
        }
    }

    /// The words of Python's `jieba.cut(text)` (default mode, HMM on). jieba-rs 0.11 implements
    /// the same algorithm and dictionary but departs from jieba 0.42.1 in three places, each
    /// undone here: its han blocks also take U+9FD6–U+9FFF and the CJK extension/compatibility
    /// blocks (Python: `[\u4E00-\u9FD5a-zA-Z0-9+#&._%-]` only), so we split blocks ourselves and
    /// hand it only Python's; its HMM fallback joins `a-b`, `a_b`, `1.2.3` into one word (Python's
    /// finalseg: `[a-zA-Z0-9]+(?:\.\d+)?%?`), so such words are split again; and its dictionary
    /// total lacks a duplicate line (see [`Scorer::new`]).
    pub fn segment<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut words = Vec::new();
        let mut rest = text;
        while let Some(first) = rest.chars().next() {
            let han = is_py_han(first);
            let end = rest
                .char_indices()
                .find(|&(_, c)| is_py_han(c) != han)
                .map_or(rest.len(), |(i, _)| i);
            let (block, tail) = rest.split_at(end);
            if han {
                for token in self.jieba.cut(block, true) {
                    push_finalseg_word(token.word, &mut words);
                }
            } else {
                push_skip_block(block, &mut words);
            }
            rest = tail;
        }
        words
    }
}

/// Mean of each metric over `scores` (left-to-right sum / count, as the script's
/// `sum(scores) / len(scores)` on Python ≤ 3.11; 3.12's compensated `sum` can differ by ~1e-14).
/// All zeros for no samples (where the script would divide by zero).
pub fn mean(scores: &[Scores]) -> Scores {
    if scores.is_empty() {
        return Scores::default();
    }
    let n = scores.len() as f64;
    let avg = |f: fn(&Scores) -> f64| scores.iter().map(f).fold(0.0, |acc, x| acc + x) / n;
    Scores {
        bleu4: avg(|s| s.bleu4),
        rouge1: avg(|s| s.rouge1),
        rouge2: avg(|s| s.rouge2),
        rouge_l: avg(|s| s.rouge_l),
    }
}

/// Whether Python's `text.split()` is non-empty.
fn has_word(text: &str) -> bool {
    text.chars().any(|c| !py_space(c))
}

/// Python jieba's `re_han_default`: the characters cut with the dictionary and HMM.
fn is_py_han(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FD5}' | 'a'..='z' | 'A'..='Z' | '0'..='9')
        || matches!(c, '+' | '#' | '&' | '.' | '_' | '%' | '-')
}

/// A non-han block as `jieba.cut` yields it: every character a word, except `\r\n` kept whole
/// (`re_skip_default = (\r\n|\s)` splits it; what is left is yielded char by char).
fn push_skip_block<'a>(block: &'a str, words: &mut Vec<&'a str>) {
    let mut i = 0;
    while let Some(c) = block[i..].chars().next() {
        let len = if block[i..].starts_with("\r\n") {
            2
        } else {
            c.len_utf8()
        };
        words.push(&block[i..i + len]);
        i += len;
    }
}

/// Push a jieba-rs word, split as Python's finalseg would have: only an ASCII word holding one
/// of jieba-rs' connectors `._-` can differ (the dictionary has no such word, so it came from
/// the HMM fallback's alphanumeric splitter), and re-splitting it with Python's pattern gives
/// Python's pieces, since the connector-joined run is bounded where Python's pieces are.
fn push_finalseg_word<'a>(word: &'a str, words: &mut Vec<&'a str>) {
    let b = word.as_bytes();
    if b.len() < 3 || !word.is_ascii() || !b.iter().any(|c| matches!(c, b'.' | b'_' | b'-')) {
        words.push(word);
        return;
    }
    // re.split(r"([a-zA-Z0-9]+(?:\.\d+)?%?)", word), empty pieces dropped.
    let (mut gap, mut i) = (0, 0);
    while i < b.len() {
        if !b[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_alphanumeric() {
            i += 1;
        }
        if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        if i < b.len() && b[i] == b'%' {
            i += 1;
        }
        if gap < start {
            words.push(&word[gap..start]);
        }
        words.push(&word[start..i]);
        gap = i;
    }
    if gap < b.len() {
        words.push(&word[gap..]);
    }
}

/// Python's `round(v * 100, 4)`: Rust's fixed-precision formatting is exact with ties to even,
/// the same decimal rounding as CPython's `round` (`_Py_dg_dtoa` mode 3), parsed back exactly.
fn percent(v: f64) -> f64 {
    round4(v * 100.0)
}

fn round4(x: f64) -> f64 {
    format!("{x:.4}").parse().expect("a formatted f64 parses")
}

/// nltk `sentence_bleu([refr], hyp, smoothing_function=SmoothingFunction().method3)` with the
/// default weights (0.25, 0.25, 0.25, 0.25).
fn bleu4(hyp: &[char], refr: &[char]) -> f64 {
    let mut logs = [0.0; 4];
    let mut zeros = 0; // method3's `incvnt - 1`
    for n in 1..=4 {
        let (matched, total) = modified_precision(hyp, refr, n);
        if n == 1 && matched == 0 {
            // `corpus_bleu` returns 0 when no unigram matches (this covers empty texts too).
            return 0.0;
        }
        // method3 (NIST geometric smoothing): the k-th precision with no match counts as
        // 1 / (2^k · total); the others are the exact fraction matched / total as a float.
        let p = if matched == 0 {
            zeros += 1;
            1.0 / (f64::powi(2.0, zeros) * total as f64)
        } else {
            matched as f64 / total as f64
        };
        logs[n - 1] = 0.25 * p.ln();
    }
    brevity_penalty(refr.len(), hyp.len()) * fsum(&logs).exp()
}

/// nltk `modified_precision`: (clipped n-gram matches, max(1, hypothesis n-grams)).
fn modified_precision(hyp: &[char], refr: &[char], n: usize) -> (usize, usize) {
    let mut counts: HashMap<&[char], usize> = HashMap::new();
    for gram in hyp.windows(n) {
        *counts.entry(gram).or_default() += 1;
    }
    let mut ref_counts: HashMap<&[char], usize> = HashMap::new();
    for gram in refr.windows(n) {
        *ref_counts.entry(gram).or_default() += 1;
    }
    let matched = counts
        .iter()
        .map(|(gram, &c)| c.min(ref_counts.get(gram).copied().unwrap_or(0)))
        .sum();
    (matched, counts.values().sum::<usize>().max(1))
}

/// nltk `brevity_penalty(closest_ref_len, hyp_len)`.
fn brevity_penalty(ref_len: usize, hyp_len: usize) -> f64 {
    if hyp_len > ref_len {
        1.0
    } else if hyp_len == 0 {
        0.0
    } else {
        (1.0 - ref_len as f64 / hyp_len as f64).exp()
    }
}

/// CPython's `math.fsum`: the correctly rounded sum (Shewchuk's partials, then the half-even
/// fix-up across partials). nltk sums the weighted logs with it; a plain sum can be 1 ulp off.
fn fsum(values: &[f64]) -> f64 {
    let mut partials: Vec<f64> = Vec::new();
    for &v in values {
        let mut x = v;
        let mut kept = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        partials.truncate(kept);
        if x != 0.0 {
            partials.push(x);
        }
    }
    let Some(mut hi) = partials.pop() else {
        return 0.0;
    };
    let mut lo = 0.0;
    while let Some(y) = partials.pop() {
        let x = hi;
        hi = x + y;
        lo = y - (hi - x);
        if lo != 0.0 {
            break;
        }
    }
    if let Some(&next) = partials.last() {
        if (lo < 0.0 && next < 0.0) || (lo > 0.0 && next > 0.0) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsum_is_correctly_rounded() {
        assert_eq!(fsum(&[1e-16, 1.0, 1e16]), 10000000000000002.0);
        assert_eq!(fsum(&[0.1; 10]), 1.0);
        assert_eq!(fsum(&[]), 0.0);
    }

    #[test]
    fn percent_rounds_half_even() {
        // Exact binary ties: CPython's round(0.03125, 4) == 0.0312, round(0.09375, 4) == 0.0938.
        assert_eq!(round4(0.03125), 0.0312);
        assert_eq!(round4(0.09375), 0.0938);
    }

    #[test]
    fn finalseg_split() {
        let mut w = Vec::new();
        push_finalseg_word("1.2.3", &mut w);
        push_finalseg_word("COVID-19", &mut w);
        push_finalseg_word("a_b%", &mut w);
        assert_eq!(w, ["1.2", ".", "3", "COVID", "-", "19", "a", "_", "b%"]);
    }
}
