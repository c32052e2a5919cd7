//! The direct-access block device handler: SPC-4 and SBC-3 emulation over a [`BlockStore`].

mod atomic;
pub(crate) mod locks;
mod mode;
mod spc;
mod thin;
mod xcopy;

use std::io::IoSliceMut;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::cmd::{Cmd, CmdBox, CmdInfo, ExecContext, Fail};
use crate::dev::{BlockAccess, Device, DeviceHandler};
use crate::ops::{DISK_OPS, DataDir, Op, OpFlags, OpInfo};
use crate::sgv::{MAX_SEGS, SgBuf, SgvPool, empty_io_slices, empty_io_slices_mut};
use crate::store::{BlockIo, BlockStore, Geometry, IoKind};
use crate::wire::cdb::{be16, be24, be32, be64};
use crate::wire::sense::{Sense, SenseCode};
use locks::{Mode, RangeLocks};
pub use xcopy::CopyResult;

/// Largest single transfer, in bytes (VPD B0h MAXIMUM TRANSFER LENGTH is this over the block
/// size). Longer transfers get INVALID FIELD IN CDB.
pub const MAX_TRANSFER_BYTES: u32 = 64 << 20;

/// The optimal transfer length reported in the Block Limits VPD page, in bytes.
pub const OPTIMAL_TRANSFER_BYTES: u32 = 1 << 20;
/// READs at least this long whose data is in the page cache go out from the file without a copy
/// when the store and the fabric can ([`BlockStore::file_range`], [`Cmd::allow_file_data_in`]).
/// Below it a copy costs less than the extra system call per command that sending from a file
/// takes.
pub const ZERO_COPY_MIN: usize = 64 << 10;

/// Verification and read-modify-write work in pieces of at most this size.
const CHUNK: usize = 1 << 20;

/// A direct-access block device (peripheral type 00h) over a block store.
pub struct Disk<S: BlockStore> {
    store: S,
    block_size: u32,
    blocks: AtomicU64,
    locks: Arc<RangeLocks>,
}

impl<S: BlockStore> std::fmt::Debug for Disk<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk")
            .field("product", &self.store.product())
            .field("block_size", &self.block_size)
            .field("blocks", &self.blocks.load(Relaxed))
            .finish()
    }
}

fn is_verify(op: Op) -> bool {
    matches!(op, Op::Verify10 | Op::Verify12 | Op::Verify16)
}

fn is_write_verify(op: Op) -> bool {
    matches!(op, Op::WriteVerify10 | Op::WriteVerify12 | Op::WriteVerify16)
}

