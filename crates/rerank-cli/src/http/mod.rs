//! The HTTP server: one router answering TEI, Cohere, Jina and the legacy `text_pairs` API for
//! the model it serves, plus health, info, metrics and the OpenAPI document.

mod embeddings;
pub mod error;
pub mod extract;
mod handlers;
pub mod lenient;
mod metrics_layer;
pub mod pyliteral;
pub mod queue;
pub mod server;
mod service;
pub mod types;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rerank::{Embedder, Reranker, Truncation};
use tokio::sync::Semaphore;

use crate::http::error::{ApiError, ErrorType};
use crate::http::extract::BodyReadTimeout;
pub use crate::http::queue::Queue;

/// Server settings, from `rerank serve`'s flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Name in routes (`/{name}/post`) and responses.
    pub served_model_name: String,
    /// Bearer token every request but `/health` must carry.
    pub api_key: Option<String>,
    /// Requests in flight before 429.
    pub max_concurrent_requests: usize,
    /// Documents per internal job; larger requests are split, not rejected.
    pub max_client_batch_size: usize,
    /// Largest accepted query or document, in bytes.
    pub max_document_bytes: usize,
    /// Documents (or legacy pairs) per request.
    pub max_documents: usize,
    /// Tokens of all of one request's pairs, after tokenization and truncation.
    pub max_request_tokens: usize,
    /// How long a request body may take to arrive.
    pub body_read_timeout: Duration,
    /// Largest accepted request body, in bytes.
    pub payload_limit: usize,
    /// Token budget of one forward pass.
    pub max_batch_tokens: usize,
    /// Tokens per pair.
    pub max_length: usize,
    /// Tokens of the query (`None` = ¾ of `max_length`).
    pub query_max_length: Option<usize>,
    /// Truncation strategy.
    pub truncation: Truncation,
    /// Origins whose browser pages may call the API (CORS); empty: none.
    pub cors_allow_origins: Vec<String>,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    reranker: Option<Arc<Reranker>>,
    queue: Option<Queue>,
    embedder: Option<ServedEmbedder>,
    /// One embedding forward pass at a time (requests take turns job by job).
    embed_slot: tokio::sync::Mutex<()>,
    config: ServerConfig,
    permits: Arc<Semaphore>,
    metrics: PrometheusHandle,
}

/// The embedding model of a server and the name its requests may give.
pub struct ServedEmbedder {
    /// The model.
    pub embedder: Arc<Embedder>,
    /// `model` in an embeddings request: this name (or the model id as given, or nothing).
    pub name: String,
}

impl AppState {
    /// A server of one reranker: starts the inference worker and wraps everything the
    /// handlers need.
    #[cfg(test)]
    pub fn new(reranker: Arc<Reranker>, config: ServerConfig) -> Self {
        Self::with_models(Some(reranker), None, config)
    }

    /// A server of a reranker, an embedder, or both; each route answers 404 when its model
    /// is absent.
    pub fn with_models(
        reranker: Option<Arc<Reranker>>,
        embedder: Option<ServedEmbedder>,
        config: ServerConfig,
    ) -> Self {
        let queue = reranker
            .as_ref()
            .map(|r| Queue::start(r.clone(), config.max_batch_tokens));
        Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(config.max_concurrent_requests)),
                reranker,
                queue,
                embedder,
                embed_slot: tokio::sync::Mutex::new(()),
                config,
                metrics: prometheus(),
            }),
        }
    }

    fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The reranker, or 404 on a server that serves none.
    fn reranker(&self) -> Result<&Arc<Reranker>, ApiError> {
        self.inner.reranker.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorType::NotFound,
                "this server serves no reranker (start it with --model RERANKER)",
            )
        })
    }

    /// The reranker's inference queue, or 404 on a server that serves no reranker.
    fn queue(&self) -> Result<&Queue, ApiError> {
        self.reranker()?;
        self.inner.queue.as_ref().ok_or_else(ApiError::unhealthy)
    }

    /// The embedder, or 404 on a server that serves none.
    fn embedder(&self) -> Result<&ServedEmbedder, ApiError> {
        self.inner.embedder.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorType::NotFound,
                "this server serves no embedding model (start it with --embedding-model MODEL)",
            )
        })
    }
}

/// The process-wide Prometheus recorder (installed once, shared by every app).
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = histogram_buckets(PrometheusBuilder::new()).build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; metrics then go there.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// TEI's histogram buckets (histograms, not the exporter's default summaries): durations from
/// 15 µs growing ×1.5 (35 buckets), sizes and lengths in powers of two up to 2^20.
fn histogram_buckets(builder: PrometheusBuilder) -> PrometheusBuilder {
    use metrics_exporter_prometheus::Matcher;
    let mut durations = Vec::with_capacity(35);
    let mut value = 0.00001;
    for _ in 0..35 {
        value *= 1.5;
        durations.push(value);
    }
    let powers: Vec<f64> = (0..=20).map(|x| f64::from(1u32 << x)).collect();
    let sized = [
        "te_request_input_length",
        "te_batch_next_size",
        "te_batch_next_tokens",
    ];
    let builder = builder
        .set_buckets_for_metric(Matcher::Suffix("duration".into()), &durations)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &durations)
        });
    sized
        .iter()
        .fold(builder, |b, name| {
            b.and_then(|b| b.set_buckets_for_metric(Matcher::Full((*name).into()), &powers))
        })
        .expect("bucket lists are not empty")
}

