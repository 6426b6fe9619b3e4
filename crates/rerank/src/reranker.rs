//! The `Reranker`: a cross-encoder or LLM reranker and its tokenizer, scoring query–passage
//! pairs.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rerank_models::{
    CrossEncoder, Dtype, LayerPlan, LayerRequest, LoadOptions, ModelKind, PackedBatch,
};

use crate::error::{Error, Result};
use crate::hub;
use crate::prompt::{PromptEncoder, PromptOptions};
use crate::scores::{ranking, sigmoid};
use crate::tokenize::{EncodedPair, PairEncoder, PairLimits, Truncation};

/// The options of [`ScoreOptions`] that only the LLM rerankers take.
pub const LLM_OPTIONS: [&str; 3] = ["prompt", "query_instruction", "passage_instruction"];
/// [`LLM_OPTIONS`] and the layer option of the layerwise MiniCPM reranker.
const LAYERWISE_OPTIONS: [&str; 4] = [
    "prompt",
    "query_instruction",
    "passage_instruction",
    "cutoff_layers",
];
/// [`LLM_OPTIONS`] and the layer and compression options of the lightweight Gemma-2 reranker.
const LIGHTWEIGHT_OPTIONS: [&str; 6] = [
    "prompt",
    "query_instruction",
    "passage_instruction",
    "cutoff_layers",
    "compress_ratio",
    "compress_layers",
];

/// Options of one scoring call; the defaults are FlagReranker's (FlagLLMReranker's for the LLM
/// rerankers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreOptions {
    /// Apply a sigmoid to the logits (FlagReranker's `normalize=True`).
    pub normalize: bool,
    /// Maximum tokens of a pair, special tokens included (FlagReranker default 512).
    pub max_length: usize,
    /// Maximum tokens of the query; `None` = `max_length * 3 / 4`.
    pub query_max_length: Option<usize>,
    /// Pairs per forward pass.
    pub batch_size: usize,
    /// How long pairs are cut (the LLM rerankers take only [`Truncation::Flag`]).
    pub truncation: Truncation,
    /// LLM rerankers: the question after the pair (`None` = FlagLLMReranker's default,
    /// [`crate::prompt::DEFAULT_PROMPT`]). An error for the encoders.
    pub prompt: Option<String>,
    /// LLM rerankers: the text before each query (`None` = `"A: "`).
    pub query_instruction: Option<String>,
    /// LLM rerankers: the text before each passage (`None` = `"B: "`).
    pub passage_instruction: Option<String>,
    /// Layerwise rerankers: the layers to score at, ascending (`None` = the last layer).
    /// Several are for [`Reranker::compute_score_layers`].
    pub cutoff_layers: Option<Vec<usize>>,
    /// Lightweight reranker: passage tokens averaged into one (1, 2, 4, 8; `None` = 1, off).
    pub compress_ratio: Option<usize>,
    /// Lightweight reranker: layers before which the passage is compressed (`None` = `[8]`).
    pub compress_layers: Option<Vec<usize>>,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            normalize: false,
            max_length: 512,
            query_max_length: None,
            batch_size: 128,
            truncation: Truncation::Flag,
            prompt: None,
            query_instruction: None,
            passage_instruction: None,
            cutoff_layers: None,
            compress_ratio: None,
            compress_layers: None,
        }
    }
}

impl ScoreOptions {
    /// Checks the options that hold for every model and returns the tokenizer limits they
    /// imply ([`Reranker::check_options`] adds the model's own checks).
    pub fn limits(&self) -> Result<PairLimits> {
        if self.batch_size == 0 {
            return Err(Error::Input("batch_size must be at least 1".into()));
        }
        let limits = PairLimits::new(self.truncation, self.max_length, self.query_max_length);
        if limits.max_length < 8 {
            return Err(Error::Input(format!(
                "max_length {} is too small (at least 8)",
                self.max_length
            )));
        }
        if limits.query_max_length == 0 {
            return Err(Error::Input("query_max_length must be at least 1".into()));
        }
        Ok(limits)
    }

    /// The LLM prompt options of this call.
    pub fn prompt_options(&self) -> PromptOptions {
        PromptOptions {
            prompt: self.prompt.clone(),
            query_instruction: self.query_instruction.clone(),
            passage_instruction: self.passage_instruction.clone(),
        }
    }
}

