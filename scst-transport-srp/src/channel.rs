//! One RDMA channel of an SRP I_T nexus, as a sans-IO state machine.
//!
//! The driver feeds it what the queue pair delivers and carries out what it asks:
//!
//! - [`Channel::receive`]: the bytes of one received IU. The receive buffer may be reposted
//!   as soon as the call returns; the driver then calls [`Channel::recv_reposted`]. Credits
//!   are granted only for reposted buffers, so the initiator can never send into a buffer
//!   that is not posted.
//! - [`Channel::poll`]: the next [`Action`]: send IU bytes, RDMA READ the initiator's buffers
//!   into a command's buffer (WRITE data), RDMA WRITE a command's Data-In into them, or
//!   disconnect. Actions must be posted in the order they are polled on the channel's one
//!   queue pair: a response polled after an RDMA WRITE relies on RC ordering to arrive after
//!   the data.
//! - [`Channel::rdma_done`] and [`Channel::send_done`]: completions.
//! - [`Channel::close`]: the connection is gone (ib_srp never sends SRP_I_LOGOUT: a
//!   disconnect is its logout). Call it once no work request of the queue pair can still
//!   complete (the QP is drained or destroyed): it frees every command, including those whose
//!   buffers an RDMA operation targeted.
//!
//! Completions the core delivers on other threads (responses, task management results) land
//! in the channel's inbox and call the driver's wake function; the next [`Channel::poll`] processes them.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use scst::{
    CmdBox, CmdHeader, DataDir, ScsiStatus, Sense, SenseCode, Session, Step, TaskAttr, TmFunction, TmOutcome,
    TmRequest, TmResponse, TmStatus,
};

use crate::iu::{
    self, CredReq, DataBuf, DirectDesc, IuError, Rsp, TLogout, TskMgmt, logout_reason, opcode, rsp_flag, tm_rsp, tmf,
};
use crate::port::{Nexus, SrpPort};

/// Called when a channel has work for [`Channel::poll`] (from any thread; must not block).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// SRP_CMD `sol_not`: successful completion solicited notification.
const SCSOLNT: u8 = 0x02;
/// SRP_CMD `sol_not`: unsuccessful completion solicited notification.
const UCSOLNT: u8 = 0x04;

/// Identifies one RDMA transfer (one command's data) until [`Channel::rdma_done`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XferId(pub u32);

/// What the driver must do next.
#[derive(Debug)]
pub enum Action {
    /// Post a send of `bytes`; report its completion with [`Channel::send_done`]`(id)`.
    Send {
        /// Completion identifier.
        id: u64,
        /// The IU.
        bytes: Vec<u8>,
        /// Post it with the solicited event flag (SRP_RSP with SOLNT).
        solicited: bool,
    },
    /// RDMA READ `len` bytes from `remote` (in order) into the command buffer of `xfer`
    /// ([`Channel::xfer_buf_mut`]) from offset 0, then call [`Channel::rdma_done`].
    RdmaRead {
        /// The transfer.
        xfer: XferId,
        /// The initiator's buffers, already cut to `len` bytes in total.
        remote: Vec<DirectDesc>,
        /// Bytes to read.
        len: u32,
    },
    /// RDMA WRITE the first `len` bytes of the Data-In of `xfer` ([`Channel::xfer_cmd`],
    /// `Cmd::data_in_slices`) to `remote`, then call [`Channel::rdma_done`].
    RdmaWrite {
        /// The transfer.
        xfer: XferId,
        /// The initiator's buffers, already cut to `len` bytes in total.
        remote: Vec<DirectDesc>,
        /// Bytes to write.
        len: u32,
    },
    /// RDMA READ the command's descriptor table (`len` bytes at `remote`) into
    /// [`Channel::table_buf_mut`], then call [`Channel::rdma_done`]: the initiator's descriptor
    /// list did not fit in the SRP_CMD (Linux ib_srp's `allow_ext_sg`).
    FetchTable {
        /// The transfer.
        xfer: XferId,
        /// Where the table is.
        remote: DirectDesc,
        /// Its length.
        len: u32,
    },
    /// Disconnect the channel (after a logout), then call [`Channel::close`] once the queue
    /// pair is drained.
    Disconnect,
}

