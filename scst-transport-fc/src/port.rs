//! The sans-IO FC target port: remote port logins, the exchange manager and FCP execution
//! through [`scst::Session`].
//!
//! [`FcPort`] takes received frames ([`FcPort::handle_frame`]) and the time
//! ([`FcPort::handle_timeout`]) and produces frames ([`FcPort::poll_transmit`]) and events
//! ([`FcPort::poll_event`]). It does no I/O. Commands the core completes on another thread
//! (a device worker) come back through the port's [`TargetDriver`], which queues them and calls
//! the waker set with [`FcPort::set_waker`]; the owner then calls [`FcPort::process_async`]
//! (also done by `poll_transmit`) on the port's own thread.
//!
//! Exchanges: FCP and task management exchanges the initiator originates get an RX_ID from
//! this port; ELS replies go out with RX_ID FFFFh and keep no state. ELS the port originates
//! (PLOGI in point-to-multipoint logins, LOGO to ports that send FCP commands without a login,
//! PRLO to ports without a process login) get an OX_ID from the same space. An exchange aborted
//! with ABTS stays recovery-qualified after the BA_ACC until RRQ or R_A_TOV.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use scst::{
    CmdBox, CmdHeader, DataDir, ProtocolId, ScsiStatus, Session, SessionConfig, Step, Target, TargetDriver, TargetPort,
    TaskAttr, TmFunction, TmOutcome, TmRequest, TmResponse, TmStatus,
};

use crate::WireError;
use crate::bls::{self, BaAcc, BaRjtExplanation, BaRjtReason};
use crate::els::{self, ElsCmd, Login, PrliResponse, RjtExplanation, RjtReason, ServiceParams};
use crate::fcp::{FcpCmnd, FcpRsp, FcpTaskAttr, RspCode, XferRdy, tm_flags};
use crate::frame::{FCtl, FLOGI_DID, FcType, Frame, FrameHeader, HEADER_LEN, HeaderBuilder, RCtl, XID_UNKNOWN};

/// Smallest receive data field size FC-LS allows.
pub const MIN_PAYLOAD: u16 = 256;
/// Largest FC frame payload.
pub const MAX_PAYLOAD: u16 = 2112;

/// Configuration of a target port.
#[derive(Clone, Debug)]
pub struct PortConfig {
    /// Our N_Port_Name.
    pub wwpn: u64,
    /// Our Node_Name.
    pub wwnn: u64,
    /// Our N_Port ID (assigned by FLOGI in a fabric, by FIP VN2VN claim, or fixed in
    /// point-to-point). Frames to another D_ID are dropped.
    pub port_id: u32,
    /// Largest frame payload we receive (our receive data field size, 256..=2112). Data-In
    /// frames are split at the smaller of this and the remote port's size.
    pub max_payload: u16,
    /// Largest write burst one FCP_XFER_RDY solicits.
    pub max_burst: u32,
    /// Commands one remote port may have outstanding (its session's depth).
    pub queue_depth: usize,
    /// Most exchanges open at once on the port.
    pub max_exchanges: usize,
    /// E_D_TOV in ms.
    pub e_d_tov_ms: u32,
    /// R_A_TOV in ms.
    pub r_a_tov_ms: u32,
    /// How long a write may wait for its next data frame before it fails (ms).
    pub data_timeout_ms: u64,
    /// Relative target port identifier (VPD 83h).
    pub rel_port_id: u16,
    /// ALUA target port group.
    pub tpg_id: u16,
}

impl PortConfig {
    /// Defaults for a port with these names: 2048-byte frames, 256 KiB bursts, E_D_TOV 2 s,
    /// R_A_TOV 10 s (Linux's defaults), port ID unassigned (0).
    pub fn new(wwpn: u64, wwnn: u64) -> Self {
        Self {
            wwpn,
            wwnn,
            port_id: 0,
            max_payload: 2048,
            max_burst: 256 * 1024,
            queue_depth: 128,
            max_exchanges: 4096,
            e_d_tov_ms: 2000,
            r_a_tov_ms: 10_000,
            data_timeout_ms: 10_000,
            rel_port_id: 1,
            tpg_id: 0,
        }
    }
}

/// `21:00:00:24:ff:31:4c:2a`: how FC port names are written, and the form
/// [`scst::pr`] parses FC TransportIDs from (the initiator name of FC sessions).
pub fn wwn_string(wwn: u64) -> String {
    let b = wwn.to_be_bytes();
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// The node name a port named `wwpn` gets when none is given: the port name with its first
/// hex digit (the NAA) 1.
pub fn default_wwnn(wwpn: u64) -> u64 {
    wwpn & !(0xf << 60) | 1 << 60
}

/// Parses a WWN written `0x2000001122334455`, `2000001122334455` or `20:00:00:11:22:33:44:55`.
pub fn parse_wwn(s: &str) -> Option<u64> {
    let hex: String = s.strip_prefix("0x").unwrap_or(s).chars().filter(|&c| c != ':').collect();
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(&hex, 16).ok()
}

/// What happened on the port, for the link and the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortEvent {
    /// A remote port sent FLOGI (point-to-point or VN2VN) and was accepted.
    FlogiAccepted {
        /// Its N_Port ID.
        port_id: u32,
        /// Its N_Port_Name.
        wwpn: u64,
    },
    /// N_Port login completed (either side's PLOGI).
    LoggedIn {
        /// Its N_Port ID.
        port_id: u32,
        /// Its N_Port_Name.
        wwpn: u64,
    },
    /// FCP process login completed: the I_T nexus exists.
    ProcessLoggedIn {
        /// Its N_Port ID.
        port_id: u32,
        /// Its N_Port_Name.
        wwpn: u64,
    },
    /// The I_T nexus ended (PRLO, LOGO, a new PLOGI, link down).
    ProcessLoggedOut {
        /// Its N_Port ID.
        port_id: u32,
    },
    /// The N_Port login ended.
    LoggedOut {
        /// Its N_Port ID.
        port_id: u32,
    },
    /// An ELS this port originated was rejected or timed out.
    ElsFailed {
        /// The destination.
        port_id: u32,
        /// The request.
        cmd: ElsCmd,
    },
}

/// A logged-in remote port, as [`FcPort::remote_ports`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemotePortInfo {
    /// N_Port ID.
    pub port_id: u32,
    /// N_Port_Name.
    pub wwpn: u64,
    /// Node_Name.
    pub wwnn: u64,
    /// Largest payload of the frames sent to it.
    pub max_payload: usize,
    /// Whether the FCP process login (the I_T nexus) exists.
    pub session: bool,
}

