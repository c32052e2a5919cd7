//! Devices (SCSI logical units) and the device-handler interface.
//!
//! A [`Device`] is what a LUN map points at. It owns the state SPC defines per logical unit (task
//! set, unit attention log, mode parameters, medium state, removal prevention) and a
//! [`DeviceHandler`], the command logic of its device type. The disk handler
//! ([`crate::sbc::Disk`]) emulates SPC/SBC over any [`crate::store::BlockStore`].

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use tracing::{error, warn};

use crate::cmd::{Cmd, CmdBox, CmdInfo};
use crate::ops::OpInfo;
use crate::pr::{Access, Nexus, PrError, PrFile, PrLoad, PrState};
use crate::task_set::TaskSet;
use crate::ua::UaLog;
use crate::wire::sense::{Sense, SenseCode};

/// The command logic of a device type (SCST's dev handler, LIO's backend ops).
///
/// Object-safe; a [`Device`] holds it as `Arc<dyn DeviceHandler>`. All methods take `&self` and
/// may be called from several threads at once.
pub trait DeviceHandler: Send + Sync + 'static {
    /// The opcode table of the commands this handler implements. The core rejects any other
    /// opcode with INVALID COMMAND OPERATION CODE and any bit outside an entry's CDB usage data
    /// with INVALID FIELD IN CDB before calling [`DeviceHandler::parse`]. Sorted by opcode,
    /// then service action (the core binary-searches it, see [`crate::ops::lookup`]).
    fn ops(&self) -> &'static [OpInfo];

    /// Whether this device implements an entry of [`DeviceHandler::ops`] (a capability such as
    /// thin provisioning may be missing). Unsupported commands get INVALID COMMAND OPERATION
    /// CODE and are left out of REPORT SUPPORTED OPERATION CODES.
    fn supports(&self, op: &OpInfo) -> bool {
        let _ = op;
        true
    }

    /// Peripheral device type (INQUIRY byte 0 bits 4..0; 00h for a disk).
    fn device_type(&self) -> u8;

    /// Product identification for standard INQUIRY data (up to 16 ASCII characters).
    fn product(&self) -> &str;

    /// Classifies a command: direction, data length, LBA range, where it executes.
    ///
    /// Pure and non-blocking. Called on the submitting (fabric) thread, before any data
    /// transfer, with the CDB padded to 32 bytes and the transport's expected data transfer
    /// length. The command is not passed: parsing depends only on the CDB, the device and
    /// `expected_len` (Data-Out beyond it never arrives; Data-In beyond it is never sent).
    ///
    /// # Errors
    /// The CHECK CONDITION to end the command with (LBA out of range, invalid field, ...).
    fn parse(&self, dev: &Device, op: &'static OpInfo, cdb: &[u8], expected_len: u32) -> Result<CmdInfo, Sense>;

    /// Executes a parsed command whose Data-Out (if any) is in `cmd.buf()`.
    ///
    /// Runs on the submitting thread when `parse` chose [`crate::ExecContext::Inline`] (and then
    /// must not block), else on one of the device's worker threads (and may block). The caller
    /// keeps ownership; when this returns, the command's status, sense and Data-In are final.
    fn exec(&self, cmd: &mut Cmd);

    /// Tries to execute a command that [`DeviceHandler::parse`] sent to a worker
    /// ([`crate::ExecContext::Worker`]) right away, on the submitting (fabric) thread, when that
    /// needs no waiting: a READ whose data is in the page cache, say. Returns `true` when the
    /// command was executed (its status, sense and Data-In are final, as after
    /// [`DeviceHandler::exec`]); `false` leaves it unexecuted and it goes to a worker. Must not
    /// block. The default never tries.
    fn try_exec_nowait(&self, cmd: &mut Cmd) -> bool {
        let _ = cmd;
        false
    }

    /// Starts a command that [`DeviceHandler::parse`] (or the pass-through pipeline) sent to a
    /// worker, without waiting for it: an asynchronous submission to a real device. Called on
    /// the submitting (fabric) thread; must not block. `Err(cmd)` hands the command back, to be
    /// executed by [`DeviceHandler::exec`] on a worker as usual (the default, for every
    /// command). On `Ok` the handler owns the command and passes it to [`crate::complete`]
    /// exactly once, from any thread, when its status, sense and Data-In are final; so the
    /// command crosses at most one thread boundary (to whichever thread completes it).
    fn start(&self, cmd: CmdBox) -> Result<(), CmdBox> {
        Err(cmd)
    }

    /// Whether any command may need a worker thread (the device then starts its worker pool).
    fn may_block(&self) -> bool;

    /// Writes volatile caches to stable storage (called at shutdown). May block.
    ///
    /// # Errors
    /// The backing store's error.
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    /// Re-reads the capacity from the backing store; returns whether it changed. May block.
    fn rescan(&self) -> bool {
        false
    }

    /// Asks the handler to call `notify` when its capacity may have changed by itself (a
    /// backing store another client resized; [`crate::BlockStore::watch_size`]). The device
    /// answers with a [`Device::rescan`]. Called once, when the device is made; the default
    /// ignores it (a rescan on request still shows a resize).
    fn watch_capacity(&self, notify: crate::SizeNotify) {
        let _ = notify;
    }

    /// Block access, for devices that have blocks.
    fn block_access(&self) -> Option<&dyn BlockAccess> {
        None
    }

    /// Whether this handler passes commands through to a real SCSI device (`None`, the default:
    /// it emulates its commands).
    ///
    /// For a pass-through handler the core changes its pipeline (see [`PassThrough`]): it does
    /// not look commands up in [`DeviceHandler::ops`] nor call [`DeviceHandler::parse`]; it
    /// takes the data direction and length from the transport ([`Cmd::expected_dir`],
    /// [`Cmd::expected_len`]) and runs `exec` on a worker when [`DeviceHandler::may_block`].
    /// It still answers REPORT LUNS, reports unit attentions, applies the LUN view, ALUA,
    /// read-only mappings (to the disk table's writes) and, unless
    /// [`PassThrough::forward_reservations`], emulates RESERVE/RELEASE and PERSISTENT RESERVE
    /// IN/OUT and refuses conflicting commands with RESERVATION CONFLICT.
    fn pass_through(&self) -> Option<PassThrough> {
        None
    }

    /// Called after the core handled a LOGICAL UNIT RESET or a target reset of this device
    /// `dev` (affected commands marked, unit attentions raised). A pass-through handler resets
    /// the real device here. Must not block: do the reset elsewhere and drop `hold` when it is done
    /// (the TMF's response waits for it). The default does nothing.
    fn reset(&self, dev: &Arc<Device>, hold: crate::tm::TmHold) {
        let _ = dev;
        drop(hold);
    }
}

