//! Telling key material apart from words, for the targets that check secrets never leak.

/// Values shorter than this are not looked for.
const MIN_SECRET_LEN: usize = 20;

/// Whether `value` looks like a key or a mistyped one: long, and base64 characters only.
/// Shorter or wordier values occur in messages by chance: the fuzzer soon sets a key to
/// "missing field" and finds it in serde's error text.
pub fn looks_like_key_material(value: &str) -> bool {
    value.len() >= MIN_SECRET_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}
