//! The qla2x00t driver against `isp-model`, a register-level model of the ISP24xx/25xx host
//! interface written separately from the driver (only its public API is shared).
//!
//! The adapter below is a DMA arena: the driver's [`Bus`] (MMIO goes to the model, `map_dma`
//! records host memory under an IOVA) and the model's `HostMemory` (DMA reads and writes
//! through those records) at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use isp_model::{Chip, DmaFault, Fault, HostMemory, IspModel, ModelConfig, TaskMgmt};
use parking_lot::{Condvar, Mutex};
use scst::{BlockStore, Device, DeviceConfig, Disk, Geometry, Lun, SgvConfig, SgvPool, StoreCaps, Target};
use scst_backends::RamStore;
use scst_transport_fc::qla::{Bus, BusError, QlaConfig, QlaError, QlaHandle, QlaPort};

const WWPN: u64 = 0x2100_0011_2233_4455;
const WWNN: u64 = 0x2000_0011_2233_4455;
const PORT_ID: u32 = 0x01_02_00;
const INI_ID: u32 = 0x01_03_00;
const INI_WWPN: u64 = 0x2100_0024_ff31_4c2a;
const T: Duration = Duration::from_secs(10);

struct Map {
    iova: u64,
    va: usize,
    len: usize,
}

/// Host memory the driver mapped, by IOVA.
#[derive(Default)]
struct Arena {
    maps: Mutex<Vec<Map>>,
    next: AtomicU64,
}

impl Arena {
    fn find(&self, iova: u64, len: usize) -> Result<usize, DmaFault> {
        let maps = self.maps.lock();
        maps.iter()
            .find(|m| iova >= m.iova && iova + len as u64 <= m.iova + m.len as u64)
            .map(|m| m.va + (iova - m.iova) as usize)
            .ok_or(DmaFault { iova, len })
    }
}

