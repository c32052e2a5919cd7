//! Inputs the `cdb` fuzz target (`fuzz/`) found problems with, replayed through the same rig:
//! `fuzz/src/lib.rs` is included below, so each byte array runs exactly as the fuzzer ran it
//! (input format in that file's docs).
//!
//! Tests of problems not fixed yet are `#[ignore]`d with the reason; run them with
//! `cargo test -p scst-local --test fuzz_regressions -- --ignored`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code, unreachable_pub)]
mod cdb_rig;

use cdb_rig::{Input, Rig};
use scst_local::Outcome;

/// Runs `input` on a fresh rig whose NULLIO LUN has `nullio_bytes`, on its own thread, and fails
/// unless it completes within `limit` and meets the rig's outcome contracts (`Rig::run` checks
/// them). A stuck command fails the test instead of hanging it (its thread is abandoned).
fn run_within(limit: Duration, nullio_bytes: u64, input: Vec<u8>) -> Outcome {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut rig = Rig::with_nullio_bytes(nullio_bytes);
        let start = Instant::now();
        let o = rig.run(&input);
        let _ = tx.send((o, start.elapsed()));
    });
    match rx.recv_timeout(limit) {
        Ok((o, took)) => {
            println!("completed in {took:?}: {:?} {:?}", o.status, o.sense_code());
            o
        }
        Err(_) => panic!("the command did not complete within {limit:?}"),
    }
}

/// VERIFY(12) with BYTCHK=11b on the NULLIO LUN (1 GiB when found): LBA 0x1600, VERIFICATION
/// LENGTH 0x160000 blocks (704 MiB), one Data-Out block expected. The handler used to accept
/// it (only the one Data-Out block counted against the maximum transfer length) and compare
/// every block of the range with the Data-Out block, inline on the submitting thread: libFuzzer
/// hit its 10 s timeout. The verification length now counts against MAXIMUM TRANSFER LENGTH.
/// Found by the fuzzer (artifact `timeout-0f23351c...`).
#[test]
fn verify12_bytchk_11b_large_range_completes_quickly() {
    let input = vec![
        0x25, 0x08, 0x00, 0x02, 0x06, // NULLIO LUN, SIMPLE, Data-In buffer of 8 KiB, 12-byte CDB
        0xaf, 0x06, 0x00, 0x00, 0x16, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x00, // VERIFY(12)
        0x00, 0x16, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x00, 0x04, 0x18, 0x00, 0x00, 0xeb, 0x00, 0x00, 0x00, 0x04,
        0x18, 0x00, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0xeb, 0xef, 0x00, 0x02,
    ];
    let o = run_within(Duration::from_secs(2), 1 << 30, input);
    // The verification length exceeds the Block Limits' MAXIMUM TRANSFER LENGTH.
    assert_eq!(o.sense_code(), Some(scst::SenseCode::INVALID_FIELD_IN_CDB));
}

/// The same on the scale of the benchmarks' NULLIO LUN (1 TiB): VERIFY(16) with BYTCHK=11b of
/// 2^31 - 1 blocks from LBA 0 and a single 512-byte Data-Out block. One command would keep the
/// submitting (fabric) thread busy comparing a terabyte of zeros.
#[test]
fn verify16_bytchk_11b_over_a_terabyte_completes_quickly() {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x8f;
    cdb[1] = 0x06; // BYTCHK=11b
    cdb[10..14].copy_from_slice(&((1u32 << 31) - 1).to_be_bytes());
    let input = Input::encode(1, 0, 0, true, 512, &cdb, &[0]);
    let o = run_within(Duration::from_secs(2), 1 << 40, input);
    assert_eq!(o.sense_code(), Some(scst::SenseCode::INVALID_FIELD_IN_CDB));
}

