//! Full feature phase over TCP: READ segmentation and residuals, WRITE with immediate data,
//! unsolicited Data-Out and R2Ts, DataSN and Buffer Offset errors.

mod common;

use std::time::Duration;

use common::*;
use scst_transport_iscsi::proto::bhs::{Opcode, RESERVED_TAG};

/// Expected Data-In segmentation: (offset, length, F) for `total` bytes with the initiator's
/// MaxRecvDataSegmentLength `mrdsl` and MaxBurstLength `burst`.
fn segments(total: usize, mrdsl: usize, burst: usize) -> Vec<(usize, usize, bool)> {
    let mut v = Vec::new();
    let (mut off, mut in_burst) = (0, 0);
    while off < total {
        let n = mrdsl.min(total - off).min(burst - in_burst);
        in_burst += n;
        let f = in_burst == burst || off + n == total;
        v.push((off, n, f));
        if f {
            in_burst = 0;
        }
        off += n;
    }
    v
}

#[track_caller]
fn check_read_segmentation(c: &mut Conn, l: u8, lba: u32, blocks: u16, want: &[u8], mrdsl: usize, burst: usize) {
    let r = c.read(l, lba, blocks);
    r.assert_good();
    assert_eq!(r.data, want);
    assert!(!r.overflow && !r.underflow && r.residual == 0);
    let got: Vec<(usize, usize, bool)> =
        r.data_ins().iter().map(|p| (p.bhs().buffer_offset() as usize, p.data.len(), p.bhs().final_bit())).collect();
    assert_eq!(got, segments(want.len(), mrdsl, burst));
    for (i, p) in r.data_ins().iter().enumerate() {
        let last = i + 1 == r.data_ins().len();
        assert_eq!(p.bhs().status_bit(), last, "status only in the last Data-In (phase collapse)");
        assert_eq!(p.bhs().data_sn(), i as u32);
        if !last {
            assert_eq!(p.bhs().stat_sn(), 0, "StatSN is reserved without S");
        }
    }
    assert_eq!(r.pdus.len(), r.data_ins().len(), "no SCSI Response after a collapsed status");
}

#[test]
fn read_segmented_by_mrdsl_and_burst() {
    let t = TestTarget::start();
    let o = LoginOpts::normal()
        .key("MaxRecvDataSegmentLength", 4096)
        .key("MaxBurstLength", 16384)
        .key("FirstBurstLength", 4096);
    let mut c = t.login_with(o);
    for l in [RAM, FILE] {
        let w = pattern(64 * BS, 0x10 + l);
        c.write(l, 100, &w).assert_good();
        // 32 KiB: 8 PDUs of 4 KiB, F at every 16 KiB.
        check_read_segmentation(&mut c, l, 100, 64, &w, 4096, 16384);
        // Less than one segment.
        check_read_segmentation(&mut c, l, 100, 3, &w[..3 * BS], 4096, 16384);
        c.expect_silence(Duration::from_millis(100));
    }
}

#[test]
fn read_burst_not_a_multiple_of_the_segment() {
    let t = TestTarget::start();
    let o = LoginOpts::normal()
        .key("MaxRecvDataSegmentLength", 4096)
        .key("MaxBurstLength", 10240)
        .key("FirstBurstLength", 4096);
    let mut c = t.login_with(o);
    for l in [RAM, FILE] {
        let w = pattern(80 * BS, 0x20 + l);
        c.write(l, 0, &w).assert_good();
        // Segments 4096, 4096, 2048(F), ... : a burst ends a PDU early.
        check_read_segmentation(&mut c, l, 0, 80, &w, 4096, 10240);
    }
}

