//! Causal-LM cross-entropy without full-vocabulary logits (transformers' `ForCausalLMLoss`).
//!
//! transformers upcasts the `(B, T, 151936)` logits to fp32 and shifts labels; here only the rows
//! that carry a label are sent through the head, in chunks, and each chunk's fp32 logits are freed
//! before the next one: peak memory is `chunk x vocab x 4` bytes instead of `B x T x vocab x 4`.
use tch::{Kind, Reduction, Tensor};

/// The label that carries no loss (the data's `IGNORE_INDEX`).
pub use crate::data::encode::IGNORE_INDEX as IGNORE;

/// Rows of the head processed at once (512 x 151936 x 4 B = 311 MB per fp32 logits tensor).
pub use crate::config::DEFAULT_LOSS_CHUNK as DEFAULT_CHUNK;

/// `labels (B, T)` shifted left by one so that position t is scored on token t+1; the last
/// position gets -100.
pub fn shift_labels(labels: &Tensor) -> Tensor {
    let (b, t) = labels.size2().unwrap();
    let pad = Tensor::full([b, 1], IGNORE, (Kind::Int64, labels.device()));
    Tensor::cat(&[&labels.narrow(1, 1, t - 1), &pad], 1)
}

/// Flat indices (into `B * T`) of the positions with a target, and those targets.
pub fn label_rows(shifted: &Tensor) -> (Tensor, Tensor) {
    let flat = shifted.reshape([-1]);
    let idx = flat.ne(IGNORE).nonzero().squeeze_dim(1);
    let targets = flat.index_select(0, &idx);
    (idx, targets)
}

fn chunk_ce(h: &Tensor, head: &Tensor, targets: &Tensor) -> Tensor {
    let logits = h.linear::<&Tensor>(head, None).to_kind(Kind::Float); // (n, V) fp32, as HF upcasts
    logits.cross_entropy_loss::<&Tensor>(targets, None, Reduction::Sum, IGNORE, 0.0)
}

/// Sum of the token losses of `hidden (B, T, C)` at the flat positions `idx (N)` against
/// `targets (N)` (`Batch::target_rows`/`target_ids`, or `label_rows` of shifted labels),
/// differentiable through autograd (each chunk's logits are kept for backward: use for
/// evaluation or small models).
pub fn ce_sum(
    hidden: &Tensor,
    head: &Tensor,
    idx: &Tensor,
    targets: &Tensor,
    chunk: i64,
) -> Tensor {
    let c = hidden.size()[2];
    let h = hidden.reshape([-1, c]).index_select(0, idx); // (N, C)
    let n = idx.size()[0];
    let mut parts = vec![Tensor::zeros([], (Kind::Float, hidden.device()))];
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        parts.push(chunk_ce(
            &h.narrow(0, start, len),
            head,
            &targets.narrow(0, start, len),
        ));
        start += len;
    }
    Tensor::stack(&parts, 0).sum(Kind::Float)
}

/// The training loss over the head, chunk by chunk, with its logits buffers kept across chunks
/// and micro-batches: a fresh `chunk x vocab` tensor per chunk (311 MB in fp32 for 512 rows)
/// costs a page fault per 4 KB page every time, which measured as much time as the head's
/// matrix products on CPU.
pub struct ChunkedLoss {
    /// Label rows sent through the head at once.
    pub chunk: i64,
    /// `(chunk, V)` in the activation dtype: the head's output, later the gradient fed back.
    low: Option<Tensor>,
    /// `(chunk, V)` fp32 (the same tensor as `low` when activations are fp32).
    f32: Option<Tensor>,
}

impl ChunkedLoss {
    pub fn new(chunk: i64) -> Self {
        ChunkedLoss {
            chunk,
            low: None,
            f32: None,
        }
    }

    fn buffers(&mut self, rows: i64, vocab: i64, kind: Kind, dev: tch::Device) -> (Tensor, Tensor) {
        // grow-only: a micro-batch with fewer label rows than the last one uses the same buffers
        let fits = |b: &Option<Tensor>, k: Kind| {
            b.as_ref().is_some_and(|t| {
                t.size()[0] >= rows && t.size()[1] == vocab && t.kind() == k && t.device() == dev
            })
        };
        if !fits(&self.low, kind) || !fits(&self.f32, Kind::Float) {
            let low = Tensor::empty([rows, vocab], (kind, dev));
            self.f32 = Some(if kind == Kind::Float {
                low.shallow_clone()
            } else {
                Tensor::empty([rows, vocab], (Kind::Float, dev))
            });
            self.low = Some(low);
        }
        let (l, f) = (self.low.as_ref().unwrap(), self.f32.as_ref().unwrap());
        (l.shallow_clone(), f.shallow_clone())
    }

