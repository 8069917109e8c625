//! Signed checkpoints of audit chains, in the C2SP formats: a `tlog-checkpoint` body carried in a
//! `signed-note` with one Ed25519 signature.
//!
//! ```text
//! audit.example.com/audit/org_0190c2a1b3d4e5f60718293a4b5c
//! 42
//! 3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
//!
//! — audit.example.com/audit/org_0190c2a1b3d4e5f60718293a4b5c BASE64(key id || signature)
//! ```
//!
//! The lines are the *origin* (which chain of which deployment), the *size* (events in the chain)
//! and the *root hash*. An audit chain is a hash chain, not a Merkle tree, so the "root hash"
//! here is the chain's head hash — the `hash` of its last event, which commits to every event
//! before it (all zeros for the empty chain). Consistency between two checkpoints of one chain is
//! then shown by recomputing the chain from the smaller to the larger, which is what `verify`
//! and an offline export check do.
//!
//! Why: the hash chain alone shows edits and gaps *inside* the stored history, but deleting the
//! newest events, or rewriting a tail and re-hashing it, leaves a chain that links up. A signed
//! checkpoint pins the size and head at the time it was issued; whoever keeps one (the
//! deployment, a customer) later detects a shorter or different chain, and nobody without the
//! key can sign a checkpoint for a rewritten one.
//!
//! The key is derived from the root secret (`KeyPurpose::AuditCheckpoints`). Following the
//! checkpoint spec, the key name in the signature line is the origin, so the key id (the first
//! four bytes of SHA-256 over name, newline, the type byte 0x01 and the public key) differs per
//! chain while the Ed25519 key is one. A verifier key is written
//! `<name>+<key id, 8 hex>+<base64(0x01 || public key)>`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_compact::{KeyPair, PublicKey, Seed, Signature};

use crate::crypto::kdf::{KeyPurpose, RootSecret};
use crate::crypto::sha256;

/// The signature type byte of plain Ed25519 signed-note signatures.
const ED25519: u8 = 0x01;
/// Notes larger than this are refused before any parsing (ours are ~250 bytes).
pub const MAX_NOTE_BYTES: usize = 4096;
/// At most this many signature lines are looked at (the spec asks verifiers to accept 16).
const MAX_SIGNATURES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the checkpoint is not a well-formed signed note")]
    Malformed,
    #[error("the checkpoint carries no signature by the expected key")]
    NoKnownSignature,
    #[error("the checkpoint's signature does not verify")]
    BadSignature,
    #[error("the verifier key is not valid")]
    BadVerifierKey,
    #[error("the checkpoint is for another chain")]
    WrongOrigin,
}

/// The state of one chain: its origin, how many events it holds, and its head hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub head_hash: [u8; 32],
}

/// The origin line of `chain`'s checkpoints at the deployment whose public URL is `issuer`:
/// a schema-less URL, unique per deployment and chain.
pub fn origin(issuer: &str, chain: &str) -> String {
    let host = issuer
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    format!("{host}/audit/{chain}")
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

impl Checkpoint {
    /// `head_hash` is the hex head hash of the chain (`hash` of its last event).
    pub fn new(origin: String, size: u64, head_hash_hex: &str) -> Option<Self> {
        let bytes = hex::decode(head_hash_hex).ok()?;
        Some(Self {
            origin,
            size,
            head_hash: bytes.try_into().ok()?,
        })
    }

    pub fn head_hash_hex(&self) -> String {
        hex::encode(self.head_hash)
    }

    /// The note text: origin, size, base64 root (head) hash, each ending in a newline.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.head_hash)
        )
    }

    fn parse_text(text: &str) -> Result<Self, CheckpointError> {
        let mut lines = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed)?
            .split('\n');
        let origin = lines.next().filter(|o| valid_name(o));
        let size = lines
            .next()
            .filter(|s| *s == "0" || !s.starts_with('0'))
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok());
        let hash = lines
            .next()
            .and_then(|h| STANDARD.decode(h).ok())
            .and_then(|h| <[u8; 32]>::try_from(h).ok());
        // Extension lines are allowed by the format, but we never write any: refuse them rather
        // than carry unauditable text.
        match (origin, size, hash, lines.next()) {
            (Some(o), Some(size), Some(head_hash), None) => Ok(Self {
                origin: o.to_owned(),
                size,
                head_hash,
            }),
            _ => Err(CheckpointError::Malformed),
        }
    }
}

