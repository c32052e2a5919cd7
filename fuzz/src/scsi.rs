//! The rigs of the fuzz targets `prout`, `unmap_xcopy` and `mode_select`: each input is a short
//! sequence of commands through `scst_local` against a dedicated target, and after every
//! command the rig reads the state back and checks it against what SPC-4/SBC-3 allow.
//!
//! Like the `cdb` rig this module depends only on `scst`, `scst-backends` and `scst-local`
//! (`scst-local/tests/fuzz_regressions.rs` replays inputs through it).
//!
//! Every rig resets its devices before an input, so inputs do not depend on each other.
//!
//! # `prout` input
//!
//! Up to [`MAX_STEPS`] steps, each: `sel`, `b1`, `b2`, `plen` (u16 LE), `n` (u16 LE, at most
//! 4096), then `n` parameter bytes. `sel` bits 1..0 pick the nexus ([`PrRig::NEXUSES`]); bits
//! 4..2 the command: 0..=3 PERSISTENT RESERVE OUT (service action `b1 & 0x1f`, SCOPE/TYPE `b2`,
//! PARAMETER LIST LENGTH `plen`), 7 the same with PARAMETER LIST LENGTH `n`, 4 PERSISTENT
//! RESERVE IN (service action `b1`, allocation length `plen`), 5 RESERVE(6), 6 RELEASE(6).
//!
//! # `unmap_xcopy` input
//!
//! Up to [`MAX_STEPS`] steps, each: `sel` (bits 2..0 the command, bits 4..3 the LUN), then
//! per command: UNMAP (0): `b1` (CDB byte 1), `plen` (u16 LE, the CDB's length; the list sent
//! is `n` bytes), `n` (u16 LE), the list; EXTENDED COPY (1): `b1` (bit 0: the CDB's length is
//! `plen` instead of `n`), `plen`, `n`, the list (NAAs [`xcopy_naa`] name LUNs 0..2);
//! RECEIVE COPY RESULTS (2): service action, list identifier, allocation length (u16 LE);
//! WRITE(10) (3): LBA (u16 LE), blocks (u8, 1..=16), pattern byte; GET LBA STATUS (4): LBA
//! (u16 LE), allocation length (u16 LE); others: READ(10) of one block at LBA (u16 LE).
//!
//! # `mode_select` input
//!
//! Up to [`MAX_STEPS`] steps, each: `sel` (bits 2..0 the command, bit 3 the LUN), then MODE
//! SELECT(6)/(10) (0, 1): CDB byte 1, `plen` (u16 LE, the CDB's length; 6-byte CDBs take the
//! low byte), `n` (u16 LE, at most 1024), the list; MODE SENSE(6)/(10) (2, 3): CDB bytes 1, 2,
//! 3, allocation length (u16 LE); 4: a WRITE(10) probe; 5: a failing READ(10) probe (sense
//! format); others: TEST UNIT READY from the other nexus.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use scst::pr::{PrState, transport_id};
use scst::{Device, DeviceConfig, Disk, Lun, ScsiStatus, SenseCode, SenseKey, SgvConfig, SgvPool, Target};
use scst_backends::RamStore;
use scst_local::{LocalInitiator, Outcome};

use super::check_outcome;

/// Most commands one input runs.
pub const MAX_STEPS: usize = 12;
/// Largest parameter list an input sends.
pub const MAX_LIST: usize = 4608;

#[path = "cursor.rs"]
mod cursor;
pub use cursor::Cursor;

/// Runs `cdb` with `out` as Data-Out (or a Data-In buffer of `in_len` bytes) and checks the
/// outcome contracts. Returns the outcome and the Data-In.
fn exec(init: &LocalInitiator, lun: u16, cdb: &[u8], out: &[u8], in_len: usize) -> (Outcome, Vec<u8>) {
    let mut buf = vec![0u8; if out.is_empty() { in_len } else { 0 }];
    let o = init.execute(lun, cdb, out, &mut buf);
    if trace() {
        eprintln!(
            "  LUN {lun} {:02x?} out {} in {}: {:?} {:?}",
            &cdb[..cdb.len().min(3)],
            out.len(),
            in_len,
            o.status,
            o.sense_code()
        );
    }
    check_outcome(&o, buf.len());
    buf.truncate(o.data_in_len);
    (o, buf)
}

/// Whether `SCST_FUZZ_TRACE` asks for every command and its outcome on stderr (to see what a
/// seed or a crash input does).
fn trace() -> bool {
    static T: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *T.get_or_init(|| std::env::var_os("SCST_FUZZ_TRACE").is_some())
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5], b[at + 6], b[at + 7]])
}

/// Whether `b` is all zeros, compared a page at a time (a byte loop is slow under coverage
/// instrumentation, which traces every comparison).
fn all_zero(b: &[u8]) -> bool {
    static ZERO: [u8; 4096] = [0; 4096];
    b.chunks(ZERO.len()).all(|c| c == &ZERO[..c.len()])
}

/// A process-unique suffix for device names (device names must be unique per process, and
/// several rigs may live in one test process).
fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Relaxed)
}

// =============================================================================================
// prout
// =============================================================================================

/// A registration as READ FULL STATUS reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullStatus {
    /// Reservation key.
    pub key: u64,
    /// ALL_TG_PT.
    pub all_tg_pt: bool,
    /// R_HOLDER.
    pub holder: bool,
    /// SCOPE/TYPE (meaningful for holders).
    pub scope_type: u8,
    /// RELATIVE TARGET PORT IDENTIFIER.
    pub rel_port: u16,
    /// The TransportID.
    pub tid: Vec<u8>,
}

/// The reservation state as PERSISTENT RESERVE IN reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrView {
    /// PRGENERATION.
    pub generation: u32,
    /// READ KEYS.
    pub keys: Vec<u64>,
    /// READ RESERVATION: key and type.
    pub reservation: Option<(u64, u8)>,
    /// READ FULL STATUS.
    pub full: Vec<FullStatus>,
}

/// A target with one RAM LUN and four I_T nexuses for the reservation commands.
pub struct PrRig {
    /// The target.
    pub target: Arc<Target>,
    /// The nexuses: `i.a`, `i.b`, `i.c` through relative port 1, and `i.a` through port 2.
    pub inits: Vec<LocalInitiator>,
    dev: Arc<Device>,
    /// The nexus holding an SPC-2 reservation (RESERVE(6)), if any.
    spc2: Option<usize>,
}

