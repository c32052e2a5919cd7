//! Logical block provisioning (SBC-3 §4.7, §5.19, §5.28, §5.40-41): WRITE SAME (with UNMAP and
//! NDOB), UNMAP and GET LBA STATUS.
//!
//! A thin store deallocates on UNMAP and on WRITE SAME with UNMAP; deallocated blocks read as
//! zeros (LBPRZ). Large WRITE SAME ranges are written from a bounded buffer of
//! the repeated block, never a buffer the size of the range.

use super::locks::Mode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{CHUNK, Disk, write_error};
use crate::cmd::{Cmd, CmdInfo, Fail};
use crate::dev::Device;
use crate::ops::{DataDir, Op, OpInfo};
use crate::sgv::SgvPool;
use crate::store::BlockStore;
use crate::wire::cdb::{be16, be32, be64, put32, put64};
use crate::wire::sense::{Sense, SenseCode};

/// VPD B0h MAXIMUM UNMAP LBA COUNT: no limit.
pub(super) const MAX_UNMAP_LBA_COUNT: u32 = u32::MAX;
/// VPD B0h MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT: what a 16-bit parameter list can carry.
pub(super) const MAX_UNMAP_DESCRIPTORS: u32 = 4095;

pub(super) fn parse_write_same<S: BlockStore>(
    d: &Disk<S>,
    op: &OpInfo,
    cdb: &[u8],
    expected_len: u32,
) -> Result<CmdInfo, Sense> {
    let ten = op.op == Op::WriteSame10;
    let (lba, nb) =
        if ten { (u64::from(be32(cdb, 2)), u64::from(be16(cdb, 7))) } else { (be64(cdb, 2), u64::from(be32(cdb, 10))) };
    let unmap = cdb[1] & 0x08 != 0;
    let ndob = !ten && cdb[1] & 0x01 != 0;
    if unmap && !d.thin() {
        // A fully provisioned logical unit has nothing to deallocate (LBPWS = 0).
        return Err(Sense::invalid_cdb(1, Some(3)));
    }
    d.check_range(lba, nb)?;
    // NUMBER OF LOGICAL BLOCKS 0 (WSNZ = 0): to the end of the medium.
    let blocks = if nb == 0 { d.blocks.load(Relaxed) - lba } else { nb };
    let data_len = if ndob { 0 } else { d.block_size };
    let fail = (!ndob && expected_len != data_len).then(|| Sense::new(SenseCode::INVALID_FIELD_IN_INFORMATION_UNIT));
    Ok(CmdInfo {
        dir: if ndob { DataDir::None } else { DataDir::Out },
        data_len,
        lba,
        blocks,
        fua: false,
        ctx: d.ctx(),
        fail,
    })
}

pub(super) fn write_same<S: BlockStore>(d: &Disk<S>, cmd: &mut Cmd) -> Result<(), Fail> {
    let info = *cmd.info();
    if info.blocks == 0 {
        return Ok(());
    }
    let unmap = cmd.cdb()[1] & 0x08 != 0;
    let bs = d.bs();
    let zero_block = match cmd.buf() {
        None => true,
        Some(b) => {
            let mut z = true;
            b.for_each(0, bs as usize, |s| z &= s.iter().all(|&x| x == 0));
            z
        }
    };
    let (off, len) = (info.lba * bs, info.blocks * bs);
    let fua = d.write_through(cmd, false);
    let _range = d.locks.lock(info.lba, info.blocks, Mode::Write);
    // UNMAP=1 deallocates the range whatever the Data-Out block holds; reads then return zeros
    // (LBPRZ). SBC-3 lets the device server unmap when asked to, and SCST, LIO and libiscsi's
    // WriteSame10.UnmapUntilEnd (which sends a block of FFh with UNMAP) expect it. SBC-4 words
    // it more strictly ("as if the device server wrote the single block"; QEMU writes a block
    // that is not all zeros); initiators (Linux, ESXi, Windows, QEMU) send a zero block with
    // UNMAP, where both readings agree.
    let r = if unmap {
        d.store.unmap(off, len)
    } else if zero_block {
        d.store.write_zeroes(off, len, fua)
    } else {
        return write_pattern(d, cmd, info.lba, info.blocks, fua);
    };
    r.map_err(|e| write_error(&e, info.lba).into())
}

