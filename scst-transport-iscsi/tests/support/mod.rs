//! What the hostile-initiator and fault suites share: a target configured with short timeouts,
//! a well-behaved session that keeps writing and verifying data while a test misbehaves on other
//! connections, and the process's resource usage (threads, file descriptors, RSS, the SGV pool)
//! compared before and after each test.
//!
//! Resource usage is per process, so the tests of a binary that uses [`Suite`] run one at a time
//! (a global lock), whatever `--test-threads` says.
//!
//! What "back to baseline" means, and the slack allowed:
//! - target threads (connection, accept and device worker threads, recognized by name): exactly
//!   the baseline count, within [`SETTLE`];
//! - file descriptors (`/proc/self/fd`): exactly the baseline count, within [`SETTLE`];
//! - live iSCSI sessions and SCSI nexuses: only the well-behaved session's;
//! - SGV buffers in use (the pool's own gauge): zero once the well-behaved session stopped;
//! - RSS (`VmRSS`, after releasing the SGV pool's cached chunks): at most the baseline plus a
//!   per-test slack (default [`RSS_SLACK_KIB`]). The slack absorbs what the allocator keeps for
//!   reuse (glibc's per-thread arenas keep freed memory; thread stacks are cached), not leaks:
//!   a leak of one buffer per connection or per command would exceed it in the tests that open
//!   thousands of connections or send thousands of PDUs.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use scst_transport_iscsi::IscsiConfig;

use crate::common::*;

/// How long resources may take to return to their baseline after a test's connections closed.
pub const SETTLE: Duration = Duration::from_secs(5);
/// Default RSS slack (KiB) over the baseline.
pub const RSS_SLACK_KIB: u64 = 8 << 10;
/// Login timeout of the test target.
pub const LOGIN_TIMEOUT: Duration = Duration::from_millis(1000);
/// Full-feature-phase PDU timeout of the test target.
pub const PDU_TIMEOUT: Duration = Duration::from_millis(1000);
/// The target drops a connection at most this long after its timeout expired (the connection
/// thread wakes up every 500 ms to look).
pub const DROP_SLACK: Duration = Duration::from_millis(1200);
/// The blocks the well-behaved session writes (on both LUNs); tests keep away from them.
pub const GOOD_LBA: u32 = 16000;
/// How many 8-block slots the well-behaved session cycles through from [`GOOD_LBA`].
const GOOD_SLOTS: u32 = 32;

/// The target configuration of the suites: window 32, a 1 s login timeout and a 1 s PDU timeout.
pub fn hostile_config() -> IscsiConfig {
    let mut cfg = config(32);
    cfg.login_timeout = LOGIN_TIMEOUT;
    cfg.pdu_timeout = PDU_TIMEOUT;
    cfg
}

// ======================================================================
// Resource usage
// ======================================================================

/// The process's resource usage at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Every thread of the process.
    pub threads: usize,
    /// Threads the target runs per portal and connection: `iscsi-*` (accept, connections,
    /// flushers). Device workers (`scst-*`) are per device, started by the first command that
    /// needs one, and stay: they are not counted.
    pub target_threads: usize,
    /// Open file descriptors.
    pub fds: usize,
    /// Resident set size in KiB.
    pub rss_kib: u64,
}

fn status_field(name: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /proc/self/status"))
}

/// Samples the process's usage.
pub fn usage() -> Usage {
    let mut threads = 0;
    let mut target_threads = 0;
    for e in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
        threads += 1;
        // A thread may exit between read_dir and here.
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.starts_with("iscsi-") {
            target_threads += 1;
        }
    }
    // The iterator's own descriptor is counted; it is there every time.
    let fds = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count();
    Usage { threads, target_threads, fds, rss_kib: status_field("VmRSS:") }
}

// ======================================================================
// The well-behaved session
// ======================================================================

/// What the well-behaved session did.
#[derive(Debug, Default, Clone, Copy)]
pub struct GoodStats {
    /// Verified write + read pairs.
    pub ops: u64,
    /// The slowest pair.
    pub max_latency: Duration,
}

/// A session that writes and reads back [`GOOD_LBA`].. on both LUNs in a loop, failing (its
/// thread panics: the harness checks every PDU, data is compared) on any error or stall longer
/// than the harness's timeout.
pub struct GoodSession {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    handle: Option<JoinHandle<GoodStats>>,
}

impl GoodSession {
    /// Logs in and starts the loop; returns once the first pair was verified.
    pub fn start(t: &TestTarget) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let addr = t.addr;
        let (s, o) = (stop.clone(), ops.clone());
        let handle = std::thread::Builder::new()
            .name("good-session".into())
            .spawn(move || {
                let mut c = Conn::login(addr, &LoginOpts::normal()).expect("well-behaved login");
                c.clear_ua(RAM);
                c.clear_ua(FILE);
                let mut st = GoodStats::default();
                let mut i = 0u32;
                while !s.load(Relaxed) {
                    let t0 = Instant::now();
                    for l in [RAM, FILE] {
                        let lba = GOOD_LBA + (i % GOOD_SLOTS) * 8;
                        let data = pattern(8 * BS, (i as u8).wrapping_mul(7) ^ l);
                        c.write(l, lba, &data).assert_good();
                        let r = c.read(l, lba, 8);
                        r.assert_good();
                        assert!(r.data == data, "well-behaved session: data mismatch at LUN {l} LBA {lba}");
                    }
                    st.max_latency = st.max_latency.max(t0.elapsed());
                    st.ops += 1;
                    o.store(st.ops, Relaxed);
                    i = i.wrapping_add(1);
                    std::thread::sleep(Duration::from_millis(3));
                }
                st
            })
            .expect("spawn the well-behaved session");
        let g = Self { stop, ops, handle: Some(handle) };
        let deadline = Instant::now() + TIMEOUT;
        while g.ops.load(Relaxed) == 0 {
            assert!(Instant::now() < deadline, "the well-behaved session did not get going");
            assert!(!g.handle.as_ref().unwrap().is_finished(), "the well-behaved session failed to start");
            std::thread::sleep(Duration::from_millis(5));
        }
        g
    }

    /// Verified pairs so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Relaxed)
    }

    /// Stops the loop; panics if the session saw an error.
    pub fn stop(mut self) -> GoodStats {
        self.stop.store(true, Relaxed);
        match self.handle.take().unwrap().join() {
            Ok(s) => s,
            Err(_) => panic!("the well-behaved session saw an error (see its panic message above)"),
        }
    }
}

