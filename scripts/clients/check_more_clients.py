"""More real rerank clients against a running `rerank serve`, unmodified, each checked against
`rerank score` for the same pairs (sigmoid of the logit wherever the API returns sigmoid):

  litellm-huggingface   LiteLLM `rerank(model="huggingface/NAME", api_base=URL)`: POST /rerank with
                        TEI's `{query, texts, raw_scores: false, truncation_direction: "Right",
                        return_text, top_n}`, reads the bare `[{index, score, text}]` list
  litellm-infinity      LiteLLM `infinity/`: POST /rerank with `{model, query, documents, top_n,
                        return_documents}`, reads `results[].index/relevance_score` and `usage`;
                        with return_documents (LiteLLM's default) it takes `document` as Infinity's
                        bare string, not the `{"text"}` object the server returns
  litellm-hosted-vllm   LiteLLM `hosted_vllm/`: the same body to /rerank, reads `results` (document
                        as `{"text"}`) and validates `meta` when present
  litellm-cohere        LiteLLM `cohere/`: api_base=URL posts to /v2/rerank, api_base=URL/v1/rerank
                        to /v1/rerank; the whole answer is validated as a Cohere RerankResponse
  haystack-tei          Haystack's `HuggingFaceTEIRanker(url=URL, token=KEY)` (POST /rerank
                        `{query, texts, raw_scores}`; sigmoid, raw_scores=True and a truncation
                        direction)
  dify-tei              Dify's TEI plugin, replayed: GET /info (model_type must be "reranker",
                        max_input_length, max_client_batch_size), then POST /rerank
                        `{query, texts, return_text: true}` reading index/text/score
  openwebui-external    Open WebUI's external reranker, replayed: POST URL/v1/rerank
                        `{model, query, documents, top_n}`, scores from results[] sorted by index
  ragflow-xinference    RAGFlow's Xinference provider, replayed: POST URL/v1/rerank with
                        `"return_documents": "true", "return_len": "true"` (strings), reads
                        results[] and meta.tokens
  langchain-cohere      langchain-cohere `CohereRerank(base_url=URL, cohere_api_key=KEY, model=NAME)`
                        (cohere 5.x ClientV2, POST /v2/rerank)
  langchain-infinity    langchain-community `InfinityRerank(client=infinity_client.Client(
                        base_url=URL, headers={"Authorization": "Bearer KEY"}))` (POST /rerank
                        `{query, documents, model, return_documents: false, raw_scores: false}`)
  langchain-jina        langchain-community `JinaRerank`, which has no URL setting: pointed at the
                        server by setting the module constant `jina_rerank.JINA_API_URL` to
                        URL/v1/rerank (the only change made to any client here)
  llamaindex-jina       LlamaIndex `JinaRerank(base_url=URL/v1)` (POST /v1/rerank)
  llamaindex-cohere     LlamaIndex `CohereRerank(base_url=URL)` (cohere ClientV2, POST /v2/rerank)
  tei-metrics           GET /metrics has TEI's te_request_count, te_request_success, te_queue_size
                        and te_request_duration_bucket, and the request counters went up while
                        this run made its calls (run it last)

    python check_more_clients.py --base-url http://127.0.0.1:8080 --rerank-bin target/debug/rerank \
        --model DIR --served-model-name NAME --api-key KEY [--only NAME[,NAME...]]

The clients need two virtual environments (LiteLLM needs httpx>=0.28, infinity_client httpx<0.28;
langchain-cohere needs cohere<6): requirements-more.txt for litellm-*, haystack-tei, dify-tei,
openwebui-external, ragflow-xinference and tei-metrics; requirements-more-cohere5.txt for
langchain-* and llamaindex-*. run_more_clients.sh builds both and runs each group with --only.
"""

import os
import sys
from urllib.parse import urljoin

# Keep the clients off the network: LiteLLM would fetch its model-cost map, Hugging Face libraries
# would look up the hub, Haystack would send telemetry. None of this changes what they send us.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from check_clients import DOCS, QUERY, TOL  # noqa: E402
from common import rerank_scores, server_args, sigmoid  # noqa: E402

TIMEOUT = 60
# Dify's TEI plugin validates its credentials with this query and these documents.
DIFY_QUERY = "Whose kasumi"
DIFY_DOCS = [
    'Kasumi is a girl\'s name of Japanese origin meaning "mist".',
    "Her music is a kawaii bass, a mix of future bass, pop, and kawaii music ",
    "and she leads a team named PopiParty.",
]
METRIC_NAMES = ["te_request_count", "te_request_success", "te_queue_size", "te_request_duration_bucket"]


