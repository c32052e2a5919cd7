//! Negotiated session and connection parameters (RFC 7143 §13), the target's
//! limits, and the per-key negotiation rules used by the login and text
//! state machines.
//!
//! Multiple connections per session (MC/S) are not supported: we always answer
//! `MaxConnections=1`, so the connection-scoped keys (digests,
//! MaxRecvDataSegmentLength) live in the same [`SessionParams`] struct.
//! Only `ErrorRecoveryLevel=0` is supported.

use std::borrow::Cow;

use super::bhs::{Digests, MAX_DATA_SEGMENT_LEN};
use super::text::{self, MAX_SIMPLE_VALUE_LEN, bool_str, parse_bool, parse_number, reserved};

/// SessionType key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionType {
    /// `SessionType=Normal` (the default).
    #[default]
    Normal,
    /// `SessionType=Discovery`.
    Discovery,
}

impl SessionType {
    /// Parse the key value.
    pub fn parse(v: &str) -> Option<Self> {
        match v {
            "Normal" => Some(Self::Normal),
            "Discovery" => Some(Self::Discovery),
            _ => None,
        }
    }
}

/// Everything negotiated or declared for a session (and its one connection).
/// `Default` gives the RFC 7143 defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    /// SessionType.
    pub session_type: SessionType,
    /// InitiatorName.
    pub initiator_name: String,
    /// InitiatorAlias, if declared.
    pub initiator_alias: Option<String>,
    /// TargetName (`None` for discovery sessions).
    pub target_name: Option<String>,
    /// TargetAlias we declared, if any.
    pub target_alias: Option<String>,
    /// TargetPortalGroupTag of the portal the session logged in through.
    pub target_portal_group_tag: u16,
    /// HeaderDigest=CRC32C (connection scope).
    pub header_digest: bool,
    /// DataDigest=CRC32C (connection scope).
    pub data_digest: bool,
    /// MaxConnections (always 1: MC/S unsupported).
    pub max_connections: u16,
    /// InitialR2T.
    pub initial_r2t: bool,
    /// ImmediateData.
    pub immediate_data: bool,
    /// MaxRecvDataSegmentLength declared by the initiator: the largest data
    /// segment the target may send (connection scope, default 8192).
    pub initiator_max_recv_data_segment_length: u32,
    /// MaxRecvDataSegmentLength declared by the target: the largest data
    /// segment the target accepts (connection scope, default 8192).
    pub target_max_recv_data_segment_length: u32,
    /// MaxBurstLength.
    pub max_burst_length: u32,
    /// FirstBurstLength (never above `max_burst_length`).
    pub first_burst_length: u32,
    /// DefaultTime2Wait (seconds).
    pub default_time2wait: u16,
    /// DefaultTime2Retain (seconds).
    pub default_time2retain: u16,
    /// MaxOutstandingR2T.
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder.
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder.
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel (always 0).
    pub error_recovery_level: u8,
}

impl Default for SessionParams {
    fn default() -> Self {
        Self {
            session_type: SessionType::Normal,
            initiator_name: String::new(),
            initiator_alias: None,
            target_name: None,
            target_alias: None,
            target_portal_group_tag: 1,
            header_digest: false,
            data_digest: false,
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            initiator_max_recv_data_segment_length: 8192,
            target_max_recv_data_segment_length: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
        }
    }
}

impl SessionParams {
    /// The digests in force in the full feature phase.
    pub fn digests(&self) -> Digests {
        Digests { header: self.header_digest, data: self.data_digest }
    }

