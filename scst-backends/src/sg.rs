//! SCSI pass-through over a Linux SCSI generic node (`/dev/sgN`): [`SgDevice`].
//!
//! The device's peripheral type, vendor and product come from its own INQUIRY; every command the
//! core does not keep for itself (see [`scst::PassThrough`]) goes to the device unchanged, with
//! the transport's data direction and length. Data moves between the device and the command's
//! SGV segments through an `sg_io_hdr` whose `dxferp` points at an iovec array describing those
//! segments (`iovec_count` > 0): the target makes no copy of its own. (The sg driver itself
//! stages iovec transfers through its kernel buffers; only a bsg node maps user pages directly.)
//!
//! Concurrency: the sg driver's asynchronous interface. [`DeviceHandler::start`] writes the
//! request (`write()` of an `sg_io_hdr` whose `pack_id` is a slot of the in-flight table) on the
//! submitting fabric thread; one completion thread per device polls the node, `read()`s
//! finished requests and hands the commands back to the core ([`scst::complete`]). So a command
//! crosses one thread boundary, and up to 16 (the sg driver's per-descriptor queue) are in flight
//! on that descriptor. When the table is full, a second descriptor serves commands with the
//! blocking `SG_IO` ioctl on the device's worker threads (`DeviceConfig::threads` more in
//! flight), as it does for commands released from the task set and for the INQUIRY at open.
//! A device that goes away (`ENODEV`) fails its in-flight commands with LOGICAL UNIT NOT
//! SUPPORTED and every later one the same way.
//!
//! Status mapping ([`map_completion`], [`map_errno`]):
//!
//! | what SG_IO reports | the initiator gets |
//! |---|---|
//! | the device's status (GOOD, CHECK CONDITION with sense, BUSY, RESERVATION CONFLICT, TASK SET FULL, ...) | that status and the sense bytes as the device wrote them (up to 32) |
//! | CHECK CONDITION without sense | CHECK CONDITION, ABORTED COMMAND (retryable) |
//! | `DID_TIME_OUT`, `DRIVER_TIMEOUT` | CHECK CONDITION, ABORTED COMMAND / LOGICAL UNIT COMMUNICATION TIME-OUT |
//! | `DID_NO_CONNECT`, `DID_BAD_TARGET`; `ENODEV`, `ENXIO` (device deleted) | CHECK CONDITION, ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED |
//! | `DID_ABORT`, `DID_RESET` | CHECK CONDITION, ABORTED COMMAND |
//! | `DID_BUS_BUSY`, `DID_SOFT_ERROR`, `DID_IMM_RETRY`, `DID_REQUEUE`, `DID_TRANSPORT_DISRUPTED`, `DRIVER_BUSY`, `DRIVER_SOFT`; `EAGAIN`, `EBUSY`, `EDOM`, `ENOMEM`, `EINTR` | BUSY |
//! | `DID_NEXUS_FAILURE` without sense | RESERVATION CONFLICT |
//! | `DID_MEDIUM_ERROR` without sense | CHECK CONDITION, MEDIUM ERROR |
//! | `DID_ERROR`, `DID_PARITY`, `DID_BAD_INTR` without sense | CHECK CONDITION, ABORTED COMMAND / LOGICAL UNIT COMMUNICATION FAILURE |
//! | anything else | CHECK CONDITION, HARDWARE ERROR / INTERNAL TARGET FAILURE |
//!
//! A host code the SCSI midlayer derived from the device's own sense (`DID_TARGET_FAILURE`,
//! `DID_NEXUS_FAILURE`, `DID_MEDIUM_ERROR`) does not hide that sense: when the device returned
//! CHECK CONDITION with sense, the sense goes to the initiator. Data-In is what the device
//! transferred: the expected length less the driver's residual.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use scst::ops::OpInfo;
use scst::{
    Cmd, CmdBox, CmdInfo, DataDir, Device, DeviceHandler, PassThrough, ScsiStatus, Sense, SenseCode, SenseKey, TmHold,
};

use crate::OpenError;

// ------------------------------------------------------------------------------------------------
// sg.h
// ------------------------------------------------------------------------------------------------

/// `struct sg_io_hdr` of `<scsi/sg.h>` (interface version 3).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SgIoHdr {
    interface_id: libc::c_int,
    dxfer_direction: libc::c_int,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: libc::c_ushort,
    dxfer_len: libc::c_uint,
    dxferp: *mut libc::c_void,
    cmdp: *const u8,
    sbp: *mut u8,
    timeout: libc::c_uint,
    flags: libc::c_uint,
    pack_id: libc::c_int,
    usr_ptr: *mut libc::c_void,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: libc::c_ushort,
    driver_status: libc::c_ushort,
    resid: libc::c_int,
    duration: libc::c_uint,
    info: libc::c_uint,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<SgIoHdr>() == 88, "sizeof(sg_io_hdr_t) on LP64");

const SG_IO: libc::Ioctl = 0x2285;
const SG_SCSI_RESET: libc::Ioctl = 0x2284;
const SG_GET_VERSION_NUM: libc::Ioctl = 0x2282;
const SG_SET_COMMAND_Q: libc::Ioctl = 0x2271;
const SG_SCSI_RESET_DEVICE: libc::c_int = 1;

const SG_DXFER_NONE: libc::c_int = -1;
const SG_DXFER_TO_DEV: libc::c_int = -2;
const SG_DXFER_FROM_DEV: libc::c_int = -3;

