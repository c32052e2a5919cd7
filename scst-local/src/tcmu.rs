//! A TCMU backstore: the kernel's `target_core_user` hands us the CDBs of one LIO device over a
//! shared ring, and with a LIO fabric on top (tcm_loop) the LUN is a host `/dev/sdX`.
//!
//! ```text
//!   /dev/sdX ─► tcm_loop ─► LIO core ─► target_core_user ─► /dev/uioN (mmap: mailbox, ring, data)
//!                                                              │ poller: read(fd) → cmd_head
//!                                                              ▼
//!                         Session::submit (one fixed nexus) ◄─ parse entry, copy iovecs out
//!   ring: response at cmd_tail, cmd_tail += len ◄─ Step::Done / TargetDriver::xmit_response
//!   write(fd, 4 bytes) → kernel reaps completions
//! ```
//!
//! # The ring (Linux `include/uapi/linux/target_core_user.h`, mailbox version 2)
//! The mapping starts with `struct tcmu_mailbox` (`version` u16 @0, `flags` u16 @2, `cmdr_off`
//! u32 @4, `cmdr_size` u32 @8, `cmd_head` u32 @12, `cmd_tail` u32 @64 on its own cache line),
//! then the command ring at `cmdr_off`, then the data area. Entries are packed: a header
//! (`len_op` u32: length with the op in the low 3 bits, `cmd_id` u16, `kflags` u8, `uflags` u8),
//! then either the request (`iov_cnt` @8, `iov_bidi_cnt` @12, `iov_dif_cnt` @16 u32, then, since
//! `__packed` does not reach into the nested struct, 4 bytes of alignment padding, `cdb_off` u64
//! @24, two u64 of padding, `struct iovec iov[]` @48, 16 bytes each, their `iov_base` being
//! offsets into the mapping) or, written by us, the response (`scsi_status` u8 @8, `read_len` u32 @12,
//! `sense_buffer[96]` @16). An entry never wraps: the kernel fills the end of the ring with a PAD.
//!
//! The kernel advertises out-of-order completion (`TCMU_MAILBOX_FLAG_CAP_OOOC`): it reaps the
//! ring from its last position to `cmd_tail`, taking each command entry's `cmd_id` as the command
//! that completed and the entry's own length as the step. So we write each completion into the
//! next not yet reaped command slot (whatever command first occupied it; its request was copied
//! out when it was parsed), skip PAD and TMR entries, and publish `cmd_tail`. Commands therefore
//! run concurrently and complete in any order. With `TCMU_UFLAG_READ_LEN` we report how much
//! Data-In we wrote, so the kernel sets the residual.
//!
//! # What the kernel does and what our core does
//! - The kernel (LIO core, `passthrough_parse_cdb`) answers REPORT LUNS itself: our core never
//!   sees it, and the LUN numbering is tcm_loop's (the TCMU device is one LUN; our session maps
//!   it to [`TcmuConfig::lun`]).
//! - By default the kernel emulates PERSISTENT RESERVE IN/OUT, RESERVE/RELEASE and the ALUA
//!   commands (REPORT/SET TARGET PORT GROUPS) and applies its own ALUA state and reservation
//!   checks before a command reaches the ring: target_core_user's default transport flags are
//!   `TRANSPORT_FLAG_PASSTHROUGH` only. Both are changeable per device: writing 0 to the
//!   device's `attrib/pgr_support` (`attrib/alua_support`) sets `TRANSPORT_FLAG_PASSTHROUGH_PGR`
//!   (`_ALUA`) and the kernel then passes those commands to the ring, where our core answers
//!   them for its one nexus. Everything else (INQUIRY and its VPD pages, MODE SENSE, READ
//!   CAPACITY, the medium commands, UNMAP, WRITE SAME, ...) is always executed by our core.
//! - Task management stays in the kernel: there is no way to answer a TMF from user space. Since
//!   5.11 the kernel may put TMR entries (`TCMU_OP_TMR`, only when notification is enabled) on
//!   the ring as information (the device's `attrib/tmr_notification`, off by default); we skip
//!   them and our core never learns of the abort. We still complete an aborted command; what
//!   the kernel does with that completion is its business (it holds the command's data area
//!   until then, or until its `cmd_time_out` expires). An administrator may reset the ring
//!   (`action/reset_ring` in configfs): we do not detect that (see the limits below).
//! - The ring carries no initiator identity: every command arrives on one nexus whose initiator
//!   name is [`TcmuConfig::initiator_name`], so our ACLs, PR keys and unit attentions see one
//!   initiator for all users of the LIO device.
//! - Data moves by one copy each way: Data-Out from the data area into the command's SGV
//!   buffer, Data-In from the buffer into the data area.
//!
//! # Untrusted input
//! Everything read from the mapping is checked against the mapped size: a header whose length is
//! not a multiple of 8, zero, or runs past the ring end, or a `cmd_head` outside the ring, stops
//! the poller ([`RingError`]; the ring is broken and only the kernel can reset it). A command
//! entry with iovecs or a CDB outside the mapping gets CHECK CONDITION, HARDWARE ERROR /
//! INTERNAL TARGET FAILURE; one with bidirectional iovecs gets ILLEGAL REQUEST / INVALID FIELD
//! IN CDB. Neither panics nor touches memory outside the mapping.
//!
//! # Limits
//! One LUN per TCMU device and one ring; no bidirectional commands; DIF iovecs are ignored; a
//! ring reset by the kernel is not detected (restart the process).
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;
use scst::wire::sense::MAX_SENSE_LEN;
use scst::{
    CmdBox, CmdHeader, DataDir, Lun, ProtocolId, ScsiStatus, Sense, SenseCode, Session, SessionConfig, Step, Target,
    TargetDriver, TargetPort, TaskAttr,
};

/// `TCMU_MAILBOX_VERSION`.
pub const MAILBOX_VERSION: u16 = 2;
/// `TCMU_MAILBOX_FLAG_CAP_OOOC`: out-of-order completions.
pub const FLAG_CAP_OOOC: u16 = 1 << 0;
/// `TCMU_MAILBOX_FLAG_CAP_READ_LEN`: `rsp.read_len` honoured.
pub const FLAG_CAP_READ_LEN: u16 = 1 << 1;
/// `TCMU_OP_PAD`.
pub const OP_PAD: u32 = 0;
/// `TCMU_OP_CMD`.
pub const OP_CMD: u32 = 1;
/// `TCMU_OP_TMR` (5.11+).
pub const OP_TMR: u32 = 2;
/// `TCMU_UFLAG_UNKNOWN_OP`.
pub const UFLAG_UNKNOWN_OP: u8 = 0x1;
/// `TCMU_UFLAG_READ_LEN`.
pub const UFLAG_READ_LEN: u8 = 0x2;
/// `TCMU_SENSE_BUFFERSIZE`.
pub const SENSE_BUFFERSIZE: usize = 96;

