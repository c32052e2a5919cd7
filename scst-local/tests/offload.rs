//! Thin provisioning and offload commands through the in-process initiator (SBC-4, SPC-4):
//! COMPARE AND WRITE (alone, overlapping, and as a lock word under contention from many
//! sessions), WRITE SAME(10/16), UNMAP, GET LBA STATUS, the provisioning VPD pages and READ
//! CAPACITY(16), ORWRITE(16), WRITE ATOMIC(16), EXTENDED COPY with RECEIVE COPY RESULTS, and
//! SANITIZE.
//!
//! Data is checked by reading it back (and, on FILEIO, in the backing file and its allocation),
//! errors by their sense key, additional sense code, INFORMATION field and field pointer.

mod common;

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use scst::{BlockStore, CmdBox, DeviceConfig, Geometry, Lun, ScsiStatus, SgvConfig, StoreCaps};
use scst_backends::{FileOptions, FileStore, RamStore};
use scst_local::{LocalInitiator, Outcome};

/// Block size of every LUN here but one.
const BS: usize = 512;

const WRITE_SAME10: u8 = 0x41;
const UNMAP: u8 = 0x42;
const SANITIZE: u8 = 0x48;
const EXTENDED_COPY: u8 = 0x83;
const RECEIVE_COPY_RESULTS: u8 = 0x84;
const COMPARE_AND_WRITE: u8 = 0x89;
const ORWRITE16: u8 = 0x8b;
const WRITE_SAME16: u8 = 0x93;
const WRITE_ATOMIC16: u8 = 0x9c;

/// WRITE SAME byte 1 bits.
const WS_ANCHOR: u8 = 0x10;
const WS_UNMAP: u8 = 0x08;
const WS_NDOB: u8 = 0x01;

/// SANITIZE service actions.
const OVERWRITE: u8 = 0x01;
const BLOCK_ERASE: u8 = 0x02;
const CRYPTO_ERASE: u8 = 0x03;
const EXIT_FAILURE_MODE: u8 = 0x1f;

/// GET LBA STATUS provisioning status.
const MAPPED: u8 = 0;
const DEALLOCATED: u8 = 1;

/// Sense key, additional sense code and qualifier.
type Code = (u8, u8, u8);
const MISCOMPARE: Code = (0x0e, 0x1d, 0x00);
const LBA_OUT_OF_RANGE: Code = (0x05, 0x21, 0x00);
const INVALID_FIELD_IN_CDB: Code = (0x05, 0x24, 0x00);
const PARAMETER_LIST_LENGTH_ERROR: Code = (0x05, 0x1a, 0x00);
const INVALID_OPCODE: Code = (0x05, 0x20, 0x00);
const INVALID_FIELD_IN_IU: Code = (0x05, 0x0e, 0x03);
const TOO_MANY_TARGET_DESCRIPTORS: Code = (0x05, 0x26, 0x06);
const UNSUPPORTED_TARGET_DESCRIPTOR: Code = (0x05, 0x26, 0x07);
const TOO_MANY_SEGMENT_DESCRIPTORS: Code = (0x05, 0x26, 0x08);
const UNSUPPORTED_SEGMENT_DESCRIPTOR: Code = (0x05, 0x26, 0x09);
const INLINE_DATA_LENGTH_EXCEEDED: Code = (0x05, 0x26, 0x0b);
const SANITIZE_IN_PROGRESS: Code = (0x02, 0x04, 0x1b);
const SANITIZE_FAILED: Code = (0x03, 0x31, 0x03);
const UNREACHABLE_COPY_TARGET: Code = (0x0a, 0x08, 0x04);
const COPY_TARGET_NOT_REACHABLE: Code = (0x0a, 0x0d, 0x02);
const COPY_ABORTED: u8 = 0x0a;

#[track_caller]
fn check(o: &Outcome, c: Code) {
    assert_check(o, c.0, c.1, c.2);
}

// ------------------------------------------------------------------------------------------------
// Logical units
// ------------------------------------------------------------------------------------------------

/// A RAM LUN: thin (UNMAP deallocates 64 KiB chunks below 64 GiB, deallocated blocks read zeros),
/// commands run on the submitting thread.
fn ram(blocks: u64) -> Rig {
    Rig::new(Backend::Ram, blocks, 512)
}

/// A RAM LUN whose SANITIZE OVERWRITE is not rate limited.
fn ram_fast_sanitize(blocks: u64) -> Rig {
    let mut cfg = config();
    cfg.sanitize_rate = 0;
    Rig::with_config(Backend::Ram, blocks, 512, cfg)
}

/// A fully provisioned FILEIO LUN (commands run on device workers).
fn thick(blocks: u64) -> Rig {
    Rig::new(Backend::File, blocks, 512)
}

/// The backing file of a FILEIO rig.
fn backing_file(r: &Rig) -> &Path {
    r.file.as_ref().expect("FILEIO rig has a file").path()
}

