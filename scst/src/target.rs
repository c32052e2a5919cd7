//! SCSI target ports, their LUN maps and the fabric interface.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use crate::acl::NamePatterns;
use crate::alua::{AluaConfig, AluaError, AluaState, AluaTable};
use crate::cmd::CmdBox;
use crate::dev::Device;
use crate::session::{Session, SessionConfig};
use crate::sgv::SgvPool;
use crate::tm::TmResponse;
use crate::wire::lun::Lun;
use crate::wire::sense::SenseCode;

/// A fabric: the transport side of one or more sessions (SCST's target template, LIO's fabric
/// ops). iSCSI, SRP, FC and the in-process loopback each implement it.
///
/// The synchronous path needs no callback: [`Session::submit`] and [`Session::data_received`]
/// return a [`crate::Step`] telling the caller what to do next. These methods carry what
/// completes asynchronously.
pub trait TargetDriver: Send + Sync + 'static {
    /// Sends the Data-In, status and sense of a command that completed asynchronously, then
    /// drops it (which frees it).
    ///
    /// MUST NOT block: queue the command and wake the transport's I/O thread, or send without
    /// waiting. Called on a device worker thread, or on whatever thread completed an earlier
    /// command that this one waited for (in the task set) — including the fabric's own thread
    /// inside `submit`/`data_received` for a *different* command, so the fabric must not hold a
    /// lock there that this method takes. Ownership of `cmd` passes to the fabric.
    fn xmit_response(&self, cmd: CmdBox);

    /// Reports the outcome of a task management function that completed asynchronously
    /// (see [`Session::submit_tm`]). Same threading rules as [`TargetDriver::xmit_response`].
    fn tm_done(&self, rsp: TmResponse) {
        let _ = rsp;
    }

    /// A command of this session that the fabric holds while waiting for its Data-Out was
    /// aborted by a task management function: stop soliciting its data and drop it, after
    /// sending TASK ABORTED if [`crate::Cmd::answers_task_aborted`] says so (TAS, another
    /// nexus's function). The task management response waits for that drop. Same threading rules as
    /// [`TargetDriver::xmit_response`]; `tag` is the command's [`crate::Cmd::tag`].
    fn abort_pending(&self, tag: u64) {
        let _ = tag;
    }

    /// The parameters the transport negotiated for this session (iSCSI's login keys, ...), as
    /// (name, value) pairs for management tools; empty when it negotiates none. Called from any
    /// thread; must not block on the data path.
    fn parameters(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Ends this session from the target side, for management ("close session"): the fabric
    /// drops the initiator's connection or channel, so the session unregisters as after any
    /// connection loss (and the initiator may log in again). Returns `false` if the fabric
    /// cannot end one session on its own (the default).
    fn close_session(&self) -> bool {
        false
    }
}

/// SCSI transport protocol identifiers (SPC-4 table 362).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolId(pub u8);

impl ProtocolId {
    /// Fibre Channel (FCP-4).
    pub const FC: Self = Self(0x0);
    /// SCSI RDMA Protocol.
    pub const SRP: Self = Self(0x4);
    /// iSCSI.
    pub const ISCSI: Self = Self(0x5);
    /// Serial Attached SCSI.
    pub const SAS: Self = Self(0x6);
    /// No specific protocol (the in-process loopback).
    pub const NONE: Self = Self(0xf);
}

/// The target port a session arrived through, as VPD 83h and REPORT TARGET PORT GROUPS describe
/// it.
#[derive(Clone, Debug)]
pub struct TargetPort {
    /// Transport protocol.
    pub protocol: ProtocolId,
    /// Relative target port identifier (unique among the ports of this target device, non-zero).
    pub rel_port_id: u16,
    /// SCSI name string of the port, e.g. `iqn.2026-11.rs.scst:disk,t,0x0001`.
    pub name: String,
    /// Version descriptor of the transport standard, for standard INQUIRY data (iSCSI 0960h,
    /// SRP 0940h, FCP-4 0A40h).
    pub version_descriptor: u16,
    /// Target port group the port belongs to (ALUA).
    pub tpg_id: u16,
}

