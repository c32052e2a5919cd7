//! ISP24xx/25xx BAR0 registers, host status codes and mailbox commands, as this driver reads
//! Linux's `struct device_reg_24xx` (qla_def.h) and qla_mbx.c.
//!
//! The mailbox registers are 16 bits wide at 2-byte spacing from 80h (mailbox `n` at
//! `80h + 2n`); the driver reads and writes them with 16-bit accesses ([`super::Bus::read16`]).

/// Flash address.
pub const FLASH_ADDR: u32 = 0x00;
/// Flash data.
pub const FLASH_DATA: u32 = 0x04;
/// Control/status.
pub const CTRL_STATUS: u32 = 0x08;
/// Interrupt control.
pub const ICTRL: u32 = 0x0c;
/// Interrupt status.
pub const ISTATUS: u32 = 0x10;
/// Request queue in-pointer (the driver writes it).
pub const REQ_Q_IN: u32 = 0x1c;
/// Request queue out-pointer (the firmware advances it).
pub const REQ_Q_OUT: u32 = 0x20;
/// Response queue in-pointer (the firmware advances it).
pub const RSP_Q_IN: u32 = 0x24;
/// Response queue out-pointer (the driver writes it).
pub const RSP_Q_OUT: u32 = 0x28;
/// ATIO queue in-pointer (the firmware advances it).
pub const ATIO_Q_IN: u32 = 0x3c;
/// ATIO queue out-pointer (the driver writes it).
pub const ATIO_Q_OUT: u32 = 0x40;
/// Host status: RISC interrupt, pause, the interrupt cause (low byte) and mailbox 0 (high half).
pub const HOST_STATUS: u32 = 0x44;
/// Host command and control.
pub const HCCR: u32 = 0x48;
/// First mailbox register.
pub const MAILBOX0: u32 = 0x80;

/// CTRL_STATUS: ISP soft reset.
pub const CSRX_ISP_SOFT_RESET: u32 = 1 << 0;
/// CTRL_STATUS: DMA shutdown request.
pub const CSRX_DMA_SHUTDOWN: u32 = 1 << 16;
/// CTRL_STATUS: DMA still active.
pub const CSRX_DMA_ACTIVE: u32 = 1 << 17;
/// CTRL_STATUS: PCI max write burst 4096 bytes.
pub const CSRX_MWB_4096: u32 = 0x30;

/// ICTRL: enable RISC interrupts.
pub const ICRX_EN_RISC_INT: u32 = 1 << 3;

/// HOST_STATUS: the RISC raised an interrupt.
pub const HSRX_RISC_INT: u32 = 1 << 15;
/// HOST_STATUS: the RISC is paused (a fatal firmware error).
pub const HSRX_RISC_PAUSED: u32 = 1 << 8;

/// HCCR commands (bits 31..28).
pub mod hccr {
    /// Assert RISC reset.
    pub const SET_RISC_RESET: u32 = 0x1000_0000;
    /// Release RISC reset.
    pub const CLR_RISC_RESET: u32 = 0x2000_0000;
    /// Pause the RISC.
    pub const SET_RISC_PAUSE: u32 = 0x3000_0000;
    /// Release the RISC pause.
    pub const REL_RISC_PAUSE: u32 = 0x4000_0000;
    /// Host interrupt to the RISC: a mailbox command is ready.
    pub const SET_HOST_INT: u32 = 0x5000_0000;
    /// Clear the host interrupt.
    pub const CLR_HOST_INT: u32 = 0x6000_0000;
    /// Acknowledge (clear) the RISC interrupt.
    pub const CLR_RISC_INT: u32 = 0xa000_0000;
}

