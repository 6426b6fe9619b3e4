//! Run BAAI BGE rerankers (cross-encoders) in Rust with the scores FlagEmbedding gives.
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
//! Scores are FlagEmbedding's `FlagReranker.compute_score`: raw logits, or their sigmoid with
//! [`ScoreOptions::normalize`]. Pairs are tokenized exactly as FlagReranker does (see
//! [`Truncation`]).

pub mod error;
pub mod hub;
pub mod reranker;
pub mod scores;
pub mod tokenize;

pub use error::{Error, Result};
pub use rerank_models::{runtime, Dtype, ModelError, ModelKind};
pub use reranker::{Ranked, Reranker, RerankerBuilder, ScoreOptions};
pub use tokenize::{EncodedPair, EncodedQuery, PairEncoder, PairLimits, Truncation};
pub use tokenizers::TruncationDirection;
