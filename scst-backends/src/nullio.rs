//! NULLIO: reads return zeros, writes are discarded. For benchmarks of everything but storage.

use std::io::{self, IoSlice, IoSliceMut};

use scst::{BlockStore, Geometry, StoreCaps};

use crate::{OpenError, check_geometry};

/// A store of any size that keeps nothing.
#[derive(Debug)]
pub struct NullStore {
    geometry: Geometry,
}

impl NullStore {
    /// A store of `size` bytes in blocks of `block_size`.
    ///
    /// # Errors
    /// If the block size is not 512 or 4096 or `size` is not a positive multiple of it.
    pub fn new(size: u64, block_size: u32) -> Result<Self, OpenError> {
        check_geometry(size, block_size)?;
        Ok(Self { geometry: Geometry { block_size, blocks: size / u64::from(block_size) } })
    }
}

impl BlockStore for NullStore {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn caps(&self) -> StoreCaps {
        StoreCaps { may_block: false, null: true, rotation_rate: 1, lbppbe: 0, thin: false, async_io: false }
    }

    fn product(&self) -> &str {
        "NULLIO"
    }

    fn read_at(&self, _off: u64, bufs: &mut [IoSliceMut<'_>]) -> io::Result<()> {
        for b in bufs {
            b.fill(0);
        }
        Ok(())
    }

    fn write_at(&self, _off: u64, _bufs: &[IoSlice<'_>], _fua: bool) -> io::Result<()> {
        Ok(())
    }

    fn write_zeroes(&self, _off: u64, _len: u64, _fua: bool) -> io::Result<()> {
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}
