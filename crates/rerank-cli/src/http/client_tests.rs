//! What real rerank clients send, through the router with `oneshot`: the Cohere/vLLM body on
//! `/rerank`, string booleans and integers, TEI's `/info` and `te_*` metrics, token usage,
//! 415 for browser form bodies, and CORS for the listed origins only.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use rerank::PairLimits;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::tests::{call, config, post, reranker, KEY};
use super::{app, AppState, ServerConfig};

const QUERY: &str = "what is panda?";
const DOCS: [&str; 3] = [
    "hi",
    "The giant panda is a bear species endemic to China.",
    "Paris",
];

fn router() -> axum::Router {
    app(AppState::new(reranker(), config()))
}

/// Tokens the server feeds the model for `QUERY` against `DOCS` (special tokens included).
fn pair_tokens() -> usize {
    let r = reranker();
    let limits = PairLimits::new(rerank::Truncation::Flag, 512, None);
    r.encode_query_documents(QUERY, &DOCS, &limits, &Default::default())
        .unwrap()
        .iter()
        .map(|e| e.ids.len())
        .sum()
}

#[tokio::test]
async fn rerank_takes_the_documents_shape_with_string_scalars() {
    let r = router();
    let body = json!({"model": "m", "query": QUERY, "documents": DOCS, "top_n": "2",
                      "return_documents": "TRUE", "return_len": "true"});
    let (s, v) = post(&r, "/rerank", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let best = results[0]["index"].as_u64().unwrap() as usize;
    assert_eq!(results[0]["document"], json!({"text": DOCS[best]}));
    let tokens = pair_tokens();
    assert_eq!(v["usage"]["total_tokens"], tokens);
    assert_eq!(v["usage"]["prompt_tokens"], tokens);
    assert_eq!(v["meta"]["tokens"]["input_tokens"], tokens);
    assert_eq!(v["meta"]["billed_units"]["search_units"], 1);
    // Infinity's raw_scores: the logits themselves.
    let (s, raw) = post(
        &r,
        "/rerank",
        json!({"query": QUERY, "documents": DOCS, "raw_scores": "true"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{raw}");
    let logits = reranker()
        .compute_score(&DOCS.map(|d| (QUERY, d)), &rerank::ScoreOptions::default())
        .unwrap();
    // Within 1e-5, not to the bit: with other tests scoring on the same engine threads at the
    // same time, f32 sums can come out in another order (measured: 2.9e-6 on a logit of -2.2).
    // A sigmoid instead of the logit would be off by more than 2.
    for r in raw["results"].as_array().unwrap() {
        let i = r["index"].as_u64().unwrap() as usize;
        assert!((r["relevance_score"].as_f64().unwrap() as f32 - logits[i]).abs() < 1e-5);
    }
    // The same body on /v1/rerank gives the same scores.
    let (_, v1) = post(
        &r,
        "/v1/rerank",
        json!({"query": QUERY, "documents": DOCS, "top_n": 2}),
    )
    .await;
    let score = |v: &serde_json::Value| v["results"][0]["relevance_score"].as_f64().unwrap();
    assert!((score(&v1) - score(&v)).abs() < 1e-5, "{v1} vs {v}");
    // TEI's shape still answers with the bare list; string booleans there too.
    let (s, v) = post(
        &r,
        "/rerank",
        json!({"query": QUERY, "texts": DOCS, "raw_scores": "false", "return_text": "true"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert!(v[0]["text"].is_string());
}

#[tokio::test]
async fn rerank_with_both_or_neither_shape_is_422() {
    let r = router();
    for body in [
        json!({"query": QUERY, "texts": DOCS, "documents": DOCS}),
        json!({"query": QUERY}),
        json!([QUERY]),
    ] {
        let (s, v) = post(&r, "/rerank", body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains("texts") && msg.contains("documents"), "{msg}");
    }
    for body in [
        json!({"query": QUERY, "documents": DOCS, "return_documents": "yes"}),
        json!({"query": QUERY, "documents": DOCS, "top_n": "two"}),
        json!({"query": QUERY, "texts": DOCS, "raw_scores": 1}),
    ] {
        let (s, v) = post(&r, "/rerank", body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
    }
}

#[tokio::test]
async fn info_has_tei_fields() {
    let (s, v, _) = call(&router(), "GET", "/info", None, true).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["model_type"],
        json!({"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}})
    );
    assert_eq!(v["model_dtype"], "float32");
    assert_eq!(v["auto_truncate"], true);
    for field in [
        "model_id",
        "max_input_length",
        "max_batch_tokens",
        "max_client_batch_size",
        "max_concurrent_requests",
        "tokenization_workers",
        "version",
    ] {
        assert!(!v[field].is_null(), "{field}");
    }
    assert!(v.get("model_sha").is_some() && v.get("max_batch_requests").is_some());
}

#[tokio::test]
async fn tei_metric_names_are_exposed_with_histogram_buckets() {
    let r = router();
    let (s, _) = post(&r, "/rerank", json!({"query": QUERY, "texts": DOCS})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = post(&r, "/rerank", json!({"query": "", "texts": DOCS})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, text, _) = call(&r, "GET", "/metrics", None, true).await;
    let text = text.as_str().unwrap().to_string();
    for name in [
        "te_request_count{",
        "te_request_success{method=\"rerank\"}",
        "te_request_failure{err=\"validation\"}",
        "te_queue_size ",
        "te_request_duration_bucket{le=",
        "te_request_tokenization_duration_bucket{le=",
        "te_request_queue_duration_bucket{le=",
        "te_request_inference_duration_bucket{le=",
        "te_request_input_length_bucket{le=",
        "te_batch_next_size_bucket{le=",
        "te_batch_next_tokens_bucket{le=",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}");
    }
    assert!(text.contains("# TYPE te_request_duration histogram"));
}

async fn post_typed(
    r: &axum::Router,
    uri: &str,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method("POST")
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"));
    if let Some(kind) = content_type {
        req = req.header(header::CONTENT_TYPE, kind);
    }
    let res = r
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn browser_form_bodies_get_415() {
    let r = router();
    let tei = json!({"query": QUERY, "texts": DOCS}).to_string();
    let legacy = json!({"text_pairs": [[QUERY, "hi"]]}).to_string();
    for kind in [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        for (uri, body) in [
            ("/rerank", &tei),
            ("/v1/rerank", &tei),
            ("/tiny/post", &legacy),
        ] {
            let (s, v) = post_typed(&r, uri, Some(kind), body).await;
            assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{uri} {kind}");
            assert_eq!(v["error_type"], "UnsupportedMediaType");
        }
    }
    // JSON, and a body without a content type (curl, requests' data=), are accepted.
    assert_eq!(
        post_typed(&r, "/rerank", Some("application/json"), &tei)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        post_typed(&r, "/tiny/post", None, &legacy).await.0,
        StatusCode::OK
    );
}

async fn preflight(r: &axum::Router, origin: &str) -> axum::http::Response<Body> {
    let req = Request::builder()
        .method("OPTIONS")
        .uri("/rerank")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "content-type,authorization",
        )
        .body(Body::empty())
        .unwrap();
    r.clone().oneshot(req).await.unwrap()
}

#[tokio::test]
async fn cors_only_for_listed_origins() {
    let allowed = "https://app.example";
    let r = app(AppState::new(
        reranker(),
        ServerConfig {
            cors_allow_origins: vec![allowed.into()],
            ..config()
        },
    ));
    let res = preflight(&r, allowed).await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], allowed);
    let res = preflight(&r, "https://evil.example").await;
    assert!(res
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
    // Without --cors-allow-origin no origin gets the header.
    let res = preflight(&router(), allowed).await;
    assert!(res
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
}
