//! A hand-built FC initiator around an [`FcPort`] serving a real scst target.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use scst::{Device, DeviceConfig, Disk, Lun, SgvConfig, SgvPool, Target};
use scst_backends::RamStore;

use scst_transport_fc::els::{self, ElsCmd, ServiceParams};
use scst_transport_fc::fcp::{self, FcpRspView, FcpTaskAttr, XferRdy};
use scst_transport_fc::frame::{FCtl, FcType, Frame, FrameHeader, HeaderBuilder, RCtl, XID_UNKNOWN};
use scst_transport_fc::{FcPort, PortConfig, PortEvent, RxError};

pub const TGT: u32 = 0x0a_00_01;
pub const INI: u32 = 0x0a_00_02;
pub const TGT_WWPN: u64 = 0x2000_0011_2233_4455;
pub const INI_WWPN: u64 = 0x2100_0024_ff31_4c2a;
pub const BS: usize = 512;

pub struct Rig {
    pub port: FcPort,
    pub target: Arc<Target>,
    pub now: u64,
}

/// A received frame, owned.
pub struct Rx {
    pub bytes: Vec<u8>,
}

impl Rx {
    pub fn hdr(&self) -> FrameHeader<'_> {
        Frame::parse(&self.bytes).unwrap().header()
    }
    pub fn payload(&self) -> &[u8] {
        Frame::parse(&self.bytes).unwrap().payload()
    }
}

pub fn ini_params(rdfs: u16, wwpn: u64) -> ServiceParams {
    ServiceParams {
        wwpn,
        wwnn: wwpn & !(0xf << 60) | 1 << 60,
        rdfs,
        bb_credit: 10,
        e_d_tov_ms: 2000,
        r_a_tov_ms: 10000,
        concurrent_seqs: 255,
    }
}

pub fn rig_with(cfg: impl FnOnce(&mut PortConfig)) -> Rig {
    let disk = Disk::new(RamStore::new(4 << 20, BS as u32).unwrap());
    rig_on(Device::new(DeviceConfig::new("ram0"), disk).unwrap(), cfg)
}

/// A port on a target whose LUN 0 is `dev`.
pub fn rig_on(dev: Arc<Device>, cfg: impl FnOnce(&mut PortConfig)) -> Rig {
    let target = Target::new("fc-test", SgvPool::new(SgvConfig::default()));
    target.add_lun(Lun(0), dev, false).unwrap();
    let mut c = PortConfig::new(TGT_WWPN, 0x1000_0011_2233_4455);
    c.port_id = TGT;
    cfg(&mut c);
    Rig { port: FcPort::new(c, target.clone()), target, now: 0 }
}

pub fn rig() -> Rig {
    rig_with(|_| {})
}

pub fn hdr(r_ctl: RCtl, fc_type: FcType, f_ctl: u32, ox_id: u16, rx_id: u16, parameter: u32) -> HeaderBuilder {
    HeaderBuilder {
        r_ctl: r_ctl.0,
        d_id: TGT,
        s_id: INI,
        fc_type: fc_type.0,
        f_ctl,
        ox_id,
        rx_id,
        parameter,
        ..Default::default()
    }
}

pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    [0x28, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
}

pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

impl Rig {
    pub fn send(&mut self, hb: HeaderBuilder, payload: &[u8]) -> Result<(), RxError> {
        self.port.handle_frame(self.now, &hb.frame(payload))
    }

    pub fn out(&mut self) -> Vec<Rx> {
        std::iter::from_fn(|| self.port.poll_transmit()).map(|bytes| Rx { bytes }).collect()
    }

