#!/usr/bin/env bash
# Offline try-out: builds `rerank` and scores the seed's pairs with the tiny random-weight
# XLM-RoBERTa test model (real tokenizer, random weights: the numbers mean nothing, the path is
# the real one). With internet access use --model BAAI/bge-reranker-base instead.
set -euo pipefail
cd "$(dirname "$0")/.."
model=target/demo-model
if [ ! -f "$model/model.safetensors" ]; then
  mkdir -p "$model"
  cp tests/fixtures/xlmr-tiny/*.json "$model/"
  gunzip -c tests/fixtures/xlmr-tiny/model.safetensors.gz >"$model/model.safetensors"
  gunzip -c tests/fixtures/xlmr-tiny/tokenizer.json.gz >"$model/tokenizer.json"
fi
echo '[["what is panda?", "hi"], ["what is panda?", "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, is a bear species endemic to China."]]' |
  cargo run --release --quiet --bin rerank -- score --model "$model" "$@"
