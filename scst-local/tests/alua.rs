//! ALUA: target port groups, their access states, REPORT / SET TARGET PORT GROUPS and the
//! unit attentions of state changes.

mod common;

use common::*;
use scst::alua::{AluaConfig, AluaState, PortGroup};
use scst_local::LocalInitiator;

const TUR: [u8; 6] = [0; 6];
const MAINTENANCE_OUT: u8 = 0xa4;

fn rtpg(alloc: u32) -> [u8; 12] {
    let mut c = [MAINTENANCE_IN, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[6..10].copy_from_slice(&alloc.to_be_bytes());
    c
}

fn stpg(len: u32) -> [u8; 12] {
    let mut c = [MAINTENANCE_OUT, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[6..10].copy_from_slice(&len.to_be_bytes());
    c
}

/// Parameter list of SET TARGET PORT GROUPS: (state, group) descriptors.
fn stpg_params(d: &[(u8, u16)]) -> Vec<u8> {
    let mut p = vec![0u8; 4];
    for (state, id) in d {
        p.extend_from_slice(&[*state, 0]);
        p.extend_from_slice(&id.to_be_bytes());
    }
    p
}

/// Two groups: 1 active/optimized and preferred (local ports 1), 2 standby with a remote port 7.
fn two_groups(explicit: bool) -> AluaConfig {
    let mut a = PortGroup::new(1);
    a.preferred = true;
    let mut b = PortGroup::new(2);
    b.state = AluaState::Standby;
    b.remote_ports = vec![7];
    AluaConfig { groups: vec![a, b], explicit }
}

/// (PREF|state, group id, status, ports) of each descriptor of REPORT TARGET PORT GROUPS.
fn groups(i: &LocalInitiator) -> Vec<(u8, u16, u8, Vec<u16>)> {
    let d = data_in_ok(i, 0, &rtpg(512), 512);
    let end = 4 + be32(&d, 0) as usize;
    let mut out = Vec::new();
    let mut at = 4;
    while at < end {
        assert_eq!(d[at + 1], 0xcf, "supported states T O U S AN AO");
        let n = usize::from(d[at + 7]);
        let ports = (0..n).map(|k| be16(&d, at + 8 + 4 * k + 2)).collect();
        out.push((d[at], be16(&d, at + 2), d[at + 5], ports));
        at += 8 + 4 * n;
    }
    out
}

fn tpgs(i: &LocalInitiator) -> u8 {
    (data_in_ok(i, 0, &inquiry_cdb(false, 0, 36), 36)[5] >> 4) & 3
}

#[test]
fn standby_port_refuses_io_but_answers_management_commands() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    r.target.set_alua(Some(two_groups(false))).expect("alua");
    let active = LocalInitiator::connect_tpg(&r.target, "iqn.2026-01.rs.scst:a", 1, 1);
    let standby = LocalInitiator::connect_tpg(&r.target, "iqn.2026-01.rs.scst:b", 2, 2);
    active.clear_unit_attentions(0);
    standby.clear_unit_attentions(0);

    assert_eq!(tpgs(&active), 1, "implicit ALUA only");
    write(&active, 0, 0, 512, &[0xab; 512]);
    assert_check(&standby.execute(0, &cdb10(READ10, 0, 0, 1), &[], &mut [0; 512]), 0x02, 0x04, 0x0b);
    assert_check(&standby.execute(0, &TUR, &[], &mut []), 0x02, 0x04, 0x0b);
    // Identification, mode pages and reservations work in standby.
    assert_eq!(data_in_ok(&standby, 0, &inquiry_cdb(false, 0, 36), 36)[0], 0);
    data_in_ok(&standby, 0, &mode_sense6(true, 0, 0x3f, 0, 255), 255);
    data_in_ok(&standby, 0, &[0x5e, 0, 0, 0, 0, 0, 0, 0, 8, 0], 8);
    // REPORT TARGET PORT GROUPS lists both groups with their ports, local and remote.
    assert_eq!(
        groups(&standby),
        vec![(0x80, 1, 0, vec![1]), (0x02, 2, 0, vec![2, 7])],
        "PREF + active/optimized; standby"
    );
    // Implicit ALUA only: SET TARGET PORT GROUPS is not offered.
    let p = stpg_params(&[(0, 2)]);
    assert_check(&active.execute(0, &stpg(p.len() as u32), &p, &mut []), 0x05, 0x20, 0x00);
    assert_eq!(data_in_ok(&active, 0, &rsoc(false, 2, MAINTENANCE_OUT, 0x0a, 64), 64), [0, 1, 0, 0]);
}

#[test]
fn implicit_failover_tells_every_nexus() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    r.target.set_alua(Some(two_groups(false))).expect("alua");
    let a = LocalInitiator::connect_tpg(&r.target, "iqn.2026-01.rs.scst:a", 1, 1);
    let b = LocalInitiator::connect_tpg(&r.target, "iqn.2026-01.rs.scst:b", 2, 2);
    a.clear_unit_attentions(0);
    b.clear_unit_attentions(0);
    // Fail over: group 1 goes unavailable, group 2 active.
    r.target.set_port_group_state(1, AluaState::Unavailable).expect("state");
    r.target.set_port_group_state(2, AluaState::ActiveOptimized).expect("state");
    assert_ua(&a.execute(0, &TUR, &[], &mut []), 0x2a, 0x06);
    assert_check(&a.execute(0, &TUR, &[], &mut []), 0x02, 0x04, 0x0c);
    // Unavailable serves even fewer commands than standby.
    assert_check(&a.execute(0, &mode_sense6(true, 0, 0x3f, 0, 255), &[], &mut [0; 255]), 0x02, 0x04, 0x0c);
    assert_ua(&b.execute(0, &TUR, &[], &mut []), 0x2a, 0x06);
    assert_good(&b.execute(0, &TUR, &[], &mut []));
    write(&b, 0, 5, 512, &[5; 512]);
    // Status 02h: altered by an implicit transition.
    assert_eq!(groups(&b)[0].2, 0x02);
    // Offline and transitioning.
    r.target.set_port_group_state(1, AluaState::Offline).expect("state");
    a.clear_unit_attentions(0);
    assert_check(&a.execute(0, &cdb10(READ10, 0, 5, 1), &[], &mut [0; 512]), 0x02, 0x04, 0x12);
    r.target.set_port_group_state(1, AluaState::Transitioning).expect("state");
    a.clear_unit_attentions(0);
    assert_check(&a.execute(0, &cdb10(READ10, 0, 5, 1), &[], &mut [0; 512]), 0x02, 0x04, 0x0a);
    assert!(r.target.set_port_group_state(9, AluaState::Standby).is_err());
}

