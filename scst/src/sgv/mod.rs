//! The SGV allocator: size-classed, page-aligned scatter-gather buffers reused across commands.
//!
//! A buffer of `len` bytes is made of chunks from power-of-two size classes between 4 KiB and
//! [`SgvConfig::max_chunk`]: one chunk when `len` fits, else as many full-size chunks as needed plus
//! one tail chunk. Freed chunks go back to their class's free list and serve the next command of a
//! similar size without touching the system allocator, so a target in steady state allocates
//! nothing per command.
//!
//! All chunks count against one memory limit (bytes held from the system, in use or cached).
//! When an allocation would exceed it, cached chunks of other classes are released first; if that
//! is not enough the allocation fails and the command gets BUSY, never an out-of-memory abort.

mod raw;

use std::io::{IoSlice, IoSliceMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use parking_lot::Mutex;
use raw::{ALIGN, Chunk};

/// Most chunks one buffer can hold (64 MiB with the default 1 MiB chunks).
pub const MAX_SEGS: usize = 64;

const MIN_CLASS_SHIFT: u32 = 12; // 4 KiB
const MAX_CLASSES: usize = 12; // 4 KiB ..= 8 MiB

/// Pool configuration.
#[derive(Clone, Copy, Debug)]
pub struct SgvConfig {
    /// Largest chunk (a power of two between 4 KiB and 8 MiB). Default 1 MiB.
    pub max_chunk: usize,
    /// Limit on bytes held from the system allocator (in use plus cached). Default 1 GiB.
    pub mem_limit: usize,
}

impl Default for SgvConfig {
    fn default() -> Self {
        Self { max_chunk: 1 << 20, mem_limit: 1 << 30 }
    }
}

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// The memory limit is reached even after dropping every cached chunk (answer BUSY).
    #[error("SGV memory limit reached")]
    LimitReached,
    /// The request is larger than the pool can ever serve (`MAX_SEGS * max_chunk`).
    #[error("buffer of {0} bytes exceeds the largest SGV buffer")]
    TooLarge(usize),
    /// The system allocator refused.
    #[error("system allocator failed")]
    SystemOom,
}

/// Counters of a pool (monotonic except the byte gauges).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SgvStats {
    /// Chunks served from a free list.
    pub hits: u64,
    /// Chunks that had to come from the system allocator.
    pub misses: u64,
    /// Allocations refused because of the memory limit.
    pub limit_failures: u64,
    /// Cached chunks released to make room.
    pub purged: u64,
    /// Bytes currently held from the system (in use + cached).
    pub bytes_held: usize,
    /// Bytes currently in buffers handed out.
    pub bytes_in_use: usize,
}

/// Told when an [`SgvPool`] gives a chunk's memory back to the system allocator, so that a
/// fabric that registered the chunk with a device (an IOMMU mapping, an RDMA memory region)
/// forgets it before the addresses can name other memory. Chunks are registered lazily by the
/// fabric (the first time a buffer's segment reaches it); the pool never moves a live chunk.
pub trait ChunkObserver: Send + Sync {
    /// `addr..addr + len` (a whole chunk, page aligned) is freed right after this returns. Runs
    /// on the freeing thread (one that drops a buffer, or allocates and must make room), with
    /// none of the pool's locks held; no buffer holds the chunk.
    fn released(&self, addr: usize, len: usize);
}

struct Inner {
    /// Those told of released chunks ([`SgvPool::observe`]); read only when a chunk goes back
    /// to the system (the memory limit, [`SgvPool::shrink`]), never per command.
    observers: parking_lot::RwLock<Vec<Arc<dyn ChunkObserver>>>,
    classes: Vec<Mutex<Vec<Chunk>>>,
    max_chunk: usize,
    limit: usize,
    held: AtomicUsize,
    in_use: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
    limit_failures: AtomicU64,
    purged: AtomicU64,
}

/// A pool of scatter-gather buffers. Cheap to clone (shared).
#[derive(Clone)]
pub struct SgvPool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SgvPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SgvPool").field("stats", &self.stats()).finish()
    }
}

fn class_of(len: usize) -> usize {
    let len = len.max(ALIGN).next_power_of_two();
    (len.trailing_zeros() - MIN_CLASS_SHIFT) as usize
}

