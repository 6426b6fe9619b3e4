//! Command-line arguments, parsed once into typed options.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rerank::{ScoreOptions, Truncation};

/// Run BAAI BGE rerankers with FlagEmbedding's scores.
#[derive(Debug, Parser)]
#[command(name = "rerank", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score [query, passage] pairs: reads a JSON array of pairs, prints a JSON array of scores
    /// in input order (FlagReranker.compute_score).
    Score(ScoreArgs),
    /// Rank documents against one query: reads a JSON array of documents, prints
    /// [{"index","score","document"}] sorted by score, best first.
    Rank(RankArgs),
    /// Serve over HTTP: a reranker (--model) on TEI /rerank, Cohere and Jina /v1|v2/rerank and
    /// the legacy /{served-model-name}/post; an embedder (--embedding-model) on TEI /embed and
    /// OpenAI /v1/embeddings; /health, /info, /metrics, /openapi.json.
    Serve(ServeArgs),
    /// Embed texts with a dense embedder (sentence-transformers or FlagModel style): reads a
    /// JSON array of texts, prints a JSON array of vectors in input order.
    Embed(EmbedArgs),
    /// Retrieval evaluation: a first stage (dense retrieval with --embedder, or BM25) over the
    /// whole corpus, then --model reranking each query's top --top-k; prints recall@1/5/10,
    /// MRR@1/10 and nDCG@10 of both stages side by side.
    ///
    /// Definitions (as trec_eval / pytrec_eval): a document is relevant when its grade is ≥ 1;
    /// each query's list is ordered by score, ties by document id descending. recall@k =
    /// relevant documents in the top k / all relevant documents of the query. MRR@k = 1 / rank
    /// of the first relevant document within the top k, 0 if none. nDCG@k = Σ grade/log2(rank+1)
    /// over the top k, divided by the same sum for the ideal order. Each metric is the mean
    /// over the queries.
    Eval(EvalArgs),
    /// Precision check (seed 000's eval_metric): score a dataset with --model and compare with
    /// reference scores (--reference) or a second model, backend or dtype (--against); prints
    /// max and mean |Δ|, Pearson r, each query's Kendall τ-b and top-1 agreement, and PASS when
    /// max |Δ| ≤ --tolerance (exit code 0 only then).
    Validate(ValidateArgs),
    /// Throughput report: pairs/s, time split into tokenisation / inference / post-processing,
    /// GFLOP/s and % of this machine's GEMM peak, on a synthetic shape or a JSONL of real pairs.
    Bench(BenchArgs),
}

/// Which model, and how to run it.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Model folder (config.json, tokenizer.json, model.safetensors) or Hugging Face hub id
    /// such as BAAI/bge-reranker-v2-m3 (read from HF_HOME's cache; HF_HUB_OFFLINE=1 forbids
    /// downloads).
    #[arg(long, short, env = "RERANK_MODEL")]
    pub model: String,
    #[command(flatten)]
    pub run: RunArgs,
}

/// How a reranker runs: threads, precision, backend.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// CPU threads (0 = all cores).
    #[arg(long, env = "RERANK_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Precision of the encoder's matrix products: f32 = the reference's numbers; bf16 = bf16
    /// weights and activations with f32 accumulation (Intel AMX or AVX512_BF16); int8 = int8
    /// weights and activations with i32 accumulation (AMX or AVX512_VNNI). Reduced precisions
    /// are faster and
    /// move scores slightly (see BENCHMARKS.md).
    #[arg(long, env = "RERANK_DTYPE", value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// bge-reranker-v2.5-gemma2-lightweight only: apply Gemma-2's attention-logit soft-cap
    /// (transformers' eager attention). Off by default, as FlagEmbedding runs the model (sdpa
    /// attention, no cap); scores differ slightly.
    #[arg(long, env = "RERANK_ATTENTION_SOFTCAP")]
    pub attention_softcap: bool,
    /// Run this ONNX export (relative to the model folder, or absolute) through ONNX Runtime
    /// instead of the native engine [default: a folder without safetensors weights runs its
    /// model.onnx or onnx/model.onnx]. Needs ONNX Runtime ≥ 1.31 at ORT_DYLIB_PATH (e.g.
    /// onnxruntime/capi/libonnxruntime.so.* of the onnxruntime wheel).
    #[arg(long, env = "RERANK_ONNX_FILE", value_name = "FILE")]
    pub onnx_file: Option<PathBuf>,
}