#[test]
fn read_residuals() {
    let t = TestTarget::start();
    let mut c = t.login();
    for l in [RAM, FILE] {
        let w = pattern(2 * BS, 0x30 + l);
        c.write(l, 0, &w).assert_good();
        // EDTL 0: a SCSI Response only (no empty Data-In), overflow of one block.
        let r = c.exec(l, read10(0, 1), true, 0, &[]);
        r.assert_good();
        assert_eq!(r.pdus.len(), 1);
        assert_eq!(r.last().op(), Opcode::SCSI_RESPONSE);
        assert_eq!(r.last().bhs().data_segment_len(), 0);
        assert_eq!(r.last().bhs().exp_data_sn(), 0);
        assert!(r.overflow && !r.underflow);
        assert_eq!(r.residual, BS as u32);
        // EDTL larger than the CDB: the CDB's data, underflow.
        let r = c.exec(l, read10(0, 1), true, 10000, &[]);
        r.assert_good();
        assert_eq!(r.data, w[..BS]);
        assert!(r.underflow && !r.overflow);
        assert_eq!(r.residual, 10000 - BS as u32);
        assert_eq!(r.last().op(), Opcode::DATA_IN, "status collapsed into the Data-In");
        // EDTL smaller: EDTL bytes, overflow.
        let r = c.exec(l, read10(0, 1), true, 200, &[]);
        r.assert_good();
        assert_eq!(r.data, w[..200]);
        assert!(r.overflow && !r.underflow);
        assert_eq!(r.residual, BS as u32 - 200);
        let r = c.exec(l, read10(0, 2), true, BS as u32, &[]);
        r.assert_good();
        assert_eq!(r.data, w[..BS]);
        assert!(r.overflow);
        assert_eq!(r.residual, BS as u32);
    }
}

#[test]
fn read_of_a_bad_lba_is_status_only() {
    let t = TestTarget::start();
    let mut c = t.login();
    let r = c.exec(RAM, read10(BLOCKS as u32, 1), true, BS as u32, &[]);
    r.assert_check(0x5, 0x21, 0x00);
    assert_eq!(r.pdus.len(), 1, "no Data-In");
    assert_eq!(r.last().bhs().exp_data_sn(), 0);
    c.assert_usable();
}

#[test]
fn read_cdb_with_write_flag_and_data() {
    // libiscsi's Read10Invalid case 5: the offered data is drained and the READ runs.
    let t = TestTarget::start();
    let mut c = t.login();
    let junk = vec![0xa6u8; BS];
    let cmd = CmdPdu { write: true, edtl: BS as u32, data: &junk, ..CmdPdu::new(RAM, read10(0, 1)) };
    let itt = c.send_cmd(&cmd);
    let r = c.collect(RAM, itt, None);
    r.assert_good();
    assert_eq!(c.read(RAM, 0, 1).data, vec![0u8; BS], "nothing was written");
    c.assert_usable();
}

#[test]
fn write_immediate_data_only() {
    let t = TestTarget::start();
    let mut c = t.login();
    for l in [RAM, FILE] {
        let w = pattern(8 * BS, 0x40 + l);
        // Everything fits the first PDU: F set, no R2T (collect fails on one).
        let cmd = CmdPdu { write: true, edtl: w.len() as u32, data: &w, ..CmdPdu::new(l, write10(16, 8)) };
        let itt = c.send_cmd(&cmd);
        let r = c.collect(l, itt, None);
        r.assert_good();
        assert_eq!(r.pdus.len(), 1);
        assert_eq!(r.last().bhs().exp_data_sn(), 0);
        assert!(!r.overflow && !r.underflow);
        assert_eq!(c.read(l, 16, 8).data, w);
    }
}

#[test]
fn write_immediate_then_unsolicited_then_r2t() {
    let t = TestTarget::start();
    let o = LoginOpts::normal().key("FirstBurstLength", 16384).key("MaxBurstLength", 65536);
    let mut c = t.login_with(o);
    c.chunk = 4096;
    for l in [RAM, FILE] {
        let w = pattern(64 * BS, 0x50 + l);
        // 4 KiB immediate, 12 KiB unsolicited Data-Out, then one R2T for the other 16 KiB.
        let r = c.write(l, 200, &w);
        r.assert_good();
        let r2ts = r.r2ts();
        assert_eq!(r2ts.len(), 1, "{:?}", r.pdus);
        let b = r2ts[0].bhs();
        assert_eq!(b.buffer_offset(), 16384, "solicits from the end of the first burst");
        assert_eq!(b.desired_data_transfer_length(), 16384);
        assert_eq!(b.r2t_sn(), 0);
        assert_eq!(c.read(l, 200, 64).data, w);
    }
}

