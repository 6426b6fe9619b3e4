//! MiniCPM (Hu et al., 2024, arXiv:2404.06395) as a layerwise reranker:
//! `LayerWiseMiniCPMForCausalLM` of FlagEmbedding 1.4.2 (`modeling_minicpm_reranker.py`), the
//! model of bge-reranker-v2-minicpm-layerwise.
//!
//! A Llama-like decoder with MiniCPM's scalings: embeddings × `scale_emb`, every residual
//! branch × `scale_depth / √num_hidden_layers` (the full layer count, whatever the cutoff),
//! `x · w` RMSNorms, SiLU-gated MLP, `head_dim = hidden / heads`. For a cutoff `L` the hidden
//! state after `L` layers goes through the final norm and the score head
//! `lm_head[L − start_layer]` (a `Linear(hidden, 1)`, head type "simple"). Layers past the
//! deepest cutoff of a call are not run.

use serde::Deserialize;

use crate::batch::PackedBatch;
use crate::error::{ModelError, Result};
use crate::layers::{Activation, AttentionSpec, Decoder, DecoderSpec, RmsNorm, RmsScale};
use crate::layerwise::{LayerPlan, LayerSupport};
use crate::models::llm::{HeadChoice, LayerHeads, LayerwiseDecoder, ScaledEmbedding};
use crate::models::{decoder_flops, CrossEncoder, ModelKind};
use crate::weights::Weights;

/// The fields of a layerwise MiniCPM `config.json` this crate reads (defaults:
/// FlagEmbedding's `LayerWiseMiniCPMConfig`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MiniCpmConfig {
    /// Rows of the token embedding table.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of the gated MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads (`head_dim = hidden_size / num_attention_heads`).
    pub num_attention_heads: usize,
    /// Key/value heads (`None` = as many as query heads).
    pub num_key_value_heads: Option<usize>,
    /// The MLP activation (MiniCPM: SiLU).
    pub hidden_act: Activation,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Longest sequence the model was trained on.
    pub max_position_embeddings: usize,
    /// Embedding multiplier.
    pub scale_emb: f64,
    /// Residual branches are multiplied by `scale_depth / √num_hidden_layers`.
    pub scale_depth: f64,
    /// Width the "raw"/"complex" heads divide by (`hidden / dim_model_base`); the "simple"
    /// head of the reranker does not use it.
    pub dim_model_base: f64,
    /// The first layer with a score head.
    pub start_layer: usize,
    /// One head per layer (`true` in the reranker).
    pub head_multi: bool,
    /// `"simple"`: a `Linear(hidden, 1)` per layer (the only type a reranker checkpoint has).
    pub head_type: String,
    /// Split linear layers (not supported beyond 1).
    pub pretraining_tp: usize,
    /// Biases on Q/K/V/O (not in MiniCPM checkpoints; rejected).
    pub attention_bias: bool,
    /// RoPE scaling (rejected).
    pub rope_scaling: Option<serde_json::Value>,
}

impl Default for MiniCpmConfig {
    fn default() -> Self {
        Self {
            vocab_size: 32_000,
            hidden_size: 4096,
            intermediate_size: 11_008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            hidden_act: Activation::Silu,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            max_position_embeddings: 2048,
            scale_emb: 1.0,
            scale_depth: 1.0,
            dim_model_base: 1.0,
            start_layer: 8,
            head_multi: true,
            head_type: "simple".into(),
            pretraining_tp: 1,
            attention_bias: false,
            rope_scaling: None,
        }
    }
}

