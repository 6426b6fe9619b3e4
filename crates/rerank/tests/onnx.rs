//! The ONNX backend (ONNX Runtime 1.32.0 from PyPI's wheel, ORT_DYLIB_PATH) on the committed
//! exports of the tiny fixtures (`scripts/reference/make_onnx_fixtures.py`): the native engine's
//! scores (≤ 1e-4) and ONNX Runtime's own recorded logits, for dynamic, static-shape
//! (2 × 512, external data) and quantised graphs.

use std::path::PathBuf;

use rerank::{Dtype, Reranker, ScoreOptions};
use rerank_fixtures::{fixtures_root, max_abs_diff, model_dir, onnxruntime};
use serde::Deserialize;

#[derive(Deserialize)]
struct OnnxReference {
    pairs: Vec<(String, String)>,
    exports: Vec<Export>,
}

#[derive(Deserialize)]
struct Export {
    name: String,
    source_model: String,
    model_file: String,
    logits: Vec<f32>,
}

fn reference() -> OnnxReference {
    let text = std::fs::read_to_string(fixtures_root().join("onnx/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn export<'a>(r: &'a OnnxReference, name: &str) -> &'a Export {
    r.exports.iter().find(|e| e.name == name).unwrap()
}

fn native_scores(source: &str, pairs: &[(String, String)]) -> Vec<f32> {
    let reranker = Reranker::load_dir(source, &model_dir(source)).unwrap();
    reranker
        .compute_score(pairs, &ScoreOptions::default())
        .unwrap()
}

#[test]
fn f32_exports_score_as_the_native_engine() {
    if onnxruntime().is_none() {
        return;
    }
    let r = reference();
    for name in [
        "xlmr-tiny-dynamic",
        "xlmr-tiny-static-b2-s512",
        "bert-tiny-dynamic",
    ] {
        let e = export(&r, name);
        let dir = model_dir(&format!("onnx/{name}"));
        // No safetensors in the folder: its model.onnx (root or onnx/) runs through ONNX Runtime.
        let reranker = Reranker::load_dir(name, &dir).unwrap();
        assert_eq!(
            reranker.onnx_file(),
            Some(dir.join(&e.model_file).as_path()),
            "{name}"
        );
        let got = reranker
            .compute_score(&r.pairs, &ScoreOptions::default())
            .unwrap();
        let native = native_scores(&e.source_model, &r.pairs);
        let vs_native = max_abs_diff(&got, &native);
        let vs_ort = max_abs_diff(&got, &e.logits);
        println!("{name}: max |onnx - native| {vs_native:.2e}, |onnx - recorded ORT| {vs_ort:.2e}");
        assert!(vs_native <= 1e-4, "{name}: {vs_native}");
        assert!(vs_ort <= 1e-4, "{name}: {vs_ort}");
    }
}

#[test]
fn quantised_and_half_exports_match_their_recorded_logits() {
    if onnxruntime().is_none() {
        return;
    }
    let r = reference();
    // One pair per run, as recorded: dynamic int8 quantisation depends on the batch.
    let one_at_a_time = ScoreOptions {
        batch_size: 1,
        ..ScoreOptions::default()
    };
    for (name, tolerance) in [("bert-tiny-int8", 1e-4), ("bert-tiny-fp16", 1e-2)] {
        let e = export(&r, name);
        let reranker = Reranker::load_dir(name, &model_dir(&format!("onnx/{name}"))).unwrap();
        let got = reranker.compute_score(&r.pairs, &one_at_a_time).unwrap();
        let diff = max_abs_diff(&got, &e.logits);
        println!("{name}: max |onnx - recorded ORT| {diff:.2e}");
        assert!(diff <= tolerance, "{name}: {diff}");
    }
}

#[test]
fn an_explicit_onnx_file_and_clear_errors() {
    if onnxruntime().is_none() {
        return;
    }
    let dir = model_dir("onnx/xlmr-tiny-static-b2-s512");
    let reranker = Reranker::builder(dir.to_str().unwrap())
        .onnx_file(Some(PathBuf::from("onnx/model.onnx")))
        .build()
        .unwrap();
    // A pair longer than the graph's fixed 512 tokens is refused, not cut silently.
    assert_eq!(reranker.max_sequence_length(), 512);
    let err = Reranker::load_dir_onnx("x", &dir, Some(dir.join("missing.onnx")), Dtype::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing.onnx"), "{err}");
    let err = Reranker::load_dir_onnx("x", &dir, None, Dtype::Bf16)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("native engine"), "{err}");
}
