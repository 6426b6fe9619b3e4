//! One attention head of one sequence in f32 with AVX-512: `softmax(Q·Kᵀ/√d)·V` written
//! straight into the layer's output rows.
//!
//! The head's keys are transposed (and scaled by 1/√d) once into a `[d, n]` panel, so both
//! products become register-blocked broadcast-FMA loops: 4 query rows × 64 columns (16
//! accumulators) per tile. For the short sequences of reranking (64–512 tokens) this beats a
//! general GEMM, whose packing and dispatch cost more than the 4–100 MFLOP of one head.

use crate::layers::fastmath::softmax_inplace;

/// Query rows per tile.
const ROWS: usize = 4;
/// 16-lane vectors per tile (64 columns).
const VECS: usize = 4;
const LANES: usize = 16;

/// True when this CPU can run [`attend_head`] for heads of `head_dim` values.
pub fn supported(head_dim: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        head_dim.is_multiple_of(LANES) && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = head_dim;
        false
    }
}

/// Where one head reads its inputs and writes its output.
pub struct HeadIo {
    /// First query value: row `start` of the `[tokens, 3·hidden]` QKV matrix, at the head's column.
    pub q: *const f32,
    /// First key value (same row, `hidden` columns on).
    pub k: *const f32,
    /// First value value (same row, `2·hidden` columns on).
    pub v: *const f32,
    /// Row stride of the QKV matrix.
    pub qkv_stride: usize,
    /// Tokens of the sequence (keys and values).
    pub n: usize,
    /// Query rows to compute (the first `n_queries` tokens).
    pub n_queries: usize,
    /// Values per head.
    pub head_dim: usize,
    /// First output value (the head's column of its first output row).
    pub out: *mut f32,
    /// Row stride of the output.
    pub out_stride: usize,
}

/// Computes one head into `io.out`.
///
/// # Safety
/// [`supported`] must hold for `io.head_dim`; the QKV pointers must address `io.n` rows of
/// `io.head_dim` values at stride `io.qkv_stride`, and `io.out` `io.n_queries` rows of
/// `io.head_dim` values at stride `io.out_stride` that nobody else touches meanwhile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn attend_head(io: &HeadIo) {
    let (n, d) = (io.n, io.head_dim);
    let np = n.next_multiple_of(LANES);
    let scale = 1.0 / (d as f32).sqrt();
    // Kᵀ·scale in column blocks of 64 keys, each a contiguous [d, 64] panel (padding keys
    // zero), so a tile reads its panel sequentially rather than at a power-of-two stride that
    // maps every row onto the same L1 sets.
    const BLOCK: usize = VECS * LANES;
    let mut kt = vec![0.0f32; d * np.next_multiple_of(BLOCK)];
    for j in 0..n {
        let key = std::slice::from_raw_parts(io.k.add(j * io.qkv_stride), d);
        let panel = &mut kt[(j / BLOCK) * d * BLOCK..];
        for (c, &x) in key.iter().enumerate() {
            panel[c * BLOCK + j % BLOCK] = x * scale;
        }
    }
    // V, [n, d] contiguous (the QKV rows are thousands of values apart).
    let mut values = Vec::with_capacity(n * d);
    for j in 0..n {
        values.extend_from_slice(std::slice::from_raw_parts(io.v.add(j * io.qkv_stride), d));
    }
    // Not zeroed: the tiles below write every one of its values before set_len.
    let mut scores: Vec<f32> = Vec::with_capacity(io.n_queries * np);
    for col in (0..np).step_by(BLOCK) {
        let vecs = ((np - col) / LANES).min(VECS);
        for row in (0..io.n_queries).step_by(ROWS) {
            let tile = Tile {
                rows: (io.n_queries - row).min(ROWS),
                vecs,
                a: io.q.add(row * io.qkv_stride),
                a_stride: io.qkv_stride,
                b: kt.as_ptr().add(col * d),
                b_stride: BLOCK,
                depth: d,
                c: scores.as_mut_ptr().add(row * np + col),
                c_stride: np,
            };
            tile.run();
        }
    }
    // SAFETY: the tiles covered rows 0..n_queries and columns 0..np.
    scores.set_len(io.n_queries * np);
    for row in scores.chunks_exact_mut(np) {
        softmax_inplace(&mut row[..n]);
    }
    for col in (0..d).step_by(VECS * LANES) {
        let vecs = ((d - col) / LANES).min(VECS);
        for row in (0..io.n_queries).step_by(ROWS) {
            let tile = Tile {
                rows: (io.n_queries - row).min(ROWS),
                vecs,
                a: scores.as_ptr().add(row * np),
                a_stride: np,
                b: values.as_ptr().add(col),
                b_stride: d,
                depth: n,
                c: io.out.add(row * io.out_stride + col),
                c_stride: io.out_stride,
            };
            tile.run();
        }
    }
}

/// `C[rows, 16·vecs] = A[rows, depth]·B[depth, 16·vecs]`, all row-major with the given strides.
#[cfg(target_arch = "x86_64")]
struct Tile {
    rows: usize,
    vecs: usize,
    a: *const f32,
    a_stride: usize,
    b: *const f32,
    b_stride: usize,
    depth: usize,
    c: *mut f32,
    c_stride: usize,
}

#[cfg(target_arch = "x86_64")]
impl Tile {
    /// Runs the tile with its row and vector counts as constants.
    #[target_feature(enable = "avx512f")]
    unsafe fn run(&self) {
        match self.rows {
            4 => self.with_rows::<4>(),
            3 => self.with_rows::<3>(),
            2 => self.with_rows::<2>(),
            _ => self.with_rows::<1>(),
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn with_rows<const R: usize>(&self) {
        match self.vecs {
            4 => self.kernel::<R, 4>(),
            3 => self.kernel::<R, 3>(),
            2 => self.kernel::<R, 2>(),
            _ => self.kernel::<R, 1>(),
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const R: usize, const V: usize>(&self) {
        use std::arch::x86_64::*;
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for k in 0..self.depth {
            let b_row = self.b.add(k * self.b_stride);
            let mut b = [_mm512_setzero_ps(); V];
            for (v, bv) in b.iter_mut().enumerate() {
                *bv = _mm512_loadu_ps(b_row.add(v * LANES));
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*self.a.add(r * self.a_stride + k));
                for (acc_rv, bv) in acc_r.iter_mut().zip(&b) {
                    *acc_rv = _mm512_fmadd_ps(a, *bv, *acc_rv);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, acc_rv) in acc_r.iter().enumerate() {
                _mm512_storeu_ps(self.c.add(r * self.c_stride + v * LANES), *acc_rv);
            }
        }
    }
}

/// Stand-in on other architectures; [`supported`] is false there.
///
/// # Safety
/// Never call it: it panics.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn attend_head(_: &HeadIo) {
    unreachable!("attention kernel without x86_64")
}
