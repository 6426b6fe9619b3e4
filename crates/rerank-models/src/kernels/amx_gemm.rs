//! `y = x·Wᵀ + b` on Intel AMX tiles (see [`super::amx`]), in bf16 (`tdpbf16ps`, f32
//! accumulation) and int8 (`tdpbusd`, u8 activations × s8 weights, i32 accumulation, the int8
//! kernel's quantisation scheme).
//!
//! Weights are packed once, at load, into panels of 32 output columns, each a run of 1 KB
//! tiles (16 k-units × 16 columns, a k-unit being a bf16 pair or an int8 quad: the layout the
//! tile product reads); activations are packed per call into 1 KB row tiles (16 rows × 16
//! k-units), so every tile load is one contiguous kilobyte. Each call of the micro-kernel
//! computes a 32 × 32 block in the four accumulator tiles over up to `kc` k-blocks; deeper
//! layers take several passes, each going on from what the last one stored.

use rayon::prelude::*;

use super::amx::{self, TileOp, TILE_LANES, TILE_ROWS};
use super::bf16_gemm::pair;
use super::int8_gemm::{quantize_row, quantize_row_into};
use super::{post_process_tile_with, tiled_output_scoped, unpad, TilePost, Tiling};
use crate::layers::Matrix;

/// The tiling: 32 × 32 blocks (2 × 2 tiles), 128-row blocks per task, passes of 64 k-blocks
/// (2048 bf16 values: a 128 KB slice of a panel and 512 KB of a block's activations stay in
/// L2). Depth here counts k-blocks (16 k-units), not values.
const AMX: Tiling = Tiling {
    mr: 2 * TILE_ROWS,
    nr: 2 * TILE_ROWS,
    mc: 128,
    kc: 64,
};

/// True when this CPU runs the AMX kernels (see [`amx::available`]).
pub fn supported() -> bool {
    amx::available()
}

/// A weight packed in tiles: `panels × kb × 2` tiles of [`TILE_LANES`] k-units
/// (`[16 k-units][16 columns]`), the two tiles of a k-block being the panel's two column halves.
struct WeightTiles {
    k: usize,
    n: usize,
    /// k-blocks of 16 k-units.
    kb: usize,
    panels: usize,
    data: Vec<u32>,
}

impl WeightTiles {
    /// Packs `n` columns of `units` k-units each, `lane(col, unit)` giving one unit's 32 bits.
    fn pack(k: usize, n: usize, units: usize, lane: impl Fn(usize, usize) -> u32 + Sync) -> Self {
        let (kb, nr) = (units.div_ceil(TILE_ROWS), AMX.nr);
        let panels = n.div_ceil(nr);
        let panel_len = kb * 2 * TILE_LANES;
        let mut data = vec![0u32; panels * panel_len];
        data.par_chunks_mut(panel_len.max(1))
            .enumerate()
            .for_each(|(p, panel)| {
                for (i, tile) in panel.chunks_exact_mut(TILE_LANES).enumerate() {
                    let (block, half) = (i / 2, i % 2);
                    for (r, row) in tile.chunks_exact_mut(TILE_ROWS).enumerate() {
                        let unit = block * TILE_ROWS + r;
                        for (j, value) in row.iter_mut().enumerate() {
                            let col = p * nr + half * TILE_ROWS + j;
                            if col < n && unit < units {
                                *value = lane(col, unit);
                            }
                        }
                    }
                }
            });
        Self {
            k,
            n,
            kb,
            panels,
            data,
        }
    }

    /// A per-column vector padded to whole panels.
    fn padded<T: Copy + Default>(&self, values: Option<&[T]>) -> Vec<T> {
        let mut out = vec![T::default(); self.panels * AMX.nr];
        if let Some(v) = values {
            out[..self.n].copy_from_slice(&v[..self.n]);
        }
        out
    }