class Ref:
    """Raw logits from `rerank score` for QUERY x DOCS and Dify's validation pairs."""

    def __init__(self, args):
        pairs = [[QUERY, d] for d in DOCS] + [[DIFY_QUERY, d] for d in DIFY_DOCS]
        raw = rerank_scores(args.rerank_bin, args.model, pairs)
        assert len(raw) == len(pairs), f"rerank score gave {len(raw)} scores for {len(pairs)} pairs"
        self.raw = raw[: len(DOCS)]
        self.dify_raw = raw[len(DOCS):]
        self.best = max(range(len(DOCS)), key=lambda i: self.raw[i])


def auth(args):
    return {"Authorization": f"Bearer {args.api_key}"}


def check_ranked(what, ranked, raw, *, n, docs=None, transform=sigmoid, texts=None):
    """`ranked` is [(index, score)] in the order the client gave them: n of them, distinct indices,
    best first, each score equal to transform(raw[index]); `texts` (same order), when given, must be
    the documents (of `docs`, default DOCS) at those indices. Returns the largest |score - reference|."""
    idx = [i for i, _ in ranked]
    assert len(ranked) == n, f"{what}: {len(ranked)} results, expected {n}: {ranked}"
    assert len(set(idx)) == n and all(0 <= i < len(raw) for i in idx), f"{what}: indices {idx}"
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True), f"{what}: not sorted by score: {scores}"
    assert idx[0] == max(range(len(raw)), key=lambda i: raw[i]), f"{what}: best is {idx[0]}, not the top pair"
    if texts is not None:
        docs = docs or DOCS
        for i, t in zip(idx, texts):
            assert t == docs[i], f"{what}: document {i} came back as {t!r}"
    worst = max(abs(float(s) - transform(raw[i])) for i, s in ranked)
    assert worst <= TOL, f"{what}: off by {worst}"
    return worst


# ------------------------------------------------------------------------------------------
# LiteLLM


def _litellm(args, provider, **kw):
    import litellm

    kw.setdefault("api_base", args.base_url)
    return litellm.rerank(model=f"{provider}/{args.served_model_name}", query=QUERY, documents=DOCS,
                          api_key=args.api_key, timeout=TIMEOUT, **kw)


def _litellm_results(res):
    return [(r["index"], r["relevance_score"]) for r in res.results]


def _litellm_texts(res):
    return [r["document"]["text"] for r in res.results]


def check_litellm_huggingface(args, ref):
    # TEI has no top_n: the server answers every text, and LiteLLM passes them all on.
    res = _litellm(args, "huggingface", top_n=3)
    worst = check_ranked("litellm huggingface/", _litellm_results(res), ref.raw, n=len(DOCS),
                         texts=_litellm_texts(res))
    res = _litellm(args, "huggingface", return_documents=False)
    assert all("document" not in r for r in res.results), res.results
    return max(worst, check_ranked("litellm huggingface/ (no documents)", _litellm_results(res), ref.raw,
                                   n=len(DOCS)))


def check_litellm_infinity(args, ref):
    # LiteLLM's infinity/ provider reads each result's `document` as a bare string (Infinity's
    # form) while its hosted_vllm/ provider, sending the same bytes to the same /rerank, reads an
    # object {"text"}. One server cannot answer both; we answer as vLLM (README), so infinity/
    # users pass return_documents=False (LiteLLM's default is True).
    res = _litellm(args, "infinity", top_n=3, return_documents=False)
    return check_ranked("litellm infinity/ (return_documents=False)", _litellm_results(res), ref.raw, n=3)


def check_litellm_hosted_vllm(args, ref):
    res = _litellm(args, "hosted_vllm", top_n=3)
    worst = check_ranked("litellm hosted_vllm/", _litellm_results(res), ref.raw, n=3, texts=_litellm_texts(res))
    res = _litellm(args, "hosted_vllm", return_documents=False)
    assert all("document" not in r for r in res.results), res.results
    return max(worst, check_ranked("litellm hosted_vllm/ (no documents)", _litellm_results(res), ref.raw,
                                   n=len(DOCS)))


def check_litellm_cohere(args, ref):
    worst = 0.0
    for base in (args.base_url, f"{args.base_url}/v1/rerank"):  # v2 config, then v1 config
        res = _litellm(args, "cohere", top_n=3, api_base=base)
        worst = max(worst, check_ranked(f"litellm cohere/ at {base}", _litellm_results(res), ref.raw, n=3,
                                        texts=_litellm_texts(res)))
        meta = res.meta or {}
        assert (meta.get("billed_units") or {}).get("search_units") == 1, f"litellm cohere/: meta {meta}"
    return worst


