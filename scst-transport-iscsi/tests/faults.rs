//! Faults over iSCSI: connections that die in the middle of a write burst or while Data-In
//! flows, and a logical unit whose store fails or stalls (the fault-injecting store of
//! `scst-local/tests/common/fault.rs`, mapped as LUN 2 and running on device workers).
//!
//! Every test runs inside a [`support::Suite`] (a well-behaved session on LUNs 0 and 1 must see
//! no error; threads, descriptors, sessions, SGV buffers and RSS return to their baseline).

mod common;
#[path = "../../scst-local/tests/common/fault.rs"]
mod fault;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use fault::{EIO, ENOSPC, FaultGuard, FaultStore, Io};
use scst::{Device, DeviceConfig, Disk, Lun};
use scst_backends::RamStore;
use scst_transport_iscsi::proto::bhs::Opcode;
use support::*;

/// The fault-injecting LUN.
const FAULTY: u8 = 2;

/// A suite whose target also maps LUN 2: a fault-injecting store over RAM (I/O on workers).
fn faulty_suite() -> (Suite, FaultGuard) {
    let slot: Arc<Mutex<Option<FaultGuard>>> = Arc::default();
    let s = {
        let slot = slot.clone();
        Suite::with_setup(hostile_config(), move |t| {
            let (store, f) = FaultStore::new(RamStore::new(BLOCKS * BS as u64, BS as u32).unwrap(), true);
            let name = format!("faulty-{}-{}", std::process::id(), t.addr.port());
            let dev = Device::new(DeviceConfig::new(name), Disk::new(store)).unwrap();
            t.target.add_lun(Lun(u16::from(FAULTY)), dev, false).unwrap();
            *slot.lock().unwrap() = Some(f);
        })
    };
    let f = slot.lock().unwrap().take().unwrap();
    (s, f)
}

/// INFORMATION of fixed-format sense data with VALID set.
fn information(sense: &[u8]) -> Option<u32> {
    (sense.first() == Some(&0xf0)).then(|| u32::from_be_bytes([sense[3], sense[4], sense[5], sense[6]]))
}

// ----- connections that die ----------------------------------------------------------------

#[test]
fn drop_mid_write_burst_leaves_completed_writes_intact() {
    let s = Suite::start();
    for l in [RAM, FILE] {
        let o = LoginOpts::normal()
            .key("InitialR2T", "Yes")
            .key("ImmediateData", "No")
            .key("MaxBurstLength", 65536)
            .key("FirstBurstLength", 65536);
        let mut c = s.t.login_with(o.clone());
        let a = pattern(256 << 10, 0x10 + l);
        let b = pattern(256 << 10, 0x20 + l);
        let d = pattern(64 << 10, 0x30 + l);
        c.write(l, 1000, &a).assert_good();
        c.write(l, 3000, &d).assert_good();
        // B over A: the first burst complete, the second cut in the middle.
        let itt = c.send_cmd(&CmdPdu { write: true, edtl: b.len() as u32, ..CmdPdu::new(l, write10(1000, 512)) });
        let r2t = c.recv();
        assert_eq!((r2t.op(), r2t.bhs().buffer_offset()), (Opcode::R2T, 0));
        c.send_sequence(l, itt, r2t.bhs().ttt(), 0, &b[..65536]);
        let r2t = c.recv();
        assert_eq!((r2t.op(), r2t.bhs().buffer_offset()), (Opcode::R2T, 65536));
        c.send_data_out(l, itt, r2t.bhs().ttt(), 0, 65536, &b[65536..65536 + 8192], false);
        // And another write whose R2T is never answered.
        let other = c.send_cmd(&CmdPdu { write: true, edtl: 4096, ..CmdPdu::new(l, write10(5000, 8)) });
        let r2t = c.recv();
        assert_eq!((r2t.op(), r2t.bhs().itt()), (Opcode::R2T, other));
        drop(c);
        let mut c = s.t.login_with(o);
        assert_eq!(c.read(l, 1000, 512).data, a, "LUN {l}: the interrupted write changed nothing");
        assert_eq!(c.read(l, 3000, 128).data, d, "LUN {l}: a completed write is intact");
        assert_eq!(c.read(l, 5000, 8).data, vec![0u8; 4096], "LUN {l}");
    }
    s.finish();
}

#[test]
fn drop_mid_read_while_data_in_flows() {
    let mut s = Suite::start();
    // The RAM LU now holds 4 MiB more data, and the allocator keeps the client's freed 4 MiB
    // buffers in its heap (glibc raises its mmap threshold after the first ones). Responses
    // queued for a peer that stopped reading hold their 4 MiB buffers until the connection
    // goes, and the buffer pool keeps them cached afterwards (its bytes in use are checked to
    // return to 0).
    s.rss_slack_kib = 32 << 10;
    let mut c = s.t.login();
    let data = pattern(4 << 20, 0x44);
    for l in [RAM, FILE] {
        for (k, chunk) in data.chunks(256 << 10).enumerate() {
            c.write(l, (k * 512) as u32, chunk).assert_good();
        }
    }
    for round in 0..3 {
        let mut x = s.t.login_with(LoginOpts::normal().key("MaxRecvDataSegmentLength", 65536));
        // 4 MiB from each LU, several commands in flight; only a few Data-In PDUs are read.
        for l in [RAM, FILE, FILE, RAM] {
            x.send_cmd(&CmdPdu { read: true, edtl: 4 << 20, ..CmdPdu::new(l, read10(0, 8192)) });
        }
        for _ in 0..(round * 5 + 2) {
            let p = x.recv();
            assert_eq!(p.op(), Opcode::DATA_IN);
        }
        // Closed with unread data: a reset; the target's sends fail.
        drop(x);
    }
    for l in [RAM, FILE] {
        let r = c.read(l, 0, 8192);
        r.assert_good();
        assert!(r.data == data, "LUN {l}: data intact");
    }
    drop(c);
    s.finish();
}

