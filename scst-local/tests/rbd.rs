//! RBD LUNs (feature `rbd`) on a real Ceph cluster: bytes in the image (read back through a
//! second, independent librbd handle, as another gateway would), FUA and SYNCHRONIZE CACHE,
//! UNMAP and GET LBA STATUS, WRITE SAME, COMPARE AND WRITE done by the OSD (a second gateway's
//! stale comparison fails), a resize seen as CAPACITY DATA HAS CHANGED, many commands in flight,
//! and the errors of a missing image or cluster.
//!
//! The cluster: `SCST_CEPH_CONF=PATH` names a running one; otherwise the tests start their own
//! with `scripts/ceph-cluster.sh` (Debian's ceph-mon, ceph-osd, ceph-common must be installed)
//! and stop it when the test process exits.
#![cfg(feature = "rbd")]

#[macro_use]
mod common;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use common::*;
use scst::{BlockStore, Target};
use scst_backends::rbd::{self, RbdOptions, RbdStore};
use scst_local::LocalInitiator;

const BS: usize = 512;
const UNMAP: u8 = 0x42;
const WRITE_SAME16: u8 = 0x93;
const COMPARE_AND_WRITE: u8 = 0x89;
const WS_UNMAP: u8 = 0x08;

static CLUSTER: OnceLock<PathBuf> = OnceLock::new();
static OWN_CLUSTER: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn stop_cluster() {
    if let Some(dir) = OWN_CLUSTER.get() {
        let _ = std::process::Command::new(script()).arg("stop").arg(dir).status();
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/ceph-cluster.sh")
}

/// Starts a cluster of our own in `dir` and returns its configuration file.
fn start_cluster(dir: &std::path::Path) -> PathBuf {
    let start = || std::process::Command::new(script()).arg("start").arg(dir).output().expect("run ceph-cluster.sh");
    let mut out = start();
    if !out.status.success() {
        // Once more from scratch (say, a port taken between its choice and the bind).
        let _ = std::process::Command::new(script()).arg("stop").arg(dir).status();
        out = start();
    }
    assert!(
        out.status.success(),
        "no Ceph cluster for the RBD tests (set SCST_CEPH_CONF or install ceph-mon ceph-osd \
         ceph-common): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The configuration file of the test cluster (started once per test process).
fn conf() -> PathBuf {
    CLUSTER
        .get_or_init(|| {
            if let Some(c) = std::env::var_os("SCST_CEPH_CONF") {
                return PathBuf::from(c);
            }
            let dir = std::env::temp_dir().join(format!("scst-rbd-tests-{}", std::process::id()));
            let conf = start_cluster(&dir);
            let _ = OWN_CLUSTER.set(dir);
            // SAFETY: registering a plain extern "C" function to run at exit.
            unsafe {
                libc::atexit(stop_cluster);
            }
            conf
        })
        .clone()
}

/// A new image of `size` bytes, removed when dropped.
struct Image {
    opts: RbdOptions,
}

impl Image {
    fn new(size: u64) -> Self {
        let mut opts = RbdOptions::new("rbd", format!("scst-test-{}-{}", std::process::id(), unique()));
        opts.conf = Some(conf());
        rbd::create_image(&opts, size).expect("rbd create");
        Self { opts }
    }

    /// Another handle on the image: what a second gateway sees.
    fn other(&self) -> RbdStore {
        RbdStore::open(&self.opts).expect("open the image again")
    }

    fn bytes(&self, off: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.other().read_at(off, &mut [std::io::IoSliceMut::new(&mut v)]).expect("read the image");
        v
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = rbd::remove_image(&self.opts);
    }
}

fn lun(img: &Image) -> (Arc<Target>, Arc<scst::Device>, LocalInitiator) {
    let t = target();
    let d = device(RbdStore::open(&img.opts).expect("open image"), config());
    t.add_lun(scst::Lun(0), d.clone(), false).expect("map");
    let i = LocalInitiator::connect(&t, &format!("iqn.2026-12.rs.scst:rbd-{}", unique()));
    i.clear_unit_attentions(0);
    (t, d, i)
}

fn caw(i: &LocalInitiator, lba: u64, compare: &[u8], data: &[u8]) -> scst_local::Outcome {
    let mut c = [0u8; 16];
    c[0] = COMPARE_AND_WRITE;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = (compare.len() / BS) as u8;
    i.execute(0, &c, &[compare, data].concat(), &mut [])
}

#[test]
fn an_rbd_lun_reads_and_writes_the_image() {
    let img = Image::new(64 << 20);
    let (_t, _d, i) = lun(&img);
    let inq = data_in_ok(&i, 0, &inquiry_cdb(false, 0, 96), 96);
    assert_eq!(String::from_utf8_lossy(&inq[16..32]).trim_end(), "RBD");
    let rc = data_in_ok(&i, 0, &read_capacity16(32), 32);
    assert_eq!((be64(&rc, 0), be32(&rc, 8)), (((64 << 20) / BS as u64) - 1, BS as u32));
    // One block, a 1 MiB transfer across a 4 MiB object boundary (many segments), the last block.
    let last = (64 << 20) / BS as u64 - 1;
    let aio = rbd::aio_submitted();
    for (lba, blocks, seed) in [(0u64, 1usize, 1u32), ((4 << 20) / BS as u64 - 1024, 2048, 2), (last, 1, 3)] {
        let data = pattern(seed, blocks * BS);
        write(&i, 0, lba, BS, &data);
        assert!(read(&i, 0, lba, BS, blocks as u32) == data, "read back at {lba}");
        assert!(img.bytes(lba * BS as u64, data.len()) == data, "in the image at {lba}");
    }
    // FUA and SYNCHRONIZE CACHE.
    let data = pattern(4, 8 * BS);
    assert_good(&i.execute(0, &cdb16(WRITE16, 0x08, 100, 8), &data, &mut []));
    assert_good(&i.execute(0, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut []));
    assert!(img.bytes(100 * BS as u64, data.len()) == data);
    // 3 writes and 3 reads, a FUA write and its flush, a SYNCHRONIZE CACHE: all asynchronous
    // (other tests run at the same time: at least these).
    assert!(rbd::aio_submitted() - aio >= 9, "READ/WRITE/SYNCHRONIZE CACHE went through librbd's aio");
    // Past the end: the core's range check, no librbd call.
    assert_oob(&i.execute(0, &cdb16(READ16, 0, last, 2), &[], &mut vec![0; 2 * BS]));
}

#[test]
fn verify_reads_a_many_segment_range_in_one_librbd_call() {
    let img = Image::new(16 << 20);
    // 64 KiB buffer chunks: VERIFY's 1 MiB read lands in 16 segments.
    let t = target_with_sgv(scst::SgvConfig { max_chunk: 64 << 10, ..scst::SgvConfig::default() });
    let d = device(RbdStore::open(&img.opts).expect("open image"), config());
    t.add_lun(scst::Lun(0), d, false).expect("map");
    let i = LocalInitiator::connect(&t, &format!("iqn.2026-12.rs.scst:rbd-verify-{}", unique()));
    i.clear_unit_attentions(0);
    let blocks = (1 << 20) / BS;
    let mut data = pattern(21, blocks * BS);
    write(&i, 0, 64, BS, &data);
    let calls = rbd::sync_calls();
    // VERIFY(16) with BYTCHK=1: the store reads the range (the worker path) and compares.
    assert_good(&i.execute(0, &cdb16(VERIFY16, 0x02, 64, blocks as u32), &data, &mut []));
    let n = rbd::sync_calls() - calls;
    // Other tests of this binary may make a call or two meanwhile; one call per segment would be 16.
    assert!((1..16).contains(&n), "{n} librbd calls for one VERIFY of 16 segments");
    data[700 * BS + 3] ^= 0xff;
    let r = i.execute(0, &cdb16(VERIFY16, 0x02, 64, blocks as u32), &data, &mut []);
    assert_check(&r, 0x0e, 0x1d, 0x00); // MISCOMPARE DURING VERIFY OPERATION
}

#[test]
fn many_commands_in_flight_complete_with_their_own_data() {
    let img = Image::new(32 << 20);
    let (_t, _d, i) = lun(&img);
    let i = Arc::new(i);
    let threads: Vec<_> = (0..4u32)
        .map(|k| {
            let i = i.clone();
            std::thread::spawn(move || {
                for n in 0..50u32 {
                    let lba = u64::from(k * 4096 + n * 16);
                    let data = pattern(k * 1000 + n, 16 * BS);
                    write(&i, 0, lba, BS, &data);
                    assert!(read(&i, 0, lba, BS, 16) == data, "thread {k} command {n}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
}

#[test]
fn unmap_and_write_same_deallocate_and_read_as_zeros() {
    let img = Image::new(16 << 20);
    let (_t, _d, i) = lun(&img);
    let data = pattern(7, 256 * BS);
    write(&i, 0, 0, BS, &data);
    // UNMAP of blocks 16..48 (part of an object: zeroed, not skipped).
    let mut p = vec![0u8; 8];
    p[0..2].copy_from_slice(&22u16.to_be_bytes());
    p[2..4].copy_from_slice(&16u16.to_be_bytes());
    p.extend_from_slice(&16u64.to_be_bytes());
    p.extend_from_slice(&32u32.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    assert_good(&i.execute(0, &cdb10(UNMAP, 0, 0, p.len() as u16), &p, &mut []));
    let back = read(&i, 0, 0, BS, 256);
    assert!(back[..16 * BS] == data[..16 * BS]);
    assert!(back[16 * BS..48 * BS].iter().all(|&b| b == 0), "unmapped blocks read as zeros");
    assert!(back[48 * BS..] == data[48 * BS..]);
    // WRITE SAME(16) of a pattern block, then with UNMAP.
    let b = pattern(8, BS);
    assert_good(&i.execute(0, &cdb16(WRITE_SAME16, 0, 300, 40), &b, &mut []));
    assert!(img.bytes(300 * BS as u64, 40 * BS) == b.repeat(40));
    assert_good(&i.execute(0, &cdb16(WRITE_SAME16, WS_UNMAP, 300, 40), &vec![0u8; BS], &mut []));
    assert!(img.bytes(300 * BS as u64, 40 * BS).iter().all(|&x| x == 0));
    // GET LBA STATUS: an image nothing wrote past 1 MiB is deallocated there.
    let mut c = [0u8; 16];
    c[0] = SERVICE_ACTION_IN16;
    c[1] = 0x12;
    c[2..10].copy_from_slice(&((8u64 << 20) / BS as u64).to_be_bytes());
    c[10..14].copy_from_slice(&64u32.to_be_bytes());
    let d = data_in_ok(&i, 0, &c, 64);
    assert_eq!(be64(&d, 8), (8 << 20) / BS as u64);
    assert_eq!(d[8 + 12] & 0x0f, 1, "deallocated: {d:02x?}");
    let c0 = {
        let mut c0 = c;
        c0[2..10].copy_from_slice(&0u64.to_be_bytes());
        c0
    };
    let d = data_in_ok(&i, 0, &c0, 64);
    assert_eq!(d[8 + 12] & 0x0f, 0, "mapped at LBA 0: {d:02x?}");
}

#[test]
fn compare_and_write_is_done_by_the_cluster() {
    let img = Image::new(16 << 20);
    let (_t, _d, a) = lun(&img);
    // A second gateway: another target with its own handle on the same image.
    let (_t2, _d2, b) = lun(&img);
    let v0 = pattern(10, BS);
    // v1 differs from v0 first at byte 300: the sense's INFORMATION must say 300.
    let mut v1 = v0.clone();
    v1[300..].copy_from_slice(&pattern(11, BS - 300));
    v1[300] = !v0[300];
    let v2 = pattern(12, BS);
    write(&a, 0, 5, BS, &v0);
    // A matches and writes v1.
    assert_good(&caw(&a, 5, &v0, &v1));
    assert!(img.bytes(5 * BS as u64, BS) == v1);
    // B still believes v0: its comparison is against the image, so it fails with the offset of
    // the first differing byte, and nothing is written.
    let o = caw(&b, 5, &v0, &v2);
    assert_check(&o, 0x0e, 0x1d, 0x00);
    assert_eq!(information(o.sense()), Some(300));
    assert!(img.bytes(5 * BS as u64, BS) == v1, "a failed COMPARE AND WRITE writes nothing");
    // B with the current value succeeds.
    assert_good(&caw(&b, 5, &v1, &v2));
    assert!(read(&a, 0, 5, BS, 1) == v2);
    // Two blocks across the 4 MiB object boundary: the core's comparison (same results).
    let lba = (4 << 20) / BS as u64 - 1;
    let w0 = pattern(13, 2 * BS);
    write(&a, 0, lba, BS, &w0);
    let w1 = pattern(14, 2 * BS);
    assert_good(&caw(&a, lba, &w0, &w1));
    assert_check(&caw(&b, lba, &w0, &w1), 0x0e, 0x1d, 0x00);
    assert!(img.bytes(lba * BS as u64, 2 * BS) == w1);
}

#[test]
fn a_resized_image_raises_capacity_data_has_changed_without_a_rescan() {
    let img = Image::new(8 << 20);
    let (_t, d, i) = lun(&img);
    // Resized by another client (as `rbd resize` would): the LUN's watch on the image header
    // sees it, nobody asks the device to rescan.
    rbd::resize_image(&img.opts, 12 << 20).expect("rbd resize");
    let t0 = std::time::Instant::now();
    let o = loop {
        let o = i.execute(0, &TUR, &[], &mut []);
        if !o.is_good() || t0.elapsed() > std::time::Duration::from_secs(20) {
            break o;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_ua(&o, 0x2a, 0x09);
    assert!(!d.rescan(), "the watch already read the new size");
    let rc = data_in_ok(&i, 0, &read_capacity16(32), 32);
    assert_eq!(be64(&rc, 0), (12 << 20) / BS as u64 - 1);
    // The new blocks take writes.
    let data = pattern(20, BS);
    write(&i, 0, (10 << 20) / BS as u64, BS, &data);
    assert!(img.bytes(10 << 20, BS) == data);
}

#[test]
fn a_missing_image_or_cluster_is_an_open_error() {
    let _ = conf();
    let mut o = RbdOptions::new("rbd", "no-such-image");
    o.conf = Some(conf());
    let e = RbdStore::open(&o).expect_err("no such image");
    assert!(e.to_string().contains("rbd:rbd/no-such-image"), "{e}");
    let mut o = RbdOptions::new("no-such-pool", "x");
    o.conf = Some(conf());
    assert!(RbdStore::open(&o).is_err(), "no such pool");
    let mut o = RbdOptions::new("rbd", "x");
    o.block_size = 1024;
    assert!(matches!(RbdStore::open(&o), Err(scst_backends::OpenError::BlockSize(1024))));
}

/// A lock word incremented with COMPARE AND WRITE from two gateways at once (two targets, each
/// with its own handle and its own range locks): no increment is lost only if the comparison
/// and the write are one operation in the cluster.
#[test]
fn compare_and_write_increments_from_two_gateways_lose_nothing() {
    let img = Image::new(8 << 20);
    let gateways = [lun(&img), lun(&img)];
    let block = |n: u64| {
        let mut b = vec![0u8; BS];
        b[..8].copy_from_slice(&n.to_be_bytes());
        b
    };
    write(&gateways[0].2, 0, 7, BS, &block(0));
    const PER_THREAD: u64 = 20;
    std::thread::scope(|sc| {
        for (_, _, i) in &gateways {
            for _ in 0..2 {
                sc.spawn(move || {
                    let mut done = 0;
                    let mut seen = u64::from_be_bytes(read(i, 0, 7, BS, 1)[..8].try_into().unwrap());
                    while done < PER_THREAD {
                        let o = caw(i, 7, &block(seen), &block(seen + 1));
                        if o.status == scst::ScsiStatus::GOOD {
                            done += 1;
                            seen += 1;
                        } else {
                            assert_check(&o, 0x0e, 0x1d, 0x00);
                            seen = u64::from_be_bytes(read(i, 0, 7, BS, 1)[..8].try_into().unwrap());
                        }
                    }
                });
            }
        }
    });
    let n = u64::from_be_bytes(img.bytes(7 * BS as u64, BS)[..8].try_into().unwrap());
    assert_eq!(n, 4 * PER_THREAD, "every successful COMPARE AND WRITE counted once");
}

/// A cluster of one test's own (it stops its OSD), stopped when dropped.
struct PrivateCluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl PrivateCluster {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("scst-rbd-dead-{}-{}", std::process::id(), unique()));
        let conf = start_cluster(&dir);
        Self { dir, conf }
    }

    /// Sends `sig` to the OSD (SIGSTOP: a cluster that stops answering, as a hung or
    /// partitioned OSD does).
    fn signal_osd(&self, sig: libc::c_int) {
        let pid: libc::pid_t = std::fs::read_to_string(self.dir.join("run/osd.0.pid"))
            .expect("the OSD's pid file")
            .trim()
            .parse()
            .expect("a pid");
        // SAFETY: a plain kill(2) of the test cluster's own OSD.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "signal the OSD");
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.signal_osd(libc::SIGCONT);
        let _ = std::process::Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}

#[test]
fn a_cluster_that_stops_answering_fails_commands_and_they_work_again_after() {
    // It stops an OSD: always on a cluster of its own, whatever SCST_CEPH_CONF says.
    let c = PrivateCluster::start();
    // The store's 30 s operation timeout, shortened for the test in the configuration file
    // (which the store reads after setting its defaults, so that users can change them too).
    let short = c.dir.join("short-timeouts.conf");
    let mut text = std::fs::read_to_string(&c.conf).expect("read ceph.conf");
    // No client cache: a READ must ask the OSD, not librbd's memory of the WRITE before.
    text.push_str("\n[client]\nrados osd op timeout = 3\nrbd cache = false\n");
    std::fs::write(&short, text).expect("write the conf");
    let mut opts = RbdOptions::new("rbd", format!("scst-dead-{}", unique()));
    opts.conf = Some(short);
    rbd::create_image(&opts, 16 << 20).expect("rbd create");
    let t = target();
    let d = device(RbdStore::open(&opts).expect("open image"), config());
    t.add_lun(scst::Lun(0), d, false).expect("map");
    let i = LocalInitiator::connect(&t, &format!("iqn.2026-12.rs.scst:rbd-dead-{}", unique()));
    i.clear_unit_attentions(0);
    let data = pattern(30, 8 * BS);
    write(&i, 0, 0, BS, &data);
    write(&i, 0, 12 << 11, BS, &data);

    c.signal_osd(libc::SIGSTOP);
    let t0 = std::time::Instant::now();
    // An object that exists (librbd's object map does not answer for it): the OSD must.
    let mut buf = vec![0u8; 8 * BS];
    let o = i.execute(0, &cdb16(READ16, 0, 12 << 11, 8), &[], &mut buf);
    assert_check(&o, 0x03, 0x11, 0x00); // UNRECOVERED READ ERROR, not a hang
    // A write with FUA must reach the OSD too.
    let cdb = cdb16(WRITE16, 0x08, 8 << 11, 8); // FUA
    let o = i.execute(0, &cdb, &data, &mut []);
    assert_check(&o, 0x03, 0x0c, 0x00); // WRITE ERROR
    let waited = t0.elapsed();
    assert!(waited < std::time::Duration::from_secs(40), "the commands failed after {waited:?}");

    c.signal_osd(libc::SIGCONT);
    // The OSD answers again: the same commands succeed, the data written before is there.
    let t1 = std::time::Instant::now();
    loop {
        let mut buf = vec![0u8; 8 * BS];
        let o = i.execute(0, &cdb16(READ16, 0, 0, 8), &[], &mut buf);
        if o.is_good() {
            assert!(buf == data, "the data written before the outage");
            break;
        }
        assert!(t1.elapsed() < std::time::Duration::from_secs(60), "no recovery: {o:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let o = i.execute(0, &cdb, &data, &mut []);
    assert_good(&o);
    drop(i);
    drop(t);
    let _ = rbd::remove_image(&opts);
}
