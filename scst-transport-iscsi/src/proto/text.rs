//! Text key=value data segments (RFC 7143 §6.1) used by Login and Text PDUs.
//!
//! Parsing is zero-copy: [`TextPairs`] yields borrowed `(key, value)` pairs.
//!
//! Decisions where RFC 7143 leaves room:
//! * Every pair must end with a NUL (RFC 7143 §6.1, "including the last or
//!   only pair"). A final pair without its NUL is an error
//!   ([`TextError::Unterminated`]): with C-bit continuation an unterminated
//!   tail means the text was cut, so it is never silently accepted. Callers
//!   reassemble continued PDUs before parsing.
//! * Empty entries (two NULs in a row) are skipped: several targets and
//!   initiators pad the text with extra NULs inside DataSegmentLength.
//! * Keys are `standard-label`s (a letter, then letters, digits, `.-+@_`, at
//!   most 63 bytes), plus the extension form `X#...`. RFC 7143 says a
//!   standard-label begins with a capital letter, but its own
//!   `iSCSIProtocolLevel` key does not, so any ASCII letter is accepted.
//! * A value is any UTF-8 string (no NUL) of at most [`MAX_VALUE_LEN`] bytes
//!   here; per-key limits (255 bytes for most, [`MAX_LARGE_BINARY_LEN`] for
//!   CHAP_C/CHAP_R) are enforced where the key is interpreted.

use core::fmt;

/// Longest key name (RFC 7143 §6.1).
pub const MAX_KEY_LEN: usize = 63;
/// Default longest simple value in bytes (RFC 7143 §6.1).
pub const MAX_SIMPLE_VALUE_LEN: usize = 255;
/// Longest encoded value accepted by the parser (an 8192-byte LTDS cannot
/// hold a longer one; long CHAP challenges are the only users).
pub const MAX_VALUE_LEN: usize = 8192;
/// Longest decoded large-binary-value (CHAP_C/CHAP_R) we accept, in bytes.
pub const MAX_LARGE_BINARY_LEN: usize = 1024;

/// Errors in a text data segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// The last key=value pair is not followed by a NUL.
    #[error("key=value pair at offset {0} is not NUL-terminated")]
    Unterminated(usize),
    /// A pair has no `=`.
    #[error("entry at offset {0} has no '='")]
    MissingEquals(usize),
    /// A key violates the key-name rules.
    #[error("invalid key name at offset {0}")]
    BadKey(usize),
    /// A value is not UTF-8 or is too long.
    #[error("invalid value at offset {0}")]
    BadValue(usize),
}

/// Iterator over the key=value pairs of a logical text data segment.
#[derive(Clone)]
pub struct TextPairs<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

impl fmt::Debug for TextPairs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextPairs").field("len", &self.data.len()).field("pos", &self.pos).finish()
    }
}

impl<'a> TextPairs<'a> {
    /// Iterate over the pairs of `data` (a complete logical text data segment).
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0, failed: false }
    }
}

impl<'a> Iterator for TextPairs<'a> {
    type Item = Result<(&'a str, &'a str), TextError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let rest = self.data.get(self.pos..)?;
            if rest.is_empty() {
                return None;
            }
            let start = self.pos;
            let Some(nul) = rest.iter().position(|&b| b == 0) else {
                self.failed = true;
                return Some(Err(TextError::Unterminated(start)));
            };
            self.pos += nul + 1;
            if nul == 0 {
                continue; // empty entry (extra NUL)
            }
            let r = parse_pair(&rest[..nul], start);
            self.failed = r.is_err();
            return Some(r);
        }
    }
}

fn parse_pair(entry: &[u8], offset: usize) -> Result<(&str, &str), TextError> {
    let eq = entry.iter().position(|&b| b == b'=').ok_or(TextError::MissingEquals(offset))?;
    let (k, v) = (&entry[..eq], &entry[eq + 1..]);
    if !valid_key(k) {
        return Err(TextError::BadKey(offset));
    }
    if v.len() > MAX_VALUE_LEN {
        return Err(TextError::BadValue(offset));
    }
    let key = core::str::from_utf8(k).map_err(|_| TextError::BadKey(offset))?;
    let value = core::str::from_utf8(v).map_err(|_| TextError::BadValue(offset))?;
    Ok((key, value))
}

