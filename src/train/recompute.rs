//! Forward and backward of one micro-batch with per-layer activation recomputation
//! (what `gradient_checkpointing_enable()` does in transformers; tch has no checkpoint API).
//!
//! Layers marked for recomputation run under `no_grad` keeping only their input; during backward
//! each is re-run with grad from that input (a fresh leaf) and the incoming gradient is pushed
//! through it with `(out * g).sum().backward()`, which accumulates parameter gradients and leaves
//! the gradient for the layer below in the leaf's `.grad()`. Runs of layers that are not
//! recomputed keep their graph as usual. The LM head is a boundary too: the loss is computed and
//! backpropagated chunk by chunk (`loss::ChunkedLoss`), so full-vocabulary logits never exist.
//!
//! Dropout (LoRA's) must draw the same mask in both passes, so every layer reseeds the RNG from
//! `(seed, layer)` before it runs: recomputation is exact and a resumed run replays the same masks.
use super::dist::zero::Ready;
use super::loss;
use crate::model::dropout;
use crate::model::qwen3::{Mask, Qwen3};
use tch::Tensor;

enum Segment {
    /// Layers from `first` up run with grad; `input` is the leaf fed to them, `output` their result.
    Stored {
        first: usize,
        input: Tensor,
        output: Tensor,
    },
    /// One layer re-run in backward from its saved input.
    Recompute { layer: usize, input: Tensor },
}

/// Reseeds libtorch's generator (GPU dropout) and the CPU mask stream (`model::dropout`) for
/// `layer`, so that its forward and its recomputation draw the same masks.
fn seed_layer(seed: i64, layer: usize) {
    let s = seed.wrapping_mul(1_000_003).wrapping_add(layer as i64);
    tch::manual_seed(s);
    dropout::reseed(s);
}

/// Which layers to recompute when `n` of `total` are: the first `n` (their inputs are stored in
/// any case; later layers keep full activations). `None` means all.
pub fn plan(total: usize, gradient_checkpointing: bool, n: Option<i64>) -> Vec<bool> {
    let n = if gradient_checkpointing {
        n.map_or(total, |n| (n as usize).min(total))
    } else {
        0
    };
    (0..total).map(|i| i < n).collect()
}

/// Runs forward and backward for one micro-batch, accumulating `scale * d(loss_sum)/d(param)`
/// into every trainable parameter's grad. `targets`: the flat positions scored and their labels
/// (`Batch::target_rows`, `Batch::target_ids`). Returns the summed token loss, on the device (no
/// read of it here: see `crate::host`). `ready` is told when each part's gradients are final (the
/// tail, each layer run, the embedding), in that order.
#[allow(clippy::too_many_arguments)]
pub fn forward_backward(
    net: &Qwen3,
    ids: &Tensor,
    padding: Option<&Tensor>,
    targets: (&Tensor, &Tensor),
    scale: f64,
    recompute: &[bool],
    seed: i64,
    loss: &mut loss::ChunkedLoss,
    ready: &mut dyn FnMut(Ready),
) -> Tensor {
    let rope = net.rope(ids, None, 0);
    let mask = Mask::new(padding, ids.size()[1], 0);
    let mut h = tch::no_grad(|| net.embed(ids)); // (B, T, C)
    let mut segments: Vec<Segment> = vec![];
    let mut i = 0;
    while i < net.layers.len() {
        if recompute[i] {
            let input = h.detach();
            seed_layer(seed, i);
            h = tch::no_grad(|| net.layers[i].forward(&input, &rope, &mask, None, true));
            segments.push(Segment::Recompute { layer: i, input });
            i += 1;
        } else {
            let first = i;
            let input = h.detach().set_requires_grad(true);
            let mut out = input.shallow_clone();
            while i < net.layers.len() && !recompute[i] {
                seed_layer(seed, i);
                out = net.layers[i].forward(&out, &rope, &mask, None, true);
                i += 1;
            }
            h = out.shallow_clone();
            segments.push(Segment::Stored {
                first,
                input,
                output: out,
            });
        }
    }
    // Tail: final norm, then the chunked head as its own boundary.
    let tail_in = h.detach().set_requires_grad(true);
    let hidden = net.norm.forward(&tail_in);
    let (rows, ids_next) = targets;
    let (loss_sum, g_hidden) = loss.backward(&hidden, net.head_weight(), rows, ids_next, scale);
    let kind = hidden.kind();
    (hidden * g_hidden).sum(kind).backward();
    ready(Ready::Tail);
    let mut g = tail_in.grad();
    drop(tail_in);
    while let Some(seg) = segments.pop() {
        let leaf = match seg {
            Segment::Stored {
                first,
                input,
                output,
            } => {
                (output * &g).sum(g.kind()).backward();
                ready(Ready::layer(first));
                input
            }
            Segment::Recompute { layer, input } => {
                let leaf = input.set_requires_grad(true);
                seed_layer(seed, layer);
                let out = net.layers[layer].forward(&leaf, &rope, &mask, None, true);
                (out * &g).sum(g.kind()).backward();
                ready(Ready::layer(layer));
                leaf
            }
        };
        g = leaf.grad();
    }
    // The embedding's gradient goes straight into its `.grad`, row by row: autograd's embedding
    // backward would build a dense `(vocab, hidden)` gradient per micro-batch (155 MB to 1.2 GB
    // for Qwen3 shapes) only to add it there.
    if net.embed_tokens.requires_grad() {
        let c = g.size()[2];
        let mut acc = loss::grad_of(&net.embed_tokens);
        tch::no_grad(|| {
            let _ = acc.index_add_(0, &ids.reshape([-1]), &g.reshape([-1, c]));
        });
    }
    ready(Ready::Embedding);
    loss_sum
}
