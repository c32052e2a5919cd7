//! The sans-IO FC port against a real scst target with a RAM disk, driven by hand-built
//! initiator frames: logins, FCP reads and writes, task management, ABTS, malformed input.

mod common;

use std::sync::Arc;

use common::*;
use scst_transport_fc::bls::{self, BaAcc};
use scst_transport_fc::els::{self, ElsCmd, Login, Prli};
use scst_transport_fc::fcp::{self, FcpRspView, FcpTaskAttr, RspCode, XferRdy, rsp_flags, tm_flags};
use scst_transport_fc::frame::{FCtl, FcType, HeaderBuilder, RCtl, XID_UNKNOWN};
use scst_transport_fc::{PortEvent, RxError};

#[test]
fn plogi_prli_logo_with_fc_identity() {
    let mut r = rig();
    let acc = r.plogi(2048);
    let l = Login::parse(acc.payload()).unwrap();
    assert_eq!((l.command(), l.wwpn(), l.wwnn()), (ElsCmd::LS_ACC, TGT_WWPN, 0x1000_0011_2233_4455));
    assert_eq!((l.common_rdfs(), l.class3_rdfs()), (2048, 2048));
    assert_eq!(l.class3_options() & els::CLASS_VALID, els::CLASS_VALID);
    assert_eq!(r.events(), [PortEvent::LoggedIn { port_id: INI, wwpn: INI_WWPN }]);
    assert!(r.port.session(INI).is_none(), "no I_T nexus before PRLI");

    let acc = r.prli();
    let v = Prli::parse(acc.payload()).unwrap();
    assert_eq!(v.command(), ElsCmd::LS_ACC);
    assert_eq!(v.fc4_type(), 8);
    assert_eq!(v.response(), els::PrliResponse::EXECUTED);
    assert_eq!(v.flags() & els::SPP_ESTABLISH_IMAGE_PAIR, els::SPP_ESTABLISH_IMAGE_PAIR);
    // Target function, no XFER_RDY for reads; no retry, no confirmed completion.
    assert_eq!(v.params(), els::fcp_params::TARGET | els::fcp_params::READ_XFER_RDY_DISABLED);
    assert_eq!(r.events(), [PortEvent::ProcessLoggedIn { port_id: INI, wwpn: INI_WWPN }]);
    let s = r.port.session(INI).unwrap().clone();
    assert_eq!(s.config().initiator_name, "21:00:00:24:ff:31:4c:2a");
    assert_eq!(s.port().protocol, scst::ProtocolId::FC);
    assert_eq!(r.target.sessions().len(), 1);
    let rp = r.port.remote_ports();
    assert_eq!((rp.len(), rp[0].wwpn, rp[0].session, rp[0].max_payload), (1, INI_WWPN, true, 2048));

    // ADISC while logged in.
    let a = r.els(4, &els::build_adisc(ElsCmd::ADISC, INI_WWPN, 0, INI));
    let a = els::Adisc::parse(a.payload()).unwrap();
    assert_eq!((a.wwpn(), a.port_id()), (TGT_WWPN, TGT));

    let acc = r.els(5, &els::build_logo(INI, INI_WWPN));
    assert_eq!(acc.payload(), &els::LS_ACC);
    assert!(s.is_closed());
    assert!(r.target.sessions().is_empty());
    assert!(r.port.remote_ports().is_empty());
    assert_eq!(r.events(), [PortEvent::ProcessLoggedOut { port_id: INI }, PortEvent::LoggedOut { port_id: INI }]);
}

#[test]
fn prlo_ends_the_nexus_but_keeps_the_login() {
    let mut r = rig();
    r.login(2048);
    let s = r.port.session(INI).unwrap().clone();
    let acc = r.els(9, &els::build_prli(ElsCmd::PRLO, 0, 0));
    let v = Prli::parse(acc.payload()).unwrap();
    assert_eq!((v.command(), v.response()), (ElsCmd::LS_ACC, els::PrliResponse::EXECUTED));
    assert!(s.is_closed());
    assert_eq!(r.events(), [PortEvent::ProcessLoggedOut { port_id: INI }]);
    assert_eq!(r.port.remote_ports().len(), 1);
    // An FCP command now is discarded and answered with PRLO.
    let out = r.cmd(10, 0, &[0; 6], 0, false, false);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].hdr().r_ctl(), out[0].payload()[0]), (RCtl::ELS_REQ, ElsCmd::PRLO.0));
    // PRLI again: a new nexus with a new power-on unit attention.
    r.prli();
    assert!(r.port.session(INI).is_some_and(|n| !Arc::ptr_eq(n, &s)));
}

