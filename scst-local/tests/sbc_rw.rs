//! SBC-3 medium access commands on a RAM disk: READ/WRITE(6/10/12/16), VERIFY and WRITE AND
//! VERIFY(10/12/16), SYNCHRONIZE CACHE and PRE-FETCH(10/16); LBA range checks, transfer limits,
//! protection fields, residuals, read-only LUNs and 4096-byte blocks.

#[macro_use]
mod common;

use common::*;
use scst::{CmdHeader, DataDir, Lun, ScsiStatus, Step, TaskAttr};
use scst_local::LocalInitiator;

const N: u64 = 2048;

fn ram() -> Rig {
    Rig::new(Backend::Ram, N, 512)
}

/// Submits a command through the session API directly and returns what the core did with it
/// before any data transfer: `Some(outcome)` when it completed at once (status, key/ASC/ASCQ),
/// `None` when it asked for Data-Out.
fn submit_without_data(i: &LocalInitiator, lun: u16, cdb: &[u8], expected_len: u32) -> Option<(ScsiStatus, Vec<u8>)> {
    let hdr = CmdHeader {
        lun: Lun(lun).to_sam(),
        cdb,
        attr: TaskAttr::Simple,
        tag: 0x5eed,
        expected_len,
        expected_dir: DataDir::Out,
    };
    let cmd = i.session().alloc_cmd(&hdr).expect("command");
    match i.session().submit(cmd) {
        Step::Done(c) => Some((c.status(), c.sense().to_vec())),
        Step::NeedData(_) => None,
        Step::Pending => panic!("a command without data went to a worker"),
    }
}

// ------------------------------------------------------------------------------------------------
// Round trips
// ------------------------------------------------------------------------------------------------

#[test]
fn every_read_and_write_opcode_round_trips_at_first_and_last_lba() {
    let r = ram();
    let i = r.login();
    let mut seed = 0;
    for wop in [WRITE6, WRITE10, WRITE12, WRITE16] {
        for (lba, blocks) in [(0, 1), (N - 1, 1), (N - 8, 8), (0, 255), (1000, 17)] {
            seed += 1;
            let data = pattern(seed, blocks as usize * 512);
            let o = i.execute(0, &rw(wop, 0, lba, blocks), &data, &mut []);
            assert_good(&o);
            assert_eq!(o.residual, (false, 0));
            for rop in [READ6, READ10, READ12, READ16] {
                let mut back = vec![0u8; data.len()];
                let o = i.execute(0, &rw(rop, 0, lba, blocks), &[], &mut back);
                assert_good(&o);
                assert_eq!(o.data_in_len, data.len());
                assert_eq!(o.residual, (false, 0));
                assert!(back == data, "write {wop:#x} read {rop:#x} at {lba}+{blocks}");
            }
        }
    }
    // Neighbours of a write are untouched.
    write(&i, 0, 100, 512, &[0u8; 3 * 512]);
    write(&i, 0, 101, 512, &pattern(99, 512));
    let d = read(&i, 0, 100, 512, 3);
    assert!(d[..512].iter().all(|&b| b == 0) && d[1024..].iter().all(|&b| b == 0));
    assert_eq!(d[512..1024], pattern(99, 512));
}

#[test]
fn six_byte_transfer_length_zero_means_256_blocks() {
    let r = ram();
    let i = r.login();
    let data = pattern(7, 256 * 512);
    let o = i.execute(0, &rw6(WRITE6, 10, 0), &data, &mut []);
    assert_good(&o);
    assert_eq!(read(&i, 0, 10, 512, 256), data);
    let mut back = vec![0u8; 256 * 512];
    let o = i.execute(0, &rw6(READ6, 10, 0), &[], &mut back);
    assert_good(&o);
    assert_eq!(o.data_in_len, 256 * 512);
    assert!(back == data);
    // At the end of the medium: 256 blocks fit exactly at N - 256, not at N - 255.
    assert_good(&i.execute(0, &rw6(READ6, (N - 256) as u32, 0), &[], &mut back));
    assert_oob(&i.execute(0, &rw6(READ6, (N - 255) as u32, 0), &[], &mut back));
}

