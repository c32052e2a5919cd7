//! Fuzz target `prout`: sequences of PERSISTENT RESERVE OUT (every service action, SCOPE/TYPE,
//! parameter list: SPEC_I_PT TransportIDs, ALL_TG_PT, REGISTER AND MOVE), PERSISTENT RESERVE
//! IN and SPC-2 RESERVE/RELEASE from four I_T nexuses. After every command the rig reads the
//! state back with PERSISTENT RESERVE IN and checks it (consistent views, holders registered,
//! failed commands change nothing, PRGENERATION) and that reads and writes of every nexus
//! conflict exactly as the reservation says. Input format: `scst_fuzz::scsi` docs.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use scst_fuzz::scsi::PrRig;

static RIG: OnceLock<Mutex<PrRig>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let rig = RIG.get_or_init(|| Mutex::new(PrRig::new()));
    rig.lock().unwrap_or_else(std::sync::PoisonError::into_inner).run(data);
});
