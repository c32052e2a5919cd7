//! The rigs of the iSCSI fuzz targets `login_text` and `pdu_stream`: a login policy, the input
//! formats, a sans-IO connection model built on `scst_transport_iscsi::proto`, a socket-driver
//! runner, and the contracts every PDU the target emits must meet.
//!
//! Like `lib.rs` this file depends only on workspace crates (`scst`, `scst-backends`,
//! `scst-transport-iscsi`), so the fuzz targets, the seed generator and
//! `scst-transport-iscsi/tests/fuzz_regressions.rs` all include it with
//! `#[path = ".../fuzz/src/iscsi.rs"] mod iscsi_rig;` and replay inputs exactly as the fuzzer ran
//! them.
//!
//! # `login_text` input
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | bits 1..0: authentication of the plain target and of discovery (0 none, 1 CHAP without mutual credentials, 2 CHAP with mutual credentials, 3 none); bits 3..2 and 5..4: HeaderDigest and DataDigest policy (0 and 3 Allow, 1 Forbid, 2 Require); bit 6: strict limits (no immediate data, InitialR2T, small bursts and segments, so the target must offer keys); bit 7: the target has an alias |
//! | 1 | CHAP identifier of the fixed challenge ([`CHAP_CHALLENGE`]) |
//! | 2.. | records: a header byte, a 16-bit little-endian length, that many text bytes |
//!
//! Record header: bit 7 T (Login) or F (Text), bit 6 C, bits 5..4 CSG, bits 3..2 NSG, bit 1 a
//! Text Request of the full feature phase instead of a Login Request, bit 0 a tweak (Login: a
//! different ISID than the first request; Text: continue with the target's last TTT instead of
//! FFFFFFFFh). Before a record is fed, the entries `CHAP_N=*` and `CHAP_R=*` (`CHAP_R=*b`:
//! base64) are replaced with the configured user name and the correct response to the
//! challenge the target sent last, so the fuzzer can get past CHAP.
//!
//! # `pdu_stream` input
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | bit 0: prepend a login (operational stage, T=1 NSG=3) built from the bits below, so the stream starts in the full feature phase; bit 1: repair digests (in the full feature phase the rig fills in every header and data digest the stream leaves zero; a non-zero one is kept, so wrong digests stay reachable); bit 2: discovery session; bits 3 and 4: offer HeaderDigest and DataDigest CRC32C; bit 5: ImmediateData=No; bit 6: InitialR2T=Yes; bit 7: also run the stream through the socket driver |
//! | 1 | bits 1..0: MaxRecvDataSegmentLength offered (512, 4096, 8192, 262144); bits 3..2: MaxBurstLength/FirstBurstLength offered; bits 5..4 and 7..6: HeaderDigest and DataDigest policy of the sans-IO model (as in `login_text`; the socket driver always allows both) |
//! | 2.. | the byte stream an initiator sends: PDUs with AHS, padding and digests |

#![allow(clippy::too_many_lines)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scst_transport_iscsi::proto::bhs::{
    AhsIter, BHS_LEN, Bhs, CommandAhs, DIGEST_LEN, Digests, MAX_DATA_SEGMENT_LEN, Opcode, PduParts, RESERVED_TAG,
    Stage, pad_len, padded_len,
};
use scst_transport_iscsi::proto::build::{InitiatorSn, LoginRequestHeader, TargetSn, TextRequestHeader};
use scst_transport_iscsi::proto::chap::{ChapAlgorithm, ChapCredentials, ChapSecret};
use scst_transport_iscsi::proto::digest;
use scst_transport_iscsi::proto::login::{
    Auth, LOGIN_MAX_SEND_SEGMENT, LeadingLogin, LoginPolicy, Resolution, SendTargetsEntry, SendTargetsQuery,
    TargetConfig,
};
use scst_transport_iscsi::proto::params::DigestPolicy;
use scst_transport_iscsi::proto::text::{self, TextPairs};
use scst_transport_iscsi::proto::text_phase::TextPhase;
use scst_transport_iscsi::proto::{LoginMachine, LoginOutcome, LoginStatus, LoginStep, OwnedPdu, SessionParams};
use scst_transport_iscsi::proto::{SessionType, TargetLimits};

/// The target every rig exports without CHAP (the name of the captured sessions in
/// `/work/shared/vectors`, so captured logins succeed).
pub const TARGET: &str = "iqn.2026-11.rs.scst:vectors";
/// A target that always requires CHAP (with mutual credentials).
pub const CHAP_TARGET: &str = "iqn.2026-11.rs.scst:fuzz-chap";
/// A target that redirects (sans-IO rigs only).
pub const MOVED_TARGET: &str = "iqn.2026-11.rs.scst:fuzz-moved";
/// Address the moved target redirects to.
pub const MOVED_ADDRESS: &str = "192.0.2.7:3260,2";
/// The initiator name of the logins the rigs build.
pub const INITIATOR: &str = "iqn.2026-11.rs.scst:fuzzer";
/// CHAP user and secret the initiator must prove (those of the captured CHAP login).
pub const CHAP_USER: &str = "inuser";
/// See [`CHAP_USER`].
pub const CHAP_SECRET: &str = "insecret1234";
/// The target's credentials for mutual CHAP (those of the captured CHAP login).
pub const MUTUAL_USER: &str = "tgtuser";
/// See [`MUTUAL_USER`].
pub const MUTUAL_SECRET: &str = "tgtsecret5678";
/// The fixed CHAP challenge of the sans-IO rigs: the one tgtd sent in
/// `libiscsi-chap-mutual-login.pcap` (with identifier 1), so the captured CHAP_R verifies.
pub const CHAP_CHALLENGE: [u8; 50] = [
    0x92, 0x30, 0x42, 0x7b, 0x2d, 0x0e, 0x5a, 0x0a, 0x1b, 0x4f, 0x49, 0xa9, 0x2b, 0x95, 0x23, 0xb1, 0xea, 0x1b, 0xec,
    0x8e, 0xc8, 0xb3, 0x56, 0xe2, 0x63, 0x5b, 0xad, 0xea, 0xe4, 0x57, 0x97, 0xaa, 0x2f, 0x79, 0x34, 0xe5, 0x61, 0x34,
    0xeb, 0x4c, 0xe8, 0xbf, 0xe1, 0x3f, 0x41, 0xef, 0x13, 0x0e, 0x81, 0x79,
];
/// TSIH the rigs give completed logins.
pub const TSIH: u16 = 0x0123;
/// Initial StatSN of the sans-IO login machines.
pub const INITIAL_STAT_SN: u32 = 0x1000_0000;
/// Largest data segment of a Login or Text Request the socket driver reads (conn.rs).
pub const DRIVER_MAX_TEXT_SEGMENT: u32 = 65536;

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

#[path = "cursor.rs"]
mod cursor;
pub use cursor::Cursor;

fn digest_policy(bits: u8) -> DigestPolicy {
    match bits & 3 {
        1 => DigestPolicy::Forbid,
        2 => DigestPolicy::Require,
        _ => DigestPolicy::Allow,
    }
}

fn policy_accepts(p: DigestPolicy, crc: bool) -> bool {
    match p {
        DigestPolicy::Forbid => !crc,
        DigestPolicy::Allow => true,
        DigestPolicy::Require => crc,
    }
}

