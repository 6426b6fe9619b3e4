//! Rotary position embeddings (Su et al., 2021, arXiv:2104.09864) in the "rotate half" layout of
//! Hugging Face's Llama/Gemma code: a head's first and second halves are the two coordinates of
//! each rotated pair.

use rayon::prelude::*;

use crate::layers::{Matrix, Packing};

/// The inverse frequencies of one head size and base, computed once.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    head_dim: usize,
}

impl Rope {
    /// `inv_freq[i] = 1 / θ^(2i / head_dim)`, in f32 as transformers computes it.
    pub fn new(head_dim: usize, theta: f64) -> Self {
        let base = theta as f32;
        let inv_freq = (0..head_dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        Self { inv_freq, head_dim }
    }

    /// Values per head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// The cosines and sines of positions `0..positions`: the angle `position · inv_freq` is
    /// rounded to f32 before its cosine and sine, as in the reference.
    pub fn tables(&self, positions: usize) -> RopeTables {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for &f in &self.inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        RopeTables {
            cos,
            sin,
            head_dim: self.head_dim,
        }
    }

    /// Rotates the first `heads` heads of every row of `x` (see [`RopeTables::apply`]).
    pub fn apply(&self, x: &mut Matrix, cu_seqlens: &[usize], heads: usize) {
        let longest = cu_seqlens.windows(2).map(|w| w[1] - w[0]).max();
        self.tables(longest.unwrap_or(0))
            .apply(x, cu_seqlens, heads);
    }
}

/// Cosines and sines of the positions of one batch, computed once for all its layers.
#[derive(Debug, Clone)]
pub struct RopeTables {
    cos: Vec<f32>,
    sin: Vec<f32>,
    head_dim: usize,
}

impl RopeTables {
    /// Rotates the first `heads` heads of every row of `x` (for a fused QKV matrix: the query
    /// heads and then the key heads, which lie side by side), the row's position being its
    /// index within its sequence of `cu_seqlens` (0, 1, …). The tables must cover the longest
    /// sequence.
    pub fn apply(&self, x: &mut Matrix, cu_seqlens: &[usize], heads: usize) {
        self.apply_at(x, &Packing::plain(cu_seqlens).positions(), heads);
    }

    /// As [`RopeTables::apply`], row `r` at position `positions[r]` (see
    /// [`Packing::positions`]).
    pub fn apply_at(&self, x: &mut Matrix, positions: &[usize], heads: usize) {
        let d = self.head_dim;
        let half = d / 2;
        assert!(
            heads * d <= x.cols,
            "rope: {heads} heads of {d} exceed {}",
            x.cols
        );
        assert_eq!(positions.len(), x.rows, "rope: one position per row");
        let covered = self.cos.len() / half.max(1);
        assert!(
            positions.iter().all(|&p| p < covered),
            "rope tables cover {covered} positions"
        );
        let (cos, sin) = (&self.cos, &self.sin);
        let rotate = |(row, &p): (&mut [f32], &usize)| {
            let (c, s) = (&cos[p * half..][..half], &sin[p * half..][..half]);
            for head in row[..heads * d].chunks_exact_mut(d) {
                let (x1, x2) = head.split_at_mut(half);
                for i in 0..half {
                    let (a, b) = (x1[i], x2[i]);
                    x1[i] = a * c[i] - b * s[i];
                    x2[i] = b * c[i] + a * s[i];
                }
            }
        };
        x.data
            .par_chunks_mut(x.cols)
            .zip(positions.par_iter())
            .with_min_len(16)
            .for_each(rotate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's formula: `x·cos + rotate_half(x)·sin`, `rotate_half(x) = [−x₂, x₁]`.
    fn naive(x: &[f32], p: usize, theta: f64) -> Vec<f32> {
        let d = x.len();
        let half = d / 2;
        (0..d)
            .map(|i| {
                let f = 1.0 / theta.powf((2 * (i % half)) as f64 / d as f64);
                let (c, s) = ((p as f64 * f).cos(), (p as f64 * f).sin());
                let rot = if i < half { -x[i + half] } else { x[i - half] };
                (f64::from(x[i]) * c + f64::from(rot) * s) as f32
            })
            .collect()
    }

    #[test]
    fn rotates_every_head_at_its_position_per_sequence() {
        let (d, heads, extra) = (8, 3, 4);
        let cols = heads * d + extra;
        let cu = [0, 5, 6, 9];
        let data: Vec<f32> = (0..9 * cols)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 5.0)
            .collect();
        let mut x = Matrix::from_vec(data.clone(), 9, cols);
        let rope = Rope::new(d, 10_000.0);
        rope.apply(&mut x, &cu, heads);
        for s in 0..3 {
            for r in cu[s]..cu[s + 1] {
                let src = &data[r * cols..(r + 1) * cols];
                for h in 0..heads {
                    let want = naive(&src[h * d..(h + 1) * d], r - cu[s], 10_000.0);
                    for (a, b) in x.row(r)[h * d..(h + 1) * d].iter().zip(&want) {
                        assert!((a - b).abs() < 1e-5, "row {r} head {h}: {a} vs {b}");
                    }
                }
                // Columns past the rotated heads (the values) are untouched.
                assert_eq!(&x.row(r)[heads * d..], &src[heads * d..]);
            }
        }
    }
}
