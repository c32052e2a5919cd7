//! IOCB layouts of the 24xx target-mode interface (64-byte ring entries), as this driver reads
//! Linux's qla_target.h and qla_fw.h: ATIO type 7, CTIO type 7 and its completion, continuation
//! type A64, IMMEDIATE NOTIFY, NOTIFY ACK, ABTS RECEIVED and ABTS RESPONSE.
//!
//! Multi-byte fields are little-endian except the FC header of an ATIO and the FCP_CMND IU,
//! which are in wire (big-endian) order. Port IDs inside IOCBs (`initiator_id`, `port_id`) are
//! stored AL_PA first.

/// Bytes of one ring entry.
pub const ENTRY: usize = 64;

/// Entry types.
pub mod kind {
    /// Marker.
    pub const MARKER: u8 = 0x04;
    /// ATIO type 7: an FCP_CMND received.
    pub const ATIO7: u8 = 0x06;
    /// Continuation with 64-bit DSDs.
    pub const CONTINUE_A64: u8 = 0x0a;
    /// IMMEDIATE NOTIFY.
    pub const IMMED_NOTIFY: u8 = 0x0d;
    /// NOTIFY ACK.
    pub const NOTIFY_ACK: u8 = 0x0e;
    /// CTIO type 7.
    pub const CTIO7: u8 = 0x12;
    /// ABTS RECEIVED.
    pub const ABTS_RECV: u8 = 0x54;
    /// ABTS RESPONSE (request, and its completion).
    pub const ABTS_RESP: u8 = 0x55;
}

/// CTIO type 7 flags.
pub mod ctio_flags {
    /// Data to the initiator.
    pub const DATA_IN: u16 = 1 << 1;
    /// Data from the initiator.
    pub const DATA_OUT: u16 = 1 << 0;
    /// Status mode 1 (status and sense in the IOCB).
    pub const STATUS_MODE_1: u16 = 1 << 6;
    /// Terminate the exchange.
    pub const TERMINATE: u16 = 1 << 14;
    /// Send SCSI status.
    pub const SEND_STATUS: u16 = 1 << 15;
}

/// CTIO type 7 `scsi_status` bits above the SCSI status byte.
pub mod ss {
    /// FCP_RSP_INFO present.
    pub const RESPONSE_INFO_LEN_VALID: u16 = 1 << 8;
    /// Sense present.
    pub const SENSE_LEN_VALID: u16 = 1 << 9;
    /// Residual over.
    pub const RESIDUAL_OVER: u16 = 1 << 10;
    /// Residual under.
    pub const RESIDUAL_UNDER: u16 = 1 << 11;
}

/// CTIO completion statuses.
pub mod ctio_status {
    /// Completed.
    pub const SUCCESS: u16 = 0x01;
    /// Aborted (ABTS received for the exchange).
    pub const ABORTED: u16 = 0x02;
    /// Invalid exchange.
    pub const INVALID_RX_ID: u16 = 0x08;
    /// Timeout.
    pub const TIMEOUT: u16 = 0x0b;
    /// LIP reset.
    pub const LIP_RESET: u16 = 0x0e;
    /// Target reset.
    pub const TARGET_RESET: u16 = 0x17;
    /// Port unavailable.
    pub const PORT_UNAVAILABLE: u16 = 0x28;
    /// Port logged out.
    pub const PORT_LOGGED_OUT: u16 = 0x29;
}

/// IMMEDIATE NOTIFY statuses.
pub mod notify {
    /// LIP reset.
    pub const LIP_RESET: u16 = 0x0e;
    /// Link reinitialized.
    pub const LIP_LINK_REINIT: u16 = 0x0f;
    /// IOCB overflow.
    pub const IOCB_OVERFLOW: u16 = 0x16;
    /// Abort task.
    pub const ABORT_TASK: u16 = 0x20;
    /// Port logged out.
    pub const PORT_LOGOUT: u16 = 0x29;
    /// Port configuration changed.
    pub const PORT_CONFIG: u16 = 0x2a;
    /// Global TPRLO.
    pub const GLBL_TPRLO: u16 = 0x2d;
    /// Global LOGO.
    pub const GLBL_LOGO: u16 = 0x2e;
    /// An ELS arrived (subcode: the ELS command).
    pub const ELS: u16 = 0x46;
}