/// Writes the command's one-block Data-Out to every block of the range, a bounded buffer of
/// repeated blocks at a time.
fn write_pattern<S: BlockStore>(d: &Disk<S>, cmd: &Cmd, lba: u64, blocks: u64, fua: bool) -> Result<(), Fail> {
    let bs = d.bs() as usize;
    let src = cmd.buf().ok_or(Fail::from(SenseCode::INTERNAL_TARGET_FAILURE))?;
    let sgv = cmd.session().target().sgv();
    // Fix: bounded by the largest buffer the pool can serve too (a pool with small chunks cannot
    // serve CHUNK bytes, and the command got BUSY on every retry).
    let per = (CHUNK.min(sgv.max_len()) / bs) as u64;
    let mut pattern = sgv.alloc((per.min(blocks) as usize) * bs).map_err(|_| Fail::BUSY)?;
    let mut block = [0u8; 4096];
    src.read_at(0, &mut block[..bs]);
    for k in 0..pattern.len() / bs {
        pattern.write_at(k * bs, &block[..bs]);
    }
    let mut done = 0u64;
    while done < blocks {
        let n = (blocks - done).min(per);
        let mut iov = crate::sgv::empty_io_slices();
        let k = pattern.io_slices(0, n as usize * bs, &mut iov);
        d.store.write_at((lba + done) * bs as u64, &iov[..k], fua).map_err(|e| write_error(&e, lba + done))?;
        done += n;
    }
    Ok(())
}

/// UNMAP (SBC-3 §5.28): every descriptor is checked before anything is deallocated.
pub(super) fn unmap<S: BlockStore>(d: &Disk<S>, cmd: &mut Cmd) -> Result<(), Fail> {
    if cmd.cdb()[1] & 0x01 != 0 {
        return Err(Sense::invalid_cdb(1, Some(0)).into());
    }
    let plen = cmd.buf().map_or(0, |b| b.len());
    if plen == 0 {
        return Ok(());
    }
    if plen < 8 {
        return Err(SenseCode::PARAMETER_LIST_LENGTH_ERROR.into());
    }
    // Fix: the list is read piecewise, not as one contiguous slice: a list longer than a buffer
    // chunk spans several segments (it used to fail with INTERNAL TARGET FAILURE).
    let p = cmd.buf().ok_or(Fail::from(SenseCode::INTERNAL_TARGET_FAILURE))?;
    let descriptor = |i: usize| {
        let mut e = [0u8; 16];
        p.read_at(8 + 16 * i, &mut e);
        (be64(&e, 0), u64::from(be32(&e, 8)))
    };
    let mut header = [0u8; 8];
    p.read_at(0, &mut header);
    let bd_len = usize::from(be16(&header, 2));
    let n = bd_len.min(plen - 8) / 16;
    if n as u32 > MAX_UNMAP_DESCRIPTORS {
        return Err(Sense::invalid_param(2, None).into());
    }
    let cap = d.blocks.load(Relaxed);
    for i in 0..n {
        let at = 8 + 16 * i;
        let (lba, count) = descriptor(i);
        if count > u64::from(MAX_UNMAP_LBA_COUNT) {
            return Err(Sense::invalid_param((at + 8) as u16, None).into());
        }
        // A descriptor may name zero blocks at the capacity itself; past it, or running past
        // it, is out of range.
        if lba > cap || count > cap - lba {
            return Err(Sense::lba_out_of_range().into());
        }
    }
    let bs = d.bs();
    for i in 0..n {
        let (lba, count) = descriptor(i);
        if count == 0 {
            continue;
        }
        let _range = d.locks.lock(lba, count, Mode::Write);
        d.store.unmap(lba * bs, count * bs).map_err(|e| write_error(&e, lba))?;
    }
    Ok(())
}

