#!/usr/bin/env bash
# Offline try-out: builds `rerank` and scores the seed's pairs with the tiny random-weight
# XLM-RoBERTa test model (real tokenizer, random weights: the numbers mean nothing, the path is
# the real one). With internet access use --model BAAI/bge-reranker-base instead.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(scripts/fixture-model.sh target/demo-model)
echo '[["what is panda?", "hi"], ["what is panda?", "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, is a bear species endemic to China."]]' |
  cargo run --release --quiet --bin rerank -- score --model "$model" "$@"
