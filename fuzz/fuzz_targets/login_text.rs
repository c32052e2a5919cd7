//! Fuzz target `login_text`: sequences of Login Requests (any stage, T/C bits, key=value text)
//! and, once logged in, Text Requests, fed to the sans-IO `LoginMachine` and `TextPhase` with
//! CHAP (and mutual CHAP) configured. The rig substitutes correct CHAP responses on request so
//! the fuzzer gets past authentication, and checks every response (headers, StatSN, text, no
//! key twice, mutual CHAP proofs) and the login's outcome (negotiated values within the limits,
//! no login without authentication). Input format: `fuzz/src/iscsi.rs`.
#![no_main]

#[path = "../src/iscsi.rs"]
#[allow(dead_code, unreachable_pub)]
mod iscsi;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = iscsi::run_login_text(data);
});
