//! Qwen3 dense decoder (mirrors transformers' `models/qwen3/modeling_qwen3.py`).
//!
//! Var-store paths are the HF parameter names (`model.layers.3.self_attn.q_proj.weight`), so a
//! checkpoint loads with no mapping table. The forward is stateless: ids, padding mask and optional
//! positions in, final hidden states out; `logits` applies the head. Decoding passes a `LayerCache`
//! per layer (cache.rs) explicitly instead of keeping state in the layers. Layers are public so the
//! trainer can run them one at a time (activation recomputation).
use super::cache::LayerCache;
use super::config::Config;
use super::lora::{Linear, LoraConfig};
pub use super::norm::RmsNorm;
pub use super::rope::{Mask, Rope};
use tch::{nn, Device, Kind, Tensor};

/// How the parameters are made: their dtype, LoRA adapters, and whether the decoder's linear
/// weights are NF4 (then outside the var store, filled in by the loader).
#[derive(Clone, Copy)]
pub struct Build<'a> {
    pub kind: Kind,
    pub device: Device,
    pub lora: Option<&'a LoraConfig>,
    pub nf4: bool,
}

impl<'a> Build<'a> {
    /// Dense weights in `kind` on `device`, with `lora` adapters if given.
    pub fn new(kind: Kind, device: Device, lora: Option<&'a LoraConfig>) -> Self {
        Build {
            kind,
            device,
            lora,
            nf4: false,
        }
    }
}

pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub q_norm: RmsNorm,
    pub k_norm: RmsNorm,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn new(p: nn::Path, cfg: &Config, b: Build) -> Self {
        let (kind, lora) = (b.kind, b.lora);
        let (c, h, kv, d) = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let full = lora.is_none();
        Attention {
            q_proj: Linear::new(&p, "q_proj", c, h * d, kind, lora, b.nf4),
            k_proj: Linear::new(&p, "k_proj", c, kv * d, kind, lora, b.nf4),
            v_proj: Linear::new(&p, "v_proj", c, kv * d, kind, lora, b.nf4),
            o_proj: Linear::new(&p, "o_proj", h * d, c, kind, lora, b.nf4),
            q_norm: RmsNorm::new(&p / "q_norm", d, cfg.rms_norm_eps, kind, full),
            k_norm: RmsNorm::new(&p / "k_norm", d, cfg.rms_norm_eps, kind, full),
            heads: h,
            kv_heads: kv,
            head_dim: d,
        }
    }

    fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        mask: &Mask,
        cache: Option<&mut LayerCache>,
        train: bool,
    ) -> Tensor {
        let (b, t, _) = x.size3().unwrap();
        let (h, kv, d) = (self.heads, self.kv_heads, self.head_dim);
        // Per-head q/k RMSNorm over D comes before RoPE.
        let q = self
            .q_norm
            .forward(&self.q_proj.forward(x, train).view([b, t, h, d]))
            .transpose(1, 2); // (B, H, T, D)
        let k = self
            .k_norm
            .forward(&self.k_proj.forward(x, train).view([b, t, kv, d]))
            .transpose(1, 2); // (B, KV, T, D)
        let v = self
            .v_proj
            .forward(x, train)
            .view([b, t, kv, d])
            .transpose(1, 2); // (B, KV, T, D)
        let (q, k) = (rope.apply(&q), rope.apply(&k));
        let scale = (d as f64).powf(-0.5);
        let sdpa = |q: &Tensor, k: &Tensor, v: &Tensor, gqa: bool| match mask {
            Mask::Causal => Tensor::scaled_dot_product_attention::<&Tensor>(
                q, k, v, None, 0.0, true, scale, gqa,
            ),
            Mask::Full => Tensor::scaled_dot_product_attention::<&Tensor>(
                q, k, v, None, 0.0, false, scale, gqa,
            ),
            Mask::Explicit(m) => {
                Tensor::scaled_dot_product_attention(q, k, v, Some(m), 0.0, false, scale, gqa)
            }
        };
        let out = match cache {
            // Decoding: SDPA reads each cached KV head for its group of query heads in place
            // (`enable_gqa`) instead of a repeat_kv copy of the whole past per step.
            Some(c) => {
                let (k, v) = c.append(&k.to_kind(c.kind), &v.to_kind(c.kind));
                sdpa(&q.to_kind(c.kind), &k, &v, true).to_kind(q.kind())
            }
            // Training and evaluation: transformers' formulation (repeat_kv), whose backward the
            // parity tests pin.
            None => {
                let (k, v) = (repeat_kv(&k, h / kv), repeat_kv(&v, h / kv)); // (B, H, T, D)
                sdpa(&q, &k, &v, false)
            }
        };
        let out = out.transpose(1, 2).reshape([b, t, h * d]); // (B, T, H*D)
        self.o_proj.forward(&out, train)
    }
}