    /// Runs the tile products of `op` over row tiles `a` (from [`row_tiles`]) into a padded
    /// `[m_pad, panels·32]` output of 32-bit accumulators: each 32 × 32 block starts from
    /// `init(panel)` (32 values repeated on every row), and `finish(row0, panel, corner)` runs
    /// on it after its last pass. Returns the output as f32 (what `finish` leaves there).
    fn run(
        &self,
        op: TileOp,
        a: &[u32],
        m_pad: usize,
        init: impl Fn(usize) -> *const u32 + Sync,
        finish: impl Fn(usize, usize, *mut f32) + Sync,
    ) -> Vec<f32> {
        let (kb, ldc) = (self.kb, self.panels * AMX.nr);
        let panel_len = kb * 2 * TILE_LANES;
        // SAFETY (scope): AMX is available (checked when the weight was packed for it).
        let scope = |run: &mut dyn FnMut()| unsafe { amx::with_tiles(run) };
        tiled_output_scoped(
            AMX,
            m_pad,
            self.panels,
            kb,
            scope,
            |row0, p, depth, corner| {
                let tile_row = row0 / TILE_ROWS;
                let a0 = &a[tile_row * kb * TILE_LANES..];
                let a1 = &a[(tile_row + 1) * kb * TILE_LANES..];
                let b = &self.data[p * panel_len..(p + 1) * panel_len];
                let (first, last) = (depth.start == 0, depth.end == kb);
                // SAFETY: this runs inside `scope` (tiles configured); `a0`/`a1` start two row tiles of `kb` k-block tiles each, `b` holds `kb × 2` tiles, `init`
                // 32 values, `depth` lies in `0..kb`, and `corner` starts a 32 × 32 block of the
                // output (row stride `ldc`) that no other call writes and that earlier passes (if
                // any) stored.
                unsafe {
                    let c = corner as *const u32;
                    amx::load_accumulators((!first).then_some((c, ldc)), init(p));
                    for blk in depth {
                        let (ao, bo) = (blk * TILE_LANES, 2 * blk * TILE_LANES);
                        amx::multiply_step(
                            op,
                            a0[ao..].as_ptr(),
                            a1[ao..].as_ptr(),
                            b[bo..].as_ptr(),
                            b[bo + TILE_LANES..].as_ptr(),
                        );
                    }
                    amx::store_accumulators(corner, ldc);
                }
                if last {
                    finish(row0, p, corner);
                }
            },
        )
    }
}

/// Packs the rows of `x` into row tiles `[m_pad / 16][kb][16 rows][16 k-units]` (rows past `m`
/// and units past a row's end zero): `fill(i, units)` writes row `i`'s `kb·16` k-units and
/// returns what the caller keeps per row (`T::default()` for padding rows).
fn row_tiles<T: Send + Default + Clone>(
    x: &Matrix,
    m_pad: usize,
    kb: usize,
    fill: impl Fn(usize, &mut [u32]) -> T + Sync,
) -> (Vec<u32>, Vec<T>) {
    let tile_len = kb * TILE_LANES;
    let mut a = vec![0u32; m_pad * kb * TILE_ROWS];
    let tiles = m_pad / TILE_ROWS;
    let per_row: Vec<Vec<T>> = a
        .par_chunks_mut(tile_len.max(1))
        .take(tiles)
        .enumerate()
        .map(|(tile_row, dst)| {
            let mut kept = vec![T::default(); TILE_ROWS];
            let mut units = vec![0u32; kb * TILE_ROWS];
            for (r, keep) in kept.iter_mut().enumerate() {
                let i = tile_row * TILE_ROWS + r;
                if i >= x.rows {
                    break;
                }
                *keep = fill(i, &mut units);
                for (blk, chunk) in units.chunks_exact(TILE_ROWS).enumerate() {
                    let at = blk * TILE_LANES + r * TILE_ROWS;
                    dst[at..at + TILE_ROWS].copy_from_slice(chunk);
                }
            }
            kept
        })
        .collect();
    let mut kept: Vec<T> = per_row.into_iter().flatten().collect();
    kept.resize(m_pad, T::default());
    (a, kept)
}

/// A weight matrix rounded to bf16 and packed in AMX tiles.
pub struct PackedAmxBf16 {
    tiles: WeightTiles,
    /// Per column (zero-padded to whole panels).
    bias: Vec<f32>,
}

impl PackedAmxBf16 {
    /// Rounds (to nearest even) and packs a PyTorch-layout weight `[n, k]` and its bias.
    pub fn pack(weight: &[f32], bias: Option<&[f32]>, k: usize, n: usize) -> Self {
        assert_eq!(weight.len(), n * k, "amx bf16 weight size");
        let at = |col: usize, t: usize| if t < k { weight[col * k + t] } else { 0.0 };
        let tiles = WeightTiles::pack(k, n, k.div_ceil(2), |col, kp| {
            pair(at(col, 2 * kp), at(col, 2 * kp + 1))
        });
        let bias = tiles.padded(bias);
        Self { tiles, bias }
    }

