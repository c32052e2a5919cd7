//! The command object and its pooled box.
//!
//! A [`Cmd`] is preallocated in its session's pool and moved by value ([`CmdBox`]) between the
//! stages of its life: the fabric that received it, the core, a device worker, the fabric again.
//! Exactly one stage owns it at a time, so "who may touch this command now" is answered by the
//! type system. Dropping a `CmdBox` at any stage releases everything the command holds (data
//! buffer, task-set slot, device reference) and returns the box to its session's pool: a fabric
//! whose connection died simply drops its commands.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

use crate::dev::Device;
use crate::ops::{DataDir, OpInfo};
use crate::session::Session;
use crate::sgv::SgBuf;
use crate::task_set::Token;
use crate::wire::cdb::MAX_CDB_LEN;
use crate::wire::lun::Lun;
use crate::wire::sense::{MAX_SENSE_LEN, Sense};

/// SAM-5 status codes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScsiStatus(pub u8);

impl ScsiStatus {
    /// GOOD.
    pub const GOOD: Self = Self(0x00);
    /// CHECK CONDITION: sense data describes the error.
    pub const CHECK_CONDITION: Self = Self(0x02);
    /// CONDITION MET (PRE-FETCH: the range fits in the cache).
    pub const CONDITION_MET: Self = Self(0x04);
    /// BUSY: try again later (e.g. the buffer memory limit was reached).
    pub const BUSY: Self = Self(0x08);
    /// RESERVATION CONFLICT.
    pub const RESERVATION_CONFLICT: Self = Self(0x18);
    /// TASK SET FULL: the session has too many commands outstanding.
    pub const TASK_SET_FULL: Self = Self(0x28);
    /// ACA ACTIVE.
    pub const ACA_ACTIVE: Self = Self(0x30);
    /// TASK ABORTED.
    pub const TASK_ABORTED: Self = Self(0x40);
}

impl fmt::Debug for ScsiStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Self::GOOD => "GOOD",
            Self::CHECK_CONDITION => "CHECK CONDITION",
            Self::CONDITION_MET => "CONDITION MET",
            Self::BUSY => "BUSY",
            Self::RESERVATION_CONFLICT => "RESERVATION CONFLICT",
            Self::TASK_SET_FULL => "TASK SET FULL",
            Self::ACA_ACTIVE => "ACA ACTIVE",
            Self::TASK_ABORTED => "TASK ABORTED",
            _ => return write!(f, "ScsiStatus({:#04x})", self.0),
        };
        f.write_str(name)
    }
}

/// SAM-5 task attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TaskAttr {
    /// May run in any order with other SIMPLE commands.
    #[default]
    Simple,
    /// Runs after every earlier command and before every later one.
    Ordered,
    /// Runs before every queued command.
    HeadOfQueue,
    /// Auto contingent allegiance (not supported: NormACA is 0).
    Aca,
}

/// What a fabric knows about a new command.
#[derive(Clone, Copy, Debug)]
pub struct CmdHeader<'a> {
    /// The 8-byte SAM LUN as received.
    pub lun: [u8; 8],
    /// The CDB (at most [`MAX_CDB_LEN`] bytes are kept).
    pub cdb: &'a [u8],
    /// Task attribute.
    pub attr: TaskAttr,
    /// The fabric's task tag (e.g. the iSCSI Initiator Task Tag), for task management.
    pub tag: u64,
    /// Expected data transfer length from the transport (iSCSI EDTL, SRP/FCP data length).
    pub expected_len: u32,
    /// Data direction the initiator announced.
    pub expected_dir: DataDir,
}

/// How a command ends when it does not end GOOD: CHECK CONDITION with sense data, or a status
/// without sense (BUSY when buffer memory runs out, RESERVATION CONFLICT, TASK SET FULL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    /// CHECK CONDITION with this sense.
    Check(Sense),
    /// This status, no sense data.
    Status(ScsiStatus),
}

impl From<Sense> for Fail {
    fn from(s: Sense) -> Self {
        Self::Check(s)
    }
}

impl From<crate::wire::sense::SenseCode> for Fail {
    fn from(c: crate::wire::sense::SenseCode) -> Self {
        Self::Check(Sense::new(c))
    }
}

