//! # isp-model: a register-level model of a QLogic ISP24xx/25xx host interface (target mode)
//!
//! The model stands in for the HBA behind a user-space qla2x00t driver: it answers the
//! driver's 32-bit register accesses to BAR0 ([`IspModel::mmio_read32`] /
//! [`IspModel::mmio_write32`]), runs mailbox commands, loads and checks a firmware image, reads
//! the init control block and the rings out of the driver's DMA memory ([`HostMemory`]) and
//! plays the FC side: scripted remote initiators ([`Initiator`]) log in (IMMEDIATE NOTIFY),
//! send FCP commands (ATIO type 7), aborts (ABTS RECEIVED) and task management, and see the
//! driver's answers (CTIO type 7, NOTIFY ACK, ABTS RESPONSE) as [`Completion`]s.
//!
//! Everything the driver does wrong is recorded in [`IspModel::errors`] and answered as the chip
//! would (an error status in the returned IOCB, a mailbox error status, a system error async
//! event); nothing the driver writes makes the model panic.
//!
//! Layout facts the model relies on (each derived from reading the Linux qla2xxx headers and
//! FreeBSD's isp driver, independently of the driver):
//!
//! * Registers (byte offsets in BAR0): flash_addr 0x00, flash_data 0x04, ctrl_status 0x08,
//!   ictrl 0x0c, istatus 0x10, req_q_in 0x1c, req_q_out 0x20, rsp_q_in 0x24, rsp_q_out 0x28,
//!   preq_q_in 0x2c, preq_q_out 0x30, atio_q_in 0x3c, atio_q_out 0x40, host_status 0x44,
//!   hccr 0x48, gpiod 0x4c, gpioe 0x50, iobase_addr 0x54, mailbox0..31 at 0x80 + 2 * n
//!   (16-bit registers: a 32-bit write at 0x80 + 2n sets mailbox n from the low half, a 32-bit
//!   read returns mailbox n in the low half and mailbox n+1 in the high half).
//! * host_status: bit 15 RISC interrupt, low byte the interrupt type (0x01/0x02 ROM mailbox
//!   done ok/failed, 0x10/0x11 mailbox done ok/failed, 0x12 async event, 0x13 response queue,
//!   0x1c ATIO queue, 0x1d ATIO and response queue), high 16 bits mailbox 0 (the async event
//!   code or the mailbox status).
//! * IMMEDIATE NOTIFY (PLOGI/PRLI/LOGO) and ATIO type 7 go to the ATIO ring; CTIO type 7
//!   completions, NOTIFY ACK completions, ABTS RECEIVED and ABTS RESPONSE completions go to the
//!   response ring.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Memory the driver made visible to the device (its DMA mappings), addressed by IOVA.
pub trait HostMemory: Send + Sync {
    /// Reads `buf.len()` bytes at `iova` (a device read: DMA from host memory).
    fn read(&self, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault>;
    /// Writes `data` at `iova` (a device write: DMA to host memory).
    fn write(&self, iova: u64, data: &[u8]) -> Result<(), DmaFault>;
}

/// An access outside every mapping (what an IOMMU would fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("DMA fault at {iova:#x} (+{len})")]
pub struct DmaFault {
    /// The first address of the access.
    pub iova: u64,
    /// Its length in bytes.
    pub len: usize,
}

/// The chip the model plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chip {
    /// ISP2432 (4 Gb/s, PCI device id 0x2432).
    Isp2432,
    /// ISP2532 (8 Gb/s, PCI device id 0x2532).
    Isp2532,
}

impl Chip {
    /// The PCI device id.
    pub fn device_id(self) -> u16 {
        match self {
            Self::Isp2432 => 0x2432,
            Self::Isp2532 => 0x2532,
        }
    }
}

/// How the model is built.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The chip (PCI device id 0x2432 / 0x2532).
    pub chip: Chip,
    /// The HBA port's WWPN (in the NVRAM image; the init control block's name is used).
    pub wwpn: u64,
    /// The HBA port's WWNN.
    pub wwnn: u64,
    /// The N_Port ID the fabric assigns at link up.
    pub port_id: u32,
    /// Firmware exchange count: ATIOs it can have outstanding (the init control block's
    /// exchange count, when smaller and not 0, lowers it).
    pub exchanges: u16,
    /// Whether the link is up when the firmware initializes.
    pub link_up: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            chip: Chip::Isp2532,
            wwpn: 0x2100_0024_ff00_0001,
            wwnn: 0x2000_0024_ff00_0001,
            port_id: 0x01_0200,
            exchanges: 2048,
            link_up: true,
        }
    }
}

/// Where the chip is in its bring-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    /// Held in reset (soft reset or RISC reset), or the ROM code still starting
    /// (mailbox 0 reads busy).
    Reset,
    /// The ROM code runs: mailbox commands for loading firmware are accepted.
    RomCode,
    /// EXECUTE FIRMWARE succeeded; waiting for INITIALIZE FIRMWARE.
    FirmwareRunning,
    /// INITIALIZE FIRMWARE succeeded: rings are live.
    Initialized,
}

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next mailbox command never completes (no status, no interrupt).
    MailboxSilent,
    /// The firmware holds every new ATIO / IMMEDIATE NOTIFY as if the ATIO ring were full,
    /// until the driver next writes the ATIO out-pointer.
    AtioRingFull,
    /// The next CTIO type 7 completes with this completion status (and moves no data).
    CtioStatus(u16),
    /// A system error async event (0x8002) is posted now.
    SystemError,
}

/// Task management functions (FCP_CMND task management flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskMgmt {
    /// ABORT TASK SET (bit 1).
    AbortTaskSet,
    /// CLEAR TASK SET (bit 2).
    ClearTaskSet,
    /// LOGICAL UNIT RESET (bit 4).
    LunReset,
    /// TARGET RESET (bit 5).
    TargetReset,
    /// CLEAR ACA (bit 6).
    ClearAca,
}

impl TaskMgmt {
    fn flags(self) -> u8 {
        match self {
            Self::AbortTaskSet => 0x02,
            Self::ClearTaskSet => 0x04,
            Self::LunReset => 0x10,
            Self::TargetReset => 0x20,
            Self::ClearAca => 0x40,
        }
    }
}

/// The command's end as the initiator saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// SCSI status byte.
    pub scsi_status: u8,
    /// Sense data (FCP_SNS_INFO).
    pub sense: Vec<u8>,
    /// The Data-In bytes the target sent.
    pub data_in: Vec<u8>,
    /// The residual the target reported: > 0 under (FCP_RESID_UNDER), < 0 over.
    pub residual: i64,
    /// The exchange ended by ABTS (BA_ACC), terminate, logout or link loss, without status.
    pub aborted: bool,
    /// Data-In frames the model split the data into (by the negotiated frame size).
    pub frames_in: usize,
    /// For task management: the FCP_RSP_INFO response code the target sent.
    pub tm_response: Option<u8>,
    /// The Data-Out bytes the target fetched (the initiator's data_out, as far as requested).
    pub data_out_sent: usize,
}

/// Counters tests can assert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Mailbox commands completed.
    pub mailbox_commands: u64,
    /// ATIO type 7 entries written into the ATIO ring.
    pub atios_posted: u64,
    /// IMMEDIATE NOTIFY entries written into the ATIO ring.
    pub notifies_posted: u64,
    /// ATIO-ring entries waiting inside the model (ring full or held).
    pub atio_backlog: usize,
    /// Response-ring entries waiting inside the model (ring full).
    pub rsp_backlog: usize,
    /// CTIO type 7 IOCBs consumed.
    pub ctios: u64,
    /// Request-ring entries consumed (all types).
    pub request_entries: u64,
    /// Interrupts raised (calls of the irq callback).
    pub interrupts: u64,
    /// The negotiated frame payload size (0 before INITIALIZE FIRMWARE).
    pub frame_size: u16,
    /// Exchanges the firmware currently holds open.
    pub open_exchanges: usize,
}

// ---------------------------------------------------------------------------------------------
// Constants (derived from qla_def.h / qla_fw.h / qla_target.h).

const REG_FLASH_ADDR: u32 = 0x00;
const REG_FLASH_DATA: u32 = 0x04;
const REG_CTRL_STATUS: u32 = 0x08;
const REG_ICTRL: u32 = 0x0c;
const REG_ISTATUS: u32 = 0x10;
const REG_REQ_IN: u32 = 0x1c;
const REG_REQ_OUT: u32 = 0x20;
const REG_RSP_IN: u32 = 0x24;
const REG_RSP_OUT: u32 = 0x28;
const REG_PREQ_IN: u32 = 0x2c;
const REG_PREQ_OUT: u32 = 0x30;
const REG_ATIO_IN: u32 = 0x3c;
const REG_ATIO_OUT: u32 = 0x40;
const REG_HOST_STATUS: u32 = 0x44;
const REG_HCCR: u32 = 0x48;
const REG_GPIOD: u32 = 0x4c;
const REG_GPIOE: u32 = 0x50;
const REG_IOBASE_ADDR: u32 = 0x54;
const REG_MAILBOX0: u32 = 0x80;
const REG_MAILBOX_END: u32 = 0xc0;

const CSRX_DMA_ACTIVE: u32 = 1 << 17;
const CSRX_DMA_SHUTDOWN: u32 = 1 << 16;
const CSRX_ISP_SOFT_RESET: u32 = 1 << 0;
const ICRX_EN_RISC_INT: u32 = 1 << 3;
const ISRX_RISC_INT: u32 = 1 << 3;
const HSRX_RISC_INT: u32 = 1 << 15;
const HCCRX_RISC_RESET: u32 = 1 << 5;

const INTR_ROM_MB_SUCCESS: u8 = 0x01;
const INTR_ROM_MB_FAILED: u8 = 0x02;
const INTR_MB_SUCCESS: u8 = 0x10;
const INTR_MB_FAILED: u8 = 0x11;
const INTR_ASYNC_EVENT: u8 = 0x12;
const INTR_RSP_QUE_UPDATE: u8 = 0x13;
const INTR_ATIO_QUE_UPDATE: u8 = 0x1c;
const INTR_ATIO_RSP_QUE_UPDATE: u8 = 0x1d;

const MBS_COMMAND_COMPLETE: u16 = 0x4000;
const MBS_INVALID_COMMAND: u16 = 0x4001;
const MBS_COMMAND_ERROR: u16 = 0x4005;
const MBS_COMMAND_PARAMETER_ERROR: u16 = 0x4006;
const MBS_CHECKSUM_ERROR: u16 = 0x4010;
const MBS_BUSY: u16 = 0x0004;

