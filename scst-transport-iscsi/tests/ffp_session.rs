//! Full feature phase over TCP: the CmdSN window, NOP-Out/NOP-In, task management and Reject.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use scst_transport_iscsi::proto::bhs::{BHS_LEN, Opcode, RESERVED_TAG, SnackType, TaskAttr};
use scst_transport_iscsi::proto::build::{InitiatorSn, LoginRequestHeader, NopOutHeader, SnackHeader};

const SILENCE: Duration = Duration::from_millis(1000);

// ----- CmdSN ------------------------------------------------------------------------------

#[test]
fn cmd_sn_above_max_cmd_sn_is_ignored() {
    let t = TestTarget::start();
    let mut c = t.login();
    let too_high = c.max_cmd_sn.wrapping_add(1);
    c.send_cmd(&CmdPdu { cmd_sn: Some(too_high), ..CmdPdu::new(RAM, tur_cdb()) });
    c.expect_silence(SILENCE);
    // ExpCmdSN did not move: the expected CmdSN still works.
    let want = c.cmd_sn;
    let r = c.tur(RAM);
    r.assert_good();
    assert_eq!(r.last().bhs().exp_cmd_sn(), want.wrapping_add(1));
}

#[test]
fn cmd_sn_below_exp_cmd_sn_is_ignored() {
    let t = TestTarget::start();
    let mut c = t.login();
    let old = c.exp_cmd_sn.wrapping_sub(1);
    // A write with immediate data: the payload must be skipped too.
    let data = pattern(BS, 1);
    let cmd =
        CmdPdu { write: true, edtl: BS as u32, data: &data, cmd_sn: Some(old), ..CmdPdu::new(RAM, write10(0, 1)) };
    c.send_cmd(&cmd);
    c.expect_silence(SILENCE);
    assert_eq!(c.read(RAM, 0, 1).data, vec![0u8; BS], "the ignored write did not run");
    c.assert_usable();
}

#[test]
fn commands_ahead_of_exp_cmd_sn_wait_for_the_gap() {
    let t = TestTarget::start();
    let mut c = t.login();
    for (l, attr) in [(RAM, TaskAttr::SIMPLE), (FILE, TaskAttr::ORDERED)] {
        let n = c.cmd_sn;
        let w = pattern(4 * BS, 0x90 + l);
        // READ (CmdSN N+1) arrives first and waits; WRITE (CmdSN N) fills the gap.
        let rd = CmdPdu {
            read: true,
            edtl: w.len() as u32,
            cmd_sn: Some(n.wrapping_add(1)),
            attr,
            ..CmdPdu::new(l, read10(50, 4))
        };
        let read_itt = c.send_cmd(&rd);
        c.expect_silence(Duration::from_millis(300));
        let wr =
            CmdPdu { write: true, edtl: w.len() as u32, data: &w, cmd_sn: Some(n), ..CmdPdu::new(l, write10(50, 4)) };
        let write_itt = c.send_cmd(&wr);
        c.cmd_sn = n.wrapping_add(2);
        let r = c.collect(l, write_itt, None);
        r.assert_good();
        let r = c.collect(l, read_itt, None);
        r.assert_good();
        assert_eq!(r.data, w, "the READ ran after the WRITE (CmdSN order)");
        assert_eq!(r.last().bhs().exp_cmd_sn(), n.wrapping_add(2));
    }
}

#[test]
fn immediate_commands_do_not_advance_exp_cmd_sn() {
    let t = TestTarget::start();
    let mut c = t.login();
    let n = c.cmd_sn;
    let itt = c.send_cmd(&CmdPdu { immediate: true, ..CmdPdu::new(RAM, tur_cdb()) });
    let r = c.collect(RAM, itt, None);
    r.assert_good();
    assert_eq!(r.last().bhs().exp_cmd_sn(), n);
    c.send_nop_out(0x55, RESERVED_TAG, true, &[]);
    let p = c.recv();
    assert_eq!(p.op(), Opcode::NOP_IN);
    assert_eq!(p.bhs().exp_cmd_sn(), n);
    // The CmdSN the immediate PDUs carried is still the next one.
    assert_eq!(c.cmd_sn, n);
    let r = c.tur(RAM);
    r.assert_good();
    assert_eq!(r.last().bhs().exp_cmd_sn(), n.wrapping_add(1));
}

