//! FILEIO: a regular file as a logical unit.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use scst::{BlockIo, BlockStore, Geometry, IoKind, StoreCaps};

use crate::uring::{AioMode, AtEof, Ring};
use crate::{OpenError, check_geometry, sys};

/// How to open a [`FileStore`].
#[derive(Clone, Copy, Debug)]
pub struct FileOptions {
    /// Size in bytes. A missing file is created with this size; an existing smaller file is
    /// extended to it (never shrunk). `None`: use the existing file's size.
    pub size: Option<u64>,
    /// Logical block size: 512 or 4096.
    pub block_size: u32,
    /// Thin: leave a new or extended file sparse instead of allocating its blocks.
    pub thin: bool,
    /// Read-only: open the file read-only.
    pub read_only: bool,
    /// Write-through: every write reaches stable storage before it completes (`RWF_DSYNC`), as
    /// if the write cache were disabled.
    pub write_through: bool,
    /// Bypass the page cache with `O_DIRECT` where the file system allows the alignment.
    pub direct: bool,
    /// Physical block size to report (READ CAPACITY(16) LOGICAL BLOCKS PER PHYSICAL BLOCK
    /// EXPONENT), a power-of-two multiple of the block size; 0: the block size.
    pub physical_block_size: u32,
    /// The I/O path: io_uring or worker threads. A file in tmpfs or ramfs ignores it (nothing
    /// waits there: commands run on the submitting thread).
    pub aio: AioMode,
    /// Offer READs of cached data as file ranges ([`BlockStore::file_range`]): a fabric that
    /// can sends them from the page cache without a copy. Ignored with `direct`.
    pub zerocopy: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            size: None,
            block_size: 512,
            thin: false,
            read_only: false,
            write_through: false,
            direct: false,
            physical_block_size: 0,
            aio: AioMode::Auto,
            zerocopy: true,
        }
    }
}

/// A file-backed store. I/O goes straight between the command's buffer segments and the file,
/// through io_uring (submitted on the fabric's thread) or `preadv2`/`pwritev2` on a worker:
/// no intermediate copy either way.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    file: File,
    /// The `O_DIRECT` descriptor, when asked for.
    direct: Option<File>,
    block_size: u32,
    blocks: AtomicU64,
    opts: FileOptions,
    /// The file is in tmpfs or ramfs: nothing waits for a device, so commands run on the
    /// submitting thread like a RAM LUN's (`caps().may_block` is false).
    memory_backed: bool,
    /// `preadv2(RWF_NOWAIT)` works here (cleared on the first `EOPNOTSUPP`).
    nowait_reads: std::sync::atomic::AtomicBool,
    /// `cachestat` works here (cleared on its first failure): zero-copy reads are possible.
    cachestat: std::sync::atomic::AtomicBool,
    /// The io_uring READ, WRITE and SYNCHRONIZE CACHE go through, if any.
    ring: Option<&'static Ring>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OpenError + '_ {
    move |source| OpenError::Io { path: path.display().to_string(), source }
}

