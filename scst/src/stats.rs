//! Per-device and per-session command counters: what [`crate::dev::DeviceStats`] and
//! [`crate::session::SessionStats`] are made of.
//!
//! Counting a command costs one `Instant::now()` when the core receives it
//! ([`crate::Session::alloc_cmd`]; one for all the commands a thread receives between two
//! flushes of its [`crate::batch`], i.e. from one socket read: [`receipt_time`]), one when it
//! completes (its status is final: the core hands it
//! back as [`crate::Step::Done`] or through [`crate::TargetDriver::xmit_response`]), and a few
//! relaxed atomic additions on the device's and on the session's own counters. No allocation, no
//! lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::cmd::{Cmd, ScsiStatus};
use crate::ops::{DataDir, OpFlags};

/// Number of buckets of a [`LatencyHistogram`].
pub const LATENCY_BUCKETS: usize = 24;

/// Whether completions are counted. On unless a benchmark turns it off.
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the per-command counting (latency, errors, in-flight, byte and command counters of
/// devices and sessions) on or off for the whole process. It is on by default; turning it off
/// exists to measure what counting costs (the `local_io` benchmark). Counters then stay where
/// they are.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Relaxed);
}

/// Whether per-command counting is on (see [`set_enabled`]).
pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

thread_local! {
    /// The receipt time shared by the commands received since this thread's batch last flushed.
    static RECEIPT: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// When a command was received, for its latency. Inside a [`crate::batch`] one clock read
/// serves every command the thread receives until the batch flushes: a fabric's receive thread
/// flushes before each socket read ([`crate::batch::flush`]: before it waits), so those commands
/// came in the same read. Outside a batch, the time now.
pub(crate) fn receipt_time() -> std::time::Instant {
    if !crate::batch::active() {
        return std::time::Instant::now();
    }
    RECEIPT.with(|c| {
        c.get().unwrap_or_else(|| {
            let t = std::time::Instant::now();
            c.set(Some(t));
            t
        })
    })
}

/// Ends the current shared receipt time (the batch flushes: what comes next was received later).
pub(crate) fn forget_receipt_time() {
    RECEIPT.with(|c| c.set(None));
}

/// The class of a command for latency histograms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// Medium reads (READ, and other medium-access commands returning data).
    Read = 0,
    /// Medium writes (WRITE, WRITE SAME, UNMAP, COMPARE AND WRITE, ...).
    Write = 1,
    /// Everything else (INQUIRY, TEST UNIT READY, commands refused before parsing, ...).
    Other = 2,
}

impl OpClass {
    /// Every class, in index order.
    pub const ALL: [Self; 3] = [Self::Read, Self::Write, Self::Other];

    /// Lower-case name (`read`, `write`, `other`), as the CLI and Prometheus labels spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Other => "other",
        }
    }

    /// The class of `cmd`, from its opcode table entry.
    pub fn of(cmd: &Cmd) -> Self {
        match cmd.op() {
            Some(o) if o.flags.has(OpFlags::IO) && o.flags.has(OpFlags::WRITE) => Self::Write,
            Some(o) if o.flags.has(OpFlags::IO) && o.dir == DataDir::In => Self::Read,
            _ => Self::Other,
        }
    }
}

/// A latency histogram with log2 buckets of microseconds: bucket 0 counts latencies under
/// 1 µs, bucket `i` (1..=22) those in `[2^(i-1), 2^i)` µs, and the last one everything from
/// 2^22 µs (about 4.2 s) up.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS],
    sum_ns: AtomicU64,
}

/// A copy of a [`LatencyHistogram`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// Commands per bucket (see [`LatencyHistogram`]).
    pub buckets: [u64; LATENCY_BUCKETS],
    /// Sum of all latencies, in nanoseconds.
    pub sum_ns: u64,
}

/// The bucket a latency of `us` microseconds falls in.
fn bucket_of(us: u64) -> usize {
    ((u64::BITS - us.leading_zeros()) as usize).min(LATENCY_BUCKETS - 1)
}

