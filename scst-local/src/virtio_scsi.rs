//! The virtio-scsi wire format (virtio 1.2 §5.6 "SCSI Host Device"), sans I/O.
//!
//! Parsing works on byte slices the caller gathered from guest memory; building writes into
//! caller-provided arrays. Nothing here allocates, touches guest memory or panics on malformed
//! input: every parser returns a typed error for the caller to turn into a virtio response.
//!
//! All multi-byte fields are little-endian (virtio 1.x; legacy big-endian guests are not
//! supported: the device offers `VIRTIO_F_VERSION_1` only).

use scst::{TaskAttr, TmFunction, TmStatus};

/// Default CDB size of a request (the `cdb_size` configuration field; Linux never changes it).
pub const CDB_SIZE: usize = 32;
/// Default sense buffer size of a response (the `sense_size` configuration field).
pub const SENSE_SIZE: usize = 96;
/// Bytes of `virtio_scsi_cmd_req` before the CDB: lun\[8\], tag, task_attr, prio, crn.
pub const CMD_REQ_FIXED: usize = 19;
/// Bytes of `virtio_scsi_cmd_req` with the default CDB size.
pub const CMD_REQ_LEN: usize = CMD_REQ_FIXED + CDB_SIZE;
/// Bytes of `virtio_scsi_cmd_resp` before the sense data: sense_len, resid, status_qualifier,
/// status, response.
pub const CMD_RESP_FIXED: usize = 12;
/// Bytes of `virtio_scsi_cmd_resp` with the default sense size.
pub const CMD_RESP_LEN: usize = CMD_RESP_FIXED + SENSE_SIZE;
/// Bytes of `virtio_scsi_ctrl_tmf_req`: type, subtype, lun\[8\], tag.
pub const TMF_REQ_LEN: usize = 24;
/// Bytes of `virtio_scsi_ctrl_tmf_resp`: response.
pub const TMF_RESP_LEN: usize = 1;
/// Bytes of `virtio_scsi_ctrl_an_req`: type, lun\[8\], event_requested.
pub const AN_REQ_LEN: usize = 16;
/// Bytes of `virtio_scsi_ctrl_an_resp`: event_actual, response.
pub const AN_RESP_LEN: usize = 5;
/// Bytes of `virtio_scsi_event`: event, lun\[8\], reason.
pub const EVENT_LEN: usize = 16;

/// Feature bit: a request may have both Data-Out and Data-In (bidirectional commands).
pub const F_INOUT: u64 = 1 << 0;
/// Feature bit: the device reports hot-plug and hot-unplug on the event queue.
pub const F_HOTPLUG: u64 = 1 << 1;
/// Feature bit: the device reports parameter changes (unit attentions) on the event queue.
pub const F_CHANGE: u64 = 1 << 2;

/// Control queue request type: task management function.
pub const T_TMF: u32 = 0;
/// Control queue request type: asynchronous notification query.
pub const T_AN_QUERY: u32 = 1;
/// Control queue request type: asynchronous notification subscription.
pub const T_AN_SUBSCRIBE: u32 = 2;

/// Event: no event.
pub const T_NO_EVENT: u32 = 0;
/// Event: a transport reset (hot-plug when the reason is RESCAN, hot-unplug when REMOVED).
pub const T_TRANSPORT_RESET: u32 = 1;
/// Event: an asynchronous notification.
pub const T_ASYNC_NOTIFY: u32 = 2;
/// Event: a parameter change (a unit attention; the reason carries ASC and ASCQ).
pub const T_PARAM_CHANGE: u32 = 3;
/// Event flag: the device dropped events because the driver gave it no buffers.
pub const T_EVENTS_MISSED: u32 = 0x8000_0000;
/// Transport reset reason: the logical unit appeared (rescan it).
pub const EVT_RESET_RESCAN: u32 = 1;
/// Transport reset reason: the logical unit was removed.
pub const EVT_RESET_REMOVED: u32 = 2;

/// The `response` byte of command, TMF and AN responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response(pub u8);

