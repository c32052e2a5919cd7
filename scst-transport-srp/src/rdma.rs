//! The verbs/RDMA-CM driver (feature `rdma`): listens on an RDMA/CM port, answers connect
//! requests with the login response or rejection in the CM private data, and runs each
//! accepted channel's [`Channel`] on an RC queue pair.
//!
//! Bindings: a small C shim (`csrc/verbs_shim.c`, compiled by `build.rs` against the installed
//! rdma-core headers) wraps the static inline verbs (`ibv_post_send`, `ibv_post_recv`,
//! `ibv_poll_cq`, `ibv_req_notify_cq`) and the librdmacm calls; it exposes scalars and opaque
//! pointers only, so no verbs structure layout is restated in Rust.
//!
//! Threads: one CM thread per listener (connect requests, disconnects), one thread per
//! connection (its completion channel and the channel's wake eventfd, polled together).
//!
//! Memory: per connection, receive buffers, send buffers and a set of transfer ("bounce")
//! buffers are allocated and registered once. RDMA READ lands in a bounce buffer and is copied
//! into the command's SGV buffer; Data-In is copied from the command into a bounce buffer and
//! RDMA-written from there. The core's SGV pool has no hook to register its chunks as memory
//! regions, so RDMA straight into command buffers would need per-command registration; one
//! copy per transfer is the price of never registering per command.

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_int, c_void};
use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::channel::{Action, Channel, XferId};
use crate::iu::DirectDesc;
use crate::port::{LoginOutcome, SrpPort};

#[allow(non_camel_case_types, missing_docs, unreachable_pub)]
mod ffi {
    use std::ffi::{c_int, c_void};

    pub type ec = c_void;
    pub type id = c_void;

    #[repr(C)]
    pub struct ShimEvent {
        pub ev: *mut c_void,
        pub id: *mut id,
        pub kind: c_int,
        pub status: c_int,
        pub private_data: *const u8,
        pub private_data_len: u32,
        pub responder_resources: u8,
        pub initiator_depth: u8,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    pub struct ShimWc {
        pub wr_id: u64,
        pub status: u32,
        pub opcode: u32,
        pub byte_len: u32,
    }

