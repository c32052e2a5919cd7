//! FCoE encapsulation (FC-BB-5 §7): an FC frame in an Ethernet frame.
//!
//! ```text
//! Ethernet: destination (6), source (6), [802.1Q tag (4)], ethertype 8906h
//! FCoE header (14): version (high 4 bits of byte 0; 0), 12 reserved bytes, SOF
//! FC frame: header (24) + payload (with fill bytes)
//! trailer (8): FC CRC-32 of the FC frame (little-endian, as Linux's fcoe writes it), EOF,
//!              3 reserved bytes
//! ```
//!
//! An FC frame of 2112 payload bytes needs an Ethernet payload of 2158 bytes: full-size FC
//! frames need an MTU of at least 2158 (use 2500 or jumbo frames); a 1500-byte MTU limits FC
//! payloads to 1500 - 14 - 24 - 8 = 1454 bytes, rounded down to 1452.

use crate::frame::{FCtl, FrameHeader, HEADER_LEN};

/// Ethertype of FCoE.
pub const ETH_P_FCOE: u16 = 0x8906;
/// Ethertype of FIP.
pub const ETH_P_FIP: u16 = 0x8914;
/// Ethertype of an 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// Ethernet header length (untagged).
pub const ETH_HLEN: usize = 14;
/// FCoE header length.
pub const FCOE_HLEN: usize = 14;
/// FCoE trailer length (CRC, EOF, reserved).
pub const FCOE_TLEN: usize = 8;
/// Bytes of an Ethernet payload an FCoE frame adds around the FC frame.
pub const FCOE_OVERHEAD: usize = FCOE_HLEN + FCOE_TLEN;

/// Start-of-frame delimiters (FC-BB-5 table 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sof(pub u8);

impl Sof {
    /// SOFf (fabric).
    pub const F: Self = Self(0x28);
    /// SOFi2.
    pub const I2: Self = Self(0x2d);
    /// SOFi3: first frame of a class 3 sequence.
    pub const I3: Self = Self(0x2e);
    /// SOFn2.
    pub const N2: Self = Self(0x35);
    /// SOFn3: other frames of a class 3 sequence.
    pub const N3: Self = Self(0x36);

    /// Whether this is one of the encodings FC-BB-5 defines.
    pub fn is_valid(self) -> bool {
        matches!(self.0, 0x28 | 0x29 | 0x2d | 0x2e | 0x31 | 0x35 | 0x36 | 0x39)
    }
}

/// End-of-frame delimiters (FC-BB-5 table 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eof(pub u8);

impl Eof {
    /// EOFn: the sequence continues.
    pub const N: Self = Self(0x41);
    /// EOFt: last frame of the sequence.
    pub const T: Self = Self(0x42);
    /// EOFni (invalid).
    pub const NI: Self = Self(0x49);
    /// EOFa (aborted).
    pub const A: Self = Self(0x50);

    /// Whether this is one of the encodings FC-BB-5 defines.
    pub fn is_valid(self) -> bool {
        matches!(self.0, 0x41 | 0x42 | 0x44 | 0x46 | 0x49 | 0x4e | 0x4f | 0x50)
    }
}

/// Why an Ethernet frame is not a valid FCoE frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FcoeError {
    /// Shorter than the headers and trailer.
    #[error("FCoE frame too short ({0} bytes)")]
    Truncated(usize),
    /// Another ethertype.
    #[error("ethertype {0:#06x} is not FCoE")]
    NotFcoe(u16),
    /// FCoE version other than 0.
    #[error("FCoE version {0}")]
    Version(u8),
    /// SOF or EOF not a defined code.
    #[error("bad SOF {0:#04x} or EOF {1:#04x}")]
    Delimiter(u8, u8),
    /// The FC CRC does not match.
    #[error("FC CRC mismatch: frame says {found:#010x}, computed {computed:#010x}")]
    Crc {
        /// CRC in the frame.
        found: u32,
        /// CRC of the bytes.
        computed: u32,
    },
}

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC_TABLE: [u32; 256] = crc_table();

