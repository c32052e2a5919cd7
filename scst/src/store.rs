//! The block-store interface backends implement (NULLIO, RAM, FILEIO, BLOCKIO, ...).
//!
//! A store only moves blocks: the SCSI semantics (CDB fields, ranges, sense data, caching mode
//! page, verification) live in [`crate::sbc::Disk`], once for every store. Buffers are the
//! command's own scatter-gather segments: stores read and write them in place (preadv/pwritev),
//! with no intermediate copy.

use std::io::{self, IoSlice, IoSliceMut};

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

    /// Re-reads the size from the backing object (after it was resized) and returns it.
    ///
    /// # Errors
    /// An I/O error.
    fn refresh(&self) -> io::Result<Geometry> {
        Ok(self.geometry())
    }
}
