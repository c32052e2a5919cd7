//! A fault-injecting block store for tests: wraps any [`BlockStore`] and, on demand, fails its
//! I/O with an `errno` (after a number of I/Os, or on a range of blocks), transfers only part of
//! an I/O before failing (a torn write, a read that filled half its buffer), slows every I/O
//! down, or holds I/O at a gate until the test opens it.
//!
//! Test-only code, shared by file path: `scst-local/tests/faults.rs` uses it through the local
//! initiator, `scst-transport-iscsi/tests/faults.rs` over iSCSI:
//!
//! ```ignore
//! #[path = "../../scst-local/tests/common/fault.rs"]
//! mod fault;
//! ```
//!
//! The store itself never panics and never blocks forever: a gate closed by a test that then
//! fails is opened when its [`Faults`] handle's last clone is dropped ([`FaultGuard`]).
#![allow(dead_code, unreachable_pub)]

use std::io::{self, IoSlice, IoSliceMut};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use scst::{BlockStore, Geometry, StoreCaps};

/// `EIO`.
pub const EIO: i32 = 5;
/// `ENOSPC`.
pub const ENOSPC: i32 = 28;

/// The kind of a store call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    Read,
    Write,
    Flush,
}

/// What happens to an I/O a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fails with this `errno` without touching the inner store.
    Errno(i32),
    /// Transfers the first `bytes` (a write reaches the inner store only for them; a read's
    /// buffers hold the inner store's data only for them and garbage, 0xEE, after), then fails
    /// with `errno`.
    Short { bytes: usize, errno: i32 },
}

#[derive(Clone, Debug)]
struct Rule {
    io: Io,
    /// The first I/O (by its sequence number among I/Os of its kind) the rule applies to.
    skip: u64,
    /// Only I/Os overlapping these blocks.
    blocks: Option<Range<u64>>,
    fault: Fault,
    /// How many more I/Os it fails (`None`: all).
    remaining: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    delay: Duration,
    gate_closed: bool,
}

/// The control side of a [`FaultStore`] (shared with the test).
#[derive(Debug)]
pub struct Faults {
    block_size: u64,
    state: Mutex<State>,
    gate: Condvar,
    reads: AtomicU64,
    writes: AtomicU64,
    flushes: AtomicU64,
    injected: AtomicU64,
    /// I/Os inside the store (waiting at the gate, sleeping or transferring).
    inside: AtomicUsize,
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a rule that starts after `skip` more I/Os of kind `io`.
    fn add(&self, io: Io, skip: u64, blocks: Option<Range<u64>>, fault: Fault, times: Option<u64>) {
        let done = match io {
            Io::Read => &self.reads,
            Io::Write => &self.writes,
            Io::Flush => &self.flushes,
        };
        let mut s = self.lock();
        let skip = done.load(SeqCst) + skip;
        s.rules.push(Rule { io, skip, blocks, fault, remaining: times });
    }

    /// Every I/O of kind `io` after the next `n` fails with `errno`.
    pub fn fail_after(&self, io: Io, n: u64, errno: i32) {
        self.add(io, n, None, Fault::Errno(errno), None);
    }

    /// The next I/O of kind `io` fails with `errno`, once.
    pub fn fail_once(&self, io: Io, errno: i32) {
        self.add(io, 0, None, Fault::Errno(errno), Some(1));
    }

    /// I/Os of kind `io` touching any of `blocks` fail with `errno`.
    pub fn fail_blocks(&self, io: Io, blocks: Range<u64>, errno: i32) {
        self.add(io, 0, Some(blocks), Fault::Errno(errno), None);
    }

    /// I/Os of kind `io` transfer only their first `bytes`, then fail with `errno`.
    pub fn short(&self, io: Io, bytes: usize, errno: i32) {
        self.add(io, 0, None, Fault::Short { bytes, errno }, None);
    }

    /// Every I/O first sleeps `d`.
    pub fn set_delay(&self, d: Duration) {
        self.lock().delay = d;
    }

    /// I/Os wait inside the store until [`Faults::open_gate`].
    pub fn close_gate(&self) {
        self.lock().gate_closed = true;
    }

    /// Lets I/Os waiting at the gate (and later ones) through.
    pub fn open_gate(&self) {
        self.lock().gate_closed = false;
        self.gate.notify_all();
    }

    /// Removes every rule and the delay, and opens the gate.
    pub fn clear(&self) {
        {
            let mut s = self.lock();
            s.rules.clear();
            s.delay = Duration::ZERO;
        }
        self.open_gate();
    }

