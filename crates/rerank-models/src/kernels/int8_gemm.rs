//! `y = x·Wᵀ + b` in int8 on AVX512_VNNI (`vpdpbusd`, u8 × s8 → i32): weights quantised once, at
//! load, per output channel (symmetric, scale = max|w|/127) and packed in panels of 48 columns
//! of 4-byte quads; activations quantised per token (row) on every call, asymmetric u8
//! (scale = (max − min)/255 and a zero point, so skewed rows such as GELU outputs use all 256
//! levels); the zero point is taken back out with the weights' column sums.
//! CPUs without AVX512_VNNI use the f32 path on the dequantised weights.

use rayon::prelude::*;

use super::{unpad, MC, MR, NR};
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

    /// `x·Wᵀ + b` (`[m, k]` → `[m, n]`). Call only where [`supported`] is true.
    pub fn matmul(&self, x: &Matrix) -> Matrix {
        assert_eq!(x.cols, self.k, "int8 gemm input width");
        let m = x.rows;
        let m_pad = m.div_ceil(MR) * MR;
        let ldc = self.panels * NR;
        let (a, row_scale, row_zero) = quantize_rows(x, m_pad, self.k4);
        let mut c = vec![0.0f32; m_pad * ldc];
        c.par_chunks_mut(MC * ldc)
            .enumerate()
            .for_each(|(block, c_block)| {
                let rows = c_block.len() / ldc;
                let first = block * MC;
                let a_block = &a[first * self.k4..(first + rows) * self.k4];
                for p in 0..self.panels {
                    let cols = p * NR..(p + 1) * NR;
                    let b = &self.data[p * self.k4 * NR..(p + 1) * self.k4 * NR];
                    for tile in 0..rows / MR {
                        let r0 = tile * MR;
                        let epilogue = Epilogue {
                            row_scale: &row_scale[first + r0..first + r0 + MR],
                            row_zero: &row_zero[first + r0..first + r0 + MR],
                            col_scale: &self.scale[cols.clone()],
                            colsum: &self.colsum[cols.clone()],
                            bias: &self.bias[cols.clone()],
                        };
                        let c_tile = &mut c_block[r0 * ldc + p * NR..];
                        // SAFETY: `supported()` was checked by the caller; the slices hold MR rows
                        // of `k4` quads (a), `k4 × NR` quads (b), NR-wide epilogue vectors and MR
                        // rows of `ldc` floats from the tile's corner (c).
                        unsafe {
                            kernel_8x48(
                                self.k4,
                                &a_block[r0 * self.k4..],
                                self.k4,
                                b,
                                &epilogue,
                                c_tile,
                                ldc,
                            )
                        };
                    }
                }
            });
        unpad(c, m, self.n, ldc)
    }
}

/// What turns a tile's i32 sums into outputs.
struct Epilogue<'a> {
    row_scale: &'a [f32],
    row_zero: &'a [i32],
    col_scale: &'a [f32],
    colsum: &'a [i32],
    bias: &'a [f32],
}

/// Per-row asymmetric u8 quantisation: `(q, scale, zero)` with `v ≈ (q − zero)·scale`.
pub fn quantize_row_u8(values: &[f32]) -> (Vec<u8>, f32, i32) {
    let (lo, hi) = values
        .iter()
        .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zero = (-lo / scale).round().clamp(0.0, 255.0);
    let inv = 1.0 / scale;
    let q = values
        .iter()
        .map(|v| (v * inv + zero).round().clamp(0.0, 255.0) as u8)
        .collect();
    (q, scale, zero as i32)
}

/// Quantises every row to u8 quads, padded to `m_pad` rows; returns the rows' scales and zero
/// points. (Padding columns meet zero weights, so their value does not matter.)
fn quantize_rows(x: &Matrix, m_pad: usize, k4: usize) -> (Vec<u32>, Vec<f32>, Vec<i32>) {
    let mut a = vec![0u32; m_pad * k4];
    let mut scales = vec![0.0f32; m_pad];
    let mut zeros = vec![0i32; m_pad];
    a.par_chunks_mut(k4)
        .zip(scales.par_iter_mut().zip(zeros.par_iter_mut()))
        .zip(x.data.par_chunks(x.cols))
        .for_each(|((dst, (scale, zero)), row)| {
            let (q, s, z) = quantize_row_u8(row);
            (*scale, *zero) = (s, z);
            for (d, quad) in dst.iter_mut().zip(q.chunks(4)) {
                let mut bytes = [0u8; 4];
                bytes[..quad.len()].copy_from_slice(quad);
                *d = u32::from_le_bytes(bytes);
            }
        });
    (a, scales, zeros)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn kernel_8x48(
    k4: usize,
    a: &[u32],
    lda: usize,
    b: &[u32],
    e: &Epilogue,
    c: &mut [f32],
    ldc: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(
        a.len() >= (MR - 1) * lda + k4 && b.len() >= k4 * NR && c.len() >= (MR - 1) * ldc + NR
    );
    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    let zero = _mm512_setzero_si512();
    let mut acc = [[zero; 3]; MR];
    for kq in 0..k4 {
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
    for v in 0..3 {
        let colsum = _mm512_loadu_si512(e.colsum.as_ptr().add(16 * v) as *const __m512i);
        let col_scale = _mm512_loadu_ps(e.col_scale.as_ptr().add(16 * v));
        let bias = _mm512_loadu_ps(e.bias.as_ptr().add(16 * v));
        for (r, row) in acc.iter().enumerate() {
            let offset = _mm512_mullo_epi32(colsum, _mm512_set1_epi32(e.row_zero[r]));
            let sums = _mm512_cvtepi32_ps(_mm512_sub_epi32(row[v], offset));
            let scale = _mm512_mul_ps(col_scale, _mm512_set1_ps(e.row_scale[r]));
            _mm512_storeu_ps(cp.add(r * ldc + 16 * v), _mm512_fmadd_ps(sums, scale, bias));
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel_8x48(
    _: usize,
    _: &[u32],
    _: usize,
    _: &[u32],
    _: &Epilogue,
    _: &mut [f32],
    _: usize,
) {
    unreachable!("the int8 kernel runs only where supported() is true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_cases;

    #[test]
    fn matches_quantised_reference_on_ragged_shapes() {
        if !supported() {
            eprintln!("no AVX512_VNNI on this CPU: kernel not exercised");
            return;
        }
        for &(m, k, n) in &test_cases::RAGGED {
            let (w, bias, x) = test_cases::inputs(m, k, n);
            let got = PackedInt8::pack(&w, Some(&bias), k, n).matmul(&x);
            let wq = PackedInt8::dequantized(&w, k, n);
            for i in 0..m {
                let (q, s, z) = quantize_row_u8(x.row(i));
                for j in 0..n {
                    let dot: f64 = (0..k)
                        .map(|t| (q[t] as f64 - z as f64) * s as f64 * wq[j * k + t] as f64)
                        .sum();
                    let want = (dot + bias[j] as f64) as f32;
                    let g = got.data[i * n + j];
                    assert!(
                        (g - want).abs() <= 1e-3 * (1.0 + want.abs()),
                        "{m}x{k}x{n} [{i},{j}]: {g} vs {want}"
                    );
                }
            }
        }
    }
}
