//! Allocation-free BHS builders.
//!
//! Each header struct has plain pub fields and a `write(&self, &mut [u8; 48])`
//! method that overwrites the whole buffer (reserved bytes become zero) and
//! sets the opcode. `data_segment_len` is the length of the data segment
//! without padding; the caller sends the data, the pad bytes and the digests.
//! Lengths above 2^24-1 are truncated to 24 bits: callers bound their data
//! segments by the negotiated MaxRecvDataSegmentLength (at most 2^24-1).

use super::bhs::{
    AsyncEvent, BHS_LEN, LogoutReason, LogoutResponseCode, Opcode, RejectReason, ScsiResponseCode, SnackType, Stage,
    TaskAttr, TmfFunction, TmfResponse,
};

/// Appends a whole PDU to `out`: BHS, AHS, header digest, data, pad, data digest, as negotiated.
/// For initiators, tools and tests; the target's transmit path sends Data-In from the command's
/// buffers without this copy.
pub fn encode_pdu(out: &mut Vec<u8>, bhs: &[u8; BHS_LEN], ahs: &[u8], data: &[u8], digests: super::bhs::Digests) {
    out.extend_from_slice(bhs);
    out.extend_from_slice(ahs);
    if digests.header {
        out.extend_from_slice(&super::digest::header_digest(bhs, ahs));
    }
    if !data.is_empty() {
        let pad = super::bhs::pad_len(data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(&[0u8; 3][..pad]);
        if digests.data {
            out.extend_from_slice(&super::digest::data_digest([data], pad));
        }
    }
}

struct W<'a>(&'a mut [u8; BHS_LEN]);

impl W<'_> {
    fn start(buf: &mut [u8; BHS_LEN], op: Opcode, immediate: bool, flags: u8) -> W<'_> {
        *buf = [0; BHS_LEN];
        buf[0] = op.0 | if immediate { 0x40 } else { 0 };
        buf[1] = flags;
        W(buf)
    }
    fn u8(&mut self, off: usize, v: u8) -> &mut Self {
        self.0[off] = v;
        self
    }
    fn u16(&mut self, off: usize, v: u16) -> &mut Self {
        self.0[off..off + 2].copy_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_be_bytes());
        self
    }
    fn dsl(&mut self, len: u32) -> &mut Self {
        let b = len.to_be_bytes();
        self.0[5..8].copy_from_slice(&b[1..]);
        self
    }
    fn lun(&mut self, lun: u64) -> &mut Self {
        self.0[8..16].copy_from_slice(&lun.to_be_bytes());
        self
    }
}

const fn bit(cond: bool, mask: u8) -> u8 {
    if cond { mask } else { 0 }
}

/// Sequence numbers carried by every target PDU that reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetSn {
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

impl TargetSn {
    fn put(&self, w: &mut W<'_>) {
        w.u32(24, self.stat_sn).u32(28, self.exp_cmd_sn).u32(32, self.max_cmd_sn);
    }
}

// ======================================================================
// Target PDUs
// ======================================================================

/// SCSI Response (0x21), RFC 7143 §11.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScsiResponseHeader {
    /// Response code.
    pub response: ScsiResponseCode,
    /// SCSI status byte.
    pub status: u8,
    /// O: residual overflow.
    pub overflow: bool,
    /// U: residual underflow.
    pub underflow: bool,
    /// o: bidirectional read residual overflow.
    pub bidi_overflow: bool,
    /// u: bidirectional read residual underflow.
    pub bidi_underflow: bool,
    /// Data segment length (SenseLength field + sense data + response data).
    pub data_segment_len: u32,
    /// Initiator Task Tag.
    pub itt: u32,
    /// SNACK Tag (0 unless answering an R-Data SNACK).
    pub snack_tag: u32,
    /// StatSN/ExpCmdSN/MaxCmdSN.
    pub sn: TargetSn,
    /// ExpDataSN: number of Data-In (and R2T) PDUs sent for the command.
    pub exp_data_sn: u32,
    /// Bidirectional Read Residual Count.
    pub bidi_read_residual_count: u32,
    /// Residual Count.
    pub residual_count: u32,
}

