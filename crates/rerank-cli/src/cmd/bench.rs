//! `rerank bench`: the inference report (pairs/s, where the time goes, GFLOP/s, % of peak).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rerank::peak::{self, Peak};
use rerank::scores::{ranking, sigmoid};
use rerank::{EncodedPair, LayerPlan, LayerRequest, PairLimits, PromptSpan, Reranker, Truncation};
use serde::{Deserialize, Serialize};

use crate::cli::BenchArgs;
use crate::cmd::{load_reranker, print_json};

/// One scoring call of the workload.
enum Call {
    /// Pre-built token ids (synthetic shapes: nothing to tokenize).
    Encoded(Vec<EncodedPair>),
    /// A query and its passages, tokenized inside the timed loop.
    Text {
        query: String,
        passages: Vec<String>,
    },
}

#[derive(Deserialize)]
struct JsonlCall {
    query: String,
    passages: Vec<String>,
}

/// The report, in the seed's field names.
#[derive(Debug, Serialize)]
struct Report {
    workload: String,
    dtype: String,
    /// The matrix-product kernel the dtype runs on this CPU.
    kernel: String,
    threads: usize,
    calls: usize,
    pairs: usize,
    tokens: usize,
    avg_sps: f64,
    e2e_time: f64,
    avg_inference_time: f64,
    avg_preprocess_time: f64,
    avg_postprocess_time: f64,
    gflops: f64,
    peak_pct: f64,
    /// The peak the % is of, in GOP/s.
    peak_gops: f64,
    /// Where that peak comes from: the instruction measured, or `--peak-gflops`.
    peak_source: String,
    peak_rss_mb: f64,
}

#[derive(Default)]
struct Times {
    pre: Duration,
    infer: Duration,
    post: Duration,
    pairs: usize,
    tokens: usize,
    flops: f64,
    calls: usize,
}

/// Runs the workload `warmup + iterations` times and prints the report.
pub fn run(args: BenchArgs) -> Result<()> {
    let reranker = load_reranker(&args.model.model, &args.model.run)?;
    let (workload, calls) = workload(&args, &reranker)?;
    let limits = PairLimits::new(Truncation::Flag, args.max_length as usize, None);
    let plan = reranker.plan_single_layer(&LayerRequest {
        cutoff_layers: args.cutoff_layers.map(|l| vec![l]),
        compress_ratio: args.compress_ratio,
        compress_layers: args.compress_layers.clone(),
    })?;
    let run = Run {
        reranker: &reranker,
        calls: &calls,
        limits: &limits,
        plan: plan.as_ref(),
    };
    let total = (args.warmup + args.iterations) * calls.len() as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} calls, {elapsed} elapsed, ETA {eta}",
        )
        .expect("progress template")
        .progress_chars("=> "),
    );
    bar.set_message("warm-up");
    for _ in 0..args.warmup {
        run.pass(&bar)?;
    }
    bar.set_message("timed");
    let mut times = Times::default();
    for _ in 0..args.iterations {
        let t = run.pass(&bar)?;
        times.pre += t.pre;
        times.infer += t.infer;
        times.post += t.post;
        times.pairs += t.pairs;
        times.tokens += t.tokens;
        times.flops += t.flops;
        times.calls += t.calls;
    }
    bar.finish_and_clear();
    let dtype = format!("{:?}", args.model.run.dtype).to_lowercase();
    let peak = match args.peak_gflops {
        Some(gops) => Peak {
            gops,
            instruction: "--peak-gflops",
        },
        None => peak::peak(args.model.run.dtype.dtype()),
    };
    let workload = match &plan {
        Some(p) if p.compress_ratio > 1 => format!(
            "{workload}, cutoff layer {}, compress ratio {} before layers {:?}",
            p.deepest(),
            p.compress_ratio,
            p.compress_layers
        ),
        Some(p) => format!("{workload}, cutoff layer {}", p.deepest()),
        None => workload,
    };
    let mut report = report(workload, dtype, &times, peak);
    report.kernel = reranker.kernel().to_string();
    if args.json {
        print_json(&report)
    } else {
        print_table(&report);
        Ok(())
    }
}

fn workload(args: &BenchArgs, reranker: &Reranker) -> Result<(String, Vec<Call>)> {
    if let (Some(batch), Some(len)) = (args.batch_size, args.seq_len) {
        if batch == 0 || len < 2 || len > reranker.max_sequence_length() {
            bail!(
                "--batch-size must be ≥ 1 and --seq-len between 2 and {}",
                reranker.max_sequence_length()
            );
        }
        return Ok((
            format!("synthetic {batch}×{len}"),
            vec![Call::Encoded(synthetic(batch, len, reranker.vocab_size()))],
        ));
    }
    let path = args
        .pairs
        .as_ref()
        .context("give --pairs FILE or --batch-size with --seq-len")?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut calls = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let call: JsonlCall = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: expected {{\"query\", \"passages\"}}",
                path.display(),
                i + 1
            )
        })?;
        if call.passages.is_empty() {
            bail!("{} line {}: no passages", path.display(), i + 1);
        }
        calls.push(Call::Text {
            query: call.query,
            passages: call.passages,
        });
    }
    if calls.is_empty() {
        bail!("{} has no calls", path.display());
    }
    Ok((path.display().to_string(), calls))
}

