//! Zero-copy view of the 48-byte Basic Header Segment (RFC 7143 §11.2) and
//! of the Additional Header Segments that may follow it.
//!
//! [`Bhs`] wraps any `AsRef<[u8]>`. [`Bhs::new_checked`] validates that at least
//! [`BHS_LEN`] bytes are present; after that no accessor can panic, whatever the
//! bytes are. Accessors are named after the RFC 7143 fields; the view does not
//! check that a field exists for the PDU's opcode (reading `cmd_sn` of a Data-In
//! PDU returns whatever is at that offset). Check [`Bhs::opcode`] first.

use core::fmt;

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;

/// Length of a header or data digest on the wire.
pub const DIGEST_LEN: usize = 4;

/// Largest value of the 24-bit DataSegmentLength field.
pub const MAX_DATA_SEGMENT_LEN: u32 = 0x00ff_ffff;

/// The reserved tag value 0xffffffff (an ITT or TTT that means "none").
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Errors found while validating PDU bytes received from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    /// Fewer bytes than the structure needs.
    #[error("PDU truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// An AHS header claims more bytes than TotalAHSLength holds.
    #[error("AHS at offset {offset} overruns TotalAHSLength")]
    AhsOverrun {
        /// Offset of the AHS inside the AHS area.
        offset: usize,
    },
    /// AHSLength is invalid for the AHS type (e.g. a Bidirectional Read AHS whose
    /// AHSLength is not 5, or an Extended CDB AHS with no CDB bytes).
    #[error("AHS type {ty:?} has invalid AHSLength {len}")]
    AhsLength {
        /// The AHS type.
        ty: AhsType,
        /// The AHSLength field.
        len: u16,
    },
    /// The same AHS type appears twice.
    #[error("duplicate AHS type {0:?}")]
    AhsDuplicate(AhsType),
}

