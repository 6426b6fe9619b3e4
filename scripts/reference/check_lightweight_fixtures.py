#!/usr/bin/env python3
"""Independent check of tests/fixtures/gemma2-tiny* (run after make_lightweight_fixtures.py).

No transformers, no FlagEmbedding: only torch, safetensors and the bare `tokenizers` library, i.e.
what the Rust implementation has to do. Runs in either reference venv.

1. Re-derive every recorded input_ids row (and the query block length the compression uses) from
   the pair texts with `tokenizers` and LightWeightFlagLLMReranker's construction rule.
2. Re-score every row with the plain-torch forward below (one unpadded sequence, f32 on the bf16
   weights) and compare with the recorded FlagEmbedding scores (sdpa: no attention soft-cap) and
   with scores_attn_softcap (eager: soft-cap), both <= 1e-4; check normalized == sigmoid(score)
   and the return shape (flat list for one scored layer, list of lists otherwise).
3. Sensitivity: plausible mistakes must each move some score by > 1e-3.

Input ids (FlagEmbedding 1.4.2 lightweight.py, same as FlagLLMReranker except the BOS and prompt):
  q = ids("A: " + query)[:Q]     p = ids("B: " + passage)[:L]      (no special tokens, Q default L*3//4)
  sep = ids("\\n")               prompt = ids(prompt or "Predict whether passage B contains an answer to query A.")
  first = [bos] + q  (BOS always)     second = sep + p
  remove = |first| + |second| - (L + |sep| + |prompt|)
  if 0 < remove < |second|: second = second[:-remove]   (else nothing is cut: transformers refuses)
  ids = first + second + sep + prompt                    (no EOS)
  query_len  = |[bos] + q + sep|     (computed from q, the block is never searched for in ids)
  prompt_len = |sep + prompt|        passage = ids[query_len : n - prompt_len] (P >= 0 tokens)

The forward (everything f32; weights upcast from bf16), for one sequence of n ids, cutoffs C
(default [num_hidden_layers]; values outside start_layer..num_hidden_layers step layer_sep are
dropped), compress_ratio r, compress_layers K:
  h = E[ids] * f32(sqrt(hidden))          # f32 here: 8.4853 (bf16-rounded: 8.5, a mistake)
  pos = 0..n-1
  C' = sorted(set(valid C))                # the returned lists, in this order
  for idx in 0 .. max(C'):
    if idx in C':                          # scored BEFORE layer idx runs (and before compressing)
      k = rank of idx in C'                # head = rank, not layer: lm_head[k]
      score_k = cap_f * tanh(((rms(h[last]) * (1 + w_final)) . lm_head[k].linear_head.weight) / cap_f)
    if idx == max(C'): stop
    if r != 1 and idx != 0 and idx in K:   # token compression
      h = [ h[:query_len] ; group means of h[query_len : n - prompt_len], groups of r from the start,
            the last group the mean of the k <= r tokens it has ; h[n - prompt_len:] ]
      n = query_len + ceil(P / r) + prompt_len; P = ceil(P / r); pos = 0..n-1 (renumbered)
    layer idx (Gemma-2 block, sandwich norms):
      x = rms(h) * (1 + w_input_layernorm)              rms(x) = x * rsqrt(mean(x^2) + eps)
      q, k, v = x Wq^T, x Wk^T, x Wv^T                   # heads x head_dim (from config), GQA:
                                                         # query head j uses KV head j // (H / H_kv)
      q, k = rope(q, pos), rope(k, pos)                  # rotate-half, inv_freq_i = theta^(-2i/head_dim)
      s = q k^T * query_pre_attn_scalar^-0.5             # NOT head_dim^-0.5
      [eager only: s = cap_a * tanh(s / cap_a)]          # attn_logit_softcapping; FlagEmbedding
                                                         # runs sdpa, which skips it
      key j visible from query i iff j <= i, and, on layers with even idx (0, 2, 4, ...),
        i - sliding_window < j                           # window of W keys including i itself
      h = h + rms(softmax(s) v  Wo^T) * (1 + w_post_attention_layernorm)
      x = rms(h) * (1 + w_pre_feedforward_layernorm)
      h = h + rms((gelu_tanh(x Wg^T) * (x Wu^T)) Wd^T) * (1 + w_post_feedforward_layernorm)
  (the cutoff num_hidden_layers is scored after the last layer, with the same final norm)
"""

