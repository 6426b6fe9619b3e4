"""Calls a running `rerank serve` with the real client libraries users have, unmodified, and
checks their scores against `rerank score` for the same pairs:

- the official `cohere` SDK: `ClientV2(base_url=...).rerank(...)` (POST /v2/rerank);
- LlamaIndex's TEI rerank postprocessor (`llama-index-postprocessor-tei-rerank`, POST /rerank);
- the seed's plain `requests` call of the legacy service (POST /{name}/post with `text_pairs`
  as a Python-literal string, sent as `data=json.dumps(...)`).

    python check_clients.py --base-url http://127.0.0.1:8080 --rerank-bin target/debug/rerank \
        --model DIR --served-model-name NAME --api-key KEY \
        [--embedding-model-dir DIR --embedding-name NAME]

With --embedding-model-dir (the server then serves that embedding model as --embedding-name), the
same server's embeddings are checked against `rerank embed --model DIR` (a JSON array of texts on
stdin, a JSON array of float vectors on stdout) for the same texts, max |diff| <= 1e-5:

- TEI's `POST /embed` with `{"inputs": [...]}` (a JSON array of vectors back);
- the official `openai` SDK, `OpenAI(base_url=f"{base_url}/v1").embeddings.create(...)`: its default
  asks for `"encoding_format": "base64"` (each `embedding` a base64 string of little-endian f32
  bytes, which the SDK decodes), then `encoding_format="float"`, then one string as `input`; every
  answer `{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": ...}],
  "model": NAME, "usage": {"prompt_tokens", "total_tokens"}}` in input order;
- plain `POST /v1/embeddings` with no `"model"` key (the server's only embedding model).
"""

import json
import subprocess
import sys

from common import rerank_scores, server_args, sigmoid

TOL = 1e-5
EMBED_TEXTS = [
    "what is panda?",
    "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, is a bear species endemic to China.",
    "Paris is the capital of France.",
    "熊猫是中国特有的熊科动物。",
    "Café naïve résumé — Москва 👍🏽",
]
QUERY = "what is panda?"
DOCS = [
    "hi",
    "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, is a bear species endemic to China.",
    "Paris is the capital of France.",
    "熊猫是中国特有的熊科动物。",
]


def reference(args):
    return rerank_scores(args.rerank_bin, args.model, [[QUERY, d] for d in DOCS])


def check_cohere(args, raw):
    import cohere

    client = cohere.ClientV2(api_key=args.api_key, base_url=args.base_url)
    res = client.rerank(model=args.served_model_name, query=QUERY, documents=DOCS, top_n=3)
    assert len(res.results) == 3, res
    scores = [r.relevance_score for r in res.results]
    assert scores == sorted(scores, reverse=True), scores
    worst = max(abs(r.relevance_score - sigmoid(raw[r.index])) for r in res.results)
    assert worst <= TOL, f"cohere: off by {worst}"
    return worst


def check_llamaindex(args, raw):
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    post = TextEmbeddingInference(base_url=args.base_url, top_n=2, auth_token=f"Bearer {args.api_key}")
    nodes = [NodeWithScore(node=TextNode(text=d, id_=str(i)), score=0.0) for i, d in enumerate(DOCS)]
    out = post.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    assert len(out) == 2, out
    worst = max(abs(n.score - sigmoid(raw[int(n.node.id_)])) for n in out)
    assert worst <= TOL, f"llama-index: off by {worst}"
    best = max(range(len(DOCS)), key=lambda i: raw[i])
    assert out[0].node.id_ == str(best)
    return worst


def check_requests(args, raw):
    import requests

    url = f"{args.base_url}/{args.served_model_name}/post"
    data = {"text_pairs": str([[QUERY, d] for d in DOCS])}
    headers = {"Authorization": f"Bearer {args.api_key}"}
    res = requests.post(url, data=json.dumps(data), headers=headers, timeout=60)
    res.raise_for_status()
    body = res.json()
    assert body["code"] == 200 and len(body["rerank_scores"]) == len(DOCS), body
    worst = max(abs(a - b) for a, b in zip(body["rerank_scores"], raw))
    assert worst <= TOL, f"requests: off by {worst}"
    return worst


# ------------------------------------------------------------------------------------------
# embeddings (only with --embedding-model-dir)


def embed_reference(args):
    """Vectors of EMBED_TEXTS from `rerank embed`: the reference for every embeddings API."""
    out = subprocess.run([args.rerank_bin, "embed", "--model", args.embedding_model_dir],
                         input=json.dumps(EMBED_TEXTS), capture_output=True, text=True, check=True)
    vecs = json.loads(out.stdout)
    assert isinstance(vecs, list) and len(vecs) == len(EMBED_TEXTS), f"rerank embed gave {len(vecs)} vectors"
    dim = len(vecs[0])
    assert dim > 0 and all(len(v) == dim for v in vecs), "rerank embed: ragged vectors"
    return vecs