#[test]
fn window_closes_when_every_command_is_outstanding_and_reopens() {
    let t = TestTarget::with(config(8), None);
    let o = LoginOpts::normal().key("InitialR2T", "Yes").key("ImmediateData", "No");
    let mut c = t.login_with(o);
    let base = c.cmd_sn;
    assert_eq!(c.max_cmd_sn, base.wrapping_add(7));
    // Eight WRITEs waiting for data fill the window.
    let mut pending = Vec::new();
    for i in 0..8u32 {
        let cmd = CmdPdu { write: true, edtl: 4096, ..CmdPdu::new(FILE, write10(64 * i, 8)) };
        let itt = c.send_cmd(&cmd);
        let p = c.recv();
        assert_eq!(p.op(), Opcode::R2T, "{p:?}");
        assert_eq!(p.bhs().itt(), itt);
        assert_eq!(p.bhs().max_cmd_sn(), base.wrapping_add(7), "MaxCmdSN stays while commands come in");
        pending.push((itt, p.bhs().ttt(), i));
    }
    assert_eq!(c.exp_cmd_sn, base.wrapping_add(8));
    assert_eq!(c.max_cmd_sn, c.exp_cmd_sn.wrapping_sub(1), "the window is closed");
    // A command beyond MaxCmdSN is ignored, even though it is ExpCmdSN.
    c.send_cmd(&CmdPdu { cmd_sn: Some(base.wrapping_add(8)), ..CmdPdu::new(RAM, tur_cdb()) });
    c.expect_silence(Duration::from_millis(500));
    // One WRITE completes: the window opens by one.
    let data = pattern(4096, 7);
    let (itt, ttt, i) = pending.remove(0);
    c.send_sequence(FILE, itt, ttt, 0, &data);
    let r = c.collect(FILE, itt, None);
    r.assert_good();
    assert_eq!(r.last().bhs().max_cmd_sn(), base.wrapping_add(8));
    let r = c.tur(RAM);
    r.assert_good();
    assert_eq!(r.last().bhs().exp_cmd_sn(), base.wrapping_add(9));
    for (itt, ttt, _) in pending {
        c.send_sequence(FILE, itt, ttt, 0, &data);
        c.collect(FILE, itt, None).assert_good();
    }
    assert_eq!(c.max_cmd_sn, c.exp_cmd_sn.wrapping_add(7), "fully open again");
    assert_eq!(c.read(FILE, 64 * i, 8).data, data);
}

#[test]
fn many_pipelined_commands_respect_the_window() {
    let t = TestTarget::with(config(16), None);
    let mut c = t.login();
    let w = pattern(64 * BS, 0xa0);
    c.write(FILE, 0, &w).assert_good();
    let total = 300u32;
    let mut sent = 0u32;
    let mut inflight: HashMap<u32, u32> = HashMap::new();
    let mut done = 0u32;
    let mut most = 0;
    let start = Instant::now();
    while done < total {
        while sent < total && !sn_lt(c.max_cmd_sn, c.cmd_sn) {
            let lba = sent % 64;
            let attr = if sent % 17 == 0 { TaskAttr::ORDERED } else { TaskAttr::SIMPLE };
            let cmd = CmdPdu { read: true, edtl: BS as u32, attr, ..CmdPdu::new(FILE, read10(lba, 1)) };
            let itt = c.send_cmd(&cmd);
            inflight.insert(itt, lba);
            sent += 1;
        }
        most = most.max(inflight.len());
        let p = c.recv();
        let b = p.bhs();
        assert_eq!(b.opcode(), Opcode::DATA_IN, "{p:?}");
        assert!(b.status_bit() && b.final_bit());
        assert_eq!(b.status(), GOOD);
        let lba = inflight.remove(&b.itt()).expect("a response for a command in flight") as usize;
        assert_eq!(p.data, w[lba * BS..(lba + 1) * BS]);
        done += 1;
    }
    assert!(most > 1 && most <= 16, "at most the window in flight ({most})");
    assert!(start.elapsed() < Duration::from_secs(10));
    c.assert_usable();
}

