//! Side-by-side tables: every row next to a reference row (the floor), with ratios.

use crate::load::LoadResult;

/// Prints rows with req/s, p50, p99, errors, and each row's ratio to `reference`.
pub fn print_table(title: &str, runtime: &str, reference: &LoadResult, rows: &[&LoadResult]) {
    println!();
    println!("## {title}");
    println!("runtime: {runtime}");
    println!(
        "{:<44} {:>10} {:>9} {:>9} {:>8} {:>10} {:>10} {:>10}",
        "scenario", "req/s", "p50 ms", "p99 ms", "errors", "rps/ref", "Δp50 ms", "p99/ref"
    );
    let all = std::iter::once(reference).chain(rows.iter().copied());
    for r in all {
        println!(
            "{:<44} {:>10.0} {:>9.2} {:>9.2} {:>8} {:>10.2} {:>10.2} {:>10.2}",
            r.name,
            r.rps(),
            r.percentile_ms(50.0),
            r.percentile_ms(99.0),
            r.errors,
            r.rps() / reference.rps(),
            r.percentile_ms(50.0) - reference.percentile_ms(50.0),
            r.percentile_ms(99.0) / reference.percentile_ms(99.0),
        );
    }
}

/// A goal line: `PASS`/`MISS` with the measured value, so misses are visible, never hidden.
pub fn goal(label: &str, ok: bool, detail: &str) {
    println!(
        "goal {:<58} {} ({detail})",
        label,
        if ok { "MET " } else { "MISS" }
    );
}
