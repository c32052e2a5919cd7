//! The running target port: rings, logins, the command data path, aborts and task management.

use std::collections::{HashMap, VecDeque};
use std::io::{IoSlice, IoSliceMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use scst::{
    CmdBox, CmdHeader, DataDir, ProtocolId, ScsiStatus, Session, SessionConfig, Step, Target, TargetDriver, TargetPort,
    TaskAttr, TmFunction, TmOutcome, TmRequest, TmResponse, TmStatus,
};

use super::bus::{Bus, DmaRegion, PAGE};
use super::fw::Firmware;
use super::hw::{self, IcbParams, Isp};
use super::iocb::{
    self, AbtsRecv, Atio7, Ctio7, CtioDone, Dsd, ENTRY, ImmNotify, ctio_flags, ctio_status, kind, notify, ss,
};
use super::regs::{self, aen, fstate};
use super::{FwVersion, QlaConfig, QlaError};
use crate::fcp::{FcpCmnd, RspCode, tm_flags};
use crate::port::wwn_string;

/// Marks handles of IOCBs that are not CTIOs (NOTIFY ACK, ABTS RESPONSE).
const MISC_HANDLE: u32 = 1 << 31;
/// Tag bit of the ABORT TASK an ABTS issues.
const ABTS_TAG: u64 = 1 << 63;
/// Signature the driver leaves in consumed ATIO and response entries (Linux's ATIO_PROCESSED /
/// RESPONSE_PROCESSED).
const PROCESSED: u32 = 0xdead_dead;
/// Most entries one ATIO or response IOCB may span here.
const MAX_SPAN: usize = 4;
/// Bytes of zeros Data-In of zero-filled commands is sent from.
const ZERO_LEN: usize = 1 << 20;

enum Async {
    Response(CmdBox),
    TmDone(TmResponse),
    AbortPending(u64),
    Close { port_id: u32, session: u64 },
}

struct Shared {
    queue: Mutex<VecDeque<Async>>,
    bus: Arc<dyn Bus>,
    info: Mutex<QlaInfo>,
}

impl Shared {
    fn push(&self, a: Async) {
        self.queue.lock().push_back(a);
        self.bus.wake();
    }
}

/// A snapshot of the port's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QlaInfo {
    /// Firmware version.
    pub firmware: FwVersion,
    /// Whether the link is up.
    pub link_up: bool,
    /// Our N_Port ID (0 while the link is down).
    pub port_id: u32,
    /// Logged-in initiator ports with an FCP session, by N_Port ID.
    pub sessions: Vec<u32>,
    /// Exchanges open in the driver.
    pub exchanges: usize,
    /// IOCBs waiting for room in the request ring.
    pub backlog: usize,
    /// Why the port stopped, if it did.
    pub failed: Option<String>,
}

struct Driver {
    shared: Arc<Shared>,
    port_id: u32,
    wwpn: u64,
    session: std::sync::OnceLock<u64>,
}

impl TargetDriver for Driver {
    fn xmit_response(&self, cmd: CmdBox) {
        self.shared.push(Async::Response(cmd));
    }
    fn tm_done(&self, rsp: TmResponse) {
        self.shared.push(Async::TmDone(rsp));
    }
    fn abort_pending(&self, tag: u64) {
        self.shared.push(Async::AbortPending(tag));
    }
    fn parameters(&self) -> Vec<(String, String)> {
        vec![
            ("Port_ID".to_string(), format!("{:06x}", self.port_id)),
            ("WWPN".to_string(), wwn_string(self.wwpn)),
            ("Link".to_string(), "qla2x00t".to_string()),
        ]
    }
    fn close_session(&self) -> bool {
        let Some(&session) = self.session.get() else { return false };
        self.shared.push(Async::Close { port_id: self.port_id, session });
        true
    }
}

struct Rport {
    wwpn: u64,
    nport_handle: u16,
    session: Option<Arc<Session>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The core has the command.
    Core,
    /// A Data-Out CTIO is in flight.
    DataOut,
    /// A Data-In CTIO is in flight; `then_status`: a status CTIO follows.
    DataIn { then_status: bool },
    /// The final CTIO (status, task management response, terminate) is in flight.
    Final,
    /// A task management function is with the core.
    Tmf,
    /// An ABTS's ABORT TASK is with the core.
    AbortCore,
}

struct Exch {
    generation: u32,
    tag: u64,
    port_id: u32,
    nport_handle: u16,
    vp_index: u8,
    exchange_addr: u32,
    ox_id: u16,
    attr: u8,
    /// The FCP_LUN (an ABTS's ABORT TASK names it: ABTS carries none).
    lun: [u8; 8],
    phase: Phase,
    /// The command while a CTIO may DMA its buffer.
    cmd: Option<CmdBox>,
    /// An ABTS waiting for the CTIO in flight.
    abts: Option<AbtsRecv>,
    /// The core asked for the command back (it was aborted while its Data-Out was in flight).
    abort_requested: bool,
    /// The session ended: nothing more goes out for this exchange.
    gone: bool,
}

struct Ring {
    mem: DmaRegion,
    len: u16,
    /// Our index: the in-pointer (request ring) or the out-pointer (response, ATIO).
    idx: u16,
    /// The request ring's last read out-pointer.
    other: u16,
}

impl Ring {
    fn new(bus: &Arc<dyn Bus>, len: u16) -> Result<Self, QlaError> {
        let len = len.max(8);
        Ok(Self { mem: DmaRegion::new(bus, usize::from(len) * ENTRY)?, len, idx: 0, other: 0 })
    }
    fn read(&self, i: u16) -> [u8; ENTRY] {
        let mut e = [0u8; ENTRY];
        self.mem.read(usize::from(i) * ENTRY, &mut e);
        e
    }
    fn write(&self, i: u16, e: &[u8; ENTRY]) {
        self.mem.write(usize::from(i) * ENTRY, e);
    }
    fn next(&self, i: u16) -> u16 {
        if i + 1 >= self.len { 0 } else { i + 1 }
    }
    fn free(&self) -> usize {
        let (i, o) = (usize::from(self.idx), usize::from(self.other));
        let len = usize::from(self.len);
        if o > i { o - i - 1 } else { len - (i - o) - 1 }
    }
}

