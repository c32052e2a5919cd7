//! Sense data: the one table of (sense key, ASC, ASCQ) the target uses, and the fixed (70h) and
//! descriptor (72h) format emitters (SPC-4 §4.5).
//!
//! Every CHECK CONDITION in the crate is a [`Sense`] value; it becomes bytes in exactly one place,
//! [`Sense::write`], which honours the logical unit's D_SENSE setting.

use core::fmt;

/// A sense key (SPC-4 table 48).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SenseKey(pub u8);

impl SenseKey {
    /// NO SENSE.
    pub const NO_SENSE: Self = Self(0x0);
    /// RECOVERED ERROR.
    pub const RECOVERED_ERROR: Self = Self(0x1);
    /// NOT READY.
    pub const NOT_READY: Self = Self(0x2);
    /// MEDIUM ERROR.
    pub const MEDIUM_ERROR: Self = Self(0x3);
    /// HARDWARE ERROR.
    pub const HARDWARE_ERROR: Self = Self(0x4);
    /// ILLEGAL REQUEST.
    pub const ILLEGAL_REQUEST: Self = Self(0x5);
    /// UNIT ATTENTION.
    pub const UNIT_ATTENTION: Self = Self(0x6);
    /// DATA PROTECT.
    pub const DATA_PROTECT: Self = Self(0x7);
    /// COPY ABORTED.
    pub const COPY_ABORTED: Self = Self(0xa);
    /// ABORTED COMMAND.
    pub const ABORTED_COMMAND: Self = Self(0xb);
    /// VOLUME OVERFLOW.
    pub const VOLUME_OVERFLOW: Self = Self(0xd);
    /// MISCOMPARE.
    pub const MISCOMPARE: Self = Self(0xe);
}

impl fmt::Debug for SenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SenseKey({:#x})", self.0)
    }
}

/// A (sense key, additional sense code, qualifier) triple.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SenseCode {
    /// Sense key.
    pub key: SenseKey,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
}

