//! SRP information units (T10 SRP r16a, SRP-2): zero-copy views over received bytes and
//! builders for the ones a target sends.
//!
//! Every view is made by a `parse` function that checks the opcode and the length first, so its
//! accessors index within bounds; nothing here panics on any input. Multi-byte fields are big
//! endian; tags are 8 opaque bytes, read as a big-endian `u64` and written back the same way, so
//! an initiator sees its own bytes echoed.

/// IU opcodes (SRP r16a table 8, plus the SRP-2 values Linux uses).
pub mod opcode {
    /// SRP_LOGIN_REQ (initiator to target).
    pub const LOGIN_REQ: u8 = 0x00;
    /// SRP_TSK_MGMT (initiator to target).
    pub const TSK_MGMT: u8 = 0x01;
    /// SRP_CMD (initiator to target).
    pub const CMD: u8 = 0x02;
    /// SRP_I_LOGOUT (initiator to target).
    pub const I_LOGOUT: u8 = 0x03;
    /// SRP_CRED_RSP (initiator to target, answers SRP_CRED_REQ).
    pub const CRED_RSP: u8 = 0x41;
    /// SRP_AER_RSP (initiator to target, answers SRP_AER_REQ).
    pub const AER_RSP: u8 = 0x42;
    /// SRP_T_LOGOUT (target to initiator).
    pub const T_LOGOUT: u8 = 0x80;
    /// SRP_CRED_REQ (target to initiator).
    pub const CRED_REQ: u8 = 0x81;
    /// SRP_AER_REQ (target to initiator).
    pub const AER_REQ: u8 = 0x82;
    /// SRP_LOGIN_RSP (target to initiator).
    pub const LOGIN_RSP: u8 = 0xc0;
    /// SRP_RSP (target to initiator).
    pub const RSP: u8 = 0xc1;
    /// SRP_LOGIN_REJ (target to initiator).
    pub const LOGIN_REJ: u8 = 0xc2;
}

/// Length of SRP_LOGIN_REQ as the SRP standard lays it out (IB CM private data).
pub const LOGIN_REQ_LEN: usize = 64;
/// Length of the RDMA/CM form of the login request Linux's ib_srp sends: the same fields
/// without the reserved bytes, in another order, because RDMA/CM over InfiniBand carries only
/// 56 bytes of connect private data.
pub const LOGIN_REQ_RDMA_LEN: usize = 56;
/// Length of SRP_LOGIN_RSP.
pub const LOGIN_RSP_LEN: usize = 52;
/// Length of SRP_LOGIN_REJ.
pub const LOGIN_REJ_LEN: usize = 32;
/// Length of SRP_I_LOGOUT, SRP_T_LOGOUT, SRP_CRED_REQ/RSP and SRP_AER_RSP.
pub const SHORT_IU_LEN: usize = 16;
/// Length of SRP_TSK_MGMT.
pub const TSK_MGMT_LEN: usize = 48;
/// Length of SRP_CMD without additional CDB bytes and descriptors.
pub const CMD_LEN: usize = 48;
/// Length of the fixed part of SRP_RSP.
pub const RSP_LEN: usize = 36;
/// Length of the fixed part of SRP_AER_REQ.
pub const AER_REQ_LEN: usize = 36;
/// Length of a direct data buffer descriptor.
pub const DIRECT_DESC_LEN: usize = 16;
/// Length of the fixed part of an indirect data buffer descriptor (table descriptor and total
/// length), which the partial memory descriptor list follows.
pub const INDIRECT_HDR_LEN: usize = 20;
/// Length of an SRP-2 immediate data descriptor (the data length).
pub const IMM_DESC_LEN: usize = 4;

/// Buffer formats of SRP_LOGIN_REQ/RSP (`req_buf_fmt`, `sup_buf_fmt`).
pub mod buf_fmt {
    /// Direct data buffer descriptors.
    pub const DIRECT: u16 = 1 << 1;
    /// Indirect data buffer descriptors.
    pub const INDIRECT: u16 = 1 << 2;
}

/// Login request flags (`req_flags`).
pub mod req_flags {
    /// MULTI-CHANNEL ACTION: 0 = terminate other channels of the nexus (single), 1 = keep them.
    pub const MULTICHANNEL_MASK: u8 = 0x03;
    /// Keep the nexus's other channels.
    pub const MULTI: u8 = 0x01;
    /// SRP-2 immediate data requested.
    pub const IMMED_REQUESTED: u8 = 0x80;
}

/// Login response flags (`rsp_flags`).
pub mod rsp_flags {
    /// No existing channel was terminated or kept.
    pub const NO_CHANNEL: u8 = 0x0;
    /// Existing channels of the nexus were terminated (single-channel login).
    pub const TERMINATED: u8 = 0x1;
    /// Existing channels of the nexus were kept (multichannel login).
    pub const MAINTAINED: u8 = 0x2;
    /// SRP-2 immediate data supported.
    pub const IMMED_SUPPORTED: u8 = 0x80;
}

/// SRP_RSP flags.
pub mod rsp_flag {
    /// Response data is present.
    pub const RSPVALID: u8 = 1 << 0;
    /// Sense data is present.
    pub const SNSVALID: u8 = 1 << 1;
    /// Data-out residual: the command wanted more data than the initiator described.
    pub const DOOVER: u8 = 1 << 2;
    /// Data-out residual: the command took less data than the initiator described.
    pub const DOUNDER: u8 = 1 << 3;
    /// Data-in residual: the command produced more data than the initiator's buffer holds.
    pub const DIOVER: u8 = 1 << 4;
    /// Data-in residual: the command produced less data than the initiator's buffer holds.
    pub const DIUNDER: u8 = 1 << 5;
}

/// SRP_RSP response codes for task management (RSPVALID, SRP r16a table 24).
pub mod tm_rsp {
    /// NO FAILURE or TASK MANAGEMENT FUNCTION COMPLETE.
    pub const COMPLETE: u8 = 0x00;
    /// REQUEST FIELDS INVALID.
    pub const FIELDS_INVALID: u8 = 0x02;
    /// TASK MANAGEMENT FUNCTION NOT SUPPORTED.
    pub const NOT_SUPPORTED: u8 = 0x04;
    /// TASK MANAGEMENT FUNCTION FAILED.
    pub const FAILED: u8 = 0x05;
}

