//! The iSCSI target server: portals, the target registry, the login policy and the session
//! table (TSIH allocation, session and connection reinstatement).

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use scst::acl::NamePatterns;
use scst::{CmdBox, TargetDriver, TmResponse};
use tracing::{debug, info, warn};

use crate::conn::ConnShared;
use crate::proto::LoginStatus;
use crate::proto::chap::ChapCredentials;
use crate::proto::login::{
    Auth, LeadingLogin, LoginPolicy, Resolution, SendTargetsEntry, SendTargetsQuery, TargetConfig as LoginTarget,
};
use crate::proto::params::{SessionType, TargetLimits};

/// CHAP requirements of a target or of discovery.
#[derive(Clone, Debug)]
pub struct ChapConfig {
    /// The credentials the initiator must prove (its user name and secret).
    pub initiator: ChapCredentials,
    /// The target's credentials, for initiators that ask for mutual CHAP.
    pub mutual: Option<ChapCredentials>,
}

/// One exported target.
#[derive(Clone)]
pub struct TargetEntry {
    /// The SCSI target (its name is the iSCSI target name).
    pub target: Arc<scst::Target>,
    /// TargetAlias, if any.
    pub alias: Option<String>,
    /// CHAP required to log in, if any.
    pub chap: Option<ChapConfig>,
    /// Initiator name patterns allowed to log in (see [`scst::acl`]). Empty: everyone. The
    /// target's own security groups may refuse more ([`scst::Target::admits`]).
    pub allow: NamePatterns,
}

impl std::fmt::Debug for TargetEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetEntry").field("target", &self.target.name()).field("allow", &self.allow).finish()
    }
}

/// Server configuration.
#[derive(Clone, Debug)]
pub struct IscsiConfig {
    /// Addresses to listen on (portals of target portal group 1).
    pub portals: Vec<SocketAddr>,
    /// Negotiation limits and preferences.
    pub limits: TargetLimits,
    /// CHAP required for discovery sessions, if any.
    pub discovery_chap: Option<ChapConfig>,
    /// Idle time after which the target pings the initiator with a NOP-In.
    pub nop_interval: Duration,
    /// How long a NOP-In may stay unanswered before the connection is dropped.
    pub nop_timeout: Duration,
    /// How long a connection may take to complete its login, whatever it sends meanwhile (a
    /// PDU trickling in byte by byte does not extend it).
    pub login_timeout: Duration,
    /// In the full feature phase, how long a PDU whose first bytes arrived may take to arrive
    /// completely: a peer that stops in the middle of a PDU loses its connection then.
    pub pdu_timeout: Duration,
    /// Commands a session may have outstanding (the CmdSN window).
    pub cmd_window: u32,
    /// TargetPortalGroupTag of the portals; also the relative target port identifier of the
    /// SCSI target port they form (`<target>,t,0x<tag>`). Nodes of a cluster serving one target
    /// name use different tags.
    pub portal_group_tag: u16,
    /// The ALUA target port group of that port ([`scst::alua`]).
    pub alua_group: u16,
    /// Where large READs of cached file data go out without a copy.
    pub zero_copy: ZeroCopy,
    /// How long the receive thread of a busy connection may poll its socket before it sleeps
    /// in `read` (zero: never). Adaptive per connection: only connections whose initiator
    /// sends again within this bound poll at all, so idle ones cost nothing
    /// (docs/performance.md: what it saves and what it costs).
    pub rx_poll: Duration,
}

/// Which connections send READ data straight from the page cache (`sendfile`) where the LUN
/// offers it ([`scst::BlockStore::file_range`]: FILEIO, buffered, `zerocopy` on). Never on a
/// connection with a data digest, which needs the bytes in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Connections whose initiator is not on this host's loopback (the default). Over loopback
    /// the receiver's TCP processing runs in the sending thread and costs more with page
    /// references than the two copies `sendfile` saves (docs/performance.md).
    #[default]
    Auto,
    /// Every connection.
    Always,
    /// None.
    Never,
}

impl ZeroCopy {
    /// Whether a connection from `peer` sends from files.
    pub(crate) fn allows(self, peer: std::net::IpAddr) -> bool {
        match self {
            Self::Auto => !peer.to_canonical().is_loopback(),
            Self::Always => true,
            Self::Never => false,
        }
    }
}

