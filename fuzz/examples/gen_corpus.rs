//! Writes the seed corpus of the `cdb` fuzz target: for every entry of `scst::ops::DISK_OPS` a
//! valid CDB (with plausible fields and, for Data-Out commands, a valid parameter list or data)
//! on a LUN where it succeeds, plus a few variants (other LUNs, task attributes, VPD pages).
//!
//! Each seed is run through a fresh [`Rig`] and must end GOOD, so the seeds start the fuzzer on
//! the success paths. Run from the repository root:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus [-- OUT_DIR]
//! ```
//!
//! (default `OUT_DIR`: `fuzz/corpus/cdb`). It removes the old `seed-*` files first.

use std::path::PathBuf;

use scst::ops::{DISK_OPS, Op, OpInfo};
use scst::pr::transport_id;
use scst_fuzz::{Input, MAX_CDB, OTHER_KEY, OUR_KEY, Rig};

/// LUN selectors of the input format.
const RAM: u8 = 0;
const NULL: u8 = 1;
const RO: u8 = 2;
const UNMAPPED: u8 = 3;
/// Reservation setup bits of the input format: the fuzzed nexus registers; the other nexus
/// registers; a reservation is taken (by the other nexus when it registered).
const REGISTER_OURS: u8 = 1;
const REGISTER_BOTH: u8 = 1 | 2;
const RESERVE: u8 = 4;
/// [`RESERVE`] when only the fuzzed nexus registered: it holds the reservation.
const RESERVE_OURS: u8 = RESERVE;
/// Task attributes of the input format.
const SIMPLE: u8 = 0;
const ORDERED: u8 = 1;
const HEAD: u8 = 2;

/// One seed: a name, where it goes, and the command.
struct Seed {
    name: String,
    lun: u8,
    attr: u8,
    /// Reservation setup bits of the input format.
    setup: u8,
    /// Whether the seed must end GOOD (false only for commands without a tailored seed).
    must_succeed: bool,
    /// Data-Out: the expected length and the pattern the rig repeats to fill it (`None` for
    /// Data-In).
    out: Option<(usize, Vec<u8>)>,
    /// Expected Data-In length.
    expected_in: usize,
    cdb: Vec<u8>,
}