/// Host (adapter) codes of `host_status` (`DID_*` of the kernel's `scsi.h`).
#[allow(missing_docs)]
pub mod host {
    pub const DID_OK: u16 = 0x00;
    pub const DID_NO_CONNECT: u16 = 0x01;
    pub const DID_BUS_BUSY: u16 = 0x02;
    pub const DID_TIME_OUT: u16 = 0x03;
    pub const DID_BAD_TARGET: u16 = 0x04;
    pub const DID_ABORT: u16 = 0x05;
    pub const DID_PARITY: u16 = 0x06;
    pub const DID_ERROR: u16 = 0x07;
    pub const DID_RESET: u16 = 0x08;
    pub const DID_BAD_INTR: u16 = 0x09;
    pub const DID_SOFT_ERROR: u16 = 0x0b;
    pub const DID_IMM_RETRY: u16 = 0x0c;
    pub const DID_REQUEUE: u16 = 0x0d;
    pub const DID_TRANSPORT_DISRUPTED: u16 = 0x0e;
    pub const DID_TARGET_FAILURE: u16 = 0x10;
    pub const DID_NEXUS_FAILURE: u16 = 0x11;
    pub const DID_MEDIUM_ERROR: u16 = 0x13;
}

/// Driver codes of `driver_status` (low nibble; the high nibble holds obsolete suggestions).
#[allow(missing_docs)]
pub mod driver {
    pub const DRIVER_OK: u16 = 0x00;
    pub const DRIVER_BUSY: u16 = 0x01;
    pub const DRIVER_SOFT: u16 = 0x02;
    pub const DRIVER_TIMEOUT: u16 = 0x06;
    pub const DRIVER_SENSE: u16 = 0x08;
}

/// ABORTED COMMAND / LOGICAL UNIT COMMUNICATION FAILURE.
pub const LU_COMMUNICATION_FAILURE: SenseCode = SenseCode { key: SenseKey::ABORTED_COMMAND, asc: 0x08, ascq: 0x00 };
/// ABORTED COMMAND / LOGICAL UNIT COMMUNICATION TIME-OUT.
pub const LU_COMMUNICATION_TIMEOUT: SenseCode = SenseCode { key: SenseKey::ABORTED_COMMAND, asc: 0x08, ascq: 0x01 };
/// MEDIUM ERROR without further information.
pub const MEDIUM_ERROR: SenseCode = SenseCode { key: SenseKey::MEDIUM_ERROR, asc: 0x00, ascq: 0x00 };

/// Bytes of sense the driver may return (SPC's maximum).
const SENSE_BUF: usize = 252;

// ------------------------------------------------------------------------------------------------
// Pure parts: requests, timeouts, status mapping
// ------------------------------------------------------------------------------------------------

/// Data direction of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SgDir {
    None,
    ToDevice,
    FromDevice,
}

/// Builds the request header for `cdb` with data described by `count` iovecs at `iov` totalling
/// `len` bytes, sense into `sense`. Only stores pointers: nothing is dereferenced here.
pub(crate) fn request(
    cdb: &[u8],
    dir: SgDir,
    iov: *const libc::iovec,
    count: usize,
    len: usize,
    sense: &mut [u8],
    timeout: Duration,
) -> SgIoHdr {
    let (dxfer_direction, iovec_count, dxfer_len, dxferp) = match dir {
        _ if len == 0 || count == 0 => (SG_DXFER_NONE, 0, 0, std::ptr::null_mut()),
        SgDir::None => (SG_DXFER_NONE, 0, 0, std::ptr::null_mut()),
        SgDir::ToDevice => (SG_DXFER_TO_DEV, count, len, iov.cast_mut().cast()),
        SgDir::FromDevice => (SG_DXFER_FROM_DEV, count, len, iov.cast_mut().cast()),
    };
    SgIoHdr {
        interface_id: libc::c_int::from(b'S'),
        dxfer_direction,
        cmd_len: cdb.len().min(255) as u8,
        mx_sb_len: sense.len().min(255) as u8,
        iovec_count: iovec_count.min(usize::from(u16::MAX)) as libc::c_ushort,
        dxfer_len: dxfer_len.min(u32::MAX as usize) as libc::c_uint,
        dxferp,
        cmdp: cdb.as_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: timeout.as_millis().min(u128::from(u32::MAX - 1)) as libc::c_uint,
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    }
}

/// Command timeouts by class. A timeout only limits how long a hung command is waited for, so
/// the long class is generous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgTimeouts {
    /// READ, WRITE and everything not in the long class. Default 30 s.
    pub normal: Duration,
    /// Commands that legitimately take minutes ([`is_long_op`]). Default 30 min.
    pub long: Duration,
}

impl Default for SgTimeouts {
    fn default() -> Self {
        Self { normal: Duration::from_secs(30), long: Duration::from_secs(30 * 60) }
    }
}

impl SgTimeouts {
    /// The timeout of a command with operation code `opcode`.
    pub fn for_opcode(&self, opcode: u8) -> Duration {
        if is_long_op(opcode) { self.long } else { self.normal }
    }
}

/// Whether a command may take minutes on some device type: FORMAT UNIT / FORMAT MEDIUM, REWIND,
/// REASSIGN BLOCKS / INITIALIZE ELEMENT STATUS, WRITE FILEMARKS, SPACE, ERASE, START STOP UNIT /
/// LOAD UNLOAD, LOCATE / SEEK, SYNCHRONIZE CACHE, INITIALIZE ELEMENT STATUS WITH RANGE, WRITE
/// BUFFER (firmware), WRITE SAME, UNMAP, SANITIZE, EXTENDED COPY, LOCATE(16) / SPACE(16),
/// MOVE MEDIUM, EXCHANGE MEDIUM, READ ELEMENT STATUS. The table is by opcode across device
/// types: a longer timeout never fails a command that completes.
pub const fn is_long_op(opcode: u8) -> bool {
    matches!(
        opcode,
        0x01 | 0x04
            | 0x07
            | 0x10
            | 0x11
            | 0x19
            | 0x1b
            | 0x2b
            | 0x35
            | 0x37
            | 0x3b
            | 0x41
            | 0x42
            | 0x48
            | 0x83
            | 0x91
            | 0x92
            | 0x93
            | 0xa5
            | 0xa6
            | 0xb8
            | 0xe7
    )
}

