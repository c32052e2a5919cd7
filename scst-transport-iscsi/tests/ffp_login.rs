//! Full feature phase over TCP: login variants and what they change on the wire, unit
//! attention after login, CHAP, session reinstatement, discovery (SendTargets), logout and
//! digests.

mod common;

use std::time::Duration;

use common::*;
use scst_transport_iscsi::proto::bhs::{LogoutReason, Opcode, RESERVED_TAG};
use scst_transport_iscsi::{ChapConfig, ChapCredentials};

#[test]
fn default_login_answers_every_key() {
    let t = TestTarget::start();
    let c = Conn::login(t.addr, &LoginOpts::normal()).unwrap();
    assert_ne!(c.tsih, 0, "a new session gets a TSIH");
    let k = &c.keys;
    assert_eq!(k["HeaderDigest"], "None");
    assert_eq!(k["DataDigest"], "None");
    assert_eq!(k["InitialR2T"], "No");
    assert_eq!(k["ImmediateData"], "Yes");
    assert_eq!(k["MaxBurstLength"], "262144");
    assert_eq!(k["FirstBurstLength"], "65536");
    assert_eq!(k["MaxOutstandingR2T"], "1");
    assert_eq!(k["ErrorRecoveryLevel"], "0");
    assert_eq!(k["MaxRecvDataSegmentLength"], "262144", "the target declares its own");
    // The window the login advertised: MaxCmdSN = ExpCmdSN + 32 - 1.
    assert_eq!(c.exp_cmd_sn, c.cmd_sn);
    assert_eq!(c.max_cmd_sn, c.cmd_sn.wrapping_add(31));
}

#[test]
fn negotiated_values_follow_the_rules() {
    let t = TestTarget::start();
    let o = LoginOpts::normal()
        .key("InitialR2T", "Yes")
        .key("ImmediateData", "No")
        .key("MaxBurstLength", 8192)
        .key("FirstBurstLength", 4096)
        .key("MaxOutstandingR2T", 64)
        .key("MaxRecvDataSegmentLength", 4096);
    let mut c = Conn::login(t.addr, &o).unwrap();
    let k = &c.keys;
    assert_eq!(k["InitialR2T"], "Yes", "OR");
    assert_eq!(k["ImmediateData"], "No", "AND");
    assert_eq!(k["MaxBurstLength"], "8192", "min");
    assert_eq!(k["FirstBurstLength"], "Irrelevant", "no unsolicited data at all (RFC 7143 §13.14)");
    assert_eq!(k["MaxOutstandingR2T"], "8", "min with the target's limit");
    c.clear_ua(RAM);
    // ImmediateData=No: a command carrying immediate data is a protocol error.
    let data = vec![0u8; 512];
    let cmd = CmdPdu { write: true, edtl: 512, data: &data, ..CmdPdu::new(RAM, write10(0, 1)) };
    let itt = c.send_cmd(&cmd);
    let p = c.recv();
    assert_eq!(p.op(), Opcode::REJECT, "{p:?}");
    assert_eq!(p.bhs().reject_reason().0, 0x04);
    assert_eq!(p.data.len(), 48, "the rejected BHS");
    assert_eq!(p.data[0] & 0x3f, 0x01);
    assert_eq!(u32::from_be_bytes(p.data[16..20].try_into().unwrap()), itt, "the rejected BHS is returned");
    // Our MaxRecvDataSegmentLength 4096 splits an 8 KiB read in two (checked by the harness).
    let w = pattern(8192, 3);
    c.write(RAM, 8, &w).assert_good();
    let r = c.read(RAM, 8, 16);
    r.assert_good();
    assert_eq!(r.data, w);
    assert_eq!(r.data_ins().len(), 2);
}