impl Response {
    /// The command completed (the SCSI status says how); a TMF completed.
    pub const OK: Self = Self(0);
    /// The command needed more buffer than the driver supplied.
    pub const OVERRUN: Self = Self(1);
    /// The command was aborted by a task management function.
    pub const ABORTED: Self = Self(2);
    /// The LUN field addresses a target this device does not have.
    pub const BAD_TARGET: Self = Self(3);
    /// The command was terminated by a reset.
    pub const RESET: Self = Self(4);
    /// The device is busy; retry.
    pub const BUSY: Self = Self(5);
    /// A transport failure; retry on another path.
    pub const TRANSPORT_FAILURE: Self = Self(6);
    /// A target failure; do not retry.
    pub const TARGET_FAILURE: Self = Self(7);
    /// A nexus failure; do not retry on this path.
    pub const NEXUS_FAILURE: Self = Self(8);
    /// Any other failure (including a malformed request).
    pub const FAILURE: Self = Self(9);
    /// TMF: the function succeeded (QUERY TASK: the task exists).
    pub const FUNCTION_SUCCEEDED: Self = Self(10);
    /// TMF: the function was rejected (not supported).
    pub const FUNCTION_REJECTED: Self = Self(11);
    /// TMF: the LUN does not exist.
    pub const INCORRECT_LUN: Self = Self(12);
}

/// TMF subtypes (`virtio_scsi_ctrl_tmf_req.subtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TmfSubtype {
    /// ABORT TASK.
    AbortTask,
    /// ABORT TASK SET.
    AbortTaskSet,
    /// CLEAR ACA.
    ClearAca,
    /// CLEAR TASK SET.
    ClearTaskSet,
    /// I_T NEXUS RESET.
    ItNexusReset,
    /// LOGICAL UNIT RESET.
    LogicalUnitReset,
    /// QUERY TASK.
    QueryTask,
    /// QUERY TASK SET.
    QueryTaskSet,
}

impl TmfSubtype {
    /// Decodes the subtype field.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::AbortTask,
            1 => Self::AbortTaskSet,
            2 => Self::ClearAca,
            3 => Self::ClearTaskSet,
            4 => Self::ItNexusReset,
            5 => Self::LogicalUnitReset,
            6 => Self::QueryTask,
            7 => Self::QueryTaskSet,
            _ => return None,
        })
    }

    /// The core's task management function.
    pub fn function(self) -> TmFunction {
        match self {
            Self::AbortTask => TmFunction::ABORT_TASK,
            Self::AbortTaskSet => TmFunction::ABORT_TASK_SET,
            Self::ClearAca => TmFunction::CLEAR_ACA,
            Self::ClearTaskSet => TmFunction::CLEAR_TASK_SET,
            Self::ItNexusReset => TmFunction::I_T_NEXUS_RESET,
            Self::LogicalUnitReset => TmFunction::LUN_RESET,
            Self::QueryTask => TmFunction::QUERY_TASK,
            Self::QueryTaskSet => TmFunction::QUERY_TASK_SET,
        }
    }
}

/// Why a request could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The device-readable part is shorter than the request header.
    #[error("request header truncated: {got} of {need} bytes")]
    Short {
        /// Bytes present.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// `lun[0]` is not 1, or the target is not one this device has.
    #[error("LUN field addresses no target of this device")]
    BadTarget,
    /// A control queue request of an unknown type.
    #[error("unknown control request type {0}")]
    UnknownType(u32),
}

/// Where the 8-byte virtio LUN field points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioLun {
    /// The target number (`lun[1]`).
    pub target: u8,
    /// The single-level SAM LUN the core gets: `lun[2..4]` then `lun[4..8]` (which must be zero
    /// for a LUN the core knows; anything else becomes LOGICAL UNIT NOT SUPPORTED there).
    pub sam: [u8; 8],
}

impl VirtioLun {
    /// Decodes the field: `lun[0]` is 1, `lun[1]` the target, `lun[2..4]` the LUN in the SAM
    /// single-level format (Linux sets the flat space method bit 0x40 for every LUN).
    ///
    /// # Errors
    /// [`ParseError::BadTarget`] when `lun[0]` is not 1 or the target is not `0`: this device
    /// has one target.
    pub fn parse(lun: &[u8; 8]) -> Result<Self, ParseError> {
        if lun[0] != 1 || lun[1] != 0 {
            return Err(ParseError::BadTarget);
        }
        let mut sam = [0u8; 8];
        sam[..6].copy_from_slice(&lun[2..]);
        Ok(Self { target: lun[1], sam })
    }

