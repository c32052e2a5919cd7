//! Commands that complete on device worker threads (a store that may block, held at a gate):
//! the port's waker, ABTS and LOGO while a command is inside the store, and a LUN RESET whose
//! response waits for the aborted command.

mod common;

#[path = "../../scst-local/tests/common/fault.rs"]
mod fault;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::*;
use fault::{FaultGuard, FaultStore};
use scst::{Device, DeviceConfig, Disk};
use scst_backends::RamStore;
use scst_transport_fc::els;
use scst_transport_fc::fcp::{FcpRspView, RspCode, rsp_flags, tm_flags};
use scst_transport_fc::frame::RCtl;

fn faulty() -> (Rig, FaultGuard, Arc<AtomicUsize>) {
    let (store, f) = FaultStore::new(RamStore::new(4 << 20, BS as u32).unwrap(), true);
    let dev = Device::new(DeviceConfig::new("faulty"), Disk::new(store)).unwrap();
    let mut r = rig_on(dev.clone(), |_| {});
    // The same device at LUN 1 too: an abort must name the command's LUN, not LUN 0.
    r.target.add_lun(scst::Lun(1), dev, false).unwrap();
    let wakes = Arc::new(AtomicUsize::new(0));
    let w = wakes.clone();
    r.port.set_waker(move || {
        w.fetch_add(1, SeqCst);
    });
    r.login(2048);
    (r, f, wakes)
}

/// Collects frames until `n` arrived (or 3 s passed).
fn wait_frames(r: &mut Rig, n: usize) -> Vec<Rx> {
    let end = Instant::now() + Duration::from_secs(3);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < end {
        got.extend(r.out());
        std::thread::sleep(Duration::from_millis(2));
    }
    got
}

#[test]
fn read_completes_on_a_worker_and_wakes_the_port() {
    let (mut r, f, wakes) = faulty();
    let w = pattern(4 * BS, 9);
    r.write(10, 0, &w, 2048);
    f.close_gate();
    let before = wakes.load(SeqCst);
    assert!(r.cmd(11, 0, &read10(0, 4), 2048, true, false).is_empty(), "held in the store");
    f.wait_inside(1, Duration::from_secs(3));
    f.open_gate();
    let out = wait_frames(&mut r, 2);
    assert!(wakes.load(SeqCst) > before, "the waker fired");
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].payload(), &w[..]);
    assert_eq!(FcpRspView::parse(out[1].payload()).unwrap().status(), 0);
    assert_eq!(r.port.open_exchanges(), 0);
}

#[test]
fn abts_of_a_command_inside_the_store_answers_after_its_release() {
    abts_inside_the_store(0);
}

#[test]
fn abts_of_a_command_on_lun_1_inside_the_store_answers_after_its_release() {
    abts_inside_the_store(1);
}

fn abts_inside_the_store(lun: u16) {
    let (mut r, f, _) = faulty();
    // The unit attention of a first command on the LUN (power on, for LUN 1) out of the way.
    let _ = r.cmd(19, lun, &[0; 6], 0, false, false);
    f.close_gate();
    let w = pattern(2 * BS, 1);
    let bursts = r.cmd(20, lun, &write10(40, 2), 1024, false, true);
    let rx = bursts[0].hdr().rx_id();
    r.data(20, rx, 0, &w, true).unwrap();
    f.wait_inside(1, Duration::from_secs(3));
    // The write is in the store: no BA_ACC while it may still touch the medium.
    assert!(r.abts(20, rx).is_empty());
    std::thread::sleep(Duration::from_millis(100));
    assert!(r.out().is_empty());
    f.open_gate();
    let out = wait_frames(&mut r, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].hdr().r_ctl(), RCtl::BA_ACC, "BA_ACC only: no FCP_RSP for the aborted command");
    std::thread::sleep(Duration::from_millis(50));
    assert!(r.out().is_empty());
    assert_eq!(r.els(21, &els::build_rrq(INI, 20, rx)).payload(), &els::LS_ACC);
    assert_eq!(r.port.open_exchanges(), 0);
}

#[test]
fn lun_reset_response_waits_for_the_command_in_the_store() {
    let (mut r, f, _) = faulty();
    f.close_gate();
    assert!(r.cmd(30, 0, &read10(0, 1), 512, true, false).is_empty());
    f.wait_inside(1, Duration::from_secs(3));
    assert!(r.cmd_tm(31, 0, tm_flags::LUN_RESET, &[], 0, false, false).is_empty());
    std::thread::sleep(Duration::from_millis(100));
    assert!(r.out().is_empty(), "no TMF response while the aborted read is in the store");
    f.open_gate();
    let out = wait_frames(&mut r, 1);
    assert_eq!(out.len(), 1, "the TMF response, not the aborted read's");
    assert_eq!(out[0].hdr().ox_id(), 31);
    let v = FcpRspView::parse(out[0].payload()).unwrap();
    assert_eq!((v.flags(), v.rsp_code()), (rsp_flags::RSP_LEN_VALID, Some(RspCode::TMF_COMPLETE)));
}

#[test]
fn logo_while_a_command_runs_drops_its_response() {
    let (mut r, f, _) = faulty();
    let s = r.port.session(INI).unwrap().clone();
    f.close_gate();
    assert!(r.cmd(40, 0, &read10(0, 8), 4096, true, false).is_empty());
    f.wait_inside(1, Duration::from_secs(3));
    assert_eq!(r.els(41, &els::build_logo(INI, INI_WWPN)).payload(), &els::LS_ACC);
    assert!(s.is_closed());
    f.open_gate();
    let end = Instant::now() + Duration::from_secs(3);
    while s.outstanding() > 0 && Instant::now() < end {
        r.port.process_async();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(s.outstanding(), 0, "the command was released");
    assert!(r.out().is_empty(), "nothing is sent to a port that logged out");
    assert!(r.target.sessions().is_empty());
}
