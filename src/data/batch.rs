//! Batches: per-epoch order (seeded shuffle, length-grouped like transformers'
//! `LengthGroupedSampler`) and right-padded collation like `DataCollatorForSeq2Seq`.
use super::encode::{label_count, IGNORE_INDEX};
use tch::{Device, Tensor};

/// `<|endoftext|>`, Qwen3's pad token.
pub const PAD_ID: i64 = 151643;

pub struct Batch {
    /// `(B, T)` token ids, right-padded with `PAD_ID`.
    pub ids: Tensor,
    /// `(B, T)` 1 for tokens, 0 for padding; `None` when nothing is padded.
    pub padding: Option<Tensor>,
    /// `(B, T)` labels, -100 on the prompt and the padding.
    pub labels: Tensor,
    /// Label tokens after the causal shift (what the loss is averaged over).
    pub label_tokens: i64,
    /// `(N)` flat positions (into `B * T`) scored after the causal shift, and `(N)` their
    /// targets: found here on the host, so the loss needs no `nonzero` (a device-to-host wait on
    /// CUDA) to find them.
    pub target_rows: Tensor,
    pub target_ids: Tensor,
    pub tokens: i64,
}

pub fn collate(samples: &[(&[i64], &[i64])], device: Device) -> Batch {
    let t = samples.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    let b = samples.len();
    let (mut ids, mut mask, mut labels) = (
        vec![PAD_ID; b * t],
        vec![0i64; b * t],
        vec![IGNORE_INDEX; b * t],
    );
    let mut tokens = 0;
    for (i, (s_ids, s_labels)) in samples.iter().enumerate() {
        ids[i * t..i * t + s_ids.len()].copy_from_slice(s_ids);
        labels[i * t..i * t + s_labels.len()].copy_from_slice(s_labels);
        mask[i * t..i * t + s_ids.len()]
            .iter_mut()
            .for_each(|m| *m = 1);
        tokens += s_ids.len() as i64;
    }
    // position p is scored on the label at p + 1 of the same row (the shift of `shift_labels`)
    let (mut rows, mut targets) = (vec![], vec![]);
    for (p, &l) in labels.iter().enumerate() {
        if p % t != 0 && l != IGNORE_INDEX {
            rows.push(p as i64 - 1);
            targets.push(l);
        }
    }
    let label_tokens = rows.len() as i64;
    debug_assert_eq!(
        label_tokens,
        samples.iter().map(|(_, l)| label_count(l)).sum::<i64>()
    );
    let shape = [b as i64, t as i64];
    let to = |v: &[i64]| Tensor::from_slice(v).view(shape).to_device(device);
    let padded = tokens < (b * t) as i64;
    Batch {
        ids: to(&ids),
        padding: padded.then(|| to(&mask)),
        labels: to(&labels),
        label_tokens,
        target_rows: Tensor::from_slice(&rows).to_device(device),
        target_ids: Tensor::from_slice(&targets).to_device(device),
        tokens,
    }
}

/// splitmix64: a tiny, well-mixed generator so epoch orders need no RNG crate and are stable
/// across platforms and versions.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The batches of one epoch as lists of sample indices. With `shuffle`, a seeded permutation;
/// with `batch_size > 1`, mega-batches of 50 batches are sorted by length (longest first) so each
/// batch pads little, as `group_by_length` does. Without `shuffle`, file order.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    shuffle: bool,
    seed: i64,
    epoch: i64,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    if shuffle {
        let mut rng =
            SplitMix::new((seed as u64) ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        if batch_size > 1 {
            for mega in order.chunks_mut(batch_size * 50) {
                mega.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
            }
        }
    }
    order.chunks(batch_size).map(|c| c.to_vec()).collect()
}
