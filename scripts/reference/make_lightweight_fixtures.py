#!/usr/bin/env python3
"""Build the lightweight-reranker fixture tests/fixtures/gemma2-tiny* (see README.md).

A tiny random-weight look-alike of BAAI/bge-reranker-v2.5-gemma2-lightweight
(`CostWiseGemmaForCausalLM`: Gemma-2 blocks, layer-wise score heads, token compression) and the
scores FlagEmbedding 1.4.2's `LightWeightFlagLLMReranker` gives it, loading the saved folder from
disk (f32 on CPU, one pair per batch). The tokenizer is gemma-tiny's (copied byte for byte).

Runs ONLY in the transformers 4.46.0 venv (requirements-446.txt): FlagEmbedding's gemma_model.py
imports Gemma-2 internals that later transformers releases removed.

Deterministic: fixed seeds, single-threaded torch, gzip with mtime=0 and no file name, so re-running
it in the same environment rewrites byte-identical files.

Writes:
  tests/fixtures/gemma2-tiny/                 config.json, tokenizer.json, tokenizer_config.json,
                                              special_tokens_map.json, model.safetensors.gz (bf16)
  tests/fixtures/gemma2-tiny.reference.json   per case: the call's arguments, pairs, exact unpadded
                                              input_ids fed to the model (forward pre-hook), the
                                              query/prompt block lengths the compression uses, raw
                                              scores (sdpa, as FlagEmbedding runs), normalized
                                              scores, and scores_attn_softcap (same folder loaded
                                              with attn_implementation="eager")
"""

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_llm_fixtures as mlf  # noqa: E402  (gemma-tiny: pairs, tokenizer folder, helpers)
from make_fixtures import gzip_bytes, versions, write_json  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

FIX = mlf.FIX
NAME = "gemma2-tiny"
TOKENIZER_FROM = "gemma-tiny"
GENERATOR = "scripts/reference/make_lightweight_fixtures.py"

SEED = 20240719
DEFAULT_PROMPT = "Predict whether passage B contains an answer to query A."  # lightweight.py
CUSTOM_PROMPT = mlf.CUSTOM_PROMPT  # "Is passage B relevant to query A? Answer Yes or No."
SHORT_PROMPT = mlf.SHORT_PROMPT    # "Relevant?"
QUERY_PREFIX, PASSAGE_PREFIX = mlf.QUERY_PREFIX, mlf.PASSAGE_PREFIX

# LightweightLLMReranker.__init__ defaults (FlagEmbedding 1.4.2), asserted against the instance
CTOR_DEFAULTS = dict(cutoff_layers=None, compress_layers=[8], compress_ratio=1, prompt=None)

GZIP_MODEL_OVER = 100_000

# The real model's config.json (bge-reranker-v2.5-gemma2-lightweight, Gemma-2-9B based), for the
# record: CostWiseGemmaForCausalLM, hidden 3584, 42 layers, 16 heads x head_dim 256, 8 KV heads,
# intermediate 14336, query_pre_attn_scalar 256, sliding_window 4096 (+ sliding_window_size 4096),
# attn_logit_softcapping 50, final_logit_softcapping 30, hidden_act = hidden_activation =
# gelu_pytorch_tanh, eps 1e-6, rope_theta 10000, start_layer 8, layer_sep 1, layer_wise true,
# cache_implementation hybrid, pad/eos/bos 0/1/2, vocab 256000, no tie_word_embeddings key.
# (No `head_type`: that key belongs to the MiniCPM layerwise config; gemma_config.py reads only
# start_layer, layer_sep, layer_wise on top of Gemma2Config.)
TINY = dict(
    hidden_size=72, intermediate_size=144, num_hidden_layers=6,  # sqrt(72) not bf16-exact
    num_attention_heads=4, num_key_value_heads=2, head_dim=32,  # 4*32 = 128 != 72; GQA 2 groups
    query_pre_attn_scalar=24,                                   # != head_dim: scale 24^-0.5
    sliding_window=16, sliding_window_size=16,                  # layers 0, 2, 4 slide
    attn_logit_softcapping=20.0, final_logit_softcapping=8.0,
    hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh",
    max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0,
    pad_token_id=0, eos_token_id=1, bos_token_id=2,
    attention_bias=False, attention_dropout=0.0, initializer_range=0.02, use_cache=True,
    cache_implementation="hybrid",
    start_layer=2, layer_sep=1, layer_wise=True,                # heads for cutoffs 2..6
)
AUTO_MAP = {  # as in the real config.json (not used: FlagEmbedding imports the class itself)
    "AutoConfig": "BAAI/bge-reranker-v2.5-gemma2-lightweight--gemma_config.CostWiseGemmaConfig",
    "AutoModel": "BAAI/bge-reranker-v2.5-gemma2-lightweight--gemma_model.CostWiseGemmaModel",
    "AutoModelForCausalLM": "BAAI/bge-reranker-v2.5-gemma2-lightweight--gemma_model.CostWiseGemmaForCausalLM",
}

