//! A Ceph RBD image as a block store (cargo feature `rbd`; links librbd and librados).
//!
//! READ, WRITE and SYNCHRONIZE CACHE are asynchronous ([`BlockStore::submit`]): the fabric
//! thread that decoded the command starts `rbd_aio_readv` / `rbd_aio_writev` / `rbd_aio_flush`
//! on the command's own segments and returns. librbd reports each completion through an eventfd
//! (`rbd_set_image_notification`), not a callback on its own threads: the store's completion
//! thread wakes on the eventfd, collects every finished I/O with `rbd_poll_io_events`, and
//! completes the commands from there, so none of our code (sending responses on sockets) runs on
//! librbd's internal threads. The other commands (UNMAP, WRITE SAME, COMPARE AND WRITE, GET LBA
//! STATUS, ...) run on the device's workers through the synchronous calls.
//!
//! - Writes are durable once librbd acknowledges them unless the librbd cache is on (its
//!   default is write-through until the first flush); a FUA write, or any write when the LU's
//!   write cache is off, is followed by a flush before it completes.
//! - UNMAP discards (`rbd_skip_partial_discard` is turned off, so a discard of part of an object
//!   zeroes it and deallocated blocks always read as zeros); GET LBA STATUS asks
//!   `rbd_diff_iterate2`.
//! - COMPARE AND WRITE is `rbd_compare_and_write`: the OSD compares and writes atomically, so it
//!   holds against every gateway of the image, not only this process. librbd takes it only
//!   within one RADOS object and refuses some ranges (EINVAL); such a range (rare: VMware's ATS
//!   is one block) falls back to the core's comparison under its range lock, atomic in this
//!   process only.
//! - A resize (`rbd resize`, another gateway's) is seen at once: the store watches the image's
//!   header (`rbd_update_watch`, [`BlockStore::watch_size`]) and its watch thread has the device
//!   rescan ([`BlockStore::refresh`] through `scst::Device::rescan`), which raises CAPACITY
//!   DATA HAS CHANGED.
//! - The synchronous reads and writes (the worker path: VERIFY, WRITE SAME, a refused
//!   submission) are one asynchronous librbd call on all the buffer's segments, whose completion
//!   the same completion thread hands to the waiting worker.

#![allow(unsafe_code)]

mod ffi;

use std::ffi::{CString, c_void};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::raw::c_int;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;

use crossbeam_queue::ArrayQueue;
use parking_lot::{Condvar, Mutex};
use scst::sgv::MAX_SEGS;
use scst::{BlockIo, BlockStore, Geometry, IoKind, StoreCaps};

use crate::OpenError;

/// I/Os in flight per image at most; more are refused (and run on a worker).
const SLOTS: usize = 256;
/// Completions collected per `rbd_poll_io_events` call.
const POLL_BATCH: usize = 64;

/// Asynchronous librbd I/Os started by every RBD store of this process (flushes of durable
/// writes included): a test sees that commands took the asynchronous path, not the workers'.
pub fn aio_submitted() -> u64 {
    AIO_SUBMITTED.load(Relaxed)
}

static AIO_SUBMITTED: AtomicU64 = AtomicU64::new(0);

/// librbd calls made by the synchronous reads and writes of every RBD store of this process
/// (one per `read_at`/`write_at`, however many segments its buffer has).
pub fn sync_calls() -> u64 {
    SYNC_CALLS.load(Relaxed)
}

static SYNC_CALLS: AtomicU64 = AtomicU64::new(0);

/// A completion's argument: a slot index (shifted left by one), or a [`Waiter`] pointer with
/// the low bit set (its allocation is at least 8-aligned).
const WAITER_TAG: usize = 1;

/// A synchronous caller waiting for one librbd I/O.
#[derive(Default)]
struct Waiter {
    ret: Mutex<Option<isize>>,
    cv: Condvar,
}