fn class_size(class: usize) -> usize {
    1 << (class as u32 + MIN_CLASS_SHIFT)
}

impl SgvPool {
    /// Creates a pool.
    ///
    /// # Panics
    /// If `max_chunk` is not a power of two between 4 KiB and 8 MiB.
    pub fn new(cfg: SgvConfig) -> Self {
        assert!(
            cfg.max_chunk.is_power_of_two() && (ALIGN..=ALIGN << (MAX_CLASSES - 1)).contains(&cfg.max_chunk),
            "max_chunk must be a power of two in 4 KiB..=8 MiB"
        );
        let nclasses = class_of(cfg.max_chunk) + 1;
        Self {
            inner: Arc::new(Inner {
                observers: parking_lot::RwLock::new(Vec::new()),
                classes: (0..nclasses).map(|_| Mutex::new(Vec::new())).collect(),
                max_chunk: cfg.max_chunk,
                limit: cfg.mem_limit,
                held: AtomicUsize::new(0),
                in_use: AtomicUsize::new(0),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                limit_failures: AtomicU64::new(0),
                purged: AtomicU64::new(0),
            }),
        }
    }

    /// Largest buffer this pool can serve.
    pub fn max_len(&self) -> usize {
        MAX_SEGS * self.inner.max_chunk
    }

    /// Allocates a buffer of exactly `len` logical bytes (its chunks may be larger). Chunks are
    /// reused, so their contents are arbitrary: callers must write before they read.
    ///
    /// # Errors
    /// See [`AllocError`].
    pub fn alloc(&self, len: usize) -> Result<SgBuf, AllocError> {
        if len > self.max_len() {
            return Err(AllocError::TooLarge(len));
        }
        let mut buf = SgBuf {
            segs: std::mem::ManuallyDrop::new([const { None }; MAX_SEGS]),
            nsegs: 0,
            len,
            pool: Some(self.inner.clone()),
        };
        let max = self.inner.max_chunk;
        let mut left = len;
        while left > 0 {
            let want = left.min(max);
            let chunk = self.inner.get(class_of(want))?; // on error `buf` drops and returns its chunks
            left -= want;
            buf.segs[buf.nsegs as usize] = Some(chunk);
            buf.nsegs += 1;
        }
        Ok(buf)
    }

    /// Current counters.
    pub fn stats(&self) -> SgvStats {
        let i = &self.inner;
        SgvStats {
            hits: i.hits.load(Relaxed),
            misses: i.misses.load(Relaxed),
            limit_failures: i.limit_failures.load(Relaxed),
            purged: i.purged.load(Relaxed),
            bytes_held: i.held.load(Relaxed),
            bytes_in_use: i.in_use.load(Relaxed),
        }
    }

    /// Releases every cached chunk to the system allocator.
    pub fn shrink(&self) {
        self.inner.purge(usize::MAX, usize::MAX);
    }

    /// Tells `o` of every chunk this pool gives back to the system from now on
    /// ([`ChunkObserver`]).
    pub fn observe(&self, o: Arc<dyn ChunkObserver>) {
        self.inner.observers.write().push(o);
    }
}

impl Inner {
    fn get(&self, class: usize) -> Result<Chunk, AllocError> {
        let size = class_size(class);
        if let Some(c) = self.classes[class].lock().pop() {
            self.hits.fetch_add(1, Relaxed);
            self.in_use.fetch_add(size, Relaxed);
            return Ok(c);
        }
        self.misses.fetch_add(1, Relaxed);
        if self.held.fetch_add(size, Relaxed) + size > self.limit {
            self.purge(size, class);
            if self.held.load(Relaxed) > self.limit {
                self.held.fetch_sub(size, Relaxed);
                self.limit_failures.fetch_add(1, Relaxed);
                return Err(AllocError::LimitReached);
            }
        }
        match Chunk::new(size) {
            Some(c) => {
                self.in_use.fetch_add(size, Relaxed);
                Ok(c)
            }
            None => {
                self.held.fetch_sub(size, Relaxed);
                Err(AllocError::SystemOom)
            }
        }
    }

