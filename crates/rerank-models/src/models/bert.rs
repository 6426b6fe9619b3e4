//! BERT (Devlin et al., 2018, arXiv:1810.04805): `BertModel` and `BertForSequenceClassification`
//! as in Hugging Face transformers' `modeling_bert.py`.
//!
//! Used by MiniLM-style embedders and BERT cross-encoders. The embedding block here is shared
//! with XLM-RoBERTa, which differs only in how it numbers positions.

use serde::Deserialize;

use crate::batch::PackedBatch;
use crate::error::{ModelError, Result};
use crate::layers::{EncoderConfig, LayerNorm, Linear, Matrix, TransformerEncoder};
use crate::models::{ClassifierHead, CrossEncoder, ModelKind, TextEncoder};
use crate::weights::{MappedTable, Vb, Weights};
use crate::Dtype;

/// The fields of a BERT/RoBERTa `config.json` this crate reads.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// The transformer stack's sizes.
    #[serde(flatten)]
    pub encoder: EncoderConfig,
    /// Rows of the token embedding table.
    pub vocab_size: usize,
    /// Rows of the position embedding table.
    pub max_position_embeddings: usize,
    /// Rows of the token type embedding table.
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// The padding token id (RoBERTa numbers positions after it).
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Only `"absolute"` position embeddings are supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_type_vocab_size() -> usize {
    2
}

impl BertConfig {
    /// Parses and checks a config.json value.
    pub fn from_json(value: &serde_json::Value) -> std::result::Result<Self, String> {
        let cfg: Self = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        cfg.encoder.validate()?;
        match cfg.position_embedding_type.as_deref() {
            None | Some("absolute") => Ok(cfg),
            Some(other) => Err(format!(
                "position_embedding_type {other:?} is not supported"
            )),
        }
    }
}

/// Token + position + token-type embeddings followed by LayerNorm.
pub struct Embeddings {
    word: MappedTable,
    position: Vec<f32>,
    token_type: Vec<f32>,
    norm: LayerNorm,
    cfg: BertConfig,
}

impl Embeddings {
    /// Loads the `embeddings` block.
    pub fn load(vb: &Vb, cfg: &BertConfig) -> Result<Self> {
        let h = cfg.encoder.hidden_size;
        Ok(Self {
            word: vb
                .pp("word_embeddings")
                .get_table("weight", cfg.vocab_size, h)?,
            position: vb
                .pp("position_embeddings")
                .get("weight", &[cfg.max_position_embeddings, h])?,
            token_type: vb
                .pp("token_type_embeddings")
                .get("weight", &[cfg.type_vocab_size, h])?,
            norm: LayerNorm::load(&vb.pp("LayerNorm"), h, cfg.encoder.layer_norm_eps)?,
            cfg: cfg.clone(),
        })
    }

    /// Embeds every token of `batch` at the given position ids.
    pub fn forward(&self, batch: &PackedBatch, position_ids: &[u32]) -> Result<Matrix> {
        let h = self.cfg.encoder.hidden_size;
        let mut out = Matrix::zeros(batch.total_tokens(), h);
        for (row, ((&id, &tt), &pos)) in batch
            .input_ids
            .iter()
            .zip(&batch.token_type_ids)
            .zip(position_ids)
            .enumerate()
        {
            let ty = table_row(
                &self.token_type,
                tt,
                h,
                "token type id",
                self.cfg.type_vocab_size,
            )?;
            let limit = self.cfg.max_position_embeddings;
            let position = table_row(&self.position, pos, h, "position", limit)?;
            let out_row = out.row_mut(row);
            for ((o, p), t) in out_row.iter_mut().zip(position).zip(ty) {
                *o = p + t;
            }
            self.word
                .add_row_to(id as usize, out_row)
                .ok_or_else(|| out_of_range("token id", id, self.word.rows()))?;
        }
        self.norm.forward_inplace(&mut out);
        Ok(out)
    }
}

