//! One handler per endpoint: parse, call the shared scoring path, shape the API's response.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rerank::scores::{ranking, sigmoid};
use rerank::{Truncation, TruncationDirection};
use serde_json::{json, Value};
use utoipa::OpenApi;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::ApiJson;
use crate::http::pyliteral;
use crate::http::service::ScoreRequest;
use crate::http::types::*;
use crate::http::{legacy_route, AppState};

fn require_query(query: &str) -> Result<(), ApiError> {
    if query.trim().is_empty() {
        return Err(ApiError::validation("query must not be empty"));
    }
    Ok(())
}

/// `POST /rerank` in either shape, chosen by the body's keys: TEI's `{query, texts}` (a bare
/// sorted list back) or the `{query, documents}` of Cohere, Jina, vLLM and Infinity (their
/// `{id, model, results, usage, meta}` back, documents as `{"text": …}` objects as vLLM returns
/// them).
#[utoipa::path(post, path = "/rerank", request_body = RerankRequest,
    responses((status = 200, body = RerankResponse), (status = "4XX", body = ErrorBody)))]
pub async fn rerank_any(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let has = |key: &str| body.get(key).is_some();
    let parse = |e: serde_json::Error| ApiError::validation(format!("invalid request: {e}"));
    match (has("texts"), has("documents")) {
        (true, false) => {
            let req = serde_json::from_value(body).map_err(parse)?;
            Ok(tei_rerank(State(state), ApiJson(req))
                .await?
                .into_response())
        }
        (false, true) => {
            let req = serde_json::from_value(body).map_err(parse)?;
            Ok(cohere_rerank(State(state), ApiJson(req))
                .await?
                .into_response())
        }
        _ => Err(ApiError::validation(
            "POST /rerank takes TEI's {\"query\", \"texts\"} or the {\"query\", \"documents\"} of \
             Cohere, Jina, vLLM and Infinity: send exactly one of texts and documents",
        )),
    }
}

/// TEI: scores sorted best first.
pub async fn tei_rerank(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TeiRerankRequest>,
) -> Result<Json<Vec<TeiRank>>, ApiError> {
    require_query(&req.query)?;
    let mut request = ScoreRequest::query_documents(req.query, req.texts.clone()).with_llm(req.llm);
    request.truncate = req.truncate.unwrap_or(true);
    request.direction = match req.truncation_direction {
        Direction::Right => TruncationDirection::Right,
        Direction::Left => TruncationDirection::Left,
    };
    let scored = state.score(request).await?;
    let scores: Vec<f32> = if req.raw_scores {
        scored.raw
    } else {
        scored.raw.iter().map(|&s| sigmoid(s)).collect()
    };
    let mut texts: Vec<Option<String>> = req.texts.into_iter().map(Some).collect();
    Ok(Json(
        ranking(&scores, None)
            .into_iter()
            .map(|index| TeiRank {
                index,
                score: scores[index],
                text: if req.return_text {
                    texts[index].take()
                } else {
                    None
                },
            })
            .collect(),
    ))
}

/// Cohere v1/v2 and Jina: sigmoid scores, sorted, cut to `top_n`.
#[utoipa::path(post, path = "/v1/rerank", request_body = CohereRerankRequest,
    responses((status = 200, body = CohereRerankResponse), (status = "4XX", body = ErrorBody)))]
