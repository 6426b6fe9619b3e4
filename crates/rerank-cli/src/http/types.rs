//! Request and response bodies of the four APIs (see `shared/docs/API.md`). Unknown request
//! fields are ignored; booleans and integers also come as strings ([`lenient`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::lenient;

/// Which end of an over-long text TEI cuts.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq, Eq)]
pub enum Direction {
    /// Cut the end (keep the beginning).
    #[default]
    #[serde(alias = "right", alias = "RIGHT")]
    Right,
    /// Cut the beginning (keep the end).
    #[serde(alias = "left", alias = "LEFT")]
    Left,
}

/// TEI `POST /rerank`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TeiRerankRequest {
    /// The query (not blank).
    #[schema(min_length = 1, pattern = r"\S")]
    pub query: String,
    /// The passages to score against it.
    #[schema(min_items = 1)]
    pub texts: Vec<String>,
    /// Cut over-long pairs (default true); `false` rejects them with 422.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub truncate: Option<bool>,
    /// Which end to cut.
    #[serde(default)]
    pub truncation_direction: Direction,
    /// Raw logits instead of sigmoid scores.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub raw_scores: bool,
    /// Echo each text in the response.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub return_text: bool,
    /// LLM rerankers' options (`prompt`, `cutoff_layers`, `compress_ratio`,
    /// `compress_layers`); other models answer 422 to any of them.
    #[serde(flatten)]
    pub llm: LlmFields,
}

/// The LLM rerankers' per-request options, extra fields of every API (FlagEmbedding's names).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct LlmFields {
    /// LLM rerankers only: the question after each pair (FlagEmbedding's `prompt`; default
    /// the model's own).
    #[serde(default)]
    pub prompt: Option<String>,
    /// Layerwise LLM rerankers only: the layer to score at, an integer or a list of exactly
    /// one (default the last layer).
    #[serde(default, deserialize_with = "cutoff_layers")]
    #[schema(value_type = Option<Layers>)]
    pub cutoff_layers: Option<Vec<usize>>,
    /// bge-reranker-v2.5-gemma2-lightweight only: passage tokens averaged into one (1, 2, 4
    /// or 8; default 1, off).
    #[serde(default, deserialize_with = "lenient::opt_usize")]
    pub compress_ratio: Option<usize>,
    /// bge-reranker-v2.5-gemma2-lightweight only: layers before which the passage is
    /// compressed (default [8]).
    #[serde(default, deserialize_with = "compress_layers")]
    #[schema(value_type = Option<Layers>)]
    pub compress_layers: Option<Vec<usize>>,
    /// Deprecated name of `compress_layers` (FlagEmbedding's `compress_layer`).
    #[serde(default, deserialize_with = "compress_layer")]
    #[schema(value_type = Option<Layers>)]
    pub compress_layer: Option<Vec<usize>>,
}

/// A layer number or a list of them, as a list; an error naming `field` otherwise.
fn layers<'de, D: serde::Deserializer<'de>>(
    d: D,
    field: &str,
) -> Result<Option<Vec<usize>>, D::Error> {
    use serde::de::Error;
    let as_layer = lenient::as_usize;
    let bad = || D::Error::custom(format!("{field} must be a layer number or a list of them"));
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| as_layer(v).ok_or_else(bad))
            .collect::<Result<_, _>>()
            .map(Some),
        Some(v) => as_layer(&v).map(|l| Some(vec![l])).ok_or_else(bad),
    }
}

fn cutoff_layers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<usize>>, D::Error> {
    layers(d, "cutoff_layers")
}

fn compress_layers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<usize>>, D::Error> {
    layers(d, "compress_layers")
}

fn compress_layer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<usize>>, D::Error> {
    layers(d, "compress_layer")
}

/// A layer number or a list of them (for the OpenAPI document; parsed by hand so that a bad
/// value's message names its field).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only its schema is used
pub enum Layers {
    /// One layer.
    One(usize),
    /// Several layers.
    Many(Vec<usize>),
}

/// `POST /rerank`'s two request shapes (for the OpenAPI document; chosen by key).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only its schema is used
pub enum RerankRequest {
    /// TEI: `{query, texts}`.
    Tei(TeiRerankRequest),
    /// Cohere / Jina / vLLM / Infinity: `{query, documents}`.
    Cohere(CohereRerankRequest),
}

