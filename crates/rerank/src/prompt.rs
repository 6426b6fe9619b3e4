//! The input of the decoder-only (LLM) rerankers, built exactly as FlagEmbedding 1.4.2's
//! `FlagLLMReranker.compute_score` builds it:
//!
//! ```text
//! q      = tok(query_instruction + query)[:query_max_length]       (no special tokens)
//! p      = tok(passage_instruction + passage)[:max_length]
//! first  = [bos] + q               (v2-gemma: bos only if the tokenizer's bos ≠ pad)
//! second = sep + p                 (sep = tok("\n"))
//! pair   = only_second(first, second, max_length + len(sep) + len(prompt)) + sep + prompt
//! ```
//!
//! No EOS. v2-gemma's score is the logit of [`PromptEncoder::score_token`] (`Yes`) at the last
//! token; the layerwise MiniCPM and lightweight Gemma-2 rerankers score the last token with
//! per-layer heads, and always add BOS.

use std::path::Path;

use rerank_models::{ModelKind, PromptSpan};
use tokenizers::{Tokenizer, TruncationDirection};

use crate::error::{Error, Result};
use crate::tokenize::{EncodedPair, PairLimits};

/// FlagLLMReranker's default prompt (bge-reranker-v2-gemma; also the layerwise MiniCPM's).
pub const DEFAULT_PROMPT: &str = "Given a query A and a passage B, determine whether the passage contains an answer to the query by providing a prediction of either 'Yes' or 'No'.";
/// LightWeightFlagLLMReranker's default prompt (bge-reranker-v2.5-gemma2-lightweight).
pub const LIGHTWEIGHT_DEFAULT_PROMPT: &str =
    "Predict whether passage B contains an answer to query A.";
/// FlagLLMReranker's default `query_instruction_for_rerank`.
pub const DEFAULT_QUERY_INSTRUCTION: &str = "A: ";
/// FlagLLMReranker's default `passage_instruction_for_rerank`.
pub const DEFAULT_PASSAGE_INSTRUCTION: &str = "B: ";
/// The token whose logit is the score.
pub const SCORE_TOKEN_TEXT: &str = "Yes";

/// The texts an LLM reranker wraps around each pair; `None` = FlagLLMReranker's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromptOptions {
    /// The question after the pair ([`DEFAULT_PROMPT`]).
    pub prompt: Option<String>,
    /// Put before every query ([`DEFAULT_QUERY_INSTRUCTION`], format `"{}{}"`).
    pub query_instruction: Option<String>,
    /// Put before every passage ([`DEFAULT_PASSAGE_INSTRUCTION`], format `"{}{}"`).
    pub passage_instruction: Option<String>,
}

impl PromptOptions {
    /// The names of the options that are set (for errors on models that take none).
    pub fn set_names(&self) -> Vec<&'static str> {
        [
            ("prompt", self.prompt.is_some()),
            ("query_instruction", self.query_instruction.is_some()),
            ("passage_instruction", self.passage_instruction.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// One call's prompt, tokenized once for all its pairs.
#[derive(Debug, Clone)]
pub struct PreparedPrompt {
    prompt: Vec<u32>,
    query_instruction: String,
    passage_instruction: String,
}

/// Tokenizes pairs for an LLM reranker (see the module documentation).
pub struct PromptEncoder {
    tokenizer: Tokenizer,
    /// Prepended to the query (v2-gemma: only when the tokenizer's BOS differs from its
    /// padding token; the layerwise and lightweight rerankers always).
    bos: Option<u32>,
    /// The prompt when a call sets none.
    default_prompt: &'static str,
    /// `tok("\n")`.
    sep: Vec<u32>,
    score_token: u32,
}

impl PromptEncoder {
    /// Loads `tokenizer.json` from the folder of an LLM reranker of family `kind`; the BOS
    /// and padding tokens come from `tokenizer_config.json` (as transformers reads them), else
    /// from `config.json`.
    pub fn from_dir(dir: &Path, kind: ModelKind) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&path)
            .map_err(|e| Error::Tokenizer(format!("cannot load {}: {e}", path.display())))?;
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let special = |name: &str| special_token_id(dir, &tokenizer, name);
        let (bos, pad) = (special("bos")?, special("pad")?);
        let (bos, default_prompt) = match kind {
            ModelKind::Gemma2Lightweight => (bos, LIGHTWEIGHT_DEFAULT_PROMPT),
            ModelKind::MiniCpmLayerwise => (bos, DEFAULT_PROMPT),
            _ => (bos.filter(|&b| Some(b) != pad), DEFAULT_PROMPT),
        };
        let mut encoder = Self {
            bos,
            default_prompt,
            sep: Vec::new(),
            score_token: 0,
            tokenizer,
        };
        encoder.sep = encoder.tokenize("\n")?;
        encoder.score_token = *encoder
            .tokenize(SCORE_TOKEN_TEXT)?
            .first()
            .ok_or_else(|| Error::Tokenizer(format!("{SCORE_TOKEN_TEXT:?} encodes to no token")))?;
        Ok(encoder)
    }

    /// The prompt a call without one gets.
    pub fn default_prompt(&self) -> &'static str {
        self.default_prompt
    }

    /// The id of the token whose logit is the score (`tok("Yes")[0]`; v2-gemma only).
    pub fn score_token(&self) -> u32 {
        self.score_token
    }