    /// Frees cached chunks (of any class but `keep`) until `want` bytes were released.
    fn purge(&self, want: usize, keep: usize) {
        let mut freed = 0;
        for (class, list) in self.classes.iter().enumerate().rev() {
            if class == keep {
                continue;
            }
            while freed < want {
                // One chunk at a time, the list's lock not held while the observers hear of it
                // (and no list of the freed chunks to allocate on this allocation path).
                let Some(c) = list.lock().pop() else { break };
                freed += c.len();
                self.held.fetch_sub(c.len(), Relaxed);
                self.purged.fetch_add(1, Relaxed);
                self.release(c);
            }
            if freed >= want {
                break;
            }
        }
    }

    /// Gives a chunk back to the system, telling the observers first.
    fn release(&self, c: Chunk) {
        for o in self.observers.read().iter() {
            o.released(c.as_slice().as_ptr() as usize, c.len());
        }
        drop(c);
    }

    fn put(&self, c: Chunk) {
        let size = c.len();
        self.in_use.fetch_sub(size, Relaxed);
        if self.held.load(Relaxed) > self.limit {
            self.held.fetch_sub(size, Relaxed);
            self.release(c);
            return;
        }
        self.classes[class_of(size)].lock().push(c);
    }
}

/// A scatter-gather buffer from an [`SgvPool`]; dropping it returns its chunks to the pool.
pub struct SgBuf {
    /// The first `nsegs` hold chunks, the rest are `None`. Not dropped as a whole: `Drop` takes
    /// the `nsegs` chunks, and dropping all 64 slots was ~400 instructions per command.
    segs: std::mem::ManuallyDrop<[Option<Chunk>; MAX_SEGS]>,
    nsegs: u8,
    len: usize,
    pool: Option<Arc<Inner>>,
}

impl std::fmt::Debug for SgBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SgBuf").field("len", &self.len).field("segs", &self.nsegs).finish()
    }
}

impl Drop for SgBuf {
    fn drop(&mut self) {
        let n = self.nsegs as usize;
        for c in self.segs[..n].iter_mut().filter_map(Option::take) {
            match &self.pool {
                Some(pool) => pool.put(c),
                None => drop(c),
            }
        }
    }
}

