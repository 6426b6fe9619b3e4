//! The embedding routes: TEI `POST /embed` and OpenAI `POST /v1/embeddings` (also
//! `/embeddings`), both on the server's `--embedding-model`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use rerank::embedder::l2_normalize;
use rerank::EmbedOptions;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::error::{ApiError, ErrorBody, ErrorType};
use crate::http::extract::ApiJson;
use crate::http::lenient;
use crate::http::service::{record_success, record_tokenization, request_tokens};
use crate::http::types::Direction;
use crate::http::AppState;

/// One text or a list of texts (the `inputs` of TEI, the `input` of OpenAI).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only its schema is used; parsed by `texts`
pub enum Texts {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
}

/// A string or a list of strings, as a list; an error naming `field` otherwise (token-id
/// arrays included: this server takes text).
fn texts<'de, D: serde::Deserializer<'de>>(d: D, field: &str) -> Result<Vec<String>, D::Error> {
    use serde::de::Error;
    use serde_json::Value;
    let bad = |why: &str| {
        D::Error::custom(format!(
            "{field} must be a string or a list of strings{why}"
        ))
    };
    match Value::deserialize(d)? {
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                Value::Number(_) | Value::Array(_) => {
                    Err(bad(" (token id arrays are not supported: send the text)"))
                }
                _ => Err(bad("")),
            })
            .collect(),
        _ => Err(bad("")),
    }
}

fn tei_inputs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    texts(d, "inputs")
}

fn openai_input<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    texts(d, "input")
}

/// TEI `POST /embed`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TeiEmbedRequest {
    /// The texts to embed.
    #[serde(deserialize_with = "tei_inputs")]
    #[schema(value_type = Texts)]
    pub inputs: Vec<String>,
    /// L2-normalise the vectors (default true, as TEI).
    #[serde(default = "yes", deserialize_with = "lenient::bool")]
    pub normalize: bool,
    /// Cut texts over the model's maximum (default true); `false` rejects them with 422.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub truncate: Option<bool>,
    /// Which end to cut: only `Right` (keep the beginning) is supported.
    #[serde(default)]
    pub truncation_direction: Direction,
    /// Keep the first `dimensions` values of each vector (then normalise again).
    #[serde(default, deserialize_with = "lenient::opt_usize")]
    #[schema(minimum = 1)]
    pub dimensions: Option<usize>,
}

fn yes() -> bool {
    true
}

/// How OpenAI's API returns vectors.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// A JSON array of numbers.
    #[default]
    Float,
    /// Base64 of the little-endian f32 bytes (what the `openai` SDK asks for by default).
    Base64,
}

/// OpenAI `POST /v1/embeddings`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct OpenAiEmbeddingsRequest {
    /// The texts to embed.
    #[serde(deserialize_with = "openai_input")]
    #[schema(value_type = Texts)]
    pub input: Vec<String>,
    /// The served embedding model's name (or its model id); may be omitted.
    #[serde(default)]
    pub model: Option<String>,
    /// `float` (default) or `base64`.
    #[serde(default)]
    pub encoding_format: EncodingFormat,
    /// Keep the first `dimensions` values of each vector (then normalise again).
    #[serde(default, deserialize_with = "lenient::opt_usize")]
    #[schema(minimum = 1)]
    pub dimensions: Option<usize>,
}

/// One vector, as floats or base64.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Vector {
    /// The values.
    Float(Vec<f32>),
    /// Base64 of the little-endian f32 bytes.
    Base64(String),
}

/// One item of an OpenAI embeddings response.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiEmbedding {
    /// Always `embedding`.
    pub object: &'static str,
    /// The vector.
    pub embedding: Vector,
    /// Position of its text in the request.
    pub index: usize,
}

/// Token counts of an OpenAI response.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiUsage {
    /// Tokens of all texts, special tokens included.
    pub prompt_tokens: usize,
    /// The same.
    pub total_tokens: usize,
}

/// OpenAI embeddings response.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiEmbeddingsResponse {
    /// Always `list`.
    pub object: &'static str,
    /// One vector per text, in order.
    pub data: Vec<OpenAiEmbedding>,
    /// The served embedding model's name.
    pub model: String,
    /// Token counts.
    pub usage: OpenAiUsage,
}

/// TEI: one vector per text, in order.
#[utoipa::path(post, path = "/embed", request_body = TeiEmbedRequest,
    responses((status = 200, body = [Vec<f32>]), (status = "4XX", body = ErrorBody)))]
pub async fn tei_embed(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TeiEmbedRequest>,
) -> Result<Json<Vec<Vec<f32>>>, ApiError> {
    if req.truncation_direction != Direction::Right {
        return Err(ApiError::validation(
            "truncation_direction Left is not supported for embeddings",
        ));
    }
    let embedded = state
        .embed(
            req.inputs,
            Some(req.normalize),
            req.truncate.unwrap_or(true),
            req.dimensions,
        )
        .await?;
    Ok(Json(embedded.vectors))
}

/// OpenAI (and vLLM / Infinity): `{"object": "list", "data": [{"embedding", "index"}], …}`.
#[utoipa::path(post, path = "/v1/embeddings", request_body = OpenAiEmbeddingsRequest,
    responses((status = 200, body = OpenAiEmbeddingsResponse), (status = "4XX", body = ErrorBody)))]
