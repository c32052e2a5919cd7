//! The SRP core's per-command work: parsing an SRP_CMD and building its SRP_RSP, and one
//! command's whole trip through the sans-IO channel (receive, core, RDMA WRITE request,
//! response) on a NULLIO LUN.
//!
//! Run with `cargo bench -p scst-benches --bench srp_iu`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput};
use scst::{Device, DeviceConfig, Disk, Lun, SgvConfig, SgvPool, Target};
use scst_backends::NullStore;
use scst_transport_srp::iu::{self, CmdBuilder, DescFormat, DirectDesc, LoginReq, Rsp, buf_fmt};
use scst_transport_srp::{Action, LoginOutcome, PortConfig, SrpPort};

const GUID: u64 = 0x0002_c903_0000_0001;

fn read10() -> Vec<u8> {
    CmdBuilder {
        tag: 0x1234,
        cdb: vec![0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 8, 0],
        data_in: Some((DescFormat::Direct, vec![DirectDesc { va: 0x7f00_0000, rkey: 0x11, len: 4096 }])),
        ..CmdBuilder::default()
    }
    .build()
}

fn iu_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("srp_iu");
    g.throughput(Throughput::Elements(1));
    let cmd = read10();
    g.bench_function("parse_cmd_build_rsp", |b| {
        let mut out = Vec::with_capacity(64);
        b.iter(|| {
            let c = iu::Cmd::parse(black_box(&cmd)).expect("SRP_CMD");
            let d = c.data_in().descriptors().next().expect("descriptor");
            out.clear();
            Rsp { tag: c.tag(), req_lim_delta: 1, status: 0, ..Rsp::default() }.build_into(&mut out);
            (c.cdb()[0], d.len, out.len())
        });
    });
    let target = Target::new("srp-bench", SgvPool::new(SgvConfig::default()));
    let disk = Disk::new(NullStore::new(1 << 30, 512).expect("NULLIO"));
    target.add_lun(Lun(0), Device::new(DeviceConfig::new("srp-bench0"), disk).expect("device"), false).expect("LUN");
    let port = SrpPort::new(target, PortConfig::new(GUID));
    let mut tpid = [0u8; 16];
    tpid[..8].copy_from_slice(&GUID.to_be_bytes());
    tpid[8..].copy_from_slice(&GUID.to_be_bytes());
    let login = LoginReq {
        tag: 1,
        req_it_iu_len: 4164,
        req_buf_fmt: buf_fmt::DIRECT | buf_fmt::INDIRECT,
        req_flags: 0,
        imm_data_offset: 0,
        initiator_port_id: [0x22; 16],
        target_port_id: tpid,
    };
    let LoginOutcome::Accept { mut channel, .. } = port.login(&login.build_rdma_cm(), Arc::new(|| {})) else {
        panic!("login rejected");
    };
    // The first command answers the new nexus's unit attention.
    let mut run = |cmd: &[u8]| {
        channel.receive(cmd).expect("SRP_CMD");
        channel.recv_reposted();
        let mut n = 0;
        while let Some(a) = channel.poll() {
            match a {
                Action::Send { id, bytes, .. } => {
                    n += bytes.len();
                    channel.send_done(id, true);
                }
                Action::RdmaWrite { xfer, len, .. }
                | Action::RdmaRead { xfer, len, .. }
                | Action::FetchTable { xfer, len, .. } => {
                    n += len as usize;
                    channel.rdma_done(xfer, true);
                }
                Action::Disconnect => {}
            }
        }
        n
    };
    run(&cmd);
    g.bench_function("channel_read10_4k_nullio", |b| b.iter(|| run(black_box(&cmd))));
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    iu_path(&mut c);
    c.final_summary();
}
