//! Gemma-2 (Gemma Team, 2024, arXiv:2408.00118) as a layerwise reranker with token
//! compression: `CostWiseGemmaForCausalLM` of FlagEmbedding 1.4.2 (`gemma_model.py`), the model
//! of bge-reranker-v2.5-gemma2-lightweight.
//!
//! Gemma-2 blocks (`1 + w` RMSNorms around both the attention and the MLP, attention scale
//! `query_pre_attn_scalar^−½`, GQA, every even layer with a sliding window), embeddings ×
//! `√hidden`. For each cutoff the final-normed last-token state goes through a
//! `Linear(hidden, 1)` head (the i-th head for the i-th cutoff of the call, as FlagEmbedding
//! picks them) and the final soft-cap `cap · tanh(s / cap)`. Before each `compress_layers`
//! index the passage tokens are averaged in groups of `compress_ratio`
//! ([`crate::layers::compress`]), so the later layers run on fewer rows.
//!
//! FlagEmbedding runs the model with sdpa attention, where transformers 4.46 does not apply
//! the attention-logit soft-cap; neither do we, unless asked ([`LoadOptions::attention_softcap`],
//! the eager behaviour).
//!
//! [`LoadOptions::attention_softcap`]: crate::LoadOptions::attention_softcap

use serde::Deserialize;

use crate::batch::PackedBatch;
use crate::error::Result;
use crate::layers::{Activation, AttentionSpec, Decoder, DecoderSpec, RmsNorm, RmsScale};
use crate::layerwise::{LayerPlan, LayerSupport};
use crate::models::llm::{HeadChoice, LayerHeads, LayerwiseDecoder, ScaledEmbedding};
use crate::models::{decoder_flops, CrossEncoder, ModelKind};
use crate::weights::Weights;

/// The fields of a `CostWiseGemmaConfig` (Gemma-2 plus the layerwise fields) this crate reads;
/// defaults are transformers' `Gemma2Config` and FlagEmbedding's.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Gemma2Config {
    /// Rows of the token embedding table.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of the gated MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    pub num_key_value_heads: Option<usize>,
    /// Values per head.
    pub head_dim: usize,
    /// The MLP activation (GELU, tanh approximation).
    pub hidden_activation: Option<Activation>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Longest sequence the model was trained on.
    pub max_position_embeddings: usize,
    /// Attention logits are scaled by `query_pre_attn_scalar^−½` (not `head_dim^−½`).
    pub query_pre_attn_scalar: f64,
    /// Window of the sliding-window layers (the even ones).
    pub sliding_window: Option<usize>,
    /// Soft-cap of the attention logits (applied only with the eager switch).
    pub attn_logit_softcapping: Option<f64>,
    /// Soft-cap of every score.
    pub final_logit_softcapping: Option<f64>,
    /// The first layer with a score head.
    pub start_layer: usize,
    /// Distance between layers with heads.
    pub layer_sep: usize,
    /// Per-layer heads (the reranker); `false` = a vocabulary head (not supported).
    pub layer_wise: bool,
    /// Biases on Q/K/V/O (rejected).
    pub attention_bias: bool,
    /// RoPE scaling (rejected).
    pub rope_scaling: Option<serde_json::Value>,
}

impl Default for Gemma2Config {
    fn default() -> Self {
        Self {
            vocab_size: 256_000,
            hidden_size: 3072,
            intermediate_size: 24_576,
            num_hidden_layers: 28,
            num_attention_heads: 16,
            num_key_value_heads: None,
            head_dim: 256,
            hidden_activation: None,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            max_position_embeddings: 8192,
            query_pre_attn_scalar: 224.0,
            sliding_window: Some(4096),
            attn_logit_softcapping: Some(50.0),
            final_logit_softcapping: Some(30.0),
            start_layer: 28,
            layer_sep: 28,
            layer_wise: false,
            attention_bias: false,
            rope_scaling: None,
        }
    }
}

