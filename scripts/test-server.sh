#!/usr/bin/env bash
# Server checks with real clients: starts `rerank serve` (tiny fixture reranker, real
# all-MiniLM-L6-v2 embedder) on a free loopback port, runs the official cohere SDK, LlamaIndex's
# TEI postprocessor, the seed's requests call and the openai SDK's embeddings against it
# (scripts/clients/check_clients.py), `rerank eval` checked by pytrec_eval, then the bounded load test
# (10,000 requests at concurrency 64 by default), schemathesis against the server's own
# /openapi.json (no 5xx, responses true to the schema), and stops the server with SIGTERM.
# Needs `cargo build` (debug) or RERANK_BIN; installs the pinned clients in a throwaway venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${RERANK_BIN:-target/debug/rerank}"
requests="${LOADTEST_REQUESTS:-10000}"
concurrency="${LOADTEST_CONCURRENCY:-64}"
[ -x "$bin" ] || cargo build --bin rerank
venv=$(mktemp -d /tmp/rerank-clients.XXXXXX)
log=$(mktemp /tmp/rerank-serve.XXXXXX.log)
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; rm -rf "$venv"; }
trap cleanup EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r scripts/clients/requirements.txt

model=$(scripts/fixture-model.sh target/test-fixtures/server-model)
embedder=$(scripts/fetch-minilm.sh)
key=ci-key
"$bin" serve --model "$model" --embedding-model "$embedder" --served-embedding-model-name all-MiniLM-L6-v2 \
  --port 0 --api-key "$key" --served-model-name bge-reranker-base >"$log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q '^listening on' "$log" && break; sleep 0.2; done
url=$(grep -m1 '^listening on' "$log" | awk '{print $3}')
[ -n "$url" ] || { cat "$log"; exit 1; }
common=(--base-url "$url" --rerank-bin "$bin" --model "$model" --served-model-name bge-reranker-base --api-key "$key")
"$venv/bin/python" scripts/clients/check_clients.py "${common[@]}" \
  --embedding-model-dir "$embedder" --embedding-name all-MiniLM-L6-v2
# LiteLLM (huggingface/, infinity/, hosted_vllm/, cohere/), langchain-cohere, LangChain
# InfinityRerank and JinaRerank, LlamaIndex JinaRerank and CohereRerank, Haystack's TEI ranker, and
# the Dify, Open WebUI and RAGFlow requests, in venvs of their own (their pins conflict).
scripts/clients/run_more_clients.sh "$url" "$bin" "$model" bge-reranker-base "$key"
# rerank eval end to end (real MiniLM first stage, tiny reranker): pytrec_eval recomputes its
# metrics from the runs it writes.
eval_json=$(mktemp /tmp/rerank-eval.XXXXXX.json)
"$bin" eval --input tests/fixtures/retrieval/msmarco-10q.jsonl --embedder "$embedder" --model "$model" \
  --top-k 20 --json "$eval_json"
"$venv/bin/python" scripts/reference/check_eval.py "$eval_json"
"$bin" eval --input tests/fixtures/retrieval/msmarco-10q.jsonl --first-stage bm25 --top-k 20 --json "$eval_json"
"$venv/bin/python" scripts/reference/check_eval.py "$eval_json"
rm -f "$eval_json"
"$venv/bin/python" scripts/clients/loadtest.py "${common[@]}" --requests "$requests" --concurrency "$concurrency"
(cd "$venv" && "$venv/bin/schemathesis" run "$url/openapi.json" -H "Authorization: Bearer $key" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-50}" --seed 1 --workers 1)
"$venv/bin/python" -c "import sys, requests; sys.exit(requests.get('$url/health', timeout=10).status_code != 200)" &&
  echo "health after load: ok"
kill -TERM "$pid"
wait "$pid" && echo "server stopped cleanly (exit 0)"
pid=
