//! Causal-LM cross-entropy without full-vocabulary logits (transformers' `ForCausalLMLoss`).
//!
//! transformers upcasts the `(B, T, 151936)` logits to fp32 and shifts labels; here only the rows
//! that carry a label are sent through the head, in chunks, and each chunk's fp32 logits are freed
//! before the next one: peak memory is `chunk x vocab x 4` bytes instead of `B x T x vocab x 4`.
use tch::{Kind, Reduction, Tensor};

pub const IGNORE: i64 = -100;

/// Rows of the head processed at once (512 x 151936 x 4 B = 311 MB per fp32 logits tensor).
pub const DEFAULT_CHUNK: i64 = 512;

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

/// Sum of the token losses of `hidden (B, T, C)` against shifted labels, differentiable through
/// autograd (each chunk's logits are kept for backward: use for evaluation or small models).
pub fn ce_sum(hidden: &Tensor, head: &Tensor, shifted: &Tensor, chunk: i64) -> Tensor {
    let c = hidden.size()[2];
    let (idx, targets) = label_rows(shifted);
    let h = hidden.reshape([-1, c]).index_select(0, &idx); // (N, C)
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

/// Training form: the summed loss and the gradient of `scale * loss` with respect to `hidden`,
/// backpropagated into the head weight (when it requires grad) chunk by chunk, so no chunk's
/// logits outlive its own backward. `hidden` is read as a leaf; the caller continues backward
/// from it with the returned gradient `(B, T, C)`.
pub fn ce_backward(
    hidden: &Tensor,
    head: &Tensor,
    shifted: &Tensor,
    scale: f64,
    chunk: i64,
) -> (f64, Tensor) {
    let (b, t, c) = hidden.size3().unwrap();
    let (idx, targets) = label_rows(shifted);
    let rows = hidden
        .detach()
        .reshape([-1, c])
        .index_select(0, &idx)
        .set_requires_grad(true); // (N, C)
    let n = idx.size()[0];
    let mut total = 0.0;
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let loss = chunk_ce(
            &rows.narrow(0, start, len),
            head,
            &targets.narrow(0, start, len),
        );
        total += loss.double_value(&[]);
        (loss * scale).backward();
        start += len;
    }
    let grad_rows = if n > 0 {
        rows.grad()
    } else {
        rows.zeros_like()
    };
    let grad = Tensor::zeros([b * t, c], (hidden.kind(), hidden.device())).index_add(
        0,
        &idx,
        &grad_rows.to_kind(hidden.kind()),
    );
    (total, grad.view([b, t, c]))
}
