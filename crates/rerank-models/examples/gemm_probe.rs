//! GFLOP/s of the linear layer on bge-reranker-base shapes and one Gemma-2B MLP shape, f32,
//! bf16 and int8 (`cargo run --release --example gemm_probe [THREADS] [DTYPES]`, e.g. `1
//! f32,bf16`; defaults: all cores, all three), each line naming the kernel this CPU runs and
//! the memory its weight holds; then, when int8 is measured, the W3 GEMM
//! chain: the 48 int8 GEMMs of one 64-token pass (12 layers, distinct weights, so they stream
//! from memory as in the model), which bounds W3 latency from below.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rerank_models::layers::{Linear, Matrix};
use rerank_models::Dtype;

/// mimalloc, counting the bytes live (to report what a packed weight holds).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to mimalloc; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        mimalloc::MiMalloc.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        mimalloc::MiMalloc.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        mimalloc::MiMalloc.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        mimalloc::MiMalloc.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `(k, n)` of one encoder layer's GEMMs: QKV, attention output, FFN up, FFN down.
const LAYER_GEMMS: [(usize, usize); 4] = [(768, 2304), (768, 768), (768, 3072), (3072, 768)];

fn weights(k: usize, n: usize, seed: usize) -> Vec<f32> {
    (0..n * k)
        .map(|i| (((i + seed) % 97) as f32 - 48.0) * 1e-3)
        .collect()
}

fn activations(m: usize, k: usize) -> Matrix {
    let data = (0..m * k)
        .map(|i| ((i % 89) as f32 - 44.0) * 1e-2)
        .collect();
    Matrix::from_vec(data, m, k)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let dtypes: Vec<Dtype> = match args.next() {
        Some(list) => list
            .split(',')
            .filter_map(|d| match d {
                "f32" => Some(Dtype::F32),
                "bf16" => Some(Dtype::Bf16),
                "int8" => Some(Dtype::Int8),
                _ => None,
            })
            .collect(),
        None => vec![Dtype::F32, Dtype::Bf16, Dtype::Int8],
    };
    rerank_models::runtime::set_threads(threads);
    println!("{} threads", rerank_models::runtime::threads());
    let shapes = [
        (8192, 768, 2304),
        (8192, 768, 3072),
        (8192, 3072, 768),
        (64, 768, 2304),
        (64, 768, 3072),
        (64, 3072, 768),
        // Gemma-2B's MLP up projection (hidden 2048, intermediate 16384) on 512 tokens.
        (512, 2048, 16384),
    ];
    for &(m, k, n) in &shapes {
        let w = weights(k, n, 0);
        let x = activations(m, k);
        for &dtype in &dtypes {
            let before = LIVE.load(Ordering::Relaxed);
            let lin = Linear::from_parts_as(&w, Some(vec![0.0; n]), k, n, dtype);
            let held =
                LIVE.load(Ordering::Relaxed).saturating_sub(before) as f64 / (1 << 20) as f64;
            let _ = lin.forward(&x);
            let flop = 2.0 * (m * n * k) as f64;
            let reps = (3e9 / flop).ceil().clamp(2.0, 200.0) as usize;
            let t = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(lin.forward(&x));
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{dtype:?} m={m:5} k={k:4} n={n:5}: {:8.2} ms  {:6.1} GFLOP/s  weights {held:6.1} MiB  [{}]",
                s * 1e3,
                flop / s / 1e9,
                lin.kernel_name()
            );
        }
    }
    if dtypes.contains(&Dtype::Int8) {
        w3_chain();
    }
}

/// Times the 48 int8 GEMMs of a 64-token, 12-layer pass: median and best of 200 passes.
fn w3_chain() {
    let m = 64;
    let layers: Vec<Linear> = (0..12)
        .flat_map(|layer| LAYER_GEMMS.map(move |(k, n)| (layer, k, n)))
        .map(|(layer, k, n)| {
            Linear::from_parts_as(
                &weights(k, n, 7 * layer),
                Some(vec![0.0; n]),
                k,
                n,
                Dtype::Int8,
            )
        })
        .collect();
    let (x768, x3072) = (activations(m, 768), activations(m, 3072));
    let mut times: Vec<f64> = (0..200)
        .map(|_| {
            let t = Instant::now();
            rerank_models::runtime::on_pool(|| {
                for (lin, &(k, _)) in layers.iter().zip(LAYER_GEMMS.iter().cycle()) {
                    let x = if k == 768 { &x768 } else { &x3072 };
                    std::hint::black_box(lin.forward(x));
                }
            });
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let gop: f64 = 12.0
        * LAYER_GEMMS
            .iter()
            .map(|&(k, n)| 2.0 * (m * k * n) as f64)
            .sum::<f64>()
        / 1e9;
    let (median, best) = (times[times.len() / 2], times[0]);
    println!(
        "W3 int8 GEMM chain (48 GEMMs, 64 rows): median {:.2} ms ({:.0} GOP/s), best {:.2} ms ({:.0} GOP/s)",
        median * 1e3,
        gop / median,
        best * 1e3,
        gop / best
    );
}
