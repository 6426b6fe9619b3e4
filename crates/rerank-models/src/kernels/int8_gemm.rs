//! `y = x·Wᵀ + b` in int8 on AVX512_VNNI (`vpdpbusd`, u8 × s8 → i32): weights quantised once, at
//! load, per output channel (symmetric, scale = max|w|/127) and packed in panels of 48 columns
//! of 4-byte quads; activations quantised per token (row) on every call, asymmetric u8
//! (scale = (max − min)/255 and a zero point, so skewed rows such as GELU outputs use all 256
//! levels); the zero point is taken back out with the weights' column sums.
//! CPUs without AVX512_VNNI use the f32 path on the dequantised weights.

use rayon::prelude::*;

use super::{post_process_tile, tiled_output, unpad, PanelPrefetch, TilePost, MR, NR};
use crate::layers::Matrix;

/// True when this CPU runs the int8 kernel.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Per-row symmetric int8 quantisation of `values`: `(q, scale)` with `v ≈ q·scale`.
pub fn quantize_row(values: &[f32]) -> (Vec<i8>, f32) {
    let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = 1.0 / scale;
    (
        values
            .iter()
            .map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8)
            .collect(),
        scale,
    )
}

/// A weight matrix quantised and packed for the int8 kernel.
pub struct PackedInt8 {
    k: usize,
    n: usize,
    /// `ceil(k / 4)`: k-quads.
    k4: usize,
    panels: usize,
    /// `panels × k4 × NR` quads of i8.
    data: Vec<u32>,
    /// Per output column: weight scale, `Σ_k q`, bias (each `panels × NR`, zero-padded).
    scale: Vec<f32>,
    colsum: Vec<i32>,
    bias: Vec<f32>,
}

impl PackedInt8 {
    /// Quantises and packs a PyTorch-layout weight `[n, k]` and its bias.
    pub fn pack(weight: &[f32], bias: Option<&[f32]>, k: usize, n: usize) -> Self {
        let k4 = k.div_ceil(4);
        let panels = n.div_ceil(NR);
        let mut data = vec![0u32; panels * k4 * NR];
        let (mut scale, mut colsum, mut padded_bias) = (
            vec![0.0; panels * NR],
            vec![0; panels * NR],
            vec![0.0; panels * NR],
        );
        for col in 0..n {
            let (q, s) = quantize_row(&weight[col * k..(col + 1) * k]);
            scale[col] = s;
            colsum[col] = q.iter().map(|&v| v as i32).sum::<i32>();
            let (p, j) = (col / NR, col % NR);
            for kq in 0..k4 {
                let mut quad = [0u8; 4];
                for (t, byte) in quad.iter_mut().enumerate() {
                    *byte = q.get(4 * kq + t).copied().unwrap_or(0) as u8;
                }
                data[(p * k4 + kq) * NR + j] = u32::from_le_bytes(quad);
            }
        }
        if let Some(b) = bias {
            padded_bias[..n].copy_from_slice(b);
        }
        Self {
            k,
            n,
            k4,
            panels,
            data,
            scale,
            colsum,
            bias: padded_bias,
        }
    }

    /// The weights as the kernel sees them, dequantised (`[n, k]`), for CPUs without VNNI.
    pub fn dequantized(weight: &[f32], k: usize, n: usize) -> Vec<f32> {
        (0..n)
            .flat_map(|col| {
                let (q, s) = quantize_row(&weight[col * k..(col + 1) * k]);
                q.into_iter().map(move |v| v as f32 * s)
            })
            .collect()
    }

    /// `post(x·Wᵀ + b)` (`[m, k]` → `[m, n]`), `post` applied in place to each tile's rows
    /// while they are in cache (e.g. a fused GELU; `None` for none). Call only where
    /// [`supported`] is true.
    pub fn matmul(&self, x: &Matrix, post: Option<TilePost>) -> Matrix {
        assert_eq!(x.cols, self.k, "int8 gemm input width");
        let m = x.rows;
        let m_pad = m.div_ceil(MR) * MR;
        let ldc = self.panels * NR;
        let (a, row_scale, row_zero) = quantize_rows(x, m_pad, self.k4);
        let c = tiled_output(m_pad, self.panels, |row0, p, corner| {
            let cols = p * NR..(p + 1) * NR;
            let epilogue = Epilogue {
                row_scale: tile_rows(&row_scale, row0),
                row_zero: tile_rows(&row_zero, row0),
                col_scale: &self.scale[cols.clone()],
                colsum: &self.colsum[cols.clone()],
                bias: &self.bias[cols],
            };
            let panel_len = self.k4 * NR;
            let b = &self.data[p * panel_len..(p + 1) * panel_len];
            let prefetch =
                PanelPrefetch::next_panel_share(&self.data, panel_len, p, self.panels, row0, m_pad);
            // SAFETY: `supported()` was checked by the caller; `a` holds MR rows of `k4` quads
            // from `row0`, `b` holds `k4 × NR` quads, the epilogue vectors are NR wide, and
            // `corner` starts an MR × NR tile of the output (row stride `ldc`) that no other
            // call writes; `post` sees only that tile.
            unsafe {
                kernel_8x48(
                    self.k4,
                    &a[row0 * self.k4..],
                    self.k4,
                    b,
                    &epilogue,
                    corner,
                    ldc,
                    prefetch,
                );
                if let Some(post) = post {
                    post_process_tile(corner, ldc, post);
                }
            }
        });
        unpad(c, m, self.n, ldc)
    }
}

