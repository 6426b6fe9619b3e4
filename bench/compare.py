#!/usr/bin/env python3
"""Side-by-side CPU speed comparison: rerank vs ONNX Runtime (fp32, int8) vs PyTorch/FlagEmbedding.

Every runtime scores the SAME pairs (target/bench-pairs/*.jsonl, written by make_pairs.py if
missing) with the SAME model (target/bench-model/, written by make_model.py), on --threads
threads (default 2). Runtimes are ALTERNATED: each round runs every workload on every runtime
once, in round-robin order (the starting runtime rotates every round); the reported figure is
the median over rounds of pairs/s, and ratios are ratios of medians.

Runtimes (--runtimes, comma-separated):
  rerank-f32, rerank-bf16, rerank-int8
        `rerank bench --model DIR --pairs W.jsonl --dtype D --threads T --iterations K
        --warmup 1 --json` (a fresh process per round; model loading not timed; avg_sps reported)
  torch-fp32   FlagReranker(DIR, use_fp16=False, devices='cpu')'s own model and tokenizer; the
               pairs are encoded exactly as FlagReranker does (id concatenation, only_second),
               sorted by length, cut into batches of --batch-size padded per batch, model
               forward under torch.inference_mode. Timed end to end (tokenization included).
               This is compute_score minus its batch-size probe (see flag-fp32).
  torch-bf16   the same with a bfloat16 copy of the model (oneDNN bf16 kernels on AVX512-BF16)
  flag-fp32    FlagReranker.compute_score(pairs, max_length=L) verbatim (batch_size 128): what
               a FlagEmbedding user gets, INCLUDING its batch-size probe, which runs the first
               batch one extra time on every call (x2 on W1/W3/msmarco). Not in the defaults.
  ort-fp32     onnxruntime CPU, model.opt.onnx (transformers optimizer, fused attention) if
               present else model.onnx; ORT_ENABLE_ALL; same batches as torch-fp32
  ort-fp32-noopt   model.onnx (plain export) with ORT_ENABLE_ALL only. Not in the defaults.
  ort-int8     model.int8.onnx (quantize_dynamic, QInt8 weights); same batches

Workloads (--workloads): w1 (32 pairs x 256 tokens, 1 call), w3 (1 pair x 64 tokens, 1 call),
msmarco (10 calls: query + pos + 25 neg), nq (10 calls: query + pos + neg, 80-101 passages).

Each (round, workload, runtime) measurement repeats whole passes over the workload's calls
until --min-time seconds have passed (at least one pass). Before round 1, each runtime runs
the first call of each workload once, untimed (warm-up). rerank's passes are `--iterations`
of one process: its first measurement of a workload sizes them from one pass and, when that
pass was shorter than --min-time, is taken again at that size (a single 20 ms call is too
noisy to count).

Score sanity (--check-scores, default on): max |score - torch-fp32 score| over the workload
pairs for rerank f32 (`rerank score --model DIR --max-length L` on stdin) and for the other
Python runtimes.
"""

import argparse
import copy
import datetime
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ALL_RUNTIMES = ("rerank-f32", "rerank-bf16", "rerank-int8", "torch-fp32", "torch-bf16", "flag-fp32",
                "ort-fp32", "ort-fp32-noopt", "ort-int8")
DEFAULT_RUNTIMES = ("rerank-f32", "rerank-bf16", "rerank-int8", "torch-fp32", "torch-bf16", "ort-fp32", "ort-int8")
BASELINES = ("ort-fp32", "ort-int8", "torch-fp32")


def log(msg):
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Python runtimes