fn key_id(name: &str, pk: &PublicKey) -> [u8; 4] {
    let mut input = Vec::with_capacity(name.len() + 34);
    input.extend_from_slice(name.as_bytes());
    input.push(b'\n');
    input.push(ED25519);
    input.extend_from_slice(pk.as_ref());
    let digest = sha256(&input);
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Signs checkpoints. Derived, never stored: every isolate and object derives the same key.
pub struct CheckpointSigner {
    pair: KeyPair,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointSigner(<redacted>)")
    }
}

impl CheckpointSigner {
    pub fn derive(root: &RootSecret) -> Self {
        let seed = root.derive(KeyPurpose::AuditCheckpoints);
        Self {
            pair: KeyPair::from_seed(Seed::new(seed)),
        }
    }

    pub fn public_key(&self) -> [u8; 32] {
        *self.pair.pk
    }

    /// The public key in standard base64, as published.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(*self.pair.pk)
    }

    /// The verifier for checkpoints of `origin`.
    pub fn verifier(&self, origin: &str) -> Result<NoteVerifier, CheckpointError> {
        NoteVerifier::new(origin, self.pair.pk)
    }

    /// The signed note: the checkpoint text, a blank line, and one signature line.
    pub fn sign(&self, cp: &Checkpoint) -> Result<String, CheckpointError> {
        if !valid_name(&cp.origin) {
            return Err(CheckpointError::Malformed);
        }
        let text = cp.text();
        let sig = self.pair.sk.sign(text.as_bytes(), None);
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&key_id(&cp.origin, &self.pair.pk));
        blob.extend_from_slice(sig.as_ref());
        Ok(format!(
            "{text}\n\u{2014} {} {}\n",
            cp.origin,
            STANDARD.encode(blob)
        ))
    }
}

/// A trusted key for one chain's checkpoints: its name (the origin), key id and public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    pk: PublicKey,
}

