//! The transmit side of a connection: every PDU the target sends goes through [`Tx`], which
//! owns StatSN and writes responses (Data-In PDUs, SCSI Response) with vectored writes straight
//! from the commands' buffers.
//!
//! Output is a queue of pieces (headers and digests in a scratch buffer, Data-In as references
//! into the commands' buffers) with the commands they belong to; a command is freed once its
//! last byte is out. Sends never block:
//! - the connection's receive thread queues the responses of the commands it completed inline
//!   and flushes the queue once before each read of the socket, so the responses to a burst of
//!   commands read by one `read` go out in one `sendmsg`;
//! - device workers (asynchronous completions) and PDUs sent from elsewhere queue and flush at
//!   once; a thread inside a [`scst::batch`] (the io_uring completion thread) queues and flushes
//!   once per connection when its batch flushes;
//! - a flush that meets a full socket leaves the rest queued and wakes the connection's flusher
//!   thread (started the first time the socket is full: an idle or light connection has none),
//!   which waits for the socket to drain (up to the send timeout, then the connection is
//!   dropped). A peer that stops reading therefore stalls only its own connection, never a
//!   device worker.
//!
//! A mutex serializes the queue, which also keeps StatSN in wire order.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use scst::{CmdBox, DataInHold, ScsiStatus, Session};

use crate::proto::bhs::{BHS_LEN, Digests, RESERVED_TAG, pad_len};
use crate::proto::build::{DataInHeader, ScsiResponseHeader, TargetSn};
use crate::proto::digest;

/// A piece of the output queue.
#[derive(Clone, Copy)]
enum Piece {
    /// Bytes `start..start + len` of the scratch buffer (headers, digests, small segments).
    Bytes { start: usize, len: usize },
    /// Data-In bytes `off..off + len` of queued command `seq`.
    Data { seq: u64, off: usize, len: usize },
    /// The same, for a command whose Data-In is a file range ([`scst::Cmd::data_in_file`]):
    /// sent with `sendfile`, straight from the page cache.
    File { seq: u64, off: usize, len: usize },
    /// `n` zero pad bytes.
    Pad(usize),
}

impl Piece {
    fn len(self) -> usize {
        match self {
            Self::Bytes { len, .. } | Self::Data { len, .. } | Self::File { len, .. } => len,
            Self::Pad(n) => n,
        }
    }
}

const ZERO_PAD: [u8; 3] = [0; 3];
/// IoSlices per `sendmsg`.
const IOV_BATCH: usize = 256;
/// The receive thread flushes its queue early past this many queued bytes...
const QUEUE_FLUSH_BYTES: usize = 1 << 20;
/// ...or this many queued commands.
const QUEUE_FLUSH_CMDS: usize = 64;
/// Commands freed per pass (they are dropped outside the lock).
const RELEASE_BATCH: usize = 32;
/// Scratch bytes already sent before the buffer is compacted while output is still queued.
const SCRATCH_COMPACT: usize = 256 << 10;
/// While READs sent from a file wait for the initiator's acknowledgement, the flusher looks at
/// the socket this often at first (a LAN acknowledges within this)...
const HOLD_POLL_MIN: Duration = Duration::from_micros(250);
/// ...then less and less often, down to this (a delayed acknowledgement, a slow peer).
const HOLD_POLL_MAX: Duration = Duration::from_millis(10);

struct Inner {
    sock: TcpStream,
    stat_sn: u32,
    scratch: Vec<u8>,
    pieces: VecDeque<Piece>,
    /// Bytes of the front piece already sent.
    front_sent: usize,
    /// Bytes queued and not sent.
    queued: usize,
    /// Bytes ever queued and ever sent on the connection: a command is freed once `sent`
    /// reaches the end of its output.
    total_queued: u64,
    total_sent: u64,
    /// Commands with queued output, oldest first: sequence number, end of output, command.
    cmds: VecDeque<(u64, u64, CmdBox)>,
    next_seq: u64,
    /// The socket was full: the flusher thread is (to be) waiting for it.
    blocked: bool,
    /// `O_NONBLOCK` is set on the socket for the `sendfile`s of a flush pass (cleared at its
    /// end: the receive thread reads with a timeout, and takes an `EAGAIN` for an idle tick).
    nonblock: bool,
    /// ITTs whose unsolicited data is still being drained: their responses wait in `parked`.
    draining: Vec<u32>,
    parked: Vec<CmdBox>,
    /// READs sent from a file whose bytes the initiator has not acknowledged yet, oldest first:
    /// the end of their output (as `total_sent` counts) and what keeps their range from writes
    /// ([`scst::Cmd::take_data_in_hold`]). The flusher releases them as acknowledgements come.
    holds: VecDeque<(u64, DataInHold)>,
}

