"""`make bench`: training throughput and memory of this crate against the seed's Python stack
(transformers Trainer + peft), in the same run on the same machine, full and LoRA fine-tuning.

Both sides start from one random model written once with `save_pretrained` (bench/make_model.py),
read the committed sample in file order with the seed's encoding (our `reference` template, its
`process_func`), batch 1 x grad-accum 4, lr 1e-4, linear schedule, clipping at 1.0, gradient
checkpointing, the same thread count. Each run is its own process under `/usr/bin/time -v` (peak
RSS, CPU time, page faults from the OS). Tokens/s is per optimizer step, model loading excluded:
ours from metrics.jsonl (`train/tokens_per_sec`, logging every step), the peer's from a Trainer
callback (on_step_begin -> on_step_end). The first step is a warm-up and is left out of the mean
when there are more. Writes OUT/results.md and OUT/results.json.
Usage: python bench/train_bench.py --bin target/release/qwen3-sft [--steps 3] [--model 0.6b]
       [--dtype bf16|fp32] [--threads N] [--only full|lora] [--out runs/bench] [--env K=V ...]
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def cpu_info():
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name")), platform.processor())
    flags = next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags")), [])
    fast_bf16 = any(f in flags for f in ("avx512_bf16", "amx_bf16"))
    mem = next((int(l.split()[1]) * 1024 for l in Path("/proc/meminfo").read_text().splitlines()
                if l.startswith("MemTotal")), 0)
    return {"name": name, "cores": os.cpu_count(), "fast_bf16": fast_bf16,
            "simd": " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags),
            "mem_gb": mem / 1e9}


def loadavg():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def parse_time_v(path):
    """The fields of GNU time's -v report this benchmark uses."""
    text = Path(path).read_text(errors="replace")
    def field(name, conv=float):
        m = re.search(rf"^\s*{re.escape(name)}:\s*(.+)$", text, re.M)
        return conv(m.group(1).strip()) if m else None
    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)", str)
    secs = None
    if wall:
        parts = [float(x) for x in wall.split(":")]
        secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return {"max_rss_bytes": (field("Maximum resident set size (kbytes)", int) or 0) * 1024,
            "wall_s": secs, "user_s": field("User time (seconds)"), "sys_s": field("System time (seconds)"),
            "cpu_percent": field("Percent of CPU this job got", lambda s: float(s.rstrip("%"))),
            "minor_faults": field("Minor (reclaiming a frame) page faults", int),
            "exit_status": field("Exit status", int)}


def proc_sample(pid):
    """(CPU seconds of all threads, RSS bytes) of a live process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        return cpu, rss
    except (OSError, ValueError, IndexError):
        return None


def child_pid(pid):
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(kids[0]) if kids else None
    except OSError:
        return None


def gpu_used_mib():
    """Memory in use on GPU 0 (MiB) from nvidia-smi, or None without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=5)
        return float(out.stdout.strip().splitlines()[0]) if out.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


class GpuPoller:
    """Peak GPU memory of the run: nvidia-smi's memory.used polled every 100 ms in a thread, minus
    what was in use before the run started (libtorch has no CUDA memory API in tch; the same
    measure for both sides, CUDA context included)."""

    def __init__(self):
        import threading
        self.base, self.peak, self.stop = gpu_used_mib(), 0.0, threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        if self.base is not None:
            self.thread.start()

    def loop(self):
        while not self.stop.wait(0.1):
            v = gpu_used_mib()
            if v is not None:
                self.peak = max(self.peak, v)

    def finish(self):
        if self.base is None:
            return None
        self.stop.set()
        self.thread.join()
        return max(0.0, self.peak - self.base) * 2**20


