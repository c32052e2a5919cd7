//! The vhost-user-scsi backend over a real vhost-user socket: rust-vmm's frontend plays QEMU
//! (feature and protocol negotiation, memory table from a shared file, vring setup with kick
//! and call eventfds), then a reconnect.
#![cfg(feature = "vhost-user")]

#[macro_use]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config, target};
use scst::{Device, Disk, Lun};
use scst_backends::RamStore;
use scst_local::vhost_user::{VhostScsiConfig, VhostUserScsi};
use scst_local::virtio_scsi::{CMD_RESP_LEN, F_CHANGE, F_HOTPLUG, VirtioLun};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

const QSIZE: u16 = 64;
const MEM: usize = 2 << 20;

/// The frontend's view: the shared guest memory and one request queue's rings at 0x1_0000.
struct Vm {
    fe: Frontend,
    mem: GuestMemoryMmap,
    kick: Vec<EventFd>,
    _call: Vec<EventFd>,
    avail_idx: u16,
    heap: u64,
}

const RQ: usize = 2;
const DESC: u64 = 0x1_0000;
const AVAIL: u64 = 0x1_1000;
const USED: u64 = 0x1_2000;

impl Vm {
    fn connect(sock: &Path) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut fe = loop {
            match Frontend::connect(sock, 3) {
                Ok(f) => break f,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot connect: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        fe.set_owner().expect("SET_OWNER");
        let features = fe.get_features().expect("GET_FEATURES");
        for (bit, name) in [
            (1u64 << 32, "VERSION_1"),
            (F_HOTPLUG, "HOTPLUG"),
            (F_CHANGE, "CHANGE"),
            (VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits(), "PROTOCOL_FEATURES"),
        ] {
            assert!(features & bit != 0, "feature {name} not offered: {features:#x}");
        }
        // No VIRTIO_SCSI_F_INOUT: bidirectional commands are refused.
        assert_eq!(features & 1, 0);
        fe.set_features(features).expect("SET_FEATURES");
        let pf = fe.get_protocol_features().expect("GET_PROTOCOL_FEATURES");
        assert!(pf.contains(VhostUserProtocolFeatures::MQ), "{pf:?}");
        fe.set_protocol_features(VhostUserProtocolFeatures::MQ).expect("SET_PROTOCOL_FEATURES");
        assert_eq!(fe.get_queue_num().expect("GET_QUEUE_NUM"), 3, "control, event and one request queue");
        let file = tempfile::tempfile().expect("memory file");
        file.set_len(MEM as u64).expect("size");
        let mem =
            GuestMemoryMmap::<()>::from_ranges_with_files([(GuestAddress(0), MEM, Some(FileOffset::new(file, 0)))])
                .expect("guest memory");
        let region = mem.iter().next().expect("one region");
        let info = VhostUserMemoryRegionInfo::from_guest_region(region).expect("region info");
        let hva = region.as_ptr() as u64;
        fe.set_mem_table(&[info]).expect("SET_MEM_TABLE");
        let mut kick = Vec::new();
        let mut call = Vec::new();
        for q in 0..3 {
            // The request queue's rings at DESC/AVAIL/USED, the others further up.
            let other = 0x4_0000 + 0x1_0000 * q as u64;
            let (d, a, u) = if q == RQ { (DESC, AVAIL, USED) } else { (other, other + 0x1000, other + 0x2000) };
            fe.set_vring_num(q, QSIZE).expect("SET_VRING_NUM");
            let cfg = VringConfigData {
                queue_max_size: QSIZE,
                queue_size: QSIZE,
                flags: 0,
                desc_table_addr: hva + d,
                used_ring_addr: hva + u,
                avail_ring_addr: hva + a,
                log_addr: None,
            };
            fe.set_vring_addr(q, &cfg).expect("SET_VRING_ADDR");
            fe.set_vring_base(q, 0).expect("SET_VRING_BASE");
            let c = EventFd::new(EFD_NONBLOCK).expect("eventfd");
            let k = EventFd::new(EFD_NONBLOCK).expect("eventfd");
            fe.set_vring_call(q, &c).expect("SET_VRING_CALL");
            fe.set_vring_kick(q, &k).expect("SET_VRING_KICK");
            fe.set_vring_enable(q, true).expect("SET_VRING_ENABLE");
            kick.push(k);
            call.push(c);
        }
        Self { fe, mem, kick, _call: call, avail_idx: 0, heap: 0x10_0000 }
    }

    fn alloc(&mut self, len: u64) -> u64 {
        let a = self.heap;
        self.heap += len.next_multiple_of(64);
        a
    }

    /// Sends one command (header, response, optional Data-In) and waits for its used entry.
    /// Returns (status, sense key, (ASC, ASCQ), Data-In).
    fn command(&mut self, cdb: &[u8], data_in: u32) -> (u8, u8, (u8, u8), Vec<u8>) {
        let mut hdr = [0u8; 51];
        hdr[..8].copy_from_slice(&VirtioLun::encode(0));
        hdr[19..19 + cdb.len()].copy_from_slice(cdb);
        let h = self.alloc(51);
        let r = self.alloc(CMD_RESP_LEN as u64);
        let d = self.alloc(u64::from(data_in.max(1)));
        self.mem.write_slice(&hdr, GuestAddress(h)).unwrap();
        let mut descs = vec![(h, 51u32, 0u16), (r, CMD_RESP_LEN as u32, 2)];
        if data_in > 0 {
            descs.push((d, data_in, 2));
        }
        let head = (self.avail_idx * 4) % QSIZE;
        for (k, &(addr, len, wr)) in descs.iter().enumerate() {
            let i = head + k as u16;
            let next = k + 1 < descs.len();
            let mut b = [0u8; 16];
            b[0..8].copy_from_slice(&addr.to_le_bytes());
            b[8..12].copy_from_slice(&len.to_le_bytes());
            b[12..14].copy_from_slice(&(wr | u16::from(next)).to_le_bytes());
            b[14..16].copy_from_slice(&(i + 1).to_le_bytes());
            self.mem.write_slice(&b, GuestAddress(DESC + 16 * u64::from(i))).unwrap();
        }
        self.mem.write_obj(head, GuestAddress(AVAIL + 4 + 2 * u64::from(self.avail_idx % QSIZE))).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem.write_obj(self.avail_idx, GuestAddress(AVAIL + 2)).unwrap();
        self.kick[RQ].write(1).expect("kick");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.mem.read_obj::<u16>(GuestAddress(USED + 2)).unwrap() != self.avail_idx {
            assert!(Instant::now() < deadline, "no completion");
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut resp = [0u8; CMD_RESP_LEN];
        self.mem.read_slice(&mut resp, GuestAddress(r)).unwrap();
        let mut data = vec![0u8; data_in as usize];
        self.mem.read_slice(&mut data, GuestAddress(d)).unwrap();
        assert_eq!(resp[11], 0, "virtio response");
        (resp[10], resp[14] & 0xf, (resp[24], resp[25]), data)
    }
}

#[test]
fn negotiation_commands_stop_and_reconnect_over_the_socket() {
    let t = target();
    let dev = Device::new(config(), Disk::new(RamStore::new(1 << 20, 512).expect("ram"))).expect("device");
    t.add_lun(Lun(0), dev, false).expect("map");
    let dir = tempfile::tempdir().expect("dir");
    let sock = dir.path().join("vus.sock");
    let cfg = VhostScsiConfig { request_queues: 1, max_queue_size: QSIZE, ..VhostScsiConfig::default() };
    let ctrl = VhostUserScsi::new(&t, &sock, cfg).expect("controller");
    assert_eq!(ctrl.session().config().initiator_name, format!("vhost-user-scsi:{}", sock.display()));
    for round in 0..2 {
        let server = {
            let (ctrl, sock) = (Arc::clone(&ctrl), sock.clone());
            std::thread::spawn(move || ctrl.serve(&sock))
        };
        let mut vm = Vm::connect(&sock);
        let (status, _, _, inq) = vm.command(&[0x12, 0, 0, 0, 36, 0], 36);
        assert_eq!((status, &inq[8..15]), (0, &b"SCST_RS"[..]));
        // First connection: POWER ON (29h/00h); the reconnect: I_T NEXUS LOSS OCCURRED (29h/07h).
        let (status, key, code, _) = vm.command(&[0; 6], 0);
        let want = if round == 0 { (0x29, 0x00) } else { (0x29, 0x07) };
        assert_eq!((status, key, code), (2, 6, want), "round {round}");
        let (status, _, _, _) = vm.command(&[0; 6], 0);
        assert_eq!(status, 0, "round {round}: unit attention cleared");
        // GET_VRING_BASE stops the queue (after its commands) and reports where it stopped.
        assert_eq!(vm.fe.get_vring_base(RQ).expect("GET_VRING_BASE"), 3);
        drop(vm);
        server.join().expect("serve thread").expect("serve ends cleanly on disconnect");
    }
}
