//! Dense embedders against their reference libraries (fixtures from
//! `scripts/reference/make_embedder_fixtures.py`): sentence-transformers 5.7.0 on the real
//! all-MiniLM-L6-v2 weights (mean pooling, Normalize, max_seq_length 256) and on the tiny
//! XLM-R fixture as a mean-pooled, unnormalised model cut at 16 tokens; FlagEmbedding's
//! FlagModel (CLS, normalised, query instruction) on the tiny XLM-R fixture.

use std::path::Path;

use rerank::{Dtype, EmbedOptions, Embedder, Pooling};
use rerank_fixtures::{fixtures_root, max_abs_diff, minilm_dir, model_dir};
use serde::Deserialize;

const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct StReference {
    texts: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct FlagReference {
    query_instruction: String,
    queries: Vec<String>,
    query_input_ids: Vec<Vec<u32>>,
    query_embeddings: Vec<Vec<f32>>,
    passages: Vec<String>,
    passage_input_ids: Vec<Vec<u32>>,
    passage_embeddings: Vec<Vec<f32>>,
    plain_embeddings: Vec<Vec<f32>>,
}

fn read<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = fixtures_root().join("embeddings").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Checks ids and vectors of `texts` against the reference, with everything packed in one
/// forward pass and again in passes of at most 64 tokens; returns the largest difference.
fn check(
    embedder: &Embedder,
    texts: &[String],
    opts: &EmbedOptions,
    want_ids: &[Vec<u32>],
    want: &[Vec<f32>],
) -> f32 {
    let encoded = embedder.encode_texts(texts, opts).unwrap();
    for (i, (e, ids)) in encoded.iter().zip(want_ids).enumerate() {
        assert_eq!(&e.ids, ids, "token ids of text {i}");
    }
    let mut worst = 0.0f32;
    for batch_tokens in [usize::MAX, 64] {
        let opts = EmbedOptions {
            batch_tokens,
            ..opts.clone()
        };
        let got = embedder.embed_with(texts, &opts).unwrap();
        assert_eq!(got.vectors.len(), want.len());
        assert_eq!(got.tokens, want_ids.iter().map(Vec::len).sum::<usize>());
        for (g, w) in got.vectors.iter().zip(want) {
            assert_eq!(g.len(), w.len());
            worst = worst.max(max_abs_diff(g, w));
        }
    }
    worst
}

#[test]
fn minilm_matches_sentence_transformers() {
    let Some(dir) = minilm_dir() else { return };
    let reference: StReference = read("minilm.json");
    let embedder = Embedder::load_dir_as("all-MiniLM-L6-v2", &dir, Dtype::F32).unwrap();
    assert_eq!(embedder.config().pooling, vec![Pooling::Mean]);
    assert!(embedder.config().normalize);
    assert_eq!(embedder.config().max_length, 256);
    assert_eq!(embedder.dimension(), 384);
    let opts = EmbedOptions::default();
    let worst = check(
        &embedder,
        &reference.texts,
        &opts,
        &reference.input_ids,
        &reference.embeddings,
    );
    println!("all-MiniLM-L6-v2 vs sentence-transformers: max |Δ| {worst:.2e}");
    assert!(worst <= TOLERANCE, "max difference {worst}");
    assert_eq!(embedder.embed(&reference.texts).unwrap().len(), 12);
}

#[test]
fn minilm_bf16_and_int8_stay_close() {
    let Some(dir) = minilm_dir() else { return };
    let reference: StReference = read("minilm.json");
    for dtype in [Dtype::Bf16, Dtype::Int8] {
        let embedder = Embedder::load_dir_as("m", &dir, dtype).unwrap();
        let got = embedder.embed(&reference.texts).unwrap();
        let worst_cosine = got
            .iter()
            .zip(&reference.embeddings)
            .map(|(g, w)| g.iter().zip(w).map(|(a, b)| a * b).sum::<f32>())
            .fold(1.0f32, f32::min);
        println!("all-MiniLM-L6-v2 {dtype:?}: min cosine to f32 reference {worst_cosine:.5}");
        assert!(worst_cosine > 0.98, "{dtype:?}: cosine {worst_cosine}");
    }
}

#[test]
fn flagmodel_on_the_tiny_xlmr_fixture() {
    let reference: FlagReference = read("xlmr-tiny-flagmodel.json");
    let dir = model_dir("xlmr-tiny");
    let embedder = Embedder::load_dir_as("xlmr-tiny", &dir, Dtype::F32).unwrap();
    assert_eq!(embedder.config().style, "flagmodel");
    assert_eq!(embedder.config().pooling, vec![Pooling::Cls]);
    let queries = EmbedOptions {
        instruction: Some(reference.query_instruction.clone()),
        ..EmbedOptions::default()
    };
    let worst_q = check(
        &embedder,
        &reference.queries,
        &queries,
        &reference.query_input_ids,
        &reference.query_embeddings,
    );
    let plain = EmbedOptions::default();
    let worst_p = check(
        &embedder,
        &reference.passages,
        &plain,
        &reference.passage_input_ids,
        &reference.passage_embeddings,
    );
    let worst_plain = check(
        &embedder,
        &reference.passages,
        &plain,
        &reference.passage_input_ids,
        &reference.plain_embeddings,
    );
    println!("xlmr-tiny vs FlagModel: queries {worst_q:.2e}, passages {worst_p:.2e}, encode {worst_plain:.2e}");
    assert!(worst_q.max(worst_p).max(worst_plain) <= TOLERANCE);
    // The builder's query instruction is what embed_queries adds.
    let built = Embedder::builder(dir.to_str().unwrap())
        .query_instruction(Some(reference.query_instruction.clone()))
        .build()
        .unwrap();
    let via_builder = built.embed_queries(&reference.queries).unwrap();
    for (g, w) in via_builder.iter().zip(&reference.query_embeddings) {
        assert!(max_abs_diff(g, w) <= TOLERANCE);
    }
}

/// The tiny XLM-R fixture with the sentence-transformers files of `embeddings/xlmr-tiny-st/`.
fn xlmr_st_dir(out: &Path) {
    let src = model_dir("xlmr-tiny");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, out.join(path.file_name().unwrap())).unwrap();
        }
    }
    let st = fixtures_root().join("embeddings").join("xlmr-tiny-st");
    std::fs::create_dir_all(out.join("1_Pooling")).unwrap();
    for file in [
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        std::fs::copy(st.join(file), out.join(file)).unwrap();
    }
}