/// Why a received frame was not processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RxError {
    /// The frame or its payload did not parse (a reject was sent where FC asks for one).
    #[error("malformed frame: {0}")]
    Malformed(#[from] WireError),
    /// Addressed to another port.
    #[error("frame for D_ID {0:06x}")]
    NotForUs(u32),
    /// A frame this port does not handle (R_CTL/TYPE combination), or for no known exchange.
    #[error("unexpected frame: {0}")]
    Unexpected(&'static str),
}

enum Async {
    Response(CmdBox),
    TmDone(TmResponse),
    AbortPending(u64),
    /// Management closes the session `session` of the remote port `port_id` (a LOGO to it).
    Close {
        port_id: u32,
        session: u64,
    },
}

type Waker = Arc<dyn Fn() + Send + Sync>;

/// What the core's threads share with the port: completions waiting for the port's thread.
struct Shared {
    queue: Mutex<VecDeque<Async>>,
    waker: Mutex<Option<Waker>>,
}

impl Shared {
    fn push(&self, a: Async) {
        self.queue.lock().push_back(a);
        let w = self.waker.lock().clone();
        if let Some(w) = w {
            w();
        }
    }
}

/// The port's fabric as one session (one remote port's process login) sees it. Tags are
/// exchange tags (see [`Exchange::tag`]).
struct Driver {
    shared: Arc<Shared>,
    port_id: u32,
    wwpn: u64,
    max_payload: usize,
    /// The session's id, set once it is registered.
    session: std::sync::OnceLock<u64>,
}

impl TargetDriver for Driver {
    fn xmit_response(&self, cmd: CmdBox) {
        self.shared.push(Async::Response(cmd));
    }
    fn tm_done(&self, rsp: TmResponse) {
        self.shared.push(Async::TmDone(rsp));
    }
    fn abort_pending(&self, tag: u64) {
        self.shared.push(Async::AbortPending(tag));
    }
    fn parameters(&self) -> Vec<(String, String)> {
        vec![
            ("Port_ID".to_string(), format!("{:06x}", self.port_id)),
            ("WWPN".to_string(), wwn_string(self.wwpn)),
            ("MaxPayload".to_string(), self.max_payload.to_string()),
        ]
    }
    /// The port sends LOGO to the initiator's port and forgets its login (the initiator may
    /// log in again).
    fn close_session(&self) -> bool {
        let Some(&session) = self.session.get() else { return false };
        self.shared.push(Async::Close { port_id: self.port_id, session });
        true
    }
}

/// Tag bit of the internal ABORT TASK an ABTS issues.
const ABTS_TAG: u64 = 1 << 63;

struct RemotePort {
    wwpn: u64,
    wwnn: u64,
    /// Largest payload of frames we send it.
    max_payload: usize,
    logged_in: bool,
    session: Option<Arc<Session>>,
}

struct WriteState {
    cmd: CmdBox,
    /// Bytes the core wants.
    want: u32,
    burst_start: u32,
    burst_end: u32,
    /// Received byte ranges of the current burst, sorted, merged.
    got: Vec<(u32, u32)>,
}

enum XState {
    /// The core owns the command; its response comes through the driver.
    Core,
    /// Waiting for write data.
    Data(Box<WriteState>),
    /// A task management function waiting for the core.
    Tmf,
    /// ABTS received; BA_ACC waits for the aborted command's release.
    Aborting { seq_id: u8 },
    /// Aborted and answered; the OX_ID/RX_ID stay reserved until RRQ or the exchange's
    /// deadline (R_A_TOV).
    Qualified,
}

struct Exchange {
    s_id: u32,
    ox_id: u16,
    /// `generation << 16 | rx_id`: the core's tag of the command or function.
    tag: u64,
    /// The command's LUN (FCP_CMND): an ABTS aborts the task by tag *and* LUN.
    lun: [u8; 8],
    state: XState,
    deadline: Option<u64>,
}

struct Originated {
    d_id: u32,
    cmd: ElsCmd,
    deadline: u64,
}

/// A sans-IO Fibre Channel target port (one N_Port / VN_Port).
pub struct FcPort {
    cfg: PortConfig,
    target: Arc<Target>,
    tport: Arc<TargetPort>,
    shared: Arc<Shared>,
    rports: HashMap<u32, RemotePort>,
    exchanges: HashMap<u16, Exchange>,
    by_ox: HashMap<(u32, u16), u16>,
    originated: HashMap<u16, Originated>,
    next_xid: u16,
    generation: u64,
    seq_ids: u8,
    now: u64,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<PortEvent>,
}

impl std::fmt::Debug for FcPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcPort")
            .field("wwpn", &wwn_string(self.cfg.wwpn))
            .field("port_id", &format_args!("{:06x}", self.cfg.port_id))
            .field("rports", &self.rports.len())
            .field("exchanges", &self.exchanges.len())
            .finish()
    }
}

fn round_payload(n: u16) -> u16 {
    n.clamp(MIN_PAYLOAD, MAX_PAYLOAD) & !3
}

