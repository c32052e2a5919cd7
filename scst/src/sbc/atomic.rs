//! The commands that must be atomic against other writes to the same blocks: COMPARE AND WRITE
//! (SBC-3 §5.2; VMware's ATS), ORWRITE(16) (§5.10) and WRITE ATOMIC(16) (SBC-4 §5.48).
//!
//! Each takes its LBA range exclusively in the device's range lock table: every other write to
//! an overlapping range, from any session, waits, and writes elsewhere go on.

use super::locks::Mode;
use super::{Disk, first_diff, read_into, write_error};
use crate::cmd::{Cmd, CmdInfo, Fail};
use crate::ops::DataDir;
use crate::store::BlockStore;
use crate::wire::cdb::{be16, be64};
use crate::wire::sense::{Sense, SenseCode};

/// VPD B0h MAXIMUM COMPARE AND WRITE LENGTH (the NUMBER OF LOGICAL BLOCKS field is one byte).
pub(super) const MAX_CAW_BLOCKS: u8 = 255;
/// VPD B0h MAXIMUM ATOMIC TRANSFER LENGTH, in blocks (capped by the maximum transfer length).
pub(super) const MAX_ATOMIC_BLOCKS: u32 = 1024;

pub(super) fn parse_caw<S: BlockStore>(d: &Disk<S>, cdb: &[u8], expected_len: u32) -> Result<CmdInfo, Sense> {
    let (lba, nlb) = (be64(cdb, 2), cdb[13]);
    d.check_range(lba, u64::from(nlb))?;
    // NUMBER OF LOGICAL BLOCKS is one byte, so it never exceeds MAX_CAW_BLOCKS (255).
    let data_len = 2 * u32::from(nlb) * d.block_size;
    if expected_len != data_len {
        // The Data-Out must be exactly the compare blocks then the write blocks.
        return Err(Sense::invalid_cdb(13, None));
    }
    Ok(CmdInfo {
        dir: if nlb == 0 { DataDir::None } else { DataDir::Out },
        data_len,
        lba,
        blocks: u64::from(nlb),
        fua: cdb[1] & 0x08 != 0,
        ctx: d.ctx(),
        fail: None,
    })
}

/// COMPARE AND WRITE: under the exclusive range lock, read the blocks and compare them with
/// the first half of the Data-Out; on a match write the second half, else MISCOMPARE with the
/// offset of the first differing byte and nothing written.
pub(super) fn compare_and_write<S: BlockStore>(d: &Disk<S>, cmd: &mut Cmd) -> Result<(), Fail> {
    let info = *cmd.info();
    if info.blocks == 0 {
        return Ok(());
    }
    let len = (info.blocks * d.bs()) as usize;
    let _range = d.locks.lock(info.lba, info.blocks, Mode::Exclusive);
    if let Some(r) = store_compare_and_write(d, cmd, len) {
        return r;
    }
    let mut medium = cmd.session().target().sgv().alloc(len).map_err(|_| Fail::BUSY)?;
    if d.store.caps().null {
        medium.fill(0, len, 0);
    } else {
        read_into(&d.store, info.lba * d.bs(), &mut medium, len)
            .map_err(|_| Sense::with_info(SenseCode::UNRECOVERED_READ_ERROR, info.lba))?;
    }
    let data = cmd.buf().ok_or(Fail::from(SenseCode::INTERNAL_TARGET_FAILURE))?;
    if let Some(i) = first_diff(&medium, 0, data, 0, len) {
        return Err(Sense::with_info(SenseCode::MISCOMPARE_DURING_VERIFY, i as u64).into());
    }
    d.write_buf(cmd, len, len, info.lba, info.fua)
}

