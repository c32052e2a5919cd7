//! The copy manager: EXTENDED COPY (LID1, SPC-4 §6.4) with identification-descriptor CSCDs (E4h)
//! and block-to-block segments (02h), and RECEIVE COPY RESULTS (§6.26): COPY STATUS, OPERATING
//! PARAMETERS, FAILED SEGMENT DETAILS.
//!
//! CSCD descriptors name logical units by NAA designator; any device of this process matches,
//! whatever target exports it. Data moves through one bounded buffer, never the whole segment.

use super::locks::Mode;
use std::sync::Arc;

use super::Disk;
use crate::cmd::{Cmd, CmdInfo, ExecContext, Fail, ScsiStatus};
use crate::dev::{BlockAccess, Device, find_by_naa};
use crate::ops::DataDir;
use crate::pr::{Access, Nexus};
use crate::store::BlockStore;
use crate::wire::cdb::{be16, be32, be64, put16, put32};
use crate::wire::sense::{FieldPointer, MAX_SENSE_LEN, Sense, SenseCode};

/// Most CSCD (target) descriptors in one command.
const MAX_CSCD: usize = 8;
/// Most segment descriptors in one command.
const MAX_SEGMENTS: usize = 64;
/// Most bytes of CSCD and segment descriptors together.
const MAX_DESC_LIST: usize = 4096;
/// Bytes moved per read/write pair.
const COPY_CHUNK: usize = 1 << 20;
/// Copy results kept per device (oldest dropped first).
const MAX_RESULTS: usize = 64;

/// The outcome of an EXTENDED COPY, kept for RECEIVE COPY RESULTS.
#[derive(Clone, Debug)]
pub struct CopyResult {
    nexus: Nexus,
    list_id: u8,
    /// COPY MANAGER STATUS (SPC-4 COPY STATUS): 01h completed without errors, 02h completed with
    /// errors (00h is "in progress", which a copy that returned never is).
    status: u8,
    /// The SCSI status the EXTENDED COPY command ended with (FAILED SEGMENT DETAILS byte 56).
    scsi_status: ScsiStatus,
    segments: u16,
    /// Bytes moved.
    transferred: u64,
    /// Sense data of the failure, for FAILED SEGMENT DETAILS.
    sense: Option<([u8; MAX_SENSE_LEN], u8)>,
    /// COPY STATUS and FAILED SEGMENT DETAILS are each discarded once transferred; the entry
    /// goes when both are.
    status_sent: bool,
    details_sent: bool,
}

pub(super) fn parse(d: &Disk<impl BlockStore>, cdb: &[u8]) -> CmdInfo {
    let _ = d;
    let plen = be32(cdb, 10);
    // The copy may be long and touch other devices: always on a worker.
    CmdInfo {
        dir: if plen == 0 { DataDir::None } else { DataDir::Out },
        data_len: plen,
        ctx: ExecContext::Worker,
        ..CmdInfo::default()
    }
}

struct Segment {
    src: usize,
    dst: usize,
    blocks: u64,
    src_lba: u64,
    dst_lba: u64,
    /// Offset of the descriptor in the parameter list (the SEGMENT POINTER of a failure).
    at: usize,
}

fn copy_aborted(code: SenseCode) -> Fail {
    Fail::Check(Sense::new(code))
}

