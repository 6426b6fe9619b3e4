//! XLM-RoBERTa (Conneau et al., 2019, arXiv:1911.02116) as in Hugging Face transformers'
//! `modeling_xlm_roberta.py`: the architecture of bge-reranker-base, -large, -v2-m3 and bge-m3.
//!
//! The encoder is BERT's; what differs is the position numbering (positions start after the
//! padding id and skip padding tokens), the absence of a pooler, and the classification head
//! (dense → tanh → out_proj on the first token).

use crate::batch::PackedBatch;
use crate::error::Result;
use crate::layers::{Linear, Matrix, TransformerEncoder};
use crate::models::bert::{BertConfig, Embeddings};
use crate::models::{ClassifierHead, CrossEncoder, ModelKind, TextEncoder};
use crate::weights::{Vb, Weights};
use crate::Dtype;

/// `XLMRobertaModel` without pooler: embeddings + encoder.
pub struct XlmRobertaModel {
    embeddings: Embeddings,
    encoder: TransformerEncoder,
    cfg: BertConfig,
    padding_idx: u32,
}

impl XlmRobertaModel {
    /// Loads `embeddings.*` and `encoder.*` under `vb`.
    pub fn load(vb: &Vb, cfg: &BertConfig) -> Result<Self> {
        Ok(Self {
            embeddings: Embeddings::load(&vb.pp("embeddings"), cfg)?,
            encoder: TransformerEncoder::load(&vb.pp("encoder"), &cfg.encoder)?,
            cfg: cfg.clone(),
            padding_idx: cfg.pad_token_id.unwrap_or(1),
        })
    }

    /// Loads a bare `XLMRobertaModel` checkpoint, with or without the `roberta.` prefix.
    pub fn load_from(weights: &Weights, cfg: &BertConfig) -> Result<Self> {
        let prefix = if weights.contains("roberta.embeddings.word_embeddings.weight") {
            "roberta"
        } else {
            ""
        };
        Self::load(&weights.pp(prefix), cfg)
    }

    /// RoBERTa position ids: `padding_idx + 1, +2, …` over non-padding tokens, `padding_idx` on
    /// padding tokens (`create_position_ids_from_input_ids`).
    fn position_ids(&self, batch: &PackedBatch) -> Vec<u32> {
        let mut out = Vec::with_capacity(batch.total_tokens());
        for s in 0..batch.len() {
            let mut count = 0;
            for &id in &batch.input_ids[batch.range(s)] {
                if id == self.padding_idx {
                    out.push(self.padding_idx);
                } else {
                    count += 1;
                    out.push(self.padding_idx + count);
                }
            }
        }
        out
    }

    fn forward(&self, batch: &PackedBatch, first_token_only: bool) -> Result<Matrix> {
        let x = self.embeddings.forward(batch, &self.position_ids(batch))?;
        Ok(self.encoder.forward(x, &batch.cu_seqlens, first_token_only))
    }

    fn max_len(&self) -> usize {
        self.cfg
            .max_position_embeddings
            .saturating_sub(self.padding_idx as usize + 1)
    }
}

impl TextEncoder for XlmRobertaModel {
    fn kind(&self) -> ModelKind {
        ModelKind::XlmRoberta
    }

    fn hidden_size(&self) -> usize {
        self.cfg.encoder.hidden_size
    }

    fn max_sequence_length(&self) -> usize {
        self.max_len()
    }

    fn hidden_states(&self, batch: &PackedBatch) -> Result<Matrix> {
        self.forward(batch, false)
    }

    fn first_token_states(&self, batch: &PackedBatch) -> Result<Matrix> {
        self.forward(batch, true)
    }
}

/// `XLMRobertaForSequenceClassification`: the BGE rerankers.
pub struct XlmRobertaForSequenceClassification {
    roberta: XlmRobertaModel,
    dense: Linear,
    out_proj: ClassifierHead,
}

impl XlmRobertaForSequenceClassification {
    /// Loads `roberta.*` and `classifier.{dense,out_proj}.*`.
    pub fn load(weights: &Weights, cfg: &BertConfig) -> Result<Self> {
        let h = cfg.encoder.hidden_size;
        let head = weights.pp("classifier");
        Ok(Self {
            roberta: XlmRobertaModel::load(&weights.pp("roberta"), cfg)?,
            dense: Linear::load_as(&head.pp("dense"), h, h, Dtype::F32)?,
            out_proj: ClassifierHead::load(weights, &head.pp("out_proj"), h)?,
        })
    }
}

impl CrossEncoder for XlmRobertaForSequenceClassification {
    fn kind(&self) -> ModelKind {
        ModelKind::XlmRoberta
    }

    fn forward_flops(&self, tokens: usize) -> f64 {
        crate::models::forward_flops(&self.roberta.cfg.encoder, tokens)
    }

    fn max_sequence_length(&self) -> usize {
        self.roberta.max_len()
    }

    fn score(&self, batch: &PackedBatch) -> Result<Vec<f32>> {
        let first = self.roberta.forward(batch, true)?;
        let mut x = self.dense.forward(&first);
        x.data.iter_mut().for_each(|v| *v = v.tanh());
        Ok(self.out_proj.forward(&x))
    }
}