/// The FC CRC-32 (the IEEE 802.3 polynomial, reflected, initial and final inversion).
pub fn fc_crc(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| CRC_TABLE[usize::from((c as u8) ^ b)] ^ (c >> 8))
}

/// A received FCoE frame: addresses, delimiters and the FC frame (header and payload, CRC
/// checked, trailer removed).
#[derive(Clone, Copy, Debug)]
pub struct FcoeFrame<'a> {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// Start of frame.
    pub sof: Sof,
    /// End of frame.
    pub eof: Eof,
    /// The FC frame.
    pub fc: &'a [u8],
}

/// The ethertype of an Ethernet frame and where its payload starts (skipping one 802.1Q tag).
pub fn ethertype(eth: &[u8]) -> Option<(u16, usize)> {
    let t = u16::from_be_bytes([*eth.get(12)?, *eth.get(13)?]);
    if t == ETH_P_8021Q {
        return Some((u16::from_be_bytes([*eth.get(16)?, *eth.get(17)?]), 18));
    }
    Some((t, ETH_HLEN))
}

fn mac(b: &[u8]) -> [u8; 6] {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[..6]);
    m
}

/// Parses an Ethernet frame (without the Ethernet FCS) carrying FCoE. The trailer is the last
/// 8 bytes: an FCoE frame is at least 60 bytes, the Ethernet minimum, so it never carries
/// Ethernet padding.
///
/// # Errors
/// [`FcoeError`] for anything but a well-formed FCoE frame with a correct CRC.
pub fn decap(eth: &[u8]) -> Result<FcoeFrame<'_>, FcoeError> {
    let (t, at) = ethertype(eth).ok_or(FcoeError::Truncated(eth.len()))?;
    if t != ETH_P_FCOE {
        return Err(FcoeError::NotFcoe(t));
    }
    if eth.len() < at + FCOE_HLEN + HEADER_LEN + FCOE_TLEN {
        return Err(FcoeError::Truncated(eth.len()));
    }
    let ver = eth[at] >> 4;
    if ver != 0 {
        return Err(FcoeError::Version(ver));
    }
    let sof = Sof(eth[at + FCOE_HLEN - 1]);
    let tail = eth.len() - FCOE_TLEN;
    let eof = Eof(eth[tail + 4]);
    if !sof.is_valid() || !eof.is_valid() {
        return Err(FcoeError::Delimiter(sof.0, eof.0));
    }
    let fc = &eth[at + FCOE_HLEN..tail];
    let found = u32::from_le_bytes([eth[tail], eth[tail + 1], eth[tail + 2], eth[tail + 3]]);
    let computed = fc_crc(fc);
    if found != computed {
        return Err(FcoeError::Crc { found, computed });
    }
    Ok(FcoeFrame { dst: mac(eth), src: mac(&eth[6..]), sof, eof, fc })
}

/// The delimiters libfc uses for an FC frame of class 3: SOFi3 on the first frame of a
/// sequence (SEQ_CNT 0), else SOFn3; EOFt on the last (F_CTL END_SEQ), else EOFn.
pub fn delimiters(fc: &[u8]) -> (Sof, Eof) {
    let Some(h) = fc.first_chunk::<HEADER_LEN>() else { return (Sof::I3, Eof::T) };
    let h = FrameHeader::new(h);
    let sof = if h.seq_cnt() == 0 { Sof::I3 } else { Sof::N3 };
    let eof = if h.f_ctl().has(FCtl::END_SEQ) { Eof::T } else { Eof::N };
    (sof, eof)
}

