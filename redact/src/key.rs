//! The redaction key: one secret from which every mapping is derived, so the
//! same key gives the same redaction on every bundle (a multi-node analysis
//! still joins).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::RedactError;

type HmacSha256 = Hmac<Sha256>;

/// A redaction key (32 bytes).
#[derive(Clone)]
pub struct Key {
    bytes: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.fingerprint())
    }
}

impl Key {
    /// A fresh random key.
    pub fn random() -> Result<Self, RedactError> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes)
            .map_err(|e| RedactError::Key(format!("no random source: {e}")))?;
        Ok(Key { bytes })
    }

    /// A key from raw bytes (tests, and keys read back from a map).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Key { bytes }
    }

    /// Parses a key file: 64 hex digits (surrounding whitespace ignored), or at
    /// least 32 raw bytes (hashed down, so `head -c 32 /dev/urandom` works).
    pub fn parse(content: &[u8]) -> Result<Self, RedactError> {
        let text = String::from_utf8_lossy(content);
        let trimmed = text.trim();
        if trimmed.len() == 64
            && let Ok(v) = hex::decode(trimmed)
        {
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(&v);
            return Ok(Key { bytes });
        }
        if content.len() < 32 {
            return Err(RedactError::Key(format!(
                "a key file holds 64 hex digits or at least 32 bytes, this one has {} bytes",
                content.len()
            )));
        }
        let mut mac = HmacSha256::new_from_slice(b"netsnap-redact key file")
            .map_err(|e| RedactError::Key(e.to_string()))?;
        mac.update(content);
        Ok(Key {
            bytes: mac.finalize().into_bytes().into(),
        })
    }

    /// The key as 64 hex digits (what `--key` files and maps hold).
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// HMAC-SHA256 of `data` under a sub-key for `purpose`.
    pub fn derive(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length: this cannot fail.
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.bytes) else {
            return [0u8; 32];
        };
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// The Crypto-PAn key (AES key + pad secret).
    pub fn cryptopan_key(&self) -> [u8; 32] {
        self.derive("cryptopan", b"")
    }

    /// A short public identifier of the key: recorded in the manifest so a
    /// second redaction with the same key is recognized, and says nothing of
    /// the key itself.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.derive("fingerprint", b"")[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_and_raw_keys() {
        let hex_key = Key::parse(format!("{}\n", "ab".repeat(32)).as_bytes()).expect("hex");
        assert_eq!(hex_key.to_hex(), "ab".repeat(32));
        let raw = Key::parse(&[1u8; 40]).expect("raw");
        assert_ne!(raw.to_hex(), hex::encode([1u8; 32]));
        assert!(Key::parse(b"short").is_err());
        assert_ne!(hex_key.fingerprint(), raw.fingerprint());
    }
}
