//! One iSCSI connection: its login, then its full feature phase.
//!
//! The connection's thread reads PDUs (several per `read` when they are queued, payloads of
//! Data-Out straight into the command's buffer), submits commands to the SCSI core and, when the
//! backend does not block, sends the response from the same thread. Completions from device
//! workers come back through [`crate::server::IscsiSession`] and are sent by the worker itself
//! through the connection's [`Tx`].

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use scst::{CmdBox, CmdHeader, DataDir, ProtocolId, Sense, SenseCode, SessionConfig, Step, TargetPort, TmFunction};
use scst::{TmOutcome, TmRequest, TmResponse, TmStatus};
use tracing::{debug, info, warn};

use crate::proto::bhs::{
    AsyncEvent, BHS_LEN, Bhs, CommandAhs, DIGEST_LEN, Digests, LogoutReason, LogoutResponseCode, Opcode, RESERVED_TAG,
    RejectReason, TaskAttr as WireAttr, TmfResponse, pad_len,
};
use crate::proto::build::{AsyncMessageHeader, LogoutResponseHeader, NopInHeader, R2tHeader, RejectHeader};
use crate::proto::build::{ScsiResponseHeader, TmfResponseHeader};
use crate::proto::digest;
use crate::proto::login::{LoginMachine, LoginStep};
use crate::proto::params::{SessionParams, SessionType, TargetLimits};
use crate::proto::text_phase::TextPhase;
use crate::proto::{LoginStatus, OwnedPdu};
use crate::rx::{Rx, RxError};
use crate::server::{IscsiSession, Policy, Shared};
use crate::tx::{Tx, TxParams, sn_lt};

/// Receive timeout: the connection thread wakes up this often when idle (NOP-In pings, logout
/// requests).
const TICK: Duration = Duration::from_millis(500);
/// Send timeout: a peer that does not read for this long loses its connection.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Commands beyond the CmdSN window the session's pool keeps for immediate commands.
const IMMEDIATE_RESERVE: usize = 32;
/// Most R2Ts outstanding per command (the negotiated MaxOutstandingR2T is capped to this).
const MAX_R2T: usize = 8;
/// Largest data segment accepted in a Login or Text request.
const MAX_TEXT_SEGMENT: u32 = 65536;

/// A write command receiving its Data-Out, or a command whose unsolicited data is still being
/// drained after the core answered it.
struct WriteTask {
    cmd: Option<CmdBox>,
    lun: u64,
    edtl: u32,
    /// Bytes the core wants (the rest up to `edtl` is discarded).
    want: u32,
    /// Bytes received so far, all in order.
    received: u32,
    /// The unsolicited Data-Out sequence (TTT FFFFFFFFh) has not ended yet.
    unsol_open: bool,
    /// Current data sequence: its TTT and the next DataSN expected.
    seq_ttt: u32,
    seq_sn: u32,
    /// Outstanding R2Ts' TTTs, oldest first (DataSequenceInOrder=Yes).
    r2ts: [u32; MAX_R2T],
    /// Where each outstanding R2T's solicited data ends (Buffer Offset + Desired Data Transfer
    /// Length).
    r2t_ends: [u32; MAX_R2T],
    n_r2ts: usize,
    r2t_sn: u32,
    /// Next offset to solicit.
    r2t_next: u32,
    /// A protocol error: the command ends with this sense once its data stops.
    failed: Option<Sense>,
}

impl WriteTask {
    fn open_sequences(&self) -> bool {
        self.unsol_open || self.n_r2ts > 0
    }
}

/// The part of a connection other threads use.
pub(crate) struct ConnShared {
    pub(crate) tx: Tx,
    shared: Arc<Shared>,
    /// The target of a normal session.
    target: Option<String>,
    /// A TARGET COLD RESET is being answered: once its response is out, every connection to
    /// the target is closed (RFC 7143 §11.5.1).
    cold_reset: AtomicBool,
    /// A connection reinstatement replaced this connection: its session lives on.
    replaced: AtomicBool,
    tasks: Mutex<HashMap<u32, WriteTask>>,
    closed: Mutex<bool>,
    closed_cv: Condvar,
    logout_requested: Mutex<Option<Duration>>,
    /// The peer's address and the negotiated operational keys, for management.
    parameters: Vec<(String, String)>,
    /// The socket the receive thread reads (open as long as the receive thread runs).
    rfd: RawFd,
}

impl crate::rx::BeforeRead for ConnShared {
    fn before_read(&self) {
        // The receive thread may wait in this read: what its batch deferred (io_uring
        // submissions, sends) goes first, then this connection's queued responses.
        scst::batch::flush();
        self.tx.flush();
        // Block I/O this thread started completes here while it waits for the socket
        // (`scst::wait`): the thread that received a command sends its response.
        scst::wait::wait_readable(self.rfd);
    }
}

/// Sends the responses queued while a batch was open (see [`scst::batch`]).
impl scst::batch::Kick for ConnShared {
    fn kick(&self) {
        self.tx.flush();
    }
}

impl ConnShared {
    /// Ends a write command waiting for Data-Out that a task management function aborted: no
    /// response, or TASK ABORTED when another I_T nexus's function aborted it with TAS set
    /// (SAM-5 §5.6). Data-Out that still comes for it is discarded. While its unsolicited data
    /// is still due it gets no response either way: a SCSI Response may not precede that data.
    pub(crate) fn abort_pending(&self, itt: u32) {
        let t = self.tasks.lock().remove(&itt);
        if let Some(WriteTask { cmd: Some(cmd), unsol_open: false, .. }) = t
            && cmd.answers_task_aborted()
        {
            self.tx.queue_response(cmd);
            self.tx.flush();
        }
    }

    pub(crate) fn send_tmf_response(&self, rsp: TmResponse) {
        let response = match rsp.status {
            TmStatus::COMPLETE | TmStatus::SUCCEEDED => TmfResponse::COMPLETE,
            TmStatus::NO_TASK => TmfResponse::TASK_DOES_NOT_EXIST,
            TmStatus::NO_LUN => TmfResponse::LUN_DOES_NOT_EXIST,
            TmStatus::REASSIGN_UNSUPPORTED => TmfResponse::REASSIGNMENT_NOT_SUPPORTED,
            TmStatus::NOT_SUPPORTED => TmfResponse::NOT_SUPPORTED,
            TmStatus::AUTH_FAILED => TmfResponse::AUTHORIZATION_FAILED,
            _ => TmfResponse::REJECTED,
        };
        self.tx.send_pdu(&[], true, |sn, bhs| {
            TmfResponseHeader { response, itt: rsp.tag as u32, sn }.write(bhs);
        });
        if self.cold_reset.swap(false, Relaxed)
            && let Some(t) = &self.target
        {
            info!(target = %t, "TARGET COLD RESET: closing every connection to the target");
            self.shared.close_target_connections(t);
        }
    }