/// HOST_STATUS low byte: why the RISC interrupted.
pub mod intr {
    /// ROM mailbox command completed.
    pub const ROM_MB_SUCCESS: u8 = 0x01;
    /// ROM mailbox command failed.
    pub const ROM_MB_FAILED: u8 = 0x02;
    /// Mailbox command completed.
    pub const MB_SUCCESS: u8 = 0x10;
    /// Mailbox command failed.
    pub const MB_FAILED: u8 = 0x11;
    /// Asynchronous event (code in mailbox 0).
    pub const ASYNC_EVENT: u8 = 0x12;
    /// Response queue updated.
    pub const RSP_QUE_UPDATE: u8 = 0x13;
    /// Response queue updated (83xx code, accepted too).
    pub const RSP_QUE_UPDATE_83XX: u8 = 0x14;
    /// ATIO queue updated.
    pub const ATIO_QUE_UPDATE: u8 = 0x1c;
    /// ATIO and response queues updated.
    pub const ATIO_RSP_QUE_UPDATE: u8 = 0x1d;
}

/// Mailbox command codes.
pub mod mbc {
    /// EXECUTE FIRMWARE.
    pub const EXECUTE_FIRMWARE: u16 = 0x02;
    /// MAILBOX REGISTER TEST.
    pub const MAILBOX_REGISTER_TEST: u16 = 0x06;
    /// VERIFY CHECKSUM.
    pub const VERIFY_CHECKSUM: u16 = 0x07;
    /// ABOUT FIRMWARE.
    pub const ABOUT_FIRMWARE: u16 = 0x08;
    /// LOAD RISC RAM EXTENDED.
    pub const LOAD_RISC_RAM_EXTENDED: u16 = 0x0b;
    /// GET ADAPTER ID (loop id, port id, topology).
    pub const GET_ADAPTER_ID: u16 = 0x20;
    /// INITIALIZE FIRMWARE (with an init control block).
    pub const INITIALIZE_FIRMWARE: u16 = 0x60;
    /// GET FIRMWARE STATE.
    pub const GET_FIRMWARE_STATE: u16 = 0x69;
}

/// Mailbox 0 completion status: command complete.
pub const MBS_COMMAND_COMPLETE: u16 = 0x4000;

/// GET FIRMWARE STATE values (mailbox 1).
pub mod fstate {
    /// Waiting for configuration.
    pub const CONFIG_WAIT: u16 = 0;
    /// Ready.
    pub const READY: u16 = 3;
    /// Loss of sync.
    pub const LOSS_OF_SYNC: u16 = 4;
    /// Error.
    pub const ERROR: u16 = 5;
}

/// Asynchronous event codes (mailbox 0).
pub mod aen {
    /// System error: the firmware stopped.
    pub const SYSTEM_ERROR: u16 = 0x8002;
    /// Request transfer error.
    pub const REQUEST_TRANSFER_ERROR: u16 = 0x8003;
    /// Response transfer error.
    pub const RESPONSE_TRANSFER_ERROR: u16 = 0x8004;
    /// LIP occurred.
    pub const LIP_OCCURRED: u16 = 0x8010;
    /// Loop up.
    pub const LOOP_UP: u16 = 0x8011;
    /// Loop down.
    pub const LOOP_DOWN: u16 = 0x8012;
    /// LIP reset.
    pub const LIP_RESET: u16 = 0x8013;
    /// Port database changed.
    pub const PORT_UPDATE: u16 = 0x8014;
    /// Registered state change notification.
    pub const RSCN: u16 = 0x8015;
}

/// The offset of mailbox register `n`.
pub fn mailbox(n: usize) -> u32 {
    MAILBOX0 + 2 * n as u32
}

/// Chip family from the PCI device id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChipKind {
    /// ISP24xx (ql2400_fw.bin).
    Isp24xx,
    /// ISP25xx (ql2500_fw.bin).
    Isp25xx,
}

impl ChipKind {
    /// The chip of a QLogic (vendor 1077h) PCI device id, if this driver supports it.
    pub fn from_pci(vendor: u16, device: u16) -> Option<Self> {
        if vendor != 0x1077 {
            return None;
        }
        match device {
            0x2422 | 0x2432 | 0x5422 | 0x5432 | 0x8432 => Some(Self::Isp24xx),
            0x2532 | 0x2533 => Some(Self::Isp25xx),
            _ => None,
        }
    }

    /// The Linux firmware file name.
    pub fn firmware_name(self) -> &'static str {
        match self {
            Self::Isp24xx => "ql2400_fw.bin",
            Self::Isp25xx => "ql2500_fw.bin",
        }
    }
}