/// A thin FILEIO LUN on a sparse file in its own directory under `std::env::temp_dir()`.
struct ThinFile {
    rig: Rig,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn thin_file(blocks: u64, cfg: DeviceConfig) -> ThinFile {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("thin.img");
    let opts = FileOptions { size: Some(blocks * 512), block_size: 512, thin: true, ..FileOptions::default() };
    let store = FileStore::open(&path, opts).expect("thin file store");
    let target = target();
    let dev = device(store, cfg);
    target.add_lun(Lun(0), dev.clone(), false).expect("map LUN 0");
    let rig = Rig { target, dev, bs: 512, blocks, backend: Backend::File, file: None, loopdev: None };
    ThinFile { rig, path, _dir: dir }
}

/// A rig over a store built by the caller (LUN 0 of a new target).
fn custom_rig<S: BlockStore>(store: S, cfg: DeviceConfig) -> Rig {
    let g = store.geometry();
    let target = target();
    let dev = device(store, cfg);
    target.add_lun(Lun(0), dev.clone(), false).expect("map LUN 0");
    Rig { target, dev, bs: g.block_size, blocks: g.blocks, backend: Backend::Ram, file: None, loopdev: None }
}

/// A RAM store whose writes fail on demand (to drive SANITIZE into failure mode).
struct FlakyStore {
    inner: RamStore,
    fail: Arc<AtomicBool>,
}

impl FlakyStore {
    fn check(&self) -> io::Result<()> {
        if self.fail.load(SeqCst) { Err(io::Error::other("injected write failure")) } else { Ok(()) }
    }
}

impl BlockStore for FlakyStore {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }
    fn caps(&self) -> StoreCaps {
        self.inner.caps()
    }
    fn product(&self) -> &str {
        "FLAKY"
    }
    fn read_at(&self, off: u64, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<()> {
        self.inner.read_at(off, bufs)
    }
    fn write_at(&self, off: u64, bufs: &[io::IoSlice<'_>], fua: bool) -> io::Result<()> {
        self.check()?;
        self.inner.write_at(off, bufs, fua)
    }
    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }
    fn unmap(&self, off: u64, len: u64) -> io::Result<()> {
        self.check()?;
        self.inner.unmap(off, len)
    }
    fn write_zeroes(&self, off: u64, len: u64, fua: bool) -> io::Result<()> {
        self.check()?;
        self.inner.write_zeroes(off, len, fua)
    }
    fn mapped(&self, off: u64, len: u64) -> io::Result<(bool, u64)> {
        self.inner.mapped(off, len)
    }
}

// ------------------------------------------------------------------------------------------------
// Data helpers
// ------------------------------------------------------------------------------------------------

fn fill(byte: u8, blocks: usize) -> Vec<u8> {
    vec![byte; blocks * BS]
}

fn zeros(blocks: usize) -> Vec<u8> {
    fill(0, blocks)
}

/// Block `k` of `data`.
fn blk(data: &[u8], k: usize) -> &[u8] {
    &data[k * BS..(k + 1) * BS]
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// Asserts every block of `data` is `block`.
#[track_caller]
fn assert_all_blocks(data: &[u8], block: &[u8], what: &str) {
    for (k, b) in data.chunks(block.len()).enumerate() {
        assert!(b == block, "{what}: block {k} differs");
    }
}

/// Reads `blocks` blocks in pieces small enough for any buffer pool.
fn read_big(i: &LocalInitiator, lba: u64, blocks: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(blocks as usize * BS);
    let mut at = 0;
    while at < blocks {
        let n = (blocks - at).min(256);
        out.extend(read(i, 0, lba + at, BS, n as u32));
        at += n;
    }
    out
}

/// Writes in pieces small enough for any buffer pool.
fn write_big(i: &LocalInitiator, lba: u64, data: &[u8]) {
    for (k, piece) in data.chunks(256 * BS).enumerate() {
        write(i, 0, lba + 256 * k as u64, BS, piece);
    }
}

fn file_bytes(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    File::open(path).expect("open backing file").read_exact_at(&mut b, off).expect("read backing file");
    b
}

/// Bytes of storage the file system allocated to the file (`st_blocks`).
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat backing file").blocks() * 512
}

fn sync_cache(i: &LocalInitiator) {
    assert_good(&i.execute(0, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut []));
}

// ------------------------------------------------------------------------------------------------
// VPD pages
// ------------------------------------------------------------------------------------------------

fn vpd(i: &LocalInitiator, lun: u16, page: u8) -> Vec<u8> {
    let d = data_in_ok(i, lun, &inquiry_cdb(true, page, 1024), 1024);
    assert_eq!(d[1], page);
    assert_eq!(d.len(), 4 + usize::from(be16(&d, 2)), "page {page:02x} length");
    d
}

/// The Block Limits VPD page (B0h) fields the commands here depend on.
#[derive(Debug)]
struct Limits {
    wsnz: bool,
    max_caw: u32,
    max_transfer: u32,
    max_unmap_lbas: u32,
    max_unmap_descriptors: u32,
    max_write_same: u64,
    max_atomic: u32,
    atomic_alignment: u32,
    atomic_granularity: u32,
}

fn limits(i: &LocalInitiator) -> Limits {
    let b0 = vpd(i, 0, 0xb0);
    assert_eq!(b0.len(), 64, "Block Limits page length 3Ch");
    Limits {
        wsnz: b0[4] & 1 != 0,
        max_caw: u32::from(b0[5]),
        max_transfer: be32(&b0, 8),
        max_unmap_lbas: be32(&b0, 20),
        max_unmap_descriptors: be32(&b0, 24),
        max_write_same: be64(&b0, 36),
        max_atomic: be32(&b0, 44),
        atomic_alignment: be32(&b0, 48),
        atomic_granularity: be32(&b0, 52),
    }
}

/// The NAA designator of a LUN, from its Device Identification VPD page.
fn naa_of(i: &LocalInitiator, lun: u16) -> u64 {
    let p = vpd(i, lun, 0x83);
    let mut off = 4;
    while off + 4 <= p.len() {
        let len = usize::from(p[off + 3]);
        let (code_set, assoc, kind) = (p[off] & 0x0f, (p[off + 1] >> 4) & 3, p[off + 1] & 0x0f);
        if code_set == 1 && assoc == 0 && kind == 3 && len == 8 {
            return be64(&p, off + 4);
        }
        off += 4 + len;
    }
    panic!("no NAA designator of the logical unit in VPD 83h: {p:02x?}");
}

// ------------------------------------------------------------------------------------------------
// COMPARE AND WRITE
// ------------------------------------------------------------------------------------------------

fn caw_cdb(lba: u64, nlb: u8, flags: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = COMPARE_AND_WRITE;
    c[1] = flags;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = nlb;
    c
}

fn caw_data(compare: &[u8], write: &[u8]) -> Vec<u8> {
    assert_eq!(compare.len(), write.len());
    [compare, write].concat()
}

fn caw(i: &LocalInitiator, lba: u64, compare: &[u8], write: &[u8]) -> Outcome {
    let nlb = u8::try_from(compare.len() / BS).expect("NUMBER OF LOGICAL BLOCKS is one byte");
    i.execute(0, &caw_cdb(lba, nlb, 0), &caw_data(compare, write), &mut [])
}

/// Asserts MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION with INFORMATION = `offset`.
#[track_caller]
fn assert_miscompare_at(o: &Outcome, offset: usize) {
    check(o, MISCOMPARE);
    assert_eq!(
        information(o.sense()),
        Some(offset as u64),
        "INFORMATION must be the offset of the first differing byte; sense {:02x?}",
        o.sense()
    );
}

fn caw_semantics(r: &Rig) {
    let i = r.login();
    let lim = limits(&i);
    assert!(lim.max_caw >= 1, "MAXIMUM COMPARE AND WRITE LENGTH {lim:?}");

    // One block: a match writes the second half of the Data-Out.
    let (old, new) = (pattern(1, BS), pattern(2, BS));
    write(&i, 0, 10, BS, &old);
    assert_good(&caw(&i, 10, &old, &new));
    assert_eq!(read(&i, 0, 10, BS, 1), new);
    // A stale compare: MISCOMPARE at the first differing byte, nothing written.
    let o = caw(&i, 10, &old, &pattern(3, BS));
    assert_miscompare_at(&o, first_difference(&old, &new).expect("patterns differ"));
    assert_eq!(read(&i, 0, 10, BS, 1), new, "a miscompare writes nothing");
    let mut cmp = new.clone();
    cmp[300] ^= 0x40;
    cmp[511] ^= 0x01;
    assert_miscompare_at(&caw(&i, 10, &cmp, &old), 300);
    assert_eq!(read(&i, 0, 10, BS, 1), new);

    // As many blocks as the device allows, between markers.
    let n = lim.max_caw as usize;
    let lba = 100;
    let (big_old, big_new) = (pattern(4, n * BS), pattern(5, n * BS));
    write(&i, 0, lba - 1, BS, &fill(0x77, 1));
    write(&i, 0, lba + n as u64, BS, &fill(0x77, 1));
    write(&i, 0, lba, BS, &big_old);
    assert_good(&caw(&i, lba, &big_old, &big_new));
    let d = read(&i, 0, lba - 1, BS, n as u32 + 2);
    assert_eq!(blk(&d, 0), &fill(0x77, 1)[..]);
    assert!(d[BS..(n + 1) * BS] == big_new[..], "{n} blocks compared and written");
    assert_eq!(blk(&d, n + 1), &fill(0x77, 1)[..]);
    // The first difference deep in the range (a later one too): its offset in the Data-Out.
    let k = n.saturating_sub(2);
    let mut cmp = big_new.clone();
    cmp[k * BS + 77] ^= 0x01;
    cmp[(n - 1) * BS + 500] ^= 0x80;
    assert_miscompare_at(&caw(&i, lba, &cmp, &big_old), k * BS + 77);
    assert!(read(&i, 0, lba, BS, n as u32) == big_new, "a miscompare writes nothing");
    // One block more than MAXIMUM COMPARE AND WRITE LENGTH: only expressible below 255 (this
    // target reports 255, the most the one-byte NUMBER OF LOGICAL BLOCKS field can hold).
    if lim.max_caw < 255 {
        let m = n + 1;
        let o = i.execute(0, &caw_cdb(lba, m as u8, 0), &zeros(2 * m), &mut []);
        check(&o, INVALID_FIELD_IN_CDB);
        assert!(read(&i, 0, lba, BS, n as u32) == big_new);
    }

    // Beyond the end of the LUN: LBA OUT OF RANGE, nothing written.
    let last = r.blocks - 1;
    write(&i, 0, last, BS, &old);
    let two = caw_data(&[old.clone(), old.clone()].concat(), &[new.clone(), new.clone()].concat());
    check(&i.execute(0, &caw_cdb(last, 2, 0), &two, &mut []), LBA_OUT_OF_RANGE);
    check(&caw(&i, r.blocks, &old, &new), LBA_OUT_OF_RANGE);
    check(&caw(&i, u64::MAX, &old, &new), LBA_OUT_OF_RANGE);
    assert_eq!(read(&i, 0, last, BS, 1), old);

    // NUMBER OF LOGICAL BLOCKS 0: nothing compared or written, and no error.
    assert_good(&i.execute(0, &caw_cdb(10, 0, 0), &[], &mut []));
    assert_eq!(read(&i, 0, 10, BS, 1), new);

    // The Data-Out must be exactly the compare blocks and the write blocks (2 × NLB blocks).
    let (two_old, two_new) = ([old.clone(), old.clone()].concat(), [new.clone(), new.clone()].concat());
    write(&i, 0, 20, BS, &two_old);
    let full = caw_data(&two_old, &two_new);
    for blocks in [1, 2, 3] {
        check(&i.execute(0, &caw_cdb(20, 2, 0), &full[..blocks * BS], &mut []), INVALID_FIELD_IN_CDB);
    }
    let more = [full.clone(), new.clone()].concat();
    check(&i.execute(0, &caw_cdb(20, 2, 0), &more, &mut []), INVALID_FIELD_IN_CDB);
    assert_eq!(read(&i, 0, 20, BS, 2), two_old, "nothing written");
    assert_good(&i.execute(0, &caw_cdb(20, 2, 0), &full, &mut []));
    assert_eq!(read(&i, 0, 20, BS, 2), two_new);

    // FUA: still a compare and write.
    assert_good(&i.execute(0, &caw_cdb(10, 1, 0x08), &caw_data(&new, &old), &mut []));
    assert_eq!(read(&i, 0, 10, BS, 1), old);

    // Descriptor-format sense (D_SENSE=1) carries the same INFORMATION.
    let p = control_page(&i, 0);
    assert_good(&select_control(&i, 0, p[2] | 0x04, p[4], p[5]));
    let o = caw(&i, 10, &new, &old);
    assert_eq!(o.sense().first(), Some(&0x72), "descriptor format");
    assert_miscompare_at(&o, first_difference(&new, &old).expect("patterns differ"));
    assert_eq!(read(&i, 0, 10, BS, 1), old);
}

#[test]
fn compare_and_write_ram() {
    caw_semantics(&ram(4096));
}

#[test]
fn compare_and_write_fileio() {
    caw_semantics(&thick(4096));
}

#[test]
fn compare_and_write_thin_fileio() {
    caw_semantics(&thin_file(4096, config()).rig);
}

/// Where the counter sits in the lock word: every byte before it is constant, and counter values
/// stay below 256, so two different words first differ at `WORD_AT + 7`.
const WORD_AT: usize = 200;

fn lock_word(v: u64) -> Vec<u8> {
    let mut b = fill(0x5a, 1);
    b[WORD_AT..WORD_AT + 8].copy_from_slice(&v.to_be_bytes());
    b
}

/// What session `t` writes to its neighbour blocks in round `k`.
fn neighbour(t: usize, k: usize, above: bool) -> Vec<u8> {
    pattern((t * 1000 + k * 2 + usize::from(above)) as u32 + 7, BS)
}

/// Sessions take a lock word at one block with COMPARE AND WRITE (read it, then replace `v` by
/// `v + 1`) while plain WRITEs hit the blocks around it. The final value must count the
/// successful COMPARE AND WRITEs, the values installed must be exactly 1..=n (a serial order:
/// no lost update, no duplicate), every miscompare must point at the counter, and the
/// neighbours must hold each session's last write.
fn lock_word_contention(r: &Rig, threads: usize, attempts: usize) {
    const LOCK: u64 = 1000;
    assert!(threads * attempts < 256, "counter values must stay below 256");
    let setup = r.login();
    write(&setup, 0, LOCK, BS, &lock_word(0));
    let sessions: Vec<LocalInitiator> = (0..threads).map(|_| r.login()).collect();
    let start = Arc::new(Barrier::new(threads));
    let results: Vec<(Vec<u64>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(t, i)| {
                let start = start.clone();
                s.spawn(move || {
                    start.wait();
                    let (mut installed, mut misses) = (Vec::new(), 0);
                    for k in 0..attempts {
                        let cur = read(&i, 0, LOCK, BS, 1);
                        let v = be64(&cur, WORD_AT);
                        assert_eq!(cur, lock_word(v), "session {t}: torn lock word");
                        let o = caw(&i, LOCK, &cur, &lock_word(v + 1));
                        if o.is_good() {
                            installed.push(v + 1);
                        } else {
                            assert_miscompare_at(&o, WORD_AT + 7);
                            misses += 1;
                        }
                        write(&i, 0, LOCK - 1 - t as u64, BS, &neighbour(t, k, false));
                        write(&i, 0, LOCK + 1 + t as u64, BS, &neighbour(t, k, true));
                    }
                    (installed, misses)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("session thread")).collect()
    });
    let wins: usize = results.iter().map(|r| r.0.len()).sum();
    let misses: usize = results.iter().map(|r| r.1).sum();
    assert_eq!(wins + misses, threads * attempts);
    assert!(wins >= attempts, "at least one session's worth of updates succeeds");
    assert_eq!(read(&setup, 0, LOCK, BS, 1), lock_word(wins as u64), "the lock word counts the successes");
    let mut all: Vec<u64> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=wins as u64).collect::<Vec<_>>(), "each success installed the next value once");
    for (t, r) in results.iter().enumerate() {
        assert!(r.0.windows(2).all(|w| w[0] < w[1]), "session {t} saw its own updates in order");
    }
    for t in 0..threads {
        assert_eq!(read(&setup, 0, LOCK - 1 - t as u64, BS, 1), neighbour(t, attempts - 1, false), "below, {t}");
        assert_eq!(read(&setup, 0, LOCK + 1 + t as u64, BS, 1), neighbour(t, attempts - 1, true), "above, {t}");
    }
    eprintln!("{threads} sessions × {attempts} attempts: {wins} COMPARE AND WRITEs matched, {misses} miscompared");
}

#[test]
fn compare_and_write_lock_word_under_contention_ram() {
    lock_word_contention(&ram(4096), 6, 40);
}

#[test]
fn compare_and_write_lock_word_under_contention_fileio() {
    // More device workers than cores: COMPARE AND WRITEs really overlap on the workers.
    let mut cfg = config();
    cfg.threads = 4;
    lock_word_contention(&Rig::with_config(Backend::File, 4096, 512, cfg), 8, 30);
}

/// Two COMPARE AND WRITEs that overlap: A on blocks 20..24, B on 22..26, both comparing with
/// the original data.
struct Overlap {
    old: Vec<u8>,
    a_new: Vec<u8>,
    b_new: Vec<u8>,
}

const OVL: u64 = 20;

impl Overlap {
    fn new(round: u32) -> Self {
        Self {
            old: pattern(round * 3 + 100, 6 * BS),
            a_new: pattern(round * 3 + 101, 4 * BS),
            b_new: pattern(round * 3 + 102, 4 * BS),
        }
    }
    fn a(&self) -> ([u8; 16], Vec<u8>) {
        (caw_cdb(OVL, 4, 0), caw_data(&self.old[..4 * BS], &self.a_new))
    }
    fn b(&self) -> ([u8; 16], Vec<u8>) {
        (caw_cdb(OVL + 2, 4, 0), caw_data(&self.old[2 * BS..], &self.b_new))
    }

    /// Checks that exactly one matched, the other miscompared where the winner's data starts to
    /// differ from the original, and the medium is what that serial order leaves.
    fn judge(&self, a: (bool, &[u8]), b: (bool, &[u8]), medium: &[u8]) {
        let (old, a_new, b_new) = (&self.old, &self.a_new, &self.b_new);
        let (loser, offset, want) = match (a.0, b.0) {
            // A first: B's first block (22) is A's third.
            (true, false) => {
                let off = first_difference(blk(old, 2), blk(a_new, 2)).expect("differ");
                (b.1, off, [&a_new[..], &old[4 * BS..]].concat())
            }
            // B first: A's third block (22) is B's first.
            (false, true) => {
                let off = 2 * BS + first_difference(blk(old, 2), blk(b_new, 0)).expect("differ");
                (a.1, off, [&old[..2 * BS], &b_new[..]].concat())
            }
            _ => panic!("exactly one of two overlapping COMPARE AND WRITEs matches: {a:02x?} {b:02x?}"),
        };
        assert_eq!(sense_triple(loser), Some(MISCOMPARE), "{loser:02x?}");
        assert_eq!(information(loser), Some(offset as u64), "{loser:02x?}");
        assert!(medium == want, "the medium is the result of one serial order");
    }
}

#[test]
fn overlapping_compare_and_write_from_two_sessions_ram() {
    let r = ram(4096);
    let (setup, ia, ib) = (r.login(), r.login(), r.login());
    for round in 0..25 {
        let ov = Overlap::new(round);
        write(&setup, 0, OVL, BS, &ov.old);
        let go = Barrier::new(2);
        let (oa, ob) = std::thread::scope(|s| {
            let ta = s.spawn(|| {
                let (c, d) = ov.a();
                go.wait();
                ia.execute(0, &c, &d, &mut [])
            });
            let tb = s.spawn(|| {
                let (c, d) = ov.b();
                go.wait();
                ib.execute(0, &c, &d, &mut [])
            });
            (ta.join().expect("A"), tb.join().expect("B"))
        });
        ov.judge((oa.is_good(), oa.sense()), (ob.is_good(), ob.sense()), &read(&setup, 0, OVL, BS, 6));
    }
}

#[test]
fn overlapping_compare_and_write_from_two_sessions_fileio() {
    let r = thick(4096);
    let (setup, ia, ib) = (r.login(), r.login(), r.login());
    let outcome = |c: CmdBox| (c.status() == ScsiStatus::GOOD, c.sense().to_vec());
    for round in 0..25 {
        let ov = Overlap::new(round);
        write(&setup, 0, OVL, BS, &ov.old);
        // Both queue before either completes: the device workers run them at once.
        let ((ca, da), (cb, db)) = (ov.a(), ov.b());
        ia.start(0, &ca, &da, 0, 1).expect("queue A");
        ib.start(0, &cb, &db, 0, 2).expect("queue B");
        let (a, b) = (outcome(ia.next_completion()), outcome(ib.next_completion()));
        ov.judge((a.0, &a.1), (b.0, &b.1), &read(&setup, 0, OVL, BS, 6));
    }
}

