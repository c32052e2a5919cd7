//! Submissions inside a [`scst::batch`] enter io_uring once, at the end of the batch: the
//! commands started in it reach the device only then, and all of them complete with their data
//! on disk. Alone in its test binary: the ring is process-wide and another test's
//! `io_uring_enter` would submit this test's queued entries early.

#[macro_use]
mod common;

use std::io::Read;
use std::time::Duration;

use common::*;
use scst::ScsiStatus;
use scst_backends::{AioMode, FileOptions, FileStore, io_uring_available, io_uring_enters, io_uring_submitted};
use scst_local::LocalInitiator;

#[test]
fn commands_started_in_a_batch_enter_the_ring_once_at_its_end() {
    if !io_uring_available() {
        eprintln!("io_uring unavailable here: nothing to batch");
        return;
    }
    let f = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).expect("temp file");
    let opts = FileOptions { size: Some(4 << 20), direct: true, aio: AioMode::Uring, ..FileOptions::default() };
    let store = FileStore::open(f.path(), opts).expect("open");
    assert_eq!(store.io_path(), "io_uring");
    let t = target();
    t.add_lun(scst::Lun(0), device(store, config()), false).expect("map");
    let i = LocalInitiator::connect(&t, &format!("iqn.2026-12.rs.scst:batch-{}", unique()));
    i.clear_unit_attentions(0);
    let n = 16u64;
    let data: Vec<Vec<u8>> = (0..n).map(|k| pattern(200 + k as u32, 4096)).collect();

    // One I/O first, so that the ring's completion thread is up and waiting: each of its waits
    // also submits whatever is queued, and a first wait still to come would submit the batch's
    // WRITEs early on a loaded machine.
    let mut one = vec![0u8; 4096];
    assert_eq!(i.execute(0, &cdb16(READ16, 0, 0, 8), &[], &mut one).status, ScsiStatus::GOOD);
    std::thread::sleep(Duration::from_millis(50));
    let (sub0, ent0) = (io_uring_submitted().expect("ring"), io_uring_enters().expect("ring"));
    let batch = scst::batch::begin();
    for (k, d) in data.iter().enumerate() {
        i.start(0, &cdb16(WRITE16, 0, k as u64 * 8, 8), d, 0, k as u64).expect("queue");
    }
    assert_eq!(io_uring_submitted().expect("ring"), sub0 + n, "every WRITE went to the ring");
    std::thread::sleep(Duration::from_millis(100));
    assert!(i.try_completion().is_none(), "a WRITE completed before the batch entered the ring");
    assert_eq!(io_uring_enters().expect("ring"), ent0, "entered the ring inside the batch");
    drop(batch);
    assert_eq!(io_uring_enters().expect("ring"), ent0 + 1, "one enter for the whole batch");
    for _ in 0..n {
        let c = i.next_completion();
        assert_eq!(c.status(), ScsiStatus::GOOD, "{c:?}");
    }
    let mut disk = Vec::new();
    std::fs::File::open(f.path()).expect("open").read_to_end(&mut disk).expect("read");
    for (k, d) in data.iter().enumerate() {
        assert_eq!(&disk[k * 4096..(k + 1) * 4096], &d[..], "WRITE {k} on disk");
    }

    // Outside a batch every submission enters at once.
    let ent1 = io_uring_enters().expect("ring");
    for (k, d) in data.iter().enumerate().take(4) {
        i.start(0, &cdb16(WRITE16, 0, k as u64 * 8, 8), d, 0, k as u64).expect("queue");
        let c = i.next_completion();
        assert_eq!(c.status(), ScsiStatus::GOOD, "{c:?}");
    }
    assert_eq!(io_uring_enters().expect("ring"), ent1 + 4);
}
