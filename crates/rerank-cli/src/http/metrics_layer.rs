//! Per-endpoint request counts and latencies for `/metrics`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Records `rerank_requests_total{endpoint,status}` and `rerank_request_duration_seconds{endpoint}`.
pub async fn track(req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("rerank_requests_total", "endpoint" => endpoint.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("rerank_request_duration_seconds", "endpoint" => endpoint)
        .record(start.elapsed().as_secs_f64());
    response
}
