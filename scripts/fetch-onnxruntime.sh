#!/usr/bin/env bash
# Fetches ONNX Runtime's shared library from PyPI's onnxruntime wheel (MIT) once into
# ~/.cache/rerank/ and prints its path, for ORT_DYLIB_PATH (the ONNX backend loads it at run time).
set -euo pipefail
cache="${RERANK_CACHE:-$HOME/.cache/rerank}"
version=1.32.0
dir="$cache/onnxruntime-$version"
lib="$dir/onnxruntime/capi/libonnxruntime.so.$version"
if [ ! -f "$lib" ]; then
  mkdir -p "$cache/wheels" "$dir"
  python3 -m pip download -q --no-deps --disable-pip-version-check --only-binary=:all: -d "$cache/wheels" "onnxruntime==$version" >&2
  wheel=$(ls "$cache"/wheels/onnxruntime-$version-*.whl | head -1)
  python3 -m zipfile -e "$wheel" "$dir" >&2
fi
echo "$lib"
