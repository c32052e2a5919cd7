//! Persistent reservations with APTPL survive `kill -9` of `iscsi-target`: the registrations
//! and the reservation are on disk before PERSISTENT RESERVE OUT completes, and a restarted
//! target reports the same state to every initiator.

#[path = "../../scst-transport-iscsi/tests/common/mod.rs"]
#[allow(dead_code, unreachable_pub, clippy::all)]
mod common;

mod process;

use std::net::SocketAddr;
use std::path::Path;

use process::Running;

use common::{Conn, LoginOpts, TARGET_NAME, new_isid};

/// Starts the binary on an ephemeral port; returns it and its portal.
fn start(dir: &Path) -> (Running, SocketAddr) {
    let lun = format!("0=fileio:{},size=16M", dir.join("disk.img").display());
    let state = dir.join("state").display().to_string();
    process::start(TARGET_NAME, &["--log".into(), "warn".into(), "--lun".into(), lun, "--state-dir".into(), state])
}

fn login(addr: SocketAddr, name: &str, isid: [u8; 6]) -> Conn {
    let o = LoginOpts { initiator: name.into(), isid, ..LoginOpts::normal() };
    let mut c = Conn::login(addr, &o).expect("login");
    c.clear_ua(0);
    c
}

/// PERSISTENT RESERVE OUT with the 24-byte parameter list; APTPL always set.
fn prout(c: &mut Conn, sa: u8, typ: u8, key: u64, sa_key: u64) -> u8 {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x5f;
    cdb[1] = sa;
    cdb[2] = typ;
    cdb[8] = 24;
    let mut p = [0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = 0x01; // APTPL
    c.exec(0, cdb, false, 24, &p).status
}

fn prin(c: &mut Conn, sa: u8) -> Vec<u8> {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x5e;
    cdb[1] = sa;
    cdb[8] = 255;
    let r = c.exec(0, cdb, true, 255, &[]);
    r.assert_good();
    r.data
}

fn write_status(c: &mut Conn) -> u8 {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x2a;
    cdb[8] = 1;
    c.exec(0, cdb, false, 512, &[0x77; 512]).status
}

const RESERVATION_CONFLICT: u8 = 0x18;

#[test]
fn aptpl_state_survives_kill_9_and_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (target, addr) = start(dir.path());
    let (isid_a, isid_b) = (new_isid(), new_isid());
    let mut a = login(addr, "iqn.2026-11.rs.scst:node-a", isid_a);
    let mut b = login(addr, "iqn.2026-11.rs.scst:node-b", isid_b);
    assert_eq!(prout(&mut a, 0x00, 0, 0, 0xaaaa), 0, "REGISTER A");
    assert_eq!(prout(&mut b, 0x00, 0, 0, 0xbbbb), 0, "REGISTER B");
    assert_eq!(prout(&mut a, 0x01, 0x01, 0xaaaa, 0), 0, "RESERVE WRITE EXCLUSIVE");
    let keys = prin(&mut a, 0x00);
    let reservation = prin(&mut a, 0x01);
    // The very next thing: SIGKILL. Nothing gets a chance to flush at exit.
    drop(target);
    drop((a, b));

    let (_target, addr) = start(dir.path());
    let mut c = login(addr, "iqn.2026-11.rs.scst:node-c", new_isid());
    assert_eq!(prin(&mut c, 0x00)[4..], keys[4..], "READ KEYS: the same keys (generation aside)");
    assert_eq!(&prin(&mut c, 0x00)[8..24], [0, 0, 0, 0, 0, 0, 0xaa, 0xaa, 0, 0, 0, 0, 0, 0, 0xbb, 0xbb]);
    let r = prin(&mut c, 0x01);
    assert_eq!(r[4..], reservation[4..], "READ RESERVATION: the same holder and type");
    assert_eq!((&r[8..16], r[21] & 0x0f), (&[0, 0, 0, 0, 0, 0, 0xaa, 0xaa][..], 0x01));
    // The reservation still works: C (unregistered) cannot write, A from its own I_T nexus can.
    assert_eq!(write_status(&mut c), RESERVATION_CONFLICT);
    let mut a = login(addr, "iqn.2026-11.rs.scst:node-a", isid_a);
    assert_eq!(write_status(&mut a), 0);
}