    /// Asks the initiator to log out within `grace` (Async Message, event 1); sent by the
    /// connection's thread on its next wake-up.
    pub(crate) fn request_logout(&self, grace: Duration) {
        *self.logout_requested.lock() = Some(grace);
    }

    /// The peer's address and the negotiated operational keys.
    pub(crate) fn parameters(&self) -> &[(String, String)] {
        &self.parameters
    }

    /// The target of a normal session (`None` for discovery).
    pub(crate) fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    pub(crate) fn is_closed(&self) -> bool {
        *self.closed.lock()
    }

    pub(crate) fn wait_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut g = self.closed.lock();
        while !*g {
            if self.closed_cv.wait_until(&mut g, deadline).timed_out() {
                return;
            }
        }
    }

    fn mark_closed(&self) {
        *self.closed.lock() = true;
        self.closed_cv.notify_all();
    }
}

/// Serves one accepted connection until it ends.
pub(crate) fn run(sock: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let _ = sock.set_nodelay(true);
    let _ = sock.set_read_timeout(Some(TICK));
    let _ = sock.set_write_timeout(Some(SEND_TIMEOUT));
    let local = sock.local_addr().unwrap_or(peer);
    let Ok(wsock) = sock.try_clone() else { return };
    let mut rx = Rx::new(sock, shared.cfg.pdu_timeout);
    let policy = Policy { shared, local };
    let Some(login) = login(&mut rx, &wsock, &policy, shared) else {
        let _ = wsock.shutdown(std::net::Shutdown::Both);
        return;
    };
    debug!(%peer, initiator = %login.params.initiator_name, tsih = login.tsih, "logged in");
    full_feature(rx, wsock, policy, shared, login, peer);
}

/// What a completed login hands the full feature phase.
struct LoggedIn {
    params: SessionParams,
    isess: Option<Arc<IscsiSession>>,
    /// The nexus a connection reinstatement continues, kept alive across the swap.
    nexus: Option<Arc<scst::Session>>,
    tsih: u16,
    cid: u16,
    cmd_sn: u32,
    stat_sn: u32,
}

/// The login phase (RFC 7143 §6). Returns `None` when the login failed or the connection broke.
fn login(rx: &mut Rx<TcpStream>, w: &TcpStream, policy: &Policy<'_>, shared: &Arc<Shared>) -> Option<LoggedIn> {
    let deadline = Instant::now() + shared.cfg.login_timeout;
    // The deadline also bounds the reads themselves: checked only between PDUs, it let a peer
    // that trickles a Login Request in (a byte every few hundred milliseconds, each one
    // restarting the PDU timeout) hold a connection thread for as long as it liked.
    rx.set_deadline(Some(deadline));
    // The login advertises the window the full feature phase keeps.
    let limits = TargetLimits { cmd_window: shared.cfg.cmd_window.max(1), ..shared.cfg.limits.clone() };
    let mut m = LoginMachine::new(limits, initial_stat_sn());
    loop {
        if Instant::now() > deadline {
            debug!("login timed out");
            return None;
        }
        let mut hdr = [0u8; BHS_LEN];
        match rx.need(BHS_LEN, false) {
            Ok(()) => {}
            Err(RxError::Idle) => continue,
            Err(RxError::Closed(_)) => return None,
        }
        hdr.copy_from_slice(rx.peek(BHS_LEN));
        rx.consume(BHS_LEN);
        let bhs = Bhs::from_array(&hdr);
        let dsl = bhs.data_segment_len();
        if bhs.total_ahs_len() != 0 || dsl > MAX_TEXT_SEGMENT {
            let _ = send_owned(w, &m.fail(LoginStatus::INITIATOR_ERROR));
            return None;
        }
        let mut data = vec![0u8; dsl as usize + pad_len(dsl as usize)];
        rx.read_exact_into(&mut data).ok()?;
        data.truncate(dsl as usize);
        if bhs.opcode() != Opcode::LOGIN_REQUEST {
            let _ = send_owned(w, &m.fail(LoginStatus::INVALID_DURING_LOGIN));
            return None;
        }
        match m.on_request(policy, &bhs, &data) {
            LoginStep::Send(pdu) => send_owned(w, &pdu).ok()?,
            LoginStep::Fail(pdu, status) => {
                info!(?status, "login refused");
                let _ = send_owned(w, &pdu);
                return None;
            }
            LoginStep::Ready => {
                let out = m.pending_outcome()?;
                let p = &out.params;
                let mut nexus = None;
                let (isess, tsih) = match p.session_type {
                    SessionType::Discovery => (None, shared.discovery_tsih()),
                    SessionType::Normal => {
                        let target = p.target_name.clone().unwrap_or_default();
                        let s = if out.tsih_requested == 0 {
                            shared.new_session(&p.initiator_name, out.isid, &target)
                        } else {
                            // Connection reinstatement (RFC 7143 §6.3.4): the old connection goes
                            // first, the session and its nexus stay.
                            let Some(s) = shared.find_session(out.tsih_requested) else {
                                let _ = send_owned(w, &m.fail(LoginStatus::SESSION_DOES_NOT_EXIST));
                                return None;
                            };
                            nexus = s.scst.lock().upgrade();
                            // Not `if let` on the guard: the old connection's teardown takes
                            // the write lock while we wait for it.
                            let old = s.conn.read().clone();
                            if let Some(old) = old {
                                old.replaced.store(true, Relaxed);
                                old.tx.kill();
                                old.wait_closed(Duration::from_secs(5));
                            }
                            // The old connection may have ended the session on its own (it
                            // failed before it was told it was being replaced).
                            if shared.find_session(s.tsih).is_none() || nexus.as_ref().is_some_and(|n| n.is_closed()) {
                                let _ = send_owned(w, &m.fail(LoginStatus::SESSION_DOES_NOT_EXIST));
                                return None;
                            }
                            s
                        };
                        let t = s.tsih;
                        (Some(s), t)
                    }
                };
                let done = m.complete(tsih).ok().and_then(|(pdu, out)| send_owned(w, &pdu).ok().map(|()| out));
                let Some(out) = done else {
                    // The connection broke at the very last step. The session registered for it
                    // (or the one it reinstates, whose old connection is already gone) would
                    // otherwise stay in the session table, without a connection, forever.
                    if let Some(s) = &isess {
                        shared.remove_session(s.tsih);
                        crate::server::close_session(s);
                    }
                    return None;
                };
                rx.set_deadline(None);
                return Some(LoggedIn {
                    params: out.params,
                    isess,
                    nexus,
                    tsih,
                    cid: out.cid,
                    cmd_sn: out.cmd_sn,
                    stat_sn: out.stat_sn,
                });
            }
        }
    }
}