/// Compute precisions the engine offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    /// 32-bit float weights and activations: the reference's numbers (within 1e-4).
    F32,
    /// bf16 weights and activations, f32 accumulation.
    Bf16,
    /// int8 weights (per-channel) and activations (per-token, dynamic), i32 accumulation.
    Int8,
}

impl DtypeArg {
    /// The library's value.
    pub fn dtype(self) -> rerank::Dtype {
        match self {
            DtypeArg::F32 => rerank::Dtype::F32,
            DtypeArg::Bf16 => rerank::Dtype::Bf16,
            DtypeArg::Int8 => rerank::Dtype::Int8,
        }
    }
}

/// How pairs are cut and scored.
#[derive(Debug, Args)]
pub struct ScoringArgs {
    /// Apply a sigmoid: scores in (0, 1) instead of raw logits.
    #[arg(long)]
    pub normalize: bool,
    /// Maximum tokens of a pair, special tokens included. LLM rerankers: the limit before the
    /// separator and prompt are added (FlagLLMReranker's max_length).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(8..))]
    pub max_length: u64,
    /// Maximum tokens of the query [default: 3/4 of --max-length].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub query_max_length: Option<u64>,
    /// Pairs per forward pass.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// How over-long pairs are cut: `flag` = FlagEmbedding (query to --query-max-length, then
    /// the passage's tail); `longest-first` = TEI / sentence-transformers.
    #[arg(long, value_enum, default_value_t = TruncationArg::Flag)]
    pub truncation: TruncationArg,
    /// LLM rerankers only: the instruction after each pair [default: FlagEmbedding's for the
    /// model: "Given a query A and a passage B, determine whether the passage contains an
    /// answer to the query by providing a prediction of either 'Yes' or 'No'." (v2-gemma,
    /// v2-minicpm-layerwise), "Predict whether passage B contains an answer to query A."
    /// (v2.5-gemma2-lightweight)]. An error for cross-encoders.
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,
    /// LLM rerankers only: the text put before each query [default: "A: "].
    #[arg(long, value_name = "TEXT")]
    pub query_instruction: Option<String>,
    /// LLM rerankers only: the text put before each passage [default: "B: "].
    #[arg(long, value_name = "TEXT")]
    pub passage_instruction: Option<String>,
    /// Layerwise LLM rerankers (v2-minicpm-layerwise, v2.5-gemma2-lightweight) only: score
    /// with the hidden state after these layers, ascending, comma-separated [default: the
    /// last layer]. Fewer layers run faster; layers past the deepest are not computed.
    /// `rerank score` prints one array per layer when several are given.
    #[arg(long, value_name = "L[,L…]", value_delimiter = ',')]
    pub cutoff_layers: Option<Vec<usize>>,
    /// v2.5-gemma2-lightweight only: average the passage's tokens in groups of 1, 2, 4 or 8
    /// before each --compress-layers layer [default: 1, no compression].
    #[arg(long, value_name = "R")]
    pub compress_ratio: Option<usize>,
    /// v2.5-gemma2-lightweight only: the layers before which the passage is compressed,
    /// comma-separated [default: 8].
    #[arg(long, value_name = "L[,L…]", value_delimiter = ',')]
    pub compress_layers: Option<Vec<usize>>,
}

/// Pair length limits shared by the server's APIs.
#[derive(Debug, Args)]
pub struct ServeScoringArgs {
    /// Maximum tokens of a pair, special tokens included.
    #[arg(long, env = "RERANK_MAX_LENGTH", default_value_t = 512, value_parser = clap::value_parser!(u64).range(8..))]
    pub max_length: u64,
    /// Maximum tokens of the query [default: 3/4 of --max-length].
    #[arg(long, env = "RERANK_QUERY_MAX_LENGTH", value_parser = clap::value_parser!(u64).range(1..))]
    pub query_max_length: Option<u64>,
    /// How over-long pairs are cut (see `rerank score --help`).
    #[arg(long, env = "RERANK_TRUNCATION", value_enum, default_value_t = TruncationArg::Flag)]
    pub truncation: TruncationArg,
}

