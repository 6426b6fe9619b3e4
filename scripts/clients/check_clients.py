"""Calls a running `rerank serve` with the real client libraries users have, unmodified, and
checks their scores against `rerank score` for the same pairs:

- the official `cohere` SDK: `ClientV2(base_url=...).rerank(...)` (POST /v2/rerank);
- LlamaIndex's TEI rerank postprocessor (`llama-index-postprocessor-tei-rerank`, POST /rerank);
- the seed's plain `requests` call of the legacy service (POST /{name}/post with `text_pairs`
  as a Python-literal string, sent as `data=json.dumps(...)`).

    python check_clients.py --base-url http://127.0.0.1:8080 --rerank-bin target/debug/rerank \
        --model DIR --served-model-name NAME --api-key KEY
"""

import json
import sys

from common import rerank_scores, server_args, sigmoid

TOL = 1e-5
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


def main():
    args = server_args(__doc__, api_key_required=True).parse_args()
    raw = reference(args)
    failed = 0
    for name, check in [("cohere ClientV2.rerank", check_cohere),
                        ("llama-index TextEmbeddingInference", check_llamaindex),
                        ("requests legacy text_pairs", check_requests)]:
        try:
            worst = check(args, raw)
            print(f"client ok: {name}: max |score - rerank score| = {worst:.2e}")
        except Exception as e:  # report every client, then fail
            failed += 1
            print(f"client FAILED: {name}: {type(e).__name__}: {e}", file=sys.stderr)
    print(f"clients: {3 - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
