//! A vhost-user-scsi backend: a VM's virtio-scsi controller served by an scst [`Target`].
//!
//! QEMU (`-device vhost-user-scsi-pci,chardev=...`) or cloud-hypervisor hands the guest's
//! virtqueues and shared memory to this process over a Unix socket. Each socket is one I_T
//! nexus ([`Session`]); the guest's commands go through the core like any fabric's.
//!
//! ```text
//!  guest virtio-scsi ── vhost-user socket ── rust-vmm VhostUserDaemon (one thread per queue set)
//!     queue 0 control: TMF → Session::submit_tm; AN query/subscribe → no event classes
//!     queue 1 event:   buffers kept in the ring until VhostUserScsi::rescan uses one
//!     queue 2.. request: pop chain → parse → Session::submit ─┐ (many in flight per queue)
//!                         used ring + call eventfd ◄─ inline Step::Done, or xmit_response from
//!                                                      a device worker
//! ```
//!
//! Data moves with one copy: Data-Out from guest memory into the command's SGV buffer before
//! [`Session::data_received`], Data-In from the buffer (or the zero page) into guest memory at
//! completion. The core allocates command buffers itself, so they cannot point into guest
//! memory yet.
//!
//! Guest input is untrusted: every guest address goes through vm-memory's bounds-checked
//! accessors, descriptor chains are walked by virtio-queue (loop and indirect-table checks),
//! and a chain whose layout is wrong gets `VIRTIO_SCSI_S_FAILURE` (or, when it has no room for
//! a response, is returned with length 0). Nothing the guest writes can panic the backend.
//!
//! Reconnection: [`VhostUserScsi::serve`] handles one frontend connection at a time and can be
//! called again for the next one (QEMU restarted, or a chardev with `reconnect=`). The session
//! lives as long as the [`VhostUserScsi`], so persistent reservations stay; each connection
//! after the first starts with an I_T NEXUS RESET of it (the old incarnation's commands are
//! aborted, its removal preventions dropped, the guest sees I_T NEXUS LOSS OCCURRED). When the
//! frontend stops a queue (`GET_VRING_BASE`), the backend waits up to [`STOP_TIMEOUT`] for the
//! queue's commands in flight; completions of commands that outlive that, or that belong to an
//! earlier connection, are discarded rather than written to rings that now belong to another
//! guest. Backend restarts (a new process) are QEMU's business: it re-sends the whole setup.
//!
//! Events: the core does not tell a fabric about LUN map or capacity changes, so
//! [`VhostUserScsi::rescan`] (called by the application) compares and posts TRANSPORT_RESET
//! (hot-plug, hot-unplug) and PARAM_CHANGE (capacity) events; event buffers stay in the ring
//! until then.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use scst::{
    CmdBox, CmdHeader, DataDir, Lun, ProtocolId, ScsiStatus, Session, SessionConfig, Step, Target, TargetDriver,
    TargetPort, TmFunction, TmOutcome, TmRequest, TmResponse, TmStatus,
};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon, VringMutex, VringState, VringT};
use virtio_queue::{DescriptorChain, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryLoadGuard, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventFlag, EventNotifier, new_event_consumer_and_notifier};

use crate::virtio_scsi::{
    AN_RESP_LEN, CDB_SIZE, CMD_REQ_LEN, CMD_RESP_FIXED, CMD_RESP_LEN, CmdReq, CmdResp, CtrlReq, EVENT_LEN, Event,
    F_CHANGE, F_HOTPLUG, Response, SENSE_SIZE, T_EVENTS_MISSED, TMF_RESP_LEN, VirtioLun, tmf_response, write_an_resp,
};

/// The guest memory type of the backend.
pub type Mem = GuestMemoryAtomic<GuestMemoryMmap>;
/// The vring type of the backend.
pub type Vring = VringMutex<Mem>;

/// Queue index of the control queue.
pub const CONTROL_QUEUE: usize = 0;
/// Queue index of the event queue.
pub const EVENT_QUEUE: usize = 1;
/// Index of the first request queue.
pub const FIRST_REQUEST_QUEUE: usize = 2;
/// How long stopping a queue waits for its commands in flight.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Virtio feature bits the backend offers.
const VIRTIO_F_VERSION_1: u64 = 1 << 32;
const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;

/// Configuration of one vhost-user-scsi controller.
#[derive(Clone, Debug)]
pub struct VhostScsiConfig {
    /// Initiator name of the nexus; `None` derives `vhost-user-scsi:<socket path>`.
    pub initiator_name: Option<String>,
    /// Request queues offered (the guest may use fewer; QEMU uses one per vCPU by default).
    pub request_queues: usize,
    /// Largest virtqueue size the frontend may configure.
    pub max_queue_size: u16,
    /// Relative target port identifier of this controller's port.
    pub rel_port_id: u16,
    /// ALUA target port group of the port.
    pub tpg_id: u16,
}