impl std::fmt::Debug for PrRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrRig").field("spc2", &self.spc2).finish_non_exhaustive()
    }
}

impl Default for PrRig {
    fn default() -> Self {
        Self::new()
    }
}

/// The LUN of the reservation rig.
pub const PR_LUN: u16 = 0;

impl PrRig {
    /// (initiator name, relative target port) of the nexuses, in input order.
    pub const NEXUSES: [(&'static str, u16); 4] = [("i.a", 1), ("i.b", 1), ("i.c", 1), ("i.a", 2)];

    /// Builds the target and logs the four nexuses in.
    ///
    /// # Panics
    /// If the device cannot be created.
    pub fn new() -> Self {
        let target = Target::new("iqn.2026-11.rs.scst:fuzz-pr", SgvPool::new(SgvConfig::default()));
        let cfg = DeviceConfig { sanitize_rate: 0, ..DeviceConfig::new(format!("fuzz-pr-{}", unique())) };
        let dev = Device::new(cfg, Disk::new(RamStore::new(1 << 20, 512).expect("RAM"))).expect("device");
        target.add_lun(Lun(PR_LUN), dev.clone(), false).expect("map");
        let inits = Self::NEXUSES.iter().map(|(n, p)| LocalInitiator::connect_port(&target, n, *p)).collect();
        let rig = Self { target, inits, dev, spc2: None };
        rig.reset();
        rig
    }

    /// Drops every registration and reservation and consumes pending unit attentions.
    pub fn reset(&self) {
        let _ = self.dev.pr_update(|st| {
            *st = PrState::default();
            Ok(())
        });
        for i in &self.inits {
            let _ = i.clear_unit_attentions(PR_LUN);
        }
    }

    /// PERSISTENT RESERVE IN `sa` from nexus 0 with a large allocation length.
    fn prin(&self, sa: u8) -> Vec<u8> {
        let cdb = [0x5e, sa, 0, 0, 0, 0, 0, 0xff, 0xff, 0];
        // Reservation changes queue unit attentions: consume them first.
        let (o, d) = loop {
            let (o, d) = exec(&self.inits[0], PR_LUN, &cdb, &[], 65535);
            if o.sense_code().is_none_or(|c| c.key != SenseKey::UNIT_ATTENTION) {
                break (o, d);
            }
        };
        assert!(o.is_good(), "PERSISTENT RESERVE IN {sa}: {:?} {:?}", o.status, o.sense_code());
        d
    }

    /// Reads the whole reservation state back and checks that the three views agree.
    ///
    /// # Panics
    /// If a view is malformed or the views disagree.
    pub fn view(&self) -> PrView {
        let k = self.prin(0);
        assert!(k.len() >= 8 && be32(&k, 4) as usize == k.len() - 8, "READ KEYS length: {k:02x?}");
        assert_eq!(k.len() % 8, 0);
        let keys: Vec<u64> = k[8..].chunks(8).map(|c| be64(c, 0)).collect();
        let r = self.prin(1);
        let reservation = match be32(&r, 4) {
            0 => {
                assert_eq!(r.len(), 8);
                None
            }
            16 => {
                assert_eq!(r.len(), 24);
                assert_eq!(r[21] >> 4, 0, "only LU_SCOPE exists");
                Some((be64(&r, 8), r[21]))
            }
            n => panic!("READ RESERVATION additional length {n}"),
        };
        let f = self.prin(3);
        assert!(f.len() >= 8 && be32(&f, 4) as usize == f.len() - 8, "READ FULL STATUS length");
        let mut full = Vec::new();
        let mut at = 8;
        while at < f.len() {
            assert!(at + 24 <= f.len(), "truncated full status descriptor");
            let d = &f[at..at + 24];
            let tl = be32(d, 20) as usize;
            assert!(at + 24 + tl <= f.len(), "TransportID overruns the data");
            let tid = f[at + 24..at + 24 + tl].to_vec();
            assert!(tl >= 24 && tl % 4 == 0, "TransportID of {tl} bytes");
            assert_eq!(usize::from(be16(&tid, 2)) + 4, tl, "iSCSI TransportID ADDITIONAL LENGTH");
            // Every registered I_T nexus has an initiator port name.
            assert!(tid[4] != 0, "a registration naming no initiator: {tid:02x?}");
            full.push(FullStatus {
                key: be64(d, 0),
                all_tg_pt: d[12] & 2 != 0,
                holder: d[12] & 1 != 0,
                scope_type: d[13],
                rel_port: be16(d, 18),
                tid,
            });
            at += 24 + tl;
        }
        let generation = be32(&k, 0);
        assert_eq!(be32(&r, 0), generation, "PRGENERATION of READ RESERVATION");
        assert_eq!(be32(&f, 0), generation, "PRGENERATION of READ FULL STATUS");
        let v = PrView { generation, keys, reservation, full };
        Self::check_view(&v);
        v
    }

    fn check_view(v: &PrView) {
        let fk: Vec<u64> = v.full.iter().map(|e| e.key).collect();
        assert_eq!(v.keys, fk, "READ KEYS and READ FULL STATUS list different registrations");
        assert!(v.keys.len() <= scst::pr::MAX_REGISTRATIONS);
        assert!(v.keys.iter().all(|&k| k != 0), "a registration with key 0");
        match v.reservation {
            None => assert!(v.full.iter().all(|e| !e.holder), "a holder without a reservation: {v:?}"),
            Some((key, typ)) => {
                assert!(matches!(typ, 1 | 3 | 5 | 6 | 7 | 8), "reservation type {typ}");
                let holders: Vec<&FullStatus> = v.full.iter().filter(|e| e.holder).collect();
                // SPC-4 §5.13.1: the reservation holder is a registrant.
                assert!(!holders.is_empty(), "a reservation nobody registered holds: {v:?}");
                assert!(holders.iter().all(|e| e.scope_type == typ), "holder type differs: {v:?}");
                if typ == 7 || typ == 8 {
                    assert_eq!(key, 0, "All Registrants reservations report key 0");
                    assert_eq!(holders.len(), v.full.len(), "every registrant holds an All Registrants reservation");
                } else {
                    assert!(holders.iter().any(|e| e.key == key), "READ RESERVATION key is no holder's: {v:?}");
                }
            }
        }
    }

    /// The full-status entries registered for nexus `i` (an I_T nexus has at most one).
    fn regs_of<'v>(&self, v: &'v PrView, i: usize) -> Vec<&'v FullStatus> {
        let tid = transport_id(self.inits[i].session().nexus());
        let port = Self::NEXUSES[i].1;
        v.full.iter().filter(|e| e.tid == tid && (e.all_tg_pt || e.rel_port == port)).collect()
    }