/// Makes SGV segments visible to the device once and remembers their IOVAs; forgets (unmaps)
/// those of chunks the pool gave back to the system ([`scst::ChunkObserver`]), before their
/// addresses can name other memory.
struct DmaCache {
    /// Page-aligned address → (IOVA, mapped bytes).
    maps: HashMap<usize, (u64, usize)>,
    released: Arc<Released>,
}

/// Chunks the SGV pool freed since the port last looked (told on the freeing thread).
#[derive(Default)]
struct Released {
    any: AtomicBool,
    ranges: Mutex<Vec<(usize, usize)>>,
}

impl scst::ChunkObserver for Released {
    fn released(&self, addr: usize, len: usize) {
        self.ranges.lock().push((addr, len));
        self.any.store(true, Ordering::Release);
    }
}

impl DmaCache {
    fn new(pool: &scst::SgvPool) -> Self {
        let released = Arc::new(Released::default());
        pool.observe(released.clone());
        Self { maps: HashMap::new(), released }
    }

    /// Unmaps what lies in chunks freed since the last call. A freed chunk is in no command's
    /// buffer, so nothing is doing DMA with it; a chunk allocated at the same address later
    /// reaches this port only after the free (and its report) happened.
    fn forget_released(&mut self, bus: &Arc<dyn Bus>) {
        if !self.released.any.swap(false, Ordering::Acquire) {
            return;
        }
        let ranges = std::mem::take(&mut *self.released.ranges.lock());
        for (addr, len) in ranges {
            self.maps.retain(|&base, &mut (iova, n)| {
                let gone = base >= addr && base < addr + len;
                if gone {
                    bus.unmap_dma(iova, n);
                }
                !gone
            });
        }
    }

    fn iova(&mut self, bus: &Arc<dyn Bus>, p: *const u8, len: usize) -> Result<u64, QlaError> {
        self.forget_released(bus);
        let addr = p as usize;
        let base = addr & !(PAGE - 1);
        let need = (addr - base + len).div_ceil(PAGE) * PAGE;
        if let Some(&(iova, n)) = self.maps.get(&base) {
            if n >= need {
                return Ok(iova + (addr - base) as u64);
            }
            // Only the command using this chunk now can be doing DMA with it, and it is not yet.
            bus.unmap_dma(iova, n);
            self.maps.remove(&base);
        }
        let iova = bus.map_dma(base as *const u8, need)?;
        self.maps.insert(base, (iova, need));
        Ok(iova + (addr - base) as u64)
    }
}

/// A QLogic ISP24xx/25xx target port.
pub struct QlaPort {
    cfg: QlaConfig,
    bus: Arc<dyn Bus>,
    isp: Isp,
    target: Arc<Target>,
    tport: Arc<TargetPort>,
    shared: Arc<Shared>,
    req: Ring,
    rsp: Ring,
    atio: Ring,
    _icb: DmaRegion,
    zeros: DmaRegion,
    backlog: VecDeque<Vec<[u8; ENTRY]>>,
    rports: HashMap<u32, Rport>,
    slots: Vec<Option<Exch>>,
    free: Vec<u32>,
    by_addr: HashMap<u32, u32>,
    generation: u32,
    misc_handle: u32,
    dma: DmaCache,
    link_up: bool,
    port_id: u32,
    firmware: FwVersion,
}

impl std::fmt::Debug for QlaPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QlaPort")
            .field("wwpn", &wwn_string(self.cfg.wwpn))
            .field("port_id", &format_args!("{:06x}", self.port_id))
            .field("link_up", &self.link_up)
            .finish()
    }
}

fn fc_attr(a: u8) -> TaskAttr {
    match a & 7 {
        1 => TaskAttr::HeadOfQueue,
        2 => TaskAttr::Ordered,
        4 => TaskAttr::Aca,
        _ => TaskAttr::Simple,
    }
}

impl QlaPort {
    /// Brings the chip up for target mode and returns the port serving `target`'s LUNs:
    /// reset, mailbox test, firmware load and start, the init control block, the wait for
    /// READY (bounded by [`QlaConfig::ready_timeout`]; a link that is down is no error).
    ///
    /// # Errors
    /// Anything that stops the bring-up, with the step that failed.
    pub fn start(bus: Arc<dyn Bus>, cfg: QlaConfig, target: Arc<Target>) -> Result<Self, QlaError> {
        let chip = hw::chip_of(&*bus)?;
        let image = match &cfg.firmware {
            Some(b) => b.clone(),
            None => {
                let path = cfg
                    .firmware_path
                    .clone()
                    .unwrap_or_else(|| std::path::Path::new("/lib/firmware").join(chip.firmware_name()));
                std::fs::read(&path).map_err(|err| QlaError::FirmwareFile { path, err })?
            }
        };
        let fw = Firmware::parse(&image)?;
        let mut isp = Isp::new(bus.clone());
        isp.reset(Duration::from_secs(2).max(cfg.mailbox_timeout.min(Duration::from_secs(10))))?;
        match Self::bring_up(bus.clone(), &mut isp, &fw, cfg, target) {
            Ok(p) => Ok(p),
            Err(e) => {
                // Stop whatever the firmware started before its rings are freed.
                let _ = isp.reset(Duration::from_millis(200));
                Err(e)
            }
        }
    }