/// COMPARE AND WRITE by the store ([`BlockStore::compare_and_write`]), if it offers it.
fn store_compare_and_write<S: BlockStore>(d: &Disk<S>, cmd: &mut Cmd, len: usize) -> Option<Result<(), Fail>> {
    let info = *cmd.info();
    let buf = cmd.buf()?;
    let (mut compare, mut data) = (crate::sgv::empty_io_slices(), crate::sgv::empty_io_slices());
    let nc = buf.io_slices(0, len, &mut compare);
    let nd = buf.io_slices(len, len, &mut data);
    let fua = d.write_through(cmd, info.fua);
    Some(match d.store.compare_and_write(info.lba * d.bs(), &compare[..nc], &data[..nd], fua)? {
        Ok(None) => {
            super::count_written(cmd, len);
            Ok(())
        }
        Ok(Some(i)) => Err(Sense::with_info(SenseCode::MISCOMPARE_DURING_VERIFY, i).into()),
        Err(e) => Err(write_error(&e, info.lba).into()),
    })
}

/// ORWRITE(16) without generation processing: each Data-Out byte is ORed into the medium.
pub(super) fn orwrite<S: BlockStore>(d: &Disk<S>, cmd: &mut Cmd) -> Result<(), Fail> {
    let info = *cmd.info();
    if info.blocks == 0 || info.dir != DataDir::Out {
        return Ok(());
    }
    let bs = d.bs() as usize;
    let fua = d.write_through(cmd, info.fua);
    let _range = d.locks.lock(info.lba, info.blocks, Mode::Exclusive);
    let data = cmd.buf().ok_or(Fail::from(SenseCode::INTERNAL_TARGET_FAILURE))?;
    d.for_each_chunk(cmd.session().target().sgv(), info.lba, info.blocks, |at, medium| {
        let n = medium.len();
        let (mut x, mut y) = ([0u8; 4096], [0u8; 4096]);
        let mut off = 0;
        while off < n {
            let k = (n - off).min(x.len());
            data.read_at(at + off, &mut x[..k]);
            medium.read_at(off, &mut y[..k]);
            for (m, v) in y[..k].iter_mut().zip(&x[..k]) {
                *m |= v;
            }
            medium.write_at(off, &y[..k]);
            off += k;
        }
        let lba = info.lba + (at / bs) as u64;
        let mut iov = crate::sgv::empty_io_slices();
        let k = medium.io_slices(0, n, &mut iov);
        d.store.write_at(lba * bs as u64, &iov[..k], fua).map_err(|e| write_error(&e, lba).into())
    })
}

pub(super) fn parse_write_atomic<S: BlockStore>(d: &Disk<S>, cdb: &[u8], expected_len: u32) -> Result<CmdInfo, Sense> {
    let (lba, tl) = (be64(cdb, 2), u64::from(be16(cdb, 12)));
    d.check_range(lba, tl)?;
    if tl > u64::from(max_atomic_blocks(d)) {
        return Err(Sense::invalid_cdb(12, Some(7)));
    }
    let data_len = (tl * d.bs()) as u32;
    // All or nothing: a partial transfer cannot be written atomically.
    let fail = (expected_len != data_len).then(|| Sense::new(SenseCode::INVALID_FIELD_IN_INFORMATION_UNIT));
    Ok(CmdInfo {
        dir: if tl == 0 { DataDir::None } else { DataDir::Out },
        data_len,
        lba,
        blocks: tl,
        fua: cdb[1] & 0x08 != 0,
        ctx: d.ctx(),
        fail,
    })
}

/// WRITE ATOMIC(16): the write holds its range exclusively, so no other command sees or
/// interleaves with part of it. (Atomicity across a power loss is the store's: a single
/// `pwritev` of a file or block device is not guaranteed to be all-or-nothing.)
pub(super) fn write_atomic<S: BlockStore>(d: &Disk<S>, cmd: &mut Cmd) -> Result<(), Fail> {
    let info = *cmd.info();
    if info.blocks == 0 {
        return Ok(());
    }
    let _range = d.locks.lock(info.lba, info.blocks, Mode::Exclusive);
    d.write_buf(cmd, 0, (info.blocks * d.bs()) as usize, info.lba, info.fua)
}

/// The MAXIMUM ATOMIC TRANSFER LENGTH the device reports.
pub(super) fn max_atomic_blocks<S: BlockStore>(d: &Disk<S>) -> u32 {
    MAX_ATOMIC_BLOCKS.min(d.max_transfer_blocks() as u32)
}