#[test]
fn dpo_and_fua_are_accepted() {
    let r = ram();
    let i = r.login();
    let mut seed = 100;
    for flags in [0x08, 0x10, 0x18] {
        for (wop, rop) in [(WRITE10, READ10), (WRITE12, READ12), (WRITE16, READ16)] {
            seed += 1;
            let data = pattern(seed, 2 * 512);
            assert_good(&i.execute(0, &rw(wop, flags, 40, 2), &data, &mut []));
            let mut back = vec![0u8; 1024];
            assert_good(&i.execute(0, &rw(rop, flags, 40, 2), &[], &mut back));
            assert_eq!(back, data);
        }
        for op in [VERIFY10, VERIFY12, VERIFY16, WRITE_VERIFY10, WRITE_VERIFY12, WRITE_VERIFY16] {
            let data = read(&i, 0, 40, 512, 2);
            let f = flags & 0x10; // VERIFY and WRITE AND VERIFY have DPO, no FUA
            assert_good(&i.execute(0, &rw(op, f | 0x02, 40, 2), &data, &mut []));
        }
    }
    // FUA_NV and the reserved bit are not.
    assert_invalid_cdb(&i.execute(0, &rw(READ10, 0x02, 0, 1), &[], &mut [0; 512]), 1, Some(1));
    assert_invalid_cdb(&i.execute(0, &rw(WRITE16, 0x04, 0, 1), &[0; 512], &mut []), 1, Some(2));
}

// ------------------------------------------------------------------------------------------------
// Protection information fields
// ------------------------------------------------------------------------------------------------

#[test]
fn protect_fields_are_refused_before_any_data_moves() {
    let r = ram();
    let i = r.login();
    let original = pattern(5, 512);
    write(&i, 0, 0, 512, &original);
    for p in 1..8u8 {
        for op in [READ10, READ12, READ16] {
            let o = i.execute(0, &rw(op, p << 5, 0, 1), &[], &mut [0; 512]);
            assert_invalid_cdb(&o, 1, Some(7));
        }
        for op in [WRITE10, WRITE12, WRITE16, WRITE_VERIFY10, WRITE_VERIFY12, WRITE_VERIFY16] {
            let o = i.execute(0, &rw(op, p << 5, 0, 1), &[0xff; 512], &mut []);
            assert_invalid_cdb(&o, 1, Some(7));
        }
        for op in [VERIFY10, VERIFY12, VERIFY16] {
            let o = i.execute(0, &rw(op, p << 5 | 0x02, 0, 1), &original, &mut []);
            assert_invalid_cdb(&o, 1, Some(7));
        }
    }
    assert_eq!(read(&i, 0, 0, 512, 1), original);
    // The WRITE is answered without asking for its data.
    let (st, sense) = submit_without_data(&i, 0, &rw(WRITE10, 0x20, 0, 1), 512).expect("no data transfer");
    assert_eq!(st, ScsiStatus::CHECK_CONDITION);
    assert_eq!(sense_triple(&sense), Some((5, 0x24, 0)));
}

// ------------------------------------------------------------------------------------------------
// LBA range checks
// ------------------------------------------------------------------------------------------------

/// How a command moves data for a given transfer length.
#[derive(Clone, Copy)]
enum Flow {
    In,
    Out,
    None,
}

/// Runs `op` at `lba` for `len` blocks with the data it needs.
fn run(i: &LocalInitiator, op: u8, flags: u8, flow: Flow, lba: u64, len: u32) -> scst_local::Outcome {
    let blocks = if op == READ6 || op == WRITE6 { if len == 0 { 256 } else { len } } else { len };
    let bytes = blocks as usize * 512;
    match flow {
        Flow::In => i.execute(0, &rw(op, flags, lba, len), &[], &mut vec![0u8; bytes]),
        Flow::Out => i.execute(0, &rw(op, flags, lba, len), &vec![0u8; bytes], &mut []),
        Flow::None => i.execute(0, &rw(op, flags, lba, len), &[], &mut []),
    }
}

const MEDIUM_OPS: [(u8, u8, Flow); 14] = [
    (READ10, 0, Flow::In),
    (READ12, 0, Flow::In),
    (READ16, 0, Flow::In),
    (WRITE10, 0, Flow::Out),
    (WRITE12, 0, Flow::Out),
    (WRITE16, 0, Flow::Out),
    (VERIFY10, 0x02, Flow::Out),
    (VERIFY12, 0x02, Flow::Out),
    (VERIFY16, 0x02, Flow::Out),
    (WRITE_VERIFY10, 0x02, Flow::Out),
    (WRITE_VERIFY12, 0x02, Flow::Out),
    (WRITE_VERIFY16, 0x02, Flow::Out),
    (PREFETCH10, 0, Flow::None),
    (PREFETCH16, 0, Flow::None),
];

