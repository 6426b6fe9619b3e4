//! Multi-head self-attention over packed sequences: each (sequence, head) pair is computed on its
//! own, so no padded `[batch, max_len, max_len]` tensor is ever built.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::kernels::{self, attention::HeadIo, OutPtr};
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
    let out_rows = match rows {
        QueryRows::All => qkv.rows,
        QueryRows::FirstOnly => sequences,
    };
    // Not zeroed: the heads write every value (their columns of their rows) before set_len.
    let mut out: Vec<f32> = Vec::with_capacity(out_rows * hidden);
    let out_ptr = OutPtr(out.as_mut_ptr());
    let fast = kernels::attention::supported(head_dim);
    let tasks: Vec<(usize, usize)> = (0..sequences)
        .flat_map(|s| (0..heads).map(move |h| (s, h)))
        .collect();
    tasks.par_iter().for_each(|&(s, h)| {
        let (start, end) = (cu_seqlens[s], cu_seqlens[s + 1]);
        let (first_row, n_queries) = match rows {
            QueryRows::All => (start, end - start),
            QueryRows::FirstOnly => (s, 1),
        };
        let col = h * head_dim;
        // SAFETY: this task alone writes output rows first_row..first_row + n_queries, columns
        // col..col + head_dim; every pointer below stays inside `qkv` or `out`.
        unsafe {
            let base = qkv.data.as_ptr().add(start * qkv.cols + col);
            let io = HeadIo {
                q: base,
                k: base.add(hidden),
                v: base.add(2 * hidden),
                qkv_stride: qkv.cols,
                n: end - start,
                n_queries,
                head_dim,
                out: out_ptr.at(first_row * hidden + col),
                out_stride: hidden,
            };
            if fast {
                kernels::attention::attend_head(&io);
            } else {
                attend_one_head(&io);
            }
        }
    });
    // SAFETY: the (sequence, head) tasks covered every output row and all `heads · head_dim =
    // hidden` columns.
    unsafe { out.set_len(out_rows * hidden) };
    Matrix::from_vec(out, out_rows, hidden)
}

/// One head of one sequence with the `gemm` crate (the portable path): `softmax(Q·Kᵀ/√d)·V`
/// for the first `io.n_queries` tokens, written into `io.out`.
///
/// # Safety
/// The same contract as [`kernels::attention::attend_head`], without its CPU requirement.
unsafe fn attend_one_head(io: &HeadIo) {
    let (n, d) = (io.n, io.head_dim);
    let stride = io.qkv_stride as isize;
    let scale = 1.0 / (d as f32).sqrt();
    let mut scores = vec![0.0f32; io.n_queries * n];
    // `scores` is [n_queries, n] row-major; Q and K rows lie at `stride` (the caller's contract).
    gemm::gemm(
        io.n_queries,
        n,
        d,
        scores.as_mut_ptr(),
        1,
        n as isize,
        false,
        io.q,
        1,
        stride,
        io.k,
        stride,
        1,
        0.0,
        scale,
        false,
        false,
        false,
        Parallelism::None,
    );
    scores.chunks_exact_mut(n).for_each(softmax_inplace);
    // The context goes straight into the output rows (stride `out_stride`), which gemm writes
    // without reading (`read_dst` false).
    gemm::gemm(
        io.n_queries,
        d,
        n,
        io.out,
        1,
        io.out_stride as isize,
        false,
        scores.as_ptr(),
        1,
        n as isize,
        io.v,
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
}