import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_llm_fixtures as mlf  # noqa: E402  (FIX, materialize: no transformers needed)

torch.set_num_threads(1)

TOL = 1e-4
NAME = "gemma2-tiny"


# --------------------------------------------------------------------------------------------
# ids


def lightweight_rule(tk, q, p, L, Q, prompt, bos, sep):
    enc = lambda s: tk.encode(s, add_special_tokens=False).ids  # noqa: E731
    qi = enc("A: " + q)[:Q]
    pi = enc("B: " + p)[:L]
    pr = enc(prompt)
    first = [bos] + qi
    second = sep + pi
    remove = len(first) + len(second) - (L + len(sep) + len(pr))
    if 0 < remove < len(second):
        second = second[:-remove]
    return first + second + sep + pr, len(first) + len(sep), len(sep) + len(pr)


# --------------------------------------------------------------------------------------------
# the model, in plain torch


class Gemma2Lightweight:
    def __init__(self, folder: Path, dtype=torch.float32):
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["model_type"] == "cost_wise_gemma" and cfg["layer_wise"] is True
        assert cfg["hidden_activation"] == "gelu_pytorch_tanh"
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
        self.window = cfg["sliding_window"]
        self.cap_attn = cfg["attn_logit_softcapping"]
        self.cap_final = cfg["final_logit_softcapping"]
        self.usable = list(range(cfg["start_layer"], self.layers + 1, cfg["layer_sep"]))
        self.heads = [self.w[f"lm_head.{i}.linear_head.weight"][0] for i in range(len(self.usable))]
        assert not any(k.startswith("lm_head.") and k.count(".") != 3 for k in self.w)
        # variants for the sensitivity check (the correct choice first)
        self.scale = cfg["query_pre_attn_scalar"] ** -0.5
        self.one_plus_w = True
        self.sandwich = True
        self.sliding_layers = "even"
        self.window_off_by_one = False
        self.head_by = "rank"
        self.renumber = True
        self.last_group = "mean"
        self.compress_at = "before"
        self.normalizer_dtype = dtype
        self.final_cap = True
        self.gelu = "tanh"

    def rms(self, x, w):
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return y * ((1.0 + w) if self.one_plus_w else w)

    def rope(self, x, pos):  # x: [heads, n, hd]; rotate-half
        dt = self.dtype
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, self.hd, 2, dtype=torch.int64).float() / self.hd))
        ang = pos.float()[:, None] * inv_freq[None, :]
        emb = torch.cat([ang, ang], dim=-1)
        cos, sin = emb.cos().to(dt), emb.sin().to(dt)
        h = self.hd // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
        return x * cos + rot * sin

    def layer(self, i, h, pos, attn_softcap):
        W, n = self.w, h.shape[0]
        p = f"model.layers.{i}."
        x = self.rms(h, W[p + "input_layernorm.weight"])
        q = (x @ W[p + "self_attn.q_proj.weight"].T).view(n, self.n_heads, self.hd).transpose(0, 1)
        k = (x @ W[p + "self_attn.k_proj.weight"].T).view(n, self.n_kv, self.hd).transpose(0, 1)
        v = (x @ W[p + "self_attn.v_proj.weight"].T).view(n, self.n_kv, self.hd).transpose(0, 1)
        q, k = self.rope(q, pos), self.rope(k, pos)
        group = self.n_heads // self.n_kv
        k = k.repeat_interleave(group, dim=0)  # query head j -> KV head j // group
        v = v.repeat_interleave(group, dim=0)
        s = q @ k.transpose(1, 2) * self.scale
        if attn_softcap:
            s = self.cap_attn * torch.tanh(s / self.cap_attn)
        ii = torch.arange(n)[:, None]
        jj = torch.arange(n)[None, :]
        visible = jj <= ii
        sliding = (i % 2 == 0) if self.sliding_layers == "even" else (i % 2 == 1)
        if sliding:
            visible &= (jj >= ii - self.window) if self.window_off_by_one else (jj > ii - self.window)
        s = s.masked_fill(~visible, float("-inf"))
        a = (torch.softmax(s, dim=-1) @ v).transpose(0, 1).reshape(n, self.n_heads * self.hd)
        a = a @ W[p + "self_attn.o_proj.weight"].T
        h = h + (self.rms(a, W[p + "post_attention_layernorm.weight"]) if self.sandwich else a)
        x = self.rms(h, W[p + "pre_feedforward_layernorm.weight"])
        g = torch.nn.functional.gelu(x @ W[p + "mlp.gate_proj.weight"].T,
                                     approximate="tanh" if self.gelu == "tanh" else "none")
        m = (g * (x @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
        return h + (self.rms(m, W[p + "post_feedforward_layernorm.weight"]) if self.sandwich else m)

    def compress(self, h, pos, query_len, prompt_len, r):
        n = h.shape[0]
        P = n - query_len - prompt_len
        assert P >= 0
        passage = h[query_len:n - prompt_len]
        groups = []
        for g0 in range(0, P, r):
            chunk = passage[g0:g0 + r]
            if self.last_group == "mean":
                groups.append(chunk.mean(0))
            else:  # mistake: divide the last partial group by r
                groups.append(chunk.sum(0) / r)
        mid = torch.stack(groups) if groups else h[:0]
        new = torch.cat([h[:query_len], mid, h[n - prompt_len:]])
        if self.renumber:
            new_pos = torch.arange(new.shape[0])
        else:  # mistake: keep the first position of each kept token / group
            new_pos = torch.cat([pos[:query_len], pos[query_len:n - prompt_len][::r], pos[n - prompt_len:]])
        return new, new_pos

    def scores(self, ids, query_len, prompt_len, cutoffs, ratio, compress_layers, attn_softcap=False):
        """Returns ([layer], [score]) for the scored layers, in the order of the returned lists."""
        W = self.w
        req = [self.layers] if cutoffs is None else cutoffs
        layers = sorted(set(c for c in req if c in self.usable))
        normalizer = torch.tensor(self.hidden ** 0.5, dtype=self.normalizer_dtype).to(self.dtype)
        h = W["model.embed_tokens.weight"][torch.tensor(ids)] * normalizer
        pos = torch.arange(len(ids))
        out = []
        for idx in range(max(layers) + 1):
            if idx in layers:
                k = layers.index(idx) if self.head_by == "rank" else self.usable.index(idx)
                raw = float(self.rms(h[-1], W["model.norm.weight"]) @ self.heads[k])
                out.append(self.cap_final * math.tanh(raw / self.cap_final) if self.final_cap else raw)
            if idx == max(layers):
                break
            do = ratio != 1 and idx != 0 and idx in compress_layers
            if do and self.compress_at == "before":
                h, pos = self.compress(h, pos, query_len, prompt_len, ratio)
            h = self.layer(idx, h, pos, attn_softcap)
            if do and self.compress_at == "after":  # mistake: compress after layer idx
                h, pos = self.compress(h, pos, query_len, prompt_len, ratio)
        return layers, out


# --------------------------------------------------------------------------------------------


def case_scores(model, c, attn_softcap=False):
    """Per returned list, per pair."""
    per_pair = [model.scores(ids, ql, c["prompt_length"], c["cutoff_layers"], c["compress_ratio"],
                             c["compress_layers"], attn_softcap)
                for ids, ql in zip(c["input_ids"], c["query_lengths"])]
    layers = per_pair[0][0]
    return layers, [[s[1][k] for s in per_pair] for k in range(len(layers))]


def as_lists(x, n_layers):
    if n_layers == 1:
        assert all(isinstance(v, float) for v in x), "one scored layer -> flat list"
        return [x]
    assert len(x) == n_layers and all(isinstance(v, list) for v in x), "several -> list of lists"
    return x


def max_dev(a_lists, b_lists):
    return max(abs(a - b) for x, y in zip(a_lists, b_lists) for a, b in zip(x, y))


def main():
    from tokenizers import Tokenizer

    ref = json.loads((mlf.FIX / f"{NAME}.reference.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="rerank-lightweight-check-") as tmps:
        d = mlf.materialize(mlf.FIX / NAME, Path(tmps) / NAME)
        tk = Tokenizer.from_file(str(d / "tokenizer.json"))
        assert tk.truncation is None and tk.padding is None
        cfg = json.loads((d / "config.json").read_text())
        bos = cfg["bos_token_id"]
        assert bos == ref["bos_id"] and cfg["pad_token_id"] == ref["pad_id"]
        sep = tk.encode("\n", add_special_tokens=False).ids
        assert sep == ref["sep_ids"]
        assert tk.encode(ref["default_prompt"], add_special_tokens=False).ids == ref["default_prompt_ids"]

        model = Gemma2Lightweight(d)
        print(f"== {NAME}: {cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, heads "
              f"{cfg['num_attention_heads']}x{cfg['head_dim']}, kv {cfg['num_key_value_heads']}, "
              f"query_pre_attn_scalar {cfg['query_pre_attn_scalar']}, window {cfg['sliding_window']}, caps "
              f"attn {cfg['attn_logit_softcapping']} final {cfg['final_logit_softcapping']}, score heads "
              f"for layers {model.usable}")
        worst = worst_cap = worst_sig = 0.0
        for c in ref["cases"]:
            prompt = ref["default_prompt"] if c["prompt"] is None else c["prompt"]
            for pair, ids, ql in zip(c["pairs"], c["input_ids"], c["query_lengths"]):
                got, gql, gpl = lightweight_rule(tk, pair[0], pair[1], c["max_length"], c["query_max_length"],
                                                 prompt, bos, sep)
                assert (got, gql, gpl) == (ids, ql, c["prompt_length"]), (c["name"], pair)
            layers, mine = case_scores(model, c)
            assert layers == c["layers"] and c["heads"] == list(range(len(layers))), c["name"]
            rec = as_lists(c["scores"], len(layers))
            rec_n = as_lists(c["normalized"], len(layers))
            rec_cap = as_lists(c["scores_attn_softcap"], len(layers))
            _, mine_cap = case_scores(model, c, attn_softcap=True)
            dev, dev_cap = max_dev(mine, rec), max_dev(mine_cap, rec_cap)
            sig = max(abs(nv - float(1 / (1 + np.exp(-sv))))  # FlagEmbedding's sigmoid (numpy exp)
                       for x, y in zip(rec, rec_n) for sv, nv in zip(x, y))
            worst, worst_cap, worst_sig = max(worst, dev), max(worst_cap, dev_cap), max(worst_sig, sig)
            rng = " ".join(f"L{la}:{min(x):+.2f}..{max(x):+.2f}" for la, x in zip(layers, rec))
            print(f"  {c['name']:34s} {rng:40s} |sdpa| {dev:.1e}  |eager+cap| {dev_cap:.1e}")
        print(f"  max |plain torch - recorded|: sdpa {worst:.1e}, eager with soft-cap {worst_cap:.1e}; "
              f"max |normalized - sigmoid(score)| = {worst_sig:.1e}")
        assert worst <= TOL and worst_cap <= TOL and worst_sig == 0.0

        # sensitivity: each plausible mistake must be visible at the test tolerance
        by = {c["name"]: c for c in ref["cases"]}
        hd_scale = cfg["head_dim"] ** -0.5
        mistakes = [
            ("one_plus_w", False, "default-512"),
            ("sandwich", False, "default-512"),
            ("scale", hd_scale, "default-512"),
            ("sliding_layers", "odd", "default-512"),
            ("window_off_by_one", True, "default-512"),
            ("normalizer_dtype", torch.bfloat16, "default-512"),
            ("gelu", "erf", "default-512"),
            ("final_cap", False, "default-512"),
            ("head_by", "layer", "default-512"),
            ("head_by", "layer", "multi-cut-r2-c3"),
            ("renumber", False, "cut6-r2-c3"),
            ("last_group", "sum/r", "cut6-r4-c2-4"),
            ("compress_at", "after", "cut6-r2-c3"),
        ]
        for attr, val, name in mistakes:
            m = Gemma2Lightweight(d)
            setattr(m, attr, val)
            c = by[name]
            layers, mine = case_scores(m, c)
            dev = max_dev(mine, as_lists(c["scores"], len(layers)))
            print(f"  mistake {attr}={val}: max deviation on {name} {dev:.2e}")
            assert dev > 10 * TOL, (attr, dev)
        c = by["default-512"]
        _, capped = case_scores(model, c, attn_softcap=True)
        dev = max_dev(capped, as_lists(c["scores"], 1))
        print(f"  mistake: attention soft-cap applied (eager) vs FlagEmbedding's sdpa: {dev:.2e}")
        assert dev > 10 * TOL
    print("OK")


if __name__ == "__main__":
    main()
