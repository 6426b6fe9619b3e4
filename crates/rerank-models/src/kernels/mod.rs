//! CPU kernels that are the product: GEMMs on weights pre-packed at load for the instruction
//! that consumes them, chosen at run time from the CPU's features.
//!
//! The AVX-512 kernels share one tiling: weights in panels of [`NR`] output columns, [`MR`]-row
//! micro-kernel tiles, [`MC`]-row blocks spread over the threads, and an output padded to whole
//! tiles and panels that [`unpad`] cuts back. Kernels for narrower registers (AVX2) use the same
//! helpers with their own [`Tiling`].

pub mod amx;
pub mod amx_gemm;
pub mod attention;
pub mod bf16_gemm;
pub mod bf16w_gemm;
pub mod f32_gemm;
pub mod int8_gemm;
pub mod peak;

use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

use crate::layers::Matrix;
use crate::runtime;

/// Output columns per packed panel (3 × 16 f32 lanes).
pub(crate) const NR: usize = 48;
/// Rows per micro-kernel call.
pub(crate) const MR: usize = 8;
/// Rows per parallel block (a block's packed activations stay in L2 across panels).
pub(crate) const MC: usize = 64;

/// A kernel's tile sizes: rows per micro-kernel call, output columns per packed panel, rows
/// per parallel block (`mc` a multiple of `mr`), and the depth `kc` of one pass over a
/// block's tiles (so that much of a panel stays in L1 while the block's tiles use it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tiling {
    pub(crate) mr: usize,
    pub(crate) nr: usize,
    pub(crate) mc: usize,
    pub(crate) kc: usize,
}

/// The AVX-512 kernels' tiling ([`MR`] × [`NR`] tiles in [`MC`]-row blocks, the whole depth
/// in one pass).
pub(crate) const AVX512: Tiling = Tiling {
    mr: MR,
    nr: NR,
    mc: MC,
    kc: usize::MAX,
};

/// The first `m` rows and `n` columns of a padded `[_, ldc]` output.
pub(crate) fn unpad(mut c: Vec<f32>, m: usize, n: usize, ldc: usize) -> Matrix {
    if ldc == n {
        c.truncate(m * ldc);
        return Matrix::from_vec(c, m, n);
    }
    let mut out = Vec::with_capacity(m * n);
    for row in c.chunks_exact(ldc).take(m) {
        out.extend_from_slice(&row[..n]);
    }
    Matrix::from_vec(out, m, n)
}

/// An output's base pointer, shared by parallel tasks that each write their own disjoint part
/// (tiles of a GEMM, heads of attention).
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);

impl OutPtr {
    /// The pointer `offset` values past the base.
    ///
    /// # Safety
    /// `offset` must lie inside the output.
    pub(crate) unsafe fn at(self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}

/// The part of the next weight panel that one tile prefetches into L2 while it runs.
///
/// Tiles visit a panel row tile by row tile, then move to the next panel (see
/// [`tiled_output`]); only the first tile of a panel would read it from memory, stalling on
/// every cache line. Instead, the row tiles of a block each prefetch an equal share of the next
/// panel (which follows in memory), one line per step of their k loop. A/B on a 64-token
/// bge-reranker-base pass in int8 (whose 85 MB of weights stream from memory), one thread,
/// 3 alternations: 32.6 → 30.3 ms (mean).
#[derive(Clone, Copy)]
pub(crate) struct PanelPrefetch {
    start: *const u8,
    lines: usize,
}

impl PanelPrefetch {
    /// The share of panel `panel + 1` (of `panels`, each `panel_len` values of `data`) for the
    /// tile at `row0` of an `m_pad`-row output; empty for the last panel.
    pub(crate) fn next_panel_share<T>(
        data: &[T],
        panel_len: usize,
        panel: usize,
        panels: usize,
        row0: usize,
        m_pad: usize,
    ) -> Self {
        Self::next_panel_share_tiled(AVX512, data, panel_len, panel, panels, row0, m_pad)
    }

    /// [`PanelPrefetch::next_panel_share`] for a kernel with its own `tiling`.
    pub(crate) fn next_panel_share_tiled<T>(
        tiling: Tiling,
        data: &[T],
        panel_len: usize,
        panel: usize,
        panels: usize,
        row0: usize,
        m_pad: usize,
    ) -> Self {
        let Tiling { mr, mc, .. } = tiling;
        if panel + 1 >= panels {
            return Self {
                start: std::ptr::null(),
                lines: 0,
            };
        }
        let block0 = row0 / mc * mc;
        let tiles = (m_pad.min(block0 + mc) - block0) / mr;
        let tile = (row0 - block0) / mr;
        let lines = (panel_len * std::mem::size_of::<T>()).div_ceil(64);
        let (first, end) = (tile * lines / tiles, (tile + 1) * lines / tiles);
        let next = data[(panel + 1) * panel_len..].as_ptr() as *const u8;
        Self {
            start: next.wrapping_add(first * 64),
            lines: end - first,
        }
    }

