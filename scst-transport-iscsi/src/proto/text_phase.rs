//! Text Request handling in the full feature phase (RFC 7143 §11.10, §11.11,
//! appendix C), sans-IO.
//!
//! One [`TextPhase`] per connection. Feed each Text Request with
//! [`TextPhase::on_request`]; it returns the Text Response to send (the driver
//! supplies StatSN/ExpCmdSN/MaxCmdSN and advances StatSN afterwards), or an
//! error for which the driver sends a Reject PDU (reason in
//! [`TextPhaseError::reject_reason`]) carrying the request's header.
//!
//! * `SendTargets=All` (discovery sessions; `Reject` in normal sessions),
//!   `SendTargets=<name>`, and `SendTargets=` (empty: the session's own target
//!   in a normal session, nothing in a discovery session). Targets come from
//!   [`LoginPolicy::send_targets`].
//! * Long responses are split at the initiator's MaxRecvDataSegmentLength:
//!   C=1, F=0 and a Target Transfer Tag; the initiator asks for more with an
//!   empty request carrying that TTT. The last part has F=1, TTT=0xffffffff.
//! * C-bit requests are reassembled (up to 64 KiB); each part gets an empty
//!   response with F=0 and a TTT to continue with.
//! * A request with F=0 gets a response with F=0 and a TTT (RFC 7143
//!   §11.11.1: F=1 only answers a request with F=1).
//! * Keys in the full feature phase: MaxRecvDataSegmentLength (declarative,
//!   updates [`SessionParams::initiator_max_recv_data_segment_length`]) and
//!   InitiatorAlias are accepted; every other known key is login-only and gets
//!   `Reject`; unknown keys get `NotUnderstood`.
//! * A new request (TTT 0xffffffff) abandons any unfinished sequence.
//!
//! The TTTs used here come from a private counter; they only ever appear in
//! Text PDUs, so they cannot be confused with R2T tags.

use super::OwnedPdu;
use super::bhs::{Bhs, MAX_DATA_SEGMENT_LEN, RESERVED_TAG, RejectReason};
use super::build::{TargetSn, TextResponseHeader};
use super::login::{LoginPolicy, SendTargetsQuery};
use super::params::{KeyClass, SessionParams, SessionType, classify};
use super::text::{self, TextPairs, reserved};

/// Largest reassembled text request we accept.
pub const TEXT_MAX_REQUEST: usize = 64 * 1024;

/// A Text Request the driver must answer with a Reject PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextPhaseError {
    /// The TTT does not continue the pending sequence of this ITT.
    #[error("text request TTT does not match a pending sequence")]
    UnexpectedTtt,
    /// Malformed text, a key sent twice, or data on a continuation request.
    #[error("malformed text request")]
    Malformed,
    /// Reassembled text exceeds [`TEXT_MAX_REQUEST`].
    #[error("text request too long")]
    TooLong,
}