/// How a command ends, from what SG_IO reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgOutcome {
    /// The device's status, with the sense bytes the driver returned (if any), unchanged.
    Device(ScsiStatus),
    /// A status of the target's, without sense.
    Status(ScsiStatus),
    /// CHECK CONDITION with sense of the target's.
    Check(SenseCode),
}

/// Maps a completed request's `status`, `host_status`, `driver_status` and sense length to what
/// the initiator gets (the table in the module documentation).
pub fn map_completion(status: u8, host_status: u16, driver_status: u16, sense_len: u8) -> SgOutcome {
    use host::*;
    let status = status & 0xfe;
    let drv = driver_status & 0x0f;
    let device_sense = status == ScsiStatus::CHECK_CONDITION.0 && sense_len > 0;
    match host_status {
        DID_TIME_OUT => return SgOutcome::Check(LU_COMMUNICATION_TIMEOUT),
        DID_NO_CONNECT | DID_BAD_TARGET => return SgOutcome::Check(SenseCode::LUN_NOT_SUPPORTED),
        DID_ABORT | DID_RESET => return SgOutcome::Check(SenseCode::ABORTED_COMMAND),
        DID_BUS_BUSY | DID_SOFT_ERROR | DID_IMM_RETRY | DID_REQUEUE | DID_TRANSPORT_DISRUPTED => {
            return SgOutcome::Status(ScsiStatus::BUSY);
        }
        _ => {}
    }
    if drv == driver::DRIVER_TIMEOUT {
        return SgOutcome::Check(LU_COMMUNICATION_TIMEOUT);
    }
    if device_sense {
        return SgOutcome::Device(ScsiStatus::CHECK_CONDITION);
    }
    match host_status {
        DID_OK => {}
        DID_NEXUS_FAILURE => return SgOutcome::Status(ScsiStatus::RESERVATION_CONFLICT),
        DID_MEDIUM_ERROR => return SgOutcome::Check(MEDIUM_ERROR),
        DID_ERROR | DID_PARITY | DID_BAD_INTR => return SgOutcome::Check(LU_COMMUNICATION_FAILURE),
        _ => return SgOutcome::Check(SenseCode::INTERNAL_TARGET_FAILURE),
    }
    match drv {
        driver::DRIVER_OK | driver::DRIVER_SENSE => {}
        driver::DRIVER_BUSY | driver::DRIVER_SOFT => return SgOutcome::Status(ScsiStatus::BUSY),
        _ => return SgOutcome::Check(SenseCode::INTERNAL_TARGET_FAILURE),
    }
    if status == ScsiStatus::CHECK_CONDITION.0 {
        // CHECK CONDITION without sense: the initiator can only retry.
        return SgOutcome::Check(SenseCode::ABORTED_COMMAND);
    }
    SgOutcome::Device(ScsiStatus(status))
}

/// Maps a failed `SG_IO` call (the request never completed on the device) to what the
/// initiator gets.
pub fn map_errno(errno: i32) -> SgOutcome {
    match errno {
        libc::ENODEV | libc::ENXIO | libc::ENOENT => SgOutcome::Check(SenseCode::LUN_NOT_SUPPORTED),
        libc::EAGAIN | libc::EBUSY | libc::EDOM | libc::ENOMEM | libc::EINTR => SgOutcome::Status(ScsiStatus::BUSY),
        _ => SgOutcome::Check(SenseCode::INTERNAL_TARGET_FAILURE),
    }
}

/// Data-In bytes a request of `len` bytes delivered, given the driver's residual (clamped: a
/// driver's negative or oversized residual never makes the target send bytes that were not
/// transferred).
pub fn transferred(len: usize, resid: i32) -> usize {
    len - usize::try_from(resid.max(0)).unwrap_or(usize::MAX).min(len)
}

/// The identity a standard INQUIRY reports: peripheral device type, vendor and product.
///
/// # Errors
/// When the data is too short or the peripheral qualifier says no logical unit is connected.
pub fn parse_inquiry(d: &[u8]) -> Result<(u8, String, String), String> {
    if d.len() < 32 {
        return Err(format!("INQUIRY returned {} bytes", d.len()));
    }
    if d[0] >> 5 != 0 {
        return Err(format!("peripheral qualifier {} (no logical unit connected)", d[0] >> 5));
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    Ok((d[0] & 0x1f, text(&d[8..16]), text(&d[16..32])))
}

// ------------------------------------------------------------------------------------------------
// The handler
// ------------------------------------------------------------------------------------------------

/// Options of an [`SgDevice`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SgOptions {
    /// Command timeouts.
    pub timeouts: SgTimeouts,
    /// Forward RESERVE/RELEASE and PERSISTENT RESERVE IN/OUT to the device instead of letting
    /// the core emulate them (see [`scst::PassThrough::forward_reservations`]).
    pub forward_reservations: bool,
    /// Only the blocking `SG_IO` on worker threads, no asynchronous submissions.
    pub synchronous: bool,
}

/// A pass-through device over a SCSI generic node.
#[derive(Debug)]
pub struct SgDevice {
    file: Arc<File>,
    queue: Option<Arc<AsyncQueue>>,
    path: String,
    device_type: u8,
    vendor: String,
    product: String,
    opts: SgOptions,
}

