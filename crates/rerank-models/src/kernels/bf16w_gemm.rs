//! `y = x·Wᵀ + b` with bf16-stored weights, f32 activations and f32 FMA accumulation, for CPUs
//! without AVX512_BF16 (or where `vdpbf16ps` is no faster than f32 FMA): the weights take half
//! the memory and half the memory traffic of f32, and every product `bf16(w)·x` is exact.
//!
//! The weights are rounded to bf16 and packed once, at load, into panels of `nr` output
//! columns. One k step of a panel is `nr / 2` 32-bit lanes; lane `j` holds column `j` in its low
//! half and column `j + nr/2` in its high half, so one load widens to two f32 vectors with one
//! shift (`<< 16`) and one mask (`& 0xFFFF0000`) — no shuffle. The activations are copied per
//! call into row tiles interleaved by k step (one pass over `x`, small next to the GEMM), and
//! the depth is walked in passes of `kc` so a block's tiles find their panel slice in L1. The AVX2+FMA micro-kernel keeps a
//! 6 × 16 tile in 12 `ymm` accumulators (plus two widened weight vectors, a broadcast and the
//! mask: all 16 registers), starting from the bias.

use super::{post_process_tile_with, tiled_output_with, unpad, PanelPrefetch, TilePost, Tiling};
use std::ops::Range;

use rayon::prelude::*;

use crate::kernels::bf16_gemm::to_bf16_bits;
use crate::layers::Matrix;

/// The AVX2 kernel's tiling: 6 rows × 16 columns (12 accumulators), 48-row blocks, in passes
/// of 256 deep (8 KB of a bf16 panel, which the block's 8 tiles then read from L1; their
/// activations, 48 KB, from L2).
const AVX2: Tiling = Tiling {
    mr: 6,
    nr: 16,
    mc: 48,
    kc: 256,
};

/// True when this CPU runs the widening kernel (AVX2 and FMA).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A weight matrix rounded to bf16 and packed for the widening kernel.
pub struct PackedBf16W {
    k: usize,
    n: usize,
    panels: usize,
    tiling: Tiling,
    /// `panels × k × nr/2` lanes of two bf16 (see the module doc).
    data: Vec<u32>,
    /// `panels × nr` (zero-padded).
    bias: Vec<f32>,
}

impl PackedBf16W {
    /// Rounds (to nearest even) and packs a PyTorch-layout weight `[n, k]` (row-major) and its
    /// bias.
    pub fn pack(weight: &[f32], bias: Option<&[f32]>, k: usize, n: usize) -> Self {
        assert_eq!(weight.len(), n * k, "bf16w weight size");
        let tiling = AVX2;
        let (nr, half) = (tiling.nr, tiling.nr / 2);
        let panels = n.div_ceil(nr);
        let mut data = vec![0u32; panels * k * half];
        let bits = |col: usize, t: usize| {
            if col < n {
                to_bf16_bits(weight[col * k + t]) as u32
            } else {
                0
            }
        };
        for (p, panel) in data.chunks_exact_mut((k * half).max(1)).enumerate() {
            for (t, step) in panel.chunks_exact_mut(half).enumerate() {
                for (j, lane) in step.iter_mut().enumerate() {
                    let col = p * nr + j;
                    *lane = bits(col, t) | bits(col + half, t) << 16;
                }
            }
        }
        Self {
            k,
            n,
            panels,
            tiling,
            data,
            bias: super::padded_bias(bias, panels * nr),
        }
    }

    /// Bytes held for the weights and bias (half of f32's, plus panel padding).
    pub fn bytes(&self) -> usize {
        self.data.len() * 4 + self.bias.len() * 4
    }

    /// `post(x·Wᵀ + b)` (`[m, k]` → `[m, n]`), `post` applied in place to each tile's rows
    /// while they are in cache (e.g. a fused GELU; `None` for none). Call only where
    /// [`supported`] is true.
    pub fn matmul(&self, x: &Matrix, post: Option<TilePost>) -> Matrix {
        assert_eq!(x.cols, self.k, "bf16w gemm input width");
        assert!(supported(), "bf16w gemm needs AVX2 and FMA");
        let (m, k, t) = (x.rows, self.k, self.tiling);
        let m_pad = m.div_ceil(t.mr) * t.mr;
        let ldc = self.panels * t.nr;
        let a = pack_rows(x, t.mr, m_pad);
        let panel_len = k * t.nr / 2;
        let c = tiled_output_with(t, m_pad, self.panels, k, |row0, p, depth, corner| {
            let a = &a[row0 * k..(row0 + t.mr) * k];
            let b = &self.data[p * panel_len..(p + 1) * panel_len];
            let bias = &self.bias[p * t.nr..(p + 1) * t.nr];
            let prefetch = PanelPrefetch::next_panel_share_tiled(
                t,
                &self.data,
                panel_len,
                p,
                self.panels,
                row0,
                m_pad,
            );
            let last = depth.end == k;
            // SAFETY: `supported()` holds (asserted above); `a` holds `k` steps of `mr` values,
            // `b` a panel of `k × nr/2` lanes, `bias` `nr` values, `depth` lies in `0..k`, and
            // `corner` starts an `mr × nr` tile of the output (row stride `ldc`) that no other
            // call writes and that earlier passes wrote; `post` sees only that tile.
            unsafe {
                kernel_6x16(depth, a, b, bias, corner, ldc, prefetch);
                if let (true, Some(post)) = (last, post) {
                    post_process_tile_with(t, corner, ldc, post);
                }
            }
        });
        unpad(c, m, self.n, ldc)
    }
}

