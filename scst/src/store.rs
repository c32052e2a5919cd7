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

    /// Re-reads the size from the backing object (after it was resized) and returns it.
    ///
    /// # Errors
    /// An I/O error.
    fn refresh(&self) -> io::Result<Geometry> {
        Ok(self.geometry())
    }
}
