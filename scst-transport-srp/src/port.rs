//! The SRP target port: login policy and the I_T nexuses (with their RDMA channels).
//!
//! An SRP I_T nexus is identified by the initiator port identifier and the target port
//! identifier of its login requests. Its first channel creates an [`scst::Session`]; a
//! multichannel login (MULTI-CHANNEL ACTION 1) adds a channel to the same nexus, a
//! single-channel login terminates the nexus's channels and starts a fresh nexus.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use parking_lot::Mutex;
use scst::{CmdBox, ProtocolId, Session, SessionConfig, Target, TargetDriver, TargetPort, TmResponse};

use crate::channel::{Channel, ChannelShared, Limits, Wake};
use crate::iu::{self, LoginRej, LoginReq, LoginRsp, RejectReason, buf_fmt, req_flags, rsp_flags};

/// How an SRP target port behaves.
#[derive(Clone, Debug)]
pub struct PortConfig {
    /// The identifier extension the initiator must name (Linux ib_srp's `id_ext`): the first
    /// 8 bytes of the target port identifier.
    pub id_ext: u64,
    /// The I/O controller GUID the initiator must name (ib_srp's `ioc_guid`): the last 8 bytes
    /// of the target port identifier.
    pub ioc_guid: u64,
    /// Largest initiator-to-target IU accepted (the size of each receive buffer). Linux's
    /// ib_srp asks for 8276 bytes when it offers immediate data, 4164 otherwise.
    pub max_it_iu_len: u32,
    /// Largest target-to-initiator IU the target sends (advertised in the login response).
    pub max_ti_iu_len: u32,
    /// Receive buffers the driver posts per channel. One is kept back for the initiator's
    /// answers to the target's own requests (SRP_CRED_RSP), the rest are the initial credits.
    pub queue_depth: u32,
    /// Most channels one I_T nexus may have.
    pub max_channels: usize,
    /// Offer SRP-2 immediate data to initiators that ask for it (write data carried in the
    /// SRP_CMD itself, up to the IU length: no RDMA READ for small writes).
    pub immediate_data: bool,
    /// Largest data buffer one command may describe (bytes); a command describing more is
    /// refused with CHECK CONDITION. Set it to what the driver can transfer at once (the RDMA
    /// driver's `RdmaConfig::max_transfer`).
    pub max_data_len: u32,
    /// Relative target port identifier (VPD 83h, ALUA).
    pub rel_port_id: u16,
    /// Target port group (ALUA).
    pub tpg_id: u16,
}

impl PortConfig {
    /// A port whose target port identifier is `guid` twice, as ib_srp is told with
    /// `id_ext=G,ioc_guid=G`.
    pub fn new(guid: u64) -> Self {
        Self {
            id_ext: guid,
            ioc_guid: guid,
            max_it_iu_len: 8276,
            max_ti_iu_len: 256,
            queue_depth: 128,
            max_channels: 8,
            max_data_len: 1 << 20,
            immediate_data: true,
            rel_port_id: 1,
            tpg_id: 1,
        }
    }

    /// The target port identifier initiators must present.
    pub fn target_port_id(&self) -> [u8; 16] {
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&self.id_ext.to_be_bytes());
        t[8..].copy_from_slice(&self.ioc_guid.to_be_bytes());
        t
    }
}

