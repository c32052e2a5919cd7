//! Access control: SCST's security groups.
//!
//! A [`crate::Target`] has a default LUN map and any number of named groups, each with its own
//! LUN map and a list of initiator-name patterns. A session sees the map of the first group
//! (in the order they were added) whose patterns admit its initiator name, else the default
//! map. Patterns use `*` (any run of characters) and `?` (one character); a pattern starting
//! with `!` excludes. Within one list the last pattern that matches decides, so
//! `iqn.2026-11.com.example:*,!*:test-*` admits every initiator of example.com but its test
//! hosts. iSCSI names are case-insensitive (RFC 3722 normalizes them to lower case), so is the
//! matching.

use std::fmt;

/// A list of initiator-name patterns (see the [module docs](self)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamePatterns(Vec<String>);

/// A pattern list that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternError {
    /// An empty pattern (or a lone `!`).
    #[error("empty initiator name pattern")]
    Empty,
    /// A character that cannot occur in an initiator name (SRP and FC names are hex, iSCSI
    /// names printable ASCII without spaces or commas).
    #[error("invalid character {1:?} in initiator name pattern {0:?}")]
    BadChar(String, char),
}

impl NamePatterns {
    /// Parses patterns (each may start with `!`).
    ///
    /// # Errors
    /// An empty pattern, or one with whitespace, a comma or a non-ASCII character.
    pub fn new<I, S>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut v = Vec::new();
        for p in patterns {
            let p = p.as_ref();
            let body = p.strip_prefix('!').unwrap_or(p);
            if body.is_empty() {
                return Err(PatternError::Empty);
            }
            if let Some(c) = body.chars().find(|c| !c.is_ascii_graphic() || *c == ',') {
                return Err(PatternError::BadChar(p.to_string(), c));
            }
            v.push(p.to_ascii_lowercase());
        }
        Ok(Self(v))
    }

    /// Parses a comma-separated list.
    ///
    /// # Errors
    /// As [`NamePatterns::new`].
    pub fn parse(list: &str) -> Result<Self, PatternError> {
        Self::new(list.split(','))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The patterns.
    pub fn patterns(&self) -> &[String] {
        &self.0
    }

    /// Whether `name` is admitted: the last pattern matching it is not an exclusion. An empty
    /// list admits no one.
    pub fn admits(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let mut ok = false;
        for p in &self.0 {
            match p.strip_prefix('!') {
                Some(neg) if glob(neg.as_bytes(), name.as_bytes()) => ok = false,
                None if glob(p.as_bytes(), name.as_bytes()) => ok = true,
                _ => {}
            }
        }
        ok
    }
}

impl fmt::Display for NamePatterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// Whether `name` matches `pat` (`*` any run, `?` one byte); linear backtracking on the last
/// star, so hostile patterns cannot make it exponential.
pub fn glob(pat: &[u8], name: &[u8]) -> bool {
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < name.len() {
        // Fix (found by the `config` fuzz target): the star test comes first. A `*` used to be
        // compared with the name's character first, so against a `*` in the name it matched
        // that one character literally and left no backtracking point: `*:test-*` did not
        // match `iqn.x:test-*y`, and an exclusion `!*:test-*` let such a name in.
        if pi < pat.len() && pat[pi] == b'*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if pi < pat.len() && (pat[pi] == b'?' || pat[pi] == name[ni]) {
            pi += 1;
            ni += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    pat[pi..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(glob(b"iqn.*", b"iqn.1994-05.com.redhat:abc"));
        assert!(glob(b"*:host?", b"iqn.x:host7"));
        assert!(!glob(b"*:host?", b"iqn.x:host77"));
        assert!(glob(b"*", b""));
        assert!(!glob(b"a*b*c", b"aXbY"));
        assert!(glob(b"a*b*c", b"aXbYc"));
        // Many stars against a long non-matching name finishes (no exponential backtracking).
        let pat = b"*a*a*a*a*a*a*a*a*a*a*a*a*b".to_vec();
        assert!(!glob(&pat, &[b'a'; 4096]));
    }

    /// A `*` in the name is an ordinary character, also where the pattern has a star (found by
    /// the `config` fuzz target: the star matched it literally and never backtracked).
    #[test]
    fn star_in_the_name() {
        assert!(glob(b"*#", b"*#!!#"));
        assert!(glob(b"*", b"*x"));
        assert!(glob(b"iqn.*", b"iqn.**:evil"));
        assert!(glob(b"*:test-*", b"iqn.x:test-*y"));
        assert!(!glob(b"*:test-*", b"iqn.x:prod-*y"));
        // The exclusion of the module docs' example holds for names with stars.
        let p = NamePatterns::parse("iqn.2026-11.com.example:*,!*:test-*").unwrap();
        assert!(!p.admits("iqn.2026-11.com.example:test-*x"));
        assert!(p.admits("iqn.2026-11.com.example:db-*"));
    }

    #[test]
    fn last_matching_pattern_decides() {
        let p = NamePatterns::parse("iqn.2026-11.com.example:*,!*:test-*").unwrap();
        assert!(p.admits("iqn.2026-11.com.example:db1"));
        assert!(p.admits("IQN.2026-11.COM.EXAMPLE:DB1"), "iSCSI names are case-insensitive");
        assert!(!p.admits("iqn.2026-11.com.example:test-7"));
        assert!(!p.admits("iqn.1994-05.com.redhat:x"));
        let p = NamePatterns::parse("!*:bad,*").unwrap();
        assert!(p.admits("iqn.x:bad"), "a later match overrides an earlier exclusion");
        assert!(!NamePatterns::default().admits("anyone"));
    }

    #[test]
    fn bad_patterns() {
        assert_eq!(NamePatterns::parse("a,,b"), Err(PatternError::Empty));
        assert_eq!(NamePatterns::parse("!"), Err(PatternError::Empty));
        assert!(matches!(NamePatterns::new(["a b"]), Err(PatternError::BadChar(_, ' '))));
        assert!(matches!(NamePatterns::new(["a,b"]), Err(PatternError::BadChar(_, ','))));
    }
}
