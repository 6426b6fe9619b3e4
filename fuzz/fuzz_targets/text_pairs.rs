//! The legacy API's `text_pairs` parsers on arbitrary input: the Python-literal parser alone,
//! the string form, and any JSON value. None may panic, overflow the stack or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/rerank-cli/src/http/pyliteral.rs"]
#[allow(dead_code)]
mod pyliteral;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = pyliteral::parse(text);
    let _ = pyliteral::text_pairs(&serde_json::Value::String(text.to_owned()));
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = pyliteral::text_pairs(&value);
    }
});