    /// `post(x·Wᵀ + b)` (`[m, k]` → `[m, n]`), `post` applied in place to each block's rows
    /// after its last pass (e.g. a fused GELU; `None` for none). Call only where [`supported`]
    /// is true.
    pub fn matmul(&self, x: &Matrix, post: Option<TilePost>) -> Matrix {
        let t = &self.tiles;
        assert_eq!(x.cols, t.k, "amx bf16 gemm input width");
        assert!(supported(), "amx bf16 gemm needs AMX");
        let m_pad = x.rows.div_ceil(AMX.mr) * AMX.mr;
        let (a, _) = row_tiles(x, m_pad, t.kb, |i, units| {
            // SAFETY: AMX CPUs have AVX512_BF16 (checked by `supported`); `units` holds
            // `kb·32 ≥ k` bf16 values.
            unsafe { row_to_bf16(x.row(i), units.as_mut_ptr() as *mut u16) }
        });
        let ldc = t.panels * AMX.nr;
        let init = |p: usize| self.bias[p * AMX.nr..].as_ptr() as *const u32;
        let c = t.run(TileOp::Bf16, &a, m_pad, init, |_, _, corner| {
            if let Some(post) = post {
                // SAFETY: `corner` starts this call's own 32 × 32 block (row stride `ldc`).
                unsafe { post_process_tile_with(AMX, corner, ldc, post) };
            }
        });
        unpad(c, x.rows, t.n, ldc)
    }
}

/// A weight matrix quantised (per output channel, symmetric s8) and packed in AMX tiles.
pub struct PackedAmxInt8 {
    tiles: WeightTiles,
    /// Per column (zero-padded to whole panels): weight scale, `Σ_k q`, bias.
    scale: Vec<f32>,
    colsum: Vec<i32>,
    bias: Vec<f32>,
}

impl PackedAmxInt8 {
    /// Quantises and packs a PyTorch-layout weight `[n, k]` and its bias.
    pub fn pack(weight: &[f32], bias: Option<&[f32]>, k: usize, n: usize) -> Self {
        assert_eq!(weight.len(), n * k, "amx int8 weight size");
        let quantised: Vec<(Vec<i8>, f32)> = (0..n)
            .into_par_iter()
            .map(|col| quantize_row(&weight[col * k..(col + 1) * k]))
            .collect();
        let tiles = WeightTiles::pack(k, n, k.div_ceil(4), |col, kq| {
            let q = &quantised[col].0;
            let byte = |t: usize| q.get(4 * kq + t).copied().unwrap_or(0) as u8;
            u32::from_le_bytes([byte(0), byte(1), byte(2), byte(3)])
        });
        let scales: Vec<f32> = quantised.iter().map(|(_, s)| *s).collect();
        let sums: Vec<i32> = quantised
            .iter()
            .map(|(q, _)| q.iter().map(|&v| v as i32).sum())
            .collect();
        Self {
            scale: tiles.padded(Some(&scales)),
            colsum: tiles.padded(Some(&sums)),
            bias: tiles.padded(bias),
            tiles,
        }
    }

    /// `post(x·Wᵀ + b)` (`[m, k]` → `[m, n]`) with `x` quantised per row to u8 (as the int8
    /// kernel does), `post` applied in place to each block's rows. Call only where
    /// [`supported`] is true.
    pub fn matmul(&self, x: &Matrix, post: Option<TilePost>) -> Matrix {
        let t = &self.tiles;
        assert_eq!(x.cols, t.k, "amx int8 gemm input width");
        assert!(supported(), "amx int8 gemm needs AMX");
        let m_pad = x.rows.div_ceil(AMX.mr) * AMX.mr;
        let (a, grids) = row_tiles(x, m_pad, t.kb, |i, units| {
            // SAFETY: AMX CPUs have AVX-512 F/BW (checked by `supported`); `units` holds
            // `kb·64 ≥ k` bytes.
            unsafe { quantize_row_into(x.row(i), units.as_mut_ptr() as *mut u8) }
        });
        let ldc = t.panels * AMX.nr;
        let zeros = [0u32; 32];
        let c = t.run(
            TileOp::U8S8,
            &a,
            m_pad,
            |_| zeros.as_ptr(),
            |row0, p, corner| {
                let cols = p * AMX.nr..(p + 1) * AMX.nr;
                let e = Dequantize {
                    rows: &grids[row0..row0 + AMX.mr],
                    col_scale: &self.scale[cols.clone()],
                    colsum: &self.colsum[cols.clone()],
                    bias: &self.bias[cols],
                };
                // SAFETY: `corner` starts this call's own 32 × 32 block of i32 sums (row stride
                // `ldc`); the epilogue rewrites it in place as f32.
                unsafe {
                    e.apply(corner, ldc);
                    if let Some(post) = post {
                        post_process_tile_with(AMX, corner, ldc, post);
                    }
                }
            },
        );
        unpad(c, x.rows, t.n, ldc)
    }
}