impl ScsiResponseHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let flags = 0x80
            | bit(self.bidi_overflow, 0x10)
            | bit(self.bidi_underflow, 0x08)
            | bit(self.overflow, 0x04)
            | bit(self.underflow, 0x02);
        let mut w = W::start(buf, Opcode::SCSI_RESPONSE, false, flags);
        w.u8(2, self.response.0)
            .u8(3, self.status)
            .dsl(self.data_segment_len)
            .u32(16, self.itt)
            .u32(20, self.snack_tag)
            .u32(36, self.exp_data_sn)
            .u32(40, self.bidi_read_residual_count)
            .u32(44, self.residual_count);
        self.sn.put(&mut w);
    }
}

/// SCSI Data-In (0x25), RFC 7143 §11.7.
///
/// StatSN is only meaningful when `status_present` (S) is set; it is written
/// as given either way (RFC: reserved otherwise, use 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataInHeader {
    /// F: last PDU of the sequence.
    pub final_bit: bool,
    /// A: acknowledge requested (ERL > 0 only).
    pub ack: bool,
    /// O: residual overflow (only with S).
    pub overflow: bool,
    /// U: residual underflow (only with S).
    pub underflow: bool,
    /// S: status present (requires F).
    pub status_present: bool,
    /// SCSI status (only with S).
    pub status: u8,
    /// Data segment length.
    pub data_segment_len: u32,
    /// LUN (required when A is set, else may be 0).
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff unless A is set).
    pub ttt: u32,
    /// StatSN/ExpCmdSN/MaxCmdSN (StatSN only with S).
    pub sn: TargetSn,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer Offset.
    pub buffer_offset: u32,
    /// Residual Count (only with S).
    pub residual_count: u32,
}

impl DataInHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let flags = bit(self.final_bit, 0x80)
            | bit(self.ack, 0x40)
            | bit(self.overflow, 0x04)
            | bit(self.underflow, 0x02)
            | bit(self.status_present, 0x01);
        let mut w = W::start(buf, Opcode::DATA_IN, false, flags);
        w.u8(3, self.status)
            .dsl(self.data_segment_len)
            .lun(self.lun)
            .u32(16, self.itt)
            .u32(20, self.ttt)
            .u32(36, self.data_sn)
            .u32(40, self.buffer_offset)
            .u32(44, self.residual_count);
        self.sn.put(&mut w);
    }
}

/// Ready To Transfer (0x31), RFC 7143 §11.8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct R2tHeader {
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag.
    pub ttt: u32,
    /// StatSN (not advanced by an R2T)/ExpCmdSN/MaxCmdSN.
    pub sn: TargetSn,
    /// R2TSN.
    pub r2t_sn: u32,
    /// Buffer Offset.
    pub buffer_offset: u32,
    /// Desired Data Transfer Length.
    pub desired_data_transfer_length: u32,
}

impl R2tHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let mut w = W::start(buf, Opcode::R2T, false, 0x80);
        w.lun(self.lun)
            .u32(16, self.itt)
            .u32(20, self.ttt)
            .u32(36, self.r2t_sn)
            .u32(40, self.buffer_offset)
            .u32(44, self.desired_data_transfer_length);
        self.sn.put(&mut w);
    }
}

/// NOP-In (0x20), RFC 7143 §11.19.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NopInHeader {
    /// Data segment length (ping data echoed).
    pub data_segment_len: u32,
    /// LUN (echo of the NOP-Out, or for a target ping any value).
    pub lun: u64,
    /// ITT: echo of the NOP-Out, or 0xffffffff for a target-initiated ping.
    pub itt: u32,
    /// TTT: 0xffffffff for a response, a tag when a NOP-Out answer is wanted.
    pub ttt: u32,
    /// StatSN/ExpCmdSN/MaxCmdSN.
    pub sn: TargetSn,
}

impl NopInHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let mut w = W::start(buf, Opcode::NOP_IN, false, 0x80);
        w.dsl(self.data_segment_len).lun(self.lun).u32(16, self.itt).u32(20, self.ttt);
        self.sn.put(&mut w);
    }
}

