//! SPC-4 commands of the disk handler through the loopback initiator: TEST UNIT READY, REQUEST
//! SENSE, INQUIRY and its VPD pages, REPORT LUNS, READ CAPACITY, the REPORT SUPPORTED ...
//! commands, REPORT TARGET PORT GROUPS, READ DEFECT DATA, START STOP UNIT, PREVENT ALLOW MEDIUM
//! REMOVAL, CDB field checks and logical units that do not exist.

#[macro_use]
mod common;

use common::*;
use scst::ops::DISK_OPS;
use scst::{Lun, ScsiStatus};
use scst_local::LocalInitiator;

fn ram() -> Rig {
    Rig::new(Backend::Ram, 2048, 512)
}

fn removable_rig() -> Rig {
    let mut c = config();
    c.removable = true;
    Rig::with_config(Backend::Ram, 2048, 512, c)
}

// ------------------------------------------------------------------------------------------------
// TEST UNIT READY, unsupported opcodes, CDB field checks
// ------------------------------------------------------------------------------------------------

#[test]
fn test_unit_ready() {
    let r = ram();
    let i = r.login();
    let o = i.execute(0, &TUR, &[], &mut []);
    assert_good(&o);
    assert_eq!(o.residual, (false, 0));
    // Reserved bits and the control byte.
    assert_invalid_cdb(&i.execute(0, &[0, 0x01, 0, 0, 0, 0], &[], &mut []), 1, Some(0));
    assert_invalid_cdb(&i.execute(0, &[0, 0, 0, 0, 0x80, 0], &[], &mut []), 4, Some(7));
    assert_invalid_cdb(&i.execute(0, &[0, 0, 0, 0, 0, 0x04], &[], &mut []), 5, Some(2)); // NACA
    assert_invalid_cdb(&i.execute(0, &[0, 0, 0, 0, 0, 0x01], &[], &mut []), 5, Some(0)); // LINK
    // A CDB shorter than its opcode's length is not a valid command.
    assert_check(&i.execute(0, &[0, 0, 0], &[], &mut []), 0x05, 0x20, 0x00);
}

