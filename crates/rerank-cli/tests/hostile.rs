//! End-to-end: hostile clients against the real `rerank serve` on loopback (bounded in count
//! and time). Each request that once crashed, starved or pinned the server now gets an answer
//! (a 4xx or the right scores) with bounded memory, and shutdown always ends.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use rerank_fixtures::model_dir;
use serde_json::json;

/// Peak memory one request within the default limits may add.
const MAX_GROWTH_KIB: u64 = 1 << 20;

fn assert_answers_a_small_request(server: &Server) {
    let body = json!({"query": "q", "texts": ["a"]});
    assert_eq!(server.request("POST", "/rerank", Some(&body), None).0, 200);
}

#[test]
fn hostile_bodies_get_answers_in_bounded_memory() {
    let server = Server::start(&[]);
    assert_answers_a_small_request(&server);
    let idle = server.peak_rss_kib();

    // 9 KB of nested brackets once overflowed the stack and aborted the process.
    let deep = "[".repeat(9_000);
    let (s, v) = server.request(
        "POST",
        "/xlmr-tiny/post",
        Some(&json!({ "text_pairs": deep })),
        None,
    );
    assert_eq!(s, 422, "{v}");

    // A 199 KB query with 45,000 one-character documents once took > 8 GB.
    let query = "what is a panda bear? ".repeat(9_000);
    assert!(query.len() > 190_000 && query.len() < 200_000);
    let many = vec!["x"; 45_000];
    let (s, v) = server.request(
        "POST",
        "/v1/rerank",
        Some(&json!({"query": query, "documents": many})),
        None,
    );
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("--max-documents"),
        "{v}"
    );

    // A document of 66,000 U+FDFA (18 characters each under NFKC) once took +230 MB a request.
    let expanding = "\u{FDFA}".repeat(66_000);
    let (s, v) = server.request(
        "POST",
        "/rerank",
        Some(&json!({"query": "q", "texts": [expanding]})),
        None,
    );
    assert_eq!(s, 200, "{v}");

    // The 199 KB query with 1,000 documents: the query is tokenized once, the pairs run a few
    // batches at a time, and a small request sent meanwhile is answered before it.
    let big = std::thread::spawn({
        let docs = vec!["a panda is a bear that lives in China and eats bamboo"; 1_000];
        let (port, query) = (server.port, query.clone());
        move || {
            let body = json!({"query": query, "texts": docs, "raw_scores": true});
            let (s, v) = common::request_port(port, "POST", "/rerank", Some(&body), None);
            (s, v.as_array().map_or(0, Vec::len), Instant::now())
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let (s, _) = server.request(
        "POST",
        "/rerank",
        Some(&json!({"query": "q", "texts": ["a"]})),
        None,
    );
    let small_done = Instant::now();
    assert_eq!(s, 200);
    let (s, answered, big_done) = big.join().unwrap();
    assert_eq!((s, answered), (200, 1_000));
    assert!(
        small_done < big_done,
        "the small request waited for the whole large one"
    );

    let growth = server.peak_rss_kib().saturating_sub(idle);
    assert!(growth < MAX_GROWTH_KIB, "peak memory grew by {growth} KiB");
    assert_eq!(server.request("GET", "/health", None, None).0, 200);
    assert!(server.terminate().success());
}

#[test]
fn slow_clients_are_dropped_and_the_server_stays_up() {
    let server = Server::start(&["--max-connections", "32", "--header-read-timeout", "1"]);
    let idle = server.peak_rss_kib();
    let mut slow: Vec<TcpStream> = (0..128)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            s.write_all(b"POST /rerank HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // Every one is closed: 32 at a time, one header timeout per round.
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // Ends with the server's close (EOF or reset), not with our read timeout.
        if let Err(e) = s.read_to_end(&mut Vec::new()) {
            assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "still open");
        }
    }
    assert_answers_a_small_request(&server);
    let growth = server.peak_rss_kib().saturating_sub(idle);
    assert!(growth < MAX_GROWTH_KIB, "peak memory grew by {growth} KiB");
    assert!(server.terminate().success());
}

#[test]
fn shutdown_ends_within_the_deadline_despite_half_sent_requests() {
    let server = Server::start(&[
        "--shutdown-timeout",
        "2",
        "--header-read-timeout",
        "60",
        "--body-read-timeout",
        "60",
    ]);
    let mut half_header = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    half_header
        .write_all(b"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-")
        .unwrap();
    let mut half_body = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    half_body
        .write_all(b"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"query\": ")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    server.signal_term();
    let mut server = server;
    let status = server.child.wait().unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");
    assert!(!status.success(), "an abandoned request exits non-zero");
    let log = server.log();
    assert!(log.contains("abandoned 1 requests"), "{log}");
}

#[test]
fn names_that_would_be_route_syntax_fail_at_startup() {
    let model = model_dir("xlmr-tiny");
    for name in [":x", "*rest", "{*x}", "a{b", "{x}"] {
        let out = Command::new(env!("CARGO_BIN_EXE_rerank"))
            .args(["serve", "--model", model.to_str().unwrap(), "--port", "0"])
            .args(["--served-model-name", name])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("invalid served model name"), "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
    }
}

#[test]
fn an_index_naming_files_outside_the_folder_is_refused() {
    let fixture = model_dir("xlmr-tiny");
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        json!({"weight_map": {"a": "../../../etc/passwd"}}).to_string(),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rerank"))
        .args(["score", "--model", dir.path().to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"[[\"q\", \"p\"]]")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not inside the model folder"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