/// Serial number arithmetic (RFC 1982): `a < b`.
pub fn sn_lt(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

/// Base64 (RFC 4648, with padding) for CHAP_R values the rig writes.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let v = u32::from(c[0]) << 16 | u32::from(*c.get(1).unwrap_or(&0)) << 8 | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Parses a complete text the target sent (every pair NUL-terminated) into pairs.
///
/// # Panics
/// If the target sent malformed text.
fn target_pairs(data: &[u8], what: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for p in TextPairs::new(data) {
        match p {
            Ok((k, val)) => v.push((k.to_owned(), val.to_owned())),
            Err(e) => panic!("{what}: the target sent malformed text ({e}): {:?}", String::from_utf8_lossy(data)),
        }
    }
    v
}

/// Exercises the value parsers of `proto::text` on a value the fuzzer chose, and checks that
/// what they accept survives a format/parse round trip.
pub fn check_value_parsers(v: &str) {
    if let Some(n) = text::parse_number(v) {
        assert_eq!(text::parse_number(&n.to_string()), Some(n), "decimal round trip of {v:?}");
        assert_eq!(text::parse_number(&format!("{n:#x}")), Some(n), "hex round trip of {v:?}");
    }
    if let Some((a, b)) = text::parse_range(v) {
        assert!(a <= b);
        assert_eq!(text::parse_range(&format!("{a}~{b}")), Some((a, b)));
    }
    if let Some(b) = text::parse_bool(v) {
        assert_eq!(text::bool_str(b), v);
    }
    if let Some(bin) = text::decode_binary(v, text::MAX_LARGE_BINARY_LEN) {
        assert!(!bin.is_empty() && bin.len() <= text::MAX_LARGE_BINARY_LEN);
        assert_eq!(text::decode_binary(&text::encode_hex(&bin), text::MAX_LARGE_BINARY_LEN), Some(bin.clone()));
        assert_eq!(
            text::decode_binary(&format!("0b{}", base64(&bin)), text::MAX_LARGE_BINARY_LEN),
            Some(bin),
            "base64 round trip of {v:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Login policy
// ---------------------------------------------------------------------------------------------

/// The login policy of the sans-IO rigs: [`TARGET`] (authentication as configured),
/// [`CHAP_TARGET`] (CHAP with mutual credentials), [`MOVED_TARGET`] (redirects), discovery
/// (authentication as configured); anything else is not found.
#[derive(Debug, Clone)]
pub struct FuzzPolicy {
    /// Authentication of [`TARGET`] and of discovery sessions.
    pub auth: Auth,
    /// TargetAlias of the targets.
    pub alias: Option<String>,
    /// TargetPortalGroupTag.
    pub tpgt: u16,
}

impl FuzzPolicy {
    /// CHAP with mutual credentials.
    pub fn chap_mutual() -> Auth {
        Auth::Chap {
            initiator: ChapCredentials::new(CHAP_USER, CHAP_SECRET),
            mutual: Some(ChapCredentials::new(MUTUAL_USER, MUTUAL_SECRET)),
        }
    }

    /// The authentication a login for `target` (None: discovery) must pass.
    pub fn auth_for(&self, session: SessionType, target: Option<&str>) -> Option<Auth> {
        match (session, target) {
            (SessionType::Discovery, _) | (SessionType::Normal, Some(TARGET)) => Some(self.auth.clone()),
            (SessionType::Normal, Some(CHAP_TARGET)) => Some(Self::chap_mutual()),
            _ => None,
        }
    }
}

impl LoginPolicy for FuzzPolicy {
    fn resolve(&self, l: &LeadingLogin<'_>) -> Resolution {
        if l.tsih != 0 {
            return Resolution::Deny(LoginStatus::SESSION_DOES_NOT_EXIST);
        }
        if l.session_type == SessionType::Normal && l.target_name == Some(MOVED_TARGET) {
            return Resolution::Redirect { address: MOVED_ADDRESS.into(), permanent: l.isid[5] & 1 != 0 };
        }
        match self.auth_for(l.session_type, l.target_name) {
            Some(auth) => {
                Resolution::Accept(TargetConfig { alias: self.alias.clone(), portal_group_tag: self.tpgt, auth })
            }
            None => Resolution::Deny(LoginStatus::NOT_FOUND),
        }
    }

    fn send_targets(&self, _initiator: &str, q: SendTargetsQuery<'_>) -> Vec<SendTargetsEntry> {
        let entry = |n: &str| SendTargetsEntry {
            target_name: n.to_owned(),
            addresses: vec!["127.0.0.1:3260,1".into(), "[::1]:3260,1".into()],
        };
        match q {
            SendTargetsQuery::All => vec![entry(TARGET), entry(CHAP_TARGET)],
            SendTargetsQuery::Target(n) if n == TARGET || n == CHAP_TARGET => vec![entry(n)],
            SendTargetsQuery::Target(_) => Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Login and text response contracts
// ---------------------------------------------------------------------------------------------

/// What the rig tracks of one connection's login, to check every response against.
#[derive(Debug)]
pub struct LoginTracker {
    /// The limits the machine negotiates with.
    pub limits: TargetLimits,
    /// The policy it resolves with.
    pub policy: FuzzPolicy,
    /// StatSN the next successful response must carry.
    pub next_stat_sn: u32,
    /// ISID/TSIH/CID of the first request.
    pub ident: Option<([u8; 6], u16)>,
    /// The target's text of the current (C-bit continued) response sequence.
    pending_text: Vec<u8>,
    /// The initiator's text of the current (C-bit continued) request sequence.
    pending_request: Vec<u8>,
    /// Every key the target sent in this login.
    pub sent_keys: Vec<String>,
    /// The CHAP exchange: (algorithm, identifier, challenge) the target sent last.
    pub chap: Option<(ChapAlgorithm, u8, Vec<u8>)>,
    /// A correct CHAP_R (for the configured user) went to the target.
    pub chap_proven: bool,
    /// The initiator's CHAP_I/CHAP_C of its last request (mutual CHAP).
    pub mutual_request: Option<(String, String)>,
    /// The leading request's session type and target name, once sent.
    pub leading: Option<(SessionType, Option<String>)>,
    /// The login ended (failure or completion).
    pub finished: bool,
}

impl LoginTracker {
    /// A tracker for a machine created with `limits` and [`INITIAL_STAT_SN`].
    pub fn new(limits: TargetLimits, policy: FuzzPolicy) -> Self {
        Self {
            limits,
            policy,
            next_stat_sn: INITIAL_STAT_SN,
            ident: None,
            pending_text: Vec::new(),
            pending_request: Vec::new(),
            sent_keys: Vec::new(),
            chap: None,
            chap_proven: false,
            mutual_request: None,
            leading: None,
            finished: false,
        }
    }

    /// Records a request before it is fed (`data` is its text).
    pub fn on_request<T: AsRef<[u8]>>(&mut self, req: &Bhs<T>, data: &[u8]) {
        if self.ident.is_none() {
            self.ident = Some((req.isid(), req.tsih()));
        }
        // C-bit text is reassembled: only complete texts are looked at.
        self.pending_request.extend_from_slice(data);
        if req.continue_bit() {
            return;
        }
        let text = std::mem::take(&mut self.pending_request);
        let data = &text[..];
        self.mutual_request = None;
        let mut ci = None;
        let mut cc = None;
        let mut n_ok = false;
        let mut r_ok = false;
        for (k, v) in TextPairs::new(data).map_while(Result::ok) {
            check_value_parsers(v);
            match k {
                "SessionType" | "TargetName" | "InitiatorName" if self.leading.is_none() => {}
                "CHAP_I" => ci = Some(v.to_owned()),
                "CHAP_C" => cc = Some(v.to_owned()),
                "CHAP_N" => n_ok = v == CHAP_USER,
                "CHAP_R" => {
                    if let Some((alg, id, c)) = &self.chap {
                        let want = alg.response(*id, &ChapSecret::new(CHAP_SECRET), c);
                        r_ok = want.is_some() && text::decode_binary(v, text::MAX_LARGE_BINARY_LEN) == want;
                    }
                }
                _ => {}
            }
        }
        if n_ok && r_ok {
            self.chap_proven = true;
        }
        if let (Some(i), Some(c)) = (ci, cc) {
            self.mutual_request = Some((i, c));
        }
        if self.leading.is_none() {
            let pairs: Vec<(&str, &str)> = TextPairs::new(data).map_while(Result::ok).collect();
            if !pairs.is_empty() {
                let st = match pairs.iter().find(|p| p.0 == "SessionType").map(|p| p.1) {
                    Some("Discovery") => SessionType::Discovery,
                    _ => SessionType::Normal,
                };
                let t = pairs.iter().find(|p| p.0 == "TargetName").map(|p| p.1.to_owned());
                self.leading = Some((st, t));
            }
        }
    }

    /// Checks a Login Response the machine produced for `req` (`fail`: it ended the login with
    /// this status) and learns from its text.
    ///
    /// # Panics
    /// If the response breaks a contract.
    pub fn on_response<T: AsRef<[u8]>>(&mut self, req: &Bhs<T>, p: &OwnedPdu, fail: Option<LoginStatus>) {
        let b = p.header();
        assert_eq!(p.bhs[0], Opcode::LOGIN_RESPONSE.0, "login response opcode (and no I bit): {b:?}");
        assert_eq!(b.data_segment_len() as usize, p.data.len(), "DataSegmentLength of {b:?}");
        assert!(p.data.len() <= LOGIN_MAX_SEND_SEGMENT, "login response of {} bytes", p.data.len());
        assert_eq!(b.total_ahs_len(), 0);
        assert_eq!(b.itt(), req.itt(), "login response ITT");
        assert_eq!((b.version_max(), b.version_min()), (0, 0), "versions");
        let (isid, _) = self.ident.expect("a request came first");
        assert_eq!(b.isid(), isid, "ISID echo");
        assert!(!(b.transit() && b.continue_bit()), "T and C both set: {b:?}");
        if b.transit() {
            assert!(b.nsg().0 > b.csg().0 && b.nsg() != Stage(2), "T with NSG {:?} from CSG {:?}", b.nsg(), b.csg());
        }
        let window = self.limits.cmd_window.max(1);
        assert_eq!(b.exp_cmd_sn(), req.cmd_sn(), "ExpCmdSN of a login response");
        assert_eq!(b.max_cmd_sn(), req.cmd_sn().wrapping_add(window - 1), "MaxCmdSN of a login response");
        assert_eq!(b.stat_sn(), self.next_stat_sn, "StatSN of a login response");
        let status = u16::from_be_bytes([b.status_class(), b.status_detail()]);
        match fail {
            Some(s) => {
                assert_eq!(status, s.0, "failure status in the header");
                assert_ne!(s, LoginStatus::SUCCESS, "a failure with status 0");
                assert!(!b.transit() && !b.continue_bit());
                if s.class() == 1 {
                    let pairs = target_pairs(&p.data, "redirect");
                    assert!(pairs.iter().any(|(k, v)| k == "TargetAddress" && v == MOVED_ADDRESS), "redirect");
                } else {
                    assert!(p.data.is_empty(), "text in a failure response: {:?}", String::from_utf8_lossy(&p.data));
                }
                self.finished = true;
            }
            None => {
                assert_eq!(status, 0, "status of a successful response");
                self.next_stat_sn = self.next_stat_sn.wrapping_add(1);
                self.learn(&p.data, b.continue_bit());
            }
        }
    }

    /// Learns from (and checks) the target's text; `cont`: more of it follows.
    fn learn(&mut self, data: &[u8], cont: bool) {
        self.pending_text.extend_from_slice(data);
        if cont {
            return;
        }
        let all = std::mem::take(&mut self.pending_text);
        let pairs = target_pairs(&all, "login response");
        let mut chap = (None, None, None);
        let mut mutual = (None, None);
        for (k, v) in &pairs {
            assert!(text::valid_key(k.as_bytes()));
            // RFC 7143 §6.2: no key is declared or negotiated twice in a login (TargetAddress
            // may repeat in SendTargets answers only).
            assert!(!self.sent_keys.contains(k), "the target sent {k} twice in one login: {pairs:?}");
            self.sent_keys.push(k.clone());
            match k.as_str() {
                "CHAP_A" => chap.0 = Some(v.clone()),
                "CHAP_I" => chap.1 = Some(v.clone()),
                "CHAP_C" => chap.2 = Some(v.clone()),
                "CHAP_N" => mutual.0 = Some(v.clone()),
                "CHAP_R" => mutual.1 = Some(v.clone()),
                "MaxRecvDataSegmentLength" => {
                    let n = text::parse_number(v).expect("numeric MaxRecvDataSegmentLength");
                    assert!((512..=u64::from(MAX_DATA_SEGMENT_LEN)).contains(&n));
                }
                _ => {}
            }
        }
        if let (Some(a), Some(i), Some(c)) = chap {
            let alg = ChapAlgorithm(a.parse::<u8>().expect("CHAP_A is a number"));
            assert!(alg.digest_len().is_some(), "unsupported CHAP_A {a}");
            let id = i.parse::<u8>().expect("CHAP_I is a byte");
            let c = text::decode_binary(&c, text::MAX_LARGE_BINARY_LEN).expect("CHAP_C decodes");
            assert!(c.len() >= 16, "CHAP challenge of {} bytes", c.len());
            self.chap = Some((alg, id, c));
        } else {
            assert!(chap == (None, None, None), "partial CHAP challenge: {pairs:?}");
        }
        match mutual {
            (None, None) => {}
            (Some(n), Some(r)) => {
                assert_eq!(n, MUTUAL_USER, "mutual CHAP_N");
                let (alg, _, _) = self.chap.clone().expect("mutual CHAP answer without a CHAP exchange");
                let (i, c) = self.mutual_request.clone().expect("mutual CHAP answer without CHAP_I/CHAP_C");
                let id = text::parse_number(&i).and_then(|v| u8::try_from(v).ok()).expect("CHAP_I");
                let c = text::decode_binary(&c, text::MAX_LARGE_BINARY_LEN).expect("CHAP_C");
                let want = alg.response(id, &ChapSecret::new(MUTUAL_SECRET), &c).expect("algorithm");
                assert_eq!(text::decode_binary(&r, text::MAX_LARGE_BINARY_LEN), Some(want), "mutual CHAP_R");
                assert!(self.chap_proven, "the target authenticated itself to an unauthenticated initiator");
            }
            _ => panic!("partial mutual CHAP answer: {pairs:?}"),
        }
    }

    /// Checks a completed login's outcome.
    ///
    /// # Panics
    /// If the outcome breaks a contract.
    pub fn on_outcome(&mut self, out: &LoginOutcome, final_pdu: &OwnedPdu) {
        let b = final_pdu.header();
        assert!(b.transit() && !b.continue_bit() && b.nsg() == Stage::FULL_FEATURE, "final response {b:?}");
        assert_eq!(b.csg(), Stage::OPERATIONAL, "the final response leaves the operational stage");
        assert_eq!(b.tsih(), TSIH);
        assert_eq!(out.tsih, TSIH);
        assert_eq!(b.stat_sn(), self.next_stat_sn, "StatSN of the final login response");
        self.next_stat_sn = self.next_stat_sn.wrapping_add(1);
        assert_eq!(out.stat_sn, self.next_stat_sn, "StatSN after login");
        self.learn(&final_pdu.data, false);
        self.finished = true;
        let p = &out.params;
        let (st, target) = self.leading.clone().expect("a leading request");
        assert_eq!(p.session_type, st);
        assert!(!p.initiator_name.is_empty() && p.initiator_name.len() <= 223);
        assert_eq!(p.max_connections, 1);
        assert_eq!(p.error_recovery_level, 0);
        assert!((512..=MAX_DATA_SEGMENT_LEN).contains(&p.initiator_max_recv_data_segment_length));
        assert_eq!(
            p.target_max_recv_data_segment_length,
            self.limits.max_recv_data_segment_length.clamp(512, MAX_DATA_SEGMENT_LEN)
        );
        assert!(policy_accepts(self.limits.header_digest, p.header_digest), "HeaderDigest against the policy");
        assert!(policy_accepts(self.limits.data_digest, p.data_digest), "DataDigest against the policy");
        let auth = self.policy.auth_for(st, target.as_deref()).expect("an accepted login");
        match auth {
            Auth::None => assert_eq!(out.chap_user, None),
            Auth::Chap { initiator, .. } => {
                assert!(self.chap_proven, "login completed without a valid CHAP response");
                assert_eq!(out.chap_user.as_deref(), Some(initiator.user.as_str()));
            }
        }
        if st == SessionType::Normal {
            assert_eq!(p.target_name, target, "TargetName of the session");
            let l = &self.limits;
            assert!(p.max_burst_length >= 512 && p.max_burst_length <= l.max_burst_length.max(512), "{p:?}");
            assert!(p.first_burst_length >= 512 && p.first_burst_length <= p.max_burst_length, "{p:?}");
            assert!(l.immediate_data || !p.immediate_data, "ImmediateData against the limits");
            assert!(p.initial_r2t || !l.initial_r2t, "InitialR2T against the limits");
            assert!(p.max_outstanding_r2t >= 1 && p.max_outstanding_r2t <= l.max_outstanding_r2t.max(1));
            assert!(p.data_pdu_in_order || !l.data_pdu_in_order);
        }
    }
}

/// Checks a Text Response `p` that a [`TextPhase`] produced for `req` with `sn`.
///
/// # Panics
/// If the response breaks a contract.
pub fn check_text_response<T: AsRef<[u8]>>(req: &Bhs<T>, p: &OwnedPdu, params: &SessionParams, sn: TargetSn) {
    let b = p.header();
    assert_eq!(p.bhs[0], Opcode::TEXT_RESPONSE.0, "text response opcode: {b:?}");
    assert_eq!(b.data_segment_len() as usize, p.data.len());
    assert_eq!(b.total_ahs_len(), 0);
    let max = params.initiator_max_recv_data_segment_length.clamp(512, MAX_DATA_SEGMENT_LEN) as usize;
    assert!(p.data.len() <= max, "text response of {} bytes, MaxRecvDataSegmentLength {max}", p.data.len());
    assert_eq!(b.itt(), req.itt(), "text response ITT");
    assert_eq!(b.lun(), req.lun(), "text response LUN");
    assert!(!(b.final_bit() && b.continue_bit()), "F and C: {b:?}");
    assert_eq!(b.final_bit(), b.ttt() == RESERVED_TAG, "F bit against TTT {:#x}", b.ttt());
    assert_eq!((b.stat_sn(), b.exp_cmd_sn(), b.max_cmd_sn()), (sn.stat_sn, sn.exp_cmd_sn, sn.max_cmd_sn));
}

/// Reassembles a text response sequence and checks the complete text.
#[derive(Debug, Default)]
pub struct TextAnswer {
    buf: Vec<u8>,
}

impl TextAnswer {
    /// Adds a Text Response; returns the complete text's pairs when it ends (C=0).
    ///
    /// # Panics
    /// If the complete text is malformed.
    pub fn add(&mut self, p: &OwnedPdu) -> Option<Vec<(String, String)>> {
        self.buf.extend_from_slice(&p.data);
        if p.header().continue_bit() {
            return None;
        }
        let all = std::mem::take(&mut self.buf);
        let pairs = target_pairs(&all, "text response");
        let mut seen: Vec<&str> = Vec::new();
        for (k, _) in &pairs {
            if k != "TargetName" && k != "TargetAddress" {
                assert!(!seen.contains(&k.as_str()), "key {k} twice in one text response");
                seen.push(k);
            }
        }
        Some(pairs)
    }
}

// ---------------------------------------------------------------------------------------------
// login_text
// ---------------------------------------------------------------------------------------------

/// The configuration byte of `login_text` and the limits and policy it selects.
pub fn login_config(byte: u8) -> (TargetLimits, FuzzPolicy) {
    let auth = match byte & 3 {
        1 => Auth::Chap { initiator: ChapCredentials::new(CHAP_USER, CHAP_SECRET), mutual: None },
        2 => FuzzPolicy::chap_mutual(),
        _ => Auth::None,
    };
    let mut limits = TargetLimits {
        header_digest: digest_policy(byte >> 2),
        data_digest: digest_policy(byte >> 4),
        ..TargetLimits::default()
    };
    if byte & 0x40 != 0 {
        limits.immediate_data = false;
        limits.initial_r2t = true;
        limits.max_burst_length = 8192;
        limits.first_burst_length = 4096;
        limits.max_recv_data_segment_length = 512;
        limits.max_outstanding_r2t = 1;
        limits.cmd_window = 1;
    }
    let policy = FuzzPolicy { auth, alias: (byte & 0x80 != 0).then(|| "fuzz alias".to_owned()), tpgt: 7 };
    (limits, policy)
}

/// Replaces `CHAP_N=*` and `CHAP_R=*` / `CHAP_R=*b` entries (see the module docs).
pub fn substitute_chap(text: &[u8], chap: Option<&(ChapAlgorithm, u8, Vec<u8>)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for (i, entry) in text.split(|&b| b == 0).enumerate() {
        if i > 0 {
            out.push(0);
        }
        match entry {
            b"CHAP_N=*" => out.extend_from_slice(format!("CHAP_N={CHAP_USER}").as_bytes()),
            b"CHAP_R=*" | b"CHAP_R=*b" => {
                let r = chap
                    .and_then(|(alg, id, c)| alg.response(*id, &ChapSecret::new(CHAP_SECRET), c))
                    .unwrap_or_else(|| vec![0; 16]);
                let v = if entry.ends_with(b"b") { format!("0b{}", base64(&r)) } else { text::encode_hex(&r) };
                out.extend_from_slice(format!("CHAP_R={v}").as_bytes());
            }
            e => out.extend_from_slice(e),
        }
    }
    out
}

/// Runs one `login_text` input (see the module docs). Returns the login's outcome, if it
/// completed.
///
/// # Panics
/// If the login or text machinery breaks a contract.
pub fn run_login_text(data: &[u8]) -> Option<LoginOutcome> {
    let mut c = Cursor::new(data);
    let (limits, policy) = login_config(c.u8());
    let chap_id = c.u8();
    let mut m =
        LoginMachine::new(limits.clone(), INITIAL_STAT_SN).with_fixed_chap_challenge(chap_id, CHAP_CHALLENGE.to_vec());
    let mut t = LoginTracker::new(limits, policy.clone());
    let isid = [0x80, 0x12, 0x34, 0x56, 0, 1];
    let mut cmd_sn = 7u32;
    let mut outcome: Option<LoginOutcome> = None;
    let mut text_phase = TextPhase::new();
    let mut last_ttt = RESERVED_TAG;
    let mut answer = TextAnswer::default();
    let mut itt = 0x100u32;
    let mut n = 0;
    while !c.is_empty() && n < 64 {
        n += 1;
        let h = c.u8();
        let len = usize::from(c.u16());
        let raw = c.take(len);
        let body = substitute_chap(raw, t.chap.as_ref());
        itt = itt.wrapping_add(1);
        let mut hdr = [0u8; BHS_LEN];
        if h & 0x02 == 0 {
            LoginRequestHeader {
                transit: h & 0x80 != 0,
                continue_bit: h & 0x40 != 0,
                csg: Stage((h >> 4) & 3),
                nsg: Stage((h >> 2) & 3),
                version_max: 0,
                version_min: 0,
                data_segment_len: body.len() as u32,
                isid: if h & 1 != 0 { [0x40, 0, 0, 0, 0, 9] } else { isid },
                tsih: 0,
                itt,
                cid: 1,
                sn: InitiatorSn { cmd_sn, exp_stat_sn: t.next_stat_sn },
            }
            .write(&mut hdr);
            let b = Bhs::from_array(&hdr);
            if t.finished {
                // A finished machine refuses everything.
                match m.on_request(&policy, &b, &body) {
                    LoginStep::Fail(_, s) => assert_eq!(s, LoginStatus::INITIATOR_ERROR),
                    other => panic!("a finished login machine answered {other:?}"),
                }
                continue;
            }
            t.on_request(&b, &body);
            match m.on_request(&policy, &b, &body) {
                LoginStep::Send(p) => t.on_response(&b, &p, None),
                LoginStep::Fail(p, s) => t.on_response(&b, &p, Some(s)),
                LoginStep::Ready => {
                    let pending = m.pending_outcome().expect("pending outcome after Ready");
                    assert!(m.complete(0).is_err(), "TSIH 0 accepted");
                    let (p, out) = m.complete(TSIH).expect("complete after Ready");
                    assert_eq!(pending.params, out.params);
                    assert!(m.complete(TSIH).is_err(), "completed twice");
                    t.on_outcome(&out, &p);
                    outcome = Some(out);
                }
            }
        } else {
            let Some(out) = outcome.as_mut() else { continue };
            let ttt = if h & 1 != 0 { last_ttt } else { RESERVED_TAG };
            TextRequestHeader {
                immediate: true,
                final_bit: h & 0x80 != 0,
                continue_bit: h & 0x40 != 0,
                data_segment_len: body.len() as u32,
                lun: u64::from(h >> 2 & 3),
                itt: itt & !0xff | u32::from(h >> 4 & 3),
                ttt,
                sn: InitiatorSn { cmd_sn, exp_stat_sn: 0 },
            }
            .write(&mut hdr);
            cmd_sn = cmd_sn.wrapping_add(1);
            let b = Bhs::from_array(&hdr);
            for (_, v) in TextPairs::new(&body).map_while(Result::ok) {
                check_value_parsers(v);
            }
            let sn = TargetSn { stat_sn: cmd_sn ^ 0x5555, exp_cmd_sn: cmd_sn, max_cmd_sn: cmd_sn.wrapping_add(3) };
            let mrdsl_before = out.params.initiator_max_recv_data_segment_length;
            match text_phase.on_request(&policy, &mut out.params, &b, &body, sn) {
                Ok(p) => {
                    check_text_response(&b, &p, &out.params, sn);
                    if p.header().ttt() != RESERVED_TAG {
                        last_ttt = p.header().ttt();
                    }
                    if let Some(pairs) = answer.add(&p) {
                        check_send_targets(&pairs, &out.params);
                    }
                }
                Err(e) => {
                    let _ = e.reject_reason();
                    answer = TextAnswer::default();
                }
            }
            let mrdsl = out.params.initiator_max_recv_data_segment_length;
            assert!(mrdsl == mrdsl_before || (512..=MAX_DATA_SEGMENT_LEN).contains(&mrdsl), "MRDSL {mrdsl}");
        }
    }
    outcome
}

/// SendTargets answers name only targets the policy reports, each followed by its addresses.
fn check_send_targets(pairs: &[(String, String)], params: &SessionParams) {
    let mut in_target = false;
    for (k, v) in pairs {
        match k.as_str() {
            // `TargetName=Reject` and `TargetAddress=Reject` answer keys the initiator sent
            // (login-only and target-only keys).
            "TargetName" | "TargetAddress" if v == "Reject" => {}
            "TargetName" => {
                assert!(v == TARGET || v == CHAP_TARGET, "SendTargets reported {v:?}");
                in_target = true;
            }
            "TargetAddress" => assert!(in_target, "TargetAddress before any TargetName"),
            _ => {
                if k == "SendTargets" {
                    assert_eq!(v, "Reject");
                    assert_eq!(params.session_type, SessionType::Normal);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// pdu_stream: input
// ---------------------------------------------------------------------------------------------

/// The decoded header of a `pdu_stream` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamConfig {
    /// The mode byte (byte 0).
    pub mode: u8,
    /// The limits byte (byte 1).
    pub limits: u8,
}

impl StreamConfig {
    /// Prepend a login.
    pub fn auto_login(self) -> bool {
        self.mode & 0x01 != 0
    }
    /// Recompute digests in the full feature phase.
    pub fn repair(self) -> bool {
        self.mode & 0x02 != 0
    }
    /// Run the socket driver too.
    pub fn driver(self) -> bool {
        self.mode & 0x80 != 0
    }

    /// The sans-IO model's limits: the socket driver's when the driver runs (so both negotiate
    /// alike), else as byte 1 says.
    pub fn target_limits(self) -> TargetLimits {
        if self.driver() {
            return driver_limits();
        }
        TargetLimits {
            header_digest: digest_policy(self.limits >> 4),
            data_digest: digest_policy(self.limits >> 6),
            ..TargetLimits::default()
        }
    }

    /// The login PDU that [`StreamConfig::auto_login`] prepends (CmdSN 1, ITT 0).
    pub fn login_pdu(self) -> Vec<u8> {
        let m = self.mode;
        let mut t = Vec::new();
        let push = |t: &mut Vec<u8>, k: &str, v: &str| text::push_pair(t, k, v);
        push(&mut t, "InitiatorName", INITIATOR);
        if m & 0x04 != 0 {
            push(&mut t, "SessionType", "Discovery");
        } else {
            push(&mut t, "TargetName", TARGET);
            push(&mut t, "SessionType", "Normal");
            push(&mut t, "ImmediateData", if m & 0x20 != 0 { "No" } else { "Yes" });
            push(&mut t, "InitialR2T", if m & 0x40 != 0 { "Yes" } else { "No" });
            let (mb, fb) = match (self.limits >> 2) & 3 {
                0 => (512, 512),
                1 => (4096, 1024),
                2 => (262_144, 65_536),
                _ => (1_048_576, 262_144),
            };
            push(&mut t, "MaxBurstLength", &mb.to_string());
            push(&mut t, "FirstBurstLength", &fb.to_string());
            push(&mut t, "MaxOutstandingR2T", "4");
        }
        push(&mut t, "HeaderDigest", if m & 0x08 != 0 { "CRC32C" } else { "None" });
        push(&mut t, "DataDigest", if m & 0x10 != 0 { "CRC32C" } else { "None" });
        let mrdsl = [512u32, 4096, 8192, 262_144][usize::from(self.limits & 3)];
        push(&mut t, "MaxRecvDataSegmentLength", &mrdsl.to_string());
        let mut hdr = [0u8; BHS_LEN];
        LoginRequestHeader { itt: 0, ..final_login_request(t.len(), [0x80, 0, 0x02, 0x3d, 0, 1]) }.write(&mut hdr);
        let mut v = hdr.to_vec();
        v.extend_from_slice(&t);
        v.resize(BHS_LEN + padded_len(t.len()), 0);
        v
    }
}

/// A Login Request going from the operational stage to the full feature phase, with
/// `data_len` bytes of text, ISID `isid`, ITT 1, CID 1, CmdSN 1: the last (or only) request of
/// a login. Other requests change fields with struct update syntax.
pub fn final_login_request(data_len: usize, isid: [u8; 6]) -> LoginRequestHeader {
    LoginRequestHeader {
        transit: true,
        csg: Stage::OPERATIONAL,
        nsg: Stage::FULL_FEATURE,
        data_segment_len: data_len as u32,
        isid,
        itt: 1,
        cid: 1,
        sn: InitiatorSn { cmd_sn: 1, exp_stat_sn: 0 },
        ..Default::default()
    }
}

/// Splits a `pdu_stream` input into its configuration and the byte stream (with the
/// prepended login, if asked for).
pub fn decode_stream(data: &[u8]) -> (StreamConfig, Vec<u8>) {
    let mut c = Cursor::new(data);
    let cfg = StreamConfig { mode: c.u8(), limits: c.u8() };
    let mut stream = if cfg.auto_login() { cfg.login_pdu() } else { Vec::new() };
    stream.extend_from_slice(c.rest());
    (cfg, stream)
}

/// The limits the socket driver negotiates with (`IscsiConfig::default()`, as `conn.rs` passes
/// them to its login machine).
pub fn driver_limits() -> TargetLimits {
    let cfg = scst_transport_iscsi::IscsiConfig::default();
    TargetLimits { cmd_window: cfg.cmd_window.max(1), ..cfg.limits }
}

// ---------------------------------------------------------------------------------------------
// pdu_stream: the sans-IO connection model
// ---------------------------------------------------------------------------------------------

/// One PDU the model framed in the stream.
#[derive(Debug, Clone)]
pub struct FramedPdu {
    /// The BHS.
    pub bhs: [u8; BHS_LEN],
    /// Framed while logging in (no digests).
    pub login: bool,
    /// Its data digest was wrong (full feature phase with data digests only).
    pub bad_data_digest: bool,
}

/// Where the model's connection is.
#[allow(clippy::large_enum_variant)] // one per input, never moved in a loop
enum Phase {
    Login(Box<LoginMachine>),
    Ffp { params: SessionParams, text: TextPhase, answer: TextAnswer, stat_sn: u32 },
    Closed,
}

/// The sans-IO connection model: frames the stream as the socket driver does, feeds login
/// requests to a [`LoginMachine`] and text requests to a [`TextPhase`], and checks what they
/// answer.
pub struct Model {
    phase: Phase,
    tracker: LoginTracker,
    policy: FuzzPolicy,
    /// Every PDU framed, in order.
    pub pdus: Vec<FramedPdu>,
    /// The stream as framed, digests recomputed when repairing (what the driver is sent).
    pub repaired: Vec<u8>,
    /// Index in [`Model::pdus`] of the Login Request that completed the login.
    pub login_end: Option<usize>,
    /// The outcome of the login.
    pub outcome: Option<LoginOutcome>,
    /// The largest MaxRecvDataSegmentLength the initiator declared, login and text included.
    pub max_mrdsl: u32,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("pdus", &self.pdus.len()).field("login_end", &self.login_end).finish()
    }
}

impl Model {
    /// Runs the model over `stream` (see [`decode_stream`]).
    ///
    /// # Panics
    /// If the protocol core breaks a contract.
    pub fn run(cfg: StreamConfig, stream: &[u8]) -> Self {
        let limits = cfg.target_limits();
        let policy = FuzzPolicy { auth: Auth::None, alias: None, tpgt: 1 };
        let m =
            LoginMachine::new(limits.clone(), INITIAL_STAT_SN).with_fixed_chap_challenge(1, CHAP_CHALLENGE.to_vec());
        let mut me = Self {
            phase: Phase::Login(Box::new(m)),
            tracker: LoginTracker::new(limits, policy.clone()),
            policy,
            pdus: Vec::new(),
            repaired: Vec::with_capacity(stream.len()),
            login_end: None,
            outcome: None,
            max_mrdsl: 0,
        };
        let mut off = 0;
        while off < stream.len() && !matches!(me.phase, Phase::Closed) {
            let rest = &stream[off..];
            let Ok(bhs) = Bhs::new_checked(rest) else { break };
            let digests = me.digests();
            let len = bhs.pdu_len(digests);
            assert!(len >= BHS_LEN + bhs.total_ahs_len() + bhs.data_segment_len() as usize);
            if rest.len() < len {
                // A truncated last PDU: the driver acts on its header (it may reject it) before
                // it waits for the rest and sees the connection close.
                let mut bhs = [0u8; BHS_LEN];
                bhs.copy_from_slice(&rest[..BHS_LEN]);
                let login = matches!(me.phase, Phase::Login(_));
                me.pdus.push(FramedPdu { bhs, login, bad_data_digest: false });
                break;
            }
            let mut pdu = rest[..len].to_vec();
            off += len;
            if cfg.repair() && matches!(me.phase, Phase::Ffp { .. }) {
                repair_digests(&mut pdu, digests);
            }
            me.repaired.extend_from_slice(&pdu);
            me.pdu(&pdu, digests);
        }
        me.repaired.extend_from_slice(&stream[off..]);
        me
    }

    /// The digests in force for the next PDU.
    fn digests(&self) -> Digests {
        match &self.phase {
            Phase::Ffp { params, .. } => params.digests(),
            _ => Digests::default(),
        }
    }

    fn pdu(&mut self, pdu: &[u8], digests: Digests) {
        let parts = PduParts::split(pdu, digests).expect("a PDU of pdu_len bytes splits");
        check_parts(pdu, &parts, digests);
        let b = parts.bhs;
        if trace() {
            trace_pdu("model  >", &b, parts.data.len());
        }
        let _ = format!("{b:?}");
        exercise_accessors(&b);
        let mut bhs = [0u8; BHS_LEN];
        bhs.copy_from_slice(&pdu[..BHS_LEN]);
        let login = matches!(self.phase, Phase::Login(_));
        let mut bad_data_digest = false;
        if let Some(d) = parts.header_digest {
            if !digest::verify(d, digest::header_digest(&pdu[..BHS_LEN], parts.ahs)) {
                // The driver drops the connection: lengths in a corrupt header cannot be trusted.
                self.pdus.push(FramedPdu { bhs, login, bad_data_digest });
                self.phase = Phase::Closed;
                return;
            }
        }
        if let Some(d) = parts.data_digest {
            bad_data_digest = !digest::verify(d, digest::data_digest_with_pad(parts.data, parts.pad));
        }
        self.pdus.push(FramedPdu { bhs, login, bad_data_digest });
        // AHS: the iterator and the command parser agree.
        let mut total = 0;
        for a in AhsIter::new(parts.ahs) {
            let Ok(a) = a else { break };
            total += padded_len(3 + a.data.len() + 1);
            assert!(total <= parts.ahs.len());
        }
        if let Ok(c) = CommandAhs::parse(parts.ahs) {
            if let Some(x) = c.extended_cdb {
                assert!(!x.is_empty() && x.len() < parts.ahs.len());
            }
        }
        let index = self.pdus.len() - 1;
        match &mut self.phase {
            Phase::Login(m) => {
                // As conn.rs: AHS or an oversized segment, or another opcode, fail the login.
                if b.total_ahs_len() != 0
                    || b.data_segment_len() > DRIVER_MAX_TEXT_SEGMENT
                    || b.opcode() != Opcode::LOGIN_REQUEST
                {
                    let st = if b.opcode() == Opcode::LOGIN_REQUEST {
                        LoginStatus::INITIATOR_ERROR
                    } else {
                        LoginStatus::INVALID_DURING_LOGIN
                    };
                    if self.tracker.ident.is_none() {
                        self.tracker.ident = Some((b.isid(), b.tsih()));
                    }
                    let p = m.fail(st);
                    let pb = p.header();
                    assert_eq!(u16::from_be_bytes([pb.status_class(), pb.status_detail()]), st.0);
                    assert!(p.data.is_empty());
                    self.phase = Phase::Closed;
                    return;
                }
                self.tracker.on_request(&b, parts.data);
                match m.on_request(&self.policy, &b, parts.data) {
                    LoginStep::Send(p) => self.tracker.on_response(&b, &p, None),
                    LoginStep::Fail(p, s) => {
                        self.tracker.on_response(&b, &p, Some(s));
                        self.phase = Phase::Closed;
                    }
                    LoginStep::Ready => {
                        let (p, out) = m.complete(TSIH).expect("complete after Ready");
                        self.tracker.on_outcome(&out, &p);
                        self.max_mrdsl = self.max_mrdsl.max(out.params.initiator_max_recv_data_segment_length);
                        self.login_end = Some(index);
                        self.phase = Phase::Ffp {
                            params: out.params.clone(),
                            text: TextPhase::new(),
                            answer: TextAnswer::default(),
                            stat_sn: out.stat_sn,
                        };
                        self.outcome = Some(out);
                    }
                }
            }
            // A Logout Request does not end the framing: the driver ignores one outside the
            // CmdSN window (or holds one ahead of it) and reads on. Framing more PDUs than the
            // driver reads only widens what its answers may refer to.
            Phase::Ffp { params, text, answer, stat_sn } => {
                if b.opcode() == Opcode::TEXT_REQUEST {
                    let sn = TargetSn { stat_sn: *stat_sn, exp_cmd_sn: b.cmd_sn(), max_cmd_sn: b.cmd_sn() };
                    match text.on_request(&self.policy, params, &b, parts.data, sn) {
                        Ok(p) => {
                            check_text_response(&b, &p, params, sn);
                            *stat_sn = stat_sn.wrapping_add(1);
                            if let Some(pairs) = answer.add(&p) {
                                check_send_targets(&pairs, params);
                            }
                        }
                        Err(e) => {
                            let _ = e.reject_reason();
                            *answer = TextAnswer::default();
                        }
                    }
                    self.max_mrdsl = self.max_mrdsl.max(params.initiator_max_recv_data_segment_length);
                }
            }
            Phase::Closed => {}
        }
    }

    /// The SCSI Commands framed in the full feature phase: (ITT, Expected Data Transfer Length).
    pub fn commands(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let start = self.login_end.map_or(usize::MAX, |i| i + 1);
        self.pdus.iter().skip(start).filter_map(|p| {
            let b = Bhs::from_array(&p.bhs);
            (b.opcode() == Opcode::SCSI_COMMAND).then(|| (b.itt(), b.expected_data_transfer_length()))
        })
    }
}

/// Fills in the header and data digests of a PDU that are zero (a digest the input gives is
/// kept, right or wrong).
pub fn repair_digests(pdu: &mut [u8], digests: Digests) {
    let Ok(b) = Bhs::new_checked(&pdu[..]) else { return };
    let ahs = b.total_ahs_len();
    let dsl = b.data_segment_len() as usize;
    let mut at = BHS_LEN + ahs;
    if digests.header {
        let d = digest::header_digest(&pdu[..BHS_LEN], &pdu[BHS_LEN..at]);
        if pdu[at..at + DIGEST_LEN] == [0; DIGEST_LEN] {
            pdu[at..at + DIGEST_LEN].copy_from_slice(&d);
        }
        at += DIGEST_LEN;
    }
    if digests.data && dsl > 0 {
        let end = at + padded_len(dsl);
        let d = digest::data_digest_with_pad(&pdu[at..at + dsl], &pdu[at + dsl..end]);
        if pdu[end..end + DIGEST_LEN] == [0; DIGEST_LEN] {
            pdu[end..end + DIGEST_LEN].copy_from_slice(&d);
        }
    }
}

/// The pieces [`PduParts::split`] found add up to the PDU.
fn check_parts(pdu: &[u8], p: &PduParts<'_>, digests: Digests) {
    let b = p.bhs;
    let dsl = b.data_segment_len() as usize;
    assert_eq!(p.ahs.len(), b.total_ahs_len());
    assert_eq!(p.data.len(), dsl);
    assert_eq!(p.pad.len(), pad_len(dsl));
    assert_eq!(p.header_digest.is_some(), digests.header);
    assert_eq!(p.data_digest.is_some(), digests.data && dsl > 0);
    let sum = BHS_LEN
        + p.ahs.len()
        + p.header_digest.map_or(0, |_| DIGEST_LEN)
        + p.data.len()
        + p.pad.len()
        + p.data_digest.map_or(0, |_| DIGEST_LEN);
    assert_eq!(sum, pdu.len(), "the parts of a PDU add up to pdu_len");
    assert_eq!(b.bytes(), &pdu[..BHS_LEN]);
}

/// Calls every accessor of the view (none may panic, whatever the bytes).
fn exercise_accessors<T: AsRef<[u8]>>(b: &Bhs<T>) {
    let _ = (b.opcode().name(), b.immediate(), b.final_bit(), b.flags(), b.lun(), b.itt(), b.ttt());
    let _ = (b.cmd_sn(), b.exp_stat_sn(), b.stat_sn(), b.exp_cmd_sn(), b.max_cmd_sn(), b.data_sn(), b.r2t_sn());
    let _ = (b.buffer_offset(), b.desired_data_transfer_length(), b.residual_count(), b.bidi_read_residual_count());
    let _ = (b.read_bit(), b.write_bit(), b.task_attr().name(), b.expected_data_transfer_length(), b.cdb());
    let _ = (b.response(), b.status(), b.reject_reason().name(), b.tmf_function().name(), b.referenced_task_tag());
    let _ = (b.ref_cmd_sn(), b.logout_reason().name(), b.cid(), b.time2wait(), b.time2retain());
    let _ = (b.transit(), b.continue_bit(), b.csg(), b.nsg(), b.version_max(), b.version_min(), b.isid(), b.tsih());
    let _ = (b.status_class(), b.status_detail(), b.snack_type().name(), b.snack_tag(), b.beg_run(), b.run_length());
    let _ = (b.ack_bit(), b.status_bit(), b.overflow_bit(), b.underflow_bit(), b.bidi_overflow_bit());
    let _ = (b.bidi_underflow_bit(), b.async_event().name(), b.async_vcode(), b.async_parameters());
}

// ---------------------------------------------------------------------------------------------
// pdu_stream: the socket driver
// ---------------------------------------------------------------------------------------------

/// An [`scst_transport_iscsi::IscsiServer`] on a free loopback port exporting [`TARGET`] (RAM,
/// NULLIO and 4 KiB-block RAM LUNs 0, 1 and 2) and [`CHAP_TARGET`].
pub struct DriverRig {
    server: scst_transport_iscsi::IscsiServer,
    addr: SocketAddr,
    devices: Vec<Arc<scst::Device>>,
}

impl std::fmt::Debug for DriverRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverRig").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Default for DriverRig {
    fn default() -> Self {
        Self::new()
    }
}

impl DriverRig {
    /// Starts the server.
    ///
    /// # Panics
    /// If it cannot listen or a device cannot be created.
    pub fn new() -> Self {
        use scst::{Device, DeviceConfig, Disk, Lun, SgvConfig, SgvPool, Target};
        use scst_backends::{NullStore, RamStore};
        let cfg = scst_transport_iscsi::IscsiConfig {
            portals: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            ..scst_transport_iscsi::IscsiConfig::default()
        };
        let server = scst_transport_iscsi::IscsiServer::new(cfg);
        let dc = |name: &str| DeviceConfig {
            sanitize_rate: 0,
            ..DeviceConfig::new(format!("{name}-{}", std::process::id()))
        };
        let target = Target::new(TARGET, SgvPool::new(SgvConfig::default()));
        let ram = Device::new(dc("pdu-ram"), Disk::new(RamStore::new(1 << 20, 512).expect("RAM"))).expect("RAM");
        let null =
            Device::new(dc("pdu-null"), Disk::new(NullStore::new(64 << 20, 512).expect("NULLIO"))).expect("NULL");
        let ram4k = Device::new(dc("pdu-ram4k"), Disk::new(RamStore::new(1 << 20, 4096).expect("RAM"))).expect("RAM");
        target.add_lun(Lun(0), ram.clone(), false).expect("LUN 0");
        target.add_lun(Lun(1), null.clone(), false).expect("LUN 1");
        target.add_lun(Lun(2), ram4k.clone(), false).expect("LUN 2");
        server.add_target(scst_transport_iscsi::TargetEntry {
            target,
            alias: None,
            chap: None,
            allow: Default::default(),
        });
        let chap_target = Target::new(CHAP_TARGET, SgvPool::new(SgvConfig::default()));
        let chap = scst_transport_iscsi::ChapConfig {
            initiator: ChapCredentials::new(CHAP_USER, CHAP_SECRET),
            mutual: Some(ChapCredentials::new(MUTUAL_USER, MUTUAL_SECRET)),
        };
        server.add_target(scst_transport_iscsi::TargetEntry {
            target: chap_target,
            alias: Some("chap".into()),
            chap: Some(chap),
            allow: Default::default(),
        });
        let addr = server.listen().expect("listen")[0];
        // The devices' workers now, not with an input's first command that needs one: `run`
        // checks that an input leaves no thread behind, and LeakSanitizer (between inputs) takes
        // the state of a thread being created for a leak.
        let devices = vec![ram, null, ram4k];
        for d in &devices {
            d.start_workers();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while thread_names().iter().filter(|n| n.starts_with("scst-dev")).count() < devices.len() {
            assert!(Instant::now() < deadline, "the device workers did not start");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        Self { server, addr, devices }
    }

    /// Puts the devices back in their initial state (as the `cdb` rig does).
    fn reset(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        for d in &self.devices {
            let deadline = Instant::now() + Duration::from_secs(10);
            while d.sanitize_blocked() == Some(scst::SenseCode::NOT_READY_SANITIZE_IN_PROGRESS) {
                assert!(Instant::now() < deadline, "a sanitize is still running after 10 s");
                std::thread::sleep(Duration::from_millis(1));
            }
            d.wait_sanitize();
            d.set_sanitize(None);
            d.set_medium_loaded(true);
            d.clear_prevent();
            d.mode.wce.store(d.config().write_cache, Relaxed);
            d.mode.d_sense.store(false, Relaxed);
            d.mode.swp.store(false, Relaxed);
            d.mode.tas.store(false, Relaxed);
            let _ = d.pr_update(|st| {
                *st = scst::pr::PrState::default();
                Ok(())
            });
        }
    }

    /// Sends `model.repaired` over a new connection, half-closes it, reads everything the
    /// target answers until it closes, and checks the answer against the contracts and the
    /// model. Returns the bytes received.
    ///
    /// # Panics
    /// If the target breaks a contract or does not close the connection within 8 s.
    pub fn run(&self, model: &Model) -> Vec<u8> {
        self.reset();
        let threads = thread_count();
        let sock = TcpStream::connect(self.addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(8))).expect("timeout");
        // A stream that fits the socket buffers is written at once; a longer one from a thread,
        // so that neither side blocks writing while the other is not reading.
        let writer = if model.repaired.len() <= 32 << 10 {
            let mut w = &sock;
            let _ = w.write_all(&model.repaired);
            let _ = sock.shutdown(Shutdown::Write);
            None
        } else {
            let mut w = sock.try_clone().expect("clone");
            let bytes = model.repaired.clone();
            Some(std::thread::spawn(move || {
                let _ = w.write_all(&bytes);
                let _ = w.shutdown(Shutdown::Write);
            }))
        };
        let mut got = Vec::new();
        let mut r = &sock;
        let start = Instant::now();
        loop {
            let mut buf = [0u8; 65536];
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    panic!(
                        "the target did not close the connection within {:?} of the initiator's EOF",
                        start.elapsed()
                    )
                }
                Err(_) => break, // reset by the target
            }
        }
        if let Some(w) = writer {
            let _ = w.join();
        }
        drop(sock);
        // The connection's thread ends its session after closing the socket.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.server.session_count() > 0 {
            assert!(Instant::now() < deadline, "the session outlived its connection by 5 s");
            std::thread::sleep(Duration::from_micros(200));
        }
        // And the connection's thread is gone (else LeakSanitizer, which runs between inputs,
        // reports the thread-local state of a thread that is still exiting).
        while thread_count() > threads {
            assert!(
                Instant::now() < deadline,
                "a connection thread outlived its connection by 5 s (threads: {})",
                thread_names().join(", ")
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        check_driver_output(&got, model);
        got
    }
}

/// The names of this process's threads (Linux), sorted.
fn thread_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Threads of this process (Linux).
fn thread_count() -> usize {
    thread_names().len()
}

/// Whether `SCST_FUZZ_TRACE` asks for the PDUs on stderr (to see what an input does).
pub fn trace() -> bool {
    static T: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *T.get_or_init(|| std::env::var_os("SCST_FUZZ_TRACE").is_some())
}

fn trace_pdu<T: AsRef<[u8]>>(dir: &str, b: &Bhs<T>, data_len: usize) {
    eprintln!(
        "{dir} {:?} I{} flags {:#04x} itt {:#x} ttt/edtl {:#x} sn {:#x}/{:#x}/{:#x} off {:#x} dsl {} ({data_len} read) ahs {}",
        b.opcode(),
        u8::from(b.immediate()),
        b.flags(),
        b.itt(),
        b.ttt(),
        b.cmd_sn(),
        b.exp_stat_sn(),
        b.max_cmd_sn(),
        b.buffer_offset(),
        b.data_segment_len(),
        b.total_ahs_len()
    );
}

/// Whether a target PDU consumes a StatSN (RFC 7143 §4.2.2.2), Login Responses included.
fn advances_stat_sn<T: AsRef<[u8]>>(b: &Bhs<T>) -> bool {
    b.consumes_stat_sn() || b.opcode() == Opcode::LOGIN_RESPONSE
}

/// Checks everything the socket driver sent on one connection.
///
/// # Panics
/// If a PDU breaks a contract.
pub fn check_driver_output(got: &[u8], model: &Model) {
    let mut off = 0;
    let mut digests = Digests::default();
    let mut login = true;
    let mut login_responses = 0usize;
    let mut keys: HashMap<String, String> = HashMap::new();
    let mut next_stat_sn: Option<u32> = None;
    let mut exp_cmd_sn: Option<u32> = None;
    let mut max_cmd_sn: Option<u32> = None;
    let mut agrees = false;
    let mut logged_out = false;
    // Per ITT: commands sent, largest EDTL, statuses seen, Data-In bytes since the last status.
    let mut cmds: HashMap<u32, (usize, u32)> = HashMap::new();
    let mut statuses: HashMap<u32, usize> = HashMap::new();
    let mut data_in: HashMap<u32, u64> = HashMap::new();
    let login_pdus: Vec<&FramedPdu> = model.pdus.iter().filter(|p| p.login).collect();
    while off < got.len() {
        let rest = &got[off..];
        assert!(rest.len() >= BHS_LEN, "a truncated BHS at the end of the target's stream");
        let b = Bhs::new_checked(rest).expect("48 bytes");
        let len = b.pdu_len(digests);
        assert!(rest.len() >= len, "a truncated PDU at the end of the target's stream: {b:?}");
        let parts = PduParts::split(&rest[..len], digests).expect("split");
        off += len;
        if trace() {
            trace_pdu("driver <", &b, parts.data.len());
        }
        let op = b.opcode();
        assert!(!op.is_initiator() && op.name().is_some(), "the target sent opcode {op:?}");
        assert_eq!(rest[0] & 0xc0, 0, "reserved bits of byte 0 set: {b:?}");
        assert_eq!(b.total_ahs_len(), 0, "target PDUs carry no AHS: {b:?}");
        assert!(!logged_out, "{b:?} after a successful Logout Response");
        if let Some(d) = parts.header_digest {
            assert!(digest::verify(d, digest::header_digest(&rest[..BHS_LEN], &[])), "header digest of {b:?}");
        }
        assert!(parts.pad.iter().all(|&x| x == 0), "non-zero pad bytes");
        if let Some(d) = parts.data_digest {
            assert!(digest::verify(d, digest::data_digest_with_pad(parts.data, parts.pad)), "data digest of {b:?}");
        }
        // Sequence numbers.
        if advances_stat_sn(&b) {
            if let Some(n) = next_stat_sn {
                assert_eq!(b.stat_sn(), n, "StatSN of {b:?}");
            }
            next_stat_sn = Some(b.stat_sn().wrapping_add(1));
        } else if matches!(op, Opcode::R2T | Opcode::NOP_IN) {
            if let Some(n) = next_stat_sn {
                assert_eq!(b.stat_sn(), n, "StatSN of {b:?} (not advanced)");
            }
        }
        // During login the target echoes the initiator's CmdSN, whatever it is; from the final
        // login response on, the window only moves forward.
        let final_login = login && b.status_class() == 0 && b.transit() && b.nsg() == Stage::FULL_FEATURE;
        if !login || final_login {
            if let Some(e) = exp_cmd_sn {
                assert!(!sn_lt(b.exp_cmd_sn(), e), "ExpCmdSN went back from {e:#x}: {b:?}");
            }
            if let Some(m) = max_cmd_sn {
                assert!(!sn_lt(b.max_cmd_sn(), m), "MaxCmdSN went back from {m:#x}: {b:?}");
            }
            assert!(!sn_lt(b.max_cmd_sn().wrapping_add(1), b.exp_cmd_sn()), "MaxCmdSN < ExpCmdSN - 1: {b:?}");
            exp_cmd_sn = Some(b.exp_cmd_sn());
            max_cmd_sn = Some(b.max_cmd_sn());
        }
        if login {
            assert_eq!(op, Opcode::LOGIN_RESPONSE, "{b:?} during login");
            assert!(parts.data.len() <= LOGIN_MAX_SEND_SEGMENT);
            let req = login_pdus.get(login_responses).expect("a login response without a request");
            login_responses += 1;
            let rb = Bhs::from_array(&req.bhs);
            // conn.rs refuses a request with an AHS, an oversized segment or another opcode
            // before the login machine has seen it: that response echoes nothing.
            let prechecked = rb.opcode() == Opcode::LOGIN_REQUEST
                && rb.total_ahs_len() == 0
                && rb.data_segment_len() <= DRIVER_MAX_TEXT_SEGMENT;
            if prechecked {
                assert_eq!(b.itt(), rb.itt(), "login response ITT");
                assert_eq!(b.isid(), Bhs::from_array(&login_pdus[0].bhs).isid(), "ISID echo");
            }
            if b.status_class() == 0 {
                for (k, v) in TextPairs::new(parts.data).map_while(Result::ok) {
                    keys.insert(k.to_owned(), v.to_owned());
                }
            }
            if final_login {
                login = false;
                assert_ne!(b.tsih(), 0, "TSIH 0 in the final login response");
                digests = Digests {
                    header: keys.get("HeaderDigest").is_some_and(|v| v == "CRC32C"),
                    data: keys.get("DataDigest").is_some_and(|v| v == "CRC32C"),
                };
                agrees = model.login_end == Some(login_responses - 1)
                    && model.outcome.as_ref().is_some_and(|o| o.params.digests() == digests);
                if agrees {
                    for (itt, edtl) in model.commands() {
                        let e = cmds.entry(itt).or_insert((0, 0));
                        e.0 += 1;
                        e.1 = e.1.max(edtl);
                    }
                }
            }
            continue;
        }
        assert_ne!(op, Opcode::LOGIN_RESPONSE, "a Login Response in the full feature phase");
        // The largest MaxRecvDataSegmentLength the initiator declared (login or Text).
        let max_seg = model.max_mrdsl.max(512) as usize;
        if agrees {
            assert!(
                parts.data.len() <= max_seg,
                "{} bytes of data in {b:?} (MaxRecvDataSegmentLength)",
                parts.data.len()
            );
        }
        let itt = b.itt();
        let known = |itt: u32| model.pdus.iter().any(|p| Bhs::from_array(&p.bhs).itt() == itt);
        match op {
            Opcode::REJECT => {
                assert_eq!(itt, RESERVED_TAG, "Reject ITT");
                assert_eq!(parts.data.len(), BHS_LEN, "a Reject carries the rejected header");
                if agrees {
                    assert!(model.pdus.iter().any(|p| p.bhs[..] == parts.data[..]), "a Reject of a header never sent");
                }
            }
            Opcode::ASYNC_MESSAGE => assert_eq!(itt, RESERVED_TAG),
            Opcode::NOP_IN if itt == RESERVED_TAG => assert_ne!(b.ttt(), RESERVED_TAG, "a ping without TTT"),
            _ if agrees => assert!(known(itt), "{b:?}: ITT {itt:#x} was never sent"),
            _ => {}
        }
        if !agrees {
            continue;
        }
        match op {
            Opcode::NOP_IN if itt != RESERVED_TAG => {
                assert_eq!(b.ttt(), RESERVED_TAG, "a NOP-In answer with a TTT");
                let sound = model.pdus.iter().any(|p| {
                    let pb = Bhs::from_array(&p.bhs);
                    pb.opcode() == Opcode::NOP_OUT && pb.itt() == itt && !p.bad_data_digest
                });
                assert!(sound, "a NOP-In answering a NOP-Out whose data digest was wrong (ITT {itt:#x})");
            }
            Opcode::SCSI_RESPONSE | Opcode::DATA_IN => {
                let (n_cmds, edtl) =
                    cmds.get(&itt).copied().unwrap_or_else(|| panic!("{b:?} for a command never sent"));
                if op == Opcode::DATA_IN {
                    assert_eq!(b.ttt(), RESERVED_TAG);
                    let end = u64::from(b.buffer_offset()) + parts.data.len() as u64;
                    assert!(end <= u64::from(edtl), "Data-In up to {end} of a {edtl}-byte command");
                    let d = data_in.entry(itt).or_insert(0);
                    *d += parts.data.len() as u64;
                    assert!(*d <= u64::from(edtl), "{d} bytes of Data-In for a {edtl}-byte command");
                    if b.status_bit() {
                        assert!(b.final_bit(), "S without F");
                    }
                } else if !parts.data.is_empty() {
                    let sl = usize::from(u16::from_be_bytes([parts.data[0], *parts.data.get(1).unwrap_or(&0)]));
                    assert!(parts.data.len() >= 2 && sl + 2 <= parts.data.len(), "SenseLength {sl} of {b:?}");
                }
                if op == Opcode::SCSI_RESPONSE || b.status_bit() {
                    data_in.remove(&itt);
                    let s = statuses.entry(itt).or_insert(0);
                    *s += 1;
                    assert!(*s <= n_cmds, "{s} statuses for {n_cmds} commands with ITT {itt:#x}");
                }
            }
            Opcode::R2T => {
                let (_, edtl) = cmds.get(&itt).copied().unwrap_or_else(|| panic!("R2T for a command never sent"));
                let (o, l) = (u64::from(b.buffer_offset()), u64::from(b.desired_data_transfer_length()));
                assert!(l > 0 && o + l <= u64::from(edtl), "R2T {o}+{l} of a {edtl}-byte command");
                let mb = model.outcome.as_ref().map_or(u32::MAX, |o| o.params.max_burst_length);
                assert!(l <= u64::from(mb), "R2T of {l} bytes, MaxBurstLength {mb}");
                assert_ne!(b.ttt(), RESERVED_TAG, "R2T without TTT");
            }
            Opcode::TEXT_RESPONSE => {
                assert!(!(b.final_bit() && b.continue_bit()));
                assert_eq!(b.final_bit(), b.ttt() == RESERVED_TAG, "Text Response F against TTT");
            }
            Opcode::LOGOUT_RESPONSE => logged_out = b.response() == 0,
            _ => {}
        }
    }
}