/// What turns a tile's i32 sums into outputs.
struct Epilogue<'a> {
    row_scale: &'a [f32; MR],
    row_zero: &'a [i32; MR],
    col_scale: &'a [f32],
    colsum: &'a [i32],
    bias: &'a [f32],
}

/// The [`MR`] values of a tile's rows (fixed-size, so the kernel's epilogue unrolls without
/// bounds checks).
fn tile_rows<T>(values: &[T], row0: usize) -> &[T; MR] {
    values[row0..row0 + MR]
        .try_into()
        .expect("a tile has MR rows")
}

/// Scale and zero point of the asymmetric u8 grid over `[min(lo, 0), max(hi, 0)]`.
fn u8_grid(lo: f32, hi: f32) -> (f32, f32) {
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    (scale, (-lo / scale).round_ties_even().clamp(0.0, 255.0))
}

/// Per-row asymmetric u8 quantisation: `(q, scale, zero)` with `v ≈ (q − zero)·scale`
/// (the portable statement of what the kernel's vector quantiser computes).
pub fn quantize_row_u8(values: &[f32]) -> (Vec<u8>, f32, i32) {
    let (lo, hi) = values
        .iter()
        .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (scale, zero) = u8_grid(lo, hi);
    let inv = 1.0 / scale;
    let q = values
        .iter()
        .map(|v| (v * inv + zero).round_ties_even().clamp(0.0, 255.0) as u8)
        .collect();
    (q, scale, zero as i32)
}

/// Quantises every row to u8 quads, padded to `m_pad` rows; returns the rows' scales and zero
/// points. (Padding columns meet zero weights, so their value does not matter.)
fn quantize_rows(x: &Matrix, m_pad: usize, k4: usize) -> (Vec<u32>, Vec<f32>, Vec<i32>) {
    let mut a = vec![0u32; m_pad * k4];
    let mut scales = vec![0.0f32; m_pad];
    let mut zeros = vec![0i32; m_pad];
    if x.cols > 0 {
        a.par_chunks_mut(k4)
            .zip(scales.par_iter_mut().zip(zeros.par_iter_mut()))
            .zip(x.data.par_chunks(x.cols))
            .for_each(|((dst, (scale, zero)), row)| {
                // SAFETY: the caller checked `supported()`; `dst` holds `4·k4 ≥ row.len()` bytes.
                (*scale, *zero) = unsafe { quantize_row_into(row, dst.as_mut_ptr() as *mut u8) };
            });
    }
    (a, scales, zeros)
}

