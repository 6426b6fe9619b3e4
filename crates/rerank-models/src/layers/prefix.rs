//! Shared prompt heads. An LLM reranker's sequences for one query all begin with the same
//! tokens (`bos + "A: " + query + sep`), and under causal attention those tokens' hidden states
//! do not depend on what follows them. So a batch whose sequences share a head can run that head
//! once, as a sequence of its own, and let each passage *continue* it: the continuation's
//! positions start where the head ends, and its attention reads the head's keys and values
//! before its own. The result is the same arithmetic on fewer rows.

use std::collections::HashMap;
use std::ops::Range;

use crate::batch::{PackedBatch, PromptSpan};
use crate::error::Result;

/// Packed sequences, some of which continue another sequence of the same batch (its shared
/// head, stored once).
#[derive(Debug, Clone, Copy)]
pub struct Packing<'a> {
    /// Cumulative lengths: sequence `s` owns rows `cu_seqlens[s]..cu_seqlens[s + 1]`.
    pub cu_seqlens: &'a [usize],
    /// Per sequence, the sequence it continues; empty when none continues another.
    pub prefix_of: &'a [Option<usize>],
}

impl<'a> Packing<'a> {
    /// Independent sequences, each starting at position 0.
    pub fn plain(cu_seqlens: &'a [usize]) -> Self {
        Self {
            cu_seqlens,
            prefix_of: &[],
        }
    }

    /// Number of sequences.
    pub fn sequences(&self) -> usize {
        self.cu_seqlens.len().saturating_sub(1)
    }

    /// The rows of the sequence that `s` continues, if any.
    pub fn prefix_rows(&self, s: usize) -> Option<Range<usize>> {
        let p = (*self.prefix_of.get(s)?)?;
        Some(self.cu_seqlens[p]..self.cu_seqlens[p + 1])
    }

    /// The position of sequence `s`'s first row (the length of what it continues).
    pub fn offset(&self, s: usize) -> usize {
        self.prefix_rows(s).map_or(0, |r| r.len())
    }

    /// The position of every row, in row order.
    pub fn positions(&self) -> Vec<usize> {
        (0..self.sequences())
            .flat_map(|s| {
                let first = self.offset(s);
                first..first + self.cu_seqlens[s + 1] - self.cu_seqlens[s]
            })
            .collect()
    }

    /// One past the largest position (what rotary tables must cover).
    pub fn positions_needed(&self) -> usize {
        (0..self.sequences())
            .map(|s| self.offset(s) + self.cu_seqlens[s + 1] - self.cu_seqlens[s])
            .max()
            .unwrap_or(0)
    }

    /// True when a block of whole sequences may start at `s`: `s` continues nothing (the
    /// continuations of a head follow it directly, so no later sequence reaches back past `s`).
    pub fn starts_group(&self, s: usize) -> bool {
        self.prefix_of.get(s).is_none_or(Option::is_none)
    }

    /// `prefix_of` for the sequences `first..last`, renumbered from `first` (the block must
    /// start a group, see [`Packing::starts_group`]).
    pub fn local_prefixes(&self, first: usize, last: usize) -> Vec<Option<usize>> {
        match self.prefix_of.get(first..last) {
            Some(prefixes) => prefixes.iter().map(|p| p.map(|p| p - first)).collect(),
            None => Vec::new(),
        }
    }
}

/// A batch rewritten so that sequences with the same prompt head share one copy of it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedHeads {
    /// Heads (as sequences of their own), each followed by the rest of every sequence that
    /// starts with it; sequences that share nothing are copied unchanged.
    pub batch: PackedBatch,
    /// Per sequence of `batch`, the head it continues.
    pub prefix_of: Vec<Option<usize>>,
    /// Per sequence of the original batch, the sequence of `batch` whose last token is its.
    pub scored: Vec<usize>,
}

impl SharedHeads {
    /// Rewrites `batch` (which must carry prompt spans) when at least two sequences start with
    /// the same head ids; `None` when nothing is shared. A head and its continuations stay
    /// within `budget` tokens (the decoder's block of whole sequences); more continuations
    /// start another copy of the head.
    pub fn plan(batch: &PackedBatch, budget: usize) -> Result<Option<Self>> {
        if batch.spans.len() != batch.len() || batch.len() < 2 {
            return Ok(None);
        }
        let ids = |s: usize| &batch.input_ids[batch.cu_seqlens[s]..batch.cu_seqlens[s + 1]];
        // Sequences by head, in order of first appearance; a head that is the whole sequence
        // (or empty) leaves nothing to share.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut by_head: HashMap<&[u32], usize> = HashMap::new();
        for (s, span) in batch.spans.iter().enumerate() {
            let seq = ids(s);
            if span.head == 0 || span.head >= seq.len() {
                groups.push(vec![s]);
                continue;
            }
            let group = *by_head.entry(&seq[..span.head]).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[group].push(s);
        }
        if groups.len() == batch.len() {
            return Ok(None);
        }
        let mut out = Self {
            batch: PackedBatch::new(),
            prefix_of: Vec::new(),
            scored: vec![0; batch.len()],
        };
        for group in groups {
            for chunk in chunks_within(&group, budget, |s| {
                (batch.spans[s].head, ids(s).len() - batch.spans[s].head)
            }) {
                out.push_chunk(batch, chunk)?;
            }
        }
        Ok(Some(out))
    }

