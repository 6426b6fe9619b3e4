#!/usr/bin/env python3
"""Build the layerwise LLM reranker fixture tests/fixtures/minicpm-tiny* (see README.md).

A tiny random-weight look-alike of BAAI/bge-reranker-v2-minicpm-layerwise
(`LayerWiseMiniCPMForCausalLM`, FlagEmbedding's own modeling code: scale_emb, scale_depth residual
scaling, GQA, one `Linear(hidden, 1, bias=False)` score head per layer start_layer..num_layers,
head_type "simple", stored in bf16) with its own small Llama-style (legacy sentencepiece layout) BPE
tokenizer, and the scores FlagEmbedding 1.4.2's `LayerWiseFlagLLMReranker` gives it, loading the
saved folder from disk (f32 on CPU, one pair per batch).

Deterministic: fixed seeds, single-threaded torch and tokenizers, gzip with mtime=0 and no file
name, so re-running it in the same environment (requirements.txt) rewrites byte-identical files.

Writes:
  tests/fixtures/minicpm-tiny/                 config.json, tokenizer.json, tokenizer_config.json,
                                               special_tokens_map.json, model.safetensors.gz (bf16)
  tests/fixtures/minicpm-tiny.reference.json   per case: pairs, cutoff_layers as passed, the layers
                                               and heads behind each returned score list, exact
                                               unpadded input_ids (forward pre-hook), raw scores,
                                               normalized scores (FlagEmbedding's return shape)

What FlagEmbedding 1.4.2 does with cutoff_layers (modeling_minicpm_reranker.py, verified below):
  cutoffs = [c for c in cutoff_layers if start_layer <= c <= num_layers] (others dropped with a
  warning; none left -> ValueError). LayerWiseMiniCPMModel appends final_norm(h after c layers) for
  every layer index c in that list while running layers 0..max(cutoffs)-1, i.e. in ascending layer
  order and once per distinct layer; LayerWiseMiniCPMForCausalLM then applies, to the i-th of those
  hidden states, lm_head[cutoffs[i] - start_layer] -- indexed by the caller's (filtered) list, not
  by the layer. Sorted, duplicate-free lists pair layer c with head c - start_layer; others do not.
"""

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # tokenizers' BPE trainer: deterministic, 1 core
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

# the gemma-tiny fixture's helpers: same conventions, same pair kinds, same training texts
import make_llm_fixtures as mlf  # noqa: E402
from make_fixtures import gzip_bytes, versions, write_json  # noqa: E402

FIX = mlf.FIX
NAME = "minicpm-tiny"
GENERATOR = "scripts/reference/make_layerwise_fixtures.py"

SEED = 20240613
VOCAB_SIZE = 1536
SPECIALS = ["<unk>", "<s>", "</s>"]  # ids 0..2, as in MiniCPM / Llama
N_LAYERS = 6
START_LAYER = 2
DEFAULT_PROMPT = mlf.DEFAULT_PROMPT  # LayerWiseLLMReranker's default is the same sentence
CUSTOM_PROMPT = mlf.CUSTOM_PROMPT
SHORT_PROMPT = mlf.SHORT_PROMPT
QUERY_PREFIX, PASSAGE_PREFIX = mlf.QUERY_PREFIX, mlf.PASSAGE_PREFIX

GZIP_TOKENIZER_OVER = 200_000
TARGET_STD = 3.5  # score spread each head is scaled to (default-512 rows, its own layer)

CASES = [
    # name, max_length, query_max_length (None = max_length*3//4), prompt, cutoff_layers (as passed)
    ("default-512", 512, None, None, None),
    ("cutoffs-multi-512", 512, None, None, [2, 4, 6]),
    ("cutoff-unsorted", 512, None, None, [5, 3]),
    ("cutoff-duplicate", 512, None, None, [6, 2, 6]),
    ("cutoff-int-prompt-custom", 512, None, CUSTOM_PROMPT, 4),
    ("small-48-q12", 48, 12, None, [3]),
    ("cutoff-out-of-range", 512, None, None, [1, 4, 9]),
    # the only_second boundary (see mlf.build_pairs: the "the x n" pairs); |sep| = 2 here
    ("small-48-q64-prompt-short", 48, 64, SHORT_PROMPT, [2, 6]),
]
REFUSAL_CASE = "small-48-q64-prompt-short"
assert next(c for c in CASES if c[0] == REFUSAL_CASE)[1:4] == \
    next(c for c in mlf.CASES if c[0] == mlf.REFUSAL_CASE)[1:4], "build_pairs sizes its pairs on it"
