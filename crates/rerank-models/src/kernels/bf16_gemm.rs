//! `y = x·Wᵀ + b` with bf16 weights and activations and f32 accumulation, on AVX512_BF16
//! (`vdpbf16ps`). The weights are rounded to bf16 and packed once, at load, into panels of 48
//! output columns laid out as `vdpbf16ps` reads them; the activations are rounded and packed per
//! call (a pass over `x`, small next to the GEMM). An 8×48 micro-kernel keeps 24 accumulators in
//! registers, starting from the bias. CPUs without AVX512_BF16 get the same bf16-rounded weights
//! through the f32 path (see [`crate::layers::Linear`]).

use rayon::prelude::*;

use super::{post_process_tile, tiled_output, unpad, PanelPrefetch, TilePost, MR, NR};
use crate::layers::Matrix;

/// True when this CPU runs the bf16 kernel.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Rounds to the nearest bf16 (ties to even), as the bit pattern.
#[inline(always)]
pub fn to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
}

/// The value of bf16 bits as f32.
#[inline(always)]
pub fn from_bf16_bits(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Two bf16 values in one 32-bit lane: `lo` in the low half (what `vdpbf16ps` and AMX's
/// `tdpbf16ps` pair first).
#[inline(always)]
pub(crate) fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16_bits(lo) as u32 | (to_bf16_bits(hi) as u32) << 16
}

/// A weight matrix packed for the bf16 kernel.
pub struct PackedBf16 {
    k: usize,
    n: usize,
    /// `ceil(k / 2)`: k-pairs.
    k2: usize,
    panels: usize,
    /// `panels × k2 × NR` pairs.
    data: Vec<u32>,
    /// `panels × NR` (zero-padded).
    bias: Vec<f32>,
}

impl PackedBf16 {
    /// Packs a PyTorch-layout weight `[n, k]` (row-major) and its bias.
    pub fn pack(weight: &[f32], bias: Option<&[f32]>, k: usize, n: usize) -> Self {
        let k2 = k.div_ceil(2);
        let panels = n.div_ceil(NR);
        let mut data = vec![0u32; panels * k2 * NR];
        let at = |row: usize, col: usize| if col < k { weight[row * k + col] } else { 0.0 };
        for p in 0..panels {
            for kp in 0..k2 {
                for j in 0..NR {
                    let col = p * NR + j;
                    if col < n {
                        data[(p * k2 + kp) * NR + j] = pair(at(col, 2 * kp), at(col, 2 * kp + 1));
                    }
                }
            }
        }
        Self {
            k,
            n,
            k2,
            panels,
            data,
            bias: super::padded_bias(bias, panels * NR),
        }
    }

    /// `post(x·Wᵀ + b)` (`[m, k]` → `[m, n]`), `post` applied in place to each tile's rows
    /// while they are in cache (e.g. a fused GELU; `None` for none). Call only where
    /// [`supported`] is true.
    pub fn matmul(&self, x: &Matrix, post: Option<TilePost>) -> Matrix {
        assert_eq!(x.cols, self.k, "bf16 gemm input width");
        let m = x.rows;
        let m_pad = m.div_ceil(MR) * MR;
        let ldc = self.panels * NR;
        let a = pack_rows(x, m_pad, self.k2);
        let c = tiled_output(m_pad, self.panels, |row0, p, corner| {
            let panel_len = self.k2 * NR;
            let b = &self.data[p * panel_len..(p + 1) * panel_len];
            let bias = &self.bias[p * NR..(p + 1) * NR];
            let prefetch =
                PanelPrefetch::next_panel_share(&self.data, panel_len, p, self.panels, row0, m_pad);
            // SAFETY: `supported()` was checked by the caller; `a` holds MR rows of `k2` pairs
            // from `row0`, `b` holds `k2 × NR` pairs, and `corner` starts an MR × NR tile of
            // the output (row stride `ldc`) that no other call writes; `post` sees only that tile.
            unsafe {
                let a = &a[row0 * self.k2..];
                kernel_8x48(self.k2, a, self.k2, b, bias, corner, ldc, prefetch);
                if let Some(post) = post {
                    post_process_tile(corner, ldc, post);
                }
            }
        });
        unpad(c, m, self.n, ldc)
    }
}

/// Rounds `x` to bf16 pairs, rows padded to `m_pad` and columns to `2·k2` with zeros.
fn pack_rows(x: &Matrix, m_pad: usize, k2: usize) -> Vec<u32> {
    let mut a = vec![0u32; m_pad * k2];
    a.par_chunks_mut(k2)
        .zip(x.data.par_chunks(x.cols))
        .for_each(|(dst, row)| {
            let pairs = row.chunks_exact(2);
            let last = pairs.remainder().first().map(|&v| pair(v, 0.0));
            for (d, p) in dst.iter_mut().zip(pairs) {
                *d = pair(p[0], p[1]);
            }
            if let Some(v) = last {
                dst[k2 - 1] = v;
            }
        });
    a
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_8x48(
    k2: usize,
    a: &[u32],
    lda: usize,
    b: &[u32],
    bias: &[f32],
    cp: *mut f32,
    ldc: usize,
    prefetch: PanelPrefetch,
) {
    use std::arch::x86_64::*;
    debug_assert!(a.len() >= (MR - 1) * lda + k2 && b.len() >= k2 * NR && bias.len() >= NR);
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    let mut acc = super::load_tile(bias.as_ptr(), 0);
    for kp in 0..k2 {
        prefetch.touch(kp);
        let w = bp.add(kp * NR) as *const __m512i;
        let w0: __m512bh = std::mem::transmute(_mm512_loadu_si512(w));
        let w1: __m512bh = std::mem::transmute(_mm512_loadu_si512(w.add(1)));
        let w2: __m512bh = std::mem::transmute(_mm512_loadu_si512(w.add(2)));
        for (r, row) in acc.iter_mut().enumerate() {
            let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(r * lda + kp) as i32));
            row[0] = _mm512_dpbf16_ps(row[0], x, w0);
            row[1] = _mm512_dpbf16_ps(row[1], x, w1);
            row[2] = _mm512_dpbf16_ps(row[2], x, w2);
        }
    }
    super::store_tile(&acc, cp, ldc);
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_8x48(
    _: usize,
    _: &[u32],
    _: usize,
    _: &[u32],
    _: &[f32],
    _: *mut f32,
    _: usize,
    _: PanelPrefetch,
) {
    unreachable!("the bf16 kernel runs only where supported() is true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_cases;

    #[test]
    fn rounding_is_nearest_even() {
        assert_eq!(from_bf16_bits(to_bf16_bits(1.0)), 1.0);
        assert_eq!(from_bf16_bits(to_bf16_bits(1.0 + 1.0 / 256.0)), 1.0); // tie → even
        assert_eq!(
            from_bf16_bits(to_bf16_bits(1.0 + 3.0 / 256.0)),
            1.0 + 4.0 / 256.0
        );
        assert_eq!(from_bf16_bits(to_bf16_bits(-2.5)), -2.5);
    }

    #[test]
    fn matches_reference_on_ragged_shapes() {
        if !supported() {
            eprintln!("no AVX512_BF16 on this CPU: kernel not exercised");
            return;
        }
        for &(m, k, n) in &test_cases::RAGGED {
            let (w, bias, x) = test_cases::inputs(m, k, n);
            let packed = PackedBf16::pack(&w, Some(&bias), k, n);
            let got = test_cases::with_post_op_checked((m, k, n), |post| packed.matmul(&x, post));
            let want = test_cases::bf16_reference(&w, &bias, &x, n);
            test_cases::assert_close(&got, &want, (m, k, n));
        }
    }
}
