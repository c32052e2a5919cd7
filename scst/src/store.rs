//! The block-store interface backends implement (NULLIO, RAM, FILEIO, BLOCKIO, ...).
//!
//! A store only moves blocks: the SCSI semantics (CDB fields, ranges, sense data, caching mode
//! page, verification) live in [`crate::sbc::Disk`], once for every store. Buffers are the
//! command's own scatter-gather segments: stores read and write them in place (preadv/pwritev),
//! with no intermediate copy.

use std::io::{self, IoSlice, IoSliceMut};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::cmd::{CmdBox, Fail};
use crate::sbc::locks::OwnedRangeGuard;
use crate::wire::sense::{Sense, SenseCode};

/// Size of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Logical block size in bytes (512 or 4096).
    pub block_size: u32,
    /// Number of logical blocks.
    pub blocks: u64,
}

/// What a store can do beyond plain reads and writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCaps {
    /// I/O calls may block (file or device I/O): commands then run on device worker threads.
    /// RAM and NULLIO stores never block and run on the submitting thread.
    pub may_block: bool,
    /// Reads always return zeros and writes are discarded (NULLIO): READ is served from a
    /// shared zero page without touching the store or memory, and WRITE AND VERIFY skips the
    /// read-back comparison.
    pub null: bool,
    /// VPD B1h MEDIUM ROTATION RATE: 1 for non-rotating media, 0 when not reported.
    pub rotation_rate: u16,
    /// Logical blocks per physical block exponent (READ CAPACITY(16) byte 13).
    pub lbppbe: u8,
    /// Thin provisioned: [`BlockStore::unmap`] deallocates, deallocated blocks read as zeros,
    /// and [`BlockStore::mapped`] tells mapped from deallocated ranges. The disk then reports
    /// LBPME/LBPRZ and accepts UNMAP and WRITE SAME with UNMAP.
    pub thin: bool,
    /// [`BlockStore::submit`] takes I/O asynchronously (io_uring): the disk then starts READ,
    /// WRITE and SYNCHRONIZE CACHE on the submitting thread instead of handing them to a worker.
    pub async_io: bool,
}

