//! `.edgeplaneignore`: gitignore syntax, so teams reuse what they know.
//!
//! Supported: comments, blank lines, `!` negation (last match wins), trailing `/` for
//! directories, patterns anchored by a `/` anywhere but the end, `*`, `?`, `[...]` classes
//! (with `!`/`^` negation and ranges), and `**` for any number of directories. As in git, a
//! file inside an excluded directory cannot be re-included. Matching is `globset`'s: each line
//! becomes one glob over the whole path (`*` never crosses a `/`), an unanchored line is
//! `**/line`, and one [`GlobSet`] answers which lines match.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// At most this many lines of the file are read.
const MAX_RULES: usize = 1000;

#[derive(Debug, Clone)]
struct Rule {
    negated: bool,
    dir_only: bool,
}

#[derive(Debug, Clone, Default)]
pub struct IgnoreFile {
    /// In file order; `set` reports matches by index into this.
    rules: Vec<Rule>,
    set: GlobSet,
}

/// gitignore has no `{a,b}` alternation: braces are literal there, so they are escaped for
/// globset (outside `[...]` classes, where they are literal already).
fn literal_braces(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some(next) = chars.next() {
                    out.push(next);
                }
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A `]` right after `[` (or `[!`) is a member, not the end.
                if let Some(&n) = chars.peek() {
                    if n == '!' || n == '^' {
                        out.push(n);
                        chars.next();
                    }
                }
                if chars.peek() == Some(&']') {
                    out.push(']');
                    chars.next();
                }
                continue;
            }
            ']' if in_class => in_class = false,
            '{' | '}' if !in_class => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
    out
}

impl IgnoreFile {
    pub fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        let mut set = GlobSetBuilder::new();
        for raw in text.lines().take(MAX_RULES) {
            let mut line = raw.trim_end_matches('\r');
            if !line.ends_with("\\ ") {
                line = line.trim_end();
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negated, rest) = match line.strip_prefix('!') {
                Some(r) => (true, r),
                None => (false, line.strip_prefix('\\').unwrap_or(line)),
            };
            let dir_only = rest.ends_with('/');
            let body = rest.trim_end_matches('/');
            if body.is_empty() {
                continue;
            }
            let anchored = body.contains('/');
            let body = body.strip_prefix('/').unwrap_or(body);
            let pattern = if anchored {
                literal_braces(body)
            } else {
                format!("**/{}", literal_braces(body))
            };
            let glob = GlobBuilder::new(&pattern)
                .literal_separator(true)
                .backslash_escape(true)
                // git reads an unclosed `[` as a literal character.
                .allow_unclosed_class(true)
                .build();
            // A line globset cannot read matches nothing, as in git.
            if let Ok(glob) = glob {
                set.add(glob);
                rules.push(Rule { negated, dir_only });
            }
        }
        match set.build() {
            Ok(set) => Self { rules, set },
            // Only a pathologically large set fails to build: it ignores nothing.
            Err(_) => Self::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a file path (relative to the repository root, `/`-separated) is ignored.
    pub fn is_ignored(&self, path: &str) -> bool {
        let path = path.trim_start_matches('/');
        let excluded_dir = path
            .match_indices('/')
            .any(|(i, _)| self.decide(&path[..i], true) == Some(true));
        excluded_dir || self.decide(path, false) == Some(true)
    }

    /// The last matching rule's verdict: `Some(true)` excluded, `Some(false)` re-included.
    fn decide(&self, path: &str, is_dir: bool) -> Option<bool> {
        self.set
            .matches(Path::new(path))
            .into_iter()
            .filter(|i| is_dir || !self.rules[*i].dir_only)
            .max()
            .map(|i| !self.rules[i].negated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_semantics() {
        let f = IgnoreFile::parse(
            "# generated code\n*.snap\n/docs/\nfixtures/\n!fixtures/keep.json\nsrc/**/gen_*.rs\n**/tmp\nbuild\n!important.log\n*.log\nlog[0-9].txt\n\\#hash.txt\n",
        );
        assert!(f.is_ignored("tests/ui/a.snap"));
        assert!(f.is_ignored("docs/readme.md"));
        assert!(!f.is_ignored("src/docs/readme.md"), "anchored to the root");
        assert!(f.is_ignored("a/fixtures/x.json"));
        assert!(
            f.is_ignored("fixtures/keep.json"),
            "a parent directory is excluded"
        );
        assert!(f.is_ignored("src/gen_a.rs"));
        assert!(f.is_ignored("src/x/y/gen_b.rs"));
        assert!(!f.is_ignored("src/x/y/real.rs"));
        assert!(f.is_ignored("a/b/tmp/c.rs"));
        assert!(f.is_ignored("build"));
        assert!(f.is_ignored("x/build/y.c"));
        assert!(f.is_ignored("important.log"), "the later *.log wins");
        assert!(f.is_ignored("log7.txt"));
        assert!(!f.is_ignored("logx.txt"));
        assert!(f.is_ignored("#hash.txt"));
        assert!(!f.is_ignored("src/main.rs"));
        let neg = IgnoreFile::parse("*.md\n!README.md\n");
        assert!(!neg.is_ignored("README.md"));
        assert!(neg.is_ignored("CHANGES.md"));
        assert!(IgnoreFile::parse("\n# only comments\n").is_empty());
    }

    #[test]
    fn globs() {
        let hit = |pat: &str, path: &str| IgnoreFile::parse(pat).is_ignored(path);
        assert!(hit("*.rs", "main.rs"));
        assert!(!hit("*.rs", "main.rsx"));
        assert!(hit("a?c", "abc"));
        assert!(!hit("a?c", "a/c"), "? never matches a separator");
        assert!(hit("[!a]bc", "xbc"));
        assert!(!hit("[!a]bc", "abc"));
        assert!(hit("[^a]bc", "xbc"));
        assert!(hit("*a*b*", "xxaxxbxx"));
        assert!(hit("[a-c]*", "banana"));
        assert!(
            !hit("src/*.rs", "src/a/b.rs"),
            "* never matches a separator"
        );
        assert!(hit("src/**", "src/a/b.rs"));
        // Literal braces (gitignore has no alternation), inside and outside classes.
        assert!(hit("{a,b}.txt", "{a,b}.txt"));
        assert!(!hit("{a,b}.txt", "a.txt"));
        assert!(hit("x[{]y", "x{y"));
        assert!(hit("[]]x", "]x"));
        // An unclosed class is a literal `[`.
        assert!(hit("[abc", "[abc"));
        assert!(hit("\\!important.md", "!important.md"));
    }
}
