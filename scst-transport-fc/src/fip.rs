//! FIP (FC-BB-6 §7.8, ethertype 8914h) in VN2VN mode: a VN_Port picks an N_Port ID by probing
//! for it, claims it, then beacons; peers are learned from their claims and aged out when their
//! beacons stop.
//!
//! ```text
//! FIP header (10): version (high 4 bits, 1), reserved, operation (2; 0005h VN2VN), reserved,
//!                  subcode (probe request 1, probe reply 2, claim notification 3, claim
//!                  response 4, beacon 5), descriptor list length in words (2), flags (2)
//! descriptors: type (1), length in words (1), value
//!   MAC (2): ENode MAC          Name (4): 2 reserved, Node_Name
//!   VN_Port ID (11): VN_Port MAC, reserved, N_Port ID (3), N_Port_Name
//!   FC-4 features (15, claims): 2 reserved, FC-4 types bitmap (32), features (128)
//!   Max FCoE size (6, claims): size (2)
//! ```
//!
//! [`Vn2Vn`] follows the timing Linux's libfcoe uses (probe wait 100 ms, announce wait 400 ms,
//! beacons every 8 s, a peer silent for 2.5 beacon intervals is gone), so the two interoperate.
//! It is sans-IO like [`crate::FcPort`]: frames in, frames and events out, time passed in.

use std::collections::{HashMap, VecDeque};

use crate::fcoe::{ETH_HLEN, ETH_P_FIP, ethertype};

/// FIP version 1 in the high nibble.
pub const FIP_VERSION: u8 = 0x10;
/// FIP header length.
pub const FIP_HLEN: usize = 10;
/// The VN2VN operation code.
pub const OP_VN2VN: u16 = 0x0005;
/// The FIP operation carrying encapsulated extended link services (FLOGI, LOGO in VN2VN).
pub const OP_LS: u16 = 0x0002;
/// FIP LS subcode: request.
pub const LS_REQUEST: u8 = 1;
/// FIP LS subcode: reply.
pub const LS_REPLY: u8 = 2;
/// Multicast MAC of all VN2VN ports.
pub const ALL_VN2VN_MACS: [u8; 6] = [0x01, 0x10, 0x18, 0x01, 0x00, 0x04];
/// FC-MAP of VN2VN VN_Port MACs (the high 3 bytes; the N_Port ID is the low 3).
pub const VN_FC_MAP: u32 = 0x0efd00;

/// Probe wait (ms).
pub const PROBE_WAIT: u64 = 100;
/// Announce wait (ms).
pub const ANN_WAIT: u64 = 400;
/// Beacon interval (ms).
pub const BEACON_INT: u64 = 8000;
/// Random extra delay of each beacon (ms, exclusive bound).
pub const BEACON_FUZZ: u64 = 100;
/// A peer is gone after this long without a beacon (2.5 beacon intervals).
pub const BEACON_TIMEOUT: u64 = BEACON_INT * 25 / 10;
/// After this many probe attempts, retry only every [`RATE_LIMIT_INT`].
pub const RATE_LIMIT_COUNT: u32 = 10;
/// Rate-limited probe interval (ms).
pub const RATE_LIMIT_INT: u64 = 10_000;

/// FIP flag: the address is recorded (configured) or the link is point-to-point.
pub const FLAG_REC_OR_P2P: u16 = 0x0008;

/// Descriptor types used in VN2VN.
pub mod desc {
    /// MAC address.
    pub const MAC: u8 = 2;
    /// Node name.
    pub const NAME: u8 = 4;
    /// Max FCoE size.
    pub const FCOE_SIZE: u8 = 6;
    /// Encapsulated FLOGI.
    pub const FLOGI: u8 = 7;
    /// Encapsulated FDISC.
    pub const FDISC: u8 = 8;
    /// Encapsulated LOGO.
    pub const LOGO: u8 = 9;
    /// Encapsulated ELP.
    pub const ELP: u8 = 10;
    /// VN_Port identifier.
    pub const VN_ID: u8 = 11;
    /// FC-4 features.
    pub const FC4F: u8 = 15;
    /// First non-critical type (ignored when unknown).
    pub const NON_CRITICAL: u8 = 128;
}

const FC4F_LEN: usize = 164;

/// VN2VN subcodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subcode(pub u8);

impl Subcode {
    /// Probe request.
    pub const PROBE_REQ: Self = Self(1);
    /// Probe reply.
    pub const PROBE_REP: Self = Self(2);
    /// Claim notification.
    pub const CLAIM_NOTIFY: Self = Self(3);
    /// Claim response.
    pub const CLAIM_REP: Self = Self(4);
    /// Beacon.
    pub const BEACON: Self = Self(5);
}