#[test]
fn requests_from_ports_not_logged_in_are_rejected() {
    let mut r = rig();
    let rjt = r.prli();
    assert_eq!(
        els::parse_ls_rjt(rjt.payload()).unwrap(),
        (els::RjtReason::UNABLE, els::RjtExplanation::PLOGI_REQUIRED)
    );
    let rjt = r.els(7, &els::build_rrq(INI, 1, 2));
    assert_eq!(els::parse_ls_rjt(rjt.payload()).unwrap().1, els::RjtExplanation::PLOGI_REQUIRED);
    // LOGO from a stranger is accepted (FC-LS-3).
    assert_eq!(r.els(8, &els::build_logo(INI, INI_WWPN)).payload(), &els::LS_ACC);
    // FCP_CMND: discarded, the target sends LOGO.
    let out = r.cmd(11, 0, &read10(0, 1), 512, true, false);
    assert_eq!(out.len(), 1);
    let h = out[0].hdr();
    assert_eq!((h.r_ctl(), h.d_id(), h.rx_id()), (RCtl::ELS_REQ, INI, XID_UNKNOWN));
    assert!(!h.f_ctl().has(FCtl::EX_CTX) && h.f_ctl().has(FCtl::SEQ_INIT));
    let logo = els::Logo::parse(out[0].payload()).unwrap();
    assert_eq!((logo.port_id(), logo.wwpn()), (TGT, TGT_WWPN));
    // Its LS_ACC closes the originated exchange; a second reply is unexpected.
    let acc = HeaderBuilder {
        r_ctl: RCtl::ELS_REP.0,
        d_id: TGT,
        s_id: INI,
        fc_type: FcType::ELS.0,
        f_ctl: FCtl::EX_CTX | FCtl::LAST_SEQ | FCtl::END_SEQ,
        ox_id: h.ox_id(),
        rx_id: 0x77,
        ..Default::default()
    };
    assert_eq!(r.send(acc, &els::LS_ACC), Ok(()));
    assert!(matches!(r.send(acc, &els::LS_ACC), Err(RxError::Unexpected(_))));
    // Unsupported ELS (SCR) gets LS_RJT "not supported" once logged in.
    r.plogi(2048);
    let rjt = r.els(12, &[ElsCmd::SCR.0, 0, 0, 0, 0, 0, 0, 3]);
    assert_eq!(els::parse_ls_rjt(rjt.payload()).unwrap().0, els::RjtReason::UNSUPPORTED);
    // A frame for another D_ID is not ours.
    let mut hb = hdr(RCtl::ELS_REQ, FcType::ELS, 0, 1, XID_UNKNOWN, 0);
    hb.d_id = 0x0a0009;
    assert_eq!(r.send(hb, &els::LS_ACC), Err(RxError::NotForUs(0x0a0009)));
    assert!(r.out().is_empty());
}

#[test]
fn prli_refused_without_initiator_function_or_by_acl() {
    let mut r = rig();
    r.plogi(2048);
    let acc = r.els(2, &els::build_prli(ElsCmd::PRLI, els::SPP_ESTABLISH_IMAGE_PAIR, 0));
    assert_eq!(Prli::parse(acc.payload()).unwrap().response(), els::PrliResponse::CONFIGURATION_PRECLUDES);
    assert!(r.port.session(INI).is_none());
    r.target.set_refuse_unmatched(true);
    let acc = r.prli();
    assert_eq!(Prli::parse(acc.payload()).unwrap().response(), els::PrliResponse::CONFIGURATION_PRECLUDES);
    assert!(r.port.session(INI).is_none());
}

