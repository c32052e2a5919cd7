//! Fuzz target `unmap_xcopy`: UNMAP parameter lists, EXTENDED COPY (LID1) parameter lists,
//! RECEIVE COPY RESULTS, GET LBA STATUS and writes on a pair of thin RAM LUNs (and a third with
//! 4 KiB blocks). The rig keeps a model of the contents and checks every command against it:
//! failed UNMAPs change nothing, deallocated blocks read zeros, copies move exactly what their
//! segments say, copy results match the copies. Input format: `scst_fuzz::scsi` docs.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use scst_fuzz::scsi::XcopyRig;

static RIG: OnceLock<Mutex<XcopyRig>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let rig = RIG.get_or_init(|| Mutex::new(XcopyRig::new()));
    rig.lock().unwrap_or_else(std::sync::PoisonError::into_inner).run(data);
});
