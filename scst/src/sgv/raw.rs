//! Page-aligned heap chunks: the only `unsafe` code in the core.

#![allow(unsafe_code)]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;

/// Alignment of every chunk: a page, as O_DIRECT and RDMA registration want.
pub(crate) const ALIGN: usize = 4096;

/// An owned, page-aligned, zero-initialised-on-first-allocation block of `len` bytes.
///
/// Invariants: `ptr` was returned by the global allocator for `Layout(len, ALIGN)`, is owned
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
        assert_eq!(c.as_slice().as_ptr() as usize % ALIGN, 0);
        assert!(c.as_slice().iter().all(|&b| b == 0));
        c.as_mut_slice()[5] = 7;
        assert_eq!(c.as_slice()[5], 7);
        assert_eq!(c.len(), 3 * ALIGN);
    }
}
