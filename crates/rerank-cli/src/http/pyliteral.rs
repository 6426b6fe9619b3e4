//! A small parser for the Python literals the legacy service accepted as `text_pairs`:
//! `"[['what is panda?', 'hi'], ('q', \"p\")]"` — lists and tuples of strings in single or double
//! quotes with backslash escapes. Nothing is evaluated.
//!
//! Nesting is bounded by [`MAX_DEPTH`]: the format is a list of pairs, so anything deeper is
//! refused before it can exhaust the stack.

/// Deepest nesting of lists accepted: the outer list and its pairs.
pub const MAX_DEPTH: usize = 2;

/// The legacy API's `text_pairs`: a JSON array of `[query, passage]` pairs, or a string
/// holding a Python-literal list of them. The error is a one-line message.
pub fn text_pairs(value: &serde_json::Value) -> Result<Vec<(String, String)>, String> {
    use serde_json::Value;
    let bad =
        |i: usize| format!("text_pairs item {i} is not a [query, passage] pair of two strings");
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item.as_array().map(Vec::as_slice) {
                Some([Value::String(q), Value::String(p)]) => Ok((q.clone(), p.clone())),
                _ => Err(bad(i)),
            })
            .collect(),
        Value::String(text) => {
            let parsed =
                parse(text).map_err(|e| format!("text_pairs is not a valid list literal: {e}"))?;
            let PyValue::List(items) = parsed else {
                return Err("text_pairs must be a list of pairs".into());
            };
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    PyValue::List(pair) => match <[PyValue; 2]>::try_from(pair) {
                        Ok([PyValue::Str(q), PyValue::Str(p)]) => Ok((q, p)),
                        _ => Err(bad(i)),
                    },
                    PyValue::Str(_) => Err(bad(i)),
                })
                .collect()
        }
        _ => Err(
            "text_pairs must be a list of [query, passage] pairs or a string holding one".into(),
        ),
    }
}

/// A parsed literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PyValue {
    /// A string.
    Str(String),
    /// A list or tuple.
    List(Vec<PyValue>),
}

/// Parses one literal; the whole input must be consumed.
pub fn parse(text: &str) -> Result<PyValue, String> {
    let mut parser = Parser {
        chars: text.char_indices().peekable(),
        text,
    };
    let value = parser.value(0)?;
    parser.skip_ws();
    match parser.chars.peek() {
        None => Ok(value),
        Some(&(at, c)) => Err(format!(
            "unexpected {c:?} at character {at} after the literal"
        )),
    }
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    text: &'a str,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    }

    /// One value, inside `depth` enclosing lists.
    fn value(&mut self, depth: usize) -> Result<PyValue, String> {
        self.skip_ws();
        match self.chars.peek().copied() {
            Some((at, '[' | '(')) if depth == MAX_DEPTH => Err(format!(
                "lists nested deeper than {MAX_DEPTH} levels at character {at}: expected a list of [query, passage] pairs"
            )),
            Some((_, '[')) => self.sequence(']', depth + 1),
            Some((_, '(')) => self.sequence(')', depth + 1),
            Some((_, '\'' | '"')) => self.string().map(PyValue::Str),
            Some((_, 'u' | 'U')) => {
                self.chars.next();
                match self.chars.peek() {
                    Some((_, '\'' | '"')) => self.string().map(PyValue::Str),
                    _ => Err("expected a string after the u prefix".into()),
                }
            }
            Some((at, c)) => Err(format!(
                "unexpected {c:?} at character {at}: only lists, tuples and quoted strings are allowed"
            )),
            None => Err("unexpected end of input".into()),
        }
    }

    fn sequence(&mut self, close: char, depth: usize) -> Result<PyValue, String> {
        self.chars.next();
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.chars.next_if(|&(_, c)| c == close).is_some() {
                return Ok(PyValue::List(items));
            }
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.chars.next() {
                Some((_, ',')) => continue,
                Some((_, c)) if c == close => return Ok(PyValue::List(items)),
                Some((at, c)) => {
                    return Err(format!(
                        "expected ',' or {close:?} at character {at}, found {c:?}"
                    ))
                }
                None => return Err(format!("unclosed sequence: missing {close:?}")),
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let (start, quote) = self.chars.next().ok_or("expected a string")?;
        let mut out = String::new();
        loop {
            match self.chars.next() {
                None => return Err(format!("unterminated string starting at character {start}")),
                Some((_, c)) if c == quote => return Ok(out),
                Some((_, '\\')) => out.push_str(&self.escape()?),
                Some((_, c)) => out.push(c),
            }
        }
    }

    fn escape(&mut self) -> Result<String, String> {
        let (at, c) = self.chars.next().ok_or("unterminated escape")?;
        let simple = match c {
            '\\' => '\\',
            '\'' => '\'',
            '"' => '"',
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            '0' => '\0',
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'v' => '\u{b}',
            '\n' => return Ok(String::new()),
            'x' => return self.hex(2, at),
            'u' => return self.hex(4, at),
            'U' => return self.hex(8, at),
            // Python keeps unknown escapes as written.
            other => return Ok(format!("\\{other}")),
        };
        Ok(simple.to_string())
    }

    fn hex(&mut self, digits: usize, at: usize) -> Result<String, String> {
        let mut code = 0u32;
        for _ in 0..digits {
            let d = self
                .chars
                .next()
                .and_then(|(_, c)| c.to_digit(16))
                .ok_or_else(|| {
                    format!("bad hex escape at character {at} in {:?}", self.snippet(at))
                })?;
            code = code * 16 + d;
        }
        char::from_u32(code)
            .map(String::from)
            .ok_or_else(|| format!("invalid code point {code:#x} at character {at}"))
    }

    fn snippet(&self, at: usize) -> &str {
        let end = self.text[at..]
            .char_indices()
            .nth(12)
            .map_or(self.text.len(), |(i, _)| at + i);
        &self.text[at..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> PyValue {
        PyValue::Str(v.into())
    }

    #[test]
    fn parses_the_seed_example() {
        let v = parse("[['what is panda?', 'hi'], ['what is panda?', 'The giant panda']]").unwrap();
        assert_eq!(
            v,
            PyValue::List(vec![
                PyValue::List(vec![s("what is panda?"), s("hi")]),
                PyValue::List(vec![s("what is panda?"), s("The giant panda")]),
            ])
        );
    }

    #[test]
    fn quotes_escapes_tuples_and_trailing_commas() {
        let v = parse(r#" [ ("it's", 'say "hi"\n'), ['a\'b', "\u4f60\x41\\"], ] "#).unwrap();
        assert_eq!(
            v,
            PyValue::List(vec![
                PyValue::List(vec![s("it's"), s("say \"hi\"\n")]),
                PyValue::List(vec![s("a'b"), s("你A\\")]),
            ])
        );
        assert_eq!(parse("[u'x']").unwrap(), PyValue::List(vec![s("x")]));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing() {
        for depth in [3, 9_000, 1_000_000] {
            let text = "[".repeat(depth);
            let err = parse(&text).unwrap_err();
            assert!(err.contains("nested deeper than 2"), "{err}");
        }
    }

    #[test]
    fn rejects_code_and_broken_literals() {
        for bad in [
            "[['a', 'b']",
            "[['a' 'b']]",
            "['a', __import__('os')]",
            "[1, 2]",
            "'unterminated",
            "[['a', 'b']] extra",
            "[[['a', 'b']]]",
            "[[('a', 'b'), 'c']]",
            "['\\x4']",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
    }
}
