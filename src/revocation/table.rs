//! The compact expiring table behind the in-process revocation list.
//!
//! Why not moka: at 1,000,000 entries a moka cache of 16-byte keys with per-entry expiry took
//! about 369 bytes per entry and 1.3–1.9 µs for a lookup of a random key, while a request must
//! check two lists in well under 100 ns. This table stores a revoked session id in 20 bytes
//! (16-byte key, 32-bit expiry in seconds) inside a `hashbrown::HashTable`, and puts a
//! [`BlockFilter`] in front so the common answer — "not revoked" — costs one hash and one cache
//! line. The benchmark `revocation/*` and the README record the measurements.
//!
//! Concurrency: readers never take a lock a writer holds for long. They check the filter
//! (lock-free), and only on a filter hit take a read lock on one of 16 shards. Writers are
//! serialised by one mutex that readers never touch; each write sets the filter bits *before*
//! inserting into the shard, so a reader that finds the entry also finds the bits. Purging
//! expired entries rebuilds the filter (bits cannot be cleared) and swaps it in atomically.
//!
//! Entries are never evicted for capacity: an entry leaves only when it has expired, so a live
//! revocation is never lost. Expiry is checked on lookup too, so purge timing never changes an
//! answer, only memory.

use std::hash::BuildHasher;

use arc_swap::ArcSwap;
use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::filter::BlockFilter;

const SHARDS: usize = 16;

/// A table value that knows when it stops mattering.
pub(crate) trait Expiring {
    /// Unix seconds after which the entry can be dropped.
    fn expires_at_secs(&self) -> u64;
}

struct Shard<V> {
    // Keys are stored next to values so the table can rehash without outside help.
    entries: HashTable<([u8; 16], V)>,
}

struct WriterState {
    /// Lazy purging: the next time a write may sweep expired entries.
    next_purge_secs: u64,
}

/// A lookup begun by [`ExpiringTable::probe`]: the key's hash and the filter it must pass.
pub(crate) struct Probe<'a, V> {
    table: &'a ExpiringTable<V>,
    key: &'a [u8; 16],
    hash: u64,
    filter: arc_swap::Guard<Arc<BlockFilter>>,
}

impl<V: Expiring> Probe<'_, V> {
    /// Reads the filter: `false` means the key is certainly not in the table.
    #[inline]
    pub(crate) fn may_contain(&self) -> bool {
        self.filter.may_contain(self.hash)
    }

    /// The exact answer, from the key's shard: `f` sees the value if present and unexpired at
    /// `now_secs`. Meant for keys the filter let through.
    #[inline]
    pub(crate) fn get<R>(self, now_secs: u64, f: impl FnOnce(&V) -> R) -> Option<R> {
        let shard = self.table.shard(self.hash).read();
        shard
            .entries
            .find(self.hash, |(k, _)| k == self.key)
            .filter(|(_, v)| v.expires_at_secs() >= now_secs)
            .map(|(_, v)| f(v))
    }
}

/// A concurrent map from 16-byte keys to expiring values.
pub(crate) struct ExpiringTable<V> {
    hasher: foldhash::fast::RandomState,
    shards: Box<[RwLock<Shard<V>>]>,
    filter: ArcSwap<BlockFilter>,
    // Serialises writers (insert, purge, filter rebuild); readers never take it.
    writer: Mutex<WriterState>,
    len: AtomicUsize,
    purge_every_secs: u64,
}

