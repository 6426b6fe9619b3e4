"""What the wrapper classes share: devices, precision, pairs, instructions."""

from typing import Any, List, Optional, Sequence, Tuple, Union

Pair = Union[Tuple[str, str], List[str]]


def check_devices(devices: Any) -> None:
    """Accepts ``None``, ``"cpu"`` or ``["cpu", ...]``; a GPU device is a ``ValueError``."""
    if devices is None:
        return
    items = devices if isinstance(devices, (list, tuple)) else [devices]
    for device in items:
        if not (isinstance(device, str) and device.strip().lower() == "cpu"):
            raise ValueError(
                f"device {device!r}: this build of rerank runs on the CPU only (GPU support is "
                "not in this build); use devices=None or 'cpu'"
            )


def dtype_for(use_fp16: bool = False, use_bf16: bool = False) -> str:
    """FlagEmbedding's half-precision switches select the engine's bf16 path on the CPU."""
    return "bf16" if (use_fp16 or use_bf16) else "f32"


def as_pairs(sentence_pairs: Any) -> List[Tuple[str, str]]:
    """A list of ``(query, passage)`` from a list of pairs or one pair, as FlagEmbedding takes
    them (lists or tuples); anything else is a ``ValueError``."""
    if isinstance(sentence_pairs, (list, tuple)) and len(sentence_pairs) > 0 and isinstance(
        sentence_pairs[0], str
    ):
        sentence_pairs = [sentence_pairs]
    if not isinstance(sentence_pairs, (list, tuple)):
        raise ValueError("sentence_pairs must be a list of [query, passage] pairs or one pair")
    pairs = []
    for i, pair in enumerate(sentence_pairs):
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(isinstance(t, str) for t in pair)
        ):
            raise ValueError(f"sentence_pairs item {i} is not a [query, passage] pair of two strings")
        pairs.append((pair[0], pair[1]))
    return pairs


def instruct(instruction_format: str, instruction: Optional[str], text: str) -> str:
    """FlagEmbedding's ``get_detailed_instruct``: ``instruction_format.format(instruction, text)``
    (a literal ``\\n`` in the format means a newline); the text alone without an instruction."""
    if instruction is None:
        return text
    if "\\n" in instruction_format:
        instruction_format = instruction_format.replace("\\n", "\n")
    return instruction_format.format(instruction, text)


def with_instructions(
    pairs: Sequence[Tuple[str, str]],
    query_instruction: Optional[str],
    query_format: str,
    passage_instruction: Optional[str],
    passage_format: str,
) -> List[Tuple[str, str]]:
    """The pairs with their instructions, as FlagEmbedding's ``get_detailed_inputs``."""
    return [
        (
            instruct(query_format, query_instruction, q),
            instruct(passage_format, passage_instruction, p),
        )
        for q, p in pairs
    ]
