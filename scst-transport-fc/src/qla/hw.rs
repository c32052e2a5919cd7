//! Chip bring-up and mailbox commands: reset, ROM ready, mailbox register test, firmware load,
//! checksum, execution, the initialization control block, firmware state and adapter id.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bus::{Bus, DmaRegion};
use super::fw::Firmware;
use super::regs::{self, ChipKind, hccr, intr, mbc};
use super::{FwVersion, QlaError};

/// Mailbox registers the 24xx has.
pub(crate) const MAILBOXES: usize = 32;

/// Words per LOAD RISC RAM EXTENDED (the bounce buffer holds 64 KiB).
const LOAD_WORDS: usize = 16 * 1024;

/// The register-level side of the chip: mailboxes and the interrupt status, shared by bring-up
/// and the running target.
pub(crate) struct Isp {
    pub(crate) bus: Arc<dyn Bus>,
    /// Async events seen while waiting for a mailbox (mailbox 0..3).
    pub(crate) pending_aen: VecDeque<[u16; 4]>,
    /// A fatal condition seen while waiting (RISC paused).
    pub(crate) fatal: Option<String>,
}

fn msw(x: u32) -> u16 {
    (x >> 16) as u16
}
fn lsw(x: u32) -> u16 {
    x as u16
}

impl Isp {
    pub(crate) fn new(bus: Arc<dyn Bus>) -> Self {
        Self { bus, pending_aen: VecDeque::new(), fatal: None }
    }

    pub(crate) fn read_mailbox(&self, n: usize) -> u16 {
        self.bus.read16(regs::mailbox(n))
    }

    /// Writes mailboxes `0..out.len()` and rings the host interrupt.
    fn write_mailboxes(&self, out: &[u16]) {
        for (n, &v) in out.iter().enumerate() {
            self.bus.write16(regs::mailbox(n), v);
        }
        self.bus.write32(regs::HCCR, hccr::SET_HOST_INT);
    }

    /// Polls the interrupt status once. Returns a mailbox completion if that is what it was;
    /// records async events; queue updates need no record (the rings are read by pointer).
    pub(crate) fn service_status(&mut self) -> Option<[u16; MAILBOXES]> {
        let stat = self.bus.read32(regs::HOST_STATUS);
        if stat & regs::HSRX_RISC_PAUSED != 0 && self.fatal.is_none() {
            self.fatal = Some(format!("RISC paused (host status {stat:#010x})"));
        }
        if stat & regs::HSRX_RISC_INT == 0 {
            return None;
        }
        let mut done = None;
        match stat as u8 {
            intr::ROM_MB_SUCCESS | intr::ROM_MB_FAILED | intr::MB_SUCCESS | intr::MB_FAILED => {
                let mut mb = [0u16; MAILBOXES];
                mb[0] = msw(stat);
                for (i, m) in mb.iter_mut().enumerate().skip(1) {
                    *m = self.read_mailbox(i);
                }
                done = Some(mb);
            }
            intr::ASYNC_EVENT => {
                let ev = [msw(stat), self.read_mailbox(1), self.read_mailbox(2), self.read_mailbox(3)];
                self.pending_aen.push_back(ev);
            }
            _ => {}
        }
        self.bus.write32(regs::HCCR, hccr::CLR_RISC_INT);
        done
    }

