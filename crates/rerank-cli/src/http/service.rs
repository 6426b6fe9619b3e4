//! The scoring path every API shares: check the request's size before any work, take a
//! concurrency permit, tokenize off the async runtime (a query once per request), queue jobs a
//! few at a time so that one large request cannot starve the others, collect the logits.

use std::collections::VecDeque;

use rerank::{
    EncodedPair, LayerPlan, LayerRequest, PairLimits, PromptOptions, TruncationDirection,
};

use crate::http::error::ApiError;
use crate::http::types::LlmFields;
use crate::http::AppState;

/// Jobs of one request waiting in the inference queue at once. Two keep the worker fed (one
/// runs while the next waits) while a request that arrives later queues behind at most two
/// jobs of each earlier one.
const JOBS_IN_QUEUE_PER_REQUEST: usize = 2;

/// What a request asks to score.
pub enum Inputs {
    /// One query against each document (TEI, Cohere, Jina): the query is tokenized once.
    QueryDocuments {
        /// The query.
        query: String,
        /// The documents.
        documents: Vec<String>,
    },
    /// Independent `(query, passage)` pairs (the legacy API).
    Pairs(Vec<(String, String)>),
}

impl Inputs {
    fn len(&self) -> usize {
        match self {
            Inputs::QueryDocuments { documents, .. } => documents.len(),
            Inputs::Pairs(pairs) => pairs.len(),
        }
    }
}

/// Texts to score and the per-request options of the API that asked.
pub struct ScoreRequest {
    /// The texts.
    pub inputs: Inputs,
    /// Cut over-long pairs; `false` rejects them.
    pub truncate: bool,
    /// Which end to cut.
    pub direction: TruncationDirection,
    /// Cohere's per-document token limit.
    pub passage_max_length: Option<usize>,
    /// The prompt an LLM reranker wraps around each pair (`None` = its default); other models
    /// refuse it with 422.
    pub prompt: PromptOptions,
    /// The layerwise rerankers' `cutoff_layers` (one layer) and compression; other models
    /// refuse them with 422.
    pub layers: LayerRequest,
}

impl ScoreRequest {
    /// One query against each document, default options.
    pub fn query_documents(query: String, documents: Vec<String>) -> Self {
        Self::new(Inputs::QueryDocuments { query, documents })
    }

    /// Independent pairs, default options.
    pub fn pairs(pairs: Vec<(String, String)>) -> Self {
        Self::new(Inputs::Pairs(pairs))
    }

    fn new(inputs: Inputs) -> Self {
        Self {
            inputs,
            truncate: true,
            direction: TruncationDirection::Right,
            passage_max_length: None,
            prompt: PromptOptions::default(),
            layers: LayerRequest::default(),
        }
    }