/// SRP_TSK_MGMT function codes.
pub mod tmf {
    /// ABORT TASK.
    pub const ABORT_TASK: u8 = 0x01;
    /// ABORT TASK SET.
    pub const ABORT_TASK_SET: u8 = 0x02;
    /// CLEAR TASK SET.
    pub const CLEAR_TASK_SET: u8 = 0x04;
    /// LOGICAL UNIT RESET.
    pub const LUN_RESET: u8 = 0x08;
    /// CLEAR ACA.
    pub const CLEAR_ACA: u8 = 0x40;
}

/// SRP_T_LOGOUT reasons (SRP r16a table 16).
pub mod logout_reason {
    /// No reason given.
    pub const NO_REASON: u32 = 0;
    /// Inactive RDMA channel.
    pub const INACTIVE: u32 = 1;
    /// Invalid information unit type.
    pub const INVALID_IU_TYPE: u32 = 2;
    /// A response the target did not expect.
    pub const UNEXPECTED_RESPONSE: u32 = 3;
    /// Terminated by a single-channel login of the same nexus (multi-channel action).
    pub const MULTICHANNEL_ACTION: u32 = 4;
    /// Unsupported format of the data-out buffer descriptor.
    pub const UNSUPPORTED_DATA_OUT_FORMAT: u32 = 6;
    /// Unsupported format of the data-in buffer descriptor.
    pub const UNSUPPORTED_DATA_IN_FORMAT: u32 = 7;
    /// An information unit of invalid length.
    pub const INVALID_IU_LENGTH: u32 = 8;
}

/// SRP_LOGIN_REJ reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectReason(pub u32);

impl RejectReason {
    /// Unable to establish RDMA channel, no reason specified.
    pub const UNABLE_TO_ESTABLISH: Self = Self(0x0001_0000);
    /// Insufficient RDMA channel resources.
    pub const INSUFFICIENT_RESOURCES: Self = Self(0x0001_0001);
    /// Requested maximum initiator to target IU length value too large.
    pub const IU_LENGTH_TOO_LARGE: Self = Self(0x0001_0002);
    /// Unable to associate RDMA channel with specified I_T nexus (wrong target port).
    pub const UNABLE_TO_ASSOCIATE: Self = Self(0x0001_0003);
    /// One or more requested data buffer descriptor formats are not supported.
    pub const UNSUPPORTED_DESCRIPTOR_FORMAT: Self = Self(0x0001_0004);
    /// SRP target port does not support multiple RDMA channels per I_T nexus.
    pub const MULTICHANNEL_UNSUPPORTED: Self = Self(0x0001_0005);
    /// RDMA channel limit reached for this initiator.
    pub const CHANNEL_LIMIT_REACHED: Self = Self(0x0001_0006);
}

/// Why bytes are not a valid IU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IuError {
    /// Shorter than the IU's layout.
    #[error("IU of {got} bytes, at least {need} needed")]
    TooShort {
        /// Bytes needed.
        need: usize,
        /// Bytes received.
        got: usize,
    },
    /// Not the opcode this parser reads.
    #[error("opcode {got:#04x} where {want:#04x} was expected")]
    Opcode {
        /// Opcode expected.
        want: u8,
        /// Opcode found.
        got: u8,
    },
    /// A data buffer descriptor format this implementation does not know.
    #[error("unsupported data buffer descriptor format {0}")]
    DescriptorFormat(u8),
    /// A descriptor count that contradicts the format (e.g. a direct format with a count
    /// other than one, or descriptors without a format).
    #[error("descriptor count {count} does not fit format {format}")]
    DescriptorCount {
        /// Format code.
        format: u8,
        /// Count given.
        count: u8,
    },
}

fn need(b: &[u8], n: usize) -> Result<(), IuError> {
    if b.len() < n { Err(IuError::TooShort { need: n, got: b.len() }) } else { Ok(()) }
}

