//! Fully connected layer `y = x·Wᵀ + b` on packed rows.

use gemm::Parallelism;

use crate::error::Result;
use crate::layers::Matrix;
use crate::runtime;
use crate::weights::Vb;

/// Work (multiply-adds) below which a GEMM runs on one thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// A linear layer; the weight is stored transposed (`[in, out]`, row-major), converted at load.
pub struct Linear {
    weight_t: Vec<f32>,
    bias: Option<Vec<f32>>,
    in_dim: usize,
    out_dim: usize,
}

impl Linear {
    /// Loads `weight` (`[out, in]`) and `bias` (`[out]`) from `vb`.
    pub fn load(vb: &Vb, in_dim: usize, out_dim: usize) -> Result<Self> {
        let weight = vb.get("weight", &[out_dim, in_dim])?;
        let bias = vb.get("bias", &[out_dim])?;
        Ok(Self::from_parts(&weight, Some(bias), in_dim, out_dim))
    }

    /// Stacks several layers with the same input into one wider layer (e.g. Q, K and V).
    pub fn load_stacked(vbs: &[Vb], in_dim: usize, out_dim: usize) -> Result<Self> {
        let mut weight = Vec::with_capacity(vbs.len() * out_dim * in_dim);
        let mut bias = Vec::with_capacity(vbs.len() * out_dim);
        for vb in vbs {
            weight.extend(vb.get("weight", &[out_dim, in_dim])?);
            bias.extend(vb.get("bias", &[out_dim])?);
        }
        Ok(Self::from_parts(
            &weight,
            Some(bias),
            in_dim,
            vbs.len() * out_dim,
        ))
    }

    /// Builds a layer from a PyTorch-layout weight (`[out, in]`, row-major).
    pub fn from_parts(
        weight: &[f32],
        bias: Option<Vec<f32>>,
        in_dim: usize,
        out_dim: usize,
    ) -> Self {
        let mut weight_t = vec![0.0; in_dim * out_dim];
        for o in 0..out_dim {
            for i in 0..in_dim {
                weight_t[i * out_dim + o] = weight[o * in_dim + i];
            }
        }
        Self {
            weight_t,
            bias,
            in_dim,
            out_dim,
        }
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `x·Wᵀ + b` for every row of `x` (`[rows, in]` → `[rows, out]`).
    pub fn forward(&self, x: &Matrix) -> Matrix {
        assert_eq!(x.cols, self.in_dim, "linear input width");
        let (m, n, k) = (x.rows, self.out_dim, self.in_dim);
        let mut out = match &self.bias {
            Some(b) => Matrix::from_vec(b.repeat(m), m, n),
            None => Matrix::zeros(m, n),
        };
        if m == 0 {
            return out;
        }
        let parallelism = if m * n * k >= PARALLEL_MIN_WORK && runtime::threads() > 1 {
            Parallelism::Rayon(runtime::threads())
        } else {
            Parallelism::None
        };
        // SAFETY: all three buffers are row-major with the sizes asserted above.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.data.as_mut_ptr(),
                1,
                n as isize,
                true,
                x.data.as_ptr(),
                1,
                k as isize,
                self.weight_t.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_matches_naive() {
        let (i, o) = (3, 2);
        let w = [1.0, 2.0, 3.0, -1.0, 0.5, 0.0];
        let lin = Linear::from_parts(&w, Some(vec![0.1, -0.2]), i, o);
        let x = Matrix::from_vec(vec![1.0, 1.0, 1.0, 2.0, 0.0, -1.0], 2, 3);
        let y = lin.forward(&x);
        assert_eq!(y.data, vec![6.1, -0.7, -1.0 + 0.1, -2.0 - 0.2]);
    }
}
