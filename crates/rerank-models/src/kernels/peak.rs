//! This machine's arithmetic peak per dtype, measured where it runs: a short register-only
//! loop of the instruction each dtype's GEMM kernel is built on (f32 FMA, `vdpbf16ps`,
//! `vpdpbusd`), on every engine thread at once. `rerank bench` reports "% of peak" against it.
//!
//! Each loop runs independent accumulator chains (more than latency × throughput on any current
//! core), so it is bound by the units' throughput, not by memory or dependencies. One probe
//! takes about [`ROUNDS`] × [`ROUND_SECONDS`] per thread; results are cached per process.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::runtime;
use crate::Dtype;

/// Timed rounds per thread; the best one counts (the first may pay for frequency ramp-up).
const ROUNDS: usize = 5;
/// Target length of one round.
const ROUND_SECONDS: f64 = 0.03;

/// A measured peak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// Operations per second (a multiply-add counts two), all engine threads together, in
    /// units of 10⁹.
    pub gops: f64,
    /// The instruction measured, e.g. `"avx2 vfmadd (f32)"`.
    pub instruction: &'static str,
}

/// The peak of the instruction `dtype`'s GEMMs run on this CPU (measured once per process and
/// dtype).
pub fn peak(dtype: Dtype) -> Peak {
    static CACHE: [OnceLock<Peak>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match dtype {
        Dtype::F32 => 0,
        Dtype::Bf16 => 1,
        Dtype::Int8 => 2,
    };
    *CACHE[slot].get_or_init(|| measure(probe_for(dtype)))
}

/// A register-only loop: `run(iters)` executes `iters` iterations of `ops_per_iter` operations.
#[derive(Clone, Copy)]
struct Probe {
    instruction: &'static str,
    ops_per_iter: f64,
    run: fn(usize) -> f32,
}

fn probe_for(dtype: Dtype) -> Probe {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        match dtype {
            Dtype::Bf16 if crate::layers::linear::bf16_runs_on_amx() => return x86::TDPBF16,
            Dtype::Bf16 if super::bf16_gemm::supported() => return x86::DPBF16,
            Dtype::Int8 if super::amx_gemm::supported() => return x86::TDPBUSD,
            Dtype::Int8 if super::int8_gemm::supported() => return x86::DPBUSD,
            _ => {}
        }
        if has!("avx512f") {
            return x86::FMA512;
        }
        if has!("avx2") && has!("fma") {
            return x86::FMA256;
        }
    }
    let _ = dtype;
    SCALAR
}

/// Runs the probe on every engine thread at once and sums their best rates.
fn measure(probe: Probe) -> Peak {
    let per_thread: Vec<f64> = runtime::on_pool(|| rayon::broadcast(|_| best_rate(probe)));
    let used = per_thread.len().min(runtime::threads().max(1));
    Peak {
        gops: per_thread.iter().take(used).sum::<f64>() / 1e9,
        instruction: probe.instruction,
    }
}

/// Operations per second of the best of [`ROUNDS`] rounds on this thread.
fn best_rate(probe: Probe) -> f64 {
    let time = |iters: usize| {
        let start = Instant::now();
        std::hint::black_box((probe.run)(std::hint::black_box(iters)));
        start.elapsed().max(Duration::from_nanos(1)).as_secs_f64()
    };
    let trial = 20_000;
    let iters = ((ROUND_SECONDS / time(trial)) * trial as f64).clamp(1e3, 1e9) as usize;
    (0..ROUNDS)
        .map(|_| iters as f64 * probe.ops_per_iter / time(iters))
        .fold(0.0, f64::max)
}

/// Portable fallback: eight independent scalar multiply-add chains.
const SCALAR: Probe = Probe {
    instruction: "scalar f32 multiply-add",
    ops_per_iter: 16.0,
    run: scalar_loop,
};