/// `x` in tiles of `mr` rows interleaved by k step (`[m_pad / mr][k][mr]`, rows past `m`
/// zero), so a micro-kernel reads its activations as one sequential stream (rows `k` apart
/// would alias in the L1 sets when `k·4` is a multiple of 4 KB).
fn pack_rows(x: &Matrix, mr: usize, m_pad: usize) -> Vec<f32> {
    let (m, k) = (x.rows, x.cols);
    let mut a = vec![0.0f32; m_pad * k];
    if k == 0 {
        return a;
    }
    a.par_chunks_mut(mr * k)
        .enumerate()
        .for_each(|(tile, dst)| {
            for r in 0..mr.min(m.saturating_sub(tile * mr)) {
                let row = x.row(tile * mr + r);
                for (t, &v) in row.iter().enumerate() {
                    dst[t * mr + r] = v;
                }
            }
        });
    a
}

/// One 6 × 16 tile over `depth`: `c[r][j] (+)= Σ_{t ∈ depth} a[6t + r] · w[t][j]`, `w`
/// widened from bf16, starting from `bias` when `depth` starts at 0 and from `c` otherwise.
///
/// # Safety
/// AVX2 and FMA must be present; `a` must hold `6·depth.end` values (see [`pack_rows`]), `b`
/// the panel's `8·depth.end` lanes, `bias` 16 values, and `cp` must start a 6 × 16 tile of
/// row stride `ldc` that the caller alone writes (already written unless `depth` starts at 0).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_6x16(
    depth: Range<usize>,
    a: &[f32],
    b: &[u32],
    bias: &[f32],
    cp: *mut f32,
    ldc: usize,
    prefetch: PanelPrefetch,
) {
    use std::arch::x86_64::*;
    const ROWS: usize = 6;
    debug_assert!(a.len() >= ROWS * depth.end);
    debug_assert!(b.len() >= 8 * depth.end && bias.len() >= 16);
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    // Opaque to the compiler, so it stays a `vpand` (a `vpblendw` would take a shuffle slot).
    let high = std::hint::black_box(_mm256_set1_epi32(0xFFFF_0000u32 as i32));
    let mut acc = [[_mm256_setzero_ps(); 2]; ROWS];
    for (r, row) in acc.iter_mut().enumerate() {
        let src = if depth.start == 0 {
            bias.as_ptr()
        } else {
            cp.add(r * ldc)
        };
        *row = [_mm256_loadu_ps(src), _mm256_loadu_ps(src.add(8))];
    }
    // One k step reads half a cache line of the panel: prefetch one line of the next panel
    // every two steps.
    let step = |t: usize, acc: &mut [[__m256; 2]; ROWS]| {
        let raw = _mm256_loadu_si256(bp.add(8 * t) as *const __m256i);
        let w0 = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(raw));
        let w1 = _mm256_castsi256_ps(_mm256_and_si256(raw, high));
        for (r, row) in acc.iter_mut().enumerate() {
            let x = _mm256_broadcast_ss(&*ap.add(ROWS * t + r));
            row[0] = _mm256_fmadd_ps(x, w0, row[0]);
            row[1] = _mm256_fmadd_ps(x, w1, row[1]);
        }
    };
    let mut t = depth.start;
    while t + 2 <= depth.end {
        prefetch.touch(t / 2);
        step(t, &mut acc);
        step(t + 1, &mut acc);
        t += 2;
    }
    if t < depth.end {
        step(t, &mut acc);
    }
    for (r, row) in acc.iter().enumerate() {
        let out = cp.add(r * ldc);
        _mm256_storeu_ps(out, row[0]);
        _mm256_storeu_ps(out.add(8), row[1]);
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel_6x16(
    _: Range<usize>,
    _: &[f32],
    _: &[u32],
    _: &[f32],
    _: *mut f32,
    _: usize,
    _: PanelPrefetch,
) {
    unreachable!("the bf16w kernel runs only where supported() is true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::bf16_gemm::from_bf16_bits;
    use crate::kernels::test_cases;

    #[test]
    fn packing_splits_lanes_low_then_high() {
        // 1 × 20 weight (k = 1): panel 0 holds columns 0..16, panel 1 columns 16..20.
        let w: Vec<f32> = (0..20).map(|c| c as f32).collect();
        let p = PackedBf16W::pack(&w, None, 1, 20);
        assert_eq!((p.panels, p.data.len()), (2, 16));
        for j in 0..8 {
            assert_eq!(from_bf16_bits(p.data[j] as u16), j as f32);
            assert_eq!(from_bf16_bits((p.data[j] >> 16) as u16), (j + 8) as f32);
        }
        assert_eq!(from_bf16_bits((p.data[8 + 3]) as u16), 19.0);
        assert_eq!(p.data[8 + 4], 0, "padding columns are zero");
    }

    #[test]
    fn matches_reference_on_ragged_shapes() {
        if !supported() {
            eprintln!("no AVX2+FMA on this CPU: bf16w kernel not exercised");
            return;
        }
        let extra = [
            (6, 1, 16),
            (12, 5, 17),
            (7, 0, 3),
            (0, 8, 8),
            (96, 300, 130),
        ];
        let round = |v: f32| from_bf16_bits(to_bf16_bits(v));
        test_cases::check_f32_accumulation(&extra, round, |w, bias, x, post| {
            PackedBf16W::pack(w, Some(bias), x.cols, bias.len()).matmul(x, post)
        });
    }
}
