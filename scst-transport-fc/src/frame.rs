//! The FC-2 frame header (FC-FS-3 §9 "Frame_Header", 24 bytes).
//!
//! ```text
//! byte  0      1..4    4       5..8   8     9..12   12      13      14..16   16..18 18..20 20..24
//!       R_CTL  D_ID    CS_CTL  S_ID   TYPE  F_CTL   SEQ_ID  DF_CTL  SEQ_CNT  OX_ID  RX_ID  parameter
//! ```
//!
//! All multi-byte fields are big-endian. [`FrameHeader`] is a zero-copy view over received
//! bytes; [`HeaderBuilder`] writes one.

use crate::WireError;

/// Length of the frame header.
pub const HEADER_LEN: usize = 24;

/// The unassigned exchange identifier (FC-FS-3: OX_ID/RX_ID FFFFh).
pub const XID_UNKNOWN: u16 = 0xffff;

/// The well-known address of the fabric F_Port (FLOGI is sent to it).
pub const FLOGI_DID: u32 = 0x00ff_fffe;

/// Routing control (R_CTL) values used by this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RCtl(pub u8);

impl RCtl {
    /// Device data, solicited data (FCP_DATA).
    pub const SOL_DATA: Self = Self(0x01);
    /// Device data, unsolicited control.
    pub const UNSOL_CTL: Self = Self(0x02);
    /// Device data, solicited control.
    pub const SOL_CTL: Self = Self(0x03);
    /// Device data, data descriptor (FCP_XFER_RDY).
    pub const DATA_DESC: Self = Self(0x05);
    /// Device data, unsolicited command (FCP_CMND).
    pub const UNSOL_CMD: Self = Self(0x06);
    /// Device data, command status (FCP_RSP).
    pub const CMD_STATUS: Self = Self(0x07);
    /// Extended link service request.
    pub const ELS_REQ: Self = Self(0x22);
    /// Extended link service reply.
    pub const ELS_REP: Self = Self(0x23);
    /// Basic link service: No Operation.
    pub const BA_NOP: Self = Self(0x80);
    /// Basic link service: Abort Sequence (ABTS).
    pub const BA_ABTS: Self = Self(0x81);
    /// Basic link service: Remove Connection.
    pub const BA_RMC: Self = Self(0x82);
    /// Basic link service: Basic Accept.
    pub const BA_ACC: Self = Self(0x84);
    /// Basic link service: Basic Reject.
    pub const BA_RJT: Self = Self(0x85);
}

/// Data structure type (TYPE) values used by this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FcType(pub u8);

impl FcType {
    /// Basic link service.
    pub const BLS: Self = Self(0x00);
    /// Extended link service.
    pub const ELS: Self = Self(0x01);
    /// FCP (SCSI over Fibre Channel, FCP-4).
    pub const FCP: Self = Self(0x08);
    /// Fibre Channel services (CT).
    pub const CT: Self = Self(0x20);
}

/// Frame control (F_CTL) bits, FC-FS-3 table 38. Stored in the low 24 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FCtl(pub u32);

impl FCtl {
    /// Exchange context: set when the frame comes from the exchange responder.
    pub const EX_CTX: u32 = 1 << 23;
    /// Sequence context: set when the frame comes from the sequence recipient.
    pub const SEQ_CTX: u32 = 1 << 22;
    /// First sequence of the exchange.
    pub const FIRST_SEQ: u32 = 1 << 21;
    /// Last sequence of the exchange.
    pub const LAST_SEQ: u32 = 1 << 20;
    /// Last frame of the sequence.
    pub const END_SEQ: u32 = 1 << 19;
    /// End connection (class 1).
    pub const END_CONN: u32 = 1 << 18;
    /// Sequence initiative transferred to the recipient.
    pub const SEQ_INIT: u32 = 1 << 16;
    /// Retransmitted sequence.
    pub const RETX_SEQ: u32 = 1 << 9;
    /// The parameter field is a relative offset.
    pub const REL_OFF: u32 = 1 << 3;
    /// Fill bytes at the end of the payload (0..=3).
    pub const FILL_MASK: u32 = 0x3;

