//! The scoring path every API shares: validate, take a concurrency permit, tokenize off the
//! async runtime, queue in jobs of at most `max_client_batch_size` pairs, collect the logits.

use rerank::{PairLimits, TruncationDirection};

use crate::http::error::ApiError;
use crate::http::AppState;

/// Pairs to score and the per-request options of the API that asked.
pub struct ScoreRequest {
    /// `(query, passage)` pairs.
    pub pairs: Vec<(String, String)>,
    /// Cut over-long pairs; `false` rejects them.
    pub truncate: bool,
    /// Which end to cut.
    pub direction: TruncationDirection,
    /// Cohere's per-document token limit.
    pub passage_max_length: Option<usize>,
}

impl ScoreRequest {
    /// Pairs of one query with each document, default options.
    pub fn query_documents(query: &str, documents: Vec<String>) -> Self {
        Self {
            pairs: documents
                .into_iter()
                .map(|d| (query.to_string(), d))
                .collect(),
            truncate: true,
            direction: TruncationDirection::Right,
            passage_max_length: None,
        }
    }
}

/// Raw logits in input order and the tokens they took.
pub struct Scored {
    /// One logit per pair.
    pub raw: Vec<f32>,
    /// Tokens of all pairs, special tokens included.
    pub tokens: usize,
}

impl AppState {
    /// Scores the pairs of one request.
    pub async fn score(&self, request: ScoreRequest) -> Result<Scored, ApiError> {
        let config = self.config();
        if request.pairs.is_empty() {
            return Err(ApiError::empty("no documents to score"));
        }
        check_sizes(&request.pairs, config.max_document_bytes)?;
        let _permit = self
            .inner
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::overloaded(config.max_concurrent_requests))?;
        let mut limits = PairLimits::new(
            config.truncation,
            config.max_length,
            config.query_max_length,
        );
        limits.direction = request.direction;
        limits.passage_max_length = request.passage_max_length;
        if !request.truncate {
            limits.max_length = usize::MAX / 4;
            limits.query_max_length = usize::MAX / 4;
        }
        let reranker = self.inner.reranker.clone();
        let pairs = request.pairs;
        let encoded = tokio::task::spawn_blocking(move || reranker.encode_pairs(&pairs, &limits))
            .await
            .map_err(|e| ApiError::backend(format!("tokenizer task failed: {e}")))??;
        let max = if request.truncate {
            self.inner.reranker.max_sequence_length()
        } else {
            config
                .max_length
                .min(self.inner.reranker.max_sequence_length())
        };
        // Checked here, per request, so that one bad pair never fails a batch shared with
        // other clients.
        if let Some(i) = encoded.iter().position(|e| e.ids.is_empty()) {
            return Err(ApiError::validation(format!(
                "document {i}: the pair encodes to no tokens"
            )));
        }
        if let Some((i, e)) = encoded.iter().enumerate().find(|(_, e)| e.ids.len() > max) {
            return Err(ApiError::validation(format!(
                "document {i}: the pair has {} tokens, more than the limit of {max}{}",
                e.ids.len(),
                if request.truncate {
                    ""
                } else {
                    "; send truncate=true to cut it"
                }
            )));
        }
        let tokens = encoded.iter().map(|e| e.ids.len()).sum();
        let mut receivers = Vec::new();
        let mut encoded = encoded;
        while !encoded.is_empty() {
            let rest = encoded.split_off(encoded.len().min(config.max_client_batch_size));
            let job = std::mem::replace(&mut encoded, rest);
            receivers.push(
                self.inner
                    .queue
                    .submit(job)
                    .ok_or_else(ApiError::unhealthy)?,
            );
        }
        let mut raw = Vec::new();
        for rx in receivers {
            let scores = rx.await.map_err(|_| ApiError::unhealthy())?;
            raw.extend(scores.map_err(ApiError::backend)?);
        }
        Ok(Scored { raw, tokens })
    }
}

fn check_sizes(pairs: &[(String, String)], limit: usize) -> Result<(), ApiError> {
    for (i, (q, p)) in pairs.iter().enumerate() {
        let (what, len) = if q.len() > limit {
            ("query", q.len())
        } else {
            ("document", p.len())
        };
        if len > limit {
            return Err(ApiError::validation(format!(
                "{what} {i} is {len} bytes, over the limit of {limit} (--max-document-bytes)"
            )));
        }
    }
    Ok(())
}
