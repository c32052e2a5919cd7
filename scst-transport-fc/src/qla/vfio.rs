//! [`VfioBus`]: a PCI function bound to `vfio-pci`, driven from user space.
//!
//! The VFIO "container" interface: `/dev/vfio/vfio` (type 1 IOMMU), the function's group
//! `/dev/vfio/<group>` (from `/sys/bus/pci/devices/<bdf>/iommu_group`), and the device fd from
//! `VFIO_GROUP_GET_DEVICE_FD`. BAR0 is mapped with `mmap` of its region and accessed with
//! volatile 32-bit loads and stores. DMA memory is pinned and mapped with
//! `VFIO_IOMMU_MAP_DMA` at IOVAs from a bump allocator. The interrupt is MSI-X (two vectors,
//! one eventfd) or, without MSI-X, INTx (unmasked after each wake-up); a second eventfd lets
//! other threads wake the waiter. Bus mastering is enabled in the PCI command register.
//! (The newer iommufd interface is not used: the container interface works on every kernel
//! that has iommufd's compatibility layer too.)

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::bus::{Bus, BusError, PAGE};

const VFIO_TYPE: libc::c_ulong = b';' as libc::c_ulong;
const fn vfio_io(nr: libc::c_ulong) -> libc::c_ulong {
    VFIO_TYPE << 8 | (100 + nr)
}
const VFIO_GET_API_VERSION: libc::c_ulong = vfio_io(0);
const VFIO_CHECK_EXTENSION: libc::c_ulong = vfio_io(1);
const VFIO_SET_IOMMU: libc::c_ulong = vfio_io(2);
const VFIO_GROUP_GET_STATUS: libc::c_ulong = vfio_io(3);
const VFIO_GROUP_SET_CONTAINER: libc::c_ulong = vfio_io(4);
const VFIO_GROUP_GET_DEVICE_FD: libc::c_ulong = vfio_io(6);
const VFIO_DEVICE_GET_REGION_INFO: libc::c_ulong = vfio_io(8);
const VFIO_DEVICE_GET_IRQ_INFO: libc::c_ulong = vfio_io(9);
const VFIO_DEVICE_SET_IRQS: libc::c_ulong = vfio_io(10);
const VFIO_IOMMU_MAP_DMA: libc::c_ulong = vfio_io(13);
const VFIO_IOMMU_UNMAP_DMA: libc::c_ulong = vfio_io(14);

const VFIO_TYPE1_IOMMU: libc::c_ulong = 1;
const VFIO_TYPE1V2_IOMMU: libc::c_ulong = 3;
const VFIO_GROUP_FLAGS_VIABLE: u32 = 1;
const BAR0_INDEX: u32 = 0;
const CONFIG_INDEX: u32 = 7;
const INTX_INDEX: u32 = 0;
const MSIX_INDEX: u32 = 2;
const IRQ_SET_DATA_NONE: u32 = 1;
const IRQ_SET_DATA_EVENTFD: u32 = 4;
const IRQ_SET_ACTION_UNMASK: u32 = 16;
const IRQ_SET_ACTION_TRIGGER: u32 = 32;
const DMA_READ: u32 = 1;
const DMA_WRITE: u32 = 2;
/// First IOVA handed out (below it stays unused).
const IOVA_BASE: u64 = 1 << 20;

#[repr(C)]
#[derive(Default)]
struct GroupStatus {
    argsz: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct RegionInfo {
    argsz: u32,
    flags: u32,
    index: u32,
    cap_offset: u32,
    size: u64,
    offset: u64,
}

#[repr(C)]
#[derive(Default)]
struct IrqInfo {
    argsz: u32,
    flags: u32,
    index: u32,
    count: u32,
}

#[repr(C)]
struct IrqSet<const N: usize> {
    argsz: u32,
    flags: u32,
    index: u32,
    start: u32,
    count: u32,
    data: [i32; N],
}

#[repr(C)]
struct DmaMap {
    argsz: u32,
    flags: u32,
    vaddr: u64,
    iova: u64,
    size: u64,
}

#[repr(C)]
struct DmaUnmap {
    argsz: u32,
    flags: u32,
    iova: u64,
    size: u64,
}

/// Why a VFIO device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// A step failed; the message says which and what to check.
    #[error("{0}")]
    Setup(String),
}