impl<S: BlockStore> Disk<S> {
    /// Wraps a store.
    ///
    /// # Panics
    /// If the store's block size is not 512 or 4096.
    pub fn new(store: S) -> Arc<Self> {
        let g = store.geometry();
        assert!(matches!(g.block_size, 512 | 4096), "block size must be 512 or 4096, not {}", g.block_size);
        Arc::new(Self { block_size: g.block_size, blocks: AtomicU64::new(g.blocks), store, locks: Arc::default() })
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The geometry the device reports.
    pub fn geometry(&self) -> Geometry {
        Geometry { block_size: self.block_size, blocks: self.blocks.load(Relaxed) }
    }

    /// Whether the device is thin provisioned (LBPME).
    pub fn thin(&self) -> bool {
        self.store.caps().thin
    }

    fn max_transfer_blocks(&self) -> u64 {
        u64::from(MAX_TRANSFER_BYTES / self.block_size)
    }

    fn bs(&self) -> u64 {
        u64::from(self.block_size)
    }

    fn ctx(&self) -> ExecContext {
        if self.store.caps().may_block { ExecContext::Worker } else { ExecContext::Inline }
    }

    /// Checks an LBA range against the capacity (SBC-3 §4.5): the first LBA must exist even for
    /// a zero-length transfer, and nothing overflows.
    fn check_range(&self, lba: u64, blocks: u64) -> Result<(), Sense> {
        let n = self.blocks.load(Relaxed);
        if lba >= n || blocks > n - lba { Err(Sense::lba_out_of_range()) } else { Ok(()) }
    }

    /// LBA, transfer length and the CDB offset of the transfer length field.
    fn rw_fields(op: Op, cdb: &[u8]) -> (u64, u64, u16) {
        match op {
            Op::Read6 | Op::Write6 => {
                let len = u64::from(cdb[4]);
                (u64::from(be24(cdb, 1) & 0x1f_ffff), if len == 0 { 256 } else { len }, 4)
            }
            Op::Read10 | Op::Write10 | Op::Verify10 | Op::WriteVerify10 | Op::Prefetch10 | Op::SyncCache10 => {
                (u64::from(be32(cdb, 2)), u64::from(be16(cdb, 7)), 7)
            }
            Op::Read12 | Op::Write12 | Op::Verify12 | Op::WriteVerify12 => {
                (u64::from(be32(cdb, 2)), u64::from(be32(cdb, 6)), 6)
            }
            _ => (be64(cdb, 2), u64::from(be32(cdb, 10)), 10),
        }
    }

    /// Parses the medium-access commands.
    ///
    /// Against the transport's expected length: a read fills at most what the initiator's
    /// buffer takes (the residual reports the rest); a write uses only the whole blocks the
    /// initiator sends (RFC 7143 §11.4.5.2), and a partial block is an error.
    fn parse_rw(&self, op: &OpInfo, cdb: &[u8], expected_len: u32) -> Result<CmdInfo, Sense> {
        let (lba, blocks, len_field) = Self::rw_fields(op.op, cdb);
        let bs = self.bs();
        let bytchk = (cdb[1] >> 1) & 3;
        let data_blocks = match op.op {
            o if is_verify(o) => match bytchk {
                0 => 0,
                1 => blocks,
                3 => blocks.min(1),
                _ => return Err(Sense::invalid_cdb(1, Some(2))),
            },
            o if is_write_verify(o) && bytchk > 1 => return Err(Sense::invalid_cdb(1, Some(2))),
            Op::Prefetch10 | Op::Prefetch16 | Op::SyncCache10 | Op::SyncCache16 => 0,
            _ => blocks,
        };
        // SBC-4 §6.6.4: MAXIMUM TRANSFER LENGTH bounds VERIFY's verification length too, even
        // when nothing is transferred; this also keeps one command from reading the medium
        // unbounded on the receiving thread.
        let bounded = if is_verify(op.op) { blocks } else { data_blocks };
        if bounded > self.max_transfer_blocks() {
            return Err(Sense::invalid_cdb(len_field, Some(7)));
        }
        self.check_range(lba, blocks)?;
        let mut info = CmdInfo {
            dir: if data_blocks == 0 { DataDir::None } else { op.dir },
            data_len: (data_blocks * bs) as u32,
            lba,
            blocks,
            fua: cdb[1] & 0x08 != 0,
            ctx: self.ctx(),
            fail: None,
        };
        let expected = u64::from(expected_len);
        match info.dir {
            DataDir::Out if expected < u64::from(info.data_len) => {
                if expected % bs != 0 {
                    // Known lengths, so the residual is reported, but a partial block cannot be
                    // written.
                    info.fail = Some(Sense::new(SenseCode::INVALID_FIELD_IN_INFORMATION_UNIT));
                }
                if bytchk != 3 || !is_verify(op.op) || expected == 0 {
                    info.blocks = expected / bs;
                }
            }
            DataDir::In => {
                info.blocks = info.blocks.min(expected.div_ceil(bs));
                if self.store.caps().null {
                    info.ctx = ExecContext::Inline;
                }
            }
            _ => {}
        }
        Ok(info)
    }

    fn exec_read(&self, cmd: &mut Cmd) -> Result<(), Fail> {
        self.read_data(cmd, false).map(drop)
    }

    /// Reads the command's blocks into its Data-In buffer. With `nowait`, only if nothing has to
    /// be waited for (the range lock is free, the store serves the read at once): `Ok(false)`
    /// then means not done, and the command is left for a worker.
    fn read_data(&self, cmd: &mut Cmd, nowait: bool) -> Result<bool, Fail> {
        let info = *cmd.info();
        let len = (info.blocks * self.bs()) as usize;
        if self.store.caps().null {
            cmd.set_data_in_zeros(len);
        } else {
            let off = info.lba * self.bs();
            // Zero-copy: a large READ of cached data names the file range instead of copying it
            // (only on the fabric's thread, and only where the fabric can send from a file). It
            // keeps its range locked until the data is out, as a copying read does while it copies.
            if nowait
                && cmd.file_data_in_allowed()
                && len >= ZERO_COPY_MIN
                && let Some(fd) = self.store.file_range(off, len as u64)
            {
                let Some(range) = self.locks.try_lock_owned(info.lba, info.blocks, Mode::Hold) else {
                    return Ok(false);
                };
                cmd.set_data_in_file(fd, off, len, range);
                cmd.produced = info.data_len;
                if let Some(d) = cmd.device() {
                    d.stats().read_bytes.fetch_add(len as u64, Relaxed);
                    d.stats().zero_copy_read_bytes.fetch_add(len as u64, Relaxed);
                }
                return Ok(true);
            }
            // Shared: a read never sees half of a COMPARE AND WRITE or WRITE ATOMIC.
            let _range = if nowait {
                let Some(g) = self.locks.try_lock(info.lba, info.blocks, Mode::Read) else { return Ok(false) };
                g
            } else {
                self.locks.lock(info.lba, info.blocks, Mode::Read)
            };
            let buf = cmd.data_in_buf(len)?;
            let mut iov: [IoSliceMut<'_>; MAX_SEGS] = empty_io_slices_mut();
            let n = buf.io_slices_mut(0, len, &mut iov);
            if nowait {
                if !matches!(self.store.try_read_at(off, &mut iov[..n]), Ok(true)) {
                    return Ok(false);
                }
            } else {
                self.store
                    .read_at(off, &mut iov[..n])
                    .map_err(|_| Sense::with_info(SenseCode::UNRECOVERED_READ_ERROR, info.lba))?;
            }
            cmd.set_data_in(len);
        }
        // The residual compares what the CDB asked for with the initiator's buffer.
        cmd.produced = info.data_len;
        if let Some(d) = cmd.device() {
            d.stats().read_bytes.fetch_add(len as u64, Relaxed);
        }
        Ok(true)
    }

    /// Whether writes must reach stable storage before completing (FUA, or the write cache is
    /// disabled).
    fn write_through(&self, cmd: &Cmd, fua: bool) -> bool {
        fua || cmd.device().is_none_or(|d| !d.mode.wce.load(Relaxed))
    }

    /// Writes the command's Data-Out bytes `[from, from + len)` at `lba`.
    fn write_buf(&self, cmd: &Cmd, from: usize, len: usize, lba: u64, fua: bool) -> Result<(), Fail> {
        if len == 0 {
            return Ok(());
        }
        let buf = cmd.buf().ok_or(Fail::from(SenseCode::INTERNAL_TARGET_FAILURE))?;
        let mut iov = empty_io_slices();
        let n = buf.io_slices(from, len, &mut iov);
        self.store
            .write_at(lba * self.bs(), &iov[..n], self.write_through(cmd, fua))
            .map_err(|e| write_error(&e, lba))?;
        count_written(cmd, len);
        Ok(())
    }

    fn exec_write(&self, cmd: &mut Cmd, verify: bool) -> Result<(), Fail> {
        let info = *cmd.info();
        let len = (info.blocks * self.bs()) as usize;
        if len == 0 || info.dir != DataDir::Out {
            return Ok(());
        }
        {
            let _range = self.locks.lock(info.lba, info.blocks, Mode::Write);
            // WRITE AND VERIFY writes through: verification is against the medium.
            self.write_buf(cmd, 0, len, info.lba, info.fua || verify)?;
        }
        if verify && (cmd.cdb()[1] >> 1) & 3 == 1 && !self.store.caps().null {
            self.compare(cmd, info.lba, info.blocks, false)?;
        }
        Ok(())
    }

    fn exec_verify(&self, cmd: &Cmd) -> Result<(), Fail> {
        let info = *cmd.info();
        match (cmd.cdb()[1] >> 1) & 3 {
            1 if info.blocks > 0 => self.compare(cmd, info.lba, info.blocks, false),
            3 if info.blocks > 0 => self.compare(cmd, info.lba, info.blocks, true),
            0 if !self.store.caps().null => {
                // Medium verification: every block must be readable.
                self.for_each_chunk(cmd.session().target().sgv(), info.lba, info.blocks, |_, _| Ok(()))
            }
            _ => Ok(()),
        }
    }

    /// Reads `[lba, lba + blocks)` in pieces and hands each (offset from `lba` in bytes, data)
    /// to `f`.
    fn for_each_chunk(
        &self,
        sgv: &SgvPool,
        lba: u64,
        blocks: u64,
        mut f: impl FnMut(usize, &mut SgBuf) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        let bs = self.bs() as usize;
        let total = blocks as usize * bs;
        let mut done = 0;
        while done < total {
            let n = (total - done).min(CHUNK.min(sgv.max_len()));
            let mut tmp = sgv.alloc(n).map_err(|_| Fail::BUSY)?;
            if self.store.caps().null {
                tmp.fill(0, n, 0);
            } else {
                read_into(&self.store, lba * bs as u64 + done as u64, &mut tmp, n)
                    .map_err(|_| Sense::with_info(SenseCode::UNRECOVERED_READ_ERROR, lba + (done / bs) as u64))?;
            }
            f(done, &mut tmp)?;
            done += n;
        }
        Ok(())
    }

    /// Compares the medium at `lba` with the command's Data-Out (each block with the first
    /// Data-Out block when `single`). A difference ends the command with MISCOMPARE and the
    /// offset of the first differing byte in the INFORMATION field (SBC-3 §5.27).
    fn compare(&self, cmd: &Cmd, lba: u64, blocks: u64, single: bool) -> Result<(), Fail> {
        let data = cmd.buf().ok_or(Fail::from(SenseCode::INTERNAL_TARGET_FAILURE))?;
        let bs = self.bs() as usize;
        self.for_each_chunk(cmd.session().target().sgv(), lba, blocks, |at, medium| {
            let diff = if single {
                (0..medium.len() / bs).find_map(|k| first_diff(medium, k * bs, data, 0, bs).map(|i| k * bs + i))
            } else {
                first_diff(medium, 0, data, at, medium.len())
            };
            match diff {
                Some(i) => Err(Sense::with_info(SenseCode::MISCOMPARE_DURING_VERIFY, (at + i) as u64).into()),
                None => Ok(()),
            }
        })
    }

    /// The commands that move no medium data through a buffer.
    fn exec_control(&self, op: Op, cmd: &mut Cmd) -> Result<(), Fail> {
        match op {
            Op::TestUnitReady | Op::Prefetch10 | Op::Prefetch16 => Ok(()),
            Op::RequestSense => spc::request_sense(cmd),
            Op::Inquiry => spc::inquiry(self, cmd),
            Op::ModeSense6 | Op::ModeSense10 => mode::sense(self, cmd),
            Op::ModeSelect6 | Op::ModeSelect10 => mode::select(self, cmd),
            Op::StartStopUnit => spc::start_stop(cmd),
            Op::PreventAllow => spc::prevent_allow(cmd),
            Op::ReadCapacity10 => spc::read_capacity10(self, cmd),
            Op::ReadCapacity16 => spc::read_capacity16(self, cmd),
            Op::ReportSupportedOpcodes => spc::report_opcodes(cmd),
            Op::ReportSupportedTmf => spc::report_tmf(cmd),
            Op::ReportTargetPortGroups => spc::report_tpgs(cmd),
            Op::SetTargetPortGroups => spc::set_tpgs(cmd),
            Op::ReadDefectData10 | Op::ReadDefectData12 => spc::read_defect_data(cmd),
            Op::PersistentReserveIn => crate::pr::exec::prin(cmd),
            Op::PersistentReserveOut => crate::pr::exec::prout(cmd),
            Op::Reserve6 | Op::Reserve10 => crate::pr::exec::reserve(cmd),
            Op::Release6 | Op::Release10 => crate::pr::exec::release(cmd),
            Op::GetLbaStatus => thin::get_lba_status(self, cmd),
            Op::ReceiveCopyResults => xcopy::receive_copy_results(self, cmd),
            Op::SyncCache10 | Op::SyncCache16 => self.store.flush().map_err(|e| write_error(&e, cmd.info().lba).into()),
            // An opcode table entry without a handler must not pretend success.
            _ => Err(Sense::invalid_opcode().into()),
        }
    }
}

/// Reads `len` bytes of the store at `off` into the start of `buf`.
fn read_into<S: BlockStore>(store: &S, off: u64, buf: &mut SgBuf, len: usize) -> std::io::Result<()> {
    let mut iov: [IoSliceMut<'_>; MAX_SEGS] = empty_io_slices_mut();
    let n = buf.io_slices_mut(0, len, &mut iov);
    store.read_at(off, &mut iov[..n])
}

/// The offset of the first byte where `a[a_off..]` and `b[b_off..]` differ within `len`.
fn first_diff(a: &SgBuf, a_off: usize, b: &SgBuf, b_off: usize, len: usize) -> Option<usize> {
    let (mut sa, mut sb) = (empty_io_slices(), empty_io_slices());
    let na = a.io_slices(a_off, len, &mut sa);
    let nb = b.io_slices(b_off, len, &mut sb);
    let (mut ia, mut ib, mut pa, mut pb, mut pos) = (0, 0, 0, 0, 0);
    while ia < na && ib < nb {
        let (x, y) = (&sa[ia][pa..], &sb[ib][pb..]);
        let k = x.len().min(y.len());
        if let Some(i) = x[..k].iter().zip(&y[..k]).position(|(p, q)| p != q) {
            return Some(pos + i);
        }
        pos += k;
        pa += k;
        pb += k;
        if pa == sa[ia].len() {
            ia += 1;
            pa = 0;
        }
        if pb == sb[ib].len() {
            ib += 1;
            pb = 0;
        }
    }
    None
}

/// Counts `len` bytes a command wrote in its device's statistics.
pub(super) fn count_written(cmd: &Cmd, len: usize) {
    if let Some(d) = cmd.device() {
        d.stats().write_bytes.fetch_add(len as u64, Relaxed);
    }
}

/// Maps a write failure to sense data.
pub(crate) fn write_error(e: &std::io::Error, lba: u64) -> Sense {
    if e.raw_os_error() == Some(28) {
        // ENOSPC: a thin store ran out of space (SBC-3 §4.7.3.7).
        Sense::new(SenseCode::SPACE_ALLOCATION_FAILED_WRITE_PROTECT)
    } else {
        Sense::with_info(SenseCode::WRITE_ERROR, lba)
    }
}

impl<S: BlockStore> DeviceHandler for Disk<S> {
    fn ops(&self) -> &'static [OpInfo] {
        DISK_OPS
    }

    fn supports(&self, op: &OpInfo) -> bool {
        // UNMAP, BLOCK ERASE and CRYPTOGRAPHIC ERASE only on thin provisioned logical units: a
        // fully provisioned one has nothing to deallocate and no key to forget, and an erase
        // leaves every block deallocated (SBC-4 §4.11.5), which needs LBPME. libiscsi's
        // Unmap.VPD checks UNMAP is refused there, Sanitize.BlockErase that a supported BLOCK
        // ERASE comes with LBPME=1 and leaves no block mapped.
        match op.op {
            Op::Unmap => self.thin(),
            Op::Sanitize => !matches!(op.service_action, Some(0x02 | 0x03)) || self.thin(),
            _ => true,
        }
    }

    fn device_type(&self) -> u8 {
        0
    }

    fn product(&self) -> &str {
        self.store.product()
    }

    fn may_block(&self) -> bool {
        self.store.caps().may_block
    }

    fn parse(&self, dev: &Device, op: &'static OpInfo, cdb: &[u8], expected_len: u32) -> Result<CmdInfo, Sense> {
        // A removable device without its medium answers NOT READY before looking further.
        if !dev.medium_loaded() && (op.flags.has(OpFlags::MEDIUM) || op.op == Op::TestUnitReady) {
            return Err(Sense::new(SenseCode::MEDIUM_NOT_PRESENT));
        }
        let control = |dir, data_len| Ok(CmdInfo { dir, data_len, ..CmdInfo::default() });
        match op.op {
            Op::TestUnitReady | Op::StartStopUnit | Op::PreventAllow => control(DataDir::None, 0),
            Op::RequestSense | Op::ModeSense6 => control(DataDir::In, u32::from(cdb[4])),
            Op::Inquiry => {
                if cdb[1] & 1 == 0 && cdb[2] != 0 {
                    return Err(Sense::invalid_cdb(2, Some(7)));
                }
                control(DataDir::In, u32::from(be16(cdb, 3)))
            }
            Op::ModeSense10 => control(DataDir::In, u32::from(be16(cdb, 7))),
            Op::ModeSelect6 => control(DataDir::Out, u32::from(cdb[4])),
            Op::ModeSelect10 => control(DataDir::Out, u32::from(be16(cdb, 7))),
            Op::ReadCapacity10 => control(DataDir::In, 8),
            Op::ReadCapacity16 => control(DataDir::In, be32(cdb, 10)),
            Op::ReportSupportedOpcodes | Op::ReportSupportedTmf | Op::ReportTargetPortGroups => {
                control(DataDir::In, be32(cdb, 6))
            }
            Op::PersistentReserveIn => control(DataDir::In, u32::from(be16(cdb, 7))),
            Op::PersistentReserveOut => control(DataDir::Out, be32(cdb, 5)),
            // A header and one descriptor per port group: a few KiB at most.
            Op::SetTargetPortGroups if be32(cdb, 6) > 4 + 4 * 4096 => Err(Sense::invalid_cdb(6, None)),
            Op::SetTargetPortGroups => control(DataDir::Out, be32(cdb, 6)),
            Op::Reserve6 | Op::Release6 | Op::Reserve10 | Op::Release10 => control(DataDir::None, 0),
            Op::ReadDefectData10 => control(DataDir::In, u32::from(be16(cdb, 7))),
            Op::ReadDefectData12 => control(DataDir::In, be32(cdb, 6)),
            Op::WriteSame10 | Op::WriteSame16 => thin::parse_write_same(self, op, cdb, expected_len),
            Op::Unmap => Ok(CmdInfo {
                dir: DataDir::Out,
                data_len: u32::from(be16(cdb, 7)),
                ctx: self.ctx(),
                ..CmdInfo::default()
            }),
            Op::GetLbaStatus => {
                self.check_range(be64(cdb, 2), 0)?;
                Ok(CmdInfo {
                    dir: DataDir::In,
                    data_len: be32(cdb, 10),
                    lba: be64(cdb, 2),
                    ctx: self.ctx(),
                    ..CmdInfo::default()
                })
            }
            Op::CompareAndWrite => atomic::parse_caw(self, cdb, expected_len),
            Op::ExtendedCopy => Ok(xcopy::parse(self, cdb)),
            Op::Sanitize => {
                let plen = u32::from(be16(cdb, 7));
                let dir = if op.service_action == Some(0x01) && plen > 0 { DataDir::Out } else { DataDir::None };
                Ok(CmdInfo { dir, data_len: plen, ctx: ExecContext::Worker, ..CmdInfo::default() })
            }
            Op::ReceiveCopyResults => control(DataDir::In, be32(cdb, 10)),
            Op::WriteAtomic16 => atomic::parse_write_atomic(self, cdb, expected_len),
            _ => self.parse_rw(op, cdb, expected_len),
        }
    }

    fn exec(&self, cmd: &mut Cmd) {
        let Some(op) = cmd.op() else { return };
        let r = match op.op {
            Op::Read6 | Op::Read10 | Op::Read12 | Op::Read16 => self.exec_read(cmd),
            Op::Write6 | Op::Write10 | Op::Write12 | Op::Write16 => self.exec_write(cmd, false),
            Op::WriteVerify10 | Op::WriteVerify12 | Op::WriteVerify16 => self.exec_write(cmd, true),
            Op::Verify10 | Op::Verify12 | Op::Verify16 => self.exec_verify(cmd),
            Op::WriteSame10 | Op::WriteSame16 => thin::write_same(self, cmd),
            Op::Unmap => thin::unmap(self, cmd),
            Op::CompareAndWrite => atomic::compare_and_write(self, cmd),
            Op::OrWrite16 => atomic::orwrite(self, cmd),
            Op::WriteAtomic16 => atomic::write_atomic(self, cmd),
            Op::ExtendedCopy => xcopy::extended_copy(cmd),
            Op::Sanitize => thin::sanitize(self, cmd),
            other => self.exec_control(other, cmd),
        };
        cmd.complete_with(r);
    }

    fn start(&self, mut cmd: CmdBox) -> Result<(), CmdBox> {
        // READ, WRITE and SYNCHRONIZE CACHE go to an asynchronous store without a worker; the
        // rest (verification, WRITE SAME, UNMAP, ...) keeps the worker path.
        if !self.store.caps().async_io {
            return Err(cmd);
        }
        let Some(op) = cmd.op() else { return Err(cmd) };
        let info = *cmd.info();
        let len = (info.blocks * self.bs()) as usize;
        let kind = match op.op {
            Op::Read6 | Op::Read10 | Op::Read12 | Op::Read16 if len > 0 => IoKind::Read,
            Op::Write6 | Op::Write10 | Op::Write12 | Op::Write16 if len > 0 && info.dir == DataDir::Out => {
                IoKind::Write
            }
            Op::SyncCache10 | Op::SyncCache16 => IoKind::Flush,
            _ => return Err(cmd),
        };
        let range = match kind {
            IoKind::Flush => None,
            // A COMPARE AND WRITE holds the range: the worker waits for it.
            _ => match self.locks.try_lock_owned(
                info.lba,
                info.blocks,
                if kind == IoKind::Read { Mode::Read } else { Mode::Write },
            ) {
                Some(g) => Some(g),
                None => return Err(cmd),
            },
        };
        if kind == IoKind::Read && cmd.data_in_buf(len).is_err() {
            // The worker reports BUSY.
            return Err(cmd);
        }
        let wt = kind == IoKind::Write && self.write_through(&cmd, info.fua);
        let io = BlockIo::new(cmd, kind, info.lba, self.bs(), len, wt, range);
        self.store.submit(io).map_err(BlockIo::into_cmd)
    }

    fn try_exec_nowait(&self, cmd: &mut Cmd) -> bool {
        let read = matches!(cmd.op().map(|o| o.op), Some(Op::Read6 | Op::Read10 | Op::Read12 | Op::Read16));
        // An error (no buffer under the memory limit, say) is the worker's to report.
        if !read || !matches!(self.read_data(cmd, true), Ok(true)) {
            return false;
        }
        cmd.complete_with(Ok(()));
        true
    }

    fn flush(&self) -> std::io::Result<()> {
        self.store.flush()
    }

    fn rescan(&self) -> bool {
        match self.store.refresh() {
            Ok(g) => self.blocks.swap(g.blocks, Relaxed) != g.blocks,
            Err(_) => false,
        }
    }

    fn watch_capacity(&self, notify: crate::SizeNotify) {
        self.store.watch_size(notify);
    }

    fn block_access(&self) -> Option<&dyn BlockAccess> {
        Some(self)
    }
}
