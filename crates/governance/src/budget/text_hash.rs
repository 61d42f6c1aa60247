//! The hash of a statement's text reported as `query_hash` in
//! `pwb.recent_decisions()`. Every governed statement is hashed, so it reads
//! the text eight bytes at a time (one multiply-rotate round per word, then a
//! final avalanche) rather than byte by byte. Stable across processes and
//! restarts; not persisted anywhere.

const K: u64 = 0x9e37_79b9_7f4a_7c15;
const SEED: u64 = 0x2545_f491_4f6c_dd1d;

fn round(hash: u64, word: u64) -> u64 {
    (hash ^ word).wrapping_mul(K).rotate_left(29)
}

/// The 64-bit hash of `text`, as a signed value (a SQL bigint).
pub fn query_text_hash(text: &[u8]) -> i64 {
    // Seeded away from 0, so that the empty text does not hash to the 0
    // that stands for "no text".
    let mut hash = (text.len() as u64 ^ SEED).wrapping_mul(K);
    let words = text.chunks_exact(8);
    let tail = words.remainder();
    for word in words {
        // Always 8 bytes; the fallback only spares a panic path.
        hash = round(hash, u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
    }
    if !tail.is_empty() {
        let mut last = [0u8; 8];
        for (to, from) in last.iter_mut().zip(tail) {
            *to = *from;
        }
        hash = round(hash, u64::from_le_bytes(last));
    }
    // The finaliser of MurmurHash3 (fmix64): every input bit reaches every
    // output bit.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    i64::from_ne_bytes(hash.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const EMPTY: i64 = -2_044_995_666_551_291_697;
    const ABC: i64 = 4_075_739_413_026_860_570;

    #[test]
    fn stable_values() {
        // Fixed values: the hash must not change between builds or machines,
        // or decisions recorded before and after an upgrade stop matching.
        assert_eq!(query_text_hash(b""), EMPTY);
        assert_eq!(
            query_text_hash(b"INSERT INTO t VALUES (1)"),
            query_text_hash(b"INSERT INTO t VALUES (1)")
        );
        assert_eq!(query_text_hash(b"abc"), ABC);
    }

    #[test]
    fn every_byte_and_the_length_count() {
        let text = b"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 42";
        let base = query_text_hash(text);
        for i in 0..text.len() {
            let mut changed = text.to_vec();
            changed[i] ^= 1;
            assert_ne!(query_text_hash(&changed), base, "byte {i}");
        }
        assert_ne!(query_text_hash(b"ab"), query_text_hash(b"ab\0"));
        assert_ne!(query_text_hash(b"abcdefgh"), query_text_hash(b"abcdefgh\0"));
    }

    #[test]
    fn no_collisions_among_similar_statements() {
        let hashes: HashSet<i64> = (0..100_000)
            .map(|i| query_text_hash(format!("INSERT INTO t VALUES ({i})").as_bytes()))
            .collect();
        assert_eq!(hashes.len(), 100_000);
    }
}
