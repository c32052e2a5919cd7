//! FILEIO and BLOCKIO through io_uring (`AioMode::Uring`): bytes on disk, many commands in
//! flight at once, short files, a device that ends early, and the fallback where io_uring is
//! refused. Every test first checks that the ring really carried the I/O (its submission count
//! moved), so none of them passes on the worker path by accident.

#[macro_use]
mod common;

use std::io::{Read, Seek, SeekFrom};

use common::*;
use scst::{ScsiStatus, Target};
use scst_backends::{
    AioMode, BlockDevStore, FileOptions, FileStore, OpenError, io_uring_available, io_uring_submitted,
};
use scst_local::LocalInitiator;

/// A temporary file on a disk file system (cargo's target directory: /tmp may be tmpfs, where
/// FILEIO runs inline).
fn disk_file() -> tempfile::NamedTempFile {
    tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).expect("temp file")
}

/// Where io_uring is unavailable the tests check the refusal and fallback instead.
fn uring_or_fallback() -> bool {
    if io_uring_available() {
        return true;
    }
    eprintln!("io_uring unavailable here: checking the fallback only");
    let f = disk_file();
    let opts = FileOptions { size: Some(1 << 20), aio: AioMode::Uring, ..FileOptions::default() };
    assert!(matches!(FileStore::open(f.path(), opts), Err(OpenError::NoUring)));
    let s = FileStore::open(f.path(), FileOptions { aio: AioMode::Auto, ..opts }).expect("auto falls back");
    assert!(matches!(s.io_path(), "threads" | "inline"));
    false
}

fn lun(store: FileStore) -> (std::sync::Arc<Target>, LocalInitiator) {
    let t = target();
    t.add_lun(scst::Lun(0), device(store, config()), false).expect("map");
    let i = LocalInitiator::connect(&t, &format!("iqn.2026-12.rs.scst:uring-{}", unique()));
    i.clear_unit_attentions(0);
    (t, i)
}

fn file_bytes(path: &std::path::Path, off: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(path).expect("open backing file");
    f.seek(SeekFrom::Start(off)).expect("seek");
    let mut v = vec![0; len];
    f.read_exact(&mut v).expect("read backing file");
    v
}

#[test]
fn fileio_over_io_uring_lands_on_disk() {
    if !uring_or_fallback() {
        return;
    }
    for opts in [
        FileOptions::default(),
        FileOptions { direct: true, ..FileOptions::default() },
        FileOptions { direct: true, block_size: 4096, ..FileOptions::default() },
        FileOptions { write_through: true, ..FileOptions::default() },
    ] {
        let f = disk_file();
        let opts = FileOptions { size: Some(16 << 20), aio: AioMode::Uring, ..opts };
        let store = FileStore::open(f.path(), opts).expect("open");
        assert_eq!(store.io_path(), "io_uring", "{opts:?}");
        let bs = opts.block_size as usize;
        let (_t, i) = lun(store);
        let before = io_uring_submitted().expect("the ring exists");
        // 1 MiB spans many SGV segments; a single block is the small case.
        let big = pattern(31, 1 << 20);
        write(&i, 0, 8, bs, &big);
        let one = pattern(32, bs);
        write(&i, 0, 3, bs, &one);
        assert_good(&i.execute(0, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut []));
        assert_eq!(file_bytes(f.path(), 8 * bs as u64, big.len()), big, "{opts:?}: WRITE on disk");
        assert_eq!(file_bytes(f.path(), 3 * bs as u64, bs), one, "{opts:?}");
        assert_eq!(read(&i, 0, 8, bs, (big.len() / bs) as u32), big, "{opts:?}: READ back");
        assert_eq!(read(&i, 0, 3, bs, 1), one, "{opts:?}");
        let after = io_uring_submitted().expect("the ring exists");
        // Buffered reads may come from the page cache on the connection's thread; the writes
        // and the flush cannot.
        assert!(after >= before + 3, "{opts:?}: the ring carried the I/O ({before} -> {after})");
    }
}