/// ELS command codes in an IMMEDIATE NOTIFY's subcode.
pub mod els {
    /// PLOGI.
    pub const PLOGI: u8 = 0x03;
    /// FLOGI.
    pub const FLOGI: u8 = 0x04;
    /// LOGO.
    pub const LOGO: u8 = 0x05;
    /// PRLI.
    pub const PRLI: u8 = 0x20;
    /// PRLO.
    pub const PRLO: u8 = 0x21;
    /// TPRLO.
    pub const TPRLO: u8 = 0x24;
    /// PDISC.
    pub const PDISC: u8 = 0x50;
    /// ADISC.
    pub const ADISC: u8 = 0x52;
}

/// One 64-bit data segment descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dsd {
    /// Bus address (IOVA).
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
}

/// DSDs in the CTIO itself.
pub const DSDS_IN_CTIO: usize = 1;
/// DSDs per continuation entry.
pub const DSDS_PER_CONT: usize = 5;

/// Ring entries a CTIO with `dsds` descriptors takes.
pub fn ctio_entries(dsds: usize) -> usize {
    1 + dsds.saturating_sub(DSDS_IN_CTIO).div_ceil(DSDS_PER_CONT)
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_dsd(b: &mut [u8], at: usize, d: Dsd) {
    b[at..at + 8].copy_from_slice(&d.addr.to_le_bytes());
    put32(b, at + 8, d.len);
}
/// A port id stored AL_PA first.
fn id_le(b: &[u8], at: usize) -> u32 {
    u32::from(b[at]) | u32::from(b[at + 1]) << 8 | u32::from(b[at + 2]) << 16
}
fn put_id_le(b: &mut [u8], at: usize, id: u32) {
    b[at] = id as u8;
    b[at + 1] = (id >> 8) as u8;
    b[at + 2] = (id >> 16) as u8;
}
/// A port id in wire order (domain first).
fn id_be(b: &[u8], at: usize) -> u32 {
    u32::from(b[at]) << 16 | u32::from(b[at + 1]) << 8 | u32::from(b[at + 2])
}

/// The fixed part of an ATIO type 7 (first entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Atio7 {
    /// Entries the ATIO spans.
    pub entry_count: u8,
    /// The firmware's exchange address (echoed in every CTIO of the exchange).
    pub exchange_addr: u32,
    /// D_ID of the FCP_CMND frame.
    pub d_id: u32,
    /// S_ID: the initiator's N_Port ID.
    pub s_id: u32,
    /// OX_ID.
    pub ox_id: u16,
    /// Task attribute nibble.
    pub attr: u8,
}

/// Offset of the FCP_CMND IU in an ATIO type 7.
pub const ATIO7_IU_OFFSET: usize = 32;

impl Atio7 {
    /// Decodes the first entry.
    pub fn parse(e: &[u8; ENTRY]) -> Self {
        Self {
            entry_count: e[1],
            exchange_addr: le32(e, 4),
            d_id: id_be(e, 9),
            s_id: id_be(e, 13),
            ox_id: u16::from_be_bytes([e[24], e[25]]),
            attr: e[3] >> 4,
        }
    }
}

/// An IMMEDIATE NOTIFY (24xx layout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImmNotify {
    /// N_Port handle of the remote port.
    pub nport_handle: u16,
    /// Flags.
    pub flags: u16,
    /// SRR RX_ID.
    pub srr_rx_id: u16,
    /// Status (see [`notify`]).
    pub status: u16,
    /// Status subcode (the ELS code for [`notify::ELS`]).
    pub status_subcode: u8,
    /// Firmware handle.
    pub fw_handle: u8,
    /// Exchange address.
    pub exchange_address: u32,
    /// SRR relative offset.
    pub srr_rel_offs: u32,
    /// SRR IU.
    pub srr_ui: u16,
    /// SRR OX_ID.
    pub srr_ox_id: u16,
    /// Node name (PLOGI).
    pub node_name: u64,
    /// Port name (PLOGI, PRLI).
    pub port_name: u64,
    /// Virtual port index.
    pub vp_index: u8,
    /// The remote port's N_Port ID.
    pub port_id: u32,
    /// OX_ID of the ELS.
    pub ox_id: u16,
}

