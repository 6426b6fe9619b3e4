//! The BERT-style post-norm transformer encoder shared by BERT and (XLM-)RoBERTa.

use serde::Deserialize;

use rayon::prelude::*;

use crate::error::{ModelError, Result};
use crate::layers::attention::{packed_attention, QueryRows};
use crate::layers::{Activation, LayerNorm, Linear, Matrix};
use crate::weights::Vb;

/// The encoder fields of a BERT/RoBERTa `config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct EncoderConfig {
    /// Width of every token vector.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    #[serde(default)]
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

impl EncoderConfig {
    /// Checks that the sizes fit together.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        Ok(())
    }
}

/// One encoder layer: self-attention and feed-forward, each followed by residual + LayerNorm.
struct EncoderLayer {
    qkv: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: usize,
    activation: Activation,
}

impl EncoderLayer {
    fn load(vb: &Vb, cfg: &EncoderConfig) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let attn = vb.pp("attention");
        let this = attn.pp("self");
        Ok(Self {
            qkv: Linear::load_stacked(&[this.pp("query"), this.pp("key"), this.pp("value")], h, h)?,
            attention_output: Linear::load(&attn.pp("output").pp("dense"), h, h)?,
            attention_norm: LayerNorm::load(
                &attn.pp("output").pp("LayerNorm"),
                h,
                cfg.layer_norm_eps,
            )?,
            intermediate: Linear::load(&vb.pp("intermediate").pp("dense"), h, i)?,
            output: Linear::load(&vb.pp("output").pp("dense"), i, h)?,
            output_norm: LayerNorm::load(&vb.pp("output").pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            heads: cfg.num_attention_heads,
            activation: cfg.hidden_act,
        })
    }

    /// Runs the layer on whole sequences; with [`QueryRows::FirstOnly`] the output has one row
    /// per sequence.
    fn forward(&self, x: &Matrix, cu_seqlens: &[usize], rows: QueryRows) -> Matrix {
        let qkv = self.qkv.forward(x);
        let context = packed_attention(&qkv, cu_seqlens, self.heads, rows);
        drop(qkv);
        let mut hidden = self.attention_output.forward(&context);
        match query_rows(cu_seqlens, rows) {
            None => self.attention_norm.add_forward_inplace(&mut hidden, x),
            Some(selected) => {
                self.attention_norm
                    .add_forward_inplace(&mut hidden, &x.select_rows(&selected));
            }
        }
        self.feed_forward(hidden)
    }

    /// `LayerNorm(x + W₂·act(W₁·x))` for a block of rows.
    fn feed_forward(&self, x: Matrix) -> Matrix {
        let inner = self.intermediate.forward_activated(&x, self.activation);
        let mut out = self.output.forward(&inner);
        self.output_norm.add_forward_inplace(&mut out, &x);
        out
    }
}

/// Tokens per block of whole sequences in [`blockwise`] (a longer sequence is a block of its
/// own).
pub(crate) const BLOCK_TOKENS: usize = 1024;

/// The rows of `x` that a layer computing `rows` keeps: `None` for all of them, else the first
/// or last token of each sequence of `cu_seqlens`.
pub(crate) fn query_rows(cu_seqlens: &[usize], rows: QueryRows) -> Option<Vec<usize>> {
    match rows {
        QueryRows::All => None,
        QueryRows::FirstOnly => Some(cu_seqlens[..cu_seqlens.len() - 1].to_vec()),
        QueryRows::LastOnly => Some(cu_seqlens[1..].iter().map(|c| c - 1).collect()),
    }
}

/// Runs `layer` on blocks of about [`BLOCK_TOKENS`] tokens of whole sequences and joins the
/// outputs, so a layer's intermediate activations (Q/K/V, attention, feed-forward) stay small
/// and in cache, and peak memory does not grow with the batch beyond input and output. Blocks
/// start only at the sequences `may_start(s)` allows (those that do not continue another, for
/// a [`crate::layers::Packing`]); `layer(block, first, local_cu)` gets the block, the index of
/// its first sequence and its own `cu_seqlens`, and returns one row per token or one per
/// sequence.
pub(crate) fn blockwise_where(
    x: &Matrix,
    cu_seqlens: &[usize],
    may_start: impl Fn(usize) -> bool,
    layer: impl Fn(&Matrix, usize, &[usize]) -> Matrix,
) -> Matrix {
    let blocks = sequence_blocks(cu_seqlens, BLOCK_TOKENS, may_start);
    if blocks.len() <= 1 {
        return layer(x, 0, cu_seqlens);
    }
    let outputs = blocks.into_iter().map(|range| {
        let (block, local) = sequence_block(x, cu_seqlens, range);
        layer(&block, range.0, &local)
    });
    stack_rows(outputs.collect(), x.cols)
}