/// Why [`Channel::receive`] refused an IU. The channel has already queued what the
/// initiator is told (an SRP_RSP with CHECK CONDITION, or SRP_T_LOGOUT and a disconnect).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The IU does not parse.
    #[error("malformed IU: {0}")]
    Malformed(#[from] IuError),
    /// An opcode an initiator may not send.
    #[error("unexpected IU opcode {0:#04x}")]
    Opcode(u8),
    /// An IU longer than the login allowed.
    #[error("IU of {0} bytes exceeds the negotiated maximum")]
    TooLong(usize),
    /// A response to a request the target did not make.
    #[error("unexpected response IU")]
    UnexpectedResponse,
    /// The channel is logged out or closed.
    #[error("channel is closed")]
    Closed,
    /// The command was refused before reaching the core (CHECK CONDITION sent).
    #[error("command refused: {0}")]
    Refused(&'static str),
}

/// What the core delivered from other threads.
#[derive(Default)]
struct Inbox {
    done: Vec<CmdBox>,
    tm: Vec<TmResponse>,
    /// Log the initiator out with this SRP_T_LOGOUT reason (a single-channel login of the
    /// same nexus, or management).
    terminate: Option<u32>,
}

/// The part of a channel other threads reach (through the nexus).
pub(crate) struct ChannelShared {
    pub(crate) id: u32,
    inbox: Mutex<Inbox>,
    wake: Wake,
}

impl ChannelShared {
    pub(crate) fn new(id: u32, wake: Wake) -> Arc<Self> {
        Arc::new(Self { id, inbox: Mutex::new(Inbox::default()), wake })
    }

    pub(crate) fn push_done(&self, cmd: CmdBox) {
        self.inbox.lock().done.push(cmd);
        (self.wake)();
    }

    pub(crate) fn push_tm(&self, rsp: TmResponse) {
        self.inbox.lock().tm.push(rsp);
        (self.wake)();
    }

    pub(crate) fn push_terminate(&self, reason: u32) {
        self.inbox.lock().terminate = Some(reason);
        (self.wake)();
    }
}

/// Where a command is.
#[derive(Debug, PartialEq, Eq)]
enum Stage {
    /// In the core (queued or executing on a worker).
    Core,
    /// Its WRITE data is being read.
    Reading,
    /// Its Data-In is being written; the response is queued behind it.
    Writing,
    /// Its descriptor table is being read from the initiator's memory.
    Table,
}

struct Entry {
    tag: u64,
    sol_not: u8,
    stage: Stage,
    cmd: Option<CmdBox>,
    out: Vec<DirectDesc>,
    inn: Vec<DirectDesc>,
    /// A copy of the SRP_CMD while its external table is fetched.
    iu: Vec<u8>,
    /// The external descriptor table (fetched into here).
    table: Vec<u8>,
}

/// Largest external descriptor table accepted (4096 descriptors).
const MAX_TABLE_LEN: usize = 4096 * iu::DIRECT_DESC_LEN;

#[derive(Debug, PartialEq, Eq)]
enum State {
    Live,
    /// Logged out: waiting for the last send, or for the driver to disconnect.
    LoggingOut,
    Closed,
}

/// One RDMA channel. See the module documentation for the driver contract.
pub struct Channel {
    port: Arc<SrpPort>,
    nexus: Arc<Nexus>,
    session: Arc<Session>,
    shared: Arc<ChannelShared>,
    state: State,
    max_it_iu_len: u32,
    max_ti_iu_len: u32,
    max_data_len: u32,
    imm_offset: Option<u16>,
    entries: Vec<Option<Entry>>,
    free: Vec<u32>,
    queue: VecDeque<Action>,
    next_send: u64,
    /// Receive buffers posted now.
    posted: u32,
    /// Requests the initiator may still send (as far as it knows).
    initiator_credit: u32,
    /// An SRP_CRED_REQ awaiting its SRP_CRED_RSP (tag).
    cred_req: Option<u64>,
    /// The send after whose completion the channel disconnects (SRP_T_LOGOUT).
    logout_send: Option<u64>,
    stats: ChannelStats,
}

/// Counters of one channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// SRP_CMD IUs received.
    pub commands: u64,
    /// SRP_TSK_MGMT IUs received.
    pub task_mgmt: u64,
    /// Credits granted after the login (through SRP_RSP and SRP_CRED_REQ).
    pub credits_granted: u64,
    /// Requests received while the initiator had no credit left.
    pub credit_overruns: u64,
    /// Commands whose data buffer was described by an indirect descriptor.
    pub indirect: u64,
    /// Commands whose indirect descriptor table had to be fetched from the initiator.
    pub external_tables: u64,
    /// RDMA READ transfers (WRITE data) asked for.
    pub rdma_reads: u64,
    /// RDMA WRITE transfers (Data-In) asked for.
    pub rdma_writes: u64,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("id", &self.shared.id).field("state", &self.state).finish_non_exhaustive()
    }
}