macro_rules! newtype_consts {
    ($(#[$m:meta])* $name:ident($ty:ty) { $($(#[$cm:meta])* $c:ident = $v:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub $ty);
        impl $name {
            $($(#[$cm])* pub const $c: Self = Self($v);)*
            /// The name of a known value, `None` for an unknown one.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(v if v == $v => Some(stringify!($c)),)*
                    _ => None,
                }
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}({:#04x} {})", stringify!($name), self.0, n),
                    None => write!(f, "{}({:#04x})", stringify!($name), self.0),
                }
            }
        }
    };
}

newtype_consts! {
    /// PDU opcode (the low 6 bits of byte 0).
    Opcode(u8) {
        /// NOP-Out (initiator).
        NOP_OUT = 0x00,
        /// SCSI Command (initiator).
        SCSI_COMMAND = 0x01,
        /// SCSI Task Management Function Request (initiator).
        TASK_MGMT_REQUEST = 0x02,
        /// Login Request (initiator).
        LOGIN_REQUEST = 0x03,
        /// Text Request (initiator).
        TEXT_REQUEST = 0x04,
        /// SCSI Data-Out (initiator).
        DATA_OUT = 0x05,
        /// Logout Request (initiator).
        LOGOUT_REQUEST = 0x06,
        /// SNACK Request (initiator).
        SNACK_REQUEST = 0x10,
        /// NOP-In (target).
        NOP_IN = 0x20,
        /// SCSI Response (target).
        SCSI_RESPONSE = 0x21,
        /// SCSI Task Management Function Response (target).
        TASK_MGMT_RESPONSE = 0x22,
        /// Login Response (target).
        LOGIN_RESPONSE = 0x23,
        /// Text Response (target).
        TEXT_RESPONSE = 0x24,
        /// SCSI Data-In (target).
        DATA_IN = 0x25,
        /// Logout Response (target).
        LOGOUT_RESPONSE = 0x26,
        /// Ready To Transfer (target).
        R2T = 0x31,
        /// Asynchronous Message (target).
        ASYNC_MESSAGE = 0x32,
        /// Reject (target).
        REJECT = 0x3f,
    }
}

impl Opcode {
    /// True for opcodes an initiator sends (0x00..=0x1f).
    pub const fn is_initiator(self) -> bool {
        self.0 < 0x20
    }
}

newtype_consts! {
    /// Additional Header Segment type (RFC 7143 §11.2.2.1).
    AhsType(u8) {
        /// Extended CDB AHS.
        EXTENDED_CDB = 1,
        /// Bidirectional Read Expected Data Transfer Length AHS.
        BIDI_READ_LENGTH = 2,
    }
}

newtype_consts! {
    /// SCSI Command task attribute (ATTR field, 3 bits).
    TaskAttr(u8) {
        /// Untagged.
        UNTAGGED = 0,
        /// Simple.
        SIMPLE = 1,
        /// Ordered.
        ORDERED = 2,
        /// Head of queue.
        HEAD_OF_QUEUE = 3,
        /// ACA.
        ACA = 4,
    }
}

newtype_consts! {
    /// Task Management Function code (RFC 7143 §11.5.1).
    TmfFunction(u8) {
        /// ABORT TASK.
        ABORT_TASK = 1,
        /// ABORT TASK SET.
        ABORT_TASK_SET = 2,
        /// CLEAR ACA.
        CLEAR_ACA = 3,
        /// CLEAR TASK SET.
        CLEAR_TASK_SET = 4,
        /// LOGICAL UNIT RESET.
        LOGICAL_UNIT_RESET = 5,
        /// TARGET WARM RESET.
        TARGET_WARM_RESET = 6,
        /// TARGET COLD RESET.
        TARGET_COLD_RESET = 7,
        /// TASK REASSIGN.
        TASK_REASSIGN = 8,
    }
}

newtype_consts! {
    /// Task Management Function response code (RFC 7143 §11.6.1).
    TmfResponse(u8) {
        /// Function complete.
        COMPLETE = 0,
        /// Task does not exist.
        TASK_DOES_NOT_EXIST = 1,
        /// LUN does not exist.
        LUN_DOES_NOT_EXIST = 2,
        /// Task still allegiant.
        TASK_STILL_ALLEGIANT = 3,
        /// Task allegiance reassignment not supported.
        REASSIGNMENT_NOT_SUPPORTED = 4,
        /// Task management function not supported.
        NOT_SUPPORTED = 5,
        /// Function authorization failed.
        AUTHORIZATION_FAILED = 6,
        /// Function rejected.
        REJECTED = 255,
    }
}

newtype_consts! {
    /// Logout Request reason code (RFC 7143 §11.14.1).
    LogoutReason(u8) {
        /// Close the session.
        CLOSE_SESSION = 0,
        /// Close the connection.
        CLOSE_CONNECTION = 1,
        /// Remove the connection for recovery.
        REMOVE_FOR_RECOVERY = 2,
    }
}

newtype_consts! {
    /// Logout Response code (RFC 7143 §11.15.1).
    LogoutResponseCode(u8) {
        /// Connection or session closed successfully.
        SUCCESS = 0,
        /// CID not found.
        CID_NOT_FOUND = 1,
        /// Connection recovery is not supported.
        RECOVERY_NOT_SUPPORTED = 2,
        /// Cleanup failed for various reasons.
        CLEANUP_FAILED = 3,
    }
}

newtype_consts! {
    /// Reject reason code (RFC 7143 §11.17.1).
    RejectReason(u8) {
        /// Data (payload) digest error.
        DATA_DIGEST_ERROR = 0x02,
        /// SNACK Reject.
        SNACK_REJECT = 0x03,
        /// Protocol error (e.g. SNACK Request for a status that was already acknowledged).
        PROTOCOL_ERROR = 0x04,
        /// Command not supported.
        COMMAND_NOT_SUPPORTED = 0x05,
        /// Immediate command reject: too many immediate commands.
        IMMEDIATE_COMMAND_REJECT = 0x06,
        /// Task in progress.
        TASK_IN_PROGRESS = 0x07,
        /// Invalid data ack.
        INVALID_DATA_ACK = 0x08,
        /// Invalid PDU field.
        INVALID_PDU_FIELD = 0x09,
        /// Long op reject: cannot generate a Target Transfer Tag, out of resources.
        LONG_OP_REJECT = 0x0a,
        /// Deprecated (was "Negotiation Reset").
        DEPRECATED_NEGOTIATION_RESET = 0x0b,
        /// Waiting for Logout.
        WAITING_FOR_LOGOUT = 0x0c,
    }
}

newtype_consts! {
    /// Asynchronous Message event code (RFC 7143 §11.9.1).
    AsyncEvent(u8) {
        /// A SCSI asynchronous event is reported in the sense data.
        SCSI_EVENT = 0,
        /// The target requests a logout.
        REQUEST_LOGOUT = 1,
        /// The target will drop the connection (CID in Parameter1).
        DROP_CONNECTION = 2,
        /// The target will drop all connections of the session.
        DROP_ALL_CONNECTIONS = 3,
        /// The target requests parameter negotiation.
        REQUEST_NEGOTIATION = 4,
        /// Vendor specific (code in AsyncVCode).
        VENDOR_SPECIFIC = 255,
    }
}

newtype_consts! {
    /// SNACK type (RFC 7143 §11.16.1).
    SnackType(u8) {
        /// Data/R2T SNACK.
        DATA_R2T = 0,
        /// Status SNACK.
        STATUS = 1,
        /// DataACK.
        DATA_ACK = 2,
        /// R-Data SNACK.
        R_DATA = 3,
    }
}

newtype_consts! {
    /// SCSI Response "Response" field (RFC 7143 §11.4.3).
    ScsiResponseCode(u8) {
        /// Command completed at target.
        COMPLETED = 0x00,
        /// Target failure.
        TARGET_FAILURE = 0x01,
    }
}

newtype_consts! {
    /// Login stage (CSG/NSG field, RFC 7143 §11.12.3).
    Stage(u8) {
        /// SecurityNegotiation.
        SECURITY = 0,
        /// LoginOperationalNegotiation.
        OPERATIONAL = 1,
        /// FullFeaturePhase.
        FULL_FEATURE = 3,
    }
}

/// Which digests are in use on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digests {
    /// HeaderDigest=CRC32C.
    pub header: bool,
    /// DataDigest=CRC32C.
    pub data: bool,
}

