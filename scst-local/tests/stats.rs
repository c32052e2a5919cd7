//! Device and session statistics as a user reads them after known commands: command and byte
//! counts, latency histograms per op class, errors by sense key and by status, commands in
//! flight.

#[macro_use]
mod common;
#[path = "common/fault.rs"]
mod fault;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use fault::FaultStore;
use scst::stats::OpClass;
use scst::{Lun, ScsiStatus};
use scst_backends::RamStore;

/// The counters a test compares before and after its commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    commands: u64,
    read_bytes: u64,
    write_bytes: u64,
    errors: u64,
    lat: [u64; 3],
    keys: [u64; 16],
    conflicts: u64,
}

fn device_seen(r: &Rig) -> Seen {
    let s = r.dev.stats();
    Seen {
        commands: s.commands.load(Relaxed),
        read_bytes: s.read_bytes.load(Relaxed),
        write_bytes: s.write_bytes.load(Relaxed),
        errors: s.errors.load(Relaxed),
        lat: OpClass::ALL.map(|c| s.io.latency(c).snapshot().count()),
        keys: s.io.error_kinds.sense_keys.each_ref().map(|k| k.load(Relaxed)),
        conflicts: s.io.error_kinds.reservation_conflict.load(Relaxed),
    }
}

fn session_seen(i: &scst_local::LocalInitiator) -> Seen {
    let s = i.session().stats();
    Seen {
        commands: s.io.completed(),
        read_bytes: s.read_bytes.load(Relaxed),
        write_bytes: s.write_bytes.load(Relaxed),
        errors: s.errors.load(Relaxed),
        lat: OpClass::ALL.map(|c| s.io.latency(c).snapshot().count()),
        keys: s.io.error_kinds.sense_keys.each_ref().map(|k| k.load(Relaxed)),
        conflicts: s.io.error_kinds.reservation_conflict.load(Relaxed),
    }
}

fn delta(a: Seen, b: Seen) -> Seen {
    Seen {
        commands: b.commands - a.commands,
        read_bytes: b.read_bytes - a.read_bytes,
        write_bytes: b.write_bytes - a.write_bytes,
        errors: b.errors - a.errors,
        lat: [0, 1, 2].map(|k| b.lat[k] - a.lat[k]),
        keys: std::array::from_fn(|k| b.keys[k] - a.keys[k]),
        conflicts: b.conflicts - a.conflicts,
    }
}

#[test]
fn reads_writes_and_other_commands_are_counted_per_device_and_session() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    let i = r.login();
    let (d0, s0) = (device_seen(&r), session_seen(&i));
    let mut buf = vec![0u8; 8 * 512];
    for k in 0..3u32 {
        assert_good(&i.execute(0, &cdb10(READ10, 0, k * 8, 8), &[], &mut buf));
    }
    let data = vec![0x5au8; 4 * 512];
    for k in 0..2u32 {
        assert_good(&i.execute(0, &cdb10(WRITE10, 0, 100 + k * 4, 4), &data, &mut []));
    }
    assert_good(&i.execute(0, &TUR, &[], &mut []));
    let want = Seen {
        commands: 6,
        read_bytes: 3 * 8 * 512,
        write_bytes: 2 * 4 * 512,
        errors: 0,
        lat: [3, 2, 1],
        keys: [0; 16],
        conflicts: 0,
    };
    assert_eq!(delta(d0, device_seen(&r)), want, "device");
    assert_eq!(delta(s0, session_seen(&i)), want, "session");
    assert_eq!(r.dev.stats().in_flight(), 0);
    assert_eq!(i.session().stats().in_flight(), 0);
    // The latencies are real: their sum is positive and the p99 of three reads is finite.
    let read = r.dev.stats().io.latency(OpClass::Read).snapshot();
    assert!(read.sum_ns > 0);
    assert!(read.quantile_us(0.99).is_some_and(|us| us < 1 << 22), "{read:?}");
}