const MB_CMDR_OFF: usize = 4;
const MB_CMDR_SIZE: usize = 8;
const MB_CMD_HEAD: usize = 12;
const MB_CMD_TAIL: usize = 64;
const MB_LEN: usize = 68;
const HDR_LEN: usize = 8;
const REQ_IOV_CNT: usize = 8;
const REQ_IOV_BIDI_CNT: usize = 12;
const REQ_IOV_DIF_CNT: usize = 16;
// `__packed` on `struct tcmu_cmd_entry` does not reach inside the anonymous `req` struct, which
// keeps natural alignment: 4 bytes of padding after `iov_dif_cnt`, so `cdb_off` is at 16 and
// `iov[]` at 40 within `req` (24 and 48 in the entry).
const REQ_CDB_OFF: usize = 24;
const REQ_IOV: usize = 48;
const IOVEC_LEN: usize = 16;
const RSP_STATUS: usize = 8;
const RSP_READ_LEN: usize = 12;
const RSP_SENSE: usize = 16;
/// `sizeof(struct tcmu_cmd_entry)`: header + the larger union member (the response).
pub const ENTRY_LEN: usize = RSP_SENSE + SENSE_BUFFERSIZE;

/// The shared mapping (or, in tests, an owned buffer standing in for it).
pub struct Shm {
    ptr: *mut u8,
    len: usize,
    owned: Option<Box<[u64]>>,
}

// SAFETY: `Shm` is a raw region of shared memory; every access goes through bounds-checked
// copies or atomics, and the region lives as long as the `Shm`.
unsafe impl Send for Shm {}
// SAFETY: as above; concurrent accesses are byte copies or atomics, never references.
unsafe impl Sync for Shm {}

impl std::fmt::Debug for Shm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shm").field("len", &self.len).finish_non_exhaustive()
    }
}

impl Shm {
    /// A zeroed private buffer of `len` bytes (rounded up to 8) laid out like a mapping: for
    /// tests and tools.
    pub fn owned(len: usize) -> Self {
        let mut b = vec![0u64; len.div_ceil(8)].into_boxed_slice();
        let ptr = b.as_mut_ptr().cast::<u8>();
        Self { ptr, len, owned: Some(b) }
    }

    /// Maps `len` bytes of `file` at offset 0, shared and writable.
    ///
    /// # Errors
    /// The `mmap` error.
    pub fn map(file: &File, len: usize) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping of `len` bytes of the file; nothing else refers to the
        // address range, which stays mapped until `Drop`.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { ptr: p.cast(), len, owned: None })
    }

    /// The mapping's size.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn range(&self, off: u64, n: usize) -> Option<usize> {
        let off = usize::try_from(off).ok()?;
        (off.checked_add(n)? <= self.len).then_some(off)
    }

    /// Copies `dst.len()` bytes from `off`; `None` (nothing copied) if out of bounds.
    pub fn read(&self, off: u64, dst: &mut [u8]) -> Option<()> {
        let o = self.range(off, dst.len())?;
        // SAFETY: `o..o + dst.len()` lies inside the region (checked above); `dst` is a distinct
        // Rust buffer. The kernel may write the region concurrently only where the protocol
        // says it does not (entries before cmd_head are stable).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(o), dst.as_mut_ptr(), dst.len()) };
        Some(())
    }

    /// Copies `src` to `off`; `None` (nothing written) if out of bounds.
    pub fn write(&self, off: u64, src: &[u8]) -> Option<()> {
        let o = self.range(off, src.len())?;
        // SAFETY: `o..o + src.len()` lies inside the writable region (checked above).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(o), src.len()) };
        Some(())
    }

    fn u16(&self, off: u64) -> Option<u16> {
        let mut b = [0; 2];
        self.read(off, &mut b).map(|()| u16::from_ne_bytes(b))
    }

    fn u32(&self, off: u64) -> Option<u32> {
        let mut b = [0; 4];
        self.read(off, &mut b).map(|()| u32::from_ne_bytes(b))
    }

    fn u64(&self, off: u64) -> Option<u64> {
        let mut b = [0; 8];
        self.read(off, &mut b).map(|()| u64::from_ne_bytes(b))
    }

    /// The mailbox word at `off` (4-aligned) as an atomic.
    fn atomic(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= MB_LEN && MB_LEN <= self.len);
        // SAFETY: in bounds and 4-aligned (the region is page- or u64-aligned); the kernel
        // accesses these mailbox words with READ_ONCE/WRITE_ONCE-sized accesses too.
        unsafe { &*self.ptr.add(off).cast::<AtomicU32>() }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        if self.owned.is_none() {
            // SAFETY: `ptr`/`len` came from a successful mmap and nothing refers to it now.
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }
}

/// A broken ring: the poller stops (the kernel's reset is the only recovery).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The mailbox is too small, of another version, or places the ring outside the mapping.
    #[error("bad mailbox: {0}")]
    Mailbox(&'static str),
    /// `cmd_head` is outside the ring or unaligned.
    #[error("cmd_head {0:#x} outside the ring")]
    Head(u32),
    /// An entry header at ring offset `off` has an impossible length.
    #[error("bad entry header at ring offset {off:#x}: len_op {len_op:#x}")]
    Header {
        /// Ring offset.
        off: u32,
        /// The raw `len_op`.
        len_op: u32,
    },
}

/// One command from the ring, copied out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `hdr.cmd_id`.
    pub cmd_id: u16,
    /// The CDB.
    pub cdb: Vec<u8>,
    /// Data iovecs: (offset into the mapping, length), all inside the data area.
    pub iov: Vec<(u64, u64)>,
}

impl Request {
    /// Total bytes of the data iovecs.
    pub fn data_len(&self) -> u64 {
        self.iov.iter().map(|&(_, l)| l).sum()
    }
}

/// What one ring entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// PAD or TMR: skipped.
    Skip,
    /// A command to execute.
    Cmd(Request),
    /// A command entry we must refuse at once (bad iovecs, CDB, bidirectional data).
    Bad(Response),
    /// An opcode we do not know: answered with `TCMU_UFLAG_UNKNOWN_OP`.
    Unknown(u16),
}

/// A completion to write into a ring slot.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// The completed command's `cmd_id`.
    pub cmd_id: u16,
    /// SCSI status.
    pub status: u8,
    /// Sense data (up to 96 bytes used).
    pub sense: [u8; SENSE_BUFFERSIZE],
    /// Bytes of `sense` used.
    pub sense_len: usize,
    /// Data-In bytes written, for `TCMU_UFLAG_READ_LEN`.
    pub read_len: Option<u32>,
    /// Extra `uflags` (`TCMU_UFLAG_UNKNOWN_OP`).
    pub uflags: u8,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("cmd_id", &self.cmd_id)
            .field("status", &self.status)
            .field("sense", &&self.sense[..self.sense_len])
            .field("read_len", &self.read_len)
            .field("uflags", &self.uflags)
            .finish()
    }
}

impl Response {
    /// A status without sense.
    pub fn status(cmd_id: u16, status: ScsiStatus) -> Self {
        Self { cmd_id, status: status.0, sense: [0; SENSE_BUFFERSIZE], sense_len: 0, read_len: None, uflags: 0 }
    }

    /// CHECK CONDITION with fixed-format sense for `code`.
    pub fn check(cmd_id: u16, code: SenseCode) -> Self {
        let mut s = [0u8; MAX_SENSE_LEN];
        let n = Sense::new(code).write(false, &mut s);
        Self::with_sense(cmd_id, ScsiStatus::CHECK_CONDITION, &s[..n])
    }

    fn with_sense(cmd_id: u16, status: ScsiStatus, sense: &[u8]) -> Self {
        let mut r = Self::status(cmd_id, status);
        let n = sense.len().min(SENSE_BUFFERSIZE);
        r.sense[..n].copy_from_slice(&sense[..n]);
        r.sense_len = n;
        r
    }
}