INIT = dict(emb_std=0.5, norm_spread=0.6, qk_gain=1.5, v_gain=1.5, o_gain=3.0, mlp_gain=1.5, down_gain=3.0)
HEAD_RAW_STD = 7.0  # raw head outputs (before the final soft-cap of 8) spread this much

# name, max_length, query_max_length (None = max_length*3//4), prompt (None = default),
# cutoff_layers, compress_ratio, compress_layers; None = not passed (the instance default)
CASES = [
    ("default-512", 512, None, None, None, None, None),
    ("cut4-r1", 512, None, None, [4], 1, None),
    ("cut6-r2-c3", 512, None, None, [6], 2, [3]),
    ("cut6-r4-c2-4", 512, None, None, [6], 4, [2, 4]),
    ("cut5-r8-c0-2", 512, None, None, [5], 8, [0, 2]),        # index 0 is ignored
    ("multi-cut-r2-c3", 512, None, None, [3, 6], 2, [3]),     # 3 scored before the compression at 3
    ("multi-cut-unsorted", 512, None, None, [6, 1, 4], 1, None),  # 1 < start_layer: dropped
    ("all-cuts-r2-c3-5", 512, None, None, [2, 3, 4, 5, 6], 2, [3, 5]),
    ("compress-past-cutoff", 512, None, None, [4], 2, [4, 5]),  # no effect: == cut4-r1
    ("small-48-q12-r2-c2", 48, 12, CUSTOM_PROMPT, [5], 2, [2]),
    # |[bos] + query| reaches the only_second limit for the "the" x n pairs: passage cut to 0
    # tokens (sep alone) / refused at equality / refused; compression with 0 passage tokens
    ("small-48-q64-prompt-short-r2-c1-3", 48, 64, SHORT_PROMPT, [4], 2, [1, 3]),
]
REFUSAL_CASE = "small-48-q64-prompt-short-r2-c1-3"  # same ids as gemma-tiny's mlf.REFUSAL_CASE

COMPRESSION_RULE = (
    "Before running decoder layer idx (0-based), for idx in compress_layers with idx != 0 and "
    "idx < max(cutoff_layers) (the loop breaks at idx == max cutoff first), and only if "
    "compress_ratio != 1: the sequence [query block | passage | prompt block] is rebuilt. query block = "
    "the first query_len = 1 + |q| + |sep| tokens ([bos] + truncated query ids + sep; its length is "
    "computed from the query ids, never searched in input_ids); prompt block = the last prompt_len = "
    "|sep| + |prompt| real tokens; passage = the P = n - query_len - prompt_len tokens between (the "
    "passage ids after only_second truncation, possibly 0). The passage hidden states are averaged in "
    "consecutive groups of r from its start: ceil(P/r) groups, the last one averages the k = P - "
    "r*floor((P-1)/r) tokens it has (each weighted 1/k, summed). New sequence = query block + groups + "
    "prompt block (n' = query_len + ceil(P/r) + prompt_len), new attention mask all ones, position ids "
    "0..n'-1 (RoPE from these in every later layer), causal mask and sliding window rebuilt on the new "
    "indices. A second compress layer compresses the compressed passage again (groups of r of the "
    "group means, the passage length being ceil(P/r)). Hidden states for a cutoff c are taken (and "
    "final-normed) before layer c runs, i.e. before a compression at the same index.")


