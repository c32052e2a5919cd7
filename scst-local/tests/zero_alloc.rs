//! Steady-state commands allocate nothing on the heap.
//!
//! This test binary installs a counting global allocator. Counting is off except inside
//! [`measure`], which counts two things while its closure runs:
//! - allocations made by the measuring thread itself (a thread-local flag enables them), and
//! - allocations made by any thread of the process (a global flag), which catches allocations on
//!   device worker threads. The stores used here (NULLIO, RAM) never block, so their commands
//!   complete on the submitting thread and no other thread should allocate either.
//!
//! After a warm-up that fills the session's command pool, the SGV free lists and the RAM store's
//! pages, 10,000 READ(10) and WRITE(10) commands of 4 KiB and 64 KiB per LUN must allocate
//! nothing, synchronously ([`LocalInitiator::execute`]) and with several commands in flight
//! ([`LocalInitiator::start`] + [`LocalInitiator::next_completion`]).
//!
//! Everything runs in one `#[test]` so that no other test of this binary allocates while a
//! measurement is on (the global counter would see it), and the measurements start only once
//! the devices' worker threads are idle (their startup allocates once, asynchronously).
//!
//! To find an allocation site, run with `ZERO_ALLOC_TRACE=1` (and `-- --nocapture`): the first
//! few counted allocations print a backtrace.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use scst::{Device, DeviceConfig, Disk, Lun, SgvConfig, SgvPool, Target};
use scst_backends::{NullStore, RamStore};
use scst_local::LocalInitiator;

/// The system allocator, counting allocations while a measurement is on.
struct CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Whether allocations of every thread are counted (in [`GLOBAL_ALLOCS`]).
static GLOBAL_ON: AtomicBool = AtomicBool::new(false);
/// Allocations of any thread while [`GLOBAL_ON`].
static GLOBAL_ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Whether counted allocations print a backtrace (`ZERO_ALLOC_TRACE=1`).
static TRACE: AtomicBool = AtomicBool::new(false);
/// Backtraces still to print before tracing goes quiet.
static TRACES_LEFT: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread is the measuring one and a measurement is on.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations of this thread while [`COUNTING`].
    static THREAD_ALLOCS: Cell<u64> = const { Cell::new(0) };
    /// Set while this thread prints a backtrace (whose own allocations are not counted).
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

impl CountingAlloc {
    /// Records one allocation (or reallocation) of `layout`.
    fn note(&self, layout: Layout) {
        if !GLOBAL_ON.load(Relaxed) || IN_TRACE.try_with(Cell::get).unwrap_or(true) {
            return;
        }
        GLOBAL_ALLOCS.fetch_add(1, Relaxed);
        let mine = COUNTING.try_with(Cell::get).unwrap_or(false);
        if mine {
            let _ = THREAD_ALLOCS.try_with(|c| c.set(c.get() + 1));
        }
        if TRACE.load(Relaxed) && TRACES_LEFT.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1)).is_ok() {
            let _ = IN_TRACE.try_with(|t| t.set(true));
            let thread = std::thread::current();
            let bt = std::backtrace::Backtrace::force_capture();
            eprintln!(
                "zero_alloc: allocation of {} bytes on thread {:?} ({}):\n{bt}",
                layout.size(),
                thread.name().unwrap_or("?"),
                if mine { "measuring thread" } else { "other thread" },
            );
            let _ = IN_TRACE.try_with(|t| t.set(false));
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees carry over; the bookkeeping only touches atomics and const-initialised
// thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note(layout);
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.note(layout);
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note(layout);
        // SAFETY: forwarded unchanged; `ptr` was allocated by `System` (through this allocator)
        // with `layout`, as the caller guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations counted during one [`measure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    /// By the measuring thread.
    thread: u64,
    /// By any thread (the measuring one included).
    global: u64,
}

