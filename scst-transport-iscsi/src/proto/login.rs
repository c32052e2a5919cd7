//! Target-side login state machine for one connection (RFC 7143 §6, §11.12,
//! §11.13, §12.1.3), sans-IO.
//!
//! # Driving it
//!
//! ```text
//! let mut m = LoginMachine::new(limits, initial_stat_sn);
//! loop {
//!     let (bhs, data) = read_pdu()?;            // data: DataSegmentLength bytes
//!     match m.on_request(&policy, &bhs, data) {
//!         LoginStep::Send(pdu) => send(pdu),     // keep reading
//!         LoginStep::Fail(pdu, status) => { send(pdu); close(); break }
//!         LoginStep::Ready => {
//!             // Allocate the session (TSIH != 0), reinstate an old one with the
//!             // same ISID, etc., using m.pending_outcome().
//!             let (pdu, outcome) = m.complete(tsih)?;   // or m.fail(status)
//!             send(pdu);                         // final response, T=1 NSG=3
//!             enter_full_feature_phase(outcome); break
//!         }
//!     }
//! }
//! ```
//!
//! A PDU that is not a Login Request during login: send `m.fail(
//! LoginStatus::INVALID_DURING_LOGIN)` and close. Login responses never carry
//! digests. The driver enforces the login timeout.
//!
//! # Behaviour
//!
//! * Version: only version 0x00; Version-min above it gets 0x0205.
//! * The first complete (C=0) request must carry InitiatorName, and TargetName
//!   unless SessionType=Discovery (0x0207 otherwise). [`LoginPolicy::resolve`]
//!   then decides: target not found, authorization, TSIH != 0 (adding a
//!   connection; MC/S is unsupported so the policy should answer 0x0206 or
//!   0x020a), redirection.
//! * The response to that request carries TargetAlias (if configured) and, for
//!   normal sessions, TargetPortalGroupTag (RFC 7143 §13.9).
//! * AuthMethod: the policy's [`Auth`] decides: with CHAP configured only
//!   `CHAP` is acceptable, otherwise only `None`; no acceptable method, or an
//!   attempt to leave the security stage without authenticating, fails with
//!   0x0201. CHAP_A 5/6/7 (first supported in the initiator's list), random
//!   CHAP_I and CHAP_C (digest length, at least 16 bytes, sent as lowercase
//!   hex), CHAP_R accepted in hex or base64 and compared in constant time.
//!   Mutual CHAP: an initiator challenge equal to ours (reflection) or a
//!   target without mutual credentials fails with 0x0201.
//! * Stages: the request's CSG must be the current stage; a login may start
//!   in the operational stage when no authentication is required. When the
//!   initiator transits out of the security stage the target always answers
//!   NSG=1 (operational stage, even when NSG=3 was asked) so that it can
//!   declare MaxRecvDataSegmentLength. The target sets T only when the
//!   initiator did.
//! * Keys: unknown keys get `NotUnderstood`, invalid values `Reject`, keys
//!   irrelevant in discovery sessions `Irrelevant`. A key sent twice in one
//!   login, a key in the wrong stage (operational keys in the security stage,
//!   security keys later), a leading key after the first request, a
//!   target-only key (TargetAlias, TargetAddress, TargetPortalGroupTag) or
//!   SendTargets fail with 0x0200 (initiator error).
//! * If a default value is unacceptable to [`TargetLimits`] and the initiator
//!   did not negotiate it, the target offers the key (T=0) before completing.
//! * Text longer than 8192 bytes is split over several responses with the C
//!   bit; incoming C-bit text is reassembled (up to 64 KiB) and each partial
//!   request gets an empty response.

use core::fmt;

use super::OwnedPdu;
use super::bhs::{Bhs, Opcode, Stage};
use super::build::{LoginResponseHeader, TargetSn};
use super::chap::{self, ChapAlgorithm, ChapCredentials};
use super::params::{Answer, KeyClass, Negotiator, SessionParams, SessionType, TargetLimits};
use super::text::{self, MAX_LARGE_BINARY_LEN, TextPairs, reserved};

/// Largest data segment we send during login (the initiator's
/// MaxRecvDataSegmentLength is not in force before the full feature phase,
/// so the RFC default 8192 applies).
pub const LOGIN_MAX_SEND_SEGMENT: usize = 8192;
/// Longest iSCSI name accepted (RFC 7143 §4.2.7.1).
pub const MAX_NAME_LEN: usize = 223;
/// Largest reassembled login text we accept.
pub const LOGIN_MAX_TEXT: usize = 64 * 1024;

