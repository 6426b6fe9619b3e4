//! The architectures, one file each, and the choice among them from `config.json`.

pub mod bert;
pub mod xlm_roberta;

use std::path::Path;

use crate::batch::PackedBatch;
use crate::error::{ModelError, Result};
use crate::layers::{EncoderConfig, Linear, Matrix};
use crate::weights::{Vb, Weights};
use crate::Dtype;

use bert::{BertConfig, BertForSequenceClassification, BertModel};
use xlm_roberta::{XlmRobertaForSequenceClassification, XlmRobertaModel};

/// The model families this engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// BERT (token type ids, position ids from 0).
    Bert,
    /// XLM-RoBERTa / RoBERTa (position ids after the padding id).
    XlmRoberta,
}

impl ModelKind {
    /// The Hugging Face architecture name of the classifier variant.
    pub fn classifier_architecture(self) -> &'static str {
        match self {
            ModelKind::Bert => "BertForSequenceClassification",
            ModelKind::XlmRoberta => "XLMRobertaForSequenceClassification",
        }
    }
}

/// A cross-encoder: one relevance logit per packed sequence.
pub trait CrossEncoder: Send + Sync {
    /// Which family it is.
    fn kind(&self) -> ModelKind;
    /// The longest sequence (in tokens, specials included) the model accepts.
    fn max_sequence_length(&self) -> usize;
    /// The transformer's sizes.
    fn encoder_config(&self) -> &EncoderConfig;
    /// Raw logits, one per sequence of `batch`, in order.
    fn score(&self, batch: &PackedBatch) -> Result<Vec<f32>>;
}

/// An encoder that returns the last hidden state of every token.
pub trait TextEncoder: Send + Sync {
    /// Which family it is.
    fn kind(&self) -> ModelKind;
    /// Width of each hidden state.
    fn hidden_size(&self) -> usize;
    /// The longest sequence (in tokens, specials included) the model accepts.
    fn max_sequence_length(&self) -> usize;
    /// `[total_tokens, hidden]` hidden states of the last layer.
    fn hidden_states(&self, batch: &PackedBatch) -> Result<Matrix>;
}

/// A single-logit linear output layer (`num_labels == 1`).
pub(crate) struct ClassifierHead {
    linear: Linear,
}

impl ClassifierHead {
    pub(crate) fn load(weights: &Weights, vb: &Vb, hidden: usize) -> Result<Self> {
        let name = vb.path("weight");
        let labels = weights.shape(&name).map_or(1, |s| s[0]);
        if labels != 1 {
            return Err(ModelError::BadTensor {
                name,
                message: format!(
                    "the classifier has {labels} outputs; a reranker has exactly one (num_labels = 1)"
                ),
            });
        }
        Ok(Self {
            linear: Linear::load_as(vb, hidden, 1, Dtype::F32)?,
        })
    }

    pub(crate) fn forward(&self, x: &Matrix) -> Vec<f32> {
        self.linear.forward(x).data
    }
}

/// Multiply-adds ×2 of a full forward pass over one sequence of `n` tokens (the usual
/// "model FLOPs": every layer on every token, as other runtimes compute it).
pub fn forward_flops(cfg: &EncoderConfig, n: usize) -> f64 {
    let (h, i, n) = (
        cfg.hidden_size as f64,
        cfg.intermediate_size as f64,
        n as f64,
    );
    let per_layer = 2.0 * n * (4.0 * h * h + 2.0 * h * i) + 4.0 * n * n * h;
    per_layer * cfg.num_hidden_layers as f64
}

const CLASSIFIERS: [(&str, ModelKind); 3] = [
    ("XLMRobertaForSequenceClassification", ModelKind::XlmRoberta),
    ("RobertaForSequenceClassification", ModelKind::XlmRoberta),
    ("BertForSequenceClassification", ModelKind::Bert),
];

const ENCODERS: [(&str, ModelKind); 3] = [
    ("xlm-roberta", ModelKind::XlmRoberta),
    ("roberta", ModelKind::XlmRoberta),
    ("bert", ModelKind::Bert),
];

/// Reads `dir/config.json`.
pub fn read_config(dir: &Path) -> Result<serde_json::Value> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path,
        message: e.to_string(),
    })
}

fn named_architecture(config: &serde_json::Value) -> String {
    config["architectures"]
        .get(0)
        .and_then(|a| a.as_str())
        .or_else(|| config["model_type"].as_str())
        .unwrap_or("(none named)")
        .to_string()
}

fn bert_config(dir: &Path, config: &serde_json::Value) -> Result<BertConfig> {
    BertConfig::from_json(config).map_err(|message| ModelError::Config {
        path: dir.join("config.json"),
        message,
    })
}

/// Loads the cross-encoder in a model folder, choosing the architecture from `config.json`;
/// the encoder's linear layers run in `dtype`.
pub fn load_cross_encoder(dir: &Path, dtype: Dtype) -> Result<Box<dyn CrossEncoder>> {
    let config = read_config(dir)?;
    let arch = named_architecture(&config);
    let kind = CLASSIFIERS
        .iter()
        .find(|(name, _)| *name == arch)
        .map(|(_, kind)| *kind)
        .ok_or_else(|| ModelError::UnsupportedArchitecture {
            found: arch.clone(),
            supported: CLASSIFIERS.map(|(n, _)| n).join(", "),
        })?;
    let cfg = bert_config(dir, &config)?;
    let weights = Weights::from_dir(dir)?.with_dtype(dtype);
    Ok(match kind {
        ModelKind::Bert => Box::new(BertForSequenceClassification::load(&weights, &cfg)?),
        ModelKind::XlmRoberta => {
            Box::new(XlmRobertaForSequenceClassification::load(&weights, &cfg)?)
        }
    })
}

/// Loads the bare encoder of a model folder (any BERT or XLM-RoBERTa checkpoint; a
/// classification head, if present, is ignored).
pub fn load_text_encoder(dir: &Path, dtype: Dtype) -> Result<Box<dyn TextEncoder>> {
    let config = read_config(dir)?;
    let model_type = config["model_type"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = ENCODERS
        .iter()
        .find(|(name, _)| *name == model_type)
        .map(|(_, kind)| *kind)
        .ok_or_else(|| ModelError::UnsupportedArchitecture {
            found: named_architecture(&config),
            supported: ENCODERS.map(|(n, _)| n).join(", "),
        })?;
    let cfg = bert_config(dir, &config)?;
    let weights = Weights::from_dir(dir)?.with_dtype(dtype);
    Ok(match kind {
        ModelKind::Bert => Box::new(BertModel::load_from(&weights, &cfg)?),
        ModelKind::XlmRoberta => Box::new(XlmRobertaModel::load_from(&weights, &cfg)?),
    })
}
