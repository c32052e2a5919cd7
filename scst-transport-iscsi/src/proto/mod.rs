//! Sans-IO iSCSI protocol core (RFC 7143).
//!
//! Nothing here does I/O or depends on the SCSI core. The socket driver feeds
//! received bytes in and sends the bytes this module produces:
//!
//! * [`bhs`]: zero-copy [`Bhs`] view of the 48-byte Basic Header Segment, AHS
//!   parsing, protocol constants as newtypes, PDU length computation.
//! * [`build`]: allocation-free header builders for every target PDU (and the
//!   initiator PDUs a test initiator needs).
//! * [`digest`]: CRC32C header and data digests.
//! * [`text`]: key=value text segment parsing and building.
//! * [`params`]: negotiated parameters and the target's limits.
//! * [`chap`]: CHAP responses and secrets.
//! * [`login`]: the login state machine (one per connection).
//! * [`text_phase`]: Text Request handling in the full feature phase
//!   (SendTargets, renegotiation).

pub mod bhs;
pub mod build;
pub mod chap;
pub mod digest;
pub mod login;
pub mod params;
pub mod text;
pub mod text_phase;

pub use bhs::{Bhs, Digests, Opcode, PduError};
pub use login::{LoginMachine, LoginOutcome, LoginPolicy, LoginStatus, LoginStep};
pub use params::{SessionParams, SessionType, TargetLimits};

/// A complete PDU built by this module: the BHS and the (unpadded) data
/// segment. Login and Text responses carry no AHS.
#[derive(Clone, PartialEq, Eq)]
pub struct OwnedPdu {
    /// The 48-byte BHS (DataSegmentLength already set to `data.len()`).
    pub bhs: [u8; bhs::BHS_LEN],
    /// The data segment without padding.
    pub data: Vec<u8>,
}

impl OwnedPdu {
    /// A view of the header.
    pub fn header(&self) -> Bhs<&[u8]> {
        Bhs::from_array(&self.bhs)
    }

    /// Append the PDU as sent on the wire to `out`: BHS, optional header
    /// digest, data, zero padding and optional data digest.
    pub fn write_to(&self, out: &mut Vec<u8>, digests: Digests) {
        out.extend_from_slice(&self.bhs);
        if digests.header {
            out.extend_from_slice(&digest::header_digest(&self.bhs, &[]));
        }
        if !self.data.is_empty() {
            let pad = bhs::pad_len(self.data.len());
            out.extend_from_slice(&self.data);
            out.extend_from_slice(&[0u8; 3][..pad]);
            if digests.data {
                out.extend_from_slice(&digest::data_digest([&self.data[..]], pad));
            }
        }
    }

    /// The PDU as wire bytes without digests (login phase).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(bhs::BHS_LEN + bhs::padded_len(self.data.len()));
        self.write_to(&mut v, Digests::default());
        v
    }
}

impl core::fmt::Debug for OwnedPdu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OwnedPdu").field("bhs", &self.header()).field("data_len", &self.data.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_pdu_wire_layout() {
        let mut bhs = [0u8; 48];
        bhs[0] = 0x24;
        bhs[7] = 5;
        let p = OwnedPdu { bhs, data: b"A=1\0\0".to_vec() };
        assert_eq!(p.to_bytes().len(), 48 + 8);
        let mut v = Vec::new();
        p.write_to(&mut v, Digests { header: true, data: true });
        assert_eq!(v.len(), 48 + 4 + 8 + 4);
        assert_eq!(&v[48..52], &digest::header_digest(&bhs, &[]));
        assert_eq!(&v[52..60], b"A=1\0\0\0\0\0");
        assert_eq!(&v[60..64], &digest::data_digest([&v[52..60]], 0));
        // The parts splitter finds the same pieces again.
        let parts = bhs::PduParts::split(&v, Digests { header: true, data: true }).unwrap();
        assert_eq!(parts.data, b"A=1\0\0");
        assert!(digest::verify(parts.data_digest.unwrap(), digest::data_digest_with_pad(parts.data, parts.pad)));
        // No data: no data digest.
        let empty = OwnedPdu { bhs: [0; 48], data: Vec::new() };
        let mut v = Vec::new();
        empty.write_to(&mut v, Digests { header: false, data: true });
        assert_eq!(v.len(), 48);
    }
}