/// True if `k` is a valid key name: a standard-label (RFC 7143 §6.1, first
/// character relaxed to any letter) or an `X#` extension key, at most 63 bytes.
pub fn valid_key(k: &[u8]) -> bool {
    let label_char = |c: &u8| c.is_ascii_alphanumeric() || b".-+@_".contains(c);
    match k {
        [] => false,
        _ if k.len() > MAX_KEY_LEN => false,
        [b'X', b'#', rest @ ..] => !rest.is_empty() && rest.iter().all(label_char),
        [first, rest @ ..] => first.is_ascii_alphabetic() && rest.iter().all(label_char),
    }
}

/// Parse a whole logical text data segment into borrowed pairs.
pub fn parse_pairs(data: &[u8]) -> Result<Vec<(&str, &str)>, TextError> {
    TextPairs::new(data).collect()
}

/// Append `key=value\0` to `out`.
pub fn push_pair(out: &mut Vec<u8>, key: &str, value: &str) {
    out.reserve(key.len() + value.len() + 2);
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    out.push(0);
}

/// The reserved values a responder uses in answers.
pub mod reserved {
    /// Key not understood.
    pub const NOT_UNDERSTOOD: &str = "NotUnderstood";
    /// Value rejected.
    pub const REJECT: &str = "Reject";
    /// Key irrelevant in this context.
    pub const IRRELEVANT: &str = "Irrelevant";
    /// "None" (digests, AuthMethod).
    pub const NONE: &str = "None";
}

/// Parse a boolean-value (`Yes` / `No`, case-sensitive).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

/// Boolean as text.
pub const fn bool_str(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

/// Parse a numerical-value: a decimal-constant or a hex-constant (`0x`/`0X`)
/// below 2^64. Leading zeros are tolerated.
pub fn parse_number(v: &str) -> Option<u64> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(h, 16).ok()
    } else {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse().ok()
    }
}

/// Parse a numeric-range `a~b` (a <= b).
pub fn parse_range(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once('~')?;
    let (a, b) = (parse_number(a)?, parse_number(b)?);
    (a <= b).then_some((a, b))
}

/// Decode a binary value given as a hex-constant (`0x`/`0X`, case-insensitive
/// digits; an odd digit count has an implied leading zero nibble) or a
/// base64-constant (`0b`/`0B`, RFC 4648 alphabet, `=` padding optional).
/// Returns `None` for anything else, or when the result is empty or longer
/// than `max_len` bytes.
pub fn decode_binary(v: &str, max_len: usize) -> Option<Vec<u8>> {
    let out = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        decode_hex(h)?
    } else if let Some(b) = v.strip_prefix("0b").or_else(|| v.strip_prefix("0B")) {
        decode_base64(b)?
    } else {
        return None;
    };
    (!out.is_empty() && out.len() <= max_len).then_some(out)
}