impl ImmNotify {
    /// Decodes one.
    pub fn parse(e: &[u8; ENTRY]) -> Self {
        Self {
            nport_handle: le16(e, 8),
            flags: le16(e, 12),
            srr_rx_id: le16(e, 14),
            status: le16(e, 16),
            status_subcode: e[18],
            fw_handle: e[19],
            exchange_address: le32(e, 20),
            srr_rel_offs: le32(e, 24),
            srr_ui: le16(e, 28),
            srr_ox_id: le16(e, 30),
            node_name: u64::from_be_bytes(e[32..40].try_into().unwrap_or([0; 8])),
            port_name: u64::from_be_bytes(e[40..48].try_into().unwrap_or([0; 8])),
            vp_index: e[51],
            port_id: id_le(e, 56),
            ox_id: le16(e, 62),
        }
    }

    /// The NOTIFY ACK answering it.
    pub fn ack(&self, handle: u32) -> [u8; ENTRY] {
        let mut b = [0u8; ENTRY];
        b[0] = kind::NOTIFY_ACK;
        b[1] = 1;
        put32(&mut b, 4, handle);
        put16(&mut b, 8, self.nport_handle);
        // Only the PUREX flag is echoed (as Linux's qlt_24xx_send_notify_ack does).
        put16(&mut b, 12, self.flags & 1);
        put16(&mut b, 14, self.srr_rx_id);
        put16(&mut b, 16, self.status);
        b[18] = self.status_subcode;
        b[19] = self.fw_handle;
        put32(&mut b, 20, self.exchange_address);
        put32(&mut b, 24, self.srr_rel_offs);
        put16(&mut b, 28, self.srr_ui);
        b[51] = self.vp_index;
        put16(&mut b, 62, self.ox_id);
        b
    }
}

/// NOTIFY ACK completion status: success.
pub const NOTIFY_ACK_SUCCESS: u16 = 0x01;

/// A CTIO type 7 to build.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ctio7<'a> {
    /// Our handle (returned in the completion).
    pub handle: u32,
    /// N_Port handle of the initiator (FFFFh when unknown).
    pub nport_handle: u16,
    /// Timeout in seconds.
    pub timeout: u16,
    /// Virtual port index.
    pub vp_index: u8,
    /// The initiator's N_Port ID.
    pub initiator_id: u32,
    /// The ATIO's exchange address.
    pub exchange_addr: u32,
    /// Flags ([`ctio_flags`]), task attribute bits included.
    pub flags: u16,
    /// Residual count.
    pub residual: u32,
    /// OX_ID (host order).
    pub ox_id: u16,
    /// SCSI status with the [`ss`] bits.
    pub scsi_status: u16,
    /// Relative offset of the data (status mode 0).
    pub relative_offset: u32,
    /// Bytes of data (status mode 0).
    pub transfer_length: u32,
    /// Data segments (status mode 0).
    pub dsds: &'a [Dsd],
    /// Sense data (status mode 1, at most 24 bytes used).
    pub sense: &'a [u8],
    /// FCP_RSP_INFO response code (status mode 1, task management).
    pub rsp_code: Option<u8>,
}

/// Most sense bytes a status mode 1 CTIO carries.
pub const CTIO_SENSE_MAX: usize = 24;