/// EXTENDED COPY (LID1).
pub(super) fn extended_copy(cmd: &mut Cmd) -> Result<(), Fail> {
    let plen = be32(cmd.cdb(), 10) as usize;
    if plen == 0 {
        return Ok(());
    }
    let have = cmd.buf().map_or(0, |b| b.len());
    if have < plen.min(16) || plen < 16 {
        return Err(SenseCode::PARAMETER_LIST_LENGTH_ERROR.into());
    }
    let mut p = vec![0u8; have];
    if let Some(b) = cmd.buf() {
        b.read_at(0, &mut p);
    }
    let (list_id, usage) = (p[0], (p[1] >> 3) & 3);
    if p[1] & 0x20 != 0 {
        // STR (sequential striped): no stream devices here.
        return Err(Sense::invalid_param(1, Some(5)).into());
    }
    let cscd_len = usize::from(be16(&p, 2));
    let seg_len = be32(&p, 8) as usize;
    let inline_len = be32(&p, 12) as usize;
    if cscd_len + seg_len > MAX_DESC_LIST {
        return Err(SenseCode::PARAMETER_LIST_LENGTH_ERROR.into());
    }
    if 16 + cscd_len + seg_len + inline_len > plen || plen > have {
        return Err(SenseCode::PARAMETER_LIST_LENGTH_ERROR.into());
    }
    if inline_len != 0 {
        return Err(SenseCode::INLINE_DATA_LENGTH_EXCEEDED.into());
    }
    if cscd_len % 32 != 0 {
        return Err(Sense::invalid_param(2, None).into());
    }
    if cscd_len / 32 > MAX_CSCD {
        return Err(SenseCode::TOO_MANY_TARGET_DESCRIPTORS.into());
    }
    // CSCD descriptors: identification descriptors (E4h) of block devices, by NAA.
    let mut devs: Vec<Option<Arc<Device>>> = Vec::new();
    for k in 0..cscd_len / 32 {
        let at = 16 + 32 * k;
        let t = &p[at..at + 32];
        if t[0] != 0xe4 {
            return Err(SenseCode::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE.into());
        }
        if t[1] & 0x1f != 0 {
            // Only direct access block devices.
            return Err(Sense::invalid_param((at + 1) as u16, Some(4)).into());
        }
        if t[1] & 0x20 != 0 {
            // NUL: a null device is not supported.
            return Err(Sense::invalid_param((at + 1) as u16, Some(5)).into());
        }
        if (t[1] >> 6) == 1 {
            // LU ID TYPE 01b: proxy tokens are not supported.
            return Err(Sense::invalid_param((at + 1) as u16, Some(7)).into());
        }
        // Designation descriptor at 4: code set binary, designator type NAA, 8 bytes.
        let (code_set, typ, len) = (t[4] & 0x0f, t[5] & 0x0f, usize::from(t[7]));
        // Only logical units this initiator was given, on any target of the process.
        let initiator = &cmd.session().config().initiator_name;
        let dev = (code_set == 1 && typ == 3 && len == 8)
            .then(|| be64(t, 8))
            .and_then(find_by_naa)
            .filter(|d| crate::Target::initiator_may_access(initiator, d));
        let dev = dev.filter(|d| {
            d.handler().block_access().is_some_and(|b| {
                let bs = u32::from_be_bytes([0, t[29], t[30], t[31]]);
                bs == 0 || bs == b.block_geometry().block_size
            })
        });
        devs.push(dev);
    }
    // Segment descriptors: block to block (02h).
    let mut segs = Vec::new();
    let mut off = 16 + cscd_len;
    let end = 16 + cscd_len + seg_len;
    while off < end {
        if off + 4 > end {
            return Err(SenseCode::PARAMETER_LIST_LENGTH_ERROR.into());
        }
        let s = &p[off..];
        let dlen = usize::from(be16(s, 2)) + 4;
        if s[0] != 0x02 {
            return Err(SenseCode::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE.into());
        }
        if dlen != 28 || off + dlen > end {
            return Err(Sense::invalid_param((off + 2) as u16, None).into());
        }
        if s[1] & 0x02 != 0 {
            // DC: the block count is in the destination's blocks: same block sizes here, so
            // nothing changes; CAT is irrelevant without residue.
        }
        segs.push(Segment {
            src: usize::from(be16(s, 4)),
            dst: usize::from(be16(s, 6)),
            blocks: u64::from(be16(s, 10)),
            src_lba: be64(s, 12),
            dst_lba: be64(s, 20),
            at: off,
        });
        off += dlen;
        if segs.len() > MAX_SEGMENTS {
            return Err(SenseCode::TOO_MANY_SEGMENT_DESCRIPTORS.into());
        }
    }
    let nexus = cmd.session().nexus().clone();
    let sgv = cmd.session().target().sgv().clone();
    let mut done_segments = 0u16;
    let mut transferred = 0u64;
    let mut result = Ok(());
    for seg in &segs {
        let r = run_segment(seg, &devs, &nexus, &sgv, &mut transferred);
        if let Err(f) = r {
            result = Err(f);
            break;
        }
        done_segments += 1;
    }
    // Keep the result unless LIST ID USAGE says not to (10b: no results; 11b: no list id).
    if usage < 2
        && let Some(dev) = cmd.device()
    {
        let sense = match result {
            Err(Fail::Check(s)) => {
                let mut b = [0u8; MAX_SENSE_LEN];
                let n = s.write(dev.d_sense(), &mut b) as u8;
                Some((b, n))
            }
            _ => None,
        };
        let mut c = dev.copies.lock();
        c.retain(|r| !(r.list_id == list_id && r.nexus == nexus));
        if c.len() == MAX_RESULTS {
            c.remove(0);
        }
        // Fix: COPY MANAGER STATUS was 00h ("operation in progress") for a completed copy and
        // 01h for a failed one; FAILED SEGMENT DETAILS reported that value as the command's
        // status.
        let scsi_status = match &result {
            Ok(()) => ScsiStatus::GOOD,
            Err(Fail::Check(_)) => ScsiStatus::CHECK_CONDITION,
            Err(Fail::Status(s)) => *s,
        };
        c.push(CopyResult {
            nexus,
            list_id,
            status: if result.is_err() { 0x02 } else { 0x01 },
            scsi_status,
            segments: done_segments,
            transferred,
            sense,
            status_sent: false,
            details_sent: false,
        });
    }
    result
}

