//! Block stores for scst-rs.
//!
//! | store | data | blocks? | notes |
//! |---|---|---|---|
//! | [`NullStore`] | reads zeros, drops writes | no | any size; reads served from a zero page |
//! | [`RamStore`] | in memory, sparse | no | the embedded default; pages appear on first write |
//! | [`FileStore`] | regular file | yes | vectored `preadv`/`pwritev` on the command's segments; write-back or write-through; optional `O_DIRECT`; sparse when thin |
//! | [`BlockDevStore`] | block device | yes | `O_DIRECT`; size and logical block size from the device |
//!
//! Each implements [`scst::BlockStore`]; wrap one in [`scst::Disk`] to get a SCSI disk.
//!
//! [`SgDevice`] is not a store but a pass-through [`scst::DeviceHandler`] over a SCSI generic
//! node: any real SCSI device (disk, tape, changer, ...) exported as it is.
#![deny(unsafe_code)]

mod block;
mod file;
mod nullio;
mod ram;
pub mod sg;
mod sys;

pub use block::BlockDevStore;
pub use file::{FileOptions, FileStore};
pub use nullio::NullStore;
pub use ram::RamStore;
pub use sg::{SgDevice, SgOptions, SgTimeouts};

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