const MBC_EXECUTE_FIRMWARE: u16 = 0x02;
const MBC_MAILBOX_REGISTER_TEST: u16 = 0x06;
const MBC_VERIFY_CHECKSUM: u16 = 0x07;
const MBC_ABOUT_FIRMWARE: u16 = 0x08;
const MBC_LOAD_RISC_RAM_EXTENDED: u16 = 0x0b;
const MBC_GET_ADAPTER_LOOP_ID: u16 = 0x20;
const MBC_GET_FIRMWARE_OPTION: u16 = 0x28;
const MBC_SET_FIRMWARE_OPTION: u16 = 0x38;
const MBC_GET_RESOURCE_COUNTS: u16 = 0x42;
const MBC_MID_INITIALIZE_FIRMWARE: u16 = 0x48;
const MBC_INITIALIZE_FIRMWARE: u16 = 0x60;
const MBC_GET_PORT_DATABASE: u16 = 0x64;
const MBC_GET_FIRMWARE_STATE: u16 = 0x69;
const MBC_GET_ID_LIST: u16 = 0x7c;

const MBA_SYSTEM_ERR: u16 = 0x8002;
const MBA_REQ_TRANSFER_ERR: u16 = 0x8003;
const MBA_RSP_TRANSFER_ERR: u16 = 0x8004;
const MBA_LOOP_UP: u16 = 0x8011;
const MBA_LOOP_DOWN: u16 = 0x8012;
const MBA_PORT_UPDATE: u16 = 0x8014;

const FSTATE_READY: u16 = 3;
const FSTATE_LOSS_OF_SYNC: u16 = 4;

const IOCB: usize = 64;
const ET_MARKER: u8 = 0x04;
const ET_ATIO7: u8 = 0x06;
const ET_CONT_A64: u8 = 0x0a;
const ET_IMMED_NOTIFY: u8 = 0x0d;
const ET_NOTIFY_ACK: u8 = 0x0e;
const ET_CTIO7: u8 = 0x12;
const ET_ABTS_RECV: u8 = 0x54;
const ET_ABTS_RESP: u8 = 0x55;

const RF_INV_E_PARAM: u8 = 1 << 3;
const RF_INV_E_TYPE: u8 = 1 << 2;
const RF_INV_E_COUNT: u8 = 1 << 4;

const CTIO7_FLAGS_SEND_STATUS: u16 = 1 << 15;
const CTIO7_FLAGS_TERMINATE: u16 = 1 << 14;
const CTIO7_FLAGS_DONT_RET_CTIO: u16 = 1 << 8;
const CTIO7_FLAGS_DSD_PTR: u16 = 1 << 2;
const CTIO7_FLAGS_DATA_IN: u16 = 1 << 1;
const CTIO7_FLAGS_DATA_OUT: u16 = 1 << 0;

const CTIO_SUCCESS: u16 = 0x01;
const CTIO_ABORTED: u16 = 0x02;
const CTIO_INVALID_RX_ID: u16 = 0x08;
const CTIO_PORT_LOGGED_OUT: u16 = 0x29;

const SS_RESIDUAL_UNDER: u16 = 1 << 11;
const SS_RESIDUAL_OVER: u16 = 1 << 10;
const SS_SENSE_LEN_VALID: u16 = 1 << 9;
const SS_RESPONSE_INFO_LEN_VALID: u16 = 1 << 8;

const IMM_NTFY_ELS: u16 = 0x46;
const ELS_PLOGI: u8 = 0x03;
const ELS_LOGO: u8 = 0x05;
const ELS_PRLI: u8 = 0x20;
const NOTIFY_ACK_FLAGS_TERMINATE: u16 = 1 << 3;
const NOTIFY_ACK_SUCCESS: u16 = 0x01;

const ABTS_RESP_COMPL_SUBCODE_ERROR: u16 = 0x31;
const BA_ACC_RCTL: u8 = 0x84;
const BA_RJT_RCTL: u8 = 0x85;

const EXCHANGE_UNKNOWN: u32 = 0xffff_ffff;
const MAX_TRANSFER: u64 = 64 << 20;
const ICB_SIZE: usize = 128;
const NVRAM_BASE_FUNC0: u32 = 0x80;
const NVRAM_WORDS: usize = 128;
const FARX_DATA_FLAG: u32 = 1 << 31;
const FARX_ACCESS_NVRAM_DATA: u32 = 0x7ffe_0000;

/// RISC addresses and version of the synthetic firmware.
const FW_SEG1_ADDR: u32 = 0x0010_0000;
const FW_SEG2_ADDR: u32 = 0x0018_0000;
const FW_VERSION: (u32, u32, u32) = (8, 7, 0);
const FW_ATTRIBUTES: u32 = 0x0000_0084;

// ---------------------------------------------------------------------------------------------
// Little helpers on 64-byte entries.

fn get16(b: &[u8], off: usize) -> u16 {
    match b.get(off..off + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}
fn get32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}
fn get64(b: &[u8], off: usize) -> u64 {
    u64::from(get32(b, off)) | (u64::from(get32(b, off + 4)) << 32)
}
fn get_le24(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 3) {
        Some(s) => u32::from(s[0]) | (u32::from(s[1]) << 8) | (u32::from(s[2]) << 16),
        None => 0,
    }
}
fn put16(b: &mut [u8], off: usize, v: u16) {
    if let Some(s) = b.get_mut(off..off + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
fn put_le24(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off + 3) {
        s.copy_from_slice(&v.to_le_bytes()[..3]);
    }
}
fn put_be24(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off + 3) {
        s.copy_from_slice(&v.to_be_bytes()[1..]);
    }
}

/// The 8-byte FCP_LUN for a LUN number: single-level peripheral (< 256) or flat (< 16384)
/// addressing; larger values are taken as the 8-byte FCP_LUN itself (big-endian).
fn fcp_lun(lun: u64) -> [u8; 8] {
    let mut out = [0u8; 8];
    if lun < 256 {
        out[1] = lun as u8;
    } else if lun < 0x4000 {
        out[0] = 0x40 | ((lun >> 8) as u8 & 0x3f);
        out[1] = lun as u8;
    } else {
        out = lun.to_be_bytes();
    }
    out
}

fn wwn_bytes(w: u64) -> [u8; 8] {
    w.to_be_bytes()
}

// ---------------------------------------------------------------------------------------------
// Internal state.

#[derive(Debug, Clone, Copy)]
struct Ring {
    base: u64,
    len: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Login {
    None,
    PlogiSent,
    PlogiAcked,
    PrliSent,
    LoggedIn,
    LogoSent,
}

#[derive(Debug)]
struct Remote {
    wwpn: u64,
    handle: u16,
    login: Login,
    next_ox_id: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotifyKind {
    Plogi,
    Prli,
    Logo,
}

#[derive(Debug)]
struct Exchange {
    port_id: u32,
    handle: u16,
    ox_id: u16,
    fcp_dl: u32,
    data_out: Vec<u8>,
    data_in: Vec<u8>,
    data_out_sent: usize,
    frames_in: usize,
    abts_pending: bool,
    is_tm: bool,
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Mailbox { mb0: u16, rom: bool },
    Async([u16; 4]),
    Queues { rsp: bool, atio: bool },
}

struct Inner {
    cfg: ModelConfig,
    state: ModelState,
    ctrl_status: u32,
    soft_reset_reads: u32,
    rom_busy_reads: u32,
    risc_held: bool,
    ictrl: u32,
    flash_addr: u32,
    flash_data: u32,
    gpiod: u32,
    gpioe: u32,
    iobase: u32,
    mb: [u16; 32],
    // firmware
    ram: Vec<(u32, Vec<u32>)>,
    fw_running_addr: Option<u32>,
    fw_options: [u16; 3],
    // rings
    req: Option<Ring>,
    rsp: Option<Ring>,
    atio: Option<Ring>,
    req_out: u16,
    req_in: u16,
    rsp_in: u16,
    rsp_out: u16,
    atio_in: u16,
    atio_out: u16,
    frame_size: u16,
    exchange_limit: u16,
    port_wwpn: u64,
    port_wwnn: u64,
    // interrupts
    current: Option<Pending>,
    host_status: u32,
    mbox_done: Option<(Vec<(usize, u16)>, bool)>,
    asyncs: VecDeque<[u16; 4]>,
    rsp_update: bool,
    atio_update: bool,
    // backlogs
    atio_backlog: VecDeque<[u8; IOCB]>,
    rsp_backlog: VecDeque<[u8; IOCB]>,
    hold_atio: bool,
    // faults
    mailbox_silent: bool,
    ctio_status: Option<u16>,
    // fabric
    link_up: bool,
    remotes: HashMap<u32, Remote>,
    next_handle: u16,
    next_xaddr: u32,
    notifies: HashMap<u32, (u32, NotifyKind)>,
    exchanges: HashMap<u32, Exchange>,
    overflow: HashMap<(u32, u16), Exchange>,
    overflow_tags: HashMap<(u32, u16), u32>,
    ended: HashMap<u32, u16>,
    abts: HashMap<u32, u32>,
    completions: HashMap<u32, Completion>,
    errors: Vec<String>,
    stats: ModelStats,
}

/// A model of one ISP24xx/25xx function. Send + Sync; every entry point takes the model's lock
/// and calls the irq callback after releasing it.
pub struct IspModel {
    me: Weak<Self>,
    inner: Mutex<Inner>,
    done: Condvar,
    mem: Arc<dyn HostMemory>,
    irq: Arc<dyn Fn(u16) + Send + Sync>,
}

impl std::fmt::Debug for IspModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IspModel").field("state", &self.state()).finish()
    }
}

impl IspModel {
    /// Builds the model. `irq` is called (without the model's locks held, maybe from inside an
    /// [`mmio_write32`](Self::mmio_write32) on the driver's thread) whenever the model raises
    /// its interrupt; the argument is the vector (always 0: INTx/MSI). It must not block.
    pub fn new(cfg: ModelConfig, mem: Arc<dyn HostMemory>, irq: Arc<dyn Fn(u16) + Send + Sync>) -> Arc<Self> {
        let link_up = cfg.link_up;
        let inner = Inner {
            port_wwpn: cfg.wwpn,
            port_wwnn: cfg.wwnn,
            cfg,
            state: ModelState::RomCode,
            ctrl_status: 0,
            soft_reset_reads: 0,
            rom_busy_reads: 0,
            risc_held: false,
            ictrl: 0,
            flash_addr: 0,
            flash_data: 0,
            gpiod: 0,
            gpioe: 0,
            iobase: 0,
            mb: [0; 32],
            ram: Vec::new(),
            fw_running_addr: None,
            fw_options: [0; 3],
            req: None,
            rsp: None,
            atio: None,
            req_out: 0,
            req_in: 0,
            rsp_in: 0,
            rsp_out: 0,
            atio_in: 0,
            atio_out: 0,
            frame_size: 0,
            exchange_limit: 0,
            current: None,
            host_status: 0,
            mbox_done: None,
            asyncs: VecDeque::new(),
            rsp_update: false,
            atio_update: false,
            atio_backlog: VecDeque::new(),
            rsp_backlog: VecDeque::new(),
            hold_atio: false,
            mailbox_silent: false,
            ctio_status: None,
            link_up,
            remotes: HashMap::new(),
            next_handle: 1,
            next_xaddr: 0x0000_1000,
            notifies: HashMap::new(),
            exchanges: HashMap::new(),
            overflow: HashMap::new(),
            overflow_tags: HashMap::new(),
            ended: HashMap::new(),
            abts: HashMap::new(),
            completions: HashMap::new(),
            errors: Vec::new(),
            stats: ModelStats::default(),
        };
        Arc::new_cyclic(|me| Self { me: me.clone(), inner: Mutex::new(inner), done: Condvar::new(), mem, irq })
    }