def qml_of(L, q):
    return L * 3 // 4 if q is None else q


# --------------------------------------------------------------------------------------------
# input construction, re-implemented (checked against what the reranker fed the model)


def expected_inputs(tok, pairs, L, query_max_length, prompt):
    """LightweightLLMReranker.compute_score_single_gpu's ids on plain id lists:
    q = ids("A: " + query)[:Q], p = ids("B: " + passage)[:L] (no special tokens);
    first = [bos] + q (always, whatever pad is), second = sep + p; only_second cut of `second` so
    that |first| + |second| <= L + |sep| + |prompt| (not done if that would leave nothing of
    `second`, transformers' truncate_sequences); then + sep + prompt. No EOS.
    Also the block lengths the compression uses: query_len = |[bos] + q + sep| (computed from the
    query ids, whatever the pair truncation did), prompt_len = |sep + prompt|."""
    Q = qml_of(L, query_max_length)
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    sep = enc("\n")
    prompt_ids = enc(DEFAULT_PROMPT if prompt is None else prompt)
    limit = L + len(sep) + len(prompt_ids)
    rows, qlens = [], []
    for q, p in pairs:
        qi = enc(QUERY_PREFIX + q)[:Q]
        pi = enc(PASSAGE_PREFIX + p)[:L]
        first = [tok.bos_token_id] + qi
        second = sep + pi
        remove = len(first) + len(second) - limit
        if 0 < remove < len(second):
            second = second[:-remove]
        rows.append(first + second + sep + prompt_ids)
        qlens.append(len(first) + len(sep))
    return rows, qlens, len(sep) + len(prompt_ids)


# --------------------------------------------------------------------------------------------
# model


def make_config(vocab_size):
    from FlagEmbedding.inference.reranker.decoder_only.models.gemma_config import CostWiseGemmaConfig

    return CostWiseGemmaConfig(vocab_size=vocab_size, architectures=["CostWiseGemmaForCausalLM"],
                               auto_map=AUTO_MAP, **TINY)


def randomize(model, gen, emb_std, norm_spread, qk_gain, v_gain, o_gain, mlp_gain, down_gain):
    """Large random init of every parameter; RMSNorm weights w random in +-norm_spread (Gemma-2
    multiplies by 1 + w, so a `w` vs `1 + w` bug shows); heads N(0, 1) (rescaled later)."""
    gains = {"q_proj": qk_gain, "k_proj": qk_gain, "v_proj": v_gain, "o_proj": o_gain,
             "gate_proj": mlp_gain, "up_proj": mlp_gain, "down_proj": down_gain}
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            shape = tuple(p.shape)
            if name.endswith("norm.weight"):
                v = norm_spread * (2 * torch.rand(shape, generator=gen) - 1)
            elif name == "model.embed_tokens.weight":
                v = emb_std * torch.randn(shape, generator=gen)
            elif name.startswith("lm_head."):
                v = torch.randn(shape, generator=gen)
            else:
                kind = name.split(".")[-2]
                v = gains[kind] / shape[1] ** 0.5 * torch.randn(shape, generator=gen)
            p.copy_(v)


def calibrate_heads(model, row_sets):
    """A head is picked by the rank of the cutoff in the request, not by the layer, so one head sees
    the final-normed states of several layers (and prompts). For every head: remove from its weight
    the mean last-token state of each (layer start..num_layers, prompt) group of the calibration
    rows (so each group's scores are centred on 0), then scale it to a raw spread of HEAD_RAW_STD,
    so that the final soft-cap visibly bites. bf16-rounded."""
    cfg = model.config
    layers = list(range(cfg.start_layer, cfg.num_hidden_layers + 1, cfg.layer_sep))
    groups = []  # [rows, hidden] per (prompt, layer)
    with torch.no_grad():
        for rows in row_sets:
            per_layer = [[] for _ in layers]
            for ids in rows:
                out = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                            cutoff_layers=layers, output_hidden_states=True)
                assert len(out.hidden_states) == len(layers)
                for k, h in enumerate(out.hidden_states):
                    per_layer[k].append(h[0, -1])
            groups.extend(torch.stack(x) for x in per_layer)
        M = torch.stack([g.mean(0) for g in groups])            # group means
        P = torch.eye(M.shape[1]) - M.T @ torch.linalg.pinv(M.T)  # projector onto their complement
        H = torch.cat(groups)
        for head in model.lm_head:
            w = P @ head.linear_head.weight[0]
            w = w * (HEAD_RAW_STD / (H @ w).std())
            head.linear_head.weight[0] = w.to(torch.bfloat16).float()