/// The router with every route, auth, body limit and metrics.
pub fn app(state: AppState) -> Router {
    let legacy = legacy_route(&state.config().served_model_name);
    let protected = Router::new()
        .route("/rerank", post(handlers::rerank_any))
        .route("/v1/rerank", post(handlers::cohere_rerank))
        .route("/v2/rerank", post(handlers::cohere_rerank))
        .route(&legacy, post(handlers::legacy))
        .route("/embed", post(embeddings::tei_embed))
        .route("/v1/embeddings", post(embeddings::openai_embeddings))
        .route("/embeddings", post(embeddings::openai_embeddings))
        .route("/info", get(handlers::info))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(handlers::openapi))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ))
        .route_layer(middleware::from_fn(refuse_browser_forms));
    let router = Router::new()
        .route("/health", get(handlers::health))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config().payload_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_oversized_body,
        ))
        .layer(axum::Extension(BodyReadTimeout(
            state.config().body_read_timeout,
        )))
        .layer(middleware::from_fn(metrics_layer::track))
        .layer(tower_http::trace::TraceLayer::new_for_http());
    let router = match cors(&state.config().cors_allow_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    };
    router.with_state(state)
}

/// CORS for the listed origins only (preflights answered, that exact origin echoed); `None`
/// when there are none, so no `Access-Control-Allow-Origin` is ever sent.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let values: Vec<header::HeaderValue> = origins
        .iter()
        .filter_map(|o| header::HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(values))
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
            .max_age(Duration::from_secs(3600)),
    )
}

/// Content types a browser page may POST to another origin without a CORS preflight.
const SIMPLE_FORM_TYPES: [&str; 3] = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
];

/// 415 for a body a browser form could send cross-origin (the JSON routes take JSON, or a body
/// without a content type as curl and `requests` send it).
async fn refuse_browser_forms(req: Request, next: Next) -> Result<Response, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    if let Some(kind) = content_type.filter(|k| SIMPLE_FORM_TYPES.contains(&k.as_str())) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorType::UnsupportedMediaType,
            format!("Content-Type {kind} is not accepted: send JSON (application/json)"),
        ));
    }
    Ok(next.run(req).await)
}

/// The legacy service's route for a served model name (checked by [`check_served_name`]).
pub fn legacy_route(served_model_name: &str) -> String {
    format!("/{served_model_name}/post")
}

/// Characters a served model name may hold besides ASCII letters and digits (`/` only between
/// non-empty segments): nothing that the router reads as a parameter or a wildcard.
const NAME_PUNCTUATION: &str = "-_.~+@";

/// Checks that a served model name is safe to put in a route: letters, digits, `-_.~+@`, and
/// `/` between segments, which may not be `.` or `..`.
pub fn check_served_name(name: &str) -> Result<(), String> {
    let problem = if name.is_empty() {
        Some("it is empty".to_string())
    } else if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '/' || NAME_PUNCTUATION.contains(c)))
    {
        Some(format!("{c:?} is not allowed"))
    } else if name
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        Some("'/' must separate non-empty segments other than '.' and '..'".to_string())
    } else {
        None
    };
    match problem {
        Some(why) => Err(format!(
            "invalid served model name {name:?}: {why} (use letters, digits, '{NAME_PUNCTUATION}' and '/')"
        )),
        None => Ok(()),
    }
}

/// Makes a served model name from any string (a folder's name): characters outside the safe
/// set become `-`.
pub fn sanitize_served_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || NAME_PUNCTUATION.contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.chars().all(|c| c == '.') {
        "model".into()
    } else {
        cleaned
    }
}

/// 413 for a body whose declared length is over the limit, before it is read (so no
/// `100 Continue` invites the client to send it).
async fn refuse_oversized_body(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let limit = state.config().payload_limit;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = declared.filter(|&n| n > limit as u64) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::PayloadTooLarge,
            format!("the body is {length} bytes, over the limit of {limit} (--payload-limit)"),
        ));
    }
    Ok(next.run(req).await)
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is matched without
/// regard to case, as RFC 9110 says.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

async fn require_api_key(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(key) = &state.config().api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        if given != Some(key.as_str()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorType::Unauthorized,
                "missing or wrong bearer token (Authorization: Bearer <key>)",
            ));
        }
    }
    Ok(next.run(req).await)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorType::NotFound,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorType::Validation,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod embed_tests;
#[cfg(test)]
mod tests;