macro_rules! sense_codes {
    ($( $(#[$m:meta])* $name:ident = ($key:ident, $asc:literal, $ascq:literal, $text:literal); )*) => {
        impl SenseCode {
            $( $(#[$m])* #[doc = concat!("`", $text, "`")]
               pub const $name: Self = Self { key: SenseKey::$key, asc: $asc, ascq: $ascq }; )*
        }
        /// Every named code with its T10 name (asc-num.txt spelling), for tests and logging.
        pub const SENSE_TABLE: &[(SenseCode, &str)] = &[ $( (SenseCode::$name, $text), )* ];
    };
}

sense_codes! {
    NO_ADDITIONAL_SENSE = (NO_SENSE, 0x00, 0x00, "NO ADDITIONAL SENSE INFORMATION");
    NOT_READY_CAUSE_NOT_REPORTABLE = (NOT_READY, 0x04, 0x00, "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE");
    NOT_READY_INIT_CMD_REQUIRED = (NOT_READY, 0x04, 0x02, "LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED");
    NOT_READY_MANUAL_INTERVENTION = (NOT_READY, 0x04, 0x03, "LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED");
    NOT_READY_ALUA_TRANSITION = (NOT_READY, 0x04, 0x0a, "LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION");
    NOT_READY_ALUA_STANDBY = (NOT_READY, 0x04, 0x0b, "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE");
    NOT_READY_ALUA_UNAVAILABLE = (NOT_READY, 0x04, 0x0c, "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE");
    NOT_READY_OFFLINE = (NOT_READY, 0x04, 0x12, "LOGICAL UNIT NOT READY, OFFLINE");
    NOT_READY_SANITIZE_IN_PROGRESS = (NOT_READY, 0x04, 0x1b, "LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS");
    MEDIUM_NOT_PRESENT = (NOT_READY, 0x3a, 0x00, "MEDIUM NOT PRESENT");
    MEDIUM_NOT_PRESENT_TRAY_OPEN = (NOT_READY, 0x3a, 0x02, "MEDIUM NOT PRESENT - TRAY OPEN");
    WRITE_ERROR = (MEDIUM_ERROR, 0x0c, 0x00, "WRITE ERROR");
    UNRECOVERED_READ_ERROR = (MEDIUM_ERROR, 0x11, 0x00, "UNRECOVERED READ ERROR");
    SANITIZE_COMMAND_FAILED = (MEDIUM_ERROR, 0x31, 0x03, "SANITIZE COMMAND FAILED");
    INTERNAL_TARGET_FAILURE = (HARDWARE_ERROR, 0x44, 0x00, "INTERNAL TARGET FAILURE");
    INVALID_FIELD_IN_INFORMATION_UNIT = (ILLEGAL_REQUEST, 0x0e, 0x03, "INVALID FIELD IN COMMAND INFORMATION UNIT");
    PARAMETER_LIST_LENGTH_ERROR = (ILLEGAL_REQUEST, 0x1a, 0x00, "PARAMETER LIST LENGTH ERROR");
    INVALID_OPCODE = (ILLEGAL_REQUEST, 0x20, 0x00, "INVALID COMMAND OPERATION CODE");
    LBA_OUT_OF_RANGE = (ILLEGAL_REQUEST, 0x21, 0x00, "LOGICAL BLOCK ADDRESS OUT OF RANGE");
    INVALID_FIELD_IN_CDB = (ILLEGAL_REQUEST, 0x24, 0x00, "INVALID FIELD IN CDB");
    LUN_NOT_SUPPORTED = (ILLEGAL_REQUEST, 0x25, 0x00, "LOGICAL UNIT NOT SUPPORTED");
    INVALID_FIELD_IN_PARAM_LIST = (ILLEGAL_REQUEST, 0x26, 0x00, "INVALID FIELD IN PARAMETER LIST");
    PARAMETER_NOT_SUPPORTED = (ILLEGAL_REQUEST, 0x26, 0x01, "PARAMETER NOT SUPPORTED");
    PARAMETER_VALUE_INVALID = (ILLEGAL_REQUEST, 0x26, 0x02, "PARAMETER VALUE INVALID");
    INVALID_RELEASE_OF_PR = (ILLEGAL_REQUEST, 0x26, 0x04, "INVALID RELEASE OF PERSISTENT RESERVATION");
    TOO_MANY_TARGET_DESCRIPTORS = (ILLEGAL_REQUEST, 0x26, 0x06, "TOO MANY TARGET DESCRIPTORS");
    UNSUPPORTED_TARGET_DESCRIPTOR_TYPE = (ILLEGAL_REQUEST, 0x26, 0x07, "UNSUPPORTED TARGET DESCRIPTOR TYPE CODE");
    TOO_MANY_SEGMENT_DESCRIPTORS = (ILLEGAL_REQUEST, 0x26, 0x08, "TOO MANY SEGMENT DESCRIPTORS");
    UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE = (ILLEGAL_REQUEST, 0x26, 0x09, "UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE");
    INLINE_DATA_LENGTH_EXCEEDED = (ILLEGAL_REQUEST, 0x26, 0x0b, "INLINE DATA LENGTH EXCEEDED");
    COMMAND_SEQUENCE_ERROR = (ILLEGAL_REQUEST, 0x2c, 0x00, "COMMAND SEQUENCE ERROR");
    SAVING_PARAMETERS_NOT_SUPPORTED = (ILLEGAL_REQUEST, 0x39, 0x00, "SAVING PARAMETERS NOT SUPPORTED");
    INVALID_MESSAGE_ERROR = (ILLEGAL_REQUEST, 0x49, 0x00, "INVALID MESSAGE ERROR");
    MEDIUM_REMOVAL_PREVENTED = (ILLEGAL_REQUEST, 0x53, 0x02, "MEDIUM REMOVAL PREVENTED");
    INSUFFICIENT_REGISTRATION_RESOURCES = (ILLEGAL_REQUEST, 0x55, 0x04, "INSUFFICIENT REGISTRATION RESOURCES");
    NOT_READY_TO_READY_CHANGE = (UNIT_ATTENTION, 0x28, 0x00, "NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED");
    POWER_ON_RESET = (UNIT_ATTENTION, 0x29, 0x00, "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED");
    POWER_ON_OCCURRED = (UNIT_ATTENTION, 0x29, 0x01, "POWER ON OCCURRED");
    BUS_DEVICE_RESET = (UNIT_ATTENTION, 0x29, 0x03, "BUS DEVICE RESET FUNCTION OCCURRED");
    I_T_NEXUS_LOSS = (UNIT_ATTENTION, 0x29, 0x07, "I_T NEXUS LOSS OCCURRED");
    MODE_PARAMETERS_CHANGED = (UNIT_ATTENTION, 0x2a, 0x01, "MODE PARAMETERS CHANGED");
    RESERVATIONS_PREEMPTED = (UNIT_ATTENTION, 0x2a, 0x03, "RESERVATIONS PREEMPTED");
    RESERVATIONS_RELEASED = (UNIT_ATTENTION, 0x2a, 0x04, "RESERVATIONS RELEASED");
    REGISTRATIONS_PREEMPTED = (UNIT_ATTENTION, 0x2a, 0x05, "REGISTRATIONS PREEMPTED");
    ASYMMETRIC_ACCESS_STATE_CHANGED = (UNIT_ATTENTION, 0x2a, 0x06, "ASYMMETRIC ACCESS STATE CHANGED");
    CAPACITY_DATA_HAS_CHANGED = (UNIT_ATTENTION, 0x2a, 0x09, "CAPACITY DATA HAS CHANGED");
    COMMANDS_CLEARED_BY_ANOTHER_INITIATOR = (UNIT_ATTENTION, 0x2f, 0x00, "COMMANDS CLEARED BY ANOTHER INITIATOR");
    COMMANDS_CLEARED_BY_POWER_LOSS = (UNIT_ATTENTION, 0x2f, 0x01, "COMMANDS CLEARED BY POWER LOSS NOTIFICATION");
    INQUIRY_DATA_HAS_CHANGED = (UNIT_ATTENTION, 0x3f, 0x03, "INQUIRY DATA HAS CHANGED");
    REPORTED_LUNS_DATA_HAS_CHANGED = (UNIT_ATTENTION, 0x3f, 0x0e, "REPORTED LUNS DATA HAS CHANGED");
    WRITE_PROTECTED = (DATA_PROTECT, 0x27, 0x00, "WRITE PROTECTED");
    SOFTWARE_WRITE_PROTECTED = (DATA_PROTECT, 0x27, 0x02, "LOGICAL UNIT SOFTWARE WRITE PROTECTED");
    SPACE_ALLOCATION_FAILED_WRITE_PROTECT = (DATA_PROTECT, 0x27, 0x07, "SPACE ALLOCATION FAILED WRITE PROTECT");
    COPY_ABORTED_NO_SENSE = (COPY_ABORTED, 0x00, 0x00, "NO ADDITIONAL SENSE INFORMATION");
    UNREACHABLE_COPY_TARGET = (COPY_ABORTED, 0x08, 0x04, "UNREACHABLE COPY TARGET");
    COPY_TARGET_DEVICE_NOT_REACHABLE = (COPY_ABORTED, 0x0d, 0x02, "COPY TARGET DEVICE NOT REACHABLE");
    COPY_ABORTED_LBA_OUT_OF_RANGE = (COPY_ABORTED, 0x21, 0x00, "LOGICAL BLOCK ADDRESS OUT OF RANGE");
    COPY_ABORTED_UNRECOVERED_READ = (COPY_ABORTED, 0x11, 0x00, "UNRECOVERED READ ERROR");
    COPY_ABORTED_WRITE_ERROR = (COPY_ABORTED, 0x0c, 0x00, "WRITE ERROR");
    ABORTED_COMMAND = (ABORTED_COMMAND, 0x00, 0x00, "NO ADDITIONAL SENSE INFORMATION");
    DATA_PHASE_ERROR = (ABORTED_COMMAND, 0x4b, 0x00, "DATA PHASE ERROR");
    INITIATOR_RESPONSE_TIMEOUT = (ABORTED_COMMAND, 0x4b, 0x06, "INITIATOR RESPONSE TIMEOUT");
    MISCOMPARE_DURING_VERIFY = (MISCOMPARE, 0x1d, 0x00, "MISCOMPARE DURING VERIFY OPERATION");
}

impl SenseCode {
    /// The T10 name of this code, if it is one of the table's.
    pub fn name(self) -> Option<&'static str> {
        SENSE_TABLE.iter().find(|(c, _)| *c == self).map(|(_, n)| *n)
    }
}

impl fmt::Debug for SenseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}/{:02x}/{:02x}", self.key.0, self.asc, self.ascq)?;
        if let Some(n) = self.name() {
            write!(f, " ({n})")?;
        }
        Ok(())
    }
}