impl MiniCpmConfig {
    /// Parses and checks a config.json value.
    pub fn from_json(value: &serde_json::Value) -> std::result::Result<Self, String> {
        let cfg: Self = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        if cfg.head_type != "simple" || !cfg.head_multi {
            return Err(format!(
                "head_type {:?} with head_multi {} is not supported (a layerwise reranker has \
                 one \"simple\" head per layer)",
                cfg.head_type, cfg.head_multi
            ));
        }
        if cfg.pretraining_tp > 1 || cfg.attention_bias {
            return Err("pretraining_tp > 1 and attention_bias are not supported".into());
        }
        if cfg.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err("rope_scaling is not supported for MiniCPM".into());
        }
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                cfg.hidden_size, cfg.num_attention_heads
            ));
        }
        if cfg.start_layer == 0 || cfg.start_layer > cfg.num_hidden_layers {
            return Err(format!(
                "start_layer {} must be between 1 and num_hidden_layers {}",
                cfg.start_layer, cfg.num_hidden_layers
            ));
        }
        cfg.decoder_spec().validate()?;
        Ok(cfg)
    }

    /// Every layer's block: `w` RMSNorms, causal GQA, SiLU MLP, scaled residual branches.
    pub fn decoder_spec(&self) -> DecoderSpec {
        let heads = self.num_attention_heads.max(1);
        let head_dim = self.hidden_size / heads;
        DecoderSpec {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            attention: AttentionSpec::causal(
                heads,
                self.num_key_value_heads.unwrap_or(heads),
                head_dim,
            ),
            rope_theta: self.rope_theta,
            rms_eps: self.rms_norm_eps,
            rms_scale: RmsScale::Weight,
            activation: self.hidden_act,
            residual_scale: (self.scale_depth / (self.num_hidden_layers as f64).sqrt()) as f32,
            sandwich_norms: false,
        }
    }

    /// The layers a cutoff may name: `start_layer..=num_hidden_layers`.
    pub fn layer_support(&self) -> LayerSupport {
        LayerSupport {
            first: self.start_layer,
            last: self.num_hidden_layers,
            step: 1,
            compress: false,
            default_compress_layers: Vec::new(),
        }
    }
}

/// `LayerWiseMiniCPMForCausalLM`: one score per requested layer.
pub struct LayerWiseMiniCpm {
    layers: LayerwiseDecoder,
    cfg: MiniCpmConfig,
}

impl LayerWiseMiniCpm {
    /// Loads `model.*` and the heads `lm_head.{0..=layers − start_layer}`.
    pub fn load(weights: &Weights, cfg: &MiniCpmConfig) -> Result<Self> {
        let spec = cfg.decoder_spec();
        spec.validate().map_err(ModelError::Input)?;
        let h = cfg.hidden_size;
        let vb = weights.pp("model");
        let norm = RmsNorm::load(&vb.pp("norm"), h, cfg.rms_norm_eps, RmsScale::Weight)?;
        let count = cfg.num_hidden_layers + 1 - cfg.start_layer;
        Ok(Self {
            layers: LayerwiseDecoder {
                embed: ScaledEmbedding::load(weights, cfg.vocab_size, h, cfg.scale_emb as f32)?,
                decoder: Decoder::load(&vb.pp("layers"), cfg.num_hidden_layers, |_| spec.clone())?,
                heads: LayerHeads::load(
                    weights,
                    count,
                    (cfg.start_layer, 1),
                    h,
                    HeadChoice::ByLayer,
                    norm,
                )?,
            },
            cfg: cfg.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &MiniCpmConfig {
        &self.cfg
    }
}

impl CrossEncoder for LayerWiseMiniCpm {
    fn kind(&self) -> ModelKind {
        ModelKind::MiniCpmLayerwise
    }

    fn max_sequence_length(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    fn forward_flops(&self, tokens: usize) -> f64 {
        decoder_flops(&self.cfg.decoder_spec(), self.cfg.num_hidden_layers, tokens)
    }

    fn layer_support(&self) -> Option<LayerSupport> {
        Some(self.cfg.layer_support())
    }

    fn score(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        let plan = LayerPlan::single(self.cfg.num_hidden_layers);
        Ok(self.score_plan(batch, &plan)?.pop().unwrap_or_default())
    }

    fn score_plan(&self, batch: &PackedBatch, plan: &LayerPlan) -> Result<Vec<Vec<f32>>> {
        self.layers.score_plan(batch, plan)
    }
}
