//! Sessions (I_T nexuses) and the command pipeline up to execution.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crossbeam_queue::ArrayQueue;
use parking_lot::RwLock;

use crate::cmd::{Cmd, CmdBox, CmdHeader, ExecContext, Fail, ScsiStatus, TaskAttr};
use crate::exec::{self, Step};
use crate::ops::{self, DISK_OPS, DataDir, Op, OpFlags};
use crate::pr::Nexus;
use crate::sgv::SgvPool;
use crate::target::{MappedLun, Target, TargetDriver, TargetPort};
use crate::tm::{SlotTable, Stage, TmFunction, TmOutcome, TmRequest, TmResponse, TmStatus, TmWait};
use crate::ua::NexusUa;
use crate::wire::cdb::{be16, be32, put32};
use crate::wire::lun::Lun;
use crate::wire::sense::{MAX_SENSE_LEN, Sense, SenseCode};

const PERSISTENT_RESERVE_IN: u8 = 0x5e;
const PERSISTENT_RESERVE_OUT: u8 = 0x5f;

/// The SPC-2 and persistent reservation commands, which the core emulates for pass-through
/// devices unless told to forward them.
pub(crate) fn is_reservation(op: Op) -> bool {
    matches!(
        op,
        Op::Reserve6
            | Op::Release6
            | Op::Reserve10
            | Op::Release10
            | Op::PersistentReserveIn
            | Op::PersistentReserveOut
    )
}

/// What a fabric tells the core about a new I_T nexus.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Initiator name (iSCSI name, SRP/FC port name).
    pub initiator_name: String,
    /// Initiator port identifier: the name plus whatever distinguishes ports of one initiator
    /// (for iSCSI `iqn...,i,0x<ISID>`).
    pub initiator_port: String,
    /// The target port the session came through.
    pub port: Arc<TargetPort>,
    /// Most commands the session may have outstanding (its command pool; beyond it commands get
    /// TASK SET FULL).
    pub depth: usize,
}

/// One LUN as one nexus sees it.
pub(crate) struct LunSlot {
    pub(crate) lun: Lun,
    pub(crate) dev: Arc<crate::dev::Device>,
    pub(crate) read_only: bool,
    pub(crate) ua: Arc<NexusUa>,
}

/// A nexus's LUN inventory, sorted by LUN.
#[derive(Default)]
pub(crate) struct LunView {
    pub(crate) slots: Vec<LunSlot>,
}

impl LunView {
    fn find(&self, lun: Lun) -> Option<&LunSlot> {
        self.slots.binary_search_by_key(&lun, |s| s.lun).ok().map(|i| &self.slots[i])
    }
}

/// The command pool was empty: answer TASK SET FULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session command pool exhausted")]
pub struct QueueFull;

/// Session counters.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Commands submitted.
    pub commands: AtomicU64,
    /// Commands refused with TASK SET FULL because the pool was empty.
    pub queue_full: AtomicU64,
    /// Data-In bytes of completed medium reads (the op class [`crate::stats::OpClass::Read`]).
    pub read_bytes: AtomicU64,
    /// Data-Out bytes of completed medium writes (the op class [`crate::stats::OpClass::Write`]).
    pub write_bytes: AtomicU64,
    /// Commands that ended in CHECK CONDITION (all error statuses:
    /// [`crate::stats::ErrorCounters::total`] of `io.error_kinds`).
    pub errors: AtomicU64,
    /// Completions (latency histograms per op class), errors by sense key and status, abandoned
    /// commands.
    pub io: crate::stats::CompletionCounters,
}

impl SessionStats {
    /// Commands submitted and neither completed nor dropped (see
    /// [`crate::stats::CompletionCounters`]).
    pub fn in_flight(&self) -> u64 {
        self.io.in_flight(self.commands.load(Relaxed))
    }
}