    /// Training form: the summed loss and the gradient of `scale * loss` with respect to `hidden`
    /// `(B, T, C)`, the head weight's gradient accumulated into its `.grad` when it requires one.
    /// The caller continues backward from `hidden` with the returned gradient.
    ///
    /// The cross-entropy and its gradient are computed by hand in one reused buffer per chunk:
    /// `loss = logsumexp(z) - z[target]`, `dloss/dz = softmax(z) - onehot(target)`, the softmax
    /// formed in place and the loss scale folded into its normalisation. In autograd the same
    /// chunk allocates the logits, their log-softmax, the gradient of the NLL and that of the
    /// log-softmax. Numerics follow transformers: logits in the activation dtype upcast to fp32,
    /// the gradient cast back to the activation dtype for the two matrix products (what autograd
    /// does through `.float()`).
    ///
    /// `idx (N)` are the flat positions scored and `targets (N)` their labels (from `collate`,
    /// found on the host). The loss stays on the device: reading it per micro-batch would make the
    /// host wait for each micro-batch's work on a GPU.
    pub fn backward(
        &mut self,
        hidden: &Tensor,
        head: &Tensor,
        idx: &Tensor,
        targets: &Tensor,
        scale: f64,
    ) -> (Tensor, Tensor) {
        let chunk = self.chunk;
        let (b, t, c) = hidden.size3().unwrap();
        let (kind, dev) = (hidden.kind(), hidden.device());
        let vocab = head.size()[0];
        let n = idx.size()[0];
        let grad = Tensor::zeros([b * t, c], (kind, dev)); // (B*T, C)
        let mut total = Tensor::zeros([], (Kind::Double, dev)); // chunks summed in f64, as before on the host
        if n == 0 {
            return (total, grad.view([b, t, c]));
        }
        let head_grad = head.requires_grad().then(|| grad_of(head));
        tch::no_grad(|| {
            let rows = hidden.detach().reshape([-1, c]).index_select(0, idx); // (N, C)
            let grad_rows = Tensor::empty([n, c], (kind, dev)); // (N, C)
            let (low, f32) = self.buffers(chunk.min(n), vocab, kind, dev);
            let mut start = 0;
            while start < n {
                let len = chunk.min(n - start);
                let h = rows.narrow(0, start, len); // (n, C)
                let tgt = targets.narrow(0, start, len).unsqueeze(1); // (n, 1)
                let (mut z_low, mut z) = (low.narrow(0, 0, len), f32.narrow(0, 0, len)); // (n, V)
                let _ = h.mm_out(&z_low, &head.tr());
                if kind != Kind::Float {
                    z.copy_(&z_low);
                }
                // logsumexp and the scaled softmax in place (at::logsumexp would allocate a
                // second (n, V) tensor for exp(z - max))
                let target = z.gather(1, &tgt, false); // (n, 1)
                let max = z.amax(1, true); // (n, 1)
                let _ = z.g_sub_(&max).exp_();
                let sum = z.sum_dim_intlist(1, true, Kind::Float); // (n, 1)
                let lse = sum.log() + max;
                let _ = total.g_add_(&(lse - target).sum(Kind::Float));
                let _ = z.g_div_(&(sum / scale)); // scale * softmax
                let _ =
                    z.scatter_add_(1, &tgt, &Tensor::full([len, 1], -scale, (Kind::Float, dev)));
                if kind != Kind::Float {
                    z_low.copy_(&z);
                }
                let _ = z_low.mm_out(&grad_rows.narrow(0, start, len), head); // (n, C)
                if let Some(mut g) = head_grad.as_ref().map(Tensor::shallow_clone) {
                    let _ = g.addmm_(&z_low.tr(), &h); // (V, C)
                }
                start += len;
            }
            let grad = grad.index_add(0, idx, &grad_rows);
            (total, grad.view([b, t, c]))
        })
    }
}

/// The `.grad` of a leaf, created (zero) if autograd has not made one yet: tch cannot assign
/// `.grad`, so one backward through `w * 0` makes it, once per run.
pub fn grad_of(w: &Tensor) -> Tensor {
    let g = w.grad();
    if g.defined() {
        return g;
    }
    (w * 0.0).sum(Kind::Float).backward();
    w.grad()
}
