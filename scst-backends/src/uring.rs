//! Asynchronous block I/O through io_uring, shared by FILEIO and BLOCKIO.
//!
//! One ring per process ([`Ring::shared`]), created on first use. Any thread submits: a
//! [`BlockIo`] takes a free slot (its `iovec` array lives there, at a fixed address, until the
//! I/O completes) and the SQE is pushed under a short lock. The kernel is entered at once, or,
//! on a thread inside a [`scst::batch`] (a fabric's receive thread between two socket reads, this
//! ring's own completion thread), once at the end of the batch for all the SQEs pushed in it: a
//! command started on a fabric thread is on its way to the device before that thread next reads
//! the socket. One completion thread per ring waits in `io_uring_enter`, finishes short transfers
//! by resubmitting the rest, and completes each command from there: the command crosses exactly
//! one thread boundary, as on the worker path, but no thread sits in a blocking `pwritev` and
//! the kernel queues every command in flight to the device at once.
//!
//! Where io_uring is unavailable (old kernel, `io_uring_disabled`, a seccomp filter) creating the
//! ring fails once, a warning says so, and the stores keep the worker threads.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use crossbeam_queue::ArrayQueue;
use io_uring::{IoUring, opcode, squeue, types};
use parking_lot::Mutex;
use scst::sgv::MAX_SEGS;
use scst::{BlockIo, IoKind};

/// I/Os in flight on the ring at most; more are refused (and run on a worker).
const SLOTS: u32 = 512;

/// How a store reads past its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtEof {
    /// A regular file that shrank: the rest reads as zeros (as the synchronous path does).
    Zeros,
    /// A block device: an error.
    Error,
}

/// Which I/O path a FILEIO or BLOCKIO store uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AioMode {
    /// io_uring where the kernel allows it, else worker threads (the default).
    #[default]
    Auto,
    /// io_uring; opening the store fails where it is unavailable.
    Uring,
    /// Device worker threads with synchronous `preadv2`/`pwritev2`.
    Threads,
}

struct InFlight {
    io: BlockIo,
    iov: [libc::iovec; MAX_SEGS],
    nseg: usize,
    /// Bytes transferred so far.
    done: usize,
    /// The first segment not yet fully transferred.
    first: usize,
    fd: RawFd,
    /// `RWF_DSYNC` on writes.
    dsync: bool,
    eof: AtEof,
}

// SAFETY: the raw pointers in `iov` point into the command's buffer, which `io` owns and which
// does not move; whoever holds the slot (the submitter, then the completion thread, never both)
// is the only one to touch them.
unsafe impl Send for InFlight {}

/// The process's io_uring instance and its completion thread.
pub(crate) struct Ring {
    ring: IoUring,
    /// Serializes pushes onto the submission queue (one producer at a time).
    sq: Mutex<()>,
    slots: Box<[Mutex<Option<InFlight>>]>,
    free: ArrayQueue<u32>,
    /// Submissions and completions, for the log and tests.
    submitted: AtomicU64,
    /// `io_uring_enter` calls made to submit (the completion thread's waits not counted).
    enters: AtomicU64,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("slots", &self.slots.len())
            .field("free", &self.free.len())
            .field("submitted", &self.submitted())
            .field("enters", &self.enters.load(Relaxed))
            .finish()
    }
}

static RING: OnceLock<Option<&'static Ring>> = OnceLock::new();

/// Enters the shared ring for SQEs pushed inside a batch (see [`scst::batch`]).
struct Enter;

impl scst::batch::Kick for Enter {
    fn kick(&self) {
        if let Some(r) = Ring::existing() {
            r.enter();
        }
    }
}

fn enter_kick() -> &'static Arc<dyn scst::batch::Kick> {
    static KICK: OnceLock<Arc<dyn scst::batch::Kick>> = OnceLock::new();
    KICK.get_or_init(|| Arc::new(Enter))
}

