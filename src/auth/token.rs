//! The token format. `iocagg_` then 50 characters of `[0-9A-Za-z]`: a public id of 12 (which
//! finds the token's row), a secret of 32 (190 bits from a CSPRNG) and a checksum of 6
//! (the first 4 bytes of the SHA-256 of what precedes it). The fixed prefix and the checksum let
//! secret scanners recognise a leaked token (`iocagg_[0-9A-Za-z]{50}`) without false positives,
//! and let the service turn away a mistyped token without a store lookup.

use rand::Rng;
use sha2::{Digest, Sha256};

/// What every token starts with.
pub const PREFIX: &str = "iocagg_";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
const CHECK_LEN: usize = 6;
/// Length of a whole token.
pub const LEN: usize = PREFIX.len() + ID_LEN + SECRET_LEN + CHECK_LEN;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A freshly generated token: the whole secret (shown once) and its parts to store.
#[derive(Debug)]
pub struct Generated {
    /// The token to hand over. Never stored, never logged.
    pub token: String,
    /// Its public id.
    pub id: String,
    /// SHA-256 of the whole token.
    pub hash: [u8; 32],
}

/// Generate a new token.
pub fn generate() -> Generated {
    // rand's thread generator is a CSPRNG (ChaCha12) seeded from the operating system.
    let mut rng = rand::rng();
    let body: String = (0..ID_LEN + SECRET_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let token = format!("{PREFIX}{body}{}", checksum(&body));
    Generated {
        id: body[..ID_LEN].to_owned(),
        hash: hash(&token),
        token,
    }
}

/// The public id of `token` if it is well formed (prefix, length, alphabet, checksum); `None`
/// for anything else, without touching the store.
pub fn parse(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(PREFIX)?;
    if token.len() != LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let (body, check) = rest.split_at(ID_LEN + SECRET_LEN);
    (checksum(body) == check).then(|| &body[..ID_LEN])
}

/// SHA-256 of a whole token: what the store keeps. A token has 190 bits of entropy, so a fast
/// hash is enough (no password hashing needed): nothing can be guessed from it.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Six base-62 digits of the first four bytes of the SHA-256 of `body`.
fn checksum(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let mut n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).expect("ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a.token, b.token);
        assert_eq!(a.token.len(), LEN);
        assert_eq!(parse(&a.token), Some(a.id.as_str()));
        assert_eq!(hash(&a.token), a.hash);
    }

    #[test]
    fn mistyped_tokens_are_refused_without_a_lookup() {
        let t = generate().token;
        let mut typo = t.clone().into_bytes();
        typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
        assert_eq!(parse(&String::from_utf8(typo).unwrap()), None);
        assert_eq!(parse(&t[..LEN - 1]), None);
        assert_eq!(parse(&t.replace(PREFIX, "ghp_xx_")), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse(&format!("{t}x")), None);
    }
}