/// An I_T nexus: one initiator port logged in to one target port.
pub struct Session {
    id: u64,
    target: Arc<Target>,
    cfg: SessionConfig,
    fabric: Arc<dyn TargetDriver>,
    view: RwLock<Arc<LunView>>,
    pool: ArrayQueue<Box<Cmd>>,
    created: AtomicUsize,
    slots: SlotTable,
    closed: AtomicBool,
    stats: SessionStats,
    nexus: Nexus,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("initiator", &self.cfg.initiator_port)
            .finish_non_exhaustive()
    }
}

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

impl Session {
    pub(crate) fn new(target: Arc<Target>, cfg: SessionConfig, fabric: Arc<dyn TargetDriver>) -> Arc<Self> {
        let depth = cfg.depth.clamp(1, 65535);
        let nexus = Nexus {
            initiator: cfg.initiator_name.clone(),
            port_suffix: cfg.initiator_port.strip_prefix(cfg.initiator_name.as_str()).unwrap_or("").to_string(),
            rel_port: cfg.port.rel_port_id,
            protocol: cfg.port.protocol.0,
        };
        Arc::new(Self {
            nexus,
            id: NEXT_SESSION_ID.fetch_add(1, Relaxed),
            target,
            cfg,
            fabric,
            view: RwLock::new(Arc::new(LunView::default())),
            pool: ArrayQueue::new(depth),
            created: AtomicUsize::new(0),
            slots: SlotTable::new(depth),
            closed: AtomicBool::new(false),
            stats: SessionStats::default(),
        })
    }

    /// Process-unique session id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The target.
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// The registration data.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// The parameters the fabric negotiated ([`TargetDriver::parameters`]).
    pub fn parameters(&self) -> Vec<(String, String)> {
        self.fabric.parameters()
    }

    /// Asks the fabric to end this session ([`TargetDriver::close_session`]); `false` if it
    /// cannot.
    pub fn request_close(&self) -> bool {
        self.fabric.close_session()
    }

    /// The I_T nexus as reservations identify it.
    pub fn nexus(&self) -> &Nexus {
        &self.nexus
    }

    /// The target port.
    pub fn port(&self) -> &TargetPort {
        &self.cfg.port
    }

    /// The fabric completing this session's asynchronous work.
    pub fn fabric(&self) -> &Arc<dyn TargetDriver> {
        &self.fabric
    }

