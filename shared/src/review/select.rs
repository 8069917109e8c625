//! Which changed files a review looks at, and why the others are skipped. Every skipped file is
//! named with its reason in the review's status and summary: nothing is dropped silently.

use crate::review::diff::{FileDiff, FileStatus};
use crate::review::ignore::IgnoreFile;

/// Files larger than this are not fetched in full or reviewed (generated or data files, mostly).
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// A single file's diff larger than this is not reviewed.
pub const MAX_PATCH_LINES: usize = 3_000;
/// At most this many files per review; the rest are named as skipped.
pub const MAX_FILES: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    #[serde(rename = "edgeplaneignore")]
    IgnoreFile,
    Lockfile,
    Vendored,
    Generated,
    Binary,
    TooLarge,
    Removed,
    NoChanges,
    TooManyFiles,
    /// Did not fit the provider's token budget (decided when building the prompt).
    TokenBudget,
    /// The platform refused to serve the file's contents (GitHub answers 403 for files over
    /// 100 MB): the rest of the change is still reviewed.
    Unreadable,
}

impl SkipReason {
    pub const ALL: [SkipReason; 11] = [
        SkipReason::IgnoreFile,
        SkipReason::Lockfile,
        SkipReason::Vendored,
        SkipReason::Generated,
        SkipReason::Binary,
        SkipReason::TooLarge,
        SkipReason::Removed,
        SkipReason::NoChanges,
        SkipReason::TooManyFiles,
        SkipReason::TokenBudget,
        SkipReason::Unreadable,
    ];

    /// The name stored and shown by the API (also its serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::IgnoreFile => "edgeplaneignore",
            SkipReason::Lockfile => "lockfile",
            SkipReason::Vendored => "vendored",
            SkipReason::Generated => "generated",
            SkipReason::Binary => "binary",
            SkipReason::TooLarge => "too_large",
            SkipReason::Removed => "removed",
            SkipReason::NoChanges => "no_changes",
            SkipReason::TooManyFiles => "too_many_files",
            SkipReason::TokenBudget => "token_budget",
            SkipReason::Unreadable => "unreadable",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::IgnoreFile => "matched .edgeplaneignore",
            SkipReason::Lockfile => "lockfile",
            SkipReason::Vendored => "vendored code",
            SkipReason::Generated => "generated code",
            SkipReason::Binary => "binary file",
            SkipReason::TooLarge => "too large to review",
            SkipReason::Removed => "file removed",
            SkipReason::NoChanges => "no textual changes",
            SkipReason::TooManyFiles => "over the per-review file limit",
            SkipReason::TokenBudget => "did not fit the model's token budget",
            SkipReason::Unreadable => "the platform refused to serve its contents",
        }
    }
}

const LOCKFILES: &[&str] = &[
    "Cargo.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lockb",
    "Gemfile.lock",
    "poetry.lock",
    "Pipfile.lock",
    "uv.lock",
    "composer.lock",
    "go.sum",
    "mix.lock",
    "pubspec.lock",
    "Podfile.lock",
    "packages.lock.json",
    "flake.lock",
    "gradle.lockfile",
    "Package.resolved",
];

const VENDORED_DIRS: &[&str] = &[
    "vendor",
    "third_party",
    "third-party",
    "node_modules",
    "bower_components",
    "Pods",
    ".yarn",
];

const GENERATED_SUFFIXES: &[&str] = &[
    ".min.js",
    ".min.css",
    ".map",
    ".pb.go",
    "_pb2.py",
    "_pb2_grpc.py",
    ".pb.cc",
    ".pb.h",
    ".g.dart",
    ".freezed.dart",
    ".designer.cs",
    "_generated.go",
    ".generated.ts",
    ".snap",
];

const GENERATED_DIRS: &[&str] = &["dist", "generated", "__generated__", "gen"];

const BINARY_EXTENSIONS: &[&str] = &[
    "png",
    "jpg",
    "jpeg",
    "gif",
    "bmp",
    "ico",
    "webp",
    "tiff",
    "psd",
    "pdf",
    "zip",
    "gz",
    "tgz",
    "bz2",
    "xz",
    "7z",
    "rar",
    "jar",
    "war",
    "class",
    "so",
    "dylib",
    "dll",
    "exe",
    "bin",
    "o",
    "a",
    "lib",
    "wasm",
    "woff",
    "woff2",
    "ttf",
    "otf",
    "eot",
    "mp3",
    "mp4",
    "mov",
    "avi",
    "webm",
    "ogg",
    "wav",
    "flac",
    "sqlite",
    "db",
    "pyc",
    "onnx",
    "pt",
    "safetensors",
    "parquet",
    "npy",
];

