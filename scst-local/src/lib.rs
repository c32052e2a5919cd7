//! An in-process initiator for scst-rs targets (the loopback fabric, like SCST's scst_local).
//!
//! [`LocalInitiator::execute`] runs one command synchronously with caller-owned buffers;
//! [`LocalInitiator::start`] queues commands without waiting, and their completions arrive, in
//! whatever order they finish, through [`LocalInitiator::next_completion`] as the command objects
//! themselves (no copy of the Data-In). Neither path allocates per command once the session's
//! pools are warm.
//!
//! ```
//! use std::sync::Arc;
//! use scst::{Device, DeviceConfig, Disk, Lun, SgvConfig, SgvPool, Target};
//! use scst_backends::RamStore;
//! use scst_local::LocalInitiator;
//!
//! let target = Target::new("iqn.2026-11.rs.scst:doc", SgvPool::new(SgvConfig::default()));
//! let disk = Disk::new(RamStore::new(1 << 20, 512).unwrap());
//! target.add_lun(Lun(0), Device::new(DeviceConfig::new("doc-ram"), disk).unwrap(), false).unwrap();
//! let init = LocalInitiator::connect(&target, "iqn.2026-11.rs.scst:app");
//! init.clear_unit_attentions(0);
//! let block = [0xabu8; 512];
//! let w = init.execute(0, &[0x2a, 0, 0, 0, 0, 7, 0, 0, 1, 0], &block, &mut []); // WRITE(10) LBA 7
//! assert!(w.is_good());
//! let mut back = [0u8; 512];
//! let r = init.execute(0, &[0x28, 0, 0, 0, 0, 7, 0, 0, 1, 0], &[], &mut back); // READ(10) LBA 7
//! assert!(r.is_good() && back == block);
//! ```
#![deny(unsafe_code)]

#[cfg(all(feature = "tcmu", target_os = "linux"))]
pub mod tcmu;
#[cfg(feature = "vhost-user")]
pub mod vhost_user;
pub mod virtio_scsi;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_channel::{Receiver, Sender};
use crossbeam_queue::ArrayQueue;
use parking_lot::{Condvar, Mutex};
use scst::{
    CmdBox, CmdHeader, DataDir, Lun, ProtocolId, ScsiStatus, Session, SessionConfig, Step, Target, TargetDriver,
    TargetPort, TaskAttr, TmFunction, TmOutcome, TmRequest, TmResponse, TmStatus,
};

/// Commands one local session may have outstanding.
pub const DEPTH: usize = 256;

/// Cookies with this bit belong to synchronous waiters (the rest index nothing).
const SYNC: u64 = 1 << 63;

/// The result of a synchronous command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// SCSI status.
    pub status: ScsiStatus,
    sense: [u8; 32],
    sense_len: u8,
    /// Bytes of Data-In copied to the caller's buffer.
    pub data_in_len: usize,
    /// Residual: `(overflow, count)` as a transport would report it.
    pub residual: (bool, u32),
}

impl Outcome {
    /// The sense data.
    pub fn sense(&self) -> &[u8] {
        &self.sense[..usize::from(self.sense_len)]
    }

    /// Whether the status is GOOD.
    pub fn is_good(&self) -> bool {
        self.status == ScsiStatus::GOOD
    }

    /// The (key, ASC, ASCQ) of the sense data, if any.
    pub fn sense_code(&self) -> Option<scst::SenseCode> {
        scst::Sense::parse_code(self.sense())
    }

    fn status_only(status: ScsiStatus) -> Self {
        Self { status, sense: [0; 32], sense_len: 0, data_in_len: 0, residual: (false, 0) }
    }

    fn from_cmd(cmd: &CmdBox, data_in: &mut [u8]) -> Self {
        if cmd.answers_task_aborted() {
            return Self::status_only(ScsiStatus::TASK_ABORTED);
        }
        let mut o = Self::status_only(cmd.status());
        let s = cmd.sense();
        o.sense[..s.len()].copy_from_slice(s);
        o.sense_len = s.len() as u8;
        let n = cmd.data_in_len().min(data_in.len());
        let mut iov = scst::sgv::empty_io_slices();
        let k = cmd.data_in_slices(0, n, &mut iov);
        let mut at = 0;
        for sl in &iov[..k] {
            data_in[at..at + sl.len()].copy_from_slice(sl);
            at += sl.len();
        }
        o.data_in_len = n;
        o.residual = cmd.residual();
        o
    }
}

struct Waiter {
    cmd: Mutex<Option<CmdBox>>,
    cv: Condvar,
}

/// The fabric side: routes asynchronous completions to waiters or the completion channel.
struct Fabric {
    waiters: Box<[Waiter]>,
    free: ArrayQueue<usize>,
    done_tx: Sender<CmdBox>,
    tm: Mutex<Option<TmResponse>>,
    tm_cv: Condvar,
}