    /// Counters.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    pub(crate) fn slots(&self) -> &SlotTable {
        &self.slots
    }

    pub(crate) fn sgv(&self) -> &SgvPool {
        self.target.sgv()
    }

    /// LUNs this nexus sees.
    pub fn luns(&self) -> Vec<Lun> {
        self.view.read().slots.iter().map(|s| s.lun).collect()
    }

    /// Whether the nexus's LUN view is exactly `map` (same LUNs, devices and read-only flags).
    pub(crate) fn view_is(&self, map: &BTreeMap<Lun, MappedLun>) -> bool {
        let v = self.view.read();
        v.slots.len() == map.len()
            && v.slots
                .iter()
                .zip(map)
                .all(|(s, (l, m))| s.lun == *l && Arc::ptr_eq(&s.dev, &m.dev) && s.read_only == m.read_only)
    }

    /// Replaces the nexus's LUN view, keeping the unit attention state of LUNs that stay, and
    /// queues `ua` (e.g. REPORTED LUNS DATA HAS CHANGED) on every LUN of the new view.
    pub(crate) fn set_lun_map(&self, map: &BTreeMap<Lun, MappedLun>, ua: Option<SenseCode>) {
        let mut guard = self.view.write();
        let old = guard.clone();
        let slots = map
            .iter()
            .map(|(lun, m)| {
                let keep = old.find(*lun).filter(|s| Arc::ptr_eq(&s.dev, &m.dev)).map(|s| s.ua.clone());
                let ua_state = keep.unwrap_or_else(|| {
                    let n = NexusUa::new(m.dev.ua.generation());
                    if old.find(*lun).is_none() && !old.slots.is_empty() {
                        // A LUN that appears on a live nexus starts like a fresh one.
                        n.push(SenseCode::POWER_ON_RESET);
                    }
                    Arc::new(n)
                });
                if let Some(code) = ua {
                    ua_state.push(code);
                }
                LunSlot { lun: *lun, dev: m.dev.clone(), read_only: m.read_only, ua: ua_state }
            })
            .collect();
        *guard = Arc::new(LunView { slots });
    }

    /// Queues a unit attention on every LUN of this nexus only.
    pub fn raise_local_ua(&self, code: SenseCode) {
        for s in &self.view.read().slots {
            s.ua.push(code);
        }
    }

    /// Ends the nexus (logout, connection loss): its removal preventions are dropped and the
    /// target forgets it. Commands still running complete normally; the fabric discards what it
    /// can no longer send.
    pub fn close(&self) {
        if self.closed.swap(true, Relaxed) {
            return;
        }
        for s in &self.view.read().slots {
            s.dev.set_prevent(self.id, false);
            let _ = s.dev.pr_update(|st| {
                st.nexus_lost(&self.nexus);
                Ok(())
            });
        }
        self.target.forget_session(self.id);
    }

    /// Commands taken from the pool and not yet released (in flight, or held by the fabric).
    pub fn outstanding(&self) -> usize {
        self.created.load(Relaxed).saturating_sub(self.pool.len())
    }

    /// Most commands the session may have outstanding.
    pub fn depth(&self) -> usize {
        self.pool.capacity()
    }

    /// Whether [`Session::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Takes a command from the session's pool and fills it from `hdr`.
    ///
    /// Never blocks. Allocates only while the pool grows to `depth` commands.
    ///
    /// # Errors
    /// [`QueueFull`] when `depth` commands are outstanding: answer TASK SET FULL (see
    /// [`Session::task_set_full`]).
    pub fn alloc_cmd(self: &Arc<Self>, hdr: &CmdHeader<'_>) -> Result<CmdBox, QueueFull> {
        let mut b = match self.pool.pop() {
            Some(b) => b,
            None => {
                let n = self.created.fetch_add(1, Relaxed);
                if n >= self.pool.capacity() {
                    self.created.fetch_sub(1, Relaxed);
                    self.stats.queue_full.fetch_add(1, Relaxed);
                    return Err(QueueFull);
                }
                Box::new(Cmd::new(n as u16))
            }
        };
        b.init(hdr, self.clone());
        self.slots.occupy(b.slot, hdr.tag, b.lun);
        Ok(CmdBox::from_box(b))
    }

    pub(crate) fn release_cmd(&self, b: Box<Cmd>) {
        let slot = b.slot;
        // The pool has room for every command this session created.
        let _ = self.pool.push(b);
        self.slots.vacate(slot);
    }

    /// Records the stage a returned step leaves the command in (for task management).
    fn track(&self, step: Step) -> Step {
        let mut step = step;
        match &mut step {
            Step::NeedData(c) => self.slots.set_stage(c.slot, Stage::DataWait),
            Step::Done(c) => {
                exec::record_completion(c);
                self.slots.set_stage(c.slot, Stage::Done);
            }
            Step::Pending => {}
        }
        step
    }

    /// Submits a command: parse, LUN lookup, unit attention and write-protect checks, task-set
    /// entry, buffer allocation. Runs on the caller's (fabric) thread and never blocks.
    ///
    /// Returns what the fabric must do next: fetch Data-Out, send the response, or nothing (the
    /// response will come through [`TargetDriver::xmit_response`]).
    pub fn submit(self: &Arc<Self>, mut cmd: CmdBox) -> Step {
        self.stats.commands.fetch_add(1, Relaxed);
        if cmd.received.is_some() {
            cmd.in_flight |= crate::cmd::IN_FLIGHT_SESSION;
        }
        let step = self.submit_inner(cmd);
        self.track(step)
    }

    fn submit_inner(self: &Arc<Self>, mut cmd: CmdBox) -> Step {
        match self.prepare(&mut cmd) {
            Ok(true) => {}
            Ok(false) => return Step::Done(cmd),
            Err(f) => {
                cmd.fail(f);
                return Step::Done(cmd);
            }
        }
        let dev = cmd.dev.clone().expect("prepared command has a device");
        cmd.token = dev.task_set.enter(cmd.attr);
        if cmd.info.dir == DataDir::Out && cmd.info.data_len > 0 {
            let want = cmd.info.data_len.min(cmd.expected_len) as usize;
            if want > 0 {
                match self.sgv().alloc(want) {
                    Ok(b) => cmd.buf = Some(b),
                    Err(_) => {
                        cmd.set_status(ScsiStatus::BUSY);
                        let t = std::mem::take(&mut cmd.token);
                        for c in dev.task_set.leave(t) {
                            dev.defer(c);
                        }
                        return Step::Done(cmd);
                    }
                }
                return Step::NeedData(cmd);
            }
        }
        exec::ready(cmd)
    }

    /// Continues a command after its Data-Out arrived in its buffer. Same thread rules as
    /// [`Session::submit`].
    pub fn data_received(self: &Arc<Self>, cmd: CmdBox) -> Step {
        self.slots.set_stage(cmd.slot, Stage::Core);
        self.track(exec::ready(cmd))
    }

    /// Marks a command TASK SET FULL for a fabric that could not allocate one: fabrics answer
    /// with that status directly, without a command object.
    pub const fn task_set_full() -> ScsiStatus {
        ScsiStatus::TASK_SET_FULL
    }

    /// Everything before execution. `Ok(true)`: continue to the task set; `Ok(false)`: the
    /// command is already complete (answered by the core).
    ///
    /// Order of checks: LUN, unit attention (SPC-4 §5.14: it precedes everything except
    /// INQUIRY, REPORT LUNS and REQUEST SENSE), opcode and CDB fields, reservations, write
    /// protection, then the handler's own parsing.
    fn prepare(self: &Arc<Self>, cmd: &mut CmdBox) -> Result<bool, Fail> {
        if cmd.attr == TaskAttr::Aca {
            // NormACA is 0: the ACA attribute is not supported (SAM-5 §5.9.5).
            return Err(SenseCode::INVALID_MESSAGE_ERROR.into());
        }
        let view = self.view.read().clone();
        let Some(slot) = cmd.lun.and_then(|l| view.find(l)) else {
            self.no_lun(cmd, &view)?;
            return Ok(false);
        };
        let dev = slot.dev.clone();
        cmd.read_only = slot.read_only;
        dev.stats().commands.fetch_add(1, Relaxed);
        if cmd.received.is_some() {
            cmd.in_flight |= crate::cmd::IN_FLIGHT_DEVICE;
        }
        cmd.dev = Some(dev.clone());
        if let Some(pt) = dev.handler().pass_through() {
            return self.prepare_pass_through(cmd, slot, &view, pt);
        }
        let cdb = *cmd.cdb_padded();
        let op = ops::lookup(dev.handler().ops(), &cdb[..cmd.cdb().len().max(1)]).and_then(|o| {
            match (self.supports(&dev, o), o.service_action) {
                (true, _) => Ok(o),
                // A service action the device does not offer is refused like an unknown one
                // (the field), unless the device offers no service action of that opcode.
                (false, Some(_))
                    if dev.handler().ops().iter().any(|x| x.opcode == o.opcode && self.supports(&dev, x)) =>
                {
                    Err(Sense::invalid_cdb(1, Some(4)))
                }
                (false, _) => Err(Sense::invalid_opcode()),
            }
        });
        if !op.is_ok_and(|o| o.flags.has(OpFlags::UA_EXEMPT))
            && let Some(code) = slot.ua.take(&dev.ua, self.id, &self.nexus)
        {
            if op.is_ok_and(|o| o.op == Op::RequestSense) {
                // REQUEST SENSE reports the unit attention as its data and clears it.
                let mut sense = [0u8; MAX_SENSE_LEN];
                let n = Sense::new(code).write(cdb[1] & 1 != 0, &mut sense);
                cmd.op = op.ok();
                cmd.info.dir = DataDir::In;
                cmd.respond(&sense[..n], usize::from(cdb[4]))?;
                return Ok(false);
            }
            return Err(code.into());
        }
        let op = op?;
        op.check_cdb(cmd.cdb())?;
        cmd.op = Some(op);
        if op.op == Op::ReportLuns {
            cmd.info.dir = DataDir::In;
            self.report_luns(cmd, &view, &cdb)?;
            return Ok(false);
        }
        // ALUA (SPC-4 §5.16.2.4): the state of this nexus's target port group.
        self.target.port_group_state(self.cfg.port.tpg_id).admits(op.op)?;
        if let Some(code) = dev.sanitize_blocked()
            && !op.flags.has(OpFlags::PR_EXEMPT)
            && !(op.op == Op::Sanitize && code == SenseCode::SANITIZE_COMMAND_FAILED)
        {
            // While a sanitize runs (or failed), only INQUIRY, REPORT LUNS, REQUEST SENSE and the
            // reservation commands are served (SBC-4 §4.11.2); a new SANITIZE may end failure mode.
            return Err(code.into());
        }
        if dev.pr_conflicts(&self.nexus, op.pr_access()) {
            return Err(Fail::RESERVATION_CONFLICT);
        }
        if op.flags.has(OpFlags::WRITE) && (cmd.read_only || dev.write_protected()) {
            let code = if cmd.read_only || dev.config().read_only {
                SenseCode::WRITE_PROTECTED
            } else {
                SenseCode::SOFTWARE_WRITE_PROTECTED
            };
            return Err(code.into());
        }
        cmd.info = dev.handler().parse(&dev, op, &cdb, cmd.expected_len)?;
        match cmd.info.fail.take() {
            Some(s) => Err(s.into()),
            None => Ok(true),
        }
    }

    /// [`Session::prepare`] for a pass-through device ([`crate::DeviceHandler::pass_through`]).
    ///
    /// The disk table still tells the core what it must know about a command whose meaning is
    /// the same for every device type (SPC): INQUIRY and REPORT LUNS do not report unit
    /// attentions, REQUEST SENSE returns one as data, REPORT LUNS and (unless forwarded) the
    /// reservation commands are the core's, and the reservation class of the commands it names.
    /// Everything else goes to the device unchecked, with the transport's direction and length.
    fn prepare_pass_through(
        self: &Arc<Self>,
        cmd: &mut CmdBox,
        slot: &LunSlot,
        view: &LunView,
        pt: crate::dev::PassThrough,
    ) -> Result<bool, Fail> {
        let dev = slot.dev.clone();
        let cdb = *cmd.cdb_padded();
        if cmd.cdb().is_empty() {
            return Err(Sense::invalid_opcode().into());
        }
        let lookup = ops::lookup(DISK_OPS, cmd.cdb());
        let known = lookup.ok();
        if !known.is_some_and(|o| o.flags.has(OpFlags::UA_EXEMPT))
            && let Some(code) = slot.ua.take(&dev.ua, self.id, &self.nexus)
        {
            if let Some(o) = known.filter(|o| o.op == Op::RequestSense) {
                let mut sense = [0u8; MAX_SENSE_LEN];
                let n = Sense::new(code).write(cdb[1] & 1 != 0, &mut sense);
                cmd.op = Some(o);
                cmd.info.dir = DataDir::In;
                cmd.respond(&sense[..n], usize::from(cdb[4]))?;
                return Ok(false);
            }
            return Err(code.into());
        }
        if let Err(e) = lookup
            && !pt.forward_reservations
            && matches!(cdb[0], PERSISTENT_RESERVE_IN | PERSISTENT_RESERVE_OUT)
        {
            // A service action of an emulated command that the core does not know.
            return Err(e.into());
        }
        let emulated = known.filter(|o| o.op == Op::ReportLuns || (!pt.forward_reservations && is_reservation(o.op)));
        if let Some(o) = emulated {
            o.check_cdb(cmd.cdb())?;
        }
        let op = known.unwrap_or(&ops::PASS_THROUGH);
        cmd.op = Some(op);
        if op.op == Op::ReportLuns {
            cmd.info.dir = DataDir::In;
            self.report_luns(cmd, view, &cdb)?;
            return Ok(false);
        }
        self.target.port_group_state(self.cfg.port.tpg_id).admits(op.op)?;
        if !pt.forward_reservations && dev.pr_conflicts(&self.nexus, op.pr_access()) {
            return Err(Fail::RESERVATION_CONFLICT);
        }
        if op.flags.has(OpFlags::WRITE) && (cmd.read_only || dev.config().read_only) {
            return Err(SenseCode::WRITE_PROTECTED.into());
        }
        cmd.info = match emulated.map(|o| o.op) {
            Some(Op::PersistentReserveIn) => {
                crate::cmd::CmdInfo { dir: DataDir::In, data_len: u32::from(be16(&cdb, 7)), ..Default::default() }
            }
            Some(Op::PersistentReserveOut) => {
                crate::cmd::CmdInfo { dir: DataDir::Out, data_len: be32(&cdb, 5), ..Default::default() }
            }
            Some(_) => crate::cmd::CmdInfo::default(),
            None => crate::cmd::CmdInfo {
                dir: if cmd.expected_len == 0 { DataDir::None } else { cmd.expected_dir },
                data_len: cmd.expected_len,
                ctx: if dev.handler().may_block() { ExecContext::Worker } else { ExecContext::Inline },
                ..Default::default()
            },
        };
        Ok(true)
    }

    /// Whether `op` is a command `dev` serves through this nexus: the handler supports it, and
    /// SET TARGET PORT GROUPS only where the target allows explicit ALUA.
    pub(crate) fn supports(&self, dev: &crate::dev::Device, op: &ops::OpInfo) -> bool {
        dev.handler().supports(op) && (op.op != Op::SetTargetPortGroups || self.target.alua_explicit())
    }

    /// Commands addressed to a LUN this nexus does not have (SPC-4 §6.6.2, §6.39).
    fn no_lun(&self, cmd: &mut CmdBox, view: &LunView) -> Result<(), Fail> {
        let cdb = *cmd.cdb_padded();
        let op = ops::lookup(DISK_OPS, &cdb[..cmd.cdb().len().max(1)])
            .ok()
            .filter(|o| o.flags.has(OpFlags::NO_LUN))
            .ok_or(Fail::from(SenseCode::LUN_NOT_SUPPORTED))?;
        op.check_cdb(cmd.cdb())?;
        cmd.op = Some(op);
        cmd.info.dir = DataDir::In;
        match op.op {
            Op::ReportLuns => self.report_luns(cmd, view, &cdb),
            Op::Inquiry if cdb[1] & 1 == 0 => {
                if cdb[2] != 0 {
                    return Err(Sense::invalid_cdb(2, Some(7)).into());
                }
                // Peripheral qualifier 011b, device type 1Fh: no logical unit here.
                let mut d = [0u8; 36];
                d[0] = 0x7f;
                d[2] = 0x06;
                d[3] = 0x12;
                d[4] = 31;
                cmd.respond(&d, usize::from(be16(&cdb, 3)))
            }
            Op::RequestSense => {
                let mut sense = [0u8; MAX_SENSE_LEN];
                let n = Sense::new(SenseCode::LUN_NOT_SUPPORTED).write(cdb[1] & 1 != 0, &mut sense);
                cmd.respond(&sense[..n], usize::from(cdb[4]))
            }
            _ => Err(SenseCode::LUN_NOT_SUPPORTED.into()),
        }
    }

    /// REPORT LUNS (SPC-4 §6.33): answered by the core for any LUN, including one that does
    /// not exist, so it works on targets without LUN 0. It clears this nexus's REPORTED LUNS DATA
    /// HAS CHANGED condition on every LUN: the initiator now has the new inventory.
    fn report_luns(&self, cmd: &mut Cmd, view: &LunView, cdb: &[u8]) -> Result<(), Fail> {
        let alloc = be32(cdb, 6) as usize;
        let addressed_lun0 = cmd.lun.is_some_and(|l| l.0 == 0);
        let list: &[LunSlot] = match cdb[2] {
            // All logical units (there are no well-known or administrative ones).
            0x00 | 0x02 => &view.slots,
            // Administrative LUs and their subsidiaries, addressed to LUN 0: every LU here is a
            // top-level one.
            0x11 if addressed_lun0 => &view.slots,
            // Well-known LUs; administrative LUs; subsidiaries of an administrative LU: none.
            0x01 | 0x10 | 0x11 | 0x12 => &[],
            _ => return Err(Sense::invalid_cdb(2, Some(7)).into()),
        };
        for s in &view.slots {
            s.ua.remove(&s.dev.ua, self.id, &self.nexus, SenseCode::REPORTED_LUNS_DATA_HAS_CHANGED);
        }
        let total = 8 + 8 * list.len();
        let n = total.min(alloc);
        let buf = cmd.data_in_buf(n)?;
        let mut hdr = [0u8; 8];
        put32(&mut hdr, 0, (8 * list.len()) as u32);
        let h = hdr.len().min(n);
        buf.write_at(0, &hdr[..h]);
        for (i, s) in list.iter().enumerate() {
            let off = 8 + 8 * i;
            if off >= n {
                break;
            }
            let e = s.lun.to_sam();
            let k = (n - off).min(8);
            buf.write_at(off, &e[..k]);
        }
        cmd.set_data_in(n);
        Ok(())
    }
}

