//! Fuzz target `srp_iu`: every SRP IU parser of `scst_transport_srp::iu` on the raw input, then
//! the sans-IO channel state machine on a stream of IUs cut from it, against a target with a
//! 1 MiB RAM LUN.
//!
//! Input: byte 0 selects how the login is done (bit 0: the input's first IU is the connect
//! private data, else a valid RDMA/CM login request; bits 1-2: depth 4, 8, 16 or 32). Then
//! IUs, each a 2-byte big-endian length and that many bytes, followed by one control byte: bit
//! 0 repost the receive buffer, bit 1 fail the RDMA operations it starts, bit 2 hold them until
//! the next IU, bit 3 fail sends.
//!
//! Must hold: no panic; every IU the target sends parses as its opcode (SRP_RSP with
//! consistent lengths and a tag the initiator used, SRP_T_LOGOUT, SRP_CRED_REQ); RDMA
//! operations are exactly as long as their descriptors (external descriptor tables are filled
//! with the IU's own bytes); the initiator never holds more credit
//! than posted receive buffers less one; after the channel closes the session has no command
//! outstanding.
#![no_main]

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use scst::{Device, DeviceConfig, Disk, Lun, SgvConfig, SgvPool, Target};
use scst_backends::RamStore;
use scst_transport_srp::iu::{self, opcode};
use scst_transport_srp::{Action, LoginOutcome, PortConfig, SrpPort};

const GUID: u64 = 0x0002_c903_00ab_cdef;

static PORTS: OnceLock<Vec<Arc<SrpPort>>> = OnceLock::new();

fn ports() -> &'static [Arc<SrpPort>] {
    PORTS.get_or_init(|| {
        let t = Target::new("srp-fuzz", SgvPool::new(SgvConfig::default()));
        let disk = Disk::new(RamStore::new(1 << 20, 512).expect("RAM store"));
        t.add_lun(Lun(0), Device::new(DeviceConfig::new("srp-fuzz0"), disk).expect("device"), false)
            .expect("LUN 0");
        [4u32, 8, 16, 32]
            .iter()
            .map(|d| {
                let mut cfg = PortConfig::new(GUID);
                cfg.queue_depth = *d;
                cfg.max_it_iu_len = 1024;
                SrpPort::new(t.clone(), cfg)
            })
            .collect()
    })
}

/// Every parser on the same bytes: none may panic, and what they accept reads within bounds.
fn parse_all(b: &[u8]) {
    if let Ok(r) = iu::LoginReq::parse(b) {
        assert_eq!(iu::LoginReq::parse(&r.build()), Ok(r));
    }
    if let Ok(r) = iu::LoginReq::parse_rdma_cm(b) {
        assert_eq!(iu::LoginReq::parse_rdma_cm(&r.build_rdma_cm()), Ok(r));
    }
    let _ = iu::LoginReq::parse_any(b);
    if let Ok(r) = iu::LoginRsp::parse(b) {
        assert_eq!(iu::LoginRsp::parse(&r.build()), Ok(r));
    }
    if let Ok(r) = iu::LoginRej::parse(b) {
        assert_eq!(iu::LoginRej::parse(&r.build()), Ok(r));
    }
    let _ = iu::TLogout::parse(b);
    let _ = iu::CredReq::parse(b);
    let _ = iu::parse_cred_rsp(b);
    let _ = iu::parse_aer_rsp(b);
    let _ = iu::parse_i_logout(b);
    if let Ok(a) = iu::AerReqView::parse(b) {
        let _ = (a.tag(), a.lun(), a.req_lim_delta(), a.sense().len());
    }
    if let Ok(t) = iu::TskMgmt::parse(b) {
        let _ = (t.tag(), t.lun(), t.function(), t.task_tag(), t.sol_not());
    }
    if let Ok(c) = iu::Cmd::parse(b) {
        assert!(c.cdb().len() >= 16);
        for buf in [c.data_out(), c.data_in()] {
            let n = buf.descriptors().count();
            assert!(n * iu::DIRECT_DESC_LEN <= b.len());
            let _ = (buf.len(), buf.table_is_external());
        }
    }
    if let Ok(r) = iu::RspView::parse(b) {
        assert!(iu::RSP_LEN + r.resp_data().len() + r.sense().len() <= b.len());
    }
}

