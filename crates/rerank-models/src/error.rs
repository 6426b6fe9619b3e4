//! Typed errors of the engine.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON or lacks a field the model needs.
    #[error("invalid config {path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The architecture named by `config.json` is not implemented.
    #[error("unsupported architecture {found:?}; supported: {supported}")]
    UnsupportedArchitecture {
        /// What the config names (`architectures` or `model_type`).
        found: String,
        /// The supported architectures, comma-separated.
        supported: String,
    },
    /// A safetensors file is corrupt or cannot be parsed.
    #[error("corrupt weights file {path}: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A tensor the model needs is absent from the weights.
    #[error("weights lack tensor `{name}` (looked in {files})")]
    MissingTensor {
        /// Full tensor name.
        name: String,
        /// The files searched.
        files: String,
    },
    /// A tensor has an unexpected shape or dtype.
    #[error("tensor `{name}`: {message}")]
    BadTensor {
        /// Full tensor name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The input batch cannot be run by this model.
    #[error("invalid input: {0}")]
    Input(String),
    /// ONNX Runtime could not be loaded, or failed to load or run a graph.
    #[error("ONNX Runtime: {0}")]
    Onnx(String),
}

/// Result alias for the engine.
pub type Result<T> = std::result::Result<T, ModelError>;
