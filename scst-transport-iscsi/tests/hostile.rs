//! A hostile initiator over real TCP: malformed, misplaced, truncated and excessive PDUs, logins
//! that never finish, and floods of connections. RFC 7143 leaves the target two answers to a
//! protocol violation: a Reject PDU with the right reason code (the connection goes on), or
//! dropping the connection; a SCSI command whose data went wrong ends with CHECK CONDITION.
//!
//! Every test runs inside a [`support::Suite`]: a well-behaved session keeps writing and verifying
//! data on both LUNs while the test misbehaves on other connections, and must see no error; after
//! the test the target's threads, file descriptors, sessions, SGV buffers and the process's RSS
//! go back to where they were (see `support` for the slack allowed). The target runs with a 1 s
//! login timeout and a 1 s PDU timeout so that every test takes a few seconds at most.

mod common;
mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use scst_transport_iscsi::proto::bhs::{BHS_LEN, Opcode, RESERVED_TAG, Stage, pad_len};
use scst_transport_iscsi::proto::build::{
    InitiatorSn, LoginRequestHeader, NopOutHeader, ScsiCommandHeader, TextRequestHeader, encode_pdu,
};
use scst_transport_iscsi::proto::text::push_pair;
use support::*;

/// Counts the bytes this process holds on the heap, so the connection flood can assert that
/// what a round of connections allocated is all freed: RSS alone moves with the allocator's
/// arenas and caches by a few MiB either way.
struct Counting;

static LIVE_BYTES: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

// SAFETY: every call forwards to the system allocator with the caller's layout; the counter
// is only arithmetic on the side.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { std::alloc::System.alloc(l) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(l.size() as isize, std::sync::atomic::Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE_BYTES.fetch_sub(l.size() as isize, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let q = unsafe { std::alloc::System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE_BYTES.fetch_add(new as isize - l.size() as isize, std::sync::atomic::Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live_heap() -> isize {
    LIVE_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

const SILENCE: Duration = Duration::from_millis(300);
const REJECT_DATA_DIGEST: u8 = 0x02;
const REJECT_PROTOCOL_ERROR: u8 = 0x04;
const REJECT_NOT_SUPPORTED: u8 = 0x05;

/// Expects a Reject of `hdr` with `reason`.
#[track_caller]
fn expect_reject(c: &mut Conn, hdr: &[u8; BHS_LEN], reason: u8) {
    let p = c.recv();
    assert_eq!(p.op(), Opcode::REJECT, "{p:?}");
    assert_eq!(p.bhs().reject_reason().0, reason, "reject reason of {p:?}");
    assert_eq!(p.bhs().itt(), RESERVED_TAG);
    assert_eq!(p.data[..BHS_LEN], hdr[..], "the Reject carries the offending header");
}

/// The BHS of `p` with ITT `itt`, CmdSN `p.cmd_sn` or the connection's next (not sent, the
/// counter left alone), data segment length `p.data.len()`.
fn hdr_of(c: &Conn, itt: u32, p: &CmdPdu<'_>) -> [u8; BHS_LEN] {
    let mut h = [0u8; BHS_LEN];
    ScsiCommandHeader {
        immediate: p.immediate,
        final_bit: p.final_bit,
        read: p.read,
        write: p.write,
        attr: p.attr,
        total_ahs_len: 0,
        data_segment_len: p.data.len() as u32,
        lun: lun(p.lun),
        itt,
        expected_data_transfer_length: p.edtl,
        sn: InitiatorSn { cmd_sn: p.cmd_sn.unwrap_or(c.cmd_sn), exp_stat_sn: c.exp_stat_sn },
        cdb: p.cdb,
    }
    .write(&mut h);
    h
}

/// A WRITE(10) of `data` at `lba` on the RAM LUN with all of it as immediate data.
fn write_imm<'a>(lba: u32, data: &'a [u8]) -> CmdPdu<'a> {
    CmdPdu { write: true, edtl: data.len() as u32, data, ..CmdPdu::new(RAM, write10(lba, (data.len() / BS) as u16)) }
}

/// Sets the DataSegmentLength field of a BHS.
fn set_dsl(h: &mut [u8; BHS_LEN], n: u32) {
    h[5..8].copy_from_slice(&n.to_be_bytes()[1..]);
}

/// A NOP-Out ping header.
fn nop_hdr(c: &Conn, itt: u32, immediate: bool, dsl: usize) -> [u8; BHS_LEN] {
    let mut h = [0u8; BHS_LEN];
    NopOutHeader {
        immediate,
        data_segment_len: dsl as u32,
        itt,
        ttt: RESERVED_TAG,
        sn: InitiatorSn { cmd_sn: c.cmd_sn, exp_stat_sn: c.exp_stat_sn },
        ..Default::default()
    }
    .write(&mut h);
    h
}

/// Logs in with InitialR2T=Yes and ImmediateData=No: every byte of a write is solicited.
fn login_solicited(s: &Suite, max_burst: u32) -> Conn {
    let o = LoginOpts::normal()
        .key("InitialR2T", "Yes")
        .key("ImmediateData", "No")
        .key("MaxBurstLength", max_burst)
        .key("FirstBurstLength", max_burst.min(65536));
    s.t.login_with(o)
}

// ----- opcodes and reserved fields ----------------------------------------------------------

