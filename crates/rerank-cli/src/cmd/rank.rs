//! `rerank rank`: documents sorted by relevance to one query.

use anyhow::Result;

use crate::cli::RankArgs;
use crate::cmd::{load_reranker, print_json};
use crate::input::{parse_documents, read_input};

/// Reads documents, prints them ranked.
pub fn run(args: RankArgs) -> Result<()> {
    let opts = args.scoring.options();
    opts.limits()?;
    let documents = parse_documents(&read_input(args.input.as_deref())?)?;
    let reranker = load_reranker(&args.model.model, &args.model.run)?;
    let top_n = args.top_n.map(|n| n as usize);
    let ranked = reranker.rank(&args.query, &documents, top_n, &opts)?;
    print_json(&ranked)
}
