//! ROUGE-1/2/L F-scores as rouge-chinese 1.0.3 computes them (`Rouge().get_scores(hyp, ref)[0]`
//! with the defaults: metrics rouge-1, rouge-2, rouge-l; `exclusive=True`), over texts that are
//! already words joined by spaces (eval_bleu_rouge.py passes `" ".join(jieba.cut(text))`).
//!
//! What rouge-chinese does, and this mirrors:
//! - `cut_sent` breaks the text into sentences with four regex substitutions, `rstrip()`s it and
//!   splits on `\n` (so the text's own newlines split too); each non-empty sentence is
//!   whitespace-normalised (`" ".join(s.split())`), then all are flattened with `s.split(" ")`:
//!   a sentence of whitespace only becomes one empty word `""`, which counts like any other.
//! - ROUGE-N (`rouge_n`, exclusive): the *sets* of distinct n-grams of the flattened words
//!   (n-grams run across sentence boundaries); repeated n-grams count once.
//! - ROUGE-L (`rouge_l_summary_level`, despite its name): the plain LCS length of the flattened
//!   word lists, not a union-LCS over sentences.
//! - Every F is `2 * (p * r) / (p + r + 1e-8)` (an F1 with an epsilon, no beta), with p or r 0
//!   when its count is 0.

use std::collections::HashSet;

/// `[rouge-1 f, rouge-2 f, rouge-l f]` of `hyp` against `refr`. Both must hold a non-whitespace
/// character (eval_bleu_rouge.py checks; rouge-chinese raises otherwise).
pub(crate) fn f_scores(hyp: &str, refr: &str) -> [f64; 3] {
    let h = words(hyp);
    let r = words(refr);
    [rouge_n(&h, &r, 1), rouge_n(&h, &r, 2), rouge_l(&h, &r)]
}

/// rouge-chinese's `f_r_p_rouge_n` / `rouge_l_summary_level` F, same operation order.
fn f1(p: f64, r: f64) -> f64 {
    2.0 * ((p * r) / (p + r + 1e-8))
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn rouge_n(hyp: &[String], refr: &[String], n: usize) -> f64 {
    let h: HashSet<&[String]> = hyp.windows(n).collect();
    let r: HashSet<&[String]> = refr.windows(n).collect();
    let overlap = h.intersection(&r).count();
    f1(ratio(overlap, h.len()), ratio(overlap, r.len()))
}

fn rouge_l(hyp: &[String], refr: &[String]) -> f64 {
    let lcs = lcs_len(refr, hyp);
    f1(ratio(lcs, hyp.len()), ratio(lcs, refr.len()))
}

/// Length of the longest common subsequence (rouge-chinese's `_len_lcs`), two DP rows.
fn lcs_len(x: &[String], y: &[String]) -> usize {
    let mut prev = vec![0usize; y.len() + 1];
    let mut curr = vec![0usize; y.len() + 1];
    for a in x {
        for (j, b) in y.iter().enumerate() {
            curr[j + 1] = if a == b {
                prev[j] + 1
            } else {
                prev[j + 1].max(curr[j])
            };
        }
        std::mem::swap(&mut prev, &mut curr);
    }
    prev[y.len()]
}

/// The flattened words `_get_scores` and `_split_into_words` make of a text.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for sentence in cut_sent(text) {
        if sentence.is_empty() {
            continue; // `if len(_) > 0`, tested before normalising
        }
        let len = out.len();
        out.extend(
            sentence
                .split(py_space)
                .filter(|w| !w.is_empty())
                .map(String::from),
        );
        if out.len() == len {
            out.push(String::new()); // "".split(" ") == [""]
        }
    }
    out
}

const CLOSE_QUOTES: [char; 2] = ['”', '’'];
const STOPS: [char; 4] = ['。', '！', '？', '?'];

/// rouge-chinese `Rouge.cut_sent`: the four `re.sub`s in order, then `rstrip().split("\n")`.
fn cut_sent(para: &str) -> Vec<String> {
    let s: Vec<char> = para.chars().collect();
    let not_quote = |c: char| !CLOSE_QUOTES.contains(&c);
    // ([。！？\?])([^”’])
    let s = break_after(&s, 1, |h| STOPS.contains(&h[0]), not_quote);
    // (\.{6})([^”’])
    let s = break_after(&s, 6, |h| h.iter().all(|&c| c == '.'), not_quote);
    // (\…{2})([^”’])
    let s = break_after(&s, 2, |h| h.iter().all(|&c| c == '…'), not_quote);
    // ([。！？\?][”’])([^，。！？\?])
    let s = break_after(
        &s,
        2,
        |h| STOPS.contains(&h[0]) && CLOSE_QUOTES.contains(&h[1]),
        |c| c != '，' && !STOPS.contains(&c),
    );
    let text: String = s.into_iter().collect();
    text.trim_end_matches(py_space)
        .split('\n')
        .map(String::from)
        .collect()
}

/// `re.sub(r"(HEAD)(TAIL)", r"\1\n\2", s)` for a HEAD of `width` characters and a one-character
/// TAIL: a left-to-right scan, resuming after each replaced match (matches do not overlap).
fn break_after(
    s: &[char],
    width: usize,
    head: impl Fn(&[char]) -> bool,
    tail: impl Fn(char) -> bool,
) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len() + s.len() / 8);
    let mut i = 0;
    while i < s.len() {
        if i + width < s.len() && head(&s[i..i + width]) && tail(s[i + width]) {
            out.extend_from_slice(&s[i..i + width]);
            out.push('\n');
            out.push(s[i + width]);
            i += width + 1;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Python's `str.isspace()`: Unicode White_Space plus the ASCII separators U+001C–U+001F, which
/// `str.split()` / `str.rstrip()` also treat as whitespace (Rust's `char::is_whitespace` does not).
pub(crate) fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_sent_mirrors_the_regexes() {
        assert_eq!(cut_sent("a。。。b"), ["a。", "。。", "b"]);
        assert_eq!(cut_sent("好。”然后"), ["好。”", "然后"]);
        assert_eq!(cut_sent("a\n \nb  "), ["a", " ", "b"]);
        assert_eq!(words("a\n \nb  c"), ["a", "", "b", "c"]);
    }
}
