#!/usr/bin/env python3
"""Build the decoder-only ("LLM") reranker fixture tests/fixtures/gemma-tiny* (see README.md).

A tiny random-weight bge-reranker-v2-gemma look-alike (`GemmaForCausalLM`, MQA, explicit head_dim,
tied embeddings, stored in bf16) with its own small Gemma-style BPE tokenizer (byte fallback, " " ->
"▁" normalizer, no pre-tokenizer, `<bos>` post-processor), and the scores FlagEmbedding 1.4.2's
`FlagLLMReranker` gives it, loading the saved folder from disk (f32 on CPU, one pair per batch).

Deterministic: fixed seeds, single-threaded torch and tokenizers, gzip with mtime=0 and no file
name, so re-running it in the same environment (requirements.txt) rewrites byte-identical files.

Writes:
  tests/fixtures/gemma-tiny/                 config.json, tokenizer.json, tokenizer_config.json,
                                             special_tokens_map.json, model.safetensors.gz (bf16)
  tests/fixtures/gemma-tiny.reference.json   per case: pairs, exact unpadded input_ids fed to the
                                             model (forward pre-hook), raw scores, normalized scores

GELU: like the real checkpoint, config.json says `"hidden_act": "gelu"`; it also says
`"hidden_activation": "gelu_pytorch_tanh"`. transformers 4.57.6's GemmaMLP reads only `hidden_act`
(exact erf GELU), whereas 4.46 and 5.x run the tanh approximation the model was trained with. The
reference scores are therefore computed with every MLP's act_fn set to GELUTanh after
FlagLLMReranker has loaded the model; the script asserts what 4.57.6 loaded, that the swap took, and
that it changes the scores.
"""

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # tokenizers' BPE trainer: deterministic, 1 core
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gzip  # noqa: E402
import importlib.metadata as md  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures"
DATA = Path(os.environ.get("RERANK_SHARED_DATA", "/work/shared/data"))
SAMPLES = DATA / "retrieval-samples"
NAME = "gemma-tiny"
GENERATOR = "scripts/reference/make_llm_fixtures.py"

SEED = 20240612
VOCAB_SIZE = 1536
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]  # ids 0..3, as in Gemma
DEFAULT_PROMPT = ("Given a query A and a passage B, determine whether the passage contains an answer to "
                  "the query by providing a prediction of either 'Yes' or 'No'.")
CUSTOM_PROMPT = "Is passage B relevant to query A? Answer Yes or No."
SHORT_PROMPT = "Relevant?"
QUERY_PREFIX, PASSAGE_PREFIX = "A: ", "B: "  # FlagLLMReranker's instruction defaults, format "{}{}"

GZIP_MODEL_OVER = 100_000
GZIP_TOKENIZER_OVER = 200_000

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


# --------------------------------------------------------------------------------------------
# small helpers: the encoder fixtures' own (same conventions), plus these

from make_fixtures import gzip_bytes, load_samples, versions, write_json  # noqa: E402



