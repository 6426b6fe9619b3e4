//! The real `rerank serve` on a free loopback port, for the end-to-end tests.

#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use rerank_fixtures::model_dir;
use serde_json::Value;

pub struct Server {
    pub child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Server {
    /// Serves the xlmr-tiny fixture.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_model("xlmr-tiny", extra)
    }

    /// Serves the fixture model `name`.
    pub fn start_model(name: &str, extra: &[&str]) -> Self {
        let model = model_dir(name);
        let model = model.to_str().unwrap();
        let mut args = vec!["--model", model];
        args.extend_from_slice(extra);
        Self::start_args(&args)
    }

    /// `rerank serve --port 0` with these arguments.
    pub fn start_args(args: &[&str]) -> Self {
        let log = std::env::temp_dir().join(format!(
            "rerank-serve-{}-{:?}.log",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut child = Command::new(env!("CARGO_BIN_EXE_rerank"))
            .args(["serve", "--port", "0"])
            .args(args)
            .env("RERANK_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(&log).expect("server log"),
            ))
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
        Server { child, port, log }
    }

    /// One request on a new connection: status and JSON body (`null` if not JSON).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        request_port(self.port, method, path, body, key)
    }

    /// What the server wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `VmHWM` (peak resident memory) of the server process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }

    /// Sends SIGTERM.
    pub fn signal_term(&self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal_term();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// One request to the server on `port` (see [`Server::request`]).
pub fn request_port(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
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

/// Runs the `rerank` binary with `args`, `stdin` and extra `env` (the caller's RERANK_MODEL and
/// RERANK_EMBEDDING_MODEL removed); a run that fails on its flags may not read stdin.
pub fn run_rerank(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rerank"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RERANK_MODEL")
        .env_remove("RERANK_EMBEDDING_MODEL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rerank");
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}