impl HostMemory for Arena {
    fn read(&self, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        let va = self.find(iova, buf.len())?;
        // SAFETY: `va..va + len` lies inside memory the driver mapped and keeps allocated until
        // it unmaps it (DMA semantics: the device reads it while the driver owns it).
        unsafe { std::ptr::copy_nonoverlapping(va as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }
    fn write(&self, iova: u64, data: &[u8]) -> Result<(), DmaFault> {
        let va = self.find(iova, data.len())?;
        // SAFETY: as in `read`; the driver mapped this memory for the device to write.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), va as *mut u8, data.len()) };
        Ok(())
    }
}

/// The interrupt: a counter and a condition variable.
#[derive(Default)]
struct Irq {
    count: Mutex<u64>,
    cv: Condvar,
}

impl Irq {
    fn raise(&self) {
        *self.count.lock() += 1;
        self.cv.notify_all();
    }
}

struct ModelBus {
    model: Arc<IspModel>,
    mem: Arc<Arena>,
    irq: Arc<Irq>,
    seen: Mutex<u64>,
}

impl Bus for ModelBus {
    fn read32(&self, off: u32) -> u32 {
        self.model.mmio_read32(off)
    }
    fn write32(&self, off: u32, value: u32) {
        self.model.mmio_write32(off, value);
    }
    /// The model's 32-bit window holds a 16-bit register at `80h + 2n` in the low half of a
    /// 32-bit access at that offset (its documented convention).
    fn read16(&self, off: u32) -> u16 {
        self.model.mmio_read32(off) as u16
    }
    fn write16(&self, off: u32, value: u16) {
        self.model.mmio_write32(off, u32::from(value));
    }
    fn map_dma(&self, va: *const u8, len: usize) -> Result<u64, BusError> {
        let iova = 0x1_0000_0000 + self.mem.next.fetch_add(len as u64 + 4096, Ordering::Relaxed);
        self.mem.maps.lock().push(Map { iova, va: va as usize, len });
        Ok(iova)
    }
    fn unmap_dma(&self, iova: u64, _len: usize) {
        self.mem.maps.lock().retain(|m| m.iova != iova);
    }
    fn wait_irq(&self, timeout: Duration) -> bool {
        let mut c = self.irq.count.lock();
        let mut seen = self.seen.lock();
        if *c == *seen {
            self.irq.cv.wait_for(&mut c, timeout);
        }
        let fired = *c != *seen;
        *seen = *c;
        fired
    }
    fn wake(&self) {
        self.irq.raise();
    }
    fn pci_ids(&self) -> (u16, u16) {
        self.model.pci_ids()
    }
}

fn model_cfg() -> ModelConfig {
    ModelConfig { wwpn: WWPN, wwnn: WWNN, port_id: PORT_ID, ..ModelConfig::default() }
}

fn new_model(cfg: ModelConfig) -> (Arc<IspModel>, Arc<dyn Bus>) {
    let (m, b, _) = new_model_arena(cfg);
    (m, b)
}

fn new_model_arena(cfg: ModelConfig) -> (Arc<IspModel>, Arc<dyn Bus>, Arc<Arena>) {
    let mem = Arc::new(Arena::default());
    let irq = Arc::new(Irq::default());
    let i = irq.clone();
    let model = IspModel::new(cfg, mem.clone(), Arc::new(move |_v: u16| i.raise()));
    let bus: Arc<dyn Bus> = Arc::new(ModelBus { model: model.clone(), mem: mem.clone(), irq, seen: Mutex::new(0) });
    (model, bus, mem)
}

/// A target with a 16 MiB RAM LUN 0; SGV chunks of 4 KiB so that transfers need many DSDs.
fn ram_target() -> Arc<Target> {
    let target = Target::new("qla-test", SgvPool::new(SgvConfig { max_chunk: 4096, ..SgvConfig::default() }));
    let disk = Disk::new(RamStore::new(16 << 20, 512).expect("ram store"));
    target.add_lun(Lun(0), Device::new(DeviceConfig::new("ram0"), disk).expect("device"), false).expect("lun");
    target
}

/// A store whose reads wait until the gate opens (so commands stay in flight in the core).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    reads: AtomicU64,
}

struct GatedStore(Arc<Gate>);

impl BlockStore for GatedStore {
    fn geometry(&self) -> Geometry {
        Geometry { block_size: 512, blocks: 8192 }
    }
    fn caps(&self) -> StoreCaps {
        StoreCaps { may_block: true, ..StoreCaps::default() }
    }
    fn product(&self) -> &str {
        "GATED"
    }
    fn read_at(&self, _off: u64, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<()> {
        self.0.reads.fetch_add(1, Ordering::SeqCst);
        let mut open = self.0.open.lock();
        while !*open {
            self.0.cv.wait(&mut open);
        }
        for b in bufs.iter_mut() {
            b.fill(0x5a);
        }
        Ok(())
    }
    fn write_at(&self, _off: u64, _bufs: &[std::io::IoSlice<'_>], _fua: bool) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Gate {
    fn release(&self) {
        *self.open.lock() = true;
        self.cv.notify_all();
    }
}

/// LUN 0 RAM, LUN 1 gated.
fn gated_target(gate: &Arc<Gate>) -> Arc<Target> {
    let target = ram_target();
    let disk = Disk::new(GatedStore(gate.clone()));
    target.add_lun(Lun(1), Device::new(DeviceConfig::new("gated"), disk).expect("device"), false).expect("lun");
    target
}

fn driver_cfg(chip: Chip) -> QlaConfig {
    let mut c = QlaConfig::new(WWPN, WWNN);
    c.firmware = Some(IspModel::synthetic_firmware(chip, false));
    c.mailbox_timeout = Duration::from_secs(2);
    c.ready_timeout = Duration::from_secs(2);
    c
}

struct Rig {
    maps: Arc<Arena>,
    model: Arc<IspModel>,
    port: Option<QlaHandle>,
    _target: Arc<Target>,
}

impl Rig {
    fn new() -> Self {
        Self::with(model_cfg(), driver_cfg(Chip::Isp2532))
    }
    fn with(mcfg: ModelConfig, dcfg: QlaConfig) -> Self {
        Self::with_target(mcfg, dcfg, ram_target())
    }
    fn with_target(mcfg: ModelConfig, dcfg: QlaConfig, target: Arc<Target>) -> Self {
        let (model, bus, maps) = new_model_arena(mcfg);
        let port = match QlaPort::start(bus, dcfg, target.clone()) {
            Ok(p) => p,
            Err(e) => panic!("bring-up: {e}; model errors: {:#?}", model.errors()),
        };
        Self { maps, model, port: Some(port.spawn()), _target: target }
    }
    fn port(&self) -> &QlaHandle {
        self.port.as_ref().expect("port running")
    }
    fn assert_clean(&self) {
        let errors = self.model.errors();
        assert!(errors.is_empty(), "model recorded driver errors: {errors:#?}");
        assert!(self.port().info().failed.is_none(), "port failed: {:?}", self.port().info().failed);
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn login(rig: &Rig, port_id: u32, wwpn: u64) -> isp_model::Initiator {
    let ini = rig.model.initiator(port_id, wwpn);
    ini.login();
    wait_until("login", || ini.is_logged_in());
    wait_until("the driver's session", || rig.port().info().sessions.contains(&port_id));
    // The new nexus's first command gets the POWER ON unit attention.
    let tag = ini.command(0, &[0; 6], &[], 0);
    ini.wait_completion(tag, T).expect("TEST UNIT READY completion");
    ini
}

fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    [0x28, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
}

fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8).collect()
}

#[test]
fn bring_up_reaches_ready_with_link_up() {
    let rig = Rig::new();
    let info = rig.port().info();
    assert!(info.link_up, "link up after bring-up");
    assert_eq!(info.port_id, PORT_ID);
    assert!(info.firmware.major != 0 || info.firmware.minor != 0, "ABOUT FIRMWARE answered: {:?}", info.firmware);
    rig.assert_clean();
}

#[test]
fn bring_up_on_isp2432() {
    let rig = Rig::with(ModelConfig { chip: Chip::Isp2432, ..model_cfg() }, driver_cfg(Chip::Isp2432));
    assert!(rig.port().info().link_up);
    rig.assert_clean();
}

#[test]
fn login_creates_a_session() {
    let rig = Rig::new();
    let _ini = login(&rig, INI_ID, INI_WWPN);
    assert_eq!(rig.port().info().sessions, vec![INI_ID]);
    rig.assert_clean();
}

#[test]
fn write_then_read_multi_dsd_round_trip() {
    let rig = Rig::new();
    let ini = login(&rig, INI_ID, INI_WWPN);
    // 256 KiB: 64 SGV chunks of 4 KiB -> 64 DSDs (CTIO + 13 continuation entries).
    let len = 256 * 1024;
    let data = pattern(len, 7);
    let tag = ini.command(0, &write10(100, (len / 512) as u16), &data, 0);
    let c = ini.wait_completion(tag, T).expect("WRITE completion");
    assert_eq!((c.scsi_status, c.aborted, c.residual), (0, false, 0), "WRITE: {:?}", c.sense);

    let tag = ini.command(0, &read10(100, (len / 512) as u16), &[], len as u32);
    let c = ini.wait_completion(tag, T).expect("READ completion");
    assert_eq!((c.scsi_status, c.aborted, c.residual), (0, false, 0), "READ: {:?}", c.sense);
    assert!(c.data_in == data, "READ returned other bytes than written");
    assert_eq!(c.frames_in, len.div_ceil(2048), "Data-In split at the 2048-byte frame size");

    // An odd-sized transfer: 3 blocks, and a read with a larger expected length (residual).
    let small = pattern(1536, 99);
    let tag = ini.command(0, &write10(7, 3), &small, 0);
    assert_eq!(ini.wait_completion(tag, T).expect("WRITE").scsi_status, 0);
    let tag = ini.command(0, &read10(7, 3), &[], 4096);
    let c = ini.wait_completion(tag, T).expect("READ");
    assert_eq!(c.scsi_status, 0);
    assert_eq!(&c.data_in[..1536], &small[..]);
    assert_eq!(c.residual, 4096 - 1536, "underrun residual");
    rig.assert_clean();
}

#[test]
fn unsupported_opcode_gets_check_condition_with_sense() {
    let rig = Rig::new();
    let ini = login(&rig, INI_ID, INI_WWPN);
    let tag = ini.command(0, &[0xff, 0, 0, 0, 0, 0], &[], 0);
    let c = ini.wait_completion(tag, T).expect("completion");
    assert_eq!(c.scsi_status, 2, "CHECK CONDITION");
    assert!(c.sense.len() >= 14, "sense: {:?}", c.sense);
    assert_eq!(c.sense[0] & 0x7f, 0x70, "fixed format sense: {:?}", c.sense);
    assert_eq!(c.sense[2] & 0x0f, 0x05, "ILLEGAL REQUEST");
    assert_eq!((c.sense[12], c.sense[13]), (0x20, 0x00), "INVALID COMMAND OPERATION CODE");
    rig.assert_clean();
}

#[test]
fn abts_of_a_command_in_flight() {
    let rig = Rig::new();
    let ini = login(&rig, INI_ID, INI_WWPN);
    let len = 256 * 1024;
    let data = pattern(len, 3);
    let tag = ini.command(0, &write10(0, (len / 512) as u16), &data, 0);
    ini.abort(tag);
    let c = ini.wait_completion(tag, T).expect("the exchange ends (aborted or completed)");
    assert!(c.aborted || c.scsi_status == 0, "{c:?}");
    // The port goes on.
    let tag = ini.command(0, &read10(0, 8), &[], 4096);
    let c = ini.wait_completion(tag, T).expect("READ after ABTS");
    assert_eq!(c.scsi_status, 0);
    rig.assert_clean();
}

#[test]
fn lun_reset_completes_and_raises_unit_attention() {
    let rig = Rig::new();
    let ini = login(&rig, INI_ID, INI_WWPN);
    let tag = ini.task_mgmt(0, TaskMgmt::LunReset);
    let c = ini.wait_completion(tag, T).expect("LUN RESET response");
    assert!(!c.aborted, "{c:?}");
    assert_eq!(c.tm_response, Some(0), "TMF COMPLETE");
    let tag = ini.command(0, &[0; 6], &[], 0);
    let c = ini.wait_completion(tag, T).expect("TEST UNIT READY");
    assert_eq!(c.scsi_status, 2, "unit attention after the reset");
    assert_eq!(c.sense[2] & 0x0f, 0x06, "UNIT ATTENTION: {:?}", c.sense);
    assert_eq!(c.sense[12], 0x29, "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED");
    rig.assert_clean();
}

#[test]
fn logout_with_commands_in_flight() {
    let rig = Rig::new();
    let ini = login(&rig, INI_ID, INI_WWPN);
    let len = 128 * 1024;
    let tags: Vec<u32> =
        (0..8).map(|i| ini.command(0, &read10(i * 256, (len / 512) as u16), &[], len as u32)).collect();
    ini.logout();
    wait_until("the session to end", || rig.port().info().sessions.is_empty());
    assert!(!ini.is_logged_in());
    for t in tags {
        let _ = ini.completion(t);
    }
    // A new login works.
    let ini = login(&rig, INI_ID, INI_WWPN);
    let tag = ini.command(0, &read10(0, 8), &[], 4096);
    assert_eq!(ini.wait_completion(tag, T).expect("READ").scsi_status, 0);
    rig.assert_clean();
}

#[test]
fn link_bounce_ends_sessions_and_recovers() {
    let rig = Rig::new();
    let _ini = login(&rig, INI_ID, INI_WWPN);
    rig.model.link_down();
    wait_until("sessions to end", || rig.port().info().sessions.is_empty());
    rig.model.link_up();
    wait_until("link up", || rig.port().info().link_up);
    assert_eq!(rig.port().info().port_id, PORT_ID);
    let ini = login(&rig, INI_ID, INI_WWPN);
    let tag = ini.command(0, &read10(0, 8), &[], 4096);
    assert_eq!(ini.wait_completion(tag, T).expect("READ").scsi_status, 0);
    rig.assert_clean();
}

#[test]
fn silent_mailbox_times_out_with_a_clear_error() {
    let (model, bus) = new_model(model_cfg());
    model.inject(Fault::MailboxSilent);
    let mut cfg = driver_cfg(Chip::Isp2532);
    cfg.mailbox_timeout = Duration::from_millis(300);
    let t0 = Instant::now();
    let err = QlaPort::start(bus, cfg, ram_target()).expect_err("bring-up must fail");
    assert!(t0.elapsed() < Duration::from_secs(5), "gave up in time");
    assert!(matches!(err, QlaError::MailboxTimeout { .. }), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[test]
fn corrupt_firmware_fails_checksum() {
    let (_model, bus) = new_model(model_cfg());
    let mut cfg = driver_cfg(Chip::Isp2532);
    cfg.firmware = Some(IspModel::synthetic_firmware(Chip::Isp2532, true));
    let err = QlaPort::start(bus, cfg, ram_target()).expect_err("bring-up must fail");
    assert!(matches!(err, QlaError::Checksum { .. } | QlaError::MailboxFailed { .. }), "{err}");
}

#[test]
fn small_request_ring_and_full_atio_ring() {
    let mut dcfg = driver_cfg(Chip::Isp2532);
    dcfg.req_entries = 16;
    dcfg.atio_entries = 16;
    let rig = Rig::with(model_cfg(), dcfg);
    let ini = login(&rig, INI_ID, INI_WWPN);
    rig.model.inject(Fault::AtioRingFull);
    let len = 64 * 1024;
    let data = pattern(len, 11);
    let tag = ini.command(0, &write10(2048, (len / 512) as u16), &data, 0);
    assert_eq!(ini.wait_completion(tag, T).expect("WRITE").scsi_status, 0);
    // 32 READs of 16 DSDs (4 ring entries each) at once through a 16-entry request ring.
    let tags: Vec<u32> = (0..32).map(|_| ini.command(0, &read10(2048, (len / 512) as u16), &[], len as u32)).collect();
    for t in tags {
        let c = ini.wait_completion(t, T).expect("READ completion");
        assert_eq!(c.scsi_status, 0);
        assert!(c.data_in == data);
    }
    rig.assert_clean();
}

/// The lun field of `Initiator::command` for LUN 1 (single level, peripheral addressing).
const LUN1: u64 = 0x0001_0000_0000_0000;

/// Takes LUN 1's POWER ON unit attention.
fn clear_ua(ini: &isp_model::Initiator, lun: u64) {
    let tag = ini.command(lun, &[0; 6], &[], 0);
    ini.wait_completion(tag, T).expect("TEST UNIT READY");
}

#[test]
fn abts_of_a_command_waiting_in_the_core() {
    let gate = Arc::new(Gate::default());
    let rig = Rig::with_target(model_cfg(), driver_cfg(Chip::Isp2532), gated_target(&gate));
    let ini = login(&rig, INI_ID, INI_WWPN);
    clear_ua(&ini, LUN1);
    let tag = ini.command(LUN1, &read10(0, 8), &[], 4096);
    wait_until("the READ to reach the store", || gate.reads.load(Ordering::SeqCst) > 0);
    ini.abort(tag);
    std::thread::sleep(Duration::from_millis(50));
    assert!(ini.completion(tag).is_none(), "no BA_ACC while the command still runs");
    gate.release();
    let c = ini.wait_completion(tag, T).expect("the exchange ends");
    assert!(c.aborted, "ABTS answered with BA_ACC, no status: {c:?}");
    let tag = ini.command(LUN1, &read10(0, 8), &[], 4096);
    let c = ini.wait_completion(tag, T).expect("READ after the abort");
    assert_eq!(c.scsi_status, 0);
    assert!(c.data_in.iter().all(|&b| b == 0x5a));
    rig.assert_clean();
}

#[test]
fn logout_with_commands_waiting_in_the_core() {
    let gate = Arc::new(Gate::default());
    let rig = Rig::with_target(model_cfg(), driver_cfg(Chip::Isp2532), gated_target(&gate));
    let ini = login(&rig, INI_ID, INI_WWPN);
    clear_ua(&ini, LUN1);
    let tags: Vec<u32> = (0..4).map(|i| ini.command(LUN1, &read10(i * 8, 8), &[], 4096)).collect();
    wait_until("a READ to reach the store", || gate.reads.load(Ordering::SeqCst) > 0);
    ini.logout();
    wait_until("the session to end", || rig.port().info().sessions.is_empty());
    gate.release();
    std::thread::sleep(Duration::from_millis(100));
    for t in tags {
        if let Some(c) = ini.completion(t) {
            assert!(c.aborted, "no status after the logout: {c:?}");
        }
    }
    wait_until("the exchanges to be released", || rig.port().info().exchanges == 0);
    rig.assert_clean();
}

#[test]
fn failed_ctio_drops_the_exchange_and_the_port_goes_on() {
    let rig = Rig::new();
    let ini = login(&rig, INI_ID, INI_WWPN);
    rig.model.inject(Fault::CtioStatus(0x02));
    let tag = ini.command(0, &read10(0, 8), &[], 4096);
    let _ = ini.wait_completion(tag, Duration::from_millis(300));
    wait_until("the exchange to be released", || rig.port().info().exchanges == 0);
    let tag = ini.command(0, &read10(0, 8), &[], 4096);
    assert_eq!(ini.wait_completion(tag, T).expect("READ").scsi_status, 0);
    rig.assert_clean();
}

#[test]
fn system_error_stops_the_port() {
    let rig = Rig::new();
    rig.model.inject(Fault::SystemError);
    wait_until("the port to stop", || !rig.port().is_running());
    let failed = rig.port().info().failed.expect("a reason");
    assert!(failed.contains("0x8002"), "{failed}");
}

#[test]
fn frame_size_from_the_init_control_block() {
    let mut dcfg = driver_cfg(Chip::Isp2532);
    dcfg.frame_size = 1024;
    let rig = Rig::with(model_cfg(), dcfg);
    let ini = login(&rig, INI_ID, INI_WWPN);
    let len = 64 * 1024;
    let data = pattern(len, 21);
    let tag = ini.command(0, &write10(500, (len / 512) as u16), &data, 0);
    assert_eq!(ini.wait_completion(tag, T).expect("WRITE").scsi_status, 0);
    let tag = ini.command(0, &read10(500, (len / 512) as u16), &[], len as u32);
    let c = ini.wait_completion(tag, T).expect("READ");
    assert_eq!(c.scsi_status, 0);
    assert!(c.data_in == data);
    assert_eq!(c.frames_in, len / 1024);
    rig.assert_clean();
}

#[test]
fn steady_state_maps_nothing_new() {
    let rig = Rig::new();
    let ini = login(&rig, INI_ID, INI_WWPN);
    let iovas = || rig.maps.maps.lock().iter().map(|m| m.iova).collect::<std::collections::HashSet<u64>>();
    // Rings, the init control block, the zero region: mapped before any command, for good.
    let fixed = iovas();
    let len = 128 * 1024;
    let data = pattern(len, 5);
    // The initiator sees a command end a moment before the driver releases its buffer: wait for
    // that, so that each command finds the previous one's chunks in the pool (as a steady
    // stream of commands does) instead of the pool growing by one buffer now and then.
    let settle = || {
        let end = Instant::now() + T;
        while rig._target.sgv().stats().bytes_in_use != 0 {
            assert!(Instant::now() < end, "a buffer was never released");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let round = |ini: &isp_model::Initiator| {
        for i in 0..8u32 {
            let tag = ini.command(0, &write10(i * 256, (len / 512) as u16), &data, 0);
            assert_eq!(ini.wait_completion(tag, T).expect("WRITE").scsi_status, 0);
            settle();
            let tag = ini.command(0, &read10(i * 256, (len / 512) as u16), &[], len as u32);
            let c = ini.wait_completion(tag, T).expect("READ");
            assert!(c.scsi_status == 0 && c.data_in == data);
            settle();
        }
    };
    round(&ini);
    let mapped = rig.maps.next.load(Ordering::Relaxed);
    round(&ini);
    assert_eq!(rig.maps.next.load(Ordering::Relaxed), mapped, "no DMA mapping per command once warm");
    // The pool gives its cached chunks back to the system: their mappings must go (the
    // addresses may come back naming other memory), and the next commands map anew.
    let before = iovas();
    rig._target.sgv().shrink();
    round(&ini);
    assert!(rig.maps.next.load(Ordering::Relaxed) > mapped, "freed chunks are mapped anew, not found in the cache");
    let stale: Vec<u64> = before.intersection(&iovas()).filter(|i| !fixed.contains(i)).copied().collect();
    assert!(stale.is_empty(), "mappings of freed chunks still live: {stale:x?}");
    rig.assert_clean();
}
