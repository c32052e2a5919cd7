//! Fuzz target `qla_iocb`: what a QLogic HBA (or a file claiming to be its firmware) hands the
//! qla driver: every 64-byte IOCB decoder on each entry of the input (ATIO type 7 and the
//! FCP_CMND IU it carries, IMMEDIATE NOTIFY and the NOTIFY ACK built from it, CTIO completions,
//! ABTS RECEIVED and the BA_ACC built from it), then the whole input as a firmware image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scst_transport_fc::fcp::FcpCmnd;
use scst_transport_fc::qla::fw::Firmware;
use scst_transport_fc::qla::iocb::{
    ATIO7_IU_OFFSET, AbtsRecv, Atio7, CtioDone, ENTRY, ImmNotify, abts_resp_done, notify_ack_done,
};

fuzz_target!(|data: &[u8]| {
    for e in data.chunks_exact(ENTRY) {
        let e: &[u8; ENTRY] = e.try_into().expect("a whole entry");
        let a = Atio7::parse(e);
        let _ = (a.entry_count, a.exchange_addr, a.s_id, a.ox_id);
        if let Ok(c) = FcpCmnd::parse(&e[ATIO7_IU_OFFSET..]) {
            let _ = (c.lun(), c.cdb(), c.tm_flags());
        }
        let n = ImmNotify::parse(e);
        let ack = n.ack(7);
        assert_eq!(ack.len(), ENTRY);
        let _ = CtioDone::parse(e);
        let abts = AbtsRecv::parse(e);
        let _ = (abts.s_id(), abts.ox_id(), abts.rx_id(), abts.ba_acc(9));
        let _ = (abts_resp_done(e), notify_ack_done(e));
    }
    let _ = Firmware::parse(data);
});