#[test]
fn write_unsolicited_only_when_no_immediate_data() {
    let t = TestTarget::start();
    let o = LoginOpts::normal().key("ImmediateData", "No").key("FirstBurstLength", 8192);
    let mut c = t.login_with(o);
    c.chunk = 1024;
    for l in [RAM, FILE] {
        let w = pattern(16 * BS, 0x58 + l);
        let r = c.write(l, 300, &w);
        r.assert_good();
        assert!(r.r2ts().is_empty(), "everything was unsolicited");
        assert_eq!(c.read(l, 300, 16).data, w);
    }
}

#[test]
fn write_initial_r2t() {
    let t = TestTarget::start();
    let o = LoginOpts::normal().key("InitialR2T", "Yes").key("ImmediateData", "No");
    let mut c = t.login_with(o);
    for l in [RAM, FILE] {
        let w = pattern(16 * BS, 0x60 + l);
        let r = c.write(l, 8, &w);
        r.assert_good();
        let r2ts = r.r2ts();
        assert_eq!(r2ts.len(), 1);
        let b = r2ts[0].bhs();
        assert_eq!((b.buffer_offset(), b.desired_data_transfer_length(), b.r2t_sn()), (0, 8192, 0));
        assert_eq!(b.itt(), r.last().bhs().itt());
        assert_eq!(c.read(l, 8, 16).data, w);
    }
    // InitialR2T=Yes with ImmediateData=Yes: immediate data, then R2T for the rest.
    let o = LoginOpts::normal().key("InitialR2T", "Yes").key("ImmediateData", "Yes");
    let mut c = t.login_with(o);
    c.chunk = 2048;
    let w = pattern(16 * BS, 0x66);
    let r = c.write(RAM, 8, &w);
    r.assert_good();
    let b = r.r2ts()[0].bhs();
    assert_eq!((b.buffer_offset(), b.desired_data_transfer_length()), (2048, 8192 - 2048));
    assert_eq!(c.read(RAM, 8, 16).data, w);
}

#[test]
fn write_larger_than_max_burst_uses_r2ts_up_to_max_outstanding() {
    let t = TestTarget::start();
    let o = LoginOpts::normal()
        .key("InitialR2T", "Yes")
        .key("ImmediateData", "No")
        .key("MaxBurstLength", 8192)
        .key("FirstBurstLength", 4096)
        .key("MaxOutstandingR2T", 2);
    let mut c = t.login_with(o);
    assert_eq!(c.num("MaxOutstandingR2T"), 2);
    c.chunk = 4096;
    for l in [RAM, FILE] {
        let w = pattern(128 * BS, 0x70 + l);
        let cmd = CmdPdu { write: true, edtl: w.len() as u32, ..CmdPdu::new(l, write10(1000, 128)) };
        let itt = c.send_cmd(&cmd);
        let mut outstanding = std::collections::VecDeque::new();
        let mut r2t_sn = 0;
        let mut next_off = 0u32;
        let mut answered = 0;
        loop {
            // Take every R2T that comes before the target goes quiet.
            while (next_off as usize) < w.len() {
                let wait = if outstanding.len() < 2 { TIMEOUT } else { Duration::from_millis(150) };
                match c.next(wait) {
                    Next::Pdu(p) => {
                        let b = p.bhs();
                        assert_eq!(b.opcode(), Opcode::R2T, "{p:?}");
                        assert_eq!(b.itt(), itt);
                        assert_eq!(b.r2t_sn(), r2t_sn, "R2TSN increases by one");
                        r2t_sn += 1;
                        assert_eq!(b.buffer_offset(), next_off, "offsets increase without gaps");
                        let len = b.desired_data_transfer_length();
                        assert!(len > 0 && len <= 8192, "DDTL {len} within MaxBurstLength");
                        next_off += len;
                        outstanding.push_back((b.ttt(), b.buffer_offset(), len));
                        assert!(outstanding.len() <= 2, "more R2Ts outstanding than MaxOutstandingR2T");
                    }
                    Next::Silent => break,
                    Next::Closed => panic!("closed"),
                }
            }
            let Some((ttt, off, len)) = outstanding.pop_front() else { break };
            c.send_sequence(l, itt, ttt, off, &w[off as usize..(off + len) as usize]);
            answered += 1;
            if next_off as usize == w.len() && outstanding.is_empty() {
                break;
            }
        }
        assert_eq!(answered, 8);
        assert_eq!(next_off as usize, w.len());
        let r = c.collect(l, itt, None);
        r.assert_good();
        assert_eq!(c.read(l, 1000, 128).data, w);
    }
}

