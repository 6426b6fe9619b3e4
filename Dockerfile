# rerank serve in a container: `docker build -t rerank .`, then
#   docker run -p 6009:6009 -v $PWD/bge-reranker-base:/model rerank \
#     --model /model --port 6009 --served-model-name bge-reranker-base
# (seed 003's service: POST /bge-reranker-base/post). Every flag is also an env var
# (RERANK_MODEL, RERANK_PORT, RERANK_API_KEY, …; `rerank serve --help`). A hub id works as
# --model too, downloaded into HF_HOME (/data/hf: mount a volume there to keep it).
# The binary picks its CPU kernels at run time, so the image runs on any x86-64.
# GPU (`--gpus all`) is future work: there is no CUDA build yet.
#
# Stages: `build` compiles the release binary; `runtime` (the default, last stage) copies it in.
# Where the Rust image cannot be pulled (CI here), `--target prebuilt` copies a binary built
# outside the image from target/container/rerank instead (scripts/test-container.sh). Builds
# only the stages the target needs with BuildKit (Docker's default since 23.0; buildah/podman
# skip unused stages too); the legacy builder (DOCKER_BUILDKIT=0) would stop at `prebuilt`.

ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=true
RUN cargo build --release --locked --bin rerank && cp target/release/rerank /rerank

FROM ${BASE_IMAGE} AS base
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/rerank rerank \
    && mkdir -p /data/hf && chown rerank:rerank /data/hf
COPY deploy/container/healthcheck.sh /usr/local/bin/rerank-healthcheck
ENV RERANK_HOST=0.0.0.0 \
    RERANK_PORT=8080 \
    HF_HOME=/data/hf
EXPOSE 8080
USER 10001:10001
WORKDIR /home/rerank
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 CMD ["/usr/local/bin/rerank-healthcheck"]
# SIGTERM drains in-flight requests (RERANK_SHUTDOWN_TIMEOUT, 30 s): give `docker stop -t 40`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/rerank", "serve"]

FROM base AS prebuilt
COPY --chmod=755 target/container/rerank /usr/local/bin/rerank

FROM base AS runtime
COPY --from=build /rerank /usr/local/bin/rerank