impl SgBuf {
    /// Logical length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shortens the logical length (never grows it).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The segments, each cut to the logical length.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut left = self.len;
        self.segs[..self.nsegs as usize].iter().flatten().map(move |c| {
            let n = left.min(c.len());
            left -= n;
            &c.as_slice()[..n]
        })
    }

    /// Calls `f` on each piece of `[off, off + len)`, in order, as mutable slices.
    ///
    /// # Panics
    /// If the range is outside the buffer.
    pub fn for_each_mut(&mut self, off: usize, len: usize, mut f: impl FnMut(&mut [u8])) {
        assert!(off + len <= self.len, "range {off}+{len} outside buffer of {}", self.len);
        let (mut off, mut left) = (off, len);
        for c in self.segs[..self.nsegs as usize].iter_mut().flatten() {
            if left == 0 {
                break;
            }
            let s = c.as_mut_slice();
            if off >= s.len() {
                off -= s.len();
                continue;
            }
            let n = left.min(s.len() - off);
            f(&mut s[off..off + n]);
            off = 0;
            left -= n;
        }
    }

    /// Calls `f` on each piece of `[off, off + len)`, in order.
    ///
    /// # Panics
    /// If the range is outside the buffer.
    pub fn for_each(&self, off: usize, len: usize, mut f: impl FnMut(&[u8])) {
        assert!(off + len <= self.len, "range {off}+{len} outside buffer of {}", self.len);
        let (mut off, mut left) = (off, len);
        for c in self.segs[..self.nsegs as usize].iter().flatten() {
            if left == 0 {
                break;
            }
            let s = c.as_slice();
            if off >= s.len() {
                off -= s.len();
                continue;
            }
            let n = left.min(s.len() - off);
            f(&s[off..off + n]);
            off = 0;
            left -= n;
        }
    }

    /// Copies `src` into the buffer at `off`.
    ///
    /// # Panics
    /// If the range is outside the buffer.
    pub fn write_at(&mut self, off: usize, src: &[u8]) {
        let mut done = 0;
        self.for_each_mut(off, src.len(), |d| {
            d.copy_from_slice(&src[done..done + d.len()]);
            done += d.len();
        });
    }

    /// Copies from the buffer at `off` into `dst`.
    ///
    /// # Panics
    /// If the range is outside the buffer.
    pub fn read_at(&self, off: usize, dst: &mut [u8]) {
        let mut done = 0;
        self.for_each(off, dst.len(), |s| {
            dst[done..done + s.len()].copy_from_slice(s);
            done += s.len();
        });
    }

    /// Fills `[off, off + len)` with `byte`.
    pub fn fill(&mut self, off: usize, len: usize, byte: u8) {
        self.for_each_mut(off, len, |d| d.fill(byte));
    }

    /// The whole logical buffer as one slice, when it is a single chunk (always the case up to
    /// the pool's `max_chunk`).
    pub fn contiguous(&self) -> Option<&[u8]> {
        match self.nsegs {
            0 => Some(&[]),
            1 => self.segs[0].as_ref().map(|c| &c.as_slice()[..self.len]),
            _ => None,
        }
    }

    /// The whole logical buffer as one mutable slice, when it is a single chunk.
    pub fn contiguous_mut(&mut self) -> Option<&mut [u8]> {
        let len = self.len;
        match self.nsegs {
            0 => Some(&mut []),
            1 => self.segs[0].as_mut().map(|c| &mut c.as_mut_slice()[..len]),
            _ => None,
        }
    }

    /// Fills `out` with slices covering `[off, off + len)` for vectored writes (sendmsg,
    /// pwritev) and returns how many it used.
    ///
    /// # Panics
    /// If the range is outside the buffer or `out` is too short (`MAX_SEGS` always suffices).
    pub fn io_slices<'a>(&'a self, off: usize, len: usize, out: &mut [IoSlice<'a>]) -> usize {
        assert!(off + len <= self.len, "range {off}+{len} outside buffer of {}", self.len);
        let (mut off, mut left, mut n) = (off, len, 0);
        for c in self.segs[..self.nsegs as usize].iter().flatten() {
            if left == 0 {
                break;
            }
            let s = c.as_slice();
            if off >= s.len() {
                off -= s.len();
                continue;
            }
            let k = left.min(s.len() - off);
            out[n] = IoSlice::new(&s[off..off + k]);
            n += 1;
            off = 0;
            left -= k;
        }
        n
    }

    /// Fills `out` with mutable slices covering `[off, off + len)` for vectored reads (readv,
    /// preadv) and returns how many it used.
    ///
    /// # Panics
    /// If the range is outside the buffer or `out` is too short (`MAX_SEGS` always suffices).
    pub fn io_slices_mut<'a>(&'a mut self, off: usize, len: usize, out: &mut [IoSliceMut<'a>]) -> usize {
        assert!(off + len <= self.len, "range {off}+{len} outside buffer of {}", self.len);
        let (mut off, mut left, mut n) = (off, len, 0);
        for c in self.segs[..self.nsegs as usize].iter_mut().flatten() {
            if left == 0 {
                break;
            }
            let s = c.as_mut_slice();
            if off >= s.len() {
                off -= s.len();
                continue;
            }
            let k = left.min(s.len() - off);
            out[n] = IoSliceMut::new(&mut s[off..off + k]);
            n += 1;
            off = 0;
            left -= k;
        }
        n
    }
}

/// 64 KiB of zeros, page-aligned (usable for `O_DIRECT` writes).
#[repr(C, align(4096))]
struct ZeroPage([u8; 65536]);

static ZERO_PAGE: ZeroPage = ZeroPage([0; 65536]);

/// A shared, page-aligned, read-only 64 KiB of zeros: NULLIO Data-In and WRITE SAME of zeros are
/// sent or written from it without touching memory.
pub fn zeros() -> &'static [u8] {
    &ZERO_PAGE.0
}

/// A fresh array of empty `IoSlice`s to pass to [`SgBuf::io_slices`].
pub fn empty_io_slices<'a>() -> [IoSlice<'a>; MAX_SEGS] {
    [(); MAX_SEGS].map(|()| IoSlice::new(&[]))
}