    /// The packing to run `batch` with.
    pub fn packing(&self) -> Packing<'_> {
        Packing {
            cu_seqlens: &self.batch.cu_seqlens,
            prefix_of: &self.prefix_of,
        }
    }

    /// Appends the sequences `chunk` of `source` (all with the same head): as they are when
    /// alone, else the head once and the rest of each.
    fn push_chunk(&mut self, source: &PackedBatch, chunk: &[usize]) -> Result<()> {
        let ids = |s: usize| &source.input_ids[source.cu_seqlens[s]..source.cu_seqlens[s + 1]];
        if let [s] = chunk {
            self.scored[*s] = self.batch.len();
            self.prefix_of.push(None);
            return self.batch.push_with_span(ids(*s), source.spans[*s]);
        }
        let head_span = source.spans[chunk[0]].head;
        let head = self.batch.len();
        let whole_head = PromptSpan {
            head: head_span,
            tail: 0,
        };
        self.batch
            .push_with_span(&ids(chunk[0])[..head_span], whole_head)?;
        self.prefix_of.push(None);
        for &s in chunk {
            let tail = PromptSpan {
                head: 0,
                tail: source.spans[s].tail,
            };
            self.scored[s] = self.batch.len();
            self.prefix_of.push(Some(head));
            self.batch.push_with_span(&ids(s)[head_span..], tail)?;
        }
        Ok(())
    }
}

/// Splits a group into runs whose head plus continuations fit `budget` tokens (at least one
/// sequence per run); `sizes(s)` is `(head, rest)`.
fn chunks_within(
    group: &[usize],
    budget: usize,
    sizes: impl Fn(usize) -> (usize, usize),
) -> Vec<&[usize]> {
    let mut chunks = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, &s) in group.iter().enumerate() {
        let (head, rest) = sizes(s);
        if i > start && used + rest > budget {
            chunks.push(&group[start..i]);
            (start, used) = (i, 0);
        }
        if i == start {
            used = head;
        }
        used += rest;
    }
    if start < group.len() {
        chunks.push(&group[start..]);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seqs: &[(&[u32], usize, usize)]) -> PackedBatch {
        let mut b = PackedBatch::new();
        for (ids, head, tail) in seqs {
            b.push_with_span(
                ids,
                PromptSpan {
                    head: *head,
                    tail: *tail,
                },
            )
            .unwrap();
        }
        b
    }

    #[test]
    fn sequences_with_one_head_continue_one_copy_of_it() {
        let b = batch(&[
            (&[2, 5, 6, 10, 11, 9], 3, 1),
            (&[2, 7, 10, 12, 9], 2, 1),
            (&[2, 5, 6, 13, 9], 3, 1),
            (&[2, 5, 6], 3, 0),
        ]);
        let shared = SharedHeads::plan(&b, 1024).unwrap().unwrap();
        // Head [2, 5, 6] once, then both continuations; the others unchanged.
        assert_eq!(
            shared.batch.input_ids,
            vec![2, 5, 6, 10, 11, 9, 13, 9, 2, 7, 10, 12, 9, 2, 5, 6]
        );
        assert_eq!(shared.batch.cu_seqlens, vec![0, 3, 6, 8, 13, 16]);
        assert_eq!(shared.prefix_of, vec![None, Some(0), Some(0), None, None]);
        assert_eq!(shared.scored, vec![1, 3, 2, 4]);
        let packing = shared.packing();
        assert_eq!(
            packing.positions(),
            vec![0, 1, 2, 3, 4, 5, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2]
        );
        assert_eq!(packing.positions_needed(), 6);
        assert!(packing.starts_group(0) && !packing.starts_group(2) && packing.starts_group(3));
        assert_eq!(packing.local_prefixes(0, 3), vec![None, Some(0), Some(0)]);
        assert_eq!(shared.batch.spans[1], PromptSpan { head: 0, tail: 1 });
    }

    #[test]
    fn nothing_shared_leaves_the_batch_alone() {
        let b = batch(&[(&[2, 5, 9], 2, 1), (&[2, 6, 9], 2, 1)]);
        assert_eq!(SharedHeads::plan(&b, 1024).unwrap(), None);
        let mut no_spans = PackedBatch::new();
        no_spans.push(&[1, 2], &[0, 0]).unwrap();
        no_spans.push(&[1, 2], &[0, 0]).unwrap();
        assert_eq!(SharedHeads::plan(&no_spans, 1024).unwrap(), None);
    }

    #[test]
    fn a_large_group_repeats_its_head_per_budget() {
        let seqs: Vec<Vec<u32>> = (0..5).map(|i| vec![2, 5, 100 + i, 101, 9]).collect();
        let b = batch(
            &seqs
                .iter()
                .map(|s| (s.as_slice(), 2, 1))
                .collect::<Vec<_>>(),
        );
        // Head 2 + 3 per continuation: two continuations fit 8 tokens.
        let shared = SharedHeads::plan(&b, 8).unwrap().unwrap();
        assert_eq!(
            shared.prefix_of,
            vec![None, Some(0), Some(0), None, Some(3), Some(3), None]
        );
        assert_eq!(shared.scored, vec![1, 2, 4, 5, 6]);
        assert_eq!(shared.batch.len(), 7);
    }
}