def materialize(fixture_dir: Path, dst: Path) -> Path:
    """What the Rust tests do: copy raw files, gunzip *.gz, into a temp folder."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(fixture_dir.iterdir()):
        if f.suffix == ".gz":
            (dst / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
        else:
            shutil.copyfile(f, dst / f.name)
    return dst


# --------------------------------------------------------------------------------------------
# texts


SEED_PAIRS = [
    ["what is panda?", "hi"],
    ["what is panda?", "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or "
                       "simply panda, is a bear species endemic to China."],
    ["what is the capital of France?", "Paris is the capital of France."],
    ["what is the capital of China?", "Paris is the capital of France."],
    ["what is the capital of China?", "Beijing is the capital of China."],
    ["你是谁", "我是一个人"],
    ["介绍自行车", "这是一个交通工具"],
]


def training_texts():
    """Corpus for the BPE trainer: seed texts, the prompts, all of MS MARCO, two NQ queries'
    passages, and the answers 'Yes' / 'No' as texts of their own (so 'Yes' without a leading '▁'
    becomes one token, as in Gemma's vocabulary)."""
    ms = load_samples("msmarco-10q.jsonl")
    nq = load_samples("nq-10q.jsonl")
    texts = [t for p in SEED_PAIRS for t in p] + [DEFAULT_PROMPT, CUSTOM_PROMPT]
    for r in ms + nq[:2]:
        texts.append(r["query"])
        texts.extend(r["pos"])
        texts.extend(r["neg"])
    texts.extend(["Yes", "No"] * 50)
    return texts


def concat_until(texts, tok, min_tokens):
    out = []
    for t in texts:
        out.append(t)
        joined = " ".join(out)
        if len(tok(joined, add_special_tokens=False)["input_ids"]) >= min_tokens:
            return joined
    raise RuntimeError("not enough text")


def build_pairs(tok):
    ms = load_samples("msmarco-10q.jsonl")
    nq = load_samples("nq-10q.jsonl")
    long_passage = concat_until(ms[0]["pos"] + ms[0]["neg"], tok, 700)     # > 512 passage tokens
    long_query = concat_until(nq[1]["neg"], tok, 450)                      # > 384 query tokens
    long_query2 = concat_until(ms[3]["neg"], tok, 420)
    long_passage2 = concat_until(nq[2]["pos"] + nq[2]["neg"], tok, 600)
    pairs = [list(p) for p in SEED_PAIRS] + [
        # lengths
        [ms[0]["query"], long_passage],
        [long_query, "Paris is the capital of France."],
        [long_query2, long_passage2],
        # empty / whitespace
        ["what is panda?", ""],
        ["what is panda?", " \t\n  "],
        ["", "Paris is the capital of France."],
        # Unicode: byte fallback for everything outside the trained alphabet
        ["👩‍👩‍👧‍👦 family emoji?", "A family: 👨‍👩‍👧 and the 🏳️‍🌈 flag, thumbs up 👍🏽 🎉🎉"],
        ["東京の天気は？", "今日の東京は晴れです。気温は２５度、北京和上海也是晴天。"],
        ["Café naïve résumé?", "Ünïcödé ÀÉÎÕÜ façade coöperate"],
        # literal special-token strings, the answer token itself, odd whitespace
        ["what is <bos>?", "a <bos> b <pad> c <eos> d <unk> e<eos><bos>f"],
        ["Yes or No?", "Yes. Yes! No... yes, YES"],
        ["what  is\n\npanda ?", "line one\nline two\n\n  indented\tand tabbed  "],
    ]
    # only_second boundary in REFUSAL_CASE: "A: the the ..." is 2 + n tokens; with
    # q = max_length + |prompt| (- 1, + 1) tokens, |[bos] + q| = encode_max_length - |sep| (- 1, + 1):
    # q - 1: `sep + passage` is cut to `sep` alone; q: removal == len(sep + passage), refused; q + 1: refused
    _, L, _, prompt = next(c for c in CASES if c[0] == REFUSAL_CASE)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    the = tok("A: the the", add_special_tokens=False)["input_ids"]
    assert len(the) == 4 and the[2] == the[3], the
    for q_len in (L + n_prompt - 1, L + n_prompt, L + n_prompt + 1):
        pairs.append([" ".join(["the"] * (q_len - 2)), "Paris is the capital of France."])
    # real query-passage pairs: MS MARCO and NQ positives and hard negatives
    for i in range(2):
        pairs.append([ms[i]["query"], ms[i]["pos"][0]])
        pairs.append([ms[i]["query"], ms[i]["neg"][0]])
    for i in range(2):
        pairs.append([nq[i]["query"], nq[i]["pos"][0]])
        pairs.append([nq[i]["query"], nq[i]["neg"][0]])
    return pairs


CASES = [
    # name, max_length, query_max_length (None = FlagLLMReranker default max_length*3//4), prompt
    ("default-512", 512, None, None),
    ("small-48", 48, None, None),
    ("small-48-q12", 48, 12, None),
    ("prompt-custom", 512, None, CUSTOM_PROMPT),
    # extra: a short prompt leaves little slack in encode_max_length = max_length + |sep| + |prompt|,
    # so the only_second cut of `sep + passage` bites (with the long default prompt it hardly does);
    # query_max_length > max_length lets `[bos] + query` reach encode_max_length, where transformers'
    # truncate_sequences refuses to cut (see the "the" x n pairs) and the pair stays untruncated.
    ("small-48-q64-prompt-short", 48, 64, SHORT_PROMPT),
]
REFUSAL_CASE = "small-48-q64-prompt-short"


def flag_query_max_length(max_length, query_max_length):
    # FlagEmbedding 1.4.2 decoder_only/base.py: query_max_length = max_length * 3 // 4
    return max_length * 3 // 4 if query_max_length is None else query_max_length


# --------------------------------------------------------------------------------------------
# tokenizer


def train_byte_fallback_vocab(normalizer, extra_alphabet, specials, vocab_size, texts):
    """Train a BPE (words split at '▁' for training only) on `texts` and return its vocabulary
    laid out as Gemma's and Llama's are: `specials`, the 256 byte tokens <0x00>..<0xFF>, then
    the trained pieces (`vocab_size` entries in all), and the trained merges."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    t = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    t.normalizer = normalizer
    t.pre_tokenizer = pre_tokenizers.Split("▁", "merged_with_next")
    alphabet = sorted(set(chr(c) for c in range(33, 127)) | set(extra_alphabet))
    n_fixed = len(specials) + 256
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - n_fixed, min_frequency=2, show_progress=False, special_tokens=[],
        initial_alphabet=alphabet, limit_alphabet=len(alphabet) + 8)
    t.train_from_iterator(texts, trainer=trainer)
    trained = json.loads(t.to_str())["model"]
    pieces = sorted(trained["vocab"].items(), key=lambda kv: kv[1])

    vocab = {s: i for i, s in enumerate(specials)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in pieces:
        assert piece not in vocab, piece
        vocab[piece] = len(vocab)
    assert len(vocab) == vocab_size, len(vocab)
    return vocab, trained["merges"]


def build_tokenizer_json():
    """Train a small BPE on training_texts() and lay it out like Gemma's tokenizer.json:
    <pad> <eos> <bos> <unk> = 0..3, the 256 byte tokens <0x00>..<0xFF> = 4..259, then the
    trained alphabet and merges; normalizer Replace(' ', '▁'), pre_tokenizer null, byte fallback,
    decoder Replace('▁', ' ') + ByteFallback + Fuse, post-processor '<bos> $A'."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    # training only: words start at '▁' (SentencePiece-like), so no merge spans a word boundary and
    # the final tokenizer can run without a pre-tokenizer, as Gemma's does
    vocab, merges = train_byte_fallback_vocab(normalizers.Replace(" ", "▁"), {"▁", "\n", "\t"}, SPECIALS,
                                      VOCAB_SIZE, training_texts())

    def added(i, s):
        return {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True}

    bos = {"SpecialToken": {"id": "<bos>", "type_id": 0}}
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(i, s) for i, s in enumerate(SPECIALS)],
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<bos>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
        ]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": vocab, "merges": merges,
        },
    }
    return json.dumps(doc, ensure_ascii=False)


