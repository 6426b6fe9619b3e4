"""FlagEmbedding's FlagModel: the committed FlagModel vectors (≤ 1e-4), `rerank embed`'s
(≤ 1e-6), numpy float32 arrays (one vector for a single string)."""

import json

import numpy as np
import pytest

from rerank import FlagModel


def test_flagmodel_equals_flagembedding_and_rust(model_dir, reference, cli):
    ref = reference("embeddings/xlmr-tiny-flagmodel.json")
    path = model_dir("xlmr-tiny")
    model = FlagModel(path, query_instruction_for_retrieval=ref["query_instruction"], use_fp16=False)
    queries = model.encode_queries(ref["queries"])
    assert isinstance(queries, np.ndarray) and queries.dtype == np.float32
    assert queries.shape == (len(ref["queries"]), len(ref["query_embeddings"][0]))
    assert np.max(np.abs(queries - np.asarray(ref["query_embeddings"]))) <= 1e-4
    corpus = model.encode_corpus(ref["passages"])
    assert np.max(np.abs(corpus - np.asarray(ref["passage_embeddings"]))) <= 1e-4
    plain = model.encode(ref["passages"])
    assert np.max(np.abs(plain - np.asarray(ref["plain_embeddings"]))) <= 1e-4
    rust = np.asarray(cli(["embed", "--model", path], ref["passages"]))
    assert np.max(np.abs(plain - rust)) <= 1e-6
    one = model.encode(ref["passages"][0])
    assert one.shape == (plain.shape[1],) and np.allclose(one, plain[0], atol=1e-6)
    same = model.encode(["x"], instruction=ref["query_instruction"])
    assert np.allclose(same, model.encode_queries(["x"]), atol=1e-6)


def test_default_fp16_is_bf16_and_close(model_dir, reference):
    ref = reference("embeddings/xlmr-tiny-flagmodel.json")
    vectors = FlagModel(model_dir("xlmr-tiny")).encode(ref["passages"])
    cosine = np.sum(vectors * np.asarray(ref["plain_embeddings"]), axis=1)
    assert np.min(cosine) > 0.99


def test_bad_input(model_dir):
    with pytest.raises(ValueError, match="pooling_method"):
        FlagModel(model_dir("xlmr-tiny"), pooling_method="mean")
    model = FlagModel(model_dir("xlmr-tiny"))
    with pytest.raises(ValueError):
        model.encode([1, 2])
    assert model.encode([]).shape == (0, model.model.dimension)