    /// The same request with the LLM rerankers' options (extra fields in every API).
    pub fn with_llm(mut self, llm: LlmFields) -> Self {
        self.prompt.prompt = llm.prompt;
        self.layers = LayerRequest {
            cutoff_layers: llm.cutoff_layers,
            compress_ratio: llm.compress_ratio,
            compress_layers: llm.compress_layers.or(llm.compress_layer),
        };
        self
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
    /// One of `--max-concurrent-requests` slots, held while a request is worked on; 429 when
    /// none is free.
    pub fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.inner
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::overloaded(self.config().max_concurrent_requests))
    }

    /// Scores the texts of one request.
    pub async fn score(&self, request: ScoreRequest) -> Result<Scored, ApiError> {
        let config = self.config();
        let started = std::time::Instant::now();
        metrics::counter!("te_request_count", "method" => "rerank").increment(1);
        check_sizes(
            &request.inputs,
            config.max_documents,
            config.max_document_bytes,
        )?;
        let _permit = self.permit()?;
        let reranker = self.reranker()?.clone();
        let model_max = reranker.max_sequence_length();
        let mut limits = PairLimits::new(
            config.truncation,
            config.max_length,
            config.query_max_length,
        );
        limits.direction = request.direction;
        limits.passage_max_length = request.passage_max_length;
        let max = if request.truncate {
            model_max
        } else {
            // Over-long pairs are refused, not cut: cutting every text to one token over the
            // limit keeps them refused while bounding the work spent on them.
            let max = config.max_length.min(model_max);
            limits.max_length = max + 1;
            limits.query_max_length = max + 1;
            max
        };
        let plan = reranker.plan_single_layer(&request.layers)?;
        let (inputs, prompt) = (request.inputs, request.prompt);
        let tokenizing = std::time::Instant::now();
        let encoded = tokio::task::spawn_blocking(move || match inputs {
            Inputs::QueryDocuments { query, documents } => {
                reranker.encode_query_documents(&query, &documents, &limits, &prompt)
            }
            Inputs::Pairs(pairs) => reranker.encode_pairs_with(&pairs, &limits, &prompt),
        })
        .await
        .map_err(|e| ApiError::backend(format!("tokenizer task failed: {e}")))??;
        record_tokenization(tokenizing, encoded.iter().map(|e| e.ids.len()));
        // Checked here, per request, so that one bad pair never fails a batch shared with
        // other clients.
        if let Some(i) = encoded.iter().position(|e| e.ids.is_empty()) {
            return Err(ApiError::validation(format!(
                "document {i}: the pair encodes to no tokens"
            )));
        }
        if let Some(i) = encoded.iter().position(|e| e.ids.len() > max) {
            return Err(ApiError::validation(format!(
                "document {i}: the pair is longer than the limit of {max} tokens{}",
                if request.truncate {
                    ""
                } else {
                    "; send truncate=true to cut it"
                }
            )));
        }
        let tokens = request_tokens(&encoded, config.max_request_tokens, ("pairs", "documents"))?;
        let jobs = split_jobs(
            encoded,
            config.max_client_batch_size,
            config.max_batch_tokens,
        );
        let raw = self.run_jobs(jobs, plan).await?;
        record_success(started, "rerank");
        Ok(Scored { raw, tokens })
    }

    /// Queues the jobs of one request, at most [`JOBS_IN_QUEUE_PER_REQUEST`] at a time, and
    /// collects their logits in order.
    async fn run_jobs(
        &self,
        jobs: Vec<Vec<EncodedPair>>,
        plan: Option<LayerPlan>,
    ) -> Result<Vec<f32>, ApiError> {
        let mut raw = Vec::new();
        let mut waiting = VecDeque::new();
        let mut jobs = jobs.into_iter();
        loop {
            while waiting.len() < JOBS_IN_QUEUE_PER_REQUEST {
                let Some(job) = jobs.next() else { break };
                let rx = self
                    .queue()?
                    .submit(job, plan.clone())
                    .ok_or_else(ApiError::unhealthy)?;
                waiting.push_back(rx);
            }
            let Some(rx) = waiting.pop_front() else {
                return Ok(raw);
            };
            let scores = rx.await.map_err(|_| ApiError::unhealthy())?;
            raw.extend(scores.map_err(ApiError::backend)?);
        }
    }
}

/// The tokens of all of one request's sequences; 413 over `--max-request-tokens`. `names` are
/// what the sequences are and what the client sent (`("pairs", "documents")`).
pub fn request_tokens(
    encoded: &[EncodedPair],
    limit: usize,
    names: (&str, &str),
) -> Result<usize, ApiError> {
    let tokens: usize = encoded.iter().map(|e| e.ids.len()).sum();
    if tokens > limit {
        let (sequences, inputs) = names;
        return Err(ApiError::too_large(format!(
            "the request's {sequences} take {tokens} tokens, over the limit of {limit} \
             (--max-request-tokens): send fewer or shorter {inputs}"
        )));
    }
    Ok(tokens)
}

/// TEI's `te_request_tokenization_duration` and `te_request_input_length` (one per input).
pub fn record_tokenization(started: std::time::Instant, lengths: impl Iterator<Item = usize>) {
    metrics::histogram!("te_request_tokenization_duration").record(started.elapsed().as_secs_f64());
    for length in lengths {
        metrics::histogram!("te_request_input_length").record(length as f64);
    }
}