/// Login Status-Class and Status-Detail (RFC 7143 §11.13.5), as one u16.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginStatus(pub u16);

impl LoginStatus {
    /// Success.
    pub const SUCCESS: Self = Self(0x0000);
    /// Redirection: target moved temporarily.
    pub const TARGET_MOVED_TEMPORARILY: Self = Self(0x0101);
    /// Redirection: target moved permanently.
    pub const TARGET_MOVED_PERMANENTLY: Self = Self(0x0102);
    /// Miscellaneous initiator error.
    pub const INITIATOR_ERROR: Self = Self(0x0200);
    /// Authentication failure.
    pub const AUTHENTICATION_FAILURE: Self = Self(0x0201);
    /// Authorization failure.
    pub const AUTHORIZATION_FAILURE: Self = Self(0x0202);
    /// Target not found.
    pub const NOT_FOUND: Self = Self(0x0203);
    /// Target removed.
    pub const TARGET_REMOVED: Self = Self(0x0204);
    /// Unsupported version.
    pub const UNSUPPORTED_VERSION: Self = Self(0x0205);
    /// Too many connections.
    pub const TOO_MANY_CONNECTIONS: Self = Self(0x0206);
    /// Missing parameter.
    pub const MISSING_PARAMETER: Self = Self(0x0207);
    /// Can't include in session.
    pub const CANT_INCLUDE_IN_SESSION: Self = Self(0x0208);
    /// Session type not supported.
    pub const SESSION_TYPE_NOT_SUPPORTED: Self = Self(0x0209);
    /// Session does not exist.
    pub const SESSION_DOES_NOT_EXIST: Self = Self(0x020a);
    /// Invalid request during login.
    pub const INVALID_DURING_LOGIN: Self = Self(0x020b);
    /// Target error.
    pub const TARGET_ERROR: Self = Self(0x0300);
    /// Service unavailable.
    pub const SERVICE_UNAVAILABLE: Self = Self(0x0301);
    /// Out of resources.
    pub const OUT_OF_RESOURCES: Self = Self(0x0302);

    /// Status-Class.
    pub const fn class(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// Status-Detail.
    pub const fn detail(self) -> u8 {
        self.0 as u8
    }
    /// Name of a known status.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0000 => "SUCCESS",
            0x0101 => "TARGET_MOVED_TEMPORARILY",
            0x0102 => "TARGET_MOVED_PERMANENTLY",
            0x0200 => "INITIATOR_ERROR",
            0x0201 => "AUTHENTICATION_FAILURE",
            0x0202 => "AUTHORIZATION_FAILURE",
            0x0203 => "NOT_FOUND",
            0x0204 => "TARGET_REMOVED",
            0x0205 => "UNSUPPORTED_VERSION",
            0x0206 => "TOO_MANY_CONNECTIONS",
            0x0207 => "MISSING_PARAMETER",
            0x0208 => "CANT_INCLUDE_IN_SESSION",
            0x0209 => "SESSION_TYPE_NOT_SUPPORTED",
            0x020a => "SESSION_DOES_NOT_EXIST",
            0x020b => "INVALID_DURING_LOGIN",
            0x0300 => "TARGET_ERROR",
            0x0301 => "SERVICE_UNAVAILABLE",
            0x0302 => "OUT_OF_RESOURCES",
            _ => return None,
        })
    }
}

impl fmt::Debug for LoginStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "LoginStatus({:#06x} {n})", self.0),
            None => write!(f, "LoginStatus({:#06x})", self.0),
        }
    }
}

/// The identity presented in the first login request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeadingLogin<'a> {
    /// InitiatorName.
    pub initiator_name: &'a str,
    /// InitiatorAlias, if declared.
    pub initiator_alias: Option<&'a str>,
    /// TargetName (`None` for a discovery session without one).
    pub target_name: Option<&'a str>,
    /// SessionType.
    pub session_type: SessionType,
    /// ISID.
    pub isid: [u8; 6],
    /// TSIH from the request (0 = new session, else add a connection).
    pub tsih: u16,
    /// CID.
    pub cid: u16,
}

/// How the initiator must authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// AuthMethod=None (CHAP is refused).
    #[default]
    None,
    /// CHAP is required.
    Chap {
        /// What the initiator must prove (its CHAP_N and secret).
        initiator: ChapCredentials,
        /// What the target proves if the initiator asks for mutual CHAP.
        /// `None`: mutual CHAP requests fail with 0x0201.
        mutual: Option<ChapCredentials>,
    },
}

