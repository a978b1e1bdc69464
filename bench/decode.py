"""Single-prompt CPU decode speed of a Qwen3-0.6B-shaped bf16 model (random weights): this crate's
generation (examples/decode_bench.rs) against transformers' `generate` in the same run, and both
against the bandwidth floor (every weight read once per token; the machine's bandwidth measured
here with a large bf16 matrix-vector product and a large fp32 sum, the better of the two). Run through bench/decode.sh.
The two alternate (ours, theirs, ours, ...) and each keeps its best run: the machine is shared,
and the least disturbed run is the one that measures the code.
A second pass does the same with every width shrunk (28 layers kept): there the matrix products
cost next to nothing, so it measures each implementation's per-step overhead, which is what
separates them on a CPU whose bf16 kernels are fast (qwen3.md's machine: ~44 ms/token floor).
Usage: python bench/decode.py RUST_BENCH_BINARY [NEW_TOKENS=48] [PROMPT_LEN=16] [REPS=3]
"""
import json
import subprocess
import sys
import time

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

# qwen3.md's 0.6B column
CFG = dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
           num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
           rope_theta=1_000_000.0, max_position_embeddings=40960, rms_norm_eps=1e-6)
# the same depth with tiny widths (decode_bench's `overhead` shape)
OVERHEAD = dict(CFG, vocab_size=512, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16)


def bandwidth_gbs(reps=5):
    """The machine's memory read rate, GB/s: the better of a 512 MiB bf16 matrix-vector product
    (libtorch's kernel) and a sum over 512 MiB of fp32 (a plain streaming read), best of `reps`."""
    a = torch.randn(16384, 16384).to(torch.bfloat16)
    x = torch.randn(16384).to(torch.bfloat16)
    f = torch.randn(16384, 8192)
    a @ x
    f.sum()
    gemv = a.numel() * a.element_size() / min(timed(lambda: a @ x) for _ in range(reps)) / 1e9
    read = f.numel() * f.element_size() / min(timed(lambda: f.sum()) for _ in range(reps)) / 1e9
    return max(gemv, read)


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def weight_bytes():
    """Bytes read per decoded token: every linear weight, the norms and the (tied) head once;
    the embedding lookup reads one row."""
    c, i, l = CFG["hidden_size"], CFG["intermediate_size"], CFG["num_hidden_layers"]
    h, kv, d, v = CFG["num_attention_heads"], CFG["num_key_value_heads"], CFG["head_dim"], CFG["vocab_size"]
    layer = c * h * d * 2 + c * kv * d * 2 + 3 * c * i + 2 * c + 2 * d
    return 2 * (l * layer + c + v * c)


def transformers_bench(new_tokens, prompt_len, cfg):
    """A function that runs one timed transformers generation and returns its numbers."""
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(**cfg, attn_implementation="sdpa")).to(torch.bfloat16).eval()
    ids = torch.tensor([[(i * 7919 + 13) % cfg["vocab_size"] for i in range(prompt_len)]])
    kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0)

    def gen(n):
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, **kw)
        assert out.shape[1] == prompt_len + n

    gen(4)  # warm-up

    def run():
        t1 = timed(lambda: gen(1))  # prefill and first token
        per_token = (timed(lambda: gen(new_tokens)) - t1) / (new_tokens - 1)
        return {"impl": "transformers", "threads": torch.get_num_threads(), "prefill_s": t1,
                "decode_ms_per_token": per_token * 1e3, "decode_tokens_per_sec": 1.0 / per_token}
    return run


def alternate(rust_bin, shape, cfg, new_tokens, prompt_len, reps, between=lambda: None):
    """Best run of each implementation, run in turns."""
    rust = subprocess.Popen([rust_bin, str(new_tokens), str(prompt_len), "bf16", shape], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert rust.stdout.readline().strip() == "ready", "decode_bench did not start"
    theirs_run = transformers_bench(new_tokens, prompt_len, cfg)
    best = {}
    for _ in range(reps):
        rust.stdin.write("go\n")
        rust.stdin.flush()
        runs = [json.loads(rust.stdout.readline()), theirs_run()]
        between()
        for r in runs:
            if r["impl"] not in best or r["decode_ms_per_token"] < best[r["impl"]]["decode_ms_per_token"]:
                best[r["impl"]] = r
        print(f"  {shape} run: ours {runs[0]['decode_ms_per_token']:.1f} ms/token, "
              f"transformers {runs[1]['decode_ms_per_token']:.1f} ms/token")
    rust.stdin.close()
    rust.wait()
    return best["qwen3-sft"], best["transformers"]


def main():
    rust_bin = sys.argv[1]
    new_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 48
    prompt_len = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    bws = []
    ours, theirs = alternate(rust_bin, "0.6b", CFG, new_tokens, prompt_len, reps,
                             between=lambda: bws.append(bandwidth_gbs(reps=2)))
    bw = max(bws)
    floor_ms = weight_bytes() / (bw * 1e9) * 1e3
    print(f"bandwidth {bw:.1f} GB/s (best of a bf16 matrix-vector product and an fp32 sum, {torch.get_num_threads()} threads); "
          f"{weight_bytes() / 1e9:.3f} GB of weights per token -> floor {floor_ms:.1f} ms/token "
          f"({1e3 / floor_ms:.1f} tokens/s)")
    for r in (ours, theirs):
        print(f"{r['impl']:>13}: {r['decode_tokens_per_sec']:6.2f} tokens/s ({r['decode_ms_per_token']:.1f} ms/token, "
              f"{floor_ms / r['decode_ms_per_token']:.0%} of the bandwidth floor), prefill {r['prefill_s']:.2f} s")
    print(f"speedup: {ours['decode_tokens_per_sec'] / theirs['decode_tokens_per_sec']:.2f}x transformers "
          f"({new_tokens} new tokens after a {prompt_len}-token prompt, best of {reps})")
    o, t = alternate(rust_bin, "overhead", OVERHEAD, new_tokens, prompt_len, reps)
    print(f"per-step overhead (28 layers, tiny widths): ours {o['decode_ms_per_token']:.2f} ms, "
          f"transformers {t['decode_ms_per_token']:.2f} ms")
    for floor in (floor_ms, 44.0):
        print(f"  at a {floor:.0f} ms/token kernel floor that predicts "
              f"{(floor + t['decode_ms_per_token']) / (floor + o['decode_ms_per_token']):.2f}x transformers")


if __name__ == "__main__":
    main()
