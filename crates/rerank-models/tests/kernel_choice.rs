//! The kernel choices (one timed GEMM per process and dtype) are made under a lock the first
//! time a layer is built. Threads of the shared pool may build layers while another thread
//! holds that lock; the measurement must then finish without them. This file is its own
//! process, so the choices are still unmade when the test starts.

use std::sync::mpsc;
use std::time::Duration;

use rerank_models::layers::{Linear, Matrix};
use rerank_models::{runtime, Dtype};

/// Builds and runs a small layer in `dtype` (the first build in a process makes the choice).
fn build_and_run(dtype: Dtype) -> f32 {
    let (k, n) = (64, 48);
    let w: Vec<f32> = (0..k * n).map(|i| ((i % 17) as f32 - 8.0) / 40.0).collect();
    let x = Matrix::from_vec((0..4 * k).map(|i| (i % 5) as f32 / 5.0).collect(), 4, k);
    Linear::from_parts_as(&w, None, k, n, dtype)
        .forward(&x)
        .data[0]
}

#[test]
fn first_kernel_choices_from_pool_threads_and_others_finish() {
    runtime::set_threads(2);
    let (done, finished) = mpsc::channel();
    for i in 0..8 {
        let done = done.clone();
        std::thread::spawn(move || {
            let dtype = [Dtype::Bf16, Dtype::F32][i % 2];
            // Half the threads build on the shared pool, half outside it.
            let value = if i % 4 < 2 {
                runtime::on_pool(|| build_and_run(dtype))
            } else {
                build_and_run(dtype)
            };
            done.send(value).ok();
        });
    }
    for i in 0..8 {
        let value = finished
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("{i} of 8 layer builds finished in 120 s: deadlock"));
        assert!(value.is_finite());
    }
}
