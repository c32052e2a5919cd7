//! Fuzz target `cdb`: arbitrary CDBs, task attributes, transfer lengths and Data-Out against a
//! RAM, a NULLIO and a read-only LUN through `LocalInitiator::execute`. The core must answer
//! every one (any status is fine) without panicking or hanging. See `scst_fuzz` for the input
//! format.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use scst_fuzz::Rig;

/// Built once per fuzzing process; each input resets the devices' state first.
static RIG: OnceLock<Mutex<Rig>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let rig = RIG.get_or_init(|| Mutex::new(Rig::new()));
    let mut rig = rig.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = rig.run(data);
});
