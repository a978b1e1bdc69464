"""The live references of tests/gguf.rs: llama.cpp's own tools on a GGUF export.

  convert HF_DIR OUTTYPE OUT NAME   llama.cpp's convert_hf_to_gguf.py (LLAMA_CPP_DIR, the sdist's
                                    vendor/llama.cpp) on an HF directory, general.name NAME
  compare OURS THEIRS [SKIP_KEY...] the PyPI `gguf` package's GGUFReader reads every key and tensor
                                    of both files; prints one JSON report of the differences: keys
                                    (type and value bytes), tensors (name, shape, type, data bytes)
  greedy GGUF IDS N                 llama.cpp (llama-cpp-python) loads the file and decodes N tokens
                                    greedily (argmax of its logits) after the prompt ids IDS (JSON)
"""
import json
import os
import subprocess
import sys


def convert(hf_dir, outtype, out, name):
    llama = os.environ.get("LLAMA_CPP_DIR") or os.path.join(
        os.path.dirname(__file__), "../../.cache/llama-cpp/llama.cpp")
    script = os.path.join(llama, "convert_hf_to_gguf.py")
    cmd = [sys.executable, script, hf_dir, "--outtype", outtype, "--outfile", out, "--model-name", name]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"convert_hf_to_gguf.py failed:\n{run.stderr[-4000:]}")


def read(path):
    from gguf import GGUFReader

    r = GGUFReader(path)
    keys = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF."):  # the reader's own header pseudo-fields
            continue
        raw = b"".join(bytes(p) for p in f.parts)
        value = f.contents()
        if isinstance(value, list) and len(value) > 8:
            value = f"[{len(value)} items] {value[:4]}..."
        keys[name] = {"types": [int(t) for t in f.types], "raw": raw, "value": value}
    tensors = {}
    for t in r.tensors:
        data = bytes(t.data.tobytes())
        assert len(data) == t.n_bytes, f"{path}: tensor {t.name}: {len(data)} bytes read, {t.n_bytes} declared"
        tensors[t.name] = {"shape": [int(d) for d in t.shape], "type": t.tensor_type.name, "data": data}
    return keys, tensors, [t.name for t in r.tensors]


def compare(ours, theirs, skip):
    (ok, ot, oorder), (tk, tt, torder) = read(ours), read(theirs)
    report = {
        "keys": len(ok), "tensors": len(ot),
        "only_ours": sorted(set(ok) - set(tk) - set(skip)),
        "only_theirs": sorted(set(tk) - set(ok) - set(skip)),
        "key_diffs": [], "tensor_diffs": [],
        "key_order_equal": [k for k in ok if k not in skip] == [k for k in tk if k not in skip],
        "tensor_order_equal": oorder == torder,
        "skipped": {k: [ok.get(k, {}).get("value"), tk.get(k, {}).get("value")] for k in skip},
    }
    for k in sorted(set(ok) & set(tk) - set(skip)):
        a, b = ok[k], tk[k]
        if a["types"] != b["types"] or a["raw"] != b["raw"]:
            report["key_diffs"].append({"key": k, "ours": [a["types"], str(a["value"])[:200]],
                                        "theirs": [b["types"], str(b["value"])[:200]]})
    for n in sorted(set(ot) | set(tt)):
        a, b = ot.get(n), tt.get(n)
        if a is None or b is None:
            report["tensor_diffs"].append({"tensor": n, "missing_in": "ours" if a is None else "theirs"})
            continue
        for what in ("shape", "type"):
            if a[what] != b[what]:
                report["tensor_diffs"].append({"tensor": n, what: [a[what], b[what]]})
        if a["data"] != b["data"]:
            differing = sum(x != y for x, y in zip(a["data"], b["data"]))
            report["tensor_diffs"].append({"tensor": n, "data_bytes_differing": differing, "of": len(b["data"])})
    print(json.dumps(report, ensure_ascii=False))


def greedy(path, ids, n):
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=len(ids) + n + 8, n_threads=2, n_batch=512, verbose=False,
                seed=0, logits_all=True)
    llm.eval(ids)
    out, margins = [], []
    for _ in range(n):
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        top2 = np.sort(logits)[-2:]
        margins.append(float(top2[1] - top2[0]))
        tok = int(np.argmax(logits))
        out.append(tok)
        llm.eval([tok])
    print(json.dumps({"tokens": out, "min_margin": min(margins),
                      "n_vocab": llm.n_vocab(), "chat_template": llm.metadata.get("tokenizer.chat_template", "")[:40],
                      "eos": llm.token_eos()}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "convert":
        convert(*args)
    elif cmd == "compare":
        compare(args[0], args[1], args[2:])
    elif cmd == "greedy":
        greedy(args[0], json.loads(args[1]), int(args[2]))
    else:
        sys.exit(f"unknown command {cmd}")