/// Copies `src` into `dst` as 32-bit words with their byte order reversed: the IOCB holds the
/// FCP_RSP bytes little-endian per word and the firmware sends each word big-endian (Linux's
/// qlt_24xx_init_ctio_to_isp swaps the sense buffer this way).
fn put_swapped_words(dst: &mut [u8], src: &[u8]) {
    for (i, chunk) in src.chunks(4).enumerate() {
        let mut w = [0u8; 4];
        w[..chunk.len()].copy_from_slice(chunk);
        let v = u32::from_be_bytes(w);
        dst[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
}

impl Ctio7<'_> {
    /// Writes the CTIO and its continuation entries into `out` (which must have room for
    /// [`ctio_entries`]`(self.dsds.len())` entries) and returns how many it used.
    pub fn build(&self, out: &mut [[u8; ENTRY]]) -> usize {
        let n = ctio_entries(self.dsds.len());
        let b = &mut out[0];
        *b = [0u8; ENTRY];
        b[0] = kind::CTIO7;
        b[1] = n as u8;
        put32(b, 4, self.handle);
        put16(b, 8, self.nport_handle);
        put16(b, 10, self.timeout);
        put16(b, 12, self.dsds.len() as u16);
        b[14] = self.vp_index;
        put_id_le(b, 16, self.initiator_id);
        put32(b, 20, self.exchange_addr);
        put16(b, 26, self.flags);
        put32(b, 28, self.residual);
        put16(b, 32, self.ox_id);
        put16(b, 34, self.scsi_status);
        if self.flags & ctio_flags::STATUS_MODE_1 != 0 {
            if let Some(code) = self.rsp_code {
                // FCP_RSP_INFO: 8 bytes, response code in byte 3.
                put16(b, 36, 8);
                put_swapped_words(&mut b[40..48], &[0, 0, 0, code, 0, 0, 0, 0]);
            } else {
                let n = self.sense.len().min(CTIO_SENSE_MAX);
                put16(b, 24, n as u16);
                put_swapped_words(&mut b[40..40 + n.div_ceil(4) * 4], &self.sense[..n]);
            }
        } else {
            put32(b, 36, self.relative_offset);
            put32(b, 44, self.transfer_length);
            if let Some(&d) = self.dsds.first() {
                put_dsd(b, 52, d);
            }
        }
        for (i, chunk) in self.dsds.get(DSDS_IN_CTIO..).unwrap_or(&[]).chunks(DSDS_PER_CONT).enumerate() {
            let c = &mut out[1 + i];
            *c = [0u8; ENTRY];
            c[0] = kind::CONTINUE_A64;
            c[1] = 1;
            for (j, &d) in chunk.iter().enumerate() {
                put_dsd(c, 4 + 12 * j, d);
            }
        }
        n
    }
}

/// A CTIO type 7 completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtioDone {
    /// Our handle.
    pub handle: u32,
    /// Completion status ([`ctio_status`]).
    pub status: u16,
    /// Entry status (non-zero: the firmware rejected the IOCB).
    pub entry_status: u8,
    /// Exchange address.
    pub exchange_address: u32,
    /// Flags as sent.
    pub flags: u16,
    /// Residual.
    pub residual: u32,
}

impl CtioDone {
    /// Decodes one.
    pub fn parse(e: &[u8; ENTRY]) -> Self {
        Self {
            handle: le32(e, 4),
            status: le16(e, 8),
            entry_status: e[3],
            exchange_address: le32(e, 20),
            flags: le16(e, 26),
            residual: le32(e, 28),
        }
    }
}

/// An ABTS RECEIVED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbtsRecv {
    /// N_Port handle.
    pub nport_handle: u16,
    /// Virtual port index.
    pub vp_index: u8,
    /// SOF type nibble byte.
    pub sof_byte: u8,
    /// The ABTS's own exchange address.
    pub exchange_address: u32,
    /// The FC header of the ABTS frame, in the IOCB's little-endian layout.
    pub hdr: [u8; 24],
    /// The exchange address of the exchange to abort.
    pub exchange_addr_to_abort: u32,
}

impl AbtsRecv {
    /// Decodes one.
    pub fn parse(e: &[u8; ENTRY]) -> Self {
        let mut hdr = [0u8; 24];
        hdr.copy_from_slice(&e[20..44]);
        Self {
            nport_handle: le16(e, 10),
            vp_index: e[14],
            sof_byte: e[15],
            exchange_address: le32(e, 16),
            hdr,
            exchange_addr_to_abort: le32(e, 60),
        }
    }
    /// S_ID of the ABTS (the initiator).
    pub fn s_id(&self) -> u32 {
        id_le(&self.hdr, 4)
    }
    /// OX_ID of the aborted exchange.
    pub fn ox_id(&self) -> u16 {
        le16(&self.hdr, 18)
    }
    /// RX_ID.
    pub fn rx_id(&self) -> u16 {
        le16(&self.hdr, 16)
    }