// ----- NOP ----------------------------------------------------------------------------------

#[test]
fn nop_out_ping_is_echoed() {
    let t = TestTarget::start();
    let mut c = t.login();
    for (immediate, data) in [(false, b"ping".to_vec()), (true, b"thirteen-byte".to_vec()), (false, vec![])] {
        let before = c.cmd_sn;
        c.send_nop_out(0x1234, RESERVED_TAG, immediate, &data);
        let p = c.recv();
        let b = p.bhs();
        assert_eq!(b.opcode(), Opcode::NOP_IN, "{p:?}");
        assert_eq!(b.itt(), 0x1234);
        assert_eq!(b.ttt(), RESERVED_TAG);
        assert!(b.final_bit());
        assert_eq!(p.data, data);
        assert_eq!(b.exp_cmd_sn(), if immediate { before } else { before.wrapping_add(1) });
    }
    c.assert_usable();
}

#[test]
fn target_pings_when_idle_and_drops_a_silent_initiator() {
    let mut cfg = config(16);
    cfg.nop_interval = Duration::from_millis(300);
    cfg.nop_timeout = Duration::from_millis(700);
    let t = TestTarget::with(cfg, None);
    let mut c = t.login();
    for _ in 0..2 {
        let p = match c.next(Duration::from_secs(3)) {
            Next::Pdu(p) => p,
            other => panic!("no NOP-In ping: {other:?}"),
        };
        let b = p.bhs();
        assert_eq!(b.opcode(), Opcode::NOP_IN, "{p:?}");
        assert_eq!(b.itt(), RESERVED_TAG, "unsolicited");
        assert_ne!(b.ttt(), RESERVED_TAG, "an answer is wanted");
        // Answer it.
        let mut h = [0u8; BHS_LEN];
        NopOutHeader {
            immediate: true,
            lun: b.lun(),
            itt: RESERVED_TAG,
            ttt: b.ttt(),
            sn: InitiatorSn { cmd_sn: c.cmd_sn, exp_stat_sn: c.exp_stat_sn },
            ..Default::default()
        }
        .write(&mut h);
        c.send(&h, &[]);
    }
    c.assert_usable();
    // Stop answering: the target gives up on the connection.
    let seen = c.expect_closed(Duration::from_secs(4));
    assert!(!seen.is_empty(), "a ping came before the drop");
    assert!(seen.iter().all(|p| p.op() == Opcode::NOP_IN && p.bhs().itt() == RESERVED_TAG), "{seen:?}");
}

// ----- task management ------------------------------------------------------------------

#[test]
fn abort_task_of_a_completed_command() {
    let t = TestTarget::start();
    let mut c = t.login();
    let n = c.cmd_sn;
    let itt = c.send_cmd(&CmdPdu::new(RAM, tur_cdb()));
    c.collect(RAM, itt, None).assert_good();
    let p = c.tmf(1, RAM, itt, n);
    assert_eq!(p.bhs().response(), 1, "task does not exist");
    c.assert_usable();
}

#[test]
fn abort_task_of_a_write_waiting_for_data() {
    let t = TestTarget::start();
    let o = LoginOpts::normal().key("InitialR2T", "Yes").key("ImmediateData", "No");
    let mut c = t.login_with(o);
    for l in [RAM, FILE] {
        let n = c.cmd_sn;
        let cmd = CmdPdu { write: true, edtl: 4096, ..CmdPdu::new(l, write10(700, 8)) };
        let itt = c.send_cmd(&cmd);
        let r2t = c.recv();
        assert_eq!(r2t.op(), Opcode::R2T);
        let max_before = c.max_cmd_sn;
        let p = c.tmf(1, l, itt, n);
        assert_eq!(p.bhs().response(), 0, "function complete");
        assert!(!sn_lt(p.bhs().max_cmd_sn(), max_before.wrapping_add(1)), "the aborted command's slot is free");
        // Data sent late for the aborted task is discarded; no SCSI Response ever comes.
        c.send_sequence(l, itt, r2t.bhs().ttt(), 0, &[0xeeu8; 4096]);
        c.expect_silence(Duration::from_millis(400));
        assert_eq!(c.read(l, 700, 8).data, vec![0u8; 4096], "the aborted write never ran");
        c.assert_usable();
    }
}