REJECTED = [[1], [0, 7], []]  # no cutoff left after filtering -> ValueError ([] -> max() of empty)


def flag_query_max_length(max_length, query_max_length):
    return max_length * 3 // 4 if query_max_length is None else query_max_length


def cutoff_semantics(cutoff_layers, start_layer=START_LAYER, n_layers=N_LAYERS):
    """(layers, heads): the layer of each returned score list (ascending) and the lm_head index
    that produced it, as LayerWiseMiniCPMForCausalLM.forward computes them."""
    if cutoff_layers is None:
        cutoffs = [n_layers]
    elif isinstance(cutoff_layers, int):
        cutoffs = [cutoff_layers]
    else:
        cutoffs = list(cutoff_layers)
    cutoffs = [c for c in cutoffs if start_layer <= c <= n_layers]
    if not cutoffs:
        raise ValueError("no cutoff layer in range")
    layers = sorted(set(cutoffs))
    heads = [cutoffs[i] - start_layer for i in range(len(layers))]
    return layers, heads


# --------------------------------------------------------------------------------------------
# tokenizer


def training_texts():
    # "\n" and "\t" stay out of the vocabulary (byte fallback), as in MiniCPM's: "\n" -> ▁ <0x0A>
    return [t.replace("\n", " ").replace("\t", " ") for t in mlf.training_texts()]


def build_tokenizer_json():
    """Train a small BPE on the gemma-tiny training texts and lay it out like a legacy Llama /
    MiniCPM tokenizer.json: <unk> <s> </s> = 0..2, the 256 byte tokens <0x00>..<0xFF> = 3..258,
    then the trained alphabet and merges; normalizer Prepend('▁') + Replace(' ', '▁'),
    pre_tokenizer null, byte fallback, decoder Replace/ByteFallback/Fuse/Strip(1 left)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    # training only: words start at '▁', so no merge spans a word boundary (sentencepiece-like)
    normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    vocab, merges = mlf.train_byte_fallback_vocab(normalizer, {"▁"}, SPECIALS, VOCAB_SIZE, training_texts())
    assert "\n" not in vocab and "\t" not in vocab

    def added(i, s):
        return {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True}

    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(i, s) for i, s in enumerate(SPECIALS)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ]},
        "pre_tokenizer": None,
        "post_processor": None,  # LlamaTokenizerFast.update_post_processor sets '<s> $A'
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": vocab, "merges": merges,
        },
    }
    return json.dumps(doc, ensure_ascii=False)


def save_tokenizer(tmp: Path):
    """Wrap in LlamaTokenizerFast (legacy) and save_pretrained. pad = <unk>, left padding: what
    FlagEmbedding's layerwise fine-tuning runner sets when the tokenizer has no pad token (the
    published tokenizer must have one, since inference pads with tokenizer.pad)."""
    from tokenizers import Tokenizer
    from transformers import LlamaTokenizerFast

    backend = Tokenizer.from_str(build_tokenizer_json())
    tok = LlamaTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                             unk_token="<unk>", pad_token="<unk>", add_bos_token=True,
                             add_eos_token=False, legacy=True, padding_side="left",
                             clean_up_tokenization_spaces=False)
    assert tok.padding_side == "left"
    tmp.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(tmp))
    return tmp


# --------------------------------------------------------------------------------------------
# input construction, re-implemented (checked against what LayerWiseFlagLLMReranker fed the model)


def expected_ids(tok, pairs, max_length, query_max_length, prompt):
    """LayerWiseLLMReranker.compute_score_single_gpu's ids on plain id lists:
    q = ids("A: " + query)[:qml], p = ids("B: " + passage)[:max_length] (no special tokens);
    first = [bos] + q (always: no bos != pad test here), second = sep + p (sep = ids("\\n"), 2 ids);
    only_second cut of `second` so that |first| + |second| <= max_length + |sep| + |prompt|, done
    only if 0 < remove < |second| (transformers' truncate_sequences); then + sep + prompt. No EOS."""
    qml = flag_query_max_length(max_length, query_max_length)
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    sep = enc("\n")
    prompt_ids = enc(DEFAULT_PROMPT if prompt is None else prompt)
    limit = max_length + len(sep) + len(prompt_ids)
    out = []
    for q, p in pairs:
        first = [tok.bos_token_id] + enc(QUERY_PREFIX + q)[:qml]
        second = sep + enc(PASSAGE_PREFIX + p)[:max_length]
        remove = len(first) + len(second) - limit
        if 0 < remove < len(second):
            second = second[:-remove]
        out.append(first + second + sep + prompt_ids)
    return out


def build_pairs(tok):
    pairs = mlf.build_pairs(tok)
    # literal special-token strings of this vocabulary (gemma's '<bos>' etc. are plain text here)
    pairs.insert(16, ["what is <s>?", "a <s> b <unk> c </s> d</s><s>e <pad> f"])
    return pairs


# --------------------------------------------------------------------------------------------
# model


def minicpm_config(vocab_size):
    from FlagEmbedding.inference.reranker.decoder_only.models.configuration_minicpm_reranker import \
        LayerWiseMiniCPMConfig

    return LayerWiseMiniCPMConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=N_LAYERS,
        num_attention_heads=4, num_key_value_heads=2,  # head_dim = 64 / 4 = 16; GQA, 2 q heads per kv
        hidden_act="silu", max_position_embeddings=2048, initializer_range=0.1, rms_norm_eps=1e-5,
        use_cache=False,  # the class default (True) makes 4.57.6 fail (DynamicCache.get_usable_length)
        bos_token_id=1, eos_token_id=2, tie_word_embeddings=False, rope_theta=10000.0,
        rope_scaling=None, attention_bias=False, attention_dropout=0.0,
        scale_emb=12, dim_model_base=256, scale_depth=1.4,
        start_layer=START_LAYER, head_multi=True, head_type="simple",
        architectures=["LayerWiseMiniCPMForCausalLM"])