/// How the core treats a pass-through handler ([`DeviceHandler::pass_through`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassThrough {
    /// Send RESERVE/RELEASE and PERSISTENT RESERVE IN/OUT to the device instead of emulating
    /// them, and leave reservation conflicts to the device. Only right when the device is
    /// reached through this one logical unit by a single initiator, or when the device's own
    /// reservations are wanted: the device sees every initiator as the same one (the target).
    pub forward_reservations: bool,
}

/// Block-level access to a device, for the copy manager (EXTENDED COPY) and other in-process
/// users. Methods may block.
pub trait BlockAccess {
    /// Block size and capacity.
    fn block_geometry(&self) -> crate::store::Geometry;

    /// Reads `blocks` blocks at `lba` into the start of `buf`.
    ///
    /// # Errors
    /// The CHECK CONDITION the read would end with (MEDIUM ERROR, ...).
    fn read_blocks(&self, lba: u64, blocks: u64, buf: &mut crate::sgv::SgBuf) -> Result<(), crate::cmd::Fail>;

    /// Writes `blocks` blocks from the start of `buf` at `lba`, like a WRITE with FUA as given.
    ///
    /// # Errors
    /// The CHECK CONDITION the write would end with.
    fn write_blocks(&self, lba: u64, blocks: u64, buf: &crate::sgv::SgBuf, fua: bool) -> Result<(), crate::cmd::Fail>;

    /// Erases blocks: deallocates them on a thin device, writes zeros otherwise.
    ///
    /// # Errors
    /// The CHECK CONDITION the erase would end with.
    fn erase_blocks(&self, lba: u64, blocks: u64) -> Result<(), crate::cmd::Fail>;

    /// Makes completed writes durable.
    ///
    /// # Errors
    /// The CHECK CONDITION a SYNCHRONIZE CACHE would end with.
    fn flush_blocks(&self) -> Result<(), crate::cmd::Fail>;
}

