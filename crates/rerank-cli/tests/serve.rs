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

#[test]
fn an_llm_reranker_takes_a_prompt_on_every_api() {
    let server = Server::start_model("gemma-tiny", &[]);
    let reference = rerank_fixtures::reference("gemma-tiny");
    let case = reference
        .cases
        .iter()
        .find(|c| c.name == "prompt-custom")
        .expect("prompt-custom case");
    let prompt = "Is passage B relevant to query A? Answer Yes or No.";
    let query = &case.pairs[0].0;
    let docs = [&case.pairs[0].1, &case.pairs[1].1];
    assert_eq!(query, &case.pairs[1].0);
    let want = [case.scores[0] as f64, case.scores[1] as f64];
    let close = |got: f64, want: f64| assert!((got - want).abs() <= 1e-4, "{got} vs {want}");

    let (s, v) = server.request(
        "POST",
        "/gemma-tiny/post",
        Some(&json!({"text_pairs": [[query, docs[0]], [query, docs[1]]], "prompt": prompt})),
        None,
    );
    assert_eq!(s, 200, "{v}");
    for (got, want) in v["rerank_scores"].as_array().unwrap().iter().zip(want) {
        close(got.as_f64().unwrap(), want);
    }
    let (s, v) = server.request(
        "POST",
        "/rerank",
        Some(&json!({"query": query, "texts": docs, "raw_scores": true, "prompt": prompt})),
        None,
    );
    assert_eq!(s, 200, "{v}");
    for item in v.as_array().unwrap() {
        close(
            item["score"].as_f64().unwrap(),
            want[item["index"].as_u64().unwrap() as usize],
        );
    }
    for path in ["/v1/rerank", "/v2/rerank"] {
        let body = json!({"query": query, "documents": docs, "prompt": prompt});
        let (s, v) = server.request("POST", path, Some(&body), None);
        assert_eq!(s, 200, "{v}");
        for item in v["results"].as_array().unwrap() {
            let raw = want[item["index"].as_u64().unwrap() as usize];
            close(
                item["relevance_score"].as_f64().unwrap(),
                1.0 / (1.0 + (-raw).exp()),
            );
        }
    }
    let (s, v) = server.request("GET", "/info", None, None);
    assert_eq!(
        (s, v["architecture"].as_str()),
        (200, Some("GemmaForCausalLM"))
    );
    assert!(
        v["options"].as_array().unwrap().contains(&json!("prompt")),
        "{v}"
    );
    assert!(server.terminate().success());
}

#[test]
fn an_encoder_refuses_a_prompt_with_422_naming_it() {
    let server = Server::start(&[]);
    let (s, v) = server.request(
        "POST",
        "/rerank",
        Some(&json!({"query": "q", "texts": ["a"], "prompt": "Yes?"})),
        None,
    );
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("prompt"), "{v}");
    let (_, v) = server.request("GET", "/info", None, None);
    assert_eq!(v["options"], json!([]));
}

/// The lightweight Gemma-2 reranker's knobs as extra request fields on all four APIs, with
/// the reference's scores; several cutoffs and bad values answer 422 naming the problem.
#[test]
fn layerwise_options_on_every_api() {
    let server = Server::start_model("gemma2-tiny", &[]);
    let reference = rerank_fixtures::layer_reference("gemma2-tiny");
    let case = reference
        .cases
        .iter()
        .find(|c| c.name == "cut6-r2-c3")
        .expect("case");
    let (query, docs) = (&case.pairs[0].0, [&case.pairs[0].1, &case.pairs[1].1]);
    assert_eq!(query, &case.pairs[1].0);
    let lists = case.scores.lists();
    let want = [lists[0][0] as f64, lists[0][1] as f64];
    let close = |got: f64, want: f64| assert!((got - want).abs() <= 1e-4, "{got} vs {want}");
    // `cutoff_layers` as an int or a one-item list, the deprecated `compress_layer` alias.
    let knobs = [
        json!({"cutoff_layers": 6, "compress_ratio": 2, "compress_layers": [3]}),
        json!({"cutoff_layers": [6], "compress_ratio": 2, "compress_layer": 3}),
    ];
    for knob in &knobs {
        let mut body = json!({"text_pairs": [[query, docs[0]], [query, docs[1]]]});
        body.as_object_mut()
            .unwrap()
            .extend(knob.as_object().unwrap().clone());
        let (s, v) = server.request("POST", "/gemma2-tiny/post", Some(&body), None);
        assert_eq!(s, 200, "{v}");
        for (got, want) in v["rerank_scores"].as_array().unwrap().iter().zip(want) {
            close(got.as_f64().unwrap(), want);
        }
    }
    let with = |mut body: serde_json::Value| {
        body.as_object_mut()
            .unwrap()
            .extend(knobs[0].as_object().unwrap().clone());
        body
    };
    let (s, v) = server.request(
        "POST",
        "/rerank",
        Some(&with(
            json!({"query": query, "texts": docs, "raw_scores": true}),
        )),
        None,
    );
    assert_eq!(s, 200, "{v}");
    for item in v.as_array().unwrap() {
        let index = item["index"].as_u64().unwrap() as usize;
        close(item["score"].as_f64().unwrap(), want[index]);
    }
    for path in ["/v1/rerank", "/v2/rerank"] {
        let body = with(json!({"query": query, "documents": docs}));
        let (s, v) = server.request("POST", path, Some(&body), None);
        assert_eq!(s, 200, "{v}");
        for item in v["results"].as_array().unwrap() {
            let raw = want[item["index"].as_u64().unwrap() as usize];
            close(
                item["relevance_score"].as_f64().unwrap(),
                1.0 / (1.0 + (-raw).exp()),
            );
        }
    }
    for (extra, needle) in [
        (json!({"cutoff_layers": [4, 6]}), "exactly one"),
        (json!({"cutoff_layers": 9}), "out of range"),
        (json!({"compress_ratio": 3}), "1, 2, 4 or 8"),
        (json!({"cutoff_layers": "six"}), "cutoff_layers"),
    ] {
        let mut body = json!({"query": "q", "texts": ["a"]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, v) = server.request("POST", "/rerank", Some(&body), None);
        assert_eq!(s, 422, "{extra}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{v}");
    }
    let (_, v) = server.request("GET", "/info", None, None);
    assert_eq!(v["architecture"], "CostWiseGemmaForCausalLM");
    for option in ["cutoff_layers", "compress_ratio", "compress_layers"] {
        assert!(
            v["options"].as_array().unwrap().contains(&json!(option)),
            "{v}"
        );
    }
    assert!(server.terminate().success());
}

#[test]
fn an_encoder_refuses_layer_options_with_422_naming_them() {
    let server = Server::start(&[]);
    let (s, v) = server.request(
        "POST",
        "/v1/rerank",
        Some(&json!({"query": "q", "documents": ["a"], "cutoff_layers": 2})),
        None,
    );
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("cutoff_layers"),
        "{v}"
    );
    assert!(server.terminate().success());
}
