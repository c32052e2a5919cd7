//! CHAP (RFC 1994 as profiled by RFC 7143 §12.1.3): response computation,
//! secrets that never print, constant-time comparison and random challenges.
//!
//! Supported algorithms (`CHAP_A`, IANA "PPP Authentication Algorithms"):
//! 5 = MD5, 6 = SHA-1, 7 = SHA-256 (as offered by open-iscsi >= 2.1.2;
//! libiscsi 1.19 offers only 5). 8 = SHA3-256 is not supported.

use core::fmt;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A CHAP algorithm number (`CHAP_A` value).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChapAlgorithm(pub u8);

impl ChapAlgorithm {
    /// MD5 (16-byte response).
    pub const MD5: Self = Self(5);
    /// SHA-1 (20-byte response).
    pub const SHA1: Self = Self(6);
    /// SHA-256 (32-byte response).
    pub const SHA256: Self = Self(7);

    /// Response (digest) length, `None` for unsupported algorithms.
    pub const fn digest_len(self) -> Option<usize> {
        match self.0 {
            5 => Some(16),
            6 => Some(20),
            7 => Some(32),
            _ => None,
        }
    }

    /// Length of the challenges we generate: the digest length, at least 16.
    pub const fn challenge_len(self) -> usize {
        match self.digest_len() {
            Some(n) if n > 16 => n,
            _ => 16,
        }
    }

    /// CHAP response: `H(identifier || secret || challenge)`. `None` for an
    /// unsupported algorithm.
    pub fn response(self, id: u8, secret: &ChapSecret, challenge: &[u8]) -> Option<Vec<u8>> {
        fn run<D: Digest>(id: u8, s: &[u8], c: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update([id]);
            d.update(s);
            d.update(c);
            d.finalize().to_vec()
        }
        let s = secret.expose();
        match self.0 {
            5 => Some(run::<Md5>(id, s, challenge)),
            6 => Some(run::<Sha1>(id, s, challenge)),
            7 => Some(run::<Sha256>(id, s, challenge)),
            _ => None,
        }
    }
}

impl fmt::Debug for ChapAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            5 => " MD5",
            6 => " SHA1",
            7 => " SHA256",
            _ => "",
        };
        write!(f, "ChapAlgorithm({}{name})", self.0)
    }
}

/// A CHAP secret. Its Debug output is redacted and its bytes are overwritten
/// on drop (best effort).
#[derive(Clone, PartialEq, Eq)]
pub struct ChapSecret(Vec<u8>);

impl ChapSecret {
    /// Wrap secret bytes.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self(secret.into())
    }
    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ChapSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChapSecret(<redacted>)")
    }
}

impl Drop for ChapSecret {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            *b = 0;
        }
        core::hint::black_box(&mut self.0);
    }
}

/// A CHAP user name and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    /// User name (`CHAP_N`).
    pub user: String,
    /// Secret.
    pub secret: ChapSecret,
}

impl ChapCredentials {
    /// Build credentials.
    pub fn new(user: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self { user: user.into(), secret: ChapSecret::new(secret) }
    }
}

impl fmt::Debug for ChapCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapCredentials").field("user", &self.user).field("secret", &self.secret).finish()
    }
}

/// Compare two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    core::hint::black_box(diff) == 0
}

/// Fill `buf` with random bytes from the kernel's CSPRNG (`/dev/urandom`, which never blocks
/// once the pool is initialised at boot).
pub fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_response_matches_libiscsi_capture() {
        // libiscsi-chap-mutual-login.pcap: tgtd sent CHAP_I=1 and this
        // CHAP_C; libiscsi (secret "insecret1234") answered CHAP_R below.
        let c = crate::proto::text::decode_binary(
            "0x9230427b2d0e5a0a1b4f49a92b9523b1ea1bec8ec8b356e2635badeae45797aa2f7934e56134eb4ce8bfe13f41ef130e8179",
            1024,
        )
        .unwrap();
        let r = ChapAlgorithm::MD5.response(1, &ChapSecret::new("insecret1234"), &c).unwrap();
        assert_eq!(crate::proto::text::encode_hex(&r), "0xecfb2a05f4f8add11e80f473a24dac2e");
    }

    #[test]
    fn sha_lengths() {
        let s = ChapSecret::new("x");
        assert_eq!(ChapAlgorithm::SHA1.response(0, &s, b"c").unwrap().len(), 20);
        assert_eq!(ChapAlgorithm::SHA256.response(0, &s, b"c").unwrap().len(), 32);
        assert_eq!(ChapAlgorithm(8).response(0, &s, b"c"), None);
        assert_eq!(ChapAlgorithm::MD5.challenge_len(), 16);
        assert_eq!(ChapAlgorithm::SHA256.challenge_len(), 32);
        // SHA-256 of 0x00 || "x" || "c".
        let r = ChapAlgorithm::SHA256.response(0, &s, b"c").unwrap();
        let mut d = Sha256::new();
        d.update(b"\0xc");
        assert_eq!(r, d.finalize().to_vec());
    }

    #[test]
    fn secrets_do_not_print() {
        let c = ChapCredentials::new("u", "topsecret");
        let s = format!("{c:?}");
        assert!(!s.contains("topsecret"), "{s}");
        assert!(s.contains("redacted"));
    }

    #[test]
    fn ct_eq_and_random() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        fill_random(&mut a).unwrap();
        fill_random(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
