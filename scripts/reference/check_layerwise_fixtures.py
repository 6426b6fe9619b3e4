#!/usr/bin/env python3
"""Independent check of tests/fixtures/minicpm-tiny* (run after make_layerwise_fixtures.py).

No transformers, no FlagEmbedding: only torch, safetensors and the bare `tokenizers` library, i.e.
what the Rust implementation has to do.

1. Re-derive every recorded input_ids row from the pair texts with `tokenizers` (tokenizer.json)
   and LayerWiseLLMReranker's construction rule, applied by hand.
2. Re-derive each case's `layers` / `heads` from its `cutoff_layers` (rule below) and re-score
   every row with a plain-torch MiniCPM forward (unpadded, positions 0..n-1, f32 computations on the
   bf16 weights); compare with the recorded FlagEmbedding scores (<= 1e-4), in FlagEmbedding's return
   shape; check normalized == sigmoid(score).
3. Sensitivity: the usual mistakes must each move some score by > 1e-3.

Ids (bos = 1, sep = ids("\\n") = [▁, <0x0A>], prompt default = the v2-gemma sentence):
  first  = [bos] + ids("A: " + query)[:Q]          (always a BOS; Q default = L * 3 // 4)
  second = sep + ids("B: " + passage)[:L]
  remove = |first| + |second| - (L + |sep| + |prompt|); second = second[:-remove] iff 0 < remove < |second|
  ids    = first + second + sep + prompt           (no EOS)

The MiniCPM forward, for one sequence of n ids (everything f32; weights upcast from bf16):
  r      = scale_depth / sqrt(num_hidden_layers)   # the full layer count, whatever the cutoff
  h      = E[ids] * scale_emb
  per layer l = 0 .. max(layers) - 1:
    x    = rms(h) * w_in                           # rms(x) = x * rsqrt(mean(x^2) + eps); * w, not 1 + w
    q,k,v = x Wq^T, x Wk^T, x Wv^T                 # head_dim = hidden / heads; k, v: kv_heads x head_dim
    q,k  = rope(q), rope(k)                        # rotate-half (i, i + d/2), inv_freq_i = theta^(-2i/d),
                                                   # cos/sin tables in f32
    a    = softmax(q k^T / sqrt(head_dim) + causal) v   # GQA: kv head j serves q heads j*g .. j*g+g-1
    h    = h + (concat_heads(a) Wo^T) * r
    x    = rms(h) * w_post
    h    = h + ((silu(x Wg^T) * (x Wu^T)) Wd^T) * r
    if l + 1 in layers: s_(l+1) = rms(h[n-1]) * w_final   # the same final norm for every cutoff
  cutoffs = [c in cutoff_layers if start_layer <= c <= num_hidden_layers]  (None -> [N], int -> [c])
  layers  = sorted(set(cutoffs));  score list i = s_(layers[i]) . lm_head[cutoffs[i] - start_layer]
          (lm_head.{k}.linear_head.weight is [1, hidden], no bias; k picked by the caller's list)
  one list -> returned flat; dim_model_base is not used (only by the 'raw'/'complex' head types).
"""

import gzip
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures"
NAME = "minicpm-tiny"
TOL = 1e-4