/// Task Management Function Response (0x22), RFC 7143 §11.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TmfResponseHeader {
    /// Response code.
    pub response: TmfResponse,
    /// Initiator Task Tag of the TMF request.
    pub itt: u32,
    /// StatSN/ExpCmdSN/MaxCmdSN.
    pub sn: TargetSn,
}

impl TmfResponseHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let mut w = W::start(buf, Opcode::TASK_MGMT_RESPONSE, false, 0x80);
        w.u8(2, self.response.0).u32(16, self.itt);
        self.sn.put(&mut w);
    }
}

/// Login Response (0x23), RFC 7143 §11.13.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginResponseHeader {
    /// T: transit to `nsg`.
    pub transit: bool,
    /// C: text continues in the next response.
    pub continue_bit: bool,
    /// Current stage.
    pub csg: Stage,
    /// Next stage (meaningful only with T; written as given).
    pub nsg: Stage,
    /// Version-max.
    pub version_max: u8,
    /// Version-active.
    pub version_active: u8,
    /// Data segment length.
    pub data_segment_len: u32,
    /// ISID (echo).
    pub isid: [u8; 6],
    /// TSIH.
    pub tsih: u16,
    /// Initiator Task Tag (echo).
    pub itt: u32,
    /// StatSN/ExpCmdSN/MaxCmdSN.
    pub sn: TargetSn,
    /// Status-Class and Status-Detail.
    pub status: u16,
}

impl LoginResponseHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let flags = bit(self.transit, 0x80) | bit(self.continue_bit, 0x40) | ((self.csg.0 & 3) << 2) | (self.nsg.0 & 3);
        let mut w = W::start(buf, Opcode::LOGIN_RESPONSE, false, flags);
        w.u8(2, self.version_max)
            .u8(3, self.version_active)
            .dsl(self.data_segment_len)
            .u16(14, self.tsih)
            .u32(16, self.itt)
            .u16(36, self.status);
        w.0[8..14].copy_from_slice(&self.isid);
        self.sn.put(&mut w);
    }
}

/// Text Response (0x24), RFC 7143 §11.11.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextResponseHeader {
    /// F: final response of the sequence.
    pub final_bit: bool,
    /// C: text continues in the next response.
    pub continue_bit: bool,
    /// Data segment length.
    pub data_segment_len: u32,
    /// LUN (echo; usually 0).
    pub lun: u64,
    /// Initiator Task Tag (echo).
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff when F is set).
    pub ttt: u32,
    /// StatSN/ExpCmdSN/MaxCmdSN.
    pub sn: TargetSn,
}

impl TextResponseHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let flags = bit(self.final_bit, 0x80) | bit(self.continue_bit, 0x40);
        let mut w = W::start(buf, Opcode::TEXT_RESPONSE, false, flags);
        w.dsl(self.data_segment_len).lun(self.lun).u32(16, self.itt).u32(20, self.ttt);
        self.sn.put(&mut w);
    }
}

/// Logout Response (0x26), RFC 7143 §11.15.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogoutResponseHeader {
    /// Response code.
    pub response: LogoutResponseCode,
    /// Initiator Task Tag (echo).
    pub itt: u32,
    /// StatSN/ExpCmdSN/MaxCmdSN.
    pub sn: TargetSn,
    /// Time2Wait.
    pub time2wait: u16,
    /// Time2Retain.
    pub time2retain: u16,
}

impl LogoutResponseHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let mut w = W::start(buf, Opcode::LOGOUT_RESPONSE, false, 0x80);
        w.u8(2, self.response.0).u32(16, self.itt).u16(40, self.time2wait).u16(42, self.time2retain);
        self.sn.put(&mut w);
    }
}

/// Asynchronous Message (0x32), RFC 7143 §11.9. ITT is always 0xffffffff.
///
/// The data segment is `SenseLength (2 bytes BE) | sense data | iSCSI event
/// data`; use [`async_sense_segment`] to build the first part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AsyncMessageHeader {
    /// Data segment length.
    pub data_segment_len: u32,
    /// LUN (for SCSI async events).
    pub lun: u64,
    /// StatSN/ExpCmdSN/MaxCmdSN.
    pub sn: TargetSn,
    /// AsyncEvent.
    pub event: AsyncEvent,
    /// AsyncVCode.
    pub vcode: u8,
    /// Parameter1..3.
    pub parameters: [u16; 3],
}

