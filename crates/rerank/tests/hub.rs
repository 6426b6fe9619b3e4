//! Model resolution: local folders (single and sharded weights) and the Hugging Face hub cache
//! laid out as huggingface_hub writes it (`models--org--name/{refs,snapshots,blobs}`).

use std::fs;
use std::path::{Path, PathBuf};

use rerank::hub::{resolve_embedder_with, resolve_model_with, HubSettings};
use rerank::{Error, Reranker, ScoreOptions};
use rerank_fixtures::{fixtures_root, max_abs_diff, model_dir, reference};

const MODEL_ID: &str = "BAAI/bge-reranker-tiny";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Writes `files` of a model folder into a hub cache, as blobs with snapshot symlinks.
fn fake_hub_cache(root: &Path, model_dir: &Path, files: &[&str]) {
    let repo = root.join("models--BAAI--bge-reranker-tiny");
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::create_dir_all(repo.join("blobs")).unwrap();
    let snapshot = repo.join("snapshots").join(COMMIT);
    fs::create_dir_all(&snapshot).unwrap();
    fs::write(repo.join("refs").join("main"), COMMIT).unwrap();
    for (i, file) in files.iter().enumerate() {
        let blob = repo.join("blobs").join(format!("blob{i}"));
        fs::copy(model_dir.join(file), &blob).unwrap();
        let link = snapshot.join(file);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&blob, link).unwrap();
    }
}

fn settings(cache: &Path, offline: bool) -> HubSettings {
    HubSettings {
        cache: cache.to_path_buf(),
        offline,
        // A closed loopback port: a download attempt fails at once and never leaves the machine.
        endpoint: "http://127.0.0.1:9".into(),
    }
}

fn first_case_scores(dir: &Path) -> (Vec<f32>, Vec<f32>) {
    let case = &reference("xlmr-tiny").cases[0];
    let reranker = Reranker::load_dir(MODEL_ID, dir).unwrap();
    let got = reranker
        .compute_score(&case.pairs, &ScoreOptions::default())
        .unwrap();
    (got, case.scores.clone())
}

#[test]
fn hub_id_resolves_from_cache_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let files = ["config.json", "tokenizer.json", "model.safetensors"];
    fake_hub_cache(tmp.path(), &model_dir("xlmr-tiny"), &files);
    let dir = resolve_model_with(MODEL_ID, &settings(tmp.path(), true)).unwrap();
    assert!(dir.ends_with(Path::new("snapshots").join(COMMIT)));
    let (got, want) = first_case_scores(&dir);
    assert!(max_abs_diff(&got, &want) <= 1e-4);
    // Online mode uses the complete cached copy without asking the (unreachable) hub.
    assert_eq!(
        resolve_model_with(MODEL_ID, &settings(tmp.path(), false)).unwrap(),
        dir
    );
}

#[test]
fn offline_without_cache_names_model_and_place() {
    let tmp = tempfile::tempdir().unwrap();
    let err = resolve_model_with(MODEL_ID, &settings(tmp.path(), true)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::ModelNotFound { .. }));
    assert!(msg.contains(MODEL_ID), "{msg}");
    assert!(msg.contains("models--BAAI--bge-reranker-tiny"), "{msg}");
    assert!(msg.contains("HF_HUB_OFFLINE"), "{msg}");
    assert_eq!(msg.lines().count(), 1);
}

#[test]
fn unreachable_hub_without_cache_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let msg = resolve_model_with(MODEL_ID, &settings(tmp.path(), false))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(MODEL_ID) && msg.contains("could not download config.json"),
        "{msg}"
    );
    assert!(msg.contains("no cached copy"), "{msg}");
}

#[test]
fn partial_cache_offline_reports_missing_weights() {
    let tmp = tempfile::tempdir().unwrap();
    fake_hub_cache(
        tmp.path(),
        &model_dir("xlmr-tiny"),
        &["config.json", "tokenizer.json"],
    );
    let msg = resolve_model_with(MODEL_ID, &settings(tmp.path(), true))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("model.safetensors"), "{msg}");
}

fn copy_dir(src: &Path, dst: &Path, skip: &[&str]) {
    fs::create_dir_all(dst).unwrap();
    for entry in fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !skip.contains(&name.as_str()) {
            fs::copy(&path, dst.join(name)).unwrap();
        }
    }
}