impl FcPort {
    /// A port serving `target`'s LUNs.
    pub fn new(mut cfg: PortConfig, target: Arc<Target>) -> Self {
        cfg.max_payload = round_payload(cfg.max_payload);
        cfg.max_burst = cfg.max_burst.max(u32::from(cfg.max_payload));
        cfg.queue_depth = cfg.queue_depth.max(1);
        let tport = Arc::new(TargetPort {
            protocol: ProtocolId::FC,
            rel_port_id: cfg.rel_port_id,
            name: format!("naa.{:016X}", cfg.wwpn),
            version_descriptor: 0x0a40,
            tpg_id: cfg.tpg_id,
        });
        let shared = Arc::new(Shared { queue: Mutex::new(VecDeque::new()), waker: Mutex::new(None) });
        Self {
            cfg,
            target,
            tport,
            shared,
            rports: HashMap::new(),
            exchanges: HashMap::new(),
            by_ox: HashMap::new(),
            originated: HashMap::new(),
            next_xid: 0,
            generation: 0,
            seq_ids: 0,
            now: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration (with the payload size rounded as used).
    pub fn config(&self) -> &PortConfig {
        &self.cfg
    }

    /// The SCSI target port sessions of this port arrive through.
    pub fn target_port(&self) -> &Arc<TargetPort> {
        &self.tport
    }

    /// Our N_Port ID.
    pub fn port_id(&self) -> u32 {
        self.cfg.port_id
    }

    /// Sets our N_Port ID (after a fabric or VN2VN assigned one). Existing logins end.
    pub fn set_port_id(&mut self, id: u32) {
        if id != self.cfg.port_id {
            self.link_down();
            self.cfg.port_id = id & 0x00ff_ffff;
        }
    }

    /// Sets the function called (on any thread) when completions wait for
    /// [`FcPort::process_async`].
    pub fn set_waker(&mut self, waker: impl Fn() + Send + Sync + 'static) {
        *self.shared.waker.lock() = Some(Arc::new(waker));
    }

    /// The next frame to send (header and payload, fill included; the link adds SOF/EOF/CRC).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            self.process_async();
        }
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<PortEvent> {
        self.events.pop_front()
    }

    /// Remote ports logged in, by N_Port ID.
    pub fn remote_ports(&self) -> Vec<RemotePortInfo> {
        let mut v: Vec<_> = self
            .rports
            .iter()
            .filter(|(_, r)| r.logged_in)
            .map(|(&port_id, r)| RemotePortInfo {
                port_id,
                wwpn: r.wwpn,
                wwnn: r.wwnn,
                max_payload: r.max_payload,
                session: r.session.is_some(),
            })
            .collect();
        v.sort_unstable_by_key(|r| r.port_id);
        v
    }

    /// Open exchanges (commands in flight, aborts waiting, recovery qualifiers).
    pub fn open_exchanges(&self) -> usize {
        self.exchanges.len()
    }

    /// The FCP session of a remote port.
    pub fn session(&self, port_id: u32) -> Option<&Arc<Session>> {
        self.rports.get(&port_id).and_then(|r| r.session.as_ref())
    }

    /// The earliest time [`FcPort::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        let ex = self.exchanges.values().filter_map(|e| e.deadline);
        let or = self.originated.values().map(|o| o.deadline);
        ex.chain(or).min()
    }

