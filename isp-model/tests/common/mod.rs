//! A hand-driven "driver" for the model's tests: registers, mailboxes and rings written by
//! hand from the reading of the ISP24xx interface (no shared code with the model).
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use isp_model::{DmaFault, HostMemory, IspModel, ModelConfig, ModelState};
use parking_lot::Mutex;

/// Arena base: above 4 GiB so the high halves of 64-bit DMA addresses matter.
pub const BASE: u64 = 0x1_2340_0000;
pub const ARENA: usize = 1 << 20;
pub const REQ: u64 = BASE;
pub const RSP: u64 = BASE + 0x1000;
pub const ATIO: u64 = BASE + 0x2000;
pub const ICB: u64 = BASE + 0x3000;
pub const SCRATCH: u64 = BASE + 0x8000;
pub const FW: u64 = BASE + 0x10000;
pub const DATA: u64 = BASE + 0x40000;
pub const REQ_LEN: u16 = 16;
pub const RSP_LEN: u16 = 16;

pub const PORT_ID: u32 = 0x01_0200;

pub struct Arena {
    pub bytes: Mutex<Vec<u8>>,
}

impl Arena {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { bytes: Mutex::new(vec![0; ARENA]) })
    }
    fn range(iova: u64, len: usize) -> Result<std::ops::Range<usize>, DmaFault> {
        let fault = DmaFault { iova, len };
        let off = iova.checked_sub(BASE).ok_or(fault)? as usize;
        let end = off.checked_add(len).ok_or(fault)?;
        if end > ARENA {
            return Err(fault);
        }
        Ok(off..end)
    }
    pub fn put(&self, iova: u64, data: &[u8]) {
        self.write(iova, data).unwrap();
    }
    pub fn get(&self, iova: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.read(iova, &mut v).unwrap();
        v
    }
}

impl HostMemory for Arena {
    fn read(&self, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        let r = Self::range(iova, buf.len())?;
        buf.copy_from_slice(&self.bytes.lock()[r]);
        Ok(())
    }
    fn write(&self, iova: u64, data: &[u8]) -> Result<(), DmaFault> {
        let r = Self::range(iova, data.len())?;
        self.bytes.lock()[r].copy_from_slice(data);
        Ok(())
    }
}

pub fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
pub fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

pub struct H {
    pub model: Arc<IspModel>,
    pub mem: Arc<Arena>,
    pub irqs: Arc<AtomicU64>,
    pub atio_len: u16,
    pub req_in: u16,
    pub rsp_out: u16,
    pub atio_out: u16,
    /// Async events seen: mailbox 0..3.
    pub asyncs: Vec<[u16; 4]>,
}

impl H {
    pub fn new(cfg: ModelConfig, atio_len: u16) -> Self {
        let mem = Arena::new();
        let irqs = Arc::new(AtomicU64::new(0));
        let i2 = Arc::clone(&irqs);
        let model = IspModel::new(
            cfg,
            mem.clone(),
            Arc::new(move |_v| {
                i2.fetch_add(1, Ordering::SeqCst);
            }),
        );
        Self { model, mem, irqs, atio_len, req_in: 0, rsp_out: 0, atio_out: 0, asyncs: Vec::new() }
    }

    pub fn r(&self, off: u32) -> u32 {
        self.model.mmio_read32(off)
    }
    pub fn w(&self, off: u32, v: u32) {
        self.model.mmio_write32(off, v)
    }
    pub fn mbx(&self, n: usize) -> u16 {
        self.r(0x80 + 2 * n as u32) as u16
    }

    /// Handles interrupts that are not mailbox completions (async events, queue updates).
    fn take_other(&mut self, hs: u32) {
        if hs & 0xff == 0x12 {
            self.asyncs.push([(hs >> 16) as u16, self.mbx(1), self.mbx(2), self.mbx(3)]);
        }
        self.w(0x48, 0xa000_0000);
    }

    /// Drains pending interrupts (async events, queue updates).
    pub fn drain(&mut self) {
        for _ in 0..64 {
            let hs = self.r(0x44);
            if hs & 0x8000 == 0 {
                return;
            }
            self.take_other(hs);
        }
    }

