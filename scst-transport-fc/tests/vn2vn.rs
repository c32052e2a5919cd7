//! The VN2VN FCoE target port end to end with hand-built Ethernet frames: FIP probe/claim/beacon,
//! the FLOGI to a new peer and the PLOGI from the side with the higher WWPN (both orders),
//! PRLI, a READ over FCoE, and the nexus ending when the peer's beacons stop.

use scst::{Device, DeviceConfig, Disk, Lun, SgvConfig, SgvPool, Target};
use scst_backends::RamStore;
use scst_transport_fc::els::{self, ElsCmd, Login, ServiceParams};
use scst_transport_fc::fcoe;
use scst_transport_fc::fcp::{self, FcpRspView, FcpTaskAttr};
use scst_transport_fc::fip::{self, ALL_VN2VN_MACS, Subcode, VnFrame, VnIdentity, vn_mac};
use scst_transport_fc::frame::{FCtl, FcType, Frame, HeaderBuilder, RCtl, XID_UNKNOWN};
use scst_transport_fc::vn2vn::{LinkError, Vn2VnPort};
use scst_transport_fc::{PortConfig, RxError};

const T_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const I_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const I_ID: u32 = 0x00_00_42;

struct Net {
    t: Vn2VnPort,
    now: u64,
    ini: VnIdentity,
    t_id: u32,
}

fn ini(wwpn: u64) -> VnIdentity {
    VnIdentity { mac: I_MAC, wwpn, wwnn: wwpn ^ 1 << 60, fcoe_size: 2158, target: false, initiator: true }
}

impl Net {
    fn new(t_wwpn: u64, i_wwpn: u64) -> Self {
        let target = Target::new("fcoe-test", SgvPool::new(SgvConfig::default()));
        let disk = Disk::new(RamStore::new(1 << 20, 512).unwrap());
        target.add_lun(Lun(0), Device::new(DeviceConfig::new("ram0"), disk).unwrap(), false).unwrap();
        let cfg = PortConfig::new(t_wwpn, t_wwpn ^ 1 << 60);
        let t = Vn2VnPort::new(cfg, target, T_MAC, 9000, 0);
        Self { t, now: 0, ini: ini(i_wwpn), t_id: 0 }
    }

    fn out(&mut self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.t.poll_transmit()).collect()
    }

    fn fip_out(&mut self) -> Vec<VnFrame> {
        self.out().iter().map(|f| VnFrame::parse(f).unwrap()).collect()
    }

    fn fcoe_out(&mut self) -> Vec<(Vec<u8>, [u8; 6], [u8; 6])> {
        self.out()
            .iter()
            .map(|e| {
                let f = fcoe::decap(e).expect("valid FCoE with a correct CRC");
                (f.fc.to_vec(), f.dst, f.src)
            })
            .collect()
    }

    fn fip_in(&mut self, sub: Subcode, dst: [u8; 6]) {
        let f = fip::build(&self.ini, I_ID, sub, dst, 2158);
        self.t.handle_ethernet(self.now, &f).unwrap();
    }

    fn fc_in(&mut self, hb: HeaderBuilder, payload: &[u8]) -> Result<(), LinkError> {
        let mut e = Vec::new();
        fcoe::encap(vn_mac(self.t_id), I_MAC, &hb.frame(payload), &mut e);
        self.t.handle_ethernet(self.now, &e)
    }

    fn hdr(&self, r_ctl: RCtl, fc_type: FcType, f_ctl: u32, ox_id: u16, rx_id: u16) -> HeaderBuilder {
        HeaderBuilder {
            r_ctl: r_ctl.0,
            d_id: self.t_id,
            s_id: I_ID,
            fc_type: fc_type.0,
            f_ctl,
            ox_id,
            rx_id,
            ..Default::default()
        }
    }

    /// Runs the target's timers until it beacons, then the peer claims and beacons.
    fn bring_up(&mut self) {
        for _ in 0..4 {
            self.now = self.t.poll_timeout();
            self.t.handle_timeout(self.now);
        }
        let subs: Vec<Subcode> = self.fip_out().iter().map(|f| f.subcode).collect();
        assert_eq!(subs, [Subcode::PROBE_REQ, Subcode::PROBE_REQ, Subcode::CLAIM_NOTIFY, Subcode::BEACON]);
        self.t_id = self.t.fip().port_id();
        assert_eq!(self.t.port().port_id(), self.t_id, "the claimed ID is the FC port's");
        self.fip_in(Subcode::CLAIM_NOTIFY, ALL_VN2VN_MACS);
        let rep = self.fip_out();
        assert_eq!((rep.len(), rep[0].subcode, rep[0].dst), (1, Subcode::CLAIM_REP, I_MAC));
        assert_eq!(rep[0].fcp, Some((true, false)), "claims announce the FCP target feature");
        self.fip_in(Subcode::BEACON, ALL_VN2VN_MACS);
    }
}