impl SgDevice {
    /// Opens `path` (`/dev/sgN`, or a SCSI block device, which accepts SG_IO too) and reads the
    /// device's identity with INQUIRY.
    ///
    /// # Errors
    /// If the node cannot be opened, is not a SCSI generic device, or INQUIRY fails.
    pub fn open(path: &Path, opts: SgOptions) -> Result<Self, OpenError> {
        let name = path.display().to_string();
        let err = |source: io::Error| OpenError::Io { path: name.clone(), source };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(err)?;
        let mut version: libc::c_int = 0;
        // SAFETY: SG_GET_VERSION_NUM writes one int through the pointer, which points at a live
        // `c_int`; the fd is open for the duration of the call.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), SG_GET_VERSION_NUM, &raw mut version) };
        if r < 0 || version < 30000 {
            return Err(err(io::Error::new(io::ErrorKind::InvalidInput, "not a SCSI generic (sg v3) device")));
        }
        let mut d = [0u8; 96];
        let cdb = [0x12, 0, 0, 0, 96, 0];
        let mut sense = [0u8; SENSE_BUF];
        let iov = [libc::iovec { iov_base: d.as_mut_ptr().cast(), iov_len: d.len() }];
        let mut hdr = request(&cdb, SgDir::FromDevice, iov.as_ptr(), 1, d.len(), &mut sense, Duration::from_secs(30));
        sg_io(&file, &mut hdr).map_err(err)?;
        let outcome = map_completion(hdr.status, hdr.host_status, hdr.driver_status, hdr.sb_len_wr);
        if outcome != SgOutcome::Device(ScsiStatus::GOOD) {
            return Err(err(io::Error::other(format!("INQUIRY failed: {outcome:?}"))));
        }
        let n = transferred(d.len(), hdr.resid);
        let (device_type, vendor, product) =
            parse_inquiry(&d[..n]).map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        let queue = if opts.synchronous { None } else { Some(AsyncQueue::open(path, &name).map_err(err)?) };
        Ok(Self { file: Arc::new(file), queue, path: name, device_type, vendor, product, opts })
    }

    /// The device node.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The T10 vendor identification the device reported.
    pub fn vendor(&self) -> &str {
        &self.vendor
    }

    /// The request's direction and length for a command.
    fn transfer(cmd: &Cmd) -> (SgDir, usize) {
        let info = cmd.info();
        match info.dir {
            DataDir::In => (SgDir::FromDevice, info.data_len.min(cmd.expected_len()) as usize),
            DataDir::Out => (SgDir::ToDevice, cmd.data_out_len()),
            DataDir::None => (SgDir::None, 0),
        }
    }

    /// Ends a command from its completed request.
    fn complete_from(cmd: &mut Cmd, hdr: &SgIoHdr, dir: SgDir, len: usize, sense: &[u8]) {
        let outcome = map_completion(hdr.status, hdr.host_status, hdr.driver_status, hdr.sb_len_wr);
        if dir == SgDir::FromDevice && len > 0 {
            cmd.set_data_in(transferred(len, hdr.resid));
        }
        let sense_len = usize::from(hdr.sb_len_wr).min(sense.len());
        Self::finish(cmd, outcome, &sense[..sense_len]);
    }

    fn finish(cmd: &mut Cmd, outcome: SgOutcome, sense: &[u8]) {
        match outcome {
            SgOutcome::Device(st) => cmd.set_device_status(st, sense),
            SgOutcome::Status(st) => cmd.fail(scst::cmd::Fail::Status(st)),
            SgOutcome::Check(code) => cmd.check_condition(code),
        }
    }
}

/// Requests one sg file descriptor holds at most (the driver's `SG_MAX_QUEUE`).
const ASYNC_DEPTH: usize = 16;

/// How long the completion thread waits in `poll` before checking that its device still exists.
const POLL_MS: libc::c_int = 200;

/// A request written to the device and not yet read back.
struct InFlight {
    cmd: CmdBox,
    /// Where the driver writes the sense (when the request is read back).
    sense: Box<[u8; SENSE_BUF]>,
    dir: SgDir,
    len: usize,
}

/// The in-flight table, indexed by `pack_id`.
struct Slots {
    inflight: Vec<Option<InFlight>>,
    free: Vec<usize>,
    /// Boxed: a sense buffer moves into an [`InFlight`] while the driver holds its address.
    #[allow(clippy::vec_box)]
    spare_sense: Vec<Box<[u8; SENSE_BUF]>>,
}

/// The asynchronous side of a device: its own descriptor, the in-flight table, and the thread
/// that reads completions.
struct AsyncQueue {
    file: File,
    path: String,
    slots: Mutex<Slots>,
    /// The device went away: no more submissions here (the worker path answers them).
    gone: AtomicBool,
}

impl std::fmt::Debug for AsyncQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncQueue").field("path", &self.path).field("gone", &self.gone).finish_non_exhaustive()
    }
}