/// The name of an SRP initiator port as the core knows it: `0x` and 32 hex digits, the form
/// `scst::pr::transport_id` encodes as an SRP TransportID.
pub fn initiator_name(port_id: &[u8; 16]) -> String {
    let mut s = String::with_capacity(34);
    s.push_str("0x");
    for b in port_id {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The outcome of a login.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Accept the connection with this response as private data, then drive the channel.
    Accept {
        /// The new channel.
        channel: Box<Channel>,
        /// SRP_LOGIN_RSP.
        rsp: [u8; iu::LOGIN_RSP_LEN],
    },
    /// Reject the connection with this SRP_LOGIN_REJ as private data.
    Reject([u8; iu::LOGIN_REJ_LEN]),
}

type NexusKey = ([u8; 16], [u8; 16]);

/// One I_T nexus: its core session and channels. It is the session's [`TargetDriver`] and
/// routes completions to the channel that received the command.
pub(crate) struct Nexus {
    key: NexusKey,
    pub(crate) channels: Mutex<Vec<Arc<ChannelShared>>>,
    /// Which channel issued each task management function still running.
    pub(crate) tm_owner: Mutex<HashMap<u64, u32>>,
}

impl Nexus {
    fn channel(&self, id: u32) -> Option<Arc<ChannelShared>> {
        self.channels.lock().iter().find(|c| c.id == id).cloned()
    }

    /// Has every channel send SRP_T_LOGOUT with `reason` and disconnect; whether there was one.
    fn terminate(&self, reason: u32) -> bool {
        let channels = self.channels.lock().clone();
        for c in &channels {
            c.push_terminate(reason);
        }
        !channels.is_empty()
    }
}

impl TargetDriver for Nexus {
    fn xmit_response(&self, cmd: CmdBox) {
        let id = (cmd.fabric_cookie >> 32) as u32;
        // A command of a channel that is gone is dropped (freed) here.
        if let Some(c) = self.channel(id) {
            c.push_done(cmd);
        }
    }

    fn tm_done(&self, rsp: TmResponse) {
        let owner = self.tm_owner.lock().remove(&rsp.tag);
        if let Some(c) = owner.and_then(|id| self.channel(id)) {
            c.push_tm(rsp);
        }
    }

    /// Nothing to do: a command waits for its data here only while its RDMA READ is posted,
    /// and its buffer may not be freed before that completes. [`Channel::rdma_done`] finds it
    /// aborted and drops it (or answers TASK ABORTED), which completes the function.
    fn abort_pending(&self, tag: u64) {
        let _ = tag;
    }

    fn parameters(&self) -> Vec<(String, String)> {
        vec![("Channels".to_string(), self.channels.lock().len().to_string())]
    }

    /// Every channel of the nexus sends SRP_T_LOGOUT (no reason given) and disconnects.
    fn close_session(&self) -> bool {
        self.terminate(iu::logout_reason::NO_REASON)
    }
}

struct NexusEntry {
    nexus: Arc<Nexus>,
    session: Arc<Session>,
}

/// An SRP target port in front of a [`Target`].
pub struct SrpPort {
    target: Arc<Target>,
    cfg: PortConfig,
    port: Arc<TargetPort>,
    nexuses: Mutex<HashMap<NexusKey, NexusEntry>>,
}

impl std::fmt::Debug for SrpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrpPort").field("target", &self.target.name()).finish_non_exhaustive()
    }
}

static NEXT_CHANNEL: AtomicU32 = AtomicU32::new(1);

impl SrpPort {
    /// A port serving `target`.
    pub fn new(target: Arc<Target>, cfg: PortConfig) -> Arc<Self> {
        let tpid = cfg.target_port_id();
        let port = Arc::new(TargetPort {
            protocol: ProtocolId::SRP,
            rel_port_id: cfg.rel_port_id,
            name: initiator_name(&tpid),
            version_descriptor: 0x0940,
            tpg_id: cfg.tpg_id,
        });
        Arc::new(Self { target, cfg, port, nexuses: Mutex::new(HashMap::new()) })
    }

    /// The configuration.
    pub fn config(&self) -> &PortConfig {
        &self.cfg
    }

    /// The target.
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// Live I_T nexuses.
    pub fn nexus_count(&self) -> usize {
        self.nexuses.lock().len()
    }

