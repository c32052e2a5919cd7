//! The receive side of a connection: a buffer that batches small PDUs into few `read` calls and
//! lets large payloads be read straight into the command's buffer.

use std::io::{self, IoSliceMut, Read};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scst::SgBuf;

/// Bytes read ahead per `read` call on a busy connection...
const RX_BUF: usize = 64 << 10;
/// ...and on one that has never filled this much (logins, idle sessions, a trickle of small
/// commands): the buffer grows to [`RX_BUF`] the first time a read fills it, once per connection.
const RX_BUF_IDLE: usize = 4 << 10;
/// Payloads at least this long that are not yet buffered are read directly into their
/// destination instead of through the buffer.
const DIRECT_MIN: usize = 16 << 10;

/// Why a read stopped.
#[derive(Debug)]
pub(crate) enum RxError {
    /// Nothing arrived within the socket's receive timeout (a tick, not an error).
    Idle,
    /// The peer closed the connection or an I/O error occurred.
    Closed(io::Error),
}

impl From<io::Error> for RxError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Self::Idle,
            _ => Self::Closed(e),
        }
    }
}

/// Work to do before the receive thread reads the socket (and may wait there): the
/// connection flushes the responses it queued.
pub(crate) trait BeforeRead: Send + Sync {
    /// Called before each read of the socket (which may wait).
    fn before_read(&self);
}

/// A source the receive thread can also try without waiting (for polling).
pub(crate) trait TryRead: Read {
    /// Reads what is there now; `WouldBlock` when nothing is.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

impl TryRead for TcpStream {
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use nix::sys::socket::{MsgFlags, recv};
        recv(self.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)
    }
}

impl TryRead for &[u8] {
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }
}

/// The first poll budget a connection gets once its waits turn short.
const POLL_START: Duration = Duration::from_micros(4);

/// How long the receive thread polls its socket before it sleeps in `read`: adaptive, in the
/// manner of KVM's halt polling. A wait that would have ended within the bound grows the budget
/// (polling that long would have saved the sleep and the wake-up); a wait longer than the bound
/// shrinks it (the spin was wasted), down to none at all: an idle connection, or one whose
/// initiator pauses longer than the bound, never polls.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PollPolicy {
    /// The bound (zero: polling off).
    max: Duration,
    /// The budget of the next wait.
    cur: Duration,
}

impl PollPolicy {
    pub(crate) fn new(max: Duration) -> Self {
        Self { max, cur: Duration::ZERO }
    }

    /// How long to poll before the next blocking read.
    pub(crate) fn budget(&self) -> Duration {
        self.cur
    }

    /// The poll (of the current budget, maybe none) found nothing and the blocking read then
    /// waited `waited` for data (or for its timeout).
    pub(crate) fn slept(&mut self, waited: Duration) {
        if self.max.is_zero() {
            return;
        }
        if self.cur + waited <= self.max {
            self.cur = (self.cur * 2).clamp(POLL_START, self.max);
        } else {
            self.cur /= 2;
            if self.cur < POLL_START {
                self.cur = Duration::ZERO;
            }
        }
    }
}

/// A buffered reader over a socket with a receive timeout.
pub(crate) struct Rx<R: Read> {
    r: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// How long a started PDU may take to arrive completely.
    pdu_timeout: Duration,
    /// An absolute limit on every read (the login deadline): past it a read fails even while
    /// bytes keep trickling in, which the PDU timeout alone (measured per wait) would allow.
    deadline: Option<Instant>,
    before_read: Option<Arc<dyn BeforeRead>>,
    poll: PollPolicy,
    /// Reads that found data by polling, and blocking reads (statistics for tests and logs).
    pub(crate) poll_hits: u64,
    pub(crate) sleeps: u64,
}

impl<R: TryRead> Rx<R> {
    pub(crate) fn new(r: R, pdu_timeout: Duration) -> Self {
        Self {
            r,
            buf: vec![0u8; RX_BUF_IDLE].into_boxed_slice(),
            start: 0,
            end: 0,
            pdu_timeout,
            deadline: None,
            before_read: None,
            poll: PollPolicy::default(),
            poll_hits: 0,
            sleeps: 0,
        }
    }

    /// Polls the socket up to `max` before each read that would wait ([`PollPolicy`]).
    pub(crate) fn set_poll(&mut self, max: Duration) {
        self.poll = PollPolicy::new(max);
    }

    /// The source read from.
    pub(crate) fn get_ref(&self) -> &R {
        &self.r
    }

    /// Sets the work done before every read of the socket.
    pub(crate) fn set_before_read(&mut self, f: Arc<dyn BeforeRead>) {
        self.before_read = Some(f);
    }