impl Gemma2Config {
    /// Parses and checks a config.json value.
    pub fn from_json(value: &serde_json::Value) -> std::result::Result<Self, String> {
        let cfg: Self = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        if !cfg.layer_wise {
            return Err(
                "layer_wise = false (a vocabulary head) is not supported; the \
                        lightweight reranker has per-layer heads"
                    .into(),
            );
        }
        if cfg.attention_bias {
            return Err("attention_bias = true is not supported for Gemma-2".into());
        }
        if cfg.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err("rope_scaling is not supported for Gemma-2".into());
        }
        if cfg.start_layer == 0 || cfg.start_layer > cfg.num_hidden_layers || cfg.layer_sep == 0 {
            return Err(format!(
                "start_layer {} must be between 1 and num_hidden_layers {}, layer_sep ≥ 1",
                cfg.start_layer, cfg.num_hidden_layers
            ));
        }
        if !(cfg.query_pre_attn_scalar.is_finite() && cfg.query_pre_attn_scalar > 0.0) {
            return Err("query_pre_attn_scalar must be positive".into());
        }
        for i in 0..cfg.num_hidden_layers.min(2) {
            cfg.decoder_spec(i, true).validate()?;
        }
        Ok(cfg)
    }

    /// Layer `index`'s block: sandwich norms, `query_pre_attn_scalar` scale, a sliding window
    /// on even layers, the attention soft-cap only when `attention_softcap`.
    pub fn decoder_spec(&self, index: usize, attention_softcap: bool) -> DecoderSpec {
        let kv_heads = self.num_key_value_heads.unwrap_or(self.num_attention_heads);
        DecoderSpec {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            attention: AttentionSpec {
                scale: self.query_pre_attn_scalar.powf(-0.5) as f32,
                sliding_window: self.sliding_window.filter(|_| index.is_multiple_of(2)),
                softcap: self
                    .attn_logit_softcapping
                    .filter(|_| attention_softcap)
                    .map(|c| c as f32),
                ..AttentionSpec::causal(self.num_attention_heads, kv_heads, self.head_dim)
            },
            rope_theta: self.rope_theta,
            rms_eps: self.rms_norm_eps,
            rms_scale: RmsScale::OnePlusWeight,
            activation: self.hidden_activation.unwrap_or(Activation::GeluNew),
            residual_scale: 1.0,
            sandwich_norms: true,
        }
    }

    /// The layers a cutoff may name (`start_layer..=num_hidden_layers` by `layer_sep`) and
    /// FlagEmbedding's default compression layers (`[8]`).
    pub fn layer_support(&self) -> LayerSupport {
        LayerSupport {
            first: self.start_layer,
            last: self.num_hidden_layers,
            step: self.layer_sep,
            compress: true,
            default_compress_layers: vec![8],
        }
    }
}

/// `CostWiseGemmaForCausalLM`: one capped score per requested layer, with compression.
pub struct CostWiseGemma2 {
    layers: LayerwiseDecoder,
    cfg: Gemma2Config,
}

impl CostWiseGemma2 {
    /// Loads `model.*` and the heads `lm_head.{i}`; `attention_softcap` applies
    /// `attn_logit_softcapping` as transformers' eager attention does.
    pub fn load(weights: &Weights, cfg: &Gemma2Config, attention_softcap: bool) -> Result<Self> {
        let h = cfg.hidden_size;
        let vb = weights.pp("model");
        let norm = RmsNorm::load(&vb.pp("norm"), h, cfg.rms_norm_eps, RmsScale::OnePlusWeight)?;
        let support = cfg.layer_support();
        let heads = LayerHeads::load(
            weights,
            support.scorable().count(),
            (cfg.start_layer, cfg.layer_sep),
            h,
            HeadChoice::ByRank,
            norm,
        )?
        .with_softcap(cfg.final_logit_softcapping.map(|c| c as f32));
        let decoder = Decoder::load(&vb.pp("layers"), cfg.num_hidden_layers, |i| {
            cfg.decoder_spec(i, attention_softcap)
        })?;
        Ok(Self {
            layers: LayerwiseDecoder {
                embed: ScaledEmbedding::load(weights, cfg.vocab_size, h, (h as f64).sqrt() as f32)?,
                decoder,
                heads,
            },
            cfg: cfg.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &Gemma2Config {
        &self.cfg
    }
}

impl CrossEncoder for CostWiseGemma2 {
    fn kind(&self) -> ModelKind {
        ModelKind::Gemma2Lightweight
    }

    fn max_sequence_length(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    fn forward_flops(&self, tokens: usize) -> f64 {
        decoder_flops(
            &self.cfg.decoder_spec(1, false),
            self.cfg.num_hidden_layers,
            tokens,
        )
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
