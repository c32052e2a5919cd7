//! Basic link services (FC-FS-3 §15): ABTS and its BA_ACC / BA_RJT replies.
//!
//! ABTS has no payload; bit 0 of its parameter field distinguishes "abort sequence" (1) from
//! "abort exchange" (0). A FCP initiator aborts exchanges.

use crate::WireError;

/// Length of a BA_ACC payload.
pub const BA_ACC_LEN: usize = 12;
/// Length of a BA_RJT payload.
pub const BA_RJT_LEN: usize = 4;

/// BA_ACC byte 0: the SEQ_ID field is valid.
pub const SEQ_ID_VALID: u8 = 0x80;

/// BA_RJT reason codes (FC-FS-3 table 142).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaRjtReason(pub u8);

impl BaRjtReason {
    /// Invalid command code.
    pub const INVALID_CMD: Self = Self(0x01);
    /// Logical error.
    pub const LOGICAL_ERROR: Self = Self(0x03);
    /// Logical busy.
    pub const BUSY: Self = Self(0x05);
    /// Protocol error.
    pub const PROTOCOL_ERROR: Self = Self(0x07);
    /// Unable to perform the request.
    pub const UNABLE: Self = Self(0x09);
}

/// BA_RJT explanations (FC-FS-3 table 143).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaRjtExplanation(pub u8);

impl BaRjtExplanation {
    /// No additional explanation.
    pub const NONE: Self = Self(0x00);
    /// Invalid OX_ID-RX_ID combination.
    pub const INVALID_XID: Self = Self(0x03);
    /// Sequence aborted, no sequence information provided.
    pub const SEQ_ABORTED: Self = Self(0x05);
}

/// A BA_ACC: byte 0 SEQ_ID valid, 1 SEQ_ID of the last deliverable sequence, 4..6 OX_ID,
/// 6..8 RX_ID, 8..10 low SEQ_CNT, 10..12 high SEQ_CNT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaAcc {
    /// The last deliverable sequence, when there is one.
    pub seq_id: Option<u8>,
    /// OX_ID of the aborted exchange.
    pub ox_id: u16,
    /// RX_ID of the aborted exchange.
    pub rx_id: u16,
    /// Lowest SEQ_CNT aborted.
    pub low_seq_cnt: u16,
    /// Highest SEQ_CNT aborted.
    pub high_seq_cnt: u16,
}

impl BaAcc {
    /// The payload bytes.
    pub fn build(&self) -> [u8; BA_ACC_LEN] {
        let mut p = [0u8; BA_ACC_LEN];
        if let Some(s) = self.seq_id {
            p[0] = SEQ_ID_VALID;
            p[1] = s;
        }
        p[4..6].copy_from_slice(&self.ox_id.to_be_bytes());
        p[6..8].copy_from_slice(&self.rx_id.to_be_bytes());
        p[8..10].copy_from_slice(&self.low_seq_cnt.to_be_bytes());
        p[10..12].copy_from_slice(&self.high_seq_cnt.to_be_bytes());
        p
    }

    /// Parses a BA_ACC payload.
    ///
    /// # Errors
    /// [`WireError::Truncated`] below 12 bytes.
    pub fn parse(p: &[u8]) -> Result<Self, WireError> {
        let p: &[u8; BA_ACC_LEN] = p.get(..BA_ACC_LEN).and_then(|s| s.try_into().ok()).ok_or(WireError::Truncated {
            what: "BA_ACC",
            need: BA_ACC_LEN,
            have: p.len(),
        })?;
        let b16 = |at: usize| u16::from_be_bytes([p[at], p[at + 1]]);
        Ok(Self {
            seq_id: (p[0] & SEQ_ID_VALID != 0).then_some(p[1]),
            ox_id: b16(4),
            rx_id: b16(6),
            low_seq_cnt: b16(8),
            high_seq_cnt: b16(10),
        })
    }
}

/// Builds a BA_RJT payload: 1 reason, 2 explanation, 3 vendor unique.
pub fn build_ba_rjt(reason: BaRjtReason, explanation: BaRjtExplanation) -> [u8; BA_RJT_LEN] {
    [0, reason.0, explanation.0, 0]
}

/// Parses a BA_RJT payload.
///
/// # Errors
/// [`WireError::Truncated`] below 4 bytes.
pub fn parse_ba_rjt(p: &[u8]) -> Result<(BaRjtReason, BaRjtExplanation), WireError> {
    match p {
        [_, r, e, _, ..] => Ok((BaRjtReason(*r), BaRjtExplanation(*e))),
        _ => Err(WireError::Truncated { what: "BA_RJT", need: BA_RJT_LEN, have: p.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ba_acc_and_rjt_layouts() {
        let a = BaAcc { seq_id: None, ox_id: 0x1234, rx_id: 0x0042, low_seq_cnt: 0, high_seq_cnt: 0xffff };
        assert_eq!(a.build(), [0, 0, 0, 0, 0x12, 0x34, 0x00, 0x42, 0, 0, 0xff, 0xff]);
        assert_eq!(BaAcc::parse(&a.build()).unwrap(), a);
        let b = BaAcc { seq_id: Some(3), ..a };
        assert_eq!(&b.build()[..2], &[0x80, 3]);
        assert_eq!(BaAcc::parse(&b.build()).unwrap(), b);
        assert!(BaAcc::parse(&[0; 11]).is_err());
        let r = build_ba_rjt(BaRjtReason::UNABLE, BaRjtExplanation::INVALID_XID);
        assert_eq!(r, [0, 9, 3, 0]);
        assert_eq!(parse_ba_rjt(&r).unwrap(), (BaRjtReason::UNABLE, BaRjtExplanation::INVALID_XID));
        assert!(parse_ba_rjt(&r[..3]).is_err());
    }
}
