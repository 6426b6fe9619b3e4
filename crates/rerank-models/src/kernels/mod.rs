//! CPU kernels that are the product: GEMMs on weights pre-packed at load for the instruction
//! that consumes them, chosen at run time from the CPU's features.
//!
//! Both kernels share one tiling: weights in panels of [`NR`] output columns, [`MR`]-row
//! micro-kernel tiles, [`MC`]-row blocks spread over the threads, and an output padded to whole
//! tiles and panels that [`unpad`] cuts back.

pub mod bf16_gemm;
pub mod int8_gemm;

use crate::layers::Matrix;

/// Output columns per packed panel (3 × 16 f32 lanes).
pub(crate) const NR: usize = 48;
/// Rows per micro-kernel call.
pub(crate) const MR: usize = 8;
/// Rows per parallel block (a block's packed activations stay in L2 across panels).
pub(crate) const MC: usize = 64;

/// The first `m` rows and `n` columns of a padded `[_, ldc]` output.
pub(crate) fn unpad(mut c: Vec<f32>, m: usize, n: usize, ldc: usize) -> Matrix {
    if ldc == n {
        c.truncate(m * ldc);
        return Matrix::from_vec(c, m, n);
    }
    let mut out = Vec::with_capacity(m * n);
    for row in c.chunks_exact(ldc).take(m) {
        out.extend_from_slice(&row[..n]);
    }
    Matrix::from_vec(out, m, n)
}

/// Test inputs for the kernels: ragged `(m, k, n)` shapes (odd `k`, partial tiles and panels)
/// and deterministic weights, bias and activations for each.
#[cfg(test)]
pub(crate) mod test_cases {
    use crate::layers::Matrix;

    /// `(m, k, n)` shapes that exercise every padding path.
    pub const RAGGED: [(usize, usize, usize); 5] = [
        (1, 7, 5),
        (9, 64, 48),
        (17, 33, 100),
        (64, 128, 96),
        (130, 96, 50),
    ];

    /// `(weight [n, k], bias [n], x [m, k])`.
    pub fn inputs(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Matrix) {
        let w = (0..n * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let bias = (0..n).map(|i| i as f32 * 0.1 - 1.0).collect();
        let x = (0..m * k)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 20.0)
            .collect();
        (w, bias, Matrix::from_vec(x, m, k))
    }
}
