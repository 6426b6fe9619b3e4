//! The ONNX backend through the binary: `score`, `validate --against` the native engine,
//! `bench` and `serve` on a committed export (ONNX Runtime from ORT_DYLIB_PATH).

mod common;

use rerank_fixtures::{fixtures_root, model_dir, onnxruntime};
use serde_json::{json, Value};

use common::{run_rerank, Server};

fn ok_json(args: &[&str], stdin: &str) -> Value {
    let out = run_rerank(args, stdin, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn score_validate_bench_and_serve_an_onnx_folder() {
    if onnxruntime().is_none() {
        return;
    }
    let onnx = model_dir("onnx/xlmr-tiny-dynamic");
    let native = model_dir("xlmr-tiny");
    let (onnx, native) = (onnx.to_str().unwrap(), native.to_str().unwrap());
    let pairs = r#"[["what is panda?", "hi"], ["what is panda?", "The giant panda is a bear."]]"#;
    let got = ok_json(&["score", "-m", onnx], pairs);
    let want = ok_json(&["score", "-m", native], pairs);
    for (g, w) in got.as_array().unwrap().iter().zip(want.as_array().unwrap()) {
        assert!((g.as_f64().unwrap() - w.as_f64().unwrap()).abs() < 1e-4);
    }
    // validate: the export against the native engine on the MS MARCO sample.
    let data = fixtures_root().join("retrieval/msmarco-10q.jsonl");
    let report = ok_json(
        &[
            "validate",
            "-m",
            onnx,
            "--data",
            data.to_str().unwrap(),
            "--against",
            native,
            "--tolerance",
            "1e-4",
            "--json",
        ],
        "",
    );
    assert_eq!(report["pass"], true, "{report}");
    // bench runs it and names the backend.
    let out = run_rerank(
        &[
            "bench",
            "-m",
            onnx,
            "--batch-size",
            "2",
            "--seq-len",
            "32",
            "--iterations",
            "1",
            "--warmup",
            "0",
            "--peak-gflops",
            "100",
        ],
        "",
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ONNX Runtime") && text.contains("summary: avg_sps"),
        "{text}"
    );
    // serve answers from it.
    let server = Server::start_args(&["--model", onnx]);
    let body = json!({"query": "what is panda?", "texts": ["hi", "The giant panda is a bear."], "raw_scores": true});
    let (status, ranks) = server.request("POST", "/rerank", Some(&body), None);
    assert_eq!(status, 200, "{ranks}");
    assert_eq!(ranks.as_array().unwrap().len(), 2);
    assert!(server.terminate().success());
}