/// Identity and options of a device.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// A name unique among this process's devices; the unit serial number and the NAA
    /// designator derive from it unless given.
    pub name: String,
    /// Unit serial number (VPD 80h). Default: derived from `name`.
    pub serial: Option<String>,
    /// NAA designator (locally assigned, NAA 3). Default: derived from `name`.
    pub naa: Option<u64>,
    /// T10 vendor identification (8 ASCII characters).
    pub vendor: String,
    /// Product revision level (4 ASCII characters).
    pub revision: String,
    /// Refuse every write with DATA PROTECT / WRITE PROTECTED.
    pub read_only: bool,
    /// Removable medium (RMB=1): START STOP UNIT may eject and load it, PREVENT ALLOW MEDIUM
    /// REMOVAL may lock it.
    pub removable: bool,
    /// Write cache enabled at start (WCE in the caching mode page).
    pub write_cache: bool,
    /// Worker threads, for handlers that may block.
    pub threads: usize,
    /// Directory for state that must survive a restart (persistent reservations with APTPL).
    /// `None`: nothing is persisted and APTPL is refused.
    pub state_dir: Option<std::path::PathBuf>,
    /// Bytes per second a SANITIZE OVERWRITE writes at most, so that sanitizing one logical unit
    /// does not starve others sharing its storage. 0: no limit.
    pub sanitize_rate: u64,
}

impl DeviceConfig {
    /// A configuration with defaults for everything but the name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            serial: None,
            naa: None,
            vendor: "SCST_RS".into(),
            revision: env!("CARGO_PKG_VERSION").chars().filter(|c| *c != '.').take(4).collect(),
            read_only: false,
            removable: false,
            write_cache: true,
            threads: 2,
            state_dir: None,
            sanitize_rate: 16 << 20,
        }
    }
}

/// Mode parameters that are per logical unit (shared by every I_T nexus).
#[derive(Debug, Default)]
pub struct ModeState {
    /// Caching page: WCE.
    pub wce: AtomicBool,
    /// Control page: D_SENSE (descriptor-format sense data).
    pub d_sense: AtomicBool,
    /// Control page: SWP (software write protect).
    pub swp: AtomicBool,
    /// Control page: TAS (task aborted status).
    pub tas: AtomicBool,
}

/// A SCSI logical unit. Shared (`Arc<Device>`) by every LUN map that exports it.
pub struct Device {
    id: u64,
    cfg: DeviceConfig,
    serial: String,
    naa: u64,
    handler: Arc<dyn DeviceHandler>,
    pub(crate) task_set: TaskSet,
    pub(crate) ua: UaLog,
    /// Mode parameters.
    pub mode: ModeState,
    medium_loaded: AtomicBool,
    /// Session ids holding a PREVENT MEDIUM REMOVAL.
    prevent: Mutex<Vec<u64>>,
    /// The worker queue, created with the workers by the first command that needs one: a device
    /// whose commands all run inline (NULLIO, RAM, emulated commands) or through
    /// `BlockStore::submit` costs no thread and no queue memory until then.
    jobs: OnceLock<Sender<CmdBox>>,
    stats: DeviceStats,
    pr: Mutex<PrState>,
    /// Anything registered or reserved: commands check reservations only then.
    pr_active: AtomicBool,
    pr_file: Option<PrFile>,
    /// SANITIZE state: 0 none, 1 in progress, 2 failed (the LU stays in failure mode until a
    /// sanitize succeeds or EXIT FAILURE MODE).
    sanitize: std::sync::atomic::AtomicU8,
    /// How far a running sanitize is, of 65536.
    sanitize_progress: std::sync::atomic::AtomicU16,
    /// The thread of the last SANITIZE started (it holds the device until it ends).
    sanitize_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Results of EXTENDED COPY commands held for RECEIVE COPY RESULTS.
    pub(crate) copies: Mutex<Vec<crate::sbc::CopyResult>>,
}

