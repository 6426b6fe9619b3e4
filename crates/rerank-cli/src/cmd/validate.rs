//! `rerank validate`: scores a dataset and compares with reference scores or a second model.

use std::ops::Range;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rerank::eval::dataset::FlagLine;
use rerank::eval::{agreement, Agreement};
use rerank::{Reranker, ScoreOptions};
use serde::Deserialize;
use serde_json::Value;

use crate::cli::{DtypeArg, RunArgs, ValidateArgs};
use crate::cmd::{load_reranker, print_json};
use crate::input::{parse_pairs, read_input};

/// Pairs per scoring call (the progress bar's step).
const CHUNK: usize = 256;

/// Pairs and the row range of each query's group.
struct Data {
    pairs: Vec<(String, String)>,
    groups: Vec<Range<usize>>,
}

#[derive(Deserialize)]
struct SentenceLine {
    sentence1: String,
    sentence2: String,
}

/// Reads `--data`: a JSON array of pairs, or JSONL of `{query, pos, neg}` or
/// `{sentence1, sentence2}` lines. Consecutive pairs with the same query form a group.
fn read_data(text: &str) -> Result<Data> {
    let trimmed = text.trim_start();
    let pairs: Vec<(String, String)> = if trimmed.starts_with('[') {
        parse_pairs(text)?
    } else {
        let mut pairs = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let value: Value = serde_json::from_str(line)
                .with_context(|| format!("--data line {}: not JSON", i + 1))?;
            if value.get("query").is_some() {
                let q: FlagLine = serde_json::from_value(value)
                    .with_context(|| format!("--data line {}: not {{query, pos, neg}}", i + 1))?;
                for passage in q.pos.into_iter().chain(q.neg) {
                    pairs.push((q.query.clone(), passage));
                }
            } else {
                let s: SentenceLine = serde_json::from_value(value).with_context(|| {
                    format!(
                        "--data line {}: neither {{query, pos, neg}} nor {{sentence1, sentence2}}",
                        i + 1
                    )
                })?;
                pairs.push((s.sentence1, s.sentence2));
            }
        }
        pairs
    };
    if pairs.is_empty() {
        bail!("--data holds no pairs");
    }
    let mut groups: Vec<Range<usize>> = Vec::new();
    for i in 0..pairs.len() {
        match groups.last_mut() {
            Some(g) if pairs[g.start].0 == pairs[i].0 => g.end = i + 1,
            _ => groups.push(i..i + 1),
        }
    }
    Ok(Data { pairs, groups })
}

/// Reference scores: a JSON array of numbers, or one number per line.
fn read_reference(text: &str) -> Result<Vec<f64>> {
    if text.trim_start().starts_with('[') {
        let values: Vec<f64> =
            serde_json::from_str(text).context("--reference is not a JSON array of numbers")?;
        return Ok(values);
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            l.trim()
                .parse::<f64>()
                .with_context(|| format!("--reference line {}: not a number", i + 1))
        })
        .collect()
}

/// Scores every pair, `CHUNK` at a time, with a progress bar.
fn score_all(
    reranker: &Reranker,
    pairs: &[(String, String)],
    opts: &ScoreOptions,
    what: &str,
) -> Result<Vec<f64>> {
    let bar = ProgressBar::new(pairs.len() as u64).with_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} pairs, {elapsed} elapsed, ETA {eta}",
        )
        .expect("progress template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    let mut scores = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(CHUNK) {
        scores.extend(
            reranker
                .compute_score(chunk, opts)?
                .into_iter()
                .map(f64::from),
        );
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(scores)
}

/// Scores the data with `--model`, compares, prints, and fails unless PASS.
pub fn run(args: ValidateArgs) -> Result<()> {
    let opts = args.scoring.options();
    opts.limits()?;
    if args.tolerance.is_nan() || args.tolerance < 0.0 {
        bail!("--tolerance must be a non-negative number");
    }
    let data = read_data(&read_input(Some(&args.data))?)?;
    let reference = match &args.reference {
        Some(path) => {
            let values = read_reference(&read_input(Some(path))?)?;
            if values.len() != data.pairs.len() {
                bail!(
                    "--reference has {} scores for {} pairs: they must match one to one, in order",
                    values.len(),
                    data.pairs.len()
                );
            }
            Some(values)
        }
        None => None,
    };
    let reranker = load_reranker(&args.model.model, &args.model.run)?;
    let scores = score_all(&reranker, &data.pairs, &opts, &args.model.model)?;
    let reference = match (reference, &args.against) {
        (Some(values), _) => values,
        (None, Some(other)) => {
            let run = RunArgs {
                dtype: args.against_dtype.unwrap_or(DtypeArg::F32),
                onnx_file: args.against_onnx_file.clone(),
                ..args.model.run.clone()
            };
            let against = load_reranker(other, &run)?;
            score_all(&against, &data.pairs, &opts, other)?
        }
        (None, None) => bail!("give --reference SCORES or --against MODEL"),
    };
    let result = agreement(&scores, &reference, &data.groups);
    let pass = result.max_abs_diff <= args.tolerance;
    if args.json {
        print_json(&Verdict {
            agreement: result,
            tolerance: args.tolerance,
            pass,
        })?;
    } else {
        print_table(&result, args.tolerance, pass);
    }
    if !pass {
        bail!(
            "validation FAILED: max |Δ| {:.3e} > tolerance {:.3e}",
            result.max_abs_diff,
            args.tolerance
        );
    }
    Ok(())
}

/// The JSON report: the agreement's fields, the tolerance and the verdict.
#[derive(serde::Serialize)]
struct Verdict {
    #[serde(flatten)]
    agreement: Agreement,
    tolerance: f64,
    pass: bool,
}

fn print_table(m: &Agreement, tolerance: f64, pass: bool) {
    println!(
        "pairs            {} ({} queries ranked)",
        m.pairs, m.queries
    );
    println!("max_abs_diff     {:.3e}", m.max_abs_diff);
    println!("mean_abs_diff    {:.3e}", m.mean_abs_diff);
    println!("pearson          {:.6}", m.pearson);
    println!("kendall_tau      {:.4}", m.kendall_tau);
    println!("top1_agreement   {:.4}", m.top1_agreement);
    let verdict = if pass { "PASS" } else { "FAIL" };
    let cmp = if pass { "≤" } else { ">" };
    println!(
        "{verdict} (max_abs_diff {:.3e} {cmp} tolerance {tolerance:.3e})",
        m.max_abs_diff
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_formats_and_groups() {
        let d = read_data(r#"[["q","a"],["q","b"],["r","c"]]"#).unwrap();
        assert_eq!(d.groups, vec![0..2, 2..3]);
        let d = read_data("{\"query\":\"q\",\"pos\":[\"a\"],\"neg\":[\"b\",\"c\"]}\n{\"query\":\"r\",\"pos\":[\"d\"]}\n").unwrap();
        assert_eq!(d.pairs[2], ("q".to_string(), "c".to_string()));
        assert_eq!(d.groups, vec![0..3, 3..4]);
        let d = read_data("{\"sentence1\":\"s\",\"sentence2\":\"t\"}\n").unwrap();
        assert_eq!(d.pairs.len(), 1);
        assert!(read_data("{\"x\":1}\n").is_err());
        assert!(read_data("[]").is_err());
        assert_eq!(read_reference("[1, 2.5]").unwrap(), vec![1.0, 2.5]);
        assert_eq!(read_reference("1\n\n-2e-3\n").unwrap(), vec![1.0, -0.002]);
        assert!(read_reference("1\nx\n").is_err());
    }
}
