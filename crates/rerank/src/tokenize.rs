//! Building the model input of a `[query, passage]` pair exactly as the reference does.

use std::path::Path;
use std::str::FromStr;

use rerank_models::PromptSpan;
use tokenizers::{Encoding, PostProcessor, Tokenizer, TruncationDirection};

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
    /// LLM rerankers: where the passage lies (for token compression); `None` for the
    /// cross-encoders.
    pub span: Option<PromptSpan>,
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
        self.encode_with_query(&self.encode_query(query, limits)?, passage, limits)
    }

    /// Tokenizes a query once, for pairing with many passages ([`PairEncoder::encode_with_query`]).
    /// Only the tokens a pair can keep under `limits` are kept.
    pub fn encode_query(&self, query: &str, limits: &PairLimits) -> Result<EncodedQuery> {
        let mut encoding = self.encode_plain(query)?;
        let tokens = encoding.len();
        let most = match limits.truncation {
            Truncation::Flag => limits.query_max_length,
            Truncation::LongestFirst => limits.max_length.saturating_sub(self.pair_specials),
        };
        cut(&mut encoding, most, limits.direction);
        Ok(EncodedQuery { encoding, tokens })
    }

    /// Encodes the pair of an already tokenized query and `passage` under `limits` (the same
    /// `limits` the query was encoded with).
    pub fn encode_with_query(
        &self,
        query: &EncodedQuery,
        passage: &str,
        limits: &PairLimits,
    ) -> Result<EncodedPair> {
        let dir = limits.direction;
        let mut q = query.encoding.clone();
        let mut p = self.encode_plain(passage)?;
        if let Some(limit) = limits.passage_max_length {
            cut(&mut p, limit, dir);
        }
        match limits.truncation {
            Truncation::Flag => {
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
                let room = limits.max_length.saturating_sub(self.pair_specials);
                let (keep_q, keep_p) = longest_first_lengths(query.tokens, p.len(), room);
                cut(&mut q, keep_q, dir);
                cut(&mut p, keep_p, dir);
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
        EncodedPair {
            ids,
            type_ids,
            span: None,
        }
    }
}

/// A query tokenized once for many pairs.
#[derive(Debug, Clone)]
pub struct EncodedQuery {
    /// Its tokens, cut to the most any pair keeps.
    encoding: Encoding,
    /// Its length in tokens before that cut.
    tokens: usize,
}

impl EncodedQuery {
    /// The query's length in tokens, before any truncation.
    pub fn tokens(&self) -> usize {
        self.tokens
    }
}

/// The lengths tokenizers' `longest_first` strategy cuts a pair of `first` and `second` tokens
/// to, so that they fit `max` (`tokenizers::utils::truncation::truncate_encodings`): the longer
/// side is trimmed first; when both are over half, each keeps half.
fn longest_first_lengths(first: usize, second: usize, max: usize) -> (usize, usize) {
    if first + second <= max {
        return (first, second);
    }
    let short = first.min(second);
    let mut keep_short = short;
    let mut keep_long = if short > max {
        short
    } else {
        short.max(max - short)
    };
    if keep_short + keep_long > max {
        keep_short = max / 2;
        keep_long = keep_short + max % 2;
    }
    let (keep_first, keep_second) = if first > second {
        (keep_long, keep_short)
    } else {
        (keep_short, keep_long)
    };
    (first.min(keep_first), second.min(keep_second))
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
    use tokenizers::{TruncationParams, TruncationStrategy};

    #[test]
    fn truncation_parses() {
        assert_eq!("flag".parse(), Ok(Truncation::Flag));
        assert_eq!("longest_first".parse(), Ok(Truncation::LongestFirst));
        assert_eq!("Longest-First".parse(), Ok(Truncation::LongestFirst));
        assert!("middle".parse::<Truncation>().is_err());
    }

    #[test]
    fn longest_first_lengths_match_the_tokenizers_crate() {
        let encoding = |n: usize| {
            Encoding::new(
                vec![7; n],
                vec![0; n],
                vec![String::new(); n],
                vec![None; n],
                vec![(0, 0); n],
                vec![0; n],
                vec![1; n],
                Vec::new(),
                Default::default(),
            )
        };
        for max in [0, 1, 2, 5, 8, 9, 30] {
            for first in 0..40 {
                for second in 0..40 {
                    let params = TruncationParams {
                        max_length: max,
                        strategy: TruncationStrategy::LongestFirst,
                        stride: 0,
                        direction: TruncationDirection::Right,
                    };
                    let (q, p) = tokenizers::utils::truncation::truncate_encodings(
                        encoding(first),
                        Some(encoding(second)),
                        &params,
                    )
                    .unwrap();
                    let expected = (q.len(), p.map_or(0, |p| p.len()));
                    assert_eq!(
                        longest_first_lengths(first, second, max),
                        expected,
                        "first {first}, second {second}, max {max}"
                    );
                }
            }
        }
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