    #[link(name = "rdmacm")]
    #[link(name = "ibverbs")]
    unsafe extern "C" {
        pub fn srp_shim_create_channel() -> *mut ec;
        pub fn srp_shim_channel_fd(ch: *mut ec) -> c_int;
        pub fn srp_shim_listen(ch: *mut ec, ipv4_be: u32, port: u16, backlog: c_int) -> *mut id;
        pub fn srp_shim_get_event(ch: *mut ec, out: *mut ShimEvent) -> c_int;
        pub fn srp_shim_ack_event(e: *mut ShimEvent);
        pub fn srp_shim_event_connect_request() -> c_int;
        pub fn srp_shim_event_established() -> c_int;
        pub fn srp_shim_event_disconnected() -> c_int;
        pub fn srp_shim_event_timewait_exit() -> c_int;
        pub fn srp_shim_id_verbs(id: *mut id) -> *mut c_void;
        pub fn srp_shim_id_qp(id: *mut id) -> *mut c_void;
        pub fn srp_shim_query_device(ctx: *mut c_void, max_sge: *mut u32, max_rd: *mut u32, max_wr: *mut u32) -> c_int;
        pub fn srp_shim_create_qp(
            id: *mut id,
            pd: *mut c_void,
            cq: *mut c_void,
            send_wr: u32,
            recv_wr: u32,
            send_sge: u32,
        ) -> c_int;
        pub fn srp_shim_accept(id: *mut id, data: *const u8, len: u8, resp_res: u8, init_depth: u8) -> c_int;
        pub fn srp_shim_reject(id: *mut id, data: *const u8, len: u8) -> c_int;
        pub fn srp_shim_disconnect(id: *mut id) -> c_int;
        pub fn srp_shim_destroy_qp(id: *mut id);
        pub fn srp_shim_destroy_id(id: *mut id) -> c_int;
        pub fn srp_shim_alloc_pd(ctx: *mut c_void) -> *mut c_void;
        pub fn srp_shim_dealloc_pd(pd: *mut c_void) -> c_int;
        pub fn srp_shim_create_comp_channel(ctx: *mut c_void) -> *mut c_void;
        pub fn srp_shim_comp_channel_fd(c: *mut c_void) -> c_int;
        pub fn srp_shim_destroy_comp_channel(c: *mut c_void) -> c_int;
        pub fn srp_shim_create_cq(ctx: *mut c_void, cqe: c_int, ch: *mut c_void) -> *mut c_void;
        pub fn srp_shim_destroy_cq(cq: *mut c_void) -> c_int;
        pub fn srp_shim_req_notify_cq(cq: *mut c_void) -> c_int;
        pub fn srp_shim_get_cq_event(ch: *mut c_void) -> c_int;
        pub fn srp_shim_reg_mr(pd: *mut c_void, addr: *mut c_void, len: usize) -> *mut c_void;
        pub fn srp_shim_mr_lkey(mr: *mut c_void) -> u32;
        pub fn srp_shim_dereg_mr(mr: *mut c_void) -> c_int;
        pub fn srp_shim_poll_cq(cq: *mut c_void, out: *mut ShimWc, n: c_int) -> c_int;
        pub fn srp_shim_post_recv(qp: *mut c_void, wr_id: u64, addr: *mut c_void, len: u32, lkey: u32) -> c_int;
        pub fn srp_shim_post_send(
            qp: *mut c_void,
            wr_id: u64,
            addr: *mut c_void,
            len: u32,
            lkey: u32,
            solicited: c_int,
        ) -> c_int;
        pub fn srp_shim_post_rdma(
            qp: *mut c_void,
            wr_id: u64,
            read: c_int,
            addr: *mut c_void,
            len: u32,
            lkey: u32,
            remote_addr: u64,
            rkey: u32,
        ) -> c_int;
    }
}

/// Settings of the RDMA driver.
#[derive(Clone, Debug)]
pub struct RdmaConfig {
    /// Address and port to listen on (RDMA/CM, IPv4).
    pub listen: SocketAddrV4,
    /// Largest data transfer of one command (the size of each bounce buffer); the port's
    /// `PortConfig::max_data_len` must not exceed it. Linux's ib_srp sends at most 512 KiB per
    /// command by default (`max_sect=1024`).
    pub max_transfer: usize,
    /// Bounce buffers per connection (transfers in flight at once).
    pub transfers: usize,
}

impl RdmaConfig {
    /// Defaults for `listen`: 1 MiB transfers, 16 at a time per connection.
    pub fn new(listen: SocketAddrV4) -> Self {
        Self { listen, max_transfer: 1 << 20, transfers: 16 }
    }
}

/// A pointer the CM thread and a connection thread both hold. The librdmacm and verbs objects
/// behind it are thread-safe; only their lifetime needs care, which the owners below manage.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Ptr(*mut c_void);
// SAFETY: rdma-core objects may be used from any thread; lifetimes are managed explicitly.
unsafe impl Send for Ptr {}
// SAFETY: as above.
unsafe impl Sync for Ptr {}

/// A registered, heap-allocated buffer that never moves.
struct Arena {
    buf: Box<[u8]>,
    mr: Ptr,
    lkey: u32,
}

impl Arena {
    fn new(pd: Ptr, len: usize) -> io::Result<Self> {
        let mut buf = vec![0u8; len.max(1)].into_boxed_slice();
        // SAFETY: `buf` is a live allocation of `buf.len()` bytes that outlives the MR (dropped
        // after `dereg_mr` in `Drop`); the boxed slice never moves.
        let mr = unsafe { ffi::srp_shim_reg_mr(pd.0, buf.as_mut_ptr().cast(), buf.len()) };
        if mr.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `mr` is a valid MR just returned by ibv_reg_mr.
        let lkey = unsafe { ffi::srp_shim_mr_lkey(mr) };
        Ok(Self { buf, mr: Ptr(mr), lkey })
    }

    fn ptr(&mut self, off: usize) -> *mut c_void {
        self.buf[off..].as_mut_ptr().cast()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        if self.mr.0.is_null() {
            return;
        }
        // SAFETY: the MR was registered by `Arena::new` and is deregistered once; the QP that
        // could use it is destroyed before any arena is dropped (`Conn`'s `Drop`).
        unsafe { ffi::srp_shim_dereg_mr(self.mr.0) };
    }
}

/// Work request ids: kind in the top byte, index below.
const WR_RECV: u64 = 1 << 56;
const WR_SEND: u64 = 2 << 56;
const WR_RDMA: u64 = 3 << 56;

fn eventfd() -> io::Result<c_int> {
    // SAFETY: plain syscall; no pointers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 { Err(io::Error::last_os_error()) } else { Ok(fd) }
}

fn signal(fd: c_int) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd this process owns.
    unsafe { libc::write(fd, (&raw const one).cast(), 8) };
}

