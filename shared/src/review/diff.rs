//! Unified diffs: per-file hunks (GitHub's and GitLab's `patch`/`diff` fields) and whole git
//! diffs (Bitbucket). The parsed form knows, for every line, its old and new line numbers, which
//! is what placing an inline comment needs.

/// Which version of the file a comment refers to: `Right` is the new file (added and context
/// lines), `Left` the old one (removed and context lines). GitHub's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Left,
    Right,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Left => "LEFT",
            Side::Right => "RIGHT",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "LEFT" | "OLD" => Some(Side::Left),
            "RIGHT" | "NEW" => Some(Side::Right),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    Context,
    Added,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    pub kind: LineKind,
    pub old: Option<u32>,
    pub new: Option<u32>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    pub old_start: u32,
    pub new_start: u32,
    pub lines: Vec<DiffLine>,
}

impl Hunk {
    /// The new-file line range this hunk covers (empty hunks cover nothing).
    pub fn new_range(&self) -> Option<(u32, u32)> {
        let mut it = self.lines.iter().filter_map(|l| l.new);
        let first = it.next()?;
        Some((first, it.next_back().unwrap_or(first)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    Added,
    Modified,
    Removed,
    Renamed,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Added => "added",
            FileStatus::Modified => "modified",
            FileStatus::Removed => "removed",
            FileStatus::Renamed => "renamed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    /// The new path (the old one for removed files).
    pub path: String,
    /// The old path when it differs (renames).
    pub old_path: Option<String>,
    pub status: FileStatus,
    /// The platform or the diff says the file is binary.
    pub binary: bool,
    pub hunks: Vec<Hunk>,
}

impl FileDiff {
    pub fn old_path(&self) -> &str {
        self.old_path.as_deref().unwrap_or(&self.path)
    }

    /// The diff line a comment at (`side`, `line`) would attach to, if the line is on the diff.
    pub fn locate(&self, side: Side, line: u32) -> Option<(usize, &DiffLine)> {
        self.hunks.iter().enumerate().find_map(|(i, h)| {
            h.lines
                .iter()
                .find(|l| match side {
                    Side::Right => l.new == Some(line) && l.kind != LineKind::Removed,
                    Side::Left => l.old == Some(line) && l.kind != LineKind::Added,
                })
                .map(|l| (i, l))
        })
    }

    pub fn changed_lines(&self) -> usize {
        self.hunks
            .iter()
            .flat_map(|h| &h.lines)
            .filter(|l| l.kind != LineKind::Context)
            .count()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffError(pub String);

/// `@@ -a,b +c,d @@ …`
fn parse_hunk_header(line: &str) -> Option<(u32, u32)> {
    let rest = line.strip_prefix("@@ ")?;
    let end = rest.find(" @@")?;
    let mut parts = rest[..end].split_whitespace();
    let old = parts.next()?.strip_prefix('-')?;
    let new = parts.next()?.strip_prefix('+')?;
    let start = |s: &str| s.split(',').next()?.parse::<u32>().ok();
    Some((start(old)?, start(new)?))
}

/// Parses the hunks of one file (text starting at the first `@@`; anything before is ignored).
pub fn parse_hunks(patch: &str) -> Result<Vec<Hunk>, DiffError> {
    let mut hunks: Vec<Hunk> = Vec::new();
    let (mut old, mut new) = (0u32, 0u32);
    for raw in patch.lines() {
        if raw.starts_with("@@") {
            let (o, n) = parse_hunk_header(raw).ok_or_else(|| {
                DiffError(format!(
                    "bad hunk header `{}`",
                    raw.chars().take(60).collect::<String>()
                ))
            })?;
            old = o;
            new = n;
            hunks.push(Hunk {
                old_start: o,
                new_start: n,
                lines: Vec::new(),
            });
            continue;
        }
        let Some(h) = hunks.last_mut() else { continue };
        let (kind, text) = match raw.as_bytes().first() {
            Some(b'+') => (LineKind::Added, &raw[1..]),
            Some(b'-') => (LineKind::Removed, &raw[1..]),
            Some(b' ') => (LineKind::Context, &raw[1..]),
            // "\ No newline at end of file"
            Some(b'\\') => continue,
            // Some producers drop the space of empty context lines.
            None => (LineKind::Context, ""),
            _ => continue,
        };
        // A hunk that claims to start near u32::MAX cannot hold more lines: refuse it rather
        // than wrap (found by fuzzing: `@@ -1 +4294967295 @@` followed by two added lines).
        let past_end = || DiffError("a hunk runs past the largest line number".into());
        let line = match kind {
            LineKind::Added => {
                let at = new;
                new = new.checked_add(1).ok_or_else(past_end)?;
                DiffLine {
                    kind,
                    old: None,
                    new: Some(at),
                    text: text.to_owned(),
                }
            }
            LineKind::Removed => {
                let at = old;
                old = old.checked_add(1).ok_or_else(past_end)?;
                DiffLine {
                    kind,
                    old: Some(at),
                    new: None,
                    text: text.to_owned(),
                }
            }
            LineKind::Context => {
                let (at_old, at_new) = (old, new);
                old = old.checked_add(1).ok_or_else(past_end)?;
                new = new.checked_add(1).ok_or_else(past_end)?;
                DiffLine {
                    kind,
                    old: Some(at_old),
                    new: Some(at_new),
                    text: text.to_owned(),
                }
            }
        };
        h.lines.push(line);
    }
    Ok(hunks)
}

fn strip_side(p: &str, prefix: &str) -> Option<String> {
    let p = p.trim_end_matches('\t').trim_end();
    if p == "/dev/null" {
        return None;
    }
    let p = p
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(p);
    Some(p.strip_prefix(prefix).unwrap_or(p).to_owned())
}

/// Parses a whole git-style diff (`diff --git a/… b/…` sections) into files.
pub fn parse_unified(diff: &str) -> Result<Vec<FileDiff>, DiffError> {
    let mut files = Vec::new();
    let mut sections: Vec<Vec<&str>> = Vec::new();
    for line in diff.lines() {
        if line.starts_with("diff --git ") || sections.is_empty() && line.starts_with("--- ") {
            sections.push(Vec::new());
        }
        if let Some(s) = sections.last_mut() {
            s.push(line);
        }
    }
    for s in sections {
        let mut old_path = None;
        let mut new_path = None;
        let mut status = FileStatus::Modified;
        let mut binary = false;
        let mut header_paths = None;
        let mut body_start = s.len();
        for (i, line) in s.iter().enumerate() {
            if line.starts_with("@@") {
                body_start = i;
                break;
            }
            if let Some(rest) = line.strip_prefix("diff --git ") {
                // `a/x b/x`: split in the middle when both halves name the same path.
                let half = rest.len() / 2;
                if rest.len() % 2 == 1 && rest.as_bytes().get(half) == Some(&b' ') {
                    let (a, b) = (&rest[..half], &rest[half + 1..]);
                    header_paths = Some((strip_side(a, "a/"), strip_side(b, "b/")));
                } else if let Some((a, b)) = rest.split_once(" b/") {
                    header_paths = Some((strip_side(a, "a/"), Some(b.to_owned())));
                }
            } else if line.starts_with("new file mode") {
                status = FileStatus::Added;
            } else if line.starts_with("deleted file mode") {
                status = FileStatus::Removed;
            } else if let Some(p) = line.strip_prefix("rename from ") {
                old_path = Some(p.to_owned());
                status = FileStatus::Renamed;
            } else if let Some(p) = line.strip_prefix("rename to ") {
                new_path = Some(p.to_owned());
                status = FileStatus::Renamed;
            } else if line.starts_with("Binary files ") || line.starts_with("GIT binary patch") {
                binary = true;
            } else if let Some(p) = line.strip_prefix("--- ") {
                match strip_side(p, "a/") {
                    Some(p) => old_path = Some(p),
                    None => status = FileStatus::Added,
                }
            } else if let Some(p) = line.strip_prefix("+++ ") {
                match strip_side(p, "b/") {
                    Some(p) => new_path = Some(p),
                    None => status = FileStatus::Removed,
                }
            }
        }
        if let Some((a, b)) = header_paths {
            old_path = old_path.or(a);
            new_path = new_path.or(b);
        }
        let path = match status {
            FileStatus::Removed => old_path.clone().or(new_path.clone()),
            _ => new_path.clone().or(old_path.clone()),
        };
        let Some(path) = path else { continue };
        let hunks = parse_hunks(&s[body_start..].join("\n"))?;
        files.push(FileDiff {
            old_path: old_path.filter(|o| *o != path),
            path,
            status,
            binary,
            hunks,
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "@@ -1,4 +1,5 @@\n fn main() {\n-    println!(\"hi\");\n+    let x = 1;\n+    println!(\"{x}\");\n }\n \n@@ -20,2 +21,3 @@ impl Foo\n a\n+b\n c\n\\ No newline at end of file";

    #[test]
    fn hunks_carry_both_line_numbers() {
        let hunks = parse_hunks(PATCH).unwrap();
        assert_eq!(hunks.len(), 2);
        let l = &hunks[0].lines;
        assert_eq!((l[0].old, l[0].new), (Some(1), Some(1)));
        assert_eq!(
            (l[1].kind, l[1].old, l[1].new),
            (LineKind::Removed, Some(2), None)
        );
        assert_eq!((l[2].kind, l[2].new), (LineKind::Added, Some(2)));
        assert_eq!((l[3].new, l[4].old, l[4].new), (Some(3), Some(3), Some(4)));
        assert_eq!(hunks[1].lines[1].new, Some(22));
        assert_eq!(hunks[1].lines.len(), 3);
        assert_eq!(hunks[0].new_range(), Some((1, 5)));
        let f = FileDiff {
            path: "m.rs".into(),
            old_path: None,
            status: FileStatus::Modified,
            binary: false,
            hunks,
        };
        assert!(f.locate(Side::Right, 2).is_some());
        assert!(f.locate(Side::Left, 2).is_some());
        assert!(f.locate(Side::Right, 10).is_none());
        assert!(
            f.locate(Side::Left, 21).is_some(),
            "context line on the old side"
        );
        assert_eq!(f.changed_lines(), 4);
        assert!(parse_hunks("@@ nonsense @@").is_err());
    }

    #[test]
    fn whole_git_diffs() {
        let d = "diff --git a/src/a.rs b/src/a.rs\nindex 1..2 100644\n--- a/src/a.rs\n+++ b/src/a.rs\n@@ -1 +1 @@\n-old\n+new\n\
diff --git a/new.txt b/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,2 @@\n+x\n+y\n\
diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-z\n\
diff --git a/img.png b/img.png\nBinary files a/img.png and b/img.png differ\n\
diff --git a/old name.rs b/new name.rs\nsimilarity index 90%\nrename from old name.rs\nrename to new name.rs\n";
        let files = parse_unified(d).unwrap();
        assert_eq!(files.len(), 5);
        assert_eq!(
            (files[0].path.as_str(), files[0].status),
            ("src/a.rs", FileStatus::Modified)
        );
        assert_eq!(
            (files[1].path.as_str(), files[1].status),
            ("new.txt", FileStatus::Added)
        );
        assert_eq!(files[1].hunks[0].lines[1].new, Some(2));
        assert_eq!(
            (files[2].path.as_str(), files[2].status),
            ("gone.txt", FileStatus::Removed)
        );
        assert!(files[3].binary);
        assert_eq!(
            (files[4].path.as_str(), files[4].old_path.as_deref()),
            ("new name.rs", Some("old name.rs"))
        );
    }

    /// Fuzzing found this (fuzz/findings/unified_diff-line-number-overflow): the line counter
    /// wrapped past u32::MAX and panicked where overflow checks are on.
    #[test]
    fn a_hunk_past_the_largest_line_number_is_refused() {
        let input = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/findings/unified_diff-line-number-overflow"
        ))
        .unwrap();
        assert!(parse_hunks(&input).is_err());
        // The last representable line still parses.
        let ok = parse_hunks("@@ -1 +4294967294 @@\n+a\n").unwrap();
        assert_eq!(ok[0].lines[0].new, Some(4_294_967_294));
    }
}
