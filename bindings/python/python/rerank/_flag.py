"""FlagEmbedding 1.4.2's reranker and embedder classes, with its signatures and return types,
on the Rust engine."""

import contextlib
import os
from typing import Any, List, Optional, Union

import numpy as np

from rerank._common import (
    Pair,
    as_pairs,
    check_devices,
    dtype_for,
    instruct,
    with_instructions,
)
from rerank._native import NativeEmbedder, NativeReranker


@contextlib.contextmanager
def _hub_cache(cache_dir: Optional[str]):
    """FlagEmbedding's ``cache_dir``: the hub cache to read and download into while loading."""
    if cache_dir is None:
        yield
        return
    old = os.environ.get("HF_HUB_CACHE")
    os.environ["HF_HUB_CACHE"] = str(cache_dir)
    try:
        yield
    finally:
        if old is None:
            del os.environ["HF_HUB_CACHE"]
        else:
            os.environ["HF_HUB_CACHE"] = old


def _load_reranker(model: str, dtype: str, cache_dir: Optional[str], kwargs: dict) -> NativeReranker:
    threads = int(kwargs.pop("threads", 0))
    softcap = bool(kwargs.pop("attention_softcap", False))
    with _hub_cache(cache_dir):
        return NativeReranker(str(model), dtype=dtype, threads=threads, attention_softcap=softcap)


class FlagReranker:
    """A cross-encoder reranker (bge-reranker-base, -large, -v2-m3; BERT cross-encoders):
    ``compute_score(pairs)`` returns one raw logit per pair, or its sigmoid with ``normalize``."""

    def __init__(
        self,
        model_name_or_path: str,
        use_fp16: bool = False,
        query_instruction_for_rerank: Optional[str] = None,
        query_instruction_format: str = "{}{}",
        passage_instruction_for_rerank: Optional[str] = None,
        passage_instruction_format: str = "{}{}",
        trust_remote_code: bool = False,
        cache_dir: Optional[str] = None,
        devices: Optional[Union[str, List[str], List[int]]] = None,
        batch_size: int = 128,
        query_max_length: Optional[int] = None,
        max_length: int = 512,
        normalize: bool = False,
        **kwargs: Any,
    ):
        check_devices(devices)
        dtype = dtype_for(use_fp16, kwargs.pop("use_bf16", False))
        self.model = _load_reranker(model_name_or_path, dtype, cache_dir, kwargs)
        if self.model.is_llm:
            raise ValueError(
                f"{model_name_or_path} is an LLM reranker ({self.model.architecture}): use "
                "FlagLLMReranker, LayerWiseFlagLLMReranker or LightWeightFlagLLMReranker"
            )
        self.model_name_or_path = model_name_or_path
        self.query_instruction_for_rerank = query_instruction_for_rerank
        self.query_instruction_format = query_instruction_format
        self.passage_instruction_for_rerank = passage_instruction_for_rerank
        self.passage_instruction_format = passage_instruction_format
        self.batch_size = batch_size
        self.query_max_length = query_max_length
        self.max_length = max_length
        self.normalize = normalize
        self.kwargs = kwargs

    def get_detailed_inputs(self, sentence_pairs: Any) -> List[List[str]]:
        """The pairs with the query and passage instructions applied."""
        pairs = with_instructions(
            as_pairs(sentence_pairs),
            self.query_instruction_for_rerank,
            self.query_instruction_format,
            self.passage_instruction_for_rerank,
            self.passage_instruction_format,
        )
        return [[q, p] for q, p in pairs]

    def _score(self, sentence_pairs: Any, batch_size, query_max_length, max_length, normalize, **extra):
        pairs = [tuple(p) for p in self.get_detailed_inputs(sentence_pairs)]
        return self.model.compute_score(
            pairs,
            normalize=self.normalize if normalize is None else bool(normalize),
            max_length=self.max_length if max_length is None else int(max_length),
            query_max_length=self.query_max_length if query_max_length is None else int(query_max_length),
            batch_size=self.batch_size if batch_size is None else int(batch_size),
            **extra,
        )

    def compute_score(
        self,
        sentence_pairs: Union[List[Pair], Pair],
        batch_size: Optional[int] = None,
        query_max_length: Optional[int] = None,
        max_length: Optional[int] = None,
        normalize: Optional[bool] = None,
        **kwargs: Any,
    ) -> List[float]:
        """One score per pair, in order (a one-element list for a single pair)."""
        return self._score(sentence_pairs, batch_size, query_max_length, max_length, normalize)[0]