/// Where an RBD image is: `rbd:POOL/IMAGE[,conf=PATH][,id=CLIENT]` on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RbdOptions {
    /// The RADOS pool.
    pub pool: String,
    /// The image's name in the pool.
    pub image: String,
    /// The cluster's configuration file; `None`: librados' default search
    /// (`$CEPH_CONF`, `/etc/ceph/ceph.conf`, ...).
    pub conf: Option<PathBuf>,
    /// The client's id (`admin` for `client.admin`, librados' default).
    pub id: Option<String>,
    /// Logical block size to report (512 or 4096).
    pub block_size: u32,
}

impl RbdOptions {
    /// `POOL/IMAGE` with the defaults (the cluster's default configuration, client.admin,
    /// 512-byte blocks).
    pub fn new(pool: impl Into<String>, image: impl Into<String>) -> Self {
        Self { pool: pool.into(), image: image.into(), conf: None, id: None, block_size: 512 }
    }
}

fn err(r: isize) -> io::Error {
    io::Error::from_raw_os_error((-r) as i32)
}

fn check(r: c_int) -> io::Result<()> {
    if r < 0 { Err(err(r as isize)) } else { Ok(()) }
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

/// A connected cluster handle with an I/O context on one pool.
struct Pool {
    cluster: ffi::RadosT,
    ioctx: ffi::RadosIoctxT,
}

// SAFETY: librados handles are thread-safe (the library serializes internally); the pointers
// are only freed in Drop, once.
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

impl Pool {
    fn connect(o: &RbdOptions) -> io::Result<Self> {
        let id = o.id.as_deref().map(|i| cstr(&format!("client.{i}"))).transpose()?;
        let name = id.unwrap_or_else(|| c"client.admin".to_owned());
        let mut cluster: ffi::RadosT = std::ptr::null_mut();
        // SAFETY: valid out-pointer and NUL-terminated strings.
        check(unsafe { ffi::rados_create2(&mut cluster, c"ceph".as_ptr(), name.as_ptr(), 0) })?;
        // Owned from here: an error below shuts the handle down.
        let mut p = Self { cluster, ioctx: std::ptr::null_mut() };
        let conf = o.conf.as_ref().map(|c| cstr(&c.to_string_lossy())).transpose()?;
        // SAFETY: `cluster` is a created, unconnected handle; strings outlive the calls.
        unsafe {
            check(ffi::rados_conf_read_file(cluster, conf.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())))?;
            check(ffi::rados_conf_parse_env(cluster, std::ptr::null()))?;
            // Bounded waits unless the configuration (file or CEPH_ARGS) set these: a cluster
            // that does not answer fails the open, or the command with an error, instead of
            // hanging it (librados waits forever by default). A value set through this API
            // outranks the file's, so ours go in only where the option still has Ceph's own
            // default (Ceph 16: 300 s to mount, 0 = forever for operations).
            for (k, ceph_default, ours) in [
                (c"client_mount_timeout", 300.0, c"30"),
                (c"rados_mon_op_timeout", 0.0, c"30"),
                (c"rados_osd_op_timeout", 0.0, c"30"),
            ] {
                let mut buf = [0u8; 64];
                let set = ffi::rados_conf_get(cluster, k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) == 0
                    && std::ffi::CStr::from_bytes_until_nul(&buf)
                        .ok()
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .is_some_and(|v| v != ceph_default);
                if !set {
                    check(ffi::rados_conf_set(cluster, k.as_ptr(), ours.as_ptr()))?;
                }
            }
            // Deallocated blocks must read as zeros (we report LBPRZ): never skip a partial
            // discard.
            check(ffi::rados_conf_set(cluster, c"rbd_skip_partial_discard".as_ptr(), c"false".as_ptr()))?;
            check(ffi::rados_connect(cluster))?;
        }
        let pool = cstr(&o.pool)?;
        // SAFETY: connected handle, valid out-pointer.
        check(unsafe { ffi::rados_ioctx_create(cluster, pool.as_ptr(), &mut p.ioctx) })?;
        Ok(p)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: handles created by `connect`, freed once, images closed before (Image holds
        // an Arc of its Pool).
        unsafe {
            if !self.ioctx.is_null() {
                ffi::rados_ioctx_destroy(self.ioctx);
            }
            ffi::rados_shutdown(self.cluster);
        }
    }
}

/// Creates an image of `size` bytes (for tests and tools; `rbd create` does the same).
///
/// # Errors
/// The cluster's error (`EEXIST` when it exists).
pub fn create_image(o: &RbdOptions, size: u64) -> io::Result<()> {
    let p = Pool::connect(o)?;
    let name = cstr(&o.image)?;
    let mut order: c_int = 0;
    // SAFETY: connected pool, valid name and out-pointer.
    check(unsafe { ffi::rbd_create(p.ioctx, name.as_ptr(), size, &mut order) })
}

/// Removes an image.
///
/// # Errors
/// The cluster's error (`ENOENT` when there is none).
pub fn remove_image(o: &RbdOptions) -> io::Result<()> {
    let p = Pool::connect(o)?;
    let name = cstr(&o.image)?;
    // SAFETY: connected pool, valid name.
    check(unsafe { ffi::rbd_remove(p.ioctx, name.as_ptr()) })
}

/// Resizes an image (as `rbd resize` does; the stores that have it open see the change).
///
/// # Errors
/// The cluster's error.
pub fn resize_image(o: &RbdOptions, size: u64) -> io::Result<()> {
    let s = Handle::open(o)?;
    // SAFETY: open image.
    check(unsafe { ffi::rbd_resize(s.image, size) })
}

/// An open image and the pool connection it was opened through (closed in that order).
struct Handle {
    image: ffi::RbdImageT,
    _pool: Pool,
}

// SAFETY: librbd image handles may be used from several threads at once (librbd locks
// internally); closed once in Drop, after every I/O on it completed.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

impl Handle {
    fn open(o: &RbdOptions) -> io::Result<Self> {
        let pool = Pool::connect(o)?;
        let name = cstr(&o.image)?;
        let mut image: ffi::RbdImageT = std::ptr::null_mut();
        // SAFETY: connected pool, valid name and out-pointer; no snapshot.
        check(unsafe { ffi::rbd_open(pool.ioctx, name.as_ptr(), &mut image, std::ptr::null()) })?;
        Ok(Self { image, _pool: pool })
    }

    fn size(&self) -> io::Result<u64> {
        let mut size = 0u64;
        // SAFETY: open image, valid out-pointer.
        check(unsafe { ffi::rbd_get_size(self.image, &mut size) })?;
        Ok(size)
    }

    fn object_size(&self) -> io::Result<u64> {
        // SAFETY: all-zero is a valid rbd_image_info_t (plain integers and arrays).
        let mut info: ffi::RbdImageInfo = unsafe { std::mem::zeroed() };
        // SAFETY: open image; the struct is the C layout, its size passed.
        check(unsafe { ffi::rbd_stat(self.image, &mut info, size_of::<ffi::RbdImageInfo>()) })?;
        Ok(info.obj_size)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: opened by `open`, closed once.
        unsafe {
            ffi::rbd_close(self.image);
        }
    }
}

struct InFlight {
    io: BlockIo,
    iov: [libc::iovec; MAX_SEGS],
    nseg: usize,
    /// A write that must be durable: its flush is still to come.
    flush_after: bool,
}

// SAFETY: the raw pointers in `iov` point into the command's buffer, which `io` owns and which
// does not move; whoever holds the slot (the submitter, then the completion thread) is the
// only one to touch them.
unsafe impl Send for InFlight {}

struct Shared {
    h: Handle,
    slots: Vec<Mutex<Option<InFlight>>>,
    free: ArrayQueue<usize>,
    /// The eventfd librbd signals completions on.
    efd: OwnedFd,
    stop: AtomicBool,
    /// The image's size as last read.
    size: AtomicU64,
}

/// A Ceph RBD image (`rbd:POOL/IMAGE`).
pub struct RbdStore {
    s: Arc<Shared>,
    bs: u32,
    object_size: u64,
    reaper: Option<JoinHandle<()>>,
    /// The image's header watch ([`BlockStore::watch_size`]), once asked for.
    watch: Mutex<Option<Watch>>,
}

/// A watch on the image's header: librbd calls [`on_update`] (on its own thread) when another
/// client changed the image (resized it, say); that wakes the watch thread, which calls the
/// device's notifier (a rescan reads the size, a librbd call that may need a round trip to the
/// cluster: not on librbd's thread, and not on the completion thread, whose I/O would wait).
struct Watch {
    handle: u64,
    /// The callback's argument (freed after the unwatch).
    arg: *mut WatchArg,
    thread: Option<JoinHandle<()>>,
}

// SAFETY: `arg` is only dereferenced by librbd's callback (through the pointer it was given)
// and freed once, by `Drop for RbdStore` after the unwatch; nothing else touches it.
unsafe impl Send for Watch {}

struct WatchArg {
    tx: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

/// librbd's header-update callback: wakes the watch thread.
unsafe extern "C" fn on_update(arg: *mut c_void) {
    // SAFETY: `arg` is the `WatchArg` given to rbd_update_watch, alive until after the unwatch
    // (which waits for callbacks in progress).
    let a = unsafe { &*arg.cast::<WatchArg>() };
    if let Some(tx) = a.tx.lock().as_ref() {
        let _ = tx.send(());
    }
}

impl std::fmt::Debug for RbdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbdStore").field("block_size", &self.bs).field("size", &self.s.size.load(Relaxed)).finish()
    }
}