/// Sets or clears TAS in the Control mode page of `lun` (MODE SENSE, flip, MODE SELECT).
fn set_tas(c: &mut Conn, lun_: u8, tas: bool) {
    let mut cdb = [0u8; 16];
    cdb[..6].copy_from_slice(&[0x1a, 0x08, 0x0a, 0, 255, 0]);
    let r = c.exec(lun_, cdb, true, 255, &[]);
    r.assert_good();
    let page_len = usize::from(r.data[5]) + 2;
    let mut list = vec![0u8; 4];
    list.extend_from_slice(&r.data[4..4 + page_len]);
    list[4] &= 0x3f; // PS is reserved in MODE SELECT
    list[4 + 5] = (list[4 + 5] & !0x40) | if tas { 0x40 } else { 0 };
    let mut cdb = [0u8; 16];
    cdb[..6].copy_from_slice(&[0x15, 0x10, 0, 0, list.len() as u8, 0]);
    c.exec(lun_, cdb, false, list.len() as u32, &list).assert_good();
}

/// SAM-5 §5.6 over iSCSI: a write waiting for its Data-Out (an R2T outstanding) that another
/// I_T nexus's LUN RESET aborts is answered with TASK ABORTED when TAS is set, and with
/// nothing when it is not; Data-Out sent for it afterwards is discarded.
#[test]
fn lun_reset_from_another_nexus_answers_a_waiting_write_with_task_aborted_when_tas_is_set() {
    let t = TestTarget::start();
    let o = LoginOpts::normal().key("InitialR2T", "Yes").key("ImmediateData", "No");
    for tas in [true, false] {
        let mut a = t.login_with(o.clone());
        let mut b = t.login();
        b.tur(FILE);
        set_tas(&mut b, FILE, tas);
        a.tur(FILE); // the mode change, or the power-on unit attention
        a.tur(FILE);
        a.tur(FILE).assert_good();
        let itt = a.send_cmd(&CmdPdu { write: true, edtl: 4096, ..CmdPdu::new(FILE, write10(300, 8)) });
        let r2t = a.recv();
        assert_eq!((r2t.op(), r2t.bhs().itt()), (Opcode::R2T, itt));
        let p = b.tmf(5, FILE, RESERVED_TAG, 0);
        assert_eq!(p.bhs().response(), 0, "LUN RESET complete");
        if tas {
            let p = a.recv();
            assert_eq!((p.op(), p.bhs().itt()), (Opcode::SCSI_RESPONSE, itt), "{p:?}");
            assert_eq!(p.bhs().status(), 0x40, "TASK ABORTED");
        }
        a.send_sequence(FILE, itt, r2t.bhs().ttt(), 0, &[0xeeu8; 4096]);
        a.expect_silence(Duration::from_millis(300));
        a.tur(FILE).assert_check(0x6, 0x29, 0x03);
        assert_eq!(a.read(FILE, 300, 8).data, vec![0u8; 4096], "the aborted write never ran");
        b.tur(FILE).assert_check(0x6, 0x29, 0x03);
        set_tas(&mut b, FILE, false);
    }
}

#[test]
fn lun_reset_raises_a_unit_attention() {
    let t = TestTarget::start();
    let mut c = t.login();
    let mut other = t.login();
    let p = c.tmf(5, RAM, RESERVED_TAG, 0);
    assert_eq!(p.bhs().response(), 0);
    c.tur(RAM).assert_check(0x6, 0x29, 0x03);
    c.tur(RAM).assert_good();
    // Every nexus of the LU is told, not only the one that reset it.
    other.tur(RAM).assert_check(0x6, 0x29, 0x03);
    other.tur(RAM).assert_good();
    // The other LU is untouched.
    c.tur(FILE).assert_good();
}