# --------------------------------------------------------------------------------------------
# reference scores


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, module, args, kwargs):
        assert not args, "the reranker calls the model with keyword arguments"
        self.calls.append({k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in kwargs.items()})


def strip_right_padded(call):
    ids, mask = call["input_ids"], call["attention_mask"]
    assert ids.shape[0] == 1, "batch_size=1 expected"
    n = int(mask[0].sum())
    L = mask.shape[1]
    assert bool(mask[0, :n].all()) and not bool(mask[0, n:].any()), "expected right padding"
    assert L % 8 == 0 and L - n < 8, "Collater pads to a multiple of 8"
    assert bool((ids[0, n:] == 0).all()), "pad id 0"
    return ids[0, :n].tolist()


def call_kwargs(L, Q, prompt, cutoff, ratio, compress):
    kw = dict(batch_size=1, max_length=L, query_max_length=qml_of(L, Q))
    for k, v in (("prompt", prompt), ("cutoff_layers", cutoff), ("compress_ratio", ratio),
                 ("compress_layers", compress)):
        if v is not None:
            kw[k] = v
    return kw


def effective(model, cutoff, ratio, compress):
    """What the model does with the request (gemma_model.py): the cutoffs it scores, in the order of
    the returned lists (ascending layer: the decoder loop collects them), the head for each list
    (its rank), and the compressions that happen."""
    cfg = model.config
    usable = list(range(cfg.start_layer, cfg.num_hidden_layers + 1, cfg.layer_sep))
    req = [cfg.num_hidden_layers] if cutoff is None else cutoff
    kept = [c for c in req if c in usable]
    layers = sorted(set(kept))
    r = CTOR_DEFAULTS["compress_ratio"] if ratio is None else ratio
    cl = CTOR_DEFAULTS["compress_layers"] if compress is None else compress
    done = [i for i in sorted(set(cl)) if r != 1 and 0 < i < max(layers)]
    return layers, list(range(len(layers))), r, cl, done


