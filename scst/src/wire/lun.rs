//! SAM-5 logical unit numbers: the 8-byte wire form and the flat number the target uses.

use core::fmt;

/// A logical unit number as the target numbers its LUN maps (0..=16383).
///
/// On the wire a LUN is 8 bytes (SAM-5 §4.7). Numbers below 256 use the peripheral device
/// addressing method (`00 nn 00 00 ...`), larger ones the flat space method (`01bb bbbb ...`),
/// as Linux, Windows and ESXi expect.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lun(pub u16);

impl Lun {
    /// Largest LUN a single-level address can carry.
    pub const MAX: u16 = 0x3fff;

    /// Encodes this LUN in its 8-byte SAM form.
    pub fn to_sam(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        if self.0 < 256 {
            b[1] = self.0 as u8;
        } else {
            b[0] = 0x40 | ((self.0 >> 8) as u8 & 0x3f);
            b[1] = self.0 as u8;
        }
        b
    }

    /// Decodes an 8-byte SAM LUN. Returns `None` for addressing methods or levels this target
    /// does not use (such LUNs are never in a LUN map, so the command gets LOGICAL UNIT NOT
    /// SUPPORTED).
    pub fn from_sam(b: [u8; 8]) -> Option<Self> {
        if b[2..] != [0; 6] {
            return None;
        }
        match b[0] >> 6 {
            // Peripheral device addressing, bus 0.
            0b00 if b[0] == 0 => Some(Self(u16::from(b[1]))),
            // Flat space addressing.
            0b01 => Some(Self(u16::from(b[0] & 0x3f) << 8 | u16::from(b[1]))),
            _ => None,
        }
    }

    /// Decodes the big-endian u64 form fabrics often carry.
    pub fn from_sam_u64(v: u64) -> Option<Self> {
        Self::from_sam(v.to_be_bytes())
    }
}

impl fmt::Debug for Lun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lun({})", self.0)
    }
}

impl fmt::Display for Lun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for n in [0u16, 1, 255, 256, 1000, Lun::MAX] {
            assert_eq!(Lun::from_sam(Lun(n).to_sam()), Some(Lun(n)));
        }
        assert_eq!(Lun(5).to_sam(), [0, 5, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Lun(0x1234).to_sam(), [0x52, 0x34, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn rejects_other_methods() {
        assert_eq!(Lun::from_sam([0x80, 1, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(Lun::from_sam([0, 1, 0, 1, 0, 0, 0, 0]), None);
        // Well-known LUN (extended addressing C1h) is not a regular LUN.
        assert_eq!(Lun::from_sam([0xc1, 0x01, 0, 0, 0, 0, 0, 0]), None);
        // Peripheral addressing with a non-zero bus number.
        assert_eq!(Lun::from_sam([0x01, 0x01, 0, 0, 0, 0, 0, 0]), None);
    }
}