#[test]
fn task_reassign_and_unknown_functions() {
    let t = TestTarget::start();
    let mut c = t.login();
    let p = c.tmf(8, RAM, 0x1234, c.cmd_sn);
    assert_eq!(p.bhs().response(), 4, "task allegiance reassignment not supported");
    for f in [0x0f, 0x7f] {
        let p = c.tmf(f, RAM, RESERVED_TAG, 0);
        assert_eq!(p.bhs().response(), 5, "function {f:#x} not supported");
    }
    let p = c.tmf(5, 9, RESERVED_TAG, 0);
    assert_eq!(p.bhs().response(), 2, "LUN does not exist");
    c.assert_usable();
}

// ----- Reject -------------------------------------------------------------------------------

#[test]
fn unsupported_opcode_is_rejected() {
    let t = TestTarget::start();
    let mut c = t.login();
    let mut h = [0u8; BHS_LEN];
    h[0] = 0x1c; // a vendor-specific initiator opcode
    h[1] = 0x80;
    h[16..20].copy_from_slice(&0xabcdu32.to_be_bytes());
    h[24..28].copy_from_slice(&c.cmd_sn.to_be_bytes());
    c.send(&h, &[]);
    let p = c.recv();
    assert_eq!(p.op(), Opcode::REJECT, "{p:?}");
    assert_eq!(p.bhs().reject_reason().0, 0x05, "command not supported");
    assert_eq!(p.bhs().itt(), RESERVED_TAG);
    assert_eq!(p.data, h, "the offending BHS");
    c.assert_usable();
}

#[test]
fn snack_is_rejected_at_erl_0() {
    let t = TestTarget::start();
    let mut c = t.login();
    let itt = c.send_cmd(&CmdPdu { read: true, edtl: BS as u32, ..CmdPdu::new(RAM, read10(0, 1)) });
    c.collect(RAM, itt, None).assert_good();
    let mut h = [0u8; BHS_LEN];
    SnackHeader {
        ty: SnackType::DATA_R2T,
        lun: lun(RAM),
        itt,
        exp_stat_sn: c.exp_stat_sn,
        beg_run: 0,
        run_length: 0,
        ..Default::default()
    }
    .write(&mut h);
    c.send(&h, &[]);
    let p = c.recv();
    assert_eq!(p.op(), Opcode::REJECT, "{p:?}");
    assert!(matches!(p.bhs().reject_reason().0, 0x03 | 0x04), "{p:?}");
    assert_eq!(p.data, h);
    c.assert_usable();
}

#[test]
fn login_request_in_full_feature_phase_is_rejected() {
    let t = TestTarget::start();
    let mut c = t.login();
    let mut h = [0u8; BHS_LEN];
    LoginRequestHeader {
        transit: true,
        itt: 0x99,
        sn: InitiatorSn { cmd_sn: c.cmd_sn, exp_stat_sn: c.exp_stat_sn },
        ..Default::default()
    }
    .write(&mut h);
    c.send(&h, &[]);
    let p = c.recv();
    assert_eq!(p.op(), Opcode::REJECT, "{p:?}");
    assert_eq!(p.data, h);
    c.assert_usable();
}

#[test]
fn data_segment_above_max_recv_data_segment_length_is_rejected_and_closes() {
    let mut cfg = config(16);
    cfg.limits.max_recv_data_segment_length = 8192;
    let t = TestTarget::with(cfg, None);
    let mut c = t.login();
    assert_eq!(c.target_mrdsl, 8192);
    // Just the header: the target must not wait for (or read) the oversized segment.
    let mut h = [0u8; BHS_LEN];
    NopOutHeader {
        immediate: true,
        data_segment_len: 8192 + 4,
        itt: 0x31,
        ttt: RESERVED_TAG,
        sn: InitiatorSn { cmd_sn: c.cmd_sn, exp_stat_sn: c.exp_stat_sn },
        ..Default::default()
    }
    .write(&mut h);
    c.send(&h, &[]);
    let seen = c.expect_closed(Duration::from_secs(3));
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].op(), Opcode::REJECT);
    assert_eq!(seen[0].data, h);
}

