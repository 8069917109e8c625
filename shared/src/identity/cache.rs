//! A small time-bounded cache for per-isolate state (session revocation state, memberships,
//! provider metadata). Time is passed in, so staleness bounds are testable.

use std::collections::HashMap;

/// Entries expire `ttl_ms` after they were stored; a full cache first drops expired entries and,
/// if still full, everything (a rare, cheap reset beats tracking recency on the hot path).
#[derive(Debug)]
pub struct TtlCache<V> {
    entries: HashMap<String, (V, i64)>,
    ttl_ms: i64,
    max_entries: usize,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl_ms: i64, max_entries: usize) -> Self {
        Self {
            entries: HashMap::new(),
            ttl_ms,
            max_entries: max_entries.max(1),
        }
    }

    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    /// The value stored for `key` if it is younger than the TTL.
    pub fn get(&self, key: &str, now_ms: i64) -> Option<V> {
        self.entries
            .get(key)
            .filter(|(_, expires)| now_ms < *expires)
            .map(|(v, _)| v.clone())
    }

    pub fn put(&mut self, key: &str, value: V, now_ms: i64) {
        if self.entries.len() >= self.max_entries && !self.entries.contains_key(key) {
            self.entries.retain(|_, (_, expires)| now_ms < *expires);
            if self.entries.len() >= self.max_entries {
                self.entries.clear();
            }
        }
        self.entries
            .insert(key.to_owned(), (value, now_ms + self.ttl_ms));
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops every entry for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &V) -> bool) {
        self.entries.retain(|k, (v, _)| keep(k, v));
    }

    /// Changes a live entry in place (e.g. marking a session revoked) without extending its TTL.
    pub fn update(&mut self, key: &str, f: impl FnOnce(&mut V)) {
        if let Some((v, _)) = self.entries.get_mut(key) {
            f(v);
        }
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
    fn entries_expire_after_the_ttl() {
        let mut c = TtlCache::new(1_000, 10);
        c.put("a", 1, 0);
        assert_eq!(c.get("a", 999), Some(1));
        assert_eq!(c.get("a", 1_000), None);
        c.update("a", |v| *v = 2);
        assert_eq!(c.get("a", 500), Some(2));
        c.remove("a");
        assert_eq!(c.get("a", 1), None);
    }

    #[test]
    fn bounded_size() {
        let mut c = TtlCache::new(1_000, 2);
        c.put("a", 1, 0);
        c.put("b", 2, 0);
        c.put("c", 3, 2_000); // a and b expired: dropped, c fits
        assert_eq!(c.len(), 1);
        c.put("d", 4, 2_000);
        c.put("e", 5, 2_000); // full of live entries: reset
        assert!(c.len() <= 2);
        assert_eq!(c.get("e", 2_001), Some(5));
        c.retain(|k, _| k != "e");
        assert!(c.get("e", 2_001).is_none());
    }
}
