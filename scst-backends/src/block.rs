//! BLOCKIO: a block device as a logical unit, through `O_DIRECT`.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use scst::{BlockIo, BlockStore, Geometry, StoreCaps};

use crate::uring::{AioMode, AtEof, Ring};
use crate::{OpenError, check_geometry, sys};

/// A block device opened with `O_DIRECT`: data moves between the command's page-aligned buffer
/// segments and the device with no page cache and no copy. Size and logical block size come from
/// the device. FUA writes use `RWF_DSYNC` (a FUA write on the device); SYNCHRONIZE CACHE flushes
/// the device cache.
#[derive(Debug)]
pub struct BlockDevStore {
    path: PathBuf,
    file: File,
    block_size: u32,
    blocks: AtomicU64,
    thin: bool,
    ring: Option<&'static Ring>,
}

impl BlockDevStore {
    /// Opens the device. With `thin`, UNMAP and WRITE SAME with UNMAP discard blocks
    /// (`fallocate` punch hole: the kernel guarantees they read back as zeros).
    ///
    /// # Errors
    /// If it cannot be opened or sized, or its logical block size is neither 512 nor 4096.
    pub fn open(path: impl AsRef<Path>, read_only: bool, thin: bool) -> Result<Self, OpenError> {
        Self::open_with(path, read_only, thin, AioMode::Auto)
    }

    /// Like [`BlockDevStore::open`], with the I/O path chosen.
    ///
    /// # Errors
    /// As [`BlockDevStore::open`]; also [`OpenError::NoUring`] for [`AioMode::Uring`] where
    /// io_uring is unavailable.
    pub fn open_with(path: impl AsRef<Path>, read_only: bool, thin: bool, aio: AioMode) -> Result<Self, OpenError> {
        let path = path.as_ref();
        let err = |source| OpenError::Io { path: path.display().to_string(), source };
        let file =
            OpenOptions::new().read(true).write(!read_only).custom_flags(libc::O_DIRECT).open(path).map_err(err)?;
        let size = sys::blkgetsize64(file.as_fd()).map_err(err)?;
        let bs = sys::blksszget(file.as_fd()).map_err(err)?;
        let blocks = size / u64::from(bs);
        check_geometry(blocks * u64::from(bs), bs)?;
        let ring = match aio {
            AioMode::Threads => None,
            AioMode::Auto => Ring::shared(),
            AioMode::Uring => Some(Ring::shared().ok_or(OpenError::NoUring)?),
        };
        Ok(Self { path: path.to_path_buf(), file, block_size: bs, blocks: AtomicU64::new(blocks), thin, ring })
    }

    /// The path commands take: `"io_uring"` or `"threads"`.
    pub fn io_path(&self) -> &'static str {
        if self.ring.is_some() { "io_uring" } else { "threads" }
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl BlockStore for BlockDevStore {
    fn geometry(&self) -> Geometry {
        Geometry { block_size: self.block_size, blocks: self.blocks.load(Relaxed) }
    }

    fn caps(&self) -> StoreCaps {
        StoreCaps {
            may_block: true,
            null: false,
            rotation_rate: 0,
            lbppbe: 0,
            thin: self.thin,
            async_io: self.ring.is_some(),
        }
    }

    fn submit(&self, io: BlockIo) -> Result<(), BlockIo> {
        let Some(ring) = self.ring else { return Err(io) };
        let dsync = io.write_through();
        ring.submit(io, dsync, AtEof::Error, |_| self.file.as_raw_fd())
    }

    fn product(&self) -> &str {
        "BLOCKIO"
    }

    fn read_at(&self, off: u64, bufs: &mut [IoSliceMut<'_>]) -> io::Result<()> {
        let mut bufs = bufs;
        let mut pos = off;
        while !bufs.is_empty() {
            let n = sys::preadv(self.file.as_fd(), bufs, pos)?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            pos += n as u64;
            bufs = sys::advance_mut(bufs, n);
        }
        Ok(())
    }

    fn write_at(&self, off: u64, bufs: &[IoSlice<'_>], fua: bool) -> io::Result<()> {
        let mut owned: [IoSlice<'_>; scst::sgv::MAX_SEGS] = scst::sgv::empty_io_slices();
        let k = bufs.len().min(owned.len());
        owned[..k].copy_from_slice(&bufs[..k]);
        let mut rest = &mut owned[..k];
        let mut pos = off;
        while !rest.is_empty() {
            let n = sys::pwritev(self.file.as_fd(), rest, pos, fua)?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            pos += n as u64;
            rest = sys::advance(rest, n);
        }
        Ok(())
    }

    fn unmap(&self, off: u64, len: u64) -> io::Result<()> {
        sys::punch_hole(self.file.as_fd(), off, len)
    }

    fn write_zeroes(&self, off: u64, len: u64, fua: bool) -> io::Result<()> {
        match sys::zero_range(self.file.as_fd(), off, len) {
            Ok(()) if fua => self.file.sync_data(),
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                let zero = scst::sgv::zeros();
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(zero.len() as u64) as usize;
                    self.write_at(off + done, &[IoSlice::new(&zero[..n])], fua)?;
                    done += n as u64;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn refresh(&self) -> io::Result<Geometry> {
        let size = sys::blkgetsize64(self.file.as_fd())?;
        self.blocks.store(size / u64::from(self.block_size), Relaxed);
        Ok(self.geometry())
    }
}