// ------------------------------------------------------------------------------------------------
// Provisioning pages and READ CAPACITY(16)
// ------------------------------------------------------------------------------------------------

#[test]
fn provisioning_pages_and_read_capacity_agree_on_thin_and_thick_luns() {
    let thin = ram(4096);
    let full = thick(4096);
    let (ti, ki) = (thin.login(), full.login());

    // Thin: LBPME and LBPRZ; UNMAP, WRITE SAME(16) and (10) with UNMAP; zeros after unmapping.
    let rc = data_in_ok(&ti, 0, &read_capacity16(32), 32);
    assert_eq!(rc[14] & 0xc0, 0xc0, "LBPME and LBPRZ on a thin LU");
    let b2 = vpd(&ti, 0, 0xb2);
    assert_eq!(b2.len(), 8);
    assert_eq!(b2[5] & 0xe0, 0xe0, "LBPU, LBPWS, LBPWS10");
    let lbprz = (b2[5] >> 2) & 7;
    assert_eq!(lbprz & 1, 1, "deallocated blocks read zeros");
    assert_eq!(u8::from(rc[14] & 0x40 != 0), lbprz & 1, "READ CAPACITY(16) LBPRZ is bit 0 of the VPD field");
    assert_eq!(b2[5] & 0x02, 0, "ANC_SUP: no anchored LBAs");
    assert_eq!(b2[6] & 0x07, 0x02, "provisioning type: thin");
    let lt = limits(&ti);
    assert!(lt.max_unmap_lbas > 0 && lt.max_unmap_descriptors > 0, "{lt:?}");
    let b1 = vpd(&ti, 0, 0xb1);
    assert_eq!(b1[7] >> 6, 0x01, "WABEREQ 01b: block-erased blocks read GOOD");
    assert_eq!((b1[7] >> 4) & 3, 0x01, "WACEREQ 01b: cryptographic erase supported");

    // Fully provisioned: none of it, and the commands agree.
    let rc = data_in_ok(&ki, 0, &read_capacity16(32), 32);
    assert_eq!(rc[14] & 0xc0, 0, "no LBPME/LBPRZ on a fully provisioned LU");
    let b2 = vpd(&ki, 0, 0xb2);
    assert_eq!(b2[5] & 0xe2, 0, "no LBPU, LBPWS, LBPWS10, ANC_SUP");
    assert_eq!(b2[6] & 0x07, 0, "provisioning type: full");
    let lk = limits(&ki);
    assert_eq!((lk.max_unmap_lbas, lk.max_unmap_descriptors), (0, 0), "no UNMAP limits without LBPU: {lk:?}");
    assert_eq!((vpd(&ki, 0, 0xb1)[7] >> 4) & 3, 0, "no cryptographic erase");
    // Same capacity and block size either way.
    assert_eq!(be64(&rc, 0), 4095);
    assert_eq!(be32(&rc, 8), 512);

    let data = pattern(9, 8 * BS);
    write(&ki, 0, 0, BS, &data);
    let p = unmap_params(&[(0, 8)]);
    check(&ki.execute(0, &unmap_cdb(p.len() as u16), &p, &mut []), INVALID_OPCODE);
    let o = ki.execute(0, &cdb16(WRITE_SAME16, WS_UNMAP, 0, 8), &zeros(1), &mut []);
    assert_invalid_cdb(&o, 1, Some(3));
    let o = ki.execute(0, &cdb10(WRITE_SAME10, WS_UNMAP, 0, 8), &zeros(1), &mut []);
    assert_invalid_cdb(&o, 1, Some(3));
    assert_eq!(read(&ki, 0, 0, BS, 8), data, "nothing deallocated on a fully provisioned LU");
    // REPORT SUPPORTED OPERATION CODES agrees: UNMAP only on the thin LU.
    assert_eq!(data_in_ok(&ki, 0, &rsoc(false, 1, UNMAP, 0, 16), 16)[1] & 7, 0x01, "not supported");
    assert_eq!(data_in_ok(&ti, 0, &rsoc(false, 1, UNMAP, 0, 16), 16)[1] & 7, 0x03, "supported");
}

// ------------------------------------------------------------------------------------------------
// WRITE SAME
// ------------------------------------------------------------------------------------------------

fn write_same_semantics(r: &Rig) {
    let i = r.login();
    let lim = limits(&i);
    let n = r.blocks;
    let marker = fill(0xee, 1);
    let b1 = pattern(10, BS);

    // WRITE SAME(10) between markers.
    write(&i, 0, 99, BS, &marker);
    write(&i, 0, 150, BS, &marker);
    assert_good(&i.execute(0, &cdb10(WRITE_SAME10, 0, 100, 50), &b1, &mut []));
    let d = read(&i, 0, 99, BS, 52);
    assert_eq!(blk(&d, 0), &marker[..]);
    assert_all_blocks(&d[BS..51 * BS], &b1, "WRITE SAME(10)");
    assert_eq!(blk(&d, 51), &marker[..]);

    // WRITE SAME(16).
    let b2 = pattern(11, BS);
    write(&i, 0, 370, BS, &marker);
    assert_good(&i.execute(0, &cdb16(WRITE_SAME16, 0, 300, 70), &b2, &mut []));
    let d = read(&i, 0, 300, BS, 71);
    assert_all_blocks(&d[..70 * BS], &b2, "WRITE SAME(16)");
    assert_eq!(blk(&d, 70), &marker[..]);

    // A zero block, then NDOB (no Data-Out: zeros).
    assert_good(&i.execute(0, &cdb16(WRITE_SAME16, 0, 300, 10), &zeros(1), &mut []));
    assert_good(&i.execute(0, &cdb16(WRITE_SAME16, WS_NDOB, 310, 10), &[], &mut []));
    let d = read(&i, 0, 300, BS, 21);
    assert_eq!(d[..20 * BS], zeros(20)[..], "zero block and NDOB");
    assert_eq!(blk(&d, 20), &b2[..]);
    // WRITE SAME(10) has no NDOB bit.
    assert_invalid_cdb(&i.execute(0, &cdb10(WRITE_SAME10, 0x01, 100, 1), &b2, &mut []), 1, Some(0));

    // ANCHOR without ANC_SUP: INVALID FIELD IN CDB, nothing written.
    assert_eq!(vpd(&i, 0, 0xb2)[5] & 0x02, 0, "ANC_SUP");
    for flags in [WS_ANCHOR, WS_ANCHOR | WS_UNMAP] {
        assert_invalid_cdb(&i.execute(0, &cdb10(WRITE_SAME10, flags, 100, 10), &zeros(1), &mut []), 1, Some(4));
        assert_invalid_cdb(&i.execute(0, &cdb16(WRITE_SAME16, flags, 100, 10), &zeros(1), &mut []), 1, Some(4));
    }
    assert_all_blocks(&read(&i, 0, 100, BS, 50), &b1, "after refused ANCHOR");

    // Beyond the end of the LUN, also with NUMBER OF LOGICAL BLOCKS 0.
    write(&i, 0, n - 10, BS, &fill(0x33, 10));
    check(&i.execute(0, &cdb10(WRITE_SAME10, 0, (n - 10) as u32, 11), &b1, &mut []), LBA_OUT_OF_RANGE);
    check(&i.execute(0, &cdb16(WRITE_SAME16, 0, n - 10, 11), &b1, &mut []), LBA_OUT_OF_RANGE);
    check(&i.execute(0, &cdb16(WRITE_SAME16, 0, n, 1), &b1, &mut []), LBA_OUT_OF_RANGE);
    check(&i.execute(0, &cdb16(WRITE_SAME16, 0, n, 0), &b1, &mut []), LBA_OUT_OF_RANGE);
    check(&i.execute(0, &cdb16(WRITE_SAME16, 0, u64::MAX, 2), &b1, &mut []), LBA_OUT_OF_RANGE);
    assert_eq!(read(&i, 0, n - 10, BS, 10), fill(0x33, 10), "nothing written");

    // NUMBER OF LOGICAL BLOCKS 0, as WSNZ says.
    let b3 = pattern(12, BS);
    let o16 = i.execute(0, &cdb16(WRITE_SAME16, 0, n - 6, 0), &b3, &mut []);
    let o10 = i.execute(0, &cdb10(WRITE_SAME10, 0, (n - 3) as u32, 0), &b1, &mut []);
    if lim.wsnz {
        check(&o16, INVALID_FIELD_IN_CDB);
        check(&o10, INVALID_FIELD_IN_CDB);
        assert_eq!(read(&i, 0, n - 10, BS, 10), fill(0x33, 10));
    } else {
        // To the last LBA.
        assert_good(&o16);
        assert_good(&o10);
        let d = read(&i, 0, n - 7, BS, 7);
        assert_eq!(blk(&d, 0), &fill(0x33, 1)[..]);
        assert_all_blocks(&d[BS..4 * BS], &b3, "WRITE SAME(16) to the end");
        assert_all_blocks(&d[4 * BS..], &b1, "WRITE SAME(10) to the end");
    }
    // A Data-Out other than one block.
    check(&i.execute(0, &cdb16(WRITE_SAME16, 0, 100, 1), &zeros(2), &mut []), INVALID_FIELD_IN_IU);
    assert_all_blocks(&read(&i, 0, 100, BS, 50), &b1, "after a refused Data-Out");
}

#[test]
fn write_same_ram() {
    write_same_semantics(&ram(4096));
}

#[test]
fn write_same_fileio() {
    write_same_semantics(&thick(4096));
}

#[test]
fn write_same_thin_fileio() {
    write_same_semantics(&thin_file(4096, config()).rig);
}

#[test]
fn write_same_with_unmap_deallocates_whatever_the_block() {
    // 32 MiB of RAM: 64 KiB allocation chunks of 128 blocks.
    let r = ram(65536);
    let n = r.blocks;
    let i = r.login();
    let data = pattern(20, 1024 * BS);
    write(&i, 0, 0, BS, &data);
    assert_eq!(lba_status(&i, 0), [(0, 1024, MAPPED), (1024, n - 1024, DEALLOCATED)]);

    // WRITE SAME(16) and (10) with UNMAP and a zero block, NDOB with UNMAP.
    assert_good(&i.execute(0, &cdb16(WRITE_SAME16, WS_UNMAP, 128, 384), &zeros(1), &mut []));
    assert_good(&i.execute(0, &cdb10(WRITE_SAME10, WS_UNMAP, 640, 128), &zeros(1), &mut []));
    assert_good(&i.execute(0, &cdb16(WRITE_SAME16, WS_UNMAP | WS_NDOB, 896, 128), &[], &mut []));
    let d = read(&i, 0, 0, BS, 1024);
    for (lo, hi, unmapped) in
        [(0, 128, false), (128, 512, true), (512, 640, false), (640, 768, true), (768, 896, false), (896, 1024, true)]
    {
        let want = if unmapped { zeros(hi - lo) } else { data[lo * BS..hi * BS].to_vec() };
        assert!(d[lo * BS..hi * BS] == want[..], "blocks {lo}..{hi}");
    }
    assert_eq!(
        lba_status(&i, 0),
        [
            (0, 128, MAPPED),
            (128, 384, DEALLOCATED),
            (512, 128, MAPPED),
            (640, 128, DEALLOCATED),
            (768, 128, MAPPED),
            (896, n - 896, DEALLOCATED)
        ]
    );

    // UNMAP with a block that is not all zeros deallocates all the same (SBC-3; SCST, LIO and
    // libiscsi's WriteSame10.UnmapUntilEnd expect it): reads return zeros. Without UNMAP the
    // block is written.
    write(&i, 0, 128, BS, &pattern(22, 256 * BS));
    let b = pattern(21, BS);
    assert_good(&i.execute(0, &cdb16(WRITE_SAME16, WS_UNMAP, 128, 256), &b, &mut []));
    assert_good(&i.execute(0, &cdb10(WRITE_SAME10, WS_UNMAP, 640, 8), &b, &mut []));
    assert!(read(&i, 0, 128, BS, 256) == zeros(256), "WRITE SAME(16) UNMAP with data");
    assert!(read(&i, 0, 640, BS, 8) == zeros(8), "WRITE SAME(10) UNMAP with data");
    assert_eq!(lba_status(&i, 128)[0], (128, 384, DEALLOCATED), "deallocated, not written");
    assert_good(&i.execute(0, &cdb16(WRITE_SAME16, 0, 128, 256), &b, &mut []));
    assert_all_blocks(&read(&i, 0, 128, BS, 256), &b, "WRITE SAME(16) without UNMAP");
}

