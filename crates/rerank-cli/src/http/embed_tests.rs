//! The embedding routes through the router with `oneshot`: TEI `/embed`, OpenAI
//! `/v1/embeddings` (float and base64), the served name, each route's 404 without its model,
//! and bad input.

use std::sync::{Arc, OnceLock};

use axum::http::StatusCode;
use base64::Engine;
use rerank::{Dtype, Embedder};
use serde_json::{json, Value};

use super::tests::{call, config, post, reranker};
use super::{app, AppState, ServedEmbedder};

const TEXTS: [&str; 3] = [
    "what is panda?",
    "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China.",
    "熊猫是中国特有的熊科动物。",
];

/// The tiny XLM-R fixture as a FlagModel-style embedder (CLS pooling, normalised).
fn embedder() -> Arc<Embedder> {
    static E: OnceLock<Arc<Embedder>> = OnceLock::new();
    E.get_or_init(|| {
        let dir = rerank_fixtures::model_dir("xlmr-tiny");
        Arc::new(Embedder::load_dir_as("xlmr-tiny", &dir, Dtype::F32).unwrap())
    })
    .clone()
}

fn served() -> ServedEmbedder {
    ServedEmbedder {
        embedder: embedder(),
        name: "tiny-embed".into(),
    }
}

fn vectors(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn assert_close(got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len());
        let diff = rerank_fixtures::max_abs_diff(g, w);
        assert!(diff <= 1e-6, "max |Δ| {diff}");
    }
}

#[tokio::test]
async fn tei_embed_matches_the_library() {
    let r = app(AppState::with_models(None, Some(served()), config()));
    let want = embedder().embed(&TEXTS).unwrap();
    let (s, v) = post(&r, "/embed", json!({"inputs": TEXTS})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_close(&vectors(&v), &want);
    let (s, v) = post(&r, "/embed", json!({"inputs": TEXTS[0]})).await;
    assert_eq!(s, StatusCode::OK);
    assert_close(&vectors(&v), &want[..1]);
    let (s, v) = post(&r, "/embed", json!({"inputs": TEXTS, "dimensions": 8})).await;
    assert_eq!(s, StatusCode::OK);
    for row in vectors(&v) {
        assert_eq!(row.len(), 8);
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
}

#[tokio::test]
async fn openai_embeddings_float_and_base64() {
    let r = app(AppState::with_models(
        Some(reranker()),
        Some(served()),
        config(),
    ));
    let want = embedder().embed(&TEXTS).unwrap();
    let (s, v) = post(
        &r,
        "/v1/embeddings",
        json!({"input": TEXTS, "model": "tiny-embed", "encoding_format": "float"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "tiny-embed");
    let data = v["data"].as_array().unwrap();
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["index"], i);
        assert_eq!(d["object"], "embedding");
    }
    let rows: Vec<Value> = data.iter().map(|d| d["embedding"].clone()).collect();
    assert_close(&vectors(&Value::Array(rows)), &want);
    let tokens = v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens > 10 && v["usage"]["total_tokens"] == tokens);

    let (s, v) = post(
        &r,
        "/v1/embeddings",
        json!({"input": TEXTS, "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let decoded: Vec<Vec<f32>> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(d["embedding"].as_str().unwrap())
                .unwrap();
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect();
    assert_close(&decoded, &want);
    // The model id as given is accepted too; another name is 404.
    let (s, _) = post(
        &r,
        "/v1/embeddings",
        json!({"input": "x", "model": "xlmr-tiny"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = post(&r, "/v1/embeddings", json!({"input": "x", "model": "gpt"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("tiny-embed"), "{v}");
    // The reranker still answers on the same server.
    let (s, _) = post(&r, "/rerank", json!({"query": "q", "texts": ["a"]})).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn each_route_is_404_without_its_model() {
    let rerank_only = app(AppState::with_models(Some(reranker()), None, config()));
    for uri in ["/embed", "/v1/embeddings", "/embeddings"] {
        let body = json!({"inputs": "a", "input": "a"});
        let (s, v) = post(&rerank_only, uri, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(v["error_type"], "NotFound");
        assert!(v["error"].as_str().unwrap().contains("--embedding-model"));
    }
    let embed_only = app(AppState::with_models(None, Some(served()), config()));
    let (s, v) = post(
        &embed_only,
        "/rerank",
        json!({"query": "q", "texts": ["a"]}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("no reranker"), "{v}");
    let (s, v, _) = call(&embed_only, "GET", "/health", None, false).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v, _) = call(&embed_only, "GET", "/info", None, true).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["reranker"], false);
    assert_eq!(v["embedding"]["served_model_name"], "tiny-embed");
    assert_eq!(v["embedding"]["pooling"], json!(["cls"]));
    assert_eq!(v["embedding"]["dimension"], embedder().dimension());
}

#[tokio::test]
async fn bad_embedding_requests_are_4xx() {
    let r = app(AppState::with_models(None, Some(served()), config()));
    let cases = [
        ("/embed", json!({"inputs": []}), StatusCode::BAD_REQUEST),
        (
            "/embed",
            json!({"inputs": 3}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/embed", json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "/embed",
            json!({"inputs": "a", "dimensions": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/embed",
            json!({"inputs": "a", "dimensions": 100000}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/embed",
            json!({"inputs": "a", "truncation_direction": "Left"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/embed",
            json!({"inputs": ["x".repeat(1001)]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/embed",
            json!({"inputs": vec!["a"; 51]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/embeddings",
            json!({"input": [[1, 2, 3]]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/embeddings",
            json!({"input": "a", "encoding_format": "int8"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (uri, body, want) in cases {
        let (s, v) = post(&r, uri, body.clone()).await;
        assert_eq!(s, want, "{uri} {body}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    // More tokens than one request may take (4000): 413 naming the limit.
    let roomy = super::ServerConfig {
        payload_limit: 100_000,
        ..config()
    };
    let r = app(AppState::with_models(None, Some(served()), roomy));
    let long = "panda bamboo ".repeat(60);
    let (s, v) = post(&r, "/embed", json!({"inputs": vec![long.as_str(); 40]})).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("--max-request-tokens"),
        "{v}"
    );
}