    /// Frames already queued, or the first ones a device worker completes within 3 s.
    pub fn out_wait(&mut self) -> Vec<Rx> {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let out = self.out();
            if !out.is_empty() || std::time::Instant::now() > end {
                return out;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    pub fn events(&mut self) -> Vec<PortEvent> {
        std::iter::from_fn(|| self.port.poll_event()).collect()
    }

    /// An ELS request from the initiator; returns the one reply.
    pub fn els(&mut self, ox: u16, payload: &[u8]) -> Rx {
        let hb = hdr(RCtl::ELS_REQ, FcType::ELS, FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT, ox, XID_UNKNOWN, 0);
        let _ = self.send(hb, payload);
        let mut out = self.out();
        assert_eq!(out.len(), 1, "one ELS reply");
        let r = out.remove(0);
        let h = r.hdr();
        assert_eq!((h.r_ctl(), h.fc_type(), h.d_id(), h.s_id(), h.ox_id()), (RCtl::ELS_REP, FcType::ELS, INI, TGT, ox));
        assert!(h.f_ctl().has(FCtl::EX_CTX | FCtl::LAST_SEQ | FCtl::END_SEQ));
        r
    }

    pub fn plogi(&mut self, rdfs: u16) -> Rx {
        self.els(1, &ini_params(rdfs, INI_WWPN).build(ElsCmd::PLOGI, false))
    }

    pub fn prli(&mut self) -> Rx {
        let p = els::build_prli(
            ElsCmd::PRLI,
            els::SPP_ESTABLISH_IMAGE_PAIR,
            els::fcp_params::INITIATOR | els::fcp_params::READ_XFER_RDY_DISABLED | els::fcp_params::RETRY,
        );
        self.els(2, &p)
    }

    /// PLOGI with `rdfs`, PRLI, and a TEST UNIT READY that collects the power-on unit attention.
    pub fn login(&mut self, rdfs: u16) {
        assert_eq!(self.plogi(rdfs).payload()[0], ElsCmd::LS_ACC.0);
        assert_eq!(self.prli().payload()[0], ElsCmd::LS_ACC.0);
        let out = self.cmd(3, 0, &[0; 6], 0, false, false);
        let rsp = FcpRspView::parse(out[0].payload()).unwrap();
        assert_eq!(rsp.status(), 2);
        assert_eq!(rsp.sense()[12], 0x29, "power-on unit attention first");
        self.events();
    }

    pub fn cmd(&mut self, ox: u16, lun: u16, cdb: &[u8], dl: u32, read: bool, write: bool) -> Vec<Rx> {
        self.cmd_tm(ox, lun, 0, cdb, dl, read, write)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn cmd_tm(&mut self, ox: u16, lun: u16, tm: u8, cdb: &[u8], dl: u32, read: bool, write: bool) -> Vec<Rx> {
        let mut l = [0u8; 8];
        l[..2].copy_from_slice(&lun.to_be_bytes());
        let iu = fcp::build_cmnd(l, FcpTaskAttr::SIMPLE, tm, read, write, cdb, dl);
        let hb =
            hdr(RCtl::UNSOL_CMD, FcType::FCP, FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT, ox, XID_UNKNOWN, 0);
        let _ = self.send(hb, &iu);
        self.out()
    }

    pub fn data(&mut self, ox: u16, rx: u16, off: u32, bytes: &[u8], last: bool) -> Result<(), RxError> {
        let f = FCtl::REL_OFF | if last { FCtl::END_SEQ | FCtl::SEQ_INIT } else { 0 };
        let hb = hdr(RCtl::SOL_DATA, FcType::FCP, f, ox, rx, off);
        self.send(hb, bytes)
    }

    pub fn abts(&mut self, ox: u16, rx: u16) -> Vec<Rx> {
        let hb = hdr(RCtl::BA_ABTS, FcType::BLS, FCtl::END_SEQ | FCtl::SEQ_INIT, ox, rx, 0);
        let _ = self.send(hb, &[]);
        self.out()
    }

    /// A full write of `data` at `lba`, answering every XFER_RDY in frames of `chunk` bytes.
    pub fn write(&mut self, ox: u16, lba: u32, data: &[u8], chunk: usize) -> Vec<XferRdy> {
        let mut out = self.cmd(ox, 0, &write10(lba, (data.len() / BS) as u16), data.len() as u32, false, true);
        let mut bursts = Vec::new();
        loop {
            if out.is_empty() {
                out = self.out_wait();
            }
            assert_eq!(out.len(), 1);
            let f = out.remove(0);
            let h = f.hdr();
            if h.r_ctl() == RCtl::CMD_STATUS {
                let rsp = FcpRspView::parse(f.payload()).unwrap();
                assert_eq!((rsp.status(), rsp.flags()), (0, 0), "write GOOD, no residual");
                return bursts;
            }
            assert_eq!(h.r_ctl(), RCtl::DATA_DESC, "XFER_RDY");
            assert!(h.f_ctl().has(FCtl::EX_CTX | FCtl::END_SEQ | FCtl::SEQ_INIT));
            let x = XferRdy::parse(f.payload()).unwrap();
            bursts.push(x);
            let rx = h.rx_id();
            let (s, e) = (x.offset as usize, (x.offset + x.burst_len) as usize);
            let mut o = s;
            while o < e {
                let n = chunk.min(e - o);
                self.data(ox, rx, o as u32, &data[o..o + n], o + n == e).unwrap();
                o += n;
            }
            out = self.out();
        }
    }

    /// A READ(10); returns the data (checking frame headers) and the response.
    pub fn read(&mut self, ox: u16, lba: u32, blocks: u16, dl: u32) -> (Vec<u8>, Vec<Rx>, Rx) {
        self.read_cdb(ox, &read10(lba, blocks), dl)
    }

    /// A command with Data-In on LUN 0; returns the data, its frames and the response.
    pub fn read_cdb(&mut self, ox: u16, cdb: &[u8], dl: u32) -> (Vec<u8>, Vec<Rx>, Rx) {
        let mut out = self.cmd(ox, 0, cdb, dl, true, false);
        if out.is_empty() {
            out = self.out_wait();
        }
        let rsp = out.pop().unwrap();
        assert_eq!(rsp.hdr().r_ctl(), RCtl::CMD_STATUS);
        assert!(rsp.hdr().f_ctl().has(FCtl::EX_CTX | FCtl::LAST_SEQ | FCtl::END_SEQ));
        let mut data = Vec::new();
        for f in &out {
            let h = f.hdr();
            assert_eq!((h.r_ctl(), h.fc_type(), h.ox_id()), (RCtl::SOL_DATA, FcType::FCP, ox));
            assert_eq!(h.parameter() as usize, data.len(), "relative offsets are contiguous");
            data.extend_from_slice(f.payload());
        }
        (data, out, rsp)
    }
}

pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}
