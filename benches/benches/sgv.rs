//! SGV allocator: allocating and freeing one buffer in steady state (the chunk comes from the
//! pool's free list and goes back to it; the system allocator is not involved).
//!
//! Run with `cargo bench -p scst-benches --bench sgv` (filter: `sgv`).

use criterion::{BenchmarkId, Criterion, Throughput};
use scst::{SgvConfig, SgvPool};
use std::hint::black_box;

/// Alloc + free of 4 KiB, 64 KiB and 1 MiB buffers from a default pool (1 MiB chunks).
fn sgv_alloc_free(c: &mut Criterion) {
    let pool = SgvPool::new(SgvConfig::default());
    let mut g = c.benchmark_group("sgv/alloc_free");
    g.throughput(Throughput::Elements(1));
    for (label, len) in [("4KiB", 4usize << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)] {
        // Fill the free list once so the measured loop only reuses.
        drop(pool.alloc(len).expect("alloc"));
        let misses = pool.stats().misses;
        g.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| black_box(pool.alloc(black_box(len)).expect("alloc")));
        });
        assert_eq!(pool.stats().misses, misses, "steady state must not reach the system allocator");
    }
    g.finish();
}

/// Criterion's entry point (what `criterion_main!` would generate, written out so it is documented).
fn main() {
    let mut c = Criterion::default().configure_from_args();
    sgv_alloc_free(&mut c);
    c.final_summary();
}