/// The sense-key-specific field pointer (SPC-4 §4.5.2.4.2) of INVALID FIELD IN CDB / PARAMETER LIST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldPointer {
    /// `true`: the field is in the CDB (C/D = 1); `false`: in the parameter list.
    pub in_cdb: bool,
    /// Byte offset of the field.
    pub byte: u16,
    /// Bit position of the field's most significant bit within `byte`, when meaningful.
    pub bit: Option<u8>,
}

/// A CHECK CONDITION: the code plus the optional INFORMATION and sense-key-specific fields.
///
/// This is a SCSI outcome, not a Rust error: handlers return `Result<_, Sense>` and the core turns
/// it into sense bytes with [`Sense::write`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// The (key, ASC, ASCQ).
    pub code: SenseCode,
    /// The INFORMATION field (e.g. the first bad LBA, or a miscompare offset).
    pub information: Option<u64>,
    /// The sense-key-specific field pointer.
    pub field: Option<FieldPointer>,
}

impl fmt::Debug for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.code)?;
        if let Some(i) = self.information {
            write!(f, " info={i:#x}")?;
        }
        if let Some(p) = self.field {
            let side = if p.in_cdb { "cdb" } else { "param" };
            write!(f, " {side}[{}]", p.byte)?;
            if let Some(b) = p.bit {
                write!(f, ".{b}")?;
            }
        }
        Ok(())
    }
}