/// `rerank serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The reranker: model folder or Hugging Face hub id (see `rerank score --help`). May be
    /// left out when --embedding-model is given.
    #[arg(
        long,
        short,
        env = "RERANK_MODEL",
        required_unless_present = "embedding_model"
    )]
    pub model: Option<String>,
    /// The embedding model served on /embed and /v1/embeddings (see `rerank embed --help`).
    #[arg(long, env = "RERANK_EMBEDDING_MODEL")]
    pub embedding_model: Option<String>,
    /// The name embeddings requests may give as `model` [default: the embedding model's
    /// folder name or hub id's last part; with no reranker, --served-model-name].
    #[arg(long, env = "RERANK_SERVED_EMBEDDING_MODEL_NAME")]
    pub served_embedding_model_name: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub scoring: ServeScoringArgs,
    /// Address to listen on.
    #[arg(long, env = "RERANK_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 = any free port; the chosen one is logged).
    #[arg(long, env = "RERANK_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Name used in the legacy route /{name}/post and in responses: letters, digits,
    /// `-_.~+@`, and `/` between segments [default: the model
    /// folder's name or the hub id's last part].
    #[arg(long, env = "RERANK_SERVED_MODEL_NAME")]
    pub served_model_name: Option<String>,
    /// Require `Authorization: Bearer <KEY>` on every route but /health.
    #[arg(long, env = "RERANK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Token budget of one forward pass; pairs of many requests are packed up to it.
    #[arg(long, env = "RERANK_MAX_BATCH_TOKENS", default_value_t = 16384, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batch_tokens: u64,
    /// Requests in flight before answering 429 with Retry-After.
    #[arg(long, env = "RERANK_MAX_CONCURRENT_REQUESTS", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_concurrent_requests: u64,
    /// Documents per internal job: bigger requests are split, run, and answered whole.
    #[arg(long, env = "RERANK_MAX_CLIENT_BATCH_SIZE", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_client_batch_size: u64,
    /// Largest request body in bytes (413 above).
    #[arg(long, env = "RERANK_PAYLOAD_LIMIT", default_value_t = 2_000_000)]
    pub payload_limit: u64,
    /// Largest query or document in bytes (422 above).
    #[arg(long, env = "RERANK_MAX_DOCUMENT_BYTES", default_value_t = 200_000)]
    pub max_document_bytes: u64,
    /// Most documents (or legacy pairs) in one request (422 above).
    #[arg(long, env = "RERANK_MAX_DOCUMENTS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_documents: u64,
    /// Most tokens one request's pairs may take after truncation (413 above): the work one
    /// request may queue. Large requests run a few batches at a time, interleaved with others.
    #[arg(long, env = "RERANK_MAX_REQUEST_TOKENS", default_value_t = 524_288, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_request_tokens: u64,
    /// Seconds a client has to send a request's headers; also how long an idle kept-alive
    /// connection stays open.
    #[arg(long, env = "RERANK_HEADER_READ_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout: u64,
    /// Seconds a client has to send a request's body (408 after).
    #[arg(long, env = "RERANK_BODY_READ_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout: u64,
    /// Open connections served at once; more wait to be accepted.
    #[arg(long, env = "RERANK_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Let browser pages from this origin call the API (CORS: preflights answered, the origin
    /// echoed); repeatable or comma-separated [default: none, no CORS headers].
    #[arg(
        long = "cors-allow-origin",
        env = "RERANK_CORS_ALLOW_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_allow_origins: Vec<String>,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT; then the server exits
    /// anyway (exit 1, with the number of abandoned requests logged).
    #[arg(long, env = "RERANK_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,
}