/// Runs `f` with allocation counting on and returns what it counted.
fn measure(f: impl FnOnce()) -> Counts {
    THREAD_ALLOCS.set(0);
    GLOBAL_ALLOCS.store(0, Relaxed);
    COUNTING.set(true);
    GLOBAL_ON.store(true, Relaxed);
    f();
    GLOBAL_ON.store(false, Relaxed);
    COUNTING.set(false);
    Counts { thread: THREAD_ALLOCS.get(), global: GLOBAL_ALLOCS.load(Relaxed) }
}

const NULLIO_LUN: u16 = 0;
const RAM_LUN: u16 = 1;
const BLOCK: usize = 512;
/// Transfer sizes measured.
const SIZES: [usize; 2] = [4 << 10, 64 << 10];
/// Distinct LBA ranges per size: commands cycle over them (the warm-up touches them all, so the
/// RAM store has every page it will need).
const SPREAD: usize = 16;
const WARMUP: usize = 1_000;
const MEASURED: usize = 10_000;
/// Commands in flight on the asynchronous path.
const IN_FLIGHT: usize = 8;

fn target() -> Arc<Target> {
    let target = Target::new("iqn.2026-11.rs.scst:zero-alloc", SgvPool::new(SgvConfig::default()));
    let null = Disk::new(NullStore::new(1 << 30, BLOCK as u32).unwrap());
    let ram = Disk::new(RamStore::new(16 << 20, BLOCK as u32).unwrap());
    target.add_lun(Lun(NULLIO_LUN), Device::new(DeviceConfig::new("za-null"), null).unwrap(), false).unwrap();
    target.add_lun(Lun(RAM_LUN), Device::new(DeviceConfig::new("za-ram"), ram).unwrap(), false).unwrap();
    target
}

