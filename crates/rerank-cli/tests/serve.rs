//! End-to-end: the real `rerank serve` on a free loopback port, called over HTTP, then stopped
//! with SIGTERM (graceful shutdown → exit 0).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Server;

use rerank_fixtures::model_dir;
use serde_json::json;

/// Scores from `rerank score` for the same pairs: the reference for every API.
fn cli_scores(pairs: &[[&str; 2]]) -> Vec<f64> {
    let model = model_dir("xlmr-tiny");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rerank"))
        .args(["score", "--model", model.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(pairs).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn serves_every_api_and_shuts_down_gracefully() {
    let server = Server::start(&["--api-key", "k", "--served-model-name", "bge-reranker-base"]);
    let query = "what is panda?";
    let docs = [
        "hi",
        "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China.",
    ];
    let raw = cli_scores(&[[query, docs[0]], [query, docs[1]]]);
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());

    assert_eq!(server.request("GET", "/health", None, None).0, 200);
    let (s, v) = server.request(
        "POST",
        "/rerank",
        Some(&json!({"query": query, "texts": docs})),
        Some("k"),
    );
    assert_eq!(s, 200, "{v}");
    for item in v.as_array().unwrap() {
        let i = item["index"].as_u64().unwrap() as usize;
        assert!((item["score"].as_f64().unwrap() - sigmoid(raw[i])).abs() <= 1e-5);
    }
    let (s, v) = server.request(
        "POST",
        "/v2/rerank",
        Some(&json!({"model": "x", "query": query, "documents": docs})),
        Some("k"),
    );
    assert_eq!(s, 200, "{v}");
    for item in v["results"].as_array().unwrap() {
        let i = item["index"].as_u64().unwrap() as usize;
        assert!((item["relevance_score"].as_f64().unwrap() - sigmoid(raw[i])).abs() <= 1e-5);
    }
    let literal = format!("[['{query}', '{}'], ['{query}', '{}']]", docs[0], docs[1]);
    let (s, v) = server.request(
        "POST",
        "/bge-reranker-base/post",
        Some(&json!({"text_pairs": literal})),
        Some("k"),
    );
    assert_eq!(s, 200, "{v}");
    for (got, want) in v["rerank_scores"].as_array().unwrap().iter().zip(&raw) {
        assert!((got.as_f64().unwrap() - want).abs() <= 1e-5);
    }
    let (s, v) = server.request(
        "POST",
        "/rerank",
        Some(&json!({"query": query, "texts": docs})),
        None,
    );
    assert_eq!((s, v["error_type"].as_str()), (401, Some("Unauthorized")));
    let (s, _) = server.request("POST", "/rerank", Some(&json!({"query": query})), Some("k"));
    assert_eq!(s, 422);
    assert_eq!(server.request("GET", "/health", None, None).0, 200);

    let status = server.terminate();
    assert!(
        status.success(),
        "graceful shutdown must exit 0, got {status}"
    );
}

#[test]
fn bad_flags_fail_before_listening() {
    let out = Command::new(env!("CARGO_BIN_EXE_rerank"))
        .args(["serve", "--model", "/no/such/model", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/no/such/model") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