fn acc_header(net: &Net, ox_id: u16) -> HeaderBuilder {
    net.hdr(RCtl::ELS_REP, FcType::ELS, FCtl::EX_CTX | FCtl::LAST_SEQ | FCtl::END_SEQ, ox_id, 0x300)
}

fn params(id: &VnIdentity) -> ServiceParams {
    ServiceParams {
        wwpn: id.wwpn,
        wwnn: id.wwnn,
        rdfs: 2048,
        bb_credit: 10,
        e_d_tov_ms: 2000,
        r_a_tov_ms: 10000,
        concurrent_seqs: 255,
    }
}

/// Logs in over VN2VN in the order the WWPNs dictate, then reads 3 KiB through FCoE.
fn login_and_read(t_wwpn: u64, i_wwpn: u64) -> Net {
    let mut n = Net::new(t_wwpn, i_wwpn);
    n.bring_up();
    // The peer's beacon: the target logs in to it with FLOGI, to its VN_Port MAC.
    let out = n.fcoe_out();
    assert_eq!(out.len(), 1);
    let (flogi, dst, src) = &out[0];
    assert_eq!((*dst, *src), (vn_mac(I_ID), vn_mac(n.t_id)));
    let f = Frame::parse(flogi).unwrap();
    assert_eq!((f.header().r_ctl(), f.header().d_id(), f.payload()[0]), (RCtl::ELS_REQ, I_ID, ElsCmd::FLOGI.0));
    let ox = f.header().ox_id();
    let acc = params(&n.ini).build(ElsCmd::LS_ACC, true);
    n.fc_in(acc_header(&n, ox), &acc).unwrap();
    let out = n.fcoe_out();
    if t_wwpn > i_wwpn {
        // Ours is higher: we send PLOGI, now to the MAC the peer's frames came from.
        assert_eq!(out.len(), 1, "our PLOGI");
        let (plogi, dst, _) = &out[0];
        assert_eq!(*dst, I_MAC);
        let f = Frame::parse(plogi).unwrap();
        assert_eq!(Login::parse(f.payload()).unwrap().command(), ElsCmd::PLOGI);
        let acc = params(&n.ini).build(ElsCmd::LS_ACC, false);
        n.fc_in(acc_header(&n, f.header().ox_id()), &acc).unwrap();
        assert!(n.fcoe_out().is_empty());
    } else {
        assert!(out.is_empty(), "the peer's WWPN is higher: it sends PLOGI");
        let req = n.hdr(RCtl::ELS_REQ, FcType::ELS, FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT, 7, XID_UNKNOWN);
        n.fc_in(req, &params(&n.ini).build(ElsCmd::PLOGI, false)).unwrap();
        let out = n.fcoe_out();
        let f = Frame::parse(&out[0].0).unwrap();
        assert_eq!(Login::parse(f.payload()).unwrap().command(), ElsCmd::LS_ACC);
    }
    assert_eq!(n.t.port().remote_ports().len(), 1);
    let req = n.hdr(RCtl::ELS_REQ, FcType::ELS, FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT, 8, XID_UNKNOWN);
    let prli = els::build_prli(ElsCmd::PRLI, els::SPP_ESTABLISH_IMAGE_PAIR, els::fcp_params::INITIATOR);
    n.fc_in(req, &prli).unwrap();
    assert_eq!(els::Prli::parse(Frame::parse(&n.fcoe_out()[0].0).unwrap().payload()).unwrap().response().0, 1);
    assert!(n.t.port().session(I_ID).is_some());
    // READ(10) of 6 blocks, twice (the first one collects the unit attention).
    let cmd = n.hdr(RCtl::UNSOL_CMD, FcType::FCP, FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT, 9, XID_UNKNOWN);
    let iu = fcp::build_cmnd([0; 8], FcpTaskAttr::SIMPLE, 0, true, false, &[0x28, 0, 0, 0, 0, 0, 0, 0, 6, 0], 3072);
    n.fc_in(cmd, &iu).unwrap();
    assert_eq!(FcpRspView::parse(Frame::parse(&n.fcoe_out()[0].0).unwrap().payload()).unwrap().status(), 2);
    n.fc_in(HeaderBuilder { ox_id: 10, ..cmd }, &iu).unwrap();
    let out = n.fcoe_out();
    assert_eq!(out.len(), 3, "two data frames (2048 + 1024) and the response");
    let mut total = 0;
    for (i, (fc, dst, _)) in out.iter().enumerate() {
        assert_eq!(*dst, I_MAC);
        let f = Frame::parse(fc).unwrap();
        if i < 2 {
            assert_eq!(f.header().parameter() as usize, total);
            total += f.payload().len();
        } else {
            assert_eq!(FcpRspView::parse(f.payload()).unwrap().status(), 0);
        }
    }
    assert_eq!(total, 3072);
    n
}