    /// PCI vendor and device id (0x1077, 0x2432 / 0x2532).
    pub fn pci_ids(&self) -> (u16, u16) {
        (0x1077, self.inner.lock().cfg.chip.device_id())
    }

    /// PCI subsystem vendor and subsystem id (QLogic's own boards: 0x1077, 0x015c / 0x015d).
    pub fn pci_subsystem_ids(&self) -> (u16, u16) {
        match self.inner.lock().cfg.chip {
            Chip::Isp2432 => (0x1077, 0x0138),
            Chip::Isp2532 => (0x1077, 0x015d),
        }
    }

    /// Where the chip is in its bring-up.
    pub fn state(&self) -> ModelState {
        self.inner.lock().state
    }

    /// Everything the driver did wrong, in order (tests assert it is empty).
    pub fn errors(&self) -> Vec<String> {
        self.inner.lock().errors.clone()
    }

    /// Counters and the negotiated parameters.
    pub fn stats(&self) -> ModelStats {
        let g = self.inner.lock();
        let mut s = g.stats.clone();
        s.atio_backlog = g.atio_backlog.len();
        s.rsp_backlog = g.rsp_backlog.len();
        s.frame_size = g.frame_size;
        s.open_exchanges = g.exchanges.len() + g.overflow.len();
        s
    }

    /// Injects a fault.
    pub fn inject(&self, fault: Fault) {
        let fire = {
            let mut g = self.inner.lock();
            match fault {
                Fault::MailboxSilent => g.mailbox_silent = true,
                Fault::AtioRingFull => g.hold_atio = true,
                Fault::CtioStatus(s) => g.ctio_status = Some(s),
                Fault::SystemError => g.asyncs.push_back([MBA_SYSTEM_ERR, 0, 0, 0]),
            }
            g.flush(&*self.mem);
            g.present()
        };
        self.fire(fire);
    }

    /// The 32-bit register window of BAR0 (struct device_reg_24xx), offsets in bytes.
    pub fn mmio_read32(&self, offset: u32) -> u32 {
        let mut g = self.inner.lock();
        g.read_reg(offset)
    }

    /// A 32-bit register write to BAR0.
    pub fn mmio_write32(&self, offset: u32, value: u32) {
        let fire = {
            let mut g = self.inner.lock();
            g.write_reg(&*self.mem, offset, value)
        };
        self.done.notify_all();
        self.fire(fire);
    }

    fn fire(&self, fire: bool) {
        if fire {
            self.inner.lock().stats.interrupts += 1;
            (self.irq)(0);
        }
    }

    /// A firmware file in the layout of ql2400_fw.bin / ql2500_fw.bin: two segments of
    /// big-endian 32-bit words, each with a four-word header (word 2 the RISC load address,
    /// word 3 the segment length in words, header included); the first segment's words 4..7
    /// are the version (major, minor, subminor) and attributes. Each segment's words sum to 0
    /// (what VERIFY CHECKSUM checks). `corrupt` flips a word so the checksum fails.
    pub fn synthetic_firmware(chip: Chip, corrupt: bool) -> Vec<u8> {
        let mut words = Vec::new();
        let seed = u32::from(chip.device_id());
        for (addr, len) in [(FW_SEG1_ADDR, 512u32), (FW_SEG2_ADDR, 256u32)] {
            let mut seg = vec![0u32; len as usize];
            seg[0] = 0x4953_5000 | seed; // "ISP" + chip
            seg[1] = seed << 16 | 0x0001;
            seg[2] = addr;
            seg[3] = len;
            let mut x = 0x1234_5678u32 ^ addr ^ seed;
            for w in seg.iter_mut().skip(4) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *w = x;
            }
            if addr == FW_SEG1_ADDR {
                seg[4] = FW_VERSION.0;
                seg[5] = FW_VERSION.1;
                seg[6] = FW_VERSION.2;
                seg[7] = FW_ATTRIBUTES;
            }
            let last = len as usize - 1;
            seg[last] = 0;
            let sum = seg.iter().fold(0u32, |a, w| a.wrapping_add(*w));
            seg[last] = 0u32.wrapping_sub(sum);
            words.extend_from_slice(&seg);
        }
        if corrupt {
            words[100] ^= 0x0000_0100;
        }
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    /// The scripted FC initiator with this N_Port ID and WWPN behind the port.
    pub fn initiator(&self, port_id: u32, wwpn: u64) -> Initiator {
        {
            let mut g = self.inner.lock();
            let port_id = port_id & 0x00ff_ffff;
            if !g.remotes.contains_key(&port_id) {
                let handle = g.next_handle;
                g.next_handle = g.next_handle.wrapping_add(1).max(1) % 0x7f0;
                g.remotes.insert(port_id, Remote { wwpn, handle, login: Login::None, next_ox_id: 0x0100 });
            }
        }
        // The model only exists inside the Arc that `new` built, so the upgrade cannot fail
        // while `&self` is borrowed.
        let model = self.me.upgrade().expect("IspModel lives in its Arc");
        Initiator { model, port_id: port_id & 0x00ff_ffff, wwpn }
    }

    /// The N_Port handle (loop id) the firmware assigned to a remote port.
    pub fn nport_handle(&self, port_id: u32) -> Option<u16> {
        self.inner.lock().remotes.get(&port_id).map(|r| r.handle)
    }

    /// Link down: LOOP DOWN async event; every login and open exchange is lost.
    pub fn link_down(&self) {
        let fire = {
            let mut g = self.inner.lock();
            if g.link_up {
                g.link_up = false;
                let ports: Vec<u32> = g.remotes.keys().copied().collect();
                for p in ports {
                    g.drop_port(p);
                }
                if g.state == ModelState::Initialized {
                    g.asyncs.push_back([MBA_LOOP_DOWN, 0, 0, 0]);
                }
            }
            g.flush(&*self.mem);
            g.present()
        };
        self.done.notify_all();
        self.fire(fire);
    }

    /// Link up: LOOP UP and PORT DATABASE CHANGE (0x8014, all ports) async events.
    pub fn link_up(&self) {
        let fire = {
            let mut g = self.inner.lock();
            if !g.link_up {
                g.link_up = true;
                if g.state == ModelState::Initialized {
                    g.post_link_up();
                }
            }
            g.flush(&*self.mem);
            g.present()
        };
        self.fire(fire);
    }
}

/// One remote initiator port. Every method returns at once: the model writes IOCBs into the
/// driver's rings and raises the interrupt; the driver answers through the request ring.
#[derive(Clone)]
pub struct Initiator {
    model: Arc<IspModel>,
    port_id: u32,
    wwpn: u64,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator")
            .field("port_id", &format_args!("{:06x}", self.port_id))
            .field("wwpn", &format_args!("{:016x}", self.wwpn))
            .finish()
    }
}

impl Initiator {
    /// The N_Port ID.
    pub fn port_id(&self) -> u32 {
        self.port_id
    }

    /// The N_Port handle the firmware assigned to this port.
    pub fn nport_handle(&self) -> u16 {
        self.model.nport_handle(self.port_id).unwrap_or(0xffff)
    }

    /// PLOGI then (once the driver acked it) PRLI, as IMMEDIATE NOTIFY IOCBs in the ATIO ring.
    pub fn login(&self) {
        let m = &self.model;
        let fire = {
            let mut g = m.inner.lock();
            if g.state != ModelState::Initialized || !g.link_up {
                g.error(format!("initiator {:06x}: login while the port is not up", self.port_id));
            } else {
                g.send_notify(self.port_id, NotifyKind::Plogi);
            }
            g.flush(&*m.mem);
            g.present()
        };
        m.fire(fire);
    }

    /// LOGO, as an IMMEDIATE NOTIFY (the driver must ack it); open exchanges end.
    pub fn logout(&self) {
        let m = &self.model;
        let fire = {
            let mut g = m.inner.lock();
            g.end_port_exchanges(self.port_id, CTIO_PORT_LOGGED_OUT);
            if g.state == ModelState::Initialized && g.link_up {
                g.send_notify(self.port_id, NotifyKind::Logo);
            } else if let Some(r) = g.remotes.get_mut(&self.port_id) {
                r.login = Login::None;
            }
            g.flush(&*m.mem);
            g.present()
        };
        m.done.notify_all();
        m.fire(fire);
    }

    /// Whether the driver acked PLOGI and PRLI (and no LOGO since).
    pub fn is_logged_in(&self) -> bool {
        let g = self.model.inner.lock();
        g.remotes.get(&self.port_id).is_some_and(|r| r.login == Login::LoggedIn)
    }

    /// Sends an FCP_CMND (ATIO type 7). `data_out`: the bytes the initiator writes;
    /// `expected_in`: the Data-In length it expects. Returns the exchange's tag (the firmware's
    /// exchange address, or a tag of its own when the firmware had no exchange free and
    /// posted the ATIO with exchange address 0xffffffff).
    pub fn command(&self, lun: u64, cdb: &[u8], data_out: &[u8], expected_in: u32) -> u32 {
        self.send_cmnd(lun, cdb, data_out, expected_in, 0)
    }

    /// ABTS for the exchange: an ABTS RECEIVED IOCB in the response ring.
    pub fn abort(&self, tag: u32) {
        let m = &self.model;
        let fire = {
            let mut g = m.inner.lock();
            g.send_abts(self.port_id, tag);
            g.flush(&*m.mem);
            g.present()
        };
        m.fire(fire);
    }

    /// LUN RESET etc. as an FCP_CMND with task management flags (ATIO type 7).
    pub fn task_mgmt(&self, lun: u64, tm: TaskMgmt) -> u32 {
        self.send_cmnd(lun, &[0u8; 16], &[], 0, tm.flags())
    }

    fn send_cmnd(&self, lun: u64, cdb: &[u8], data_out: &[u8], expected_in: u32, tm: u8) -> u32 {
        let m = &self.model;
        let (tag, fire) = {
            let mut g = m.inner.lock();
            let tag = g.send_cmnd(self.port_id, lun, cdb, data_out, expected_in, tm);
            g.flush(&*m.mem);
            (tag, g.present())
        };
        m.done.notify_all();
        m.fire(fire);
        tag
    }

    /// The command's end as the initiator saw it, once the driver sent status (or the
    /// exchange was aborted).
    pub fn completion(&self, tag: u32) -> Option<Completion> {
        self.model.inner.lock().completions.get(&tag).cloned()
    }