// ----- a logical unit whose store fails -----------------------------------------------------

#[test]
fn medium_errors_reach_the_initiator_without_data() {
    let (s, f) = faulty_suite();
    let mut c = s.t.login_with(LoginOpts::normal().key("InitialR2T", "Yes").key("ImmediateData", "No"));
    c.clear_ua(FAULTY);
    let old = pattern(16 * BS, 0x51);
    c.write(FAULTY, 100, &old).assert_good();
    // Read errors: a CHECK CONDITION and no Data-In at all, also when the store filled part of
    // the buffer (the rest is garbage that must not leak).
    f.fail_once(Io::Read, EIO);
    let r = c.read(FAULTY, 100, 16);
    r.assert_check(0x03, 0x11, 0x00);
    assert!(r.data_ins().is_empty(), "{:?}", r.pdus);
    assert_eq!(information(&r.sense), Some(100));
    f.short(Io::Read, 3 * BS + 100, EIO);
    let r = c.read(FAULTY, 100, 16);
    r.assert_check(0x03, 0x11, 0x00);
    assert!(r.data_ins().is_empty(), "{:?}", r.pdus);
    f.clear();
    // Write errors come after the data phase (R2T, Data-Out), then the status.
    f.fail_once(Io::Write, EIO);
    let r = c.write(FAULTY, 100, &pattern(16 * BS, 0x52));
    assert_eq!(r.r2ts().len(), 1);
    r.assert_check(0x03, 0x0c, 0x00);
    assert_eq!(information(&r.sense), Some(100));
    f.fail_once(Io::Write, ENOSPC);
    c.write(FAULTY, 100, &pattern(16 * BS, 0x53)).assert_check(0x07, 0x27, 0x07);
    assert_eq!(c.read(FAULTY, 100, 16).data, old, "the failed writes wrote nothing");
    assert_eq!(f.injected(), 4);
    c.assert_usable();
    drop(c);
    s.finish();
}

#[test]
fn abort_task_while_its_io_is_held_in_the_store() {
    let (s, f) = faulty_suite();
    let mut c = s.t.login();
    c.clear_ua(FAULTY);
    let w = pattern(8 * BS, 0x61);
    f.close_gate();
    let n = c.cmd_sn;
    let itt = c.send_cmd(&CmdPdu { write: true, edtl: w.len() as u32, data: &w, ..CmdPdu::new(FAULTY, write10(0, 8)) });
    f.wait_inside(1, Duration::from_secs(3));
    let tmf_itt = c.send_tmf(1, FAULTY, itt, n);
    // No TMF response while the aborted command's I/O is still in the store.
    c.expect_silence(Duration::from_millis(300));
    // Other LUs keep working meanwhile.
    c.assert_usable();
    f.open_gate();
    let p = c.recv();
    assert_eq!((p.op(), p.bhs().itt(), p.bhs().response()), (Opcode::TASK_MGMT_RESPONSE, tmf_itt, 0), "{p:?}");
    // The aborted command gets no response.
    c.expect_silence(Duration::from_millis(300));
    c.tur(FAULTY).assert_good();
    drop(c);
    s.finish();
}

#[test]
fn connection_dropped_while_its_io_is_held_in_the_store() {
    let (s, f) = faulty_suite();
    for round in 0..2u32 {
        let mut c = s.t.login();
        c.clear_ua(FAULTY);
        f.close_gate();
        // Two commands in the store (two workers), two queued behind them, one write waiting
        // for its data.
        for k in 0..4u32 {
            if k % 2 == 0 {
                c.send_cmd(&CmdPdu { read: true, edtl: 4096, ..CmdPdu::new(FAULTY, read10(k * 8, 8)) });
            } else {
                let w = pattern(4096, k as u8);
                c.send_cmd(&CmdPdu { write: true, edtl: 4096, data: &w, ..CmdPdu::new(FAULTY, write10(k * 8, 8)) });
            }
        }
        let cmd = CmdPdu { write: true, edtl: 65536, final_bit: false, ..CmdPdu::new(FAULTY, write10(100, 128)) };
        c.send_cmd(&cmd);
        f.wait_inside(2, Duration::from_secs(3));
        drop(c);
        std::thread::sleep(Duration::from_millis(100 + 200 * u64::from(round)));
        f.open_gate();
    }
    let mut c = s.t.login();
    c.clear_ua(FAULTY);
    c.tur(FAULTY).assert_good();
    drop(c);
    s.finish();
}