impl TargetDriver for Fabric {
    fn xmit_response(&self, cmd: CmdBox) {
        if cmd.fabric_cookie & SYNC != 0 {
            let w = &self.waiters[(cmd.fabric_cookie & !SYNC) as usize];
            *w.cmd.lock() = Some(cmd);
            w.cv.notify_one();
        } else {
            // Bounded by the session depth: never full.
            let _ = self.done_tx.try_send(cmd);
        }
    }

    fn tm_done(&self, rsp: TmResponse) {
        *self.tm.lock() = Some(rsp);
        self.tm_cv.notify_all();
    }
}

/// One local I_T nexus to a target.
pub struct LocalInitiator {
    session: Arc<Session>,
    fabric: Arc<Fabric>,
    done_rx: Receiver<CmdBox>,
    next_tag: AtomicU64,
}

impl std::fmt::Debug for LocalInitiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalInitiator").field("session", &self.session).finish()
    }
}

impl LocalInitiator {
    /// Logs `initiator_name` in to `target` through a local port (relative port 1).
    pub fn connect(target: &Arc<Target>, initiator_name: &str) -> Self {
        Self::connect_port(target, initiator_name, 1)
    }

    /// Like [`LocalInitiator::connect`], through relative target port `rel_port_id` (in target
    /// port group 1).
    pub fn connect_port(target: &Arc<Target>, initiator_name: &str, rel_port_id: u16) -> Self {
        Self::connect_tpg(target, initiator_name, rel_port_id, 1)
    }

    /// Like [`LocalInitiator::connect_port`], through a port of target port group `tpg_id`
    /// (ALUA).
    pub fn connect_tpg(target: &Arc<Target>, initiator_name: &str, rel_port_id: u16, tpg_id: u16) -> Self {
        let (done_tx, done_rx) = crossbeam_channel::bounded(DEPTH);
        let fabric = Arc::new(Fabric {
            waiters: (0..DEPTH).map(|_| Waiter { cmd: Mutex::new(None), cv: Condvar::new() }).collect(),
            free: {
                let q = ArrayQueue::new(DEPTH);
                for i in 0..DEPTH {
                    let _ = q.push(i);
                }
                q
            },
            done_tx,
            tm: Mutex::new(None),
            tm_cv: Condvar::new(),
        });
        let port = Arc::new(TargetPort {
            protocol: ProtocolId::NONE,
            rel_port_id,
            name: format!("{},t,0x{rel_port_id:04x}", target.name()),
            version_descriptor: 0,
            tpg_id,
        });
        let cfg = SessionConfig {
            initiator_name: initiator_name.to_string(),
            initiator_port: format!("{initiator_name},i,local"),
            port,
            depth: DEPTH,
        };
        let session = target.register_session(cfg, fabric.clone());
        Self { session, fabric, done_rx, next_tag: AtomicU64::new(1) }
    }

