//! GFLOP/s of the linear layer on bge-reranker-base shapes, f32, bf16 and int8
//! (`cargo run --release --example gemm_probe`).

use std::time::Instant;

use rerank_models::layers::{Linear, Matrix};
use rerank_models::Dtype;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    rerank_models::runtime::set_threads(0);
    let shapes = [
        (8192, 768, 2304),
        (8192, 768, 3072),
        (8192, 3072, 768),
        (64, 768, 2304),
        (64, 768, 3072),
        (64, 3072, 768),
    ];
    for &(m, k, n) in &shapes {
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i % 97) as f32 - 48.0) * 1e-3)
            .collect();
        let x = Matrix::from_vec(
            (0..m * k)
                .map(|i| ((i % 89) as f32 - 44.0) * 1e-2)
                .collect(),
            m,
            k,
        );
        for dtype in [Dtype::F32, Dtype::Bf16, Dtype::Int8] {
            let lin = Linear::from_parts_as(&w, Some(vec![0.0; n]), k, n, dtype);
            let _ = lin.forward(&x);
            let reps = if m > 1000 { 3 } else { 200 };
            let t = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(lin.forward(&x));
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            let gflops = 2.0 * (m * n * k) as f64 / s / 1e9;
            println!(
                "{dtype:?} m={m:5} k={k:4} n={n:4}: {:7.2} ms  {gflops:6.1} GFLOP/s",
                s * 1e3
            );
        }
    }
}