impl ScoreOptions {
    /// The layer options of this call.
    pub fn layer_request(&self) -> LayerRequest {
        LayerRequest {
            cutoff_layers: self.cutoff_layers.clone(),
            compress_ratio: self.compress_ratio,
            compress_layers: self.compress_layers.clone(),
        }
    }
}

/// Scores at several layers ([`Reranker::compute_score_layers`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LayerScores {
    /// The layers, ascending (empty for a model without layer options, whose one list is
    /// its usual score).
    pub layers: Vec<usize>,
    /// One score per pair for each layer (`scores[i]` belongs to `layers[i]`).
    pub scores: Vec<Vec<f32>>,
}

/// One ranked document.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Ranked {
    /// Position of the document in the input.
    pub index: usize,
    /// Its score (raw logit, or sigmoid when normalised).
    pub score: f32,
    /// The document text.
    pub document: String,
}

/// Builds a [`Reranker`].
#[derive(Debug, Clone)]
pub struct RerankerBuilder {
    model: String,
    threads: Option<usize>,
    dtype: Dtype,
    attention_softcap: bool,
    onnx_file: Option<PathBuf>,
}

impl RerankerBuilder {
    /// Gemma-2 lightweight: apply the attention-logit soft-cap, as transformers' eager
    /// attention does (default off: FlagEmbedding runs sdpa attention, which skips it).
    pub fn attention_softcap(mut self, on: bool) -> Self {
        self.attention_softcap = on;
        self
    }

    /// Number of CPU threads (default: all cores).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Precision of the encoder (default f32, the reference's numbers).
    pub fn dtype(mut self, dtype: Dtype) -> Self {
        self.dtype = dtype;
        self
    }

    /// Run this ONNX graph (relative to the model folder, or absolute) through ONNX Runtime
    /// instead of the native engine. Without it, a folder with no safetensors weights but a
    /// `model.onnx` (root or `onnx/`) runs through ONNX Runtime too.
    pub fn onnx_file(mut self, file: Option<PathBuf>) -> Self {
        self.onnx_file = file;
        self
    }

    /// Resolves the model (folder or hub id), loads weights and tokenizer.
    pub fn build(self) -> Result<Reranker> {
        rerank_models::runtime::set_threads(self.threads.unwrap_or(0));
        let dir = hub::resolve_model(&self.model)?;
        if let Some(file) = self.onnx_file.as_deref() {
            let file = rerank_models::models::onnx::find_onnx_file(&dir, Some(file));
            return Reranker::load_dir_onnx(&self.model, &dir, file, self.dtype);
        }
        Reranker::load_dir_with(&self.model, &dir, self.dtype, self.attention_softcap)
    }
}

/// How a model's input is built.
enum InputEncoder {
    /// `[CLS] query [SEP] passage [SEP]` (the cross-encoders).
    Pair(PairEncoder),
    /// Instruction-prefixed query and passage, separator and prompt (the LLM rerankers).
    Prompt(PromptEncoder),
}

/// A reranker: a cross-encoder (BERT, XLM-RoBERTa) or an LLM reranker (Gemma), one API for both.
pub struct Reranker {
    model_id: String,
    dir: PathBuf,
    encoder: InputEncoder,
    model: Box<dyn CrossEncoder>,
    dtype: Dtype,
    onnx: Option<PathBuf>,
}

impl Reranker {
    /// Starts building a reranker for a model folder or hub id.
    pub fn builder(model: impl Into<String>) -> RerankerBuilder {
        RerankerBuilder {
            model: model.into(),
            threads: None,
            dtype: Dtype::F32,
            attention_softcap: false,
            onnx_file: None,
        }
    }

    /// Loads an f32 reranker from a resolved model folder; `model_id` is what the user named.
    pub fn load_dir(model_id: &str, dir: &Path) -> Result<Self> {
        Self::load_dir_as(model_id, dir, Dtype::F32)
    }

    /// Loads a reranker from a resolved model folder in the given precision.
    pub fn load_dir_as(model_id: &str, dir: &Path, dtype: Dtype) -> Result<Self> {
        Self::load_dir_with(model_id, dir, dtype, false)
    }

