//! Evaluation loss: the mean cross-entropy over every label token of a data set (sum over tokens /
//! number of label tokens, as transformers reports with `num_items_in_batch`), in file order,
//! padded batches, no grad. The trainer's `eval/loss` and `qwen3-sft eval` are this function.
use super::loss;
use crate::data::batch::collate;
use crate::data::encode::Encoded;
use crate::model::qwen3::Qwen3;

/// `(mean loss, label tokens)`; batches are formed in file order, so the result does not depend
/// on `batch_size` beyond floating-point summation order.
pub fn eval_loss(net: &Qwen3, data: &[Encoded], batch_size: i64, chunk: i64) -> (f64, i64) {
    let device = net.embed_tokens.device();
    let (mut sum, mut count) = (0.0, 0i64);
    tch::no_grad(|| {
        for idx in data.chunks(batch_size.max(1) as usize) {
            let samples: Vec<(&[i64], &[i64])> = idx
                .iter()
                .map(|e| (e.input_ids.as_slice(), e.labels.as_slice()))
                .collect();
            let b = collate(&samples, device);
            let hidden = net.forward(&b.ids, b.padding.as_ref(), None, false);
            let head = net.head_weight();
            let batch_sum = loss::ce_sum(&hidden, head, &b.target_rows, &b.target_ids, chunk);
            sum += batch_sum.double_value(&[]);
            count += b.label_tokens;
        }
    });
    (sum / count.max(1) as f64, count)
}