#[test]
fn target_limits_are_declared() {
    let mut cfg = config(16);
    cfg.limits.max_recv_data_segment_length = 8192;
    cfg.limits.max_burst_length = 16384;
    let t = TestTarget::with(cfg, None);
    let c = Conn::login(t.addr, &LoginOpts::normal()).unwrap();
    assert_eq!(c.keys["MaxRecvDataSegmentLength"], "8192");
    assert_eq!(c.keys["MaxBurstLength"], "16384");
    assert_eq!(c.max_cmd_sn, c.cmd_sn.wrapping_add(15));
}

#[test]
fn first_command_gets_power_on_unit_attention() {
    let t = TestTarget::start();
    let mut c = Conn::login(t.addr, &LoginOpts::normal()).unwrap();
    let r = c.tur(RAM);
    r.assert_check(0x6, 0x29, 0x00);
    assert!(r.last().bhs().data_segment_len() > 0, "sense is carried in the SCSI Response");
    c.tur(RAM).assert_good();
    // Each LUN reports it once.
    c.tur(FILE).assert_check(0x6, 0x29, 0x00);
    c.tur(FILE).assert_good();
    c.tur(RAM).assert_good();
}

fn chap_target() -> TestTarget {
    let chap = ChapConfig { initiator: ChapCredentials::new("alice", b"alice-secret-12".to_vec()), mutual: None };
    TestTarget::with(config(16), Some(chap))
}

#[test]
fn chap_right_secret_logs_in() {
    let t = chap_target();
    let o = LoginOpts { chap: Some(("alice".into(), b"alice-secret-12".to_vec())), ..LoginOpts::normal() };
    let mut c = Conn::login(t.addr, &o).unwrap();
    c.clear_ua(RAM);
    c.assert_usable();
}

#[test]
fn chap_wrong_secret_is_refused() {
    let t = chap_target();
    let o = LoginOpts { chap: Some(("alice".into(), b"not-the-secret".to_vec())), ..LoginOpts::normal() };
    let f = Conn::login(t.addr, &o).err().expect("login must fail");
    assert_eq!(f.status, 0x0201, "authentication failure");
    let o = LoginOpts { chap: Some(("mallory".into(), b"alice-secret-12".to_vec())), ..LoginOpts::normal() };
    assert_eq!(Conn::login(t.addr, &o).err().expect("login must fail").status, 0x0201);
    // No security stage at all when CHAP is required.
    assert_eq!(Conn::login(t.addr, &LoginOpts::normal()).err().expect("login must fail").status, 0x0201);
    assert_eq!(t.server.session_count(), 0);
}

#[test]
fn session_reinstatement_closes_the_old_connection() {
    let t = TestTarget::start();
    let o = LoginOpts::normal();
    let mut a = t.login_with(o.clone());
    let b = Conn::login(t.addr, &o).unwrap();
    assert_ne!(b.tsih, 0);
    let seen = a.expect_closed(Duration::from_secs(3));
    assert!(seen.is_empty(), "nothing but a close for the old connection: {seen:?}");
    let mut b = b;
    b.clear_ua(RAM);
    b.assert_usable();
    assert_eq!(t.server.session_count(), 1);
    // Another ISID is another session: both live.
    let mut c = t.login();
    c.assert_usable();
    b.assert_usable();
    assert_eq!(t.server.session_count(), 2);
}

#[test]
fn login_with_unknown_tsih_is_refused() {
    let t = TestTarget::start();
    let o = LoginOpts { tsih: 0x7777, ..LoginOpts::normal() };
    let f = Conn::login(t.addr, &o).err().expect("login must fail");
    assert_eq!(f.status, 0x020a, "session does not exist");
}

#[test]
fn unknown_target_is_refused() {
    let t = TestTarget::start();
    let o = LoginOpts { target: Some("iqn.2026-11.rs.scst:nope".into()), ..LoginOpts::normal() };
    assert_eq!(Conn::login(t.addr, &o).err().expect("login must fail").status, 0x0203);
}