    fn bring_up(
        bus: Arc<dyn Bus>,
        isp: &mut Isp,
        fw: &Firmware,
        cfg: QlaConfig,
        target: Arc<Target>,
    ) -> Result<Self, QlaError> {
        let chip = hw::chip_of(&*bus)?;
        let t = cfg.mailbox_timeout;
        bus.write32(regs::ICTRL, regs::ICRX_EN_RISC_INT);
        isp.mailbox_test(t)?;
        let firmware = isp.load_firmware(fw, t)?;
        tracing::info!(?chip, %firmware, "qla: firmware running");

        let req = Ring::new(&bus, cfg.req_entries)?;
        let rsp = Ring::new(&bus, cfg.rsp_entries)?;
        let atio = Ring::new(&bus, cfg.atio_entries)?;
        for r in [regs::REQ_Q_IN, regs::REQ_Q_OUT, regs::RSP_Q_IN, regs::RSP_Q_OUT, regs::ATIO_Q_IN, regs::ATIO_Q_OUT] {
            bus.write32(r, 0);
        }
        let icb = DmaRegion::new(&bus, hw::ICB_LEN)?;
        icb.write(
            0,
            &hw::build_icb(&IcbParams {
                wwpn: cfg.wwpn,
                wwnn: cfg.wwnn,
                frame_size: cfg.frame_size,
                req: (req.mem.iova(), req.len),
                rsp: (rsp.mem.iova(), rsp.len),
                atio: (atio.mem.iova(), atio.len),
            }),
        );
        isp.init_firmware(icb.iova(), t)?;
        let zeros = DmaRegion::new(&bus, ZERO_LEN)?;

        let tport = Arc::new(TargetPort {
            protocol: ProtocolId::FC,
            rel_port_id: cfg.rel_port_id,
            name: format!("naa.{:016X}", cfg.wwpn),
            version_descriptor: 0x0a40,
            tpg_id: cfg.tpg_id,
        });
        let shared = Arc::new(Shared { queue: Mutex::new(VecDeque::new()), bus: bus.clone(), info: Mutex::default() });
        let isp = std::mem::replace(isp, Isp::new(bus.clone()));
        let dma = DmaCache::new(target.sgv());
        let mut port = Self {
            cfg,
            bus,
            isp,
            target,
            tport,
            shared,
            req,
            rsp,
            atio,
            _icb: icb,
            zeros,
            backlog: VecDeque::new(),
            rports: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            by_addr: HashMap::new(),
            generation: 0,
            misc_handle: 0,
            dma,
            link_up: false,
            port_id: 0,
            firmware,
        };
        port.wait_ready()?;
        port.publish();
        Ok(port)
    }

