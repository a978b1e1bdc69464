//! One optimizer step of the Trainer: the next window of batches, this rank's share of it
//! forward and backward (gradients synchronised over ranks as they become final), clipping by
//! the global norm, AdamW, and ZeRO's gather of the updated parameters.
use super::Trainer;
use crate::config::ZeroStage;
use crate::data::batch::{collate, epoch_batches};
use crate::host;
use crate::train::dist::zero::Sync;
use crate::train::{checkpoint, optim, recompute};
use anyhow::{bail, Context, Result};
use std::time::Instant;
use tch::{Kind, Tensor};

impl Trainer<'_> {
    /// The next accumulation window's batches (sample indices) for all ranks, moving to the next
    /// epoch when this one is used up.
    fn next_window(&mut self) -> Vec<Vec<usize>> {
        let t = &self.cfg.train;
        loop {
            let epoch = self.state.epoch;
            if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
                let lengths: Vec<usize> =
                    self.train_set.iter().map(|e| e.input_ids.len()).collect();
                let batches = epoch_batches(
                    &lengths,
                    t.batch_size.get() as usize,
                    t.shuffle,
                    t.seed,
                    epoch,
                );
                self.order = Some((epoch, batches));
            }
            let batches = &self.order.as_ref().expect("set above").1;
            if self.state.batches_done < batches.len() {
                let take = t.grad_accum.get() as usize * self.world.size;
                let end = (self.state.batches_done + take).min(batches.len());
                let window = batches[self.state.batches_done..end].to_vec();
                self.state.batches_done = end;
                self.state.epoch_float = epoch as f64 + end as f64 / batches.len() as f64;
                return window;
            }
            self.state.epoch += 1;
            self.state.batches_done = 0;
        }
    }

    /// One optimizer step over the next window: forward and backward of each micro-batch,
    /// gradients summed over ranks, clipping, AdamW at this step's learning rate.
    pub fn step(&mut self) -> Result<()> {
        let t = &self.cfg.train;
        let started = Instant::now();
        let window = self.next_window();
        let (loss_sum, labels, mine) = self.accumulate(&window)?;
        // the step's one device-to-host read: this rank's loss and squared gradient norm together
        let grads = self.opt.grads();
        let read = host::values(&Tensor::stack(&[loss_sum, optim::squared_norm(&grads)], 0));
        let sharded = self.sync.as_ref().is_some_and(Sync::sharded);
        // each rank holds a shard of the gradients under ZeRO, else all of them
        let local = if sharded { read[1] } else { 0.0 };
        let all = self.world.sum(&[read[0], mine as f64, local])?;
        let (tokens, squared) = (all[1] as i64, if sharded { all[2] } else { read[1] });
        let step_loss = all[0] / labels.max(1) as f64;
        if !step_loss.is_finite() {
            self.opt.zero_grad();
            let last = checkpoint::list(&t.output_dir)
                .pop()
                .map(|(_, p)| p.display().to_string());
            bail!(
                "loss is {step_loss} at step {}; stopping. Last good checkpoint: {}",
                self.state.global_step + 1,
                last.unwrap_or_else(|| "none yet".into())
            );
        }
        let grad_norm = squared.sqrt();
        optim::clip_to(&grads, grad_norm, t.max_grad_norm.get());
        let lr = optim::linear_lr(
            t.lr.get(),
            self.state.global_step,
            t.warmup_steps.get(),
            self.state.max_steps,
        );
        self.opt.step(lr);
        if let (Some(sync), Some(group)) = (&mut self.sync, self.world.group()) {
            sync.gather_params(group)
                .with_context(|| self.world.lost())?;
            sync.zero_grads();
        }
        self.opt.zero_grad();
        self.state.global_step += 1;
        let seconds = started.elapsed().as_secs_f64();
        self.speed = (
            self.speed.0 + mine,
            self.speed.1 + seconds,
            self.speed.2 + 1,
        );
        self.window.add(
            step_loss,
            tokens,
            started.elapsed().as_secs_f64(),
            grad_norm,
            lr,
        );
        self.progress.stepped(
            self.state.global_step,
            step_loss,
            lr,
            self.window.tokens_per_sec(),
        );
        Ok(())
    }

    /// Forward and backward over this rank's part of one accumulation window: batches
    /// `rank * accum ..` of it. The loss is normalised by the label tokens of the whole window
    /// over all ranks (transformers' `num_items_in_batch`), not per micro-batch or per rank.
    /// Returns this rank's loss sum (on the device), the window's label tokens over all ranks,
    /// and this rank's tokens.
    fn accumulate(&mut self, window: &[Vec<usize>]) -> Result<(Tensor, i64, i64)> {
        let t = &self.cfg.train;
        let net = &self.opened.model.net;
        let device = self.opened.model.device();
        let batch = |idx: &Vec<usize>| {
            let samples: Vec<(&[i64], &[i64])> = idx
                .iter()
                .map(|&i| {
                    let e = &self.train_set[i];
                    (e.input_ids.as_slice(), e.labels.as_slice())
                })
                .collect();
            collate(&samples, device)
        };
        let batches: Vec<_> = window.iter().map(batch).collect();
        let labels: i64 = batches.iter().map(|b| b.label_tokens).sum();
        let scale = 1.0 / labels.max(1) as f64;
        let accum = t.grad_accum.get() as usize;
        let first = (self.world.rank * accum).min(batches.len());
        let mine = &batches[first..(first + accum).min(batches.len())];
        // ZeRO-2 reduces every micro-batch: every rank then runs `accum` rounds (some empty)
        let every = self
            .sync
            .as_ref()
            .is_some_and(|s| s.stage() == ZeroStage::Gradients);
        let rounds = if every { accum } else { mine.len().max(1) };
        let (step, group) = (self.state.global_step, self.world.group());
        let mut loss_sum = Tensor::zeros([], (Kind::Double, device)); // micro-batches summed in f64
        let mut failed = None;
        for round in 0..rounds {
            // this round's gradients are reduced when final: every round for ZeRO-2, else the last
            let reduce = every || round + 1 == rounds;
            let mut ready = |point| {
                if let (true, Some(s), Some(g), None) = (reduce, &mut self.sync, group, &failed) {
                    failed = s.ready(g, point).err();
                }
            };
            if let Some(b) = mine.get(round) {
                // dropout masks are a function of (seed, step, micro-batch of the whole window):
                // a resumed run replays them, and any world size draws the same ones
                let micro = (first + round) as i64;
                let seed = t.seed.wrapping_mul(7_919).wrapping_add(step * 64 + micro);
                loss_sum += recompute::forward_backward(
                    net,
                    &b.ids,
                    b.padding.as_ref(),
                    (&b.target_rows, &b.target_ids),
                    scale,
                    &self.recompute,
                    seed,
                    &mut self.head_loss,
                    &mut ready,
                );
            }
            if let Some(e) = failed.take() {
                return Err(e.context(self.world.lost()));
            }
            if let (true, Some(s), Some(g)) = (reduce, &mut self.sync, group) {
                s.finish(g).with_context(|| self.world.lost())?;
            }
        }
        let tokens: i64 = mine.iter().map(|b| b.tokens).sum();
        Ok((loss_sum, labels, tokens))
    }
}