#[test]
fn check_condition_is_counted_under_its_sense_key() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    let i = r.login();
    let (d0, s0) = (device_seen(&r), session_seen(&i));
    // LBA beyond the end: ILLEGAL REQUEST / LBA OUT OF RANGE.
    let mut buf = vec![0u8; 8 * 512];
    assert_check(&i.execute(0, &cdb10(READ10, 0, 4096, 8), &[], &mut buf), 0x05, 0x21, 0x00);
    // A reserved CDB bit: ILLEGAL REQUEST / INVALID FIELD IN CDB, refused before executing.
    assert_invalid_cdb(&i.execute(0, &[0, 0x01, 0, 0, 0, 0], &[], &mut []), 1, Some(0));
    for (who, d) in [("device", delta(d0, device_seen(&r))), ("session", delta(s0, session_seen(&i)))] {
        assert_eq!(d.commands, 2, "{who}");
        assert_eq!(d.errors, 2, "{who}");
        assert_eq!(d.keys[5], 2, "{who}: ILLEGAL REQUEST is sense key 5");
        assert_eq!(d.keys.iter().sum::<u64>(), 2, "{who}: {:?}", d.keys);
        assert_eq!(d.read_bytes, 0, "{who}: a failed read moves no data");
        assert_eq!(d.lat, [1, 0, 1], "{who}");
    }
    assert_eq!(r.dev.stats().errors_total(), r.dev.stats().io.error_kinds.total());
}

#[test]
fn reservation_conflict_is_counted_as_a_status() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    let a = r.login();
    let b = r.login();
    assert_good(&a.execute(0, &[0x16, 0, 0, 0, 0, 0], &[], &mut [])); // RESERVE(6)
    let (d0, s0) = (device_seen(&r), session_seen(&b));
    let mut buf = vec![0u8; 512];
    let o = b.execute(0, &cdb10(READ10, 0, 0, 1), &[], &mut buf);
    assert_eq!(o.status, ScsiStatus::RESERVATION_CONFLICT);
    for (who, d) in [("device", delta(d0, device_seen(&r))), ("session", delta(s0, session_seen(&b)))] {
        assert_eq!(d.conflicts, 1, "{who}");
        assert_eq!(d.errors, 0, "{who}: `errors` counts CHECK CONDITION only");
        assert_eq!(d.keys, [0; 16], "{who}");
        assert_eq!(d.commands, 1, "{who}");
    }
    assert_eq!(a.session().stats().io.error_kinds.reservation_conflict.load(Relaxed), 0);
    assert_eq!(r.dev.stats().errors_total(), 1 + r.dev.stats().io.error_kinds.sense_keys[6].load(Relaxed));
}

#[test]
fn commands_in_flight_until_they_complete() {
    let (store, f) = FaultStore::new(RamStore::new(1 << 20, 512).expect("ram"), true);
    let t = target();
    let dev = device(store, config());
    t.add_lun(Lun(0), dev.clone(), false).expect("map LUN 0");
    let i = scst_local::LocalInitiator::connect(&t, "iqn.2026-01.rs.scst:stats-in-flight");
    i.clear_unit_attentions(0);
    f.close_gate();
    for k in 0..3u64 {
        i.start(0, &cdb10(READ10, 0, k as u32 * 8, 8), &[], 8 * 512, k).expect("queue");
    }
    f.wait_inside(1, Duration::from_secs(5));
    assert_eq!(dev.stats().in_flight(), 3);
    assert_eq!(i.session().stats().in_flight(), 3);
    f.open_gate();
    for _ in 0..3 {
        let c = i.next_completion();
        assert_eq!(c.status(), ScsiStatus::GOOD);
    }
    assert_eq!(dev.stats().in_flight(), 0);
    assert_eq!(i.session().stats().in_flight(), 0);
    assert_eq!(dev.stats().io.latency(OpClass::Read).snapshot().count(), 3);
}

#[test]
fn a_command_dropped_before_completing_is_abandoned_not_in_flight() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    let i = r.login();
    let sess = i.session().clone();
    let (completed, dev_completed) = (sess.stats().io.completed(), r.dev.stats().io.completed());
    // A WRITE whose Data-Out never arrives (its connection died): the fabric drops it.
    let cdb = cdb10(WRITE10, 0, 0, 1);
    let hdr = scst::CmdHeader {
        lun: Lun(0).to_sam(),
        cdb: &cdb,
        attr: scst::TaskAttr::Simple,
        tag: 0x5157,
        expected_len: 512,
        expected_dir: scst::DataDir::Out,
    };
    let cmd = sess.alloc_cmd(&hdr).expect("a free command");
    let scst::Step::NeedData(cmd) = sess.submit(cmd) else { panic!("a WRITE waits for its data") };
    assert_eq!(sess.stats().in_flight(), 1);
    assert_eq!(r.dev.stats().in_flight(), 1);
    drop(cmd);
    assert_eq!(sess.stats().in_flight(), 0);
    assert_eq!(r.dev.stats().in_flight(), 0);
    assert_eq!(sess.stats().io.abandoned.load(Relaxed), 1);
    assert_eq!(r.dev.stats().io.abandoned.load(Relaxed), 1);
    assert_eq!(sess.stats().io.completed(), completed, "not a completion");
    assert_eq!(r.dev.stats().io.completed(), dev_completed);
}