def save_tokenizer(tmp: Path):
    """Wrap in GemmaTokenizerFast and save_pretrained; returns the folder."""
    from tokenizers import Tokenizer
    from transformers import GemmaTokenizerFast

    backend = Tokenizer.from_str(build_tokenizer_json())
    tok = GemmaTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>",
                             pad_token="<pad>", unk_token="<unk>", add_bos_token=True,
                             add_eos_token=False, clean_up_tokenization_spaces=False)
    assert tok.padding_side == "left"
    tmp.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(tmp))
    return tmp


# --------------------------------------------------------------------------------------------
# input construction, re-implemented (checked against what FlagLLMReranker fed the model)


def expected_ids(tok, pairs, max_length, query_max_length, prompt):
    """FlagLLMReranker.compute_score_single_gpu's ids, re-done on plain id lists:
    q = ids("A: " + query)[:qml], p = ids("B: " + passage)[:max_length] (no special tokens);
    first = [bos] + q (bos only if bos_token_id != pad_token_id), second = sep + p;
    only_second cut of `second` so that |first| + |second| <= max_length + |sep| + |prompt|
    (not done if that would leave `second` empty or less: transformers' truncate_sequences);
    then + sep + prompt. No EOS."""
    qml = flag_query_max_length(max_length, query_max_length)
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    sep = enc("\n")
    prompt_ids = enc(DEFAULT_PROMPT if prompt is None else prompt)
    limit = max_length + len(sep) + len(prompt_ids)
    out = []
    for q, p in pairs:
        qi = enc(QUERY_PREFIX + q)[:qml]
        pi = enc(PASSAGE_PREFIX + p)[:max_length]
        first = ([tok.bos_token_id] if tok.bos_token_id != tok.pad_token_id else []) + qi
        second = sep + pi
        remove = len(first) + len(second) - limit
        if 0 < remove < len(second):
            second = second[:-remove]
        out.append(first + second + sep + prompt_ids)
    return out


# --------------------------------------------------------------------------------------------
# model


