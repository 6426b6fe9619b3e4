//! Token compression of the lightweight LLM reranker (FlagEmbedding's `token_compress`): the
//! passage tokens of each sequence are averaged in consecutive groups of `ratio` (the last
//! group averages what it has); the tokens before the passage (`bos + query + sep`) and after
//! it (`sep + prompt`) are kept. Positions restart at 0 in the shorter sequences, so every
//! later layer works on fewer rows.

use rayon::prelude::*;

use crate::batch::PromptSpan;
use crate::error::{ModelError, Result};
use crate::layers::Matrix;

/// Compresses the packed hidden states `x` (sequences at `cu_seqlens`, passages where `spans`
/// say) and returns the new states and offsets.
pub fn compress_passages(
    x: &Matrix,
    cu_seqlens: &[usize],
    spans: &[PromptSpan],
    ratio: usize,
) -> Result<(Matrix, Vec<usize>)> {
    let sequences = cu_seqlens.len().saturating_sub(1);
    if spans.len() != sequences {
        return Err(ModelError::Input(format!(
            "token compression needs the prompt span of each sequence ({} spans for {sequences} \
             sequences)",
            spans.len()
        )));
    }
    let ratio = ratio.max(1);
    let mut new_cu = Vec::with_capacity(cu_seqlens.len());
    new_cu.push(0);
    for (w, span) in cu_seqlens.windows(2).zip(spans) {
        let passage = passage_len(w[1] - w[0], span)?;
        let kept = span.head + passage.div_ceil(ratio) + span.tail;
        new_cu.push(new_cu.last().copied().unwrap_or(0) + kept);
    }
    let h = x.cols;
    let mut out = Matrix::zeros(new_cu.last().copied().unwrap_or(0), h);
    let mut chunks: Vec<&mut [f32]> = Vec::with_capacity(sequences);
    let mut rest = out.data.as_mut_slice();
    for w in new_cu.windows(2) {
        let (mine, tail) = rest.split_at_mut((w[1] - w[0]) * h);
        chunks.push(mine);
        rest = tail;
    }
    chunks.into_par_iter().enumerate().for_each(|(s, dst)| {
        compress_one(x, cu_seqlens[s], cu_seqlens[s + 1], spans[s], ratio, dst)
    });
    Ok((out, new_cu))
}

/// Passage tokens of a sequence of `len` tokens.
fn passage_len(len: usize, span: &PromptSpan) -> Result<usize> {
    len.checked_sub(span.head + span.tail).ok_or_else(|| {
        ModelError::Input(format!(
            "prompt span {span:?} is longer than its sequence ({len} tokens)"
        ))
    })
}

/// Writes one compressed sequence (rows `start..end` of `x`) into `dst`.
fn compress_one(
    x: &Matrix,
    start: usize,
    end: usize,
    span: PromptSpan,
    ratio: usize,
    dst: &mut [f32],
) {
    let h = x.cols;
    let rows = |a: usize, b: usize| &x.data[a * h..b * h];
    let passage_start = start + span.head;
    let passage_end = end - span.tail;
    let head_len = span.head * h;
    dst[..head_len].copy_from_slice(rows(start, passage_start));
    let mut at = head_len;
    let mut group = passage_start;
    while group < passage_end {
        let group_end = (group + ratio).min(passage_end);
        // FlagEmbedding multiplies each row by 1/count, then sums.
        let weight = 1.0 / (group_end - group) as f32;
        let out = &mut dst[at..at + h];
        for r in group..group_end {
            out.iter_mut()
                .zip(x.row(r))
                .for_each(|(o, v)| *o += v * weight);
        }
        at += h;
        group = group_end;
    }
    dst[at..].copy_from_slice(rows(passage_end, end));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_passage_groups_and_keeps_query_and_prompt() {
        // Two sequences, hidden 1: [q q | p p p p p | t] and [q | p p | t t].
        let x = Matrix::from_vec(
            vec![1., 2., 10., 20., 30., 40., 50., 7., 3., 4., 6., 8., 9.],
            13,
            1,
        );
        let cu = [0, 8, 13];
        let spans = [
            PromptSpan { head: 2, tail: 1 },
            PromptSpan { head: 1, tail: 2 },
        ];
        let (out, new_cu) = compress_passages(&x, &cu, &spans, 2).unwrap();
        assert_eq!(new_cu, [0, 6, 10]);
        assert_eq!(out.data, [1., 2., 15., 35., 50., 7., 3., 5., 8., 9.]);
        let (same, cu4) = compress_passages(&x, &cu, &spans, 1).unwrap();
        assert_eq!((same.data, cu4), (x.data.clone(), cu.to_vec()));
        let (out8, cu8) = compress_passages(&x, &cu, &spans, 8).unwrap();
        assert_eq!(cu8, [0, 4, 8]);
        assert_eq!(out8.data, [1., 2., 30., 7., 3., 5., 8., 9.]);
    }

    #[test]
    fn empty_passage_and_missing_spans() {
        let x = Matrix::from_vec(vec![1., 2., 3.], 3, 1);
        let spans = [PromptSpan { head: 2, tail: 1 }];
        let (out, cu) = compress_passages(&x, &[0, 3], &spans, 4).unwrap();
        assert_eq!((out.data, cu), (vec![1., 2., 3.], vec![0, 3]));
        assert!(compress_passages(&x, &[0, 3], &[], 2).is_err());
        let long = [PromptSpan { head: 3, tail: 1 }];
        assert!(compress_passages(&x, &[0, 3], &long, 2).is_err());
    }
}