#[test]
fn send_targets_in_a_discovery_session() {
    let t = TestTarget::start();
    let mut c = Conn::login(t.addr, &LoginOpts::discovery()).unwrap();
    let p = c.text(&[("SendTargets", "All")]);
    let b = p.bhs();
    assert!(b.final_bit());
    assert_eq!(b.ttt(), RESERVED_TAG, "complete in one response");
    let text = String::from_utf8(p.data.clone()).unwrap();
    let pairs: Vec<&str> = text.split('\0').filter(|s| !s.is_empty()).collect();
    assert_eq!(
        pairs,
        vec![format!("TargetName={TARGET_NAME}"), format!("TargetAddress=127.0.0.1:{},1", t.addr.port())],
        "{text:?}"
    );
    // SCSI commands have no place in a discovery session.
    let itt = c.send_cmd(&CmdPdu::new(RAM, tur_cdb()));
    let p = c.recv();
    assert_eq!(p.op(), Opcode::REJECT);
    assert_eq!(u32::from_be_bytes(p.data[16..20].try_into().unwrap()), itt);
    let itt = c.send_logout(LogoutReason::CLOSE_SESSION);
    let p = c.recv();
    assert_eq!(p.op(), Opcode::LOGOUT_RESPONSE);
    assert_eq!(p.bhs().itt(), itt);
    assert_eq!(p.bhs().response(), 0);
    assert!(c.expect_closed(Duration::from_secs(2)).is_empty());
}

#[test]
fn logout_closes_session_and_connection() {
    let t = TestTarget::start();
    let o = LoginOpts::normal();
    let mut c = t.login_with(o.clone());
    assert_eq!(t.server.session_count(), 1);
    let itt = c.send_logout(LogoutReason::CLOSE_SESSION);
    let p = c.recv();
    assert_eq!(p.op(), Opcode::LOGOUT_RESPONSE, "{p:?}");
    assert_eq!(p.bhs().itt(), itt);
    assert_eq!(p.bhs().response(), 0, "closed successfully");
    assert!(p.bhs().final_bit());
    assert!(c.expect_closed(Duration::from_secs(2)).is_empty());
    assert_eq!(t.server.session_count(), 0);
    // The same ISID logs in again as a new session, with a new power-on unit attention.
    let mut c = Conn::login(t.addr, &o).unwrap();
    c.tur(RAM).assert_check(0x6, 0x29, 0x00);
}

#[test]
fn logout_with_outstanding_commands_is_answered() {
    let t = TestTarget::start();
    let mut c = t.login_with(LoginOpts::normal().key("InitialR2T", "Yes").key("ImmediateData", "No"));
    // A WRITE waiting for its R2T data, on each LUN.
    for l in [RAM, FILE] {
        let cmd = CmdPdu { write: true, edtl: 4096, ..CmdPdu::new(l, write10(0, 8)) };
        let itt = c.send_cmd(&cmd);
        let p = c.recv();
        assert_eq!(p.op(), Opcode::R2T);
        assert_eq!(p.bhs().itt(), itt);
    }
    let itt = c.send_logout(LogoutReason::CLOSE_SESSION);
    let p = c.recv();
    assert_eq!(p.op(), Opcode::LOGOUT_RESPONSE, "{p:?}");
    assert_eq!(p.bhs().itt(), itt);
    assert_eq!(p.bhs().response(), 0);
    assert!(c.expect_closed(Duration::from_secs(2)).is_empty());
    assert_eq!(t.server.session_count(), 0);
    t.login().assert_usable();
}