impl Default for IscsiConfig {
    fn default() -> Self {
        let cmd_window = 128;
        Self {
            portals: vec![SocketAddr::from(([127, 0, 0, 1], 3260))],
            limits: TargetLimits { cmd_window, max_outstanding_r2t: 8, ..TargetLimits::default() },
            discovery_chap: None,
            nop_interval: Duration::from_secs(30),
            nop_timeout: Duration::from_secs(90),
            login_timeout: Duration::from_secs(15),
            pdu_timeout: Duration::from_secs(15),
            cmd_window,
            portal_group_tag: 1,
            alua_group: 1,
            zero_copy: ZeroCopy::Auto,
            rx_poll: Duration::ZERO,
        }
    }
}

/// Whether an initiator may log in to a target: its allow list (empty: everyone) and the
/// target's security groups (which may refuse initiators no group admits).
pub(crate) fn allowed(t: &TargetEntry, initiator: &str) -> bool {
    (t.allow.is_empty() || t.allow.admits(initiator)) && t.target.admits(initiator)
}

/// An iSCSI session: the I_T nexus (an `scst::Session`) and its one connection.
pub(crate) struct IscsiSession {
    pub(crate) tsih: u16,
    pub(crate) initiator: String,
    pub(crate) isid: [u8; 6],
    pub(crate) target: String,
    pub(crate) scst: Mutex<Weak<scst::Session>>,
    pub(crate) conn: RwLock<Option<Arc<ConnShared>>>,
}

impl IscsiSession {
    fn current(&self, conn_id: u64) -> Option<Arc<ConnShared>> {
        self.conn.read().clone().filter(|c| c.tx.conn_id == conn_id)
    }
}

impl TargetDriver for IscsiSession {
    fn xmit_response(&self, cmd: CmdBox) {
        // Commands of a connection that has been replaced are dropped with it.
        let Some(c) = self.current(cmd.fabric_cookie) else { return };
        if scst::batch::active() {
            // Inside a batch (the io_uring completion thread's, or the receive thread's): queue
            // it, and send once for all of this connection's responses when the batch flushes.
            c.tx.queue_response(cmd);
            let kick: Arc<dyn scst::batch::Kick> = c;
            if !scst::batch::defer(&kick) {
                kick.kick();
            }
        } else {
            c.tx.send_response(cmd);
        }
    }

    // The lock guards are released before acting: sending may block, dropping a command may
    // complete a TMF (tm_done, a recursive read that deadlocks behind a waiting writer), and a
    // connection's teardown takes the write lock.
    fn tm_done(&self, rsp: TmResponse) {
        let conn = self.conn.read().clone();
        if let Some(c) = conn {
            c.send_tmf_response(rsp);
        }
    }

    fn abort_pending(&self, tag: u64) {
        let conn = self.conn.read().clone();
        if let Some(c) = conn {
            c.abort_pending(tag as u32);
        }
    }

    fn parameters(&self) -> Vec<(String, String)> {
        let conn = self.conn.read().clone();
        let mut p = vec![("TSIH".to_string(), self.tsih.to_string())];
        if let Some(c) = conn {
            p.extend(c.parameters().iter().cloned());
        }
        p
    }

    /// Closes the session's connection at once (SCST's `force_close`); the initiator may log in
    /// again, and a new session of the same ISID reinstates this one.
    fn close_session(&self) -> bool {
        let conn = self.conn.read().clone();
        match conn {
            Some(c) => {
                c.tx.kill();
                true
            }
            None => false,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) cfg: IscsiConfig,
    pub(crate) targets: RwLock<BTreeMap<String, TargetEntry>>,
    pub(crate) sessions: Mutex<Vec<Arc<IscsiSession>>>,
    next_tsih: AtomicU16,
    next_conn: AtomicU64,
    pub(crate) conns: Mutex<Vec<Weak<ConnShared>>>,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) bound: Mutex<Vec<SocketAddr>>,
}