/// Round a data segment length up to the next multiple of 4.
pub const fn padded_len(len: usize) -> usize {
    (len + 3) & !3
}

/// Number of pad bytes after a data segment of `len` bytes.
pub const fn pad_len(len: usize) -> usize {
    padded_len(len) - len
}

/// Zero-copy view of a Basic Header Segment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bhs<T: AsRef<[u8]>> {
    buf: T,
}

/// Read a big-endian u32 at a fixed offset known to lie inside the 48-byte BHS.
macro_rules! be32 {
    ($self:ident, $off:expr) => {{
        let b = $self.bytes();
        u32::from_be_bytes([b[$off], b[$off + 1], b[$off + 2], b[$off + 3]])
    }};
}

impl<'a> Bhs<&'a [u8]> {
    /// View a 48-byte array (cannot fail).
    pub fn from_array(buf: &'a [u8; BHS_LEN]) -> Self {
        Self { buf: &buf[..] }
    }
}

impl<T: AsRef<[u8]>> Bhs<T> {
    /// Wrap a buffer that holds at least [`BHS_LEN`] bytes (extra bytes are ignored).
    pub fn new_checked(buf: T) -> Result<Self, PduError> {
        let have = buf.as_ref().len();
        if have < BHS_LEN {
            return Err(PduError::Truncated { need: BHS_LEN, have });
        }
        Ok(Self { buf })
    }

    /// Return the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// The 48 header bytes.
    pub fn bytes(&self) -> &[u8; BHS_LEN] {
        // new_checked guarantees the length; this cannot fail.
        match self.buf.as_ref().first_chunk::<BHS_LEN>() {
            Some(b) => b,
            None => &[0; BHS_LEN],
        }
    }

    fn be16(&self, off: usize) -> u16 {
        let b = self.bytes();
        u16::from_be_bytes([b[off], b[off + 1]])
    }

    // ---- common fields -------------------------------------------------

    /// Opcode (low 6 bits of byte 0).
    pub fn opcode(&self) -> Opcode {
        Opcode(self.bytes()[0] & 0x3f)
    }
    /// I bit: immediate delivery (initiator PDUs).
    pub fn immediate(&self) -> bool {
        self.bytes()[0] & 0x40 != 0
    }
    /// F bit (bit 7 of byte 1). For Login PDUs this is the T (transit) bit.
    pub fn final_bit(&self) -> bool {
        self.bytes()[1] & 0x80 != 0
    }
    /// Byte 1 (opcode-specific flags).
    pub fn flags(&self) -> u8 {
        self.bytes()[1]
    }
    /// TotalAHSLength in bytes (the field counts 4-byte words).
    pub fn total_ahs_len(&self) -> usize {
        usize::from(self.bytes()[4]) * 4
    }
    /// DataSegmentLength (24 bits, without padding).
    pub fn data_segment_len(&self) -> u32 {
        let b = self.bytes();
        u32::from_be_bytes([0, b[5], b[6], b[7]])
    }
    /// The 8 raw LUN bytes (bytes 8..16).
    pub fn lun_bytes(&self) -> [u8; 8] {
        let b = self.bytes();
        [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]
    }
    /// LUN field as a big-endian u64 (SAM LUN structure, not decoded).
    pub fn lun(&self) -> u64 {
        u64::from_be_bytes(self.lun_bytes())
    }
    /// Initiator Task Tag.
    pub fn itt(&self) -> u32 {
        be32!(self, 16)
    }