    /// The underlying tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokenizes the prompt of one call.
    pub fn prepare(&self, opts: &PromptOptions) -> Result<PreparedPrompt> {
        Ok(PreparedPrompt {
            prompt: self.tokenize(opts.prompt.as_deref().unwrap_or(self.default_prompt))?,
            query_instruction: opts
                .query_instruction
                .clone()
                .unwrap_or_else(|| DEFAULT_QUERY_INSTRUCTION.into()),
            passage_instruction: opts
                .passage_instruction
                .clone()
                .unwrap_or_else(|| DEFAULT_PASSAGE_INSTRUCTION.into()),
        })
    }

    /// Encodes one pair under `limits` (`max_length` and `query_max_length` as FlagLLMReranker
    /// reads them; `passage_max_length` cuts the passage too; `direction` says which end).
    pub fn encode_pair(
        &self,
        query: &str,
        passage: &str,
        limits: &PairLimits,
        prompt: &PreparedPrompt,
    ) -> Result<EncodedPair> {
        let query = self.encode_query(query, limits, prompt)?;
        self.encode_with_query(&query, passage, limits, prompt)
    }

    /// The ids of a query with its instruction, cut to `query_max_length`: tokenized once
    /// for pairing with many passages ([`PromptEncoder::encode_with_query`]).
    pub fn encode_query(
        &self,
        query: &str,
        limits: &PairLimits,
        prompt: &PreparedPrompt,
    ) -> Result<Vec<u32>> {
        let mut q = self.tokenize(&format!("{}{query}", prompt.query_instruction))?;
        cut(&mut q, limits.query_max_length, limits.direction);
        Ok(q)
    }

    /// Encodes the pair of an encoded query ([`PromptEncoder::encode_query`], same `limits`
    /// and `prompt`) and `passage`.
    pub fn encode_with_query(
        &self,
        query: &[u32],
        passage: &str,
        limits: &PairLimits,
        prompt: &PreparedPrompt,
    ) -> Result<EncodedPair> {
        let dir = limits.direction;
        let mut p = self.tokenize(&format!("{}{passage}", prompt.passage_instruction))?;
        cut(&mut p, limits.max_length, dir);
        if let Some(limit) = limits.passage_max_length {
            cut(&mut p, limit, dir);
        }
        let mut ids: Vec<u32> = self.bos.into_iter().chain(query.iter().copied()).collect();
        let mut second: Vec<u32> = self.sep.iter().copied().chain(p).collect();
        let budget = limits
            .max_length
            .saturating_add(self.sep.len() + prompt.prompt.len());
        let total = ids.len() + second.len();
        // transformers' `prepare_for_model(truncation='only_second')`: the second sequence
        // loses the excess only when it is strictly longer than the excess (else an error is
        // logged and nothing is cut).
        if total > budget && second.len() > total - budget {
            let keep = second.len() - (total - budget);
            cut(&mut second, keep, dir);
        }
        // The passage lies between `first + sep` and `sep + prompt`; when the cut reached into
        // a multi-token separator, there is no passage left (FlagEmbedding's lengths would
        // then overlap).
        let tail = self.sep.len() + prompt.prompt.len();
        let head = (ids.len() + self.sep.len()).min(ids.len() + second.len());
        let span = PromptSpan { head, tail };
        ids.extend(second);
        ids.extend(&self.sep);
        ids.extend(&prompt.prompt);
        Ok(EncodedPair {
            type_ids: vec![0; ids.len()],
            ids,
            span: Some(span),
        })
    }

    /// Token ids of `text` without special tokens (special-token strings inside it still map
    /// to their ids).
    fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?
            .get_ids()
            .to_vec())
    }
}

/// Keeps `len` ids, the first ones (`Right`) or the last ones (`Left`).
fn cut(ids: &mut Vec<u32>, len: usize, direction: TruncationDirection) {
    if ids.len() > len {
        match direction {
            TruncationDirection::Right => ids.truncate(len),
            TruncationDirection::Left => {
                ids.drain(..ids.len() - len);
            }
        }
    }
}

/// The id of the tokenizer's `{name}_token` (`bos`, `pad`): the string in
/// `tokenizer_config.json` (or `special_tokens_map.json`) looked up in the vocabulary, else
/// `{name}_token_id` of `config.json`.
fn special_token_id(dir: &Path, tokenizer: &Tokenizer, name: &str) -> Result<Option<u32>> {
    let key = format!("{name}_token");
    for file in ["tokenizer_config.json", "special_tokens_map.json"] {
        let Some(json) = read_json(&dir.join(file))? else {
            continue;
        };
        let token = match &json[&key] {
            serde_json::Value::String(s) => Some(s.as_str()),
            serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()),
            _ => None,
        };
        if let Some(token) = token {
            return Ok(tokenizer.token_to_id(token));
        }
    }
    let config = read_json(&dir.join("config.json"))?.unwrap_or_default();
    Ok(config[&format!("{key}_id")]
        .as_u64()
        .and_then(|id| u32::try_from(id).ok()))
}

/// A JSON file, or `None` when it does not exist.
fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Tokenizer(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Tokenizer(format!("invalid {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_the_chosen_end() {
        let mut ids = vec![1, 2, 3, 4];
        cut(&mut ids, 2, TruncationDirection::Right);
        assert_eq!(ids, vec![1, 2]);
        let mut ids = vec![1, 2, 3, 4];
        cut(&mut ids, 3, TruncationDirection::Left);
        assert_eq!(ids, vec![2, 3, 4]);
        cut(&mut ids, 10, TruncationDirection::Left);
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn set_names_lists_what_is_set() {
        let opts = PromptOptions {
            prompt: Some("p".into()),
            passage_instruction: Some(String::new()),
            ..PromptOptions::default()
        };
        assert_eq!(opts.set_names(), vec!["prompt", "passage_instruction"]);
    }
}