/// Per-device counters.
#[derive(Debug, Default)]
pub struct DeviceStats {
    /// Commands received for this device (counted when the core found the LUN; completed ones:
    /// `io.completed()`, in flight: [`DeviceStats::in_flight`]).
    pub commands: AtomicU64,
    /// Bytes read from the medium.
    pub read_bytes: AtomicU64,
    /// Of `read_bytes`, those sent from the page cache without a copy (zero-copy READs).
    pub zero_copy_read_bytes: AtomicU64,
    /// Bytes written to the medium.
    pub write_bytes: AtomicU64,
    /// Commands that ended in CHECK CONDITION (all error statuses: [`DeviceStats::errors_total`]).
    pub errors: AtomicU64,
    /// Completions (latency histograms per op class), errors by sense key and status, abandoned
    /// commands.
    pub io: crate::stats::CompletionCounters,
}

impl DeviceStats {
    /// Commands received and neither completed nor dropped (see
    /// [`crate::stats::CompletionCounters`]).
    pub fn in_flight(&self) -> u64 {
        self.io.in_flight(self.commands.load(Relaxed))
    }

    /// Commands that ended with any status but GOOD or CONDITION MET.
    pub fn errors_total(&self) -> u64 {
        self.io.error_kinds.total()
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("name", &self.cfg.name).field("id", &self.id).finish_non_exhaustive()
    }
}

static NEXT_DEVICE_ID: AtomicU64 = AtomicU64::new(1);

/// Every live device of the process, for copy managers that find a device by its designator.
static REGISTRY: Mutex<Vec<std::sync::Weak<Device>>> = Mutex::new(Vec::new());

/// The live device whose NAA designator is `naa`.
pub fn find_by_naa(naa: u64) -> Option<Arc<Device>> {
    let mut r = REGISTRY.lock();
    r.retain(|w| w.strong_count() > 0);
    r.iter().filter_map(std::sync::Weak::upgrade).find(|d| d.naa() == naa)
}

/// FNV-1a, for stable identifiers derived from names.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Depth of a device's worker queue (commands waiting for a worker).
const JOB_QUEUE: usize = 8192;

impl Device {
    /// Creates a device. Its worker threads start with the first command that needs one (a
    /// command of a store that may block, or one released from the task set onto a worker); a
    /// worker that cannot be started then is logged, and with none the command ends with
    /// INTERNAL TARGET FAILURE.
    ///
    /// # Errors
    /// None today; the signature keeps room for setup that can fail.
    pub fn new(cfg: DeviceConfig, handler: Arc<dyn DeviceHandler>) -> io::Result<Arc<Self>> {
        let id = NEXT_DEVICE_ID.fetch_add(1, Relaxed);
        let h = fnv1a(&cfg.name);
        let serial = cfg.serial.clone().unwrap_or_else(|| format!("{h:016x}"));
        // NAA 3 (locally assigned): the top nibble is the NAA, the rest ours.
        let naa = cfg.naa.unwrap_or((3 << 60) | (h & 0x0fff_ffff_ffff_ffff));
        let pr_file = cfg.state_dir.as_deref().map(|d| PrFile::new(d, &cfg.name));
        let pr = match pr_file.as_ref().map(PrFile::load) {
            Some(PrLoad::Current(st)) => st,
            Some(PrLoad::Previous(st)) => {
                warn!(device = %cfg.name, "persistent reservation file corrupt: using the previous copy");
                st
            }
            Some(PrLoad::Corrupt) => {
                error!(device = %cfg.name, "persistent reservation file and its previous copy are corrupt: starting without reservations");
                PrState::default()
            }
            Some(PrLoad::Empty) | None => PrState::default(),
        };
        let dev = Arc::new(Self {
            id,
            serial,
            naa,
            mode: ModeState {
                wce: AtomicBool::new(cfg.write_cache),
                d_sense: AtomicBool::new(false),
                swp: AtomicBool::new(false),
                tas: AtomicBool::new(false),
            },
            cfg,
            handler,
            task_set: TaskSet::default(),
            ua: UaLog::default(),
            medium_loaded: AtomicBool::new(true),
            prevent: Mutex::new(Vec::new()),
            jobs: OnceLock::new(),
            stats: DeviceStats::default(),
            pr_active: AtomicBool::new(!pr.is_idle()),
            pr: Mutex::new(pr),
            pr_file,
            copies: Mutex::new(Vec::new()),
            sanitize: std::sync::atomic::AtomicU8::new(0),
            sanitize_progress: std::sync::atomic::AtomicU16::new(0),
            sanitize_thread: Mutex::new(None),
        });
        REGISTRY.lock().push(Arc::downgrade(&dev));
        // A store that sees its size change (an RBD image resized elsewhere) has the device
        // rescan: sessions get CAPACITY DATA HAS CHANGED without anyone asking. Weak: the store
        // that holds this must not keep its own device alive.
        let weak = Arc::downgrade(&dev);
        dev.handler.watch_capacity(Arc::new(move || {
            if let Some(d) = weak.upgrade() {
                d.rescan();
            }
        }));
        Ok(dev)
    }

