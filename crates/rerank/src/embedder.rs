//! Dense embedders on the encoder engine: sentence-transformers models (pooling read from
//! `modules.json` and `1_Pooling/config.json`, an optional `Normalize` module, the length limit
//! from `sentence_bert_config.json`) and FlagEmbedding's `FlagModel` (bge-m3 and the BGE
//! embedders without sentence-transformers files: CLS pooling, L2-normalised, an optional
//! query instruction).

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rerank_models::{Dtype, Matrix, ModelError, ModelKind, PackedBatch, TextEncoder};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::hub;
use crate::tokenize::{EncodedPair, PairEncoder};

/// Tokens per forward pass when embedding (sequences are packed up to it, longest first).
pub const DEFAULT_BATCH_TOKENS: usize = 16_384;

/// How token states become one vector (sentence-transformers' `Pooling` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The first token's state (`[CLS]` / `<s>`).
    Cls,
    /// The element-wise maximum over the tokens.
    Max,
    /// The mean over the tokens, special tokens included.
    Mean,
    /// The sum over the tokens divided by √(tokens).
    MeanSqrtLen,
    /// The last token's state.
    LastToken,
}

/// How a model folder says its embeddings are made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EmbedderConfig {
    /// Pooling modes, concatenated in this order (sentence-transformers' order).
    pub pooling: Vec<Pooling>,
    /// L2-normalise the pooled vector (a `Normalize` module; always for `FlagModel`).
    pub normalize: bool,
    /// Longest input in tokens, special tokens included; longer texts are cut.
    pub max_length: usize,
    /// Lower-case texts before tokenizing (`do_lower_case` in `sentence_bert_config.json`).
    pub lowercase: bool,
    /// `"sentence-transformers"` (a `modules.json`) or `"flagmodel"` (none).
    pub style: &'static str,
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, Default)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

#[derive(Deserialize, Default)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

impl PoolingConfig {
    fn modes(&self, path: &Path) -> Result<Vec<Pooling>> {
        if self.pooling_mode_weightedmean_tokens {
            return Err(config_error(
                path,
                "weighted-mean pooling is not supported".into(),
            ));
        }
        let modes: Vec<Pooling> = [
            (self.pooling_mode_cls_token, Pooling::Cls),
            (self.pooling_mode_max_tokens, Pooling::Max),
            (self.pooling_mode_mean_tokens, Pooling::Mean),
            (self.pooling_mode_mean_sqrt_len_tokens, Pooling::MeanSqrtLen),
            (self.pooling_mode_lasttoken, Pooling::LastToken),
        ]
        .into_iter()
        .filter_map(|(on, mode)| on.then_some(mode))
        .collect();
        if modes.is_empty() {
            return Err(config_error(path, "no pooling mode is switched on".into()));
        }
        Ok(modes)
    }
}

fn config_error(path: &Path, message: String) -> Error {
    Error::Model(ModelError::Config {
        path: path.to_path_buf(),
        message,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        Error::Model(ModelError::Io {
            path: path.to_path_buf(),
            source,
        })
    })?;
    serde_json::from_str(&text).map_err(|e| config_error(path, e.to_string()))
}

