//! Peak and current RSS after loading a model folder (`cargo run --release --example load_probe DIR`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss(tag: &str) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let get = |k: &str| s.lines().find(|l| l.starts_with(k)).unwrap().to_string();
    println!("{tag:>12}: {} | {}", get("VmRSS:"), get("VmHWM:"));
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("model dir"));
    rss("start");
    let model = rerank_models::load_cross_encoder(&dir, rerank_models::Dtype::F32).unwrap();
    rss("model");
    drop(model);
    rss("dropped");
}