    /// Total length of the whole PDU on the wire: BHS, AHS, header digest,
    /// padded data segment and data digest (present only when the data
    /// segment is not empty).
    pub fn pdu_len(&self, digests: Digests) -> usize {
        let dsl = self.data_segment_len() as usize;
        let mut n = BHS_LEN + self.total_ahs_len() + padded_len(dsl);
        if digests.header {
            n += DIGEST_LEN;
        }
        if digests.data && dsl > 0 {
            n += DIGEST_LEN;
        }
        n
    }

    // ---- sequence numbers and tags at shared offsets ---------------------

    /// Target Transfer Tag (bytes 20..24: NOP, Data-Out/In, R2T, Text, SNACK).
    pub fn ttt(&self) -> u32 {
        be32!(self, 20)
    }
    /// CmdSN (bytes 24..28 of initiator PDUs).
    pub fn cmd_sn(&self) -> u32 {
        be32!(self, 24)
    }
    /// ExpStatSN (bytes 28..32 of initiator PDUs).
    pub fn exp_stat_sn(&self) -> u32 {
        be32!(self, 28)
    }
    /// StatSN (bytes 24..28 of target PDUs).
    pub fn stat_sn(&self) -> u32 {
        be32!(self, 24)
    }
    /// ExpCmdSN (bytes 28..32 of target PDUs).
    pub fn exp_cmd_sn(&self) -> u32 {
        be32!(self, 28)
    }
    /// MaxCmdSN (bytes 32..36 of target PDUs).
    pub fn max_cmd_sn(&self) -> u32 {
        be32!(self, 32)
    }
    /// DataSN (bytes 36..40: Data-Out, Data-In) or ExpDataSN (SCSI Response,
    /// TMF Request) or R2TSN (R2T) — same offset.
    pub fn data_sn(&self) -> u32 {
        be32!(self, 36)
    }
    /// ExpDataSN (bytes 36..40 of SCSI Response and TMF Request).
    pub fn exp_data_sn(&self) -> u32 {
        be32!(self, 36)
    }
    /// R2TSN (bytes 36..40 of R2T).
    pub fn r2t_sn(&self) -> u32 {
        be32!(self, 36)
    }
    /// Buffer Offset (bytes 40..44: Data-Out, Data-In, R2T).
    pub fn buffer_offset(&self) -> u32 {
        be32!(self, 40)
    }
    /// Desired Data Transfer Length (bytes 44..48 of R2T).
    pub fn desired_data_transfer_length(&self) -> u32 {
        be32!(self, 44)
    }
    /// Residual Count (bytes 44..48 of SCSI Response and Data-In).
    pub fn residual_count(&self) -> u32 {
        be32!(self, 44)
    }
    /// Bidirectional Read Residual Count (bytes 40..44 of SCSI Response).
    pub fn bidi_read_residual_count(&self) -> u32 {
        be32!(self, 40)
    }

    // ---- SCSI Command (0x01) ----------------------------------------------

    /// SCSI Command R bit (read data expected).
    pub fn read_bit(&self) -> bool {
        self.bytes()[1] & 0x40 != 0
    }
    /// SCSI Command W bit (write data expected).
    pub fn write_bit(&self) -> bool {
        self.bytes()[1] & 0x20 != 0
    }
    /// SCSI Command task attribute.
    pub fn task_attr(&self) -> TaskAttr {
        TaskAttr(self.bytes()[1] & 0x07)
    }
    /// SCSI Command Expected Data Transfer Length (bytes 20..24).
    pub fn expected_data_transfer_length(&self) -> u32 {
        be32!(self, 20)
    }
    /// SCSI Command CDB (bytes 32..48).
    pub fn cdb(&self) -> &[u8; 16] {
        match self.bytes()[32..].first_chunk::<16>() {
            Some(c) => c,
            None => &[0; 16],
        }
    }

    // ---- responses --------------------------------------------------------

    /// Byte 2: Response (SCSI Response, TMF Response, Logout Response) or
    /// Reject reason, or Version-max of Login PDUs.
    pub fn response(&self) -> u8 {
        self.bytes()[2]
    }
    /// Byte 3: SCSI status (SCSI Response, Data-In with S bit).
    pub fn status(&self) -> u8 {
        self.bytes()[3]
    }
    /// Reject reason (byte 2 of a Reject PDU).
    pub fn reject_reason(&self) -> RejectReason {
        RejectReason(self.bytes()[2])
    }