impl NoteVerifier {
    pub fn new(name: &str, pk: PublicKey) -> Result<Self, CheckpointError> {
        if !valid_name(name) {
            return Err(CheckpointError::BadVerifierKey);
        }
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, &pk),
            pk,
        })
    }

    /// The verifier for checkpoints of `name` from a public key published as standard base64
    /// (`GET /v1/audit/checkpoint-key`): what a customer or the CLI builds to check checkpoints
    /// and exports without asking the deployment.
    pub fn from_published(name: &str, public_key_base64: &str) -> Result<Self, CheckpointError> {
        let raw = STANDARD
            .decode(public_key_base64)
            .map_err(|_| CheckpointError::BadVerifierKey)?;
        let pk = PublicKey::from_slice(&raw).map_err(|_| CheckpointError::BadVerifierKey)?;
        Self::new(name, pk)
    }

    /// Parses `<name>+<key id hex>+<base64(0x01 || public key)>`, checking that the id matches.
    pub fn parse(vkey: &str) -> Result<Self, CheckpointError> {
        let bad = CheckpointError::BadVerifierKey;
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad);
        };
        let key = STANDARD.decode(key_b64).map_err(|_| bad.clone())?;
        let (Some(&ED25519), Some(raw)) = (key.first(), key.get(1..)) else {
            return Err(bad);
        };
        let pk = PublicKey::from_slice(raw).map_err(|_| bad.clone())?;
        let v = Self::new(name, pk)?;
        if id_hex.len() != 8 || hex::encode(v.id) != id_hex {
            return Err(bad);
        }
        Ok(v)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifies `note` and returns the checkpoint it signs, which must be for this key's origin.
    pub fn open(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let cp = Checkpoint::parse_text(self.verify(note)?)?;
        if cp.origin != self.name {
            return Err(CheckpointError::WrongOrigin);
        }
        Ok(cp)
    }

    /// Checks that this key signed `note` and returns the signed text (with its final newline).
    pub fn verify<'n>(&self, note: &'n str) -> Result<&'n str, CheckpointError> {
        if note.len() > MAX_NOTE_BYTES || note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(CheckpointError::Malformed);
        }
        // The text ends at the last blank line; it keeps its own final newline.
        let split = note.rfind("\n\n").ok_or(CheckpointError::Malformed)?;
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        let lines = signatures
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed)?
            .split('\n');
        let mut verified = false;
        for (n, line) in lines.enumerate() {
            if n >= MAX_SIGNATURES {
                return Err(CheckpointError::Malformed);
            }
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or(CheckpointError::Malformed)?;
            let (name, b64) = rest.split_once(' ').ok_or(CheckpointError::Malformed)?;
            let blob = STANDARD
                .decode(b64)
                .map_err(|_| CheckpointError::Malformed)?;
            if blob.len() < 4 {
                return Err(CheckpointError::Malformed);
            }
            // Signatures by other keys (a witness, a rotated key) are ignored, as the spec asks.
            if name != self.name || blob[..4] != self.id {
                continue;
            }
            let sig =
                Signature::from_slice(&blob[4..]).map_err(|_| CheckpointError::BadSignature)?;
            self.pk
                .verify(text.as_bytes(), &sig)
                .map_err(|_| CheckpointError::BadSignature)?;
            verified = true;
        }
        if verified {
            Ok(text)
        } else {
            Err(CheckpointError::NoKnownSignature)
        }
    }
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut key = Vec::with_capacity(33);
        key.push(ED25519);
        key.extend_from_slice(self.pk.as_ref());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            STANDARD.encode(key)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> CheckpointSigner {
        CheckpointSigner::derive(&RootSecret::new(&[9u8; 32]).unwrap())
    }

    fn checkpoint(size: u64) -> Checkpoint {
        Checkpoint::new(
            origin("https://audit.example.com/", "org_1"),
            size,
            &"ab".repeat(32),
        )
        .unwrap()
    }

    #[test]
    fn signs_the_c2sp_layout_and_verifies() {
        let s = signer();
        let cp = checkpoint(42);
        let note = s.sign(&cp).unwrap();
        let lines: Vec<&str> = note.split('\n').collect();
        assert_eq!(lines[0], "audit.example.com/audit/org_1");
        assert_eq!(lines[1], "42");
        assert_eq!(STANDARD.decode(lines[2]).unwrap(), vec![0xab; 32]);
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("\u{2014} audit.example.com/audit/org_1 "));
        assert_eq!(lines[5], "");
        let sig = STANDARD
            .decode(lines[4].rsplit(' ').next().unwrap())
            .unwrap();
        assert_eq!(sig.len(), 4 + 64);

        let v = s.verifier(&cp.origin).unwrap();
        assert_eq!(v.open(&note).unwrap(), cp);
        assert_eq!(
            NoteVerifier::from_published(&cp.origin, &s.public_key_base64()).unwrap(),
            v
        );
        // The published verifier key parses back to the same key, and its id is checked.
        let vkey = v.to_string();
        assert!(vkey.starts_with("audit.example.com/audit/org_1+"));
        assert_eq!(NoteVerifier::parse(&vkey).unwrap(), v);
        let mut wrong_id = vkey.clone();
        wrong_id.replace_range(31..32, if &vkey[31..32] == "0" { "1" } else { "0" });
        assert_eq!(
            NoteVerifier::parse(&wrong_id),
            Err(CheckpointError::BadVerifierKey)
        );
    }

    /// The key id rule, the verifier key layout and the signature check, against a key and a
    /// note published by a third party: the Go checksum database's (`GOSUMDB` default), whose
    /// key id and signature were computed by Go's `golang.org/x/mod/sumdb/note`, not this code.
    #[test]
    fn verifies_a_note_signed_elsewhere() {
        const GO_VKEY: &str =
            "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
        const GO_NOTE: &str = "go.sum database tree\n65664258\n\
            WVVNVD2qx+fTq31zkj6UAqxT5X6HvGphGM+o8Thnbsg=\n\n\u{2014} sum.golang.org \
            Az3grligJmgX7KGyGPKybykNTh3VgsbLvUuvOwrM5zLVlulmFp2wdvbxOw74/gcNxURShXEpb7RXcs3+BYflYN+w0gQ=\n";
        let v = NoteVerifier::parse(GO_VKEY).unwrap();
        assert_eq!(v.name(), "sum.golang.org");
        assert_eq!(v.to_string(), GO_VKEY);
        assert_eq!(
            v.verify(GO_NOTE).unwrap(),
            "go.sum database tree\n65664258\nWVVNVD2qx+fTq31zkj6UAqxT5X6HvGphGM+o8Thnbsg=\n"
        );
        assert_eq!(
            v.verify(&GO_NOTE.replace("65664258", "65664259")),
            Err(CheckpointError::BadSignature)
        );
        assert_eq!(
            NoteVerifier::parse(&GO_VKEY.replace("033de0ae", "033de0af")),
            Err(CheckpointError::BadVerifierKey)
        );
        // Its origin has spaces: a valid note, but not one of our checkpoints.
        assert_eq!(v.open(GO_NOTE), Err(CheckpointError::Malformed));
    }

    #[test]
    fn tampered_or_foreign_notes_are_refused() {
        let s = signer();
        let cp = checkpoint(7);
        let note = s.sign(&cp).unwrap();
        let v = s.verifier(&cp.origin).unwrap();

        // A changed size or hash no longer matches the signature.
        let bigger = note.replacen("\n7\n", "\n8\n", 1);
        assert_eq!(v.open(&bigger), Err(CheckpointError::BadSignature));
        // Another chain's checkpoint, signed by the same key, is not this chain's.
        let other = s
            .sign(&Checkpoint {
                origin: origin("audit.example.com", "org_2"),
                ..cp.clone()
            })
            .unwrap();
        assert_eq!(v.open(&other), Err(CheckpointError::NoKnownSignature));
        // Another key's signature under our name is ignored, so nothing known verifies.
        let impostor = CheckpointSigner::derive(&RootSecret::new(&[8u8; 32]).unwrap());
        assert_eq!(
            v.open(&impostor.sign(&cp).unwrap()),
            Err(CheckpointError::NoKnownSignature)
        );
        // Extra unknown signatures are fine; ours still verifies.
        let cosigned = format!("{note}\u{2014} witness.example AAAAAAAA\n");
        assert_eq!(v.open(&cosigned).unwrap(), cp);
        for junk in [
            "",
            "\n\n",
            "no blank line\n",
            &note.replace('\n', "\r\n"),
            &note[..note.len() - 1],
            &format!("x\n{note}").replace("x\n", "x\u{7}\n"),
        ] {
            assert!(v.open(junk).is_err(), "{junk:?}");
        }
        assert_eq!(
            v.open(&"a".repeat(MAX_NOTE_BYTES + 1)),
            Err(CheckpointError::Malformed)
        );
    }

    #[test]
    fn text_parsing_is_strict() {
        let good = checkpoint(3).text();
        assert_eq!(Checkpoint::parse_text(&good).unwrap(), checkpoint(3));
        for bad in [
            good.replace("\n3\n", "\n03\n"),
            good.replace("\n3\n", "\n-3\n"),
            good.replace("\n3\n", "\n\n"),
            format!("{good}extension\n"),
            good.trim_end().to_owned(),
            good.replace("audit.example.com", "has space"),
        ] {
            assert_eq!(
                Checkpoint::parse_text(&bad),
                Err(CheckpointError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            Checkpoint::parse_text(&checkpoint(0).text()).unwrap().size,
            0
        );
    }
}