    /// A mailbox command: registers in, SET HOST INT, poll host_status, read 32 mailboxes.
    pub fn mb(&mut self, regs: &[(usize, u16)]) -> Option<[u16; 32]> {
        for (i, v) in regs {
            self.w(0x80 + 2 * *i as u32, u32::from(*v));
        }
        self.w(0x48, 0x5000_0000);
        for _ in 0..100 {
            let hs = self.r(0x44);
            if hs & 0x8000 == 0 {
                continue;
            }
            match hs & 0xff {
                0x01 | 0x02 | 0x10 | 0x11 => {
                    let mut out = [0u16; 32];
                    for (i, o) in out.iter_mut().enumerate() {
                        *o = self.mbx(i);
                    }
                    assert_eq!((hs >> 16) as u16, out[0], "host_status high word is mailbox 0");
                    let ok = out[0] == 0x4000;
                    assert_eq!(ok, matches!(hs & 0xff, 0x01 | 0x10), "interrupt type vs status");
                    self.w(0x48, 0xa000_0000);
                    return Some(out);
                }
                _ => self.take_other(hs),
            }
        }
        None
    }

    pub fn soft_reset_and_rom(&mut self) {
        // DMA shutdown, then the soft reset.
        self.w(0x08, 0x0001_0030);
        assert_eq!(self.r(0x08) & (1 << 17), 0, "DMA still active");
        self.w(0x08, 0x0001_0031);
        assert_eq!(self.model.state(), ModelState::Reset);
        let mut busy = 0;
        while self.mbx(0) != 0 {
            busy += 1;
            assert!(busy < 100, "mailbox 0 stays busy");
        }
        assert!(busy > 0, "mailbox 0 never read busy after the soft reset");
        let mut n = 0;
        while self.r(0x08) & 1 != 0 {
            n += 1;
            assert!(n < 100, "soft reset never completes");
        }
        self.w(0x48, 0x1000_0000);
        assert_ne!(self.r(0x48) & (1 << 5), 0, "HCCR shows RISC reset");
        assert_eq!(self.model.state(), ModelState::Reset);
        self.w(0x48, 0x4000_0000);
        self.w(0x48, 0x2000_0000);
        let mut busy = 0;
        while self.mbx(0) != 0 {
            busy += 1;
            assert!(busy < 100);
        }
        assert!(busy > 0);
        assert_eq!(self.model.state(), ModelState::RomCode);
    }

    /// Loads a ql2x00_fw.bin-layout image: segments of big-endian words, header word 2 the
    /// RISC address, word 3 the length in words. Returns the start address.
    pub fn load_firmware(&mut self, blob: &[u8]) -> u32 {
        let words: Vec<u32> = blob.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
        let mut at = 0usize;
        let mut start = None;
        for _ in 0..2 {
            let addr = words[at + 2];
            let len = words[at + 3] as usize;
            start.get_or_insert(addr);
            let le: Vec<u8> = words[at..at + len].iter().flat_map(|w| w.to_le_bytes()).collect();
            self.mem.put(FW, &le);
            let r = self
                .mb(&[
                    (0, 0x0b),
                    (8, (addr >> 16) as u16),
                    (1, addr as u16),
                    (2, (FW >> 16) as u16),
                    (3, FW as u16),
                    (6, (FW >> 48) as u16),
                    (7, (FW >> 32) as u16),
                    (4, (len >> 16) as u16),
                    (5, len as u16),
                ])
                .unwrap();
            assert_eq!(r[0], 0x4000, "LOAD RISC RAM EXTENDED");
            at += len;
        }
        start.unwrap()
    }

