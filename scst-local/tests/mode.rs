//! MODE SENSE(6/10) and MODE SELECT(6/10): the mode pages, page controls, block descriptors, the
//! changeable parameters (WCE, D_SENSE, SWP, TAS) and their effects, parameter list errors and
//! the MODE PARAMETERS CHANGED unit attention.

#[macro_use]
mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use common::*;
use scst::Lun;
use scst_local::LocalInitiator;

const BLOCKS: u64 = 2048;

fn ram() -> Rig {
    Rig::new(Backend::Ram, BLOCKS, 512)
}

/// Page 01h (read-write error recovery): nothing reported or changeable.
const RW_ERROR_RECOVERY: [u8; 12] = [0x01, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// Page 0Ah current/default: QAM 1, busy timeout FFFFh.
const CONTROL: [u8; 12] = [0x0a, 0x0a, 0, 0x10, 0, 0, 0, 0, 0xff, 0xff, 0, 0];
/// Page 0Ah changeable: D_SENSE, SWP, TAS.
const CONTROL_CHANGEABLE: [u8; 12] = [0x0a, 0x0a, 0x04, 0, 0x08, 0x40, 0, 0, 0, 0, 0, 0];
/// Page 1Ch current/default: DEXCPT.
const IEC: [u8; 12] = [0x1c, 0x0a, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// Page 08h with the WCE bit as given.
fn caching(wce: bool) -> Vec<u8> {
    let mut p = vec![0x08, 0x12, if wce { 0x04 } else { 0 }];
    p.resize(20, 0);
    p
}

/// The short block descriptor of the rig's LUN.
fn block_descriptor(blocks: u32, bs: u32) -> Vec<u8> {
    let mut d = blocks.to_be_bytes().to_vec();
    d.extend(bs.to_be_bytes());
    d[4] = 0;
    d
}

/// MODE SENSE(6) reply: header, block descriptor (unless `dbd`), pages.
fn reply6(dsp: u8, bd: Option<Vec<u8>>, pages: &[&[u8]]) -> Vec<u8> {
    let bd = bd.unwrap_or_default();
    let mut v = vec![0, 0, dsp, bd.len() as u8];
    v.extend(bd);
    for p in pages {
        v.extend_from_slice(p);
    }
    v[0] = (v.len() - 1) as u8;
    v
}

#[test]
fn mode_sense6_each_page_current_values() {
    let r = ram();
    let i = r.login();
    let bd = Some(block_descriptor(BLOCKS as u32, 512));
    let cache = caching(true);
    for (page, want) in [
        (0x01, reply6(0x10, bd.clone(), &[&RW_ERROR_RECOVERY])),
        (0x08, reply6(0x10, bd.clone(), &[&cache])),
        (0x0a, reply6(0x10, bd.clone(), &[&CONTROL])),
        (0x1c, reply6(0x10, bd.clone(), &[&IEC])),
        (0x3f, reply6(0x10, bd.clone(), &[&RW_ERROR_RECOVERY, &cache, &CONTROL, &IEC])),
    ] {
        let d = data_in_ok(&i, 0, &mode_sense6(false, 0, page, 0, 255), 255);
        assert_eq!(d, want, "page {page:02x}");
        // Subpage FFh (all subpages) is the same: no page has subpages.
        assert_eq!(data_in_ok(&i, 0, &mode_sense6(false, 0, page, 0xff, 255), 255), want, "page {page:02x}/ff");
        // DBD: no block descriptor.
        let pages: Vec<u8> = want[12..].to_vec();
        assert_eq!(data_in_ok(&i, 0, &mode_sense6(true, 0, page, 0, 255), 255), reply6(0x10, None, &[&pages]));
    }
    // The all-pages reply fits in 255 bytes (libiscsi requires it).
    assert_eq!(data_in_ok(&i, 0, &mode_sense6(false, 0, 0x3f, 0, 255), 255).len(), 68);
}

#[test]
fn mode_sense6_changeable_and_default_values() {
    let r = ram();
    let i = r.login();
    let zero12 = [0x01, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let iec_chg = [0x1c, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    // Changeable: only WCE, D_SENSE, SWP and TAS. PC=changeable returns only the requested page
    // (libiscsi's Control-SWP takes the last page of the reply).
    for (page, want) in [
        (0x01, reply6(0x10, None, &[&zero12])),
        (0x08, reply6(0x10, None, &[&caching(true)])),
        (0x0a, reply6(0x10, None, &[&CONTROL_CHANGEABLE])),
        (0x1c, reply6(0x10, None, &[&iec_chg])),
        (0x3f, reply6(0x10, None, &[&zero12, &caching(true), &CONTROL_CHANGEABLE, &iec_chg])),
    ] {
        assert_eq!(data_in_ok(&i, 0, &mode_sense6(true, 1, page, 0, 255), 255), want, "changeable {page:02x}");
    }
    // Default values: the configured write cache setting, everything else off.
    let mut c = config();
    c.write_cache = false;
    let r2 = Rig::with_config(Backend::Ram, BLOCKS, 512, c);
    let j = r2.login();
    assert_eq!(
        data_in_ok(&j, 0, &mode_sense6(true, 2, 0x3f, 0, 255), 255),
        reply6(0x10, None, &[&RW_ERROR_RECOVERY, &caching(false), &CONTROL, &IEC])
    );
    assert_eq!(data_in_ok(&j, 0, &mode_sense6(true, 0, 0x08, 0, 255), 255), reply6(0x10, None, &[&caching(false)]));
    // Defaults do not follow current values.
    assert_good(&select_control(&i, 0, 0x04, 0x00, 0x40));
    assert_eq!(data_in_ok(&i, 0, &mode_sense6(true, 2, 0x0a, 0, 255), 255), reply6(0x10, None, &[&CONTROL]));
}

#[test]
fn mode_sense_errors() {
    let r = ram();
    let i = r.login();
    // Saved values are not supported.
    for page in [0x01, 0x08, 0x0a, 0x3f] {
        let o = i.execute(0, &mode_sense6(false, 3, page, 0, 255), &[], &mut [0; 255]);
        assert_check(&o, 0x05, 0x39, 0x00);
        let o = i.execute(0, &mode_sense10(false, false, 3, page, 0, 255), &[], &mut [0; 255]);
        assert_check(&o, 0x05, 0x39, 0x00);
    }
    // Unknown pages: INVALID FIELD IN CDB at the page code (byte 2 bit 5).
    for page in [0x00, 0x02, 0x19, 0x1a, 0x3e] {
        let o = i.execute(0, &mode_sense6(false, 0, page, 0, 255), &[], &mut [0; 255]);
        assert_invalid_cdb(&o, 2, Some(5));
        let o = i.execute(0, &mode_sense10(false, false, 0, page, 0, 255), &[], &mut [0; 255]);
        assert_invalid_cdb(&o, 2, Some(5));
    }
    // Subpages other than 00h and FFh.
    for sub in [0x01, 0x02, 0xfe] {
        let o = i.execute(0, &mode_sense6(false, 0, 0x0a, sub, 255), &[], &mut [0; 255]);
        assert_invalid_cdb(&o, 3, Some(7));
        let o = i.execute(0, &mode_sense6(false, 0, 0x3f, sub, 255), &[], &mut [0; 255]);
        assert_invalid_cdb(&o, 3, Some(7));
    }
    // LLBAA is not a MODE SENSE(6) bit.
    let o = i.execute(0, &[MODE_SENSE6, 0x10, 0x3f, 0, 255, 0], &[], &mut [0; 255]);
    assert_invalid_cdb(&o, 1, Some(4));
}

#[test]
fn mode_sense_allocation_length_and_residual() {
    let r = ram();
    let i = r.login();
    let full = data_in_ok(&i, 0, &mode_sense6(false, 0, 0x3f, 0, 255), 255);
    // Truncation to the allocation length is GOOD with no overflow.
    for alloc in [0u8, 1, 4, 12, 13, 67, 68] {
        let (o, d) = data_in(&i, 0, &mode_sense6(false, 0, 0x3f, 0, alloc), usize::from(alloc));
        assert_good(&o);
        assert_eq!(d, full[..usize::from(alloc)], "alloc {alloc}");
        assert_eq!(o.residual, (false, 0), "alloc {alloc}");
    }
    // A shorter reply than the allocation length: underflow.
    let (o, _) = data_in(&i, 0, &mode_sense6(false, 0, 0x3f, 0, 255), 255);
    assert_eq!(o.residual, (false, 255 - 68));
}

#[test]
fn mode_sense10_headers_and_long_lba_descriptor() {
    let r = ram();
    let i = r.login();
    let d = data_in_ok(&i, 0, &mode_sense10(false, false, 0, 0x0a, 0, 512), 512);
    let mut want = vec![0, 0, 0, 0x10, 0, 0, 0, 8];
    want.extend(block_descriptor(BLOCKS as u32, 512));
    want.extend(CONTROL);
    want[1] = (want.len() - 2) as u8;
    assert_eq!(d, want);
    // LLBAA: LONGLBA, a 16-byte descriptor.
    let d = data_in_ok(&i, 0, &mode_sense10(false, true, 0, 0x0a, 0, 512), 512);
    let mut want = vec![0, 0, 0, 0x10, 0x01, 0, 0, 16];
    want.extend(BLOCKS.to_be_bytes());
    want.extend([0, 0, 0, 0]);
    want.extend(512u32.to_be_bytes());
    want.extend(CONTROL);
    want[1] = (want.len() - 2) as u8;
    assert_eq!(d, want);
    // DBD.
    let d = data_in_ok(&i, 0, &mode_sense10(true, false, 0, 0x3f, 0, 512), 512);
    assert_eq!(&d[..8], &[0, 6 + 12 + 20 + 12 + 12, 0, 0x10, 0, 0, 0, 0]);
    assert_eq!(d.len(), 8 + 56);
    // Truncation keeps the full MODE DATA LENGTH.
    let (o, t) = data_in(&i, 0, &mode_sense10(true, false, 0, 0x3f, 0, 9), 512);
    assert_good(&o);
    assert_eq!(t, d[..9]);
    // 4096-byte blocks.
    let r4 = Rig::new(Backend::Ram, 256, 4096);
    let j = r4.login();
    let d = data_in_ok(&j, 0, &mode_sense6(false, 0, 0x01, 0, 255), 255);
    assert_eq!(&d[4..12], &[0, 0, 1, 0, 0, 0, 0x10, 0]);
}

#[test]
fn write_protect_bit() {
    let mut c = config();
    c.read_only = true;
    let r = Rig::with_config(Backend::Ram, BLOCKS, 512, c);
    let i = r.login();
    assert_eq!(data_in_ok(&i, 0, &mode_sense6(true, 0, 0x3f, 0, 255), 255)[2], 0x90, "WP and DPOFUA");
    assert_eq!(data_in_ok(&i, 0, &mode_sense10(true, false, 0, 0x3f, 0, 255), 255)[3], 0x90);
    // A read-only mapping of a writable device: WP on that LUN only.
    let w = ram();
    w.target.add_lun(Lun(1), w.dev.clone(), true).expect("map read-only");
    let j = w.login();
    j.clear_unit_attentions(1);
    assert_eq!(data_in_ok(&j, 0, &mode_sense6(true, 0, 0x3f, 0, 255), 255)[2], 0x10);
    assert_eq!(data_in_ok(&j, 1, &mode_sense6(true, 0, 0x3f, 0, 255), 255)[2], 0x90);
}

/// Builds a MODE SELECT(6) parameter list: zero header, optional block descriptor, pages.
fn plist6(bd: Option<&[u8]>, pages: &[&[u8]]) -> Vec<u8> {
    let mut v = vec![0, 0, 0, bd.map_or(0, |b| b.len() as u8)];
    if let Some(b) = bd {
        v.extend_from_slice(b);
    }
    for p in pages {
        v.extend_from_slice(p);
    }
    v
}

fn select6(i: &LocalInitiator, p: &[u8]) -> scst_local::Outcome {
    i.execute(0, &mode_select6(p.len() as u8), p, &mut [])
}

fn select10(i: &LocalInitiator, p: &[u8]) -> scst_local::Outcome {
    i.execute(0, &mode_select10(p.len() as u16), p, &mut [])
}

fn wce(i: &LocalInitiator) -> bool {
    data_in_ok(i, 0, &mode_sense6(true, 0, 0x08, 0, 255), 255)[6] & 0x04 != 0
}

#[test]
fn mode_select_write_cache_enable() {
    let r = ram();
    let a = r.login();
    let b = r.login();
    assert!(wce(&a));
    assert_good(&select6(&a, &plist6(None, &[&caching(false)])));
    assert!(!wce(&a));
    // The changing nexus gets no unit attention; the other one gets MODE PARAMETERS CHANGED once.
    assert_good(&a.execute(0, &TUR, &[], &mut []));
    assert_ua(&b.execute(0, &TUR, &[], &mut []), 0x2a, 0x01);
    assert_good(&b.execute(0, &TUR, &[], &mut []));
    assert!(!wce(&b), "mode parameters are per logical unit");
    // Writes keep working with the cache off (write-through).
    write(&a, 0, 3, 512, &pattern(3, 512));
    assert_eq!(read(&b, 0, 3, 512, 1), pattern(3, 512));
    // Setting the current value again changes nothing: no unit attention.
    assert_good(&select6(&a, &plist6(None, &[&caching(false)])));
    assert_good(&b.execute(0, &TUR, &[], &mut []));
    // MODE SELECT(10) with a matching block descriptor turns it back on.
    let mut p = vec![0, 0, 0, 0, 0, 0, 0, 8];
    p.extend(block_descriptor(BLOCKS as u32, 512));
    p.extend(caching(true));
    assert_good(&select10(&b, &p));
    assert_ua(&a.execute(0, &TUR, &[], &mut []), 0x2a, 0x01);
    assert!(wce(&a));
    assert_good(&b.execute(0, &TUR, &[], &mut []));
    // A long block descriptor, and a short one with zero block count and length (no change).
    let mut p = vec![0, 0, 0, 0, 1, 0, 0, 16];
    p.extend(BLOCKS.to_be_bytes());
    p.extend([0, 0, 0, 0]);
    p.extend(512u32.to_be_bytes());
    p.extend(caching(true));
    assert_good(&select10(&b, &p));
    assert_good(&select6(&b, &plist6(Some(&[0; 8]), &[&caching(true)])));
    // A parameter list length of zero is not an error.
    assert_good(&b.execute(0, &mode_select6(0), &[], &mut []));
    assert_good(&b.execute(0, &mode_select10(0), &[], &mut []));
}

/// A RAM store that records the FUA flag of every write and counts flushes.
struct Recording {
    inner: scst_backends::RamStore,
    fua: Mutex<Vec<bool>>,
    flushes: AtomicUsize,
}

impl scst::BlockStore for Recording {
    fn geometry(&self) -> scst::Geometry {
        self.inner.geometry()
    }

    fn caps(&self) -> scst::StoreCaps {
        self.inner.caps()
    }

    fn product(&self) -> &str {
        "RECORDING"
    }

    fn read_at(&self, off: u64, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<()> {
        self.inner.read_at(off, bufs)
    }

    fn write_at(&self, off: u64, bufs: &[std::io::IoSlice<'_>], fua: bool) -> std::io::Result<()> {
        self.fua.lock().expect("lock").push(fua);
        self.inner.write_at(off, bufs, fua)
    }

    fn flush(&self) -> std::io::Result<()> {
        self.flushes.fetch_add(1, SeqCst);
        Ok(())
    }
}

/// What the store was asked to do: the caching page's WCE decides whether writes go through.
#[test]
fn write_cache_enable_decides_write_through() {
    let store = Recording {
        inner: scst_backends::RamStore::new(1 << 20, 512).expect("ram"),
        fua: Mutex::new(Vec::new()),
        flushes: AtomicUsize::new(0),
    };
    let disk = scst::Disk::new(store);
    let t = target();
    t.add_lun(Lun(0), scst::Device::new(config(), disk.clone()).expect("device"), false).expect("map");
    let i = LocalInitiator::connect(&t, "iqn.2026-01.rs.scst:wce");
    i.clear_unit_attentions(0);
    let writes = || std::mem::take(&mut *disk.store().fua.lock().expect("lock"));
    let block = [7u8; 512];
    // Write cache on: plain writes may stay in the cache; FUA and WRITE AND VERIFY go through.
    for (cdb, fua) in [
        (cdb10(WRITE10, 0, 0, 1).to_vec(), false),
        (cdb10(WRITE10, 0x10, 0, 1).to_vec(), false), // DPO is not FUA
        (cdb10(WRITE10, 0x08, 0, 1).to_vec(), true),
        (cdb16(WRITE16, 0x08, 0, 1).to_vec(), true),
        (rw6(WRITE6, 0, 1).to_vec(), false),
        (cdb10(WRITE_VERIFY10, 0x02, 0, 1).to_vec(), true),
    ] {
        assert_good(&i.execute(0, &cdb, &block, &mut []));
        assert_eq!(writes(), [fua], "{cdb:02x?}");
    }
    assert_eq!(disk.store().flushes.load(SeqCst), 0);
    assert_good(&i.execute(0, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut []));
    assert_good(&i.execute(0, &cdb16(SYNC_CACHE16, 0x02, 0, 1), &[], &mut []));
    assert_eq!(disk.store().flushes.load(SeqCst), 2);
    // Write cache off: every write goes through.
    assert_good(&select6(&i, &plist6(None, &[&caching(false)])));
    for cdb in [cdb10(WRITE10, 0, 0, 1).to_vec(), rw6(WRITE6, 0, 1).to_vec(), cdb16(WRITE16, 0, 0, 1).to_vec()] {
        assert_good(&i.execute(0, &cdb, &block, &mut []));
        assert_eq!(writes(), [true], "{cdb:02x?}");
    }
}

#[test]
fn mode_select_d_sense_switches_sense_format() {
    let r = ram();
    let a = r.login();
    let b = r.login();
    assert_good(&select_control(&a, 0, 0x04, 0, 0));
    assert_eq!(control_page(&a, 0)[2], 0x04);
    // Descriptor format for errors: LBA out of range...
    let o = a.execute(0, &cdb16(READ16, 0, u64::MAX, 1), &[], &mut [0; 512]);
    assert_oob(&o);
    assert_eq!(o.sense(), &[0x72, 5, 0x21, 0, 0, 0, 0, 0]);
    // ...INVALID FIELD IN CDB with a sense key specific descriptor...
    let o = a.execute(0, &[0, 0x01, 0, 0, 0, 0], &[], &mut []);
    assert_eq!(o.sense(), &[0x72, 5, 0x24, 0, 0, 0, 0, 8, 0x02, 0x06, 0, 0, 0xc8, 0, 1, 0]);
    assert_invalid_cdb(&o, 1, Some(0));
    // ...and the other nexus's unit attention.
    let o = b.execute(0, &TUR, &[], &mut []);
    assert_eq!(o.sense(), &[0x72, 6, 0x2a, 0x01, 0, 0, 0, 0]);
    // REQUEST SENSE follows its DESC bit, not D_SENSE.
    let d = data_in_ok(&a, 0, &[REQUEST_SENSE, 0, 0, 0, 252, 0], 252);
    assert_eq!(d[0], 0x70);
    // Back to fixed format.
    assert_good(&select_control(&a, 0, 0x00, 0, 0));
    let o = a.execute(0, &cdb16(READ16, 0, u64::MAX, 1), &[], &mut [0; 512]);
    assert_eq!(o.sense(), &[0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0]);
}

#[test]
fn mode_select_software_write_protect() {
    let r = ram();
    let a = r.login();
    let b = r.login();
    write(&a, 0, 0, 512, &pattern(1, 512));
    // libiscsi's sequence: MODE SELECT(6) PF=1, zero header, the control page with SWP set.
    assert_good(&select_control(&a, 0, 0, 0x08, 0));
    assert_eq!(control_page(&a, 0)[4], 0x08);
    assert_eq!(data_in_ok(&a, 0, &mode_sense6(true, 0, 0x3f, 0, 255), 255)[2], 0x90, "WP reported");
    // Writes fail with DATA PROTECT / SOFTWARE WRITE PROTECTED; reads work.
    for cdb in [
        rw(WRITE6, 0, 0, 1),
        rw(WRITE10, 0, 0, 1),
        rw(WRITE12, 0, 0, 1),
        rw(WRITE16, 0, 0, 1),
        rw(WRITE_VERIFY10, 0x02, 0, 1),
        rw(WRITE_VERIFY12, 0x02, 0, 1),
        rw(WRITE_VERIFY16, 0x02, 0, 1),
    ] {
        assert_check(&a.execute(0, &cdb, &[0xff; 512], &mut []), 0x07, 0x27, 0x02);
    }
    assert_eq!(read(&a, 0, 0, 512, 1), pattern(1, 512));
    let o = a.execute(0, &cdb10(VERIFY10, 0x02, 0, 1), &pattern(1, 512), &mut []);
    assert_good(&o);
    // Every nexus: after its unit attention, the same.
    assert_ua(&b.execute(0, &TUR, &[], &mut []), 0x2a, 0x01);
    assert_check(&b.execute(0, &rw(WRITE10, 0, 0, 1), &[0xff; 512], &mut []), 0x07, 0x27, 0x02);
    // Clearing SWP.
    assert_good(&select_control(&a, 0, 0, 0, 0));
    assert_ua(&b.execute(0, &TUR, &[], &mut []), 0x2a, 0x01);
    write(&b, 0, 0, 512, &pattern(2, 512));
    assert_eq!(read(&a, 0, 0, 512, 1), pattern(2, 512));
}

#[test]
fn mode_select_task_aborted_status() {
    let r = ram();
    let a = r.login();
    assert_good(&select_control(&a, 0, 0, 0, 0x40));
    let mut want = CONTROL;
    want[5] = 0x40;
    assert_eq!(control_page(&a, 0), want);
    assert_good(&select_control(&a, 0, 0, 0, 0));
    assert_eq!(control_page(&a, 0), CONTROL);
}

#[test]
fn mode_select_rejects_non_changeable_bits() {
    let r = ram();
    let a = r.login();
    let b = r.login();
    // Each page with one non-changeable bit flipped: INVALID FIELD IN PARAMETER LIST pointing at
    // that byte and bit of the parameter list (4-byte header first).
    let mut rwer = RW_ERROR_RECOVERY;
    rwer[2] = 0x80; // AWRE
    assert_invalid_param(&select6(&a, &plist6(None, &[&rwer])), 6, Some(7));
    let mut c = caching(true);
    c[2] |= 0x01; // RCD
    assert_invalid_param(&select6(&a, &plist6(None, &[&c])), 6, Some(0));
    let mut c = caching(true);
    c[12] = 0x80; // FSW
    assert_invalid_param(&select6(&a, &plist6(None, &[&c])), 16, Some(7));
    let mut ctl = CONTROL;
    ctl[2] = 0x02; // GLTSD
    assert_invalid_param(&select6(&a, &plist6(None, &[&ctl])), 6, Some(1));
    let mut ctl = CONTROL;
    ctl[8] = 0x00; // BUSY TIMEOUT PERIOD
    assert_invalid_param(&select6(&a, &plist6(None, &[&ctl])), 12, Some(7));
    let mut iec = IEC;
    iec[2] = 0x00; // DEXCPT
    assert_invalid_param(&select6(&a, &plist6(None, &[&iec])), 6, Some(3));
    // The second page of a list is pointed at by its offset; nothing is applied when any page
    // is invalid.
    let mut ctl = CONTROL;
    ctl[2] = 0x01; // RLEC
    assert_invalid_param(&select6(&a, &plist6(None, &[&caching(false), &ctl])), 4 + 20 + 2, Some(0));
    assert!(wce(&a), "the valid caching page before the invalid one was not applied");
    // MODE SELECT(10): 8-byte header.
    let mut p = vec![0u8; 8];
    p.extend(rwer);
    assert_invalid_param(&select10(&a, &p), 10, Some(7));
    // No unit attention for failed MODE SELECTs.
    assert_good(&b.execute(0, &TUR, &[], &mut []));
}

#[test]
fn mode_select_parameter_list_errors() {
    let r = ram();
    let a = r.login();
    // SP=1: saving is not supported.
    let p = plist6(None, &[&caching(true)]);
    let o = a.execute(0, &[MODE_SELECT6, 0x11, 0, 0, p.len() as u8, 0], &p, &mut []);
    assert_invalid_cdb(&o, 1, Some(0));
    let o = a.execute(0, &[MODE_SELECT10, 0x11, 0, 0, 0, 0, 0, 0, 24, 0], &p, &mut []);
    assert_invalid_cdb(&o, 1, Some(0));
    // Wrong page length: pointer at the PAGE LENGTH byte.
    let mut ctl = CONTROL.to_vec();
    ctl[1] = 0x0b;
    ctl.push(0);
    assert_invalid_param(&select6(&a, &plist6(None, &[&ctl])), 5, None);
    let mut c = caching(true);
    c[1] = 0x0a;
    c.truncate(12);
    assert_invalid_param(&select6(&a, &plist6(None, &[&c])), 5, None);
    // Unknown page and the SPF bit.
    let mut unknown = CONTROL;
    unknown[0] = 0x19;
    assert_invalid_param(&select6(&a, &plist6(None, &[&unknown])), 4, Some(5));
    let mut spf = CONTROL;
    spf[0] = 0x4a;
    assert_invalid_param(&select6(&a, &plist6(None, &[&spf])), 4, Some(6));
    // Parameter list too short for its header, a page header or the page.
    assert_check(&select6(&a, &[0, 0, 0]), 0x05, 0x1a, 0x00);
    assert_check(&select10(&a, &[0, 0, 0, 0, 0, 0, 0]), 0x05, 0x1a, 0x00);
    assert_check(&select6(&a, &[0, 0, 0, 0, 0x0a]), 0x05, 0x1a, 0x00);
    assert_check(&select6(&a, &plist6(None, &[&CONTROL[..8]])), 0x05, 0x1a, 0x00);
    // A block descriptor longer than the list, or of an invalid length.
    assert_check(&select6(&a, &[0, 0, 0, 8, 0, 0, 0, 0]), 0x05, 0x1a, 0x00);
    assert_invalid_param(&select6(&a, &[0, 0, 0, 4, 0, 0, 0, 0]), 3, None);
    assert_invalid_param(&select10(&a, &[0, 0, 0, 0, 0, 0, 0, 8 + 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 7, None);
    // A block descriptor with another block length or block count.
    let bd = block_descriptor(BLOCKS as u32, 4096);
    assert_invalid_param(&select6(&a, &plist6(Some(&bd), &[])), 9, None);
    let bd = block_descriptor(12345, 512);
    assert_invalid_param(&select6(&a, &plist6(Some(&bd), &[])), 4, None);
    // A non-zero MODE DATA LENGTH byte in the header is accepted (it is reserved for MODE
    // SELECT), as libiscsi sends whatever it read.
    let mut p = plist6(None, &[&caching(true)]);
    p[0] = 23;
    assert_good(&select6(&a, &p));
    // Nothing changed through all this.
    assert!(wce(&a));
    assert_eq!(control_page(&a, 0), CONTROL);
}