#[test]
fn write_same_covers_large_ranges_on_ram() {
    let r = ram(96 << 11); // 96 MiB
    let n = r.blocks;
    let i = r.login();
    let lim = limits(&i);
    let nb: u32 = 80 << 11; // 80 MiB, more than MAXIMUM TRANSFER LENGTH
    assert!(nb > lim.max_transfer, "{lim:?}");
    let b = pattern(30, BS);
    if lim.max_write_same != 0 {
        let o = i.execute(0, &cdb16(WRITE_SAME16, 0, 0, (lim.max_write_same + 1) as u32), &b, &mut []);
        check(&o, INVALID_FIELD_IN_CDB);
        return;
    }
    // MAXIMUM WRITE SAME LENGTH 0: no limit.
    assert_good(&i.execute(0, &cdb16(WRITE_SAME16, 0, 7, nb), &b, &mut []));
    let end = 7 + u64::from(nb);
    assert_eq!(read(&i, 0, 6, BS, 2), [zeros(1), b.clone()].concat(), "first block");
    assert_eq!(read(&i, 0, 7 + u64::from(nb / 2), BS, 1), b);
    assert_eq!(read(&i, 0, end - 1, BS, 2), [b.clone(), zeros(1)].concat(), "last block");
    // NUMBER OF LOGICAL BLOCKS 0 from the middle: to the end.
    let b2 = pattern(31, BS);
    assert_good(&i.execute(0, &cdb16(WRITE_SAME16, 0, 100_000, 0), &b2, &mut []));
    assert_eq!(read(&i, 0, 99_999, BS, 2), [b.clone(), b2.clone()].concat());
    assert_eq!(read(&i, 0, n - 1, BS, 1), b2);
    // And all of it deallocated with one WRITE SAME(16) with UNMAP.
    assert_good(&i.execute(0, &cdb16(WRITE_SAME16, WS_UNMAP, 0, 0), &zeros(1), &mut []));
    assert_eq!(read(&i, 0, 7, BS, 1), zeros(1));
    assert_eq!(read(&i, 0, n - 1, BS, 1), zeros(1));
    assert_eq!(lba_status(&i, 0), [(0, n, DEALLOCATED)]);
}

#[test]
fn write_same_covers_large_ranges_on_thin_fileio() {
    let t = thin_file(72 << 11, config()); // 72 MiB
    let n = t.rig.blocks;
    let i = t.rig.login();
    assert!(allocated(&t.path) < 1 << 20, "a new thin file is sparse");
    let b = pattern(32, BS);
    assert_good(&i.execute(0, &cdb16(WRITE_SAME16, 0, 0, 0), &b, &mut []));
    assert_eq!(read(&i, 0, 0, BS, 1), b);
    assert_eq!(read(&i, 0, n - 1, BS, 1), b);
    assert_eq!(file_bytes(&t.path, 0, BS), b, "first block in the file");
    assert_eq!(file_bytes(&t.path, (n - 1) * 512, BS), b, "last block in the file");
    sync_cache(&i);
    assert!(allocated(&t.path) >= (n - 2048) * 512, "written: {} bytes allocated", allocated(&t.path));
    assert_eq!(lba_status(&i, 0), [(0, n, MAPPED)]);

    assert_good(&i.execute(0, &cdb16(WRITE_SAME16, WS_UNMAP, 0, 0), &zeros(1), &mut []));
    sync_cache(&i);
    assert!(allocated(&t.path) < 1 << 20, "holes punched: {} bytes allocated", allocated(&t.path));
    assert_eq!(read(&i, 0, 0, BS, 1), zeros(1));
    assert_eq!(read(&i, 0, n - 1, BS, 1), zeros(1));
    assert_eq!(file_bytes(&t.path, (n - 1) * 512, BS), zeros(1));
    assert_eq!(lba_status(&i, 0), [(0, n, DEALLOCATED)]);
}

// ------------------------------------------------------------------------------------------------
// UNMAP
// ------------------------------------------------------------------------------------------------

fn unmap_cdb(plen: u16) -> [u8; 10] {
    cdb10(UNMAP, 0, 0, plen)
}

