//! The simulated card's deterministic payload pattern.
//!
//! Both simulated cards (the userspace one in `dmarec` and the one in the
//! kernel driver) fill buffer `card_seq` of `channel` with this pattern, so a
//! verifier can recompute every byte. Word `i` (little-endian u64) is
//! `seed ^ (i * GOLDEN)` with `seed = splitmix64(card_seq ^ channel << 48 ^
//! SALT)`: one multiply and one xor per 8 bytes, and a misplaced, stale or
//! shifted word never matches.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const SALT: u64 = 0xD1B5_4A32_D192_ED03;

fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn seed(channel: u16, card_seq: u64) -> u64 {
    splitmix64(card_seq ^ ((channel as u64) << 48) ^ SALT)
}

/// Fills `payload` (length a multiple of 8) with the pattern.
pub fn fill(payload: &mut [u8], channel: u16, card_seq: u64) {
    assert!(
        payload.len().is_multiple_of(8),
        "pattern payload length must be a multiple of 8"
    );
    let s = seed(channel, card_seq);
    for (i, word) in payload.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&(s ^ (i as u64).wrapping_mul(GOLDEN)).to_le_bytes());
    }
}

/// Checks `payload` against the pattern; returns the byte offset of the
/// first 8-byte word that differs, or `None` if all match. A length that is
/// not a multiple of 8 (an interleaved buffer's whole frames, e.g. 341
/// frames of 12 bytes) ends in a partial word: its bytes are the pattern
/// word's first (little-endian) bytes.
pub fn first_mismatch(payload: &[u8], channel: u16, card_seq: u64) -> Option<usize> {
    let whole = payload.len() - payload.len() % 8;
    let (payload, tail) = payload.split_at(whole);
    let s = seed(channel, card_seq);
    if !tail.is_empty() {
        let want = (s ^ ((whole / 8) as u64).wrapping_mul(GOLDEN)).to_le_bytes();
        if tail != &want[..tail.len()] {
            return first_mismatch(payload, channel, card_seq).or(Some(whole));
        }
    }
    // Compare wide first (fast path), locate the word only on failure.
    let all_ok = payload
        .chunks_exact(8)
        .enumerate()
        .fold(0u64, |acc, (i, w)| {
            acc | (u64::from_le_bytes(w.try_into().unwrap()) ^ s ^ (i as u64).wrapping_mul(GOLDEN))
        })
        == 0;
    if all_ok {
        return None;
    }
    payload.chunks_exact(8).enumerate().find_map(|(i, w)| {
        let want = s ^ (i as u64).wrapping_mul(GOLDEN);
        (u64::from_le_bytes(w.try_into().unwrap()) != want).then_some(i * 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(payload: &[u8]) -> Vec<u64> {
        payload
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn known_answers_as_literal_words() {
        // Literal values, not derived from this file's constants: a change
        // of the salt, the mixing or the word formula fails here. The same
        // words are checked in the in-kernel card's test
        // (tests/qemu/dmarec-test.c, pattern_selftest).
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        let mut p = [0u8; 24];
        fill(&mut p, 0, 0);
        assert_eq!(
            words(&p),
            [
                0x2D0F_28C7_E7E7_86B2,
                0xB338_517E_98AD_FAA7,
                0x1161_DBB5_1973_7E98
            ]
        );
        fill(&mut p, 3, 77);
        assert_eq!(
            words(&p),
            [
                0xAF9F_C545_AB9D_900E,
                0x31A8_BCFC_D4D7_EC1B,
                0x93F1_3637_5509_6824
            ]
        );
        assert_eq!(first_mismatch(&p, 3, 77), None);
    }

    #[test]
    fn detects_every_changed_word_and_neighbours() {
        let mut p = vec![0u8; 4096];
        fill(&mut p, 3, 77);
        assert_eq!(first_mismatch(&p, 3, 77), None);
        assert_eq!(first_mismatch(&p, 3, 78), Some(0));
        assert_eq!(first_mismatch(&p, 4, 77), Some(0));
        p[1234] ^= 0x10;
        assert_eq!(first_mismatch(&p, 3, 77), Some(1232));
    }

    #[test]
    fn a_partial_last_word_is_the_pattern_word_prefix() {
        let mut p = vec![0u8; 4096];
        fill(&mut p, 2, 9);
        // 341 interleaved frames of 12 bytes: 4092 bytes, half a last word.
        assert_eq!(first_mismatch(&p[..4092], 2, 9), None);
        assert_eq!(first_mismatch(&p[..4089], 2, 9), None);
        p[4090] ^= 1;
        assert_eq!(first_mismatch(&p[..4092], 2, 9), Some(4088));
        assert_eq!(first_mismatch(&p[..4090], 2, 9), None);
        // An earlier difference is reported first.
        p[8] ^= 1;
        assert_eq!(first_mismatch(&p[..4092], 2, 9), Some(8));
    }
}