class PyRuntime:
    """score(query, passages) -> list of raw scores in input order."""

    kind = "python"

    def __init__(self, name, tok, max_length, batch_size):
        self.name = name
        self.tok = tok
        self.max_length = max_length
        self.batch_size = batch_size
        self.pad_id = tok.pad_token_id

    def batches(self, query, passages):
        """FlagReranker's ids, sorted by length (longest first), padded per batch (right)."""
        import numpy as np

        ids = common.flag_encode(self.tok, [(query, p) for p in passages], self.max_length)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            width = len(ids[idx[0]])
            input_ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, i in enumerate(idx):
                input_ids[r, :len(ids[i])] = ids[i]
                mask[r, :len(ids[i])] = 1
            yield idx, input_ids, mask

    def forward(self, input_ids, mask):
        raise NotImplementedError

    def score(self, query, passages):
        out = [0.0] * len(passages)
        for idx, input_ids, mask in self.batches(query, passages):
            logits = self.forward(input_ids, mask)
            for i, v in zip(idx, logits.reshape(-1).tolist()):
                out[i] = float(v)
        return out


class TorchRuntime(PyRuntime):
    def __init__(self, name, tok, model, max_length, batch_size):
        super().__init__(name, tok, max_length, batch_size)
        self.model = model

    def forward(self, input_ids, mask):
        import torch

        with torch.inference_mode():
            logits = self.model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask)).logits
        return logits.float().numpy()


class FlagRuntime(PyRuntime):
    def __init__(self, name, tok, reranker, max_length, batch_size):
        super().__init__(name, tok, max_length, batch_size)
        self.reranker = reranker

    def score(self, query, passages):
        s = self.reranker.compute_score([[query, p] for p in passages], max_length=self.max_length)
        return [float(s)] if isinstance(s, (int, float)) else [float(x) for x in s]


class OrtRuntime(PyRuntime):
    def __init__(self, name, tok, path, threads, max_length, batch_size):
        import onnxruntime as ort

        super().__init__(name, tok, max_length, batch_size)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def forward(self, input_ids, mask):
        return self.sess.run(["logits"], {"input_ids": input_ids, "attention_mask": mask})[0]


def time_python(rt, calls, min_time):
    n_pairs = sum(len(c["passages"]) for c in calls)
    passes = 0
    scores = None
    t0 = time.perf_counter()
    while True:
        scores = [rt.score(c["query"], c["passages"]) for c in calls]
        passes += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time:
            break
    return {"sps": passes * n_pairs / elapsed, "seconds": elapsed, "passes": passes}, scores


# --------------------------------------------------------------------------------------------
# the rerank binary


