"""Shared helpers for the speed-comparison harness (bench/).

Paths, FlagReranker-exact pair encoding, the workloads (W1, W3, msmarco, nq) and a machine
description. Imported by make_pairs.py, make_model.py and compare.py; no heavy imports here
(torch / onnxruntime are imported by the scripts that need them).
"""

import json
import os
import platform
import random
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RERANK_SHARED_DATA", REPO.parent / "shared" / "data"))
if not DATA.exists():
    DATA = Path("/work/shared/data")
TOKENIZER_DIR = DATA / "xlm-roberta-tokenizer"
SAMPLES = DATA / "retrieval-samples"

DEFAULT_MODEL_DIR = REPO / "target" / "bench-model"
DEFAULT_PAIRS_DIR = REPO / "target" / "bench-pairs"

WORKLOADS = ("w1", "w3", "msmarco", "nq")
WORKLOAD_DOC = {
    "w1": "32 pairs x 256 tokens, one call (synthetic text, FlagReranker encoding exactly 256 tokens)",
    "w3": "1 pair x 64 tokens, one call (synthetic text, exactly 64 tokens)",
    "msmarco": "MS MARCO, 10 queries, one call per query with its pos + 25 neg (26 pairs)",
    "nq": "Natural Questions, 10 queries, one call per query with its pos + neg (80-101 pairs)",
}

# (pairs per call, query tokens, passage tokens); total = q + p + 4 special tokens
SYNTHETIC = {"w1": (32, 12, 240), "w3": (1, 8, 52)}

# Common English words that are each ONE XLM-R piece ("▁word") in running text; checked at use.
WORDS = (
    "the of and to in is for on that with as it was by are be this at from or an have not which "
    "their one has but they were all can more his other also its been time after new first people "
    "world city state years water music history school family house system group number life "
    "country during between under power local public government company"
).split()


# --------------------------------------------------------------------------------------------
# tokenizer and FlagReranker's encoding


def load_tokenizer(path=None):
    from transformers import AutoTokenizer

    # fix_mistral_regex=False: transformers 4.57.6 warns about a Mistral regex for any local folder
    # whose config.json says transformers_version 4.57.3..4.x; XLM-R is not affected, nothing changes.
    return AutoTokenizer.from_pretrained(str(path or TOKENIZER_DIR), fix_mistral_regex=False)


def flag_encode(tok, pairs, max_length=512, query_max_length=None):
    """FlagEmbedding 1.4.2 FlagReranker (encoder_only/base.py, transformers 4.x) encoding:
    query without special tokens cut to query_max_length (default 3/4 max_length), passage cut
    to max_length, then prepare_for_model(q, p, truncation='only_second') → <s> q </s></s> p </s>.
    Returns a list of id lists (no padding)."""
    qml = max_length * 3 // 4 if query_max_length is None else query_max_length
    q_ids = tok([p[0] for p in pairs], add_special_tokens=False, max_length=qml, truncation=True)["input_ids"]
    p_ids = tok([p[1] for p in pairs], add_special_tokens=False, max_length=max_length, truncation=True)["input_ids"]
    out = []
    for q, d in zip(q_ids, p_ids):
        item = tok.prepare_for_model(q, d, truncation="only_second", max_length=max_length, padding=False)
        out.append(list(item["input_ids"]))
    return out


# --------------------------------------------------------------------------------------------
# workloads: lists of calls {"query": str, "passages": [str]}


def single_token_words(tok):
    good = [w for w in WORDS if len(tok(" " + w, add_special_tokens=False)["input_ids"]) == 1
            and len(tok(w, add_special_tokens=False)["input_ids"]) == 1]
    assert len(good) >= 20, good
    return good


def text_of_tokens(tok, n, rng, words):
    """A text whose tokenization (no special tokens) is exactly n pieces."""
    text = " ".join(rng.choice(words) for _ in range(n))
    got = len(tok(text, add_special_tokens=False)["input_ids"])
    if got != n:
        raise RuntimeError(f"crafted text has {got} tokens, wanted {n}: {text[:80]}...")
    return text


def synthetic_calls(tok, name, seed=0):
    n_pairs, q_len, p_len = SYNTHETIC[name]
    rng = random.Random(f"{name}-{seed}")
    words = single_token_words(tok)
    query = text_of_tokens(tok, q_len, rng, words)
    passages = [text_of_tokens(tok, p_len, rng, words) for _ in range(n_pairs)]
    lens = {len(x) for x in flag_encode(tok, [(query, p) for p in passages])}
    assert lens == {q_len + p_len + 4}, lens
    return [{"query": query, "passages": passages}]


def real_calls(name):
    fname = {"msmarco": "msmarco-10q.jsonl", "nq": "nq-10q.jsonl"}[name]
    calls = []
    with open(SAMPLES / fname, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            calls.append({"query": row["query"], "passages": list(row["pos"]) + list(row["neg"])})
    return calls


def build_calls(tok, name):
    return synthetic_calls(tok, name) if name in SYNTHETIC else real_calls(name)


def write_jsonl(path: Path, calls):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for c in calls:
            f.write(json.dumps({"query": c["query"], "passages": c["passages"]}, ensure_ascii=False) + "\n")


def read_jsonl(path: Path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def ensure_pairs(pairs_dir: Path, names, tok=None):
    """Write <pairs_dir>/<name>.jsonl for the workloads that are missing; return {name: path}."""
    out = {}
    for name in names:
        path = Path(pairs_dir) / f"{name}.jsonl"
        if not path.exists():
            tok = tok or load_tokenizer()
            write_jsonl(path, build_calls(tok, name))
        out[name] = path
    return out


def subset_calls(calls, max_calls):
    return calls if not max_calls else calls[:max_calls]


# --------------------------------------------------------------------------------------------
# cost model (for GFLOP/s columns): useful work only, padding not counted


def pair_gflop(n, layers=12, hidden=768, inter=3072):
    """Multiply-adds x2 of one XLM-R-base forward over n tokens (projections, FFN, attention
    scores and context; embeddings/LayerNorm/softmax ignored) + the classifier head."""
    per_layer = 2 * n * (4 * hidden * hidden + 2 * hidden * inter) + 2 * 2 * n * n * hidden
    head = 2 * (hidden * hidden + hidden)
    return (layers * per_layer + head) / 1e9


# --------------------------------------------------------------------------------------------
# machine description


def _read(path):
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def machine_description():
    cpu = ""
    flags = set()
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name") and not cpu:
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    mem = ""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    l3 = _read("/sys/devices/system/cpu/cpu0/cache/index3/size")
    return {
        "cpu": cpu or platform.processor(),
        "logical_cpus": os.cpu_count(),
        "isa": " ".join(isa),
        "l3": l3,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def git_rev(path=REPO):
    try:
        rev = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
