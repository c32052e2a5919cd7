//! The model driven by hand: bring-up, logins, command round trips, ABTS, TM, link events
//! and faults, against IOCB byte layouts written out in the tests.

mod common;

use std::time::Duration;

use common::*;
use isp_model::{Chip, Fault, IspModel, ModelConfig, ModelState, TaskMgmt};

const INI: u32 = 0x01_0300;
const INI_WWPN: u64 = 0x2100_0024_ff31_4c2a;

#[test]
fn pci_ids() {
    let h = H::new(ModelConfig::default(), 8);
    assert_eq!(h.model.pci_ids(), (0x1077, 0x2532));
    let h = H::new(ModelConfig { chip: Chip::Isp2432, ..ModelConfig::default() }, 8);
    assert_eq!(h.model.pci_ids(), (0x1077, 0x2432));
}

#[test]
fn synthetic_firmware_layout() {
    let fw = IspModel::synthetic_firmware(Chip::Isp2532, false);
    let w: Vec<u32> = fw.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
    let (a1, l1) = (w[2], w[3] as usize);
    let (a2, l2) = (w[l1 + 2], w[l1 + 3] as usize);
    assert_eq!(l1 + l2, w.len(), "two segments fill the file");
    assert_ne!(a1, a2);
    assert_eq!(&w[4..7], &[8, 7, 0], "version words");
    for seg in [&w[..l1], &w[l1..]] {
        assert_eq!(seg.iter().fold(0u32, |a, x| a.wrapping_add(*x)), 0);
    }
    let bad = IspModel::synthetic_firmware(Chip::Isp2532, true);
    assert_eq!(bad.len(), fw.len());
    assert_ne!(bad, fw);
}

#[test]
fn bring_up_by_hand() {
    let h = H::up();
    assert!(h.model.errors().is_empty(), "{:?}", h.model.errors());
    assert_eq!(h.model.stats().frame_size, 2048);
    assert!(h.irqs.load(std::sync::atomic::Ordering::SeqCst) > 0);
}

#[test]
fn bring_up_isp2432() {
    let h = H::bring_up(ModelConfig { chip: Chip::Isp2432, ..ModelConfig::default() }, 8);
    assert!(h.model.errors().is_empty(), "{:?}", h.model.errors());
}

#[test]
fn corrupt_firmware_is_refused() {
    let mut h = H::new(ModelConfig::default(), 8);
    h.soft_reset_and_rom();
    let start = h.load_firmware(&IspModel::synthetic_firmware(Chip::Isp2532, true));
    let r = h.mb(&[(0, 0x07), (1, (start >> 16) as u16), (2, start as u16)]).unwrap();
    assert_eq!(r[0], 0x4010, "VERIFY CHECKSUM reports a checksum error");
    assert_ne!(u32::from(r[1]) | (u32::from(r[2]) << 16), 0);
    let r = h.mb(&[(0, 0x02), (1, (start >> 16) as u16), (2, start as u16)]).unwrap();
    assert_ne!(r[0], 0x4000, "EXECUTE FIRMWARE refused");
    assert_eq!(h.model.state(), ModelState::RomCode);
    assert!(!h.model.errors().is_empty());
}

#[test]
fn firmware_loaded_without_word_swap_is_refused() {
    let mut h = H::new(ModelConfig::default(), 8);
    h.soft_reset_and_rom();
    // Load the file's bytes as they are (big-endian words, not swapped to little-endian).
    let fw = IspModel::synthetic_firmware(Chip::Isp2532, false);
    h.mem.put(FW, &fw);
    let words = (fw.len() / 4) as u32;
    let r = h
        .mb(&[
            (0, 0x0b),
            (8, 0x0010),
            (1, 0),
            (2, (FW >> 16) as u16),
            (3, FW as u16),
            (6, (FW >> 48) as u16),
            (7, (FW >> 32) as u16),
            (4, (words >> 16) as u16),
            (5, words as u16),
        ])
        .unwrap();
    assert_eq!(r[0], 0x4000);
    let r = h.mb(&[(0, 0x02), (1, 0x0010), (2, 0)]).unwrap();
    assert_ne!(r[0], 0x4000);
    assert_eq!(h.model.state(), ModelState::RomCode);
}