def main():
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    out_dir = FIX / NAME
    tok_src = FIX / TOKENIZER_FROM
    gemma_ref = json.loads((FIX / f"{TOKENIZER_FROM}.reference.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="rerank-lightweight-fixtures-") as tmps:
        tmp = Path(tmps)

        # ---- tokenizer: gemma-tiny's files, loaded by transformers 4.46
        tok = AutoTokenizer.from_pretrained(str(tok_src))
        assert type(tok).__name__ == "GemmaTokenizerFast", type(tok)
        assert len(tok) == mlf.VOCAB_SIZE
        assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
        sep_ids = tok("\n", add_special_tokens=False)["input_ids"]
        assert sep_ids == gemma_ref["sep_ids"] and len(sep_ids) == 1
        pairs = mlf.build_pairs(tok)
        # same tokenization as transformers 4.57.6 gave for gemma-tiny
        assert pairs == gemma_ref["cases"][0]["pairs"]
        for c in gemma_ref["cases"]:
            assert mlf.expected_ids(tok, pairs, c["max_length"], c["query_max_length"], c["prompt"]) == c["input_ids"]

        encodings = {c[0]: expected_inputs(tok, pairs, c[1], c[2], c[3]) for c in CASES}

        # ---- model
        from FlagEmbedding.inference.reranker.decoder_only.models.gemma_model import CostWiseGemmaForCausalLM

        config = make_config(mlf.VOCAB_SIZE)
        torch.manual_seed(SEED)
        model = CostWiseGemmaForCausalLM(config).eval()
        gen = torch.Generator().manual_seed(SEED + 1)
        randomize(model, gen, **INIT)
        model = model.to(torch.bfloat16).float()  # calibrate on the weights that will be stored
        calibrate_heads(model, [encodings[n][0] for n in ("default-512", "small-48-q12-r2-c2", REFUSAL_CASE)])

        model = model.to(torch.bfloat16)
        model.save_pretrained(str(tmp / "model"), safe_serialization=True)
        cfg = json.loads((tmp / "model" / "config.json").read_text())
        assert cfg["model_type"] == "cost_wise_gemma" and "tie_word_embeddings" not in cfg
        sd = load_file(str(tmp / "model" / "model.safetensors"))
        assert all(v.dtype == torch.bfloat16 for v in sd.values())
        n_heads = len(range(TINY["start_layer"], TINY["num_hidden_layers"] + 1, TINY["layer_sep"]))
        assert sorted(k for k in sd if k.startswith("lm_head")) == \
            [f"lm_head.{i}.linear_head.weight" for i in range(n_heads)]

        out_dir.mkdir(parents=True, exist_ok=True)
        for f in out_dir.iterdir():
            f.unlink()
        shutil.copyfile(tmp / "model" / "config.json", out_dir / "config.json")
        raw = (tmp / "model" / "model.safetensors").read_bytes()
        if len(raw) > GZIP_MODEL_OVER:
            (out_dir / "model.safetensors.gz").write_bytes(gzip_bytes(raw))
        else:
            (out_dir / "model.safetensors").write_bytes(raw)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copyfile(tok_src / name, out_dir / name)

        # ---- LightWeightFlagLLMReranker on the saved folder, exactly as a user would (f32, CPU)
        from FlagEmbedding import LightWeightFlagLLMReranker

        d = mlf.materialize(out_dir, tmp / "materialized")
        reranker = LightWeightFlagLLMReranker(str(d), use_fp16=False, devices="cpu")
        for k, v in CTOR_DEFAULTS.items():
            assert getattr(reranker, k) == v, (k, getattr(reranker, k))
        assert reranker.tokenizer.padding_side == "right"
        m = reranker.model
        assert type(m).__name__ == "CostWiseGemmaForCausalLM"
        assert m.config._attn_implementation == "sdpa"
        assert all(type(layer.self_attn).__name__ == "Gemma2SdpaAttention" for layer in m.model.layers)
        assert [layer.is_sliding for layer in m.model.layers] == [i % 2 == 0 for i in range(6)]
        assert all(type(layer.mlp.act_fn).__name__ == "PytorchGELUTanh" for layer in m.model.layers)
        assert m.dtype == torch.float32 and all(p.dtype == torch.float32 for p in m.parameters())

        def run_cases(rr, rec, with_normalized):
            res = {}
            for name, L, Q, prompt, cutoff, ratio, compress in CASES:
                kw = call_kwargs(L, Q, prompt, cutoff, ratio, compress)
                rec.calls.clear()
                scores = rr.compute_score(pairs, normalize=False, **kw)
                assert len(rec.calls) == len(pairs) + 1  # + the batch-size probe
                calls = rec.calls[1:]
                normalized = rr.compute_score(pairs, normalize=True, **kw) if with_normalized else None
                res[name] = (scores, normalized, calls)
            return res

        rec = Recorder()
        m.register_forward_pre_hook(rec, with_kwargs=True)
        heads_seen = []

        def head_probe(module, args, kwargs, output):
            heads_seen.append((output.hidden_states, output.logits, output.attention_masks))

        hp = m.register_forward_hook(head_probe, with_kwargs=True)
        sdpa = run_cases(reranker, rec, True)
        hp.remove()

        # eager attention (applies attn_logit_softcapping): the same folder loaded with
        # attn_implementation="eager" replaces reranker.model (the constructor has no switch)
        eager_model = CostWiseGemmaForCausalLM.from_pretrained(str(d), torch_dtype=torch.float32,
                                                               attn_implementation="eager")
        assert all(type(layer.self_attn).__name__ == "Gemma2Attention" for layer in eager_model.model.layers)
        reranker.model = eager_model
        rec_e = Recorder()
        eager_model.register_forward_pre_hook(rec_e, with_kwargs=True)
        eager = run_cases(reranker, rec_e, False)
        # eager without the soft-cap == sdpa: the cap is the only difference
        eager_model.config.attn_logit_softcapping = None
        eager_nocap = run_cases(reranker, rec_e, False)
        eager_model.config.attn_logit_softcapping = TINY["attn_logit_softcapping"]
        # sliding window matters: widen it on the sdpa model
        for layer in m.model.layers:
            layer.sliding_window = 10 ** 6
        reranker.model = m
        wide = {n: reranker.compute_score(pairs, **call_kwargs(*c)) for n, *c in CASES[:1]}
        for layer in m.model.layers:
            layer.sliding_window = TINY["sliding_window"]

        cases, deltas = [], {"softcap": 0.0, "nocap_vs_sdpa": 0.0}
        order_cache = {}
        for (name, L, Q, prompt, cutoff, ratio, compress) in CASES:
            scores, normalized, calls = sdpa[name]
            rows_exp, qlens, plen = encodings[name]
            Qe = qml_of(L, Q)
            key = (L, Qe)
            if key not in order_cache:
                order_cache[key] = mlf.flag_order(tok, pairs, L, Qe)
            order = order_cache[key]
            rows = [None] * len(pairs)
            qlen_seen = [None] * len(pairs)
            for j, idx in enumerate(order):
                rows[idx] = strip_right_padded(calls[j])
                qlen_seen[idx] = int(calls[j]["query_lengths"][0])
                assert calls[j]["prompt_lengths"] == [plen]
            assert rows == rows_exp, f"{name}: hook ids differ from the re-implemented input rule"
            assert qlen_seen == qlens, name
            for other in (eager, eager_nocap):
                assert [c["input_ids"].tolist() for c in other[name][2]] == \
                    [c["input_ids"].tolist() for c in calls], name
            layers, heads, r_eff, cl_eff, done = effective(m, cutoff, ratio, compress)
            flat = len(layers) == 1
            lists = [scores] if flat else scores
            nlists = [normalized] if flat else normalized
            assert len(lists) == len(layers) and all(len(x) == len(pairs) for x in lists), name
            assert all(isinstance(s, float) for x in lists for s in x)
            for x, nx in zip(lists, nlists):
                for s, n in zip(x, nx):
                    assert n == float(1 / (1 + np.exp(-s))), (s, n)
            e_lists = [eager[name][0]] if flat else eager[name][0]
            n_lists = [eager_nocap[name][0]] if flat else eager_nocap[name][0]
            for x, e, n in zip(lists, e_lists, n_lists):
                deltas["softcap"] = max(deltas["softcap"], max(abs(a - b) for a, b in zip(x, e)))
                deltas["nocap_vs_sdpa"] = max(deltas["nocap_vs_sdpa"], max(abs(a - b) for a, b in zip(x, n)))
            cases.append({
                "name": name,
                "max_length": L,
                "query_max_length": Qe,
                "prompt": prompt,
                "call": {k: v for k, v in call_kwargs(L, Q, prompt, cutoff, ratio, compress).items()},
                "cutoff_layers": cutoff,
                "compress_ratio": r_eff,
                "compress_layers": cl_eff,
                "compressions_applied_before_layers": done,
                "layers": layers,
                "heads": heads,
                "pairs": pairs,
                "input_ids": rows,
                "query_lengths": qlens,
                "prompt_length": plen,
                "scores": scores,
                "normalized": normalized,
                "scores_attn_softcap": eager[name][0],
            })

        # the head for the k-th returned list is lm_head[k]: check on the recorded forward outputs
        cap = TINY["final_logit_softcapping"]
        W = torch.stack([h.linear_head.weight[0] for h in m.lm_head])
        for hidden, logits, masks in heads_seen:
            assert len(hidden) == len(logits) == len(masks)
            for k, (h, lg, mk) in enumerate(zip(hidden, logits, masks)):
                n = int(mk[0].sum())
                cand = cap * torch.tanh(h[0, n - 1] @ W.T / cap)
                match = [j for j in range(len(W)) if abs(float(cand[j]) - float(lg[0, n - 1])) < 1e-5]
                assert match == [k], (k, match, cand.tolist(), float(lg[0, n - 1]))

        by = {c["name"]: c for c in cases}
        assert by["compress-past-cutoff"]["scores"] == by["cut4-r1"]["scores"]
        assert by["compress-past-cutoff"]["compressions_applied_before_layers"] == []
        assert by["default-512"]["layers"] == [6] and by["default-512"]["heads"] == [0]
        assert by["multi-cut-unsorted"]["layers"] == [4, 6]
        # layer 4's list in the unsorted request uses head 0, like cut4-r1 (same sequence, no compression)
        assert by["multi-cut-unsorted"]["scores"][0] == by["cut4-r1"]["scores"]
        assert deltas["softcap"] > 1e-2, deltas
        assert deltas["nocap_vs_sdpa"] < 1e-4, deltas
        wide_delta = max(abs(a - b) for a, b in zip(wide["default-512"], by["default-512"]["scores"]))
        assert wide_delta > 1e-2, wide_delta
        the_i = next(i for i, p in enumerate(pairs) if p[0].startswith("the the"))
        refusal = by[REFUSAL_CASE]
        gemma_refusal = next(c for c in gemma_ref["cases"] if c["name"] == mlf.REFUSAL_CASE)
        assert refusal["input_ids"] == gemma_refusal["input_ids"]
        plens = [len(r) - ql - refusal["prompt_length"]
                 for r, ql in zip(refusal["input_ids"][the_i:the_i + 3], refusal["query_lengths"][the_i:the_i + 3])]
        assert plens[0] == 0 and plens[1] > 0 and plens[2] > 0, plens

        all_scores = np.array([s for c in cases for x in ([c["scores"]] if len(c["layers"]) == 1 else c["scores"])
                               for s in x])
        prompt_ids = tok(DEFAULT_PROMPT, add_special_tokens=False)["input_ids"]
        ref = {
            "model": NAME,
            "generator": GENERATOR,
            "versions": versions(),
            "reranker": "LightWeightFlagLLMReranker(dir, use_fp16=False, devices='cpu'), "
                        "compute_score(pairs, batch_size=1, max_length, query_max_length, [prompt], "
                        "[cutoff_layers], [compress_ratio], [compress_layers], normalize)",
            "ctor_defaults": CTOR_DEFAULTS,
            "attention": "scores / normalized: sdpa (what LightWeightFlagLLMReranker loads; no attention "
                         "soft-cap); scores_attn_softcap: CostWiseGemmaForCausalLM.from_pretrained(dir, "
                         "torch_dtype=float32, attn_implementation='eager') put in reranker.model "
                         "(eager Gemma2Attention applies cap * tanh(logits / cap), cap = "
                         "attn_logit_softcapping, before the mask)",
            "return_shape": "one scored layer: a flat list of floats; several: one list per scored layer, "
                            "in ascending layer order ('layers'), list k scored by lm_head[k] ('heads')",
            "compression_rule": COMPRESSION_RULE,
            "bos_id": tok.bos_token_id,
            "pad_id": tok.pad_token_id,
            "sep_ids": sep_ids,
            "query_prefix": QUERY_PREFIX,
            "passage_prefix": PASSAGE_PREFIX,
            "default_prompt": DEFAULT_PROMPT,
            "default_prompt_ids": prompt_ids,
            "start_layer": TINY["start_layer"],
            "layer_sep": TINY["layer_sep"],
            "num_hidden_layers": TINY["num_hidden_layers"],
            "cases": cases,
        }
        write_json(FIX / f"{NAME}.reference.json", ref)
        summary = {
            "pairs": len(pairs),
            "sep_ids": sep_ids,
            "default_prompt_len": len(prompt_ids),
            "scores_min": float(all_scores.min()),
            "scores_max": float(all_scores.max()),
            "scores_std": float(all_scores.std()),
            "scores_median": float(np.median(all_scores)),
            "abs_over_0.9_cap": int((np.abs(all_scores) > 0.9 * cap).sum()),
            "n_scores": int(all_scores.size),
            "max_len": max(len(r) for c in cases for r in c["input_ids"]),
            "softcap_eager_vs_sdpa_max_delta": deltas["softcap"],
            "eager_nocap_vs_sdpa_max_delta": deltas["nocap_vs_sdpa"],
            "wide_window_max_delta": wide_delta,
            "model_gz_bytes": (out_dir / "model.safetensors.gz").stat().st_size,
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
