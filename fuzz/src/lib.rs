//! The `cdb` fuzz target's test rig: a target with three LUNs, the input format, and one
//! execution per input through the loopback fabric.
//!
//! This file depends only on `scst`, `scst-backends` and `scst-local`, so regression tests
//! elsewhere in the workspace can include it (`#[path = ".../fuzz/src/lib.rs"] mod cdb_rig;`)
//! and replay a crashing input exactly as the fuzzer ran it.
//!
//! # Input format
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | LUN selector, low 2 bits: 0 = RAM, 1 = NULLIO, 2 = read-only RAM (4 KiB blocks), 3 = an unmapped LUN |
//! | 1 | bits 1..0: task attribute (SIMPLE, ORDERED, HEAD OF QUEUE, ACA); bit 2: Data-Out; bit 3: expected length × 16; bits 7..4: reservation setup (below) |
//! | 2..4 | expected transfer length, little-endian (× 16 when byte 1 bit 3 is set) |
//! | 4 | CDB length: 6 + (byte % 27), so 6..=32 |
//! | 5.. | the CDB, then the Data-Out pattern |
//!
//! Missing bytes read as zero. With Data-Out, the initiator sends the expected length in bytes,
//! the pattern repeated (zeros when there is none); without, it offers a Data-In buffer of the
//! expected length.
//!
//! The reservation setup runs on the addressed LUN before the command, so the fuzzer can reach
//! the persistent-reservation paths that need earlier commands: bit 4, the fuzzed nexus
//! registers [`OUR_KEY`]; bit 5, a second nexus registers [`OTHER_KEY`]; bit 6, a reservation is
//! taken (by the second nexus when bit 5 is set, else by the fuzzed one), of type Write Exclusive,
//! or Exclusive Access - Registrants Only when bit 7 is set.

// The rigs of the `prout`, `unmap_xcopy` and `mode_select` targets (same dependencies as this
// file; the explicit path keeps the `#[path]` includes of this file working).
#[path = "scsi.rs"]
pub mod scsi;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use scst::pr::PrState;
use scst::{Device, DeviceConfig, Disk, Lun, ScsiStatus, SenseCode, SgvConfig, SgvPool, Target, TaskAttr};
use scst_backends::{NullStore, RamStore};
use scst_local::{LocalInitiator, Outcome};

/// The RAM LUN (512-byte blocks, removable so START STOP UNIT and PREVENT ALLOW act).
pub const RAM_LUN: u16 = 0;
/// The NULLIO LUN (512-byte blocks).
pub const NULLIO_LUN: u16 = 1;
/// The read-only LUN (RAM, 4096-byte blocks, mapped read-only).
pub const RO_LUN: u16 = 2;
/// Capacity of the NULLIO LUN of [`Rig::new`]. Kept small enough that commands whose work grows
/// with the LBA range (VERIFY with BYTCHK=11b compares the whole range, inline) stay well under
/// libFuzzer's hang timeout; `scst-local/tests/fuzz_regressions.rs` covers large LUNs.
pub const NULLIO_BYTES: u64 = 64 << 20;
/// A LUN no device is mapped at (flat space addressing).
pub const UNMAPPED_LUN: u16 = 300;

/// Reservation key the fuzzed nexus registers in the reservation setup.
pub const OUR_KEY: u64 = 0x1111_1111_1111_1111;
/// Reservation key the second nexus registers in the reservation setup.
pub const OTHER_KEY: u64 = 0x2222_2222_2222_2222;

/// Longest CDB an input carries.
pub const MAX_CDB: usize = 32;
/// Largest expected transfer length an input can ask for (65535 × 16).
pub const MAX_EXPECTED: usize = 0xffff * 16;

/// One decoded input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input<'a> {
    /// The LUN addressed.
    pub lun: u16,
    /// The task attribute.
    pub attr: TaskAttr,
    /// Whether the initiator sends Data-Out (else it offers a Data-In buffer).
    pub data_out: bool,
    /// Expected data transfer length in bytes.
    pub expected_len: usize,
    /// Reservation setup bits (byte 1 bits 7..4, shifted down).
    pub setup: u8,
    /// The CDB, zero-padded to [`MAX_CDB`].
    pub cdb: [u8; MAX_CDB],
    /// How many bytes of `cdb` are sent.
    pub cdb_len: usize,
    /// The Data-Out pattern.
    pub pattern: &'a [u8],
}

