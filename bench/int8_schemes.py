#!/usr/bin/env python3
"""How far int8 quantisation schemes can go on the real all-MiniLM-L6-v2 accuracy check.

Simulates ("fake-quantises") each scheme in float64 PyTorch on the same texts and with the
same metric as `crates/rerank/tests/dtype.rs`: sentence embeddings (mean-pooled, normalised)
of the 10 MS MARCO sample queries and their passages, the smallest cosine to the unquantised
embedding, and the share of unchanged top-10 positions per query. Only the encoder's linear
layers are quantised, as in rerank's int8 path; everything else stays exact.

    python bench/int8_schemes.py "$(scripts/fetch-minilm.sh)"

Needs torch and transformers (the reference venv, `scripts/reference/README.md`). Takes a
few minutes on 2 cores. Schemes:
  rerank          weights per output channel (symmetric, 127 levels), activations per token
                  (asymmetric u8): what `--dtype int8` runs
  weights-only    the same weights, f32 activations
  acts-only       f32 weights, the same activations
  group-G         weights and activations with one scale per G input channels (a kernel that
                  rescales its int32 sums every G values)
  only-NAME       rerank's scheme on one kind of projection only, the rest exact
"""

import argparse
import json
from pathlib import Path

import torch
from transformers import BertModel, PreTrainedTokenizerFast

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "tests/fixtures/retrieval/msmarco-10q.jsonl"
KINDS = ("attention.self.query", "attention.self.key", "attention.self.value",
         "attention.output.dense", "intermediate.dense", "output.dense")


def quantise_weights(w, group=None):
    """Symmetric int8 per output channel (or per `group` input channels), dequantised."""
    rows, cols = w.shape
    g = w.reshape(rows, cols // group, group) if group else w.reshape(rows, 1, cols)
    scale = g.abs().amax(-1, keepdim=True) / 127
    scale[scale == 0] = 1
    return ((g / scale).round().clamp(-127, 127) * scale).reshape(rows, cols)


def quantise_acts(x, group=None):
    """Asymmetric u8 per token (or per `group` channels) over [min(lo, 0), max(hi, 0)]."""
    shape = x.shape
    g = x.reshape(-1, shape[-1] // group, group) if group else x.reshape(-1, 1, shape[-1])
    lo = g.amin(-1, keepdim=True).clamp(max=0)
    hi = g.amax(-1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / 255
    scale[scale == 0] = 1
    zero = (-lo / scale).round()
    return (((g / scale + zero).round().clamp(0, 255) - zero) * scale).reshape(shape)


def kind_of(name):
    if name.endswith("output.dense") and "attention" not in name:
        return "output.dense"
    return next(k for k in KINDS if name.endswith(k))


def schemes():
    yield "rerank", lambda kind: (True, True, None)
    yield "weights-only", lambda kind: (True, False, None)
    yield "acts-only", lambda kind: (False, True, None)
    for g in (128, 64, 32):
        yield f"group-{g}", lambda kind, g=g: (True, True, g)
    for k in KINDS:
        yield f"only-{k}", lambda kind, k=k: (kind == k, kind == k, None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path, help="all-MiniLM-L6-v2 folder (scripts/fetch-minilm.sh)")
    args = ap.parse_args()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(args.model / "tokenizer.json"))
    model = BertModel.from_pretrained(args.model).eval().double()
    groups = []
    for line in SAMPLES.read_text().splitlines():
        row = json.loads(line)
        texts = [row["query"], *row["pos"], *row["neg"]]
        groups.append([tok(t, truncation=True, max_length=256, return_tensors="pt") for t in texts])
    linears = {n: (m, m.weight.data.clone()) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and "encoder" in n}

    def embed():
        out = []
        with torch.no_grad():
            for texts in groups:
                vecs = []
                for e in texts:
                    h = model(input_ids=e["input_ids"], token_type_ids=e["token_type_ids"]).last_hidden_state[0]
                    v = h.sum(0)
                    vecs.append(v / v.norm())
                out.append(torch.stack(vecs))
        return out

    def configure(scheme):
        for name, (mod, w) in linears.items():
            quant_w, quant_a, group = scheme(kind_of(name))
            mod.weight.data = quantise_weights(w, group) if quant_w else w.clone()

            def forward(x, mod=mod, quant_a=quant_a, group=group):
                x = quantise_acts(x, group) if quant_a else x
                return torch.nn.functional.linear(x, mod.weight, mod.bias)
            mod.forward = forward

    def top10(e):
        return torch.argsort(-(e[1:] @ e[0]), stable=True)[:10]

    configure(lambda kind: (False, False, None))
    exact = embed()
    gaps = []
    for e in exact:
        s = torch.sort(e[1:] @ e[0], descending=True).values[:11]
        gaps += (s[:-1] - s[1:]).tolist()
    gaps.sort()
    print(f"gaps between adjacent top-10 similarities: min {gaps[0]:.1e}, "
          f"10th percentile {gaps[len(gaps) // 10]:.1e}, median {gaps[len(gaps) // 2]:.1e}")
    print(f"{'scheme':32} {'min cosine':>10} {'top-10 kept':>11}")
    for label, scheme in schemes():
        configure(scheme)
        got = embed()
        cos = min((a * b).sum(1).min().item() for a, b in zip(exact, got))
        kept = sum((top10(a) == top10(b)).sum().item() for a, b in zip(exact, got))
        print(f"{label:32} {cos:10.6f} {100 * kept / (10 * len(exact)):10.0f}%", flush=True)


if __name__ == "__main__":
    main()
