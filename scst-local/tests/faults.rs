//! Block store failures through the loopback initiator, with the fault-injecting store of
//! `common/fault.rs` around RAM and FILEIO stores, on the inline path (a store that never
//! blocks: I/O on the submitting thread) and on device workers:
//!
//! - `EIO` on read: MEDIUM ERROR / UNRECOVERED READ ERROR (03/11/00), on write: MEDIUM ERROR /
//!   WRITE ERROR (03/0C/00), both with the command's LBA in INFORMATION (the store reports no
//!   offset, so the core reports where the command starts) in fixed and descriptor format;
//! - `ENOSPC` on write or flush: DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT (07/27/07,
//!   SBC-4 §4.7.3.7: a thin-provisioned logical unit out of space);
//! - I/O that transfers only part of its data then fails: no Data-In at all (the buffer's tail
//!   is garbage), and a torn write reported as WRITE ERROR;
//! - slow I/O: every command completes; task management while I/O is held inside the store
//!   completes only once that I/O returned, and commands queued behind it never reach the store.
//!
//! Every test body runs under a time limit: a command that never completes fails the test
//! instead of hanging it.

#[macro_use]
mod common;
#[path = "common/fault.rs"]
mod fault;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use fault::{EIO, ENOSPC, FaultGuard, FaultStore, Io};
use scst::{BlockStore, Lun, ScsiStatus, Target, TmFunction, TmStatus};
use scst_backends::{FileOptions, FileStore, RamStore};
use scst_local::LocalInitiator;

const BS: usize = 512;
const BLOCKS: u64 = 2048;
const LIMIT: Duration = Duration::from_secs(20);

/// Runs `f` on a thread and fails the test if it does not return within `limit`.
#[track_caller]
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            h.join().expect("test body");
            v
        }
        // The body panicked: join to propagate its message.
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(e) => std::panic::resume_unwind(e),
            Ok(()) => unreachable!(),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the test did not finish within {limit:?}: a hang"),
    }
}

/// The stores a fault test runs over: (name, store, may_block).
#[derive(Clone, Copy, Debug)]
enum Under {
    /// RAM, I/O on the submitting thread.
    RamInline,
    /// RAM, I/O on device workers.
    RamWorkers,
    /// FILEIO (workers).
    File,
}

const ALL: [Under; 3] = [Under::RamInline, Under::RamWorkers, Under::File];

/// A target whose LUN 0 is a fault-injecting store over `under`, and a logged-in initiator.
struct FaultRig {
    i: LocalInitiator,
    f: FaultGuard,
    target: Arc<Target>,
    _file: Option<tempfile::NamedTempFile>,
}

fn rig(under: Under) -> FaultRig {
    fn mount<S: BlockStore>(store: S, may_block: bool) -> (Arc<Target>, FaultGuard) {
        let (store, f) = FaultStore::new(store, may_block);
        let t = target();
        t.add_lun(Lun(0), device(store, config()), false).expect("map LUN 0");
        (t, f)
    }
    let size = BLOCKS * BS as u64;
    let (target, f, file) = match under {
        Under::RamInline | Under::RamWorkers => {
            let (t, f) = mount(RamStore::new(size, BS as u32).expect("ram"), matches!(under, Under::RamWorkers));
            (t, f, None)
        }
        Under::File => {
            let file = tempfile::NamedTempFile::new().expect("temp file");
            let opts = FileOptions { size: Some(size), block_size: BS as u32, ..FileOptions::default() };
            let (t, f) = mount(FileStore::open(file.path(), opts).expect("file store"), true);
            (t, f, Some(file))
        }
    };
    let i = LocalInitiator::connect(&target, &format!("iqn.2026-01.rs.scst:faults-{}", unique()));
    i.clear_unit_attentions(0);
    FaultRig { i, f, target, _file: file }
}

fn read16(lba: u64, blocks: u32) -> [u8; 16] {
    cdb16(READ16, 0, lba, blocks)
}

fn write16(lba: u64, blocks: u32) -> [u8; 16] {
    cdb16(WRITE16, 0, lba, blocks)
}

/// Runs a READ and returns the outcome and the bytes transferred.
fn try_read(i: &LocalInitiator, cdb: &[u8], blocks: usize) -> (scst_local::Outcome, Vec<u8>) {
    let mut buf = vec![0u8; blocks * BS];
    let o = i.execute(0, cdb, &[], &mut buf);
    buf.truncate(o.data_in_len);
    (o, buf)
}

/// Turns on descriptor-format sense data (D_SENSE) on LUN 0.
fn descriptor_sense(i: &LocalInitiator) {
    let page = control_page(i, 0);
    assert_good(&select_control(i, 0, page[2] | 0x04, page[4], page[5]));
}

