//! Multi-head self-attention over packed sequences: each (sequence, head) pair is computed on its
//! own, so no padded `[batch, max_len, max_len]` tensor is ever built.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::layers::fastmath::softmax_inplace;
use crate::layers::Matrix;

/// Which query rows attention is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryRows {
    /// Every token (an ordinary layer).
    All,
    /// Only the first token of each sequence (a classifier's last layer needs nothing else).
    FirstOnly,
}

/// Scaled dot-product attention.
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
    let hidden = qkv.cols / 3;
    let head_dim = hidden / heads;
    let sequences = cu_seqlens.len() - 1;
    let tasks: Vec<(usize, usize)> = (0..sequences)
        .flat_map(|s| (0..heads).map(move |h| (s, h)))
        .collect();
    let parts: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(s, h)| {
            let (start, end) = (cu_seqlens[s], cu_seqlens[s + 1]);
            let n_queries = match rows {
                QueryRows::All => end - start,
                QueryRows::FirstOnly => 1,
            };
            attend_one_head(qkv, start, end, n_queries, h * head_dim, head_dim)
        })
        .collect();
    let out_rows = match rows {
        QueryRows::All => qkv.rows,
        QueryRows::FirstOnly => sequences,
    };
    let mut out = Matrix::zeros(out_rows, hidden);
    for (&(s, h), part) in tasks.iter().zip(&parts) {
        let first_row = match rows {
            QueryRows::All => cu_seqlens[s],
            QueryRows::FirstOnly => s,
        };
        for (i, ctx_row) in part.chunks_exact(head_dim).enumerate() {
            let col = h * head_dim;
            out.row_mut(first_row + i)[col..col + head_dim].copy_from_slice(ctx_row);
        }
    }
    out
}

/// One head of one sequence: `softmax(Q·Kᵀ/√d)·V` for the first `n_queries` tokens.
fn attend_one_head(
    qkv: &Matrix,
    start: usize,
    end: usize,
    n_queries: usize,
    head_col: usize,
    head_dim: usize,
) -> Vec<f32> {
    let n = end - start;
    let hidden = qkv.cols / 3;
    let stride = qkv.cols as isize;
    let base = start * qkv.cols + head_col;
    let q = qkv.data[base..].as_ptr();
    let k = qkv.data[base + hidden..].as_ptr();
    let v = qkv.data[base + 2 * hidden..].as_ptr();
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut scores = vec![0.0f32; n_queries * n];
    // SAFETY: Q, K and V rows start..end lie inside `qkv` (row stride = qkv.cols); `scores` is
    // [n_queries, n] row-major.
    unsafe {
        gemm::gemm(
            n_queries,
            n,
            head_dim,
            scores.as_mut_ptr(),
            1,
            n as isize,
            false,
            q,
            1,
            stride,
            k,
            stride,
            1,
            0.0,
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
    scores.chunks_exact_mut(n).for_each(softmax_inplace);
    let mut ctx = vec![0.0f32; n_queries * head_dim];
    // SAFETY: `scores` is [n_queries, n]; V rows start..end lie inside `qkv`; `ctx` is
    // [n_queries, head_dim] row-major.
    unsafe {
        gemm::gemm(
            n_queries,
            head_dim,
            n,
            ctx.as_mut_ptr(),
            1,
            head_dim as isize,
            false,
            scores.as_ptr(),
            1,
            n as isize,
            v,
            1,
            stride,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
    ctx
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

    #[test]
    fn packed_matches_naive_per_sequence() {
        let (heads, hidden) = (2, 4);
        let cu = [0, 3, 5];
        let data: Vec<f32> = (0..5 * 3 * hidden)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let qkv = Matrix::from_vec(data, 5, 3 * hidden);
        let all = packed_attention(&qkv, &cu, heads, QueryRows::All);
        let first = packed_attention(&qkv, &cu, heads, QueryRows::FirstOnly);
        for s in 0..2 {
            let want = naive(&qkv, cu[s], cu[s + 1], heads);
            for (i, row) in want.iter().enumerate() {
                for (a, b) in all.row(cu[s] + i).iter().zip(row) {
                    assert!((a - b).abs() < 1e-5);
                }
            }
            for (a, b) in first.row(s).iter().zip(&want[0]) {
                assert!((a - b).abs() < 1e-5);
            }
        }
    }
}
