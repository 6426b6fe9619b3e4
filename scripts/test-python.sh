#!/usr/bin/env bash
# The Python package's tests: builds and installs bindings/python (maturin, release) into a
# throwaway venv with pytest, then runs bindings/python/tests against the committed fixtures,
# comparing with the `rerank` binary (RERANK_BIN, default target/debug/rerank).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export RERANK_BIN="${RERANK_BIN:-$root/target/debug/rerank}"
[ -x "$RERANK_BIN" ] || cargo build --bin rerank
# The extension's build is kept between runs (it shares nothing with the workspace's).
export CARGO_TARGET_DIR="$root/target/python"
venv=$(mktemp -d /tmp/rerank-python.XXXXXX)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "./bindings/python[test]"
cd "$venv" # import the installed package, not the source tree
RERANK_FIXTURES="$root/tests/fixtures" "$venv/bin/python" -m pytest -q -p no:cacheprovider "$root/bindings/python/tests"
