//! Envelope encryption of documents. Every object gets a fresh 256-bit data key that seals it
//! ([`crate::cipher`]). Kiorex keeps the data key only wrapped (AES-256-GCM)
//! by the appliance's key-encryption key (KEK), next to the document row, with the KEK's id.
//! Rotating the KEK adds a new current key to the keyring and keeps the old ones for unwrapping:
//! no object is rewritten, and rows can be re-wrapped at leisure.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use std::collections::HashMap;

const NONCE_LEN: usize = 12;

/// A per-object key in the clear. Lives only for one request.
#[derive(Clone)]
pub struct DataKey([u8; 32]);

impl DataKey {
    pub fn generate() -> DataKey {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        DataKey(key)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// A data key wrapped by the KEK named `key_id`: nonce followed by ciphertext and tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the keyring is empty: give at least one line `<id>:<base64 of 32 bytes>`")]
    Empty,
    #[error("keyring line {line}: {problem}")]
    Malformed { line: usize, problem: String },
    #[error("no key-encryption key with id {0:?} in the keyring (was an old key removed?)")]
    UnknownKey(String),
    #[error("the wrapped data key does not open with key {0:?}: wrong key or tampered row")]
    Unwrap(String),
}

/// The appliance's key-encryption keys: the first is current (wraps new data keys), the others
/// only unwrap keys wrapped before a rotation.
pub struct Keyring {
    current: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl Keyring {
    /// Parses one key per line, `<id>:<base64 of 32 random bytes>`; blank lines and `#`
    /// comments are skipped. The first key is the current one.
    pub fn parse(text: &str) -> Result<Keyring, KeyError> {
        let mut current = None;
        let mut keys = HashMap::new();
        let lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
        for (line, entry) in lines.filter(|(_, l)| !l.is_empty() && !l.starts_with('#')) {
            let malformed = |problem: &str| KeyError::Malformed {
                line,
                problem: problem.to_owned(),
            };
            let (id, encoded) = entry
                .split_once(':')
                .ok_or_else(|| malformed("expected <id>:<base64 key>"))?;
            let id = id.trim();
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(malformed("the id must be letters, digits, '-', '_' or '.'"));
            }
            let raw = B64
                .decode(encoded.trim())
                .map_err(|_| malformed("the key is not base64"))?;
            let cipher = Aes256Gcm::new_from_slice(&raw)
                .map_err(|_| malformed("the key must be exactly 32 bytes"))?;
            if keys.insert(id.to_owned(), cipher).is_some() {
                return Err(malformed("this id appears twice"));
            }
            current.get_or_insert_with(|| id.to_owned());
        }
        let current = current.ok_or(KeyError::Empty)?;
        Ok(Keyring { current, keys })
    }

    /// A new keyring line with a random key, for `kiorex keygen --kek` and tests.
    pub fn generate_line(id: &str) -> String {
        format!("{id}:{}", B64.encode(DataKey::generate().bytes()))
    }

    pub fn current_id(&self) -> &str {
        &self.current
    }

    /// Wraps `key` with the current KEK, bound to `object_key` so that a wrapped key copied onto
    /// another row does not open.
    pub fn wrap(&self, key: &DataKey, object_key: &str) -> WrappedKey {
        let cipher = &self.keys[&self.current];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: key.bytes(),
                    aad: object_key.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of 32 bytes cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        WrappedKey {
            key_id: self.current.clone(),
            bytes,
        }
    }

    pub fn unwrap(&self, wrapped: &WrappedKey, object_key: &str) -> Result<DataKey, KeyError> {
        let cipher = self
            .keys
            .get(&wrapped.key_id)
            .ok_or_else(|| KeyError::UnknownKey(wrapped.key_id.clone()))?;
        let unwrap_error = || KeyError::Unwrap(wrapped.key_id.clone());
        if wrapped.bytes.len() <= NONCE_LEN {
            return Err(unwrap_error());
        }
        let (nonce, sealed) = wrapped.bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| unwrap_error())?;
        let plain = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: object_key.as_bytes(),
                },
            )
            .map_err(|_| unwrap_error())?;
        let key: [u8; 32] = plain.try_into().map_err(|_| unwrap_error())?;
        Ok(DataKey(key))
    }

    /// Re-wraps a data key under the current KEK (after a rotation); the object is untouched.
    pub fn rewrap(&self, wrapped: &WrappedKey, object_key: &str) -> Result<WrappedKey, KeyError> {
        Ok(self.wrap(&self.unwrap(wrapped, object_key)?, object_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_only_for_its_object() {
        let ring = Keyring::parse(&Keyring::generate_line("k1")).unwrap();
        let key = DataKey::generate();
        let wrapped = ring.wrap(&key, "f/p/c/1");
        assert_eq!(
            ring.unwrap(&wrapped, "f/p/c/1").unwrap().bytes(),
            key.bytes()
        );
        assert_eq!(
            ring.unwrap(&wrapped, "f/p/c/2").unwrap_err(),
            KeyError::Unwrap("k1".into())
        );
    }

    #[test]
    fn rotation_keeps_old_keys_readable_and_wraps_with_the_new_one() {
        let old = Keyring::generate_line("2025");
        let before = Keyring::parse(&old).unwrap();
        let key = DataKey::generate();
        let wrapped = before.wrap(&key, "o");
        let after =
            Keyring::parse(&format!("{}\n{old}\n", Keyring::generate_line("2026"))).unwrap();
        assert_eq!(after.unwrap(&wrapped, "o").unwrap().bytes(), key.bytes());
        let rewrapped = after.rewrap(&wrapped, "o").unwrap();
        assert_eq!(rewrapped.key_id, "2026");
        assert_eq!(after.unwrap(&rewrapped, "o").unwrap().bytes(), key.bytes());
    }

    #[test]
    fn malformed_keyrings_say_which_line() {
        assert_eq!(Keyring::parse("# nothing\n").err(), Some(KeyError::Empty));
        let short = Keyring::parse("a:AAAA").err().unwrap();
        assert!(short.to_string().contains("line 1") && short.to_string().contains("32 bytes"));
        let line = Keyring::generate_line("a");
        assert!(
            Keyring::parse(&format!("{line}\n{line}"))
                .err()
                .unwrap()
                .to_string()
                .contains("twice")
        );
        let forgotten = Keyring::parse(&Keyring::generate_line("b")).unwrap();
        let wrapped = Keyring::parse(&line)
            .unwrap()
            .wrap(&DataKey::generate(), "o");
        assert_eq!(
            forgotten.unwrap(&wrapped, "o").err(),
            Some(KeyError::UnknownKey("a".into()))
        );
    }
}