    /// Encodes `lun` of target 0 as Linux's driver does in requests (flat space method, 0x40,
    /// for every LUN).
    pub fn encode(lun: u16) -> [u8; 8] {
        [1, 0, 0x40 | ((lun >> 8) as u8 & 0x3f), lun as u8, 0, 0, 0, 0]
    }

    /// Encodes `lun` of target 0 for an event: peripheral addressing below 256, flat space
    /// above (as QEMU's own virtio-scsi does). Linux's event handlers take `lun[2] << 8 | lun[3]`
    /// as the LUN number, so the flat space bit on a small LUN would name LUN 0x4000 + n.
    pub fn encode_event(lun: u16) -> [u8; 8] {
        let sam = scst::Lun(lun).to_sam();
        [1, 0, sam[0], sam[1], 0, 0, 0, 0]
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn lun_of(b: &[u8], at: usize) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    a
}

/// A parsed `virtio_scsi_cmd_req`, borrowing its CDB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdReq<'a> {
    /// The LUN field as received.
    pub lun: [u8; 8],
    /// The driver's command identifier (echoed nowhere: the used ring identifies the request;
    /// ABORT TASK names commands by it).
    pub tag: u64,
    /// Task attribute.
    pub attr: TaskAttr,
    /// Command priority (ignored: the core has no priorities).
    pub prio: u8,
    /// Command reference number (ignored: no FCP-style sequencing).
    pub crn: u8,
    /// The CDB (`cdb_size` bytes; trailing zeros included).
    pub cdb: &'a [u8],
}

impl<'a> CmdReq<'a> {
    /// Parses a request header of `cdb_size` bytes of CDB from the start of `b`.
    ///
    /// # Errors
    /// [`ParseError::Short`] when `b` is shorter than the header. An unknown task attribute is
    /// not an error: it is handled as SIMPLE (the spec defines 0..=3 only).
    pub fn parse(b: &'a [u8], cdb_size: usize) -> Result<Self, ParseError> {
        let need = CMD_REQ_FIXED + cdb_size;
        if b.len() < need {
            return Err(ParseError::Short { got: b.len(), need });
        }
        let attr = match b[16] {
            1 => TaskAttr::Ordered,
            2 => TaskAttr::HeadOfQueue,
            3 => TaskAttr::Aca,
            _ => TaskAttr::Simple,
        };
        Ok(Self { lun: lun_of(b, 0), tag: le64(b, 8), attr, prio: b[17], crn: b[18], cdb: &b[CMD_REQ_FIXED..need] })
    }
}

/// A `virtio_scsi_cmd_resp` to write back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdResp<'a> {
    /// Residual bytes of the data buffer that were not transferred.
    pub resid: u32,
    /// SCSI status.
    pub status: u8,
    /// Virtio response code.
    pub response: Response,
    /// Sense data (truncated to the sense size when written).
    pub sense: &'a [u8],
}

impl CmdResp<'_> {
    /// A response with only a virtio response code (no SCSI status, no sense).
    pub fn only(response: Response) -> CmdResp<'static> {
        CmdResp { resid: 0, status: 0, response, sense: &[] }
    }

    /// Writes the response into `out` (at most [`CMD_RESP_FIXED`] + `out.len()`-limited sense)
    /// and returns the bytes written. `sense_len` is the sense bytes actually written, so a
    /// driver with a short response buffer never reads past what it got.
    pub fn write(&self, out: &mut [u8; CMD_RESP_LEN], sense_size: usize) -> usize {
        let n = self.sense.len().min(sense_size).min(SENSE_SIZE);
        out[0..4].copy_from_slice(&(n as u32).to_le_bytes());
        out[4..8].copy_from_slice(&self.resid.to_le_bytes());
        out[8..10].copy_from_slice(&0u16.to_le_bytes());
        out[10] = self.status;
        out[11] = self.response.0;
        out[CMD_RESP_FIXED..CMD_RESP_FIXED + n].copy_from_slice(&self.sense[..n]);
        out[CMD_RESP_FIXED + n..].fill(0);
        CMD_RESP_FIXED + sense_size.min(SENSE_SIZE)
    }
}