# ------------------------------------------------------------------------------------------
# Haystack


def check_haystack_tei(args, ref):
    from haystack import Document
    from haystack.utils import Secret
    from haystack_integrations.components.rankers.huggingface_api import (
        HuggingFaceTEIRanker,
        TruncationDirection,
    )

    docs = [Document(content=d) for d in DOCS]

    def ranked(out):
        return [(DOCS.index(d.content), d.score) for d in out["documents"]]

    token = Secret.from_token(args.api_key)
    ranker = HuggingFaceTEIRanker(url=args.base_url, token=token, top_k=3, max_retries=1)
    worst = check_ranked("haystack", ranked(ranker.run(query=QUERY, documents=docs)), ref.raw, n=3)
    out = ranker.run(query=QUERY, documents=docs, top_k=2, truncation_direction=TruncationDirection.RIGHT)
    worst = max(worst, check_ranked("haystack truncation Right", ranked(out), ref.raw, n=2))
    raw_ranker = HuggingFaceTEIRanker(url=args.base_url, token=token, raw_scores=True, max_retries=1)
    out = raw_ranker.run(query=QUERY, documents=docs)
    return max(worst, check_ranked("haystack raw_scores", ranked(out), ref.raw, n=len(DOCS),
                                   transform=lambda x: x))


# ------------------------------------------------------------------------------------------
# Dify, Open WebUI, RAGFlow: their request sequences replayed with the HTTP library each uses


def check_dify_tei(args, ref):
    import httpx
    from requests.adapters import HTTPAdapter
    from requests.sessions import Session

    server_url = args.base_url.removesuffix("/")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {args.api_key}"}
    # validate_credentials: TeiHelper._get_tei_extra_parameter
    session = Session()
    session.mount("http://", HTTPAdapter(max_retries=3))
    response = session.get(f"{server_url}/info", headers=headers, timeout=10)
    assert response.status_code == 200, f"dify GET /info: {response.status_code} {response.text}"
    info = response.json()
    model_type = info.get("model_type", {})
    assert len(model_type.keys()) >= 1, f"dify: model_type is empty: {info}"
    assert list(model_type.keys())[0] == "reranker", f"dify: model_type {model_type}"
    assert isinstance(info.get("max_input_length", 512), int), info
    assert isinstance(info.get("max_client_batch_size", 1), int), info

    def invoke(query, docs, score_threshold=None, top_n=None):
        # TeiHelper.invoke_rerank, then the plugin's loop over the list
        r = httpx.post(f"{server_url}/rerank", json={"query": query, "texts": docs, "return_text": True},
                       headers=headers, timeout=TIMEOUT)
        r.raise_for_status()
        kept = []
        for result in r.json():
            item = (result["index"], result["text"], result["score"])
            if score_threshold is None or result["score"] >= score_threshold:
                kept.append(item)
            if top_n is not None and len(kept) >= top_n:
                break
        return kept

    # validate_credentials invokes with its own documents and score_threshold=0.8
    kept = invoke(DIFY_QUERY, DIFY_DOCS, score_threshold=0.8)
    want = sum(1 for x in ref.dify_raw if sigmoid(x) >= 0.8)
    assert len(kept) == want, f"dify validation: kept {len(kept)}, expected {want}"
    worst = max([abs(s - sigmoid(ref.dify_raw[i])) for i, _, s in kept], default=0.0)
    for i, text, _ in kept:
        assert text == DIFY_DOCS[i], f"dify validation: text {text!r} for index {i}"
    kept = invoke(QUERY, DOCS, top_n=3)
    return max(worst, check_ranked("dify rerank", [(i, s) for i, _, s in kept], ref.raw, n=3,
                                   texts=[t for _, t, _ in kept]))


def check_openwebui_external(args, ref):
    import requests

    # ExternalReranker(api_key, url=<RAG reranking URL setting>, model=<model setting>).predict(...)
    sentences = [(QUERY, d) for d in DOCS]
    docs = [s[1] for s in sentences]
    payload = {"model": args.served_model_name, "query": sentences[0][0], "documents": docs, "top_n": len(docs)}
    r = requests.post(f"{args.base_url}/v1/rerank",
                      headers={"Content-Type": "application/json", "Authorization": f"Bearer {args.api_key}"},
                      json=payload, timeout=TIMEOUT)
    r.raise_for_status()
    data = r.json()
    assert "results" in data, f"open webui: no results in {data}"
    results = data["results"]
    check_ranked("open webui (as sent)", [(x["index"], x["relevance_score"]) for x in results], ref.raw,
                 n=len(DOCS))
    scores = [x["relevance_score"] for x in sorted(results, key=lambda x: x["index"])]
    assert len(scores) == len(DOCS), scores
    worst = max(abs(s - sigmoid(x)) for s, x in zip(scores, ref.raw))
    assert worst <= TOL, f"open webui: off by {worst}"
    return worst