    /// Whether a command from nexus `i` that reads (`write` false) or writes must get
    /// RESERVATION CONFLICT (SPC-4 §5.13.1 table 63).
    fn expect_conflict(&self, v: &PrView, i: usize, write: bool) -> bool {
        if let Some(h) = self.spc2 {
            return h != i;
        }
        let Some((_, typ)) = v.reservation else { return false };
        let regs = self.regs_of(v, i);
        let registered = !regs.is_empty();
        let holder = regs.iter().any(|e| e.holder);
        if holder {
            return false;
        }
        match typ {
            1 => write,
            3 => true,
            5 | 7 => !registered && write,
            _ => !registered,
        }
    }

    /// Runs one input (see the module docs).
    ///
    /// # Panics
    /// If a command or the state breaks a contract.
    pub fn run(&mut self, data: &[u8]) {
        self.reset();
        self.spc2 = None;
        let mut c = Cursor::new(data);
        let mut before = self.view();
        let mut steps = 0;
        while !c.is_empty() && steps < MAX_STEPS {
            steps += 1;
            let sel = c.u8();
            let (b1, b2, plen) = (c.u8(), c.u8(), c.u16());
            let n = usize::from(c.u16()).min(MAX_LIST);
            let params = c.take(n);
            let i = usize::from(sel & 3);
            let kind = (sel >> 2) & 7;
            let init = &self.inits[i];
            let _ = init.clear_unit_attentions(PR_LUN);
            match kind {
                4 => {
                    let cdb = [0x5e, b1, 0, 0, 0, 0, 0, (plen >> 8) as u8, plen as u8, b2 & 0x04];
                    let (o, d) = exec(init, PR_LUN, &cdb, &[], usize::from(plen));
                    if o.is_good() && d.len() >= 8 && b1 & 0x1f != 2 {
                        assert_eq!(be32(&d, 0), before.generation, "PRGENERATION");
                    }
                }
                5 | 6 => {
                    let cdb = [if kind == 5 { 0x16 } else { 0x17 }, 0, 0, 0, 0, 0];
                    let (o, _) = exec(init, PR_LUN, &cdb, &[], 0);
                    if o.is_good() {
                        if kind == 5 {
                            assert!(self.spc2.is_none_or(|h| h == i), "RESERVE(6) granted over another's reservation");
                            assert!(before.full.is_empty(), "RESERVE(6) granted while registrations exist");
                            self.spc2 = Some(i);
                        } else if self.spc2 == Some(i) {
                            self.spc2 = None;
                        }
                    }
                }
                _ => {
                    let plen = if kind == 7 { n as u32 } else { u32::from(plen) };
                    let mut cdb = [0x5f, b1 & 0x1f, b2, 0, 0, 0, 0, 0, 0, 0];
                    cdb[5..9].copy_from_slice(&plen.to_be_bytes());
                    let (o, _) = exec(init, PR_LUN, &cdb, params, 0);
                    let after = self.view();
                    if o.is_good() {
                        let sa = b1 & 0x1f;
                        if matches!(sa, 1 | 2) {
                            assert_eq!(after.generation, before.generation, "RESERVE/RELEASE changed PRGENERATION");
                        } else {
                            // SPC-4 §6.15.2: incremented by every other service action that
                            // completes. A REGISTER that changes nothing (key 0 from an
                            // unregistered nexus) may or may not count: SPC-4 says such a
                            // command completes "without any change", which the implementation
                            // reads as the generation too.
                            let noop = matches!(sa, 0 | 6) && after.full == before.full;
                            let next = before.generation.wrapping_add(1);
                            assert!(
                                after.generation == next || noop && after.generation == before.generation,
                                "PRGENERATION {} -> {} for service action {sa}",
                                before.generation,
                                after.generation
                            );
                        }
                    } else {
                        assert_eq!(
                            after,
                            before,
                            "a PERSISTENT RESERVE OUT that failed ({:?} {:?}) changed the state",
                            o.status,
                            o.sense_code()
                        );
                    }
                    before = after;
                }
            }
            // Every nexus is registered at most once (SPC-4: one reservation key per I_T
            // nexus), and reads and writes conflict exactly as the reservation type says.
            for j in 0..self.inits.len() {
                assert!(self.regs_of(&before, j).len() <= 1, "nexus {j} has two registrations: {before:?}");
                let _ = self.inits[j].clear_unit_attentions(PR_LUN);
                for write in [false, true] {
                    let cdb = [if write { 0x2a } else { 0x28 }, 0, 0, 0, 0, 0, 0, 0, 1, 0];
                    let block = [0u8; 512];
                    let (o, _) = if write {
                        exec(&self.inits[j], PR_LUN, &cdb, &block, 0)
                    } else {
                        exec(&self.inits[j], PR_LUN, &cdb, &[], 512)
                    };
                    let conflict = o.status == ScsiStatus::RESERVATION_CONFLICT;
                    let want = self.expect_conflict(&before, j, write);
                    assert_eq!(
                        conflict,
                        want,
                        "nexus {j} {}: {:?} {:?}, expected conflict {want}; state {before:?}, SPC-2 holder {:?}",
                        if write { "WRITE" } else { "READ" },
                        o.status,
                        o.sense_code(),
                        self.spc2
                    );
                }
            }
        }
    }
}

// =============================================================================================
// unmap_xcopy
// =============================================================================================

/// Logical units of the copy rig: two thin 1 MiB RAM LUNs of 512-byte blocks and one of
/// 4096-byte blocks.
pub const XCOPY_LUNS: [(u64, u32); 3] = [(1 << 20, 512), (1 << 20, 512), (1 << 20, 4096)];

/// The NAA designator the input format uses for LUN `lun` of the copy rig (the first rig of a
/// process has exactly these; later rigs have others, and the rig rewrites these into them).
pub const fn xcopy_naa(lun: usize) -> u64 {
    0x3fac_e000_0000_0000 | lun as u64
}

