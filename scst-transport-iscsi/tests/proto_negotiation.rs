//! Login and text negotiation edge cases, driven by synthetic requests built
//! with the crate's initiator-side builders.

use std::collections::HashMap;

use scst_transport_iscsi::proto::bhs::{Bhs, Opcode, RESERVED_TAG, Stage};
use scst_transport_iscsi::proto::build::{InitiatorSn, LoginRequestHeader, NopOutHeader, TargetSn, TextRequestHeader};
use scst_transport_iscsi::proto::chap::{ChapAlgorithm, ChapCredentials, ChapSecret};
use scst_transport_iscsi::proto::login::{
    Auth, LeadingLogin, LoginApiError, LoginPolicy, Resolution, SendTargetsEntry, SendTargetsQuery, TargetConfig,
};
use scst_transport_iscsi::proto::params::DigestPolicy;
use scst_transport_iscsi::proto::text::{decode_binary, encode_hex, parse_pairs, push_pair};
use scst_transport_iscsi::proto::text_phase::{TextPhase, TextPhaseError};
use scst_transport_iscsi::proto::{
    Digests, LoginMachine, LoginStatus, LoginStep, OwnedPdu, SessionParams, SessionType, TargetLimits,
};

const TARGET: &str = "iqn.2026-11.rs.scst:t0";
const INITIATOR: &str = "iqn.2026-11.rs.scst:init";

struct Policy {
    auth: Auth,
    targets: usize,
}

impl LoginPolicy for Policy {
    fn resolve(&self, l: &LeadingLogin<'_>) -> Resolution {
        if l.tsih != 0 {
            return Resolution::Deny(LoginStatus::TOO_MANY_CONNECTIONS);
        }
        match (l.session_type, l.target_name) {
            (SessionType::Normal, Some("iqn.2026-11.rs.scst:moved")) => {
                Resolution::Redirect { address: "10.0.0.2:3260,2".into(), permanent: false }
            }
            (SessionType::Discovery, _) | (SessionType::Normal, Some(TARGET)) => Resolution::Accept(TargetConfig {
                alias: Some("disk zero".into()),
                portal_group_tag: 7,
                auth: self.auth.clone(),
            }),
            _ => Resolution::Deny(LoginStatus::NOT_FOUND),
        }
    }

    fn send_targets(&self, _i: &str, q: SendTargetsQuery<'_>) -> Vec<SendTargetsEntry> {
        let all = (0..self.targets).map(|i| SendTargetsEntry {
            target_name: if i == 0 {
                TARGET.into()
            } else {
                format!("iqn.2026-11.rs.scst:target-with-a-long-name-{i:04}")
            },
            addresses: vec![format!("192.0.2.1:3260,{i}"), format!("[2001:db8::1]:3260,{i}")],
        });
        match q {
            SendTargetsQuery::All => all.collect(),
            SendTargetsQuery::Target(n) => all.filter(|e| e.target_name == n).collect(),
        }
    }
}

fn policy() -> Policy {
    Policy { auth: Auth::None, targets: 1 }
}

fn chap_policy(mutual: bool) -> Policy {
    Policy {
        auth: Auth::Chap {
            initiator: ChapCredentials::new("alice", "alice-secret-123"),
            mutual: mutual.then(|| ChapCredentials::new("target", "target-secret-456")),
        },
        targets: 1,
    }
}

fn text(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, val) in pairs {
        push_pair(&mut v, k, val);
    }
    v
}

#[derive(Clone, Copy)]
struct Req {
    transit: bool,
    cont: bool,
    csg: Stage,
    nsg: Stage,
    version_min: u8,
    tsih: u16,
}

const OP_FINAL: Req =
    Req { transit: true, cont: false, csg: Stage::OPERATIONAL, nsg: Stage::FULL_FEATURE, version_min: 0, tsih: 0 };
const SEC_STAY: Req =
    Req { transit: false, cont: false, csg: Stage::SECURITY, nsg: Stage::SECURITY, version_min: 0, tsih: 0 };
const SEC_NEXT: Req = Req { transit: true, nsg: Stage::OPERATIONAL, ..SEC_STAY };

fn feed(m: &mut LoginMachine, p: &dyn LoginPolicy, r: Req, data: &[u8]) -> LoginStep {
    let mut b = [0u8; 48];
    LoginRequestHeader {
        transit: r.transit,
        continue_bit: r.cont,
        csg: r.csg,
        nsg: r.nsg,
        version_max: 0,
        version_min: r.version_min,
        data_segment_len: data.len() as u32,
        isid: [0x80, 1, 2, 3, 4, 5],
        tsih: r.tsih,
        itt: 0x1000,
        cid: 1,
        sn: InitiatorSn { cmd_sn: 100, exp_stat_sn: 0 },
    }
    .write(&mut b);
    m.on_request(p, &Bhs::new_checked(&b[..]).unwrap(), data)
}

