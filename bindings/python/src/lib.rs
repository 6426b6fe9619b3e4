//! `rerank._native`: the library's [`Reranker`] and [`Embedder`] for Python. The Python package
//! (`python/rerank/`) wraps them in FlagEmbedding's and sentence-transformers' classes.
//!
//! Every call releases the GIL while it tokenizes and runs the model; the objects are immutable
//! and may be shared between Python threads. Library errors become `ValueError` (bad input),
//! `FileNotFoundError` (no such model) or `OSError` (broken or unsupported model files).

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rerank::{
    Dtype, EmbedOptions, Embedder, Error, ModelError, Reranker, ScoreOptions, Truncation,
};

/// The Python exception for a library error, with the CLI's one-line message.
fn to_py(err: Error) -> PyErr {
    let message = err
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match err {
        Error::Input(_) | Error::Tokenizer(_) | Error::Model(ModelError::Input(_)) => {
            PyValueError::new_err(message)
        }
        Error::ModelNotFound { .. } | Error::MissingFile { .. } => {
            PyFileNotFoundError::new_err(message)
        }
        Error::Model(_) => PyOSError::new_err(message),
    }
}

fn dtype(name: &str) -> PyResult<Dtype> {
    match name {
        "f32" | "float32" => Ok(Dtype::F32),
        "bf16" | "bfloat16" => Ok(Dtype::Bf16),
        "int8" => Ok(Dtype::Int8),
        other => Err(PyValueError::new_err(format!(
            "dtype {other:?}: expected \"f32\", \"bf16\" or \"int8\""
        ))),
    }
}

/// A reranker (cross-encoder or LLM reranker), loaded once.
#[pyclass(frozen, module = "rerank._native")]
struct NativeReranker {
    inner: Reranker,
}

#[pymethods]
impl NativeReranker {
    /// Loads a model folder or hub id.
    #[new]
    #[pyo3(signature = (model, dtype = "f32", threads = 0, attention_softcap = false))]
    fn new(
        py: Python<'_>,
        model: String,
        dtype: &str,
        threads: usize,
        attention_softcap: bool,
    ) -> PyResult<Self> {
        let dtype = self::dtype(dtype)?;
        let inner = py
            .detach(|| {
                Reranker::builder(model)
                    .threads(threads)
                    .dtype(dtype)
                    .attention_softcap(attention_softcap)
                    .build()
            })
            .map_err(to_py)?;
        Ok(Self { inner })
    }

    /// The Hugging Face architecture name.
    #[getter]
    fn architecture(&self) -> &'static str {
        self.inner.kind().architecture()
    }

    /// The longest pair (in tokens) the model accepts.
    #[getter]
    fn max_sequence_length(&self) -> usize {
        self.inner.max_sequence_length()
    }

    /// The folder the model was loaded from.
    #[getter]
    fn model_dir(&self) -> String {
        self.inner.model_dir().display().to_string()
    }

    /// True for the LLM rerankers.
    #[getter]
    fn is_llm(&self) -> bool {
        self.inner.kind().is_llm()
    }

    /// The number of layers a cutoff may name, for the layerwise rerankers (else `None`).
    #[getter]
    fn num_layers(&self) -> Option<usize> {
        self.inner.layer_support().map(|s| s.last)
    }

    /// Scores `(query, passage)` pairs: one list per cutoff layer (one list for models
    /// without layers), raw logits or their sigmoid.
    #[pyo3(signature = (pairs, *, normalize = false, max_length = 512, query_max_length = None,
        batch_size = 128, truncation = "flag", prompt = None, query_instruction = None,
        passage_instruction = None, cutoff_layers = None, compress_ratio = None,
        compress_layers = None))]
    #[allow(clippy::too_many_arguments)]
    fn compute_score(
        &self,
        py: Python<'_>,
        pairs: Vec<(String, String)>,
        normalize: bool,
        max_length: usize,
        query_max_length: Option<usize>,
        batch_size: usize,
        truncation: &str,
        prompt: Option<String>,
        query_instruction: Option<String>,
        passage_instruction: Option<String>,
        cutoff_layers: Option<Vec<usize>>,
        compress_ratio: Option<usize>,
        compress_layers: Option<Vec<usize>>,
    ) -> PyResult<Vec<Vec<f32>>> {
        let truncation: Truncation = truncation.parse().map_err(PyValueError::new_err)?;
        let opts = ScoreOptions {
            normalize,
            max_length,
            query_max_length,
            batch_size,
            truncation,
            prompt,
            query_instruction,
            passage_instruction,
            cutoff_layers,
            compress_ratio,
            compress_layers,
        };
        if pairs.is_empty() {
            return Ok(vec![Vec::new()]);
        }
        py.detach(|| self.inner.compute_score_layers(&pairs, &opts))
            .map(|scores| scores.scores)
            .map_err(to_py)
    }
}

/// A dense embedder, loaded once.
#[pyclass(frozen, module = "rerank._native")]
struct NativeEmbedder {
    inner: Embedder,
}

#[pymethods]
impl NativeEmbedder {
    /// Loads a model folder or hub id.
    #[new]
    #[pyo3(signature = (model, dtype = "f32", threads = 0))]
    fn new(py: Python<'_>, model: String, dtype: &str, threads: usize) -> PyResult<Self> {
        let dtype = self::dtype(dtype)?;
        let inner = py
            .detach(|| {
                Embedder::builder(model)
                    .threads(threads)
                    .dtype(dtype)
                    .build()
            })
            .map_err(to_py)?;
        Ok(Self { inner })
    }

    /// Length of each vector.
    #[getter]
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    /// Longest input in tokens.
    #[getter]
    fn max_length(&self) -> usize {
        self.inner.config().max_length
    }

    /// Whether the model's vectors are L2-normalised by default.
    #[getter]
    fn normalize(&self) -> bool {
        self.inner.config().normalize
    }

    /// `"sentence-transformers"` or `"flagmodel"`.
    #[getter]
    fn style(&self) -> &'static str {
        self.inner.config().style
    }

    /// Embeds texts: `(little-endian f32 bytes, rows, dimension)` for `numpy.frombuffer`.
    #[pyo3(signature = (texts, *, normalize = None, instruction = None, max_length = None,
        batch_tokens = 16384))]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        normalize: Option<bool>,
        instruction: Option<String>,
        max_length: Option<usize>,
        batch_tokens: usize,
    ) -> PyResult<(Bound<'py, PyBytes>, usize, usize)> {
        let opts = EmbedOptions {
            normalize,
            instruction,
            max_length,
            batch_tokens: batch_tokens.max(1),
            ..EmbedOptions::default()
        };
        let dim = self.inner.dimension();
        let bytes = py
            .detach(|| {
                self.inner.embed_with(&texts, &opts).map(|e| {
                    e.vectors
                        .iter()
                        .flatten()
                        .flat_map(|x| x.to_le_bytes())
                        .collect::<Vec<u8>>()
                })
            })
            .map_err(to_py)?;
        Ok((PyBytes::new(py, &bytes), texts.len(), dim))
    }
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeReranker>()?;
    m.add_class::<NativeEmbedder>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
