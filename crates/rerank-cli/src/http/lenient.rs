//! Lenient scalars for request fields that real clients send as strings: booleans take
//! `true`/`false` or the strings `"true"`/`"false"` (any case), integers take numbers or numeric
//! strings (RAGFlow's Xinference provider sends `"return_documents": "true"`). Anything else is
//! a clear error naming what was expected.

use serde::de::Error;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A boolean, or `"true"`/`"false"` in any case.
pub fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A non-negative integer, or a string holding one.
pub fn as_usize(value: &Value) -> Option<usize> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `Option<bool>` field: absent or `null` → `None`.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_bool(&v)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected a boolean, found {v}"))),
    }
}

/// `bool` field (its default comes from `#[serde(default)]`).
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Value::deserialize(d)?;
    as_bool(&v).ok_or_else(|| D::Error::custom(format!("expected a boolean, found {v}")))
}

/// `Option<usize>` field: absent or `null` → `None`.
pub fn opt_usize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_usize(&v)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected a non-negative integer, found {v}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_count_as_booleans_and_integers() {
        assert_eq!(as_bool(&json!("TRUE")), Some(true));
        assert_eq!(as_bool(&json!("false")), Some(false));
        assert_eq!(as_bool(&json!(true)), Some(true));
        assert_eq!(as_bool(&json!("yes")), None);
        assert_eq!(as_bool(&json!(1)), None);
        assert_eq!(as_usize(&json!("12")), Some(12));
        assert_eq!(as_usize(&json!(3)), Some(3));
        assert_eq!(as_usize(&json!(-3)), None);
        assert_eq!(as_usize(&json!("3.5")), None);
        assert_eq!(as_usize(&json!(2.0)), None);
    }
}