/// `POST /rerank`'s two response shapes: TEI's sorted list, or Cohere's object.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only its schema is used
pub enum RerankResponse {
    /// For a TEI request.
    Tei(Vec<TeiRank>),
    /// For a `documents` request.
    Cohere(CohereRerankResponse),
}

/// One TEI result.
#[derive(Debug, Serialize, ToSchema)]
pub struct TeiRank {
    /// Position of the text in the request.
    pub index: usize,
    /// Sigmoid score, or raw logit with `raw_scores`.
    pub score: f32,
    /// The text, with `return_text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A Cohere/Jina document: a string or an object with a `text` field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Document {
    /// Plain text.
    Text(String),
    /// `{"text": "..."}` (other fields ignored).
    Object {
        /// The document text.
        text: String,
    },
}

impl Document {
    /// The document text.
    pub fn into_text(self) -> String {
        match self {
            Document::Text(t) | Document::Object { text: t } => t,
        }
    }
}

/// Cohere `POST /v1/rerank`, `/v2/rerank` and Jina `POST /v1/rerank`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CohereRerankRequest {
    /// Model name (echoed back; the server runs one model).
    #[serde(default)]
    pub model: Option<String>,
    /// The query (not blank).
    #[schema(min_length = 1, pattern = r"\S")]
    pub query: String,
    /// The documents to rank.
    #[schema(min_items = 1)]
    pub documents: Vec<Document>,
    /// Return only the best N.
    #[serde(default, deserialize_with = "lenient::opt_usize")]
    pub top_n: Option<usize>,
    /// Include each document's text in the results.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub return_documents: Option<bool>,
    /// Cut each document to this many tokens before scoring.
    #[serde(default, deserialize_with = "lenient::opt_usize")]
    pub max_tokens_per_doc: Option<usize>,
    /// Infinity: raw logits as `relevance_score` instead of their sigmoid.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub raw_scores: bool,
    /// LLM rerankers' options (`prompt`, `cutoff_layers`, `compress_ratio`,
    /// `compress_layers`); other models answer 422 to any of them.
    #[serde(flatten)]
    pub llm: LlmFields,
}

/// A document echoed in a result.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentText {
    /// The document text.
    pub text: String,
}

/// One Cohere/Jina result.
#[derive(Debug, Serialize, ToSchema)]
pub struct CohereResult {
    /// Position of the document in the request.
    pub index: usize,
    /// Sigmoid of the logit, in (0, 1) (the raw logit with Infinity's `raw_scores`).
    pub relevance_score: f32,
    /// The document, with `return_documents`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentText>,
}

/// Jina's token usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    /// Tokens of every scored pair.
    pub total_tokens: usize,
    /// Same as `total_tokens`.
    pub prompt_tokens: usize,
}

/// Cohere's API version block.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiVersion {
    /// Always "2".
    pub version: String,
}

/// Cohere's billing block.
#[derive(Debug, Serialize, ToSchema)]
pub struct BilledUnits {
    /// Cohere's count: one per started hundred documents.
    pub search_units: usize,
}

/// Cohere's token counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    /// Tokens fed to the model: every pair, special tokens included, after truncation.
    pub input_tokens: usize,
    /// Always 0 (a reranker generates nothing).
    pub output_tokens: usize,
}

/// Cohere's `meta`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Meta {
    /// API version.
    pub api_version: ApiVersion,
    /// Billing.
    pub billed_units: BilledUnits,
    /// Token counts.
    pub tokens: Tokens,
}

/// The union of Cohere's and Jina's responses.
#[derive(Debug, Serialize, ToSchema)]
pub struct CohereRerankResponse {
    /// Request id.
    pub id: String,
    /// Model name.
    pub model: String,
    /// Results, best first.
    pub results: Vec<CohereResult>,
    /// Jina's token usage.
    pub usage: Usage,
    /// Cohere's meta.
    pub meta: Meta,
}

/// The legacy service's request: `text_pairs` as a JSON array of pairs or a string holding a
/// Python-literal list.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LegacyRequest {
    /// `[[query, passage], ...]` or `"[['query', 'passage'], ...]"`.
    #[schema(value_type = TextPairs)]
    pub text_pairs: serde_json::Value,
    /// LLM rerankers' options (`prompt`, `cutoff_layers`, `compress_ratio`,
    /// `compress_layers`); other models answer 422 to any of them.
    #[serde(flatten)]
    pub llm: LlmFields,
}