fn op(b: &[u8], want: u8) -> Result<(), IuError> {
    need(b, 1)?;
    if b[0] != want { Err(IuError::Opcode { want, got: b[0] }) } else { Ok(()) }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn arr16(b: &[u8], at: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    a
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// The opcode of an IU, if it has one byte.
pub fn opcode_of(b: &[u8]) -> Option<u8> {
    b.first().copied()
}

/// The fields of a login request, whichever layout carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginReq {
    /// Tag, echoed in the response or rejection.
    pub tag: u64,
    /// Largest initiator-to-target IU the initiator will send.
    pub req_it_iu_len: u32,
    /// Buffer formats the initiator asks for ([`buf_fmt`]).
    pub req_buf_fmt: u16,
    /// Flags ([`req_flags`]).
    pub req_flags: u8,
    /// SRP-2 offset of immediate data in SRP_CMD.
    pub imm_data_offset: u16,
    /// Initiator port identifier.
    pub initiator_port_id: [u8; 16],
    /// Target port identifier (for Linux's ib_srp: `id_ext` then `ioc_guid`, 8 bytes each).
    pub target_port_id: [u8; 16],
}

impl LoginReq {
    /// Parses the 64-byte SRP_LOGIN_REQ of the SRP standard.
    ///
    /// # Errors
    /// Too short or not opcode 00h.
    pub fn parse(b: &[u8]) -> Result<Self, IuError> {
        op(b, opcode::LOGIN_REQ)?;
        need(b, LOGIN_REQ_LEN)?;
        Ok(Self {
            tag: be64(b, 8),
            req_it_iu_len: be32(b, 16),
            req_buf_fmt: be16(b, 24),
            req_flags: b[26],
            imm_data_offset: be16(b, 28),
            initiator_port_id: arr16(b, 32),
            target_port_id: arr16(b, 48),
        })
    }

    /// Parses the 56-byte login request Linux's ib_srp puts in RDMA/CM connect private data
    /// (`struct srp_login_req_rdma`: tag, buffer formats, flags, opcode, IU length, port ids,
    /// immediate data offset).
    ///
    /// # Errors
    /// Too short or not opcode 00h.
    pub fn parse_rdma_cm(b: &[u8]) -> Result<Self, IuError> {
        need(b, LOGIN_REQ_RDMA_LEN)?;
        if b[11] != opcode::LOGIN_REQ {
            return Err(IuError::Opcode { want: opcode::LOGIN_REQ, got: b[11] });
        }
        Ok(Self {
            tag: be64(b, 0),
            req_buf_fmt: be16(b, 8),
            req_flags: b[10],
            req_it_iu_len: be32(b, 12),
            initiator_port_id: arr16(b, 16),
            target_port_id: arr16(b, 32),
            imm_data_offset: be16(b, 48),
        })
    }

    /// Parses connect private data in either layout: 64 bytes or more starting with opcode 00h
    /// is the standard layout, otherwise the RDMA/CM one.
    ///
    /// # Errors
    /// Neither layout fits.
    pub fn parse_any(b: &[u8]) -> Result<Self, IuError> {
        if b.len() >= LOGIN_REQ_LEN && b[0] == opcode::LOGIN_REQ { Self::parse(b) } else { Self::parse_rdma_cm(b) }
    }

    /// The standard 64-byte encoding (for initiators and tests).
    pub fn build(&self) -> [u8; LOGIN_REQ_LEN] {
        let mut b = [0u8; LOGIN_REQ_LEN];
        b[0] = opcode::LOGIN_REQ;
        put64(&mut b, 8, self.tag);
        put32(&mut b, 16, self.req_it_iu_len);
        put16(&mut b, 24, self.req_buf_fmt);
        b[26] = self.req_flags;
        put16(&mut b, 28, self.imm_data_offset);
        b[32..48].copy_from_slice(&self.initiator_port_id);
        b[48..64].copy_from_slice(&self.target_port_id);
        b
    }

    /// The 56-byte RDMA/CM encoding (for initiators and tests).
    pub fn build_rdma_cm(&self) -> [u8; LOGIN_REQ_RDMA_LEN] {
        let mut b = [0u8; LOGIN_REQ_RDMA_LEN];
        put64(&mut b, 0, self.tag);
        put16(&mut b, 8, self.req_buf_fmt);
        b[10] = self.req_flags;
        b[11] = opcode::LOGIN_REQ;
        put32(&mut b, 12, self.req_it_iu_len);
        b[16..32].copy_from_slice(&self.initiator_port_id);
        b[32..48].copy_from_slice(&self.target_port_id);
        put16(&mut b, 48, self.imm_data_offset);
        b
    }
}

/// SRP_LOGIN_RSP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginRsp {
    /// Credits granted: how many requests the initiator may send before it hears more.
    pub req_lim_delta: u32,
    /// The login request's tag.
    pub tag: u64,
    /// Largest initiator-to-target IU the target accepts.
    pub max_it_iu_len: u32,
    /// Largest target-to-initiator IU the target sends.
    pub max_ti_iu_len: u32,
    /// Buffer formats supported ([`buf_fmt`]).
    pub sup_buf_fmt: u16,
    /// Flags ([`rsp_flags`]).
    pub rsp_flags: u8,
}

impl LoginRsp {
    /// The 52-byte encoding.
    pub fn build(&self) -> [u8; LOGIN_RSP_LEN] {
        let mut b = [0u8; LOGIN_RSP_LEN];
        b[0] = opcode::LOGIN_RSP;
        put32(&mut b, 4, self.req_lim_delta);
        put64(&mut b, 8, self.tag);
        put32(&mut b, 16, self.max_it_iu_len);
        put32(&mut b, 20, self.max_ti_iu_len);
        put16(&mut b, 24, self.sup_buf_fmt);
        b[26] = self.rsp_flags;
        b
    }

    /// Parses a login response (for initiators and tests).
    ///
    /// # Errors
    /// Too short or not opcode C0h.
    pub fn parse(b: &[u8]) -> Result<Self, IuError> {
        op(b, opcode::LOGIN_RSP)?;
        need(b, LOGIN_RSP_LEN)?;
        Ok(Self {
            req_lim_delta: be32(b, 4),
            tag: be64(b, 8),
            max_it_iu_len: be32(b, 16),
            max_ti_iu_len: be32(b, 20),
            sup_buf_fmt: be16(b, 24),
            rsp_flags: b[26],
        })
    }
}

/// SRP_LOGIN_REJ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginRej {
    /// Why.
    pub reason: RejectReason,
    /// The login request's tag.
    pub tag: u64,
    /// Buffer formats the target supports.
    pub sup_buf_fmt: u16,
}

impl LoginRej {
    /// The 32-byte encoding.
    pub fn build(&self) -> [u8; LOGIN_REJ_LEN] {
        let mut b = [0u8; LOGIN_REJ_LEN];
        b[0] = opcode::LOGIN_REJ;
        put32(&mut b, 4, self.reason.0);
        put64(&mut b, 8, self.tag);
        put16(&mut b, 24, self.sup_buf_fmt);
        b
    }

    /// Parses a login rejection (for initiators and tests).
    ///
    /// # Errors
    /// Too short or not opcode C2h.
    pub fn parse(b: &[u8]) -> Result<Self, IuError> {
        op(b, opcode::LOGIN_REJ)?;
        need(b, LOGIN_REJ_LEN)?;
        Ok(Self { reason: RejectReason(be32(b, 4)), tag: be64(b, 8), sup_buf_fmt: be16(b, 24) })
    }
}

/// Parses SRP_I_LOGOUT and returns its tag.
///
/// # Errors
/// Too short or not opcode 03h.
pub fn parse_i_logout(b: &[u8]) -> Result<u64, IuError> {
    op(b, opcode::I_LOGOUT)?;
    need(b, SHORT_IU_LEN)?;
    Ok(be64(b, 8))
}

/// Builds SRP_I_LOGOUT (for initiators and tests).
pub fn build_i_logout(tag: u64) -> [u8; SHORT_IU_LEN] {
    let mut b = [0u8; SHORT_IU_LEN];
    b[0] = opcode::I_LOGOUT;
    put64(&mut b, 8, tag);
    b
}

/// SRP_T_LOGOUT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TLogout {
    /// Solicited notification flags.
    pub sol_not: u8,
    /// Why ([`logout_reason`]).
    pub reason: u32,
    /// Tag.
    pub tag: u64,
}

impl TLogout {
    /// The 16-byte encoding.
    pub fn build(&self) -> [u8; SHORT_IU_LEN] {
        let mut b = [0u8; SHORT_IU_LEN];
        b[0] = opcode::T_LOGOUT;
        b[1] = self.sol_not;
        put32(&mut b, 4, self.reason);
        put64(&mut b, 8, self.tag);
        b
    }

