//! The gated feed-forward block of Llama-style decoders: `down(act(gate(x)) · up(x))`.

use rayon::prelude::*;

use crate::error::Result;
use crate::layers::fastmath::gated_product;
use crate::layers::{Activation, Linear, Matrix};
use crate::weights::Vb;

/// `down(act(gate(x)) · up(x))` without biases; gate and up run as one GEMM.
pub struct GatedMlp {
    /// `[gate | up]`, `2·intermediate` outputs.
    gate_up: Linear,
    down: Linear,
    activation: Activation,
    intermediate: usize,
}

impl GatedMlp {
    /// Loads `gate_proj`, `up_proj` and `down_proj` under `vb` (the `mlp` prefix).
    pub fn load(
        vb: &Vb,
        hidden: usize,
        intermediate: usize,
        activation: Activation,
    ) -> Result<Self> {
        let parts = [
            (vb.pp("gate_proj"), intermediate),
            (vb.pp("up_proj"), intermediate),
        ];
        Ok(Self::new(
            Linear::load_concat_no_bias(&parts, hidden)?,
            Linear::load_no_bias(&vb.pp("down_proj"), intermediate, hidden)?,
            activation,
        ))
    }

    /// Builds the block from a fused `[gate | up]` layer and `down`.
    pub fn new(gate_up: Linear, down: Linear, activation: Activation) -> Self {
        let intermediate = down.in_dim();
        assert_eq!(gate_up.out_dim(), 2 * intermediate, "gate/up width");
        Self {
            gate_up,
            down,
            activation,
            intermediate,
        }
    }

    /// Runs the block on every row of `x`.
    pub fn forward(&self, x: &Matrix) -> Matrix {
        let gate_up = self.gate_up.forward(x);
        let width = self.intermediate;
        let mut inner = Matrix::zeros(x.rows, width);
        let act = self.activation;
        inner
            .data
            .par_chunks_mut(width)
            .zip(gate_up.data.par_chunks(2 * width))
            .for_each(|(out, gu)| {
                let (gate, up) = gu.split_at(width);
                out.copy_from_slice(gate);
                act.apply_serial(out);
                gated_product(out, up);
            });
        drop(gate_up);
        self.down.forward(&inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gated_mlp_matches_naive() {
        let (h, i, rows) = (5, 7, 3);
        let w = |n: usize, k: usize| -> Vec<f32> {
            (0..n)
                .map(|j| (((j * k) % 19) as f32 - 9.0) / 10.0)
                .collect()
        };
        let (gate, up, down) = (w(i * h, 3), w(i * h, 5), w(h * i, 7));
        let gate_up: Vec<f32> = gate.iter().chain(&up).copied().collect();
        let x = Matrix::from_vec(w(rows * h, 11), rows, h);
        for act in [Activation::GeluNew, Activation::Silu] {
            let mlp = GatedMlp::new(
                Linear::from_parts(&gate_up, None, h, 2 * i),
                Linear::from_parts(&down, None, i, h),
                act,
            );
            let got = mlp.forward(&x);
            for r in 0..rows {
                let xr = x.row(r);
                let mid: Vec<f32> = (0..i)
                    .map(|o| {
                        let g: f32 = (0..h).map(|c| gate[o * h + c] * xr[c]).sum();
                        let u: f32 = (0..h).map(|c| up[o * h + c] * xr[c]).sum();
                        let g64 = f64::from(g);
                        let a = match act {
                            Activation::Silu => g64 / (1.0 + (-g64).exp()),
                            _ => {
                                let c = (2.0 / std::f64::consts::PI).sqrt();
                                0.5 * g64 * (1.0 + (c * (g64 + 0.044_715 * g64.powi(3))).tanh())
                            }
                        };
                        a as f32 * u
                    })
                    .collect();
                for o in 0..h {
                    let want: f32 = (0..i).map(|c| down[o * i + c] * mid[c]).sum();
                    assert!((got.row(r)[o] - want).abs() < 1e-5, "{act:?}");
                }
            }
        }
    }
}
