//! recall@k, MRR@k and nDCG@10 against pytrec_eval (trec_eval 9.0.8 via pytrec-eval-terrier) on
//! the committed qrels and run of `tests/fixtures/eval/trec.json` (graded relevance, score ties
//! around ranks 1, 5 and 10, a query without relevant documents, a query missing from the run).

use std::collections::BTreeMap;

use rerank::eval::{evaluate, per_query, Qrels, Run};
use rerank_fixtures::fixtures_root;
use serde::Deserialize;

#[derive(Deserialize)]
struct TrecReference {
    qrels: Qrels,
    run: Run,
    per_query: BTreeMap<String, BTreeMap<String, f64>>,
    mean: BTreeMap<String, f64>,
}

#[test]
fn metrics_equal_pytrec_eval() {
    let path = fixtures_root().join("eval").join("trec.json");
    let reference: TrecReference =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ours = per_query(&reference.qrels, &reference.run);
    assert_eq!(ours.len(), reference.per_query.len());
    let mut compared = 0;
    for (qid, want) in &reference.per_query {
        for (metric, &value) in want {
            let got = ours[qid][metric];
            assert!(
                (got - value).abs() <= 1e-9,
                "query {qid} {metric}: ours {got}, pytrec_eval {value}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, reference.per_query.len() * 6);
    let mean = evaluate(&reference.qrels, &reference.run);
    assert_eq!(mean.len(), 6);
    for (metric, &value) in &reference.mean {
        assert!((mean[metric] - value).abs() <= 1e-9, "mean {metric}");
    }
    println!("{compared} per-query values and 6 means equal pytrec_eval's to 1e-9");
}
