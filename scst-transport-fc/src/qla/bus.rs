//! The driver's view of the hardware: BAR0 registers, DMA mappings, the interrupt.
//!
//! Two things implement [`Bus`]: [`super::vfio::VfioBus`] (a real HBA bound to vfio-pci) and,
//! in tests, an adapter around the `isp-model` chip model.

use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The IOMMU mapping (or the test arena) refused.
    #[error("DMA mapping of {len} bytes failed: {reason}")]
    Map {
        /// Bytes asked for.
        len: usize,
        /// What the system said.
        reason: String,
    },
    /// Memory could not be allocated.
    #[error("out of memory for {0} bytes of DMA memory")]
    NoMemory(usize),
}

/// A PCI function's BAR0, its IOMMU and its interrupt.
pub trait Bus: Send + Sync {
    /// Reads the 32-bit register at byte offset `off` of BAR0.
    fn read32(&self, off: u32) -> u32;
    /// Writes the 32-bit register at byte offset `off` of BAR0.
    fn write32(&self, off: u32, value: u32);
    /// Reads the 16-bit register at byte offset `off` (2-byte aligned) of BAR0: the mailbox
    /// registers are 16 bits wide at 2-byte spacing, and the driver accesses them one at a time
    /// (as Linux's `rd_reg_word` does).
    fn read16(&self, off: u32) -> u16;
    /// Writes the 16-bit register at byte offset `off` (2-byte aligned) of BAR0.
    fn write16(&self, off: u32, value: u16);
    /// Makes `len` bytes of this process's memory at `va` (page-aligned, `len` a multiple of
    /// the page size) visible to the device and returns its IOVA. The memory must stay
    /// allocated until [`Bus::unmap_dma`].
    ///
    /// # Errors
    /// [`BusError::Map`] when the IOMMU refuses.
    fn map_dma(&self, va: *const u8, len: usize) -> Result<u64, BusError>;
    /// Removes a mapping made by [`Bus::map_dma`].
    fn unmap_dma(&self, iova: u64, len: usize);
    /// Waits up to `timeout` for the device's interrupt (or [`Bus::wake`]); `true` if one came.
    fn wait_irq(&self, timeout: Duration) -> bool;
    /// Makes a current or the next [`Bus::wait_irq`] return at once (from any thread).
    fn wake(&self);
    /// PCI vendor and device id.
    fn pci_ids(&self) -> (u16, u16);
}

/// Page size the DMA helpers align to.
pub const PAGE: usize = 4096;

/// Zeroed, page-aligned memory of our own, mapped for the device; unmapped and freed on drop.
pub struct DmaRegion {
    ptr: NonNull<u8>,
    len: usize,
    iova: u64,
    bus: Arc<dyn Bus>,
}

// SAFETY: the region is plain memory owned by this value; access goes through `&self` methods
// that copy bytes (the device writes it concurrently, as DMA does, never through Rust references).
unsafe impl Send for DmaRegion {}
// SAFETY: as above: no method hands out references into the memory.
unsafe impl Sync for DmaRegion {}

impl std::fmt::Debug for DmaRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaRegion").field("len", &self.len).field("iova", &format_args!("{:#x}", self.iova)).finish()
    }
}

impl DmaRegion {
    /// Allocates `len` bytes (rounded up to pages) and maps them on `bus`.
    ///
    /// # Errors
    /// [`BusError::NoMemory`] or the bus's mapping error.
    pub fn new(bus: &Arc<dyn Bus>, len: usize) -> Result<Self, BusError> {
        let len = len.max(1).div_ceil(PAGE) * PAGE;
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
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
            return Err(BusError::NoMemory(len));
        }
        let Some(ptr) = NonNull::new(p.cast::<u8>()) else { return Err(BusError::NoMemory(len)) };
        match bus.map_dma(ptr.as_ptr(), len) {
            Ok(iova) => Ok(Self { ptr, len, iova, bus: bus.clone() }),
            Err(e) => {
                // SAFETY: the mapping made above, never shared.
                unsafe { libc::munmap(p, len) };
                Err(e)
            }
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never: regions are at least a page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device's address of byte 0.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// Copies bytes out at `off` (volatile: the device may have written them).
    ///
    /// # Panics
    /// If the range is outside the region (a driver bug, never device input).
    pub fn read(&self, off: usize, out: &mut [u8]) {
        assert!(off + out.len() <= self.len, "DMA region read out of range");
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: in bounds (checked above) of memory this value owns.
            *b = unsafe { self.ptr.as_ptr().add(off + i).read_volatile() };
        }
    }

    /// Copies bytes in at `off`.
    ///
    /// # Panics
    /// If the range is outside the region (a driver bug).
    pub fn write(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= self.len, "DMA region write out of range");
        for (i, &b) in data.iter().enumerate() {
            // SAFETY: in bounds (checked above) of memory this value owns.
            unsafe { self.ptr.as_ptr().add(off + i).write_volatile(b) };
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
    }
}

impl Drop for DmaRegion {
    fn drop(&mut self) {
        self.bus.unmap_dma(self.iova, self.len);
        // SAFETY: the mapping this value made in `new`; the device no longer sees it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