/// A target with the [`XCOPY_LUNS`], a shadow copy of their contents and a record of the
/// copies run, to check UNMAP, EXTENDED COPY, RECEIVE COPY RESULTS and GET LBA STATUS.
pub struct XcopyRig {
    /// The target.
    pub target: Arc<Target>,
    /// The initiator.
    pub init: LocalInitiator,
    naas: [u64; 3],
    shadow: Vec<Vec<u8>>,
    /// (LUN, list identifier) of every EXTENDED COPY of the current input, with its outcome:
    /// `Some((segments, bytes))` when it succeeded.
    copies: Vec<CopyRecord>,
}

/// (LUN, list identifier, `Some((segments, bytes))` when the copy succeeded).
type CopyRecord = (usize, u8, Option<(u16, u64)>);

impl std::fmt::Debug for XcopyRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XcopyRig").field("naas", &self.naas).finish_non_exhaustive()
    }
}

impl Default for XcopyRig {
    fn default() -> Self {
        Self::new()
    }
}

impl XcopyRig {
    /// Builds the target.
    ///
    /// # Panics
    /// If a device cannot be created.
    pub fn new() -> Self {
        static RIGS: AtomicU64 = AtomicU64::new(0);
        let rig_no = RIGS.fetch_add(1, Relaxed);
        let target = Target::new("iqn.2026-11.rs.scst:fuzz-xcopy", SgvPool::new(SgvConfig::default()));
        let mut naas = [0; 3];
        for (i, (size, bs)) in XCOPY_LUNS.iter().enumerate() {
            naas[i] = xcopy_naa(i) | rig_no << 8;
            let cfg = DeviceConfig {
                naa: Some(naas[i]),
                sanitize_rate: 0,
                ..DeviceConfig::new(format!("fuzz-xcopy-{i}-{}", unique()))
            };
            let dev = Device::new(cfg, Disk::new(RamStore::new(*size, *bs).expect("RAM"))).expect("device");
            target.add_lun(Lun(i as u16), dev, false).expect("map");
        }
        let init = LocalInitiator::connect(&target, "iqn.2026-11.rs.scst:fuzz-xcopy-init");
        let shadow = XCOPY_LUNS.iter().map(|(size, _)| vec![0u8; *size as usize]).collect();
        let mut rig = Self { target, init, naas, shadow, copies: Vec::new() };
        rig.reset();
        rig
    }

    fn blocks(lun: usize) -> u64 {
        XCOPY_LUNS[lun].0 / u64::from(XCOPY_LUNS[lun].1)
    }

    /// Deallocates every block and consumes unit attentions.
    pub fn reset(&mut self) {
        for lun in 0..XCOPY_LUNS.len() {
            let _ = self.init.clear_unit_attentions(lun as u16);
            let mut list = [0u8; 24];
            list[0..2].copy_from_slice(&22u16.to_be_bytes());
            list[2..4].copy_from_slice(&16u16.to_be_bytes());
            list[16..20].copy_from_slice(&(Self::blocks(lun) as u32).to_be_bytes());
            let o = self.init.execute(lun as u16, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &list, &mut []);
            assert!(o.is_good(), "reset UNMAP: {:?}", o.sense_code());
            self.shadow[lun].fill(0);
        }
    }

    /// Consumes the copy results the last input may have left (COPY STATUS and FAILED SEGMENT
    /// DETAILS of every list identifier it used), so the next input starts without them.
    fn drain_results(&mut self, used: &[(usize, u8)]) {
        for &(lun, list) in used {
            for sa in [0u8, 4] {
                let mut cdb = [0u8; 16];
                cdb[0] = 0x84;
                cdb[1] = sa;
                cdb[2] = list;
                cdb[10..14].copy_from_slice(&1024u32.to_be_bytes());
                let _ = exec(&self.init, lun as u16, &cdb, &[], 1024);
            }
        }
    }

    /// Reads `blocks` blocks at `lba` of `lun` (clipped to the capacity).
    fn read(&self, lun: usize, lba: u64, blocks: u64) -> Vec<u8> {
        let cap = Self::blocks(lun);
        let (lba, n) = (lba.min(cap), blocks.min(cap - lba.min(cap)));
        let bs = u64::from(XCOPY_LUNS[lun].1);
        let mut out = Vec::with_capacity((n * bs) as usize);
        let mut done = 0;
        while done < n {
            let k = (n - done).min(2048);
            let mut cdb = [0u8; 16];
            cdb[0] = 0x88;
            cdb[2..10].copy_from_slice(&(lba + done).to_be_bytes());
            cdb[10..14].copy_from_slice(&(k as u32).to_be_bytes());
            let (o, d) = exec(&self.init, lun as u16, &cdb, &[], (k * bs) as usize);
            assert!(o.is_good() && d.len() == (k * bs) as usize, "READ(16): {:?}", o.sense_code());
            out.extend_from_slice(&d);
            done += k;
        }
        out
    }

    /// The device contents of `blocks` blocks at `lba` equal the shadow's.
    fn compare(&self, lun: usize, lba: u64, blocks: u64, what: &str) {
        let cap = Self::blocks(lun);
        let (lba, n) = (lba.min(cap), blocks.min(cap - lba.min(cap)));
        let bs = u64::from(XCOPY_LUNS[lun].1) as usize;
        let got = self.read(lun, lba, n);
        let want = &self.shadow[lun][lba as usize * bs..(lba + n) as usize * bs];
        if got != want {
            let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            panic!("{what}: LUN {lun} differs from the model at byte {} of LBA {lba}+{n}", first);
        }
    }

    fn resync(&mut self, lun: usize, lba: u64, blocks: u64) {
        let cap = Self::blocks(lun);
        let (lba, n) = (lba.min(cap), blocks.min(cap - lba.min(cap)));
        let bs = u64::from(XCOPY_LUNS[lun].1) as usize;
        let got = self.read(lun, lba, n);
        self.shadow[lun][lba as usize * bs..(lba + n) as usize * bs].copy_from_slice(&got);
    }

    fn lun_of_naa(&self, naa: u64) -> Option<usize> {
        self.naas.iter().position(|&n| n == naa)
    }