/// What the policy resolved for an accepted login.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetConfig {
    /// TargetAlias to declare, if any (normal sessions).
    pub alias: Option<String>,
    /// TargetPortalGroupTag of the portal the connection arrived on.
    pub portal_group_tag: u16,
    /// Authentication requirement.
    pub auth: Auth,
}

/// The policy's decision about a leading login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Go on with the login.
    Accept(TargetConfig),
    /// Redirect to `address` (`host:port[,tpgt]`, sent as TargetAddress) with
    /// status 0x0101 (temporary) or 0x0102 (permanent).
    Redirect {
        /// TargetAddress value.
        address: String,
        /// 0x0102 instead of 0x0101.
        permanent: bool,
    },
    /// Refuse with this status (e.g. 0x0203 not found, 0x0202 authorization
    /// failure, 0x0209 session type not supported, 0x020a/0x0206 for TSIH != 0).
    Deny(LoginStatus),
}

/// Which targets a SendTargets request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendTargetsQuery<'a> {
    /// `SendTargets=All` (discovery sessions).
    All,
    /// `SendTargets=<name>`, or the session's own target for an empty value
    /// in a normal session.
    Target(&'a str),
}

/// One target in a SendTargets answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendTargetsEntry {
    /// TargetName.
    pub target_name: String,
    /// TargetAddress values: `ip:port,tpgt` (IPv6 in brackets).
    pub addresses: Vec<String>,
}

/// Callbacks into the target configuration. Object safe; called with `&self`
/// from the connection's thread.
pub trait LoginPolicy {
    /// Decide about a leading login once its identity keys are known.
    fn resolve(&self, login: &LeadingLogin<'_>) -> Resolution;

    /// Targets to report for SendTargets, already filtered to those
    /// `initiator_name` may log in to. An unknown name yields an empty list.
    fn send_targets(&self, initiator_name: &str, query: SendTargetsQuery<'_>) -> Vec<SendTargetsEntry>;
}

/// Result of feeding one Login Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStep {
    /// Send this response and wait for the next request.
    Send(OwnedPdu),
    /// Send this failure response, then close the connection.
    Fail(OwnedPdu, LoginStatus),
    /// Negotiation succeeded: look at [`LoginMachine::pending_outcome`],
    /// allocate a TSIH, then call [`LoginMachine::complete`] (or
    /// [`LoginMachine::fail`]) to get the final response.
    Ready,
}

/// The result of a successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOutcome {
    /// Negotiated parameters, names, aliases and TPGT.
    pub params: SessionParams,
    /// ISID.
    pub isid: [u8; 6],
    /// TSIH the initiator asked for (0 = new session).
    pub tsih_requested: u16,
    /// TSIH given in the final response (0 until [`LoginMachine::complete`]).
    pub tsih: u16,
    /// CID.
    pub cid: u16,
    /// The initiator's CmdSN during login: the CmdSN expected next.
    pub cmd_sn: u32,
    /// The initiator's ExpStatSN in its last login request.
    pub exp_stat_sn: u32,
    /// StatSN for the first response after login.
    pub stat_sn: u32,
    /// CHAP user name the initiator authenticated as, if CHAP was used.
    pub chap_user: Option<String>,
}

/// Misuse of the [`LoginMachine`] API by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginApiError {
    /// `complete` called while the machine is not [`LoginStep::Ready`].
    #[error("login is not ready to complete")]
    NotReady,
    /// TSIH 0 is reserved.
    #[error("TSIH 0 is reserved")]
    ZeroTsih,
}

#[derive(Clone)]
enum AuthState {
    /// No AuthMethod agreed yet.
    Start,
    /// AuthMethod=None agreed.
    NoAuth,
    /// AuthMethod=CHAP agreed; waiting for CHAP_A.
    WaitAlgorithm,
    /// Challenge sent; waiting for CHAP_N/CHAP_R.
    WaitResponse { alg: ChapAlgorithm, id: u8, challenge: Vec<u8> },
    /// CHAP succeeded.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    Ready,
    Finished,
}