impl AsyncQueue {
    fn open(path: &Path, name: &str) -> io::Result<Arc<Self>> {
        let file =
            OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)?;
        let mut on: libc::c_int = 1;
        // SAFETY: SG_SET_COMMAND_Q reads one int through the pointer, which points at a live
        // `c_int`; the fd is open. (Queuing is on for v3 headers anyway; this makes it explicit.)
        if unsafe { libc::ioctl(file.as_raw_fd(), SG_SET_COMMAND_Q, &raw mut on) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let q = Arc::new(Self {
            file,
            path: name.to_string(),
            slots: Mutex::new(Slots {
                inflight: (0..ASYNC_DEPTH).map(|_| None).collect(),
                free: (0..ASYNC_DEPTH).rev().collect(),
                spare_sense: (0..ASYNC_DEPTH).map(|_| Box::new([0u8; SENSE_BUF])).collect(),
            }),
            gone: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&q);
        std::thread::Builder::new().name("scst-sg-reap".into()).spawn(move || reap(&weak))?;
        Ok(q)
    }

    /// Writes the request of `cmd` to the device; `Err(cmd)` when the table is full, the buffer
    /// cannot be had or the driver refuses it (the worker path then runs it).
    fn start(&self, mut cmd: CmdBox, timeouts: &SgTimeouts) -> Result<(), CmdBox> {
        if self.gone.load(Ordering::Acquire) {
            return Err(cmd);
        }
        let (dir, len) = SgDevice::transfer(&cmd);
        if dir == SgDir::FromDevice && len > 0 && cmd.data_in_buf(len).is_err() {
            return Err(cmd);
        }
        let (slot, mut sense) = {
            let mut g = self.slots.lock();
            let Some(slot) = g.free.pop() else { return Err(cmd) };
            let sense = g.spare_sense.pop().unwrap_or_else(|| Box::new([0u8; SENSE_BUF]));
            (slot, sense)
        };
        let mut cdb = [0u8; 32];
        let cdb_len = cmd.cdb().len().min(cdb.len());
        cdb[..cdb_len].copy_from_slice(&cmd.cdb()[..cdb_len]);
        // The driver copies the header, the CDB and the iovec array at write(); the data
        // buffers (the command's segments) and the sense buffer must live until the request is
        // read back, which they do: both stay with the command in the table until then.
        let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; scst::sgv::MAX_SEGS];
        let n = iovecs(&mut cmd, dir, len, &mut iov);
        let timeout = timeouts.for_opcode(cdb[0]);
        let mut hdr = request(&cdb[..cdb_len], dir, iov.as_ptr(), n, len, &mut sense[..], timeout);
        hdr.pack_id = slot as libc::c_int;
        self.slots.lock().inflight[slot] = Some(InFlight { cmd, sense, dir, len });
        // SAFETY: `hdr` is a valid sg_io_hdr of `size_of::<SgIoHdr>()` bytes; the pointers in it
        // are live for the call (CDB and iovec array on this stack frame) and until the request
        // is read back (sense box and data segments, held by the table entry); the fd is open.
        let r = unsafe { libc::write(self.file.as_raw_fd(), std::ptr::from_ref(&hdr).cast(), size_of::<SgIoHdr>()) };
        if r == size_of::<SgIoHdr>() as isize {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        let entry = self.release(slot);
        if e.raw_os_error() == Some(libc::ENODEV) {
            self.gone.store(true, Ordering::Release);
        }
        match entry {
            Some(f) => Err(f.cmd),
            // Unreachable: only the completion of a request that was written empties its slot.
            None => Ok(()),
        }
    }

    /// Takes a slot's entry out and frees the slot.
    fn release(&self, slot: usize) -> Option<InFlight> {
        let mut g = self.slots.lock();
        let mut entry = g.inflight.get_mut(slot)?.take()?;
        g.free.push(slot);
        let sense = std::mem::replace(&mut entry.sense, Box::new([0u8; SENSE_BUF]));
        g.spare_sense.push(sense);
        Some(entry)
    }

    /// Reads every finished request; returns `false` when the device is gone.
    fn drain(&self) -> bool {
        loop {
            let mut hdr = request(&[], SgDir::None, std::ptr::null(), 0, 0, &mut [], Duration::ZERO);
            // SAFETY: `hdr` is a writable sg_io_hdr of the size passed; the driver fills it in
            // (and writes the sense and data of the request it returns into the buffers that
            // request was written with, which the table entry keeps alive); the fd is open.
            let r =
                unsafe { libc::read(self.file.as_raw_fd(), std::ptr::from_mut(&mut hdr).cast(), size_of::<SgIoHdr>()) };
            if r < 0 {
                return match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN | libc::EINTR) => true,
                    Some(libc::ENODEV | libc::ENXIO) => false,
                    e => {
                        tracing::warn!(device = %self.path, errno = ?e, "reading sg completions failed");
                        true
                    }
                };
            }
            let Ok(slot) = usize::try_from(hdr.pack_id) else { continue };
            let mut g = self.slots.lock();
            let Some(mut entry) = g.inflight.get_mut(slot).and_then(Option::take) else {
                tracing::warn!(device = %self.path, pack_id = hdr.pack_id, "completion of an unknown request");
                continue;
            };
            g.free.push(slot);
            drop(g);
            SgDevice::complete_from(&mut entry.cmd, &hdr, entry.dir, entry.len, &entry.sense[..]);
            let InFlight { cmd, sense, .. } = entry;
            self.slots.lock().spare_sense.push(sense);
            scst::complete(cmd);
        }
    }

    /// The device is gone: every in-flight command fails with LOGICAL UNIT NOT SUPPORTED.
    fn fail_all(&self) {
        self.gone.store(true, Ordering::Release);
        let entries: Vec<InFlight> = {
            let mut g = self.slots.lock();
            g.inflight.iter_mut().filter_map(Option::take).collect()
        };
        for mut e in entries {
            e.cmd.check_condition(SenseCode::LUN_NOT_SUPPORTED);
            scst::complete(e.cmd);
        }
    }
}

