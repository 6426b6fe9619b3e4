#!/usr/bin/env bash
# Runs check_more_clients.py against a running `rerank serve`, in the two throwaway venvs its pinned
# clients need (LiteLLM wants httpx>=0.28, infinity_client httpx<0.28; langchain-cohere wants
# cohere<6): requirements-more-cohere5.txt for the LangChain and LlamaIndex clients, then
# requirements-more.txt for LiteLLM, Haystack, the Dify/Open WebUI/RAGFlow replays and, last, the
# TEI metric names. Prints each venv's build time.
#
#   scripts/clients/run_more_clients.sh BASE_URL RERANK_BIN MODEL NAME KEY
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: $0 BASE_URL RERANK_BIN MODEL NAME KEY" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
common=(--base-url "$1" --rerank-bin "$2" --model "$3" --served-model-name "$4" --api-key "$5")
venvs=$(mktemp -d /tmp/rerank-more-clients.XXXXXX)
trap 'rm -rf "$venvs"' EXIT

build() {  # build NAME REQUIREMENTS: one venv, timed (installs run one after another)
  local start=$SECONDS
  python3 -m venv "$venvs/$1"
  "$venvs/$1/bin/pip" install -q --disable-pip-version-check -r "$here/$2"
  echo "venv $1 ($2): built in $((SECONDS - start))s"
}

build cohere5 requirements-more-cohere5.txt
build main requirements-more.txt
status=0
"$venvs/cohere5/bin/python" "$here/check_more_clients.py" "${common[@]}" \
  --only langchain-cohere,langchain-infinity,langchain-jina,llamaindex-jina,llamaindex-cohere || status=1
"$venvs/main/bin/python" "$here/check_more_clients.py" "${common[@]}" \
  --only litellm-huggingface,litellm-infinity,litellm-hosted-vllm,litellm-cohere,haystack-tei,dify-tei,openwebui-external,ragflow-xinference,tei-metrics ||
  status=1
exit $status