impl Default for VhostScsiConfig {
    fn default() -> Self {
        Self { initiator_name: None, request_queues: 4, max_queue_size: 1024, rel_port_id: 1, tpg_id: 1 }
    }
}

/// Why the backend could not be set up or serve.
#[derive(Debug, thiserror::Error)]
pub enum VhostError {
    /// The configuration is out of range.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// The vhost-user daemon failed.
    #[error("vhost-user: {0}")]
    Daemon(String),
}

/// Where a popped chain's buffers are: device-readable then device-writable guest ranges.
#[derive(Default)]
struct Slot {
    readable: Vec<(u64, u32)>,
    writable: Vec<(u64, u32)>,
}

/// Bytes covered by `regions`.
fn total(regions: &[(u64, u32)]) -> usize {
    regions.iter().map(|r| r.1 as usize).sum()
}

/// Copies guest bytes at logical offset `off` of `regions` into `dst` (and fills what the
/// regions do not cover with zeros). Errors on addresses outside guest memory.
fn gather(mem: &GuestMemoryMmap, regions: &[(u64, u32)], mut off: usize, dst: &mut [u8]) -> Result<usize, ()> {
    let mut at = 0;
    for &(addr, len) in regions {
        let len = len as usize;
        if off >= len {
            off -= len;
            continue;
        }
        let n = (len - off).min(dst.len() - at);
        mem.read_slice(&mut dst[at..at + n], GuestAddress(addr).checked_add_off(off)).map_err(|_| ())?;
        at += n;
        off = 0;
        if at == dst.len() {
            break;
        }
    }
    Ok(at)
}

/// Copies `src` into guest memory at logical offset `off` of `regions`; returns the bytes
/// written (fewer when the regions end first).
fn scatter(mem: &GuestMemoryMmap, regions: &[(u64, u32)], mut off: usize, src: &[u8]) -> Result<usize, ()> {
    let mut at = 0;
    for &(addr, len) in regions {
        let len = len as usize;
        if off >= len {
            off -= len;
            continue;
        }
        let n = (len - off).min(src.len() - at);
        mem.write_slice(&src[at..at + n], GuestAddress(addr).checked_add_off(off)).map_err(|_| ())?;
        at += n;
        off = 0;
        if at == src.len() {
            break;
        }
    }
    Ok(at)
}

trait AddOff {
    fn checked_add_off(self, off: usize) -> Self;
}

impl AddOff for GuestAddress {
    /// Adds `off`; wraps to an address no memory has on overflow (the access then fails).
    fn checked_add_off(self, off: usize) -> Self {
        Self(self.0.saturating_add(off as u64))
    }
}

struct QueueState {
    slots: Box<[Mutex<Slot>]>,
    inflight: AtomicUsize,
    idle: Condvar,
    idle_lock: Mutex<()>,
    /// Bumped when a stop gave up waiting: completions carrying an older epoch are dropped.
    epoch: AtomicU32,
}

impl QueueState {
    fn new(size: u16) -> Self {
        Self {
            slots: (0..size).map(|_| Mutex::new(Slot::default())).collect(),
            inflight: AtomicUsize::new(0),
            idle: Condvar::new(),
            idle_lock: Mutex::new(()),
            epoch: AtomicU32::new(0),
        }
    }

    fn finished(&self) {
        let before = self.inflight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)));
        if before == Ok(1) {
            let _g = self.idle_lock.lock();
            self.idle.notify_all();
        }
    }
}

/// Packs (epoch, queue, head) into a command's fabric cookie or a TMF tag.
fn cookie(epoch: u32, queue: usize, head: u16) -> u64 {
    u64::from(epoch) << 32 | (queue as u64 & 0xffff) << 16 | u64::from(head)
}

fn uncookie(c: u64) -> (u32, usize, u16) {
    ((c >> 32) as u32, ((c >> 16) & 0xffff) as usize, c as u16)
}

/// Counters of one controller.
#[derive(Debug, Default)]
pub struct VhostStats {
    /// Chains taken from each queue (index = queue index: 0 control, 1 event, 2.. requests).
    pub chains: Box<[AtomicUsize]>,
    /// Requests refused at the virtio level (malformed chains, bad targets).
    pub bad_requests: AtomicUsize,
    /// Events dropped for lack of an event buffer (reported to the guest as EVENTS_MISSED).
    pub events_missed: AtomicUsize,
    /// Completions discarded because their queue was stopped or restarted meanwhile.
    pub stale_completions: AtomicUsize,
}