impl Fail {
    /// BUSY: the buffer pool is at its memory limit; the initiator retries later.
    pub const BUSY: Self = Self::Status(ScsiStatus::BUSY);
    /// RESERVATION CONFLICT.
    pub const RESERVATION_CONFLICT: Self = Self::Status(ScsiStatus::RESERVATION_CONFLICT);
}

/// Where a handler runs a command's execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExecContext {
    /// On the submitting thread: the handler promises not to block (RAM, NULLIO, emulated SPC).
    #[default]
    Inline,
    /// On one of the device's worker threads: the backing store may block.
    Worker,
}

/// A parsed command: what the core needs to know before running it.
#[derive(Clone, Copy, Debug, Default)]
pub struct CmdInfo {
    /// Data direction of this command (for VERIFY it depends on BYTCHK).
    pub dir: DataDir,
    /// Bytes the CDB describes in `dir`: the allocation length for Data-In commands, the
    /// parameter list length or blocks × block size for Data-Out commands.
    pub data_len: u32,
    /// First LBA of a medium access.
    pub lba: u64,
    /// Number of logical blocks of a medium access.
    pub blocks: u64,
    /// FUA bit (write through to stable storage / read from the medium).
    pub fua: bool,
    /// Where `exec` runs.
    pub ctx: ExecContext,
    /// The command is well formed (the lengths above are right, so the transport can report
    /// residuals) but must end with this CHECK CONDITION without executing.
    pub fail: Option<Sense>,
}

/// Where a command's Data-In comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum DataIn {
    /// No Data-In (yet).
    #[default]
    None,
    /// The first `n` bytes of the buffer.
    Buf(u32),
    /// `n` zero bytes from a shared zero page (NULLIO reads: no memory is written).
    Zeros(u32),
    /// `len` bytes of the open file `fd` from byte `off`, resident in the page cache: sent
    /// from there without a copy ([`Cmd::data_in_file`]). The file belongs to the command's
    /// device, which the command keeps alive, so `fd` stays open while the command lives.
    File { fd: RawFd, off: u64, len: u32 },
}

/// Keeps the LBA range of a READ sent from a file safe from writes while the network still
/// references its pages ([`Cmd::take_data_in_hold`]); dropping it releases the range.
pub struct DataInHold {
    _range: crate::sbc::locks::OwnedRangeGuard,
}

impl fmt::Debug for DataInHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataInHold")
    }
}

/// A SCSI command. See the module docs for ownership.
pub struct Cmd {
    pub(crate) tag: u64,
    pub(crate) lun_raw: [u8; 8],
    pub(crate) lun: Option<Lun>,
    cdb: [u8; MAX_CDB_LEN],
    cdb_len: u8,
    pub(crate) attr: TaskAttr,
    pub(crate) expected_len: u32,
    pub(crate) expected_dir: DataDir,
    /// An opaque value the fabric may keep with the command (e.g. a connection-local index).
    pub fabric_cookie: u64,
    pub(crate) op: Option<&'static OpInfo>,
    pub(crate) info: CmdInfo,
    pub(crate) dev: Option<Arc<Device>>,
    pub(crate) read_only: bool,
    pub(crate) buf: Option<SgBuf>,
    pub(crate) data_in: DataIn,
    /// Data-In bytes the command produced before truncation to the allocation length or the
    /// transport's expected length (for residuals).
    pub(crate) produced: u32,
    pub(crate) status: ScsiStatus,
    sense: [u8; MAX_SENSE_LEN],
    sense_len: u8,
    pub(crate) sess: Option<Arc<Session>>,
    pub(crate) token: Token,
    pub(crate) slot: u16,
    /// When the core received the command (set only while statistics are on).
    pub(crate) received: Option<std::time::Instant>,
    /// Whose counters count this command as received, so that its completion or abandonment
    /// must be counted too ([`IN_FLIGHT_SESSION`], [`IN_FLIGHT_DEVICE`]).
    pub(crate) in_flight: u8,
    /// The fabric can send this command's Data-In straight from a file
    /// ([`Cmd::allow_file_data_in`]).
    pub(crate) file_ok: bool,
    /// The LBA range a READ sent from a file holds against writes until the initiator has the
    /// bytes ([`Cmd::take_data_in_hold`]; released with the command otherwise).
    pub(crate) range: Option<DataInHold>,
}