impl Ring {
    /// The shared ring, created (with its completion thread) on first use; `None` where io_uring
    /// is unavailable (logged once).
    pub(crate) fn shared() -> Option<&'static Self> {
        *RING.get_or_init(|| match Self::new() {
            Ok(r) => {
                let r: &'static Self = Box::leak(Box::new(r));
                match std::thread::Builder::new().name("scst-uring".into()).spawn(move || r.reap()) {
                    Ok(_) => {
                        tracing::info!("block I/O: io_uring ({SLOTS} I/Os in flight), no worker hand-off");
                        Some(r)
                    }
                    Err(e) => {
                        tracing::warn!("block I/O: no io_uring completion thread ({e}); using worker threads");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!("block I/O: io_uring unavailable ({e}); using worker threads");
                None
            }
        })
    }

    /// The shared ring if one was created.
    pub(crate) fn existing() -> Option<&'static Self> {
        RING.get().copied().flatten()
    }

    fn new() -> io::Result<Self> {
        let ring = IoUring::builder().setup_cqsize(SLOTS * 2).build(SLOTS)?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for op in [opcode::Readv::CODE, opcode::Writev::CODE, opcode::Fsync::CODE, opcode::Nop::CODE] {
            if !probe.is_supported(op) {
                return Err(io::Error::new(io::ErrorKind::Unsupported, format!("opcode {op} not supported")));
            }
        }
        let free = ArrayQueue::new(SLOTS as usize);
        for i in 0..SLOTS {
            let _ = free.push(i);
        }
        Ok(Self {
            ring,
            sq: Mutex::new(()),
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
            free,
            submitted: AtomicU64::new(0),
            enters: AtomicU64::new(0),
        })
    }

    /// I/Os submitted to the kernel so far (resubmissions of short transfers included).
    pub(crate) fn submitted(&self) -> u64 {
        self.submitted.load(Relaxed)
    }

    /// `io_uring_enter` calls made to submit.
    pub(crate) fn enters(&self) -> u64 {
        self.enters.load(Relaxed)
    }