/// The two shapes `text_pairs` takes (for the OpenAPI document; parsed from JSON by hand so
/// that each bad item gets its own message).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only its schema is used
pub enum TextPairs {
    /// A JSON array of `[query, passage]` pairs (two strings each).
    Pairs(Vec<Vec<String>>),
    /// A string holding a Python-literal list of pairs.
    Literal(String),
}

/// The legacy service's response.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyResponse {
    /// The pairs, as parsed.
    #[schema(value_type = Vec<Vec<String>>)]
    pub text_pairs: Vec<(String, String)>,
    /// Raw logits, in input order.
    pub rerank_scores: Vec<f32>,
    /// When the request arrived, `%Y-%m-%d %H:%M:%S` local time.
    pub request_time: String,
    /// When the answer was ready.
    pub response_time: String,
    /// Always 200.
    pub code: u16,
}

/// `GET /info`: TEI's fields (Dify and other TEI clients read `model_type`) and ours.
#[derive(Debug, Serialize, ToSchema)]
pub struct Info {
    /// The model as named on the command line.
    pub model_id: String,
    /// TEI: the hub commit of the model, when it came from the hub cache.
    pub model_sha: Option<String>,
    /// TEI: the compute dtype (`float32`, `bfloat16`, `int8`).
    pub model_dtype: String,
    /// TEI: `{"reranker": {"id2label", "label2id"}}`, or `{"embedding": {"pooling"}}` on a
    /// server of an embedder alone.
    #[schema(value_type = Object)]
    pub model_type: serde_json::Value,
    /// TEI: requests per forward pass (no fixed limit: `null`).
    pub max_batch_requests: Option<usize>,
    /// TEI: whether over-long inputs are cut by default.
    pub auto_truncate: bool,
    /// TEI: threads that tokenize.
    pub tokenization_workers: usize,
    /// TEI: the build's commit (`null`).
    pub sha: Option<String>,
    /// TEI: the container label (`null`).
    pub docker_label: Option<String>,
    /// The name routes and responses use.
    pub served_model_name: String,
    /// The model's architecture.
    pub architecture: String,
    /// Per-request options the model takes besides the APIs' own (`prompt` for the LLM
    /// rerankers, `cutoff_layers` for the layerwise ones, `compress_ratio` and
    /// `compress_layers` for the lightweight one).
    pub options: Vec<&'static str>,
    /// Tokens per pair used for scoring.
    pub max_length: usize,
    /// The longest pair the model accepts.
    pub max_input_length: usize,
    /// Truncation strategy.
    pub truncation: String,
    /// Compute dtype.
    pub dtype: String,
    /// The matrix-product kernel that dtype runs on this CPU.
    pub kernel: String,
    /// Server version.
    pub version: String,
    /// Token budget of one forward pass.
    pub max_batch_tokens: usize,
    /// Documents per internal job.
    pub max_client_batch_size: usize,
    /// Concurrent requests before 429.
    pub max_concurrent_requests: usize,
    /// Documents per request.
    pub max_documents: usize,
    /// Tokens of one request's pairs.
    pub max_request_tokens: usize,
    /// Bytes of one query or document.
    pub max_document_bytes: usize,
    /// Whether a reranker is served (the fields above describe the embedder when not).
    pub reranker: bool,
    /// The embedding model, when one is served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingInfo>,
}

/// The embedding model a server serves.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingInfo {
    /// The model as named on the command line.
    pub model_id: String,
    /// The name embeddings requests may give as `model`.
    pub served_model_name: String,
    /// The encoder's architecture.
    pub architecture: String,
    /// `sentence-transformers` or `flagmodel`.
    pub style: String,
    /// Pooling modes, concatenated in order.
    pub pooling: Vec<String>,
    /// Whether vectors are L2-normalised by default.
    pub normalize: bool,
    /// Length of each vector.
    pub dimension: usize,
    /// Longest input in tokens; longer texts are cut.
    pub max_input_length: usize,
    /// Compute dtype.
    pub dtype: String,
}