#[test]
fn target_with_the_higher_wwpn_sends_plogi() {
    login_and_read(0x2000_0000_0000_ffff, 0x1000_0000_0000_0001);
}

#[test]
fn initiator_with_the_higher_wwpn_sends_plogi() {
    login_and_read(0x1000_0000_0000_0001, 0x2000_0000_0000_ffff);
}

#[test]
fn a_peer_that_stops_beaconing_loses_its_nexus() {
    let mut n = login_and_read(0x2000_0000_0000_ffff, 0x1000_0000_0000_0001);
    let s = n.t.port().session(I_ID).unwrap().clone();
    let last = n.now;
    n.now = last + fip::BEACON_TIMEOUT - 1;
    n.t.handle_timeout(n.now);
    assert!(!s.is_closed());
    n.now = last + fip::BEACON_TIMEOUT;
    n.t.handle_timeout(n.now);
    assert!(s.is_closed());
    assert!(n.t.port().remote_ports().is_empty());
}

#[test]
fn frames_not_for_this_port_are_refused() {
    let mut n = Net::new(0x2000_0000_0000_ffff, 0x1000_0000_0000_0001);
    // Before the claim: no N_Port ID, no FCoE.
    let mut e = Vec::new();
    fcoe::encap(vn_mac(0x1234), I_MAC, &HeaderBuilder::default().frame(&[]), &mut e);
    assert_eq!(n.t.handle_ethernet(0, &e), Err(LinkError::NotForUs));
    n.bring_up();
    n.out();
    // Another VN_Port's MAC.
    let mut e = Vec::new();
    fcoe::encap(vn_mac(0x999), I_MAC, &HeaderBuilder { d_id: 0x999, ..Default::default() }.frame(&[]), &mut e);
    assert_eq!(n.t.handle_ethernet(n.now, &e), Err(LinkError::NotForUs));
    // A bad CRC.
    let mut e = Vec::new();
    fcoe::encap(
        vn_mac(n.t_id),
        I_MAC,
        &n.hdr(RCtl::ELS_REQ, FcType::ELS, 0, 1, XID_UNKNOWN).frame(&[5, 0, 0, 0]),
        &mut e,
    );
    let at = e.len() - 10;
    e[at] ^= 0xff;
    assert!(matches!(n.t.handle_ethernet(n.now, &e), Err(LinkError::Fcoe(fcoe::FcoeError::Crc { .. }))));
    // IPv4 is not ours.
    let mut ip = vec![0u8; 60];
    ip[12..14].copy_from_slice(&[0x08, 0x00]);
    assert_eq!(n.t.handle_ethernet(n.now, &ip), Err(LinkError::Ethertype(0x0800)));
    // An FC frame that the port refuses surfaces as such.
    let bad = n.fc_in(n.hdr(RCtl::UNSOL_CMD, FcType::FCP, 0, 1, XID_UNKNOWN), &[0; 8]);
    assert!(matches!(bad, Err(LinkError::Fc(RxError::Unexpected(_)))));
}