    // ---- Task Management Function Request (0x02) ---------------------------

    /// TMF function code (low 7 bits of byte 1).
    pub fn tmf_function(&self) -> TmfFunction {
        TmfFunction(self.bytes()[1] & 0x7f)
    }
    /// Referenced Task Tag (bytes 20..24 of a TMF Request).
    pub fn referenced_task_tag(&self) -> u32 {
        be32!(self, 20)
    }
    /// RefCmdSN (bytes 32..36 of a TMF Request).
    pub fn ref_cmd_sn(&self) -> u32 {
        be32!(self, 32)
    }

    // ---- Logout (0x06 / 0x26) ---------------------------------------------

    /// Logout reason code (low 7 bits of byte 1).
    pub fn logout_reason(&self) -> LogoutReason {
        LogoutReason(self.bytes()[1] & 0x7f)
    }
    /// Connection ID (bytes 20..22 of Login and Logout Requests).
    pub fn cid(&self) -> u16 {
        self.be16(20)
    }
    /// Time2Wait (bytes 40..42 of a Logout Response).
    pub fn time2wait(&self) -> u16 {
        self.be16(40)
    }
    /// Time2Retain (bytes 42..44 of a Logout Response).
    pub fn time2retain(&self) -> u16 {
        self.be16(42)
    }

    // ---- Login (0x03 / 0x23) and Text (0x04 / 0x24) -----------------------

    /// Login T (transit) bit.
    pub fn transit(&self) -> bool {
        self.bytes()[1] & 0x80 != 0
    }
    /// C (continue) bit of Login and Text PDUs.
    pub fn continue_bit(&self) -> bool {
        self.bytes()[1] & 0x40 != 0
    }
    /// Login current stage (CSG).
    pub fn csg(&self) -> Stage {
        Stage((self.bytes()[1] >> 2) & 0x03)
    }
    /// Login next stage (NSG).
    pub fn nsg(&self) -> Stage {
        Stage(self.bytes()[1] & 0x03)
    }
    /// Login Version-max (byte 2).
    pub fn version_max(&self) -> u8 {
        self.bytes()[2]
    }
    /// Login Request Version-min / Login Response Version-active (byte 3).
    pub fn version_min(&self) -> u8 {
        self.bytes()[3]
    }
    /// Login ISID (bytes 8..14).
    pub fn isid(&self) -> [u8; 6] {
        let b = self.bytes();
        [b[8], b[9], b[10], b[11], b[12], b[13]]
    }
    /// Login TSIH (bytes 14..16).
    pub fn tsih(&self) -> u16 {
        self.be16(14)
    }
    /// Login Response Status-Class (byte 36).
    pub fn status_class(&self) -> u8 {
        self.bytes()[36]
    }
    /// Login Response Status-Detail (byte 37).
    pub fn status_detail(&self) -> u8 {
        self.bytes()[37]
    }

    // ---- SNACK (0x10) ------------------------------------------------------

    /// SNACK type (low 4 bits of byte 1).
    pub fn snack_type(&self) -> SnackType {
        SnackType(self.bytes()[1] & 0x0f)
    }
    /// SNACK Tag (bytes 20..24 of a SNACK Request, same offset as TTT).
    pub fn snack_tag(&self) -> u32 {
        be32!(self, 20)
    }
    /// SNACK BegRun (bytes 40..44).
    pub fn beg_run(&self) -> u32 {
        be32!(self, 40)
    }
    /// SNACK RunLength (bytes 44..48).
    pub fn run_length(&self) -> u32 {
        be32!(self, 44)
    }

    // ---- Data-In (0x25) / SCSI Response flags -----------------------------

