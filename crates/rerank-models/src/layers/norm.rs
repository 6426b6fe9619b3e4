//! Layer normalisation, with the residual add fused in.

use crate::error::Result;
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

    /// Normalises every row of `x` in place.
    pub fn forward_inplace(&self, x: &mut Matrix) {
        for r in 0..x.rows {
            self.normalize_row(x.row_mut(r));
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

    fn normalize_row(&self, row: &mut [f32]) {
        let n = row.len() as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + self.eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}