    /// Runs the timers due at `now` (ms, any monotonic origin): recovery qualifiers expire after
    /// R_A_TOV, writes whose data stopped fail with INITIATOR RESPONSE TIMEOUT, ELS requests
    /// without a reply in 2 R_A_TOV fail.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
        let now = self.now;
        let due: Vec<u16> =
            self.exchanges.iter().filter(|(_, e)| e.deadline.is_some_and(|d| d <= now)).map(|(&x, _)| x).collect();
        for rx in due {
            let Some(ex) = self.exchanges.get_mut(&rx) else { continue };
            ex.deadline = None;
            match std::mem::replace(&mut ex.state, XState::Core) {
                XState::Qualified => self.free_exchange(rx),
                XState::Data(w) => {
                    let mut cmd = w.cmd;
                    tracing::debug!(rx, "write data timeout");
                    cmd.check_condition(scst::SenseCode::INITIATOR_RESPONSE_TIMEOUT);
                    self.send_response(rx, cmd);
                }
                other => ex.state = other,
            }
        }
        let late: Vec<u16> = self.originated.iter().filter(|(_, o)| o.deadline <= now).map(|(&x, _)| x).collect();
        for ox in late {
            if let Some(o) = self.originated.remove(&ox) {
                self.events.push_back(PortEvent::ElsFailed { port_id: o.d_id, cmd: o.cmd });
            }
        }
    }

    /// The link went down (or our address changed): every login ends, every command is dropped.
    pub fn link_down(&mut self) {
        let ids: Vec<u32> = self.rports.keys().copied().collect();
        for id in ids {
            self.logout(id);
        }
        let all: Vec<u16> = self.exchanges.keys().copied().collect();
        for rx in all {
            self.free_exchange(rx);
        }
        self.originated.clear();
    }

    /// Forgets a remote port whose link went away (a VN2VN peer that stopped beaconing): its
    /// login and I_T nexus end without any frame.
    pub fn forget_remote_port(&mut self, port_id: u32) {
        self.logout(port_id);
    }

    /// Sends PLOGI to `d_id` (the side with the higher WWPN does in point-to-point and VN2VN).
    pub fn originate_plogi(&mut self, d_id: u32) {
        let p = self.service_params().build(ElsCmd::PLOGI, false);
        self.originate_els(d_id, ElsCmd::PLOGI, &p);
    }

    /// Sends FLOGI to `d_id` (a VN2VN or point-to-point peer; [`FLOGI_DID`] for a fabric).
    pub fn originate_flogi(&mut self, d_id: u32) {
        let p = self.service_params().build(ElsCmd::FLOGI, true);
        self.originate_els(d_id, ElsCmd::FLOGI, &p);
    }

    /// Sends LOGO to `d_id` and forgets its login at once.
    pub fn originate_logo(&mut self, d_id: u32) {
        let p = els::build_logo(self.cfg.port_id, self.cfg.wwpn);
        self.originate_els(d_id, ElsCmd::LOGO, &p);
        self.logout(d_id);
    }

    /// Handles one received frame (header and payload, without SOF/EOF/CRC) at time `now` (ms).
    ///
    /// # Errors
    /// Why the frame was not processed. The port is fine either way; rejects that FC asks for
    /// have been queued.
    pub fn handle_frame(&mut self, now: u64, frame: &[u8]) -> Result<(), RxError> {
        self.now = self.now.max(now);
        let f = Frame::parse(frame)?;
        let h = f.header();
        let p = f.payload();
        let d_id = h.d_id();
        let flogi = h.r_ctl() == RCtl::ELS_REQ && p.first() == Some(&ElsCmd::FLOGI.0);
        if d_id != self.cfg.port_id && !(flogi && d_id == FLOGI_DID) {
            return Err(RxError::NotForUs(d_id));
        }
        let from_responder = h.f_ctl().has(FCtl::EX_CTX);
        let r = match (h.fc_type(), h.r_ctl()) {
            (FcType::ELS, RCtl::ELS_REQ) if !from_responder => self.els_request(&h, p),
            (FcType::ELS, RCtl::ELS_REP) if from_responder => self.els_reply(&h, p),
            (FcType::BLS, RCtl::BA_ABTS) if !from_responder => self.abts(&h),
            (FcType::BLS, RCtl::BA_ACC | RCtl::BA_RJT) => Err(RxError::Unexpected("BLS reply to nothing sent")),
            (FcType::FCP, RCtl::UNSOL_CMD) if !from_responder => self.fcp_cmnd(&h, p),
            (FcType::FCP, RCtl::SOL_DATA) if !from_responder => self.fcp_data(&h, p),
            _ => Err(RxError::Unexpected("R_CTL/TYPE not handled")),
        };
        self.process_async();
        r
    }

    /// Turns completions the core queued from other threads into frames. Call it after the
    /// waker fired ([`FcPort::poll_transmit`] calls it when nothing else is queued).
    pub fn process_async(&mut self) {
        loop {
            let item = self.shared.queue.lock().pop_front();
            match item {
                None => break,
                Some(Async::Response(cmd)) => {
                    let rx = (cmd.tag() & 0xffff) as u16;
                    match self.exchanges.get(&rx) {
                        Some(e) if e.tag == cmd.tag() && matches!(e.state, XState::Core) => self.send_response(rx, cmd),
                        // Aborted (ABTS), or the nexus is gone: nothing to send.
                        _ => drop(cmd),
                    }
                }
                Some(Async::AbortPending(tag)) => {
                    let rx = (tag & 0xffff) as u16;
                    let Some(e) = self.exchanges.get_mut(&rx).filter(|e| e.tag == tag) else { continue };
                    if let XState::Data(_) = e.state {
                        let XState::Data(w) = std::mem::replace(&mut e.state, XState::Core) else { continue };
                        self.send_response(rx, w.cmd);
                    }
                }
                Some(Async::Close { port_id, session }) => {
                    // Not a later login of the same port.
                    if self.rports.get(&port_id).and_then(|r| r.session.as_ref()).is_some_and(|s| s.id() == session) {
                        tracing::info!(port_id = format_args!("{port_id:06x}"), "closing the session: LOGO");
                        self.originate_logo(port_id);
                    }
                }
                Some(Async::TmDone(rsp)) => {
                    let rx = (rsp.tag & 0xffff) as u16;
                    let tag = rsp.tag & !ABTS_TAG;
                    let Some(e) = self.exchanges.get(&rx).filter(|e| e.tag == tag) else { continue };
                    match e.state {
                        XState::Aborting { seq_id } if rsp.tag & ABTS_TAG != 0 => self.ba_acc(rx, seq_id),
                        XState::Tmf if rsp.tag & ABTS_TAG == 0 => {
                            self.send_tm_rsp(rx, rsp.status);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    fn service_params(&self) -> ServiceParams {
        ServiceParams {
            wwpn: self.cfg.wwpn,
            wwnn: self.cfg.wwnn,
            rdfs: self.cfg.max_payload,
            bb_credit: 10,
            e_d_tov_ms: self.cfg.e_d_tov_ms,
            r_a_tov_ms: self.cfg.r_a_tov_ms,
            concurrent_seqs: 255,
        }
    }

    fn next_seq_id(&mut self) -> u8 {
        self.seq_ids = self.seq_ids.wrapping_add(1);
        self.seq_ids
    }

    /// A free exchange id (not FFFFh, not used by an open exchange either way).
    fn alloc_xid(&mut self) -> Option<u16> {
        if self.exchanges.len() + self.originated.len() >= self.cfg.max_exchanges.min(0xfff0) {
            return None;
        }
        loop {
            let x = self.next_xid;
            self.next_xid = if x >= 0xfffe { 0 } else { x + 1 };
            if !self.exchanges.contains_key(&x) && !self.originated.contains_key(&x) {
                return Some(x);
            }
        }
    }

    fn queue(&mut self, hb: HeaderBuilder, payload: &[u8]) {
        self.out.push_back(hb.frame(payload));
    }

    /// The reply header to a request frame: same exchange, toggled exchange context, ending the
    /// exchange.
    fn reply_to(&mut self, h: &FrameHeader<'_>, r_ctl: RCtl, fc_type: FcType, rx_id: u16) -> HeaderBuilder {
        HeaderBuilder {
            r_ctl: r_ctl.0,
            d_id: h.s_id(),
            s_id: self.cfg.port_id,
            fc_type: fc_type.0,
            f_ctl: FCtl::EX_CTX | FCtl::LAST_SEQ | FCtl::END_SEQ,
            seq_id: self.next_seq_id(),
            ox_id: h.ox_id(),
            rx_id,
            ..Default::default()
        }
    }

    fn els_reply_frame(&mut self, h: &FrameHeader<'_>, payload: &[u8]) {
        let hb = self.reply_to(h, RCtl::ELS_REP, FcType::ELS, XID_UNKNOWN);
        self.queue(hb, payload);
    }

    fn ls_rjt(&mut self, h: &FrameHeader<'_>, reason: RjtReason, expl: RjtExplanation) {
        self.els_reply_frame(h, &els::build_ls_rjt(reason, expl));
    }

    fn originate_els(&mut self, d_id: u32, cmd: ElsCmd, payload: &[u8]) {
        let Some(ox) = self.alloc_xid() else {
            self.events.push_back(PortEvent::ElsFailed { port_id: d_id, cmd });
            return;
        };
        let deadline = self.now + 2 * u64::from(self.cfg.r_a_tov_ms);
        self.originated.insert(ox, Originated { d_id, cmd, deadline });
        let hb = HeaderBuilder {
            r_ctl: RCtl::ELS_REQ.0,
            d_id,
            s_id: self.cfg.port_id,
            fc_type: FcType::ELS.0,
            f_ctl: FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT,
            seq_id: self.next_seq_id(),
            ox_id: ox,
            rx_id: XID_UNKNOWN,
            ..Default::default()
        };
        self.queue(hb, payload);
    }

    // ---- ELS ----

    fn els_request(&mut self, h: &FrameHeader<'_>, p: &[u8]) -> Result<(), RxError> {
        let cmd = match els::command(p) {
            Ok(c) => c,
            Err(e) => {
                self.ls_rjt(h, RjtReason::PROTOCOL_ERROR, RjtExplanation::INVALID_LENGTH);
                return Err(e.into());
            }
        };
        let s_id = h.s_id();
        let logged_in = self.rports.get(&s_id).is_some_and(|r| r.logged_in);
        let invalid = |port: &mut Self, e: WireError| {
            port.ls_rjt(h, RjtReason::PROTOCOL_ERROR, RjtExplanation::INVALID_LENGTH);
            Err(RxError::Malformed(e))
        };
        match cmd {
            ElsCmd::FLOGI | ElsCmd::PLOGI => {
                let l = match Login::parse(p) {
                    Ok(l) => l,
                    Err(e) => return invalid(self, e),
                };
                let peer_max = l.max_payload();
                if peer_max < MIN_PAYLOAD {
                    self.ls_rjt(h, RjtReason::UNABLE, RjtExplanation::SPP_OPTIONS);
                    return Err(RxError::Malformed(WireError::Invalid {
                        what: "receive data field size",
                        value: u32::from(peer_max),
                    }));
                }
                if cmd == ElsCmd::FLOGI {
                    if l.features() & els::features::F_PORT != 0 {
                        // A fabric's FLOGI accept is a reply, never a request.
                        self.ls_rjt(h, RjtReason::UNSUPPORTED, RjtExplanation::NONE);
                        return Err(RxError::Unexpected("FLOGI from an F_Port"));
                    }
                    let acc = self.service_params().build(ElsCmd::LS_ACC, true);
                    self.els_reply_frame(h, &acc);
                    let wwpn = l.wwpn();
                    // A FLOGI starts the peer's login over (it restarted): the old N_Port login
                    // and its I_T nexus end.
                    if logged_in {
                        self.logout(s_id);
                    }
                    self.events.push_back(PortEvent::FlogiAccepted { port_id: s_id, wwpn });
                    // Point-to-multipoint (VN2VN) and point-to-point: the port with the higher
                    // N_Port_Name originates PLOGI (FC-LS-3 §6.6.2; libfc's rport FLOGI state).
                    if self.cfg.wwpn > wwpn {
                        self.originate_plogi(s_id);
                    }
                    return Ok(());
                }
                // PLOGI: an existing login (and its I_T nexus) ends implicitly.
                if self.rports.contains_key(&s_id) {
                    self.logout(s_id);
                }
                self.login(s_id, &l);
                let acc = self.service_params().build(ElsCmd::LS_ACC, false);
                self.els_reply_frame(h, &acc);
                Ok(())
            }
            ElsCmd::LOGO => {
                if let Err(e) = els::Logo::parse(p) {
                    return invalid(self, e);
                }
                // Accepted whether or not the port was logged in (FC-LS-3 §4.2.x; libfc too).
                self.els_reply_frame(h, &els::LS_ACC);
                if self.rports.contains_key(&s_id) {
                    self.logout(s_id);
                }
                Ok(())
            }
            _ if !logged_in => {
                self.ls_rjt(h, RjtReason::UNABLE, RjtExplanation::PLOGI_REQUIRED);
                Err(RxError::Unexpected("ELS from a port not logged in"))
            }
            ElsCmd::PRLI => {
                let v = match els::Prli::parse(p) {
                    Ok(v) => v,
                    Err(e) => return invalid(self, e),
                };
                let code = self.prli(s_id, &v);
                let flags = (v.flags() & els::SPP_ESTABLISH_IMAGE_PAIR) | code.0;
                let params = if v.fc4_type() == els::TYPE_FCP {
                    els::fcp_params::TARGET | els::fcp_params::READ_XFER_RDY_DISABLED
                } else {
                    0
                };
                let mut acc = els::build_prli(ElsCmd::LS_ACC, flags, params);
                acc[4] = v.fc4_type();
                self.els_reply_frame(h, &acc);
                Ok(())
            }
            ElsCmd::PRLO => {
                let v = match els::Prli::parse(p) {
                    Ok(v) => v,
                    Err(e) => return invalid(self, e),
                };
                if v.fc4_type() == els::TYPE_FCP {
                    self.process_logout(s_id);
                }
                let mut acc = els::build_prli(ElsCmd::LS_ACC, PrliResponse::EXECUTED.0, 0);
                acc[4] = v.fc4_type();
                self.els_reply_frame(h, &acc);
                Ok(())
            }
            ElsCmd::ADISC => {
                if let Err(e) = els::Adisc::parse(p) {
                    return invalid(self, e);
                }
                let acc = els::build_adisc(ElsCmd::LS_ACC, self.cfg.wwpn, self.cfg.wwnn, self.cfg.port_id);
                self.els_reply_frame(h, &acc);
                Ok(())
            }
            ElsCmd::RRQ => {
                let v = match els::Rrq::parse(p) {
                    Ok(v) => v,
                    Err(e) => return invalid(self, e),
                };
                let found = self
                    .by_ox
                    .get(&(v.originator(), v.ox_id()))
                    .copied()
                    .filter(|rx| v.rx_id() == XID_UNKNOWN || v.rx_id() == *rx)
                    .filter(|rx| matches!(self.exchanges.get(rx).map(|e| &e.state), Some(XState::Qualified)));
                match found {
                    Some(rx) => {
                        self.free_exchange(rx);
                        self.els_reply_frame(h, &els::LS_ACC);
                    }
                    None => self.ls_rjt(h, RjtReason::UNABLE, RjtExplanation::OX_RX_ID),
                }
                Ok(())
            }
            ElsCmd::ECHO => {
                let mut acc = p.to_vec();
                acc[0] = ElsCmd::LS_ACC.0;
                self.els_reply_frame(h, &acc);
                Ok(())
            }
            _ => {
                self.ls_rjt(h, RjtReason::UNSUPPORTED, RjtExplanation::NONE);
                Err(RxError::Unexpected("ELS not supported"))
            }
        }
    }

    fn els_reply(&mut self, h: &FrameHeader<'_>, p: &[u8]) -> Result<(), RxError> {
        let ox = h.ox_id();
        let Some(o) = self.originated.get(&ox).filter(|o| o.d_id == h.s_id()) else {
            return Err(RxError::Unexpected("ELS reply to nothing sent"));
        };
        let (d_id, cmd) = (o.d_id, o.cmd);
        self.originated.remove(&ox);
        let reply = els::command(p)?;
        if reply != ElsCmd::LS_ACC {
            self.events.push_back(PortEvent::ElsFailed { port_id: d_id, cmd });
            return Ok(());
        }
        match cmd {
            ElsCmd::PLOGI => {
                let l = Login::parse(p)?;
                if l.max_payload() < MIN_PAYLOAD {
                    self.events.push_back(PortEvent::ElsFailed { port_id: d_id, cmd });
                    return Ok(());
                }
                if self.rports.contains_key(&d_id) {
                    self.logout(d_id);
                }
                self.login(d_id, &l);
            }
            ElsCmd::FLOGI => {
                // Accepted: with the higher N_Port_Name we log in (again) with PLOGI.
                let l = Login::parse(p)?;
                if self.cfg.wwpn > l.wwpn() {
                    self.originate_plogi(d_id);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn login(&mut self, port_id: u32, l: &Login<'_>) {
        let max_payload = usize::from(l.max_payload().min(self.cfg.max_payload) & !3);
        self.rports.insert(
            port_id,
            RemotePort { wwpn: l.wwpn(), wwnn: l.wwnn(), max_payload, logged_in: true, session: None },
        );
        tracing::debug!(port_id, wwpn = %wwn_string(l.wwpn()), max_payload, "PLOGI complete");
        self.events.push_back(PortEvent::LoggedIn { port_id, wwpn: l.wwpn() });
    }

    /// PRLI for FCP: establishes the I_T nexus. Returns the accept's response code.
    fn prli(&mut self, s_id: u32, v: &els::Prli<'_>) -> PrliResponse {
        if v.fc4_type() != els::TYPE_FCP {
            return PrliResponse::INVALID_PARAMS;
        }
        if v.params() & els::fcp_params::INITIATOR == 0 {
            return PrliResponse::CONFIGURATION_PRECLUDES;
        }
        let Some(r) = self.rports.get_mut(&s_id) else { return PrliResponse::INIT_NOT_COMPLETE };
        let name = wwn_string(r.wwpn);
        if !self.target.admits(&name) {
            return PrliResponse::CONFIGURATION_PRECLUDES;
        }
        if v.flags() & els::SPP_ESTABLISH_IMAGE_PAIR == 0 || r.session.is_some() {
            // Nothing to establish, or the image pair exists already (its commands go on).
            return PrliResponse::EXECUTED;
        }
        let cfg = SessionConfig {
            initiator_name: name.clone(),
            initiator_port: name,
            port: self.tport.clone(),
            depth: self.cfg.queue_depth,
        };
        let driver = Arc::new(Driver {
            shared: self.shared.clone(),
            port_id: s_id,
            wwpn: r.wwpn,
            max_payload: r.max_payload,
            session: std::sync::OnceLock::new(),
        });
        let session = self.target.register_session(cfg, driver.clone());
        let _ = driver.session.set(session.id());
        r.session = Some(session);
        let wwpn = r.wwpn;
        self.events.push_back(PortEvent::ProcessLoggedIn { port_id: s_id, wwpn });
        PrliResponse::EXECUTED
    }

    /// Ends the I_T nexus of a port: its exchanges are dropped, its session closed.
    fn process_logout(&mut self, port_id: u32) {
        let mine: Vec<u16> = self.exchanges.iter().filter(|(_, e)| e.s_id == port_id).map(|(&x, _)| x).collect();
        for rx in mine {
            self.free_exchange(rx);
        }
        if let Some(s) = self.rports.get_mut(&port_id).and_then(|r| r.session.take()) {
            // Logout implicitly aborts the nexus's commands (FC-LS-3, FCP-4): those not yet
            // executing never will. The function's own response has nowhere to go.
            let _ = s.submit_tm(TmRequest { function: TmFunction::I_T_NEXUS_RESET, lun: [0; 8], ref_tag: 0, tag: 0 });
            s.close();
            self.events.push_back(PortEvent::ProcessLoggedOut { port_id });
        }
    }

    fn logout(&mut self, port_id: u32) {
        self.process_logout(port_id);
        if self.rports.remove(&port_id).is_some() {
            self.events.push_back(PortEvent::LoggedOut { port_id });
        }
    }

    fn free_exchange(&mut self, rx: u16) {
        if let Some(e) = self.exchanges.remove(&rx) {
            self.by_ox.remove(&(e.s_id, e.ox_id));
            // A held write command is dropped here (released to its session's pool).
            drop(e);
        }
    }

    // ---- BLS ----

    fn abts(&mut self, h: &FrameHeader<'_>) -> Result<(), RxError> {
        let key = (h.s_id(), h.ox_id());
        let Some(rx) = self.by_ox.get(&key).copied().filter(|rx| h.rx_id() == XID_UNKNOWN || h.rx_id() == *rx) else {
            let hb = self.reply_to(h, RCtl::BA_RJT, FcType::BLS, h.rx_id());
            self.queue(hb, &bls::build_ba_rjt(BaRjtReason::UNABLE, BaRjtExplanation::INVALID_XID));
            return Err(RxError::Unexpected("ABTS for no open exchange"));
        };
        let seq_id = h.seq_id();
        let Some(e) = self.exchanges.get_mut(&rx) else { return Err(RxError::Unexpected("exchange vanished")) };
        let (tag, lun) = (e.tag, e.lun);
        match std::mem::replace(&mut e.state, XState::Aborting { seq_id }) {
            XState::Data(w) => {
                // The command never reached execution: dropping it is the whole abort.
                drop(w);
                self.ba_acc(rx, seq_id);
            }
            XState::Core => {
                let session = self.rports.get(&key.0).and_then(|r| r.session.clone());
                let out = session.map(|s| {
                    s.submit_tm(TmRequest { function: TmFunction::ABORT_TASK, lun, ref_tag: tag, tag: tag | ABTS_TAG })
                });
                if !matches!(out, Some(TmOutcome::Pending)) {
                    self.ba_acc(rx, seq_id);
                }
            }
            XState::Aborting { .. } => {}
            XState::Tmf | XState::Qualified => self.ba_acc(rx, seq_id),
        }
        Ok(())
    }

    fn ba_acc(&mut self, rx: u16, seq_id: u8) {
        let until = self.now + u64::from(self.cfg.r_a_tov_ms);
        let Some(e) = self.exchanges.get_mut(&rx) else { return };
        e.state = XState::Qualified;
        e.deadline = Some(until);
        let (s_id, ox_id) = (e.s_id, e.ox_id);
        let hb = HeaderBuilder {
            r_ctl: RCtl::BA_ACC.0,
            d_id: s_id,
            s_id: self.cfg.port_id,
            fc_type: FcType::BLS.0,
            f_ctl: FCtl::EX_CTX | FCtl::LAST_SEQ | FCtl::END_SEQ,
            seq_id,
            ox_id,
            rx_id: rx,
            ..Default::default()
        };
        let acc = BaAcc { seq_id: None, ox_id, rx_id: rx, low_seq_cnt: 0, high_seq_cnt: 0xffff };
        self.queue(hb, &acc.build());
    }

    // ---- FCP ----

    fn fcp_cmnd(&mut self, h: &FrameHeader<'_>, p: &[u8]) -> Result<(), RxError> {
        let s_id = h.s_id();
        let Some(r) = self.rports.get(&s_id).filter(|r| r.logged_in) else {
            // FC-LS-3: frames from a port that is not logged in are discarded and answered
            // with LOGO.
            let logo = els::build_logo(self.cfg.port_id, self.cfg.wwpn);
            self.originate_els(s_id, ElsCmd::LOGO, &logo);
            return Err(RxError::Unexpected("FCP_CMND from a port not logged in"));
        };
        let Some(session) = r.session.clone() else {
            // No image pair: discard and end the process login (FCP-4).
            let prlo = els::build_prli(ElsCmd::PRLO, 0, 0);
            self.originate_els(s_id, ElsCmd::PRLO, &prlo);
            return Err(RxError::Unexpected("FCP_CMND without a process login"));
        };
        let key = (s_id, h.ox_id());
        if self.by_ox.contains_key(&key) {
            return Err(RxError::Unexpected("FCP_CMND on an open exchange"));
        }
        let Some(rx) = self.alloc_xid() else {
            self.status_only(h, XID_UNKNOWN, ScsiStatus::TASK_SET_FULL.0, None);
            return Err(RxError::Unexpected("no free exchange"));
        };
        let c = match FcpCmnd::parse(p) {
            Ok(c) => c,
            Err(e) => {
                self.status_only(h, rx, 0, Some(RspCode::CMND_FIELDS_INVALID));
                return Err(e.into());
            }
        };
        self.generation += 1;
        let tag = self.generation << 16 | u64::from(rx);
        let ex = Exchange { s_id, ox_id: h.ox_id(), tag, lun: c.lun(), state: XState::Core, deadline: None };
        if c.tm_flags() != 0 {
            let function = match c.tm_flags() {
                tm_flags::ABORT_TASK_SET => TmFunction::ABORT_TASK_SET,
                tm_flags::CLEAR_TASK_SET => TmFunction::CLEAR_TASK_SET,
                tm_flags::LUN_RESET => TmFunction::LUN_RESET,
                tm_flags::TARGET_RESET => TmFunction::TARGET_WARM_RESET,
                tm_flags::CLEAR_ACA => TmFunction::CLEAR_ACA,
                _ => {
                    self.status_only(h, rx, 0, Some(RspCode::CMND_FIELDS_INVALID));
                    return Err(RxError::Unexpected("task management flags"));
                }
            };
            self.exchanges.insert(rx, Exchange { state: XState::Tmf, ..ex });
            self.by_ox.insert(key, rx);
            match session.submit_tm(TmRequest { function, lun: c.lun(), ref_tag: 0, tag }) {
                TmOutcome::Done(rsp) => self.send_tm_rsp(rx, rsp.status),
                TmOutcome::Pending => {}
            }
            return Ok(());
        }
        let dir = match (c.read(), c.write()) {
            (false, false) => DataDir::None,
            (true, false) => DataDir::In,
            (false, true) => DataDir::Out,
            (true, true) => {
                // Bidirectional commands: the core has none.
                self.status_only(h, rx, 0, Some(RspCode::CMND_FIELDS_INVALID));
                return Err(RxError::Unexpected("bidirectional FCP_CMND"));
            }
        };
        let attr = match c.task_attr() {
            FcpTaskAttr::HEAD_OF_QUEUE => TaskAttr::HeadOfQueue,
            FcpTaskAttr::ORDERED => TaskAttr::Ordered,
            FcpTaskAttr::ACA => TaskAttr::Aca,
            _ => TaskAttr::Simple,
        };
        let hdr = CmdHeader { lun: c.lun(), cdb: c.cdb(), attr, tag, expected_len: c.data_len(), expected_dir: dir };
        let Ok(cmd) = session.alloc_cmd(&hdr) else {
            self.status_only(h, rx, ScsiStatus::TASK_SET_FULL.0, None);
            return Ok(());
        };
        self.exchanges.insert(rx, ex);
        self.by_ox.insert(key, rx);
        let step = session.submit(cmd);
        self.step(rx, step);
        Ok(())
    }

    /// A response on an exchange that keeps no state (the command never got a command object).
    fn status_only(&mut self, h: &FrameHeader<'_>, rx: u16, status: u8, code: Option<RspCode>) {
        let hb = self.reply_to(h, RCtl::CMD_STATUS, FcType::FCP, rx);
        let rsp = FcpRsp { status, rsp_code: code, ..Default::default() }.build();
        self.queue(hb, &rsp);
    }

    fn step(&mut self, rx: u16, step: Step) {
        match step {
            Step::Done(cmd) => self.send_response(rx, cmd),
            Step::Pending => {}
            Step::NeedData(cmd) => {
                let want = cmd.data_out_len() as u32;
                let Some(e) = self.exchanges.get_mut(&rx) else { return };
                e.state =
                    XState::Data(Box::new(WriteState { cmd, want, burst_start: 0, burst_end: 0, got: Vec::new() }));
                self.next_burst(rx);
            }
        }
    }

    fn next_burst(&mut self, rx: u16) {
        let deadline = self.now + self.cfg.data_timeout_ms;
        let max_burst = self.cfg.max_burst;
        let port_id = self.cfg.port_id;
        let seq_id = self.next_seq_id();
        let Some(e) = self.exchanges.get_mut(&rx) else { return };
        let XState::Data(w) = &mut e.state else { return };
        w.burst_start = w.burst_end;
        w.burst_end = w.want.min(w.burst_start.saturating_add(max_burst));
        w.got.clear();
        e.deadline = Some(deadline);
        let x = XferRdy { offset: w.burst_start, burst_len: w.burst_end - w.burst_start };
        let hb = HeaderBuilder {
            r_ctl: RCtl::DATA_DESC.0,
            d_id: e.s_id,
            s_id: port_id,
            fc_type: FcType::FCP.0,
            f_ctl: FCtl::EX_CTX | FCtl::END_SEQ | FCtl::SEQ_INIT,
            seq_id,
            ox_id: e.ox_id,
            rx_id: rx,
            ..Default::default()
        };
        self.queue(hb, &x.build());
    }

    fn fcp_data(&mut self, h: &FrameHeader<'_>, p: &[u8]) -> Result<(), RxError> {
        let key = (h.s_id(), h.ox_id());
        let Some(rx) = self.by_ox.get(&key).copied().filter(|rx| h.rx_id() == XID_UNKNOWN || h.rx_id() == *rx) else {
            return Err(RxError::Unexpected("FCP_DATA for no open exchange"));
        };
        let deadline = self.now + self.cfg.data_timeout_ms;
        let Some(e) = self.exchanges.get_mut(&rx) else { return Err(RxError::Unexpected("exchange vanished")) };
        let XState::Data(w) = &mut e.state else {
            return Err(RxError::Unexpected("FCP_DATA on an exchange not expecting data"));
        };
        if !h.f_ctl().has(FCtl::REL_OFF) {
            return Err(RxError::Unexpected("FCP_DATA without relative offset"));
        }
        let off = h.parameter();
        let Some(end) = u32::try_from(p.len()).ok().and_then(|n| off.checked_add(n)) else {
            return Err(RxError::Unexpected("FCP_DATA offset overflow"));
        };
        if off < w.burst_start || end > w.burst_end || p.is_empty() {
            // Outside the solicited burst: FCP-4 leaves it to the initiator's recovery.
            return Err(RxError::Unexpected("FCP_DATA outside the solicited burst"));
        }
        if let Some(buf) = w.cmd.buf_mut() {
            buf.write_at(off as usize, p);
        }
        add_range(&mut w.got, off, end);
        e.deadline = Some(deadline);
        let burst_done = w.got.first() == Some(&(w.burst_start, w.burst_end));
        if !burst_done {
            return Ok(());
        }
        if w.burst_end < w.want {
            self.next_burst(rx);
            return Ok(());
        }
        e.deadline = None;
        let XState::Data(w) = std::mem::replace(&mut e.state, XState::Core) else { return Ok(()) };
        let session = w.cmd.session().clone();
        let step = session.data_received(w.cmd);
        self.step(rx, step);
        Ok(())
    }

    /// Sends a finished command's Data-In and FCP_RSP, and ends its exchange.
    fn send_response(&mut self, rx: u16, cmd: CmdBox) {
        let Some(e) = self.exchanges.get(&rx) else { return };
        let (s_id, ox_id) = (e.s_id, e.ox_id);
        let max = self.rports.get(&s_id).map_or(usize::from(MIN_PAYLOAD), |r| r.max_payload.max(4));
        if cmd.is_aborted() {
            if cmd.answers_task_aborted() {
                let rsp = FcpRsp { status: ScsiStatus::TASK_ABORTED.0, ..Default::default() }.build();
                self.send_rsp_frame(s_id, ox_id, rx, &rsp);
            }
            drop(cmd);
            self.free_exchange(rx);
            return;
        }
        let len = cmd.data_in_len();
        if len > 0 {
            let seq_id = self.next_seq_id();
            let mut slices = scst::sgv::empty_io_slices();
            let mut off = 0;
            let mut cnt: u16 = 0;
            while off < len {
                let n = max.min(len - off);
                let last = off + n == len;
                let fill = (4 - n % 4) % 4;
                let used = cmd.data_in_slices(off, n, &mut slices);
                let mut f = Vec::with_capacity(HEADER_LEN + n + fill);
                let hb = HeaderBuilder {
                    r_ctl: RCtl::SOL_DATA.0,
                    d_id: s_id,
                    s_id: self.cfg.port_id,
                    fc_type: FcType::FCP.0,
                    f_ctl: FCtl::EX_CTX | FCtl::REL_OFF | if last { FCtl::END_SEQ } else { 0 } | fill as u32,
                    seq_id,
                    seq_cnt: cnt,
                    ox_id,
                    rx_id: rx,
                    parameter: off as u32,
                    ..Default::default()
                };
                f.extend_from_slice(&hb.build());
                for s in &slices[..used] {
                    f.extend_from_slice(s);
                }
                f.resize(HEADER_LEN + n + fill, 0);
                self.out.push_back(f);
                off += n;
                cnt = cnt.wrapping_add(1);
            }
        }
        let rsp =
            FcpRsp { status: cmd.status().0, residual: cmd.residual(), sense: cmd.sense(), rsp_code: None }.build();
        drop(cmd);
        self.send_rsp_frame(s_id, ox_id, rx, &rsp);
        self.free_exchange(rx);
    }

    fn send_rsp_frame(&mut self, s_id: u32, ox_id: u16, rx: u16, rsp: &[u8]) {
        let hb = HeaderBuilder {
            r_ctl: RCtl::CMD_STATUS.0,
            d_id: s_id,
            s_id: self.cfg.port_id,
            fc_type: FcType::FCP.0,
            f_ctl: FCtl::EX_CTX | FCtl::LAST_SEQ | FCtl::END_SEQ,
            seq_id: self.next_seq_id(),
            ox_id,
            rx_id: rx,
            ..Default::default()
        };
        self.queue(hb, rsp);
    }

    fn send_tm_rsp(&mut self, rx: u16, status: TmStatus) {
        let code = match status {
            TmStatus::COMPLETE | TmStatus::SUCCEEDED => RspCode::TMF_COMPLETE,
            TmStatus::NO_LUN => RspCode::TMF_INCORRECT_LUN,
            TmStatus::NOT_SUPPORTED => RspCode::TMF_REJECTED,
            _ => RspCode::TMF_FAILED,
        };
        let Some(e) = self.exchanges.get(&rx) else { return };
        let (s_id, ox_id) = (e.s_id, e.ox_id);
        let rsp = FcpRsp { rsp_code: Some(code), ..Default::default() }.build();
        self.send_rsp_frame(s_id, ox_id, rx, &rsp);
        self.free_exchange(rx);
    }
}

/// Adds `[start, end)` to sorted, merged ranges.
fn add_range(v: &mut Vec<(u32, u32)>, start: u32, end: u32) {
    let (mut s, mut e) = (start, end);
    v.retain(|&(a, b)| {
        if b < s || a > e {
            true
        } else {
            s = s.min(a);
            e = e.max(b);
            false
        }
    });
    let at = v.partition_point(|&(a, _)| a < s);
    v.insert(at, (s, e));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_in_any_order_and_duplicates() {
        let mut v = Vec::new();
        add_range(&mut v, 100, 200);
        add_range(&mut v, 0, 50);
        assert_eq!(v, [(0, 50), (100, 200)]);
        add_range(&mut v, 100, 200);
        assert_eq!(v, [(0, 50), (100, 200)]);
        add_range(&mut v, 50, 100);
        assert_eq!(v, [(0, 200)]);
        add_range(&mut v, 10, 20);
        assert_eq!(v, [(0, 200)]);
    }

    #[test]
    fn wwn_strings_parse_as_fc_transport_ids() {
        assert_eq!(wwn_string(0x2100_0024_ff31_4c2a), "21:00:00:24:ff:31:4c:2a");
        for s in ["0x21000024ff314c2a", "21000024ff314c2a", "21:00:00:24:ff:31:4c:2a"] {
            assert_eq!(parse_wwn(s), Some(0x2100_0024_ff31_4c2a), "{s}");
        }
        assert_eq!(parse_wwn("0x2100"), None);
        assert_eq!(parse_wwn("0x21000024ff314c2g"), None);
        assert_eq!(parse_wwn("+100000000000000"), None);
    }
}
