//! SCSI target ports, their LUN maps and the fabric interface.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

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
    /// aborted by a task management function: stop soliciting its data and drop it. The task
    /// management response waits for that drop. Same threading rules as
    /// [`TargetDriver::xmit_response`]; `tag` is the command's [`crate::Cmd::tag`].
    fn abort_pending(&self, tag: u64) {
        let _ = tag;
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

/// A SCSI target (an iSCSI target node, an SRP/FC target port's device server): a name, a LUN
/// map and the sessions logged in to it.
pub struct Target {
    name: String,
    luns: RwLock<BTreeMap<Lun, MappedLun>>,
    sessions: Mutex<Vec<Weak<Session>>>,
    sgv: SgvPool,
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
}

impl Target {
    /// Creates a target whose commands take buffers from `sgv`.
    pub fn new(name: impl Into<String>, sgv: SgvPool) -> Arc<Self> {
        Arc::new(Self { name: name.into(), luns: RwLock::new(BTreeMap::new()), sessions: Mutex::new(Vec::new()), sgv })
    }

    /// The target name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The buffer pool.
    pub fn sgv(&self) -> &SgvPool {
        &self.sgv
    }

    /// Maps `dev` at `lun`. Sessions see it at once and get REPORTED LUNS DATA HAS CHANGED.
    ///
    /// # Errors
    /// If `lun` is taken or out of range.
    pub fn add_lun(&self, lun: Lun, dev: Arc<Device>, read_only: bool) -> Result<(), LunMapError> {
        if lun.0 > Lun::MAX {
            return Err(LunMapError::OutOfRange(lun));
        }
        {
            let mut m = self.luns.write();
            if m.contains_key(&lun) {
                return Err(LunMapError::Exists(lun));
            }
            m.insert(lun, MappedLun { dev, read_only });
        }
        self.luns_changed();
        Ok(())
    }

    /// Unmaps `lun`. Commands already running on it finish.
    ///
    /// # Errors
    /// If `lun` is not mapped.
    pub fn remove_lun(&self, lun: Lun) -> Result<Arc<Device>, LunMapError> {
        let dev = self.luns.write().remove(&lun).ok_or(LunMapError::NotMapped(lun))?;
        self.luns_changed();
        Ok(dev.dev)
    }

    /// A snapshot of the LUN map.
    pub fn luns(&self) -> BTreeMap<Lun, MappedLun> {
        self.luns.read().clone()
    }

    fn luns_changed(&self) {
        let map = self.luns();
        for s in self.sessions() {
            s.set_lun_map(&map, Some(SenseCode::REPORTED_LUNS_DATA_HAS_CHANGED));
        }
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
        let s = Session::new(self.clone(), cfg, fabric);
        s.set_lun_map(&self.luns(), None);
        s.raise_local_ua(SenseCode::POWER_ON_RESET);
        self.sessions.lock().push(Arc::downgrade(&s));
        s
    }

    pub(crate) fn forget_session(&self, id: u64) {
        self.sessions.lock().retain(|w| w.upgrade().is_some_and(|s| s.id() != id));
    }
}