#[test]
fn unknown_and_misdirected_opcodes_are_rejected() {
    let s = Suite::start();
    let mut c = s.t.login();
    // Unassigned and vendor-specific initiator opcodes: "command not supported". Target opcodes
    // sent by an initiator: "protocol error".
    let cases = [
        (0x07, REJECT_NOT_SUPPORTED),
        (0x0f, REJECT_NOT_SUPPORTED),
        (0x11, REJECT_NOT_SUPPORTED),
        (0x1b, REJECT_NOT_SUPPORTED),
        (0x1c, REJECT_NOT_SUPPORTED),
        (0x1d, REJECT_NOT_SUPPORTED),
        (0x1e, REJECT_NOT_SUPPORTED),
        (0x1f, REJECT_NOT_SUPPORTED),
        (0x20, REJECT_PROTOCOL_ERROR),
        (0x21, REJECT_PROTOCOL_ERROR),
        (0x22, REJECT_PROTOCOL_ERROR),
        (0x23, REJECT_PROTOCOL_ERROR),
        (0x24, REJECT_PROTOCOL_ERROR),
        (0x25, REJECT_PROTOCOL_ERROR),
        (0x26, REJECT_PROTOCOL_ERROR),
        (0x31, REJECT_PROTOCOL_ERROR),
        (0x32, REJECT_PROTOCOL_ERROR),
        (0x3c, REJECT_PROTOCOL_ERROR),
        (0x3f, REJECT_PROTOCOL_ERROR),
    ];
    let first_cmd_sn = c.cmd_sn;
    for (i, (op, reason)) in cases.into_iter().enumerate() {
        let mut h = [0u8; BHS_LEN];
        h[0] = op | if i % 2 == 0 { 0x40 } else { 0 };
        h[1] = 0x80;
        // Some carry a data segment, some an AHS: the target must skip both to stay in frame.
        let data = if i % 3 == 0 { pattern(13 + i, i as u8) } else { Vec::new() };
        let ahs_words = if i % 4 == 1 { 2u8 } else { 0 };
        h[4] = ahs_words;
        h[5..8].copy_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        h[16..20].copy_from_slice(&(0xdead_0000u32 + i as u32).to_be_bytes());
        h[24..28].copy_from_slice(&c.cmd_sn.to_be_bytes());
        h[28..32].copy_from_slice(&c.exp_stat_sn.to_be_bytes());
        let mut bytes = h.to_vec();
        bytes.extend(std::iter::repeat_n(0xa5u8, usize::from(ahs_words) * 4));
        bytes.extend_from_slice(&data);
        bytes.extend(std::iter::repeat_n(0u8, pad_len(data.len())));
        c.send_bytes(&bytes).unwrap();
        expect_reject(&mut c, &h, reason);
    }
    // None of them consumed a CmdSN, and the connection is in frame.
    assert_eq!(c.cmd_sn, first_cmd_sn);
    let r = c.tur(RAM);
    r.assert_good();
    assert_eq!(r.last().bhs().exp_cmd_sn(), first_cmd_sn.wrapping_add(1));
    drop(c);
    s.finish();
}

#[test]
fn reserved_fields_are_ignored() {
    // RFC 7143 §11: receivers ignore reserved bits and fields.
    let s = Suite::start();
    let mut c = s.t.login_with(LoginOpts::normal().key("ImmediateData", "Yes").key("InitialR2T", "No"));
    // SCSI Command: byte 0 bit 7, byte 1 bits 3-4, bytes 2-3.
    let w = pattern(BS, 0x31);
    let itt = c.alloc_itt();
    let mut h = hdr_of(&c, itt, &write_imm(10, &w));
    h[0] |= 0x80;
    h[1] |= 0x18;
    h[2] = 0xff;
    h[3] = 0xff;
    c.cmd_sn = c.cmd_sn.wrapping_add(1);
    c.send(&h, &w);
    c.collect(RAM, itt, None).assert_good();
    assert_eq!(c.read(RAM, 10, 1).data, w);
    // NOP-Out: byte 0 bit 7, byte 1 bits 0-6, bytes 2-3 and 32-47.
    let mut h = nop_hdr(&c, 0x777, true, 5);
    h[0] |= 0x80;
    h[1] |= 0x7f;
    h[2] = 0xff;
    h[3] = 0xff;
    h[32..48].fill(0xff);
    c.send(&h, b"hello");
    let p = c.recv();
    assert_eq!((p.op(), p.bhs().itt(), &p.data[..]), (Opcode::NOP_IN, 0x777, &b"hello"[..]));
    // Data-Out (unsolicited): byte 0 bits 6-7, byte 1 bits 0-6, bytes 2-3, 24-27, 32-35, 44-47.
    let w = pattern(2 * BS, 0x32);
    let cmd = CmdPdu { write: true, edtl: w.len() as u32, final_bit: false, ..CmdPdu::new(RAM, write10(12, 2)) };
    let itt = c.send_cmd(&cmd);
    let mut d = c.data_out_hdr(RAM, itt, RESERVED_TAG, 0, 0, w.len(), true);
    d[0] |= 0xc0;
    d[1] |= 0x7f;
    d[2] = 0xff;
    d[3] = 0xff;
    d[24..28].fill(0xff);
    d[32..36].fill(0xff);
    d[44..48].fill(0xff);
    c.send(&d, &w);
    c.collect(RAM, itt, None).assert_good();
    assert_eq!(c.read(RAM, 12, 2).data, w);
    drop(c);
    s.finish();
}

// ----- lengths ------------------------------------------------------------------------------