def check_ragflow_xinference(args, ref):
    import requests

    # XInferenceRerank(key, model_name, base_url): "/v1/rerank" is joined on when the URL lacks it
    base_url = args.base_url
    if base_url.find("/v1") == -1:
        base_url = urljoin(base_url, "/v1/rerank")
    if base_url.find("/rerank") == -1:
        base_url = urljoin(base_url, "/v1/rerank")
    headers = {"Content-Type": "application/json", "accept": "application/json",
               "Authorization": f"Bearer {args.api_key}"}
    data = {"model": args.served_model_name, "query": QUERY, "return_documents": "true", "return_len": "true",
            "documents": DOCS}
    r = requests.post(base_url, headers=headers, json=data, timeout=TIMEOUT)
    assert r.status_code == 200, f"ragflow: {r.status_code} {r.text}"
    res = r.json()
    rank = [0.0] * len(DOCS)
    for d in res["results"]:
        rank[d["index"]] = d["relevance_score"]
    # older RAGFlow releases count tokens from meta.tokens
    tokens = res["meta"]["tokens"]["input_tokens"] + res["meta"]["tokens"]["output_tokens"]
    assert isinstance(tokens, int) and tokens > 0, f"ragflow: meta {res['meta']}"
    worst = check_ranked("ragflow", [(d["index"], d["relevance_score"]) for d in res["results"]], ref.raw,
                         n=len(DOCS), texts=[d["document"]["text"] for d in res["results"]])
    worst = max(worst, max(abs(s - sigmoid(x)) for s, x in zip(rank, ref.raw)))
    assert worst <= TOL, f"ragflow: off by {worst}"
    return worst


# ------------------------------------------------------------------------------------------
# LangChain


def _langchain_compressed(what, out, ref, n):
    ranked = [(DOCS.index(d.page_content), d.metadata["relevance_score"]) for d in out]
    return check_ranked(what, ranked, ref.raw, n=n)


def check_langchain_cohere(args, ref):
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    rr = CohereRerank(base_url=args.base_url, cohere_api_key=args.api_key, model=args.served_model_name)
    worst = check_ranked("langchain-cohere rerank",
                         [(r["index"], r["relevance_score"]) for r in rr.rerank(DOCS, QUERY)], ref.raw, n=3)
    out = rr.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    return max(worst, _langchain_compressed("langchain-cohere compress_documents", out, ref, 3))


def check_langchain_infinity(args, ref):
    from infinity_client import Client
    from langchain_community.document_compressors.infinity_rerank import InfinityRerank
    from langchain_core.documents import Document

    # InfinityRerank takes a plain infinity_client.Client (not AuthenticatedClient): the key goes in
    # its headers.
    client = Client(base_url=args.base_url, headers=auth(args), raise_on_unexpected_status=True)
    rr = InfinityRerank(client=client, model=args.served_model_name, top_n=3)
    worst = check_ranked("langchain InfinityRerank rerank",
                         [(r["index"], r["relevance_score"]) for r in rr.rerank(DOCS, QUERY)], ref.raw, n=3)
    out = rr.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    return max(worst, _langchain_compressed("langchain InfinityRerank compress_documents", out, ref, 3))


def check_langchain_jina(args, ref):
    from langchain_community.document_compressors import jina_rerank
    from langchain_core.documents import Document

    # JinaRerank posts to this module constant and offers no other URL setting.
    jina_rerank.JINA_API_URL = f"{args.base_url}/v1/rerank"
    rr = jina_rerank.JinaRerank(jina_api_key=args.api_key, model=args.served_model_name, top_n=3)
    worst = check_ranked("langchain JinaRerank rerank",
                         [(r["index"], r["relevance_score"]) for r in rr.rerank(DOCS, QUERY)], ref.raw, n=3)
    out = rr.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    return max(worst, _langchain_compressed("langchain JinaRerank compress_documents", out, ref, 3))


# ------------------------------------------------------------------------------------------
# LlamaIndex


