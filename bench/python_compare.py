#!/usr/bin/env python3
"""The Python package against the CLI on the same 400 real-text pairs (#14's speed target:
`FlagReranker.compute_score` within 5 % of `rerank score`).

Pairs: the 260 MS MARCO pairs and the first 140 NQ pairs of target/bench-pairs (bench/make_pairs.py),
as one flat `compute_score` call. Model: target/bench-model (random bge-reranker-base shape,
bench/make_model.py). Run with a Python that has the package installed (`pip install
./bindings/python`), after `cargo build --release`:

    python bench/python_compare.py [--rounds 3] [--dtype f32]

Each round times, alternately, `FlagReranker.compute_score(pairs)` (model loaded once, before)
and `rerank score` on the same pairs as a fresh process, minus that process's time on one pair
(loading and start-up), so both columns are scoring time.
"""

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_pairs():
    pairs = []
    for name, limit in (("msmarco", None), ("nq", 140)):
        taken = []
        for line in (REPO / "target" / "bench-pairs" / f"{name}.jsonl").read_text().splitlines():
            call = json.loads(line)
            taken += [[call["query"], p] for p in call["passages"]]
        pairs += taken[:limit] if limit else taken
    return pairs


def cli_seconds(binary, model, dtype, path):
    start = time.perf_counter()
    subprocess.run([binary, "score", "--model", model, "--dtype", dtype, "--input", path],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16", "int8"])
    ap.add_argument("--model", default=str(REPO / "target" / "bench-model"))
    ap.add_argument("--rerank-bin", default=str(REPO / "target" / "release" / "rerank"))
    args = ap.parse_args()
    from rerank import FlagReranker

    pairs = load_pairs()
    assert len(pairs) == 400, len(pairs)
    work = tempfile.mkdtemp()
    all_path, one_path = os.path.join(work, "pairs.json"), os.path.join(work, "one.json")
    Path(all_path).write_text(json.dumps(pairs))
    Path(one_path).write_text(json.dumps(pairs[:1]))
    reranker = FlagReranker(args.model, use_bf16=args.dtype == "bf16")
    if args.dtype == "int8":
        from rerank import NativeReranker

        reranker.model = NativeReranker(args.model, dtype="int8")
    reranker.compute_score(pairs[:8])  # warm-up
    py, cli = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        scores = reranker.compute_score(pairs)
        py.append(time.perf_counter() - start)
        cli.append(cli_seconds(args.rerank_bin, args.model, args.dtype, all_path)
                   - cli_seconds(args.rerank_bin, args.model, args.dtype, one_path))
    assert len(scores) == 400
    best_py, best_cli = min(py), min(cli)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; dtype {args.dtype}; 400 pairs; {args.rounds} rounds, best of each")
    print(f"| path | seconds | pairs/s |\n|---|---|---|")
    print(f"| Python FlagReranker.compute_score | {best_py:.2f} | {400 / best_py:.1f} |")
    print(f"| rerank score (CLI, minus load) | {best_cli:.2f} | {400 / best_cli:.1f} |")
    print(f"Python / CLI time: {best_py / best_cli:.3f} (rounds: python {[round(x, 2) for x in py]}, cli {[round(x, 2) for x in cli]})")


if __name__ == "__main__":
    main()