/// Splits model.safetensors into two shards with an index, as large checkpoints are stored.
fn write_sharded(src: &Path, dst: &Path) {
    let bytes = fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in [
        ("model-00001-of-00002.safetensors", a),
        ("model-00002-of-00002.safetensors", b),
    ] {
        let views: Vec<(String, safetensors::tensor::TensorView)> = part
            .iter()
            .map(|n| (n.clone(), st.tensor(n).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, &dst.join(shard)).unwrap();
        for n in part {
            weight_map.insert(n.clone(), shard.into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    fs::write(dst.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[test]
fn sharded_local_folder_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let src = model_dir("xlmr-tiny");
    let dst: PathBuf = tmp.path().join("sharded");
    copy_dir(&src, &dst, &["model.safetensors"]);
    write_sharded(&src, &dst);
    let dir = resolve_model_with(dst.to_str().unwrap(), &settings(tmp.path(), true)).unwrap();
    let (got, want) = first_case_scores(&dir);
    assert!(max_abs_diff(&got, &want) <= 1e-4);
}

#[test]
fn local_folder_errors_are_specific() {
    let tmp = tempfile::tempdir().unwrap();
    let s = settings(tmp.path(), true);
    let empty = tmp.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let msg = resolve_model_with(empty.to_str().unwrap(), &s)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("has no config.json"), "{msg}");

    let no_weights = tmp.path().join("no-weights");
    copy_dir(&model_dir("xlmr-tiny"), &no_weights, &["model.safetensors"]);
    let msg = resolve_model_with(no_weights.to_str().unwrap(), &s)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("model.safetensors"), "{msg}");

    let corrupt = tmp.path().join("corrupt");
    copy_dir(&model_dir("xlmr-tiny"), &corrupt, &["model.safetensors"]);
    fs::write(corrupt.join("model.safetensors"), b"not a safetensors file").unwrap();
    let err = Reranker::load_dir("corrupt", &corrupt)
        .err()
        .expect("corrupt weights fail");
    assert!(err.to_string().contains("corrupt weights file"), "{err}");

    let bad_config = tmp.path().join("bad-config");
    copy_dir(&model_dir("xlmr-tiny"), &bad_config, &[]);
    fs::write(
        bad_config.join("config.json"),
        r#"{"architectures": ["GPT2LMHeadModel"]}"#,
    )
    .unwrap();
    let err = Reranker::load_dir("bad", &bad_config)
        .err()
        .expect("unsupported arch fails");
    let msg = err.to_string();
    assert!(
        msg.contains("GPT2LMHeadModel") && msg.contains("XLMRobertaForSequenceClassification"),
        "{msg}"
    );

    let msg = resolve_model_with("no/such/path/here", &s)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not a hub id"), "{msg}");
}

#[test]
fn hub_embedder_brings_its_sentence_transformers_files() {
    // The tiny XLM-R fixture with mean pooling cut at 16 tokens (tests/fixtures/embeddings).
    let src = tempfile::tempdir().unwrap();
    let base = ["config.json", "tokenizer.json", "model.safetensors"];
    for file in base {
        fs::copy(model_dir("xlmr-tiny").join(file), src.path().join(file)).unwrap();
    }
    let st = [
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ];
    fs::create_dir_all(src.path().join("1_Pooling")).unwrap();
    for file in st {
        let from = fixtures_root().join("embeddings/xlmr-tiny-st").join(file);
        fs::copy(from, src.path().join(file)).unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let all: Vec<&str> = base.iter().chain(&st).copied().collect();
    fake_hub_cache(cache.path(), src.path(), &all);
    let dir = resolve_embedder_with(MODEL_ID, &settings(cache.path(), true)).unwrap();
    let embedder = rerank::Embedder::load_dir_as(MODEL_ID, &dir, rerank::Dtype::F32).unwrap();
    assert_eq!(embedder.config().style, "sentence-transformers");
    assert_eq!(embedder.config().pooling, vec![rerank::Pooling::Mean]);
    assert_eq!(embedder.config().max_length, 16);
    // Without the optional files the same id is a FlagModel-style embedder.
    let bare = tempfile::tempdir().unwrap();
    fake_hub_cache(bare.path(), src.path(), &base);
    let dir = resolve_embedder_with(MODEL_ID, &settings(bare.path(), true)).unwrap();
    let embedder = rerank::Embedder::load_dir_as(MODEL_ID, &dir, rerank::Dtype::F32).unwrap();
    assert_eq!(embedder.config().style, "flagmodel");
}