/// A fresh array of empty `IoSliceMut`s to pass to [`SgBuf::io_slices_mut`].
pub fn empty_io_slices_mut<'a>() -> [IoSliceMut<'a>; MAX_SEGS] {
    [(); MAX_SEGS].map(|()| IoSliceMut::new(&mut []))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(limit: usize) -> SgvPool {
        SgvPool::new(SgvConfig { max_chunk: 64 << 10, mem_limit: limit })
    }

    #[derive(Default)]
    struct Seen(Mutex<Vec<(usize, usize)>>);
    impl ChunkObserver for Seen {
        fn released(&self, addr: usize, len: usize) {
            self.0.lock().push((addr, len));
        }
    }

    #[test]
    fn observers_hear_of_every_chunk_given_back_and_of_no_reused_one() {
        let p = pool(128 << 10);
        let seen = Arc::new(Seen::default());
        p.observe(seen.clone());
        let b = p.alloc(4096).unwrap();
        let addr = b.segments().next().unwrap().as_ptr() as usize;
        drop(b);
        // Reused from the free list: nothing released.
        let b = p.alloc(4096).unwrap();
        assert_eq!(b.segments().next().unwrap().as_ptr() as usize, addr);
        drop(b);
        assert!(seen.0.lock().is_empty());
        // 128 KiB more needs the cached 4 KiB chunk's room under the limit: it is freed, and told.
        let big = p.alloc(128 << 10).unwrap();
        assert_eq!(*seen.0.lock(), vec![(addr, 4096)]);
        drop(big);
        p.shrink();
        let all = seen.0.lock().clone();
        assert_eq!(all.len(), 3, "then the big buffer's two 64 KiB chunks: {all:?}");
        assert!(all[1..].iter().all(|&(a, l)| l == 64 << 10 && a % 4096 == 0));
    }

    #[test]
    fn reuse_counts_hits() {
        let p = pool(1 << 20);
        drop(p.alloc(5000).unwrap());
        let b = p.alloc(8192).unwrap();
        assert_eq!(b.len(), 8192);
        let s = p.stats();
        assert_eq!((s.hits, s.misses), (1, 1), "8 KiB class reused");
        assert_eq!(s.bytes_in_use, 8192);
        drop(b);
        assert_eq!(p.stats().bytes_in_use, 0);
        assert_eq!(p.stats().bytes_held, 8192);
    }

    #[test]
    fn multi_segment_layout_and_copies() {
        let p = pool(1 << 20);
        let mut b = p.alloc(150 << 10).unwrap();
        let lens: Vec<_> = b.segments().map(<[u8]>::len).collect();
        assert_eq!(lens, vec![64 << 10, 64 << 10, 22 << 10]);
        assert!(b.contiguous().is_none());
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        b.write_at(60_000, &data);
        let mut back = vec![0; 10_000];
        b.read_at(60_000, &mut back);
        assert_eq!(back, data);
        let mut iov = empty_io_slices();
        let n = b.io_slices(60_000, 10_000, &mut iov);
        assert_eq!(n, 2);
        assert_eq!(iov[0].len() + iov[1].len(), 10_000);
        assert_eq!(iov[1][0], data[65536 - 60_000]);
    }

    #[test]
    fn limit_purges_cache_then_fails() {
        let p = pool(128 << 10);
        drop(p.alloc(64 << 10).unwrap()); // cached 64 KiB
        let a = p.alloc(32 << 10).unwrap();
        let b = p.alloc(32 << 10).unwrap();
        // 64 KiB cached + 64 KiB in use = limit; a third 32 KiB purges the cached 64 KiB chunk.
        let c = p.alloc(32 << 10).unwrap();
        assert_eq!(p.stats().purged, 1);
        let d = p.alloc(32 << 10).unwrap();
        assert_eq!(p.alloc(4096).unwrap_err(), AllocError::LimitReached);
        assert_eq!(p.stats().limit_failures, 1);
        drop((a, b, c, d));
        assert!(p.alloc(4096).is_ok(), "freed chunks make room again");
        assert!(matches!(p.alloc((MAX_SEGS + 1) * (64 << 10)), Err(AllocError::TooLarge(_))));
    }

    #[test]
    fn failed_multi_chunk_alloc_returns_what_it_took() {
        let p = pool(100 << 10);
        assert_eq!(p.alloc(128 << 10).unwrap_err(), AllocError::LimitReached);
        assert_eq!(p.stats().bytes_in_use, 0);
    }
}
