//! Secrets out: a secret the server shows once goes to stdout alone (so `$(edgeplane ...)`
//! captures just it), its description to stderr.

/// Prints a secret shown once: `about` (lines) to stderr, `secret` alone to stdout.
pub fn show_once(about: &[String], secret: &str) {
    for line in about {
        eprintln!("{line}");
    }
    println!("{secret}");
}