impl AsyncMessageHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let mut w = W::start(buf, Opcode::ASYNC_MESSAGE, false, 0x80);
        w.dsl(self.data_segment_len)
            .lun(self.lun)
            .u32(16, super::bhs::RESERVED_TAG)
            .u8(36, self.event.0)
            .u8(37, self.vcode)
            .u16(38, self.parameters[0])
            .u16(40, self.parameters[1])
            .u16(42, self.parameters[2]);
        self.sn.put(&mut w);
    }
}

/// The SenseLength prefix of an Asynchronous Message or SCSI Response data
/// segment: write the 2-byte big-endian length, then the caller appends the
/// sense bytes. Returns the prefix.
pub const fn async_sense_segment(sense_len: u16) -> [u8; 2] {
    sense_len.to_be_bytes()
}

/// Reject (0x3f), RFC 7143 §11.17. The data segment is the complete header
/// (BHS + AHS, without digest) of the rejected PDU, so `data_segment_len`
/// is usually 48.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RejectHeader {
    /// Reason code.
    pub reason: RejectReason,
    /// Data segment length.
    pub data_segment_len: u32,
    /// StatSN/ExpCmdSN/MaxCmdSN.
    pub sn: TargetSn,
    /// DataSN/R2TSN (only for SNACK rejects with data), else 0.
    pub data_sn: u32,
}

impl RejectHeader {
    /// Write the BHS (ITT is 0xffffffff).
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let mut w = W::start(buf, Opcode::REJECT, false, 0x80);
        w.u8(2, self.reason.0).dsl(self.data_segment_len).u32(16, super::bhs::RESERVED_TAG).u32(36, self.data_sn);
        self.sn.put(&mut w);
    }
}

// ======================================================================
// Initiator PDUs (for test initiators)
// ======================================================================

/// Sequence numbers carried by initiator PDUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InitiatorSn {
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

impl InitiatorSn {
    fn put(&self, w: &mut W<'_>) {
        w.u32(24, self.cmd_sn).u32(28, self.exp_stat_sn);
    }
}

/// SCSI Command (0x01), RFC 7143 §11.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScsiCommandHeader {
    /// I: immediate delivery.
    pub immediate: bool,
    /// F: no unsolicited Data-Out follows.
    pub final_bit: bool,
    /// R: read.
    pub read: bool,
    /// W: write.
    pub write: bool,
    /// Task attribute.
    pub attr: TaskAttr,
    /// TotalAHSLength in bytes (multiple of 4).
    pub total_ahs_len: u8,
    /// Data segment length (immediate data).
    pub data_segment_len: u32,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Expected Data Transfer Length.
    pub expected_data_transfer_length: u32,
    /// CmdSN/ExpStatSN.
    pub sn: InitiatorSn,
    /// First 16 CDB bytes.
    pub cdb: [u8; 16],
}

impl ScsiCommandHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let flags = bit(self.final_bit, 0x80) | bit(self.read, 0x40) | bit(self.write, 0x20) | (self.attr.0 & 7);
        let mut w = W::start(buf, Opcode::SCSI_COMMAND, self.immediate, flags);
        w.u8(4, self.total_ahs_len / 4)
            .dsl(self.data_segment_len)
            .lun(self.lun)
            .u32(16, self.itt)
            .u32(20, self.expected_data_transfer_length);
        self.sn.put(&mut w);
        w.0[32..48].copy_from_slice(&self.cdb);
    }
}

/// SCSI Data-Out (0x05), RFC 7143 §11.7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataOutHeader {
    /// F: last PDU of the sequence.
    pub final_bit: bool,
    /// Data segment length.
    pub data_segment_len: u32,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff for unsolicited data).
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer Offset.
    pub buffer_offset: u32,
}

impl DataOutHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let mut w = W::start(buf, Opcode::DATA_OUT, false, bit(self.final_bit, 0x80));
        w.dsl(self.data_segment_len)
            .lun(self.lun)
            .u32(16, self.itt)
            .u32(20, self.ttt)
            .u32(28, self.exp_stat_sn)
            .u32(36, self.data_sn)
            .u32(40, self.buffer_offset);
    }
}

