//! The iSCSI protocol core's per-PDU work: parsing a SCSI Command BHS, building a Data-In
//! header with status, and CRC32C digests over the sizes data segments come in.
//!
//! Run with `cargo bench -p scst-benches --bench iscsi_proto`.

use criterion::{Criterion, Throughput};
use scst_transport_iscsi::proto::bhs::{BHS_LEN, Bhs};
use scst_transport_iscsi::proto::build::{DataInHeader, TargetSn};
use scst_transport_iscsi::proto::digest;
use std::hint::black_box;

/// A SCSI Command PDU header: READ(10) of 8 blocks, ITT 0x1234, CmdSN 77, EDTL 4096.
fn scsi_read10_bhs() -> [u8; BHS_LEN] {
    let mut b = [0u8; BHS_LEN];
    b[0] = 0x01; // SCSI Command
    b[1] = 0x80 | 0x40 | 0x01; // F, R, SIMPLE
    b[16..20].copy_from_slice(&0x1234u32.to_be_bytes());
    b[20..24].copy_from_slice(&4096u32.to_be_bytes());
    b[24..28].copy_from_slice(&77u32.to_be_bytes());
    b[32..42].copy_from_slice(&[0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 8, 0]);
    b
}

fn pdu(c: &mut Criterion) {
    let mut g = c.benchmark_group("iscsi_pdu");
    g.throughput(Throughput::Elements(1));
    let bhs = scsi_read10_bhs();
    g.bench_function("parse_scsi_command", |b| {
        b.iter(|| {
            let h = Bhs::from_array(black_box(&bhs));
            (h.opcode(), h.itt(), h.cmd_sn(), h.expected_data_transfer_length(), h.cdb()[0], h.data_segment_len())
        });
    });
    g.bench_function("build_data_in_with_status", |b| {
        let mut out = [0u8; BHS_LEN];
        let mut sn = 0u32;
        b.iter(|| {
            sn = sn.wrapping_add(1);
            DataInHeader {
                final_bit: true,
                status_present: true,
                data_segment_len: 4096,
                itt: 0x1234,
                ttt: 0xffff_ffff,
                sn: TargetSn { stat_sn: sn, exp_cmd_sn: sn, max_cmd_sn: sn + 127 },
                ..DataInHeader::default()
            }
            .write(black_box(&mut out));
            out[0]
        });
    });
    g.finish();
}

fn crc32c(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32c");
    for size in [48usize, 8 << 10, 256 << 10] {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("{size}"), |b| b.iter(|| digest::crc32c(black_box(&data))));
    }
    g.finish();
}

/// Criterion's entry point (what `criterion_main!` would generate, written out so it is documented).
fn main() {
    let mut c = Criterion::default().configure_from_args();
    pdu(&mut c);
    crc32c(&mut c);
    c.final_summary();
}