/// `(B, KV, T, D)` -> `(B, KV * n_rep, T, D)`, each KV head serving `n_rep` query heads.
fn repeat_kv(x: &Tensor, n_rep: i64) -> Tensor {
    if n_rep == 1 {
        return x.shallow_clone();
    }
    let (b, kv, t, d) = x.size4().unwrap();
    x.unsqueeze(2)
        .expand([b, kv, n_rep, t, d], false)
        .reshape([b, kv * n_rep, t, d])
}

pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    fn new(p: nn::Path, cfg: &Config, b: Build) -> Self {
        let (kind, lora) = (b.kind, b.lora);
        let (c, i) = (cfg.hidden_size, cfg.intermediate_size);
        Mlp {
            gate_proj: Linear::new(&p, "gate_proj", c, i, kind, lora, b.nf4),
            up_proj: Linear::new(&p, "up_proj", c, i, kind, lora, b.nf4),
            down_proj: Linear::new(&p, "down_proj", i, c, kind, lora, b.nf4),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let g = self.gate_proj.forward(x, train).silu();
        self.down_proj
            .forward(&(g * self.up_proj.forward(x, train)), train)
    }
}

pub struct Layer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl Layer {
    fn new(p: nn::Path, cfg: &Config, b: Build) -> Self {
        let (kind, lora) = (b.kind, b.lora);
        let full = lora.is_none();
        Layer {
            input_layernorm: RmsNorm::new(
                &p / "input_layernorm",
                cfg.hidden_size,
                cfg.rms_norm_eps,
                kind,
                full,
            ),
            self_attn: Attention::new(&p / "self_attn", cfg, b),
            post_attention_layernorm: RmsNorm::new(
                &p / "post_attention_layernorm",
                cfg.hidden_size,
                cfg.rms_norm_eps,
                kind,
                full,
            ),
            mlp: Mlp::new(&p / "mlp", cfg, b),
        }
    }

    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        mask: &Mask,
        cache: Option<&mut LayerCache>,
        train: bool,
    ) -> Tensor {
        let h =
            x + self
                .self_attn
                .forward(&self.input_layernorm.forward(x), rope, mask, cache, train);
        let out = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h), train);
        h + out
    }
}

pub struct Qwen3 {
    pub cfg: Config,
    pub embed_tokens: Tensor,
    pub layers: Vec<Layer>,
    pub norm: RmsNorm,
    /// `None` when tied to `embed_tokens`.
    pub lm_head: Option<Tensor>,
    pub kind: Kind,
}