    fn wait_ready(&mut self) -> Result<(), QlaError> {
        let deadline = Instant::now() + self.cfg.ready_timeout;
        loop {
            let st = self.isp.firmware_state(self.cfg.mailbox_timeout)?;
            if st == fstate::READY {
                self.loop_up()?;
                return Ok(());
            }
            if st == fstate::ERROR {
                return Err(QlaError::Firmware("firmware state ERROR after initialization".into()));
            }
            if Instant::now() >= deadline {
                tracing::warn!(state = st, "qla: firmware not ready (link down?); waiting for LOOP UP");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn loop_up(&mut self) -> Result<(), QlaError> {
        let (loop_id, port_id, topo) = self.isp.adapter_id(self.cfg.mailbox_timeout)?;
        tracing::info!(loop_id, port_id = format_args!("{port_id:06x}"), topo, "qla: link up");
        self.link_up = true;
        self.port_id = port_id;
        Ok(())
    }

    /// The SCSI target port sessions arrive through.
    pub fn target_port(&self) -> &Arc<TargetPort> {
        &self.tport
    }

    /// The firmware version.
    pub fn firmware(&self) -> FwVersion {
        self.firmware
    }

    /// The current state.
    pub fn info(&self) -> QlaInfo {
        self.shared.info.lock().clone()
    }

    fn publish(&self) {
        let mut i = self.shared.info.lock();
        i.firmware = self.firmware;
        i.link_up = self.link_up;
        i.port_id = self.port_id;
        i.sessions = self.rports.iter().filter(|(_, r)| r.session.is_some()).map(|(&p, _)| p).collect();
        i.sessions.sort_unstable();
        i.exchanges = self.slots.len() - self.free.len();
        i.backlog = self.backlog.len();
    }

    /// Waits up to `timeout` for the chip or the core, then does what is due.
    ///
    /// # Errors
    /// A fatal firmware condition (system error, RISC paused): the port must be restarted.
    pub fn poll(&mut self, timeout: Duration) -> Result<(), QlaError> {
        if self.shared.queue.lock().is_empty() {
            self.bus.wait_irq(timeout);
        }
        let r = self.service();
        self.publish();
        if let Err(e) = &r {
            self.shared.info.lock().failed = Some(e.to_string());
        }
        r
    }

    /// Runs [`QlaPort::poll`] until `stop` is set or the firmware fails.
    ///
    /// # Errors
    /// See [`QlaPort::poll`].
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), QlaError> {
        while !stop.load(Ordering::Acquire) {
            // IOCBs waiting for ring space: the firmware's progress raises no interrupt.
            let t = if self.backlog.is_empty() { Duration::from_millis(50) } else { Duration::from_micros(200) };
            self.poll(t)?;
        }
        Ok(())
    }

    /// Runs the port on a thread of its own.
    pub fn spawn(mut self) -> QlaHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name("qla-port".into())
            .spawn(move || {
                let r = self.run(&s);
                if let Err(e) = &r {
                    tracing::error!(error = %e, "qla: port stopped");
                }
                self.shutdown();
                r
            })
            .ok();
        QlaHandle { stop, shared, thread }
    }

    /// Ends every session (as a link down does) and interrupts off.
    pub fn shutdown(&mut self) {
        self.end_all_sessions();
        self.bus.write32(regs::ICTRL, 0);
        self.publish();
    }

    fn service(&mut self) -> Result<(), QlaError> {
        while self.isp.service_status().is_some() {
            tracing::warn!("qla: unexpected mailbox completion");
        }
        if let Some(f) = self.isp.fatal.take() {
            return Err(QlaError::Firmware(f));
        }
        while let Some(ev) = self.isp.pending_aen.pop_front() {
            self.async_event(ev)?;
        }
        self.drain(true);
        self.drain(false);
        self.process_async();
        self.drain_backlog();
        Ok(())
    }

    fn async_event(&mut self, ev: [u16; 4]) -> Result<(), QlaError> {
        match ev[0] {
            aen::SYSTEM_ERROR | aen::REQUEST_TRANSFER_ERROR | aen::RESPONSE_TRANSFER_ERROR => {
                return Err(QlaError::Firmware(format!(
                    "async event {:#06x} (mb1 {:#06x} mb2 {:#06x} mb3 {:#06x})",
                    ev[0], ev[1], ev[2], ev[3]
                )));
            }
            aen::LOOP_UP => {
                if let Err(e) = self.loop_up() {
                    tracing::warn!(error = %e, "qla: GET ADAPTER ID after LOOP UP failed");
                }
            }
            aen::LOOP_DOWN | aen::LIP_OCCURRED | aen::LIP_RESET => {
                tracing::info!(code = format_args!("{:#06x}", ev[0]), "qla: link down");
                if ev[0] == aen::LOOP_DOWN {
                    self.link_up = false;
                    self.port_id = 0;
                }
                self.end_all_sessions();
            }
            aen::PORT_UPDATE | aen::RSCN => {
                tracing::debug!(code = format_args!("{:#06x}", ev[0]), mb1 = ev[1], mb2 = ev[2], "qla: port change");
            }
            other => tracing::debug!(code = format_args!("{other:#06x}"), "qla: async event"),
        }
        Ok(())
    }

    // ---- rings ----

    /// Reads the IOCB at `start` spanning `n` entries (wrapping) of a ring into `buf`.
    fn gather(r: &Ring, start: u16, n: usize, buf: &mut [[u8; ENTRY]; MAX_SPAN]) {
        let mut i = start;
        for e in buf.iter_mut().take(n) {
            *e = r.read(i);
            i = r.next(i);
        }
    }

    fn avail(r: &Ring, hw_in: u16) -> usize {
        let (o, i, len) = (usize::from(r.idx), usize::from(hw_in), usize::from(r.len));
        if i >= o { i - o } else { len - o + i }
    }

    fn consume(r: &mut Ring, n: usize) {
        for _ in 0..n {
            let mut e = r.read(r.idx);
            e[60..64].copy_from_slice(&PROCESSED.to_le_bytes());
            r.write(r.idx, &e);
            r.idx = r.next(r.idx);
        }
    }

    /// Dispatches every IOCB the firmware put on the ATIO ring (`atio`) or the response ring, up
    /// to its in-pointer. An ATIO that spans more entries than are there yet waits for the
    /// rest; a response entry's count is trusted only as far as the entries present.
    fn drain(&mut self, atio: bool) {
        let (in_reg, out_reg, what) = if atio {
            (regs::ATIO_Q_IN, regs::ATIO_Q_OUT, "ATIO")
        } else {
            (regs::RSP_Q_IN, regs::RSP_Q_OUT, "response")
        };
        loop {
            let hw_in = self.bus.read32(in_reg) as u16;
            let ring = if atio { &mut self.atio } else { &mut self.rsp };
            if hw_in >= ring.len {
                tracing::error!(hw_in, "qla: {what} in-pointer out of range");
                break;
            }
            let avail = Self::avail(ring, hw_in);
            if avail == 0 {
                break;
            }
            let first = ring.read(ring.idx);
            let mut n = usize::from(first[1]).clamp(1, MAX_SPAN);
            if n > avail {
                if atio {
                    break;
                }
                n = avail;
            }
            let mut buf = [[0u8; ENTRY]; MAX_SPAN];
            Self::gather(ring, ring.idx, n, &mut buf);
            Self::consume(ring, n);
            self.dispatch(&buf, n);
        }
        // Written on every pass, as Linux does: a firmware holding ATIOs for a full ring
        // resumes on the write.
        let idx = if atio { self.atio.idx } else { self.rsp.idx };
        self.bus.write32(out_reg, u32::from(idx));
    }

    fn dispatch(&mut self, buf: &[[u8; ENTRY]; MAX_SPAN], n: usize) {
        let e = &buf[0];
        match e[0] {
            kind::ATIO7 => self.atio7(buf, n),
            kind::IMMED_NOTIFY => self.immed_notify(&ImmNotify::parse(e)),
            kind::CTIO7 => self.ctio_done(&CtioDone::parse(e)),
            kind::ABTS_RECV => self.abts(AbtsRecv::parse(e)),
            kind::NOTIFY_ACK => {
                let (h, st) = iocb::notify_ack_done(e);
                if st != iocb::NOTIFY_ACK_SUCCESS || e[3] != 0 {
                    tracing::warn!(handle = h, status = st, entry_status = e[3], "qla: NOTIFY ACK failed");
                }
            }
            kind::ABTS_RESP => {
                let (h, st) = iocb::abts_resp_done(e);
                if st != 0 || e[3] != 0 {
                    tracing::warn!(handle = h, status = st, entry_status = e[3], "qla: ABTS RESPONSE failed");
                }
            }
            kind::MARKER => {}
            t => tracing::warn!(entry_type = t, entry_status = e[3], "qla: unexpected IOCB"),
        }
    }

    /// Posts an IOCB (entries in order) on the request ring, behind any backlog.
    fn post(&mut self, entries: &[[u8; ENTRY]]) {
        if self.backlog.is_empty() && self.try_post(entries) {
            return;
        }
        self.backlog.push_back(entries.to_vec());
    }

    fn try_post(&mut self, entries: &[[u8; ENTRY]]) -> bool {
        if self.req.free() < entries.len() {
            let out = self.bus.read32(regs::REQ_Q_OUT) as u16;
            if out < self.req.len {
                self.req.other = out;
            }
            if self.req.free() < entries.len() {
                return false;
            }
        }
        for e in entries {
            self.req.write(self.req.idx, e);
            self.req.idx = self.req.next(self.req.idx);
        }
        self.bus.write32(regs::REQ_Q_IN, u32::from(self.req.idx));
        true
    }

    fn drain_backlog(&mut self) {
        while let Some(front) = self.backlog.pop_front() {
            if !self.try_post(&front) {
                self.backlog.push_front(front);
                break;
            }
        }
    }

    fn next_misc_handle(&mut self) -> u32 {
        self.misc_handle = self.misc_handle.wrapping_add(1) & 0x7fff_ffff;
        MISC_HANDLE | self.misc_handle
    }

    // ---- logins ----

    fn immed_notify(&mut self, n: &ImmNotify) {
        tracing::debug!(status = n.status, subcode = n.status_subcode, port_id = n.port_id, "qla: immediate notify");
        match n.status {
            notify::ELS => match n.status_subcode {
                iocb::els::PLOGI | iocb::els::FLOGI => {
                    // A new login ends the old one and its nexus.
                    self.end_session(n.port_id);
                    self.rports
                        .insert(n.port_id, Rport { wwpn: n.port_name, nport_handle: n.nport_handle, session: None });
                }
                iocb::els::PRLI => self.prli(n),
                iocb::els::LOGO => {
                    self.end_session(n.port_id);
                    self.rports.remove(&n.port_id);
                }
                iocb::els::PRLO | iocb::els::TPRLO => self.end_session(n.port_id),
                _ => {}
            },
            notify::PORT_LOGOUT => {
                let id = self.port_of_handle(n.nport_handle).unwrap_or(n.port_id);
                self.end_session(id);
                self.rports.remove(&id);
            }
            notify::GLBL_LOGO | notify::LIP_RESET | notify::LIP_LINK_REINIT | notify::PORT_CONFIG => {
                self.end_all_sessions();
            }
            notify::GLBL_TPRLO => {
                let ids: Vec<u32> = self.rports.keys().copied().collect();
                for id in ids {
                    self.end_session(id);
                }
            }
            _ => {}
        }
        let h = self.next_misc_handle();
        self.post(&[n.ack(h)]);
    }

    fn port_of_handle(&self, h: u16) -> Option<u32> {
        self.rports.iter().find(|(_, r)| r.nport_handle == h).map(|(&id, _)| id)
    }

    fn prli(&mut self, n: &ImmNotify) {
        let r = self.rports.entry(n.port_id).or_insert(Rport {
            wwpn: n.port_name,
            nport_handle: n.nport_handle,
            session: None,
        });
        if n.port_name != 0 {
            r.wwpn = n.port_name;
        }
        r.nport_handle = n.nport_handle;
        if r.session.is_some() {
            return;
        }
        let name = wwn_string(r.wwpn);
        if !self.target.admits(&name) {
            tracing::info!(initiator = %name, "qla: initiator not admitted");
            return;
        }
        let cfg = SessionConfig {
            initiator_name: name.clone(),
            initiator_port: name,
            port: self.tport.clone(),
            depth: self.cfg.queue_depth,
        };
        let driver = Arc::new(Driver {
            shared: self.shared.clone(),
            port_id: n.port_id,
            wwpn: r.wwpn,
            session: std::sync::OnceLock::new(),
        });
        let s = self.target.register_session(cfg, driver.clone());
        let _ = driver.session.set(s.id());
        tracing::info!(port_id = format_args!("{:06x}", n.port_id), wwpn = %wwn_string(r.wwpn), "qla: session");
        r.session = Some(s);
    }

    /// Ends the I_T nexus of a port: its exchanges are forgotten (those with a CTIO in flight
    /// when it completes), its commands in the core aborted, its session closed.
    fn end_session(&mut self, port_id: u32) {
        let mine: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().filter(|e| e.port_id == port_id).map(|_| i as u32))
            .collect();
        for slot in mine {
            let Some(e) = self.exch_mut(slot) else { continue };
            e.gone = true;
            if matches!(e.phase, Phase::Core | Phase::Tmf | Phase::AbortCore) {
                self.free_slot(slot);
            }
        }
        if let Some(s) = self.rports.get_mut(&port_id).and_then(|r| r.session.take()) {
            let _ = s.submit_tm(TmRequest { function: TmFunction::I_T_NEXUS_RESET, lun: [0; 8], ref_tag: 0, tag: 0 });
            s.close();
            tracing::info!(port_id = format_args!("{port_id:06x}"), "qla: session ended");
        }
    }