    /// Whether all of `bits` are set.
    pub const fn has(self, bits: u32) -> bool {
        self.0 & bits == bits
    }

    /// Fill byte count.
    pub const fn fill(self) -> usize {
        (self.0 & Self::FILL_MASK) as usize
    }
}

fn be24(b: &[u8]) -> u32 {
    u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2])
}

fn put24(b: &mut [u8], v: u32) {
    b[0] = (v >> 16) as u8;
    b[1] = (v >> 8) as u8;
    b[2] = v as u8;
}

/// A zero-copy view of a received frame: its header and its payload (fill bytes excluded).
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    hdr: &'a [u8; HEADER_LEN],
    payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Parses `buf` (header then payload, no SOF/EOF/CRC).
    ///
    /// # Errors
    /// [`WireError::Truncated`] if `buf` is shorter than a header or the F_CTL fill count exceeds
    /// the payload.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        let (h, rest) = buf.split_first_chunk::<HEADER_LEN>().ok_or(WireError::Truncated {
            what: "frame header",
            need: HEADER_LEN,
            have: buf.len(),
        })?;
        let fill = FCtl(be24(&h[9..12])).fill();
        if fill > rest.len() {
            return Err(WireError::Truncated { what: "frame fill bytes", need: fill, have: rest.len() });
        }
        Ok(Self { hdr: h, payload: &rest[..rest.len() - fill] })
    }

    /// The header.
    pub fn header(&self) -> FrameHeader<'a> {
        FrameHeader(self.hdr)
    }

    /// The payload without fill bytes.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

/// A zero-copy view of a frame header.
#[derive(Clone, Copy, Debug)]
pub struct FrameHeader<'a>(&'a [u8; HEADER_LEN]);

impl<'a> FrameHeader<'a> {
    /// A view of exactly 24 header bytes.
    pub fn new(b: &'a [u8; HEADER_LEN]) -> Self {
        Self(b)
    }

    /// Routing control.
    pub fn r_ctl(&self) -> RCtl {
        RCtl(self.0[0])
    }
    /// Destination identifier.
    pub fn d_id(&self) -> u32 {
        be24(&self.0[1..4])
    }
    /// Class-specific control / priority.
    pub fn cs_ctl(&self) -> u8 {
        self.0[4]
    }
    /// Source identifier.
    pub fn s_id(&self) -> u32 {
        be24(&self.0[5..8])
    }
    /// Data structure type.
    pub fn fc_type(&self) -> FcType {
        FcType(self.0[8])
    }
    /// Frame control.
    pub fn f_ctl(&self) -> FCtl {
        FCtl(be24(&self.0[9..12]))
    }
    /// Sequence identifier.
    pub fn seq_id(&self) -> u8 {
        self.0[12]
    }
    /// Data field control (optional headers present).
    pub fn df_ctl(&self) -> u8 {
        self.0[13]
    }
    /// Sequence count.
    pub fn seq_cnt(&self) -> u16 {
        u16::from_be_bytes([self.0[14], self.0[15]])
    }
    /// Originator exchange identifier.
    pub fn ox_id(&self) -> u16 {
        u16::from_be_bytes([self.0[16], self.0[17]])
    }
    /// Responder exchange identifier.
    pub fn rx_id(&self) -> u16 {
        u16::from_be_bytes([self.0[18], self.0[19]])
    }
    /// Parameter (relative offset when F_CTL REL_OFF is set).
    pub fn parameter(&self) -> u32 {
        u32::from_be_bytes([self.0[20], self.0[21], self.0[22], self.0[23]])
    }
    /// The raw bytes.
    pub fn bytes(&self) -> &'a [u8; HEADER_LEN] {
        self.0
    }
}