fn run_segment(
    seg: &Segment,
    devs: &[Option<Arc<Device>>],
    nexus: &Nexus,
    sgv: &crate::sgv::SgvPool,
    moved: &mut u64,
) -> Result<(), Fail> {
    let pick = |i: usize| {
        devs.get(i)
            .ok_or(copy_aborted(SenseCode::UNREACHABLE_COPY_TARGET))?
            .clone()
            .ok_or(copy_aborted(SenseCode::COPY_TARGET_DEVICE_NOT_REACHABLE))
    };
    let (sd, dd) = (pick(seg.src)?, pick(seg.dst)?);
    // Fix: the copy targets were read and written whatever their state: a read-only (or
    // software write protected) destination was written, as was a logical unit being sanitized
    // or one another nexus holds a persistent reservation on. They now get what a READ of the
    // source and a WRITE of the destination from the EXTENDED COPY's nexus would.
    for (d, access) in [(&sd, Access::Read), (&dd, Access::Write)] {
        if !d.medium_loaded() {
            return Err(SenseCode::MEDIUM_NOT_PRESENT.into());
        }
        if let Some(code) = d.sanitize_blocked() {
            return Err(code.into());
        }
        if d.pr_conflicts(nexus, access) {
            return Err(Fail::RESERVATION_CONFLICT);
        }
    }
    if dd.write_protected() {
        return Err(SenseCode::WRITE_PROTECTED.into());
    }
    let src = sd.handler().block_access().ok_or(copy_aborted(SenseCode::COPY_TARGET_DEVICE_NOT_REACHABLE))?;
    let dst = dd.handler().block_access().ok_or(copy_aborted(SenseCode::COPY_TARGET_DEVICE_NOT_REACHABLE))?;
    let (sg, dg) = (src.block_geometry(), dst.block_geometry());
    let in_range = |lba: u64, n: u64, cap: u64| lba < cap && n <= cap - lba;
    if seg.blocks == 0 {
        return Ok(());
    }
    // Beyond the end of a logical unit: COPY ABORTED (ASC 00h/00h, as SCST answers and libiscsi's
    // ExtendedCopy.ValidSegDescr expects) with a segment pointer (SPC-4 §4.5.2.4.5; SD = 0:
    // relative to the parameter list) at the segment descriptor's SOURCE or DESTINATION LOGICAL
    // BLOCK ADDRESS field.
    let out_of_range = |field: usize| {
        Fail::Check(Sense {
            code: SenseCode::COPY_ABORTED_NO_SENSE,
            information: None,
            field: Some(FieldPointer {
                in_cdb: false,
                byte: u16::try_from(seg.at + field).unwrap_or(u16::MAX),
                bit: None,
            }),
        })
    };
    if !in_range(seg.src_lba, seg.blocks, sg.blocks) {
        return Err(out_of_range(12));
    }
    if !in_range(seg.dst_lba, seg.blocks, dg.blocks) {
        return Err(out_of_range(20));
    }
    if sg.block_size != dg.block_size {
        return Err(copy_aborted(SenseCode::COPY_ABORTED_NO_SENSE));
    }
    let bs = u64::from(sg.block_size);
    // Fix: no larger than the pool's largest buffer (a pool of small chunks cannot serve
    // COPY_CHUNK bytes, and every copy got BUSY).
    let per = (COPY_CHUNK.min(sgv.max_len()) as u64 / bs).max(1);
    let mut buf = sgv.alloc((per.min(seg.blocks) * bs) as usize).map_err(|_| Fail::BUSY)?;
    // Overlapping copy within one device toward higher LBAs goes backwards, like memmove.
    let backwards = Arc::ptr_eq(&sd, &dd) && seg.dst_lba > seg.src_lba && seg.dst_lba < seg.src_lba + seg.blocks;
    let mut left = seg.blocks;
    while left > 0 {
        let n = left.min(per);
        let k = if backwards { left - n } else { seg.blocks - left };
        src.read_blocks(seg.src_lba + k, n, &mut buf)?;
        dst.write_blocks(seg.dst_lba + k, n, &buf, false)?;
        *moved += n * bs;
        left -= n;
    }
    Ok(())
}