/// SCSI CDB length from its operation code group (SAM-5 §5.2; variable length: 8 + byte 7).
fn cdb_len(first: &[u8; 8]) -> usize {
    match first[0] >> 5 {
        0 => 6,
        1 | 2 => 10,
        3 if first[0] == 0x7f => 8 + usize::from(first[7]),
        4 => 16,
        5 => 12,
        _ => 6,
    }
}

/// The parsed mailbox and the ring's geometry, over a mapping.
#[derive(Debug)]
pub struct Ring {
    shm: Shm,
    cmdr_off: u64,
    cmdr_size: u32,
    data_off: u64,
    /// Mailbox flags (capabilities).
    pub flags: u16,
}

impl Ring {
    /// Checks the mailbox of `shm`.
    ///
    /// # Errors
    /// [`RingError::Mailbox`] for another version or a ring outside the mapping.
    pub fn new(shm: Shm) -> Result<Self, RingError> {
        if shm.len() < MB_LEN {
            return Err(RingError::Mailbox("mapping smaller than the mailbox"));
        }
        let version = shm.u16(0).unwrap_or(0);
        if version != MAILBOX_VERSION {
            return Err(RingError::Mailbox("not mailbox version 2"));
        }
        let flags = shm.u16(2).unwrap_or(0);
        let cmdr_off = u64::from(shm.u32(MB_CMDR_OFF as u64).unwrap_or(0));
        let cmdr_size = shm.u32(MB_CMDR_SIZE as u64).unwrap_or(0);
        let end = cmdr_off + u64::from(cmdr_size);
        if cmdr_off < MB_LEN as u64 || cmdr_size < ENTRY_LEN as u32 || cmdr_size % 8 != 0 || end > shm.len() as u64 {
            return Err(RingError::Mailbox("command ring outside the mapping"));
        }
        if flags & FLAG_CAP_OOOC == 0 {
            return Err(RingError::Mailbox("kernel without out-of-order completion"));
        }
        Ok(Self { shm, cmdr_off, cmdr_size, data_off: end, flags })
    }

    /// The mapping.
    pub fn shm(&self) -> &Shm {
        &self.shm
    }

    /// `mailbox.cmd_head` (acquire: entries before it are complete).
    ///
    /// # Errors
    /// [`RingError::Head`] if outside the ring or unaligned.
    pub fn head(&self) -> Result<u32, RingError> {
        let h = self.shm.atomic(MB_CMD_HEAD).load(Ordering::Acquire);
        if h >= self.cmdr_size || h % 8 != 0 {
            return Err(RingError::Head(h));
        }
        Ok(h)
    }

    /// `mailbox.cmd_tail`.
    pub fn tail(&self) -> u32 {
        self.shm.atomic(MB_CMD_TAIL).load(Ordering::Acquire) % self.cmdr_size
    }

    fn set_tail(&self, t: u32) {
        self.shm.atomic(MB_CMD_TAIL).store(t, Ordering::Release);
    }

    /// Parses the entry at ring offset `off`: returns it and its length.
    ///
    /// # Errors
    /// [`RingError::Header`] when the header itself is unusable (the ring cannot be walked on).
    pub fn entry(&self, off: u32) -> Result<(Entry, u32), RingError> {
        let base = self.cmdr_off + u64::from(off);
        let room = self.cmdr_size - off;
        let bad = |len_op| RingError::Header { off, len_op };
        if room < HDR_LEN as u32 {
            return Err(bad(0));
        }
        let len_op = self.shm.u32(base).ok_or(bad(0))?;
        let len = len_op & !7;
        if len < HDR_LEN as u32 || len > room {
            return Err(bad(len_op));
        }
        let cmd_id = self.shm.u16(base + 4).ok_or(bad(len_op))?;
        let e = match len_op & 7 {
            OP_PAD | OP_TMR => Entry::Skip,
            OP_CMD if (len as usize) < ENTRY_LEN => return Err(bad(len_op)),
            OP_CMD => self.command(base, len, cmd_id),
            _ if (len as usize) < ENTRY_LEN => return Err(bad(len_op)),
            _ => Entry::Unknown(cmd_id),
        };
        Ok((e, len))
    }

    fn command(&self, base: u64, len: u32, cmd_id: u16) -> Entry {
        let internal = Entry::Bad(Response::check(cmd_id, SenseCode::INTERNAL_TARGET_FAILURE));
        let word = |o: usize| self.shm.u32(base + o as u64).unwrap_or(u32::MAX);
        let (cnt, bidi, _dif) = (word(REQ_IOV_CNT), word(REQ_IOV_BIDI_CNT), word(REQ_IOV_DIF_CNT));
        if bidi != 0 {
            return Entry::Bad(Response::check(cmd_id, SenseCode::INVALID_FIELD_IN_CDB));
        }
        let fits = (cnt as u64).checked_mul(IOVEC_LEN as u64).and_then(|n| n.checked_add(REQ_IOV as u64));
        if fits.is_none_or(|n| n > u64::from(len)) {
            return internal;
        }
        let mut iov = Vec::with_capacity(cnt as usize);
        for i in 0..u64::from(cnt) {
            let at = base + REQ_IOV as u64 + i * IOVEC_LEN as u64;
            let (Some(b), Some(l)) = (self.shm.u64(at), self.shm.u64(at + 8)) else { return internal };
            let inside = b >= self.data_off && b.checked_add(l).is_some_and(|e| e <= self.shm.len() as u64);
            if !inside {
                return internal;
            }
            if l > 0 {
                iov.push((b, l));
            }
        }
        let Some(cdb_off) = self.shm.u64(base + REQ_CDB_OFF as u64) else { return internal };
        let mut first = [0u8; 8];
        if self.shm.read(cdb_off, &mut first[..1]).is_none() {
            return internal;
        }
        if first[0] == 0x7f && self.shm.read(cdb_off, &mut first).is_none() {
            return internal;
        }
        let n = cdb_len(&first);
        if n > scst::wire::cdb::MAX_CDB_LEN {
            return Entry::Bad(Response::check(cmd_id, SenseCode::INVALID_OPCODE));
        }
        let mut cdb = vec![0u8; n];
        if self.shm.read(cdb_off, &mut cdb).is_none() {
            return internal;
        }
        Entry::Cmd(Request { cmd_id, cdb, iov })
    }

    /// Writes `r` into the command slot at ring offset `off` (keeping its `len_op`).
    pub fn write_response(&self, off: u32, r: &Response) {
        let base = self.cmdr_off + u64::from(off);
        let mut hdr = [0u8; HDR_LEN];
        if self.shm.read(base, &mut hdr).is_none() {
            return;
        }
        hdr[4..6].copy_from_slice(&r.cmd_id.to_ne_bytes());
        hdr[7] = r.uflags | if r.read_len.is_some() { UFLAG_READ_LEN } else { 0 };
        let mut rsp = [0u8; ENTRY_LEN - RSP_STATUS];
        rsp[0] = r.status;
        rsp[RSP_READ_LEN - RSP_STATUS..RSP_SENSE - RSP_STATUS].copy_from_slice(&r.read_len.unwrap_or(0).to_ne_bytes());
        rsp[RSP_SENSE - RSP_STATUS..][..r.sense_len].copy_from_slice(&r.sense[..r.sense_len]);
        let _ = self.shm.write(base + RSP_STATUS as u64, &rsp);
        let _ = self.shm.write(base, &hdr);
    }