/// [`Cmd::in_flight`]: the session counted the command as received (counting was on).
pub(crate) const IN_FLIGHT_SESSION: u8 = 1;
/// [`Cmd::in_flight`]: the device counted the command as received (counting was on).
pub(crate) const IN_FLIGHT_DEVICE: u8 = 2;

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cmd")
            .field("tag", &self.tag)
            .field("lun", &self.lun)
            .field("cdb", &self.cdb())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Cmd {
    pub(crate) fn new(slot: u16) -> Self {
        Self {
            tag: 0,
            lun_raw: [0; 8],
            lun: None,
            cdb: [0; MAX_CDB_LEN],
            cdb_len: 0,
            attr: TaskAttr::Simple,
            expected_len: 0,
            expected_dir: DataDir::None,
            fabric_cookie: 0,
            op: None,
            info: CmdInfo::default(),
            dev: None,
            read_only: false,
            buf: None,
            data_in: DataIn::None,
            produced: 0,
            status: ScsiStatus::GOOD,
            sense: [0; MAX_SENSE_LEN],
            sense_len: 0,
            sess: None,
            token: Token::None,
            slot,
            received: None,
            in_flight: 0,
            file_ok: false,
            range: None,
        }
    }

    pub(crate) fn init(&mut self, hdr: &CmdHeader<'_>, sess: Arc<Session>) {
        let n = hdr.cdb.len().min(MAX_CDB_LEN);
        self.cdb[..n].copy_from_slice(&hdr.cdb[..n]);
        self.cdb[n..].fill(0);
        self.cdb_len = n as u8;
        self.tag = hdr.tag;
        self.lun_raw = hdr.lun;
        self.lun = Lun::from_sam(hdr.lun);
        self.attr = hdr.attr;
        self.expected_len = hdr.expected_len;
        self.expected_dir = hdr.expected_dir;
        if crate::stats::enabled() {
            self.received = Some(crate::stats::receipt_time());
        }
        self.sess = Some(sess);
    }

    /// Clears everything a finished command holds, keeping the allocation for the next one.
    pub(crate) fn reset(&mut self) {
        self.fabric_cookie = 0;
        self.op = None;
        self.info = CmdInfo::default();
        self.dev = None;
        self.read_only = false;
        self.buf = None;
        self.data_in = DataIn::None;
        self.range = None;
        self.produced = 0;
        self.status = ScsiStatus::GOOD;
        self.sense_len = 0;
        self.token = Token::None;
        self.received = None;
        self.in_flight = 0;
        self.file_ok = false;
    }

    /// The CDB.
    pub fn cdb(&self) -> &[u8] {
        &self.cdb[..self.cdb_len as usize]
    }

    /// The CDB padded with zeros to [`MAX_CDB_LEN`] (handlers index fixed offsets in it).
    pub(crate) fn cdb_padded(&self) -> &[u8; MAX_CDB_LEN] {
        &self.cdb
    }

    /// The fabric's task tag.
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// The LUN, when its address is one this target uses.
    pub fn lun(&self) -> Option<Lun> {
        self.lun
    }

    /// The LUN bytes as received.
    pub fn lun_raw(&self) -> [u8; 8] {
        self.lun_raw
    }

    /// Task attribute.
    pub fn attr(&self) -> TaskAttr {
        self.attr
    }

    /// The transport's expected data transfer length.
    pub fn expected_len(&self) -> u32 {
        self.expected_len
    }

    /// The direction the initiator announced.
    pub fn expected_dir(&self) -> DataDir {
        self.expected_dir
    }

    /// The opcode table entry, once parsed.
    pub fn op(&self) -> Option<&'static OpInfo> {
        self.op
    }

    /// The parse result.
    pub fn info(&self) -> &CmdInfo {
        &self.info
    }

    /// The device the command addresses, once resolved.
    pub fn device(&self) -> Option<&Arc<Device>> {
        self.dev.as_ref()
    }

    /// The session (I_T nexus) the command came from.
    ///
    /// # Panics
    /// Never for a command obtained from [`Session::alloc_cmd`].
    pub fn session(&self) -> &Arc<Session> {
        self.sess.as_ref().expect("command without a session")
    }

    /// Whether the LUN is mapped read-only for this nexus (or the device is read-only).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The data buffer: Data-Out lands here, Data-In is produced here.
    pub fn buf(&self) -> Option<&SgBuf> {
        self.buf.as_ref()
    }

    /// The data buffer, mutably.
    pub fn buf_mut(&mut self) -> Option<&mut SgBuf> {
        self.buf.as_mut()
    }

    /// Bytes of Data-Out the core wants from the initiator (0 when none). The fabric receives
    /// this many bytes into [`Cmd::buf_mut`] at offset 0 before calling
    /// [`Session::data_received`]; extra bytes the initiator sends beyond it are discarded.
    pub fn data_out_len(&self) -> usize {
        match self.info.dir {
            DataDir::Out => self.buf.as_ref().map_or(0, SgBuf::len),
            _ => 0,
        }
    }

    /// Bytes of Data-In to send (already truncated to the transport's expected length).
    pub fn data_in_len(&self) -> usize {
        match self.data_in {
            DataIn::None => 0,
            DataIn::Buf(n) | DataIn::Zeros(n) | DataIn::File { len: n, .. } => (n.min(self.expected_len)) as usize,
        }
    }

    /// Declares that the fabric can send this command's Data-In from a file
    /// ([`Cmd::data_in_file`], with `sendfile`) as well as from memory. Then a READ whose data is
    /// in the page cache may complete without copying it: the core names the file range
    /// instead of filling the buffer. A fabric that never calls this always gets memory.
    pub fn allow_file_data_in(&mut self) {
        self.file_ok = true;
    }

    /// Whether the fabric allowed Data-In from a file ([`Cmd::allow_file_data_in`]).
    pub fn file_data_in_allowed(&self) -> bool {
        self.file_ok
    }

    /// When the Data-In is a file range (only if the fabric allowed it): the open file and the
    /// file offset of Data-In byte 0; the length is [`Cmd::data_in_len`]. The fabric sends the
    /// bytes from the file (`sendfile`); [`Cmd::data_in_slices`] has no slices for them. The
    /// descriptor belongs to the command's device and stays open while the command lives.
    pub fn data_in_file(&self) -> Option<(RawFd, u64)> {
        match self.data_in {
            DataIn::File { fd, off, .. } => Some((fd, off)),
            _ => None,
        }
    }

    /// Declares `n` bytes of Data-In that are bytes `off..off + n` of the open file `fd` (in the
    /// page cache), holding `range` until they are sent. Only when the fabric allowed it, and
    /// `fd` must belong to the command's device.
    pub(crate) fn set_data_in_file(
        &mut self,
        fd: BorrowedFd<'_>,
        off: u64,
        n: usize,
        range: crate::sbc::locks::OwnedRangeGuard,
    ) {
        debug_assert!(self.file_ok && self.dev.is_some());
        self.data_in = DataIn::File { fd: fd.as_raw_fd(), off, len: n as u32 };
        self.range = Some(DataInHold { _range: range });
        self.produced = n as u32;
    }

    /// Takes what keeps a Data-In from a file ([`Cmd::data_in_file`]) valid after the command
    /// is freed. `sendfile` leaves references to the page cache in the socket, not copies: until
    /// the initiator has received the bytes (TCP: acknowledged them), a write to the range would
    /// change the bytes on the wire. The fabric takes the hold when the command's output has
    /// gone into the socket and drops it once the peer has it; the command itself can be freed
    /// (its task ends, its slot is reused) meanwhile. Writes overlapping the range wait for the
    /// hold; reads do not. A fabric that never takes it releases the range with the command.
    pub fn take_data_in_hold(&mut self) -> Option<DataInHold> {
        self.range.take()
    }

    /// Whether the Data-In is all zeros and not backed by the buffer (send from a zero page).
    pub fn data_in_is_zeros(&self) -> bool {
        matches!(self.data_in, DataIn::Zeros(_))
    }

    /// Fills `out` with slices covering Data-In bytes `[off, off + len)` and returns how many it
    /// used. Zero-filled Data-In is served from a static zero page. Data-In from a file
    /// ([`Cmd::data_in_file`]) has no slices: this returns 0 for it.
    ///
    /// # Panics
    /// If the range exceeds [`Cmd::data_in_len`] or `out` has fewer than
    /// [`crate::sgv::MAX_SEGS`] entries.
    pub fn data_in_slices<'a>(&'a self, off: usize, len: usize, out: &mut [std::io::IoSlice<'a>]) -> usize {
        assert!(off + len <= self.data_in_len(), "Data-In range out of bounds");
        match (&self.data_in, &self.buf) {
            (DataIn::Buf(_), Some(b)) => b.io_slices(off, len, out),
            (DataIn::Zeros(_), _) => {
                let mut n = 0;
                let mut left = len;
                let zeros = crate::sgv::zeros();
                while left > 0 {
                    let k = left.min(zeros.len());
                    out[n] = std::io::IoSlice::new(&zeros[..k]);
                    n += 1;
                    left -= k;
                }
                n
            }
            _ => 0,
        }
    }

    /// The residual the transport reports: `(overflow, count)`.
    ///
    /// For Data-In the comparison is between what the command produced and the expected length;
    /// for Data-Out between what the CDB asked for and the expected length. `overflow` is true
    /// when the command wanted more than the initiator's buffer holds.
    pub fn residual(&self) -> (bool, u32) {
        let want = match self.op.map(|_| self.info.dir) {
            Some(DataDir::In) => self.produced,
            Some(DataDir::Out) => self.info.data_len,
            _ => 0,
        };
        let exp = self.expected_len;
        if want > exp { (true, want - exp) } else { (false, exp - want) }
    }

    /// Final SCSI status.
    pub fn status(&self) -> ScsiStatus {
        self.status
    }

    /// Sense data (empty unless the status is CHECK CONDITION).
    pub fn sense(&self) -> &[u8] {
        &self.sense[..self.sense_len as usize]
    }

    /// Whether a task management function aborted this command: the fabric then sends no
    /// response for it (SAM-5 §7.1), unless [`Cmd::answers_task_aborted`].
    pub fn is_aborted(&self) -> bool {
        self.sess.as_ref().is_some_and(|s| s.slots().is_aborted(self.slot))
    }

    /// Whether this aborted command must be answered with TASK ABORTED status and nothing else
    /// (no data, no sense): another I_T nexus's CLEAR TASK SET, LOGICAL UNIT RESET, target reset
    /// or PREEMPT AND ABORT aborted it while the LU's TAS bit was set (SAM-5 §5.6). Commands
    /// that were waiting for Data-Out when aborted are dropped without a response.
    pub fn answers_task_aborted(&self) -> bool {
        self.sess.as_ref().is_some_and(|s| s.slots().answers_task_aborted(self.slot))
    }

    /// Ends the command with CHECK CONDITION and `sense`, in the format the device's D_SENSE
    /// asks for, and discards any Data-In.
    pub fn check_condition(&mut self, sense: impl Into<Sense>) {
        let sense = sense.into();
        let descriptor = self.dev.as_ref().is_some_and(|d| d.d_sense());
        self.sense_len = sense.write(descriptor, &mut self.sense) as u8;
        self.status = ScsiStatus::CHECK_CONDITION;
        self.data_in = DataIn::None;
        self.range = None;
        self.produced = 0;
    }

    /// Ends the command with the status and sense bytes a real device returned (pass-through
    /// handlers): the sense is kept as the device wrote it, cut to [`MAX_SENSE_LEN`] bytes. Any
    /// Data-In declared so far is kept unless the status is CHECK CONDITION.
    pub fn set_device_status(&mut self, status: ScsiStatus, sense: &[u8]) {
        let n = sense.len().min(MAX_SENSE_LEN);
        self.sense[..n].copy_from_slice(&sense[..n]);
        self.sense_len = n as u8;
        self.status = status;
        if status == ScsiStatus::CHECK_CONDITION {
            self.data_in = DataIn::None;
            self.range = None;
            self.produced = 0;
        }
    }

    /// Ends the command with `status` and no sense data.
    pub fn set_status(&mut self, status: ScsiStatus) {
        self.status = status;
        self.sense_len = 0;
    }

    /// Ends the command as `f` says.
    pub fn fail(&mut self, f: Fail) {
        match f {
            Fail::Check(s) => self.check_condition(s),
            Fail::Status(st) => {
                self.set_status(st);
                self.data_in = DataIn::None;
                self.range = None;
                self.produced = 0;
            }
        }
    }

    /// Applies a handler result: GOOD, or what the failure says.
    pub fn complete_with(&mut self, r: Result<(), Fail>) {
        match r {
            Ok(()) => self.set_status(ScsiStatus::GOOD),
            Err(f) => self.fail(f),
        }
    }

    /// Makes sure the command has a buffer of at least `len` bytes (Data-In commands get theirs
    /// lazily, when the handler knows how much it will produce).
    pub(crate) fn ensure_buf(&mut self, len: usize) -> Result<&mut SgBuf, Fail> {
        if self.buf.as_ref().is_none_or(|b| b.len() < len) {
            self.buf = None;
            let sess = self.sess.as_ref().ok_or(Fail::from(crate::wire::sense::SenseCode::INTERNAL_TARGET_FAILURE))?;
            match sess.sgv().alloc(len) {
                Ok(b) => self.buf = Some(b),
                // Out of buffer memory (or a request larger than any buffer): BUSY, retry later.
                Err(_) => return Err(Fail::BUSY),
            }
        }
        Ok(self.buf.as_mut().expect("buffer just ensured"))
    }

    /// Writes a complete Data-In response that the handler built in `data`, truncated to the
    /// allocation length (truncation is not an overflow: the residual compares the truncated
    /// length with the transport's expected length).
    ///
    /// # Errors
    /// BUSY when no buffer memory is left.
    pub fn respond(&mut self, data: &[u8], alloc_len: usize) -> Result<(), Fail> {
        let n = data.len().min(alloc_len);
        let buf = self.ensure_buf(n)?;
        buf.write_at(0, &data[..n]);
        self.data_in = DataIn::Buf(n as u32);
        self.produced = n as u32;
        Ok(())
    }

    /// Declares that the first `n` bytes of the buffer are Data-In (after a read into it).
    pub fn set_data_in(&mut self, n: usize) {
        self.data_in = DataIn::Buf(n as u32);
        self.produced = n as u32;
    }

    /// Declares `n` bytes of zero Data-In without touching memory (NULLIO reads).
    pub fn set_data_in_zeros(&mut self, n: usize) {
        self.data_in = DataIn::Zeros(n as u32);
        self.produced = n as u32;
    }

    /// A Data-In buffer of `len` bytes for the handler to fill (e.g. a READ's destination).
    ///
    /// # Errors
    /// BUSY when no buffer memory is left.
    pub fn data_in_buf(&mut self, len: usize) -> Result<&mut SgBuf, Fail> {
        self.ensure_buf(len)
    }
}