/// Fills `out` with the iovecs of the first `len` bytes of `cmd`'s buffer for a transfer in
/// `dir`; returns how many it used (0 for no data).
fn iovecs(cmd: &mut Cmd, dir: SgDir, len: usize, out: &mut [libc::iovec; scst::sgv::MAX_SEGS]) -> usize {
    match dir {
        SgDir::FromDevice if len > 0 => {
            let Some(buf) = cmd.buf_mut().filter(|b| b.len() >= len) else { return 0 };
            let mut s = scst::sgv::empty_io_slices_mut();
            let n = buf.io_slices_mut(0, len, &mut s);
            for (o, sl) in out.iter_mut().zip(&mut s[..n]) {
                *o = libc::iovec { iov_base: sl.as_mut_ptr().cast(), iov_len: sl.len() };
            }
            n
        }
        SgDir::ToDevice if len > 0 => {
            let Some(buf) = cmd.buf().filter(|b| b.len() >= len) else { return 0 };
            let mut s = scst::sgv::empty_io_slices();
            let n = buf.io_slices(0, len, &mut s);
            for (o, sl) in out.iter_mut().zip(&s[..n]) {
                *o = libc::iovec { iov_base: sl.as_ptr().cast_mut().cast(), iov_len: sl.len() };
            }
            n
        }
        _ => 0,
    }
}

/// The completion thread of a device: polls its descriptor and completes finished requests
/// until the device is dropped or gone.
fn reap(q: &Weak<AsyncQueue>) {
    loop {
        let Some(q) = q.upgrade() else { return };
        let mut pfd = libc::pollfd { fd: q.file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; the fd is open (the queue holds it).
        let r = unsafe { libc::poll(&raw mut pfd, 1, POLL_MS) };
        if r < 0 {
            continue;
        }
        if pfd.revents & libc::POLLIN != 0 && !q.drain() {
            tracing::warn!(device = %q.path, "the SCSI device is gone: failing its commands");
            q.fail_all();
            return;
        }
        if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            tracing::warn!(device = %q.path, "the SCSI device is gone: failing its commands");
            q.fail_all();
            return;
        }
    }
}

