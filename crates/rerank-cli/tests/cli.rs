//! End-to-end tests of the `rerank` binary: real process, real fixture model, stdin/stdout.

mod common;

use std::path::Path;
use std::process::Output;

use rerank_fixtures::{max_abs_diff, model_dir, reference};

fn rerank(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    common::run_rerank(args, stdin, env)
}

fn model() -> String {
    model_dir("xlmr-tiny").to_str().unwrap().to_string()
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A failing run: non-zero exit, exactly one line on stderr, no panic, nothing on stdout.
fn assert_clean_failure(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success: {stderr}"
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line expected: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn score_matches_reference_for_every_case() {
    let reference = reference("xlmr-tiny");
    for case in &reference.cases {
        let pairs = serde_json::to_string(&case.pairs).unwrap();
        let max_length = case.max_length.to_string();
        let truncation = case.truncation.replace('_', "-");
        let m = model();
        let mut args = vec![
            "score",
            "--model",
            &m,
            "--max-length",
            &max_length,
            "--truncation",
            &truncation,
        ];
        let q = case.query_max_length.map(|q| q.to_string());
        if let (Some(q), "flag") = (&q, case.truncation.as_str()) {
            args.extend(["--query-max-length", q.as_str()]);
        }
        let raw = floats(&stdout_json(&rerank(&args, &pairs, &[])));
        assert!(max_abs_diff(&raw, &case.scores) <= 1e-4, "{}", case.name);
        args.push("--normalize");
        let norm = floats(&stdout_json(&rerank(&args, &pairs, &[])));
        assert!(
            max_abs_diff(&norm, &case.normalized) <= 1e-4,
            "{} normalized",
            case.name
        );
    }
}

#[test]
fn score_reads_a_single_pair_and_a_file() {
    let case = &reference("xlmr-tiny").cases[0];
    let (q, p) = &case.pairs[1];
    let single = serde_json::to_string(&[q, p]).unwrap();
    let got = floats(&stdout_json(&rerank(
        &["score", "-m", &model()],
        &single,
        &[],
    )));
    assert!(max_abs_diff(&got, &case.scores[1..2]) <= 1e-4);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pairs.json");
    std::fs::write(&file, serde_json::to_string(&case.pairs[..3]).unwrap()).unwrap();
    let out = rerank(
        &["score", "-m", &model(), "--input", file.to_str().unwrap()],
        "",
        &[],
    );
    assert!(max_abs_diff(&floats(&stdout_json(&out)), &case.scores[..3]) <= 1e-4);
}

#[test]
fn rank_sorts_and_cuts() {
    let case = &reference("xlmr-tiny").cases[0];
    let query = &case.pairs[0].0;
    let docs: Vec<&String> = case
        .pairs
        .iter()
        .filter(|(q, _)| q == query)
        .map(|(_, p)| p)
        .collect();
    assert!(docs.len() >= 2);
    let input = serde_json::to_string(&docs).unwrap();
    let out = stdout_json(&rerank(
        &["rank", "-m", &model(), "-q", query, "--top-n", "2"],
        &input,
        &[],
    ));
    let ranked = out.as_array().unwrap();
    assert_eq!(ranked.len(), 2);
    let s0 = ranked[0]["score"].as_f64().unwrap();
    let s1 = ranked[1]["score"].as_f64().unwrap();
    assert!(s0 >= s1);
    let i0 = ranked[0]["index"].as_u64().unwrap() as usize;
    assert_eq!(ranked[0]["document"].as_str().unwrap(), docs[i0]);
}

#[test]
fn bad_input_fails_cleanly() {
    let m = model();
    let score = ["score", "-m", m.as_str()];
    for (stdin, needle) in [
        ("[[\"q\", \"p\"]", "not valid JSON"),
        ("", "input is empty"),
        ("[]", "no pairs"),
        ("{\"q\": \"p\"}", "JSON array"),
        ("[[\"q\", \"p\"], [\"only one\"]]", "item 1"),
        ("[[\"q\", 3]]", "item 0"),
    ] {
        assert_clean_failure(&rerank(&score, stdin, &[]), needle);
    }
    let rank = ["rank", "-m", m.as_str(), "-q", "x"];
    assert_clean_failure(&rerank(&rank, "[]", &[]), "no documents");
    assert_clean_failure(&rerank(&rank, "[1]", &[]), "not a string");
    assert_clean_failure(
        &rerank(
            &["rank", "-m", &m, "-q", "x", "--top-n", "0"],
            "[\"a\"]",
            &[],
        ),
        "top-n",
    );
    assert_clean_failure(
        &rerank(&["score", "-m", &m, "--bogus"], "[]", &[]),
        "--bogus",
    );
    assert_clean_failure(&rerank(&["score"], "[]", &[]), "--model");
    assert_clean_failure(
        &rerank(&["score", "-m", &m, "--max-length", "4"], "[]", &[]),
        "max-length",
    );
    assert_clean_failure(
        &rerank(
            &[
                "score",
                "-m",
                &m,
                "--max-length",
                "64",
                "--query-max-length",
                "100",
            ],
            "[[\"q\",\"p\"]]",
            &[],
        ),
        "query_max_length",
    );
    assert_clean_failure(
        &rerank(
            &["score", "-m", "/no/such/model/dir"],
            "[[\"q\",\"p\"]]",
            &[],
        ),
        "no/such",
    );
    assert_clean_failure(
        &rerank(
            &["score", "-m", &m, "--input", "/no/such/file.json"],
            "",
            &[],
        ),
        "/no/such/file.json",
    );
}

#[test]
fn hub_id_from_hf_home_cache() {
    let home = tempfile::tempdir().unwrap();
    let repo = home
        .path()
        .join("hub")
        .join("models--BAAI--bge-reranker-tiny");
    let commit = "aaaabbbbccccddddeeeeffff0000111122223333";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), commit).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::os::unix::fs::symlink(Path::new(&model()).join(f), snapshot.join(f)).unwrap();
    }
    let env = [
        ("HF_HOME", home.path().to_str().unwrap()),
        ("HF_HUB_OFFLINE", "1"),
    ];
    let case = &reference("xlmr-tiny").cases[0];
    let pairs = serde_json::to_string(&case.pairs).unwrap();
    let got = floats(&stdout_json(&rerank(
        &["score", "-m", "BAAI/bge-reranker-tiny"],
        &pairs,
        &env,
    )));
    assert!(max_abs_diff(&got, &case.scores) <= 1e-4);

    let out = rerank(&["score", "-m", "BAAI/bge-reranker-base"], &pairs, &env);
    assert_clean_failure(&out, "BAAI/bge-reranker-base");
    assert!(String::from_utf8_lossy(&out.stderr).contains("HF_HUB_OFFLINE"));
}

