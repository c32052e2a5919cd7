//! Unit attentions, task attributes (SIMPLE, ORDERED, HEAD OF QUEUE) and task management
//! functions through the loopback initiator. Ordering is shown with a block store that sleeps in
//! its writes, so an ORDERED command can be seen waiting for an earlier SIMPLE one.

#[macro_use]
mod common;

use std::io::{self, IoSlice, IoSliceMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use common::*;
use scst::{BlockStore, CmdBox, Device, Disk, Geometry, Lun, ScsiStatus, StoreCaps, TaskAttr, TmFunction, TmStatus};
use scst_backends::RamStore;
use scst_local::LocalInitiator;

// ------------------------------------------------------------------------------------------------
// A slow store
// ------------------------------------------------------------------------------------------------

/// A RAM store whose writes sleep first (a store that may block: commands run on workers).
struct SlowStore {
    inner: RamStore,
    write_delay_ms: AtomicU64,
}

impl BlockStore for SlowStore {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }

    fn caps(&self) -> StoreCaps {
        StoreCaps { may_block: true, ..self.inner.caps() }
    }

    fn product(&self) -> &str {
        "SLOW"
    }

    fn read_at(&self, off: u64, bufs: &mut [IoSliceMut<'_>]) -> io::Result<()> {
        self.inner.read_at(off, bufs)
    }

    fn write_at(&self, off: u64, bufs: &[IoSlice<'_>], fua: bool) -> io::Result<()> {
        std::thread::sleep(Duration::from_millis(self.write_delay_ms.load(SeqCst)));
        self.inner.write_at(off, bufs, fua)
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

/// A target whose LUN 0 is a [`SlowStore`] of 1 MiB with `delay_ms` per write, and a logged-in
/// initiator.
fn slow_rig(delay_ms: u64) -> (Arc<scst::Target>, Arc<Device>, LocalInitiator) {
    let store =
        SlowStore { inner: RamStore::new(1 << 20, 512).expect("ram"), write_delay_ms: AtomicU64::new(delay_ms) };
    let t = target();
    let dev = Device::new(config(), Disk::new(store)).expect("device");
    t.add_lun(Lun(0), dev.clone(), false).expect("map");
    let i = LocalInitiator::connect(&t, &format!("iqn.2026-01.rs.scst:slow-{}", unique()));
    assert_good(&i.clear_unit_attentions(0));
    (t, dev, i)
}

/// The Data-In of a completed command.
fn data_of(c: &CmdBox) -> Vec<u8> {
    let mut iov = scst::sgv::empty_io_slices();
    let n = c.data_in_slices(0, c.data_in_len(), &mut iov);
    iov[..n].iter().flat_map(|s| s.iter().copied()).collect()
}

/// Waits for `n` completions and returns them in completion order as (cookie, status, data).
fn completions(i: &LocalInitiator, n: usize) -> Vec<(u64, ScsiStatus, Vec<u8>)> {
    (0..n)
        .map(|_| {
            let c = i.next_completion();
            (c.fabric_cookie, c.status(), data_of(&c))
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Task attributes
// ------------------------------------------------------------------------------------------------

#[test]
fn ordered_and_head_of_queue_commands_complete() {
    let r = Rig::new(Backend::File, 2048, 512);
    let i = r.login();
    for attr in [TaskAttr::Simple, TaskAttr::Ordered, TaskAttr::HeadOfQueue] {
        let data = pattern(attr as u32 + 1, 1024);
        assert_good(&i.execute_attr(0, &cdb10(WRITE10, 0, 4, 2), &data, &mut [], attr));
        let mut back = vec![0u8; 1024];
        assert_good(&i.execute_attr(0, &cdb10(READ10, 0, 4, 2), &[], &mut back, attr));
        assert_eq!(back, data);
        assert_good(&i.execute_attr(0, &TUR, &[], &mut [], attr));
        assert_good(&i.execute_attr(0, &inquiry_cdb(false, 0, 96), &[], &mut [0; 96], attr));
        assert_good(&i.execute_attr(0, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut [], attr));
    }
    // ACA is not supported (NormACA = 0).
    let o = i.execute_attr(0, &TUR, &[], &mut [], TaskAttr::Aca);
    assert_check(&o, 0x05, 0x49, 0x00);
    // Many ORDERED commands in a row.
    for k in 0..32u32 {
        let data = pattern(100 + k, 512);
        assert_good(&i.execute_attr(0, &cdb10(WRITE10, 0, k, 1), &data, &mut [], TaskAttr::Ordered));
    }
    assert_eq!(read(&i, 0, 31, 512, 1), pattern(131, 512));
}

#[test]
fn simple_read_does_not_wait_for_an_earlier_simple_write() {
    let (_t, _d, i) = slow_rig(400);
    let new = pattern(1, 512);
    i.start(0, &cdb10(WRITE10, 0, 0, 1), &new, 0, 1).expect("write");
    i.start(0, &cdb10(READ10, 0, 0, 1), &[], 512, 2).expect("read");
    let c = completions(&i, 2);
    assert_eq!((c[0].0, c[0].1), (2, ScsiStatus::GOOD), "the read overtakes the slow write");
    assert_eq!(c[0].2, vec![0u8; 512], "and sees the old data");
    assert_eq!((c[1].0, c[1].1), (1, ScsiStatus::GOOD));
}

#[test]
fn ordered_command_waits_for_an_earlier_simple_write() {
    let (_t, _d, i) = slow_rig(300);
    let new = pattern(2, 512);
    i.start(0, &cdb10(WRITE10, 0, 0, 1), &new, 0, 1).expect("write");
    i.start_attr(0, &cdb10(READ10, 0, 0, 1), &[], 512, 2, TaskAttr::Ordered).expect("ordered read");
    let c = completions(&i, 2);
    assert_eq!((c[0].0, c[0].1), (1, ScsiStatus::GOOD), "the write completes first");
    assert_eq!((c[1].0, c[1].1), (2, ScsiStatus::GOOD));
    assert_eq!(c[1].2, new, "the ORDERED read ran after the write");
}

#[test]
fn simple_command_waits_for_an_earlier_ordered_one() {
    let (_t, _d, i) = slow_rig(200);
    let a = pattern(3, 512);
    let b = pattern(4, 512);
    i.start(0, &cdb10(WRITE10, 0, 0, 1), &a, 0, 1).expect("write a");
    i.start_attr(0, &cdb10(WRITE10, 0, 8, 1), &b, 0, 2, TaskAttr::Ordered).expect("ordered write b");
    i.start(0, &cdb10(READ10, 0, 8, 1), &[], 512, 3).expect("read b");
    let c = completions(&i, 3);
    assert_eq!(c.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(c.iter().all(|x| x.1 == ScsiStatus::GOOD));
    assert_eq!(c[2].2, b, "the SIMPLE read after the ORDERED write sees its data");
}

#[test]
fn head_of_queue_runs_before_queued_commands() {
    let (_t, _d, i) = slow_rig(300);
    let new = pattern(5, 512);
    i.start(0, &cdb10(WRITE10, 0, 0, 1), &new, 0, 1).expect("write");
    i.start_attr(0, &cdb10(READ10, 0, 0, 1), &[], 512, 2, TaskAttr::Ordered).expect("ordered read");
    i.start_attr(0, &cdb10(READ10, 0, 0, 1), &[], 512, 3, TaskAttr::HeadOfQueue).expect("head of queue read");
    let c = completions(&i, 3);
    assert_eq!(c.iter().map(|x| x.0).collect::<Vec<_>>(), [3, 1, 2]);
    assert_eq!(c[0].2, vec![0u8; 512], "HEAD OF QUEUE did not wait for the write");
    assert_eq!(c[2].2, new);
}

/// Many commands in flight on a store that blocks (they run on two workers, in any order):
/// every 12th command is an ORDERED WRITE of a shared region, SIMPLE READs of that region sit
/// between them, the rest are SIMPLE WRITEs of regions of their own. Returns, per command, its
/// position in the completion order, after checking what the task set guarantees about
/// execution: each READ sees the last ORDERED WRITE before it (it can neither overtake that
/// write nor be overtaken by the next one).
fn ordered_workload(i: &LocalInitiator) -> Vec<usize> {
    const SHARED: u32 = 4000;
    let n = 240u64;
    let ordered = |k: u64| k % 12 == 6;
    let is_read = |k: u64| k % 3 == 0 && !ordered(k);
    for k in 0..n {
        if ordered(k) {
            let data = pattern(k as u32, 4096);
            i.start_attr(0, &cdb10(WRITE10, 0, SHARED, 8), &data, 0, k, TaskAttr::Ordered).expect("start");
        } else if is_read(k) {
            i.start(0, &cdb10(READ10, 0, SHARED, 8), &[], 4096, k).expect("start");
        } else {
            let data = pattern(k as u32, 4096);
            i.start(0, &cdb10(WRITE10, 0, (k * 8) as u32, 8), &data, 0, k).expect("start");
        }
    }
    let mut position = vec![usize::MAX; n as usize];
    for p in 0..n as usize {
        let c = i.next_completion();
        let k = c.fabric_cookie;
        assert_eq!(c.status(), ScsiStatus::GOOD, "{:02x?}", c.sense());
        position[k as usize] = p;
        if is_read(k) {
            let want = match (0..k).rev().find(|&j| ordered(j)) {
                Some(j) => pattern(j as u32, 4096),
                None => vec![0u8; 4096],
            };
            assert!(data_of(&c) == want, "READ {k} does not see the last ORDERED WRITE before it");
        }
    }
    for k in (0..n).filter(|&k| !ordered(k) && !is_read(k)) {
        assert_eq!(read(i, 0, k * 8, 512, 8), pattern(k as u32, 4096), "write {k}");
    }
    position
}

#[test]
fn ordered_commands_execute_after_earlier_and_before_later_commands() {
    let r = Rig::new(Backend::File, 8192, 512);
    let i = r.login();
    ordered_workload(&i);
}

/// SAM-5: an ORDERED command does not start before every earlier command has completed, and a
/// command completes when its status is sent. So its response never precedes the response of an
/// earlier command, nor follows that of a later one. Fails intermittently: a worker leaves the
/// task set before it hands the command to the fabric, and in that window the next command can
/// run and be delivered first.
#[test]
fn ordered_commands_split_the_response_order() {
    for _ in 0..20 {
        let r = Rig::new(Backend::File, 8192, 512);
        let i = r.login();
        let position = ordered_workload(&i);
        for k in (0..position.len()).filter(|k| k % 12 == 6) {
            for (j, &pj) in position.iter().enumerate() {
                assert!(j >= k || pj < position[k], "command {j} answered after the later ORDERED command {k}");
                assert!(j <= k || pj > position[k], "command {j} answered before the earlier ORDERED command {k}");
            }
        }
    }
}

/// With a store that never blocks, commands run on the thread that submits or completes them.
/// An ORDERED command parked behind a Data-Out command must still not have its response sent
/// before that command's: here the WRITE's data arrives, the WRITE executes and is handed back
/// as `Step::Done` for the fabric to send, and the ORDERED READ released by it is already
/// delivered at that point.
#[test]
fn ordered_response_never_precedes_the_earlier_commands_response() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    let i = r.login();
    let s = i.session().clone();
    let cdb = cdb10(WRITE10, 0, 0, 1);
    let hdr = scst::CmdHeader {
        lun: Lun(0).to_sam(),
        cdb: &cdb,
        attr: TaskAttr::Simple,
        tag: 0xabc,
        expected_len: 512,
        expected_dir: scst::DataDir::Out,
    };
    let scst::Step::NeedData(mut w) = s.submit(s.alloc_cmd(&hdr).expect("alloc")) else {
        panic!("the WRITE wants its data")
    };
    i.start_attr(0, &cdb10(READ10, 0, 0, 1), &[], 512, 7, TaskAttr::Ordered).expect("ordered read");
    assert!(i.try_completion().is_none(), "the ORDERED READ waits for the WRITE");
    let data = pattern(77, 512);
    w.buf_mut().expect("buffer").write_at(0, &data);
    let scst::Step::Done(w) = s.data_received(w) else { panic!("RAM completes inline") };
    assert_eq!(w.status(), ScsiStatus::GOOD);
    // The fabric has not sent the WRITE's response yet: the READ's must not be out either.
    let early = i.try_completion();
    let was_early = early.is_some();
    drop(w);
    let read = early.unwrap_or_else(|| i.next_completion());
    assert_eq!(data_of(&read), data, "the READ ran after the WRITE");
    assert!(!was_early, "the ORDERED READ's response was delivered before the WRITE's");
}

#[test]
fn task_set_full_when_the_session_depth_is_used_up() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    let i = r.login();
    // RAM commands complete at once, but each stays allocated until its completion is taken.
    for k in 0..scst_local::DEPTH as u64 {
        i.start(0, &cdb10(READ10, 0, 0, 1), &[], 512, k).expect("within depth");
    }
    assert_eq!(i.session().outstanding(), scst_local::DEPTH);
    assert!(i.start(0, &TUR, &[], 0, 999).is_err());
    assert_eq!(i.execute(0, &TUR, &[], &mut []).status, ScsiStatus::TASK_SET_FULL);
    assert!(i.session().stats().queue_full.load(SeqCst) >= 2);
    for _ in 0..scst_local::DEPTH {
        assert_eq!(i.next_completion().status(), ScsiStatus::GOOD);
    }
    assert_good(&i.execute(0, &TUR, &[], &mut []));
}

// ------------------------------------------------------------------------------------------------
// Task management
// ------------------------------------------------------------------------------------------------

#[test]
fn abort_task_of_unknown_task_or_lun() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    let i = r.login();
    assert_eq!(i.task_mgmt(TmFunction::ABORT_TASK, 0, 0xdead_beef), TmStatus::NO_TASK);
    // A tag of a command that already completed.
    let tag = i.peek_next_tag();
    assert_good(&i.execute(0, &TUR, &[], &mut []));
    assert_eq!(i.task_mgmt(TmFunction::ABORT_TASK, 0, tag), TmStatus::NO_TASK);
    for f in [TmFunction::ABORT_TASK, TmFunction::LUN_RESET, TmFunction::QUERY_TASK_SET, TmFunction::ABORT_TASK_SET] {
        assert_eq!(i.task_mgmt(f, 7, 1), TmStatus::NO_LUN, "{f:?}");
    }
    assert_eq!(i.task_mgmt(TmFunction::ABORT_TASK_SET, 0, 0), TmStatus::COMPLETE);
    assert_eq!(i.task_mgmt(TmFunction::CLEAR_ACA, 0, 0), TmStatus::NOT_SUPPORTED);
    assert_good(&i.execute(0, &TUR, &[], &mut []));
}

#[test]
fn abort_task_of_a_queued_ordered_command() {
    let (_t, _d, i) = slow_rig(500);
    let a = pattern(6, 512);
    i.start(0, &cdb10(WRITE10, 0, 0, 1), &a, 0, 1).expect("write a");
    let tag = i.peek_next_tag();
    i.start_attr(0, &cdb10(WRITE10, 0, 8, 1), &pattern(7, 512), 0, 2, TaskAttr::Ordered).expect("ordered write");
    let released = AtomicBool::new(false);
    std::thread::scope(|s| {
        let tm = s.spawn(|| {
            let st = i.task_mgmt(TmFunction::ABORT_TASK, 0, tag);
            (st, released.load(SeqCst))
        });
        let first = i.next_completion();
        assert_eq!((first.fabric_cookie, first.status()), (1, ScsiStatus::GOOD));
        drop(first);
        let aborted = i.next_completion();
        assert_eq!(aborted.fabric_cookie, 2);
        assert_eq!(aborted.status(), ScsiStatus::TASK_ABORTED);
        assert!(aborted.is_aborted());
        released.store(true, SeqCst);
        drop(aborted);
        let (st, after) = tm.join().expect("tm thread");
        assert_eq!(st, TmStatus::COMPLETE);
        assert!(after, "the response waits until the aborted command is gone");
    });
    // The aborted write never reached the medium; the earlier one did.
    assert_eq!(read(&i, 0, 8, 512, 1), vec![0u8; 512]);
    assert_eq!(read(&i, 0, 0, 512, 1), a);
}

/// The same without timing: a WRITE held before its Data-Out keeps the ORDERED command queued
/// for as long as the test wants.
#[test]
fn abort_task_of_a_command_queued_behind_one_waiting_for_data() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    let i = r.login();
    let s = i.session().clone();
    let cdb = cdb10(WRITE10, 0, 0, 1);
    let hdr = scst::CmdHeader {
        lun: Lun(0).to_sam(),
        cdb: &cdb,
        attr: TaskAttr::Simple,
        tag: 0x1234,
        expected_len: 512,
        expected_dir: scst::DataDir::Out,
    };
    let scst::Step::NeedData(mut w) = s.submit(s.alloc_cmd(&hdr).expect("alloc")) else {
        panic!("the WRITE wants its data")
    };
    let tag = i.peek_next_tag();
    i.start_attr(0, &cdb10(WRITE10, 0, 8, 1), &pattern(16, 512), 0, 2, TaskAttr::Ordered).expect("queued");
    assert_eq!(i.task_mgmt(TmFunction::QUERY_TASK, 0, tag), TmStatus::SUCCEEDED);
    // Submitted directly (without waiting), the abort marks the command and keeps its response
    // until the command is gone.
    let req = scst::TmRequest { function: TmFunction::ABORT_TASK, lun: Lun(0).to_sam(), ref_tag: tag, tag: 0x777 };
    assert!(matches!(s.submit_tm(req), scst::TmOutcome::Pending));
    let data = pattern(17, 512);
    w.buf_mut().expect("buffer").write_at(0, &data);
    let scst::Step::Done(w) = s.data_received(w) else { panic!("RAM completes inline") };
    assert_eq!(w.status(), ScsiStatus::GOOD);
    drop(w);
    let aborted = i.next_completion();
    assert_eq!((aborted.fabric_cookie, aborted.status()), (2, ScsiStatus::TASK_ABORTED));
    assert!(aborted.is_aborted());
    drop(aborted);
    assert_eq!(i.task_mgmt(TmFunction::QUERY_TASK, 0, tag), TmStatus::COMPLETE);
    assert_eq!(read(&i, 0, 0, 512, 1), pattern(17, 512));
    assert_eq!(read(&i, 0, 8, 512, 1), vec![0u8; 512], "the aborted write never ran");
}

#[test]
fn abort_task_set_aborts_this_nexus_commands_only() {
    let (t, _d, i) = slow_rig(500);
    let other = LocalInitiator::connect(&t, "iqn.2026-01.rs.scst:other");
    assert_good(&other.clear_unit_attentions(0));
    i.start(0, &cdb10(WRITE10, 0, 0, 1), &pattern(10, 512), 0, 1).expect("running write");
    i.start_attr(0, &cdb10(WRITE10, 0, 8, 1), &pattern(11, 512), 0, 2, TaskAttr::Ordered).expect("queued");
    i.start(0, &cdb10(WRITE10, 0, 16, 1), &pattern(12, 512), 0, 3).expect("queued behind it");
    other.start(0, &cdb10(WRITE10, 0, 24, 1), &pattern(13, 512), 0, 4).expect("other nexus, queued");
    std::thread::scope(|s| {
        let tm = s.spawn(|| i.task_mgmt(TmFunction::ABORT_TASK_SET, 0, 0));
        let mut got = completions(&i, 3);
        got.sort_by_key(|c| c.0);
        assert_eq!(got[1].1, ScsiStatus::TASK_ABORTED);
        assert_eq!(got[2].1, ScsiStatus::TASK_ABORTED);
        assert_eq!(tm.join().expect("tm"), TmStatus::COMPLETE);
    });
    let c = other.next_completion();
    assert_eq!((c.fabric_cookie, c.status()), (4, ScsiStatus::GOOD));
    assert!(!c.is_aborted());
    drop(c);
    assert_eq!(read(&i, 0, 8, 512, 1), vec![0u8; 512]);
    assert_eq!(read(&i, 0, 16, 512, 1), vec![0u8; 512]);
    assert_eq!(read(&i, 0, 24, 512, 1), pattern(13, 512));
    // ABORT TASK SET raises no unit attention.
    assert_good(&other.execute(0, &TUR, &[], &mut []));
}

#[test]
fn clear_task_set_aborts_every_nexus_commands() {
    let (t, _d, i) = slow_rig(500);
    let other = LocalInitiator::connect(&t, "iqn.2026-01.rs.scst:clearer");
    assert_good(&other.clear_unit_attentions(0));
    i.start(0, &cdb10(WRITE10, 0, 0, 1), &pattern(14, 512), 0, 1).expect("running write");
    i.start_attr(0, &cdb10(WRITE10, 0, 8, 1), &pattern(15, 512), 0, 2, TaskAttr::Ordered).expect("queued");
    std::thread::scope(|s| {
        let tm = s.spawn(|| other.task_mgmt(TmFunction::CLEAR_TASK_SET, 0, 0));
        let mut got = completions(&i, 2);
        got.sort_by_key(|c| c.0);
        assert_eq!(got[1].1, ScsiStatus::TASK_ABORTED);
        assert_eq!(tm.join().expect("tm"), TmStatus::COMPLETE);
    });
    assert_eq!(read_after_ua(&i, 0x2f, 0x00, 8), vec![0u8; 512]);
    assert_good(&other.execute(0, &TUR, &[], &mut []));
}

/// Consumes the expected unit attention, then reads one block.
fn read_after_ua(i: &LocalInitiator, asc: u8, ascq: u8, lba: u64) -> Vec<u8> {
    assert_ua(&i.execute(0, &TUR, &[], &mut []), asc, ascq);
    read(i, 0, lba, 512, 1)
}

#[test]
fn query_task_and_query_task_set() {
    let (_t, _d, i) = slow_rig(500);
    assert_eq!(i.task_mgmt(TmFunction::QUERY_TASK_SET, 0, 0), TmStatus::COMPLETE);
    let tag = i.peek_next_tag();
    i.start(0, &cdb10(WRITE10, 0, 0, 1), &pattern(8, 512), 0, 1).expect("write");
    assert_eq!(i.task_mgmt(TmFunction::QUERY_TASK, 0, tag), TmStatus::SUCCEEDED);
    assert_eq!(i.task_mgmt(TmFunction::QUERY_TASK, 0, tag + 1000), TmStatus::COMPLETE);
    assert_eq!(i.task_mgmt(TmFunction::QUERY_TASK_SET, 0, 0), TmStatus::SUCCEEDED);
    let c = i.next_completion();
    assert_eq!(c.status(), ScsiStatus::GOOD);
    drop(c);
    assert_eq!(i.task_mgmt(TmFunction::QUERY_TASK, 0, tag), TmStatus::COMPLETE);
    assert_eq!(i.task_mgmt(TmFunction::QUERY_TASK_SET, 0, 0), TmStatus::COMPLETE);
    // QUERY ASYNCHRONOUS EVENT reports a pending unit attention without consuming it.
    let j = LocalInitiator::connect(&_t, "iqn.2026-01.rs.scst:qae");
    assert_eq!(j.task_mgmt(TmFunction::QUERY_ASYNC_EVENT, 0, 0), TmStatus::SUCCEEDED);
    assert_ua(&j.execute(0, &TUR, &[], &mut []), 0x29, 0x00);
    assert_eq!(j.task_mgmt(TmFunction::QUERY_ASYNC_EVENT, 0, 0), TmStatus::COMPLETE);
}

#[test]
fn lun_reset_waits_for_running_commands() {
    let (_t, _d, i) = slow_rig(500);
    i.start(0, &cdb10(WRITE10, 0, 0, 1), &pattern(9, 512), 0, 1).expect("write");
    let released = AtomicBool::new(false);
    std::thread::scope(|s| {
        let tm = s.spawn(|| {
            let st = i.task_mgmt(TmFunction::LUN_RESET, 0, 0);
            (st, released.load(SeqCst))
        });
        let c = i.next_completion();
        assert_eq!(c.fabric_cookie, 1);
        assert!(c.is_aborted(), "the reset marked the running command");
        released.store(true, SeqCst);
        drop(c);
        let (st, after) = tm.join().expect("tm thread");
        assert_eq!(st, TmStatus::COMPLETE);
        assert!(after, "the reset completes only after the command is gone");
    });
    assert_ua(&i.execute(0, &TUR, &[], &mut []), 0x29, 0x03);
    assert_good(&i.execute(0, &TUR, &[], &mut []));
}

#[test]
fn lun_reset_clears_prevention_and_tells_every_nexus() {
    let mut c = config();
    c.removable = true;
    let r = Rig::with_config(Backend::Ram, 2048, 512, c);
    let a = r.login();
    let b = r.login();
    assert_good(&a.execute(0, &prevent(1), &[], &mut []));
    assert_check(&b.execute(0, &start_stop(false, 0, true, false), &[], &mut []), 0x05, 0x53, 0x02);
    assert_eq!(b.task_mgmt(TmFunction::LUN_RESET, 0, 0), TmStatus::COMPLETE);
    for i in [&a, &b] {
        assert_ua(&i.execute(0, &TUR, &[], &mut []), 0x29, 0x03);
        // The medium stays loaded through the reset.
        assert_good(&i.execute(0, &TUR, &[], &mut []));
    }
    assert_good(&a.execute(0, &start_stop(false, 0, true, false), &[], &mut []));
    assert_good(&a.execute(0, &start_stop(false, 0, true, true), &[], &mut []));
}

#[test]
fn target_reset_and_i_t_nexus_reset() {
    let mut c = config();
    c.removable = true;
    let r = Rig::with_config(Backend::Ram, 2048, 512, c);
    let a = r.login();
    let b = r.login();
    // I_T NEXUS RESET: the nexus's prevention goes, only that nexus is told.
    assert_good(&a.execute(0, &prevent(1), &[], &mut []));
    assert_eq!(a.task_mgmt(TmFunction::I_T_NEXUS_RESET, 0, 0), TmStatus::COMPLETE);
    assert_ua(&a.execute(0, &TUR, &[], &mut []), 0x29, 0x07);
    assert_good(&b.execute(0, &TUR, &[], &mut []));
    assert_good(&b.execute(0, &start_stop(false, 0, true, false), &[], &mut []));
    assert_good(&b.execute(0, &start_stop(false, 0, true, true), &[], &mut []));
    assert_ua(&a.execute(0, &TUR, &[], &mut []), 0x28, 0x00);
    // TARGET WARM RESET: every prevention goes, every nexus is told.
    assert_good(&b.execute(0, &prevent(1), &[], &mut []));
    assert_eq!(a.task_mgmt(TmFunction::TARGET_WARM_RESET, 0, 0), TmStatus::COMPLETE);
    for i in [&a, &b] {
        assert_ua(&i.execute(0, &TUR, &[], &mut []), 0x29, 0x00);
        assert_good(&i.execute(0, &TUR, &[], &mut []));
    }
    assert_good(&a.execute(0, &start_stop(false, 0, true, false), &[], &mut []));
}

// ------------------------------------------------------------------------------------------------
// Unit attentions
// ------------------------------------------------------------------------------------------------

#[test]
fn new_session_gets_power_on_reset_on_its_first_command() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    r.target.add_lun(Lun(1), device(RamStore::new(1 << 20, 512).expect("ram"), config()), false).expect("lun 1");
    let old = r.login();
    old.clear_unit_attentions(1);
    let i = r.connect();
    // INQUIRY and REPORT LUNS neither report nor clear it.
    assert_good(&i.execute(0, &inquiry_cdb(false, 0, 96), &[], &mut [0; 96]));
    assert_good(&i.execute(0, &report_luns(0, 64), &[], &mut [0; 64]));
    // Any other command does, once per LUN.
    assert_ua(&i.execute(0, &cdb10(READ10, 0, 0, 1), &[], &mut [0; 512]), 0x29, 0x00);
    assert_good(&i.execute(0, &cdb10(READ10, 0, 0, 1), &[], &mut [0; 512]));
    assert_ua(&i.execute(1, &mode_sense6(false, 0, 0x3f, 0, 255), &[], &mut [0; 255]), 0x29, 0x00);
    assert_good(&i.execute(1, &mode_sense6(false, 0, 0x3f, 0, 255), &[], &mut [0; 255]));
    // A write carrying data is refused without writing.
    let j = r.connect();
    assert_ua(&j.execute(0, &cdb10(WRITE10, 0, 0, 1), &[0xff; 512], &mut []), 0x29, 0x00);
    assert_eq!(read(&j, 0, 0, 512, 1), vec![0u8; 512]);
    // Existing sessions are not affected.
    assert_good(&old.execute(0, &TUR, &[], &mut []));
    assert_good(&old.execute(1, &TUR, &[], &mut []));
}

#[test]
fn lun_added_and_removed_report_luns_data_changed() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    let i = r.login();
    r.target.add_lun(Lun(1), device(RamStore::new(1 << 20, 512).expect("ram"), config()), false).expect("lun 1");
    // Existing LUNs report the change once.
    assert_ua(&i.execute(0, &TUR, &[], &mut []), 0x3f, 0x0e);
    assert_good(&i.execute(0, &TUR, &[], &mut []));
    // The new LUN starts like a LUN on a new nexus, and was told about the change too...
    assert_ua(&i.execute(1, &TUR, &[], &mut []), 0x29, 0x00);
    assert_ua(&i.execute(1, &TUR, &[], &mut []), 0x3f, 0x0e);
    assert_good(&i.execute(1, &TUR, &[], &mut []));
    // ...unless the initiator fetched the new inventory: REPORT LUNS shows it at once and clears
    // the condition on every LUN of the nexus.
    r.target.add_lun(Lun(2), device(RamStore::new(1 << 20, 512).expect("ram"), config()), false).expect("lun 2");
    let d = data_in_ok(&i, 0, &report_luns(0, 64), 64);
    assert_eq!(be32(&d, 0), 24);
    assert_good(&i.execute(0, &TUR, &[], &mut []));
    assert_good(&i.execute(1, &TUR, &[], &mut []));
    assert_ua(&i.execute(2, &TUR, &[], &mut []), 0x29, 0x00);
    assert_good(&i.execute(2, &TUR, &[], &mut []));
    // Removal.
    r.target.remove_lun(Lun(1)).expect("remove");
    r.target.remove_lun(Lun(2)).expect("remove");
    assert_check(&i.execute(1, &TUR, &[], &mut []), 0x05, 0x25, 0x00);
    assert_ua(&i.execute(0, &TUR, &[], &mut []), 0x3f, 0x0e);
    assert_good(&i.execute(0, &TUR, &[], &mut []));
    assert_eq!(data_in_ok(&i, 0, &report_luns(0, 64), 64), lun0_only());
}

fn lun0_only() -> Vec<u8> {
    vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// SPC-4 §6.33 / SAM-5: processing REPORT LUNS clears a pending REPORTED LUNS DATA HAS CHANGED
/// unit attention of that I_T nexus (on every LUN) — the initiator has the new inventory.
#[test]
fn report_luns_clears_reported_luns_data_changed() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    let i = r.login();
    r.target.add_lun(Lun(1), device(RamStore::new(1 << 20, 512).expect("ram"), config()), false).expect("lun 1");
    assert_good(&i.execute(0, &report_luns(0, 64), &[], &mut [0; 64]));
    assert_good(&i.execute(0, &TUR, &[], &mut []));
}

#[test]
fn unit_attentions_are_reported_in_order() {
    let r = Rig::new(Backend::File, 2048, 512);
    let a = r.login();
    let b = r.login();
    assert_good(&select_control(&a, 0, 0, 0, 0x40));
    r.file.as_ref().expect("file").as_file().set_len(4096 * 512).expect("grow");
    assert!(r.dev.rescan());
    // The changing nexus sees only the capacity change; the other both, oldest first.
    assert_ua(&a.execute(0, &TUR, &[], &mut []), 0x2a, 0x09);
    assert_good(&a.execute(0, &TUR, &[], &mut []));
    assert_ua(&b.execute(0, &TUR, &[], &mut []), 0x2a, 0x01);
    let d = data_in_ok(&b, 0, &[REQUEST_SENSE, 0, 0, 0, 18, 0], 18);
    assert_eq!((d[2], d[12], d[13]), (6, 0x2a, 0x09), "REQUEST SENSE returns the next one");
    assert_good(&b.execute(0, &TUR, &[], &mut []));
    // A reset supersedes what is pending.
    assert_good(&select_control(&a, 0, 0, 0, 0));
    assert_eq!(a.task_mgmt(TmFunction::LUN_RESET, 0, 0), TmStatus::COMPLETE);
    assert_ua(&b.execute(0, &TUR, &[], &mut []), 0x29, 0x03);
    assert_good(&b.execute(0, &TUR, &[], &mut []));
}

/// SAM-5 §5.6: with TAS=1 in the Control mode page, commands of *other* I_T nexuses that a LUN
/// RESET (or CLEAR TASK SET) aborts are answered with TASK ABORTED; the issuing nexus's own
/// commands get no response. With TAS=0 nobody's aborted commands are answered.
#[test]
fn task_aborted_status_for_other_nexuses_when_tas_is_set() {
    for tas in [true, false] {
        let (t, _d, a) = slow_rig(300);
        let b = LocalInitiator::connect(&t, &format!("iqn.2026-01.rs.scst:b-{}", unique()));
        assert_good(&b.clear_unit_attentions(0));
        assert_good(&select_control(&a, 0, 0, 0, if tas { 0x40 } else { 0 }));
        // The mode change is a unit attention for b.
        b.clear_unit_attentions(0);
        a.start(0, &cdb10(WRITE10, 0, 0, 1), &pattern(3, 512), 0, 1).expect("a's write");
        b.start(0, &cdb10(WRITE10, 0, 8, 1), &pattern(4, 512), 0, 2).expect("b's write");
        std::thread::sleep(Duration::from_millis(50));
        std::thread::scope(|s| {
            let tm = s.spawn(|| b.task_mgmt(TmFunction::LUN_RESET, 0, 0));
            let ca = a.next_completion();
            let cb = b.next_completion();
            assert!(ca.is_aborted() && cb.is_aborted());
            assert_eq!(ca.answers_task_aborted(), tas, "the other nexus's command (TAS={tas})");
            assert!(!cb.answers_task_aborted(), "the issuer's own command gets no response");
            drop((ca, cb));
            assert_eq!(tm.join().expect("tm"), TmStatus::COMPLETE);
        });
    }
}
