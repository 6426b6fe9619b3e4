//! Layer normalisation, with the residual add fused in.

use crate::error::Result;
use crate::layers::fastmath::layer_norm_row;
use crate::layers::Matrix;
use crate::weights::Vb;

/// `LayerNorm` over the last dimension with learned scale and shift.
pub struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    /// Loads `weight`/`bias` (or the older `gamma`/`beta` names) of width `dim`.
    pub fn load(vb: &Vb, dim: usize, eps: f64) -> Result<Self> {
        let (w, b) = if vb.contains("weight") || !vb.contains("gamma") {
            ("weight", "bias")
        } else {
            ("gamma", "beta")
        };
        Ok(Self {
            weight: vb.get(w, &[dim])?,
            bias: vb.get(b, &[dim])?,
            eps: eps as f32,
        })
    }

    /// Normalises every row of `x` in place, rows spread over the engine's threads.
    pub fn forward_inplace(&self, x: &mut Matrix) {
        use rayon::prelude::*;
        let cols = x.cols;
        let norm = |row: &mut [f32]| layer_norm_row(row, &self.weight, &self.bias, self.eps);
        if x.rows >= 64 {
            x.data.par_chunks_mut(cols).for_each(norm);
        } else {
            x.data.chunks_mut(cols).for_each(norm);
        }
    }

    /// `x = LayerNorm(x + residual)`, row by row, in place.
    pub fn add_forward_inplace(&self, x: &mut Matrix, residual: &Matrix) {
        assert_eq!(x.data.len(), residual.data.len(), "residual shape");
        for (v, r) in x.data.iter_mut().zip(&residual.data) {
            *v += r;
        }
        self.forward_inplace(x);
    }
}