fn os_err(what: &str) -> VfioError {
    VfioError::Setup(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// A PCI function bound to vfio-pci.
pub struct VfioBus {
    _container: OwnedFd,
    _group: OwnedFd,
    device: OwnedFd,
    bar: *mut u8,
    bar_len: usize,
    config_offset: u64,
    irq: OwnedFd,
    wake: OwnedFd,
    intx: bool,
    next_iova: AtomicU64,
    ids: (u16, u16),
}

// SAFETY: the BAR pointer is an MMIO mapping accessed only with volatile 32-bit operations; the
// fds are plain kernel handles usable from any thread.
unsafe impl Send for VfioBus {}
// SAFETY: as above; no interior state other than an atomic.
unsafe impl Sync for VfioBus {}

impl std::fmt::Debug for VfioBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioBus")
            .field("ids", &self.ids)
            .field("bar_len", &self.bar_len)
            .field("intx", &self.intx)
            .finish()
    }
}

fn open(path: &str, what: &str) -> Result<OwnedFd, VfioError> {
    let c = CString::new(path).map_err(|_| VfioError::Setup(format!("{what}: bad path")))?;
    // SAFETY: a NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(VfioError::Setup(format!("{what}: open {path}: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn eventfd() -> Result<OwnedFd, VfioError> {
    // SAFETY: plain syscall; checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(os_err("eventfd"));
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl VfioBus {
    /// Opens the PCI function `bdf` (`0000:03:00.0`), which must be bound to vfio-pci.
    ///
    /// # Errors
    /// [`VfioError::Setup`] naming the step that failed and what to check.
    pub fn open(bdf: &str) -> Result<Self, VfioError> {
        let sys = Path::new("/sys/bus/pci/devices").join(bdf);
        if !sys.exists() {
            return Err(VfioError::Setup(format!("no PCI device {bdf} (see lspci -D)")));
        }
        let driver = std::fs::read_link(sys.join("driver")).ok();
        if driver.as_ref().and_then(|d| d.file_name()).is_none_or(|n| n != "vfio-pci") {
            return Err(VfioError::Setup(format!(
                "{bdf} is not bound to vfio-pci (driver: {}); see docs/qla2x00t.md",
                driver.as_ref().and_then(|d| d.file_name()).map_or("none".into(), |n| n.to_string_lossy().into_owned())
            )));
        }
        let group_link = std::fs::read_link(sys.join("iommu_group"))
            .map_err(|e| VfioError::Setup(format!("{bdf} has no IOMMU group ({e}): is the IOMMU enabled?")))?;
        let group_no = group_link
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| VfioError::Setup("bad iommu_group link".into()))?;

        let container = open("/dev/vfio/vfio", "VFIO container")?;
        // SAFETY: ioctl without argument on our fd.
        if unsafe { libc::ioctl(container.as_raw_fd(), VFIO_GET_API_VERSION) } != 0 {
            return Err(VfioError::Setup("unknown VFIO API version".into()));
        }
        let group = open(&format!("/dev/vfio/{group_no}"), "VFIO group")?;
        let mut st = GroupStatus { argsz: size_of::<GroupStatus>() as u32, flags: 0 };
        // SAFETY: the kernel fills a struct of the size in argsz.
        if unsafe { libc::ioctl(group.as_raw_fd(), VFIO_GROUP_GET_STATUS, &mut st) } < 0 {
            return Err(os_err("VFIO_GROUP_GET_STATUS"));
        }
        if st.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(VfioError::Setup(format!(
                "IOMMU group {group_no} is not viable: bind every device of the group to vfio-pci"
            )));
        }
        let cfd = container.as_raw_fd();
        // SAFETY: passes a pointer to an int holding the container fd, as the ABI asks.
        if unsafe { libc::ioctl(group.as_raw_fd(), VFIO_GROUP_SET_CONTAINER, &cfd) } < 0 {
            return Err(os_err("VFIO_GROUP_SET_CONTAINER"));
        }
        // SAFETY: ioctl with an integer argument.
        let v2 = unsafe { libc::ioctl(cfd, VFIO_CHECK_EXTENSION, VFIO_TYPE1V2_IOMMU) } > 0;
        let ty = if v2 { VFIO_TYPE1V2_IOMMU } else { VFIO_TYPE1_IOMMU };
        // SAFETY: ioctl with an integer argument.
        if unsafe { libc::ioctl(cfd, VFIO_SET_IOMMU, ty) } < 0 {
            return Err(os_err("VFIO_SET_IOMMU (type 1)"));
        }
        let name = CString::new(bdf).map_err(|_| VfioError::Setup("bad PCI address".into()))?;
        // SAFETY: a NUL-terminated device name.
        let dfd = unsafe { libc::ioctl(group.as_raw_fd(), VFIO_GROUP_GET_DEVICE_FD, name.as_ptr()) };
        if dfd < 0 {
            return Err(os_err("VFIO_GROUP_GET_DEVICE_FD"));
        }
        // SAFETY: a fresh descriptor we own.
        let device = unsafe { OwnedFd::from_raw_fd(dfd) };

        let region = |index: u32| -> Result<RegionInfo, VfioError> {
            let mut r = RegionInfo { argsz: size_of::<RegionInfo>() as u32, index, ..Default::default() };
            // SAFETY: the kernel fills a struct of the size in argsz.
            if unsafe { libc::ioctl(dfd, VFIO_DEVICE_GET_REGION_INFO, &mut r) } < 0 {
                return Err(os_err("VFIO_DEVICE_GET_REGION_INFO"));
            }
            Ok(r)
        };
        let bar = region(BAR0_INDEX)?;
        if bar.flags & 4 == 0 || bar.size < 0x100 {
            return Err(VfioError::Setup("BAR0 cannot be mapped (not an MMIO BAR?)".into()));
        }
        let bar_len = bar.size as usize;
        // SAFETY: maps the BAR region of our device fd at the offset VFIO gave; checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bar_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                dfd,
                bar.offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_err("mmap of BAR0"));
        }
        let config = region(CONFIG_INDEX)?;
        let irq = eventfd()?;
        let wake = eventfd()?;
        let mut bus = Self {
            _container: container,
            _group: group,
            device,
            bar: p.cast(),
            bar_len,
            config_offset: config.offset,
            irq,
            wake,
            intx: false,
            next_iova: AtomicU64::new(IOVA_BASE),
            ids: (0, 0),
        };
        let mut id = [0u8; 4];
        bus.config_read(0, &mut id)?;
        bus.ids = (u16::from_le_bytes([id[0], id[1]]), u16::from_le_bytes([id[2], id[3]]));
        // Bus master + memory space.
        let mut cmd = [0u8; 2];
        bus.config_read(4, &mut cmd)?;
        let v = u16::from_le_bytes(cmd) | 0x6;
        bus.config_write(4, &v.to_le_bytes())?;
        bus.setup_irq()?;
        Ok(bus)
    }

    fn config_read(&self, off: u64, buf: &mut [u8]) -> Result<(), VfioError> {
        // SAFETY: reads into our buffer of its length.
        let n = unsafe {
            libc::pread(
                self.device.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                (self.config_offset + off) as libc::off_t,
            )
        };
        if n != buf.len() as isize {
            return Err(os_err("PCI config read"));
        }
        Ok(())
    }

    fn config_write(&self, off: u64, buf: &[u8]) -> Result<(), VfioError> {
        // SAFETY: writes from our buffer of its length.
        let n = unsafe {
            libc::pwrite(
                self.device.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                (self.config_offset + off) as libc::off_t,
            )
        };
        if n != buf.len() as isize {
            return Err(os_err("PCI config write"));
        }
        Ok(())
    }

    fn setup_irq(&mut self) -> Result<(), VfioError> {
        let dfd = self.device.as_raw_fd();
        let mut info = IrqInfo { argsz: size_of::<IrqInfo>() as u32, index: MSIX_INDEX, ..Default::default() };
        // SAFETY: the kernel fills a struct of the size in argsz.
        let msix = unsafe { libc::ioctl(dfd, VFIO_DEVICE_GET_IRQ_INFO, &mut info) } == 0 && info.count >= 2;
        let efd = self.irq.as_raw_fd();
        if msix {
            let set = IrqSet::<2> {
                argsz: size_of::<IrqSet<2>>() as u32,
                flags: IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
                index: MSIX_INDEX,
                start: 0,
                count: 2,
                data: [efd, efd],
            };
            // SAFETY: a vfio_irq_set with two eventfds, argsz covering them.
            if unsafe { libc::ioctl(dfd, VFIO_DEVICE_SET_IRQS, &set) } == 0 {
                return Ok(());
            }
            tracing::warn!("vfio: MSI-X setup failed ({}), using INTx", std::io::Error::last_os_error());
        }
        let set = IrqSet::<1> {
            argsz: size_of::<IrqSet<1>>() as u32,
            flags: IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
            index: INTX_INDEX,
            start: 0,
            count: 1,
            data: [efd],
        };
        // SAFETY: a vfio_irq_set with one eventfd.
        if unsafe { libc::ioctl(dfd, VFIO_DEVICE_SET_IRQS, &set) } < 0 {
            return Err(os_err("VFIO_DEVICE_SET_IRQS (INTx)"));
        }
        self.intx = true;
        Ok(())
    }

    fn unmask_intx(&self) {
        let set = IrqSet::<0> {
            argsz: size_of::<IrqSet<0>>() as u32,
            flags: IRQ_SET_DATA_NONE | IRQ_SET_ACTION_UNMASK,
            index: INTX_INDEX,
            start: 0,
            count: 1,
            data: [],
        };
        // SAFETY: a vfio_irq_set without data.
        unsafe { libc::ioctl(self.device.as_raw_fd(), VFIO_DEVICE_SET_IRQS, &set) };
    }

    fn drain(fd: RawFd) -> bool {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a u64 from a non-blocking eventfd.
        unsafe { libc::read(fd, (&raw mut v).cast(), 8) == 8 }
    }
}

