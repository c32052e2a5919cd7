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
//! Criterion's figures run one after the other, so a machine whose load changes (another
//! build) moves them apart; the paired comparison printed at the end (`paired ...`) alternates
//! the two in short blocks and reports the per-round overhead.
//!
//! Run with `cargo bench -p scst-benches --bench stats_cost`.

use std::time::Instant;

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

/// Time per command of `n` commands with counting `on`.
fn run(init: &LocalInitiator, lun: u16, on: bool, n: u64, i: &mut u64) -> f64 {
    scst::stats::set_enabled(on);
    let t = Instant::now();
    for _ in 0..n {
        step(init, lun, *i);
        *i += 1;
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// The paired comparison criterion cannot make: [`ROUNDS`] rounds, each timing [`BLOCK`]
/// commands with counting off and [`BLOCK`] with it on, back to back (in alternating order),
/// so that a load change on the machine affects both halves of a round alike. Prints the median
/// and quartiles of the per-round overhead `on / off - 1`, and the median times.
fn paired(lun: u16, store: &str) {
    const ROUNDS: usize = 400;
    const BLOCK: u64 = 20_000;
    let target = target(&format!("bench-ab-{store}"));
    let init = initiator(&target, &format!("ab-{store}"));
    for i in 0..QD {
        start(&init, lun, i);
    }
    let mut i = 0;
    run(&init, lun, true, SPREAD * 16, &mut i);
    let (mut ratios, mut offs, mut ons) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        let (off, on) = if r % 2 == 0 {
            let off = run(&init, lun, false, BLOCK, &mut i);
            (off, run(&init, lun, true, BLOCK, &mut i))
        } else {
            let on = run(&init, lun, true, BLOCK, &mut i);
            (run(&init, lun, false, BLOCK, &mut i), on)
        };
        ratios.push(on / off - 1.0);
        offs.push(off);
        ons.push(on);
    }
    scst::stats::set_enabled(true);
    for _ in 0..QD {
        drop(init.next_completion());
    }
    let q = |v: &mut Vec<f64>, f: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * f) as usize]
    };
    println!(
        "paired {store} 4KiB READ QD{QD}, {ROUNDS} rounds of {BLOCK}+{BLOCK} commands: off median {:.1} ns/cmd \
         ({:.0} kIOPS), on median {:.1} ns/cmd ({:.0} kIOPS); overhead per round: median {:+.2}%, \
         quartiles {:+.2}% .. {:+.2}%",
        q(&mut offs, 0.5),
        1e6 / q(&mut offs, 0.5),
        q(&mut ons, 0.5),
        1e6 / q(&mut ons, 0.5),
        100.0 * q(&mut ratios, 0.5),
        100.0 * q(&mut ratios, 0.25),
        100.0 * q(&mut ratios, 0.75),
    );
}

/// Criterion's entry point (what `criterion_main!` would generate, written out so it is
/// documented), then, under `cargo bench` only, the paired comparison.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    qd32_reads(&mut c);
    c.final_summary();
    if std::env::args().any(|a| a == "--bench") && !std::env::args().any(|a| a == "--list") {
        paired(NULLIO_LUN, "nullio");
        paired(RAM_LUN, "ram");
    }
}
