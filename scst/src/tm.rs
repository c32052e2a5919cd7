//! Task management functions (SAM-5 §7).
//!
//! Every command of a session occupies a slot of the session's [`SlotTable`] from allocation to
//! release; the slot records its tag, LUN, stage and an "aborted" flag. A task management
//! function marks the commands it affects. Marked commands skip execution, their responses are
//! suppressed (or become TASK ABORTED where TAS asks for it), and the function's response is sent
//! once the last of them has been released ([`TargetDriver::tm_done`]), so an initiator never
//! sees a task management response while an aborted command may still touch the medium.

use std::sync::Arc;
use std::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU16, AtomicU64, AtomicUsize, Ordering::AcqRel, Ordering::Acquire, Ordering::Release,
};

use parking_lot::Mutex;

use crate::target::TargetDriver;
use crate::wire::lun::Lun;

/// Task management functions (SAM-5 table 45; values as iSCSI encodes them, RFC 7143 §11.5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TmFunction(pub u8);

impl TmFunction {
    /// ABORT TASK.
    pub const ABORT_TASK: Self = Self(1);
    /// ABORT TASK SET.
    pub const ABORT_TASK_SET: Self = Self(2);
    /// CLEAR ACA.
    pub const CLEAR_ACA: Self = Self(3);
    /// CLEAR TASK SET.
    pub const CLEAR_TASK_SET: Self = Self(4);
    /// LOGICAL UNIT RESET.
    pub const LUN_RESET: Self = Self(5);
    /// TARGET WARM RESET.
    pub const TARGET_WARM_RESET: Self = Self(6);
    /// TARGET COLD RESET.
    pub const TARGET_COLD_RESET: Self = Self(7);
    /// I_T NEXUS RESET (iSCSI: TASK REASSIGN is 8; the core numbers I_T NEXUS RESET 0x10).
    pub const I_T_NEXUS_RESET: Self = Self(0x10);
    /// QUERY TASK.
    pub const QUERY_TASK: Self = Self(0x11);
    /// QUERY TASK SET.
    pub const QUERY_TASK_SET: Self = Self(0x12);
    /// QUERY ASYNCHRONOUS EVENT.
    pub const QUERY_ASYNC_EVENT: Self = Self(0x13);
}

/// Task management responses (iSCSI encoding, RFC 7143 §11.6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TmStatus(pub u8);

impl TmStatus {
    /// Function complete.
    pub const COMPLETE: Self = Self(0);
    /// Task does not exist.
    pub const NO_TASK: Self = Self(1);
    /// LUN does not exist.
    pub const NO_LUN: Self = Self(2);
    /// Task still allegiant.
    pub const STILL_ALLEGIANT: Self = Self(3);
    /// Task allegiance reassignment not supported.
    pub const REASSIGN_UNSUPPORTED: Self = Self(4);
    /// Task management function not supported.
    pub const NOT_SUPPORTED: Self = Self(5);
    /// Function authorization failed.
    pub const AUTH_FAILED: Self = Self(6);
    /// Function rejected.
    pub const REJECTED: Self = Self(255);
    /// FUNCTION SUCCEEDED (QUERY TASK: the task exists). iSCSI has no code of its own for it and
    /// reports it as 0 (RFC 7143 §11.6.1), like "function complete".
    pub const SUCCEEDED: Self = Self(0x80);
}

/// A task management request.
#[derive(Clone, Copy, Debug)]
pub struct TmRequest {
    /// The function.
    pub function: TmFunction,
    /// The LUN bytes as received (ignored by target-wide functions).
    pub lun: [u8; 8],
    /// The referenced task's tag (ABORT TASK, QUERY TASK).
    pub ref_tag: u64,
    /// The fabric's tag of this request, echoed in the response.
    pub tag: u64,
}

/// The outcome of a task management function.
#[derive(Clone, Copy, Debug)]
pub struct TmResponse {
    /// The request's tag.
    pub tag: u64,
    /// The response code.
    pub status: TmStatus,
}

/// What [`crate::Session::submit_tm`] returns.
#[derive(Debug)]
#[must_use]
pub enum TmOutcome {
    /// Send this response now.
    Done(TmResponse),
    /// Affected commands are still running: the response comes through
    /// [`TargetDriver::tm_done`] when the last one is released.
    Pending,
}

/// Stage of a command, as a slot records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Stage {
    Free = 0,
    /// Owned by the core (parsing, queued, executing).
    Core = 1,
    /// Owned by the fabric, waiting for Data-Out.
    DataWait = 2,
    /// Completed: owned by the fabric for transmission.
    Done = 3,
}

/// Completion of one task management function waiting for aborted commands.
pub(crate) struct TmWait {
    remaining: AtomicUsize,
    rsp: TmResponse,
    fabric: Arc<dyn TargetDriver>,
}

impl TmWait {
    fn release(&self) {
        if self.remaining.fetch_sub(1, AcqRel) == 1 {
            self.fabric.tm_done(self.rsp);
        }
    }
}

pub(crate) struct Slot {
    stage: AtomicU8,
    tag: AtomicU64,
    lun: AtomicU16,
    has_lun: AtomicBool,
    aborted: AtomicBool,
    /// The abort came from another I_T nexus while the LU's TAS bit was set: the command is
    /// answered with TASK ABORTED instead of nothing (SAM-5 §5.6).
    tas: AtomicBool,
    /// Task management functions waiting for this command to go away.
    waiters: Mutex<Vec<Arc<TmWait>>>,
}

/// The in-flight table of one session.
pub(crate) struct SlotTable {
    slots: Box<[Slot]>,
}