#[test]
fn mailbox_errors() {
    let mut h = H::new(ModelConfig::default(), 8);
    h.soft_reset_and_rom();
    // Not yet running: GET ADAPTER ID is a command error.
    assert_eq!(h.mb(&[(0, 0x20)]).unwrap()[0], 0x4005);
    // Unknown command.
    assert_eq!(h.mb(&[(0, 0x7777)]).unwrap()[0], 0x4001);
    // INITIALIZE FIRMWARE before EXECUTE FIRMWARE.
    h.write_icb(2048, 0, 0x30);
    assert_ne!(h.init_fw(), 0x4000);
}

#[test]
fn init_requires_target_mode() {
    let mut h = H::new(ModelConfig::default(), 8);
    h.soft_reset_and_rom();
    let start = h.load_firmware(&IspModel::synthetic_firmware(Chip::Isp2532, false));
    let r = h.mb(&[(0, 0x02), (1, (start >> 16) as u16), (2, start as u16)]).unwrap();
    assert_eq!(r[0], 0x4000);
    h.write_icb(2048, 0, 0x00); // initiator mode only
    assert_eq!(h.init_fw(), 0x4006);
    assert_eq!(h.model.state(), ModelState::FirmwareRunning);
    h.write_icb(2048, 0, 0x30);
    assert_eq!(h.init_fw(), 0x4000);
}

#[test]
fn nvram_through_flash_registers() {
    let h = H::new(ModelConfig::default(), 8);
    let mut words = Vec::new();
    for i in 0..128u32 {
        h.w(0x00, 0x7ffe_0000 | (0x80 + i));
        assert_ne!(h.r(0x00) & (1 << 31), 0, "flash data ready");
        words.push(h.r(0x04));
    }
    assert_eq!(&words[0].to_le_bytes(), b"ISP ");
    assert_eq!(words.iter().fold(0u32, |a, w| a.wrapping_add(*w)), 0);
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(&bytes[20..28], &0x2100_0024_ff00_0001u64.to_be_bytes());
}

#[test]
fn login_plogi_prli_as_immediate_notify() {
    let mut h = H::up();
    let ini = h.model.initiator(INI, INI_WWPN);
    ini.login();
    let a = h.atios();
    assert_eq!(a.len(), 1);
    let n = a[0];
    assert_eq!(n[0], 0x0d, "IMMEDIATE NOTIFY");
    let handle = le16(&n, 8);
    assert_eq!(handle, ini.nport_handle());
    assert_eq!(le16(&n, 16), 0x46, "status: ELS");
    assert_eq!(n[18], 0x03, "PLOGI");
    assert_eq!(&n[40..48], &INI_WWPN.to_be_bytes(), "port name");
    assert_eq!(&n[56..59], &[0x00, 0x03, 0x01], "port id, little-endian");
    assert!(h.rsps().is_empty(), "the notify is in the ATIO ring only");
    assert!(!ini.is_logged_in());
    h.submit(&[H::nack_for(&n, 0x77)]);
    let r = h.rsps();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0][0], 0x0e);
    assert_eq!(le32(&r[0], 4), 0x77, "our handle back");
    assert_eq!(le16(&r[0], 16), 1, "NOTIFY ACK success");
    let a = h.atios();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0][18], 0x20, "PRLI follows the PLOGI ack");
    assert_eq!(le16(&a[0], 8), handle);
    h.submit(&[H::nack_for(&a[0], 0x78)]);
    assert_eq!(h.rsps().len(), 1);
    assert!(ini.is_logged_in());

    // GET ID LIST / GET PORT DATABASE see the handle.
    let r = h
        .mb(&[
            (0, 0x7c),
            (2, (SCRATCH >> 16) as u16),
            (3, SCRATCH as u16),
            (6, (SCRATCH >> 48) as u16),
            (7, (SCRATCH >> 32) as u16),
            (8, 256),
            (9, 0),
        ])
        .unwrap();
    assert_eq!((r[0], r[1]), (0x4000, 1));
    let e = h.mem.get(SCRATCH, 8);
    assert_eq!(&e[0..3], &[0x00, 0x03, 0x01]);
    assert_eq!(le16(&e, 4), handle);
    let r = h
        .mb(&[
            (0, 0x64),
            (1, handle),
            (2, (SCRATCH >> 16) as u16),
            (3, SCRATCH as u16),
            (6, (SCRATCH >> 48) as u16),
            (7, (SCRATCH >> 32) as u16),
            (9, 0),
            (10, 0),
        ])
        .unwrap();
    assert_eq!(r[0], 0x4000);
    let pd = h.mem.get(SCRATCH, 64);
    assert_eq!(pd[2] & 0x0f, 0x06, "PRLI complete");
    assert_eq!(&pd[8..11], &[0x01, 0x03, 0x00], "port id");
    assert_eq!(le16(&pd, 14), handle);
    assert_eq!(&pd[24..32], &INI_WWPN.to_be_bytes());
    assert!(h.model.errors().is_empty(), "{:?}", h.model.errors());
}