def run_timed(name, cmd, out_dir, env, progress, n_steps, gpu=False):
    """Runs `cmd` under /usr/bin/time -v; meanwhile polls the process every 50 ms: its CPU time at
    each new line of `progress` (one line per finished optimizer step) and its RSS up to the last
    step (the training peak, before any final saving)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log, tv = out_dir / "log.txt", out_dir / "time.txt"
    progress.unlink(missing_ok=True)
    print(f"  {name}: running (log {log.relative_to(ROOT) if log.is_relative_to(ROOT) else log}) ...", flush=True)
    t = time.perf_counter()
    marks, rss_train, pid = [], 0, None
    poller = GpuPoller() if gpu else None
    with open(log, "w") as f:
        p = subprocess.Popen(["/usr/bin/time", "-v", "-o", str(tv), *cmd], stdout=f, stderr=subprocess.STDOUT,
                             env=env, cwd=ROOT)
        while p.poll() is None:
            time.sleep(0.05)
            pid = pid or child_pid(p.pid)
            smp = proc_sample(pid) if pid else None
            if smp is None:
                continue
            lines = len(progress.read_text().splitlines()) if progress.exists() else 0
            if lines > len(marks):
                marks += [smp[0]] * (lines - len(marks))
            if len(marks) < n_steps:
                rss_train = max(rss_train, smp[1])
    if p.returncode != 0:
        tail = "".join(open(log, errors="replace").readlines()[-25:])
        raise SystemExit(f"{name} failed (exit {p.returncode}); last lines of {log}:\n{tail}")
    res = parse_time_v(tv)
    res["gpu_peak_bytes"] = poller.finish() if poller else None
    res["cpu_marks"] = marks
    res["train_rss_bytes"] = rss_train
    print(f"  {name}: done in {time.perf_counter() - t:.0f} s, peak RSS {res['max_rss_bytes'] / 1e9:.2f} GB", flush=True)
    return res


def throughput(steps, marks):
    """Tokens/s of the optimizer steps: `best` (the least disturbed step: the cores are shared),
    `mean` over the steps after the first (all when there is one), and `cpu`: tokens per second of
    process CPU time over steps 2..N (from the poller's marks; robust to other load, inflated a
    little by OpenMP spin-waiting)."""
    use = steps[1:] if len(steps) > 1 else steps
    out = {"tps_best": max(s["tokens"] / s["seconds"] for s in steps),
           "tps_mean": sum(s["tokens"] for s in use) / sum(s["seconds"] for s in use), "tps_cpu": None}
    if len(steps) > 1 and len(marks) == len(steps) and marks[-1] > marks[0]:
        out["tps_cpu"] = sum(s["tokens"] for s in steps[1:]) / (marks[-1] - marks[0])
    return out


def flops_per_token(model_dir, method, mean_len):
    """Matrix-multiply FLOPs of one training token, the yardstick for the achieved fraction of the
    machine's GEMM rate (the same count for both sides). Forward: 2 x the decoder's linear weights,
    causal attention 2 x 2 x (T/2) x heads x head_dim per layer, the head 2 x vocab x hidden.
    Training with full recomputation runs the decoder 4 times (forward, recompute, backward for
    inputs and for weights) and the head 3; LoRA skips the frozen weights' gradients (decoder 3,
    head 2; the adapters' own products are under 1% and left out)."""
    c = json.loads((Path(model_dir) / "config.json").read_text())
    h, i, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    heads, kv, d = c["num_attention_heads"], c["num_key_value_heads"], c.get("head_dim") or h // c["num_attention_heads"]
    linear = L * (h * heads * d + 2 * h * kv * d + heads * d * h + 3 * h * i)
    attn = L * 2 * 2 * (mean_len / 2) * heads * d
    head = c["vocab_size"] * h
    dec, hd = (4, 3) if method == "full" else (3, 2)
    return dec * (2 * linear + attn) + hd * 2 * head


