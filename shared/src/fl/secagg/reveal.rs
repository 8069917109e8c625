//! Stage 4 uploads: what one surviving device reveals so the server can unmask.
//!
//! The server names the survivors and the dropped; each survivor answers, in that order, with its
//! share of every survivor's `rd_seed` (40 bytes) and of every dropped device's `sk1` (132 bytes),
//! as the SDK's `unmask` does. An empty entry means the holder never received that device's
//! shares; it is skipped, and reconstruction later needs `t` shares from the others. Every share
//! a device reveals is a point at its own x, so a share at any other x is refused: a device must
//! not be able to speak for another holder and skew the interpolation.

use super::shamir::{Share, ShareFormatError, Sk1Share};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RevealError {
    #[error("the reveal lists {got} devices, the request named {expected}")]
    DeviceCount { expected: usize, got: usize },
    #[error("entry {position} names device {got}, the request named {expected} there")]
    DeviceOrder {
        position: usize,
        expected: u32,
        got: u32,
    },
    #[error("holder {holder} revealed a share at x = {x}")]
    WrongHolder { holder: u32, x: u32 },
    #[error("the share for device {device} is malformed: {error}")]
    Share {
        device: u32,
        error: ShareFormatError,
    },
}

/// One holder's parsed reveal: (device, share) pairs, absent entries left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reveal {
    pub self_mask_seed_shares: Vec<(u32, Share)>,
    pub sk1_shares: Vec<(u32, Sk1Share)>,
}

/// Parses `holder`'s answer to a request that named `survivors` and then `dropped`; `devices`
/// and `shares` are the SDK's `(node_ids, shares)` pair.
pub fn parse_reveal(
    holder: u32,
    survivors: &[u32],
    dropped: &[u32],
    devices: &[u32],
    shares: &[&[u8]],
) -> Result<Reveal, RevealError> {
    let expected = survivors.len() + dropped.len();
    if devices.len() != expected || shares.len() != expected {
        return Err(RevealError::DeviceCount {
            expected,
            got: devices.len().max(shares.len()),
        });
    }
    let mut reveal = Reveal::default();
    let requested = survivors.iter().chain(dropped);
    for (position, ((&named, &device), bytes)) in requested.zip(devices).zip(shares).enumerate() {
        if named != device {
            return Err(RevealError::DeviceOrder {
                position,
                expected: named,
                got: device,
            });
        }
        if bytes.is_empty() {
            continue;
        }
        let malformed = |error| RevealError::Share { device, error };
        let x = if position < survivors.len() {
            let share = Share::parse(bytes).map_err(malformed)?;
            reveal.self_mask_seed_shares.push((device, share));
            share.x
        } else {
            let share = Sk1Share::parse(bytes).map_err(malformed)?;
            reveal.sk1_shares.push((device, share));
            share.x
        };
        if x != holder {
            return Err(RevealError::WrongHolder { holder, x });
        }
    }
    Ok(reveal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fl::secagg::field::FieldElement;

    fn seed_share(x: u32) -> Vec<u8> {
        Share {
            x,
            y: FieldElement::ONE,
        }
        .to_bytes()
        .to_vec()
    }

    fn sk1_share(x: u32) -> Vec<u8> {
        Sk1Share {
            x,
            chunks: [FieldElement::ONE; 3],
        }
        .to_bytes()
        .to_vec()
    }

    #[test]
    fn shares_are_sorted_by_kind_and_empty_entries_skipped() {
        let (a, b, c) = (seed_share(2), sk1_share(2), Vec::new());
        let reveal = parse_reveal(2, &[1, 2], &[3, 4], &[1, 2, 3, 4], &[&a, &c, &b, &c]).unwrap();
        assert_eq!(reveal.self_mask_seed_shares.len(), 1);
        assert_eq!(reveal.self_mask_seed_shares[0].0, 1);
        assert_eq!(reveal.sk1_shares.len(), 1);
        assert_eq!(reveal.sk1_shares[0].0, 3);
    }

    #[test]
    fn a_share_at_another_x_is_refused() {
        let other = seed_share(5);
        assert_eq!(
            parse_reveal(2, &[1], &[], &[1], &[&other]),
            Err(RevealError::WrongHolder { holder: 2, x: 5 })
        );
    }

    #[test]
    fn the_devices_must_be_the_ones_asked_for_in_order() {
        let (a, b) = (seed_share(2), sk1_share(2));
        assert!(matches!(
            parse_reveal(2, &[1], &[3], &[3, 1], &[&a, &b]),
            Err(RevealError::DeviceOrder { position: 0, .. })
        ));
        assert!(matches!(
            parse_reveal(2, &[1], &[3], &[1], &[&a]),
            Err(RevealError::DeviceCount {
                expected: 2,
                got: 1
            })
        ));
        // A dropped device's entry must be an sk1 share, never a seed share.
        assert!(matches!(
            parse_reveal(2, &[1], &[3], &[1, 3], &[&a, &a]),
            Err(RevealError::Share { device: 3, .. })
        ));
    }
}