/// NOP-Out (0x00), RFC 7143 §11.18.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NopOutHeader {
    /// I: immediate delivery.
    pub immediate: bool,
    /// Data segment length.
    pub data_segment_len: u32,
    /// LUN.
    pub lun: u64,
    /// ITT (0xffffffff when answering a NOP-In).
    pub itt: u32,
    /// TTT (the NOP-In's TTT when answering, else 0xffffffff).
    pub ttt: u32,
    /// CmdSN/ExpStatSN.
    pub sn: InitiatorSn,
}

impl NopOutHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let mut w = W::start(buf, Opcode::NOP_OUT, self.immediate, 0x80);
        w.dsl(self.data_segment_len).lun(self.lun).u32(16, self.itt).u32(20, self.ttt);
        self.sn.put(&mut w);
    }
}

/// Login Request (0x03), RFC 7143 §11.12. Always immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginRequestHeader {
    /// T: transit to `nsg`.
    pub transit: bool,
    /// C: text continues in the next request.
    pub continue_bit: bool,
    /// Current stage.
    pub csg: Stage,
    /// Next stage (meaningful only with T; written as given).
    pub nsg: Stage,
    /// Version-max.
    pub version_max: u8,
    /// Version-min.
    pub version_min: u8,
    /// Data segment length.
    pub data_segment_len: u32,
    /// ISID.
    pub isid: [u8; 6],
    /// TSIH (0 for a new session).
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN/ExpStatSN.
    pub sn: InitiatorSn,
}

impl LoginRequestHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let flags = bit(self.transit, 0x80) | bit(self.continue_bit, 0x40) | ((self.csg.0 & 3) << 2) | (self.nsg.0 & 3);
        let mut w = W::start(buf, Opcode::LOGIN_REQUEST, true, flags);
        w.u8(2, self.version_max)
            .u8(3, self.version_min)
            .dsl(self.data_segment_len)
            .u16(14, self.tsih)
            .u32(16, self.itt)
            .u16(20, self.cid);
        w.0[8..14].copy_from_slice(&self.isid);
        self.sn.put(&mut w);
    }
}

/// Text Request (0x04), RFC 7143 §11.10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextRequestHeader {
    /// I: immediate delivery.
    pub immediate: bool,
    /// F: final request.
    pub final_bit: bool,
    /// C: text continues in the next request.
    pub continue_bit: bool,
    /// Data segment length.
    pub data_segment_len: u32,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// TTT: 0xffffffff for a new request, the target's TTT to continue.
    pub ttt: u32,
    /// CmdSN/ExpStatSN.
    pub sn: InitiatorSn,
}

impl TextRequestHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let flags = bit(self.final_bit, 0x80) | bit(self.continue_bit, 0x40);
        let mut w = W::start(buf, Opcode::TEXT_REQUEST, self.immediate, flags);
        w.dsl(self.data_segment_len).lun(self.lun).u32(16, self.itt).u32(20, self.ttt);
        self.sn.put(&mut w);
    }
}

/// Logout Request (0x06), RFC 7143 §11.14.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogoutRequestHeader {
    /// I: immediate delivery.
    pub immediate: bool,
    /// Reason code.
    pub reason: LogoutReason,
    /// Initiator Task Tag.
    pub itt: u32,
    /// CID to close (reasons 1 and 2).
    pub cid: u16,
    /// CmdSN/ExpStatSN.
    pub sn: InitiatorSn,
}

impl LogoutRequestHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let flags = 0x80 | (self.reason.0 & 0x7f);
        let mut w = W::start(buf, Opcode::LOGOUT_REQUEST, self.immediate, flags);
        w.u32(16, self.itt).u16(20, self.cid);
        self.sn.put(&mut w);
    }
}