#[test]
fn header_digest_crc32c() {
    let t = TestTarget::start();
    let mut c = t.login_with(LoginOpts::normal().key("HeaderDigest", "CRC32C,None"));
    assert!(c.digests.header && !c.digests.data);
    assert_eq!(c.keys["HeaderDigest"], "CRC32C");
    // Digests are checked on every PDU the harness reads.
    let w = pattern(9 * BS, 9);
    c.write(RAM, 40, &w).assert_good();
    assert_eq!(c.read(RAM, 40, (w.len() / 512) as u16).data, w);
    // A corrupted header digest: the header cannot be trusted, the connection ends.
    let mut h = [0u8; 48];
    scst_transport_iscsi::proto::build::NopOutHeader {
        immediate: true,
        itt: 0x4242,
        ttt: RESERVED_TAG,
        sn: scst_transport_iscsi::proto::build::InitiatorSn { cmd_sn: c.cmd_sn, exp_stat_sn: c.exp_stat_sn },
        ..Default::default()
    }
    .write(&mut h);
    let mut bytes = c.wire(&h, &[]);
    bytes[48] ^= 0x01;
    c.send_bytes(&bytes).unwrap();
    let seen = c.expect_closed(Duration::from_secs(3));
    assert!(seen.is_empty(), "no answer to a PDU with a bad header digest: {seen:?}");
}

#[test]
fn data_digest_crc32c() {
    let t = TestTarget::start();
    let o = LoginOpts::normal().key("HeaderDigest", "CRC32C").key("DataDigest", "CRC32C").key("ImmediateData", "No");
    let mut c = t.login_with(o);
    assert!(c.digests.header && c.digests.data);
    for l in [RAM, FILE] {
        // Unaligned lengths exercise the pad bytes inside the digest.
        let w = pattern(3 * 512, l);
        c.write(l, 7, &w).assert_good();
        let r = c.read(l, 7, 3);
        r.assert_good();
        assert_eq!(r.data, w);
        let r = c.exec(l, read10(7, 3), true, 1001, &[]);
        assert_eq!(r.data, w[..1001]);
        assert!(r.overflow && r.residual == 3 * 512 - 1001);
    }
    // NOP-Out data is echoed with a digest of its own.
    c.send_nop_out(0x77, RESERVED_TAG, true, b"odd-length");
    let p = c.recv();
    assert_eq!(p.op(), Opcode::NOP_IN);
    assert_eq!(p.data, b"odd-length");
    // A Data-Out with a bad data digest: Reject (data digest error) and the command fails.
    let data = pattern(1024, 0x55);
    let cmd = CmdPdu { write: true, edtl: 1024, final_bit: false, ..CmdPdu::new(RAM, write10(90, 2)) };
    let itt = c.send_cmd(&cmd);
    let h = c.data_out_hdr(RAM, itt, RESERVED_TAG, 0, 0, data.len(), true);
    let mut bytes = c.wire(&h, &data);
    let n = bytes.len();
    bytes[n - 1] ^= 0x80;
    c.send_bytes(&bytes).unwrap();
    let p = c.recv();
    assert_eq!(p.op(), Opcode::REJECT, "{p:?}");
    assert_eq!(p.bhs().reject_reason().0, 0x02, "data digest error");
    assert_eq!(p.data[..48], h[..], "the rejected Data-Out header");
    let r = c.collect(RAM, itt, None);
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!(r.sense_code().0, 0x0b, "ABORTED COMMAND");
    // Nothing was written and the connection goes on.
    assert_eq!(c.read(RAM, 90, 2).data, vec![0u8; 1024]);
    c.assert_usable();
}

