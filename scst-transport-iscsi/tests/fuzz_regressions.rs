//! Inputs the iSCSI fuzz targets (`fuzz/`: `pdu_stream`, `login_text`) found problems with,
//! replayed through the same rigs: `fuzz/src/iscsi.rs` is included below, so each byte array
//! runs exactly as the fuzzer ran it (input formats in that file's docs).
//!
//! Tests of problems not fixed yet are `#[ignore]`d with the reason; run them with
//! `cargo test -p scst-transport-iscsi --test fuzz_regressions -- --ignored`. To replay a
//! fuzzer artifact with every PDU traced:
//! `SCST_FUZZ_INPUT=path SCST_FUZZ_TARGET=pdu_stream SCST_FUZZ_TRACE=1 cargo test -p
//! scst-transport-iscsi --test fuzz_regressions replay_file -- --ignored --nocapture`.

#[path = "../../fuzz/src/iscsi.rs"]
#[allow(dead_code, unreachable_pub, clippy::all)]
mod iscsi_rig;

use std::sync::OnceLock;

use iscsi_rig::{DriverRig, Model, decode_stream, run_login_text};

/// One socket driver per test process (like the fuzz target), started on first use.
fn driver() -> &'static DriverRig {
    static D: OnceLock<DriverRig> = OnceLock::new();
    D.get_or_init(DriverRig::new)
}

/// Runs a `pdu_stream` input as the fuzz target does.
fn pdu_stream(data: &[u8]) -> Model {
    let (cfg, stream) = decode_stream(data);
    let model = Model::run(cfg, &stream);
    if cfg.driver() {
        let _ = driver().run(&model);
    }
    model
}

/// Replays the file `$SCST_FUZZ_INPUT` through `$SCST_FUZZ_TARGET` (`pdu_stream` or
/// `login_text`).
#[test]
#[ignore = "a tool: replays $SCST_FUZZ_INPUT"]
fn replay_file() {
    let Some(path) = std::env::var_os("SCST_FUZZ_INPUT") else { return };
    let data = std::fs::read(path).expect("read input");
    match std::env::var("SCST_FUZZ_TARGET").as_deref() {
        Ok("login_text") => {
            let _ = run_login_text(&data);
        }
        _ => {
            let _ = pdu_stream(&data);
        }
    }
}

/// Every committed seed of both targets still runs clean.
#[test]
fn seeds_run_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for target in ["pdu_stream", "login_text"] {
        let Ok(entries) = std::fs::read_dir(dir.join(target)) else { continue };
        for e in entries {
            let p = e.expect("entry").path();
            if !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("seed-")) {
                continue;
            }
            let data = std::fs::read(&p).expect("read seed");
            if target == "login_text" {
                let _ = run_login_text(&data);
            } else {
                let _ = pdu_stream(&data);
            }
        }
    }
}

