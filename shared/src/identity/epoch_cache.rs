//! A per-isolate cache whose entries stay usable until their scope's *epoch* moves, rather than
//! for a fixed few seconds.
//!
//! A fleet's devices each poll every few minutes, so a per-device entry kept for the 3 s of
//! `identity::cache::STALENESS_BOUND_MS` would almost never be hit again, and every request
//! would read D1. Yet what a device request depends on (its revocation, its tags, its explicit
//! groups) changes rarely, and only through writes that bump one counter per org, the org's
//! epoch, in the same transaction (database triggers, so no writer can forget). So an entry
//! records the epoch it was read under, in the same statement as its row, and is served while
//! the org's current epoch, itself read through the 3 s cache, is no newer. The staleness bound
//! is therefore the epoch's: a change is seen everywhere within `STALENESS_BOUND_MS`, and at once
//! on the isolate that made it (it drops its cached epoch). Between changes an entry lives
//! for [`EpochCache::new`]'s `ttl_ms`, which only bounds memory and the age of what else it
//! carries (e.g. the device's last reports, which are hints for skipping writes).
//!
//! Time is passed in, so every bound here is testable natively.

use crate::identity::cache::TtlCache;

/// An entry together with the epoch it was read under.
#[derive(Debug, Clone)]
struct Stamped<V> {
    epoch: i64,
    value: V,
}

/// Entries keyed by a string, each valid while its scope's epoch is not newer than its own.
#[derive(Debug)]
pub struct EpochCache<V> {
    entries: TtlCache<Stamped<V>>,
    max_entry_bytes: usize,
}

impl<V: Clone> EpochCache<V> {
    /// `ttl_ms` bounds an entry's life between epoch changes, `max_entries` the count (a full
    /// cache resets, as [`TtlCache`] does), `max_entry_bytes` what one entry may weigh (bigger
    /// values are not kept: their callers read them each time).
    pub fn new(ttl_ms: i64, max_entries: usize, max_entry_bytes: usize) -> Self {
        Self {
            entries: TtlCache::new(ttl_ms, max_entries),
            max_entry_bytes,
        }
    }

    /// The value for `key` if it was read under `current_epoch` or later and is younger than the
    /// TTL. An older entry is dropped, so the caller's read replaces it.
    pub fn get(&mut self, key: &str, current_epoch: i64, now_ms: i64) -> Option<V> {
        let hit = self.entries.get(key, now_ms)?;
        if hit.epoch >= current_epoch {
            Some(hit.value)
        } else {
            self.entries.remove(key);
            None
        }
    }

    /// Keeps `value`, read under `epoch`, unless it weighs more than an entry may. Returns
    /// whether it was kept.
    pub fn put(&mut self, key: &str, epoch: i64, value: V, bytes: usize, now_ms: i64) -> bool {
        if bytes > self.max_entry_bytes {
            return false;
        }
        self.entries.put(key, Stamped { epoch, value }, now_ms);
        true
    }

    /// Changes a kept value in place (what this isolate itself just wrote), keeping its epoch
    /// and its expiry.
    pub fn update(&mut self, key: &str, f: impl FnOnce(&mut V)) {
        self.entries.update(key, |s| f(&mut s.value));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_served_until_its_scope_moves_past_it() {
        let mut c = EpochCache::new(60_000, 8, 100);
        assert!(c.put("dev", 3, "tags-a", 6, 0));
        // Long after a TTL cache's few seconds, as long as the epoch stands.
        assert_eq!(c.get("dev", 3, 59_999), Some("tags-a"));
        // An entry read after a change the caller's epoch does not know yet is newer: served.
        assert_eq!(c.get("dev", 2, 1), Some("tags-a"));
        // The org changed: the entry is refused and dropped, even if the epoch were then
        // (wrongly) presented older again.
        assert_eq!(c.get("dev", 4, 2), None);
        assert_eq!(c.get("dev", 3, 3), None);
        assert!(c.is_empty());
    }

    #[test]
    fn the_ttl_still_bounds_an_entry_between_changes() {
        let mut c = EpochCache::new(1_000, 8, 100);
        c.put("dev", 0, 1, 1, 0);
        assert_eq!(c.get("dev", 0, 999), Some(1));
        assert_eq!(c.get("dev", 0, 1_000), None);
    }

    #[test]
    fn an_update_keeps_the_epoch_and_heavy_values_are_not_kept() {
        let mut c = EpochCache::new(1_000, 8, 10);
        c.put("dev", 5, vec![1], 1, 0);
        c.update("dev", |v| v.push(2));
        assert_eq!(c.get("dev", 5, 1), Some(vec![1, 2]));
        assert_eq!(c.get("dev", 6, 1), None);
        // Updating a missing entry creates nothing.
        c.update("dev", |v| v.push(3));
        assert_eq!(c.get("dev", 0, 1), None);
        assert!(!c.put("big", 0, vec![0; 11], 11, 0));
        assert_eq!(c.get("big", 0, 1), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_full_cache_stays_bounded() {
        let mut c = EpochCache::new(1_000, 2, 10);
        for (i, k) in ["a", "b", "c", "d"].into_iter().enumerate() {
            c.put(k, 0, i, 1, 0);
        }
        assert!(c.len() <= 2);
        assert_eq!(c.get("d", 0, 1), Some(3));
    }
}
