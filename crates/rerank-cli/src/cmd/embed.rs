//! `rerank embed`: SentenceTransformer.encode / FlagModel.encode from the command line.

use anyhow::Result;
use rerank::EmbedOptions;

use crate::cli::EmbedArgs;
use crate::cmd::{load_embedder, print_json};
use crate::input::{parse_texts, read_input};

/// Reads texts, prints one vector per text in input order.
pub fn run(args: EmbedArgs) -> Result<()> {
    let texts = parse_texts(&read_input(args.input.as_deref())?)?;
    let embedder = load_embedder(
        &args.model.model,
        args.model.threads,
        args.model.dtype,
        None,
    )?;
    let opts = EmbedOptions {
        normalize: args.normalize(),
        instruction: args.query_instruction.clone().filter(|i| !i.is_empty()),
        batch_tokens: args.batch_tokens as usize,
        ..EmbedOptions::default()
    };
    print_json(&embedder.embed_with(&texts, &opts)?.vectors)
}
