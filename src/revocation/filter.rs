//! A split-block Bloom filter: the fast "certainly not revoked" answer in front of the tables.
//!
//! Each key touches one 32-byte block (8 × 32-bit words, one bit per word), so a lookup costs one
//! cache line however large the filter is. Bits are set with atomic stores (writers are
//! serialised by the table's writer lock), so writers add keys while readers look, without
//! locks. Bits are never cleared: removing keys means building a new filter and swapping it in
//! (see `table.rs`). A false positive only sends the reader to the
//! exact table; a false negative cannot happen for a key added before the lookup began.

use std::sync::atomic::{AtomicU32, Ordering};

/// Odd multipliers that spread one 32-bit hash into 8 bit positions (from the Parquet
/// split-block Bloom filter specification).
const SALT: [u32; 8] = [
    0x47b6137b, 0x44974d91, 0x8824ad5b, 0xa2b7289d, 0x705495c7, 0x2df1424b, 0x9efc4947, 0x5c6bfb31,
];

/// Keys per block at 16 bits per key.
const KEYS_PER_BLOCK: usize = 256 / 16;

#[repr(align(32))]
#[derive(Default)]
struct Block([AtomicU32; 8]);

/// The filter. Sized for a number of keys at about 16 bits per key (false-positive rate about
/// 0.1% at that load), so 16 keys share one 256-bit block.
pub(crate) struct BlockFilter {
    blocks: Box<[Block]>,
    mask: u64,
}

impl BlockFilter {
    /// A filter with room for about `keys` keys (at least 4096).
    pub(crate) fn with_capacity(keys: usize) -> BlockFilter {
        // 16 bits per key: a 256-bit block holds 16 keys.
        let blocks = keys.max(4096).div_ceil(KEYS_PER_BLOCK).next_power_of_two();
        BlockFilter {
            blocks: (0..blocks).map(|_| Block::default()).collect(),
            mask: blocks as u64 - 1,
        }
    }

    /// How many keys this filter was sized for.
    pub(crate) fn capacity(&self) -> usize {
        self.blocks.len() * KEYS_PER_BLOCK
    }

    /// Bytes of memory used by the bit array.
    pub(crate) fn bytes(&self) -> usize {
        self.blocks.len() * std::mem::size_of::<Block>()
    }

    #[inline]
    fn locate(&self, hash: u64) -> (&Block, u32) {
        // High bits pick the block, low 32 bits pick the bits inside it.
        let block = &self.blocks[((hash >> 32) & self.mask) as usize];
        (block, hash as u32)
    }

    /// Adds a key by its 64-bit hash, for a caller that holds the table's writer lock (every
    /// writer does): with writers serialised, a plain load and store per word set the bits a
    /// `fetch_or` would, at a fraction of the cost (a bulk load inserts millions of keys);
    /// readers only ever load.
    pub(crate) fn insert(&self, hash: u64) {
        let (block, h) = self.locate(hash);
        for (word, salt) in block.0.iter().zip(SALT) {
            let bit = 1 << (h.wrapping_mul(salt) >> 27);
            let w = word.load(Ordering::Relaxed);
            if w & bit == 0 {
                word.store(w | bit, Ordering::Release);
            }
        }
    }

    /// `false` means the key was certainly never inserted.
    #[inline]
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        let (block, h) = self.locate(hash);
        let mut all = true;
        for (word, salt) in block.0.iter().zip(SALT) {
            all &= word.load(Ordering::Acquire) & (1 << (h.wrapping_mul(salt) >> 27)) != 0;
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(i: u64) -> u64 {
        // splitmix64, to turn a counter into well-spread hashes.
        let mut z = i.wrapping_add(0x9e3779b97f4a7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }

    #[test]
    fn every_inserted_key_is_reported_present() {
        let f = BlockFilter::with_capacity(10_000);
        for i in 0..10_000 {
            f.insert(mix(i));
        }
        assert!((0..10_000).all(|i| f.may_contain(mix(i))));
    }

    #[test]
    fn false_positive_rate_at_capacity_is_small() {
        let f = BlockFilter::with_capacity(100_000);
        for i in 0..f.capacity() as u64 {
            f.insert(mix(i));
        }
        let probes = 200_000u64;
        let fp = (0..probes)
            .filter(|i| f.may_contain(mix(i + 1_000_000_000)))
            .count();
        // About 0.1% expected at 16 bits per key; allow generous noise.
        assert!(fp < (probes / 200) as usize, "false positives: {fp}");
    }

    #[test]
    fn empty_filter_contains_nothing() {
        let f = BlockFilter::with_capacity(0);
        assert!((0..1000).all(|i| !f.may_contain(mix(i))));
    }
}
