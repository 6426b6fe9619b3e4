//! The architectures, one file each, and the choice among them from `config.json`.

pub mod bert;
pub mod gemma;
pub mod gemma2;
pub(crate) mod llm;
pub mod minicpm;
pub mod onnx;
pub mod xlm_roberta;

use std::path::Path;

use crate::batch::PackedBatch;
use crate::error::{ModelError, Result};
use crate::layers::{DecoderSpec, EncoderConfig, Linear, Matrix};
use crate::layerwise::{LayerPlan, LayerSupport};
use crate::weights::{Vb, Weights};
use crate::Dtype;

use bert::{BertConfig, BertForSequenceClassification, BertModel};
use gemma::{GemmaConfig, GemmaForCausalLM};
use gemma2::{CostWiseGemma2, Gemma2Config};
use minicpm::{LayerWiseMiniCpm, MiniCpmConfig};
use xlm_roberta::{XlmRobertaForSequenceClassification, XlmRobertaModel};

/// The model families this engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// BERT (token type ids, position ids from 0).
    Bert,
    /// XLM-RoBERTa / RoBERTa (position ids after the padding id).
    XlmRoberta,
    /// Gemma decoder scored by the logit of one token (bge-reranker-v2-gemma).
    Gemma,
    /// MiniCPM decoder with a score head per layer (bge-reranker-v2-minicpm-layerwise).
    MiniCpmLayerwise,
    /// Gemma-2 decoder with per-layer heads and token compression
    /// (bge-reranker-v2.5-gemma2-lightweight).
    Gemma2Lightweight,
}

impl ModelKind {
    /// The Hugging Face architecture name (`architectures[0]` of config.json) of the reranker.
    pub fn architecture(self) -> &'static str {
        match self {
            ModelKind::Bert => "BertForSequenceClassification",
            ModelKind::XlmRoberta => "XLMRobertaForSequenceClassification",
            ModelKind::Gemma => "GemmaForCausalLM",
            ModelKind::MiniCpmLayerwise => "LayerWiseMiniCPMForCausalLM",
            ModelKind::Gemma2Lightweight => "CostWiseGemmaForCausalLM",
        }
    }

    /// The same as [`ModelKind::architecture`] (the name from before decoder rerankers).
    pub fn classifier_architecture(self) -> &'static str {
        self.architecture()
    }

    /// True for the decoder-only (LLM) rerankers, whose input is a prompt around the pair.
    pub fn is_llm(self) -> bool {
        matches!(
            self,
            ModelKind::Gemma | ModelKind::MiniCpmLayerwise | ModelKind::Gemma2Lightweight
        )
    }
}

/// A cross-encoder: one relevance logit per packed sequence.
pub trait CrossEncoder: Send + Sync {
    /// Which family it is.
    fn kind(&self) -> ModelKind;
    /// The longest sequence (in tokens, specials included) the model accepts.
    fn max_sequence_length(&self) -> usize;
    /// Multiply-adds ×2 of a full forward pass over one sequence of `tokens` tokens (the
    /// usual "model FLOPs": every layer on every token, as other runtimes count them).
    fn forward_flops(&self, tokens: usize) -> f64;
    /// Raw logits, one per sequence of `batch`, in order.
    fn score(&self, batch: &PackedBatch) -> Result<Vec<f32>>;
    /// The layers the model can score from, for the layerwise rerankers (`None`: one score,
    /// at the last layer).
    fn layer_support(&self) -> Option<LayerSupport> {
        None
    }
    /// Raw logits at each cutoff of `plan` (`[cutoff][sequence]`); a plan checked against
    /// [`CrossEncoder::layer_support`]. Models without layer options score once.
    fn score_plan(&self, batch: &PackedBatch, plan: &LayerPlan) -> Result<Vec<Vec<f32>>> {
        let _ = plan;
        Ok(vec![self.score(batch)?])
    }
}

/// What [`load_cross_encoder_with`] needs besides the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// Precision of the linear layers.
    pub dtype: Dtype,
    /// For the LLM rerankers scored by one token's logit ([`ModelKind::Gemma`]): that token's
    /// id, which only the tokenizer knows (`Yes` for bge-reranker-v2-gemma). Ignored by the
    /// encoders.
    pub score_token: Option<u32>,
    /// Gemma-2: apply the attention-logit soft-cap (transformers' eager attention). Off by
    /// default, as FlagEmbedding runs the lightweight reranker (sdpa, no cap).
    pub attention_softcap: bool,
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
    /// `[sequences, hidden]`: the last layer's state of each sequence's first token (CLS
    /// pooling), computing no other row of the last layer.
    fn first_token_states(&self, batch: &PackedBatch) -> Result<Matrix> {
        Ok(self
            .hidden_states(batch)?
            .select_rows(&batch.first_token_rows()))
    }
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

/// Multiply-adds ×2 of a full forward pass of `layers` decoder blocks over one sequence of
/// `tokens` tokens (projections, causal attention counted as full, gated MLP).
pub fn decoder_flops(spec: &DecoderSpec, layers: usize, tokens: usize) -> f64 {
    let a = &spec.attention;
    let (h, i, n) = (spec.hidden as f64, spec.intermediate as f64, tokens as f64);
    let (q, kv) = (a.q_width() as f64, a.kv_width() as f64);
    let per_layer = 2.0 * n * (h * (q + 2.0 * kv) + q * h + 3.0 * h * i) + 4.0 * n * n * q;
    per_layer * layers as f64
}