/// Sequences `first..last` of a packed batch as a batch of their own: their rows, and their
/// `cu_seqlens` counted from 0.
fn sequence_block(
    x: &Matrix,
    cu_seqlens: &[usize],
    (first, last): (usize, usize),
) -> (Matrix, Vec<usize>) {
    let (start, end) = (cu_seqlens[first], cu_seqlens[last]);
    let rows = x.data[start * x.cols..end * x.cols].to_vec();
    let local = cu_seqlens[first..=last].iter().map(|c| c - start).collect();
    (Matrix::from_vec(rows, end - start, x.cols), local)
}

/// The rows of `parts`, one part after another (`cols` wide when there are no parts).
fn stack_rows(parts: Vec<Matrix>, cols: usize) -> Matrix {
    let rows = parts.iter().map(|m| m.rows).sum();
    let cols = parts.first().map_or(cols, |m| m.cols);
    let mut data = Vec::with_capacity(rows * cols);
    for part in parts {
        data.extend(part.data);
    }
    Matrix::from_vec(data, rows, cols)
}

/// Splits sequences `0..n` into consecutive runs `(first, last)` (sequences `first..last`) of
/// at most `budget` tokens each, or longer where no sequence in between may start a run
/// (`may_start`).
fn sequence_blocks(
    cu_seqlens: &[usize],
    budget: usize,
    may_start: impl Fn(usize) -> bool,
) -> Vec<(usize, usize)> {
    let n = cu_seqlens.len().saturating_sub(1);
    let mut blocks = Vec::new();
    let mut first = 0;
    for s in 1..n {
        if cu_seqlens[s + 1] - cu_seqlens[first] > budget && may_start(s) {
            blocks.push((first, s));
            first = s;
        }
    }
    if n > 0 {
        blocks.push((first, n));
    }
    blocks
}

/// A stack of encoder layers (`encoder.layer.N.*` in Hugging Face checkpoints).
pub struct TransformerEncoder {
    layers: Vec<EncoderLayer>,
}

impl TransformerEncoder {
    /// Loads `num_hidden_layers` layers from `vb` (the `encoder` prefix).
    pub fn load(vb: &Vb, cfg: &EncoderConfig) -> Result<Self> {
        cfg.validate().map_err(ModelError::Input)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::load(&vb.pp("layer").pp(i), cfg))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    /// Runs every layer over packed embeddings `[total_tokens, hidden]`.
    ///
    /// With `first_token_only`, the last layer computes only the first token of each sequence and
    /// the result is `[sequences, hidden]` — all a classification head reads.
    pub fn forward(&self, x: Matrix, cu_seqlens: &[usize], first_token_only: bool) -> Matrix {
        crate::runtime::on_pool(|| self.forward_layers(x, cu_seqlens, first_token_only))
    }

    /// Runs the layers block by block (see [`BLOCK_TOKENS`]), the blocks in parallel: each
    /// block goes through every layer on its own, so the engine threads share out whole blocks
    /// and wait for each other only at the end of the batch (inside a block, the GEMMs and
    /// attention still split their work, which idle threads steal). Per block, the arithmetic is
    /// that of a layer-by-layer pass over the batch.
    fn forward_layers(&self, x: Matrix, cu_seqlens: &[usize], first_token_only: bool) -> Matrix {
        let blocks = sequence_blocks(cu_seqlens, BLOCK_TOKENS, |_| true);
        if blocks.len() <= 1 {
            return self.forward_block(x, cu_seqlens, first_token_only);
        }
        let outputs: Vec<Matrix> = blocks
            .into_par_iter()
            .map(|range| {
                let (block, local) = sequence_block(&x, cu_seqlens, range);
                self.forward_block(block, &local, first_token_only)
            })
            .collect();
        stack_rows(outputs, x.cols)
    }

    /// Every layer over one block of whole sequences.
    fn forward_block(&self, mut x: Matrix, cu_seqlens: &[usize], first_token_only: bool) -> Matrix {
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            let rows = if first_token_only && i == last {
                QueryRows::FirstOnly
            } else {
                QueryRows::All
            };
            x = layer.forward(&x, cu_seqlens, rows);
        }
        if first_token_only && self.layers.is_empty() {
            x = x.select_rows(&cu_seqlens[..cu_seqlens.len() - 1]);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_blocks_respect_the_budget_and_cover_everything() {
        // Sequences of 3, 4, 2, 9 and 1 tokens.
        let cu = [0, 3, 7, 9, 18, 19];
        assert_eq!(
            sequence_blocks(&cu, 8, |_| true),
            vec![(0, 2), (2, 3), (3, 4), (4, 5)]
        );
        assert_eq!(
            sequence_blocks(&cu, 9, |_| true),
            vec![(0, 3), (3, 4), (4, 5)]
        );
        assert_eq!(sequence_blocks(&cu, 100, |_| true), vec![(0, 5)]);
        assert_eq!(
            sequence_blocks(&cu, 1, |_| true),
            vec![(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
        );
        assert!(sequence_blocks(&[0], 8, |_| true).is_empty());
        // A run may not start at sequences 1 and 4 (they continue the one before).
        let grouped = |s: usize| s != 1 && s != 4;
        assert_eq!(
            sequence_blocks(&cu, 8, grouped),
            vec![(0, 2), (2, 3), (3, 5)]
        );
    }
}