#[test]
fn lba_out_of_range() {
    let r = ram();
    let i = r.login();
    for (op, flags, flow) in MEDIUM_OPS {
        let sixteen = op >> 5 == 4;
        let max_lba = if sixteen { u64::MAX } else { u64::from(u32::MAX) };
        // In range.
        for (lba, len) in [(0, 0), (0, 1), (N - 1, 1), (N - 256, 256), (N - 1, 0)] {
            assert_good(&run(&i, op, flags, flow, lba, len));
        }
        // Out of range, including zero-length transfers past the last LBA.
        let mut bad = vec![(N, 1), (N - 1, 2), (N - 255, 256), (N, 0), (N + 1, 0), (N + 1, 1), (1 << 31, 1)];
        bad.extend([(max_lba, 1), (max_lba, 256), (max_lba, 0), (max_lba - 255, 256)]);
        if sixteen {
            bad.extend([(1 << 55, 1), (1 << 54, 256), (1 << 63, 1), (1 << 63, 0), ((1 << 55) - 1, 2)]);
        }
        for (lba, len) in bad {
            let o = run(&i, op, flags, flow, lba, len);
            assert_eq!(o.status, ScsiStatus::CHECK_CONDITION, "{op:#x} lba {lba:#x} len {len}");
            assert_eq!(sense_triple(o.sense()), Some((5, 0x21, 0)), "{op:#x} lba {lba:#x} len {len}");
        }
    }
    // The 6-byte commands: 21-bit LBA.
    for (op, flow) in [(READ6, Flow::In), (WRITE6, Flow::Out)] {
        assert_good(&run(&i, op, 0, flow, N - 1, 1));
        assert_oob(&run(&i, op, 0, flow, N, 1));
        assert_oob(&run(&i, op, 0, flow, N - 1, 2));
        assert_oob(&run(&i, op, 0, flow, 0x1f_ffff, 1));
        assert_oob(&run(&i, op, 0, flow, 0x1f_ffff, 0));
    }
}

#[test]
fn out_of_range_write_moves_no_data() {
    let r = ram();
    let i = r.login();
    let last = pattern(8, 512);
    write(&i, 0, N - 1, 512, &last);
    for op in [WRITE10, WRITE16, WRITE_VERIFY16] {
        let o = i.execute(0, &rw(op, 0, N - 1, 2), &[0xaa; 1024], &mut []);
        assert_oob(&o);
        assert_eq!(read(&i, 0, N - 1, 512, 1), last, "{op:#x}");
        assert_eq!(
            submit_without_data(&i, 0, &rw(op, 0, N - 1, 2), 1024).map(|(s, _)| s),
            Some(ScsiStatus::CHECK_CONDITION)
        );
    }
    // A valid write does ask for its data. Abandoned at that point (the fabric dropped it), it
    // leaves nothing behind: an ORDERED command still runs at once, and the data is unchanged.
    assert_eq!(submit_without_data(&i, 0, &rw(WRITE10, 0, N - 2, 2), 1024), None);
    assert_good(&i.execute_attr(0, &TUR, &[], &mut [], TaskAttr::Ordered));
    assert_eq!(read(&i, 0, N - 1, 512, 1), last);
    assert_eq!(i.session().outstanding(), 0);
}

#[test]
fn synchronize_cache_ranges() {
    let r = ram();
    let i = r.login();
    for op in [SYNC_CACHE10, SYNC_CACHE16] {
        // NUMBER OF LOGICAL BLOCKS 0: to the end of the medium.
        for (flags, lba, len) in
            [(0, 0, 0), (0x02, 0, 0), (0x04, 0, 0), (0x06, N - 1, 0), (0, N - 1, 1), (0, 0, N as u32)]
        {
            assert_good(&run(&i, op, flags, Flow::None, lba, len));
        }
        for (lba, len) in [(N, 0), (N, 1), (N - 1, 2), (0, N as u32 + 1), (u64::from(u32::MAX), 1)] {
            assert_oob(&run(&i, op, 0, Flow::None, lba, len));
        }
        assert_invalid_cdb(&run(&i, op, 0x01, Flow::None, 0, 0), 1, Some(0));
        assert_invalid_cdb(&run(&i, op, 0x08, Flow::None, 0, 0), 1, Some(3));
    }
    let mut c = cdb16(SYNC_CACHE16, 0, u64::MAX, 1);
    assert_oob(&i.execute(0, &c, &[], &mut []));
    // Group number.
    c = cdb16(SYNC_CACHE16, 0, 0, 1);
    c[14] = 0x1f;
    assert_good(&i.execute(0, &c, &[], &mut []));
    c[14] = 0x20;
    assert_invalid_cdb(&i.execute(0, &c, &[], &mut []), 14, Some(5));
}

