//! Decode speed of this crate's generation on a Qwen3-0.6B-shaped model with random weights
//! (the shapes of `config::preset("0.6b")`, as in `qwen3.md`'s table), single prompt, greedy,
//! no eos. After building the model it prints `ready`, then runs one timed generation per line
//! read from stdin and prints one JSON line for each, so that `bench/decode.py` can alternate
//! our runs with transformers' on a machine whose load changes from second to second.
//! SHAPE `overhead` keeps the 28 layers but shrinks every width, so the matrix products cost next to
//! nothing and a step measures the per-operation overhead of the decode loop.
//! Usage: decode_bench [NEW_TOKENS=48] [PROMPT_LEN=16] [DTYPE=bf16] [SHAPE=0.6b|overhead]
use anyhow::Result;
use qwen3_sft::infer::{generate, GenOptions};
use qwen3_sft::model::{config::preset, DType, Model};
use std::io::BufRead;
use tch::Device;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let new_tokens: usize = arg(0, "48").parse()?;
    let prompt_len: i64 = arg(1, "16").parse()?;
    let kind = arg(2, "bf16").parse::<DType>()?.kind();
    let cfg = match arg(3, "0.6b").as_str() {
        "overhead" => qwen3_sft::model::Config::from_json(serde_json::json!({
            "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 28,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": true,
            "rope_theta": 1_000_000.0,
        }))?,
        name => preset(name)?,
    };
    let model = Model::random(&cfg, kind, Device::Cpu, None, 0);
    let prompt: Vec<i64> = (0..prompt_len)
        .map(|i| (i * 7919 + 13) % cfg.vocab_size)
        .collect();
    let opts = GenOptions::greedy(new_tokens, &[]);
    generate(
        &model,
        std::slice::from_ref(&prompt),
        &GenOptions::greedy(4, &[]),
    )?; // warm-up
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        line?;
        let g = generate(&model, std::slice::from_ref(&prompt), &opts)?.remove(0);
        assert_eq!(
            g.token_ids.len(),
            new_tokens,
            "no eos: every run generates NEW_TOKENS"
        );
        let per_token = (g.seconds - g.prefill_seconds) / (new_tokens - 1) as f64;
        let threads = tch::get_num_threads();
        println!(
            "{}",
            serde_json::json!({
                "impl": "qwen3-sft", "threads": threads, "prefill_s": g.prefill_seconds,
                "decode_ms_per_token": per_token * 1e3, "decode_tokens_per_sec": 1.0 / per_token,
            })
        );
    }
    Ok(())
}