    /// The operational keys in force, by their RFC 7143 names, as a management tool shows them
    /// (the target's MaxRecvDataSegmentLength as `TargetMaxRecvDataSegmentLength`).
    pub fn operational_keys(&self) -> Vec<(String, String)> {
        let yn = |b: bool| if b { "Yes" } else { "No" }.to_string();
        let digest = |b: bool| if b { "CRC32C" } else { "None" }.to_string();
        [
            ("HeaderDigest", digest(self.header_digest)),
            ("DataDigest", digest(self.data_digest)),
            ("MaxConnections", self.max_connections.to_string()),
            ("InitialR2T", yn(self.initial_r2t)),
            ("ImmediateData", yn(self.immediate_data)),
            ("MaxRecvDataSegmentLength", self.initiator_max_recv_data_segment_length.to_string()),
            ("TargetMaxRecvDataSegmentLength", self.target_max_recv_data_segment_length.to_string()),
            ("MaxBurstLength", self.max_burst_length.to_string()),
            ("FirstBurstLength", self.first_burst_length.to_string()),
            ("DefaultTime2Wait", self.default_time2wait.to_string()),
            ("DefaultTime2Retain", self.default_time2retain.to_string()),
            ("MaxOutstandingR2T", self.max_outstanding_r2t.to_string()),
            ("DataPDUInOrder", yn(self.data_pdu_in_order)),
            ("DataSequenceInOrder", yn(self.data_sequence_in_order)),
            ("ErrorRecoveryLevel", self.error_recovery_level.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Whether a digest (header or data) may or must be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DigestPolicy {
    /// Only `None`.
    Forbid,
    /// `None` or `CRC32C`, whichever the initiator lists first.
    #[default]
    Allow,
    /// Only `CRC32C` (the target offers it if the initiator does not).
    Require,
}

impl DigestPolicy {
    fn accepts(self, crc: bool) -> bool {
        match self {
            Self::Forbid => !crc,
            Self::Allow => true,
            Self::Require => crc,
        }
    }
}

/// The target's limits and preferences for negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLimits {
    /// MaxRecvDataSegmentLength we declare (512..=16777215; default 256 KiB).
    pub max_recv_data_segment_length: u32,
    /// Largest MaxBurstLength we accept (default 1 MiB).
    pub max_burst_length: u32,
    /// Largest FirstBurstLength we accept (default 256 KiB).
    pub first_burst_length: u32,
    /// HeaderDigest policy.
    pub header_digest: DigestPolicy,
    /// DataDigest policy.
    pub data_digest: DigestPolicy,
    /// Our ImmediateData value (AND function; default Yes).
    pub immediate_data: bool,
    /// Our InitialR2T value (OR function; default No).
    pub initial_r2t: bool,
    /// Largest MaxOutstandingR2T we accept (default 32).
    pub max_outstanding_r2t: u16,
    /// Our DataPDUInOrder value (OR function; default Yes: we require order).
    pub data_pdu_in_order: bool,
    /// Our DataSequenceInOrder value (OR function; default Yes).
    pub data_sequence_in_order: bool,
    /// Command window advertised during login: MaxCmdSN = ExpCmdSN + window - 1
    /// (default 64; the driver should keep advertising the same window).
    pub cmd_window: u32,
}

impl Default for TargetLimits {
    fn default() -> Self {
        Self {
            max_recv_data_segment_length: 256 * 1024,
            max_burst_length: 1024 * 1024,
            first_burst_length: 256 * 1024,
            header_digest: DigestPolicy::Allow,
            data_digest: DigestPolicy::Allow,
            immediate_data: true,
            initial_r2t: false,
            max_outstanding_r2t: 32,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            cmd_window: 64,
        }
    }
}

/// How a key may be used (RFC 7143 §13 "Use" and "Senders").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyClass {
    /// AuthMethod and CHAP_*: SecurityNegotiation stage only.
    Security,
    /// InitiatorName, TargetName, SessionType: declared once, first request.
    Leading,
    /// InitiatorAlias: declarative, any stage, also in FFP.
    InitiatorAlias,
    /// Operational keys: LoginOperationalNegotiation stage.
    Operational,
    /// MaxRecvDataSegmentLength: declarative, login and FFP.
    MaxRecvDataSegmentLength,
    /// TargetAlias, TargetAddress, TargetPortalGroupTag: sent by targets only.
    TargetOnly,
    /// SendTargets: full feature phase only.
    SendTargets,
    /// Not a key we know.
    Unknown,
}

pub(crate) fn classify(key: &str) -> KeyClass {
    match key {
        "AuthMethod" | "CHAP_A" | "CHAP_I" | "CHAP_C" | "CHAP_N" | "CHAP_R" => KeyClass::Security,
        "InitiatorName" | "TargetName" | "SessionType" => KeyClass::Leading,
        "InitiatorAlias" => KeyClass::InitiatorAlias,
        "MaxRecvDataSegmentLength" => KeyClass::MaxRecvDataSegmentLength,
        "TargetAlias" | "TargetAddress" | "TargetPortalGroupTag" => KeyClass::TargetOnly,
        "SendTargets" => KeyClass::SendTargets,
        "HeaderDigest"
        | "DataDigest"
        | "MaxConnections"
        | "InitialR2T"
        | "ImmediateData"
        | "MaxBurstLength"
        | "FirstBurstLength"
        | "DefaultTime2Wait"
        | "DefaultTime2Retain"
        | "MaxOutstandingR2T"
        | "DataPDUInOrder"
        | "DataSequenceInOrder"
        | "ErrorRecoveryLevel"
        | "TaskReporting"
        | "iSCSIProtocolLevel"
        | "IFMarker"
        | "OFMarker"
        | "IFMarkInt"
        | "OFMarkInt"
        | "RDMAExtensions" => KeyClass::Operational,
        _ => KeyClass::Unknown,
    }
}

/// Keys that are Irrelevant when SessionType=Discovery (RFC 7143 §13).
fn irrelevant_in_discovery(key: &str) -> bool {
    matches!(
        key,
        "MaxConnections"
            | "InitialR2T"
            | "ImmediateData"
            | "MaxBurstLength"
            | "FirstBurstLength"
            | "MaxOutstandingR2T"
            | "DataPDUInOrder"
            | "DataSequenceInOrder"
            | "TaskReporting"
    )
}

/// What to answer for one key offered by the initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Send `key=<value>`.
    Value(Cow<'static, str>),
    /// Declarative key: nothing to send.
    Silent,
}

impl Answer {
    const fn lit(s: &'static str) -> Self {
        Self::Value(Cow::Borrowed(s))
    }
    fn num(n: impl Into<u64>) -> Self {
        Self::Value(Cow::Owned(n.into().to_string()))
    }
}

fn in_range(v: &str, lo: u64, hi: u64) -> Option<u64> {
    parse_number(v).filter(|n| (lo..=hi).contains(n))
}

const MAX_LEN_24: u64 = MAX_DATA_SEGMENT_LEN as u64;

/// The operational negotiation state of one login (or of the full feature
/// phase): parameters plus which keys the target offered and awaits answers for.
#[derive(Debug, Clone)]
pub(crate) struct Negotiator {
    pub(crate) params: SessionParams,
    pub(crate) limits: TargetLimits,
    /// Keys the target offered (with the offered value) awaiting the initiator's answer.
    pub(crate) offered: Vec<(&'static str, u64)>,
    /// Keys negotiated so far (so the defaults check knows what is still default).
    negotiated: Vec<&'static str>,
}

impl Negotiator {
    pub(crate) fn new(limits: TargetLimits) -> Self {
        let params = SessionParams {
            target_max_recv_data_segment_length: limits.max_recv_data_segment_length.clamp(512, MAX_DATA_SEGMENT_LEN),
            ..SessionParams::default()
        };
        Self { params, limits, offered: Vec::new(), negotiated: Vec::new() }
    }

    fn mark(&mut self, key: &'static str) {
        if !self.negotiated.contains(&key) {
            self.negotiated.push(key);
        }
    }

    /// Answer an operational key (class `Operational` or
    /// `MaxRecvDataSegmentLength`) offered by the initiator during login.
    /// Callers answer MaxBurstLength before FirstBurstLength so that the
    /// latter can be capped by the former.
    pub(crate) fn answer(&mut self, key: &str, value: &str) -> Answer {
        let a = self.answer_value(key, value);
        // Fix (found by the `pdu_stream` fuzz target): a key the target may have to offer
        // itself (`offer_missing`) and answered with Reject was offered anyway, in the same
        // response: `HeaderDigest=Reject` then `HeaderDigest=CRC32C`, one key twice in one
        // text (RFC 7143 §6.2 forbids negotiating a key twice). A rejected key now counts as
        // negotiated: it keeps its value, and `finish` fails the login if that value is
        // unacceptable.
        if a == Answer::lit(reserved::REJECT) {
            let offerable = ["HeaderDigest", "DataDigest", "ImmediateData", "MaxBurstLength", "FirstBurstLength"];
            if let Some(k) = offerable.iter().find(|k| **k == key) {
                self.mark(k);
            }
        }
        a
    }

    fn answer_value(&mut self, key: &str, value: &str) -> Answer {
        let discovery = self.params.session_type == SessionType::Discovery;
        if discovery && irrelevant_in_discovery(key) {
            return Answer::lit(reserved::IRRELEVANT);
        }
        // RFC 7143 §6.1: simple values (and list elements) are at most 255 bytes.
        if value.split(',').any(|v| v.len() > MAX_SIMPLE_VALUE_LEN) {
            return Answer::lit(reserved::REJECT);
        }
        let reject = Answer::lit(reserved::REJECT);
        let l = &self.limits;
        match key {
            "HeaderDigest" | "DataDigest" => {
                let (policy, hd) = if key == "HeaderDigest" { (l.header_digest, true) } else { (l.data_digest, false) };
                let pick = value.split(',').find_map(|v| match v {
                    "None" if policy.accepts(false) => Some(false),
                    "CRC32C" if policy.accepts(true) => Some(true),
                    _ => None,
                });
                let Some(crc) = pick else { return reject };
                if hd {
                    self.params.header_digest = crc;
                    self.mark("HeaderDigest");
                } else {
                    self.params.data_digest = crc;
                    self.mark("DataDigest");
                }
                Answer::lit(if crc { "CRC32C" } else { reserved::NONE })
            }
            "MaxConnections" => {
                let Some(_) = in_range(value, 1, 65535) else {
                    return reject;
                };
                self.params.max_connections = 1;
                Answer::lit("1")
            }
            "InitialR2T" | "DataPDUInOrder" | "DataSequenceInOrder" => {
                // Result function OR.
                let Some(v) = parse_bool(value) else {
                    return reject;
                };
                let (ours, slot, name) = match key {
                    "InitialR2T" => (l.initial_r2t, &mut self.params.initial_r2t, "InitialR2T"),
                    "DataPDUInOrder" => (l.data_pdu_in_order, &mut self.params.data_pdu_in_order, "DataPDUInOrder"),
                    _ => (l.data_sequence_in_order, &mut self.params.data_sequence_in_order, "DataSequenceInOrder"),
                };
                *slot = v || ours;
                let r = *slot;
                self.mark(name);
                Answer::lit(bool_str(r))
            }
            "ImmediateData" | "RDMAExtensions" => {
                // Result function AND. We never do RDMA.
                let Some(v) = parse_bool(value) else {
                    return reject;
                };
                if key == "RDMAExtensions" {
                    return Answer::lit("No");
                }
                self.params.immediate_data = v && l.immediate_data;
                self.mark("ImmediateData");
                Answer::lit(bool_str(self.params.immediate_data))
            }
            "MaxRecvDataSegmentLength" => {
                let Some(v) = in_range(value, 512, MAX_LEN_24) else {
                    return reject;
                };
                self.params.initiator_max_recv_data_segment_length = v as u32;
                Answer::Silent
            }
            "MaxBurstLength" => {
                let Some(v) = in_range(value, 512, MAX_LEN_24) else {
                    return reject;
                };
                let r = v.min(u64::from(l.max_burst_length.max(512)));
                self.params.max_burst_length = r as u32;
                self.mark("MaxBurstLength");
                Answer::num(r)
            }
            "FirstBurstLength" => {
                if self.params.initial_r2t && !self.params.immediate_data {
                    return Answer::lit(reserved::IRRELEVANT);
                }
                let Some(v) = in_range(value, 512, MAX_LEN_24) else {
                    return reject;
                };
                let cap = l.first_burst_length.max(512).min(self.params.max_burst_length);
                let r = v.min(u64::from(cap));
                self.params.first_burst_length = r as u32;
                self.mark("FirstBurstLength");
                Answer::num(r)
            }
            "DefaultTime2Wait" => {
                // Result function Maximum: the offered value is acceptable.
                let Some(v) = in_range(value, 0, 3600) else {
                    return reject;
                };
                self.params.default_time2wait = v as u16;
                Answer::num(v)
            }
            "DefaultTime2Retain" => {
                // Result function Minimum. With ErrorRecoveryLevel 0 nothing is
                // retained for connection recovery, so answer 0.
                let Some(_) = in_range(value, 0, 3600) else {
                    return reject;
                };
                self.params.default_time2retain = 0;
                Answer::lit("0")
            }
            "MaxOutstandingR2T" => {
                let Some(v) = in_range(value, 1, 65535) else {
                    return reject;
                };
                let r = v.min(u64::from(l.max_outstanding_r2t.max(1)));
                self.params.max_outstanding_r2t = r as u16;
                self.mark("MaxOutstandingR2T");
                Answer::num(r)
            }
            "ErrorRecoveryLevel" => {
                let Some(_) = in_range(value, 0, 2) else {
                    return reject;
                };
                self.params.error_recovery_level = 0;
                Answer::lit("0")
            }
            "TaskReporting" => {
                if value.split(',').any(|v| v == "RFC3720") {
                    Answer::lit("RFC3720")
                } else {
                    reject
                }
            }
            "iSCSIProtocolLevel" => {
                // RFC 7143 defines level 1; result function Minimum.
                let Some(v) = in_range(value, 0, 31) else {
                    return reject;
                };
                Answer::num(v.min(1))
            }
            // RFC 7143 §13.25: obsoleted marker keys. For IFMarker/OFMarker a
            // responder SHOULD answer Reject and MAY answer No; we answer No,
            // which RFC 3720 initiators also accept. *MarkInt MUST get Reject.
            "IFMarker" | "OFMarker" => match parse_bool(value) {
                Some(_) => Answer::lit("No"),
                None => reject,
            },
            "IFMarkInt" | "OFMarkInt" => reject,
            _ => Answer::lit(reserved::NOT_UNDERSTOOD),
        }
    }

    /// Whether the initiator's text for `key` is an answer to a key the
    /// target offered; if so, validate and apply it. Returns `None` when the
    /// key was not offered by us, `Some(true)` when the answer is acceptable,
    /// `Some(false)` for a protocol violation.
    pub(crate) fn take_answer(&mut self, key: &str, value: &str) -> Option<bool> {
        let idx = self.offered.iter().position(|(k, _)| *k == key)?;
        let (k, offer) = self.offered.swap_remove(idx);
        let ok = match k {
            "HeaderDigest" | "DataDigest" => {
                let crc = value == "CRC32C";
                if k == "HeaderDigest" {
                    self.params.header_digest = crc;
                } else {
                    self.params.data_digest = crc;
                }
                crc || value == reserved::NONE || value == reserved::REJECT
            }
            "ImmediateData" => match parse_bool(value) {
                Some(v) => {
                    self.params.immediate_data = v && self.limits.immediate_data;
                    !v || self.limits.immediate_data
                }
                None => false,
            },
            _ => match parse_number(value) {
                // Result function Minimum: the answer must not exceed our offer.
                Some(v) if v <= offer && v >= 512 => {
                    if k == "MaxBurstLength" {
                        self.params.max_burst_length = v as u32;
                    } else {
                        self.params.first_burst_length = v as u32;
                    }
                    true
                }
                _ => false,
            },
        };
        self.mark(k);
        Some(ok)
    }

    /// Keys whose current (default) value is not acceptable to us and that
    /// the target must therefore offer before leaving the operational stage.
    /// Records them as offered and appends `key=value` pairs to `out`.
    pub(crate) fn offer_missing(&mut self, out: &mut Vec<u8>) -> bool {
        let mut any = false;
        let mut offer = |me: &mut Self, key: &'static str, value: String, num: u64| {
            if !me.negotiated.contains(&key) && !me.offered.iter().any(|(k, _)| *k == key) {
                text::push_pair(out, key, &value);
                me.offered.push((key, num));
                any = true;
            }
        };
        let l = self.limits.clone();
        if l.header_digest == DigestPolicy::Require && !self.params.header_digest {
            offer(self, "HeaderDigest", "CRC32C".into(), 0);
        }
        if l.data_digest == DigestPolicy::Require && !self.params.data_digest {
            offer(self, "DataDigest", "CRC32C".into(), 0);
        }
        if self.params.session_type == SessionType::Normal {
            if !l.immediate_data && self.params.immediate_data {
                offer(self, "ImmediateData", "No".into(), 0);
            }
            let mb = l.max_burst_length.max(512);
            if self.params.max_burst_length > mb {
                offer(self, "MaxBurstLength", mb.to_string(), mb.into());
            }
            let fb = l.first_burst_length.max(512).min(mb);
            let fb_relevant = !self.params.initial_r2t || self.params.immediate_data;
            if fb_relevant && self.params.first_burst_length > fb {
                offer(self, "FirstBurstLength", fb.to_string(), fb.into());
            }
        }
        any
    }

    /// Final consistency fix-ups before the full feature phase; returns false
    /// if the parameters still violate our policy.
    pub(crate) fn finish(&mut self) -> bool {
        let p = &mut self.params;
        p.first_burst_length = p.first_burst_length.min(p.max_burst_length);
        let l = &self.limits;
        l.header_digest.accepts(p.header_digest)
            && l.data_digest.accepts(p.data_digest)
            && (p.session_type == SessionType::Discovery
                || (p.max_burst_length <= l.max_burst_length.max(512)
                    && (p.first_burst_length <= l.first_burst_length.max(512) || (p.initial_r2t && !p.immediate_data))
                    && (l.immediate_data || !p.immediate_data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ans(n: &mut Negotiator, k: &str, v: &str) -> String {
        match n.answer(k, v) {
            Answer::Value(s) => s.into_owned(),
            Answer::Silent => "<silent>".into(),
        }
    }

    #[test]
    fn defaults_are_rfc() {
        let p = SessionParams::default();
        assert_eq!(p.max_burst_length, 262_144);
        assert_eq!(p.first_burst_length, 65_536);
        assert!(p.initial_r2t && p.immediate_data);
        assert_eq!(p.default_time2retain, 20);
        assert_eq!(p.initiator_max_recv_data_segment_length, 8192);
    }

    #[test]
    fn result_functions() {
        let mut n = Negotiator::new(TargetLimits::default());
        assert_eq!(ans(&mut n, "HeaderDigest", "None,CRC32C"), "None");
        assert_eq!(ans(&mut n, "DataDigest", "CRC32C,None"), "CRC32C");
        assert!(n.params.data_digest && !n.params.header_digest);
        assert_eq!(ans(&mut n, "InitialR2T", "No"), "No");
        assert_eq!(ans(&mut n, "InitialR2T", "Yes"), "Yes");
        assert_eq!(ans(&mut n, "ImmediateData", "Yes"), "Yes");
        assert_eq!(ans(&mut n, "MaxBurstLength", "16776192"), "1048576");
        assert_eq!(ans(&mut n, "FirstBurstLength", "16776192"), "262144");
        assert_eq!(ans(&mut n, "MaxOutstandingR2T", "100"), "32");
        assert_eq!(ans(&mut n, "MaxConnections", "8"), "1");
        assert_eq!(ans(&mut n, "ErrorRecoveryLevel", "2"), "0");
        assert_eq!(ans(&mut n, "DefaultTime2Wait", "5"), "5");
        assert_eq!(ans(&mut n, "DefaultTime2Retain", "20"), "0");
        assert_eq!(ans(&mut n, "MaxRecvDataSegmentLength", "0x10000"), "<silent>");
        assert_eq!(n.params.initiator_max_recv_data_segment_length, 65536);
        assert_eq!(ans(&mut n, "IFMarker", "No"), "No");
        assert_eq!(ans(&mut n, "OFMarkInt", "2048~8192"), "Reject");
        assert_eq!(ans(&mut n, "TaskReporting", "FastAbort,RFC3720"), "RFC3720");
        assert_eq!(ans(&mut n, "iSCSIProtocolLevel", "2"), "1");
        assert_eq!(ans(&mut n, "RDMAExtensions", "Yes"), "No");
    }

    #[test]
    fn rejects_bad_values() {
        let mut n = Negotiator::new(TargetLimits::default());
        assert_eq!(ans(&mut n, "MaxBurstLength", "511"), "Reject");
        assert_eq!(ans(&mut n, "MaxBurstLength", "16777216"), "Reject");
        assert_eq!(ans(&mut n, "MaxRecvDataSegmentLength", "100"), "Reject");
        assert_eq!(ans(&mut n, "InitialR2T", "yes"), "Reject");
        assert_eq!(ans(&mut n, "DefaultTime2Wait", "3601"), "Reject");
        assert_eq!(ans(&mut n, "HeaderDigest", "MD5"), "Reject");
        assert_eq!(ans(&mut n, "ErrorRecoveryLevel", "3"), "Reject");
        assert_eq!(ans(&mut n, "MaxConnections", "0"), "Reject");
        assert_eq!(ans(&mut n, "X-com.example.Foo", "1"), "NotUnderstood");
        assert_eq!(n.params, Negotiator::new(TargetLimits::default()).params);
    }

    #[test]
    fn first_burst_is_capped_and_irrelevant() {
        let mut n = Negotiator::new(TargetLimits::default());
        assert_eq!(ans(&mut n, "MaxBurstLength", "65536"), "65536");
        assert_eq!(ans(&mut n, "FirstBurstLength", "262144"), "65536");
        let mut n = Negotiator::new(TargetLimits { immediate_data: false, initial_r2t: true, ..Default::default() });
        assert_eq!(ans(&mut n, "ImmediateData", "Yes"), "No");
        assert_eq!(ans(&mut n, "InitialR2T", "No"), "Yes");
        assert_eq!(ans(&mut n, "FirstBurstLength", "65536"), "Irrelevant");
    }

    #[test]
    fn discovery_irrelevant() {
        let mut n = Negotiator::new(TargetLimits::default());
        n.params.session_type = SessionType::Discovery;
        assert_eq!(ans(&mut n, "MaxBurstLength", "262144"), "Irrelevant");
        assert_eq!(ans(&mut n, "InitialR2T", "No"), "Irrelevant");
        assert_eq!(ans(&mut n, "HeaderDigest", "None"), "None");
        assert_eq!(ans(&mut n, "DefaultTime2Wait", "2"), "2");
    }

    #[test]
    fn digest_policies() {
        let mut n = Negotiator::new(TargetLimits {
            header_digest: DigestPolicy::Forbid,
            data_digest: DigestPolicy::Require,
            ..Default::default()
        });
        assert_eq!(ans(&mut n, "HeaderDigest", "CRC32C,None"), "None");
        assert_eq!(ans(&mut n, "HeaderDigest", "CRC32C"), "Reject");
        assert_eq!(ans(&mut n, "DataDigest", "None"), "Reject");
        assert_eq!(ans(&mut n, "DataDigest", "None,CRC32C"), "CRC32C");
    }

    /// A key answered with Reject is not offered again (found by the `pdu_stream` fuzz target:
    /// `HeaderDigest=Reject` and `HeaderDigest=CRC32C` went out in one response); the login
    /// then fails at `finish`.
    #[test]
    fn rejected_keys_are_not_offered_again() {
        let mut n = Negotiator::new(TargetLimits {
            header_digest: DigestPolicy::Require,
            max_burst_length: 8192,
            ..Default::default()
        });
        assert_eq!(ans(&mut n, "HeaderDigest", "None"), "Reject");
        assert_eq!(ans(&mut n, "MaxBurstLength", "100"), "Reject");
        let mut out = Vec::new();
        n.offer_missing(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("HeaderDigest") && !text.contains("MaxBurstLength"), "{text}");
        assert!(!n.finish());
    }

    #[test]
    fn target_offers_when_defaults_unacceptable() {
        let mut n = Negotiator::new(TargetLimits {
            max_burst_length: 65536,
            first_burst_length: 8192,
            data_digest: DigestPolicy::Require,
            ..Default::default()
        });
        let mut out = Vec::new();
        assert!(n.offer_missing(&mut out));
        assert_eq!(&out[..], b"DataDigest=CRC32C\0MaxBurstLength=65536\0FirstBurstLength=8192\0");
        assert!(!n.finish());
        assert_eq!(n.take_answer("DataDigest", "CRC32C"), Some(true));
        assert_eq!(n.take_answer("MaxBurstLength", "65536"), Some(true));
        assert!(!n.finish());
        assert_eq!(n.take_answer("FirstBurstLength", "4096"), Some(true));
        assert_eq!(n.take_answer("FirstBurstLength", "4096"), None);
        assert!(n.finish());
        assert_eq!(n.params.first_burst_length, 4096);
        assert!(n.params.data_digest);
        // An answer above our offer violates the Minimum result function.
        let mut m = Negotiator::new(TargetLimits { first_burst_length: 8192, ..Default::default() });
        assert!(m.offer_missing(&mut Vec::new()));
        assert_eq!(m.take_answer("FirstBurstLength", "16384"), Some(false));
        let mut again = Vec::new();
        assert!(!n.offer_missing(&mut again));
    }
}