    /// [`Reranker::load_dir_as`] with the Gemma-2 attention soft-cap switch
    /// ([`RerankerBuilder::attention_softcap`]).
    pub fn load_dir_with(
        model_id: &str,
        dir: &Path,
        dtype: Dtype,
        attention_softcap: bool,
    ) -> Result<Self> {
        if !hub::has_weights(dir) {
            if let Some(file) = rerank_models::models::onnx::find_onnx_file(dir, None) {
                return Self::load_dir_onnx(model_id, dir, Some(file), dtype);
            }
        }
        let kind = rerank_models::model_kind(dir)?;
        let (encoder, score_token) = if kind.is_llm() {
            let prompt = PromptEncoder::from_dir(dir, kind)?;
            let token = prompt.score_token();
            (InputEncoder::Prompt(prompt), Some(token))
        } else {
            let tokenizer = dir.join("tokenizer.json");
            let pairs = PairEncoder::from_file(&tokenizer, kind == ModelKind::Bert)?;
            (InputEncoder::Pair(pairs), None)
        };
        let load = LoadOptions {
            dtype,
            score_token,
            attention_softcap,
        };
        let model = rerank_models::load_cross_encoder_with(dir, &load)?;
        Ok(Self {
            model_id: model_id.to_string(),
            dir: dir.to_path_buf(),
            encoder,
            model,
            dtype,
            onnx: None,
        })
    }

    /// Loads a cross-encoder exported to ONNX (`file`, else the folder's `model.onnx`), run by
    /// ONNX Runtime (`ORT_DYLIB_PATH`); the graph runs as exported, so `dtype` must be f32.
    pub fn load_dir_onnx(
        model_id: &str,
        dir: &Path,
        file: Option<PathBuf>,
        dtype: Dtype,
    ) -> Result<Self> {
        if dtype != Dtype::F32 {
            return Err(Error::Input(format!(
                "dtype {dtype:?} is for the native engine; an ONNX graph runs in the precision it \
                 was exported in (export an fp16 or int8 graph instead)"
            )));
        }
        let file = file
            .or_else(|| rerank_models::models::onnx::find_onnx_file(dir, None))
            .ok_or_else(|| Error::MissingFile {
                dir: dir.to_path_buf(),
                file: "model.onnx (or onnx/model.onnx)".into(),
            })?;
        let kind = rerank_models::model_kind(dir)?;
        let pairs = PairEncoder::from_file(&dir.join("tokenizer.json"), kind == ModelKind::Bert)?;
        let model = rerank_models::load_onnx_cross_encoder(dir, &file)?;
        Ok(Self {
            model_id: model_id.to_string(),
            dir: dir.to_path_buf(),
            encoder: InputEncoder::Pair(pairs),
            model,
            dtype,
            onnx: Some(file),
        })
    }

    /// The ONNX graph the model runs through ONNX Runtime (`None`: the native engine).
    pub fn onnx_file(&self) -> Option<&Path> {
        self.onnx.as_deref()
    }

