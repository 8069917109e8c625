//! `.edgeplaneignore`: gitignore syntax, so teams reuse what they know.
//!
//! Supported: comments, blank lines, `!` negation (last match wins), trailing `/` for
//! directories, patterns anchored by a `/` anywhere but the end, `*`, `?`, `[...]` classes
//! (with `!`/`^` negation and ranges), and `**` for any number of directories. As in git, a
//! file inside an excluded directory cannot be re-included.

#[derive(Debug, Clone)]
struct Rule {
    segments: Vec<String>,
    negated: bool,
    dir_only: bool,
    anchored: bool,
}

#[derive(Debug, Clone, Default)]
pub struct IgnoreFile {
    rules: Vec<Rule>,
}

impl IgnoreFile {
    pub fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        for raw in text.lines().take(1000) {
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
            rules.push(Rule {
                segments: body.split('/').map(str::to_owned).collect(),
                negated,
                dir_only,
                anchored,
            });
        }
        Self { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a file path (relative to the repository root, `/`-separated) is ignored.
    pub fn is_ignored(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for i in 1..parts.len() {
            if self.decide(&parts[..i], true) == Some(true) {
                return true;
            }
        }
        self.decide(&parts, false) == Some(true)
    }

    /// The last matching rule's verdict: `Some(true)` excluded, `Some(false)` re-included.
    fn decide(&self, parts: &[&str], is_dir: bool) -> Option<bool> {
        let mut verdict = None;
        for r in &self.rules {
            if r.dir_only && !is_dir {
                continue;
            }
            let hit = if r.anchored {
                match_segments(&r.segments, parts)
            } else {
                parts.last().is_some_and(|name| glob(&r.segments[0], name))
            };
            if hit {
                verdict = Some(!r.negated);
            }
        }
        verdict
    }
}

fn match_segments(pat: &[String], parts: &[&str]) -> bool {
    match pat.split_first() {
        None => parts.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=parts.len()).any(|skip| match_segments(rest, &parts[skip..]))
        }
        Some((first, rest)) => match parts.split_first() {
            Some((p, prest)) => glob(first, p) && match_segments(rest, prest),
            None => false,
        },
    }
}

/// One path segment against one pattern segment (`*`, `?`, `[...]`, `\` escapes).
pub fn glob(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    while pi < p.len() && p[pi] == '*' {
                        pi += 1;
                    }
                    star = Some((pi, ti));
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class(&p, pi, t[ti]) {
                        if matched {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A `[...]` class at `p[start]`: whether `c` matches, and the index after the class.
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
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
        assert!(glob("*.rs", "main.rs"));
        assert!(!glob("*.rs", "main.rsx"));
        assert!(glob("a?c", "abc"));
        assert!(glob("[!a]bc", "xbc"));
        assert!(!glob("[!a]bc", "abc"));
        assert!(glob("*a*b*", "xxaxxbxx"));
        assert!(glob("[a-c]*", "banana"));
    }
}