    pub fn write_icb(&self, frame: u16, xcount: u16, fo1: u32) {
        let mut icb = [0u8; 128];
        icb[0..2].copy_from_slice(&1u16.to_le_bytes());
        icb[4..6].copy_from_slice(&frame.to_le_bytes());
        icb[6..8].copy_from_slice(&0xffffu16.to_le_bytes());
        icb[8..10].copy_from_slice(&xcount.to_le_bytes());
        icb[12..20].copy_from_slice(&0x2100_0024_ff00_0001u64.to_be_bytes());
        icb[20..28].copy_from_slice(&0x2000_0024_ff00_0001u64.to_be_bytes());
        icb[36..38].copy_from_slice(&RSP_LEN.to_le_bytes());
        icb[38..40].copy_from_slice(&REQ_LEN.to_le_bytes());
        icb[44..52].copy_from_slice(&REQ.to_le_bytes());
        icb[52..60].copy_from_slice(&RSP.to_le_bytes());
        icb[78..80].copy_from_slice(&self.atio_len.to_le_bytes());
        icb[80..88].copy_from_slice(&ATIO.to_le_bytes());
        icb[92..96].copy_from_slice(&fo1.to_le_bytes());
        self.mem.put(ICB, &icb);
    }

    pub fn init_fw(&mut self) -> u16 {
        for reg in [0x1c, 0x20, 0x24, 0x28, 0x3c, 0x40] {
            self.w(reg, 0);
        }
        self.mb(&[
            (0, 0x60),
            (2, (ICB >> 16) as u16),
            (3, ICB as u16),
            (6, (ICB >> 48) as u16),
            (7, (ICB >> 32) as u16),
        ])
        .unwrap()[0]
    }

    /// Reset, ROM, firmware, init, link up: the whole bring-up by hand.
    pub fn bring_up(cfg: ModelConfig, atio_len: u16) -> Self {
        let chip = cfg.chip;
        let mut h = Self::new(cfg, atio_len);
        h.soft_reset_and_rom();
        let r = h
            .mb(&[(0, 0x06), (1, 0xaaaa), (2, 0x5555), (3, 0xaa55), (4, 0x55aa), (5, 0xa5a5), (6, 0x5a5a), (7, 0x2525)])
            .unwrap();
        assert_eq!(&r[..8], &[0x4000, 0xaaaa, 0x5555, 0xaa55, 0x55aa, 0xa5a5, 0x5a5a, 0x2525]);
        let start = h.load_firmware(&IspModel::synthetic_firmware(chip, false));
        let r = h.mb(&[(0, 0x07), (1, (start >> 16) as u16), (2, start as u16)]).unwrap();
        assert_eq!(r[0], 0x4000, "VERIFY CHECKSUM");
        let r = h.mb(&[(0, 0x02), (1, (start >> 16) as u16), (2, start as u16), (3, 0), (4, 0)]).unwrap();
        assert_eq!(r[0], 0x4000, "EXECUTE FIRMWARE");
        assert_eq!(h.model.state(), ModelState::FirmwareRunning);
        let r = h.mb(&[(0, 0x08)]).unwrap();
        assert_eq!(r[0], 0x4000);
        assert_eq!(&r[1..4], &[8, 7, 0], "firmware version");
        h.write_icb(2048, 0, 0x30);
        assert_eq!(h.init_fw(), 0x4000, "INITIALIZE FIRMWARE: {:?}", h.model.errors());
        assert_eq!(h.model.state(), ModelState::Initialized);
        h.w(0x0c, 1 << 3);
        h.drain();
        assert!(h.asyncs.iter().any(|a| a[0] == 0x8011), "LOOP UP after init: {:?}", h.asyncs);
        let r = h.mb(&[(0, 0x69)]).unwrap();
        assert_eq!((r[0], r[1]), (0x4000, 3), "firmware state READY");
        let r = h.mb(&[(0, 0x20), (9, 0)]).unwrap();
        assert_eq!(r[0], 0x4000);
        assert_eq!(u32::from(r[2]) | (u32::from(r[3] & 0xff) << 16), PORT_ID);
        assert_eq!(r[6], 3, "F_Port topology");
        h.asyncs.clear();
        h
    }

    pub fn up() -> Self {
        Self::bring_up(ModelConfig::default(), 8)
    }

    /// New ATIO-ring entries (acknowledged by advancing atio_q_out).
    pub fn atios(&mut self) -> Vec<[u8; 64]> {
        self.drain();
        let inp = self.r(0x3c) as u16;
        let mut v = Vec::new();
        while self.atio_out != inp {
            let e = self.mem.get(ATIO + u64::from(self.atio_out) * 64, 64);
            v.push(e.try_into().unwrap());
            self.atio_out = (self.atio_out + 1) % self.atio_len;
        }
        self.w(0x40, u32::from(self.atio_out));
        v
    }