#[test]
fn help_explains_the_commands() {
    let out = rerank(&["--help"], "", &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("score") && help.contains("rank"));
    let out = rerank(&["score", "--help"], "", &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--model",
        "--normalize",
        "--max-length",
        "--query-max-length",
        "--batch-size",
        "--truncation",
        "--input",
    ] {
        assert!(help.contains(flag), "{flag} missing from score --help");
    }
}

#[test]
fn gemma_scores_with_a_prompt_and_encoders_refuse_one() {
    let reference = reference("gemma-tiny");
    let case = reference
        .cases
        .iter()
        .find(|c| c.prompt.is_some())
        .expect("a case with a prompt");
    let gemma = model_dir("gemma-tiny").to_str().unwrap().to_string();
    let pairs = serde_json::to_string(&case.pairs).unwrap();
    let max_length = case.max_length.to_string();
    let query_max_length = case.query_max_length.expect("query_max_length").to_string();
    let prompt = case.prompt.clone().unwrap();
    let out = rerank(
        &[
            "score",
            "--model",
            &gemma,
            "--max-length",
            &max_length,
            "--query-max-length",
            &query_max_length,
            "--prompt",
            &prompt,
        ],
        &pairs,
        &[],
    );
    let diff = max_abs_diff(&floats(&stdout_json(&out)), &case.scores);
    assert!(diff <= 1e-4, "{}: {diff}", case.name);

    let ranked = stdout_json(&rerank(
        &[
            "rank",
            "-m",
            &gemma,
            "-q",
            "what is panda?",
            "--prompt",
            "Relevant?",
        ],
        "[\"hi\", \"The giant panda is a bear.\"]",
        &[],
    ));
    assert_eq!(ranked.as_array().unwrap().len(), 2);

    assert_clean_failure(
        &rerank(
            &["score", "-m", &model(), "--prompt", "Relevant?"],
            "[[\"q\",\"p\"]]",
            &[],
        ),
        "prompt",
    );
}