/// What the session's fabric side shares with the vhost-user side.
struct Shared {
    queues: Box<[QueueState]>,
    queues_per_thread: Vec<u64>,
    vrings: RwLock<Vec<Option<Vring>>>,
    mem: RwLock<Option<Mem>>,
    event_idx: AtomicBool,
    events_missed: AtomicBool,
    stats: VhostStats,
}

impl Shared {
    fn vring(&self, q: usize) -> Option<Vring> {
        self.vrings.read().get(q).cloned().flatten()
    }

    fn memory(&self) -> Option<GuestMemoryLoadGuard<GuestMemoryMmap>> {
        self.mem.read().as_ref().map(GuestMemoryAtomic::memory)
    }

    /// Returns a chain to the guest and signals it when `signal`.
    fn used(&self, q: usize, head: u16, len: u32, signal: bool) {
        let Some(vring) = self.vring(q) else { return };
        let mut st = vring.get_mut();
        if st.add_used(head, len).is_err() {
            return;
        }
        if signal {
            Self::notify(&mut st);
        }
    }

    fn notify(st: &mut VringState<Mem>) {
        if st.needs_notification().unwrap_or(true) {
            let _ = st.signal_used_queue();
        }
    }

    fn signal(&self, q: usize) {
        if let Some(vring) = self.vring(q) {
            Self::notify(&mut vring.get_mut());
        }
    }