impl SlotTable {
    pub(crate) fn new(depth: usize) -> Self {
        Self {
            slots: (0..depth)
                .map(|_| Slot {
                    stage: AtomicU8::new(Stage::Free as u8),
                    tag: AtomicU64::new(0),
                    lun: AtomicU16::new(0),
                    has_lun: AtomicBool::new(false),
                    aborted: AtomicBool::new(false),
                    tas: AtomicBool::new(false),
                    waiters: Mutex::new(Vec::new()),
                })
                .collect(),
        }
    }

    pub(crate) fn occupy(&self, i: u16, tag: u64, lun: Option<Lun>) {
        let s = &self.slots[usize::from(i)];
        s.tag.store(tag, Release);
        s.lun.store(lun.map_or(0, |l| l.0), Release);
        s.has_lun.store(lun.is_some(), Release);
        s.aborted.store(false, Release);
        s.tas.store(false, Release);
        s.stage.store(Stage::Core as u8, Release);
    }

    pub(crate) fn set_stage(&self, i: u16, st: Stage) {
        self.slots[usize::from(i)].stage.store(st as u8, Release);
    }

    pub(crate) fn is_aborted(&self, i: u16) -> bool {
        self.slots[usize::from(i)].aborted.load(Acquire)
    }

    /// Whether an aborted command is answered with TASK ABORTED.
    pub(crate) fn answers_task_aborted(&self, i: u16) -> bool {
        let s = &self.slots[usize::from(i)];
        s.aborted.load(Acquire) && s.tas.load(Acquire)
    }

    /// Frees a slot and completes any task management function waiting for it.
    pub(crate) fn vacate(&self, i: u16) {
        let s = &self.slots[usize::from(i)];
        s.stage.store(Stage::Free as u8, Release);
        let waiters = std::mem::take(&mut *s.waiters.lock());
        for w in waiters {
            w.release();
        }
    }

    /// Marks every in-flight command matching `pred(tag, lun)` aborted (to be answered with
    /// TASK ABORTED if `tas`), registers `wait` on it, and returns the tags of those waiting for
    /// Data-Out (the fabric must drop them) and how many were marked.
    pub(crate) fn abort_matching(
        &self,
        mut pred: impl FnMut(u64, Option<Lun>) -> bool,
        wait: Option<&Arc<TmWait>>,
        data_wait: &mut Vec<u64>,
        tas: bool,
    ) -> usize {
        let mut n = 0;
        for s in &self.slots {
            let st = s.stage.load(Acquire);
            if st != Stage::Core as u8 && st != Stage::DataWait as u8 {
                continue;
            }
            let lun = s.has_lun.load(Acquire).then(|| Lun(s.lun.load(Acquire)));
            let tag = s.tag.load(Acquire);
            if !pred(tag, lun) || s.aborted.load(Acquire) {
                continue;
            }
            // Set before the aborted flag, which a completing command reads first. A command
            // waiting for Data-Out is the fabric's to answer (`TargetDriver::abort_pending`).
            s.tas.store(tas, Release);
            if s.aborted.swap(true, AcqRel) {
                continue;
            }
            if let Some(w) = wait {
                w.remaining.fetch_add(1, AcqRel);
                s.waiters.lock().push(w.clone());
            }
            if st == Stage::DataWait as u8 {
                data_wait.push(tag);
            }
            n += 1;
        }
        n
    }

    /// Whether a command with `tag` (on `lun`) is in flight and not yet complete.
    pub(crate) fn find(&self, tag: u64, lun: Option<Lun>) -> bool {
        self.slots.iter().any(|s| {
            let st = s.stage.load(Acquire);
            (st == Stage::Core as u8 || st == Stage::DataWait as u8)
                && s.tag.load(Acquire) == tag
                && (lun.is_none() || (s.has_lun.load(Acquire) && Some(Lun(s.lun.load(Acquire))) == lun))
        })
    }

    /// Whether any command is in flight on `lun`.
    pub(crate) fn any_on(&self, lun: Lun) -> bool {
        self.slots.iter().any(|s| {
            let st = s.stage.load(Acquire);
            (st == Stage::Core as u8 || st == Stage::DataWait as u8)
                && s.has_lun.load(Acquire)
                && s.lun.load(Acquire) == lun.0
        })
    }
}

/// Keeps a task management function's response from being sent until dropped.
///
/// The core hands one to [`crate::DeviceHandler::reset`] so that a pass-through handler can
/// reset the real device off the calling thread and the initiator sees the TMF complete only
/// after the device was reset.
pub struct TmHold(Option<Arc<TmWait>>);

impl TmHold {
    pub(crate) fn new(w: &Arc<TmWait>) -> Self {
        w.remaining.fetch_add(1, AcqRel);
        Self(Some(w.clone()))
    }

    /// A hold on nothing (for tests and handlers called outside a TMF).
    pub fn none() -> Self {
        Self(None)
    }
}

impl std::fmt::Debug for TmHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TmHold").field("holds", &self.0.is_some()).finish()
    }
}

impl Drop for TmHold {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.release();
        }
    }
}

impl TmWait {
    /// A wait that completes with `rsp` through `fabric`; starts at one (the issuer's own hold,
    /// released by [`TmWait::arm`]).
    pub(crate) fn new(rsp: TmResponse, fabric: Arc<dyn TargetDriver>) -> Arc<Self> {
        Arc::new(Self { remaining: AtomicUsize::new(1), rsp, fabric })
    }

    /// Drops the issuer's hold. Returns `true` if nothing else was waited for (then the caller
    /// answers directly and `tm_done` is *not* called).
    pub(crate) fn arm(&self) -> bool {
        // Taking the last hold here means no command registered: answer synchronously.
        if self.remaining.load(Acquire) == 1 {
            // Race-free: commands only register under `abort_matching`, which has returned.
            self.remaining.store(0, Release);
            return true;
        }
        self.release();
        false
    }
}