fn flogi_acc_and_plogi(initiator_wwpn: u64) -> (Rig, Vec<Rx>) {
    let mut r = rig();
    let f = ini_params(2048, initiator_wwpn).build(ElsCmd::FLOGI, true);
    let hb = hdr(RCtl::ELS_REQ, FcType::ELS, FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT, 0x10, XID_UNKNOWN, 0);
    r.send(hb, &f).unwrap();
    let out = r.out();
    let l = Login::parse(out[0].payload()).unwrap();
    assert_eq!((l.command(), l.wwpn(), l.common_word2()), (ElsCmd::LS_ACC, TGT_WWPN, 10000));
    assert_eq!(l.features() & els::features::F_PORT, 0, "we are an N_Port");
    assert_eq!(r.events(), [PortEvent::FlogiAccepted { port_id: INI, wwpn: initiator_wwpn }]);
    (r, out)
}

#[test]
fn flogi_from_lower_wwpn_makes_the_target_originate_plogi() {
    let (mut r, out) = flogi_acc_and_plogi(0x1000_0000_0000_0001);
    assert_eq!(out.len(), 2, "LS_ACC, then our PLOGI");
    let h = out[1].hdr();
    assert_eq!((h.r_ctl(), h.d_id(), h.s_id(), h.rx_id()), (RCtl::ELS_REQ, INI, TGT, XID_UNKNOWN));
    let l = Login::parse(out[1].payload()).unwrap();
    assert_eq!((l.command(), l.wwpn()), (ElsCmd::PLOGI, TGT_WWPN));
    // The initiator accepts with a smaller frame size: that is what Data-In uses.
    let acc = ini_params(1024, 0x1000_0000_0000_0001).build(ElsCmd::LS_ACC, false);
    let hb = HeaderBuilder {
        r_ctl: RCtl::ELS_REP.0,
        d_id: TGT,
        s_id: INI,
        fc_type: FcType::ELS.0,
        f_ctl: FCtl::EX_CTX | FCtl::LAST_SEQ | FCtl::END_SEQ,
        ox_id: h.ox_id(),
        rx_id: 0x20,
        ..Default::default()
    };
    r.send(hb, &acc).unwrap();
    assert_eq!(r.events(), [PortEvent::LoggedIn { port_id: INI, wwpn: 0x1000_0000_0000_0001 }]);
    assert_eq!(r.port.remote_ports()[0].max_payload, 1024);
    assert_eq!(r.prli().payload()[0], ElsCmd::LS_ACC.0);
    assert!(r.port.session(INI).is_some());
}

#[test]
fn flogi_from_higher_wwpn_waits_for_its_plogi() {
    let (mut r, out) = flogi_acc_and_plogi(0x2fff_0000_0000_0001);
    assert_eq!(out.len(), 1, "only the LS_ACC: the initiator sends PLOGI");
    let acc = r.els(1, &ini_params(2048, 0x2fff_0000_0000_0001).build(ElsCmd::PLOGI, false));
    assert_eq!(acc.payload()[0], ElsCmd::LS_ACC.0);
    assert_eq!(r.port.remote_ports().len(), 1);
}

#[test]
fn originated_plogi_times_out_after_two_r_a_tov() {
    let mut r = rig();
    r.port.originate_plogi(INI);
    assert_eq!(r.out().len(), 1);
    assert_eq!(r.port.poll_timeout(), Some(20_000));
    r.port.handle_timeout(19_999);
    assert!(r.events().is_empty());
    r.port.handle_timeout(20_000);
    assert_eq!(r.events(), [PortEvent::ElsFailed { port_id: INI, cmd: ElsCmd::PLOGI }]);
    assert_eq!(r.port.poll_timeout(), None);
}

#[test]
fn write_in_xfer_rdy_bursts_then_read_split_at_the_frame_size() {
    let mut r = rig_with(|c| c.max_burst = 4096);
    r.login(1024);
    let data = pattern(12 * BS, 7);
    let bursts = r.write(20, 100, &data, 1024);
    assert_eq!(bursts, [XferRdy { offset: 0, burst_len: 4096 }, XferRdy { offset: 4096, burst_len: 2048 }]);
    let (got, frames, rsp) = r.read(21, 100, 12, data.len() as u32);
    assert_eq!(got, data, "the bytes written are on the RAM disk");
    assert_eq!(frames.len(), 6, "6 KiB in 1024-byte frames");
    let seq = frames[0].hdr().seq_id();
    for (i, f) in frames.iter().enumerate() {
        let h = f.hdr();
        assert_eq!(f.payload().len(), 1024);
        assert_eq!((h.seq_id(), h.seq_cnt(), h.parameter()), (seq, i as u16, 1024 * i as u32));
        assert!(h.f_ctl().has(FCtl::EX_CTX | FCtl::REL_OFF));
        assert_eq!(h.f_ctl().has(FCtl::END_SEQ), i == 5, "END_SEQ on the last data frame only");
        assert!(!h.f_ctl().has(FCtl::SEQ_CTX));
        assert_ne!(h.rx_id(), XID_UNKNOWN);
    }
    let v = FcpRspView::parse(rsp.payload()).unwrap();
    assert_eq!((v.status(), v.flags()), (0, 0));
    assert_ne!(rsp.hdr().seq_id(), seq, "the response is a new sequence");
    assert_eq!(r.port.open_exchanges(), 0);
}