/// Why a FIP frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FipError {
    /// Shorter than its headers or its descriptor list says.
    #[error("FIP frame truncated")]
    Truncated,
    /// Not ethertype 8914h.
    #[error("not FIP")]
    NotFip,
    /// Unsupported version.
    #[error("FIP version {0:#x}")]
    Version(u8),
    /// Not a VN2VN operation (or an unknown subcode).
    #[error("FIP operation {0:#06x} subcode {1}")]
    Operation(u16, u8),
    /// A descriptor with a bad length, a duplicate or unexpected one, or a missing one.
    #[error("FIP descriptor {0}: {1}")]
    Descriptor(u8, &'static str),
}

/// A parsed VN2VN frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VnFrame {
    /// Ethernet destination.
    pub dst: [u8; 6],
    /// Ethernet source.
    pub src: [u8; 6],
    /// Subcode.
    pub subcode: Subcode,
    /// FIP flags.
    pub flags: u16,
    /// ENode MAC (MAC descriptor).
    pub enode_mac: [u8; 6],
    /// Node_Name.
    pub wwnn: u64,
    /// VN_Port MAC.
    pub vn_mac: [u8; 6],
    /// N_Port ID.
    pub port_id: u32,
    /// N_Port_Name.
    pub wwpn: u64,
    /// Max FCoE size (claims).
    pub fcoe_size: Option<u16>,
    /// FCP features (claims): `(target, initiator)`.
    pub fcp: Option<(bool, bool)>,
}

fn valid_unicast(m: &[u8; 6]) -> bool {
    m[0] & 1 == 0 && *m != [0; 6]
}

impl VnFrame {
    /// Parses a whole Ethernet frame.
    ///
    /// # Errors
    /// [`FipError`] for anything but a well-formed VN2VN frame with exactly the descriptors its
    /// subcode needs (unknown non-critical descriptors are skipped).
    pub fn parse(eth: &[u8]) -> Result<Self, FipError> {
        let (t, at) = ethertype(eth).ok_or(FipError::Truncated)?;
        if t != ETH_P_FIP {
            return Err(FipError::NotFip);
        }
        let f = eth.get(at..).filter(|f| f.len() >= FIP_HLEN).ok_or(FipError::Truncated)?;
        if f[0] >> 4 != FIP_VERSION >> 4 {
            return Err(FipError::Version(f[0]));
        }
        let op = u16::from_be_bytes([f[2], f[3]]);
        let sub = Subcode(f[5]);
        let claims = matches!(sub, Subcode::CLAIM_NOTIFY | Subcode::CLAIM_REP);
        if op != OP_VN2VN || !(1..=5).contains(&sub.0) {
            return Err(FipError::Operation(op, sub.0));
        }
        let rlen = usize::from(u16::from_be_bytes([f[6], f[7]])) * 4;
        let mut d = f.get(FIP_HLEN..FIP_HLEN + rlen).ok_or(FipError::Truncated)?;
        let mut out = Self {
            dst: eth[..6].try_into().map_err(|_| FipError::Truncated)?,
            src: eth[6..12].try_into().map_err(|_| FipError::Truncated)?,
            subcode: sub,
            flags: u16::from_be_bytes([f[8], f[9]]),
            enode_mac: [0; 6],
            wwnn: 0,
            vn_mac: [0; 6],
            port_id: 0,
            wwpn: 0,
            fcoe_size: None,
            fcp: None,
        };
        let mut seen = 0u32;
        while !d.is_empty() {
            let (ty, len) = match d {
                [ty, len, ..] => (*ty, usize::from(*len) * 4),
                _ => return Err(FipError::Truncated),
            };
            if len < 2 || len > d.len() {
                return Err(FipError::Descriptor(ty, "bad length"));
            }
            let v = &d[..len];
            let want = |n: usize| if len == n { Ok(()) } else { Err(FipError::Descriptor(ty, "bad length")) };
            if ty < 32 {
                if seen & (1 << ty) != 0 {
                    return Err(FipError::Descriptor(ty, "duplicate"));
                }
                seen |= 1 << ty;
            }
            match ty {
                desc::MAC => {
                    want(8)?;
                    out.enode_mac.copy_from_slice(&v[2..8]);
                    if !valid_unicast(&out.enode_mac) {
                        return Err(FipError::Descriptor(ty, "not a unicast MAC"));
                    }
                }
                desc::NAME => {
                    want(12)?;
                    out.wwnn = u64::from_be_bytes(v[4..12].try_into().map_err(|_| FipError::Truncated)?);
                }
                desc::VN_ID => {
                    want(20)?;
                    out.vn_mac.copy_from_slice(&v[2..8]);
                    out.port_id = u32::from_be_bytes([0, v[9], v[10], v[11]]);
                    out.wwpn = u64::from_be_bytes(v[12..20].try_into().map_err(|_| FipError::Truncated)?);
                }
                desc::FC4F if claims => {
                    want(FC4F_LEN)?;
                    // Features of type 08h: word 1 of the feature array, bits 3..0.
                    let feat = v[4 + 32 + 7];
                    out.fcp = Some((feat & 1 != 0, feat & 2 != 0));
                }
                desc::FCOE_SIZE if claims => {
                    want(4)?;
                    out.fcoe_size = Some(u16::from_be_bytes([v[2], v[3]]));
                }
                t if t >= desc::NON_CRITICAL => {}
                _ => return Err(FipError::Descriptor(ty, "unexpected")),
            }
            d = &d[len..];
        }
        let mut need = 1 << desc::MAC | 1 << desc::NAME | 1 << desc::VN_ID;
        if claims {
            need |= 1 << desc::FC4F | 1 << desc::FCOE_SIZE;
        }
        if seen & need != need {
            return Err(FipError::Descriptor(0, "missing"));
        }
        Ok(out)
    }
}

