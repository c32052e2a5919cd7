//! The opcode table: one entry per supported command, with its CDB usage data.
//!
//! The CDB usage data (SPC-4 §6.35.3) does double duty. REPORT SUPPORTED OPERATION CODES returns
//! it verbatim, and [`OpInfo::check_cdb`] rejects any CDB with a bit set outside it with INVALID
//! FIELD IN CDB pointing at that byte and bit. So what the target advertises and what it enforces
//! cannot drift apart. Fields whose *values* need further checks (a service action, a page code)
//! are checked by the command's handler.

use crate::wire::sense::Sense;

/// Direction of a command's data phase, as seen from the initiator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DataDir {
    /// No data phase.
    #[default]
    None,
    /// Data-In: target to initiator (READ, INQUIRY, ...).
    In,
    /// Data-Out: initiator to target (WRITE, MODE SELECT, ...).
    Out,
}

/// Which command an entry is: the handler's dispatch key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum Op {
    TestUnitReady,
    RequestSense,
    Read6,
    Write6,
    Inquiry,
    ModeSelect6,
    ModeSense6,
    StartStopUnit,
    PreventAllow,
    ReadCapacity10,
    Read10,
    Write10,
    WriteVerify10,
    Verify10,
    Prefetch10,
    SyncCache10,
    ReadDefectData10,
    ModeSelect10,
    ModeSense10,
    Read16,
    Write16,
    WriteVerify16,
    Verify16,
    Prefetch16,
    SyncCache16,
    ReadCapacity16,
    ReportLuns,
    ReportTargetPortGroups,
    SetTargetPortGroups,
    ReportSupportedOpcodes,
    ReportSupportedTmf,
    Read12,
    Write12,
    WriteVerify12,
    Verify12,
    ReadDefectData12,
    Reserve6,
    Release6,
    Reserve10,
    Release10,
    PersistentReserveIn,
    PersistentReserveOut,
    WriteSame10,
    WriteSame16,
    Unmap,
    GetLbaStatus,
    CompareAndWrite,
    OrWrite16,
    WriteAtomic16,
    ExtendedCopy,
    ReceiveCopyResults,
    Sanitize,
    /// A command a pass-through device executes that the disk table does not name (see
    /// [`PASS_THROUGH`]).
    PassThrough,
}

impl Op {
    /// Whether byte 1 bits 7..5 of the CDB are a protection information field (RDPROTECT,
    /// WRPROTECT or VRPROTECT). Protection information is not supported, so a non-zero value is
    /// refused, with the field pointer at the field's most significant bit.
    pub const fn has_protect_field(self) -> bool {
        matches!(
            self,
            Self::Read10
                | Self::Read12
                | Self::Read16
                | Self::Write10
                | Self::Write12
                | Self::Write16
                | Self::Verify10
                | Self::Verify12
                | Self::Verify16
                | Self::WriteVerify10
                | Self::WriteVerify12
                | Self::WriteVerify16
        )
    }
}

/// Per-command properties the core acts on before the handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OpFlags(pub u16);

impl OpFlags {
    /// Processed even when the LUN does not exist (REPORT LUNS, INQUIRY, REQUEST SENSE).
    pub const NO_LUN: Self = Self(1 << 0);
    /// Neither reports nor clears a pending unit attention (INQUIRY, REPORT LUNS; SPC-4 §5.14).
    pub const UA_EXEMPT: Self = Self(1 << 1);
    /// Writes the medium: refused on read-only LUNs with DATA PROTECT / WRITE PROTECTED.
    pub const WRITE: Self = Self(1 << 2);
    /// Needs the medium (refused with NOT READY while the unit is stopped or the medium ejected).
    pub const MEDIUM: Self = Self(1 << 3);
    /// Reads or writes the medium and may block on the backing store (runs on device workers
    /// when the store may block).
    pub const IO: Self = Self(1 << 4);

    /// Never blocked by any reservation (INQUIRY, REPORT LUNS, REQUEST SENSE, PERSISTENT
    /// RESERVE IN, RESERVE and RELEASE).
    pub const PR_EXEMPT: Self = Self(1 << 5);
    /// Not blocked by persistent reservations (only by another nexus's SPC-2 reservation).
    pub const PR_ALWAYS: Self = Self(1 << 6);
    /// Changes the logical unit's state without writing the medium: blocked like a write by
    /// reservations, allowed on read-only LUNs.
    pub const PR_WRITE: Self = Self(1 << 7);