class FlagLLMReranker(FlagReranker):
    """bge-reranker-v2-gemma: the logit of ``Yes`` after a prompt around each pair."""

    _layerwise = False
    _lightweight = False

    def __init__(
        self,
        model_name_or_path: str,
        peft_path: Optional[str] = None,
        use_fp16: bool = False,
        use_bf16: bool = False,
        query_instruction_for_rerank: str = "A: ",
        query_instruction_format: str = "{}{}",
        passage_instruction_for_rerank: str = "B: ",
        passage_instruction_format: str = "{}{}",
        cache_dir: Optional[str] = None,
        trust_remote_code: bool = False,
        devices: Optional[Union[str, List[str], List[int]]] = None,
        prompt: Optional[str] = None,
        batch_size: int = 128,
        query_max_length: Optional[int] = None,
        max_length: int = 512,
        normalize: bool = False,
        **kwargs: Any,
    ) -> None:
        check_devices(devices)
        if peft_path is not None:
            raise ValueError("peft_path: LoRA adapters are not supported; merge the adapter into the model first")
        self.model = _load_reranker(model_name_or_path, dtype_for(use_fp16, use_bf16), cache_dir, kwargs)
        if not self.model.is_llm:
            raise ValueError(
                f"{model_name_or_path} is a cross-encoder ({self.model.architecture}): use FlagReranker"
            )
        if (self.model.num_layers is not None) != (self._layerwise or self._lightweight):
            raise ValueError(
                f"{model_name_or_path} ({self.model.architecture}) does not fit "
                f"{type(self).__name__}: use FlagAutoReranker.from_finetuned to choose the class"
            )
        self.model_name_or_path = model_name_or_path
        self.query_instruction_for_rerank = query_instruction_for_rerank
        self.query_instruction_format = query_instruction_format
        self.passage_instruction_for_rerank = passage_instruction_for_rerank
        self.passage_instruction_format = passage_instruction_format
        self.prompt = prompt
        self.batch_size = batch_size
        self.query_max_length = query_max_length
        self.max_length = max_length
        self.normalize = normalize
        self.kwargs = kwargs

    def _llm_score(self, sentence_pairs, batch_size, query_max_length, max_length, prompt, normalize, **layers):
        # The instructions are applied here (FlagEmbedding's get_detailed_inputs), so the engine
        # is given empty ones.
        return self._score(
            sentence_pairs,
            batch_size,
            query_max_length,
            max_length,
            normalize,
            prompt=self.prompt if prompt is None else prompt,
            query_instruction="",
            passage_instruction="",
            **layers,
        )

    def compute_score(
        self,
        sentence_pairs: Union[List[Pair], Pair],
        batch_size: Optional[int] = None,
        query_max_length: Optional[int] = None,
        max_length: Optional[int] = None,
        prompt: Optional[str] = None,
        normalize: Optional[bool] = None,
        use_dataloader: bool = False,
        num_workers: Optional[int] = None,
        **kwargs: Any,
    ) -> List[float]:
        """One score per pair, in order."""
        return self._llm_score(sentence_pairs, batch_size, query_max_length, max_length, prompt, normalize)[0]


def _layers(value: Optional[Any]) -> Optional[List[int]]:
    if value is None:
        return None
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def _flat_if_one(scores: List[List[float]]) -> Union[List[float], List[List[float]]]:
    """FlagEmbedding's layerwise return: a flat list for one layer, one list per layer else."""
    return scores[0] if len(scores) == 1 else scores


class LayerWiseFlagLLMReranker(FlagLLMReranker):
    """bge-reranker-v2-minicpm-layerwise: a score from each of ``cutoff_layers``."""

    _layerwise = True

    def __init__(self, model_name_or_path: str, *args: Any, cutoff_layers: Optional[List[int]] = None, **kwargs: Any):
        super().__init__(model_name_or_path, *args, **kwargs)
        self.cutoff_layers = cutoff_layers

    def compute_score(
        self,
        sentence_pairs: Union[List[Pair], Pair],
        batch_size: Optional[int] = None,
        query_max_length: Optional[int] = None,
        max_length: Optional[int] = None,
        cutoff_layers: Optional[List[int]] = None,
        prompt: Optional[str] = None,
        normalize: Optional[bool] = None,
        use_dataloader: bool = False,
        num_workers: Optional[int] = None,
        **kwargs: Any,
    ) -> Union[List[float], List[List[float]]]:
        """One score per pair for one layer; one list per layer for several."""
        layers = _layers(self.cutoff_layers if cutoff_layers is None else cutoff_layers)
        scores = self._llm_score(
            sentence_pairs, batch_size, query_max_length, max_length, prompt, normalize, cutoff_layers=layers
        )
        return _flat_if_one(scores)