/// `batch` pairs of exactly `len` tokens: `<s>`, ordinary ids (below `vocab`, from 1000 where
/// the vocabulary is large enough), `</s>`.
fn synthetic(batch: usize, len: usize, vocab: usize) -> Vec<EncodedPair> {
    let (first, span) = if vocab > 201_000 {
        (1000, 200_000)
    } else {
        (4, vocab.saturating_sub(4).max(1))
    };
    (0..batch)
        .map(|b| {
            let mut ids = vec![0u32];
            ids.extend((0..len - 2).map(|i| (first + (b * 7919 + i * 104_729) % span) as u32));
            ids.push(2);
            EncodedPair {
                type_ids: vec![0; ids.len()],
                // For token compression: a quarter query, half passage, a quarter prompt.
                span: Some(PromptSpan {
                    head: len / 4,
                    tail: len / 4,
                }),
                ids,
            }
        })
        .collect()
}

/// One workload on one model with its layer plan.
struct Run<'a> {
    reranker: &'a Reranker,
    calls: &'a [Call],
    limits: &'a PairLimits,
    plan: Option<&'a LayerPlan>,
}

impl Run<'_> {
    /// One timed pass over every call.
    fn pass(&self, bar: &ProgressBar) -> Result<Times> {
        let reranker = self.reranker;
        let mut t = Times::default();
        for call in self.calls {
            let start = Instant::now();
            let owned;
            let encoded = match call {
                Call::Encoded(e) => e,
                Call::Text { query, passages } => {
                    let pairs: Vec<(&str, &str)> = passages
                        .iter()
                        .map(|p| (query.as_str(), p.as_str()))
                        .collect();
                    owned = reranker.encode_pairs(&pairs, self.limits)?;
                    &owned
                }
            };
            let encoded_at = Instant::now();
            let raw = reranker
                .score_encoded_plan(encoded, encoded.len(), self.plan)?
                .pop()
                .unwrap_or_default();
            let scored_at = Instant::now();
            let normalized: Vec<f32> = raw.iter().map(|&s| sigmoid(s)).collect();
            std::hint::black_box(ranking(&normalized, None));
            let done = Instant::now();
            t.pre += encoded_at - start;
            t.infer += scored_at - encoded_at;
            t.post += done - scored_at;
            t.pairs += encoded.len();
            t.tokens += encoded.iter().map(|e| e.ids.len()).sum::<usize>();
            t.flops += encoded
                .iter()
                .map(|e| reranker.plan_flops(e, self.plan))
                .sum::<f64>();
            t.calls += 1;
            bar.inc(1);
        }
        Ok(t)
    }
}

fn report(workload: String, dtype: String, t: &Times, peak: Peak) -> Report {
    let e2e = (t.pre + t.infer + t.post).as_secs_f64();
    let calls = t.calls.max(1) as f64;
    let gflops = t.flops / t.infer.as_secs_f64().max(1e-9) / 1e9;
    Report {
        workload,
        dtype,
        kernel: String::new(),
        threads: rerank::runtime::threads(),
        calls: t.calls,
        pairs: t.pairs,
        tokens: t.tokens,
        avg_sps: t.pairs as f64 / e2e.max(1e-9),
        e2e_time: e2e,
        avg_inference_time: t.infer.as_secs_f64() / calls,
        avg_preprocess_time: t.pre.as_secs_f64() / calls,
        avg_postprocess_time: t.post.as_secs_f64() / calls,
        gflops,
        peak_pct: 100.0 * gflops / peak.gops,
        peak_gops: peak.gops,
        peak_source: peak.instruction.to_string(),
        peak_rss_mb: peak_rss_mb(),
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB; 0 where unknown.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn print_table(r: &Report) {
    println!("workload              {}", r.workload);
    println!("dtype / threads       {} / {}", r.dtype, r.threads);
    println!("kernel                {}", r.kernel);
    println!(
        "calls / pairs         {} / {} ({} tokens)",
        r.calls, r.pairs, r.tokens
    );
    println!("avg_sps               {:.2} pairs/s", r.avg_sps);
    println!("e2e_time              {:.3} s", r.e2e_time);
    println!("avg_inference_time    {:.4} s/call", r.avg_inference_time);
    println!("avg_preprocess_time   {:.4} s/call", r.avg_preprocess_time);
    println!("avg_postprocess_time  {:.6} s/call", r.avg_postprocess_time);
    println!(
        "GFLOP/s               {:.1} ({:.0} % of peak)",
        r.gflops, r.peak_pct
    );
    println!(
        "peak                  {:.1} GOP/s ({}, {} threads)",
        r.peak_gops, r.peak_source, r.threads
    );
    println!("peak RSS              {:.0} MiB", r.peak_rss_mb);
    // Seed 000's closing line, to compare its numbers line for line.
    println!(
        "summary: avg_sps: {:.2}, e2e_time: {:.3}, avg_inference_time: {:.4}, \
         avg_preprocess_time: {:.4}, avg_postprocess: {:.6}",
        r.avg_sps, r.e2e_time, r.avg_inference_time, r.avg_preprocess_time, r.avg_postprocess_time
    );
}