/// Per-connection login state machine. See the module docs.
pub struct LoginMachine {
    neg: Negotiator,
    state: State,
    stage: Stage,
    stat_sn: u32,
    /// ISID/TSIH/CID of the first request.
    ident: Option<([u8; 6], u16, u16)>,
    itt: u32,
    cmd_sn: u32,
    exp_stat_sn: u32,
    leading_done: bool,
    target: Option<TargetConfig>,
    auth: AuthState,
    chap_user: Option<String>,
    /// Keys the initiator sent in this login. A set: with a list, checking a 64 KiB request of
    /// short unique keys against everything sent before cost time quadratic in the keys (0.6 s
    /// of CPU for the fourth such request, found by the fuzzing audit), within one login.
    seen: std::collections::HashSet<String>,
    declared_mrdsl: bool,
    rx: Vec<u8>,
    tx: Vec<u8>,
    tx_pos: usize,
    /// When the pending text is fully sent: transit to this stage.
    tx_transit: Option<Stage>,
    fixed_challenge: Option<(u8, Vec<u8>)>,
}

impl fmt::Debug for LoginMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginMachine")
            .field("state", &self.state)
            .field("stage", &self.stage)
            .field("stat_sn", &self.stat_sn)
            .field("leading_done", &self.leading_done)
            .finish_non_exhaustive()
    }
}

/// Key lookup in one logical text data segment (keys are unique in it).
struct Lookup<'p, 'a>(&'p [(&'a str, &'a str)]);

impl<'a> Lookup<'_, 'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().find(|p| p.0 == key).map(|p| p.1)
    }
}

type Flow<T> = Result<T, (LoginStatus, Option<String>)>;

fn err<T>(s: LoginStatus) -> Flow<T> {
    Err((s, None))
}

impl LoginMachine {
    /// A machine for a new connection. `initial_stat_sn` is the StatSN of the
    /// first Login Response (any value; e.g. random or 0).
    pub fn new(limits: TargetLimits, initial_stat_sn: u32) -> Self {
        Self {
            neg: Negotiator::new(limits),
            state: State::Active,
            stage: Stage::SECURITY,
            stat_sn: initial_stat_sn,
            ident: None,
            itt: 0,
            cmd_sn: 0,
            exp_stat_sn: 0,
            leading_done: false,
            target: None,
            auth: AuthState::Start,
            chap_user: None,
            seen: std::collections::HashSet::new(),
            declared_mrdsl: false,
            rx: Vec::new(),
            tx: Vec::new(),
            tx_pos: 0,
            tx_transit: None,
            fixed_challenge: None,
        }
    }

    /// Test seam: use this CHAP identifier and challenge instead of random
    /// ones (to replay captured exchanges). Never use in production.
    pub fn with_fixed_chap_challenge(mut self, id: u8, challenge: Vec<u8>) -> Self {
        self.fixed_challenge = Some((id, challenge));
        self
    }

    /// The current login stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Feed one Login Request: its BHS and its data segment (exactly
    /// DataSegmentLength bytes, without padding: with C-bit continuation the
    /// segments are concatenated).
    pub fn on_request<T: AsRef<[u8]>>(&mut self, policy: &dyn LoginPolicy, bhs: &Bhs<T>, data: &[u8]) -> LoginStep {
        if self.state != State::Active {
            return self.fail_step(LoginStatus::INITIATOR_ERROR, None);
        }
        if self.ident.is_none() {
            self.ident = Some((bhs.isid(), bhs.tsih(), bhs.cid()));
        }
        self.itt = bhs.itt();
        if bhs.opcode() != Opcode::LOGIN_REQUEST {
            return self.fail_step(LoginStatus::INVALID_DURING_LOGIN, None);
        }
        self.cmd_sn = bhs.cmd_sn();
        self.exp_stat_sn = bhs.exp_stat_sn();
        match self.step(policy, bhs, data) {
            Ok(s) => s,
            Err((status, addr)) => self.fail_step(status, addr),
        }
    }

