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
//! A thread that made the [`scst::wait`] promise (an iSCSI connection's receive thread) gets a
//! ring of its own instead, created at its first submission ([`LocalRing`], `SINGLE_ISSUER` and
//! `DEFER_TASKRUN` where the kernel has them): the kernel completes an io_uring read or write in
//! the context of the task that submitted it, so with the shared ring every completion woke the
//! submitting thread (to post the completion) and then the completion thread (to act on it).
//! With its own ring the thread waits for its socket (a poll request on the same ring) and its
//! completions in one `io_uring_enter`, and completes its commands itself: no hand-off, one
//! wake-up. When its slots are all busy, further I/O goes to the shared ring.
//!
//! Where io_uring is unavailable (old kernel, `io_uring_disabled`, a seccomp filter) creating the
//! ring fails once, a warning says so, and the stores keep the worker threads.

#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use crossbeam_queue::ArrayQueue;
use io_uring::{IoUring, opcode, squeue, types};
use parking_lot::Mutex;
use scst::sgv::MAX_SEGS;
use scst::{BlockIo, IoKind};

/// I/Os in flight on the ring at most; more are refused (and run on a worker).
const SLOTS: u32 = 512;

/// I/Os in flight on one thread's own ring at most; more go to the shared ring.
const LOCAL_SLOTS: u32 = 128;

/// The `user_data` of a local ring's poll request on the thread's socket.
const POLL_TAG: u64 = u64::MAX;

/// Submissions and `io_uring_enter` calls that submit, over every ring of the process.
static SUBMITTED: AtomicU64 = AtomicU64::new(0);
static ENTERS: AtomicU64 = AtomicU64::new(0);

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
    /// A thread's own ring ([`LocalRing`]): entered through that thread's batch kick.
    local: bool,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("slots", &self.slots.len())
            .field("free", &self.free.len())
            .field("local", &self.local)
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

/// Enters the current thread's own ring for SQEs pushed inside a batch.
struct EnterLocal;

impl scst::batch::Kick for EnterLocal {
    fn kick(&self) {
        let l = LOCAL_RING.try_with(|l| l.borrow().clone()).ok().flatten();
        if let Some(l) = l {
            l.ring.enter();
        }
    }
}