impl From<SenseCode> for Sense {
    fn from(code: SenseCode) -> Self {
        Self::new(code)
    }
}

/// Longest sense data this crate produces (descriptor format with information and SKS descriptors).
pub const MAX_SENSE_LEN: usize = 32;

impl Sense {
    /// A sense with no INFORMATION and no field pointer.
    pub const fn new(code: SenseCode) -> Self {
        Self { code, information: None, field: None }
    }

    /// INVALID FIELD IN CDB pointing at `byte` (and `bit`, when a single bit or the MSB of a
    /// sub-byte field is wrong).
    pub const fn invalid_cdb(byte: u16, bit: Option<u8>) -> Self {
        Self {
            code: SenseCode::INVALID_FIELD_IN_CDB,
            information: None,
            field: Some(FieldPointer { in_cdb: true, byte, bit }),
        }
    }

    /// INVALID FIELD IN PARAMETER LIST pointing at `byte` (and `bit`).
    pub const fn invalid_param(byte: u16, bit: Option<u8>) -> Self {
        Self {
            code: SenseCode::INVALID_FIELD_IN_PARAM_LIST,
            information: None,
            field: Some(FieldPointer { in_cdb: false, byte, bit }),
        }
    }

    /// INVALID COMMAND OPERATION CODE.
    pub const fn invalid_opcode() -> Self {
        Self::new(SenseCode::INVALID_OPCODE)
    }