/// Negotiated values the transmit path needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TxParams {
    pub(crate) digests: Digests,
    /// The initiator's MaxRecvDataSegmentLength: the largest data segment we may send.
    pub(crate) max_send_segment: u32,
    /// MaxBurstLength: a Data-In sequence (F bit) is at most this long.
    pub(crate) max_burst: u32,
}

/// Starts a connection's flusher thread (see [`Tx::set_flusher_start`]).
pub(crate) type FlusherStart = Box<dyn FnOnce() -> Option<JoinHandle<()>> + Send>;

/// A connection's transmit side.
pub(crate) struct Tx {
    inner: Mutex<Inner>,
    /// Wakes the flusher thread when the socket is full (and on kill).
    flusher: Condvar,
    /// Starts the flusher thread, taken the first time the socket is full (or by `kill`).
    flusher_start: Mutex<Option<FlusherStart>>,
    /// The flusher thread, once started, for the connection's end to join.
    flusher_thread: Mutex<Option<JoinHandle<()>>>,
    params: TxParams,
    /// The initiator's MaxRecvDataSegmentLength now (a Text Request may declare a new one).
    max_send_segment: AtomicU32,
    exp_cmd_sn: AtomicU32,
    /// The highest MaxCmdSN sent so far. Initiators ignore a MaxCmdSN that goes back (RFC 7143
    /// §4.2.2.1), so it never does: the window the initiator knows is up to this value, and
    /// the receive side accepts commands up to it.
    max_cmd_sn: AtomicU32,
    window: u32,
    session: Mutex<Option<Weak<Session>>>,
    dead: AtomicBool,
    /// How long a full socket may stay full before the connection is dropped.
    send_timeout: Duration,
    /// Connection id: responses of commands from other connections are dropped.
    pub(crate) conn_id: u64,
}

/// Commands taken off the queue, to be dropped once the lock is released (dropping a command
/// may complete a task management function, which sends).
struct Released {
    cmds: [Option<CmdBox>; RELEASE_BATCH],
    n: usize,
}

impl Released {
    fn new() -> Self {
        Self { cmds: [const { None }; RELEASE_BATCH], n: 0 }
    }

    fn full(&self) -> bool {
        self.n == RELEASE_BATCH
    }

    fn push(&mut self, c: CmdBox) {
        self.cmds[self.n] = Some(c);
        self.n += 1;
    }

    fn drop_all(&mut self) {
        for c in &mut self.cmds[..self.n] {
            drop(c.take());
        }
        self.n = 0;
    }
}

/// How a flush pass ended.
#[derive(PartialEq, Eq)]
enum Flushed {
    /// Nothing left.
    Empty,
    /// The socket is full.
    Blocked,
    /// The release batch filled up: drop it, then flush again.
    More,
    /// The connection failed.
    Dead,
}

