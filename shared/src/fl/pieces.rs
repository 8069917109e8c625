//! Blobs stored as ordered pieces, and the range arithmetic over them.
//!
//! Model versions and staged updates are several objects read as one byte string: a staged
//! update is the parts a device PUT, a published version is the header plus what each
//! aggregator wrote. Readers go by byte range in bounded windows, so nothing ever holds more than
//! one window whatever the blob's size. The I/O itself is the worker's; which bytes of which
//! piece a range covers is decided here.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// The most bytes any reader asks storage for at once.
pub const READ_WINDOW: u64 = 4 * 1024 * 1024;
/// Size of the pieces writers cut their output into.
pub const WRITE_PIECE: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    pub key: String,
    pub size: u64,
}

/// Total size of a blob.
pub fn total(pieces: &[Piece]) -> u64 {
    pieces.iter().map(|p| p.size).sum()
}

/// One contiguous read from one piece: `len` bytes at `offset` inside piece `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub index: usize,
    pub offset: u64,
    pub len: u64,
}

/// The reads that together return bytes `range` of the blob, in order. A range past the end
/// yields only the part that exists: the caller compares lengths.
pub fn spans(pieces: &[Piece], range: Range<u64>) -> Vec<Span> {
    let mut out = Vec::new();
    let mut at = 0u64;
    for (index, p) in pieces.iter().enumerate() {
        let (lo, hi) = (range.start.max(at), range.end.min(at + p.size));
        if lo < hi {
            out.push(Span {
                index,
                offset: lo - at,
                len: hi - lo,
            });
        }
        at += p.size;
        if at >= range.end {
            break;
        }
    }
    out
}

/// Consecutive windows of at most [`READ_WINDOW`] bytes covering `range`.
pub fn windows(range: Range<u64>) -> impl Iterator<Item = Range<u64>> {
    let end = range.end;
    let mut at = range.start;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let hi = (at + READ_WINDOW).min(end);
        let w = at..hi;
        at = hi;
        Some(w)
    })
}

/// Why reading or writing a blob failed. The message is for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// A recorded piece is gone or shorter than recorded: staged data changed underneath.
    #[error("blob piece missing or short: {0}")]
    Missing(String),
    #[error("blob storage: {0}")]
    Io(String),
}

/// Object storage as the federated-learning logic needs it: ranged reads of piece lists, whole
/// puts and deletes. R2 in the worker; a map in native tests.
#[allow(async_fn_in_trait)] // Workers are single-threaded: no `Send` bound is wanted.
pub trait Blobs {
    /// Bytes `range` of the blob made of `pieces`; exactly `range.end - range.start` of them.
    async fn read(&self, pieces: &[Piece], range: Range<u64>) -> Result<Vec<u8>, BlobError>;
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), BlobError>;
    /// Deletes the keys; a missing key is not an error.
    async fn delete(&self, keys: Vec<String>) -> Result<(), BlobError>;
}

/// Cuts a stream of output bytes into pieces of [`WRITE_PIECE`] bytes named `{prefix}/{n:05}`.
/// The writer decides what to flush; the caller stores each flushed piece.
#[derive(Debug)]
pub struct PieceCutter {
    prefix: String,
    buf: Vec<u8>,
    pieces: Vec<Piece>,
}

impl PieceCutter {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            buf: Vec::new(),
            pieces: Vec::new(),
        }
    }

    /// Appends bytes; returns the full pieces to store now, with their keys.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while self.buf.len() >= WRITE_PIECE {
            let rest = self.buf.split_off(WRITE_PIECE);
            let full = std::mem::replace(&mut self.buf, rest);
            out.push(self.name(full));
        }
        out
    }

    /// The pieces cut so far (to delete them if the writer gives up).
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The last, partial piece (if any) to store, and the list of every piece.
    pub fn finish(mut self) -> (Option<(String, Vec<u8>)>, Vec<Piece>) {
        let last = if self.buf.is_empty() {
            None
        } else {
            let b = std::mem::take(&mut self.buf);
            Some(self.name(b))
        };
        (last, self.pieces)
    }

    fn name(&mut self, bytes: Vec<u8>) -> (String, Vec<u8>) {
        let key = format!("{}/{:05}", self.prefix, self.pieces.len());
        self.pieces.push(Piece {
            key: key.clone(),
            size: bytes.len() as u64,
        });
        (key, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(key: &str, size: u64) -> Piece {
        Piece {
            key: key.into(),
            size,
        }
    }

    #[test]
    fn spans_cross_piece_edges() {
        let pieces = [p("a", 10), p("b", 5), p("c", 10)];
        assert_eq!(
            spans(&pieces, 8..17),
            vec![
                Span {
                    index: 0,
                    offset: 8,
                    len: 2
                },
                Span {
                    index: 1,
                    offset: 0,
                    len: 5
                },
                Span {
                    index: 2,
                    offset: 0,
                    len: 2
                },
            ]
        );
        assert_eq!(spans(&pieces, 3..3), vec![]);
        assert_eq!(spans(&pieces, 20..40).iter().map(|s| s.len).sum::<u64>(), 5);
        assert_eq!(total(&pieces), 25);
    }

    #[test]
    fn windows_are_bounded_and_cover() {
        let w: Vec<_> = windows(5..READ_WINDOW * 2 + 10).collect();
        assert_eq!(w.len(), 3);
        assert_eq!(w[0], 5..READ_WINDOW + 5);
        assert_eq!(w[2].end, READ_WINDOW * 2 + 10);
        assert_eq!(windows(7..7).count(), 0);
    }

    #[test]
    fn cutter_names_pieces_in_order() {
        let mut c = PieceCutter::new("x");
        assert!(c.push(&vec![1u8; WRITE_PIECE - 1]).is_empty());
        let full = c.push(&[2, 3]);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].0, "x/00000");
        assert_eq!(full[0].1.len(), WRITE_PIECE);
        let (last, pieces) = c.finish();
        assert_eq!(last.map(|(k, b)| (k, b.len())), Some(("x/00001".into(), 1)));
        assert_eq!(total(&pieces), WRITE_PIECE as u64 + 1);
    }
}