/// A control queue request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtrlReq {
    /// A task management function; `subtype` is `None` for an unknown subtype (answered
    /// FUNCTION REJECTED).
    Tmf {
        /// The function.
        subtype: Option<TmfSubtype>,
        /// The LUN field.
        lun: [u8; 8],
        /// The referenced command's tag (ABORT TASK, QUERY TASK).
        tag: u64,
    },
    /// Asynchronous notification query (`subscribe` false) or subscription.
    An {
        /// Whether this is AN SUBSCRIBE.
        subscribe: bool,
        /// The LUN field.
        lun: [u8; 8],
        /// Event classes the driver asks about.
        event_requested: u32,
    },
}

impl CtrlReq {
    /// Parses a control queue request from the device-readable bytes.
    ///
    /// # Errors
    /// [`ParseError::Short`] for a truncated request, [`ParseError::UnknownType`] for a type
    /// other than TMF, AN QUERY and AN SUBSCRIBE.
    pub fn parse(b: &[u8]) -> Result<Self, ParseError> {
        if b.len() < 4 {
            return Err(ParseError::Short { got: b.len(), need: 4 });
        }
        match le32(b, 0) {
            T_TMF => {
                if b.len() < TMF_REQ_LEN {
                    return Err(ParseError::Short { got: b.len(), need: TMF_REQ_LEN });
                }
                Ok(Self::Tmf { subtype: TmfSubtype::from_u32(le32(b, 4)), lun: lun_of(b, 8), tag: le64(b, 16) })
            }
            t @ (T_AN_QUERY | T_AN_SUBSCRIBE) => {
                if b.len() < AN_REQ_LEN {
                    return Err(ParseError::Short { got: b.len(), need: AN_REQ_LEN });
                }
                Ok(Self::An { subscribe: t == T_AN_SUBSCRIBE, lun: lun_of(b, 4), event_requested: le32(b, 12) })
            }
            t => Err(ParseError::UnknownType(t)),
        }
    }

    /// Bytes of the device-writable response this request type needs.
    pub fn response_len(&self) -> usize {
        match self {
            Self::Tmf { .. } => TMF_RESP_LEN,
            Self::An { .. } => AN_RESP_LEN,
        }
    }
}

/// The virtio response of a core task management status, for `subtype`.
///
/// SAM-5: ABORT TASK of a task that does not exist is FUNCTION COMPLETE; QUERY TASK and
/// QUERY TASK SET answer FUNCTION SUCCEEDED when a task exists, FUNCTION COMPLETE otherwise.
pub fn tmf_response(status: TmStatus) -> Response {
    match status {
        TmStatus::COMPLETE | TmStatus::NO_TASK => Response::OK,
        TmStatus::SUCCEEDED => Response::FUNCTION_SUCCEEDED,
        TmStatus::NO_LUN => Response::INCORRECT_LUN,
        _ => Response::FUNCTION_REJECTED,
    }
}

/// Writes an AN response: the event classes the device will report (none: asynchronous
/// notification of media or operational events is not implemented) and the response code.
pub fn write_an_resp(out: &mut [u8; AN_RESP_LEN], event_actual: u32, response: Response) {
    out[0..4].copy_from_slice(&event_actual.to_le_bytes());
    out[4] = response.0;
}

/// An event for the event queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The event type, possibly with [`T_EVENTS_MISSED`].
    pub event: u32,
    /// The LUN field.
    pub lun: [u8; 8],
    /// Type-specific reason (for [`T_PARAM_CHANGE`]: ASC in the low byte, ASCQ in the next).
    pub reason: u32,
}

impl Event {
    /// A hot-plug (`added`) or hot-unplug event for `lun` of target 0.
    pub fn lun_change(lun: u16, added: bool) -> Self {
        Self {
            event: T_TRANSPORT_RESET,
            lun: VirtioLun::encode_event(lun),
            reason: if added { EVT_RESET_RESCAN } else { EVT_RESET_REMOVED },
        }
    }