/// GET LBA STATUS (SBC-3 §5.7): descriptors of mapped and deallocated runs from the LBA on.
pub(super) fn get_lba_status<S: BlockStore>(d: &Disk<S>, cmd: &mut Cmd) -> Result<(), Fail> {
    let cdb = *cmd.cdb_padded();
    let (start, alloc) = (be64(&cdb, 2), be32(&cdb, 10) as usize);
    let cap = d.blocks.load(Relaxed);
    let bs = d.bs();
    let mut r = super::spc::Resp::new();
    r.zeros(8);
    // As many descriptors as the allocation length asks for (bounded by the response buffer).
    let max = (alloc.saturating_sub(8) / 16).clamp(1, 64);
    let (mut lba, mut count) = (start, 0);
    while lba < cap && count < max {
        let left = (cap - lba).min(u64::from(u32::MAX));
        let (mapped, run) = d.store.mapped(lba * bs, left * bs).map_err(|e| write_error(&e, lba))?;
        let blocks = (run / bs).clamp(1, left);
        let mut e = [0u8; 16];
        put64(&mut e, 0, lba);
        put32(&mut e, 8, blocks as u32);
        e[12] = if mapped { 0 } else { 1 };
        r.put(&e);
        lba += blocks;
        count += 1;
    }
    let n = r.len();
    put32(r.bytes_mut(), 0, (n - 4) as u32);
    r.send(cmd, alloc)
}

/// SANITIZE (SBC-4 §5.30) as a background job, so that it outlives the command: aborts, resets
/// and lost connections do not stop a sanitize, and until it ends every other command but
/// INQUIRY, REPORT LUNS and REQUEST SENSE gets NOT READY, SANITIZE IN PROGRESS.
///
/// OVERWRITE writes the initialization pattern (inverted on alternate passes with INVERT) over
/// every block, at most [`crate::DeviceConfig::sanitize_rate`] bytes per second. BLOCK ERASE and
/// CRYPTOGRAPHIC ERASE deallocate every block of a thin LU (it then reads zeros: WABEREQ/WACEREQ
/// 01b). With IMMED the command returns once the job
/// started; otherwise when it ends (or when a task management function aborts the command).
pub(super) fn sanitize<S: BlockStore>(d: &Disk<S>, cmd: &mut Cmd) -> Result<(), Fail> {
    let cdb = *cmd.cdb_padded();
    let (sa, immed, plen) = (cdb[1] & 0x1f, cdb[1] & 0x80 != 0, usize::from(be16(&cdb, 7)));
    let dev = cmd.device().cloned().ok_or(Fail::from(SenseCode::INTERNAL_TARGET_FAILURE))?;
    let bs = d.bs() as usize;
    let job = match sa {
        0x1f | 0x02 | 0x03 if plen != 0 => return Err(Sense::invalid_cdb(7, Some(7)).into()),
        0x1f => {
            dev.set_sanitize(None);
            return Ok(());
        }
        0x01 => {
            // Parameter list: INVERT, TEST, OVERWRITE COUNT; pattern length; the pattern.
            if plen < 5 || plen > bs + 4 {
                return Err(Sense::invalid_cdb(7, Some(7)).into());
            }
            // Fix: copied out of the buffer rather than borrowed as one contiguous slice, which a
            // list longer than a buffer chunk (a 4096-byte pattern) is not.
            let have = cmd.buf().map_or(0, |b| b.len());
            if have < plen {
                return Err(SenseCode::PARAMETER_LIST_LENGTH_ERROR.into());
            }
            let mut p = vec![0u8; plen];
            if let Some(b) = cmd.buf() {
                b.read_at(0, &mut p);
            }
            let (invert, test, count) = (p[0] & 0x80 != 0, (p[0] >> 5) & 3, p[0] & 0x1f);
            let pat_len = usize::from(be16(&p, 2));
            if test != 0 {
                return Err(Sense::invalid_param(0, Some(6)).into());
            }
            if count == 0 {
                return Err(Sense::invalid_param(0, Some(4)).into());
            }
            if pat_len == 0 || pat_len > bs || pat_len + 4 != plen {
                return Err(Sense::invalid_param(2, None).into());
            }
            Job::Overwrite { pattern: p[4..4 + pat_len].to_vec(), count, invert }
        }
        _ => Job::Erase,
    };
    let blocks = d.blocks.load(Relaxed);
    let rate = dev.config().sanitize_rate;
    let sgv = cmd.session().target().sgv().clone();
    let done = Arc::new((Mutex::new(None::<bool>), Condvar::new()));
    dev.set_sanitize(Some(true));
    let (dev2, done2) = (dev.clone(), done.clone());
    let spawned = std::thread::Builder::new().name(format!("sanitize-{}", dev.id())).spawn(move || {
        let ok = run_sanitize(&dev2, &job, blocks, rate, &sgv).is_ok();
        dev2.set_sanitize(if ok { None } else { Some(false) });
        *done2.0.lock() = Some(ok);
        done2.1.notify_all();
    });
    match spawned {
        Ok(h) => dev.set_sanitize_thread(h),
        Err(_) => {
            dev.set_sanitize(None);
            return Err(SenseCode::INTERNAL_TARGET_FAILURE.into());
        }
    }
    if immed {
        return Ok(());
    }
    let mut g = done.0.lock();
    loop {
        if let Some(ok) = *g {
            return if ok { Ok(()) } else { Err(SenseCode::SANITIZE_COMMAND_FAILED.into()) };
        }
        if cmd.is_aborted() {
            // The job goes on; the aborted command gets no response anyway.
            return Ok(());
        }
        done.1.wait_for(&mut g, Duration::from_millis(100));
    }
}

