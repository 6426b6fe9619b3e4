"""BAAI BGE rerankers and embedders on a Rust engine, with the APIs you already use.

Change one import and keep your code::

    from rerank import FlagReranker            # was: from FlagEmbedding import FlagReranker
    reranker = FlagReranker("BAAI/bge-reranker-v2-m3", use_fp16=True)
    reranker.compute_score([["what is panda?", "hi"]], normalize=True)

Classes: FlagEmbedding 1.4.2's ``FlagReranker``, ``FlagLLMReranker``,
``LayerWiseFlagLLMReranker``, ``LightWeightFlagLLMReranker``, ``FlagAutoReranker`` and
``FlagModel``; sentence-transformers' ``CrossEncoder``. Models load from a folder or a Hugging
Face hub id exactly as the ``rerank`` CLI loads them (HF_HOME cache, HF_HUB_OFFLINE). CPU only:
``use_fp16``/``use_bf16`` select the engine's bf16 path.
"""

from rerank._cross_encoder import CrossEncoder
from rerank._flag import (
    FlagAutoReranker,
    FlagLLMReranker,
    FlagModel,
    FlagReranker,
    LayerWiseFlagLLMReranker,
    LightWeightFlagLLMReranker,
)
from rerank._native import NativeEmbedder, NativeReranker, __version__

__all__ = [
    "CrossEncoder",
    "FlagAutoReranker",
    "FlagLLMReranker",
    "FlagModel",
    "FlagReranker",
    "LayerWiseFlagLLMReranker",
    "LightWeightFlagLLMReranker",
    "NativeEmbedder",
    "NativeReranker",
    "__version__",
]