#[test]
fn data_segments_beyond_max_recv_data_segment_length_are_rejected_and_close() {
    let s = Suite::start();
    let mrdsl = s.t.login().target_mrdsl;
    // Headers only: the target must not wait for (or read) the oversized segments.
    let mut c = s.t.login();
    let itt = c.alloc_itt();
    let mut h = hdr_of(&c, itt, &CmdPdu { write: true, edtl: 1 << 20, ..CmdPdu::new(RAM, write10(0, 2048)) });
    set_dsl(&mut h, mrdsl + 4);
    c.send_bytes(&h).unwrap();
    let mut d = s.t.login_with(LoginOpts::normal().key("ImmediateData", "No"));
    let itt = d.send_cmd(&CmdPdu { write: true, edtl: 4096, final_bit: false, ..CmdPdu::new(RAM, write10(0, 8)) });
    let dh = d.data_out_hdr(RAM, itt, RESERVED_TAG, 0, 0, 0xff_ffff, true);
    d.send_bytes(&dh).unwrap();
    let mut e = s.t.login();
    let mut th = [0u8; BHS_LEN];
    TextRequestHeader {
        final_bit: true,
        data_segment_len: mrdsl + 1,
        itt: 0x55,
        ttt: RESERVED_TAG,
        sn: InitiatorSn { cmd_sn: e.cmd_sn, exp_stat_sn: e.exp_stat_sn },
        ..Default::default()
    }
    .write(&mut th);
    e.send_bytes(&th).unwrap();
    for (conn, hdr) in [(&mut c, h), (&mut d, dh), (&mut e, th)] {
        let (_, seen) = wait_closed(conn, Duration::from_secs(3));
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].op(), Opcode::REJECT);
        assert_eq!(seen[0].bhs().reject_reason().0, REJECT_PROTOCOL_ERROR);
        assert_eq!(seen[0].data, hdr);
    }
    drop((c, d, e));
    // Immediate data within MaxRecvDataSegmentLength but beyond FirstBurstLength: the command is
    // rejected, the connection goes on.
    let mut c = s.t.login();
    let first_burst = c.num("FirstBurstLength") as usize;
    let w = pattern(first_burst + BS, 0x40);
    let blocks = (w.len() / BS) as u16;
    let itt = c.alloc_itt();
    let h = hdr_of(&c, itt, &write_imm(40, &w));
    c.cmd_sn = c.cmd_sn.wrapping_add(1);
    c.send(&h, &w);
    expect_reject(&mut c, &h, REJECT_PROTOCOL_ERROR);
    c.expect_silence(SILENCE);
    assert_eq!(c.read(RAM, 40, blocks).data, vec![0u8; w.len()], "the rejected write did not run");
    drop(c);
    s.finish();
}

// ----- digests ------------------------------------------------------------------------------

#[test]
fn data_digest_errors_are_rejected_and_discard_the_pdu() {
    // RFC 7143 §7.8: a PDU with a payload digest error is answered with a Reject (data digest
    // error) and discarded. A SCSI command whose data was lost that way ends with CHECK
    // CONDITION (the target's choice at ErrorRecoveryLevel 0, see ffp_login.rs).
    let s = Suite::start();
    let o = LoginOpts::normal().key("HeaderDigest", "CRC32C").key("DataDigest", "CRC32C");
    let mut c = s.t.login_with(o);
    assert!(c.digests.header && c.digests.data);
    let corrupt = |c: &Conn, h: &[u8; BHS_LEN], data: &[u8]| {
        let mut b = c.wire(h, data);
        let n = b.len();
        b[n - 1] ^= 0x20;
        b
    };
    // A NOP-Out ping: no echo of corrupt data.
    let h = nop_hdr(&c, 0x901, true, 16);
    c.send_bytes(&corrupt(&c, &h, &[0x11; 16])).unwrap();
    expect_reject(&mut c, &h, REJECT_DATA_DIGEST);
    c.expect_silence(SILENCE);
    // A Text Request: not interpreted.
    let mut d = Vec::new();
    push_pair(&mut d, "MaxRecvDataSegmentLength", "4096");
    let mut h = [0u8; BHS_LEN];
    TextRequestHeader {
        immediate: true,
        final_bit: true,
        data_segment_len: d.len() as u32,
        itt: 0x902,
        ttt: RESERVED_TAG,
        sn: InitiatorSn { cmd_sn: c.cmd_sn, exp_stat_sn: c.exp_stat_sn },
        ..Default::default()
    }
    .write(&mut h);
    c.send_bytes(&corrupt(&c, &h, &d)).unwrap();
    expect_reject(&mut c, &h, REJECT_DATA_DIGEST);
    c.expect_silence(SILENCE);
    // Still 256 KiB Data-In segments: the corrupt Text Request changed nothing.
    let r = c.read(RAM, 0, 64);
    assert_eq!(r.data_ins().len(), 1, "MaxRecvDataSegmentLength unchanged");
    // A WRITE with immediate data that arrives ahead of its turn (held until the CmdSN gap
    // fills): the digest error must not be forgotten while it waits.
    let w = pattern(4 * BS, 0x5c);
    let gap = c.cmd_sn;
    let itt = c.alloc_itt();
    let h = hdr_of(&c, itt, &CmdPdu { cmd_sn: Some(gap.wrapping_add(1)), ..write_imm(60, &w) });
    c.send_bytes(&corrupt(&c, &h, &w)).unwrap();
    c.expect_silence(SILENCE);
    let tur = c.send_cmd(&CmdPdu { cmd_sn: Some(gap), ..CmdPdu::new(RAM, tur_cdb()) });
    c.cmd_sn = gap.wrapping_add(2);
    c.collect(RAM, tur, None).assert_good();
    expect_reject(&mut c, &h, REJECT_DATA_DIGEST);
    let r = c.collect(RAM, itt, None);
    assert_eq!(r.status, CHECK_CONDITION, "a write whose data failed its digest must not succeed");
    assert_eq!(c.read(RAM, 60, 4).data, vec![0u8; w.len()], "nothing of the corrupt data was written");
    // The same in its turn (not held), for comparison.
    let itt = c.alloc_itt();
    let h = hdr_of(&c, itt, &write_imm(70, &w));
    c.cmd_sn = c.cmd_sn.wrapping_add(1);
    c.send_bytes(&corrupt(&c, &h, &w)).unwrap();
    expect_reject(&mut c, &h, REJECT_DATA_DIGEST);
    assert_eq!(c.collect(RAM, itt, None).status, CHECK_CONDITION);
    assert_eq!(c.read(RAM, 70, 4).data, vec![0u8; w.len()]);
    c.assert_usable();
    // A header digest error: the lengths cannot be trusted, the connection ends, unanswered.
    let itt = c.alloc_itt();
    let h = hdr_of(&c, itt, &write_imm(80, &w));
    let mut b = c.wire(&h, &w);
    b[BHS_LEN + 2] ^= 0x01;
    c.send_bytes(&b).unwrap();
    let (_, seen) = wait_closed(&mut c, Duration::from_secs(3));
    assert!(seen.is_empty(), "{seen:?}");
    drop(c);
    let mut c = s.t.login();
    assert_eq!(c.read(RAM, 80, 4).data, vec![0u8; w.len()]);
    drop(c);
    s.finish();
}