impl Qwen3 {
    /// Builds the parameters (zeros/ones; load or `init_random` next) under `root` in `kind`.
    /// With `lora`, the base weights are frozen and the targeted projections get adapters.
    pub fn new(root: &nn::Path, cfg: &Config, b: Build) -> Self {
        let (kind, full) = (b.kind, b.lora.is_none());
        let m = root / "model";
        let dev = root.device();
        let (v, c) = (cfg.vocab_size, cfg.hidden_size);
        let embed_tokens =
            (&m / "embed_tokens").add("weight", Tensor::zeros([v, c], (kind, dev)), full);
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(&m / "layers" / i, cfg, b))
            .collect();
        let norm = RmsNorm::new(&m / "norm", c, cfg.rms_norm_eps, kind, full);
        let lm_head = (!cfg.tie_word_embeddings)
            .then(|| (root / "lm_head").add("weight", Tensor::zeros([v, c], (kind, dev)), full));
        Qwen3 {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            kind,
        }
    }

    pub fn head_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }

    pub fn embed(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.embed_tokens, ids, -1, false, false) // (B, T, C)
    }

    /// Positions default to `0..T` (shifted by the cache length when decoding).
    pub fn rope(&self, ids: &Tensor, positions: Option<&Tensor>, past: i64) -> Rope {
        let (b, t) = ids.size2().unwrap();
        let pos = match positions {
            Some(p) => p.shallow_clone(),
            None => Tensor::arange_start(past, past + t, (Kind::Int64, ids.device()))
                .unsqueeze(0)
                .expand([b, t], false),
        };
        Rope::new(&pos, self.cfg.head_dim, self.cfg.rope_theta, self.kind)
    }

    /// Final hidden states `(B, T, C)` after the last norm. `padding`: `(B, T)`, 1 = token, 0 = pad.
    pub fn forward(
        &self,
        ids: &Tensor,
        padding: Option<&Tensor>,
        positions: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let rope = self.rope(ids, positions, 0);
        let mask = Mask::new(padding, ids.size()[1], 0);
        let mut h = self.embed(ids);
        for layer in &self.layers {
            h = layer.forward(&h, &rope, &mask, None, train);
        }
        self.norm.forward(&h)
    }

    /// One decoding step (or the prefill) with a cache: `padding` covers past and new positions.
    pub fn forward_cached(
        &self,
        ids: &Tensor,
        padding: Option<&Tensor>,
        positions: Option<&Tensor>,
        cache: &mut [LayerCache],
    ) -> Tensor {
        let past = cache.first().map_or(0, LayerCache::len);
        let rope = self.rope(ids, positions, past);
        let mask = Mask::new(padding, ids.size()[1], past);
        let mut h = self.embed(ids);
        for (layer, c) in self.layers.iter().zip(cache.iter_mut()) {
            h = layer.forward(&h, &rope, &mask, Some(c), false);
        }
        self.norm.forward(&h)
    }

    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        super::gemv::linear(hidden, self.head_weight())
    }

    /// Every Linear of the model with its HF module path (for LoRA saving and merging).
    pub fn linears(&self) -> Vec<(String, &Linear)> {
        let mut out = vec![];
        for (i, l) in self.layers.iter().enumerate() {
            for (n, lin) in PROJECTIONS.iter().zip(l.projections()) {
                out.push((format!("model.layers.{i}.{n}"), lin));
            }
        }
        out
    }

    /// The same, mutable (the NF4 loader fills the weights in).
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = vec![];
        for (i, l) in self.layers.iter_mut().enumerate() {
            for (n, lin) in PROJECTIONS.iter().zip(l.projections_mut()) {
                out.push((format!("model.layers.{i}.{n}"), lin));
            }
        }
        out
    }
}

/// A layer's projections under their module paths, in `Layer::projections` order.
pub const PROJECTIONS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

impl Layer {
    fn projections(&self) -> [&Linear; 7] {
        let (a, m) = (&self.self_attn, &self.mlp);
        [
            &a.q_proj,
            &a.k_proj,
            &a.v_proj,
            &a.o_proj,
            &m.gate_proj,
            &m.up_proj,
            &m.down_proj,
        ]
    }

    fn projections_mut(&mut self) -> [&mut Linear; 7] {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        [
            &mut a.q_proj,
            &mut a.k_proj,
            &mut a.v_proj,
            &mut a.o_proj,
            &mut m.gate_proj,
            &mut m.up_proj,
            &mut m.down_proj,
        ]
    }
}