def max_diff(got, want, what):
    """Largest |got - want| over equally shaped lists of vectors; fails on a shape mismatch."""
    assert len(got) == len(want), f"{what}: {len(got)} vectors, expected {len(want)}"
    worst = 0.0
    for i, (g, w) in enumerate(zip(got, want)):
        assert len(g) == len(w), f"{what}: vector {i} has {len(g)} dims, expected {len(w)}"
        worst = max(worst, max(abs(float(a) - b) for a, b in zip(g, w)))
    assert worst <= TOL, f"{what}: off by {worst}"
    return worst


def check_tei_embed(args, ref):
    import requests

    res = requests.post(f"{args.base_url}/embed", json={"inputs": EMBED_TEXTS},
                        headers={"Authorization": f"Bearer {args.api_key}"}, timeout=60)
    res.raise_for_status()
    return max_diff(res.json(), ref, "TEI /embed")


def _openai_data(res, n, what, name):
    """Vectors of an openai CreateEmbeddingResponse, checked for order and shape."""
    assert res.object == "list", f"{what}: object {res.object!r}"
    assert res.model == name, f"{what}: model {res.model!r}, expected {name!r}"
    assert len(res.data) == n, f"{what}: {len(res.data)} items, expected {n}"
    for i, d in enumerate(res.data):
        assert d.index == i, f"{what}: data[{i}].index = {d.index}"
        assert d.object == "embedding", f"{what}: data[{i}].object {d.object!r}"
        assert isinstance(d.embedding, list), f"{what}: data[{i}].embedding is {type(d.embedding).__name__}"
    u = res.usage
    assert u is not None and isinstance(u.prompt_tokens, int) and isinstance(u.total_tokens, int), \
        f"{what}: usage {u!r}"
    return [d.embedding for d in res.data]


def check_openai(args, ref):
    from openai import OpenAI

    client = OpenAI(base_url=f"{args.base_url}/v1", api_key=args.api_key, max_retries=0, timeout=60)
    name = args.embedding_name
    worst = 0.0
    # 1. SDK default: the request says encoding_format "base64", the SDK decodes f32 LE bytes
    raw = client.embeddings.with_raw_response.create(model=name, input=EMBED_TEXTS)
    body = raw.http_response.json()
    kinds = sorted({type(d.get("embedding")).__name__ for d in body.get("data", [])})
    assert kinds == ["str"], f"openai base64: embeddings came back as {kinds}, not base64 strings"
    res = raw.parse()
    worst = max(worst, max_diff(_openai_data(res, len(EMBED_TEXTS), "openai base64", name), ref,
                                "openai base64"))
    # 2. explicit floats: the SDK passes the JSON numbers through untouched
    res = client.embeddings.create(model=name, input=EMBED_TEXTS, encoding_format="float")
    worst = max(worst, max_diff(_openai_data(res, len(EMBED_TEXTS), "openai float", name), ref,
                                "openai float"))
    # 3. one string as input
    res = client.embeddings.create(model=name, input=EMBED_TEXTS[0])
    worst = max(worst, max_diff(_openai_data(res, 1, "openai single string", name), ref[:1],
                                "openai single string"))
    return worst


def check_openai_no_model(args, ref):
    import requests

    res = requests.post(f"{args.base_url}/v1/embeddings", json={"input": EMBED_TEXTS},
                        headers={"Authorization": f"Bearer {args.api_key}"}, timeout=60)
    res.raise_for_status()
    data = res.json()["data"]
    assert [d["index"] for d in data] == list(range(len(EMBED_TEXTS))), [d["index"] for d in data]
    return max_diff([d["embedding"] for d in data], ref, "/v1/embeddings without model")


# ------------------------------------------------------------------------------------------


def run_checks(checks, ref, what):
    """Runs every check (reporting each), returns the number that failed."""
    failed = 0
    for name, check in checks:
        try:
            worst = check(ref)
            print(f"client ok: {name}: max |{what}| = {worst:.2e}")
        except Exception as e:  # report every client, then fail
            failed += 1
            print(f"client FAILED: {name}: {type(e).__name__}: {e}", file=sys.stderr)
    return failed


def main():
    ap = server_args(__doc__, api_key_required=True)
    ap.add_argument("--embedding-model-dir", help="also check the embeddings APIs against `rerank embed`")
    ap.add_argument("--embedding-name", help="the served name of that embedding model")
    args = ap.parse_args()
    if args.embedding_model_dir and not args.embedding_name:
        ap.error("--embedding-model-dir needs --embedding-name")
    raw = reference(args)
    checks = [("cohere ClientV2.rerank", lambda r: check_cohere(args, r)),
              ("llama-index TextEmbeddingInference", lambda r: check_llamaindex(args, r)),
              ("requests legacy text_pairs", lambda r: check_requests(args, r))]
    total = len(checks)
    failed = run_checks(checks, raw, "score - rerank score")
    if args.embedding_model_dir:
        ref = embed_reference(args)
        checks = [("requests TEI /embed", lambda r: check_tei_embed(args, r)),
                  ("openai embeddings.create (base64, float, single string)", lambda r: check_openai(args, r)),
                  ("requests /v1/embeddings without model", lambda r: check_openai_no_model(args, r))]
        total += len(checks)
        failed += run_checks(checks, ref, "embedding - rerank embed")
    print(f"clients: {total - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
