//! Thread settings shared by the kernels.

use std::sync::atomic::{AtomicUsize, Ordering};

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
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        work()
    } else {
        rayon::scope(|_| work())
    }
}