/// An owned, pooled [`Cmd`]. Dereferences to the command; dropping it returns the command to its
/// session's pool after releasing its buffer, task-set slot and device reference.
pub struct CmdBox(Option<Box<Cmd>>);

impl CmdBox {
    pub(crate) fn from_box(b: Box<Cmd>) -> Self {
        Self(Some(b))
    }
}

impl fmt::Debug for CmdBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl Deref for CmdBox {
    type Target = Cmd;
    fn deref(&self) -> &Cmd {
        self.0.as_deref().expect("CmdBox used after release")
    }
}

impl DerefMut for CmdBox {
    fn deref_mut(&mut self) -> &mut Cmd {
        self.0.as_deref_mut().expect("CmdBox used after release")
    }
}

impl Drop for CmdBox {
    fn drop(&mut self) {
        let Some(mut cmd) = self.0.take() else { return };
        // Leave the task set now that the response went out (or the command was abandoned), and
        // let the device's workers run whatever that unblocks (never this thread: the fabric may
        // hold locks here).
        if cmd.token != Token::None
            && let Some(dev) = cmd.dev.clone()
        {
            for c in dev.task_set.leave(cmd.token) {
                dev.defer(c);
            }
        }
        cmd.token = Token::None;
        // Dropped without completing (aborted, or its connection went away).
        crate::exec::abandon(&mut cmd);
        let sess = cmd.sess.take();
        cmd.reset();
        if let Some(sess) = sess {
            sess.release_cmd(cmd);
        }
    }
}