impl Session {
    /// Runs a task management function (SAM-5 §7) from this nexus.
    ///
    /// Never blocks. Commands the function aborts are marked; those the fabric holds for Data-Out
    /// are handed back through [`TargetDriver::abort_pending`]. When nothing affected is still
    /// running the response is returned at once, else it comes through
    /// [`TargetDriver::tm_done`] once the last affected command is released.
    pub fn submit_tm(self: &Arc<Self>, req: TmRequest) -> TmOutcome {
        let lun = Lun::from_sam(req.lun);
        let rsp = |status| TmResponse { tag: req.tag, status };
        let view = self.view.read().clone();
        let slot = lun.and_then(|l| view.find(l));
        let wait = TmWait::new(rsp(TmStatus::COMPLETE), self.fabric.clone());
        let mut data_wait = Vec::new();
        let f = req.function;
        let lun_scoped = matches!(
            f,
            TmFunction::ABORT_TASK
                | TmFunction::ABORT_TASK_SET
                | TmFunction::CLEAR_TASK_SET
                | TmFunction::LUN_RESET
                | TmFunction::QUERY_TASK
                | TmFunction::QUERY_TASK_SET
                | TmFunction::QUERY_ASYNC_EVENT
        );
        if lun_scoped && slot.is_none() {
            return TmOutcome::Done(rsp(TmStatus::NO_LUN));
        }
        match f {
            TmFunction::ABORT_TASK => {
                let n =
                    self.slots.abort_matching(|t, l| t == req.ref_tag && l == lun, Some(&wait), &mut data_wait, false);
                if n == 0 {
                    return TmOutcome::Done(rsp(TmStatus::NO_TASK));
                }
            }
            TmFunction::ABORT_TASK_SET => {
                self.slots.abort_matching(|_, l| l == lun, Some(&wait), &mut data_wait, false);
            }
            TmFunction::CLEAR_TASK_SET | TmFunction::LUN_RESET => {
                let dev = slot.map(|s| s.dev.clone()).expect("checked above");
                self.abort_device(&dev, &wait);
                if f == TmFunction::LUN_RESET {
                    dev.clear_prevent();
                    let _ = dev.pr_update(|st| {
                        st.reset();
                        Ok(())
                    });
                    dev.raise_ua(SenseCode::BUS_DEVICE_RESET, None);
                    dev.handler().reset(&dev, crate::tm::TmHold::new(&wait));
                } else {
                    dev.raise_ua(SenseCode::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR, Some(self.id));
                }
            }
            TmFunction::TARGET_WARM_RESET | TmFunction::TARGET_COLD_RESET => {
                for dev in self.target.devices() {
                    self.abort_device(&dev, &wait);
                    dev.clear_prevent();
                    let _ = dev.pr_update(|st| {
                        st.reset();
                        Ok(())
                    });
                    dev.raise_ua(SenseCode::POWER_ON_RESET, None);
                    dev.handler().reset(&dev, crate::tm::TmHold::new(&wait));
                }
            }
            TmFunction::I_T_NEXUS_RESET => {
                self.slots.abort_matching(|_, _| true, Some(&wait), &mut data_wait, false);
                for s in &view.slots {
                    s.dev.set_prevent(self.id, false);
                    let _ = s.dev.pr_update(|st| {
                        st.nexus_lost(&self.nexus);
                        Ok(())
                    });
                }
                self.raise_local_ua(SenseCode::I_T_NEXUS_LOSS);
            }
            TmFunction::QUERY_TASK => {
                let found = self.slots.find(req.ref_tag, lun);
                return TmOutcome::Done(rsp(if found { TmStatus::SUCCEEDED } else { TmStatus::COMPLETE }));
            }
            TmFunction::QUERY_TASK_SET => {
                let any = lun.is_some_and(|l| self.slots.any_on(l));
                return TmOutcome::Done(rsp(if any { TmStatus::SUCCEEDED } else { TmStatus::COMPLETE }));
            }
            TmFunction::QUERY_ASYNC_EVENT => {
                let pending = slot.is_some_and(|s| s.ua.pending(&s.dev.ua, self.id, &self.nexus));
                return TmOutcome::Done(rsp(if pending { TmStatus::SUCCEEDED } else { TmStatus::COMPLETE }));
            }
            _ => return TmOutcome::Done(rsp(TmStatus::NOT_SUPPORTED)),
        }
        for tag in data_wait {
            self.fabric.abort_pending(tag);
        }
        if wait.arm() { TmOutcome::Done(rsp(TmStatus::COMPLETE)) } else { TmOutcome::Pending }
    }