class RerankBinary:
    def __init__(self, path: Path, model_dir: Path, threads, max_length):
        self.path = path
        self.model_dir = model_dir
        self.threads = threads
        self.max_length = max_length
        self.version = None
        self.bench_ok = False
        self.bench_help = ""
        self.why_not = ""
        if not path.exists():
            self.why_not = f"{path} does not exist (cargo build --release --bin rerank)"
            return
        try:
            self.version = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                                          timeout=30).stdout.strip()
            r = subprocess.run([str(path), "bench", "--help"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            self.why_not = f"{path} cannot run: {e}"
            return
        if r.returncode != 0:
            first = (r.stderr or r.stdout).strip().splitlines()
            self.why_not = f"`{path.name} bench` is not available in this binary ({first[0] if first else r.returncode})"
            return
        self.bench_ok = True
        self.bench_help = r.stdout

    def bench(self, dtype, pairs_path, iterations, warmup, synthetic=None):
        cmd = [str(self.path), "bench", "--model", str(self.model_dir)]
        if synthetic:
            cmd += ["--batch-size", str(synthetic[0]), "--seq-len", str(synthetic[1])]
        else:
            cmd += ["--pairs", str(pairs_path)]
        cmd += ["--max-length", str(self.max_length), "--dtype", dtype, "--threads", str(self.threads),
                "--iterations", str(iterations), "--warmup", str(warmup), "--json"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()
            raise RuntimeError(f"exit {r.returncode}: {tail[-1] if tail else ''}  [{' '.join(cmd)}]")
        lines = [ln for ln in r.stdout.strip().splitlines() if ln.strip().startswith("{")]
        if not lines:
            raise RuntimeError(f"no JSON object on stdout  [{' '.join(cmd)}]")
        res = json.loads(lines[-1])
        sps = res.get("avg_sps")
        if sps is None and res.get("e2e_time"):
            sps = res["pairs"] / res["e2e_time"]
        res["sps"] = float(sps)
        res["cmd"] = " ".join(cmd)
        return res

    def score(self, pairs):
        if not self.path.exists():
            raise RuntimeError(self.why_not)
        cmd = [str(self.path), "score", "--model", str(self.model_dir), "--max-length", str(self.max_length),
               "--threads", str(self.threads)]
        r = subprocess.run(cmd, input=json.dumps(pairs, ensure_ascii=False), capture_output=True, text=True)
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()
            raise RuntimeError(f"`rerank score` exit {r.returncode}: {tail[-1] if tail else ''}")
        return [float(x) for x in json.loads(r.stdout)]


# --------------------------------------------------------------------------------------------
# report


def fmt(x):
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def versions():
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "tokenizers", "FlagEmbedding", "onnxruntime", "onnx", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def report(args, meta, workloads, runtimes, results, notes, checks, failed=()):
    """results[(runtime, workload)] = list of pairs/s, one per round."""
    m = meta["machine"]
    lines = []
    lines.append(f"## Speed comparison, {meta['date']} (rerank {meta['git']})")
    lines.append("")
    lines.append(f"- Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['isa']}, L3 {m['l3']}, "
                 f"{m['memory']} RAM, Linux {m['kernel']}")
    lines.append(f"- Threads: {args.threads} for every runtime (torch.set_num_threads, ORT intra_op_num_threads, "
                 f"rerank --threads); Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    lines.append(f"- Model: {meta['model']} (random weights, bge-reranker-base config, f32); max_length "
                 f"{args.max_length}; Python runtimes: batches of {args.batch_size}, length-sorted, padded per batch")
    if meta.get("rerank"):
        lines.append(f"- rerank: {meta['rerank']}")
    lines.append(f"- {args.rounds} round(s), runtimes alternated round-robin; each measurement ≥ {args.min_time} s "
                 f"of whole passes; figures are medians (min–max over rounds). Timed end to end per call "
                 f"(tokenization included); torch-fp32/bf16 = model forward on FlagReranker's exact ids "
                 f"(compute_score minus its batch-size probe).")
    for n in notes:
        lines.append(f"- NOTE: {n}")
    lines.append("")
    lines.append("| workload | calls | pairs | tokens/pair (mean, max) | useful GFLOP/pass |")
    lines.append("|---|---|---|---|---|")
    for w in workloads:
        info = meta["workloads"][w]
        lines.append(f"| {w} | {info['calls']} | {info['pairs']} | {info['mean_tokens']:.1f}, {info['max_tokens']} "
                     f"| {info['gflop']:.0f} |")
    lines.append("")
    lines.append("### pairs/s (median; min–max over rounds)")
    lines.append("")
    lines.append("| runtime | " + " | ".join(workloads) + " |")
    lines.append("|---|" + "---|" * len(workloads))
    med = {}
    for r in runtimes:
        cells = []
        for w in workloads:
            v = results.get((r, w))
            if not v:
                cells.append("failed" if r in failed else "—")
                continue
            med[(r, w)] = statistics.median(v)
            rng = f" ({fmt(min(v))}–{fmt(max(v))})" if len(v) > 1 else ""
            cells.append(fmt(med[(r, w)]) + rng)
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("### useful GFLOP/s (median pairs/s × useful GFLOP/pair; padding not counted)")
    lines.append("")
    lines.append("| runtime | " + " | ".join(workloads) + " |")
    lines.append("|---|" + "---|" * len(workloads))
    for r in runtimes:
        cells = []
        for w in workloads:
            info = meta["workloads"][w]
            v = med.get((r, w))
            cells.append("—" if v is None else f"{v * info['gflop'] / info['pairs']:.0f}")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    rer = [r for r in runtimes if r.startswith("rerank-") and any((r, w) in med for w in workloads)]
    bases = [b for b in BASELINES if b in runtimes]
    if rer and bases:
        lines.append("")
        lines.append("### rerank ÷ baseline (ratio of medians; > 1 = rerank faster)")
        lines.append("")
        lines.append("| rerank | vs | " + " | ".join(workloads) + " |")
        lines.append("|---|---|" + "---|" * len(workloads))
        for r in rer:
            for b in bases:
                cells = []
                for w in workloads:
                    a, c = med.get((r, w)), med.get((b, w))
                    cells.append("—" if a is None or c is None else f"{a / c:.2f}×")
                lines.append(f"| {r} | {b} | " + " | ".join(cells) + " |")
    if checks:
        lines.append("")
        lines.append("### score sanity vs torch-fp32 (raw logits)")
        lines.append("")
        lines.append("| runtime | workload | pairs | max abs diff | torch-fp32 score range |")
        lines.append("|---|---|---|---|---|")
        for c in checks:
            lines.append(f"| {c['runtime']} | {c['workload']} | {c['pairs']} | {c['result']} | {c['range']} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=common.DEFAULT_MODEL_DIR, help="model folder (make_model.py)")
    ap.add_argument("--pairs-dir", type=Path, default=common.DEFAULT_PAIRS_DIR, help="workload JSONL folder")
    ap.add_argument("--rerank-bin", type=Path, default=common.REPO / "target" / "release" / "rerank")
    ap.add_argument("--runtimes", default=",".join(DEFAULT_RUNTIMES), help=f"any of {','.join(ALL_RUNTIMES)}")
    ap.add_argument("--workloads", default=",".join(common.WORKLOADS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds of whole passes per measurement")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32, help="Python runtimes' batch size")
    ap.add_argument("--max-calls", type=int, default=0, help="use only the first N calls (queries) of each "
                    "real workload (0 = all); the subset is written next to the full file for rerank")
    ap.add_argument("--rerank-synthetic", action="store_true", help="W1/W3 via `rerank bench --batch-size B "
                    "--seq-len L` (token ids) instead of --pairs with the crafted texts")
    ap.add_argument("--no-warmup", action="store_true", help="no untimed warm-up call (Python) / --warmup 0 (rerank)")
    ap.add_argument("--rerank-warmup", type=int, default=1, help="`rerank bench --warmup N` per process")
    ap.add_argument("--check-scores", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--output", type=Path, help="append the markdown report to this file")
    ap.add_argument("--json-out", type=Path, help="write every measurement as JSON here")
    args = ap.parse_args()

    runtimes = [r for r in args.runtimes.split(",") if r]
    workloads = [w for w in args.workloads.split(",") if w]
    for r in runtimes:
        if r not in ALL_RUNTIMES:
            ap.error(f"unknown runtime {r!r}; known: {', '.join(ALL_RUNTIMES)}")
    for w in workloads:
        if w not in common.WORKLOADS:
            ap.error(f"unknown workload {w!r}; known: {', '.join(common.WORKLOADS)}")
    model_dir = args.model.resolve()
    if not (model_dir / "model.safetensors").exists():
        sys.exit(f"no model at {model_dir}: run bench/make_model.py first")

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    notes = []
    tok = common.load_tokenizer(model_dir)
    paths = common.ensure_pairs(args.pairs_dir, workloads, tok)
    cfg = json.loads((model_dir / "config.json").read_text())
    shape = {"layers": cfg["num_hidden_layers"], "hidden": cfg["hidden_size"], "inter": cfg["intermediate_size"]}
    calls, meta_w = {}, {}
    for w in workloads:
        c = common.read_jsonl(paths[w])
        if args.max_calls and w in ("msmarco", "nq") and len(c) > args.max_calls:
            c = c[:args.max_calls]
            sub = args.pairs_dir / f"{w}.first{args.max_calls}.jsonl"
            common.write_jsonl(sub, c)
            paths[w] = sub
        calls[w] = c
        lens = [len(x) for cc in c for x in common.flag_encode(tok, [(cc["query"], p) for p in cc["passages"]],
                                                                args.max_length)]
        meta_w[w] = {"file": str(paths[w]), "calls": len(c), "pairs": len(lens), "mean_tokens": sum(lens) / len(lens),
                     "max_tokens": max(lens), "gflop": sum(common.pair_gflop(n, **shape) for n in lens)}

    # ---- runtimes
    py = {}
    reranker = None
    if any(r in runtimes for r in ("torch-fp32", "torch-bf16", "flag-fp32")):
        from FlagEmbedding import FlagReranker

        t0 = time.perf_counter()
        reranker = FlagReranker(str(model_dir), use_fp16=False, devices="cpu")
        reranker.model.eval()
        log(f"FlagReranker loaded in {time.perf_counter() - t0:.1f} s "
            f"(attn_implementation={reranker.model.config._attn_implementation})")
        if "torch-fp32" in runtimes:
            py["torch-fp32"] = TorchRuntime("torch-fp32", reranker.tokenizer, reranker.model, args.max_length,
                                            args.batch_size)
        if "torch-bf16" in runtimes:
            m16 = copy.deepcopy(reranker.model).to(torch.bfloat16).eval()
            py["torch-bf16"] = TorchRuntime("torch-bf16", reranker.tokenizer, m16, args.max_length, args.batch_size)
        if "flag-fp32" in runtimes:
            py["flag-fp32"] = FlagRuntime("flag-fp32", reranker.tokenizer, reranker, args.max_length, 128)
    ort_files = {"ort-fp32": model_dir / "model.opt.onnx", "ort-fp32-noopt": model_dir / "model.onnx",
                 "ort-int8": model_dir / "model.int8.onnx"}
    if not ort_files["ort-fp32"].exists():
        ort_files["ort-fp32"] = model_dir / "model.onnx"
    for r in ("ort-fp32", "ort-fp32-noopt", "ort-int8"):
        if r in runtimes:
            if not ort_files[r].exists():
                notes.append(f"{r} skipped: {ort_files[r]} missing (run make_model.py without --no-onnx)")
                continue
            t0 = time.perf_counter()
            py[r] = OrtRuntime(r, tok, ort_files[r], args.threads, args.max_length, args.batch_size)
            log(f"{r}: {ort_files[r].name} session in {time.perf_counter() - t0:.1f} s")

    rbin = RerankBinary(args.rerank_bin.resolve(), model_dir, args.threads, args.max_length)
    rerank_rts = [r for r in runtimes if r.startswith("rerank-")]
    active = [r for r in runtimes if r in py]
    if rerank_rts:
        if rbin.bench_ok:
            for r in rerank_rts:
                dtype = r.split("-", 1)[1]
                if "--dtype" not in rbin.bench_help and dtype != "f32":
                    notes.append(f"{r} skipped: `rerank bench --help` has no --dtype")
                    continue
                active.append(r)
        else:
            msg = f"rerank runtimes ({', '.join(rerank_rts)}) NOT RUN: {rbin.why_not}"
            notes.append(msg)
            log("*" * 8 + " " + msg)
    # keep the requested order
    active = [r for r in runtimes if r in active]
    if not active:
        sys.exit("nothing to run")

    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "git": common.git_rev(),
            "machine": common.machine_description(), "versions": versions(), "model": str(model_dir),
            "workloads": meta_w, "runtimes": active,
            "ort_files": {r: str(ort_files[r]) for r in py if r.startswith("ort-")},
            "rerank": f"{rbin.path} ({rbin.version})" if rbin.version else None}

    # ---- warm-up: first call of each workload, once per runtime
    if not args.no_warmup:
        for w in workloads:
            for r in active:
                if r in py:
                    t0 = time.perf_counter()
                    py[r].score(calls[w][0]["query"], calls[w][0]["passages"])
                    log(f"warm-up {r} {w}: {time.perf_counter() - t0:.2f} s")

    # ---- rounds
    results, raw, scores = {}, [], {}
    failed = set()
    rerank_iters = {}
    calibrated = set()
    for rnd in range(args.rounds):
        for w in workloads:
            order = active[rnd % len(active):] + active[:rnd % len(active)]
            for r in order:
                if r in failed:
                    continue
                if r in py:
                    res, sc = time_python(py[r], calls[w], args.min_time)
                    scores[(r, w)] = sc
                else:
                    k = rerank_iters.get((r, w), 1)
                    synth = None
                    if args.rerank_synthetic and w in common.SYNTHETIC:
                        n, q, p = common.SYNTHETIC[w]
                        synth = (n, q + p + 4)
                    warmup = 0 if args.no_warmup else args.rerank_warmup
                    try:
                        res = rbin.bench(r.split("-", 1)[1], paths[w], k, warmup, synth)
                        pass_time = meta_w[w]["pairs"] / res["sps"]
                        rerank_iters[(r, w)] = max(1, math.ceil(args.min_time / pass_time))
                        if (r, w) not in calibrated and rerank_iters[(r, w)] > k:
                            # The first call only sized the run: time it again at >= min_time.
                            res = rbin.bench(r.split("-", 1)[1], paths[w], rerank_iters[(r, w)], warmup, synth)
                        calibrated.add((r, w))
                    except (RuntimeError, ValueError, KeyError, TypeError) as e:
                        failed.add(r)
                        notes.append(f"{r} failed on {w} (dropped from later runs): {e}")
                        log(f"{r} {w}: FAILED {e}")
                        continue
                results.setdefault((r, w), []).append(res["sps"])
                raw.append({"round": rnd, "workload": w, "runtime": r, **res})
                log(f"round {rnd + 1}/{args.rounds} {w:8s} {r:14s} {res['sps']:9.3f} pairs/s")

    # ---- score sanity
    checks = []
    if args.check_scores:
        ref_rt = "torch-fp32" if "torch-fp32" in py else ("flag-fp32" if "flag-fp32" in py else None)
        if ref_rt is None:
            notes.append("score check skipped: needs torch-fp32 (or flag-fp32) among the runtimes")
        else:
            for w in workloads:
                ref = [s for call in scores[(ref_rt, w)] for s in call]
                rng = f"{min(ref):.4f} … {max(ref):.4f}"
                for r in active:
                    if r in py and r != ref_rt:
                        got = [s for call in scores[(r, w)] for s in call]
                        d = max(abs(a - b) for a, b in zip(got, ref))
                        checks.append({"runtime": r, "workload": w, "pairs": len(ref), "result": f"{d:.2e}",
                                       "range": rng})
                pairs = [[c["query"], p] for c in calls[w] for p in c["passages"]]
                try:
                    t0 = time.perf_counter()
                    got = rbin.score(pairs)
                    d = max(abs(a - b) for a, b in zip(got, ref))
                    res_s = f"{d:.2e}"
                    log(f"rerank score {w}: {len(pairs)} pairs in {time.perf_counter() - t0:.1f} s, max |diff| {d:.2e}")
                except (RuntimeError, OSError, ValueError) as e:
                    res_s = f"not run: {e}"
                checks.append({"runtime": "rerank-f32 (`rerank score`)", "workload": w, "pairs": len(pairs),
                               "result": res_s, "range": rng})

    text = report(args, meta, workloads, active, results, notes, checks, failed)
    print(text)
    if args.output:
        with open(args.output, "a", encoding="utf-8") as f:
            f.write("\n" + text)
        log(f"appended to {args.output}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"meta": meta, "notes": notes, "measurements": raw, "checks": checks},
                                            indent=1) + "\n")
        log(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