/// Turns a block's i32 sums into `(sum − zero_r·colsum_c)·scale_r·scale_c + bias_c`.
struct Dequantize<'a> {
    /// Per row: the activations' (scale, zero point).
    rows: &'a [(f32, i32)],
    col_scale: &'a [f32],
    colsum: &'a [i32],
    bias: &'a [f32],
}

impl Dequantize<'_> {
    /// # Safety
    /// AVX-512 F must be available; `corner` must start a 32 × 32 block of i32 (row stride
    /// `ldc`) that the caller alone writes.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn apply(&self, corner: *mut f32, ldc: usize) {
        use std::arch::x86_64::*;
        let halves = [0, 16];
        let colsum = halves.map(|h| _mm512_loadu_si512(self.colsum[h..].as_ptr() as *const _));
        let col_scale = halves.map(|h| _mm512_loadu_ps(self.col_scale[h..].as_ptr()));
        let bias = halves.map(|h| _mm512_loadu_ps(self.bias[h..].as_ptr()));
        for (r, &(scale, zero)) in self.rows.iter().enumerate() {
            let (zero, scale) = (_mm512_set1_epi32(zero), _mm512_set1_ps(scale));
            for v in 0..2 {
                let out = corner.add(r * ldc + 16 * v);
                let sums = _mm512_loadu_si512(out as *const _);
                let sums = _mm512_sub_epi32(sums, _mm512_mullo_epi32(colsum[v], zero));
                let scale = _mm512_mul_ps(col_scale[v], scale);
                let value = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, bias[v]);
                _mm512_storeu_ps(out, value);
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn apply(&self, _: *mut f32, _: usize) {
        unreachable!("AMX kernels run only where supported() is true")
    }
}

/// Rounds `row` to bf16 (nearest even) into `dst`, in order (`vcvtneps2bf16`).
///
/// # Safety
/// AVX512_BF16 must be available; `dst` must have room for `row.len()` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16,avx512vl")]
unsafe fn row_to_bf16(row: &[f32], dst: *mut u16) {
    use std::arch::x86_64::*;
    let (n, src) = (row.len(), row.as_ptr());
    let tail = n % 16;
    for i in (0..n - tail).step_by(16) {
        let v: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(src.add(i))));
        _mm256_storeu_si256(dst.add(i) as *mut __m256i, v);
    }
    let mask: __mmask16 = ((1u32 << tail) - 1) as u16;
    let v = _mm512_maskz_loadu_ps(mask, src.add(n - tail));
    let v: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
    _mm256_mask_storeu_epi16(dst.add(n - tail) as *mut i16, mask, v);
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn row_to_bf16(_: &[f32], _: *mut u16) {
    unreachable!("AMX kernels run only where supported() is true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_cases;

    /// The ragged shapes, plus one deeper than a pass (two passes of 64 k-blocks in int8,
    /// three in bf16).
    fn shapes() -> impl Iterator<Item = (usize, usize, usize)> {
        test_cases::RAGGED.iter().copied().chain([(37, 4100, 40)])
    }

    #[test]
    fn bf16_matches_reference_on_ragged_shapes() {
        if !supported() {
            eprintln!("no AMX on this CPU: kernel not exercised");
            return;
        }
        for (m, k, n) in shapes() {
            let (w, bias, x) = test_cases::inputs(m, k, n);
            let packed = PackedAmxBf16::pack(&w, Some(&bias), k, n);
            let got = test_cases::with_post_op_checked((m, k, n), |post| packed.matmul(&x, post));
            let want = test_cases::bf16_reference(&w, &bias, &x, n);
            test_cases::assert_close(&got, &want, (m, k, n));
        }
    }

    #[test]
    fn int8_matches_quantised_reference_on_ragged_shapes() {
        if !supported() {
            eprintln!("no AMX on this CPU: kernel not exercised");
            return;
        }
        for (m, k, n) in shapes() {
            let (w, bias, x) = test_cases::inputs(m, k, n);
            let packed = PackedAmxInt8::pack(&w, Some(&bias), k, n);
            let got = test_cases::with_post_op_checked((m, k, n), |post| packed.matmul(&x, post));
            let want = test_cases::int8_reference(&w, &bias, &x, n);
            test_cases::assert_close(&got, &want, (m, k, n));
        }
    }
}
