//! The same SCSI behaviour over every backend (RAM, NULLIO, FILEIO on a temporary file, BLOCKIO
//! on a loop device), 512- and 4096-byte blocks; data landing in the backing object; capacity
//! changes; huge NULLIO LUNs; many commands in flight; the buffer memory limit.

#[macro_use]
mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};

use common::*;
use scst::{ScsiStatus, SgvConfig, TaskAttr};
use scst_backends::{FileOptions, FileStore, NullStore};
use scst_local::LocalInitiator;

per_backend!(conformance_512, conformance_512);
per_backend!(conformance_4096, conformance_4096);

fn conformance_512(b: Backend) {
    conformance(b, 512, 4096);
}

fn conformance_4096(b: Backend) {
    conformance(b, 4096, 512);
}

/// Reads `len` bytes of the rig's backing file at `off` (FILEIO, BLOCKIO).
fn backing_bytes(r: &Rig, off: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(r.file.as_ref().expect("backing file").path()).expect("open backing file");
    f.seek(SeekFrom::Start(off)).expect("seek");
    let mut v = vec![0u8; len];
    f.read_exact(&mut v).expect("read backing file");
    v
}

fn conformance(b: Backend, bs: u32, blocks: u64) {
    let r = Rig::new(b, blocks, bs);
    let i = r.login();
    let bsz = bs as usize;
    let last = blocks - 1;
    assert_good(&i.execute(0, &TUR, &[], &mut []));

    // Identity and capacity.
    let inq = data_in_ok(&i, 0, &inquiry_cdb(false, 0, 96), 96);
    let product = match b {
        Backend::Ram => "RAMDISK",
        Backend::Null => "NULLIO",
        Backend::File => "FILEIO",
        Backend::Block => "BLOCKIO",
    };
    assert_eq!(String::from_utf8_lossy(&inq[16..32]).trim_end(), product);
    let mut rc10 = (last as u32).to_be_bytes().to_vec();
    rc10.extend(bs.to_be_bytes());
    assert_eq!(data_in_ok(&i, 0, &[READ_CAPACITY10, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8), rc10);
    let rc16 = data_in_ok(&i, 0, &read_capacity16(32), 32);
    assert_eq!((be64(&rc16, 0), be32(&rc16, 8)), (last, bs));
    let b1 = data_in_ok(&i, 0, &inquiry_cdb(true, 0xb1, 64), 64);
    let rotation = if matches!(b, Backend::Ram | Backend::Null) { 1 } else { 0 };
    assert_eq!(be16(&b1, 4), rotation, "medium rotation rate");
    let bd = data_in_ok(&i, 0, &mode_sense6(false, 0, 0x08, 0, 255), 255);
    let mut want = (blocks as u32).to_be_bytes().to_vec();
    want.extend(bs.to_be_bytes());
    want[4] = 0; // density code
    assert_eq!(bd[4..12], want[..], "block descriptor");

    // Round trips with every READ and WRITE at the first and last LBA.
    let mut seed = 0;
    for wop in [WRITE6, WRITE10, WRITE12, WRITE16] {
        for rop in [READ6, READ10, READ12, READ16] {
            for lba in [0, last, blocks / 2] {
                seed += 1;
                let data = pattern(seed, bsz);
                assert_good(&i.execute(0, &rw(wop, 0, lba, 1), &data, &mut []));
                let mut back = vec![0xeeu8; bsz];
                assert_good(&i.execute(0, &rw(rop, 0, lba, 1), &[], &mut back));
                let want = if b.keeps_data() { data } else { vec![0u8; bsz] };
                assert!(back == want, "{b:?} write {wop:#x} read {rop:#x} lba {lba}");
            }
        }
    }
    // READ(6)/WRITE(6) of 256 blocks; FUA and DPO.
    let big = pattern(1000, 256 * bsz);
    assert_good(&i.execute(0, &rw6(WRITE6, 1, 0), &big, &mut []));
    let mut back = vec![0xeeu8; big.len()];
    assert_good(&i.execute(0, &rw6(READ6, 1, 0), &[], &mut back));
    assert!(back == if b.keeps_data() { big.clone() } else { vec![0u8; big.len()] });
    let data = pattern(1001, 3 * bsz);
    assert_good(&i.execute(0, &cdb16(WRITE16, 0x18, 8, 3), &data, &mut []));
    let expect = if b.keeps_data() { data.clone() } else { vec![0u8; data.len()] };
    let mut back = vec![0u8; data.len()];
    assert_good(&i.execute(0, &cdb10(READ10, 0x18, 8, 3), &[], &mut back));
    assert_eq!(back, expect);

    // VERIFY against the medium; WRITE AND VERIFY.
    assert_good(&i.execute(0, &cdb10(VERIFY10, 0x00, 8, 3), &[], &mut []));
    assert_good(&i.execute(0, &cdb10(VERIFY10, 0x02, 8, 3), &expect, &mut []));
    let mut bad = expect.clone();
    bad[bsz + 17] ^= 0x81;
    let o = i.execute(0, &cdb16(VERIFY16, 0x02, 8, 3), &bad, &mut []);
    assert_check(&o, 0x0e, 0x1d, 0x00);
    assert_eq!(information(o.sense()), Some(bsz as u64 + 17));
    let wv = pattern(1002, 2 * bsz);
    assert_good(&i.execute(0, &cdb12(WRITE_VERIFY12, 0x02, 20, 2), &wv, &mut []));
    let got = read(&i, 0, 20, bsz, 2);
    assert_eq!(got, if b.keeps_data() { wv.clone() } else { vec![0u8; wv.len()] });

    // Cache commands.
    assert_good(&i.execute(0, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut []));
    assert_good(&i.execute(0, &cdb16(SYNC_CACHE16, 0x02, last, 1), &[], &mut []));
    assert_good(&i.execute(0, &cdb10(PREFETCH10, 0, 0, 16), &[], &mut []));
    assert_good(&i.execute(0, &cdb16(PREFETCH16, 0x02, last, 1), &[], &mut []));

    // Range checks.
    assert_oob(&i.execute(0, &cdb16(READ16, 0, blocks, 1), &[], &mut vec![0u8; bsz]));
    assert_oob(&i.execute(0, &cdb16(WRITE16, 0, last, 2), &vec![0u8; 2 * bsz], &mut []));
    assert_oob(&i.execute(0, &cdb16(READ16, 0, u64::MAX, 256), &[], &mut []));
    assert_oob(&i.execute(0, &cdb10(SYNC_CACHE10, 0, blocks as u32, 0), &[], &mut []));

    // A short Data-Out: only the whole blocks sent are written.
    if b.keeps_data() {
        let before = read(&i, 0, 30, bsz, 2);
        let one = pattern(1003, bsz);
        let o = i.execute(0, &cdb10(WRITE10, 0, 30, 2), &one, &mut []);
        assert_good(&o);
        assert_eq!(o.residual, (true, bs));
        let after = read(&i, 0, 30, bsz, 2);
        assert_eq!(after[..bsz], one[..]);
        assert_eq!(after[bsz..], before[bsz..]);
    }

    // The data is in the backing file.
    if matches!(b, Backend::File | Backend::Block) {
        let data = pattern(1004, 4 * bsz);
        write(&i, 0, last - 3, bsz, &data);
        assert_good(&i.execute(0, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut []));
        assert_eq!(backing_bytes(&r, (last - 3) * u64::from(bs), data.len()), data);
        assert_eq!(backing_bytes(&r, 20 * u64::from(bs), wv.len()), wv);
    }
}

#[test]
fn fileio_serves_existing_file_contents() {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    let content = pattern(2000, 64 * 512);
    f.write_all(&content).expect("fill");
    f.flush().expect("flush");
    let store = FileStore::open(f.path(), FileOptions::default()).expect("open existing");
    let t = target();
    t.add_lun(scst::Lun(0), device(store, config()), false).expect("map");
    let i = LocalInitiator::connect(&t, "iqn.2026-01.rs.scst:existing");
    i.clear_unit_attentions(0);
    assert_eq!(be64(&data_in_ok(&i, 0, &read_capacity16(32), 32), 0), 63);
    assert_eq!(read(&i, 0, 0, 512, 64), content);
}

#[test]
fn fileio_size_comes_from_the_file() {
    // An existing file larger than the requested size is not shrunk; a tail that is not a whole
    // block is not part of the medium.
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(&pattern(2200, 128 * 512 + 100)).expect("fill");
    f.flush().expect("flush");
    let opts = FileOptions { size: Some(32 * 512), ..FileOptions::default() };
    let store = FileStore::open(f.path(), opts).expect("open");
    let t = target();
    t.add_lun(scst::Lun(0), device(store, config()), false).expect("map");
    let i = LocalInitiator::connect(&t, "iqn.2026-01.rs.scst:size");
    i.clear_unit_attentions(0);
    assert_eq!(be64(&data_in_ok(&i, 0, &read_capacity16(32), 32), 0), 127);
    assert_eq!(std::fs::metadata(f.path()).expect("stat").len(), 128 * 512 + 100);
    assert_eq!(read(&i, 0, 127, 512, 1), pattern(2200, 128 * 512 + 100)[127 * 512..128 * 512]);
}

#[test]
fn fileio_write_through_and_direct_io() {
    for opts in [
        FileOptions { write_through: true, ..FileOptions::default() },
        FileOptions { direct: true, ..FileOptions::default() },
        FileOptions { direct: true, block_size: 4096, ..FileOptions::default() },
        FileOptions { thin: true, ..FileOptions::default() },
    ] {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        let size = 1 << 20;
        let store = FileStore::open(f.path(), FileOptions { size: Some(size), ..opts }).expect("open");
        let bs = opts.block_size as usize;
        let t = target();
        t.add_lun(scst::Lun(0), device(store, config()), false).expect("map");
        let i = LocalInitiator::connect(&t, "iqn.2026-01.rs.scst:opts");
        i.clear_unit_attentions(0);
        // Aligned (direct) and unaligned (buffered) transfers see each other's data.
        let aligned = pattern(2100, 8192);
        write(&i, 0, (8192 / bs) as u64, bs, &aligned);
        if bs == 512 {
            let small = pattern(2101, 512);
            write(&i, 0, 17, 512, &small);
            let d = read(&i, 0, 16, 512, 16);
            assert_eq!(d[..512], aligned[..512], "{opts:?}");
            assert_eq!(d[512..1024], small[..], "{opts:?}");
            assert_eq!(d[1024..], aligned[1024..], "{opts:?}");
        } else {
            assert_eq!(read(&i, 0, 2, bs, 2), aligned, "{opts:?}");
        }
        assert_good(&i.execute(0, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut []));
        let mut on_disk = vec![0u8; 8192];
        let mut fh = std::fs::File::open(f.path()).expect("reopen");
        fh.seek(SeekFrom::Start(8192)).expect("seek");
        fh.read_exact(&mut on_disk).expect("read");
        if bs == 512 {
            assert_eq!(on_disk[512..1024], pattern(2101, 512)[..], "{opts:?}");
        } else {
            assert_eq!(on_disk, aligned, "{opts:?}");
        }
        assert_eq!(std::fs::metadata(f.path()).expect("stat").len(), size);
    }
}

// ------------------------------------------------------------------------------------------------
// Store errors
// ------------------------------------------------------------------------------------------------

/// A RAM store that fails reads of one block, writes with a given errno, and flushes on demand.
struct FailingStore {
    inner: scst_backends::RamStore,
    bad_read_block: u64,
    write_errno: AtomicI32,
    fail_flush: AtomicBool,
}

impl scst::BlockStore for FailingStore {
    fn geometry(&self) -> scst::Geometry {
        self.inner.geometry()
    }

    fn caps(&self) -> scst::StoreCaps {
        self.inner.caps()
    }

    fn product(&self) -> &str {
        "FAILING"
    }

    fn read_at(&self, off: u64, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<()> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        let bad = self.bad_read_block * 512;
        if off <= bad && bad < off + len as u64 {
            return Err(std::io::Error::from_raw_os_error(EIO));
        }
        self.inner.read_at(off, bufs)
    }

    fn write_at(&self, off: u64, bufs: &[std::io::IoSlice<'_>], fua: bool) -> std::io::Result<()> {
        match self.write_errno.load(SeqCst) {
            0 => self.inner.write_at(off, bufs, fua),
            e => Err(std::io::Error::from_raw_os_error(e)),
        }
    }

    fn flush(&self) -> std::io::Result<()> {
        if self.fail_flush.load(SeqCst) { Err(std::io::Error::from_raw_os_error(EIO)) } else { Ok(()) }
    }
}

/// Linux errno values.
const EIO: i32 = 5;
const ENOSPC: i32 = 28;

#[test]
fn store_errors_become_medium_errors() {
    let store = FailingStore {
        inner: scst_backends::RamStore::new(1 << 20, 512).expect("ram"),
        bad_read_block: 100,
        write_errno: AtomicI32::new(0),
        fail_flush: AtomicBool::new(false),
    };
    let disk = scst::Disk::new(store);
    let t = target();
    t.add_lun(scst::Lun(0), scst::Device::new(config(), disk.clone()).expect("device"), false).expect("map");
    let i = LocalInitiator::connect(&t, "iqn.2026-01.rs.scst:failing");
    i.clear_unit_attentions(0);
    // An unreadable block: MEDIUM ERROR / UNRECOVERED READ ERROR, INFORMATION = the LBA.
    assert_eq!(read(&i, 0, 99, 512, 1), vec![0u8; 512]);
    let o = i.execute(0, &cdb10(READ10, 0, 100, 1), &[], &mut [0; 512]);
    assert_check(&o, 0x03, 0x11, 0x00);
    assert_eq!(information(o.sense()), Some(100));
    // Medium verification reads it too.
    let o = i.execute(0, &cdb10(VERIFY10, 0, 100, 1), &[], &mut []);
    assert_check(&o, 0x03, 0x11, 0x00);
    assert_eq!(information(o.sense()), Some(100));
    // Write errors: MEDIUM ERROR / WRITE ERROR with the LBA; ENOSPC is a thin store out of
    // space: DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT.
    disk.store().write_errno.store(EIO, SeqCst);
    let o = i.execute(0, &cdb10(WRITE10, 0, 7, 1), &[1; 512], &mut []);
    assert_check(&o, 0x03, 0x0c, 0x00);
    assert_eq!(information(o.sense()), Some(7));
    disk.store().write_errno.store(ENOSPC, SeqCst);
    let o = i.execute(0, &cdb16(WRITE16, 0x08, 8, 1), &[1; 512], &mut []);
    assert_check(&o, 0x07, 0x27, 0x07);
    disk.store().write_errno.store(0, SeqCst);
    write(&i, 0, 7, 512, &[2; 512]);
    // A failed cache flush.
    disk.store().fail_flush.store(true, SeqCst);
    assert_check(&i.execute(0, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut []), 0x03, 0x0c, 0x00);
    disk.store().fail_flush.store(false, SeqCst);
    assert_good(&i.execute(0, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut []));
    // The device counts its errors: the five above and the unit attention the login cleared
    // (the core's answers count as well as the handler's).
    let dev = &t.luns()[&scst::Lun(0)].dev;
    assert_eq!(dev.stats().errors.load(SeqCst), 6);
    assert_eq!(dev.stats().io.error_kinds.sense_keys[3].load(SeqCst), 4, "MEDIUM ERROR");
    assert_eq!(dev.stats().io.error_kinds.sense_keys[7].load(SeqCst), 1, "DATA PROTECT");
    assert_eq!(dev.stats().io.error_kinds.sense_keys[6].load(SeqCst), 1, "UNIT ATTENTION");
}

// ------------------------------------------------------------------------------------------------
// Capacity changes
// ------------------------------------------------------------------------------------------------

#[test]
fn fileio_resize_and_rescan_reports_capacity_change() {
    let r = Rig::new(Backend::File, 2048, 512);
    let a = r.login();
    let b = r.login();
    assert!(!r.dev.rescan(), "nothing changed yet");
    assert_good(&a.execute(0, &TUR, &[], &mut []));
    // Grow the file behind the device's back, then rescan.
    r.file.as_ref().expect("file").as_file().set_len(4096 * 512).expect("grow");
    assert!(r.dev.rescan());
    for i in [&a, &b] {
        assert_ua(&i.execute(0, &TUR, &[], &mut []), 0x2a, 0x09);
        assert_good(&i.execute(0, &TUR, &[], &mut []));
    }
    assert_eq!(be64(&data_in_ok(&a, 0, &read_capacity16(32), 32), 0), 4095);
    assert_eq!(data_in_ok(&a, 0, &[READ_CAPACITY10, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8), [0, 0, 0x0f, 0xff, 0, 0, 2, 0]);
    let data = pattern(3000, 512);
    write(&b, 0, 4095, 512, &data);
    assert_eq!(read(&a, 0, 4095, 512, 1), data);
    assert_oob(&a.execute(0, &cdb16(READ16, 0, 4096, 1), &[], &mut [0; 512]));
    // A second rescan finds nothing new and raises nothing.
    assert!(!r.dev.rescan());
    assert_good(&a.execute(0, &TUR, &[], &mut []));
    // A new session sees the new size and only its power-on unit attention.
    let c = r.connect();
    assert_ua(&c.execute(0, &TUR, &[], &mut []), 0x29, 0x00);
    assert_good(&c.execute(0, &TUR, &[], &mut []));
    // Shrinking works the same way.
    r.file.as_ref().expect("file").as_file().set_len(1024 * 512).expect("shrink");
    assert!(r.dev.rescan());
    assert_ua(&c.execute(0, &TUR, &[], &mut []), 0x2a, 0x09);
    assert_eq!(be64(&data_in_ok(&c, 0, &read_capacity16(32), 32), 0), 1023);
    assert_oob(&c.execute(0, &cdb16(READ16, 0, 1024, 1), &[], &mut [0; 512]));
    assert_good(&c.execute(0, &cdb16(READ16, 0, 1023, 1), &[], &mut [0; 512]));
}

#[test]
fn blockio_resize_and_rescan_reports_capacity_change() {
    if !loop_available() {
        return;
    }
    let r = Rig::new(Backend::Block, 2048, 512);
    let a = r.login();
    r.file.as_ref().expect("file").as_file().set_len(3072 * 512).expect("grow");
    r.loopdev.as_ref().expect("loop device").refresh_capacity();
    assert!(r.dev.rescan());
    assert_ua(&a.execute(0, &TUR, &[], &mut []), 0x2a, 0x09);
    assert_eq!(be64(&data_in_ok(&a, 0, &read_capacity16(32), 32), 0), 3071);
    let data = pattern(3001, 512);
    write(&a, 0, 3071, 512, &data);
    assert_eq!(read(&a, 0, 3071, 512, 1), data);
}

// ------------------------------------------------------------------------------------------------
// NULLIO of more than 2^32 blocks
// ------------------------------------------------------------------------------------------------

#[test]
fn nullio_huge_lun() {
    let blocks: u64 = 1 << 33;
    let t = target();
    t.add_lun(scst::Lun(0), device(NullStore::new(blocks * 512, 512).expect("null"), config()), false).expect("map");
    let i = LocalInitiator::connect(&t, "iqn.2026-01.rs.scst:huge");
    i.clear_unit_attentions(0);
    // READ CAPACITY(10) cannot express it.
    assert_eq!(
        data_in_ok(&i, 0, &[READ_CAPACITY10, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8),
        [0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0]
    );
    let rc16 = data_in_ok(&i, 0, &read_capacity16(32), 32);
    assert_eq!(be64(&rc16, 0), blocks - 1);
    assert_eq!(be32(&rc16, 8), 512);
    // Block descriptors: FFFFFFFFh in the short one, the real count in the long one.
    let d = data_in_ok(&i, 0, &mode_sense6(false, 0, 0x01, 0, 255), 255);
    assert_eq!(&d[4..12], &[0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0]);
    let d = data_in_ok(&i, 0, &mode_sense10(false, true, 0, 0x01, 0, 255), 255);
    assert_eq!(be64(&d, 8), blocks);
    // The whole range is addressable with 16-byte CDBs; 10-byte ones reach their maximum.
    assert_eq!(read(&i, 0, blocks - 1, 512, 1), vec![0u8; 512]);
    assert_eq!(read(&i, 0, u64::from(u32::MAX), 512, 2), vec![0u8; 1024]);
    assert_good(&i.execute(0, &cdb10(READ10, 0, u32::MAX, 1), &[], &mut [0; 512]));
    write(&i, 0, blocks - 8, 512, &pattern(4000, 8 * 512));
    assert_oob(&i.execute(0, &cdb16(READ16, 0, blocks, 1), &[], &mut [0; 512]));
    assert_oob(&i.execute(0, &cdb16(READ16, 0, blocks - 1, 2), &[], &mut [0; 1024]));
    // Verification without data reads the medium: up to the maximum transfer length (64 MiB).
    assert_good(&i.execute(0, &cdb16(VERIFY16, 0, 0, 1 << 17), &[], &mut []));
    assert_invalid_cdb(&i.execute(0, &cdb16(VERIFY16, 0, 0, (1 << 17) + 1), &[], &mut []), 10, Some(7));
    assert_good(&i.execute(0, &cdb16(SYNC_CACHE16, 0, blocks - 1, 0), &[], &mut []));
}

// ------------------------------------------------------------------------------------------------
// Many commands in flight
// ------------------------------------------------------------------------------------------------

const PER_THREAD: u64 = 128;

/// Writes then reads back `PER_THREAD` 4 KiB regions with all commands in flight at once.
fn writer_reader(i: &LocalInitiator, base: u64, seed: u32) {
    let bufs: Vec<Vec<u8>> = (0..PER_THREAD).map(|k| pattern(seed + k as u32, 4096)).collect();
    for (k, data) in bufs.iter().enumerate() {
        let cdb = cdb10(WRITE10, 0, (base + 8 * k as u64) as u32, 8);
        i.start(0, &cdb, data, 0, k as u64).expect("start write");
    }
    let mut seen = vec![false; PER_THREAD as usize];
    for _ in 0..PER_THREAD {
        let c = i.next_completion();
        assert_eq!(c.status(), ScsiStatus::GOOD, "{:02x?}", c.sense());
        assert!(!std::mem::replace(&mut seen[c.fabric_cookie as usize], true), "duplicate completion");
    }
    for k in 0..PER_THREAD {
        let cdb = cdb10(READ10, 0, (base + 8 * k) as u32, 8);
        i.start(0, &cdb, &[], 4096, k).expect("start read");
    }
    for _ in 0..PER_THREAD {
        let c = i.next_completion();
        assert_eq!(c.status(), ScsiStatus::GOOD);
        assert_eq!(c.data_in_len(), 4096);
        let mut iov = scst::sgv::empty_io_slices();
        let n = c.data_in_slices(0, 4096, &mut iov);
        let got: Vec<u8> = iov[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert!(got == bufs[c.fabric_cookie as usize], "region {} of thread at {base}", c.fabric_cookie);
    }
}

#[test]
fn fileio_many_commands_in_flight_from_two_threads() {
    let r = Rig::new(Backend::File, 8192, 512);
    let a = r.login();
    let b = r.login();
    std::thread::scope(|s| {
        s.spawn(|| writer_reader(&a, 0, 10_000));
        s.spawn(|| writer_reader(&b, 4096, 20_000));
    });
    // Each thread's data is where it wrote it, seen from the other session.
    assert_eq!(read(&a, 0, 4096, 512, 8), pattern(20_000, 4096));
    assert_eq!(read(&b, 0, 8 * 5, 512, 8), pattern(10_005, 4096));
}

#[test]
fn one_session_submitting_and_completing_on_different_threads() {
    let r = Rig::new(Backend::File, 4096, 512);
    let i = Arc::new(r.login());
    let n = 200u64;
    let collector = {
        let i = i.clone();
        std::thread::spawn(move || {
            let mut got = vec![false; n as usize];
            for _ in 0..n {
                let c = i.next_completion();
                assert_eq!(c.status(), ScsiStatus::GOOD);
                got[c.fabric_cookie as usize] = true;
            }
            got.iter().all(|&g| g)
        })
    };
    for k in 0..n {
        let data = pattern(30_000 + k as u32, 512);
        // Keep within the session's depth: the collector frees slots as it goes.
        while i.start(0, &cdb10(WRITE10, 0, k as u32, 1), &data, 0, k).is_err() {
            std::thread::yield_now();
        }
    }
    assert!(collector.join().expect("collector"));
    for k in [0, 99, 199] {
        assert_eq!(read(&i, 0, k, 512, 1), pattern(30_000 + k as u32, 512));
    }
}

// ------------------------------------------------------------------------------------------------
// Buffer memory limit
// ------------------------------------------------------------------------------------------------

#[test]
fn sgv_memory_limit_answers_busy() {
    let t = target_with_sgv(SgvConfig { max_chunk: 1 << 20, mem_limit: 256 << 10 });
    let r = Rig::build(Backend::Ram, 8192, 512, config(), t.clone());
    let i = r.login();
    let big = pattern(5000, 1 << 20);
    // A 1 MiB write cannot get a buffer: BUSY, no sense, nothing written.
    let o = i.execute(0, &cdb10(WRITE10, 0, 0, 2048), &big, &mut []);
    assert_eq!(o.status, ScsiStatus::BUSY, "{o:?}");
    assert!(o.sense().is_empty());
    assert_eq!(read(&i, 0, 0, 512, 8), vec![0u8; 4096]);
    assert!(t.sgv().stats().limit_failures > 0);
    // Smaller transfers work, and the task set is not left blocked (an ORDERED command runs).
    let small = pattern(5001, 64 << 10);
    write(&i, 0, 0, 512, &small);
    let o = i.execute_attr(0, &cdb10(READ10, 0, 0, 128), &[], &mut vec![0u8; 64 << 10], TaskAttr::Ordered);
    assert_good(&o);
    // A 1 MiB read cannot get a buffer either: BUSY as well.
    let o = i.execute(0, &cdb10(READ10, 0, 0, 2048), &[], &mut vec![0u8; 1 << 20]);
    assert_eq!(o.status, ScsiStatus::BUSY, "{o:?} sense {:02x?}", o.sense());
    assert_eq!(o.data_in_len, 0);
    assert_eq!(read(&i, 0, 0, 512, 128), small);
    // Verifying 1 MiB of medium needs a 1 MiB buffer to read into: BUSY; 64 KiB is fine.
    let o = i.execute(0, &cdb10(VERIFY10, 0, 0, 2048), &[], &mut []);
    assert_eq!(o.status, ScsiStatus::BUSY, "{o:?} sense {:02x?}", o.sense());
    assert_good(&i.execute(0, &cdb10(VERIFY10, 0x02, 0, 128), &small, &mut []));
    assert_good(&i.execute(0, &cdb10(WRITE_VERIFY10, 0x02, 0, 128), &small, &mut []));
    // The limit is the pool's: within it, nothing is left held.
    assert_eq!(t.sgv().stats().bytes_in_use, 0);
}

/// A store that may block, whose reads can be tried without waiting when `cached` is set; it
/// records the thread of every `try_read_at` and `read_at`, and fills reads with `0xc5`.
/// Clones share their state.
#[derive(Clone, Default)]
struct NowaitStore {
    cached: Arc<AtomicBool>,
    tried_on: Arc<parking_lot::Mutex<Vec<std::thread::ThreadId>>>,
    read_on: Arc<parking_lot::Mutex<Vec<std::thread::ThreadId>>>,
}

impl scst::BlockStore for NowaitStore {
    fn geometry(&self) -> scst::Geometry {
        scst::Geometry { block_size: 512, blocks: 1024 }
    }
    fn caps(&self) -> scst::StoreCaps {
        scst::StoreCaps { may_block: true, null: false, rotation_rate: 1, lbppbe: 0, thin: false, async_io: false }
    }
    fn product(&self) -> &str {
        "NOWAIT"
    }
    fn try_read_at(&self, _off: u64, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<bool> {
        self.tried_on.lock().push(std::thread::current().id());
        if !self.cached.load(SeqCst) {
            return Ok(false);
        }
        bufs.iter_mut().for_each(|b| b.fill(0xc5));
        Ok(true)
    }
    fn read_at(&self, _off: u64, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<()> {
        self.read_on.lock().push(std::thread::current().id());
        bufs.iter_mut().for_each(|b| b.fill(0xc5));
        Ok(())
    }
    fn write_at(&self, _off: u64, _bufs: &[std::io::IoSlice<'_>], _fua: bool) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A READ on a store that may block runs on the submitting thread when the store can serve it
/// without waiting (FILEIO: from the page cache), and crosses to a device worker (once) only
/// when it cannot.
#[test]
fn reads_that_need_no_waiting_skip_the_worker() {
    let store = NowaitStore::default();
    store.cached.store(true, SeqCst);
    let target = scst::Target::new("iqn.2026-11.rs.scst:nowait", scst::SgvPool::new(SgvConfig::default()));
    let dev = scst::Device::new(scst::DeviceConfig::new("nowait"), scst::Disk::new(store.clone())).unwrap();
    target.add_lun(scst::Lun(0), dev, false).unwrap();
    let i = LocalInitiator::connect(&target, "iqn.2026-11.rs.scst:reader");
    let _ = i.clear_unit_attentions(0);
    let me = std::thread::current().id();
    let read10 = [0x28, 0, 0, 0, 0, 8, 0, 0, 4, 0];

    let mut buf = vec![0u8; 2048];
    assert!(i.execute(0, &read10, &[], &mut buf).is_good());
    assert!(buf.iter().all(|&b| b == 0xc5));
    assert_eq!(*store.tried_on.lock(), [me], "tried on the submitting thread");
    assert!(store.read_on.lock().is_empty(), "no worker read");

    store.cached.store(false, SeqCst);
    buf.fill(0);
    assert!(i.execute(0, &read10, &[], &mut buf).is_good());
    assert!(buf.iter().all(|&b| b == 0xc5));
    assert_eq!(store.tried_on.lock().len(), 2);
    let read_on = store.read_on.lock().clone();
    assert_eq!(read_on.len(), 1, "one read, by a worker");
    assert_ne!(read_on[0], me, "the blocking read ran on a worker thread");

    // Writes always go to a worker (only reads are tried).
    assert!(i.execute(0, &[0x2a, 0, 0, 0, 0, 8, 0, 0, 1, 0], &[1u8; 512], &mut []).is_good());
    assert_eq!(store.tried_on.lock().len(), 2);
}

/// FILEIO serves a read of cached pages without waiting, with the file's bytes; an `O_DIRECT`
/// store never tries.
#[test]
fn fileio_try_read_serves_the_page_cache() {
    use scst::BlockStore;
    // In the target directory: a disk file system (tmpfs has no RWF_NOWAIT, and /tmp may be one).
    let f = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(f.path(), &data).unwrap();
    let store = FileStore::open(f.path(), FileOptions::default()).unwrap();
    let mut got = vec![0u8; 4096];
    let ok = store.try_read_at(2048, &mut [std::io::IoSliceMut::new(&mut got)]).unwrap();
    assert!(ok, "the file was just written: its pages are cached");
    assert_eq!(got, data[2048..6144]);
    let direct = FileStore::open(f.path(), FileOptions { direct: true, ..FileOptions::default() }).unwrap();
    let ok = direct.try_read_at(0, &mut [std::io::IoSliceMut::new(&mut got)]).unwrap();
    assert!(!ok, "O_DIRECT reads go to the device");
}

/// A FILEIO LUN whose file is in tmpfs never waits for a device: it runs its commands on the
/// submitting thread like a RAM LUN (no worker hand-off), with the same data.
#[test]
fn fileio_in_tmpfs_runs_inline() {
    use scst::BlockStore;
    let f = tempfile::NamedTempFile::new_in("/dev/shm").expect("a file in /dev/shm (tmpfs on Linux)");
    let store = FileStore::open(f.path(), FileOptions { size: Some(1 << 20), ..FileOptions::default() }).unwrap();
    assert!(!store.caps().may_block, "a tmpfs file is memory");
    let on_disk = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let disk = FileStore::open(on_disk.path(), FileOptions { size: Some(1 << 20), ..FileOptions::default() }).unwrap();
    assert!(disk.caps().may_block, "a file on a disk file system may wait for the disk");
    let target = scst::Target::new("iqn.2026-11.rs.scst:tmpfs", scst::SgvPool::new(SgvConfig::default()));
    let dev = scst::Device::new(scst::DeviceConfig::new("tmpfs"), scst::Disk::new(store)).unwrap();
    target.add_lun(scst::Lun(0), dev, false).unwrap();
    let i = LocalInitiator::connect(&target, "iqn.2026-11.rs.scst:tmpfs-user");
    let _ = i.clear_unit_attentions(0);
    let data: Vec<u8> = (0..4096u32).map(|k| (k % 253) as u8).collect();
    assert!(i.execute(0, &[0x2a, 0, 0, 0, 0, 16, 0, 0, 8, 0], &data, &mut []).is_good());
    let mut back = vec![0u8; 4096];
    assert!(i.execute(0, &[0x28, 0, 0, 0, 0, 16, 0, 0, 8, 0], &[], &mut back).is_good());
    assert_eq!(back, data);
    assert_eq!(std::fs::read(f.path()).unwrap()[16 * 512..24 * 512], data[..], "the bytes are in the file");
}
