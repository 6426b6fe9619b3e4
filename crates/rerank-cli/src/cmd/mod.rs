//! One module per subcommand.

mod bench;
mod embed;
mod eval;
mod plot;
mod rank;
mod score;
mod serve;
mod validate;

use anyhow::Result;
use rerank::{Embedder, Reranker};

use crate::cli::{Cli, Command, DtypeArg, RunArgs};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Score(args) => score::run(args),
        Command::Rank(args) => rank::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Bench(args) => bench::run(args),
    }
}

/// Loads the reranker `model` (folder or hub id) as `run` says.
pub(crate) fn load_reranker(model: &str, args: &RunArgs) -> Result<Reranker> {
    Ok(Reranker::builder(model)
        .threads(args.threads)
        .dtype(args.dtype.dtype())
        .attention_softcap(args.attention_softcap)
        .onnx_file(args.onnx_file.clone())
        .build()?)
}

/// Loads an embedder (folder or hub id) with an optional query instruction.
pub(crate) fn load_embedder(
    model: &str,
    threads: usize,
    dtype: DtypeArg,
    query_instruction: Option<String>,
) -> Result<Embedder> {
    Ok(Embedder::builder(model)
        .threads(threads)
        .dtype(dtype.dtype())
        .query_instruction(query_instruction)
        .build()?)
}

/// Writes `value` as one line of JSON on stdout.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