impl<'a> Input<'a> {
    /// Decodes `data` (see the module docs). Every byte string decodes to something.
    pub fn decode(data: &'a [u8]) -> Self {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let lun = match byte(0) & 3 {
            0 => RAM_LUN,
            1 => NULLIO_LUN,
            2 => RO_LUN,
            _ => UNMAPPED_LUN,
        };
        let flags = byte(1);
        let attr = match flags & 3 {
            0 => TaskAttr::Simple,
            1 => TaskAttr::Ordered,
            2 => TaskAttr::HeadOfQueue,
            _ => TaskAttr::Aca,
        };
        let scale = if flags & 8 != 0 { 16 } else { 1 };
        let expected_len = usize::from(u16::from_le_bytes([byte(2), byte(3)])) * scale;
        let cdb_len = 6 + usize::from(byte(4)) % (MAX_CDB - 5);
        let mut cdb = [0u8; MAX_CDB];
        let body = data.get(5..).unwrap_or(&[]);
        let n = body.len().min(cdb_len);
        cdb[..n].copy_from_slice(&body[..n]);
        let pattern = body.get(cdb_len..).unwrap_or(&[]);
        Self { lun, attr, data_out: flags & 4 != 0, expected_len, setup: flags >> 4, cdb, cdb_len, pattern }
    }

    /// Encodes an input (the inverse of [`Input::decode`] for inputs it produces): LUN selector,
    /// task attribute (0..=3) and reservation setup bits (0..=15) as in the table above.
    /// `expected_len` must fit the format: below 65536, or a multiple of 16 below 1 MiB.
    ///
    /// # Panics
    /// If `expected_len` does not fit or the CDB is not 6..=32 bytes.
    pub fn encode(
        lun_sel: u8,
        attr: u8,
        setup: u8,
        data_out: bool,
        expected_len: usize,
        cdb: &[u8],
        pattern: &[u8],
    ) -> Vec<u8> {
        assert!((6..=MAX_CDB).contains(&cdb.len()), "CDB length {}", cdb.len());
        let (len, scale) = match u16::try_from(expected_len) {
            Ok(l) => (l, 0),
            Err(_) if expected_len % 16 == 0 && expected_len / 16 <= 0xffff => ((expected_len / 16) as u16, 8),
            Err(_) => panic!("expected length {expected_len} does not fit the input format"),
        };
        let mut v = vec![lun_sel & 3, (attr & 3) | if data_out { 4 } else { 0 } | scale | (setup << 4)];
        v.extend_from_slice(&len.to_le_bytes());
        v.push((cdb.len() - 6) as u8);
        v.extend_from_slice(cdb);
        v.extend_from_slice(pattern);
        v
    }
}

/// A target with a RAM, a NULLIO and a read-only LUN, and two initiators logged in to it.
pub struct Rig {
    /// The target.
    pub target: Arc<Target>,
    /// The initiator every input runs through.
    pub init: LocalInitiator,
    /// A second initiator that takes part in the reservation setup only.
    pub other: LocalInitiator,
    devices: Vec<Arc<Device>>,
    data_out: Vec<u8>,
    data_in: Vec<u8>,
}

impl std::fmt::Debug for Rig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rig").field("target", &self.target).finish_non_exhaustive()
    }
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

impl Rig {
    /// Builds the target (1 MiB RAM, [`NULLIO_BYTES`] of NULLIO, 1 MiB read-only RAM) and logs
    /// in.
    ///
    /// # Panics
    /// If a device cannot be created or mapped.
    pub fn new() -> Self {
        Self::with_nullio_bytes(NULLIO_BYTES)
    }

    /// [`Rig::new`] with a NULLIO LUN of `nullio_bytes` (a multiple of 512).
    ///
    /// # Panics
    /// If a device cannot be created or mapped.
    pub fn with_nullio_bytes(nullio_bytes: u64) -> Self {
        let target = Target::new("iqn.2026-11.rs.scst:fuzz", SgvPool::new(SgvConfig::default()));
        let ram = Disk::new(RamStore::new(1 << 20, 512).expect("RAM geometry"));
        let null = Disk::new(NullStore::new(nullio_bytes, 512).expect("NULLIO geometry"));
        let ro = Disk::new(RamStore::new(1 << 20, 4096).expect("RO geometry"));
        // SANITIZE runs on a thread of its own at a limited rate by default: unlimited here, so a
        // sanitize ends long before the next input (see `Rig::reset`).
        let cfg = |name: &str| DeviceConfig { sanitize_rate: 0, ..DeviceConfig::new(name) };
        let ram = Device::new(DeviceConfig { removable: true, ..cfg("fuzz-ram") }, ram).expect("RAM");
        let null = Device::new(cfg("fuzz-null"), null).expect("NULLIO");
        let ro = Device::new(DeviceConfig { read_only: true, ..cfg("fuzz-ro") }, ro).expect("RO");
        target.add_lun(Lun(RAM_LUN), ram.clone(), false).expect("map RAM");
        target.add_lun(Lun(NULLIO_LUN), null.clone(), false).expect("map NULLIO");
        target.add_lun(Lun(RO_LUN), ro.clone(), true).expect("map RO");
        let init = LocalInitiator::connect(&target, "iqn.2026-11.rs.scst:fuzzer");
        let other = LocalInitiator::connect(&target, "iqn.2026-11.rs.scst:fuzzer-other");
        let (data_out, data_in) = (vec![0; MAX_EXPECTED], vec![0; MAX_EXPECTED]);
        let rig = Self { target, init, other, devices: vec![ram, null, ro], data_out, data_in };
        rig.reset();
        rig
    }