def materialize(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.suffix == ".gz":
            (dst / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
        else:
            shutil.copyfile(f, dst / f.name)
    return dst


# --------------------------------------------------------------------------------------------
# ids and cutoffs


def layerwise_rule(tk, q, p, L, qml, prompt, bos, sep):
    enc = lambda s: tk.encode(s, add_special_tokens=False).ids  # noqa: E731
    pr = enc(prompt)
    first = [bos] + enc("A: " + q)[:qml]
    second = sep + enc("B: " + p)[:L]
    remove = len(first) + len(second) - (L + len(sep) + len(pr))
    if 0 < remove < len(second):
        second = second[:-remove]
    # else: fits, or refused (transformers logs an error and cuts nothing)
    return first + second + sep + pr


def cutoff_rule(cutoff_layers, start, n_layers):
    if cutoff_layers is None:
        cutoffs = [n_layers]
    elif isinstance(cutoff_layers, int):
        cutoffs = [cutoff_layers]
    else:
        cutoffs = [c for c in cutoff_layers]
    cutoffs = [c for c in cutoffs if start <= c <= n_layers]
    if not cutoffs:
        return None
    layers = sorted(set(cutoffs))
    return layers, [cutoffs[i] - start for i in range(len(layers))]


# --------------------------------------------------------------------------------------------
# the model, in plain torch


class MiniCPM:
    def __init__(self, folder: Path, dtype=torch.float32):
        cfg = json.loads((folder / "config.json").read_text())
        self.cfg = cfg
        self.dtype = dtype
        sd = load_file(str(folder / "model.safetensors"))
        assert all(t.dtype == torch.bfloat16 for t in sd.values())
        self.w = {k: v.to(dtype) for k, v in sd.items()}
        self.hidden = cfg["hidden_size"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg["num_key_value_heads"]
        self.hd = self.hidden // self.n_heads
        self.eps = cfg["rms_norm_eps"]
        self.theta = cfg["rope_theta"]
        self.layers = cfg["num_hidden_layers"]
        self.start = cfg["start_layer"]
        self.scale_emb = cfg["scale_emb"]
        self.res = cfg["scale_depth"] / math.sqrt(self.layers)
        assert cfg["head_type"] == "simple" and cfg["head_multi"] and not cfg["tie_word_embeddings"]
        assert not cfg.get("attention_bias") and cfg.get("rope_scaling") is None and cfg["hidden_act"] == "silu"
        # variants for the sensitivity check
        self.one_plus_w = False
        self.use_scale_emb = True
        self.residual = "full"  # or "none", "cutoff" (scale_depth / sqrt(cutoff layer))
        self.rope = "half"
        self.gqa = "interleave"  # or "tile"
        self.final_norm = True
        self.dim_model_base_div = False

    def rms(self, x, w):
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return y * ((1.0 + w) if self.one_plus_w else w)

    def rope_apply(self, x, cos, sin):  # x: [heads, n, hd]
        if self.rope == "half":
            h = self.hd // 2
            rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
            return x * cos + rot * sin
        x2 = x.reshape(*x.shape[:-1], self.hd // 2, 2)  # interleaved (GPT-J style): a mistake
        c, s = cos[..., : self.hd // 2], sin[..., : self.hd // 2]
        a, b = x2[..., 0], x2[..., 1]
        return torch.stack([a * c - b * s, a * s + b * c], dim=-1).reshape(x.shape)

    def states(self, ids, layers):
        """{c: final_norm(h after c layers)[n-1]} for c in layers."""
        W, dt = self.w, self.dtype
        n = len(ids)
        h = W["model.embed_tokens.weight"][torch.tensor(ids)]
        if self.use_scale_emb:
            h = h * self.scale_emb
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, self.hd, 2).float() / self.hd))
        ang = torch.outer(torch.arange(n, dtype=torch.float32), inv_freq)
        emb = torch.cat([ang, ang], dim=-1)
        cos, sin = emb.cos().to(dt), emb.sin().to(dt)
        causal = torch.full((n, n), float("-inf"), dtype=dt).triu(1)
        group = self.n_heads // self.n_kv
        out = {}
        for i in range(max(layers)):
            if self.residual == "full":
                r = self.res
            elif self.residual == "none":
                r = 1.0
            else:
                r = self.cfg["scale_depth"] / math.sqrt(max(layers))
            p = f"model.layers.{i}."
            x = self.rms(h, W[p + "input_layernorm.weight"])
            q = (x @ W[p + "self_attn.q_proj.weight"].T).view(n, self.n_heads, self.hd).transpose(0, 1)
            k = (x @ W[p + "self_attn.k_proj.weight"].T).view(n, self.n_kv, self.hd).transpose(0, 1)
            v = (x @ W[p + "self_attn.v_proj.weight"].T).view(n, self.n_kv, self.hd).transpose(0, 1)
            q, k = self.rope_apply(q, cos, sin), self.rope_apply(k, cos, sin)
            if self.gqa == "interleave":
                k, v = k.repeat_interleave(group, dim=0), v.repeat_interleave(group, dim=0)
            else:
                k, v = k.repeat(group, 1, 1), v.repeat(group, 1, 1)
            att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.hd) + causal, dim=-1)
            a = (att @ v).transpose(0, 1).reshape(n, self.hidden)
            h = h + (a @ W[p + "self_attn.o_proj.weight"].T) * r
            x = self.rms(h, W[p + "post_attention_layernorm.weight"])
            g = torch.nn.functional.silu(x @ W[p + "mlp.gate_proj.weight"].T)
            h = h + ((g * (x @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T) * r
            if i + 1 in layers:
                s = self.rms(h[-1], W["model.norm.weight"]) if self.final_norm else h[-1]
                if self.dim_model_base_div:
                    s = s / (self.hidden / self.cfg["dim_model_base"])
                out[i + 1] = s
        return out

    def scores(self, ids, layers, heads):
        st = self.states(ids, layers)
        return [float(st[c] @ self.w[f"lm_head.{k}.linear_head.weight"][0]) for c, k in zip(layers, heads)]


def case_lists(c):
    return [c["scores"]] if len(c["layers"]) == 1 else c["scores"]


def run_case(model, c, heads=None):
    """Score lists (one per layer) for a case; heads defaults to the recorded ones."""
    heads = c["heads"] if heads is None else heads
    per_row = [model.scores(ids, c["layers"], heads) for ids in c["input_ids"]]
    return [list(col) for col in zip(*per_row)]


def max_dev(a_lists, b_lists):
    return max(abs(x - y) for a, b in zip(a_lists, b_lists) for x, y in zip(a, b))


# --------------------------------------------------------------------------------------------


def main():
    from tokenizers import Tokenizer

    ref = json.loads((FIX / f"{NAME}.reference.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="rerank-layerwise-check-") as tmps:
        d = materialize(FIX / NAME, Path(tmps) / NAME)
        tk = Tokenizer.from_file(str(d / "tokenizer.json"))
        assert tk.truncation is None and tk.padding is None
        cfg = json.loads((d / "config.json").read_text())
        tcfg = json.loads((d / "tokenizer_config.json").read_text())
        bos = cfg["bos_token_id"]
        assert bos == ref["bos_id"] == tk.token_to_id(tcfg["bos_token"]) == 1
        assert ref["pad_id"] == tk.token_to_id(tcfg["pad_token"]) == 0 and tcfg["padding_side"] == "left"
        assert cfg.get("use_cache") is False, "FlagEmbedding 1.4.2 fails under transformers 4.57.6 otherwise"
        assert tk.encode("hi").ids[0] == bos, "post-processor adds <s> (the reranker adds its own)"
        sep = tk.encode("\n", add_special_tokens=False).ids
        assert sep == ref["sep_ids"] and tk.encode("\n", add_special_tokens=False).tokens == ["▁", "<0x0A>"]
        assert tk.encode(ref["default_prompt"], add_special_tokens=False).ids == ref["default_prompt_ids"]
        start, n_layers = cfg["start_layer"], cfg["num_hidden_layers"]
        assert (start, n_layers) == (ref["start_layer"], ref["num_hidden_layers"])
        for r in ref["rejected_cutoff_layers"]:
            assert cutoff_rule(r["cutoff_layers"], start, n_layers) is None, r

        model = MiniCPM(d)
        model64 = MiniCPM(d, torch.float64)
        print(f"== {NAME}: {n_layers} layers (heads for {start}..{n_layers}), hidden {cfg['hidden_size']}, "
              f"heads {model.n_heads}x{model.hd}, kv heads {model.n_kv}, vocab {cfg['vocab_size']}, "
              f"scale_emb {model.scale_emb}, residual x {model.res:.4f}; sep {sep}, bos {bos}")
        worst = worst64 = worst_sig = 0.0
        for c in ref["cases"]:
            prompt = ref["default_prompt"] if c["prompt"] is None else c["prompt"]
            for pair, ids in zip(c["pairs"], c["input_ids"]):
                got = layerwise_rule(tk, pair[0], pair[1], c["max_length"], c["query_max_length"], prompt, bos, sep)
                assert got == ids, (c["name"], pair)
            assert (c["layers"], c["heads"]) == tuple(cutoff_rule(c["cutoff_layers"], start, n_layers)), c["name"]
            if len(c["layers"]) == 1:
                assert all(isinstance(s, float) for s in c["scores"]), "one list -> flat"
            else:
                assert len(c["scores"]) == len(c["layers"]) and all(isinstance(s, list) for s in c["scores"])
            lists = case_lists(c)
            nlists = [c["normalized"]] if len(c["layers"]) == 1 else c["normalized"]
            dev = max_dev(run_case(model, c), lists)
            dev64 = max_dev(run_case(model64, c), lists)
            sig = max(abs(nv - 1 / (1 + math.exp(-sv))) for s, ns in zip(lists, nlists) for sv, nv in zip(s, ns))
            worst, worst64, worst_sig = max(worst, dev), max(worst64, dev64), max(worst_sig, sig)
            lens = [len(r) for r in c["input_ids"]]
            spread = ", ".join(f"L{la}/h{h} {min(s):6.2f}..{max(s):5.2f} sd {torch.tensor(s).std(unbiased=False):.2f}"
                               for la, h, s in zip(c["layers"], c["heads"], lists))
            print(f"  {c['name']:26s} cutoff {str(c['cutoff_layers']):10s} len {min(lens)}..{max(lens)}  {spread}"
                  f"  |f32-ref| {dev:.1e} |f64-ref| {dev64:.1e}")
        print(f"  max |plain-torch f32 - recorded| = {worst:.1e} (f64: {worst64:.1e}); "
              f"max |normalized - sigmoid(score)| = {worst_sig:.1e}")
        assert worst <= TOL and worst_sig < 1e-15

        # sensitivity: each classic mistake must be visible at the test tolerance
        by_name = {c["name"]: c for c in ref["cases"]}
        probes = [by_name["cutoffs-multi-512"], by_name["small-48-q12"]]  # the latter stops at layer 3
        for attr, val in [("one_plus_w", True), ("use_scale_emb", False), ("residual", "none"),
                          ("residual", "cutoff"), ("rope", "interleaved"), ("gqa", "tile"),
                          ("final_norm", False), ("dim_model_base_div", True)]:
            m = MiniCPM(d)
            setattr(m, attr, val)
            devs = [max_dev(run_case(m, c), case_lists(c)) for c in probes]
            dev = max(devs)
            print(f"  mistake {attr}={val}: max deviation " + ", ".join(
                f"{c['name']} {x:.2e}" for c, x in zip(probes, devs)))
            assert dev > 10 * TOL, (attr, dev)
        for name in ("cutoff-unsorted", "cutoff-duplicate"):  # head picked by layer, not by the list
            c = by_name[name]
            own = [la - start for la in c["layers"]]
            assert own != c["heads"]
            dev = max_dev(run_case(model, c, heads=own), case_lists(c))
            print(f"  mistake head = layer - start_layer on {name} (heads {own} instead of {c['heads']}): {dev:.2e}")
            assert dev > 10 * TOL
    print("OK")


if __name__ == "__main__":
    sys.exit(main())