    /// The session.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    fn header<'a>(&self, lun: u16, cdb: &'a [u8], expected_len: u32, dir: DataDir, attr: TaskAttr) -> CmdHeader<'a> {
        CmdHeader {
            lun: Lun(lun).to_sam(),
            cdb,
            attr,
            tag: self.next_tag.fetch_add(1, Relaxed),
            expected_len,
            expected_dir: dir,
        }
    }

    /// Runs one command and waits for it. Data-Out comes from `data_out` (its length is the
    /// expected transfer length of a write); Data-In lands in `data_in` (its length is the
    /// expected transfer length of a read). Never allocates once warm.
    pub fn execute(&self, lun: u16, cdb: &[u8], data_out: &[u8], data_in: &mut [u8]) -> Outcome {
        self.execute_attr(lun, cdb, data_out, data_in, TaskAttr::Simple)
    }

    /// [`LocalInitiator::execute`] with a task attribute.
    pub fn execute_attr(&self, lun: u16, cdb: &[u8], data_out: &[u8], data_in: &mut [u8], attr: TaskAttr) -> Outcome {
        let (len, dir) = if data_out.is_empty() {
            (data_in.len(), if data_in.is_empty() { DataDir::None } else { DataDir::In })
        } else {
            (data_out.len(), DataDir::Out)
        };
        let hdr = self.header(lun, cdb, len as u32, dir, attr);
        let Ok(mut cmd) = self.session.alloc_cmd(&hdr) else {
            return Outcome::status_only(ScsiStatus::TASK_SET_FULL);
        };
        let Some(slot) = self.fabric.free.pop() else {
            return Outcome::status_only(ScsiStatus::TASK_SET_FULL);
        };
        cmd.fabric_cookie = SYNC | slot as u64;
        let step = self.session.submit(cmd);
        let done = match self.drive(step, data_out) {
            Some(cmd) => cmd,
            None => {
                let w = &self.fabric.waiters[slot];
                let mut g = w.cmd.lock();
                while g.is_none() {
                    w.cv.wait(&mut g);
                }
                g.take().expect("waited for it")
            }
        };
        let o = Outcome::from_cmd(&done, data_in);
        drop(done);
        let _ = self.fabric.free.push(slot);
        o
    }

    /// Supplies Data-Out for a step that needs it; returns the command if it completed inline.
    fn drive(&self, mut step: Step, data_out: &[u8]) -> Option<CmdBox> {
        loop {
            match step {
                Step::NeedData(mut cmd) => {
                    let n = cmd.data_out_len().min(data_out.len());
                    if let Some(b) = cmd.buf_mut() {
                        b.write_at(0, &data_out[..n]);
                    }
                    step = self.session.data_received(cmd);
                }
                Step::Done(cmd) => return Some(cmd),
                Step::Pending => return None,
            }
        }
    }

    /// Queues a command without waiting for it. Its completion (the command itself) comes out of
    /// [`LocalInitiator::next_completion`] with [`scst::Cmd::fabric_cookie`] set to `cookie`
    /// (which must not have bit 63 set).
    ///
    /// # Errors
    /// [`scst::QueueFull`] when [`DEPTH`] commands are outstanding.
    pub fn start(
        &self,
        lun: u16,
        cdb: &[u8],
        data_out: &[u8],
        expected_in: u32,
        cookie: u64,
    ) -> Result<(), scst::QueueFull> {
        self.start_attr(lun, cdb, data_out, expected_in, cookie, TaskAttr::Simple)
    }

    /// [`LocalInitiator::start`] with a task attribute (ORDERED, HEAD OF QUEUE, ...).
    ///
    /// # Errors
    /// [`scst::QueueFull`] when [`DEPTH`] commands are outstanding.
    pub fn start_attr(
        &self,
        lun: u16,
        cdb: &[u8],
        data_out: &[u8],
        expected_in: u32,
        cookie: u64,
        attr: TaskAttr,
    ) -> Result<(), scst::QueueFull> {
        let (len, dir) = if !data_out.is_empty() {
            (data_out.len() as u32, DataDir::Out)
        } else if expected_in > 0 {
            (expected_in, DataDir::In)
        } else {
            (0, DataDir::None)
        };
        let hdr = self.header(lun, cdb, len, dir, attr);
        let mut cmd = self.session.alloc_cmd(&hdr)?;
        cmd.fabric_cookie = cookie & !SYNC;
        let step = self.session.submit(cmd);
        if let Some(cmd) = self.drive(step, data_out) {
            let _ = self.fabric.done_tx.try_send(cmd);
        }
        Ok(())
    }

    /// Waits for the next completion of a command queued with [`LocalInitiator::start`]. Drop
    /// it when done with its Data-In ([`scst::Cmd::data_in_slices`]).
    ///
    /// Commands a task management function aborted come back too ([`scst::Cmd::is_aborted`];
    /// status TASK ABORTED when they never ran), where a wire transport would send nothing: the
    /// local initiator shows them so callers can tell. The function's response waits until they
    /// are dropped.
    pub fn next_completion(&self) -> CmdBox {
        self.done_rx.recv().expect("the fabric lives as long as the initiator")
    }

    /// The next completion of a command queued with [`LocalInitiator::start`], if one is ready;
    /// never waits.
    pub fn try_completion(&self) -> Option<CmdBox> {
        self.done_rx.try_recv().ok()
    }

    /// Issues a task management function and waits for its response.
    pub fn task_mgmt(&self, function: TmFunction, lun: u16, ref_tag: u64) -> TmStatus {
        let req = TmRequest { function, lun: Lun(lun).to_sam(), ref_tag, tag: self.next_tag.fetch_add(1, Relaxed) };
        *self.fabric.tm.lock() = None;
        match self.session.submit_tm(req) {
            TmOutcome::Done(r) => r.status,
            TmOutcome::Pending => {
                let mut g = self.fabric.tm.lock();
                while g.is_none() {
                    self.fabric.tm_cv.wait(&mut g);
                }
                g.take().map_or(TmStatus::REJECTED, |r| r.status)
            }
        }
    }

    /// Sends TEST UNIT READY until it returns something other than UNIT ATTENTION, as
    /// initiators do after login. Returns the final outcome.
    pub fn clear_unit_attentions(&self, lun: u16) -> Outcome {
        loop {
            let o = self.execute(lun, &[0; 6], &[], &mut []);
            if o.sense_code().is_none_or(|c| c.key != scst::SenseKey::UNIT_ATTENTION) {
                return o;
            }
        }
    }

    /// The tag the next command will get (tests use it for ABORT TASK).
    pub fn peek_next_tag(&self) -> u64 {
        self.next_tag.load(Relaxed)
    }
}

impl Drop for LocalInitiator {
    fn drop(&mut self) {
        self.session.close();
    }
}
