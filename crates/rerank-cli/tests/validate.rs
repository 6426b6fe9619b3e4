//! `rerank validate` end to end (PASS on equal models and on saved scores, FAIL with a non-zero
//! exit on a different model) and `rerank bench`'s seed-000 summary line.

mod common;

use std::process::Output;

use rerank_fixtures::{fixtures_root, model_dir};
use serde_json::Value;

fn rerank(args: &[&str], stdin: &str) -> Output {
    common::run_rerank(args, stdin, &[])
}

fn data() -> String {
    fixtures_root()
        .join("retrieval/msmarco-10q.jsonl")
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn validate_passes_on_equal_scores_and_fails_on_a_different_model() {
    let (xlmr, bert) = (model_dir("xlmr-tiny"), model_dir("bert-tiny"));
    let (xlmr, bert) = (xlmr.to_str().unwrap(), bert.to_str().unwrap());
    let data = data();
    let out = rerank(
        &[
            "validate",
            "-m",
            xlmr,
            "--data",
            &data,
            "--against",
            xlmr,
            "--json",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["pass"], true);
    assert_eq!(report["pairs"], 260);
    assert_eq!(report["max_abs_diff"], 0.0);
    for key in ["mean_abs_diff", "pearson", "kendall_tau", "top1_agreement"] {
        assert!(report[key].is_number(), "{key}");
    }
    // Saved scores of the same pairs (one per line) as the reference: PASS.
    let pairs: Vec<(String, String)> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .flat_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let q = v["query"].as_str().unwrap().to_string();
            let passages: Vec<String> = v["pos"]
                .as_array()
                .unwrap()
                .iter()
                .chain(v["neg"].as_array().unwrap())
                .map(|p| p.as_str().unwrap().to_string())
                .collect();
            passages.into_iter().map(move |p| (q.clone(), p))
        })
        .collect();
    let scored = rerank(
        &["score", "-m", xlmr],
        &serde_json::to_string(&pairs).unwrap(),
    );
    let scores: Vec<f64> = serde_json::from_slice(&scored.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("scores.txt");
    let lines: Vec<String> = scores.iter().map(|s| s.to_string()).collect();
    std::fs::write(&reference, lines.join("\n")).unwrap();
    let out = rerank(
        &[
            "validate",
            "-m",
            xlmr,
            "--data",
            &data,
            "--reference",
            reference.to_str().unwrap(),
        ],
        "",
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains("PASS"), "{table}");
    // A different model: FAIL, exit code 1, one line on stderr.
    let out = rerank(
        &["validate", "-m", xlmr, "--data", &data, "--against", bert],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // A reference of the wrong length is an error naming both counts.
    std::fs::write(&reference, "1\n2\n").unwrap();
    let out = rerank(
        &[
            "validate",
            "-m",
            xlmr,
            "--data",
            &data,
            "--reference",
            reference.to_str().unwrap(),
        ],
        "",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 scores for 260 pairs"));
}

#[test]
fn bench_prints_the_seed_summary_line() {
    let model = model_dir("xlmr-tiny");
    let out = rerank(
        &[
            "bench",
            "-m",
            model.to_str().unwrap(),
            "--batch-size",
            "2",
            "--seq-len",
            "64",
            "--iterations",
            "1",
            "--warmup",
            "0",
            "--peak-gflops",
            "100",
        ],
        "",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("summary: "))
        .expect("summary line");
    for key in [
        "avg_sps: ",
        "e2e_time: ",
        "avg_inference_time: ",
        "avg_preprocess_time: ",
        "avg_postprocess: ",
    ] {
        assert!(line.contains(key), "{line}");
    }
}