class LightWeightFlagLLMReranker(FlagLLMReranker):
    """bge-reranker-v2.5-gemma2-lightweight: layer cutoffs and passage token compression."""

    _lightweight = True

    def __init__(
        self,
        model_name_or_path: str,
        *args: Any,
        cutoff_layers: Optional[List[int]] = None,
        compress_layers: List[int] = [8],  # noqa: B006 (FlagEmbedding's signature)
        compress_ratio: int = 1,
        **kwargs: Any,
    ):
        super().__init__(model_name_or_path, *args, **kwargs)
        self.cutoff_layers = cutoff_layers
        self.compress_layers = compress_layers
        self.compress_ratio = compress_ratio

    def compute_score(
        self,
        sentence_pairs: Union[List[Pair], Pair],
        batch_size: Optional[int] = None,
        query_max_length: Optional[int] = None,
        max_length: Optional[int] = None,
        cutoff_layers: Optional[List[int]] = None,
        compress_layer: Optional[List[int]] = None,
        compress_layers: Optional[List[int]] = None,
        compress_ratio: Optional[int] = None,
        prompt: Optional[str] = None,
        normalize: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[List[float], List[List[float]]]:
        """One score per pair for one layer; one list per layer for several."""
        layers = _layers(self.cutoff_layers if cutoff_layers is None else cutoff_layers)
        compress = compress_layers if compress_layers is not None else compress_layer
        compress = _layers(self.compress_layers if compress is None else compress)
        ratio = self.compress_ratio if compress_ratio is None else compress_ratio
        scores = self._llm_score(
            sentence_pairs,
            batch_size,
            query_max_length,
            max_length,
            prompt,
            normalize,
            cutoff_layers=layers,
            compress_ratio=int(ratio),
            compress_layers=compress,
        )
        return _flat_if_one(scores)


_AUTO = {
    "bge-reranker-base": FlagReranker,
    "bge-reranker-large": FlagReranker,
    "bge-reranker-v2-m3": FlagReranker,
    "bge-reranker-v2-gemma": FlagLLMReranker,
    "bge-reranker-v2-minicpm-layerwise": LayerWiseFlagLLMReranker,
    "bge-reranker-v2.5-gemma2-lightweight": LightWeightFlagLLMReranker,
    "jina-reranker-v2-base-multilingual": FlagReranker,
    "gte-multilingual-reranker-base": FlagReranker,
    "bce-reranker-base_v1": FlagReranker,
    "jina-reranker-v1-turbo-en": FlagReranker,
}
_CLASSES = {
    "encoder-only-base": FlagReranker,
    "decoder-only-base": FlagLLMReranker,
    "decoder-only-layerwise": LayerWiseFlagLLMReranker,
    "decoder-only-lightweight": LightWeightFlagLLMReranker,
}


class FlagAutoReranker:
    """Chooses the reranker class from the model's name, as FlagEmbedding's model_mapping."""

    def __init__(self):
        raise EnvironmentError(
            "FlagAutoReranker is designed to be instantiated using the "
            "`FlagAutoReranker.from_finetuned(model_name_or_path)` method."
        )

    @classmethod
    def from_finetuned(
        cls,
        model_name_or_path: str,
        model_class: Optional[str] = None,
        use_fp16: bool = False,
        trust_remote_code: Optional[bool] = None,
        **kwargs: Any,
    ):
        """The class for ``model_name_or_path``'s name (or ``model_class``), loaded."""
        path = str(model_name_or_path).rstrip("/")
        name = os.path.basename(path)
        if name.startswith("checkpoint-"):
            name = os.path.basename(os.path.dirname(path))
        if model_class is not None:
            key = getattr(model_class, "value", model_class)
            if key not in _CLASSES:
                raise ValueError(f"model_class {model_class!r}: expected one of {sorted(_CLASSES)}")
            chosen = _CLASSES[key]
        elif name in _AUTO:
            chosen = _AUTO[name]
        else:
            raise ValueError(
                f"Model name '{name}' not found in the model mapping; give model_class "
                f"(one of {sorted(_CLASSES)})"
            )
        return chosen(model_name_or_path, use_fp16=use_fp16, **kwargs)


def _to_output(vectors: np.ndarray, single: bool, convert_to_numpy: bool):
    out = vectors[0] if single else vectors
    if convert_to_numpy:
        return out
    try:
        import torch
    except ImportError:
        return out
    return torch.from_numpy(np.array(out))


class FlagModel:
    """A dense embedder (bge-m3 and the BGE embedders; CLS pooling, L2-normalised), as
    FlagEmbedding's ``FlagModel``: ``encode``, ``encode_queries``, ``encode_corpus`` return
    float32 numpy arrays (one row per text; one vector for a single string)."""

    def __init__(
        self,
        model_name_or_path: str,
        normalize_embeddings: bool = True,
        use_fp16: bool = True,
        use_bf16: bool = False,
        query_instruction_for_retrieval: Optional[str] = None,
        query_instruction_format: str = "{}{}",
        devices: Optional[Union[str, List[str]]] = None,
        pooling_method: str = "cls",
        trust_remote_code: bool = False,
        cache_dir: Optional[str] = None,
        batch_size: int = 256,
        query_max_length: int = 512,
        passage_max_length: int = 512,
        convert_to_numpy: bool = True,
        truncate_dim: Optional[int] = None,
        **kwargs: Any,
    ):
        check_devices(devices)
        if pooling_method != "cls":
            raise ValueError(
                f"pooling_method {pooling_method!r}: FlagModel models pool the CLS token here; for "
                "other pooling give the model a sentence-transformers 1_Pooling/config.json"
            )
        threads = int(kwargs.pop("threads", 0))
        with _hub_cache(cache_dir):
            self.model = NativeEmbedder(str(model_name_or_path), dtype=dtype_for(use_fp16, use_bf16), threads=threads)
        self.model_name_or_path = model_name_or_path
        self.normalize_embeddings = normalize_embeddings
        self.query_instruction_for_retrieval = query_instruction_for_retrieval
        self.query_instruction_format = query_instruction_format
        self.batch_size = batch_size
        self.query_max_length = query_max_length
        self.passage_max_length = passage_max_length
        self.convert_to_numpy = convert_to_numpy
        self.truncate_dim = truncate_dim
        self.kwargs = kwargs

    def _encode(self, sentences, max_length, convert_to_numpy, instruction=None, instruction_format="{}{}"):
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("sentences must be a string or a list of strings")
        if instruction is not None:
            texts = [instruct(instruction_format, instruction, t) for t in texts]
        if not texts:
            return np.zeros((0, self.model.dimension), dtype=np.float32)
        data, rows, dim = self.model.embed(texts, normalize=self.normalize_embeddings, max_length=int(max_length))
        vectors = np.frombuffer(data, dtype="<f4").reshape(rows, dim).astype(np.float32, copy=True)
        if self.truncate_dim is not None:
            vectors = vectors[:, : self.truncate_dim]
        numpy = self.convert_to_numpy if convert_to_numpy is None else convert_to_numpy
        return _to_output(vectors, single, numpy)

    def encode_queries(self, queries: Union[List[str], str], batch_size: Optional[int] = None,
                       max_length: Optional[int] = None, convert_to_numpy: Optional[bool] = None, **kwargs: Any):
        """Queries after ``query_instruction_for_retrieval``."""
        return self._encode(
            queries,
            self.query_max_length if max_length is None else max_length,
            convert_to_numpy,
            self.query_instruction_for_retrieval,
            self.query_instruction_format,
        )

    def encode_corpus(self, corpus: Union[List[str], str], batch_size: Optional[int] = None,
                      max_length: Optional[int] = None, convert_to_numpy: Optional[bool] = None, **kwargs: Any):
        """Passages, without an instruction."""
        return self._encode(corpus, self.passage_max_length if max_length is None else max_length, convert_to_numpy)

    def encode(self, sentences: Union[List[str], str], batch_size: Optional[int] = None,
               max_length: Optional[int] = None, convert_to_numpy: Optional[bool] = None,
               instruction: Optional[str] = None, instruction_format: Optional[str] = None, **kwargs: Any):
        """Texts, with ``instruction`` when given."""
        return self._encode(
            sentences,
            self.passage_max_length if max_length is None else max_length,
            convert_to_numpy,
            instruction,
            instruction_format or "{}{}",
        )