#[test]
fn max_sized_segment_is_accepted() {
    let mut cfg = config(16);
    cfg.limits.max_recv_data_segment_length = 8192;
    let t = TestTarget::with(cfg, None);
    let mut c = t.login();
    let w = pattern(8192, 0xb0);
    let cmd = CmdPdu { write: true, edtl: 8192, data: &w, ..CmdPdu::new(RAM, write10(4, 16)) };
    let itt = c.send_cmd(&cmd);
    c.collect(RAM, itt, None).assert_good();
    assert_eq!(c.read(RAM, 4, 16).data, w);
}

#[test]
fn immediate_write_waiting_for_data_keeps_max_cmd_sn() {
    // An immediate command takes a command slot without moving ExpCmdSN; the MaxCmdSN the
    // initiator already has must not go back (the harness checks every PDU).
    let t = TestTarget::with(config(8), None);
    let o = LoginOpts::normal().key("InitialR2T", "Yes").key("ImmediateData", "No");
    let mut c = t.login_with(o);
    let max = c.max_cmd_sn;
    let itt = c.send_cmd(&CmdPdu { write: true, edtl: 1024, immediate: true, ..CmdPdu::new(RAM, write10(9, 2)) });
    let p = c.recv();
    assert_eq!(p.op(), Opcode::R2T);
    assert_eq!(p.bhs().max_cmd_sn(), max);
    // The whole advertised window is still usable.
    let mut itts = Vec::new();
    for _ in 0..8 {
        itts.push(c.send_cmd(&CmdPdu::new(RAM, tur_cdb())));
    }
    for i in itts {
        c.collect(RAM, i, None).assert_good();
    }
    c.send_sequence(RAM, itt, p.bhs().ttt(), 0, &pattern(1024, 9));
    c.collect(RAM, itt, None).assert_good();
    assert_eq!(c.read(RAM, 9, 2).data, pattern(1024, 9));
}

#[test]
fn lun_reset_ends_a_write_waiting_for_data() {
    let t = TestTarget::start();
    let o = LoginOpts::normal().key("InitialR2T", "Yes").key("ImmediateData", "No");
    let mut c = t.login_with(o);
    for l in [RAM, FILE] {
        let itt = c.send_cmd(&CmdPdu { write: true, edtl: 4096, ..CmdPdu::new(l, write10(800, 8)) });
        let r2t = c.recv();
        assert_eq!((r2t.op(), r2t.bhs().itt()), (Opcode::R2T, itt));
        let p = c.tmf(5, l, RESERVED_TAG, 0);
        assert_eq!(p.bhs().response(), 0);
        c.send_sequence(l, itt, r2t.bhs().ttt(), 0, &[0xeeu8; 4096]);
        c.expect_silence(Duration::from_millis(300));
        c.tur(l).assert_check(0x6, 0x29, 0x03);
        assert_eq!(c.read(l, 800, 8).data, vec![0u8; 4096]);
    }
}

#[test]
fn abort_task_set_and_clear_task_set() {
    let t = TestTarget::start();
    let o = LoginOpts::normal().key("InitialR2T", "Yes").key("ImmediateData", "No");
    let mut c = t.login_with(o);
    for f in [2u8, 4] {
        let itt = c.send_cmd(&CmdPdu { write: true, edtl: 512, ..CmdPdu::new(FILE, write10(900, 1)) });
        let p = c.recv();
        assert_eq!((p.op(), p.bhs().itt()), (Opcode::R2T, itt));
        let p = c.tmf(f, FILE, RESERVED_TAG, 0);
        assert_eq!(p.bhs().response(), 0, "function {f}");
        c.expect_silence(Duration::from_millis(200));
        c.tur(FILE).assert_good();
    }
}

#[test]
fn target_warm_and_cold_reset() {
    let t = TestTarget::start();
    let mut c = t.login();
    let p = c.tmf(6, RAM, RESERVED_TAG, 0);
    assert_eq!(p.bhs().response(), 0);
    for l in [RAM, FILE] {
        let r = c.tur(l);
        assert_eq!(r.status, CHECK_CONDITION);
        assert_eq!((r.sense_code().0, r.sense_code().1), (0x6, 0x29), "a reset unit attention on every LUN");
        c.tur(l).assert_good();
    }
    let mut other = t.login();
    let p = c.tmf(7, RAM, RESERVED_TAG, 0);
    assert_eq!(p.bhs().response(), 0);
    // After the response every connection to the target closes.
    assert!(c.expect_closed(Duration::from_secs(3)).is_empty());
    assert!(other.expect_closed(Duration::from_secs(3)).is_empty());
    let mut c = Conn::login(t.addr, &LoginOpts::normal()).unwrap();
    c.tur(RAM).assert_check(0x6, 0x29, 0x00);
}

