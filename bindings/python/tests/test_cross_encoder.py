"""sentence-transformers' CrossEncoder: longest_first truncation to max_length, sigmoid by
default, numpy float32 (a scalar for one pair), rank()."""

import numpy as np
import pytest

from rerank import CrossEncoder


def test_predict_equals_the_longest_first_reference(model_dir, reference, cli):
    path = model_dir("xlmr-tiny")
    for case in reference("xlmr-tiny.reference.json")["cases"]:
        if case["truncation"] != "longest_first":
            continue
        model = CrossEncoder(path, max_length=case["max_length"])
        scores = model.predict(case["pairs"])
        assert isinstance(scores, np.ndarray) and scores.dtype == np.float32 and scores.shape == (len(case["pairs"]),)
        assert np.max(np.abs(scores - np.asarray(case["normalized"]))) <= 1e-4
        raw = model.predict(case["pairs"], activation_fn=lambda x: x)
        assert np.max(np.abs(raw - np.asarray(case["scores"]))) <= 1e-4
        rust = cli(["score", "--model", path, "--truncation", "longest-first", "--max-length",
                    str(case["max_length"])], case["pairs"])
        assert np.max(np.abs(raw - np.asarray(rust))) <= 1e-6


def test_single_pair_is_a_scalar_and_rank_sorts(model_dir):
    model = CrossEncoder(model_name=model_dir("xlmr-tiny"), max_length=512)
    one = model.predict(["what is panda?", "hi"])
    assert isinstance(one, np.floating) and one.dtype == np.float32
    docs = ["hi", "The giant panda is a bear.", "Paris"]
    ranked = model.rank("what is panda?", docs, top_k=2, return_documents=True)
    scores = model.predict([["what is panda?", d] for d in docs])
    assert [r["corpus_id"] for r in ranked] == list(np.argsort(-scores)[:2])
    assert ranked[0]["text"] == docs[ranked[0]["corpus_id"]] and ranked[0]["score"] == scores[ranked[0]["corpus_id"]]
    assert "text" not in model.rank("what is panda?", docs)[0]
    # sentence-transformers' old keyword names still work (LangChain-Chatchat passes them).
    assert model.predict(sentences=[["a", "b"]], batch_size=8, num_workers=0, activation_fct=None,
                         show_progress_bar=False).shape == (1,)
    assert model.predict([["a", "b"]], convert_to_numpy=False) == [float(model.predict([["a", "b"]])[0])]


def test_bad_input(model_dir):
    model = CrossEncoder(model_dir("xlmr-tiny"))
    with pytest.raises(ValueError):
        model.predict([["only one"]])
    with pytest.raises(ValueError, match="GPU"):
        CrossEncoder(model_dir("xlmr-tiny"), device="cuda")
    with pytest.raises(FileNotFoundError):
        CrossEncoder("/no/such/model")