    /// Parses SRP_T_LOGOUT (for initiators and tests).
    ///
    /// # Errors
    /// Too short or not opcode 80h.
    pub fn parse(b: &[u8]) -> Result<Self, IuError> {
        op(b, opcode::T_LOGOUT)?;
        need(b, SHORT_IU_LEN)?;
        Ok(Self { sol_not: b[1], reason: be32(b, 4), tag: be64(b, 8) })
    }
}

/// SRP_CRED_REQ: credits for the initiator when no response is due to carry them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CredReq {
    /// Solicited notification flags.
    pub sol_not: u8,
    /// Credits granted.
    pub req_lim_delta: u32,
    /// Tag, echoed in SRP_CRED_RSP.
    pub tag: u64,
}

impl CredReq {
    /// The 16-byte encoding.
    pub fn build(&self) -> [u8; SHORT_IU_LEN] {
        let mut b = [0u8; SHORT_IU_LEN];
        b[0] = opcode::CRED_REQ;
        b[1] = self.sol_not;
        put32(&mut b, 4, self.req_lim_delta);
        put64(&mut b, 8, self.tag);
        b
    }

    /// Parses SRP_CRED_REQ (for initiators and tests).
    ///
    /// # Errors
    /// Too short or not opcode 81h.
    pub fn parse(b: &[u8]) -> Result<Self, IuError> {
        op(b, opcode::CRED_REQ)?;
        need(b, SHORT_IU_LEN)?;
        Ok(Self { sol_not: b[1], req_lim_delta: be32(b, 4), tag: be64(b, 8) })
    }
}

/// Parses SRP_CRED_RSP and returns its tag.
///
/// # Errors
/// Too short or not opcode 41h.
pub fn parse_cred_rsp(b: &[u8]) -> Result<u64, IuError> {
    op(b, opcode::CRED_RSP)?;
    need(b, SHORT_IU_LEN)?;
    Ok(be64(b, 8))
}

/// Parses SRP_AER_RSP and returns its tag.
///
/// # Errors
/// Too short or not opcode 42h.
pub fn parse_aer_rsp(b: &[u8]) -> Result<u64, IuError> {
    op(b, opcode::AER_RSP)?;
    need(b, SHORT_IU_LEN)?;
    Ok(be64(b, 8))
}

/// Builds a 16-byte initiator response (SRP_CRED_RSP or SRP_AER_RSP) with `tag` (for initiators
/// and tests).
pub fn build_short_rsp(opcode: u8, tag: u64) -> [u8; SHORT_IU_LEN] {
    let mut b = [0u8; SHORT_IU_LEN];
    b[0] = opcode;
    put64(&mut b, 8, tag);
    b
}

/// SRP_AER_REQ: an asynchronous event (sense data) for a LUN.
#[derive(Clone, Copy, Debug)]
pub struct AerReq<'a> {
    /// Solicited notification flags.
    pub sol_not: u8,
    /// Credits granted.
    pub req_lim_delta: u32,
    /// Tag, echoed in SRP_AER_RSP.
    pub tag: u64,
    /// The LUN the event concerns.
    pub lun: [u8; 8],
    /// Sense data.
    pub sense: &'a [u8],
}

impl AerReq<'_> {
    /// Appends the encoding (36 bytes and the sense data) to `out`.
    pub fn build_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + AER_REQ_LEN, 0);
        let b = &mut out[start..];
        b[0] = opcode::AER_REQ;
        b[1] = self.sol_not;
        put32(b, 4, self.req_lim_delta);
        put64(b, 8, self.tag);
        b[20..28].copy_from_slice(&self.lun);
        put32(b, 28, self.sense.len() as u32);
        out.extend_from_slice(self.sense);
    }
}

/// A view of SRP_AER_REQ (for initiators and tests).
#[derive(Clone, Copy, Debug)]
pub struct AerReqView<'a>(&'a [u8]);

impl<'a> AerReqView<'a> {
    /// Checks opcode and lengths, including the sense data length.
    ///
    /// # Errors
    /// Too short or not opcode 82h.
    pub fn parse(b: &'a [u8]) -> Result<Self, IuError> {
        op(b, opcode::AER_REQ)?;
        need(b, AER_REQ_LEN)?;
        need(b, AER_REQ_LEN.saturating_add(be32(b, 28) as usize))?;
        Ok(Self(b))
    }

    /// Credits granted.
    pub fn req_lim_delta(&self) -> u32 {
        be32(self.0, 4)
    }

    /// Tag.
    pub fn tag(&self) -> u64 {
        be64(self.0, 8)
    }

    /// LUN.
    pub fn lun(&self) -> [u8; 8] {
        let mut l = [0u8; 8];
        l.copy_from_slice(&self.0[20..28]);
        l
    }

    /// Sense data.
    pub fn sense(&self) -> &'a [u8] {
        &self.0[AER_REQ_LEN..AER_REQ_LEN + be32(self.0, 28) as usize]
    }
}

/// A view of SRP_TSK_MGMT.
#[derive(Clone, Copy, Debug)]
pub struct TskMgmt<'a>(&'a [u8]);

impl<'a> TskMgmt<'a> {
    /// Checks opcode and length.
    ///
    /// # Errors
    /// Too short or not opcode 01h.
    pub fn parse(b: &'a [u8]) -> Result<Self, IuError> {
        op(b, opcode::TSK_MGMT)?;
        need(b, TSK_MGMT_LEN)?;
        Ok(Self(b))
    }

    /// Solicited notification flags.
    pub fn sol_not(&self) -> u8 {
        self.0[1]
    }

    /// Tag of this request.
    pub fn tag(&self) -> u64 {
        be64(self.0, 8)
    }

    /// LUN.
    pub fn lun(&self) -> [u8; 8] {
        let mut l = [0u8; 8];
        l.copy_from_slice(&self.0[20..28]);
        l
    }

    /// Function code ([`tmf`]).
    pub fn function(&self) -> u8 {
        self.0[30]
    }

    /// Tag of the task to manage (ABORT TASK).
    pub fn task_tag(&self) -> u64 {
        be64(self.0, 32)
    }

    /// Builds SRP_TSK_MGMT (for initiators and tests).
    pub fn build(tag: u64, lun: [u8; 8], function: u8, task_tag: u64) -> [u8; TSK_MGMT_LEN] {
        let mut b = [0u8; TSK_MGMT_LEN];
        b[0] = opcode::TSK_MGMT;
        put64(&mut b, 8, tag);
        b[20..28].copy_from_slice(&lun);
        b[30] = function;
        put64(&mut b, 32, task_tag);
        b
    }
}