fn check_sent(bytes: &[u8], tags: &HashSet<u64>) {
    match bytes.first() {
        Some(&opcode::RSP) => {
            let r = iu::RspView::parse(bytes).expect("SRP_RSP parses");
            assert_eq!(iu::RSP_LEN + r.resp_data().len() + r.sense().len(), bytes.len());
            assert!(tags.contains(&r.tag()), "a response to a tag the initiator sent");
            assert!(r.sense().len() <= 252);
        }
        Some(&opcode::T_LOGOUT) => {
            iu::TLogout::parse(bytes).expect("SRP_T_LOGOUT parses");
        }
        Some(&opcode::CRED_REQ) => {
            iu::CredReq::parse(bytes).expect("SRP_CRED_REQ parses");
        }
        other => panic!("the target sent opcode {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    parse_all(data);
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let port = &ports()[usize::from(mode >> 1) & 3];
    let depth = port.config().queue_depth;
    let mut next_iu = || {
        if rest.len() < 2 {
            return None;
        }
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let iu = &rest[2..2 + n];
        let ctl = rest.get(2 + n).copied().unwrap_or(1);
        rest = rest.get(3 + n..).unwrap_or(&[]);
        Some((iu, ctl))
    };
    let private: Vec<u8> = if mode & 1 != 0 {
        match next_iu() {
            Some((b, _)) => b.to_vec(),
            None => return,
        }
    } else {
        let mut tpid = [0u8; 16];
        tpid[..8].copy_from_slice(&GUID.to_be_bytes());
        tpid[8..].copy_from_slice(&GUID.to_be_bytes());
        iu::LoginReq {
            tag: 1,
            req_it_iu_len: 1024,
            req_buf_fmt: iu::buf_fmt::DIRECT | iu::buf_fmt::INDIRECT,
            req_flags: 0,
            imm_data_offset: 0,
            initiator_port_id: [0x11; 16],
            target_port_id: tpid,
        }
        .build_rdma_cm()
        .to_vec()
    };
    let mut ch = match port.login(&private, Arc::new(|| {})) {
        LoginOutcome::Accept { channel, rsp } => {
            let r = iu::LoginRsp::parse(&rsp).expect("login response parses");
            assert_eq!(r.req_lim_delta, depth - 1);
            channel
        }
        LoginOutcome::Reject(b) => {
            iu::LoginRej::parse(&b).expect("login rejection parses");
            return;
        }
    };
    let session = ch.session().clone();
    let mut tags = HashSet::new();
    let mut held = Vec::new();
    let mut posted = depth;
    while let Some((b, ctl)) = next_iu() {
        if b.len() >= 16 {
            let mut t = [0u8; 8];
            t.copy_from_slice(&b[8..16]);
            tags.insert(u64::from_be_bytes(t));
        }
        // A channel never receives more IUs than it has buffers posted.
        if posted == 0 {
            ch.recv_reposted();
            posted += 1;
        }
        let _ = ch.receive(b);
        posted -= 1;
        if ctl & 1 != 0 {
            ch.recv_reposted();
            posted += 1;
        }
        for (x, ok) in held.drain(..) {
            ch.rdma_done(x, ok);
        }
        while let Some(a) = ch.poll() {
            match a {
                Action::Send { id, bytes, .. } => {
                    check_sent(&bytes, &tags);
                    ch.send_done(id, ctl & 8 == 0);
                }
                Action::RdmaRead { xfer, remote, len } | Action::RdmaWrite { xfer, remote, len } => {
                    let total: u64 = remote.iter().map(|d| u64::from(d.len)).sum();
                    assert_eq!(total, u64::from(len));
                    if ctl & 4 != 0 {
                        held.push((xfer, ctl & 2 == 0));
                    } else {
                        ch.rdma_done(xfer, ctl & 2 == 0);
                    }
                }
                Action::FetchTable { xfer, remote, len } => {
                    assert_eq!(remote.len, len);
                    if let Some(t) = ch.table_buf_mut(xfer) {
                        assert_eq!(t.len(), len as usize);
                        // A table of the IU's own bytes: arbitrary descriptors.
                        for (i, x) in t.iter_mut().enumerate() {
                            *x = b.get(i % b.len().max(1)).copied().unwrap_or(0);
                        }
                    }
                    if ctl & 4 != 0 {
                        held.push((xfer, ctl & 2 == 0));
                    } else {
                        ch.rdma_done(xfer, ctl & 2 == 0);
                    }
                }
                Action::Disconnect => {}
            }
        }
        assert!(ch.initiator_credit() < depth, "credit beyond the posted buffers");
        if ch.is_closed() {
            break;
        }
    }
    for (x, ok) in held.drain(..) {
        ch.rdma_done(x, ok);
    }
    ch.close();
    assert_eq!(session.outstanding(), 0, "the closed channel freed its commands");
});