// ------------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------------

#[test]
fn eio_on_read_after_n_ios_is_an_unrecovered_read_error_with_the_lba() {
    for under in ALL {
        bounded(LIMIT, move || {
            let r = rig(under);
            let data = pattern(1, 64 * BS);
            write(&r.i, 0, 0, BS, &data);
            r.f.fail_after(Io::Read, 2, EIO);
            for _ in 0..2 {
                assert_eq!(read(&r.i, 0, 0, BS, 64), data, "{under:?}: the first two reads pass");
            }
            for (descriptor, lba) in [(false, 40u64), (true, 120)] {
                if descriptor {
                    descriptor_sense(&r.i);
                }
                for cdb in [read16(lba, 8).to_vec(), cdb10(READ10, 0, lba as u32, 8).to_vec()] {
                    let (o, got) = try_read(&r.i, &cdb, 8);
                    assert_check(&o, 0x03, 0x11, 0x00);
                    assert!(got.is_empty(), "{under:?}: no data with a read error");
                    assert_eq!(information(o.sense()), Some(lba), "{under:?}: INFORMATION, sense {:02x?}", o.sense());
                }
                // VERIFY (BYTCHK=0) reads the medium too.
                let o = r.i.execute(0, &cdb16(VERIFY16, 0, lba, 8), &[], &mut []);
                assert_check(&o, 0x03, 0x11, 0x00);
                assert_eq!(information(o.sense()), Some(lba));
            }
            assert_eq!(r.f.injected(), 6);
            // Errors go away with the fault; nothing else was harmed.
            r.f.clear();
            assert_eq!(read(&r.i, 0, 0, BS, 64), data, "{under:?}");
        });
    }
}

#[test]
fn eio_on_a_bad_block_range_fails_only_commands_touching_it() {
    for under in ALL {
        bounded(LIMIT, move || {
            let r = rig(under);
            r.f.fail_blocks(Io::Read, 100..101, EIO);
            assert_eq!(read(&r.i, 0, 90, BS, 10).len(), 10 * BS, "{under:?}: just before");
            assert_eq!(read(&r.i, 0, 101, BS, 10).len(), 10 * BS, "{under:?}: just after");
            let (o, _) = try_read(&r.i, &read16(96, 8), 8);
            assert_check(&o, 0x03, 0x11, 0x00);
            // The store does not say which block failed: INFORMATION is the command's LBA.
            assert_eq!(information(o.sense()), Some(96));
            // Writes there still work.
            write(&r.i, 0, 100, BS, &pattern(2, BS));
        });
    }
}

#[test]
fn eio_on_write_is_a_write_error_with_the_lba_and_writes_nothing() {
    for under in ALL {
        bounded(LIMIT, move || {
            let r = rig(under);
            let old = pattern(3, 16 * BS);
            write(&r.i, 0, 200, BS, &old);
            r.f.fail_after(Io::Write, 1, EIO);
            write(&r.i, 0, 300, BS, &pattern(4, BS));
            let new = pattern(5, 16 * BS);
            for (descriptor, cdb) in [
                (false, write16(200, 16).to_vec()),
                (false, cdb10(WRITE10, 0x08, 200, 16).to_vec()), // FUA
                (true, cdb10(WRITE_VERIFY10, 0, 200, 16).to_vec()),
            ] {
                if descriptor {
                    descriptor_sense(&r.i);
                }
                let o = r.i.execute(0, &cdb, &new, &mut []);
                assert_check(&o, 0x03, 0x0c, 0x00);
                assert_eq!(information(o.sense()), Some(200), "{under:?}: sense {:02x?}", o.sense());
            }
            r.f.clear();
            assert_eq!(read(&r.i, 0, 200, BS, 16), old, "{under:?}: the failed writes wrote nothing");
        });
    }
}

#[test]
fn enospc_is_space_allocation_failed_write_protect() {
    for under in ALL {
        bounded(LIMIT, move || {
            let r = rig(under);
            r.f.fail_once(Io::Write, ENOSPC);
            let o = r.i.execute(0, &write16(10, 4), &pattern(6, 4 * BS), &mut []);
            assert_check(&o, 0x07, 0x27, 0x07);
            // Space came back.
            write(&r.i, 0, 10, BS, &pattern(6, 4 * BS));
            // A flush that finds no space (delayed allocation), and one with an I/O error.
            r.f.fail_once(Io::Flush, ENOSPC);
            let o = r.i.execute(0, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut []);
            assert_check(&o, 0x07, 0x27, 0x07);
            r.f.fail_once(Io::Flush, EIO);
            let o = r.i.execute(0, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut []);
            assert_check(&o, 0x03, 0x0c, 0x00);
            assert_good(&r.i.execute(0, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut []));
            assert_eq!(read(&r.i, 0, 10, BS, 4), pattern(6, 4 * BS));
        });
    }
}