impl LatencyHistogram {
    /// Counts one latency.
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns / 1000)].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// The current counts.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot { buckets: self.buckets.each_ref().map(|b| b.load(Relaxed)), sum_ns: self.sum_ns.load(Relaxed) }
    }
}

impl LatencySnapshot {
    /// The exclusive upper bound of bucket `i` in microseconds, `None` for the last (unbounded)
    /// bucket.
    pub fn upper_bound_us(i: usize) -> Option<u64> {
        (i + 1 < LATENCY_BUCKETS).then(|| 1u64 << i)
    }

    /// Commands counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The bucket holding quantile `q` (0.0..=1.0), `None` when nothing was counted.
    pub fn quantile_bucket(&self, q: f64) -> Option<usize> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: the smallest r with r >= q * n.
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        self.buckets.iter().position(|&c| {
            seen += c;
            seen >= rank
        })
    }

    /// An estimate of quantile `q` (0.0..=1.0) in microseconds: the upper bound of the bucket
    /// holding it (so at most twice the true value), or the lower bound of the last bucket when
    /// it falls there. `None` when nothing was counted.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        self.quantile_bucket(q).map(|i| Self::upper_bound_us(i).unwrap_or(1 << (LATENCY_BUCKETS - 2)))
    }
}

/// Commands that did not end GOOD (or CONDITION MET), by sense key and by status.
#[derive(Debug, Default)]
pub struct ErrorCounters {
    /// CHECK CONDITION commands by sense key (index = key, 0..=15).
    pub sense_keys: [AtomicU64; 16],
    /// BUSY.
    pub busy: AtomicU64,
    /// RESERVATION CONFLICT.
    pub reservation_conflict: AtomicU64,
    /// TASK SET FULL.
    pub task_set_full: AtomicU64,
    /// TASK ABORTED.
    pub task_aborted: AtomicU64,
    /// Any other status (ACA ACTIVE, a pass-through device's own), and CHECK CONDITION whose
    /// sense data could not be read.
    pub other: AtomicU64,
}

impl ErrorCounters {
    /// Counts a command that ended with `status` and `sense`. Returns whether it is an error
    /// (anything but GOOD, CONDITION MET).
    fn record(&self, status: ScsiStatus, sense: &[u8]) -> bool {
        let c = match status {
            ScsiStatus::GOOD | ScsiStatus::CONDITION_MET => return false,
            ScsiStatus::CHECK_CONDITION => match sense_key(sense) {
                Some(k) => &self.sense_keys[usize::from(k)],
                None => &self.other,
            },
            ScsiStatus::BUSY => &self.busy,
            ScsiStatus::RESERVATION_CONFLICT => &self.reservation_conflict,
            ScsiStatus::TASK_SET_FULL => &self.task_set_full,
            ScsiStatus::TASK_ABORTED => &self.task_aborted,
            _ => &self.other,
        };
        c.fetch_add(1, Relaxed);
        true
    }

    /// Errors counted, all kinds.
    pub fn total(&self) -> u64 {
        self.sense_keys.iter().map(|c| c.load(Relaxed)).sum::<u64>()
            + [&self.busy, &self.reservation_conflict, &self.task_set_full, &self.task_aborted, &self.other]
                .iter()
                .map(|c| c.load(Relaxed))
                .sum::<u64>()
    }
}

/// The sense key of fixed or descriptor format sense data.
fn sense_key(sense: &[u8]) -> Option<u8> {
    match sense.first()? & 0x7f {
        0x70 | 0x71 => sense.get(2).map(|b| b & 0x0f),
        0x72 | 0x73 => sense.get(1).map(|b| b & 0x0f),
        _ => None,
    }
}

/// What a device and a session both count for the commands they complete.
///
/// Commands in flight are not a gauge updated twice per command but derived when read:
/// received (the owner's `commands` counter) − completed (the histograms' counts) − abandoned.
/// While commands run the figure is approximate (the counters are read one after the other);
/// when the owner is idle it is exact, provided counting was never switched off
/// ([`set_enabled`]) while commands ran.
#[derive(Debug, Default)]
pub struct CompletionCounters {
    /// Commands dropped before they completed (aborted without a response, their connection
    /// gone, never submitted).
    pub abandoned: AtomicU64,
    /// Errors by sense key and status.
    pub error_kinds: ErrorCounters,
    /// Latency from receipt to completion, per [`OpClass`] (index = `OpClass as usize`).
    pub latency: [LatencyHistogram; 3],
}