#[test]
fn immediate_data_with_bad_digest_fails_the_command() {
    let t = TestTarget::start();
    let o = LoginOpts::normal().key("DataDigest", "CRC32C");
    let mut c = t.login_with(o);
    assert!(!c.digests.header && c.digests.data);
    let data = pattern(512, 1);
    let cmd = CmdPdu { write: true, edtl: 512, data: &data, ..CmdPdu::new(RAM, write10(3, 1)) };
    let itt = c.alloc_itt();
    let mut h = [0u8; 48];
    scst_transport_iscsi::proto::build::ScsiCommandHeader {
        final_bit: true,
        write: true,
        attr: scst_transport_iscsi::proto::bhs::TaskAttr::SIMPLE,
        data_segment_len: 512,
        lun: lun(RAM),
        itt,
        expected_data_transfer_length: 512,
        sn: scst_transport_iscsi::proto::build::InitiatorSn { cmd_sn: c.cmd_sn, exp_stat_sn: c.exp_stat_sn },
        cdb: cmd.cdb,
        ..Default::default()
    }
    .write(&mut h);
    c.cmd_sn = c.cmd_sn.wrapping_add(1);
    let mut bytes = c.wire(&h, &data);
    let n = bytes.len();
    bytes[n - 2] ^= 0x10;
    c.send_bytes(&bytes).unwrap();
    let p = c.recv();
    assert_eq!(p.op(), Opcode::REJECT, "{p:?}");
    assert_eq!(p.bhs().reject_reason().0, 0x02);
    let r = c.collect(RAM, itt, None);
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!(c.read(RAM, 3, 1).data, vec![0u8; 512]);
    c.assert_usable();
}

#[test]
fn session_reinstatement_with_a_write_waiting_for_data() {
    let t = TestTarget::start();
    let o = LoginOpts::normal().key("InitialR2T", "Yes").key("ImmediateData", "No");
    let mut a = t.login_with(o.clone());
    for l in [RAM, FILE] {
        let itt = a.send_cmd(&CmdPdu { write: true, edtl: 4096, ..CmdPdu::new(l, write10(0, 8)) });
        let p = a.recv();
        assert_eq!((p.op(), p.bhs().itt()), (Opcode::R2T, itt));
    }
    let mut b = t.login_with(o);
    assert!(a.expect_closed(Duration::from_secs(3)).is_empty());
    b.assert_usable();
    assert_eq!(b.read(FILE, 0, 8).data, vec![0u8; 4096], "the old session's writes never ran");
    assert_eq!(t.server.session_count(), 1);
}

#[test]
fn connection_reinstatement_keeps_the_session() {
    let t = TestTarget::start();
    let o = LoginOpts::normal();
    let mut a = t.login_with(o.clone());
    let tsih = a.tsih;
    a.write(RAM, 5, &pattern(BS, 5)).assert_good();
    // Same ISID, the session's TSIH, same CID: the old connection is replaced.
    let ro = LoginOpts { tsih, ..o.clone() };
    let mut b = Conn::login(t.addr, &ro).unwrap();
    assert_eq!(b.tsih, tsih, "the same session");
    assert!(a.expect_closed(Duration::from_secs(3)).is_empty());
    // The same I_T nexus: no new power-on unit attention.
    b.tur(RAM).assert_good();
    assert_eq!(b.read(RAM, 5, 1).data, pattern(BS, 5));
    assert_eq!(t.server.session_count(), 1);
    // And again: the session is still known by its TSIH.
    let mut c = Conn::login(t.addr, &ro).unwrap();
    assert!(b.expect_closed(Duration::from_secs(3)).is_empty());
    c.assert_usable();
    assert_eq!(t.server.session_count(), 1);
    // Another initiator (or ISID) cannot take it over.
    let other = LoginOpts { tsih, isid: new_isid(), ..o };
    assert!(Conn::login(t.addr, &other).is_err());
    c.assert_usable();
}

#[test]
fn shutdown_asks_initiators_to_log_out() {
    let t = TestTarget::start();
    let mut c = t.login();
    std::thread::scope(|s| {
        s.spawn(|| t.server.shutdown(Duration::from_secs(3)));
        let p = c.recv();
        assert_eq!(p.op(), Opcode::ASYNC_MESSAGE, "{p:?}");
        assert_eq!(p.bhs().async_event().0, 1, "logout requested");
        assert_eq!(p.bhs().itt(), RESERVED_TAG);
        let itt = c.send_logout(LogoutReason::CLOSE_SESSION);
        let p = c.recv();
        assert_eq!((p.op(), p.bhs().itt(), p.bhs().response()), (Opcode::LOGOUT_RESPONSE, itt, 0));
        assert!(c.expect_closed(Duration::from_secs(3)).is_empty());
    });
    // New logins are refused while (and after) shutting down.
    assert!(Conn::login(t.addr, &LoginOpts::normal()).is_err());
}