    /// Data-In A (acknowledge) bit.
    pub fn ack_bit(&self) -> bool {
        self.bytes()[1] & 0x40 != 0
    }
    /// Data-In S bit / SCSI Response: status present.
    pub fn status_bit(&self) -> bool {
        self.bytes()[1] & 0x01 != 0
    }
    /// Whether this target PDU of the full feature phase takes a StatSN of its own (RFC 7143
    /// §4.2.2.2): every response, a Data-In with status, and a NOP-In answering a NOP-Out; not
    /// R2T, Data-In without status or a NOP-In ping.
    pub fn consumes_stat_sn(&self) -> bool {
        match self.opcode() {
            Opcode::SCSI_RESPONSE
            | Opcode::TASK_MGMT_RESPONSE
            | Opcode::TEXT_RESPONSE
            | Opcode::LOGOUT_RESPONSE
            | Opcode::REJECT
            | Opcode::ASYNC_MESSAGE => true,
            Opcode::DATA_IN => self.status_bit(),
            Opcode::NOP_IN => self.itt() != RESERVED_TAG,
            _ => false,
        }
    }
    /// O (residual overflow) bit of SCSI Response and Data-In.
    pub fn overflow_bit(&self) -> bool {
        self.bytes()[1] & 0x04 != 0
    }
    /// U (residual underflow) bit of SCSI Response and Data-In.
    pub fn underflow_bit(&self) -> bool {
        self.bytes()[1] & 0x02 != 0
    }
    /// o (bidirectional read residual overflow) bit of SCSI Response.
    pub fn bidi_overflow_bit(&self) -> bool {
        self.bytes()[1] & 0x10 != 0
    }
    /// u (bidirectional read residual underflow) bit of SCSI Response.
    pub fn bidi_underflow_bit(&self) -> bool {
        self.bytes()[1] & 0x08 != 0
    }

    // ---- Asynchronous Message (0x32) --------------------------------------

    /// AsyncEvent (byte 36).
    pub fn async_event(&self) -> AsyncEvent {
        AsyncEvent(self.bytes()[36])
    }
    /// AsyncVCode (byte 37).
    pub fn async_vcode(&self) -> u8 {
        self.bytes()[37]
    }
    /// Parameter1..3 (bytes 38..44).
    pub fn async_parameters(&self) -> [u16; 3] {
        [self.be16(38), self.be16(40), self.be16(42)]
    }
}

impl<T: AsRef<[u8]>> fmt::Debug for Bhs<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bhs")
            .field("opcode", &self.opcode())
            .field("immediate", &self.immediate())
            .field("flags", &format_args!("{:#04x}", self.flags()))
            .field("total_ahs_len", &self.total_ahs_len())
            .field("data_segment_len", &self.data_segment_len())
            .field("itt", &format_args!("{:#010x}", self.itt()))
            .finish_non_exhaustive()
    }
}

/// One Additional Header Segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ahs<'a> {
    /// AHSType.
    pub ty: AhsType,
    /// The AHS-specific byte (the first byte counted by AHSLength).
    pub specific: u8,
    /// The bytes after the AHS-specific byte (AHSLength - 1 bytes, no padding).
    pub data: &'a [u8],
}

/// Iterator over the AHS area (the `TotalAHSLength` bytes after the BHS).
///
/// Each AHS is `AHSLength (2) | AHSType (1) | AHS-specific (1) | data`, where
/// AHSLength counts the AHS-specific byte and the data, and the whole AHS is
/// padded to a multiple of 4 bytes. Yields an error (and then stops) when an
/// AHS does not fit.
#[derive(Debug, Clone)]
pub struct AhsIter<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> AhsIter<'a> {
    /// Iterate over `ahs`, the `total_ahs_len()` bytes following the BHS.
    pub fn new(ahs: &'a [u8]) -> Self {
        Self { rest: ahs, offset: 0 }
    }
}

impl<'a> Iterator for AhsIter<'a> {
    type Item = Result<Ahs<'a>, PduError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let offset = self.offset;
        let Some(&[l0, l1, ty, specific]) = self.rest.first_chunk::<4>() else {
            self.rest = &[];
            return Some(Err(PduError::AhsOverrun { offset }));
        };
        let len = u16::from_be_bytes([l0, l1]);
        let ty = AhsType(ty);
        if len == 0 {
            self.rest = &[];
            return Some(Err(PduError::AhsLength { ty, len }));
        }
        // 3 header bytes (length + type) + AHSLength bytes, padded to 4.
        let total = padded_len(3 + usize::from(len));
        let (Some(data), Some(rest)) = (self.rest.get(4..3 + usize::from(len)), self.rest.get(total..)) else {
            self.rest = &[];
            return Some(Err(PduError::AhsOverrun { offset }));
        };
        self.rest = rest;
        self.offset += total;
        Some(Ok(Ahs { ty, specific, data }))
    }
}

/// The AHSs of a SCSI Command that this crate understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommandAhs<'a> {
    /// Extended CDB AHS: CDB bytes 16 and up (the BHS holds bytes 0..16).
    pub extended_cdb: Option<&'a [u8]>,
    /// Bidirectional Read Expected Data Transfer Length.
    pub bidi_read_length: Option<u32>,
}