/// Multiply-adds ×2 of a full forward pass of an encoder over one sequence of `n` tokens (the
/// usual "model FLOPs": every layer on every token, as other runtimes compute it).
pub fn forward_flops(cfg: &EncoderConfig, n: usize) -> f64 {
    let (h, i, n) = (
        cfg.hidden_size as f64,
        cfg.intermediate_size as f64,
        n as f64,
    );
    let per_layer = 2.0 * n * (4.0 * h * h + 2.0 * h * i) + 4.0 * n * n * h;
    per_layer * cfg.num_hidden_layers as f64
}

const CLASSIFIERS: [(&str, ModelKind); 6] = [
    ("XLMRobertaForSequenceClassification", ModelKind::XlmRoberta),
    ("RobertaForSequenceClassification", ModelKind::XlmRoberta),
    ("BertForSequenceClassification", ModelKind::Bert),
    ("GemmaForCausalLM", ModelKind::Gemma),
    ("LayerWiseMiniCPMForCausalLM", ModelKind::MiniCpmLayerwise),
    ("CostWiseGemmaForCausalLM", ModelKind::Gemma2Lightweight),
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

/// The reranker family of a model folder, from `architectures[0]` of its `config.json`.
pub fn model_kind(dir: &Path) -> Result<ModelKind> {
    kind_of(&read_config(dir)?)
}

fn kind_of(config: &serde_json::Value) -> Result<ModelKind> {
    let arch = named_architecture(config);
    CLASSIFIERS
        .iter()
        .find(|(name, _)| *name == arch)
        .map(|(_, kind)| *kind)
        .ok_or_else(|| ModelError::UnsupportedArchitecture {
            found: arch.clone(),
            supported: CLASSIFIERS.map(|(n, _)| n).join(", "),
        })
}

/// Loads the cross-encoder in a model folder, choosing the architecture from `config.json`;
/// the linear layers run in `dtype`. The LLM rerankers need [`load_cross_encoder_with`] (their
/// score token).
pub fn load_cross_encoder(dir: &Path, dtype: Dtype) -> Result<Box<dyn CrossEncoder>> {
    load_cross_encoder_with(
        dir,
        &LoadOptions {
            dtype,
            ..LoadOptions::default()
        },
    )
}

/// Loads the reranker in a model folder, choosing the architecture from `config.json`.
pub fn load_cross_encoder_with(dir: &Path, opts: &LoadOptions) -> Result<Box<dyn CrossEncoder>> {
    let config = read_config(dir)?;
    let kind = kind_of(&config)?;
    let config_error = |message| ModelError::Config {
        path: dir.join("config.json"),
        message,
    };
    let weights = || Ok::<_, ModelError>(Weights::from_dir(dir)?.with_dtype(opts.dtype));
    Ok(match kind {
        ModelKind::Gemma => {
            let cfg = GemmaConfig::from_json(&config).map_err(config_error)?;
            let token = opts.score_token.ok_or_else(|| {
                ModelError::Input(format!(
                    "{} scores one token's logit: its id must be given (LoadOptions::score_token)",
                    kind.architecture()
                ))
            })?;
            Box::new(GemmaForCausalLM::load(&weights()?, &cfg, token)?)
        }
        ModelKind::MiniCpmLayerwise => {
            let cfg = MiniCpmConfig::from_json(&config).map_err(config_error)?;
            Box::new(LayerWiseMiniCpm::load(&weights()?, &cfg)?)
        }
        ModelKind::Gemma2Lightweight => {
            let cfg = Gemma2Config::from_json(&config).map_err(config_error)?;
            Box::new(CostWiseGemma2::load(
                &weights()?,
                &cfg,
                opts.attention_softcap,
            )?)
        }
        ModelKind::Bert => Box::new(BertForSequenceClassification::load(
            &weights()?,
            &bert_config(dir, &config)?,
        )?),
        ModelKind::XlmRoberta => Box::new(XlmRobertaForSequenceClassification::load(
            &weights()?,
            &bert_config(dir, &config)?,
        )?),
    })
}

/// Loads a cross-encoder (BERT or XLM-RoBERTa `…ForSequenceClassification`, from `config.json`)
/// exported to the ONNX graph `file`, run by ONNX Runtime.
pub fn load_onnx_cross_encoder(dir: &Path, file: &Path) -> Result<Box<dyn CrossEncoder>> {
    let config = read_config(dir)?;
    let kind = kind_of(&config)?;
    let cfg = match kind {
        ModelKind::Bert | ModelKind::XlmRoberta => bert_config(dir, &config)?,
        _ => {
            return Err(ModelError::UnsupportedArchitecture {
                found: format!("{} (as ONNX)", kind.architecture()),
                supported: "BertForSequenceClassification, XLMRobertaForSequenceClassification"
                    .into(),
            })
        }
    };
    let (max_len, pad) = match kind {
        ModelKind::XlmRoberta => {
            let pad = cfg.pad_token_id.unwrap_or(1);
            (
                cfg.max_position_embeddings.saturating_sub(pad as usize + 1),
                pad,
            )
        }
        _ => (cfg.max_position_embeddings, cfg.pad_token_id.unwrap_or(0)),
    };
    Ok(Box::new(onnx::OnnxCrossEncoder::load(
        file,
        kind,
        &cfg.encoder,
        max_len,
        pad,
    )?))
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
        ModelKind::Gemma | ModelKind::MiniCpmLayerwise | ModelKind::Gemma2Lightweight => {
            return Err(ModelError::UnsupportedArchitecture {
                found: named_architecture(&config),
                supported: ENCODERS.map(|(n, _)| n).join(", "),
            })
        }
    })
}