    /// Copies bytes of the iovecs, starting at byte `off` of their concatenation, into `dst`
    /// (Data-Out). Returns the bytes copied (less than `dst.len()` when the iovecs are shorter).
    pub fn gather(&self, iov: &[(u64, u64)], off: usize, dst: &mut [u8]) -> usize {
        let mut done = 0;
        for (at, k, n) in segments(iov, off, dst.len()) {
            if self.shm.read(at, &mut dst[k..k + n]).is_none() {
                break;
            }
            done = k + n;
        }
        done
    }

    /// Copies `src` into the iovecs at byte `off` of their concatenation (Data-In). Returns the
    /// bytes copied (less than `src.len()` when the iovecs are shorter).
    pub fn scatter(&self, iov: &[(u64, u64)], off: usize, src: &[u8]) -> usize {
        let mut done = 0;
        for (at, k, n) in segments(iov, off, src.len()) {
            if self.shm.write(at, &src[k..k + n]).is_none() {
                break;
            }
            done = k + n;
        }
        done
    }
}

/// The pieces `(mapping offset, offset in the caller's buffer, length)` of bytes
/// `off..off + want` of the iovecs' concatenation.
fn segments(iov: &[(u64, u64)], off: usize, want: usize) -> impl Iterator<Item = (u64, usize, usize)> + '_ {
    let mut skip = off as u64;
    let mut done = 0usize;
    iov.iter().filter_map(move |&(b, l)| {
        if done == want {
            return None;
        }
        if skip >= l {
            skip -= l;
            return None;
        }
        let n = usize::try_from(l - skip).unwrap_or(usize::MAX).min(want - done);
        let seg = (b + skip, done, n);
        skip = 0;
        done += n;
        Some(seg)
    })
}

/// Ring slots parsed but not yet reaped, and completions waiting for a slot.
#[derive(Debug, Default)]
struct Completer {
    /// `cmd_tail` as we will publish it.
    tail: u32,
    /// Parsed entries from `tail` on: (offset, length, is a command slot).
    slots: VecDeque<(u32, u32, bool)>,
    /// Completions in completion order.
    done: VecDeque<Response>,
}

impl Completer {
    /// Writes waiting completions into command slots from the tail on and advances the tail
    /// past them and past skipped entries. Returns whether the tail moved.
    fn flush(&mut self, ring: &Ring) -> bool {
        let start = self.tail;
        while let Some(&(off, len, is_cmd)) = self.slots.front() {
            if is_cmd {
                let Some(r) = self.done.pop_front() else { break };
                ring.write_response(off, &r);
            }
            self.slots.pop_front();
            self.tail = (off + len) % ring.cmdr_size;
        }
        if self.tail != start {
            ring.set_tail(self.tail);
            true
        } else {
            false
        }
    }
}

/// Counters of one TCMU device.
#[derive(Debug, Default)]
pub struct TcmuStats {
    /// Command entries submitted to the core.
    pub commands: AtomicU64,
    /// Entries refused at once (bad iovecs or CDB, unknown op).
    pub bad_entries: AtomicU64,
    /// PAD and TMR entries skipped.
    pub skipped: AtomicU64,
    /// Completions for which no parsed command was known (dropped).
    pub stray_completions: AtomicU64,
    /// Completions that came through `xmit_response` (device workers) rather than inline.
    pub async_completions: AtomicU64,
}

/// A command's data iovecs: (offset into the mapping, length).
type Iovecs = Vec<(u64, u64)>;

/// The ring, its completion state and the UIO file, shared with the fabric callbacks.
struct Shared {
    ring: Ring,
    uio: Option<File>,
    comp: Mutex<Completer>,
    /// Data iovecs of in-flight commands, by `cmd_id`.
    inflight: Mutex<Vec<Option<Iovecs>>>,
    stats: TcmuStats,
}

impl Shared {
    fn kick(&self) {
        if let Some(f) = &self.uio {
            // Any 4-byte write makes the kernel reap completions (tcmu_irqcontrol).
            let _ = (&*f).write(&1u32.to_ne_bytes());
        }
    }

    fn push(&self, r: Response) {
        let moved = {
            let mut c = self.comp.lock();
            c.done.push_back(r);
            c.flush(&self.ring)
        };
        if moved {
            self.kick();
        }
    }

    fn complete(&self, cmd: CmdBox) {
        let Ok(id) = u16::try_from(cmd.fabric_cookie) else { return };
        let Some(iov) = self.inflight.lock().get_mut(usize::from(id)).and_then(Option::take) else {
            self.stats.stray_completions.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let r = if cmd.answers_task_aborted() || cmd.is_aborted() {
            Response::status(id, ScsiStatus::TASK_ABORTED)
        } else {
            let mut written = 0;
            let want = cmd.data_in_len();
            while written < want {
                let mut slices = scst::sgv::empty_io_slices();
                let k = cmd.data_in_slices(written, want - written, &mut slices);
                let before = written;
                for s in &slices[..k] {
                    let n = self.ring.scatter(&iov, written, s);
                    written += n;
                    if n < s.len() {
                        break;
                    }
                }
                if written == before || written < before + slices[..k].iter().map(|s| s.len()).sum::<usize>() {
                    break;
                }
            }
            let mut r = Response::with_sense(id, cmd.status(), cmd.sense());
            r.read_len = Some(u32::try_from(written).unwrap_or(u32::MAX));
            r
        };
        drop(cmd);
        self.push(r);
    }
}

struct Fabric(Arc<Shared>);

impl TargetDriver for Fabric {
    fn xmit_response(&self, cmd: CmdBox) {
        self.0.stats.async_completions.fetch_add(1, Ordering::Relaxed);
        self.0.complete(cmd);
    }
    // abort_pending: Data-Out is copied before `data_received` on the poller thread, so the
    // core never waits for us. tm_done: we never submit task management.
}

/// Configuration of one TCMU device's nexus.
#[derive(Debug, Clone)]
pub struct TcmuConfig {
    /// The initiator name every command is attributed to (the ring carries none).
    pub initiator_name: String,
    /// The LUN of our target that the TCMU device exposes.
    pub lun: u16,
    /// Relative target port identifier of the nexus's port.
    pub rel_port_id: u16,
    /// Target port group of that port.
    pub tpg_id: u16,
}

impl Default for TcmuConfig {
    fn default() -> Self {
        Self { initiator_name: "tcmu".into(), lun: 0, rel_port_id: 1, tpg_id: 0 }
    }
}

/// One TCMU device served by our core: a ring and a session.
pub struct TcmuDevice {
    shared: Arc<Shared>,
    session: Arc<Session>,
    lun: [u8; 8],
    /// Our parse position (the next entry not yet parsed).
    next: Mutex<u32>,
}

impl std::fmt::Debug for TcmuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcmuDevice").field("session", &self.session).finish_non_exhaustive()
    }
}