impl Drop for GoodSession {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ======================================================================
// A test's frame
// ======================================================================

static SERIAL: Mutex<()> = Mutex::new(());

/// One test's frame: the global lock, a target with [`hostile_config`] (or another), the
/// well-behaved session, and the resource baseline taken once both run.
pub struct Suite {
    // Dropped in this order: the session, the target, then the lock.
    good: Option<GoodSession>,
    pub t: TestTarget,
    pub base: Usage,
    /// RSS slack (KiB) over the baseline allowed by [`Suite::finish`].
    pub rss_slack_kib: u64,
    _lock: MutexGuard<'static, ()>,
}

impl Suite {
    /// A frame with [`hostile_config`].
    pub fn start() -> Self {
        Self::with(hostile_config())
    }

    /// A frame with a given configuration.
    pub fn with(cfg: IscsiConfig) -> Self {
        Self::with_setup(cfg, |_| {})
    }

    /// A frame with a given configuration, and `setup` run on the target (under the lock,
    /// before anything logs in: e.g. to map more LUNs).
    pub fn with_setup(cfg: IscsiConfig, setup: impl FnOnce(&TestTarget)) -> Self {
        let lock = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let t = TestTarget::with(cfg, None);
        setup(&t);
        let good = GoodSession::start(&t);
        // A few more pairs so that the session's buffers and the pool are warm.
        let n = good.ops() + 5;
        let deadline = Instant::now() + TIMEOUT;
        while good.ops() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        t.target.sgv().shrink();
        let base = usage();
        Self { good: Some(good), t, base, rss_slack_kib: RSS_SLACK_KIB, _lock: lock }
    }

    /// The well-behaved session's progress.
    pub fn good_ops(&self) -> u64 {
        self.good.as_ref().map_or(0, GoodSession::ops)
    }

    /// Waits until the target is back to its baseline (see the module documentation), stops the
    /// well-behaved session and checks it saw no error. Call once every connection the test
    /// opened is closed (dropped).
    #[track_caller]
    pub fn finish(mut self) -> GoodStats {
        let before = self.good_ops();
        let deadline = Instant::now() + SETTLE;
        let t0 = Instant::now();
        let settled = loop {
            let u = usage();
            let sessions = self.t.server.session_count();
            let nexuses = self.t.target.sessions().len();
            let ok = u.target_threads <= self.base.target_threads && u.fds <= self.base.fds;
            if ok && sessions == 1 && nexuses == 1 {
                break u;
            }
            if Instant::now() > deadline {
                panic!(
                    "not back to baseline within {SETTLE:?}: now {u:?}, baseline {:?}; iSCSI sessions {sessions}, \
                     nexuses {nexuses} (only the well-behaved one should be left)",
                    self.base
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let settle_time = t0.elapsed();
        // The well-behaved session must have kept going during the test, without an error.
        let good = self.good.take().unwrap();
        let ops = good.ops();
        let stats = good.stop();
        assert!(ops > before || stats.ops > 5, "the well-behaved session made no progress");
        // With it stopped, no SGV buffer may be left in use.
        let deadline = Instant::now() + SETTLE;
        while self.t.target.sgv().stats().bytes_in_use != 0 {
            assert!(Instant::now() < deadline, "SGV buffers still in use: {:?}", self.t.target.sgv().stats());
            std::thread::sleep(Duration::from_millis(10));
        }
        self.t.target.sgv().shrink();
        let rss = usage().rss_kib;
        assert!(
            rss <= self.base.rss_kib + self.rss_slack_kib,
            "RSS {rss} KiB > baseline {} KiB + slack {} KiB",
            self.base.rss_kib,
            self.rss_slack_kib
        );
        eprintln!(
            "baseline {:?} -> settled in {settle_time:?} to {settled:?}, RSS {rss} KiB (+{} KiB); \
             well-behaved session: {} verified pairs, slowest {:?}",
            self.base,
            rss as i64 - self.base.rss_kib as i64,
            stats.ops,
            stats.max_latency
        );
        stats
    }
}

// ======================================================================
// Small helpers
// ======================================================================

/// Waits until `c`'s connection is closed by the target; returns how long that took and the
/// PDUs that came first.
#[track_caller]
pub fn wait_closed(c: &mut Conn, within: Duration) -> (Duration, Vec<Pdu>) {
    let t0 = Instant::now();
    let seen = c.expect_closed(within);
    (t0.elapsed(), seen)
}

/// A raw connection with the harness's timeouts.
pub fn raw(t: &TestTarget) -> std::net::TcpStream {
    Conn::connect(t.addr).expect("connect")
}

/// Reads from a raw connection until EOF or error; returns how long it took and what came.
pub fn read_until_closed(s: &mut std::net::TcpStream, within: Duration) -> (Duration, Vec<u8>) {
    use std::io::Read;
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (t0.elapsed(), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                assert!(t0.elapsed() < within, "connection still open after {within:?}");
            }
            Err(_) => return (t0.elapsed(), got),
        }
    }
}