impl EmbedderConfig {
    /// Reads the embedding recipe of a model folder whose encoder takes `model_max` tokens:
    /// sentence-transformers' files when `modules.json` is there, else `FlagModel`'s defaults.
    pub fn from_dir(dir: &Path, model_max: usize) -> Result<Self> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(Self {
                pooling: vec![Pooling::Cls],
                normalize: true,
                max_length: model_max,
                lowercase: false,
                style: "flagmodel",
            });
        }
        let modules: Vec<Module> = read_json(&modules_path)?;
        let mut pooling = None;
        let mut normalize = false;
        for (i, module) in modules.iter().enumerate() {
            let kind = module.kind.rsplit('.').next().unwrap_or_default();
            match kind {
                "Transformer" if i == 0 && module.path.is_empty() => {}
                "Transformer" => {
                    return Err(config_error(
                        &modules_path,
                        format!(
                            "the Transformer must be module 0 with path \"\" (found module {i}, \
                             path {:?})",
                            module.path
                        ),
                    ))
                }
                "Pooling" => {
                    let path = dir.join(&module.path).join("config.json");
                    pooling = Some(read_json::<PoolingConfig>(&path)?.modes(&path)?);
                }
                "Normalize" => normalize = true,
                other => {
                    return Err(config_error(
                        &modules_path,
                        format!("module {i} ({other}) is not supported: only Transformer, Pooling and Normalize"),
                    ))
                }
            }
        }
        let pooling = pooling
            .ok_or_else(|| config_error(&modules_path, "there is no Pooling module".to_string()))?;
        let st_path = dir.join("sentence_bert_config.json");
        let st: SentenceBertConfig = if st_path.is_file() {
            read_json(&st_path)?
        } else {
            SentenceBertConfig::default()
        };
        Ok(Self {
            pooling,
            normalize,
            max_length: st.max_seq_length.unwrap_or(model_max).min(model_max),
            lowercase: st.do_lower_case,
            style: "sentence-transformers",
        })
    }
}

/// Options of one embedding call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedOptions {
    /// L2-normalise (`None` = what the model says: [`EmbedderConfig::normalize`]).
    pub normalize: Option<bool>,
    /// Cut texts longer than the model's maximum (`false`: such a text is an error).
    pub truncate: bool,
    /// Text put before every input (a query instruction); `None` = none.
    pub instruction: Option<String>,
    /// Longest input in tokens (`None`, or more than the model takes: the model's maximum).
    pub max_length: Option<usize>,
    /// Tokens per forward pass.
    pub batch_tokens: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            normalize: None,
            truncate: true,
            instruction: None,
            max_length: None,
            batch_tokens: DEFAULT_BATCH_TOKENS,
        }
    }
}

/// Vectors of one call and the tokens they took.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One vector per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens fed to the model, special tokens included.
    pub tokens: usize,
}

/// Builds an [`Embedder`].
#[derive(Debug, Clone)]
pub struct EmbedderBuilder {
    model: String,
    threads: Option<usize>,
    dtype: Dtype,
    query_instruction: Option<String>,
}

impl EmbedderBuilder {
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

    /// The text put before every query by [`Embedder::embed_queries`] (FlagModel's
    /// `query_instruction_for_retrieval`).
    pub fn query_instruction(mut self, instruction: Option<String>) -> Self {
        self.query_instruction = instruction.filter(|i| !i.is_empty());
        self
    }

    /// Resolves the model (folder or hub id) and loads weights, tokenizer and pooling.
    pub fn build(self) -> Result<Embedder> {
        rerank_models::runtime::set_threads(self.threads.unwrap_or(0));
        let dir = hub::resolve_embedder(&self.model)?;
        let mut embedder = Embedder::load_dir_as(&self.model, &dir, self.dtype)?;
        embedder.query_instruction = self.query_instruction;
        Ok(embedder)
    }
}

/// A dense embedder: a BERT or XLM-RoBERTa encoder, its tokenizer and its pooling.
pub struct Embedder {
    model_id: String,
    dir: PathBuf,
    tokenizer: PairEncoder,
    model: Box<dyn TextEncoder>,
    config: EmbedderConfig,
    dtype: Dtype,
    query_instruction: Option<String>,
}

impl Embedder {
    /// Starts building an embedder for a model folder or hub id.
    pub fn builder(model: impl Into<String>) -> EmbedderBuilder {
        EmbedderBuilder {
            model: model.into(),
            threads: None,
            dtype: Dtype::F32,
            query_instruction: None,
        }
    }

