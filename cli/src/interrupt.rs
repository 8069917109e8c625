//! Ctrl-C: what an interrupt does while a command runs, and exit code 130 (128 + SIGINT).
//!
//! The handler (the `ctrlc` crate: SIGINT and SIGTERM on Unix, Ctrl-C and Ctrl-Break on
//! Windows) runs on its own thread and does what the command in progress asked for:
//! - [`OnInterrupt::Exit`] (the default): end the process at once, after an optional cleanup
//!   (a partial download removed) and a note saying what was left behind. `models push` uses
//!   this while its body is in flight: the server registers a version only once it holds the
//!   whole file, so dropping the connection leaves nothing registered.
//! - [`OnInterrupt::Record`]: only note it; the command polls [`interrupted`] at its safe points,
//!   undoes what it started (`simulate round` revokes the devices that had not finished) and
//!   returns [`CliError::Interrupted`]. A second Ctrl-C ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::{CliError, Result};

/// What an interrupt does now.
pub enum OnInterrupt {
    /// Run `cleanup`, print `note` as the error, exit 130.
    Exit {
        note: String,
        cleanup: Option<Box<dyn FnOnce() + Send>>,
    },
    /// Remember it, for the command to wind down at its next safe point.
    Record,
}

impl OnInterrupt {
    pub fn exit(note: impl Into<String>) -> Self {
        OnInterrupt::Exit {
            note: note.into(),
            cleanup: None,
        }
    }

    fn default_exit() -> Self {
        OnInterrupt::exit("stopped by Ctrl-C")
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static JSON: AtomicBool = AtomicBool::new(false);
static MODE: Mutex<Option<OnInterrupt>> = Mutex::new(None);

fn mode() -> MutexGuard<'static, Option<OnInterrupt>> {
    MODE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Installs the handler; `json` picks the form of the note (as [`CliError`] prints).
pub fn install(json: bool) -> Result<()> {
    JSON.store(json, Ordering::SeqCst);
    ctrlc::set_handler(handle)
        .map_err(|e| CliError::usage(format!("cannot install the Ctrl-C handler: {e}")))
}

fn handle() {
    let again = INTERRUPTED.swap(true, Ordering::SeqCst);
    let current = mode().take().unwrap_or_else(OnInterrupt::default_exit);
    let (note, cleanup) = match current {
        OnInterrupt::Record if !again => {
            *mode() = Some(OnInterrupt::Record);
            eprintln!("interrupted: winding down (Ctrl-C again to stop at once)");
            return;
        }
        OnInterrupt::Record => ("interrupted twice: stopped at once".to_owned(), None),
        OnInterrupt::Exit { note, cleanup } => (note, cleanup),
    };
    if let Some(cleanup) = cleanup {
        cleanup();
    }
    CliError::Interrupted(note).exit(JSON.load(Ordering::SeqCst));
}

/// Whether Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// [`CliError::Interrupted`] with `note` when Ctrl-C was pressed.
pub fn check(note: &str) -> Result<()> {
    if interrupted() {
        Err(CliError::Interrupted(note.to_owned()))
    } else {
        Ok(())
    }
}

/// While the returned scope lives, an interrupt does `what`; then the default again.
pub fn on_interrupt(what: OnInterrupt) -> Scope {
    set(what);
    Scope(())
}

/// Changes what an interrupt does inside the current [`Scope`] (an upload whose last byte
/// went out now waits for the server's answer).
pub fn set(what: OnInterrupt) {
    *mode() = Some(what);
}

pub struct Scope(());

impl Drop for Scope {
    fn drop(&mut self) {
        *mode() = None;
    }
}
