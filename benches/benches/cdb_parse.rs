//! CDB parsing: opcode-table lookup plus the CDB usage-data check, as the core does for every
//! command before the device handler sees it.
//!
//! Run with `cargo bench -p scst-benches --bench cdb_parse` (filter: `cdb_parse`).

use criterion::{Criterion, Throughput};
use scst::ops::{DISK_OPS, lookup};
use scst_benches::cdb;
use std::hint::black_box;

/// `lookup` + `check_cdb` for READ(10), WRITE(16) and INQUIRY.
fn cdb_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("cdb_parse");
    g.throughput(Throughput::Elements(1));
    let cases: [(&str, &[u8]); 3] = [
        ("read10", &cdb::read10(0x1234, 8)),
        ("write16", &cdb::write16(0x1_0000_1234, 128)),
        ("inquiry", &cdb::inquiry(96)),
    ];
    for (name, cdb) in cases {
        let op = lookup(DISK_OPS, cdb).expect("known opcode");
        op.check_cdb(cdb).expect("valid CDB");
        g.bench_function(name, |b| {
            b.iter(|| {
                let cdb = black_box(cdb);
                let op = lookup(DISK_OPS, cdb).expect("known opcode");
                black_box(op.check_cdb(cdb)).expect("valid CDB");
                op
            });
        });
    }
    g.finish();
}

/// Criterion's entry point (what `criterion_main!` would generate, written out so it is documented).
fn main() {
    let mut c = Criterion::default().configure_from_args();
    cdb_parse(&mut c);
    c.final_summary();
}