#[test]
fn prefetch_flags_and_ranges() {
    let r = ram();
    let i = r.login();
    for op in [PREFETCH10, PREFETCH16] {
        for count in [1, 2, 128, 256] {
            assert_good(&run(&i, op, 0, Flow::None, 0, count));
            assert_good(&run(&i, op, 0, Flow::None, N - u64::from(count), count));
            assert_oob(&run(&i, op, 0, Flow::None, N + 1 - u64::from(count), count));
        }
        assert_good(&run(&i, op, 0x02, Flow::None, 0, 1)); // IMMED
        assert_invalid_cdb(&run(&i, op, 0x01, Flow::None, 0, 1), 1, Some(0));
    }
    let mut c = cdb10(PREFETCH10, 0x02, 0, 1);
    c[6] = 3; // group number
    assert_good(&i.execute(0, &c, &[], &mut []));
    let mut c = cdb16(PREFETCH16, 0x02, 0, 1);
    c[14] = 3;
    assert_good(&i.execute(0, &c, &[], &mut []));
}

#[test]
fn transfer_length_limit() {
    let r = Rig::new(Backend::Ram, 262_144, 512);
    let i = r.login();
    let max = 131_072u32; // 64 MiB
    let data = pattern(11, max as usize * 512);
    assert_good(&i.execute(0, &cdb16(WRITE16, 0, 1, max), &data, &mut []));
    let mut back = vec![0u8; data.len()];
    let o = i.execute(0, &cdb16(READ16, 0, 1, max), &[], &mut back);
    assert_good(&o);
    assert!(back == data);
    drop(back);
    // One block more: INVALID FIELD IN CDB at the transfer length (10-byte CDBs cannot name
    // that many blocks).
    for (op, flags, field) in [
        (READ12, 0, 6),
        (READ16, 0, 10),
        (WRITE12, 0, 6),
        (WRITE16, 0, 10),
        (VERIFY16, 0x02, 10),
        (WRITE_VERIFY12, 0x02, 6),
        // VERIFY without data still reads the medium: SBC-4 bounds its verification length too.
        (VERIFY16, 0, 10),
    ] {
        let o = i.execute(0, &rw(op, flags, 0, max + 1), &[], &mut []);
        assert_invalid_cdb(&o, field, Some(7));
    }
    assert_good(&i.execute(0, &cdb16(VERIFY16, 0, 0, max), &[], &mut []));
    // Commands that read nothing have no such limit.
    assert_good(&i.execute(0, &cdb16(PREFETCH16, 0, 0, 262_144), &[], &mut []));
    assert_good(&i.execute(0, &cdb16(SYNC_CACHE16, 0, 0, 262_144), &[], &mut []));
    // 4096-byte blocks: the limit is 16384 blocks.
    let r4 = Rig::new(Backend::Ram, 32768, 4096);
    let j = r4.login();
    assert_good(&j.execute(0, &cdb16(READ16, 0, 0, 16384), &[], &mut vec![0u8; 64 << 20]));
    assert_invalid_cdb(&j.execute(0, &cdb16(READ16, 0, 0, 16385), &[], &mut []), 10, Some(7));
}

// ------------------------------------------------------------------------------------------------
// VERIFY, WRITE AND VERIFY
// ------------------------------------------------------------------------------------------------

