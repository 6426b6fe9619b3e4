//! Reading and checking the JSON the CLI is given.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Reads all of `path`, or stdin when `None`.
pub fn read_input(path: Option<&Path>) -> Result<String> {
    match path {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
        }
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read stdin")?;
            Ok(text)
        }
    }
}

fn parse_json(text: &str) -> Result<Value> {
    if text.trim().is_empty() {
        bail!("input is empty: expected JSON");
    }
    serde_json::from_str(text).context("input is not valid JSON")
}

/// A `[query, passage]` pair: an array of exactly two strings.
fn as_pair(value: &Value) -> Option<(String, String)> {
    match value.as_array()?.as_slice() {
        [Value::String(q), Value::String(p)] => Some((q.clone(), p.clone())),
        _ => None,
    }
}

/// Parses `[[q, p], ...]` or a single `[q, p]`.
pub fn parse_pairs(text: &str) -> Result<Vec<(String, String)>> {
    let value = parse_json(text)?;
    if let Some(pair) = as_pair(&value) {
        return Ok(vec![pair]);
    }
    let Some(items) = value.as_array() else {
        bail!("input must be a JSON array of [query, passage] pairs");
    };
    if items.is_empty() {
        bail!("input has no pairs to score (empty array)");
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            as_pair(item).with_context(|| {
                format!(
                    "input item {i} is not a [query, passage] pair of two strings: {}",
                    preview(item)
                )
            })
        })
        .collect()
}

/// Parses a JSON array of document strings.
pub fn parse_documents(text: &str) -> Result<Vec<String>> {
    strings(parse_json(text)?, "documents to rank")
}

/// Parses texts to embed: a JSON array of strings, or one string.
pub fn parse_texts(text: &str) -> Result<Vec<String>> {
    match parse_json(text)? {
        Value::String(s) => Ok(vec![s]),
        value => strings(value, "texts to embed"),
    }
}

/// A non-empty JSON array of strings; `what` names its items in the error for an empty one.
fn strings(value: Value, what: &str) -> Result<Vec<String>> {
    let Some(items) = value.as_array() else {
        bail!("input must be a JSON array of strings");
    };
    if items.is_empty() {
        bail!("input has no {what} (empty array)");
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            other => bail!("input item {i} is not a string: {}", preview(other)),
        })
        .collect()
}

fn preview(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_accept_list_and_single_pair() {
        assert_eq!(parse_pairs(r#"[["q","p"],["a","b"]]"#).unwrap().len(), 2);
        assert_eq!(
            parse_pairs(r#"["q","p"]"#).unwrap(),
            vec![("q".to_string(), "p".to_string())]
        );
    }

    #[test]
    fn pairs_reject_bad_shapes() {
        for bad in [
            "",
            "[]",
            "{}",
            "[[\"q\"]]",
            "[[\"q\",1]]",
            "[\"q\",\"p\",\"r\"]",
            "[[\"q\",\"p\"],",
            "3",
        ] {
            let err = parse_pairs(bad).unwrap_err();
            assert!(!format!("{err:#}").is_empty(), "{bad}");
        }
        let msg = format!("{:#}", parse_pairs(r#"[["q","p"],["x"]]"#).unwrap_err());
        assert!(msg.contains("item 1"), "{msg}");
    }

    #[test]
    fn texts_are_strings_or_one_string() {
        assert_eq!(parse_texts(r#"["a","b"]"#).unwrap().len(), 2);
        assert_eq!(parse_texts(r#""a""#).unwrap(), vec!["a".to_string()]);
        assert!(parse_texts("[]").is_err());
        assert!(parse_texts("[1]").is_err());
        assert!(parse_texts("{}").is_err());
    }

    #[test]
    fn documents_must_be_strings() {
        assert_eq!(parse_documents(r#"["a",""]"#).unwrap().len(), 2);
        assert!(parse_documents("[]").is_err());
        assert!(parse_documents(r#"["a",{"text":"b"}]"#).is_err());
        assert!(parse_documents(r#""a""#).is_err());
    }
}