#[test]
fn write_frames_out_of_order_and_duplicated_land_once() {
    let mut r = rig();
    r.login(2048);
    let data = pattern(4 * BS, 3);
    let out = r.cmd(30, 0, &write10(8, 4), 2048, false, true);
    assert_eq!(out.len(), 1);
    let x = XferRdy::parse(out[0].payload()).unwrap();
    assert_eq!(x, XferRdy { offset: 0, burst_len: 2048 });
    let rx = out[0].hdr().rx_id();
    r.data(30, rx, 1024, &data[1024..2048], true).unwrap();
    r.data(30, rx, 1024, &data[1024..2048], true).unwrap();
    assert!(r.out().is_empty(), "half the burst is missing");
    // Outside the burst: refused, nothing written.
    assert!(r.data(30, rx, 2048, &[0xee; 512], false).is_err());
    r.data(30, rx, 0, &data[..1024], false).unwrap();
    let out = r.out();
    assert_eq!(out.len(), 1);
    assert_eq!(FcpRspView::parse(out[0].payload()).unwrap().status(), 0);
    let (got, _, _) = r.read(31, 8, 4, 2048);
    assert_eq!(got, data);
    // A data frame for the finished exchange is not accepted.
    assert!(r.data(30, rx, 0, &data[..4], false).is_err());
}

#[test]
fn residuals_under_and_over() {
    let mut r = rig();
    r.login(2048);
    let (got, _, rsp) = r.read(40, 0, 1, 1024);
    assert_eq!(got.len(), 512);
    let v = FcpRspView::parse(rsp.payload()).unwrap();
    assert_eq!((v.status(), v.flags(), v.resid()), (0, rsp_flags::RESID_UNDER, 512));
    let (got, _, rsp) = r.read(41, 0, 2, 256);
    assert_eq!(got.len(), 256, "Data-In stops at FCP_DL");
    let v = FcpRspView::parse(rsp.payload()).unwrap();
    assert_eq!((v.status(), v.flags(), v.resid()), (0, rsp_flags::RESID_OVER, 768));
    // An odd length: the last frame carries fill bytes, which the F_CTL announces.
    let inq = [0x12, 0, 0, 0, 5, 0];
    let out = r.cmd(42, 0, &inq, 5, true, false);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].hdr().f_ctl().fill(), 3);
    assert_eq!(out[0].bytes.len(), 24 + 8);
    assert_eq!(out[0].payload().len(), 5);
    assert_eq!(out[0].payload()[0], 0, "direct-access device");
}

#[test]
fn bad_lun_gets_check_condition_with_sense() {
    let mut r = rig();
    r.login(2048);
    let out = r.cmd(50, 5, &read10(0, 1), 512, true, false);
    assert_eq!(out.len(), 1, "no data, only the response");
    let v = FcpRspView::parse(out[0].payload()).unwrap();
    assert_eq!(v.status(), 2);
    assert_eq!(v.flags() & rsp_flags::SNS_LEN_VALID, rsp_flags::SNS_LEN_VALID);
    let s = v.sense();
    assert_eq!((s[2] & 0x0f, s[12], s[13]), (0x05, 0x25, 0x00), "LOGICAL UNIT NOT SUPPORTED");
    assert_eq!(v.flags() & rsp_flags::RESID_UNDER, rsp_flags::RESID_UNDER);
    assert_eq!(v.resid(), 512);
}

