//! The unified diff parser (review): never panics on any text, and every parsed line can be
//! located again by its own line number on its side, which is how inline comments are placed.
#![no_main]

use edgeplane_core::review::diff::{parse_hunks, parse_unified, Side};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(hunks) = parse_hunks(text) {
        for h in &hunks {
            let _ = h.new_range();
        }
    }
    let Ok(files) = parse_unified(text) else {
        return;
    };
    for f in &files {
        let _ = (f.old_path(), f.changed_lines());
        for h in &f.hunks {
            for l in &h.lines {
                if let Some(n) = l.new {
                    let (_, found) = f.locate(Side::Right, n).expect("a new line is locatable");
                    assert_eq!(found.new, Some(n));
                }
                if let Some(n) = l.old {
                    let (_, found) = f.locate(Side::Left, n).expect("an old line is locatable");
                    assert_eq!(found.old, Some(n));
                }
            }
        }
    }
});
