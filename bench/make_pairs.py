#!/usr/bin/env python3
"""Write the benchmark workloads as JSONL, one scoring call per line: {"query": str, "passages": [str]}.

  w1.jsonl       1 call, 32 pairs, each pair's FlagReranker encoding is exactly 256 tokens
  w3.jsonl       1 call, 1 pair of exactly 64 tokens
  msmarco.jsonl  10 calls (MS MARCO queries), query + pos + 25 neg each
  nq.jsonl       10 calls (NQ queries), query + pos + neg each (80-101 passages)

This is the format `rerank bench --pairs FILE.jsonl` reads; compare.py feeds the same files to
every runtime. Default output folder: target/bench-pairs/ (never committed).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=common.DEFAULT_PAIRS_DIR, help="output folder")
    ap.add_argument("--workloads", default=",".join(common.WORKLOADS))
    ap.add_argument("--max-length", type=int, default=512, help="for the token statistics printed")
    args = ap.parse_args()

    tok = common.load_tokenizer()
    for name in args.workloads.split(","):
        calls = common.build_calls(tok, name)
        path = args.out / f"{name}.jsonl"
        common.write_jsonl(path, calls)
        lens = [len(x) for c in calls for x in common.flag_encode(tok, [(c["query"], p) for p in c["passages"]],
                                                                   args.max_length)]
        print(f"{path}: {len(calls)} calls, {len(lens)} pairs, tokens/pair mean {sum(lens) / len(lens):.1f} "
              f"min {min(lens)} max {max(lens)} (max_length {args.max_length})")


if __name__ == "__main__":
    main()