impl<V: Expiring> ExpiringTable<V> {
    /// An empty table that sweeps expired entries at most every `purge_every_secs` on writes.
    pub(crate) fn new(purge_every_secs: u64) -> ExpiringTable<V> {
        ExpiringTable {
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS)
                .map(|_| {
                    RwLock::new(Shard {
                        entries: HashTable::new(),
                    })
                })
                .collect(),
            filter: ArcSwap::from_pointee(BlockFilter::with_capacity(0)),
            writer: Mutex::new(WriterState { next_purge_secs: 0 }),
            len: AtomicUsize::new(0),
            purge_every_secs,
        }
    }

    #[inline]
    fn hash(&self, key: &[u8; 16]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn shard(&self, hash: u64) -> &RwLock<Shard<V>> {
        // Bits 40..44: disjoint from the low bits hashbrown uses for buckets and the top 7 bits
        // it uses for tags.
        &self.shards[((hash >> 40) as usize) & (SHARDS - 1)]
    }

    /// Looks a key up; `f` sees the value if present and unexpired at `now_secs`.
    #[inline]
    pub(crate) fn get<R>(
        &self,
        key: &[u8; 16],
        now_secs: u64,
        f: impl FnOnce(&V) -> R,
    ) -> Option<R> {
        let probe = self.probe(key);
        if !probe.may_contain() {
            return None;
        }
        probe.get(now_secs, f)
    }

    /// Starts a lookup: hashes the key and loads the current filter, without reading it yet.
    ///
    /// Loading the filter is a full memory barrier (arc-swap's hazard slot is taken with a
    /// SeqCst swap), so two `get`s in a row wait for the first filter's cache miss before the
    /// second can start. A caller checking several tables probes all of them first, then reads
    /// every filter, and the misses overlap.
    #[inline]
    pub(crate) fn probe<'a>(&'a self, key: &'a [u8; 16]) -> Probe<'a, V> {
        Probe {
            table: self,
            key,
            hash: self.hash(key),
            filter: self.filter.load(),
        }
    }

    /// Inserts or updates the entry for `key`: `merge` receives the current value (if any) and
    /// returns the new one.
    pub(crate) fn upsert(&self, key: [u8; 16], now_secs: u64, merge: impl FnOnce(Option<V>) -> V) {
        self.upsert_many(now_secs, [(key, merge)], |old, merge| merge(old));
    }

    /// Inserts or updates many entries under one writer lock: `merge` receives the current value
    /// (if any) and the item's payload, and returns the new value. Replaying a stream applies
    /// tens of thousands of events at once; taking the writer lock, checking the purge and
    /// loading the filter once per batch instead of once per entry is what makes that cheap.
    /// Readers are unaffected: they never take the writer lock, and each entry still takes its
    /// shard's lock on its own, so a reader waits for one insert at most.
    pub(crate) fn upsert_many<X>(
        &self,
        now_secs: u64,
        items: impl IntoIterator<Item = ([u8; 16], X)>,
        mut merge: impl FnMut(Option<V>, X) -> V,
    ) {
        let mut w = self.writer.lock();
        if now_secs >= w.next_purge_secs {
            self.purge_locked(now_secs);
            w.next_purge_secs = now_secs.saturating_add(self.purge_every_secs);
        }
        let mut filter = self.filter.load_full();
        for (key, x) in items {
            let hash = self.hash(&key);
            // Grow the filter before it gets crowded.
            let len = self.len.load(Ordering::Relaxed);
            if len + 1 > filter.capacity() {
                self.rebuild_filter_locked(2 * (len + 1));
                filter = self.filter.load_full();
            }
            // Filter first: a reader that sees the entry must also see its bits.
            filter.insert(hash);
            let mut shard = self.shard(hash).write();
            // One probe for both cases (a snapshot load inserts millions of new keys).
            match shard
                .entries
                .entry(hash, |(k, _)| *k == key, |(k, _)| self.hash(k))
            {
                hashbrown::hash_table::Entry::Occupied(occupied) => {
                    let ((k, old), vacant) = occupied.remove();
                    vacant.insert((k, merge(Some(old), x)));
                }
                hashbrown::hash_table::Entry::Vacant(vacant) => {
                    vacant.insert((key, merge(None, x)));
                    // Only writers change `len`, and they hold the writer lock: no RMW needed.
                    self.len.store(len + 1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Makes room for `additional` more entries at once (the table and its filter), so a bulk
    /// load of a snapshot neither rehashes the shards nor rebuilds the filter as it grows.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn reserve(&self, additional: usize) {
        let _w = self.writer.lock();
        let want = self.len.load(Ordering::Relaxed).saturating_add(additional);
        if want > self.filter.load().capacity() {
            self.rebuild_filter_locked(want);
        }
        // Keys spread evenly over the shards; a little slack for the unevenness.
        let per_shard = additional / SHARDS + additional / SHARDS / 32 + 16;
        for shard in self.shards.iter() {
            let hasher = &self.hasher;
            shard
                .write()
                .entries
                .reserve(per_shard, |(k, _)| hasher.hash_one(k));
        }
    }

    /// Removes every entry expired at `now_secs`; returns how many were removed.
    pub(crate) fn purge_expired(&self, now_secs: u64) -> usize {
        let mut w = self.writer.lock();
        w.next_purge_secs = now_secs.saturating_add(self.purge_every_secs);
        self.purge_locked(now_secs)
    }

    fn purge_locked(&self, now_secs: u64) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut s = shard.write();
            let before = s.entries.len();
            s.entries.retain(|(_, v)| v.expires_at_secs() >= now_secs);
            if s.entries.capacity() > 64 && s.entries.len() < s.entries.capacity() / 4 {
                let hasher = &self.hasher;
                s.entries.shrink_to_fit(|(k, _)| hasher.hash_one(k));
            }
            removed += before - s.entries.len();
        }
        if removed > 0 {
            self.len.fetch_sub(removed, Ordering::Relaxed);
            // Expired keys' bits stay set until the filter is rebuilt.
            self.rebuild_filter_locked(self.len.load(Ordering::Relaxed));
        }
        removed
    }

    fn rebuild_filter_locked(&self, capacity: usize) {
        let filter = BlockFilter::with_capacity(capacity);
        for shard in self.shards.iter() {
            for (k, _) in shard.read().entries.iter() {
                filter.insert(self.hash(k));
            }
        }
        self.filter.store(Arc::new(filter));
    }

    /// Number of entries (including expired ones not yet purged).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Calls `f` on every entry unexpired at `now_secs` (for re-publishing to a shared store).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn for_each_live(&self, now_secs: u64, mut f: impl FnMut(&[u8; 16], &V)) {
        for shard in self.shards.iter() {
            for (k, v) in shard.read().entries.iter() {
                if v.expires_at_secs() >= now_secs {
                    f(k, v);
                }
            }
        }
    }

    /// How many shards [`ExpiringTable::for_each_live_in`] walks.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Calls `f` on every entry of one shard unexpired at `now_secs`, under that shard's read
    /// lock only (writing a snapshot walks the table one shard at a time, so writers to the
    /// other shards never wait).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn for_each_live_in(
        &self,
        shard: usize,
        now_secs: u64,
        mut f: impl FnMut(&[u8; 16], &V),
    ) {
        for (k, v) in self.shards[shard].read().entries.iter() {
            if v.expires_at_secs() >= now_secs {
                f(k, v);
            }
        }
    }

    /// Approximate heap bytes held: table buckets plus the filter.
    pub(crate) fn approx_bytes(&self) -> usize {
        let per_bucket = std::mem::size_of::<([u8; 16], V)>() + 1;
        let buckets: usize = self
            .shards
            .iter()
            .map(|s| s.read().entries.capacity())
            .sum();
        // capacity() is 7/8 of the bucket count for large tables.
        buckets * 8 / 7 * per_bucket + self.filter.load().bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Until(u64);
    impl Expiring for Until {
        fn expires_at_secs(&self) -> u64 {
            self.0
        }
    }

    fn key(i: u32) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&i.to_le_bytes());
        k[8] = 0xAB;
        k
    }

    #[test]
    fn inserted_keys_are_found_until_they_expire() {
        let t: ExpiringTable<Until> = ExpiringTable::new(10);
        t.upsert(key(1), 100, |_| Until(200));
        assert_eq!(t.get(&key(1), 150, |v| *v), Some(Until(200)));
        assert_eq!(t.get(&key(1), 200, |v| *v), Some(Until(200)));
        assert_eq!(t.get(&key(1), 201, |v| *v), None);
        assert_eq!(t.get(&key(2), 150, |v| *v), None);
    }

    #[test]
    fn upsert_merges_with_the_existing_value() {
        let t: ExpiringTable<Until> = ExpiringTable::new(10);
        t.upsert(key(1), 0, |_| Until(50));
        t.upsert(key(1), 0, |old| Until(old.map_or(0, |o| o.0.max(20))));
        assert_eq!(t.get(&key(1), 0, |v| *v), Some(Until(50)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn purge_removes_only_expired_entries() {
        let t: ExpiringTable<Until> = ExpiringTable::new(1_000_000);
        for i in 0..1000 {
            t.upsert(key(i), 0, |_| Until(if i % 2 == 0 { 10 } else { 20 }));
        }
        assert_eq!(
            t.purge_expired(10),
            0,
            "entries are kept through their expiry second"
        );
        assert_eq!(t.purge_expired(11), 500);
        assert_eq!(t.len(), 500);
        assert!(
            (0..1000)
                .filter(|i| i % 2 == 1)
                .all(|i| t.get(&key(i), 11, |_| ()).is_some())
        );
        assert_eq!(t.purge_expired(21), 500);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn writes_purge_lazily_once_the_interval_has_passed() {
        let t: ExpiringTable<Until> = ExpiringTable::new(60);
        t.upsert(key(1), 0, |_| Until(5));
        t.upsert(key(2), 30, |_| Until(100)); // within the interval: no sweep yet
        assert_eq!(t.len(), 2);
        t.upsert(key(3), 61, |_| Until(100)); // sweep due
        assert_eq!(t.len(), 2);
        assert!(t.get(&key(1), 0, |_| ()).is_none(), "purged entry is gone");
    }

    #[test]
    fn filter_grows_and_never_hides_an_entry() {
        let t: ExpiringTable<Until> = ExpiringTable::new(1_000_000);
        for i in 0..50_000 {
            t.upsert(key(i), 0, |_| Until(10));
        }
        assert!((0..50_000).all(|i| t.get(&key(i), 0, |_| ()).is_some()));
        assert!(t.filter.load().capacity() >= 50_000);
    }

    #[test]
    fn concurrent_readers_see_entries_written_before_they_looked() {
        let t: Arc<ExpiringTable<Until>> = Arc::new(ExpiringTable::new(1_000_000));
        let writer = {
            let t = t.clone();
            std::thread::spawn(move || {
                for i in 0..20_000 {
                    t.upsert(key(i), 0, |_| Until(10));
                }
            })
        };
        // Every key found once must stay found (no lost bits during filter rebuilds).
        let mut seen = 0;
        while seen < 20_000 {
            if t.get(&key(seen), 0, |_| ()).is_some() {
                seen += 1;
                if seen > 1 {
                    assert!(t.get(&key(seen - 2), 0, |_| ()).is_some());
                }
            } else {
                std::thread::yield_now();
            }
        }
        writer.join().expect("writer");
    }
}
