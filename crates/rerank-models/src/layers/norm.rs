//! Layer normalisation (with the residual add fused in) and RMS normalisation.

use crate::error::Result;
use crate::layers::fastmath::{layer_norm_row, rms_norm_row};
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

/// Which learned scale an [`RmsNorm`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RmsScale {
    /// `x̂ · w` (Llama, MiniCPM).
    Weight,
    /// `x̂ · (1 + w)` (Gemma, Gemma-2): the checkpoint stores the offset from one.
    OnePlusWeight,
}

/// RMS normalisation over the last dimension: `x / √(mean(x²) + eps) · scale`, in f32.
pub struct RmsNorm {
    /// The effective scale (`1 + w` already added for [`RmsScale::OnePlusWeight`]).
    scale: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    /// Loads `weight` of width `dim`.
    pub fn load(vb: &Vb, dim: usize, eps: f64, form: RmsScale) -> Result<Self> {
        Ok(Self::new(vb.get("weight", &[dim])?, eps, form))
    }

    /// Builds the norm from its stored weight.
    pub fn new(mut weight: Vec<f32>, eps: f64, form: RmsScale) -> Self {
        if form == RmsScale::OnePlusWeight {
            // `1.0 + w` in f32, as the reference adds it before multiplying.
            weight.iter_mut().for_each(|w| *w += 1.0);
        }
        Self {
            scale: weight,
            eps: eps as f32,
        }
    }

    /// Normalises one row in place.
    pub fn forward_row(&self, row: &mut [f32]) {
        rms_norm_row(row, &self.scale, self.eps);
    }

    /// A normalised copy of `x`, rows spread over the engine's threads.
    pub fn forward(&self, x: &Matrix) -> Matrix {
        let mut out = x.clone();
        self.forward_inplace(&mut out);
        out
    }

    /// Normalises every row of `x` in place.
    pub fn forward_inplace(&self, x: &mut Matrix) {
        use rayon::prelude::*;
        let cols = x.cols;
        if x.rows >= 64 {
            x.data
                .par_chunks_mut(cols)
                .for_each(|r| self.forward_row(r));
        } else {
            x.data.chunks_mut(cols).for_each(|r| self.forward_row(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_forms() {
        let x = Matrix::from_vec(vec![1.0, -2.0, 3.0, 0.5, 0.0, -1.0], 2, 3);
        let w = vec![0.5, -0.25, 2.0];
        for form in [RmsScale::Weight, RmsScale::OnePlusWeight] {
            let got = RmsNorm::new(w.clone(), 1e-6, form).forward(&x);
            for r in 0..2 {
                let row = x.row(r);
                let ms = row.iter().map(|v| v * v).sum::<f32>() / 3.0;
                for c in 0..3 {
                    let scale = match form {
                        RmsScale::Weight => w[c],
                        RmsScale::OnePlusWeight => 1.0 + w[c],
                    };
                    let want = row[c] / (ms + 1e-6).sqrt() * scale;
                    assert!((got.row(r)[c] - want).abs() < 1e-6, "{form:?}");
                }
            }
        }
    }
}
