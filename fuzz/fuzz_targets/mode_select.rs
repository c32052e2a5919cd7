//! Fuzz target `mode_select`: MODE SELECT(6)/(10) parameter lists (any page, PF and SP bits,
//! block descriptors) and MODE SENSE(6)/(10) of any page and page control. After each command
//! the rig checks that MODE SENSE reports exactly what was selected (or nothing changed when the
//! command failed), that changeable and default values never change, that the other nexus is
//! told MODE PARAMETERS CHANGED, and that SWP and D_SENSE take effect. Input format:
//! `scst_fuzz::scsi` docs.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use scst_fuzz::scsi::ModeRig;

static RIG: OnceLock<Mutex<ModeRig>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let rig = RIG.get_or_init(|| Mutex::new(ModeRig::new()));
    rig.lock().unwrap_or_else(std::sync::PoisonError::into_inner).run(data);
});