/// The sizes a login settled for a channel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Receive buffers posted.
    pub(crate) depth: u32,
    /// Largest IU the initiator sends.
    pub(crate) max_it_iu_len: u32,
    /// Largest IU the target sends.
    pub(crate) max_ti_iu_len: u32,
    /// Largest data buffer of one command.
    pub(crate) max_data_len: u32,
    /// SRP-2 immediate data offset, when negotiated.
    pub(crate) imm_offset: Option<u16>,
}

fn cover(descs: impl Iterator<Item = DirectDesc>, len: u32) -> Vec<DirectDesc> {
    let mut left = len;
    let mut v = Vec::new();
    for mut d in descs {
        if left == 0 {
            break;
        }
        d.len = d.len.min(left);
        left -= d.len;
        if d.len > 0 {
            v.push(d);
        }
    }
    v
}

fn tag_of(b: &[u8]) -> Option<u64> {
    let t = b.get(8..16)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(t);
    Some(u64::from_be_bytes(a))
}

impl Channel {
    pub(crate) fn new(
        port: Arc<SrpPort>,
        nexus: Arc<Nexus>,
        session: Arc<Session>,
        shared: Arc<ChannelShared>,
        limits: Limits,
    ) -> Self {
        let Limits { depth, max_it_iu_len, max_ti_iu_len, max_data_len, imm_offset } = limits;
        Self {
            port,
            nexus,
            session,
            shared,
            state: State::Live,
            max_it_iu_len,
            max_ti_iu_len,
            max_data_len,
            imm_offset,
            entries: Vec::new(),
            free: Vec::new(),
            queue: VecDeque::new(),
            next_send: 1,
            posted: depth,
            initiator_credit: depth - 1,
            cred_req: None,
            logout_send: None,
            stats: ChannelStats::default(),
        }
    }

    /// Process-unique channel id.
    pub fn id(&self) -> u32 {
        self.shared.id
    }

    /// The core session (I_T nexus) this channel belongs to.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Counters.
    pub fn stats(&self) -> ChannelStats {
        self.stats
    }

    /// Largest IU the initiator may send on this channel (the receive buffer size needed).
    pub fn max_it_iu_len(&self) -> u32 {
        self.max_it_iu_len
    }

    /// Largest IU this channel sends.
    pub fn max_ti_iu_len(&self) -> u32 {
        self.max_ti_iu_len
    }

    /// Whether the channel was closed or logged out.
    pub fn is_closed(&self) -> bool {
        self.state != State::Live
    }

    /// Commands of this channel not yet finished (in the core, or with RDMA in flight).
    pub fn outstanding(&self) -> usize {
        self.entries.iter().filter(|e| e.is_some()).count()
    }

    /// Credits the initiator may use now, as the channel accounts them.
    pub fn initiator_credit(&self) -> u32 {
        self.initiator_credit
    }

    /// Credits the next response will carry: reposted buffers beyond the initiator's credit,
    /// less the one kept for initiator responses.
    fn grantable(&self) -> u32 {
        self.posted.saturating_sub(1).saturating_sub(self.initiator_credit)
    }

    /// One receive buffer was reposted (after the [`Channel::receive`] of its IU).
    pub fn recv_reposted(&mut self) {
        self.posted = self.posted.saturating_add(1);
    }

    /// The command buffer an [`Action::RdmaRead`] fills.
    pub fn xfer_buf_mut(&mut self, xfer: XferId) -> Option<&mut scst::SgBuf> {
        let e = self.entries.get_mut(xfer.0 as usize)?.as_mut()?;
        e.cmd.as_mut()?.buf_mut()
    }

    /// The buffer an [`Action::FetchTable`] fills.
    pub fn table_buf_mut(&mut self, xfer: XferId) -> Option<&mut [u8]> {
        let e = self.entries.get_mut(xfer.0 as usize)?.as_mut()?;
        (e.stage == Stage::Table).then_some(e.table.as_mut_slice())
    }

    /// The command whose Data-In an [`Action::RdmaWrite`] sends.
    pub fn xfer_cmd(&self, xfer: XferId) -> Option<&scst::Cmd> {
        let e = self.entries.get(xfer.0 as usize)?.as_ref()?;
        e.cmd.as_deref()
    }

    fn send(&mut self, bytes: Vec<u8>, solicited: bool) -> u64 {
        let id = self.next_send;
        self.next_send += 1;
        self.queue.push_back(Action::Send { id, bytes, solicited });
        id
    }

