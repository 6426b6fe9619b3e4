//! Handler tests through the router with `oneshot`: every endpoint, every error.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use rerank::{Reranker, ScoreOptions, Truncation};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{app, check_served_name, sanitize_served_name, AppState, ServerConfig};

pub(super) const KEY: &str = "test-key";

pub(super) fn reranker() -> Arc<Reranker> {
    static R: OnceLock<Arc<Reranker>> = OnceLock::new();
    R.get_or_init(|| {
        let dir = rerank_fixtures::model_dir("xlmr-tiny");
        Arc::new(Reranker::load_dir("xlmr-tiny", &dir).unwrap())
    })
    .clone()
}

pub(super) fn config() -> ServerConfig {
    ServerConfig {
        served_model_name: "tiny".into(),
        api_key: Some(KEY.into()),
        max_concurrent_requests: 8,
        max_client_batch_size: 2,
        max_document_bytes: 1000,
        max_documents: 50,
        max_request_tokens: 4000,
        body_read_timeout: std::time::Duration::from_secs(5),
        payload_limit: 4000,
        max_batch_tokens: 256,
        max_length: 512,
        query_max_length: None,
        truncation: Truncation::Flag,
        cors_allow_origins: Vec::new(),
    }
}

fn router(config: ServerConfig) -> axum::Router {
    app(AppState::new(reranker(), config))
}

pub(super) async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
    auth: bool,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let mut req = Request::builder().method(method).uri(uri);
    if auth {
        req = req.header(header::AUTHORIZATION, format!("Bearer {KEY}"));
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value, headers)
}

pub(super) async fn post(router: &axum::Router, uri: &str, body: Value) -> (StatusCode, Value) {
    let (s, v, _) = call(router, "POST", uri, Some(&body.to_string()), true).await;
    (s, v)
}

const QUERY: &str = "what is panda?";
const DOCS: [&str; 5] = [
    "hi",
    "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China.",
    "Paris is the capital of France.",
    "熊猫是中国特有的熊科动物。",
    "",
];

fn engine_scores(normalize: bool) -> Vec<f32> {
    let pairs: Vec<(&str, &str)> = DOCS.iter().map(|d| (QUERY, *d)).collect();
    let opts = ScoreOptions {
        normalize,
        ..ScoreOptions::default()
    };
    reranker().compute_score(&pairs, &opts).unwrap()
}

fn f(v: &Value) -> f32 {
    v.as_f64().unwrap() as f32
}

#[tokio::test]
async fn tei_rerank_matches_engine_sorted() {
    let r = router(config());
    for raw in [false, true] {
        let want = engine_scores(!raw);
        let (s, v) = post(
            &r,
            "/rerank",
            json!({"query": QUERY, "texts": DOCS, "raw_scores": raw, "return_text": true}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let items = v.as_array().unwrap();
        assert_eq!(items.len(), DOCS.len());
        for w in items.windows(2) {
            assert!(f(&w[0]["score"]) >= f(&w[1]["score"]));
        }
        for item in items {
            let i = item["index"].as_u64().unwrap() as usize;
            assert!((f(&item["score"]) - want[i]).abs() <= 1e-5);
            assert_eq!(item["text"], DOCS[i]);
        }
    }
    let (_, v) = post(&r, "/rerank", json!({"query": QUERY, "texts": ["a"]})).await;
    assert!(v[0].get("text").is_none());
}

#[tokio::test]
async fn cohere_and_jina_match_engine() {
    let r = router(config());
    let want = engine_scores(true);
    for path in ["/v1/rerank", "/v2/rerank"] {
        let docs: Vec<Value> = DOCS
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if i % 2 == 0 {
                    json!(d)
                } else {
                    json!({"text": d, "title": "ignored"})
                }
            })
            .collect();
        let body = json!({"model": "bge", "query": QUERY, "documents": docs, "top_n": 3, "return_documents": true});
        let (s, v) = post(&r, path, body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["model"], "bge");
        assert_eq!(v["meta"]["api_version"]["version"], "2");
        assert_eq!(v["meta"]["billed_units"]["search_units"], 1);
        assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
        assert!(!v["id"].as_str().unwrap().is_empty());
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        let mut sorted = want.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        for (k, item) in results.iter().enumerate() {
            let i = item["index"].as_u64().unwrap() as usize;
            assert!((f(&item["relevance_score"]) - want[i]).abs() <= 1e-5);
            assert!((f(&item["relevance_score"]) - sorted[k]).abs() <= 1e-5);
            assert_eq!(item["document"]["text"], DOCS[i]);
        }
    }
    let (_, v) = post(&r, "/v1/rerank", json!({"query": QUERY, "documents": DOCS})).await;
    assert_eq!(v["results"].as_array().unwrap().len(), DOCS.len());
    assert!(v["results"][0].get("document").is_none());
    assert_eq!(v["model"], "tiny");
}