#[test]
fn write_failing_before_data_drains_unsolicited_data() {
    let t = TestTarget::start();
    let mut c = t.login();
    c.chunk = 4096;
    for l in [RAM, FILE] {
        let w = pattern(32 * BS, 0x80);
        let lba = BLOCKS as u32 - 8; // 32 blocks from here run past the end
        let cmd = CmdPdu {
            write: true,
            edtl: w.len() as u32,
            data: &w[..4096],
            final_bit: false,
            ..CmdPdu::new(l, write10(lba, 32))
        };
        let itt = c.send_cmd(&cmd);
        c.expect_silence(Duration::from_millis(300));
        c.send_data_out(l, itt, RESERVED_TAG, 0, 4096, &w[4096..8192], false);
        c.send_data_out(l, itt, RESERVED_TAG, 1, 8192, &w[8192..12288], false);
        // No R2T and no early answer while the initiator is still sending.
        c.expect_silence(Duration::from_millis(200));
        c.send_data_out(l, itt, RESERVED_TAG, 2, 12288, &w[12288..], true);
        let r = c.collect(l, itt, None);
        r.assert_check(0x5, 0x21, 0x00);
        assert!(r.r2ts().is_empty());
        c.assert_usable();
    }
    // The same without immediate data.
    let mut c = t.login_with(LoginOpts::normal().key("ImmediateData", "No"));
    let w = pattern(8192, 0x81);
    let cmd = CmdPdu { write: true, edtl: 8192, final_bit: false, ..CmdPdu::new(RAM, write10(BLOCKS as u32, 16)) };
    let itt = c.send_cmd(&cmd);
    c.expect_silence(Duration::from_millis(200));
    c.send_data_out(RAM, itt, RESERVED_TAG, 0, 0, &w, true);
    c.collect(RAM, itt, None).assert_check(0x5, 0x21, 0x00);
    c.assert_usable();
}

/// Sends a WRITE whose Data-Out PDUs carry the given (DataSN, Buffer Offset) pairs, all 512 bytes
/// (unsolicited: ImmediateData=No, InitialR2T=No) and expects CHECK CONDITION, nothing written and
/// a usable connection.
#[track_caller]
fn bad_data_out(c: &mut Conn, l: u8, blocks: u16, pdus: &[(u32, u32)]) {
    let lba = 500;
    let cmd = CmdPdu {
        write: true,
        edtl: u32::from(blocks) * BS as u32,
        final_bit: false,
        ..CmdPdu::new(l, write10(lba, blocks))
    };
    let itt = c.send_cmd(&cmd);
    let data = vec![0xa6u8; BS];
    for (i, (sn, off)) in pdus.iter().enumerate() {
        c.send_data_out(l, itt, RESERVED_TAG, *sn, *off, &data, i + 1 == pdus.len());
    }
    let r = c.collect(l, itt, None);
    assert_eq!(r.status, CHECK_CONDITION, "{pdus:?}");
    assert_eq!(r.sense_code().0, 0x0b, "ABORTED COMMAND");
    assert!(r.r2ts().is_empty());
    assert_eq!(c.read(l, lba, blocks).data, vec![0u8; usize::from(blocks) * BS], "nothing written");
    c.assert_usable();
}

#[test]
fn data_sn_errors_fail_the_command() {
    let t = TestTarget::start();
    let mut c = t.login_with(LoginOpts::normal().key("ImmediateData", "No"));
    for l in [RAM, FILE] {
        bad_data_out(&mut c, l, 2, &[(0, 0), (0, 512)]); // duplicate
        bad_data_out(&mut c, l, 1, &[(27, 0)]); // gap
        bad_data_out(&mut c, l, 1, &[(0xffff_ffff, 0)]);
        bad_data_out(&mut c, l, 2, &[(1, 0), (0, 512)]); // swapped
    }
}