/// Decodes the hex lines of a recorded input.
fn hex(lines: &[&str]) -> Vec<u8> {
    let s: String = lines.concat();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// A libiscsi login (from the captures) whose MaxRecvDataSegmentLength value the fuzzer broke
/// (`2\x072144`). The target answered `MaxRecvDataSegmentLength=Reject` in the same response as
/// its own `MaxRecvDataSegmentLength=262144`: one key twice in one text, the second a "Reject"
/// the initiator cannot tell from a declaration. The login now fails with 0x0200 (initiator
/// error). Found by `pdu_stream` (artifact `crash-b9f53f9c...`); fixed in `proto/login.rs`.
#[test]
fn invalid_mrdsl_declaration_fails_the_login() {
    let input = hex(&[
        "000043870000000001c280bde5d000000000580c229e000000006b0326ce000000010000000000000000000000000000",
        "0000496e69746961746f724e616d653d69716e2e323030372d31302e636f6d2e6769746875623a7361686c626572673a",
        "6c696269736373693a69736373692d7265616463617061636974793136005461726765744e616d653d69716e2e323032",
        "362d31312e72732e736373743a766563746f72730053657373696f6e547970653d4e6f726d616c004865616465724469",
        "676573743d4e6f6e652c43524333324300446174614469676573743d4e6f6e6500496e697469616c5232543d4e6f0049",
        "6d6d656469617465446174613d596573004d617842757273744c656e6774683d32363231343400466972737442757273",
        "744c656e6774683d3236323134340044656661756c7454696d6532576169743d320044656661756c7454696d65325265",
        "7461696e3d30004d61784f75747374616e64696e675232543d31004572726f725265636f766572794c6576656c3d3000",
        "49464d61726b65723d4e6f004f464d61726b65723d4e6f004d6178436f6e6e656374696f6e733d31004d617852656376",
        "446174615365676d656e744c656e6774683d3207323134340044617461504455496e4f726465723d5965730044617461",
        "53657175656e6365496e4f726465723d59657300000001810000000000000002000000000000580c229f000000006b03",
        "26ce000000010000000000000000000000000000000001810000000000000002000000000000580c22a0000000006b03",
        "26cf000000020000000000000000000000000000000001c10000000000000002000000000000580c22a1000000206b03",
        "26d0000000039e10000000000000000000000020000046800000000000000000000000000000580c22a2000000006b03",
        "26d10000000400000000000000000000000000000000",
    ]);
    let model = pdu_stream(&input);
    assert!(model.outcome.is_none(), "the login must fail");
    // The same through the socket driver.
    let mut driven = input.clone();
    driven[0] |= 0x80;
    let model = pdu_stream(&driven);
    assert!(model.outcome.is_none());
}

/// The same rule on a synthetic login: out-of-range and malformed declarations fail the login
/// (0x0200) instead of drawing a second MaxRecvDataSegmentLength key from the target.
#[test]
fn mrdsl_out_of_range_is_an_initiator_error() {
    use scst_transport_iscsi::proto::bhs::{BHS_LEN, Bhs};
    use scst_transport_iscsi::proto::text::push_pair;
    use scst_transport_iscsi::proto::{LoginMachine, LoginStatus, LoginStep, TargetLimits};
    for (v, ok) in [("511", false), ("16777216", false), ("0x200", true), ("1x", false), ("8192", true)] {
        let mut t = Vec::new();
        push_pair(&mut t, "InitiatorName", iscsi_rig::INITIATOR);
        push_pair(&mut t, "TargetName", iscsi_rig::TARGET);
        push_pair(&mut t, "MaxRecvDataSegmentLength", v);
        let mut h = [0u8; BHS_LEN];
        iscsi_rig::final_login_request(t.len(), [0x80, 0, 0, 0, 0, 1]).write(&mut h);
        let policy = iscsi_rig::FuzzPolicy { auth: Default::default(), alias: None, tpgt: 1 };
        let mut m = LoginMachine::new(TargetLimits::default(), 0);
        match m.on_request(&policy, &Bhs::from_array(&h), &t) {
            LoginStep::Ready => assert!(ok, "{v} accepted"),
            LoginStep::Fail(_, s) => {
                assert!(!ok, "{v} refused");
                assert_eq!(s, LoginStatus::INITIATOR_ERROR);
            }
            LoginStep::Send(p) => panic!("{v}: {:?}", String::from_utf8_lossy(&p.data)),
        }
    }
}

/// A discovery login (the rig's own, mode byte 05h) offering `HeaderDigest=None` to a target
/// whose policy requires CRC32C (limits byte E7h). The target answered `HeaderDigest=Reject`
/// and then offered `HeaderDigest=CRC32C` in the same response: one key twice in one text.
/// A rejected key is no longer offered again; the login fails (the initiator refused the only
/// acceptable value). Found by `pdu_stream` (artifact `crash-8933973d...`); fixed in
/// `proto/params.rs` (`Negotiator::answer`).
#[test]
fn rejected_digest_is_not_offered_in_the_same_response() {
    let input = hex(&[
        "05e7f74480000000000010000000000000000000000011ffffffff000000010000000000000000000000000000000000",
        "00000053656e64546172676574733d416c6c004480000000000000000000000000000000000011000000010000000100",
        "000000000000000000000000000000000000004400000000000028000000000000000000000012ffffffff0000000100",
        "0000000000000000000000000000000000000053656e64546172676574733d69716e2e323032362d31312e72732e7363",
        "73743a766563746f72730046800000000000000000000000000000000000130001000000000001000000000000000000",
        "0000000000000000000000",
    ]);
    let model = pdu_stream(&input);
    assert!(model.outcome.is_none(), "a target requiring header digests cannot log this initiator in");
}

/// Login requests of 64 KiB of short, unique, unknown keys (found by the audit that came with
/// the fuzz targets). Every key was checked against a list of all keys of the login, so each
/// request cost time quadratic in the keys sent so far: the fourth such request took 0.6 s of
/// CPU (release build), and the login timeout let one connection repeat that for 15 s. Text
/// Requests in the full feature phase had the same per-request cost. Both now use sets; eight
/// requests take milliseconds.
#[test]
fn many_unique_login_keys_cost_linear_time() {
    use scst_transport_iscsi::proto::bhs::{BHS_LEN, Bhs, Stage};
    use scst_transport_iscsi::proto::build::LoginRequestHeader;
    use scst_transport_iscsi::proto::text::push_pair;
    use scst_transport_iscsi::proto::{LoginMachine, LoginStep, TargetLimits};
    let policy = iscsi_rig::FuzzPolicy { auth: Default::default(), alias: None, tpgt: 1 };
    let mut m = LoginMachine::new(TargetLimits::default(), 0);
    let start = std::time::Instant::now();
    for round in 0..8 {
        let mut t = Vec::new();
        if round == 0 {
            push_pair(&mut t, "InitiatorName", iscsi_rig::INITIATOR);
            push_pair(&mut t, "TargetName", iscsi_rig::TARGET);
        }
        let mut i = 0;
        while t.len() < 65000 {
            push_pair(&mut t, &format!("K{round}x{i}"), "");
            i += 1;
        }
        let mut h = [0u8; BHS_LEN];
        let mut req = LoginRequestHeader {
            transit: false,
            nsg: Stage(0),
            ..iscsi_rig::final_login_request(t.len(), [0x80, 0, 0, 0, 0, 1])
        };
        req.write(&mut h);
        let mut step = m.on_request(&policy, &Bhs::from_array(&h), &t);
        // Collect the answer (NotUnderstood for every key), 8 KiB at a time.
        req.data_segment_len = 0;
        req.write(&mut h);
        while let LoginStep::Send(p) = &step {
            if !p.header().continue_bit() {
                break;
            }
            step = m.on_request(&policy, &Bhs::from_array(&h), &[]);
        }
        assert!(matches!(step, LoginStep::Send(_)), "round {round}: {step:?}");
    }
    let took = start.elapsed();
    assert!(took < std::time::Duration::from_secs(5), "eight 64 KiB login requests took {took:?}");
}

/// The rig's login declares MaxRecvDataSegmentLength=512 (limits byte 00h), then a NOP-Out
/// carries 1024 bytes of ping data (allowed: the target's own MaxRecvDataSegmentLength is 256
/// KiB). The NOP-In used to echo all 1024 bytes: a data segment twice what the initiator
/// declared it can receive (RFC 7143 §13.12). Now the NOP-Out is rejected (protocol error), as
/// Linux LIO answers ping data it cannot echo. Found by `pdu_stream` (artifact
/// `crash-64966e0d...`: 10240 bytes of ping data, a 512-byte declaration).
#[test]
fn nop_in_echo_respects_the_initiators_segment_length() {
    use scst_transport_iscsi::proto::bhs::{BHS_LEN, Bhs, Digests, RESERVED_TAG};
    use scst_transport_iscsi::proto::build::{InitiatorSn, NopOutHeader};
    let mut input = vec![0x01 | 0x80, 0x00]; // the rig's login (MRDSL 512), through the driver
    let mut h = [0u8; BHS_LEN];
    let ping = vec![0x5au8; 1024];
    NopOutHeader {
        immediate: true,
        data_segment_len: ping.len() as u32,
        lun: 0,
        itt: 1,
        ttt: RESERVED_TAG,
        sn: InitiatorSn { cmd_sn: 1, exp_stat_sn: 0 },
    }
    .write(&mut h);
    input.extend_from_slice(&h);
    input.extend_from_slice(&ping);
    let (cfg, stream) = decode_stream(&input);
    let model = Model::run(cfg, &stream);
    assert!(model.outcome.is_some());
    let got = driver().run(&model);
    let mut at = 0;
    let mut rejected = false;
    while at + BHS_LEN <= got.len() {
        let b = Bhs::new_checked(&got[at..]).expect("bhs");
        rejected |= b.opcode() == scst_transport_iscsi::proto::bhs::Opcode::REJECT;
        assert!(
            b.data_segment_len() <= 512,
            "{:?} with {} bytes of data for an initiator that receives 512",
            b.opcode(),
            b.data_segment_len()
        );
        at += b.pdu_len(Digests::default());
    }
    assert!(rejected, "the NOP-Out is rejected");
}