/// A LUN map entry.
#[derive(Clone, Debug)]
pub struct MappedLun {
    /// The logical unit.
    pub dev: Arc<Device>,
    /// Whether this map exports it read-only.
    pub read_only: bool,
}

/// A SCSI target (an iSCSI target node, an SRP/FC target port's device server): a name, LUN
/// maps and the sessions logged in to it.
///
/// Access control follows SCST's security groups (see [`crate::acl`]): the target has a default
/// LUN map and named groups with their own maps; a session sees the map of the first group
/// whose initiator patterns admit it, else the default map. Every change to a map or to a
/// group's patterns applies to the live sessions at once, and each session whose view changed
/// gets REPORTED LUNS DATA HAS CHANGED.
pub struct Target {
    name: String,
    acl: RwLock<Acl>,
    alua: RwLock<Option<AluaTable>>,
    /// Whether `alua` is set, read on every command without the lock.
    alua_on: std::sync::atomic::AtomicBool,
    sessions: Mutex<Vec<Weak<Session>>>,
    sgv: SgvPool,
}

/// Every live target of the process (for [`Target::initiator_may_access`]).
static TARGETS: Mutex<Vec<Weak<Target>>> = Mutex::new(Vec::new());

/// The LUN maps of a target.
#[derive(Default)]
struct Acl {
    default: BTreeMap<Lun, MappedLun>,
    groups: Vec<Group>,
    refuse_unmatched: bool,
}

struct Group {
    name: String,
    initiators: NamePatterns,
    luns: BTreeMap<Lun, MappedLun>,
}