    /// Prefetches line `i` of the share into L2 (nothing past its end).
    #[inline(always)]
    pub(crate) fn touch(self, i: usize) {
        #[cfg(target_arch = "x86_64")]
        if i < self.lines {
            // SAFETY: prefetching never faults; the address lies inside the next panel.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                    self.start.wrapping_add(i * 64) as *const i8,
                )
            };
        }
    }
}

/// An [`MR`] × [`NR`] tile of f32 accumulators, three `zmm` registers a row, as the AVX-512
/// kernels keep it.
#[cfg(target_arch = "x86_64")]
pub(crate) type AccTile = [[std::arch::x86_64::__m512; 3]; MR];

/// Loads an [`AccTile`] from `src`, rows `stride` values apart (0 repeats one row: a bias).
///
/// # Safety
/// AVX-512F must be present and `src` must address [`MR`] rows of [`NR`] values at `stride`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn load_tile(src: *const f32, stride: usize) -> AccTile {
    use std::arch::x86_64::_mm512_loadu_ps;
    std::array::from_fn(|r| {
        let row = src.add(r * stride);
        [
            _mm512_loadu_ps(row),
            _mm512_loadu_ps(row.add(16)),
            _mm512_loadu_ps(row.add(32)),
        ]
    })
}

/// Stores an [`AccTile`] at `cp`, rows `ldc` values apart.
///
/// # Safety
/// AVX-512F must be present and `cp` must address [`MR`] rows of [`NR`] values at `ldc` that
/// the caller alone writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn store_tile(acc: &AccTile, cp: *mut f32, ldc: usize) {
    use std::arch::x86_64::_mm512_storeu_ps;
    for (r, row) in acc.iter().enumerate() {
        let out = cp.add(r * ldc);
        _mm512_storeu_ps(out, row[0]);
        _mm512_storeu_ps(out.add(16), row[1]);
        _mm512_storeu_ps(out.add(32), row[2]);
    }
}

/// A bias zero-padded to `len` values (a packed weight's whole panels); zeros without one.
pub(crate) fn padded_bias(bias: Option<&[f32]>, len: usize) -> Vec<f32> {
    let mut padded = vec![0.0; len];
    if let Some(b) = bias {
        padded[..b.len()].copy_from_slice(b);
    }
    padded
}

/// An in-place operation on a row segment of an output tile (a fused activation).
pub type TilePost<'a> = &'a (dyn Fn(&mut [f32]) + Sync);

// SAFETY: every user hands each part of the output to exactly one task (`tiled_output` its
// tiles, `packed_attention` its (sequence, head) blocks), so writes never overlap.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// Builds a padded `[m_pad, panels·NR]` output by calling `tile(row0, panel, corner)` for every
/// [`MR`]-row tile and [`NR`]-column panel, where `corner` points at the tile's first value and
/// `tile` must write all `MR × NR` values there (row stride `panels·NR`).
///
/// Tasks are [`MC`]-row blocks; when there are too few blocks to keep every thread busy (short
/// batches, a single pair) the panels are split between tasks as well, so W3-sized inputs use
/// all cores. Each tile is visited exactly once. The buffer is not zeroed first: every value is
/// written by its tile.
pub(crate) fn tiled_output(
    m_pad: usize,
    panels: usize,
    tile: impl Fn(usize, usize, *mut f32) + Sync,
) -> Vec<f32> {
    tiled_output_with(AVX512, m_pad, panels, 0, |row0, panel, _, corner| {
        tile(row0, panel, corner)
    })
}

/// [`tiled_output`] for a kernel with its own `tiling`: `mr`-row tiles, `nr`-column panels,
/// `mc`-row blocks, and the depth `0..k` in passes of `kc`: `tile(row0, panel, depth, corner)`
/// is called for each pass over a block's tiles in a panel, in order of depth (at least once,
/// with `0..0`, when `k` is 0); the first pass must write the whole tile, later ones add to it.
pub(crate) fn tiled_output_with(
    tiling: Tiling,
    m_pad: usize,
    panels: usize,
    k: usize,
    tile: impl Fn(usize, usize, Range<usize>, *mut f32) + Sync,
) -> Vec<f32> {
    tiled_output_scoped(tiling, m_pad, panels, k, |run| run(), tile)
}