/// RECEIVE COPY RESULTS (LID1 service actions).
pub(super) fn receive_copy_results(disk: &Disk<impl BlockStore>, cmd: &mut Cmd) -> Result<(), Fail> {
    let cdb = *cmd.cdb_padded();
    let (sa, list_id, alloc) = (cdb[1] & 0x1f, cdb[2], be32(&cdb, 10) as usize);
    let dev = cmd.device().cloned().ok_or(Fail::from(SenseCode::INTERNAL_TARGET_FAILURE))?;
    let nexus = cmd.session().nexus().clone();
    let mut r = super::spc::Resp::new();
    match sa {
        // OPERATING PARAMETERS.
        3 => {
            let mut d = [0u8; 46];
            put32(&mut d, 0, 42);
            d[4] = 0x01; // SNLID: list identifiers are per I_T nexus
            put16(&mut d, 8, MAX_CSCD as u16);
            put16(&mut d, 10, MAX_SEGMENTS as u16);
            put32(&mut d, 12, MAX_DESC_LIST as u32);
            put32(&mut d, 16, 65535 * disk.block_size); // maximum segment length
            // Inline data, held data, stream transfer size: none.
            put16(&mut d, 34, 1); // total concurrent copies
            d[36] = 1; // maximum concurrent copies
            d[37] = disk.block_size.trailing_zeros() as u8; // data segment granularity (log2)
            d[43] = 2; // implemented descriptor types
            d[44] = 0x02;
            d[45] = 0xe4;
            r.put(&d);
        }
        0 | 4 => {
            let mut copies = dev.copies.lock();
            // Fix: reading one of COPY STATUS and FAILED SEGMENT DETAILS used to discard both.
            let held = |c: &CopyResult| if sa == 0 { !c.status_sent } else { !c.details_sent };
            let Some(i) = copies.iter().position(|c| c.list_id == list_id && c.nexus == nexus && held(c)) else {
                // No such list for this nexus (or its results were transferred already).
                return Err(Sense::invalid_cdb(2, Some(7)).into());
            };
            let c = copies[i].clone();
            let e = &mut copies[i];
            if sa == 0 {
                e.status_sent = true;
            } else {
                e.details_sent = true;
            }
            if e.status_sent && e.details_sent {
                copies.remove(i);
            }
            drop(copies);
            if sa == 0 {
                // COPY STATUS: status, segments processed, transfer count in bytes (units 0).
                let mut d = [0u8; 12];
                put32(&mut d, 0, 8);
                d[4] = c.status;
                put16(&mut d, 5, c.segments);
                d[7] = 0;
                put32(&mut d, 8, u32::try_from(c.transferred).unwrap_or(u32::MAX));
                r.put(&d);
            } else {
                // FAILED SEGMENT DETAILS: status and the failure's sense data.
                let (sense, n) = c.sense.unwrap_or(([0; MAX_SENSE_LEN], 0));
                let mut d = [0u8; 60];
                put32(&mut d, 0, 56 + u32::from(n) - 4);
                d[56] = c.scsi_status.0;
                put16(&mut d, 58, u16::from(n));
                r.put(&d).put(&sense[..usize::from(n)]);
                let total = r.len();
                put32(r.bytes_mut(), 0, (total - 4) as u32);
            }
        }
        _ => return Err(Sense::invalid_cdb(1, Some(4)).into()),
    }
    r.send(cmd, alloc)
}

impl<S: BlockStore> BlockAccess for Disk<S> {
    fn block_geometry(&self) -> crate::store::Geometry {
        self.geometry()
    }

    fn read_blocks(&self, lba: u64, blocks: u64, buf: &mut crate::sgv::SgBuf) -> Result<(), Fail> {
        let len = (blocks * self.bs()) as usize;
        if self.store.caps().null {
            buf.fill(0, len, 0);
            return Ok(());
        }
        super::read_into(&self.store, lba * self.bs(), buf, len)
            .map_err(|_| copy_aborted(SenseCode::COPY_ABORTED_UNRECOVERED_READ))
    }

    fn write_blocks(&self, lba: u64, blocks: u64, buf: &crate::sgv::SgBuf, fua: bool) -> Result<(), Fail> {
        let len = (blocks * self.bs()) as usize;
        let _range = self.locks.lock(lba, blocks, Mode::Write);
        let mut iov = crate::sgv::empty_io_slices();
        let n = buf.io_slices(0, len, &mut iov);
        self.store
            .write_at(lba * self.bs(), &iov[..n], fua)
            .map_err(|_| copy_aborted(SenseCode::COPY_ABORTED_WRITE_ERROR))
    }

    fn erase_blocks(&self, lba: u64, blocks: u64) -> Result<(), Fail> {
        let _range = self.locks.lock(lba, blocks, Mode::Write);
        let (off, len) = (lba * self.bs(), blocks * self.bs());
        let r = if self.thin() { self.store.unmap(off, len) } else { self.store.write_zeroes(off, len, false) };
        r.map_err(|e| super::write_error(&e, lba).into())
    }

    fn flush_blocks(&self) -> Result<(), Fail> {
        self.store.flush().map_err(|e| super::write_error(&e, 0).into())
    }
}