/// Runs one request with SG_IO.
fn sg_io(file: &File, hdr: &mut SgIoHdr) -> io::Result<()> {
    // SAFETY: `hdr` is a valid sg_io_hdr whose pointers (CDB, sense buffer, iovec array and
    // the buffers the iovecs describe) are live and sized as the header says for the whole call,
    // which blocks until the driver is done with them; the fd is open.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), SG_IO, std::ptr::from_mut(hdr)) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Resets the logical unit behind the node (SG_SCSI_RESET, SG_SCSI_RESET_DEVICE). Blocks while the
/// SCSI error handler works.
fn reset_device(file: &File) -> io::Result<()> {
    let mut what: libc::c_int = SG_SCSI_RESET_DEVICE;
    // SAFETY: SG_SCSI_RESET reads one int through the pointer, which points at a live `c_int`;
    // the fd is open.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), SG_SCSI_RESET, &raw mut what) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// After a reset the target asked for, takes the device's own unit attention (POWER ON, RESET)
/// with TEST UNIT READY: the core already raised BUS DEVICE RESET FUNCTION OCCURRED for every
/// nexus, and the device's would otherwise reach them a second time. Another unit attention
/// the device reports on the way (capacity changed, ...) is raised for every nexus.
fn consume_reset_ua(file: &File, dev: &Weak<Device>) {
    for _ in 0..4 {
        let mut sense = [0u8; SENSE_BUF];
        let mut hdr = request(&[0; 6], SgDir::None, std::ptr::null(), 0, 0, &mut sense, Duration::from_secs(30));
        if sg_io(file, &mut hdr).is_err() {
            return;
        }
        let n = usize::from(hdr.sb_len_wr).min(sense.len());
        let code = Sense::parse_code(&sense[..n]).filter(|c| c.key == SenseKey::UNIT_ATTENTION);
        match code {
            Some(c) if hdr.status & 0xfe == ScsiStatus::CHECK_CONDITION.0 => {
                if c.asc != 0x29
                    && let Some(d) = dev.upgrade()
                {
                    d.raise_ua(c, None);
                }
            }
            _ => return,
        }
    }
}

impl DeviceHandler for SgDevice {
    fn ops(&self) -> &'static [OpInfo] {
        // Not consulted: the core forwards every command it does not keep (pass_through).
        &[]
    }

    fn device_type(&self) -> u8 {
        self.device_type
    }

    fn product(&self) -> &str {
        &self.product
    }

    fn parse(&self, _: &Device, _: &'static OpInfo, _: &[u8], _: u32) -> Result<CmdInfo, Sense> {
        // The core does not parse pass-through commands; answer like for an unknown command.
        Err(Sense::invalid_opcode())
    }

    fn exec(&self, cmd: &mut Cmd) {
        let mut cdb = [0u8; 32];
        let cdb_len = cmd.cdb().len().min(cdb.len());
        cdb[..cdb_len].copy_from_slice(&cmd.cdb()[..cdb_len]);
        let cdb = &cdb[..cdb_len];
        let timeout = self.opts.timeouts.for_opcode(cdb.first().copied().unwrap_or(0));
        let mut sense = [0u8; SENSE_BUF];
        let (dir, len) = Self::transfer(cmd);
        let result = match dir {
            SgDir::FromDevice if len > 0 => {
                let buf = match cmd.data_in_buf(len) {
                    Ok(b) => b,
                    Err(f) => return cmd.fail(f),
                };
                let mut iov = scst::sgv::empty_io_slices_mut();
                let n = buf.io_slices_mut(0, len, &mut iov);
                // IoSliceMut is ABI-compatible with `struct iovec`.
                let mut hdr = request(cdb, dir, iov.as_ptr().cast(), n, len, &mut sense, timeout);
                sg_io(&self.file, &mut hdr).map(|()| hdr)
            }
            SgDir::ToDevice if len > 0 => {
                let Some(buf) = cmd.buf() else {
                    return cmd.check_condition(SenseCode::INTERNAL_TARGET_FAILURE);
                };
                let mut iov = scst::sgv::empty_io_slices();
                let n = buf.io_slices(0, len, &mut iov);
                // IoSlice is ABI-compatible with `struct iovec`; the driver only reads it.
                let mut hdr = request(cdb, dir, iov.as_ptr().cast(), n, len, &mut sense, timeout);
                sg_io(&self.file, &mut hdr).map(|()| hdr)
            }
            _ => {
                let mut hdr = request(cdb, SgDir::None, std::ptr::null(), 0, 0, &mut sense, timeout);
                sg_io(&self.file, &mut hdr).map(|()| hdr)
            }
        };
        match result {
            Err(e) => Self::finish(cmd, map_errno(e.raw_os_error().unwrap_or(0)), &[]),
            Ok(hdr) => Self::complete_from(cmd, &hdr, dir, len, &sense),
        }
    }

    fn start(&self, cmd: CmdBox) -> Result<(), CmdBox> {
        match &self.queue {
            Some(q) => q.start(cmd, &self.opts.timeouts),
            None => Err(cmd),
        }
    }

    fn may_block(&self) -> bool {
        true
    }

    fn pass_through(&self) -> Option<PassThrough> {
        Some(PassThrough { forward_reservations: self.opts.forward_reservations })
    }

    fn reset(&self, dev: &Arc<Device>, hold: TmHold) {
        let file = self.file.clone();
        let dev = Arc::downgrade(dev);
        let path = self.path.clone();
        let spawned = std::thread::Builder::new().name("scst-sg-reset".into()).spawn(move || {
            if let Err(e) = reset_device(&file) {
                tracing::warn!(device = %path, error = %e, "SG_SCSI_RESET failed");
            } else {
                consume_reset_ua(&file, &dev);
            }
            drop(hold);
        });
        if let Err(e) = spawned {
            tracing::warn!(device = %self.path, error = %e, "cannot start the device reset");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn header_layout_matches_sg_h() {
        // Offsets from gcc on x86_64 for <scsi/sg.h>.
        assert_eq!(size_of::<SgIoHdr>(), 88);
        assert_eq!(offset_of!(SgIoHdr, dxferp), 16);
        assert_eq!(offset_of!(SgIoHdr, timeout), 40);
        assert_eq!(offset_of!(SgIoHdr, usr_ptr), 56);
        assert_eq!(offset_of!(SgIoHdr, status), 64);
        assert_eq!(offset_of!(SgIoHdr, host_status), 68);
        assert_eq!(offset_of!(SgIoHdr, resid), 72);
        assert_eq!(offset_of!(SgIoHdr, info), 80);
    }

    #[test]
    fn requests_describe_the_commands_segments() {
        let pool = scst::SgvPool::new(scst::SgvConfig { max_chunk: 4096, mem_limit: 1 << 20 });
        let mut buf = pool.alloc(10_000).expect("buffer");
        let segs: Vec<(usize, usize)> = buf.segments().map(|s| (s.as_ptr() as usize, s.len())).collect();
        let mut iov = scst::sgv::empty_io_slices_mut();
        let n = buf.io_slices_mut(0, 10_000, &mut iov);
        assert!(n >= 3, "a 10000-byte buffer of 4 KiB chunks has at least three segments ({n})");
        assert_eq!(iov[..n].iter().map(|s| s.len()).sum::<usize>(), 10_000);
        let cdb = [0x28, 0, 0, 0, 0, 0, 0, 0, 20, 0];
        let mut sense = [0u8; SENSE_BUF];
        let h = request(&cdb, SgDir::FromDevice, iov.as_ptr().cast(), n, 10_000, &mut sense, Duration::from_secs(30));
        assert_eq!(h.interface_id, i32::from(b'S'));
        assert_eq!(h.dxfer_direction, SG_DXFER_FROM_DEV);
        assert_eq!((usize::from(h.iovec_count), h.dxfer_len), (n, 10_000));
        assert_eq!(h.dxferp.cast_const().cast::<libc::iovec>(), iov.as_ptr().cast::<libc::iovec>());
        assert_eq!((h.cmd_len, h.cmdp), (10, cdb.as_ptr()));
        assert_eq!((h.mx_sb_len, h.timeout), (252, 30_000));
        // The iovec array the driver reads names exactly the buffer's chunks.
        // SAFETY: `dxferp` points at `n` live iovecs (the IoSliceMut array above).
        let v = unsafe { std::slice::from_raw_parts(h.dxferp.cast_const().cast::<libc::iovec>(), n) };
        let mut left = 10_000;
        for (i, e) in v.iter().enumerate() {
            assert_eq!(e.iov_base as usize, segs[i].0, "segment {i} is used in place");
            assert_eq!(e.iov_len, segs[i].1.min(left));
            left -= e.iov_len;
        }
        let h = request(&[0; 6], SgDir::ToDevice, iov.as_ptr().cast(), n, 0, &mut sense, Duration::from_secs(1));
        assert_eq!((h.dxfer_direction, h.iovec_count, h.dxfer_len), (SG_DXFER_NONE, 0, 0), "no data: no transfer");
        assert!(h.dxferp.is_null());
    }

    #[test]
    fn timeouts_by_class() {
        let t = SgTimeouts::default();
        assert_eq!(t.for_opcode(0x28), Duration::from_secs(30), "READ(10)");
        assert_eq!(t.for_opcode(0x8a), Duration::from_secs(30), "WRITE(16)");
        for long in [0x04u8, 0x01, 0x19, 0x10, 0x1b, 0x48, 0xa5, 0x35] {
            assert_eq!(t.for_opcode(long), Duration::from_secs(1800), "{long:#04x}");
        }
        let t = SgTimeouts { normal: Duration::from_secs(5), long: Duration::from_secs(600) };
        assert_eq!((t.for_opcode(0x00), t.for_opcode(0x04)), (Duration::from_secs(5), Duration::from_secs(600)));
    }

    #[test]
    fn device_statuses_pass_through() {
        use host::*;
        assert_eq!(map_completion(0x00, DID_OK, 0, 0), SgOutcome::Device(ScsiStatus::GOOD));
        // CHECK CONDITION with sense, DRIVER_SENSE set: the device's sense goes out.
        assert_eq!(
            map_completion(0x02, DID_OK, driver::DRIVER_SENSE, 18),
            SgOutcome::Device(ScsiStatus::CHECK_CONDITION)
        );
        // The midlayer's host codes derived from sense do not hide it.
        for h in [DID_TARGET_FAILURE, DID_NEXUS_FAILURE, DID_MEDIUM_ERROR] {
            assert_eq!(map_completion(0x02, h, 0x08, 18), SgOutcome::Device(ScsiStatus::CHECK_CONDITION), "{h:#x}");
        }
        assert_eq!(map_completion(0x08, DID_OK, 0, 0), SgOutcome::Device(ScsiStatus::BUSY));
        assert_eq!(map_completion(0x18, DID_OK, 0, 0), SgOutcome::Device(ScsiStatus::RESERVATION_CONFLICT));
        assert_eq!(map_completion(0x28, DID_OK, 0, 0), SgOutcome::Device(ScsiStatus::TASK_SET_FULL));
        assert_eq!(map_completion(0x02, DID_OK, 0, 0), SgOutcome::Check(SenseCode::ABORTED_COMMAND), "no sense");
    }

    #[test]
    fn host_and_driver_errors_map_to_what_initiators_understand() {
        use host::*;
        let check = |h, d| map_completion(0, h, d, 0);
        assert_eq!(check(DID_NO_CONNECT, 0), SgOutcome::Check(SenseCode::LUN_NOT_SUPPORTED));
        assert_eq!(check(DID_BAD_TARGET, 0), SgOutcome::Check(SenseCode::LUN_NOT_SUPPORTED));
        assert_eq!(check(DID_TIME_OUT, 0), SgOutcome::Check(LU_COMMUNICATION_TIMEOUT));
        // A timed-out command's stale sense is not passed on.
        assert_eq!(map_completion(0x02, DID_TIME_OUT, 0x08, 18), SgOutcome::Check(LU_COMMUNICATION_TIMEOUT));
        assert_eq!(check(DID_OK, driver::DRIVER_TIMEOUT), SgOutcome::Check(LU_COMMUNICATION_TIMEOUT));
        assert_eq!(check(DID_ABORT, 0), SgOutcome::Check(SenseCode::ABORTED_COMMAND));
        assert_eq!(check(DID_RESET, 0), SgOutcome::Check(SenseCode::ABORTED_COMMAND));
        for h in [DID_BUS_BUSY, DID_SOFT_ERROR, DID_IMM_RETRY, DID_REQUEUE, DID_TRANSPORT_DISRUPTED] {
            assert_eq!(check(h, 0), SgOutcome::Status(ScsiStatus::BUSY), "{h:#x}");
        }
        assert_eq!(check(DID_OK, driver::DRIVER_BUSY), SgOutcome::Status(ScsiStatus::BUSY));
        assert_eq!(check(DID_NEXUS_FAILURE, 0), SgOutcome::Status(ScsiStatus::RESERVATION_CONFLICT));
        assert_eq!(check(DID_MEDIUM_ERROR, 0), SgOutcome::Check(MEDIUM_ERROR));
        assert_eq!(check(DID_ERROR, 0), SgOutcome::Check(LU_COMMUNICATION_FAILURE));
        assert_eq!(check(DID_TARGET_FAILURE, 0), SgOutcome::Check(SenseCode::INTERNAL_TARGET_FAILURE));
        assert_eq!(check(0x7f, 0), SgOutcome::Check(SenseCode::INTERNAL_TARGET_FAILURE));
        assert_eq!(check(DID_OK, 0x04), SgOutcome::Check(SenseCode::INTERNAL_TARGET_FAILURE), "DRIVER_ERROR");
        assert_eq!(map_errno(libc::ENODEV), SgOutcome::Check(SenseCode::LUN_NOT_SUPPORTED));
        assert_eq!(map_errno(libc::ENXIO), SgOutcome::Check(SenseCode::LUN_NOT_SUPPORTED));
        assert_eq!(map_errno(libc::EDOM), SgOutcome::Status(ScsiStatus::BUSY));
        assert_eq!(map_errno(libc::ENOMEM), SgOutcome::Status(ScsiStatus::BUSY));
        assert_eq!(map_errno(libc::EINVAL), SgOutcome::Check(SenseCode::INTERNAL_TARGET_FAILURE));
    }

    #[test]
    fn residuals_and_inquiry() {
        assert_eq!(transferred(4096, 0), 4096);
        assert_eq!(transferred(4096, 96), 4000);
        assert_eq!(transferred(4096, 5000), 0, "residual larger than the request");
        assert_eq!(transferred(4096, -7), 4096, "negative residual");
        let mut d = [0x20u8; 36];
        d[0] = 0x01;
        d[8..16].copy_from_slice(b"Linux   ");
        d[16..32].copy_from_slice(b"scsi_debug      ");
        assert_eq!(parse_inquiry(&d), Ok((1, "Linux".to_string(), "scsi_debug".to_string())));
        d[0] = 0x7f;
        assert!(parse_inquiry(&d).is_err(), "qualifier 011b: no LU");
        assert!(parse_inquiry(&d[..20]).is_err());
    }
}
