//! Crypto-PAn: keyed, prefix-preserving IP address anonymization.
//!
//! The algorithm of J. Xu, J. Fan, M. Ammar and S. Moon, "Prefix-Preserving IP
//! Address Anonymization: Measurement-based Security Evaluation and a New
//! Cryptography-based Scheme", IEEE ICNP 2002. With a 256-bit key `K = k || p`,
//! `pad = AES_k(p)`; bit `i` of the output is bit `i` of the address XOR the
//! first bit of `AES_k(first i bits of the address || bits i.. of pad)`. Bit `i`
//! of the output therefore depends only on the first `i + 1` input bits: two
//! addresses sharing exactly an `n`-bit prefix share exactly an `n`-bit prefix
//! afterwards, and the map is a bijection. IPv4 addresses occupy the first 32
//! bits of the 128-bit block, as in the reference implementation, so the
//! outputs match other Crypto-PAn implementations (see the test vectors).
//!
//! No maintained pure-Rust crate implements it (the `cryptoPAn` crate needs
//! OpenSSL, which the static collector cannot link), so this is the published
//! algorithm over RustCrypto's `aes`.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};

/// A Crypto-PAn instance for one 32-byte key.
#[derive(Clone)]
pub struct CryptoPan {
    cipher: Aes128,
    pad: u128,
}

impl std::fmt::Debug for CryptoPan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("CryptoPan").finish_non_exhaustive()
    }
}

impl CryptoPan {
    /// Builds the anonymizer: `key[..16]` is the AES key, `key[16..]` the pad secret.
    pub fn new(key: &[u8; 32]) -> Self {
        let cipher = Aes128::new(GenericArray::from_slice(&key[..16]));
        let mut block = GenericArray::clone_from_slice(&key[16..]);
        cipher.encrypt_block(&mut block);
        let pad = u128::from_be_bytes(block.into());
        CryptoPan { cipher, pad }
    }

    fn first_bit(&self, input: u128) -> u128 {
        let mut block = GenericArray::from(input.to_be_bytes());
        self.cipher.encrypt_block(&mut block);
        u128::from(block[0] >> 7)
    }

    /// Anonymizes the top `bits` bits of `addr` (left-aligned in a u128).
    fn anonymize_bits(&self, addr: u128, bits: u32) -> u128 {
        let mut otp: u128 = 0;
        for pos in 0..bits {
            // The first `pos` bits of the address, the rest from the pad.
            let keep = if pos == 0 {
                0
            } else {
                u128::MAX << (128 - pos)
            };
            let input = (addr & keep) | (self.pad & !keep);
            otp |= self.first_bit(input) << (127 - pos);
        }
        addr ^ otp
    }

    /// Anonymizes an IPv4 address given as a big-endian u32.
    pub fn anonymize_v4(&self, addr: u32) -> u32 {
        (self.anonymize_bits(u128::from(addr) << 96, 32) >> 96) as u32
    }

    /// Anonymizes an IPv6 address given as a big-endian u128.
    pub fn anonymize_v6(&self, addr: u128) -> u128 {
        self.anonymize_bits(addr, 128)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const KEY: &[u8; 32] = b"32-char-str-for-AES-key-and-pad.";

    /// Vectors published with the yacryptopan implementation (same key).
    #[test]
    fn matches_published_vectors() {
        let c = CryptoPan::new(KEY);
        let v4 = Ipv4Addr::from(c.anonymize_v4(u32::from(Ipv4Addr::new(192, 0, 2, 1))));
        assert_eq!(v4, Ipv4Addr::new(192, 0, 125, 244));
        let v6: Ipv6Addr = "2001:db8::1".parse().expect("literal");
        let out = Ipv6Addr::from(c.anonymize_v6(u128::from(v6)));
        assert_eq!(
            out,
            "27fe:8bc7:fee:1e:1e1f:f0fe:f0e1:83fd"
                .parse::<Ipv6Addr>()
                .expect("literal")
        );
    }

    /// Vectors of the original Crypto-PAn distribution (sample_trace_raw.txt →
    /// sample_trace_sanitized.txt, key 21 34 23 141 ... of `sample.cpp`).
    #[test]
    fn matches_original_distribution_vectors() {
        let key: [u8; 32] = [
            21, 34, 23, 141, 51, 164, 207, 128, 19, 10, 91, 22, 73, 144, 125, 16, 216, 152, 143,
            131, 121, 121, 101, 39, 98, 87, 76, 45, 42, 132, 34, 2,
        ];
        let c = CryptoPan::new(&key);
        for (raw, anon) in [
            ("128.11.68.132", "135.242.180.132"),
            ("129.118.74.4", "134.136.186.123"),
            ("130.132.252.244", "133.68.164.234"),
            ("141.223.7.43", "141.167.8.160"),
        ] {
            let a: Ipv4Addr = raw.parse().expect("literal");
            let got = Ipv4Addr::from(c.anonymize_v4(u32::from(a)));
            assert_eq!(got.to_string(), anon, "{raw}");
        }
    }
}
