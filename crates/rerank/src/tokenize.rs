//! Building the model input of a `[query, passage]` pair exactly as the reference does.

use std::path::Path;
use std::str::FromStr;

use tokenizers::{Encoding, PostProcessor, Tokenizer, TruncationDirection};
use tokenizers::{TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};

/// How a pair longer than `max_length` is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Truncation {
    /// FlagEmbedding's `FlagReranker` (the default): the query is cut to `query_max_length`
    /// tokens and the passage to `max_length`, then the passage's tail is cut so that the pair
    /// with its special tokens fits `max_length` (`prepare_for_model(..., truncation='only_second')`).
    #[default]
    Flag,
    /// Text Embeddings Inference and sentence-transformers: the tokenizer's `longest_first`
    /// strategy, which trims the longer of the two until the pair fits.
    LongestFirst,
}

impl FromStr for Truncation {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "flag" | "only-second" | "flagembedding" => Ok(Truncation::Flag),
            "longest-first" | "tei" => Ok(Truncation::LongestFirst),
            other => Err(format!(
                "unknown truncation {other:?} (expected flag or longest-first)"
            )),
        }
    }
}

/// Length limits for one scoring call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairLimits {
    /// Truncation strategy.
    pub truncation: Truncation,
    /// Maximum tokens of the whole pair, special tokens included.
    pub max_length: usize,
    /// Maximum tokens of the query alone ([`Truncation::Flag`] only).
    pub query_max_length: usize,
    /// Maximum tokens of the passage alone, before the pair is built (Cohere's
    /// `max_tokens_per_doc`); `None` = no extra limit.
    pub passage_max_length: Option<usize>,
    /// Which end of a text is cut: `Right` keeps the beginning (the reference's behaviour).
    pub direction: TruncationDirection,
}

impl PairLimits {
    /// FlagReranker's limits: `query_max_length` defaults to `max_length * 3 / 4`.
    pub fn new(truncation: Truncation, max_length: usize, query_max_length: Option<usize>) -> Self {
        Self {
            truncation,
            max_length,
            query_max_length: query_max_length.unwrap_or(max_length * 3 / 4),
            passage_max_length: None,
            direction: TruncationDirection::Right,
        }
    }
}

/// The token ids (and token type ids) of one encoded pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPair {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Token type ids (all zero for models that take none).
    pub type_ids: Vec<u32>,
}

/// A tokenizer that encodes query–passage pairs the way the reference implementation does.
pub struct PairEncoder {
    tokenizer: Tokenizer,
    pair_specials: usize,
    use_type_ids: bool,
}

impl PairEncoder {
    /// Loads `tokenizer.json`. `use_type_ids`: whether the model reads token type ids (BERT)
    /// or gets zeros (XLM-RoBERTa, whose tokenizer returns none).
    pub fn from_file(path: &Path, use_type_ids: bool) -> Result<Self> {
        let mut tokenizer = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("cannot load {}: {e}", path.display())))?;
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let pair_specials = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true));
        Ok(Self {
            tokenizer,
            pair_specials,
            use_type_ids,
        })
    }

    /// The underlying tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Encodes one pair under `limits`.
    pub fn encode_pair(
        &self,
        query: &str,
        passage: &str,
        limits: &PairLimits,
    ) -> Result<EncodedPair> {
        let dir = limits.direction;
        let mut q = self.encode_plain(query)?;
        let mut p = self.encode_plain(passage)?;
        if let Some(limit) = limits.passage_max_length {
            cut(&mut p, limit, dir);
        }
        match limits.truncation {
            Truncation::Flag => {
                cut(&mut q, limits.query_max_length, dir);
                cut(&mut p, limits.max_length, dir);
                let total = q.len() + p.len() + self.pair_specials;
                if total > limits.max_length {
                    let remove = total - limits.max_length;
                    // transformers' `truncate_sequences(only_second)` refuses (and logs an error)
                    // unless the passage is strictly longer than what must go.
                    if p.len() > remove {
                        let keep = p.len() - remove;
                        cut(&mut p, keep, dir);
                    }
                }
            }
            Truncation::LongestFirst => {
                let params = TruncationParams {
                    max_length: limits.max_length.saturating_sub(self.pair_specials),
                    strategy: TruncationStrategy::LongestFirst,
                    stride: 0,
                    direction: dir,
                };
                (q, p) =
                    match tokenizers::utils::truncation::truncate_encodings(q, Some(p), &params) {
                        Ok((q, Some(p))) => (q, p),
                        Ok((_, None)) => unreachable!("truncate_encodings keeps the pair"),
                        Err(e) => return Err(Error::Tokenizer(e.to_string())),
                    };
                q.take_overflowing();
                p.take_overflowing();
            }
        }
        let pair = self
            .tokenizer
            .post_process(q, Some(p), true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(self.finish(pair))
    }

    /// Encodes one text with special tokens (`<s> text </s>`), cut to `max_length`.
    pub fn encode_text(&self, text: &str, max_length: usize) -> Result<EncodedPair> {
        let mut enc = self.encode_plain(text)?;
        let specials = self
            .tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        cut(
            &mut enc,
            max_length.saturating_sub(specials),
            TruncationDirection::Right,
        );
        let enc = self
            .tokenizer
            .post_process(enc, None, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(self.finish(enc))
    }

    fn encode_plain(&self, text: &str) -> Result<Encoding> {
        self.tokenizer
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    fn finish(&self, enc: Encoding) -> EncodedPair {
        let ids = enc.get_ids().to_vec();
        let type_ids = if self.use_type_ids {
            enc.get_type_ids().to_vec()
        } else {
            vec![0; ids.len()]
        };
        EncodedPair { ids, type_ids }
    }
}

/// Keeps `len` tokens, the first ones (`Right`) or the last ones (`Left`); no overflow kept.
fn cut(enc: &mut Encoding, len: usize, direction: TruncationDirection) {
    if enc.len() > len {
        enc.truncate(len, 0, direction);
        enc.take_overflowing();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_parses() {
        assert_eq!("flag".parse(), Ok(Truncation::Flag));
        assert_eq!("longest_first".parse(), Ok(Truncation::LongestFirst));
        assert_eq!("Longest-First".parse(), Ok(Truncation::LongestFirst));
        assert!("middle".parse::<Truncation>().is_err());
    }

    #[test]
    fn default_query_limit_is_three_quarters() {
        assert_eq!(
            PairLimits::new(Truncation::Flag, 512, None).query_max_length,
            384
        );
        assert_eq!(
            PairLimits::new(Truncation::Flag, 64, Some(16)).query_max_length,
            16
        );
    }
}