    /// Waits up to `timeout` for [`completion`](Self::completion).
    pub fn wait_completion(&self, tag: u32, timeout: Duration) -> Option<Completion> {
        let deadline = Instant::now() + timeout;
        let mut g = self.model.inner.lock();
        loop {
            if let Some(c) = g.completions.get(&tag) {
                return Some(c.clone());
            }
            if self.model.done.wait_until(&mut g, deadline).timed_out() {
                return g.completions.get(&tag).cloned();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The chip.

impl Inner {
    fn error(&mut self, e: String) {
        self.errors.push(e);
    }

    // -- registers --------------------------------------------------------------------------

    fn read_reg(&mut self, offset: u32) -> u32 {
        match offset {
            REG_FLASH_ADDR => self.flash_addr,
            REG_FLASH_DATA => self.flash_data,
            REG_CTRL_STATUS => {
                if self.soft_reset_reads > 0 {
                    self.soft_reset_reads -= 1;
                    if self.soft_reset_reads == 0 {
                        self.ctrl_status &= !CSRX_ISP_SOFT_RESET;
                    }
                }
                // DMA is never active in the model once shutdown is asked for.
                let mut v = self.ctrl_status;
                if v & CSRX_DMA_SHUTDOWN != 0 {
                    v &= !CSRX_DMA_ACTIVE;
                }
                v
            }
            REG_ICTRL => self.ictrl,
            REG_ISTATUS => u32::from(self.current.is_some()) * ISRX_RISC_INT,
            REG_REQ_IN => u32::from(self.req_in),
            REG_REQ_OUT => u32::from(self.req_out),
            REG_RSP_IN => u32::from(self.rsp_in),
            REG_RSP_OUT => u32::from(self.rsp_out),
            REG_PREQ_IN | REG_PREQ_OUT => 0,
            REG_ATIO_IN => u32::from(self.atio_in),
            REG_ATIO_OUT => u32::from(self.atio_out),
            REG_HOST_STATUS => self.host_status,
            REG_HCCR => u32::from(self.risc_held) * HCCRX_RISC_RESET,
            REG_GPIOD => self.gpiod,
            REG_GPIOE => self.gpioe,
            REG_IOBASE_ADDR => self.iobase,
            o if (REG_MAILBOX0..REG_MAILBOX_END).contains(&o) && o % 2 == 0 => {
                let n = ((o - REG_MAILBOX0) / 2) as usize;
                let lo = self.read_mailbox(n);
                let hi = if n + 1 < 32 { self.mb[n + 1] } else { 0 };
                u32::from(lo) | (u32::from(hi) << 16)
            }
            _ => 0,
        }
    }

    fn read_mailbox(&mut self, n: usize) -> u16 {
        if n == 0 && self.rom_busy_reads > 0 {
            self.rom_busy_reads -= 1;
            if self.rom_busy_reads == 0 {
                self.mb[0] = 0;
                if self.state == ModelState::Reset && !self.risc_held {
                    self.state = ModelState::RomCode;
                }
            }
            return MBS_BUSY;
        }
        self.mb.get(n).copied().unwrap_or(0)
    }

    fn write_reg(&mut self, mem: &dyn HostMemory, offset: u32, value: u32) -> bool {
        match offset {
            REG_FLASH_ADDR => {
                self.flash_addr = value & !FARX_DATA_FLAG;
                if value & FARX_DATA_FLAG == 0 {
                    self.flash_data = self.flash_read(value);
                    self.flash_addr |= FARX_DATA_FLAG;
                } else {
                    // A write cycle: the model's flash is read-only; it completes at once.
                    self.flash_addr &= !FARX_DATA_FLAG;
                }
            }
            REG_FLASH_DATA => self.flash_data = value,
            REG_CTRL_STATUS => {
                self.ctrl_status = value & (CSRX_DMA_SHUTDOWN | 0x30 | 0x2);
                if value & CSRX_ISP_SOFT_RESET != 0 {
                    self.soft_reset();
                    self.ctrl_status |= CSRX_ISP_SOFT_RESET;
                    self.soft_reset_reads = 2;
                }
            }
            REG_ICTRL => {
                let was = self.ictrl & ICRX_EN_RISC_INT != 0;
                self.ictrl = value & ICRX_EN_RISC_INT;
                if !was && self.ictrl != 0 && self.current.is_some() {
                    return true;
                }
            }
            REG_ISTATUS | REG_HOST_STATUS => {}
            REG_REQ_IN => return self.write_req_in(mem, value),
            REG_REQ_OUT => self.write_owned_pointer("req_q_out", value, |s| &mut s.req_out),
            REG_RSP_IN => self.write_owned_pointer("rsp_q_in", value, |s| &mut s.rsp_in),
            REG_RSP_OUT => {
                let v = value as u16;
                if let Some(r) = self.rsp {
                    if v >= r.len {
                        self.error(format!("rsp_q_out {v} past the ring end ({})", r.len));
                        return false;
                    }
                }
                self.rsp_out = v;
                self.flush(mem);
                return self.present();
            }
            REG_PREQ_IN | REG_PREQ_OUT => {}
            REG_ATIO_IN => self.write_owned_pointer("atio_q_in", value, |s| &mut s.atio_in),
            REG_ATIO_OUT => {
                let v = value as u16;
                if let Some(r) = self.atio {
                    if v >= r.len {
                        self.error(format!("atio_q_out {v} past the ring end ({})", r.len));
                        return false;
                    }
                }
                self.atio_out = v;
                self.hold_atio = false;
                self.flush(mem);
                return self.present();
            }
            REG_HCCR => return self.write_hccr(mem, value),
            REG_GPIOD => self.gpiod = value,
            REG_GPIOE => self.gpioe = value,
            REG_IOBASE_ADDR => self.iobase = value,
            o if (REG_MAILBOX0..REG_MAILBOX_END).contains(&o) && o % 2 == 0 => {
                let n = ((o - REG_MAILBOX0) / 2) as usize;
                if let Some(m) = self.mb.get_mut(n) {
                    *m = value as u16;
                }
            }
            o => self.error(format!("write {value:#x} to unknown register {o:#x}")),
        }
        false
    }

    /// Pointers the chip owns: the driver may zero them before INITIALIZE FIRMWARE.
    fn write_owned_pointer(&mut self, name: &str, value: u32, f: fn(&mut Self) -> &mut u16) {
        if self.state == ModelState::Initialized {
            if value != u32::from(*f(self)) {
                self.error(format!("driver wrote {name} = {value} while the firmware owns it"));
            }
        } else {
            *f(self) = value as u16;
        }
    }

    fn flash_read(&self, addr: u32) -> u32 {
        if addr & 0xfff0_0000 == FARX_ACCESS_NVRAM_DATA & 0xfff0_0000 && addr & 0x7fff_0000 == FARX_ACCESS_NVRAM_DATA {
            let a = addr & 0xffff;
            if a >= NVRAM_BASE_FUNC0 && ((a - NVRAM_BASE_FUNC0) as usize) < NVRAM_WORDS {
                let img = self.nvram_image();
                let i = ((a - NVRAM_BASE_FUNC0) * 4) as usize;
                return get32(&img, i);
            }
        }
        0xffff_ffff
    }

    /// The function-0 NVRAM (struct nvram_24xx, 512 bytes, little-endian words summing to 0).
    fn nvram_image(&self) -> Vec<u8> {
        let mut n = vec![0u8; NVRAM_WORDS * 4];
        n[0..4].copy_from_slice(b"ISP ");
        put16(&mut n, 4, 1); // nvram_version
        put16(&mut n, 8, 1); // icb version
        put16(&mut n, 12, 2048); // frame_payload_size
        put16(&mut n, 14, 0xffff); // execution_throttle
        put16(&mut n, 16, self.cfg.exchanges);
        n[20..28].copy_from_slice(&wwn_bytes(self.cfg.wwpn));
        n[28..36].copy_from_slice(&wwn_bytes(self.cfg.wwnn));
        put16(&mut n, 36, 8); // login_retry_count
        put32(&mut n, 44, 0x0000_0030); // fo1: target mode, initiator disabled
        put32(&mut n, 48, 0x0000_0010); // fo2: point-to-point
        let sum = (0..NVRAM_WORDS - 1).fold(0u32, |a, i| a.wrapping_add(get32(&n, i * 4)));
        put32(&mut n, (NVRAM_WORDS - 1) * 4, 0u32.wrapping_sub(sum));
        n
    }

    fn soft_reset(&mut self) {
        self.reset_firmware();
        self.ram.clear();
        self.ictrl = 0;
        self.state = ModelState::Reset;
        self.rom_busy_reads = 3;
        self.risc_held = false;
    }

    /// Everything the running firmware held is gone.
    fn reset_firmware(&mut self) {
        self.fw_running_addr = None;
        self.req = None;
        self.rsp = None;
        self.atio = None;
        self.req_in = 0;
        self.req_out = 0;
        self.rsp_in = 0;
        self.rsp_out = 0;
        self.atio_in = 0;
        self.atio_out = 0;
        self.frame_size = 0;
        self.current = None;
        self.host_status = 0;
        self.mbox_done = None;
        self.asyncs.clear();
        self.rsp_update = false;
        self.atio_update = false;
        self.atio_backlog.clear();
        self.rsp_backlog.clear();
        self.notifies.clear();
        self.abts.clear();
        let ports: Vec<u32> = self.remotes.keys().copied().collect();
        for p in ports {
            self.drop_port(p);
        }
        self.ended.clear();
    }

    fn write_hccr(&mut self, mem: &dyn HostMemory, value: u32) -> bool {
        match value >> 28 {
            0x0 => {}
            0x1 => {
                self.reset_firmware();
                self.risc_held = true;
                self.state = ModelState::Reset;
            }
            0x2 => {
                if self.risc_held {
                    self.risc_held = false;
                    self.state = ModelState::Reset;
                    self.rom_busy_reads = 3;
                    self.mb[0] = MBS_BUSY;
                }
            }
            0x3 | 0x4 => {}
            0x5 => {
                self.mailbox_command(mem);
                return self.present();
            }
            0x6 => {}
            0xa => {
                self.current = None;
                self.host_status = 0;
                return self.present();
            }
            c => self.error(format!("HCCR command {c:#x} ({value:#010x}) unknown")),
        }
        false
    }

    // -- interrupts ---------------------------------------------------------------------------

    /// Presents the next pending interrupt when none is; returns whether to raise the line.
    fn present(&mut self) -> bool {
        if self.current.is_some() {
            return false;
        }
        let next = if let Some((outs, rom)) = self.mbox_done.take() {
            for (i, v) in &outs {
                if let Some(m) = self.mb.get_mut(*i) {
                    *m = *v;
                }
            }
            Pending::Mailbox { mb0: self.mb[0], rom }
        } else if let Some(a) = self.asyncs.pop_front() {
            self.mb[..4].copy_from_slice(&a);
            Pending::Async(a)
        } else if self.rsp_update || self.atio_update {
            let p = Pending::Queues { rsp: self.rsp_update, atio: self.atio_update };
            self.rsp_update = false;
            self.atio_update = false;
            p
        } else {
            return false;
        };
        self.host_status = match next {
            Pending::Mailbox { mb0, rom } => {
                let ok = mb0 == MBS_COMMAND_COMPLETE;
                let t = match (rom, ok) {
                    (true, true) => INTR_ROM_MB_SUCCESS,
                    (true, false) => INTR_ROM_MB_FAILED,
                    (false, true) => INTR_MB_SUCCESS,
                    (false, false) => INTR_MB_FAILED,
                };
                (u32::from(mb0) << 16) | HSRX_RISC_INT | u32::from(t)
            }
            Pending::Async(a) => (u32::from(a[0]) << 16) | HSRX_RISC_INT | u32::from(INTR_ASYNC_EVENT),
            Pending::Queues { rsp, atio } => {
                let t = match (rsp, atio) {
                    (true, true) => INTR_ATIO_RSP_QUE_UPDATE,
                    (false, true) => INTR_ATIO_QUE_UPDATE,
                    _ => INTR_RSP_QUE_UPDATE,
                };
                HSRX_RISC_INT | u32::from(t)
            }
        };
        self.current = Some(next);
        self.ictrl & ICRX_EN_RISC_INT != 0
    }

    // -- mailbox commands ---------------------------------------------------------------------

    fn mailbox_command(&mut self, mem: &dyn HostMemory) {
        self.stats.mailbox_commands += 1;
        let mb = self.mb;
        let cmd = mb[0];
        if self.mailbox_silent {
            self.mailbox_silent = false;
            return;
        }
        if self.state == ModelState::Reset {
            self.error(format!("mailbox command {cmd:#06x} while the RISC is in reset / ROM not ready"));
            return;
        }
        if self.mbox_done.is_some() || matches!(self.current, Some(Pending::Mailbox { .. })) {
            self.error(format!("mailbox command {cmd:#06x} issued before the previous completion was cleared"));
        }
        let rom = self.state == ModelState::RomCode;
        let outs = self.run_mailbox(mem, &mb);
        self.mbox_done = Some((outs, rom));
    }

    fn run_mailbox(&mut self, mem: &dyn HostMemory, mb: &[u16; 32]) -> Vec<(usize, u16)> {
        let st = |s: u16| vec![(0usize, s)];
        let dma = |hi_hi: u16, hi_lo: u16, lo_hi: u16, lo_lo: u16| {
            (u64::from(hi_hi) << 48) | (u64::from(hi_lo) << 32) | (u64::from(lo_hi) << 16) | u64::from(lo_lo)
        };
        let running = matches!(self.state, ModelState::FirmwareRunning | ModelState::Initialized);
        match mb[0] {
            MBC_MAILBOX_REGISTER_TEST => {
                let mut out: Vec<(usize, u16)> = (1..32).map(|i| (i, mb[i])).collect();
                out.insert(0, (0, MBS_COMMAND_COMPLETE));
                out
            }
            MBC_LOAD_RISC_RAM_EXTENDED => {
                let addr = (u32::from(mb[8]) << 16) | u32::from(mb[1]);
                let iova = dma(mb[6], mb[7], mb[2], mb[3]);
                // FWI2 chips: the word count's high half in mailbox 4, its low half in 5.
                let words = (u64::from(mb[4]) << 16) | u64::from(mb[5]);
                if words == 0 || words * 4 > MAX_TRANSFER {
                    self.error(format!("LOAD RISC RAM EXTENDED of {words} words"));
                    return st(MBS_COMMAND_PARAMETER_ERROR);
                }
                let mut buf = vec![0u8; (words * 4) as usize];
                if let Err(e) = mem.read(iova, &mut buf) {
                    self.error(format!("LOAD RISC RAM EXTENDED: {e}"));
                    return st(MBS_COMMAND_ERROR);
                }
                let data: Vec<u32> =
                    buf.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                self.load_ram(addr, data);
                st(MBS_COMMAND_COMPLETE)
            }
            MBC_VERIFY_CHECKSUM => {
                let sum = self.ram.iter().flat_map(|(_, w)| w.iter()).fold(0u32, |a, w| a.wrapping_add(*w));
                let s = if !self.ram.is_empty() && sum == 0 { MBS_COMMAND_COMPLETE } else { MBS_CHECKSUM_ERROR };
                vec![(0, s), (1, sum as u16), (2, (sum >> 16) as u16)]
            }
            MBC_EXECUTE_FIRMWARE => {
                let addr = (u32::from(mb[1]) << 16) | u32::from(mb[2]);
                if running {
                    self.error("EXECUTE FIRMWARE while firmware already runs".into());
                    return st(MBS_COMMAND_ERROR);
                }
                match self.check_image(addr) {
                    Ok(()) => {
                        self.fw_running_addr = Some(addr);
                        self.state = ModelState::FirmwareRunning;
                        st(MBS_COMMAND_COMPLETE)
                    }
                    Err(e) => {
                        self.error(format!("EXECUTE FIRMWARE at {addr:#x} refused: {e}"));
                        st(MBS_COMMAND_ERROR)
                    }
                }
            }
            MBC_ABOUT_FIRMWARE => {
                if !running {
                    return st(MBS_COMMAND_ERROR);
                }
                vec![
                    (0, MBS_COMMAND_COMPLETE),
                    (1, FW_VERSION.0 as u16),
                    (2, FW_VERSION.1 as u16),
                    (3, FW_VERSION.2 as u16),
                    (4, 0xffff),
                    (5, 0x0003),
                    (6, FW_ATTRIBUTES as u16),
                    (8, 0),
                    (9, 0),
                    (10, 0),
                    (11, 0),
                    (15, 0),
                    (16, 0),
                    (17, 0),
                ]
            }
            MBC_GET_FIRMWARE_OPTION if running => vec![
                (0, MBS_COMMAND_COMPLETE),
                (1, self.fw_options[0]),
                (2, self.fw_options[1]),
                (3, self.fw_options[2]),
            ],
            MBC_SET_FIRMWARE_OPTION if running => {
                self.fw_options = [mb[1], mb[2], mb[3]];
                st(MBS_COMMAND_COMPLETE)
            }
            MBC_GET_RESOURCE_COUNTS if running => {
                let x = self.effective_exchanges();
                let free = x.saturating_sub((self.exchanges.len() + self.overflow.len()) as u16);
                vec![
                    (0, MBS_COMMAND_COMPLETE),
                    (1, x),
                    (2, free),
                    (3, free),
                    (6, x),
                    (7, 2048),
                    (10, 2048),
                    (11, 0),
                    (12, 0),
                ]
            }
            MBC_INITIALIZE_FIRMWARE | MBC_MID_INITIALIZE_FIRMWARE => {
                if self.state != ModelState::FirmwareRunning {
                    self.error(format!("INITIALIZE FIRMWARE in state {:?} (firmware must run, once)", self.state));
                    return st(MBS_COMMAND_ERROR);
                }
                let iova = dma(mb[6], mb[7], mb[2], mb[3]);
                match self.init_firmware(mem, iova) {
                    Ok(()) => st(MBS_COMMAND_COMPLETE),
                    Err(e) => {
                        self.error(format!("INITIALIZE FIRMWARE: {e}"));
                        st(MBS_COMMAND_PARAMETER_ERROR)
                    }
                }
            }
            MBC_GET_FIRMWARE_STATE if running => {
                let s = if self.state == ModelState::Initialized && self.link_up {
                    FSTATE_READY
                } else if self.state == ModelState::Initialized {
                    FSTATE_LOSS_OF_SYNC
                } else {
                    0
                };
                vec![(0, MBS_COMMAND_COMPLETE), (1, s), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0)]
            }
            MBC_GET_ADAPTER_LOOP_ID if running => {
                if self.state != ModelState::Initialized || !self.link_up {
                    return vec![(0, MBS_COMMAND_ERROR), (1, 0)];
                }
                let id = self.cfg.port_id;
                vec![
                    (0, MBS_COMMAND_COMPLETE),
                    (1, 0x0000),
                    (2, (id & 0xffff) as u16),
                    (3, ((id >> 16) & 0xff) as u16),
                    (6, 3), // F_Port (fabric point-to-point)
                    (7, 0),
                    (9, 0),
                    (10, 0),
                    (11, 0),
                    (12, 0),
                    (13, 0),
                ]
            }
            MBC_GET_ID_LIST if running => {
                let iova = dma(mb[6], mb[7], mb[2], mb[3]);
                let size = usize::from(mb[8]);
                let mut ports: Vec<(u32, u16)> = self
                    .remotes
                    .iter()
                    .filter(|(_, r)| matches!(r.login, Login::PlogiAcked | Login::PrliSent | Login::LoggedIn))
                    .map(|(p, r)| (*p, r.handle))
                    .collect();
                ports.sort_by_key(|p| p.1);
                let mut buf = Vec::with_capacity(ports.len() * 8);
                for (p, h) in &ports {
                    let mut e = [0u8; 8];
                    put_le24(&mut e, 0, *p);
                    put16(&mut e, 4, *h);
                    buf.extend_from_slice(&e);
                }
                if size != 0 && buf.len() > size {
                    buf.truncate(size - size % 8);
                }
                if !buf.is_empty() {
                    if let Err(e) = mem.write(iova, &buf) {
                        self.error(format!("GET ID LIST: {e}"));
                        return st(MBS_COMMAND_ERROR);
                    }
                }
                vec![(0, MBS_COMMAND_COMPLETE), (1, (buf.len() / 8) as u16)]
            }
            MBC_GET_PORT_DATABASE if running => {
                let iova = dma(mb[6], mb[7], mb[2], mb[3]);
                let handle = mb[1];
                let found = self
                    .remotes
                    .iter()
                    .find(|(_, r)| r.handle == handle && r.login != Login::None)
                    .map(|(p, r)| (*p, r.wwpn, r.login));
                let Some((pid, wwpn, login)) = found else {
                    return vec![(0, MBS_COMMAND_ERROR), (1, 0x000a)];
                };
                let mut pd = [0u8; 64];
                let ls = match login {
                    Login::LoggedIn => 0x06,
                    Login::PrliSent => 0x05,
                    _ => 0x04,
                };
                pd[2] = ls;
                pd[3] = ls;
                put_be24(&mut pd, 8, pid);
                put16(&mut pd, 14, handle);
                put16(&mut pd, 16, 2048);
                // PRLI service parameter word 3 (bits 15..0, big-endian): initiator function.
                pd[22] = 0x00;
                pd[23] = 0x22;
                pd[24..32].copy_from_slice(&wwn_bytes(wwpn));
                pd[32..40].copy_from_slice(&wwn_bytes(node_name(wwpn)));
                if let Err(e) = mem.write(iova, &pd) {
                    self.error(format!("GET PORT DATABASE: {e}"));
                    return st(MBS_COMMAND_ERROR);
                }
                st(MBS_COMMAND_COMPLETE)
            }
            MBC_GET_FIRMWARE_OPTION
            | MBC_SET_FIRMWARE_OPTION
            | MBC_GET_RESOURCE_COUNTS
            | MBC_GET_FIRMWARE_STATE
            | MBC_GET_ADAPTER_LOOP_ID
            | MBC_GET_ID_LIST
            | MBC_GET_PORT_DATABASE => st(MBS_COMMAND_ERROR),
            _ => st(MBS_INVALID_COMMAND),
        }
    }

    fn load_ram(&mut self, addr: u32, data: Vec<u32>) {
        let end = u64::from(addr) + data.len() as u64;
        // Replace overlapping chunks (a reload).
        self.ram.retain(|(a, w)| {
            let e = u64::from(*a) + w.len() as u64;
            e <= u64::from(addr) || u64::from(*a) >= end
        });
        // Append to a chunk ending exactly where this one starts (fragmented loads).
        if let Some((_, w)) = self.ram.iter_mut().find(|(a, w)| u64::from(*a) + w.len() as u64 == u64::from(addr)) {
            w.extend_from_slice(&data);
        } else {
            self.ram.push((addr, data));
        }
    }

    fn check_image(&self, addr: u32) -> Result<(), String> {
        let sum = self.ram.iter().flat_map(|(_, w)| w.iter()).fold(0u32, |a, w| a.wrapping_add(*w));
        if self.ram.is_empty() {
            return Err("no firmware loaded".into());
        }
        if sum != 0 {
            return Err(format!("checksum {sum:#x} (want 0)"));
        }
        let Some((_, w)) = self.ram.iter().find(|(a, _)| *a == addr) else {
            return Err("no code loaded at that address".into());
        };
        if w.len() < 8 || w[2] != addr || w[3] as usize > w.len() {
            return Err(format!(
                "segment header does not match (word2 {:#x}, word3 {:#x})",
                w.get(2).copied().unwrap_or(0),
                w.get(3).copied().unwrap_or(0)
            ));
        }
        Ok(())
    }

    fn effective_exchanges(&self) -> u16 {
        if self.exchange_limit != 0 { self.exchange_limit } else { self.cfg.exchanges }
    }

    fn init_firmware(&mut self, mem: &dyn HostMemory, iova: u64) -> Result<(), String> {
        let mut icb = [0u8; ICB_SIZE];
        mem.read(iova, &mut icb).map_err(|e| e.to_string())?;
        let version = get16(&icb, 0);
        if version != 1 {
            return Err(format!("ICB version {version} (want 1)"));
        }
        let frame = get16(&icb, 4);
        if !(256..=2112).contains(&frame) || frame % 4 != 0 {
            return Err(format!("frame payload size {frame}"));
        }
        let xcount = get16(&icb, 8);
        let rsp_len = get16(&icb, 36);
        let req_len = get16(&icb, 38);
        let req_addr = get64(&icb, 44);
        let rsp_addr = get64(&icb, 52);
        let atio_len = get16(&icb, 78);
        let atio_addr = get64(&icb, 80);
        let fo1 = get32(&icb, 92);
        if req_len < 2 || rsp_len < 2 || atio_len < 2 {
            return Err(format!("ring lengths req {req_len} rsp {rsp_len} atio {atio_len}"));
        }
        for (name, a, l) in
            [("request", req_addr, req_len), ("response", rsp_addr, rsp_len), ("ATIO", atio_addr, atio_len)]
        {
            let mut probe = [0u8; 1];
            let last = a.wrapping_add(u64::from(l) * IOCB as u64 - 1);
            if mem.read(a, &mut probe).is_err() || mem.read(last, &mut probe).is_err() {
                return Err(format!("{name} ring at {a:#x} x {l} not mapped"));
            }
        }
        if fo1 & (1 << 4) == 0 {
            return Err(format!("firmware options 1 {fo1:#x}: target mode not enabled"));
        }
        let wwpn = u64::from_be_bytes(icb[12..20].try_into().unwrap_or([0; 8]));
        let wwnn = u64::from_be_bytes(icb[20..28].try_into().unwrap_or([0; 8]));
        if wwpn == 0 {
            return Err("port name 0".into());
        }
        self.port_wwpn = wwpn;
        self.port_wwnn = wwnn;
        self.frame_size = frame;
        self.exchange_limit = if xcount != 0 && xcount < self.cfg.exchanges { xcount } else { self.cfg.exchanges };
        self.req = Some(Ring { base: req_addr, len: req_len });
        self.rsp = Some(Ring { base: rsp_addr, len: rsp_len });
        self.atio = Some(Ring { base: atio_addr, len: atio_len });
        self.req_in = 0;
        self.req_out = 0;
        self.rsp_in = 0;
        self.rsp_out = 0;
        self.atio_in = 0;
        self.atio_out = 0;
        self.state = ModelState::Initialized;
        if self.link_up {
            self.post_link_up();
        }
        Ok(())
    }

    fn post_link_up(&mut self) {
        let speed = match self.cfg.chip {
            Chip::Isp2432 => 2, // 4 Gb/s
            Chip::Isp2532 => 3, // 8 Gb/s
        };
        self.asyncs.push_back([MBA_LOOP_UP, speed, 0, 0]);
        self.asyncs.push_back([MBA_PORT_UPDATE, 0xffff, 0, 0]);
    }

    // -- rings ----------------------------------------------------------------------------------

    fn post_rsp(&mut self, e: [u8; IOCB]) {
        self.rsp_backlog.push_back(e);
    }

    fn post_atio(&mut self, e: [u8; IOCB]) {
        self.atio_backlog.push_back(e);
    }

    /// Moves backlogged entries into the rings as far as the driver's out-pointers allow.
    fn flush(&mut self, mem: &dyn HostMemory) {
        if self.state != ModelState::Initialized {
            return;
        }
        if let Some(r) = self.rsp {
            let mut wrote = false;
            while let Some(e) = self.rsp_backlog.front() {
                let next = (self.rsp_in + 1) % r.len;
                if next == self.rsp_out {
                    break;
                }
                let at = r.base + u64::from(self.rsp_in) * IOCB as u64;
                if let Err(f) = mem.write(at, e) {
                    self.error(format!("response ring write: {f}"));
                    self.rsp_backlog.clear();
                    self.asyncs.push_back([MBA_RSP_TRANSFER_ERR, 0, 0, 0]);
                    break;
                }
                self.rsp_backlog.pop_front();
                self.rsp_in = next;
                wrote = true;
            }
            self.rsp_update |= wrote;
        }
        if let Some(r) = self.atio {
            let mut wrote = false;
            while !self.hold_atio {
                let Some(e) = self.atio_backlog.front() else {
                    break;
                };
                let next = (self.atio_in + 1) % r.len;
                if next == self.atio_out {
                    break;
                }
                let at = r.base + u64::from(self.atio_in) * IOCB as u64;
                if let Err(f) = mem.write(at, e) {
                    self.error(format!("ATIO ring write: {f}"));
                    self.atio_backlog.clear();
                    self.asyncs.push_back([MBA_SYSTEM_ERR, 0, 0, 0]);
                    break;
                }
                if e[0] == ET_ATIO7 {
                    self.stats.atios_posted += 1;
                } else {
                    self.stats.notifies_posted += 1;
                }
                self.atio_backlog.pop_front();
                self.atio_in = next;
                wrote = true;
            }
            self.atio_update |= wrote;
        }
    }

    fn write_req_in(&mut self, mem: &dyn HostMemory, value: u32) -> bool {
        let Some(r) = self.req else {
            if value != 0 {
                self.error(format!("req_q_in = {value} before INITIALIZE FIRMWARE"));
            }
            self.req_in = value as u16;
            return false;
        };
        if value >= u32::from(r.len) {
            self.error(format!("req_q_in {value} past the ring end ({})", r.len));
            return false;
        }
        self.req_in = value as u16;
        while self.req_out != self.req_in {
            let at = r.base + u64::from(self.req_out) * IOCB as u64;
            let mut e = [0u8; IOCB];
            if let Err(f) = mem.read(at, &mut e) {
                self.error(format!("request ring read: {f}"));
                self.asyncs.push_back([MBA_REQ_TRANSFER_ERR, 0, 0, 0]);
                self.req_out = self.req_in;
                break;
            }
            let count = usize::from(e[1].max(1));
            let avail =
                (usize::from(self.req_in) + usize::from(r.len) - usize::from(self.req_out)) % usize::from(r.len);
            if count > avail {
                self.error(format!("IOCB type {:#x} with entry count {count} but only {avail} entries queued", e[0]));
                self.return_bad(e, RF_INV_E_COUNT);
                self.req_out = self.req_in;
                break;
            }
            let mut conts = Vec::new();
            let mut fault = false;
            for i in 1..count {
                let idx = (usize::from(self.req_out) + i) % usize::from(r.len);
                let mut c = [0u8; IOCB];
                if let Err(f) = mem.read(r.base + (idx * IOCB) as u64, &mut c) {
                    self.error(format!("request ring read: {f}"));
                    fault = true;
                    break;
                }
                conts.push(c);
            }
            self.req_out = ((usize::from(self.req_out) + count) % usize::from(r.len)) as u16;
            self.stats.request_entries += count as u64;
            if fault {
                self.asyncs.push_back([MBA_REQ_TRANSFER_ERR, 0, 0, 0]);
                continue;
            }
            self.process_iocb(mem, e, &conts);
        }
        self.flush(mem);
        self.present()
    }

    fn return_bad(&mut self, mut e: [u8; IOCB], status: u8) {
        e[3] = status;
        self.post_rsp(e);
    }

    fn process_iocb(&mut self, mem: &dyn HostMemory, e: [u8; IOCB], conts: &[[u8; IOCB]]) {
        match e[0] {
            ET_MARKER => {}
            ET_CTIO7 => self.ctio7(mem, e, conts),
            ET_NOTIFY_ACK => self.notify_ack(e),
            ET_ABTS_RESP => self.abts_resp(e),
            t => {
                self.error(format!("unknown IOCB type {t:#04x} in the request ring"));
                self.return_bad(e, RF_INV_E_TYPE);
            }
        }
    }

    // -- fabric side ------------------------------------------------------------------------------

    fn alloc_xaddr(&mut self) -> u32 {
        loop {
            let x = self.next_xaddr;
            self.next_xaddr = self.next_xaddr.wrapping_add(1);
            if self.next_xaddr == EXCHANGE_UNKNOWN || self.next_xaddr == 0 {
                self.next_xaddr = 0x1000;
            }
            if !self.exchanges.contains_key(&x)
                && !self.notifies.contains_key(&x)
                && !self.abts.contains_key(&x)
                && !self.completions.contains_key(&x)
            {
                return x;
            }
        }
    }

    fn send_notify(&mut self, port_id: u32, kind: NotifyKind) {
        let Some(r) = self.remotes.get(&port_id) else {
            return;
        };
        let (handle, wwpn) = (r.handle, r.wwpn);
        let x = self.alloc_xaddr();
        let mut e = [0u8; IOCB];
        e[0] = ET_IMMED_NOTIFY;
        e[1] = 1;
        put16(&mut e, 8, handle);
        put16(&mut e, 16, IMM_NTFY_ELS);
        e[18] = match kind {
            NotifyKind::Plogi => ELS_PLOGI,
            NotifyKind::Prli => ELS_PRLI,
            NotifyKind::Logo => ELS_LOGO,
        };
        put32(&mut e, 20, x);
        match kind {
            NotifyKind::Plogi => e[32..40].copy_from_slice(&wwn_bytes(node_name(wwpn))),
            // PRLI word 3 bits 15..0: initiator function, read XFER_RDY disabled.
            NotifyKind::Prli => put16(&mut e, 32, 0x0022),
            NotifyKind::Logo => {}
        }
        e[40..48].copy_from_slice(&wwn_bytes(wwpn));
        put_le24(&mut e, 56, port_id);
        let ox = self.next_ox(port_id);
        put16(&mut e, 62, ox);
        self.notifies.insert(x, (port_id, kind));
        if let Some(r) = self.remotes.get_mut(&port_id) {
            r.login = match kind {
                NotifyKind::Plogi => Login::PlogiSent,
                NotifyKind::Prli => Login::PrliSent,
                NotifyKind::Logo => Login::LogoSent,
            };
        }
        self.post_atio(e);
    }

    fn next_ox(&mut self, port_id: u32) -> u16 {
        match self.remotes.get_mut(&port_id) {
            Some(r) => {
                let o = r.next_ox_id;
                r.next_ox_id = r.next_ox_id.wrapping_add(1);
                if r.next_ox_id == 0xffff {
                    r.next_ox_id = 0x100;
                }
                o
            }
            None => 0,
        }
    }

    fn notify_ack(&mut self, e: [u8; IOCB]) {
        let handle = get16(&e, 8);
        let flags = get16(&e, 12);
        let x = get32(&e, 20);
        let mut reply = e;
        reply[3] = 0;
        let Some((port_id, kind)) = self.notifies.remove(&x) else {
            self.error(format!("NOTIFY ACK for unknown exchange {x:#x} (nport handle {handle:#x})"));
            reply[3] = RF_INV_E_PARAM;
            self.post_rsp(reply);
            return;
        };
        let expect = self.remotes.get(&port_id).map(|r| r.handle);
        if expect != Some(handle) {
            self.error(format!(
                "NOTIFY ACK for {x:#x}: nport handle {handle:#x}, the notify had {:#x}",
                expect.unwrap_or(0xffff)
            ));
        }
        let reject = flags & NOTIFY_ACK_FLAGS_TERMINATE != 0;
        put16(&mut reply, 16, NOTIFY_ACK_SUCCESS);
        self.post_rsp(reply);
        let next = match (kind, reject) {
            (_, true) | (NotifyKind::Logo, _) => Login::None,
            (NotifyKind::Plogi, false) => Login::PlogiAcked,
            (NotifyKind::Prli, false) => Login::LoggedIn,
        };
        if let Some(r) = self.remotes.get_mut(&port_id) {
            r.login = next;
        }
        if next == Login::PlogiAcked {
            self.send_notify(port_id, NotifyKind::Prli);
        }
        if next == Login::None {
            self.end_port_exchanges(port_id, CTIO_PORT_LOGGED_OUT);
        }
    }

    fn send_cmnd(&mut self, port_id: u32, lun: u64, cdb: &[u8], data_out: &[u8], expected_in: u32, tm: u8) -> u32 {
        let logged_in = self.remotes.get(&port_id).is_some_and(|r| r.login == Login::LoggedIn);
        let up = self.state == ModelState::Initialized && self.link_up;
        if !logged_in || !up {
            let tag = self.alloc_xaddr();
            self.error(format!("initiator {port_id:06x}: FCP_CMND while not logged in / port down"));
            self.completions.insert(tag, Completion { aborted: true, ..Completion::default() });
            return tag;
        }
        if cdb.len() > 16 {
            self.error(format!("model limitation: CDB of {} bytes truncated to 16", cdb.len()));
        }
        let handle = self.remotes.get(&port_id).map_or(0, |r| r.handle);
        let ox = self.next_ox(port_id);
        let fcp_dl = if data_out.is_empty() { expected_in } else { data_out.len() as u32 };
        let full = (self.exchanges.len() + self.overflow.len()) >= usize::from(self.effective_exchanges());
        let tag = self.alloc_xaddr();
        let xaddr = if full { EXCHANGE_UNKNOWN } else { tag };
        let mut e = [0u8; IOCB];
        e[0] = ET_ATIO7;
        e[1] = 1;
        put16(&mut e, 2, 0x38); // FCP header + FCP_CMND IU length; attr nibble 0
        put32(&mut e, 4, xaddr);
        // FC header (big-endian, as on the wire).
        e[8] = 0x06; // R_CTL: unsolicited command
        put_be24(&mut e, 9, self.cfg.port_id);
        put_be24(&mut e, 13, port_id);
        e[16] = 0x08; // TYPE: FCP
        e[17] = 0x29; // F_CTL: first sequence, end sequence, sequence initiative
        e[24..26].copy_from_slice(&ox.to_be_bytes());
        e[26..28].copy_from_slice(&0xffffu16.to_be_bytes());
        // FCP_CMND IU.
        e[32..40].copy_from_slice(&fcp_lun(lun));
        e[41] = 0; // SIMPLE
        e[42] = tm;
        let mut rw = 0u8;
        if !data_out.is_empty() {
            rw |= 1;
        }
        if expected_in > 0 {
            rw |= 2;
        }
        e[43] = rw;
        let n = cdb.len().min(16);
        e[44..44 + n].copy_from_slice(&cdb[..n]);
        e[60..64].copy_from_slice(&fcp_dl.to_be_bytes());
        let ex = Exchange {
            port_id,
            handle,
            ox_id: ox,
            fcp_dl,
            data_out: data_out.to_vec(),
            data_in: Vec::new(),
            data_out_sent: 0,
            frames_in: 0,
            abts_pending: false,
            is_tm: tm != 0,
        };
        if full {
            self.overflow.insert((port_id, ox), ex);
            self.overflow_tags.insert((port_id, ox), tag);
        } else {
            self.exchanges.insert(tag, ex);
        }
        self.post_atio(e);
        tag
    }

    fn send_abts(&mut self, port_id: u32, tag: u32) {
        let Some(ex) = self.exchanges.get_mut(&tag) else {
            return;
        };
        if ex.port_id != port_id || ex.abts_pending {
            return;
        }
        ex.abts_pending = true;
        let (handle, ox) = (ex.handle, ex.ox_id);
        let x = self.alloc_xaddr();
        let mut e = [0u8; IOCB];
        e[0] = ET_ABTS_RECV;
        e[1] = 1;
        put16(&mut e, 10, handle);
        put32(&mut e, 16, x);
        // fcp_hdr_le
        put_le24(&mut e, 20, self.cfg.port_id);
        e[23] = 0x81; // R_CTL: BLS ABTS
        put_le24(&mut e, 24, port_id);
        put_le24(&mut e, 28, 0x09_0000); // F_CTL: end sequence, sequence initiative
        e[31] = 0x00; // TYPE: BLS
        put16(&mut e, 36, tag as u16); // RX_ID
        put16(&mut e, 38, ox);
        put32(&mut e, 60, tag);
        self.abts.insert(x, tag);
        self.post_rsp(e);
    }

    fn abts_resp(&mut self, e: [u8; IOCB]) {
        let x = get32(&e, 16);
        let r_ctl = e[23];
        let to_abort = get32(&e, 60);
        let mut reply = e;
        reply[3] = 0;
        put16(&mut reply, 8, 0);
        put16(&mut reply, 10, get16(&e, 10));
        let Some(tag) = self.abts.remove(&x) else {
            self.error(format!("ABTS RESPONSE for unknown ABTS exchange {x:#x}"));
            put16(&mut reply, 8, ABTS_RESP_COMPL_SUBCODE_ERROR);
            self.post_rsp(reply);
            return;
        };
        if to_abort != tag {
            self.error(format!("ABTS RESPONSE: exchange to abort {to_abort:#x}, the ABTS named {tag:#x}"));
        }
        match r_ctl {
            BA_ACC_RCTL => self.end_exchange(tag, CTIO_ABORTED),
            BA_RJT_RCTL => {
                if let Some(ex) = self.exchanges.get_mut(&tag) {
                    ex.abts_pending = false;
                }
            }
            other => {
                self.error(format!("ABTS RESPONSE with R_CTL {other:#x}"));
                put16(&mut reply, 8, ABTS_RESP_COMPL_SUBCODE_ERROR);
            }
        }
        self.post_rsp(reply);
    }

    /// The exchange ends without status (ABTS accepted, terminate, logout, link loss).
    fn end_exchange(&mut self, tag: u32, status: u16) {
        if let Some(ex) = self.exchanges.remove(&tag) {
            self.completions.insert(
                tag,
                Completion {
                    data_in: ex.data_in,
                    aborted: true,
                    frames_in: ex.frames_in,
                    data_out_sent: ex.data_out_sent,
                    ..Completion::default()
                },
            );
            self.ended.insert(tag, status);
        }
    }

    fn end_port_exchanges(&mut self, port_id: u32, status: u16) {
        let tags: Vec<u32> = self.exchanges.iter().filter(|(_, e)| e.port_id == port_id).map(|(t, _)| *t).collect();
        for t in tags {
            self.end_exchange(t, status);
        }
        let keys: Vec<(u32, u16)> = self.overflow.keys().filter(|k| k.0 == port_id).copied().collect();
        for k in keys {
            self.overflow.remove(&k);
            if let Some(tag) = self.overflow_tags.remove(&k) {
                self.completions.insert(tag, Completion { aborted: true, ..Completion::default() });
            }
        }
    }

    fn drop_port(&mut self, port_id: u32) {
        self.end_port_exchanges(port_id, CTIO_PORT_LOGGED_OUT);
        if let Some(r) = self.remotes.get_mut(&port_id) {
            r.login = Login::None;
        }
        self.notifies.retain(|_, (p, _)| *p != port_id);
    }

    // -- CTIO type 7 ------------------------------------------------------------------------------

    fn ctio7(&mut self, mem: &dyn HostMemory, e: [u8; IOCB], conts: &[[u8; IOCB]]) {
        self.stats.ctios += 1;
        let handle = get32(&e, 4);
        let nport = get16(&e, 8);
        let dseg_count = usize::from(get16(&e, 12));
        let init_id = get_le24(&e, 16);
        let xaddr = get32(&e, 20);
        let flags = get16(&e, 26);
        let residual = get32(&e, 28);
        let ox_id = get16(&e, 32);
        let scsi_status = get16(&e, 34);
        let rel_off = get32(&e, 36);
        let mut reply = [0u8; IOCB];
        reply[0] = ET_CTIO7;
        reply[1] = 1;
        reply[2] = e[2];
        put32(&mut reply, 4, handle);
        put16(&mut reply, 12, get16(&e, 12));
        reply[14] = e[14];
        put32(&mut reply, 20, xaddr);
        put16(&mut reply, 26, flags);
        put16(&mut reply, 32, ox_id);
        put32(&mut reply, 36, rel_off);

        if handle == 0 {
            self.error(format!("CTIO7 for exchange {xaddr:#x} with the null handle"));
            reply[3] = RF_INV_E_PARAM;
            self.post_rsp(reply);
            return;
        }
        if conts.iter().any(|c| c[0] != ET_CONT_A64) {
            self.error(format!(
                "CTIO7 {handle:#x}: entry count {} but the following entries are not continuation type 1",
                e[1]
            ));
            reply[3] = RF_INV_E_COUNT;
            self.post_rsp(reply);
            return;
        }
        let terminate = flags & CTIO7_FLAGS_TERMINATE != 0;
        // Find the exchange.
        let tag = if xaddr == EXCHANGE_UNKNOWN {
            match self.overflow_tags.get(&(init_id, ox_id)) {
                Some(t) => {
                    // An exchange the firmware could not give an address: only status or
                    // terminate is possible; either ends it.
                    let t = *t;
                    let ex = self.overflow.remove(&(init_id, ox_id));
                    self.overflow_tags.remove(&(init_id, ox_id));
                    if let Some(ex) = ex {
                        self.exchanges.insert(t, ex);
                    }
                    t
                }
                None => {
                    self.error(format!(
                        "CTIO7 {handle:#x} with unknown exchange address and no such OX_ID {ox_id:#x} from {init_id:06x}"
                    ));
                    self.finish_ctio(reply, CTIO_INVALID_RX_ID, flags);
                    return;
                }
            }
        } else {
            xaddr
        };
        let Some(ex) = self.exchanges.get(&tag) else {
            if let Some(st) = self.ended.get(&tag).copied() {
                // Ended by the fabric while the driver was answering: the chip's status.
                let st = if terminate { CTIO_SUCCESS } else { st };
                self.finish_ctio(reply, st, flags);
            } else if terminate {
                self.finish_ctio(reply, CTIO_SUCCESS, flags);
            } else {
                self.error(format!("CTIO7 {handle:#x} for unknown exchange {xaddr:#x}"));
                self.finish_ctio(reply, CTIO_INVALID_RX_ID, flags);
            }
            return;
        };
        if nport != ex.handle || init_id != ex.port_id || ox_id != ex.ox_id {
            let msg = format!(
                "CTIO7 {handle:#x} for exchange {tag:#x}: nport handle {nport:#x} / initiator {init_id:06x} / OX_ID {ox_id:#x}, the exchange has {:#x} / {:06x} / {:#x}",
                ex.handle, ex.port_id, ex.ox_id
            );
            self.error(msg);
            self.finish_ctio(reply, CTIO_PORT_LOGGED_OUT, flags);
            return;
        }
        if terminate {
            self.end_exchange(tag, CTIO_ABORTED);
            self.finish_ctio(reply, CTIO_SUCCESS, flags);
            return;
        }
        if ex.abts_pending {
            self.finish_ctio(reply, CTIO_ABORTED, flags);
            return;
        }
        if let Some(st) = self.ctio_status.take() {
            self.finish_ctio(reply, st, flags);
            return;
        }
        let frame = usize::from(self.frame_size.max(1));
        let mode = (flags >> 6) & 3;
        let send_status = flags & CTIO7_FLAGS_SEND_STATUS != 0;
        let mut completion = None;
        match mode {
            0 => {
                let dir_in = flags & CTIO7_FLAGS_DATA_IN != 0;
                let dir_out = flags & CTIO7_FLAGS_DATA_OUT != 0;
                if dir_in && dir_out {
                    self.error(format!("CTIO7 {handle:#x}: both data directions"));
                    self.finish_ctio(reply, CTIO_INVALID_RX_ID, flags);
                    return;
                }
                if flags & CTIO7_FLAGS_DSD_PTR != 0 {
                    self.error(format!("CTIO7 {handle:#x}: DSD list pointer unsupported"));
                    reply[3] = RF_INV_E_PARAM;
                    self.post_rsp(reply);
                    return;
                }
                if dir_in || dir_out {
                    let xfer = get32(&e, 44);
                    let dsds = match collect_dsds(&e, conts, dseg_count) {
                        Ok(d) => d,
                        Err(m) => {
                            self.error(format!("CTIO7 {handle:#x}: {m}"));
                            reply[3] = RF_INV_E_COUNT;
                            self.post_rsp(reply);
                            return;
                        }
                    };
                    let total: u64 = dsds.iter().map(|d| u64::from(d.1)).sum();
                    if total != u64::from(xfer) || total > MAX_TRANSFER {
                        self.error(format!("CTIO7 {handle:#x}: DSD lengths sum to {total}, transfer length {xfer}"));
                        reply[3] = RF_INV_E_PARAM;
                        self.post_rsp(reply);
                        return;
                    }
                    let r = if dir_in {
                        self.data_in(mem, tag, &dsds, rel_off, frame)
                    } else {
                        self.data_out(mem, tag, &dsds, rel_off)
                    };
                    if let Err(m) = r {
                        self.error(format!("CTIO7 {handle:#x}: {m}"));
                        self.finish_ctio(reply, CTIO_INVALID_RX_ID, flags);
                        return;
                    }
                }
                if send_status {
                    completion = Some((scsi_status, residual, Vec::new(), None));
                }
            }
            1 => {
                if flags & (CTIO7_FLAGS_DATA_IN | CTIO7_FLAGS_DATA_OUT) != 0 {
                    self.error(format!("CTIO7 {handle:#x}: status mode 1 with a data direction"));
                }
                if send_status {
                    let sense_len = usize::from(get16(&e, 24));
                    let rsp_len = usize::from(get16(&e, 36));
                    // The 24 bytes travel as big-endian 32-bit words: undo the swap.
                    let mut area = [0u8; 24];
                    for (i, c) in e[40..64].chunks_exact(4).enumerate() {
                        area[i * 4..i * 4 + 4].copy_from_slice(&[c[3], c[2], c[1], c[0]]);
                    }
                    let mut tmr = None;
                    let mut off = 0;
                    if scsi_status & SS_RESPONSE_INFO_LEN_VALID != 0 {
                        let l = rsp_len.min(24);
                        if l >= 4 {
                            tmr = Some(area[3]);
                        } else {
                            self.error(format!("CTIO7 {handle:#x}: response info length {rsp_len}"));
                        }
                        off = l;
                    }
                    let mut sense = Vec::new();
                    if scsi_status & SS_SENSE_LEN_VALID != 0 {
                        if off + sense_len > 24 {
                            self.error(format!(
                                "CTIO7 {handle:#x}: sense length {sense_len} beyond the 24 bytes of the IOCB"
                            ));
                        }
                        let end = (off + sense_len).min(24);
                        sense = area[off..end].to_vec();
                    }
                    completion = Some((scsi_status, residual, sense, tmr));
                }
            }
            _ => {
                self.error(format!("CTIO7 {handle:#x}: status mode {mode} unsupported"));
                reply[3] = RF_INV_E_PARAM;
                self.post_rsp(reply);
                return;
            }
        }
        if let Some((ss, resid, sense, tmr)) = completion {
            self.complete_status(tag, ss, resid, sense, tmr, handle);
        }
        if flags & CTIO7_FLAGS_DONT_RET_CTIO == 0 {
            self.finish_ctio(reply, CTIO_SUCCESS, flags);
        }
    }

    fn finish_ctio(&mut self, mut reply: [u8; IOCB], status: u16, _flags: u16) {
        put16(&mut reply, 8, status);
        self.post_rsp(reply);
    }

    fn data_in(
        &mut self,
        mem: &dyn HostMemory,
        tag: u32,
        dsds: &[(u64, u32)],
        rel_off: u32,
        frame: usize,
    ) -> Result<(), String> {
        let have = self.exchanges.get(&tag).map_or(0, |x| x.data_in.len());
        if rel_off as usize != have {
            return Err(format!("Data-In relative offset {rel_off}, {have} bytes sent so far"));
        }
        let mut buf = Vec::new();
        for (a, l) in dsds {
            let mut chunk = vec![0u8; *l as usize];
            mem.read(*a, &mut chunk).map_err(|f| f.to_string())?;
            buf.extend_from_slice(&chunk);
        }
        if let Some(ex) = self.exchanges.get_mut(&tag) {
            if ex.data_in.len() + buf.len() > ex.fcp_dl as usize {
                let msg =
                    format!("Data-In overrun: {} + {} bytes for FCP_DL {}", ex.data_in.len(), buf.len(), ex.fcp_dl);
                return Err(msg);
            }
            ex.frames_in += buf.len().div_ceil(frame);
            ex.data_in.extend_from_slice(&buf);
        }
        Ok(())
    }

    fn data_out(&mut self, mem: &dyn HostMemory, tag: u32, dsds: &[(u64, u32)], rel_off: u32) -> Result<(), String> {
        let Some(ex) = self.exchanges.get(&tag) else {
            return Ok(());
        };
        let total: usize = dsds.iter().map(|d| d.1 as usize).sum();
        let start = rel_off as usize;
        let end = start.saturating_add(total);
        if end > ex.data_out.len() {
            return Err(format!(
                "Data-Out of {total} bytes at offset {start}: the initiator has {} bytes",
                ex.data_out.len()
            ));
        }
        let data = ex.data_out[start..end].to_vec();
        let mut off = 0usize;
        for (a, l) in dsds {
            let l = *l as usize;
            mem.write(*a, &data[off..off + l]).map_err(|f| f.to_string())?;
            off += l;
        }
        if let Some(ex) = self.exchanges.get_mut(&tag) {
            ex.data_out_sent = ex.data_out_sent.max(end);
        }
        Ok(())
    }

    fn complete_status(&mut self, tag: u32, ss: u16, resid: u32, sense: Vec<u8>, tmr: Option<u8>, handle: u32) {
        let Some(ex) = self.exchanges.remove(&tag) else {
            return;
        };
        let residual = if ss & SS_RESIDUAL_UNDER != 0 {
            i64::from(resid)
        } else if ss & SS_RESIDUAL_OVER != 0 {
            -i64::from(resid)
        } else {
            0
        };
        let status = (ss & 0xff) as u8;
        if ex.is_tm {
            if tmr.is_none() {
                self.error(format!("CTIO7 {handle:#x}: task management answered without FCP_RSP_INFO"));
            }
        } else if status == 0 {
            let moved = if ex.data_out.is_empty() { ex.data_in.len() } else { ex.data_out_sent } as i64;
            let want = i64::from(ex.fcp_dl) - moved;
            if want != residual {
                self.error(format!(
                    "CTIO7 {handle:#x}: GOOD status with residual {residual}, but {moved} of {} bytes moved",
                    ex.fcp_dl
                ));
            }
        }
        self.completions.insert(
            tag,
            Completion {
                scsi_status: status,
                sense,
                data_in: ex.data_in,
                residual,
                aborted: false,
                frames_in: ex.frames_in,
                tm_response: tmr,
                data_out_sent: ex.data_out_sent,
            },
        );
    }
}

fn collect_dsds(e: &[u8; IOCB], conts: &[[u8; IOCB]], count: usize) -> Result<Vec<(u64, u32)>, String> {
    let capacity = 1 + conts.len() * 5;
    if count == 0 || count > capacity {
        return Err(format!("data segment count {count}, the IOCB chain holds {capacity}"));
    }
    let mut v = vec![(get64(e, 52), get32(e, 60))];
    for c in conts {
        for i in 0..5 {
            if v.len() == count {
                break;
            }
            let o = 4 + i * 12;
            v.push((get64(c, o), get32(c, o + 8)));
        }
    }
    Ok(v)
}

/// The node name the model gives a remote port (its WWPN with NAA nibble 2 ... the top nibble
/// replaced by 2).
fn node_name(wwpn: u64) -> u64 {
    (wwpn & 0x0fff_ffff_ffff_ffff) | 0x2000_0000_0000_0000
}
