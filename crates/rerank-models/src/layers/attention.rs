//! Multi-head self-attention over packed sequences: each (sequence, head) pair is computed on its
//! own, so no padded `[batch, max_len, max_len]` tensor is ever built.
//!
//! One function serves the encoders (bidirectional, as many key/value heads as query heads) and
//! the decoders (causal, grouped-query or multi-query, optional sliding window and logit
//! soft-capping), described by an [`AttentionSpec`].

use gemm::Parallelism;
use rayon::prelude::*;

use crate::kernels::{self, attention::HeadIo, OutPtr};
use crate::layers::fastmath::softmax_inplace;
use crate::layers::prefix::Packing;
use crate::layers::Matrix;

/// Which query rows attention is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryRows {
    /// Every token (an ordinary layer).
    All,
    /// Only the first token of each sequence (a classifier's last layer needs nothing else).
    FirstOnly,
    /// Only the last token of each sequence (a decoder's last layer, read at the last token).
    LastOnly,
}

/// The shape and masking of one attention layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSpec {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; query head `h` reads key/value head `h / (heads / kv_heads)`.
    pub kv_heads: usize,
    /// Values per head (`heads · head_dim` may differ from the model width).
    pub head_dim: usize,
    /// Factor on `q·k` before the softmax (usually `head_dim^−½`).
    pub scale: f32,
    /// Token `i` sees only keys `j ≤ i` of its sequence.
    pub causal: bool,
    /// With `causal`: token `i` sees only keys `j > i − window` as well.
    pub sliding_window: Option<usize>,
    /// `cap · tanh(logit / cap)` on the scaled logits before the mask and softmax.
    pub softcap: Option<f32>,
}

impl AttentionSpec {
    /// BERT-style attention: `heads` heads splitting `hidden`, every token sees every token.
    pub fn bidirectional(hidden: usize, heads: usize) -> Self {
        let head_dim = hidden / heads.max(1);
        Self {
            heads,
            kv_heads: heads,
            head_dim,
            scale: 1.0 / (head_dim as f32).sqrt(),
            causal: false,
            sliding_window: None,
            softcap: None,
        }
    }

    /// Decoder attention: causal, `head_dim^−½` scale, no window or cap.
    pub fn causal(heads: usize, kv_heads: usize, head_dim: usize) -> Self {
        Self {
            kv_heads,
            causal: true,
            ..Self::bidirectional(heads * head_dim, heads)
        }
    }

    /// Width of the query block of a fused `[Q | K | V]` row.
    pub fn q_width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Width of the key (and of the value) block.
    pub fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Width of a fused `[Q | K | V]` row.
    pub fn qkv_width(&self) -> usize {
        self.q_width() + 2 * self.kv_width()
    }

    /// Checks that the sizes and options fit together.
    pub fn validate(&self) -> Result<(), String> {
        if self.heads == 0 || self.kv_heads == 0 || self.head_dim == 0 {
            return Err("attention needs at least one head of at least one value".into());
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.heads, self.kv_heads
            ));
        }
        if self.sliding_window == Some(0) {
            return Err("sliding_window must be at least 1".into());
        }
        if self.sliding_window.is_some() && !self.causal {
            return Err("a sliding window needs causal attention".into());
        }
        if self.softcap.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            return Err(format!(
                "the attention soft-cap must be positive, not {:?}",
                self.softcap
            ));
        }
        Ok(())
    }

    /// True when the AVX-512 head kernel computes exactly this attention.
    fn plain(&self) -> bool {
        !self.causal && self.softcap.is_none() && self.scale == 1.0 / (self.head_dim as f32).sqrt()
    }

    /// The keys query position `i` sees: `lo..=i` (causal) or everything.
    fn visible(&self, i: usize, n: usize) -> std::ops::Range<usize> {
        if !self.causal {
            return 0..n;
        }
        let lo = self.sliding_window.map_or(0, |w| (i + 1).saturating_sub(w));
        lo..i + 1
    }
}