/// An UNMAP parameter list: header, then one 16-byte descriptor per `(lba, blocks)`.
fn unmap_params(descs: &[(u64, u32)]) -> Vec<u8> {
    let n = 16 * descs.len();
    let mut p = vec![0u8; 8];
    p[0..2].copy_from_slice(&((6 + n) as u16).to_be_bytes());
    p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
    for &(lba, count) in descs {
        p.extend_from_slice(&lba.to_be_bytes());
        p.extend_from_slice(&count.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
    }
    p
}

fn unmap(i: &LocalInitiator, descs: &[(u64, u32)]) -> Outcome {
    let p = unmap_params(descs);
    i.execute(0, &unmap_cdb(p.len() as u16), &p, &mut [])
}

#[test]
fn unmap_validates_its_parameter_list() {
    let r = ram(32768); // 16 MiB
    let n = r.blocks;
    let i = r.login();
    let data = pattern(40, 64 * BS);
    write(&i, 0, 100, BS, &data);
    let intact = |from: usize| {
        assert!(
            read(&i, 0, 100 + from as u64, BS, 64 - from as u32) == data[from * BS..],
            "data intact from block {}",
            100 + from
        )
    };

    // PARAMETER LIST LENGTH 0: nothing to do, not an error.
    assert_good(&i.execute(0, &unmap_cdb(0), &[], &mut []));
    intact(0);
    // Shorter than the 8-byte header.
    let p = unmap_params(&[(100, 8)]);
    for len in 1..8 {
        check(&i.execute(0, &unmap_cdb(len as u16), &p[..len], &mut []), PARAMETER_LIST_LENGTH_ERROR);
    }
    // A header without descriptors.
    assert_good(&i.execute(0, &unmap_cdb(8), &unmap_params(&[]), &mut []));
    intact(0);
    // An incomplete trailing descriptor is ignored (UNMAP BLOCK DESCRIPTOR DATA LENGTH 20).
    let mut p = unmap_params(&[(100, 8)]);
    p.extend_from_slice(&[0xff; 4]);
    let len = (p.len() - 2) as u16;
    p[0..2].copy_from_slice(&len.to_be_bytes());
    p[2..4].copy_from_slice(&20u16.to_be_bytes());
    assert_good(&i.execute(0, &unmap_cdb(p.len() as u16), &p, &mut []));
    assert_eq!(read(&i, 0, 100, BS, 8), zeros(8));
    intact(8);

    // A descriptor beyond the end fails the command before anything is deallocated.
    check(&unmap(&i, &[(110, 8), (n - 4, 5)]), LBA_OUT_OF_RANGE);
    check(&unmap(&i, &[(110, 8), (n, 1)]), LBA_OUT_OF_RANGE);
    check(&unmap(&i, &[(110, 8), (n + 1, 0)]), LBA_OUT_OF_RANGE);
    check(&unmap(&i, &[(110, 8), (u64::MAX, 2)]), LBA_OUT_OF_RANGE);
    intact(8);
    // Zero blocks at the capacity itself: nothing, and no error; zero-block descriptors are skipped.
    assert_good(&unmap(&i, &[(n, 0), (110, 0)]));
    intact(8);
    // ANCHOR without ANC_SUP.
    let p = unmap_params(&[(110, 8)]);
    let mut c = unmap_cdb(p.len() as u16);
    c[1] = 0x01;
    assert_invalid_cdb(&i.execute(0, &c, &p, &mut []), 1, Some(0));
    intact(8);
    // The parameter list data the initiator sends is what counts, not a longer CDB field.
    let p = unmap_params(&[(110, 8)]);
    assert_good(&i.execute(0, &unmap_cdb(p.len() as u16 + 16), &p, &mut []));
    assert_eq!(read(&i, 0, 110, BS, 8), zeros(8));
    intact(18);

    // The Block Limits: descriptors per command and blocks per command.
    let lim = limits(&i);
    let fits = (usize::from(u16::MAX) - 8) / 16; // what a 16-bit PARAMETER LIST LENGTH can carry
    let most = (lim.max_unmap_descriptors as usize).min(fits);
    if most < fits {
        let descs: Vec<_> = (0..=most as u64).map(|k| (2 * k, 1)).collect();
        let p = unmap_params(&descs);
        let o = i.execute(0, &unmap_cdb(p.len() as u16), &p, &mut []);
        check(&o, (0x05, 0x26, 0x00));
    }
    // The largest accepted list: every other block.
    let span = 2 * most as u64;
    let base = pattern(41, span as usize * BS);
    write(&i, 0, 0, BS, &base);
    let descs: Vec<_> = (0..most as u64).map(|k| (2 * k, 1)).collect();
    assert_good(&unmap(&i, &descs));
    let d = read(&i, 0, 0, BS, span as u32);
    for k in 0..span as usize {
        let want = if k % 2 == 0 { &zeros(1)[..] } else { blk(&base, k) };
        assert!(blk(&d, k) == want, "block {k} after {most} descriptors");
    }
    if lim.max_unmap_lbas == u32::MAX {
        // No limit: the whole LUN in one descriptor.
        write(&i, 0, n - 1, BS, &fill(1, 1));
        assert_good(&unmap(&i, &[(0, n as u32)]));
        assert_eq!(read(&i, 0, n - 1, BS, 1), zeros(1));
        assert_eq!(lba_status(&i, 0), [(0, n, DEALLOCATED)]);
    } else {
        let o = unmap(&i, &[(0, lim.max_unmap_lbas / 2 + 1), (0, lim.max_unmap_lbas / 2 + 1)]);
        check(&o, (0x05, 0x26, 0x00));
    }
}

#[test]
fn unmap_of_partial_chunks_zeroes_exactly_the_blocks_named() {
    // RAM deallocates 64 KiB (128-block) chunks; the partial ones are zeroed in place.
    let r = ram(65536);
    let n = r.blocks;
    let i = r.login();
    let data = pattern(50, 384 * BS);
    write(&i, 0, 0, BS, &data);
    assert_good(&unmap(&i, &[(100, 200), (383, 1), (5, 1)]));
    let d = read(&i, 0, 0, BS, 385);
    for k in 0..384 {
        let unmapped = (100..300).contains(&k) || k == 383 || k == 5;
        let want = if unmapped { &zeros(1)[..] } else { blk(&data, k) };
        assert!(blk(&d, k) == want, "block {k}");
    }
    assert_eq!(blk(&d, 384), &zeros(1)[..]);
    // Blocks holding data are mapped; the whole chunk in the middle was deallocated.
    assert_eq!(
        lba_status(&i, 0),
        [(0, 128, MAPPED), (128, 128, DEALLOCATED), (256, 128, MAPPED), (384, n - 384, DEALLOCATED)]
    );
}

#[test]
fn unmap_punches_holes_in_a_thin_file() {
    let t = thin_file(16384, config()); // 8 MiB
    let n = t.rig.blocks;
    let i = t.rig.login();
    let data = pattern(60, 4096 * BS); // 2 MiB at 1 MiB
    write(&i, 0, 2048, BS, &data);
    sync_cache(&i);
    let before = allocated(&t.path);
    assert!(before >= 2 << 20, "{before} bytes allocated after writing 2 MiB");
    assert_eq!(file_bytes(&t.path, 2048 * 512, data.len()), data);

    // 1 MiB from a 4 KiB boundary, and 3 blocks inside one file system block.
    assert_good(&unmap(&i, &[(2056, 2048), (4105, 3)]));
    sync_cache(&i);
    let after = allocated(&t.path);
    assert!(after + (1 << 20) <= before, "UNMAP frees the space: {before} -> {after} bytes");
    let f = file_bytes(&t.path, 2048 * 512, data.len());
    for k in 0..4096 {
        let lba = 2048 + k as u64;
        let unmapped = (2056..4104).contains(&lba) || (4105..4108).contains(&lba);
        let want = if unmapped { &zeros(1)[..] } else { blk(&data, k) };
        assert!(blk(&f, k) == want, "file block {lba}");
    }
    assert!(read(&i, 0, 2048, BS, 4096) == f, "reads agree with the file");
    assert_eq!(
        lba_status(&i, 0),
        [
            (0, 2048, DEALLOCATED),
            (2048, 8, MAPPED),
            (2056, 2048, DEALLOCATED),
            (4104, 2040, MAPPED),
            (6144, n - 6144, DEALLOCATED)
        ]
    );
}

#[test]
fn unmap_on_a_fully_provisioned_lun_is_an_invalid_opcode() {
    for r in [thick(2048), Rig::new(Backend::Null, 2048, 512)] {
        let i = r.login();
        let data = pattern(61, 8 * BS);
        write(&i, 0, 0, BS, &data);
        check(&unmap(&i, &[(0, 8)]), INVALID_OPCODE);
        check(&i.execute(0, &unmap_cdb(0), &[], &mut []), INVALID_OPCODE);
        if r.backend.keeps_data() {
            assert_eq!(read(&i, 0, 0, BS, 8), data);
        }
    }
}

#[test]
fn parameter_lists_may_span_buffer_chunks() {
    // 4 KiB buffer chunks: a list longer than that comes in several segments.
    let small = || target_with_sgv(SgvConfig { max_chunk: 4096, ..SgvConfig::default() });
    let r = Rig::build(Backend::Ram, 8192, 512, config(), small());
    let i = r.login();
    let data = pattern(70, 600 * BS);
    write_big(&i, 0, &data);
    let descs: Vec<_> = (0..300u64).map(|k| (2 * k, 1)).collect();
    assert!(unmap_params(&descs).len() > 4096);
    assert_good(&unmap(&i, &descs));
    let d = read_big(&i, 0, 600);
    for k in 0..600 {
        let want = if k % 2 == 0 { &zeros(1)[..] } else { blk(&data, k) };
        assert!(blk(&d, k) == want, "block {k}");
    }

    // A SANITIZE OVERWRITE pattern of a whole 4096-byte block: a 4100-byte parameter list.
    let mut cfg = config();
    cfg.sanitize_rate = 0;
    let r4 = Rig::build(Backend::Ram, 32, 4096, cfg, small());
    let i4 = r4.login();
    let pat = pattern(71, 4096);
    let p = overwrite_params(false, 1, &pat);
    assert_eq!(p.len(), 4100);
    assert_good(&i4.execute(0, &sanitize_cdb(OVERWRITE, false, 4100), &p, &mut []));
    let d = data_in_ok(&i4, 0, &cdb16(READ16, 0, 0, 32), 32 * 4096);
    assert_all_blocks(&d, &pat, "4096-byte pattern");
}

#[test]
fn write_same_and_copies_larger_than_the_largest_buffer() {
    // 4 KiB chunks: the largest buffer is 256 KiB, less than the 1 MiB pieces large WRITE SAME
    // and EXTENDED COPY work in.
    let t = target_with_sgv(SgvConfig { max_chunk: 4096, ..SgvConfig::default() });
    let r = Rig::build(Backend::Ram, 8192, 512, config(), t);
    let i = r.login();
    let b = pattern(72, BS);
    let o = i.execute(0, &cdb16(WRITE_SAME16, 0, 0, 4096), &b, &mut []);
    assert_good(&o);
    assert_all_blocks(&read_big(&i, 0, 4096), &b, "2 MiB WRITE SAME");
    let naa = naa_of(&i, 0);
    let p = xcopy_params(1, 0, &[cscd(naa, 512)], &[segment(0, 0, 4000, 0, 4096)]);
    assert_good(&xcopy(&i, 0, &p));
    assert_all_blocks(&read_big(&i, 4096, 4000), &b, "2 MiB EXTENDED COPY");
}

// ------------------------------------------------------------------------------------------------
// GET LBA STATUS
// ------------------------------------------------------------------------------------------------

fn get_lba_status_cdb(lba: u64, alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = SERVICE_ACTION_IN16;
    c[1] = 0x12;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

/// The LBA status descriptors from `lba` on, as `(lba, blocks, provisioning status)`, checked for
/// consistency: they start at `lba`, are contiguous, and adjacent ones differ.
#[track_caller]
fn lba_status(i: &LocalInitiator, lba: u64) -> Vec<(u64, u64, u8)> {
    let d = data_in_ok(i, 0, &get_lba_status_cdb(lba, 4096), 4096);
    assert!(d.len() >= 24, "at least one descriptor: {d:02x?}");
    let len = be32(&d, 0) as usize;
    assert_eq!(len + 4, d.len(), "PARAMETER DATA LENGTH");
    assert_eq!((d.len() - 8) % 16, 0);
    let descs: Vec<_> = d[8..].chunks(16).map(|e| (be64(e, 0), u64::from(be32(e, 8)), e[12] & 0x0f)).collect();
    assert_eq!(descs[0].0, lba, "the first descriptor starts at the requested LBA");
    for w in descs.windows(2) {
        assert_eq!(w[0].0 + w[0].1, w[1].0, "contiguous: {descs:?}");
        assert_ne!(w[0].2, w[1].2, "adjacent runs differ: {descs:?}");
    }
    descs
}

#[test]
fn get_lba_status_reports_mapped_and_deallocated_runs() {
    let r = ram(65536);
    let n = r.blocks;
    let i = r.login();
    assert_eq!(lba_status(&i, 0), [(0, n, DEALLOCATED)]);
    write(&i, 0, 256, BS, &pattern(80, 256 * BS));
    write(&i, 0, 1024, BS, &pattern(81, 128 * BS));
    let all = [
        (0, 256, DEALLOCATED),
        (256, 256, MAPPED),
        (512, 512, DEALLOCATED),
        (1024, 128, MAPPED),
        (1152, n - 1152, DEALLOCATED),
    ];
    assert_eq!(lba_status(&i, 0), all);
    assert_eq!(lba_status(&i, 300)[0], (300, 212, MAPPED), "from the middle of a run");
    assert_eq!(lba_status(&i, 1151)[..2], [(1151, 1, MAPPED), (1152, n - 1152, DEALLOCATED)]);
    assert_eq!(lba_status(&i, n - 1), [(n - 1, 1, DEALLOCATED)]);

    // Starting beyond the end.
    for lba in [n, n + 1, u64::MAX] {
        check(&data_in(&i, 0, &get_lba_status_cdb(lba, 64), 64).0, LBA_OUT_OF_RANGE);
    }
    // The allocation length truncates (the descriptors sent are still right).
    let full = data_in_ok(&i, 0, &get_lba_status_cdb(0, 4096), 4096);
    assert_eq!(full.len(), 8 + 16 * all.len());
    for alloc in [0, 3, 4, 8, 20, 24, 40, 87] {
        let (o, d) = data_in(&i, 0, &get_lba_status_cdb(0, alloc as u32), 4096);
        assert_good(&o);
        assert!(d.len() <= alloc, "allocation length {alloc}: {} bytes", d.len());
        if alloc < 24 {
            assert_eq!(d.len(), alloc, "allocation length {alloc}");
        }
        if d.len() >= 4 {
            // Fewer descriptors may be returned, but the header describes what was built.
            let pl = be32(&d, 0) as usize;
            assert!(pl >= 20 && (pl - 4) % 16 == 0, "PARAMETER DATA LENGTH {pl}");
            assert_eq!(d.len(), alloc.min(pl + 4), "allocation length {alloc}");
            assert_eq!(d[4..], full[4..d.len()], "allocation length {alloc}");
        }
    }
    // After an UNMAP the runs merge.
    assert_good(&unmap(&i, &[(256, 256)]));
    assert_eq!(lba_status(&i, 0), [(0, 1024, DEALLOCATED), (1024, 128, MAPPED), (1152, n - 1152, DEALLOCATED)]);
}

#[test]
fn get_lba_status_on_a_fully_provisioned_lun_reports_everything_mapped() {
    let r = thick(4096);
    let i = r.login();
    assert_eq!(lba_status(&i, 0), [(0, 4096, MAPPED)]);
    assert_eq!(lba_status(&i, 100), [(100, 3996, MAPPED)]);
    check(&data_in(&i, 0, &get_lba_status_cdb(4096, 64), 64).0, LBA_OUT_OF_RANGE);
}

// ------------------------------------------------------------------------------------------------
// ORWRITE(16), WRITE ATOMIC(16)
// ------------------------------------------------------------------------------------------------

fn orwrite_semantics(r: &Rig) {
    let i = r.login();
    // More than one internal 1 MiB piece, between markers.
    let blocks = 2100;
    let (a, b) = (pattern(90, blocks * BS), pattern(91, blocks * BS));
    let marker = fill(0x81, 1);
    write(&i, 0, 49, BS, &marker);
    write(&i, 0, 50 + blocks as u64, BS, &marker);
    write(&i, 0, 50, BS, &a);
    assert_good(&i.execute(0, &cdb16(ORWRITE16, 0, 50, blocks as u32), &b, &mut []));
    let want: Vec<u8> = a.iter().zip(&b).map(|(x, y)| x | y).collect();
    let d = read(&i, 0, 49, BS, blocks as u32 + 2);
    assert_eq!(blk(&d, 0), &marker[..]);
    assert!(d[BS..(blocks + 1) * BS] == want[..], "medium = old OR data");
    assert_eq!(blk(&d, blocks + 1), &marker[..]);
    // Zero blocks: nothing; beyond the end: LBA OUT OF RANGE, nothing written.
    assert_good(&i.execute(0, &cdb16(ORWRITE16, 0, 50, 0), &[], &mut []));
    write(&i, 0, r.blocks - 1, BS, &marker);
    check(&i.execute(0, &cdb16(ORWRITE16, 0, r.blocks - 1, 2), &fill(0xff, 2), &mut []), LBA_OUT_OF_RANGE);
    assert_eq!(read(&i, 0, r.blocks - 1, BS, 1), marker);
    assert!(read(&i, 0, 50, BS, blocks as u32) == want);
}

#[test]
fn orwrite_ram() {
    orwrite_semantics(&ram(8192));
}

#[test]
fn orwrite_fileio() {
    orwrite_semantics(&thick(8192));
}

fn write_atomic_cdb(lba: u64, blocks: u16) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = WRITE_ATOMIC16;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[12..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn write_atomic_semantics(r: &Rig) {
    let i = r.login();
    let lim = limits(&i);
    assert!(lim.max_atomic >= 1 && lim.max_atomic <= lim.max_transfer, "{lim:?}");
    assert!(lim.atomic_alignment <= 1 && lim.atomic_granularity <= 1, "any LBA and length: {lim:?}");
    let max = u16::try_from(lim.max_atomic).expect("16-bit TRANSFER LENGTH");
    let data = pattern(95, usize::from(max) * BS);
    assert_good(&i.execute(0, &write_atomic_cdb(3, max), &data, &mut []));
    assert!(read(&i, 0, 3, BS, u32::from(max)) == data, "MAXIMUM ATOMIC TRANSFER LENGTH blocks written");
    // One block more than the maximum: INVALID FIELD IN CDB, nothing written.
    let more = pattern(96, (usize::from(max) + 1) * BS);
    let o = i.execute(0, &write_atomic_cdb(3, max + 1), &more, &mut []);
    assert_invalid_cdb(&o, 12, Some(7));
    assert!(read(&i, 0, 3, BS, u32::from(max)) == data);
    // Within the limits anywhere; zero blocks is nothing.
    let one = pattern(97, BS);
    assert_good(&i.execute(0, &write_atomic_cdb(r.blocks - 1, 1), &one, &mut []));
    assert_eq!(read(&i, 0, r.blocks - 1, BS, 1), one);
    assert_good(&i.execute(0, &write_atomic_cdb(3, 0), &[], &mut []));
    // Beyond the end; a partial Data-Out cannot be written atomically.
    check(&i.execute(0, &write_atomic_cdb(r.blocks - 1, 2), &zeros(2), &mut []), LBA_OUT_OF_RANGE);
    check(&i.execute(0, &write_atomic_cdb(3, 4), &zeros(3), &mut []), INVALID_FIELD_IN_IU);
    assert!(read(&i, 0, 3, BS, u32::from(max)) == data);
    assert_eq!(read(&i, 0, r.blocks - 1, BS, 1), one);
    // ATOMIC BOUNDARY (bytes 10-11) is not supported.
    let mut c = write_atomic_cdb(3, 1);
    c[10] = 0x01;
    check(&i.execute(0, &c, &one, &mut []), INVALID_FIELD_IN_CDB);
}

#[test]
fn write_atomic_ram() {
    write_atomic_semantics(&ram(4096));
}

#[test]
fn write_atomic_fileio() {
    write_atomic_semantics(&thick(4096));
}

/// WRITE ATOMIC against a concurrent READ of the same blocks: the read returns all old or all
/// new data (SBC-4 §4.29: an atomic write is seen in full or not at all).
#[test]
fn write_atomic_is_never_seen_torn() {
    let r = ram(4096);
    let (w, rd) = (r.login(), r.login());
    // 1024 blocks (MAXIMUM ATOMIC TRANSFER LENGTH) from the middle of a 64 KiB chunk: nine chunks.
    let (x, y) = (fill(0x11, 1024), fill(0x22, 1024));
    write(&w, 0, 64, BS, &x);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for k in 0..3000 {
                let d = if k % 2 == 0 { &y } else { &x };
                assert_good(&w.execute(0, &write_atomic_cdb(64, 1024), d, &mut []));
            }
        });
        while !writer.is_finished() {
            let d = read(&rd, 0, 64, BS, 1024);
            assert!(d == x || d == y, "a READ saw part of a WRITE ATOMIC");
        }
    });
}

// ------------------------------------------------------------------------------------------------
// EXTENDED COPY, RECEIVE COPY RESULTS
// ------------------------------------------------------------------------------------------------

/// An identification descriptor CSCD descriptor (E4h) naming a block device by NAA.
fn cscd(naa: u64, block_len: u32) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[0] = 0xe4;
    // LU ID TYPE 00b, NUL 0, peripheral device type 00h.
    d[4] = 0x01; // code set binary
    d[5] = 0x03; // association: logical unit; designator type NAA
    d[7] = 8;
    d[8..16].copy_from_slice(&naa.to_be_bytes());
    d[29..32].copy_from_slice(&block_len.to_be_bytes()[1..]);
    d
}