#[test]
fn sentence_transformers_mean_pooling_without_normalize() {
    let reference: StReference = read("xlmr-tiny-st.json");
    let dir = tempfile::tempdir().unwrap();
    xlmr_st_dir(dir.path());
    let embedder = Embedder::load_dir_as("xlmr-tiny-st", dir.path(), Dtype::F32).unwrap();
    assert_eq!(embedder.config().style, "sentence-transformers");
    assert!(!embedder.config().normalize);
    assert_eq!(embedder.config().max_length, 16);
    let worst = check(
        &embedder,
        &reference.texts,
        &EmbedOptions::default(),
        &reference.input_ids,
        &reference.embeddings,
    );
    println!("xlmr-tiny mean/16 vs sentence-transformers: max |Δ| {worst:.2e}");
    assert!(worst <= TOLERANCE, "max difference {worst}");
    // Truncation off: a text over 16 tokens is an error naming it, not a silent cut.
    let strict = EmbedOptions {
        truncate: false,
        ..EmbedOptions::default()
    };
    let long = reference
        .input_ids
        .iter()
        .position(|ids| ids.len() == 16)
        .unwrap();
    let err = embedder
        .embed_with(&reference.texts, &strict)
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than the model's maximum of 16"), "{err}");
    assert!(err.contains("input"), "{err} (text {long})");
    // Normalising on request gives unit vectors.
    let unit = EmbedOptions {
        normalize: Some(true),
        ..EmbedOptions::default()
    };
    for v in embedder
        .embed_with(&reference.texts, &unit)
        .unwrap()
        .vectors
    {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
}

#[test]
fn unsupported_sentence_transformers_modules_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    xlmr_st_dir(dir.path());
    std::fs::write(
        dir.path().join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
            {"idx":2,"name":"2","path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#,
    )
    .unwrap();
    let err = Embedder::load_dir_as("x", dir.path(), Dtype::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("Dense") && err.contains("not supported"),
        "{err}"
    );
}