    /// Aborts every command on `dev` of the sessions of nexus `n` (PREEMPT AND ABORT); the
    /// command doing it is not one of them.
    pub(crate) fn abort_nexus(&self, dev: &Arc<crate::dev::Device>, n: &Nexus) {
        for sess in self.target.sessions() {
            let m = &sess.nexus;
            if m.initiator != n.initiator
                || m.port_suffix != n.port_suffix
                || (n.rel_port != 0 && m.rel_port != n.rel_port)
            {
                continue;
            }
            let luns: Vec<Lun> =
                sess.view.read().slots.iter().filter(|s| Arc::ptr_eq(&s.dev, dev)).map(|s| s.lun).collect();
            let mut data_wait = Vec::new();
            let tas = sess.id != self.id && dev.mode.tas.load(Relaxed);
            sess.slots.abort_matching(|_, l| l.is_some_and(|l| luns.contains(&l)), None, &mut data_wait, tas);
            for tag in data_wait {
                sess.fabric.abort_pending(tag);
            }
        }
    }

    /// Aborts every command on `dev` from every nexus of this target.
    fn abort_device(&self, dev: &Arc<crate::dev::Device>, wait: &Arc<TmWait>) {
        for sess in self.target.sessions() {
            let luns: Vec<Lun> =
                sess.view.read().slots.iter().filter(|s| Arc::ptr_eq(&s.dev, dev)).map(|s| s.lun).collect();
            if luns.is_empty() {
                continue;
            }
            let mut data_wait = Vec::new();
            // Other nexuses' commands are answered with TASK ABORTED when TAS is set.
            let tas = sess.id != self.id && dev.mode.tas.load(Relaxed);
            sess.slots.abort_matching(|_, l| l.is_some_and(|l| luns.contains(&l)), Some(wait), &mut data_wait, tas);
            for tag in data_wait {
                sess.fabric.abort_pending(tag);
            }
        }
    }
}