fn initial_stat_sn() -> u32 {
    let mut b = [0u8; 4];
    let _ = crate::proto::chap::fill_random(&mut b);
    u32::from_be_bytes(b)
}

fn send_owned(mut w: &TcpStream, pdu: &OwnedPdu) -> io::Result<()> {
    io::Write::write_all(&mut w, &pdu.to_bytes())
}

/// A PDU held until the CmdSN gap before it fills: its BHS, AHS, data segment, and whether the
/// data segment passed its digest.
type HeldPdu = ([u8; BHS_LEN], Vec<u8>, Vec<u8>, bool);

/// Full-feature-phase state owned by the connection's thread.
struct Ffp<'a> {
    shared: &'a Arc<Shared>,
    policy: Policy<'a>,
    cs: Arc<ConnShared>,
    rx: Rx<TcpStream>,
    params: SessionParams,
    digests: Digests,
    /// READ data may go out from files (`sendfile`): no data digest, and the configuration
    /// allows it for this initiator's address ([`crate::ZeroCopy`]).
    file_data_in: bool,
    isess: Option<Arc<IscsiSession>>,
    scst: Option<Arc<scst::Session>>,
    cid: u16,
    exp_cmd_sn: u32,
    /// The PDU being dispatched still has to advance ExpCmdSN (see [`Ffp::take_advance`]).
    advance_pending: bool,
    /// PDUs that arrived ahead of ExpCmdSN, with their payloads.
    held: BTreeMap<u32, HeldPdu>,
    /// Payload source while a held PDU is processed: the data, the read position, and whether
    /// its digest was right when it arrived.
    mem: Option<(Vec<u8>, usize, bool)>,
    text: TextPhase,
    next_ttt: u32,
    last_rx: Instant,
    ping: Option<(u32, Instant)>,
    async_sent: bool,
    logged_out: bool,
}

/// Why the full feature phase ended.
enum End {
    /// The connection broke or was closed.
    Closed,
    /// The initiator logged out.
    Logout,
}

fn full_feature(
    rx: Rx<TcpStream>,
    wsock: TcpStream,
    policy: Policy<'_>,
    shared: &Arc<Shared>,
    login: LoggedIn,
    peer: SocketAddr,
) {
    let params = login.params;
    let conn_id = shared.next_conn_id();
    let tx_params = TxParams {
        digests: params.digests(),
        max_send_segment: params.initiator_max_recv_data_segment_length,
        max_burst: params.max_burst_length,
    };
    let window = shared.cfg.cmd_window.max(1);
    let tx = Tx::new(wsock, tx_params, login.stat_sn, login.cmd_sn, window, SEND_TIMEOUT, conn_id);
    let cs = Arc::new(ConnShared {
        tx,
        shared: shared.clone(),
        target: login.isess.as_ref().map(|s| s.target.clone()),
        cold_reset: AtomicBool::new(false),
        replaced: AtomicBool::new(false),
        // Grows with the commands in flight and keeps its capacity (small for an idle session).
        tasks: Mutex::new(HashMap::with_capacity(8)),
        closed: Mutex::new(false),
        closed_cv: Condvar::new(),
        logout_requested: Mutex::new(None),
        parameters: std::iter::once(("Peer".to_string(), peer.to_string())).chain(params.operational_keys()).collect(),
        rfd: rx.get_ref().as_raw_fd(),
    });
    {
        // Entries of closed connections go here: never pruned, the list (and each entry's
        // allocation, which a `Weak` keeps) grew by one per connection for the server's life.
        let mut conns = shared.conns.lock();
        conns.retain(|c| c.strong_count() > 0);
        conns.push(Arc::downgrade(&cs));
    }
    // A target removed while this login was being answered (`IscsiServer::remove_target` takes
    // it out of the map, then closes the connections it finds registered): this connection
    // was registered after that look, so it sees the target gone here and closes.
    if let Some(t) = &cs.target
        && !shared.targets.read().contains_key(t)
    {
        info!(target = %t, "target removed during login: closing the connection");
        cs.tx.kill();
    }
    let mut scst_sess = None;
    if let Some(isess) = &login.isess {
        let existing = login.nexus.clone().filter(|s| !s.is_closed());
        let s = existing.unwrap_or_else(|| {
            let targets = shared.targets.read();
            let target = targets.get(&isess.target).map(|t| t.target.clone());
            drop(targets);
            let Some(target) = target else {
                return register_orphan(isess, shared);
            };
            let tag = shared.cfg.portal_group_tag;
            let port = Arc::new(TargetPort {
                protocol: ProtocolId::ISCSI,
                rel_port_id: tag,
                name: format!("{},t,0x{tag:04x}", isess.target),
                version_descriptor: 0x0960,
                tpg_id: shared.cfg.alua_group,
            });
            let isid: String = isess.isid.iter().map(|b| format!("{b:02x}")).collect();
            let cfg = SessionConfig {
                initiator_name: isess.initiator.clone(),
                initiator_port: format!("{},i,0x{isid}", isess.initiator),
                port,
                depth: window as usize + IMMEDIATE_RESERVE,
            };
            let s = target.register_session(cfg, isess.clone());
            *isess.scst.lock() = Arc::downgrade(&s);
            s
        });
        cs.tx.set_session(Arc::downgrade(&s));
        *isess.conn.write() = Some(cs.clone());
        scst_sess = Some(s);
    }
    let mut rx = rx;
    rx.set_before_read(cs.clone());
    rx.set_poll(shared.cfg.rx_poll);
    let weak = Arc::downgrade(&cs);
    cs.tx.set_flusher_start(Box::new(move || {
        let cs = weak.upgrade()?;
        std::thread::Builder::new().name("iscsi-tx".into()).spawn(move || cs.tx.run_flusher()).ok()
    }));
    let mut f = Ffp {
        shared,
        policy,
        cs: cs.clone(),
        rx,
        digests: params.digests(),
        file_data_in: !params.digests().data && shared.cfg.zero_copy.allows(peer.ip()),
        params,
        isess: login.isess.clone(),
        scst: scst_sess,
        cid: login.cid,
        exp_cmd_sn: login.cmd_sn,
        advance_pending: false,
        held: BTreeMap::new(),
        mem: None,
        text: TextPhase::new(),
        next_ttt: 0,
        last_rx: Instant::now(),
        ping: None,
        async_sent: false,
        logged_out: false,
    };
    let end = f.serve();
    // Tear down: pending write tasks go, the session ends unless a reinstatement replaced
    // this connection.
    let tasks: Vec<WriteTask> = cs.tasks.lock().drain().map(|(_, t)| t).collect();
    drop(tasks);
    if matches!(end, End::Logout) {
        // The Logout Response (and anything before it) must reach the initiator.
        cs.tx.drain(Duration::from_secs(5));
    }
    cs.tx.kill();
    if let Some(h) = cs.tx.take_flusher() {
        let _ = h.join();
    }
    if let Some(isess) = &login.isess {
        let mut conn = isess.conn.write();
        let ours = conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, &cs));
        if ours {
            *conn = None;
            drop(conn);
            if !cs.replaced.load(Relaxed) {
                if let Some(s) = f.scst.take() {
                    s.close();
                }
                shared.remove_session(login.tsih);
            }
        }
    }
    debug!(%peer, logout = matches!(end, End::Logout), "connection closed");
    cs.mark_closed();
}

