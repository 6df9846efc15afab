//! Payload encryption: everything the engine puts in workflow history (requests with their
//! configs, reports, progress, error messages) is encrypted with AES-256-GCM before it leaves
//! the process, so a Temporal server the team does not run never sees it in clear.
//!
//! Keys come from the environment, never from history:
//! - `BATCH_ORCHESTRA_ENCRYPTION_KEYS`: `id=base64key` pairs separated by commas, or
//! - `BATCH_ORCHESTRA_ENCRYPTION_KEY_FILE`: a file with one `id=base64key` a line (`#`
//!   comments and blank lines allowed).
//!
//! Each key is 32 random bytes in standard base64 (`openssl rand -base64 32`). The first key
//! encrypts; every key decrypts, so after a rotation (a new key put first) jobs started
//! under the old key stay readable. Each payload names its key id in its metadata.
//!
//! Workers and clients that connect with [`TemporalSettings`](crate::client::TemporalSettings)
//! (the CLI, [`connect_from_env`](crate::client::connect_from_env)) use the keys when the
//! variables are set. Temporal's web UI and CLI read encrypted histories through
//! `batch-orchestra codec-server` ([`server`]).
//!
//! ```
//! use batch_orchestra::encryption::Keyring;
//!
//! let keys = Keyring::parse("2026-12=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
//! assert_eq!(keys.current_id(), "2026-12");
//! ```

pub mod server;

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use futures::FutureExt;
use futures::future::BoxFuture;
use prost::Message;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use temporalio_common::data_converters::{
    DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConversionError, PayloadConverter,
    SerializationContextData,
};
use temporalio_common::protos::temporal::api::common::v1::Payload;

/// The variable holding the keys inline.
pub const KEYS_ENV: &str = "BATCH_ORCHESTRA_ENCRYPTION_KEYS";
/// The variable naming a file of keys.
pub const KEY_FILE_ENV: &str = "BATCH_ORCHESTRA_ENCRYPTION_KEY_FILE";
/// The `encoding` metadata of an encrypted payload.
pub const ENCRYPTED_ENCODING: &str = "binary/encrypted";
/// The metadata key naming the key that encrypted a payload.
pub const KEY_ID_METADATA: &str = "encryption-key-id";

/// A key, or the keys, could not be used: the message says which and why, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// The encryption keys of a process: the first encrypts, all decrypt. Its `Debug` output
/// shows the key ids only.
#[derive(Clone)]
pub struct Keyring {
    current: String,
    keys: BTreeMap<String, Arc<LessSafeKey>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// A keyring encrypting with `key` (32 bytes) under the id `id`.
    pub fn new(id: impl Into<String>, key: &[u8]) -> Result<Self, KeyError> {
        let id = id.into();
        let mut keys = BTreeMap::new();
        keys.insert(id.clone(), Arc::new(aes_key(&id, key)?));
        Ok(Self { current: id, keys })
    }

    /// Adds an older key, used to decrypt what it encrypted (after a rotation).
    pub fn with_old_key(mut self, id: impl Into<String>, key: &[u8]) -> Result<Self, KeyError> {
        let id = id.into();
        let key = Arc::new(aes_key(&id, key)?);
        if self.keys.insert(id.clone(), key).is_some() {
            return Err(KeyError(format!("the key id `{id}` is given twice")));
        }
        Ok(self)
    }

