//! What the reference-parity tests share: a recorded case's options, and checks every model
//! must pass.

#![allow(dead_code)] // each test file uses its own part

use rerank::{Reranker, ScoreOptions, Truncation};
use rerank_fixtures::{max_abs_diff, Case};

/// Scores within this of the reference (f32 reaches float noise; the issues ask for 1e-4 for
/// encoders and 1e-3 for LLM rerankers).
pub const SCORE_TOLERANCE: f32 = 1e-4;

/// The options a recorded case was scored with.
pub fn options(case: &Case, normalize: bool) -> ScoreOptions {
    ScoreOptions {
        normalize,
        max_length: case.max_length,
        query_max_length: case.query_max_length,
        truncation: case.truncation.parse::<Truncation>().expect("truncation"),
        prompt: case.prompt.clone(),
        ..ScoreOptions::default()
    }
}

/// Scoring pairs one at a time gives the same scores as one batch.
pub fn assert_batch_size_does_not_change_scores(reranker: &Reranker, case: &Case) {
    let one = ScoreOptions {
        batch_size: 1,
        ..options(case, false)
    };
    let a = reranker.compute_score(&case.pairs, &one).unwrap();
    let b = reranker
        .compute_score(&case.pairs, &options(case, false))
        .unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-5);
}