def gemma_config(vocab_size):
    from transformers import GemmaConfig

    return GemmaConfig(
        vocab_size=vocab_size, hidden_size=96, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=32,  # 4*32 = 128 != 96
        hidden_act="gelu", hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0,
        pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True,
        attention_bias=False, attention_dropout=0.0, initializer_range=0.02, use_cache=True,
        architectures=["GemmaForCausalLM"])


INIT = dict(emb_std=0.5, norm_spread=0.6, qk_gain=2.0, v_gain=1.5, o_gain=3.0, mlp_gain=1.5, down_gain=3.0)


def set_tanh_gelu(model):
    from transformers.activations import GELUTanh

    for layer in model.model.layers:
        layer.mlp.act_fn = GELUTanh()


def randomize(model, gen, emb_std, norm_spread, qk_gain, v_gain, o_gain, mlp_gain, down_gain):
    """Large random init of every parameter; RMSNorm weights w random in ±norm_spread (the norm
    multiplies by 1 + w, so a `w` vs `1 + w` bug shows)."""
    gains = {"q_proj": qk_gain, "k_proj": qk_gain, "v_proj": v_gain, "o_proj": o_gain,
             "gate_proj": mlp_gain, "up_proj": mlp_gain, "down_proj": down_gain}
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            shape = tuple(p.shape)
            if name.endswith("norm.weight"):
                v = norm_spread * (2 * torch.rand(shape, generator=gen) - 1)
            elif name == "model.embed_tokens.weight":
                v = emb_std * torch.randn(shape, generator=gen)
            else:
                kind = name.split(".")[-2]
                v = gains[kind] / shape[1] ** 0.5 * torch.randn(shape, generator=gen)
            p.copy_(v)


def last_hidden(model, rows):
    """Final-norm output at the last token, one unpadded sequence at a time (positions 0..n-1)."""
    out = []
    with torch.no_grad():
        for ids in rows:
            h = model.model(input_ids=torch.tensor([ids]), use_cache=False).last_hidden_state
            out.append(h[0, -1])
    return torch.stack(out)


def center_yes(model, rows, yes_id, iters=3):
    """Remove the common component of the final hidden states from E[yes] (the tied LM-head row),
    so the scores straddle 0 and the sigmoid outputs spread over (0, 1). E[yes] is also an input
    embedding (the default prompt contains 'Yes'), hence a few rounds; bf16 rounding included."""
    emb = model.model.embed_tokens.weight
    for _ in range(iters):
        h = last_hidden(model, rows)
        with torch.no_grad():
            s = h @ emb[yes_id]
            v = h.mean(0)
            emb[yes_id] -= (s.median() / (v @ v)) * v
            emb[yes_id] = emb[yes_id].to(torch.bfloat16).float()
    with torch.no_grad():
        return (last_hidden(model, rows) @ emb[yes_id]).tolist()


# --------------------------------------------------------------------------------------------
# reference scores


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, module, args, kwargs):
        assert not args, "FlagLLMReranker calls the model with keyword arguments"
        self.calls.append({k: v.detach().clone() for k, v in kwargs.items() if torch.is_tensor(v)})


def strip_left_padded(call):
    ids, mask = call["input_ids"], call["attention_mask"]
    assert ids.shape[0] == 1, "batch_size=1 expected"
    n = int(mask[0].sum())
    L = mask.shape[1]
    assert bool(mask[0, L - n:].all()) and not bool(mask[0, :L - n].any()), "expected left padding"
    assert L % 8 == 0, "Collater pads to a multiple of 8"
    assert bool((ids[0, :L - n] == 0).all()), "pad id 0"
    return ids[0, L - n:].tolist()


def flag_order(tok, pairs, max_length, qml):
    """FlagLLMReranker's length sort (np.argsort, on the truncated query + passage lengths)."""
    q = tok([QUERY_PREFIX + p[0] for p in pairs], add_special_tokens=False, max_length=qml, truncation=True)
    d = tok([PASSAGE_PREFIX + p[1] for p in pairs], add_special_tokens=False, max_length=max_length,
            truncation=True)
    return np.argsort([-len(x) - len(y) for x, y in zip(q["input_ids"], d["input_ids"])])