#[test]
fn abts_mid_write_aborts_and_qualifies_the_exchange_until_rrq() {
    let mut r = rig_with(|c| c.max_burst = 2048);
    r.login(2048);
    let out = r.cmd(60, 0, &write10(200, 8), 4096, false, true);
    let rx = out[0].hdr().rx_id();
    r.data(60, rx, 0, &[0xab; 1024], false).unwrap();
    let out = r.abts(60, rx);
    assert_eq!(out.len(), 1);
    let h = out[0].hdr();
    assert_eq!((h.r_ctl(), h.fc_type(), h.ox_id(), h.rx_id()), (RCtl::BA_ACC, FcType::BLS, 60, rx));
    assert!(h.f_ctl().has(FCtl::EX_CTX | FCtl::LAST_SEQ | FCtl::END_SEQ));
    let acc = BaAcc::parse(out[0].payload()).unwrap();
    assert_eq!((acc.ox_id, acc.rx_id, acc.seq_id), (60, rx, None));
    // The rest of the burst is refused and nothing reaches the medium.
    assert!(r.data(60, rx, 1024, &[0xab; 1024], true).is_err());
    assert!(r.out().is_empty());
    let (got, _, _) = r.read(61, 200, 8, 4096);
    assert_eq!(got, vec![0; 4096]);
    // The OX_ID stays qualified: a command reusing it is dropped until RRQ.
    assert!(r.cmd(60, 0, &[0; 6], 0, false, false).is_empty());
    let rjt = r.els(62, &els::build_rrq(INI, 60, rx ^ 1));
    assert_eq!(els::parse_ls_rjt(rjt.payload()).unwrap().1, els::RjtExplanation::OX_RX_ID);
    assert_eq!(r.els(63, &els::build_rrq(INI, 60, rx)).payload(), &els::LS_ACC);
    let out = r.cmd(60, 0, &[0; 6], 0, false, false);
    assert_eq!(FcpRspView::parse(out[0].payload()).unwrap().status(), 0);
    assert_eq!(r.port.open_exchanges(), 0);
    // ABTS of nothing: BA_RJT.
    let out = r.abts(99, XID_UNKNOWN);
    assert_eq!(out[0].hdr().r_ctl(), RCtl::BA_RJT);
    assert_eq!(bls::parse_ba_rjt(out[0].payload()).unwrap().1, bls::BaRjtExplanation::INVALID_XID);
}

#[test]
fn recovery_qualifier_expires_after_r_a_tov() {
    let mut r = rig();
    r.login(2048);
    r.now = 1000;
    let out = r.cmd(70, 0, &write10(0, 1), 512, false, true);
    let rx = out[0].hdr().rx_id();
    assert_eq!(r.abts(70, rx)[0].hdr().r_ctl(), RCtl::BA_ACC);
    assert_eq!(r.port.poll_timeout(), Some(11_000));
    r.port.handle_timeout(10_999);
    assert_eq!(r.port.open_exchanges(), 1);
    r.port.handle_timeout(11_000);
    assert_eq!(r.port.open_exchanges(), 0);
    assert!(r.out().is_empty());
}

#[test]
fn stalled_write_fails_with_initiator_response_timeout() {
    let mut r = rig_with(|c| c.data_timeout_ms = 500);
    r.login(2048);
    let out = r.cmd(80, 0, &write10(0, 2), 1024, false, true);
    let rx = out[0].hdr().rx_id();
    r.now = 400;
    r.data(80, rx, 0, &[1; 512], false).unwrap();
    r.port.handle_timeout(800);
    assert!(r.out().is_empty(), "data arrived at 400: due at 900");
    r.port.handle_timeout(900);
    let out = r.out();
    let v = FcpRspView::parse(out[0].payload()).unwrap();
    assert_eq!((v.status(), v.sense()[2] & 0xf, v.sense()[12], v.sense()[13]), (2, 0x0b, 0x4b, 0x06));
    assert_eq!(r.port.open_exchanges(), 0);
}

