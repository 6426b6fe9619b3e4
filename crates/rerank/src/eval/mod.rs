//! Retrieval evaluation (`rerank eval`): a first stage (dense retrieval with an
//! [`Embedder`] or BM25) and a second stage (a [`Reranker`] over each query's top k), each
//! scored with recall@k, MRR@k and nDCG@k against the qrels, as trec_eval computes them
//! ([`metrics`]).

pub mod agreement;
pub mod dataset;
pub mod metrics;
pub mod retrieval;

use std::collections::BTreeMap;

pub use agreement::{agreement, Agreement};
pub use dataset::Dataset;
pub use metrics::{evaluate, per_query, trec_order, Metric, Metrics, Qrels, Run, METRICS};
pub use retrieval::{Bm25Index, DenseIndex};

use crate::embedder::{EmbedOptions, Embedder};
use crate::error::Result;
use crate::reranker::{Reranker, ScoreOptions};

/// Corpus texts embedded per call of [`embed_corpus`] (its progress unit).
pub const EMBED_CHUNK: usize = 256;

/// Embeds the corpus of `data` into an index (bf16 rows when `bf16`), calling
/// `progress(documents_done)` after each chunk of [`EMBED_CHUNK`] documents.
pub fn embed_corpus(
    embedder: &Embedder,
    data: &Dataset,
    bf16: bool,
    progress: &dyn Fn(usize),
) -> Result<DenseIndex> {
    let mut index = DenseIndex::new(embedder.dimension(), bf16);
    let opts = EmbedOptions::default();
    for chunk in data.corpus.chunks(EMBED_CHUNK) {
        let texts: Vec<&str> = chunk.iter().map(|(_, t)| t.as_str()).collect();
        for vector in embedder.embed_with(&texts, &opts)?.vectors {
            index.push(&vector)?;
        }
        progress(index.len());
    }
    Ok(index)
}

/// The run of a first stage: for each query of `data`, its hits `(corpus position, score)`.
pub fn run_from_hits(data: &Dataset, hits: &[Vec<(usize, f32)>]) -> Run {
    data.queries
        .iter()
        .zip(hits)
        .map(|((qid, _), hits)| {
            let docs = hits
                .iter()
                .map(|&(row, score)| (data.corpus[row].0.clone(), f64::from(score)))
                .collect();
            (qid.clone(), docs)
        })
        .collect()
}

/// Dense retrieval: each query (with the embedder's query instruction) against the index,
/// top `k`.
pub fn dense_first_stage(
    embedder: &Embedder,
    index: &DenseIndex,
    data: &Dataset,
    k: usize,
) -> Result<Run> {
    let texts: Vec<&str> = data.queries.iter().map(|(_, t)| t.as_str()).collect();
    let queries = embedder.embed_queries(&texts)?;
    let hits = queries
        .iter()
        .map(|q| index.search(q, k))
        .collect::<Result<Vec<_>>>()?;
    Ok(run_from_hits(data, &hits))
}

/// BM25 retrieval over the corpus of `data`, top `k`.
pub fn bm25_first_stage(data: &Dataset, k: usize) -> Run {
    let texts: Vec<&str> = data.corpus.iter().map(|(_, t)| t.as_str()).collect();
    let index = Bm25Index::new(&texts);
    let hits: Vec<_> = data
        .queries
        .iter()
        .map(|(_, q)| index.search(q, k))
        .collect();
    run_from_hits(data, &hits)
}

/// Reranks each query's first-stage documents with `reranker`; the run holds its raw scores
/// (or their sigmoid with `opts.normalize`). Calls `progress(queries_done)` after each query.
pub fn rerank_run(
    reranker: &Reranker,
    data: &Dataset,
    first_stage: &Run,
    opts: &ScoreOptions,
    progress: &dyn Fn(usize),
) -> Result<Run> {
    let texts: BTreeMap<&str, &str> = data
        .corpus
        .iter()
        .map(|(id, t)| (id.as_str(), t.as_str()))
        .collect();
    let mut run = Run::new();
    for (done, (qid, query)) in data.queries.iter().enumerate() {
        let ids: Vec<&str> = first_stage
            .get(qid)
            .map(|docs| docs.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut scores = BTreeMap::new();
        if !ids.is_empty() {
            let documents: Vec<&str> = ids.iter().map(|id| texts[id]).collect();
            for ranked in reranker.rank(query, &documents, None, opts)? {
                scores.insert(ids[ranked.index].to_string(), f64::from(ranked.score));
            }
        }
        run.insert(qid.clone(), scores);
        progress(done + 1);
    }
    Ok(run)
}

/// What `rerank eval --json` writes: the metrics of each stage, the qrels and the runs, so
/// that pytrec_eval can recompute every number.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    /// Stage name (`first_stage`, `reranked`) → metric name → mean over the queries.
    pub metrics: BTreeMap<String, Metrics>,
    /// The relevance grades.
    pub qrels: Qrels,
    /// Stage name → its run.
    pub runs: BTreeMap<String, Run>,
}

impl EvalReport {
    /// The report of `stages` (`(name, run)`) against `qrels`.
    pub fn new(qrels: Qrels, stages: Vec<(&str, Run)>) -> Self {
        let metrics = stages
            .iter()
            .map(|(name, run)| (name.to_string(), evaluate(&qrels, run)))
            .collect();
        let runs = stages
            .into_iter()
            .map(|(name, run)| (name.to_string(), run))
            .collect();
        Self {
            metrics,
            qrels,
            runs,
        }
    }
}