/// Scaled dot-product attention, BERT-style (see [`attention`]).
///
/// `qkv` is `[total_tokens, 3·hidden]` with the columns `[Q | K | V]`, each split into `heads`
/// heads of `hidden / heads` columns. Returns `[total_tokens, hidden]`, or `[sequences, hidden]`
/// with [`QueryRows::FirstOnly`].
pub fn packed_attention(
    qkv: &Matrix,
    cu_seqlens: &[usize],
    heads: usize,
    rows: QueryRows,
) -> Matrix {
    attention(
        qkv,
        cu_seqlens,
        &AttentionSpec::bidirectional(qkv.cols / 3, heads),
        rows,
    )
}

/// Attention over packed sequences as `spec` describes it.
///
/// `qkv` is `[total_tokens, spec.qkv_width()]` with the columns `[Q | K | V]` (query heads, then
/// key heads, then value heads, `head_dim` columns each), positions already encoded. Returns
/// `[total_tokens, heads · head_dim]`, or one row per sequence with [`QueryRows::FirstOnly`] or
/// [`QueryRows::LastOnly`]. Tasks are the (sequence, head) pairs, spread over rayon's pool.
pub fn attention(
    qkv: &Matrix,
    cu_seqlens: &[usize],
    spec: &AttentionSpec,
    rows: QueryRows,
) -> Matrix {
    attention_packed(qkv, &Packing::plain(cu_seqlens), spec, rows)
}

/// [`attention`] over sequences of which some continue another (a shared head, see
/// [`Packing`]): a continuation's queries sit at positions after its head's and see the head's
/// keys and values before their own (the causal mask and window in those positions).
pub fn attention_packed(
    qkv: &Matrix,
    packing: &Packing,
    spec: &AttentionSpec,
    rows: QueryRows,
) -> Matrix {
    let cu_seqlens = packing.cu_seqlens;
    assert_eq!(qkv.cols, spec.qkv_width(), "fused QKV width");
    let width = spec.q_width();
    let (head_dim, group) = (spec.head_dim, spec.heads / spec.kv_heads.max(1));
    let sequences = cu_seqlens.len() - 1;
    let out_rows = match rows {
        QueryRows::All => qkv.rows,
        QueryRows::FirstOnly | QueryRows::LastOnly => sequences,
    };
    // Not zeroed: the heads write every value (their columns of their rows) before set_len.
    let mut out: Vec<f32> = Vec::with_capacity(out_rows * width);
    let out_ptr = OutPtr(out.as_mut_ptr());
    let fast = spec.plain() && kernels::attention::supported(head_dim);
    let tasks: Vec<(usize, usize)> = (0..sequences)
        .flat_map(|s| (0..spec.heads).map(move |h| (s, h)))
        .collect();
    tasks.par_iter().for_each(|&(s, h)| {
        let (start, end) = (cu_seqlens[s], cu_seqlens[s + 1]);
        let n = end - start;
        // (first query position within the sequence, query count, first output row)
        let (first_query, n_queries, out_row) = match rows {
            QueryRows::All => (0, n, start),
            QueryRows::FirstOnly => (0, 1, s),
            QueryRows::LastOnly => (n - 1, 1, s),
        };
        let kv_col = width + (h / group) * head_dim;
        let v_col = kv_col + spec.kv_width();
        // A continuation's keys: its head's rows, then its own, copied side by side so the
        // arithmetic is that of the whole sequence.
        let joined = packing.prefix_rows(s).map(|head| {
            let rows = head.chain(start..end);
            let copy = |col: usize| -> Vec<f32> {
                rows.clone()
                    .flat_map(|r| &qkv.row(r)[col..col + head_dim])
                    .copied()
                    .collect()
            };
            (copy(kv_col), copy(v_col))
        });
        // SAFETY: this task alone writes output rows out_row..out_row + n_queries, columns
        // h·head_dim..(h + 1)·head_dim; every pointer below stays inside `qkv`, `joined` or
        // `out`.
        unsafe {
            let base = qkv.data.as_ptr().add(start * qkv.cols);
            let io = HeadIo {
                q: base.add(first_query * qkv.cols + h * head_dim),
                k: base.add(kv_col),
                v: base.add(v_col),
                qkv_stride: qkv.cols,
                n,
                n_queries,
                head_dim,
                out: out_ptr.at(out_row * width + h * head_dim),
                out_stride: width,
            };
            match &joined {
                None if fast => kernels::attention::attend_head(&io),
                None => {
                    let keys = KeyRows {
                        k: io.k,
                        v: io.v,
                        stride: qkv.cols,
                        n,
                    };
                    attend_one_head(&io, &keys, spec, first_query);
                }
                Some((k, v)) => {
                    let keys = KeyRows {
                        k: k.as_ptr(),
                        v: v.as_ptr(),
                        stride: head_dim,
                        n: k.len() / head_dim,
                    };
                    let offset = keys.n - n;
                    attend_one_head(&io, &keys, spec, offset + first_query);
                }
            }
        }
    });
    // SAFETY: the (sequence, head) tasks covered every output row and all `heads · head_dim`
    // columns.
    unsafe { out.set_len(out_rows * width) };
    Matrix::from_vec(out, out_rows, width)
}

