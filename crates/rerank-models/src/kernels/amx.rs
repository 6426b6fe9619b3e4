//! Intel AMX (Advanced Matrix Extensions) support shared by the tile GEMMs: detection, the
//! Linux permission request, the tile configuration and the tile instructions the kernels use.
//!
//! AMX adds eight 2-D tile registers (`tmm0`–`tmm7`, up to 16 rows × 64 bytes) and a tile
//! multiplier: one `tdpbf16ps` multiplies a 16 × 32 bf16 tile by a 32 × 16 one into 16 × 16 f32
//! accumulators, one `tdpbusd` a 16 × 64 u8 tile by a 64 × 16 s8 one into i32. On a Xeon with
//! AMX that is ~8× the AVX-512 `vdpbf16ps` peak per core. The kernels here use one fixed
//! configuration: every tile 16 rows × 64 bytes; `tmm0`–`tmm3` accumulate a 32 × 32 output
//! block, `tmm4`/`tmm5` hold two row tiles of the activations and `tmm6`/`tmm7` two column
//! tiles of the weights.
//!
//! The instructions are written as inline assembly (Rust's AMX intrinsics are not stable); the
//! compiler never allocates tile registers, so their contents persist between the `asm!` blocks
//! run on one thread. Each parallel task of a GEMM (a block of rows over a group of panels)
//! loads the configuration first and releases the tiles at the end, so a thread that also runs
//! other AMX code (oneDNN in the same Python process) never sees our configuration or we
//! theirs. (Doing so per 32 × 32 block instead cost a third of the GEMM time.)
//!
//! Linux hands AMX state to a process only after `arch_prctl(ARCH_REQ_XCOMP_PERM,
//! XFEATURE_XTILEDATA)`; [`available`] asks once. `RERANK_AMX=0` turns the AMX kernels off.

/// Rows of every tile, and bytes per tile row.
pub(crate) const TILE_ROWS: usize = 16;
/// Bytes per tile row (16 f32 / i32 lanes, 16 bf16 pairs, 16 int8 quads).
pub(crate) const TILE_BYTES: usize = 64;
/// 32-bit lanes in one tile (16 rows × 16 lanes): a packed tile's length in `u32`.
pub(crate) const TILE_LANES: usize = TILE_ROWS * TILE_BYTES / 4;

/// True when this CPU has AMX (tiles, bf16 and int8), the OS granted this process the tile
/// state, the AVX-512 the kernels' epilogues use is there, and `RERANK_AMX` is not `0`.
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let disabled = std::env::var("RERANK_AMX").is_ok_and(|v| v.trim() == "0");
        !disabled && cpu_has_amx() && request_tile_state()
    })
}

/// CPUID leaf 7: AMX-BF16 (EDX bit 22), AMX-TILE (24), AMX-INT8 (25), plus AVX-512 F/BW.
fn cpu_has_amx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if !(has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512bf16")) {
            return false;
        }
        // CPUID leaf 7 exists on every CPU with AVX-512.
        let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
        let amx = (1 << 22) | (1 << 24) | (1 << 25);
        edx & amx == amx
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Asks Linux for the AMX tile data state for this process (needed once, before any thread
/// touches a tile register); false where refused or on other systems.
fn request_tile_state() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM only changes which extended states this
        // process may use; it reads and writes no memory of ours.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        rc == 0
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// The 64-byte tile configuration (palette 1): eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

static CONFIG: TileConfig = {
    let mut bytes_per_row = [0u16; 16];
    let mut rows = [0u8; 16];
    let mut t = 0;
    while t < 8 {
        bytes_per_row[t] = TILE_BYTES as u16;
        rows[t] = TILE_ROWS as u8;
        t += 1;
    }
    TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        bytes_per_row,
        rows,
    }
};

/// Configures the tiles on this thread for the duration of `work`, then releases them.
///
/// # Safety
/// [`available`] must be true.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn with_tiles<R>(work: impl FnOnce() -> R) -> R {
    std::arch::asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly, preserves_flags));
    let result = work();
    std::arch::asm!("tilerelease", options(nostack, nomem, preserves_flags));
    result
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn with_tiles<R>(_: impl FnOnce() -> R) -> R {
    unreachable!("AMX kernels run only where available() is true")
}

/// Loads the four accumulators `tmm0`–`tmm3` (a 32 × 32 block as 2 × 2 tiles of 16 × 16):
/// from `c` (row stride `ldc` values) to go on accumulating, or, when `c` is `None`, with
/// `init`'s 32 values in every row (a bias; stride 0 repeats one row).
///
/// # Safety
/// Inside [`with_tiles`]; `c` must hold 32 rows of 32 values at stride `ldc`, `init` 32 values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn load_accumulators<T>(c: Option<(*const T, usize)>, init: *const T) {
    let ([t0, t1, t2, t3], stride) = match c {
        Some((c, ldc)) => (block_tiles(c, ldc), ldc * 4),
        // Stride 0: every row reads the same values, `init[..16]` left, `init[16..]` right.
        None => ([init, init.add(16), init, init.add(16)], 0),
    };
    std::arch::asm!(
        "tileloadd tmm0, [{t0} + {s}*1]",
        "tileloadd tmm1, [{t1} + {s}*1]",
        "tileloadd tmm2, [{t2} + {s}*1]",
        "tileloadd tmm3, [{t3} + {s}*1]",
        t0 = in(reg) t0,
        t1 = in(reg) t1,
        t2 = in(reg) t2,
        t3 = in(reg) t3,
        s = in(reg) stride,
        options(nostack, readonly, preserves_flags),
    );
}