impl CompletionCounters {
    /// The latency histogram of `class`.
    pub fn latency(&self, class: OpClass) -> &LatencyHistogram {
        &self.latency[class as usize]
    }

    /// Commands completed (status final), all classes.
    pub fn completed(&self) -> u64 {
        self.latency.iter().map(|h| h.buckets.iter().map(|b| b.load(Relaxed)).sum::<u64>()).sum()
    }

    /// Commands in flight given `received` (see the type's documentation).
    pub fn in_flight(&self, received: u64) -> u64 {
        let done = self.completed() + self.abandoned.load(Relaxed);
        received.saturating_sub(done)
    }

    /// Counts one completion; returns whether it was an error.
    pub(crate) fn record(&self, class: OpClass, status: ScsiStatus, sense: &[u8], latency: Duration) -> bool {
        self.latency[class as usize].record(latency);
        self.error_kinds.record(status, sense)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_received_between_two_flushes_share_one_receipt_time() {
        let outside = receipt_time();
        std::thread::sleep(Duration::from_millis(2));
        assert!(receipt_time() > outside, "outside a batch: the time now");
        let batch = crate::batch::begin();
        let a = receipt_time();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(receipt_time(), a, "same batch, no flush: one clock read");
        crate::batch::flush();
        let b = receipt_time();
        assert!(b >= a + Duration::from_millis(2), "after a flush (a socket read): a new time");
        drop(batch);
        std::thread::sleep(Duration::from_millis(2));
        assert!(receipt_time() > b, "the batch ended");
    }

    #[test]
    fn buckets_are_log2_microseconds() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 1);
        assert_eq!(bucket_of(2), 2);
        assert_eq!(bucket_of(3), 2);
        assert_eq!(bucket_of(4), 3);
        assert_eq!(bucket_of(1 << 21), 22);
        assert_eq!(bucket_of((1 << 22) - 1), 22);
        assert_eq!(bucket_of(1 << 22), 23);
        assert_eq!(bucket_of(u64::MAX), 23);
    }

    #[test]
    fn quantiles_come_from_bucket_bounds() {
        let h = LatencyHistogram::default();
        assert_eq!(h.snapshot().quantile_us(0.5), None);
        for _ in 0..99 {
            h.record(Duration::from_micros(3)); // bucket 2: [2, 4)
        }
        h.record(Duration::from_millis(10)); // 10000 µs: bucket 14: [8192, 16384)
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        assert_eq!(s.quantile_us(0.5), Some(4));
        assert_eq!(s.quantile_us(0.99), Some(4));
        assert_eq!(s.quantile_us(1.0), Some(16384));
        assert_eq!(s.sum_ns, 99 * 3000 + 10_000_000);
    }

    #[test]
    fn errors_by_key_and_status() {
        let e = ErrorCounters::default();
        assert!(!e.record(ScsiStatus::GOOD, &[]));
        // Fixed format, ILLEGAL REQUEST; descriptor format, MEDIUM ERROR.
        assert!(e.record(ScsiStatus::CHECK_CONDITION, &[0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0]));
        assert!(e.record(ScsiStatus::CHECK_CONDITION, &[0x72, 0x03, 0x11, 0]));
        assert!(e.record(ScsiStatus::RESERVATION_CONFLICT, &[]));
        assert!(e.record(ScsiStatus::CHECK_CONDITION, &[]));
        assert_eq!(e.sense_keys[5].load(Relaxed), 1);
        assert_eq!(e.sense_keys[3].load(Relaxed), 1);
        assert_eq!(e.reservation_conflict.load(Relaxed), 1);
        assert_eq!(e.other.load(Relaxed), 1);
        assert_eq!(e.total(), 4);
    }
}
