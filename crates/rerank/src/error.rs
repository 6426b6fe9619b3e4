//! Errors of the `rerank` library.

use std::path::PathBuf;

/// Everything that can fail when loading a reranker or scoring pairs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine failed to load or run the model.
    #[error(transparent)]
    Model(#[from] rerank_models::ModelError),
    /// The model is neither a local folder nor available from the hub or its cache.
    #[error("model '{model}': {message}")]
    ModelNotFound {
        /// What the user asked for.
        model: String,
        /// Where we looked and why it failed.
        message: String,
    },
    /// A required file of a local model folder is missing.
    #[error("model folder {dir} has no {file}")]
    MissingFile {
        /// The folder.
        dir: PathBuf,
        /// The file that should be there.
        file: String,
    },
    /// `tokenizer.json` could not be loaded or a text could not be tokenized.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The caller's input or options are invalid.
    #[error("{0}")]
    Input(String),
}

/// Result alias for the library.
pub type Result<T> = std::result::Result<T, Error>;