impl<'a> CommandAhs<'a> {
    /// Parse and validate the AHS area of a SCSI Command PDU. Unknown AHS
    /// types are skipped; duplicate known types and bad lengths are errors.
    pub fn parse(ahs: &'a [u8]) -> Result<Self, PduError> {
        let mut out = Self::default();
        for a in AhsIter::new(ahs) {
            let a = a?;
            let len = u16::try_from(a.data.len() + 1).unwrap_or(u16::MAX);
            match a.ty {
                AhsType::EXTENDED_CDB => {
                    if out.extended_cdb.is_some() {
                        return Err(PduError::AhsDuplicate(a.ty));
                    }
                    if a.data.is_empty() {
                        return Err(PduError::AhsLength { ty: a.ty, len });
                    }
                    out.extended_cdb = Some(a.data);
                }
                AhsType::BIDI_READ_LENGTH => {
                    if out.bidi_read_length.is_some() {
                        return Err(PduError::AhsDuplicate(a.ty));
                    }
                    let Some(&v) = a.data.first_chunk::<4>().filter(|_| a.data.len() == 4) else {
                        return Err(PduError::AhsLength { ty: a.ty, len });
                    };
                    out.bidi_read_length = Some(u32::from_be_bytes(v));
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Split a complete PDU (as received, digests included or not) into its
/// parts. `pdu` must hold at least [`Bhs::pdu_len`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PduParts<'a> {
    /// The 48-byte BHS view.
    pub bhs: Bhs<&'a [u8]>,
    /// The AHS area (TotalAHSLength bytes).
    pub ahs: &'a [u8],
    /// Header digest bytes, if header digests are on.
    pub header_digest: Option<&'a [u8; 4]>,
    /// Data segment without padding.
    pub data: &'a [u8],
    /// Padding bytes after the data segment (0..=3 bytes).
    pub pad: &'a [u8],
    /// Data digest bytes, if data digests are on and the data segment is not empty.
    pub data_digest: Option<&'a [u8; 4]>,
}

impl<'a> PduParts<'a> {
    /// Split `pdu` according to its BHS and the connection's digests.
    pub fn split(pdu: &'a [u8], digests: Digests) -> Result<Self, PduError> {
        let bhs = Bhs::new_checked(pdu)?;
        let need = bhs.pdu_len(digests);
        if pdu.len() < need {
            return Err(PduError::Truncated { need, have: pdu.len() });
        }
        let (_, rest) = pdu.split_at(BHS_LEN);
        let (ahs, mut rest) = rest.split_at(bhs.total_ahs_len());
        let mut header_digest = None;
        if digests.header {
            let (d, r) = rest.split_at(DIGEST_LEN);
            header_digest = d.first_chunk::<4>();
            rest = r;
        }
        let dsl = bhs.data_segment_len() as usize;
        let (data, rest) = rest.split_at(dsl);
        let (pad, rest) = rest.split_at(pad_len(dsl));
        let data_digest = if digests.data && dsl > 0 { rest.first_chunk::<4>() } else { None };
        let bhs = Bhs::new_checked(&pdu[..BHS_LEN])?;
        Ok(Self { bhs, ahs, header_digest, data, pad, data_digest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn short_buffer_rejected() {
        assert_eq!(Bhs::new_checked(&[0u8; 47][..]).unwrap_err(), PduError::Truncated { need: 48, have: 47 });
    }

    #[test]
    fn scsi_command_fields() {
        // libiscsi INQUIRY from libiscsi-chap-mutual-login.pcap frame 18.
        let b = hex("01c10000000000000001000000000000586c13310000004017e62d990000000612000000400000000000000000000000");
        let h = Bhs::new_checked(&b[..]).unwrap();
        assert_eq!(h.opcode(), Opcode::SCSI_COMMAND);
        assert!(!h.immediate());
        assert!(h.final_bit() && h.read_bit() && !h.write_bit());
        assert_eq!(h.task_attr(), TaskAttr::SIMPLE);
        assert_eq!(h.lun(), 0x0001_0000_0000_0000);
        assert_eq!(h.itt(), 0x586c_1331);
        assert_eq!(h.expected_data_transfer_length(), 0x40);
        assert_eq!(h.cmd_sn(), 0x17e6_2d99);
        assert_eq!(h.exp_stat_sn(), 6);
        assert_eq!(&h.cdb()[..6], &[0x12, 0, 0, 0, 0x40, 0]);
        assert_eq!(h.pdu_len(Digests::default()), 48);
        assert_eq!(h.pdu_len(Digests { header: true, data: true }), 52);
    }

    #[test]
    fn login_fields_and_len() {
        let mut b = [0u8; BHS_LEN];
        b[0] = 0x43;
        b[1] = 0x87;
        b[3] = 0;
        b[4] = 2; // 8 bytes AHS
        b[5..8].copy_from_slice(&[0, 0x01, 0x8b]);
        b[8..14].copy_from_slice(&[0x80, 9, 0x85, 0x12, 0, 0]);
        b[14..16].copy_from_slice(&0x1234u16.to_be_bytes());
        b[20..22].copy_from_slice(&7u16.to_be_bytes());
        let h = Bhs::new_checked(b).unwrap();
        assert_eq!(h.opcode(), Opcode::LOGIN_REQUEST);
        assert!(h.immediate() && h.transit() && !h.continue_bit());
        assert_eq!((h.csg(), h.nsg()), (Stage::OPERATIONAL, Stage::FULL_FEATURE));
        assert_eq!(h.isid(), [0x80, 9, 0x85, 0x12, 0, 0]);
        assert_eq!(h.tsih(), 0x1234);
        assert_eq!(h.cid(), 7);
        assert_eq!(h.data_segment_len(), 0x18b);
        // 48 + 8 + 4 (hd) + 396 (0x18b padded) + 4 (dd)
        assert_eq!(h.pdu_len(Digests { header: true, data: true }), 48 + 8 + 4 + 396 + 4);
    }

    #[test]
    fn debug_prints_hex() {
        assert_eq!(format!("{:?}", Opcode(0x03)), "Opcode(0x03 LOGIN_REQUEST)");
        assert_eq!(format!("{:?}", Opcode(0x1e)), "Opcode(0x1e)");
    }

    #[test]
    fn ahs_parse() {
        // Extended CDB AHS for a 32-byte CDB: AHSLength = 17, padded to 20.
        let mut a = vec![0u8, 17, 1, 0];
        a.extend(16u8..32); // 4 + 16 = 20 bytes = padded(3 + 17): no pad
        // Bidi AHS: AHSLength 5, total 8.
        a.extend_from_slice(&[0, 5, 2, 0, 0, 0, 0x10, 0]);
        let c = CommandAhs::parse(&a).unwrap();
        assert_eq!(c.extended_cdb.unwrap(), &(16u8..32).collect::<Vec<_>>()[..]);
        assert_eq!(c.bidi_read_length, Some(0x1000));
    }

    #[test]
    fn ahs_errors() {
        assert_eq!(CommandAhs::parse(&[0, 9, 2, 0, 0, 0, 0, 0]).unwrap_err(), PduError::AhsOverrun { offset: 0 });
        assert_eq!(
            CommandAhs::parse(&[0, 1, 2, 0]).unwrap_err(),
            PduError::AhsLength { ty: AhsType::BIDI_READ_LENGTH, len: 1 }
        );
        assert_eq!(
            CommandAhs::parse(&[0, 0, 1, 0]).unwrap_err(),
            PduError::AhsLength { ty: AhsType::EXTENDED_CDB, len: 0 }
        );
        assert_eq!(
            CommandAhs::parse(&[0, 5, 2, 0, 0, 0, 0, 1, 0, 5, 2, 0, 0, 0, 0, 1]).unwrap_err(),
            PduError::AhsDuplicate(AhsType::BIDI_READ_LENGTH)
        );
        assert_eq!(CommandAhs::parse(&[0, 5]).unwrap_err(), PduError::AhsOverrun { offset: 0 });
    }

    #[test]
    fn split_parts() {
        let mut p = vec![0u8; BHS_LEN];
        p[0] = 0x04;
        p[7] = 5;
        p.extend_from_slice(&[1, 2, 3, 4]); // header digest
        p.extend_from_slice(b"A=B\0\0");
        p.extend_from_slice(&[0, 0, 0]);
        p.extend_from_slice(&[9, 9, 9, 9]);
        let parts = PduParts::split(&p, Digests { header: true, data: true }).unwrap();
        assert_eq!(parts.header_digest, Some(&[1, 2, 3, 4]));
        assert_eq!(parts.data, b"A=B\0\0");
        assert_eq!(parts.pad, &[0, 0, 0]);
        assert_eq!(parts.data_digest, Some(&[9, 9, 9, 9]));
        assert!(matches!(
            PduParts::split(&p[..p.len() - 1], Digests { header: true, data: true }),
            Err(PduError::Truncated { .. })
        ));
    }
}
