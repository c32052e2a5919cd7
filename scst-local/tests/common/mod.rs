//! Shared helpers of the integration tests: targets over each backend, CDB builders and sense
//! assertions.
//!
//! Every test file includes this module; each uses only part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use scst::{BlockStore, Device, DeviceConfig, Disk, Lun, ScsiStatus, SgvConfig, SgvPool, Target};
use scst_backends::{BlockDevStore, FileOptions, FileStore, NullStore, RamStore};
use scst_local::{LocalInitiator, Outcome};

// ------------------------------------------------------------------------------------------------
// Opcodes
// ------------------------------------------------------------------------------------------------

pub(crate) const TEST_UNIT_READY: u8 = 0x00;
pub(crate) const REQUEST_SENSE: u8 = 0x03;
pub(crate) const READ6: u8 = 0x08;
pub(crate) const WRITE6: u8 = 0x0a;
pub(crate) const INQUIRY: u8 = 0x12;
pub(crate) const MODE_SELECT6: u8 = 0x15;
pub(crate) const MODE_SENSE6: u8 = 0x1a;
pub(crate) const START_STOP: u8 = 0x1b;
pub(crate) const PREVENT_ALLOW: u8 = 0x1e;
pub(crate) const READ_CAPACITY10: u8 = 0x25;
pub(crate) const READ10: u8 = 0x28;
pub(crate) const WRITE10: u8 = 0x2a;
pub(crate) const WRITE_VERIFY10: u8 = 0x2e;
pub(crate) const VERIFY10: u8 = 0x2f;
pub(crate) const PREFETCH10: u8 = 0x34;
pub(crate) const SYNC_CACHE10: u8 = 0x35;
pub(crate) const READ_DEFECT10: u8 = 0x37;
pub(crate) const MODE_SELECT10: u8 = 0x55;
pub(crate) const MODE_SENSE10: u8 = 0x5a;
pub(crate) const READ16: u8 = 0x88;
pub(crate) const WRITE16: u8 = 0x8a;
pub(crate) const WRITE_VERIFY16: u8 = 0x8e;
pub(crate) const VERIFY16: u8 = 0x8f;
pub(crate) const PREFETCH16: u8 = 0x90;
pub(crate) const SYNC_CACHE16: u8 = 0x91;
pub(crate) const SERVICE_ACTION_IN16: u8 = 0x9e;
pub(crate) const REPORT_LUNS: u8 = 0xa0;
pub(crate) const MAINTENANCE_IN: u8 = 0xa3;
pub(crate) const READ12: u8 = 0xa8;
pub(crate) const WRITE12: u8 = 0xaa;
pub(crate) const WRITE_VERIFY12: u8 = 0xae;
pub(crate) const VERIFY12: u8 = 0xaf;
pub(crate) const READ_DEFECT12: u8 = 0xb7;

// ------------------------------------------------------------------------------------------------
// Targets over each backend
// ------------------------------------------------------------------------------------------------

/// The block stores a test can put under a LUN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// In-memory [`RamStore`].
    Ram,
    /// [`NullStore`]: reads zeros, drops writes.
    Null,
    /// [`FileStore`] on a temporary file.
    File,
    /// [`BlockDevStore`] on a loop device over a temporary file.
    Block,
}