    /// The ABTS RESPONSE carrying BA_ACC.
    pub fn ba_acc(&self, handle: u32) -> [u8; ENTRY] {
        let mut b = [0u8; ENTRY];
        b[0] = kind::ABTS_RESP;
        b[1] = 1;
        put32(&mut b, 4, handle);
        put16(&mut b, 10, self.nport_handle);
        b[14] = self.vp_index;
        b[15] = self.sof_byte & 0xf0;
        put32(&mut b, 16, self.exchange_address);
        let h = &mut b[20..44];
        h.copy_from_slice(&self.hdr);
        // Swap D_ID and S_ID; R_CTL BA_ACC; F_CTL responder, last and end of sequence,
        // sequence initiative; TYPE 0 (BLS).
        h[0..3].copy_from_slice(&self.hdr[4..7]);
        h[4..7].copy_from_slice(&self.hdr[0..3]);
        h[3] = 0x84;
        let f_ctl: u32 = 1 << 23 | 1 << 20 | 1 << 19 | 1 << 16;
        h[8..11].copy_from_slice(&f_ctl.to_le_bytes()[..3]);
        h[11] = 0;
        h[20..24].fill(0);
        // BA_ACC payload: SEQ_ID invalid, RX_ID/OX_ID, SEQ_CNT range 0..FFFFh.
        put16(&mut b, 48, self.rx_id());
        put16(&mut b, 50, self.ox_id());
        put16(&mut b, 52, 0xffff);
        put16(&mut b, 54, 0);
        put32(&mut b, 60, self.exchange_addr_to_abort);
        b
    }
}

/// An ABTS RESPONSE completion: `(handle, completion status)`.
pub fn abts_resp_done(e: &[u8; ENTRY]) -> (u32, u16) {
    (le32(e, 4), le16(e, 8))
}

