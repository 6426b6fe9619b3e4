//! Packed (unpadded) batches of token sequences.

use crate::error::{ModelError, Result};

/// Token sequences packed end to end, without padding.
///
/// Sequence `i` occupies rows `cu_seqlens[i]..cu_seqlens[i + 1]` of every per-token matrix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedBatch {
    /// Token ids of all sequences, concatenated.
    pub input_ids: Vec<u32>,
    /// Token type (segment) ids, parallel to `input_ids`.
    pub token_type_ids: Vec<u32>,
    /// Cumulative sequence lengths: `len() == sequences + 1`, starts at 0.
    pub cu_seqlens: Vec<usize>,
    /// LLM rerankers: where the passage lies in each sequence (one per sequence, or empty
    /// when the batch was built without them; token compression needs them).
    pub spans: Vec<PromptSpan>,
}

/// Where the passage lies in an LLM reranker's sequence: `head` tokens before it (`bos +
/// query + sep`) and `tail` after it (`sep + prompt`); the rest is the passage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromptSpan {
    /// Tokens before the passage.
    pub head: usize,
    /// Tokens after the passage.
    pub tail: usize,
}

impl PackedBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self {
            cu_seqlens: vec![0],
            ..Self::default()
        }
    }

    /// Appends one sequence; `token_type_ids` must be as long as `input_ids`.
    pub fn push(&mut self, input_ids: &[u32], token_type_ids: &[u32]) -> Result<()> {
        if input_ids.len() != token_type_ids.len() {
            return Err(ModelError::Input(format!(
                "sequence has {} ids but {} token type ids",
                input_ids.len(),
                token_type_ids.len()
            )));
        }
        if input_ids.is_empty() {
            return Err(ModelError::Input("empty token sequence".into()));
        }
        if self.cu_seqlens.is_empty() {
            self.cu_seqlens.push(0);
        }
        self.input_ids.extend_from_slice(input_ids);
        self.token_type_ids.extend_from_slice(token_type_ids);
        self.cu_seqlens.push(self.input_ids.len());
        Ok(())
    }

    /// Appends one LLM sequence (token types 0) with its passage span.
    pub fn push_with_span(&mut self, input_ids: &[u32], span: PromptSpan) -> Result<()> {
        if span.head + span.tail > input_ids.len() {
            return Err(ModelError::Input(format!(
                "prompt span {span:?} is longer than the sequence ({} tokens)",
                input_ids.len()
            )));
        }
        if self.spans.len() != self.len() {
            return Err(ModelError::Input(
                "cannot mix sequences with and without prompt spans".into(),
            ));
        }
        self.push(input_ids, &vec![0; input_ids.len()])?;
        self.spans.push(span);
        Ok(())
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.cu_seqlens.len().saturating_sub(1)
    }

    /// True when the batch holds no sequence.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total number of tokens.
    pub fn total_tokens(&self) -> usize {
        self.input_ids.len()
    }

    /// Row range of sequence `i`.
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.cu_seqlens[i]..self.cu_seqlens[i + 1]
    }

    /// Row index of the first token of every sequence.
    pub fn first_token_rows(&self) -> Vec<usize> {
        self.cu_seqlens[..self.len()].to_vec()
    }

    /// Length of the longest sequence.
    pub fn max_seqlen(&self) -> usize {
        self.cu_seqlens
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_tracks_offsets() {
        let mut b = PackedBatch::new();
        b.push(&[0, 5, 2], &[0, 0, 0]).unwrap();
        b.push(&[0, 2], &[0, 1]).unwrap();
        assert_eq!(b.cu_seqlens, vec![0, 3, 5]);
        assert_eq!(b.len(), 2);
        assert_eq!(b.range(1), 3..5);
        assert_eq!(b.first_token_rows(), vec![0, 3]);
        assert_eq!(b.max_seqlen(), 3);
    }

    #[test]
    fn push_rejects_mismatched_and_empty() {
        let mut b = PackedBatch::new();
        assert!(b.push(&[1, 2], &[0]).is_err());
        assert!(b.push(&[], &[]).is_err());
        assert!(b.is_empty());
    }
}
