//! Fuzz target `fc_frame`: every FC parser (frame header, ELS payloads, BLS, FCP IUs) on raw
//! bytes, then the sans-IO port state machine (`FcPort` over a RAM disk target) on a stream of
//! frames.
//!
//! Input: byte 0 selects options (bit 0: log the initiator in first, so FCP paths are reached;
//! bit 1: force each frame's D_ID/S_ID to the target's and the initiator's), then frames as a
//! 2-byte big-endian length followed by that many bytes; a length of 0 advances the clock by
//! E_D_TOV and runs the timers. Every frame the port emits must parse and come from its port.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use scst::{Device, DeviceConfig, Disk, Lun, SgvConfig, SgvPool, Target};
use scst_backends::RamStore;
use scst_transport_fc::frame::{FCtl, FcType, Frame, HeaderBuilder, RCtl, XID_UNKNOWN};
use scst_transport_fc::{FcPort, PortConfig, bls, els, fcp};

const TGT: u32 = 0x0a_00_01;
const INI: u32 = 0x0a_00_02;

fn target() -> &'static Arc<Target> {
    static T: OnceLock<Arc<Target>> = OnceLock::new();
    T.get_or_init(|| {
        let t = Target::new("fc-fuzz", SgvPool::new(SgvConfig::default()));
        let disk = Disk::new(RamStore::new(1 << 20, 512).expect("ram"));
        t.add_lun(Lun(0), Device::new(DeviceConfig::new("ram0"), disk).expect("device"), false).expect("lun");
        t
    })
}

fn parse_all(b: &[u8]) {
    if let Ok(f) = Frame::parse(b) {
        let h = f.header();
        let _ = (h.r_ctl(), h.d_id(), h.s_id(), h.f_ctl().fill(), h.seq_cnt(), h.parameter());
    }
    if let Ok(l) = els::Login::parse(b) {
        let _ = (l.max_payload(), l.wwpn(), l.wwnn(), l.e_d_tov(), l.class3_open_seqs(), l.version());
    }
    if let Ok(p) = els::Prli::parse(b) {
        let _ = (p.fc4_type(), p.flags(), p.params(), p.pages(), p.response());
    }
    if let Ok(l) = els::Logo::parse(b) {
        let _ = (l.port_id(), l.wwpn());
    }
    if let Ok(a) = els::Adisc::parse(b) {
        let _ = (a.port_id(), a.wwpn(), a.wwnn());
    }
    if let Ok(r) = els::Rrq::parse(b) {
        let _ = (r.originator(), r.ox_id(), r.rx_id());
    }
    let _ = els::parse_ls_rjt(b);
    let _ = els::command(b);
    let _ = bls::BaAcc::parse(b);
    let _ = bls::parse_ba_rjt(b);
    if let Ok(c) = fcp::FcpCmnd::parse(b) {
        let _ = (c.lun(), c.cdb(), c.data_len(), c.task_attr(), c.tm_flags(), c.crn(), c.priority());
    }
    let _ = fcp::XferRdy::parse(b);
    if let Ok(r) = fcp::FcpRspView::parse(b) {
        let _ = (r.sense(), r.rsp_code(), r.resid(), r.status());
    }
}

fn login(port: &mut FcPort) {
    let sp = els::ServiceParams {
        wwpn: 0x2100_0000_0000_0001,
        wwnn: 0x2000_0000_0000_0001,
        rdfs: 1024,
        bb_credit: 1,
        e_d_tov_ms: 2000,
        r_a_tov_ms: 10000,
        concurrent_seqs: 16,
    };
    let hb = HeaderBuilder {
        r_ctl: RCtl::ELS_REQ.0,
        d_id: TGT,
        s_id: INI,
        fc_type: FcType::ELS.0,
        f_ctl: FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT,
        ox_id: 1,
        rx_id: XID_UNKNOWN,
        ..Default::default()
    };
    let _ = port.handle_frame(0, &hb.frame(&sp.build(els::ElsCmd::PLOGI, false)));
    let prli = els::build_prli(els::ElsCmd::PRLI, els::SPP_ESTABLISH_IMAGE_PAIR, els::fcp_params::INITIATOR);
    let _ = port.handle_frame(0, &HeaderBuilder { ox_id: 2, ..hb }.frame(&prli));
}

fuzz_target!(|data: &[u8]| {
    let Some((&opts, mut rest)) = data.split_first() else { return };
    let mut cfg = PortConfig::new(0x2000_0000_0000_00ff, 0x1000_0000_0000_00ff);
    cfg.port_id = TGT;
    cfg.max_burst = 2048;
    let mut port = FcPort::new(cfg, target().clone());
    if opts & 1 != 0 {
        login(&mut port);
    }
    let mut now = 0u64;
    while let [a, b, tail @ ..] = rest {
        let n = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let (frame, next) = tail.split_at(n);
        rest = next;
        if n == 0 {
            now += 2000;
            port.handle_timeout(now);
        } else {
            parse_all(frame);
            parse_all(frame.get(24..).unwrap_or_default());
            let mut f = frame.to_vec();
            if opts & 2 != 0 && f.len() >= 8 {
                f[1..4].copy_from_slice(&TGT.to_be_bytes()[1..]);
                f[5..8].copy_from_slice(&INI.to_be_bytes()[1..]);
            }
            let _ = port.handle_frame(now, &f);
        }
        while let Some(out) = port.poll_transmit() {
            let f = Frame::parse(&out).expect("the port emits well-formed frames");
            assert_eq!(f.header().s_id(), TGT, "from our own port");
        }
        while port.poll_event().is_some() {}
    }
    port.link_down();
    assert_eq!(port.open_exchanges(), 0);
});
