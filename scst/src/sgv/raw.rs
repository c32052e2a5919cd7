//! Page-aligned chunks: the only `unsafe` code in the core.
//!
//! Chunks of [`MMAP_MIN`] bytes or more (every size class the pool uses) are mapped from the
//! kernel directly, so that a chunk the pool frees (when trimming to its memory limit) goes back
//! to the system at once. From the allocator they would stay in its per-thread arenas, which
//! fragment as the pool trades one size class for another (glibc also raises its mmap
//! threshold once mapped blocks are freed): a soak with 32 MiB of buffer memory grew the target
//! to 94 MB of arenas. Mapping costs a system call per chunk the pool creates, which happens
//! only until the pool is warm, or under memory pressure.

#![allow(unsafe_code)]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;

/// Alignment of every chunk: a page, as O_DIRECT and RDMA registration want.
pub(crate) const ALIGN: usize = 4096;
/// Chunks at least this long are mapped with `mmap` (shorter ones, which the pool never makes,
/// come from the global allocator).
const MMAP_MIN: usize = ALIGN;

/// An owned, page-aligned, zero-initialised-on-first-allocation block of `len` bytes.
///
/// Invariants: `ptr` was returned by the global allocator for `Layout(len, ALIGN)` when
/// `len < MMAP_MIN`, else by an anonymous private `mmap` of `len` bytes; it is owned
/// exclusively by this value, and `len > 0`.
pub(crate) struct Chunk {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Chunk exclusively owns its allocation (like a Box<[u8]>), so moving it to another
// thread or sharing `&Chunk` (which only hands out `&[u8]`) is as safe as for Box<[u8]>.
unsafe impl Send for Chunk {}
// SAFETY: see the Send impl: shared access only yields `&[u8]`.
unsafe impl Sync for Chunk {}

impl Chunk {
    /// Allocates `len` bytes (a multiple of [`ALIGN`]), zeroed, or `None` if the allocator
    /// refuses.
    pub(crate) fn new(len: usize) -> Option<Self> {
        assert!(len > 0 && len % ALIGN == 0, "chunk length {len} must be a positive multiple of {ALIGN}");
        if len >= MMAP_MIN {
            // SAFETY: an anonymous private mapping of `len` (> 0) bytes at an address the
            // kernel chooses; no existing memory is affected. The kernel zero-fills it.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return None;
            }
            return NonNull::new(p.cast::<u8>()).map(|ptr| Self { ptr, len });
        }
        let layout = Layout::from_size_align(len, ALIGN).ok()?;
        // SAFETY: `layout` has a non-zero size (asserted above).
        let p = unsafe { alloc_zeroed(layout) };
        NonNull::new(p).map(|ptr| Self { ptr, len })
    }

    /// The chunk's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The whole chunk as bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` initialised bytes (zeroed at allocation, then only
        // written through `as_mut_slice`) owned by `self`; the borrow of `self` keeps them alive
        // and prevents concurrent mutation.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The whole chunk as mutable bytes.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if self.len >= MMAP_MIN {
            // SAFETY: `ptr` is the start of a mapping of exactly `len` bytes made in `new`,
            // unmapped only here, once; no reference into it outlives `self`.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
            return;
        }
        // SAFETY: `ptr` came from `alloc_zeroed` with exactly this layout (validated in `new`)
        // and is freed only here, once.
        unsafe { dealloc(self.ptr.as_ptr(), Layout::from_size_align_unchecked(self.len, ALIGN)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        let mut c = Chunk::new(3 * ALIGN).unwrap();
        const { assert!(3 * ALIGN >= MMAP_MIN, "pool chunks are mapped") };
        assert_eq!(c.as_slice().as_ptr() as usize % ALIGN, 0);
        assert!(c.as_slice().iter().all(|&b| b == 0));
        c.as_mut_slice()[5] = 7;
        assert_eq!(c.as_slice()[5], 7);
        assert_eq!(c.len(), 3 * ALIGN);
        // A mapped one.
        let mut m = Chunk::new(MMAP_MIN * 2).unwrap();
        assert_eq!(m.as_slice().as_ptr() as usize % ALIGN, 0);
        assert!(m.as_slice().iter().all(|&b| b == 0));
        m.as_mut_slice()[MMAP_MIN * 2 - 1] = 9;
        assert_eq!(m.as_slice()[MMAP_MIN * 2 - 1], 9);
    }
}