#[test]
fn short_read_sends_no_data() {
    for under in ALL {
        bounded(LIMIT, move || {
            let r = rig(under);
            let data = pattern(7, 32 * BS);
            write(&r.i, 0, 64, BS, &data);
            // Half a block, then a failure: the buffer's tail is garbage (0xEE).
            r.f.short(Io::Read, 3 * BS + 256, EIO);
            let (o, got) = try_read(&r.i, &read16(64, 32), 32);
            assert_check(&o, 0x03, 0x11, 0x00);
            assert!(got.is_empty(), "{under:?}: {} bytes of a failed read transferred", got.len());
            r.f.clear();
            assert_eq!(read(&r.i, 0, 64, BS, 32), data);
        });
    }
}

#[test]
fn torn_write_is_a_write_error() {
    for under in ALL {
        bounded(LIMIT, move || {
            let r = rig(under);
            let old = pattern(8, 8 * BS);
            let new = pattern(9, 8 * BS);
            write(&r.i, 0, 500, BS, &old);
            r.f.short(Io::Write, 2 * BS, EIO);
            let o = r.i.execute(0, &write16(500, 8), &new, &mut []);
            assert_check(&o, 0x03, 0x0c, 0x00);
            assert_eq!(information(o.sense()), Some(500));
            r.f.clear();
            // SBC leaves the blocks of a failed write indeterminate; this store tore it after two
            // blocks, and the logical unit shows exactly that (no block mixes old and new).
            let got = read(&r.i, 0, 500, BS, 8);
            assert_eq!(got[..2 * BS], new[..2 * BS], "{under:?}");
            assert_eq!(got[2 * BS..], old[2 * BS..], "{under:?}");
        });
    }
}

// ------------------------------------------------------------------------------------------------
// Slow I/O
// ------------------------------------------------------------------------------------------------

