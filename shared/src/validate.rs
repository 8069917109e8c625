//! Validation of user-chosen identifiers. Each returns a 422 whose message says what is allowed.

use crate::error::ApiError;

/// Org slugs: 3–40 of `a-z 0-9 -`, starting with a letter, not ending with `-`. Slugs appear in
/// URLs and are case-folded, so the alphabet is deliberately narrow.
pub fn slug(s: &str) -> Result<(), ApiError> {
    let ok = (3..=40).contains(&s.len())
        && s.as_bytes()[0].is_ascii_lowercase()
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(
            "slug must be 3-40 characters of a-z, 0-9 and '-', start with a letter and not end with '-'",
        ))
    }
}

/// Derives a slug candidate from a display name.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 40 {
            break;
        }
    }
    let trimmed = out
        .trim_matches('-')
        .trim_start_matches(|c: char| c.is_ascii_digit());
    let mut s = trimmed.trim_start_matches('-').to_owned();
    if s.len() < 3 {
        s = format!("org-{s}");
    }
    s.trim_end_matches('-').to_owned()
}

/// Display names: 1–100 characters after trimming, no control characters.
pub fn display_name(s: &str, what: &str) -> Result<String, ApiError> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > 100 || t.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "{what} must be 1-100 characters without control characters"
        )));
    }
    Ok(t.to_owned())
}

/// Normalizes an email address for identity: trimmed and lower-cased. The check is structural
/// (one `@`, non-empty local part, a dotted domain, no spaces); deliverability is proven by the
/// sign-in link, not by a regex.
pub fn email(s: &str) -> Result<String, ApiError> {
    let e = s.trim().to_lowercase();
    let valid = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && match e.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    if valid {
        Ok(e)
    } else {
        Err(ApiError::validation("email is not a valid address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(slug("acme-labs").is_ok());
        for bad in [
            "ab",
            "Acme",
            "-acme",
            "acme-",
            "1acme",
            "ac me",
            "acme_labs",
            &"a".repeat(41),
        ] {
            assert!(slug(bad).is_err(), "{bad}");
        }
        assert_eq!(slugify("Acme Labs, Inc."), "acme-labs-inc");
        assert_eq!(slugify("42"), "org");
        assert!(slug(&slugify("Ünïcode ✓ Co")).is_ok());
        assert!(slug(&slugify("x")).is_ok());
    }

    #[test]
    fn emails() {
        assert_eq!(email("  Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@@example.com",
            "ada@example..com",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(display_name("  Acme ", "name").unwrap(), "Acme");
        assert!(display_name("   ", "name").is_err());
        assert!(display_name("a\u{0}b", "name").is_err());
    }
}
