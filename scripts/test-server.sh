#!/usr/bin/env bash
# Server checks with real clients: starts `rerank serve` (tiny fixture model) on a free loopback
# port, runs the official cohere SDK, LlamaIndex's TEI postprocessor and the seed's requests call
# against it (scripts/clients/check_clients.py), then the bounded load test
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
key=ci-key
"$bin" serve --model "$model" --port 0 --api-key "$key" --served-model-name bge-reranker-base >"$log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q '^listening on' "$log" && break; sleep 0.2; done
url=$(grep -m1 '^listening on' "$log" | awk '{print $3}')
[ -n "$url" ] || { cat "$log"; exit 1; }
common=(--base-url "$url" --rerank-bin "$bin" --model "$model" --served-model-name bge-reranker-base --api-key "$key")
"$venv/bin/python" scripts/clients/check_clients.py "${common[@]}"
"$venv/bin/python" scripts/clients/loadtest.py "${common[@]}" --requests "$requests" --concurrency "$concurrency"
(cd "$venv" && "$venv/bin/schemathesis" run "$url/openapi.json" -H "Authorization: Bearer $key" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-50}" --seed 1 --workers 1)
"$venv/bin/python" -c "import sys, requests; sys.exit(requests.get('$url/health', timeout=10).status_code != 200)" &&
  echo "health after load: ok"
kill -TERM "$pid"
wait "$pid" && echo "server stopped cleanly (exit 0)"
pid=