impl RbdStore {
    /// Connects to the cluster and opens the image.
    ///
    /// # Errors
    /// [`OpenError::Io`] with the cluster's error (no configuration, no such pool or image,
    /// connection refused), [`OpenError::BlockSize`] for a block size other than 512 and 4096.
    pub fn open(o: &RbdOptions) -> Result<Self, OpenError> {
        let path = format!("rbd:{}/{}", o.pool, o.image);
        let e = |source: io::Error| OpenError::Io { path: path.clone(), source };
        if o.block_size != 512 && o.block_size != 4096 {
            return Err(OpenError::BlockSize(o.block_size));
        }
        let h = Handle::open(o).map_err(e)?;
        let size = h.size().map_err(e)?;
        let object_size = h.object_size().map_err(e)?;
        // SAFETY: plain eventfd creation.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(e(io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor we own.
        let efd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: open image and a live eventfd (kept in `Shared` for as long as the image).
        check(unsafe { ffi::rbd_set_image_notification(h.image, efd.as_raw_fd(), ffi::EVENT_TYPE_EVENTFD) })
            .map_err(e)?;
        let free = ArrayQueue::new(SLOTS);
        for i in 0..SLOTS {
            let _ = free.push(i);
        }
        let s = Arc::new(Shared {
            h,
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
            free,
            efd,
            stop: AtomicBool::new(false),
            size: AtomicU64::new(size),
        });
        let t = s.clone();
        let reaper = std::thread::Builder::new().name("scst-rbd".into()).spawn(move || reap(&t)).map_err(e)?;
        Ok(Self { s, bs: o.block_size, object_size, reaper: Some(reaper), watch: Mutex::new(None) })
    }
}