impl Shared {
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Relaxed)
    }

    fn alloc_tsih(&self, sessions: &[Arc<IscsiSession>]) -> u16 {
        loop {
            let t = self.next_tsih.fetch_add(1, Relaxed);
            if t != 0 && !sessions.iter().any(|s| s.tsih == t) {
                return t;
            }
        }
    }

    /// Registers a new session, after closing one it reinstates (same initiator, ISID and
    /// target: RFC 7143 §6.3.5) and waiting for that one's connection to be gone, so the old
    /// nexus's state (removal prevention, ...) is cleared before the new one runs a command.
    pub(crate) fn new_session(&self, initiator: &str, isid: [u8; 6], target: &str) -> Arc<IscsiSession> {
        let old: Vec<Arc<IscsiSession>> = {
            let mut v = self.sessions.lock();
            let (old, keep): (Vec<_>, Vec<_>) =
                v.drain(..).partition(|s| s.initiator == initiator && s.isid == isid && s.target == target);
            *v = keep;
            old
        };
        for s in old {
            info!(tsih = s.tsih, "session reinstatement: closing the old session");
            close_session(&s);
        }
        let mut v = self.sessions.lock();
        let tsih = self.alloc_tsih(&v);
        let s = Arc::new(IscsiSession {
            tsih,
            initiator: initiator.to_string(),
            isid,
            target: target.to_string(),
            scst: Mutex::new(Weak::new()),
            conn: RwLock::new(None),
        });
        v.push(s.clone());
        s
    }

    /// Closes the connections of every session logged in to `target` (without waiting).
    pub(crate) fn close_target_connections(&self, target: &str) {
        let sessions: Vec<Arc<IscsiSession>> =
            self.sessions.lock().iter().filter(|s| s.target == target).cloned().collect();
        for s in sessions {
            let conn = s.conn.read().clone();
            if let Some(c) = conn {
                c.tx.kill();
            }
        }
    }

    pub(crate) fn find_session(&self, tsih: u16) -> Option<Arc<IscsiSession>> {
        self.sessions.lock().iter().find(|s| s.tsih == tsih).cloned()
    }

    pub(crate) fn remove_session(&self, tsih: u16) {
        self.sessions.lock().retain(|s| s.tsih != tsih);
    }

    /// SendTargets addresses of the portals, as seen from a connection to `local`.
    fn addresses(&self, local: SocketAddr) -> Vec<String> {
        self.bound
            .lock()
            .iter()
            .map(|a| {
                let ip = if a.ip().is_unspecified() { local.ip() } else { a.ip() };
                let sa = SocketAddr::new(ip, a.port());
                format!("{sa},{}", self.cfg.portal_group_tag)
            })
            .collect()
    }
}

/// Closes a session's connection and waits (bounded) until its receive thread let go of it.
pub(crate) fn close_session(s: &IscsiSession) {
    let conn = s.conn.read().clone();
    if let Some(c) = conn {
        c.tx.kill();
        c.wait_closed(Duration::from_secs(5));
    }
    if let Some(sess) = s.scst.lock().upgrade() {
        sess.close();
    }
}

/// The login policy as one connection sees it.
pub(crate) struct Policy<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) local: SocketAddr,
}

