//! Parity with FlagEmbedding / transformers on the committed tiny random-weight models.
//!
//! Every case of `tests/fixtures/<model>.reference.json` is checked twice: the token ids we build
//! must equal the ids the reference model received, and our scores must match its scores.

mod common;

use common::{assert_batch_size_does_not_change_scores, options, SCORE_TOLERANCE};
use rerank::{Reranker, ScoreOptions};
use rerank_fixtures::{max_abs_diff, model_dir, reference};

fn check_model(name: &str) {
    let reranker = Reranker::load_dir(name, &model_dir(name)).expect("load fixture model");
    let reference = reference(name);
    assert_eq!(reference.model, name);
    assert!(reference.cases.len() >= 5, "expected at least five cases");
    for case in &reference.cases {
        let opts = options(case, false);
        let encoded = reranker
            .encode_pairs(&case.pairs, &opts.limits().unwrap())
            .expect("encode");
        for (i, (got, want)) in encoded.iter().zip(&case.input_ids).enumerate() {
            assert_eq!(
                &got.ids, want,
                "{name} {}: input ids of pair {i}",
                case.name
            );
            if let Some(types) = &case.token_type_ids {
                assert_eq!(
                    got.type_ids, types[i],
                    "{name} {}: type ids of pair {i}",
                    case.name
                );
            }
        }
        let raw = reranker.compute_score(&case.pairs, &opts).expect("score");
        let normalized = reranker
            .compute_score(&case.pairs, &options(case, true))
            .expect("score normalized");
        let raw_diff = max_abs_diff(&raw, &case.scores);
        let norm_diff = max_abs_diff(&normalized, &case.normalized);
        println!(
            "{name} {:<18} pairs {:>3}  max|raw-ref| {raw_diff:.2e}  max|sigmoid-ref| {norm_diff:.2e}",
            case.name,
            case.pairs.len()
        );
        assert!(
            raw_diff <= SCORE_TOLERANCE,
            "{name} {}: raw diff {raw_diff}",
            case.name
        );
        assert!(
            norm_diff <= SCORE_TOLERANCE,
            "{name} {}: sigmoid diff {norm_diff}",
            case.name
        );
    }
}

#[test]
fn xlm_roberta_matches_flagembedding() {
    check_model("xlmr-tiny");
}

#[test]
fn bert_matches_flagembedding() {
    check_model("bert-tiny");
}

#[test]
fn batch_size_does_not_change_scores() {
    let name = "xlmr-tiny";
    let reranker = Reranker::load_dir(name, &model_dir(name)).unwrap();
    assert_batch_size_does_not_change_scores(&reranker, &reference(name).cases[0]);
}

/// A batch many times longer than one encoder block (1,024 tokens) runs its blocks in parallel
/// through all layers; every pair must get the score it gets alone.
#[test]
fn multi_block_batches_score_like_single_pairs() {
    let name = "xlmr-tiny";
    let reranker = Reranker::load_dir(name, &model_dir(name)).unwrap();
    let passage = "The giant panda is a bear species endemic to China. ".repeat(5);
    let pairs: Vec<(String, String)> = (0..64)
        .map(|i| {
            (
                format!("what is panda {i}?"),
                format!("{passage} {}", i * 7),
            )
        })
        .collect();
    let batch = ScoreOptions {
        batch_size: 64,
        ..ScoreOptions::default()
    };
    let tokens: usize = reranker
        .encode_pairs(&pairs, &batch.limits().unwrap())
        .unwrap()
        .iter()
        .map(|e| e.ids.len())
        .sum();
    assert!(
        tokens > 3 * 1024,
        "only {tokens} tokens: fewer than four blocks"
    );
    let together = reranker.compute_score(&pairs, &batch).unwrap();
    let alone: Vec<f32> = pairs
        .iter()
        .flat_map(|pair| {
            reranker
                .compute_score(std::slice::from_ref(pair), &ScoreOptions::default())
                .unwrap()
        })
        .collect();
    let diff = max_abs_diff(&together, &alone);
    assert!(diff <= 1e-6, "max |batched - alone| = {diff}");
}

#[test]
fn rank_sorts_by_score_and_cuts() {
    let name = "xlmr-tiny";
    let reranker = Reranker::load_dir(name, &model_dir(name)).unwrap();
    let docs = [
        "hi",
        "The giant panda is a bear species endemic to China.",
        "Paris",
        "",
    ];
    let scores = reranker
        .compute_score(
            &docs
                .iter()
                .map(|d| ("what is panda?", *d))
                .collect::<Vec<_>>(),
            &ScoreOptions::default(),
        )
        .unwrap();
    let ranked = reranker
        .rank("what is panda?", &docs, Some(3), &ScoreOptions::default())
        .unwrap();
    assert_eq!(ranked.len(), 3);
    for pair in ranked.windows(2) {
        assert!(pair[0].score >= pair[1].score);
    }
    for r in &ranked {
        assert_eq!(r.score, scores[r.index]);
        assert_eq!(r.document, docs[r.index]);
    }
}

/// Token ids beyond the vocabulary (a tokenizer that does not belong to the weights) are an
/// input error naming the id, for every embedding-table dtype the fixtures cover (bf16, f16).
#[test]
fn token_id_outside_the_vocabulary_is_an_error() {
    for name in ["xlmr-tiny", "bert-tiny"] {
        let model =
            rerank_models::load_cross_encoder(&model_dir(name), rerank::Dtype::F32).expect("load");
        let config = std::fs::read_to_string(model_dir(name).join("config.json")).expect("config");
        let config: serde_json::Value = serde_json::from_str(&config).expect("config json");
        let vocab = config["vocab_size"].as_u64().expect("vocab_size") as u32;
        let mut batch = rerank_models::PackedBatch::new();
        batch.push(&[0, 5, vocab, 2], &[0; 4]).expect("push");
        let err = model
            .score(&batch)
            .expect_err("id out of range")
            .to_string();
        assert!(
            err.contains(&format!("token id {vocab} is out of range")),
            "{name}: {err}"
        );
        let mut ok = rerank_models::PackedBatch::new();
        ok.push(&[0, 5, vocab - 1, 2], &[0; 4]).expect("push");
        assert!(model.score(&ok).expect("last id is valid")[0].is_finite());
    }
}