/// Data buffer descriptor formats of SRP_CMD (`buf_fmt` nibbles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescFormat {
    /// No data buffer.
    None,
    /// One direct descriptor.
    Direct,
    /// An indirect descriptor with a partial table.
    Indirect,
    /// SRP-2 immediate data: a 4-byte length where the descriptor would be, the data itself in
    /// the IU at the offset the login negotiated (data-out only).
    Immediate,
}

impl DescFormat {
    /// Code as SRP_CMD encodes it.
    pub fn code(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Direct => 1,
            Self::Indirect => 2,
            Self::Immediate => 3,
        }
    }
}

/// A direct data buffer descriptor: a memory region of the initiator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectDesc {
    /// Virtual address.
    pub va: u64,
    /// Remote key of the memory region.
    pub rkey: u32,
    /// Length in bytes.
    pub len: u32,
}

impl DirectDesc {
    fn read(b: &[u8]) -> Self {
        Self { va: be64(b, 0), rkey: be32(b, 8), len: be32(b, 12) }
    }

    /// Reads a descriptor from its 16-byte encoding (shorter input reads as zeros).
    pub fn from_bytes(b: &[u8]) -> Self {
        let mut a = [0u8; DIRECT_DESC_LEN];
        let n = b.len().min(DIRECT_DESC_LEN);
        a[..n].copy_from_slice(&b[..n]);
        Self::read(&a)
    }

    /// The 16-byte encoding.
    pub fn to_bytes(&self) -> [u8; DIRECT_DESC_LEN] {
        let mut b = [0u8; DIRECT_DESC_LEN];
        put64(&mut b, 0, self.va);
        put32(&mut b, 8, self.rkey);
        put32(&mut b, 12, self.len);
        b
    }
}

/// The data buffer of one direction of SRP_CMD.
#[derive(Clone, Copy, Debug)]
pub enum DataBuf<'a> {
    /// No data in this direction.
    None,
    /// One direct descriptor.
    Direct(DirectDesc),
    /// An indirect descriptor.
    Indirect {
        /// Where the whole descriptor table lies in the initiator's memory.
        table: DirectDesc,
        /// Total length of the data buffer.
        total_len: u32,
        /// The partial table carried in the IU (16 bytes per descriptor).
        partial: &'a [u8],
    },
    /// SRP-2 immediate data of this length in the IU ([`Cmd::immediate_data`]).
    Immediate(u32),
}

impl<'a> DataBuf<'a> {
    /// The data length this buffer describes (the transport's expected length).
    pub fn len(&self) -> u32 {
        match self {
            Self::None => 0,
            Self::Direct(d) => d.len,
            Self::Indirect { total_len, .. } => *total_len,
            Self::Immediate(n) => *n,
        }
    }

    /// Whether there is no data buffer.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::None)
    }

    /// Descriptors in the IU.
    pub fn descriptors(&self) -> impl Iterator<Item = DirectDesc> + 'a {
        let (one, partial): (Option<DirectDesc>, &'a [u8]) = match *self {
            Self::None | Self::Immediate(_) => (None, &[]),
            Self::Direct(d) => (Some(d), &[]),
            Self::Indirect { partial, .. } => (None, partial),
        };
        one.into_iter().chain(partial.chunks_exact(DIRECT_DESC_LEN).map(DirectDesc::read))
    }

    /// Whether the IU carries only part of the descriptor table (the rest must be fetched from
    /// the initiator's memory: an "external" table).
    pub fn table_is_external(&self) -> bool {
        match self {
            Self::Indirect { table, partial, .. } => table.len as usize > partial.len(),
            _ => false,
        }
    }
}

/// A view of SRP_CMD.
#[derive(Clone, Copy, Debug)]
pub struct Cmd<'a> {
    b: &'a [u8],
    out: DataBuf<'a>,
    inn: DataBuf<'a>,
}

fn format(code: u8) -> Result<DescFormat, IuError> {
    match code {
        0 => Ok(DescFormat::None),
        1 => Ok(DescFormat::Direct),
        2 => Ok(DescFormat::Indirect),
        3 => Ok(DescFormat::Immediate),
        c => Err(IuError::DescriptorFormat(c)),
    }
}

/// Reads one direction's buffer at `at`; returns it and the offset after it.
fn read_buf(b: &[u8], at: usize, fmt: DescFormat, count: u8) -> Result<(DataBuf<'_>, usize), IuError> {
    match fmt {
        DescFormat::None => {
            if count != 0 {
                return Err(IuError::DescriptorCount { format: 0, count });
            }
            Ok((DataBuf::None, at))
        }
        DescFormat::Direct => {
            // Linux's ib_srp leaves the count 0 for a direct descriptor; the standard says 1.
            if count > 1 {
                return Err(IuError::DescriptorCount { format: 1, count });
            }
            need(b, at + DIRECT_DESC_LEN)?;
            Ok((DataBuf::Direct(DirectDesc::read(&b[at..])), at + DIRECT_DESC_LEN))
        }
        DescFormat::Indirect => {
            let end = at + INDIRECT_HDR_LEN + usize::from(count) * DIRECT_DESC_LEN;
            need(b, end)?;
            let table = DirectDesc::read(&b[at..]);
            let total_len = be32(b, at + 16);
            Ok((DataBuf::Indirect { table, total_len, partial: &b[at + INDIRECT_HDR_LEN..end] }, end))
        }
        DescFormat::Immediate => {
            if count > 1 {
                return Err(IuError::DescriptorCount { format: 3, count });
            }
            need(b, at + IMM_DESC_LEN)?;
            Ok((DataBuf::Immediate(be32(b, at)), at + IMM_DESC_LEN))
        }
    }
}