    /// Handles a login: `private_data` is the connect request's private data (either login
    /// request layout, see [`LoginReq::parse_any`]).
    ///
    /// Driver contract: before sending an accepting response, post
    /// [`PortConfig::queue_depth`] receive buffers of [`PortConfig::max_it_iu_len`] bytes on
    /// the new queue pair; the response grants credits for all but one of them. `wake` is
    /// called (from any thread, never blocking) when the channel has work for
    /// [`Channel::poll`].
    pub fn login(self: &Arc<Self>, private_data: &[u8], wake: Wake) -> LoginOutcome {
        let sup = buf_fmt::DIRECT | buf_fmt::INDIRECT;
        let Ok(req) = LoginReq::parse_any(private_data) else {
            let tag = private_data.get(..8).map_or(0, |t| {
                let mut a = [0u8; 8];
                a.copy_from_slice(t);
                u64::from_be_bytes(a)
            });
            return self.reject(tag, RejectReason::UNABLE_TO_ESTABLISH);
        };
        let reject = |r: RejectReason| self.reject(req.tag, r);
        if req.target_port_id != self.cfg.target_port_id() {
            tracing::info!("SRP login for another target port refused");
            return reject(RejectReason::UNABLE_TO_ASSOCIATE);
        }
        if req.req_it_iu_len > self.cfg.max_it_iu_len {
            return reject(RejectReason::IU_LENGTH_TOO_LARGE);
        }
        if (req.req_it_iu_len as usize) < iu::CMD_LEN + iu::DIRECT_DESC_LEN {
            return reject(RejectReason::UNABLE_TO_ESTABLISH);
        }
        if req.req_buf_fmt & sup == 0 || req.req_buf_fmt & !sup != 0 {
            return reject(RejectReason::UNSUPPORTED_DESCRIPTOR_FORMAT);
        }
        let name = initiator_name(&req.initiator_port_id);
        if !self.target.admits(&name) {
            tracing::info!(initiator = %name, "SRP login refused by the access control");
            return reject(RejectReason::UNABLE_TO_ESTABLISH);
        }
        let multi = req.req_flags & req_flags::MULTICHANNEL_MASK == req_flags::MULTI;
        let key = (req.initiator_port_id, req.target_port_id);
        let depth = self.cfg.queue_depth.max(3);
        let mut map = self.nexuses.lock();
        let mut flags = rsp_flags::NO_CHANNEL;
        let mut terminated = None;
        if let Some(e) = map.get(&key) {
            if multi {
                if e.nexus.channels.lock().len() >= self.cfg.max_channels {
                    return reject(RejectReason::CHANNEL_LIMIT_REACHED);
                }
                flags = rsp_flags::MAINTAINED;
            } else {
                terminated = map.remove(&key);
                flags = rsp_flags::TERMINATED;
            }
        }
        let entry = map.entry(key).or_insert_with(|| {
            let nexus = Arc::new(Nexus { key, channels: Mutex::new(Vec::new()), tm_owner: Mutex::new(HashMap::new()) });
            let cfg = SessionConfig {
                initiator_name: name.clone(),
                initiator_port: name.clone(),
                port: self.port.clone(),
                depth: depth as usize * self.cfg.max_channels.max(1),
            };
            let session = self.target.register_session(cfg, nexus.clone());
            NexusEntry { nexus, session }
        });
        // SRP-2 immediate data: the data offset must leave room for SRP_CMD and its 4-byte
        // descriptor, and lie inside the IU.
        let imm_offset = (self.cfg.immediate_data
            && req.req_flags & req_flags::IMMED_REQUESTED != 0
            && usize::from(req.imm_data_offset) >= iu::CMD_LEN + iu::IMM_DESC_LEN
            && u32::from(req.imm_data_offset) < req.req_it_iu_len)
            .then_some(req.imm_data_offset);
        if imm_offset.is_some() {
            flags |= rsp_flags::IMMED_SUPPORTED;
        }
        let id = NEXT_CHANNEL.fetch_add(1, Relaxed);
        let shared = ChannelShared::new(id, wake);
        entry.nexus.channels.lock().push(shared.clone());
        let channel = Channel::new(
            self.clone(),
            entry.nexus.clone(),
            entry.session.clone(),
            shared,
            Limits {
                depth,
                max_it_iu_len: req.req_it_iu_len,
                max_ti_iu_len: self.cfg.max_ti_iu_len,
                max_data_len: self.cfg.max_data_len,
                imm_offset,
            },
        );
        drop(map);
        if let Some(old) = terminated {
            // Single-channel login: the nexus's channels log out; the old session ends.
            old.nexus.terminate(iu::logout_reason::MULTICHANNEL_ACTION);
            old.session.close();
        }
        tracing::info!(initiator = %name, channel = id, multi, flags, "SRP login accepted");
        let rsp = LoginRsp {
            req_lim_delta: depth - 1,
            tag: req.tag,
            max_it_iu_len: req.req_it_iu_len,
            max_ti_iu_len: self.cfg.max_ti_iu_len,
            sup_buf_fmt: sup,
            rsp_flags: flags,
        }
        .build();
        LoginOutcome::Accept { channel: Box::new(channel), rsp }
    }

    fn reject(&self, tag: u64, reason: RejectReason) -> LoginOutcome {
        LoginOutcome::Reject(LoginRej { reason, tag, sup_buf_fmt: buf_fmt::DIRECT | buf_fmt::INDIRECT }.build())
    }

    /// A channel ended: forget it, and the nexus with its session once no channel is left.
    pub(crate) fn channel_closed(&self, nexus: &Arc<Nexus>, id: u32) {
        let last = {
            let mut chans = nexus.channels.lock();
            chans.retain(|c| c.id != id);
            chans.is_empty()
        };
        if last {
            let mut map = self.nexuses.lock();
            let ours = map.get(&nexus.key).is_some_and(|e| Arc::ptr_eq(&e.nexus, nexus));
            if ours && let Some(e) = map.remove(&nexus.key) {
                drop(map);
                e.session.close();
            }
        }
    }
}
