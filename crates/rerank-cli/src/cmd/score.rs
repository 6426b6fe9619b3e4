//! `rerank score`: FlagReranker.compute_score from the command line.

use anyhow::Result;

use crate::cli::ScoreArgs;
use crate::cmd::{load_reranker, print_json};
use crate::input::{parse_pairs, read_input};

/// Reads pairs, prints their scores in input order: one flat array, or one array per layer
/// (ascending) when several `--cutoff-layers` are given, as FlagEmbedding returns them.
pub fn run(args: ScoreArgs) -> Result<()> {
    let opts = args.scoring.options();
    opts.limits()?;
    let pairs = parse_pairs(&read_input(args.input.as_deref())?)?;
    let reranker = load_reranker(&args.model.model, &args.model.run)?;
    if opts.cutoff_layers.as_ref().is_some_and(|l| l.len() > 1) {
        let layers = reranker.compute_score_layers(&pairs, &opts)?;
        return print_json(&layers.scores);
    }
    let scores = reranker.compute_score(&pairs, &opts)?;
    print_json(&scores)
}