/// Appends the Ethernet frame carrying `fc` (header and payload, fill included) to `out`.
pub fn encap(dst: [u8; 6], src: [u8; 6], fc: &[u8], out: &mut Vec<u8>) {
    let (sof, eof) = delimiters(fc);
    out.reserve(ETH_HLEN + FCOE_OVERHEAD + fc.len());
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    out.extend_from_slice(&ETH_P_FCOE.to_be_bytes());
    out.extend_from_slice(&[0u8; 13]);
    out.push(sof.0);
    out.extend_from_slice(fc);
    out.extend_from_slice(&fc_crc(fc).to_le_bytes());
    out.extend_from_slice(&[eof.0, 0, 0, 0]);
}

/// The largest FC payload an interface MTU carries (a multiple of 4, at most 2112).
pub fn max_fc_payload(mtu: usize) -> u16 {
    let room = mtu.saturating_sub(FCOE_OVERHEAD + HEADER_LEN) & !3;
    room.min(2112) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::HeaderBuilder;

    #[test]
    fn crc_matches_the_ieee_check_value() {
        assert_eq!(fc_crc(b"123456789"), 0xcbf4_3926);
        assert_eq!(fc_crc(b""), 0);
    }

    #[test]
    fn encap_layout_and_round_trip() {
        let fc = HeaderBuilder { r_ctl: 0x22, d_id: 0x0a0b0c, s_id: 1, f_ctl: FCtl::END_SEQ, ..Default::default() }
            .frame(&[1, 2, 3, 4]);
        let mut e = Vec::new();
        encap([0xe; 6], [0xf; 6], &fc, &mut e);
        assert_eq!(e.len(), 14 + 14 + 28 + 8);
        assert_eq!(&e[12..14], &[0x89, 0x06]);
        assert_eq!(e[14] >> 4, 0, "version 0");
        assert_eq!(e[27], Sof::I3.0, "SEQ_CNT 0: SOFi3");
        assert_eq!(&e[28..56], &fc[..]);
        assert_eq!(&e[56..60], &fc_crc(&fc).to_le_bytes());
        assert_eq!(&e[60..], &[Eof::T.0, 0, 0, 0]);
        let d = decap(&e).unwrap();
        assert_eq!((d.dst, d.src, d.sof, d.eof, d.fc), ([0xe; 6], [0xf; 6], Sof::I3, Eof::T, &fc[..]));
        // A middle frame of a sequence.
        let fc2 = HeaderBuilder { seq_cnt: 3, ..Default::default() }.frame(&[]);
        assert_eq!(delimiters(&fc2), (Sof::N3, Eof::N));
    }

    #[test]
    fn bad_frames_are_refused() {
        let fc = HeaderBuilder::default().frame(&[9; 8]);
        let mut e = Vec::new();
        encap([1; 6], [2; 6], &fc, &mut e);
        let mut bad = e.clone();
        bad[40] ^= 1;
        assert!(matches!(decap(&bad), Err(FcoeError::Crc { .. })));
        bad = e.clone();
        bad[14] = 0x10;
        assert_eq!(decap(&bad).unwrap_err(), FcoeError::Version(1));
        bad = e.clone();
        bad[27] = 0x99;
        assert!(matches!(decap(&bad), Err(FcoeError::Delimiter(0x99, _))));
        bad = e.clone();
        bad[13] = 0x00;
        assert_eq!(decap(&bad).unwrap_err(), FcoeError::NotFcoe(0x8900));
        assert!(matches!(decap(&e[..50]), Err(FcoeError::Truncated(50))));
        assert!(decap(&[]).is_err());
        // An 802.1Q tag in front of the ethertype.
        let mut tagged = e[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&e[12..]);
        assert_eq!(decap(&tagged).unwrap().fc, &fc[..]);
    }

    #[test]
    fn payload_size_from_mtu() {
        assert_eq!(max_fc_payload(1500), 1452);
        assert_eq!(max_fc_payload(2500), 2112);
        assert_eq!(max_fc_payload(9000), 2112);
        assert_eq!(max_fc_payload(10), 0);
    }
}