/// A byte-addressed block store. Offsets and lengths the core passes are always whole logical
/// blocks within [`BlockStore::geometry`].
///
/// Methods take `&self` and may be called concurrently from several threads (for overlapping
/// ranges too; SCSI gives no ordering between concurrent commands). They may block only if
/// [`StoreCaps::may_block`] is set.
pub trait BlockStore: Send + Sync + 'static {
    /// Current size.
    fn geometry(&self) -> Geometry;

    /// Capabilities (constant over the store's life).
    fn caps(&self) -> StoreCaps;

    /// Product identification for INQUIRY (e.g. `"FILEIO"`).
    fn product(&self) -> &str;

    /// Reads `bufs.len()` slices' worth of bytes starting at byte offset `off`, filling every
    /// slice completely.
    ///
    /// # Errors
    /// An I/O error; the command then fails with MEDIUM ERROR / UNRECOVERED READ ERROR.
    fn read_at(&self, off: u64, bufs: &mut [IoSliceMut<'_>]) -> io::Result<()>;

    /// Like [`BlockStore::read_at`], but only if that needs no waiting (the data is in the page
    /// cache, say): `Ok(true)` when every slice was filled, `Ok(false)` when the read would have
    /// to wait (the slices' contents are then unspecified and the command goes to a worker,
    /// which calls `read_at`). Called on fabric threads even when [`StoreCaps::may_block`] is
    /// set, so it must never block. The default never tries.
    ///
    /// # Errors
    /// An I/O error (the command then goes to a worker too, which reports what `read_at` says).
    fn try_read_at(&self, off: u64, bufs: &mut [IoSliceMut<'_>]) -> io::Result<bool> {
        let _ = (off, bufs);
        Ok(false)
    }

    /// Offers bytes `off..off + len` as a range of an open file instead of copying them (a
    /// zero-copy READ): `Some(fd)` when they are the bytes of `fd` at the same offsets and all
    /// resident in memory (the page cache), so that sending them from the file (`sendfile`)
    /// never waits for the device. `None` (the default) and the core reads them into a buffer.
    /// Called on fabric threads: it must never block.
    ///
    /// The bytes leave from the page cache when the network stack sends them; the core keeps
    /// the READ's LBA range locked (shared) until then, so a COMPARE AND WRITE or WRITE ATOMIC
    /// stays all-or-nothing to it, while plain writes, which SCSI does not order against a
    /// concurrent READ, may show in it. The store must not offer a range while a holder of that
    /// lock could be waiting on this thread (a store whose commands run on the fabric's thread).
    /// Stores let users turn this off (FILEIO `zerocopy=off`).
    fn file_range(&self, off: u64, len: u64) -> Option<std::os::fd::BorrowedFd<'_>> {
        let _ = (off, len);
        None
    }

    /// Writes every slice completely, starting at byte offset `off`. With `fua`, the data is on
    /// stable storage when this returns (write-through); otherwise it may sit in a volatile cache
    /// until [`BlockStore::flush`].
    ///
    /// # Errors
    /// An I/O error; the command then fails with MEDIUM ERROR / WRITE ERROR (or DATA PROTECT /
    /// SPACE ALLOCATION FAILED for `ENOSPC`).
    fn write_at(&self, off: u64, bufs: &[IoSlice<'_>], fua: bool) -> io::Result<()>;

    /// Makes every completed write durable (SYNCHRONIZE CACHE, shutdown).
    ///
    /// # Errors
    /// An I/O error.
    fn flush(&self) -> io::Result<()>;

    /// Deallocates `len` bytes at `off` (whole blocks): later reads return zeros. Only called
    /// when [`StoreCaps::thin`] is set.
    ///
    /// # Errors
    /// An I/O error (the command fails with MEDIUM ERROR / WRITE ERROR).
    fn unmap(&self, off: u64, len: u64) -> io::Result<()> {
        let _ = (off, len);
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Writes `len` zero bytes at `off` (WRITE SAME of a zero block). The default writes a
    /// shared zero page; stores override it with something cheaper (a hole, `ZERO_RANGE`).
    ///
    /// # Errors
    /// An I/O error.
    fn write_zeroes(&self, off: u64, len: u64, fua: bool) -> io::Result<()> {
        let zero = crate::sgv::zeros();
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zero.len() as u64 * 16);
            let mut iov: [IoSlice<'_>; 16] = [IoSlice::new(&[]); 16];
            let mut k = 0;
            let mut left = n;
            while left > 0 {
                let m = left.min(zero.len() as u64);
                iov[k] = IoSlice::new(&zero[..m as usize]);
                k += 1;
                left -= m;
            }
            self.write_at(off + done, &iov[..k], fua)?;
            done += n;
        }
        Ok(())
    }

    /// Whether the range starting at `off` is mapped (`true`) or deallocated, and how many
    /// bytes (≥ 1 block, ≤ `len`) share that state. Fully provisioned stores: always mapped.
    ///
    /// # Errors
    /// An I/O error.
    fn mapped(&self, off: u64, len: u64) -> io::Result<(bool, u64)> {
        let _ = off;
        Ok((true, len))
    }

    /// Starts `io` without waiting for it: an asynchronous submission (io_uring, say). Called on
    /// the submitting (fabric) thread; must not block. On `Ok` the store owns `io` and calls
    /// [`BlockIo::complete`] exactly once, from any thread, when the transfer is over; until
    /// then the buffer segments [`BlockIo::segments`] gave stay valid and are the store's to
    /// fill (READ) or read (WRITE). `Err(io)` refuses (queue full, not supported): the command
    /// then runs on a device worker through [`BlockStore::read_at`] / [`BlockStore::write_at`]
    /// as usual. Only called when [`StoreCaps::async_io`] is set; the default refuses.
    ///
    /// # Errors
    /// `io` itself, handed back unstarted.
    fn submit(&self, io: BlockIo) -> Result<(), BlockIo> {
        Err(io)
    }

    /// COMPARE AND WRITE done by the store itself, atomically where the store is shared (a
    /// distributed block store compares and writes in one operation on its server, so the
    /// command is atomic against every node that writes the same blocks, not only against this
    /// process). `compare` and `data` (the command's buffer segments) hold the same number of
    /// bytes, whole blocks at byte offset `off`.
    /// `Some(Ok(None))`: the medium matched `compare` and now holds `data` (durable when `fua`);
    /// `Some(Ok(Some(i)))`: byte `i` of the range is the first that differs, nothing written;
    /// `None` (the default): the store does not offer it here, and the core compares and writes
    /// under its exclusive range lock (atomic against this process's commands only). Called on
    /// a device worker, with the core's range lock held.
    ///
    /// # Errors
    /// An I/O error (the command fails with MEDIUM ERROR).
    fn compare_and_write(
        &self,
        off: u64,
        compare: &[IoSlice<'_>],
        data: &[IoSlice<'_>],
        fua: bool,
    ) -> Option<io::Result<Option<u64>>> {
        let _ = (off, compare, data, fua);
        None
    }

    /// Re-reads the size from the backing object (after it was resized) and returns it.
    ///
    /// # Errors
    /// An I/O error.
    fn refresh(&self) -> io::Result<Geometry> {
        Ok(self.geometry())
    }

    /// Asks the store to call `notify` whenever its size may have changed under it (an image
    /// another client resized, say), so that the device re-reads it ([`refresh`](Self::refresh))
    /// without being asked to rescan. Returns whether the store will (the default: no; a
    /// rescan then shows a resize). Called at most once, by the device serving the store;
    /// `notify` may run on any thread, never under the store's own locks, and may call
    /// [`refresh`](Self::refresh). The store must not call it after it is dropped.
    fn watch_size(&self, notify: SizeNotify) -> bool {
        let _ = notify;
        false
    }
}

/// What a store calls when its size may have changed ([`BlockStore::watch_size`]).
pub type SizeNotify = Arc<dyn Fn() + Send + Sync>;

/// What an asynchronous block I/O ([`BlockIo`]) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    /// Fill the segments from the store, starting at the offset.
    Read,
    /// Write the segments to the store, starting at the offset.
    Write,
    /// Make every completed write durable (no data).
    Flush,
}

/// One asynchronous block I/O: the medium access of a READ, WRITE or SYNCHRONIZE CACHE command,
/// handed to [`BlockStore::submit`].
///
/// It owns the command (and through it the data buffer and the LBA range lock that keeps
/// COMPARE AND WRITE atomic), so the buffer cannot move or be freed while the store's I/O is in
/// flight. The store calls [`BlockIo::complete`] once with the outcome; the core then sets the
/// command's status (GOOD, or MEDIUM ERROR with the LBA) and delivers it to its fabric from that
/// thread. Dropping a `BlockIo` without completing it fails the command with INTERNAL TARGET
/// FAILURE rather than leave the initiator waiting.
pub struct BlockIo {
    cmd: Option<CmdBox>,
    kind: IoKind,
    off: u64,
    len: usize,
    write_through: bool,
    lba: u64,
    range: Option<OwnedRangeGuard>,
}

impl std::fmt::Debug for BlockIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockIo")
            .field("kind", &self.kind)
            .field("off", &self.off)
            .field("len", &self.len)
            .field("write_through", &self.write_through)
            .finish_non_exhaustive()
    }
}

impl BlockIo {
    /// A block I/O for `cmd`, whose buffer already holds `len` bytes (for a READ: has room).
    pub(crate) fn new(
        cmd: CmdBox,
        kind: IoKind,
        lba: u64,
        bs: u64,
        len: usize,
        write_through: bool,
        range: Option<OwnedRangeGuard>,
    ) -> Self {
        Self { cmd: Some(cmd), kind, off: lba * bs, len, write_through, lba, range }
    }

    /// What to do.
    pub fn kind(&self) -> IoKind {
        self.kind
    }

    /// Byte offset in the store.
    pub fn offset(&self) -> u64 {
        self.off
    }

    /// Bytes to transfer (0 for [`IoKind::Flush`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is nothing to transfer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A write must be on stable storage when it completes (FUA, or the write cache is off).
    pub fn write_through(&self) -> bool {
        self.write_through
    }

    /// Writes the buffer's segments for the transfer into `out` as raw `iovec`s and returns how
    /// many (at most [`crate::sgv::MAX_SEGS`]). The memory they point at belongs to the command
    /// and stays valid, unmoved, until this `BlockIo` is completed or dropped; for a READ the
    /// store may write it, for a WRITE only read it.
    pub fn segments(&mut self, out: &mut [libc::iovec]) -> usize {
        let len = self.len;
        let Some(buf) = self.cmd.as_mut().and_then(|c| c.buf_mut()) else { return 0 };
        let mut iov: [IoSliceMut<'_>; crate::sgv::MAX_SEGS] = crate::sgv::empty_io_slices_mut();
        let n = buf.io_slices_mut(0, len, &mut iov).min(out.len());
        for (o, s) in out.iter_mut().zip(iov.iter_mut().take(n)) {
            *o = libc::iovec { iov_base: s.as_mut_ptr().cast(), iov_len: s.len() };
        }
        n
    }

    /// Zero-fills the READ buffer from byte `from` on (the store ended before the transfer did:
    /// a file that shrank reads as zeros past its end).
    pub fn zero_from(&mut self, from: usize) {
        let len = self.len;
        if from < len
            && let Some(buf) = self.cmd.as_mut().and_then(|c| c.buf_mut())
        {
            buf.fill(from, len - from, 0);
        }
    }

    /// Ends the I/O: `Ok` when every byte was transferred (or the flush is done), else the
    /// error. Sets the command's status and delivers it to its fabric from this thread.
    pub fn complete(mut self, r: io::Result<()>) {
        let Some(mut cmd) = self.cmd.take() else { return };
        let r: Result<(), Fail> = match (self.kind, r) {
            (IoKind::Read, Ok(())) => {
                cmd.set_data_in(self.len);
                cmd.produced = cmd.info().data_len;
                if let Some(d) = cmd.device() {
                    d.stats().read_bytes.fetch_add(self.len as u64, Relaxed);
                }
                Ok(())
            }
            (IoKind::Write, Ok(())) => {
                if let Some(d) = cmd.device() {
                    d.stats().write_bytes.fetch_add(self.len as u64, Relaxed);
                }
                Ok(())
            }
            (IoKind::Flush, Ok(())) => Ok(()),
            (IoKind::Read, Err(_)) => Err(Sense::with_info(SenseCode::UNRECOVERED_READ_ERROR, self.lba).into()),
            (IoKind::Write | IoKind::Flush, Err(e)) => Err(crate::sbc::write_error(&e, self.lba).into()),
        };
        // Release the range before the response goes out: a COMPARE AND WRITE waiting for it
        // may go on.
        self.range = None;
        cmd.complete_with(r);
        crate::exec::complete(cmd);
    }

    /// The command back, unstarted (the store refused the I/O).
    pub(crate) fn into_cmd(mut self) -> CmdBox {
        self.range = None;
        self.cmd.take().expect("a BlockIo holds its command until completed")
    }
}

impl Drop for BlockIo {
    fn drop(&mut self) {
        if let Some(mut cmd) = self.cmd.take() {
            self.range = None;
            cmd.complete_with(Err(Sense::new(SenseCode::INTERNAL_TARGET_FAILURE).into()));
            crate::exec::complete(cmd);
        }
    }
}