#[test]
fn explicit_set_target_port_groups() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    r.target.set_alua(Some(two_groups(true))).expect("alua");
    let a = LocalInitiator::connect_tpg(&r.target, "iqn.2026-01.rs.scst:a", 1, 1);
    let b = LocalInitiator::connect_tpg(&r.target, "iqn.2026-01.rs.scst:b", 2, 2);
    a.clear_unit_attentions(0);
    b.clear_unit_attentions(0);
    assert_eq!(tpgs(&b), 3, "implicit and explicit ALUA");
    // The standby path asks to become active and the other to become non-optimized.
    let p = stpg_params(&[(0x00, 2), (0x01, 1)]);
    assert_good(&b.execute(0, &stpg(p.len() as u32), &p, &mut []));
    // The requester is not told; the other nexus is.
    assert_good(&b.execute(0, &TUR, &[], &mut []));
    assert_ua(&a.execute(0, &TUR, &[], &mut []), 0x2a, 0x06);
    assert_good(&a.execute(0, &TUR, &[], &mut []));
    let g = groups(&a);
    assert_eq!((g[0].0, g[0].2), (0x81, 0x01), "PREF + non-optimized, altered by SET TARGET PORT GROUPS");
    assert_eq!((g[1].0, g[1].2), (0x00, 0x01));

    // Invalid requests change nothing: an unknown group, a state that cannot be requested,
    // a parameter list that is not whole descriptors.
    let p = stpg_params(&[(0x02, 1), (0x00, 9)]);
    assert_invalid_param(&b.execute(0, &stpg(p.len() as u32), &p, &mut []), 10, None);
    let p = stpg_params(&[(0x0e, 1)]);
    assert_invalid_param(&b.execute(0, &stpg(p.len() as u32), &p, &mut []), 4, Some(3));
    let p = [0u8; 6];
    assert_check(&b.execute(0, &stpg(6), &p, &mut []), 0x05, 0x1a, 0x00);
    assert_eq!(groups(&a)[0].0, 0x81, "group 1 unchanged");
    // Zero length is a no-op.
    assert_good(&b.execute(0, &stpg(0), &[], &mut []));
}

#[test]
fn replacing_the_table_reports_changed_states_only() {
    let r = Rig::new(Backend::Ram, 2048, 512);
    let a = LocalInitiator::connect_tpg(&r.target, "iqn.2026-01.rs.scst:a", 1, 1);
    a.clear_unit_attentions(0);
    // Group 1 stays active/optimized: nothing to report.
    r.target.set_alua(Some(two_groups(false))).expect("alua");
    assert_good(&a.execute(0, &TUR, &[], &mut []));
    let mut cfg = two_groups(false);
    cfg.groups[0].state = AluaState::Standby;
    r.target.set_alua(Some(cfg)).expect("alua");
    assert_ua(&a.execute(0, &TUR, &[], &mut []), 0x2a, 0x06);
    assert_check(&a.execute(0, &TUR, &[], &mut []), 0x02, 0x04, 0x0b);
    // Without a table every port is active again.
    r.target.set_alua(None).expect("off");
    assert_ua(&a.execute(0, &TUR, &[], &mut []), 0x2a, 0x06);
    assert_good(&a.execute(0, &TUR, &[], &mut []));
}