fn machine() -> LoginMachine {
    LoginMachine::new(TargetLimits::default(), 0x55)
}

fn leading() -> Vec<(&'static str, &'static str)> {
    vec![("InitiatorName", INITIATOR), ("TargetName", TARGET), ("SessionType", "Normal")]
}

fn keys(p: &OwnedPdu) -> HashMap<String, String> {
    parse_pairs(&p.data).unwrap().into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

fn sent(s: LoginStep) -> OwnedPdu {
    match s {
        LoginStep::Send(p) => p,
        other => panic!("expected Send, got {other:?}"),
    }
}

fn failed(s: LoginStep) -> LoginStatus {
    match s {
        LoginStep::Fail(p, st) => {
            assert_eq!(p.bhs[0], 0x23);
            assert_eq!(u16::from_be_bytes([p.bhs[36], p.bhs[37]]), st.0);
            st
        }
        other => panic!("expected Fail, got {other:?}"),
    }
}

#[test]
fn operational_login_answers_and_final_response() {
    let mut m = machine();
    let mut pairs = leading();
    pairs.extend([
        ("InitiatorAlias", "box"),
        ("HeaderDigest", "CRC32C,None"),
        ("DataDigest", "None"),
        ("MaxBurstLength", "131072"),
        ("FirstBurstLength", "262144"), // > MaxBurstLength: capped
        ("MaxRecvDataSegmentLength", "65536"),
        ("X-com.example.Unknown", "1"),
        ("MaxOutstandingR2T", "0"), // out of range
        ("TaskReporting", "ResponseFence"),
    ]);
    assert_eq!(feed(&mut m, &policy(), OP_FINAL, &text(&pairs)), LoginStep::Ready);
    assert_eq!(m.complete(0), Err(LoginApiError::ZeroTsih));
    let (r, out) = m.complete(0x1234).unwrap();
    let b = Bhs::new_checked(&r.bhs[..]).unwrap();
    assert_eq!(b.opcode(), Opcode::LOGIN_RESPONSE);
    assert!(b.transit() && !b.continue_bit());
    assert_eq!((b.csg(), b.nsg()), (Stage::OPERATIONAL, Stage::FULL_FEATURE));
    assert_eq!((b.tsih(), b.itt(), b.isid()), (0x1234, 0x1000, [0x80, 1, 2, 3, 4, 5]));
    assert_eq!((b.stat_sn(), b.exp_cmd_sn(), b.max_cmd_sn()), (0x55, 100, 163));
    assert_eq!((b.status_class(), b.status_detail()), (0, 0));
    assert_eq!(b.data_segment_len() as usize, r.data.len());
    let k = keys(&r);
    assert_eq!(k["TargetAlias"], "disk zero");
    assert_eq!(k["TargetPortalGroupTag"], "7");
    assert_eq!(k["HeaderDigest"], "CRC32C");
    assert_eq!(k["DataDigest"], "None");
    assert_eq!(k["MaxBurstLength"], "131072");
    assert_eq!(k["FirstBurstLength"], "131072");
    assert_eq!(k["X-com.example.Unknown"], "NotUnderstood");
    assert_eq!(k["MaxOutstandingR2T"], "Reject");
    assert_eq!(k["TaskReporting"], "Reject");
    assert_eq!(k["MaxRecvDataSegmentLength"], "262144");
    assert!(!k.contains_key("InitiatorName") && !k.contains_key("InitiatorAlias"));
    assert_eq!(out.tsih, 0x1234);
    assert_eq!(out.stat_sn, 0x56);
    assert_eq!(out.cmd_sn, 100);
    let p = &out.params;
    assert_eq!(p.initiator_alias.as_deref(), Some("box"));
    assert_eq!(p.digests(), Digests { header: true, data: false });
    assert_eq!(p.max_outstanding_r2t, 1); // default kept after Reject
    assert_eq!(p.initiator_max_recv_data_segment_length, 65536);
    assert_eq!(p.target_max_recv_data_segment_length, 262_144);
    assert_eq!(p.target_alias.as_deref(), Some("disk zero"));
    assert_eq!(p.target_portal_group_tag, 7);
    // Done: any further request is an error.
    assert_eq!(m.complete(1), Err(LoginApiError::NotReady));
}

#[test]
fn leading_key_errors() {
    let p = policy();
    let cases: Vec<(Vec<(&str, &str)>, LoginStatus)> = vec![
        (vec![("TargetName", TARGET)], LoginStatus::MISSING_PARAMETER),
        (vec![("InitiatorName", INITIATOR)], LoginStatus::MISSING_PARAMETER),
        (vec![("InitiatorName", INITIATOR), ("TargetName", "iqn.x:none")], LoginStatus::NOT_FOUND),
        (vec![("InitiatorName", INITIATOR), ("SessionType", "Other")], LoginStatus::SESSION_TYPE_NOT_SUPPORTED),
        (
            vec![("InitiatorName", INITIATOR), ("TargetName", TARGET), ("TargetAlias", "x")],
            LoginStatus::INITIATOR_ERROR,
        ),
        (
            vec![("InitiatorName", INITIATOR), ("TargetName", TARGET), ("TargetPortalGroupTag", "1")],
            LoginStatus::INITIATOR_ERROR,
        ),
        (
            vec![
                ("InitiatorName", INITIATOR),
                ("TargetName", TARGET),
                ("MaxBurstLength", "65536"),
                ("MaxBurstLength", "65536"),
            ],
            LoginStatus::INITIATOR_ERROR,
        ),
        (
            vec![("InitiatorName", INITIATOR), ("TargetName", TARGET), ("SendTargets", "All")],
            LoginStatus::INITIATOR_ERROR,
        ),
    ];
    let long = format!("iqn.2026-11.x:{}", "n".repeat(210));
    let mut cases = cases;
    cases.push((vec![("InitiatorName", long.as_str()), ("TargetName", TARGET)], LoginStatus::INITIATOR_ERROR));
    for (pairs, want) in cases {
        let mut m = machine();
        assert_eq!(failed(feed(&mut m, &p, OP_FINAL, &text(&pairs))), want, "{pairs:?}");
    }
    // Malformed text.
    let mut m = machine();
    assert_eq!(failed(feed(&mut m, &p, OP_FINAL, b"InitiatorName=x")), LoginStatus::INITIATOR_ERROR);
    // Version.
    let mut m = machine();
    let r = Req { version_min: 1, ..OP_FINAL };
    assert_eq!(failed(feed(&mut m, &p, r, &text(&leading()))), LoginStatus::UNSUPPORTED_VERSION);
    // TSIH != 0 (adding a connection): the policy decides.
    let mut m = machine();
    let r = Req { tsih: 9, ..OP_FINAL };
    assert_eq!(failed(feed(&mut m, &p, r, &text(&leading()))), LoginStatus::TOO_MANY_CONNECTIONS);
}

#[test]
fn redirect_carries_target_address() {
    let mut m = machine();
    let pairs = [("InitiatorName", INITIATOR), ("TargetName", "iqn.2026-11.rs.scst:moved")];
    let LoginStep::Fail(r, s) = feed(&mut m, &policy(), OP_FINAL, &text(&pairs)) else { panic!() };
    assert_eq!(s, LoginStatus::TARGET_MOVED_TEMPORARILY);
    assert_eq!(&r.bhs[36..38], &[1, 1]);
    assert_eq!(&r.data[..], b"TargetAddress=10.0.0.2:3260,2\0");
}

#[test]
fn stage_and_transition_errors() {
    let p = policy();
    // Operational key in the security stage.
    let mut m = machine();
    let mut pairs = leading();
    pairs.push(("MaxBurstLength", "65536"));
    assert_eq!(failed(feed(&mut m, &p, SEC_NEXT, &text(&pairs))), LoginStatus::INITIATOR_ERROR);
    // T and C together.
    let mut m = machine();
    let r = Req { cont: true, ..OP_FINAL };
    assert_eq!(failed(feed(&mut m, &p, r, &text(&leading()))), LoginStatus::INITIATOR_ERROR);
    // NSG 2 is reserved; NSG must move forward.
    for nsg in [Stage(2), Stage::OPERATIONAL, Stage::SECURITY] {
        let mut m = machine();
        let r = Req { nsg, ..OP_FINAL };
        assert_eq!(failed(feed(&mut m, &p, r, &text(&leading()))), LoginStatus::INITIATOR_ERROR);
    }
    // Security stage after the operational stage started; security key late.
    let mut m = machine();
    let r = Req { transit: false, ..OP_FINAL };
    let resp = sent(feed(&mut m, &p, r, &text(&leading())));
    assert_eq!(resp.bhs[1], 0x04); // T=0 CSG=1
    assert_eq!(failed(feed(&mut m, &p, SEC_NEXT, &[])), LoginStatus::INITIATOR_ERROR);
    let mut m = machine();
    sent(feed(&mut m, &p, r, &text(&leading())));
    assert_eq!(failed(feed(&mut m, &p, OP_FINAL, &text(&[("AuthMethod", "None")]))), LoginStatus::INITIATOR_ERROR);
    // Leading key after the first request; key repeated across requests.
    let mut m = machine();
    sent(feed(&mut m, &p, r, &text(&leading())));
    assert_eq!(
        failed(feed(&mut m, &p, OP_FINAL, &text(&[("InitiatorName", INITIATOR)]))),
        LoginStatus::INITIATOR_ERROR
    );
    let mut m = machine();
    let mut pairs = leading();
    pairs.push(("ImmediateData", "Yes"));
    sent(feed(&mut m, &p, r, &text(&pairs)));
    assert_eq!(failed(feed(&mut m, &p, OP_FINAL, &text(&[("ImmediateData", "No")]))), LoginStatus::INITIATOR_ERROR);
    // A non-login PDU during login.
    let mut m = machine();
    let mut b = [0u8; 48];
    NopOutHeader::default().write(&mut b);
    assert_eq!(failed(m.on_request(&p, &Bhs::new_checked(&b[..]).unwrap(), &[])), LoginStatus::INVALID_DURING_LOGIN);
}

#[test]
fn security_then_operational_without_auth() {
    let p = policy();
    let mut m = machine();
    let mut pairs = leading();
    pairs.push(("AuthMethod", "CHAP,None"));
    // The initiator asks to skip to FFP; the target goes to the operational stage.
    let r = Req { nsg: Stage::FULL_FEATURE, ..SEC_NEXT };
    let resp = sent(feed(&mut m, &p, r, &text(&pairs)));
    assert_eq!(resp.bhs[1], 0x81); // T=1 CSG=0 NSG=1
    let k = keys(&resp);
    assert_eq!(k["AuthMethod"], "None");
    assert_eq!(k["TargetPortalGroupTag"], "7");
    assert_eq!(m.stage(), Stage::OPERATIONAL);
    assert_eq!(feed(&mut m, &p, OP_FINAL, &[]), LoginStep::Ready);
    let (r, out) = m.complete(3).unwrap();
    // First op-stage response declares our MaxRecvDataSegmentLength.
    assert_eq!(&r.data[..], b"MaxRecvDataSegmentLength=262144\0");
    assert_eq!(out.stat_sn, 0x57);
    assert_eq!(out.chap_user, None);
}

#[test]
fn auth_method_mismatches_fail_0201() {
    // CHAP required, initiator offers only None.
    let mut m = machine();
    let mut pairs = leading();
    pairs.push(("AuthMethod", "None"));
    assert_eq!(failed(feed(&mut m, &chap_policy(false), SEC_NEXT, &text(&pairs))), LoginStatus::AUTHENTICATION_FAILURE);
    // CHAP required, initiator skips the security stage.
    let mut m = machine();
    assert_eq!(
        failed(feed(&mut m, &chap_policy(false), OP_FINAL, &text(&leading()))),
        LoginStatus::AUTHENTICATION_FAILURE
    );
    // No auth configured, initiator insists on CHAP.
    let mut m = machine();
    let mut pairs = leading();
    pairs.push(("AuthMethod", "CHAP"));
    assert_eq!(failed(feed(&mut m, &policy(), SEC_NEXT, &text(&pairs))), LoginStatus::AUTHENTICATION_FAILURE);
    // CHAP required, initiator tries to transit without AuthMethod.
    let mut m = machine();
    assert_eq!(
        failed(feed(&mut m, &chap_policy(false), SEC_NEXT, &text(&leading()))),
        LoginStatus::AUTHENTICATION_FAILURE
    );
}

/// Run AuthMethod + CHAP_A; return the machine and (alg, id, challenge).
fn chap_start(p: &Policy, algs: &str) -> (LoginMachine, ChapAlgorithm, u8, Vec<u8>) {
    let mut m = machine();
    let mut pairs = leading();
    pairs.push(("AuthMethod", "CHAP,None"));
    let r = sent(feed(&mut m, p, SEC_NEXT, &text(&pairs)));
    assert_eq!(r.bhs[1], 0x00); // T=0: CHAP not done yet
    assert_eq!(keys(&r)["AuthMethod"], "CHAP");
    let r = sent(feed(&mut m, p, SEC_STAY, &text(&[("CHAP_A", algs)])));
    let k = keys(&r);
    let alg = ChapAlgorithm(k["CHAP_A"].parse().unwrap());
    let c = decode_binary(&k["CHAP_C"], 1024).unwrap();
    assert!(k["CHAP_C"].starts_with("0x"));
    assert_eq!(c.len(), alg.challenge_len());
    (m, alg, k["CHAP_I"].parse().unwrap(), c)
}

#[test]
fn chap_sha256_with_base64_response_and_mutual() {
    let p = chap_policy(true);
    let (mut m, alg, id, c) = chap_start(&p, "8,7,5");
    assert_eq!(alg, ChapAlgorithm::SHA256);
    let resp = alg.response(id, &ChapSecret::new("alice-secret-123"), &c).unwrap();
    let b64 = base64(&resp);
    let my_c = [0x5au8; 32];
    let r = sent(feed(
        &mut m,
        &p,
        SEC_NEXT,
        &text(&[
            ("CHAP_N", "alice"),
            ("CHAP_R", &b64),
            ("CHAP_I", "77"),
            ("CHAP_C", &encode_hex(&my_c).to_uppercase().replace("0X", "0x")),
        ]),
    ));
    assert_eq!(r.bhs[1], 0x81);
    let k = keys(&r);
    assert_eq!(k["CHAP_N"], "target");
    let want = alg.response(77, &ChapSecret::new("target-secret-456"), &my_c).unwrap();
    assert_eq!(k["CHAP_R"], encode_hex(&want));
    assert_eq!(feed(&mut m, &p, OP_FINAL, &[]), LoginStep::Ready);
    assert_eq!(m.pending_outcome().unwrap().chap_user.as_deref(), Some("alice"));
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::from("0b");
    for ch in b.chunks(3) {
        let n = ch.iter().enumerate().fold(0u32, |a, (i, &x)| a | u32::from(x) << (16 - 8 * i));
        for i in 0..4 {
            if i <= ch.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn chap_failures() {
    let secret = ChapSecret::new("alice-secret-123");
    // Wrong secret.
    let p = chap_policy(true);
    let (mut m, alg, id, c) = chap_start(&p, "5");
    let bad = alg.response(id, &ChapSecret::new("wrong"), &c).unwrap();
    let pairs = [("CHAP_N", "alice"), ("CHAP_R", &*encode_hex(&bad))];
    assert_eq!(failed(feed(&mut m, &p, SEC_NEXT, &text(&pairs))), LoginStatus::AUTHENTICATION_FAILURE);
    // Wrong user name.
    let (mut m, alg, id, c) = chap_start(&p, "5");
    let good = encode_hex(&alg.response(id, &secret, &c).unwrap());
    let pairs = [("CHAP_N", "mallory"), ("CHAP_R", &*good)];
    assert_eq!(failed(feed(&mut m, &p, SEC_NEXT, &text(&pairs))), LoginStatus::AUTHENTICATION_FAILURE);
    // Reflection: the initiator's challenge equals ours.
    let (mut m, alg, id, c) = chap_start(&p, "5");
    let good = encode_hex(&alg.response(id, &secret, &c).unwrap());
    let ours = encode_hex(&c);
    let pairs = [("CHAP_N", "alice"), ("CHAP_R", &*good), ("CHAP_I", "1"), ("CHAP_C", &*ours)];
    assert_eq!(failed(feed(&mut m, &p, SEC_NEXT, &text(&pairs))), LoginStatus::AUTHENTICATION_FAILURE);
    // Mutual requested but no target credentials configured.
    let p2 = chap_policy(false);
    let (mut m, alg, id, c) = chap_start(&p2, "5");
    let good = encode_hex(&alg.response(id, &secret, &c).unwrap());
    let pairs = [("CHAP_N", "alice"), ("CHAP_R", &*good), ("CHAP_I", "1"), ("CHAP_C", "0x0102")];
    assert_eq!(failed(feed(&mut m, &p2, SEC_NEXT, &text(&pairs))), LoginStatus::AUTHENTICATION_FAILURE);
    // Unsupported algorithms only.
    let mut m = machine();
    let mut pairs = leading();
    pairs.push(("AuthMethod", "CHAP"));
    sent(feed(&mut m, &p, SEC_STAY, &text(&pairs)));
    assert_eq!(failed(feed(&mut m, &p, SEC_STAY, &text(&[("CHAP_A", "8,99")]))), LoginStatus::AUTHENTICATION_FAILURE);
    // Response before any challenge.
    let mut m = machine();
    let mut pairs = leading();
    pairs.push(("AuthMethod", "CHAP"));
    sent(feed(&mut m, &p, SEC_STAY, &text(&pairs)));
    let pairs = [("CHAP_N", "alice"), ("CHAP_R", "0x00")];
    assert_eq!(failed(feed(&mut m, &p, SEC_NEXT, &text(&pairs))), LoginStatus::AUTHENTICATION_FAILURE);
    // Correct response without mutual, but T=0: no transit yet, then transit.
    let (mut m, alg, id, c) = chap_start(&p, "6,5");
    assert_eq!(alg, ChapAlgorithm::SHA1);
    let good = encode_hex(&alg.response(id, &secret, &c).unwrap()).to_uppercase().replace("0X", "0x");
    let r = sent(feed(&mut m, &p, SEC_STAY, &text(&[("CHAP_N", "alice"), ("CHAP_R", &good)])));
    assert_eq!(r.bhs[1], 0x00);
    assert!(r.data.is_empty());
    let r = sent(feed(&mut m, &p, SEC_NEXT, &[]));
    assert_eq!(r.bhs[1], 0x81);
}

#[test]
fn continuation_in_both_directions() {
    let p = policy();
    // Incoming: the request text split in three PDUs, mid-key.
    let mut pairs = leading();
    pairs.extend([("MaxBurstLength", "65536"), ("ImmediateData", "No")]);
    let whole = text(&pairs);
    let mut m = machine();
    let cont = Req { transit: false, cont: true, ..OP_FINAL };
    for part in [&whole[..10], &whole[10..40]] {
        let r = sent(feed(&mut m, &p, cont, part));
        assert!(r.data.is_empty());
        assert_eq!(r.bhs[1], 0x04); // T=0 C=0 CSG=1
    }
    assert_eq!(feed(&mut m, &p, OP_FINAL, &whole[40..]), LoginStep::Ready);
    let (r, out) = m.complete(1).unwrap();
    let k = keys(&r);
    assert_eq!(k["MaxBurstLength"], "65536");
    assert_eq!(k["ImmediateData"], "No");
    assert_eq!(out.stat_sn, 0x55 + 3);

    // Outgoing: enough unknown keys that the answer exceeds 8192 bytes.
    let names: Vec<String> = (0..250).map(|i| format!("X-com.example.{i:04}.{}", "k".repeat(40))).collect();
    let mut pairs = leading();
    pairs.extend(names.iter().map(|n| (n.as_str(), "v")));
    let whole = text(&pairs);
    let mut m = machine();
    sent(feed(&mut m, &p, cont, &whole[..8000]));
    let mut got = Vec::new();
    let mut step = feed(&mut m, &p, OP_FINAL, &whole[8000..]);
    let mut parts = 0;
    loop {
        match step {
            LoginStep::Send(r) => {
                assert_eq!(r.bhs[1], 0x44); // C=1, T=0, CSG=1
                assert_eq!(r.data.len(), 8192);
                got.extend_from_slice(&r.data);
                parts += 1;
                step = feed(&mut m, &p, OP_FINAL, &[]);
            }
            LoginStep::Ready => break,
            LoginStep::Fail(_, s) => panic!("{s:?}"),
        }
    }
    assert_eq!(parts, 2);
    let (r, _) = m.complete(1).unwrap();
    got.extend_from_slice(&r.data);
    let answered = parse_pairs(&got).unwrap();
    assert_eq!(answered.iter().filter(|(_, v)| *v == "NotUnderstood").count(), 250);
}

#[test]
fn target_offers_keys_it_cannot_accept_by_default() {
    let limits =
        TargetLimits { max_burst_length: 65536, data_digest: DigestPolicy::Require, ..TargetLimits::default() };
    let p = policy();
    let mut m = LoginMachine::new(limits, 0);
    let r = sent(feed(&mut m, &p, OP_FINAL, &text(&leading())));
    assert_eq!(r.bhs[1], 0x04); // no transit: the initiator must answer
    let k = keys(&r);
    assert_eq!(k["MaxBurstLength"], "65536");
    assert_eq!(k["DataDigest"], "CRC32C");
    // The default FirstBurstLength (65536) fits under MaxBurstLength: not offered.
    assert!(!k.contains_key("FirstBurstLength"));
    let answers = text(&[("MaxBurstLength", "32768"), ("DataDigest", "CRC32C")]);
    assert_eq!(feed(&mut m, &p, OP_FINAL, &answers), LoginStep::Ready);
    let (_, out) = m.complete(1).unwrap();
    assert_eq!(out.params.max_burst_length, 32768);
    assert!(out.params.data_digest);

    // An answer violating the result function fails the login.
    let mut m = LoginMachine::new(TargetLimits { max_burst_length: 65536, ..TargetLimits::default() }, 0);
    sent(feed(&mut m, &p, OP_FINAL, &text(&leading())));
    assert_eq!(
        failed(feed(&mut m, &p, OP_FINAL, &text(&[("MaxBurstLength", "131072")]))),
        LoginStatus::INITIATOR_ERROR
    );
}

#[test]
fn discovery_session_has_no_tpgt_and_irrelevant_keys() {
    let mut m = machine();
    let pairs = [
        ("InitiatorName", INITIATOR),
        ("SessionType", "Discovery"),
        ("MaxBurstLength", "65536"),
        ("DataDigest", "CRC32C"),
    ];
    assert_eq!(feed(&mut m, &policy(), OP_FINAL, &text(&pairs)), LoginStep::Ready);
    let (r, out) = m.complete(1).unwrap();
    let k = keys(&r);
    assert!(!k.contains_key("TargetPortalGroupTag") && !k.contains_key("TargetAlias"));
    assert_eq!(k["MaxBurstLength"], "Irrelevant");
    assert_eq!(k["DataDigest"], "CRC32C");
    assert_eq!(out.params.session_type, SessionType::Discovery);
    assert_eq!(out.params.target_name, None);
}

#[test]
fn fail_after_ready_and_debug_has_no_secret() {
    let mut m = machine();
    assert_eq!(feed(&mut m, &policy(), OP_FINAL, &text(&leading())), LoginStep::Ready);
    let r = m.fail(LoginStatus::OUT_OF_RESOURCES);
    assert_eq!(&r.bhs[36..38], &[3, 2]);
    assert_eq!(m.complete(1), Err(LoginApiError::NotReady));
    let dbg = format!("{:?} {:?}", chap_policy(true).auth, LoginStatus(0x0201));
    assert!(!dbg.contains("secret-"), "{dbg}");
    assert!(dbg.contains("0x0201 AUTHENTICATION_FAILURE"));
}

// ----------------------------------------------------------------------------
// Full feature phase text.
// ----------------------------------------------------------------------------

fn text_req(itt: u32, ttt: u32, fin: bool, cont: bool, data: &[u8]) -> [u8; 48] {
    let mut b = [0u8; 48];
    TextRequestHeader {
        immediate: true,
        final_bit: fin,
        continue_bit: cont,
        data_segment_len: data.len() as u32,
        lun: 0,
        itt,
        ttt,
        sn: InitiatorSn { cmd_sn: 5, exp_stat_sn: 6 },
    }
    .write(&mut b);
    b
}

fn params(st: SessionType, mrdsl: u32) -> SessionParams {
    SessionParams {
        session_type: st,
        initiator_name: INITIATOR.into(),
        target_name: (st == SessionType::Normal).then(|| TARGET.into()),
        initiator_max_recv_data_segment_length: mrdsl,
        ..SessionParams::default()
    }
}

fn sn(stat_sn: u32) -> TargetSn {
    TargetSn { stat_sn, exp_cmd_sn: 5, max_cmd_sn: 70 }
}

#[test]
fn sendtargets_continuation() {
    let p = Policy { auth: Auth::None, targets: 40 };
    let mut ps = params(SessionType::Discovery, 512);
    let mut t = TextPhase::new();
    let data = text(&[("SendTargets", "All")]);
    let b = text_req(9, RESERVED_TAG, true, false, &data);
    let mut r = t.on_request(&p, &mut ps, &Bhs::new_checked(&b[..]).unwrap(), &data, sn(1)).unwrap();
    let mut all = Vec::new();
    let mut n = 1;
    loop {
        let h = Bhs::new_checked(&r.bhs[..]).unwrap();
        assert_eq!(h.opcode(), Opcode::TEXT_RESPONSE);
        assert_eq!((h.itt(), h.stat_sn()), (9, n));
        assert!(r.data.len() <= 512);
        all.extend_from_slice(&r.data);
        if h.final_bit() {
            assert!(!h.continue_bit());
            assert_eq!(h.ttt(), RESERVED_TAG);
            break;
        }
        assert!(h.continue_bit());
        assert_ne!(h.ttt(), RESERVED_TAG);
        assert_eq!(r.data.len(), 512);
        n += 1;
        let b = text_req(9, h.ttt(), true, false, &[]);
        r = t.on_request(&p, &mut ps, &Bhs::new_checked(&b[..]).unwrap(), &[], sn(n)).unwrap();
    }
    assert!(n > 5);
    let pairs = parse_pairs(&all).unwrap();
    assert_eq!(pairs.iter().filter(|(k, _)| *k == "TargetName").count(), 40);
    assert_eq!(pairs.iter().filter(|(k, _)| *k == "TargetAddress").count(), 80);
    assert_eq!(pairs[0], ("TargetName", TARGET));
    assert_eq!(pairs[1], ("TargetAddress", "192.0.2.1:3260,0"));
    assert_eq!(pairs[2], ("TargetAddress", "[2001:db8::1]:3260,0"));

    // A wrong TTT is rejected.
    let b = text_req(9, 0x1234, true, false, &[]);
    let e = t.on_request(&p, &mut ps, &Bhs::new_checked(&b[..]).unwrap(), &[], sn(1)).unwrap_err();
    assert_eq!(e, TextPhaseError::UnexpectedTtt);
}

fn one(p: &Policy, ps: &mut SessionParams, data: &[u8]) -> OwnedPdu {
    let b = text_req(3, RESERVED_TAG, true, false, data);
    TextPhase::new().on_request(p, ps, &Bhs::new_checked(&b[..]).unwrap(), data, sn(1)).unwrap()
}

#[test]
fn text_phase_keys() {
    let p = Policy { auth: Auth::None, targets: 3 };
    let mut ps = params(SessionType::Normal, 8192);
    // Normal session: All is rejected, empty = own target, named target.
    let r = one(&p, &mut ps, &text(&[("SendTargets", "All")]));
    assert_eq!(&r.data[..], b"SendTargets=Reject\0");
    let r = one(&p, &mut ps, &text(&[("SendTargets", "")]));
    assert_eq!(
        &r.data[..],
        format!("TargetName={TARGET}\0TargetAddress=192.0.2.1:3260,0\0TargetAddress=[2001:db8::1]:3260,0\0").as_bytes()
    );
    let r = one(&p, &mut ps, &text(&[("SendTargets", "iqn.nope")]));
    assert!(r.data.is_empty());
    assert_eq!(r.bhs[1], 0x80);
    // Renegotiation in FFP.
    let r = one(
        &p,
        &mut ps,
        &text(&[
            ("MaxRecvDataSegmentLength", "16384"),
            ("MaxBurstLength", "4096"),
            ("X-com.example.K", "1"),
            ("InitiatorAlias", "renamed"),
        ]),
    );
    assert_eq!(&r.data[..], b"MaxBurstLength=Reject\0X-com.example.K=NotUnderstood\0");
    assert_eq!(ps.initiator_max_recv_data_segment_length, 16384);
    assert_eq!(ps.initiator_alias.as_deref(), Some("renamed"));
    // Discovery session: empty SendTargets yields nothing.
    let mut ds = params(SessionType::Discovery, 8192);
    assert!(one(&p, &mut ds, &text(&[("SendTargets", "")])).data.is_empty());
    // Duplicate key and malformed text are errors.
    let b = text_req(3, RESERVED_TAG, true, false, b"A=1\0A=2\0");
    let e =
        TextPhase::new().on_request(&p, &mut ps, &Bhs::new_checked(&b[..]).unwrap(), b"A=1\0A=2\0", sn(1)).unwrap_err();
    assert_eq!(e, TextPhaseError::Malformed);
}

#[test]
fn text_request_continuation_and_f0() {
    let p = policy();
    let mut ps = params(SessionType::Discovery, 8192);
    let mut t = TextPhase::new();
    let data = text(&[("SendTargets", "All")]);
    let b = text_req(4, RESERVED_TAG, false, true, &data[..5]);
    let r = t.on_request(&p, &mut ps, &Bhs::new_checked(&b[..]).unwrap(), &data[..5], sn(1)).unwrap();
    let h = Bhs::new_checked(&r.bhs[..]).unwrap();
    assert!(!h.final_bit() && !h.continue_bit() && r.data.is_empty());
    assert_ne!(h.ttt(), RESERVED_TAG);
    // The rest, with F=0: the answer comes with F=0 and a new TTT.
    let b = text_req(4, h.ttt(), false, false, &data[5..]);
    let r = t.on_request(&p, &mut ps, &Bhs::new_checked(&b[..]).unwrap(), &data[5..], sn(2)).unwrap();
    let h = Bhs::new_checked(&r.bhs[..]).unwrap();
    assert!(!h.final_bit());
    assert_ne!(h.ttt(), RESERVED_TAG);
    assert!(r.data.starts_with(b"TargetName="));
    // The initiator ends the sequence with an empty F=1 request.
    let b = text_req(4, h.ttt(), true, false, &[]);
    let r = t.on_request(&p, &mut ps, &Bhs::new_checked(&b[..]).unwrap(), &[], sn(3)).unwrap();
    let h = Bhs::new_checked(&r.bhs[..]).unwrap();
    assert!(h.final_bit() && r.data.is_empty());
    assert_eq!(h.ttt(), RESERVED_TAG);
}