def flag_case(reranker, rec, tok, pairs, L, query_max_length, prompt, expected):
    qml = flag_query_max_length(L, query_max_length)
    kw = dict(batch_size=1, max_length=L, query_max_length=qml)
    if prompt is not None:
        kw["prompt"] = prompt
    rec.calls.clear()
    scores = reranker.compute_score(pairs, normalize=False, **kw)
    calls = rec.calls[-len(pairs):]  # the first call is FlagLLMReranker's batch-size probe
    assert len(rec.calls) == len(pairs) + 1
    rec.calls.clear()
    normalized = reranker.compute_score(pairs, normalize=True, **kw)
    assert len(scores) == len(pairs) == len(normalized)

    order = flag_order(tok, pairs, L, qml)
    rows = [None] * len(pairs)
    for j, idx in enumerate(order):
        rows[idx] = strip_left_padded(calls[j])
    for r, e in zip(rows, expected):
        assert r == e, "hook ids differ from the re-implemented FlagLLMReranker input construction"
    for s, n in zip(scores, normalized):
        # FlagEmbedding's sigmoid, in f64 of the f32 score (np.exp, which may differ from
        # math.exp in the last bit)
        assert n == float(1 / (1 + np.exp(-s))), (s, n)
    return rows, [float(s) for s in scores], [float(s) for s in normalized]


