//! MODE SENSE and MODE SELECT (SPC-4 §6.11-6.14, §7.5) with the disk's mode pages:
//! Read-Write Error Recovery (01h), Caching (08h), Control (0Ah) and Informational Exceptions
//! Control (1Ch).
//!
//! Current values live in [`crate::dev::ModeState`] (per logical unit, shared by all I_T
//! nexuses). Saved values are not implemented: PC=11b and SP=1 are refused as SPC-4 requires.

use std::sync::atomic::Ordering::Relaxed;

use super::Disk;
use super::spc::Resp;
use crate::cmd::{Cmd, Fail};
use crate::dev::Device;
use crate::store::BlockStore;
use crate::wire::cdb::{be16, be32, be64, put16, put32, put64};
use crate::wire::sense::{Sense, SenseCode};

/// Page codes in ascending order.
const PAGES: [u8; 4] = [0x01, 0x08, 0x0a, 0x1c];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pc {
    Current,
    Changeable,
    Default,
}

/// Builds one page (including its 2-byte header) into `out` and returns its length.
fn page(code: u8, pc: Pc, dev: &Device, out: &mut [u8; 20]) -> Option<usize> {
    *out = [0; 20];
    let m = &dev.mode;
    let cur = pc == Pc::Current;
    let flag = |v: bool, bit: u8| if v { bit } else { 0 };
    let len = match code {
        0x01 => 12,
        0x08 => {
            let wce = match pc {
                Pc::Current => m.wce.load(Relaxed),
                Pc::Default => dev.config().write_cache,
                Pc::Changeable => true,
            };
            out[2] = flag(wce, 0x04);
            20
        }
        0x0a => {
            if pc == Pc::Changeable {
                out[2] = 0x04; // D_SENSE
                out[4] = 0x08; // SWP
                out[5] = 0x40; // TAS
            } else {
                out[2] = flag(cur && m.d_sense.load(Relaxed), 0x04);
                out[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
                out[4] = flag(cur && m.swp.load(Relaxed), 0x08);
                out[5] = flag(cur && m.tas.load(Relaxed), 0x40);
                out[8] = 0xff; // BUSY TIMEOUT PERIOD: unlimited
                out[9] = 0xff;
            }
            12
        }
        0x1c => {
            if pc != Pc::Changeable {
                out[2] = 0x08; // DEXCPT: informational exceptions are not reported
            }
            12
        }
        _ => return None,
    };
    out[0] = code;
    out[1] = (len - 2) as u8;
    Some(len)
}

pub(super) fn sense<S: BlockStore>(disk: &Disk<S>, cmd: &mut Cmd) -> Result<(), Fail> {
    let cdb = *cmd.cdb_padded();
    let six = cdb[0] == 0x1a;
    let dbd = cdb[1] & 0x08 != 0;
    let llbaa = !six && cdb[1] & 0x10 != 0;
    let (pc, code, subpage) = (cdb[2] >> 6, cdb[2] & 0x3f, cdb[3]);
    let alloc = if six { usize::from(cdb[4]) } else { usize::from(be16(&cdb, 7)) };
    let pc = match pc {
        0 => Pc::Current,
        1 => Pc::Changeable,
        2 => Pc::Default,
        _ => return Err(Sense::new(SenseCode::SAVING_PARAMETERS_NOT_SUPPORTED).into()),
    };
    // No page has subpages: subpage 00h, or FFh ("all subpages"), which is the same here.
    if subpage != 0x00 && subpage != 0xff {
        return Err(Sense::invalid_cdb(3, Some(7)).into());
    }
    let dev = cmd.device().cloned().ok_or(Sense::new(SenseCode::INTERNAL_TARGET_FAILURE))?;
    let g = disk.geometry();
    let wp = cmd.read_only() || dev.write_protected();
    // Device-specific parameter: WP, DPOFUA (DPO and FUA are supported).
    let dsp = if wp { 0x80 } else { 0 } | 0x10;
    let mut r = Resp::new();
    let bdl: usize = if dbd {
        0
    } else if llbaa {
        16
    } else {
        8
    };
    if six {
        r.put(&[0, 0, dsp, bdl as u8]);
    } else {
        r.put(&[0, 0, 0, dsp, u8::from(llbaa), 0, 0, bdl as u8]);
    }
    if bdl == 8 {
        let mut d = [0u8; 8];
        put32(&mut d, 0, u32::try_from(g.blocks).unwrap_or(u32::MAX));
        put32(&mut d, 4, g.block_size & 0x00ff_ffff);
        r.put(&d);
    } else if bdl == 16 {
        let mut d = [0u8; 16];
        put64(&mut d, 0, g.blocks);
        put32(&mut d, 12, g.block_size);
        r.put(&d);
    }
    let mut buf = [0u8; 20];
    if code == 0x3f {
        for p in PAGES {
            let n = page(p, pc, &dev, &mut buf).unwrap_or(0);
            r.put(&buf[..n]);
        }
    } else {
        let n = page(code, pc, &dev, &mut buf).ok_or(Sense::invalid_cdb(2, Some(5)))?;
        r.put(&buf[..n]);
    }
    let n = r.len();
    if six {
        r.bytes_mut()[0] = (n - 1) as u8;
    } else {
        put16(r.bytes_mut(), 0, (n - 2) as u16);
    }
    r.send(cmd, alloc)
}

/// Largest parameter list MODE SELECT accepts (headers, a long block descriptor and every page
/// fit with room to spare).
const MAX_SELECT: usize = 512;

pub(super) fn select<S: BlockStore>(disk: &Disk<S>, cmd: &mut Cmd) -> Result<(), Fail> {
    let cdb = *cmd.cdb_padded();
    let six = cdb[0] == 0x15;
    if cdb[1] & 0x01 != 0 {
        // SP: saving pages is not supported.
        return Err(Sense::invalid_cdb(1, Some(0)).into());
    }
    let plen = cmd.buf().map_or(0, |b| b.len());
    if plen == 0 {
        return Ok(());
    }
    if plen > MAX_SELECT {
        return Err(Sense::new(SenseCode::PARAMETER_LIST_LENGTH_ERROR).into());
    }
    let mut p = [0u8; MAX_SELECT];
    if let Some(b) = cmd.buf() {
        b.read_at(0, &mut p[..plen]);
    }
    let p = &p[..plen];
    let hdr = if six { 4 } else { 8 };
    if plen < hdr {
        return Err(Sense::new(SenseCode::PARAMETER_LIST_LENGTH_ERROR).into());
    }
    let bdl = if six { usize::from(p[3]) } else { usize::from(be16(p, 6)) };
    let long = !six && p[4] & 1 != 0;
    if bdl != 0 && bdl != if long { 16 } else { 8 } {
        return Err(Sense::invalid_param(if six { 3 } else { 7 }, None).into());
    }
    if hdr + bdl > plen {
        return Err(Sense::new(SenseCode::PARAMETER_LIST_LENGTH_ERROR).into());
    }
    let g = disk.geometry();
    if bdl > 0 {
        let d = &p[hdr..hdr + bdl];
        let (blocks, bs, bs_off) =
            if long { (be64(d, 0), be32(d, 12), 12) } else { (u64::from(be32(d, 0)), be32(d, 4) & 0x00ff_ffff, 5) };
        if bs != g.block_size && bs != 0 {
            return Err(Sense::invalid_param((hdr + bs_off) as u16, None).into());
        }
        if blocks != 0 && blocks != g.blocks && blocks != u64::from(u32::MAX) {
            return Err(Sense::invalid_param(hdr as u16, None).into());
        }
    }
    let dev = cmd.device().cloned().ok_or(Sense::new(SenseCode::INTERNAL_TARGET_FAILURE))?;
    // Validate every page before applying any.
    let mut changes: [Option<(u8, [u8; 20])>; PAGES.len()] = [None; PAGES.len()];
    let mut off = hdr + bdl;
    while off < plen {
        if off + 2 > plen {
            return Err(Sense::new(SenseCode::PARAMETER_LIST_LENGTH_ERROR).into());
        }
        if p[off] & 0x40 != 0 {
            return Err(Sense::invalid_param(off as u16, Some(6)).into());
        }
        let code = p[off] & 0x3f;
        let len = usize::from(p[off + 1]) + 2;
        let (mut cur, mut chg) = ([0u8; 20], [0u8; 20]);
        let n = page(code, Pc::Current, &dev, &mut cur).ok_or(Sense::invalid_param(off as u16, Some(5)))?;
        page(code, Pc::Changeable, &dev, &mut chg);
        if len != n {
            return Err(Sense::invalid_param(off as u16 + 1, None).into());
        }
        if off + len > plen {
            return Err(Sense::new(SenseCode::PARAMETER_LIST_LENGTH_ERROR).into());
        }
        let new = &p[off..off + len];
        for i in 2..len {
            let bad = (new[i] ^ cur[i]) & !chg[i];
            if bad != 0 {
                let bit = 7 - bad.leading_zeros() as u8;
                return Err(Sense::invalid_param((off + i) as u16, Some(bit)).into());
            }
        }
        let mut page_bytes = [0u8; 20];
        page_bytes[..len].copy_from_slice(new);
        if let Some(slot) = PAGES.iter().position(|c| *c == code) {
            changes[slot] = Some((code, page_bytes));
        }
        off += len;
    }
    let m = &dev.mode;
    let mut changed = false;
    let mut set = |flag: &std::sync::atomic::AtomicBool, v: bool| {
        changed |= flag.swap(v, Relaxed) != v;
    };
    for (code, b) in changes.iter().flatten() {
        match code {
            0x08 => set(&m.wce, b[2] & 0x04 != 0),
            0x0a => {
                set(&m.d_sense, b[2] & 0x04 != 0);
                set(&m.swp, b[4] & 0x08 != 0);
                set(&m.tas, b[5] & 0x40 != 0);
            }
            _ => {}
        }
    }
    if changed {
        dev.raise_ua(SenseCode::MODE_PARAMETERS_CHANGED, Some(cmd.session().id()));
    }
    Ok(())
}
