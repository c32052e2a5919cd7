//! The core's contract with pass-through device handlers, shown with a fake device that records
//! what reaches it: unknown opcodes are forwarded with the transport's direction and length;
//! REPORT LUNS, unit attentions, LUN masking and (by default) reservations stay the core's; a
//! unit attention the device reports reaches every nexus; a LUN reset reaches the device.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::*;
use parking_lot::Mutex;
use scst::acl::NamePatterns;
use scst::ops::OpInfo;
use scst::{
    Cmd, CmdBox, CmdInfo, DataDir, Device, DeviceHandler, Lun, PassThrough, ScsiStatus, Sense, SenseCode, SenseKey,
    TmFunction, TmHold, TmStatus,
};
use scst_local::LocalInitiator;

/// Sense a real device would return for a unit attention: fixed format with a vendor byte and
/// an information field, so a test can tell its bytes from the core's.
const DEVICE_UA: [u8; 18] = [0x70, 0, 0x06, 0, 0, 0x12, 0x34, 10, 0, 0, 0, 0, 0x29, 0x00, 0, 0, 0, 0xa5];

/// What the fake device saw of one command.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    cdb: Vec<u8>,
    dir: DataDir,
    len: u32,
    data_out: Vec<u8>,
}

/// A pass-through handler over nothing: it records every command and answers Data-In with a
/// byte pattern three bytes shorter than asked (a residual), everything else GOOD.
#[derive(Default)]
struct FakeDevice {
    seen: Mutex<Vec<Seen>>,
    forward_reservations: bool,
    /// The next TEST UNIT READY gets [`DEVICE_UA`].
    ua_next: AtomicBool,
    resets: Mutex<Vec<TmHold>>,
    /// Take commands through `start` (completed through `scst::complete`) instead of `exec`.
    asynchronous: bool,
    started: AtomicUsize,
}

impl FakeDevice {
    fn opcodes(&self) -> Vec<u8> {
        self.seen.lock().iter().map(|s| s.cdb[0]).collect()
    }
}

impl FakeDevice {
    fn run(&self, cmd: &mut Cmd) {
        let info = *cmd.info();
        let mut data_out = vec![0u8; cmd.buf().map_or(0, scst::SgBuf::len)];
        if info.dir == DataDir::Out
            && let Some(b) = cmd.buf()
        {
            b.read_at(0, &mut data_out);
        } else {
            data_out.clear();
        }
        self.seen.lock().push(Seen { cdb: cmd.cdb().to_vec(), dir: info.dir, len: info.data_len, data_out });
        if cmd.cdb()[0] == 0x00 && self.ua_next.swap(false, SeqCst) {
            cmd.set_device_status(ScsiStatus::CHECK_CONDITION, &DEVICE_UA);
            return;
        }
        if info.dir == DataDir::In && info.data_len > 3 {
            let n = info.data_len as usize - 3;
            let pattern: Vec<u8> = (0..n).map(|i| i as u8 ^ 0x5a).collect();
            match cmd.data_in_buf(n) {
                Ok(b) => b.write_at(0, &pattern),
                Err(f) => return cmd.fail(f),
            }
            cmd.set_data_in(n);
        }
        cmd.set_status(ScsiStatus::GOOD);
    }
}

impl DeviceHandler for FakeDevice {
    fn ops(&self) -> &'static [OpInfo] {
        &[]
    }

    fn device_type(&self) -> u8 {
        0x01
    }

    fn product(&self) -> &str {
        "FAKE TAPE"
    }

    fn parse(&self, _: &Device, _: &'static OpInfo, _: &[u8], _: u32) -> Result<CmdInfo, Sense> {
        // A pass-through handler is never asked to parse.
        Err(Sense::new(SenseCode::INTERNAL_TARGET_FAILURE))
    }

    fn exec(&self, cmd: &mut Cmd) {
        self.run(cmd);
    }

    fn start(&self, mut cmd: CmdBox) -> Result<(), CmdBox> {
        if !self.asynchronous {
            return Err(cmd);
        }
        self.started.fetch_add(1, SeqCst);
        // A real device completes later on another thread; completing before returning is
        // allowed too and keeps the test deterministic.
        self.run(&mut cmd);
        scst::complete(cmd);
        Ok(())
    }

    fn may_block(&self) -> bool {
        true
    }

    fn pass_through(&self) -> Option<PassThrough> {
        Some(PassThrough { forward_reservations: self.forward_reservations })
    }

    fn reset(&self, _: &Arc<Device>, hold: TmHold) {
        self.resets.lock().push(hold);
    }
}