#[test]
fn logout_reasons() {
    let t = TestTarget::start();
    let mut c = t.login();
    // Removing a connection for recovery needs ErrorRecoveryLevel 2.
    let itt = c.send_logout(LogoutReason::REMOVE_FOR_RECOVERY);
    let p = c.recv();
    assert_eq!((p.op(), p.bhs().itt(), p.bhs().response()), (Opcode::LOGOUT_RESPONSE, itt, 2));
    c.assert_usable();
    // Closing the (only) connection closes the session.
    let itt = c.send_logout(LogoutReason::CLOSE_CONNECTION);
    let p = c.recv();
    assert_eq!((p.op(), p.bhs().itt(), p.bhs().response()), (Opcode::LOGOUT_RESPONSE, itt, 0));
    assert!(c.expect_closed(Duration::from_secs(2)).is_empty());
    assert_eq!(t.server.session_count(), 0);
}

/// Security groups at login: with unmatched initiators refused, an initiator no group admits
/// gets AUTHORIZATION FAILURE and does not see the target in discovery; one that a group admits
/// logs in and sees that group's LUN map.
#[test]
fn security_groups_refuse_unmatched_initiators_at_login() {
    let t = TestTarget::start();
    t.target.add_group("ours", scst::acl::NamePatterns::parse("*:ours-*").unwrap()).unwrap();
    let ram = t.target.luns()[&scst::Lun(u16::from(RAM))].dev.clone();
    t.target.add_group_lun(Some("ours"), scst::Lun(3), ram, true).unwrap();
    t.target.set_refuse_unmatched(true);
    let f = Conn::login(t.addr, &LoginOpts::normal()).err().expect("login must fail");
    assert_eq!(f.status, 0x0202, "authorization failure");
    let mut d = Conn::login(t.addr, &LoginOpts::discovery()).unwrap();
    let p = d.text(&[("SendTargets", "All")]);
    assert!(p.data.is_empty(), "the target is not listed: {:?}", String::from_utf8_lossy(&p.data));

    let o = LoginOpts { initiator: "iqn.2026-11.rs.scst:ours-1".into(), ..LoginOpts::normal() };
    let mut c = Conn::login(t.addr, &o).expect("admitted");
    c.clear_ua(3);
    let mut cdb = [0u8; 16];
    cdb[0] = 0xa0; // REPORT LUNS
    cdb[9] = 64;
    let r = c.exec(0, cdb, true, 64, &[]);
    r.assert_good();
    assert_eq!(&r.data[..16], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0], "only the group's LUN 3");
}

/// The portal group tag names the SCSI target port (relative port id, port name) and the ALUA
/// group is the one REPORT TARGET PORT GROUPS shows for this port.
#[test]
fn portal_group_tag_and_alua_group_identify_the_port() {
    let mut cfg = config(32);
    cfg.portal_group_tag = 7;
    cfg.alua_group = 2;
    let t = TestTarget::with(cfg, None);
    let mut a = scst::alua::PortGroup::new(1);
    a.remote_ports = vec![1];
    let mut b = scst::alua::PortGroup::new(2);
    b.state = scst::alua::AluaState::ActiveNonOptimized;
    t.target.set_alua(Some(scst::alua::AluaConfig { groups: vec![a, b], explicit: false })).unwrap();
    let mut d = Conn::login(t.addr, &LoginOpts::discovery()).unwrap();
    let text = String::from_utf8(d.text(&[("SendTargets", "All")]).data).unwrap();
    assert!(text.contains(&format!("TargetAddress=127.0.0.1:{},7", t.addr.port())), "{text:?}");
    let mut c = t.login();
    let mut cdb = [0u8; 16];
    cdb[0] = 0xa3;
    cdb[1] = 0x0a;
    cdb[9] = 255;
    let r = c.exec(RAM, cdb, true, 255, &[]);
    r.assert_good();
    let data = r.data;
    // Group 1 (remote port 1), then group 2, non-optimized, with this port (relative id 7).
    assert_eq!(&data[4..12], &[0x00, 0xcf, 0, 1, 0, 0, 0, 1]);
    assert_eq!(&data[16..28], &[0x01, 0xcf, 0, 2, 0, 0, 0, 1, 0, 0, 0, 7]);
}