    /// Loads an embedder from a resolved model folder in the given precision; `model_id` is
    /// what the user named.
    pub fn load_dir_as(model_id: &str, dir: &Path, dtype: Dtype) -> Result<Self> {
        let model = rerank_models::load_text_encoder(dir, dtype)?;
        let tokenizer =
            PairEncoder::from_file(&dir.join("tokenizer.json"), model.kind() == ModelKind::Bert)?;
        let config = EmbedderConfig::from_dir(dir, model.max_sequence_length())?;
        Ok(Self {
            model_id: model_id.to_string(),
            dir: dir.to_path_buf(),
            tokenizer,
            model,
            config,
            dtype,
            query_instruction: None,
        })
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

    /// The matrix-product kernel the encoder's linear layers run on this CPU.
    pub fn kernel(&self) -> &'static str {
        rerank_models::layers::kernel_for(self.dtype)
    }

    /// Length of every vector.
    pub fn dimension(&self) -> usize {
        self.model.hidden_size() * self.config.pooling.len()
    }

    /// How this model's embeddings are made.
    pub fn config(&self) -> &EmbedderConfig {
        &self.config
    }

    /// The model family of the encoder.
    pub fn kind(&self) -> ModelKind {
        self.model.kind()
    }

    /// The query instruction [`Embedder::embed_queries`] adds.
    pub fn query_instruction(&self) -> Option<&str> {
        self.query_instruction.as_deref()
    }

    /// Embeds texts as the model's own library does (`SentenceTransformer.encode`,
    /// `FlagModel.encode_corpus`), one vector per text in order.
    pub fn embed<T: AsRef<str> + Sync>(&self, texts: &[T]) -> Result<Vec<Vec<f32>>> {
        Ok(self.embed_with(texts, &EmbedOptions::default())?.vectors)
    }

    /// Embeds queries: [`Embedder::embed`] after the query instruction (FlagModel's
    /// `encode_queries`).
    pub fn embed_queries<T: AsRef<str> + Sync>(&self, texts: &[T]) -> Result<Vec<Vec<f32>>> {
        let opts = EmbedOptions {
            instruction: self.query_instruction.clone(),
            ..EmbedOptions::default()
        };
        Ok(self.embed_with(texts, &opts)?.vectors)
    }

    /// Embeds texts with explicit options.
    pub fn embed_with<T: AsRef<str> + Sync>(
        &self,
        texts: &[T],
        opts: &EmbedOptions,
    ) -> Result<Embeddings> {
        let encoded = self.encode_texts(texts, opts)?;
        let tokens = encoded.iter().map(|e| e.ids.len()).sum();
        let normalize = opts.normalize.unwrap_or(self.config.normalize);
        let vectors = self.embed_encoded(&encoded, normalize, opts.batch_tokens)?;
        Ok(Embeddings { vectors, tokens })
    }

    /// Tokenizes texts (in parallel) with the instruction of `opts`, cut to the model's
    /// maximum, or an error for a text over it when `opts.truncate` is off.
    pub fn encode_texts<T: AsRef<str> + Sync>(
        &self,
        texts: &[T],
        opts: &EmbedOptions,
    ) -> Result<Vec<EncodedPair>> {
        let max = opts
            .max_length
            .map_or(self.config.max_length, |m| m.min(self.config.max_length));
        if max == 0 {
            return Err(Error::Input("max_length must be at least 1".into()));
        }
        let limit = if opts.truncate { max } else { usize::MAX };
        texts
            .par_iter()
            .enumerate()
            .map(|(i, text)| {
                let mut text = match &opts.instruction {
                    Some(instruction) => format!("{instruction}{}", text.as_ref()),
                    None => text.as_ref().to_string(),
                };
                if self.config.lowercase {
                    text = text.to_lowercase();
                }
                let encoded = self.tokenizer.encode_text(&text, limit)?;
                if encoded.ids.len() > max {
                    return Err(Error::Input(format!(
                        "input {i} has {} tokens, more than the model's maximum of {max} \
                         (truncation is off)",
                        encoded.ids.len()
                    )));
                }
                Ok(encoded)
            })
            .collect()
    }

