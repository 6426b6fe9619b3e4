//! End-to-end tests of `rerank embed`, `rerank eval` and `rerank serve --embedding-model`: the
//! real binary on the tiny XLM-R fixture (a FlagModel-style embedder, and the reranker).

mod common;

use std::path::Path;
use std::process::Output;

use rerank::eval::{evaluate, Qrels, Run};
use rerank_fixtures::{fixtures_root, max_abs_diff, model_dir};
use serde::Deserialize;
use serde_json::{json, Value};

use common::Server;

fn rerank(args: &[&str], stdin: &str) -> Output {
    common::run_rerank(args, stdin, &[])
}

fn tiny() -> String {
    model_dir("xlmr-tiny").to_str().unwrap().to_string()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A failure: non-zero exit and one line on stderr containing `needle`.
fn fails_with(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded; stderr {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
}

#[derive(Deserialize)]
struct FlagReference {
    query_instruction: String,
    queries: Vec<String>,
    query_embeddings: Vec<Vec<f32>>,
    passages: Vec<String>,
    passage_embeddings: Vec<Vec<f32>>,
}

fn flag_reference() -> FlagReference {
    let path = fixtures_root().join("embeddings/xlmr-tiny-flagmodel.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn worst(got: &[Vec<f32>], want: &[Vec<f32>]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(g, w)| max_abs_diff(g, w))
        .fold(0.0, f32::max)
}

#[test]
fn embed_prints_flagmodel_vectors() {
    let reference = flag_reference();
    let model = tiny();
    let input = serde_json::to_string(&reference.passages).unwrap();
    let got: Vec<Vec<f32>> =
        serde_json::from_str(&ok(&rerank(&["embed", "-m", &model], &input))).unwrap();
    assert!(worst(&got, &reference.passage_embeddings) <= 1e-4);
    let input = serde_json::to_string(&reference.queries).unwrap();
    let out = rerank(
        &[
            "embed",
            "-m",
            &model,
            "--query-instruction",
            &reference.query_instruction,
        ],
        &input,
    );
    let got: Vec<Vec<f32>> = serde_json::from_str(&ok(&out)).unwrap();
    assert!(worst(&got, &reference.query_embeddings) <= 1e-4);
    // One string in, one vector out; --no-normalize leaves the CLS state as it is.
    let one = json!(reference.passages[0]).to_string();
    let out = rerank(&["embed", "-m", &model, "--no-normalize"], &one);
    let raw: Vec<Vec<f32>> = serde_json::from_str(&ok(&out)).unwrap();
    let norm: f32 = raw[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() > 1e-3, "norm {norm}");
}

#[test]
fn embed_rejects_bad_input_in_one_line() {
    let model = tiny();
    fails_with(&rerank(&["embed", "-m", &model], "[]"), "no texts");
    fails_with(&rerank(&["embed", "-m", &model], "[1]"), "item 0");
    fails_with(&rerank(&["embed", "-m", &model], "{"), "not valid JSON");
    fails_with(
        &rerank(&["embed", "-m", "/no/such/model"], "[\"a\"]"),
        "/no/such/model",
    );
    fails_with(&rerank(&["embed"], "[\"a\"]"), "--model");
}

#[derive(Deserialize)]
struct Report {
    metrics: std::collections::BTreeMap<String, std::collections::BTreeMap<String, f64>>,
    qrels: Qrels,
    runs: std::collections::BTreeMap<String, Run>,
}

fn samples() -> String {
    fixtures_root()
        .join("retrieval/msmarco-10q.jsonl")
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn eval_dense_then_rerank_writes_runs_that_give_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("eval.json");
    let plot = dir.path().join("eval.svg");
    let model = tiny();
    let out = rerank(
        &[
            "eval",
            "--input",
            &samples(),
            "--embedder",
            &model,
            "--model",
            &model,
            "--top-k",
            "20",
            "--json",
            json_path.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
        ],
        "",
    );
    let table = ok(&out);
    for metric in [
        "recall@1",
        "recall@5",
        "recall@10",
        "mrr@1",
        "mrr@10",
        "ndcg@10",
    ] {
        let line = table.lines().find(|l| l.starts_with(metric)).unwrap();
        assert_eq!(line.split_whitespace().count(), 3, "{line}");
    }
    assert!(table.contains("first stage (top 20)") && table.contains("reranked"));
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(report.qrels.len(), 10);
    for stage in ["first_stage", "reranked"] {
        let run = &report.runs[stage];
        assert_eq!(run.len(), 10);
        assert!(run.values().all(|docs| docs.len() == 20));
        assert_eq!(
            report.metrics[stage],
            evaluate(&report.qrels, run),
            "{stage}"
        );
    }
    // The reranker reorders exactly the first stage's documents.
    for (qid, docs) in &report.runs["first_stage"] {
        let reranked: Vec<&String> = report.runs["reranked"][qid].keys().collect();
        assert_eq!(docs.keys().collect::<Vec<_>>(), reranked);
    }
    // Reranked scores are the reranker's raw scores of (query, document).
    let data = rerank::eval::Dataset::load(Path::new(&samples()), "test").unwrap();
    let reranker = rerank::Reranker::load_dir("tiny", Path::new(&model)).unwrap();
    let (qid, query) = &data.queries[3];
    let pairs: Vec<(&str, &str)> = report.runs["reranked"][qid]
        .keys()
        .map(|id| {
            (
                query.as_str(),
                data.corpus[id.parse::<usize>().unwrap()].1.as_str(),
            )
        })
        .collect();
    let want = reranker
        .compute_score(&pairs, &rerank::ScoreOptions::default())
        .unwrap();
    for ((_, &got), want) in report.runs["reranked"][qid].iter().zip(want) {
        assert!((got - f64::from(want)).abs() < 1e-4);
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("recall@10"),
        "{}",
        &svg[..100]
    );
}

#[test]
fn eval_bm25_on_a_beir_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("qrels")).unwrap();
    std::fs::write(
        d.join("corpus.jsonl"),
        [
            json!({"_id": "p1", "title": "Giant panda", "text": "The giant panda eats bamboo."}),
            json!({"_id": "p2", "title": "", "text": "Paris is the capital of France."}),
            json!({"_id": "p3", "title": "Red panda", "text": "The red panda lives in the Himalayas."}),
        ]
        .map(|v| v.to_string())
        .join("\n"),
    )
    .unwrap();
    std::fs::write(
        d.join("queries.jsonl"),
        json!({"_id": "q1", "text": "what does the giant panda eat"}).to_string(),
    )
    .unwrap();
    std::fs::write(
        d.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\tp1\t1\n",
    )
    .unwrap();
    let json_path = d.join("out.json");
    let out = rerank(
        &[
            "eval",
            "-i",
            d.to_str().unwrap(),
            "--first-stage",
            "bm25",
            "--json",
            json_path.to_str().unwrap(),
        ],
        "",
    );
    let table = ok(&out);
    assert!(
        table.contains("bm25") && !table.contains("reranked"),
        "{table}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(report["metrics"]["first_stage"]["recall@1"], 1.0);
    assert_eq!(report["metrics"]["first_stage"]["mrr@10"], 1.0);
    assert!(report["metrics"].get("reranked").is_none());
    assert!(report["runs"]["first_stage"]["q1"]["p1"].as_f64().unwrap() > 0.0);
}

#[test]
fn eval_errors_are_one_line() {
    let samples = samples();
    fails_with(
        &rerank(&["eval", "-i", &samples, "--first-stage", "dense"], ""),
        "--embedder",
    );
    fails_with(
        &rerank(&["eval", "-i", &samples, "--plot", "out.pdf"], ""),
        ".png or .svg",
    );
    fails_with(
        &rerank(&["eval", "-i", "/no/such.jsonl"], ""),
        "/no/such.jsonl",
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"query\": \"q\", \"pos\": [\"a\"]}\nnot json\n").unwrap();
    fails_with(
        &rerank(&["eval", "-i", bad.to_str().unwrap()], ""),
        "line 2",
    );
}

#[test]
fn serve_an_embedder_alone() {
    let model = tiny();
    let server = Server::start_args(&["--embedding-model", &model, "--served-model-name", "emb"]);
    let body = json!({"input": ["a panda", "Paris"], "model": "emb"});
    let (status, body) = server.request("POST", "/v1/embeddings", Some(&body), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["model"], "emb");
    let rerank_body = json!({"query": "q", "texts": ["a"]});
    let (status, body) = server.request("POST", "/rerank", Some(&rerank_body), None);
    assert_eq!(status, 404, "{body}");
    let (status, _) = server.request("GET", "/health", None, None);
    assert_eq!(status, 200);
    assert!(server.terminate().success());
}
