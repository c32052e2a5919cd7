//! A user-space QLogic ISP24xx/25xx target-mode driver (the qla2x00t role).
//!
//! The driver owns the PCI function through a [`Bus`] (VFIO on real hardware:
//! [`vfio::VfioBus`]), loads the firmware, initializes it for target mode and turns the
//! firmware's IOCBs into scst commands:
//!
//! * [`regs`]: BAR0 registers, interrupt causes, mailbox and async event codes.
//! * [`fw`]: Linux firmware file parsing (`ql2400_fw.bin`, `ql2500_fw.bin`).
//! * [`iocb`]: the ring entry layouts (ATIO type 7, CTIO type 7, IMMEDIATE NOTIFY, NOTIFY ACK,
//!   ABTS) with encoders and decoders.
//! * [`QlaPort`]: bring-up ([`QlaPort::start`]), the rings, logins (a [`scst::Session`] per
//!   logged-in initiator port), the data path and task management. One thread runs it
//!   ([`QlaPort::run`] or [`QlaPort::spawn`]).

pub mod bus;
pub mod fw;
mod hw;
pub mod iocb;
mod port;
pub mod regs;
#[cfg(target_os = "linux")]
pub mod vfio;

use std::path::PathBuf;
use std::time::Duration;

pub use bus::{Bus, BusError, DmaRegion};
pub use port::{QlaHandle, QlaInfo, QlaPort};

/// Firmware version (ABOUT FIRMWARE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwVersion {
    /// Major.
    pub major: u16,
    /// Minor.
    pub minor: u16,
    /// Subminor.
    pub subminor: u16,
    /// Attributes.
    pub attributes: u16,
}

impl std::fmt::Display for FwVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}.{:02} (attributes {:#06x})", self.major, self.minor, self.subminor, self.attributes)
    }
}

/// Driver configuration.
#[derive(Clone, Debug)]
pub struct QlaConfig {
    /// Our port name (the init control block's port name).
    pub wwpn: u64,
    /// Our node name.
    pub wwnn: u64,
    /// The firmware image; when `None`, read from `firmware_path`.
    pub firmware: Option<Vec<u8>>,
    /// The firmware file; when `None`, `/lib/firmware/<ql2400_fw.bin|ql2500_fw.bin>`.
    pub firmware_path: Option<PathBuf>,
    /// Frame payload size (512, 1024, 2048 or 2112).
    pub frame_size: u16,
    /// Request ring entries.
    pub req_entries: u16,
    /// Response ring entries.
    pub rsp_entries: u16,
    /// ATIO ring entries.
    pub atio_entries: u16,
    /// How long one mailbox command may take before it is given up.
    pub mailbox_timeout: Duration,
    /// How long bring-up waits for the firmware to report READY (then it goes on; the link may
    /// come up later).
    pub ready_timeout: Duration,
    /// Commands one initiator may have outstanding.
    pub queue_depth: usize,
    /// CTIO timeout in seconds.
    pub ctio_timeout: u16,
    /// Relative target port id (VPD 83h).
    pub rel_port_id: u16,
    /// ALUA target port group.
    pub tpg_id: u16,
}

impl QlaConfig {
    /// Defaults for a port with these names.
    pub fn new(wwpn: u64, wwnn: u64) -> Self {
        Self {
            wwpn,
            wwnn,
            firmware: None,
            firmware_path: None,
            frame_size: 2048,
            req_entries: 512,
            rsp_entries: 512,
            atio_entries: 512,
            mailbox_timeout: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(10),
            queue_depth: 128,
            ctio_timeout: 10,
            rel_port_id: 1,
            tpg_id: 0,
        }
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum QlaError {
    /// The PCI function is not an ISP24xx/25xx.
    #[error("PCI device {vendor:04x}:{device:04x} is not a supported QLogic ISP24xx/25xx")]
    Unsupported {
        /// Vendor id.
        vendor: u16,
        /// Device id.
        device: u16,
    },
    /// A bus operation failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The firmware file could not be read.
    #[error("firmware file {path}: {err}")]
    FirmwareFile {
        /// The path.
        path: PathBuf,
        /// The error.
        err: std::io::Error,
    },
    /// The firmware image did not parse.
    #[error(transparent)]
    FirmwareImage(#[from] fw::FwError),
    /// The chip did not leave reset.
    #[error("chip reset: timed out waiting for {0}")]
    ResetTimeout(&'static str),
    /// A mailbox command got no completion.
    #[error("mailbox command {cmd:#04x} timed out after {after:?}: the firmware does not answer")]
    MailboxTimeout {
        /// The command.
        cmd: u16,
        /// The timeout.
        after: Duration,
    },
    /// A mailbox command completed with an error.
    #[error("mailbox command {cmd:#04x} failed: status {status:#06x} (mb1 {mb1:#06x}, mb2 {mb2:#06x})")]
    MailboxFailed {
        /// The command.
        cmd: u16,
        /// Mailbox 0.
        status: u16,
        /// Mailbox 1.
        mb1: u16,
        /// Mailbox 2.
        mb2: u16,
    },
    /// VERIFY CHECKSUM failed: the loaded image is corrupt.
    #[error("firmware checksum verification failed (status {status:#06x}, checksum {checksum:#010x})")]
    Checksum {
        /// Mailbox 0.
        status: u16,
        /// The checksum the firmware computed.
        checksum: u32,
    },
    /// The firmware stopped (system error, RISC paused).
    #[error("firmware error: {0}")]
    Firmware(String),
}