#[test]
fn verify_byte_check() {
    let r = ram();
    let i = r.login();
    let data = pattern(21, 4 * 512);
    write(&i, 0, 10, 512, &data);
    let mut bad = data.clone();
    bad[1234] ^= 0x40;
    for op in [VERIFY10, VERIFY12, VERIFY16] {
        // BYTCHK=0: medium verification, no data.
        assert_good(&i.execute(0, &rw(op, 0, 10, 4), &[], &mut []));
        // BYTCHK=1: the data matches.
        assert_good(&i.execute(0, &rw(op, 0x02, 10, 4), &data, &mut []));
        // A difference: MISCOMPARE, INFORMATION = offset of the first differing byte.
        let o = i.execute(0, &rw(op, 0x02, 10, 4), &bad, &mut []);
        assert_check(&o, 0x0e, 0x1d, 0x00);
        assert_eq!(o.sense(), &[0xf0, 0, 0x0e, 0, 0, 0x04, 0xd2, 10, 0, 0, 0, 0, 0x1d, 0, 0, 0, 0, 0]);
        assert_eq!(information(o.sense()), Some(1234));
        // BYTCHK=0 does not look at data.
        assert_good(&i.execute(0, &rw(op, 0, 10, 4), &[], &mut []));
        // BYTCHK=2 is reserved.
        assert_invalid_cdb(&i.execute(0, &rw(op, 0x04, 10, 1), &data[..512], &mut []), 1, Some(2));
        // Zero blocks.
        assert_good(&i.execute(0, &rw(op, 0x02, 10, 0), &[], &mut []));
    }
    // Differences in the first and the last byte.
    let mut first = data.clone();
    first[0] ^= 1;
    assert_eq!(information(i.execute(0, &rw(VERIFY16, 0x02, 10, 4), &first, &mut []).sense()), Some(0));
    let mut last = data.clone();
    last[4 * 512 - 1] ^= 1;
    assert_eq!(information(i.execute(0, &rw(VERIFY16, 0x02, 10, 4), &last, &mut []).sense()), Some(2047));
    // The medium is untouched by VERIFY.
    assert_eq!(read(&i, 0, 10, 512, 4), data);
}

#[test]
fn verify_byte_check_single_block() {
    let r = ram();
    let i = r.login();
    let block = pattern(31, 512);
    let four: Vec<u8> = block.iter().copied().cycle().take(4 * 512).collect();
    write(&i, 0, 20, 512, &four);
    // BYTCHK=11b: one block of data, compared with each block of the range.
    for op in [VERIFY10, VERIFY12, VERIFY16] {
        assert_good(&i.execute(0, &rw(op, 0x06, 20, 4), &block, &mut []));
    }
    let mut changed = block.clone();
    changed[7] ^= 0xff;
    write(&i, 0, 22, 512, &changed);
    let o = i.execute(0, &rw(VERIFY16, 0x06, 20, 4), &block, &mut []);
    assert_check(&o, 0x0e, 0x1d, 0x00);
    assert_eq!(information(o.sense()), Some(2 * 512 + 7));
    assert_good(&i.execute(0, &rw(VERIFY16, 0x06, 20, 2), &block, &mut []));
}

#[test]
fn verify_miscompare_in_descriptor_format_and_across_chunks() {
    let r = Rig::new(Backend::Ram, 8192, 512);
    let i = r.login();
    let data = pattern(41, 4096 * 512);
    write(&i, 0, 0, 512, &data);
    assert_good(&i.execute(0, &cdb16(VERIFY16, 0x02, 0, 4096), &data, &mut []));
    // Beyond the first megabyte the device compares piece by piece: the offset is still from
    // the start of the Data-Out buffer.
    let mut bad = data.clone();
    let at = (3 << 19) + 3;
    bad[at] ^= 0x10;
    let o = i.execute(0, &cdb16(VERIFY16, 0x02, 0, 4096), &bad, &mut []);
    assert_check(&o, 0x0e, 0x1d, 0x00);
    assert_eq!(information(o.sense()), Some(at as u64));
    // Descriptor format: an information descriptor with VALID set.
    assert_good(&select_control(&i, 0, 0x04, 0, 0));
    let o = i.execute(0, &cdb16(VERIFY16, 0x02, 0, 4096), &bad, &mut []);
    let mut want = vec![0x72, 0x0e, 0x1d, 0, 0, 0, 0, 12, 0x00, 0x0a, 0x80, 0];
    want.extend((at as u64).to_be_bytes());
    assert_eq!(o.sense(), want);
}