pub async fn cohere_rerank(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CohereRerankRequest>,
) -> Result<Json<CohereRerankResponse>, ApiError> {
    require_query(&req.query)?;
    if req.top_n == Some(0) {
        return Err(ApiError::validation("top_n must be at least 1"));
    }
    if req.max_tokens_per_doc == Some(0) {
        return Err(ApiError::validation(
            "max_tokens_per_doc must be at least 1",
        ));
    }
    let documents: Vec<String> = req.documents.into_iter().map(Document::into_text).collect();
    let document_count = documents.len();
    let mut request = ScoreRequest::query_documents(req.query, documents.clone()).with_llm(req.llm);
    request.passage_max_length = req.max_tokens_per_doc;
    let scored = state.score(request).await?;
    let scores: Vec<f32> = if req.raw_scores {
        scored.raw
    } else {
        scored.raw.iter().map(|&s| sigmoid(s)).collect()
    };
    let return_documents = req.return_documents.unwrap_or(false);
    let mut documents: Vec<Option<String>> = documents.into_iter().map(Some).collect();
    let results = ranking(&scores, req.top_n)
        .into_iter()
        .map(|index| CohereResult {
            index,
            relevance_score: scores[index],
            document: if return_documents {
                documents[index].take().map(|text| DocumentText { text })
            } else {
                None
            },
        })
        .collect();
    Ok(Json(CohereRerankResponse {
        id: uuid::Uuid::new_v4().to_string(),
        model: req
            .model
            .unwrap_or_else(|| state.config().served_model_name.clone()),
        results,
        usage: Usage {
            total_tokens: scored.tokens,
            prompt_tokens: scored.tokens,
        },
        meta: Meta {
            api_version: ApiVersion {
                version: "2".into(),
            },
            billed_units: BilledUnits {
                search_units: document_count.div_ceil(100).max(1),
            },
            tokens: Tokens {
                input_tokens: scored.tokens,
                output_tokens: 0,
            },
        },
    }))
}

/// The seed's legacy service: raw logits in input order.
#[utoipa::path(post, path = "/{served_model_name}/post", request_body = LegacyRequest,
    params(("served_model_name" = String, Path, description = "the served model name")),
    responses((status = 200, body = LegacyResponse), (status = "4XX", body = ErrorBody)))]
pub async fn legacy(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LegacyRequest>,
) -> Result<Json<LegacyResponse>, ApiError> {
    let request_time = now();
    let pairs = pyliteral::text_pairs(&req.text_pairs).map_err(ApiError::validation)?;
    if let Some(i) = pairs.iter().position(|(q, _)| q.trim().is_empty()) {
        return Err(ApiError::validation(format!(
            "text_pairs item {i}: the query must not be empty"
        )));
    }
    let scored = state
        .score(ScoreRequest::pairs(pairs.clone()).with_llm(req.llm))
        .await?;
    Ok(Json(LegacyResponse {
        text_pairs: pairs,
        rerank_scores: scored.raw,
        request_time,
        response_time: now(),
        code: 200,
    }))
}

fn now() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// 200 while the inference worker runs.
#[utoipa::path(get, path = "/health", responses((status = 200), (status = 503, body = ErrorBody)))]
pub async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.inner.queue.as_ref().is_none_or(|q| q.is_alive()) {
        Ok(Json(serde_json::json!({"status": "ok"})))
    } else {
        Err(ApiError::unhealthy())
    }
}