/// A FIP-encapsulated extended link service (FC-BB-6 §7.8.8: VN2VN ports send FLOGI and LOGO
/// this way): the encapsulated FC frame and the MAC descriptor after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FipEls<'a> {
    /// Ethernet source.
    pub src: [u8; 6],
    /// [`LS_REQUEST`] or [`LS_REPLY`].
    pub subcode: u8,
    /// The descriptor type ([`desc::FLOGI`], [`desc::LOGO`], ...).
    pub dtype: u8,
    /// The FC frame (header and ELS payload).
    pub fc: &'a [u8],
    /// The MAC descriptor, when present.
    pub mac: Option<[u8; 6]>,
}

impl<'a> FipEls<'a> {
    /// Parses an Ethernet frame carrying a FIP LS operation. The encapsulated ELS must be the
    /// first descriptor (as libfcoe requires); unknown non-critical descriptors are skipped.
    ///
    /// # Errors
    /// [`FipError`] for anything else.
    pub fn parse(eth: &'a [u8]) -> Result<Self, FipError> {
        let (t, at) = ethertype(eth).ok_or(FipError::Truncated)?;
        if t != ETH_P_FIP {
            return Err(FipError::NotFip);
        }
        let f = eth.get(at..).filter(|f| f.len() >= FIP_HLEN).ok_or(FipError::Truncated)?;
        if f[0] >> 4 != FIP_VERSION >> 4 {
            return Err(FipError::Version(f[0]));
        }
        let op = u16::from_be_bytes([f[2], f[3]]);
        let subcode = f[5];
        if op != OP_LS || !matches!(subcode, LS_REQUEST | LS_REPLY) {
            return Err(FipError::Operation(op, subcode));
        }
        let rlen = usize::from(u16::from_be_bytes([f[6], f[7]])) * 4;
        let mut d = f.get(FIP_HLEN..FIP_HLEN + rlen).ok_or(FipError::Truncated)?;
        let mut els: Option<(u8, &'a [u8])> = None;
        let mut mac = None;
        let mut first = true;
        while !d.is_empty() {
            let (ty, len) = match d {
                [ty, len, ..] => (*ty, usize::from(*len) * 4),
                _ => return Err(FipError::Truncated),
            };
            if len < 2 || len > d.len() {
                return Err(FipError::Descriptor(ty, "bad length"));
            }
            match ty {
                desc::FLOGI | desc::FDISC | desc::LOGO | desc::ELP => {
                    if !first {
                        return Err(FipError::Descriptor(ty, "encapsulated ELS not first"));
                    }
                    if len < 4 + crate::frame::HEADER_LEN + 1 {
                        return Err(FipError::Descriptor(ty, "bad length"));
                    }
                    els = Some((ty, &d[4..len]));
                }
                desc::MAC if !first && mac.is_none() => {
                    if len != 8 {
                        return Err(FipError::Descriptor(ty, "bad length"));
                    }
                    let mut m = [0u8; 6];
                    m.copy_from_slice(&d[2..8]);
                    mac = Some(m);
                }
                t if t >= desc::NON_CRITICAL && !first => {}
                _ => return Err(FipError::Descriptor(ty, "unexpected")),
            }
            first = false;
            d = &d[len..];
        }
        let (dtype, fc) = els.ok_or(FipError::Descriptor(0, "missing"))?;
        let mut src = [0u8; 6];
        src.copy_from_slice(&eth[6..12]);
        Ok(Self { src, subcode, dtype, fc, mac })
    }
}

/// Builds a FIP LS frame encapsulating `fc` (a multiple of 4 bytes) as descriptor `dtype`,
/// followed by a MAC descriptor unless `mac` is `None` (libfcoe omits it on LS_RJT).
pub fn build_els(src: [u8; 6], dst: [u8; 6], subcode: u8, dtype: u8, fc: &[u8], mac: Option<[u8; 6]>) -> Vec<u8> {
    let elen = (4 + fc.len()).div_ceil(4) * 4;
    let dlen = elen + if mac.is_some() { 8 } else { 0 };
    let mut f = Vec::with_capacity(ETH_HLEN + FIP_HLEN + dlen);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETH_P_FIP.to_be_bytes());
    f.extend_from_slice(&[FIP_VERSION, 0]);
    f.extend_from_slice(&OP_LS.to_be_bytes());
    f.extend_from_slice(&[0, subcode]);
    f.extend_from_slice(&((dlen / 4) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&[dtype, (elen / 4) as u8, 0, 0]);
    f.extend_from_slice(fc);
    f.resize(ETH_HLEN + FIP_HLEN + elen, 0);
    if let Some(m) = mac {
        f.extend_from_slice(&[desc::MAC, 2]);
        f.extend_from_slice(&m);
    }
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// What a VN_Port announces about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VnIdentity {
    /// ENode MAC (the interface's).
    pub mac: [u8; 6],
    /// N_Port_Name.
    pub wwpn: u64,
    /// Node_Name.
    pub wwnn: u64,
    /// Largest FCoE frame (Ethernet payload) we receive.
    pub fcoe_size: u16,
    /// FCP target function (claims' FC-4 features).
    pub target: bool,
    /// FCP initiator function.
    pub initiator: bool,
}

/// The VN_Port MAC of an N_Port ID.
pub fn vn_mac(port_id: u32) -> [u8; 6] {
    let m = VN_FC_MAP.to_be_bytes();
    let p = port_id.to_be_bytes();
    [m[1], m[2], m[3], p[1], p[2], p[3]]
}

/// Builds a VN2VN frame (Ethernet header included, padded to the 60-byte Ethernet minimum).
pub fn build(me: &VnIdentity, port_id: u32, sub: Subcode, dst: [u8; 6], fcoe_size: u16) -> Vec<u8> {
    let claims = matches!(sub, Subcode::CLAIM_NOTIFY | Subcode::CLAIM_REP);
    let dlen = 8 + 12 + 20 + if claims { FC4F_LEN + 4 } else { 0 };
    let mut f = Vec::with_capacity(ETH_HLEN + FIP_HLEN + dlen);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&me.mac);
    f.extend_from_slice(&ETH_P_FIP.to_be_bytes());
    f.extend_from_slice(&[FIP_VERSION, 0]);
    f.extend_from_slice(&OP_VN2VN.to_be_bytes());
    f.extend_from_slice(&[0, sub.0]);
    f.extend_from_slice(&((dlen / 4) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&[desc::MAC, 2]);
    f.extend_from_slice(&me.mac);
    f.extend_from_slice(&[desc::NAME, 3, 0, 0]);
    f.extend_from_slice(&me.wwnn.to_be_bytes());
    f.extend_from_slice(&[desc::VN_ID, 5]);
    f.extend_from_slice(&vn_mac(port_id));
    f.extend_from_slice(&port_id.to_be_bytes());
    f.extend_from_slice(&me.wwpn.to_be_bytes());
    if claims {
        let mut ff = [0u8; FC4F_LEN];
        ff[0] = desc::FC4F;
        ff[1] = (FC4F_LEN / 4) as u8;
        // FC-4 types bitmap: type 08h is bit 8 of word 0.
        ff[4 + 2] = 0x01;
        ff[4 + 32 + 7] = u8::from(me.target) | u8::from(me.initiator) << 1;
        f.extend_from_slice(&ff);
        f.extend_from_slice(&[desc::FCOE_SIZE, 1]);
        f.extend_from_slice(&fcoe_size.to_be_bytes());
    }
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting to probe (after a random delay).
    Start,
    Probe1,
    Probe2,
    Claim,
    Up,
}

/// A VN2VN peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its N_Port ID.
    pub port_id: u32,
    /// N_Port_Name.
    pub wwpn: u64,
    /// Node_Name.
    pub wwnn: u64,
    /// ENode MAC.
    pub enode_mac: [u8; 6],
    /// VN_Port MAC (where its FCoE frames go).
    pub vn_mac: [u8; 6],
    /// Max FCoE size it announced.
    pub fcoe_size: u16,
    /// Last beacon (None until the first).
    pub last_beacon: Option<u64>,
}