    /// Starts `io` on the descriptor `fd_for` picks for its segments (an `O_DIRECT` one when
    /// they are aligned, say), writing through with `dsync`; `Err(io)` when every slot is busy
    /// or the kernel refuses.
    pub(crate) fn submit(
        &self,
        io: BlockIo,
        dsync: bool,
        eof: AtEof,
        fd_for: impl FnOnce(&[libc::iovec]) -> RawFd,
    ) -> Result<(), BlockIo> {
        let Some(idx) = self.free.pop() else { return Err(io) };
        let mut slot = self.slots[idx as usize].lock();
        let iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_SEGS];
        let f = slot.insert(InFlight { io, iov, nseg: 0, done: 0, first: 0, fd: -1, dsync, eof });
        if f.io.kind() != IoKind::Flush {
            f.nseg = f.io.segments(&mut f.iov);
        }
        f.fd = fd_for(&f.iov[..f.nseg]);
        let sqe = Self::sqe(idx, f);
        drop(slot);
        if let Err(e) = self.push(&sqe) {
            let io = self.slots[idx as usize].lock().take().expect("slot filled above").io;
            let _ = self.free.push(idx);
            tracing::debug!("io_uring submission failed: {e}");
            return Err(io);
        }
        Ok(())
    }

    /// The SQE for what is left of a slot's transfer.
    fn sqe(idx: u32, f: &InFlight) -> squeue::Entry {
        let fd = types::Fd(f.fd);
        let off = f.io.offset() + f.done as u64;
        let rest = &f.iov[f.first..f.nseg];
        let (iov, n) = (rest.as_ptr(), rest.len() as u32);
        let e = match f.io.kind() {
            IoKind::Read => opcode::Readv::new(fd, iov, n).offset(off).build(),
            IoKind::Write => {
                let flags = if f.dsync { libc::RWF_DSYNC } else { 0 };
                opcode::Writev::new(fd, iov, n).offset(off).rw_flags(flags).build()
            }
            IoKind::Flush => opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build(),
        };
        e.user_data(u64::from(idx))
    }

    fn push(&self, sqe: &squeue::Entry) -> io::Result<()> {
        let _g = self.sq.lock();
        // SAFETY: the ring's submission queue has one producer at a time (the `sq` lock). The
        // entry's iovec array lives in its slot and the buffers in the slot's command, both
        // unmoved until the completion for this entry is reaped; the fd is the store's, open
        // for as long as a command of the store is in flight (the command keeps the store).
        unsafe {
            let mut sq = self.ring.submission_shared();
            if sq.push(sqe).is_err() {
                // Cannot happen (no more slots than entries), but never overwrite.
                return Err(io::Error::from(io::ErrorKind::WouldBlock));
            }
            sq.sync();
        }
        self.submitted.fetch_add(1, Relaxed);
        if !scst::batch::defer(enter_kick()) {
            self.enter();
        }
        Ok(())
    }

    /// Submits the SQEs pushed so far.
    fn enter(&self) {
        self.enters.fetch_add(1, Relaxed);
        match self.ring.submit() {
            Ok(_) => {}
            // The entries stay queued: the completion thread's next enter submits them.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY | libc::EINTR)) => {}
            // The ring is unusable; the entries are still on the queue and may be picked up by
            // the next enter, so they cannot be taken back: leave them, they complete with an
            // error.
            Err(e) => tracing::error!("io_uring_enter: {e}"),
        }
    }

    /// The completion thread: waits for completions and finishes each I/O.
    fn reap(&self) {
        let mut done: Vec<(u32, i32)> = Vec::with_capacity(SLOTS as usize);
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => {
                    tracing::error!("io_uring wait: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            }
            // SAFETY: this thread is the completion queue's only consumer.
            unsafe {
                let mut cq = self.ring.completion_shared();
                cq.sync();
                done.extend(cq.map(|c| (c.user_data() as u32, c.result())));
            }
            // One batch per wake-up: resubmissions enter the ring once, and a fabric that
            // defers its sends (iSCSI) sends the responses of a connection's completions together.
            let batch = scst::batch::begin();
            for (idx, res) in done.drain(..) {
                self.finish(idx, res);
            }
            drop(batch);
        }
    }

    /// One completion: resubmit the rest of a short transfer, or complete the I/O.
    fn finish(&self, idx: u32, res: i32) {
        let Some(slot) = self.slots.get(idx as usize) else { return };
        let mut g = slot.lock();
        let Some(f) = g.as_mut() else { return };
        let outcome = if res == -libc::EAGAIN || res == -libc::EINTR {
            None
        } else if res < 0 {
            Some(Err(io::Error::from_raw_os_error(-res)))
        } else if f.io.kind() == IoKind::Flush {
            Some(Ok(()))
        } else if res == 0 {
            // End of the file or device before the end of the transfer.
            match (f.io.kind(), f.eof) {
                (IoKind::Read, AtEof::Zeros) => {
                    let from = f.done;
                    f.io.zero_from(from);
                    Some(Ok(()))
                }
                (IoKind::Read, AtEof::Error) => Some(Err(io::ErrorKind::UnexpectedEof.into())),
                _ => Some(Err(io::ErrorKind::WriteZero.into())),
            }
        } else {
            advance(f, res as usize);
            (f.done >= f.io.len()).then_some(Ok(()))
        };
        match outcome {
            None => {
                // Short (or interrupted): the rest goes again from this thread.
                let sqe = Self::sqe(idx, f);
                drop(g);
                if let Err(e) = self.push(&sqe) {
                    self.complete(idx, Err(e));
                }
            }
            Some(r) => {
                drop(g);
                self.complete(idx, r);
            }
        }
    }

    fn complete(&self, idx: u32, r: io::Result<()>) {
        let Some(f) = self.slots[idx as usize].lock().take() else { return };
        let _ = self.free.push(idx);
        f.io.complete(r);
    }
}

/// Moves the slot's segments past `n` more transferred bytes: done segments drop off the
/// front, a partly done one starts later (in place: the array is the slot's own).
fn advance(f: &mut InFlight, mut n: usize) {
    f.done += n;
    while n > 0 && f.first < f.nseg {
        let v = &mut f.iov[f.first];
        if n >= v.iov_len {
            n -= v.iov_len;
            f.first += 1;
        } else {
            v.iov_base = v.iov_base.cast::<u8>().wrapping_add(n).cast();
            v.iov_len -= n;
            n = 0;
        }
    }
}