#[test]
fn write_and_verify() {
    let r = ram();
    let i = r.login();
    let mut seed = 50;
    for op in [WRITE_VERIFY10, WRITE_VERIFY12, WRITE_VERIFY16] {
        for bytchk in [0x00, 0x02] {
            seed += 1;
            let data = pattern(seed, 3 * 512);
            assert_good(&i.execute(0, &rw(op, bytchk, 60, 3), &data, &mut []));
            assert_eq!(read(&i, 0, 60, 512, 3), data, "{op:#x} bytchk {bytchk}");
        }
        // BYTCHK 10b and 11b are not defined for WRITE AND VERIFY.
        for bytchk in [0x04, 0x06] {
            let o = i.execute(0, &rw(op, bytchk, 60, 1), &[0xff; 512], &mut []);
            assert_invalid_cdb(&o, 1, Some(2));
        }
        assert_good(&i.execute(0, &rw(op, 0x10, 60, 0), &[], &mut []));
    }
}

// ------------------------------------------------------------------------------------------------
// Residuals
// ------------------------------------------------------------------------------------------------

#[test]
fn read_residuals() {
    let r = ram();
    let i = r.login();
    let data = pattern(61, 4 * 512);
    write(&i, 0, 0, 512, &data);
    // The initiator expects less than the CDB asks for: overflow, the first bytes are sent.
    let mut buf = vec![0u8; 1024];
    let o = i.execute(0, &cdb10(READ10, 0, 0, 4), &[], &mut buf);
    assert_good(&o);
    assert_eq!((o.data_in_len, o.residual), (1024, (true, 1024)));
    assert_eq!(buf, data[..1024]);
    // Not a whole number of blocks.
    let mut buf = vec![0u8; 700];
    let o = i.execute(0, &cdb10(READ10, 0, 0, 2), &[], &mut buf);
    assert_good(&o);
    assert_eq!((o.data_in_len, o.residual), (700, (true, 324)));
    assert_eq!(buf, data[..700]);
    // More than the CDB asks for: underflow.
    let mut buf = vec![0u8; 3 * 512];
    let o = i.execute(0, &cdb10(READ10, 0, 0, 2), &[], &mut buf);
    assert_good(&o);
    assert_eq!((o.data_in_len, o.residual), (1024, (false, 512)));
    assert_eq!(buf[..1024], data[..1024]);
    // Nothing expected at all.
    let o = i.execute(0, &cdb10(READ10, 0, 0, 2), &[], &mut []);
    assert_good(&o);
    assert_eq!((o.data_in_len, o.residual), (0, (true, 1024)));
}

#[test]
fn write_residuals() {
    let r = ram();
    let i = r.login();
    let old = pattern(71, 4 * 512);
    write(&i, 0, 0, 512, &old);
    // Fewer bytes than the CDB describes: only the whole blocks sent are written.
    let new = pattern(72, 2 * 512);
    let o = i.execute(0, &cdb10(WRITE10, 0, 0, 4), &new, &mut []);
    assert_good(&o);
    assert_eq!(o.residual, (true, 1024));
    let d = read(&i, 0, 0, 512, 4);
    assert_eq!(d[..1024], new[..]);
    assert_eq!(d[1024..], old[1024..], "blocks the initiator did not send are unchanged");
    // More bytes than the CDB describes: the CDB's blocks are written, the rest is ignored.
    let more = pattern(73, 3 * 512);
    let o = i.execute(0, &cdb10(WRITE10, 0, 0, 2), &more, &mut []);
    assert_good(&o);
    assert_eq!(o.residual, (false, 512));
    let d = read(&i, 0, 0, 512, 4);
    assert_eq!(d[..1024], more[..1024]);
    assert_eq!(d[1024..], old[1024..]);
    // Not a multiple of the block size: INVALID FIELD IN COMMAND INFORMATION UNIT, nothing
    // written.
    let o = i.execute(0, &cdb10(WRITE10, 0, 0, 2), &[0xff; 700], &mut []);
    assert_check(&o, 0x05, 0x0e, 0x03);
    assert_eq!(o.residual, (true, 324), "the lengths are known, so the residual is reported");
    assert_eq!(read(&i, 0, 0, 512, 4)[..1024], more[..1024]);
    let o = i.execute(0, &cdb16(WRITE_VERIFY16, 0x02, 0, 2), &[0xff; 513], &mut []);
    assert_check(&o, 0x05, 0x0e, 0x03);
}

// ------------------------------------------------------------------------------------------------
// Read-only logical units
// ------------------------------------------------------------------------------------------------

const WRITES: [u8; 7] = [WRITE6, WRITE10, WRITE12, WRITE16, WRITE_VERIFY10, WRITE_VERIFY12, WRITE_VERIFY16];

