#!/usr/bin/env python3
"""bge-reranker-v2-gemma on CPU: rerank (f32, bf16, int8) against FlagEmbedding's FlagLLMReranker
(fp32 and use_bf16), same pairs, same threads, alternated round by round.

No BGE weights can be downloaded here: the model is random weights with the real
bge-reranker-v2-gemma config (Gemma-2B: 18 layers, hidden 2048, 8 heads × 256, one KV head,
MLP 16384, vocab 256,000), stored in bf16 like the published checkpoint (5 GB). Speed does not
depend on the weight values. The real Gemma tokenizer is not available either: the fixture
tokenizer (tests/fixtures/gemma-tiny, byte-fallback BPE, 1,536 pieces) encodes the texts, so
sequences are longer than the real tokenizer's (more tokens per word); both runtimes see the
same ids.

  V=~/.cache/rerank-reference/venv/bin
  cargo build --release --bin rerank
  $V/python bench/llm_compare.py --make-model          # target/bench-gemma/ (~5 GB)
  $V/python bench/llm_compare.py --queries 2 --passages 10 --rounds 2

Prints a markdown table: pairs/s (median of rounds), GFLOP/s, peak RSS, and each score set's
largest difference from FlagEmbedding fp32 (rerank f32 should be float noise; bf16 and int8
show their agreement).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

REPO = common.REPO
MODEL = REPO / "target" / "bench-gemma"
TOKENIZER = REPO / "tests" / "fixtures" / "gemma-tiny"
SAMPLES = REPO / "tests" / "fixtures" / "retrieval" / "msmarco-10q.jsonl"
RERANK = REPO / "target" / "release" / "rerank"

# bge-reranker-v2-gemma's config.json (GemmaForCausalLM, Gemma-2B shapes).
CONFIG = {
    "architectures": ["GemmaForCausalLM"],
    "model_type": "gemma",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "pad_token_id": 0,
    "head_dim": 256,
    "hidden_act": "gelu",
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 2048,
    "intermediate_size": 16384,
    "max_position_embeddings": 8192,
    "num_attention_heads": 8,
    "num_hidden_layers": 18,
    "num_key_value_heads": 1,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "vocab_size": 256000,
    "use_cache": False,
    "torch_dtype": "bfloat16",
}

FLAG_SNIPPET = r"""
import json, sys, time, torch
from FlagEmbedding import FlagLLMReranker
torch.set_num_threads(int(sys.argv[3]))
pairs = json.load(open(sys.argv[1]))
r = FlagLLMReranker(sys.argv[2], use_fp16=False, use_bf16=sys.argv[4] == "bf16", devices="cpu")
batch = int(sys.argv[5])
r.compute_score(pairs[:1], batch_size=batch)
# compute_score first runs its first batch once more to probe the batch size: timed by hooks
# on the model's forward and subtracted (as bench/layerwise_compare.py does).
forwards = []
r.model.register_forward_pre_hook(lambda m, a: forwards.append([time.perf_counter(), None]))
r.model.register_forward_hook(lambda m, a, o: forwards[-1].__setitem__(1, time.perf_counter()))
start = time.perf_counter()
scores = r.compute_score(pairs, batch_size=batch)
took = time.perf_counter() - start
batches = -(-len(pairs) // batch)
probe = forwards[0][1] - forwards[0][0] if len(forwards) == batches + 1 and forwards[0][1] else 0.0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"seconds": took - probe, "raw_seconds": took, "probe_seconds": probe,
                  "scores": [float(s) for s in scores], "rss_mb": int(hwm) / 1024}))