/// [`tiled_output_with`] where each parallel task's tiles run inside `scope` (`scope(run)`
/// must call `run` once): per-task set-up such as loading the AMX tile configuration.
pub(crate) fn tiled_output_scoped(
    tiling: Tiling,
    m_pad: usize,
    panels: usize,
    k: usize,
    scope: impl Fn(&mut dyn FnMut()) + Sync,
    tile: impl Fn(usize, usize, Range<usize>, *mut f32) + Sync,
) -> Vec<f32> {
    let Tiling { mr, nr, mc, kc } = tiling;
    let ldc = panels * nr;
    assert!(
        m_pad.is_multiple_of(mr) && mc.is_multiple_of(mr),
        "tile rows"
    );
    let len = m_pad * ldc;
    let mut c: Vec<MaybeUninit<f32>> = Vec::with_capacity(len);
    // SAFETY: MaybeUninit needs no initialisation.
    unsafe { c.set_len(len) };
    let blocks = m_pad.div_ceil(mc);
    let wanted = 2 * runtime::threads();
    let groups = if blocks >= wanted {
        1
    } else {
        wanted.div_ceil(blocks.max(1)).min(panels).max(1)
    };
    let per_group = panels.div_ceil(groups);
    let out = OutPtr(c.as_mut_ptr() as *mut f32);
    (0..blocks * groups).into_par_iter().for_each(|task| {
        let (block, group) = (task / groups, task % groups);
        let rows = block * mc..((block + 1) * mc).min(m_pad);
        scope(&mut || {
            for panel in group * per_group..((group + 1) * per_group).min(panels) {
                for k0 in (0..k.max(1)).step_by(kc) {
                    for row0 in rows.clone().step_by(mr) {
                        let depth = k0..k0.saturating_add(kc).min(k);
                        // SAFETY: row0 + mr ≤ m_pad and panel < panels, so the tile lies
                        // inside `c`.
                        tile(row0, panel, depth, unsafe {
                            out.at(row0 * ldc + panel * nr)
                        });
                    }
                }
            }
        });
    });
    let mut c = std::mem::ManuallyDrop::new(c);
    // SAFETY: the tiles cover every row in 0..m_pad and every column in 0..ldc once, and each
    // call wrote its whole tile, so all `len` values are initialised; MaybeUninit<f32> has
    // f32's layout, so the allocation is handed over unchanged.
    unsafe { Vec::from_raw_parts(c.as_mut_ptr() as *mut f32, len, c.capacity()) }
}

/// Runs `post` over each of a tile's `MR` row segments of `NR` values (a fused activation).
///
/// # Safety
/// `corner` must start an `MR × NR` tile (row stride `ldc`) that the caller alone writes.
pub(crate) unsafe fn post_process_tile(corner: *mut f32, ldc: usize, post: &dyn Fn(&mut [f32])) {
    post_process_tile_with(AVX512, corner, ldc, post)
}

/// [`post_process_tile`] for an `mr × nr` tile of `tiling`.
///
/// # Safety
/// `corner` must start an `mr × nr` tile (row stride `ldc`) that the caller alone writes.
pub(crate) unsafe fn post_process_tile_with(
    tiling: Tiling,
    corner: *mut f32,
    ldc: usize,
    post: &dyn Fn(&mut [f32]),
) {
    for r in 0..tiling.mr {
        post(std::slice::from_raw_parts_mut(
            corner.add(r * ldc),
            tiling.nr,
        ));
    }
}

/// Test inputs for the kernels: ragged `(m, k, n)` shapes (odd `k`, partial tiles and panels)
/// and deterministic weights, bias and activations for each.
#[cfg(test)]
pub(crate) mod test_cases {
    use crate::layers::Matrix;

    /// `(m, k, n)` shapes that exercise every padding path.
    pub const RAGGED: [(usize, usize, usize); 5] = [
        (1, 7, 5),
        (9, 64, 48),
        (17, 33, 100),
        (64, 128, 96),
        (130, 96, 50),
    ];

    /// The exact product of bf16-rounded inputs plus bias, accumulated in f64.
    pub fn bf16_reference(w: &[f32], bias: &[f32], x: &Matrix, n: usize) -> Vec<f32> {
        use crate::kernels::bf16_gemm::{from_bf16_bits, to_bf16_bits};
        let r = |v: f32| from_bf16_bits(to_bf16_bits(v)) as f64;
        let k = x.cols;
        let mut out = vec![0.0; x.rows * n];
        for i in 0..x.rows {
            for j in 0..n {
                let dot: f64 = (0..k).map(|t| r(x.data[i * k + t]) * r(w[j * k + t])).sum();
                out[i * n + j] = (dot + bias[j] as f64) as f32;
            }
        }
        out
    }

