//! The transmit side of a connection: every PDU the target sends goes through [`Tx`], which
//! owns StatSN and writes each response (Data-In PDUs, SCSI Response) with vectored writes
//! straight from the command's buffer.
//!
//! Threads: the connection's receive thread (inline completions, R2T, NOP-In, ...) and device
//! workers (asynchronous completions) both send; a mutex serializes them, which also keeps StatSN
//! in wire order. The socket is blocking with a send timeout: a peer that stops reading for that
//! long loses its connection rather than stalling a worker.

use std::io::{self, IoSlice, Write};
use std::net::TcpStream;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

use parking_lot::Mutex;
use scst::{CmdBox, ScsiStatus, Session};

use crate::proto::bhs::{BHS_LEN, Digests, RESERVED_TAG, pad_len};
use crate::proto::build::{DataInHeader, ScsiResponseHeader, TargetSn};
use crate::proto::digest;

/// What a piece of an outgoing batch refers to.
#[derive(Clone, Copy)]
enum Piece {
    /// Bytes `start..end` of the scratch buffer (headers, digests, sense segments).
    Scratch(usize, usize),
    /// Data-In bytes `off..off + len` of the command.
    Data { off: usize, len: usize },
    /// `n` zero pad bytes.
    Pad(usize),
}

const ZERO_PAD: [u8; 3] = [0; 3];
/// IoSlices per `writev` call.
const IOV_BATCH: usize = 64;