INIT = dict(emb_std=0.12, norm_spread=0.6, qk_gain=1.0, v_gain=1.5, o_gain=2.0, mlp_gain=1.5,
            down_gain=2.0, head_gain=1.0)


def randomize(model, gen, emb_std, norm_spread, qk_gain, v_gain, o_gain, mlp_gain, down_gain, head_gain):
    """Large random init of every parameter; RMSNorm weights w = 1 + U(±norm_spread) (MiniCPM's
    norm multiplies by w itself, so a `w` vs `1 + w` bug shows)."""
    gains = {"q_proj": qk_gain, "k_proj": qk_gain, "v_proj": v_gain, "o_proj": o_gain,
             "gate_proj": mlp_gain, "up_proj": mlp_gain, "down_proj": down_gain, "linear_head": head_gain}
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            shape = tuple(p.shape)
            if name.endswith("norm.weight"):
                v = 1.0 + norm_spread * (2 * torch.rand(shape, generator=gen) - 1)
            elif name == "model.embed_tokens.weight":
                v = emb_std * torch.randn(shape, generator=gen)
            else:
                kind = name.split(".")[-2]
                v = gains[kind] / shape[1] ** 0.5 * torch.randn(shape, generator=gen)
            p.copy_(v)


def round_bf16(model):
    """Round the parameters to bf16 in place, keep f32. Not model.to(bf16).float(): that would also
    round the RoPE cos/sin buffers, which the saved model recomputes in f32."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())


def layer_states(model, ids, layers):
    """final_norm(h after c layers) at the last token for c in layers (ascending), one unpadded
    sequence, positions 0..n-1."""
    out = model.model(input_ids=torch.tensor([ids]), use_cache=False, output_hidden_states=True,
                      cutoff_layers=list(layers))
    assert len(out.hidden_states) == len(layers)
    return [h[0, -1] for h in out.hidden_states]


def fit_heads(model, rows):
    """Per layer c: remove from lm_head[c - start] the component along the mean final-norm state at
    layer c (scores straddle 0, median 0), then scale it to a score std of TARGET_STD."""
    layers = list(range(START_LAYER, N_LAYERS + 1))
    with torch.no_grad():
        states = [layer_states(model, ids, layers) for ids in rows]
        for j, c in enumerate(layers):
            h = torch.stack([s[j] for s in states])
            w = model.lm_head[c - START_LAYER].linear_head.weight  # [1, hidden]
            s = h @ w[0]
            v = h.mean(0)
            w[0] -= (s.median() / (v @ v)) * v
            s = h @ w[0]
            w[0] *= TARGET_STD / s.std()
            w[0] -= ((h @ w[0]).median() / (v @ v)) * v


def unpadded_scores(model, rows, cutoff_layers):
    layers, heads = cutoff_semantics(cutoff_layers)
    out = [[] for _ in layers]
    with torch.no_grad():
        for ids in rows:
            for i, (h, k) in enumerate(zip(layer_states(model, ids, layers), heads)):
                out[i].append(float(model.lm_head[k].linear_head(h)[0]))
    return out


# --------------------------------------------------------------------------------------------
# reference scores


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, module, args, kwargs):
        assert not args, "LayerWiseLLMReranker calls the model with keyword arguments"
        self.calls.append({k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in kwargs.items()})


def strip_left_padded(call, pad_id):
    ids, mask = call["input_ids"], call["attention_mask"]
    assert ids.shape[0] == 1, "batch_size=1 expected"
    n = int(mask[0].sum())
    L = mask.shape[1]
    assert bool(mask[0, L - n:].all()) and not bool(mask[0, :L - n].any()), "expected left padding"
    assert L % 8 == 0, "Collater pads to a multiple of 8"
    assert bool((ids[0, :L - n] == pad_id).all()), "pad id"
    return ids[0, L - n:].tolist()


def flag_case(reranker, rec, tok, pairs, L, query_max_length, prompt, cutoff_layers, expected):
    qml = flag_query_max_length(L, query_max_length)
    kw = dict(batch_size=1, max_length=L, query_max_length=qml, cutoff_layers=cutoff_layers)
    if prompt is not None:
        kw["prompt"] = prompt
    rec.calls.clear()
    scores = reranker.compute_score(pairs, normalize=False, **kw)
    assert len(rec.calls) == len(pairs) + 1  # the first call is the batch-size probe
    calls = rec.calls[1:]
    assert all(c["cutoff_layers"] == cutoff_layers and c["output_hidden_states"] is True for c in calls)
    rec.calls.clear()
    normalized = reranker.compute_score(pairs, normalize=True, **kw)

    layers, heads = cutoff_semantics(cutoff_layers)
    if len(layers) == 1:  # FlagEmbedding returns a flat list for one score list
        assert all(isinstance(s, float) for s in scores + normalized)
        lists, nlists = [scores], [normalized]
    else:
        assert len(scores) == len(normalized) == len(layers) and all(isinstance(s, list) for s in scores)
        lists, nlists = scores, normalized
    for s, n in zip(lists, nlists):
        assert len(s) == len(n) == len(pairs)
        for a, b in zip(s, n):
            # FlagEmbedding's sigmoid: float(1 / (1 + np.exp(-x))) in f64 of the f32 score
            # (math.exp can differ from np.exp by 1 ulp)
            assert b == float(1 / (1 + np.exp(-a))), (a, b)
            assert abs(b - 1 / (1 + math.exp(-a))) < 1e-15

    order = mlf.flag_order(tok, pairs, L, qml)
    rows = [None] * len(pairs)
    for j, idx in enumerate(order):
        rows[idx] = strip_left_padded(calls[j], tok.pad_token_id)
    for r, e in zip(rows, expected):
        assert r == e, "hook ids differ from the re-implemented LayerWiseLLMReranker input construction"
    return rows, layers, heads, lists, scores, normalized


def main():
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from FlagEmbedding.inference.reranker.decoder_only.models.modeling_minicpm_reranker import \
        LayerWiseMiniCPMForCausalLM

    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Due to model constraints")
    out_dir = FIX / NAME
    with tempfile.TemporaryDirectory(prefix="rerank-layerwise-fixtures-") as tmps:
        tmp = Path(tmps)

        # ---- tokenizer
        tok_dir = save_tokenizer(tmp / "tok")
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
        assert type(tok).__name__ == "LlamaTokenizerFast", type(tok)
        assert len(tok) == VOCAB_SIZE
        assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2, 0)
        assert tok.padding_side == "left"
        enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        sep_ids = enc("\n")
        assert tok.convert_ids_to_tokens(sep_ids) == ["▁", "<0x0A>"], sep_ids
        assert tok("hi")["input_ids"][0] == 1, "post-processor adds <s>"
        assert enc("a <s> b").count(1) == 1 and enc("</s>") == [2] and enc("<unk>") == [0]
        cjk = enc("你是谁")
        assert cjk[0] == tok.convert_tokens_to_ids("▁") and all(3 <= i < 259 for i in cjk[1:]), cjk

        pairs = build_pairs(tok)
        encodings = {c[0]: expected_ids(tok, pairs, c[1], c[2], c[3]) for c in CASES}
        # the only_second boundary with |sep| = 2: q = L + |prompt| - 1, + 0, + 1 "the" tokens ->
        # `sep + passage` cut to sep / to sep[0] alone / refused (untruncated)
        _, L, _, prompt, _ = next(c for c in CASES if c[0] == REFUSAL_CASE)
        n_prompt = len(enc(prompt))
        limit = L + len(sep_ids) + n_prompt
        i0 = next(i for i, p in enumerate(pairs) if p[0].startswith("the the"))
        n_passage = len(sep_ids) + len(enc(PASSAGE_PREFIX + pairs[i0][1]))
        rows = encodings[REFUSAL_CASE][i0:i0 + 3]
        tail = len(sep_ids) + n_prompt
        assert [len(r) for r in rows] == [limit + tail, limit + tail, limit + n_passage + tail], \
            [len(r) for r in rows]
        assert rows[0][-tail - 2:-tail] == sep_ids and rows[1][-tail - 1:-tail] == sep_ids[:1]

        # ---- model
        config = minicpm_config(VOCAB_SIZE)
        torch.manual_seed(SEED)
        model = LayerWiseMiniCPMForCausalLM(config).eval()
        gen = torch.Generator().manual_seed(SEED + 1)
        randomize(model, gen, **INIT)
        round_bf16(model)  # fit the heads on the weights that will be stored
        fit_heads(model, encodings["default-512"])
        round_bf16(model)

        model = model.to(torch.bfloat16)
        model.save_pretrained(str(tmp / "model"), safe_serialization=True)
        cfg = json.loads((tmp / "model" / "config.json").read_text())
        assert cfg["use_cache"] is False and cfg["tie_word_embeddings"] is False
        assert (cfg["scale_emb"], cfg["scale_depth"], cfg["dim_model_base"]) == (12, 1.4, 256)
        sd = load_file(str(tmp / "model" / "model.safetensors"))
        assert all(v.dtype == torch.bfloat16 for v in sd.values())
        heads = sorted(k for k in sd if k.startswith("lm_head."))
        assert heads == [f"lm_head.{i}.linear_head.weight" for i in range(N_LAYERS - START_LAYER + 1)], heads
        assert all(tuple(sd[k].shape) == (1, 64) for k in heads)

        out_dir.mkdir(parents=True, exist_ok=True)
        for f in out_dir.iterdir():
            f.unlink()
        shutil.copyfile(tmp / "model" / "config.json", out_dir / "config.json")
        raw = (tmp / "model" / "model.safetensors").read_bytes()
        (out_dir / "model.safetensors.gz").write_bytes(gzip_bytes(raw))
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            shutil.copyfile(tok_dir / name, out_dir / name)
        raw = (tok_dir / "tokenizer.json").read_bytes()
        if len(raw) > GZIP_TOKENIZER_OVER:
            (out_dir / "tokenizer.json.gz").write_bytes(gzip_bytes(raw))
        else:
            (out_dir / "tokenizer.json").write_bytes(raw)

        # ---- LayerWiseFlagLLMReranker on the saved folder, exactly as a user would (f32, CPU)
        from FlagEmbedding import LayerWiseFlagLLMReranker

        d = mlf.materialize(out_dir, tmp / "materialized")
        reranker = LayerWiseFlagLLMReranker(str(d), use_fp16=False, devices="cpu")
        m = reranker.model
        assert type(m) is LayerWiseMiniCPMForCausalLM  # not the AutoModel fallback
        assert m.config._attn_implementation == "sdpa", m.config._attn_implementation
        assert type(m.model.layers[0].self_attn).__name__ == "MiniCPMSdpaAttention"
        assert m.dtype == torch.float32 and all(p.dtype == torch.float32 for p in m.parameters())
        rec = Recorder()
        m.register_forward_pre_hook(rec, with_kwargs=True)

        cases = []
        unpadded_delta = 0.0
        for name, L, qml, prompt, cutoff_layers in CASES:
            rows, layers, head_ids, lists, scores, normalized = flag_case(
                reranker, rec, tok, pairs, L, qml, prompt, cutoff_layers, encodings[name])
            assert m.dtype == torch.float32
            # same layers / heads without padding: confirms `layers` and `heads`
            for a, b in zip(lists, unpadded_scores(m, rows, cutoff_layers)):
                unpadded_delta = max(unpadded_delta, max(abs(x - y) for x, y in zip(a, b)))
            cases.append({
                "name": name,
                "max_length": L,
                "query_max_length": flag_query_max_length(L, qml),
                "prompt": prompt,
                "cutoff_layers": cutoff_layers,
                "layers": layers,
                "heads": head_ids,
                "pairs": pairs,
                "input_ids": rows,
                "scores": scores,
                "normalized": normalized,
            })
        # FlagEmbedding left-pads even a single pair to a multiple of 8 and passes no position ids
        assert unpadded_delta < 1e-4, unpadded_delta

        # the unsorted list really uses other heads than its layers' own (and that shows)
        c = next(c for c in cases if c["name"] == "cutoff-unsorted")
        own = unpadded_scores(m, c["input_ids"], c["layers"])
        head_swap_delta = max(abs(x - y) for a, b in zip(c["scores"], own) for x, y in zip(a, b))
        assert head_swap_delta > 0.1, head_swap_delta

        # dim_model_base is only read by the 'raw' / 'complex' head types: no effect here
        rows0 = cases[0]["input_ids"][:4]
        before = unpadded_scores(m, rows0, None)
        m.config.dim_model_base = 1
        assert unpadded_scores(m, rows0, None) == before
        m.config.dim_model_base = cfg["dim_model_base"]

        rejected = []
        for co in REJECTED:
            try:
                reranker.compute_score(pairs[:2], batch_size=1, cutoff_layers=co)
            except ValueError as e:
                rejected.append({"cutoff_layers": co, "error": f"ValueError: {e}"})
            else:
                raise AssertionError(f"cutoff_layers={co} was accepted")

        ref = {
            "model": NAME,
            "generator": GENERATOR,
            "versions": versions(),
            "reranker": "LayerWiseFlagLLMReranker(dir, use_fp16=False, devices='cpu'), compute_score(pairs, "
                        "batch_size=1, max_length, query_max_length, cutoff_layers, [prompt], normalize)",
            "cutoff_rule": "cutoffs = [c for c in cutoff_layers if start_layer <= c <= num_hidden_layers] "
                           "(None -> [num_hidden_layers], int c -> [c]); score list i (i < number of distinct "
                           "cutoffs) = lm_head[cutoffs[i] - start_layer](final_norm(h after layers[i] layers)) "
                           "at the last token, layers = sorted distinct cutoffs; one list -> flat",
            "bos_id": tok.bos_token_id,
            "pad_id": tok.pad_token_id,
            "sep_ids": sep_ids,
            "query_prefix": QUERY_PREFIX,
            "passage_prefix": PASSAGE_PREFIX,
            "default_prompt": DEFAULT_PROMPT,
            "default_prompt_ids": enc(DEFAULT_PROMPT),
            "start_layer": START_LAYER,
            "num_hidden_layers": N_LAYERS,
            "rejected_cutoff_layers": rejected,
            "cases": cases,
        }
        write_json(FIX / f"{NAME}.reference.json", ref)

        per = {}
        for c in cases:
            lists = [c["scores"]] if len(c["layers"]) == 1 else c["scores"]
            per[c["name"]] = [f"L{la}/h{h}: {min(s):.2f}..{max(s):.2f} std {np.std(s):.2f}"
                              for la, h, s in zip(c["layers"], c["heads"], lists)]
        summary = {
            "pairs": len(pairs),
            "sep_ids": sep_ids,
            "default_prompt_len": len(ref["default_prompt_ids"]),
            "max_len": max(len(r) for c in cases for r in c["input_ids"]),
            "padded_vs_unpadded_max_delta": unpadded_delta,
            "unsorted_vs_own_heads_max_delta": head_swap_delta,
            "per_case": per,
            "model_bytes_gz": (out_dir / "model.safetensors.gz").stat().st_size,
        }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