// ----- Data-Out -----------------------------------------------------------------------------

#[test]
fn data_out_for_unknown_tasks_is_discarded() {
    let s = Suite::start();
    let mut c = login_solicited(&s, 65536);
    // Unknown ITTs, solicited and unsolicited TTTs, with and without F: discarded (a Data-Out
    // may legitimately arrive for a task the initiator just aborted), nothing answered, nothing
    // written.
    let junk = pattern(4096, 0x66);
    for (k, (itt, ttt)) in [(0x4444, RESERVED_TAG), (0x4445, 7), (RESERVED_TAG, 1), (0, 0)].into_iter().enumerate() {
        for (sn, fin) in [(0, false), (1, true)] {
            c.send_data_out(RAM, itt, ttt, sn, sn * 4096 + k as u32, &junk, fin);
        }
    }
    c.expect_silence(SILENCE);
    let r = c.read(RAM, 0, 64);
    assert_eq!(r.data, vec![0u8; 64 * BS], "no stray Data-Out landed anywhere");
    // A known task with a TTT the target never issued: the command fails once its real data
    // sequence ended (RFC 7143 §11.17.1: the response waits for the last expected Data-Out).
    for l in [RAM, FILE] {
        let itt = c.send_cmd(&CmdPdu { write: true, edtl: 4096, ..CmdPdu::new(l, write10(200, 8)) });
        let r2t = c.recv();
        assert_eq!((r2t.op(), r2t.bhs().itt()), (Opcode::R2T, itt));
        let ttt = r2t.bhs().ttt();
        c.send_data_out(l, itt, ttt ^ 0x5555, 0, 0, &junk, true);
        c.expect_silence(SILENCE);
        c.send_data_out(l, itt, ttt, 0, 0, &junk, true);
        let r = c.collect(l, itt, None);
        assert_eq!(r.status, CHECK_CONDITION);
        assert_eq!(r.sense_code().0, 0x0b, "ABORTED COMMAND");
        assert_eq!(c.read(l, 200, 8).data, vec![0u8; 4096], "nothing written");
    }
    c.assert_usable();
    drop(c);
    s.finish();
}

/// Sends a WRITE of `len` bytes at LBA 300 whose data all comes through R2Ts, answers the first
/// R2T with `send` (a list of (offset, length, F) Data-Out PDUs), and expects CHECK CONDITION
/// with ABORTED COMMAND, no more R2Ts, nothing written.
#[track_caller]
fn bad_solicited(c: &mut Conn, l: u8, len: usize, send: &[(u32, usize, bool)]) {
    let blocks = (len / BS) as u16;
    let itt = c.send_cmd(&CmdPdu { write: true, edtl: len as u32, ..CmdPdu::new(l, write10(300, blocks)) });
    let r2t = c.recv();
    assert_eq!((r2t.op(), r2t.bhs().itt()), (Opcode::R2T, itt), "{r2t:?}");
    let ttt = r2t.bhs().ttt();
    let data = pattern(len.max(1 << 20), 0x77);
    for (sn, (off, n, fin)) in send.iter().enumerate() {
        let o = *off as usize;
        let chunk = &data[o.min(data.len() - n)..][..*n];
        c.send_data_out(l, itt, ttt, sn as u32, *off, chunk, *fin);
    }
    // The answer must come without any further data: a task waiting forever is a hang.
    let p = match c.next(Duration::from_secs(3)) {
        Next::Pdu(p) => p,
        other => panic!("{send:?}: no answer ({other:?}): the task hangs"),
    };
    assert_eq!(p.op(), Opcode::SCSI_RESPONSE, "{send:?}: {p:?}");
    assert_eq!(p.bhs().itt(), itt);
    assert_eq!(p.bhs().status(), CHECK_CONDITION, "{send:?}");
    assert_eq!(sense_code(&p.sense()).0, 0x0b, "ABORTED COMMAND");
    assert_eq!(c.read(l, 300, blocks).data, vec![0u8; len], "{send:?}: nothing written");
}