struct Inner {
    sock: TcpStream,
    stat_sn: u32,
    scratch: Vec<u8>,
    pieces: Vec<Piece>,
    /// ITTs whose unsolicited data is still being drained: their responses wait in `parked`.
    draining: Vec<u32>,
    parked: Vec<CmdBox>,
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

/// A connection's transmit side.
pub(crate) struct Tx {
    inner: Mutex<Inner>,
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
    /// Connection id: responses of commands from other connections are dropped.
    pub(crate) conn_id: u64,
}

impl Tx {
    pub(crate) fn new(
        sock: TcpStream,
        params: TxParams,
        stat_sn: u32,
        exp_cmd_sn: u32,
        window: u32,
        conn_id: u64,
    ) -> Self {
        Self {
            inner: Mutex::new(Inner {
                sock,
                stat_sn,
                scratch: Vec::with_capacity(4096),
                pieces: Vec::with_capacity(256),
                draining: Vec::new(),
                parked: Vec::new(),
            }),
            max_send_segment: AtomicU32::new(params.max_send_segment),
            params,
            exp_cmd_sn: AtomicU32::new(exp_cmd_sn),
            max_cmd_sn: AtomicU32::new(exp_cmd_sn.wrapping_add(window.max(1)).wrapping_sub(1)),
            window,
            session: Mutex::new(None),
            dead: AtomicBool::new(false),
            conn_id,
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

    /// Marks the connection dead and shuts the socket down (the receive thread then exits).
    pub(crate) fn kill(&self) {
        if !self.dead.swap(true, Relaxed) {
            let g = self.inner.lock();
            let _ = g.sock.shutdown(std::net::Shutdown::Both);
        }
    }

    /// The sequence numbers for a PDU, with MaxCmdSN from the free command slots. `releasing`
    /// commands are about to be freed (the ones this PDU answers) and count as free already.
    /// Called with the `inner` lock held (which orders the updates of `max_cmd_sn`).
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
    /// BHS.
    pub(crate) fn send_pdu(&self, data: &[u8], advance: bool, build: impl FnOnce(TargetSn, &mut [u8; BHS_LEN])) {
        if self.is_dead() {
            return;
        }
        let mut g = self.inner.lock();
        let sn = self.sn(g.stat_sn, 0);
        if advance {
            g.stat_sn = g.stat_sn.wrapping_add(1);
        }
        let mut bhs = [0u8; BHS_LEN];
        build(sn, &mut bhs);
        let d = self.params.digests;
        let hd = d.header.then(|| digest::header_digest(&bhs, &[]));
        let pad = pad_len(data.len());
        let dd = (d.data && !data.is_empty()).then(|| digest::data_digest([data], pad));
        let mut iov = [
            IoSlice::new(&bhs),
            IoSlice::new(&[]),
            IoSlice::new(data),
            IoSlice::new(&ZERO_PAD[..pad]),
            IoSlice::new(&[]),
        ];
        if let Some(h) = &hd {
            iov[1] = IoSlice::new(h);
        }
        if let Some(x) = &dd {
            iov[4] = IoSlice::new(x);
        }
        if write_all_vectored(&mut g.sock, &mut iov).is_err() {
            drop(g);
            self.kill();
        }
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

    /// Sends a completed command's Data-In and status, then drops it (which frees it).
    ///
    /// Aborted commands get no response (RFC 7143 §11.5.1: the TMF response tells the story).
    pub(crate) fn send_response(&self, cmd: CmdBox) {
        if self.is_dead() || cmd.is_aborted() {
            return;
        }
        let mut g = self.inner.lock();
        let itt = cmd.tag() as u32;
        if g.draining.contains(&itt) {
            g.parked.push(cmd);
            return;
        }
        let r = self.write_response(&mut g, &cmd);
        drop(g);
        drop(cmd);
        if r.is_err() {
            self.kill();
        }
    }

    fn write_response(&self, g: &mut Inner, cmd: &CmdBox) -> io::Result<()> {
        let p = self.params;
        let itt = cmd.tag() as u32;
        let lun = u64::from_be_bytes(cmd.lun_raw());
        let status = cmd.status();
        let total = cmd.data_in_len();
        let (overflow, resid) = cmd.residual();
        let collapse = status == ScsiStatus::GOOD && total > 0;
        g.scratch.clear();
        g.pieces.clear();
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
                h.sn = self.sn(g.stat_sn, 1);
                g.stat_sn = g.stat_sn.wrapping_add(1);
            } else {
                // StatSN is reserved in Data-In without status; the window fields are not.
                let sn = self.sn(g.stat_sn, 0);
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
            let end = g.scratch.len();
            g.pieces.push(Piece::Scratch(start, end));
            g.pieces.push(Piece::Data { off, len: n });
            let pad = pad_len(n);
            if pad > 0 {
                g.pieces.push(Piece::Pad(pad));
            }
            if p.digests.data {
                let mut iov = scst::sgv::empty_io_slices();
                let k = cmd.data_in_slices(off, n, &mut iov);
                let dd = digest::data_digest(iov[..k].iter().map(|s| &s[..]), pad);
                let s = g.scratch.len();
                g.scratch.extend_from_slice(&dd);
                let e = g.scratch.len();
                g.pieces.push(Piece::Scratch(s, e));
            }
            off += n;
            data_sn += 1;
            if end_of_burst {
                in_burst = 0;
            }
        }
        if !collapse {
            let sense = cmd.sense();
            let seg_len = if sense.is_empty() { 0 } else { 2 + sense.len() };
            let h = ScsiResponseHeader {
                status: status.0,
                overflow: overflow && resid > 0,
                underflow: !overflow && resid > 0,
                residual_count: resid,
                data_segment_len: seg_len as u32,
                itt,
                exp_data_sn: data_sn,
                sn: self.sn(g.stat_sn, 1),
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
            let end = g.scratch.len();
            g.pieces.push(Piece::Scratch(start, end));
        }
        flush_pieces(g, cmd)
    }
}

/// Serial number arithmetic (RFC 1982) on 32-bit sequence numbers: `a < b`.
pub(crate) fn sn_lt(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

/// Writes the planned pieces in batches of [`IOV_BATCH`] slices.
fn flush_pieces(g: &mut Inner, cmd: &CmdBox) -> io::Result<()> {
    let Inner { sock, scratch, pieces, .. } = g;
    let mut i = 0;
    while i < pieces.len() {
        let mut iov: [IoSlice<'_>; IOV_BATCH] = [(); IOV_BATCH].map(|()| IoSlice::new(&[]));
        let mut n = 0;
        while i < pieces.len() && n < IOV_BATCH {
            match pieces[i] {
                Piece::Scratch(s, e) => {
                    iov[n] = IoSlice::new(&scratch[s..e]);
                    n += 1;
                }
                Piece::Pad(k) => {
                    iov[n] = IoSlice::new(&ZERO_PAD[..k]);
                    n += 1;
                }
                Piece::Data { off, len } => {
                    // A data piece spans at most MAX_SEGS slices; make room for them.
                    if n + scst::sgv::MAX_SEGS > IOV_BATCH {
                        break;
                    }
                    let mut tmp = scst::sgv::empty_io_slices();
                    let k = cmd.data_in_slices(off, len, &mut tmp);
                    iov[n..n + k].copy_from_slice(&tmp[..k]);
                    n += k;
                }
            }
            i += 1;
        }
        write_all_vectored(sock, &mut iov[..n])?;
    }
    Ok(())
}

/// `write_all` for vectored writes.
pub(crate) fn write_all_vectored(w: &mut impl Write, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