    fn end_all_sessions(&mut self) {
        let ids: Vec<u32> = self.rports.keys().copied().collect();
        for id in ids {
            self.end_session(id);
        }
        self.rports.clear();
    }

    // ---- exchanges ----

    fn exch_mut(&mut self, slot: u32) -> Option<&mut Exch> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    fn alloc_slot(&mut self, e: Exch) -> u32 {
        let addr = e.exchange_addr;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(e);
                s
            }
            None => {
                self.slots.push(Some(e));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_addr.insert(addr, slot);
        slot
    }

    fn free_slot(&mut self, slot: u32) {
        if let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::take) {
            if self.by_addr.get(&e.exchange_addr) == Some(&slot) {
                self.by_addr.remove(&e.exchange_addr);
            }
            self.free.push(slot);
            // A held command is released here.
            drop(e);
        }
    }

    /// The slot of a core tag, if it still names the same exchange.
    fn slot_of_tag(&self, tag: u64) -> Option<u32> {
        let slot = (tag & 0xffff_ffff) as u32;
        let generation = ((tag >> 32) & 0x7fff_ffff) as u32;
        self.slots.get(slot as usize)?.as_ref().filter(|e| e.generation == generation).map(|_| slot)
    }

    fn ctio_handle(slot: u32, generation: u32) -> u32 {
        (generation & 0x3ff) << 20 | (slot + 1)
    }

    fn slot_of_handle(&self, h: u32) -> Option<u32> {
        if h & MISC_HANDLE != 0 {
            return None;
        }
        let slot = (h & 0xf_ffff).checked_sub(1)?;
        let generation = (h >> 20) & 0x3ff;
        self.slots.get(slot as usize)?.as_ref().filter(|e| e.generation & 0x3ff == generation).map(|_| slot)
    }

    /// A CTIO without data for an ATIO that got no exchange slot: terminate it.
    fn terminate_raw(&mut self, a: &Atio7, nport_handle: u16) {
        let c = Ctio7 {
            handle: self.next_misc_handle(),
            nport_handle,
            timeout: self.cfg.ctio_timeout,
            initiator_id: a.s_id,
            exchange_addr: a.exchange_addr,
            flags: ctio_flags::TERMINATE | ctio_flags::STATUS_MODE_1,
            ox_id: a.ox_id,
            ..Default::default()
        };
        let mut out = [[0u8; ENTRY]; 1];
        c.build(&mut out);
        self.post(&out);
    }

    /// A status-only CTIO for an ATIO that got no command (TASK SET FULL, BUSY).
    fn status_raw(&mut self, a: &Atio7, nport_handle: u16, status: u8) {
        let c = Ctio7 {
            handle: self.next_misc_handle(),
            nport_handle,
            timeout: self.cfg.ctio_timeout,
            initiator_id: a.s_id,
            exchange_addr: a.exchange_addr,
            flags: ctio_flags::SEND_STATUS | ctio_flags::STATUS_MODE_1 | u16::from(a.attr) << 9,
            ox_id: a.ox_id,
            scsi_status: u16::from(status),
            ..Default::default()
        };
        let mut out = [[0u8; ENTRY]; 1];
        c.build(&mut out);
        self.post(&out);
    }

    fn atio7(&mut self, buf: &[[u8; ENTRY]; MAX_SPAN], n: usize) {
        let a = Atio7::parse(&buf[0]);
        let mut iu = [0u8; MAX_SPAN * ENTRY];
        for (i, e) in buf.iter().take(n).enumerate() {
            iu[i * ENTRY..(i + 1) * ENTRY].copy_from_slice(e);
        }
        let iu = &iu[iocb::ATIO7_IU_OFFSET..n * ENTRY];
        let Some((handle, session)) = self.rports.get(&a.s_id).map(|r| (r.nport_handle, r.session.clone())) else {
            tracing::debug!(s_id = a.s_id, "qla: FCP_CMND from a port not logged in: terminated");
            self.terminate_raw(&a, 0xffff);
            return;
        };
        let Some(session) = session else {
            self.terminate_raw(&a, handle);
            return;
        };
        let c = match FcpCmnd::parse(iu) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "qla: bad FCP_CMND");
                self.terminate_raw(&a, handle);
                return;
            }
        };
        if self.by_addr.contains_key(&a.exchange_addr) {
            tracing::warn!(addr = a.exchange_addr, "qla: ATIO for an open exchange");
        }
        self.generation = self.generation.wrapping_add(1) & 0x7fff_ffff;
        let generation = self.generation;
        let exch = Exch {
            generation,
            tag: 0,
            port_id: a.s_id,
            nport_handle: handle,
            vp_index: 0,
            exchange_addr: a.exchange_addr,
            ox_id: a.ox_id,
            attr: c.task_attr().0,
            lun: c.lun(),
            phase: Phase::Core,
            cmd: None,
            abts: None,
            abort_requested: false,
            gone: false,
        };
        let slot = self.alloc_slot(exch);
        let tag = u64::from(generation) << 32 | u64::from(slot);
        if let Some(e) = self.exch_mut(slot) {
            e.tag = tag;
        }
        if c.tm_flags() != 0 {
            let function = match c.tm_flags() {
                tm_flags::ABORT_TASK_SET => Some(TmFunction::ABORT_TASK_SET),
                tm_flags::CLEAR_TASK_SET => Some(TmFunction::CLEAR_TASK_SET),
                tm_flags::LUN_RESET => Some(TmFunction::LUN_RESET),
                tm_flags::TARGET_RESET => Some(TmFunction::TARGET_WARM_RESET),
                tm_flags::CLEAR_ACA => Some(TmFunction::CLEAR_ACA),
                _ => None,
            };
            let Some(function) = function else {
                self.send_tm_rsp(slot, RspCode::TMF_REJECTED.0);
                return;
            };
            if let Some(e) = self.exch_mut(slot) {
                e.phase = Phase::Tmf;
            }
            match session.submit_tm(TmRequest { function, lun: c.lun(), ref_tag: 0, tag }) {
                TmOutcome::Done(rsp) => self.tm_response(slot, rsp.status),
                TmOutcome::Pending => {}
            }
            return;
        }
        let dir = match (c.read(), c.write()) {
            (false, false) => DataDir::None,
            (true, false) => DataDir::In,
            (false, true) => DataDir::Out,
            (true, true) => {
                self.free_slot(slot);
                self.terminate_raw(&a, handle);
                return;
            }
        };
        let hdr = CmdHeader {
            lun: c.lun(),
            cdb: c.cdb(),
            attr: fc_attr(c.task_attr().0),
            tag,
            expected_len: c.data_len(),
            expected_dir: dir,
        };
        let Ok(cmd) = session.alloc_cmd(&hdr) else {
            self.free_slot(slot);
            self.status_raw(&a, handle, ScsiStatus::TASK_SET_FULL.0);
            return;
        };
        let step = session.submit(cmd);
        self.step(slot, step);
    }

    fn step(&mut self, slot: u32, step: Step) {
        match step {
            Step::Pending => {}
            Step::Done(cmd) => self.respond(slot, cmd),
            Step::NeedData(cmd) => self.data_out(slot, cmd),
        }
    }

    fn base_ctio(&mut self, slot: u32, flags: u16) -> Option<Ctio7<'static>> {
        let timeout = self.cfg.ctio_timeout;
        let e = self.exch_mut(slot)?;
        Some(Ctio7 {
            handle: Self::ctio_handle(slot, e.generation),
            nport_handle: e.nport_handle,
            timeout,
            vp_index: e.vp_index,
            initiator_id: e.port_id,
            exchange_addr: e.exchange_addr,
            flags: flags | u16::from(e.attr) << 9,
            ox_id: e.ox_id,
            ..Default::default()
        })
    }

    fn map_slices(&mut self, slices: &[(*const u8, usize)], out: &mut [Dsd; scst::sgv::MAX_SEGS]) -> Option<usize> {
        for (i, &(p, len)) in slices.iter().enumerate() {
            match self.dma.iova(&self.bus, p, len) {
                Ok(iova) => out[i] = Dsd { addr: iova, len: len as u32 },
                Err(e) => {
                    tracing::error!(error = %e, "qla: mapping a data buffer failed");
                    return None;
                }
            }
        }
        Some(slices.len())
    }

    fn data_out(&mut self, slot: u32, mut cmd: CmdBox) {
        let len = cmd.data_out_len();
        let mut raw = [(std::ptr::null::<u8>(), 0usize); scst::sgv::MAX_SEGS];
        let mut nseg = 0;
        if let Some(buf) = cmd.buf_mut() {
            let mut s = scst::sgv::empty_io_slices_mut();
            nseg = buf.io_slices_mut(0, len, &mut s);
            for (r, x) in raw.iter_mut().zip(s.iter_mut().take(nseg)) {
                let x: &mut IoSliceMut<'_> = x;
                *r = (x.as_ptr(), x.len());
            }
        }
        let mut dsds = [Dsd::default(); scst::sgv::MAX_SEGS];
        let Some(n) = self.map_slices(&raw[..nseg], &mut dsds) else {
            cmd.check_condition(scst::SenseCode::INTERNAL_TARGET_FAILURE);
            self.respond(slot, cmd);
            return;
        };
        let Some(mut c) = self.base_ctio(slot, ctio_flags::DATA_OUT) else { return };
        c.transfer_length = len as u32;
        let c = Ctio7 { dsds: &dsds[..n], ..c };
        let mut out = [[0u8; ENTRY]; 16];
        let k = c.build(&mut out);
        if let Some(e) = self.exch_mut(slot) {
            e.phase = Phase::DataOut;
            e.cmd = Some(cmd);
        }
        self.post(&out[..k]);
    }

    /// Sends a finished command's data and status.
    fn respond(&mut self, slot: u32, cmd: CmdBox) {
        let Some(e) = self.exch_mut(slot) else { return };
        if e.gone || e.abts.is_some() || e.phase == Phase::AbortCore {
            // The exchange is being (or was) aborted: nothing goes out but the BA_ACC, once
            // the command is back (here) and, for a pending ABORT TASK, its response too.
            let abts = if e.phase == Phase::AbortCore { e.abts.take() } else { None };
            let gone = e.gone;
            drop(cmd);
            if gone || abts.is_some() {
                self.free_slot(slot);
            }
            if let Some(a) = abts {
                self.send_ba_acc(&a);
            }
            return;
        }
        if cmd.is_aborted() {
            if cmd.answers_task_aborted() {
                self.status_ctio(slot, ScsiStatus::TASK_ABORTED.0, (false, 0), &[], Some(cmd));
            } else {
                drop(cmd);
                if let Some(c) = self.base_ctio(slot, ctio_flags::TERMINATE | ctio_flags::STATUS_MODE_1) {
                    let mut out = [[0u8; ENTRY]; 1];
                    c.build(&mut out);
                    if let Some(e) = self.exch_mut(slot) {
                        e.phase = Phase::Final;
                    }
                    self.post(&out);
                }
            }
            return;
        }
        let len = cmd.data_in_len();
        if len == 0 {
            let (status, resid) = (cmd.status().0, cmd.residual());
            let mut sense = [0u8; iocb::CTIO_SENSE_MAX];
            let n = cmd.sense().len().min(sense.len());
            sense[..n].copy_from_slice(&cmd.sense()[..n]);
            self.status_ctio(slot, status, resid, &sense[..n], Some(cmd));
            return;
        }
        let mut raw = [(std::ptr::null::<u8>(), 0usize); scst::sgv::MAX_SEGS];
        let mut dsds = [Dsd::default(); scst::sgv::MAX_SEGS];
        let n = if cmd.data_in_is_zeros() {
            let mut n = 0;
            let mut left = len;
            while left > 0 && n < dsds.len() {
                let k = left.min(ZERO_LEN);
                dsds[n] = Dsd { addr: self.zeros.iova(), len: k as u32 };
                left -= k;
                n += 1;
            }
            Some(n)
        } else {
            let mut s = scst::sgv::empty_io_slices();
            let used = cmd.data_in_slices(0, len, &mut s);
            for (r, x) in raw.iter_mut().zip(s.iter().take(used)) {
                let x: &IoSlice<'_> = x;
                *r = (x.as_ptr(), x.len());
            }
            self.map_slices(&raw[..used], &mut dsds)
        };
        let Some(n) = n else {
            let mut cmd = cmd;
            cmd.check_condition(scst::SenseCode::INTERNAL_TARGET_FAILURE);
            let sense = cmd.sense().to_vec();
            self.status_ctio(slot, ScsiStatus::CHECK_CONDITION.0, (false, 0), &sense, Some(cmd));
            return;
        };
        let sense_follows = !cmd.sense().is_empty();
        let mut flags = ctio_flags::DATA_IN;
        if !sense_follows {
            flags |= ctio_flags::SEND_STATUS;
        }
        let Some(mut c) = self.base_ctio(slot, flags) else { return };
        c.transfer_length = len as u32;
        if !sense_follows {
            let (over, count) = cmd.residual();
            c.scsi_status = u16::from(cmd.status().0) | resid_bits(over, count);
            c.residual = count;
        }
        let c = Ctio7 { dsds: &dsds[..n], ..c };
        let mut out = [[0u8; ENTRY]; 16];
        let k = c.build(&mut out);
        if let Some(e) = self.exch_mut(slot) {
            e.phase = Phase::DataIn { then_status: sense_follows };
            e.cmd = Some(cmd);
        }
        self.post(&out[..k]);
    }

    fn status_ctio(&mut self, slot: u32, status: u8, resid: (bool, u32), sense: &[u8], cmd: Option<CmdBox>) {
        let Some(mut c) = self.base_ctio(slot, ctio_flags::SEND_STATUS | ctio_flags::STATUS_MODE_1) else { return };
        let (over, count) = resid;
        c.scsi_status = u16::from(status) | resid_bits(over, count);
        c.residual = count;
        if !sense.is_empty() {
            c.scsi_status |= ss::SENSE_LEN_VALID;
        }
        let c = Ctio7 { sense, ..c };
        let mut out = [[0u8; ENTRY]; 1];
        c.build(&mut out);
        if let Some(e) = self.exch_mut(slot) {
            e.phase = Phase::Final;
            e.cmd = cmd;
        }
        self.post(&out);
    }

    fn tm_response(&mut self, slot: u32, status: TmStatus) {
        let code = match status {
            TmStatus::COMPLETE | TmStatus::SUCCEEDED => RspCode::TMF_COMPLETE,
            TmStatus::NO_LUN => RspCode::TMF_INCORRECT_LUN,
            TmStatus::NOT_SUPPORTED => RspCode::TMF_REJECTED,
            _ => RspCode::TMF_FAILED,
        };
        self.send_tm_rsp(slot, code.0);
    }

    fn send_tm_rsp(&mut self, slot: u32, code: u8) {
        if self.exch_mut(slot).is_some_and(|e| e.gone) {
            self.free_slot(slot);
            return;
        }
        let Some(mut c) = self.base_ctio(slot, ctio_flags::SEND_STATUS | ctio_flags::STATUS_MODE_1) else { return };
        c.scsi_status = ss::RESPONSE_INFO_LEN_VALID;
        c.rsp_code = Some(code);
        let mut out = [[0u8; ENTRY]; 1];
        c.build(&mut out);
        if let Some(e) = self.exch_mut(slot) {
            e.phase = Phase::Final;
        }
        self.post(&out);
    }

    fn ctio_done(&mut self, d: &CtioDone) {
        let Some(slot) = self.slot_of_handle(d.handle) else {
            if d.handle & MISC_HANDLE == 0 || d.status != ctio_status::SUCCESS {
                tracing::debug!(handle = d.handle, status = d.status, "qla: CTIO completion for no open exchange");
            }
            return;
        };
        let ok = d.status == ctio_status::SUCCESS && d.entry_status == 0;
        if !ok {
            tracing::debug!(slot, status = d.status, entry_status = d.entry_status, "qla: CTIO failed");
        }
        let Some(e) = self.exch_mut(slot) else { return };
        let phase = e.phase;
        let cmd = e.cmd.take();
        if let Some(a) = e.abts.take() {
            drop(cmd);
            self.free_slot(slot);
            self.send_ba_acc(&a);
            return;
        }
        if e.gone {
            drop(cmd);
            self.free_slot(slot);
            return;
        }
        let abort_requested = e.abort_requested;
        match (phase, cmd) {
            (Phase::DataOut, Some(cmd)) if ok && !abort_requested => {
                if let Some(e) = self.exch_mut(slot) {
                    e.phase = Phase::Core;
                }
                let session = cmd.session().clone();
                let step = session.data_received(cmd);
                self.step(slot, step);
            }
            (Phase::DataOut, Some(cmd)) if abort_requested => {
                if let Some(e) = self.exch_mut(slot) {
                    e.phase = Phase::Core;
                }
                self.respond(slot, cmd);
            }
            (Phase::DataIn { then_status: true }, Some(cmd)) if ok => {
                let (status, resid) = (cmd.status().0, cmd.residual());
                let mut sense = [0u8; iocb::CTIO_SENSE_MAX];
                let n = cmd.sense().len().min(sense.len());
                sense[..n].copy_from_slice(&cmd.sense()[..n]);
                self.status_ctio(slot, status, resid, &sense[..n], Some(cmd));
            }
            (_, cmd) => {
                if !ok && matches!(phase, Phase::DataOut | Phase::DataIn { .. }) {
                    // The exchange failed on the wire; the firmware ended it.
                    tracing::debug!(slot, status = d.status, "qla: data transfer failed, exchange dropped");
                }
                drop(cmd);
                self.free_slot(slot);
            }
        }
    }

    fn abts(&mut self, a: AbtsRecv) {
        let Some(&slot) = self.by_addr.get(&a.exchange_addr_to_abort) else {
            tracing::debug!(addr = a.exchange_addr_to_abort, "qla: ABTS for no open exchange");
            self.send_ba_acc(&a);
            return;
        };
        let Some(e) = self.exch_mut(slot) else { return };
        let (tag, port_id, lun) = (e.tag, e.port_id, e.lun);
        match e.phase {
            Phase::Core => {
                e.phase = Phase::AbortCore;
                e.abts = None;
                let session = self.rports.get(&port_id).and_then(|r| r.session.clone());
                let out = session.map(|s| {
                    s.submit_tm(TmRequest { function: TmFunction::ABORT_TASK, lun, ref_tag: tag, tag: tag | ABTS_TAG })
                });
                if let Some(e) = self.exch_mut(slot) {
                    e.abts = Some(a);
                }
                tracing::debug!(slot, ?out, "qla: ABTS -> ABORT TASK");
                match out {
                    Some(TmOutcome::Pending) => {}
                    // The core still owns the command (the exchange is in the core's phase):
                    // whatever ABORT TASK said, the BA_ACC waits for the command to come back
                    // (`respond` sends it), so no CTIO can follow it.
                    Some(TmOutcome::Done(_)) => {}
                    None => {
                        self.free_slot(slot);
                        self.send_ba_acc(&a);
                    }
                }
            }
            Phase::DataOut | Phase::DataIn { .. } | Phase::Final => e.abts = Some(a),
            Phase::Tmf => {
                e.gone = true;
                self.send_ba_acc(&a);
            }
            Phase::AbortCore => {}
        }
    }

    fn send_ba_acc(&mut self, a: &AbtsRecv) {
        let h = self.next_misc_handle();
        self.post(&[a.ba_acc(h)]);
    }

    fn process_async(&mut self) {
        loop {
            let item = self.shared.queue.lock().pop_front();
            let Some(item) = item else { break };
            match item {
                Async::Response(cmd) => match self.slot_of_tag(cmd.tag()) {
                    Some(slot) => self.respond(slot, cmd),
                    None => drop(cmd),
                },
                Async::TmDone(rsp) => {
                    let Some(slot) = self.slot_of_tag(rsp.tag & !ABTS_TAG) else { continue };
                    let Some(e) = self.exch_mut(slot) else { continue };
                    match e.phase {
                        Phase::AbortCore if rsp.tag & ABTS_TAG != 0 => {
                            let a = e.abts.take();
                            self.free_slot(slot);
                            if let Some(a) = a {
                                self.send_ba_acc(&a);
                            }
                        }
                        Phase::Tmf if rsp.tag & ABTS_TAG == 0 => self.tm_response(slot, rsp.status),
                        _ => {}
                    }
                }
                Async::AbortPending(tag) => {
                    let Some(slot) = self.slot_of_tag(tag) else { continue };
                    if let Some(e) = self.exch_mut(slot) {
                        e.abort_requested = true;
                    }
                }
                Async::Close { port_id, session } => {
                    let same =
                        self.rports.get(&port_id).and_then(|r| r.session.as_ref()).is_some_and(|s| s.id() == session);
                    if same {
                        // The firmware keeps the login; the nexus ends here and the initiator's
                        // next command is terminated until it logs in again.
                        self.end_session(port_id);
                    }
                }
            }
        }
    }
}

