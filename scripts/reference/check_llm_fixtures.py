#!/usr/bin/env python3
"""Independent check of tests/fixtures/gemma-tiny* (run after make_llm_fixtures.py).

No transformers, no FlagEmbedding: only torch, safetensors and the bare `tokenizers` library, i.e.
what the Rust implementation has to do.

1. Re-derive every recorded input_ids row from the pair texts with `tokenizers` (tokenizer.json)
   and FlagLLMReranker's construction rule, applied by hand.
2. Re-score every row with a plain-torch Gemma forward (below; unpadded, positions 0..n-1, f32
   computations on the bf16 weights) and compare with the recorded FlagEmbedding scores (<= 1e-4);
   check normalized == sigmoid(score).
3. Sensitivity: the usual mistakes (exact erf GELU, RMSNorm `* w` instead of `* (1 + w)`,
   interleaved RoPE, bf16-rounded embedding normalizer) must each move some score by > 1e-3.

The Gemma forward, for one sequence of n ids (everything f32; weights upcast from bf16):
  h      = E[ids] * f32(sqrt(hidden))          # the normalizer is a tensor in the *model* dtype:
                                               # in bf16/f16 inference it is rounded (sqrt(2048) ->
                                               # 45.25, sqrt(3072) -> 55.5); in f32 it is f32(sqrt)
  per layer:
    x    = rms(h) * (1 + w_in)                 # rms(x) = x * rsqrt(mean(x^2) + eps), in f32
    q,k,v = x Wq^T, x Wk^T, x Wv^T             # heads x head_dim (head_dim from config, 4*32 != 96)
    q,k  = rope(q), rope(k)                    # rotate-half: pairs (i, i + d/2), not (2i, 2i+1);
                                               # inv_freq_i = 1 / theta^(2i/d), d = head_dim
    a    = softmax(q k^T * head_dim^-0.5 + causal) v   # MQA: the single K/V head serves all heads
    h    = h + concat_heads(a) Wo^T
    x    = rms(h) * (1 + w_post)
    h    = h + (gelu_tanh(x Wg^T) * (x Wu^T)) Wd^T
  score  = (rms(h[n-1]) * (1 + w_final)) . E[yes]  # tied LM head: one dot product
"""

import gzip
import json
import math
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_llm_fixtures as mlf  # noqa: E402

torch.set_num_threads(1)

TOL = 1e-4


# --------------------------------------------------------------------------------------------
# ids


def llm_rule(tk, q, p, L, qml, prompt, bos, pad, sep):
    """FlagLLMReranker (FlagEmbedding 1.4.2, transformers 4.x) on bare tokenizers output."""
    enc = lambda s: tk.encode(s, add_special_tokens=False).ids  # noqa: E731
    qi = enc("A: " + q)[:qml]
    pi = enc("B: " + p)[:L]
    pr = enc(prompt)
    first = ([bos] if bos != pad else []) + qi
    second = sep + pi
    remove = len(first) + len(second) - (L + len(sep) + len(pr))
    if remove > 0 and len(second) > remove:
        second = second[:-remove]
    # else: fits, or refused (transformers logs an error and cuts nothing)
    return first + second + sep + pr


# --------------------------------------------------------------------------------------------
# the model, in plain torch