    /// The int8 kernels' result computed in f64: rows quantised to u8 per row, weights to s8
    /// per column, plus bias.
    pub fn int8_reference(w: &[f32], bias: &[f32], x: &Matrix, n: usize) -> Vec<f32> {
        use crate::kernels::int8_gemm::{quantize_row_u8, PackedInt8};
        let k = x.cols;
        let wq = PackedInt8::dequantized(w, k, n);
        let mut out = vec![0.0; x.rows * n];
        for i in 0..x.rows {
            let (q, s, z) = quantize_row_u8(x.row(i));
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|t| (q[t] as f64 - z as f64) * s as f64 * wq[j * k + t] as f64)
                    .sum();
                out[i * n + j] = (dot + bias[j] as f64) as f32;
            }
        }
        out
    }

    /// `(x·Wᵀ + b, Σ|terms|)` accumulated in f64: the exact products an f32 kernel forms, and
    /// the scale of its f32 rounding error.
    fn f32_reference(w: &[f32], bias: &[f32], x: &Matrix, n: usize) -> (Vec<f64>, Vec<f64>) {
        let k = x.cols;
        let (mut out, mut scale) = (vec![0.0; x.rows * n], vec![0.0; x.rows * n]);
        for i in 0..x.rows {
            for j in 0..n {
                let terms = (0..k).map(|t| x.data[i * k + t] as f64 * w[j * k + t] as f64);
                let (dot, abs) = terms.fold((0.0, 0.0), |(s, a), v| (s + v, a + v.abs()));
                out[i * n + j] = dot + bias[j] as f64;
                scale[i * n + j] = abs + (bias[j] as f64).abs();
            }
        }
        (out, scale)
    }

    /// Checks a kernel that accumulates exact products in f32 on the ragged shapes and `extra`
    /// ones: `matmul(w, bias, x, post)` packs and multiplies; the result must be within f32
    /// rounding of the exact product of the `round`ed weights.
    pub fn check_f32_accumulation(
        extra: &[(usize, usize, usize)],
        round: impl Fn(f32) -> f32,
        matmul: impl Fn(&[f32], &[f32], &Matrix, Option<super::TilePost>) -> Matrix,
    ) {
        for &(m, k, n) in RAGGED.iter().chain(extra) {
            let (w, bias, x) = inputs(m, k, n);
            let got = with_post_op_checked((m, k, n), |post| matmul(&w, &bias, &x, post));
            let rounded: Vec<f32> = w.iter().map(|&v| round(v)).collect();
            let (want, scale) = f32_reference(&rounded, &bias, &x, n);
            assert_within_f32_rounding(&got, &want, &scale, (m, k, n));
        }
    }

    /// Asserts `got` (`[m, n]`) is within f32 accumulation error of `want`: for `k + 1` terms,
    /// `|error| ≤ (k + 1)·2⁻²⁴·Σ|terms|` (`scale`, from [`f32_reference`]).
    fn assert_within_f32_rounding(
        got: &Matrix,
        want: &[f64],
        scale: &[f64],
        (m, k, n): (usize, usize, usize),
    ) {
        assert_eq!((got.rows, got.cols), (m, n));
        for (i, g) in got.data.iter().enumerate() {
            let bound = (k + 1) as f64 * 2f64.powi(-24) * scale[i] + 1e-30;
            assert!(
                (*g as f64 - want[i]).abs() <= bound,
                "{m}x{k}x{n} [{i}]: {g} vs {}",
                want[i]
            );
        }
    }

    /// Asserts `got` (`[m, n]`) equals `want` within `1e-3·(1 + |want|)`.
    pub fn assert_close(got: &Matrix, want: &[f32], (m, k, n): (usize, usize, usize)) {
        assert_eq!((got.rows, got.cols), (m, n));
        for (idx, (g, r)) in got.data.iter().zip(want).enumerate() {
            assert!(
                (g - r).abs() <= 1e-3 * (1.0 + r.abs()),
                "{m}x{k}x{n} [{}, {}]: {g} vs {r}",
                idx / n.max(1),
                idx % n.max(1)
            );
        }
    }

    /// Runs `matmul` without and with a fused post-op and checks the fused output equals the
    /// post-op applied afterwards; returns the plain output.
    pub fn with_post_op_checked(
        shape: (usize, usize, usize),
        matmul: impl Fn(Option<super::TilePost>) -> Matrix,
    ) -> Matrix {
        let plain = matmul(None);
        let post = |v: &mut [f32]| v.iter_mut().for_each(|y| *y = 2.0 * *y - 1.0);
        let fused = matmul(Some(&post));
        let want: Vec<f32> = plain.data.iter().map(|y| 2.0 * y - 1.0).collect();
        assert_eq!(fused.data, want, "{shape:?}: fused post-op");
        plain
    }

    /// `(weight [n, k], bias [n], x [m, k])`.
    pub fn inputs(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Matrix) {
        let w = (0..n * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let bias = (0..n).map(|i| i as f32 * 0.1 - 1.0).collect();
        let x = (0..m * k)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 20.0)
            .collect();
        (w, bias, Matrix::from_vec(x, m, k))
    }
}
