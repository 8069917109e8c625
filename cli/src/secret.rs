//! Secrets in and out: a secret is never taken from argv (where `ps` and shell history see
//! it) and never echoed. In: one line from stdin when stdin is a pipe, else a prompt on the
//! terminal that does not echo. Out: a secret the server shows once goes to stdout alone (so
//! `$(edgeplane ...)` captures just it), its description to stderr.

use std::io::{BufRead, IsTerminal, Write};

use crate::error::{CliError, Result};

/// Reads a secret for `what` (e.g. "the provider's API key"): one line from stdin when it is not
/// a terminal, else a hidden prompt. Surrounding whitespace is dropped; an empty secret is a
/// usage error.
pub fn read(what: &str) -> Result<String> {
    let stdin = std::io::stdin();
    let line = if stdin.is_terminal() {
        let term = console::Term::stderr();
        let _ = write!(std::io::stderr(), "Enter {what} (input is hidden): ");
        let _ = std::io::stderr().flush();
        term.read_secure_line()
            .map_err(|e| CliError::usage(format!("reading {what}: {e}")))?
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::usage(format!("reading {what} from stdin: {e}")))?;
        line
    };
    let secret = line.trim().to_owned();
    if secret.is_empty() {
        return Err(CliError::usage(format!(
            "{what} is empty: pipe it on stdin or type it at the prompt"
        )));
    }
    Ok(secret)
}

/// A fresh random secret: `prefix` then 64 hex digits (256 bits from the OS).
pub fn generate(prefix: &str) -> Result<String> {
    let bytes = edgeplane_core::crypto::random_bytes::<32>()
        .map_err(|_| CliError::usage("the system's random source is unavailable"))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// Prints a secret shown once: `about` (lines) to stderr, `secret` alone to stdout.
pub fn show_once(about: &[String], secret: &str) {
    for line in about {
        eprintln!("{line}");
    }
    println!("{secret}");
}
