//! A thread that made the `scst::wait` promise gets an io_uring of its own: its READs and WRITEs
//! complete on it, while it waits in `scst::wait::wait_readable`, not on the shared completion
//! thread; past the local ring's 128 slots the rest goes to the shared ring and completes on
//! its own; the end of the promise completes what is still in flight. Alone in its test
//! binary: the shared ring and its counters are process-wide.

#[macro_use]
mod common;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;
use scst::ScsiStatus;
use scst_backends::{AioMode, FileOptions, FileStore, io_uring_available};
use scst_local::LocalInitiator;

/// The local ring's slots (`LOCAL_SLOTS` in scst-backends' uring.rs).
const LOCAL_SLOTS: usize = 128;

fn setup() -> Option<(tempfile::NamedTempFile, LocalInitiator)> {
    if !io_uring_available() {
        eprintln!("io_uring unavailable here: nothing to test");
        return None;
    }
    let f = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).expect("temp file");
    let opts = FileOptions { size: Some(4 << 20), direct: true, aio: AioMode::Uring, ..FileOptions::default() };
    let store = FileStore::open(f.path(), opts).expect("open");
    let t = target();
    t.add_lun(scst::Lun(0), device(store, config()), false).expect("map");
    let i = LocalInitiator::connect(&t, &format!("iqn.2026-12.rs.scst:local-ring-{}", unique()));
    i.clear_unit_attentions(0);
    Some((f, i))
}

fn drain_completions(i: &LocalInitiator) -> usize {
    let mut n = 0;
    while let Some(c) = i.try_completion() {
        assert_eq!(c.status(), ScsiStatus::GOOD, "{c:?}");
        n += 1;
    }
    n
}

#[test]
fn io_completes_on_the_thread_that_waits_for_it() {
    let Some((f, i)) = setup() else { return };
    // Nothing ever arrives on this pipe: the wait ends because the thread's I/O is done.
    let (rd, _wr) = std::io::pipe().expect("pipe");
    let n = LOCAL_SLOTS + 72;
    let data: Vec<Vec<u8>> = (0..n).map(|k| pattern(500 + k as u32, 4096)).collect();
    let promise = scst::wait::enable();
    for (k, d) in data.iter().enumerate() {
        i.start(0, &cdb16(WRITE16, 0, k as u64 * 8, 8), d, 0, k as u64).expect("queue");
    }
    // The shared ring's completion thread finishes what overflowed; the thread's own 128 wait
    // for it to collect them.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(drain_completions(&i), n - LOCAL_SLOTS, "only the WRITEs past the local slots completed elsewhere");
    scst::wait::wait_readable(rd.as_raw_fd());
    assert_eq!(drain_completions(&i), LOCAL_SLOTS, "the wait completed the thread's own WRITEs");
    drop(promise);
    let mut disk = Vec::new();
    std::fs::File::open(f.path()).expect("open").read_to_end(&mut disk).expect("read");
    for (k, d) in data.iter().enumerate() {
        assert_eq!(&disk[k * 4096..(k + 1) * 4096], &d[..], "WRITE {k} on disk");
    }

    // READs back the same way, their data intact.
    let promise = scst::wait::enable();
    for k in 0..16u64 {
        i.start(0, &cdb16(READ16, 0, k * 8, 8), &[], 4096, k).expect("queue");
    }
    scst::wait::wait_readable(rd.as_raw_fd());
    let mut seen = 0;
    while let Some(c) = i.try_completion() {
        assert_eq!(c.status(), ScsiStatus::GOOD, "{c:?}");
        let k = c.fabric_cookie as usize;
        let mut iov = scst::sgv::empty_io_slices();
        let nseg = c.data_in_slices(0, c.data_in_len(), &mut iov);
        let got: Vec<u8> = iov[..nseg].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(got, data[k], "READ {k}");
        seen += 1;
    }
    assert_eq!(seen, 16);
    drop(promise);

    // Without the promise the shared ring serves the thread: completions arrive by themselves.
    for (k, d) in data.iter().enumerate().take(8) {
        i.start(0, &cdb16(WRITE16, 0, k as u64 * 8, 8), d, 0, k as u64).expect("queue");
    }
    for _ in 0..8 {
        assert_eq!(i.next_completion().status(), ScsiStatus::GOOD);
    }
}

#[test]
fn the_end_of_the_promise_completes_what_is_in_flight() {
    let Some((f, i)) = setup() else { return };
    let promise = scst::wait::enable();
    let d = pattern(77, 4096);
    for k in 0..32u64 {
        i.start(0, &cdb16(WRITE16, 0, k * 8, 8), &d, 0, k).expect("queue");
    }
    drop(promise);
    assert_eq!(drain_completions(&i), 32, "every WRITE completed when the promise ended");
    let mut disk = Vec::new();
    std::fs::File::open(f.path()).expect("open").read_to_end(&mut disk).expect("read");
    for k in 0..32 {
        assert_eq!(&disk[k * 4096..(k + 1) * 4096], &d[..], "WRITE {k} on disk");
    }
}