    /// Runs one mailbox command (`out[0]` is the command) and returns the mailboxes.
    ///
    /// # Errors
    /// [`QlaError::MailboxTimeout`] when no completion came within `timeout`,
    /// [`QlaError::MailboxFailed`] when mailbox 0 is not COMMAND COMPLETE.
    pub(crate) fn mailbox(&mut self, out: &[u16], timeout: Duration) -> Result<[u16; MAILBOXES], QlaError> {
        let cmd = out.first().copied().unwrap_or(0);
        // A stale completion would be taken for this one.
        let _ = self.service_status();
        self.write_mailboxes(out);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(mb) = self.service_status() {
                if mb[0] == regs::MBS_COMMAND_COMPLETE {
                    return Ok(mb);
                }
                return Err(QlaError::MailboxFailed { cmd, status: mb[0], mb1: mb[1], mb2: mb[2] });
            }
            if let Some(f) = &self.fatal {
                return Err(QlaError::Firmware(format!("{f} during mailbox command {cmd:#04x}")));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(QlaError::MailboxTimeout { cmd, after: timeout });
            }
            self.bus.wait_irq((deadline - now).min(Duration::from_millis(5)));
        }
    }

    fn wait_for(
        &self,
        what: &'static str,
        timeout: Duration,
        mut ok: impl FnMut(&Self) -> bool,
    ) -> Result<(), QlaError> {
        let deadline = Instant::now() + timeout;
        loop {
            if ok(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(QlaError::ResetTimeout(what));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Soft reset, RISC reset and release, then the wait for the ROM code (mailbox 0 reads 0).
    pub(crate) fn reset(&mut self, timeout: Duration) -> Result<(), QlaError> {
        let b = self.bus.clone();
        b.write32(regs::ICTRL, 0);
        b.write32(regs::CTRL_STATUS, regs::CSRX_DMA_SHUTDOWN | regs::CSRX_MWB_4096);
        self.wait_for("DMA shutdown", timeout, |s| s.bus.read32(regs::CTRL_STATUS) & regs::CSRX_DMA_ACTIVE == 0)?;
        b.write32(regs::CTRL_STATUS, regs::CSRX_ISP_SOFT_RESET | regs::CSRX_DMA_SHUTDOWN | regs::CSRX_MWB_4096);
        // The firmware may still finish NVRAM accesses (mailbox 0 non-zero): not fatal.
        let _ = self.wait_for("NVRAM access", Duration::from_millis(50), |s| s.read_mailbox(0) == 0);
        self.wait_for("soft reset", timeout, |s| s.bus.read32(regs::CTRL_STATUS) & regs::CSRX_ISP_SOFT_RESET == 0)?;
        b.write32(regs::HCCR, hccr::SET_RISC_RESET);
        b.write32(regs::HCCR, hccr::REL_RISC_PAUSE);
        b.write32(regs::HCCR, hccr::CLR_RISC_RESET);
        self.wait_for("ROM ready (mailbox 0 = 0)", timeout, |s| s.read_mailbox(0) == 0)?;
        b.write32(regs::HCCR, hccr::CLR_RISC_INT);
        self.pending_aen.clear();
        self.fatal = None;
        Ok(())
    }

    /// MAILBOX REGISTER TEST: the ROM echoes seven patterns.
    pub(crate) fn mailbox_test(&mut self, t: Duration) -> Result<(), QlaError> {
        let pat = [0xaaaa, 0x5555, 0xaa55, 0x55aa, 0xa5a5, 0x5a5a, 0x2525];
        let mut out = [0u16; 8];
        out[0] = mbc::MAILBOX_REGISTER_TEST;
        out[1..].copy_from_slice(&pat);
        let mb = self.mailbox(&out, t)?;
        if mb[1..8] != pat {
            return Err(QlaError::Firmware(format!("mailbox register test echoed {:04x?}", &mb[1..8])));
        }
        Ok(())
    }

    /// Loads every segment through the bounce buffer (LOAD RISC RAM EXTENDED), verifies the
    /// checksum and starts the firmware; returns its version (ABOUT FIRMWARE).
    pub(crate) fn load_firmware(&mut self, fw: &Firmware, t: Duration) -> Result<FwVersion, QlaError> {
        let bounce = DmaRegion::new(&self.bus, LOAD_WORDS * 4)?;
        let mut bytes = vec![0u8; LOAD_WORDS * 4];
        for seg in &fw.segments {
            let mut addr = seg.risc_addr;
            for chunk in seg.words.chunks(LOAD_WORDS) {
                for (i, w) in chunk.iter().enumerate() {
                    bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
                }
                bounce.write(0, &bytes[..chunk.len() * 4]);
                let dma = bounce.iova();
                let n = chunk.len() as u32;
                let out = [
                    mbc::LOAD_RISC_RAM_EXTENDED,
                    lsw(addr),
                    msw(dma as u32),
                    lsw(dma as u32),
                    msw(n),
                    lsw(n),
                    msw((dma >> 32) as u32),
                    lsw((dma >> 32) as u32),
                    msw(addr),
                ];
                self.mailbox(&out, t)?;
                addr = addr.wrapping_add(n);
            }
        }
        let start = fw.start_addr();
        match self.mailbox(&[mbc::VERIFY_CHECKSUM, msw(start), lsw(start)], t) {
            Ok(_) => {}
            Err(QlaError::MailboxFailed { status, mb1, mb2, .. }) => {
                return Err(QlaError::Checksum { status, checksum: u32::from(mb2) << 16 | u32::from(mb1) });
            }
            Err(e) => return Err(e),
        }
        self.mailbox(&[mbc::EXECUTE_FIRMWARE, msw(start), lsw(start), 0, 0], t)?;
        let mb = self.mailbox(&[mbc::ABOUT_FIRMWARE], t)?;
        Ok(FwVersion { major: mb[1], minor: mb[2], subminor: mb[3], attributes: mb[6] })
    }

    /// INITIALIZE FIRMWARE with the control block at `icb`.
    pub(crate) fn init_firmware(&mut self, icb: u64, t: Duration) -> Result<(), QlaError> {
        let lo = icb as u32;
        let hi = (icb >> 32) as u32;
        self.mailbox(&[mbc::INITIALIZE_FIRMWARE, 0, msw(lo), lsw(lo), 0, 0, msw(hi), lsw(hi)], t)?;
        Ok(())
    }

    /// GET FIRMWARE STATE (mailbox 1).
    pub(crate) fn firmware_state(&mut self, t: Duration) -> Result<u16, QlaError> {
        Ok(self.mailbox(&[mbc::GET_FIRMWARE_STATE], t)?[1])
    }

    /// GET ADAPTER ID: `(loop id, N_Port ID, topology)`.
    pub(crate) fn adapter_id(&mut self, t: Duration) -> Result<(u16, u32, u16), QlaError> {
        let mb = self.mailbox(&[mbc::GET_ADAPTER_ID], t)?;
        let port_id = u32::from(mb[3] & 0xff) << 16 | u32::from(mb[2]);
        Ok((mb[1], port_id, mb[6]))
    }
}

/// What the init control block says (see `build_icb`).
pub(crate) struct IcbParams {
    pub(crate) wwpn: u64,
    pub(crate) wwnn: u64,
    pub(crate) frame_size: u16,
    pub(crate) req: (u64, u16),
    pub(crate) rsp: (u64, u16),
    pub(crate) atio: (u64, u16),
}

/// Init control block size (struct init_cb_24xx).
pub(crate) const ICB_LEN: usize = 128;

/// Builds a 24xx initialization control block: version 1, target mode on, initiator mode off.
pub(crate) fn build_icb(p: &IcbParams) -> [u8; ICB_LEN] {
    let mut b = [0u8; ICB_LEN];
    let p16 = |b: &mut [u8; ICB_LEN], at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let p32 = |b: &mut [u8; ICB_LEN], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let p64 = |b: &mut [u8; ICB_LEN], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    p16(&mut b, 0, 1); // version
    p16(&mut b, 4, p.frame_size);
    p16(&mut b, 6, 0xffff); // execution throttle
    p16(&mut b, 8, 0); // exchange count: firmware default
    b[12..20].copy_from_slice(&p.wwpn.to_be_bytes());
    b[20..28].copy_from_slice(&p.wwnn.to_be_bytes());
    p16(&mut b, 32, 3); // login retry count
    p16(&mut b, 36, p.rsp.1);
    p16(&mut b, 38, p.req.1);
    p64(&mut b, 44, p.req.0);
    p64(&mut b, 52, p.rsp.0);
    p16(&mut b, 78, p.atio.1);
    p64(&mut b, 80, p.atio.0);
    // Options 1: BIT 4 enable target mode, BIT 5 disable initiator mode, BIT 2 full duplex.
    p32(&mut b, 92, 1 << 4 | 1 << 5 | 1 << 2);
    // Options 2: connection option 2 (loop preferred, else point-to-point).
    p32(&mut b, 96, 2 << 4);
    p32(&mut b, 100, 0);
    b
}

/// The chip kind, or why the device is not one this driver drives.
pub(crate) fn chip_of(bus: &dyn Bus) -> Result<ChipKind, QlaError> {
    let (v, d) = bus.pci_ids();
    ChipKind::from_pci(v, d).ok_or(QlaError::Unsupported { vendor: v, device: d })
}