#[test]
fn a_removed_target_logs_its_sessions_out_and_leaves_the_others_alone() {
    use scst::{SgvConfig, SgvPool, Target};
    use scst_transport_iscsi::TargetEntry;
    let t = TestTarget::start();
    let other_name = "iqn.2026-12.rs.scst:other";
    let other = Target::new(other_name, SgvPool::new(SgvConfig::default()));
    t.server.add_target(TargetEntry { target: other, alias: None, chap: None, allow: Default::default() });
    let mut stays = t.login();
    let gone_opts = LoginOpts { target: Some(other_name.into()), ..LoginOpts::normal() };
    let mut gone = Conn::login(t.addr, &gone_opts).unwrap();
    assert_eq!(t.server.session_count(), 2);
    std::thread::scope(|s| {
        let r = s.spawn(|| t.server.remove_target(other_name, Duration::from_secs(3)));
        let p = gone.recv();
        assert_eq!((p.op(), p.bhs().async_event().0), (Opcode::ASYNC_MESSAGE, 1), "logout requested: {p:?}");
        let itt = gone.send_logout(LogoutReason::CLOSE_SESSION);
        let p = gone.recv();
        assert_eq!((p.op(), p.bhs().itt(), p.bhs().response()), (Opcode::LOGOUT_RESPONSE, itt, 0));
        assert!(gone.expect_closed(Duration::from_secs(3)).is_empty());
        assert!(r.join().unwrap().is_some(), "the entry comes back");
    });
    assert!(t.server.remove_target(other_name, Duration::ZERO).is_none());
    // Gone from discovery and from login; the other target's session saw nothing.
    assert_eq!(Conn::login(t.addr, &gone_opts).err().expect("login must fail").status, 0x0203);
    let mut d = Conn::login(t.addr, &LoginOpts::discovery()).unwrap();
    let text = String::from_utf8(d.text(&[("SendTargets", "All")]).data).unwrap();
    assert!(!text.contains(other_name), "{text:?}");
    stays.assert_usable();
    assert_eq!(t.server.session_count(), 1);
}

#[test]
fn new_chap_credentials_apply_to_new_logins_only() {
    let t = chap_target();
    let alice = LoginOpts { chap: Some(("alice".into(), b"alice-secret-12".to_vec())), ..LoginOpts::normal() };
    let mut c = Conn::login(t.addr, &alice).unwrap();
    c.clear_ua(RAM);
    let chap = ChapConfig { initiator: ChapCredentials::new("bob", b"bob-secret-1234".to_vec()), mutual: None };
    t.server.add_target(scst_transport_iscsi::TargetEntry {
        target: t.target.clone(),
        alias: None,
        chap: Some(chap),
        allow: Default::default(),
    });
    c.assert_usable();
    assert_eq!(Conn::login(t.addr, &alice).err().expect("old secret refused").status, 0x0201);
    let bob = LoginOpts { chap: Some(("bob".into(), b"bob-secret-1234".to_vec())), isid: new_isid(), ..alice };
    let mut b = Conn::login(t.addr, &bob).unwrap();
    b.clear_ua(RAM);
    b.assert_usable();
    c.assert_usable();
}