def _llamaindex(what, post, ref, n):
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    nodes = [NodeWithScore(node=TextNode(text=d, id_=str(i)), score=0.0) for i, d in enumerate(DOCS)]
    out = post.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    return check_ranked(what, [(int(x.node.id_), x.score) for x in out], ref.raw, n=n,
                        texts=[x.node.get_content() for x in out])


def check_llamaindex_jina(args, ref):
    from llama_index.postprocessor.jinaai_rerank import JinaRerank

    post = JinaRerank(base_url=f"{args.base_url}/v1", api_key=args.api_key, model=args.served_model_name, top_n=2)
    return _llamaindex("llama-index JinaRerank", post, ref, 2)


def check_llamaindex_cohere(args, ref):
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    post = CohereRerank(base_url=args.base_url, api_key=args.api_key, model=args.served_model_name, top_n=2,
                        max_retries=1)
    return _llamaindex("llama-index CohereRerank", post, ref, 2)


# ------------------------------------------------------------------------------------------
# TEI's Prometheus metrics


def metric_samples(args):
    """{name: summed value} of GET /metrics (labels dropped)."""
    import requests

    r = requests.get(f"{args.base_url}/metrics", headers=auth(args), timeout=TIMEOUT)
    r.raise_for_status()
    out = {}
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        out[name] = out.get(name, 0.0) + value
    return out


def check_tei_metrics(args, before):
    after = metric_samples(args)
    missing = [m for m in METRIC_NAMES if m not in after]
    assert not missing, f"GET /metrics lacks {missing}"
    grew = {}
    for name in ("te_request_count", "te_request_success"):
        grew[name] = after[name] - before.get(name, 0.0)
        assert grew[name] > 0, f"{name} did not go up during this run ({before.get(name)} -> {after[name]})"
    return ", ".join(METRIC_NAMES) + " present; " + ", ".join(f"{k} +{v:g}" for k, v in grew.items())


# ------------------------------------------------------------------------------------------

CHECKS = [
    ("litellm-huggingface", "LiteLLM rerank huggingface/ (TEI /rerank)", check_litellm_huggingface),
    ("litellm-infinity", "LiteLLM rerank infinity/ (/rerank)", check_litellm_infinity),
    ("litellm-hosted-vllm", "LiteLLM rerank hosted_vllm/ (/rerank)", check_litellm_hosted_vllm),
    ("litellm-cohere", "LiteLLM rerank cohere/ (/v2/rerank, /v1/rerank)", check_litellm_cohere),
    ("haystack-tei", "Haystack HuggingFaceTEIRanker", check_haystack_tei),
    ("dify-tei", "Dify TEI plugin (GET /info, POST /rerank)", check_dify_tei),
    ("openwebui-external", "Open WebUI ExternalReranker (/v1/rerank)", check_openwebui_external),
    ("ragflow-xinference", "RAGFlow XInferenceRerank (/v1/rerank, string booleans)", check_ragflow_xinference),
    ("langchain-cohere", "langchain-cohere CohereRerank(base_url=...)", check_langchain_cohere),
    ("langchain-infinity", "langchain-community InfinityRerank + infinity_client", check_langchain_infinity),
    ("langchain-jina", "langchain-community JinaRerank (JINA_API_URL set)", check_langchain_jina),
    ("llamaindex-jina", "llama-index JinaRerank(base_url=...)", check_llamaindex_jina),
    ("llamaindex-cohere", "llama-index CohereRerank(base_url=...)", check_llamaindex_cohere),
    ("tei-metrics", "GET /metrics (TEI names)", None),
]


def main():
    ap = server_args(__doc__, api_key_required=True)
    ap.add_argument("--only", help="comma-separated check names (default: all): "
                    + ", ".join(name for name, _, _ in CHECKS))
    args = ap.parse_args()
    known = [name for name, _, _ in CHECKS]
    selected = known if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in selected if s not in known]
    if unknown:
        ap.error(f"unknown check(s) {unknown}; known: {known}")
    before = metric_samples(args) if "tei-metrics" in selected else {}
    ref = Ref(args)
    failed = 0
    for name, label, check in CHECKS:
        if name not in selected:
            continue
        try:
            if check is None:
                print(f"client ok: {label}: {check_tei_metrics(args, before)}")
            else:
                print(f"client ok: {label}: max |score - rerank score| = {check(args, ref):.2e}")
        except Exception as e:  # report every client, then fail
            failed += 1
            print(f"client FAILED: {label}: {type(e).__name__}: {e}", file=sys.stderr)
    print(f"clients: {len(selected) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
