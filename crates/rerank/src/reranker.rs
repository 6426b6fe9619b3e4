//! The `Reranker`: a cross-encoder and its tokenizer, scoring query–passage pairs.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rerank_models::{CrossEncoder, Dtype, ModelKind, PackedBatch};

use crate::error::{Error, Result};
use crate::hub;
use crate::scores::{ranking, sigmoid};
use crate::tokenize::{EncodedPair, PairEncoder, PairLimits, Truncation};

/// Options of one scoring call; the defaults are FlagReranker's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreOptions {
    /// Apply a sigmoid to the logits (FlagReranker's `normalize=True`).
    pub normalize: bool,
    /// Maximum tokens of a pair, special tokens included (FlagReranker default 512).
    pub max_length: usize,
    /// Maximum tokens of the query; `None` = `max_length * 3 / 4`.
    pub query_max_length: Option<usize>,
    /// Pairs per forward pass.
    pub batch_size: usize,
    /// How long pairs are cut.
    pub truncation: Truncation,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            normalize: false,
            max_length: 512,
            query_max_length: None,
            batch_size: 128,
            truncation: Truncation::Flag,
        }
    }
}

impl ScoreOptions {
    /// Checks the options and returns the tokenizer limits they imply.
    pub fn limits(&self) -> Result<PairLimits> {
        if self.batch_size == 0 {
            return Err(Error::Input("batch_size must be at least 1".into()));
        }
        let limits = PairLimits::new(self.truncation, self.max_length, self.query_max_length);
        if limits.max_length < 8 {
            return Err(Error::Input(format!(
                "max_length {} is too small (at least 8)",
                self.max_length
            )));
        }
        if limits.query_max_length == 0 || limits.query_max_length > limits.max_length {
            return Err(Error::Input(format!(
                "query_max_length {} must be between 1 and max_length {}",
                limits.query_max_length, limits.max_length
            )));
        }
        Ok(limits)
    }
}

/// One ranked document.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Ranked {
    /// Position of the document in the input.
    pub index: usize,
    /// Its score (raw logit, or sigmoid when normalised).
    pub score: f32,
    /// The document text.
    pub document: String,
}

/// Builds a [`Reranker`].
#[derive(Debug, Clone)]
pub struct RerankerBuilder {
    model: String,
    threads: Option<usize>,
    dtype: Dtype,
}

impl RerankerBuilder {
    /// Number of CPU threads (default: all cores).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Precision of the encoder (default f32, the reference's numbers).
    pub fn dtype(mut self, dtype: Dtype) -> Self {
        self.dtype = dtype;
        self
    }

    /// Resolves the model (folder or hub id), loads weights and tokenizer.
    pub fn build(self) -> Result<Reranker> {
        rerank_models::runtime::set_threads(self.threads.unwrap_or(0));
        let dir = hub::resolve_model(&self.model)?;
        Reranker::load_dir_as(&self.model, &dir, self.dtype)
    }
}

/// A cross-encoder reranker.
pub struct Reranker {
    model_id: String,
    dir: PathBuf,
    encoder: PairEncoder,
    model: Box<dyn CrossEncoder>,
    dtype: Dtype,
}

impl Reranker {
    /// Starts building a reranker for a model folder or hub id.
    pub fn builder(model: impl Into<String>) -> RerankerBuilder {
        RerankerBuilder {
            model: model.into(),
            threads: None,
            dtype: Dtype::F32,
        }
    }

    /// Loads an f32 reranker from a resolved model folder; `model_id` is what the user named.
    pub fn load_dir(model_id: &str, dir: &Path) -> Result<Self> {
        Self::load_dir_as(model_id, dir, Dtype::F32)
    }

