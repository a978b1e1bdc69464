"""Reference data split: the seed's `medical_dataset_splitter.py` interface
(`--dataset_name --output_dir --train_ratio --seed`; the seed shows only its command line) with
the body of the tutorial project's data script (Zeyi-Lin/Qwen3-Medical-SFT `data.py`, as
published there, not readable from this machine): `random.seed(seed)`, `random.shuffle(rows)`,
`split_idx = int(len(rows) * train_ratio)`, rows written with
`json.dump(row, f, ensure_ascii=False)` plus a newline.

The hub is unreachable here, so instead of `MsDataset.load(dataset_name)` the rows come from a
local JSONL file (`--input`), one `json.loads` per non-blank line, which is what the data set's
`r1_data_example.jsonl` holds.

Also: `--mt N SEED` prints the first N `getrandbits(32)` outputs and `randbelow` draws, for the
generator parity test.
"""
import argparse
import json
import os
import random
import sys


def split(args):
    with open(args.input, encoding="utf-8") as f:
        data = [json.loads(line) for line in f if line.strip()]
    random.seed(args.seed)
    random.shuffle(data)
    split_idx = int(len(data) * args.train_ratio)
    train_data, val_data = data[:split_idx], data[split_idx:]
    os.makedirs(args.output_dir, exist_ok=True)
    for name, rows in (("train.jsonl", train_data), ("val.jsonl", val_data)):
        with open(os.path.join(args.output_dir, name), "w", encoding="utf-8") as f:
            for item in rows:
                json.dump(item, f, ensure_ascii=False)
                f.write("\n")
    print(f"train {len(train_data)} val {len(val_data)}")


def mt(n, seed):
    r = random.Random(seed)
    bits = [r.getrandbits(32) for _ in range(n)]
    r = random.Random(seed)
    below = [r._randbelow(k) for k in range(1, n + 1)]
    r = random.Random(seed)
    perm = list(range(n))
    r.shuffle(perm)
    json.dump({"getrandbits32": bits, "randbelow": below, "shuffle": perm}, sys.stdout)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--mt":
        mt(int(sys.argv[2]), int(sys.argv[3]))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--dataset_name", default="krisfu/delicate_medical_r1_data")
    p.add_argument("--input", required=True)
    p.add_argument("--output_dir", default="./data_split")
    p.add_argument("--train_ratio", type=float, default=0.85)
    p.add_argument("--seed", type=int, default=42)
    split(p.parse_args())


if __name__ == "__main__":
    main()
