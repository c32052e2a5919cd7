//! The vhost-user-scsi backend driven without QEMU: a fake guest (guest memory, split rings laid
//! out by hand) puts descriptor chains on the queues and calls the backend's event handler the
//! way the vhost-user daemon's worker threads do; the test reads the used rings and the
//! responses the backend wrote into guest memory.
#![cfg(feature = "vhost-user")]

#[macro_use]
mod common;
#[path = "common/fault.rs"]
mod fault;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config, target, unique};
use fault::FaultStore;
use scst::{Device, Disk, Lun, Target};
use scst_backends::{FileOptions, FileStore, RamStore};
use scst_local::vhost_user::{Mem, VhostScsiConfig, VhostUserScsi, Vring};
use scst_local::virtio_scsi::{CMD_RESP_LEN, Response, VirtioLun};
use vhost_user_backend::{VhostUserBackend, VringT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

const QSIZE: u16 = 64;
const MEM_SIZE: usize = 4 << 20;
const HEAP: u64 = 0x10_0000;
const NEXT: u16 = 1;
const WRITE: u16 = 2;

/// One split virtqueue in fake guest memory: descriptor table, avail ring, used ring.
struct FakeQueue {
    base: u64,
    next_desc: u16,
    avail_idx: u16,
}

impl FakeQueue {
    fn desc(&self) -> u64 {
        self.base
    }
    fn avail(&self) -> u64 {
        self.base + 0x1000
    }
    fn used(&self) -> u64 {
        self.base + 0x2000
    }
}

/// A buffer of a chain: guest address, length, device-writable.
#[derive(Clone, Copy)]
struct Buf(u64, u32, bool);

struct Guest {
    mem: Mem,
    ctrl: Arc<VhostUserScsi>,
    vrings: Vec<Vring>,
    queues: Vec<FakeQueue>,
    heap: u64,
}

impl Guest {
    fn new(target: &Arc<Target>, request_queues: usize) -> Self {
        let mmap = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).expect("guest memory");
        let mem = GuestMemoryAtomic::new(mmap);
        let cfg = VhostScsiConfig { request_queues, max_queue_size: QSIZE, ..VhostScsiConfig::default() };
        let sock = format!("/nonexistent/vus-{}.sock", unique());
        let ctrl = VhostUserScsi::new(target, Path::new(&sock), cfg).expect("controller");
        ctrl.update_memory(mem.clone()).expect("memory");
        let n = 2 + request_queues;
        let mut vrings = Vec::new();
        let mut queues = Vec::new();
        for q in 0..n {
            let fq = FakeQueue { base: 0x1_0000 * q as u64, next_desc: 0, avail_idx: 0 };
            let v = Vring::new(mem.clone(), QSIZE).expect("vring");
            v.set_queue_size(QSIZE);
            v.set_queue_info(fq.desc(), fq.avail(), fq.used()).expect("queue addresses");
            v.set_queue_ready(true);
            v.set_enabled(true);
            vrings.push(v);
            queues.push(fq);
        }
        Self { mem, ctrl, vrings, queues, heap: HEAP }
    }

    fn m(&self) -> vm_memory::GuestMemoryLoadGuard<GuestMemoryMmap> {
        use vm_memory::GuestAddressSpace;
        self.mem.memory()
    }

    fn alloc(&mut self, len: u32) -> u64 {
        let a = self.heap;
        self.heap += u64::from(len).next_multiple_of(64);
        assert!(self.heap < MEM_SIZE as u64, "test heap exhausted");
        a
    }

    fn put(&self, addr: u64, b: &[u8]) {
        self.m().write_slice(b, GuestAddress(addr)).expect("guest write");
    }

    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.m().read_slice(&mut v, GuestAddress(addr)).expect("guest read");
        v
    }

    /// Writes a raw descriptor.
    fn raw_desc(&self, q: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.put(self.queues[q].desc() + 16 * u64::from(i), &d);
    }

    /// Makes `head` available on queue `q`.
    fn publish(&mut self, q: usize, head: u16) {
        let fq = &self.queues[q];
        let slot = fq.avail() + 4 + 2 * u64::from(fq.avail_idx % QSIZE);
        let idx = fq.avail_idx.wrapping_add(1);
        let avail = fq.avail();
        self.put(slot, &head.to_le_bytes());
        self.put(avail + 2, &idx.to_le_bytes());
        self.queues[q].avail_idx = idx;
    }

    /// Puts a chain of `bufs` on queue `q`; returns its head.
    fn chain(&mut self, q: usize, bufs: &[Buf]) -> u16 {
        let head = self.queues[q].next_desc;
        for (k, b) in bufs.iter().enumerate() {
            let i = (head + k as u16) % QSIZE;
            let last = k + 1 == bufs.len();
            let flags = if last { 0 } else { NEXT } | if b.2 { WRITE } else { 0 };
            self.raw_desc(q, i, b.0, b.1, flags, (i + 1) % QSIZE);
        }
        self.queues[q].next_desc = (head + bufs.len() as u16) % QSIZE;
        self.publish(q, head);
        head
    }

    /// What the daemon's worker thread does on a kick of queue `q`.
    fn kick(&self, q: usize) {
        let (thread, local, list) = if q < 2 {
            (0, q, vec![self.vrings[0].clone(), self.vrings[1].clone()])
        } else {
            (q - 1, 0, vec![self.vrings[q].clone()])
        };
        self.ctrl.handle_event(local as u16, EventSet::IN, &list, thread).expect("handle_event");
    }

    /// The used ring entries of queue `q` (id, len), all of them so far.
    fn used(&self, q: usize) -> Vec<(u32, u32)> {
        let u = self.queues[q].used();
        let idx = u16::from_le_bytes(self.get(u + 2, 2).try_into().unwrap());
        (0..idx)
            .map(|i| {
                let e = self.get(u + 4 + 8 * u64::from(i % QSIZE), 8);
                (u32::from_le_bytes(e[0..4].try_into().unwrap()), u32::from_le_bytes(e[4..8].try_into().unwrap()))
            })
            .collect()
    }

    /// Waits until queue `q` has `n` used entries.
    fn wait_used(&self, q: usize, n: usize) -> Vec<(u32, u32)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let u = self.used(q);
            if u.len() >= n {
                return u;
            }
            assert!(Instant::now() < deadline, "queue {q}: {} used entries, expected {n}", u.len());
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A command request: header (one descriptor), Data-Out pieces, response, Data-In pieces.
    fn cmd(&mut self, q: usize, lun: [u8; 8], tag: u64, cdb: &[u8], out: &[&[u8]], inp: &[u32]) -> Cmd {
        let mut hdr = vec![0u8; 51];
        hdr[0..8].copy_from_slice(&lun);
        hdr[8..16].copy_from_slice(&tag.to_le_bytes());
        hdr[19..19 + cdb.len()].copy_from_slice(cdb);
        let h = self.alloc(51);
        self.put(h, &hdr);
        let mut bufs = vec![Buf(h, 51, false)];
        for o in out {
            let a = self.alloc(o.len() as u32);
            self.put(a, o);
            bufs.push(Buf(a, o.len() as u32, false));
        }
        let resp = self.alloc(CMD_RESP_LEN as u32);
        self.put(resp, &[0xee; CMD_RESP_LEN]);
        bufs.push(Buf(resp, CMD_RESP_LEN as u32, true));
        let mut data_in = Vec::new();
        for &l in inp {
            let a = self.alloc(l);
            bufs.push(Buf(a, l, true));
            data_in.push((a, l));
        }
        let head = self.chain(q, &bufs);
        Cmd { head, resp, data_in }
    }

    fn resp(&self, c: &Cmd) -> Resp {
        let r = self.get(c.resp, CMD_RESP_LEN);
        let sense_len = u32::from_le_bytes(r[0..4].try_into().unwrap()) as usize;
        Resp {
            sense: r[12..12 + sense_len.min(96)].to_vec(),
            resid: u32::from_le_bytes(r[4..8].try_into().unwrap()),
            status: r[10],
            response: r[11],
        }
    }

    fn data_in(&self, c: &Cmd) -> Vec<u8> {
        c.data_in.iter().flat_map(|&(a, l)| self.get(a, l as usize)).collect()
    }

    /// A control queue request of `req` bytes with a `resp_len`-byte writable response.
    fn control(&mut self, req: &[u8], resp_len: u32) -> (u16, u64) {
        let a = self.alloc(req.len() as u32);
        self.put(a, req);
        let r = self.alloc(resp_len);
        self.put(r, &vec![0xee; resp_len as usize]);
        let head = self.chain(0, &[Buf(a, req.len() as u32, false), Buf(r, resp_len, true)]);
        (head, r)
    }
}

