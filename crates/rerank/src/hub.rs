//! Finding a model: a local folder, or a Hugging Face hub id resolved through the hub cache
//! (`HF_HUB_CACHE`, `HF_HOME`, `~/.cache/huggingface/hub`) and, unless `HF_HUB_OFFLINE` is set,
//! downloaded with the `hf-hub` crate.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{Error, Result};

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
const WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
const REQUIRED: [&str; 2] = ["config.json", "tokenizer.json"];

/// Where the hub cache is and whether the network may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// The hub cache root (`.../hub`, holding `models--org--name` folders).
    pub cache: PathBuf,
    /// Use the cache only (`HF_HUB_OFFLINE`).
    pub offline: bool,
    /// The hub's address (`HF_ENDPOINT`, default `https://huggingface.co`).
    pub endpoint: String,
}

impl HubSettings {
    /// From `HF_HUB_CACHE` / `HF_HOME` and `HF_HUB_OFFLINE`, as huggingface_hub reads them.
    pub fn from_env() -> Self {
        Self {
            cache: hub_cache_dir(),
            offline: offline(),
            endpoint: std::env::var("HF_ENDPOINT")
                .ok()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
        }
    }
}

/// Returns the folder holding `config.json`, `tokenizer.json` and the weights of `model`:
/// `model` itself if it is a folder, else the hub snapshot of the hub id `model`.
pub fn resolve_model(model: &str) -> Result<PathBuf> {
    resolve_model_with(model, &HubSettings::from_env())
}

/// [`resolve_model`] with explicit hub settings.
pub fn resolve_model_with(model: &str, settings: &HubSettings) -> Result<PathBuf> {
    let path = Path::new(model);
    if path.is_dir() {
        check_folder(path)?;
        return Ok(path.to_path_buf());
    }
    if path.exists() {
        return Err(Error::ModelNotFound {
            model: model.to_string(),
            message:
                "is a file; expected a model folder or a hub id such as BAAI/bge-reranker-v2-m3"
                    .into(),
        });
    }
    HubModel::new(model, settings).fetch()
}

/// [`resolve_model`] for an embedder: a hub model also brings its sentence-transformers files
/// when it has them (`modules.json`, `sentence_bert_config.json`, each module's
/// `config.json`); a local folder is taken as it is.
pub fn resolve_embedder(model: &str) -> Result<PathBuf> {
    resolve_embedder_with(model, &HubSettings::from_env())
}

/// [`resolve_embedder`] with explicit hub settings.
pub fn resolve_embedder_with(model: &str, settings: &HubSettings) -> Result<PathBuf> {
    let dir = resolve_model_with(model, settings)?;
    if Path::new(model).is_dir() {
        return Ok(dir);
    }
    let hub = HubModel::new(model, settings);
    // Optional files: a model without them is a FlagModel-style embedder.
    if let Ok(modules) = hub.file("modules.json") {
        let _ = hub.file("sentence_bert_config.json");
        for path in module_paths(&modules) {
            let _ = hub.file(&format!("{path}/config.json"));
        }
    }
    Ok(dir)
}

/// The non-empty `path`s of the modules in a sentence-transformers `modules.json`.
fn module_paths(modules: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(modules) else {
        return Vec::new();
    };
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    json.as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["path"].as_str())
        .filter(|p| !p.is_empty() && !p.contains(".."))
        .map(String::from)
        .collect()
}

/// Checks that a local folder has the files a model needs.
fn check_folder(dir: &Path) -> Result<()> {
    for file in REQUIRED {
        if !dir.join(file).is_file() {
            return Err(Error::MissingFile {
                dir: dir.to_path_buf(),
                file: file.to_string(),
            });
        }
    }
    if !has_weights(dir)
        && !["model.onnx", "onnx/model.onnx"]
            .iter()
            .any(|f| dir.join(f).is_file())
    {
        return Err(Error::MissingFile {
            dir: dir.to_path_buf(),
            file: format!("{WEIGHTS} (or {WEIGHTS_INDEX}, or an ONNX export: model.onnx)"),
        });
    }
    Ok(())
}

/// True when a model folder has safetensors weights (single file or sharded).
pub fn has_weights(dir: &Path) -> bool {
    dir.join(WEIGHTS).is_file() || dir.join(WEIGHTS_INDEX).is_file()
}

