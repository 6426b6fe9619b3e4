#!/usr/bin/env python3
"""Layerwise LLM rerankers on CPU (issue #12): rerank (f32, bf16, int8) at several cutoff layers /
compression ratios against FlagEmbedding's own classes, same pairs, same threads, alternated
round by round.

  minicpm  bge-reranker-v2-minicpm-layerwise (LayerWiseMiniCPMForCausalLM), MiniCPM-2B shape:
           hidden 2304, 40 layers, 36 heads x 64 (36 KV heads), MLP 5760, vocab 122,753,
           start_layer 8 (score heads after layers 8..40). Rows: --cutoffs 8,16,28,40.
           Baseline: LayerWiseFlagLLMReranker (venv, transformers 4.57.6).
  gemma2   bge-reranker-v2.5-gemma2-lightweight (CostWiseGemmaForCausalLM), Gemma-2-9B width:
           hidden 3584, 16 heads x 256 (8 KV heads), MLP 14336, vocab 256,000, start_layer 8,
           but only --layers N of the 42 layers (default 16: 8.2 GB instead of 18.5 GB, and
           FlagEmbedding fp32 needs 4 bytes a parameter). Rows: --ratios 1,2,4,8 with the passage
           compressed before --compress-layers (default 4 of 16: about the share of layers that
           run compressed with FlagEmbedding's default 8 of 42; 8 with --full) and cutoff = the
           last layer, plus ratio-1 rows at --cutoffs (default 8 and midway). Baseline: LightWeightFlagLLMReranker
           (venv-446, transformers 4.46.0).

No BGE weights can be downloaded here: the models are random bf16 weights with the real configs
(speed does not depend on the values; N(0, 0.02) projections and embeddings, norms ~1, so nothing
overflows and the score check stays finite), and the fixture tokenizers (tests/fixtures/minicpm-tiny,
tests/fixtures/gemma2-tiny: byte-fallback BPE, vocab 1,536, ids in range of the big vocabularies)
encode the texts: more tokens per word than the real tokenizers, the same ids for both runtimes.
Pairs: the first --queries msmarco queries of tests/fixtures/retrieval/msmarco-10q.jsonl, each
with its first --passages passages (pos then neg), one `rerank bench` call per query.

  V=~/.cache/rerank-reference/venv/bin        # runs this script (numpy, tokenizers)
  # target/release/rerank must have `bench --cutoff-layers/--compress-ratio/--compress-layers`
  $V/python bench/layerwise_compare.py minicpm --make-model             # target/bench-minicpm/, 5.4 GB, ~1 min
  $V/python bench/layerwise_compare.py minicpm --rounds 2               # table; add --check-scores for max |Δ|
  $V/python bench/layerwise_compare.py gemma2 --make-model              # target/bench-gemma2-16L/, 8.2 GB
  $V/python bench/layerwise_compare.py gemma2 --rounds 2
  # peak memory of the whole 42-layer model (18.5 GB; bf16/int8 only: f32 would need 37 GB)
  $V/python bench/layerwise_compare.py gemma2 --full --make-model       # target/bench-gemma2/
  $V/python bench/layerwise_compare.py gemma2 --full --rerank-dtypes bf16,int8 --flag-modes '' \\
      --queries 1 --passages 2 --rounds 1 --ratios 1 --cutoffs ''
  # --dry-run prints the rows, the cost model's GFLOP per pair and the commands, runs nothing

Timing: rerank = `rerank bench --model DIR --pairs calls.jsonl --iterations 1 --warmup 0 --json
--threads T --dtype D --cutoff-layers L [--compress-ratio R --compress-layers C]`, its avg_sps
(one process per row and round; model load not timed), GFLOP/s (rerank's count) and peak RSS.
FlagEmbedding = one subprocess per mode and round (model loaded once, not timed; one untimed
one-pair warm-up), then per row `compute_score(pairs, batch_size=B, max_length=M,
cutoff_layers=[L], [compress_ratio=R, compress_layers=[C]])`, timed minus its batch-size probe
(compute_score's first forward re-runs its first batch every call; measured by forward hooks and
subtracted, as compare.py does for FlagReranker; the raw time is in --json-out), torch threads
= T; peak RSS = the process's VmHWM (load included). Round r runs every runtime, the order rotated
by r; cells are medians over rounds, with each runtime's speed-up over its own full-depth,
uncompressed row in parentheses; "ideal x" is the same ratio of the cost model's FLOPs
(projections + MLP + attention of the layers run, at the compressed lengths).

--check-scores (opt-in, ~doubles rerank's time): `rerank score` with the same options for every
row and dtype, largest |score - FlagEmbedding fp32| over the pairs (FlagEmbedding bf16's
difference is shown whenever both modes ran).

Small test models (every width shrunk, seconds): --hidden 64 --layers 4 (start layer 2; give
--cutoffs / --compress-layers that fit), written to target/bench-{minicpm,gemma2}-h64-4L/.
"""