impl Tx {
    pub(crate) fn new(
        sock: TcpStream,
        params: TxParams,
        stat_sn: u32,
        exp_cmd_sn: u32,
        window: u32,
        send_timeout: Duration,
        conn_id: u64,
    ) -> Self {
        // The queues start small and grow with the connection's load, once (an idle session
        // keeps little memory); their capacity is kept, so a busy connection does not allocate.
        Self {
            inner: Mutex::new(Inner {
                sock,
                stat_sn,
                scratch: Vec::with_capacity(1 << 10),
                pieces: VecDeque::with_capacity(16),
                front_sent: 0,
                queued: 0,
                total_queued: 0,
                total_sent: 0,
                cmds: VecDeque::with_capacity(4),
                next_seq: 0,
                blocked: false,
                nonblock: false,
                draining: Vec::new(),
                parked: Vec::new(),
                holds: VecDeque::new(),
            }),
            flusher: Condvar::new(),
            flusher_start: Mutex::new(None),
            flusher_thread: Mutex::new(None),
            max_send_segment: AtomicU32::new(params.max_send_segment),
            params,
            exp_cmd_sn: AtomicU32::new(exp_cmd_sn),
            max_cmd_sn: AtomicU32::new(exp_cmd_sn.wrapping_add(window.max(1)).wrapping_sub(1)),
            window,
            session: Mutex::new(None),
            dead: AtomicBool::new(false),
            send_timeout,
            conn_id,
        }
    }

    /// Sets how to start the flusher thread (which must run [`Tx::run_flusher`]); it is started
    /// the first time a flush finds the socket full. A start that returns `None` (no thread)
    /// drops the connection.
    pub(crate) fn set_flusher_start(&self, start: FlusherStart) {
        *self.flusher_start.lock() = Some(start);
    }

    /// The flusher thread, if one was started: to be joined after [`Tx::kill`].
    pub(crate) fn take_flusher(&self) -> Option<JoinHandle<()>> {
        self.flusher_thread.lock().take()
    }

    /// Starts the flusher thread unless it runs already (or the connection is dead).
    fn start_flusher(&self) {
        let mut start = self.flusher_start.lock();
        let Some(f) = start.take() else { return };
        // Started under the lock: `kill` takes it too, so a connection being torn down either
        // never gets a flusher or finds its handle stored for joining.
        if let Some(h) = f() {
            *self.flusher_thread.lock() = Some(h);
        } else {
            drop(start);
            tracing::warn!("cannot start the flusher thread of a full socket: dropping the connection");
            self.kill();
        }
    }

    pub(crate) fn set_session(&self, s: Weak<Session>) {
        *self.session.lock() = Some(s);
    }

    pub(crate) fn set_exp_cmd_sn(&self, v: u32) {
        self.exp_cmd_sn.store(v, Release);
    }

    /// Applies a MaxRecvDataSegmentLength the initiator declared in the full feature phase.
    pub(crate) fn set_max_send_segment(&self, v: u32) {
        self.max_send_segment.store(v, Relaxed);
    }