    /// Loads a reranker from a resolved model folder in the given precision.
    pub fn load_dir_as(model_id: &str, dir: &Path, dtype: Dtype) -> Result<Self> {
        let model = rerank_models::load_cross_encoder(dir, dtype)?;
        let use_type_ids = model.kind() == ModelKind::Bert;
        let encoder = PairEncoder::from_file(&dir.join("tokenizer.json"), use_type_ids)?;
        Ok(Self {
            model_id: model_id.to_string(),
            dir: dir.to_path_buf(),
            encoder,
            model,
            dtype,
        })
    }

    /// The model as the user named it.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The folder the model was loaded from.
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    /// The encoder's precision.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The model family.
    pub fn kind(&self) -> ModelKind {
        self.model.kind()
    }

    /// The longest pair (in tokens) the model accepts.
    pub fn max_sequence_length(&self) -> usize {
        self.model.max_sequence_length()
    }

    /// FLOPs of a full forward pass over one sequence of `tokens` tokens.
    pub fn forward_flops(&self, tokens: usize) -> f64 {
        self.model.forward_flops(tokens)
    }

    /// The pair tokenizer.
    pub fn pair_encoder(&self) -> &PairEncoder {
        &self.encoder
    }

    /// Tokenizes pairs (in parallel) as the reference does.
    pub fn encode_pairs<Q, P>(
        &self,
        pairs: &[(Q, P)],
        limits: &PairLimits,
    ) -> Result<Vec<EncodedPair>>
    where
        Q: AsRef<str> + Sync,
        P: AsRef<str> + Sync,
    {
        pairs
            .par_iter()
            .map(|(q, p)| self.encoder.encode_pair(q.as_ref(), p.as_ref(), limits))
            .collect()
    }

    /// Raw logits of already encoded pairs, in input order. Runs longest first in batches of
    /// `batch_size` pairs.
    pub fn score_encoded(&self, encoded: &[EncodedPair], batch_size: usize) -> Result<Vec<f32>> {
        let max = self.model.max_sequence_length();
        if let Some((i, e)) = encoded.iter().enumerate().find(|(_, e)| e.ids.len() > max) {
            return Err(Error::Input(format!(
                "pair {i} has {} tokens, more than the model's maximum of {max}; lower max_length",
                e.ids.len()
            )));
        }
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        let mut scores = vec![0.0f32; encoded.len()];
        for chunk in order.chunks(batch_size.max(1)) {
            let mut batch = PackedBatch::new();
            for &i in chunk {
                batch.push(&encoded[i].ids, &encoded[i].type_ids)?;
            }
            for (&i, s) in chunk.iter().zip(self.model.score(&batch)?) {
                scores[i] = s;
            }
        }
        Ok(scores)
    }

    /// FlagReranker's `compute_score(pairs)`: one score per `(query, passage)` pair, in order.
    pub fn compute_score<Q, P>(&self, pairs: &[(Q, P)], opts: &ScoreOptions) -> Result<Vec<f32>>
    where
        Q: AsRef<str> + Sync,
        P: AsRef<str> + Sync,
    {
        let limits = opts.limits()?;
        let encoded = self.encode_pairs(pairs, &limits)?;
        let mut scores = self.score_encoded(&encoded, opts.batch_size)?;
        if opts.normalize {
            scores.iter_mut().for_each(|s| *s = sigmoid(*s));
        }
        Ok(scores)
    }

    /// Scores every document against `query` and returns them best first, cut to `top_n`.
    pub fn rank<D>(
        &self,
        query: &str,
        documents: &[D],
        top_n: Option<usize>,
        opts: &ScoreOptions,
    ) -> Result<Vec<Ranked>>
    where
        D: AsRef<str> + Sync,
    {
        let pairs: Vec<(&str, &str)> = documents.iter().map(|d| (query, d.as_ref())).collect();
        let scores = self.compute_score(&pairs, opts)?;
        Ok(ranking(&scores, top_n)
            .into_iter()
            .map(|index| Ranked {
                index,
                score: scores[index],
                document: documents[index].as_ref().to_string(),
            })
            .collect())
    }
}
