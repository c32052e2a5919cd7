//! Inputs the `cdb` fuzz target (`fuzz/`) found problems with, replayed through the same rig:
//! `fuzz/src/lib.rs` is included below, so each byte array runs exactly as the fuzzer ran it
//! (input format in that file's docs).
//!
//! Tests of problems not fixed yet are `#[ignore]`d with the reason; run them with
//! `cargo test -p scst-local --test fuzz_regressions -- --ignored`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code, unreachable_pub)]
mod cdb_rig;

use cdb_rig::{Input, Rig};
use scst_local::Outcome;

/// Runs `input` on a fresh rig whose NULLIO LUN has `nullio_bytes`, on its own thread, and fails
/// unless it completes within `limit` and meets the rig's outcome contracts (`Rig::run` checks
/// them). A stuck command fails the test instead of hanging it (its thread is abandoned).
fn run_within(limit: Duration, nullio_bytes: u64, input: Vec<u8>) -> Outcome {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut rig = Rig::with_nullio_bytes(nullio_bytes);
        let start = Instant::now();
        let o = rig.run(&input);
        let _ = tx.send((o, start.elapsed()));
    });
    match rx.recv_timeout(limit) {
        Ok((o, took)) => {
            println!("completed in {took:?}: {:?} {:?}", o.status, o.sense_code());
            o
        }
        Err(_) => panic!("the command did not complete within {limit:?}"),
    }
}

/// VERIFY(12) with BYTCHK=11b on the NULLIO LUN (1 GiB when found): LBA 0x1600, VERIFICATION
/// LENGTH 0x160000 blocks (704 MiB), one Data-Out block expected. The handler used to accept
/// it (only the one Data-Out block counted against the maximum transfer length) and compare
/// every block of the range with the Data-Out block, inline on the submitting thread: libFuzzer
/// hit its 10 s timeout. The verification length now counts against MAXIMUM TRANSFER LENGTH.
/// Found by the fuzzer (artifact `timeout-0f23351c...`).
#[test]
fn verify12_bytchk_11b_large_range_completes_quickly() {
    let input = vec![
        0x25, 0x08, 0x00, 0x02, 0x06, // NULLIO LUN, SIMPLE, Data-In buffer of 8 KiB, 12-byte CDB
        0xaf, 0x06, 0x00, 0x00, 0x16, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x00, // VERIFY(12)
        0x00, 0x16, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x00, 0x04, 0x18, 0x00, 0x00, 0xeb, 0x00, 0x00, 0x00, 0x04,
        0x18, 0x00, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0xeb, 0xef, 0x00, 0x02,
    ];
    let o = run_within(Duration::from_secs(2), 1 << 30, input);
    // The verification length exceeds the Block Limits' MAXIMUM TRANSFER LENGTH.
    assert_eq!(o.sense_code(), Some(scst::SenseCode::INVALID_FIELD_IN_CDB));
}

/// The same on the scale of the benchmarks' NULLIO LUN (1 TiB): VERIFY(16) with BYTCHK=11b of
/// 2^31 - 1 blocks from LBA 0 and a single 512-byte Data-Out block. One command would keep the
/// submitting (fabric) thread busy comparing a terabyte of zeros.
#[test]
fn verify16_bytchk_11b_over_a_terabyte_completes_quickly() {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x8f;
    cdb[1] = 0x06; // BYTCHK=11b
    cdb[10..14].copy_from_slice(&((1u32 << 31) - 1).to_be_bytes());
    let input = Input::encode(1, 0, 0, true, 512, &cdb, &[0]);
    let o = run_within(Duration::from_secs(2), 1 << 40, input);
    assert_eq!(o.sense_code(), Some(scst::SenseCode::INVALID_FIELD_IN_CDB));
}

/// SANITIZE (BLOCK ERASE, IMMED) on the NULLIO LUN, with an ORDERED task attribute and a
/// reservation setup that fails (no registration). LeakSanitizer reported the sanitize thread's
/// allocations at exit: SANITIZE runs on a detached thread spawned per command, and one was
/// still running when the fuzzer exited (with the default 16 MiB/s rate an OVERWRITE pass over a
/// large LUN lasts minutes to days). The rig now sets the rate to unlimited and waits for a
/// running sanitize before each input; this replays the input and checks the sanitize ends.
/// Found by the fuzzer (artifact `leak-8274ba7a...`).
#[test]
fn sanitize_immed_on_nullio_finishes() {
    let input = vec![
        0x21, 0xc5, 0xf8, 0x00, 0x0f, 0x48, 0xa2, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x04, 0x18, 0x00, 0x00, 0x15, 0x10, 0x00, 0x00, 0x18, 0x00, 0x03, 0x00, 0x07, 0x00, 0x08, 0x12, 0x04,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    let o = run_within(Duration::from_secs(10), cdb_rig::NULLIO_BYTES, input);
    assert!(o.is_good(), "SANITIZE with IMMED: {:?} {:?}", o.status, o.sense_code());
}