#[test]
fn data_out_beyond_the_burst_or_the_expected_length_fails_the_command() {
    let s = Suite::start();
    // MaxBurstLength 4 KiB: a 16 KiB write is solicited 4 KiB at a time.
    let mut c = login_solicited(&s, 4096);
    assert_eq!(c.num("MaxBurstLength"), 4096);
    c.chunk = 2048;
    for l in [RAM, FILE] {
        // Twice the R2T's Desired Data Transfer Length in its sequence (within the EDTL).
        bad_solicited(&mut c, l, 16384, &[(0, 2048, false), (2048, 2048, false), (4096, 4096, true)]);
        // Beyond the expected data transfer length.
        bad_solicited(&mut c, l, 2048, &[(0, 2048, false), (2048, 2048, true)]);
        // The sequence ends (F) short of the R2T's length: of the last burst (the rest was never
        // solicited again: the task hung), and of an earlier one (the next R2T left a hole).
        bad_solicited(&mut c, l, 4096, &[(0, 2048, true)]);
        bad_solicited(&mut c, l, 8192, &[(0, 2048, true)]);
        // An offset far away.
        bad_solicited(&mut c, l, 4096, &[(0xffff_f000, 4096, true)]);
        c.assert_usable();
    }
    drop(c);
    // Unsolicited data beyond the expected length.
    let mut c = s.t.login_with(LoginOpts::normal().key("ImmediateData", "No"));
    let w = pattern(8192, 0x78);
    let cmd = CmdPdu { write: true, edtl: 4096, final_bit: false, ..CmdPdu::new(RAM, write10(320, 8)) };
    let itt = c.send_cmd(&cmd);
    c.send_data_out(RAM, itt, RESERVED_TAG, 0, 0, &w, true);
    let r = c.collect(RAM, itt, None);
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!(c.read(RAM, 320, 8).data, vec![0u8; 4096]);
    c.assert_usable();
    drop(c);
    s.finish();
}

// ----- CmdSN --------------------------------------------------------------------------------

#[test]
fn cmd_sn_far_outside_the_window_is_ignored() {
    // RFC 7143 §4.2.2.1: non-immediate commands outside [ExpCmdSN, MaxCmdSN] are silently
    // ignored (their data segments skipped).
    let s = Suite::start();
    let mut c = s.t.login();
    let exp = c.cmd_sn;
    let w = pattern(8 * BS, 0x88);
    let offsets = [0x8000_0000u32, 0x7fff_ffff, 0x4000_0000, 1000, 33, 32, 0xffff_ffff, 0xffff_fc18];
    for _ in 0..100 {
        for off in offsets {
            let sn = exp.wrapping_add(off);
            let cmd = CmdPdu {
                write: true,
                edtl: w.len() as u32,
                data: &w,
                cmd_sn: Some(sn),
                ..CmdPdu::new(RAM, write10(400, 8))
            };
            c.send_cmd(&cmd);
            let mut h = nop_hdr(&c, 0x1234, false, 4);
            h[24..28].copy_from_slice(&sn.to_be_bytes());
            c.send(&h, b"ping");
        }
    }
    c.expect_silence(SILENCE);
    assert_eq!(c.cmd_sn, exp);
    let r = c.tur(RAM);
    r.assert_good();
    assert_eq!(r.last().bhs().exp_cmd_sn(), exp.wrapping_add(1), "none of them moved ExpCmdSN");
    assert_eq!(c.read(RAM, 400, 8).data, vec![0u8; w.len()], "none of them ran");
    drop(c);
    s.finish();
}

#[test]
fn commands_held_behind_a_cmd_sn_gap_are_freed_with_the_connection() {
    // Commands ahead of ExpCmdSN wait, with their immediate data, for the gap to fill; an
    // initiator that never fills it and goes away leaves nothing behind.
    let s = Suite::start();
    for round in 0..3 {
        let mut c = s.t.login();
        let first_burst = c.num("FirstBurstLength") as usize;
        let w = pattern(first_burst, round);
        let gap = c.cmd_sn;
        let window = c.max_cmd_sn.wrapping_sub(gap) + 1;
        for k in 1..window {
            let cmd = CmdPdu {
                write: true,
                edtl: w.len() as u32,
                data: &w,
                cmd_sn: Some(gap.wrapping_add(k)),
                ..CmdPdu::new(FILE, write10(1000 + 128 * k, (first_burst / BS) as u16))
            };
            c.send_cmd(&cmd);
        }
        c.expect_silence(SILENCE);
        drop(c);
    }
    let mut c = s.t.login();
    assert_eq!(c.read(FILE, 1000, 512).data, vec![0u8; 512 * BS], "no held command ran");
    drop(c);
    s.finish();
}

// ----- login and full feature phase PDUs in the wrong phase ---------------------------------

