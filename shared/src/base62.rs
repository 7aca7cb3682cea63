//! Base62 (`0-9A-Za-z`): the only alphabet key ids, secrets and checksums use, so a key survives
//! double-click selection, URLs and shell quoting, and `_` stays free as the field separator.

use rand_core::CryptoRng;

pub(crate) const ALPHABET: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Characters needed to write any `u32` in base62 (62^6 > 2^32).
pub(crate) const U32_WIDTH: usize = 6;

/// Whether every byte is base62. Deliberately not short-circuiting, so the check runs as straight
/// table lookups instead of a branch per byte (it runs on every request).
pub(crate) fn all_base62(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(0u8, |bad, &b| bad | NOT_BASE62[usize::from(b)])
        == 0
}

const NOT_BASE62: [u8; 256] = {
    let mut table = [1u8; 256];
    let mut byte = 0;
    while byte < 256 {
        if (byte as u8).is_ascii_alphanumeric() {
            table[byte] = 0;
        }
        byte += 1;
    }
    table
};

fn digit_value(byte: u8) -> Option<u32> {
    match byte {
        b'0'..=b'9' => Some(u32::from(byte - b'0')),
        b'A'..=b'Z' => Some(u32::from(byte - b'A') + 10),
        b'a'..=b'z' => Some(u32::from(byte - b'a') + 36),
        _ => None,
    }
}

/// Writes `value` as exactly [`U32_WIDTH`] digits, most significant first.
pub(crate) fn encode_u32(mut value: u32) -> [u8; U32_WIDTH] {
    let mut out = [b'0'; U32_WIDTH];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    out
}

/// Reads [`U32_WIDTH`] digits; `None` on a non-base62 byte or a value above `u32::MAX`.
pub(crate) fn decode_u32(digits: &[u8; U32_WIDTH]) -> Option<u32> {
    let mut value: u64 = 0;
    for &byte in digits {
        value = value * 62 + u64::from(digit_value(byte)?);
    }
    u32::try_from(value).ok()
}

/// Fills `out` with uniformly random base62 characters. Rejection sampling keeps every character
/// at exactly log2(62) bits: bytes >= 248 (= 4 * 62) are drawn again instead of folded with a bias.
pub(crate) fn fill_random<R: CryptoRng + ?Sized>(rng: &mut R, out: &mut [u8]) {
    let mut pool = [0u8; 64];
    let mut used = pool.len();
    for slot in out.iter_mut() {
        loop {
            if used == pool.len() {
                rng.fill_bytes(&mut pool);
                used = 0;
            }
            let byte = pool[used];
            used += 1;
            if byte < 248 {
                *slot = ALPHABET[usize::from(byte % 62)];
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u32_round_trips_at_the_edges() {
        for value in [0, 1, 61, 62, 3_843, u32::MAX - 1, u32::MAX] {
            assert_eq!(decode_u32(&encode_u32(value)), Some(value), "{value}");
        }
        assert_eq!(&encode_u32(0), b"000000");
        assert_eq!(&encode_u32(u32::MAX), b"4gfFC3");
    }

    #[test]
    fn all_base62_agrees_with_the_per_byte_check() {
        for byte in 0..=255u8 {
            assert_eq!(
                all_base62(&[b'a', byte, b'Z']),
                byte.is_ascii_alphanumeric(),
                "{byte}"
            );
        }
        assert!(all_base62(b""));
    }

    #[test]
    fn decode_rejects_overflow_and_foreign_bytes() {
        assert_eq!(decode_u32(b"4gfFC4"), None, "u32::MAX + 1");
        assert_eq!(decode_u32(b"zzzzzz"), None);
        assert_eq!(decode_u32(b"00000_"), None);
        assert_eq!(decode_u32(b"00000\xff"), None);
    }

    #[test]
    fn random_characters_cover_the_alphabet_evenly() {
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng;
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let mut buf = vec![0u8; 62 * 2_000];
        fill_random(&mut rng, &mut buf);
        let mut counts = [0u32; 62];
        for byte in &buf {
            counts[digit_value(*byte).expect("base62") as usize] += 1;
        }
        // Each character expects 2,000 hits. Folding bytes 248..=255 instead of redrawing them
        // would give characters 0-7 a 25% surplus (~2,500), far outside this 15% band.
        for (index, count) in counts.iter().enumerate() {
            assert!((1_700..=2_300).contains(count), "char {index}: {count}");
        }
    }
}