/// Errors of opening or serving a TCMU device.
#[derive(Debug, thiserror::Error)]
pub enum TcmuError {
    /// A system call or sysfs read failed.
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
    /// No UIO device has the wanted name.
    #[error("no /sys/class/uio device named {0}")]
    NotFound(String),
    /// The ring is broken.
    #[error(transparent)]
    Ring(#[from] RingError),
}

/// Finds the UIO device whose name is `tcm-user/<hba>/<dev>/...` for `dev`, returning its
/// `/dev/uioN` path and map size.
///
/// # Errors
/// [`TcmuError::NotFound`], or the sysfs read error.
pub fn find_uio(dev: &str) -> Result<(PathBuf, usize), TcmuError> {
    let io = |w: &str, e| TcmuError::Io(w.to_string(), e);
    let dir = Path::new("/sys/class/uio");
    for ent in std::fs::read_dir(dir).map_err(|e| io("/sys/class/uio", e))? {
        let ent = ent.map_err(|e| io("/sys/class/uio", e))?;
        let Ok(name) = std::fs::read_to_string(ent.path().join("name")) else { continue };
        let mut parts = name.trim().splitn(4, '/');
        if parts.next() != Some("tcm-user") || parts.nth(1) != Some(dev) {
            continue;
        }
        let size_path = ent.path().join("maps/map0/size");
        let s = std::fs::read_to_string(&size_path).map_err(|e| io(&size_path.display().to_string(), e))?;
        let size = usize::from_str_radix(s.trim().trim_start_matches("0x"), 16)
            .map_err(|e| io("map0/size", io::Error::new(io::ErrorKind::InvalidData, e)))?;
        return Ok((Path::new("/dev").join(ent.file_name()), size));
    }
    Err(TcmuError::NotFound(dev.to_string()))
}

impl TcmuDevice {
    /// Opens `/dev/uioN` (see [`find_uio`]), maps its ring and registers the nexus with `target`.
    ///
    /// # Errors
    /// Open, mmap, or a mailbox we cannot serve.
    pub fn open(target: &Arc<Target>, uio: &Path, map_size: usize, cfg: TcmuConfig) -> Result<Arc<Self>, TcmuError> {
        let io = |e| TcmuError::Io(uio.display().to_string(), e);
        let file = std::fs::OpenOptions::new().read(true).write(true).open(uio).map_err(io)?;
        let shm = Shm::map(&file, map_size).map_err(io)?;
        Self::with_ring(target, Ring::new(shm)?, Some(file), cfg)
    }

    /// Serves an already checked ring (`uio`: the file to notify; `None` for a fake ring).
    ///
    /// # Errors
    /// None today beyond the ring's (kept for symmetry with [`TcmuDevice::open`]).
    pub fn with_ring(
        target: &Arc<Target>,
        ring: Ring,
        uio: Option<File>,
        cfg: TcmuConfig,
    ) -> Result<Arc<Self>, TcmuError> {
        let tail = ring.tail();
        let comp = Mutex::new(Completer { tail, ..Completer::default() });
        let shared = Arc::new(Shared {
            ring,
            uio,
            comp,
            inflight: Mutex::new(vec![None; 1 << 16]),
            stats: TcmuStats::default(),
        });
        let port = Arc::new(TargetPort {
            protocol: ProtocolId::NONE,
            rel_port_id: cfg.rel_port_id,
            name: format!("{},t,0x{:04x}", target.name(), cfg.rel_port_id),
            version_descriptor: 0,
            tpg_id: cfg.tpg_id,
        });
        let scfg = SessionConfig {
            initiator_port: format!("{},i,tcmu", cfg.initiator_name),
            initiator_name: cfg.initiator_name.clone(),
            port,
            depth: 1024,
        };
        let session = target.register_session(scfg, Arc::new(Fabric(shared.clone())));
        Ok(Arc::new(Self { shared, session, lun: Lun(cfg.lun).to_sam(), next: Mutex::new(tail) }))
    }

    /// The nexus.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The counters.
    pub fn stats(&self) -> &TcmuStats {
        &self.shared.stats
    }

    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.shared.ring
    }

    /// Parses and submits every entry from our position to `cmd_head`; returns how many entries
    /// were consumed.
    ///
    /// # Errors
    /// [`RingError`] when the ring is broken (nothing after the bad point is touched).
    pub fn process(&self) -> Result<usize, RingError> {
        let ring = &self.shared.ring;
        let mut next = self.next.lock();
        let head = ring.head()?;
        let mut n = 0;
        while *next != head {
            let (entry, len) = ring.entry(*next)?;
            let off = *next;
            *next = (off + len) % ring.cmdr_size;
            n += 1;
            let is_cmd = !matches!(entry, Entry::Skip);
            self.shared.comp.lock().slots.push_back((off, len, is_cmd));
            match entry {
                Entry::Skip => {
                    self.shared.stats.skipped.fetch_add(1, Ordering::Relaxed);
                }
                Entry::Bad(r) => {
                    self.shared.stats.bad_entries.fetch_add(1, Ordering::Relaxed);
                    self.shared.push(r);
                }
                Entry::Unknown(id) => {
                    self.shared.stats.bad_entries.fetch_add(1, Ordering::Relaxed);
                    let mut r = Response::status(id, ScsiStatus::GOOD);
                    r.uflags = UFLAG_UNKNOWN_OP;
                    self.shared.push(r);
                }
                Entry::Cmd(req) => self.submit(req),
            }
        }
        // Trailing PAD/TMR entries: let the tail pass them.
        let moved = self.shared.comp.lock().flush(ring);
        if moved {
            self.shared.kick();
        }
        Ok(n)
    }

    fn submit(&self, req: Request) {
        let sh = &self.shared;
        sh.stats.commands.fetch_add(1, Ordering::Relaxed);
        let id = req.cmd_id;
        let len = req.data_len();
        let Ok(expected_len) = u32::try_from(len) else {
            return sh.push(Response::check(id, SenseCode::INVALID_FIELD_IN_CDB));
        };
        // The ring does not say the direction: the opcode does (unknown opcodes fail in the core).
        let expected_dir = match scst::ops::lookup(scst::ops::DISK_OPS, &req.cdb) {
            _ if len == 0 => DataDir::None,
            Ok(op) if op.dir != DataDir::None => op.dir,
            _ => DataDir::In,
        };
        {
            let mut inf = sh.inflight.lock();
            let slot = &mut inf[usize::from(id)];
            if slot.is_some() {
                // The kernel reused an id still in flight: a broken ring; refuse the newcomer.
                drop(inf);
                sh.stats.bad_entries.fetch_add(1, Ordering::Relaxed);
                return sh.push(Response::check(id, SenseCode::INTERNAL_TARGET_FAILURE));
            }
            *slot = Some(req.iov.clone());
        }
        let ch = CmdHeader {
            lun: self.lun,
            cdb: &req.cdb,
            attr: TaskAttr::Simple,
            tag: u64::from(id),
            expected_len,
            expected_dir,
        };
        let Ok(mut cmd) = self.session.alloc_cmd(&ch) else {
            sh.inflight.lock()[usize::from(id)] = None;
            return sh.push(Response::status(id, Session::task_set_full()));
        };
        cmd.fabric_cookie = u64::from(id);
        let mut step = self.session.submit(cmd);
        loop {
            match step {
                Step::NeedData(mut c) => {
                    let want = c.data_out_len();
                    let mut off = 0;
                    let mut short = false;
                    if let Some(buf) = c.buf_mut() {
                        buf.for_each_mut(0, want, |seg| {
                            let n = sh.ring.gather(&req.iov, off, seg);
                            short |= n != seg.len();
                            off += n;
                        });
                    }
                    if short {
                        drop(c);
                        sh.inflight.lock()[usize::from(id)] = None;
                        return sh.push(Response::check(id, SenseCode::INTERNAL_TARGET_FAILURE));
                    }
                    step = self.session.data_received(c);
                }
                Step::Done(c) => {
                    sh.complete(c);
                    break;
                }
                Step::Pending => break,
            }
        }
    }