class Gemma:
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
        self.hd = cfg["head_dim"]
        self.eps = cfg["rms_norm_eps"]
        self.theta = cfg["rope_theta"]
        self.layers = cfg["num_hidden_layers"]
        # variants for the sensitivity check
        self.gelu = "tanh"
        self.one_plus_w = True
        self.rope = "half"
        self.normalizer_dtype = dtype

    def rms(self, x, w):
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return y * ((1.0 + w) if self.one_plus_w else w)

    def rope_apply(self, x, cos, sin):  # x: [heads, n, hd]
        if self.rope == "half":
            h = self.hd // 2
            rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
            return x * cos + rot * sin
        # interleaved (GPT-J style): a deliberate mistake
        x2 = x.reshape(*x.shape[:-1], self.hd // 2, 2)
        c, s = cos[..., : self.hd // 2], sin[..., : self.hd // 2]
        a, b = x2[..., 0], x2[..., 1]
        return torch.stack([a * c - b * s, a * s + b * c], dim=-1).reshape(x.shape)

    def score(self, ids, yes_id):
        W, dt = self.w, self.dtype
        n = len(ids)
        E = W["model.embed_tokens.weight"]
        normalizer = torch.tensor(self.hidden ** 0.5, dtype=self.normalizer_dtype).to(dt)
        h = E[torch.tensor(ids)] * normalizer
        # RoPE tables, as transformers computes them: inv_freq in f32, angle = inv_freq * pos in f32
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, self.hd, 2, dtype=torch.int64).float() / self.hd))
        ang = torch.arange(n, dtype=torch.float32)[:, None] * inv_freq[None, :]
        emb = torch.cat([ang, ang], dim=-1)
        cos, sin = emb.cos().to(dt), emb.sin().to(dt)
        causal = torch.full((n, n), float("-inf"), dtype=dt).triu(1)
        group = self.n_heads // self.n_kv
        for i in range(self.layers):
            p = f"model.layers.{i}."
            x = self.rms(h, W[p + "input_layernorm.weight"])
            q = (x @ W[p + "self_attn.q_proj.weight"].T).view(n, self.n_heads, self.hd).transpose(0, 1)
            k = (x @ W[p + "self_attn.k_proj.weight"].T).view(n, self.n_kv, self.hd).transpose(0, 1)
            v = (x @ W[p + "self_attn.v_proj.weight"].T).view(n, self.n_kv, self.hd).transpose(0, 1)
            q, k = self.rope_apply(q, cos, sin), self.rope_apply(k, cos, sin)
            k = k.repeat_interleave(group, dim=0)
            v = v.repeat_interleave(group, dim=0)
            att = torch.softmax(q @ k.transpose(1, 2) * self.hd ** -0.5 + causal, dim=-1)
            a = (att @ v).transpose(0, 1).reshape(n, self.n_heads * self.hd)
            h = h + a @ W[p + "self_attn.o_proj.weight"].T
            x = self.rms(h, W[p + "post_attention_layernorm.weight"])
            g = x @ W[p + "mlp.gate_proj.weight"].T
            g = torch.nn.functional.gelu(g, approximate="tanh" if self.gelu == "tanh" else "none")
            h = h + (g * (x @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
        last = self.rms(h[-1], W["model.norm.weight"])
        return float(last @ E[yes_id])


# --------------------------------------------------------------------------------------------


def main():
    from tokenizers import Tokenizer

    ref = json.loads((mlf.FIX / f"{mlf.NAME}.reference.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="rerank-llm-check-") as tmps:
        d = mlf.materialize(mlf.FIX / mlf.NAME, Path(tmps) / mlf.NAME)
        tk = Tokenizer.from_file(str(d / "tokenizer.json"))
        assert tk.truncation is None and tk.padding is None
        cfg = json.loads((d / "config.json").read_text())
        yes_id, bos, pad = ref["yes_id"], cfg["bos_token_id"], cfg["pad_token_id"]
        assert tk.encode("Yes", add_special_tokens=False).ids == [yes_id]
        assert tk.encode("hi").ids[0] == bos, "post-processor adds <bos> (not used by the reranker)"
        sep = tk.encode("\n", add_special_tokens=False).ids
        assert sep == ref["sep_ids"]
        assert tk.encode(ref["default_prompt"], add_special_tokens=False).ids == ref["default_prompt_ids"]

        model = Gemma(d)
        model64 = Gemma(d, torch.float64)
        print(f"== {mlf.NAME}: {cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, "
              f"heads {cfg['num_attention_heads']}x{cfg['head_dim']}, kv heads {cfg['num_key_value_heads']}, "
              f"vocab {cfg['vocab_size']}; yes {yes_id}, sep {sep}, bos {bos}")
        worst = worst64 = worst_sig = 0.0
        for c in ref["cases"]:
            prompt = ref["default_prompt"] if c["prompt"] is None else c["prompt"]
            for pair, ids in zip(c["pairs"], c["input_ids"]):
                got = llm_rule(tk, pair[0], pair[1], c["max_length"], c["query_max_length"], prompt,
                               bos, pad, sep)
                assert got == ids, (c["name"], pair)
            s = torch.tensor(c["scores"])
            mine = [model.score(ids, yes_id) for ids in c["input_ids"]]
            mine64 = [model64.score(ids, yes_id) for ids in c["input_ids"]]
            dev = max(abs(a - b) for a, b in zip(mine, c["scores"]))
            dev64 = max(abs(a - b) for a, b in zip(mine64, c["scores"]))
            sig = max(abs(nv - 1 / (1 + math.exp(-sv))) for sv, nv in zip(c["scores"], c["normalized"]))
            worst, worst64, worst_sig = max(worst, dev), max(worst64, dev64), max(worst_sig, sig)
            lens = [len(r) for r in c["input_ids"]]
            print(f"  {c['name']:26s} std {s.std(unbiased=False):5.2f} min {s.min():6.2f} max {s.max():6.2f} "
                  f"len {min(lens)}..{max(lens)}  |torch f32 - ref| {dev:.1e}  |f64 - ref| {dev64:.1e}")
        print(f"  max |plain-torch f32 - recorded| = {worst:.1e} (f64: {worst64:.1e}); "
              f"max |normalized - sigmoid(score)| = {worst_sig:.1e}")
        assert worst <= TOL and worst_sig == 0.0

        # sensitivity: each classic mistake must be visible at the test tolerance
        c0 = ref["cases"][0]
        for attr, val in [("gelu", "erf"), ("one_plus_w", False), ("rope", "interleaved"),
                          ("normalizer_dtype", torch.bfloat16)]:
            m = Gemma(d)
            setattr(m, attr, val)
            dev = max(abs(m.score(ids, yes_id) - s) for ids, s in zip(c0["input_ids"], c0["scores"]))
            print(f"  mistake {attr}={val}: max deviation on {c0['name']} {dev:.2e}")
            assert dev > 10 * TOL, (attr, dev)
    print("OK")


if __name__ == "__main__":
    main()