impl LoginPolicy for Policy<'_> {
    fn resolve(&self, login: &LeadingLogin<'_>) -> Resolution {
        if self.shared.shutting_down.load(Relaxed) {
            return Resolution::Deny(LoginStatus::SERVICE_UNAVAILABLE);
        }
        let auth = |chap: &Option<ChapConfig>| match chap {
            Some(c) => Auth::Chap { initiator: c.initiator.clone(), mutual: c.mutual.clone() },
            None => Auth::None,
        };
        match login.session_type {
            SessionType::Discovery => Resolution::Accept(LoginTarget {
                alias: None,
                portal_group_tag: self.shared.cfg.portal_group_tag,
                auth: auth(&self.shared.cfg.discovery_chap),
            }),
            SessionType::Normal => {
                let Some(name) = login.target_name else {
                    return Resolution::Deny(LoginStatus::MISSING_PARAMETER);
                };
                let targets = self.shared.targets.read();
                let Some(t) = targets.get(name) else {
                    debug!(target = name, "login to an unknown target");
                    return Resolution::Deny(LoginStatus::NOT_FOUND);
                };
                if !allowed(t, login.initiator_name) {
                    warn!(initiator = login.initiator_name, target = name, "initiator not allowed");
                    return Resolution::Deny(LoginStatus::AUTHORIZATION_FAILURE);
                }
                if login.tsih != 0 {
                    // Adding a connection (MC/S) is not supported; a connection reinstatement
                    // (same TSIH, the session's own ISID) replaces the session's connection.
                    match self.shared.find_session(login.tsih) {
                        Some(s) if s.isid == login.isid && s.initiator == login.initiator_name => {}
                        Some(_) => return Resolution::Deny(LoginStatus::TOO_MANY_CONNECTIONS),
                        None => return Resolution::Deny(LoginStatus::SESSION_DOES_NOT_EXIST),
                    }
                }
                Resolution::Accept(LoginTarget {
                    alias: t.alias.clone(),
                    portal_group_tag: self.shared.cfg.portal_group_tag,
                    auth: auth(&t.chap),
                })
            }
        }
    }

    fn send_targets(&self, initiator_name: &str, query: SendTargetsQuery<'_>) -> Vec<SendTargetsEntry> {
        let addresses = self.shared.addresses(self.local);
        self.shared
            .targets
            .read()
            .iter()
            .filter(|(name, t)| {
                allowed(t, initiator_name) && matches!(query, SendTargetsQuery::All)
                    || matches!(query, SendTargetsQuery::Target(q) if q == name.as_str() && allowed(t, initiator_name))
            })
            .map(|(name, _)| SendTargetsEntry { target_name: name.clone(), addresses: addresses.clone() })
            .collect()
    }
}

/// An iSCSI target server.
///
/// ```no_run
/// use std::sync::Arc;
/// use scst::{Device, DeviceConfig, Disk, Lun, SgvConfig, SgvPool, Target};
/// use scst_transport_iscsi::{IscsiConfig, IscsiServer, TargetEntry};
///
/// let target = Target::new("iqn.2026-11.rs.scst:example", SgvPool::new(SgvConfig::default()));
/// let disk = Disk::new(scst_backends::RamStore::new(64 << 20, 512).unwrap());
/// target.add_lun(Lun(0), Device::new(DeviceConfig::new("ram0"), disk).unwrap(), false).unwrap();
/// let server = IscsiServer::new(IscsiConfig::default());
/// server.add_target(TargetEntry { target, alias: None, chap: None, allow: Default::default() });
/// server.listen().unwrap();
/// ```
pub struct IscsiServer {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for IscsiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IscsiServer").field("portals", &*self.shared.bound.lock()).finish()
    }
}