/// A NOTIFY ACK completion: `(handle, status)`.
pub fn notify_ack_done(e: &[u8; ENTRY]) -> (u32, u16) {
    (le32(e, 4), le16(e, 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctio_with_seven_dsds_takes_three_entries() {
        let dsds: Vec<Dsd> = (0..7).map(|i| Dsd { addr: 0x1000 * (i + 1), len: 512 }).collect();
        let c = Ctio7 {
            handle: 0x1234_5678,
            nport_handle: 0x81,
            initiator_id: 0x01_02_03,
            exchange_addr: 0xdead_beef,
            flags: ctio_flags::DATA_IN | ctio_flags::SEND_STATUS,
            ox_id: 0x4321,
            transfer_length: 3584,
            dsds: &dsds,
            ..Default::default()
        };
        let mut out = [[0u8; ENTRY]; 4];
        assert_eq!(c.build(&mut out), 3);
        let e = &out[0];
        assert_eq!((e[0], e[1]), (0x12, 3));
        assert_eq!(&e[4..8], &[0x78, 0x56, 0x34, 0x12]);
        assert_eq!(&e[8..10], &[0x81, 0]);
        assert_eq!(&e[12..14], &[7, 0]);
        assert_eq!(&e[16..19], &[0x03, 0x02, 0x01]);
        assert_eq!(&e[20..24], &[0xef, 0xbe, 0xad, 0xde]);
        assert_eq!(&e[26..28], &[0x02, 0x80]);
        assert_eq!(&e[32..34], &[0x21, 0x43]);
        assert_eq!(&e[44..48], &[0x00, 0x0e, 0, 0]);
        assert_eq!(&e[52..60], &0x1000u64.to_le_bytes());
        assert_eq!(&e[60..64], &512u32.to_le_bytes());
        assert_eq!((out[1][0], out[1][1]), (0x0a, 1));
        assert_eq!(&out[1][4..12], &0x2000u64.to_le_bytes());
        assert_eq!(&out[1][52..60], &0x6000u64.to_le_bytes());
        assert_eq!(&out[2][4..12], &0x7000u64.to_le_bytes());
        assert_eq!(&out[2][16..28], &[0u8; 12]);
    }

    #[test]
    fn mode1_sense_is_word_swapped() {
        let sense = [0x70, 0, 0x05, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x20, 0x00, 0, 0, 0, 0];
        let c = Ctio7 {
            flags: ctio_flags::STATUS_MODE_1 | ctio_flags::SEND_STATUS,
            scsi_status: ss::SENSE_LEN_VALID | 2,
            sense: &sense,
            ..Default::default()
        };
        let mut out = [[0u8; ENTRY]; 1];
        assert_eq!(c.build(&mut out), 1);
        let e = &out[0];
        assert_eq!(&e[24..26], &[18, 0]);
        assert_eq!(&e[34..36], &[0x02, 0x02]);
        assert_eq!(&e[40..44], &[0, 0x05, 0, 0x70]);
        assert_eq!(&e[52..56], &[0, 0, 0x00, 0x20]);
        assert_eq!(&e[56..58], &[0, 0]);
    }

    #[test]
    fn atio7_and_notify_decode() {
        let mut e = [0u8; ENTRY];
        e[0] = 0x06;
        e[1] = 1;
        e[3] = 0x10;
        e[4..8].copy_from_slice(&0x55aa_1234u32.to_le_bytes());
        e[9..12].copy_from_slice(&[0x0a, 0x00, 0x01]);
        e[13..16].copy_from_slice(&[0x0a, 0x00, 0x02]);
        e[24..26].copy_from_slice(&[0x12, 0x34]);
        let a = Atio7::parse(&e);
        assert_eq!((a.exchange_addr, a.d_id, a.s_id, a.ox_id, a.attr), (0x55aa_1234, 0x0a0001, 0x0a0002, 0x1234, 1));

        let mut n = [0u8; ENTRY];
        n[0] = 0x0d;
        n[8] = 0x81;
        n[16] = 0x46;
        n[18] = 0x03;
        n[40..48].copy_from_slice(&0x2100_0024_ff31_4c2au64.to_be_bytes());
        n[56..59].copy_from_slice(&[0x02, 0x00, 0x0a]);
        n[62] = 0x77;
        let v = ImmNotify::parse(&n);
        assert_eq!((v.nport_handle, v.status, v.status_subcode), (0x81, 0x46, 0x03));
        assert_eq!((v.port_name, v.port_id, v.ox_id), (0x2100_0024_ff31_4c2a, 0x0a0002, 0x77));
        let ack = v.ack(9);
        assert_eq!((ack[0], ack[8], ack[16], ack[18], ack[62]), (0x0e, 0x81, 0x46, 0x03, 0x77));
    }

    #[test]
    fn ba_acc_swaps_ids() {
        let mut e = [0u8; ENTRY];
        e[0] = 0x54;
        e[10] = 0x81;
        e[16..20].copy_from_slice(&7u32.to_le_bytes());
        e[20..23].copy_from_slice(&[0x01, 0x00, 0x0a]); // D_ID 0a0001
        e[23] = 0x81;
        e[24..27].copy_from_slice(&[0x02, 0x00, 0x0a]); // S_ID 0a0002
        e[36..38].copy_from_slice(&0xffffu16.to_le_bytes());
        e[38..40].copy_from_slice(&0x1234u16.to_le_bytes());
        e[60..64].copy_from_slice(&0x99u32.to_le_bytes());
        let a = AbtsRecv::parse(&e);
        assert_eq!((a.s_id(), a.ox_id(), a.exchange_addr_to_abort), (0x0a0002, 0x1234, 0x99));
        let r = a.ba_acc(5);
        assert_eq!(r[0], 0x55);
        assert_eq!(&r[20..24], &[0x02, 0x00, 0x0a, 0x84]);
        assert_eq!(&r[24..27], &[0x01, 0x00, 0x0a]);
        assert_eq!(&r[28..31], &[0x00, 0x00, 0x99]);
        assert_eq!(&r[50..52], &[0x34, 0x12]);
        assert_eq!(&r[60..64], &[0x99, 0, 0, 0]);
    }
}