    /// Runs one input (see the module docs).
    ///
    /// # Panics
    /// If a command or the device contents break a contract.
    pub fn run(&mut self, data: &[u8]) {
        let used: Vec<(usize, u8)> = self.copies.iter().map(|c| (c.0, c.1)).collect();
        self.drain_results(&used);
        self.copies.clear();
        self.reset();
        let mut c = Cursor::new(data);
        let mut steps = 0;
        while !c.is_empty() && steps < MAX_STEPS {
            steps += 1;
            let sel = c.u8();
            let lun = usize::from(sel >> 3 & 3) % XCOPY_LUNS.len();
            match sel & 7 {
                0 => {
                    let (b1, plen, n) = (c.u8(), c.u16(), usize::from(c.u16()).min(MAX_LIST));
                    let list = c.take(n);
                    let cdb = [0x42, b1, 0, 0, 0, 0, 0, (plen >> 8) as u8, plen as u8, 0];
                    self.unmap(lun, &cdb, list);
                }
                1 => {
                    let (b1, plen, n) = (c.u8(), c.u16(), usize::from(c.u16()).min(MAX_LIST));
                    let list = c.take(n);
                    let len = if b1 & 1 != 0 { u32::from(plen) } else { list.len() as u32 };
                    self.xcopy(lun, len, list);
                }
                2 => {
                    let (sa, id, alloc) = (c.u8(), c.u8(), c.u16());
                    self.receive_copy_results(lun, sa, id, alloc);
                }
                3 => {
                    let (lba, blocks, pat) = (u64::from(c.u16()), u64::from(c.u8() % 16 + 1), c.u8());
                    let bs = XCOPY_LUNS[lun].1 as usize;
                    let data: Vec<u8> = (0..blocks as usize * bs).map(|k| pat ^ (k / 7) as u8).collect();
                    let mut cdb = [0x2a, 0, 0, 0, 0, 0, 0, 0, blocks as u8, 0];
                    cdb[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
                    let (o, _) = exec(&self.init, lun as u16, &cdb, &data, 0);
                    if o.is_good() {
                        self.shadow[lun][lba as usize * bs..][..data.len()].copy_from_slice(&data);
                    }
                    self.compare(lun, lba, blocks, "WRITE(10)");
                }
                4 => {
                    let (lba, alloc) = (u64::from(c.u16()), c.u16());
                    self.get_lba_status(lun, lba, alloc);
                }
                _ => {
                    let lba = u64::from(c.u16()) % Self::blocks(lun);
                    self.compare(lun, lba, 1, "READ");
                }
            }
        }
        // Nothing changed outside what the model knows of: deallocated blocks are zeros in the
        // model, mapped ones hold what it says (reading only the mapped ones keeps this cheap).
        for lun in 0..XCOPY_LUNS.len() {
            for (lba, n, mapped) in self.lba_status(lun) {
                if mapped {
                    self.compare(lun, lba, n, "end of input");
                }
            }
        }
    }

    /// GET LBA STATUS of the whole LUN: (LBA, blocks, mapped) runs covering it, checked against
    /// the model (deallocated runs read zeros).
    fn lba_status(&self, lun: usize) -> Vec<(u64, u64, bool)> {
        let cap = Self::blocks(lun);
        let bs = XCOPY_LUNS[lun].1 as usize;
        let mut runs = Vec::new();
        let mut lba = 0;
        while lba < cap {
            let mut cdb = [0u8; 16];
            cdb[0] = 0x9e;
            cdb[1] = 0x12;
            cdb[2..10].copy_from_slice(&lba.to_be_bytes());
            cdb[10..14].copy_from_slice(&1032u32.to_be_bytes());
            let (o, d) = exec(&self.init, lun as u16, &cdb, &[], 1032);
            assert!(o.is_good() && d.len() >= 24, "GET LBA STATUS: {:?}", o.sense_code());
            for e in d[8..].chunks_exact(16) {
                let (start, n, status) = (be64(e, 0), u64::from(be32(e, 8)), e[12] & 0x0f);
                assert_eq!(start, lba, "LBA status descriptors are not contiguous");
                assert!(n > 0 && n <= cap - start, "descriptor {start}+{n} beyond the capacity");
                if status == 1 {
                    let z = &self.shadow[lun][start as usize * bs..(start + n) as usize * bs];
                    assert!(all_zero(z), "deallocated blocks {start}+{n} hold data in the model");
                }
                runs.push((start, n, status == 0));
                lba = start + n;
                if lba >= cap {
                    break;
                }
            }
        }
        runs
    }

    fn unmap(&mut self, lun: usize, cdb: &[u8; 10], list: &[u8]) {
        let (o, _) = exec(&self.init, lun as u16, cdb, list, 0);
        // The device server gets the shorter of the list sent and the list the CDB describes.
        let list = &list[..list.len().min(usize::from(be16(cdb, 7)))];
        // The descriptors the device server may have looked at.
        let mut ranges = Vec::new();
        if list.len() >= 8 {
            let n = usize::from(be16(list, 2)).min(list.len() - 8) / 16;
            for i in 0..n {
                let d = &list[8 + 16 * i..];
                ranges.push((be64(d, 0), u64::from(be32(d, 8))));
            }
        }
        if o.is_good() {
            let bs = XCOPY_LUNS[lun].1 as u64;
            let cap = Self::blocks(lun);
            for &(lba, n) in &ranges {
                assert!(lba <= cap && n <= cap - lba.min(cap), "UNMAP of {lba}+{n} beyond the capacity succeeded");
                self.shadow[lun][(lba * bs) as usize..((lba + n) * bs) as usize].fill(0);
            }
        }
        // UNMAP checks every descriptor before deallocating anything (SBC-3 §5.28): a failed
        // UNMAP changed nothing; a successful one left zeros (LBPRZ).
        for &(lba, n) in &ranges {
            self.compare(lun, lba, n.min(Self::blocks(lun)), "UNMAP");
        }
    }

    /// Rewrites the canonical NAAs of the input format into this rig's.
    fn rewrite_naas(&self, p: &mut [u8]) {
        if p.len() < 16 {
            return;
        }
        let cscd = usize::from(be16(p, 2));
        let mut at = 16;
        while at + 32 <= p.len() && at < 16 + cscd {
            let naa = be64(p, at + 8);
            if let Some(l) = (0..3).find(|&l| xcopy_naa(l) == naa) {
                p[at + 8..at + 16].copy_from_slice(&self.naas[l].to_be_bytes());
            }
            at += 32;
        }
    }

    fn xcopy(&mut self, lun: usize, plen: u32, list: &[u8]) {
        let mut p = list.to_vec();
        self.rewrite_naas(&mut p);
        let mut cdb = [0u8; 16];
        cdb[0] = 0x83;
        cdb[10..14].copy_from_slice(&plen.to_be_bytes());
        let (o, _) = exec(&self.init, lun as u16, &cdb, &p, 0);
        p.truncate(plen as usize);
        // Decode the segments the way SPC-4 lays them out, to know what a copy may touch.
        let mut segs = Vec::new();
        let mut cscds = Vec::new();
        if p.len() >= 16 {
            let cscd_len = usize::from(be16(&p, 2));
            let seg_len = be32(&p, 8) as usize;
            let mut at = 16;
            while at + 32 <= p.len() && at < 16 + cscd_len {
                cscds.push(self.lun_of_naa(be64(&p, at + 8)));
                at += 32;
            }
            let mut at = 16 + cscd_len;
            while at + 28 <= p.len() && at < 16 + cscd_len + seg_len.min(4096) {
                let s = &p[at..at + 28];
                let (src, dst) = (usize::from(be16(s, 4)), usize::from(be16(s, 6)));
                segs.push((src, dst, u64::from(be16(s, 10)), be64(s, 12), be64(s, 20)));
                at += 28;
            }
        }
        let list_id = p.first().copied().unwrap_or(0);
        if o.is_good() {
            let mut bytes = 0u64;
            for &(src, dst, n, slba, dlba) in &segs {
                let s = cscds.get(src).copied().flatten().expect("a successful copy from an unknown CSCD");
                let d = cscds.get(dst).copied().flatten().expect("a successful copy to an unknown CSCD");
                let bs = XCOPY_LUNS[s].1 as usize;
                if n == 0 {
                    continue; // moves nothing, whatever the devices
                }
                assert_eq!(bs, XCOPY_LUNS[d].1 as usize, "a copy between block sizes succeeded");
                for (l, lba) in [(s, slba), (d, dlba)] {
                    assert!(lba < Self::blocks(l) && n <= Self::blocks(l) - lba, "copy beyond LUN {l}'s capacity");
                }
                let from = self.shadow[s][slba as usize * bs..(slba + n) as usize * bs].to_vec();
                self.shadow[d][dlba as usize * bs..][..from.len()].copy_from_slice(&from);
                bytes += from.len() as u64;
            }
            // Segments run in order, each on the result of the previous ones.
            for &(_, dst, n, _, dlba) in &segs {
                let d = cscds[dst].expect("checked above");
                self.compare(d, dlba, n, "EXTENDED COPY");
            }
            self.copies.push((lun, list_id, Some((segs.len() as u16, bytes))));
        } else {
            // Segments before the failing one were copied: take the destinations as they are.
            for &(_, dst, n, _, dlba) in &segs {
                if let Some(Some(d)) = cscds.get(dst) {
                    self.resync(*d, dlba, n);
                }
            }
            self.copies.push((lun, list_id, None));
        }
    }

    fn receive_copy_results(&mut self, lun: usize, sa: u8, id: u8, alloc: u16) {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x84;
        cdb[1] = sa;
        cdb[2] = id;
        cdb[10..14].copy_from_slice(&u32::from(alloc).to_be_bytes());
        let (o, d) = exec(&self.init, lun as u16, &cdb, &[], usize::from(alloc));
        if !o.is_good() || d.len() < 4 {
            return;
        }
        let candidates: Vec<Option<(u16, u64)>> =
            self.copies.iter().filter(|c| c.0 == lun && c.1 == id).map(|c| c.2).collect();
        match sa & 0x1f {
            0 => {
                assert!(!candidates.is_empty(), "COPY STATUS of list {id}, which no EXTENDED COPY used");
                if d.len() >= 12 {
                    assert_eq!(be32(&d, 0), 8);
                    let (status, segs, count) = (d[4], be16(&d, 5), be32(&d, 8));
                    let fits = candidates.iter().any(|c| match c {
                        Some((n, bytes)) => {
                            status == 1 && segs == *n && u64::from(count) == (*bytes).min(u64::from(u32::MAX))
                        }
                        None => status == 2,
                    });
                    assert!(fits, "COPY STATUS {status:#x} segments {segs} bytes {count}; copies {candidates:?}");
                }
            }
            4 => {
                assert!(!candidates.is_empty(), "FAILED SEGMENT DETAILS of list {id}, which no EXTENDED COPY used");
                if d.len() >= 60 {
                    let n = usize::from(be16(&d, 58));
                    assert!(n <= scst::wire::sense::MAX_SENSE_LEN);
                    assert_eq!(be32(&d, 0) as usize, 56 + n, "AVAILABLE DATA of FAILED SEGMENT DETAILS");
                    let status = ScsiStatus(d[56]);
                    assert_eq!(status == ScsiStatus::CHECK_CONDITION, n > 0, "sense data exactly with CHECK CONDITION");
                }
            }
            3 if d.len() >= 46 => assert_eq!(be32(&d, 0), 42),
            _ => {}
        }
    }

    fn get_lba_status(&self, lun: usize, lba: u64, alloc: u16) {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x9e;
        cdb[1] = 0x12;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&u32::from(alloc).to_be_bytes());
        let (o, d) = exec(&self.init, lun as u16, &cdb, &[], usize::from(alloc));
        if !o.is_good() || d.len() < 8 {
            return;
        }
        let total = be32(&d, 0) as usize + 4;
        let cap = Self::blocks(lun);
        let bs = XCOPY_LUNS[lun].1 as usize;
        let mut next = lba;
        for e in d[8..d.len().min(total)].chunks_exact(16) {
            let (start, n, status) = (be64(e, 0), u64::from(be32(e, 8)), e[12] & 0x0f);
            assert_eq!(start, next, "LBA status descriptors are not contiguous");
            assert!(n > 0 && start < cap && n <= cap - start, "descriptor {start}+{n} beyond the capacity");
            if status == 1 {
                let z = &self.shadow[lun][start as usize * bs..(start + n) as usize * bs];
                assert!(all_zero(z), "deallocated blocks {start}+{n} hold data (LBPRZ)");
            }
            next = start + n;
        }
    }
}