impl FileStore {
    /// Opens (or creates) the file.
    ///
    /// # Errors
    /// If the file cannot be opened, created or sized, or the geometry is invalid.
    pub fn open(path: impl AsRef<Path>, opts: FileOptions) -> Result<Self, OpenError> {
        let path = path.as_ref();
        let bs = opts.block_size;
        let pbs = opts.physical_block_size;
        if pbs != 0 && (pbs < bs || pbs % bs != 0 || !(pbs / bs).is_power_of_two() || pbs / bs > 1 << 15) {
            return Err(OpenError::BlockSize(pbs));
        }
        if let Some(size) = opts.size {
            check_geometry(size, bs)?;
        }
        let mut oo = OpenOptions::new();
        oo.read(true);
        if !opts.read_only {
            oo.write(true).create(opts.size.is_some());
        }
        let file = oo.open(path).map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len();
        if let Some(size) = opts.size
            && size > len
        {
            if opts.read_only {
                return Err(OpenError::Size { size: len, block_size: bs });
            }
            file.set_len(size).map_err(io_err(path))?;
            if !opts.thin {
                // Fully provisioned: reserve the blocks now rather than fail a write later.
                // File systems without fallocate keep the file sparse.
                let _ = sys::fallocate(file.as_fd(), len, size - len);
            }
        }
        let len = file.metadata().map_err(io_err(path))?.len();
        let blocks = len / u64::from(bs);
        check_geometry(blocks * u64::from(bs), bs)?;
        let direct = if opts.direct {
            let mut oo = OpenOptions::new();
            oo.read(true).write(!opts.read_only).custom_flags(libc::O_DIRECT);
            Some(oo.open(path).map_err(io_err(path))?)
        } else {
            None
        };
        let memory_backed = sys::memory_backed(file.as_fd());
        let ring = match opts.aio {
            _ if memory_backed => None,
            AioMode::Threads => None,
            AioMode::Auto => Ring::shared(),
            AioMode::Uring => Some(Ring::shared().ok_or(OpenError::NoUring)?),
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
            direct,
            block_size: bs,
            blocks: AtomicU64::new(blocks),
            opts,
            memory_backed,
            nowait_reads: std::sync::atomic::AtomicBool::new(true),
            cachestat: std::sync::atomic::AtomicBool::new(true),
            ring,
        })
    }

    /// The path commands take: `"inline"` (tmpfs/ramfs), `"io_uring"` or `"threads"`.
    pub fn io_path(&self) -> &'static str {
        match (self.memory_backed, self.ring) {
            (true, _) => "inline",
            (false, Some(_)) => "io_uring",
            (false, None) => "threads",
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an `O_DIRECT` transfer of these slices at `off` is aligned for the file system
    /// (page-aligned SGV segments, block-multiple lengths and offsets).
    fn direct_for(&self, off: u64, lens: impl Iterator<Item = usize>) -> Option<&File> {
        let d = self.direct.as_ref()?;
        let align = 4096u64;
        let ok = off % align == 0 && lens.into_iter().all(|l| l as u64 % align == 0);
        ok.then_some(d)
    }
}