    /// Puts every device back in its initial state (medium loaded, no prevention, default mode
    /// parameters, no reservations, no sanitize running or failed) and consumes pending unit
    /// attentions, so that each input starts from the same state whatever the previous one did.
    /// RAM contents are not reset.
    ///
    /// # Panics
    /// If a sanitize started by an earlier input is still running after 10 s (a hang).
    pub fn reset(&self) {
        for d in &self.devices {
            let deadline = Instant::now() + Duration::from_secs(10);
            while d.sanitize_blocked() == Some(SenseCode::NOT_READY_SANITIZE_IN_PROGRESS) {
                assert!(Instant::now() < deadline, "a sanitize of {} is still running after 10 s", d.name());
                std::thread::sleep(Duration::from_millis(1));
            }
            // Its thread too: one still exiting when the input ends counts as a leak.
            d.wait_sanitize();
            d.set_sanitize(None);
            d.set_medium_loaded(true);
            d.clear_prevent();
            let m = &d.mode;
            m.wce.store(d.config().write_cache, Relaxed);
            m.d_sense.store(false, Relaxed);
            m.swp.store(false, Relaxed);
            m.tas.store(false, Relaxed);
            let _ = d.pr_update(|st| {
                *st = PrState::default();
                Ok(())
            });
        }
        for lun in [RAM_LUN, NULLIO_LUN, RO_LUN] {
            let _ = self.init.clear_unit_attentions(lun);
            let _ = self.other.clear_unit_attentions(lun);
        }
    }

    /// Runs the reservation setup `bits` (see the module docs) on `lun`. Failures are ignored:
    /// the command under test then simply meets a different state.
    pub fn setup(&self, lun: u16, bits: u8) {
        if bits & 1 != 0 {
            prout(&self.init, lun, 6, 0, 0, OUR_KEY);
        }
        if bits & 2 != 0 {
            prout(&self.other, lun, 6, 0, 0, OTHER_KEY);
        }
        if bits & 4 != 0 {
            let typ = if bits & 8 != 0 { 6 } else { 1 };
            if bits & 2 != 0 {
                prout(&self.other, lun, 1, typ, OTHER_KEY, 0);
            } else {
                prout(&self.init, lun, 1, typ, OUR_KEY, 0);
            }
        }
    }

    /// Runs one input (after [`Rig::reset`]) and returns its outcome.
    pub fn run(&mut self, data: &[u8]) -> Outcome {
        self.reset();
        let input = Input::decode(data);
        self.setup(input.lun, input.setup);
        let cdb = &input.cdb[..input.cdb_len];
        let len = input.expected_len;
        let o = if input.data_out && len > 0 {
            let out = &mut self.data_out[..len];
            fill_repeating(out, input.pattern);
            self.init.execute_attr(input.lun, cdb, out, &mut [], input.attr)
        } else {
            // The buffer's old contents do not matter: the initiator overwrites what it reports.
            self.init.execute_attr(input.lun, cdb, &[], &mut self.data_in[..len], input.attr)
        };
        check_outcome(&o, len);
        o
    }
}

/// PERSISTENT RESERVE OUT with a basic 24-byte parameter list.
fn prout(init: &LocalInitiator, lun: u16, sa: u8, scope_type: u8, key: u64, sa_key: u64) -> Outcome {
    let mut params = [0u8; 24];
    params[..8].copy_from_slice(&key.to_be_bytes());
    params[8..16].copy_from_slice(&sa_key.to_be_bytes());
    init.execute(lun, &[0x5f, sa, scope_type, 0, 0, 0, 0, 0, 24, 0], &params, &mut [])
}

/// Contracts every outcome meets, whatever the command: sense data exactly with CHECK CONDITION,
/// and then in a format the initiator can parse; never more Data-In than the buffer holds.
///
/// # Panics
/// If one is broken (the fuzzer reports it as a crash).
pub fn check_outcome(o: &Outcome, buf_len: usize) {
    let cc = o.status == ScsiStatus::CHECK_CONDITION;
    assert_eq!(cc, !o.sense().is_empty(), "sense data without CHECK CONDITION or the reverse: {o:?}");
    assert!(!cc || o.sense_code().is_some(), "unparsable sense data: {o:?}");
    assert!(o.data_in_len <= buf_len, "{} bytes of Data-In for a {buf_len}-byte buffer", o.data_in_len);
}

/// Fills `buf` with `pattern` repeated (zeros when it is empty), a few large copies rather than
/// a loop per byte (which coverage instrumentation makes slow).
fn fill_repeating(buf: &mut [u8], pattern: &[u8]) {
    if pattern.is_empty() {
        buf.fill(0);
        return;
    }
    let first = pattern.len().min(buf.len());
    buf[..first].copy_from_slice(&pattern[..first]);
    let mut filled = first;
    while filled < buf.len() {
        let n = filled.min(buf.len() - filled);
        buf.copy_within(..n, filled);
        filled += n;
    }
}