impl IscsiServer {
    /// A server with no targets that is not listening yet.
    pub fn new(cfg: IscsiConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                cfg,
                targets: RwLock::new(BTreeMap::new()),
                sessions: Mutex::new(Vec::new()),
                next_tsih: AtomicU16::new(1),
                next_conn: AtomicU64::new(1),
                conns: Mutex::new(Vec::new()),
                shutting_down: AtomicBool::new(false),
                bound: Mutex::new(Vec::new()),
            }),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Exports a target (replacing one of the same name: new logins see the new entry, such as
    /// new CHAP credentials or allow list; sessions already logged in keep theirs).
    pub fn add_target(&self, entry: TargetEntry) {
        let name = entry.target.name().to_string();
        self.shared.targets.write().insert(name, entry);
    }

    /// Binds every portal and starts accepting connections. Returns the bound addresses (a port
    /// of 0 in the configuration picks a free one).
    ///
    /// # Errors
    /// If a portal cannot be bound.
    pub fn listen(&self) -> io::Result<Vec<SocketAddr>> {
        let mut addrs = Vec::new();
        for a in &self.shared.cfg.portals {
            let sock = socket2::Socket::new(socket2::Domain::for_address(*a), socket2::Type::STREAM, None)?;
            sock.set_reuse_address(true)?;
            if a.is_ipv6() {
                sock.set_only_v6(true)?;
            }
            sock.bind(&(*a).into())?;
            sock.listen(1024)?;
            let l: TcpListener = sock.into();
            let bound = l.local_addr()?;
            addrs.push(bound);
            self.shared.bound.lock().push(bound);
            let shared = self.shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("iscsi-accept-{bound}"))
                .spawn(move || accept_loop(&l, &shared))?;
            self.threads.lock().push(h);
            info!(portal = %bound, "listening");
        }
        Ok(addrs)
    }

    /// The portals being listened on.
    pub fn portals(&self) -> Vec<SocketAddr> {
        self.shared.bound.lock().clone()
    }

    /// Number of live iSCSI sessions.
    pub fn session_count(&self) -> usize {
        self.shared.sessions.lock().len()
    }

    /// Stops exporting a target: it is no longer offered by SendTargets nor accepted at login,
    /// and its connections are asked to log out (Async Message, event 1) and closed after
    /// `grace`, as [`shutdown`](Self::shutdown) does for all of them. Sessions of other targets
    /// see nothing. Returns the entry, or `None` if no target has that name.
    pub fn remove_target(&self, name: &str, grace: Duration) -> Option<TargetEntry> {
        let entry = self.shared.targets.write().remove(name)?;
        // A connection registered after this look sees the target gone and closes itself.
        self.close_gracefully(|c| c.target() == Some(name), grace);
        info!(target = name, "target removed");
        Some(entry)
    }

    /// Asks the connections `which` selects to log out, waits up to `grace` for them, then
    /// closes what is left.
    fn close_gracefully(&self, which: impl Fn(&ConnShared) -> bool, grace: Duration) {
        let conns: Vec<Arc<ConnShared>> =
            self.shared.conns.lock().iter().filter_map(Weak::upgrade).filter(|c| which(c)).collect();
        for c in &conns {
            c.request_logout(grace);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && conns.iter().any(|c| !c.is_closed()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for c in &conns {
            c.tx.kill();
        }
        for c in &conns {
            c.wait_closed(Duration::from_secs(5));
        }
    }

    /// Stops the server: refuses new logins, asks every connection to log out (Async Message,
    /// event 1), waits up to `grace` for them, then closes what is left.
    pub fn shutdown(&self, grace: Duration) {
        self.shared.shutting_down.store(true, Relaxed);
        self.close_gracefully(|_| true, grace);
        for a in self.shared.bound.lock().iter() {
            // Wake the accept loops so they see the flag.
            let _ = std::net::TcpStream::connect_timeout(a, Duration::from_millis(200));
        }
        for h in self.threads.lock().drain(..) {
            let _ = h.join();
        }
    }
}

fn accept_loop(l: &TcpListener, shared: &Arc<Shared>) {
    loop {
        let (sock, peer) = match l.accept() {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if shared.shutting_down.load(Relaxed) {
            return;
        }
        let shared = shared.clone();
        let r = std::thread::Builder::new().name(format!("iscsi-conn-{peer}")).spawn(move || {
            crate::conn::run(sock, peer, &shared);
        });
        if let Err(e) = r {
            warn!(error = %e, "cannot start a connection thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_copy_auto_is_off_for_loopback_initiators_only() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        for lo in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            assert!(!ZeroCopy::Auto.allows(ip(lo)), "{lo}");
            assert!(ZeroCopy::Always.allows(ip(lo)), "{lo}");
        }
        for remote in ["192.168.1.5", "10.0.0.1", "fe80::1", "::ffff:10.1.2.3"] {
            assert!(ZeroCopy::Auto.allows(ip(remote)), "{remote}");
            assert!(!ZeroCopy::Never.allows(ip(remote)), "{remote}");
        }
    }

    #[test]
    fn allow_lists_and_security_groups() {
        let target = scst::Target::new("iqn.t", scst::SgvPool::new(scst::SgvConfig::default()));
        let mut t = TargetEntry {
            target: target.clone(),
            alias: None,
            chap: None,
            allow: NamePatterns::parse("iqn.*,!iqn.*:evil").unwrap(),
        };
        assert!(allowed(&t, "iqn.a:good"));
        assert!(!allowed(&t, "iqn.a:evil"));
        assert!(!allowed(&t, "eui.1234"));
        t.allow = NamePatterns::default();
        assert!(allowed(&t, "anything"));
        target.add_group("g", NamePatterns::parse("*:db*").unwrap()).unwrap();
        target.set_refuse_unmatched(true);
        assert!(!allowed(&t, "iqn.a:web"));
        assert!(allowed(&t, "iqn.a:db1"));
    }
}