/// Builds a frame header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderBuilder {
    /// R_CTL.
    pub r_ctl: u8,
    /// D_ID (24 bits).
    pub d_id: u32,
    /// CS_CTL.
    pub cs_ctl: u8,
    /// S_ID (24 bits).
    pub s_id: u32,
    /// TYPE.
    pub fc_type: u8,
    /// F_CTL (24 bits).
    pub f_ctl: u32,
    /// SEQ_ID.
    pub seq_id: u8,
    /// DF_CTL.
    pub df_ctl: u8,
    /// SEQ_CNT.
    pub seq_cnt: u16,
    /// OX_ID.
    pub ox_id: u16,
    /// RX_ID.
    pub rx_id: u16,
    /// Parameter.
    pub parameter: u32,
}

impl HeaderBuilder {
    /// The 24 header bytes.
    pub fn build(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = self.r_ctl;
        put24(&mut h[1..4], self.d_id);
        h[4] = self.cs_ctl;
        put24(&mut h[5..8], self.s_id);
        h[8] = self.fc_type;
        put24(&mut h[9..12], self.f_ctl);
        h[12] = self.seq_id;
        h[13] = self.df_ctl;
        h[14..16].copy_from_slice(&self.seq_cnt.to_be_bytes());
        h[16..18].copy_from_slice(&self.ox_id.to_be_bytes());
        h[18..20].copy_from_slice(&self.rx_id.to_be_bytes());
        h[20..24].copy_from_slice(&self.parameter.to_be_bytes());
        h
    }

    /// Header then payload, as one buffer (no fill: FC payloads this crate builds are multiples
    /// of 4 bytes, except FCP_DATA whose fill the link adds when it must).
    pub fn frame(&self, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
        v.extend_from_slice(&self.build());
        v.extend_from_slice(payload);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_at_documented_offsets() {
        let b = HeaderBuilder {
            r_ctl: 0x06,
            d_id: 0x0a0b0c,
            cs_ctl: 0x11,
            s_id: 0x010203,
            fc_type: 0x08,
            f_ctl: FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT,
            seq_id: 7,
            df_ctl: 0,
            seq_cnt: 0x1234,
            ox_id: 0xabcd,
            rx_id: 0xffff,
            parameter: 0xdead_beef,
        };
        let h = b.build();
        assert_eq!(
            h,
            [
                0x06, 0x0a, 0x0b, 0x0c, 0x11, 0x01, 0x02, 0x03, 0x08, 0x29, 0x00, 0x00, 7, 0, 0x12, 0x34, 0xab, 0xcd,
                0xff, 0xff, 0xde, 0xad, 0xbe, 0xef
            ]
        );
        let f = Frame::parse(&h).unwrap();
        let v = f.header();
        assert_eq!(v.r_ctl(), RCtl::UNSOL_CMD);
        assert_eq!(v.d_id(), 0x0a0b0c);
        assert_eq!(v.s_id(), 0x010203);
        assert_eq!(v.cs_ctl(), 0x11);
        assert_eq!(v.fc_type(), FcType::FCP);
        assert!(v.f_ctl().has(FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT));
        assert!(!v.f_ctl().has(FCtl::EX_CTX));
        assert_eq!((v.seq_id(), v.seq_cnt(), v.ox_id(), v.rx_id()), (7, 0x1234, 0xabcd, 0xffff));
        assert_eq!(v.parameter(), 0xdead_beef);
        assert!(f.payload().is_empty());
    }

    #[test]
    fn short_frames_and_bad_fill_are_errors() {
        assert!(matches!(Frame::parse(&[0u8; 23]), Err(WireError::Truncated { need: 24, have: 23, .. })));
        let mut h = HeaderBuilder { f_ctl: 3, ..Default::default() }.frame(&[1, 2]);
        assert!(Frame::parse(&h).is_err());
        h.push(3);
        assert_eq!(Frame::parse(&h).unwrap().payload(), &[] as &[u8]);
        h.push(4);
        assert_eq!(Frame::parse(&h).unwrap().payload(), &[1]);
    }
}