#[tokio::test]
async fn legacy_accepts_python_literal_and_json() {
    let r = router(config());
    let want = engine_scores(false);
    let literal = format!(
        "[{}]",
        DOCS.iter()
            .map(|d| format!("['{}', \"{}\"]", QUERY, d))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let as_json: Vec<[&str; 2]> = DOCS.iter().map(|d| [QUERY, *d]).collect();
    for text_pairs in [json!(literal), json!(as_json)] {
        let (s, v) = post(&r, "/tiny/post", json!({"text_pairs": text_pairs})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["code"], 200);
        let scores: Vec<f32> = v["rerank_scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(f)
            .collect();
        for (a, b) in scores.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-5);
        }
        assert_eq!(v["text_pairs"][1][1], DOCS[1]);
        assert_eq!(v["request_time"].as_str().unwrap().len(), 19);
    }
}

#[tokio::test]
async fn legacy_accepts_a_body_without_json_content_type() {
    // The seed's client posts `data=json.dumps(...)`: no Content-Type header.
    let r = router(config());
    let body = json!({"text_pairs": "[['what is panda?', 'hi']]"}).to_string();
    let req = Request::post("/tiny/post")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Body::from(body))
        .unwrap();
    let res = r.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn big_requests_are_split_and_answered_whole() {
    // max_client_batch_size = 2 and a 256-token batch budget: 40 documents become 20 jobs.
    let r = router(config());
    let docs: Vec<String> = (0..40)
        .map(|i| format!("{} number {i}", DOCS[i % 4]))
        .collect();
    let pairs: Vec<(&str, &str)> = docs.iter().map(|d| (QUERY, d.as_str())).collect();
    let want = reranker()
        .compute_score(&pairs, &ScoreOptions::default())
        .unwrap();
    let (s, v) = post(
        &r,
        "/rerank",
        json!({"query": QUERY, "texts": docs, "raw_scores": true}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 40);
    for item in items {
        let i = item["index"].as_u64().unwrap() as usize;
        assert!((f(&item["score"]) - want[i]).abs() <= 1e-5);
    }
}

#[tokio::test]
async fn every_bad_input_is_a_4xx_json_error() {
    // max_length 64, so that a 150-token document with truncate=false is over the limit.
    let r = router(ServerConfig {
        max_length: 64,
        ..config()
    });
    let long_doc = "x".repeat(1001);
    let big_body = vec!["a".repeat(900); 5];
    let cases: Vec<(&str, &str, String, StatusCode, &str)> = vec![
        (
            "POST",
            "/rerank",
            "{\"query\": \"q\", \"texts\": [".into(),
            StatusCode::BAD_REQUEST,
            "Validation",
        ),
        (
            "POST",
            "/rerank",
            "not json".into(),
            StatusCode::BAD_REQUEST,
            "Validation",
        ),
        (
            "POST",
            "/rerank",
            json!({"query": 3, "texts": ["a"]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/rerank",
            json!({"texts": ["a"]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/rerank",
            json!({"query": "  ", "texts": ["a"]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/rerank",
            json!({"query": "q", "texts": []}).to_string(),
            StatusCode::BAD_REQUEST,
            "Empty",
        ),
        (
            "POST",
            "/rerank",
            json!({"query": "q", "texts": "a"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/rerank",
            json!({"query": "q", "texts": [long_doc]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/rerank",
            json!({"query": "q", "texts": ["apple ".repeat(150)], "truncate": false}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/rerank",
            json!({"query": "q", "texts": ["a"], "truncation_direction": "middle"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/rerank",
            json!({"query": "q", "texts": big_body}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
        ),
        (
            "POST",
            "/v1/rerank",
            json!({"query": "q", "documents": []}).to_string(),
            StatusCode::BAD_REQUEST,
            "Empty",
        ),
        (
            "POST",
            "/v2/rerank",
            json!({"query": "", "documents": ["a"]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/v2/rerank",
            json!({"query": "q", "documents": ["a"], "top_n": 0}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/v2/rerank",
            json!({"query": "q", "documents": [{"title": "no text"}]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/v2/rerank",
            json!({"query": "q", "documents": ["a"], "top_n": -1}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/tiny/post",
            json!({"text_pairs": "[['a', 'b']"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/tiny/post",
            json!({"text_pairs": "[['a', __import__('os')]]"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/tiny/post",
            json!({"text_pairs": [["a"]]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/tiny/post",
            json!({"text_pairs": 5}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "POST",
            "/tiny/post",
            json!({"text_pairs": []}).to_string(),
            StatusCode::BAD_REQUEST,
            "Empty",
        ),
        (
            "POST",
            "/tiny/post",
            json!({}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation",
        ),
        (
            "GET",
            "/no/such/route",
            String::new(),
            StatusCode::NOT_FOUND,
            "NotFound",
        ),
        (
            "GET",
            "/rerank",
            String::new(),
            StatusCode::METHOD_NOT_ALLOWED,
            "Validation",
        ),
    ];
    for (method, uri, body, status, kind) in cases {
        let body = (!body.is_empty()).then_some(body.as_str());
        let (s, v, _) = call(&r, method, uri, body, true).await;
        assert_eq!(s, status, "{method} {uri} {body:?}: {v}");
        assert_eq!(v["error_type"], kind, "{method} {uri} {body:?}: {v}");
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
    // Still healthy and still scoring.
    let (s, _, _) = call(&r, "GET", "/health", None, false).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = post(&r, "/rerank", json!({"query": "q", "texts": ["a"]})).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn bearer_token_is_required_except_for_health() {
    let r = router(config());
    let body = json!({"query": "q", "texts": ["a"]}).to_string();
    let (s, v, _) = call(&r, "POST", "/rerank", Some(&body), false).await;
    assert_eq!(
        (s, v["error_type"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Unauthorized"))
    );
    let req = Request::post("/rerank")
        .header(header::AUTHORIZATION, "Bearer wrong")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(
        r.clone().oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    for uri in ["/info", "/metrics", "/openapi.json"] {
        assert_eq!(
            call(&r, "GET", uri, None, false).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
    }
    assert_eq!(
        call(&r, "GET", "/health", None, false).await.0,
        StatusCode::OK
    );
    let open = router(ServerConfig {
        api_key: None,
        ..config()
    });
    assert_eq!(
        call(&open, "GET", "/info", None, false).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn over_the_concurrency_limit_is_429_with_retry_after() {
    let r = router(ServerConfig {
        max_concurrent_requests: 0,
        ..config()
    });
    let body = json!({"query": "q", "texts": ["a"]}).to_string();
    let (s, v, headers) = call(&r, "POST", "/rerank", Some(&body), true).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(v["error_type"], "Overloaded");
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
}

#[tokio::test]
async fn operations_endpoints() {
    let r = router(config());
    post(&r, "/rerank", json!({"query": "q", "texts": ["a", "b"]})).await;
    let (s, v, _) = call(&r, "GET", "/info", None, true).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["architecture"], "XLMRobertaForSequenceClassification");
    assert_eq!(v["served_model_name"], "tiny");
    assert_eq!(v["max_input_length"], 512);
    // "f32 (AVX-512 pre-packed)" or "f32 (gemm crate)", whichever a timed GEMM chose here.
    let kernel = v["kernel"].as_str().unwrap();
    assert!(kernel.starts_with("f32 ("), "kernel {kernel}");
    let (s, v, _) = call(&r, "GET", "/metrics", None, true).await;
    assert_eq!(s, StatusCode::OK);
    let text = v.as_str().unwrap();
    for name in [
        "rerank_requests_total",
        "rerank_request_duration_seconds",
        "rerank_batch_size",
        "rerank_batch_tokens",
        "rerank_queue_depth",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let (s, v, _) = call(&r, "GET", "/openapi.json", None, true).await;
    assert_eq!(s, StatusCode::OK);
    for path in [
        "/rerank",
        "/v1/rerank",
        "/v2/rerank",
        "/tiny/post",
        "/health",
    ] {
        assert!(
            v["paths"].get(path).is_some(),
            "{path} missing from openapi"
        );
    }
}

#[tokio::test]
async fn hostile_requests_are_refused_before_any_work() {
    let r = router(ServerConfig {
        payload_limit: 2_000_000,
        max_document_bytes: 200_000,
        max_request_tokens: 60,
        ..config()
    });
    let refused = |status: StatusCode, kind: &'static str, says: &'static str| {
        move |(s, v): (StatusCode, Value)| {
            assert_eq!(s, status, "{v}");
            assert_eq!(v["error_type"], kind, "{v}");
            assert!(v["error"].as_str().unwrap().contains(says), "{v}");
        }
    };
    let deep = "[".repeat(9_000);
    refused(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Validation",
        "nested deeper",
    )(post(&r, "/tiny/post", json!({ "text_pairs": deep })).await);
    let many = vec!["x"; 45_000];
    refused(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Validation",
        "45000 documents",
    )(post(&r, "/rerank", json!({"query": "q", "texts": many})).await);
    refused(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Validation",
        "the query is",
    )(
        post(
            &r,
            "/v1/rerank",
            json!({"query": "q".repeat(200_001), "documents": ["d"]}),
        )
        .await,
    );
    let long = "panda ".repeat(40);
    refused(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PayloadTooLarge",
        "--max-request-tokens",
    )(post(&r, "/rerank", json!({"query": "q", "texts": [long, "b"]})).await);
    refused(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Validation",
        "query must not be empty",
    )(
        post(
            &r,
            "/tiny/post",
            json!({"text_pairs": [["q", "p"], [" ", "p"]]}),
        )
        .await,
    );
    refused(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Validation",
        "query must not be empty",
    )(post(&r, "/tiny/post", json!({"text_pairs": "[('', 'p')]"})).await);
}

#[tokio::test]
async fn a_body_declared_over_the_limit_is_refused_unread() {
    let r = router(config());
    let req = Request::post("/rerank")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_LENGTH, "4001")
        .header(header::EXPECT, "100-continue")
        .body(Body::empty())
        .unwrap();
    let res = r.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let r = router(config());
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let req = Request::post("/rerank")
            .header(header::AUTHORIZATION, format!("{scheme} {KEY}"))
            .body(Body::from(
                json!({"query": "q", "texts": ["a"]}).to_string(),
            ))
            .unwrap();
        assert_eq!(
            r.clone().oneshot(req).await.unwrap().status(),
            StatusCode::OK,
            "{scheme}"
        );
    }
    let req = Request::post("/rerank")
        .header(header::AUTHORIZATION, format!("Basic {KEY}"))
        .body(Body::from(
            json!({"query": "q", "texts": ["a"]}).to_string(),
        ))
        .unwrap();
    assert_eq!(
        r.oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn served_names_that_would_be_route_syntax_are_refused() {
    for good in [
        "bge-reranker-base",
        "BAAI/bge-reranker-v2-m3",
        "m_1.5+x@y~z",
    ] {
        assert!(check_served_name(good).is_ok(), "{good}");
    }
    for bad in [
        ":x", "*rest", "{*x}", "a{b", "{x}", "", "a//b", "/a", "a/", "..", "a/../b", "a b", "é",
    ] {
        let err = check_served_name(bad).unwrap_err();
        assert!(err.starts_with("invalid served model name"), "{bad}: {err}");
    }
    assert_eq!(sanitize_served_name("{*x}"), "--x-");
    assert!(check_served_name(&sanitize_served_name("a{b}/:c d")).is_ok());
}