    fn step<T: AsRef<[u8]>>(&mut self, policy: &dyn LoginPolicy, bhs: &Bhs<T>, data: &[u8]) -> Flow<LoginStep> {
        if bhs.version_min() > 0 {
            return err(LoginStatus::UNSUPPORTED_VERSION);
        }
        if self.ident != Some((bhs.isid(), bhs.tsih(), bhs.cid())) {
            return err(LoginStatus::INITIATOR_ERROR);
        }
        let (transit, cont, csg, nsg) = (bhs.transit(), bhs.continue_bit(), bhs.csg(), bhs.nsg());
        if transit && cont {
            return err(LoginStatus::INITIATOR_ERROR);
        }
        // A login may start in the operational stage (no security stage).
        let first = !self.leading_done && self.rx.is_empty();
        if first && csg == Stage::OPERATIONAL {
            self.stage = Stage::OPERATIONAL;
        }
        if csg != self.stage {
            return err(LoginStatus::INITIATOR_ERROR);
        }
        if transit && !(nsg.0 > csg.0 && nsg != Stage(2)) {
            return err(LoginStatus::INITIATOR_ERROR);
        }

        // Continuation of our own multi-PDU response.
        if !self.tx.is_empty() {
            if !data.iter().all(|&b| b == 0) {
                return err(LoginStatus::INITIATOR_ERROR);
            }
            return Ok(self.emit());
        }

        // Reassemble C-bit text.
        if self.rx.len() + data.len() > LOGIN_MAX_TEXT {
            return err(LoginStatus::OUT_OF_RESOURCES);
        }
        self.rx.extend_from_slice(data);
        if cont {
            return Ok(LoginStep::Send(self.response(false, false, None, Vec::new())));
        }
        let ltds = core::mem::take(&mut self.rx);
        let mut out = Vec::new();
        self.process(policy, &ltds, &mut out)?;

        // Transition decision.
        let mut next = None;
        if transit {
            if self.stage == Stage::SECURITY {
                let authed = match (&self.auth, self.requires_chap()) {
                    (AuthState::Done | AuthState::NoAuth, _) => true,
                    (AuthState::Start, false) => true,
                    (AuthState::Start, true) => return err(LoginStatus::AUTHENTICATION_FAILURE),
                    _ => false,
                };
                if authed {
                    next = Some(Stage::OPERATIONAL);
                }
            } else {
                if !self.neg.offered.is_empty() {
                    // The initiator ignored our offers.
                    return err(LoginStatus::INITIATOR_ERROR);
                }
                if !self.neg.offer_missing(&mut out) {
                    if !self.neg.finish() {
                        return err(LoginStatus::INITIATOR_ERROR);
                    }
                    next = Some(Stage::FULL_FEATURE);
                }
            }
        }
        self.tx = out;
        self.tx_pos = 0;
        self.tx_transit = next;
        Ok(self.emit())
    }

    fn requires_chap(&self) -> bool {
        matches!(self.target, Some(TargetConfig { auth: Auth::Chap { .. }, .. }))
    }

    /// Send the next part of the pending text.
    fn emit(&mut self) -> LoginStep {
        let rest = self.tx.len() - self.tx_pos;
        if rest > LOGIN_MAX_SEND_SEGMENT {
            let chunk = self.tx[self.tx_pos..self.tx_pos + LOGIN_MAX_SEND_SEGMENT].to_vec();
            self.tx_pos += LOGIN_MAX_SEND_SEGMENT;
            return LoginStep::Send(self.response(false, true, None, chunk));
        }
        let chunk = self.tx[self.tx_pos..].to_vec();
        self.tx.clear();
        self.tx_pos = 0;
        match self.tx_transit.take() {
            Some(Stage::FULL_FEATURE) => {
                self.tx = chunk; // kept for complete()
                self.state = State::Ready;
                LoginStep::Ready
            }
            Some(nsg) => {
                let pdu = self.response(true, false, Some(nsg), chunk);
                self.stage = nsg;
                LoginStep::Send(pdu)
            }
            None => LoginStep::Send(self.response(false, false, None, chunk)),
        }
    }

    fn response(&mut self, transit: bool, cont: bool, nsg: Option<Stage>, data: Vec<u8>) -> OwnedPdu {
        let pdu = self.header(transit, cont, nsg, LoginStatus::SUCCESS, None, data);
        self.stat_sn = self.stat_sn.wrapping_add(1);
        pdu
    }

    fn header(
        &self,
        transit: bool,
        cont: bool,
        nsg: Option<Stage>,
        status: LoginStatus,
        tsih: Option<u16>,
        data: Vec<u8>,
    ) -> OwnedPdu {
        let (isid, req_tsih, _) = self.ident.unwrap_or_default();
        let window = self.neg.limits.cmd_window.max(1);
        let mut bhs = [0u8; 48];
        LoginResponseHeader {
            transit,
            continue_bit: cont,
            csg: self.stage,
            nsg: nsg.unwrap_or(Stage(0)),
            version_max: 0,
            version_active: 0,
            data_segment_len: data.len() as u32,
            isid,
            tsih: tsih.unwrap_or(req_tsih),
            itt: self.itt,
            sn: TargetSn {
                stat_sn: self.stat_sn,
                exp_cmd_sn: self.cmd_sn,
                max_cmd_sn: self.cmd_sn.wrapping_add(window - 1),
            },
            status: status.0,
        }
        .write(&mut bhs);
        OwnedPdu { bhs, data }
    }