    /// Writes a command's response and Data-In and returns the chain (`signal`: notify the
    /// guest now; inline completions signal once per batch instead).
    fn complete(&self, cmd: CmdBox, signal: bool) {
        let (epoch, q, head) = uncookie(cmd.fabric_cookie);
        let Some(qs) = self.queues.get(q) else { return };
        if qs.epoch.load(Ordering::Acquire) != epoch {
            self.stats.stale_completions.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let len = match self.memory() {
            Some(mem) => {
                let slot = qs.slots[usize::from(head)].lock();
                Self::write_cmd_response(&mem, &slot.writable, &cmd)
            }
            None => 0,
        };
        drop(cmd);
        self.used(q, head, len, signal);
        qs.finished();
    }

    fn write_cmd_response(mem: &GuestMemoryMmap, wr: &[(u64, u32)], cmd: &CmdBox) -> u32 {
        let mut n = 0;
        let (status, response, sense): (u8, Response, &[u8]) = if cmd.answers_task_aborted() {
            (ScsiStatus::TASK_ABORTED.0, Response::OK, &[])
        } else if cmd.is_aborted() {
            (0, Response::ABORTED, &[])
        } else {
            let want = cmd.data_in_len().min(total(wr).saturating_sub(CMD_RESP_LEN));
            let mut iov = scst::sgv::empty_io_slices();
            let k = cmd.data_in_slices(0, want, &mut iov);
            for s in &iov[..k] {
                match scatter(mem, wr, CMD_RESP_LEN + n, s) {
                    Ok(w) => n += w,
                    Err(()) => return Self::write_failure(mem, wr),
                }
            }
            (cmd.status().0, Response::OK, cmd.sense())
        };
        let (over, count) = cmd.residual();
        let resid = if response == Response::OK && !over { count } else { 0 };
        let mut out = [0u8; CMD_RESP_LEN];
        let hdr = CmdResp { resid, status, response, sense }.write(&mut out, SENSE_SIZE);
        match scatter(mem, wr, 0, &out[..hdr]) {
            Ok(w) => (w + n) as u32,
            Err(()) => 0,
        }
    }

    fn write_failure(mem: &GuestMemoryMmap, wr: &[(u64, u32)]) -> u32 {
        let mut out = [0u8; CMD_RESP_LEN];
        let hdr = CmdResp::only(Response::FAILURE).write(&mut out, SENSE_SIZE);
        scatter(mem, wr, 0, &out[..hdr]).map_or(0, |w| w as u32)
    }

    /// Writes a TMF response byte for control chain `head` and returns it.
    fn tmf_complete(&self, tag: u64, status: TmStatus) {
        let (epoch, q, head) = uncookie(tag);
        let Some(qs) = self.queues.get(q) else { return };
        if qs.epoch.load(Ordering::Acquire) != epoch {
            self.stats.stale_completions.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let len = match self.memory() {
            Some(mem) => {
                let slot = qs.slots[usize::from(head)].lock();
                scatter(&mem, &slot.writable, 0, &[tmf_response(status).0]).map_or(0, |w| w as u32)
            }
            None => 0,
        };
        self.used(q, head, len, true);
        qs.finished();
    }

    /// Posts an event on the event queue, or records that one was missed.
    fn post_event(&self, mut ev: Event) -> bool {
        let (Some(vring), Some(mem)) = (self.vring(EVENT_QUEUE), self.memory()) else {
            self.missed();
            return false;
        };
        let mut st = vring.get_mut();
        let Some(chain) = st.get_queue_mut().pop_descriptor_chain(mem.clone()) else {
            drop(st);
            self.missed();
            return false;
        };
        let head = chain.head_index();
        if self.events_missed.swap(false, Ordering::AcqRel) {
            ev.event |= T_EVENTS_MISSED;
        }
        let mut slot = Slot::default();
        let len = if walk(chain, &mut slot).is_ok() && slot.readable.is_empty() && total(&slot.writable) >= EVENT_LEN {
            scatter(&mem, &slot.writable, 0, &ev.to_bytes()).map_or(0, |w| w as u32)
        } else {
            self.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
            0
        };
        if st.add_used(head, len).is_ok() {
            Self::notify(&mut st);
        }
        len > 0
    }

    fn missed(&self) {
        self.events_missed.store(true, Ordering::Release);
        self.stats.events_missed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The malformed-layout reasons [`walk`] reports.
#[derive(Debug, PartialEq, Eq)]
enum ChainError {
    /// A device-readable descriptor after a device-writable one (virtio 1.2 §2.7.4.2).
    ReadableAfterWritable,
    /// Larger than 4 GiB in one direction.
    TooLong,
}

/// Records the chain's readable and writable ranges in `slot` (reusing its vectors). The
/// iterator stops at a bad descriptor index, loop or indirect table; what was read up to there
/// is kept and length checks by the caller reject what is too short.
fn walk<M>(chain: DescriptorChain<M>, slot: &mut Slot) -> Result<(), ChainError>
where
    M: std::ops::Deref,
    M::Target: vm_memory::GuestMemory,
{
    slot.readable.clear();
    slot.writable.clear();
    let (mut r, mut w) = (0u64, 0u64);
    for d in chain {
        if d.is_write_only() {
            w += u64::from(d.len());
            slot.writable.push((d.addr().0, d.len()));
        } else {
            if !slot.writable.is_empty() {
                return Err(ChainError::ReadableAfterWritable);
            }
            r += u64::from(d.len());
            slot.readable.push((d.addr().0, d.len()));
        }
    }
    if r > u64::from(u32::MAX) || w > u64::from(u32::MAX) {
        return Err(ChainError::TooLong);
    }
    Ok(())
}

/// The fabric: asynchronous completions from the core.
struct Fabric(Arc<Shared>);

impl TargetDriver for Fabric {
    fn xmit_response(&self, cmd: CmdBox) {
        self.0.complete(cmd, true);
    }

    fn tm_done(&self, rsp: TmResponse) {
        self.0.tmf_complete(rsp.tag, rsp.status);
    }

    // abort_pending: the backend never holds a command waiting for Data-Out (it copies the data
    // before `data_received` on the same thread), so the core always gets it back.
}

/// One vhost-user-scsi controller: an I_T nexus of `target`, served over one socket.
pub struct VhostUserScsi {
    shared: Arc<Shared>,
    session: Arc<Session>,
    cfg: VhostScsiConfig,
    known_luns: Mutex<Vec<Lun>>,
    connections: AtomicUsize,
}

impl std::fmt::Debug for VhostUserScsi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostUserScsi").field("session", &self.session).finish_non_exhaustive()
    }
}

impl VhostUserScsi {
    /// Creates the controller and its session. `socket_path` names the nexus when
    /// [`VhostScsiConfig::initiator_name`] is `None`.
    ///
    /// The port's protocol identifier is [`ProtocolId::NONE`]: virtio-scsi is not a SCSI
    /// transport protocol of SPC-4, and a SAS or FC identifier would make TransportIDs and VPD
    /// 83h claim addresses that do not exist (Linux's vhost-scsi reports SAS only because its
    /// WWNs are made-up `naa.` names).
    ///
    /// # Errors
    /// [`VhostError::Config`] for zero or more than 62 request queues or a queue size that is
    /// not a power of two.
    pub fn new(target: &Arc<Target>, socket_path: &Path, cfg: VhostScsiConfig) -> Result<Arc<Self>, VhostError> {
        if cfg.request_queues == 0 || cfg.request_queues > 62 {
            return Err(VhostError::Config("request queues must be 1..=62"));
        }
        if !cfg.max_queue_size.is_power_of_two() {
            return Err(VhostError::Config("queue size must be a power of two"));
        }
        let nq = FIRST_REQUEST_QUEUE + cfg.request_queues;
        // Thread 0: control and event queues; then one thread per request queue.
        let mut queues_per_thread = vec![0b11u64];
        queues_per_thread.extend((FIRST_REQUEST_QUEUE..nq).map(|q| 1u64 << q));
        let shared = Arc::new(Shared {
            queues: (0..nq).map(|_| QueueState::new(cfg.max_queue_size)).collect(),
            queues_per_thread,
            vrings: RwLock::new(vec![None; nq]),
            mem: RwLock::new(None),
            event_idx: AtomicBool::new(false),
            events_missed: AtomicBool::new(false),
            stats: VhostStats { chains: (0..nq).map(|_| AtomicUsize::new(0)).collect(), ..VhostStats::default() },
        });
        let name = cfg.initiator_name.clone().unwrap_or_else(|| format!("vhost-user-scsi:{}", socket_path.display()));
        let port = Arc::new(TargetPort {
            protocol: ProtocolId::NONE,
            rel_port_id: cfg.rel_port_id,
            name: format!("{},t,0x{:04x}", target.name(), cfg.rel_port_id),
            version_descriptor: 0,
            tpg_id: cfg.tpg_id,
        });
        let depth = (usize::from(cfg.max_queue_size) * cfg.request_queues).min(65535);
        let scfg = SessionConfig { initiator_port: format!("{name},i,vhost"), initiator_name: name, port, depth };
        let session = target.register_session(scfg, Arc::new(Fabric(shared.clone())));
        let known_luns = Mutex::new(session.luns());
        Ok(Arc::new(Self { shared, session, cfg, known_luns, connections: AtomicUsize::new(0) }))
    }

    /// The I_T nexus.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Counters.
    pub fn stats(&self) -> &VhostStats {
        &self.shared.stats
    }

    /// Serves one frontend connection on `socket_path` (created, replacing a stale socket
    /// file) until it disconnects. Call again to accept the next connection.
    ///
    /// # Errors
    /// [`VhostError::Daemon`] when the socket cannot be set up or the protocol fails.
    pub fn serve(self: &Arc<Self>, socket_path: &Path) -> Result<(), VhostError> {
        // Completions of commands the previous frontend left in flight must not reach the next
        // one's rings (a frontend that vanished without stopping its queues).
        for qs in &self.shared.queues {
            qs.epoch.fetch_add(1, Ordering::AcqRel);
            qs.inflight.store(0, Ordering::Release);
        }
        // A new connection gets new vrings (the daemon creates them) and a new memory table.
        self.shared.vrings.write().iter_mut().for_each(|v| *v = None);
        *self.shared.mem.write() = None;
        self.shared.events_missed.store(false, Ordering::Release);
        if self.connections.fetch_add(1, Ordering::AcqRel) > 0 {
            // A new frontend is a new incarnation of the initiator: the old nexus is lost. Its
            // commands are aborted, its removal preventions dropped, and the next command sees
            // I_T NEXUS LOSS OCCURRED. (The tag names no queue: a late answer is dropped.)
            let req = TmRequest { function: TmFunction::I_T_NEXUS_RESET, lun: [0; 8], ref_tag: 0, tag: u64::MAX };
            let _ = self.session.submit_tm(req);
        }
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let mut daemon = VhostUserDaemon::new("vhost-user-scsi".into(), self.clone(), mem)
            .map_err(|e| VhostError::Daemon(e.to_string()))?;
        daemon.serve(socket_path).map_err(|e| VhostError::Daemon(e.to_string()))
    }

    /// Tells the guest about changes since the last call: a hot-plug (TRANSPORT_RESET, RESCAN)
    /// or hot-unplug (REMOVED) event for each LUN that appeared in or left the nexus's view, and
    /// for each LUN that stayed, re-reads its capacity ([`scst::Device::rescan`], which may
    /// block) and posts PARAM_CHANGE with CAPACITY DATA HAS CHANGED (2Ah/09h) if it changed, on
    /// which Linux revalidates the disk. Returns the events posted; events that found no buffer
    /// are reported to the guest as EVENTS_MISSED with the next event (the guest then rescans
    /// the whole bus).
    ///
    /// The core has no hook that reports LUN map or capacity changes to a fabric, so the
    /// application calls this (the example target does it periodically and on SIGHUP). A
    /// capacity change that another caller of `Device::rescan` noticed first is not seen here.
    pub fn rescan(&self) -> usize {
        let map = self.session.target().lun_map_for(&self.session.config().initiator_name);
        let now: Vec<Lun> = self.session.luns();
        let mut known = self.known_luns.lock();
        let mut posted = 0;
        for l in known.iter().filter(|l| !now.contains(l)) {
            posted += usize::from(self.shared.post_event(Event::lun_change(l.0, false)));
        }
        for l in &now {
            if !known.contains(l) {
                posted += usize::from(self.shared.post_event(Event::lun_change(l.0, true)));
            } else if map.get(l).is_some_and(|m| m.dev.rescan()) {
                posted += usize::from(self.post_param_change(l.0, 0x2a, 0x09));
            }
        }
        *known = now;
        posted
    }

    /// Tells the guest that `devices` changed capacity (someone else's [`scst::Device::rescan`]
    /// noticed it, so [`Self::rescan`] will not): PARAM_CHANGE with CAPACITY DATA HAS CHANGED
    /// for each LUN of this nexus that maps one of them. Returns the events posted.
    pub fn capacity_changed(&self, devices: &[Arc<scst::Device>]) -> usize {
        let map = self.session.target().lun_map_for(&self.session.config().initiator_name);
        map.iter()
            .filter(|(_, m)| devices.iter().any(|d| Arc::ptr_eq(d, &m.dev)))
            .map(|(l, _)| usize::from(self.post_param_change(l.0, 0x2a, 0x09)))
            .sum()
    }

    /// Posts a parameter change event (a unit attention's ASC/ASCQ, e.g. 2Ah/09h CAPACITY DATA
    /// HAS CHANGED, on which Linux revalidates the disk). Returns whether a buffer was there.
    pub fn post_param_change(&self, lun: u16, asc: u8, ascq: u8) -> bool {
        self.shared.post_event(Event::param_change(lun, asc, ascq))
    }

    /// The global queue index of `thread`'s `n`th queue.
    fn queue_index(&self, thread: usize, n: u16) -> Option<usize> {
        let mask = *self.shared.queues_per_thread.get(thread)?;
        (0..64).filter(|b| mask >> b & 1 == 1).nth(usize::from(n))
    }

    fn remember_vrings(&self, thread: usize, vrings: &[Vring]) {
        let Some(&mask) = self.shared.queues_per_thread.get(thread) else { return };
        let first = (0..64).find(|b| mask >> b & 1 == 1).unwrap_or(0);
        if self.shared.vrings.read().get(first).is_some_and(Option::is_some) {
            return;
        }
        let mut all = self.shared.vrings.write();
        for (v, q) in vrings.iter().zip((0..64).filter(|b| mask >> b & 1 == 1)) {
            if let Some(s) = all.get_mut(q) {
                *s = Some(v.clone());
            }
        }
    }

    /// Runs a queue until the guest has nothing more on it (with EVENT_IDX, re-checking after
    /// re-enabling notifications so no kick is lost).
    fn drain(&self, q: usize, vring: &Vring) {
        let Some(mem) = self.shared.memory() else { return };
        let event_idx = self.shared.event_idx.load(Ordering::Relaxed);
        loop {
            if event_idx {
                let _ = vring.disable_notification();
            }
            let mut any = false;
            loop {
                // The vring lock is not held while the chain is processed: completions of other
                // commands (xmit_response) take it.
                let chain = vring.get_mut().get_queue_mut().pop_descriptor_chain(mem.clone());
                let Some(chain) = chain else { break };
                any = true;
                if let Some(c) = self.shared.stats.chains.get(q) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                if q == CONTROL_QUEUE {
                    self.control(q, chain, &mem);
                } else {
                    self.request(q, chain, &mem);
                }
            }
            if any {
                self.shared.signal(q);
            }
            if !event_idx || !vring.enable_notification().unwrap_or(false) {
                break;
            }
        }
    }

    /// Handles one request queue chain: parse, submit, and for inline completions respond.
    fn request(&self, q: usize, chain: DescriptorChain<GuestMemoryLoadGuard<GuestMemoryMmap>>, mem: &GuestMemoryMmap) {
        let qs = &self.shared.queues[q];
        let head = chain.head_index();
        let Some(slot_m) = qs.slots.get(usize::from(head)) else {
            self.shared.used(q, head, 0, false);
            return;
        };
        qs.inflight.fetch_add(1, Ordering::AcqRel);
        let mut slot = slot_m.lock();
        let reject = |slot: &Slot, r: Response| {
            self.shared.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
            let mut out = [0u8; CMD_RESP_LEN];
            let n = CmdResp::only(r).write(&mut out, SENSE_SIZE);
            let len = if total(&slot.writable) >= CMD_RESP_FIXED {
                scatter(mem, &slot.writable, 0, &out[..n]).map_or(0, |w| w as u32)
            } else {
                0
            };
            self.shared.used(q, head, len, false);
            qs.finished();
        };
        if walk(chain, &mut slot).is_err() {
            return reject(&slot, Response::FAILURE);
        }
        let mut hdr = [0u8; CMD_REQ_LEN];
        let got = gather(mem, &slot.readable, 0, &mut hdr).unwrap_or(0);
        let req = match CmdReq::parse(&hdr[..got], CDB_SIZE) {
            Ok(r) if total(&slot.writable) >= CMD_RESP_FIXED => r,
            _ => return reject(&slot, Response::FAILURE),
        };
        let Ok(lun) = VirtioLun::parse(&req.lun) else { return reject(&slot, Response::BAD_TARGET) };
        let out_len = total(&slot.readable) - CMD_REQ_LEN;
        let in_len = total(&slot.writable).saturating_sub(CMD_RESP_LEN);
        let (expected_len, expected_dir) = match (out_len, in_len) {
            (0, 0) => (0, DataDir::None),
            (n, 0) => (n, DataDir::Out),
            (0, n) => (n, DataDir::In),
            // Bidirectional commands need VIRTIO_SCSI_F_INOUT, which is not offered.
            _ => return reject(&slot, Response::FAILURE),
        };
        let ch = CmdHeader {
            lun: lun.sam,
            cdb: req.cdb,
            attr: req.attr,
            tag: req.tag,
            expected_len: expected_len as u32,
            expected_dir,
        };
        let epoch = qs.epoch.load(Ordering::Acquire);
        let Ok(mut cmd) = self.session.alloc_cmd(&ch) else {
            let mut out = [0u8; CMD_RESP_LEN];
            let n = CmdResp { resid: 0, status: Session::task_set_full().0, response: Response::OK, sense: &[] }
                .write(&mut out, SENSE_SIZE);
            let len = scatter(mem, &slot.writable, 0, &out[..n]).map_or(0, |w| w as u32);
            self.shared.used(q, head, len, false);
            qs.finished();
            return;
        };
        cmd.fabric_cookie = cookie(epoch, q, head);
        let readable = std::mem::take(&mut slot.readable);
        // The completion path locks the slot: release it before the core can complete.
        drop(slot);
        let mut step = self.session.submit(cmd);
        let mut copy_failed = false;
        loop {
            match step {
                Step::NeedData(mut c) => {
                    let want = c.data_out_len();
                    let mut off = CMD_REQ_LEN;
                    if let Some(buf) = c.buf_mut() {
                        buf.for_each_mut(0, want, |seg| match gather(mem, &readable, off, seg) {
                            Ok(n) if n == seg.len() => off += n,
                            _ => copy_failed = true,
                        });
                    }
                    if copy_failed {
                        // Dropping the command releases it; the guest gets FAILURE.
                        drop(c);
                        break;
                    }
                    step = self.session.data_received(c);
                }
                Step::Done(c) => {
                    self.shared.complete(c, false);
                    break;
                }
                Step::Pending => break,
            }
        }
        let mut slot = slot_m.lock();
        slot.readable = readable;
        if copy_failed {
            reject(&slot, Response::FAILURE);
        }
    }

    /// Handles one control queue chain.
    fn control(&self, q: usize, chain: DescriptorChain<GuestMemoryLoadGuard<GuestMemoryMmap>>, mem: &GuestMemoryMmap) {
        let qs = &self.shared.queues[q];
        let head = chain.head_index();
        let Some(slot_m) = qs.slots.get(usize::from(head)) else {
            self.shared.used(q, head, 0, false);
            return;
        };
        let mut slot = slot_m.lock();
        let mut buf = [0u8; 24];
        let parsed = walk(chain, &mut slot)
            .ok()
            .and_then(|()| gather(mem, &slot.readable, 0, &mut buf).ok())
            .and_then(|n| CtrlReq::parse(&buf[..n]).ok())
            .filter(|r| total(&slot.writable) >= r.response_len());
        let Some(req) = parsed else {
            // Too malformed to answer in its own format: return it with nothing written.
            self.shared.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
            self.shared.used(q, head, 0, false);
            return;
        };
        match req {
            CtrlReq::An { .. } => {
                // No asynchronous notification classes are supported: event_actual is 0.
                let mut out = [0u8; AN_RESP_LEN];
                write_an_resp(&mut out, 0, Response::OK);
                let len = scatter(mem, &slot.writable, 0, &out).map_or(0, |w| w as u32);
                self.shared.used(q, head, len, false);
            }
            CtrlReq::Tmf { subtype, lun, tag } => {
                let answer = |r: Response| {
                    let len = scatter(mem, &slot.writable, 0, &[r.0]).map_or(0, |w| w as u32);
                    debug_assert!(len as usize <= TMF_RESP_LEN);
                    self.shared.used(q, head, len, false);
                };
                let Some(subtype) = subtype else { return answer(Response::FUNCTION_REJECTED) };
                let Ok(vl) = VirtioLun::parse(&lun) else { return answer(Response::BAD_TARGET) };
                let epoch = qs.epoch.load(Ordering::Acquire);
                let req =
                    TmRequest { function: subtype.function(), lun: vl.sam, ref_tag: tag, tag: cookie(epoch, q, head) };
                qs.inflight.fetch_add(1, Ordering::AcqRel);
                // tm_done locks the slot.
                drop(slot);
                match self.session.submit_tm(req) {
                    TmOutcome::Done(rsp) => self.shared.tmf_complete(rsp.tag, rsp.status),
                    TmOutcome::Pending => {}
                }
            }
        }
    }
}

impl VhostUserBackend for VhostUserScsi {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        FIRST_REQUEST_QUEUE + self.cfg.request_queues
    }

    fn max_queue_size(&self) -> usize {
        usize::from(self.cfg.max_queue_size)
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_INDIRECT_DESC
            | VIRTIO_RING_F_EVENT_IDX
            | F_HOTPLUG
            | F_CHANGE
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::REPLY_ACK
    }

    fn set_event_idx(&self, enabled: bool) {
        self.shared.event_idx.store(enabled, Ordering::Relaxed);
    }

    fn update_memory(&self, mem: Mem) -> io::Result<()> {
        *self.shared.mem.write() = Some(mem);
        Ok(())
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        self.shared.queues_per_thread.clone()
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        // Without one the daemon's worker threads never end (dropping the daemon joins them).
        new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC).ok()
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        let Some(qs) = self.shared.queues.get(queue_index as usize) else { return Ok(()) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut g = qs.idle_lock.lock();
        while qs.inflight.load(Ordering::Acquire) > 0 {
            if qs.idle.wait_until(&mut g, deadline).timed_out() {
                // Late completions must not touch a ring the frontend may reuse.
                qs.epoch.fetch_add(1, Ordering::AcqRel);
                qs.inflight.store(0, Ordering::Release);
                break;
            }
        }
        Ok(())
    }

    fn handle_event(&self, device_event: u16, evset: EventSet, vrings: &[Vring], thread_id: usize) -> io::Result<()> {
        if evset != EventSet::IN {
            return Ok(());
        }
        self.remember_vrings(thread_id, vrings);
        let (Some(q), Some(vring)) = (self.queue_index(thread_id, device_event), vrings.get(usize::from(device_event)))
        else {
            return Ok(());
        };
        // Event buffers stay in the ring until post_event takes one.
        if q != EVENT_QUEUE {
            self.drain(q, vring);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trip() {
        assert_eq!(uncookie(cookie(7, 3, 1023)), (7, 3, 1023));
        assert_eq!(uncookie(cookie(u32::MAX, 65, u16::MAX)), (u32::MAX, 65, u16::MAX));
    }

    #[test]
    fn gather_scatter_cross_regions_and_refuse_bad_addresses() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x1000), 0x4000)]).unwrap();
        let regions = [(0x1000u64, 3u32), (0x2000, 5), (0x3000, 4)];
        let data: Vec<u8> = (1..=12).collect();
        assert_eq!(scatter(&mem, &regions, 0, &data), Ok(12));
        let mut back = [0u8; 9];
        assert_eq!(gather(&mem, &regions, 2, &mut back), Ok(9));
        assert_eq!(back, [3, 4, 5, 6, 7, 8, 9, 10, 11]);
        let mut b = [0u8; 2];
        mem.read_slice(&mut b, GuestAddress(0x2003)).unwrap();
        assert_eq!(b, [7, 8]);
        // The regions end before the data: a short count, no write past them.
        assert_eq!(scatter(&mem, &regions, 10, &[0xaa; 8]), Ok(2));
        mem.read_slice(&mut b, GuestAddress(0x3004)).unwrap();
        assert_eq!(b, [0, 0]);
        // Outside guest memory: an error, no panic.
        assert_eq!(scatter(&mem, &[(0x9000, 16)], 0, &[1; 4]), Err(()));
        assert_eq!(gather(&mem, &[(u64::MAX - 2, 16)], 0, &mut [0; 8]), Err(()));
        assert_eq!(gather(&mem, &[(0x4ff0, 0x100)], 0, &mut [0; 0x40]), Err(()));
    }
}