    /// Sets (or clears) the absolute deadline of every read.
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() > d)
    }

    /// Bytes buffered and not consumed.
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Reads once into the buffer. `Err(Idle)` when the receive timeout expired.
    fn read_some(&mut self) -> Result<(), RxError> {
        if self.start > 0 && self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if let Some(f) = &self.before_read {
            f.before_read();
        }
        let polled = self.poll_once();
        let waiting = (!self.poll.max.is_zero() && polled.is_none()).then(Instant::now);
        loop {
            let got = match polled {
                Some(n) => Ok(n),
                None => self.r.read(&mut self.buf[self.end..]),
            };
            if let Some(t) = waiting {
                self.sleeps += 1;
                self.poll.slept(t.elapsed());
            }
            match got {
                Ok(0) => return Err(RxError::Closed(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => {
                    self.end += n;
                    if self.end == self.buf.len() && self.buf.len() < RX_BUF {
                        // More is likely waiting: read ahead in large steps from now on.
                        let mut big = vec![0u8; RX_BUF].into_boxed_slice();
                        big[..self.end - self.start].copy_from_slice(&self.buf[self.start..self.end]);
                        self.end -= self.start;
                        self.start = 0;
                        self.buf = big;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Polls for up to the current budget: `Some(n)` when data (or the end) arrived, `None`
    /// when the caller must wait in `read`.
    fn poll_once(&mut self) -> Option<usize> {
        let budget = self.poll.budget();
        if budget.is_zero() {
            return None;
        }
        let started = Instant::now();
        loop {
            match self.r.try_read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    // The budget was right: it stays.
                    self.poll_hits += 1;
                    return Some(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if started.elapsed() >= budget {
                        return None;
                    }
                    std::hint::spin_loop();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The blocking read reports it.
                Err(_) => return None,
            }
        }
    }

    /// Waits until at least `n` (≤ 4 KiB) bytes are buffered. Between PDUs (`in_pdu` false,
    /// nothing buffered) an idle receive timeout returns `Err(Idle)`; inside a PDU it keeps
    /// waiting up to the PDU timeout, then fails.
    pub(crate) fn need(&mut self, n: usize, in_pdu: bool) -> Result<(), RxError> {
        debug_assert!(n <= self.buf.len());
        let mut started: Option<Instant> = None;
        while self.buffered() < n {
            if self.past_deadline() {
                return Err(RxError::Closed(io::ErrorKind::TimedOut.into()));
            }
            if self.start + n > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match self.read_some() {
                Ok(()) => {}
                Err(RxError::Idle) if !in_pdu && self.buffered() == 0 && started.is_none() => {
                    return Err(RxError::Idle);
                }
                Err(RxError::Idle) => {
                    let t = *started.get_or_insert_with(Instant::now);
                    if t.elapsed() > self.pdu_timeout {
                        return Err(RxError::Closed(io::ErrorKind::TimedOut.into()));
                    }
                }
                Err(e) => return Err(e),
            }
            if started.is_none() {
                started = Some(Instant::now());
            }
        }
        Ok(())
    }

    /// The next `n` buffered bytes (after [`Rx::need`]).
    pub(crate) fn peek(&self, n: usize) -> &[u8] {
        &self.buf[self.start..self.start + n]
    }

    /// Consumes `n` buffered bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
    }

    /// Reads `n` bytes into `dst` (any length), through the buffer.
    pub(crate) fn read_exact_into(&mut self, dst: &mut [u8]) -> Result<(), RxError> {
        let mut done = 0;
        while done < dst.len() {
            if self.buffered() == 0 {
                self.need(1, true)?;
            }
            let k = self.buffered().min(dst.len() - done);
            dst[done..done + k].copy_from_slice(&self.buf[self.start..self.start + k]);
            self.start += k;
            done += k;
        }
        Ok(())
    }

    /// Discards `n` bytes.
    pub(crate) fn skip(&mut self, mut n: usize) -> Result<(), RxError> {
        while n > 0 {
            if self.buffered() == 0 {
                self.need(1, true)?;
            }
            let k = self.buffered().min(n);
            self.start += k;
            n -= k;
        }
        Ok(())
    }

    /// Reads `len` bytes into `dst[off..off + len]`: first what is buffered, then the rest
    /// straight from the socket into the destination when it is large.
    pub(crate) fn read_into_sg(&mut self, dst: &mut SgBuf, off: usize, len: usize) -> Result<(), RxError> {
        let mut done = 0;
        while done < len {
            let left = len - done;
            if self.buffered() == 0 && left >= DIRECT_MIN {
                // This read may wait too.
                if let Some(f) = &self.before_read {
                    f.before_read();
                }
                let started = Instant::now();
                let mut iov: [IoSliceMut<'_>; scst::sgv::MAX_SEGS] = scst::sgv::empty_io_slices_mut();
                let k = dst.io_slices_mut(off + done, left, &mut iov);
                let n = loop {
                    match self.r.read_vectored(&mut iov[..k]) {
                        Ok(0) => return Err(RxError::Closed(io::ErrorKind::UnexpectedEof.into())),
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => match RxError::from(e) {
                            RxError::Idle if started.elapsed() <= self.pdu_timeout => {}
                            RxError::Idle => return Err(RxError::Closed(io::ErrorKind::TimedOut.into())),
                            e => return Err(e),
                        },
                    }
                };
                done += n;
                continue;
            }
            if self.buffered() == 0 {
                self.need(1, true)?;
            }
            let k = self.buffered().min(left);
            dst.write_at(off + done, &self.buf[self.start..self.start + k]);
            self.start += k;
            done += k;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 13 + i / 251) as u8).collect()
    }

    #[test]
    fn a_light_connection_keeps_the_small_buffer() {
        let data = bytes(3000);
        let mut rx = Rx::new(&data[..], Duration::from_secs(1));
        let mut got = vec![0u8; 3000];
        rx.read_exact_into(&mut got).unwrap();
        assert_eq!(got, data);
        assert_eq!(rx.buf.len(), RX_BUF_IDLE);
    }

    #[test]
    fn a_burst_grows_the_buffer_once_and_loses_nothing() {
        let data = bytes(300_000);
        let mut rx = Rx::new(&data[..], Duration::from_secs(1));
        // Small pieces, so that everything goes through the buffer, across the growth.
        let mut got = Vec::new();
        let mut piece = [0u8; 1000];
        while got.len() < data.len() {
            let n = piece.len().min(data.len() - got.len());
            rx.read_exact_into(&mut piece[..n]).unwrap();
            got.extend_from_slice(&piece[..n]);
        }
        assert!(got == data);
        assert_eq!(rx.buf.len(), RX_BUF);
        assert!(matches!(rx.need(1, false), Err(RxError::Closed(_))), "then the end of the stream");
    }

    #[test]
    fn the_poll_budget_grows_with_short_waits_and_vanishes_with_long_ones() {
        let max = Duration::from_micros(50);
        let mut p = PollPolicy::new(max);
        assert_eq!(p.budget(), Duration::ZERO, "a new connection does not poll");
        p.slept(Duration::from_micros(10));
        assert_eq!(p.budget(), POLL_START);
        for _ in 0..10 {
            p.slept(Duration::from_micros(1));
        }
        assert_eq!(p.budget(), max, "doubling stops at the bound");
        // The initiator pauses for milliseconds: each long wait halves the budget, to none.
        p.slept(Duration::from_millis(3));
        assert_eq!(p.budget(), max / 2);
        for _ in 0..5 {
            p.slept(Duration::from_millis(3));
        }
        assert_eq!(p.budget(), Duration::ZERO);
        let mut off = PollPolicy::new(Duration::ZERO);
        off.slept(Duration::ZERO);
        assert_eq!(off.budget(), Duration::ZERO, "a zero bound never polls");
    }

    #[test]
    fn a_busy_socket_is_read_by_polling_and_an_idle_one_stops_polling() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut w = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (r, _) = l.accept().unwrap();
        r.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let data = bytes(20_000);
        w.write_all(&data).unwrap();
        let mut rx = Rx::new(r, Duration::from_secs(1));
        rx.set_poll(Duration::from_millis(5));
        let mut got = vec![0u8; data.len()];
        rx.read_exact_into(&mut got).unwrap();
        assert!(got == data);
        // The first read waited (not at all: the bytes were there), so the next ones polled
        // and found the rest without sleeping.
        assert!(rx.poll_hits >= 1, "{} hits, {} sleeps", rx.poll_hits, rx.sleeps);
        assert!(!rx.poll.budget().is_zero());
        // Nothing more comes: the waits end with the 20 ms timeout, far past the bound.
        for _ in 0..6 {
            assert!(matches!(rx.need(1, false), Err(RxError::Idle)));
        }
        assert_eq!(rx.poll.budget(), Duration::ZERO, "an idle connection sleeps without polling");
        w.write_all(b"x").unwrap();
        rx.need(1, false).unwrap();
        assert_eq!(rx.peek(1), b"x");
    }
}