    /// Process-unique device id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Unit serial number (VPD 80h).
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The 8-byte NAA designator (VPD 83h).
    pub fn naa(&self) -> u64 {
        self.naa
    }

    /// The handler.
    pub fn handler(&self) -> &Arc<dyn DeviceHandler> {
        &self.handler
    }

    /// Counters.
    pub fn stats(&self) -> &DeviceStats {
        &self.stats
    }

    /// Whether sense data is in descriptor format (control mode page D_SENSE).
    pub fn d_sense(&self) -> bool {
        self.mode.d_sense.load(Relaxed)
    }

    /// Whether writes are refused: a read-only device or SWP set.
    pub fn write_protected(&self) -> bool {
        self.cfg.read_only || self.mode.swp.load(Relaxed)
    }

    /// Whether a medium is loaded (always, for non-removable devices).
    pub fn medium_loaded(&self) -> bool {
        self.medium_loaded.load(Relaxed)
    }

    /// Loads or ejects the medium (removable devices).
    pub fn set_medium_loaded(&self, loaded: bool) {
        self.medium_loaded.store(loaded, Relaxed);
    }

    /// Whether any I_T nexus prevents medium removal.
    pub fn removal_prevented(&self) -> bool {
        !self.prevent.lock().is_empty()
    }

    /// Sets or clears the prevention held by session `sess`.
    pub fn set_prevent(&self, sess: u64, prevent: bool) {
        let mut p = self.prevent.lock();
        p.retain(|s| *s != sess);
        if prevent {
            p.push(sess);
        }
    }

    /// Clears every prevention (LOGICAL UNIT RESET, target reset).
    pub fn clear_prevent(&self) {
        self.prevent.lock().clear();
    }

    /// Raises a unit attention on every I_T nexus that sees this device, except `origin`'s.
    pub fn raise_ua(&self, code: SenseCode, origin: Option<u64>) {
        self.ua.raise(code, origin);
    }

    /// Re-reads the capacity from the backing store and, if it changed, raises CAPACITY DATA HAS
    /// CHANGED. Returns whether it changed. May block.
    pub fn rescan(&self) -> bool {
        let changed = self.handler.rescan();
        if changed {
            self.raise_ua(SenseCode::CAPACITY_DATA_HAS_CHANGED, None);
        }
        changed
    }

    /// Flushes volatile caches. May block.
    ///
    /// # Errors
    /// The backing store's error.
    pub fn flush(&self) -> io::Result<()> {
        self.handler.flush()
    }

    /// Whether a command of class `access` from nexus `n` conflicts with a reservation. One
    /// atomic load when nothing is registered or reserved.
    pub fn pr_conflicts(&self, n: &Nexus, access: Access) -> bool {
        self.pr_active.load(Relaxed) && self.pr.lock().conflicts(n, access)
    }

    /// Runs `f` on the reservation state, then refreshes the fast-path flag and, when `f`
    /// returns `Ok` and the state is persistent (or just stopped being), saves it.
    ///
    /// # Errors
    /// `f`'s error; or INTERNAL TARGET FAILURE when the state could not be saved (it is then
    /// still applied in memory and the file keeps the last saved state).
    pub fn pr_update<R>(&self, f: impl FnOnce(&mut PrState) -> Result<R, PrError>) -> Result<R, PrError> {
        let mut st = self.pr.lock();
        let was_persistent = st.aptpl;
        let r = f(&mut st)?;
        self.pr_active.store(!st.is_idle(), Relaxed);
        if (st.aptpl || was_persistent)
            && let Some(file) = &self.pr_file
            && let Err(e) = file.save(&st)
        {
            error!(device = %self.cfg.name, error = %e, "cannot save persistent reservations");
            return Err(PrError::Sense(Sense::new(SenseCode::INTERNAL_TARGET_FAILURE)));
        }
        Ok(r)
    }

