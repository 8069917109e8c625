//! A small time-bounded cache for per-isolate state (session revocation state, memberships,
//! provider metadata). Time is passed in, so staleness bounds are testable.
//!
//! [`TtlCache::get_or_refresh`] adds single-flight refreshing: when an entry expires under
//! concurrent use, one caller re-reads it while the others keep the old value for at most a
//! grace period, so an expiry costs one database read instead of one per waiting request, and
//! nothing is ever served later than `ttl + grace` after it was read.
//!
//! [`read_through`] is the one read path of state that revocation depends on — a session's state,
//! a user's memberships, an API key — so all of it shares one staleness bound,
//! [`STALENESS_BOUND_MS`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::thread::LocalKey;

/// How long revocation-bearing state (sessions, memberships, API keys) is served from an
/// isolate's memory before it is read again.
pub const REVOCABLE_TTL_MS: i64 = 2_000;
/// While one request re-reads an expired entry, others may use the old one this much longer.
pub const REFRESH_GRACE_MS: i64 = 1_000;
/// Nothing read through [`read_through`] is used more than this long after it was read: a
/// revocation made through another isolate takes effect within it.
pub const STALENESS_BOUND_MS: i64 = REVOCABLE_TTL_MS + REFRESH_GRACE_MS;

/// Entries expire `ttl_ms` after they were stored; a full cache first drops expired entries and,
/// if still full, everything (a rare, cheap reset beats tracking recency on the hot path).
#[derive(Debug)]
pub struct TtlCache<V> {
    /// value, expiry, whether a caller is re-reading it
    entries: HashMap<String, (V, i64, bool)>,
    ttl_ms: i64,
    max_entries: usize,
    /// Bumped by every invalidation ([`remove`](Self::remove), [`retain`](Self::retain)), so a
    /// load that started before one does not store what it read (it may predate the change).
    generation: u64,
    /// The generation at which each key was last removed: a removal of one key must not stop
    /// loads of other keys from being kept (one org's changes would make every other org's
    /// reads uncached). Bounded like the entries; when full it is dropped and counted as a
    /// removal of everything (`all_since`).
    removed_at: HashMap<String, u64>,
    /// The generation of the last invalidation of every key ([`retain`](Self::retain), or the
    /// reset of `removed_at`).
    all_since: u64,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl_ms: i64, max_entries: usize) -> Self {
        Self {
            entries: HashMap::new(),
            ttl_ms,
            max_entries: max_entries.max(1),
            generation: 0,
            removed_at: HashMap::new(),
            all_since: 0,
        }
    }

    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    /// The value stored for `key` if it is younger than the TTL.
    pub fn get(&self, key: &str, now_ms: i64) -> Option<V> {
        self.entries
            .get(key)
            .filter(|(_, expires, _)| now_ms < *expires)
            .map(|(v, _, _)| v.clone())
    }

    /// Like [`get`](Self::get), with single-flight refresh: `None` tells the caller to load the
    /// value (and [`put`](Self::put) it, or [`abandon`](Self::abandon) on failure); while it
    /// does, other callers get the expired value for at most `grace_ms` past its expiry.
    pub fn get_or_refresh(&mut self, key: &str, now_ms: i64, grace_ms: i64) -> Option<V> {
        let (v, expires, refreshing) = self.entries.get_mut(key)?;
        if now_ms < *expires {
            return Some(v.clone());
        }
        if now_ms >= *expires + grace_ms {
            return None;
        }
        if *refreshing {
            Some(v.clone())
        } else {
            *refreshing = true;
            None
        }
    }

    /// A refresh claimed by [`get_or_refresh`](Self::get_or_refresh) failed: let the next caller
    /// try.
    pub fn abandon(&mut self, key: &str) {
        if let Some((_, _, refreshing)) = self.entries.get_mut(key) {
            *refreshing = false;
        }
    }

    pub fn put(&mut self, key: &str, value: V, now_ms: i64) {
        if self.entries.len() >= self.max_entries && !self.entries.contains_key(key) {
            self.entries.retain(|_, (_, expires, _)| now_ms < *expires);
            if self.entries.len() >= self.max_entries {
                self.entries.clear();
            }
        }
        self.entries
            .insert(key.to_owned(), (value, now_ms + self.ttl_ms, false));
    }

    /// Invalidates `key`: its entry goes, and a load already under way will not store its value.
    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
        self.generation += 1;
        if self.removed_at.len() >= self.max_entries && !self.removed_at.contains_key(key) {
            self.removed_at.clear();
            self.all_since = self.generation;
        }
        self.removed_at.insert(key.to_owned(), self.generation);
    }

    /// Drops every entry for which `keep` is false (an invalidation, like [`remove`](Self::remove)).
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &V) -> bool) {
        self.entries.retain(|k, (v, _, _)| keep(k, v));
        self.generation += 1;
        self.all_since = self.generation;
    }

    /// Counts invalidations: a load notes it before it starts, and asks
    /// [`invalidated_since`](Self::invalidated_since) when it ends.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `key` was invalidated after generation `since` (a load that started then may
    /// hold what the invalidation replaced).
    pub fn invalidated_since(&self, key: &str, since: u64) -> bool {
        self.all_since > since || self.removed_at.get(key).is_some_and(|g| *g > since)
    }

    /// Changes a live entry in place (e.g. marking a session revoked) without extending its TTL.
    pub fn update(&mut self, key: &str, f: impl FnOnce(&mut V)) {
        if let Some((v, _, _)) = self.entries.get_mut(key) {
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

/// Reads `key` through a per-isolate cache (built with [`REVOCABLE_TTL_MS`]): a fresh entry, or
/// within [`REFRESH_GRACE_MS`] the old one while another caller re-reads it, else `load`. A
/// loaded value is cached; a missing one (`Ok(None)`) is not, so something created a moment ago
/// is found at once; a failed load lets the next caller try. A value whose load overlapped an
/// invalidation is returned but not cached: it may have been read before the change that the
/// invalidation announced, and the isolate that made the change must not serve the old state
/// afterwards. No borrow is held across `load`.
pub async fn read_through<V, E, Fut>(
    cache: &'static LocalKey<RefCell<TtlCache<V>>>,
    key: &str,
    now_ms: i64,
    load: impl FnOnce() -> Fut,
) -> Result<Option<V>, E>
where
    V: Clone + 'static,
    Fut: Future<Output = Result<Option<V>, E>>,
{
    if let Some(hit) = cache.with(|c| c.borrow_mut().get_or_refresh(key, now_ms, REFRESH_GRACE_MS))
    {
        return Ok(Some(hit));
    }
    let generation = cache.with(|c| c.borrow().generation());
    match load().await {
        Ok(Some(v)) => {
            cache.with(|c| {
                let mut c = c.borrow_mut();
                if c.invalidated_since(key, generation) {
                    c.abandon(key);
                } else {
                    c.put(key, v.clone(), now_ms);
                }
            });
            Ok(Some(v))
        }
        Ok(None) => {
            cache.with(|c| c.borrow_mut().entries.remove(key));
            Ok(None)
        }
        Err(e) => {
            cache.with(|c| c.borrow_mut().abandon(key));
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_executor::block_on;
    use std::cell::Cell;

    thread_local! {
        static CACHE: RefCell<TtlCache<u32>> = RefCell::new(TtlCache::new(REVOCABLE_TTL_MS, 8));
    }

    #[test]
    fn read_through_serves_nothing_older_than_the_bound() {
        let loads = Cell::new(0);
        let read = |now: i64, value: Option<u32>| {
            block_on(read_through(&CACHE, "k", now, || {
                loads.set(loads.get() + 1);
                async move { Ok::<_, ()>(value) }
            }))
            .unwrap()
        };
        // A miss is loaded and cached; a missing row is not cached.
        assert_eq!(read(0, None), None);
        assert_eq!(read(0, Some(1)), Some(1));
        assert_eq!(read(REVOCABLE_TTL_MS - 1, Some(2)), Some(1));
        assert_eq!(loads.get(), 2);
        // Expired: this caller re-reads (the row is gone now: revoked and deleted)...
        assert_eq!(read(REVOCABLE_TTL_MS, None), None);
        assert_eq!(loads.get(), 3);
        // ...and nothing is served from the old entry afterwards.
        assert_eq!(read(REVOCABLE_TTL_MS + 1, Some(3)), Some(3));
        // An entry whose refresh never lands is not served at or past the bound.
        CACHE.with(|c| c.borrow_mut().put("k", 4, 10_000));
        assert_eq!(
            CACHE.with(|c| c.borrow_mut().get_or_refresh(
                "k",
                10_000 + REVOCABLE_TTL_MS,
                REFRESH_GRACE_MS
            )),
            None
        );
        assert_eq!(read(10_000 + STALENESS_BOUND_MS - 1, Some(5)), Some(4));
        assert_eq!(read(10_000 + STALENESS_BOUND_MS, Some(5)), Some(5));
        // A failed load lets the next caller try at once.
        CACHE.with(|c| c.borrow_mut().put("k", 6, 20_000));
        let failed = block_on(read_through(
            &CACHE,
            "k",
            20_000 + REVOCABLE_TTL_MS,
            || async { Err::<Option<u32>, _>("busy") },
        ));
        assert_eq!(failed, Err("busy"));
        assert_eq!(read(20_000 + REVOCABLE_TTL_MS, Some(7)), Some(7));
    }

    thread_local! {
        static RACED: RefCell<TtlCache<u32>> = RefCell::new(TtlCache::new(REVOCABLE_TTL_MS, 8));
    }

    /// A load that was under way when the key was invalidated (say, a desired state read while
    /// the same isolate promoted the rollout) is answered but not cached: the next read loads
    /// again instead of serving what may predate the change.
    #[test]
    fn a_load_that_overlaps_an_invalidation_is_not_cached() {
        let raced = block_on(read_through(&RACED, "org", 0, || {
            RACED.with(|c| c.borrow_mut().remove("org"));
            async { Ok::<_, ()>(Some(1)) }
        }));
        assert_eq!(raced, Ok(Some(1)));
        assert_eq!(RACED.with(|c| c.borrow().get("org", 1)), None);
        let loads = Cell::new(0);
        let read = |now| {
            block_on(read_through(&RACED, "org", now, || {
                loads.set(loads.get() + 1);
                async { Ok::<_, ()>(Some(2)) }
            }))
        };
        assert_eq!(read(1), Ok(Some(2)));
        assert_eq!(read(2), Ok(Some(2)));
        assert_eq!(loads.get(), 1, "an undisturbed load is cached");
    }

    thread_local! {
        static PER_KEY: RefCell<TtlCache<u32>> = RefCell::new(TtlCache::new(REVOCABLE_TTL_MS, 2));
    }

    /// Invalidating one key does not keep another key's overlapping load from being cached (one
    /// org's rollout changes must not make every other org's reads uncached); dropping
    /// everything, or more removed keys than the cache holds, counts against every load.
    #[test]
    fn an_invalidation_of_another_key_does_not_stop_a_load_being_kept() {
        let load_while = |key: &'static str, other: &'static str| {
            block_on(read_through(&PER_KEY, key, 0, || {
                PER_KEY.with(|c| c.borrow_mut().remove(other));
                async { Ok::<_, ()>(Some(1)) }
            }))
        };
        assert_eq!(load_while("a", "b"), Ok(Some(1)));
        assert_eq!(PER_KEY.with(|c| c.borrow().get("a", 1)), Some(1));
        // Its own key, though, is refused as before.
        assert_eq!(load_while("c", "c"), Ok(Some(1)));
        assert_eq!(PER_KEY.with(|c| c.borrow().get("c", 1)), None);
        // `retain` invalidates every key.
        let g = PER_KEY.with(|c| c.borrow().generation());
        PER_KEY.with(|c| c.borrow_mut().retain(|_, _| true));
        assert!(PER_KEY.with(|c| c.borrow().invalidated_since("zzz", g)));
        // The removal log is bounded: past `max_entries` keys it resets and counts as all.
        let g = PER_KEY.with(|c| c.borrow().generation());
        PER_KEY.with(|c| {
            let mut c = c.borrow_mut();
            for k in ["x", "y", "z"] {
                c.remove(k);
            }
            assert!(c.removed_at.len() <= 2);
            assert!(c.invalidated_since("unrelated", g));
        });
    }

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
    fn one_caller_refreshes_while_others_get_the_old_value_within_the_grace() {
        let mut c = TtlCache::new(1_000, 10);
        c.put("s", 1, 0);
        assert_eq!(c.get_or_refresh("s", 500, 300), Some(1));
        // Expired: the first caller is told to load; the next ones get the old value...
        assert_eq!(c.get_or_refresh("s", 1_000, 300), None);
        assert_eq!(c.get_or_refresh("s", 1_100, 300), Some(1));
        // ...but never past the grace, even if the refresh never lands.
        assert_eq!(c.get_or_refresh("s", 1_300, 300), None);
        // A failed refresh lets the next caller try at once.
        let mut d = TtlCache::new(1_000, 10);
        d.put("s", 1, 0);
        assert_eq!(d.get_or_refresh("s", 1_000, 300), None);
        d.abandon("s");
        assert_eq!(d.get_or_refresh("s", 1_001, 300), None);
        d.put("s", 2, 1_002);
        assert_eq!(d.get_or_refresh("s", 1_003, 300), Some(2));
        assert_eq!(d.get_or_refresh("missing", 0, 300), None);
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