#[test]
fn login_pdus_in_full_feature_phase_are_rejected() {
    let s = Suite::start();
    let mut c = s.t.login();
    for (transit, stage) in [(true, Stage::OPERATIONAL), (false, Stage::SECURITY)] {
        let mut d = Vec::new();
        push_pair(&mut d, "InitiatorName", INITIATOR);
        push_pair(&mut d, "TargetName", TARGET_NAME);
        push_pair(&mut d, "MaxRecvDataSegmentLength", "512");
        let mut h = [0u8; BHS_LEN];
        LoginRequestHeader {
            transit,
            csg: stage,
            nsg: Stage::FULL_FEATURE,
            data_segment_len: d.len() as u32,
            isid: c.isid,
            itt: 0x99,
            sn: InitiatorSn { cmd_sn: c.cmd_sn, exp_stat_sn: c.exp_stat_sn },
            ..Default::default()
        }
        .write(&mut h);
        c.send(&h, &d);
        expect_reject(&mut c, &h, REJECT_PROTOCOL_ERROR);
    }
    // Nothing of the keys took effect: Data-In still in 256 KiB segments.
    assert_eq!(c.read(RAM, 0, 64).data_ins().len(), 1);
    drop(c);
    s.finish();
}

/// The bytes of a first Login Request (security stage, no transit).
fn first_login_request(isid: [u8; 6]) -> Vec<u8> {
    let mut d = Vec::new();
    push_pair(&mut d, "InitiatorName", INITIATOR);
    push_pair(&mut d, "TargetName", TARGET_NAME);
    push_pair(&mut d, "SessionType", "Normal");
    push_pair(&mut d, "AuthMethod", "None");
    login_request(false, Stage::SECURITY, Stage::OPERATIONAL, isid, &d)
}

/// The bytes of a one-step Login Request of a normal session (operational stage, transit to the
/// full feature phase).
fn final_login_request(isid: [u8; 6]) -> Vec<u8> {
    let o = LoginOpts::normal();
    let mut d = Vec::new();
    push_pair(&mut d, "InitiatorName", &o.initiator);
    push_pair(&mut d, "TargetName", TARGET_NAME);
    push_pair(&mut d, "SessionType", "Normal");
    for (k, v) in &o.keys {
        push_pair(&mut d, k, v);
    }
    login_request(true, Stage::OPERATIONAL, Stage::FULL_FEATURE, isid, &d)
}

/// The bytes of a Login Request (ITT 1, no digests) carrying `text`.
fn login_request(transit: bool, csg: Stage, nsg: Stage, isid: [u8; 6], text: &[u8]) -> Vec<u8> {
    let mut h = [0u8; BHS_LEN];
    LoginRequestHeader { transit, csg, nsg, data_segment_len: text.len() as u32, isid, itt: 1, ..Default::default() }
        .write(&mut h);
    let mut b = Vec::new();
    encode_pdu(&mut b, &h, &[], text, Default::default());
    b
}

/// Reads one PDU from a raw socket (no digests): (BHS, data).
fn read_raw_pdu(s: &mut TcpStream) -> std::io::Result<([u8; BHS_LEN], Vec<u8>)> {
    use std::io::Read;
    let mut h = [0u8; BHS_LEN];
    s.read_exact(&mut h)?;
    let dsl = u32::from_be_bytes([0, h[5], h[6], h[7]]) as usize;
    let mut d = vec![0u8; dsl + pad_len(dsl)];
    s.read_exact(&mut d)?;
    d.truncate(dsl);
    Ok((h, d))
}

#[test]
fn full_feature_phase_pdus_during_login_end_it() {
    // RFC 7143 §6: anything but a Login Request during the login phase is answered with a Login
    // Response "invalid during login" (0x020b) and the connection closes.
    let s = Suite::start();
    // A logged-in connection only lends its header helpers.
    let fake = s.t.login();
    let ffp_pdus: Vec<(&str, [u8; BHS_LEN], Vec<u8>)> = vec![
        ("SCSI Command", hdr_of(&fake, 5, &CmdPdu { read: true, edtl: 512, ..CmdPdu::new(RAM, read10(0, 1)) }), vec![]),
        ("SCSI Command with data", hdr_of(&fake, 6, &write_imm(0, &[0xee; 512])), vec![0xee; 512]),
        ("NOP-Out", nop_hdr(&fake, 7, true, 4), b"ping".to_vec()),
        ("Data-Out", fake.data_out_hdr(RAM, 8, RESERVED_TAG, 0, 0, 512, true), vec![0xee; 512]),
        (
            "Logout",
            {
                let mut h = [0u8; BHS_LEN];
                h[0] = 0x46;
                h[1] = 0x80;
                h
            },
            vec![],
        ),
        (
            "Text",
            {
                let mut h = [0u8; BHS_LEN];
                TextRequestHeader { final_bit: true, itt: 9, ttt: RESERVED_TAG, ..Default::default() }.write(&mut h);
                h
            },
            vec![],
        ),
    ];
    drop(fake);
    for after_first_step in [false, true] {
        for (name, h, data) in &ffp_pdus {
            let mut sock = raw(&s.t);
            if after_first_step {
                sock.write_all(&first_login_request(new_isid())).unwrap();
                let (rh, _) = read_raw_pdu(&mut sock).expect("first login response");
                assert_eq!((rh[0] & 0x3f, rh[36], rh[37]), (0x23, 0, 0), "{name}: first step accepted");
            }
            let mut b = h.to_vec();
            b.extend_from_slice(data);
            b.extend(std::iter::repeat_n(0u8, pad_len(data.len())));
            sock.write_all(&b).unwrap();
            let (rh, _) = read_raw_pdu(&mut sock).unwrap_or_else(|e| panic!("{name}: no Login Response: {e}"));
            assert_eq!(rh[0] & 0x3f, 0x23, "{name}: a Login Response");
            assert_eq!((rh[36], rh[37]), (0x02, 0x0b), "{name}: initiator error, invalid during login");
            let (t, rest) = read_until_closed(&mut sock, Duration::from_secs(2));
            assert!(rest.is_empty(), "{name}: nothing after the Login Response ({t:?})");
        }
    }
    s.finish();
}