// =============================================================================================
// mode_select
// =============================================================================================

/// The mode state the rig expects: WCE, D_SENSE, SWP, TAS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ModeModel {
    /// Caching page WCE.
    pub wce: bool,
    /// Control page D_SENSE.
    pub d_sense: bool,
    /// Control page SWP.
    pub swp: bool,
    /// Control page TAS.
    pub tas: bool,
}

/// A target with two RAM LUNs (512- and 4096-byte blocks) and two nexuses: one runs the input,
/// the other watches for unit attentions.
pub struct ModeRig {
    /// The target.
    pub target: Arc<Target>,
    /// The nexus every input runs through.
    pub init: LocalInitiator,
    /// A second nexus, which must be told MODE PARAMETERS CHANGED.
    pub other: LocalInitiator,
    devs: Vec<Arc<Device>>,
}

impl std::fmt::Debug for ModeRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModeRig").finish_non_exhaustive()
    }
}

impl Default for ModeRig {
    fn default() -> Self {
        Self::new()
    }
}

/// (blocks, block size) of the mode rig's LUNs.
pub const MODE_LUNS: [(u64, u32); 2] = [(2048, 512), (256, 4096)];

/// (page code, length) of the mode pages the disk reports.
const PAGES: [(u8, usize); 4] = [(0x01, 12), (0x08, 20), (0x0a, 12), (0x1c, 12)];