#[test]
fn nack_with_wrong_exchange_is_an_error() {
    let mut h = H::up();
    let ini = h.model.initiator(INI, INI_WWPN);
    ini.login();
    let a = h.atios();
    let mut n = H::nack_for(&a[0], 1);
    n[20] ^= 0x55;
    h.submit(&[n]);
    let r = h.rsps();
    assert_eq!(r.len(), 1);
    assert_ne!(r[0][3], 0, "entry status error");
    assert!(!h.model.errors().is_empty());
    assert!(!ini.is_logged_in());
}

#[test]
fn read10_round_trip() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    let handle = ini.nport_handle();
    let cdb = [0x28, 0, 0, 0, 0, 0x10, 0, 0, 8, 0];
    let tag = ini.command(0, &cdb, &[], 4096);
    let a = h.atios();
    assert_eq!(a.len(), 1);
    let atio = a[0];
    // The ATIO type 7, byte by byte.
    let mut want = [0u8; 64];
    want[0] = 0x06;
    want[1] = 0x01;
    want[2] = 0x38; // 24-byte FC header + 32-byte FCP_CMND
    want[4..8].copy_from_slice(&tag.to_le_bytes());
    want[8] = 0x06; // R_CTL unsolicited command
    want[9..12].copy_from_slice(&[0x01, 0x02, 0x00]); // D_ID
    want[13..16].copy_from_slice(&[0x01, 0x03, 0x00]); // S_ID
    want[16] = 0x08; // FCP
    want[17..20].copy_from_slice(&[0x29, 0x00, 0x00]); // F_CTL
    want[24..26].copy_from_slice(&atio[24..26]); // OX_ID (the initiator's choice)
    want[26..28].copy_from_slice(&[0xff, 0xff]); // RX_ID
    want[43] = 0x02; // RDDATA
    want[44..54].copy_from_slice(&cdb);
    want[60..64].copy_from_slice(&[0x00, 0x00, 0x10, 0x00]); // FCP_DL 4096
    assert_eq!(atio, want);

    // Data-In with status in one CTIO7.
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    h.mem.put(DATA, &pattern);
    let c = with_dsd(ctio7(0x2000_0001, &atio, handle, 0x8002), 1, 4096, DATA, 4096);
    assert_eq!(c[26..28], [0x02, 0x80]);
    h.submit(&[c]);
    let r = h.rsps();
    assert_eq!(r.len(), 1);
    let done = r[0];
    assert_eq!(done[0], 0x12);
    assert_eq!(le32(&done, 4), 0x2000_0001, "handle");
    assert_eq!(le16(&done, 8), 0x0001, "CTIO completion status: success");
    assert_eq!(le32(&done, 20), tag, "exchange address");
    let comp = ini.wait_completion(tag, Duration::from_secs(1)).unwrap();
    assert_eq!(comp.scsi_status, 0);
    assert_eq!(comp.data_in, pattern);
    assert_eq!(comp.residual, 0);
    assert!(!comp.aborted);
    assert_eq!(comp.frames_in, 2, "4096 bytes in 2048-byte frames");
    assert!(h.model.errors().is_empty(), "{:?}", h.model.errors());
    assert_eq!(h.model.stats().open_exchanges, 0);
}

#[test]
fn read_in_two_ctios_and_separate_status() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    let nh = ini.nport_handle();
    let tag = ini.command(3, &[0x28, 0, 0, 0, 0, 0, 0, 0, 6, 0], &[], 3072);
    let atio = h.atios()[0];
    assert_eq!(&atio[32..40], &[0, 3, 0, 0, 0, 0, 0, 0], "LUN 3");
    h.mem.put(DATA, &[0xaa; 1000]);
    h.mem.put(DATA + 0x1000, &[0xbb; 2072]);
    let c1 = with_dsd(ctio7(1, &atio, nh, 0x0002), 1, 1000, DATA, 1000);
    let mut c2 = with_dsd(ctio7(2, &atio, nh, 0x0002), 1, 2072, DATA + 0x1000, 2072);
    c2[36..40].copy_from_slice(&1000u32.to_le_bytes()); // relative offset
    let s = ctio7(3, &atio, nh, 0x8000 | 0x0040);
    h.submit(&[c1, c2, s]);
    let r = h.rsps();
    assert_eq!(r.len(), 3);
    assert!(r.iter().all(|e| le16(e, 8) == 1));
    let comp = ini.completion(tag).unwrap();
    assert_eq!(comp.data_in.len(), 3072);
    assert_eq!(comp.data_in[999], 0xaa);
    assert_eq!(comp.data_in[1000], 0xbb);
    assert_eq!(comp.frames_in, 1 + 2);
    assert!(h.model.errors().is_empty(), "{:?}", h.model.errors());
}