// ----- truncated PDUs and unfinished logins -------------------------------------------------

#[test]
fn half_sent_pdus_then_silence_drop_the_connection() {
    let s = Suite::start();
    let mut conns: Vec<(&str, Conn)> = Vec::new();
    // 20 bytes of a BHS.
    let mut c = s.t.login();
    let h = nop_hdr(&c, 0x10, true, 0);
    c.send_bytes(&h[..20]).unwrap();
    conns.push(("partial BHS", c));
    // A NOP-Out header announcing 100 bytes, none sent.
    let mut c = s.t.login();
    let h = nop_hdr(&c, 0x11, true, 100);
    c.send_bytes(&h).unwrap();
    conns.push(("header without its data", c));
    // A WRITE with 1000 of its 4096 bytes of immediate data (the buffer is the command's).
    let mut c = s.t.login();
    let itt = c.alloc_itt();
    let mut h = hdr_of(&c, itt, &CmdPdu { write: true, edtl: 4096, ..CmdPdu::new(RAM, write10(500, 8)) });
    set_dsl(&mut h, 4096);
    c.cmd_sn = c.cmd_sn.wrapping_add(1);
    let mut b = h.to_vec();
    b.extend_from_slice(&[0xab; 1000]);
    c.send_bytes(&b).unwrap();
    conns.push(("immediate data cut short", c));
    // A solicited Data-Out cut short, on the FILE LUN, 64 KiB (read straight into the buffer).
    let mut c = login_solicited(&s, 1 << 20);
    let itt = c.send_cmd(&CmdPdu { write: true, edtl: 65536, ..CmdPdu::new(FILE, write10(600, 128)) });
    let r2t = c.recv();
    assert_eq!(r2t.op(), Opcode::R2T);
    let h = c.data_out_hdr(FILE, itt, r2t.bhs().ttt(), 0, 0, 65536, true);
    let mut b = h.to_vec();
    b.extend_from_slice(&[0xcd; 30000]);
    c.send_bytes(&b).unwrap();
    conns.push(("Data-Out cut short", c));
    let limit = PDU_TIMEOUT + DROP_SLACK;
    for (what, c) in &mut conns {
        let (t, seen) = wait_closed(c, limit + Duration::from_millis(500));
        assert!(seen.is_empty(), "{what}: {seen:?}");
        assert!(t <= limit, "{what}: dropped after {t:?}, more than {limit:?}");
    }
    drop(conns);
    let mut c = s.t.login();
    assert_eq!(c.read(RAM, 500, 8).data, vec![0u8; 4096]);
    assert_eq!(c.read(FILE, 600, 128).data, vec![0u8; 65536]);
    drop(c);
    s.finish();
}