/// SANITIZE (BLOCK ERASE, IMMED) on the NULLIO LUN, with an ORDERED task attribute and a
/// reservation setup that fails (no registration). LeakSanitizer reported the sanitize thread's
/// allocations at exit: SANITIZE runs on a detached thread spawned per command, and one was
/// still running when the fuzzer exited (with the default 16 MiB/s rate an OVERWRITE pass over a
/// large LUN lasts minutes to days). The rig now sets the rate to unlimited and waits for a
/// running sanitize before each input; this replays the input and checks the sanitize ends.
/// Found by the fuzzer (artifact `leak-8274ba7a...`).
#[test]
fn sanitize_immed_on_nullio_finishes() {
    let input = vec![
        0x21, 0xc5, 0xf8, 0x00, 0x0f, 0x48, 0xa2, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x04, 0x18, 0x00, 0x00, 0x15, 0x10, 0x00, 0x00, 0x18, 0x00, 0x03, 0x00, 0x07, 0x00, 0x08, 0x12, 0x04,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    // BLOCK ERASE is no longer supported on a fully provisioned LU (NULLIO is one): the replay
    // now checks the command is refused at once instead of starting a sanitize.
    let o = run_within(Duration::from_secs(10), cdb_rig::NULLIO_BYTES, input);
    assert_eq!(
        o.sense_code(),
        Some(scst::SenseCode::INVALID_FIELD_IN_CDB),
        "SANITIZE BLOCK ERASE with IMMED: {:?}",
        o.status
    );
}

/// PERSISTENT RESERVE OUT (REGISTER, SPEC_I_PT) with an iSCSI TransportID whose ADDITIONAL
/// LENGTH is 0: it names no initiator (SPC-4 §7.6.4.6: the iSCSI name is at least 20 bytes,
/// null-terminated). `parse_transport_id` used to take the empty body as the name "" and
/// register an I_T nexus with an empty initiator name. Now: CHECK CONDITION, INVALID FIELD IN
/// PARAMETER LIST, nothing registered. Found by the `prout` fuzz target.
#[test]
fn spec_i_pt_transport_id_without_a_name_is_refused() {
    use cdb_rig::scsi::{PR_LUN, PrRig};
    let rig = PrRig::new();
    let o = register_spec_i_pt(&rig, &[0x05, 0, 0, 0]);
    assert_eq!(o.sense_code(), Some(scst::SenseCode::INVALID_FIELD_IN_PARAM_LIST), "{:?}", o.status);
    let mut full = [0u8; 1024];
    let r = rig.inits[0].execute(PR_LUN, &[0x5e, 3, 0, 0, 0, 0, 0, 4, 0, 0], &[], &mut full);
    assert!(r.is_good());
    assert_eq!(&full[4..8], &[0, 0, 0, 0], "nothing may be registered");
}

/// The same with a Fibre Channel TransportID (SPC-4 §7.6.4.2: 24 bytes, PROTOCOL IDENTIFIER 0,
/// N_PORT_NAME in bytes 8..16, no ADDITIONAL LENGTH field), N_PORT_NAME 10:00:00:00:10:00:00:00.
/// `parse_transport_id` used to read every TransportID as iSCSI: bytes 2..4 (zero here) as the
/// ADDITIONAL LENGTH, so the 24 bytes were six 4-byte TransportIDs with empty names. Now each
/// protocol's format is parsed, and one no initiator of this (loopback) target port can use is
/// refused with INVALID FIELD IN PARAMETER LIST. Found with the `prout` fuzz target's seeds.
#[test]
fn spec_i_pt_fc_transport_id_is_not_read_as_iscsi() {
    let rig = cdb_rig::scsi::PrRig::new();
    let mut fc = [0u8; 24];
    fc[8..16].copy_from_slice(&0x1000_0000_1000_0000u64.to_be_bytes());
    let o = register_spec_i_pt(&rig, &fc);
    assert_eq!(o.sense_code(), Some(scst::SenseCode::INVALID_FIELD_IN_PARAM_LIST), "{:?}", o.status);
}

/// REGISTER (key 0Ah) from the rig's first nexus with SPEC_I_PT and `tids`.
fn register_spec_i_pt(rig: &cdb_rig::scsi::PrRig, tids: &[u8]) -> Outcome {
    let mut p = vec![0u8; 24];
    p[8..16].copy_from_slice(&0x0a_u64.to_be_bytes());
    p[20] = 0x08; // SPEC_I_PT
    p.extend_from_slice(&(tids.len() as u32).to_be_bytes());
    p.extend_from_slice(tids);
    let mut cdb = [0x5f, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    cdb[5..9].copy_from_slice(&(p.len() as u32).to_be_bytes());
    rig.inits[0].execute(cdb_rig::scsi::PR_LUN, &cdb, &p, &mut [])
}

/// I_T nexus `i.a` through relative port 1 registers key A; the same initiator port through
/// port 2 then registers key B with ALL_TG_PT (found by the `prout` fuzz target, artifact
/// `crash-2a05bd02...`). REGISTER used to look up only the sending nexus (port 2, unregistered)
/// and append a registration with ALL_TG_PT that also covered `i.a` through port 1: two
/// registrations for one I_T nexus. SPC-4 gives an I_T nexus one reservation key, and
/// ALL_TG_PT acts as a REGISTER through every target port, where port 1's REGISTER with
/// reservation key 0 is a RESERVATION CONFLICT. Now: RESERVATION CONFLICT, one registration.
#[test]
fn register_all_tg_pt_does_not_register_a_nexus_twice() {
    use cdb_rig::scsi::{PR_LUN, PrRig};
    let rig = PrRig::new();
    let register = |nexus: usize, key: u64, flags: u8| {
        let mut p = [0u8; 24];
        p[8..16].copy_from_slice(&key.to_be_bytes());
        p[20] = flags;
        rig.inits[nexus].execute(PR_LUN, &[0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0], &p, &mut [])
    };
    assert!(register(0, 0xa, 0).is_good());
    let o = register(3, 0xb, 0x04); // i.a through port 2, ALL_TG_PT
    let mut keys = [0u8; 64];
    let _ = rig.inits[1].clear_unit_attentions(PR_LUN);
    let r = rig.inits[1].execute(PR_LUN, &[0x5e, 0, 0, 0, 0, 0, 0, 0, 64, 0], &[], &mut keys);
    assert!(r.is_good());
    let n = u32::from_be_bytes([keys[4], keys[5], keys[6], keys[7]]) / 8;
    assert!(
        (o.is_good() || o.status == scst::ScsiStatus::RESERVATION_CONFLICT) && n == 1,
        "REGISTER with ALL_TG_PT: {:?}, {n} registrations for one initiator port",
        o.status
    );
}

/// `i.a` registers through relative port 2 with ALL_TG_PT, then reserves (Write Exclusive)
/// through port 1, which that registration covers (found by the `prout` fuzz target, artifact
/// `crash-384c041c...`). READ FULL STATUS reported the registration with R_HOLDER=1, but a
/// WRITE through port 2 got RESERVATION CONFLICT: `is_holder` wanted the registration's own
/// nexus to be the holder's. The two must agree; now a reservation held through an ALL_TG_PT
/// registration is held through every port it covers (as LIO and SCST treat it).
#[test]
fn all_tg_pt_holder_reported_and_enforced_alike() {
    use cdb_rig::scsi::{PR_LUN, PrRig};
    let rig = PrRig::new();
    let prout = |nexus: usize, sa: u8, typ: u8, key: u64, sa_key: u64, flags: u8| {
        let mut p = [0u8; 24];
        p[..8].copy_from_slice(&key.to_be_bytes());
        p[8..16].copy_from_slice(&sa_key.to_be_bytes());
        p[20] = flags;
        rig.inits[nexus].execute(PR_LUN, &[0x5f, sa, typ, 0, 0, 0, 0, 0, 24, 0], &p, &mut [])
    };
    assert!(prout(3, 0, 0, 0, 0xa, 0x04).is_good(), "REGISTER through port 2, ALL_TG_PT");
    assert!(prout(0, 1, 1, 0xa, 0, 0).is_good(), "RESERVE (Write Exclusive) through port 1");
    let mut full = [0u8; 1024];
    let _ = rig.inits[3].clear_unit_attentions(PR_LUN);
    let r = rig.inits[3].execute(PR_LUN, &[0x5e, 3, 0, 0, 0, 0, 0, 4, 0, 0], &[], &mut full);
    assert!(r.is_good());
    let reported_holder = full[8 + 12] & 1 != 0; // the one descriptor's R_HOLDER
    let w = rig.inits[3].execute(PR_LUN, &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[0u8; 512], &mut []);
    let conflict = w.status == scst::ScsiStatus::RESERVATION_CONFLICT;
    assert_ne!(reported_holder, conflict, "R_HOLDER {reported_holder}, WRITE through port 2 {:?}", w.status);
}

/// SANITIZE left its thread detached: the `cdb` target reported a leak (the thread's handle
/// and name, artifact `leak-bad9ee8f...`: BLOCK ERASE on the RAM LUN) because the thread was
/// still exiting when the input ended. The device now keeps the handle and
/// `Device::wait_sanitize` (which the rigs' reset calls) joins it. Here a rate-limited
/// sanitize with IMMED is surely still running when `wait_sanitize` is called; afterwards the
/// sanitize is over and its thread gone.
#[test]
fn wait_sanitize_joins_the_sanitize_thread() {
    use scst::{Device, DeviceConfig, Disk, Lun, SgvConfig, SgvPool, Target};
    let target = Target::new("iqn.2026-11.rs.scst:sanitize", SgvPool::new(SgvConfig::default()));
    let disk = Disk::new(scst_backends::RamStore::new(1 << 20, 512).unwrap());
    // 4 MiB/s: a quarter of a second for the 1 MiB LUN.
    let cfg = DeviceConfig { sanitize_rate: 4 << 20, ..DeviceConfig::new("sanitize-ram") };
    let dev = Device::new(cfg, disk).unwrap();
    target.add_lun(Lun(0), dev.clone(), false).unwrap();
    let init = scst_local::LocalInitiator::connect(&target, "iqn.2026-11.rs.scst:sanitizer");
    let _ = init.clear_unit_attentions(0);
    // SANITIZE, IMMED, OVERWRITE: one pass of a 4-byte pattern.
    let params = [0x01, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef];
    let o = init.execute(0, &[0x48, 0x81, 0, 0, 0, 0, 0, 0, 8, 0], &params, &mut []);
    assert!(o.is_good(), "SANITIZE: {:?} {:?}", o.status, o.sense_code());
    assert!(dev.sanitize_blocked().is_some(), "the sanitize runs on");
    assert!(dev.id() < 100_000, "thread names (15 bytes) hold the id");
    dev.wait_sanitize();
    assert_eq!(dev.sanitize_blocked(), None, "the sanitize is over");
    let alive: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == format!("sanitize-{}", dev.id()))
        .collect();
    assert!(alive.is_empty(), "the sanitize thread is alive: {alive:?}");
}