impl FileStore {
    /// Fills every slice from `off`. With `nowait` (`RWF_NOWAIT`, page cache only) it gives up
    /// with `Ok(false)` where the read would wait, or where the file system cannot tell (the
    /// first `EOPNOTSUPP` turns the attempts off); without, what lies past the end of the file
    /// (it shrank behind our back) reads as zeros.
    fn read_all(&self, off: u64, bufs: &mut [IoSliceMut<'_>], nowait: bool) -> io::Result<bool> {
        let f =
            if nowait { &self.file } else { self.direct_for(off, bufs.iter().map(|b| b.len())).unwrap_or(&self.file) };
        let mut bufs = bufs;
        let mut pos = off;
        while !bufs.is_empty() {
            let r = if nowait { sys::preadv_nowait(f.as_fd(), bufs, pos) } else { sys::preadv(f.as_fd(), bufs, pos) };
            match r {
                Ok(0) if nowait => return Ok(false),
                Ok(0) => {
                    for b in bufs.iter_mut() {
                        b.fill(0);
                    }
                    return Ok(true);
                }
                Ok(n) => {
                    pos += n as u64;
                    bufs = sys::advance_mut(bufs, n);
                }
                Err(e) if nowait && e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if nowait && e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    self.nowait_reads.store(false, Relaxed);
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn write_zeroes_plain(&self, off: u64, len: u64) -> io::Result<()> {
        let zero = scst::sgv::zeros();
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zero.len() as u64) as usize;
            self.write_at(off + done, &[IoSlice::new(&zero[..n])], false)?;
            done += n as u64;
        }
        Ok(())
    }
}

impl BlockStore for FileStore {
    fn geometry(&self) -> Geometry {
        Geometry { block_size: self.block_size, blocks: self.blocks.load(Relaxed) }
    }

    fn caps(&self) -> StoreCaps {
        StoreCaps {
            may_block: !self.memory_backed,
            null: false,
            rotation_rate: 0,
            lbppbe: (self.opts.physical_block_size / self.block_size).max(1).trailing_zeros() as u8,
            thin: self.opts.thin,
            async_io: self.ring.is_some(),
        }
    }

    fn submit(&self, io: BlockIo) -> Result<(), BlockIo> {
        let Some(ring) = self.ring else { return Err(io) };
        let dsync = io.write_through() || self.opts.write_through;
        let off = io.offset();
        let flush = io.kind() == IoKind::Flush;
        ring.submit(io, dsync, AtEof::Zeros, |iov| {
            let f = if flush { None } else { self.direct_for(off, iov.iter().map(|v| v.iov_len)) };
            f.unwrap_or(&self.file).as_raw_fd()
        })
    }

    fn product(&self) -> &str {
        "FILEIO"
    }

    fn read_at(&self, off: u64, bufs: &mut [IoSliceMut<'_>]) -> io::Result<()> {
        self.read_all(off, bufs, false).map(drop)
    }

    fn try_read_at(&self, off: u64, bufs: &mut [IoSliceMut<'_>]) -> io::Result<bool> {
        if self.direct_for(off, bufs.iter().map(|b| b.len())).is_some() || !self.nowait_reads.load(Relaxed) {
            // O_DIRECT reads always go to the device.
            return Ok(false);
        }
        self.read_all(off, bufs, true)
    }

    fn file_range(&self, off: u64, len: u64) -> Option<std::os::fd::BorrowedFd<'_>> {
        // Not in tmpfs: its commands run on the fabric's thread, where an atomic write waiting
        // for the range of a READ still being sent would stop that READ's sending.
        if !self.opts.zerocopy || self.direct.is_some() || self.memory_backed || !self.cachestat.load(Relaxed) {
            return None;
        }
        match sys::resident(self.file.as_fd(), off, len) {
            Ok(true) => Some(self.file.as_fd()),
            Ok(false) => None,
            Err(e) => {
                // No cachestat (Linux < 6.5): READs copy, as before.
                tracing::info!(path = %self.path.display(), error = %e, "no cachestat: zero-copy reads off");
                self.cachestat.store(false, Relaxed);
                None
            }
        }
    }

    fn write_at(&self, off: u64, bufs: &[IoSlice<'_>], fua: bool) -> io::Result<()> {
        let dsync = fua || self.opts.write_through;
        let f = self.direct_for(off, bufs.iter().map(|b| b.len())).unwrap_or(&self.file);
        let mut owned: [IoSlice<'_>; scst::sgv::MAX_SEGS] = scst::sgv::empty_io_slices();
        let k = bufs.len().min(owned.len());
        owned[..k].copy_from_slice(&bufs[..k]);
        let mut rest = &mut owned[..k];
        let mut pos = off;
        while !rest.is_empty() {
            let n = sys::pwritev(f.as_fd(), rest, pos, dsync)?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            pos += n as u64;
            rest = sys::advance(rest, n);
        }
        Ok(())
    }

    fn unmap(&self, off: u64, len: u64) -> io::Result<()> {
        match sys::punch_hole(self.file.as_fd(), off, len) {
            // A file system without holes: zeros are the next best thing.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => self.write_zeroes_plain(off, len),
            r => r,
        }
    }

    fn write_zeroes(&self, off: u64, len: u64, fua: bool) -> io::Result<()> {
        let r = if self.opts.thin {
            sys::punch_hole(self.file.as_fd(), off, len)
        } else {
            sys::zero_range(self.file.as_fd(), off, len)
        };
        match r {
            Ok(()) if fua || self.opts.write_through => self.file.sync_data(),
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => self.write_zeroes_plain(off, len),
            Err(e) => Err(e),
        }
    }

    fn mapped(&self, off: u64, len: u64) -> io::Result<(bool, u64)> {
        if !self.opts.thin {
            return Ok((true, len));
        }
        let bs = u64::from(self.block_size);
        let end = off + len;
        let (mapped, next) = match sys::seek(self.file.as_fd(), off, true)? {
            Some(d) if d <= off => (true, sys::seek(self.file.as_fd(), off, false)?.unwrap_or(end)),
            Some(d) => (false, d),
            None => (false, end),
        };
        // File system blocks may be larger than logical blocks: report whole logical blocks,
        // at least one.
        let run = next.min(end).saturating_sub(off) / bs * bs;
        Ok((mapped, run.max(bs.min(len))))
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn refresh(&self) -> io::Result<Geometry> {
        let len = self.file.metadata()?.len();
        self.blocks.store(len / u64::from(self.block_size), Relaxed);
        Ok(self.geometry())
    }
}
