"""sentence-transformers' ``CrossEncoder`` on the Rust engine: the tokenizer's own pair encoding
with ``longest_first`` truncation to ``max_length``, sigmoid by default (one-label models)."""

import json
import os
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from rerank._common import Pair, as_pairs, check_devices
from rerank._native import NativeReranker


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _activation(fn: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A callable on a float32 array: ``None`` → identity; torch modules such as
    ``torch.nn.Sigmoid()`` / ``Identity()`` are called on a tensor when torch is there."""
    if fn is None:
        return _identity
    name = type(fn).__name__
    if name == "Sigmoid":
        return _sigmoid
    if name == "Identity":
        return _identity
    if callable(fn):
        def call(x: np.ndarray) -> np.ndarray:
            try:
                import torch

                return fn(torch.from_numpy(x)).detach().cpu().numpy().astype(np.float32)
            except ImportError:
                return np.asarray(fn(x), dtype=np.float32)

        return call
    raise ValueError(f"activation_fn {fn!r} is not callable")


def _tokenizer_max_length(model: NativeReranker) -> int:
    """``model_max_length`` of tokenizer_config.json (what sentence-transformers cuts at when
    ``max_length`` is None), capped by the model's own maximum."""
    limit = model.max_sequence_length
    try:
        with open(os.path.join(model.model_dir, "tokenizer_config.json"), encoding="utf-8") as f:
            configured = json.load(f).get("model_max_length")
        if isinstance(configured, (int, float)) and 0 < configured < limit:
            return int(configured)
    except (OSError, ValueError):
        pass
    return limit


class CrossEncoder:
    """``CrossEncoder(model_name_or_path).predict(pairs)`` → numpy float32 scores (a numpy scalar
    for a single pair); ``rank(query, documents)`` → ``[{"corpus_id", "score", "text"?}]``."""

    def __init__(
        self,
        model_name_or_path: Optional[str] = None,
        num_labels: Optional[int] = None,
        max_length: Optional[int] = None,
        activation_fn: Any = None,
        device: Optional[str] = None,
        **kwargs: Any,
    ):
        model = model_name_or_path or kwargs.pop("model_name", None)
        if model is None:
            raise ValueError("CrossEncoder needs model_name_or_path")
        check_devices(device)
        if activation_fn is None:
            activation_fn = kwargs.pop("default_activation_function", None)
        if num_labels not in (None, 1):
            raise ValueError("num_labels: only one-label (relevance score) models are supported")
        dtype = "bf16" if kwargs.pop("use_bf16", False) or kwargs.pop("use_fp16", False) else "f32"
        self.model = NativeReranker(str(model), dtype=dtype, threads=int(kwargs.pop("threads", 0)))
        if self.model.is_llm:
            raise ValueError(f"{model} is an LLM reranker: use rerank.FlagLLMReranker")
        self.max_length = int(max_length) if max_length else _tokenizer_max_length(self.model)
        self.num_labels = 1
        self.activation_fn = _sigmoid if activation_fn is None else _activation(activation_fn)
        self.default_activation_function = self.activation_fn

    def predict(
        self,
        sentences: Union[List[Pair], Pair],
        batch_size: int = 32,
        show_progress_bar: Optional[bool] = None,
        activation_fn: Any = None,
        apply_softmax: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        **kwargs: Any,
    ):
        """Scores of the pairs, in order, after the activation (sigmoid by default)."""
        if activation_fn is None:
            activation_fn = kwargs.pop("activation_fct", None)
        single = isinstance(sentences, (list, tuple)) and len(sentences) > 0 and isinstance(sentences[0], str)
        pairs = as_pairs(sentences)
        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        raw = self.model.compute_score(
            pairs, max_length=self.max_length, batch_size=max(int(batch_size), 1), truncation="longest_first"
        )[0]
        scores = np.asarray(raw, dtype=np.float32)
        activation = self.activation_fn if activation_fn is None else _activation(activation_fn)
        scores = activation(scores)
        # One label: softmax over a single logit is 1, as in sentence-transformers.
        if apply_softmax:
            scores = np.ones_like(scores)
        if convert_to_tensor:
            import torch

            out = torch.from_numpy(scores)
            return out[0] if single else out
        if not convert_to_numpy:
            values = [float(s) for s in scores]
            return values[0] if single else values
        return scores[0] if single else scores

    def rank(
        self,
        query: str,
        documents: List[str],
        top_k: Optional[int] = None,
        return_documents: bool = False,
        batch_size: int = 32,
        show_progress_bar: Optional[bool] = None,
        activation_fn: Any = None,
        apply_softmax: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        **kwargs: Any,
    ) -> List[Dict[str, Any]]:
        """The documents by score, best first: ``{"corpus_id", "score"}`` (and ``"text"``)."""
        if not isinstance(query, str):
            raise ValueError("query must be a string")
        scores = self.predict(
            [[query, d] for d in documents], batch_size=batch_size, activation_fn=activation_fn,
            apply_softmax=apply_softmax,
        )
        order = sorted(range(len(documents)), key=lambda i: -float(scores[i]))
        results = []
        for i in order[: top_k if top_k is not None else len(order)]:
            item: Dict[str, Any] = {"corpus_id": i, "score": scores[i]}
            if return_documents:
                item["text"] = documents[i]
            results.append(item)
        return results
