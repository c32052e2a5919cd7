//! Thin wrappers over the Linux system calls std does not expose: vectored positional I/O with
//! per-call flags, and the block device ioctls.

#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd};

/// `preadv2(fd, bufs, off, 0)`: returns the bytes read.
pub(crate) fn preadv(fd: BorrowedFd<'_>, bufs: &mut [IoSliceMut<'_>], off: u64) -> io::Result<usize> {
    preadv_flags(fd, bufs, off, 0)
}

/// `preadv2(fd, bufs, off, RWF_NOWAIT)`: reads only what the page cache holds; `EAGAIN` when
/// the first byte would have to wait for the device.
pub(crate) fn preadv_nowait(fd: BorrowedFd<'_>, bufs: &mut [IoSliceMut<'_>], off: u64) -> io::Result<usize> {
    preadv_flags(fd, bufs, off, libc::RWF_NOWAIT)
}

fn preadv_flags(fd: BorrowedFd<'_>, bufs: &mut [IoSliceMut<'_>], off: u64, flags: libc::c_int) -> io::Result<usize> {
    let off = libc::off_t::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let cnt = libc::c_int::try_from(bufs.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: IoSliceMut is ABI-compatible with `struct iovec` (std guarantees it on Unix); the
    // slices are valid for writes for their lengths and outlive the call; `fd` is open.
    let n = unsafe { libc::preadv2(fd.as_raw_fd(), bufs.as_mut_ptr().cast(), cnt, off, flags) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// `cachestat(2)` (Linux 6.5): whether every page of bytes `off..off + len` (`len` > 0) of the
/// file is in the page cache. Never waits for the device.
pub(crate) fn resident(fd: BorrowedFd<'_>, off: u64, len: u64) -> io::Result<bool> {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451;
    if len == 0 {
        return Ok(true);
    }
    let range = Range { off, len };
    let mut st = Stat::default();
    // SAFETY: both pointers are to live, properly laid out structures (the kernel's
    // `cachestat_range` and `cachestat`, all `__u64`); `fd` is open; flags must be 0.
    let r = unsafe { libc::syscall(SYS_CACHESTAT, fd.as_raw_fd(), &raw const range, &raw mut st, 0 as libc::c_uint) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1);
    let pages = (off + len).div_ceil(page) - off / page;
    Ok(st.nr_cache >= pages)
}

/// Whether the file lives in memory (tmpfs, ramfs): its I/O never waits for a device.
pub(crate) fn memory_backed(fd: BorrowedFd<'_>) -> bool {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `st` is a valid, writable `struct statfs`; `fd` is open.
    let r = unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) };
    if r != 0 {
        return false;
    }
    // SAFETY: fstatfs succeeded and filled the structure.
    // `f_type` is i64 here and narrower on some targets.
    #[allow(clippy::useless_conversion)]
    let f_type = i64::from(unsafe { st.assume_init() }.f_type);
    f_type == TMPFS_MAGIC || f_type == RAMFS_MAGIC
}

/// `pwritev2(fd, bufs, off, RWF_DSYNC if dsync)`: returns the bytes written.
pub(crate) fn pwritev(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>], off: u64, dsync: bool) -> io::Result<usize> {
    let off = libc::off_t::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let cnt = libc::c_int::try_from(bufs.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = if dsync { libc::RWF_DSYNC } else { 0 };
    // SAFETY: IoSlice is ABI-compatible with `struct iovec`; the slices are valid for reads for
    // their lengths and outlive the call; `fd` is open.
    let n = unsafe { libc::pwritev2(fd.as_raw_fd(), bufs.as_ptr().cast(), cnt, off, flags) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// `_IOR(0x12, 114, u64)`: libc does not define it.
const BLKGETSIZE64: libc::Ioctl = 0x8008_1272;

/// Size in bytes of a block device (`BLKGETSIZE64`).
pub(crate) fn blkgetsize64(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid and aligned.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(size) }
}

/// Logical block size of a block device (`BLKSSZGET`).
pub(crate) fn blksszget(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut sz: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which is valid and aligned.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::BLKSSZGET, &mut sz as *mut libc::c_int) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(sz as u32) }
}

/// Advances a slice array past `n` bytes already transferred (for short reads and writes).
pub(crate) fn advance_mut<'a, 'b>(mut bufs: &'b mut [IoSliceMut<'a>], n: usize) -> &'b mut [IoSliceMut<'a>] {
    IoSliceMut::advance_slices(&mut bufs, n);
    bufs
}

/// Advances a slice array past `n` bytes already transferred.
pub(crate) fn advance<'a, 'b>(mut bufs: &'b mut [IoSlice<'a>], n: usize) -> &'b mut [IoSlice<'a>] {
    IoSlice::advance_slices(&mut bufs, n);
    bufs
}

/// `fallocate(fd, 0, off, len)`: allocates blocks for a range.
pub(crate) fn fallocate(fd: BorrowedFd<'_>, off: u64, len: u64) -> io::Result<()> {
    fallocate_mode(fd, 0, off, len)
}

/// Deallocates a range; reads of it return zeros (`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`;
/// on a block device this discards with zeroing guaranteed).
pub(crate) fn punch_hole(fd: BorrowedFd<'_>, off: u64, len: u64) -> io::Result<()> {
    fallocate_mode(fd, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off, len)
}

/// Zeroes a range keeping it allocated (`FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE`).
pub(crate) fn zero_range(fd: BorrowedFd<'_>, off: u64, len: u64) -> io::Result<()> {
    fallocate_mode(fd, libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE, off, len)
}

/// The next offset at or after `off` holding data (`SEEK_DATA`) or a hole (`SEEK_HOLE`);
/// `None` past the end of the data (ENXIO).
pub(crate) fn seek(fd: BorrowedFd<'_>, off: u64, data: bool) -> io::Result<Option<u64>> {
    let off = libc::off_t::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let whence = if data { libc::SEEK_DATA } else { libc::SEEK_HOLE };
    // SAFETY: plain system call on an open descriptor; no memory is passed. The file offset it
    // moves is not used by this crate's positional I/O.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), off, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENXIO) { Ok(None) } else { Err(e) };
    }
    Ok(Some(r as u64))
}

fn fallocate_mode(fd: BorrowedFd<'_>, mode: libc::c_int, off: u64, len: u64) -> io::Result<()> {
    let off = libc::off_t::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: plain system call on an open descriptor; no memory is passed.
    let r = unsafe { libc::fallocate(fd.as_raw_fd(), mode, off, len) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