#[test]
fn write_with_continuation_dsds() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    let nh = ini.nport_handle();
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let tag = ini.command(0, &[0x2a, 0, 0, 0, 0, 1, 0, 0, 6, 0], &data, 0);
    let atio = h.atios()[0];
    assert_eq!(atio[43], 0x01, "WRDATA");
    assert_eq!(&atio[60..64], &3000u32.to_be_bytes());
    // Three segments: one in the CTIO7, two in a continuation type 1 IOCB.
    let mut c = with_dsd(ctio7(9, &atio, nh, 0x0001), 3, 3000, DATA, 1000);
    c[1] = 2; // entry count
    let mut cont = [0u8; 64];
    cont[0] = 0x0a;
    cont[1] = 1;
    cont[4..12].copy_from_slice(&(DATA + 0x2000).to_le_bytes());
    cont[12..16].copy_from_slice(&1000u32.to_le_bytes());
    cont[16..24].copy_from_slice(&(DATA + 0x4000).to_le_bytes());
    cont[24..28].copy_from_slice(&1000u32.to_le_bytes());
    h.submit(&[c, cont]);
    let r = h.rsps();
    assert_eq!(r.len(), 1);
    assert_eq!(le16(&r[0], 8), 1);
    assert_eq!(h.mem.get(DATA, 1000), &data[..1000]);
    assert_eq!(h.mem.get(DATA + 0x2000, 1000), &data[1000..2000]);
    assert_eq!(h.mem.get(DATA + 0x4000, 1000), &data[2000..]);
    assert!(ini.completion(tag).is_none(), "no status yet");
    // Status GOOD in mode 1.
    h.submit(&[ctio7(10, &atio, nh, 0x8040)]);
    assert_eq!(h.rsps().len(), 1);
    let comp = ini.completion(tag).unwrap();
    assert_eq!((comp.scsi_status, comp.residual, comp.data_out_sent), (0, 0, 3000));
    assert!(h.model.errors().is_empty(), "{:?}", h.model.errors());
}

#[test]
fn check_condition_with_sense_and_underflow() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    let nh = ini.nport_handle();
    let tag = ini.command(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0], &[], 4096);
    let atio = h.atios()[0];
    let sense = [0x70, 0, 0x05, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x24, 0x00, 0, 0, 0, 0];
    let mut c = ctio7(5, &atio, nh, 0x8040);
    c[24..26].copy_from_slice(&(sense.len() as u16).to_le_bytes());
    c[28..32].copy_from_slice(&4096u32.to_le_bytes());
    // CHECK CONDITION, sense length valid (bit 9), residual under (bit 11).
    c[34..36].copy_from_slice(&(0x02u16 | 1 << 9 | 1 << 11).to_le_bytes());
    // Sense bytes as big-endian 32-bit words in the IOCB.
    let mut padded = [0u8; 24];
    padded[..sense.len()].copy_from_slice(&sense);
    for (i, w) in padded.chunks_exact(4).enumerate() {
        c[40 + i * 4..44 + i * 4].copy_from_slice(&[w[3], w[2], w[1], w[0]]);
    }
    h.submit(&[c]);
    assert_eq!(h.rsps().len(), 1);
    let comp = ini.completion(tag).unwrap();
    assert_eq!(comp.scsi_status, 0x02);
    assert_eq!(comp.sense, sense);
    assert_eq!(comp.residual, 4096);
    assert!(comp.data_in.is_empty());
    assert!(h.model.errors().is_empty(), "{:?}", h.model.errors());
}