impl Acl {
    fn group_of(&self, initiator: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.initiators.admits(initiator))
    }

    fn map(&mut self, group: Option<&str>) -> Result<&mut BTreeMap<Lun, MappedLun>, LunMapError> {
        match group {
            None => Ok(&mut self.default),
            Some(name) => self
                .groups
                .iter_mut()
                .find(|g| g.name == name)
                .map(|g| &mut g.luns)
                .ok_or_else(|| LunMapError::NoGroup(name.to_string())),
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Errors of LUN map changes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LunMapError {
    /// The LUN number is already mapped.
    #[error("LUN {0} is already mapped")]
    Exists(Lun),
    /// The LUN number is above 16383.
    #[error("LUN {0} is out of range")]
    OutOfRange(Lun),
    /// No such LUN.
    #[error("LUN {0} is not mapped")]
    NotMapped(Lun),
    /// No security group of that name.
    #[error("no security group {0:?}")]
    NoGroup(String),
    /// A security group of that name exists already.
    #[error("security group {0:?} exists already")]
    GroupExists(String),
}

impl Target {
    /// Creates a target whose commands take buffers from `sgv`.
    pub fn new(name: impl Into<String>, sgv: SgvPool) -> Arc<Self> {
        let t = Arc::new(Self {
            name: name.into(),
            acl: RwLock::new(Acl::default()),
            alua: RwLock::new(None),
            alua_on: std::sync::atomic::AtomicBool::new(false),
            sessions: Mutex::new(Vec::new()),
            sgv,
        });
        let mut all = TARGETS.lock();
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&t));
        drop(all);
        t
    }

    /// Whether `initiator` may reach `dev` through some target of this process: a target that
    /// admits it maps the device in the LUN map it sees. EXTENDED COPY checks its copy targets
    /// with this, so that a copy cannot reach a logical unit its initiator was not given (the
    /// flaw of CVE-2020-28374 in another target).
    pub fn initiator_may_access(initiator: &str, dev: &Arc<Device>) -> bool {
        let all: Vec<Arc<Self>> = TARGETS.lock().iter().filter_map(Weak::upgrade).collect();
        all.iter().any(|t| {
            let acl = t.acl.read();
            let admitted = !acl.refuse_unmatched || acl.group_of(initiator).is_some();
            admitted
                && acl.group_of(initiator).map_or(&acl.default, |g| &g.luns).values().any(|m| Arc::ptr_eq(&m.dev, dev))
        })
    }

    /// The target name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The buffer pool.
    pub fn sgv(&self) -> &SgvPool {
        &self.sgv
    }

    /// Maps `dev` at `lun` in the default map. Sessions see it at once and get REPORTED LUNS
    /// DATA HAS CHANGED.
    ///
    /// # Errors
    /// If `lun` is taken or out of range.
    pub fn add_lun(&self, lun: Lun, dev: Arc<Device>, read_only: bool) -> Result<(), LunMapError> {
        self.add_group_lun(None, lun, dev, read_only)
    }

    /// Unmaps `lun` from the default map. Commands already running on it finish.
    ///
    /// # Errors
    /// If `lun` is not mapped.
    pub fn remove_lun(&self, lun: Lun) -> Result<Arc<Device>, LunMapError> {
        self.remove_group_lun(None, lun)
    }

    /// A snapshot of the default LUN map.
    pub fn luns(&self) -> BTreeMap<Lun, MappedLun> {
        self.acl.read().default.clone()
    }

    /// Maps `dev` at `lun` in security group `group` (`None`: the default map).
    ///
    /// # Errors
    /// If `lun` is taken or out of range, or there is no such group.
    pub fn add_group_lun(
        &self,
        group: Option<&str>,
        lun: Lun,
        dev: Arc<Device>,
        read_only: bool,
    ) -> Result<(), LunMapError> {
        if lun.0 > Lun::MAX {
            return Err(LunMapError::OutOfRange(lun));
        }
        self.change(|acl| {
            let m = acl.map(group)?;
            if m.contains_key(&lun) {
                return Err(LunMapError::Exists(lun));
            }
            m.insert(lun, MappedLun { dev, read_only });
            Ok(())
        })
    }

    /// Unmaps `lun` from security group `group` (`None`: the default map).
    ///
    /// # Errors
    /// If `lun` is not mapped there, or there is no such group.
    pub fn remove_group_lun(&self, group: Option<&str>, lun: Lun) -> Result<Arc<Device>, LunMapError> {
        self.change(|acl| acl.map(group)?.remove(&lun).map(|m| m.dev).ok_or(LunMapError::NotMapped(lun)))
    }

    /// Adds a security group, checked after the groups added before it, with an empty LUN map.
    /// Live sessions it admits move to it at once.
    ///
    /// # Errors
    /// If a group of that name exists.
    pub fn add_group(&self, name: &str, initiators: NamePatterns) -> Result<(), LunMapError> {
        self.change(|acl| {
            if acl.groups.iter().any(|g| g.name == name) {
                return Err(LunMapError::GroupExists(name.to_string()));
            }
            acl.groups.push(Group { name: name.to_string(), initiators, luns: BTreeMap::new() });
            Ok(())
        })
    }

    /// Removes a security group; its sessions fall back to another group or the default map.
    ///
    /// # Errors
    /// If there is no such group.
    pub fn remove_group(&self, name: &str) -> Result<(), LunMapError> {
        self.change(|acl| {
            let i = acl.groups.iter().position(|g| g.name == name).ok_or_else(|| LunMapError::NoGroup(name.into()))?;
            acl.groups.remove(i);
            Ok(())
        })
    }

    /// Replaces the initiator patterns of a group: initiators move in or out of it, and their
    /// live sessions switch LUN maps at once (with REPORTED LUNS DATA HAS CHANGED).
    ///
    /// # Errors
    /// If there is no such group.
    pub fn set_group_initiators(&self, name: &str, initiators: NamePatterns) -> Result<(), LunMapError> {
        self.change(|acl| {
            let g = acl.groups.iter_mut().find(|g| g.name == name).ok_or_else(|| LunMapError::NoGroup(name.into()))?;
            g.initiators = initiators;
            Ok(())
        })
    }

    /// The security groups in the order they are checked, with their patterns.
    pub fn groups(&self) -> Vec<(String, NamePatterns)> {
        self.acl.read().groups.iter().map(|g| (g.name.clone(), g.initiators.clone())).collect()
    }

    /// The group an initiator falls in (`None`: the default map).
    pub fn group_of(&self, initiator: &str) -> Option<String> {
        self.acl.read().group_of(initiator).map(|g| g.name.clone())
    }

    /// The LUN map an initiator sees.
    pub fn lun_map_for(&self, initiator: &str) -> BTreeMap<Lun, MappedLun> {
        let acl = self.acl.read();
        acl.group_of(initiator).map_or(&acl.default, |g| &g.luns).clone()
    }

    /// Whether initiators that no group admits are refused at login (`true`) or see the default
    /// map (`false`, the default). Fabrics ask [`Target::admits`] at login.
    pub fn set_refuse_unmatched(&self, refuse: bool) {
        self.acl.write().refuse_unmatched = refuse;
    }

    /// Whether an initiator may open a session: it is in a group, or unmatched initiators are
    /// not refused.
    pub fn admits(&self, initiator: &str) -> bool {
        let acl = self.acl.read();
        !acl.refuse_unmatched || acl.group_of(initiator).is_some()
    }

    /// Every device in any LUN map of the target, once each.
    pub fn devices(&self) -> Vec<Arc<Device>> {
        let acl = self.acl.read();
        let mut v: Vec<Arc<Device>> = Vec::new();
        for m in acl.default.values().chain(acl.groups.iter().flat_map(|g| g.luns.values())) {
            if !v.iter().any(|d| Arc::ptr_eq(d, &m.dev)) {
                v.push(m.dev.clone());
            }
        }
        v
    }

    /// Sets (or with `None` removes) the ALUA table of the target's logical units. Sessions
    /// whose port group's state changed get ASYMMETRIC ACCESS STATE CHANGED.
    ///
    /// # Errors
    /// A group id of 0 or a duplicate id.
    pub fn set_alua(&self, cfg: Option<AluaConfig>) -> Result<(), AluaError> {
        let table = cfg.map(AluaTable::new).transpose()?;
        let mut alua = self.alua.write();
        let before: Vec<(Arc<Session>, AluaState)> = self
            .sessions()
            .into_iter()
            .map(|s| {
                let st = Self::state_in(alua.as_ref(), s.port().tpg_id);
                (s, st)
            })
            .collect();
        self.alua_on.store(table.is_some(), std::sync::atomic::Ordering::Release);
        *alua = table;
        for (s, st) in before {
            if Self::state_in(alua.as_ref(), s.port().tpg_id) != st {
                s.raise_local_ua(SenseCode::ASYMMETRIC_ACCESS_STATE_CHANGED);
            }
        }
        Ok(())
    }

    /// The ALUA table (`None`: implicit ALUA, one active/optimized group).
    pub fn alua(&self) -> Option<AluaConfig> {
        self.alua
            .read()
            .as_ref()
            .map(|t| AluaConfig { groups: t.groups.iter().map(|(g, _)| g.clone()).collect(), explicit: t.explicit })
    }

    /// Changes a group's state implicitly (a cluster manager's failover): every session gets
    /// ASYMMETRIC ACCESS STATE CHANGED and REPORT TARGET PORT GROUPS shows status 02h.
    ///
    /// # Errors
    /// Without an ALUA table or such a group.
    pub fn set_port_group_state(&self, tpg: u16, state: AluaState) -> Result<(), AluaError> {
        self.change_states(&[(tpg, state)], None)
    }

    /// Applies state changes to groups (all or none), then tells every session but `from`'s
    /// (the nexus of a SET TARGET PORT GROUPS).
    pub(crate) fn change_states(&self, changes: &[(u16, AluaState)], from: Option<u64>) -> Result<(), AluaError> {
        let mut alua = self.alua.write();
        let t = alua.as_mut().ok_or(AluaError::NoGroup(changes.first().map_or(0, |c| c.0)))?;
        for (id, _) in changes {
            t.group_mut(*id)?;
        }
        for (id, state) in changes {
            let (g, status) = t.group_mut(*id).expect("checked above");
            g.state = *state;
            *status = if from.is_some() { 0x01 } else { 0x02 };
        }
        drop(alua);
        for s in self.sessions() {
            if Some(s.id()) != from {
                s.raise_local_ua(SenseCode::ASYMMETRIC_ACCESS_STATE_CHANGED);
            }
        }
        Ok(())
    }

    fn state_in(t: Option<&AluaTable>, tpg: u16) -> AluaState {
        t.and_then(|t| t.state(tpg)).unwrap_or(AluaState::ActiveOptimized)
    }

    /// The access state of port group `tpg` (active/optimized without a table or for a port
    /// outside every group). Lock-free unless a table is set.
    pub fn port_group_state(&self, tpg: u16) -> AluaState {
        if !self.alua_on.load(std::sync::atomic::Ordering::Acquire) {
            return AluaState::ActiveOptimized;
        }
        Self::state_in(self.alua.read().as_ref(), tpg)
    }

    /// Whether SET TARGET PORT GROUPS is accepted (an ALUA table with explicit transitions).
    pub fn alua_explicit(&self) -> bool {
        self.alua.read().as_ref().is_some_and(|t| t.explicit)
    }

    /// The groups REPORT TARGET PORT GROUPS lists, with their status codes, and the relative
    /// ids of the local ports of each (from the live sessions).
    pub(crate) fn alua_report(&self) -> Option<Vec<(crate::alua::PortGroup, u8)>> {
        let t = self.alua.read().clone()?;
        let sessions = self.sessions();
        Some(
            t.groups
                .into_iter()
                .map(|(mut g, status)| {
                    for s in &sessions {
                        let p = s.port();
                        if p.tpg_id == g.id && !g.remote_ports.contains(&p.rel_port_id) {
                            g.remote_ports.push(p.rel_port_id);
                        }
                    }
                    g.remote_ports.sort_unstable();
                    (g, status)
                })
                .collect(),
        )
    }

    /// Applies a change to the maps, then gives each live session whose view changed its new
    /// map with REPORTED LUNS DATA HAS CHANGED. Sessions are updated under the map lock so that
    /// two changes cannot apply to a session out of order.
    fn change<T>(&self, f: impl FnOnce(&mut Acl) -> Result<T, LunMapError>) -> Result<T, LunMapError> {
        let mut acl = self.acl.write();
        let out = f(&mut acl)?;
        let acl = parking_lot::RwLockWriteGuard::downgrade(acl);
        for s in self.sessions() {
            let map = acl.group_of(&s.config().initiator_name).map_or(&acl.default, |g| &g.luns);
            if !s.view_is(map) {
                s.set_lun_map(map, Some(SenseCode::REPORTED_LUNS_DATA_HAS_CHANGED));
            }
        }
        Ok(out)
    }

    /// Live sessions.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        let mut v = self.sessions.lock();
        v.retain(|w| w.strong_count() > 0);
        v.iter().filter_map(Weak::upgrade).collect()
    }

    /// Opens an I_T nexus: a session of `cfg.initiator_port` through `cfg.port`, completing
    /// asynchronous work through `fabric`. The new nexus starts with a POWER ON, RESET, OR BUS
    /// DEVICE RESET OCCURRED unit attention on every LUN, as a new nexus should.
    pub fn register_session(self: &Arc<Self>, cfg: SessionConfig, fabric: Arc<dyn TargetDriver>) -> Arc<Session> {
        // Under the map lock, so that a concurrent map change either precedes the session's
        // first view or updates it.
        let acl = self.acl.read();
        let map = acl.group_of(&cfg.initiator_name).map_or(&acl.default, |g| &g.luns);
        let s = Session::new(self.clone(), cfg, fabric);
        s.set_lun_map(map, None);
        s.raise_local_ua(SenseCode::POWER_ON_RESET);
        self.sessions.lock().push(Arc::downgrade(&s));
        s
    }

    pub(crate) fn forget_session(&self, id: u64) {
        self.sessions.lock().retain(|w| w.upgrade().is_some_and(|s| s.id() != id));
    }
}
