//! Gemma (Gemma Team, 2024, arXiv:2403.08295) as a reranker: `GemmaForCausalLM` as in Hugging
//! Face transformers' `modeling_gemma.py`, scored as FlagEmbedding's `FlagLLMReranker` scores
//! bge-reranker-v2-gemma: the logit of one token (`Yes`) at the last position of each sequence.
//!
//! The LM head is tied to the token embedding, so that logit is `final_norm(h_last) · E[yes]`:
//! one dot product per sequence, never the 256,000-wide vocabulary projection. The last layer
//! runs only the last token past its keys and values. The embedding table stays in the mapped
//! file (a batch reads a few hundred of its rows).

use serde::Deserialize;

use crate::batch::PackedBatch;
use crate::error::{ModelError, Result};
use crate::layers::fastmath::dot;
use crate::layers::{Activation, AttentionSpec, Decoder, DecoderSpec, Matrix, RmsNorm, RmsScale};
use crate::layerwise::LayerPlan;
use crate::models::llm::{last_token_states, ScaledEmbedding};
use crate::models::{decoder_flops, CrossEncoder, ModelKind};
use crate::weights::Weights;

/// The fields of a Gemma `config.json` this crate reads (defaults: transformers' `GemmaConfig`,
/// the 7B model's sizes).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GemmaConfig {
    /// Rows of the token embedding table (and of the tied LM head).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of the gated MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (1 = multi-query attention, as in Gemma-2B).
    pub num_key_value_heads: Option<usize>,
    /// Values per head (`heads · head_dim` may differ from `hidden_size`).
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Longest sequence the model was trained on.
    pub max_position_embeddings: usize,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// Padding token.
    pub pad_token_id: Option<u32>,
    /// The older activation field. Real Gemma configs say `"gelu"` there, but transformers
    /// (4.46, 5.x) runs the tanh approximation, which the model was trained with: ignored.
    pub hidden_act: Option<String>,
    /// The MLP activation; unset = GELU, tanh approximation.
    pub hidden_activation: Option<Activation>,
    /// Biases on Q/K/V/O (not in Gemma checkpoints; rejected).
    pub attention_bias: bool,
    /// RoPE scaling (not used by Gemma; rejected).
    pub rope_scaling: Option<serde_json::Value>,
    /// The LM head shares the embedding table.
    pub tie_word_embeddings: bool,
}

impl Default for GemmaConfig {
    fn default() -> Self {
        Self {
            vocab_size: 256_000,
            hidden_size: 3072,
            intermediate_size: 24_576,
            num_hidden_layers: 28,
            num_attention_heads: 16,
            num_key_value_heads: None,
            head_dim: 256,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            max_position_embeddings: 8192,
            bos_token_id: Some(2),
            pad_token_id: Some(0),
            hidden_act: None,
            hidden_activation: None,
            attention_bias: false,
            rope_scaling: None,
            tie_word_embeddings: true,
        }
    }
}

impl GemmaConfig {
    /// Parses and checks a config.json value.
    pub fn from_json(value: &serde_json::Value) -> std::result::Result<Self, String> {
        let cfg: Self = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        if cfg.attention_bias {
            return Err("attention_bias = true is not supported for Gemma".into());
        }
        if cfg.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err("rope_scaling is not supported for Gemma".into());
        }
        cfg.decoder_spec().validate()?;
        Ok(cfg)
    }

    /// Every layer's block: `1 + w` RMSNorms, causal GQA with `head_dim^−½` scale, gated MLP.
    pub fn decoder_spec(&self) -> DecoderSpec {
        let kv_heads = self.num_key_value_heads.unwrap_or(self.num_attention_heads);
        DecoderSpec {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            attention: AttentionSpec {
                scale: (self.head_dim as f64).powf(-0.5) as f32,
                ..AttentionSpec::causal(self.num_attention_heads, kv_heads, self.head_dim)
            },
            rope_theta: self.rope_theta,
            rms_eps: self.rms_norm_eps,
            rms_scale: RmsScale::OnePlusWeight,
            activation: self.hidden_activation.unwrap_or(Activation::GeluNew),
            residual_scale: 1.0,
            sandwich_norms: false,
        }
    }
}

/// `GemmaForCausalLM` reduced to the logit of one vocabulary entry at the last token.
pub struct GemmaForCausalLM {
    /// Rows × `√hidden_size` (rounded to f32, as transformers does before multiplying).
    embed: ScaledEmbedding,
    decoder: Decoder,
    final_norm: RmsNorm,
    /// The LM head's row of the score token.
    score_row: Vec<f32>,
    score_token: u32,
    cfg: GemmaConfig,
}

impl GemmaForCausalLM {
    /// Loads `model.*` and the LM-head row of `score_token` (the tokenizer's id of `Yes`).
    pub fn load(weights: &Weights, cfg: &GemmaConfig, score_token: u32) -> Result<Self> {
        let spec = cfg.decoder_spec();
        spec.validate().map_err(ModelError::Input)?;
        let (vocab, h) = (cfg.vocab_size, cfg.hidden_size);
        let vb = weights.pp("model");
        let embed = ScaledEmbedding::load(weights, vocab, h, (h as f64).sqrt() as f32)?;
        let head_name = "lm_head.weight";
        let head = if !cfg.tie_word_embeddings && weights.contains(head_name) {
            Some(weights.get_table(head_name, vocab, h)?)
        } else {
            None
        };
        let mut score_row = vec![0.0; h];
        head.as_ref()
            .unwrap_or(embed.table())
            .add_row_to(score_token as usize, &mut score_row)
            .ok_or_else(|| {
                ModelError::Input(format!(
                    "score token id {score_token} is out of range for a vocabulary of {vocab}"
                ))
            })?;
        Ok(Self {
            embed,
            decoder: Decoder::load(&vb.pp("layers"), cfg.num_hidden_layers, |_| spec.clone())?,
            final_norm: RmsNorm::load(
                &vb.pp("norm"),
                h,
                cfg.rms_norm_eps,
                RmsScale::OnePlusWeight,
            )?,
            score_row,
            score_token,
            cfg: cfg.clone(),
        })
    }

    /// The vocabulary entry whose logit is the score.
    pub fn score_token(&self) -> u32 {
        self.score_token
    }

    /// The model's configuration.
    pub fn config(&self) -> &GemmaConfig {
        &self.cfg
    }
}

impl CrossEncoder for GemmaForCausalLM {
    fn kind(&self) -> ModelKind {
        ModelKind::Gemma
    }

    fn max_sequence_length(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    fn forward_flops(&self, tokens: usize) -> f64 {
        let spec = self.cfg.decoder_spec();
        decoder_flops(&spec, self.cfg.num_hidden_layers, tokens) + 2.0 * spec.hidden as f64
    }

    fn score(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let plan = LayerPlan::single(self.decoder.len());
        let mut last = last_token_states(&self.embed, &self.decoder, batch, &plan)?
            .pop()
            .unwrap_or_else(|| Matrix::zeros(0, 0));
        self.final_norm.forward_inplace(&mut last);
        Ok((0..last.rows)
            .map(|r| dot(last.row(r), &self.score_row))
            .collect())
    }
}