#[test]
fn short_read_residual_checked() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    let nh = ini.nport_handle();
    // Driver reports the underflow right.
    let tag = ini.command(0, &[0x12, 0, 0, 0, 0xff, 0], &[], 255);
    let atio = h.atios()[0];
    h.mem.put(DATA, &[1; 36]);
    let mut c = with_dsd(ctio7(1, &atio, nh, 0x8002), 1, 36, DATA, 36);
    c[28..32].copy_from_slice(&219u32.to_le_bytes());
    c[34..36].copy_from_slice(&(1u16 << 11).to_le_bytes());
    h.submit(&[c]);
    h.rsps();
    assert_eq!(ini.completion(tag).unwrap().residual, 219);
    assert!(h.model.errors().is_empty(), "{:?}", h.model.errors());
    // Driver forgets it: recorded.
    let tag = ini.command(0, &[0x12, 0, 0, 0, 0xff, 0], &[], 255);
    let atio = h.atios()[0];
    h.submit(&[with_dsd(ctio7(2, &atio, nh, 0x8002), 1, 36, DATA, 36)]);
    h.rsps();
    assert_eq!(ini.completion(tag).unwrap().residual, 0);
    assert_eq!(h.model.errors().len(), 1, "{:?}", h.model.errors());
}

#[test]
fn abts_received_and_answered() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    let nh = ini.nport_handle();
    let tag = ini.command(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0], &[], 4096);
    let atio = h.atios()[0];
    ini.abort(tag);
    let r = h.rsps();
    assert_eq!(r.len(), 1, "ABTS RECEIVED in the response ring");
    let abts = r[0];
    assert_eq!(abts[0], 0x54);
    assert_eq!(le16(&abts, 10), nh);
    assert_eq!(abts[23], 0x81, "R_CTL ABTS");
    assert_eq!(&abts[24..27], &[0x00, 0x03, 0x01], "S_ID little-endian");
    assert_eq!(le16(&abts, 38), u16::from_be_bytes([atio[24], atio[25]]), "OX_ID");
    assert_eq!(le32(&abts, 60), tag, "exchange to abort");
    // A CTIO racing the abort completes aborted.
    h.mem.put(DATA, &[0; 4096]);
    h.submit(&[with_dsd(ctio7(7, &atio, nh, 0x8002), 1, 4096, DATA, 4096)]);
    let r = h.rsps();
    assert_eq!(le16(&r[0], 8), 0x02, "CTIO_ABORTED");
    assert!(ini.completion(tag).is_none());
    // ABTS RESPONSE with BA_ACC.
    let mut resp = [0u8; 64];
    resp[0] = 0x55;
    resp[1] = 1;
    resp[4..8].copy_from_slice(&0x4444u32.to_le_bytes());
    resp[10..12].copy_from_slice(&nh.to_le_bytes());
    resp[16..20].copy_from_slice(&abts[16..20]);
    resp[20..23].copy_from_slice(&abts[24..27]); // D_ID = their S_ID
    resp[23] = 0x84; // BA_ACC
    resp[24..27].copy_from_slice(&abts[20..23]);
    resp[36..40].copy_from_slice(&abts[36..40]);
    resp[60..64].copy_from_slice(&tag.to_le_bytes());
    h.submit(&[resp]);
    let r = h.rsps();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0][0], le16(&r[0], 8)), (0x55, 0), "ABTS RESPONSE completed");
    assert_eq!(le32(&r[0], 4), 0x4444);
    let comp = ini.completion(tag).unwrap();
    assert!(comp.aborted);
    // Terminating the exchange afterwards is fine.
    h.submit(&[ctio7(8, &atio, nh, 0x4040)]);
    assert_eq!(le16(&h.rsps()[0], 8), 1);
    assert!(h.model.errors().is_empty(), "{:?}", h.model.errors());
}

#[test]
fn lun_reset_as_atio_task_management() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    let nh = ini.nport_handle();
    let tag = ini.task_mgmt(1, TaskMgmt::LunReset);
    let atio = h.atios()[0];
    assert_eq!(atio[0], 0x06);
    assert_eq!(atio[42], 0x10, "LUN RESET flag");
    assert_eq!(&atio[32..34], &[0, 1]);
    assert_eq!(&atio[60..64], &[0; 4]);
    let mut c = ctio7(3, &atio, nh, 0x8040);
    c[34..36].copy_from_slice(&(1u16 << 8).to_le_bytes()); // response info valid
    c[36..38].copy_from_slice(&8u16.to_le_bytes());
    c[40] = 0x00; // FCP_RSP_INFO byte 3 (response code) after the word swap
    h.submit(&[c]);
    h.rsps();
    let comp = ini.completion(tag).unwrap();
    assert_eq!(comp.tm_response, Some(0));
    assert!(h.model.errors().is_empty(), "{:?}", h.model.errors());
    // A TM answer without response info is recorded.
    let tag = ini.task_mgmt(0, TaskMgmt::AbortTaskSet);
    let atio = h.atios()[0];
    assert_eq!(atio[42], 0x02);
    h.submit(&[ctio7(4, &atio, nh, 0x8040)]);
    h.rsps();
    assert!(ini.completion(tag).is_some());
    assert_eq!(h.model.errors().len(), 1);
}