#[test]
fn lun_reset_aborts_a_held_write_and_raises_a_unit_attention() {
    let mut r = rig();
    r.login(2048);
    let out = r.cmd(90, 0, &write10(300, 2), 1024, false, true);
    let wrx = out[0].hdr().rx_id();
    let out = r.cmd_tm(91, 0, tm_flags::LUN_RESET, &[], 0, false, false);
    assert_eq!(out.len(), 1, "only the TMF response: the held write is dropped silently");
    let v = FcpRspView::parse(out[0].payload()).unwrap();
    assert_eq!((v.status(), v.flags(), v.rsp_code()), (0, rsp_flags::RSP_LEN_VALID, Some(RspCode::TMF_COMPLETE)));
    assert_eq!(out[0].hdr().ox_id(), 91);
    assert!(r.data(90, wrx, 0, &[5; 1024], true).is_err());
    let out = r.cmd(92, 0, &[0; 6], 0, false, false);
    let v = FcpRspView::parse(out[0].payload()).unwrap();
    assert_eq!((v.status(), v.sense()[12], v.sense()[13]), (2, 0x29, 0x03), "BUS DEVICE RESET FUNCTION OCCURRED");
    let (got, _, _) = r.read(93, 300, 2, 1024);
    assert_eq!(got, vec![0; 1024]);
}

#[test]
fn task_management_response_codes() {
    let mut r = rig();
    r.login(2048);
    let code = |r: &mut Rig, ox, lun, tm| {
        let out = r.cmd_tm(ox, lun, tm, &[], 0, false, false);
        assert_eq!(out.len(), 1);
        FcpRspView::parse(out[0].payload()).unwrap().rsp_code()
    };
    assert_eq!(code(&mut r, 1, 0, tm_flags::ABORT_TASK_SET), Some(RspCode::TMF_COMPLETE));
    assert_eq!(code(&mut r, 2, 0, tm_flags::CLEAR_TASK_SET), Some(RspCode::TMF_COMPLETE));
    assert_eq!(code(&mut r, 3, 0, tm_flags::TARGET_RESET), Some(RspCode::TMF_COMPLETE));
    assert_eq!(code(&mut r, 4, 7, tm_flags::LUN_RESET), Some(RspCode::TMF_INCORRECT_LUN));
    assert_eq!(code(&mut r, 5, 0, tm_flags::LUN_RESET | tm_flags::ABORT_TASK_SET), Some(RspCode::CMND_FIELDS_INVALID));
    let clear_aca = code(&mut r, 6, 0, tm_flags::CLEAR_ACA);
    assert!(clear_aca.is_some());
    assert_eq!(r.port.open_exchanges(), 0);
}

#[test]
fn malformed_frames_are_clean_errors() {
    let mut r = rig();
    assert!(matches!(r.port.handle_frame(0, &[0; 10]), Err(RxError::Malformed(_))));
    // A truncated PLOGI: LS_RJT, no login.
    let hb = hdr(RCtl::ELS_REQ, FcType::ELS, FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT, 1, XID_UNKNOWN, 0);
    assert!(matches!(r.send(hb, &[ElsCmd::PLOGI.0, 0, 0, 0]), Err(RxError::Malformed(_))));
    let out = r.out();
    assert_eq!(els::parse_ls_rjt(out[0].payload()).unwrap().0, els::RjtReason::PROTOCOL_ERROR);
    assert!(r.port.remote_ports().is_empty());
    // An empty ELS.
    assert!(r.send(hb, &[]).is_err());
    assert_eq!(r.out().len(), 1);
    // A PLOGI announcing a 128-byte receive size: rejected.
    let mut p = ini_params(2048, INI_WWPN).build(ElsCmd::PLOGI, false);
    p[74..76].copy_from_slice(&128u16.to_be_bytes());
    assert!(r.send(hb, &p).is_err());
    assert_eq!(els::parse_ls_rjt(r.out()[0].payload()).unwrap().0, els::RjtReason::UNABLE);
    r.login(2048);
    // A truncated FCP_CMND: FCP_RSP with "FCP_CMND fields invalid".
    let c = hdr(RCtl::UNSOL_CMD, FcType::FCP, FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT, 5, XID_UNKNOWN, 0);
    assert!(r.send(c, &[0; 20]).is_err());
    let out = r.out();
    assert_eq!(FcpRspView::parse(out[0].payload()).unwrap().rsp_code(), Some(RspCode::CMND_FIELDS_INVALID));
    // Bidirectional: refused the same way.
    let iu = fcp::build_cmnd([0; 8], FcpTaskAttr::SIMPLE, 0, true, true, &read10(0, 1), 512);
    assert!(r.send(c, &iu).is_err());
    assert_eq!(FcpRspView::parse(r.out()[0].payload()).unwrap().rsp_code(), Some(RspCode::CMND_FIELDS_INVALID));
    // Pseudo-random frames (with our D_ID and plausible R_CTL/TYPE) never panic and leave the
    // port usable.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..20_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 200) as usize;
        let mut f: Vec<u8> = (0..len).map(|k| (x >> (k % 57)) as u8 ^ k as u8).collect();
        if f.len() >= 24 {
            f[0] = [0x22, 0x23, 0x06, 0x01, 0x81, 0x84][i as usize % 6];
            f[1..4].copy_from_slice(&TGT.to_be_bytes()[1..]);
            f[5..8].copy_from_slice(&INI.to_be_bytes()[1..]);
            f[8] = [1, 8, 0][i as usize % 3];
            if i % 4 == 0 {
                f[9] &= 0x7f;
            }
        }
        let _ = r.port.handle_frame(u64::from(i), &f);
        while r.port.poll_transmit().is_some() {}
    }
    r.port.link_down();
    r.events();
    r.login(2048);
    let (got, _, _) = r.read(0x500, 0, 1, 512);
    assert_eq!(got.len(), 512);
}

