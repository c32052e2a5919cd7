//! Fuzz target `pdu_stream`: the byte stream of an iSCSI connection (BHS, AHS, data segment
//! lengths, padding, header and data digests), framed and fed to the sans-IO protocol core
//! (PDU views, login machine, text phase) and, when the input asks, through the socket driver
//! (`IscsiServer` on a loopback port, with a target of three LUNs). Every PDU the target emits
//! must parse back, carry correct digests and sequence numbers, and answer a task the
//! initiator started. Input format: `fuzz/src/iscsi.rs`.
#![no_main]

#[path = "../src/iscsi.rs"]
#[allow(dead_code, unreachable_pub)]
mod iscsi;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// The socket driver, started on first use.
static DRIVER: OnceLock<iscsi::DriverRig> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (cfg, stream) = iscsi::decode_stream(data);
    let model = iscsi::Model::run(cfg, &stream);
    if cfg.driver() {
        let _ = DRIVER.get_or_init(iscsi::DriverRig::new).run(&model);
    }
});