#[test]
fn fip_encapsulated_flogi_is_answered_over_fip_and_a_reclaim_logs_in_again() {
    let mut n = Net::new(0x1000_0000_0000_0001, 0x2000_0000_0000_ffff);
    n.bring_up();
    assert_eq!(n.fcoe_out().len(), 1, "our FLOGI after the first beacon");
    // libfcoe in VN2VN mode sends its FLOGI inside FIP (operation 2, FLOGI descriptor).
    let req = n.hdr(RCtl::ELS_REQ, FcType::ELS, FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT, 0x31, XID_UNKNOWN);
    let fc = req.frame(&params(&n.ini).build(ElsCmd::FLOGI, true));
    let e = fip::build_els(I_MAC, T_MAC, fip::LS_REQUEST, fip::desc::FLOGI, &fc, Some(vn_mac(I_ID)));
    n.t.handle_ethernet(n.now, &e).unwrap();
    let out = n.out();
    assert_eq!(out.len(), 1, "the reply, over FIP; no PLOGI: the peer's WWPN is higher");
    let r = fip::FipEls::parse(&out[0]).unwrap();
    assert_eq!(
        (r.subcode, r.dtype, r.mac, &out[0][..6]),
        (fip::LS_REPLY, fip::desc::FLOGI, Some(vn_mac(n.t_id)), &I_MAC[..])
    );
    let f = Frame::parse(r.fc).unwrap();
    assert_eq!((f.header().ox_id(), f.header().d_id()), (0x31, I_ID));
    assert_eq!(Login::parse(f.payload()).unwrap().command(), ElsCmd::LS_ACC);
    // An LS_RJT goes back over FIP without a MAC descriptor: here an RRQ in a LOGO descriptor
    // (FIP carries no RRQ, but the reply path is the same) from a port not logged in.
    let logo = n.hdr(RCtl::ELS_REQ, FcType::ELS, FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT, 0x32, XID_UNKNOWN);
    let e =
        fip::build_els(I_MAC, T_MAC, fip::LS_REQUEST, fip::desc::LOGO, &logo.frame(&els::build_rrq(I_ID, 1, 2)), None);
    n.t.handle_ethernet(n.now, &e).unwrap_err();
    let r = n.out();
    let r = fip::FipEls::parse(&r[0]).unwrap();
    assert_eq!((r.dtype, r.mac), (fip::desc::LOGO, None));
    assert_eq!(
        els::parse_ls_rjt(Frame::parse(r.fc).unwrap().payload()).unwrap().1,
        els::RjtExplanation::PLOGI_REQUIRED
    );
    // The peer restarts: it claims again, and its next beacon brings a new FLOGI from us.
    n.fip_in(Subcode::CLAIM_NOTIFY, ALL_VN2VN_MACS);
    assert_eq!(n.fip_out()[0].subcode, Subcode::CLAIM_REP);
    n.fip_in(Subcode::BEACON, ALL_VN2VN_MACS);
    let out = n.fcoe_out();
    assert_eq!(out.len(), 1);
    assert_eq!(Frame::parse(&out[0].0).unwrap().payload()[0], ElsCmd::FLOGI.0);
    // A malformed FIP LS frame is refused.
    let mut bad = fip::build_els(I_MAC, T_MAC, fip::LS_REQUEST, fip::desc::FLOGI, &fc, None);
    bad[25] = 200;
    assert!(matches!(n.t.handle_ethernet(n.now, &bad), Err(LinkError::Fip(_))));
}
