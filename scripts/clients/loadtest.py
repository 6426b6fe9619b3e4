"""Bounded loopback load test of `rerank serve`.

N concurrent clients send M requests in all, spread over the TEI, Cohere v1/v2 and legacy APIs,
each with a few real MS MARCO passages; every answer is checked against scores computed by
`rerank score` for the same pairs. Prints p50/p99 latency, throughput and error counts; exits
non-zero on any error or wrong score. Talks only to the loopback address it is given.

    python loadtest.py --base-url http://127.0.0.1:8080 --rerank-bin target/debug/rerank \
        --model DIR --requests 10000 --concurrency 64
"""

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

from common import rerank_scores, server_args, sigmoid

ROOT = Path(__file__).resolve().parents[2]


def load_samples(limit_queries=10, docs_per_query=6):
    """Real queries with a few of their passages each (copied into tests/fixtures)."""
    rows = [json.loads(l) for l in (ROOT / "tests/fixtures/retrieval/msmarco-10q.jsonl").open()]
    out = []
    for row in rows[:limit_queries]:
        out.append((row["query"], (row["pos"] + row["neg"])[:docs_per_query]))
    return out


def reference_scores(rerank_bin, model, samples):
    pairs = [[q, d] for q, docs in samples for d in docs]
    scores = rerank_scores(rerank_bin, model, pairs)
    return {(q, d): s for (q, d), s in zip(map(tuple, pairs), scores)}


def make_request(i, samples, served_name):
    query, docs = samples[i % len(samples)]
    kind = ("tei", "v1", "v2", "legacy")[i % 4]
    if kind == "tei":
        return kind, "/rerank", {"query": query, "texts": docs, "raw_scores": i % 8 == 0}, query, docs
    if kind in ("v1", "v2"):
        return kind, f"/{kind}/rerank", {"model": served_name, "query": query, "documents": docs}, query, docs
    return kind, f"/{served_name}/post", {"text_pairs": [[query, d] for d in docs]}, query, docs


def check(kind, body, payload, query, docs, ref, tol):
    """Returns None when every score equals the reference, else a message."""
    if kind == "tei":
        raw = payload.get("raw_scores", False)
        got = {r["index"]: r["score"] for r in body}
        want = {i: (ref[(query, d)] if raw else sigmoid(ref[(query, d)])) for i, d in enumerate(docs)}
    elif kind in ("v1", "v2"):
        got = {r["index"]: r["relevance_score"] for r in body["results"]}
        want = {i: sigmoid(ref[(query, d)]) for i, d in enumerate(docs)}
    else:
        got = dict(enumerate(body["rerank_scores"]))
        want = {i: ref[(query, d)] for i, d in enumerate(docs)}
    if got.keys() != want.keys():
        return f"{kind}: indices {sorted(got)} != {sorted(want)}"
    worst = max(abs(got[i] - want[i]) for i in want)
    return None if worst <= tol else f"{kind}: score off by {worst:.2e}"


async def run(args):
    host = urlparse(args.base_url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"refusing to load-test a non-loopback address: {host}")
    samples = load_samples()
    ref = reference_scores(args.rerank_bin, args.model, samples)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    latencies, errors, wrong = [], {}, []
    counter = iter(range(args.requests))
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=args.base_url, headers=headers, limits=limits, timeout=60) as client:

        async def worker():
            for i in counter:
                kind, path, payload, query, docs = make_request(i, samples, args.served_model_name)
                t0 = time.perf_counter()
                try:
                    r = await client.post(path, json=payload)
                except httpx.HTTPError as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    continue
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                    continue
                problem = check(kind, r.json(), payload, query, docs, ref, args.tolerance)
                if problem:
                    wrong.append(problem)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - t0

    lat = sorted(latencies)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
    report = {
        "requests": args.requests, "concurrency": args.concurrency, "ok": len(latencies) - sum(
            int(v) for k, v in errors.items() if k.isdigit()),
        "errors": errors, "wrong_scores": len(wrong), "seconds": round(elapsed, 2),
        "requests_per_s": round(args.requests / elapsed, 1),
        "p50_ms": round(p(0.50), 2), "p99_ms": round(p(0.99), 2),
        "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else None,
    }
    print(json.dumps(report))
    for w in wrong[:5]:
        print("wrong:", w, file=sys.stderr)
    return 0 if not errors and not wrong else 1


def main():
    ap = server_args(__doc__, api_key_required=False)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--tolerance", type=float, default=1e-5)
    sys.exit(asyncio.run(run(ap.parse_args())))


if __name__ == "__main__":
    main()