#[test]
fn many_commands_in_flight_at_once() {
    if !uring_or_fallback() {
        return;
    }
    let f = disk_file();
    let opts = FileOptions { size: Some(8 << 20), direct: true, aio: AioMode::Uring, ..FileOptions::default() };
    let (_t, i) = lun(FileStore::open(f.path(), opts).expect("open"));
    let bs = 512;
    let n = 48u64;
    let chunk = 16 * 4096;
    let data: Vec<Vec<u8>> = (0..n).map(|k| pattern(100 + k as u32, chunk)).collect();
    for (k, d) in data.iter().enumerate() {
        let lba = k as u64 * (chunk / bs) as u64;
        i.start(0, &cdb16(WRITE16, 0, lba, (chunk / bs) as u32), d, 0, k as u64).expect("queue");
    }
    let mut seen = vec![false; n as usize];
    for _ in 0..n {
        let c = i.next_completion();
        assert_eq!(c.status(), ScsiStatus::GOOD, "{c:?}");
        seen[c.fabric_cookie as usize] = true;
    }
    assert!(seen.iter().all(|s| *s));
    for k in 0..n {
        let lba = k * (chunk / bs) as u64;
        i.start(0, &cdb16(READ16, 0, lba, (chunk / bs) as u32), &[], chunk as u32, k).expect("queue");
    }
    for _ in 0..n {
        let c = i.next_completion();
        assert_eq!(c.status(), ScsiStatus::GOOD, "{c:?}");
        let mut got = vec![0u8; chunk];
        let mut sl = [std::io::IoSlice::new(&[]); scst::sgv::MAX_SEGS];
        let m = c.data_in_slices(0, chunk, &mut sl);
        let mut at = 0;
        for s in &sl[..m] {
            got[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        }
        assert_eq!(at, chunk);
        assert_eq!(got, data[c.fabric_cookie as usize], "read {} back", c.fabric_cookie);
    }
}

#[test]
fn a_file_that_shrank_reads_zeros_past_its_end() {
    if !uring_or_fallback() {
        return;
    }
    let f = disk_file();
    let opts = FileOptions { size: Some(1 << 20), aio: AioMode::Uring, ..FileOptions::default() };
    let (_t, i) = lun(FileStore::open(f.path(), opts).expect("open"));
    let data = pattern(40, 64 * 512);
    write(&i, 0, 0, 512, &data);
    // Behind the target's back: the file now ends after 16 blocks; the LU still has 2048.
    f.as_file().set_len(16 * 512).expect("truncate");
    let got = read(&i, 0, 0, 512, 64);
    assert_eq!(got[..16 * 512], data[..16 * 512]);
    assert!(got[16 * 512..].iter().all(|b| *b == 0), "past the end reads as zeros");
}

#[test]
fn a_device_that_ended_early_is_a_medium_error() {
    if !uring_or_fallback() || !loop_available() {
        return;
    }
    let f = disk_file();
    f.as_file().set_len(4 << 20).expect("size");
    let l = LoopDev::attach(f.path(), 512);
    let store = BlockDevStore::open_with(&l.path, false, false, AioMode::Uring).expect("open loop device");
    assert_eq!(store.io_path(), "io_uring");
    let t = target();
    t.add_lun(scst::Lun(0), device(store, config()), false).expect("map");
    let i = LocalInitiator::connect(&t, "iqn.2026-12.rs.scst:uring-blk");
    i.clear_unit_attentions(0);
    let data = pattern(41, 8 * 4096);
    write(&i, 0, 100, 512, &data);
    assert_eq!(read(&i, 0, 100, 512, 64), data);
    // The device shrinks under the LU (its capacity is not rescanned): reading what is gone
    // reaches the end of the device.
    f.as_file().set_len(1 << 20).expect("shrink");
    l.refresh_capacity();
    let mut buf = vec![0u8; 64 * 512];
    let o = i.execute(0, &cdb16(READ16, 0, 4096, 64), &[], &mut buf);
    assert_check(&o, 0x03, 0x11, 0x00);
    assert_eq!(read(&i, 0, 100, 512, 64), data, "what is left still reads");
}

#[test]
fn threads_mode_keeps_the_worker_path() {
    let f = disk_file();
    let opts = FileOptions { size: Some(1 << 20), aio: AioMode::Threads, ..FileOptions::default() };
    let store = FileStore::open(f.path(), opts).expect("open");
    assert_eq!(store.io_path(), "threads");
    let (_t, i) = lun(store);
    let data = pattern(42, 8192);
    write(&i, 0, 1, 512, &data);
    assert_good(&i.execute(0, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut []));
    assert_eq!(file_bytes(f.path(), 512, data.len()), data);
}