    /// LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const fn lba_out_of_range() -> Self {
        Self::new(SenseCode::LBA_OUT_OF_RANGE)
    }

    /// `code` with the INFORMATION field set.
    pub const fn with_info(code: SenseCode, information: u64) -> Self {
        Self { code, information: Some(information), field: None }
    }

    /// Writes the sense data into `out` in descriptor format (`descriptor`, per D_SENSE) or fixed
    /// format, and returns its length. `out` must hold [`MAX_SENSE_LEN`] bytes.
    ///
    /// In fixed format an INFORMATION value wider than 32 bits cannot be represented: the VALID
    /// bit is then left clear, as SPC-4 §4.5.3 requires.
    pub fn write(&self, descriptor: bool, out: &mut [u8; MAX_SENSE_LEN]) -> usize {
        *out = [0; MAX_SENSE_LEN];
        let sks = self.field.map(|p| {
            let mut b = [0u8; 3];
            b[0] = 0x80 | if p.in_cdb { 0x40 } else { 0 };
            if let Some(bit) = p.bit {
                b[0] |= 0x08 | (bit & 7);
            }
            b[1..3].copy_from_slice(&p.byte.to_be_bytes());
            b
        });
        if descriptor {
            out[0] = 0x72;
            out[1] = self.code.key.0 & 0x0f;
            out[2] = self.code.asc;
            out[3] = self.code.ascq;
            let mut len = 8;
            if let Some(info) = self.information {
                // Information descriptor (type 00h, additional length 0Ah, VALID set).
                out[len] = 0x00;
                out[len + 1] = 0x0a;
                out[len + 2] = 0x80;
                out[len + 4..len + 12].copy_from_slice(&info.to_be_bytes());
                len += 12;
            }
            if let Some(sks) = sks {
                // Sense key specific descriptor (type 02h, additional length 06h).
                out[len] = 0x02;
                out[len + 1] = 0x06;
                out[len + 4..len + 7].copy_from_slice(&sks);
                len += 8;
            }
            out[7] = (len - 8) as u8;
            len
        } else {
            out[0] = 0x70;
            out[2] = self.code.key.0 & 0x0f;
            if let Some(info) = self.information
                && let Ok(info) = u32::try_from(info)
            {
                out[0] |= 0x80;
                out[3..7].copy_from_slice(&info.to_be_bytes());
            }
            out[7] = 10;
            out[12] = self.code.asc;
            out[13] = self.code.ascq;
            if let Some(sks) = sks {
                out[15..18].copy_from_slice(&sks);
            }
            18
        }
    }

    /// Like [`Sense::write`], with a PROGRESS INDICATION (of 65536) in the sense-key-specific
    /// field instead of a field pointer (SPC-4 §4.5.2.4.4; NOT READY states that report how far
    /// an operation is).
    pub fn write_progress(&self, descriptor: bool, progress: u16, out: &mut [u8; MAX_SENSE_LEN]) -> usize {
        let mut len = Self { field: None, ..*self }.write(descriptor, out);
        let p = progress.to_be_bytes();
        if descriptor {
            out[len..len + 8].copy_from_slice(&[0x02, 0x06, 0, 0, 0x80, p[0], p[1], 0]);
            len += 8;
            out[7] = (len - 8) as u8;
        } else {
            out[15..18].copy_from_slice(&[0x80, p[0], p[1]]);
        }
        len
    }

    /// Parses the key/ASC/ASCQ back out of fixed or descriptor sense data (for tests and logs).
    pub fn parse_code(sense: &[u8]) -> Option<SenseCode> {
        match sense.first()? & 0x7f {
            0x70 | 0x71 if sense.len() >= 14 => {
                Some(SenseCode { key: SenseKey(sense[2] & 0x0f), asc: sense[12], ascq: sense[13] })
            }
            0x72 | 0x73 if sense.len() >= 4 => {
                Some(SenseCode { key: SenseKey(sense[1] & 0x0f), asc: sense[2], ascq: sense[3] })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes transcribed from T10's asc-num.txt (2020-08-17 listing); the table above must agree
    /// with it on every (ASC, ASCQ) it names, so a typo in either shows up here.
    const T10_ASC_NUM: &[(u8, u8, &str)] = &[
        (0x00, 0x00, "NO ADDITIONAL SENSE INFORMATION"),
        (0x04, 0x00, "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE"),
        (0x04, 0x02, "LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED"),
        (0x04, 0x03, "LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED"),
        (0x04, 0x0a, "LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION"),
        (0x04, 0x0b, "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE"),
        (0x04, 0x0c, "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE"),
        (0x04, 0x12, "LOGICAL UNIT NOT READY, OFFLINE"),
        (0x04, 0x1b, "LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS"),
        (0x08, 0x04, "UNREACHABLE COPY TARGET"),
        (0x0c, 0x00, "WRITE ERROR"),
        (0x0d, 0x02, "COPY TARGET DEVICE NOT REACHABLE"),
        (0x0e, 0x03, "INVALID FIELD IN COMMAND INFORMATION UNIT"),
        (0x11, 0x00, "UNRECOVERED READ ERROR"),
        (0x1a, 0x00, "PARAMETER LIST LENGTH ERROR"),
        (0x1d, 0x00, "MISCOMPARE DURING VERIFY OPERATION"),
        (0x20, 0x00, "INVALID COMMAND OPERATION CODE"),
        (0x21, 0x00, "LOGICAL BLOCK ADDRESS OUT OF RANGE"),
        (0x24, 0x00, "INVALID FIELD IN CDB"),
        (0x25, 0x00, "LOGICAL UNIT NOT SUPPORTED"),
        (0x26, 0x00, "INVALID FIELD IN PARAMETER LIST"),
        (0x26, 0x01, "PARAMETER NOT SUPPORTED"),
        (0x26, 0x02, "PARAMETER VALUE INVALID"),
        (0x26, 0x04, "INVALID RELEASE OF PERSISTENT RESERVATION"),
        (0x26, 0x06, "TOO MANY TARGET DESCRIPTORS"),
        (0x26, 0x07, "UNSUPPORTED TARGET DESCRIPTOR TYPE CODE"),
        (0x26, 0x08, "TOO MANY SEGMENT DESCRIPTORS"),
        (0x26, 0x09, "UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE"),
        (0x26, 0x0b, "INLINE DATA LENGTH EXCEEDED"),
        (0x27, 0x00, "WRITE PROTECTED"),
        (0x27, 0x02, "LOGICAL UNIT SOFTWARE WRITE PROTECTED"),
        (0x27, 0x07, "SPACE ALLOCATION FAILED WRITE PROTECT"),
        (0x28, 0x00, "NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED"),
        (0x29, 0x00, "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED"),
        (0x29, 0x01, "POWER ON OCCURRED"),
        (0x29, 0x03, "BUS DEVICE RESET FUNCTION OCCURRED"),
        (0x29, 0x07, "I_T NEXUS LOSS OCCURRED"),
        (0x2a, 0x01, "MODE PARAMETERS CHANGED"),
        (0x2a, 0x03, "RESERVATIONS PREEMPTED"),
        (0x2a, 0x04, "RESERVATIONS RELEASED"),
        (0x2a, 0x05, "REGISTRATIONS PREEMPTED"),
        (0x2a, 0x06, "ASYMMETRIC ACCESS STATE CHANGED"),
        (0x2a, 0x09, "CAPACITY DATA HAS CHANGED"),
        (0x2c, 0x00, "COMMAND SEQUENCE ERROR"),
        (0x2f, 0x00, "COMMANDS CLEARED BY ANOTHER INITIATOR"),
        (0x2f, 0x01, "COMMANDS CLEARED BY POWER LOSS NOTIFICATION"),
        (0x31, 0x03, "SANITIZE COMMAND FAILED"),
        (0x39, 0x00, "SAVING PARAMETERS NOT SUPPORTED"),
        (0x3a, 0x00, "MEDIUM NOT PRESENT"),
        (0x3a, 0x02, "MEDIUM NOT PRESENT - TRAY OPEN"),
        (0x3f, 0x03, "INQUIRY DATA HAS CHANGED"),
        (0x3f, 0x0e, "REPORTED LUNS DATA HAS CHANGED"),
        (0x44, 0x00, "INTERNAL TARGET FAILURE"),
        (0x49, 0x00, "INVALID MESSAGE ERROR"),
        (0x4b, 0x00, "DATA PHASE ERROR"),
        (0x4b, 0x06, "INITIATOR RESPONSE TIMEOUT"),
        (0x53, 0x02, "MEDIUM REMOVAL PREVENTED"),
        (0x55, 0x04, "INSUFFICIENT REGISTRATION RESOURCES"),
    ];

    #[test]
    fn table_agrees_with_t10() {
        for (code, name) in SENSE_TABLE {
            let t10 = T10_ASC_NUM
                .iter()
                .find(|(a, q, _)| *a == code.asc && *q == code.ascq)
                .unwrap_or_else(|| panic!("{name}: {:02x}/{:02x} not in T10 list", code.asc, code.ascq));
            assert_eq!(t10.2, *name, "{:02x}/{:02x}", code.asc, code.ascq);
        }
    }

    #[test]
    fn fixed_format_with_field_pointer() {
        let mut b = [0; MAX_SENSE_LEN];
        let n = Sense::invalid_cdb(1, Some(4)).write(false, &mut b);
        assert_eq!(n, 18);
        assert_eq!(&b[..18], &[0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0xcc, 0, 1]);
    }

    #[test]
    fn fixed_format_information() {
        let mut b = [0; MAX_SENSE_LEN];
        let n = Sense::with_info(SenseCode::MISCOMPARE_DURING_VERIFY, 0x1234).write(false, &mut b);
        assert_eq!(&b[..n], &[0xf0, 0, 0xe, 0, 0, 0x12, 0x34, 10, 0, 0, 0, 0, 0x1d, 0, 0, 0, 0, 0]);
        // Too wide for fixed format: VALID stays clear.
        Sense::with_info(SenseCode::MISCOMPARE_DURING_VERIFY, 1 << 40).write(false, &mut b);
        assert_eq!(b[0], 0x70);
    }

    #[test]
    fn descriptor_format() {
        let mut b = [0; MAX_SENSE_LEN];
        let s = Sense {
            code: SenseCode::INVALID_FIELD_IN_PARAM_LIST,
            information: Some(7),
            field: Some(FieldPointer { in_cdb: false, byte: 2, bit: None }),
        };
        let n = s.write(true, &mut b);
        assert_eq!(n, 28);
        assert_eq!(&b[..8], &[0x72, 5, 0x26, 0, 0, 0, 0, 20]);
        assert_eq!(&b[8..20], &[0, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(&b[20..28], &[2, 6, 0, 0, 0x80, 0, 2, 0]);
        assert_eq!(Sense::parse_code(&b[..n]), Some(SenseCode::INVALID_FIELD_IN_PARAM_LIST));
    }
}