#[test]
fn a_new_plogi_ends_the_old_nexus() {
    let mut r = rig();
    r.login(2048);
    let s = r.port.session(INI).unwrap().clone();
    let out = r.cmd(100, 0, &write10(0, 1), 512, false, true);
    assert_eq!(out.len(), 1);
    r.plogi(2048);
    assert!(s.is_closed());
    assert_eq!(r.port.open_exchanges(), 0, "the held write went with it");
    assert_eq!(s.outstanding(), 0);
    assert!(r.port.session(INI).is_none());
}

#[test]
fn persistent_reservations_carry_the_fc_transport_id() {
    let mut r = rig();
    r.login(2048);
    // PERSISTENT RESERVE OUT, REGISTER with service action key 0x1122.
    let mut params = [0u8; 24];
    params[8..16].copy_from_slice(&0x1122u64.to_be_bytes());
    let prout = [0x5f, 0x00, 0, 0, 0, 0, 0, 0, 24, 0];
    let out = r.cmd(0x200, 0, &prout, 24, false, true);
    let rx = out[0].hdr().rx_id();
    assert_eq!(XferRdy::parse(out[0].payload()).unwrap().burst_len, 24);
    r.data(0x200, rx, 0, &params, true).unwrap();
    assert_eq!(FcpRspView::parse(r.out()[0].payload()).unwrap().status(), 0);
    // PERSISTENT RESERVE IN, READ FULL STATUS.
    let (d, _, rsp) = r.read_cdb(0x201, &[0x5e, 0x03, 0, 0, 0, 0, 0, 0x01, 0x00, 0], 256);
    assert_eq!(FcpRspView::parse(rsp.payload()).unwrap().status(), 0);
    assert_eq!(&d[8..16], &0x1122u64.to_be_bytes(), "the registered key");
    assert_eq!(u32::from_be_bytes([d[28], d[29], d[30], d[31]]), 24, "a 24-byte TransportID");
    let tid = &d[32..56];
    assert_eq!(tid[0], 0x00, "format 00b, protocol 0 (Fibre Channel)");
    assert_eq!(&tid[8..16], &INI_WWPN.to_be_bytes(), "the initiator's N_Port_Name");
}

#[test]
fn a_flogi_from_a_logged_in_port_starts_its_login_over() {
    let mut r = rig();
    r.login(2048);
    let s = r.port.session(INI).unwrap().clone();
    // The initiator (lower WWPN than ours) restarted and sends FLOGI again.
    let f = ini_params(2048, 0x1000_0000_0000_0001).build(ElsCmd::FLOGI, true);
    let hb = hdr(RCtl::ELS_REQ, FcType::ELS, FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT, 0x40, XID_UNKNOWN, 0);
    r.send(hb, &f).unwrap();
    assert!(s.is_closed(), "the old nexus ended");
    let out = r.out();
    assert_eq!(out.len(), 2, "LS_ACC, then our PLOGI (our WWPN is higher)");
    assert_eq!(Login::parse(out[1].payload()).unwrap().command(), ElsCmd::PLOGI);
    assert!(r.port.remote_ports().is_empty());
}