/// A target with the fake device at LUN 0 and a RAM disk at LUN 1.
fn rig(forward_reservations: bool) -> (Arc<scst::Target>, Arc<FakeDevice>) {
    rig_with(FakeDevice { forward_reservations, ..Default::default() })
}

fn rig_with(fake: FakeDevice) -> (Arc<scst::Target>, Arc<FakeDevice>) {
    let t = target();
    let fake = Arc::new(fake);
    let dev = Device::new(config(), fake.clone()).expect("device");
    t.add_lun(Lun(0), dev, false).expect("lun 0");
    let ram = device(scst_backends::RamStore::new(1 << 20, 512).expect("ram"), config());
    t.add_lun(Lun(1), ram, false).expect("lun 1");
    (t, fake)
}

fn initiator(t: &Arc<scst::Target>, name: &str) -> LocalInitiator {
    let i = LocalInitiator::connect(t, name);
    i.clear_unit_attentions(0);
    i.clear_unit_attentions(1);
    i
}

fn prout(sa: u8, typ: u8, key: u64, sa_key: u64) -> ([u8; 10], [u8; 24]) {
    let cdb = [0x5f, sa, typ, 0, 0, 0, 0, 0, 24, 0];
    let mut p = [0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    (cdb, p)
}

const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
/// A vendor-specific command (the disk table does not know it).
const VENDOR_IN: [u8; 6] = [0xc1, 0xff, 0xee, 0, 0, 0];

#[test]
fn unknown_commands_reach_the_device_with_the_transports_direction_and_length() {
    let (t, fake) = rig(false);
    let a = initiator(&t, "iqn.a");
    fake.seen.lock().clear();
    let mut buf = vec![0u8; 100];
    let o = a.execute(0, &VENDOR_IN, &[], &mut buf);
    assert!(o.is_good(), "{o:?}");
    assert_eq!(o.data_in_len, 97);
    assert_eq!(o.residual, (false, 3), "underflow of what the device did not transfer");
    let want: Vec<u8> = (0..97).map(|i| i as u8 ^ 0x5a).collect();
    assert_eq!(&buf[..97], &want[..]);
    // A REWIND (tape), with bits the disk table would refuse, and a vendor Data-Out command.
    assert!(a.execute(0, &[0x01, 0x01, 0, 0, 0, 0], &[], &mut []).is_good());
    let out: Vec<u8> = (0..40).collect();
    assert!(a.execute(0, &[0xc2, 0, 0, 0, 0, 0], &out, &mut []).is_good());
    let seen = fake.seen.lock().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!((seen[0].cdb.as_slice(), seen[0].dir, seen[0].len), (&VENDOR_IN[..], DataDir::In, 100));
    assert_eq!((seen[1].cdb.as_slice(), seen[1].dir, seen[1].len), (&[0x01, 0x01, 0, 0, 0, 0][..], DataDir::None, 0));
    assert_eq!((seen[2].dir, seen[2].len, &seen[2].data_out[..]), (DataDir::Out, 40, &out[..]));
}

#[test]
fn report_luns_and_lun_masking_stay_with_the_core() {
    let (t, fake) = rig(false);
    t.add_group("masked", NamePatterns::new(["iqn.masked"]).expect("patterns")).expect("group");
    let a = initiator(&t, "iqn.a");
    fake.seen.lock().clear();
    let mut d = [0u8; 64];
    let o = a.execute(0, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], &[], &mut d);
    assert!(o.is_good(), "{o:?}");
    assert_eq!(&d[..24], &[0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    // An initiator whose group maps nothing does not reach the device.
    let m = LocalInitiator::connect(&t, "iqn.masked");
    let o = m.execute(0, &VENDOR_IN, &[], &mut [0u8; 8]);
    assert_eq!(o.sense_code(), Some(SenseCode::LUN_NOT_SUPPORTED), "{o:?}");
    assert!(fake.opcodes().is_empty(), "{:?}", fake.opcodes());
}

#[test]
fn reservations_are_emulated_and_conflicts_refused_by_the_core() {
    let (t, fake) = rig(false);
    let a = initiator(&t, "iqn.a");
    let b = initiator(&t, "iqn.b");
    fake.seen.lock().clear();
    let (cdb, p) = prout(0x00, 0, 0, 0xaaaa);
    assert!(a.execute(0, &cdb, &p, &mut []).is_good());
    // Write Exclusive, held by A.
    let (cdb, p) = prout(0x01, 0x01, 0xaaaa, 0);
    assert!(a.execute(0, &cdb, &p, &mut []).is_good());
    assert_eq!(b.execute(0, &WRITE10, &[0u8; 512], &mut []).status, ScsiStatus::RESERVATION_CONFLICT);
    // A command the core cannot classify is treated as one that changes the LU.
    assert_eq!(b.execute(0, &VENDOR_IN, &[], &mut [0u8; 8]).status, ScsiStatus::RESERVATION_CONFLICT);
    assert!(b.execute(0, &READ10, &[], &mut [0u8; 512]).is_good(), "Write Exclusive admits reads");
    assert!(a.execute(0, &WRITE10, &[0u8; 512], &mut []).is_good(), "the holder writes");
    // PERSISTENT RESERVE IN, READ KEYS from B: the core's registration.
    let mut d = [0u8; 16];
    assert!(b.execute(0, &[0x5e, 0x00, 0, 0, 0, 0, 0, 0, 16, 0], &[], &mut d).is_good());
    assert_eq!(&d[4..16], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0xaa, 0xaa]);
    // Service actions the core does not implement are refused by the core, not forwarded.
    let o = b.execute(0, &[0x5e, 0x1f, 0, 0, 0, 0, 0, 0, 16, 0], &[], &mut d);
    assert_eq!(o.sense_code(), Some(SenseCode::INVALID_FIELD_IN_CDB), "{o:?}");
    let o = a.execute(0, &[0x5f, 0x1f, 0, 0, 0, 0, 0, 0, 24, 0], &[0u8; 24], &mut []);
    assert_eq!(o.sense_code(), Some(SenseCode::INVALID_FIELD_IN_CDB), "{o:?}");
    assert_eq!(fake.opcodes(), vec![0x28, 0x2a], "only B's READ and A's WRITE reached the device");
    // SPC-2 RESERVE by B is refused while A holds a persistent reservation; after A clears it,
    // B's RESERVE(6) blocks A.
    let (cdb, p) = prout(0x03, 0, 0xaaaa, 0);
    assert!(a.execute(0, &cdb, &p, &mut []).is_good());
    assert!(b.execute(0, &[0x16, 0, 0, 0, 0, 0], &[], &mut []).is_good());
    assert_eq!(a.execute(0, &[0x00; 6], &[], &mut []).status, ScsiStatus::RESERVATION_CONFLICT);
    assert!(b.execute(0, &[0x17, 0, 0, 0, 0, 0], &[], &mut []).is_good());
    assert!(a.execute(0, &[0x00; 6], &[], &mut []).is_good());
    assert_eq!(fake.opcodes(), vec![0x28, 0x2a, 0x00]);
}

#[test]
fn reservations_are_forwarded_when_asked() {
    let (t, fake) = rig(true);
    let a = initiator(&t, "iqn.a");
    let b = initiator(&t, "iqn.b");
    fake.seen.lock().clear();
    let (cdb, p) = prout(0x01, 0x01, 0xaaaa, 0);
    assert!(a.execute(0, &cdb, &p, &mut []).is_good());
    assert!(b.execute(0, &[0x16, 0, 0, 0, 0, 0], &[], &mut []).is_good());
    assert!(b.execute(0, &WRITE10, &[0u8; 512], &mut []).is_good(), "the core does not judge conflicts");
    let seen = fake.seen.lock().clone();
    assert_eq!(seen.iter().map(|s| s.cdb[0]).collect::<Vec<_>>(), vec![0x5f, 0x16, 0x2a]);
    assert_eq!((seen[0].dir, &seen[0].data_out[..]), (DataDir::Out, &p[..]));
}

#[test]
fn a_unit_attention_from_the_device_reaches_every_nexus() {
    let (t, fake) = rig(false);
    let a = initiator(&t, "iqn.a");
    let b = initiator(&t, "iqn.b");
    fake.seen.lock().clear();
    fake.ua_next.store(true, SeqCst);
    let o = a.execute(0, &[0x00; 6], &[], &mut []);
    assert_eq!(o.status, ScsiStatus::CHECK_CONDITION);
    assert_eq!(o.sense(), &DEVICE_UA[..], "the device's sense, byte for byte");
    // B gets the same condition from the core without the device seeing its command.
    let o = b.execute(0, &[0x00; 6], &[], &mut []);
    assert_eq!(o.sense_code(), Some(SenseCode::POWER_ON_RESET), "{o:?}");
    assert_eq!(o.sense_code().map(|c| c.key), Some(SenseKey::UNIT_ATTENTION));
    // Neither is told twice; the RAM disk at LUN 1 was not concerned.
    assert!(a.execute(0, &[0x00; 6], &[], &mut []).is_good());
    assert!(b.execute(0, &[0x00; 6], &[], &mut []).is_good());
    assert!(b.execute(1, &[0x00; 6], &[], &mut []).is_good());
    assert_eq!(fake.opcodes(), vec![0x00, 0x00, 0x00]);
}

#[test]
fn a_lun_reset_reaches_the_device_and_completes_after_it() {
    let (t, fake) = rig(false);
    let a = initiator(&t, "iqn.a");
    let f2 = fake.clone();
    let releaser = std::thread::spawn(move || {
        // Wait for the reset to arrive, hold it a while, then let the TMF complete.
        let start = Instant::now();
        while f2.resets.lock().is_empty() {
            assert!(start.elapsed() < Duration::from_secs(10), "no reset reached the device");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(200));
        f2.resets.lock().clear();
    });
    let start = Instant::now();
    assert_eq!(a.task_mgmt(TmFunction::LUN_RESET, 0, 0), TmStatus::COMPLETE);
    assert!(start.elapsed() >= Duration::from_millis(200), "the TMF waited for the device reset");
    releaser.join().expect("releaser");
    // The core's own unit attention for the reset.
    let o = a.execute(0, &[0x00; 6], &[], &mut []);
    assert_eq!(o.sense_code(), Some(SenseCode::BUS_DEVICE_RESET), "{o:?}");
}

#[test]
fn asynchronous_starts_complete_through_the_core() {
    let (t, fake) = rig_with(FakeDevice { asynchronous: true, ..Default::default() });
    let a = initiator(&t, "iqn.a");
    let b = initiator(&t, "iqn.b");
    let before = fake.started.load(SeqCst);
    let mut buf = vec![0u8; 64];
    let o = a.execute(0, &VENDOR_IN, &[], &mut buf);
    assert!(o.is_good(), "{o:?}");
    assert_eq!((o.data_in_len, o.residual), (61, (false, 3)));
    assert_eq!(buf[..61], (0..61).map(|i| i as u8 ^ 0x5a).collect::<Vec<_>>()[..]);
    assert_eq!(fake.started.load(SeqCst), before + 1, "the command went through start");
    // A unit attention completed asynchronously still reaches the other nexus.
    fake.ua_next.store(true, SeqCst);
    assert_eq!(a.execute(0, &[0x00; 6], &[], &mut []).sense(), &DEVICE_UA[..]);
    assert_eq!(b.execute(0, &[0x00; 6], &[], &mut []).sense_code(), Some(SenseCode::POWER_ON_RESET));
    assert!(b.execute(0, &[0x00; 6], &[], &mut []).is_good());
}