/// Waits for `n` completions of started commands; returns them as (cookie, status, aborted).
#[track_caller]
fn completions(i: &LocalInitiator, n: usize, within: Duration) -> Vec<(u64, ScsiStatus, bool)> {
    let deadline = Instant::now() + within;
    let mut v = Vec::new();
    while v.len() < n {
        match i.try_completion() {
            Some(c) => v.push((c.fabric_cookie, c.status(), c.is_aborted())),
            None => {
                assert!(Instant::now() < deadline, "{} of {n} commands completed within {within:?}", v.len());
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    v
}

#[test]
fn slow_io_completes() {
    for under in ALL {
        bounded(LIMIT, move || {
            let r = rig(under);
            r.f.set_delay(Duration::from_millis(15));
            let n = 24u64;
            for k in 0..n {
                let d = pattern(100 + k as u32, 4 * BS);
                r.i.start(0, &write16(k * 4, 4), &d, 0, k).expect("queue");
            }
            let done = completions(&r.i, n as usize, Duration::from_secs(10));
            assert!(done.iter().all(|(_, s, a)| *s == ScsiStatus::GOOD && !a), "{under:?}: {done:?}");
            for k in 0..n {
                r.i.start(0, &read16(k * 4, 4), &[], 4 * BS as u32, 1000 + k).expect("queue");
            }
            for (_, s, _) in completions(&r.i, n as usize, Duration::from_secs(10)) {
                assert_eq!(s, ScsiStatus::GOOD);
            }
            r.f.set_delay(Duration::ZERO);
            for k in 0..n {
                assert_eq!(read(&r.i, 0, k * 4, BS, 4), pattern(100 + k as u32, 4 * BS));
            }
        });
    }
}

/// Runs a task management function on a thread; returns a receiver of its status.
fn tmf_async(i: &Arc<LocalInitiator>, f: TmFunction, tag: u64) -> mpsc::Receiver<TmStatus> {
    let (tx, rx) = mpsc::channel();
    let i = i.clone();
    std::thread::spawn(move || {
        let _ = tx.send(i.task_mgmt(f, 0, tag));
    });
    rx
}

#[test]
fn task_management_while_io_is_held_in_the_store() {
    // FILEIO-like store (workers: 2 per device). Two writes are held inside the store, a third
    // waits for a worker. A LUN RESET must not complete while the store still works for the
    // aborted commands, and the queued one never reaches it.
    for under in [Under::RamWorkers, Under::File] {
        bounded(LIMIT, move || {
            let r = rig(under);
            let old = pattern(20, 24 * BS);
            write(&r.i, 0, 0, BS, &old);
            let writes_before = r.f.writes();
            let i = Arc::new(r.i);
            r.f.close_gate();
            for k in 0..3u64 {
                i.start(0, &write16(k * 8, 8), &pattern(30 + k as u32, 8 * BS), 0, k).expect("queue");
            }
            r.f.wait_inside(2, Duration::from_secs(5));
            let tmf = tmf_async(&i, TmFunction::LUN_RESET, 0);
            assert!(
                tmf.recv_timeout(Duration::from_millis(300)).is_err(),
                "{under:?}: the LUN RESET completed while aborted commands were still inside the store"
            );
            r.f.open_gate();
            // The local initiator hands aborted commands back; the function completes once they
            // are dropped (a wire transport drops them itself).
            let done = completions(&i, 3, Duration::from_secs(5));
            let st = tmf.recv_timeout(Duration::from_secs(5)).expect("the LUN RESET completes once the store is done");
            assert_eq!(st, TmStatus::COMPLETE);
            assert!(done.iter().all(|(_, _, aborted)| *aborted), "{under:?}: {done:?}");
            assert_eq!(r.f.writes() - writes_before, 2, "{under:?}: the queued write never reached the store");
            // After the reset's unit attention, the LU works normally.
            assert_ua(&i.execute(0, &TUR, &[], &mut []), 0x29, 0x03);
            assert_eq!(read(&i, 0, 16, BS, 8), old[16 * BS..], "{under:?}: the queued write did not happen");
            write(&i, 0, 0, BS, &old[..8 * BS]);
        });
    }
}

#[test]
fn abort_task_of_a_command_held_in_the_store() {
    for under in [Under::RamWorkers, Under::File] {
        bounded(LIMIT, move || {
            let r = rig(under);
            let i = Arc::new(r.i);
            r.f.close_gate();
            let tag = i.peek_next_tag();
            i.start(0, &read16(0, 8), &[], 8 * BS as u32, 1).expect("queue");
            r.f.wait_inside(1, Duration::from_secs(5));
            let tmf = tmf_async(&i, TmFunction::ABORT_TASK, tag);
            assert!(
                tmf.recv_timeout(Duration::from_millis(200)).is_err(),
                "{under:?}: ABORT TASK before the I/O ended"
            );
            r.f.open_gate();
            let done = completions(&i, 1, Duration::from_secs(5));
            assert_eq!(tmf.recv_timeout(Duration::from_secs(5)).expect("ABORT TASK completes"), TmStatus::COMPLETE);
            assert!(done[0].2, "{under:?}: the command is reported aborted");
            // A slow store with a delay: ABORT TASK completes once the I/O returns.
            r.f.set_delay(Duration::from_millis(300));
            let tag = i.peek_next_tag();
            i.start(0, &write16(0, 8), &pattern(40, 8 * BS), 0, 2).expect("queue");
            r.f.wait_inside(1, Duration::from_secs(5));
            let tmf = tmf_async(&i, TmFunction::ABORT_TASK, tag);
            let done = completions(&i, 1, Duration::from_secs(5));
            assert!(done[0].2, "{under:?}: the command is reported aborted");
            assert_eq!(tmf.recv_timeout(Duration::from_secs(5)).expect("ABORT TASK completes"), TmStatus::COMPLETE);
            r.f.set_delay(Duration::ZERO);
            assert_good(&i.execute(0, &TUR, &[], &mut []));
        });
    }
}

#[test]
fn a_slow_store_does_not_slow_another_lu() {
    // One LU's store holds both of its workers; another LU of the same target is unaffected.
    bounded(LIMIT, || {
        let r = rig(Under::RamWorkers);
        let other = device(RamStore::new(BLOCKS * BS as u64, BS as u32).expect("ram"), config());
        r.target.add_lun(Lun(1), other, false).expect("map LUN 1");
        let i = LocalInitiator::connect(&r.target, &format!("iqn.2026-01.rs.scst:faults-{}", unique()));
        i.clear_unit_attentions(0);
        i.clear_unit_attentions(1);
        r.f.close_gate();
        for k in 0..4u64 {
            i.start(0, &read16(k * 8, 8), &[], 8 * BS as u32, k).expect("queue");
        }
        r.f.wait_inside(2, Duration::from_secs(5));
        let t0 = Instant::now();
        for k in 0..50u64 {
            let d = pattern(50 + k as u32, 8 * BS);
            let o = i.execute(1, &write16(k * 8, 8), &d, &mut []);
            assert_good(&o);
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "LUN 1 slowed down: {:?}", t0.elapsed());
        r.f.open_gate();
        completions(&i, 4, Duration::from_secs(5));
    });
}
