//! End-to-end: the real `rerank serve` on a free loopback port, called over HTTP, then stopped
//! with SIGTERM (graceful shutdown → exit 0).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use rerank_fixtures::model_dir;
use serde_json::{json, Value};

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let model = model_dir("xlmr-tiny");
        let mut child = Command::new(env!("CARGO_BIN_EXE_rerank"))
            .args(["serve", "--model", model.to_str().unwrap(), "--port", "0"])
            .args(extra)
            .env("RERANK_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rerank serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Server { child, port }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let auth = key
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let payload = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, serde_json::from_str(payload).unwrap_or(Value::Null))
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Scores from `rerank score` for the same pairs: the reference for every API.
fn cli_scores(pairs: &[[&str; 2]]) -> Vec<f64> {
    let model = model_dir("xlmr-tiny");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rerank"))
        .args(["score", "--model", model.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(pairs).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn serves_every_api_and_shuts_down_gracefully() {
    let server = Server::start(&["--api-key", "k", "--served-model-name", "bge-reranker-base"]);
    let query = "what is panda?";
    let docs = [
        "hi",
        "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China.",
    ];
    let raw = cli_scores(&[[query, docs[0]], [query, docs[1]]]);
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());

    assert_eq!(server.request("GET", "/health", None, None).0, 200);
    let (s, v) = server.request(
        "POST",
        "/rerank",
        Some(&json!({"query": query, "texts": docs})),
        Some("k"),
    );
    assert_eq!(s, 200, "{v}");
    for item in v.as_array().unwrap() {
        let i = item["index"].as_u64().unwrap() as usize;
        assert!((item["score"].as_f64().unwrap() - sigmoid(raw[i])).abs() <= 1e-5);
    }
    let (s, v) = server.request(
        "POST",
        "/v2/rerank",
        Some(&json!({"model": "x", "query": query, "documents": docs})),
        Some("k"),
    );
    assert_eq!(s, 200, "{v}");
    for item in v["results"].as_array().unwrap() {
        let i = item["index"].as_u64().unwrap() as usize;
        assert!((item["relevance_score"].as_f64().unwrap() - sigmoid(raw[i])).abs() <= 1e-5);
    }
    let literal = format!("[['{query}', '{}'], ['{query}', '{}']]", docs[0], docs[1]);
    let (s, v) = server.request(
        "POST",
        "/bge-reranker-base/post",
        Some(&json!({"text_pairs": literal})),
        Some("k"),
    );
    assert_eq!(s, 200, "{v}");
    for (got, want) in v["rerank_scores"].as_array().unwrap().iter().zip(&raw) {
        assert!((got.as_f64().unwrap() - want).abs() <= 1e-5);
    }
    let (s, v) = server.request(
        "POST",
        "/rerank",
        Some(&json!({"query": query, "texts": docs})),
        None,
    );
    assert_eq!((s, v["error_type"].as_str()), (401, Some("Unauthorized")));
    let (s, _) = server.request("POST", "/rerank", Some(&json!({"query": query})), Some("k"));
    assert_eq!(s, 422);
    assert_eq!(server.request("GET", "/health", None, None).0, 200);

    let status = server.terminate();
    assert!(
        status.success(),
        "graceful shutdown must exit 0, got {status}"
    );
}

#[test]
fn bad_flags_fail_before_listening() {
    let out = Command::new(env!("CARGO_BIN_EXE_rerank"))
        .args(["serve", "--model", "/no/such/model", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/no/such/model") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