/// The model and the server's limits.
#[utoipa::path(get, path = "/info", responses((status = 200, body = Info)))]
pub async fn info(State(state): State<AppState>) -> Json<Info> {
    let c = state.config();
    let embedding = state.inner.embedder.as_ref().map(|served| {
        let e = &served.embedder;
        EmbeddingInfo {
            model_id: e.model_id().to_string(),
            served_model_name: served.name.clone(),
            architecture: e.kind().architecture().to_string(),
            style: e.config().style.to_string(),
            pooling: e
                .config()
                .pooling
                .iter()
                .map(|p| format!("{p:?}").to_lowercase())
                .collect(),
            normalize: e.config().normalize,
            dimension: e.dimension(),
            max_input_length: e.config().max_length,
            dtype: format!("{:?}", e.dtype()).to_lowercase(),
        }
    });
    let reranker = state.inner.reranker.as_ref();
    let dtype = reranker
        .map(|r| r.dtype())
        .or_else(|| state.inner.embedder.as_ref().map(|e| e.embedder.dtype()))
        .unwrap_or_default();
    let dir = reranker.map(|r| r.model_dir()).or_else(|| {
        state
            .inner
            .embedder
            .as_ref()
            .map(|e| e.embedder.model_dir())
    });
    let model_type = match (reranker, &embedding) {
        (None, Some(e)) => json!({"embedding": {"pooling": e.pooling.join("+")}}),
        _ => json!({"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}),
    };
    Json(Info {
        model_id: reranker.map_or_else(
            || {
                embedding
                    .as_ref()
                    .map(|e| e.model_id.clone())
                    .unwrap_or_default()
            },
            |r| r.model_id().to_string(),
        ),
        model_sha: dir.and_then(hub_commit),
        model_dtype: match dtype {
            rerank::Dtype::F32 => "float32",
            rerank::Dtype::Bf16 => "bfloat16",
            rerank::Dtype::Int8 => "int8",
        }
        .into(),
        model_type,
        max_batch_requests: None,
        auto_truncate: true,
        tokenization_workers: rerank::runtime::threads(),
        sha: None,
        docker_label: None,
        served_model_name: c.served_model_name.clone(),
        architecture: reranker.map_or_else(
            || {
                embedding
                    .as_ref()
                    .map(|e| e.architecture.clone())
                    .unwrap_or_default()
            },
            |r| r.kind().architecture().to_string(),
        ),
        options: reranker
            .map(|r| r.model_options().to_vec())
            .unwrap_or_default(),
        max_length: c.max_length,
        max_input_length: reranker.map_or(0, |r| r.max_sequence_length()),
        truncation: match c.truncation {
            Truncation::Flag => "flag".into(),
            Truncation::LongestFirst => "longest-first".into(),
        },
        dtype: format!("{dtype:?}").to_lowercase(),
        kernel: reranker
            .map(|r| r.kernel())
            .or_else(|| state.inner.embedder.as_ref().map(|e| e.embedder.kernel()))
            .unwrap_or_default()
            .to_string(),
        version: env!("CARGO_PKG_VERSION").into(),
        max_batch_tokens: c.max_batch_tokens,
        max_client_batch_size: c.max_client_batch_size,
        max_concurrent_requests: c.max_concurrent_requests,
        max_documents: c.max_documents,
        max_request_tokens: c.max_request_tokens,
        max_document_bytes: c.max_document_bytes,
        reranker: reranker.is_some(),
        embedding,
    })
}

/// The commit of a model folder inside a hub cache (`…/snapshots/<commit>`).
fn hub_commit(dir: &std::path::Path) -> Option<String> {
    let parent = dir.parent()?;
    (parent.file_name()? == "snapshots")
        .then(|| dir.file_name()?.to_str().map(String::from))
        .flatten()
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.inner.metrics.render(),
    )
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rerank",
        description = "BGE rerankers behind the TEI, Cohere, Jina and legacy text_pairs APIs; embedders behind TEI /embed and OpenAI /v1/embeddings"
    ),
    paths(
        rerank_any,
        cohere_rerank,
        legacy,
        crate::http::embeddings::tei_embed,
        crate::http::embeddings::openai_embeddings,
        health,
        info,
        metrics
    ),
    components(schemas(
        crate::http::embeddings::TeiEmbedRequest,
        crate::http::embeddings::OpenAiEmbeddingsRequest,
        crate::http::embeddings::OpenAiEmbeddingsResponse,
        crate::http::embeddings::OpenAiEmbedding,
        crate::http::embeddings::OpenAiUsage,
        crate::http::embeddings::Vector,
        crate::http::embeddings::Texts,
        crate::http::embeddings::EncodingFormat,
        EmbeddingInfo,
        ErrorBody,
        RerankRequest,
        RerankResponse,
        TeiRerankRequest,
        TeiRank,
        CohereRerankRequest,
        CohereRerankResponse,
        LegacyRequest,
        TextPairs,
        LegacyResponse,
        Info
    ))
)]
struct ApiDoc;

/// The OpenAPI document, with the one legacy path this server answers.
pub async fn openapi(State(state): State<AppState>) -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    let paths = &mut doc.paths.paths;
    // Cohere v2 shares v1's schema.
    if let Some(v1) = paths.get("/v1/rerank").cloned() {
        paths.insert("/v2/rerank".into(), v1);
    }
    if let Some(mut legacy) = paths.remove(LEGACY_TEMPLATE) {
        if let Some(post) = legacy.post.as_mut() {
            post.parameters = None;
        }
        paths.insert(legacy_route(&state.config().served_model_name), legacy);
    }
    Json(doc)
}

/// The legacy path as the `legacy` handler documents it.
const LEGACY_TEMPLATE: &str = "/{served_model_name}/post";