import argparse
import json
import math
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import llm_compare  # noqa: E402  (workload(), RERANK)

REPO = common.REPO
FIX = REPO / "tests" / "fixtures"
REF = Path.home() / ".cache" / "rerank-reference"
PAIRS_DIR = REPO / "target" / "bench-layerwise-pairs"

# Per model: the real shape, the class FlagEmbedding uses, its venv, the fixture whose config
# keys and tokenizer are reused, the default prompt (for the token-length cost model).
MODELS = {
    "minicpm": {
        "title": "bge-reranker-v2-minicpm-layerwise (LayerWiseMiniCPMForCausalLM, MiniCPM-2B shape)",
        "hidden": 2304, "layers": 40, "heads": 36, "kv_heads": 36, "head_dim": 64, "inter": 5760,
        "vocab": 122753, "start_layer": 8, "layer_sep": 1,
        "flag_class": "LayerWiseFlagLLMReranker",
        "python": REF / "venv" / "bin" / "python",
        "fixture": FIX / "minicpm-tiny",
        "prompt": "Given a query A and a passage B, determine whether the passage contains an answer to "
                  "the query by providing a prediction of either 'Yes' or 'No'.",
        "default_layers": 40,
    },
    "gemma2": {
        "title": "bge-reranker-v2.5-gemma2-lightweight (CostWiseGemmaForCausalLM, Gemma-2-9B width)",
        "hidden": 3584, "layers": 42, "heads": 16, "kv_heads": 8, "head_dim": 256, "inter": 14336,
        "vocab": 256000, "start_layer": 8, "layer_sep": 1,
        "flag_class": "LightWeightFlagLLMReranker",
        "python": REF / "venv-446" / "bin" / "python",
        "fixture": FIX / "gemma2-tiny",
        "prompt": "Predict whether passage B contains an answer to query A.",
        "default_layers": 16,
    },
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
QUERY_PREFIX, PASSAGE_PREFIX, SEP = "A: ", "B: ", "\n"
MINICPM_CUTOFFS = (8, 16, 28, 40)


def log(msg):
    print(f"[layerwise_compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# model shape, config.json, random bf16 safetensors


def model_shape(kind, hidden=None, layers=None):
    """The real shape, or (test sizes) every width shrunk to `hidden` and/or `layers` layers."""
    s = {k: MODELS[kind][k] for k in ("hidden", "layers", "heads", "kv_heads", "head_dim", "inter",
                                      "vocab", "start_layer", "layer_sep")}
    if hidden and hidden != s["hidden"]:
        if kind == "minicpm":  # head_dim = hidden / heads (MiniCPM has no head_dim key)
            heads = max(1, hidden // 64)
            if hidden % heads:
                sys.exit("--hidden for minicpm: a multiple of 64, or below 64")
            s.update(hidden=hidden, heads=heads, kv_heads=heads, head_dim=hidden // heads,
                     inter=hidden * 5 // 2)
        else:  # GQA and heads x head_dim != hidden kept, as in the real model
            s.update(hidden=hidden, heads=4, kv_heads=2, head_dim=max(8, hidden // 2), inter=hidden * 4)
    s["layers"] = layers or MODELS[kind]["default_layers"]
    if s["layers"] < s["start_layer"]:
        s["start_layer"] = max(1, s["layers"] // 2)
    s["real_width"] = s["hidden"] == MODELS[kind]["hidden"]
    return s


def model_dir(kind, s):
    name = {"minicpm": "bench-minicpm", "gemma2": "bench-gemma2"}[kind]
    if not s["real_width"]:
        name += f"-h{s['hidden']}"
    if s["layers"] != MODELS[kind]["layers"] or not s["real_width"]:
        name += f"-{s['layers']}L"
    return REPO / "target" / name


def make_config(kind, s):
    """The fixture's config.json (same keys as the real one, read by the tested loaders) with the
    real model's values."""
    cfg = json.loads((MODELS[kind]["fixture"] / "config.json").read_text())
    common_keys = dict(hidden_size=s["hidden"], intermediate_size=s["inter"], num_hidden_layers=s["layers"],
                       num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
                       vocab_size=s["vocab"], start_layer=s["start_layer"])
    if kind == "minicpm":
        cfg.update(common_keys, max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                   scale_emb=12, scale_depth=1.4, dim_model_base=256, head_type="simple", head_multi=True,
                   initializer_range=0.1, use_cache=False)  # use_cache must be written false (4.57.6)
        assert s["hidden"] == s["heads"] * s["head_dim"]
    else:
        cfg.update(common_keys, head_dim=s["head_dim"], query_pre_attn_scalar=s["head_dim"],
                   sliding_window=4096, sliding_window_size=4096, attn_logit_softcapping=50.0,
                   final_logit_softcapping=30.0, hidden_act="gelu_pytorch_tanh",
                   hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, rope_theta=10000.0,
                   max_position_embeddings=8192, layer_sep=s["layer_sep"], layer_wise=True,
                   initializer_range=0.02)
    return cfg


def tensor_list(kind, s):
    """[(name, shape, mean, std)] in file order. Norm weights ~1 in effect (MiniCPM multiplies by
    w, Gemma-2 by 1 + w)."""
    H, I, V = s["hidden"], s["inter"], s["vocab"]
    q, kv = s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]
    proj = (0.0, 0.02)
    norm = (1.0, 0.02) if kind == "minicpm" else (0.0, 0.02)
    norms = ["input_layernorm", "post_attention_layernorm"]
    if kind == "gemma2":
        norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
    out = [("model.embed_tokens.weight", (V, H), *proj)]
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        out += [(p + n + ".weight", (H,), *norm) for n in norms]
        out += [(p + "self_attn.q_proj.weight", (q, H), *proj), (p + "self_attn.k_proj.weight", (kv, H), *proj),
                (p + "self_attn.v_proj.weight", (kv, H), *proj), (p + "self_attn.o_proj.weight", (H, q), *proj),
                (p + "mlp.gate_proj.weight", (I, H), *proj), (p + "mlp.up_proj.weight", (I, H), *proj),
                (p + "mlp.down_proj.weight", (H, I), *proj)]
    out.append(("model.norm.weight", (H,), *norm))
    n_heads = len(range(s["start_layer"], s["layers"] + 1, s["layer_sep"]))
    out += [(f"lm_head.{k}.linear_head.weight", (1, H), *proj) for k in range(n_heads)]
    return out


def _bf16_bits(x):
    import numpy as np

    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)


def write_shard(path: Path, items, rng, chunk=1 << 24):
    """One safetensors file, tensor by tensor, in chunks: memory stays ~100 MB whatever the size.
    Values: a 65,536-entry table of bf16 N(mean, std) samples indexed by random 16-bit ints (far
    faster than drawing every normal; the values' distribution is the same for all purposes here)."""
    import numpy as np

    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _, _ in items:
        n = math.prod(shape) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, shape, mean, std in items:
            table = _bf16_bits(rng.standard_normal(1 << 16) * std + mean)
            left = math.prod(shape)
            while left:
                k = min(left, chunk)
                f.write(table[rng.integers(0, 1 << 16, k, dtype=np.uint16)].tobytes())
                left -= k
    return off


def make_model(kind, s, out: Path, seed: int, shard_mb: int):
    import numpy as np

    items = tensor_list(kind, s)
    total = sum(math.prod(shape) * 2 for _, shape, _, _ in items)
    out.mkdir(parents=True, exist_ok=True)
    for f in list(out.glob("*.safetensors")) + list(out.glob("model.safetensors.index.json")):
        f.unlink()
    free = shutil.disk_usage(out).free
    if free < total * 1.02:
        sys.exit(f"{out}: {total / 1e9:.1f} GB to write, {free / 1e9:.1f} GB free")
    shards, cur, size = [], [], 0
    for it in items:
        n = math.prod(it[1]) * 2
        if cur and size + n > shard_mb << 20:
            shards.append(cur)
            cur, size = [], 0
        cur.append(it)
        size += n
    shards.append(cur)
    rng = np.random.default_rng(seed)
    start = time.time()
    if len(shards) == 1:
        write_shard(out / "model.safetensors", shards[0], rng)
    else:
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        weight_map = {}
        for fname, group in zip(names, shards):
            write_shard(out / fname, group, rng)
            weight_map.update({name: fname for name, _, _, _ in group})
            log(f"  {fname} ({sum(math.prod(t[1]) * 2 for t in group) / 1e9:.2f} GB)")
        (out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    cfg = make_config(kind, s)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    for name in TOKENIZER_FILES:
        shutil.copy(MODELS[kind]["fixture"] / name, out / name)
    (out / "bench-model.json").write_text(json.dumps({
        "generator": "bench/layerwise_compare.py", "kind": kind, "shape": s, "seed": seed,
        "bytes": total, "shards": len(shards),
        "weights": "bf16; projections, embeddings, score heads N(0, 0.02); norm weights "
                   + ("N(1, 0.02) (x w)" if kind == "minicpm" else "N(0, 0.02) (x (1 + w))"),
        "tokenizer": str(MODELS[kind]["fixture"].relative_to(REPO)),
    }, indent=2) + "\n")
    log(f"wrote {out}: {total / 1e9:.2f} GB in {len(shards)} file(s), {time.time() - start:.0f} s")


def check_model(kind, s, d: Path):
    if not (d / "config.json").exists():
        sys.exit(f"no model at {d}: run with --make-model first (same --layers/--hidden)")
    want, got = make_config(kind, s), json.loads((d / "config.json").read_text())
    diff = [k for k in want if want[k] != got.get(k)]
    if diff:
        sys.exit(f"{d}/config.json differs from this script's in {diff}: re-run with --make-model")


# --------------------------------------------------------------------------------------------
# rows, token lengths, cost model


def default_compress(s):
    """FlagEmbedding's default [8] on the whole 42-layer model; on an N-layer proxy an earlier
    layer (4 for N = 16), so that about the same share of the layers run compressed (12/16 vs 34/42)."""
    L, start = s["layers"], s["start_layer"]
    return [start] if L >= 42 else [max(1, min(start, L // 4))]


def make_settings(kind, s, args):
    """Rows: dicts {label, cutoff, ratio, compress}; the first one is the full-depth uncompressed
    row every speed-up is relative to."""
    L, start = s["layers"], s["start_layer"]
    ints = lambda text: [int(x) for x in text.split(",") if x.strip()]  # noqa: E731
    rows = []
    if kind == "minicpm":
        cutoffs = ints(args.cutoffs) if args.cutoffs is not None else \
            [c for c in MINICPM_CUTOFFS if start <= c <= L] or [start]
        for c in sorted(set(cutoffs) | {L}, reverse=True):
            rows.append({"label": f"cutoff {c}", "cutoff": c, "ratio": 1, "compress": []})
    else:
        compress = ints(args.compress_layers) if args.compress_layers is not None else default_compress(s)
        for r in sorted(set(ints(args.ratios)) | {1}):
            if r == 1:
                rows.append({"label": f"cutoff {L}, ratio 1", "cutoff": L, "ratio": 1, "compress": []})
            else:
                at = ",".join(map(str, compress))
                rows.append({"label": f"cutoff {L}, ratio {r} @ {at}", "cutoff": L, "ratio": r,
                             "compress": compress})
        cutoffs = ints(args.cutoffs) if args.cutoffs is not None else [start, (start + L) // 2]
        for c in sorted(set(cutoffs) - {L}, reverse=True):
            rows.append({"label": f"cutoff {c}, ratio 1", "cutoff": c, "ratio": 1, "compress": []})
    for row in rows:
        if not start <= row["cutoff"] <= L:
            sys.exit(f"cutoff {row['cutoff']} outside {start}..{L} (start_layer..layers)")
    return rows


def pair_lengths(kind, pairs, max_length):
    """(query block, passage, prompt block) token counts per pair as FlagEmbedding builds them:
    [bos] A: query (<= 3/4 max_length) sep | B: passage (only_second cut) | sep prompt. Fixture
    tokenizer via `tokenizers`; only for the cost model and the header."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MODELS[kind]["fixture"] / "tokenizer.json"))
    enc = lambda t: tok.encode(t, add_special_tokens=False).ids  # noqa: E731
    sep, prompt = len(enc(SEP)), len(enc(MODELS[kind]["prompt"]))
    out = []
    for q, p in pairs:
        nq = min(len(enc(QUERY_PREFIX + q)), max_length * 3 // 4)
        np_ = min(len(enc(PASSAGE_PREFIX + p)), max_length)
        first = 1 + nq
        second = min(sep + np_, max_length + sep + prompt - first)
        out.append((first + sep, second - sep, sep + prompt))
    return out


def setting_gflop(s, row, lengths):
    """Mean GFLOP per pair: 2 x multiply-adds of q/k/v/o, the MLP (3 matrices) and attention
    (scores + context, full n x n) for each layer run, at the length that layer sees (compression
    before each compress layer < cutoff, layer 0 excluded, ratio != 1)."""
    H, I = s["hidden"], s["inter"]
    q, kv = s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]
    total = 0.0
    for qb, P, pb in lengths:
        for layer in range(row["cutoff"]):
            if row["ratio"] != 1 and layer in row["compress"] and layer != 0:
                P = math.ceil(P / row["ratio"])
            n = qb + P + pb
            total += 2 * n * (H * (2 * q + 2 * kv) + 3 * H * I) + 2 * 2 * n * n * q
    return total / len(lengths) / 1e9


# --------------------------------------------------------------------------------------------
# runners


def layer_flags(row):
    flags = ["--cutoff-layers", str(row["cutoff"])]
    if row["ratio"] != 1 and row["compress"]:
        flags += ["--compress-ratio", str(row["ratio"]), "--compress-layers", ",".join(map(str, row["compress"]))]
    return flags


def rerank_bench_cmd(args, d, calls_file, dtype, row):
    return [str(args.rerank_bin), "bench", "--model", str(d), "--pairs", str(calls_file), "--iterations", "1",
            "--warmup", str(args.rerank_warmup), "--json", "--threads", str(args.threads), "--dtype", dtype,
            "--max-length", str(args.max_length)] + layer_flags(row)


def rerank_score_cmd(args, d, pairs_file, dtype, row):
    return [str(args.rerank_bin), "score", "--model", str(d), "--input", str(pairs_file), "--threads",
            str(args.threads), "--dtype", dtype, "--max-length", str(args.max_length)] + layer_flags(row)


def run_json(cmd, timeout, env=None, stdin=None):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, input=stdin)
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd[:3])} ...: {p.stderr.strip()[-800:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


FLAG_SNIPPET = r"""
import json, math, sys, time, warnings
job = json.load(open(sys.argv[1]))
import torch
torch.set_num_threads(job["threads"])
warnings.filterwarnings("ignore")
from transformers.utils import logging as hf_logging
hf_logging.set_verbosity_error()
import FlagEmbedding
pairs = json.load(open(job["pairs"]))
t0 = time.perf_counter()
r = getattr(FlagEmbedding, job["cls"])(job["model"], use_fp16=False, use_bf16=job["mode"] == "bf16", devices="cpu")
load = time.perf_counter() - t0
forwards = []
r.model.register_forward_pre_hook(lambda m, a: forwards.append([time.perf_counter(), None]))
r.model.register_forward_hook(lambda m, a, o: forwards[-1].__setitem__(1, time.perf_counter()))
def kwargs(row):
    kw = dict(batch_size=job["batch_size"], max_length=job["max_length"], cutoff_layers=[row["cutoff"]])
    if job["lightweight"]:
        kw.update(compress_ratio=row["ratio"], compress_layers=row["compress"] or [job["start_layer"]])
    return kw
r.compute_score(pairs[:1], **kwargs(job["rows"][0]))  # warm-up, untimed
out = []
for row in job["rows"]:
    forwards.clear()
    try:
        t = time.perf_counter()
        scores = r.compute_score(pairs, **kwargs(row))
        took = time.perf_counter() - t
    except Exception as e:  # noqa: BLE001
        out.append({"error": f"{type(e).__name__}: {e}"[:500]})
        continue
    batches = math.ceil(len(pairs) / job["batch_size"])
    probe = forwards[0][1] - forwards[0][0] if len(forwards) == batches + 1 and forwards[0][1] else None
    out.append({"raw_seconds": took, "probe_seconds": probe, "forwards": len(forwards),
                "seconds": took - (probe or 0.0), "scores": [float(x) for x in scores]})
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"load_seconds": load, "rows": out, "rss_mb": int(hwm) / 1024,
                  "torch": torch.__version__, "transformers": __import__("transformers").__version__}))
"""


def run_flag(args, kind, s, d, pairs_file, mode, rows):
    job = {"cls": MODELS[kind]["flag_class"], "model": str(d), "pairs": str(pairs_file), "mode": mode,
           "threads": args.threads, "batch_size": args.batch_size, "max_length": args.max_length,
           "lightweight": kind == "gemma2", "start_layer": s["start_layer"],
           "rows": [{k: r[k] for k in ("cutoff", "ratio", "compress")} for r in rows]}
    job_file = PAIRS_DIR / f"flag-job-{kind}-{mode}.json"
    job_file.write_text(json.dumps(job))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1")
    return run_json([str(args.flag_python or MODELS[kind]["python"]), "-c", FLAG_SNIPPET, str(job_file)],
                    args.timeout, env=env)


def binary_notes(rerank_bin: Path):
    """Warn when the binary lacks the layer flags or is older than the Rust sources."""
    notes = []
    if not rerank_bin.exists():
        return [f"{rerank_bin} does not exist (cargo build --release --bin rerank)"]
    help_text = subprocess.run([str(rerank_bin), "bench", "--help"], capture_output=True, text=True).stdout
    missing = [f for f in ("--cutoff-layers", "--compress-ratio", "--compress-layers") if f not in help_text]
    if missing:
        notes.append(f"`rerank bench` of {rerank_bin} has no {', '.join(missing)}: rebuild it")
    built = rerank_bin.stat().st_mtime
    newer = [p for p in (REPO / "crates").rglob("*") if p.suffix in (".rs", ".toml") and p.stat().st_mtime > built]
    if newer:
        notes.append(f"{rerank_bin} is older than {len(newer)} source file(s) under crates/ "
                     f"(e.g. {newer[0].relative_to(REPO)}): results are for the binary, not the tree")
    return notes


def cpu_line(threads):
    m = common.machine_description()
    fam = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        kv = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        m["cpu"] = kv.get("Model name", m["cpu"]).strip()
        fam = f"family {kv.get('CPU family', '?').strip()} model {kv.get('Model', '?').strip()},"
    except OSError:
        pass
    return (f"CPU: {m['cpu']} ({fam} {m['isa']}, L3 {m['l3']}, {m['memory']} RAM), "
            f"{m['logical_cpus']} logical CPUs, {threads} threads for every runtime")


# --------------------------------------------------------------------------------------------
# report


def fmt(x, digits=3):
    if x is None:
        return "—"
    return f"{x:.{digits}g}" if x < 1000 else f"{x:,.0f}"


def report(kind, s, d, args, rows, runtimes, speed, extra, flag_info, diffs, lengths, gflop, notes, n_calls, pairs):
    lines = []
    p = lines.append
    shape = (f"hidden {s['hidden']}, {s['layers']} layers, {s['heads']} heads × {s['head_dim']}, "
             f"{s['kv_heads']} KV heads, MLP {s['inter']}, vocab {s['vocab']:,}, start_layer {s['start_layer']}")
    p(f"### {MODELS[kind]['title']} — {time.strftime('%Y-%m-%d %H:%M')}\n")
    p(f"Random bf16 weights ({shape}), `{d.relative_to(REPO) if d.is_relative_to(REPO) else d}`; "
      f"rerank {common.git_rev()}.\n")
    p(f"{cpu_line(args.threads)}.  ")
    tok = [a + b + c for a, b, c in lengths]
    p(f"{len(pairs)} pairs ({n_calls} {'query' if n_calls == 1 else 'queries'} × ≤ {args.passages} passages, msmarco-10q), "
      f"{sum(tok):,} tokens (mean {statistics.mean(tok):.0f}, {min(tok)}–{max(tok)} per pair, fixture "
      f"tokenizer); max_length {args.max_length}; FlagEmbedding batch_size {args.batch_size}; "
      f"{args.rounds} alternated round(s), medians.\n")
    for n in notes:
        p(f"> NOTE: {n}\n")
    full = rows[0]["label"]

    def cell(rt, label):
        v = speed[rt].get(label) or []
        if not v:
            return "fail" if "error" in extra[rt].get(label, {}) else "—"
        med, base = statistics.median(v), statistics.median(speed[rt].get(full) or [float("nan")])
        rel = f" ({med / base:.2f}×)" if label != full and base == base else ""
        spread = f" [{min(v):.3g}–{max(v):.3g}]" if len(v) > 1 else ""
        return f"{med:.3g}{spread}{rel}"

    p("pairs/s (median [min–max]; (×) = speed-up over the same runtime's first row)\n")
    ratio_col = any(r.startswith("rerank") for r in runtimes) and any(r.startswith("Flag") for r in runtimes)
    p("| row | GFLOP/pair | ideal × | " + " | ".join(runtimes) + (" | best rerank ÷ best FlagEmbedding |" if ratio_col else " |"))
    p("|---" * (3 + len(runtimes) + ratio_col) + "|")
    for row in rows:
        lab = row["label"]
        cells = [cell(rt, lab) for rt in runtimes]
        tail = ""
        if ratio_col:
            best = lambda pre: max((statistics.median(speed[rt][lab]) for rt in runtimes  # noqa: E731
                                    if rt.startswith(pre) and speed[rt].get(lab)), default=None)
            br, bf = best("rerank"), best("Flag")
            tail = f" | {br / bf:.2f}" if br and bf else " | —"
        p(f"| {lab} | {fmt(gflop[lab])} | {gflop[full] / gflop[lab]:.2f} | " + " | ".join(cells) + tail + " |")
    rr = [rt for rt in runtimes if rt.startswith("rerank")]
    if rr:
        p("\nrerank: GFLOP/s as `rerank bench` counts them (% of its measured peak) · peak RSS MiB (last round)\n")
        p("| row | " + " | ".join(rr) + " |")
        p("|---" * (1 + len(rr)) + "|")
        for row in rows:
            cells = []
            for rt in rr:
                e = extra[rt].get(row["label"], {})
                ok = all(e.get(k) is not None for k in ("gflops", "peak_pct", "rss_mb"))
                cells.append(f"{e['gflops']:.0f} ({e['peak_pct']:.0f} %) · {e['rss_mb']:,.0f}" if ok else "—")
            p(f"| {row['label']} | " + " | ".join(cells) + " |")
    for rt in runtimes:
        if rt in flag_info:
            fi = flag_info[rt]
            probe = [e.get("probe_seconds") for e in extra[rt].values() if e.get("probe_seconds") is not None]
            p(f"\n{rt}: {MODELS[kind]['flag_class']}, torch {fi.get('torch')}, transformers {fi.get('transformers')}; "
              f"load {fi['load_seconds']:.0f} s (untimed), peak RSS {fi['rss_mb']:,.0f} MiB; "
              f"batch-size probe subtracted ({len(probe)} rows, {sum(probe):.1f} s in the last round)")
    errors = [(rt, lab, e["error"]) for rt in runtimes for lab, e in extra[rt].items() if "error" in e]
    for rt, lab, err in errors:
        p(f"\n> {rt}, {lab}: {' '.join(err.split())[:400]}")
    if diffs:
        cols = sorted({rt for lab in diffs for rt in diffs[lab] if rt in runtimes}, key=runtimes.index)
        p("\nscores: largest |score − FlagEmbedding fp32| over the pairs (rerank via `rerank score`, same options)\n")
        p("| row | FlagEmbedding fp32 range | " + " | ".join(cols) + " |")
        p("|---" * (2 + len(cols)) + "|")
        for row in rows:
            lab = row["label"]
            if lab not in diffs:
                continue
            rng_ = diffs[lab].get("_range")
            cells = [f"{diffs[lab][c]:.2e}" if isinstance(diffs[lab].get(c), float) else str(diffs[lab].get(c, "—"))
                     for c in cols]
            p(f"| {lab} | {rng_[0]:.3f} … {rng_[1]:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("--make-model", action="store_true", help="write the random-weight model folder and exit")
    ap.add_argument("--layers", type=int, help="layers to build/use (minicpm: 40; gemma2: 16, of 42)")
    ap.add_argument("--full", action="store_true", help="gemma2: all 42 layers (target/bench-gemma2/, 18.5 GB)")
    ap.add_argument("--hidden", type=int, help="TEST ONLY: shrink every width to this hidden size")
    ap.add_argument("--model-dir", type=Path, help="default: target/bench-<model>[-h<H>][-<N>L]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-mb", type=int, default=2048, help="largest safetensors shard (MiB)")
    ap.add_argument("--cutoffs", help="cutoff rows, comma-separated (minicpm: 8,16,28,40; gemma2: ratio-1 rows "
                                      "besides the last layer: start_layer and midway)")
    ap.add_argument("--ratios", default="1,2,4,8", help="gemma2: compress ratios at cutoff = last layer")
    ap.add_argument("--compress-layers", help="gemma2: layers before which the passage is compressed, "
                                              "comma-separated (default: 8 with --full, 4 with 16 layers)")
    ap.add_argument("--queries", type=int, default=1)
    ap.add_argument("--passages", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=4,
                    help="FlagEmbedding compute_score batch_size (its probe re-runs one batch per call: "
                         "below --passages it costs less wall time; subtracted either way)")
    ap.add_argument("--rerank-dtypes", default="f32,bf16,int8")
    ap.add_argument("--flag-modes", default="fp32,bf16", help="FlagEmbedding: fp32 (use_fp16=False), bf16 (use_bf16)")
    ap.add_argument("--rerank-bin", type=Path, default=llm_compare.RERANK)
    ap.add_argument("--rerank-warmup", type=int, default=0, help="`rerank bench --warmup` passes")
    ap.add_argument("--flag-python", type=Path, help="python of the FlagEmbedding venv (default per model)")
    ap.add_argument("--check-scores", action="store_true",
                    help="`rerank score` per row and dtype: max |Δ| vs FlagEmbedding fp32 (~doubles rerank's time)")
    ap.add_argument("--timeout", type=int, default=4 * 3600, help="seconds per subprocess")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--dry-run", action="store_true", help="print rows, GFLOP/pair and commands; run nothing")
    args = ap.parse_args()

    kind = args.model
    layers = MODELS[kind]["layers"] if args.full else args.layers
    s = model_shape(kind, args.hidden, layers)
    d = args.model_dir or model_dir(kind, s)
    if args.make_model:
        make_model(kind, s, d, args.seed, args.shard_mb)
        return
    rows = make_settings(kind, s, args)
    calls = llm_compare.workload(args.queries, args.passages)
    pairs = [[c["query"], p] for c in calls for p in c["passages"]]
    lengths = pair_lengths(kind, pairs, args.max_length)
    gflop = {r["label"]: setting_gflop(s, r, lengths) for r in rows}
    PAIRS_DIR.mkdir(parents=True, exist_ok=True)
    calls_file, pairs_file = PAIRS_DIR / "calls.jsonl", PAIRS_DIR / "pairs.json"
    calls_file.write_text("".join(json.dumps(c) + "\n" for c in calls))
    pairs_file.write_text(json.dumps(pairs))

    runtimes = [f"rerank {x}" for x in args.rerank_dtypes.split(",") if x] + \
               [f"FlagEmbedding {x}" for x in args.flag_modes.split(",") if x]
    if args.dry_run:
        print(f"{d} ({'present' if (d / 'config.json').exists() else 'missing'}); {len(pairs)} pairs, "
              f"{sum(map(sum, lengths)):,} tokens; runtimes {runtimes}")
        for r in rows:
            print(f"  {r['label']:28s} {gflop[r['label']]:9.4g} GFLOP/pair  ideal {gflop[rows[0]['label']] / gflop[r['label']]:.2f}×  "
                  + " ".join(rerank_bench_cmd(args, d, calls_file, "f32", r)[1:]))
        return
    check_model(kind, s, d)
    notes = binary_notes(args.rerank_bin) if any(r.startswith("rerank") for r in runtimes) else []
    for n in notes:
        log("NOTE: " + n)
    if any("has no" in n or "does not exist" in n for n in notes):
        runtimes = [r for r in runtimes if not r.startswith("rerank")]
        log("rerank runtimes skipped")

    speed = {rt: {} for rt in runtimes}
    extra = {rt: {} for rt in runtimes}
    flag_info, commands = {}, {}
    started = time.time()
    for rnd in range(args.rounds):
        order = runtimes[rnd % len(runtimes):] + runtimes[:rnd % len(runtimes)] if runtimes else []
        for rt in order:
            src, mode = rt.split()
            t0 = time.time()
            if src == "rerank":
                for row in rows:
                    cmd = rerank_bench_cmd(args, d, calls_file, mode, row)
                    commands[f"{rt} | {row['label']}"] = " ".join(cmd)
                    try:
                        r = run_json(cmd, args.timeout)
                    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
                        extra[rt][row["label"]] = {"error": str(e)[:600]}
                        log(f"round {rnd + 1}: {rt}, {row['label']}: FAILED {str(e)[:300]}")
                        continue
                    speed[rt].setdefault(row["label"], []).append(r["avg_sps"])
                    extra[rt][row["label"]] = {"gflops": r.get("gflops"), "peak_pct": r.get("peak_pct"),
                                               "rss_mb": r.get("peak_rss_mb"), "tokens": r.get("tokens"),
                                               "bench": r}
                    log(f"round {rnd + 1}: {rt}, {row['label']}: {r['avg_sps']:.4g} pairs/s")
            else:
                try:
                    r = run_flag(args, kind, s, d, pairs_file, mode, rows)
                except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
                    for row in rows:
                        extra[rt][row["label"]] = {"error": str(e)[:600]}
                    log(f"round {rnd + 1}: {rt}: FAILED {str(e)[:300]}")
                    continue
                flag_info[rt] = {k: v for k, v in r.items() if k != "rows"}
                for row, res in zip(rows, r["rows"]):
                    extra[rt][row["label"]] = res
                    if "error" in res:
                        log(f"round {rnd + 1}: {rt}, {row['label']}: FAILED {res['error'][:300]}")
                        continue
                    speed[rt].setdefault(row["label"], []).append(len(pairs) / res["seconds"])
                    log(f"round {rnd + 1}: {rt}, {row['label']}: {len(pairs) / res['seconds']:.4g} pairs/s "
                        f"(probe {res['probe_seconds'] or 0:.1f} s subtracted)")
            log(f"round {rnd + 1}: {rt} took {time.time() - t0:.0f} s")

    diffs = {}
    ref_rt = "FlagEmbedding fp32"
    for row in rows:
        ref = extra.get(ref_rt, {}).get(row["label"], {}).get("scores")
        if ref is None:
            continue
        diffs[row["label"]] = {"_range": (min(ref), max(ref))}
        for rt in runtimes:
            src, mode = rt.split()
            got = None
            if src == "rerank" and args.check_scores:
                try:
                    got = run_json(rerank_score_cmd(args, d, pairs_file, mode, row), args.timeout)
                except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
                    diffs[row["label"]][rt] = "fail"
                    log(f"rerank score {mode}, {row['label']}: FAILED {str(e)[:300]}")
                    continue
            elif src == "FlagEmbedding" and rt != ref_rt:
                got = extra[rt].get(row["label"], {}).get("scores")
            if got is not None:
                diffs[row["label"]][rt] = max(abs(a - b) for a, b in zip(got, ref))
    if args.check_scores and not diffs:
        log(f"--check-scores: no {ref_rt} scores to compare with (add fp32 to --flag-modes)")
    if not any(len(v) > 1 for v in diffs.values()):
        diffs = {}

    text = report(kind, s, d, args, rows, runtimes, speed, extra, flag_info, diffs, lengths, gflop, notes,
                  len(calls), pairs)
    print("\n" + text)
    log(f"done in {time.time() - started:.0f} s")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({
            "model": kind, "shape": s, "model_dir": str(d), "machine": common.machine_description(),
            "rerank_rev": common.git_rev(), "args": {k: str(v) for k, v in vars(args).items()},
            "pairs": len(pairs), "lengths": lengths, "rows": rows, "gflop_per_pair": gflop,
            "runtimes": runtimes, "pairs_per_s": speed,
            "medians": {rt: {lab: statistics.median(v) for lab, v in speed[rt].items()} for rt in runtimes},
            "extra": extra, "flag": flag_info, "score_diffs": diffs, "commands": commands, "notes": notes,
            "report": text,
        }, indent=1) + "\n")
        log(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
