//! Whole-stack command cost through the loopback fabric (`scst-local`): session pool, LUN view,
//! unit-attention check, opcode table, handler parse and exec, task set, completion, and the copy
//! to or from the caller's buffer. `LocalInitiator::execute` runs one command at a time per
//! initiator; with two threads each has its own initiator (session) on the same target and LUN,
//! and the figure is wall time per command across both.
//!
//! Run with `cargo bench -p scst-benches --bench local_io` (filters: `read10_nullio`,
//! `write10_ram`, `1thread`, `2threads`, `4KiB`, ...).

use std::sync::Arc;

use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};
use scst::Target;
use scst_benches::{BLOCK_SIZE, NULLIO_LUN, RAM_LUN, cdb, initiator, parallel_wall_time, target};
use scst_local::LocalInitiator;

/// Distinct LBAs a worker cycles through (so commands do not all hit the same block).
const SPREAD: u64 = 256;

/// One thread's state: its own initiator (session), buffer and LBA region.
struct Worker {
    init: LocalInitiator,
    buf: Vec<u8>,
    base_lba: u32,
}

/// What each command of a benchmark does.
#[derive(Clone, Copy)]
enum Kind {
    /// READ(10) from the NULLIO LUN into the worker's buffer.
    ReadNull,
    /// WRITE(10) of the worker's buffer to the RAM LUN.
    WriteRam,
}

impl Worker {
    fn new(target: &Arc<Target>, name: &str, len: usize, base_lba: u32) -> Self {
        Self { init: initiator(target, name), buf: vec![0x5a; len], base_lba }
    }

    /// Issues command number `i` of this worker and checks it succeeded.
    fn run(&mut self, kind: Kind, i: u64) {
        let blocks = (self.buf.len() / BLOCK_SIZE as usize) as u16;
        let lba = self.base_lba + (i % SPREAD) as u32 * u32::from(blocks);
        let o = match kind {
            Kind::ReadNull => self.init.execute(NULLIO_LUN, &cdb::read10(lba, blocks), &[], &mut self.buf),
            Kind::WriteRam => self.init.execute(RAM_LUN, &cdb::write10(lba, blocks), &self.buf, &mut []),
        };
        assert!(o.is_good(), "command failed: {:?}", o.sense_code());
    }

    /// Runs every command of the LBA cycle once (fills RAM pages and the SGV pool).
    fn warm(&mut self, kind: Kind) {
        for i in 0..SPREAD {
            self.run(kind, i);
        }
    }
}

/// Benchmarks `kind` with `len`-byte transfers on one thread and on two.
fn bench_kind(g: &mut BenchmarkGroup<'_, WallTime>, target: &Arc<Target>, kind: Kind, label: &str, len: usize) {
    // Each worker's region is SPREAD transfers long; workers do not overlap.
    let region = (SPREAD * len as u64 / u64::from(BLOCK_SIZE)) as u32;
    let mut one = Worker::new(target, &format!("{label}-1t"), len, 0);
    one.warm(kind);
    g.bench_function(format!("{label}/1thread"), |b| {
        let mut i = 0u64;
        b.iter(|| {
            one.run(kind, i);
            i += 1;
        });
    });
    drop(one);
    let mut two: Vec<Worker> =
        (0..2u32).map(|k| Worker::new(target, &format!("{label}-2t-{k}"), len, k * region)).collect();
    for w in &mut two {
        w.warm(kind);
    }
    g.bench_function(format!("{label}/2threads"), |b| {
        b.iter_custom(|iters| parallel_wall_time(&mut two, iters, |w, i| w.run(kind, i)));
    });
}

/// READ(10) of 4 KiB and 64 KiB from a NULLIO LUN.
fn read10_nullio(c: &mut Criterion) {
    let target = target("bench-read");
    let mut g = c.benchmark_group("local_io/read10_nullio");
    g.throughput(Throughput::Elements(1));
    bench_kind(&mut g, &target, Kind::ReadNull, "4KiB", 4 << 10);
    bench_kind(&mut g, &target, Kind::ReadNull, "64KiB", 64 << 10);
    g.finish();
}

/// WRITE(10) of 4 KiB to a RAM LUN.
fn write10_ram(c: &mut Criterion) {
    let target = target("bench-write");
    let mut g = c.benchmark_group("local_io/write10_ram");
    g.throughput(Throughput::Elements(1));
    bench_kind(&mut g, &target, Kind::WriteRam, "4KiB", 4 << 10);
    g.finish();
}

/// Criterion's entry point (what `criterion_main!` would generate, written out so it is documented).
fn main() {
    let mut c = Criterion::default().configure_from_args();
    read10_nullio(&mut c);
    write10_ram(&mut c);
    c.final_summary();
}