pub async fn openai_embeddings(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<OpenAiEmbeddingsRequest>,
) -> Result<Json<OpenAiEmbeddingsResponse>, ApiError> {
    let served = state.embedder()?;
    if let Some(model) = req.model.as_deref() {
        if model != served.name && model != served.embedder.model_id() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorType::NotFound,
                format!(
                    "model '{model}' is not served here; embeddings come from '{}'",
                    served.name
                ),
            ));
        }
    }
    let name = served.name.clone();
    let embedded = state.embed(req.input, None, true, req.dimensions).await?;
    let data = embedded
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| OpenAiEmbedding {
            object: "embedding",
            embedding: match req.encoding_format {
                EncodingFormat::Float => Vector::Float(v),
                EncodingFormat::Base64 => Vector::Base64(base64_f32(&v)),
            },
            index,
        })
        .collect();
    Ok(Json(OpenAiEmbeddingsResponse {
        object: "list",
        data,
        model: name,
        usage: OpenAiUsage {
            prompt_tokens: embedded.tokens,
            total_tokens: embedded.tokens,
        },
    }))
}

/// Base64 of the little-endian bytes of `v` (OpenAI's `encoding_format: base64`).
fn base64_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Vectors of one request and the tokens they took.
pub struct Embedded {
    /// One vector per text.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of all texts, special tokens included.
    pub tokens: usize,
}

impl AppState {
    /// Embeds the texts of one request: checks sizes, takes a concurrency permit, tokenizes
    /// off the async runtime, then runs jobs of `--max-client-batch-size` texts one at a time
    /// (requests take turns between jobs).
    pub async fn embed(
        &self,
        texts: Vec<String>,
        normalize: Option<bool>,
        truncate: bool,
        dimensions: Option<usize>,
    ) -> Result<Embedded, ApiError> {
        let embedder = self.embedder()?.embedder.clone();
        let config = self.config();
        let started = std::time::Instant::now();
        metrics::counter!("te_request_count", "method" => "embed").increment(1);
        check_texts(&texts, config.max_documents, config.max_document_bytes)?;
        let dim = embedder.dimension();
        if let Some(d) = dimensions.filter(|&d| d == 0 || d > dim) {
            return Err(ApiError::validation(format!(
                "dimensions {d} must be between 1 and the model's {dim}"
            )));
        }
        let _permit = self.permit()?;
        let normalize = normalize.unwrap_or(embedder.config().normalize);
        let opts = EmbedOptions {
            normalize: Some(normalize),
            truncate,
            ..EmbedOptions::default()
        };
        let encoder = embedder.clone();
        let tokenizing = std::time::Instant::now();
        let encoded = tokio::task::spawn_blocking(move || encoder.encode_texts(&texts, &opts))
            .await
            .map_err(|e| ApiError::backend(format!("tokenizer task failed: {e}")))??;
        record_tokenization(tokenizing, encoded.iter().map(|e| e.ids.len()));
        let tokens = request_tokens(&encoded, config.max_request_tokens, ("texts", "texts"))?;
        let mut vectors = Vec::with_capacity(encoded.len());
        for job in encoded.chunks(config.max_client_batch_size) {
            let _slot = self.inner.embed_slot.lock().await;
            let (model, job, budget) = (embedder.clone(), job.to_vec(), config.max_batch_tokens);
            let done =
                tokio::task::spawn_blocking(move || model.embed_encoded(&job, normalize, budget))
                    .await
                    .map_err(|e| ApiError::backend(format!("embedding task failed: {e}")))??;
            vectors.extend(done);
        }
        if let Some(d) = dimensions {
            for v in &mut vectors {
                v.truncate(d);
                if normalize {
                    l2_normalize(v);
                }
            }
        }
        record_success(started, "embed");
        Ok(Embedded { vectors, tokens })
    }
}

/// 400 for no text, 422 for too many or too long ones.
fn check_texts(texts: &[String], max_texts: usize, max_bytes: usize) -> Result<(), ApiError> {
    if texts.is_empty() {
        return Err(ApiError::empty("no texts to embed"));
    }
    if texts.len() > max_texts {
        return Err(ApiError::validation(format!(
            "{} texts, over the limit of {max_texts} per request (--max-documents)",
            texts.len()
        )));
    }
    if let Some((i, t)) = texts.iter().enumerate().find(|(_, t)| t.len() > max_bytes) {
        return Err(ApiError::validation(format!(
            "text {i} is {} bytes, over the limit of {max_bytes} (--max-document-bytes)",
            t.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[]), "");
    }

    #[test]
    fn inputs_parse_as_string_or_list() {
        let one: TeiEmbedRequest = serde_json::from_str(r#"{"inputs": "a"}"#).unwrap();
        assert_eq!(one.inputs, vec!["a"]);
        assert!(one.normalize);
        let many: OpenAiEmbeddingsRequest =
            serde_json::from_str(r#"{"input": ["a", "b"], "encoding_format": "base64"}"#).unwrap();
        assert_eq!(many.input.len(), 2);
        assert_eq!(many.encoding_format, EncodingFormat::Base64);
        let err = serde_json::from_str::<OpenAiEmbeddingsRequest>(r#"{"input": [[1, 2]]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("token id arrays"), "{err}");
        assert!(serde_json::from_str::<TeiEmbedRequest>(r#"{"inputs": 3}"#).is_err());
    }
}