/// Query rows per block of the portable path: a causal block only multiplies the keys its
/// rows can see.
const QUERY_BLOCK: usize = 64;

/// The keys and values one head reads: `n` rows of `head_dim` values at `stride`, key `j` at
/// position `j`.
struct KeyRows {
    k: *const f32,
    v: *const f32,
    stride: usize,
    n: usize,
}

/// One head of one sequence with the `gemm` crate (the portable path):
/// `softmax(mask(cap(scale·Q·Kᵀ)))·V` for the `io.n_queries` queries at positions
/// `first_query..` (`io.q` points at the first of them) over `keys`, written into `io.out`.
///
/// # Safety
/// The same contract as [`kernels::attention::attend_head`] for the queries and outputs,
/// without its CPU requirement; `keys` addresses `keys.n` rows at `keys.stride`.
unsafe fn attend_one_head(io: &HeadIo, keys: &KeyRows, spec: &AttentionSpec, first_query: usize) {
    let (n, d) = (keys.n, io.head_dim);
    let (q_stride, kv_stride) = (io.qkv_stride as isize, keys.stride as isize);
    let mut scores = Vec::new();
    // Blocks on a grid of positions (not of query rows), so a continuation's sums run in the
    // same order as the whole sequence's.
    let end = first_query + io.n_queries;
    let mut p0 = first_query;
    while p0 < end {
        let block_end = ((p0 / QUERY_BLOCK + 1) * QUERY_BLOCK).min(end);
        let (r0, rows, p1) = (p0 - first_query, block_end - p0, block_end - 1);
        // Keys any row of the block sees.
        let seen = spec.visible(p0, n).start..spec.visible(p1, n).end;
        let width = seen.len();
        scores.clear();
        scores.resize(rows * width, 0.0f32);
        // `scores` is [rows, width] row-major.
        gemm::gemm(
            rows,
            width,
            d,
            scores.as_mut_ptr(),
            1,
            width as isize,
            false,
            io.q.offset(r0 as isize * q_stride),
            1,
            q_stride,
            keys.k.offset(seen.start as isize * kv_stride),
            kv_stride,
            1,
            0.0,
            spec.scale,
            false,
            false,
            false,
            Parallelism::None,
        );
        for (r, row) in scores.chunks_exact_mut(width).enumerate() {
            let visible = spec.visible(p0 + r, n);
            let (lo, hi) = (visible.start - seen.start, visible.end - seen.start);
            if let Some(cap) = spec.softcap {
                row[lo..hi]
                    .iter_mut()
                    .for_each(|v| *v = cap * (*v / cap).tanh());
            }
            softmax_inplace(&mut row[lo..hi]);
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
        }
        // The context goes straight into the output rows (stride `out_stride`), which gemm
        // writes without reading (`read_dst` false).
        gemm::gemm(
            rows,
            d,
            width,
            io.out.add(r0 * io.out_stride),
            1,
            io.out_stride as isize,
            false,
            scores.as_ptr(),
            1,
            width as isize,
            keys.v.offset(seen.start as isize * kv_stride),
            1,
            kv_stride,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
        p0 = block_end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive attention for one sequence, all heads.
    fn naive(qkv: &Matrix, start: usize, end: usize, heads: usize) -> Vec<Vec<f32>> {
        let hidden = qkv.cols / 3;
        let d = hidden / heads;
        let mut out = vec![vec![0.0; hidden]; end - start];
        for h in 0..heads {
            for i in start..end {
                let q = &qkv.row(i)[h * d..(h + 1) * d];
                let mut w: Vec<f32> = (start..end)
                    .map(|j| {
                        let k = &qkv.row(j)[hidden + h * d..hidden + (h + 1) * d];
                        q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() / (d as f32).sqrt()
                    })
                    .collect();
                softmax_inplace(&mut w);
                for (jj, j) in (start..end).enumerate() {
                    let v = &qkv.row(j)[2 * hidden + h * d..2 * hidden + (h + 1) * d];
                    for c in 0..d {
                        out[i - start][h * d + c] += w[jj] * v[c];
                    }
                }
            }
        }
        out
    }

    /// Checks both query modes against [`naive`] on every sequence of `cu`.
    fn check(heads: usize, hidden: usize, cu: &[usize]) {
        let tokens = *cu.last().unwrap();
        let data: Vec<f32> = (0..tokens * 3 * hidden)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let qkv = Matrix::from_vec(data, tokens, 3 * hidden);
        let all = packed_attention(&qkv, cu, heads, QueryRows::All);
        let first = packed_attention(&qkv, cu, heads, QueryRows::FirstOnly);
        for s in 0..cu.len() - 1 {
            let want = naive(&qkv, cu[s], cu[s + 1], heads);
            for (i, row) in want.iter().enumerate() {
                for (a, b) in all.row(cu[s] + i).iter().zip(row) {
                    assert!((a - b).abs() < 1e-5, "{heads}×{hidden}: {a} vs {b}");
                }
            }
            for (a, b) in first.row(s).iter().zip(&want[0]) {
                assert!((a - b).abs() < 1e-5, "{heads}×{hidden} first: {a} vs {b}");
            }
        }
    }

    #[test]
    fn packed_matches_naive_per_sequence() {
        // Head size 2: the portable (gemm crate) path.
        check(2, 4, &[0, 3, 5]);
    }

    #[test]
    fn head_kernel_matches_naive_on_ragged_sequences() {
        // Head sizes 64 and 32 take the AVX-512 kernel where the CPU has it; 70 tokens leave
        // partial row tiles and a partial column vector, 1 token a lone row.
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            kernels::attention::supported(64),
            std::arch::is_x86_feature_detected!("avx512f")
        );
        check(2, 128, &[0, 70, 75, 76]);
        check(3, 96, &[0, 33, 99]);
        check(1, 128, &[0, 130]);
    }

    /// Naive masked attention for one sequence of a fused GQA matrix: every query row, f64.
    fn naive_spec(qkv: &Matrix, start: usize, end: usize, spec: &AttentionSpec) -> Vec<Vec<f32>> {
        let (d, qw, kw) = (spec.head_dim, spec.q_width(), spec.kv_width());
        let group = spec.heads / spec.kv_heads;
        let n = end - start;
        let mut out = vec![vec![0.0f32; qw]; n];
        for h in 0..spec.heads {
            let kh = h / group;
            for (i, out_row) in out.iter_mut().enumerate() {
                let q = &qkv.row(start + i)[h * d..(h + 1) * d];
                let seen: Vec<usize> = (0..n)
                    .filter(|&j| {
                        !spec.causal || (j <= i && spec.sliding_window.is_none_or(|w| j + w > i))
                    })
                    .collect();
                let logits: Vec<f64> = seen
                    .iter()
                    .map(|&j| {
                        let k = &qkv.row(start + j)[qw + kh * d..qw + (kh + 1) * d];
                        let x: f64 = q.iter().zip(k).map(|(a, b)| f64::from(a * b)).sum();
                        let x = x * f64::from(spec.scale);
                        match spec.softcap {
                            Some(c) => f64::from(c) * (x / f64::from(c)).tanh(),
                            None => x,
                        }
                    })
                    .collect();
                let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                let sum: f64 = w.iter().sum();
                for (wj, &j) in w.iter().zip(&seen) {
                    let v = &qkv.row(start + j)[qw + kw + kh * d..qw + kw + (kh + 1) * d];
                    for (o, x) in out_row[h * d..(h + 1) * d].iter_mut().zip(v) {
                        *o += (wj / sum * f64::from(*x)) as f32;
                    }
                }
            }
        }
        out
    }

    /// Checks all three query modes of [`attention`] against [`naive_spec`].
    fn check_spec(spec: AttentionSpec, cu: &[usize]) {
        spec.validate().unwrap();
        let tokens = *cu.last().unwrap();
        let cols = spec.qkv_width();
        let data: Vec<f32> = (0..tokens * cols)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let qkv = Matrix::from_vec(data, tokens, cols);
        let all = attention(&qkv, cu, &spec, QueryRows::All);
        let first = attention(&qkv, cu, &spec, QueryRows::FirstOnly);
        let last = attention(&qkv, cu, &spec, QueryRows::LastOnly);
        assert_eq!((all.rows, all.cols), (tokens, spec.q_width()));
        let close = |a: &[f32], b: &[f32], what: &str| {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 2e-5, "{spec:?} {what}: {x} vs {y}");
            }
        };
        for s in 0..cu.len() - 1 {
            let want = naive_spec(&qkv, cu[s], cu[s + 1], &spec);
            for (i, row) in want.iter().enumerate() {
                close(all.row(cu[s] + i), row, "all");
            }
            close(first.row(s), &want[0], "first");
            close(last.row(s), want.last().unwrap(), "last");
        }
    }

    #[test]
    fn causal_gqa_matches_naive_on_ragged_packed_sequences() {
        // Ragged lengths around the 64-row query block, a single token, GQA (4 heads on 2),
        // MQA (3 on 1) and plain multi-head, with and without window and soft-cap.
        let cu = [0, 1, 70, 75, 205];
        check_spec(AttentionSpec::causal(4, 2, 8), &cu);
        check_spec(AttentionSpec::causal(3, 1, 6), &cu);
        check_spec(AttentionSpec::causal(2, 2, 4), &cu);
        check_spec(
            AttentionSpec {
                scale: 0.3,
                sliding_window: Some(5),
                ..AttentionSpec::causal(4, 2, 8)
            },
            &cu,
        );
        check_spec(
            AttentionSpec {
                sliding_window: Some(100),
                softcap: Some(2.0),
                ..AttentionSpec::causal(4, 1, 8)
            },
            &cu,
        );
        // Bidirectional with GQA and a soft-cap (the portable path).
        check_spec(
            AttentionSpec {
                kv_heads: 1,
                softcap: Some(1.5),
                ..AttentionSpec::bidirectional(16, 2)
            },
            &cu,
        );
    }

    #[test]
    fn spec_validation_names_the_problem() {
        let bad = AttentionSpec::causal(6, 4, 8).validate().unwrap_err();
        assert!(bad.contains("not a multiple"), "{bad}");
        let window = AttentionSpec {
            sliding_window: Some(4),
            ..AttentionSpec::bidirectional(16, 2)
        };
        assert!(window.validate().unwrap_err().contains("causal"));
    }
}
