//! Thread settings shared by the kernels: the pool size, and flush-to-zero /
//! denormals-are-zero on every thread that runs model arithmetic.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets the number of threads the engine uses (0 = all cores). Call before the first forward
/// pass; the first call also sizes rayon's global pool.
pub fn set_threads(threads: usize) {
    let n = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    THREADS.store(n, Ordering::Relaxed);
    // The global pool can be built once; later calls keep the first size.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
}

/// Number of threads the kernels may use.
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => rayon::current_num_threads(),
        n => n,
    }
}

/// Runs `work` on a thread of rayon's pool, so the parallel regions inside it are joined by
/// the pool's other threads without waking the caller: a caller outside the pool would block
/// on every region and be woken after it, a cross-thread hand-off per region.
///
/// The first call also sets flush-to-zero and denormals-are-zero on every thread of the pool
/// (see [`flush_denormals`]), so all forward passes run with them.
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    static POOL_FLUSHES_DENORMALS: Once = Once::new();
    POOL_FLUSHES_DENORMALS.call_once(|| {
        rayon::broadcast(|_| flush_denormals());
    });
    if rayon::current_thread_index().is_some() {
        work()
    } else {
        rayon::scope(|_| work())
    }
}

/// Runs `work` on a new thread with a private one-thread pool (its parallel regions included)
/// and waits for it: for a measurement taken once per process under a lock, such as a kernel
/// choice. Waiting on rayon's shared pool instead would let the waiting thread take up other
/// queued work meanwhile, including work that wants the same lock (a deadlock), and the
/// shared pool's threads may themselves be blocked on that lock.
pub(crate) fn measure_alone<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                Ok(pool) => pool.install(|| {
                    flush_denormals();
                    work()
                }),
                // No thread to spare: measure on this one.
                Err(_) => work(),
            }
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Sets flush-to-zero and denormals-are-zero (MXCSR bits 15 and 6) on the calling thread, as
/// oneDNN and ONNX Runtime allow: denormal inputs and results become zero. Some cores (Intel's)
/// take microcode assists on denormal arithmetic that slow a GEMM up to 3×; the results move
/// by less than the smallest normal float (1.2e-38). No-op off x86-64.
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    {
        const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);
        let mut csr = 0u32;
        // SAFETY: stmxcsr/ldmxcsr read and write this thread's SSE control register only;
        // setting FTZ and DAZ changes no other state.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
            csr |= FTZ_DAZ;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags));
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn pool_threads_flush_denormals() {
        let product = |a: f32, b: f32| std::hint::black_box(a) * std::hint::black_box(b);
        // 1e-30 × 1e-10 = 1e-40, a denormal: kept on a default thread, zero on the pool.
        let denormal = std::thread::spawn(move || product(1e-30, 1e-10))
            .join()
            .unwrap();
        assert!(denormal > 0.0 && !denormal.is_normal());
        let flushed: Vec<f32> = on_pool(|| rayon::broadcast(|_| product(1e-30, 1e-10)));
        assert!(flushed.iter().all(|&x| x == 0.0), "{flushed:?}");
        // Denormal inputs count as zero too.
        let input = std::hint::black_box(f32::from_bits(1));
        assert_eq!(on_pool(|| product(input, 1e30)), 0.0);
    }
}