impl Backend {
    /// Whether written data can be read back.
    pub(crate) fn keeps_data(self) -> bool {
        self != Self::Null
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A process-unique suffix for device and target names.
pub(crate) fn unique() -> usize {
    NEXT.fetch_add(1, Relaxed)
}

/// A device configuration with a unique name and fixed identity strings.
pub(crate) fn config() -> DeviceConfig {
    let mut c = DeviceConfig::new(format!("dev{}", unique()));
    c.vendor = "SCST_RS".into();
    c.revision = "T001".into();
    c
}

/// Whether this machine can attach loop devices (root and `/dev/loop-control`). When it cannot,
/// BLOCKIO tests print why and pass without running.
pub(crate) fn loop_available() -> bool {
    let uid = Command::new("id").arg("-u").output().ok().and_then(|o| String::from_utf8(o.stdout).ok());
    let root = uid.as_deref().map(str::trim) == Some("0");
    let ctl = Path::new("/dev/loop-control").exists();
    if !(root && ctl) {
        eprintln!("BLOCKIO test skipped: needs root and /dev/loop-control (root: {root}, /dev/loop-control: {ctl})");
    }
    root && ctl
}

/// Serializes `losetup` calls of this test binary (two concurrent `losetup -f` may pick the same
/// free device).
static LOSETUP: Mutex<()> = Mutex::new(());

/// A loop device attached to a file; detached on drop (also when the test panics).
#[derive(Debug)]
pub(crate) struct LoopDev {
    /// `/dev/loopN`.
    pub(crate) path: String,
}

impl LoopDev {
    /// Attaches `file` with the given logical sector size.
    ///
    /// # Panics
    /// If `losetup` fails: on a machine where [`loop_available`] holds this is a real failure.
    pub(crate) fn attach(file: &Path, sector_size: u32) -> Self {
        let _g = LOSETUP.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let out = Command::new("losetup")
            .args(["-f", "--show", "-b", &sector_size.to_string()])
            .arg(file)
            .output()
            .expect("run losetup");
        assert!(out.status.success(), "losetup failed: {}", String::from_utf8_lossy(&out.stderr));
        let path = String::from_utf8(out.stdout).expect("losetup output").trim().to_string();
        assert!(path.starts_with("/dev/loop"), "unexpected losetup output {path:?}");
        Self { path }
    }

    /// Re-reads the size of the backing file (`losetup -c`).
    pub(crate) fn refresh_capacity(&self) {
        let st = Command::new("losetup").args(["-c", &self.path]).status().expect("run losetup -c");
        assert!(st.success(), "losetup -c {} failed", self.path);
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _g = LOSETUP.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match Command::new("losetup").args(["-d", &self.path]).status() {
            Ok(s) if s.success() => {}
            other => eprintln!("losetup -d {} failed: {other:?}", self.path),
        }
    }
}

/// A target with one LUN (LUN 0) over a backend, and what keeps the backend alive.
///
/// Declare initiators after the rig so they are dropped first.
pub(crate) struct Rig {
    /// The target.
    pub(crate) target: Arc<Target>,
    /// The device at LUN 0.
    pub(crate) dev: Arc<Device>,
    /// Block size.
    pub(crate) bs: u32,
    /// Capacity in blocks.
    pub(crate) blocks: u64,
    /// The backend.
    pub(crate) backend: Backend,
    /// The backing file (FILEIO, BLOCKIO).
    pub(crate) file: Option<tempfile::NamedTempFile>,
    /// The loop device (BLOCKIO); detached last.
    pub(crate) loopdev: Option<LoopDev>,
}

/// Wraps a store in a disk and a device.
pub(crate) fn device<S: BlockStore>(store: S, cfg: DeviceConfig) -> Arc<Device> {
    Device::new(cfg, Disk::new(store)).expect("device")
}

/// A target named uniquely, with a default buffer pool.
pub(crate) fn target() -> Arc<Target> {
    target_with_sgv(SgvConfig::default())
}

/// A target with a custom buffer pool.
pub(crate) fn target_with_sgv(cfg: SgvConfig) -> Arc<Target> {
    Target::new(format!("iqn.2026-01.rs.scst:test-{}", unique()), SgvPool::new(cfg))
}

impl Rig {
    /// A rig of `blocks` blocks of `bs` bytes over `backend`, default device configuration.
    pub(crate) fn new(backend: Backend, blocks: u64, bs: u32) -> Self {
        Self::with_config(backend, blocks, bs, config())
    }

    /// Like [`Rig::new`], with a device configuration.
    pub(crate) fn with_config(backend: Backend, blocks: u64, bs: u32, cfg: DeviceConfig) -> Self {
        Self::build(backend, blocks, bs, cfg, target())
    }

    /// Like [`Rig::with_config`], on a given target.
    pub(crate) fn build(backend: Backend, blocks: u64, bs: u32, cfg: DeviceConfig, target: Arc<Target>) -> Self {
        let size = blocks * u64::from(bs);
        let (dev, file, loopdev) = match backend {
            Backend::Ram => (device(RamStore::new(size, bs).expect("ram store"), cfg), None, None),
            Backend::Null => (device(NullStore::new(size, bs).expect("null store"), cfg), None, None),
            Backend::File => {
                let f = tempfile::NamedTempFile::new().expect("temp file");
                let opts = FileOptions { size: Some(size), block_size: bs, ..FileOptions::default() };
                let store = FileStore::open(f.path(), opts).expect("file store");
                (device(store, cfg), Some(f), None)
            }
            Backend::Block => {
                let f = tempfile::NamedTempFile::new().expect("temp file");
                f.as_file().set_len(size).expect("size backing file");
                let l = LoopDev::attach(f.path(), bs);
                let store = BlockDevStore::open(&l.path, false, false).expect("open loop device");
                assert_eq!(store.geometry().block_size, bs, "loop device sector size");
                (device(store, cfg), Some(f), Some(l))
            }
        };
        target.add_lun(Lun(0), dev.clone(), false).expect("map LUN 0");
        Self { target, dev, bs, blocks, backend, file, loopdev }
    }

    /// A new session whose initial unit attentions are already consumed.
    pub(crate) fn login(&self) -> LocalInitiator {
        let i = LocalInitiator::connect(&self.target, &format!("iqn.2026-01.rs.scst:init-{}", unique()));
        let o = i.clear_unit_attentions(0);
        assert!(o.is_good() || o.status == ScsiStatus::CHECK_CONDITION, "{o:?}");
        i
    }

    /// A new session with its unit attentions still pending.
    pub(crate) fn connect(&self) -> LocalInitiator {
        LocalInitiator::connect(&self.target, &format!("iqn.2026-01.rs.scst:init-{}", unique()))
    }

    /// Block size as `usize`.
    pub(crate) fn bsz(&self) -> usize {
        self.bs as usize
    }
}

/// Generates one `#[test]` per backend that calls `$body(Backend)`. The BLOCKIO variant runs
/// only where loop devices can be attached. Needs `#[macro_use] mod common;`.
#[allow(unused_macros)]
macro_rules! per_backend {
    ($name:ident, $body:ident) => {
        mod $name {
            use $crate::common::Backend;
            #[test]
            fn ram() {
                super::$body(Backend::Ram);
            }
            #[test]
            fn nullio() {
                super::$body(Backend::Null);
            }
            #[test]
            fn fileio() {
                super::$body(Backend::File);
            }
            #[test]
            fn blockio() {
                if $crate::common::loop_available() {
                    super::$body(Backend::Block);
                }
            }
        }
    };
}

// ------------------------------------------------------------------------------------------------
// CDB builders
// ------------------------------------------------------------------------------------------------

/// A 6-byte READ/WRITE: 21-bit LBA, 8-bit length (0 = 256 blocks).
pub(crate) fn rw6(op: u8, lba: u32, len: u8) -> [u8; 6] {
    let l = lba.to_be_bytes();
    [op, l[1] & 0x1f, l[2], l[3], len, 0]
}

/// A 10-byte medium access CDB (READ, WRITE, VERIFY, WRITE AND VERIFY, PRE-FETCH, SYNC CACHE).
pub(crate) fn cdb10(op: u8, flags: u8, lba: u32, len: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = op;
    c[1] = flags;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&len.to_be_bytes());
    c
}

/// A 12-byte medium access CDB.
pub(crate) fn cdb12(op: u8, flags: u8, lba: u32, len: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = op;
    c[1] = flags;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[6..10].copy_from_slice(&len.to_be_bytes());
    c
}

/// A 16-byte medium access CDB.
pub(crate) fn cdb16(op: u8, flags: u8, lba: u64, len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[1] = flags;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

/// A medium access CDB of the length `op`'s group implies. The LBA and length are truncated to
/// the CDB's fields.
pub(crate) fn rw(op: u8, flags: u8, lba: u64, len: u32) -> Vec<u8> {
    match op >> 5 {
        0 => {
            assert_eq!(flags, 0, "6-byte CDBs have no flags");
            rw6(op, lba as u32, len as u8).to_vec()
        }
        1 | 2 => cdb10(op, flags, lba as u32, len as u16).to_vec(),
        5 => cdb12(op, flags, lba as u32, len).to_vec(),
        4 => cdb16(op, flags, lba, len).to_vec(),
        _ => panic!("not a medium access opcode: {op:#x}"),
    }
}

/// INQUIRY with EVPD, page code and 16-bit allocation length.
pub(crate) fn inquiry_cdb(evpd: bool, page: u8, alloc: u16) -> [u8; 6] {
    let a = alloc.to_be_bytes();
    [INQUIRY, u8::from(evpd), page, a[0], a[1], 0]
}

/// MODE SENSE(6).
pub(crate) fn mode_sense6(dbd: bool, pc: u8, page: u8, subpage: u8, alloc: u8) -> [u8; 6] {
    [MODE_SENSE6, if dbd { 0x08 } else { 0 }, pc << 6 | page, subpage, alloc, 0]
}

/// MODE SENSE(10).
pub(crate) fn mode_sense10(dbd: bool, llbaa: bool, pc: u8, page: u8, subpage: u8, alloc: u16) -> [u8; 10] {
    let a = alloc.to_be_bytes();
    let b1 = if dbd { 0x08 } else { 0 } | if llbaa { 0x10 } else { 0 };
    [MODE_SENSE10, b1, pc << 6 | page, subpage, 0, 0, 0, a[0], a[1], 0]
}

/// MODE SELECT(6) with PF=1 and the given parameter list length.
pub(crate) fn mode_select6(len: u8) -> [u8; 6] {
    [MODE_SELECT6, 0x10, 0, 0, len, 0]
}

/// MODE SELECT(10) with PF=1 and the given parameter list length.
pub(crate) fn mode_select10(len: u16) -> [u8; 10] {
    let a = len.to_be_bytes();
    [MODE_SELECT10, 0x10, 0, 0, 0, 0, 0, a[0], a[1], 0]
}

/// READ CAPACITY(16) with an allocation length.
pub(crate) fn read_capacity16(alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = SERVICE_ACTION_IN16;
    c[1] = 0x10;
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

/// REPORT LUNS with SELECT REPORT and allocation length.
pub(crate) fn report_luns(select: u8, alloc: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = REPORT_LUNS;
    c[2] = select;
    c[6..10].copy_from_slice(&alloc.to_be_bytes());
    c
}

/// REPORT SUPPORTED OPERATION CODES.
pub(crate) fn rsoc(rctd: bool, options: u8, opcode: u8, sa: u16, alloc: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = MAINTENANCE_IN;
    c[1] = 0x0c;
    c[2] = if rctd { 0x80 } else { 0 } | options;
    c[3] = opcode;
    c[4..6].copy_from_slice(&sa.to_be_bytes());
    c[6..10].copy_from_slice(&alloc.to_be_bytes());
    c
}

/// START STOP UNIT.
pub(crate) fn start_stop(immed: bool, power_condition: u8, loej: bool, start: bool) -> [u8; 6] {
    let b4 = power_condition << 4 | if loej { 2 } else { 0 } | u8::from(start);
    [START_STOP, u8::from(immed), 0, 0, b4, 0]
}

/// PREVENT ALLOW MEDIUM REMOVAL.
pub(crate) fn prevent(p: u8) -> [u8; 6] {
    [PREVENT_ALLOW, 0, 0, 0, p, 0]
}

/// TEST UNIT READY.
pub(crate) const TUR: [u8; 6] = [0; 6];

// ------------------------------------------------------------------------------------------------
// Command helpers
// ------------------------------------------------------------------------------------------------

/// Deterministic test data: `len` bytes depending on `seed`.
pub(crate) fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(0x9e37_79b9) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes `data` at `lba` with WRITE(16) and asserts GOOD.
#[track_caller]
pub(crate) fn write(i: &LocalInitiator, lun: u16, lba: u64, bs: usize, data: &[u8]) {
    assert_eq!(data.len() % bs, 0);
    let o = i.execute(lun, &cdb16(WRITE16, 0, lba, (data.len() / bs) as u32), data, &mut []);
    assert_good(&o);
}

/// Reads `blocks` blocks at `lba` with READ(16), asserts GOOD and returns the data.
#[track_caller]
pub(crate) fn read(i: &LocalInitiator, lun: u16, lba: u64, bs: usize, blocks: u32) -> Vec<u8> {
    let mut buf = vec![0xeeu8; blocks as usize * bs];
    let o = i.execute(lun, &cdb16(READ16, 0, lba, blocks), &[], &mut buf);
    assert_good(&o);
    assert_eq!(o.data_in_len, buf.len());
    buf
}

/// Runs a Data-In command with an allocation-sized buffer and returns the outcome and the data
/// actually transferred.
pub(crate) fn data_in(i: &LocalInitiator, lun: u16, cdb: &[u8], alloc: usize) -> (Outcome, Vec<u8>) {
    let mut buf = vec![0u8; alloc];
    let o = i.execute(lun, cdb, &[], &mut buf);
    buf.truncate(o.data_in_len);
    (o, buf)
}

/// Like [`data_in`] but asserts GOOD and returns only the data.
#[track_caller]
pub(crate) fn data_in_ok(i: &LocalInitiator, lun: u16, cdb: &[u8], alloc: usize) -> Vec<u8> {
    let (o, d) = data_in(i, lun, cdb, alloc);
    assert_good(&o);
    d
}

/// Reads the current control mode page (12 bytes, from its page code on).
pub(crate) fn control_page(i: &LocalInitiator, lun: u16) -> Vec<u8> {
    let d = data_in_ok(i, lun, &mode_sense6(true, 0, 0x0a, 0, 255), 255);
    assert_eq!(d.len(), 16, "{d:02x?}");
    d[4..].to_vec()
}

/// Sends a MODE SELECT(6) of a 12-byte control page with the given byte 2, 4 and 5 values (the
/// rest as the device reports them) and returns the outcome.
pub(crate) fn select_control(i: &LocalInitiator, lun: u16, b2: u8, b4: u8, b5: u8) -> Outcome {
    let mut page = control_page(i, lun);
    page[0] &= 0x3f;
    page[2] = b2;
    page[4] = b4;
    page[5] = b5;
    let mut p = vec![0u8, 0, 0, 0];
    p.extend_from_slice(&page);
    i.execute(lun, &mode_select6(p.len() as u8), &p, &mut [])
}

// ------------------------------------------------------------------------------------------------
// Assertions
// ------------------------------------------------------------------------------------------------

/// Asserts GOOD status and no sense data.
#[track_caller]
pub(crate) fn assert_good(o: &Outcome) {
    assert_eq!(o.status, ScsiStatus::GOOD, "expected GOOD, got {o:?} sense {:02x?}", o.sense());
    assert!(o.sense().is_empty(), "GOOD with sense data {:02x?}", o.sense());
}

/// (key, ASC, ASCQ) of fixed or descriptor sense data.
pub(crate) fn sense_triple(sense: &[u8]) -> Option<(u8, u8, u8)> {
    match sense.first()? & 0x7f {
        0x70 | 0x71 if sense.len() >= 14 => Some((sense[2] & 0x0f, sense[12], sense[13])),
        0x72 | 0x73 if sense.len() >= 4 => Some((sense[1] & 0x0f, sense[2], sense[3])),
        _ => None,
    }
}

/// Asserts CHECK CONDITION with the given key/ASC/ASCQ.
#[track_caller]
pub(crate) fn assert_check(o: &Outcome, key: u8, asc: u8, ascq: u8) {
    assert_eq!(o.status, ScsiStatus::CHECK_CONDITION, "expected CHECK CONDITION, got {o:?}");
    assert_eq!(
        sense_triple(o.sense()),
        Some((key, asc, ascq)),
        "expected {key:x}/{asc:02x}/{ascq:02x}, sense {:02x?}",
        o.sense()
    );
    assert_eq!(o.data_in_len, 0, "no Data-In with CHECK CONDITION");
}

/// The sense-key-specific bytes (3) of fixed (bytes 15..17) or descriptor (type 02h) sense.
pub(crate) fn sks_bytes(sense: &[u8]) -> Option<[u8; 3]> {
    match sense.first()? & 0x7f {
        0x70 | 0x71 if sense.len() >= 18 => Some([sense[15], sense[16], sense[17]]),
        0x72 | 0x73 => descriptor(sense, 0x02).map(|d| [d[4], d[5], d[6]]),
        _ => None,
    }
}

/// A descriptor of descriptor-format sense data, from its type byte on.
pub(crate) fn descriptor(sense: &[u8], kind: u8) -> Option<&[u8]> {
    let end = (8 + usize::from(*sense.get(7)?)).min(sense.len());
    let mut off = 8;
    while off + 2 <= end {
        let len = 2 + usize::from(sense[off + 1]);
        if sense[off] == kind {
            return sense.get(off..off + len);
        }
        off += len;
    }
    None
}

/// The field pointer: `(c/d, byte, bit)` when SKSV is set.
pub(crate) fn field_pointer(sense: &[u8]) -> Option<(bool, u16, Option<u8>)> {
    let s = sks_bytes(sense)?;
    if s[0] & 0x80 == 0 {
        return None;
    }
    let bit = (s[0] & 0x08 != 0).then_some(s[0] & 7);
    Some((s[0] & 0x40 != 0, u16::from_be_bytes([s[1], s[2]]), bit))
}

/// The INFORMATION field, when valid.
pub(crate) fn information(sense: &[u8]) -> Option<u64> {
    match sense.first()? {
        0xf0 | 0xf1 => Some(u64::from(u32::from_be_bytes([sense[3], sense[4], sense[5], sense[6]]))),
        0x72 | 0x73 => {
            let d = descriptor(sense, 0x00)?;
            (d[2] & 0x80 != 0).then(|| u64::from_be_bytes(d[4..12].try_into().expect("8 bytes")))
        }
        _ => None,
    }
}

/// Asserts ILLEGAL REQUEST / INVALID FIELD IN CDB with the field pointer at `byte` (and `bit`).
#[track_caller]
pub(crate) fn assert_invalid_cdb(o: &Outcome, byte: u16, bit: Option<u8>) {
    assert_check(o, 0x05, 0x24, 0x00);
    assert_eq!(field_pointer(o.sense()), Some((true, byte, bit)), "field pointer, sense {:02x?}", o.sense());
}

/// Asserts ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST with the field pointer at `byte`
/// (and `bit`).
#[track_caller]
pub(crate) fn assert_invalid_param(o: &Outcome, byte: u16, bit: Option<u8>) {
    assert_check(o, 0x05, 0x26, 0x00);
    assert_eq!(field_pointer(o.sense()), Some((false, byte, bit)), "field pointer, sense {:02x?}", o.sense());
}

/// Asserts ILLEGAL REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE.
#[track_caller]
pub(crate) fn assert_oob(o: &Outcome) {
    assert_check(o, 0x05, 0x21, 0x00);
}

/// Asserts UNIT ATTENTION with the given ASC/ASCQ.
#[track_caller]
pub(crate) fn assert_ua(o: &Outcome, asc: u8, ascq: u8) {
    assert_check(o, 0x06, asc, ascq);
}

/// Big-endian u16 at `off`.
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Big-endian u32 at `off`.
pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

/// Big-endian u64 at `off`.
pub(crate) fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}
