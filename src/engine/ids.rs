//! The hasher of the map from a rule's identity to its place in the
//! engine's table. Identities are handed out one by one (`Engine::next_id`)
//! and never come from outside, so SipHash's defence against chosen keys
//! buys nothing, and it is the largest part of handing the engine an event
//! (every beat is one): a multiply by an odd constant spreads consecutive
//! identities over the low bits (a bijection) and mixes the high ones.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(K);
    }
}

pub type BuildIdHasher = BuildHasherDefault<IdHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn consecutive_identities_take_distinct_low_bits() {
        let b = BuildIdHasher::default();
        let mut low: Vec<u64> = (1..=1024u64).map(|id| b.hash_one(id) & 1023).collect();
        low.sort_unstable();
        low.dedup();
        assert_eq!(low.len(), 1024);
    }
}