impl Bus for VfioBus {
    fn read32(&self, off: u32) -> u32 {
        let off = off as usize & !3;
        if off + 4 > self.bar_len {
            return u32::MAX;
        }
        // SAFETY: in bounds of the BAR mapping, 4-byte aligned; MMIO needs volatile.
        u32::from_le(unsafe { self.bar.add(off).cast::<u32>().read_volatile() })
    }

    fn write32(&self, off: u32, value: u32) {
        let off = off as usize & !3;
        if off + 4 > self.bar_len {
            return;
        }
        // SAFETY: in bounds of the BAR mapping, 4-byte aligned; MMIO needs volatile.
        unsafe { self.bar.add(off).cast::<u32>().write_volatile(value.to_le()) };
    }

    fn read16(&self, off: u32) -> u16 {
        let off = off as usize & !1;
        if off + 2 > self.bar_len {
            return u16::MAX;
        }
        // SAFETY: in bounds of the BAR mapping, 2-byte aligned; MMIO needs volatile.
        u16::from_le(unsafe { self.bar.add(off).cast::<u16>().read_volatile() })
    }

    fn write16(&self, off: u32, value: u16) {
        let off = off as usize & !1;
        if off + 2 > self.bar_len {
            return;
        }
        // SAFETY: in bounds of the BAR mapping, 2-byte aligned; MMIO needs volatile.
        unsafe { self.bar.add(off).cast::<u16>().write_volatile(value.to_le()) };
    }