    fn fail_step(&mut self, status: LoginStatus, redirect: Option<String>) -> LoginStep {
        LoginStep::Fail(self.fail_pdu(status, redirect), status)
    }

    fn fail_pdu(&mut self, status: LoginStatus, redirect: Option<String>) -> OwnedPdu {
        let mut data = Vec::new();
        if let Some(a) = redirect {
            text::push_pair(&mut data, "TargetAddress", &a);
        }
        self.state = State::Finished;
        self.header(false, false, None, status, None, data)
    }

    /// Build a failure response with `status` and end the login (e.g.
    /// [`LoginStatus::INVALID_DURING_LOGIN`] for a non-login PDU, or
    /// [`LoginStatus::OUT_OF_RESOURCES`] when no TSIH can be allocated after
    /// [`LoginStep::Ready`]). Send it, then close the connection.
    pub fn fail(&mut self, status: LoginStatus) -> OwnedPdu {
        self.fail_pdu(status, None)
    }

    /// The outcome as it will be returned by [`complete`](Self::complete)
    /// (with `tsih` still 0), available once [`LoginStep::Ready`] was returned.
    pub fn pending_outcome(&self) -> Option<LoginOutcome> {
        (self.state == State::Ready).then(|| self.outcome(0))
    }

    fn outcome(&self, tsih: u16) -> LoginOutcome {
        let (isid, tsih_requested, cid) = self.ident.unwrap_or_default();
        LoginOutcome {
            params: self.neg.params.clone(),
            isid,
            tsih_requested,
            tsih,
            cid,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            stat_sn: self.stat_sn.wrapping_add(1),
            chap_user: self.chap_user.clone(),
        }
    }

    /// Produce the final Login Response (T=1, CSG=1, NSG=3) carrying `tsih`
    /// (which the driver allocated, non-zero) and the login's outcome.
    pub fn complete(&mut self, tsih: u16) -> Result<(OwnedPdu, LoginOutcome), LoginApiError> {
        if self.state != State::Ready {
            return Err(LoginApiError::NotReady);
        }
        if tsih == 0 {
            return Err(LoginApiError::ZeroTsih);
        }
        let outcome = self.outcome(tsih);
        let data = core::mem::take(&mut self.tx);
        let pdu = self.header(true, false, Some(Stage::FULL_FEATURE), LoginStatus::SUCCESS, Some(tsih), data);
        self.stat_sn = self.stat_sn.wrapping_add(1);
        self.stage = Stage::FULL_FEATURE;
        self.state = State::Finished;
        Ok((pdu, outcome))
    }

