#!/usr/bin/env python3
"""Calls a `rerank serve` running in a container (scripts/test-container.sh) the way seed 003's
users do, with the standard library only: waits for /health, then a TEI /rerank request and the
seed's legacy `text_pairs` request (a JSON string body without a content type, as
`requests.post(url, data=json.dumps(...))` sends it), comparing scores with `rerank score`."""

import argparse
import json
import math
import subprocess
import time
import http.client
import urllib.parse

QUERY = "what is panda?"
DOCS = ["hi", "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply "
        "panda, is a bear species endemic to China.", "Paris is the capital of France."]
TOL = 1e-4


def call(url, body=None, content_type=None):
    """GET (no body) or POST; unlike urllib.request, http.client adds no Content-Type of its
    own, so a POST without `content_type` goes out as `requests.post(url, data=str)` sends it."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Content-Type": content_type} if content_type else {}
    conn.request("GET" if body is None else "POST", parts.path, body=body, headers=headers)
    res = conn.getresponse()
    data = res.read()
    conn.close()
    if res.status != 200 and body is not None:
        raise SystemExit(f"POST {url}: {res.status} {data[:300]!r}")
    return res.status, json.loads(data or b"null")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--rerank-bin", required=True)
    ap.add_argument("--model", required=True)
    args = ap.parse_args()
    deadline = time.time() + 120
    while True:
        try:
            if call(f"{args.base_url}/health")[0] == 200:
                break
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit("the container did not answer /health within 120 s")
        time.sleep(0.5)
    pairs = [[QUERY, d] for d in DOCS]
    out = subprocess.run([args.rerank_bin, "score", "--model", args.model], input=json.dumps(pairs),
                         capture_output=True, text=True, check=True)
    raw = json.loads(out.stdout)

    _, ranks = call(f"{args.base_url}/rerank", json.dumps({"query": QUERY, "texts": DOCS}),
                    "application/json")
    sig = [1 / (1 + math.exp(-x)) for x in raw]
    worst_tei = max(abs(r["score"] - sig[r["index"]]) for r in ranks)
    assert len(ranks) == len(DOCS) and worst_tei <= TOL, (ranks, sig)
    print(f"container ok: TEI /rerank: max |score - rerank score| = {worst_tei:.2e}")

    body = json.dumps({"text_pairs": str(pairs)})
    _, legacy = call(f"{args.base_url}/bge-reranker-base/post", body)
    worst = max(abs(a - b) for a, b in zip(legacy["rerank_scores"], raw))
    assert legacy["code"] == 200 and worst <= TOL, legacy
    print(f"container ok: seed 003 legacy /bge-reranker-base/post: max |score - rerank score| = {worst:.2e}")


if __name__ == "__main__":
    main()
