#!/usr/bin/env bash
# Unpacks the tiny random-weight XLM-RoBERTa test model (tests/fixtures/xlmr-tiny, real
# tokenizer) into the folder given (default target/demo-model) and prints the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-target/demo-model}"
if [ ! -f "$model/model.safetensors" ]; then
  mkdir -p "$model"
  cp tests/fixtures/xlmr-tiny/*.json "$model/"
  gunzip -c tests/fixtures/xlmr-tiny/tokenizer.json.gz >"$model/tokenizer.json"
  gunzip -c tests/fixtures/xlmr-tiny/model.safetensors.gz >"$model/model.safetensors"
fi
echo "$model"
