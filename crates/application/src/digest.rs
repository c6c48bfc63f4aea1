//! SHA-256 digests, raw and in lowercase hex, as keys, fingerprints and cache keys use them.

use sha2::{Digest, Sha256};

/// The digest of a key (the management key or an API key): the one way keys are hashed,
/// whether compared in memory or stored (as [`domain::KeyHash`] of the same digest).
pub fn key_digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// The SHA-256 of `bytes` as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    domain::KeyHash::from_digest(key_digest(bytes))
        .as_str()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::sha256_hex;

    #[test]
    fn matches_the_published_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