#[test]
fn buffer_offset_errors_fail_the_command() {
    let t = TestTarget::start();
    let mut c = t.login_with(LoginOpts::normal().key("ImmediateData", "No"));
    for l in [RAM, FILE] {
        bad_data_out(&mut c, l, 2, &[(0, 0), (1, 0)]); // same offset twice
        bad_data_out(&mut c, l, 3, &[(0, 0), (1, 1024), (2, 512)]); // out of order
        bad_data_out(&mut c, l, 1, &[(0, 512)]); // beyond the expected length
    }
}

#[test]
fn data_sn_error_in_a_solicited_sequence() {
    let t = TestTarget::start();
    let o = LoginOpts::normal().key("InitialR2T", "Yes").key("ImmediateData", "No");
    let mut c = t.login_with(o);
    c.chunk = 512;
    for l in [RAM, FILE] {
        let cmd = CmdPdu { write: true, edtl: 1024, ..CmdPdu::new(l, write10(600, 2)) };
        let itt = c.send_cmd(&cmd);
        let p = c.recv();
        assert_eq!(p.op(), Opcode::R2T);
        let ttt = p.bhs().ttt();
        let data = vec![0x5au8; 512];
        c.send_data_out(l, itt, ttt, 1, 0, &data, false);
        c.send_data_out(l, itt, ttt, 0, 512, &data, true);
        let r = c.collect(l, itt, None);
        assert_eq!(r.status, CHECK_CONDITION);
        assert_eq!(c.read(l, 600, 2).data, vec![0u8; 1024]);
        // A Data-Out with a TTT the target never gave out is no better.
        let itt = c.send_cmd(&cmd);
        let p = c.recv();
        assert_eq!(p.op(), Opcode::R2T);
        let ttt = p.bhs().ttt();
        c.send_data_out(l, itt, ttt ^ 0x5555, 0, 0, &[0u8; 1024], true);
        c.send_data_out(l, itt, ttt, 0, 0, &[0u8; 1024], true);
        let r = c.collect(l, itt, None);
        assert_eq!(r.status, CHECK_CONDITION);
        c.assert_usable();
    }
}

#[test]
fn write_residuals() {
    // Data beyond what the CDB describes is drained (never solicited); data the CDB describes
    // beyond EDTL is never written.
    let t = TestTarget::start();
    for (imm, r2t) in [("Yes", "No"), ("No", "Yes")] {
        let mut c = t.login_with(LoginOpts::normal().key("ImmediateData", imm).key("InitialR2T", r2t));
        c.chunk = 2048;
        for l in [RAM, FILE] {
            let a = vec![b'a'; 2 * BS];
            c.write(l, 20, &a).assert_good();
            // EDTL larger than the CDB: underflow, one block written.
            let b = vec![b'b'; 10000];
            let r = c.exec(l, write10(20, 1), false, 10000, &b);
            r.assert_good();
            assert!(r.underflow && !r.overflow);
            assert_eq!(r.residual, 10000 - BS as u32);
            for p in r.r2ts() {
                let b = p.bhs();
                assert!(
                    b.buffer_offset() + b.desired_data_transfer_length() <= BS as u32,
                    "solicits only the CDB's data"
                );
            }
            let back = c.read(l, 20, 2).data;
            assert_eq!(back[..BS], b[..BS]);
            assert_eq!(back[BS..], a[BS..], "nothing beyond the CDB's block");
            // EDTL smaller: overflow, only EDTL bytes written.
            c.write(l, 20, &a).assert_good();
            let r = c.exec(l, write10(20, 2), false, BS as u32, &b[..BS]);
            r.assert_good();
            assert!(r.overflow && !r.underflow);
            assert_eq!(r.residual, BS as u32);
            let back = c.read(l, 20, 2).data;
            assert_eq!(back[..BS], b[..BS]);
            assert_eq!(back[BS..], a[BS..], "nothing beyond EDTL");
            // EDTL 0: no data at all.
            let r = c.exec(l, write10(20, 1), false, 0, &[]);
            r.assert_good();
            assert!(r.overflow);
            assert_eq!(r.residual, BS as u32);
            assert!(r.r2ts().is_empty(), "no R2T beyond EDTL");
        }
    }
}