fn enter_local_kick() -> &'static Arc<dyn scst::batch::Kick> {
    static KICK: OnceLock<Arc<dyn scst::batch::Kick>> = OnceLock::new();
    KICK.get_or_init(|| Arc::new(EnterLocal))
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
        Self::with(ring, SLOTS, false)
    }

    fn with(ring: IoUring, nslots: u32, local: bool) -> io::Result<Self> {
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for op in [opcode::Readv::CODE, opcode::Writev::CODE, opcode::Fsync::CODE, opcode::Nop::CODE] {
            if !probe.is_supported(op) {
                return Err(io::Error::new(io::ErrorKind::Unsupported, format!("opcode {op} not supported")));
            }
        }
        let free = ArrayQueue::new(nslots as usize);
        for i in 0..nslots {
            let _ = free.push(i);
        }
        Ok(Self { ring, sq: Mutex::new(()), slots: (0..nslots).map(|_| Mutex::new(None)).collect(), free, local })
    }

    /// I/Os submitted to the kernel so far by every ring of the process (resubmissions of short
    /// transfers included).
    pub(crate) fn submitted() -> u64 {
        SUBMITTED.load(Relaxed)
    }

    /// `io_uring_enter` calls made to submit, by every ring of the process.
    pub(crate) fn enters() -> u64 {
        ENTERS.load(Relaxed)
    }

    /// I/Os started and not yet completed.
    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Starts `io` on the descriptor `fd_for` picks for its segments (an `O_DIRECT` one when
    /// they are aligned, say), writing through with `dsync`; `Err(io)` when every slot is busy
    /// or the kernel refuses. On a thread with a ring of its own ([`LocalRing`]) it goes there
    /// while that ring has a free slot.
    pub(crate) fn submit(
        &self,
        io: BlockIo,
        dsync: bool,
        eof: AtEof,
        fd_for: impl FnOnce(&[libc::iovec]) -> RawFd,
    ) -> Result<(), BlockIo> {
        if !self.local
            && let Some(l) = LocalRing::current()
            && let Some(idx) = l.ring.free.pop()
        {
            return l.ring.start(idx, io, dsync, eof, fd_for);
        }
        let Some(idx) = self.free.pop() else { return Err(io) };
        self.start(idx, io, dsync, eof, fd_for)
    }

    fn start(
        &self,
        idx: u32,
        io: BlockIo,
        dsync: bool,
        eof: AtEof,
        fd_for: impl FnOnce(&[libc::iovec]) -> RawFd,
    ) -> Result<(), BlockIo> {
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
        SUBMITTED.fetch_add(1, Relaxed);
        let kick = if self.local { enter_local_kick() } else { enter_kick() };
        if !scst::batch::defer(kick) {
            self.enter();
        }
        Ok(())
    }

    /// Submits the SQEs pushed so far.
    fn enter(&self) {
        ENTERS.fetch_add(1, Relaxed);
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

thread_local! {
    static LOCAL_RING: RefCell<Option<Rc<LocalRing>>> = const { RefCell::new(None) };
    /// Creating this thread's ring failed once: it uses the shared one from then on.
    static LOCAL_FAILED: Cell<bool> = const { Cell::new(false) };
}

/// The ring of one thread that made the [`scst::wait`] promise: only that thread submits to
/// it, waits on it and completes its I/O (see the module documentation).
pub(crate) struct LocalRing {
    ring: Ring,
    /// A poll request on the thread's socket is on the ring.
    poll_armed: Cell<bool>,
}

impl LocalRing {
    /// The current thread's ring, created and registered with [`scst::wait`] on first use;
    /// `None` on a thread without the promise (or when the ring cannot be had).
    fn current() -> Option<Rc<Self>> {
        if !scst::wait::enabled() {
            return None;
        }
        let l = LOCAL_RING.try_with(|l| l.borrow().clone()).ok()?;
        let l = match l {
            Some(l) => l,
            None => {
                if LOCAL_FAILED.with(Cell::get) {
                    return None;
                }
                match Self::new() {
                    Ok(r) => {
                        let r = Rc::new(r);
                        LOCAL_RING.with_borrow_mut(|l| *l = Some(r.clone()));
                        r
                    }
                    Err(e) => {
                        tracing::debug!("no io_uring of this thread's own ({e}); the shared one serves it");
                        LOCAL_FAILED.with(|f| f.set(true));
                        return None;
                    }
                }
            }
        };
        // Registered again after a promise ended and a new one began on this thread; never used
        // while another source is this thread's (nothing would collect its completions).
        scst::wait::register(&l).then_some(l)
    }

    fn new() -> io::Result<Self> {
        // Room in the submission queue for every slot and the poll request.
        let entries = LOCAL_SLOTS * 2;
        let ring = IoUring::builder()
            .setup_cqsize(entries * 2)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
            .or_else(|_| IoUring::builder().setup_cqsize(entries * 2).build(entries))?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::PollAdd::CODE) {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "no IORING_OP_POLL_ADD"));
        }
        Ok(Self { ring: Ring::with(ring, LOCAL_SLOTS, true)?, poll_armed: Cell::new(false) })
    }

    /// Enters the ring (submitting what is queued) and waits for one completion at least.
    fn wait_one(&self) -> bool {
        loop {
            match self.ring.ring.submit_and_wait(1) {
                Ok(_) => return true,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // The completion queue is full: reaping makes room.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return true,
                Err(e) => {
                    tracing::error!("io_uring wait (thread's own ring): {e}");
                    return false;
                }
            }
        }
    }

    /// Finishes every completion posted so far; `true` when the poll request fired.
    fn reap(&self) -> bool {
        let mut polled = false;
        loop {
            // SAFETY: only this thread consumes this ring's completion queue (the ring is
            // reachable from this thread's local storage only, and `Rc` keeps it there).
            let c = unsafe { self.ring.ring.completion_shared().next() };
            let Some(c) = c else { return polled };
            if c.user_data() == POLL_TAG {
                self.poll_armed.set(false);
                polled = true;
            } else {
                self.ring.finish(c.user_data() as u32, c.result());
            }
        }
    }

    fn arm_poll(&self, fd: RawFd) -> bool {
        let sqe =
            opcode::PollAdd::new(types::Fd(fd), (libc::POLLIN | libc::POLLRDHUP) as u32).build().user_data(POLL_TAG);
        let _g = self.ring.sq.lock();
        // SAFETY: one producer (the `sq` lock, and only this thread uses this ring); the entry
        // refers to no memory of ours.
        let pushed = unsafe {
            let mut sq = self.ring.ring.submission_shared();
            let ok = sq.push(&sqe).is_ok();
            sq.sync();
            ok
        };
        self.poll_armed.set(pushed);
        pushed
    }
}

/// Whether `fd` has input (or an error or hang-up) now.
fn readable_now(fd: RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
    // SAFETY: one valid pollfd, no waiting.
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}

impl scst::wait::LocalCompletions for LocalRing {
    fn pending(&self) -> bool {
        self.ring.in_flight() > 0
    }

    fn wait_readable(&self, fd: RawFd) {
        // A poll request armed in this call fires for bytes not read yet; one left from an
        // earlier call may fire for bytes the caller has read since.
        let mut fresh = false;
        while self.ring.in_flight() > 0 {
            if !self.poll_armed.get() {
                if !self.arm_poll(fd) {
                    return;
                }
                fresh = true;
            }
            if !self.wait_one() {
                // Cannot wait here: the caller's read waits instead; the completions are
                // collected at its next wait.
                return;
            }
            let polled = self.reap();
            // What the completions queued (responses, resubmissions) goes before the next wait.
            scst::batch::flush();
            if polled && (fresh || readable_now(fd)) {
                return;
            }
        }
    }

    fn drain(&self) {
        while self.ring.in_flight() > 0 {
            if !self.wait_one() {
                // The ring is unusable; the buffers of what is in flight must not be freed
                // under the kernel, so keep trying at a slow pace.
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            self.reap();
            scst::batch::flush();
        }
    }
}

impl Drop for LocalRing {
    fn drop(&mut self) {
        // Normally drained when the thread's promise ended; never free buffers the kernel may
        // still write.
        if self.ring.in_flight() > 0 {
            scst::wait::LocalCompletions::drain(self);
        }
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