impl<'a> Cmd<'a> {
    /// Checks opcode, lengths and descriptor formats; the descriptors must lie within `b`.
    ///
    /// # Errors
    /// Too short, wrong opcode, unknown descriptor format or inconsistent count.
    pub fn parse(b: &'a [u8]) -> Result<Self, IuError> {
        op(b, opcode::CMD)?;
        need(b, CMD_LEN)?;
        let add = usize::from(b[31] >> 2) * 4;
        need(b, CMD_LEN + add)?;
        let fmt_out = format(b[5] >> 4)?;
        let fmt_in = format(b[5] & 0x0f)?;
        if fmt_in == DescFormat::Immediate {
            // Immediate data flows initiator to target only.
            return Err(IuError::DescriptorFormat(3));
        }
        let (out, at) = read_buf(b, CMD_LEN + add, fmt_out, b[6])?;
        let (inn, _) = read_buf(b, at, fmt_in, b[7])?;
        Ok(Self { b, out, inn })
    }

    /// Solicited notification flags.
    pub fn sol_not(&self) -> u8 {
        self.b[1]
    }

    /// Tag.
    pub fn tag(&self) -> u64 {
        be64(self.b, 8)
    }

    /// LUN.
    pub fn lun(&self) -> [u8; 8] {
        let mut l = [0u8; 8];
        l.copy_from_slice(&self.b[20..28]);
        l
    }

    /// Task attribute code (0 simple, 1 head of queue, 2 ordered, 4 ACA).
    pub fn task_attr(&self) -> u8 {
        self.b[29] & 0x07
    }

    /// The CDB: 16 bytes plus the additional CDB bytes.
    pub fn cdb(&self) -> &'a [u8] {
        &self.b[32..CMD_LEN + usize::from(self.b[31] >> 2) * 4]
    }

    /// The data-out buffer.
    pub fn data_out(&self) -> DataBuf<'a> {
        self.out
    }

    /// The data-in buffer.
    pub fn data_in(&self) -> DataBuf<'a> {
        self.inn
    }

    /// The immediate data, when the data-out buffer is [`DataBuf::Immediate`] and its bytes lie
    /// within the IU from `offset` (the login's immediate data offset).
    pub fn immediate_data(&self, offset: usize) -> Option<&'a [u8]> {
        let DataBuf::Immediate(n) = self.out else { return None };
        self.b.get(offset..offset.checked_add(n as usize)?)
    }
}

/// Builds SRP_CMD (for initiators and tests). Each direction is `(format, descriptors, total)`:
/// a direct format uses the first descriptor; an indirect one puts all of them in the partial
/// table, with a table descriptor of `table` (or one describing exactly the partial table when
/// `None`) and `total` as the total length.
#[derive(Clone, Debug, Default)]
pub struct CmdBuilder {
    /// Tag.
    pub tag: u64,
    /// LUN.
    pub lun: [u8; 8],
    /// Task attribute code.
    pub task_attr: u8,
    /// CDB (padded to 16 bytes; bytes beyond 16 go to the additional CDB, rounded to 4).
    pub cdb: Vec<u8>,
    /// Data-out format and descriptors.
    pub data_out: Option<(DescFormat, Vec<DirectDesc>)>,
    /// Data-in format and descriptors.
    pub data_in: Option<(DescFormat, Vec<DirectDesc>)>,
    /// Overrides of the indirect total length (to build inconsistent IUs).
    pub total_override: Option<u32>,
    /// Immediate data (with `data_out` of [`DescFormat::Immediate`]) and its offset in the IU.
    pub immediate: Option<(usize, Vec<u8>)>,
}

impl CmdBuilder {
    fn put_buf(&self, out: &mut Vec<u8>, buf: &Option<(DescFormat, Vec<DirectDesc>)>) -> (u8, u8) {
        match buf {
            None | Some((DescFormat::None, _)) => (0, 0),
            Some((DescFormat::Direct, d)) => {
                out.extend_from_slice(&d.first().copied().unwrap_or(DirectDesc { va: 0, rkey: 0, len: 0 }).to_bytes());
                (1, 1)
            }
            Some((DescFormat::Immediate, _)) => {
                let n = self.immediate.as_ref().map_or(0, |(_, d)| d.len());
                out.extend_from_slice(&(n as u32).to_be_bytes());
                (3, 0)
            }
            Some((DescFormat::Indirect, d)) => {
                let total: u32 = d.iter().map(|x| x.len).sum();
                let table = DirectDesc { va: 0x1000, rkey: 0x77, len: (d.len() * DIRECT_DESC_LEN) as u32 };
                out.extend_from_slice(&table.to_bytes());
                out.extend_from_slice(&self.total_override.unwrap_or(total).to_be_bytes());
                for x in d {
                    out.extend_from_slice(&x.to_bytes());
                }
                (2, d.len() as u8)
            }
        }
    }

    /// The encoding.
    pub fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; CMD_LEN];
        b[0] = opcode::CMD;
        put64(&mut b, 8, self.tag);
        b[20..28].copy_from_slice(&self.lun);
        b[29] = self.task_attr;
        let n = self.cdb.len().min(16);
        b[32..32 + n].copy_from_slice(&self.cdb[..n]);
        if self.cdb.len() > 16 {
            let extra = self.cdb.len() - 16;
            let words = extra.div_ceil(4).min(63);
            b[31] = (words as u8) << 2;
            let mut add = vec![0u8; words * 4];
            let k = extra.min(add.len());
            add[..k].copy_from_slice(&self.cdb[16..16 + k]);
            b.extend_from_slice(&add);
        }
        let (fo, co) = self.put_buf(&mut b, &self.data_out);
        let (fi, ci) = self.put_buf(&mut b, &self.data_in);
        b[5] = (fo << 4) | fi;
        b[6] = co;
        b[7] = ci;
        if let Some((off, data)) = &self.immediate {
            if b.len() < *off {
                b.resize(*off, 0);
            }
            b.extend_from_slice(data);
        }
        b
    }
}

/// SRP_RSP.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rsp<'a> {
    /// Solicited notification flags (SOLNT in bit 0).
    pub sol_not: u8,
    /// Credits returned.
    pub req_lim_delta: u32,
    /// The request's tag.
    pub tag: u64,
    /// SCSI status.
    pub status: u8,
    /// Flags besides RSPVALID and SNSVALID, which the builder sets from the data
    /// ([`rsp_flag`] DOOVER, DOUNDER, DIOVER, DIUNDER).
    pub residual_flags: u8,
    /// Data-out residual count.
    pub data_out_res: u32,
    /// Data-in residual count.
    pub data_in_res: u32,
    /// Response data (task management: four bytes, the code in the last).
    pub resp_data: &'a [u8],
    /// Sense data.
    pub sense: &'a [u8],
}

