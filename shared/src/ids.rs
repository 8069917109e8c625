//! Resource identifiers: `<prefix>_<12 hex of ms time><16 hex random>`.
//!
//! The time part makes ids sort by creation, which keeps cursor pagination a plain `id < ?`; the
//! random part (64 bits) keeps them unguessable enough that enumeration is not a useful attack
//! (authorization never relies on it anyway).

use crate::crypto::random_bytes;
use crate::error::ApiError;

pub fn new_id(prefix: &str, now_millis: i64) -> Result<String, ApiError> {
    let rand = random_bytes::<8>()?;
    Ok(format!(
        "{prefix}_{:012x}{}",
        now_millis.max(0) as u64 & 0xffff_ffff_ffff,
        hex::encode(rand)
    ))
}

/// Whether `s` is shaped like an id with `prefix`. Used to answer 404 early for junk path
/// segments without touching the database.
pub fn looks_like_id(s: &str, prefix: &str) -> bool {
    s.len() == prefix.len() + 1 + 28
        && s.starts_with(prefix)
        && s.as_bytes()[prefix.len()] == b'_'
        && s[prefix.len() + 1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_validate() {
        let a = new_id("org", 1_000).unwrap();
        let b = new_id("org", 2_000).unwrap();
        assert!(a < b);
        assert!(looks_like_id(&a, "org"));
        assert!(!looks_like_id(&a, "usr"));
        assert!(!looks_like_id("org_../../etc", "org"));
    }
}
