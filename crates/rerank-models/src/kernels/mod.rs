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