    /// Process one complete logical text data segment, appending answers.
    fn process(&mut self, policy: &dyn LoginPolicy, ltds: &[u8], out: &mut Vec<u8>) -> Flow<()> {
        let mut pairs = Vec::new();
        for p in TextPairs::new(ltds) {
            let Ok(p) = p else {
                return err(LoginStatus::INITIATOR_ERROR);
            };
            if !self.seen.insert(p.0.to_owned()) {
                return err(LoginStatus::INITIATOR_ERROR);
            }
            pairs.push(p);
        }
        let get = Lookup(&pairs);

        let first = !self.leading_done;
        if first {
            self.leading(policy, &get, out)?;
        }

        // Check every key against the stage before acting on any.
        let security = self.stage == Stage::SECURITY;
        for &(k, _) in &pairs {
            match super::params::classify(k) {
                KeyClass::Security if !security => return err(LoginStatus::INITIATOR_ERROR),
                KeyClass::Leading if !first => return err(LoginStatus::INITIATOR_ERROR),
                KeyClass::Operational | KeyClass::MaxRecvDataSegmentLength if security => {
                    return err(LoginStatus::INITIATOR_ERROR);
                }
                KeyClass::TargetOnly | KeyClass::SendTargets => {
                    return err(LoginStatus::INITIATOR_ERROR);
                }
                _ => {}
            }
        }
        if security {
            self.security(&get, out)?;
        } else if self.requires_chap() && !matches!(self.auth, AuthState::Done) {
            return err(LoginStatus::AUTHENTICATION_FAILURE);
        } else if !self.declared_mrdsl {
            self.declared_mrdsl = true;
            let v = self.neg.params.target_max_recv_data_segment_length.to_string();
            text::push_pair(out, "MaxRecvDataSegmentLength", &v);
        }

        // MaxBurstLength before FirstBurstLength (the latter is capped by it).
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.sort_by_key(|&i| pairs[i].0 == "FirstBurstLength");
        let mut answers: Vec<(usize, Answer)> = Vec::new();
        for i in order {
            let (k, v) = pairs[i];
            let a = match super::params::classify(k) {
                KeyClass::InitiatorAlias => {
                    self.neg.params.initiator_alias = Some(v.to_owned());
                    continue;
                }
                KeyClass::Operational | KeyClass::MaxRecvDataSegmentLength => match self.neg.take_answer(k, v) {
                    Some(true) => continue,
                    Some(false) => return err(LoginStatus::INITIATOR_ERROR),
                    // Fix (found by the `pdu_stream` fuzz target): an invalid declaration of
                    // MaxRecvDataSegmentLength used to be answered `MaxRecvDataSegmentLength=
                    // Reject`, next to (or after) the target's own declaration of the key: the
                    // key went to the initiator twice in one login, the second time as a
                    // "Reject" it cannot tell from a declaration. A declaration outside
                    // 512..=2^24-1 (RFC 7143 §13.12) is an initiator error.
                    None if super::params::classify(k) == KeyClass::MaxRecvDataSegmentLength => {
                        match self.neg.answer(k, v) {
                            Answer::Silent => continue,
                            Answer::Value(_) => return err(LoginStatus::INITIATOR_ERROR),
                        }
                    }
                    None => self.neg.answer(k, v),
                },
                KeyClass::Unknown => Answer::Value(reserved::NOT_UNDERSTOOD.into()),
                _ => continue,
            };
            answers.push((i, a));
        }
        answers.sort_by_key(|a| a.0);
        for (i, a) in answers {
            if let Answer::Value(v) = a {
                text::push_pair(out, pairs[i].0, &v);
            }
        }
        Ok(())
    }

    fn leading(&mut self, policy: &dyn LoginPolicy, get: &Lookup<'_, '_>, out: &mut Vec<u8>) -> Flow<()> {
        self.leading_done = true;
        let Some(initiator) = get.get("InitiatorName").filter(|n| !n.is_empty()) else {
            return err(LoginStatus::MISSING_PARAMETER);
        };
        let session_type = match get.get("SessionType") {
            None => SessionType::Normal,
            Some(v) => SessionType::parse(v).ok_or((LoginStatus::SESSION_TYPE_NOT_SUPPORTED, None))?,
        };
        let target_name = get.get("TargetName").filter(|n| !n.is_empty());
        if session_type == SessionType::Normal && target_name.is_none() {
            return err(LoginStatus::MISSING_PARAMETER);
        }
        let alias = get.get("InitiatorAlias");
        // iSCSI names are at most 223 bytes (RFC 7143 §4.2.7.1); aliases are
        // simple values (255 bytes).
        if initiator.len() > MAX_NAME_LEN
            || target_name.is_some_and(|t| t.len() > MAX_NAME_LEN)
            || alias.is_some_and(|a| a.len() > text::MAX_SIMPLE_VALUE_LEN)
        {
            return err(LoginStatus::INITIATOR_ERROR);
        }
        let (isid, tsih, cid) = self.ident.unwrap_or_default();
        let login = LeadingLogin {
            initiator_name: initiator,
            initiator_alias: alias,
            target_name,
            session_type,
            isid,
            tsih,
            cid,
        };
        let cfg = match policy.resolve(&login) {
            Resolution::Accept(cfg) => cfg,
            Resolution::Redirect { address, permanent } => {
                let s = if permanent {
                    LoginStatus::TARGET_MOVED_PERMANENTLY
                } else {
                    LoginStatus::TARGET_MOVED_TEMPORARILY
                };
                return Err((s, Some(address)));
            }
            Resolution::Deny(s) => return err(s),
        };
        let p = &mut self.neg.params;
        p.session_type = session_type;
        p.initiator_name = initiator.to_owned();
        p.initiator_alias = alias.map(str::to_owned);
        p.target_portal_group_tag = cfg.portal_group_tag;
        if session_type == SessionType::Normal {
            p.target_name = target_name.map(str::to_owned);
            p.target_alias.clone_from(&cfg.alias);
            if let Some(a) = &cfg.alias {
                text::push_pair(out, "TargetAlias", a);
            }
            text::push_pair(out, "TargetPortalGroupTag", &cfg.portal_group_tag.to_string());
        }
        self.target = Some(cfg);
        Ok(())
    }