impl Rsp<'_> {
    /// Length of the encoding.
    pub fn len(&self) -> usize {
        RSP_LEN + self.resp_data.len() + self.sense.len()
    }

    /// Never empty (the fixed part is 36 bytes).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the encoding to `out`.
    pub fn build_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + RSP_LEN, 0);
        let b = &mut out[start..];
        b[0] = opcode::RSP;
        b[1] = self.sol_not;
        put32(b, 4, self.req_lim_delta);
        put64(b, 8, self.tag);
        let mut flags = self.residual_flags & 0x3c;
        if !self.resp_data.is_empty() {
            flags |= rsp_flag::RSPVALID;
        }
        if !self.sense.is_empty() {
            flags |= rsp_flag::SNSVALID;
        }
        b[18] = flags;
        b[19] = self.status;
        put32(b, 20, self.data_out_res);
        put32(b, 24, self.data_in_res);
        put32(b, 28, self.sense.len() as u32);
        put32(b, 32, self.resp_data.len() as u32);
        out.extend_from_slice(self.resp_data);
        out.extend_from_slice(self.sense);
    }
}

/// A view of SRP_RSP (for initiators and tests).
#[derive(Clone, Copy, Debug)]
pub struct RspView<'a>(&'a [u8]);

impl<'a> RspView<'a> {
    /// Checks opcode and that the response and sense data lie within `b`.
    ///
    /// # Errors
    /// Too short or not opcode C1h.
    pub fn parse(b: &'a [u8]) -> Result<Self, IuError> {
        op(b, opcode::RSP)?;
        need(b, RSP_LEN)?;
        let total = RSP_LEN as u64 + u64::from(be32(b, 28)) + u64::from(be32(b, 32));
        need(b, usize::try_from(total).unwrap_or(usize::MAX))?;
        Ok(Self(b))
    }

    /// Solicited notification flags.
    pub fn sol_not(&self) -> u8 {
        self.0[1]
    }

    /// Credits returned.
    pub fn req_lim_delta(&self) -> u32 {
        be32(self.0, 4)
    }

    /// Tag.
    pub fn tag(&self) -> u64 {
        be64(self.0, 8)
    }

    /// Flags ([`rsp_flag`]).
    pub fn flags(&self) -> u8 {
        self.0[18]
    }

    /// SCSI status.
    pub fn status(&self) -> u8 {
        self.0[19]
    }

    /// Data-out residual count.
    pub fn data_out_res(&self) -> u32 {
        be32(self.0, 20)
    }

    /// Data-in residual count.
    pub fn data_in_res(&self) -> u32 {
        be32(self.0, 24)
    }