#[test]
fn two_initiators_are_separate_nexuses_and_a_target_reset_reaches_both() {
    const INI2: u32 = 0x0a_00_03;
    let mut r = rig();
    r.login(2048);
    // A second initiator: its own PLOGI, PRLI and session.
    let from2 = |mut hb: HeaderBuilder| {
        hb.s_id = INI2;
        hb
    };
    let req = hdr(RCtl::ELS_REQ, FcType::ELS, FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT, 1, XID_UNKNOWN, 0);
    r.send(from2(req), &ini_params(2048, 0x2100_0000_0000_0003).build(ElsCmd::PLOGI, false)).unwrap();
    let prli = els::build_prli(ElsCmd::PRLI, els::SPP_ESTABLISH_IMAGE_PAIR, els::fcp_params::INITIATOR);
    r.send(from2(HeaderBuilder { ox_id: 2, ..req }), &prli).unwrap();
    assert_eq!(r.out().len(), 2);
    let s1 = r.port.session(INI).unwrap().clone();
    let s2 = r.port.session(INI2).unwrap().clone();
    assert_eq!(s2.config().initiator_name, "21:00:00:00:00:00:00:03");
    assert_eq!(r.target.sessions().len(), 2);
    // Initiator 2 holds a write waiting for data; initiator 1 resets the target.
    let iu = fcp::build_cmnd([0; 8], FcpTaskAttr::SIMPLE, 0, false, true, &write10(0, 1), 512);
    let c = hdr(RCtl::UNSOL_CMD, FcType::FCP, FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT, 9, XID_UNKNOWN, 0);
    r.send(from2(c), &iu).unwrap();
    let xrdy = r.out();
    assert_eq!((xrdy.len(), xrdy[0].hdr().d_id()), (1, INI2));
    let out = r.cmd_tm(10, 0, tm_flags::TARGET_RESET, &[], 0, false, false);
    assert_eq!(out.len(), 1, "the reset's response; initiator 2's write is dropped without one");
    assert_eq!(FcpRspView::parse(out[0].payload()).unwrap().rsp_code(), Some(RspCode::TMF_COMPLETE));
    assert_eq!(s2.outstanding(), 0, "the held write was released");
    let rx = xrdy[0].hdr().rx_id();
    let mut d = hdr(RCtl::SOL_DATA, FcType::FCP, FCtl::REL_OFF | FCtl::END_SEQ, 9, rx, 0);
    d.s_id = INI2;
    assert!(r.send(d, &[1; 512]).is_err());
    // LOGO of initiator 1 leaves initiator 2's nexus alone.
    r.els(11, &els::build_logo(INI, INI_WWPN));
    assert!(s1.is_closed() && !s2.is_closed());
    assert_eq!(r.port.remote_ports().len(), 1);
    assert_eq!(r.target.sessions().len(), 1);
}

#[test]
fn a_management_close_sends_logo_and_ends_the_login() {
    let mut r = rig();
    r.login(2048);
    r.events();
    let s = r.port.session(INI).unwrap().clone();
    let p = s.parameters();
    assert_eq!(
        p,
        [
            ("Port_ID".to_string(), format!("{INI:06x}")),
            ("WWPN".to_string(), "21:00:00:24:ff:31:4c:2a".to_string()),
            ("MaxPayload".to_string(), "2048".to_string())
        ]
    );
    assert!(s.request_close());
    // The port acts on its own thread's next turn: a LOGO to the initiator, the login gone.
    let out = r.out();
    assert_eq!(out.len(), 1, "one frame: the LOGO");
    assert_eq!((out[0].hdr().r_ctl(), out[0].hdr().d_id(), out[0].payload()[0]), (RCtl::ELS_REQ, INI, ElsCmd::LOGO.0));
    assert!(s.is_closed());
    assert!(r.port.remote_ports().is_empty());
    assert_eq!(r.events(), [PortEvent::ProcessLoggedOut { port_id: INI }, PortEvent::LoggedOut { port_id: INI }]);
    // A close request of that (ended) session does nothing to the next login.
    r.login(2048);
    assert!(s.request_close());
    assert!(r.out().is_empty());
    assert!(r.port.session(INI).is_some_and(|n| !n.is_closed()));
}