#[test]
fn link_down_and_up() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    let tag = ini.command(0, &[0, 0, 0, 0, 0, 0], &[], 0);
    let atio = h.atios()[0];
    h.model.link_down();
    h.drain();
    assert_eq!(h.asyncs.first().map(|a| a[0]), Some(0x8012), "LOOP DOWN");
    assert!(!ini.is_logged_in());
    assert!(ini.completion(tag).unwrap().aborted);
    assert_eq!(h.mb(&[(0, 0x69)]).unwrap()[1], 4, "not ready");
    // A CTIO for the lost exchange: port logged out, not a driver error.
    h.submit(&[ctio7(1, &atio, ini.nport_handle(), 0x8040)]);
    assert_eq!(le16(&h.rsps()[0], 8), 0x29);
    h.asyncs.clear();
    h.model.link_up();
    h.drain();
    let codes: Vec<u16> = h.asyncs.iter().map(|a| a[0]).collect();
    assert_eq!(codes, vec![0x8011, 0x8014], "LOOP UP, PORT UPDATE");
    assert_eq!(h.mb(&[(0, 0x69)]).unwrap()[1], 3);
    h.login(INI, INI_WWPN);
    assert!(h.model.errors().is_empty(), "{:?}", h.model.errors());
}

#[test]
fn logout_notify() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    ini.logout();
    let a = h.atios();
    assert_eq!((a[0][0], a[0][18]), (0x0d, 0x05), "LOGO notify");
    h.submit(&[H::nack_for(&a[0], 5)]);
    h.rsps();
    assert!(!ini.is_logged_in());
    assert!(h.model.errors().is_empty(), "{:?}", h.model.errors());
}

#[test]
fn mailbox_silent() {
    let mut h = H::up();
    h.model.inject(Fault::MailboxSilent);
    assert!(h.mb(&[(0, 0x69)]).is_none(), "no completion");
    assert_eq!(h.mb(&[(0, 0x69)]).unwrap()[0], 0x4000, "the next one completes");
}

#[test]
fn atio_ring_full_is_honoured() {
    let mut h = H::bring_up(ModelConfig::default(), 4);
    let ini = h.login(INI, INI_WWPN);
    let tags: Vec<u32> = (0..5).map(|_| ini.command(0, &[0, 0, 0, 0, 0, 0], &[], 0)).collect();
    // Ring of 4: 3 entries usable.
    h.drain();
    let inp = h.r(0x3c) as u16;
    assert_eq!((inp + 4 - h.atio_out) % 4, 3);
    assert_eq!(h.model.stats().atio_backlog, 2);
    // Unread entries are not overwritten.
    let first = h.mem.get(ATIO + u64::from(h.atio_out) * 64, 64);
    assert_eq!(le32(&first, 4), tags[0]);
    let a = h.atios();
    assert_eq!(a.len(), 3);
    let b = h.atios();
    assert_eq!(b.len(), 2, "held ATIOs arrive once entries are free");
    let got: Vec<u32> = a.iter().chain(b.iter()).map(|e| le32(e, 4)).collect();
    assert_eq!(got, tags);
    assert_eq!(h.model.stats().atio_backlog, 0);
}

#[test]
fn atio_ring_full_fault_holds_until_out_pointer_moves() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    h.model.inject(Fault::AtioRingFull);
    let tag = ini.command(0, &[0, 0, 0, 0, 0, 0], &[], 0);
    h.drain();
    assert_eq!(h.r(0x3c) as u16, h.atio_out, "nothing posted");
    assert_eq!(h.model.stats().atio_backlog, 1);
    h.w(0x40, u32::from(h.atio_out));
    let a = h.atios();
    assert_eq!(a.len(), 1);
    assert_eq!(le32(&a[0], 4), tag);
}