    fn map_dma(&self, va: *const u8, len: usize) -> Result<u64, BusError> {
        let len = len.div_ceil(PAGE) * PAGE;
        let iova = self.next_iova.fetch_add(len as u64, Ordering::Relaxed);
        let m = DmaMap {
            argsz: size_of::<DmaMap>() as u32,
            flags: DMA_READ | DMA_WRITE,
            vaddr: va as u64,
            iova,
            size: len as u64,
        };
        // SAFETY: a vfio_iommu_type1_dma_map; the kernel pins the pages of our memory.
        if unsafe { libc::ioctl(self._container.as_raw_fd(), VFIO_IOMMU_MAP_DMA, &m) } < 0 {
            let e = std::io::Error::last_os_error();
            let hint = if matches!(e.raw_os_error(), Some(libc::ENOMEM | libc::EPERM)) {
                " (locked memory limit? raise `ulimit -l`)"
            } else {
                ""
            };
            return Err(BusError::Map { len, reason: format!("VFIO_IOMMU_MAP_DMA: {e}{hint}") });
        }
        Ok(iova)
    }

    fn unmap_dma(&self, iova: u64, len: usize) {
        let u =
            DmaUnmap { argsz: size_of::<DmaUnmap>() as u32, flags: 0, iova, size: (len.div_ceil(PAGE) * PAGE) as u64 };
        // SAFETY: a vfio_iommu_type1_dma_unmap of a range we mapped.
        unsafe { libc::ioctl(self._container.as_raw_fd(), VFIO_IOMMU_UNMAP_DMA, &u) };
    }

    fn wait_irq(&self, timeout: Duration) -> bool {
        let mut fds = [
            libc::pollfd { fd: self.irq.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.wake.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: two pollfds of our own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n <= 0 {
            return false;
        }
        Self::drain(self.wake.as_raw_fd());
        let irq = Self::drain(self.irq.as_raw_fd());
        if irq && self.intx {
            self.unmask_intx();
        }
        irq
    }

    fn wake(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    fn pci_ids(&self) -> (u16, u16) {
        self.ids
    }
}

impl Drop for VfioBus {
    fn drop(&mut self) {
        // SAFETY: the BAR mapping made in `open`.
        unsafe { libc::munmap(self.bar.cast(), self.bar_len) };
    }
}