    /// Parses `id=base64key` entries separated by commas or lines; the first encrypts.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut ring: Option<Self> = None;
        let entries = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (n, entry) in entries.enumerate() {
            let Some((id, encoded)) = entry.split_once('=') else {
                return Err(KeyError(format!(
                    "encryption key entry {} is not `id=base64key`",
                    n + 1
                )));
            };
            let id = id.trim();
            if id.is_empty() {
                return Err(KeyError(format!(
                    "encryption key entry {} has no id",
                    n + 1
                )));
            }
            let key = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| KeyError(format!("encryption key `{id}` is not base64")))?;
            ring = Some(match ring {
                None => Self::new(id, &key)?,
                Some(r) => r.with_old_key(id, &key)?,
            });
        }
        ring.ok_or_else(|| KeyError("no encryption key given".into()))
    }

    /// The keys from [`KEYS_ENV`] or the file [`KEY_FILE_ENV`] names, read with `var`;
    /// `None` when neither is set.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, KeyError> {
        if let Some(text) = var(KEYS_ENV) {
            return Self::parse(&text)
                .map(Some)
                .map_err(|e| KeyError(format!("{KEYS_ENV}: {e}")));
        }
        if let Some(path) = var(KEY_FILE_ENV) {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| KeyError(format!("{KEY_FILE_ENV}: cannot read `{path}`: {e}")))?;
            return Self::parse(&text)
                .map(Some)
                .map_err(|e| KeyError(format!("{KEY_FILE_ENV} (`{path}`): {e}")));
        }
        Ok(None)
    }

    /// The keys from the process's environment (see [`from_vars`](Self::from_vars)).
    pub fn from_env() -> Result<Option<Self>, KeyError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The id of the key that encrypts.
    pub fn current_id(&self) -> &str {
        &self.current
    }

    /// Encrypts a payload whole (its metadata and data) under the current key.
    pub fn encrypt(&self, payload: &Payload) -> Result<Payload, KeyError> {
        let key = &self.keys[&self.current];
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyError("no random numbers for a nonce".into()))?;
        let mut sealed = payload.encode_to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(self.current.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| KeyError("encryption failed".into()))?;
        let mut data = Vec::with_capacity(NONCE_LEN + sealed.len());
        data.extend_from_slice(&nonce);
        data.extend_from_slice(&sealed);
        let mut metadata = std::collections::HashMap::new();
        metadata.insert(
            "encoding".to_owned(),
            ENCRYPTED_ENCODING.as_bytes().to_vec(),
        );
        metadata.insert(KEY_ID_METADATA.to_owned(), self.current.as_bytes().to_vec());
        Ok(Payload {
            metadata,
            data,
            ..Default::default()
        })
    }

    /// Decrypts a payload this or an older key encrypted; a payload that is not encrypted
    /// is returned as it is.
    pub fn decrypt(&self, payload: Payload) -> Result<Payload, KeyError> {
        if payload.metadata.get("encoding").map(Vec::as_slice)
            != Some(ENCRYPTED_ENCODING.as_bytes())
        {
            return Ok(payload);
        }
        let id = payload
            .metadata
            .get(KEY_ID_METADATA)
            .map(|id| String::from_utf8_lossy(id).into_owned())
            .ok_or_else(|| KeyError("an encrypted payload names no key id".into()))?;
        let key = self.keys.get(&id).ok_or_else(|| {
            KeyError(format!(
                "a payload was encrypted with key `{id}`, which this process does not have (it has {}); add that key to {KEYS_ENV}",
                self.ids()
            ))
        })?;
        if payload.data.len() < NONCE_LEN {
            return Err(KeyError(format!(
                "an encrypted payload (key `{id}`) is truncated"
            )));
        }
        let (nonce, sealed) = payload.data.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| KeyError("an encrypted payload has a bad nonce".into()))?;
        let mut sealed = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(id.as_bytes()), &mut sealed)
            .map_err(|_| {
                KeyError(format!(
                    "a payload encrypted with key `{id}` does not decrypt with the key of that id here: the key differs, or the payload was altered"
                ))
            })?;
        Payload::decode(&*plain).map_err(|e| {
            KeyError(format!(
                "a decrypted payload (key `{id}`) does not parse: {e}"
            ))
        })
    }

    fn ids(&self) -> String {
        self.keys
            .keys()
            .map(|id| format!("`{id}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The data converter for clients and workers: JSON payloads encrypted with these keys,
    /// failure messages and stack traces moved into encrypted attributes.
    pub fn data_converter(&self) -> DataConverter {
        DataConverter::new(
            PayloadConverter::default(),
            DefaultFailureConverter::new(true),
            EncryptionCodec { keys: self.clone() },
        )
    }
}

fn aes_key(id: &str, key: &[u8]) -> Result<LessSafeKey, KeyError> {
    if key.len() != 32 {
        return Err(KeyError(format!(
            "encryption key `{id}` has {} bytes; AES-256 takes 32 (make one with `openssl rand -base64 32`)",
            key.len()
        )));
    }
    let key = UnboundKey::new(&AES_256_GCM, key)
        .map_err(|_| KeyError(format!("encryption key `{id}` is not an AES-256 key")))?;
    Ok(LessSafeKey::new(key))
}

/// The payload codec of a [`Keyring`].
pub struct EncryptionCodec {
    keys: Keyring,
}

impl PayloadCodec for EncryptionCodec {
    fn encode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let result = payloads
            .iter()
            .map(|p| self.keys.encrypt(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PayloadConversionError::EncodingError(Box::new(e)));
        futures::future::ready(result).boxed()
    }

    fn decode(
        &self,
        _context: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let result = payloads
            .into_iter()
            .map(|p| self.keys.decrypt(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PayloadConversionError::EncodingError(Box::new(e)));
        futures::future::ready(result).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    }

    fn json(text: &str) -> Payload {
        let mut metadata = std::collections::HashMap::new();
        metadata.insert("encoding".to_owned(), b"json/plain".to_vec());
        Payload {
            metadata,
            data: text.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_payload_round_trips_and_hides_its_content() {
        let keys = Keyring::parse(&format!("k1={}", key(1))).unwrap();
        let plain = json(r#"{"path":"/data/people.csv"}"#);
        let sealed = keys.encrypt(&plain).unwrap();
        assert!(!String::from_utf8_lossy(&sealed.data).contains("people"));
        assert_eq!(sealed.metadata[KEY_ID_METADATA], b"k1");
        assert_eq!(keys.decrypt(sealed).unwrap(), plain);
    }

    #[test]
    fn after_a_rotation_old_payloads_still_decrypt() {
        let old = Keyring::parse(&format!("k1={}", key(1))).unwrap();
        let sealed = old.encrypt(&json("1")).unwrap();
        let rotated = Keyring::parse(&format!("k2={},k1={}", key(2), key(1))).unwrap();
        assert_eq!(rotated.current_id(), "k2");
        assert_eq!(rotated.decrypt(sealed).unwrap(), json("1"));
        assert_eq!(
            rotated.encrypt(&json("2")).unwrap().metadata[KEY_ID_METADATA],
            b"k2"
        );
    }

    #[test]
    fn a_missing_or_wrong_key_is_a_clear_error() {
        let sealed = Keyring::parse(&format!("k1={}", key(1)))
            .unwrap()
            .encrypt(&json("1"))
            .unwrap();
        let other = Keyring::parse(&format!("k2={}", key(2))).unwrap();
        let err = other.decrypt(sealed.clone()).unwrap_err().to_string();
        assert!(
            err.contains("encrypted with key `k1`, which this process does not have (it has `k2`)"),
            "{err}"
        );
        let impostor = Keyring::parse(&format!("k1={}", key(3))).unwrap();
        let err = impostor.decrypt(sealed).unwrap_err().to_string();
        assert!(
            err.contains("does not decrypt with the key of that id here"),
            "{err}"
        );
    }

    #[test]
    fn bad_keys_are_refused_without_showing_them() {
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        let err = Keyring::parse(&format!("k={short}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("has 16 bytes; AES-256 takes 32"), "{err}");
        assert!(!err.contains(&short));
        assert!(Keyring::parse("k=not base64!").is_err());
        assert!(Keyring::parse("nokey").is_err());
        assert!(
            Keyring::parse(&format!("k={},k={}", key(1), key(2))).is_err(),
            "an id twice"
        );
        assert_eq!(
            Keyring::from_vars(|_| None).unwrap().map(|k| k.current),
            None
        );
        let debug = format!("{:?}", Keyring::parse(&format!("k={}", key(1))).unwrap());
        assert!(!debug.contains(&key(1)), "{debug}");
    }

    #[test]
    fn a_plain_payload_passes_through_decryption() {
        let keys = Keyring::parse(&format!("k1={}", key(1))).unwrap();
        assert_eq!(keys.decrypt(json("1")).unwrap(), json("1"));
    }
}
