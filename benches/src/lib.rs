//! Shared fixtures for the scst-rs benchmarks.
//!
//! Each bench binary under `benches/` builds its targets, initiators and CDBs through this
//! library, so that figures from different files measure the same setup. A new bench file (the
//! iSCSI PDU and CRC32C ones, say) adds a `[[bench]]` entry with `harness = false` to
//! `Cargo.toml` and uses what it needs from here.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use scst::{Device, DeviceConfig, Disk, Lun, SgvConfig, SgvPool, Target};
use scst_backends::{NullStore, RamStore};
use scst_local::LocalInitiator;

/// Block size of every benchmark LUN.
pub const BLOCK_SIZE: u32 = 512;
/// The NULLIO LUN of [`target`]: reads return zeros, writes are dropped.
pub const NULLIO_LUN: u16 = 0;
/// The RAM LUN of [`target`].
pub const RAM_LUN: u16 = 1;
/// Capacity of the NULLIO LUN (it stores nothing, so the size is free).
pub const NULLIO_BYTES: u64 = 1 << 40;
/// Capacity of the RAM LUN.
pub const RAM_BYTES: u64 = 64 << 20;

/// CDB builders for the commands the benchmarks issue.
pub mod cdb {
    /// READ(10) of `blocks` blocks at `lba`.
    pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
        let mut c = [0u8; 10];
        c[0] = 0x28;
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&blocks.to_be_bytes());
        c
    }

    /// WRITE(10) of `blocks` blocks at `lba`.
    pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
        let mut c = read10(lba, blocks);
        c[0] = 0x2a;
        c
    }

    /// WRITE(16) of `blocks` blocks at `lba`.
    pub fn write16(lba: u64, blocks: u32) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = 0x8a;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[10..14].copy_from_slice(&blocks.to_be_bytes());
        c
    }

    /// Standard INQUIRY with allocation length `alloc_len`.
    pub fn inquiry(alloc_len: u16) -> [u8; 6] {
        let mut c = [0x12, 0, 0, 0, 0, 0];
        c[3..5].copy_from_slice(&alloc_len.to_be_bytes());
        c
    }
}

/// A target with a NULLIO LUN ([`NULLIO_LUN`]) and a RAM LUN ([`RAM_LUN`]), 512-byte blocks,
/// buffers from a default [`SgvPool`].
///
/// # Panics
/// If a device cannot be created (it only fails when a thread cannot be spawned).
pub fn target(name: &str) -> Arc<Target> {
    let target = Target::new(format!("iqn.2026-11.rs.scst:{name}"), SgvPool::new(SgvConfig::default()));
    let null = Disk::new(NullStore::new(NULLIO_BYTES, BLOCK_SIZE).expect("NULLIO geometry"));
    let ram = Disk::new(RamStore::new(RAM_BYTES, BLOCK_SIZE).expect("RAM geometry"));
    let null = Device::new(DeviceConfig::new(format!("{name}-null")), null).expect("NULLIO device");
    let ram = Device::new(DeviceConfig::new(format!("{name}-ram")), ram).expect("RAM device");
    target.add_lun(Lun(NULLIO_LUN), null, false).expect("map NULLIO LUN");
    target.add_lun(Lun(RAM_LUN), ram, false).expect("map RAM LUN");
    target
}

/// Logs `name` in to `target` and clears the unit attentions a new nexus starts with on both
/// LUNs of [`target`].
pub fn initiator(target: &Arc<Target>, name: &str) -> LocalInitiator {
    let init = LocalInitiator::connect(target, &format!("iqn.2026-11.rs.scst.bench:{name}"));
    for lun in [NULLIO_LUN, RAM_LUN] {
        let o = init.clear_unit_attentions(lun);
        assert!(o.is_good(), "LUN {lun} not ready: {:?}", o.sense_code());
    }
    init
}

/// Runs `iters` operations spread over `workers`, one thread per worker, all starting together,
/// and returns the wall time from the first thread's start to the last thread's end (thread
/// creation and teardown are not included). Meant for criterion's `iter_custom` with a per-
/// operation throughput: the figure is then wall time per operation across all threads.
///
/// `op(worker, i)` performs operation number `i` of that worker.
pub fn parallel_wall_time<W: Send>(workers: &mut [W], iters: u64, op: impl Fn(&mut W, u64) + Sync) -> Duration {
    let n = workers.len() as u64;
    assert!(n > 0, "no workers");
    let barrier = Barrier::new(workers.len());
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .iter_mut()
            .enumerate()
            .map(|(k, w)| {
                // Worker k runs its share of the iterations; the first ones take the remainder.
                let mine = iters / n + u64::from((k as u64) < iters % n);
                let (barrier, op) = (&barrier, &op);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..mine {
                        op(w, i);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench worker panicked")).collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("at least one worker");
    let end = spans.iter().map(|s| s.1).max().expect("at least one worker");
    end - start
}