    /// Whether every flag in `other` is set.
    pub const fn has(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    const fn or(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// One supported command.
#[derive(Debug)]
pub struct OpInfo {
    /// Dispatch key.
    pub op: Op,
    /// Operation code (CDB byte 0).
    pub opcode: u8,
    /// Service action (CDB byte 1 bits 4..0), for opcodes that have them.
    pub service_action: Option<u8>,
    /// Command name as SPC/SBC spell it.
    pub name: &'static str,
    /// CDB usage data: its length is the CDB length; byte 0 is the opcode; each other bit is 1
    /// when the device server evaluates that bit.
    pub usage: &'static [u8],
    /// Data direction (for commands whose direction depends on a field, the direction when it
    /// carries data).
    pub dir: DataDir,
    /// Properties.
    pub flags: OpFlags,
}

impl OpInfo {
    /// How reservations treat this command (SPC-4 table 63, SBC-3 table 13).
    pub fn pr_access(&self) -> crate::pr::Access {
        use crate::pr::Access;
        if self.flags.has(OpFlags::PR_EXEMPT) {
            Access::Exempt
        } else if self.flags.has(OpFlags::PR_ALWAYS) {
            Access::Always
        } else if self.flags.has(OpFlags::WRITE) || self.flags.has(OpFlags::PR_WRITE) {
            Access::Write
        } else {
            Access::Read
        }
    }

    /// The CDB length.
    pub const fn cdb_len(&self) -> usize {
        self.usage.len()
    }

    /// Rejects a CDB that is too short or sets a bit outside the usage data (the control byte's
    /// NACA and LINK bits included: this target supports neither).
    pub fn check_cdb(&self, cdb: &[u8]) -> Result<(), Sense> {
        if cdb.len() < self.usage.len() {
            return Err(Sense::invalid_opcode());
        }
        for (i, (&b, &u)) in cdb.iter().zip(self.usage).enumerate().skip(1) {
            let bad = b & !u;
            if bad != 0 {
                let mut bit = 7 - bad.leading_zeros() as u8;
                // A multiple-bit field in error is pointed at by its most significant bit
                // (SPC-4 §4.5.2.4.2).
                if i == 1 && bit >= 5 && self.op.has_protect_field() {
                    bit = 7;
                }
                return Err(Sense::invalid_cdb(i as u16, Some(bit)));
            }
        }
        Ok(())
    }
}

const C: u8 = 0x00; // control byte: NACA, LINK and the vendor bits are not supported
const IN: DataDir = DataDir::In;
const OUT: DataDir = DataDir::Out;
const NONE: DataDir = DataDir::None;
const NOLUN_UAX: OpFlags = OpFlags::NO_LUN.or(OpFlags::UA_EXEMPT).or(OpFlags::PR_EXEMPT);
/// Not blocked by persistent reservations.
const PRA: OpFlags = OpFlags::PR_ALWAYS;
/// Changes state: blocked like a write by reservations.
const PRW: OpFlags = OpFlags::PR_WRITE;
const PRX: OpFlags = OpFlags::PR_EXEMPT;
const RD: OpFlags = OpFlags::MEDIUM.or(OpFlags::IO);
const WR: OpFlags = OpFlags::MEDIUM.or(OpFlags::IO).or(OpFlags::WRITE);
const NOF: OpFlags = OpFlags(0);

macro_rules! op {
    ($op:ident, $code:literal, $sa:expr, $name:literal, $dir:expr, $flags:expr, [$($u:expr),*]) => {
        OpInfo { op: Op::$op, opcode: $code, service_action: $sa, name: $name,
                 usage: &[$code, $($u),*], dir: $dir, flags: $flags }
    };
}

/// Commands of a direct-access block device (SPC-4 + SBC-3), sorted by opcode and service action.
pub static DISK_OPS: &[OpInfo] = &[
    op!(TestUnitReady, 0x00, None, "TEST UNIT READY", NONE, PRA, [0, 0, 0, 0, C]),
    op!(RequestSense, 0x03, None, "REQUEST SENSE", IN, OpFlags::NO_LUN.or(PRX), [0x01, 0, 0, 0xff, C]),
    op!(Read6, 0x08, None, "READ(6)", IN, RD, [0x1f, 0xff, 0xff, 0xff, C]),
    op!(Write6, 0x0a, None, "WRITE(6)", OUT, WR, [0x1f, 0xff, 0xff, 0xff, C]),
    op!(Inquiry, 0x12, None, "INQUIRY", IN, NOLUN_UAX, [0x01, 0xff, 0xff, 0xff, C]),
    op!(ModeSelect6, 0x15, None, "MODE SELECT(6)", OUT, PRW, [0x11, 0, 0, 0xff, C]),
    // SPC-2 reservations: no third-party reservations, no extents.
    op!(Reserve6, 0x16, None, "RESERVE(6)", NONE, PRX, [0, 0, 0, 0, C]),
    op!(Release6, 0x17, None, "RELEASE(6)", NONE, PRX, [0, 0, 0, 0, C]),
    op!(ModeSense6, 0x1a, None, "MODE SENSE(6)", IN, NOF, [0x08, 0xff, 0xff, 0xff, C]),
    op!(StartStopUnit, 0x1b, None, "START STOP UNIT", NONE, PRW, [0x01, 0, 0x0f, 0xf7, C]),
    op!(PreventAllow, 0x1e, None, "PREVENT ALLOW MEDIUM REMOVAL", NONE, PRW, [0, 0, 0, 0x03, C]),
    op!(ReadCapacity10, 0x25, None, "READ CAPACITY(10)", IN, OpFlags::MEDIUM.or(PRA), [0, 0, 0, 0, 0, 0, 0, 0, C]),
    op!(Read10, 0x28, None, "READ(10)", IN, RD, [0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, C]),
    op!(Write10, 0x2a, None, "WRITE(10)", OUT, WR, [0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, C]),
    op!(
        WriteVerify10,
        0x2e,
        None,
        "WRITE AND VERIFY(10)",
        OUT,
        WR,
        [0x16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, C]
    ),
    op!(Verify10, 0x2f, None, "VERIFY(10)", OUT, RD, [0x16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, C]),
    op!(Prefetch10, 0x34, None, "PRE-FETCH(10)", NONE, RD, [0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, C]),
    // SYNCHRONIZE CACHE byte 1: SYNC_NV (SBC-3; obsolete in SBC-4; libiscsi sets it) and IMMED.
    // Every completed write is flushed, whatever SYNC_NV says.
    op!(
        SyncCache10,
        0x35,
        None,
        "SYNCHRONIZE CACHE(10)",
        NONE,
        RD.or(PRW),
        [0x06, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, C]
    ),
    op!(ReadDefectData10, 0x37, None, "READ DEFECT DATA(10)", IN, NOF, [0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, C]),
    // WRITE SAME(10): UNMAP (ANCHOR is not supported; LBDATA/PBDATA are obsolete).
    op!(WriteSame10, 0x41, None, "WRITE SAME(10)", OUT, WR, [0x08, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, C]),
    op!(Unmap, 0x42, None, "UNMAP", OUT, WR, [0, 0, 0, 0, 0, 0x1f, 0xff, 0xff, C]),
    // SANITIZE: IMMED, AUSE; OVERWRITE (01h), BLOCK ERASE (02h), CRYPTOGRAPHIC ERASE (03h), EXIT
    // FAILURE MODE (1Fh).
    op!(Sanitize, 0x48, Some(0x01), "SANITIZE (OVERWRITE)", OUT, OpFlags::WRITE, [0xa1, 0, 0, 0, 0, 0, 0xff, 0xff, C]),
    op!(
        Sanitize,
        0x48,
        Some(0x02),
        "SANITIZE (BLOCK ERASE)",
        NONE,
        OpFlags::WRITE,
        [0xa2, 0, 0, 0, 0, 0, 0xff, 0xff, C]
    ),
    op!(
        Sanitize,
        0x48,
        Some(0x03),
        "SANITIZE (CRYPTOGRAPHIC ERASE)",
        NONE,
        OpFlags::WRITE,
        [0xa3, 0, 0, 0, 0, 0, 0xff, 0xff, C]
    ),
    op!(
        Sanitize,
        0x48,
        Some(0x1f),
        "SANITIZE (EXIT FAILURE MODE)",
        NONE,
        OpFlags::WRITE,
        [0xbf, 0, 0, 0, 0, 0, 0xff, 0xff, C]
    ),
    op!(ModeSelect10, 0x55, None, "MODE SELECT(10)", OUT, PRW, [0x11, 0, 0, 0, 0, 0, 0xff, 0xff, C]),
    op!(Reserve10, 0x56, None, "RESERVE(10)", NONE, PRX, [0, 0, 0, 0, 0, 0, 0, 0, C]),
    op!(Release10, 0x57, None, "RELEASE(10)", NONE, PRX, [0, 0, 0, 0, 0, 0, 0, 0, C]),
    op!(ModeSense10, 0x5a, None, "MODE SENSE(10)", IN, NOF, [0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, C]),
    op!(
        PersistentReserveIn,
        0x5e,
        Some(0),
        "PERSISTENT RESERVE IN (READ KEYS)",
        IN,
        PRX,
        [0x00, 0, 0, 0, 0, 0, 0xff, 0xff, C]
    ),
    op!(
        PersistentReserveIn,
        0x5e,
        Some(1),
        "PERSISTENT RESERVE IN (READ RESERVATION)",
        IN,
        PRX,
        [0x01, 0, 0, 0, 0, 0, 0xff, 0xff, C]
    ),
    op!(
        PersistentReserveIn,
        0x5e,
        Some(2),
        "PERSISTENT RESERVE IN (REPORT CAPABILITIES)",
        IN,
        PRX,
        [0x02, 0, 0, 0, 0, 0, 0xff, 0xff, C]
    ),
    op!(
        PersistentReserveIn,
        0x5e,
        Some(3),
        "PERSISTENT RESERVE IN (READ FULL STATUS)",
        IN,
        PRX,
        [0x03, 0, 0, 0, 0, 0, 0xff, 0xff, C]
    ),
    op!(
        PersistentReserveOut,
        0x5f,
        Some(0),
        "PERSISTENT RESERVE OUT (REGISTER)",
        OUT,
        PRA,
        [0x00, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, C]
    ),
    op!(
        PersistentReserveOut,
        0x5f,
        Some(1),
        "PERSISTENT RESERVE OUT (RESERVE)",
        OUT,
        PRA,
        [0x01, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, C]
    ),
    op!(
        PersistentReserveOut,
        0x5f,
        Some(2),
        "PERSISTENT RESERVE OUT (RELEASE)",
        OUT,
        PRA,
        [0x02, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, C]
    ),
    op!(
        PersistentReserveOut,
        0x5f,
        Some(3),
        "PERSISTENT RESERVE OUT (CLEAR)",
        OUT,
        PRA,
        [0x03, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, C]
    ),
    op!(
        PersistentReserveOut,
        0x5f,
        Some(4),
        "PERSISTENT RESERVE OUT (PREEMPT)",
        OUT,
        PRA,
        [0x04, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, C]
    ),
    op!(
        PersistentReserveOut,
        0x5f,
        Some(5),
        "PERSISTENT RESERVE OUT (PREEMPT AND ABORT)",
        OUT,
        PRA,
        [0x05, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, C]
    ),
    op!(
        PersistentReserveOut,
        0x5f,
        Some(6),
        "PERSISTENT RESERVE OUT (REGISTER AND IGNORE EXISTING KEY)",
        OUT,
        PRA,
        [0x06, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, C]
    ),
    op!(
        PersistentReserveOut,
        0x5f,
        Some(7),
        "PERSISTENT RESERVE OUT (REGISTER AND MOVE)",
        OUT,
        PRA,
        [0x07, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, C]
    ),
    // EXTENDED COPY (LID1) and its RECEIVE COPY RESULTS service actions.
    op!(
        ExtendedCopy,
        0x83,
        Some(0x00),
        "EXTENDED COPY(LID1)",
        OUT,
        OpFlags::WRITE,
        [0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, C]
    ),
    op!(
        ReceiveCopyResults,
        0x84,
        Some(0x00),
        "RECEIVE COPY RESULTS (COPY STATUS)",
        IN,
        NOF,
        [0x00, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, C]
    ),
    op!(
        ReceiveCopyResults,
        0x84,
        Some(0x03),
        "RECEIVE COPY RESULTS (OPERATING PARAMETERS)",
        IN,
        NOF,
        [0x03, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, C]
    ),
    op!(
        ReceiveCopyResults,
        0x84,
        Some(0x04),
        "RECEIVE COPY RESULTS (FAILED SEGMENT DETAILS)",
        IN,
        NOF,
        [0x04, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, C]
    ),
    op!(
        Read16,
        0x88,
        None,
        "READ(16)",
        IN,
        RD,
        [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, C]
    ),
    // COMPARE AND WRITE: DPO, FUA, FUA_NV accepted; NUMBER OF LOGICAL BLOCKS in byte 13.
    op!(
        CompareAndWrite,
        0x89,
        None,
        "COMPARE AND WRITE",
        OUT,
        WR,
        [0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x1f, C]
    ),
    op!(
        Write16,
        0x8a,
        None,
        "WRITE(16)",
        OUT,
        WR,
        [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, C]
    ),
    op!(
        OrWrite16,
        0x8b,
        None,
        "ORWRITE(16)",
        OUT,
        WR,
        [0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, C]
    ),
    op!(
        WriteVerify16,
        0x8e,
        None,
        "WRITE AND VERIFY(16)",
        OUT,
        WR,
        [0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, C]
    ),
    op!(
        Verify16,
        0x8f,
        None,
        "VERIFY(16)",
        OUT,
        RD,
        [0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, C]
    ),
    op!(
        Prefetch16,
        0x90,
        None,
        "PRE-FETCH(16)",
        NONE,
        RD,
        [0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, C]
    ),
    op!(
        SyncCache16,
        0x91,
        None,
        "SYNCHRONIZE CACHE(16)",
        NONE,
        RD.or(PRW),
        [0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, C]
    ),
    // WRITE SAME(16): UNMAP and NDOB (no Data-Out: zeros).
    op!(
        WriteSame16,
        0x93,
        None,
        "WRITE SAME(16)",
        OUT,
        WR,
        [0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, C]
    ),
    op!(
        WriteAtomic16,
        0x9c,
        None,
        "WRITE ATOMIC(16)",
        OUT,
        WR,
        [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0xff, 0xff, 0x1f, C]
    ),
    op!(
        ReadCapacity16,
        0x9e,
        Some(0x10),
        "READ CAPACITY(16)",
        IN,
        OpFlags::MEDIUM.or(PRA),
        [0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, C]
    ),
    op!(
        GetLbaStatus,
        0x9e,
        Some(0x12),
        "GET LBA STATUS",
        IN,
        OpFlags::MEDIUM,
        [0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, C]
    ),
    op!(ReportLuns, 0xa0, None, "REPORT LUNS", IN, NOLUN_UAX, [0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, C]),
    op!(
        ReportTargetPortGroups,
        0xa3,
        Some(0x0a),
        "REPORT TARGET PORT GROUPS",
        IN,
        PRA,
        [0xea, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, C]
    ),
    op!(
        ReportSupportedOpcodes,
        0xa3,
        Some(0x0c),
        "REPORT SUPPORTED OPERATION CODES",
        IN,
        NOF,
        [0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, C]
    ),
    op!(
        ReportSupportedTmf,
        0xa3,
        Some(0x0d),
        "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS",
        IN,
        NOF,
        [0x0d, 0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, C]
    ),
    op!(
        SetTargetPortGroups,
        0xa4,
        Some(0x0a),
        "SET TARGET PORT GROUPS",
        OUT,
        PRW,
        [0x0a, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, C]
    ),
    op!(Read12, 0xa8, None, "READ(12)", IN, RD, [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, C]),
    op!(Write12, 0xaa, None, "WRITE(12)", OUT, WR, [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, C]),
    op!(
        WriteVerify12,
        0xae,
        None,
        "WRITE AND VERIFY(12)",
        OUT,
        WR,
        [0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, C]
    ),
    op!(Verify12, 0xaf, None, "VERIFY(12)", OUT, RD, [0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, C]),
    op!(
        ReadDefectData12,
        0xb7,
        None,
        "READ DEFECT DATA(12)",
        IN,
        NOF,
        [0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, C]
    ),
];

/// The entry of a command a pass-through handler ([`crate::dev::PassThrough`]) forwards to its
/// device although [`DISK_OPS`] does not name it (tape, changer and vendor commands, service
/// actions the disk table lacks). The core does not check its CDB and classifies it, for
/// reservations, as a command that changes the logical unit (refused to non-holders by every
/// reservation type): the conservative choice for a command whose meaning the core does not
/// know.
pub static PASS_THROUGH: OpInfo = OpInfo {
    op: Op::PassThrough,
    opcode: 0,
    service_action: None,
    name: "PASS-THROUGH",
    usage: &[0],
    dir: DataDir::None,
    flags: OpFlags::PR_WRITE,
};

/// Whether `opcode` has service actions in `table` (then CDB byte 1 bits 4..0 select the entry).
pub fn has_service_actions(table: &[OpInfo], opcode: u8) -> bool {
    entries(table, opcode).iter().any(|o| o.service_action.is_some())
}

/// The entries of `opcode` in a table sorted by opcode: a binary search, since every command
/// goes through here.
fn entries(table: &[OpInfo], opcode: u8) -> &[OpInfo] {
    let first = table.partition_point(|o| o.opcode < opcode);
    let n = table[first..].iter().take_while(|o| o.opcode == opcode).count();
    &table[first..first + n]
}

/// Looks a CDB up in `table` (sorted by opcode, then service action).
///
/// # Errors
/// INVALID COMMAND OPERATION CODE for an unknown opcode (or an empty CDB); INVALID FIELD IN CDB
/// (byte 1) for an unknown service action of a known opcode.
pub fn lookup<'t>(table: &'t [OpInfo], cdb: &[u8]) -> Result<&'t OpInfo, Sense> {
    let opcode = *cdb.first().ok_or(Sense::invalid_opcode())?;
    let e = entries(table, opcode);
    match e.first() {
        None => Err(Sense::invalid_opcode()),
        Some(o) if o.service_action.is_none() => Ok(o),
        Some(_) => {
            let sa = cdb.get(1).map_or(0, |b| b & 0x1f);
            e.iter().find(|o| o.service_action == Some(sa)).ok_or(Sense::invalid_cdb(1, Some(4)))
        }
    }
}

/// Finds the entry for `opcode` (and `sa`, for opcodes with service actions) without a CDB.
pub fn find(table: &[OpInfo], opcode: u8, sa: Option<u8>) -> Option<&OpInfo> {
    entries(table, opcode).iter().find(|o| o.service_action.is_none() || o.service_action == sa)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::cdb::group_len;
    use crate::wire::sense::SenseCode;

    #[test]
    fn table_is_consistent() {
        let mut prev = (0u8, 0u8);
        for (i, o) in DISK_OPS.iter().enumerate() {
            assert_eq!(o.usage[0], o.opcode, "{}", o.name);
            assert_eq!(Some(o.cdb_len()), group_len(o.opcode), "{}: length vs group code", o.name);
            if let Some(sa) = o.service_action {
                assert_eq!(o.usage[1] & 0x1f, sa, "{}: usage must carry the service action", o.name);
            }
            let key = (o.opcode, o.service_action.unwrap_or(0));
            assert!(i == 0 || key > prev, "{} out of order", o.name);
            prev = key;
        }
    }

    #[test]
    fn lookup_and_field_checks() {
        let read10 = lookup(DISK_OPS, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap();
        assert_eq!(read10.op, Op::Read10);
        // RDPROTECT set (protection is not supported): the pointer is at the field's MSB.
        for rdprotect in 1..8u8 {
            let e = read10.check_cdb(&[0x28, rdprotect << 5, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap_err();
            assert_eq!(e, Sense::invalid_cdb(1, Some(7)));
        }
        // FUA_NV (byte 1 bit 1) is a field of its own.
        let e = read10.check_cdb(&[0x28, 0x02, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap_err();
        assert_eq!(e, Sense::invalid_cdb(1, Some(1)));
        // NACA in the control byte.
        let e = read10.check_cdb(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0x04]).unwrap_err();
        assert_eq!(e, Sense::invalid_cdb(9, Some(2)));
        // FUA and DPO are fine.
        read10.check_cdb(&[0x28, 0x18, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap();
        // Short CDB.
        assert!(read10.check_cdb(&[0x28, 0, 0]).is_err());
        // Unknown opcode; unknown service action of a known opcode.
        assert_eq!(lookup(DISK_OPS, &[0xee]).unwrap_err().code, SenseCode::INVALID_OPCODE);
        assert_eq!(lookup(DISK_OPS, &[0x9e, 0x1f]).unwrap_err(), Sense::invalid_cdb(1, Some(4)));
        assert_eq!(lookup(DISK_OPS, &[0x9e, 0x10]).unwrap().op, Op::ReadCapacity16);
    }
}