#[test]
fn bad_ctios_are_recorded_and_answered() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    let nh = ini.nport_handle();
    let tag = ini.command(0, &[0, 0, 0, 0, 0, 0], &[], 0);
    let atio = h.atios()[0];
    // Unknown exchange.
    let mut c = ctio7(1, &atio, nh, 0x8040);
    c[20..24].copy_from_slice(&0x00ab_cdefu32.to_le_bytes());
    h.submit(&[c]);
    assert_eq!(le16(&h.rsps()[0], 8), 0x08, "invalid RX_ID");
    assert_eq!(h.model.errors().len(), 1);
    // Null handle.
    h.submit(&[ctio7(0, &atio, nh, 0x8040)]);
    assert_ne!(h.rsps()[0][3], 0, "entry status");
    assert_eq!(h.model.errors().len(), 2);
    // Wrong N_Port handle.
    h.submit(&[ctio7(2, &atio, nh + 1, 0x8040)]);
    assert_ne!(le16(&h.rsps()[0], 8), 0x01);
    assert_eq!(h.model.errors().len(), 3);
    assert!(ini.completion(tag).is_none());
    // Injected completion status.
    h.model.inject(Fault::CtioStatus(0x0b));
    h.submit(&[ctio7(3, &atio, nh, 0x8040)]);
    assert_eq!(le16(&h.rsps()[0], 8), 0x0b);
    // Then the right one.
    h.submit(&[ctio7(4, &atio, nh, 0x8040)]);
    assert_eq!(le16(&h.rsps()[0], 8), 0x01);
    assert!(ini.completion(tag).is_some());
}

#[test]
fn unknown_iocb_and_dma_faults() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    let nh = ini.nport_handle();
    let mut junk = [0u8; 64];
    junk[0] = 0x77;
    junk[1] = 1;
    h.submit(&[junk]);
    let r = h.rsps();
    assert_eq!((r[0][0], r[0][3]), (0x77, 0x04), "returned with invalid entry type");
    // A DSD outside the arena.
    let tag = ini.command(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[], 512);
    let atio = h.atios()[0];
    h.submit(&[with_dsd(ctio7(1, &atio, nh, 0x8002), 1, 512, 0xdead_0000, 512)]);
    assert_ne!(le16(&h.rsps()[0], 8), 0x01);
    assert!(ini.completion(tag).is_none());
    assert_eq!(h.model.errors().len(), 2);
    // req_q_in past the ring end.
    h.w(0x1c, 999);
    assert_eq!(h.model.errors().len(), 3);
}

#[test]
fn garbage_request_entries_never_panic() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    let _ = ini.command(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[], 512);
    let atio = h.atios()[0];
    let mut x = 0x9e37_79b9u32;
    for round in 0..200 {
        let mut e = [0u8; 64];
        for b in e.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        e[0] = [0x12, 0x0e, 0x55, 0x0a, 0x04, 0x12][round % 6];
        e[1] = (x % 3) as u8;
        if round % 3 == 0 {
            e[20..24].copy_from_slice(&atio[4..8]);
        }
        h.mem.put(REQ + u64::from(h.req_in) * 64, &e);
        h.req_in = (h.req_in + 1) % REQ_LEN;
        h.w(0x1c, u32::from(h.req_in));
        h.rsps();
    }
    assert!(!h.model.errors().is_empty());
}

#[test]
fn exchanges_exhausted_gives_unknown_exchange_address() {
    let mut h = H::bring_up(ModelConfig { exchanges: 1, ..ModelConfig::default() }, 8);
    let ini = h.login(INI, INI_WWPN);
    let nh = ini.nport_handle();
    let t1 = ini.command(0, &[0, 0, 0, 0, 0, 0], &[], 0);
    let t2 = ini.command(0, &[0, 0, 0, 0, 0, 0], &[], 0);
    let a = h.atios();
    assert_eq!(le32(&a[0], 4), t1);
    assert_eq!(le32(&a[1], 4), 0xffff_ffff, "no exchange left");
    // BUSY for the second, by OX_ID.
    let mut c = ctio7(2, &a[1], nh, 0x8040);
    c[34..36].copy_from_slice(&0x08u16.to_le_bytes());
    h.submit(&[c]);
    assert_eq!(le16(&h.rsps()[0], 8), 1);
    assert_eq!(ini.completion(t2).unwrap().scsi_status, 0x08);
    h.submit(&[ctio7(1, &a[0], nh, 0x8040)]);
    h.rsps();
    assert_eq!(ini.completion(t1).unwrap().scsi_status, 0);
    assert!(h.model.errors().is_empty(), "{:?}", h.model.errors());
}

