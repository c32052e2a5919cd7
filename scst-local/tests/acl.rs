//! Access control (security groups): which LUNs each initiator sees, and live moves between
//! groups.

mod common;

use common::*;
use scst::acl::NamePatterns;
use scst::{Lun, TmFunction, TmStatus};
use scst_backends::RamStore;
use scst_local::LocalInitiator;

const TUR: [u8; 6] = [0; 6];

fn ram_dev() -> std::sync::Arc<scst::Device> {
    device(RamStore::new(1 << 20, 512).expect("ram"), config())
}

/// The LUN numbers REPORT LUNS lists for an initiator.
fn reported(i: &LocalInitiator) -> Vec<u16> {
    let d = data_in_ok(i, 0, &report_luns(0, 512), 512);
    let n = be32(&d, 0) as usize / 8;
    (0..n).map(|k| be16(&d, 8 + 8 * k) & 0x3fff).collect()
}

fn patterns(s: &str) -> NamePatterns {
    NamePatterns::parse(s).expect("patterns")
}

/// A target whose default map has LUN 0 and LUN 1, and a group "db" with its own LUN 0 (a
/// different device) and LUN 5 read-only.
struct Setup {
    rig: Rig,
}

fn setup() -> Setup {
    let rig = Rig::new(Backend::Ram, 2048, 512);
    rig.target.add_lun(Lun(1), ram_dev(), false).expect("lun 1");
    rig.target.add_group("db", patterns("iqn.2026-01.rs.scst:db-*,!*:db-test")).expect("group");
    rig.target.add_group_lun(Some("db"), Lun(0), ram_dev(), false).expect("db lun 0");
    rig.target.add_group_lun(Some("db"), Lun(5), ram_dev(), true).expect("db lun 5");
    Setup { rig }
}

fn login(s: &Setup, name: &str) -> LocalInitiator {
    let i = LocalInitiator::connect(&s.rig.target, name);
    i.clear_unit_attentions(0);
    i
}

#[test]
fn two_initiators_see_different_lun_maps() {
    let s = setup();
    let db = login(&s, "iqn.2026-01.rs.scst:db-1");
    let other = login(&s, "iqn.2026-01.rs.scst:web-1");
    let excluded = login(&s, "iqn.2026-01.rs.scst:db-test");
    assert_eq!(reported(&db), vec![0, 5]);
    assert_eq!(reported(&other), vec![0, 1]);
    assert_eq!(reported(&excluded), vec![0, 1], "the exclusion pattern keeps db-test out of the group");
    assert_eq!(s.rig.target.group_of("IQN.2026-01.RS.SCST:DB-9").as_deref(), Some("db"));

    // Same LUN number, different devices: data written by one is not seen by the other.
    write(&db, 0, 7, 512, &[0xd8; 512]);
    assert_eq!(read(&other, 0, 7, 512, 1), vec![0; 512]);
    assert_eq!(read(&db, 0, 7, 512, 1), vec![0xd8; 512]);
    // A LUN outside the initiator's map does not exist for it.
    assert_check(&other.execute(5, &TUR, &[], &mut []), 0x05, 0x25, 0x00);
    assert_check(&db.execute(1, &TUR, &[], &mut []), 0x05, 0x25, 0x00);
    // The group's read-only LUN refuses writes with DATA PROTECT.
    db.clear_unit_attentions(5);
    let o = db.execute(5, &cdb10(WRITE10, 0, 0, 1), &[1; 512], &mut []);
    assert_check(&o, 0x07, 0x27, 0x00);
}

