#!/usr/bin/env bash
# The project's test command: fetches the real all-MiniLM-L6-v2 weights once (cached in
# ~/.cache/rerank) so the real-weights parity test runs, then runs every Rust test offline, then
# builds the Python package and runs its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
RERANK_MINILM_DIR="$(scripts/fetch-minilm.sh)"
export RERANK_MINILM_DIR
# ONNX Runtime's shared library (PyPI wheel, cached) for the ONNX backend's tests.
ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)"
export ORT_DYLIB_PATH
export RERANK_REQUIRE_REAL_WEIGHTS=1
cargo test --workspace "$@"
# The Python package (bindings/python): built, installed in a throwaway venv, tested with pytest.
bash scripts/test-python.sh