impl TextPhaseError {
    /// The Reject reason to send.
    pub fn reject_reason(self) -> RejectReason {
        match self {
            Self::UnexpectedTtt => RejectReason::INVALID_PDU_FIELD,
            Self::Malformed | Self::TooLong => RejectReason::PROTOCOL_ERROR,
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    itt: u32,
    ttt: u32,
}

/// Per-connection full-feature-phase text state.
#[derive(Debug, Clone, Default)]
pub struct TextPhase {
    pending: Option<Pending>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    tx_pos: usize,
    final_wanted: bool,
    next_ttt: u32,
}

impl TextPhase {
    /// A fresh state.
    pub fn new() -> Self {
        Self::default()
    }

    fn alloc_ttt(&mut self) -> u32 {
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 1;
        }
        self.next_ttt
    }

    /// Handle one Text Request (BHS and exactly DataSegmentLength data bytes).
    /// `params` is updated when the initiator re-declares
    /// MaxRecvDataSegmentLength or InitiatorAlias.
    pub fn on_request<T: AsRef<[u8]>>(
        &mut self,
        policy: &dyn LoginPolicy,
        params: &mut SessionParams,
        bhs: &Bhs<T>,
        data: &[u8],
        sn: TargetSn,
    ) -> Result<OwnedPdu, TextPhaseError> {
        let (itt, ttt) = (bhs.itt(), bhs.ttt());
        if ttt == RESERVED_TAG {
            self.pending = None;
            self.rx.clear();
            self.tx.clear();
            self.tx_pos = 0;
        } else {
            match &self.pending {
                Some(p) if p.itt == itt && p.ttt == ttt => {}
                _ => return Err(TextPhaseError::UnexpectedTtt),
            }
            if self.tx_pos < self.tx.len() {
                if !data.is_empty() {
                    return Err(TextPhaseError::Malformed);
                }
                return Ok(self.emit(params, bhs, sn));
            }
        }
        if self.rx.len() + data.len() > TEXT_MAX_REQUEST {
            self.pending = None;
            self.rx.clear();
            return Err(TextPhaseError::TooLong);
        }
        self.rx.extend_from_slice(data);
        if bhs.continue_bit() {
            let ttt = self.alloc_ttt();
            self.pending = Some(Pending { itt, ttt });
            return Ok(response(bhs, false, false, ttt, sn, Vec::new()));
        }
        let ltds = core::mem::take(&mut self.rx);
        self.tx = answer(policy, params, &ltds)?;
        self.tx_pos = 0;
        self.final_wanted = bhs.final_bit();
        Ok(self.emit(params, bhs, sn))
    }

    fn emit<T: AsRef<[u8]>>(&mut self, params: &SessionParams, bhs: &Bhs<T>, sn: TargetSn) -> OwnedPdu {
        let max = (params.initiator_max_recv_data_segment_length.clamp(512, MAX_DATA_SEGMENT_LEN)) as usize;
        let rest = self.tx.len() - self.tx_pos;
        let itt = bhs.itt();
        if rest > max {
            let chunk = self.tx[self.tx_pos..self.tx_pos + max].to_vec();
            self.tx_pos += max;
            let ttt = self.alloc_ttt();
            self.pending = Some(Pending { itt, ttt });
            return response(bhs, false, true, ttt, sn, chunk);
        }
        let chunk = self.tx[self.tx_pos..].to_vec();
        self.tx.clear();
        self.tx_pos = 0;
        if self.final_wanted {
            self.pending = None;
            response(bhs, true, false, RESERVED_TAG, sn, chunk)
        } else {
            let ttt = self.alloc_ttt();
            self.pending = Some(Pending { itt, ttt });
            response(bhs, false, false, ttt, sn, chunk)
        }
    }
}

fn response<T: AsRef<[u8]>>(
    req: &Bhs<T>,
    final_bit: bool,
    continue_bit: bool,
    ttt: u32,
    sn: TargetSn,
    data: Vec<u8>,
) -> OwnedPdu {
    let mut bhs = [0u8; 48];
    TextResponseHeader {
        final_bit,
        continue_bit,
        data_segment_len: data.len() as u32,
        lun: req.lun(),
        itt: req.itt(),
        ttt,
        sn,
    }
    .write(&mut bhs);
    OwnedPdu { bhs, data }
}

/// Answer a complete text request.
fn answer(policy: &dyn LoginPolicy, params: &mut SessionParams, ltds: &[u8]) -> Result<Vec<u8>, TextPhaseError> {
    let mut out = Vec::new();
    // A set: a list made each request cost time quadratic in its keys (tens of milliseconds
    // of CPU for one 64 KiB request of short keys; found by the fuzzing audit).
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for p in TextPairs::new(ltds) {
        let (k, v) = p.map_err(|_| TextPhaseError::Malformed)?;
        if !seen.insert(k) {
            return Err(TextPhaseError::Malformed);
        }
        match classify(k) {
            KeyClass::SendTargets => {
                let query = match (v, params.session_type) {
                    ("All", SessionType::Discovery) => Some(SendTargetsQuery::All),
                    ("All", SessionType::Normal) => {
                        text::push_pair(&mut out, k, reserved::REJECT);
                        continue;
                    }
                    ("", SessionType::Normal) => params.target_name.as_deref().map(SendTargetsQuery::Target),
                    ("", SessionType::Discovery) => None,
                    (name, _) => Some(SendTargetsQuery::Target(name)),
                };
                if let Some(q) = query {
                    for e in policy.send_targets(&params.initiator_name, q) {
                        text::push_pair(&mut out, "TargetName", &e.target_name);
                        for a in &e.addresses {
                            text::push_pair(&mut out, "TargetAddress", a);
                        }
                    }
                }
            }
            KeyClass::MaxRecvDataSegmentLength => {
                match text::parse_number(v).filter(|n| (512..=u64::from(MAX_DATA_SEGMENT_LEN)).contains(n)) {
                    Some(n) => params.initiator_max_recv_data_segment_length = n as u32,
                    None => text::push_pair(&mut out, k, reserved::REJECT),
                }
            }
            KeyClass::InitiatorAlias => params.initiator_alias = Some(v.to_owned()),
            KeyClass::Unknown => text::push_pair(&mut out, k, reserved::NOT_UNDERSTOOD),
            _ => text::push_pair(&mut out, k, reserved::REJECT),
        }
    }
    Ok(out)
}