    /// Read calls so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(SeqCst)
    }

    /// Write calls so far (including write-zeroes).
    pub fn writes(&self) -> u64 {
        self.writes.load(SeqCst)
    }

    /// Flush calls so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(SeqCst)
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(SeqCst)
    }

    /// I/Os currently inside the store.
    pub fn inside(&self) -> usize {
        self.inside.load(SeqCst)
    }

    /// Waits until `n` I/Os are inside the store (e.g. held at the gate).
    ///
    /// # Panics
    /// If that does not happen within `within`.
    #[track_caller]
    pub fn wait_inside(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.inside() < n {
            assert!(
                Instant::now() < deadline,
                "{} I/Os inside the store after {within:?}, expected {n}",
                self.inside()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Decides what happens to I/O number `seq` (of its kind) over `blocks`, then waits for the
    /// gate and the delay.
    fn enter(&self, io: Io, seq: u64, blocks: Range<u64>) -> Option<Fault> {
        let mut s = self.lock();
        let mut fault = None;
        for r in s.rules.iter_mut().filter(|r| r.io == io) {
            if seq < r.skip || r.remaining == Some(0) {
                continue;
            }
            if let Some(b) = &r.blocks
                && (b.end <= blocks.start || blocks.end <= b.start)
            {
                continue;
            }
            if let Some(n) = &mut r.remaining {
                *n -= 1;
            }
            fault = Some(r.fault);
            break;
        }
        let delay = s.delay;
        while s.gate_closed {
            s = self.gate.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        drop(s);
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if fault.is_some() {
            self.injected.fetch_add(1, SeqCst);
        }
        fault
    }

    fn blocks(&self, off: u64, len: usize) -> Range<u64> {
        let first = off / self.block_size;
        first..(off + len as u64).div_ceil(self.block_size).max(first + 1)
    }
}

/// Opens the gate when the last test-side handle goes (a failing test must not leave a device
/// worker waiting forever).
#[derive(Clone, Debug)]
pub struct FaultGuard(Arc<GuardInner>);

#[derive(Debug)]
struct GuardInner(Arc<Faults>);

impl Drop for GuardInner {
    fn drop(&mut self) {
        self.0.clear();
    }
}

impl std::ops::Deref for FaultGuard {
    type Target = Faults;
    fn deref(&self) -> &Faults {
        &self.0.0
    }
}

/// The fault-injecting store.
#[derive(Debug)]
pub struct FaultStore<S> {
    inner: S,
    faults: Arc<Faults>,
    may_block: bool,
}

impl<S: BlockStore> FaultStore<S> {
    /// Wraps `inner`. With `may_block` the device runs the store's I/O on its worker threads
    /// (as for FILEIO), without it on the submitting thread (as for RAM): a slow or held I/O then
    /// holds that thread. Returns the store and its control handle.
    pub fn new(inner: S, may_block: bool) -> (Self, FaultGuard) {
        let faults = Arc::new(Faults {
            block_size: u64::from(inner.geometry().block_size),
            state: Mutex::new(State::default()),
            gate: Condvar::new(),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            inside: AtomicUsize::new(0),
        });
        let guard = FaultGuard(Arc::new(GuardInner(faults.clone())));
        (Self { inner, faults, may_block }, guard)
    }
}

/// Counts an I/O as inside the store while alive.
struct Inside<'a>(&'a AtomicUsize);

impl<'a> Inside<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, SeqCst);
        Self(n)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

fn total(lens: impl Iterator<Item = usize>) -> usize {
    lens.sum()
}

impl<S: BlockStore> BlockStore for FaultStore<S> {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }

    fn caps(&self) -> StoreCaps {
        StoreCaps { may_block: self.may_block, ..self.inner.caps() }
    }

    fn product(&self) -> &str {
        "FAULTY"
    }

    fn read_at(&self, off: u64, bufs: &mut [IoSliceMut<'_>]) -> io::Result<()> {
        let f = &self.faults;
        let _in = Inside::new(&f.inside);
        let seq = f.reads.fetch_add(1, SeqCst);
        let len = total(bufs.iter().map(|b| b.len()));
        match f.enter(Io::Read, seq, f.blocks(off, len)) {
            None => self.inner.read_at(off, bufs),
            Some(Fault::Errno(e)) => Err(io::Error::from_raw_os_error(e)),
            Some(Fault::Short { bytes, errno }) => {
                self.inner.read_at(off, bufs)?;
                let mut at = 0;
                for b in bufs.iter_mut() {
                    let keep = bytes.saturating_sub(at).min(b.len());
                    b[keep..].fill(0xee);
                    at += b.len();
                }
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }

    fn write_at(&self, off: u64, bufs: &[IoSlice<'_>], fua: bool) -> io::Result<()> {
        let f = &self.faults;
        let _in = Inside::new(&f.inside);
        let seq = f.writes.fetch_add(1, SeqCst);
        let len = total(bufs.iter().map(|b| b.len()));
        match f.enter(Io::Write, seq, f.blocks(off, len)) {
            None => self.inner.write_at(off, bufs, fua),
            Some(Fault::Errno(e)) => Err(io::Error::from_raw_os_error(e)),
            Some(Fault::Short { bytes, errno }) => {
                // The first `bytes` reach the medium, the rest never does.
                let mut part: Vec<IoSlice<'_>> = Vec::new();
                let mut at = 0;
                for b in bufs {
                    let keep = bytes.saturating_sub(at).min(b.len());
                    if keep > 0 {
                        part.push(IoSlice::new(&b[..keep]));
                    }
                    at += b.len();
                }
                if !part.is_empty() {
                    self.inner.write_at(off, &part, fua)?;
                }
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }

    fn flush(&self) -> io::Result<()> {
        let f = &self.faults;
        let _in = Inside::new(&f.inside);
        let seq = f.flushes.fetch_add(1, SeqCst);
        match f.enter(Io::Flush, seq, 0..u64::MAX) {
            None => self.inner.flush(),
            Some(Fault::Errno(e) | Fault::Short { errno: e, .. }) => Err(io::Error::from_raw_os_error(e)),
        }
    }

    fn unmap(&self, off: u64, len: u64) -> io::Result<()> {
        self.inner.unmap(off, len)
    }

    fn mapped(&self, off: u64, len: u64) -> io::Result<(bool, u64)> {
        self.inner.mapped(off, len)
    }

    fn refresh(&self) -> io::Result<Geometry> {
        self.inner.refresh()
    }
}
