//! Parity with FlagEmbedding 1.4.2's `FlagLLMReranker` on the committed tiny random-weight Gemma
//! (`tests/fixtures/gemma-tiny`, made by `scripts/reference/make_llm_fixtures.py`).
//!
//! Every case is checked twice: the token ids we build must equal the ids the reference model
//! received, and our scores (raw and sigmoid) must match its scores.

mod common;

use common::{assert_batch_size_does_not_change_scores, options, SCORE_TOLERANCE};
use rerank::{Dtype, ModelKind, Reranker, ScoreOptions, LLM_OPTIONS};
use rerank_fixtures::{max_abs_diff, model_dir, reference};

const MODEL: &str = "gemma-tiny";

fn load() -> Reranker {
    Reranker::load_dir(MODEL, &model_dir(MODEL)).expect("load gemma fixture")
}

#[test]
fn gemma_matches_flag_llm_reranker() {
    let reranker = load();
    assert_eq!(reranker.kind(), ModelKind::Gemma);
    let reference = reference(MODEL);
    assert_eq!(reference.model, MODEL);
    assert!(reference.cases.len() >= 2, "expected several cases");
    let lengths: std::collections::BTreeSet<usize> =
        reference.cases.iter().map(|c| c.max_length).collect();
    assert!(lengths.len() >= 2, "expected two max_lengths");
    let (mut worst_raw, mut worst_norm) = (0.0f32, 0.0f32);
    for case in &reference.cases {
        let opts = options(case, false);
        let limits = reranker.check_options(&opts).expect("options");
        let encoded = reranker
            .encode_pairs_with(&case.pairs, &limits, &opts.prompt_options())
            .expect("encode");
        assert_eq!(encoded.len(), case.input_ids.len());
        for (i, (got, want)) in encoded.iter().zip(&case.input_ids).enumerate() {
            assert_eq!(&got.ids, want, "{}: input ids of pair {i}", case.name);
        }
        let raw = reranker.compute_score(&case.pairs, &opts).expect("score");
        let normalized = reranker
            .compute_score(&case.pairs, &options(case, true))
            .expect("score normalized");
        let raw_diff = max_abs_diff(&raw, &case.scores);
        let norm_diff = max_abs_diff(&normalized, &case.normalized);
        println!(
            "{MODEL} {:<26} pairs {:>3}  max|raw-ref| {raw_diff:.2e}  max|sigmoid-ref| {norm_diff:.2e}",
            case.name,
            case.pairs.len()
        );
        assert!(
            raw_diff <= SCORE_TOLERANCE,
            "{}: raw diff {raw_diff}",
            case.name
        );
        assert!(
            norm_diff <= SCORE_TOLERANCE,
            "{}: sigmoid diff {norm_diff}",
            case.name
        );
        worst_raw = worst_raw.max(raw_diff);
        worst_norm = worst_norm.max(norm_diff);
    }
    println!("{MODEL} all cases: max|raw-ref| {worst_raw:.2e}  max|sigmoid-ref| {worst_norm:.2e}");
}

/// Packing several pairs of different lengths into one batch gives the scores of one pair at
/// a time (each sequence has its own causal mask and positions).
#[test]
fn batch_size_does_not_change_scores() {
    assert_batch_size_does_not_change_scores(&load(), &reference(MODEL).cases[0]);
}

#[test]
fn rank_uses_the_same_scores() {
    let reranker = load();
    let docs = [
        "hi",
        "The giant panda is a bear species endemic to China.",
        "",
    ];
    let opts = ScoreOptions {
        prompt: Some("Relevant?".into()),
        ..ScoreOptions::default()
    };
    let pairs: Vec<(&str, &str)> = docs.iter().map(|d| ("what is panda?", *d)).collect();
    let scores = reranker.compute_score(&pairs, &opts).unwrap();
    let ranked = reranker
        .rank("what is panda?", &docs, Some(2), &opts)
        .unwrap();
    assert_eq!(ranked.len(), 2);
    assert!(ranked[0].score >= ranked[1].score);
    for r in &ranked {
        assert_eq!(r.score, scores[r.index]);
    }
}

#[test]
fn options_are_model_specific() {
    let gemma = load();
    assert_eq!(gemma.model_options(), &LLM_OPTIONS);
    assert_eq!(gemma.kind().architecture(), "GemmaForCausalLM");
    // FlagLLMReranker allows a query limit above max_length (the fixtures have one).
    let wide = ScoreOptions {
        max_length: 48,
        query_max_length: Some(64),
        ..ScoreOptions::default()
    };
    assert!(gemma.check_options(&wide).is_ok());
    let longest = ScoreOptions {
        truncation: rerank::Truncation::LongestFirst,
        ..ScoreOptions::default()
    };
    assert!(gemma.check_options(&longest).is_err());

    let encoder = Reranker::load_dir("xlmr-tiny", &model_dir("xlmr-tiny")).unwrap();
    assert!(encoder.model_options().is_empty());
    let prompted = ScoreOptions {
        prompt: Some("Relevant?".into()),
        ..ScoreOptions::default()
    };
    let err = encoder
        .compute_score(&[("q", "p")], &prompted)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`prompt`") && !err.contains('\n'), "{err}");
    assert!(encoder.check_options(&wide).is_err());
}

/// bf16 and int8 run and stay near the f32 scores on the tiny model.
#[test]
fn reduced_precisions_run() {
    let case = &reference(MODEL).cases[0];
    for dtype in [Dtype::Bf16, Dtype::Int8] {
        let reranker = Reranker::load_dir_as(MODEL, &model_dir(MODEL), dtype).unwrap();
        let scores = reranker
            .compute_score(&case.pairs, &options(case, false))
            .unwrap();
        let diff = max_abs_diff(&scores, &case.scores);
        println!("{MODEL} {dtype:?}: max|score-ref| {diff:.2e}");
        assert!(scores.iter().all(|s| s.is_finite()));
    }
}

/// The engine needs the score token's id, checks it and the input ids against the vocabulary.
#[test]
fn engine_checks_score_token_and_ids() {
    use rerank_models::{load_cross_encoder, load_cross_encoder_with, LoadOptions, PackedBatch};
    let dir = model_dir(MODEL);
    let err = load_cross_encoder(&dir, Dtype::F32)
        .err()
        .expect("no score token");
    assert!(err.to_string().contains("score_token"), "{err}");
    let opts = |score_token| LoadOptions {
        dtype: Dtype::F32,
        score_token: Some(score_token),
        ..LoadOptions::default()
    };
    let err = load_cross_encoder_with(&dir, &opts(1536))
        .err()
        .expect("out of range");
    assert!(err.to_string().contains("1536"), "{err}");
    let model = load_cross_encoder_with(&dir, &opts(788)).expect("load");
    assert!(model.forward_flops(100) > 0.0);
    let mut batch = PackedBatch::new();
    batch.push(&[2, 5, 1536], &[0; 3]).unwrap();
    let err = model.score(&batch).unwrap_err().to_string();
    assert!(err.contains("token id 1536 is out of range"), "{err}");
}
