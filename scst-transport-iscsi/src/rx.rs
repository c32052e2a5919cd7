//! The receive side of a connection: a buffer that batches small PDUs into few `read` calls and
//! lets large payloads be read straight into the command's buffer.

use std::io::{self, IoSliceMut, Read};
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
}

impl<R: Read> Rx<R> {
    pub(crate) fn new(r: R, pdu_timeout: Duration) -> Self {
        Self {
            r,
            buf: vec![0u8; RX_BUF_IDLE].into_boxed_slice(),
            start: 0,
            end: 0,
            pdu_timeout,
            deadline: None,
            before_read: None,
        }
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
        loop {
            match self.r.read(&mut self.buf[self.end..]) {
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
}