    /// Serves the ring until `stop` is set: waits for the kernel's notification on the UIO file
    /// (polling every 100 ms for `stop`) and processes new entries.
    ///
    /// # Errors
    /// A broken ring or a failing UIO file.
    pub fn serve(&self, stop: &AtomicBool) -> Result<(), TcmuError> {
        let Some(f) = self.shared.uio.as_ref() else { return Ok(()) };
        let io = |e| TcmuError::Io("uio".into(), e);
        self.process()?;
        while !stop.load(Ordering::Relaxed) {
            let mut pfd = libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd for the duration of the call.
            let r = unsafe { libc::poll(&mut pfd, 1, 100) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io(e));
            }
            if r > 0 {
                let mut cnt = [0u8; 4];
                // The event count itself does not matter: cmd_head does.
                let _ = (&*f).read(&mut cnt).map_err(io)?;
            }
            self.process()?;
        }
        Ok(())
    }
}

impl Drop for TcmuDevice {
    fn drop(&mut self) {
        self.session.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scst::{Device, DeviceConfig, Disk, SgvConfig, SgvPool};
    use scst_backends::RamStore;

    const CMDR_OFF: u32 = 128;
    const CMDR_SIZE: u32 = 1024;
    const DATA_OFF: u64 = (CMDR_OFF + CMDR_SIZE) as u64;
    const MAP: usize = DATA_OFF as usize + 8192;

    /// A fake ring as the kernel lays it out, with a writer that appends entries at `head`.
    struct Fake {
        shm: Shm,
        head: u32,
    }

    impl Fake {
        fn new() -> Self {
            let shm = Shm::owned(MAP);
            shm.write(0, &MAILBOX_VERSION.to_ne_bytes()).unwrap();
            shm.write(2, &(FLAG_CAP_OOOC | FLAG_CAP_READ_LEN).to_ne_bytes()).unwrap();
            shm.write(4, &CMDR_OFF.to_ne_bytes()).unwrap();
            shm.write(8, &CMDR_SIZE.to_ne_bytes()).unwrap();
            Self { shm, head: 0 }
        }

        fn at(&self, off: u32) -> u64 {
            u64::from(CMDR_OFF + off)
        }

        /// Appends a command entry (the CDB stored after the iovecs, as the kernel does).
        fn cmd(&mut self, id: u16, cdb: &[u8], iov: &[(u64, u64)]) -> u32 {
            let len = (REQ_IOV + iov.len() * IOVEC_LEN + cdb.len()).max(ENTRY_LEN).next_multiple_of(8) as u32;
            if self.head + len > CMDR_SIZE {
                self.pad();
            }
            let off = self.head;
            let b = self.at(off);
            self.shm.write(b, &vec![0; len as usize]).unwrap();
            self.shm.write(b, &(len | OP_CMD).to_ne_bytes()).unwrap();
            self.shm.write(b + 4, &id.to_ne_bytes()).unwrap();
            self.shm.write(b + REQ_IOV_CNT as u64, &(iov.len() as u32).to_ne_bytes()).unwrap();
            for (i, &(base, l)) in iov.iter().enumerate() {
                let a = b + (REQ_IOV + i * IOVEC_LEN) as u64;
                self.shm.write(a, &base.to_ne_bytes()).unwrap();
                self.shm.write(a + 8, &l.to_ne_bytes()).unwrap();
            }
            let cdb_off = b + (REQ_IOV + iov.len() * IOVEC_LEN) as u64;
            self.shm.write(b + REQ_CDB_OFF as u64, &cdb_off.to_ne_bytes()).unwrap();
            self.shm.write(cdb_off, cdb).unwrap();
            self.advance(len);
            off
        }

        fn raw(&mut self, len_op: u32, id: u16) -> u32 {
            let off = self.head;
            self.shm.write(self.at(off), &len_op.to_ne_bytes()).unwrap();
            self.shm.write(self.at(off) + 4, &id.to_ne_bytes()).unwrap();
            self.advance((len_op & !7).max(8));
            off
        }

        fn pad(&mut self) {
            let len = CMDR_SIZE - self.head;
            self.raw(len | OP_PAD, 0);
        }

        fn advance(&mut self, len: u32) {
            self.head = (self.head + len) % CMDR_SIZE;
        }

        fn publish(&self) {
            self.shm.write(u64::from(MB_CMD_HEAD as u32), &self.head.to_ne_bytes()).unwrap();
        }
    }

    /// What the kernel would read back from a slot: (cmd_id, uflags, status, read_len, sense).
    fn rsp(shm: &Shm, off: u32) -> (u16, u8, u8, u32, Vec<u8>) {
        let b = u64::from(CMDR_OFF + off);
        let mut sense = vec![0; SENSE_BUFFERSIZE];
        shm.read(b + RSP_SENSE as u64, &mut sense).unwrap();
        let mut u = [0u8; 1];
        shm.read(b + 7, &mut u).unwrap();
        let mut st = [0u8; 1];
        shm.read(b + RSP_STATUS as u64, &mut st).unwrap();
        (shm.u16(b + 4).unwrap(), u[0], st[0], shm.u32(b + RSP_READ_LEN as u64).unwrap(), sense)
    }

    fn target() -> Arc<Target> {
        let target = Target::new("iqn.2026-12.rs.scst:tcmu-test", SgvPool::new(SgvConfig::default()));
        let disk = Disk::new(RamStore::new(1 << 20, 512).unwrap());
        target.add_lun(Lun(0), Device::new(DeviceConfig::new("tcmu-ram"), disk).unwrap(), false).unwrap();
        target
    }

    /// A second view of the fake's buffer, as the kernel and we share one mapping (`owned`
    /// is an empty box so that dropping the view unmaps nothing).
    fn view(fake: &Fake) -> Shm {
        Shm { ptr: fake.shm.ptr, len: fake.shm.len, owned: Some(Box::new([])) }
    }

    fn device(fake: &Fake, target: &Arc<Target>) -> Arc<TcmuDevice> {
        TcmuDevice::with_ring(target, Ring::new(view(fake)).unwrap(), None, TcmuConfig::default()).unwrap()
    }

    fn tail(fake: &Fake) -> u32 {
        fake.shm.u32(MB_CMD_TAIL as u64).unwrap()
    }

    /// Runs TEST UNIT READY until the power-on unit attention is consumed.
    fn clear_ua(fake: &mut Fake, dev: &TcmuDevice) {
        for id in 900..904 {
            let off = fake.cmd(id, &[0, 0, 0, 0, 0, 0], &[]);
            fake.publish();
            dev.process().unwrap();
            if rsp(&fake.shm, off).2 == 0 {
                return;
            }
        }
        panic!("unit attention never cleared");
    }

    /// The offsets follow C's layout rules for the kernel's structs: the packed entry around a
    /// naturally aligned `req` (a mirror `repr(C)` struct) and `rsp`.
    #[test]
    fn entry_offsets_follow_the_c_layout() {
        #[repr(C)]
        struct Req {
            iov_cnt: u32,
            iov_bidi_cnt: u32,
            iov_dif_cnt: u32,
            cdb_off: u64,
            pad1: u64,
            pad2: u64,
        }
        #[repr(C)]
        struct Rsp {
            scsi_status: u8,
            pad1: u8,
            pad2: u16,
            read_len: u32,
            sense: [u8; SENSE_BUFFERSIZE],
        }
        assert_eq!(HDR_LEN + std::mem::offset_of!(Req, iov_cnt), REQ_IOV_CNT);
        assert_eq!(HDR_LEN + std::mem::offset_of!(Req, iov_bidi_cnt), REQ_IOV_BIDI_CNT);
        assert_eq!(HDR_LEN + std::mem::offset_of!(Req, iov_dif_cnt), REQ_IOV_DIF_CNT);
        assert_eq!(HDR_LEN + std::mem::offset_of!(Req, cdb_off), REQ_CDB_OFF);
        assert_eq!(HDR_LEN + size_of::<Req>(), REQ_IOV, "iov[] follows req");
        assert_eq!(size_of::<libc::iovec>(), IOVEC_LEN);
        assert_eq!(HDR_LEN + std::mem::offset_of!(Rsp, scsi_status), RSP_STATUS);
        assert_eq!(HDR_LEN + std::mem::offset_of!(Rsp, read_len), RSP_READ_LEN);
        assert_eq!(HDR_LEN + std::mem::offset_of!(Rsp, sense), RSP_SENSE);
        assert_eq!(HDR_LEN + size_of::<Rsp>().max(size_of::<Req>()), ENTRY_LEN);
        let _ = Req { iov_cnt: 0, iov_bidi_cnt: 0, iov_dif_cnt: 0, cdb_off: 0, pad1: 0, pad2: 0 };
        let _ = Rsp { scsi_status: 0, pad1: 0, pad2: 0, read_len: 0, sense: [0; SENSE_BUFFERSIZE] };
    }

    #[test]
    fn write_then_read_through_split_iovecs() {
        let t = target();
        let mut f = Fake::new();
        let dev = device(&f, &t);
        clear_ua(&mut f, &dev);
        let block: Vec<u8> = (0..512u32).map(|i| (i * 7 + 3) as u8).collect();
        f.shm.write(DATA_OFF, &block).unwrap();
        let w = f.cmd(1, &[0x2a, 0, 0, 0, 0, 5, 0, 0, 1, 0], &[(DATA_OFF, 512)]);
        f.publish();
        assert_eq!(dev.process().unwrap(), 1);
        assert_eq!(rsp(&f.shm, w).0, 1);
        assert_eq!(rsp(&f.shm, w).2, 0, "WRITE(10) GOOD");
        assert_eq!(tail(&f), f.head);
        // READ(10) of the same block into two iovecs elsewhere in the data area.
        let (a, b) = (DATA_OFF + 4096, DATA_OFF + 1024);
        let r = f.cmd(2, &[0x28, 0, 0, 0, 0, 5, 0, 0, 1, 0], &[(a, 100), (b, 412)]);
        f.publish();
        dev.process().unwrap();
        let (id, uflags, status, read_len, _) = rsp(&f.shm, r);
        assert_eq!((id, status, read_len), (2, 0, 512));
        assert_eq!(uflags & UFLAG_READ_LEN, UFLAG_READ_LEN);
        let mut back = vec![0u8; 512];
        f.shm.read(a, &mut back[..100]).unwrap();
        f.shm.read(b, &mut back[100..]).unwrap();
        assert_eq!(back, block);
        assert_eq!(tail(&f), f.head);
    }

    /// FILEIO on a disk file runs WRITEs on device workers: their completions arrive through
    /// `xmit_response`, on other threads and in any order, and must still land in ring order.
    #[test]
    fn worker_completions_fill_the_ring_in_order() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let opts = scst_backends::FileOptions { size: Some(64 * 512), ..Default::default() };
        let store = scst_backends::FileStore::open(file.path(), opts).unwrap();
        let mut cfg = DeviceConfig::new("tcmu-file");
        cfg.threads = 4;
        let t = Target::new("iqn.2026-12.rs.scst:tcmu-file", SgvPool::new(SgvConfig::default()));
        t.add_lun(Lun(0), Device::new(cfg, Disk::new(store)).unwrap(), false).unwrap();
        let mut f = Fake::new();
        let dev = device(&f, &t);
        clear_ua(&mut f, &dev);
        let mut slots = Vec::new();
        for i in 0..8u16 {
            let data = vec![0x40 + i as u8; 512];
            let at = DATA_OFF + u64::from(i) * 512;
            f.shm.write(at, &data).unwrap();
            let lba = i as u8;
            slots.push(f.cmd(100 + i, &[0x2a, 0, 0, 0, 0, lba, 0, 0, 1, 0], &[(at, 512)]));
        }
        f.publish();
        assert!(dev.process().unwrap() >= 8, "8 commands (and a PAD where the ring wrapped)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tail(&f) != f.head {
            assert!(std::time::Instant::now() < deadline, "completions never reached the tail");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut ids: Vec<u16> = slots.iter().map(|&s| rsp(&f.shm, s).0).collect();
        assert!(slots.iter().all(|&s| rsp(&f.shm, s).2 == 0), "all GOOD");
        ids.sort_unstable();
        assert_eq!(ids, (100..108).collect::<Vec<_>>(), "every command answered once");
        assert!(dev.stats().async_completions.load(Ordering::Relaxed) >= 1, "went through the workers");
        for i in 0..8u16 {
            let at = DATA_OFF + 4096;
            let off = f.cmd(200 + i, &[0x28, 0, 0, 0, 0, i as u8, 0, 0, 1, 0], &[(at, 512)]);
            f.publish();
            dev.process().unwrap();
            while tail(&f) != f.head {
                assert!(std::time::Instant::now() < deadline, "READ never completed");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert_eq!(rsp(&f.shm, off).2, 0);
            let mut back = [0u8; 512];
            f.shm.read(at, &mut back).unwrap();
            assert_eq!(back, [0x40 + i as u8; 512], "LBA {i}");
        }
    }

    #[test]
    fn inquiry_data_reaches_the_data_area() {
        let t = target();
        let mut f = Fake::new();
        let dev = device(&f, &t);
        clear_ua(&mut f, &dev);
        let off = f.cmd(7, &[0x12, 0, 0, 0, 96, 0], &[(DATA_OFF, 96)]);
        f.publish();
        dev.process().unwrap();
        let (id, _, status, read_len, _) = rsp(&f.shm, off);
        assert_eq!((id, status), (7, 0));
        assert!((36..=96).contains(&read_len), "{read_len}");
        let mut inq = [0u8; 36];
        f.shm.read(DATA_OFF, &mut inq).unwrap();
        assert_eq!(inq[0] & 0x1f, 0, "direct-access device");
    }

    #[test]
    fn pad_wraps_the_ring() {
        let t = target();
        let mut f = Fake::new();
        let dev = device(&f, &t);
        clear_ua(&mut f, &dev);
        // Fill until the next 112-byte entry no longer fits, forcing a PAD and a wrap.
        let mut last = 0;
        for id in 10..30u16 {
            let before = f.head;
            last = f.cmd(id, &[0, 0, 0, 0, 0, 0], &[]);
            f.publish();
            dev.process().unwrap();
            assert_eq!(rsp(&f.shm, last).0, id);
            assert_eq!(rsp(&f.shm, last).2, 0);
            assert_eq!(tail(&f), f.head);
            if last < before {
                break;
            }
        }
        assert_eq!(last, 0, "the last command was written at the ring start after a PAD");
        assert!(dev.stats().skipped.load(Ordering::Relaxed) >= 1);
    }

    #[test]
    fn iovec_outside_the_data_area_gets_check_condition() {
        let t = target();
        let mut f = Fake::new();
        let dev = device(&f, &t);
        // Into the ring itself, past the mapping, and a wrapping length.
        let bad = [(u64::from(CMDR_OFF), 512), (MAP as u64 - 100, 512), (DATA_OFF, u64::MAX)];
        for (i, iov) in bad.into_iter().enumerate() {
            let id = 40 + i as u16;
            let off = f.cmd(id, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[iov]);
            f.publish();
            dev.process().unwrap();
            let (rid, _, status, _, sense) = rsp(&f.shm, off);
            assert_eq!((rid, status), (id, ScsiStatus::CHECK_CONDITION.0));
            assert_eq!(
                (sense[2] & 0xf, sense[12], sense[13]),
                (4, 0x44, 0),
                "HARDWARE ERROR / INTERNAL TARGET FAILURE"
            );
        }
        assert_eq!(tail(&f), f.head);
        assert_eq!(dev.stats().bad_entries.load(Ordering::Relaxed), 3);
        assert_eq!(dev.stats().commands.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn bad_cdb_offset_and_iov_count_are_refused() {
        let t = target();
        let mut f = Fake::new();
        let dev = device(&f, &t);
        let off = f.cmd(50, &[0, 0, 0, 0, 0, 0], &[]);
        f.shm.write(f.at(off) + REQ_CDB_OFF as u64, &(MAP as u64).to_ne_bytes()).unwrap();
        let off2 = f.cmd(51, &[0, 0, 0, 0, 0, 0], &[]);
        f.shm.write(f.at(off2) + REQ_IOV_CNT as u64, &u32::MAX.to_ne_bytes()).unwrap();
        let off3 = f.cmd(52, &[0, 0, 0, 0, 0, 0], &[]);
        f.shm.write(f.at(off3) + REQ_IOV_BIDI_CNT as u64, &1u32.to_ne_bytes()).unwrap();
        f.publish();
        assert_eq!(dev.process().unwrap(), 3);
        assert_eq!(rsp(&f.shm, off).2, ScsiStatus::CHECK_CONDITION.0);
        assert_eq!(rsp(&f.shm, off).4[12], 0x44);
        assert_eq!(rsp(&f.shm, off2).4[12], 0x44);
        let (id, _, st, _, sense) = rsp(&f.shm, off3);
        assert_eq!((id, st, sense[2] & 0xf, sense[12]), (52, 2, 5, 0x24), "bidi: INVALID FIELD IN CDB");
    }

    #[test]
    fn unknown_op_is_flagged_and_tmr_skipped() {
        let t = target();
        let mut f = Fake::new();
        let dev = device(&f, &t);
        let tmr = f.raw(ENTRY_LEN as u32 | OP_TMR, 0);
        let unk = f.raw(ENTRY_LEN as u32 | 5, 77);
        f.publish();
        assert_eq!(dev.process().unwrap(), 2);
        let (id, uflags, ..) = rsp(&f.shm, unk);
        assert_eq!((id, uflags & UFLAG_UNKNOWN_OP), (77, UFLAG_UNKNOWN_OP));
        assert_eq!(tail(&f), f.head);
        assert_eq!(tmr, 0);
        assert_eq!(dev.stats().skipped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn broken_headers_stop_the_poller_without_moving_the_tail() {
        for len_op in [0u32, OP_CMD, (CMDR_SIZE + 8) | OP_CMD, 16 | OP_CMD] {
            let t = target();
            let mut f = Fake::new();
            let dev = device(&f, &t);
            f.raw(len_op, 1);
            f.head = 112;
            f.publish();
            assert!(matches!(dev.process(), Err(RingError::Header { off: 0, .. })), "{len_op:#x}");
            assert_eq!(tail(&f), 0);
        }
        let t = target();
        let f = Fake::new();
        let dev = device(&f, &t);
        for h in [CMDR_SIZE, 12, u32::MAX - 7] {
            f.shm.write(MB_CMD_HEAD as u64, &h.to_ne_bytes()).unwrap();
            assert_eq!(dev.process(), Err(RingError::Head(h)));
        }
    }

    #[test]
    fn mailbox_is_checked() {
        let f = Fake::new();
        f.shm.write(0, &1u16.to_ne_bytes()).unwrap();
        assert!(matches!(Ring::new(view(&f)), Err(RingError::Mailbox(_))));
        let f = Fake::new();
        f.shm.write(8, &(MAP as u32).to_ne_bytes()).unwrap();
        assert!(matches!(Ring::new(view(&f)), Err(RingError::Mailbox(_))));
        assert!(matches!(Ring::new(Shm::owned(16)), Err(RingError::Mailbox(_))));
    }

    #[test]
    fn out_of_order_completions_fill_slots_in_ring_order() {
        let mut f = Fake::new();
        let a = f.cmd(1, &[0, 0, 0, 0, 0, 0], &[]);
        let b = f.cmd(2, &[0, 0, 0, 0, 0, 0], &[]);
        let ring = Ring::new(view(&f)).unwrap();
        let mut c = Completer::default();
        c.slots.push_back((a, 112, true));
        c.slots.push_back((b, 112, true));
        c.slots.push_back((224, 800, false));
        // Command 2 finishes first: it takes the first slot; the tail stops before slot b.
        c.done.push_back(Response::check(2, SenseCode::INVALID_OPCODE));
        assert!(c.flush(&ring));
        assert_eq!(tail(&f), 112);
        assert_eq!(rsp(&f.shm, a).0, 2);
        assert_eq!(rsp(&f.shm, a).4[12], 0x20);
        assert!(!c.flush(&ring), "nothing to publish");
        c.done.push_back(Response::status(1, ScsiStatus::GOOD));
        assert!(c.flush(&ring));
        assert_eq!(rsp(&f.shm, b).0, 1);
        assert_eq!(rsp(&f.shm, b).2, 0);
        assert_eq!(tail(&f), 0, "past the trailing PAD, wrapped");
    }

    #[test]
    fn gather_scatter_respect_the_iovecs() {
        let f = Fake::new();
        let ring = Ring::new(view(&f)).unwrap();
        let iov = [(DATA_OFF, 3), (DATA_OFF + 10, 5)];
        assert_eq!(ring.scatter(&iov, 1, b"abcdefghij"), 7);
        let mut d = [0u8; 16];
        f.shm.read(DATA_OFF, &mut d).unwrap();
        assert_eq!(&d, b"\0ab\0\0\0\0\0\0\0cdefg\0");
        let mut out = [0u8; 8];
        assert_eq!(ring.gather(&iov, 0, &mut out), 8);
        assert_eq!(&out, b"\0abcdefg");
        // An iovec past the mapping stops the copy instead of writing outside.
        let bad = [(DATA_OFF, 2), (MAP as u64 - 1, 4)];
        assert_eq!(ring.scatter(&bad, 0, b"xyzw"), 2);
    }
}