    fn security(&mut self, get: &Lookup<'_, '_>, out: &mut Vec<u8>) -> Flow<()> {
        let fail = || err(LoginStatus::AUTHENTICATION_FAILURE);
        let (initiator_creds, mutual_creds) = match self.target.as_ref().map(|t| &t.auth) {
            Some(Auth::Chap { initiator, mutual }) => (Some(initiator.clone()), mutual.clone()),
            _ => (None, None),
        };
        let chap_keys = ["CHAP_A", "CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"];

        if let Some(methods) = get.get("AuthMethod") {
            if !matches!(self.auth, AuthState::Start) {
                return err(LoginStatus::INITIATOR_ERROR);
            }
            let want = if initiator_creds.is_some() { "CHAP" } else { reserved::NONE };
            if !methods.split(',').any(|m| m == want) {
                return fail();
            }
            text::push_pair(out, "AuthMethod", want);
            self.auth = if want == "CHAP" { AuthState::WaitAlgorithm } else { AuthState::NoAuth };
        }

        if let Some(algs) = get.get("CHAP_A") {
            if !matches!(self.auth, AuthState::WaitAlgorithm) {
                return fail();
            }
            let Some(alg) = algs
                .split(',')
                .filter_map(|a| text::parse_number(a).and_then(|n| u8::try_from(n).ok()))
                .map(ChapAlgorithm)
                .find(|a| a.digest_len().is_some())
            else {
                return fail();
            };
            let (id, challenge) = match &self.fixed_challenge {
                Some((id, c)) => (*id, c.clone()),
                None => {
                    let mut buf = vec![0u8; alg.challenge_len() + 1];
                    if chap::fill_random(&mut buf).is_err() {
                        return err(LoginStatus::TARGET_ERROR);
                    }
                    let id = buf.pop().unwrap_or(0);
                    (id, buf)
                }
            };
            text::push_pair(out, "CHAP_A", &alg.0.to_string());
            text::push_pair(out, "CHAP_I", &id.to_string());
            text::push_pair(out, "CHAP_C", &text::encode_hex(&challenge));
            self.auth = AuthState::WaitResponse { alg, id, challenge };
            if chap_keys[1..].iter().any(|k| get.get(k).is_some()) {
                return fail();
            }
            return Ok(());
        }

        let (n, r) = (get.get("CHAP_N"), get.get("CHAP_R"));
        if n.is_none() && r.is_none() {
            if get.get("CHAP_I").is_some() || get.get("CHAP_C").is_some() {
                return fail();
            }
            return Ok(());
        }
        let AuthState::WaitResponse { alg, id, challenge } = &self.auth else {
            return fail();
        };
        let (Some(n), Some(r), Some(creds)) = (n, r, initiator_creds.as_ref()) else {
            return fail();
        };
        let Some(expected) = alg.response(*id, &creds.secret, challenge) else {
            return fail();
        };
        let got = text::decode_binary(r, MAX_LARGE_BINARY_LEN).unwrap_or_default();
        // Evaluate both checks before branching.
        let name_ok = chap::constant_time_eq(n.as_bytes(), creds.user.as_bytes());
        let resp_ok = chap::constant_time_eq(&got, &expected);
        if !(name_ok & resp_ok) {
            return fail();
        }
        // Mutual CHAP.
        match (get.get("CHAP_I"), get.get("CHAP_C")) {
            (None, None) => {}
            (Some(i), Some(c)) => {
                let Some(mutual) = mutual_creds else {
                    return fail();
                };
                let Some(mid) = text::parse_number(i).and_then(|v| u8::try_from(v).ok()) else {
                    return fail();
                };
                let Some(mc) = text::decode_binary(c, MAX_LARGE_BINARY_LEN) else {
                    return fail();
                };
                if chap::constant_time_eq(&mc, challenge) {
                    return fail(); // reflection
                }
                let Some(resp) = alg.response(mid, &mutual.secret, &mc) else {
                    return fail();
                };
                text::push_pair(out, "CHAP_N", &mutual.user);
                text::push_pair(out, "CHAP_R", &text::encode_hex(&resp));
            }
            _ => return fail(),
        }
        self.chap_user = Some(n.to_owned());
        self.auth = AuthState::Done;
        Ok(())
    }
}