    /// The highest MaxCmdSN advertised: the last CmdSN the initiator may use.
    pub(crate) fn max_cmd_sn(&self) -> u32 {
        self.max_cmd_sn.load(Acquire)
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Relaxed)
    }

    /// Marks the connection dead and shuts the socket down (the receive thread then exits);
    /// queued output is dropped.
    pub(crate) fn kill(&self) {
        if self.dead.swap(true, Relaxed) {
            return;
        }
        let (cmds, parked, holds) = {
            let mut g = self.inner.lock();
            let _ = g.sock.shutdown(std::net::Shutdown::Both);
            g.pieces.clear();
            g.queued = 0;
            g.front_sent = 0;
            let sent = g.total_queued;
            g.total_sent = sent;
            (std::mem::take(&mut g.cmds), std::mem::take(&mut g.parked), std::mem::take(&mut g.holds))
        };
        // No flusher is started after this; one already running sees `dead` and returns.
        drop(self.flusher_start.lock().take());
        self.flusher.notify_all();
        // Outside the lock: dropping a command may complete a TMF, which sends.
        drop(cmds);
        drop(parked);
        drop(holds);
    }

    /// The sequence numbers for a PDU, with MaxCmdSN from the free command slots. `releasing`
    /// commands are freed once this PDU is out (the queued ones before it and the one it
    /// answers) and count as free already: the initiator cannot use the window before it got
    /// the PDU. Called with the `inner` lock held (which orders the updates of `max_cmd_sn`).
    fn sn(&self, stat_sn: u32, releasing: usize) -> TargetSn {
        let exp = self.exp_cmd_sn.load(Acquire);
        let outstanding = self
            .session
            .lock()
            .as_ref()
            .and_then(Weak::upgrade)
            .map_or(0, |s| s.outstanding().saturating_sub(releasing)) as u32;
        let free = self.window.saturating_sub(outstanding);
        // Slots taken by immediate commands, or by a command another thread has answered but
        // not yet dropped, would make the value go back: keep the highest one sent.
        let max = exp.wrapping_add(free).wrapping_sub(1);
        let prev = self.max_cmd_sn.load(Acquire);
        let max = if sn_lt(prev, max) { max } else { prev };
        self.max_cmd_sn.store(max, Release);
        TargetSn { stat_sn, exp_cmd_sn: exp, max_cmd_sn: max }
    }

    /// Sends a PDU with a data segment; `advance` says whether it consumes a StatSN (responses
    /// do; R2T and unsolicited NOP-In do not). `build` gets the sequence numbers and fills the
    /// BHS. The PDU goes after everything queued before it.
    pub(crate) fn send_pdu(&self, data: &[u8], advance: bool, build: impl FnOnce(TargetSn, &mut [u8; BHS_LEN])) {
        if self.is_dead() {
            return;
        }
        let mut g = self.inner.lock();
        let sn = self.sn(g.stat_sn, g.cmds.len());
        if advance {
            g.stat_sn = g.stat_sn.wrapping_add(1);
        }
        let mut bhs = [0u8; BHS_LEN];
        build(sn, &mut bhs);
        let d = self.params.digests;
        let start = g.scratch.len();
        g.scratch.extend_from_slice(&bhs);
        if d.header {
            let hd = digest::header_digest(&bhs, &[]);
            g.scratch.extend_from_slice(&hd);
        }
        if !data.is_empty() {
            let pad = pad_len(data.len());
            g.scratch.extend_from_slice(data);
            g.scratch.extend_from_slice(&ZERO_PAD[..pad]);
            if d.data {
                let dd = digest::data_digest([data], pad);
                g.scratch.extend_from_slice(&dd);
            }
        }
        let len = g.scratch.len() - start;
        push(&mut g, Piece::Bytes { start, len });
        self.flush_and_release(g);
    }

    /// Holds responses of `itt` until [`Tx::end_drain`]: its unsolicited Data-Out is still
    /// arriving and the initiator must not see the response first.
    pub(crate) fn begin_drain(&self, itt: u32) {
        self.inner.lock().draining.push(itt);
    }

    /// Ends a drain and sends the held response, if it came already.
    pub(crate) fn end_drain(&self, itt: u32) {
        let held = {
            let mut g = self.inner.lock();
            g.draining.retain(|i| *i != itt);
            let pos = g.parked.iter().position(|c| c.tag() as u32 == itt);
            pos.map(|p| g.parked.swap_remove(p))
        };
        if let Some(c) = held {
            self.send_response(c);
        }
    }

    /// Ends a drain without answering (a task management function ended the task). Returns
    /// whether its response was held here.
    pub(crate) fn cancel_drain(&self, itt: u32) -> bool {
        let held = {
            let mut g = self.inner.lock();
            g.draining.retain(|i| *i != itt);
            let pos = g.parked.iter().position(|c| c.tag() as u32 == itt);
            pos.map(|p| g.parked.swap_remove(p))
        };
        // Dropped outside the lock: releasing a command may complete a TMF, which sends.
        held.is_some()
    }

    /// Sends a completed command's Data-In and status now (as far as the socket takes it), then
    /// frees it. For completions on other threads than the connection's receive thread.
    ///
    /// Aborted commands get no response (RFC 7143 §11.5.1: the TMF response tells the story).
    pub(crate) fn send_response(&self, cmd: CmdBox) {
        if let Some(g) = self.enqueue(cmd) {
            self.flush_and_release(g);
        }
    }

    /// Queues a completed command's response; the receive thread flushes the queue before it
    /// next reads the socket ([`Tx::flush`]), or earlier when much is queued.
    pub(crate) fn queue_response(&self, cmd: CmdBox) {
        if let Some(g) = self.enqueue(cmd) {
            if g.queued >= QUEUE_FLUSH_BYTES || g.cmds.len() >= QUEUE_FLUSH_CMDS {
                self.flush_and_release(g);
            }
        }
    }

    /// Sends what is queued, as far as the socket takes it without waiting.
    pub(crate) fn flush(&self) {
        let g = self.inner.lock();
        if !g.pieces.is_empty() && !g.blocked {
            self.flush_and_release(g);
        }
    }

    /// Plans a command's response into the queue; `None` if it gets none (dropped, or parked
    /// until its unsolicited data is drained).
    fn enqueue(&self, cmd: CmdBox) -> Option<MutexGuard<'_, Inner>> {
        if self.is_dead() || (cmd.is_aborted() && !cmd.answers_task_aborted()) {
            return None;
        }
        let mut g = self.inner.lock();
        let itt = cmd.tag() as u32;
        if g.draining.contains(&itt) {
            g.parked.push(cmd);
            return None;
        }
        if self.is_dead() {
            drop(g);
            return None;
        }
        self.plan_response(&mut g, cmd);
        Some(g)
    }

    /// Appends a response's PDUs to the queue and the command to the queued commands.
    fn plan_response(&self, g: &mut Inner, cmd: CmdBox) {
        let p = self.params;
        let seq = g.next_seq;
        g.next_seq += 1;
        let itt = cmd.tag() as u32;
        let lun = u64::from_be_bytes(cmd.lun_raw());
        // TASK ABORTED (TAS): the status alone, whatever the command had produced.
        let tas = cmd.answers_task_aborted();
        let status = if tas { ScsiStatus::TASK_ABORTED } else { cmd.status() };
        let total = if tas { 0 } else { cmd.data_in_len() };
        let (overflow, resid) = if tas { (false, 0) } else { cmd.residual() };
        let collapse = status == ScsiStatus::GOOD && total > 0;
        // Data-In from a file goes out with sendfile (never with a data digest: the fabric
        // allows it only on connections without one).
        let from_file = !tas && !p.digests.data && cmd.data_in_file().is_some();
        // This response frees the commands queued before it and its own.
        let releasing = g.cmds.len() + 1;
        let seg_max = self.max_send_segment.load(Relaxed).max(512) as usize;
        let burst = p.max_burst.max(512) as usize;
        let (mut off, mut data_sn, mut in_burst) = (0usize, 0u32, 0usize);
        while off < total {
            let n = seg_max.min(total - off).min(burst - in_burst);
            let last = off + n == total;
            in_burst += n;
            let end_of_burst = in_burst == burst || last;
            let mut h = DataInHeader {
                final_bit: end_of_burst,
                data_segment_len: n as u32,
                lun,
                itt,
                ttt: RESERVED_TAG,
                data_sn,
                buffer_offset: off as u32,
                ..DataInHeader::default()
            };
            if last && collapse {
                h.status_present = true;
                h.status = status.0;
                h.overflow = overflow && resid > 0;
                h.underflow = !overflow && resid > 0;
                h.residual_count = resid;
                h.sn = self.sn(g.stat_sn, releasing);
                g.stat_sn = g.stat_sn.wrapping_add(1);
            } else {
                // StatSN is reserved in Data-In without status; the window fields are not.
                let sn = self.sn(g.stat_sn, releasing - 1);
                h.sn = TargetSn { stat_sn: 0, ..sn };
            }
            let mut bhs = [0u8; BHS_LEN];
            h.write(&mut bhs);
            let start = g.scratch.len();
            g.scratch.extend_from_slice(&bhs);
            if p.digests.header {
                let hd = digest::header_digest(&bhs, &[]);
                g.scratch.extend_from_slice(&hd);
            }
            let len = g.scratch.len() - start;
            push(g, Piece::Bytes { start, len });
            push(g, if from_file { Piece::File { seq, off, len: n } } else { Piece::Data { seq, off, len: n } });
            let pad = pad_len(n);
            if pad > 0 {
                push(g, Piece::Pad(pad));
            }
            if p.digests.data {
                let mut iov = scst::sgv::empty_io_slices();
                let k = cmd.data_in_slices(off, n, &mut iov);
                let dd = digest::data_digest(iov[..k].iter().map(|s| &s[..]), pad);
                let start = g.scratch.len();
                g.scratch.extend_from_slice(&dd);
                push(g, Piece::Bytes { start, len: 4 });
            }
            off += n;
            data_sn += 1;
            if end_of_burst {
                in_burst = 0;
            }
        }
        if !collapse {
            let sense = if tas { &[][..] } else { cmd.sense() };
            let seg_len = if sense.is_empty() { 0 } else { 2 + sense.len() };
            let h = ScsiResponseHeader {
                status: status.0,
                overflow: overflow && resid > 0,
                underflow: !overflow && resid > 0,
                residual_count: resid,
                data_segment_len: seg_len as u32,
                itt,
                exp_data_sn: data_sn,
                sn: self.sn(g.stat_sn, releasing),
                ..ScsiResponseHeader::default()
            };
            g.stat_sn = g.stat_sn.wrapping_add(1);
            let mut bhs = [0u8; BHS_LEN];
            h.write(&mut bhs);
            let start = g.scratch.len();
            g.scratch.extend_from_slice(&bhs);
            if p.digests.header {
                let hd = digest::header_digest(&bhs, &[]);
                g.scratch.extend_from_slice(&hd);
            }
            if seg_len > 0 {
                let ds = g.scratch.len();
                g.scratch.extend_from_slice(&(sense.len() as u16).to_be_bytes());
                g.scratch.extend_from_slice(sense);
                let pad = pad_len(seg_len);
                g.scratch.extend_from_slice(&ZERO_PAD[..pad]);
                if p.digests.data {
                    let dd = digest::data_digest([&g.scratch[ds..]], 0);
                    g.scratch.extend_from_slice(&dd);
                }
            }
            let len = g.scratch.len() - start;
            push(g, Piece::Bytes { start, len });
        }
        let end = g.total_queued;
        g.cmds.push_back((seq, end, cmd));
    }

    /// Flushes as far as the socket takes it, freeing the commands that are out (outside the
    /// lock), and hands a full socket to the flusher thread.
    fn flush_and_release<'a>(&'a self, mut g: MutexGuard<'a, Inner>) {
        let mut rel = Released::new();
        loop {
            let had_holds = !g.holds.is_empty();
            let r = self.flush_some(&mut g, &mut rel);
            let newly_blocked = r == Flushed::Blocked && !g.blocked;
            if newly_blocked {
                g.blocked = true;
                self.flusher.notify_one();
            }
            // The flusher watches for the acknowledgements that release READs sent from a file.
            let newly_held = !had_holds && !g.holds.is_empty();
            if newly_held {
                self.flusher.notify_one();
            }
            if r != Flushed::More {
                drop(g);
                rel.drop_all();
                if r == Flushed::Dead {
                    self.kill();
                } else if newly_blocked || newly_held {
                    self.start_flusher();
                }
                return;
            }
            drop(g);
            rel.drop_all();
            g = self.inner.lock();
        }
    }

    /// One pass of non-blocking sends.
    fn flush_some(&self, g: &mut Inner, rel: &mut Released) -> Flushed {
        release_acked(g);
        let r = self.flush_pass(g, rel);
        if g.nonblock {
            g.nonblock = false;
            if set_nonblocking(&g.sock, false).is_err() {
                return Flushed::Dead;
            }
        }
        r
    }

    fn flush_pass(&self, g: &mut Inner, rel: &mut Released) -> Flushed {
        loop {
            // Commands whose output is all out.
            while g.cmds.front().is_some_and(|c| c.1 <= g.total_sent) {
                if rel.full() {
                    return Flushed::More;
                }
                if let Some((_, end, mut c)) = g.cmds.pop_front() {
                    // Sent from a file: the socket references the pages until acknowledged.
                    if let Some(h) = c.take_data_in_hold() {
                        g.holds.push_back((end, h));
                    }
                    rel.push(c);
                }
            }
            if g.pieces.is_empty() {
                g.scratch.clear();
                g.front_sent = 0;
                return Flushed::Empty;
            }
            if self.is_dead() {
                return Flushed::Dead;
            }
            if let Some(Piece::File { seq, off, len }) = g.pieces.front().copied() {
                let skip = g.front_sent;
                let base = g.cmds.front().map_or(0, |c| c.0);
                let Some((fd, at)) = g.cmds[(seq - base) as usize].2.data_in_file() else {
                    return Flushed::Dead;
                };
                if !g.nonblock {
                    if set_nonblocking(&g.sock, true).is_err() {
                        return Flushed::Dead;
                    }
                    g.nonblock = true;
                }
                let n = match sendfile_nowait(&g.sock, fd, at + (off + skip) as u64, len - skip) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flushed::Blocked,
                    Err(_) => return Flushed::Dead,
                };
                advance(g, n);
                continue;
            }
            let n = {
                let Inner { sock, scratch, pieces, front_sent, cmds, .. } = &*g;
                let mut iov: [IoSlice<'_>; IOV_BATCH] = [IoSlice::new(&[]); IOV_BATCH];
                let mut k = 0;
                let base = cmds.front().map_or(0, |c| c.0);
                // A file piece after these slices: tell TCP more follows (MSG_MORE).
                let mut more = false;
                for (i, piece) in pieces.iter().enumerate() {
                    let skip = if i == 0 { *front_sent } else { 0 };
                    match *piece {
                        Piece::Bytes { start, len } => {
                            if k == IOV_BATCH {
                                break;
                            }
                            iov[k] = IoSlice::new(&scratch[start + skip..start + len]);
                            k += 1;
                        }
                        Piece::Pad(n) => {
                            if k == IOV_BATCH {
                                break;
                            }
                            iov[k] = IoSlice::new(&ZERO_PAD[skip..n]);
                            k += 1;
                        }
                        Piece::Data { seq, off, len } => {
                            // A data piece spans at most MAX_SEGS slices.
                            if k + scst::sgv::MAX_SEGS > IOV_BATCH {
                                break;
                            }
                            let c = &cmds[(seq - base) as usize].2;
                            k += c.data_in_slices(off + skip, len - skip, &mut iov[k..]);
                        }
                        Piece::File { .. } => {
                            more = true;
                            break;
                        }
                    }
                }
                match send_nowait(sock, &iov[..k], more) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flushed::Blocked,
                    Err(_) => return Flushed::Dead,
                }
            };
            advance(g, n);
        }
    }

    /// The connection's flusher thread: whenever a flush found the socket full, waits until it
    /// drains and sends the rest, so that no other thread ever waits for the peer. Returns when
    /// the connection is killed; kills it when the socket stays full past the send timeout.
    pub(crate) fn run_flusher(&self) {
        let mut g = self.inner.lock();
        let mut poll = HOLD_POLL_MIN;
        loop {
            if self.is_dead() {
                return;
            }
            if !g.blocked {
                if g.holds.is_empty() {
                    poll = HOLD_POLL_MIN;
                    self.flusher.wait(&mut g);
                } else if self.flusher.wait_for(&mut g, poll).timed_out() {
                    // Nothing to send: only acknowledgements to wait for.
                    let before = g.holds.len();
                    release_acked(&mut g);
                    poll = if g.holds.len() < before { HOLD_POLL_MIN } else { (poll * 2).min(HOLD_POLL_MAX) };
                }
                continue;
            }
            let Ok(sock) = g.sock.try_clone() else {
                drop(g);
                self.kill();
                return;
            };
            drop(g);
            if !wait_writable(&sock, self.send_timeout) {
                tracing::warn!("the initiator stopped reading: dropping the connection");
                self.kill();
                return;
            }
            g = self.inner.lock();
            g.blocked = false;
            self.flush_and_release(g);
            g = self.inner.lock();
        }
    }

    /// Sends everything queued, waiting for the socket up to `timeout` (before a logout
    /// closes the connection).
    pub(crate) fn drain(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.flush();
            let g = self.inner.lock();
            if g.pieces.is_empty() || self.is_dead() {
                return;
            }
            let Ok(sock) = g.sock.try_clone() else { return };
            drop(g);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !wait_writable(&sock, left) {
                return;
            }
            self.inner.lock().blocked = false;
        }
    }
}