#[test]
fn read_only_mapping_refuses_writes_before_data_transfer() {
    let r = ram();
    r.target.add_lun(Lun(1), r.dev.clone(), true).expect("read-only mapping");
    let i = r.login();
    i.clear_unit_attentions(1);
    let data = pattern(81, 512);
    write(&i, 0, 9, 512, &data);
    for op in WRITES {
        let o = i.execute(1, &rw(op, 0, 9, 1), &[0xff; 512], &mut []);
        assert_check(&o, 0x07, 0x27, 0x00);
        let (st, sense) = submit_without_data(&i, 1, &rw(op, 0, 9, 1), 512).expect("refused before Data-Out");
        assert_eq!(st, ScsiStatus::CHECK_CONDITION);
        assert_eq!(sense_triple(&sense), Some((7, 0x27, 0)));
        // Even out of range or with invalid fields, the write protection comes first.
        assert_check(&i.execute(1, &rw(op, 0, N + 5, 1), &[0xff; 512], &mut []), 0x07, 0x27, 0x00);
    }
    // Reads, verification and cache commands work.
    assert_eq!(read(&i, 1, 9, 512, 1), data);
    assert_good(&i.execute(1, &cdb10(VERIFY10, 0x02, 9, 1), &data, &mut []));
    assert_good(&i.execute(1, &cdb10(SYNC_CACHE10, 0, 0, 0), &[], &mut []));
    assert_good(&i.execute(1, &cdb10(PREFETCH10, 0, 0, 1), &[], &mut []));
    // The writable mapping of the same device still writes.
    write(&i, 0, 9, 512, &pattern(82, 512));
    assert_eq!(read(&i, 1, 9, 512, 1), pattern(82, 512));
}

#[test]
fn read_only_device_refuses_writes() {
    let mut c = config();
    c.read_only = true;
    let r = Rig::with_config(Backend::Ram, N, 512, c);
    let i = r.login();
    for op in WRITES {
        assert_check(&i.execute(0, &rw(op, 0, 0, 1), &[0xff; 512], &mut []), 0x07, 0x27, 0x00);
    }
    assert_eq!(read(&i, 0, 0, 512, 1), vec![0u8; 512]);
}

// ------------------------------------------------------------------------------------------------
// 4096-byte blocks
// ------------------------------------------------------------------------------------------------

#[test]
fn block_size_4096() {
    let r = Rig::new(Backend::Ram, 256, 4096);
    let i = r.login();
    // RAM is thin provisioned: LBPME and LBPRZ.
    let mut rc = vec![0, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0x10, 0, 0, 0, 0xc0];
    rc.resize(32, 0);
    assert_eq!(data_in_ok(&i, 0, &read_capacity16(32), 32), rc);
    assert_eq!(data_in_ok(&i, 0, &[READ_CAPACITY10, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8), [0, 0, 0, 0xff, 0, 0, 0x10, 0]);
    let mut seed = 90;
    for wop in [WRITE6, WRITE10, WRITE12, WRITE16] {
        for rop in [READ6, READ10, READ12, READ16] {
            seed += 1;
            let data = pattern(seed, 2 * 4096);
            assert_good(&i.execute(0, &rw(wop, 0, 254, 2), &data, &mut []));
            let mut back = vec![0u8; data.len()];
            assert_good(&i.execute(0, &rw(rop, 0, 254, 2), &[], &mut back));
            assert!(back == data);
        }
    }
    assert_oob(&i.execute(0, &cdb10(READ10, 0, 255, 2), &[], &mut vec![0u8; 8192]));
    // 512 bytes of Data-Out for a 4096-byte block.
    assert_check(&i.execute(0, &cdb10(WRITE10, 0, 0, 1), &[0u8; 512], &mut []), 0x05, 0x0e, 0x03);
    // A partial read of a block.
    let mut buf = vec![0u8; 1000];
    let o = i.execute(0, &cdb10(READ10, 0, 254, 1), &[], &mut buf);
    assert_good(&o);
    assert_eq!(o.residual, (true, 3096));
    // Miscompare offsets count bytes.
    let data = read(&i, 0, 254, 4096, 2);
    let mut bad = data.clone();
    bad[4096 + 5] ^= 1;
    let o = i.execute(0, &cdb16(VERIFY16, 0x02, 254, 2), &bad, &mut []);
    assert_check(&o, 0x0e, 0x1d, 0x00);
    assert_eq!(information(o.sense()), Some(4101));
}