#[test]
fn help_documents_the_prompt() {
    let out = rerank(&["score", "--help"], "", &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--prompt <TEXT>"), "{help}");
    assert!(help.contains("LLM rerankers"), "{help}");
}

#[test]
fn bench_runs_a_gemma_folder() {
    let gemma = model_dir("gemma-tiny").to_str().unwrap().to_string();
    let report = stdout_json(&rerank(
        &[
            "bench",
            "-m",
            &gemma,
            "--batch-size",
            "2",
            "--seq-len",
            "16",
            "--iterations",
            "1",
            "--warmup",
            "0",
            "--json",
        ],
        "",
        &[],
    ));
    assert_eq!(report["pairs"], 2);
    assert!(report["gflops"].as_f64().unwrap() > 0.0);
}

/// The layerwise rerankers from the command line: one flat array for one cutoff, one array
/// per layer (ascending) for several, with the reference's scores; bad values fail in one line.
#[test]
fn layerwise_cutoffs_and_compression_from_the_command_line() {
    let reference = rerank_fixtures::layer_reference("minicpm-tiny");
    let case = reference
        .cases
        .iter()
        .find(|c| c.name == "cutoffs-multi-512")
        .expect("case");
    let minicpm = model_dir("minicpm-tiny").to_str().unwrap().to_string();
    let pairs = serde_json::to_string(&case.pairs).unwrap();
    let several = stdout_json(&rerank(
        &["score", "-m", &minicpm, "--cutoff-layers", "2,4,6"],
        &pairs,
        &[],
    ));
    let lists = several.as_array().expect("one array per layer");
    assert_eq!(lists.len(), 3);
    for (got, want) in lists.iter().zip(case.scores.lists()) {
        assert!(max_abs_diff(&floats(got), &want) <= 1e-4);
    }
    let one = stdout_json(&rerank(
        &["score", "-m", &minicpm, "--cutoff-layers", "4"],
        &pairs,
        &[],
    ));
    assert!(max_abs_diff(&floats(&one), &case.scores.lists()[1]) <= 1e-4);
    for (args, needle) in [
        (vec!["--cutoff-layers", "9"], "out of range"),
        (vec!["--cutoff-layers", "6,2"], "ascending"),
        (vec!["--compress-ratio", "2"], "compress"),
    ] {
        let mut full = vec!["score", "-m", &minicpm];
        full.extend(args);
        assert_clean_failure(&rerank(&full, "[[\"q\",\"p\"]]", &[]), needle);
    }
    assert_clean_failure(
        &rerank(
            &["rank", "-m", &minicpm, "-q", "q", "--cutoff-layers", "2,4"],
            "[\"p\"]",
            &[],
        ),
        "exactly one",
    );

    let gemma2 = model_dir("gemma2-tiny").to_str().unwrap().to_string();
    let reference = rerank_fixtures::layer_reference("gemma2-tiny");
    let case = reference
        .cases
        .iter()
        .find(|c| c.name == "cut6-r4-c2-4")
        .expect("case");
    let pairs = serde_json::to_string(&case.pairs).unwrap();
    let compressed = stdout_json(&rerank(
        &[
            "score",
            "-m",
            &gemma2,
            "--cutoff-layers",
            "6",
            "--compress-ratio",
            "4",
            "--compress-layers",
            "2,4",
        ],
        &pairs,
        &[],
    ));
    assert!(max_abs_diff(&floats(&compressed), &case.scores.lists()[0]) <= 1e-4);
    assert_clean_failure(
        &rerank(
            &["score", "-m", &gemma2, "--compress-ratio", "3"],
            "[[\"q\",\"p\"]]",
            &[],
        ),
        "1, 2, 4 or 8",
    );
    let report = stdout_json(&rerank(
        &[
            "bench",
            "-m",
            &gemma2,
            "--batch-size",
            "2",
            "--seq-len",
            "40",
            "--iterations",
            "1",
            "--warmup",
            "0",
            "--cutoff-layers",
            "4",
            "--compress-ratio",
            "2",
            "--compress-layers",
            "2",
            "--json",
        ],
        "",
        &[],
    ));
    assert!(report["workload"]
        .as_str()
        .unwrap()
        .contains("compress ratio 2"));
    assert!(report["gflops"].as_f64().unwrap() > 0.0);
}