    /// New response-ring entries (acknowledged by advancing rsp_q_out).
    pub fn rsps(&mut self) -> Vec<[u8; 64]> {
        self.drain();
        let inp = self.r(0x24) as u16;
        let mut v = Vec::new();
        while self.rsp_out != inp {
            let e = self.mem.get(RSP + u64::from(self.rsp_out) * 64, 64);
            v.push(e.try_into().unwrap());
            self.rsp_out = (self.rsp_out + 1) % RSP_LEN;
        }
        self.w(0x28, u32::from(self.rsp_out));
        v
    }

    pub fn submit(&mut self, entries: &[[u8; 64]]) {
        for e in entries {
            self.mem.put(REQ + u64::from(self.req_in) * 64, e);
            self.req_in = (self.req_in + 1) % REQ_LEN;
        }
        self.w(0x1c, u32::from(self.req_in));
        assert_eq!(self.r(0x20) as u16, self.req_in, "request ring consumed");
    }

    /// NOTIFY ACK for an IMMEDIATE NOTIFY, written by hand.
    pub fn nack_for(notify: &[u8; 64], handle: u32) -> [u8; 64] {
        let mut n = [0u8; 64];
        n[0] = 0x0e;
        n[1] = 1;
        n[4..8].copy_from_slice(&handle.to_le_bytes());
        n[8..10].copy_from_slice(&notify[8..10]); // nport handle
        n[12..14].copy_from_slice(&notify[12..14]); // flags
        n[16..18].copy_from_slice(&notify[16..18]); // status
        n[18] = notify[18]; // status subcode
        n[20..24].copy_from_slice(&notify[20..24]); // exchange address
        n[62..64].copy_from_slice(&notify[62..64]); // OX_ID
        n
    }

    /// Logs an initiator in by hand (PLOGI + PRLI notifies acked).
    pub fn login(&mut self, port_id: u32, wwpn: u64) -> isp_model::Initiator {
        let ini = self.model.initiator(port_id, wwpn);
        ini.login();
        for sub in [0x03u8, 0x20] {
            let a = self.atios();
            assert_eq!(a.len(), 1, "one notify");
            assert_eq!(a[0][0], 0x0d);
            assert_eq!(a[0][18], sub);
            let n = Self::nack_for(&a[0], 0x100 + u32::from(sub));
            self.submit(&[n]);
            let r = self.rsps();
            assert_eq!(r.len(), 1);
            assert_eq!((r[0][0], le16(&r[0], 16)), (0x0e, 1), "NOTIFY ACK completed");
        }
        assert!(ini.is_logged_in());
        ini
    }
}

/// A CTIO type 7 header, written by hand (status mode 0 unless flags say otherwise).
pub fn ctio7(handle: u32, atio: &[u8; 64], nport: u16, flags: u16) -> [u8; 64] {
    let mut c = [0u8; 64];
    c[0] = 0x12;
    c[1] = 1;
    c[4..8].copy_from_slice(&handle.to_le_bytes());
    c[8..10].copy_from_slice(&nport.to_le_bytes());
    // initiator id, little-endian: S_ID from the ATIO's FC header (big-endian at 13..16).
    c[16] = atio[15];
    c[17] = atio[14];
    c[18] = atio[13];
    c[20..24].copy_from_slice(&atio[4..8]);
    c[26..28].copy_from_slice(&flags.to_le_bytes());
    // OX_ID: big-endian in the ATIO, little-endian in the CTIO.
    c[32] = atio[25];
    c[33] = atio[24];
    c
}

pub fn with_dsd(mut c: [u8; 64], count: u16, total: u32, addr: u64, len: u32) -> [u8; 64] {
    c[12..14].copy_from_slice(&count.to_le_bytes());
    c[44..48].copy_from_slice(&total.to_le_bytes());
    c[52..60].copy_from_slice(&addr.to_le_bytes());
    c[60..64].copy_from_slice(&len.to_le_bytes());
    c
}