    /// A read-only view of the reservation state.
    pub fn pr_state(&self) -> PrState {
        self.pr.lock().clone()
    }

    /// Whether APTPL can be honoured (a state directory is configured).
    pub fn pr_persistent(&self) -> bool {
        self.pr_file.is_some()
    }

    /// The SANITIZE state: `None` normally, else the sense commands get (LOGICAL UNIT NOT READY,
    /// SANITIZE IN PROGRESS; or MEDIUM ERROR, SANITIZE COMMAND FAILED in failure mode).
    pub fn sanitize_blocked(&self) -> Option<SenseCode> {
        match self.sanitize.load(Relaxed) {
            0 => None,
            1 => Some(SenseCode::NOT_READY_SANITIZE_IN_PROGRESS),
            _ => Some(SenseCode::SANITIZE_COMMAND_FAILED),
        }
    }

    /// Enters (`Some(true)`: in progress) or leaves the sanitize state (`Some(false)`: failed,
    /// `None`: done).
    pub fn set_sanitize(&self, state: Option<bool>) {
        let v = match state {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        };
        self.sanitize.store(v, Relaxed);
        self.sanitize_progress.store(0, Relaxed);
    }

    /// Keeps the thread of a SANITIZE just started, after joining the previous one (which has
    /// ended: a new sanitize starts only when none is in progress).
    pub(crate) fn set_sanitize_thread(&self, h: std::thread::JoinHandle<()>) {
        let old = self.sanitize_thread.lock().replace(h);
        if let Some(old) = old {
            let _ = old.join();
        }
    }

    /// Waits until the thread of the last SANITIZE started (if any) has ended. Not to be called
    /// from a command of this device while a sanitize runs with IMMED=0 (that command waits
    /// for the same thread).
    pub fn wait_sanitize(&self) {
        let h = self.sanitize_thread.lock().take();
        if let Some(h) = h {
            let _ = h.join();
        }
    }

    /// How far a running sanitize is, as a fraction of 65536 (REQUEST SENSE's PROGRESS
    /// INDICATION).
    pub fn sanitize_progress(&self) -> u16 {
        self.sanitize_progress.load(Relaxed)
    }

    /// Records a running sanitize's progress (of 65536).
    pub fn set_sanitize_progress(&self, done: u16) {
        self.sanitize_progress.store(done, Relaxed);
    }

    /// Whether the worker threads have been started (by the first command that needed one).
    pub fn workers_started(&self) -> bool {
        self.jobs.get().is_some()
    }

    /// Starts the worker threads now rather than with the first command that needs one (an
    /// application that wants no thread created on its data path, or a test that counts
    /// threads). Starting them again does nothing.
    pub fn start_workers(&self) {
        let _ = self.jobs();
    }

    /// The worker queue; the first call starts the workers (`DeviceConfig::threads` for handlers
    /// that may block, else one).
    fn jobs(&self) -> &Sender<CmdBox> {
        self.jobs.get_or_init(|| {
            let (tx, rx) = crossbeam_channel::bounded(JOB_QUEUE);
            let threads = if self.handler.may_block() { self.cfg.threads.max(1) } else { 1 };
            for i in 0..threads {
                let rx: Receiver<CmdBox> = rx.clone();
                let name = format!("scst-dev{}-{i}", self.id);
                if let Err(e) = std::thread::Builder::new().name(name).spawn(move || worker(&rx)) {
                    error!(device = %self.cfg.name, "cannot start a device worker: {e}");
                }
            }
            tx
        })
    }

    /// Hands a command to a worker for execution (the workers start with the first one).
    pub(crate) fn queue_exec(&self, cmd: CmdBox) {
        self.defer(cmd);
    }

    /// Runs a released command on a worker thread.
    pub(crate) fn defer(&self, cmd: CmdBox) {
        // The queue only closes when no worker could be started (the receivers went with the
        // failed spawns): the command ends with INTERNAL TARGET FAILURE rather than waiting.
        if let Err(crossbeam_channel::SendError(mut cmd)) = self.jobs().send(cmd) {
            cmd.complete_with(Err(Sense::new(SenseCode::INTERNAL_TARGET_FAILURE).into()));
            crate::exec::complete(cmd);
        }
    }
}

fn worker(rx: &Receiver<CmdBox>) {
    while let Ok(cmd) = rx.recv() {
        crate::exec::run_on_worker(cmd);
    }
}
