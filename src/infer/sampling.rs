//! Choosing the next token from fp32 logits: greedy (argmax) or sampling with temperature, top-k
//! and top-p, in the order transformers applies its warpers (`generation/logits_process.py`:
//! `TemperatureLogitsWarper`, `TopKLogitsWarper`, `TopPLogitsWarper`, then softmax and a draw).
//!
//! The draw uses this module's own seeded generator (xoshiro256**), so a seed reproduces a run
//! exactly and nothing else in the process (dropout, init) moves it. The same seed does not give
//! the tokens torch's `multinomial` would: only the filtered distribution is transformers'.
use crate::data::batch::SplitMix;
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// How the next token is chosen. `do_sample: false` is greedy and ignores the rest.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    pub do_sample: bool,
    pub temperature: f64,
    /// 0 disables top-k.
    pub top_k: usize,
    /// 1.0 disables top-p.
    pub top_p: f64,
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            do_sample: false,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !self.do_sample {
            return Ok(());
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            bail!(
                "temperature must be > 0 (got {}); use --greedy for argmax decoding",
                self.temperature
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            bail!("top_p must be in (0, 1] (got {})", self.top_p);
        }
        Ok(())
    }
}

/// A small seeded generator (xoshiro256**, seeded through splitmix64).
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut s = SplitMix::new(seed);
        Rng([s.next_u64(), s.next_u64(), s.next_u64(), s.next_u64()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The distribution sampling draws from for one row of logits: `(token id, probability)` of the
/// tokens that survive the filters, most likely first; probabilities sum to one.
pub fn filtered_probs(row: &Tensor, p: &SamplingParams) -> Vec<(i64, f64)> {
    // `to_kind` of fp32 logits is the caller's tensor itself: divide out of place, never `/=`.
    let row = row.to_kind(Kind::Float).flatten(0, -1); // (V)
    let row = if p.temperature != 1.0 {
        row / p.temperature
    } else {
        row
    };
    let v = row.size()[0];
    // Candidates, sorted descending: only the top-k when it is on (cheap `topk` instead of sorting
    // the 151,936-wide vocabulary), widened to every token tied with the k-th as transformers keeps them.
    let (vals, idx) = if p.top_k > 0 && (p.top_k as i64) < v {
        let (tv, _) = row.topk(p.top_k as i64, -1, true, true);
        let kth = tv.double_value(&[p.top_k as i64 - 1]);
        let keep = row.ge(kth).sum(Kind::Int64).int64_value(&[]);
        row.topk(keep, -1, true, true)
    } else {
        row.sort(-1, true)
    };
    let vals: Vec<f32> = Vec::try_from(&vals).expect("fp32 logits");
    let idx: Vec<i64> = Vec::try_from(&idx).expect("int64 indices");
    // Softmax over the candidates in f64 (filtered tokens have probability zero).
    let max = vals[0] as f64;
    let mut probs: Vec<f64> = vals.iter().map(|&x| (x as f64 - max).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|q| *q /= total);
    let mut keep = probs.len();
    if p.top_p < 1.0 {
        // transformers sorts ascending and drops tokens whose cumulative probability is
        // <= 1 - top_p, always keeping the most likely one. Walk from the least likely up.
        let mut cum = 0.0;
        let mut dropped = 0;
        for &q in probs.iter().rev() {
            cum += q;
            if cum <= 1.0 - p.top_p && dropped + 1 < probs.len() {
                dropped += 1;
            } else {
                break;
            }
        }
        keep = probs.len() - dropped;
    }
    let kept: f64 = probs[..keep].iter().sum();
    idx[..keep]
        .iter()
        .zip(&probs[..keep])
        .map(|(&i, &q)| (i, q / kept))
        .collect()
}

/// Picks next tokens for a batch of logits, keeping the random state between steps.
pub struct Sampler {
    pub params: SamplingParams,
    rng: Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams, seed: u64) -> Self {
        Sampler {
            params,
            rng: Rng::new(seed),
        }
    }

    /// `logits`: `(B, V)` fp32 for the last position of each row; one token id per row.
    pub fn pick(&mut self, logits: &Tensor) -> Vec<i64> {
        if !self.params.do_sample {
            // torch's argmax returns the first maximum, as transformers' greedy search does.
            return Vec::try_from(&logits.argmax(-1, false)).expect("int64 ids");
        }
        (0..logits.size()[0])
            .map(|b| {
                let dist = filtered_probs(&logits.get(b), &self.params);
                let u = self.rng.uniform();
                let mut cum = 0.0;
                for &(id, q) in &dist {
                    cum += q;
                    if u < cum {
                        return id;
                    }
                }
                dist.last()
                    .expect("at least one token survives the filters")
                    .0
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f64, top_k: usize, top_p: f64) -> SamplingParams {
        SamplingParams {
            do_sample: true,
            temperature,
            top_k,
            top_p,
        }
    }

    fn probs_of(logits: &[f32], p: &SamplingParams) -> Vec<(i64, f64)> {
        filtered_probs(&Tensor::from_slice(logits), p)
    }

    /// softmax of ln(q) is q: the probabilities below are checkable by hand.
    fn ln(q: &[f64]) -> Vec<f32> {
        q.iter().map(|x| x.ln() as f32).collect()
    }

    #[test]
    fn top_k_keeps_the_k_largest_renormalised() {
        let got = probs_of(&ln(&[0.1, 0.4, 0.2, 0.3]), &params(1.0, 2, 1.0));
        assert_eq!(got.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 3]);
        assert!(
            (got[0].1 - 0.4 / 0.7).abs() < 1e-6 && (got[1].1 - 0.3 / 0.7).abs() < 1e-6,
            "{got:?}"
        );
    }

    #[test]
    fn top_k_keeps_ties_with_the_kth() {
        let got = probs_of(&[1.0, 3.0, 3.0, 2.0], &params(1.0, 1, 1.0));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!((got[0].1 - 0.5).abs() < 1e-9);
    }

    #[test]
    fn top_p_drops_the_tail_below_the_mass() {
        // sorted: 0.5, 0.3, 0.15, 0.05; top_p 0.75: the tail 0.05 + 0.15 = 0.2 <= 0.25 goes,
        // adding 0.3 would exceed it, so 0.5 and 0.3 stay.
        let got = probs_of(&ln(&[0.05, 0.3, 0.5, 0.15]), &params(1.0, 0, 0.75));
        assert_eq!(got.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 1]);
        assert!((got[0].1 - 0.625).abs() < 1e-6, "{got:?}");
        // A tiny top_p still keeps the most likely token.
        let got = probs_of(&ln(&[0.05, 0.3, 0.5, 0.15]), &params(1.0, 0, 0.01));
        assert_eq!(got, vec![(2, 1.0)]);
    }

    #[test]
    fn temperature_sharpens_before_filtering() {
        // logits ln(0.6), ln(0.4) at T = 0.5 become 0.36 : 0.16.
        let got = probs_of(&ln(&[0.6, 0.4]), &params(0.5, 0, 1.0));
        assert!((got[0].1 - 0.36 / 0.52).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn greedy_takes_the_argmax_per_row() {
        let logits = Tensor::from_slice(&[0.0f32, 2.0, 1.0, 5.0, 4.0, 3.0]).view([2, 3]);
        assert_eq!(
            Sampler::new(SamplingParams::greedy(), 0).pick(&logits),
            vec![1, 0]
        );
    }

    #[test]
    fn sampling_follows_the_distribution_and_the_seed() {
        let logits = Tensor::from_slice(&ln(&[0.7, 0.2, 0.1])).view([1, 3]);
        let mut s = Sampler::new(params(1.0, 2, 1.0), 3);
        let draws: Vec<i64> = (0..4000).map(|_| s.pick(&logits)[0]).collect();
        let share = draws.iter().filter(|&&t| t == 0).count() as f64 / draws.len() as f64;
        assert!(
            (share - 0.7 / 0.9).abs() < 0.03,
            "share of token 0: {share}"
        );
        assert!(!draws.contains(&2), "top-k 2 must never draw token 2");
        let mut again = Sampler::new(params(1.0, 2, 1.0), 3);
        assert_eq!(
            draws,
            (0..4000)
                .map(|_| again.pick(&logits)[0])
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn bad_params_are_rejected() {
        assert!(params(0.0, 0, 1.0).validate().is_err());
        assert!(params(1.0, 0, 1.5).validate().is_err());
        assert!(params(1.0, 0, 0.0).validate().is_err());
    }
}
