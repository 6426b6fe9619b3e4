"""The seeds' Python snippets, unchanged but for the import line (and the model paths and layer
numbers, which name the tiny committed fixtures instead of the real checkpoints)."""

import numpy as np


def test_seed_001_flag_reranker(model_dir):
    path = model_dir("xlmr-tiny")
    from rerank import FlagReranker  # was: from FlagEmbedding import FlagReranker

    reranker = FlagReranker(path, use_fp16=True)
    score = reranker.compute_score(["query", "passage"])
    print(score)
    score = reranker.compute_score(["query", "passage"], normalize=True)
    print(score)
    scores = reranker.compute_score([["what is panda?", "hi"], ["what is panda?", "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, is a bear species endemic to China."]])
    print(scores)
    scores = reranker.compute_score([["what is panda?", "hi"], ["what is panda?", "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, is a bear species endemic to China."]], normalize=True)
    print(scores)
    assert len(scores) == 2 and all(0 < s < 1 for s in scores)


def test_seed_002_embedder_and_chatchat_cross_encoder(model_dir):
    embedder_path, reranker_path = model_dir("xlmr-tiny"), model_dir("xlmr-tiny")
    from rerank import CrossEncoder, FlagModel  # was: FlagEmbedding / sentence_transformers

    model = FlagModel(embedder_path, query_instruction_for_retrieval="Represent this sentence for searching relevant passages: ", use_fp16=True)
    q_embeddings = model.encode_queries(["what is panda?"])
    p_embeddings = model.encode(["hi", "The giant panda is a bear species endemic to China."])
    scores = q_embeddings @ p_embeddings.T
    assert scores.shape == (1, 2)

    # LangChain-Chatchat's LangchainReranker: top-n documents by CrossEncoder.predict.
    _model = CrossEncoder(model_name=reranker_path, max_length=1024, device="cpu")
    docs = ["hi", "The giant panda is a bear species endemic to China.", "Paris is in France."]
    sentence_pairs = [[ "what is panda?", d] for d in docs]
    results = _model.predict(sentences=sentence_pairs, batch_size=32, num_workers=0, activation_fct=None, apply_softmax=False, show_progress_bar=False)
    top_k = 2 if 2 < len(results) else len(results)
    values, indices = results.topk(top_k) if hasattr(results, "topk") else (np.sort(results)[::-1][:top_k], np.argsort(-results)[:top_k])
    final_results = [docs[i] for i in indices]
    assert len(final_results) == 2 and values[0] >= values[1]


def test_seed_004_llm_rerankers(model_dir):
    gemma, minicpm, gemma2 = model_dir("gemma-tiny"), model_dir("minicpm-tiny"), model_dir("gemma2-tiny")
    from rerank import FlagLLMReranker  # was: from FlagEmbedding import FlagLLMReranker

    reranker = FlagLLMReranker(gemma, use_fp16=True)
    score = reranker.compute_score(["query", "passage"])
    scores = reranker.compute_score([["what is panda?", "hi"], ["what is panda?", "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, is a bear species endemic to China."]])
    assert len(score) == 1 and len(scores) == 2

    from rerank import LayerWiseFlagLLMReranker

    reranker = LayerWiseFlagLLMReranker(minicpm, use_fp16=True)
    score = reranker.compute_score(["query", "passage"], cutoff_layers=[6])  # real model: [28]
    assert len(score) == 1 and isinstance(score[0], float)

    from rerank import LightWeightFlagLLMReranker

    reranker = LightWeightFlagLLMReranker(gemma2, use_fp16=True)
    score = reranker.compute_score(["query", "passage"], cutoff_layers=[6], compress_ratio=2, compress_layers=[2, 4])  # real: [28], 2, [24, 40]
    assert len(score) == 1 and isinstance(score[0], float)