/// Releases the holds of READs sent from a file whose bytes the initiator acknowledged: what
/// the socket has not had acknowledged (`SIOCOUTQ`) is the end of what went into it.
fn release_acked(g: &mut Inner) {
    if g.holds.is_empty() {
        return;
    }
    let Ok(unacked) = unacked_bytes(&g.sock) else {
        // The socket failed: nothing more goes out from those pages.
        g.holds.clear();
        return;
    };
    let acked = g.total_sent.saturating_sub(unacked);
    while g.holds.front().is_some_and(|h| h.0 <= acked) {
        g.holds.pop_front();
    }
}

/// Bytes written to the socket and not yet acknowledged by the peer (`SIOCOUTQ`).
fn unacked_bytes(sock: &TcpStream) -> io::Result<u64> {
    let mut n: libc::c_int = 0;
    #[allow(unsafe_code)]
    // SAFETY: `TIOCOUTQ` (= `SIOCOUTQ`) on a TCP socket writes one `int` through the pointer,
    // which is to a live local.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &raw mut n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Queues a piece, counting its bytes.
fn push(g: &mut Inner, p: Piece) {
    g.queued += p.len();
    g.total_queued += p.len() as u64;
    g.pieces.push_back(p);
}

/// Consumes `n` sent bytes from the front of the queue.
fn advance(g: &mut Inner, mut n: usize) {
    g.queued -= n;
    g.total_sent += n as u64;
    while n > 0 {
        let Some(front) = g.pieces.front().copied() else { break };
        let left = front.len() - g.front_sent;
        if n < left {
            g.front_sent += n;
            break;
        }
        n -= left;
        g.front_sent = 0;
        g.pieces.pop_front();
    }
    // The scratch bytes before the first queued piece are dead; compact when many are.
    let first = g.pieces.iter().find_map(|p| match p {
        Piece::Bytes { start, .. } => Some(*start),
        _ => None,
    });
    let dead = first.unwrap_or(g.scratch.len());
    if dead >= SCRATCH_COMPACT {
        g.scratch.drain(..dead);
        for p in &mut g.pieces {
            if let Piece::Bytes { start, .. } = p {
                *start -= dead;
            }
        }
    }
}

/// One `sendmsg` that does not wait (MSG_DONTWAIT) and raises no SIGPIPE; with `more`, more
/// bytes follow at once (MSG_MORE: the PDU header before its data sent from a file).
fn send_nowait(sock: &TcpStream, iov: &[IoSlice<'_>], more: bool) -> io::Result<usize> {
    let s = socket2::SockRef::from(sock);
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    loop {
        match s.send_vectored_with_flags(iov, flags) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(0) if iov.iter().any(|s| !s.is_empty()) => return Err(io::ErrorKind::WriteZero.into()),
            r => return r,
        }
    }
}

/// Sets or clears `O_NONBLOCK` on the socket (around `sendfile`, which has no MSG_DONTWAIT).
fn set_nonblocking(sock: &TcpStream, on: bool) -> io::Result<()> {
    sock.set_nonblocking(on)
}

/// `sendfile` of `len` bytes of `fd` from `off` on a socket in non-blocking mode: the bytes
/// sent, `WouldBlock` when the socket is full.
fn sendfile_nowait(sock: &TcpStream, fd: std::os::fd::RawFd, off: u64, len: usize) -> io::Result<usize> {
    #[allow(unsafe_code)]
    // SAFETY: `fd` is the open file of the command's device (`Cmd::data_in_file`); the command is
    // in the connection's queue (`Inner::cmds`), holding the device and so the file open, for as
    // long as this borrow lasts (the call).
    let file = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut at = i64::try_from(off).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        match nix::sys::sendfile::sendfile64(sock.as_fd(), file, Some(&mut at), len) {
            Ok(0) if len > 0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until the socket can take more bytes (or failed); false on timeout.
fn wait_writable(sock: &TcpStream, timeout: Duration) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as u32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, ms) {
            Ok(0) if left.is_zero() => return false,
            Ok(0) => {}
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return true,
        }
    }
}

/// Serial number arithmetic (RFC 1982) on 32-bit sequence numbers: `a < b`.
pub(crate) fn sn_lt(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}