#[test]
fn unsolicited_data_beyond_first_burst_fails_the_command() {
    let t = TestTarget::start();
    let mut c = t.login_with(LoginOpts::normal().key("ImmediateData", "No").key("FirstBurstLength", 1024));
    assert_eq!(c.num("FirstBurstLength"), 1024);
    for l in [RAM, FILE] {
        // 2 KiB of unsolicited data where 1 KiB is allowed.
        bad_data_out(&mut c, l, 4, &[(0, 0), (1, 512), (2, 1024), (3, 1536)]);
    }
}

#[test]
fn answer_waits_for_unsolicited_data_of_a_command_needing_none() {
    // WRITE(10) of zero blocks with EDTL 1 KiB: the command needs no data and completes at
    // once, but the initiator is still sending its unsolicited data.
    let t = TestTarget::start();
    let mut c = t.login();
    for l in [RAM, FILE] {
        let d = pattern(1024, 0x99);
        let cmd =
            CmdPdu { write: true, edtl: 1024, data: &d[..512], final_bit: false, ..CmdPdu::new(l, write10(30, 0)) };
        let itt = c.send_cmd(&cmd);
        c.expect_silence(Duration::from_millis(300));
        c.send_data_out(l, itt, RESERVED_TAG, 0, 512, &d[512..], true);
        let r = c.collect(l, itt, None);
        r.assert_good();
        assert!(r.underflow);
        assert_eq!(r.residual, 1024);
        assert_eq!(c.read(l, 30, 2).data, vec![0u8; 1024]);
    }
}

#[test]
fn read_burst_smaller_than_the_segment() {
    let t = TestTarget::start();
    let o = LoginOpts::normal()
        .key("MaxRecvDataSegmentLength", 8192)
        .key("MaxBurstLength", 2048)
        .key("FirstBurstLength", 2048);
    let mut c = t.login_with(o);
    for l in [RAM, FILE] {
        let w = pattern(20 * BS, 0x28 + l);
        c.write(l, 0, &w).assert_good();
        check_read_segmentation(&mut c, l, 0, 20, &w, 8192, 2048);
    }
}

#[test]
fn data_sn_error_stops_soliciting() {
    let t = TestTarget::start();
    let o = LoginOpts::normal()
        .key("InitialR2T", "Yes")
        .key("ImmediateData", "No")
        .key("MaxBurstLength", 4096)
        .key("MaxOutstandingR2T", 2);
    let mut c = t.login_with(o);
    c.chunk = 1024;
    for l in [RAM, FILE] {
        let cmd = CmdPdu { write: true, edtl: 32768, ..CmdPdu::new(l, write10(2000, 64)) };
        let itt = c.send_cmd(&cmd);
        let (a, b) = (c.recv(), c.recv());
        assert_eq!((a.op(), b.op()), (Opcode::R2T, Opcode::R2T));
        assert_eq!((a.bhs().buffer_offset(), b.bhs().buffer_offset()), (0, 4096));
        c.expect_silence(Duration::from_millis(150));
        // The first sequence skips DataSN 1; the second is fine.
        let d = [0x11u8; 1024];
        for (sn, off) in [(0, 0), (2, 1024), (3, 2048), (4, 3072)] {
            c.send_data_out(l, itt, a.bhs().ttt(), sn, off, &d, off == 3072);
        }
        c.send_sequence(l, itt, b.bhs().ttt(), 4096, &[0x22u8; 4096]);
        // No more R2Ts: the command fails once its outstanding sequences are done.
        let r = c.collect(l, itt, None);
        assert_eq!(r.status, CHECK_CONDITION);
        assert!(r.r2ts().is_empty(), "{:?}", r.pdus);
        assert_eq!(c.read(l, 2000, 64).data, vec![0u8; 32768]);
        c.assert_usable();
    }
}