#[test]
fn unsupported_opcodes() {
    let r = ram();
    let i = r.login();
    // FORMAT UNIT, LOG SENSE, a vendor-specific opcode.
    for cdb in [vec![0x04, 0, 0, 0, 0, 0], vec![0x4d, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![0xc0, 0, 0, 0, 0, 0]] {
        let o = i.execute(0, &cdb, &[], &mut []);
        assert_check(&o, 0x05, 0x20, 0x00);
        // Fixed format, 18 bytes, no sense-key-specific data.
        assert_eq!(o.sense(), &[0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0], "{cdb:02x?}");
    }
    // UNMAP exists only on thin provisioned LUNs: NULLIO is fully provisioned.
    let n = Rig::new(Backend::Null, 2048, 512);
    let ni = n.login();
    assert_check(&ni.execute(0, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &[0; 24], &mut []), 0x05, 0x20, 0x00);
    // An unknown service action of a known opcode: INVALID FIELD IN CDB at the service action
    // (byte 1, bits 4..0). SERVICE ACTION IN 13h and MAINTENANCE IN 05h are not supported.
    let o = i.execute(0, &[SERVICE_ACTION_IN16, 0x13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 24, 0, 0], &[], &mut [0; 24]);
    assert_invalid_cdb(&o, 1, Some(4));
    let o = i.execute(0, &[MAINTENANCE_IN, 0x05, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[], &mut [0; 256]);
    assert_invalid_cdb(&o, 1, Some(4));
}

/// The position of the bit an INVALID FIELD IN CDB for a stray bit points at: the bit itself,
/// except in the 3-bit protection fields (RDPROTECT, WRPROTECT, VRPROTECT: byte 1 bits 7..5)
/// where SPC-4 §4.5.2.4.2 asks for the field's most significant bit.
fn expected_bit(opcode: u8, byte: usize, bit: u8) -> u8 {
    let protect = matches!(
        opcode,
        READ10
            | READ12
            | READ16
            | WRITE10
            | WRITE12
            | WRITE16
            | VERIFY10
            | VERIFY12
            | VERIFY16
            | WRITE_VERIFY10
            | WRITE_VERIFY12
            | WRITE_VERIFY16
    );
    if protect && byte == 1 && bit >= 5 { 7 } else { bit }
}

/// Offers every command of the table: SET TARGET PORT GROUPS needs explicit ALUA.
fn explicit_alua(r: &Rig) {
    let groups = vec![scst::alua::PortGroup::new(1)];
    r.target.set_alua(Some(scst::alua::AluaConfig { groups, explicit: true })).expect("alua");
}

/// Every bit the opcode table does not list in a command's CDB usage data is refused with
/// INVALID FIELD IN CDB pointing at it, for every command (the usage data REPORT SUPPORTED
/// OPERATION CODES reports is what the device server enforces).
#[test]
fn every_unused_cdb_bit_is_rejected_with_its_position() {
    let r = ram();
    explicit_alua(&r);
    let i = r.login();
    let mut checked = 0;
    for op in DISK_OPS {
        let len = op.cdb_len();
        for byte in 1..len {
            for bit in 0..8u8 {
                // Bits 4..0 of byte 1 of a command with service actions are the service action.
                let in_sa = op.service_action.is_some() && byte == 1 && bit < 5;
                if op.usage[byte] & (1 << bit) != 0 || in_sa {
                    continue;
                }
                let mut cdb = vec![0u8; len];
                cdb[0] = op.opcode;
                if let Some(sa) = op.service_action {
                    cdb[1] = sa;
                }
                cdb[byte] |= 1 << bit;
                let o = i.execute(0, &cdb, &[], &mut [0u8; 64]);
                assert_eq!(o.status, ScsiStatus::CHECK_CONDITION, "{} byte {byte} bit {bit}", op.name);
                assert_eq!(sense_triple(o.sense()), Some((5, 0x24, 0)), "{} byte {byte} bit {bit}", op.name);
                assert_eq!(
                    field_pointer(o.sense()),
                    Some((true, byte as u16, Some(expected_bit(op.opcode, byte, bit)))),
                    "{} byte {byte} bit {bit}: sense {:02x?}",
                    op.name,
                    o.sense()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "only {checked} bits checked");
    // The device is still fine afterwards.
    assert_good(&i.execute(0, &TUR, &[], &mut []));
}

// ------------------------------------------------------------------------------------------------
// REQUEST SENSE
// ------------------------------------------------------------------------------------------------

#[test]
fn request_sense_reports_and_clears_unit_attention() {
    let r = ram();
    // Fixed format: the pending POWER ON, RESET unit attention, then nothing.
    let i = r.connect();
    let (o, d) = data_in(&i, 0, &[REQUEST_SENSE, 0, 0, 0, 252, 0], 252);
    assert_good(&o);
    assert_eq!(d, [0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0, 0, 0, 0, 0]);
    assert_eq!(o.residual, (false, 252 - 18));
    let d = data_in_ok(&i, 0, &[REQUEST_SENSE, 0, 0, 0, 252, 0], 252);
    assert_eq!(d, [0x70, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_good(&i.execute(0, &TUR, &[], &mut []));

    // Descriptor format (DESC=1).
    let j = r.connect();
    let d = data_in_ok(&j, 0, &[REQUEST_SENSE, 1, 0, 0, 252, 0], 252);
    assert_eq!(d, [0x72, 6, 0x29, 0, 0, 0, 0, 0]);
    let d = data_in_ok(&j, 0, &[REQUEST_SENSE, 1, 0, 0, 252, 0], 252);
    assert_eq!(d, [0x72, 0, 0, 0, 0, 0, 0, 0]);
    assert_good(&j.execute(0, &TUR, &[], &mut []));

    // Allocation length truncation (the condition is consumed all the same).
    let k = r.connect();
    let (o, d) = data_in(&k, 0, &[REQUEST_SENSE, 0, 0, 0, 8, 0], 252);
    assert_good(&o);
    assert_eq!(d, [0x70, 0, 6, 0, 0, 0, 0, 10]);
    assert_good(&k.execute(0, &TUR, &[], &mut []));
    // Allocation length 0: no data.
    let (o, d) = data_in(&k, 0, &[REQUEST_SENSE, 0, 0, 0, 0, 0], 252);
    assert_good(&o);
    assert!(d.is_empty());

    // Reserved bit.
    assert_invalid_cdb(&k.execute(0, &[REQUEST_SENSE, 0x02, 0, 0, 18, 0], &[], &mut [0; 18]), 1, Some(1));
}

// ------------------------------------------------------------------------------------------------
// INQUIRY
// ------------------------------------------------------------------------------------------------

fn padded(s: &str, n: usize) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.resize(n, b' ');
    v
}

fn expected_standard_inquiry(rmb: bool, product: &str) -> Vec<u8> {
    // TPGS 01b (implicit ALUA) and 3PC (EXTENDED COPY) in byte 5; CMDQUE in byte 7.
    let mut d = vec![0x00, if rmb { 0x80 } else { 0 }, 0x06, 0x12, 91, 0x18, 0x00, 0x02];
    d.extend(padded("SCST_RS", 8));
    d.extend(padded(product, 16));
    d.extend(padded("T001", 4));
    d.resize(58, 0);
    // Version descriptors: SAM-5, SPC-4, SBC-3 (the loopback port has no transport standard).
    d.extend([0x00, 0xa0, 0x04, 0x60, 0x04, 0xc0]);
    d.resize(96, 0);
    d
}

#[test]
fn inquiry_standard_data() {
    let r = ram();
    let i = r.login();
    let full = data_in_ok(&i, 0, &inquiry_cdb(false, 0, 255), 255);
    assert_eq!(full, expected_standard_inquiry(false, "RAMDISK"));
    assert_eq!(usize::from(full[4]) + 5, full.len(), "additional length = total - 5");

    // A removable device sets RMB.
    let rr = removable_rig();
    let j = rr.login();
    assert_eq!(data_in_ok(&j, 0, &inquiry_cdb(false, 0, 255), 255), expected_standard_inquiry(true, "RAMDISK"));

    // The backend names the product.
    let n = Rig::new(Backend::Null, 2048, 512);
    let k = n.login();
    assert_eq!(data_in_ok(&k, 0, &inquiry_cdb(false, 0, 96), 96), expected_standard_inquiry(false, "NULLIO"));
}

#[test]
fn inquiry_allocation_length() {
    let r = ram();
    let i = r.login();
    let full = data_in_ok(&i, 0, &inquiry_cdb(false, 0, 96), 96);
    for alloc in (0..=100).chain([255, 256, 511, 512, 1024, 4096, 65535]) {
        let mut buf = vec![0xa5u8; usize::from(alloc)];
        let o = i.execute(0, &inquiry_cdb(false, 0, alloc), &[], &mut buf);
        assert_good(&o);
        let n = usize::from(alloc).min(full.len());
        assert_eq!(o.data_in_len, n, "alloc {alloc}");
        assert_eq!(buf[..n], full[..n], "alloc {alloc}");
        // Truncation to the allocation length is not an overflow; a shorter response leaves an
        // underflow residual.
        assert_eq!(o.residual, (false, (usize::from(alloc) - n) as u32), "alloc {alloc}");
    }
    // 16-bit allocation length: 511 (01FFh) and 512 (0200h) return the same.
    let a = data_in_ok(&i, 0, &inquiry_cdb(false, 0, 511), 511);
    let b = data_in_ok(&i, 0, &inquiry_cdb(false, 0, 512), 512);
    assert_eq!(a, b);
    assert_eq!(a, full);
    // A transport buffer smaller than the allocation length: the rest is an overflow residual.
    let (o, d) = data_in(&i, 0, &inquiry_cdb(false, 0, 255), 64);
    assert_good(&o);
    assert_eq!(d, full[..64]);
    assert_eq!(o.residual, (true, 96 - 64));
}

#[test]
fn inquiry_field_errors() {
    let r = ram();
    let i = r.login();
    // EVPD=0 with a page code: INVALID FIELD IN CDB at byte 2.
    for page in [0x01, 0x80, 0x83, 0xff] {
        assert_invalid_cdb(&i.execute(0, &inquiry_cdb(false, page, 255), &[], &mut [0; 255]), 2, Some(7));
    }
    // Unsupported VPD pages.
    for page in [0x01, 0x81, 0x84, 0x89, 0xb3, 0xc0, 0xff] {
        assert_invalid_cdb(&i.execute(0, &inquiry_cdb(true, page, 255), &[], &mut [0; 255]), 2, Some(7));
    }
    // CMDDT (obsolete, byte 1 bit 1) and reserved bits.
    assert_invalid_cdb(&i.execute(0, &[INQUIRY, 0x02, 0, 0, 96, 0], &[], &mut [0; 96]), 1, Some(1));
    assert_invalid_cdb(&i.execute(0, &[INQUIRY, 0x80, 0, 0, 96, 0], &[], &mut [0; 96]), 1, Some(7));
}

fn vpd(i: &LocalInitiator, page: u8) -> Vec<u8> {
    let d = data_in_ok(i, 0, &inquiry_cdb(true, page, 1024), 1024);
    assert_eq!(d[0], 0x00, "qualifier/type of page {page:02x}");
    assert_eq!(d[1], page);
    assert_eq!(usize::from(be16(&d, 2)) + 4, d.len(), "page {page:02x} length");
    d
}

#[test]
fn vpd_supported_pages_and_each_page_answers() {
    let r = ram();
    let i = r.login();
    let d = vpd(&i, 0x00);
    assert_eq!(d, [0, 0, 0, 7, 0x00, 0x80, 0x83, 0x86, 0xb0, 0xb1, 0xb2]);
    for &p in &d[4..] {
        vpd(&i, p);
    }
    // Truncation.
    let (o, t) = data_in(&i, 0, &inquiry_cdb(true, 0x00, 6), 6);
    assert_good(&o);
    assert_eq!(t, d[..6]);
}

#[test]
fn vpd_unit_serial_number_and_device_identification() {
    let mut c = config();
    c.serial = Some("SN-4711".into());
    c.naa = Some(0x3123_4567_89ab_cdef);
    let r = Rig::with_config(Backend::Ram, 2048, 512, c);
    let i = r.login();
    let d = vpd(&i, 0x80);
    assert_eq!(&d[..4], &[0, 0x80, 0, 7]);
    assert_eq!(&d[4..], b"SN-4711");

    let name_designator = |assoc_type: u8, s: &str| {
        let len = (s.len() + 4) & !3;
        let mut v = vec![0xf3, assoc_type, 0, len as u8];
        v.extend_from_slice(s.as_bytes());
        v.resize(4 + len, 0);
        v
    };
    let check = |i: &LocalInitiator, port: u16| {
        let mut want = vec![0u8, 0x83, 0, 0];
        // NAA (binary, logical unit).
        want.extend([0x01, 0x03, 0, 8, 0x31, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        // T10 vendor ID (ASCII, logical unit): vendor padded to 8, then the serial number.
        want.extend([0x02, 0x01, 0, 15]);
        want.extend_from_slice(b"SCST_RS SN-4711");
        // Relative target port and target port group (PIV, "no specific protocol" Fh).
        want.extend([0xf1, 0x94, 0, 4, 0, 0]);
        want.extend(port.to_be_bytes());
        want.extend([0xf1, 0x95, 0, 4, 0, 0, 0, 1]);
        // SCSI name strings of the target port and the target device.
        let tname = r.target.name().to_string();
        want.extend(name_designator(0x98, &format!("{tname},t,0x{port:04x}")));
        want.extend(name_designator(0xa8, &tname));
        let n = want.len() - 4;
        want[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        assert_eq!(vpd(i, 0x83), want, "port {port}");
    };
    check(&i, 1);
    let j = LocalInitiator::connect_port(&r.target, "iqn.2026-01.rs.scst:port2", 2);
    j.clear_unit_attentions(0);
    check(&j, 2);
}

#[test]
fn vpd_extended_inquiry_and_block_pages() {
    let r = ram();
    let i = r.login();
    let mut want = vec![0, 0x86, 0, 0x3c, 0, 0x07, 0x01, 0, 0, 0, 0, 0, 0, 32];
    want.resize(64, 0);
    assert_eq!(vpd(&i, 0x86), want, "HEADSUP ORDSUP SIMPSUP, V_SUP, 32-byte sense");

    // Block Limits: page length 3Ch; compare and write up to 255 blocks; granularity 1; maximum
    // transfer 64 MiB; optimal 1 MiB; maximum prefetch 64 MiB; unmap: any LBA count, 4095
    // descriptors, 4 KiB granularity; no write same limit; atomic writes of 1024 blocks, aligned
    // and granular to 1 block.
    let mut want = vec![0, 0xb0, 0, 0x3c, 0, 0xff, 0, 1, 0, 2, 0, 0, 0, 0, 0x08, 0, 0, 2, 0, 0];
    want.extend([0xff, 0xff, 0xff, 0xff, 0, 0, 0x0f, 0xff, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    want.extend([0, 0, 4, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
    want.resize(64, 0);
    assert_eq!(vpd(&i, 0xb0), want);
    // Block Device Characteristics: RAM does not rotate; WABEREQ and WACEREQ 01b (sanitized
    // blocks read back GOOD).
    let mut want = vec![0, 0xb1, 0, 0x3c, 0, 1, 0, 0x50];
    want.resize(64, 0);
    assert_eq!(vpd(&i, 0xb1), want);
    // Logical Block Provisioning: RAM is thin: LBPU, LBPWS, LBPWS10, LBPRZ, type thin.
    assert_eq!(vpd(&i, 0xb2), [0, 0xb2, 0, 4, 0, 0xe4, 0x02, 0]);
    // A fully provisioned LU reports none of it.
    let n = Rig::new(Backend::Null, 2048, 512);
    assert_eq!(vpd(&n.login(), 0xb2), [0, 0xb2, 0, 4, 0, 0, 0, 0]);
    // Nor WABEREQ/WACEREQ: it supports neither erase.
    assert_eq!(vpd(&n.login(), 0xb1)[7], 0);

    // 4096-byte blocks: the limits are in blocks.
    let r4 = Rig::new(Backend::File, 512, 4096);
    let j = r4.login();
    let d = vpd(&j, 0xb0);
    assert_eq!(be32(&d, 8), 16384, "maximum transfer length");
    assert_eq!(be32(&d, 12), 256, "optimal transfer length: 1 MiB");
    assert_eq!(be32(&d, 16), 16384, "maximum prefetch length");
    // A file reports no rotation rate.
    assert_eq!(be16(&vpd(&j, 0xb1), 4), 0);
}

#[test]
fn inquiry_and_report_luns_leave_unit_attention_pending() {
    let r = ram();
    let i = r.connect();
    assert_good(&i.execute(0, &inquiry_cdb(false, 0, 96), &[], &mut [0; 96]));
    assert_good(&i.execute(0, &inquiry_cdb(true, 0x83, 255), &[], &mut [0; 255]));
    assert_good(&i.execute(0, &report_luns(0, 64), &[], &mut [0; 64]));
    assert_ua(&i.execute(0, &TUR, &[], &mut []), 0x29, 0x00);
    assert_good(&i.execute(0, &TUR, &[], &mut []));
}

// ------------------------------------------------------------------------------------------------
// REPORT LUNS and logical units that do not exist
// ------------------------------------------------------------------------------------------------

fn rig_with_luns(luns: &[u16]) -> (Rig, Vec<u16>) {
    let r = ram();
    for &l in luns {
        let d = device(scst_backends::RamStore::new(1 << 20, 512).expect("ram"), config());
        r.target.add_lun(Lun(l), d, false).expect("add lun");
    }
    let mut all = vec![0u16];
    all.extend_from_slice(luns);
    (r, all)
}

fn lun_list(luns: &[u16]) -> Vec<u8> {
    let mut v = ((luns.len() * 8) as u32).to_be_bytes().to_vec();
    v.extend([0; 4]);
    for &l in luns {
        v.extend(Lun(l).to_sam());
    }
    v
}

#[test]
fn report_luns_select_report() {
    let (r, all) = rig_with_luns(&[1, 300]);
    let i = r.login();
    let full = lun_list(&all);
    assert_eq!(&full[8..], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, 0x2c, 0, 0, 0, 0, 0, 0]);
    for select in [0x00, 0x02] {
        assert_eq!(data_in_ok(&i, 0, &report_luns(select, 4096), 4096), full, "select {select:#x}");
    }
    // No well-known, administrative or subsidiary logical units.
    for select in [0x01, 0x10, 0x12] {
        assert_eq!(data_in_ok(&i, 0, &report_luns(select, 4096), 4096), [0; 8], "select {select:#x}");
    }
    // Addressed to a LUN other than LUN 0, 11h reports nothing.
    assert_eq!(data_in_ok(&i, 1, &report_luns(0x11, 4096), 4096), [0; 8]);
    // Reserved select report values.
    for select in [0x03, 0x0f, 0x13, 0xf7] {
        assert_invalid_cdb(&i.execute(0, &report_luns(select, 4096), &[], &mut [0; 64]), 2, Some(7));
    }
    // Allocation length truncation keeps the full LUN LIST LENGTH.
    let (o, d) = data_in(&i, 0, &report_luns(0, 16), 4096);
    assert_good(&o);
    assert_eq!(d, full[..16]);
    // Any LUN answers, and the list is the same.
    assert_eq!(data_in_ok(&i, 300, &report_luns(0, 4096), 4096), full);
    assert_eq!(data_in_ok(&i, 77, &report_luns(0, 4096), 4096), full);
}

/// SPC-4 (and sg_luns, LIO) : SELECT REPORT 11h sent to LUN 0 reports the administrative logical
/// units and every logical unit that is not a subsidiary one, i.e. all of this target's.
#[test]
fn report_luns_select_report_11h_to_lun0_lists_top_level_units() {
    let (r, all) = rig_with_luns(&[1, 300]);
    let i = r.login();
    assert_eq!(data_in_ok(&i, 0, &report_luns(0x11, 4096), 4096), lun_list(&all));
}

#[test]
fn target_without_lun0() {
    let t = target();
    let d = device(scst_backends::RamStore::new(1 << 20, 512).expect("ram"), config());
    t.add_lun(Lun(5), d, false).expect("add");
    let i = LocalInitiator::connect(&t, "iqn.2026-01.rs.scst:nolun0");
    // REPORT LUNS and INQUIRY work at LUN 0; nothing else does, and no unit attention is
    // reported there.
    assert_eq!(data_in_ok(&i, 0, &report_luns(0, 64), 64), lun_list(&[5]));
    let d = data_in_ok(&i, 0, &inquiry_cdb(false, 0, 255), 255);
    let mut want = vec![0x7f, 0, 0x06, 0x12, 31];
    want.resize(36, 0);
    assert_eq!(d, want, "peripheral qualifier 011b, device type 1Fh");
    // Truncated.
    assert_eq!(data_in_ok(&i, 0, &inquiry_cdb(false, 0, 1), 1), [0x7f]);
    // The same field checks apply.
    assert_invalid_cdb(&i.execute(0, &inquiry_cdb(false, 1, 96), &[], &mut [0; 96]), 2, Some(7));
    assert_invalid_cdb(&i.execute(0, &[INQUIRY, 0, 0, 0, 96, 0x04], &[], &mut [0; 96]), 5, Some(2));
    for cdb in [
        TUR.to_vec(),
        cdb10(READ10, 0, 0, 1).to_vec(),
        mode_sense6(false, 0, 0x3f, 0, 255).to_vec(),
        read_capacity16(32).to_vec(),
        vec![0x04, 0, 0, 0, 0, 0],
    ] {
        let o = i.execute(0, &cdb, &[], &mut [0; 512]);
        assert_check(&o, 0x05, 0x25, 0x00);
    }
    let o = i.execute(0, &cdb10(WRITE10, 0, 0, 1), &[0; 512], &mut []);
    assert_check(&o, 0x05, 0x25, 0x00);
    // REQUEST SENSE to it returns GOOD with LOGICAL UNIT NOT SUPPORTED in the sense data.
    let d = data_in_ok(&i, 0, &[REQUEST_SENSE, 0, 0, 0, 252, 0], 252);
    assert_eq!(d, [0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x25, 0, 0, 0, 0, 0]);
    let d = data_in_ok(&i, 0, &[REQUEST_SENSE, 1, 0, 0, 252, 0], 252);
    assert_eq!(d, [0x72, 5, 0x25, 0, 0, 0, 0, 0]);
    // Any other unmapped LUN is the same.
    assert_check(&i.execute(9, &TUR, &[], &mut []), 0x05, 0x25, 0x00);
    // The real LUN reports its power-on unit attention, then works.
    assert_ua(&i.execute(5, &TUR, &[], &mut []), 0x29, 0x00);
    assert_good(&i.execute(5, &TUR, &[], &mut []));
}

// ------------------------------------------------------------------------------------------------
// READ CAPACITY
// ------------------------------------------------------------------------------------------------

#[test]
fn read_capacity_10_and_16() {
    let r = ram();
    let i = r.login();
    let (o, d) = data_in(&i, 0, &[READ_CAPACITY10, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
    assert_good(&o);
    assert_eq!(d, [0, 0, 0x07, 0xff, 0, 0, 0x02, 0x00]);
    assert_eq!(o.residual, (false, 0));
    // A transport buffer of 4 bytes: overflow residual.
    let (o, d) = data_in(&i, 0, &[READ_CAPACITY10, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4);
    assert_good(&o);
    assert_eq!(d, [0, 0, 0x07, 0xff]);
    assert_eq!(o.residual, (true, 4));

    // RAM is thin: LBPME and LBPRZ in byte 14.
    let mut full = vec![0, 0, 0, 0, 0, 0, 0x07, 0xff, 0, 0, 0x02, 0x00, 0, 0, 0xc0];
    full.resize(32, 0);
    assert_eq!(data_in_ok(&i, 0, &read_capacity16(32), 32), full);
    // Every allocation length from 0 to 40 is GOOD and truncates.
    for alloc in 0..=40u32 {
        let (o, d) = data_in(&i, 0, &read_capacity16(alloc), 64);
        assert_good(&o);
        assert_eq!(d, full[..(alloc as usize).min(32)], "alloc {alloc}");
    }
    // Reserved bits.
    let mut c = read_capacity16(32);
    c[14] = 0x01;
    assert_invalid_cdb(&i.execute(0, &c, &[], &mut [0; 32]), 14, Some(0));
    let mut c = read_capacity16(32);
    c[1] |= 0x20;
    assert_invalid_cdb(&i.execute(0, &c, &[], &mut [0; 32]), 1, Some(5));
}

// ------------------------------------------------------------------------------------------------
// REPORT SUPPORTED OPERATION CODES, TASK MANAGEMENT FUNCTIONS, TARGET PORT GROUPS
// ------------------------------------------------------------------------------------------------

#[test]
fn rsoc_all_commands() {
    let r = ram();
    explicit_alua(&r);
    let i = r.login();
    let d = data_in_ok(&i, 0, &rsoc(false, 0, 0, 0, 65535), 65535);
    assert_eq!(d.len(), 4 + 8 * DISK_OPS.len());
    assert_eq!(be32(&d, 0) as usize, d.len() - 4);
    for (k, op) in DISK_OPS.iter().enumerate() {
        let e = &d[4 + 8 * k..12 + 8 * k];
        let sa = op.service_action.unwrap_or(0);
        let servactv = u8::from(op.service_action.is_some());
        assert_eq!(e, [op.opcode, 0, 0, sa, 0, servactv, 0, op.cdb_len() as u8], "{}", op.name);
    }
    // Spot checks against the standard, independent of the table.
    let find = |d: &[u8], step: usize, opcode: u8, sa: u8| {
        d[4..].chunks(step).find(|e| e[0] == opcode && e[3] == sa).map(|e| e[..8].to_vec())
    };
    assert_eq!(find(&d, 8, READ10, 0), Some(vec![0x28, 0, 0, 0, 0, 0, 0, 10]));
    assert_eq!(find(&d, 8, SERVICE_ACTION_IN16, 0x10), Some(vec![0x9e, 0, 0, 0x10, 0, 1, 0, 16]));
    assert_eq!(find(&d, 8, MAINTENANCE_IN, 0x0c), Some(vec![0xa3, 0, 0, 0x0c, 0, 1, 0, 12]));
    assert_eq!(find(&d, 8, 0x42, 0), Some(vec![0x42, 0, 0, 0, 0, 0, 0, 10]), "UNMAP on a thin LU");
    let n = Rig::new(Backend::Null, 2048, 512);
    let nd = data_in_ok(&n.login(), 0, &rsoc(false, 0, 0, 0, 65535), 65535);
    // That rig's target has no explicit ALUA either.
    assert_eq!(nd.len(), d.len() - 32, "no UNMAP, BLOCK ERASE, CRYPTOGRAPHIC ERASE, SET TARGET PORT GROUPS");
    assert_eq!(find(&nd, 8, 0xa4, 0x0a), None);
    assert_eq!(find(&nd, 8, 0x48, 0x03), None);
    assert_eq!(find(&nd, 8, 0x48, 0x02), None);
    assert_eq!(find(&nd, 8, 0x48, 0x01), Some(vec![0x48, 0, 0, 0x01, 0, 1, 0, 10]));
    assert_eq!(find(&nd, 8, 0x42, 0), None);

    // RCTD: every descriptor has CTDP and a command timeouts descriptor.
    let t = data_in_ok(&i, 0, &rsoc(true, 0, 0, 0, 65535), 65535);
    assert_eq!(t.len(), 4 + 20 * DISK_OPS.len());
    assert_eq!(be32(&t, 0) as usize, t.len() - 4);
    for (k, op) in DISK_OPS.iter().enumerate() {
        let e = &t[4 + 20 * k..24 + 20 * k];
        assert_eq!(e[0], op.opcode);
        assert_eq!(e[5], 0x02 | u8::from(op.service_action.is_some()), "{}: CTDP", op.name);
        assert_eq!(&e[8..], &[0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 30], "{}: timeouts", op.name);
    }
    // Allocation length truncation.
    let (o, s) = data_in(&i, 0, &rsoc(false, 0, 0, 0, 10), 65535);
    assert_good(&o);
    assert_eq!(s, d[..10]);
}

#[test]
fn rsoc_one_command() {
    let r = ram();
    explicit_alua(&r);
    let i = r.login();
    // Options 1: READ(10).
    let d = data_in_ok(&i, 0, &rsoc(false, 1, READ10, 0, 512), 512);
    assert_eq!(d, [0, 0x03, 0, 10, 0x28, 0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x00]);
    // With RCTD: CTDP and a timeouts descriptor.
    let d = data_in_ok(&i, 0, &rsoc(true, 1, READ10, 0, 512), 512);
    assert_eq!(
        d,
        [
            0, 0x83, 0, 10, 0x28, 0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x00, 0, 0x0a, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 30
        ]
    );
    // Options 2: READ CAPACITY(16).
    let d = data_in_ok(&i, 0, &rsoc(false, 2, SERVICE_ACTION_IN16, 0x10, 512), 512);
    assert_eq!(d, [0, 3, 0, 16, 0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0]);
    // Options 3 with and without service actions.
    let d = data_in_ok(&i, 0, &rsoc(false, 3, WRITE16, 0, 512), 512);
    assert_eq!(&d[..6], &[0, 3, 0, 16, 0x8a, 0x18]);
    let d = data_in_ok(&i, 0, &rsoc(false, 3, MAINTENANCE_IN, 0x0c, 512), 512);
    assert_eq!(d, [0, 3, 0, 12, 0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]);
    // Options 1 for an opcode with service actions, options 2 for one without.
    for (opt, opcode, sa) in
        [(1, SERVICE_ACTION_IN16, 0x10), (1, MAINTENANCE_IN, 0x0c), (2, READ10, 0), (2, TEST_UNIT_READY, 0)]
    {
        let o = i.execute(0, &rsoc(false, opt, opcode, sa, 512), &[], &mut [0; 512]);
        assert_invalid_cdb(&o, 2, Some(2));
    }
    // Reserved reporting options.
    for opt in 4..8 {
        assert_invalid_cdb(&i.execute(0, &rsoc(false, opt, READ10, 0, 512), &[], &mut [0; 512]), 2, Some(2));
    }
    // Unsupported commands: SUPPORT 001b, no usage data.
    assert_eq!(data_in_ok(&i, 0, &rsoc(false, 1, 0x04, 0, 512), 512), [0, 1, 0, 0]);
    assert_eq!(data_in_ok(&i, 0, &rsoc(false, 2, SERVICE_ACTION_IN16, 0x13, 512), 512), [0, 1, 0, 0]);
    let n = Rig::new(Backend::Null, 2048, 512);
    assert_eq!(data_in_ok(&n.login(), 0, &rsoc(false, 1, 0x42, 0, 512), 512), [0, 1, 0, 0]);
    assert_eq!(data_in_ok(&i, 0, &rsoc(false, 3, 0xc0, 0, 512), 512), [0, 1, 0, 0]);

    // Every supported command: its usage data, DPO/FUA where SBC defines them.
    for op in DISK_OPS {
        let (opt, sa) = match op.service_action {
            Some(sa) => (2, u16::from(sa)),
            None => (1, 0),
        };
        let d = data_in_ok(&i, 0, &rsoc(false, opt, op.opcode, sa, 512), 512);
        assert_eq!(d[1], 0x03, "{}", op.name);
        assert_eq!(usize::from(be16(&d, 2)), op.cdb_len(), "{}", op.name);
        assert_eq!(&d[4..], op.usage, "{}", op.name);
        match op.opcode {
            READ10 | READ12 | READ16 | WRITE10 | WRITE12 | WRITE16 => assert_eq!(d[5] & 0x18, 0x18, "{}", op.name),
            VERIFY10 | VERIFY12 | VERIFY16 | WRITE_VERIFY10 | WRITE_VERIFY12 | WRITE_VERIFY16 => {
                assert_eq!(d[5] & 0x16, 0x16, "{}: DPO and BYTCHK", op.name);
            }
            SYNC_CACHE10 | SYNC_CACHE16 => assert_eq!(d[5] & 0x02, 0x02, "{}: IMMED", op.name),
            _ => {}
        }
    }
}

#[test]
fn report_supported_task_management_functions() {
    let r = ram();
    let i = r.login();
    let cdb = |repd: bool, alloc: u32| {
        let mut c = [MAINTENANCE_IN, 0x0d, if repd { 0x80 } else { 0 }, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[6..10].copy_from_slice(&alloc.to_be_bytes());
        c
    };
    // ATS ATSS CTSS LURS QTS TRS; QAES QTSS ITNRS.
    assert_eq!(data_in_ok(&i, 0, &cdb(false, 255), 255), [0xde, 0x07, 0, 0]);
    let mut want = vec![0xde, 0x07, 0, 0x0c];
    want.resize(16, 0);
    assert_eq!(data_in_ok(&i, 0, &cdb(true, 255), 255), want);
    assert_eq!(data_in_ok(&i, 0, &cdb(true, 2), 255), [0xde, 0x07]);
}

#[test]
fn report_target_port_groups() {
    let r = ram();
    let i = r.login();
    let cdb = |format: u8, alloc: u32| {
        let mut c = [MAINTENANCE_IN, format << 5 | 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[6..10].copy_from_slice(&alloc.to_be_bytes());
        c
    };
    // One group (1), active/optimized, AO supported, one port (relative port 1).
    assert_eq!(data_in_ok(&i, 0, &cdb(0, 255), 255), [0, 0, 0, 12, 0x00, 0x01, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
    // Extended header.
    assert_eq!(
        data_in_ok(&i, 0, &cdb(1, 255), 255),
        [0, 0, 0, 16, 0x10, 0, 0, 0, 0x00, 0x01, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    );
    assert_invalid_cdb(&i.execute(0, &cdb(2, 255), &[], &mut [0; 255]), 1, Some(7));
    // The port is the session's.
    let j = LocalInitiator::connect_port(&r.target, "iqn.2026-01.rs.scst:p3", 3);
    j.clear_unit_attentions(0);
    assert_eq!(data_in_ok(&j, 0, &cdb(0, 255), 255)[12..], [0, 0, 0, 3]);
    // Truncation.
    assert_eq!(data_in_ok(&i, 0, &cdb(0, 6), 255), [0, 0, 0, 12, 0x00, 0x01]);
}

#[test]
fn read_defect_data_lists_are_empty() {
    let r = ram();
    let i = r.login();
    let rdd10 = |b2: u8, alloc: u16| {
        let a = alloc.to_be_bytes();
        [READ_DEFECT10, 0, b2, 0, 0, 0, 0, a[0], a[1], 0]
    };
    assert_eq!(data_in_ok(&i, 0, &rdd10(0, 32), 32), [0, 0, 0, 0]);
    assert_eq!(data_in_ok(&i, 0, &rdd10(0x18, 32), 32), [0, 0x18, 0, 0], "PLIST and GLIST, format 0");
    assert_eq!(data_in_ok(&i, 0, &rdd10(0x1d, 32), 32), [0, 0x1d, 0, 0]);
    assert_eq!(data_in_ok(&i, 0, &rdd10(0x18, 2), 32), [0, 0x18]);
    assert_invalid_cdb(&i.execute(0, &rdd10(0x20, 32), &[], &mut [0; 32]), 2, Some(5));
    let rdd12 = |b1: u8, alloc: u32| {
        let mut c = [READ_DEFECT12, b1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[6..10].copy_from_slice(&alloc.to_be_bytes());
        c
    };
    // libiscsi sends byte 1 = 0.
    assert_eq!(data_in_ok(&i, 0, &rdd12(0, 32), 32), [0; 8]);
    assert_eq!(data_in_ok(&i, 0, &rdd12(0x18, 32), 32), [0, 0x18, 0, 0, 0, 0, 0, 0]);
}

// ------------------------------------------------------------------------------------------------
// START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL
// ------------------------------------------------------------------------------------------------

#[test]
fn start_stop_unit_eject_and_load() {
    let r = removable_rig();
    let i = r.login();
    let other = r.login();
    let data = pattern(1, 512);
    write(&i, 0, 5, 512, &data);
    for immed in [true, false] {
        // Eject.
        assert_good(&i.execute(0, &start_stop(immed, 0, true, false), &[], &mut []));
        assert_check(&i.execute(0, &TUR, &[], &mut []), 0x02, 0x3a, 0x00);
        let o = i.execute(0, &cdb10(READ10, 0, 5, 1), &[], &mut [0; 512]);
        assert_check(&o, 0x02, 0x3a, 0x00);
        let o = i.execute(0, &cdb10(WRITE10, 0, 5, 1), &[0xff; 512], &mut []);
        assert_check(&o, 0x02, 0x3a, 0x00);
        for cdb in [
            cdb10(VERIFY10, 0x02, 0, 1).to_vec(),
            cdb10(SYNC_CACHE10, 0x02, 0, 0).to_vec(),
            cdb10(PREFETCH10, 0x02, 0, 1).to_vec(),
            cdb16(READ16, 0, 0, 1).to_vec(),
            [READ_CAPACITY10, 0, 0, 0, 0, 0, 0, 0, 0, 0].to_vec(),
            read_capacity16(15).to_vec(),
        ] {
            let o = i.execute(0, &cdb, &[], &mut [0; 32]);
            assert_check(&o, 0x02, 0x3a, 0x00);
        }
        assert_check(&other.execute(0, &TUR, &[], &mut []), 0x02, 0x3a, 0x00);
        // What needs no medium keeps working.
        assert_good(&i.execute(0, &inquiry_cdb(false, 0, 96), &[], &mut [0; 96]));
        assert_good(&i.execute(0, &mode_sense6(false, 0, 0x3f, 0, 255), &[], &mut [0; 255]));
        assert_good(&i.execute(0, &rsoc(false, 0, 0, 0, 4096), &[], &mut [0; 4096]));
        assert_good(&i.execute(0, &report_luns(0, 64), &[], &mut [0; 64]));
        assert_good(&i.execute(0, &[REQUEST_SENSE, 0, 0, 0, 18, 0], &[], &mut [0; 18]));
        // Ejecting again is fine.
        assert_good(&i.execute(0, &start_stop(immed, 0, true, false), &[], &mut []));
        // Load: ready at once, on this nexus without a unit attention.
        assert_good(&i.execute(0, &start_stop(immed, 0, true, true), &[], &mut []));
        assert_good(&i.execute(0, &TUR, &[], &mut []));
        assert_eq!(read(&i, 0, 5, 512, 1), data, "the medium keeps its data");
        // Loading a loaded medium is fine.
        assert_good(&i.execute(0, &start_stop(immed, 0, true, true), &[], &mut []));
        // Other nexuses learn that the medium may have changed.
        assert_ua(&other.execute(0, &TUR, &[], &mut []), 0x28, 0x00);
        assert_good(&other.execute(0, &TUR, &[], &mut []));
    }
}

#[test]
fn start_stop_unit_power_conditions_and_no_loej() {
    let r = removable_rig();
    let i = r.login();
    // A power condition other than 0 neither ejects nor loads (libiscsi StartStopUnit.PwrCnd).
    for pc in 1..16 {
        assert_good(&i.execute(0, &start_stop(true, pc, true, false), &[], &mut []));
        assert_good(&i.execute(0, &TUR, &[], &mut []));
    }
    // LOEJ=0: START is accepted and the unit stays ready (libiscsi StartStopUnit.NoLoej).
    for (immed, start) in [(false, false), (true, false), (false, true), (true, true)] {
        assert_good(&i.execute(0, &start_stop(immed, 0, false, start), &[], &mut []));
        assert_good(&i.execute(0, &TUR, &[], &mut []));
        // NO_FLUSH.
        let mut c = start_stop(immed, 0, false, start);
        c[4] |= 0x04;
        assert_good(&i.execute(0, &c, &[], &mut []));
    }
    // Reserved bits.
    assert_invalid_cdb(&i.execute(0, &[START_STOP, 0x02, 0, 0, 0, 0], &[], &mut []), 1, Some(1));
    assert_invalid_cdb(&i.execute(0, &[START_STOP, 0, 0, 0, 0x08, 0], &[], &mut []), 4, Some(3));
}

#[test]
fn start_stop_unit_not_removable() {
    let r = ram();
    let i = r.login();
    assert_invalid_cdb(&i.execute(0, &start_stop(false, 0, true, false), &[], &mut []), 4, Some(1));
    assert_invalid_cdb(&i.execute(0, &start_stop(true, 0, true, true), &[], &mut []), 4, Some(1));
    assert_good(&i.execute(0, &TUR, &[], &mut []));
    assert_good(&i.execute(0, &start_stop(false, 0, false, false), &[], &mut []));
    assert_good(&i.execute(0, &start_stop(false, 3, true, false), &[], &mut []));
    assert_good(&i.execute(0, &TUR, &[], &mut []));
}

#[test]
fn prevent_allow_medium_removal() {
    let r = removable_rig();
    let a = r.login();
    let b = r.login();
    let eject = start_stop(false, 0, true, false);
    let load = start_stop(false, 0, true, true);
    assert_good(&a.execute(0, &prevent(1), &[], &mut []));
    // Prevented: eject and load both fail; the medium stays.
    assert_check(&a.execute(0, &eject, &[], &mut []), 0x05, 0x53, 0x02);
    assert_check(&a.execute(0, &load, &[], &mut []), 0x05, 0x53, 0x02);
    assert_good(&a.execute(0, &TUR, &[], &mut []));
    // Prevention is logical-unit wide: another nexus cannot eject, and its ALLOW does not
    // release the first nexus's PREVENT.
    assert_check(&b.execute(0, &eject, &[], &mut []), 0x05, 0x53, 0x02);
    assert_good(&b.execute(0, &prevent(0), &[], &mut []));
    assert_check(&b.execute(0, &eject, &[], &mut []), 0x05, 0x53, 0x02);
    // PREVENT twice, ALLOW once: allowed.
    assert_good(&a.execute(0, &prevent(1), &[], &mut []));
    assert_good(&a.execute(0, &prevent(0), &[], &mut []));
    assert_good(&a.execute(0, &eject, &[], &mut []));
    assert_check(&a.execute(0, &TUR, &[], &mut []), 0x02, 0x3a, 0x00);
    // PREVENT with no medium; then load is prevented too.
    assert_good(&a.execute(0, &prevent(1), &[], &mut []));
    assert_check(&a.execute(0, &load, &[], &mut []), 0x05, 0x53, 0x02);
    assert_check(&a.execute(0, &TUR, &[], &mut []), 0x02, 0x3a, 0x00);
    assert_good(&a.execute(0, &prevent(0), &[], &mut []));
    assert_good(&a.execute(0, &load, &[], &mut []));
    assert_good(&a.execute(0, &TUR, &[], &mut []));
    // Medium changer values are invalid for a disk.
    assert_invalid_cdb(&a.execute(0, &prevent(2), &[], &mut []), 4, Some(1));
    assert_invalid_cdb(&a.execute(0, &prevent(3), &[], &mut []), 4, Some(1));
    assert_invalid_cdb(&a.execute(0, &prevent(4), &[], &mut []), 4, Some(2));
}

#[test]
fn prevent_released_when_session_closes() {
    let r = removable_rig();
    let a = r.login();
    let b = r.login();
    assert_good(&a.execute(0, &prevent(1), &[], &mut []));
    assert_check(&b.execute(0, &start_stop(false, 0, true, false), &[], &mut []), 0x05, 0x53, 0x02);
    drop(a);
    assert_good(&b.execute(0, &start_stop(false, 0, true, false), &[], &mut []));
    assert_good(&b.execute(0, &start_stop(false, 0, true, true), &[], &mut []));
}

#[test]
fn prevent_on_non_removable_device_is_accepted_and_harmless() {
    let r = ram();
    let i = r.login();
    assert_good(&i.execute(0, &prevent(1), &[], &mut []));
    assert_good(&i.execute(0, &prevent(0), &[], &mut []));
    assert_invalid_cdb(&i.execute(0, &start_stop(false, 0, true, false), &[], &mut []), 4, Some(1));
}