/// READ(10) (or WRITE(10) when `write`) of `len` bytes, command number `i` of its kind.
fn rw10(write: bool, len: usize, i: usize) -> [u8; 10] {
    let blocks = (len / BLOCK) as u16;
    let lba = (i % SPREAD) as u32 * u32::from(blocks);
    let mut c = [0u8; 10];
    c[0] = if write { 0x2a } else { 0x28 };
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// One synchronous command with caller-owned buffers; panics unless GOOD.
fn run_sync(init: &LocalInitiator, lun: u16, write: bool, i: usize, out: &[u8], inb: &mut [u8]) {
    let cdb = rw10(write, inb.len().max(out.len()), i);
    let o = if write { init.execute(lun, &cdb, out, &mut []) } else { init.execute(lun, &cdb, &[], inb) };
    assert!(o.is_good(), "LUN {lun} command {cdb:02x?} failed: {:?}", o.sense_code());
    black_box(&inb[..o.data_in_len]);
}

/// `batches` rounds of [`IN_FLIGHT`] asynchronous commands of `len` bytes, each round started
/// together and then reaped; panics unless every one is GOOD. Writes send `out` (`len` bytes).
fn run_async(init: &LocalInitiator, lun: u16, write: bool, len: usize, batches: usize, out: &[u8]) {
    let mut n = 0;
    for _ in 0..batches {
        for k in 0..IN_FLIGHT {
            let cdb = rw10(write, len, n + k);
            let r = if write {
                init.start(lun, &cdb, out, 0, k as u64)
            } else {
                init.start(lun, &cdb, &[], len as u32, k as u64)
            };
            assert!(r.is_ok(), "queue full");
        }
        n += IN_FLIGHT;
        for _ in 0..IN_FLIGHT {
            let cmd = init.next_completion();
            assert!(cmd.status() == scst::ScsiStatus::GOOD, "LUN {lun} async command failed: {cmd:?}");
            let expect_in = if write { 0 } else { len };
            assert_eq!(cmd.data_in_len(), expect_in);
            drop(black_box(cmd));
        }
    }
}

/// What the statistics counted for `lun`'s commands of one direction: device commands, device
/// latency samples of the class, session completions, session latency samples of the class.
fn completions(target: &Arc<Target>, init: &LocalInitiator, lun: u16, write: bool) -> [u64; 4] {
    let class = if write { scst::stats::OpClass::Write } else { scst::stats::OpClass::Read };
    let dev = target.luns().remove(&Lun(lun)).expect("mapped LUN").dev;
    let (d, s) = (dev.stats(), init.session().stats());
    [
        d.commands.load(Relaxed),
        d.io.latency(class).snapshot().count(),
        s.io.completed(),
        s.io.latency(class).snapshot().count(),
    ]
}

#[test]
fn steady_state_commands_do_not_allocate() {
    // The meter works: an allocation on this thread is seen by both counters, one on another
    // thread by the global counter only.
    let c = measure(|| drop(black_box(vec![0u8; 100])));
    assert!(c.thread >= 1 && c.global >= 1, "meter missed an allocation: {c:?}");
    let helper = std::thread::spawn(|| {
        while !GLOBAL_ON.load(Relaxed) {
            std::thread::yield_now();
        }
        drop(black_box(Box::new([0u8; 64])));
    });
    let c = measure(|| {
        while !helper.is_finished() {
            std::thread::yield_now();
        }
    });
    helper.join().unwrap();
    assert!(c.thread == 0 && c.global >= 1, "meter mixed up threads: {c:?}");
    assert_eq!(measure(|| {}), Counts { thread: 0, global: 0 }, "meter counts without allocations");

    if std::env::var_os("ZERO_ALLOC_TRACE").is_some_and(|v| v != "0") {
        TRACES_LEFT.store(8, Relaxed);
        TRACE.store(true, Relaxed);
    }
    let target = target();
    let init = LocalInitiator::connect(&target, "iqn.2026-11.rs.scst:zero-alloc-init");
    for lun in [NULLIO_LUN, RAM_LUN] {
        assert!(init.clear_unit_attentions(lun).is_good(), "LUN {lun} not ready");
    }
    let out: Vec<u8> = (0..SIZES[1]).map(|i| (i * 7) as u8).collect();
    let mut inb = vec![0u8; SIZES[1]];

    let mut failures = Vec::new();
    for lun in [NULLIO_LUN, RAM_LUN] {
        for len in SIZES {
            for write in [true, false] {
                let name = format!("LUN {lun} {} {} KiB", if write { "WRITE(10)" } else { "READ(10)" }, len >> 10);
                let (out, inb) = if write { (&out[..len], &mut inb[..0]) } else { (&out[..0], &mut inb[..len]) };

                for i in 0..WARMUP {
                    run_sync(&init, lun, write, i, out, inb);
                }
                let counted = completions(&target, &init, lun, write);
                let sync = measure(|| {
                    for i in 0..MEASURED {
                        run_sync(&init, lun, write, i, out, inb);
                    }
                });

                run_async(&init, lun, write, len, WARMUP / IN_FLIGHT, out);
                let before_async = completions(&target, &init, lun, write);
                let asy = measure(|| run_async(&init, lun, write, len, MEASURED / IN_FLIGHT, out));
                // The statistics counted every measured command (the counting path is part of
                // what allocated nothing).
                let after = completions(&target, &init, lun, write);
                let batched = |n: usize| (n / IN_FLIGHT * IN_FLIGHT) as u64;
                let warm_and_sync = MEASURED as u64 + batched(WARMUP);
                assert_eq!(before_async, counted.map(|c| c + warm_and_sync), "{name}: counted");
                assert_eq!(after, before_async.map(|c| c + batched(MEASURED)), "{name}: counted");

                println!("{name}: execute {sync:?}, start/next_completion {asy:?}");
                let zero = Counts { thread: 0, global: 0 };
                if sync != zero {
                    failures.push(format!("{name} via execute: {sync:?}"));
                }
                if asy != zero {
                    failures.push(format!("{name} via start/next_completion ({IN_FLIGHT} in flight): {asy:?}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "steady-state commands allocated (rerun with ZERO_ALLOC_TRACE=1 -- --nocapture for call sites):\n{}",
        failures.join("\n")
    );
    // NULLIO and RAM commands never left the submitting thread: their devices never needed a
    // worker, so none was started (no thread, no queue memory per LUN).
    for (lun, m) in target.luns() {
        assert!(!m.dev.workers_started(), "LUN {} started device workers", lun.0);
    }
}