/// `rerank bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Synthetic workload: pairs per call (with --seq-len).
    #[arg(long, requires = "seq_len", conflicts_with = "pairs")]
    pub batch_size: Option<usize>,
    /// Synthetic workload: tokens per pair, special tokens included (with --batch-size).
    #[arg(long, requires = "batch_size")]
    pub seq_len: Option<usize>,
    /// Real workload: a JSONL file, one scoring call per line: {"query": str, "passages": [str]}.
    #[arg(long, required_unless_present = "batch_size")]
    pub pairs: Option<PathBuf>,
    /// Maximum tokens of a pair (real workload).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(8..))]
    pub max_length: u64,
    /// Timed passes over the workload.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,
    /// Untimed passes first.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// The GEMM peak in GOP/s of the chosen dtype, for the % column [default: measured on this
    /// machine before the run, by a register-only loop of the instruction the dtype's kernel
    /// uses, on every thread; about a second].
    #[arg(long)]
    pub peak_gflops: Option<f64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Layerwise LLM rerankers: score at this layer (see `rerank score --help`).
    #[arg(long, value_name = "L")]
    pub cutoff_layers: Option<usize>,
    /// v2.5-gemma2-lightweight: passage compression ratio (1, 2, 4, 8).
    #[arg(long, value_name = "R")]
    pub compress_ratio: Option<usize>,
    /// v2.5-gemma2-lightweight: layers before which the passage is compressed.
    #[arg(long, value_name = "L[,L…]", value_delimiter = ',')]
    pub compress_layers: Option<Vec<usize>>,
}

/// Which embedder, and how to run it.
#[derive(Debug, Args)]
pub struct EmbedderArgs {
    /// Embedding model folder or hub id: a sentence-transformers model (modules.json,
    /// 1_Pooling/config.json, optional Normalize) such as sentence-transformers/all-MiniLM-L6-v2,
    /// or a FlagModel one (no modules.json: CLS pooling, L2-normalised) such as BAAI/bge-m3.
    #[arg(long, short, env = "RERANK_EMBEDDING_MODEL")]
    pub model: String,
    /// CPU threads (0 = all cores).
    #[arg(long, env = "RERANK_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Precision of the encoder's matrix products (see `rerank score --help`).
    #[arg(long, env = "RERANK_DTYPE", value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
}

/// `rerank embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: EmbedderArgs,
    /// Read the texts (a JSON array of strings, or one string) from this file instead of
    /// stdin.
    #[arg(long, short)]
    pub input: Option<PathBuf>,
    /// Text put before every input, e.g. FlagModel's query instruction "Represent this
    /// sentence for searching relevant passages: " for queries.
    #[arg(long, value_name = "TEXT")]
    pub query_instruction: Option<String>,
    /// L2-normalise the vectors [default: as the model says: its Normalize module, always for
    /// FlagModel-style models].
    #[arg(long, conflicts_with = "no_normalize")]
    pub normalize: bool,
    /// Do not L2-normalise the vectors.
    #[arg(long)]
    pub no_normalize: bool,
    /// Tokens per forward pass (texts are packed longest first).
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_tokens: u64,
}