fn table_row<'a>(
    table: &'a [f32],
    index: u32,
    width: usize,
    what: &str,
    rows: usize,
) -> Result<&'a [f32]> {
    let i = index as usize;
    if i >= rows {
        return Err(out_of_range(what, index, rows));
    }
    Ok(&table[i * width..(i + 1) * width])
}

/// The input error for an id past the end of an embedding table.
fn out_of_range(what: &str, index: u32, rows: usize) -> ModelError {
    let hint = if what == "position" {
        " (the sequence is longer than the model's maximum length)"
    } else {
        ""
    };
    ModelError::Input(format!(
        "{what} {index} is out of range for a table of {rows} rows{hint}"
    ))
}

/// BERT position ids: `0, 1, 2, …` within each sequence.
fn bert_position_ids(batch: &PackedBatch) -> Vec<u32> {
    (0..batch.len())
        .flat_map(|s| 0..batch.range(s).len() as u32)
        .collect()
}

/// `BertModel` without its pooler: returns the last hidden states.
pub struct BertModel {
    embeddings: Embeddings,
    encoder: TransformerEncoder,
    cfg: BertConfig,
}

impl BertModel {
    /// Loads `embeddings.*` and `encoder.*` under `vb`.
    pub fn load(vb: &Vb, cfg: &BertConfig) -> Result<Self> {
        Ok(Self {
            embeddings: Embeddings::load(&vb.pp("embeddings"), cfg)?,
            encoder: TransformerEncoder::load(&vb.pp("encoder"), &cfg.encoder)?,
            cfg: cfg.clone(),
        })
    }

    /// Loads a bare `BertModel` checkpoint, with or without the `bert.` prefix.
    pub fn load_from(weights: &Weights, cfg: &BertConfig) -> Result<Self> {
        let prefix = if weights.contains("bert.embeddings.word_embeddings.weight") {
            "bert"
        } else {
            ""
        };
        Self::load(&weights.pp(prefix), cfg)
    }

    fn forward(&self, batch: &PackedBatch, first_token_only: bool) -> Result<Matrix> {
        let x = self.embeddings.forward(batch, &bert_position_ids(batch))?;
        Ok(self.encoder.forward(x, &batch.cu_seqlens, first_token_only))
    }
}

impl TextEncoder for BertModel {
    fn kind(&self) -> ModelKind {
        ModelKind::Bert
    }

    fn hidden_size(&self) -> usize {
        self.cfg.encoder.hidden_size
    }

    fn max_sequence_length(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    fn hidden_states(&self, batch: &PackedBatch) -> Result<Matrix> {
        self.forward(batch, false)
    }

    fn first_token_states(&self, batch: &PackedBatch) -> Result<Matrix> {
        self.forward(batch, true)
    }
}

/// `BertForSequenceClassification`: BERT, pooler (dense + tanh on `[CLS]`), linear classifier.
pub struct BertForSequenceClassification {
    bert: BertModel,
    pooler: Linear,
    classifier: ClassifierHead,
}

impl BertForSequenceClassification {
    /// Loads `bert.*` and `classifier.*`.
    pub fn load(weights: &Weights, cfg: &BertConfig) -> Result<Self> {
        let vb = weights.pp("bert");
        let h = cfg.encoder.hidden_size;
        Ok(Self {
            bert: BertModel::load(&vb, cfg)?,
            pooler: Linear::load_as(&vb.pp("pooler").pp("dense"), h, h, Dtype::F32)?,
            classifier: ClassifierHead::load(weights, &weights.pp("classifier"), h)?,
        })
    }
}

impl CrossEncoder for BertForSequenceClassification {
    fn kind(&self) -> ModelKind {
        ModelKind::Bert
    }

    fn forward_flops(&self, tokens: usize) -> f64 {
        crate::models::forward_flops(&self.bert.cfg.encoder, tokens)
    }

    fn max_sequence_length(&self) -> usize {
        self.bert.cfg.max_position_embeddings
    }

    fn score(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        let first = self.bert.forward(batch, true)?;
        let mut pooled = self.pooler.forward(&first);
        pooled.data.iter_mut().for_each(|v| *v = v.tanh());
        Ok(self.classifier.forward(&pooled))
    }
}