impl Drop for QlaPort {
    /// Stops the chip (interrupts off, DMA shut down, RISC reset) before the rings and buffers
    /// it may still write are unmapped and freed.
    fn drop(&mut self) {
        self.bus.write32(regs::ICTRL, 0);
        let _ = self.isp.reset(Duration::from_millis(200));
    }
}

fn resid_bits(over: bool, count: u32) -> u16 {
    match (count, over) {
        (0, _) => 0,
        (_, true) => ss::RESIDUAL_OVER,
        (_, false) => ss::RESIDUAL_UNDER,
    }
}

/// A port running on its own thread ([`QlaPort::spawn`]).
pub struct QlaHandle {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<Result<(), QlaError>>>,
}

impl std::fmt::Debug for QlaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QlaHandle").field("info", &self.info()).finish()
    }
}

impl QlaHandle {
    /// The port's state as of its last poll.
    pub fn info(&self) -> QlaInfo {
        self.shared.info.lock().clone()
    }

    /// Whether the port thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the port (sessions end, interrupts off) and returns how it ended.
    ///
    /// # Errors
    /// The firmware error that stopped it earlier, if any.
    pub fn stop(mut self) -> Result<(), QlaError> {
        self.stop.store(true, Ordering::Release);
        self.shared.bus.wake();
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(QlaError::Firmware("port thread panicked".into())),
            None => Err(QlaError::Firmware("port thread could not be started".into())),
        }
    }
}

impl Drop for QlaHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.shared.bus.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
