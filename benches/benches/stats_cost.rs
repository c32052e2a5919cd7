//! What per-command statistics cost: 4 KiB READ(10) at queue depth 32 through the loopback
//! fabric (`scst-local`), on the NULLIO and on the RAM LUN, with counting on and off
//! ([`scst::stats::set_enabled`]). The figure is time per command; the difference between
//! `stats_on` and `stats_off` is the counting (two `Instant::now()`, the atomic additions on the
//! device's and the session's counters).
//!
//! `LocalInitiator::start` queues a command and the inline stores complete it before `start`
//! returns, so "queue depth 32" means 32 commands are outstanding from the initiator's view
//! (queued completions), not 32 executing at once.
//!
//! Run with `cargo bench -p scst-benches --bench stats_cost`.

use criterion::{Criterion, Throughput};
use scst_benches::{BLOCK_SIZE, NULLIO_LUN, RAM_LUN, cdb, initiator, target};
use scst_local::LocalInitiator;

/// Commands outstanding.
const QD: u64 = 32;
/// Transfer length.
const LEN: u32 = 4 << 10;
/// Distinct LBAs cycled through.
const SPREAD: u64 = 256;

fn start(init: &LocalInitiator, lun: u16, i: u64) {
    let blocks = (LEN / BLOCK_SIZE) as u16;
    let lba = (i % SPREAD) as u32 * u32::from(blocks);
    init.start(lun, &cdb::read10(lba, blocks), &[], LEN, i).expect("queue depth within the session depth");
}

/// Reaps one completion, checks it, and queues the next command.
fn step(init: &LocalInitiator, lun: u16, i: u64) {
    let c = init.next_completion();
    assert!(c.status() == scst::ScsiStatus::GOOD, "READ failed: {c:?}");
    assert_eq!(c.data_in_len(), LEN as usize);
    drop(c);
    start(init, lun, i);
}

fn qd32_reads(c: &mut Criterion) {
    let target = target("bench-stats");
    let mut g = c.benchmark_group("stats_cost/read10_4KiB_qd32");
    g.throughput(Throughput::Elements(1));
    for (lun, store) in [(NULLIO_LUN, "nullio"), (RAM_LUN, "ram")] {
        let init = initiator(&target, &format!("stats-{store}"));
        for i in 0..QD {
            start(&init, lun, i);
        }
        // Warm the SGV pool, the RAM pages and the session's command pool.
        for i in 0..SPREAD * 4 {
            step(&init, lun, i);
        }
        // Off first, then on, then off again: a drift of the machine shows as a difference
        // between the two `stats_off` figures.
        for (on, label) in [(false, "stats_off"), (true, "stats_on"), (false, "stats_off_again")] {
            scst::stats::set_enabled(on);
            let mut i = 0u64;
            g.bench_function(format!("{store}/{label}"), |b| {
                b.iter(|| {
                    step(&init, lun, i);
                    i += 1;
                });
            });
        }
        scst::stats::set_enabled(true);
        for _ in 0..QD {
            drop(init.next_completion());
        }
    }
    g.finish();
}

/// Criterion's entry point (what `criterion_main!` would generate, written out so it is documented).
fn main() {
    let mut c = Criterion::default().configure_from_args();
    qd32_reads(&mut c);
    c.final_summary();
}