/// Task Management Function Request (0x02), RFC 7143 §11.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TmfRequestHeader {
    /// I: immediate delivery.
    pub immediate: bool,
    /// Function.
    pub function: TmfFunction,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Referenced Task Tag (0xffffffff when unused).
    pub referenced_task_tag: u32,
    /// CmdSN/ExpStatSN.
    pub sn: InitiatorSn,
    /// RefCmdSN.
    pub ref_cmd_sn: u32,
    /// ExpDataSN.
    pub exp_data_sn: u32,
}

impl TmfRequestHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let flags = 0x80 | (self.function.0 & 0x7f);
        let mut w = W::start(buf, Opcode::TASK_MGMT_REQUEST, self.immediate, flags);
        w.lun(self.lun)
            .u32(16, self.itt)
            .u32(20, self.referenced_task_tag)
            .u32(32, self.ref_cmd_sn)
            .u32(36, self.exp_data_sn);
        self.sn.put(&mut w);
    }
}

/// SNACK Request (0x10), RFC 7143 §11.16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnackHeader {
    /// SNACK type.
    pub ty: SnackType,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag (0xffffffff for Status SNACK).
    pub itt: u32,
    /// TTT (DataACK) or SNACK Tag (R-Data).
    pub ttt_or_snack_tag: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// BegRun.
    pub beg_run: u32,
    /// RunLength.
    pub run_length: u32,
}

