//! AdamW8bit's state as checkpoints hold it: bnb's state names and dtypes, borrowed for writing
//! and copied back on resume.
use super::{blockwise, AdamW8bit, Moments, BLOCK};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use tch::{Device, Tensor};

/// A tensor's elements as `T` (`what` names it in errors).
fn elements<T: tch::kind::Element + Copy>(t: &Tensor, n: usize, what: &str) -> Result<Vec<T>> {
    anyhow::ensure!(
        t.kind() == T::KIND && t.numel() == n,
        "optimizer state `{what}` is {:?} of {} elements, expected {:?} of {n}",
        t.kind(),
        t.numel(),
        T::KIND
    );
    Vec::<T>::try_from(&t.to_device(Device::Cpu).reshape([-1]))
        .with_context(|| format!("cannot read optimizer state `{what}`"))
}

/// A state tensor's values, borrowed from the optimizer.
pub enum State<'a> {
    Codes(&'a [u8]),
    Values(&'a [f32]),
}

impl AdamW8bit {
    /// The moments under bnb's state names: `state1.<name>` and `state2.<name>` (u8 codes, or f32
    /// for small tensors), `absmax1.<name>` and `absmax2.<name>` (f32, quantized ones only).
    /// Saved and loaded as they are, so a resumed run continues bit for bit.
    pub fn state(&self) -> Vec<(String, State<'_>)> {
        let mut out: Vec<(String, State<'_>)> = vec![];
        for p in &self.params {
            let mut put = |key: &str, s| out.push((format!("{key}.{}", p.name), s));
            match &p.moments {
                Moments::Full { m, v } => {
                    put("state1", State::Values(m));
                    put("state2", State::Values(v));
                }
                Moments::Quantized {
                    m,
                    v,
                    absmax_m,
                    absmax_v,
                } => {
                    put("state1", State::Codes(m));
                    put("state2", State::Codes(v));
                    put("absmax1", State::Values(absmax_m));
                    put("absmax2", State::Values(absmax_v));
                }
            }
        }
        out
    }

    /// [`AdamW8bit::state`] copied into tensors, with the metadata `optimizer = adamw8bit`.
    pub fn state_tensors(&self) -> (Vec<(String, Tensor)>, BTreeMap<String, String>) {
        let out = self
            .state()
            .into_iter()
            .map(|(name, s)| match s {
                State::Codes(c) => (name, Tensor::from_slice(c)),
                State::Values(v) => (name, Tensor::from_slice(v)),
            })
            .collect();
        let meta = [("optimizer".to_string(), "adamw8bit".to_string())].into();
        (out, meta)
    }

    /// Restores every parameter's moments from `saved` (as `state_tensors` names them).
    pub fn load_state(&mut self, saved: &HashMap<String, Tensor>, step: i64) -> Result<()> {
        for p in &mut self.params {
            let n = p.tensor.numel();
            let get = |key: &str| {
                let name = format!("{key}.{}", p.name);
                let t = saved
                    .get(&name)
                    .with_context(|| format!("optimizer state has no `{name}`"))?;
                Ok::<_, anyhow::Error>((t, name))
            };
            match &mut p.moments {
                Moments::Full { m, v } => {
                    let (t, key) = get("state1")?;
                    *m = elements(t, n, &key)?;
                    let (t, key) = get("state2")?;
                    *v = elements(t, n, &key)?;
                }
                Moments::Quantized {
                    m,
                    v,
                    absmax_m,
                    absmax_v,
                } => {
                    let blocks = blockwise::blocks(n, BLOCK);
                    let (t, key) = get("state1")?;
                    *m = elements(t, n, &key)?;
                    let (t, key) = get("state2")?;
                    *v = elements(t, n, &key)?;
                    let (t, key) = get("absmax1")?;
                    *absmax_m = elements(t, blocks, &key)?;
                    let (t, key) = get("absmax2")?;
                    *absmax_v = elements(t, blocks, &key)?;
                }
            }
        }
        self.step = step;
        Ok(())
    }
}