fn decode_hex(h: &str) -> Option<Vec<u8>> {
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = h.as_bytes();
    let mut out = Vec::with_capacity(b.len().div_ceil(2));
    let (head, tail) = b.split_at(b.len() % 2);
    if let [c] = head {
        out.push(nib(*c)?);
    }
    for pair in tail.chunks_exact(2) {
        out.push(nib(pair[0])? << 4 | nib(pair[1])?);
    }
    Some(out)
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 || body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.as_bytes().chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = acc << 6 | val(c)?;
        }
        acc <<= 6 * (4 - chunk.len() as u32);
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Encode bytes as a lowercase hex-constant (`0x...`).
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_capture_text() {
        // Data segment of open-iscsi's SendTargets request.
        let d = b"SendTargets=All\0";
        assert_eq!(parse_pairs(d).unwrap(), vec![("SendTargets", "All")]);
        // Extra NULs are skipped; '=' inside values kept.
        let d = b"A=b=c\0\0\0B=\0";
        assert_eq!(parse_pairs(d).unwrap(), vec![("A", "b=c"), ("B", "")]);
    }

    #[test]
    fn parse_errors() {
        assert_eq!(parse_pairs(b"A=1\0B=2").unwrap_err(), TextError::Unterminated(4));
        assert_eq!(parse_pairs(b"AB\0").unwrap_err(), TextError::MissingEquals(0));
        assert_eq!(parse_pairs(b"1a=1\0").unwrap_err(), TextError::BadKey(0));
        assert!(parse_pairs(b"iSCSIProtocolLevel=1\0").is_ok());
        assert_eq!(parse_pairs(b"=1\0").unwrap_err(), TextError::BadKey(0));
        assert_eq!(parse_pairs(b"A b=1\0").unwrap_err(), TextError::BadKey(0));
        assert_eq!(parse_pairs(b"A=\xff\0").unwrap_err(), TextError::BadValue(0));
        let long_key = format!("K{}=1\0", "k".repeat(63));
        assert_eq!(parse_pairs(long_key.as_bytes()).unwrap_err(), TextError::BadKey(0));
        let ok_key = format!("K{}=1\0", "k".repeat(62));
        assert!(parse_pairs(ok_key.as_bytes()).is_ok());
        let long_val = format!("A={}\0", "v".repeat(MAX_VALUE_LEN + 1));
        assert_eq!(parse_pairs(long_val.as_bytes()).unwrap_err(), TextError::BadValue(0));
        // The iterator stops after the first error.
        let mut it = TextPairs::new(b"1x=1\0A=2\0");
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn extension_keys() {
        assert!(valid_key(b"X-com.example.Foo"));
        assert!(valid_key(b"X#NodeArchitecture"));
        assert!(!valid_key(b"X#"));
        assert!(!valid_key(b"Y#a"));
    }

    #[test]
    fn builder() {
        let mut v = Vec::new();
        push_pair(&mut v, "TargetName", "iqn.2026-11.rs.scst:vectors");
        push_pair(&mut v, "TargetAddress", "127.0.0.1:3290,1");
        assert_eq!(&v[..], b"TargetName=iqn.2026-11.rs.scst:vectors\0TargetAddress=127.0.0.1:3290,1\0");
    }

    #[test]
    fn values() {
        assert_eq!(parse_bool("Yes"), Some(true));
        assert_eq!(parse_bool("yes"), None);
        assert_eq!(parse_number("262144"), Some(262_144));
        assert_eq!(parse_number("0x40000"), Some(262_144));
        assert_eq!(parse_number("0X1f"), Some(31));
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("12a"), None);
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("18446744073709551616"), None);
        assert_eq!(parse_range("1~5"), Some((1, 5)));
        assert_eq!(parse_range("5~1"), None);
        assert_eq!(decode_binary("0xA57c", 16), Some(vec![0xa5, 0x7c]));
        assert_eq!(decode_binary("0xabc", 16), Some(vec![0x0a, 0xbc]));
        assert_eq!(decode_binary("0bAQID", 16), Some(vec![1, 2, 3]));
        assert_eq!(decode_binary("0bAQIDBA==", 16), Some(vec![1, 2, 3, 4]));
        assert_eq!(decode_binary("0BAQIDBA", 16), Some(vec![1, 2, 3, 4]));
        assert_eq!(decode_binary("0bAQIDBAU=", 16), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(decode_binary("0bA", 16), None);
        assert_eq!(decode_binary("0b!!!!", 16), None);
        assert_eq!(decode_binary("0xzz", 16), None);
        assert_eq!(decode_binary("1234", 16), None);
        assert_eq!(decode_binary("0x", 16), None);
        assert_eq!(decode_binary("0x010203", 2), None);
        assert_eq!(encode_hex(&[0xa5, 0x07]), "0xa507");
    }
}