fn scalar_loop(iters: usize) -> f32 {
    let (a, b) = (
        std::hint::black_box(0.999f32),
        std::hint::black_box(0.001f32),
    );
    let mut acc = [0.0f32; 8];
    for _ in 0..iters {
        for r in &mut acc {
            *r = *r * a + b;
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The x86 probes (the AMX ones loop in [`crate::kernels::amx::probe_loop`]). Accumulators converge to 1 (no denormals, no overflow).

    use std::arch::x86_64::*;

    use super::Probe;
    use crate::kernels::amx::TileOp;

    /// Independent chains per probe: ≥ latency × issue width on current cores, within the
    /// 16 (AVX2) or 32 (AVX-512) vector registers.
    const CHAINS_256: usize = 12;
    const CHAINS_512: usize = 24;

    pub(super) const FMA256: Probe = Probe {
        instruction: "avx2 vfmadd231ps ymm (f32)",
        ops_per_iter: (CHAINS_256 * 8 * 2) as f64,
        run: |iters| unsafe { fma256(iters) },
    };

    pub(super) const FMA512: Probe = Probe {
        instruction: "avx512 vfmadd231ps zmm (f32)",
        ops_per_iter: (CHAINS_512 * 16 * 2) as f64,
        run: |iters| unsafe { fma512(iters) },
    };

    pub(super) const DPBF16: Probe = Probe {
        instruction: "avx512_bf16 vdpbf16ps zmm",
        ops_per_iter: (CHAINS_512 * 32 * 2) as f64,
        run: |iters| unsafe { dpbf16(iters) },
    };

    pub(super) const TDPBF16: Probe = Probe {
        instruction: "amx tdpbf16ps (bf16 tiles)",
        ops_per_iter: crate::kernels::amx::probe_ops_per_iter(TileOp::Bf16),
        // SAFETY: chosen only where the AMX bf16 kernel runs (AMX available).
        run: |iters| unsafe { crate::kernels::amx::probe_loop(TileOp::Bf16, iters) },
    };

    pub(super) const TDPBUSD: Probe = Probe {
        instruction: "amx tdpbusd (int8 tiles)",
        ops_per_iter: crate::kernels::amx::probe_ops_per_iter(TileOp::U8S8),
        // SAFETY: chosen only where the AMX kernels run (AMX available).
        run: |iters| unsafe { crate::kernels::amx::probe_loop(TileOp::U8S8, iters) },
    };

    pub(super) const DPBUSD: Probe = Probe {
        instruction: "avx512_vnni vpdpbusd zmm (int8)",
        ops_per_iter: (CHAINS_512 * 64 * 2) as f64,
        run: |iters| unsafe { dpbusd(iters) },
    };

    #[target_feature(enable = "avx2,fma")]
    unsafe fn fma256(iters: usize) -> f32 {
        let (a, b) = std::hint::black_box((_mm256_set1_ps(0.999), _mm256_set1_ps(0.001)));
        let mut acc = [_mm256_setzero_ps(); CHAINS_256];
        for _ in 0..iters {
            for r in &mut acc {
                *r = _mm256_fmadd_ps(*r, a, b);
            }
        }
        let mut sum = _mm256_setzero_ps();
        for r in acc {
            sum = _mm256_add_ps(sum, r);
        }
        _mm256_cvtss_f32(sum)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn fma512(iters: usize) -> f32 {
        let (a, b) = std::hint::black_box((_mm512_set1_ps(0.999), _mm512_set1_ps(0.001)));
        let mut acc = [_mm512_setzero_ps(); CHAINS_512];
        for _ in 0..iters {
            for r in &mut acc {
                *r = _mm512_fmadd_ps(*r, a, b);
            }
        }
        let mut sum = _mm512_setzero_ps();
        for r in acc {
            sum = _mm512_add_ps(sum, r);
        }
        _mm512_reduce_add_ps(sum)
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn dpbf16(iters: usize) -> f32 {
        // Pairs (2⁻¹⁰, 2⁻¹⁰) · (1, 1): each step adds 2⁻⁹, far from overflow.
        let small: __m512bh = std::mem::transmute(std::hint::black_box(_mm512_set1_epi16(0x3A80)));
        let one: __m512bh = std::mem::transmute(std::hint::black_box(_mm512_set1_epi16(0x3F80)));
        let mut acc = [_mm512_setzero_ps(); CHAINS_512];
        for _ in 0..iters {
            for r in &mut acc {
                *r = _mm512_dpbf16_ps(*r, small, one);
            }
        }
        let mut sum = _mm512_setzero_ps();
        for r in acc {
            sum = _mm512_add_ps(sum, r);
        }
        _mm512_reduce_add_ps(sum)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dpbusd(iters: usize) -> f32 {
        // u8 1 × s8 0: the sums stay 0, the work is the same.
        let (a, b) = std::hint::black_box((_mm512_set1_epi8(1), _mm512_setzero_si512()));
        let mut acc = [_mm512_setzero_si512(); CHAINS_512];
        for _ in 0..iters {
            for r in &mut acc {
                *r = _mm512_dpbusd_epi32(*r, a, b);
            }
        }
        let mut sum = _mm512_setzero_si512();
        for r in acc {
            sum = _mm512_add_epi32(sum, r);
        }
        _mm512_reduce_add_epi32(sum) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_are_measured_and_cached() {
        for dtype in [Dtype::F32, Dtype::Bf16, Dtype::Int8] {
            let first = peak(dtype);
            // Any machine this runs on does at least 1 GOP/s and less than 100 TOP/s per
            // core pair; a wrong operation count or a loop the compiler removed breaks this.
            assert!(first.gops > 1.0 && first.gops < 1e5, "{dtype:?}: {first:?}");
            assert_eq!(peak(dtype), first, "cached");
        }
    }
}