    /// The model as the user named it.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The folder the model was loaded from.
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    /// The encoder's precision.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The matrix-product kernel the model's linear layers run on this CPU (chosen at load
    /// from the dtype and the CPU's features).
    pub fn kernel(&self) -> &'static str {
        if self.onnx.is_some() {
            return "ONNX Runtime (CPU execution provider)";
        }
        rerank_models::layers::kernel_for(self.dtype)
    }

    /// The model family.
    pub fn kind(&self) -> ModelKind {
        self.model.kind()
    }

    /// The longest pair (in tokens) the model accepts.
    pub fn max_sequence_length(&self) -> usize {
        self.model.max_sequence_length()
    }

    /// FLOPs of a full forward pass over one sequence of `tokens` tokens.
    pub fn forward_flops(&self, tokens: usize) -> f64 {
        self.model.forward_flops(tokens)
    }

    /// FLOPs of the layers `plan` runs over one encoded pair: the layers up to the deepest
    /// cutoff, each on the tokens left after the compressions before it (`None`: the full
    /// forward pass).
    pub fn plan_flops(&self, pair: &EncodedPair, plan: Option<&LayerPlan>) -> f64 {
        let n = pair.ids.len();
        let (Some(plan), Some(support)) = (plan, self.model.layer_support()) else {
            return self.model.forward_flops(n);
        };
        let per_layer = |tokens: usize| self.model.forward_flops(tokens) / support.last as f64;
        let span = pair.span.unwrap_or_default();
        let mut tokens = n;
        let mut flops = 0.0;
        for layer in 0..plan.deepest() {
            if plan.compresses_before(layer) {
                let passage = tokens.saturating_sub(span.head + span.tail);
                tokens = span.head + passage.div_ceil(plan.compress_ratio) + span.tail;
            }
            flops += per_layer(tokens);
        }
        flops
    }

    /// The names of the [`ScoreOptions`] fields only some models take that this one accepts:
    /// [`LLM_OPTIONS`] for the LLM rerankers (plus `cutoff_layers` for the layerwise ones and
    /// `compress_ratio` / `compress_layers` for the lightweight one), none for the
    /// cross-encoders.
    pub fn model_options(&self) -> &'static [&'static str] {
        match self.kind() {
            ModelKind::MiniCpmLayerwise => &LAYERWISE_OPTIONS,
            ModelKind::Gemma2Lightweight => &LIGHTWEIGHT_OPTIONS,
            kind if kind.is_llm() => &LLM_OPTIONS,
            _ => &[],
        }
    }

    /// The layers a cutoff may name and whether the model compresses (`None`: the model
    /// takes no layer options).
    pub fn layer_support(&self) -> Option<rerank_models::LayerSupport> {
        self.model.layer_support()
    }

    /// Checks the layer options of a call and returns what the model will run (`None` for a
    /// model without layer options, which must then have none set).
    pub fn plan_layers(&self, request: &LayerRequest) -> Result<Option<LayerPlan>> {
        match self.model.layer_support() {
            Some(support) => support.plan(request).map(Some).map_err(Error::Input),
            None => match request.set_names().first() {
                Some(name) => Err(Error::Input(format!(
                    "option `{name}` is only for the layerwise LLM rerankers; {} takes none",
                    self.kind().architecture()
                ))),
                None => Ok(None),
            },
        }
    }

    /// [`Reranker::plan_layers`] for the calls that return one score per pair: an error when
    /// several cutoff layers are asked for.
    pub fn plan_single_layer(&self, request: &LayerRequest) -> Result<Option<LayerPlan>> {
        let plan = self.plan_layers(request)?;
        if let Some(p) = plan.as_ref().filter(|p| p.cutoffs.len() > 1) {
            return Err(Error::Input(format!(
                "cutoff_layers {:?} asks for several layers; this call returns one score per                  pair, so name exactly one",
                p.cutoffs
            )));
        }
        Ok(plan)
    }

    /// Checks `opts` for this model: [`ScoreOptions::limits`], then the options the model does
    /// not take (an error naming the first), and its own length rules. Returns the limits.
    pub fn check_options(&self, opts: &ScoreOptions) -> Result<PairLimits> {
        let limits = opts.limits()?;
        self.check_prompt(&opts.prompt_options())?;
        self.check_truncation(limits.truncation)?;
        if !self.kind().is_llm() && limits.query_max_length > limits.max_length {
            return Err(Error::Input(format!(
                "query_max_length {} must be between 1 and max_length {}",
                limits.query_max_length, limits.max_length
            )));
        }
        Ok(limits)
    }

    /// An error when the model cannot cut pairs that way (the LLM rerankers take only
    /// [`Truncation::Flag`], FlagLLMReranker's `only_second`).
    pub fn check_truncation(&self, truncation: Truncation) -> Result<()> {
        if self.kind().is_llm() && truncation != Truncation::Flag {
            return Err(Error::Input(format!(
                "{} takes only flag truncation (FlagLLMReranker's only_second)",
                self.kind().architecture()
            )));
        }
        Ok(())
    }

    /// An error naming the first prompt option set when the model takes none.
    pub fn check_prompt(&self, prompt: &PromptOptions) -> Result<()> {
        match prompt.set_names().first() {
            Some(name) if !self.kind().is_llm() => Err(Error::Input(format!(
                "option `{name}` is only for LLM rerankers; {} takes none",
                self.kind().architecture()
            ))),
            _ => Ok(()),
        }
    }

    /// Size of the tokenizer's vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        match &self.encoder {
            InputEncoder::Pair(e) => e.tokenizer().get_vocab_size(true),
            InputEncoder::Prompt(e) => e.tokenizer().get_vocab_size(true),
        }
    }

    /// The pair tokenizer of a cross-encoder (`None` for an LLM reranker).
    pub fn pair_encoder(&self) -> Option<&PairEncoder> {
        match &self.encoder {
            InputEncoder::Pair(e) => Some(e),
            InputEncoder::Prompt(_) => None,
        }
    }

    /// The prompt tokenizer of an LLM reranker (`None` for a cross-encoder).
    pub fn prompt_encoder(&self) -> Option<&PromptEncoder> {
        match &self.encoder {
            InputEncoder::Pair(_) => None,
            InputEncoder::Prompt(e) => Some(e),
        }
    }

    /// Tokenizes pairs (in parallel) as the reference does, with the default prompt for an LLM
    /// reranker.
    pub fn encode_pairs<Q, P>(
        &self,
        pairs: &[(Q, P)],
        limits: &PairLimits,
    ) -> Result<Vec<EncodedPair>>
    where
        Q: AsRef<str> + Sync,
        P: AsRef<str> + Sync,
    {
        self.encode_pairs_with(pairs, limits, &PromptOptions::default())
    }

    /// [`Reranker::encode_pairs`] with this call's prompt options (an error for a
    /// cross-encoder when any is set, and for an LLM reranker asked for longest-first
    /// truncation).
    pub fn encode_pairs_with<Q, P>(
        &self,
        pairs: &[(Q, P)],
        limits: &PairLimits,
        prompt: &PromptOptions,
    ) -> Result<Vec<EncodedPair>>
    where
        Q: AsRef<str> + Sync,
        P: AsRef<str> + Sync,
    {
        self.check_prompt(prompt)?;
        self.check_truncation(limits.truncation)?;
        match &self.encoder {
            InputEncoder::Pair(e) => pairs
                .par_iter()
                .map(|(q, p)| e.encode_pair(q.as_ref(), p.as_ref(), limits))
                .collect(),
            InputEncoder::Prompt(e) => {
                let prepared = e.prepare(prompt)?;
                pairs
                    .par_iter()
                    .map(|(q, p)| e.encode_pair(q.as_ref(), p.as_ref(), limits, &prepared))
                    .collect()
            }
        }
    }

    /// Tokenizes `query` once and pairs it with every document (in parallel), as
    /// [`Reranker::encode_pairs_with`] would for `(query, document)` pairs.
    pub fn encode_query_documents<D>(
        &self,
        query: &str,
        documents: &[D],
        limits: &PairLimits,
        prompt: &PromptOptions,
    ) -> Result<Vec<EncodedPair>>
    where
        D: AsRef<str> + Sync,
    {
        self.check_prompt(prompt)?;
        self.check_truncation(limits.truncation)?;
        match &self.encoder {
            InputEncoder::Pair(e) => {
                let query = e.encode_query(query, limits)?;
                documents
                    .par_iter()
                    .map(|d| e.encode_with_query(&query, d.as_ref(), limits))
                    .collect()
            }
            InputEncoder::Prompt(e) => {
                let prepared = e.prepare(prompt)?;
                let query = e.encode_query(query, limits, &prepared)?;
                documents
                    .par_iter()
                    .map(|d| e.encode_with_query(&query, d.as_ref(), limits, &prepared))
                    .collect()
            }
        }
    }

    /// Raw logits of already encoded pairs, in input order. Runs longest first in batches of
    /// `batch_size` pairs.
    pub fn score_encoded(&self, encoded: &[EncodedPair], batch_size: usize) -> Result<Vec<f32>> {
        Ok(self
            .score_encoded_plan(encoded, batch_size, None)?
            .pop()
            .unwrap_or_default())
    }

    /// [`Reranker::score_encoded`] at each cutoff of `plan` (`[cutoff][pair]`; `None` = the
    /// model's one default score).
    pub fn score_encoded_plan(
        &self,
        encoded: &[EncodedPair],
        batch_size: usize,
        plan: Option<&LayerPlan>,
    ) -> Result<Vec<Vec<f32>>> {
        let max = self.model.max_sequence_length();
        if let Some((i, e)) = encoded.iter().enumerate().find(|(_, e)| e.ids.len() > max) {
            return Err(Error::Input(format!(
                "pair {i} has {} tokens, more than the model's maximum of {max}; lower max_length",
                e.ids.len()
            )));
        }
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        let layers = plan.map_or(1, |p| p.cutoffs.len());
        let mut scores = vec![vec![0.0f32; encoded.len()]; layers];
        for chunk in order.chunks(batch_size.max(1)) {
            let mut batch = PackedBatch::new();
            for &i in chunk {
                // LLM prompts carry their spans (compression and shared heads read them).
                match encoded[i].span {
                    Some(span) => batch.push_with_span(&encoded[i].ids, span)?,
                    None => batch.push(&encoded[i].ids, &encoded[i].type_ids)?,
                }
            }
            let chunk_scores = match plan {
                Some(plan) => self.model.score_plan(&batch, plan)?,
                None => vec![self.model.score(&batch)?],
            };
            for (all, layer) in scores.iter_mut().zip(chunk_scores) {
                for (&i, s) in chunk.iter().zip(layer) {
                    all[i] = s;
                }
            }
        }
        Ok(scores)
    }

    /// The scores `opts` asks for (logits or their sigmoid) of encoded pairs, in order, at
    /// each cutoff of `plan`.
    fn scores_of(
        &self,
        encoded: &[EncodedPair],
        opts: &ScoreOptions,
        plan: Option<&LayerPlan>,
    ) -> Result<Vec<Vec<f32>>> {
        let mut scores = self.score_encoded_plan(encoded, opts.batch_size, plan)?;
        if opts.normalize {
            scores.iter_mut().flatten().for_each(|s| *s = sigmoid(*s));
        }
        Ok(scores)
    }

    /// FlagReranker's (or FlagLLMReranker's) `compute_score(pairs)`: one score per
    /// `(query, passage)` pair, in order.
    pub fn compute_score<Q, P>(&self, pairs: &[(Q, P)], opts: &ScoreOptions) -> Result<Vec<f32>>
    where
        Q: AsRef<str> + Sync,
        P: AsRef<str> + Sync,
    {
        let limits = self.check_options(opts)?;
        let plan = self.plan_single_layer(&opts.layer_request())?;
        let encoded = self.encode_pairs_with(pairs, &limits, &opts.prompt_options())?;
        Ok(self
            .scores_of(&encoded, opts, plan.as_ref())?
            .pop()
            .unwrap_or_default())
    }

    /// `compute_score(pairs, cutoff_layers=[…])` of the layerwise rerankers: one list of
    /// scores per requested layer, ascending, as FlagEmbedding returns them. Models without
    /// layers give their one score list at their last layer.
    pub fn compute_score_layers<Q, P>(
        &self,
        pairs: &[(Q, P)],
        opts: &ScoreOptions,
    ) -> Result<LayerScores>
    where
        Q: AsRef<str> + Sync,
        P: AsRef<str> + Sync,
    {
        let limits = self.check_options(opts)?;
        let plan = self.plan_layers(&opts.layer_request())?;
        let encoded = self.encode_pairs_with(pairs, &limits, &opts.prompt_options())?;
        let scores = self.scores_of(&encoded, opts, plan.as_ref())?;
        let layers = plan.map(|p| p.cutoffs).unwrap_or_default();
        Ok(LayerScores { layers, scores })
    }

    /// Scores every document against `query` and returns them best first, cut to `top_n`.
    pub fn rank<D>(
        &self,
        query: &str,
        documents: &[D],
        top_n: Option<usize>,
        opts: &ScoreOptions,
    ) -> Result<Vec<Ranked>>
    where
        D: AsRef<str> + Sync,
    {
        let limits = self.check_options(opts)?;
        let plan = self.plan_single_layer(&opts.layer_request())?;
        let encoded =
            self.encode_query_documents(query, documents, &limits, &opts.prompt_options())?;
        let scores = self
            .scores_of(&encoded, opts, plan.as_ref())?
            .pop()
            .unwrap_or_default();
        Ok(ranking(&scores, top_n)
            .into_iter()
            .map(|index| Ranked {
                index,
                score: scores[index],
                document: documents[index].as_ref().to_string(),
            })
            .collect())
    }
}