/// What the VN2VN controller tells the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vn2VnEvent {
    /// We claimed this N_Port ID: FC frames use it from now on.
    PortId(u32),
    /// We lost our N_Port ID (a conflict): logins end, probing starts over.
    PortIdLost,
    /// A peer is up (its first beacon after the claim exchange): log in to it (FLOGI).
    PeerUp(Peer),
    /// A peer stopped beaconing or changed its names: its login is gone.
    PeerDown(u32),
}

/// The VN2VN controller of one VN_Port.
#[derive(Debug)]
pub struct Vn2Vn {
    me: VnIdentity,
    state: State,
    port_id: u32,
    probe_tries: u32,
    rng: u64,
    next: u64,
    claim_time: u64,
    beacon_time: u64,
    now: u64,
    peers: HashMap<u32, Peer>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<Vn2VnEvent>,
}

impl Vn2Vn {
    /// A controller that starts probing at `now` (ms).
    pub fn new(me: VnIdentity, now: u64) -> Self {
        let mut v = Self {
            me,
            state: State::Start,
            port_id: 0,
            probe_tries: 0,
            rng: me.wwpn | 1,
            next: now,
            claim_time: 0,
            beacon_time: 0,
            now,
            peers: HashMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
        };
        v.restart();
        v
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Our N_Port ID once claimed (from the claim on; 0 before).
    pub fn port_id(&self) -> u32 {
        if matches!(self.state, State::Claim | State::Up) { self.port_id } else { 0 }
    }

    /// Whether the claim is complete and we beacon.
    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// A known peer.
    pub fn peer(&self, port_id: u32) -> Option<&Peer> {
        self.peers.get(&port_id)
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Vn2VnEvent> {
        self.events.pop_front()
    }

    /// When [`Vn2Vn::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> u64 {
        let age = self.peers.values().filter_map(|p| p.last_beacon).map(|t| t + BEACON_TIMEOUT).min();
        if self.state == State::Up { age.map_or(self.beacon_time, |a| a.min(self.beacon_time)) } else { self.next }
    }

    fn send(&mut self, sub: Subcode, dst: [u8; 6], fcoe_size: u16) {
        let f = build(&self.me, self.port_id, sub, dst, fcoe_size);
        self.out.push_back(f);
    }

    fn send_claim(&mut self) {
        self.send(Subcode::CLAIM_NOTIFY, ALL_VN2VN_MACS, self.me.fcoe_size);
        self.claim_time = self.now;
    }

    /// Picks a (new) N_Port ID and probes for it after a random delay.
    fn restart(&mut self) {
        if matches!(self.state, State::Claim | State::Up) {
            self.events.push_back(Vn2VnEvent::PortIdLost);
            for id in self.peers.keys().copied().collect::<Vec<_>>() {
                self.events.push_back(Vn2VnEvent::PeerDown(id));
            }
            self.peers.clear();
        }
        let mut id = if self.probe_tries > 0 {
            (self.random() & 0xffff) as u32
        } else if self.port_id != 0 {
            self.port_id
        } else {
            (self.me.wwpn & 0xffff) as u32
        };
        if id == 0 || id == 0xffff {
            id = 1;
        }
        self.port_id = id;
        let wait = if self.probe_tries < RATE_LIMIT_COUNT {
            self.probe_tries += 1;
            self.random() % PROBE_WAIT
        } else {
            RATE_LIMIT_INT
        };
        self.next = self.now + wait;
        self.state = State::Start;
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
        let now = self.now;
        match self.state {
            State::Up => {
                let gone: Vec<u32> = self
                    .peers
                    .values()
                    .filter(|p| p.last_beacon.is_some_and(|t| now >= t + BEACON_TIMEOUT))
                    .map(|p| p.port_id)
                    .collect();
                for id in gone {
                    self.peers.remove(&id);
                    self.events.push_back(Vn2VnEvent::PeerDown(id));
                }
                if now >= self.beacon_time {
                    self.send(Subcode::BEACON, ALL_VN2VN_MACS, 0);
                    self.beacon_time = now + BEACON_INT + self.random() % BEACON_FUZZ;
                }
            }
            _ if now < self.next => {}
            State::Start => {
                self.state = State::Probe1;
                self.send(Subcode::PROBE_REQ, ALL_VN2VN_MACS, 0);
                self.next = now + PROBE_WAIT;
            }
            State::Probe1 => {
                self.state = State::Probe2;
                self.send(Subcode::PROBE_REQ, ALL_VN2VN_MACS, 0);
                self.next = now + ANN_WAIT;
            }
            State::Probe2 => {
                self.state = State::Claim;
                self.events.push_back(Vn2VnEvent::PortId(self.port_id));
                self.send_claim();
                self.next = now + ANN_WAIT;
            }
            State::Claim => {
                self.state = State::Up;
                self.send(Subcode::BEACON, ALL_VN2VN_MACS, 0);
                self.beacon_time = now + ANN_WAIT;
                // Peers that already beaconed are logged in now.
                let ready: Vec<Peer> = self.peers.values().filter(|p| p.last_beacon.is_some()).copied().collect();
                for p in ready {
                    self.events.push_back(Vn2VnEvent::PeerUp(p));
                }
            }
        }
    }

    /// Handles a received Ethernet frame with ethertype FIP at `now`.
    ///
    /// # Errors
    /// [`FipError`] when the frame is not a valid VN2VN frame (it is then ignored).
    pub fn handle_frame(&mut self, now: u64, eth: &[u8]) -> Result<(), FipError> {
        self.now = self.now.max(now);
        let f = VnFrame::parse(eth)?;
        if f.enode_mac == self.me.mac {
            // Our own multicast, looped back.
            return Ok(());
        }
        let rec = f.flags & FLAG_REC_OR_P2P != 0;
        match f.subcode {
            Subcode::PROBE_REQ => {
                if f.port_id != self.port_id {
                    return Ok(());
                }
                match self.state {
                    State::Claim | State::Up => self.send(Subcode::PROBE_REP, f.enode_mac, 0),
                    State::Probe1 | State::Probe2 if self.me.wwpn > f.wwpn && !rec => {
                        self.send(Subcode::PROBE_REP, f.enode_mac, 0);
                    }
                    _ => self.restart(),
                }
            }
            Subcode::PROBE_REP => {
                if f.port_id != self.port_id {
                    return Ok(());
                }
                if self.state == State::Up { self.send_claim() } else { self.restart() }
            }
            Subcode::CLAIM_NOTIFY => {
                if rec {
                    self.send(Subcode::PROBE_REQ, ALL_VN2VN_MACS, 0);
                    return Ok(());
                }
                match self.state {
                    State::Start | State::Probe1 | State::Probe2 => {
                        if f.port_id == self.port_id {
                            self.restart();
                        }
                    }
                    State::Claim | State::Up => {
                        if f.port_id == self.port_id {
                            if f.wwpn > self.me.wwpn {
                                self.restart()
                            } else {
                                self.send_claim()
                            }
                            return Ok(());
                        }
                        let size = f.fcoe_size.unwrap_or(0).min(self.me.fcoe_size);
                        self.send(Subcode::CLAIM_REP, f.enode_mac, size);
                        self.add_peer(&f);
                    }
                }
            }
            Subcode::CLAIM_REP => {
                if matches!(self.state, State::Claim | State::Up) && f.port_id != self.port_id {
                    self.add_peer(&f);
                }
            }
            _ => {
                // Beacon.
                if rec {
                    self.send(Subcode::PROBE_REQ, ALL_VN2VN_MACS, 0);
                    return Ok(());
                }
                let up = self.state == State::Up;
                if let Some(p) = self.peers.get_mut(&f.port_id) {
                    if p.wwpn == f.wwpn && p.wwnn == f.wwnn {
                        let first = p.last_beacon.is_none();
                        p.last_beacon = Some(self.now);
                        if first && up {
                            let p = *p;
                            self.events.push_back(Vn2VnEvent::PeerUp(p));
                        }
                    }
                    return Ok(());
                }
                if up && self.now >= self.claim_time + ANN_WAIT {
                    // A new neighbour: announce ourselves; it answers with its claim.
                    self.send_claim();
                }
            }
        }
        Ok(())
    }

    fn add_peer(&mut self, f: &VnFrame) {
        if let Some(old) = self.peers.get_mut(&f.port_id) {
            if old.wwpn == f.wwpn && old.wwnn == f.wwnn {
                // The peer claimed again (it restarted): like libfcoe, wait for its next beacon
                // and log in to it once more.
                old.last_beacon = None;
                old.enode_mac = f.enode_mac;
                return;
            }
            self.events.push_back(Vn2VnEvent::PeerDown(f.port_id));
        }
        let vn = if valid_unicast(&f.vn_mac) { f.vn_mac } else { vn_mac(f.port_id) };
        self.peers.insert(
            f.port_id,
            Peer {
                port_id: f.port_id,
                wwpn: f.wwpn,
                wwnn: f.wwnn,
                enode_mac: f.enode_mac,
                vn_mac: vn,
                fcoe_size: f.fcoe_size.unwrap_or(0),
                last_beacon: None,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: VnIdentity = VnIdentity {
        mac: [0x02, 0, 0, 0, 0, 0x01],
        wwpn: 0x2000_0000_0000_1234,
        wwnn: 0x1000_0000_0000_1234,
        fcoe_size: 2158,
        target: true,
        initiator: false,
    };
    const PEER: VnIdentity = VnIdentity {
        mac: [0x02, 0, 0, 0, 0, 0x02],
        wwpn: 0x2000_0000_0000_0042,
        wwnn: 0x1000_0000_0000_0042,
        fcoe_size: 2158,
        target: false,
        initiator: true,
    };

    fn drain(v: &mut Vn2Vn) -> Vec<VnFrame> {
        std::iter::from_fn(|| v.poll_transmit()).map(|f| VnFrame::parse(&f).unwrap()).collect()
    }

    fn up(now: &mut u64) -> Vn2Vn {
        let mut v = Vn2Vn::new(ME, *now);
        for _ in 0..4 {
            *now = v.poll_timeout();
            v.handle_timeout(*now);
        }
        assert!(v.is_up());
        v
    }

    #[test]
    fn claim_layout_parses_back() {
        let f = build(&ME, 0x1234, Subcode::CLAIM_NOTIFY, ALL_VN2VN_MACS, 2158);
        assert_eq!(&f[12..14], &[0x89, 0x14]);
        assert_eq!(&f[14..24], &[0x10, 0, 0, 5, 0, 3, 0, 52, 0, 0], "VN2VN claim, 52 words of descriptors");
        assert_eq!(&f[24..32], &[2, 2, 2, 0, 0, 0, 0, 1]);
        assert_eq!(&f[44..52], &[11, 5, 0x0e, 0xfd, 0x00, 0x00, 0x12, 0x34]);
        let v = VnFrame::parse(&f).unwrap();
        assert_eq!((v.subcode, v.port_id, v.wwpn, v.wwnn), (Subcode::CLAIM_NOTIFY, 0x1234, ME.wwpn, ME.wwnn));
        assert_eq!((v.vn_mac, v.fcoe_size, v.fcp), (vn_mac(0x1234), Some(2158), Some((true, false))));
        let b = build(&ME, 7, Subcode::BEACON, ALL_VN2VN_MACS, 0);
        assert_eq!(b.len(), 64);
        assert_eq!(VnFrame::parse(&b).unwrap().fcoe_size, None);
    }

    #[test]
    fn malformed_fip_is_refused() {
        let good = build(&ME, 7, Subcode::CLAIM_REP, PEER.mac, 2000);
        assert!(VnFrame::parse(&good).is_ok());
        for cut in [0, 13, 20, 60, good.len() - 1] {
            assert!(VnFrame::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = good.clone();
        bad[14] = 0x20;
        assert!(matches!(VnFrame::parse(&bad), Err(FipError::Version(0x20))));
        bad = good.clone();
        bad[17] = 4;
        assert!(matches!(VnFrame::parse(&bad), Err(FipError::Operation(4, 4))));
        bad = good.clone();
        bad[25] = 3; // MAC descriptor length
        assert!(matches!(VnFrame::parse(&bad), Err(FipError::Descriptor(2, _))));
        bad = good.clone();
        bad[26] = 1; // multicast ENode MAC
        assert!(VnFrame::parse(&bad).is_err());
        // A beacon with claim-only descriptors.
        bad = good.clone();
        bad[19] = 5;
        assert!(VnFrame::parse(&bad).is_err());
    }

    #[test]
    fn probe_claim_beacon_sequence_with_linux_timing() {
        let mut now = 1000;
        let mut v = Vn2Vn::new(ME, now);
        assert_eq!(v.port_id(), 0);
        assert!(v.poll_timeout() < now + PROBE_WAIT);
        now = v.poll_timeout();
        v.handle_timeout(now);
        let f = drain(&mut v);
        assert_eq!((f.len(), f[0].subcode, f[0].dst, f[0].port_id), (1, Subcode::PROBE_REQ, ALL_VN2VN_MACS, 0x1234));
        assert_eq!(v.poll_timeout(), now + PROBE_WAIT);
        now += PROBE_WAIT;
        v.handle_timeout(now);
        assert_eq!(drain(&mut v)[0].subcode, Subcode::PROBE_REQ);
        now += ANN_WAIT;
        v.handle_timeout(now);
        assert_eq!(drain(&mut v)[0].subcode, Subcode::CLAIM_NOTIFY);
        assert_eq!(v.poll_event(), Some(Vn2VnEvent::PortId(0x1234)));
        assert_eq!(v.port_id(), 0x1234);
        now += ANN_WAIT;
        v.handle_timeout(now);
        assert_eq!(drain(&mut v)[0].subcode, Subcode::BEACON);
        assert!(v.is_up());
        assert_eq!(v.poll_timeout(), now + ANN_WAIT);
        now += ANN_WAIT;
        v.handle_timeout(now);
        assert_eq!(drain(&mut v)[0].subcode, Subcode::BEACON);
        let next = v.poll_timeout();
        assert!((now + BEACON_INT..now + BEACON_INT + BEACON_FUZZ).contains(&next));
    }

    #[test]
    fn peer_claim_beacon_and_age_out() {
        let mut now = 0;
        let mut v = up(&mut now);
        drain(&mut v);
        while v.poll_event().is_some() {}
        v.handle_frame(now, &build(&PEER, 0x42, Subcode::CLAIM_NOTIFY, ALL_VN2VN_MACS, 2000)).unwrap();
        let f = drain(&mut v);
        assert_eq!((f[0].subcode, f[0].dst, f[0].fcoe_size), (Subcode::CLAIM_REP, PEER.mac, Some(2000)));
        assert_eq!(v.poll_event(), None, "no login before its beacon");
        v.handle_frame(now, &build(&PEER, 0x42, Subcode::BEACON, ALL_VN2VN_MACS, 0)).unwrap();
        let Some(Vn2VnEvent::PeerUp(p)) = v.poll_event() else { panic!("peer up") };
        assert_eq!((p.port_id, p.wwpn, p.vn_mac, p.enode_mac), (0x42, PEER.wwpn, vn_mac(0x42), PEER.mac));
        // Beacons keep it; silence for 2.5 intervals drops it.
        now += BEACON_INT;
        v.handle_frame(now, &build(&PEER, 0x42, Subcode::BEACON, ALL_VN2VN_MACS, 0)).unwrap();
        v.handle_timeout(now + BEACON_TIMEOUT - 1);
        assert_eq!(v.poll_event(), None);
        v.handle_timeout(now + BEACON_TIMEOUT);
        assert_eq!(v.poll_event(), Some(Vn2VnEvent::PeerDown(0x42)));
        assert!(v.peer(0x42).is_none());
    }

    #[test]
    fn conflicts_resolve_by_wwpn() {
        let mut now = 0;
        let mut v = up(&mut now);
        drain(&mut v);
        while v.poll_event().is_some() {}
        // A probe for our ID: we defend it.
        v.handle_frame(now, &build(&PEER, 0x1234, Subcode::PROBE_REQ, ALL_VN2VN_MACS, 0)).unwrap();
        assert_eq!(drain(&mut v)[0].subcode, Subcode::PROBE_REP);
        // A claim of our ID from a lower WWPN: we claim again.
        v.handle_frame(now, &build(&PEER, 0x1234, Subcode::CLAIM_NOTIFY, ALL_VN2VN_MACS, 0)).unwrap();
        assert_eq!(drain(&mut v)[0].subcode, Subcode::CLAIM_NOTIFY);
        assert!(v.is_up());
        // From a higher WWPN: we give the ID up and probe for another.
        let big = VnIdentity { wwpn: u64::MAX, ..PEER };
        v.handle_frame(now, &build(&big, 0x1234, Subcode::CLAIM_NOTIFY, ALL_VN2VN_MACS, 0)).unwrap();
        assert_eq!(v.poll_event(), Some(Vn2VnEvent::PortIdLost));
        assert!(!v.is_up());
        assert_eq!(v.port_id(), 0);
        for _ in 0..3 {
            now = v.poll_timeout();
            v.handle_timeout(now);
        }
        let Some(Vn2VnEvent::PortId(id)) = v.poll_event() else { panic!("a new ID") };
        assert_ne!(id, 0x1234);
        // While probing, a probe reply for our candidate ID restarts the probe.
        let mut w = Vn2Vn::new(ME, 0);
        w.handle_timeout(w.poll_timeout());
        drain(&mut w);
        w.handle_frame(0, &build(&PEER, 0x1234, Subcode::PROBE_REP, ME.mac, 0)).unwrap();
        assert!(!w.is_up());
        w.handle_timeout(w.poll_timeout());
        assert_ne!(drain(&mut w)[0].port_id, 0x1234, "probing for another ID");
    }
}