fn put(cdb: &mut [u8], at: usize, bytes: &[u8]) {
    cdb[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A CDB for `op` with its opcode and service action set and every other field zero.
fn blank(op: &OpInfo) -> Vec<u8> {
    let mut c = vec![0u8; op.cdb_len()];
    c[0] = op.opcode;
    if let Some(sa) = op.service_action {
        c[1] = sa;
    }
    c
}

/// Sets the LBA and transfer length fields of a medium-access CDB.
fn rw(op: &OpInfo, lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = blank(op);
    match c.len() {
        6 => {
            put(&mut c, 1, &lba.to_be_bytes()[1..]);
            c[4] = blocks as u8;
        }
        10 => {
            put(&mut c, 2, &lba.to_be_bytes());
            put(&mut c, 7, &blocks.to_be_bytes());
        }
        12 => {
            put(&mut c, 2, &lba.to_be_bytes());
            put(&mut c, 6, &u32::from(blocks).to_be_bytes());
        }
        _ => {
            put(&mut c, 2, &u64::from(lba).to_be_bytes());
            put(&mut c, 10, &u32::from(blocks).to_be_bytes());
        }
    }
    c
}

/// Slug of a command name for file names: "WRITE AND VERIFY(10)" -> "write-and-verify-10".
fn slug(name: &str) -> String {
    let mut s = String::new();
    for ch in name.chars() {
        match ch {
            'A'..='Z' | 'a'..='z' | '0'..='9' => s.push(ch.to_ascii_lowercase()),
            _ if !s.ends_with('-') => s.push('-'),
            _ => {}
        }
    }
    s.trim_end_matches('-').to_string()
}

/// The seeds for one opcode-table entry. `rig` answers MODE SENSE for the MODE SELECT seeds.
fn seeds_for(op: &OpInfo, rig: &mut Rig) -> Vec<Seed> {
    let base = slug(op.name);
    let seed = |suffix: &str, lun, attr, out: Option<(usize, Vec<u8>)>, expected_in, cdb: Vec<u8>| Seed {
        name: if suffix.is_empty() { base.clone() } else { format!("{base}-{suffix}") },
        lun,
        attr,
        setup: 0,
        must_succeed: true,
        out,
        expected_in,
        cdb,
    };
    // Data: 8 blocks of 512 bytes of a recognisable pattern (repeated by the rig, so the seed
    // file stays small).
    let data = (4096, (0..61u8).map(|i| i.wrapping_mul(31).wrapping_add(7)).collect::<Vec<u8>>());
    match op.op {
        Op::Read6 | Op::Read10 | Op::Read12 | Op::Read16 => vec![
            seed("", RAM, SIMPLE, None, 4096, rw(op, 16, 8)),
            seed("nullio", NULL, SIMPLE, None, 4096, rw(op, 1 << 16, 8)),
            seed("ro-4k", RO, SIMPLE, None, 8192, rw(op, 2, 2)),
        ],
        Op::Write6 | Op::Write10 | Op::Write12 | Op::Write16 => vec![
            seed("", RAM, SIMPLE, Some(data.clone()), 0, rw(op, 16, 8)),
            seed("nullio-ordered", NULL, ORDERED, Some(data), 0, rw(op, 1 << 16, 8)),
        ],
        Op::WriteVerify10 | Op::WriteVerify12 | Op::WriteVerify16 => {
            let mut c = rw(op, 32, 8);
            c[1] |= 0x02; // BYTCHK=01b: compare what was written
            vec![seed("", RAM, SIMPLE, Some(data), 0, c)]
        }
        Op::Verify10 | Op::Verify12 | Op::Verify16 => {
            // BYTCHK=0: medium verification only. BYTCHK=01b against zeros never written (the
            // RAM LUN reads zeros there).
            let mut cmp = rw(op, 1000, 1);
            cmp[1] |= 0x02;
            vec![
                seed("", RAM, SIMPLE, None, 0, rw(op, 0, 8)),
                seed("bytchk", RAM, SIMPLE, Some((512, vec![0])), 0, cmp),
            ]
        }
        Op::Prefetch10 | Op::Prefetch16 | Op::SyncCache10 | Op::SyncCache16 => {
            vec![seed("", RAM, SIMPLE, None, 0, rw(op, 0, 8))]
        }
        Op::Inquiry => {
            let mut v = Vec::new();
            let mut c = blank(op);
            put(&mut c, 3, &96u16.to_be_bytes());
            v.push(seed("", RAM, HEAD, None, 96, c.clone()));
            v.push(seed("unmapped-lun", UNMAPPED, SIMPLE, None, 96, c));
            for page in [0x00u8, 0x80, 0x83, 0x86, 0xb0, 0xb1, 0xb2] {
                let mut c = blank(op);
                c[1] = 1; // EVPD
                c[2] = page;
                put(&mut c, 3, &255u16.to_be_bytes());
                v.push(seed(&format!("vpd-{page:02x}"), RAM, SIMPLE, None, 255, c));
            }
            v
        }
        Op::RequestSense => {
            let mut c = blank(op);
            c[4] = 252;
            vec![seed("", RAM, SIMPLE, None, 252, c.clone()), seed("unmapped-lun", UNMAPPED, SIMPLE, None, 252, c)]
        }
        Op::ModeSense6 => {
            let mut c = blank(op);
            c[2] = 0x3f; // all pages, current values
            c[4] = 255;
            vec![seed("", RAM, SIMPLE, None, 255, c)]
        }
        Op::ModeSense10 => {
            let mut c = blank(op);
            c[1] = 0x10; // LLBAA
            c[2] = 0x3f;
            put(&mut c, 7, &1024u16.to_be_bytes());
            vec![seed("", NULL, SIMPLE, None, 1024, c)]
        }
        Op::ModeSelect6 | Op::ModeSelect10 => {
            // Send back the current caching page (PS cleared), with a header and no block
            // descriptors: a parameter list the device accepts.
            let page = current_page(rig, 0x08);
            let six = op.opcode == 0x15;
            let mut list = vec![0u8; if six { 4 } else { 8 }];
            list.extend_from_slice(&page);
            let mut c = blank(op);
            c[1] = 0x10; // PF
            if six {
                c[4] = list.len() as u8;
            } else {
                put(&mut c, 7, &(list.len() as u16).to_be_bytes());
            }
            vec![seed("caching", RAM, SIMPLE, Some((list.len(), list)), 0, c)]
        }
        Op::StartStopUnit => {
            let mut c = blank(op);
            c[4] = 0x01; // START
            vec![seed("", RAM, SIMPLE, None, 0, c)]
        }
        Op::PreventAllow => {
            let mut c = blank(op);
            c[4] = 0x01; // PREVENT
            vec![seed("", RAM, SIMPLE, None, 0, c)]
        }
        Op::ReadCapacity10 => vec![seed("", RO, SIMPLE, None, 8, blank(op))],
        Op::ReadCapacity16 => {
            let mut c = blank(op);
            put(&mut c, 10, &32u32.to_be_bytes());
            vec![seed("", NULL, SIMPLE, None, 32, c)]
        }
        Op::ReportLuns => {
            let mut c = blank(op);
            put(&mut c, 6, &4096u32.to_be_bytes());
            vec![seed("", RAM, SIMPLE, None, 4096, c.clone()), seed("unmapped-lun", UNMAPPED, SIMPLE, None, 4096, c)]
        }
        Op::ReportSupportedOpcodes => {
            let mut all = blank(op);
            put(&mut all, 6, &8192u32.to_be_bytes());
            let mut one = blank(op);
            one[2] = 0x01; // REPORTING OPTIONS 001b: one command, no service action
            one[3] = 0x28;
            put(&mut one, 6, &64u32.to_be_bytes());
            let mut sa = blank(op);
            sa[2] = 0x02; // 010b: one command with service action
            sa[3] = 0x9e;
            put(&mut sa, 4, &0x10u16.to_be_bytes());
            put(&mut sa, 6, &64u32.to_be_bytes());
            vec![
                seed("", RAM, SIMPLE, None, 8192, all),
                seed("one", RAM, SIMPLE, None, 64, one),
                seed("one-sa", RAM, SIMPLE, None, 64, sa),
            ]
        }
        Op::ReportSupportedTmf | Op::ReportTargetPortGroups => {
            let mut c = blank(op);
            put(&mut c, 6, &512u32.to_be_bytes());
            vec![seed("", RAM, SIMPLE, None, 512, c)]
        }
        Op::ReadDefectData10 | Op::ReadDefectData12 => {
            let mut c = blank(op);
            if c.len() == 10 {
                c[2] = 0x18; // PLIST + GLIST, address format 000b
                put(&mut c, 7, &512u16.to_be_bytes());
            } else {
                c[1] = 0x18;
                put(&mut c, 6, &512u32.to_be_bytes());
            }
            vec![seed("", RAM, SIMPLE, None, 512, c)]
        }
        Op::Reserve6 | Op::Release6 | Op::Reserve10 | Op::Release10 | Op::TestUnitReady => {
            vec![seed("", RAM, SIMPLE, None, 0, blank(op))]
        }
        Op::PersistentReserveIn => {
            let mut c = blank(op);
            put(&mut c, 7, &1024u16.to_be_bytes());
            // With a registration and a reservation in place, so there is something to report.
            vec![Seed { setup: REGISTER_BOTH | RESERVE, ..seed("", RAM, SIMPLE, None, 1024, c) }]
        }
        Op::PersistentReserveOut => vec![prout_seed(op, rig, seed("", RAM, SIMPLE, None, 0, Vec::new()))],
        // Newer commands, matched by opcode so this file builds whether or not the `Op` enum
        // names them yet.
        _ => match (op.opcode, op.service_action) {
            // WRITE SAME(10)/(16): one block of data written to 8 blocks.
            (0x41, _) | (0x93, _) => vec![seed("", RAM, SIMPLE, Some((512, vec![0xa5])), 0, rw(op, 64, 8))],
            // UNMAP: one descriptor of 8 blocks at LBA 64.
            (0x42, _) => {
                let mut list = vec![0u8; 24];
                put(&mut list, 0, &22u16.to_be_bytes());
                put(&mut list, 2, &16u16.to_be_bytes());
                put(&mut list, 8, &64u64.to_be_bytes());
                put(&mut list, 16, &8u32.to_be_bytes());
                let mut c = blank(op);
                put(&mut c, 7, &24u16.to_be_bytes());
                vec![seed("", RAM, SIMPLE, Some((24, list)), 0, c)]
            }
            // COMPARE AND WRITE of one block never written (zeros): compare zeros, write data.
            (0x89, _) => {
                let mut c = blank(op);
                put(&mut c, 2, &2000u64.to_be_bytes());
                c[13] = 1;
                let mut data = vec![0u8; 1024];
                data[512..].fill(0x3c);
                vec![seed("", RAM, SIMPLE, Some((1024, data)), 0, c)]
            }
            // ORWRITE(16): like a write.
            (0x8b, _) => vec![seed("", RAM, SIMPLE, Some((4096, vec![0x81])), 0, rw(op, 16, 8))],
            // WRITE ATOMIC(16): LBA in bytes 2..10, length in bytes 12..14.
            (0x9c, _) => {
                let mut c = blank(op);
                put(&mut c, 2, &16u64.to_be_bytes());
                put(&mut c, 12, &8u16.to_be_bytes());
                vec![seed("", RAM, SIMPLE, Some((4096, vec![0x42])), 0, c)]
            }
            // GET LBA STATUS from LBA 0.
            (0x9e, Some(0x12)) => {
                let mut c = blank(op);
                put(&mut c, 10, &1024u32.to_be_bytes());
                vec![seed("", RAM, SIMPLE, None, 1024, c)]
            }
            // Anything else: the bare CDB, whatever it answers.
            _ => vec![Seed { must_succeed: false, ..seed("", RAM, SIMPLE, None, 0, blank(op)) }],
        },
    }
}

/// A PERSISTENT RESERVE OUT seed for `op`'s service action, with the reservation setup it needs
/// to succeed on a fresh target. `base` gives the name and LUN.
fn prout_seed(op: &OpInfo, rig: &Rig, base: Seed) -> Seed {
    let sa = op.service_action.unwrap_or(0);
    let wr_ex = 0x01; // LU_SCOPE, Write Exclusive
    let (setup, scope_type, key, sa_key) = match sa {
        0 | 6 => (0, 0, 0, OUR_KEY),                       // REGISTER (AND IGNORE EXISTING KEY)
        1 => (REGISTER_OURS, wr_ex, OUR_KEY, 0),           // RESERVE
        2 => (REGISTER_OURS | RESERVE, wr_ex, OUR_KEY, 0), // RELEASE our reservation
        3 => (REGISTER_OURS, 0, OUR_KEY, 0),               // CLEAR
        // PREEMPT (AND ABORT) the other nexus's reservation.
        4 | 5 => (REGISTER_BOTH | RESERVE, wr_ex, OUR_KEY, OTHER_KEY),
        // REGISTER AND MOVE our reservation to the other nexus.
        _ => (REGISTER_OURS | RESERVE_OURS, wr_ex, OUR_KEY, OTHER_KEY),
    };
    let mut params = vec![0u8; 24];
    params[..8].copy_from_slice(&key.to_be_bytes());
    params[8..16].copy_from_slice(&sa_key.to_be_bytes());
    if sa == 7 {
        let tid = transport_id(rig.other.session().nexus());
        params[18..20].copy_from_slice(&1u16.to_be_bytes()); // relative target port 1
        params[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
        params.extend_from_slice(&tid);
    }
    let mut c = blank(op);
    c[2] = scope_type;
    put(&mut c, 5, &(params.len() as u32).to_be_bytes());
    Seed { setup, out: Some((params.len(), params)), cdb: c, ..base }
}

/// The current value of mode page `code` on the RAM LUN, PS bit cleared.
fn current_page(rig: &mut Rig, code: u8) -> Vec<u8> {
    let cdb = [0x1a, 0x08, code, 0, 255, 0];
    let mut buf = [0u8; 255];
    let o = rig.init.execute(scst_fuzz::RAM_LUN, &cdb, &[], &mut buf);
    assert!(o.is_good(), "MODE SENSE page {code:#04x}: {:?}", o.sense_code());
    let page = &buf[4 + usize::from(buf[3])..];
    let len = usize::from(page[1]) + 2;
    let mut p = page[..len].to_vec();
    p[0] &= 0x3f;
    p
}

fn main() {
    let out_dir: PathBuf = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus").join("cdb"), PathBuf::from);
    std::fs::create_dir_all(&out_dir).expect("create corpus directory");
    for e in std::fs::read_dir(&out_dir).expect("read corpus directory") {
        let p = e.expect("corpus entry").path();
        if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("seed-")) {
            std::fs::remove_file(&p).expect("remove old seed");
        }
    }
    let mut rig = Rig::new();
    let mut n = 0;
    for op in DISK_OPS {
        let seeds = seeds_for(op, &mut rig);
        assert!(!seeds.is_empty(), "no seed for {}", op.name);
        for s in seeds {
            assert!(s.cdb.len() <= MAX_CDB);
            let (data_out, expected, pattern) = match &s.out {
                Some((len, pattern)) => (true, *len, &pattern[..]),
                None => (false, s.expected_in, &[][..]),
            };
            let bytes = Input::encode(s.lun, s.attr, s.setup, data_out, expected, &s.cdb, pattern);
            // Every seed must succeed on a fresh target (no leftovers from other seeds).
            let o = Rig::new().run(&bytes);
            if s.must_succeed {
                assert!(o.is_good(), "seed {} ended {:?} {:?}", s.name, o.status, o.sense_code());
            } else if !o.is_good() {
                println!("note: no tailored seed for {}: it ends {:?} {:?}", s.name, o.status, o.sense_code());
            }
            std::fs::write(out_dir.join(format!("seed-{}", s.name)), &bytes).expect("write seed");
            n += 1;
        }
    }
    println!("wrote {n} seeds for {} opcode-table entries to {}", DISK_OPS.len(), out_dir.display());
}