impl SnackHeader {
    /// Write the BHS.
    pub fn write(&self, buf: &mut [u8; BHS_LEN]) {
        let flags = 0x80 | (self.ty.0 & 0x0f);
        let mut w = W::start(buf, Opcode::SNACK_REQUEST, false, flags);
        w.lun(self.lun)
            .u32(16, self.itt)
            .u32(20, self.ttt_or_snack_tag)
            .u32(28, self.exp_stat_sn)
            .u32(40, self.beg_run)
            .u32(44, self.run_length);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::bhs::Bhs;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn scsi_response_matches_capture() {
        // tgtd's SCSI Response with sense, libiscsi-chap-mutual-login.pcap frame 15.
        let want =
            hex("21800002000000140000000000000000586c132f000000000000000417e62d9817e62e18000000000000000000000000");
        let mut b = [0xaa; 48];
        ScsiResponseHeader {
            status: 2,
            data_segment_len: 0x14,
            itt: 0x586c_132f,
            sn: TargetSn { stat_sn: 4, exp_cmd_sn: 0x17e6_2d98, max_cmd_sn: 0x17e6_2e18 },
            ..Default::default()
        }
        .write(&mut b);
        assert_eq!(&b[..], &want[..]);
    }

    #[test]
    fn data_in_matches_capture() {
        // tgtd's Data-In with status, libiscsi-chap-mutual-login.pcap frame 19.
        let want =
            hex("25810000000000400000000000000000586c1331ffffffff0000000617e62d9a17e62e1a000000000000000000000000");
        let mut b = [0; 48];
        DataInHeader {
            final_bit: true,
            status_present: true,
            data_segment_len: 0x40,
            itt: 0x586c_1331,
            ttt: 0xffff_ffff,
            sn: TargetSn { stat_sn: 6, exp_cmd_sn: 0x17e6_2d9a, max_cmd_sn: 0x17e6_2e1a },
            ..Default::default()
        }
        .write(&mut b);
        assert_eq!(&b[..], &want[..]);
        let v = Bhs::new_checked(&b[..]).unwrap();
        assert!(v.final_bit() && v.status_bit() && !v.ack_bit());
    }

    #[test]
    fn login_response_matches_capture() {
        // tgtd's final login response, libiscsi-login-inquiry-rw.pcap.
        let want =
            hex("238700000000012c801f82ee000001001e939f04000000000000000038c4376138c43762000000000000000000000000");
        let mut b = [0; 48];
        LoginResponseHeader {
            transit: true,
            csg: Stage::OPERATIONAL,
            nsg: Stage::FULL_FEATURE,
            data_segment_len: 0x12c,
            isid: [0x80, 0x1f, 0x82, 0xee, 0, 0],
            tsih: 0x0100,
            itt: 0x1e93_9f04,
            sn: TargetSn { stat_sn: 0, exp_cmd_sn: 0x38c4_3761, max_cmd_sn: 0x38c4_3762 },
            ..Default::default()
        }
        .write(&mut b);
        assert_eq!(&b[..], &want[..]);
    }

    #[test]
    fn r2t_and_logout_and_text() {
        let mut b = [0; 48];
        R2tHeader {
            lun: 0x0002_0000_0000_0000,
            itt: 1,
            ttt: 2,
            sn: TargetSn { stat_sn: 3, exp_cmd_sn: 4, max_cmd_sn: 5 },
            r2t_sn: 6,
            buffer_offset: 7,
            desired_data_transfer_length: 8,
        }
        .write(&mut b);
        let v = Bhs::new_checked(&b[..]).unwrap();
        assert_eq!(v.opcode(), Opcode::R2T);
        assert_eq!(b[1], 0x80);
        assert_eq!(
            (v.lun(), v.itt(), v.ttt(), v.stat_sn(), v.exp_cmd_sn(), v.max_cmd_sn()),
            (0x0002_0000_0000_0000, 1, 2, 3, 4, 5)
        );
        assert_eq!((v.r2t_sn(), v.buffer_offset(), v.desired_data_transfer_length()), (6, 7, 8));

        // tgtd's logout response, libiscsi-chap-mutual-login.pcap frame 23.
        let want =
            hex("26800000000000000000000000000000586c1333000000000000000817e62d9b17e62e1b000000000000000000000000");
        LogoutResponseHeader {
            itt: 0x586c_1333,
            sn: TargetSn { stat_sn: 8, exp_cmd_sn: 0x17e6_2d9b, max_cmd_sn: 0x17e6_2e1b },
            ..Default::default()
        }
        .write(&mut b);
        assert_eq!(&b[..], &want[..]);

        // tgtd's SendTargets response, open-iscsi capture.
        let want =
            hex("2480000000000046000000000000000000000001ffffffff000000010000000200000002000000000000000000000000");
        TextResponseHeader {
            final_bit: true,
            data_segment_len: 0x46,
            itt: 1,
            ttt: 0xffff_ffff,
            sn: TargetSn { stat_sn: 1, exp_cmd_sn: 2, max_cmd_sn: 2 },
            ..Default::default()
        }
        .write(&mut b);
        assert_eq!(&b[..], &want[..]);
    }

    #[test]
    fn async_reject_tmf_nop() {
        let mut b = [0; 48];
        AsyncMessageHeader {
            data_segment_len: 20,
            lun: 1 << 48,
            event: AsyncEvent::DROP_CONNECTION,
            vcode: 0,
            parameters: [1, 2, 3],
            sn: TargetSn::default(),
        }
        .write(&mut b);
        assert_eq!(b[0], 0x32);
        assert_eq!(&b[16..20], &[0xff; 4]);
        assert_eq!(&b[36..44], &[2, 0, 0, 1, 0, 2, 0, 3]);
        assert_eq!(&b[5..8], &[0, 0, 20]);

        RejectHeader { reason: RejectReason::PROTOCOL_ERROR, data_segment_len: 48, ..Default::default() }.write(&mut b);
        assert_eq!(&b[..8], &[0x3f, 0x80, 0x04, 0, 0, 0, 0, 48]);
        assert_eq!(&b[16..20], &[0xff; 4]);

        TmfResponseHeader { response: TmfResponse::TASK_DOES_NOT_EXIST, itt: 0x01020304, sn: TargetSn::default() }
            .write(&mut b);
        assert_eq!(&b[..4], &[0x22, 0x80, 1, 0]);
        assert_eq!(&b[16..20], &[1, 2, 3, 4]);

        NopInHeader { itt: 0xffff_ffff, ttt: 0x10, ..Default::default() }.write(&mut b);
        assert_eq!(&b[..2], &[0x20, 0x80]);
        assert_eq!(&b[20..24], &[0, 0, 0, 0x10]);
    }

    #[test]
    fn initiator_builders_match_capture() {
        // libiscsi INQUIRY command, libiscsi-chap-mutual-login.pcap frame 18.
        let want =
            hex("01c10000000000000001000000000000586c13310000004017e62d990000000612000000400000000000000000000000");
        let mut cdb = [0; 16];
        cdb[..6].copy_from_slice(&[0x12, 0, 0, 0, 0x40, 0]);
        let mut b = [0; 48];
        ScsiCommandHeader {
            final_bit: true,
            read: true,
            attr: TaskAttr::SIMPLE,
            lun: 1 << 48,
            itt: 0x586c_1331,
            expected_data_transfer_length: 0x40,
            sn: InitiatorSn { cmd_sn: 0x17e6_2d99, exp_stat_sn: 6 },
            cdb,
            ..Default::default()
        }
        .write(&mut b);
        assert_eq!(&b[..], &want[..]);

        // libiscsi login request, libiscsi-chap-mutual-login.pcap frame 8.
        let want =
            hex("430100000000000980d1259000000000586c132e0000000017e62d970000000100000000000000000000000000000000");
        LoginRequestHeader {
            csg: Stage::SECURITY,
            nsg: Stage::OPERATIONAL,
            data_segment_len: 9,
            isid: [0x80, 0xd1, 0x25, 0x90, 0, 0],
            itt: 0x586c_132e,
            sn: InitiatorSn { cmd_sn: 0x17e6_2d97, exp_stat_sn: 1 },
            ..Default::default()
        }
        .write(&mut b);
        assert_eq!(&b[..], &want[..]);

        // libiscsi logout request, frame 22.
        let want =
            hex("46800000000000000000000000000000586c13330000000017e62d9b0000000800000000000000000000000000000000");
        LogoutRequestHeader {
            immediate: true,
            reason: LogoutReason::CLOSE_SESSION,
            itt: 0x586c_1333,
            cid: 0,
            sn: InitiatorSn { cmd_sn: 0x17e6_2d9b, exp_stat_sn: 8 },
        }
        .write(&mut b);
        assert_eq!(&b[..], &want[..]);

        // open-iscsi SendTargets request.
        let want =
            hex("0480000000000010000000000000000000000001ffffffff000000010000000100000000000000000000000000000000");
        TextRequestHeader {
            final_bit: true,
            data_segment_len: 16,
            itt: 1,
            ttt: 0xffff_ffff,
            sn: InitiatorSn { cmd_sn: 1, exp_stat_sn: 1 },
            ..Default::default()
        }
        .write(&mut b);
        assert_eq!(&b[..], &want[..]);

        DataOutHeader {
            final_bit: true,
            data_segment_len: 512,
            lun: 2 << 48,
            itt: 9,
            ttt: 0x77,
            exp_stat_sn: 3,
            data_sn: 1,
            buffer_offset: 4096,
        }
        .write(&mut b);
        let v = Bhs::new_checked(&b[..]).unwrap();
        assert_eq!(v.opcode(), Opcode::DATA_OUT);
        assert_eq!(
            (v.data_segment_len(), v.ttt(), v.exp_stat_sn(), v.data_sn(), v.buffer_offset()),
            (512, 0x77, 3, 1, 4096)
        );

        TmfRequestHeader {
            immediate: true,
            function: TmfFunction::ABORT_TASK,
            lun: 0,
            itt: 5,
            referenced_task_tag: 4,
            sn: InitiatorSn { cmd_sn: 10, exp_stat_sn: 11 },
            ref_cmd_sn: 9,
            exp_data_sn: 0,
        }
        .write(&mut b);
        let v = Bhs::new_checked(&b[..]).unwrap();
        assert_eq!(b[0..2], [0x42, 0x81]);
        assert_eq!(
            (v.tmf_function(), v.referenced_task_tag(), v.ref_cmd_sn(), v.cmd_sn()),
            (TmfFunction::ABORT_TASK, 4, 9, 10)
        );

        SnackHeader { ty: SnackType::STATUS, itt: 0xffff_ffff, beg_run: 3, run_length: 2, ..Default::default() }
            .write(&mut b);
        let v = Bhs::new_checked(&b[..]).unwrap();
        assert_eq!((v.snack_type(), v.beg_run(), v.run_length()), (SnackType::STATUS, 3, 2));

        NopOutHeader { immediate: true, itt: 1, ttt: 0xffff_ffff, ..Default::default() }.write(&mut b);
        assert_eq!(&b[..2], &[0x40, 0x80]);
    }
}