impl ModeRig {
    /// Builds the target.
    ///
    /// # Panics
    /// If a device cannot be created.
    pub fn new() -> Self {
        let target = Target::new("iqn.2026-11.rs.scst:fuzz-mode", SgvPool::new(SgvConfig::default()));
        let mut devs = Vec::new();
        for (i, (blocks, bs)) in MODE_LUNS.iter().enumerate() {
            let cfg = DeviceConfig { sanitize_rate: 0, ..DeviceConfig::new(format!("fuzz-mode-{i}-{}", unique())) };
            let dev =
                Device::new(cfg, Disk::new(RamStore::new(blocks * u64::from(*bs), *bs).expect("RAM"))).expect("dev");
            target.add_lun(Lun(i as u16), dev.clone(), false).expect("map");
            devs.push(dev);
        }
        let init = LocalInitiator::connect(&target, "iqn.2026-11.rs.scst:fuzz-mode-a");
        let other = LocalInitiator::connect(&target, "iqn.2026-11.rs.scst:fuzz-mode-b");
        let rig = Self { target, init, other, devs };
        rig.reset();
        rig
    }

    /// Default mode parameters, no unit attentions pending.
    pub fn reset(&self) {
        for d in &self.devs {
            d.mode.wce.store(d.config().write_cache, Relaxed);
            d.mode.d_sense.store(false, Relaxed);
            d.mode.swp.store(false, Relaxed);
            d.mode.tas.store(false, Relaxed);
        }
        for lun in 0..MODE_LUNS.len() as u16 {
            let _ = self.init.clear_unit_attentions(lun);
            let _ = self.other.clear_unit_attentions(lun);
        }
    }

    /// MODE SENSE(10) of every page with page control `pc`, checked; returns the pages by code.
    fn pages(&self, lun: usize, pc: u8) -> HashMap<u8, Vec<u8>> {
        let cdb = [0x5a, 0x08, pc << 6 | 0x3f, 0, 0, 0, 0, 0x04, 0, 0];
        let (o, d) = exec(&self.init, lun as u16, &cdb, &[], 1024);
        assert!(o.is_good(), "MODE SENSE(10) PC {pc}: {:?}", o.sense_code());
        let (pages, _) = parse_mode_data(&d, false, lun);
        pages
    }

    fn model(&self, lun: usize) -> ModeModel {
        let p = self.pages(lun, 0);
        ModeModel {
            wce: p[&0x08][2] & 0x04 != 0,
            d_sense: p[&0x0a][2] & 0x04 != 0,
            swp: p[&0x0a][4] & 0x08 != 0,
            tas: p[&0x0a][5] & 0x40 != 0,
        }
    }

    /// Runs one input (see the module docs).
    ///
    /// # Panics
    /// If a command or the mode state breaks a contract.
    pub fn run(&mut self, data: &[u8]) {
        self.reset();
        // Changeable and default values never change; current values differ from the default
        // only in changeable bits.
        let changeable: Vec<HashMap<u8, Vec<u8>>> = (0..MODE_LUNS.len()).map(|l| self.pages(l, 1)).collect();
        let defaults: Vec<HashMap<u8, Vec<u8>>> = (0..MODE_LUNS.len()).map(|l| self.pages(l, 2)).collect();
        let mut c = Cursor::new(data);
        let mut steps = 0;
        while !c.is_empty() && steps < MAX_STEPS {
            steps += 1;
            let sel = c.u8();
            let lun = usize::from(sel >> 3 & 1);
            match sel & 7 {
                k @ (0 | 1) => {
                    let (b1, plen, n) = (c.u8(), c.u16(), usize::from(c.u16()).min(1024));
                    let list = c.take(n);
                    let six = k == 0;
                    let cdb: Vec<u8> = if six {
                        vec![0x15, b1, 0, 0, plen as u8, 0]
                    } else {
                        vec![0x55, b1, 0, 0, 0, 0, 0, (plen >> 8) as u8, plen as u8, 0]
                    };
                    let before = self.pages(lun, 0);
                    let (o, _) = exec(&self.init, lun as u16, &cdb, list, 0);
                    // The device server gets the shorter of the list sent and the list the
                    // CDB describes.
                    let list = &list[..list.len().min(if six { usize::from(plen as u8) } else { usize::from(plen) })];
                    let after = self.pages(lun, 0);
                    if o.is_good() {
                        // Each page sent (the last of a code wins) is now current; the rest is
                        // as it was.
                        let mut want = before.clone();
                        if list.len() > if six { 4 } else { 8 } {
                            let hdr = if six { 4 } else { 8 };
                            let bdl = if six { usize::from(list[3]) } else { usize::from(be16(list, 6)) };
                            let mut at = hdr + bdl;
                            while at + 2 <= list.len() {
                                let code = list[at] & 0x3f;
                                let len = usize::from(list[at + 1]) + 2;
                                let Some(page) = list.get(at..at + len) else { break };
                                let w = want.get_mut(&code).expect("a MODE SELECT of an unknown page succeeded");
                                assert_eq!(w.len(), len, "a page of the wrong length was accepted");
                                w[2..].copy_from_slice(&page[2..]);
                                at += len;
                            }
                        }
                        assert_eq!(after, want, "mode pages after MODE SELECT ({} bytes)", list.len());
                    } else {
                        assert_eq!(after, before, "a MODE SELECT that failed ({:?}) changed the pages", o.sense_code());
                    }
                    // The other nexus is told of a change (once); this one is not.
                    let changed = after != before;
                    let (t, _) = exec(&self.other, lun as u16, &[0; 6], &[], 0);
                    let ua = t.sense_code() == Some(SenseCode::MODE_PARAMETERS_CHANGED);
                    assert_eq!(ua, changed, "the other nexus got {:?} after a change: {changed}", t.sense_code());
                    let _ = self.other.clear_unit_attentions(lun as u16);
                    let (t, _) = exec(&self.init, lun as u16, &[0; 6], &[], 0);
                    assert!(t.is_good(), "the nexus that changed the pages got {:?}", t.sense_code());
                }
                k @ (2 | 3) => {
                    let (b1, b2, b3, alloc) = (c.u8(), c.u8(), c.u8(), c.u16());
                    let six = k == 2;
                    let cdb: Vec<u8> = if six {
                        vec![0x1a, b1, b2, b3, alloc as u8, 0]
                    } else {
                        vec![0x5a, b1, b2, b3, 0, 0, 0, (alloc >> 8) as u8, alloc as u8, 0]
                    };
                    let in_len = if six { usize::from(alloc as u8) } else { usize::from(alloc) };
                    let (o, d) = exec(&self.init, lun as u16, &cdb, &[], in_len);
                    if o.is_good() {
                        check_partial_mode_data(&d, six, lun, b1, b2);
                    }
                }
                4 => {
                    let m = self.model(lun);
                    let bs = MODE_LUNS[lun].1 as usize;
                    let (o, _) = exec(&self.init, lun as u16, &[0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0], &vec![0x5a; bs], 0);
                    if m.swp {
                        assert_eq!(o.sense_code().map(|s| s.key), Some(SenseKey::DATA_PROTECT), "WRITE with SWP set");
                    } else {
                        assert!(o.is_good(), "WRITE without SWP: {:?}", o.sense_code());
                    }
                }
                5 => {
                    let m = self.model(lun);
                    let (o, _) =
                        exec(&self.init, lun as u16, &[0x28, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0], &[], 4096);
                    assert_eq!(o.sense_code(), Some(SenseCode::LBA_OUT_OF_RANGE));
                    let fmt = o.sense()[0] & 0x7f;
                    assert_eq!(fmt, if m.d_sense { 0x72 } else { 0x70 }, "sense format with D_SENSE {}", m.d_sense);
                }
                _ => {
                    let _ = self.other.clear_unit_attentions(lun as u16);
                }
            }
            for l in 0..MODE_LUNS.len() {
                assert_eq!(self.pages(l, 1), changeable[l], "changeable values changed");
                assert_eq!(self.pages(l, 2), defaults[l], "default values changed");
                let cur = self.pages(l, 0);
                for (code, page) in &cur {
                    let (chg, def) = (&changeable[l][code], &defaults[l][code]);
                    for i in 2..page.len() {
                        assert_eq!(
                            (page[i] ^ def[i]) & !chg[i],
                            0,
                            "page {code:#04x} byte {i} outside the changeable mask"
                        );
                    }
                }
            }
        }
    }
}