/// A session whose target disappeared between login and now: refuse everything.
fn register_orphan(isess: &Arc<IscsiSession>, shared: &Arc<Shared>) -> Arc<scst::Session> {
    let target = scst::Target::new(isess.target.clone(), scst::SgvPool::new(scst::SgvConfig::default()));
    let port = Arc::new(TargetPort {
        protocol: ProtocolId::ISCSI,
        rel_port_id: 1,
        name: String::new(),
        version_descriptor: 0x0960,
        tpg_id: 1,
    });
    let _ = shared;
    target.register_session(
        SessionConfig {
            initiator_name: isess.initiator.clone(),
            initiator_port: isess.initiator.clone(),
            port,
            depth: 16,
        },
        isess.clone(),
    )
}

/// How a PDU stands against the CmdSN window (RFC 7143 §4.2.2.1).
enum Order {
    /// Immediate: process now, ExpCmdSN unchanged.
    Immediate,
    /// CmdSN == ExpCmdSN: process and advance.
    Next,
    /// Ahead of ExpCmdSN within the window: hold until the gap fills.
    Ahead,
    /// Outside the window: silently ignore.
    Outside,
}

impl Ffp<'_> {
    fn serve(&mut self) -> End {
        // Commands decoded between two socket reads start their I/O with one kick (one
        // `io_uring_enter`): the batch is flushed before every read (`before_read`) and before
        // any PDU that may wait, and when the connection ends. This thread waits only in its
        // socket reads, each after `before_read`, and never for a command of its own: block I/O
        // it starts may complete on it (`scst::wait`), drained when `serve` returns.
        let _local = scst::wait::enable();
        let _batch = scst::batch::begin();
        loop {
            if self.logged_out {
                return End::Logout;
            }
            if self.cs.tx.is_dead() {
                return End::Closed;
            }
            match self.rx.need(BHS_LEN, false) {
                Ok(()) => {}
                Err(RxError::Idle) => {
                    if self.tick().is_err() {
                        return End::Closed;
                    }
                    continue;
                }
                Err(RxError::Closed(e)) => {
                    debug!(error = %e, "connection ended");
                    return End::Closed;
                }
            }
            self.last_rx = Instant::now();
            let mut hdr = [0u8; BHS_LEN];
            hdr.copy_from_slice(self.rx.peek(BHS_LEN));
            self.rx.consume(BHS_LEN);
            if self.pdu(hdr).is_err() {
                return End::Closed;
            }
        }
    }

    /// Periodic work while idle: logout requests, NOP-In pings, dead peer detection.
    fn tick(&mut self) -> Result<(), ()> {
        let cfg = &self.shared.cfg;
        if !self.async_sent
            && let Some(grace) = *self.cs.logout_requested.lock()
        {
            self.async_sent = true;
            let secs = grace.as_secs().clamp(1, 3600) as u16;
            self.cs.tx.send_pdu(&[], true, |sn, bhs| {
                AsyncMessageHeader {
                    event: AsyncEvent::REQUEST_LOGOUT,
                    parameters: [0, 0, secs],
                    sn,
                    ..Default::default()
                }
                .write(bhs);
            });
        }
        match self.ping {
            Some((_, sent)) if sent.elapsed() > cfg.nop_timeout => {
                warn!("initiator did not answer a NOP-In: dropping the connection");
                return Err(());
            }
            None if self.last_rx.elapsed() > cfg.nop_interval => {
                let ttt = self.alloc_ttt();
                self.ping = Some((ttt, Instant::now()));
                self.cs.tx.send_pdu(&[], false, |sn, bhs| {
                    NopInHeader { itt: RESERVED_TAG, ttt, sn, ..Default::default() }.write(bhs);
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn alloc_ttt(&mut self) -> u32 {
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 1;
        }
        self.next_ttt
    }

    fn order(&self, b: &Bhs<&[u8]>) -> Order {
        if b.immediate() {
            return Order::Immediate;
        }
        // The window is [ExpCmdSN, MaxCmdSN] as last advertised (it is empty when every
        // command slot is taken: MaxCmdSN = ExpCmdSN - 1).
        let (sn, max) = (b.cmd_sn(), self.cs.tx.max_cmd_sn());
        if sn_lt(max, sn) || sn_lt(sn, self.exp_cmd_sn) {
            Order::Outside
        } else if sn == self.exp_cmd_sn {
            Order::Next
        } else {
            Order::Ahead
        }
    }

    /// Handles one PDU whose BHS was just read (AHS, digests and data still on the wire).
    fn pdu(&mut self, hdr: [u8; BHS_LEN]) -> Result<(), ()> {
        let b = Bhs::from_array(&hdr);
        let ahs_len = b.total_ahs_len();
        // Zeroed only when there is an AHS: clearing 1 KiB for every PDU showed in callgrind.
        let mut storage: [u8; 1024];
        let ahs: &mut [u8] = if ahs_len == 0 {
            &mut []
        } else {
            storage = [0u8; 1024];
            &mut storage[..ahs_len]
        };
        self.rx.read_exact_into(ahs).map_err(drop)?;
        if self.digests.header {
            let mut d = [0u8; DIGEST_LEN];
            self.rx.read_exact_into(&mut d).map_err(drop)?;
            if !digest::verify(&d, digest::header_digest(&hdr, ahs)) {
                // The lengths in a corrupt header cannot be trusted: at ERL 0 the connection ends.
                warn!("header digest error: dropping the connection");
                return Err(());
            }
        }
        let dsl = b.data_segment_len();
        if dsl > self.params.target_max_recv_data_segment_length {
            warn!(dsl, "data segment longer than MaxRecvDataSegmentLength");
            self.reject(&hdr, RejectReason::PROTOCOL_ERROR);
            return Err(());
        }
        let op = b.opcode();
        if !matches!(op, Opcode::SCSI_COMMAND | Opcode::DATA_OUT) {
            // Whatever else comes may wait (task management waits for commands to be freed,
            // and queued responses hold theirs) or must follow the responses on the wire: the
            // same flush as before a socket read.
            crate::rx::BeforeRead::before_read(&*self.cs);
        }
        let ordered = matches!(
            op,
            Opcode::SCSI_COMMAND
                | Opcode::TASK_MGMT_REQUEST
                | Opcode::TEXT_REQUEST
                | Opcode::LOGOUT_REQUEST
                | Opcode::NOP_OUT
        );
        if ordered {
            match self.order(&b) {
                Order::Immediate => self.dispatch(&hdr, ahs, dsl),
                Order::Next => {
                    self.advance_pending = true;
                    let r = self.dispatch(&hdr, ahs, dsl);
                    self.take_advance();
                    r?;
                    self.run_held()
                }
                Order::Ahead => {
                    let mut data = Vec::new();
                    // The digest verdict travels with the data: it used to be dropped here, and a
                    // command whose immediate data failed its digest ran with that data once its
                    // turn came.
                    let digest_ok = self.read_payload_vec(dsl, &mut data).map_err(drop)?;
                    self.held.insert(b.cmd_sn(), (hdr, ahs.to_vec(), data, digest_ok));
                    Ok(())
                }
                Order::Outside => {
                    debug!(cmd_sn = b.cmd_sn(), exp = self.exp_cmd_sn, "CmdSN outside the window: ignored");
                    self.skip_payload(dsl)
                }
            }
        } else {
            self.dispatch(&hdr, ahs, dsl)
        }
    }

    /// Advances ExpCmdSN past the PDU being dispatched, if it is in CmdSN order and has not
    /// done so yet. A SCSI command does it only once it holds its command slot: another thread
    /// sending a PDU in between must not advertise a MaxCmdSN that counts that slot as free.
    /// Everything else does it before answering.
    fn take_advance(&mut self) {
        if std::mem::take(&mut self.advance_pending) {
            self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
            self.cs.tx.set_exp_cmd_sn(self.exp_cmd_sn);
        }
    }

    /// Processes held PDUs that are now in order.
    fn run_held(&mut self) -> Result<(), ()> {
        while let Some((hdr, ahs, data, digest_ok)) = self.held.remove(&self.exp_cmd_sn) {
            self.advance_pending = true;
            let dsl = data.len() as u32;
            self.mem = Some((data, 0, digest_ok));
            let r = self.dispatch(&hdr, &ahs, dsl);
            self.mem = None;
            self.take_advance();
            r?;
        }
        Ok(())
    }

    fn dispatch(&mut self, hdr: &[u8; BHS_LEN], ahs: &[u8], dsl: u32) -> Result<(), ()> {
        let b = Bhs::from_array(hdr);
        if b.opcode() != Opcode::SCSI_COMMAND {
            self.take_advance();
        }
        match b.opcode() {
            Opcode::SCSI_COMMAND => self.scsi_command(hdr, ahs, dsl),
            Opcode::DATA_OUT => self.data_out(hdr, dsl),
            Opcode::NOP_OUT => self.nop_out(hdr, dsl),
            Opcode::TASK_MGMT_REQUEST => {
                self.skip_payload(dsl)?;
                self.task_mgmt(hdr);
                Ok(())
            }
            Opcode::TEXT_REQUEST => self.text(hdr, dsl),
            Opcode::LOGOUT_REQUEST => {
                self.skip_payload(dsl)?;
                self.logout(hdr);
                Ok(())
            }
            Opcode::SNACK_REQUEST => {
                // ErrorRecoveryLevel 0: no SNACK support (RFC 7143 §11.16).
                self.skip_payload(dsl)?;
                self.reject(hdr, RejectReason::PROTOCOL_ERROR);
                Ok(())
            }
            Opcode::LOGIN_REQUEST => {
                self.skip_payload(dsl)?;
                self.reject(hdr, RejectReason::PROTOCOL_ERROR);
                Ok(())
            }
            op => {
                debug!(?op, "unsupported opcode");
                self.skip_payload(dsl)?;
                let reason =
                    if op.is_initiator() { RejectReason::COMMAND_NOT_SUPPORTED } else { RejectReason::PROTOCOL_ERROR };
                self.reject(hdr, reason);
                Ok(())
            }
        }
    }

    fn reject(&self, hdr: &[u8; BHS_LEN], reason: RejectReason) {
        self.cs.tx.send_pdu(hdr, true, |sn, bhs| {
            RejectHeader { reason, data_segment_len: BHS_LEN as u32, sn, data_sn: 0 }.write(bhs);
        });
    }

    // ----- payload reading -------------------------------------------------------------

    /// Reads a whole data segment (with pad and digest) into `out`. Returns whether its data
    /// digest was right.
    fn read_payload_vec(&mut self, dsl: u32, out: &mut Vec<u8>) -> Result<bool, RxError> {
        let n = dsl as usize;
        if let Some((data, pos, digest_ok)) = &mut self.mem {
            out.extend_from_slice(&data[*pos..*pos + n]);
            *pos += n;
            return Ok(*digest_ok);
        }
        let start = out.len();
        out.resize(start + n, 0);
        self.rx.read_exact_into(&mut out[start..])?;
        self.finish_payload(n, &out[start..])
    }

    /// Reads the pad bytes and the data digest of an `n`-byte segment whose data was `data`
    /// (when given; the digest is then checked).
    fn finish_payload(&mut self, n: usize, data: &[u8]) -> Result<bool, RxError> {
        let mut pad = [0u8; 3];
        let p = pad_len(n);
        if n > 0 {
            self.rx.read_exact_into(&mut pad[..p])?;
        }
        if self.digests.data && n > 0 {
            let mut d = [0u8; DIGEST_LEN];
            self.rx.read_exact_into(&mut d)?;
            return Ok(digest::verify(&d, digest::data_digest_with_pad(data, &pad[..p])));
        }
        Ok(true)
    }

    /// Discards a data segment.
    fn skip_payload(&mut self, dsl: u32) -> Result<(), ()> {
        let n = dsl as usize;
        if let Some((_, pos, _)) = &mut self.mem {
            *pos += n;
            return Ok(());
        }
        if n == 0 {
            return Ok(());
        }
        let extra = pad_len(n) + if self.digests.data { DIGEST_LEN } else { 0 };
        self.rx.skip(n + extra).map_err(drop)
    }

    /// Receives a data segment of `dsl` bytes whose first `useful` bytes go to `buf[off..]`
    /// and the rest is discarded. Returns whether the data digest was right.
    fn recv_into(&mut self, buf: &mut scst::SgBuf, off: usize, useful: usize, dsl: u32) -> Result<bool, ()> {
        let n = dsl as usize;
        if let Some((data, pos, digest_ok)) = &mut self.mem {
            buf.write_at(off, &data[*pos..*pos + useful]);
            *pos += n;
            return Ok(*digest_ok);
        }
        self.rx.read_into_sg(buf, off, useful).map_err(drop)?;
        let mut crc = 0u32;
        if self.digests.data {
            buf.for_each(off, useful, |s| crc = ::crc32c::crc32c_append(crc, s));
        }
        let mut rest = n - useful;
        if rest > 0 {
            // Only here: zeroing a 4 KiB array on every call was 45% of the target's
            // instructions for 4 KiB writes (callgrind).
            let mut scratch = [0u8; 4096];
            while rest > 0 {
                let k = rest.min(scratch.len());
                self.rx.read_exact_into(&mut scratch[..k]).map_err(drop)?;
                if self.digests.data {
                    crc = ::crc32c::crc32c_append(crc, &scratch[..k]);
                }
                rest -= k;
            }
        }
        let p = pad_len(n);
        let mut pad = [0u8; 3];
        if n > 0 {
            self.rx.read_exact_into(&mut pad[..p]).map_err(drop)?;
        }
        if self.digests.data && n > 0 {
            crc = ::crc32c::crc32c_append(crc, &pad[..p]);
            let mut d = [0u8; DIGEST_LEN];
            self.rx.read_exact_into(&mut d).map_err(drop)?;
            return Ok(d == crc.to_le_bytes());
        }
        Ok(true)
    }

    // ----- SCSI commands and their data ------------------------------------------------

    fn scsi_command(&mut self, hdr: &[u8; BHS_LEN], ahs: &[u8], dsl: u32) -> Result<(), ()> {
        let b = Bhs::from_array(hdr);
        let Some(sess) = self.scst.clone() else {
            // SCSI commands have no place in a discovery session.
            self.skip_payload(dsl)?;
            self.take_advance();
            self.reject(hdr, RejectReason::PROTOCOL_ERROR);
            return Ok(());
        };
        let itt = b.itt();
        let edtl = b.expected_data_transfer_length();
        let fin = b.final_bit();
        let mut cdb = [0u8; 32];
        cdb[..16].copy_from_slice(b.cdb());
        let mut cdb_len = 16;
        if !ahs.is_empty() {
            match CommandAhs::parse(ahs) {
                Ok(a) => {
                    if let Some(ext) = a.extended_cdb {
                        let k = ext.len().min(16);
                        cdb[16..16 + k].copy_from_slice(&ext[..k]);
                        cdb_len = 16 + k;
                    }
                }
                Err(_) => {
                    self.skip_payload(dsl)?;
                    self.take_advance();
                    self.reject(hdr, RejectReason::PROTOCOL_ERROR);
                    return Ok(());
                }
            }
        }
        if (dsl > 0 && !self.params.immediate_data) || dsl > self.params.first_burst_length || dsl > edtl {
            // Immediate data the session did not agree to, or more than the burst allows.
            self.skip_payload(dsl)?;
            self.take_advance();
            self.reject(hdr, RejectReason::PROTOCOL_ERROR);
            return Ok(());
        }
        if self.cs.tasks.lock().contains_key(&itt) {
            // An ITT still in use: a protocol error (RFC 7143 §11.2.1.8).
            self.skip_payload(dsl)?;
            self.take_advance();
            self.reject(hdr, RejectReason::TASK_IN_PROGRESS);
            return Ok(());
        }
        let attr = match b.task_attr() {
            WireAttr::ORDERED => scst::TaskAttr::Ordered,
            WireAttr::HEAD_OF_QUEUE => scst::TaskAttr::HeadOfQueue,
            WireAttr::ACA => scst::TaskAttr::Aca,
            _ => scst::TaskAttr::Simple,
        };
        let dir = if b.write_bit() {
            DataDir::Out
        } else if b.read_bit() {
            DataDir::In
        } else {
            DataDir::None
        };
        let ch = CmdHeader {
            lun: b.lun_bytes(),
            cdb: &cdb[..cdb_len],
            attr,
            tag: u64::from(itt),
            expected_len: edtl,
            expected_dir: dir,
        };
        let Ok(mut cmd) = sess.alloc_cmd(&ch) else {
            self.skip_payload(dsl)?;
            self.take_advance();
            self.status_only(itt, scst::ScsiStatus::TASK_SET_FULL);
            return Ok(());
        };
        self.take_advance();
        cmd.fabric_cookie = self.cs.tx.conn_id;
        if self.file_data_in {
            // Tx sends Data-In from a file with sendfile.
            cmd.allow_file_data_in();
        }
        if !fin {
            // Unsolicited Data-Out follows. Should the core answer without wanting it, the
            // response must wait for the last of it, whichever thread sends the response (a
            // device worker may finish before `submit` even returns).
            self.cs.tx.begin_drain(itt);
        }
        let step = sess.submit(cmd);
        let mut task = WriteTask {
            cmd: None,
            lun: b.lun(),
            edtl,
            want: 0,
            received: dsl,
            unsol_open: !fin,
            seq_ttt: RESERVED_TAG,
            seq_sn: 0,
            r2ts: [0; MAX_R2T],
            r2t_ends: [0; MAX_R2T],
            n_r2ts: 0,
            r2t_sn: 0,
            r2t_next: 0,
            failed: None,
        };
        match step {
            Step::NeedData(mut c) => {
                if !fin {
                    // The data goes to the command; its response cannot come before it.
                    self.cs.tx.end_drain(itt);
                }
                task.want = c.data_out_len() as u32;
                let useful = (dsl as usize).min(task.want as usize);
                let ok = match c.buf_mut() {
                    Some(buf) => self.recv_into(buf, 0, useful, dsl)?,
                    None => {
                        self.skip_payload(dsl)?;
                        true
                    }
                };
                if !ok {
                    self.digest_error(hdr, &mut task);
                }
                task.cmd = Some(c);
                self.progress(itt, task);
            }
            Step::Done(c) => {
                self.skip_payload(dsl)?;
                // Held back (parked) while unsolicited data is still coming.
                self.cs.tx.queue_response(c);
                if !fin {
                    self.park(itt, task);
                }
            }
            Step::Pending => {
                self.skip_payload(dsl)?;
                if !fin {
                    self.park(itt, task);
                }
            }
        }
        Ok(())
    }

    /// A status-only SCSI Response for a command that never got a command object.
    fn status_only(&self, itt: u32, status: scst::ScsiStatus) {
        self.cs.tx.send_pdu(&[], true, |sn, bhs| {
            ScsiResponseHeader { status: status.0, itt, sn, ..ScsiResponseHeader::default() }.write(bhs);
        });
    }

    fn digest_error(&self, hdr: &[u8; BHS_LEN], task: &mut WriteTask) {
        warn!("data digest error");
        self.reject(hdr, RejectReason::DATA_DIGEST_ERROR);
        task.failed.get_or_insert(Sense::new(SenseCode::DATA_PHASE_ERROR));
    }

    fn data_out(&mut self, hdr: &[u8; BHS_LEN], dsl: u32) -> Result<(), ()> {
        let b = Bhs::from_array(hdr);
        let itt = b.itt();
        let Some(mut task) = self.cs.tasks.lock().remove(&itt) else {
            // Not (or no longer) a task of ours: aborted, or already answered. Discard.
            return self.skip_payload(dsl);
        };
        let (ttt, off, dsn, fin) = (b.ttt(), b.buffer_offset(), b.data_sn(), b.final_bit());
        if ttt != task.seq_ttt {
            task.seq_ttt = ttt;
            task.seq_sn = 0;
        }
        let in_sequence = if ttt == RESERVED_TAG { task.unsol_open } else { task.n_r2ts > 0 && task.r2ts[0] == ttt };
        let error = if !in_sequence {
            Some("Data-Out outside any open sequence")
        } else if dsn != task.seq_sn {
            Some("DataSN out of order")
        } else if off != task.received {
            Some("Buffer Offset out of order")
        } else if u64::from(off) + u64::from(dsl) > u64::from(task.edtl) {
            Some("Data-Out beyond the expected length")
        } else if ttt == RESERVED_TAG && off + dsl > self.params.first_burst_length {
            // Immediate data and unsolicited Data-Out together (RFC 7143 §13.14).
            Some("unsolicited data beyond FirstBurstLength")
        } else if ttt != RESERVED_TAG && off + dsl > task.r2t_ends[0] {
            // A solicited sequence carries exactly what its R2T asked for (at most
            // MaxBurstLength). Unchecked, the excess was taken as the start of the next burst.
            Some("Data-Out beyond the R2T's Desired Data Transfer Length")
        } else if ttt != RESERVED_TAG && fin && off + dsl != task.r2t_ends[0] {
            // Unchecked, the rest of the burst was never solicited again and the command waited
            // for it forever.
            Some("solicited sequence ended short of the R2T's Desired Data Transfer Length")
        } else {
            None
        };
        if let Some(why) = error {
            debug!(itt, why, dsn, off, "Data-Out error: the command will fail");
            task.failed.get_or_insert(Sense::new(SenseCode::DATA_PHASE_ERROR));
        }
        let usable = task.failed.is_none() && task.cmd.is_some();
        if usable {
            let useful = (dsl as usize).min(task.want.saturating_sub(off) as usize);
            let mut c = task.cmd.take().expect("checked");
            let ok = match c.buf_mut() {
                Some(buf) => self.recv_into(buf, off as usize, useful, dsl)?,
                None => {
                    self.skip_payload(dsl)?;
                    true
                }
            };
            task.cmd = Some(c);
            if !ok {
                self.digest_error(hdr, &mut task);
            }
            task.received = off + dsl;
        } else {
            self.skip_payload(dsl)?;
            task.received = task.received.wrapping_add(dsl);
        }
        task.seq_sn = task.seq_sn.wrapping_add(1);
        if fin && in_sequence {
            if ttt == RESERVED_TAG {
                task.unsol_open = false;
            } else {
                task.r2ts.copy_within(1..task.n_r2ts, 0);
                task.r2t_ends.copy_within(1..task.n_r2ts, 0);
                task.n_r2ts -= 1;
            }
        }
        self.progress(itt, task);
        Ok(())
    }

    /// Keeps a write task until more of its data comes. A task management function that
    /// aborted its command before it was kept here found nothing to end
    /// (`ConnShared::abort_pending`: the R2T may reach the initiator, and its TMF the core, before
    /// this runs), so the aborted flag is read under the table's lock while the task goes in:
    /// an abort after that finds the task; one before it is ended here. Whichever of the two
    /// takes the task out of the table ends it.
    fn park(&self, itt: u32, task: WriteTask) {
        let mut tasks = self.cs.tasks.lock();
        let aborted = task.cmd.as_ref().is_some_and(|c| c.is_aborted());
        tasks.insert(itt, task);
        drop(tasks);
        if aborted {
            self.cs.abort_pending(itt);
        }
    }

    /// Moves a write task on: wait for more data, solicit it, or hand the command to the core.
    fn progress(&mut self, itt: u32, mut task: WriteTask) {
        let Some(mut cmd) = task.cmd.take() else {
            // A drained command whose response the core already produced.
            if task.unsol_open {
                self.park(itt, task);
            } else {
                self.cs.tx.end_drain(itt);
            }
            return;
        };
        if cmd.is_aborted() {
            // A task management function raced with this PDU: the command goes (with TASK
            // ABORTED if TAS asks for it and no unsolicited data is due); later Data-Out is
            // discarded.
            if cmd.answers_task_aborted() && !task.unsol_open {
                self.cs.tx.queue_response(cmd);
            }
            return;
        }
        if let Some(sense) = task.failed {
            if task.open_sequences() {
                task.cmd = Some(cmd);
                self.park(itt, task);
            } else {
                cmd.check_condition(sense);
                self.cs.tx.queue_response(cmd);
            }
            return;
        }
        if task.unsol_open {
            task.cmd = Some(cmd);
            self.park(itt, task);
            return;
        }
        if task.received >= task.want {
            if task.n_r2ts > 0 {
                task.cmd = Some(cmd);
                self.park(itt, task);
                return;
            }
            let sess = self.scst.clone().expect("write tasks exist only in normal sessions");
            match sess.data_received(cmd) {
                Step::Done(c) => self.cs.tx.queue_response(c),
                Step::Pending => {}
                Step::NeedData(c) => drop(c),
            }
            return;
        }
        // Solicit the rest, MaxBurstLength at a time, up to MaxOutstandingR2T at once.
        if task.r2t_next < task.received {
            task.r2t_next = task.received;
        }
        let max_out = usize::from(self.params.max_outstanding_r2t).clamp(1, MAX_R2T);
        let burst = self.params.max_burst_length.max(512);
        while task.n_r2ts < max_out && task.r2t_next < task.want {
            let len = burst.min(task.want - task.r2t_next);
            let ttt = self.alloc_ttt();
            let (lun, off, r2t_sn) = (task.lun, task.r2t_next, task.r2t_sn);
            self.cs.tx.send_pdu(&[], false, |sn, bhs| {
                R2tHeader { lun, itt, ttt, sn, r2t_sn, buffer_offset: off, desired_data_transfer_length: len }
                    .write(bhs);
            });
            task.r2ts[task.n_r2ts] = ttt;
            task.r2t_ends[task.n_r2ts] = off + len;
            task.n_r2ts += 1;
            task.r2t_sn += 1;
            task.r2t_next += len;
        }
        task.cmd = Some(cmd);
        self.park(itt, task);
    }

    // ----- other PDUs ------------------------------------------------------------------

    fn nop_out(&mut self, hdr: &[u8; BHS_LEN], dsl: u32) -> Result<(), ()> {
        let b = Bhs::from_array(hdr);
        if b.itt() == RESERVED_TAG {
            // The answer to our ping.
            self.skip_payload(dsl)?;
            if self.ping.is_some_and(|(t, _)| t == b.ttt()) {
                self.ping = None;
            }
            return Ok(());
        }
        if dsl > self.params.initiator_max_recv_data_segment_length {
            // The echo would exceed what the initiator declared it can receive (RFC 7143
            // §13.12), and the ping data may not be cut: Reject the NOP-Out, as LIO does.
            self.skip_payload(dsl)?;
            self.reject(hdr, RejectReason::PROTOCOL_ERROR);
            return Ok(());
        }
        let mut data = Vec::new();
        if !self.read_payload_vec(dsl, &mut data).map_err(drop)? {
            // RFC 7143 §7.8: Reject and discard (the corrupt data used to be echoed).
            self.reject(hdr, RejectReason::DATA_DIGEST_ERROR);
            return Ok(());
        }
        let (itt, lun) = (b.itt(), b.lun());
        self.cs.tx.send_pdu(&data, true, |sn, bhs| {
            NopInHeader { data_segment_len: data.len() as u32, lun, itt, ttt: RESERVED_TAG, sn }.write(bhs);
        });
        Ok(())
    }

    fn task_mgmt(&mut self, hdr: &[u8; BHS_LEN]) {
        let b = Bhs::from_array(hdr);
        let itt = b.itt();
        let f = b.tmf_function().0 & 0x7f;
        let Some(sess) = self.scst.clone() else {
            self.reject(hdr, RejectReason::PROTOCOL_ERROR);
            return;
        };
        let rsp = |status| TmResponse { tag: u64::from(itt), status };
        if f == 7 {
            self.cs.cold_reset.store(true, Relaxed);
        }
        let out = match f {
            1..=7 => sess.submit_tm(TmRequest {
                function: TmFunction(f),
                lun: b.lun_bytes(),
                ref_tag: u64::from(b.referenced_task_tag()),
                tag: u64::from(itt),
            }),
            // TASK REASSIGN needs ErrorRecoveryLevel 2.
            8 => TmOutcome::Done(rsp(TmStatus::REASSIGN_UNSUPPORTED)),
            _ => TmOutcome::Done(rsp(TmStatus::NOT_SUPPORTED)),
        };
        // Commands the core answered while their unsolicited Data-Out was still due (their
        // response waits in the Tx, or is still to come): no status went out, so for the
        // initiator they are live tasks. The function ends them without a response and frees
        // their ITTs. (Done after `submit_tm`, which marks a command still running as aborted,
        // so its response cannot slip out in between.)
        let (rtt, lun) = (b.referenced_task_tag(), b.lun());
        let ended: Vec<u32> = {
            let mut tasks = self.cs.tasks.lock();
            let ended: Vec<u32> = tasks
                .iter()
                .filter(|(i, t)| {
                    t.cmd.is_none()
                        && match f {
                            1 => **i == rtt,
                            2 | 4 | 5 => t.lun == lun,
                            6 | 7 => true,
                            _ => false,
                        }
                })
                .map(|(i, _)| *i)
                .collect();
            for i in &ended {
                tasks.remove(i);
            }
            ended
        };
        for i in &ended {
            self.cs.tx.cancel_drain(*i);
        }
        let out = match out {
            // The core no longer knew the task, but its status had not been sent.
            TmOutcome::Done(r) if f == 1 && r.status == TmStatus::NO_TASK && !ended.is_empty() => {
                TmOutcome::Done(rsp(TmStatus::COMPLETE))
            }
            o => o,
        };
        if let TmOutcome::Done(r) = out {
            self.cs.send_tmf_response(r);
        }
    }

    fn text(&mut self, hdr: &[u8; BHS_LEN], dsl: u32) -> Result<(), ()> {
        let b = Bhs::from_array(hdr);
        let mut data = Vec::new();
        if !self.read_payload_vec(dsl, &mut data).map_err(drop)? {
            // RFC 7143 §7.8: Reject and discard (the corrupt keys used to be negotiated).
            self.reject(hdr, RejectReason::DATA_DIGEST_ERROR);
            return Ok(());
        }
        let r = self.text.on_request(&self.policy, &mut self.params, &b, &data, Default::default());
        match r {
            Ok(pdu) => {
                // MaxRecvDataSegmentLength is declarative in the full feature phase too.
                self.cs.tx.set_max_send_segment(self.params.initiator_max_recv_data_segment_length);
                self.cs.tx.send_pdu(&pdu.data, true, |sn, bhs| {
                    *bhs = pdu.bhs;
                    bhs[24..28].copy_from_slice(&sn.stat_sn.to_be_bytes());
                    bhs[28..32].copy_from_slice(&sn.exp_cmd_sn.to_be_bytes());
                    bhs[32..36].copy_from_slice(&sn.max_cmd_sn.to_be_bytes());
                });
            }
            Err(e) => self.reject(hdr, e.reject_reason()),
        }
        Ok(())
    }

    fn logout(&mut self, hdr: &[u8; BHS_LEN]) {
        let b = Bhs::from_array(hdr);
        let itt = b.itt();
        let response = match b.logout_reason() {
            LogoutReason::CLOSE_SESSION => LogoutResponseCode::SUCCESS,
            LogoutReason::CLOSE_CONNECTION if b.cid() == self.cid => LogoutResponseCode::SUCCESS,
            LogoutReason::CLOSE_CONNECTION => LogoutResponseCode::CID_NOT_FOUND,
            _ => LogoutResponseCode::RECOVERY_NOT_SUPPORTED,
        };
        if response == LogoutResponseCode::SUCCESS {
            // End the nexus before answering: the initiator may log in again right away and
            // must find the old nexus's state (removal prevention, ...) gone.
            if let Some(s) = &self.scst {
                s.close();
            }
            if let Some(isess) = &self.isess {
                self.shared.remove_session(isess.tsih);
            }
            self.logged_out = true;
        }
        self.cs.tx.send_pdu(&[], true, |sn, bhs| {
            LogoutResponseHeader { response, itt, sn, time2wait: 0, time2retain: 0 }.write(bhs);
        });
    }
}

impl Shared {
    /// A TSIH for a discovery session (never registered: discovery sessions have no nexus).
    pub(crate) fn discovery_tsih(&self) -> u16 {
        let s = self.next_conn_id() as u16;
        if s == 0 { 1 } else { s }
    }
}
