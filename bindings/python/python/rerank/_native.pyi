"""The Rust engine (rerank._native): the classes the Python API is built on."""

from typing import List, Optional, Sequence, Tuple

__version__: str

class NativeReranker:
    """A cross-encoder or LLM reranker, loaded once from a folder or hub id."""

    def __init__(self, model: str, dtype: str = "f32", threads: int = 0, attention_softcap: bool = False) -> None: ...
    @property
    def architecture(self) -> str: ...
    @property
    def is_llm(self) -> bool: ...
    @property
    def num_layers(self) -> Optional[int]: ...
    @property
    def max_sequence_length(self) -> int: ...
    @property
    def model_dir(self) -> str: ...
    def compute_score(
        self,
        pairs: Sequence[Tuple[str, str]],
        *,
        normalize: bool = False,
        max_length: int = 512,
        query_max_length: Optional[int] = None,
        batch_size: int = 128,
        truncation: str = "flag",
        prompt: Optional[str] = None,
        query_instruction: Optional[str] = None,
        passage_instruction: Optional[str] = None,
        cutoff_layers: Optional[List[int]] = None,
        compress_ratio: Optional[int] = None,
        compress_layers: Optional[List[int]] = None,
    ) -> List[List[float]]: ...

class NativeEmbedder:
    """A dense embedder, loaded once from a folder or hub id."""

    def __init__(self, model: str, dtype: str = "f32", threads: int = 0) -> None: ...
    @property
    def dimension(self) -> int: ...
    @property
    def max_length(self) -> int: ...
    @property
    def normalize(self) -> bool: ...
    @property
    def style(self) -> str: ...
    def embed(
        self,
        texts: Sequence[str],
        *,
        normalize: Optional[bool] = None,
        instruction: Optional[str] = None,
        max_length: Optional[int] = None,
        batch_tokens: int = 16384,
    ) -> Tuple[bytes, int, int]: ...