    /// Queues SRP_T_LOGOUT; the channel disconnects once it is sent.
    fn logout(&mut self, reason: u32) {
        if self.state != State::Live {
            return;
        }
        tracing::info!(channel = self.shared.id, reason, "SRP target logout");
        let id = self.send(TLogout { sol_not: 0, reason, tag: 0 }.build().to_vec(), false);
        self.logout_send = Some(id);
        self.state = State::LoggingOut;
    }

    /// Handles one received IU (`bytes` as long as the receive completion says).
    ///
    /// # Errors
    /// A malformed or unexpected IU. The channel has then already queued its answer (CHECK
    /// CONDITION for a command it could identify, else SRP_T_LOGOUT); the error is for logging.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        if self.state == State::Closed {
            return Err(ChannelError::Closed);
        }
        self.posted = self.posted.saturating_sub(1);
        let Some(&op) = bytes.first() else {
            self.logout(logout_reason::INVALID_IU_LENGTH);
            return Err(IuError::TooShort { need: 1, got: 0 }.into());
        };
        let request = matches!(op, opcode::CMD | opcode::TSK_MGMT | opcode::I_LOGOUT);
        if request {
            if self.initiator_credit == 0 {
                self.stats.credit_overruns += 1;
            }
            self.initiator_credit = self.initiator_credit.saturating_sub(1);
        }
        if self.state != State::Live {
            return Err(ChannelError::Closed);
        }
        if bytes.len() > self.max_it_iu_len as usize {
            self.logout(logout_reason::INVALID_IU_LENGTH);
            return Err(ChannelError::TooLong(bytes.len()));
        }
        let r = match op {
            opcode::CMD => self.command(bytes),
            opcode::TSK_MGMT => self.task_mgmt(bytes),
            opcode::I_LOGOUT => {
                iu::parse_i_logout(bytes).map_err(|e| {
                    self.logout(logout_reason::INVALID_IU_LENGTH);
                    ChannelError::from(e)
                })?;
                tracing::debug!(channel = self.shared.id, "SRP initiator logout");
                self.state = State::LoggingOut;
                self.queue.push_back(Action::Disconnect);
                Ok(())
            }
            opcode::CRED_RSP | opcode::AER_RSP => {
                let tag = if op == opcode::CRED_RSP { iu::parse_cred_rsp(bytes) } else { iu::parse_aer_rsp(bytes) };
                match tag {
                    Ok(t) if op == opcode::CRED_RSP && self.cred_req == Some(t) => {
                        self.cred_req = None;
                        Ok(())
                    }
                    Ok(_) => {
                        self.logout(logout_reason::UNEXPECTED_RESPONSE);
                        Err(ChannelError::UnexpectedResponse)
                    }
                    Err(e) => {
                        self.logout(logout_reason::INVALID_IU_LENGTH);
                        Err(e.into())
                    }
                }
            }
            other => {
                self.logout(logout_reason::INVALID_IU_TYPE);
                Err(ChannelError::Opcode(other))
            }
        };
        self.check_credit_request();
        r
    }

    /// SRP_RSP with CHECK CONDITION for a command refused before it reached the core.
    fn refuse(&mut self, tag: u64, sol_not: u8, code: SenseCode) {
        let mut sense = [0u8; scst::wire::sense::MAX_SENSE_LEN];
        let n = Sense::new(code).write(false, &mut sense);
        self.respond_raw(tag, sol_not, ScsiStatus::CHECK_CONDITION.0, &[], &sense[..n], (0, 0, 0));
    }

    fn respond_raw(&mut self, tag: u64, sol_not: u8, status: u8, resp: &[u8], sense: &[u8], res: (u8, u32, u32)) {
        let mut bytes = Vec::with_capacity(iu::RSP_LEN + resp.len() + sense.len());
        let ok = status == 0 && resp.get(3).is_none_or(|c| *c == 0);
        let solicited = sol_not & if ok { SCSOLNT } else { UCSOLNT } != 0;
        Rsp {
            sol_not: u8::from(solicited),
            req_lim_delta: 0,
            tag,
            status,
            residual_flags: res.0,
            data_out_res: res.1,
            data_in_res: res.2,
            resp_data: resp,
            sense,
        }
        .build_into(&mut bytes);
        self.send(bytes, solicited);
    }

    fn command(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        self.stats.commands += 1;
        let c = match iu::Cmd::parse(bytes) {
            Ok(c) => c,
            Err(e) => {
                match (tag_of(bytes), e) {
                    (Some(tag), _) => self.refuse(
                        tag,
                        bytes.get(1).copied().unwrap_or(0),
                        SenseCode::INVALID_FIELD_IN_INFORMATION_UNIT,
                    ),
                    (None, _) => self.logout(logout_reason::INVALID_IU_LENGTH),
                }
                return Err(e.into());
            }
        };
        let (tag, sol_not) = (c.tag(), c.sol_not());
        let (out, inn) = (c.data_out(), c.data_in());
        let imm = self.imm_offset.and_then(|o| c.immediate_data(usize::from(o)));
        let external = [out, inn].into_iter().find(DataBuf::table_is_external);
        let problem = if matches!(out, DataBuf::Immediate(_)) && imm.is_none() {
            Some("immediate data not negotiated or beyond the IU")
        } else if !out.is_empty() && !inn.is_empty() {
            Some("bidirectional commands are not supported")
        } else if out.len() > self.max_data_len || inn.len() > self.max_data_len {
            Some("data buffer larger than the port's maximum transfer")
        } else if let Some(DataBuf::Indirect { table, partial, .. }) = external {
            let n = table.len as usize;
            (n % iu::DIRECT_DESC_LEN != 0 || n < partial.len() || n > MAX_TABLE_LEN)
                .then_some("external descriptor table of an unusable length")
        } else if [out, inn].iter().any(|b| match b {
            DataBuf::Indirect { total_len, .. } => {
                b.descriptors().map(|d| u64::from(d.len)).sum::<u64>() != u64::from(*total_len)
            }
            _ => false,
        }) {
            Some("indirect total length differs from its descriptors")
        } else {
            None
        };
        if let Some(why) = problem {
            self.refuse(tag, sol_not, SenseCode::INVALID_FIELD_IN_INFORMATION_UNIT);
            return Err(ChannelError::Refused(why));
        }
        if let Some(DataBuf::Indirect { table, .. }) = external {
            // The descriptor table lies in the initiator's memory: fetch it first; the command
            // starts when it is here (`rdma_done`).
            self.stats.external_tables += 1;
            let slot = self.alloc_entry(Entry {
                tag,
                sol_not,
                stage: Stage::Table,
                cmd: None,
                out: Vec::new(),
                inn: Vec::new(),
                iu: bytes.to_vec(),
                table: vec![0; table.len as usize],
            });
            self.queue.push_back(Action::FetchTable { xfer: XferId(slot), remote: table, len: table.len });
            return Ok(());
        }
        let (dout, din) = (out.descriptors().collect(), inn.descriptors().collect());
        self.start(None, &c, dout, din, imm);
        Ok(())
    }

    /// Hands a command to the core once its descriptors are known (`slot`: the entry that
    /// fetched its external table).
    fn start(
        &mut self,
        slot: Option<u32>,
        c: &iu::Cmd<'_>,
        dout: Vec<DirectDesc>,
        din: Vec<DirectDesc>,
        imm: Option<&[u8]>,
    ) {
        let (tag, sol_not) = (c.tag(), c.sol_not());
        let (out, inn) = (c.data_out(), c.data_in());
        if [out, inn].iter().any(|b| matches!(b, DataBuf::Indirect { .. })) {
            self.stats.indirect += 1;
        }
        let (dir, len) = if !out.is_empty() {
            (DataDir::Out, out.len())
        } else if !inn.is_empty() {
            (DataDir::In, inn.len())
        } else {
            (DataDir::None, 0)
        };
        let attr = match c.task_attr() {
            1 => TaskAttr::HeadOfQueue,
            2 => TaskAttr::Ordered,
            4 => TaskAttr::Aca,
            _ => TaskAttr::Simple,
        };
        let hdr = CmdHeader { lun: c.lun(), cdb: c.cdb(), attr, tag, expected_len: len, expected_dir: dir };
        let Ok(mut cmd) = self.session.alloc_cmd(&hdr) else {
            if let Some(s) = slot {
                self.free_entry(s);
            }
            self.respond_raw(tag, sol_not, ScsiStatus::TASK_SET_FULL.0, &[], &[], (0, 0, 0));
            return;
        };
        let e = Entry {
            tag,
            sol_not,
            stage: Stage::Core,
            cmd: None,
            out: dout,
            inn: din,
            iu: Vec::new(),
            table: Vec::new(),
        };
        let slot = match slot {
            Some(s) => {
                self.entries[s as usize] = Some(e);
                s
            }
            None => self.alloc_entry(e),
        };
        cmd.fabric_cookie = (u64::from(self.shared.id) << 32) | u64::from(slot);
        let step = self.session.submit(cmd);
        self.step(slot, step, imm);
    }

    /// The external descriptor table arrived (or not) for the command of `slot`.
    fn table_done(&mut self, slot: u32, ok: bool) {
        let Some(e) = self.take_table(slot) else { return };
        if !ok {
            self.free_entry(slot);
            self.fatal();
            return;
        }
        let Ok(c) = iu::Cmd::parse(&e.iu) else {
            self.free_entry(slot);
            return;
        };
        let descs: Vec<DirectDesc> = e.table.chunks_exact(iu::DIRECT_DESC_LEN).map(DirectDesc::from_bytes).collect();
        let buf = if c.data_out().table_is_external() { c.data_out() } else { c.data_in() };
        if descs.iter().map(|d| u64::from(d.len)).sum::<u64>() != u64::from(buf.len()) {
            self.free_entry(slot);
            self.refuse(c.tag(), c.sol_not(), SenseCode::INVALID_FIELD_IN_INFORMATION_UNIT);
            return;
        }
        let (dout, din) = if c.data_out().table_is_external() { (descs, Vec::new()) } else { (Vec::new(), descs) };
        self.start(Some(slot), &c, dout, din, None);
    }

    /// Takes the IU copy and the fetched table out of an entry in the table stage (the entry stays).
    fn take_table(&mut self, slot: u32) -> Option<Entry> {
        let e = self.entries.get_mut(slot as usize)?.as_mut()?;
        Some(Entry {
            tag: e.tag,
            sol_not: e.sol_not,
            stage: Stage::Table,
            cmd: None,
            out: Vec::new(),
            inn: Vec::new(),
            iu: std::mem::take(&mut e.iu),
            table: std::mem::take(&mut e.table),
        })
    }

    fn alloc_entry(&mut self, e: Entry) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = Some(e);
                i
            }
            None => {
                self.entries.push(Some(e));
                (self.entries.len() - 1) as u32
            }
        }
    }

    fn free_entry(&mut self, slot: u32) -> Option<Entry> {
        let e = self.entries.get_mut(slot as usize)?.take();
        if e.is_some() {
            self.free.push(slot);
        }
        e
    }

    /// Continues a command after the core returned `step`; `imm` is its immediate data.
    fn step(&mut self, slot: u32, step: Step, imm: Option<&[u8]>) {
        match step {
            Step::Done(cmd) => self.complete(slot, cmd),
            Step::Pending => {}
            Step::NeedData(mut cmd) if imm.is_some() => {
                // The data came in the SRP_CMD: no RDMA READ.
                let data = imm.unwrap_or_default();
                let want = cmd.data_out_len().min(data.len());
                if let Some(buf) = cmd.buf_mut() {
                    buf.write_at(0, &data[..want]);
                }
                let step = self.session.data_received(cmd);
                self.step(slot, step, None);
            }
            Step::NeedData(mut cmd) => {
                let Some(e) = self.entries.get_mut(slot as usize).and_then(Option::as_mut) else { return };
                let want = cmd.data_out_len() as u32;
                let remote = cover(e.out.iter().copied(), want);
                let got: u32 = remote.iter().map(|d| d.len).sum();
                if got < want {
                    // The command wants data the initiator described no buffer for (e.g. a
                    // WRITE sent with a data-in descriptor).
                    cmd.check_condition(SenseCode::INVALID_FIELD_IN_INFORMATION_UNIT);
                    self.complete(slot, cmd);
                    return;
                }
                e.stage = Stage::Reading;
                e.cmd = Some(cmd);
                self.stats.rdma_reads += 1;
                self.queue.push_back(Action::RdmaRead { xfer: XferId(slot), remote, len: want });
            }
        }
    }

    /// Sends a finished command's data and response.
    fn complete(&mut self, slot: u32, cmd: CmdBox) {
        if self.state == State::Closed {
            self.free_entry(slot);
            return;
        }
        let tas = cmd.answers_task_aborted();
        if cmd.is_aborted() && !tas {
            // SAM-5: an aborted command gets no response (its credit comes back with the next
            // response the channel sends).
            self.free_entry(slot);
            return;
        }
        let Some(e) = self.entries.get_mut(slot as usize).and_then(Option::as_mut) else { return };
        let (tag, sol_not) = (e.tag, e.sol_not);
        // Data-In goes only to a data-in buffer the initiator described.
        let n = if tas || cmd.expected_dir() != DataDir::In { 0 } else { cmd.data_in_len() as u32 };
        let remote = if n > 0 { cover(e.inn.iter().copied(), n) } else { Vec::new() };
        let status = if tas { ScsiStatus::TASK_ABORTED } else { cmd.status() };
        let (mut flags, mut dout, mut din) = (0, 0, 0);
        if !tas {
            let (over, count) = cmd.residual();
            let exp = cmd.expected_len();
            match (cmd.info().dir, cmd.expected_dir()) {
                (DataDir::In, DataDir::In) if count > 0 => {
                    flags = if over { rsp_flag::DIOVER } else { rsp_flag::DIUNDER };
                    din = count;
                }
                (DataDir::Out, DataDir::Out) if count > 0 => {
                    flags = if over { rsp_flag::DOOVER } else { rsp_flag::DOUNDER };
                    dout = count;
                }
                (DataDir::In, DataDir::In) | (DataDir::Out, DataDir::Out) => {}
                // The command's direction has no buffer: all it produced or wanted overflowed
                // (and the buffer of the other direction went unused).
                (DataDir::In, other) => {
                    let produced = if over { exp.saturating_add(count) } else { exp - count.min(exp) };
                    if produced > 0 {
                        (flags, din) = (rsp_flag::DIOVER, produced);
                    }
                    if other == DataDir::Out && exp > 0 {
                        (flags, dout) = (flags | rsp_flag::DOUNDER, exp);
                    }
                }
                (DataDir::Out, other) => {
                    let wanted = cmd.info().data_len;
                    if wanted > 0 {
                        (flags, dout) = (rsp_flag::DOOVER, wanted);
                    }
                    if other == DataDir::In && exp > 0 {
                        (flags, din) = (flags | rsp_flag::DIUNDER, exp);
                    }
                }
                // Nothing moved: the whole buffer is a residual.
                (_, DataDir::In) if exp > 0 => (flags, din) = (rsp_flag::DIUNDER, exp),
                (_, DataDir::Out) if exp > 0 => (flags, dout) = (rsp_flag::DOUNDER, exp),
                _ => {}
            }
        }
        let sense: Vec<u8> = if tas { Vec::new() } else { cmd.sense().to_vec() };
        if n > 0 {
            e.stage = Stage::Writing;
            e.cmd = Some(cmd);
            self.stats.rdma_writes += 1;
            self.queue.push_back(Action::RdmaWrite { xfer: XferId(slot), remote, len: n });
            self.respond_raw(tag, sol_not, status.0, &[], &sense, (flags, dout, din));
        } else {
            self.respond_raw(tag, sol_not, status.0, &[], &sense, (flags, dout, din));
            self.free_entry(slot);
            drop(cmd);
        }
    }

    fn task_mgmt(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        self.stats.task_mgmt += 1;
        let t = match TskMgmt::parse(bytes) {
            Ok(t) => t,
            Err(e) => {
                match tag_of(bytes) {
                    Some(tag) => self.tm_respond(tag, bytes[1], tm_rsp::FIELDS_INVALID),
                    None => self.logout(logout_reason::INVALID_IU_LENGTH),
                }
                return Err(e.into());
            }
        };
        let function = match t.function() {
            tmf::ABORT_TASK => TmFunction::ABORT_TASK,
            tmf::ABORT_TASK_SET => TmFunction::ABORT_TASK_SET,
            tmf::CLEAR_TASK_SET => TmFunction::CLEAR_TASK_SET,
            tmf::LUN_RESET => TmFunction::LUN_RESET,
            // CLEAR ACA: NormACA is 0, there is never an ACA to clear.
            _ => {
                self.tm_respond(t.tag(), t.sol_not(), tm_rsp::NOT_SUPPORTED);
                return Ok(());
            }
        };
        self.nexus.tm_owner.lock().insert(t.tag(), self.shared.id);
        let req = TmRequest { function, lun: t.lun(), ref_tag: t.task_tag(), tag: t.tag() };
        match self.session.submit_tm(req) {
            TmOutcome::Done(rsp) => {
                self.nexus.tm_owner.lock().remove(&t.tag());
                self.tm_finished(rsp, t.sol_not());
            }
            TmOutcome::Pending => {}
        }
        Ok(())
    }

    fn tm_finished(&mut self, rsp: TmResponse, sol_not: u8) {
        let code = match rsp.status {
            // SAM-5 §7.2: ABORT TASK of a task that is not there (it completed) is complete.
            TmStatus::COMPLETE | TmStatus::NO_TASK | TmStatus::SUCCEEDED => tm_rsp::COMPLETE,
            TmStatus::NOT_SUPPORTED => tm_rsp::NOT_SUPPORTED,
            _ => tm_rsp::FAILED,
        };
        self.tm_respond(rsp.tag, sol_not, code);
    }

    fn tm_respond(&mut self, tag: u64, sol_not: u8, code: u8) {
        self.respond_raw(tag, sol_not, 0, &[0, 0, 0, code], &[], (0, 0, 0));
    }

    /// An RDMA operation of `xfer` completed (`ok == false`: it failed or was flushed).
    pub fn rdma_done(&mut self, xfer: XferId, ok: bool) {
        let slot = xfer.0;
        let Some(e) = self.entries.get_mut(slot as usize).and_then(Option::as_mut) else { return };
        match e.stage {
            Stage::Writing => {
                self.free_entry(slot);
                if !ok {
                    self.fatal();
                }
            }
            Stage::Reading => {
                let cmd = e.cmd.take();
                e.stage = Stage::Core;
                let Some(cmd) = cmd else { return };
                if !ok || self.state == State::Closed {
                    self.free_entry(slot);
                    drop(cmd);
                    if !ok {
                        self.fatal();
                    }
                    return;
                }
                if cmd.is_aborted() {
                    // Aborted while its data was read: only now may its buffer go.
                    self.complete(slot, cmd);
                    return;
                }
                let step = self.session.data_received(cmd);
                self.step(slot, step, None);
            }
            Stage::Table => self.table_done(slot, ok),
            Stage::Core => {}
        }
        self.check_credit_request();
    }

    /// A failed work request: the queue pair is in error and the connection is lost.
    fn fatal(&mut self) {
        if self.state == State::Live {
            self.state = State::LoggingOut;
            self.queue.push_back(Action::Disconnect);
        }
    }

    /// A send completed (`ok == false`: failed or flushed).
    pub fn send_done(&mut self, id: u64, ok: bool) {
        if self.logout_send == Some(id) {
            self.logout_send = None;
            self.queue.push_back(Action::Disconnect);
        } else if !ok {
            self.fatal();
        }
    }

    /// The next thing to do, after taking in what other threads delivered. Credits are
    /// attached to a response when it is polled, so reposting before polling returns them
    /// sooner.
    pub fn poll(&mut self) -> Option<Action> {
        self.drain_inbox();
        let mut a = self.queue.pop_front()?;
        if let Action::Send { bytes, .. } = &mut a
            && matches!(bytes.first(), Some(&opcode::RSP) | Some(&opcode::CRED_REQ))
            && bytes.len() >= 8
        {
            let delta = self.grantable();
            bytes[4..8].copy_from_slice(&delta.to_be_bytes());
            self.initiator_credit += delta;
            self.stats.credits_granted += u64::from(delta);
        }
        Some(a)
    }

    fn drain_inbox(&mut self) {
        let inbox = std::mem::take(&mut *self.shared.inbox.lock());
        if let Some(reason) = inbox.terminate {
            self.logout(reason);
        }
        for cmd in inbox.done {
            let slot = (cmd.fabric_cookie & 0xffff_ffff) as u32;
            self.complete(slot, cmd);
        }
        for rsp in inbox.tm {
            self.tm_finished(rsp, 0);
        }
        self.check_credit_request();
    }

    /// Sends SRP_CRED_REQ when credits are due but no response will carry them soon: nothing
    /// of this channel is outstanding and nothing is queued.
    fn check_credit_request(&mut self) {
        if self.state != State::Live
            || self.cred_req.is_some()
            || self.grantable() == 0
            || self.outstanding() > 0
            || !self.queue.is_empty()
            // Linux's ib_srp keeps its last credit for task management: with one left it
            // sends no command.
            || self.initiator_credit >= 2
        {
            return;
        }
        let tag = self.next_send;
        self.cred_req = Some(tag);
        self.send(CredReq { sol_not: 0, req_lim_delta: 0, tag }.build().to_vec(), false);
    }

    /// The connection is gone (disconnect, QP error, after a logout). Every command of the
    /// channel is freed; the nexus ends with its last channel. Call only when no work request
    /// can still complete.
    pub fn close(&mut self) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        let st = self.stats;
        tracing::info!(
            channel = self.shared.id,
            initiator = %self.session.config().initiator_name,
            commands = st.commands,
            indirect = st.indirect,
            external_tables = st.external_tables,
            rdma_reads = st.rdma_reads,
            rdma_writes = st.rdma_writes,
            task_mgmt = st.task_mgmt,
            credits = st.credits_granted,
            "SRP channel closed"
        );
        self.queue.clear();
        for e in self.entries.iter_mut() {
            *e = None;
        }
        self.free.clear();
        self.entries.clear();
        let _ = std::mem::take(&mut *self.shared.inbox.lock());
        self.port.channel_closed(&self.nexus, self.shared.id);
        // Completions racing with the removal from the nexus land in the inbox: drop them.
        let _ = std::mem::take(&mut *self.shared.inbox.lock());
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.close();
    }
}