/// Skips that follow from the path alone.
pub fn by_path(path: &str, ignore: &IgnoreFile) -> Option<SkipReason> {
    if ignore.is_ignored(path) {
        return Some(SkipReason::IgnoreFile);
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    if LOCKFILES.contains(&name) {
        return Some(SkipReason::Lockfile);
    }
    let dirs: Vec<&str> = path.split('/').collect();
    let dirs = &dirs[..dirs.len().saturating_sub(1)];
    if dirs.iter().any(|d| VENDORED_DIRS.contains(d)) {
        return Some(SkipReason::Vendored);
    }
    let lower = name.to_ascii_lowercase();
    if GENERATED_SUFFIXES.iter().any(|s| lower.ends_with(s))
        || dirs.iter().any(|d| GENERATED_DIRS.contains(d))
    {
        return Some(SkipReason::Generated);
    }
    if let Some(ext) = lower.rsplit_once('.').map(|(_, e)| e) {
        if BINARY_EXTENSIONS.contains(&ext) {
            return Some(SkipReason::Binary);
        }
    }
    None
}

/// Skips that follow from the diff itself.
pub fn by_diff(f: &FileDiff) -> Option<SkipReason> {
    if f.binary {
        Some(SkipReason::Binary)
    } else if f.status == FileStatus::Removed {
        Some(SkipReason::Removed)
    } else if f.hunks.iter().map(|h| h.lines.len()).sum::<usize>() > MAX_PATCH_LINES {
        Some(SkipReason::TooLarge)
    } else if f.changed_lines() == 0 {
        Some(SkipReason::NoChanges)
    } else {
        None
    }
}

/// Skips that follow from the content (fetched for retrieval): binary bytes, size, and the
/// markers code generators leave in the first lines.
pub fn by_content(content: &[u8]) -> Option<SkipReason> {
    if content.len() > MAX_FILE_BYTES {
        return Some(SkipReason::TooLarge);
    }
    if content.iter().take(8000).any(|b| *b == 0) {
        return Some(SkipReason::Binary);
    }
    let head = String::from_utf8_lossy(&content[..content.len().min(600)]).to_ascii_lowercase();
    if head.contains("@generated")
        || head.contains("do not edit")
        || head.contains("code generated by")
    {
        return Some(SkipReason::Generated);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::diff::parse_hunks;

    #[test]
    fn serde_names_are_the_stored_names() {
        for r in SkipReason::ALL {
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::Value::String(r.as_str().into())
            );
            let back: SkipReason =
                serde_json::from_value(serde_json::to_value(r).unwrap()).unwrap();
            assert_eq!(back, r);
        }
        assert!(serde_json::from_str::<SkipReason>("\"whatever\"").is_err());
    }

    #[test]
    fn path_rules() {
        let ig = IgnoreFile::parse("docs/\n*.sql\n");
        assert_eq!(by_path("docs/a.md", &ig), Some(SkipReason::IgnoreFile));
        assert_eq!(by_path("db/schema.sql", &ig), Some(SkipReason::IgnoreFile));
        assert_eq!(by_path("Cargo.lock", &ig), Some(SkipReason::Lockfile));
        assert_eq!(
            by_path("web/package-lock.json", &ig),
            Some(SkipReason::Lockfile)
        );
        assert_eq!(
            by_path("vendor/github.com/x/y.go", &ig),
            Some(SkipReason::Vendored)
        );
        assert_eq!(
            by_path("static/app.min.js", &ig),
            Some(SkipReason::Generated)
        );
        assert_eq!(
            by_path("api/v1/user.pb.go", &ig),
            Some(SkipReason::Generated)
        );
        assert_eq!(by_path("assets/logo.PNG", &ig), Some(SkipReason::Binary));
        assert_eq!(by_path("src/lib.rs", &ig), None);
        assert_eq!(by_path("src/vendors.rs", &ig), None);
    }

    #[test]
    fn diff_and_content_rules() {
        let f = FileDiff {
            path: "a.rs".into(),
            old_path: None,
            status: FileStatus::Modified,
            binary: false,
            hunks: parse_hunks("@@ -1 +1 @@\n-a\n+b").unwrap(),
        };
        assert_eq!(by_diff(&f), None);
        assert_eq!(
            by_diff(&FileDiff {
                status: FileStatus::Removed,
                ..f.clone()
            }),
            Some(SkipReason::Removed)
        );
        assert_eq!(
            by_diff(&FileDiff {
                binary: true,
                ..f.clone()
            }),
            Some(SkipReason::Binary)
        );
        assert_eq!(by_content(b"fn main() {}"), None);
        assert_eq!(by_content(b"\x00\x01\x02"), Some(SkipReason::Binary));
        assert_eq!(
            by_content(b"// Code generated by protoc. DO NOT EDIT.\npackage x"),
            Some(SkipReason::Generated)
        );
        assert_eq!(
            by_content(&vec![b'a'; MAX_FILE_BYTES + 1]),
            Some(SkipReason::TooLarge)
        );
    }
}