enum Job {
    Overwrite { pattern: Vec<u8>, count: u8, invert: bool },
    Erase,
}

fn run_sanitize(dev: &Device, job: &Job, blocks: u64, rate: u64, sgv: &SgvPool) -> Result<(), Fail> {
    let io = dev.handler().block_access().ok_or(Fail::from(SenseCode::INTERNAL_TARGET_FAILURE))?;
    match job {
        Job::Erase => io.erase_blocks(0, blocks)?,
        Job::Overwrite { pattern, count, invert } => {
            let bs = u64::from(io.block_geometry().block_size);
            // Fix: no larger than the pool's largest buffer (else the sanitize always failed).
            let per = (CHUNK.min(sgv.max_len()) as u64 / bs).max(1);
            let mut buf = sgv.alloc((per.min(blocks) * bs) as usize).map_err(|_| Fail::BUSY)?;
            let started = Instant::now();
            let mut written = 0u64;
            for pass in 0..*count {
                // Each block starts the pattern anew; INVERT flips it on every other pass.
                let flip = if *invert && pass % 2 == 1 { 0xff } else { 0 };
                let block: Vec<u8> = (0..bs as usize).map(|i| pattern[i % pattern.len()] ^ flip).collect();
                for off in (0..buf.len()).step_by(block.len()) {
                    buf.write_at(off, &block);
                }
                let mut lba = 0;
                while lba < blocks {
                    let n = (blocks - lba).min(per);
                    io.write_blocks(lba, n, &buf, false)?;
                    lba += n;
                    written += n * bs;
                    // PROGRESS INDICATION: the fraction done, of 65536.
                    let total = u64::from(*count) * blocks * bs;
                    dev.set_sanitize_progress((written.saturating_mul(65536) / total.max(1)).min(65535) as u16);
                    if rate > 0 {
                        let due = Duration::from_secs_f64(written as f64 / rate as f64);
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                }
            }
        }
    }
    io.flush_blocks()
}