/// A block device to block device segment descriptor (02h).
fn segment(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> [u8; 28] {
    let mut d = [0u8; 28];
    d[0] = 0x02;
    d[2..4].copy_from_slice(&24u16.to_be_bytes());
    d[4..6].copy_from_slice(&src.to_be_bytes());
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[10..12].copy_from_slice(&blocks.to_be_bytes());
    d[12..20].copy_from_slice(&src_lba.to_be_bytes());
    d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
    d
}

/// An EXTENDED COPY (LID1) parameter list; `flags` is byte 1 (STR, LIST ID USAGE, PRIORITY).
fn xcopy_params(list_id: u8, flags: u8, cscds: &[[u8; 32]], segs: &[[u8; 28]]) -> Vec<u8> {
    let mut p = vec![0u8; 16];
    p[0] = list_id;
    p[1] = flags;
    p[2..4].copy_from_slice(&((32 * cscds.len()) as u16).to_be_bytes());
    p[8..12].copy_from_slice(&((28 * segs.len()) as u32).to_be_bytes());
    for c in cscds {
        p.extend_from_slice(c);
    }
    for s in segs {
        p.extend_from_slice(s);
    }
    p
}

fn xcopy_cdb(plen: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = EXTENDED_COPY;
    c[10..14].copy_from_slice(&plen.to_be_bytes());
    c
}

fn xcopy(i: &LocalInitiator, lun: u16, p: &[u8]) -> Outcome {
    i.execute(lun, &xcopy_cdb(p.len() as u32), p, &mut [])
}

fn rcr_cdb(sa: u8, list_id: u8, alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = RECEIVE_COPY_RESULTS;
    c[1] = sa;
    c[2] = list_id;
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

/// COPY STATUS: (COPY MANAGER STATUS, SEGMENTS PROCESSED, TRANSFER COUNT in bytes).
fn copy_status(i: &LocalInitiator, lun: u16, list_id: u8) -> (u8, u16, u32) {
    let d = data_in_ok(i, lun, &rcr_cdb(0, list_id, 64), 64);
    assert_eq!(d.len(), 12, "{d:02x?}");
    assert_eq!(be32(&d, 0), 8, "AVAILABLE DATA");
    assert_eq!(d[7], 0, "TRANSFER COUNT UNITS: bytes");
    (d[4] & 0x7f, be16(&d, 5), be32(&d, 8))
}

/// FAILED SEGMENT DETAILS: (EXTENDED COPY COMMAND STATUS, sense data).
fn failed_segment_details(i: &LocalInitiator, lun: u16, list_id: u8) -> (u8, Vec<u8>) {
    let d = data_in_ok(i, lun, &rcr_cdb(4, list_id, 1024), 1024);
    assert!(d.len() >= 60, "{d:02x?}");
    assert_eq!(be32(&d, 0) as usize + 4, d.len(), "AVAILABLE DATA");
    let n = usize::from(be16(&d, 58));
    assert_eq!(d.len(), 60 + n, "SENSE DATA LENGTH");
    (d[56], d[60..].to_vec())
}

const COMPLETED: u8 = 0x01;
const COMPLETED_WITH_ERRORS: u8 = 0x02;

/// Target A with LUNs 0 and 1 (RAM), target B with LUN 0 (fully provisioned FILEIO).
struct CopyLab {
    a: Rig,
    b: Rig,
}

const LAB_BLOCKS: u64 = 16384;

fn copy_lab() -> CopyLab {
    let a = ram(LAB_BLOCKS);
    a.target
        .add_lun(Lun(1), device(RamStore::new(LAB_BLOCKS * 512, 512).expect("ram"), config()), false)
        .expect("LUN 1");
    CopyLab { a, b: thick(LAB_BLOCKS) }
}

fn login_both(r: &Rig) -> LocalInitiator {
    let i = r.login();
    i.clear_unit_attentions(1);
    i
}

#[test]
fn extended_copy_moves_blocks_between_luns_and_targets() {
    let lab = copy_lab();
    let (ia, ib) = (login_both(&lab.a), lab.b.login());
    let (n0, n1, nb) = (naa_of(&ia, 0), naa_of(&ia, 1), naa_of(&ib, 0));
    assert!(n0 != n1 && n1 != nb && n0 != nb, "distinct designators");

    // LUN 0 -> LUN 1 of the same target, 5000 blocks (more than one 1 MiB piece).
    let src = pattern(100, 5000 * BS);
    write(&ia, 0, 100, BS, &src);
    let marker = fill(0xab, 1);
    write(&ia, 1, 299, BS, &marker);
    write(&ia, 1, 5300, BS, &marker);
    let p = xcopy_params(1, 0, &[cscd(n0, 512), cscd(n1, 512)], &[segment(0, 1, 5000, 100, 300)]);
    assert_good(&xcopy(&ia, 0, &p));
    let d = read(&ia, 1, 299, BS, 5002);
    assert_eq!(blk(&d, 0), &marker[..]);
    assert!(d[BS..5001 * BS] == src[..], "copied exactly");
    assert_eq!(blk(&d, 5001), &marker[..]);
    assert_eq!(copy_status(&ia, 0, 1), (COMPLETED, 1, 5000 * 512));

    // Two segments to another target's FILEIO LUN (disk block length 0: any), sent to LUN 1.
    let p =
        xcopy_params(2, 0, &[cscd(n1, 512), cscd(nb, 0)], &[segment(0, 1, 3000, 300, 7), segment(0, 1, 10, 300, 4000)]);
    assert_good(&xcopy(&ia, 1, &p));
    assert!(read(&ib, 0, 7, BS, 3000) == src[..3000 * BS], "copied across targets");
    assert_eq!(read(&ib, 0, 4000, BS, 10), src[..10 * BS]);
    assert!(file_bytes(backing_file(&lab.b), 7 * 512, 3000 * BS) == src[..3000 * BS], "in the backing file");
    assert_eq!(read(&ib, 0, 6, BS, 1), zeros(1));
    assert_eq!(copy_status(&ia, 1, 2), (COMPLETED, 2, 3010 * 512));

    // Overlapping source and destination on one LU, toward higher LBAs: like memmove.
    let orig = read(&ia, 0, 1000, BS, 3000);
    let p = xcopy_params(3, 0, &[cscd(n0, 512)], &[segment(0, 0, 3000, 1000, 2000)]);
    assert_good(&xcopy(&ia, 0, &p));
    assert!(read(&ia, 0, 2000, BS, 3000) == orig, "overlapping copy toward higher LBAs");
    assert!(read(&ia, 0, 1000, BS, 1000) == orig[..1000 * BS]);
    // And toward lower LBAs.
    let orig = read(&ia, 0, 2000, BS, 3000);
    let p = xcopy_params(4, 0, &[cscd(n0, 512)], &[segment(0, 0, 3000, 2000, 1500)]);
    assert_good(&xcopy(&ia, 0, &p));
    assert!(read(&ia, 0, 1500, BS, 3000) == orig, "overlapping copy toward lower LBAs");

    // OPERATING PARAMETERS.
    let op = data_in_ok(&ia, 0, &rcr_cdb(3, 0, 1024), 1024);
    assert_eq!(be32(&op, 0) as usize + 4, op.len(), "AVAILABLE DATA");
    let (max_cscd, max_segs, max_list, max_seg_len) = (be16(&op, 8), be16(&op, 10), be32(&op, 12), be32(&op, 16));
    assert!(max_cscd >= 2 && max_segs >= 2, "{op:02x?}");
    assert!(max_list as usize >= 2 * 32 + 2 * 28, "MAXIMUM DESCRIPTOR LIST LENGTH {max_list}");
    assert!(max_seg_len >= 5000 * 512, "MAXIMUM SEGMENT LENGTH {max_seg_len}");
    assert_eq!(be32(&op, 20), 0, "no inline data");
    let kinds = &op[44..44 + usize::from(op[43])];
    assert!(kinds.contains(&0x02) && kinds.contains(&0xe4), "implemented descriptors {kinds:02x?}");
}

#[test]
fn extended_copy_failures_and_their_copy_results() {
    let lab = copy_lab();
    let ia = login_both(&lab.a);
    let (n0, n1) = (naa_of(&ia, 0), naa_of(&ia, 1));
    let src = pattern(110, 64 * BS);
    write(&ia, 0, 100, BS, &src);
    let before = read(&ia, 1, 300, BS, 16);
    let tail = read(&ia, 1, LAB_BLOCKS - 8, BS, 8);
    let unchanged = || {
        assert_eq!(read(&ia, 1, 300, BS, 16), before, "destination unchanged");
        assert_eq!(read(&ia, 1, LAB_BLOCKS - 8, BS, 8), tail, "destination unchanged");
    };
    let both = [cscd(n0, 512), cscd(n1, 512)];

    // A segment naming a CSCD descriptor the list does not have.
    let o = xcopy(&ia, 0, &xcopy_params(10, 0, &both, &[segment(0, 5, 16, 100, 300)]));
    check(&o, UNREACHABLE_COPY_TARGET);
    unchanged();
    assert_eq!(copy_status(&ia, 0, 10), (COMPLETED_WITH_ERRORS, 0, 0));
    let (status, sense) = failed_segment_details(&ia, 0, 10);
    assert_eq!(status, 0x02, "EXTENDED COPY COMMAND STATUS: CHECK CONDITION");
    assert_eq!(sense, o.sense(), "the sense data the command returned");
    // Both were transferred: the held results are gone.
    assert_invalid_cdb(&data_in(&ia, 0, &rcr_cdb(4, 10, 1024), 1024).0, 2, Some(7));
    assert_invalid_cdb(&data_in(&ia, 0, &rcr_cdb(0, 10, 64), 64).0, 2, Some(7));

    // A designator no logical unit of this process has.
    let ghost = 0x3fff_ffff_ffff_fff1;
    assert!(ghost != n0 && ghost != n1);
    let o = xcopy(&ia, 0, &xcopy_params(11, 0, &[cscd(n0, 512), cscd(ghost, 512)], &[segment(0, 1, 16, 100, 300)]));
    check(&o, COPY_TARGET_NOT_REACHABLE);
    // A disk block length the logical unit does not have.
    let o = xcopy(&ia, 0, &xcopy_params(12, 0, &[cscd(n0, 512), cscd(n1, 4096)], &[segment(0, 1, 16, 100, 300)]));
    check(&o, COPY_TARGET_NOT_REACHABLE);
    unchanged();

    // Source or destination beyond the end of its LU: COPY ABORTED (00h/00h, what libiscsi
    // expects) with a segment pointer at the LBA field (relative to the parameter list: the segment descriptor
    // follows the 16-byte header and the two 32-byte CSCD descriptors).
    for (seg, field) in [(segment(0, 1, 16, LAB_BLOCKS - 8, 300), 12), (segment(0, 1, 16, 100, LAB_BLOCKS - 8), 20)] {
        let o = xcopy(&ia, 0, &xcopy_params(13, 0, &both, &[seg]));
        assert_eq!(o.status, ScsiStatus::CHECK_CONDITION);
        assert_eq!(sense_triple(o.sense()), Some((COPY_ABORTED, 0x00, 0x00)), "{:02x?}", o.sense());
        let pointer = 16 + 2 * 32 + field;
        assert_eq!(o.sense()[15..18], [0x80, 0, pointer as u8], "segment pointer: {:02x?}", o.sense());
        unchanged();
    }

    // The second segment fails after the first was copied.
    let o = xcopy(
        &ia,
        0,
        &xcopy_params(14, 0, &both, &[segment(0, 1, 8, 100, 300), segment(0, 1, 8, 100, LAB_BLOCKS - 4)]),
    );
    assert_eq!(sense_triple(o.sense()).map(|s| s.0), Some(COPY_ABORTED), "{:02x?}", o.sense());
    assert_eq!(read(&ia, 1, 300, BS, 8), src[..8 * BS], "the first segment was processed");
    assert_eq!(read(&ia, 1, LAB_BLOCKS - 8, BS, 8), tail);
    // Held for this I_T nexus only.
    let other = login_both(&lab.a);
    assert_invalid_cdb(&data_in(&other, 0, &rcr_cdb(0, 14, 64), 64).0, 2, Some(7));
    assert_eq!(copy_status(&ia, 0, 14), (COMPLETED_WITH_ERRORS, 1, 8 * 512));
    let (status, sense) = failed_segment_details(&ia, 0, 14);
    assert_eq!(status, 0x02);
    assert_eq!(sense, o.sense());

    // LIST ID USAGE 11b: nothing held. An unknown list identifier; RECEIVE DATA (not supported).
    assert_good(&xcopy(&ia, 0, &xcopy_params(15, 3 << 3, &both, &[segment(0, 1, 1, 100, 200)])));
    assert_eq!(read(&ia, 1, 200, BS, 1), blk(&src, 0));
    assert_invalid_cdb(&data_in(&ia, 0, &rcr_cdb(0, 15, 64), 64).0, 2, Some(7));
    assert_invalid_cdb(&data_in(&ia, 0, &rcr_cdb(0, 99, 64), 64).0, 2, Some(7));
    assert_invalid_cdb(&data_in(&ia, 0, &rcr_cdb(1, 1, 64), 64).0, 1, Some(4));
}

/// PERSISTENT RESERVE OUT with a 24-byte parameter list (reservation key, service action key).
fn prout(i: &LocalInitiator, lun: u16, sa: u8, kind: u8, key: u64, sa_key: u64) -> Outcome {
    let mut p = [0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    let c = [0x5f, sa, kind, 0, 0, 0, 0, 0, 24, 0];
    i.execute(lun, &c, &p, &mut [])
}

/// The copy manager reads and writes its copy targets only as the EXTENDED COPY's nexus could
/// with READ and WRITE: not a write-protected destination, not a logical unit being sanitized,
/// not one another nexus holds a persistent reservation on.
#[test]
fn extended_copy_respects_the_state_of_its_copy_targets() {
    let a = ram(4096);
    let mut ro = config();
    ro.read_only = true;
    let mut slow = config();
    slow.sanitize_rate = 1 << 20;
    for (lun, cfg, blocks) in [(1, ro, 4096), (2, slow, 1024), (3, config(), 4096)] {
        let dev = device(RamStore::new(blocks * 512, 512).expect("ram"), cfg);
        a.target.add_lun(Lun(lun), dev, false).expect("map LUN");
    }
    let login = || {
        let i = a.login();
        for lun in 1..4 {
            i.clear_unit_attentions(lun);
        }
        i
    };
    let (ia, holder) = (login(), login());
    let naa: Vec<u64> = (0..4).map(|lun| naa_of(&ia, lun)).collect();
    let src = pattern(170, 64 * BS);
    write(&ia, 0, 0, BS, &src);
    let copy = |i: &LocalInitiator, from: u16, to: u16| {
        let p = xcopy_params(
            20,
            0,
            &[cscd(naa[usize::from(from)], 512), cscd(naa[usize::from(to)], 512)],
            &[segment(0, 1, 16, 0, 100)],
        );
        xcopy(i, 0, &p)
    };

    // A read-only destination: DATA PROTECT, WRITE PROTECTED, like a WRITE.
    check(&ia.execute(1, &cdb16(WRITE16, 0, 100, 1), &zeros(1), &mut []), (0x07, 0x27, 0x00));
    let o = copy(&ia, 0, 1);
    assert_eq!(o.status, ScsiStatus::CHECK_CONDITION);
    assert_eq!(sense_triple(o.sense()).map(|c| c.0), Some(0x07), "DATA PROTECT: {:02x?}", o.sense());
    assert_eq!(read(&ia, 1, 100, BS, 16), zeros(16), "nothing written to a read-only LU");
    // As a source it is fine.
    assert_good(&copy(&ia, 1, 0));
    assert_eq!(read(&ia, 0, 100, BS, 16), zeros(16));

    // A logical unit being sanitized: neither read nor written.
    write(&ia, 0, 100, BS, &src[..16 * BS]);
    assert_good(&ia.execute(2, &sanitize_cdb(OVERWRITE, true, 5), &overwrite_params(false, 1, &[0x99]), &mut []));
    check(&copy(&ia, 0, 2), SANITIZE_IN_PROGRESS);
    check(&copy(&ia, 2, 0), SANITIZE_IN_PROGRESS);
    assert_eq!(read(&ia, 0, 100, BS, 16), src[..16 * BS], "nothing copied from a LU being sanitized");
    let t0 = Instant::now();
    while !ia.execute(2, &TUR, &[], &mut []).is_good() {
        assert!(t0.elapsed() < Duration::from_secs(15), "sanitize never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_all_blocks(
        &data_in_ok(&ia, 2, &cdb16(READ16, 0, 0, 1024), 1024 * BS),
        &fill(0x99, 1),
        "sanitized, not copied into",
    );

    // A destination another nexus holds WRITE EXCLUSIVE on: RESERVATION CONFLICT, like a WRITE.
    assert_good(&prout(&holder, 3, 0x00, 0, 0, 0xabc));
    assert_good(&prout(&holder, 3, 0x01, 0x01, 0xabc, 0));
    assert_eq!(ia.execute(3, &cdb16(WRITE16, 0, 100, 1), &zeros(1), &mut []).status, ScsiStatus::RESERVATION_CONFLICT);
    assert_eq!(copy(&ia, 0, 3).status, ScsiStatus::RESERVATION_CONFLICT);
    assert_eq!(read(&ia, 3, 100, BS, 16), zeros(16), "nothing written under another nexus's reservation");
    // Reading it is allowed under WRITE EXCLUSIVE; the holder may write.
    assert_good(&copy(&ia, 3, 0));
    assert_good(&copy(&holder, 0, 3));
    assert_eq!(read(&ia, 3, 100, BS, 16), src[..16 * BS]);
}

#[test]
fn extended_copy_parameter_list_errors() {
    let lab = copy_lab();
    let ia = login_both(&lab.a);
    let (n0, n1) = (naa_of(&ia, 0), naa_of(&ia, 1));
    write(&ia, 0, 100, BS, &pattern(120, 16 * BS));
    let before = read(&ia, 1, 300, BS, 16);
    let both = [cscd(n0, 512), cscd(n1, 512)];
    let seg = segment(0, 1, 16, 100, 300);
    let op = data_in_ok(&ia, 0, &rcr_cdb(3, 0, 1024), 1024);
    let (max_cscd, max_segs, max_list) =
        (usize::from(be16(&op, 8)), usize::from(be16(&op, 10)), be32(&op, 12) as usize);

    // PARAMETER LIST LENGTH 0: nothing to do.
    assert_good(&ia.execute(0, &xcopy_cdb(0), &[], &mut []));
    // Shorter than the header; longer in the CDB than what the initiator sends.
    check(&xcopy(&ia, 0, &[0u8; 8]), PARAMETER_LIST_LENGTH_ERROR);
    let p = xcopy_params(1, 0, &both, &[seg]);
    check(&ia.execute(0, &xcopy_cdb(p.len() as u32 + 32), &p, &mut []), PARAMETER_LIST_LENGTH_ERROR);
    // Descriptor list lengths running past the list.
    let mut p = xcopy_params(1, 0, &both, &[seg]);
    p[8..12].copy_from_slice(&56u32.to_be_bytes());
    check(&xcopy(&ia, 0, &p), PARAMETER_LIST_LENGTH_ERROR);
    // A CSCD descriptor list length that is not a multiple of 32.
    let mut p = xcopy_params(1, 0, &both, &[seg]);
    p[2..4].copy_from_slice(&63u16.to_be_bytes());
    assert_invalid_param(&xcopy(&ia, 0, &p), 2, None);
    // More CSCD descriptors than OPERATING PARAMETERS allows.
    let many = vec![cscd(n0, 512); max_cscd + 1];
    check(&xcopy(&ia, 0, &xcopy_params(1, 0, &many, &[seg])), TOO_MANY_TARGET_DESCRIPTORS);
    // More segment descriptors than allowed (within the descriptor list length).
    if 2 * 32 + (max_segs + 1) * 28 <= max_list {
        let segs = vec![seg; max_segs + 1];
        check(&xcopy(&ia, 0, &xcopy_params(1, 0, &both, &segs)), TOO_MANY_SEGMENT_DESCRIPTORS);
    }
    // Descriptors longer than MAXIMUM DESCRIPTOR LIST LENGTH.
    let segs = vec![seg; (max_list - 64) / 28 + 1];
    check(&xcopy(&ia, 0, &xcopy_params(1, 0, &both, &segs)), PARAMETER_LIST_LENGTH_ERROR);
    // Unsupported descriptor types: a Fibre Channel N_Port name CSCD (E0h), a block to stream
    // segment (01h).
    let mut fc = cscd(n1, 512);
    fc[0] = 0xe0;
    check(&xcopy(&ia, 0, &xcopy_params(1, 0, &[cscd(n0, 512), fc], &[seg])), UNSUPPORTED_TARGET_DESCRIPTOR);
    let mut b2s = seg;
    b2s[0] = 0x01;
    check(&xcopy(&ia, 0, &xcopy_params(1, 0, &both, &[b2s])), UNSUPPORTED_SEGMENT_DESCRIPTOR);
    // Inline data (none supported).
    let mut p = xcopy_params(1, 0, &both, &[seg]);
    p[12..16].copy_from_slice(&4u32.to_be_bytes());
    p.extend_from_slice(&[1, 2, 3, 4]);
    check(&xcopy(&ia, 0, &p), INLINE_DATA_LENGTH_EXCEEDED);
    // STR (no stream devices), a NUL CSCD, another peripheral device type.
    assert_invalid_param(&xcopy(&ia, 0, &xcopy_params(1, 0x20, &both, &[seg])), 1, Some(5));
    let mut nul = cscd(n1, 512);
    nul[1] = 0x20;
    assert_invalid_param(&xcopy(&ia, 0, &xcopy_params(1, 0, &[cscd(n0, 512), nul], &[seg])), 48 + 1, Some(5));
    let mut tape = cscd(n1, 512);
    tape[1] = 0x01;
    assert_invalid_param(&xcopy(&ia, 0, &xcopy_params(1, 0, &[cscd(n0, 512), tape], &[seg])), 48 + 1, Some(4));
    assert_eq!(read(&ia, 1, 300, BS, 16), before, "none of these copied anything");
    // The same list without the error copies.
    assert_good(&xcopy(&ia, 0, &xcopy_params(1, 0, &both, &[seg])));
    assert_eq!(read(&ia, 1, 300, BS, 16), read(&ia, 0, 100, BS, 16));
}

// ------------------------------------------------------------------------------------------------
// SANITIZE
// ------------------------------------------------------------------------------------------------

fn sanitize_cdb(sa: u8, immed: bool, plen: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = SANITIZE;
    c[1] = sa | if immed { 0x80 } else { 0 };
    c[7..9].copy_from_slice(&plen.to_be_bytes());
    c
}

/// OVERWRITE parameters: INVERT, OVERWRITE COUNT, the initialization pattern.
fn overwrite_params(invert: bool, count: u8, pattern: &[u8]) -> Vec<u8> {
    let mut p = vec![u8::from(invert) << 7 | count, 0];
    p.extend_from_slice(&(pattern.len() as u16).to_be_bytes());
    p.extend_from_slice(pattern);
    p
}

fn sanitize(i: &LocalInitiator, sa: u8, immed: bool, params: &[u8]) -> Outcome {
    i.execute(0, &sanitize_cdb(sa, immed, params.len() as u16), params, &mut [])
}

/// A block filled with `pattern` from its start, bits inverted when `invert`.
fn pattern_block(pattern: &[u8], invert: bool, bs: usize) -> Vec<u8> {
    (0..bs).map(|k| pattern[k % pattern.len()] ^ if invert { 0xff } else { 0 }).collect()
}

#[test]
fn sanitize_overwrite_writes_the_pattern_everywhere() {
    let r = ram_fast_sanitize(2048);
    let i = r.login();
    write(&i, 0, 0, BS, &pattern(130, 2048 * BS));
    // A 3-byte pattern: each block starts it anew (512 is not a multiple of 3).
    let pat = [0xde, 0xad, 0xbe];
    assert_good(&sanitize(&i, OVERWRITE, false, &overwrite_params(false, 1, &pat)));
    assert_all_blocks(&read(&i, 0, 0, BS, 2048), &pattern_block(&pat, false, BS), "OVERWRITE");
    // INVERT: inverted between passes, so an even count ends inverted and an odd one does not.
    let pat = [0x0f, 0x3c];
    assert_good(&sanitize(&i, OVERWRITE, false, &overwrite_params(true, 2, &pat)));
    assert_all_blocks(&read(&i, 0, 0, BS, 2048), &pattern_block(&pat, true, BS), "INVERT, 2 passes");
    assert_good(&sanitize(&i, OVERWRITE, false, &overwrite_params(true, 3, &pat)));
    assert_all_blocks(&read(&i, 0, 0, BS, 2048), &pattern_block(&pat, false, BS), "INVERT, 3 passes");
    // A pattern of a whole block.
    let pat = pattern(131, BS);
    assert_good(&sanitize(&i, OVERWRITE, false, &overwrite_params(false, 1, &pat)));
    assert_all_blocks(&read(&i, 0, 0, BS, 2048), &pat, "block-sized pattern");
    // Overwritten blocks are mapped.
    assert_eq!(lba_status(&i, 0), [(0, 2048, MAPPED)]);
}

#[test]
fn sanitize_overwrite_reaches_the_backing_file() {
    let mut cfg = config();
    cfg.sanitize_rate = 0;
    let r = Rig::with_config(Backend::File, 2048, 512, cfg);
    let i = r.login();
    write(&i, 0, 0, BS, &pattern(132, 2048 * BS));
    let pat = [0x5a, 0xc3, 0x00, 0x7e];
    assert_good(&sanitize(&i, OVERWRITE, false, &overwrite_params(false, 1, &pat)));
    let f = file_bytes(backing_file(&r), 0, 2048 * BS);
    assert_all_blocks(&f, &pattern_block(&pat, false, BS), "backing file after OVERWRITE");
    // No block or cryptographic erase without thin provisioning: an erase leaves every block
    // deallocated (SBC-4 §4.11.5), which needs LBPME (libiscsi's Sanitize.BlockErase fails a
    // target that supports BLOCK ERASE with LBPME=0). An unsupported service action.
    write(&i, 0, 0, BS, &fill(9, 1));
    assert_invalid_cdb(&sanitize(&i, BLOCK_ERASE, false, &[]), 1, Some(4));
    assert_invalid_cdb(&sanitize(&i, CRYPTO_ERASE, false, &[]), 1, Some(4));
    assert_good(&i.execute(0, &TUR, &[], &mut []));
    assert_eq!(read(&i, 0, 0, BS, 1), fill(9, 1));
}

#[test]
fn sanitize_erase_on_a_thin_lun_reads_zeros_and_deallocates() {
    let r = ram_fast_sanitize(4096);
    let i = r.login();
    for sa in [BLOCK_ERASE, CRYPTO_ERASE] {
        write(&i, 0, 0, BS, &pattern(133, 4096 * BS));
        assert_eq!(lba_status(&i, 0), [(0, 4096, MAPPED)]);
        assert_good(&sanitize(&i, sa, false, &[]));
        assert!(read(&i, 0, 0, BS, 4096) == zeros(4096), "service action {sa:#x}");
        assert_eq!(lba_status(&i, 0), [(0, 4096, DEALLOCATED)]);
    }
    // On a thin FILEIO LU too: zeros in the file, space freed.
    let t = thin_file(4096, config());
    let i = t.rig.login();
    write(&i, 0, 0, BS, &pattern(134, 4096 * BS));
    sync_cache(&i);
    assert!(allocated(&t.path) >= 2 << 20);
    assert_good(&sanitize(&i, CRYPTO_ERASE, false, &[]));
    assert!(allocated(&t.path) < 64 << 10, "{} bytes still allocated", allocated(&t.path));
    assert!(file_bytes(&t.path, 0, 4096 * BS) == zeros(4096));
}

#[test]
fn sanitize_with_immed_makes_other_commands_wait_until_done() {
    // 4 MiB at 4 MiB/s: about a second.
    let mut cfg = config();
    cfg.sanitize_rate = 4 << 20;
    let r = Rig::with_config(Backend::Ram, 8192, 512, cfg);
    let (i, other) = (r.login(), r.login());
    write(&i, 0, 0, BS, &pattern(140, 64 * BS));
    let pat = [0xa5, 0x5a, 0x01];
    let t0 = Instant::now();
    assert_good(&sanitize(&i, OVERWRITE, true, &overwrite_params(false, 1, &pat)));
    assert!(t0.elapsed() < Duration::from_millis(500), "IMMED returns at once: {:?}", t0.elapsed());

    // While it runs: NOT READY, SANITIZE IN PROGRESS for the medium and for TEST UNIT READY, from
    // every nexus; INQUIRY and REPORT LUNS are served.
    for s in [&i, &other] {
        check(&s.execute(0, &TUR, &[], &mut []), SANITIZE_IN_PROGRESS);
        check(&data_in(s, 0, &cdb16(READ16, 0, 0, 1), BS).0, SANITIZE_IN_PROGRESS);
        check(&s.execute(0, &cdb16(WRITE16, 0, 0, 1), &zeros(1), &mut []), SANITIZE_IN_PROGRESS);
        check(&data_in(s, 0, &read_capacity16(32), 32).0, SANITIZE_IN_PROGRESS);
        check(&sanitize(s, BLOCK_ERASE, false, &[]), SANITIZE_IN_PROGRESS);
        check(&sanitize(s, EXIT_FAILURE_MODE, false, &[]), SANITIZE_IN_PROGRESS);
        let inq = data_in_ok(s, 0, &inquiry_cdb(false, 0, 96), 96);
        assert_eq!(inq[0], 0x00, "INQUIRY works during a sanitize");
        assert_eq!(data_in_ok(s, 0, &report_luns(0, 64), 64).len(), 16);
    }
    // It ends by itself, rate limited.
    let done = loop {
        let o = i.execute(0, &TUR, &[], &mut []);
        if o.is_good() {
            break t0.elapsed();
        }
        check(&o, SANITIZE_IN_PROGRESS);
        assert!(t0.elapsed() < Duration::from_secs(15), "sanitize never ended");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(done >= Duration::from_millis(500), "4 MiB at 4 MiB/s took {done:?}");
    assert!(read_big(&other, 0, 8192) == pattern_block(&pat, false, BS).repeat(8192), "every block overwritten");
}

#[test]
fn sanitize_failure_mode_until_exit_or_a_successful_sanitize() {
    let fail = Arc::new(AtomicBool::new(false));
    let store = FlakyStore { inner: RamStore::new(1 << 20, 512).expect("ram"), fail: fail.clone() };
    let mut cfg = config();
    cfg.sanitize_rate = 0;
    let r = custom_rig(store, cfg);
    let i = r.login();
    let data = pattern(150, 8 * BS);
    write(&i, 0, 0, BS, &data);
    let pat = [0x42];

    fail.store(true, SeqCst);
    check(&sanitize(&i, OVERWRITE, false, &overwrite_params(false, 1, &pat)), SANITIZE_FAILED);
    fail.store(false, SeqCst);
    // Failure mode: MEDIUM ERROR, SANITIZE COMMAND FAILED for the medium, INQUIRY still served.
    check(&i.execute(0, &TUR, &[], &mut []), SANITIZE_FAILED);
    check(&data_in(&i, 0, &cdb16(READ16, 0, 0, 1), BS).0, SANITIZE_FAILED);
    data_in_ok(&i, 0, &inquiry_cdb(false, 0, 96), 96);
    // EXIT FAILURE MODE (with a parameter list is an error), then everything works again.
    check(&i.execute(0, &sanitize_cdb(EXIT_FAILURE_MODE, false, 1), &[0], &mut []), INVALID_FIELD_IN_CDB);
    assert_good(&sanitize(&i, EXIT_FAILURE_MODE, false, &[]));
    assert_good(&i.execute(0, &TUR, &[], &mut []));
    assert_eq!(read(&i, 0, 0, BS, 1), blk(&data, 0), "the failed overwrite wrote nothing");

    // Failure mode again; a successful SANITIZE ends it too.
    fail.store(true, SeqCst);
    check(&sanitize(&i, BLOCK_ERASE, false, &[]), SANITIZE_FAILED);
    fail.store(false, SeqCst);
    check(&i.execute(0, &TUR, &[], &mut []), SANITIZE_FAILED);
    assert_good(&sanitize(&i, OVERWRITE, false, &overwrite_params(false, 1, &pat)));
    assert_good(&i.execute(0, &TUR, &[], &mut []));
    assert_all_blocks(&read(&i, 0, 0, BS, 2048), &fill(0x42, 1), "overwritten after failure mode");
}

#[test]
fn sanitize_parameter_list_errors() {
    let r = ram_fast_sanitize(2048);
    let i = r.login();
    let data = pattern(160, 16 * BS);
    write(&i, 0, 0, BS, &data);
    let pat = [1u8, 2, 3];
    let good = overwrite_params(false, 1, &pat);

    // OVERWRITE needs 5 to block size + 4 bytes of parameters.
    for plen in [0usize, 4] {
        let o = i.execute(0, &sanitize_cdb(OVERWRITE, false, plen as u16), &good[..plen], &mut []);
        assert_invalid_cdb(&o, 7, Some(7));
    }
    let long = overwrite_params(false, 1, &[7; BS + 1]);
    assert_invalid_cdb(&sanitize(&i, OVERWRITE, false, &long), 7, Some(7));
    // Fields of the parameter list.
    assert_invalid_param(&sanitize(&i, OVERWRITE, false, &overwrite_params(false, 0, &pat)), 0, Some(4));
    let mut test = good.clone();
    test[0] |= 0x20;
    assert_invalid_param(&sanitize(&i, OVERWRITE, false, &test), 0, Some(6));
    let mut empty = good.clone();
    empty[2..4].copy_from_slice(&0u16.to_be_bytes());
    assert_invalid_param(&sanitize(&i, OVERWRITE, false, &empty), 2, None);
    let mut mismatch = good.clone();
    mismatch[2..4].copy_from_slice(&2u16.to_be_bytes());
    assert_invalid_param(&sanitize(&i, OVERWRITE, false, &mismatch), 2, None);
    // Less data than PARAMETER LIST LENGTH says.
    check(&i.execute(0, &sanitize_cdb(OVERWRITE, false, 7), &good[..6], &mut []), PARAMETER_LIST_LENGTH_ERROR);
    // BLOCK ERASE, CRYPTOGRAPHIC ERASE take no parameter list.
    for sa in [BLOCK_ERASE, CRYPTO_ERASE] {
        assert_invalid_cdb(&i.execute(0, &sanitize_cdb(sa, false, 5), &good, &mut []), 7, Some(7));
    }
    // An unknown service action.
    assert_invalid_cdb(&i.execute(0, &sanitize_cdb(0x04, false, 0), &[], &mut []), 1, Some(4));
    // None of that started a sanitize or touched the medium.
    assert_good(&i.execute(0, &TUR, &[], &mut []));
    assert_eq!(read(&i, 0, 0, BS, 16), data);
}

/// SPC-4: a device server that does not support a service action of a supported operation
/// code answers INVALID FIELD IN CDB (as this target does for SANITIZE service action 04h).
#[test]
fn sanitize_crypto_erase_on_a_fully_provisioned_lun_is_an_invalid_field() {
    let r = thick(2048);
    let i = r.login();
    assert_invalid_cdb(&sanitize(&i, CRYPTO_ERASE, false, &[]), 1, Some(4));
}

/// SBC-4 §4.11 (sanitize operations): while a sanitize runs, REQUEST SENSE returns NOT READY,
/// SANITIZE IN PROGRESS with a progress indication; in failure mode, SANITIZE COMMAND FAILED.
#[test]
fn request_sense_reports_sanitize_progress() {
    let mut cfg = config();
    cfg.sanitize_rate = 2 << 20;
    let r = Rig::with_config(Backend::Ram, 4096, 512, cfg);
    let i = r.login();
    assert_good(&sanitize(&i, OVERWRITE, true, &overwrite_params(false, 1, &[1])));
    let s = data_in_ok(&i, 0, &[REQUEST_SENSE, 0, 0, 0, 252, 0], 252);
    assert_eq!(sense_triple(&s), Some(SANITIZE_IN_PROGRESS), "{s:02x?}");
    assert_eq!(sks_bytes(&s).map(|b| b[0] & 0x80), Some(0x80), "SKSV with PROGRESS INDICATION");
    while !i.execute(0, &TUR, &[], &mut []).is_good() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A copy cannot reach a logical unit its initiator was not given on any target (the flaw of
/// CVE-2020-28374 in LIO): the NAA designator alone is not a key.
#[test]
fn extended_copy_only_reaches_logical_units_the_initiator_was_given() {
    let a = ram(4096);
    let ia = a.login();
    let n0 = naa_of(&ia, 0);
    // Another target whose only LUN is in a group for one other initiator.
    let secret = target();
    secret.add_group("owner", scst::acl::NamePatterns::parse("*:owner").expect("patterns")).expect("group");
    let dev = device(RamStore::new(4096 * 512, 512).expect("ram"), config());
    secret.add_group_lun(Some("owner"), Lun(0), dev, false).expect("map");
    let owner = LocalInitiator::connect(&secret, "iqn.2026-01.rs.scst:owner");
    owner.clear_unit_attentions(0);
    let ns = naa_of(&owner, 0);
    let data = fill(0x5e, 8);
    write(&owner, 0, 0, BS, &data);

    // Neither read from it nor written to it: COPY ABORTED, UNREACHABLE COPY TARGET.
    for (from, to) in [(ns, n0), (n0, ns)] {
        let p = xcopy_params(30, 0, &[cscd(from, 512), cscd(to, 512)], &[segment(0, 1, 8, 0, 0)]);
        check(&xcopy(&ia, 0, &p), (0x0a, 0x0d, 0x02));
    }
    assert_eq!(read(&ia, 0, 0, BS, 8), zeros(8), "nothing copied out of the other target");
    assert_eq!(read(&owner, 0, 0, BS, 8), data, "nothing copied into it");
    // Once the initiator is in the group, the same copy works.
    let name = ia.session().config().initiator_name.clone();
    secret
        .set_group_initiators("owner", scst::acl::NamePatterns::new(["*:owner", name.as_str()]).expect("p"))
        .expect("move");
    let p = xcopy_params(31, 0, &[cscd(ns, 512), cscd(n0, 512)], &[segment(0, 1, 8, 0, 0)]);
    assert_good(&xcopy(&ia, 0, &p));
    assert_eq!(read(&ia, 0, 0, BS, 8), data);
}