/// TEI's `te_request_success{method}` and `te_request_duration` for a request answered in full.
pub fn record_success(started: std::time::Instant, method: &'static str) {
    metrics::counter!("te_request_success", "method" => method).increment(1);
    metrics::histogram!("te_request_duration").record(started.elapsed().as_secs_f64());
}

/// Splits pairs into jobs of at most `max_pairs` pairs and (but for a single longer pair)
/// `max_tokens` tokens, in order.
fn split_jobs(
    encoded: Vec<EncodedPair>,
    max_pairs: usize,
    max_tokens: usize,
) -> Vec<Vec<EncodedPair>> {
    let mut jobs = Vec::new();
    let mut job: Vec<EncodedPair> = Vec::new();
    let mut tokens = 0;
    for pair in encoded {
        if !job.is_empty() && (job.len() == max_pairs || tokens + pair.ids.len() > max_tokens) {
            jobs.push(std::mem::take(&mut job));
            tokens = 0;
        }
        tokens += pair.ids.len();
        job.push(pair);
    }
    if !job.is_empty() {
        jobs.push(job);
    }
    jobs
}

/// Refuses a request whose document count or text sizes break the limits, before any work.
fn check_sizes(inputs: &Inputs, max_documents: usize, max_bytes: usize) -> Result<(), ApiError> {
    let count = inputs.len();
    if count == 0 {
        return Err(ApiError::empty("no documents to score"));
    }
    if count > max_documents {
        return Err(ApiError::validation(format!(
            "{count} documents, over the limit of {max_documents} per request (--max-documents)"
        )));
    }
    let too_big = |what: &str, len: usize| {
        ApiError::validation(format!(
            "{what} is {len} bytes, over the limit of {max_bytes} (--max-document-bytes)"
        ))
    };
    match inputs {
        Inputs::QueryDocuments { query, documents } => {
            if query.len() > max_bytes {
                return Err(too_big("the query", query.len()));
            }
            if let Some((i, d)) = documents
                .iter()
                .enumerate()
                .find(|(_, d)| d.len() > max_bytes)
            {
                return Err(too_big(&format!("document {i}"), d.len()));
            }
        }
        Inputs::Pairs(pairs) => {
            for (i, (q, p)) in pairs.iter().enumerate() {
                if q.len() > max_bytes {
                    return Err(too_big(&format!("the query of pair {i}"), q.len()));
                }
                if p.len() > max_bytes {
                    return Err(too_big(&format!("the passage of pair {i}"), p.len()));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(tokens: usize) -> EncodedPair {
        EncodedPair {
            ids: vec![1; tokens],
            type_ids: vec![0; tokens],
            span: None,
        }
    }

    #[test]
    fn jobs_are_cut_by_pairs_and_by_tokens_in_order() {
        let sizes = [3, 3, 3, 10, 1, 1, 1, 1];
        let pairs = sizes.iter().map(|&n| pair(n)).collect();
        let jobs: Vec<Vec<usize>> = split_jobs(pairs, 3, 8)
            .iter()
            .map(|job| job.iter().map(|p| p.ids.len()).collect())
            .collect();
        assert_eq!(
            jobs,
            vec![vec![3, 3], vec![3], vec![10], vec![1, 1, 1], vec![1]]
        );
    }

    #[test]
    fn sizes_are_checked_before_work() {
        let docs = |n: usize, len: usize| Inputs::QueryDocuments {
            query: "q".into(),
            documents: vec!["d".repeat(len); n],
        };
        assert!(check_sizes(&docs(10, 5), 10, 5).is_ok());
        assert!(check_sizes(&docs(11, 5), 10, 5).is_err());
        assert!(check_sizes(&docs(10, 6), 10, 5).is_err());
        assert!(check_sizes(&docs(0, 1), 10, 5).is_err());
        let long_query = Inputs::Pairs(vec![("q".repeat(6), "p".into())]);
        assert!(check_sizes(&long_query, 10, 5).is_err());
    }
}