    /// Vectors of tokenized texts, in order: packed longest first into forward passes of at
    /// most `batch_tokens` tokens, pooled, and L2-normalised when `normalize`.
    pub fn embed_encoded(
        &self,
        encoded: &[EncodedPair],
        normalize: bool,
        batch_tokens: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        let mut out = vec![Vec::new(); encoded.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < order.len()
                && (end == start || tokens + encoded[order[end]].ids.len() <= batch_tokens)
            {
                tokens += encoded[order[end]].ids.len();
                end += 1;
            }
            let chunk = &order[start..end];
            let mut batch = PackedBatch::new();
            for &i in chunk {
                batch.push(&encoded[i].ids, &encoded[i].type_ids)?;
            }
            for (&i, mut vector) in chunk.iter().zip(self.pool(&batch)?) {
                if normalize {
                    l2_normalize(&mut vector);
                }
                out[i] = vector;
            }
            start = end;
        }
        Ok(out)
    }

    /// One pooled vector per sequence of `batch`.
    fn pool(&self, batch: &PackedBatch) -> Result<Vec<Vec<f32>>> {
        if self.config.pooling == [Pooling::Cls] {
            let first = self.model.first_token_states(batch)?;
            return Ok((0..batch.len()).map(|s| first.row(s).to_vec()).collect());
        }
        let hidden = self.model.hidden_states(batch)?;
        Ok((0..batch.len())
            .map(|s| {
                let rows = batch.range(s);
                self.config
                    .pooling
                    .iter()
                    .flat_map(|&mode| pool_rows(&hidden, rows.clone(), mode))
                    .collect()
            })
            .collect())
    }
}

/// Pools rows `rows` of `hidden` with one mode.
fn pool_rows(hidden: &Matrix, rows: std::ops::Range<usize>, mode: Pooling) -> Vec<f32> {
    let n = rows.len() as f32;
    match mode {
        Pooling::Cls => hidden.row(rows.start).to_vec(),
        Pooling::LastToken => hidden.row(rows.end - 1).to_vec(),
        Pooling::Max => {
            let mut out = vec![f32::NEG_INFINITY; hidden.cols];
            for r in rows {
                for (o, &v) in out.iter_mut().zip(hidden.row(r)) {
                    *o = o.max(v);
                }
            }
            out
        }
        Pooling::Mean | Pooling::MeanSqrtLen => {
            let mut sum = vec![0.0f32; hidden.cols];
            for r in rows {
                for (o, &v) in sum.iter_mut().zip(hidden.row(r)) {
                    *o += v;
                }
            }
            let divisor = if mode == Pooling::Mean { n } else { n.sqrt() };
            sum.iter_mut().for_each(|v| *v /= divisor);
            sum
        }
    }
}

/// Scales `v` to unit L2 norm (torch's `F.normalize`: the norm is clamped at 1e-12).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_modes_concatenate_in_sentence_transformers_order() {
        let cfg = PoolingConfig {
            pooling_mode_mean_tokens: true,
            pooling_mode_cls_token: true,
            pooling_mode_max_tokens: true,
            ..PoolingConfig::default()
        };
        let modes = cfg.modes(Path::new("x")).unwrap();
        assert_eq!(modes, vec![Pooling::Cls, Pooling::Max, Pooling::Mean]);
        assert!(PoolingConfig::default().modes(Path::new("x")).is_err());
    }

    #[test]
    fn pool_rows_modes() {
        let m = Matrix::from_vec(vec![1.0, -2.0, 3.0, 4.0, 0.0, 0.0, 5.0, 6.0], 4, 2);
        assert_eq!(pool_rows(&m, 1..3, Pooling::Cls), vec![3.0, 4.0]);
        assert_eq!(pool_rows(&m, 1..3, Pooling::LastToken), vec![0.0, 0.0]);
        assert_eq!(pool_rows(&m, 0..2, Pooling::Max), vec![3.0, 4.0]);
        assert_eq!(pool_rows(&m, 0..2, Pooling::Mean), vec![2.0, 1.0]);
        let s = pool_rows(&m, 2..4, Pooling::MeanSqrtLen);
        assert!((s[0] - 5.0 / 2f32.sqrt()).abs() < 1e-6);
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
    }
}