def gemm_rate(dtype, threads, env):
    """bench/gemm_rate.py in its own process with the benchmark's thread settings."""
    out = subprocess.run([PY, str(ROOT / "bench/gemm_rate.py"), dtype, str(threads)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours_toml(a, model_dir, method, out_dir, optim_state, extra):
    lines = [
        "[model]", f'path = "{model_dir}"', f'dtype = "{a.dtype}"', f'device = "{a.device}"',
        "[data]", f'train_file = "{a.data}"', f'tokenizer = "{a.tokenizer}"', 'template = "reference"',
        f"max_length = {a.max_length}",
        "[train]", f'method = "{method}"', f'output_dir = "{out_dir / "run"}"', f"max_steps = {a.steps}",
        "batch_size = 1", "grad_accum = 4", "lr = 1e-4", "warmup_steps = 0", "weight_decay = 0.0",
        "max_grad_norm = 1.0", "logging_steps = 1", "eval_steps = 1000000", "save_steps = 1000000",
        "gradient_checkpointing = true", "shuffle = false", "seed = 42", "predictions = 0",
        f'optim_state_dtype = "{optim_state}"',
        "[lora]", "r = 8", "alpha = 32", "dropout = 0.1", f"targets = {json.dumps(TARGETS)}",
        f'adapter = "{model_dir / "lora-init"}"',
        "[swanlab]", 'mode = "disabled"',
    ]
    path = out_dir.parent / f"{out_dir.name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return ["train", "--config", str(path), "--overwrite", *[x for s in extra for x in ("--set", s)]]


def read_ours(out_dir):
    steps = []
    for line in (out_dir / "run" / "metrics.jsonl").read_text().splitlines():
        v = json.loads(line)
        if "train/tokens_per_sec" in v:
            steps.append({"step": v["step"], "loss": v["train/loss"], "grad_norm": v.get("train/grad_norm"),
                          "tps": v["train/tokens_per_sec"]})
    return steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target/release/qwen3-sft"))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--model", default="0.6b", help="shape preset: 0.6b, 1.7b, demo, tiny")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--only", choices=["full", "lora"])
    ap.add_argument("--out", default=str(ROOT / "runs/bench"))
    ap.add_argument("--data", default="data/sample/r1_data_example.jsonl")
    ap.add_argument("--tokenizer", default=".cache/qwen3-tokenizer")
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--set", action="append", default=[], help="extra `--set` for our runs (e.g. train.loss_chunk=256)")
    ap.add_argument("--env", action="append", default=[], help="extra K=V environment for our runs only")
    ap.add_argument("--ours-only", action="store_true", help="skip the peer (for tuning experiments)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (bench/gpu.sh)")
    ap.add_argument("--model-dir", help="where the random model is (written there when missing); default OUT/model-MODEL")
    ap.add_argument("--long", action="store_true",
                    help="train on OUT/long.jsonl: each sample the sample file's rows run together, so every "
                         "sample fills --max-length (the GPU benchmark's 2048-token steps)")
    ap.add_argument("--note", default="", help="a line added to the results")
    a = ap.parse_args()
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cpu = cpu_info()
    started = datetime.datetime.now().astimezone()
    load_before = loadavg()

    model_dir = Path(a.model_dir).resolve() if a.model_dir else out / f"model-{a.model}"
    if not (model_dir / "model.safetensors").exists() or not (model_dir / "lora-init").exists():
        print(f"writing the random {a.model} model once: {model_dir}", flush=True)
        subprocess.run([PY, str(ROOT / "bench/make_model.py"), str(model_dir), a.model], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    if a.long:
        a.data = str(make_long(a.data, out / "long.jsonl"))
    gpu = a.device.startswith("cuda")
    # OpenMP threads that wait at a barrier sleep instead of spinning, on both sides: on a shared CPU
    # spinning burns the cores the other thread needs (3x swings between identical runs here);
    # `OMP_WAIT_POLICY=default make bench` leaves it unset (libgomp spins ~300k rounds, then sleeps).
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY") or "PASSIVE",
               TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore", TRANSFORMERS_VERBOSITY="error")
    if env["OMP_WAIT_POLICY"] == "default":
        del env["OMP_WAIT_POLICY"]
    ours_env = dict(env, **dict(kv.split("=", 1) for kv in a.env))
    gemm = gemm_rate(a.dtype, a.threads, env) if a.device == "cpu" else None
    if gemm:
        print(f"matrix-multiply rate ({gemm['dtype']}, {gemm['threads']} threads): {gemm['shapes']} TFLOP/s", flush=True)
    rows = []
    methods = [m for m in ("full", "lora") if a.only in (None, m)]
    print(f"training benchmark: Qwen3-{a.model}-shaped (random), {a.dtype}, {a.steps} steps x 4 samples, "
          f"{a.threads} threads, load average {load_before}", flush=True)
    for method in methods:
        # the default (`auto`: bf16 moments with stochastic rounding for bf16 weights), and for bf16
        # full fine-tuning also torch's own bf16 moments (`param`), the Trainer's like for like
        variants = [("auto", "ours (default)")]
        if method == "full" and a.dtype != "fp32":
            variants.append(("param", "ours, torch's bf16 moments"))
        for optim_state, label in variants:
            name = f"ours-{method}" + ("" if optim_state == "auto" else "-param-moments")
            d = out / name
            cmd = [a.bin, *ours_toml(a, model_dir, method, d, optim_state, a.set)]
            # the run in d/run (train refuses a directory holding files it did not write: log, time)
            res = run_timed(name, cmd, d, ours_env, d / "run" / "metrics.jsonl", a.steps, gpu)
            steps = read_ours(d)
            # tokens per step are the same on both sides (same samples, batch 1): recover seconds
            toks = peer_tokens(a, method, len(steps))
            st = [{"step": s["step"], "tokens": t, "seconds": t / s["tps"], "loss": s["loss"]} for s, t in zip(steps, toks)]
            moments = ("float32" if method == "lora" or a.dtype == "fp32" else
                       "bfloat16 (stochastic rounding)" if optim_state == "auto" else "bfloat16")
            rows.append({"side": "ours", "label": label, "method": method, "optim_state": optim_state, "moments": moments,
                         "steps": st, **throughput(st, res["cpu_marks"]), **res})
        if a.ours_only:
            continue
        name = f"peer-{method}"
        d = out / name
        cmd = [PY, str(ROOT / "bench/train_peer.py"), "--model", str(model_dir), "--tokenizer", a.tokenizer,
               "--data", a.data, "--out", str(d), "--method", method, "--steps", str(a.steps),
               "--max-length", str(a.max_length), "--adapter-init", str(model_dir / "lora-init"),
               "--dtype", a.dtype, "--device", a.device]
        res = run_timed(name, cmd, d, env, d / "steps.jsonl", a.steps, gpu)
        peer = json.loads((d / "peer.json").read_text())
        rows.append({"side": "peer", "label": peer["impl"], "method": method, **throughput(peer["steps"], res["cpu_marks"]),
                     "steps": peer["steps"], "threads": peer["threads"], "moments": peer["optim_state_dtype"].replace("torch.", ""),
                     **res})
    for x in rows:
        toks = [s["tokens"] for s in x["steps"]]
        x["gflop_per_token"] = flops_per_token(model_dir, x["method"], sum(toks) / max(1, 4 * len(toks))) / 1e9
        if gemm:
            x["gemm_fraction"] = x["tps_mean"] * x["gflop_per_token"] / 1e3 / gemm["tflops"]
    result = {"date": started.isoformat(timespec="seconds"), "cpu": cpu, "gemm": gemm, "device": a.device, "gpu": gpu_name(),
              "max_length": a.max_length, "data": a.data, "threads": a.threads, "model": a.model,
              "dtype": a.dtype, "steps": a.steps, "load_before": load_before, "load_after": loadavg(),
              "sets": a.set, "env": a.env, "note": a.note, "omp_wait_policy": env.get("OMP_WAIT_POLICY", "unset (libgomp default)"), "rows": rows}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    md = render(result)
    (out / "results.md").write_text(md)
    print()
    print(md)


def gpu_name():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader", "-i", "0"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def make_long(src, dst):
    """Each row's `think` followed by the next 20 rows' think and answer texts (over 4,000 tokens), so
    that every encoded sample is cut at --max-length (up to 4,000): full-length samples on both sides."""
    rows = [json.loads(l) for l in open(ROOT / src if not os.path.isabs(src) else src, encoding="utf-8") if l.strip()]
    with open(dst, "w", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            more = (rows[(i + k) % len(rows)] for k in range(1, 21))
            think = "\n".join([r["think"], *(m["think"] + "\n" + m["answer"] for m in more)])
            f.write(json.dumps({"question": r["question"], "think": think, "answer": r["answer"]}, ensure_ascii=False) + "\n")
    return dst


_TOKENS_CACHE = {}


def peer_tokens(a, method, n):
    """Tokens of each optimizer step (4 samples in file order, the seed's encoding), computed with
    the peer's code; our `reference` template encodes byte for byte the same (tests/encode.rs)."""
    key = (a.data, a.max_length, n)
    if key not in _TOKENS_CACHE:
        code = ("import json,sys; sys.path.insert(0,'bench'); from train_peer import process_func;"
                "from transformers import AutoTokenizer; tok=AutoTokenizer.from_pretrained(sys.argv[1]);"
                "rows=[json.loads(l) for l in open(sys.argv[2],encoding='utf-8') if l.strip()];"
                "n=int(sys.argv[4])*4; rows=(rows*(n//len(rows)+1))[:n];"
                "L=[len(process_func(r,tok,int(sys.argv[3]))['input_ids']) for r in rows];"
                "print(json.dumps([sum(L[i:i+4]) for i in range(0,n,4)]))")
        outp = subprocess.run([PY, "-c", code, a.tokenizer, a.data, str(a.max_length), str(n)], cwd=ROOT,
                              capture_output=True, text=True, check=True,
                              env=dict(os.environ, TRANSFORMERS_VERBOSITY="error", PYTHONWARNINGS="ignore"))
        _TOKENS_CACHE[key] = json.loads(outp.stdout.strip().splitlines()[-1])
    return _TOKENS_CACHE[key]


def short(path):
    p = Path(path)
    return str(p.relative_to(ROOT)) if p.is_absolute() and p.is_relative_to(ROOT) else str(path)


def render(r):
    gb = lambda b: f"{b / 1e9:.2f} GB"
    cpu = r["cpu"]
    n = r["steps"]
    lines = [
        f"## Training benchmark ({r['date'][:10]})",
        "",
        f"- Machine: {cpu['name']}, {cpu['cores']} cores ({cpu['simd'] or 'no AVX2'}), {cpu['mem_gb']:.0f} GB RAM; "
        f"load average before/after: {r['load_before']} / {r['load_after']} (the cores are shared)"
        + (f"; GPU: {r['gpu']}." if r.get("gpu") else "."),
        f"- Model: Qwen3-{r['model']}-shaped, random weights (one `save_pretrained` model loaded by both sides), "
        f"{r['dtype']} on {r['device']}; data `{short(r['data'])}` in file order, seed's encoding, "
        f"max length {r['max_length']}; batch 1 x grad-accum 4, lr 1e-4, gradient checkpointing; {n} optimizer step{'s' if n > 1 else ''}; "
        f"{r['threads']} threads on both sides (OMP_NUM_THREADS; peer's torch.get_num_threads() = "
        f"{next((x.get('threads') for x in r['rows'] if x['side'] == 'peer'), '-')}), "
        f"OMP_WAIT_POLICY={r.get('omp_wait_policy', 'default')} on both.",
        "- tokens/s per optimizer step, model loading excluded: `best` = the least disturbed step (the cores are "
        f"shared), `mean` = steps {'2-' + str(n) if n > 1 else '1'}; `per CPU-s` = tokens of steps 2-N per second of "
        "the process's CPU time (all threads). Peak RSS: `/usr/bin/time -v` (whole process), and the highest RSS "
        "polled while steps ran (before any final save). Loss as logged at step 1 and step N.",
    ]
    if r["sets"] or r["env"]:
        lines.append(f"- Our runs with: {' '.join(r['sets'] + r['env'])}")
    if r["note"]:
        lines.append(f"- {r['note']}")
    f1 = lambda v: "-" if v is None else f"{v:.1f}"
    if r["device"] != "cpu":
        lines += ["", "| method | side | tokens/s best | mean | peak GPU memory (nvidia-smi) | peak RSS | loss step 1 | loss step N |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for x in r["rows"]:
            g = "-" if x.get("gpu_peak_bytes") is None else gb(x["gpu_peak_bytes"])
            lines.append(f"| {x['method']} | {x['label']} | {f1(x['tps_best'])} | {f1(x['tps_mean'])} | {g} | "
                         f"{gb(x['max_rss_bytes'])} | {x['steps'][0]['loss']:.4f} | {x['steps'][-1]['loss']:.4f} |")
        ratios = []
        for m in ("full", "lora"):
            o = next((x for x in r["rows"] if x["side"] == "ours" and x["method"] == m and x["optim_state"] == "auto"), None)
            p = next((x for x in r["rows"] if x["side"] == "peer" and x["method"] == m), None)
            if o and p:
                gm = (f"{o['gpu_peak_bytes'] / p['gpu_peak_bytes']:.2f}x"
                      if o.get("gpu_peak_bytes") and p.get("gpu_peak_bytes") else "-")
                ratios.append(f"| {m} | {o['tps_mean'] / p['tps_mean']:.2f}x | {gm} |")
        if ratios:
            lines += ["", "| method | tokens/s ours/peer (mean) | peak GPU memory ours/peer |", "|---|---:|---:|", *ratios]
        return "\n".join(lines) + "\n"
    g = r.get("gemm")
    if g:
        per_token = " / ".join(sorted({f"{x['method']} {x['gflop_per_token']:.2f}" for x in r["rows"]}))
        shapes = ", ".join(f"{k} {v:.2f}" for k, v in g["shapes"].items())
        lines.append(f"- Matrix-multiply rate of this machine (bench/gemm_rate.py, {g['dtype']}, {g['threads']} threads, "
                     f"best of 5): {shapes} TFLOP/s. `of GEMM` = tokens/s x matmul FLOPs per token "
                     f"(bench/train_bench.py::flops_per_token: {per_token} GFLOP) over the best rate, "
                     f"{g['tflops']:.2f} TFLOP/s.")
    lines += ["", "| method | side | AdamW moments | tokens/s best | mean | of GEMM | per CPU-s | peak RSS | in steps | "
              "loss step 1 | loss step N | CPU % | minor faults |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in r["rows"]:
        s = x["steps"]
        frac = f"{100 * x['gemm_fraction']:.0f}%" if x.get("gemm_fraction") is not None else "-"
        lines.append(f"| {x['method']} | {x['label']} | {x['moments']} | {f1(x['tps_best'])} | {f1(x['tps_mean'])} | {frac} | "
                     f"{f1(x['tps_cpu'])} | {gb(x['max_rss_bytes'])} | {gb(x['train_rss_bytes'])} | {s[0]['loss']:.4f} | "
                     f"{s[-1]['loss']:.4f} | {x['cpu_percent']:.0f} | {x['minor_faults']:,} |")
    ratios = []
    for m in ("full", "lora"):
        ours = next((x for x in r["rows"] if x["side"] == "ours" and x["method"] == m and x["optim_state"] == "auto"), None)
        peer = next((x for x in r["rows"] if x["side"] == "peer" and x["method"] == m), None)
        if ours and peer:
            cpu = (f"{ours['tps_cpu'] / peer['tps_cpu']:.2f}x" if ours["tps_cpu"] and peer["tps_cpu"] else "-")
            ratios.append(f"| {m} | {ours['tps_best'] / peer['tps_best']:.2f}x | {ours['tps_mean'] / peer['tps_mean']:.2f}x | "
                          f"{cpu} | {ours['max_rss_bytes'] / peer['max_rss_bytes']:.2f}x | "
                          f"{ours['steps'][-1]['loss'] - peer['steps'][-1]['loss']:+.4f} |")
    if ratios:
        lines += ["", "| method | tokens/s ours/peer, best step (target >= 2.0x) | mean | per CPU-s | "
                  "peak RSS ours/peer (target <= 0.7x) | loss step N ours - peer |", "|---|---:|---:|---:|---:|---:|", *ratios]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