"""


def log(msg):
    print(f"[llm_compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_model(out: Path, seed: int):
    import torch
    from transformers import GemmaConfig, GemmaForCausalLM

    torch.manual_seed(seed)
    torch.set_default_dtype(torch.bfloat16)
    cfg = GemmaConfig(**{k: v for k, v in CONFIG.items() if k not in ("architectures", "torch_dtype")})
    start = time.time()
    model = GemmaForCausalLM(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True, max_shard_size="20GB")
    (out / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(TOKENIZER / name, out / name)
    log(f"wrote {out} in {time.time() - start:.0f} s")


def workload(queries: int, passages: int):
    calls = []
    for line in SAMPLES.read_text().splitlines()[:queries]:
        row = json.loads(line)
        calls.append({"query": row["query"], "passages": (row["pos"] + row["neg"])[:passages]})
    return calls


def run_rerank(calls_file: Path, dtype: str, threads: int, batch: int):
    cmd = [str(RERANK), "bench", "--model", str(MODEL), "--pairs", str(calls_file), "--dtype", dtype,
           "--threads", str(threads), "--iterations", "1", "--warmup", "0", "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def rerank_scores(pairs, dtype: str, threads: int):
    cmd = [str(RERANK), "score", "--model", str(MODEL), "--dtype", dtype, "--threads", str(threads)]
    out = subprocess.run(cmd, input=json.dumps(pairs), check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def run_flag(pairs_file: Path, mode: str, threads: int, batch: int):
    cmd = [sys.executable, "-c", FLAG_SNIPPET, str(pairs_file), str(MODEL), str(threads), mode, str(batch)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make-model", action="store_true", help="write target/bench-gemma/ and exit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=2)
    ap.add_argument("--passages", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4, help="FlagLLMReranker batch size")
    ap.add_argument("--rerank-dtypes", default="f32,bf16,int8")
    ap.add_argument("--flag-modes", default="fp32,bf16")
    ap.add_argument("--check-scores", action="store_true",
                    help="also score the pairs with `rerank score` per dtype (one more pass each) "
                         "for the agreement column")
    args = ap.parse_args()
    if args.make_model:
        make_model(MODEL, args.seed)
        return
    if not (MODEL / "config.json").exists():
        sys.exit(f"no model at {MODEL}: run with --make-model first")
    calls = workload(args.queries, args.passages)
    pairs = [[c["query"], p] for c in calls for p in c["passages"]]
    tmp = REPO / "target" / "bench-gemma-pairs"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "calls.jsonl").write_text("".join(json.dumps(c) + "\n" for c in calls))
    (tmp / "pairs.json").write_text(json.dumps(pairs))

    runtimes = [f"rerank {d}" for d in args.rerank_dtypes.split(",") if d] + \
               [f"FlagEmbedding {m}" for m in args.flag_modes.split(",") if m]
    speed = {rt: [] for rt in runtimes}
    extra = {}
    for rnd in range(args.rounds):
        for rt in runtimes:
            kind, mode = rt.split()
            if kind == "rerank":
                r = run_rerank(tmp / "calls.jsonl", mode, args.threads, args.batch_size)
                speed[rt].append(r["avg_sps"])
                extra[rt] = {"gflops": r["gflops"], "peak_pct": r["peak_pct"], "rss_mb": r["peak_rss_mb"]}
            else:
                r = run_flag(tmp / "pairs.json", mode, args.threads, args.batch_size)
                speed[rt].append(len(pairs) / r["seconds"])
                extra[rt] = {"rss_mb": r["rss_mb"], "scores": r["scores"]}
            log(f"round {rnd + 1}: {rt}: {speed[rt][-1]:.3f} pairs/s")

    reference = extra.get("FlagEmbedding fp32", {}).get("scores")
    for rt in runtimes:
        kind, mode = rt.split()
        if kind == "rerank" and reference is not None and args.check_scores:
            got = rerank_scores(pairs, mode, args.threads)
            extra[rt]["max_diff"] = max(abs(a - b) for a, b in zip(got, reference))
        elif "scores" in extra[rt] and reference is not None:
            extra[rt]["max_diff"] = max(abs(a - b) for a, b in zip(extra[rt]["scores"], reference))

    best_flag = max((statistics.median(speed[rt]) for rt in runtimes if rt.startswith("Flag")), default=None)
    print(f"\n{common.machine_description()}\n")
    print(f"{len(calls)} queries × {args.passages} passages ({len(pairs)} pairs), {args.threads} threads, "
          f"{args.rounds} alternated rounds, medians\n")
    print("| runtime | pairs/s | × best FlagEmbedding | GFLOP/s (% of peak) | peak RSS MiB | max |Δ| vs FlagEmbedding fp32 |")
    print("|---|---|---|---|---|---|")
    for rt in runtimes:
        med = statistics.median(speed[rt])
        e = extra[rt]
        ratio = f"{med / best_flag:.2f}" if best_flag else "—"
        gf = f"{e['gflops']:.1f} ({e['peak_pct']:.0f} %)" if "gflops" in e else "—"
        diff = f"{e['max_diff']:.2e}" if "max_diff" in e else "—"
        print(f"| {rt} | {med:.3f} | {ratio} | {gf} | {e['rss_mb']:.0f} | {diff} |")


if __name__ == "__main__":
    main()