def main():
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, GemmaForCausalLM
    from transformers.activations import GELUActivation, GELUTanh

    logging.getLogger("transformers").setLevel(logging.ERROR)
    out_dir = FIX / NAME
    summary = {}
    with tempfile.TemporaryDirectory(prefix="rerank-llm-fixtures-") as tmps:
        tmp = Path(tmps)

        # ---- tokenizer
        tok_dir = save_tokenizer(tmp / "tok")
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
        assert type(tok).__name__ == "GemmaTokenizerFast", type(tok)
        assert len(tok) == VOCAB_SIZE
        assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
        yes = tok("Yes", add_special_tokens=False)["input_ids"]
        assert len(yes) == 1, f"'Yes' must be one token, got {yes}"
        yes_id = yes[0]
        sep_ids = tok("\n", add_special_tokens=False)["input_ids"]
        assert len(sep_ids) == 1, sep_ids
        assert tok("hi")["input_ids"][0] == 2, "post-processor adds <bos>"
        assert tok("a <bos> b", add_special_tokens=False)["input_ids"].count(2) == 1
        cjk = tok("你是谁", add_special_tokens=False)["input_ids"]
        assert all(4 <= i < 260 for i in cjk) and len(cjk) == 9, cjk  # byte fallback

        pairs = build_pairs(tok)
        encodings = {name: expected_ids(tok, pairs, L, q, pr) for name, L, q, pr in CASES}
        _, L, _, prompt = next(c for c in CASES if c[0] == REFUSAL_CASE)
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        limit = L + len(sep_ids) + n_prompt
        i0 = next(i for i, p in enumerate(pairs) if p[0].startswith("the the"))
        n_passage = 1 + len(tok(PASSAGE_PREFIX + pairs[i0][1], add_special_tokens=False)["input_ids"])
        got = [len(r) for r in encodings[REFUSAL_CASE][i0:i0 + 3]]
        assert got == [limit + 1 + n_prompt] + [limit + k + n_passage + 1 + n_prompt for k in (0, 1)], got

        # ---- model
        config = gemma_config(VOCAB_SIZE)
        torch.manual_seed(SEED)
        model = GemmaForCausalLM(config).eval()
        set_tanh_gelu(model)
        gen = torch.Generator().manual_seed(SEED + 1)
        randomize(model, gen, **INIT)
        model = model.to(torch.bfloat16).float()  # centre on the weights that will be stored
        center_yes(model, encodings["default-512"], yes_id)

        model = model.to(torch.bfloat16)
        model.save_pretrained(str(tmp / "model"), safe_serialization=True)
        cfg = json.loads((tmp / "model" / "config.json").read_text())
        assert cfg["hidden_act"] == "gelu" and cfg["hidden_activation"] == "gelu_pytorch_tanh"
        assert cfg["head_dim"] == 32 and cfg["num_key_value_heads"] == 1 and cfg.get("tie_word_embeddings", True)
        sd = load_file(str(tmp / "model" / "model.safetensors"))
        assert all(v.dtype == torch.bfloat16 for v in sd.values())
        assert "lm_head.weight" not in sd

        out_dir.mkdir(parents=True, exist_ok=True)
        for f in out_dir.iterdir():
            f.unlink()
        shutil.copyfile(tmp / "model" / "config.json", out_dir / "config.json")
        raw = (tmp / "model" / "model.safetensors").read_bytes()
        if len(raw) > GZIP_MODEL_OVER:
            (out_dir / "model.safetensors.gz").write_bytes(gzip_bytes(raw))
        else:
            (out_dir / "model.safetensors").write_bytes(raw)
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            shutil.copyfile(tok_dir / name, out_dir / name)
        raw = (tok_dir / "tokenizer.json").read_bytes()
        if len(raw) > GZIP_TOKENIZER_OVER:
            (out_dir / "tokenizer.json.gz").write_bytes(gzip_bytes(raw))
        else:
            (out_dir / "tokenizer.json").write_bytes(raw)

        # ---- FlagLLMReranker on the saved folder, exactly as a user would (f32, CPU)
        from FlagEmbedding import FlagLLMReranker

        d = materialize(out_dir, tmp / "materialized")
        reranker = FlagLLMReranker(str(d), use_fp16=False, devices="cpu")
        m = reranker.model
        assert type(m).__name__ == "GemmaForCausalLM"
        assert m.dtype == torch.float32 and all(p.dtype == torch.float32 for p in m.parameters())
        assert reranker.yes_loc == yes_id
        assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr(), "tied"
        # the GELU trap: 4.57.6 builds GemmaMLP.act_fn from `hidden_act` ("gelu" = exact erf)
        assert all(type(layer.mlp.act_fn) is GELUActivation for layer in m.model.layers)
        rec = Recorder()
        m.register_forward_pre_hook(rec, with_kwargs=True)
        name0, L0, q0, p0 = CASES[0]
        erf_scores = reranker.compute_score(pairs, batch_size=1, max_length=L0, query_max_length=q0)
        set_tanh_gelu(m)
        assert all(type(layer.mlp.act_fn) is GELUTanh for layer in m.model.layers)

        cases = []
        for name, L, qml, prompt in CASES:
            rows, scores, normalized = flag_case(reranker, rec, tok, pairs, L, qml, prompt, encodings[name])
            cases.append({
                "name": name,
                "max_length": L,
                "query_max_length": flag_query_max_length(L, qml),
                "prompt": prompt,
                "pairs": pairs,
                "input_ids": rows,
                "scores": scores,
                "normalized": normalized,
            })
        gelu_delta = max(abs(a - b) for a, b in zip(erf_scores, cases[0]["scores"]))
        assert gelu_delta > 1e-3, f"erf vs tanh GELU should change the scores, max delta {gelu_delta}"

        # FlagEmbedding left-pads each single pair to a multiple of 8 (positions shift by the pad
        # count, no position_ids passed); compare with a plain unpadded forward, positions 0..n-1.
        unpadded_delta = 0.0
        with torch.no_grad():
            for c in cases:
                for ids, s in zip(c["input_ids"], c["scores"]):
                    lg = m(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1, yes_id]
                    unpadded_delta = max(unpadded_delta, abs(float(lg) - s))
        assert unpadded_delta < 1e-4, unpadded_delta

        all_scores = np.array([s for c in cases for s in c["scores"]])
        ref = {
            "model": NAME,
            "generator": GENERATOR,
            "versions": versions(),
            "reranker": "FlagLLMReranker(dir, use_fp16=False, devices='cpu'), "
                        "compute_score(pairs, batch_size=1, max_length, query_max_length, [prompt], normalize)",
            "gelu": "config says hidden_act 'gelu' + hidden_activation 'gelu_pytorch_tanh'; transformers "
                    "4.57.6 builds exact erf GELU from hidden_act, so the MLP act_fn was set to GELUTanh "
                    "(what 4.46 / 5.x run, what the model was trained with) before scoring",
            "yes_id": yes_id,
            "bos_id": tok.bos_token_id,
            "pad_id": tok.pad_token_id,
            "sep_ids": sep_ids,
            "query_prefix": QUERY_PREFIX,
            "passage_prefix": PASSAGE_PREFIX,
            "default_prompt": DEFAULT_PROMPT,
            "default_prompt_ids": tok(DEFAULT_PROMPT, add_special_tokens=False)["input_ids"],
            "cases": cases,
        }
        write_json(FIX / f"{NAME}.reference.json", ref)
        summary = {
            "pairs": len(pairs),
            "vocab": VOCAB_SIZE,
            "yes_id": yes_id,
            "sep_ids": sep_ids,
            "default_prompt_len": len(ref["default_prompt_ids"]),
            "scores_min": float(all_scores.min()),
            "scores_max": float(all_scores.max()),
            "scores_std": float(all_scores.std()),
            "scores_median": float(np.median(all_scores)),
            "max_len": max(len(r) for c in cases for r in c["input_ids"]),
            "erf_vs_tanh_max_delta": gelu_delta,
            "padded_vs_unpadded_max_delta": unpadded_delta,
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