impl EmbedArgs {
    /// The normalisation asked for (`None` = the model's).
    pub fn normalize(&self) -> Option<bool> {
        match (self.normalize, self.no_normalize) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

/// `rerank validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub scoring: ScoringArgs,
    /// The pairs: a JSON array of [query, passage] pairs, a JSONL of {"query", "pos", "neg"}
    /// (each query's pos then neg passages), or MRPC-style {"sentence1", "sentence2"} lines.
    #[arg(long)]
    pub data: PathBuf,
    /// Reference scores in the same order: a JSON array of numbers or one number per line
    /// (e.g. saved from FlagEmbedding or ONNX Runtime).
    #[arg(long, required_unless_present = "against", conflicts_with = "against")]
    pub reference: Option<PathBuf>,
    /// A second model (folder or hub id) to compare with, on the same pairs.
    #[arg(long)]
    pub against: Option<String>,
    /// The second model's dtype [default: f32]; `--against` the same model with another dtype
    /// checks what a precision costs.
    #[arg(long, value_enum, requires = "against")]
    pub against_dtype: Option<DtypeArg>,
    /// Run the second model's ONNX export through ONNX Runtime (relative to its folder, or
    /// absolute): checks an export against the native engine.
    #[arg(long, value_name = "FILE", requires = "against")]
    pub against_onnx_file: Option<PathBuf>,
    /// PASS when max |Δ| is at most this.
    #[arg(long, default_value_t = 1e-3)]
    pub tolerance: f64,
    /// Print one JSON object (max_abs_diff, mean_abs_diff, pearson, kendall_tau,
    /// top1_agreement, pass, …) instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// First-stage retrievers of `rerank eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FirstStageArg {
    /// Exact inner product of --embedder vectors over the whole corpus.
    Dense,
    /// BM25 (English stemming and stop words, k1 = 1.2, b = 0.75).
    Bm25,
}

/// `rerank eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The data: a FlagEmbedding JSONL file ({"query", "pos": [...], "neg": [...]} per line;
    /// the corpus is every pos and neg text, deduplicated) or a BEIR folder (corpus.jsonl,
    /// queries.jsonl, qrels/<split>.tsv).
    #[arg(long, short)]
    pub input: PathBuf,
    /// BEIR: the qrels file to evaluate (qrels/<split>.tsv).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// The reranker of the second stage (folder or hub id); without it only the first stage
    /// is evaluated.
    #[arg(long, short, env = "RERANK_MODEL")]
    pub model: Option<String>,
    /// The embedder of a dense first stage (folder or hub id).
    #[arg(long)]
    pub embedder: Option<String>,
    /// The first-stage retriever [default: dense with --embedder, else bm25].
    #[arg(long, value_enum)]
    pub first_stage: Option<FirstStageArg>,
    /// Documents the first stage retrieves per query, and the reranker reorders.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub top_k: u64,
    /// Embedder: text put before every query (FlagModel's query_instruction_for_retrieval).
    #[arg(long, value_name = "TEXT")]
    pub embedder_query_instruction: Option<String>,
    /// CPU threads (0 = all cores).
    #[arg(long, env = "RERANK_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Precision of both models; with bf16 the corpus vectors are held in bf16 too.
    #[arg(long, env = "RERANK_DTYPE", value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    #[command(flatten)]
    pub scoring: ScoringArgs,
    /// Write {"metrics", "qrels", "runs"} here: the runs in pytrec_eval's format, so anyone
    /// can recompute the metrics.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw the metrics of each stage as grouped bars into this .png or .svg file.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// Truncation strategies as CLI values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TruncationArg {
    /// FlagEmbedding's FlagReranker (default).
    Flag,
    /// TEI / sentence-transformers `longest_first`.
    LongestFirst,
}

impl TruncationArg {
    /// The library's value.
    pub fn truncation(self) -> Truncation {
        match self {
            TruncationArg::Flag => Truncation::Flag,
            TruncationArg::LongestFirst => Truncation::LongestFirst,
        }
    }
}

impl ScoringArgs {
    /// The library options these flags mean.
    pub fn options(&self) -> ScoreOptions {
        ScoreOptions {
            normalize: self.normalize,
            max_length: self.max_length as usize,
            query_max_length: self.query_max_length.map(|q| q as usize),
            batch_size: self.batch_size as usize,
            truncation: self.truncation.truncation(),
            prompt: self.prompt.clone(),
            query_instruction: self.query_instruction.clone(),
            passage_instruction: self.passage_instruction.clone(),
            cutoff_layers: self.cutoff_layers.clone(),
            compress_ratio: self.compress_ratio,
            compress_layers: self.compress_layers.clone(),
        }
    }
}

/// `rerank score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub scoring: ScoringArgs,
    /// Read the pairs from this JSON file instead of stdin. A single ["query", "passage"]
    /// pair is accepted too.
    #[arg(long, short)]
    pub input: Option<PathBuf>,
}

/// `rerank rank`.
#[derive(Debug, Args)]
pub struct RankArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub scoring: ScoringArgs,
    /// The query.
    #[arg(long, short)]
    pub query: String,
    /// Print only the best N documents.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub top_n: Option<u64>,
    /// Read the documents (a JSON array of strings) from this file instead of stdin.
    #[arg(long, short)]
    pub input: Option<PathBuf>,
}

/// Prints a clap error: help and version as clap renders them, usage errors as one line.
pub fn report_usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitCode::from(2)
        }
        _ => {
            let rendered = err.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!("{} (see 'rerank --help')", message.join(" "));
            ExitCode::from(2)
        }
    }
}