impl Drop for RbdStore {
    fn drop(&mut self) {
        if let Some(mut w) = self.watch.lock().take() {
            // SAFETY: the handle rbd_update_watch gave; after this returns librbd calls
            // `on_update` no more.
            unsafe { ffi::rbd_update_unwatch(self.s.h.image, w.handle) };
            // SAFETY: made by `Box::into_raw` in `watch_size`, freed once, here, after the
            // unwatch (nobody else holds it).
            let arg = unsafe { Box::from_raw(w.arg) };
            // The watch thread ends with its channel.
            arg.tx.lock().take();
            if let Some(t) = w.thread.take() {
                // The last reference to the device may be dropped by the watch thread itself
                // (it held the device for a rescan): it cannot wait for itself.
                if t.thread().id() != std::thread::current().id() {
                    let _ = t.join();
                }
            }
        }
        // Every I/O holds its command, which holds the device and so this store: none is in
        // flight now. Stop the completion thread.
        self.s.stop.store(true, Relaxed);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes to our eventfd.
        unsafe {
            libc::write(self.s.efd.as_raw_fd(), one.as_ptr().cast(), 8);
        }
        if let Some(t) = self.reaper.take() {
            let _ = t.join();
        }
    }
}

/// The completion thread: waits on the eventfd and completes what librbd finished.
fn reap(s: &Shared) {
    let mut comps: [ffi::RbdCompletionT; POLL_BATCH] = [std::ptr::null_mut(); POLL_BATCH];
    let mut done: Vec<(usize, isize)> = Vec::with_capacity(POLL_BATCH);
    loop {
        let mut v = [0u8; 8];
        // SAFETY: reading 8 bytes from our eventfd into a local buffer.
        let r = unsafe { libc::read(s.efd.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
        if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        loop {
            // SAFETY: open image; `comps` has room for POLL_BATCH pointers.
            let n = unsafe { ffi::rbd_poll_io_events(s.h.image, comps.as_mut_ptr(), POLL_BATCH as c_int) };
            if n <= 0 {
                break;
            }
            for &c in &comps[..n as usize] {
                // SAFETY: a completion librbd handed back: its argument is ours (a slot index or
                // a waiter) and it is released once, here.
                let (arg, ret) = unsafe {
                    let arg = ffi::rbd_aio_get_arg(c) as usize;
                    let ret = ffi::rbd_aio_get_return_value(c);
                    ffi::rbd_aio_release(c);
                    (arg, ret)
                };
                if arg & WAITER_TAG != 0 {
                    // SAFETY: `wait_io` made this pointer with `Arc::into_raw` for this one
                    // completion; taking it back here drops that reference.
                    let w = unsafe { Arc::from_raw((arg & !WAITER_TAG) as *const Waiter) };
                    *w.ret.lock() = Some(ret);
                    w.cv.notify_one();
                } else {
                    done.push((arg >> 1, ret));
                }
            }
            let batch = scst::batch::begin();
            for (idx, ret) in done.drain(..) {
                finish(s, idx, ret);
            }
            drop(batch);
        }
        if s.stop.load(Relaxed) {
            return;
        }
    }
}

/// One finished librbd I/O: a durable write goes on to its flush, anything else completes.
fn finish(s: &Shared, idx: usize, ret: isize) {
    let Some(slot) = s.slots.get(idx) else { return };
    let mut g = slot.lock();
    let Some(f) = g.as_mut() else { return };
    if ret >= 0 && f.flush_after {
        f.flush_after = false;
        drop(g);
        if let Err(e) = start(s, idx, true) {
            complete(s, idx, Err(e));
        }
        return;
    }
    drop(g);
    complete(s, idx, if ret < 0 { Err(err(ret)) } else { Ok(()) });
}

fn complete(s: &Shared, idx: usize, r: io::Result<()>) {
    let Some(f) = s.slots[idx].lock().take() else { return };
    let _ = s.free.push(idx);
    f.io.complete(r);
}

/// Starts the slot's I/O (or, with `flush`, a flush for it) in librbd.
fn start(s: &Shared, idx: usize, flush: bool) -> io::Result<()> {
    let g = s.slots[idx].lock();
    let f = g.as_ref().expect("a started slot is filled");
    let mut c: ffi::RbdCompletionT = std::ptr::null_mut();
    // SAFETY: valid out-pointer; the argument is the slot index (no callback: completions come
    // through the eventfd).
    check(unsafe { ffi::rbd_aio_create_completion((idx << 1) as *mut c_void, None, &mut c) })?;
    let img = s.h.image;
    let (iov, n, off) = (f.iov.as_ptr(), f.nseg as c_int, f.io.offset());
    // SAFETY: open image; the iovecs live in the slot and point into the command's buffer,
    // both unmoved until this completion is reaped (the slot is not freed before).
    let r = unsafe {
        match (f.io.kind(), flush) {
            (IoKind::Flush, _) | (_, true) => ffi::rbd_aio_flush(img, c),
            (IoKind::Read, false) => ffi::rbd_aio_readv(img, iov, n, off, c),
            (IoKind::Write, false) => ffi::rbd_aio_writev(img, iov, n, off, c),
        }
    };
    if r < 0 {
        // SAFETY: librbd did not take the completion.
        unsafe { ffi::rbd_aio_release(c) };
        return Err(err(r as isize));
    }
    AIO_SUBMITTED.fetch_add(1, Relaxed);
    Ok(())
}

impl RbdStore {
    /// One librbd read or write on `iov` from `off`, waited for: the completion comes through
    /// the eventfd like the asynchronous path's, and the completion thread wakes this caller.
    fn wait_io(&self, write: bool, off: u64, iov: &[libc::iovec]) -> io::Result<isize> {
        let w = Arc::new(Waiter::default());
        let arg = Arc::into_raw(w.clone()) as usize;
        debug_assert_eq!(arg & WAITER_TAG, 0);
        let mut c: ffi::RbdCompletionT = std::ptr::null_mut();
        let tagged = (arg | WAITER_TAG) as *mut c_void;
        // SAFETY: valid out-pointer; the argument is a waiter reference the completion thread
        // takes back.
        let created = unsafe { ffi::rbd_aio_create_completion(tagged, None, &mut c) };
        if let Err(e) = check(created) {
            // SAFETY: the reference made above, never handed to librbd.
            drop(unsafe { Arc::from_raw(arg as *const Waiter) });
            return Err(e);
        }
        let (img, n) = (self.s.h.image, iov.len() as c_int);
        SYNC_CALLS.fetch_add(1, Relaxed);
        // SAFETY: open image; the iovecs and the memory they point to are the caller's and
        // stay valid until this function returns, which is after the completion was reaped.
        let r = unsafe {
            if write {
                ffi::rbd_aio_writev(img, iov.as_ptr(), n, off, c)
            } else {
                ffi::rbd_aio_readv(img, iov.as_ptr(), n, off, c)
            }
        };
        if r < 0 {
            // SAFETY: librbd took neither the completion nor the waiter reference.
            unsafe {
                ffi::rbd_aio_release(c);
                drop(Arc::from_raw(arg as *const Waiter));
            }
            return Err(err(r as isize));
        }
        let mut g = w.ret.lock();
        loop {
            if let Some(ret) = *g {
                return if ret < 0 { Err(err(ret)) } else { Ok(ret) };
            }
            w.cv.wait(&mut g);
        }
    }
}

impl RbdStore {
    /// Reads or writes `segs` (valid for the whole call) from `off`, up to MAX_SEGS segments per
    /// librbd call (a command's buffer has no more: one call); a short read is an error.
    fn wait_segments(&self, write: bool, mut off: u64, mut segs: impl Iterator<Item = libc::iovec>) -> io::Result<()> {
        let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_SEGS];
        loop {
            let (mut k, mut len) = (0, 0);
            for v in segs.by_ref().take(MAX_SEGS) {
                len += v.iov_len;
                iov[k] = v;
                k += 1;
            }
            if k == 0 {
                return Ok(());
            }
            let done = self.wait_io(write, off, &iov[..k])? as usize;
            if !write && done < len {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            off += len as u64;
        }
    }
}

impl BlockStore for RbdStore {
    fn geometry(&self) -> Geometry {
        Geometry { block_size: self.bs, blocks: self.s.size.load(Relaxed) / u64::from(self.bs) }
    }

    fn caps(&self) -> StoreCaps {
        StoreCaps { may_block: true, thin: true, async_io: true, ..StoreCaps::default() }
    }

    fn product(&self) -> &str {
        "RBD"
    }

    fn read_at(&self, off: u64, bufs: &mut [IoSliceMut<'_>]) -> io::Result<()> {
        self.wait_segments(
            false,
            off,
            bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }),
        )
    }

    fn write_at(&self, off: u64, bufs: &[IoSlice<'_>], fua: bool) -> io::Result<()> {
        // librbd only reads through these pointers.
        let segs = bufs.iter().map(|b| libc::iovec { iov_base: b.as_ptr().cast_mut().cast(), iov_len: b.len() });
        self.wait_segments(true, off, segs)?;
        if fua { self.flush() } else { Ok(()) }
    }

    fn flush(&self) -> io::Result<()> {
        // SAFETY: open image.
        check(unsafe { ffi::rbd_flush(self.s.h.image) })
    }

    fn unmap(&self, off: u64, len: u64) -> io::Result<()> {
        // SAFETY: open image.
        check(unsafe { ffi::rbd_discard(self.s.h.image, off, len) })
    }

    fn write_zeroes(&self, off: u64, len: u64, fua: bool) -> io::Result<()> {
        let mut done = 0;
        while done < len {
            // One call per 1 GiB at most (the length is a size_t, the return an ssize_t).
            let n = (len - done).min(1 << 30);
            // SAFETY: open image.
            let r = unsafe { ffi::rbd_write_zeroes(self.s.h.image, off + done, n as usize, 0, 0) };
            if r < 0 {
                return Err(err(r));
            }
            done += n;
        }
        if fua { self.flush() } else { Ok(()) }
    }

    fn mapped(&self, off: u64, len: u64) -> io::Result<(bool, u64)> {
        struct Run {
            off: u64,
            end: u64,
            /// The first extent at or after `off`: its start, end and whether it has data.
            first: Option<(u64, u64, bool)>,
        }
        unsafe extern "C" fn cb(o: u64, l: usize, exists: c_int, arg: *mut c_void) -> c_int {
            // SAFETY: `arg` is the `Run` below, alive for the call.
            let run = unsafe { &mut *(arg as *mut Run) };
            let (s, e) = (o.max(run.off), (o + l as u64).min(run.end));
            if s >= e {
                return 0;
            }
            match &mut run.first {
                None => run.first = Some((s, e, exists != 0)),
                Some((_, end, ex)) if *end == s && *ex == (exists != 0) => *end = e,
                Some(_) => return -libc::ECANCELED,
            }
            0
        }
        let mut run = Run { off, end: off + len, first: None };
        // SAFETY: open image; the callback's argument is `run`, alive for the call.
        let r = unsafe {
            ffi::rbd_diff_iterate2(
                self.s.h.image,
                std::ptr::null(),
                off,
                len,
                1,
                0,
                Some(cb),
                (&mut run as *mut Run).cast(),
            )
        };
        if r < 0 && r != -libc::ECANCELED {
            return Err(err(r as isize));
        }
        let bs = u64::from(self.bs);
        let round = |n: u64| (n / bs * bs).max(bs).min(len);
        Ok(match run.first {
            // Nothing allocated in the range.
            None => (false, len),
            Some((s, _, _)) if s > off => (false, round(s - off)),
            Some((_, e, exists)) => (exists, round(e - off)),
        })
    }

    fn submit(&self, io: BlockIo) -> Result<(), BlockIo> {
        let Some(idx) = self.s.free.pop() else { return Err(io) };
        {
            let mut slot = self.s.slots[idx].lock();
            let iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_SEGS];
            let flush_after = io.kind() == IoKind::Write && io.write_through();
            let f = slot.insert(InFlight { io, iov, nseg: 0, flush_after });
            if f.io.kind() != IoKind::Flush {
                f.nseg = f.io.segments(&mut f.iov);
            }
        }
        if let Err(e) = start(&self.s, idx, false) {
            let io = self.s.slots[idx].lock().take().expect("slot filled above").io;
            let _ = self.s.free.push(idx);
            tracing::debug!("rbd submission failed: {e}");
            return Err(io);
        }
        Ok(())
    }

    fn compare_and_write(
        &self,
        off: u64,
        compare: &[IoSlice<'_>],
        data: &[IoSlice<'_>],
        fua: bool,
    ) -> Option<io::Result<Option<u64>>> {
        let len = compare.iter().map(|s| s.len() as u64).sum::<u64>();
        if len == 0 || (self.object_size > 0 && off / self.object_size != (off + len - 1) / self.object_size) {
            // librbd compares within one object only: the core does it under its range lock.
            return None;
        }
        // librbd takes contiguous buffers (COMPARE AND WRITE is rare: an ATS heartbeat, a lock).
        let flat = |v: &[IoSlice<'_>]| {
            let mut out = Vec::with_capacity(len as usize);
            v.iter().for_each(|s| out.extend_from_slice(s));
            out
        };
        let (compare, data) = (flat(compare), flat(data));
        if data.len() != compare.len() {
            return None;
        }
        let mut mismatch = 0u64;
        // SAFETY: open image; both buffers valid for `len` bytes.
        let r = unsafe {
            ffi::rbd_compare_and_write(
                self.s.h.image,
                off,
                compare.len(),
                compare.as_ptr().cast(),
                data.as_ptr().cast(),
                &mut mismatch,
                0,
            )
        };
        if r == -(libc::EILSEQ as isize) {
            // librbd gives the offset of the first differing byte from the start of the range
            // (tests/rbd.rs checks it).
            return Some(Ok(Some(mismatch.min(len - 1))));
        }
        if r == -(libc::EINVAL as isize) {
            // A range librbd does not take for a compare-and-write (it refuses some lengths and
            // alignments): nothing was done, so the core's comparison goes on.
            tracing::debug!(off, len, "rbd_compare_and_write refused the range: compared by the core");
            return None;
        }
        if r < 0 {
            return Some(Err(err(r)));
        }
        Some(if fua { self.flush().map(|()| None) } else { Ok(None) })
    }

    fn refresh(&self) -> io::Result<Geometry> {
        let n = self.s.h.size()?;
        self.s.size.store(n, Relaxed);
        Ok(Geometry { block_size: self.bs, blocks: n / u64::from(self.bs) })
    }

    fn watch_size(&self, notify: scst::SizeNotify) -> bool {
        let mut w = self.watch.lock();
        if w.is_some() {
            return false;
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("scst-rbd-watch".into()).spawn(move || {
            while rx.recv().is_ok() {
                // Several updates at once need one rescan.
                while rx.try_recv().is_ok() {}
                notify();
            }
        });
        let Ok(thread) = thread else { return false };
        let arg = Box::into_raw(Box::new(WatchArg { tx: Mutex::new(Some(tx)) }));
        let mut handle = 0u64;
        // SAFETY: open image, a valid out-pointer, and an argument that lives until after the
        // unwatch in `Drop`.
        let r = unsafe { ffi::rbd_update_watch(self.s.h.image, &mut handle, Some(on_update), arg.cast()) };
        if r < 0 {
            tracing::warn!("rbd_update_watch: {}; a resize shows only on a rescan", err(r as isize));
            // SAFETY: librbd did not take it; made above by `Box::into_raw`.
            drop(unsafe { Box::from_raw(arg) });
            let _ = thread.join();
            return false;
        }
        *w = Some(Watch { handle, arg, thread: Some(thread) });
        true
    }
}
