//! Block stores for scst-rs.
//!
//! | store | data | blocks? | notes |
//! |---|---|---|---|
//! | [`NullStore`] | reads zeros, drops writes | no | any size; reads served from a zero page |
//! | [`RamStore`] | in memory, sparse | no | the embedded default; pages appear on first write |
//! | [`FileStore`] | regular file | yes | io_uring (or `preadv2`/`pwritev2` on workers) on the command's segments; write-back or write-through; optional `O_DIRECT`; sparse when thin |
//! | [`BlockDevStore`] | block device | yes | `O_DIRECT`, io_uring or workers; size and logical block size from the device |
//! | `rbd::RbdStore` (feature `rbd`) | Ceph RBD image | yes | librbd's asynchronous calls, completions through an eventfd; COMPARE AND WRITE atomic in the cluster |
//!
//! Each implements [`scst::BlockStore`]; wrap one in [`scst::Disk`] to get a SCSI disk.
//!
//! FILEIO and BLOCKIO submit READ, WRITE and SYNCHRONIZE CACHE through one process-wide io_uring
//! ([`AioMode::Auto`], the default) from the thread that decoded the command; its completion
//! thread delivers the response. Where io_uring is refused they fall back to the device's
//! worker threads and synchronous calls (a warning in the log says which).
//!
//! [`SgDevice`] is not a store but a pass-through [`scst::DeviceHandler`] over a SCSI generic
//! node: any real SCSI device (disk, tape, changer, ...) exported as it is.
#![deny(unsafe_code)]

mod block;
mod file;
mod nullio;
mod ram;
#[cfg(feature = "rbd")]
pub mod rbd;
pub mod sg;
mod sys;
mod uring;

pub use block::BlockDevStore;
pub use file::{FileOptions, FileStore};
pub use nullio::NullStore;
pub use ram::RamStore;
pub use sg::{SgDevice, SgOptions, SgTimeouts};
pub use uring::AioMode;

/// I/Os submitted to the process's io_uring so far (resubmissions of short transfers included),
/// or `None` when this process has no ring (none was needed yet, or io_uring is unavailable).
pub fn io_uring_submitted() -> Option<u64> {
    uring::Ring::existing().map(|_| uring::Ring::submitted())
}

/// `io_uring_enter` calls made so far to submit I/O (fewer than submissions when they were
/// batched, see [`scst::batch`]), or `None` when this process has no ring.
pub fn io_uring_enters() -> Option<u64> {
    uring::Ring::existing().map(|_| uring::Ring::enters())
}

/// Whether io_uring works here: creates the shared ring if no store has yet.
pub fn io_uring_available() -> bool {
    uring::Ring::shared().is_some()
}

/// Errors opening a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The backing file or device could not be opened or sized.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// io_uring was asked for ([`AioMode::Uring`]) and this kernel or sandbox refuses it.
    #[error("io_uring is unavailable here")]
    NoUring,
    /// The block size is neither 512 nor 4096, or the device cannot use it.
    #[error("unsupported block size {0}")]
    BlockSize(u32),
    /// The size is zero or not a multiple of the block size.
    #[error("size {size} is not a positive multiple of the block size {block_size}")]
    Size {
        /// Requested size in bytes.
        size: u64,
        /// Block size.
        block_size: u32,
    },
}

fn check_geometry(size: u64, block_size: u32) -> Result<(), OpenError> {
    if !matches!(block_size, 512 | 4096) {
        return Err(OpenError::BlockSize(block_size));
    }
    if size == 0 || size % u64::from(block_size) != 0 {
        return Err(OpenError::Size { size, block_size });
    }
    Ok(())
}