#[test]
fn moving_an_initiator_between_groups_changes_its_live_map() {
    let s = setup();
    let web = login(&s, "iqn.2026-01.rs.scst:web-1");
    let db = login(&s, "iqn.2026-01.rs.scst:db-1");
    assert_eq!(reported(&web), vec![0, 1]);

    // Widen the group to admit web-1: its live session moves at once.
    s.rig.target.set_group_initiators("db", patterns("iqn.2026-01.rs.scst:db-*,*:web-1")).expect("move in");
    assert_ua(&web.execute(0, &TUR, &[], &mut []), 0x3f, 0x0e);
    assert_good(&web.execute(0, &TUR, &[], &mut []));
    assert_eq!(reported(&web), vec![0, 5]);
    write(&web, 0, 3, 512, &[0x3e; 512]);
    assert_eq!(read(&db, 0, 3, 512, 1), vec![0x3e; 512], "web-1 now writes the group's LUN 0");
    // The session whose view did not change was not told anything.
    assert_good(&db.execute(0, &TUR, &[], &mut []));

    // Move it back out.
    s.rig.target.set_group_initiators("db", patterns("iqn.2026-01.rs.scst:db-*")).expect("move out");
    assert_ua(&web.execute(0, &TUR, &[], &mut []), 0x3f, 0x0e);
    assert_eq!(reported(&web), vec![0, 1]);
    assert_eq!(read(&web, 0, 3, 512, 1), vec![0; 512]);
    assert_good(&db.execute(0, &TUR, &[], &mut []));

    // Removing the group sends its members to the default map.
    s.rig.target.remove_group("db").expect("remove");
    assert_ua(&db.execute(0, &TUR, &[], &mut []), 0x3f, 0x0e);
    assert_eq!(reported(&db), vec![0, 1]);
}

#[test]
fn group_lun_changes_reach_only_that_groups_sessions() {
    let s = setup();
    let web = login(&s, "iqn.2026-01.rs.scst:web-1");
    let db = login(&s, "iqn.2026-01.rs.scst:db-1");
    s.rig.target.add_group_lun(Some("db"), Lun(9), ram_dev(), false).expect("lun 9");
    assert_ua(&db.execute(0, &TUR, &[], &mut []), 0x3f, 0x0e);
    assert_eq!(reported(&db), vec![0, 5, 9]);
    assert_good(&web.execute(0, &TUR, &[], &mut []));
    s.rig.target.remove_group_lun(Some("db"), Lun(9)).expect("unmap");
    assert_eq!(reported(&db), vec![0, 5]);
    assert!(s.rig.target.add_group_lun(Some("nope"), Lun(1), ram_dev(), false).is_err());
    assert!(s.rig.target.add_group("db", patterns("*")).is_err(), "duplicate group name");
}

#[test]
fn unmatched_initiators_can_be_refused_or_see_no_luns() {
    let t = target();
    t.add_group("db", patterns("*:db-*")).expect("group");
    t.add_group_lun(Some("db"), Lun(0), ram_dev(), false).expect("lun");
    assert!(t.admits("iqn.x:web"), "by default unmatched initiators are admitted");
    // With an empty default map an unmatched initiator sees no LUNs: LUN 0 still answers
    // REPORT LUNS (empty list) and INQUIRY (no device at this LUN), other commands fail.
    let i = LocalInitiator::connect(&t, "iqn.x:web");
    let d = data_in_ok(&i, 0, &report_luns(0, 64), 64);
    assert_eq!(be32(&d, 0), 0);
    let inq = data_in_ok(&i, 0, &inquiry_cdb(false, 0, 36), 36);
    assert_eq!(inq[0], 0x7f, "peripheral qualifier 011b, device type 1Fh");
    assert_check(&i.execute(0, &TUR, &[], &mut []), 0x05, 0x25, 0x00);
    t.set_refuse_unmatched(true);
    assert!(!t.admits("iqn.x:web"));
    assert!(t.admits("iqn.x:db-1"));
}

#[test]
fn target_reset_resets_devices_of_every_group() {
    let s = setup();
    let db = login(&s, "iqn.2026-01.rs.scst:db-1");
    let web = login(&s, "iqn.2026-01.rs.scst:web-1");
    assert_eq!(web.task_mgmt(TmFunction::TARGET_WARM_RESET, 0, 0), TmStatus::COMPLETE);
    // The group's devices were reset too: their nexuses see the reset.
    assert_ua(&db.execute(0, &TUR, &[], &mut []), 0x29, 0x00);
    assert_eq!(s.rig.target.devices().len(), 4);
}