#[test]
fn logins_that_never_finish_time_out() {
    let s = Suite::start();
    let t0 = Instant::now();
    let mut socks: Vec<(&str, TcpStream)> = Vec::new();
    socks.push(("silent", raw(&s.t)));
    let login = first_login_request(new_isid());
    let mut x = raw(&s.t);
    x.write_all(&login[..30]).unwrap();
    socks.push(("partial BHS", x));
    let mut x = raw(&s.t);
    x.write_all(&login[..BHS_LEN + 10]).unwrap();
    socks.push(("partial text", x));
    let mut x = raw(&s.t);
    x.write_all(&login).unwrap();
    socks.push(("first step only", x));
    // One byte every 100 ms: the PDU is always "still arriving".
    let trickle = raw(&s.t);
    let mut tw = trickle.try_clone().unwrap();
    let bytes = login.clone();
    let trickler = std::thread::spawn(move || {
        for b in bytes.iter().cycle().take(100) {
            if tw.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    socks.push(("trickle", trickle));
    let limit = LOGIN_TIMEOUT + DROP_SLACK;
    for (what, sock) in &mut socks {
        let (_, got) = read_until_closed(sock, limit + Duration::from_secs(2));
        let t = t0.elapsed();
        assert!(t <= limit, "{what}: dropped after {t:?}, more than {limit:?}");
        if *what == "first step only" {
            assert_eq!(got.first().map(|b| b & 0x3f), Some(0x23), "{what}: the first step was answered");
        }
    }
    trickler.join().unwrap();
    drop(socks);
    s.finish();
}

// ----- floods -------------------------------------------------------------------------------

/// Opens and drops `n` connections of six kinds, `batch` at a time; returns how many of each.
fn flood(s: &Suite, n: usize, batch: usize) -> [usize; 6] {
    let addr = s.t.addr;
    let mut kinds = [0usize; 6];
    let mut i = 0;
    while i < n {
        // A batch is opened at once (the target runs up to `batch` connection threads), then
        // dropped together.
        let mut open: Vec<Box<dyn std::any::Any>> = Vec::new();
        for _ in 0..batch {
            let kind = i % 6;
            kinds[kind] += 1;
            match kind {
                // Connect and close.
                0 => open.push(Box::new(raw(&s.t))),
                // Half a login request.
                1 => {
                    let mut x = raw(&s.t);
                    x.write_all(&first_login_request(new_isid())[..40]).unwrap();
                    open.push(Box::new(x));
                }
                // The first login step, then gone.
                2 => {
                    let mut x = raw(&s.t);
                    x.write_all(&first_login_request(new_isid())).unwrap();
                    open.push(Box::new(x));
                }
                // A full login, then dropped without logout, some with a command in flight.
                3 => {
                    let mut c = Conn::login(addr, &LoginOpts::normal()).expect("login");
                    if i % 2 == 0 {
                        c.send_cmd(&CmdPdu { read: true, edtl: 65536, ..CmdPdu::new(FILE, read10(0, 128)) });
                    }
                    open.push(Box::new(c));
                }
                // The last Login Request of a login, then a reset at once: the target's Login
                // Response may find the connection gone.
                4 => {
                    let mut x = raw(&s.t);
                    x.write_all(&final_login_request(new_isid())).unwrap();
                    socket2::SockRef::from(&x).set_linger(Some(Duration::ZERO)).unwrap();
                    drop(x);
                }
                // A discovery session.
                _ => {
                    let c = Conn::login(addr, &LoginOpts::discovery()).expect("discovery login");
                    open.push(Box::new(c));
                }
            }
            i += 1;
        }
        drop(open);
    }
    kinds
}

/// RSS once the target's connection threads and sessions are gone (SGV cache released).
fn settled_rss(s: &Suite) -> u64 {
    let deadline = Instant::now() + SETTLE;
    while usage().target_threads > s.base.target_threads || s.t.server.session_count() > 1 {
        assert!(Instant::now() < deadline, "connections not gone: {:?}", usage());
        std::thread::sleep(Duration::from_millis(20));
    }
    s.t.target.sgv().shrink();
    usage().rss_kib
}

#[test]
fn thousands_of_connections_opened_and_dropped() {
    const N: usize = 2000;
    let mut s = Suite::start();
    // The allocator keeps (per-thread arenas, cached stacks) part of what ~2000 connection
    // threads used: about 7 MiB here. A leak shows as growth from one round to the next.
    s.rss_slack_kib = 24 << 10;
    let t0 = Instant::now();
    let kinds = flood(&s, N, 100);
    let elapsed = t0.elapsed();
    let rss1 = settled_rss(&s);
    let heap1 = live_heap();
    eprintln!("{N} connections ({kinds:?} of each kind) in {elapsed:?}; RSS {rss1} KiB, heap {heap1} B");
    assert!(elapsed < Duration::from_secs(20), "{N} connections took {elapsed:?}");
    let t0 = Instant::now();
    flood(&s, N, 100);
    let rss2 = settled_rss(&s);
    let heap2 = live_heap();
    eprintln!("{N} more in {:?}; RSS {rss2} KiB, heap {heap2} B", t0.elapsed());
    // A leak of even 32 bytes per connection shows here; the slack covers the well-behaved
    // session's buffers moving between rounds.
    assert!(
        heap2 <= heap1 + 64 * 1024,
        "heap grew by {} B from one round of {N} connections to the next",
        heap2 - heap1
    );
    // RSS follows the allocator's arenas and cached thread stacks: only a gross leak shows.
    assert!(rss2 <= rss1 + 8192, "RSS grew by {} KiB from one round of {N} connections to the next", rss2 - rss1);
    // The target still logs in and serves.
    let mut c = s.t.login();
    c.assert_usable();
    drop(c);
    s.finish();
}

// ----- a peer that stops reading ------------------------------------------------------------

#[test]
fn a_peer_that_stops_reading_does_not_stall_other_sessions() {
    // Large READs on the FILEIO LUN from an initiator that never reads its socket. Once the
    // socket buffers are full, the responses stay queued on that connection (its flusher
    // thread waits for the socket); the device workers go on, so the well-behaved session's
    // FILEIO commands on the same LU are not delayed.
    let s = Suite::start();
    let mut c = s.t.login();
    let mut itts = Vec::new();
    for k in 0..4u32 {
        let cmd = CmdPdu { read: true, edtl: 4 << 20, ..CmdPdu::new(FILE, read10(k * 2048, 8192)) };
        itts.push(c.send_cmd(&cmd));
    }
    // The stalled connection's flusher thread was started (a connection has none until its
    // socket is first full).
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads_named("iscsi-tx") == 0 {
        assert!(Instant::now() < deadline, "no flusher thread for the full socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(7));
    drop(c);
    s.finish();
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).unwrap_or_default().starts_with(prefix))
        .count()
}

#[test]
fn an_idle_connection_costs_one_thread() {
    // A logged-in connection that is not sending much has its receive thread only: the flusher
    // starts with the first full socket.
    let s = Suite::start();
    let tx_before = threads_named("iscsi-tx");
    let mut c = s.t.login();
    c.assert_usable();
    let u = usage();
    assert_eq!(
        u.target_threads,
        s.base.target_threads + 1,
        "threads of one more idle connection: {u:?} vs {:?}",
        s.base
    );
    assert_eq!(threads_named("iscsi-tx"), tx_before, "an idle connection started a flusher thread");
    drop(c);
    s.finish();
}