#[test]
fn soft_reset_drops_everything() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    let tag = ini.command(0, &[0, 0, 0, 0, 0, 0], &[], 0);
    h.atios();
    h.soft_reset_and_rom();
    assert!(!ini.is_logged_in());
    assert!(ini.completion(tag).unwrap().aborted);
    assert_eq!(h.mb(&[(0, 0x69)]).unwrap()[0], 0x4005, "firmware gone");
}

#[test]
fn interrupt_only_when_enabled() {
    let mut h = H::up();
    h.w(0x0c, 0);
    let before = h.irqs.load(std::sync::atomic::Ordering::SeqCst);
    h.model.inject(Fault::SystemError);
    assert_eq!(h.irqs.load(std::sync::atomic::Ordering::SeqCst), before);
    assert_ne!(h.r(0x10) & (1 << 3), 0, "istatus shows the pending interrupt");
    h.w(0x0c, 1 << 3);
    assert_eq!(h.irqs.load(std::sync::atomic::Ordering::SeqCst), before + 1);
    h.drain();
    assert_eq!(h.asyncs.last().map(|a| a[0]), Some(0x8002));
}

#[test]
fn types_are_send_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn clone_send<T: Clone + Send>() {}
    send_sync::<IspModel>();
    clone_send::<isp_model::Initiator>();
}

#[test]
fn irq_callback_runs_without_the_model_lock() {
    use std::sync::{Arc, OnceLock};
    let slot: Arc<OnceLock<Arc<IspModel>>> = Arc::new(OnceLock::new());
    let seen = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (s2, seen2) = (Arc::clone(&slot), Arc::clone(&seen));
    let model = IspModel::new(
        ModelConfig::default(),
        Arena::new(),
        Arc::new(move |_| {
            // Re-entering the model from the callback must not deadlock.
            if let Some(m) = s2.get() {
                seen2.store(m.mmio_read32(0x44), std::sync::atomic::Ordering::SeqCst);
            }
        }),
    );
    slot.set(Arc::clone(&model)).unwrap();
    model.mmio_write32(0x0c, 1 << 3);
    model.mmio_write32(0x80, 0x7777);
    model.mmio_write32(0x48, 0x5000_0000);
    let hs = seen.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(hs >> 16, 0x4001, "unknown command status seen from inside the callback");
    assert_eq!(hs & 0x80ff, 0x8002, "ROM mailbox failure interrupt");
}

#[test]
fn driver_thread_and_wait_completion() {
    let mut h = H::up();
    let ini = h.login(INI, INI_WWPN);
    let nh = ini.nport_handle();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    let driver = std::thread::spawn(move || {
        let mut handle = 1u32;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            for atio in h.atios() {
                h.mem.put(DATA, &[0x5a; 512]);
                h.submit(&[with_dsd(ctio7(handle, &atio, nh, 0x8002), 1, 512, DATA, 512)]);
                handle += 1;
            }
            h.rsps();
            std::thread::yield_now();
        }
        h
    });
    let tags: Vec<u32> = (0..20).map(|_| ini.command(0, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[], 512)).collect();
    for t in tags {
        let c = ini.wait_completion(t, Duration::from_secs(10)).expect("completion");
        assert_eq!(c.data_in, vec![0x5a; 512]);
        assert_eq!(c.frames_in, 1);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let h = driver.join().unwrap();
    assert!(h.model.errors().is_empty(), "{:?}", h.model.errors());
}

#[test]
fn response_ring_full_is_honoured() {
    let mut h = H::up();
    let junk = |n: u8| {
        let mut e = [0u8; 64];
        e[0] = 0x7e;
        e[1] = 1;
        e[4] = n;
        e
    };
    let first: Vec<[u8; 64]> = (0..15).map(junk).collect();
    h.submit(&first);
    let more: Vec<[u8; 64]> = (15..20).map(junk).collect();
    h.submit(&more);
    h.drain();
    assert_eq!(h.model.stats().rsp_backlog, 5, "ring of 16 holds 15");
    assert_eq!(h.mem.get(RSP + u64::from(h.rsp_out) * 64, 64)[4], 0, "unread entry intact");
    let a = h.rsps();
    let b = h.rsps();
    let order: Vec<u8> = a.iter().chain(b.iter()).map(|e| e[4]).collect();
    assert_eq!(order, (0..20).collect::<Vec<u8>>());
    assert_eq!(h.model.errors().len(), 20);
}