/// [`quantize_row_u8`] with AVX-512, writing the `row.len()` bytes to `dst`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn quantize_row_into(row: &[f32], dst: *mut u8) -> (f32, i32) {
    use std::arch::x86_64::*;
    let (n, src) = (row.len(), row.as_ptr());
    let tail = n % 16;
    let tail_mask: __mmask16 = ((1u32 << tail) - 1) as u16;
    let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for i in (0..n - tail).step_by(16) {
        let v = _mm512_loadu_ps(src.add(i));
        (lo, hi) = (_mm512_min_ps(lo, v), _mm512_max_ps(hi, v));
    }
    // Masked-off lanes load 0, which the grid includes anyway.
    let v = _mm512_maskz_loadu_ps(tail_mask, src.add(n - tail));
    (lo, hi) = (_mm512_min_ps(lo, v), _mm512_max_ps(hi, v));
    let (scale, zero) = u8_grid(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
    let (inv, zero_v) = (_mm512_set1_ps(1.0 / scale), _mm512_set1_ps(zero));
    let quantize = |v: __m512| {
        // Multiply then add (no fma, as in `quantize_row_u8`), round to nearest even (the
        // default mode), clamp below at 0; the store saturates at 255.
        let q = _mm512_cvtps_epi32(_mm512_add_ps(_mm512_mul_ps(v, inv), zero_v));
        _mm512_max_epi32(q, _mm512_setzero_si512())
    };
    for i in (0..n - tail).step_by(16) {
        let q = quantize(_mm512_loadu_ps(src.add(i)));
        _mm512_mask_cvtusepi32_storeu_epi8(dst.add(i) as *mut i8, 0xFFFF, q);
    }
    let q = quantize(_mm512_maskz_loadu_ps(tail_mask, src.add(n - tail)));
    _mm512_mask_cvtusepi32_storeu_epi8(dst.add(n - tail) as *mut i8, tail_mask, q);
    (scale, zero as i32)
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn quantize_row_into(_: &[f32], _: *mut u8) -> (f32, i32) {
    unreachable!("the int8 kernel runs only where supported() is true")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_8x48(
    k4: usize,
    a: &[u32],
    lda: usize,
    b: &[u32],
    e: &Epilogue,
    cp: *mut f32,
    ldc: usize,
    prefetch: PanelPrefetch,
) {
    use std::arch::x86_64::*;
    debug_assert!(a.len() >= (MR - 1) * lda + k4 && b.len() >= k4 * NR);
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    let zero = _mm512_setzero_si512();
    let mut acc = [[zero; 3]; MR];
    for kq in 0..k4 {
        prefetch.touch(kq);
        let w = bp.add(kq * NR) as *const __m512i;
        let w0 = _mm512_loadu_si512(w);
        let w1 = _mm512_loadu_si512(w.add(1));
        let w2 = _mm512_loadu_si512(w.add(2));
        for (r, row) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_epi32(*ap.add(r * lda + kq) as i32);
            row[0] = _mm512_dpbusd_epi32(row[0], x, w0);
            row[1] = _mm512_dpbusd_epi32(row[1], x, w1);
            row[2] = _mm512_dpbusd_epi32(row[2], x, w2);
        }
    }
    // Row by row, so the loops unroll with the accumulators left in registers.
    let colsum = [0, 1, 2].map(|v| _mm512_loadu_si512(e.colsum[16 * v..].as_ptr() as *const _));
    let col_scale = [0, 1, 2].map(|v| _mm512_loadu_ps(e.col_scale[16 * v..].as_ptr()));
    let bias = [0, 1, 2].map(|v| _mm512_loadu_ps(e.bias[16 * v..].as_ptr()));
    for (r, row) in acc.iter().enumerate() {
        let (zero, row_scale) = (
            _mm512_set1_epi32(e.row_zero[r]),
            _mm512_set1_ps(e.row_scale[r]),
        );
        for v in 0..3 {
            let offset = _mm512_mullo_epi32(colsum[v], zero);
            let sums = _mm512_cvtepi32_ps(_mm512_sub_epi32(row[v], offset));
            let scale = _mm512_mul_ps(col_scale[v], row_scale);
            _mm512_storeu_ps(
                cp.add(r * ldc + 16 * v),
                _mm512_fmadd_ps(sums, scale, bias[v]),
            );
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_8x48(
    _: usize,
    _: &[u32],
    _: usize,
    _: &[u32],
    _: &Epilogue,
    _: *mut f32,
    _: usize,
    _: PanelPrefetch,
) {
    unreachable!("the int8 kernel runs only where supported() is true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_cases;

    #[test]
    fn vector_quantiser_matches_portable_one() {
        if !supported() {
            eprintln!("no AVX512_VNNI on this CPU: quantiser not exercised");
            return;
        }
        for len in [1, 5, 15, 16, 17, 33, 768, 3072] {
            for (shift, spread) in [(0.0, 1.0), (3.0, 0.7), (-2.0, 5.0), (0.0, 0.0)] {
                let row: Vec<f32> = (0..len)
                    .map(|i| shift + spread * (((i * 61 % 103) as f32) / 51.0 - 1.0))
                    .collect();
                let mut got = vec![0u8; len];
                // SAFETY: supported() holds and `got` has `len` bytes.
                let (scale, zero) = unsafe { quantize_row_into(&row, got.as_mut_ptr()) };
                let (want, want_scale, want_zero) = quantize_row_u8(&row);
                assert_eq!(
                    (got, scale, zero),
                    (want, want_scale, want_zero),
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn matches_quantised_reference_on_ragged_shapes() {
        if !supported() {
            eprintln!("no AVX512_VNNI on this CPU: kernel not exercised");
            return;
        }
        for &(m, k, n) in &test_cases::RAGGED {
            let (w, bias, x) = test_cases::inputs(m, k, n);
            let packed = PackedInt8::pack(&w, Some(&bias), k, n);
            let got = test_cases::with_post_op_checked((m, k, n), |post| packed.matmul(&x, post));
            let want = test_cases::int8_reference(&w, &bias, &x, n);
            test_cases::assert_close(&got, &want, (m, k, n));
        }
    }
}
