#!/usr/bin/env python3
"""Re-check the metrics of `rerank eval --json FILE` with pytrec_eval (trec_eval) and ir_measures.

    python scripts/reference/check_eval.py RESULT.json [--tolerance 1e-9]

RESULT.json:
    {"metrics": {"first_stage": {"recall@1", "recall@5", "recall@10", "mrr@1", "mrr@10", "ndcg@10"},
                 "reranked": {...}},
     "qrels": {qid: {docid: rel}},
     "runs": {"first_stage": {qid: {docid: score}}, "reranked": {qid: {docid: score}}}}

Every metric of both stages is recomputed from qrels + runs and compared; exit status 1 with one
line per difference if any |ours - reference| > tolerance, else one "ok" line per stage.

Definitions (those of tests/fixtures/eval/trec.json, see scripts/reference/README.md):
- a run is ranked as trec_eval ranks it: score descending, equal scores by docid descending
  (byte-wise string comparison: "d9" before "d12" before "d1");
- relevant = qrels relevance >= 1 (0 = judged irrelevant);
- recall@k = pytrec_eval recall_k; ndcg@10 = pytrec_eval ndcg_cut_10 (gain = relevance, linear);
- mrr@k = 1/rank of the first relevant doc if that rank <= k, else 0: pytrec_eval recip_rank (no
  cutoff) thresholded at k, cross-checked with ir_measures RR@k on the run re-scored by that rank
  (ir_measures computes RR@k with its msmarco provider, which breaks ties by docid *ascending*,
  so it is not given the tied scores);
- ir_measures' nDCG@10 and R@k (its pytrec_eval provider) must agree with pytrec_eval;
- the mean is over every qid in qrels: a qid with no relevant doc in qrels scores 0 (pytrec_eval and
  ir_measures both give 0), a qid absent from the run (or with an empty run) scores 0 (ir_measures
  does this; pytrec_eval omits such a qid, so it is filled in here); run qids not in qrels are
  ignored.

Needs only pytrec-eval-terrier and ir-measures (scripts/clients/requirements.txt).
"""

import argparse
import json
import sys

METRIC_KEYS = ["recall@1", "recall@5", "recall@10", "mrr@1", "mrr@10", "ndcg@10"]
TREC_MEASURES = {"recall_1": "recall@1", "recall_5": "recall@5", "recall_10": "recall@10",
                 "ndcg_cut_10": "ndcg@10"}
STAGES = ["first_stage", "reranked"]


def trec_order(run_q):
    """trec_eval's ranking of one query's {docid: score}: score descending, then docid
    descending (strcmp on the bytes)."""
    return sorted(run_q, key=lambda d: (-run_q[d], _desc_bytes(d)))


def _desc_bytes(d):
    # descending byte-wise order as an ascending key; the trailing 256 sorts a prefix after the
    # longer string ("d1" after "d12"), as strcmp(b, a) does
    return [-b for b in d.encode("utf-8")] + [256]


def rank_scored(run):
    """The run with every score replaced by n - rank in trec_eval order (no ties left)."""
    out = {}
    for qid, run_q in run.items():
        ranked = trec_order(run_q)
        out[qid] = {d: float(len(ranked) - i) for i, d in enumerate(ranked)}
    return out


def reference_metrics(qrels, run):
    """{qid: {metric: value}} for every qid in qrels."""
    import ir_measures
    import pytrec_eval
    from ir_measures import R, RR, nDCG

    qrels = {q: {d: int(r) for d, r in ds.items()} for q, ds in qrels.items()}
    run = {q: {d: float(s) for d, s in ds.items()} for q, ds in run.items() if q in qrels and ds}
    measures = set(TREC_MEASURES) | {"recip_rank", "success_1"}
    ev = pytrec_eval.RelevanceEvaluator(qrels, measures)
    trec = ev.evaluate(run)
    untied = rank_scored(run)
    # trec_order is trec_eval's order: with the ties broken that way nothing changes
    trec_untied = ev.evaluate(untied)
    for qid in trec:
        for m in measures:
            assert trec[qid][m] == trec_untied[qid][m], ("trec_order is not trec_eval's order", qid, m)

    irm = {}
    for m in ir_measures.iter_calc([nDCG @ 10, R @ 1, R @ 5, R @ 10], qrels, run):
        irm.setdefault(m.query_id, {})[str(m.measure)] = m.value
    for m in ir_measures.iter_calc([RR @ 1, RR @ 10], qrels, untied):
        irm.setdefault(m.query_id, {})[str(m.measure)] = m.value

    out = {}
    for qid in qrels:
        if qid not in trec:  # absent from the run
            row = {k: 0.0 for k in METRIC_KEYS}
        else:
            t = trec[qid]
            row = {v: float(t[k]) for k, v in TREC_MEASURES.items()}
            rr = float(t["recip_rank"])
            rank = round(1 / rr) if rr > 0 else None
            row["mrr@1"] = rr if rank == 1 else 0.0
            row["mrr@10"] = rr if rank is not None and rank <= 10 else 0.0
            assert row["mrr@1"] == float(t["success_1"]), (qid, row["mrr@1"], t["success_1"])
        i = irm.get(qid, {})
        for k, name in [("ndcg@10", "nDCG@10"), ("recall@1", "R@1"), ("recall@5", "R@5"),
                        ("recall@10", "R@10"), ("mrr@1", "RR@1"), ("mrr@10", "RR@10")]:
            assert abs(row[k] - i.get(name, 0.0)) < 1e-12, ("ir_measures disagrees", qid, k, row[k], i.get(name))
        out[qid] = {k: row[k] for k in METRIC_KEYS}
    return out


def mean_metrics(per_query):
    n = len(per_query)
    return {k: (sum(v[k] for v in per_query.values()) / n if n else 0.0) for k in METRIC_KEYS}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("result")
    ap.add_argument("--tolerance", type=float, default=1e-9)
    args = ap.parse_args()
    with open(args.result, encoding="utf-8") as f:
        res = json.load(f)
    qrels = res["qrels"]
    failures, lines = [], []
    # "first_stage" always; "reranked" when `rerank eval` was given a --model.
    stages = [s for s in STAGES if s in res["metrics"]]
    if "first_stage" not in stages or set(res["metrics"]) - set(STAGES):
        print(f"check_eval: unexpected stages {sorted(res['metrics'])}", file=sys.stderr)
        sys.exit(1)
    for stage in stages:
        ours = res["metrics"][stage]
        ref = mean_metrics(reference_metrics(qrels, res["runs"][stage]))
        for k in METRIC_KEYS:
            if k not in ours:
                failures.append(f"{stage} {k}: missing (reference {ref[k]!r})")
            elif not abs(float(ours[k]) - ref[k]) <= args.tolerance:
                failures.append(f"{stage} {k}: ours {ours[k]!r}, reference {ref[k]!r}, "
                                f"diff {abs(float(ours[k]) - ref[k]):.3e}")
        lines.append(f"{stage}: " + " ".join(f"{k}={ref[k]:.6f}" for k in METRIC_KEYS))
    if failures:
        for f in failures:
            print(f"MISMATCH {f}", file=sys.stderr)
        print(f"check_eval: {len(failures)} metric(s) off by more than {args.tolerance:g}", file=sys.stderr)
        sys.exit(1)
    for line in lines:
        print(f"{line} ok")


if __name__ == "__main__":
    main()