fn drain_fd(fd: c_int) {
    let mut v: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live u64 from a non-blocking eventfd.
    unsafe { libc::read(fd, (&raw mut v).cast(), 8) };
}

fn set_nonblocking(fd: c_int) {
    // SAFETY: fcntl on a file descriptor we own; no pointers.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Waits until one of `fds` is readable or `ms` pass; returns which were readable.
fn wait(fds: &[c_int], ms: c_int) -> Vec<bool> {
    let mut p: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: `p` is a live array of `p.len()` pollfd structures.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
    if n <= 0 {
        return vec![false; fds.len()];
    }
    p.iter().map(|x| x.revents != 0).collect()
}

/// What the CM thread and a connection thread share.
struct ConnCtl {
    disconnected: AtomicBool,
    efd: c_int,
}

impl Drop for ConnCtl {
    fn drop(&mut self) {
        // SAFETY: closes the eventfd this struct owns, once.
        unsafe { libc::close(self.efd) };
    }
}

/// A running SRP target over RDMA/CM.
pub struct SrpRdmaServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SrpRdmaServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrpRdmaServer").finish_non_exhaustive()
    }
}

impl SrpRdmaServer {
    /// Listens on `cfg.listen` and serves `port`'s logins until [`SrpRdmaServer::shutdown`].
    ///
    /// # Errors
    /// The event channel or the listener could not be created (no RDMA device with that
    /// address, port in use).
    pub fn start(port: Arc<SrpPort>, cfg: RdmaConfig) -> io::Result<Self> {
        // SAFETY: creates an event channel; NULL is checked.
        let ec = unsafe { ffi::srp_shim_create_channel() };
        if ec.is_null() {
            return Err(io::Error::last_os_error());
        }
        let ip = u32::from_ne_bytes(cfg.listen.ip().octets());
        // SAFETY: `ec` is a live event channel; NULL is checked.
        let lid = unsafe { ffi::srp_shim_listen(ec, ip, cfg.listen.port(), 64) };
        if lid.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ec` is live.
        let fd = unsafe { ffi::srp_shim_channel_fd(ec) };
        set_nonblocking(fd);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let (ec, lid) = (Ptr(ec), Ptr(lid));
        let thread =
            std::thread::Builder::new().name("srp-cm".into()).spawn(move || cm_loop(&port, &cfg, ec, lid, fd, &s))?;
        Ok(Self { stop, thread: Some(thread) })
    }

    /// Stops accepting logins and disconnects every channel.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SrpRdmaServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Live {
    ctl: Arc<ConnCtl>,
    thread: JoinHandle<()>,
}

fn cm_loop(port: &Arc<SrpPort>, cfg: &RdmaConfig, ec: Ptr, lid: Ptr, fd: c_int, stop: &AtomicBool) {
    let mut conns: HashMap<Ptr, Live> = HashMap::new();
    let (req, disc, est, tw) = {
        // SAFETY: constant getters.
        unsafe {
            (
                ffi::srp_shim_event_connect_request(),
                ffi::srp_shim_event_disconnected(),
                ffi::srp_shim_event_established(),
                ffi::srp_shim_event_timewait_exit(),
            )
        }
    };
    let mut stopping_since: Option<Instant> = None;
    loop {
        if stop.load(Relaxed) && stopping_since.is_none() {
            stopping_since = Some(Instant::now());
            for (id, l) in &conns {
                l.ctl.disconnected.store(true, Relaxed);
                signal(l.ctl.efd);
                // SAFETY: `id` is a connected id of ours, not yet destroyed.
                unsafe { ffi::srp_shim_disconnect(id.0) };
            }
        }
        // Connection threads that ended: their ids can go now.
        let ended: Vec<Ptr> = conns.iter().filter(|(_, l)| l.thread.is_finished()).map(|(k, _)| *k).collect();
        for id in ended {
            if let Some(l) = conns.remove(&id) {
                let _ = l.thread.join();
                // SAFETY: the connection thread destroyed the QP and is gone; the CM thread
                // holds no unacknowledged event of this id.
                unsafe { ffi::srp_shim_destroy_id(id.0) };
            }
        }
        if let Some(t) = stopping_since
            && (conns.is_empty() || t.elapsed() > Duration::from_secs(5))
        {
            break;
        }
        if !wait(&[fd], 100)[0] {
            continue;
        }
        let mut ev = ffi::ShimEvent {
            ev: std::ptr::null_mut(),
            id: std::ptr::null_mut(),
            kind: -1,
            status: 0,
            private_data: std::ptr::null(),
            private_data_len: 0,
            responder_resources: 0,
            initiator_depth: 0,
        };
        // SAFETY: `ec` is live; `ev` is a valid out-structure.
        if unsafe { ffi::srp_shim_get_event(ec.0, &raw mut ev) } != 0 {
            continue;
        }
        let id = Ptr(ev.id);
        let mut destroy_id = false;
        if ev.kind == req {
            let pd: &[u8] = if ev.private_data.is_null() {
                &[]
            } else {
                // SAFETY: librdmacm keeps the private data valid until the event is acked.
                unsafe { std::slice::from_raw_parts(ev.private_data, ev.private_data_len as usize) }
            };
            let private = pd.to_vec();
            match accept(port, cfg, id, &private, ev.responder_resources, stopping_since.is_some()) {
                Some(l) => {
                    conns.insert(id, l);
                }
                None => destroy_id = true,
            }
        } else if ev.kind == disc || ev.kind == tw {
            if let Some(l) = conns.get(&id) {
                l.ctl.disconnected.store(true, Relaxed);
                signal(l.ctl.efd);
            }
        } else if ev.kind != est {
            tracing::debug!(kind = ev.kind, status = ev.status, "RDMA/CM event");
            if let Some(l) = conns.get(&id) {
                // Connect errors, unreachable, rejected, device removal: the channel is gone.
                l.ctl.disconnected.store(true, Relaxed);
                signal(l.ctl.efd);
            }
        }
        // SAFETY: acknowledges the event obtained above, once.
        unsafe { ffi::srp_shim_ack_event(&raw mut ev) };
        if destroy_id {
            // SAFETY: a rejected connect request's id, its event acknowledged.
            unsafe { ffi::srp_shim_destroy_id(id.0) };
        }
    }
    for (id, l) in conns.drain() {
        l.ctl.disconnected.store(true, Relaxed);
        signal(l.ctl.efd);
        let _ = l.thread.join();
        // SAFETY: as for ended connections above.
        unsafe { ffi::srp_shim_destroy_id(id.0) };
    }
    // SAFETY: the listener id is ours and no connection uses it any more.
    unsafe { ffi::srp_shim_destroy_id(lid.0) };
}

fn reject(id: Ptr, rej: &[u8]) {
    // SAFETY: `id` is a connect request's id; `rej` is a live buffer of its length (32 bytes).
    unsafe { ffi::srp_shim_reject(id.0, rej.as_ptr(), rej.len() as u8) };
}

/// Logs in, builds the connection's resources, accepts and starts its thread. `None`: rejected
/// (the id is to be destroyed).
fn accept(
    port: &Arc<SrpPort>,
    cfg: &RdmaConfig,
    id: Ptr,
    private: &[u8],
    responder_resources: u8,
    stopping: bool,
) -> Option<Live> {
    let Ok(efd) = eventfd() else {
        reject(id, &[]);
        return None;
    };
    let ctl = Arc::new(ConnCtl { disconnected: AtomicBool::new(false), efd });
    if stopping {
        reject(id, &[]);
        return None;
    }
    let c2 = ctl.clone();
    let wake: crate::Wake = Arc::new(move || signal(c2.efd));
    let (channel, rsp) = match port.login(private, wake) {
        LoginOutcome::Accept { channel, rsp } => (channel, rsp),
        LoginOutcome::Reject(rej) => {
            reject(id, &rej);
            return None;
        }
    };
    let depth = port.config().queue_depth.max(3);
    let conn = match Conn::new(id, cfg, depth, channel, ctl.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "SRP channel resources");
            let rej = crate::iu::LoginRej {
                reason: crate::iu::RejectReason::INSUFFICIENT_RESOURCES,
                tag: crate::iu::LoginReq::parse_any(private).map_or(0, |r| r.tag),
                sup_buf_fmt: crate::iu::buf_fmt::DIRECT | crate::iu::buf_fmt::INDIRECT,
            }
            .build();
            reject(id, &rej);
            return None;
        }
    };
    let init_depth = responder_resources.min(conn.max_reads as u8).max(1);
    // SAFETY: `id` has its QP; `rsp` is a live 52-byte buffer.
    let r = unsafe { ffi::srp_shim_accept(id.0, rsp.as_ptr(), rsp.len() as u8, 0, init_depth) };
    if r != 0 {
        tracing::warn!(error = r, "rdma_accept");
        drop(conn);
        return None;
    }
    let mut conn = conn;
    conn.max_reads = usize::from(init_depth);
    let thread = std::thread::Builder::new().name("srp-conn".into()).spawn(move || conn.run()).ok()?;
    Some(Live { ctl, thread })
}

/// One transfer in flight: its bounce buffer and how many work requests are outstanding.
struct Transfer {
    bounce: usize,
    remaining: u32,
    failed: bool,
    kind: Kind,
}

/// What a transfer moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// WRITE data from the initiator into the command buffer.
    Read,
    /// Data-In from the command buffer to the initiator.
    Write,
    /// An external descriptor table into the channel.
    Table,
}

/// One accepted connection and its verbs resources. Field order is drop order: the QP goes
/// (in `Drop`) before the arenas are deregistered.
struct Conn {
    id: Ptr,
    qp: Ptr,
    cq: Ptr,
    comp: Ptr,
    pd: Ptr,
    comp_fd: c_int,
    ctl: Arc<ConnCtl>,
    channel: Box<Channel>,
    recv: Arena,
    recv_len: usize,
    recv_posted: usize,
    send: Arena,
    send_len: usize,
    send_free: Vec<usize>,
    send_ids: Vec<u64>,
    bounce: Arena,
    bounce_len: usize,
    bounce_free: Vec<usize>,
    transfers: HashMap<u32, Transfer>,
    pending: VecDeque<Action>,
    sq_size: usize,
    sq_used: usize,
    max_reads: usize,
    disconnect_sent: bool,
}

impl Conn {
    fn new(id: Ptr, cfg: &RdmaConfig, depth: u32, channel: Box<Channel>, ctl: Arc<ConnCtl>) -> io::Result<Self> {
        let err = |what: &str| io::Error::other(format!("{what}: {}", io::Error::last_os_error()));
        // SAFETY: `id` is a connect request id bound to a device.
        let ctx = unsafe { ffi::srp_shim_id_verbs(id.0) };
        if ctx.is_null() {
            return Err(err("no verbs context"));
        }
        let (mut max_sge, mut max_rd, mut max_wr) = (0u32, 0u32, 0u32);
        // SAFETY: `ctx` is live; the out-pointers are to live locals.
        let r = unsafe { ffi::srp_shim_query_device(ctx, &raw mut max_sge, &raw mut max_rd, &raw mut max_wr) };
        if r != 0 {
            return Err(err("ibv_query_device"));
        }
        let depth = depth as usize;
        let sq_size = (depth * 4).min(max_wr as usize).max(16);
        // SAFETY: `ctx` is live; results are checked and freed in `Drop`.
        let pd = unsafe { ffi::srp_shim_alloc_pd(ctx) };
        if pd.is_null() {
            return Err(err("ibv_alloc_pd"));
        }
        let mut conn_pd = PdGuard(Ptr(pd));
        // SAFETY: as above.
        let comp = unsafe { ffi::srp_shim_create_comp_channel(ctx) };
        if comp.is_null() {
            return Err(err("ibv_create_comp_channel"));
        }
        let comp = CompGuard(Ptr(comp));
        // SAFETY: as above; the CQ holds every receive and send completion.
        let cq = unsafe { ffi::srp_shim_create_cq(ctx, (depth + sq_size) as c_int, comp.0.0) };
        if cq.is_null() {
            return Err(err("ibv_create_cq"));
        }
        let cq = CqGuard(Ptr(cq));
        // SAFETY: `id`, `pd` and `cq` are live; the QP becomes the id's.
        let r = unsafe { ffi::srp_shim_create_qp(id.0, pd, cq.0.0, sq_size as u32, depth as u32, 1) };
        if r != 0 {
            return Err(err("rdma_create_qp"));
        }
        // SAFETY: the QP was just created on `id`.
        let qp = Ptr(unsafe { ffi::srp_shim_id_qp(id.0) });
        let recv_len = channel.max_it_iu_len() as usize;
        let send_len = channel.max_ti_iu_len().max(64) as usize;
        let n_send = sq_size;
        let built = (|| -> io::Result<(Arena, Arena, Arena)> {
            Ok((
                Arena::new(conn_pd.0, recv_len * depth)?,
                Arena::new(conn_pd.0, send_len * n_send)?,
                Arena::new(conn_pd.0, cfg.max_transfer * cfg.transfers.max(1))?,
            ))
        })();
        let (recv, send, bounce) = match built {
            Ok(a) => a,
            Err(e) => {
                // SAFETY: the QP was created on `id` above and nothing was posted to it.
                unsafe { ffi::srp_shim_destroy_qp(id.0) };
                return Err(e);
            }
        };
        // SAFETY: `comp` is a live completion channel.
        let comp_fd = unsafe { ffi::srp_shim_comp_channel_fd(comp.0.0) };
        set_nonblocking(comp_fd);
        let mut c = Self {
            id,
            qp,
            cq: cq.take(),
            comp: comp.take(),
            pd: conn_pd.take(),
            comp_fd,
            ctl,
            channel,
            recv,
            recv_len,
            recv_posted: 0,
            send,
            send_len,
            send_free: (0..n_send).rev().collect(),
            send_ids: vec![0; n_send],
            bounce,
            bounce_len: cfg.max_transfer,
            bounce_free: (0..cfg.transfers.max(1)).rev().collect(),
            transfers: HashMap::new(),
            pending: VecDeque::new(),
            sq_size,
            sq_used: 0,
            max_reads: (max_rd as usize).max(1),
            disconnect_sent: false,
        };
        for i in 0..depth {
            c.post_recv(i)?;
        }
        // SAFETY: `cq` is live.
        unsafe { ffi::srp_shim_req_notify_cq(c.cq.0) };
        Ok(c)
    }

    fn post_recv(&mut self, i: usize) -> io::Result<()> {
        let (len, lkey) = (self.recv_len, self.recv.lkey);
        let addr = self.recv.ptr(i * len);
        // SAFETY: `addr..addr+len` lies in the registered receive arena, which outlives the QP.
        let r = unsafe { ffi::srp_shim_post_recv(self.qp.0, WR_RECV | i as u64, addr, len as u32, lkey) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        self.recv_posted += 1;
        Ok(())
    }

    fn run(mut self) {
        let mut wcs = [ffi::ShimWc::default(); 16];
        let mut down_since: Option<Instant> = None;
        loop {
            let down = self.ctl.disconnected.load(Relaxed);
            if down && down_since.is_none() {
                down_since = Some(Instant::now());
                if !self.disconnect_sent {
                    // Moves the QP to the error state: posted work requests come back flushed.
                    self.disconnect_sent = true;
                    // SAFETY: `id` is our connected id, not yet destroyed.
                    unsafe { ffi::srp_shim_disconnect(self.id.0) };
                }
            }
            // Completions.
            loop {
                // SAFETY: `cq` is live; `wcs` holds 16 entries.
                let n = unsafe { ffi::srp_shim_poll_cq(self.cq.0, wcs.as_mut_ptr(), 16) };
                if n <= 0 {
                    break;
                }
                for wc in &wcs[..n as usize] {
                    self.completion(*wc);
                }
            }
            if !down {
                self.drive();
            }
            // Gone: once the flushed work requests are back (or after a grace period), free.
            if let Some(t) = down_since
                && ((self.sq_used == 0 && self.recv_posted == 0) || t.elapsed() > Duration::from_secs(2))
            {
                break;
            }
            let ready = wait(&[self.comp_fd, self.ctl.efd], 100);
            if ready[0] {
                // SAFETY: the fd polled readable: one event is there to take.
                unsafe { ffi::srp_shim_get_cq_event(self.comp.0) };
                // SAFETY: `cq` is live.
                unsafe { ffi::srp_shim_req_notify_cq(self.cq.0) };
            }
            if ready[1] {
                drain_fd(self.ctl.efd);
            }
        }
        // SAFETY: the QP belongs to `id`; destroying it stops all DMA into our arenas before
        // they (and the command buffers) are freed.
        unsafe { ffi::srp_shim_destroy_qp(self.id.0) };
        self.qp = Ptr(std::ptr::null_mut());
        self.channel.close();
    }

    fn completion(&mut self, wc: ffi::ShimWc) {
        let ok = wc.status == 0;
        let idx = (wc.wr_id & ((1 << 56) - 1)) as usize;
        match wc.wr_id & (0xff << 56) {
            WR_RECV => {
                self.recv_posted -= 1;
                if !ok {
                    return;
                }
                let len = (wc.byte_len as usize).min(self.recv_len);
                let off = idx * self.recv_len;
                if let Err(e) = self.channel.receive(&self.recv.buf[off..off + len]) {
                    tracing::debug!(error = %e, "SRP IU");
                }
                if !self.ctl.disconnected.load(Relaxed) && self.post_recv(idx).is_ok() {
                    self.channel.recv_reposted();
                }
            }
            WR_SEND => {
                self.sq_used -= 1;
                self.send_free.push(idx);
                self.channel.send_done(self.send_ids[idx], ok);
            }
            WR_RDMA => {
                self.sq_used -= 1;
                let x = idx as u32;
                let Some(t) = self.transfers.get_mut(&x) else { return };
                t.remaining -= 1;
                t.failed |= !ok;
                if t.remaining > 0 {
                    return;
                }
                let t = self.transfers.remove(&x).expect("transfer present");
                let off = t.bounce * self.bounce_len;
                let src = &self.bounce.buf[off..off + self.bounce_len];
                match t.kind {
                    Kind::Read if !t.failed => {
                        if let Some(buf) = self.channel.xfer_buf_mut(XferId(x)) {
                            let n = buf.len().min(src.len());
                            buf.write_at(0, &src[..n]);
                        }
                    }
                    Kind::Table if !t.failed => {
                        if let Some(dst) = self.channel.table_buf_mut(XferId(x)) {
                            let n = dst.len().min(src.len());
                            dst[..n].copy_from_slice(&src[..n]);
                        }
                    }
                    _ => {}
                }
                self.bounce_free.push(t.bounce);
                self.channel.rdma_done(XferId(x), !t.failed);
            }
            _ => {}
        }
    }

    /// Posts what the channel asks, in order, as far as queue space allows.
    fn drive(&mut self) {
        loop {
            let a = match self.pending.pop_front() {
                Some(a) => a,
                None => match self.channel.poll() {
                    Some(a) => a,
                    None => return,
                },
            };
            if let Err(a) = self.post(a) {
                self.pending.push_front(a);
                return;
            }
        }
    }

    /// Posts one action, or hands it back when the send queue, the RDMA READ limit or the
    /// bounce buffers are exhausted.
    fn post(&mut self, a: Action) -> Result<(), Action> {
        match a {
            Action::Send { id, bytes, solicited } => {
                if self.sq_used >= self.sq_size {
                    return Err(Action::Send { id, bytes, solicited });
                }
                let Some(slot) = self.send_free.pop() else {
                    return Err(Action::Send { id, bytes, solicited });
                };
                let n = bytes.len().min(self.send_len);
                let off = slot * self.send_len;
                self.send.buf[off..off + n].copy_from_slice(&bytes[..n]);
                self.send_ids[slot] = id;
                let (lkey, addr) = (self.send.lkey, self.send.ptr(off));
                // SAFETY: `addr..addr+n` lies in the registered send arena, which outlives the QP.
                let r = unsafe {
                    ffi::srp_shim_post_send(
                        self.qp.0,
                        WR_SEND | slot as u64,
                        addr,
                        n as u32,
                        lkey,
                        c_int::from(solicited),
                    )
                };
                if r != 0 {
                    self.send_free.push(slot);
                    self.channel.send_done(id, false);
                } else {
                    self.sq_used += 1;
                }
                Ok(())
            }
            Action::RdmaRead { xfer, remote, len } => self.post_rdma(xfer, remote, len, Kind::Read),
            Action::RdmaWrite { xfer, remote, len } => self.post_rdma(xfer, remote, len, Kind::Write),
            Action::FetchTable { xfer, remote, len } => self.post_rdma(xfer, vec![remote], len, Kind::Table),
            Action::Disconnect => {
                if !self.disconnect_sent {
                    self.disconnect_sent = true;
                    // SAFETY: `id` is our connected id.
                    unsafe { ffi::srp_shim_disconnect(self.id.0) };
                }
                Ok(())
            }
        }
    }

    fn post_rdma(&mut self, xfer: XferId, mut remote: Vec<DirectDesc>, len: u32, kind: Kind) -> Result<(), Action> {
        let read = kind != Kind::Write;
        let back = |mut remote: Vec<DirectDesc>| match kind {
            Kind::Read => Action::RdmaRead { xfer, remote, len },
            Kind::Write => Action::RdmaWrite { xfer, remote, len },
            Kind::Table => Action::FetchTable { xfer, remote: remote.swap_remove(0), len },
        };
        if kind == Kind::Table
            && let Some(d) = remote.first_mut()
        {
            d.len = len;
        }
        if len as usize > self.bounce_len || remote.is_empty() {
            // Larger than a transfer buffer: fail it (the channel disconnects).
            self.channel.rdma_done(xfer, false);
            return Ok(());
        }
        // The QP's initiator depth (negotiated at accept) bounds the RDMA READs the adapter
        // has in flight; more may be posted, the send queue waits for them.
        let n = remote.len();
        if self.sq_used + n > self.sq_size {
            return Err(back(remote));
        }
        let Some(b) = self.bounce_free.pop() else { return Err(back(remote)) };
        let base = b * self.bounce_len;
        if !read {
            let Some(cmd) = self.channel.xfer_cmd(xfer) else {
                self.bounce_free.push(b);
                return Ok(());
            };
            let mut slices = scst::sgv::empty_io_slices();
            let k = cmd.data_in_slices(0, len as usize, &mut slices);
            let mut off = base;
            for s in &slices[..k] {
                self.bounce.buf[off..off + s.len()].copy_from_slice(s);
                off += s.len();
            }
        }
        let mut off = base;
        let lkey = self.bounce.lkey;
        let mut posted = 0u32;
        for d in &remote {
            let addr = self.bounce.ptr(off);
            // SAFETY: `addr..addr+d.len` lies in this transfer's bounce buffer (the lengths sum
            // to `len` ≤ its size), registered for the QP's lifetime.
            let r = unsafe {
                ffi::srp_shim_post_rdma(
                    self.qp.0,
                    WR_RDMA | u64::from(xfer.0),
                    c_int::from(read),
                    addr,
                    d.len,
                    lkey,
                    d.va,
                    d.rkey,
                )
            };
            if r != 0 {
                break;
            }
            posted += 1;
            off += d.len as usize;
        }
        self.sq_used += posted as usize;
        if posted == 0 {
            self.bounce_free.push(b);
            self.channel.rdma_done(xfer, false);
            return Ok(());
        }
        self.transfers.insert(xfer.0, Transfer { bounce: b, remaining: posted, failed: posted as usize != n, kind });
        Ok(())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.qp.0.is_null() {
            // SAFETY: the QP of `id`, not yet destroyed.
            unsafe { ffi::srp_shim_destroy_qp(self.id.0) };
        }
        // The arenas deregister in their own Drop, before the PD goes below; to keep that order
        // they are replaced (dropped) here explicitly.
        let pd = self.pd;
        self.recv = Arena { buf: Box::new([]), mr: Ptr(std::ptr::null_mut()), lkey: 0 };
        self.send = Arena { buf: Box::new([]), mr: Ptr(std::ptr::null_mut()), lkey: 0 };
        self.bounce = Arena { buf: Box::new([]), mr: Ptr(std::ptr::null_mut()), lkey: 0 };
        // SAFETY: the QP is gone; CQ, completion channel and PD are destroyed once, in order.
        unsafe {
            ffi::srp_shim_destroy_cq(self.cq.0);
            ffi::srp_shim_destroy_comp_channel(self.comp.0);
            ffi::srp_shim_dealloc_pd(pd.0);
        }
    }
}

/// Owns a PD until handed over.
struct PdGuard(Ptr);
impl PdGuard {
    fn take(&mut self) -> Ptr {
        std::mem::replace(&mut self.0, Ptr(std::ptr::null_mut()))
    }
}
impl Drop for PdGuard {
    fn drop(&mut self) {
        if !self.0.0.is_null() {
            // SAFETY: a PD allocated by `Conn::new` and not handed over.
            unsafe { ffi::srp_shim_dealloc_pd(self.0.0) };
        }
    }
}

struct CompGuard(Ptr);
impl CompGuard {
    fn take(mut self) -> Ptr {
        std::mem::replace(&mut self.0, Ptr(std::ptr::null_mut()))
    }
}
impl Drop for CompGuard {
    fn drop(&mut self) {
        if !self.0.0.is_null() {
            // SAFETY: a completion channel created by `Conn::new` and not handed over.
            unsafe { ffi::srp_shim_destroy_comp_channel(self.0.0) };
        }
    }
}

struct CqGuard(Ptr);
impl CqGuard {
    fn take(mut self) -> Ptr {
        std::mem::replace(&mut self.0, Ptr(std::ptr::null_mut()))
    }
}
impl Drop for CqGuard {
    fn drop(&mut self) {
        if !self.0.0.is_null() {
            // SAFETY: a CQ created by `Conn::new` and not handed over.
            unsafe { ffi::srp_shim_destroy_cq(self.0.0) };
        }
    }
}