    /// A parameter change (unit attention with `asc`/`ascq`) for `lun` of target 0.
    pub fn param_change(lun: u16, asc: u8, ascq: u8) -> Self {
        Self { event: T_PARAM_CHANGE, lun: VirtioLun::encode_event(lun), reason: u32::from(asc) | u32::from(ascq) << 8 }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> [u8; EVENT_LEN] {
        let mut b = [0u8; EVENT_LEN];
        b[0..4].copy_from_slice(&self.event.to_le_bytes());
        b[4..12].copy_from_slice(&self.lun);
        b[12..16].copy_from_slice(&self.reason.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_bytes(lun: [u8; 8], tag: u64, attr: u8, cdb: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&lun);
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&[attr, 7, 9]);
        let mut c = [0u8; CDB_SIZE];
        c[..cdb.len()].copy_from_slice(cdb);
        b.extend_from_slice(&c);
        b
    }

    #[test]
    fn cmd_req_fields_at_their_offsets() {
        let b = req_bytes([1, 0, 0x40, 5, 0, 0, 0, 0], 0x1122_3344_5566_7788, 1, &[0x28, 0, 0, 0, 0, 8]);
        assert_eq!(b.len(), CMD_REQ_LEN);
        let r = CmdReq::parse(&b, CDB_SIZE).unwrap();
        assert_eq!(r.tag, 0x1122_3344_5566_7788);
        assert_eq!(r.attr, TaskAttr::Ordered);
        assert_eq!((r.prio, r.crn), (7, 9));
        assert_eq!(r.cdb.len(), 32);
        assert_eq!(&r.cdb[..6], &[0x28, 0, 0, 0, 0, 8]);
        let l = VirtioLun::parse(&r.lun).unwrap();
        assert_eq!(l.sam, [0x40, 5, 0, 0, 0, 0, 0, 0]);
        assert_eq!(scst::Lun::from_sam(l.sam), Some(scst::Lun(5)));
    }

    #[test]
    fn cmd_req_attrs_and_truncation() {
        for (v, a) in [(0, TaskAttr::Simple), (2, TaskAttr::HeadOfQueue), (3, TaskAttr::Aca), (200, TaskAttr::Simple)] {
            let b = req_bytes(VirtioLun::encode(0), 1, v, &[0]);
            assert_eq!(CmdReq::parse(&b, CDB_SIZE).unwrap().attr, a);
        }
        let b = req_bytes(VirtioLun::encode(0), 1, 0, &[0]);
        assert_eq!(CmdReq::parse(&b[..50], CDB_SIZE), Err(ParseError::Short { got: 50, need: 51 }));
        assert_eq!(CmdReq::parse(&[], CDB_SIZE), Err(ParseError::Short { got: 0, need: 51 }));
        // A smaller negotiated CDB size parses a shorter header.
        assert_eq!(CmdReq::parse(&b[..35], 16).unwrap().cdb.len(), 16);
    }

    #[test]
    fn lun_field_encoding() {
        assert_eq!(VirtioLun::encode(0), [1, 0, 0x40, 0, 0, 0, 0, 0]);
        assert_eq!(VirtioLun::encode(300), [1, 0, 0x41, 0x2c, 0, 0, 0, 0]);
        assert_eq!(scst::Lun::from_sam(VirtioLun::parse(&VirtioLun::encode(300)).unwrap().sam), Some(scst::Lun(300)));
        // Peripheral addressing works too.
        let l = VirtioLun::parse(&[1, 0, 0, 3, 0, 0, 0, 0]).unwrap();
        assert_eq!(scst::Lun::from_sam(l.sam), Some(scst::Lun(3)));
        assert_eq!(VirtioLun::parse(&[0, 0, 0x40, 0, 0, 0, 0, 0]), Err(ParseError::BadTarget));
        assert_eq!(VirtioLun::parse(&[1, 1, 0x40, 0, 0, 0, 0, 0]), Err(ParseError::BadTarget));
        // Non-zero bytes 4..8 reach the core, which refuses them (LOGICAL UNIT NOT SUPPORTED).
        let l = VirtioLun::parse(&[1, 0, 0x40, 0, 1, 0, 0, 0]).unwrap();
        assert_eq!(scst::Lun::from_sam(l.sam), None);
    }

    #[test]
    fn cmd_resp_layout() {
        let sense = [0x70u8, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0];
        let r = CmdResp { resid: 0x0102_0304, status: 2, response: Response::OK, sense: &sense };
        let mut out = [0xffu8; CMD_RESP_LEN];
        assert_eq!(r.write(&mut out, SENSE_SIZE), CMD_RESP_LEN);
        assert_eq!(&out[..12], &[18, 0, 0, 0, 4, 3, 2, 1, 0, 0, 2, 0]);
        assert_eq!(&out[12..30], &sense);
        assert!(out[30..].iter().all(|&b| b == 0));
        // A short sense size truncates sense_len too.
        let mut out = [0u8; CMD_RESP_LEN];
        assert_eq!(r.write(&mut out, 8), 20);
        assert_eq!(out[0], 8);
        let mut out = [0u8; CMD_RESP_LEN];
        CmdResp::only(Response::BAD_TARGET).write(&mut out, SENSE_SIZE);
        assert_eq!(&out[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
    }

    #[test]
    fn tmf_requests() {
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&5u32.to_le_bytes());
        b.extend_from_slice(&VirtioLun::encode(2));
        b.extend_from_slice(&77u64.to_le_bytes());
        let r = CtrlReq::parse(&b).unwrap();
        assert_eq!(r, CtrlReq::Tmf { subtype: Some(TmfSubtype::LogicalUnitReset), lun: VirtioLun::encode(2), tag: 77 });
        assert_eq!(r.response_len(), 1);
        let want = [
            (0, TmFunction::ABORT_TASK),
            (1, TmFunction::ABORT_TASK_SET),
            (2, TmFunction::CLEAR_ACA),
            (3, TmFunction::CLEAR_TASK_SET),
            (4, TmFunction::I_T_NEXUS_RESET),
            (5, TmFunction::LUN_RESET),
            (6, TmFunction::QUERY_TASK),
            (7, TmFunction::QUERY_TASK_SET),
        ];
        for (v, f) in want {
            assert_eq!(TmfSubtype::from_u32(v).unwrap().function(), f);
        }
        b[4] = 8;
        assert!(matches!(CtrlReq::parse(&b).unwrap(), CtrlReq::Tmf { subtype: None, .. }));
        assert_eq!(CtrlReq::parse(&b[..23]), Err(ParseError::Short { got: 23, need: 24 }));
        assert_eq!(CtrlReq::parse(&[0, 0]), Err(ParseError::Short { got: 2, need: 4 }));
        b[0] = 9;
        assert_eq!(CtrlReq::parse(&b), Err(ParseError::UnknownType(9)));
    }

    #[test]
    fn an_requests_and_responses() {
        let mut b = Vec::new();
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&VirtioLun::encode(0));
        b.extend_from_slice(&0x54u32.to_le_bytes());
        assert_eq!(
            CtrlReq::parse(&b).unwrap(),
            CtrlReq::An { subscribe: true, lun: VirtioLun::encode(0), event_requested: 0x54 }
        );
        assert_eq!(CtrlReq::parse(&b[..15]), Err(ParseError::Short { got: 15, need: 16 }));
        let mut out = [0xffu8; AN_RESP_LEN];
        write_an_resp(&mut out, 0, Response::OK);
        assert_eq!(out, [0, 0, 0, 0, 0]);
    }

    #[test]
    fn tmf_status_mapping() {
        assert_eq!(tmf_response(TmStatus::COMPLETE), Response::OK);
        assert_eq!(tmf_response(TmStatus::NO_TASK), Response::OK);
        assert_eq!(tmf_response(TmStatus::SUCCEEDED), Response::FUNCTION_SUCCEEDED);
        assert_eq!(tmf_response(TmStatus::NO_LUN), Response::INCORRECT_LUN);
        assert_eq!(tmf_response(TmStatus::NOT_SUPPORTED), Response::FUNCTION_REJECTED);
        assert_eq!(tmf_response(TmStatus::REJECTED), Response::FUNCTION_REJECTED);
    }

    #[test]
    fn events() {
        assert_eq!(Event::lun_change(1, true).to_bytes(), [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(Event::lun_change(1, false).to_bytes()[12], 2);
        // LUN 300 needs the flat space method.
        assert_eq!(&Event::lun_change(300, true).to_bytes()[4..8], &[1, 0, 0x41, 0x2c]);
        // CAPACITY DATA HAS CHANGED: ASC 2Ah ASCQ 09h.
        assert_eq!(
            Event::param_change(0, 0x2a, 0x09).to_bytes(),
            [3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x2a, 0x09, 0, 0]
        );
    }
}
