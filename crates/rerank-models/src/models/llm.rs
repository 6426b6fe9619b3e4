//! Parts the decoder-only rerankers share: the scaled token embedding read from the mapped
//! table, and the layerwise score heads (one `Linear(hidden, 1)` per scorable layer).

use rayon::prelude::*;

use crate::batch::PackedBatch;
use crate::error::{ModelError, Result};
use crate::layers::encoder::BLOCK_TOKENS;
use crate::layers::fastmath::dot;
use crate::layers::{Decoder, Matrix, Packing, RmsNorm, SharedHeads};
use crate::layerwise::LayerPlan;
use crate::weights::{MappedTable, Weights};

/// The token embedding table, kept in the mapped file (a batch reads a few hundred of its
/// rows), and the factor each row is multiplied by.
pub(crate) struct ScaledEmbedding {
    table: MappedTable,
    scale: f32,
    hidden: usize,
}

impl ScaledEmbedding {
    /// `model.embed_tokens.weight` of `[vocab, hidden]`, rows × `scale`.
    pub(crate) fn load(weights: &Weights, vocab: usize, hidden: usize, scale: f32) -> Result<Self> {
        Ok(Self {
            table: weights
                .pp("model")
                .pp("embed_tokens")
                .get_table("weight", vocab, hidden)?,
            scale,
            hidden,
        })
    }

    /// The table itself (for a tied LM head).
    pub(crate) fn table(&self) -> &MappedTable {
        &self.table
    }

    /// `E[id] · scale` for every token of `batch`, rows decoded in parallel.
    pub(crate) fn forward(&self, batch: &PackedBatch) -> Result<Matrix> {
        let rows = self.table.rows();
        if let Some(&id) = batch.input_ids.iter().find(|&&id| id as usize >= rows) {
            return Err(ModelError::Input(format!(
                "token id {id} is out of range for a table of {rows} rows"
            )));
        }
        let h = self.hidden;
        let mut x = Matrix::zeros(batch.total_tokens(), h);
        x.data
            .par_chunks_mut(h)
            .zip(batch.input_ids.par_iter())
            .with_min_len(32)
            .for_each(|(out, &id)| {
                // In range (checked above), so the row is always added.
                let _ = self.table.add_row_to(id as usize, out);
                out.iter_mut().for_each(|v| *v *= self.scale);
            });
        Ok(x)
    }
}

/// Which head scores a cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadChoice {
    /// `lm_head[layer − first]` (MiniCPM layerwise).
    ByLayer,
    /// `lm_head[i]` for the i-th cutoff of the call, ascending (FlagEmbedding's lightweight
    /// Gemma-2: one cutoff always uses head 0).
    ByRank,
}

/// The per-layer score heads `lm_head.{i}.linear_head.weight` (`[1, hidden]`, no bias), and
/// the final norm applied before each.
pub(crate) struct LayerHeads {
    rows: Vec<Vec<f32>>,
    first: usize,
    step: usize,
    choice: HeadChoice,
    norm: RmsNorm,
    /// `cap · tanh(score / cap)` (Gemma-2's final logit soft-cap).
    softcap: Option<f32>,
}

impl LayerHeads {
    /// Loads `count` heads for the layers `first, first + step, …`.
    pub(crate) fn load(
        weights: &Weights,
        count: usize,
        (first, step): (usize, usize),
        hidden: usize,
        choice: HeadChoice,
        norm: RmsNorm,
    ) -> Result<Self> {
        let rows = (0..count)
            .map(|i| weights.get_f32(&format!("lm_head.{i}.linear_head.weight"), &[1, hidden]))
            .collect::<Result<_>>()?;
        Ok(Self {
            rows,
            first,
            step: step.max(1),
            choice,
            norm,
            softcap: None,
        })
    }

    /// Caps every score at `cap · tanh(score / cap)`.
    pub(crate) fn with_softcap(mut self, cap: Option<f32>) -> Self {
        self.softcap = cap;
        self
    }

    /// The scores of each cutoff of `plan` from the last-token states the decoder returned
    /// for it (`[sequences, hidden]` each).
    pub(crate) fn score(&self, plan: &LayerPlan, states: Vec<Matrix>) -> Result<Vec<Vec<f32>>> {
        plan.cutoffs
            .iter()
            .zip(states)
            .enumerate()
            .map(|(rank, (&layer, mut last))| {
                let index = match self.choice {
                    HeadChoice::ByLayer => (layer - self.first.min(layer)) / self.step,
                    HeadChoice::ByRank => rank,
                };
                let head = self.rows.get(index).ok_or_else(|| {
                    ModelError::Input(format!("no score head for cutoff layer {layer}"))
                })?;
                self.norm.forward_inplace(&mut last);
                Ok((0..last.rows)
                    .map(|r| {
                        let s = dot(last.row(r), head);
                        match self.softcap {
                            Some(cap) => (s / cap).tanh() * cap,
                            None => s,
                        }
                    })
                    .collect())
            })
            .collect()
    }
}

/// The scored path the layerwise rerankers share: scaled embedding, decoder run to the deepest
/// cutoff (compressing on the way), one head per cutoff.
pub(crate) struct LayerwiseDecoder {
    pub(crate) embed: ScaledEmbedding,
    pub(crate) decoder: Decoder,
    pub(crate) heads: LayerHeads,
}

impl LayerwiseDecoder {
    /// Raw scores at each cutoff of `plan` (`[cutoff][sequence]`).
    pub(crate) fn score_plan(
        &self,
        batch: &PackedBatch,
        plan: &LayerPlan,
    ) -> Result<Vec<Vec<f32>>> {
        if batch.is_empty() {
            return Ok(vec![Vec::new(); plan.cutoffs.len()]);
        }
        if plan.compress_ratio > 1 && batch.spans.len() != batch.len() {
            return Err(ModelError::Input(
                "token compression needs each sequence's prompt span (PackedBatch::push_with_span)"
                    .into(),
            ));
        }
        let states = last_token_states(&self.embed, &self.decoder, batch, plan)?;
        self.heads.score(plan, states)
    }
}

/// Embeds `batch` and runs `decoder` as `plan` says: the last-token state of every sequence at
/// each cutoff (`[sequences, hidden]` per cutoff). Sequences that start with the same prompt
/// head (one query's passages) share one run of it ([`SharedHeads`]), which is exact under
/// causal attention.
pub(crate) fn last_token_states(
    embed: &ScaledEmbedding,
    decoder: &Decoder,
    batch: &PackedBatch,
    plan: &LayerPlan,
) -> Result<Vec<Matrix>> {
    match SharedHeads::plan(batch, BLOCK_TOKENS)? {
        None => {
            let x = embed.forward(batch)?;
            let packing = Packing::plain(&batch.cu_seqlens);
            decoder.forward_plan(x, packing, &batch.spans, plan)
        }
        Some(shared) => {
            let x = embed.forward(&shared.batch)?;
            let states = decoder.forward_plan(x, shared.packing(), &shared.batch.spans, plan)?;
            Ok(states
                .iter()
                .map(|state| state.select_rows(&shared.scored))
                .collect())
        }
    }
}