/// The hub cache root, as huggingface_hub computes it.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = env_path("HF_HUB_CACHE") {
        return dir;
    }
    if let Some(home) = env_path("HF_HOME") {
        return home.join("hub");
    }
    Cache::default().path().clone()
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// True when `HF_HUB_OFFLINE` asks for no network.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// A model on the hub, looked up in the cache first.
struct HubModel {
    id: String,
    revision: String,
    cache: PathBuf,
    offline: bool,
    endpoint: String,
}

impl HubModel {
    fn new(id: &str, settings: &HubSettings) -> Self {
        Self {
            id: id.to_string(),
            revision: "main".into(),
            cache: settings.cache.clone(),
            offline: settings.offline,
            endpoint: settings.endpoint.clone(),
        }
    }

    /// `<cache>/models--org--name`.
    fn repo_dir(&self) -> PathBuf {
        let repo = Repo::with_revision(self.id.clone(), RepoType::Model, self.revision.clone());
        self.cache.join(repo.folder_name())
    }

    /// The cached copy of `file`, if any (`refs/<revision>` → `snapshots/<commit>/<file>`).
    fn cached(&self, file: &str) -> Option<PathBuf> {
        let dir = self.repo_dir();
        let commit = std::fs::read_to_string(dir.join("refs").join(&self.revision)).ok()?;
        let path = dir.join("snapshots").join(commit.trim()).join(file);
        path.is_file().then_some(path)
    }

    fn fetch(&self) -> Result<PathBuf> {
        if !looks_like_hub_id(&self.id) {
            return Err(self.not_found(
                "no such folder, and not a hub id (expected org/name, e.g. BAAI/bge-reranker-v2-m3)"
                    .into(),
            ));
        }
        let config = self.file(REQUIRED[0])?;
        self.file(REQUIRED[1])?;
        let weights = self.file(WEIGHTS);
        if weights.is_err() {
            if let Ok(index) = self.file(WEIGHTS_INDEX) {
                for shard in shard_names(&index)? {
                    self.file(&shard)?;
                }
                return Ok(parent(&config));
            }
        }
        weights?;
        Ok(parent(&config))
    }

    /// One file, from the cache or (online) downloaded into it.
    fn file(&self, file: &str) -> Result<PathBuf> {
        if let Some(path) = self.cached(file) {
            return Ok(path);
        }
        let looked = self.repo_dir();
        if self.offline {
            return Err(self.not_found(format!(
                "{file} is not in the local Hugging Face cache (looked in {}) and HF_HUB_OFFLINE is set",
                looked.display()
            )));
        }
        let api = ApiBuilder::new()
            .with_cache_dir(self.cache.clone())
            .with_endpoint(self.endpoint.clone())
            .with_retries(1)
            .with_progress(true)
            .with_token(hf_token())
            .build()
            .map_err(|e| self.not_found(format!("cannot start the hub client: {e}")))?;
        let repo = Repo::with_revision(self.id.clone(), RepoType::Model, self.revision.clone());
        api.repo(repo).get(file).map_err(|e| {
            self.not_found(format!(
                "could not download {file} from {} ({e}), and no cached copy is in {}",
                self.endpoint,
                looked.display()
            ))
        })
    }

    fn not_found(&self, message: String) -> Error {
        Error::ModelNotFound {
            model: self.id.clone(),
            message,
        }
    }
}

fn hf_token() -> Option<String> {
    std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty())
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `org/name` or `name`, made of the characters the hub allows.
fn looks_like_hub_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

fn shard_names(index: &Path) -> Result<Vec<String>> {
    let bad = |m: String| Error::Input(format!("{}: {m}", index.display()));
    let text = std::fs::read_to_string(index).map_err(|e| bad(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json["weight_map"]
        .as_object()
        .ok_or_else(|| bad("no weight_map".into()))?;
    let mut names: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids() {
        assert!(looks_like_hub_id("BAAI/bge-reranker-v2-m3"));
        assert!(looks_like_hub_id("bert-base-uncased"));
        assert!(!looks_like_hub_id("./models/x"));
        assert!(!looks_like_hub_id("a/b/c"));
        assert!(!looks_like_hub_id("/abs/path"));
    }
}
