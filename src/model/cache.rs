//! The KV cache of one decoder layer (transformers' `DynamicLayer`, preallocated instead of `cat`).
use tch::{Kind, Tensor};

/// Keys and values of one layer for decoding: `(B, KV, capacity, D)` buffers whose first `len`
/// positions are filled. A step writes its new positions in place, so decoding does not copy the
/// whole past every token (as `cat` would); the buffers double when full.
/// `kind` is the dtype attention runs in while decoding (see `generate`: fp32 on CPUs, where
/// libtorch's bf16 attention kernels are slow; the model's dtype on GPUs).
pub struct LayerCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: i64,
    pub(crate) kind: Kind,
}

impl LayerCache {
    pub fn new(kind: Kind) -> Self {
        LayerCache {
            k: None,
            v: None,
            len: 0,
            kind,
        }
    }

    /// Positions cached so far.
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `(B, KV, T, D)` keys and values; returns views of all cached ones `(B, KV, len, D)`.
    pub(crate) fn append(&mut self, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let t = k.size()[2];
        let cap = self.k.as_ref().map_or(0, |b| b.size()[2]);
        if self.len + t > cap {
            let cap = (self.len + t).max(2 * cap).max(64);
            let grow = |old: &Option<Tensor>, new: &Tensor| {
                let (b, kv, _, d) = new.size4().unwrap();
                let buf = Tensor::zeros([b, kv, cap, d], (self.kind, new.device()));
                if let Some(o) = old {
                    buf.narrow(2, 0, self.len).copy_(&o.narrow(2, 0, self.len));
                }
                buf
            };
            self.k = Some(grow(&self.k, k));
            self.v = Some(grow(&self.v, v));
        }
        let (kb, vb) = (self.k.as_ref().unwrap(), self.v.as_ref().unwrap());
        kb.narrow(2, self.len, t).copy_(k);
        vb.narrow(2, self.len, t).copy_(v);
        self.len += t;
        (kb.narrow(2, 0, self.len), vb.narrow(2, 0, self.len))
    }

    /// Keeps the batch rows `idx` and drops the first `trim` positions (padding no row needs).
    pub fn retain(&mut self, idx: &Tensor, trim: i64) {
        for buf in [&mut self.k, &mut self.v].into_iter().flatten() {
            let kept = buf.index_select(0, idx);
            *buf = kept.narrow(2, trim, kept.size()[2] - trim);
        }
        self.len -= trim;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Appending through several capacity doublings, with rows dropped and padding trimmed on the
    /// way, holds exactly what concatenation would.
    #[test]
    fn appends_and_retains_like_cat() {
        let mut cache = LayerCache::new(Kind::Float);
        let new = |b: i64, t: i64| Tensor::randn([b, 2, t, 4], (Kind::Float, Device::Cpu));
        let (k0, v0) = (new(3, 5), new(3, 5));
        let (mut rk, mut rv) = (k0.copy(), v0.copy());
        let _ = cache.append(&k0, &v0);
        for step in 0..150 {
            if step == 40 {
                let idx = Tensor::from_slice(&[0i64, 2]);
                cache.retain(&idx, 3);
                let cut = |t: &Tensor| t.index_select(0, &idx).narrow(2, 3, t.size()[2] - 3);
                (rk, rv) = (cut(&rk), cut(&rv));
            }
            let b = rk.size()[0];
            let (k, v) = (new(b, 1), new(b, 1));
            let (ck, cv) = cache.append(&k, &v);
            rk = Tensor::cat(&[&rk, &k], 2);
            rv = Tensor::cat(&[&rv, &v], 2);
            assert_eq!(cache.len(), rk.size()[2]);
            assert!(
                ck.equal(&rk) && cv.equal(&rv),
                "step {step}: cache differs from cat"
            );
        }
    }
}
