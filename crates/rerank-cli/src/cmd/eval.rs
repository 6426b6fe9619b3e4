//! `rerank eval`: first-stage retrieval and reranking, scored with recall@k, MRR@k and nDCG@k.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rerank::eval::{self, Dataset, EvalReport, Metrics, Run, METRICS};
use rerank::Reranker;

use crate::cli::{DtypeArg, EvalArgs, FirstStageArg};
use crate::cmd::{load_embedder, plot};

/// One evaluated stage: its table label, run and seconds.
struct Stage {
    key: &'static str,
    label: String,
    run: Run,
    seconds: f64,
}

/// Loads the data, runs the first stage and the reranker, prints the table, writes the JSON
/// and the plot.
pub fn run(args: EvalArgs) -> Result<()> {
    let opts = args.scoring.options();
    opts.limits()?;
    let first_stage = match (args.first_stage, &args.embedder) {
        (Some(FirstStageArg::Dense), None) => {
            bail!("--first-stage dense needs --embedder MODEL (or use --first-stage bm25)")
        }
        (Some(stage), _) => stage,
        (None, Some(_)) => FirstStageArg::Dense,
        (None, None) => FirstStageArg::Bm25,
    };
    if let Some(plot) = &args.plot {
        plot::check_path(plot)?;
    }
    let data = Dataset::load(&args.input, &args.split)?;
    eprintln!(
        "{}: {} queries, {} documents",
        args.input.display(),
        data.queries.len(),
        data.corpus.len()
    );
    let k = args.top_k as usize;
    let mut stages = vec![match first_stage {
        FirstStageArg::Dense => dense_stage(&args, &data, k)?,
        FirstStageArg::Bm25 => {
            let start = Instant::now();
            let run = eval::bm25_first_stage(&data, k);
            Stage {
                key: "first_stage",
                label: "bm25".into(),
                run,
                seconds: start.elapsed().as_secs_f64(),
            }
        }
    }];
    if let Some(model) = &args.model {
        let reranker = Reranker::builder(model)
            .threads(args.threads)
            .dtype(args.dtype.dtype())
            .build()?;
        let start = Instant::now();
        let bar = progress(data.queries.len(), "reranking", "queries");
        let run = eval::rerank_run(&reranker, &data, &stages[0].run, &opts, &|n| {
            bar.set_position(n as u64)
        })?;
        bar.finish_and_clear();
        stages.push(Stage {
            key: "reranked",
            label: short_name(model),
            run,
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    let report = EvalReport::new(
        data.qrels.clone(),
        stages.iter().map(|s| (s.key, s.run.clone())).collect(),
    );
    print_table(&stages, &report, k);
    if let Some(path) = &args.json {
        let text = serde_json::to_string(&report)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        let labelled: Vec<(String, Metrics)> = stages
            .iter()
            .map(|s| (s.label.clone(), report.metrics[s.key].clone()))
            .collect();
        let title = format!(
            "{} ({} queries, top {k})",
            short_name(&args.input.display().to_string()),
            data.queries.len()
        );
        plot::draw(path, &title, &labelled)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Embeds the corpus (progress bar), then retrieves each query's top `k` by inner product.
fn dense_stage(args: &EvalArgs, data: &Dataset, k: usize) -> Result<Stage> {
    let model = args.embedder.as_deref().unwrap_or_default();
    let embedder = load_embedder(
        model,
        args.threads,
        args.dtype,
        args.embedder_query_instruction.clone(),
    )?;
    let start = Instant::now();
    let bar = progress(data.corpus.len(), "embedding corpus", "documents");
    let bf16 = args.dtype == DtypeArg::Bf16;
    let index = eval::embed_corpus(&embedder, data, bf16, &|n| bar.set_position(n as u64))?;
    bar.finish_and_clear();
    let embedded = start.elapsed().as_secs_f64();
    eprintln!(
        "embedded {} documents in {embedded:.1} s ({:.0} documents/s); corpus vectors: {:.1} MiB {}",
        index.len(),
        index.len() as f64 / embedded.max(1e-9),
        index.bytes() as f64 / (1 << 20) as f64,
        if bf16 { "bf16" } else { "f32" }
    );
    let run = eval::dense_first_stage(&embedder, &index, data, k)?;
    Ok(Stage {
        key: "first_stage",
        label: format!("dense {}", short_name(model)),
        run,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn progress(total: usize, message: &'static str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template(&format!(
            "{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit}, {{elapsed}} elapsed, ETA {{eta}}"
        ))
        .expect("progress template")
        .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// The last part of a path or hub id.
fn short_name(model: &str) -> String {
    let trimmed = model.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

fn print_table(stages: &[Stage], report: &EvalReport, k: usize) {
    let width = stages
        .iter()
        .map(|s| s.label.len())
        .max()
        .unwrap_or(0)
        .max(12);
    let mut header = format!("{:<10}", "");
    let mut names = format!("{:<10}", "");
    for (i, stage) in stages.iter().enumerate() {
        let title = if i == 0 {
            format!("first stage (top {k})")
        } else {
            "reranked".to_string()
        };
        header.push_str(&format!("  {title:<width$}"));
        names.push_str(&format!("  {:<width$}", stage.label));
    }
    println!("{}", header.trim_end());
    println!("{}", names.trim_end());
    for metric in METRICS {
        let name = metric.name();
        let mut line = format!("{name:<10}");
        for stage in stages {
            line.push_str(&format!("  {:<width$.4}", report.metrics[stage.key][&name]));
        }
        println!("{}", line.trim_end());
    }
    let mut line = format!("{:<10}", "seconds");
    for stage in stages {
        line.push_str(&format!("  {:<width$.1}", stage.seconds));
    }
    println!("{}", line.trim_end());
}