    /// Response data.
    pub fn resp_data(&self) -> &'a [u8] {
        &self.0[RSP_LEN..RSP_LEN + be32(self.0, 32) as usize]
    }

    /// Sense data.
    pub fn sense(&self) -> &'a [u8] {
        let at = RSP_LEN + be32(self.0, 32) as usize;
        &self.0[at..at + be32(self.0, 28) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_req_layouts_agree() {
        let r = LoginReq {
            tag: 0x0102_0304_0506_0708,
            req_it_iu_len: 8276,
            req_buf_fmt: buf_fmt::DIRECT | buf_fmt::INDIRECT,
            req_flags: req_flags::MULTI | req_flags::IMMED_REQUESTED,
            imm_data_offset: 80,
            initiator_port_id: [0xaa; 16],
            target_port_id: [0xbb; 16],
        };
        let std = r.build();
        assert_eq!(std[0], 0);
        assert_eq!(&std[16..20], &8276u32.to_be_bytes());
        assert_eq!(&std[24..26], &[0, 6]);
        assert_eq!(std[26], 0x81);
        assert_eq!(LoginReq::parse(&std), Ok(r));
        let cm = r.build_rdma_cm();
        assert_eq!(&cm[0..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(cm[11], 0);
        assert_eq!(&cm[12..16], &8276u32.to_be_bytes());
        assert_eq!(LoginReq::parse_rdma_cm(&cm), Ok(r));
        assert_eq!(LoginReq::parse_any(&cm), Ok(r));
        assert_eq!(LoginReq::parse_any(&std), Ok(r));
        assert_eq!(LoginReq::parse(&std[..63]), Err(IuError::TooShort { need: 64, got: 63 }));
        let mut bad = cm;
        bad[11] = 2;
        assert_eq!(LoginReq::parse_any(&bad), Err(IuError::Opcode { want: 0, got: 2 }));
    }

    #[test]
    fn login_rsp_and_rej_bytes() {
        let rsp = LoginRsp {
            req_lim_delta: 64,
            tag: 7,
            max_it_iu_len: 4164,
            max_ti_iu_len: 4164,
            sup_buf_fmt: 6,
            rsp_flags: rsp_flags::MAINTAINED,
        };
        let b = rsp.build();
        assert_eq!(b.len(), 52);
        assert_eq!(b[0], 0xc0);
        assert_eq!(&b[4..8], &[0, 0, 0, 64]);
        assert_eq!(&b[8..16], &[0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(&b[16..20], &4164u32.to_be_bytes());
        assert_eq!(&b[24..27], &[0, 6, 2]);
        assert_eq!(LoginRsp::parse(&b), Ok(rsp));
        let rej = LoginRej { reason: RejectReason::UNABLE_TO_ASSOCIATE, tag: 9, sup_buf_fmt: 6 };
        let b = rej.build();
        assert_eq!(b.len(), 32);
        assert_eq!(&b[..8], &[0xc2, 0, 0, 0, 0, 1, 0, 3]);
        assert_eq!(LoginRej::parse(&b), Ok(rej));
    }

    #[test]
    fn cmd_direct_and_indirect() {
        let d = DirectDesc { va: 0x1122_3344_5566_7788, rkey: 0xdead_beef, len: 4096 };
        let b = CmdBuilder {
            tag: 5,
            lun: [0, 1, 0, 0, 0, 0, 0, 0],
            task_attr: 2,
            cdb: vec![0x2a, 0, 0, 0, 0, 8, 0, 0, 8, 0],
            data_out: Some((DescFormat::Direct, vec![d])),
            ..CmdBuilder::default()
        }
        .build();
        assert_eq!(b.len(), 64);
        assert_eq!(b[5], 0x10);
        assert_eq!(b[21], 1);
        assert_eq!(b[29], 2);
        assert_eq!(&b[48..56], &0x1122_3344_5566_7788u64.to_be_bytes());
        let c = Cmd::parse(&b).unwrap();
        assert_eq!(c.tag(), 5);
        assert_eq!(c.task_attr(), 2);
        assert_eq!(c.cdb()[0], 0x2a);
        assert_eq!(c.cdb().len(), 16);
        assert_eq!(c.data_out().len(), 4096);
        assert_eq!(c.data_out().descriptors().collect::<Vec<_>>(), vec![d]);
        assert!(c.data_in().is_empty());
        assert!(Cmd::parse(&b[..63]).is_err());

        let ds: Vec<DirectDesc> = (0..3).map(|i| DirectDesc { va: i * 0x1000, rkey: 1, len: 512 }).collect();
        let mut cdb = vec![0u8; 20];
        cdb[0] = 0x88;
        cdb[19] = 0x5a;
        let b = CmdBuilder { cdb, data_in: Some((DescFormat::Indirect, ds.clone())), ..CmdBuilder::default() }.build();
        assert_eq!(b[31], 1 << 2);
        assert_eq!(b[5], 0x02);
        assert_eq!(b[7], 3);
        assert_eq!(b.len(), 48 + 4 + 20 + 48);
        let c = Cmd::parse(&b).unwrap();
        assert_eq!(c.cdb().len(), 20);
        assert_eq!(c.cdb()[19], 0x5a);
        assert_eq!(c.data_in().len(), 1536);
        assert!(!c.data_in().table_is_external());
        assert_eq!(c.data_in().descriptors().collect::<Vec<_>>(), ds);
        // A count promising more descriptors than the IU holds.
        let mut bad = b.clone();
        bad[7] = 4;
        assert_eq!(Cmd::parse(&bad).unwrap_err(), IuError::TooShort { need: 136, got: 120 });
        let mut bad = b.clone();
        bad[5] = 0x03;
        assert_eq!(Cmd::parse(&bad).unwrap_err(), IuError::DescriptorFormat(3));
        let mut bad = b;
        bad[5] = 0x00;
        assert_eq!(Cmd::parse(&bad).unwrap_err(), IuError::DescriptorCount { format: 0, count: 3 });
    }

    #[test]
    fn cmd_immediate_data() {
        let data = vec![0xa5u8; 600];
        let b = CmdBuilder {
            tag: 1,
            cdb: vec![0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            data_out: Some((DescFormat::Immediate, vec![])),
            immediate: Some((80, data.clone())),
            ..CmdBuilder::default()
        }
        .build();
        assert_eq!(&b[48..52], &600u32.to_be_bytes(), "the length where the descriptor would be");
        let c = Cmd::parse(&b).unwrap();
        assert_eq!(c.data_out().len(), 600);
        assert_eq!(c.data_out().descriptors().count(), 0);
        assert_eq!(c.immediate_data(80), Some(&data[..]));
        assert_eq!(c.immediate_data(81), None, "past the end of the IU");
        assert_eq!(c.immediate_data(usize::MAX), None);
        let mut bad = b.clone();
        bad[5] = 0x03;
        assert_eq!(Cmd::parse(&bad).unwrap_err(), IuError::DescriptorFormat(3), "no data-in immediate data");
        assert!(Cmd::parse(&b[..51]).is_err());
    }

    #[test]
    fn rsp_layout() {
        let sense = [0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0];
        let mut out = Vec::new();
        Rsp {
            sol_not: 1,
            req_lim_delta: 3,
            tag: 0xabc,
            status: 2,
            residual_flags: rsp_flag::DIUNDER,
            data_in_res: 100,
            sense: &sense,
            ..Rsp::default()
        }
        .build_into(&mut out);
        assert_eq!(out.len(), 36 + 14);
        assert_eq!(out[0], 0xc1);
        assert_eq!(out[1], 1);
        assert_eq!(&out[4..8], &[0, 0, 0, 3]);
        assert_eq!(out[18], rsp_flag::DIUNDER | rsp_flag::SNSVALID);
        assert_eq!(out[19], 2);
        assert_eq!(&out[24..28], &100u32.to_be_bytes());
        assert_eq!(&out[28..32], &14u32.to_be_bytes());
        assert_eq!(&out[32..36], &[0, 0, 0, 0]);
        let v = RspView::parse(&out).unwrap();
        assert_eq!(v.sense(), &sense);
        assert!(v.resp_data().is_empty());
        assert!(RspView::parse(&out[..49]).is_err());
    }

    #[test]
    fn short_ius() {
        let t = TLogout { sol_not: 0, reason: logout_reason::MULTICHANNEL_ACTION, tag: 1 };
        assert_eq!(&t.build()[..8], &[0x80, 0, 0, 0, 0, 0, 0, 4]);
        assert_eq!(TLogout::parse(&t.build()), Ok(t));
        let c = CredReq { sol_not: 0, req_lim_delta: 9, tag: 2 };
        assert_eq!(&c.build()[..8], &[0x81, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(CredReq::parse(&c.build()), Ok(c));
        assert_eq!(parse_cred_rsp(&build_short_rsp(opcode::CRED_RSP, 2)), Ok(2));
        assert_eq!(parse_aer_rsp(&build_short_rsp(opcode::AER_RSP, 3)), Ok(3));
        assert_eq!(parse_i_logout(&build_i_logout(4)), Ok(4));
        assert!(parse_i_logout(&build_i_logout(4)[..15]).is_err());
        let mut v = Vec::new();
        AerReq { sol_not: 0, req_lim_delta: 1, tag: 5, lun: [0, 2, 0, 0, 0, 0, 0, 0], sense: &[0x70, 0, 6] }
            .build_into(&mut v);
        assert_eq!(v.len(), 39);
        let a = AerReqView::parse(&v).unwrap();
        assert_eq!((a.tag(), a.req_lim_delta(), a.lun()[1], a.sense()), (5, 1, 2, &[0x70, 0, 6][..]));
        let tm = TskMgmt::build(6, [0; 8], tmf::ABORT_TASK, 77);
        let t = TskMgmt::parse(&tm).unwrap();
        assert_eq!((t.tag(), t.function(), t.task_tag()), (6, 1, 77));
        assert_eq!(tm[30], 1);
        assert_eq!(&tm[32..40], &77u64.to_be_bytes());
    }
}