/// The first values of the four 16 × 16 tiles of a 32 × 32 block at `c` (row stride `ldc`
/// values), in accumulator order: top left, top right, bottom left, bottom right.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn block_tiles<T>(c: *const T, ldc: usize) -> [*const T; 4] {
    let lower = c.wrapping_add(TILE_ROWS * ldc);
    [c, c.wrapping_add(16), lower, lower.wrapping_add(16)]
}

/// Stores the accumulators `tmm0`–`tmm3` as a 32 × 32 block at `c` (row stride `ldc` values).
///
/// # Safety
/// Inside [`with_tiles`]; `c` must have room for 32 rows of 32 values at stride `ldc`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn store_accumulators<T>(c: *mut T, ldc: usize) {
    let [t0, t1, t2, t3] = block_tiles(c.cast_const(), ldc);
    std::arch::asm!(
        "tilestored [{t0} + {s}*1], tmm0",
        "tilestored [{t1} + {s}*1], tmm1",
        "tilestored [{t2} + {s}*1], tmm2",
        "tilestored [{t3} + {s}*1], tmm3",
        t0 = in(reg) t0,
        t1 = in(reg) t1,
        t2 = in(reg) t2,
        t3 = in(reg) t3,
        s = in(reg) ldc * 4,
        options(nostack, preserves_flags),
    );
}

/// The tile product each k step of a kernel runs.
#[derive(Clone, Copy)]
pub(crate) enum TileOp {
    /// `tdpbf16ps`: bf16 pairs, f32 accumulators.
    Bf16,
    /// `tdpbusd`: u8 quads (activations) × s8 quads (weights), i32 accumulators.
    U8S8,
}

/// One k step of a 32 × 32 block: loads row tiles `a0`, `a1` (16 rows of 64 bytes each,
/// contiguous) and column tiles `b0`, `b1` (likewise), and adds the four products to
/// `tmm0`–`tmm3`.
///
/// # Safety
/// Inside [`with_tiles`], after [`load_accumulators`]; each pointer must hold one 1 KB tile.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn multiply_step(
    op: TileOp,
    a0: *const u32,
    a1: *const u32,
    b0: *const u32,
    b1: *const u32,
) {
    macro_rules! step {
        ($ins:literal) => {
            std::arch::asm!(
                "tileloadd tmm4, [{a0} + {s}*1]",
                "tileloadd tmm6, [{b0} + {s}*1]",
                concat!($ins, " tmm0, tmm4, tmm6"),
                "tileloadd tmm7, [{b1} + {s}*1]",
                concat!($ins, " tmm1, tmm4, tmm7"),
                "tileloadd tmm5, [{a1} + {s}*1]",
                concat!($ins, " tmm2, tmm5, tmm6"),
                concat!($ins, " tmm3, tmm5, tmm7"),
                a0 = in(reg) a0,
                a1 = in(reg) a1,
                b0 = in(reg) b0,
                b1 = in(reg) b1,
                s = in(reg) TILE_BYTES,
                options(nostack, readonly, preserves_flags),
            )
        };
    }
    match op {
        TileOp::Bf16 => step!("tdpbf16ps"),
        TileOp::U8S8 => step!("tdpbusd"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn load_accumulators<T>(_: Option<(*const T, usize)>, _: *const T) {}
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn store_accumulators<T>(_: *mut T, _: usize) {}
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn multiply_step(
    _: TileOp,
    _: *const u32,
    _: *const u32,
    _: *const u32,
    _: *const u32,
) {
}

/// A register-only loop for the peak probe: `iters` × four independent tile products of `op`
/// on tiles of small inputs (no memory traffic inside the loop). Returns one accumulator value.
///
/// # Safety
/// [`available`] must be true.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn probe_loop(op: TileOp, iters: usize) -> f32 {
    // bf16 2⁻¹⁰ pairs (or u8/s8 bytes 0x3A, 0x80 — the sum only grows, far from overflow
    // for the iteration counts the probe uses).
    let input = [0x3A80_3A80u32; TILE_LANES];
    let mut out = [0f32; TILE_LANES];
    with_tiles(|| {
        let p = input.as_ptr();
        load_accumulators(None, out.as_ptr());
        std::arch::asm!(
            "tileloadd tmm4, [{p} + {s}*1]",
            "tileloadd tmm5, [{p} + {s}*1]",
            "tileloadd tmm6, [{p} + {s}*1]",
            "tileloadd tmm7, [{p} + {s}*1]",
            p = in(reg) p,
            s = in(reg) TILE_BYTES,
            options(nostack, readonly, preserves_flags),
        );
        macro_rules! run {
            ($ins:literal) => {
                for _ in 0..iters {
                    std::arch::asm!(
                        concat!($ins, " tmm0, tmm4, tmm6"),
                        concat!($ins, " tmm1, tmm4, tmm7"),
                        concat!($ins, " tmm2, tmm5, tmm6"),
                        concat!($ins, " tmm3, tmm5, tmm7"),
                        options(nostack, nomem, preserves_flags),
                    );
                }
            };
        }
        match op {
            TileOp::Bf16 => run!("tdpbf16ps"),
            TileOp::U8S8 => run!("tdpbusd"),
        }
        std::arch::asm!(
            "tilestored [{p} + {s}*1], tmm0",
            p = in(reg) out.as_mut_ptr(),
            s = in(reg) TILE_BYTES,
            options(nostack, preserves_flags),
        );
    });
    out[0]
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn probe_loop(_: TileOp, _: usize) -> f32 {
    unreachable!("AMX kernels run only where available() is true")
}

/// Operations (a multiply-add counts two) in one iteration of [`probe_loop`].
pub(crate) const fn probe_ops_per_iter(op: TileOp) -> f64 {
    let depth = match op {
        TileOp::Bf16 => 32,
        TileOp::U8S8 => 64,
    };
    (4 * TILE_ROWS * TILE_ROWS * depth * 2) as f64
}
