//! Run BAAI BGE rerankers (cross-encoders and the LLM rerankers bge-reranker-v2-gemma,
//! -v2-minicpm-layerwise and -v2.5-gemma2-lightweight) in Rust with the scores FlagEmbedding
//! gives.
//!
//! ```no_run
//! use rerank::{Reranker, ScoreOptions};
//!
//! let reranker = Reranker::builder("BAAI/bge-reranker-v2-m3").build()?;
//! let pairs = [("what is panda?", "hi"), ("what is panda?", "The giant panda is a bear.")];
//! let scores = reranker.compute_score(&pairs, &ScoreOptions::default())?;
//! let ranked = reranker.rank("what is panda?", &["hi", "The giant panda is a bear."], Some(1), &ScoreOptions::default())?;
//! # Ok::<(), rerank::Error>(())
//! ```
//!
//! Scores are FlagEmbedding's `FlagReranker.compute_score` (`FlagLLMReranker`,
//! `LayerWiseFlagLLMReranker`, `LightWeightFlagLLMReranker` for the LLM rerankers): raw logits,
//! or their sigmoid with [`ScoreOptions::normalize`]. Pairs are tokenized exactly as
//! FlagEmbedding does (see [`Truncation`] and [`prompt`]); an LLM reranker takes a per-call
//! [`ScoreOptions::prompt`], the layerwise ones [`ScoreOptions::cutoff_layers`] (several at
//! once with [`Reranker::compute_score_layers`]) and the lightweight one
//! [`ScoreOptions::compress_ratio`] / [`ScoreOptions::compress_layers`].

pub mod embedder;
pub mod error;
pub mod eval;
pub mod hub;
pub mod prompt;
pub mod reranker;
pub mod scores;
pub mod tokenize;

pub use embedder::{EmbedOptions, Embedder, EmbedderBuilder, EmbedderConfig, Embeddings, Pooling};
pub use error::{Error, Result};
pub use prompt::{PromptEncoder, PromptOptions};
pub use rerank_models::kernels::peak;
pub use rerank_models::{
    runtime, Dtype, LayerPlan, LayerRequest, LayerSupport, ModelError, ModelKind, PromptSpan,
};
pub use reranker::{LayerScores, Ranked, Reranker, RerankerBuilder, ScoreOptions, LLM_OPTIONS};
pub use tokenize::{EncodedPair, EncodedQuery, PairEncoder, PairLimits, Truncation};
pub use tokenizers::TruncationDirection;