/// Parses complete mode parameter data (header, block descriptors, pages) and checks it.
/// Returns the pages by code and the block descriptor bytes.
fn parse_mode_data(d: &[u8], six: bool, lun: usize) -> (HashMap<u8, Vec<u8>>, Vec<u8>) {
    let hdr = if six { 4 } else { 8 };
    assert!(d.len() >= hdr, "mode data shorter than its header");
    let mdl = if six { usize::from(d[0]) + 1 } else { usize::from(be16(d, 0)) + 2 };
    assert_eq!(mdl, d.len(), "MODE DATA LENGTH");
    let bdl = if six { usize::from(d[3]) } else { usize::from(be16(d, 6)) };
    let long = !six && d[4] & 1 != 0;
    assert!(bdl == 0 || bdl == if long { 16 } else { 8 }, "BLOCK DESCRIPTOR LENGTH {bdl}");
    let bd = d[hdr..hdr + bdl].to_vec();
    let (blocks, bs) = MODE_LUNS[lun];
    if bdl == 8 {
        assert_eq!(u64::from(be32(&bd, 0)), blocks.min(u64::from(u32::MAX)));
        assert_eq!(be32(&bd, 4) & 0x00ff_ffff, bs);
    } else if bdl == 16 {
        assert_eq!(be64(&bd, 0), blocks);
        assert_eq!(be32(&bd, 12), bs);
    }
    let mut pages = HashMap::new();
    let mut at = hdr + bdl;
    while at < d.len() {
        assert!(at + 2 <= d.len(), "truncated page header");
        let code = d[at] & 0x3f;
        let len = usize::from(d[at + 1]) + 2;
        assert!(at + len <= d.len(), "page {code:#04x} overruns the data");
        assert_eq!(d[at] & 0x40, 0, "SPF set on a page without subpages");
        let want = PAGES.iter().find(|p| p.0 == code).map(|p| p.1);
        assert_eq!(want, Some(len), "page {code:#04x} of {len} bytes");
        assert!(pages.insert(code, d[at..at + len].to_vec()).is_none(), "page {code:#04x} twice");
        at += len;
    }
    (pages, bd)
}

/// Checks mode data the fuzzer asked for, which may be cut short by its allocation length.
fn check_partial_mode_data(d: &[u8], six: bool, lun: usize, b1: u8, b2: u8) {
    let hdr = if six { 4 } else { 8 };
    if d.len() < hdr {
        return;
    }
    let mdl = if six { usize::from(d[0]) + 1 } else { usize::from(be16(d, 0)) + 2 };
    assert!(mdl >= d.len(), "more data than MODE DATA LENGTH says");
    let bdl = if six { usize::from(d[3]) } else { usize::from(be16(d, 6)) };
    let dbd = b1 & 0x08 != 0;
    let llbaa = !six && b1 & 0x10 != 0;
    assert_eq!(
        bdl,
        if dbd {
            0
        } else if llbaa {
            16
        } else {
            8
        },
        "BLOCK DESCRIPTOR LENGTH against DBD/LLBAA"
    );
    let dsp = if six { d[2] } else { d[3] };
    assert_eq!(dsp & 0x10, 0x10, "DPOFUA");
    if mdl == d.len() {
        let (pages, _) = parse_mode_data(d, six, lun);
        let code = b2 & 0x3f;
        if code == 0x3f {
            assert_eq!(pages.len(), PAGES.len(), "all pages");
        } else {
            assert_eq!(pages.keys().copied().collect::<Vec<_>>(), vec![code], "the page asked for");
        }
    }
}
