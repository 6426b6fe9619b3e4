//! `y = x·Wᵀ + b` in f32 on AVX-512F: the weights are packed once, at load, into panels of
//! [`NR`] output columns laid out as the micro-kernel reads them (one k step = three `zmm`
//! loads), so no call re-packs them as a general-purpose GEMM must. The activations are read
//! where they are, eight rows at a time (only a last partial tile is copied, zero-padded):
//! copying them into k-interleaved tiles as the AVX2 kernel does costs a pass over memory that
//! a 3,072-wide input pays 11 % for (Zen 5, 8192 × 3072 × 768: 434 → 494 GFLOP/s). An 8 × 48
//! micro-kernel keeps 24 accumulators in registers, starting from the bias, and prefetches
//! its share of the next panel as the bf16 and int8 kernels do. The arithmetic is the
//! reference's: f32 products and f32 sums (in a different order than a blocked GEMM's, so
//! results move by rounding only).

use super::{post_process_tile, tiled_output, unpad, PanelPrefetch, TilePost, MR, NR};
use crate::layers::Matrix;

/// True when this CPU runs the f32 kernel (AVX-512F).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A weight matrix packed for the f32 kernel.
pub struct PackedF32 {
    k: usize,
    n: usize,
    panels: usize,
    /// `panels × k × NR` values (columns past `n` zero).
    data: Vec<f32>,
    /// `panels × NR` (zero-padded).
    bias: Vec<f32>,
}

impl PackedF32 {
    /// Packs a PyTorch-layout weight `[n, k]` (row-major) and its bias.
    pub fn pack(weight: &[f32], bias: Option<&[f32]>, k: usize, n: usize) -> Self {
        assert_eq!(weight.len(), n * k, "f32 weight size");
        let panels = n.div_ceil(NR);
        let mut data = vec![0.0f32; panels * k * NR];
        for (p, panel) in data.chunks_exact_mut((k * NR).max(1)).enumerate() {
            for (t, step) in panel.chunks_exact_mut(NR).enumerate() {
                for (j, v) in step.iter_mut().enumerate() {
                    let col = p * NR + j;
                    if col < n {
                        *v = weight[col * k + t];
                    }
                }
            }
        }
        Self {
            k,
            n,
            panels,
            data,
            bias: super::padded_bias(bias, panels * NR),
        }
    }

    /// `post(x·Wᵀ + b)` (`[m, k]` → `[m, n]`), `post` applied in place to each tile's rows
    /// while they are in cache (e.g. a fused GELU; `None` for none). Call only where
    /// [`supported`] is true.
    pub fn matmul(&self, x: &Matrix, post: Option<TilePost>) -> Matrix {
        assert_eq!(x.cols, self.k, "f32 gemm input width");
        assert!(supported(), "the f32 gemm needs AVX-512F");
        let (m, k) = (x.rows, self.k);
        let m_pad = m.div_ceil(MR) * MR;
        let ldc = self.panels * NR;
        // The rows of a last partial tile, zero-padded to MR.
        let full = m / MR * MR;
        let mut tail = vec![0.0f32; if full < m { MR * k } else { 0 }];
        tail[..(m - full) * k].copy_from_slice(&x.data[full * k..]);
        let panel_len = k * NR;
        let c = tiled_output(m_pad, self.panels, |row0, p, corner| {
            let a = if row0 < full {
                &x.data[row0 * k..(row0 + MR) * k]
            } else {
                &tail[..]
            };
            let b = &self.data[p * panel_len..(p + 1) * panel_len];
            let bias = &self.bias[p * NR..(p + 1) * NR];
            let prefetch =
                PanelPrefetch::next_panel_share(&self.data, panel_len, p, self.panels, row0, m_pad);
            // SAFETY: `supported()` holds (asserted above); `a` holds MR rows of `k` values,
            // `b` a panel of `k × NR` values, `bias` NR values, and `corner` starts an MR × NR
            // tile of the output (row stride `ldc`) that no other call writes; `post` sees only
            // that tile.
            unsafe {
                kernel_8x48(k, a, b, bias, corner, ldc, prefetch);
                if let Some(post) = post {
                    post_process_tile(corner, ldc, post);
                }
            }
        });
        unpad(c, m, self.n, ldc)
    }
}

/// One 8 × 48 tile: `c[r][j] = bias[j] + Σ_{t < k} a[r·k + t] · w[t][j]`.
///
/// # Safety
/// AVX-512F must be present; `a` must hold 8 rows of `k` values, `b` the panel's `48·k`
/// values, `bias` 48 values, and `cp` must start an 8 × 48 tile of row stride `ldc` that the
/// caller alone writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_8x48(
    k: usize,
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    cp: *mut f32,
    ldc: usize,
    prefetch: PanelPrefetch,
) {
    use std::arch::x86_64::*;
    debug_assert!(b.len() >= NR * k && bias.len() >= NR);
    debug_assert!(a.len() >= MR * k);
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    let mut acc = super::load_tile(bias.as_ptr(), 0);
    // One k step reads three cache lines of the panel: prefetch three lines of the next one.
    for t in 0..k {
        prefetch.touch(3 * t);
        prefetch.touch(3 * t + 1);
        prefetch.touch(3 * t + 2);
        let w = bp.add(NR * t);
        let w0 = _mm512_loadu_ps(w);
        let w1 = _mm512_loadu_ps(w.add(16));
        let w2 = _mm512_loadu_ps(w.add(32));
        for (r, row) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(*ap.add(r * k + t));
            row[0] = _mm512_fmadd_ps(x, w0, row[0]);
            row[1] = _mm512_fmadd_ps(x, w1, row[1]);
            row[2] = _mm512_fmadd_ps(x, w2, row[2]);
        }
    }
    super::store_tile(&acc, cp, ldc);
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel_8x48(
    _: usize,
    _: &[f32],
    _: &[f32],
    _: &[f32],
    _: *mut f32,
    _: usize,
    _: PanelPrefetch,
) {
    unreachable!("the f32 kernel runs only where supported() is true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_cases;

    #[test]
    fn matches_reference_on_ragged_shapes() {
        if !supported() {
            eprintln!("no AVX-512F on this CPU: f32 kernel not exercised");
            return;
        }
        let extra = [
            (8, 1, 48),
            (12, 5, 49),
            (7, 0, 3),
            (0, 8, 8),
            (96, 300, 130),
        ];
        test_cases::check_f32_accumulation(
            &extra,
            |v| v,
            |w, bias, x, post| PackedF32::pack(w, Some(bias), x.cols, bias.len()).matmul(x, post),
        );
    }
}