#[test]
fn nop_out_without_ping_gets_no_answer() {
    let t = TestTarget::start();
    let mut c = t.login();
    c.send_nop_out(RESERVED_TAG, RESERVED_TAG, true, &[]);
    c.expect_silence(Duration::from_millis(300));
    c.assert_usable();
}

#[test]
fn text_renegotiates_max_recv_data_segment_length() {
    let t = TestTarget::start();
    let mut c = t.login();
    assert_eq!(c.our_mrdsl, 262144);
    let w = pattern(32 * BS, 0xc0);
    c.write(RAM, 0, &w).assert_good();
    let p = c.text(&[("MaxRecvDataSegmentLength", "4096")]);
    assert!(p.bhs().final_bit());
    assert!(p.data.is_empty() || !String::from_utf8_lossy(&p.data).contains("Reject"), "{:?}", p.data);
    // From now on the target sends at most 4 KiB per PDU (the harness checks every PDU).
    c.our_mrdsl = 4096;
    for l in [RAM, FILE] {
        if l == FILE {
            c.write(FILE, 0, &w).assert_good();
        }
        let r = c.read(l, 0, 32);
        r.assert_good();
        assert_eq!(r.data, w);
        assert_eq!(r.data_ins().len(), 4);
    }
    c.send_nop_out(0x66, RESERVED_TAG, true, &[7u8; 4096]);
    assert_eq!(c.recv().data.len(), 4096);
}

#[test]
fn abort_task_while_unsolicited_data_is_due() {
    let t = TestTarget::start();
    let mut c = t.login();
    c.chunk = 4096;
    for l in [RAM, FILE] {
        // In range (held for its data) and out of range (answered at once, data drained).
        for lba in [100, BLOCKS as u32] {
            let w = pattern(16384, 1);
            let n = c.cmd_sn;
            let cmd = CmdPdu {
                write: true,
                edtl: 16384,
                data: &w[..4096],
                final_bit: false,
                ..CmdPdu::new(l, write10(lba, 32))
            };
            let itt = c.send_cmd(&cmd);
            c.send_data_out(l, itt, RESERVED_TAG, 0, 4096, &w[4096..8192], false);
            c.expect_silence(Duration::from_millis(200));
            // The initiator gives up on it and sends no more of its data.
            let p = c.tmf(1, l, itt, n);
            assert_eq!(p.bhs().response(), 0, "LBA {lba}: no status was sent, the task exists");
            c.expect_silence(Duration::from_millis(300));
            // Its ITT can be used again.
            c.send_cmd_itt(&CmdPdu::new(l, tur_cdb()), itt);
            c.collect(l, itt, None).assert_good();
        }
        assert_eq!(c.read(l, 100, 32).data, vec![0u8; 16384]);
    }
}

#[test]
fn lun_reset_while_unsolicited_data_is_due() {
    let t = TestTarget::start();
    let mut c = t.login();
    for l in [RAM, FILE] {
        let w = pattern(8192, 2);
        let cmd = CmdPdu {
            write: true,
            edtl: 8192,
            data: &w[..4096],
            final_bit: false,
            ..CmdPdu::new(l, write10(BLOCKS as u32, 16))
        };
        let itt = c.send_cmd(&cmd);
        c.expect_silence(Duration::from_millis(200));
        let p = c.tmf(5, l, RESERVED_TAG, 0);
        assert_eq!(p.bhs().response(), 0);
        c.expect_silence(Duration::from_millis(300));
        c.send_cmd_itt(&CmdPdu::new(l, tur_cdb()), itt);
        c.collect(l, itt, None).assert_check(0x6, 0x29, 0x03);
    }
}