struct Cmd {
    head: u16,
    resp: u64,
    data_in: Vec<(u64, u32)>,
}

#[derive(Debug)]
struct Resp {
    sense: Vec<u8>,
    resid: u32,
    status: u8,
    response: u8,
}

fn tmf(subtype: u32, lun: [u8; 8], tag: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&subtype.to_le_bytes());
    b.extend_from_slice(&lun);
    b.extend_from_slice(&tag.to_le_bytes());
    b
}

const L0: [u8; 8] = [1, 0, 0x40, 0, 0, 0, 0, 0];
const TUR: [u8; 6] = [0; 6];

fn ram_target(luns: &[u16]) -> Arc<Target> {
    let t = target();
    for &l in luns {
        let dev = Device::new(config(), Disk::new(RamStore::new(1 << 20, 512).expect("ram"))).expect("device");
        t.add_lun(Lun(l), dev, false).expect("map");
    }
    t
}

/// Sends TEST UNIT READY until it is GOOD (the unit attentions of a new nexus).
fn clear_ua(g: &mut Guest, q: usize) {
    for _ in 0..8 {
        let c = g.cmd(q, L0, 1, &TUR, &[], &[]);
        g.kick(q);
        g.wait_used(q, 1);
        if g.resp(&c).status == 0 {
            return;
        }
    }
    panic!("unit attentions do not clear");
}

fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    [0x28, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

#[test]
fn unit_attention_then_write_and_read_through_split_buffers() {
    let t = ram_target(&[0]);
    let mut g = Guest::new(&t, 1);
    // A new nexus: the first command gets CHECK CONDITION, UNIT ATTENTION, POWER ON (29h).
    let c = g.cmd(2, L0, 1, &TUR, &[], &[]);
    g.kick(2);
    assert_eq!(g.wait_used(2, 1), vec![(u32::from(c.head), CMD_RESP_LEN as u32)]);
    let r = g.resp(&c);
    assert_eq!((r.response, r.status), (0, 2), "{r:?}");
    assert!(r.sense.len() >= 14, "{r:?}");
    assert_eq!((r.sense[2] & 0xf, r.sense[12]), (6, 0x29));
    clear_ua(&mut g, 2);
    let base = g.used(2).len();
    // WRITE(10) of 8 blocks, Data-Out in three descriptors of odd sizes.
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    let w = g.cmd(2, L0, 2, &write10(5, 8), &[&data[..1000], &data[1000..1001], &data[1001..]], &[]);
    g.kick(2);
    let u = g.wait_used(2, base + 1);
    assert_eq!(u[base], (u32::from(w.head), CMD_RESP_LEN as u32));
    let r = g.resp(&w);
    assert_eq!((r.response, r.status, r.resid, r.sense.len()), (0, 0, 0, 0), "{r:?}");
    // READ(10) back into two descriptors.
    let rd = g.cmd(2, L0, 3, &read10(5, 8), &[], &[100, 3996]);
    g.kick(2);
    let u = g.wait_used(2, base + 2);
    assert_eq!(u[base + 1], (u32::from(rd.head), (CMD_RESP_LEN + 4096) as u32));
    let r = g.resp(&rd);
    assert_eq!((r.response, r.status, r.resid), (0, 0, 0), "{r:?}");
    assert_eq!(g.data_in(&rd), data);
    // INQUIRY into a larger buffer than its data: resid is what was not filled.
    let inq = g.cmd(2, L0, 4, &[0x12, 0, 0, 0, 200, 0], &[], &[200]);
    g.kick(2);
    let u = g.wait_used(2, base + 3);
    let r = g.resp(&inq);
    let d = g.data_in(&inq);
    let n = usize::from(d[4]) + 5;
    assert_eq!((r.response, r.status), (0, 0));
    assert_eq!(r.resid as usize, 200 - n);
    assert_eq!(u[base + 2].1 as usize, CMD_RESP_LEN + n);
    assert_eq!(&d[8..15], b"SCST_RS");
    // A LUN the nexus does not have: LOGICAL UNIT NOT SUPPORTED (05h/25h) from the core.
    let nl = g.cmd(2, VirtioLun::encode(9), 5, &TUR, &[], &[]);
    g.kick(2);
    g.wait_used(2, base + 4);
    let r = g.resp(&nl);
    assert_eq!((r.response, r.status, r.sense[2] & 0xf, r.sense[12]), (0, 2, 5, 0x25), "{r:?}");
    assert_eq!(g.ctrl.stats().bad_requests.load(std::sync::atomic::Ordering::Relaxed), 0);
    let chains: Vec<usize> =
        g.ctrl.stats().chains.iter().map(|c| c.load(std::sync::atomic::Ordering::Relaxed)).collect();
    assert_eq!(chains, vec![0, 0, base + 4]);
}

#[test]
fn malformed_chains_get_failure_or_nothing_and_the_device_keeps_working() {
    let t = ram_target(&[0]);
    let mut g = Guest::new(&t, 1);
    clear_ua(&mut g, 2);
    let mut n = g.used(2).len();
    let mut expect = |g: &mut Guest, what: &str, resp: Option<u64>, response: Option<u8>| {
        g.kick(2);
        let u = g.wait_used(2, n + 1);
        n += 1;
        match (resp, response) {
            (Some(r), Some(code)) => {
                let b = g.get(r, 12);
                assert_eq!(b[11], code, "{what}: response");
                assert_eq!(u[n - 1].1 as usize, CMD_RESP_LEN, "{what}: used length");
            }
            _ => assert_eq!(u[n - 1].1, 0, "{what}: nothing written"),
        }
    };
    let resp = |g: &mut Guest| {
        let r = g.alloc(CMD_RESP_LEN as u32);
        g.put(r, &[0xee; CMD_RESP_LEN]);
        r
    };
    let hdr = |g: &mut Guest, lun: [u8; 8], cdb: &[u8]| {
        let mut b = vec![0u8; 51];
        b[..8].copy_from_slice(&lun);
        b[19..19 + cdb.len()].copy_from_slice(cdb);
        let a = g.alloc(51);
        g.put(a, &b);
        a
    };
    // No device-readable part at all.
    let r = resp(&mut g);
    g.chain(2, &[Buf(r, CMD_RESP_LEN as u32, true)]);
    expect(&mut g, "no header", Some(r), Some(Response::FAILURE.0));
    // A header of 10 bytes.
    let (h, r) = (hdr(&mut g, L0, &TUR), resp(&mut g));
    g.chain(2, &[Buf(h, 10, false), Buf(r, CMD_RESP_LEN as u32, true)]);
    expect(&mut g, "short header", Some(r), Some(Response::FAILURE.0));
    // Device-readable after device-writable.
    let (h, r) = (hdr(&mut g, L0, &TUR), resp(&mut g));
    let d = g.alloc(512);
    g.chain(2, &[Buf(h, 51, false), Buf(r, CMD_RESP_LEN as u32, true), Buf(d, 512, false)]);
    expect(&mut g, "readable after writable", Some(r), Some(Response::FAILURE.0));
    // Data-Out and Data-In at once (VIRTIO_SCSI_F_INOUT is not offered).
    let (h, r) = (hdr(&mut g, L0, &read10(0, 1)), resp(&mut g));
    let (o, i) = (g.alloc(512), g.alloc(512));
    g.chain(2, &[Buf(h, 51, false), Buf(o, 512, false), Buf(r, CMD_RESP_LEN as u32, true), Buf(i, 512, true)]);
    expect(&mut g, "bidirectional", Some(r), Some(Response::FAILURE.0));
    // Targets other than 0, and lun[0] != 1.
    for lun in [[1, 1, 0x40, 0, 0, 0, 0, 0], [0, 0, 0x40, 0, 0, 0, 0, 0]] {
        let (h, r) = (hdr(&mut g, lun, &TUR), resp(&mut g));
        g.chain(2, &[Buf(h, 51, false), Buf(r, CMD_RESP_LEN as u32, true)]);
        expect(&mut g, "bad target", Some(r), Some(Response::BAD_TARGET.0));
    }
    // The header outside guest memory.
    let r = resp(&mut g);
    g.chain(2, &[Buf(0xdead_0000_0000, 51, false), Buf(r, CMD_RESP_LEN as u32, true)]);
    expect(&mut g, "header outside memory", Some(r), Some(Response::FAILURE.0));
    // A WRITE whose Data-Out lies outside guest memory (crossing its end).
    let (h, r) = (hdr(&mut g, L0, &write10(0, 1)), resp(&mut g));
    g.chain(2, &[Buf(h, 51, false), Buf(MEM_SIZE as u64 - 100, 512, false), Buf(r, CMD_RESP_LEN as u32, true)]);
    expect(&mut g, "data-out outside memory", Some(r), Some(Response::FAILURE.0));
    // A READ whose Data-In lies outside guest memory: FAILURE, nothing else written.
    let (h, r) = (hdr(&mut g, L0, &read10(0, 1)), resp(&mut g));
    g.chain(2, &[Buf(h, 51, false), Buf(r, CMD_RESP_LEN as u32, true), Buf(0xdead_0000_0000, 512, true)]);
    expect(&mut g, "data-in outside memory", Some(r), Some(Response::FAILURE.0));
    // No room for a response, and a response outside guest memory: returned with length 0.
    let (h, r) = (hdr(&mut g, L0, &TUR), resp(&mut g));
    g.chain(2, &[Buf(h, 51, false), Buf(r, 4, true)]);
    expect(&mut g, "4-byte response", None, None);
    assert_eq!(g.get(r, 4), [0xee; 4], "a too-short response buffer is not written");
    let h = hdr(&mut g, L0, &TUR);
    g.chain(2, &[Buf(h, 51, false), Buf(0xdead_0000_0000, CMD_RESP_LEN as u32, true)]);
    expect(&mut g, "response outside memory", None, None);
    // A descriptor whose `next` points at itself: the walk ends at the queue size.
    let h = hdr(&mut g, L0, &TUR);
    let head = g.queues[2].next_desc;
    g.raw_desc(2, head, h, 51, NEXT, head);
    g.queues[2].next_desc = (head + 1) % QSIZE;
    g.publish(2, head);
    expect(&mut g, "descriptor loop", None, None);
    assert!(g.ctrl.stats().bad_requests.load(std::sync::atomic::Ordering::Relaxed) >= 10);
    // The device still serves a well-formed command.
    let c = g.cmd(2, L0, 9, &read10(0, 1), &[], &[512]);
    g.kick(2);
    g.wait_used(2, n + 1);
    let r = g.resp(&c);
    assert_eq!((r.response, r.status), (0, 0), "{r:?}");
}

#[test]
fn several_commands_are_in_flight_on_one_queue() {
    let t = target();
    let (store, faults) = FaultStore::new(RamStore::new(1 << 20, 512).expect("ram"), true);
    let mut cfg = config();
    cfg.threads = 8;
    t.add_lun(Lun(0), Device::new(cfg, Disk::new(store)).expect("device"), false).expect("map");
    let mut g = Guest::new(&t, 1);
    clear_ua(&mut g, 2);
    let base = g.used(2).len();
    faults.close_gate();
    let cmds: Vec<Cmd> = (0..8).map(|i| g.cmd(2, L0, 100 + i, &read10(i as u32, 1), &[], &[512])).collect();
    // The kick runs on its own thread, as in the daemon: a backend that waited for each command
    // before taking the next would hold it there, and this test would fail instead of hanging.
    let (inside, used) = std::thread::scope(|s| {
        s.spawn(|| g.kick(2));
        let deadline = Instant::now() + Duration::from_secs(5);
        while faults.inside() < 8 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let seen = (faults.inside(), g.used(2).len());
        faults.open_gate();
        seen
    });
    // All eight reached the store before any completed: the queue did not wait for each.
    assert_eq!((inside, used), (8, base));
    let u = g.wait_used(2, base + 8);
    let mut heads: Vec<u32> = u[base..].iter().map(|e| e.0).collect();
    heads.sort_unstable();
    let mut want: Vec<u32> = cmds.iter().map(|c| u32::from(c.head)).collect();
    want.sort_unstable();
    assert_eq!(heads, want);
    for c in &cmds {
        let r = g.resp(c);
        assert_eq!((r.response, r.status, r.resid), (0, 0, 0), "{r:?}");
    }
}

#[test]
fn task_management_and_an_over_the_control_queue() {
    let t = target();
    let (store, faults) = FaultStore::new(RamStore::new(1 << 20, 512).expect("ram"), true);
    t.add_lun(Lun(0), Device::new(config(), Disk::new(store)).expect("device"), false).expect("map");
    let mut g = Guest::new(&t, 1);
    clear_ua(&mut g, 2);
    let mut nc = 0;
    let mut ctl = |g: &mut Guest, req: &[u8], len: u32| -> (u32, Vec<u8>) {
        let (head, r) = g.control(req, len);
        g.kick(0);
        let u = g.wait_used(0, nc + 1);
        nc += 1;
        assert_eq!(u[nc - 1].0, u32::from(head));
        (u[nc - 1].1, g.get(r, len as usize))
    };
    // ABORT TASK and QUERY TASK of a tag that does not exist: FUNCTION COMPLETE (0).
    assert_eq!(ctl(&mut g, &tmf(0, L0, 999), 1), (1, vec![0]));
    assert_eq!(ctl(&mut g, &tmf(6, L0, 999), 1), (1, vec![0]));
    // CLEAR ACA is not supported (NormACA 0): rejected; an unknown subtype too.
    assert_eq!(ctl(&mut g, &tmf(2, L0, 0), 1), (1, vec![Response::FUNCTION_REJECTED.0]));
    assert_eq!(ctl(&mut g, &tmf(42, L0, 0), 1), (1, vec![Response::FUNCTION_REJECTED.0]));
    // LOGICAL UNIT RESET of a LUN that does not exist; of another target.
    assert_eq!(ctl(&mut g, &tmf(5, VirtioLun::encode(7), 0), 1), (1, vec![Response::INCORRECT_LUN.0]));
    assert_eq!(ctl(&mut g, &tmf(5, [1, 3, 0x40, 0, 0, 0, 0, 0], 0), 1), (1, vec![Response::BAD_TARGET.0]));
    // AN QUERY: no event classes supported.
    let mut an = Vec::new();
    an.extend_from_slice(&1u32.to_le_bytes());
    an.extend_from_slice(&L0);
    an.extend_from_slice(&0x54u32.to_le_bytes());
    assert_eq!(ctl(&mut g, &an, 5), (5, vec![0, 0, 0, 0, 0]));
    // An unknown request type, and a truncated TMF: returned with nothing written.
    let mut bad = tmf(0, L0, 0);
    bad[0] = 9;
    assert_eq!(ctl(&mut g, &bad, 1), (0, vec![0xee]));
    assert_eq!(ctl(&mut g, &tmf(0, L0, 0)[..20], 1), (0, vec![0xee]));

    // ABORT TASK of a command held in the store: the TMF waits for it; the command comes back
    // ABORTED first, then the TMF answers FUNCTION COMPLETE.
    let base = g.used(2).len();
    faults.close_gate();
    let c = g.cmd(2, L0, 55, &read10(0, 1), &[], &[512]);
    g.kick(2);
    faults.wait_inside(1, Duration::from_secs(10));
    let (head, r) = g.control(&tmf(0, L0, 55), 1);
    g.kick(0);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(g.used(0).len(), nc, "the TMF answers only after the aborted command is released");
    faults.open_gate();
    g.wait_used(2, base + 1);
    let u = g.wait_used(0, nc + 1);
    assert_eq!(u[nc], (u32::from(head), 1));
    assert_eq!(g.get(r, 1), [0]);
    assert_eq!(g.resp(&c).response, Response::ABORTED.0);
    nc += 1;

    // LOGICAL UNIT RESET: complete, and the next command sees the reset unit attention (29h).
    let (head, r) = g.control(&tmf(5, L0, 0), 1);
    g.kick(0);
    let u = g.wait_used(0, nc + 1);
    assert_eq!((u[nc], g.get(r, 1)), ((u32::from(head), 1), vec![0]));
    let base = g.used(2).len();
    let c = g.cmd(2, L0, 56, &TUR, &[], &[]);
    g.kick(2);
    g.wait_used(2, base + 1);
    let rs = g.resp(&c);
    assert_eq!((rs.response, rs.status, rs.sense[2] & 0xf, rs.sense[12]), (0, 2, 6, 0x29), "{rs:?}");
}

#[test]
fn lun_hot_plug_and_parameter_change_events() {
    let t = ram_target(&[0]);
    let mut g = Guest::new(&t, 1);
    // Two event buffers; the guest kicks the event queue after adding them.
    let e1 = g.alloc(16);
    let e2 = g.alloc(16);
    g.chain(1, &[Buf(e1, 16, true)]);
    g.chain(1, &[Buf(e2, 16, true)]);
    g.kick(1);
    assert_eq!(g.used(1).len(), 0, "event buffers wait for events");
    assert_eq!(g.ctrl.rescan(), 0, "no change, no event");
    let dev = Device::new(config(), Disk::new(RamStore::new(1 << 20, 512).expect("ram"))).expect("device");
    t.add_lun(Lun(1), dev, false).expect("map");
    assert_eq!(g.ctrl.rescan(), 1);
    assert_eq!(g.wait_used(1, 1)[0], (0, 16));
    // TRANSPORT_RESET, LUN 1 of target 0, reason RESCAN.
    assert_eq!(g.get(e1, 16), [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0]);
    t.remove_lun(Lun(1)).expect("unmap");
    assert_eq!(g.ctrl.rescan(), 1);
    assert_eq!(g.wait_used(1, 2)[1], (1, 16));
    assert_eq!(g.get(e2, 16), [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0]);
    // No buffer left: the event is missed, and the next one says so.
    assert!(!g.ctrl.post_param_change(0, 0x2a, 0x09));
    assert_eq!(g.ctrl.stats().events_missed.load(std::sync::atomic::Ordering::Relaxed), 1);
    let e3 = g.alloc(16);
    g.chain(1, &[Buf(e3, 16, true)]);
    g.kick(1);
    assert!(g.ctrl.post_param_change(0, 0x2a, 0x09));
    assert_eq!(g.wait_used(1, 3)[2].1, 16);
    assert_eq!(g.get(e3, 16), [3, 0, 0, 0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0x2a, 0x09, 0, 0]);
}

#[test]
fn capacity_change_is_a_param_change_event() {
    let t = target();
    let f = tempfile::NamedTempFile::new().expect("temp file");
    let store = FileStore::open(f.path(), FileOptions { size: Some(1 << 20), ..FileOptions::default() }).expect("file");
    t.add_lun(Lun(0), Device::new(config(), Disk::new(store)).expect("device"), false).expect("map");
    let mut g = Guest::new(&t, 1);
    let e = g.alloc(16);
    g.chain(1, &[Buf(e, 16, true)]);
    g.kick(1);
    assert_eq!(g.ctrl.rescan(), 0, "same size: no event");
    f.as_file().set_len(2 << 20).expect("grow");
    assert_eq!(g.ctrl.rescan(), 1);
    assert_eq!(g.wait_used(1, 1)[0], (0, 16));
    // PARAM_CHANGE, LUN 0, ASC 2Ah ASCQ 09h (CAPACITY DATA HAS CHANGED).
    assert_eq!(g.get(e, 16), [3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x2a, 0x09, 0, 0]);
    assert_eq!(g.ctrl.rescan(), 0, "reported once");
}

/// A deterministic pseudo-random sequence (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn garbage_rings_never_panic_nor_write_outside_the_buffers() {
    // Guest memory: rings at 0..0x5_0000, a canary at CANARY, the buffers all descriptors point
    // into at DATA.. (or outside memory). Indirect tables are left out: their contents would be
    // guest data, which may name any address.
    const CANARY: u64 = 0x8_0000;
    const DATA: u64 = 0x10_0000;
    let t = ram_target(&[0]);
    let mut g = Guest::new(&t, 2);
    clear_ua(&mut g, 3);
    let canary: Vec<u8> = (0..0x8_0000u32).map(|i| (i * 31 + 7) as u8).collect();
    g.put(CANARY, &canary);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let data_len = (MEM_SIZE as u64 - DATA) as usize;
    let mut fill = vec![0u8; data_len];
    for round in 0..100 {
        for b in fill.chunks_mut(8) {
            let v = rng.next().to_le_bytes();
            b.copy_from_slice(&v[..b.len()]);
        }
        // Some buffers start with a well-formed header, so commands reach the core too.
        for k in 0..32u64 {
            let at = (k * 0x8000) as usize;
            fill[at..at + 8].copy_from_slice(&L0);
            fill[at + 19] = [0x28, 0x2a, 0x12, 0x00][(k % 4) as usize];
            fill[at + 20..at + 27].fill(0);
            fill[at + 27] = 1;
        }
        g.put(DATA, &fill);
        for q in [0, 2] {
            for i in 0..QSIZE {
                let r = rng.next();
                let next = (rng.next() % (u64::from(QSIZE) + 4)) as u16;
                if r & 7 == 0 {
                    // Outside guest memory.
                    g.raw_desc(q, i, r >> 3, (rng.next() % 0x1_0000) as u32, rng.next() as u16 & (NEXT | WRITE), next);
                } else if r & 3 == 1 {
                    // A request header, followed by a random descriptor.
                    g.raw_desc(q, i, DATA + (rng.next() % 32) * 0x8000, 51, NEXT, next);
                } else {
                    let len =
                        if r & 8 == 0 { 108 + (rng.next() % 4096) as u32 } else { (rng.next() % 0x1_0000) as u32 };
                    let flags = rng.next() as u16 & (NEXT | WRITE);
                    g.raw_desc(q, i, DATA + rng.next() % (data_len as u64), len, flags, next);
                }
            }
            for _ in 0..(rng.next() % 16) {
                g.publish(q, (rng.next() % (u64::from(QSIZE) + 2)) as u16);
            }
            if round == 99 {
                // A nonsense avail index (last: virtio-queue then refuses the ring for good).
                let idx = rng.next() as u16;
                g.put(g.queues[q].avail() + 2, &idx.to_le_bytes());
                g.queues[q].avail_idx = idx;
            }
            g.kick(q);
        }
    }
    // Let asynchronous completions land, then check the canary and a clean queue.
    std::thread::sleep(Duration::from_millis(100));
    assert!(g.get(CANARY, canary.len()) == canary, "a write landed outside every buffer");
    // The garbage exercised both the refusals and the core.
    let bad = g.ctrl.stats().bad_requests.load(std::sync::atomic::Ordering::Relaxed);
    let cmds = g.ctrl.session().stats().commands.load(std::sync::atomic::Ordering::Relaxed);
    assert!(bad > 100 && cmds > 20, "bad requests {bad}, commands {cmds}");
    let base = g.used(3).len();
    let c = g.cmd(3, L0, 7, &read10(0, 1), &[], &[512]);
    g.kick(3);
    g.wait_used(3, base + 1);
    let r = g.resp(&c);
    assert_eq!((r.response, r.status), (0, 0), "{r:?}");
}
