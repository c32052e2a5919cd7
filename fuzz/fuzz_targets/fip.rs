//! Fuzz target `fip`: FIP VN2VN frames, FIP-encapsulated ELS and FCoE decapsulation on raw
//! Ethernet frames, then the VN2VN controller on a stream of them, and the whole VN2VN target
//! port (FIP, FCoE and the FC port over a RAM disk) on the same stream.
//!
//! Input: frames as a 2-byte big-endian length followed by that many bytes; a length of 0
//! advances the clock by 150 ms and runs the timers. Every frame the controller emits must
//! parse as VN2VN and come from its own ENode MAC.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use scst::{Device, DeviceConfig, Disk, Lun, SgvConfig, SgvPool, Target};
use scst_backends::RamStore;
use scst_transport_fc::PortConfig;
use scst_transport_fc::fcoe;
use scst_transport_fc::fip::{FipEls, Vn2Vn, VnFrame, VnIdentity};
use scst_transport_fc::vn2vn::Vn2VnPort;

fn target() -> &'static Arc<Target> {
    static T: OnceLock<Arc<Target>> = OnceLock::new();
    T.get_or_init(|| {
        let t = Target::new("fip-fuzz", SgvPool::new(SgvConfig::default()));
        let disk = Disk::new(RamStore::new(1 << 20, 512).expect("ram"));
        t.add_lun(Lun(0), Device::new(DeviceConfig::new("ram0"), disk).expect("device"), false).expect("lun");
        t
    })
}

const ME: VnIdentity = VnIdentity {
    mac: [0x02, 0, 0, 0, 0, 0x01],
    wwpn: 0x2000_0000_0000_1234,
    wwnn: 0x1000_0000_0000_1234,
    fcoe_size: 2158,
    target: true,
    initiator: false,
};

fuzz_target!(|data: &[u8]| {
    let mut v = Vn2Vn::new(ME, 0);
    let mut p = Vn2VnPort::new(PortConfig::new(ME.wwpn, ME.wwnn), target().clone(), ME.mac, 9000, 0);
    let mut now = 0u64;
    let mut rest = data;
    while let [a, b, tail @ ..] = rest {
        let n = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let (frame, next) = tail.split_at(n);
        rest = next;
        if n == 0 {
            now += 150;
            v.handle_timeout(now);
            p.handle_timeout(now);
        } else {
            let _ = fcoe::decap(frame);
            if let Ok(e) = FipEls::parse(frame) {
                assert!(e.fc.len() > 24 && frame.len() >= e.fc.len());
            }
            let _ = fcoe::ethertype(frame);
            let _ = v.handle_frame(now, frame);
            let _ = p.handle_ethernet(now, frame);
        }
        while let Some(out) = p.poll_transmit() {
            assert!(fcoe::decap(&out).is_ok() || VnFrame::parse(&out).is_ok() || FipEls::parse(&out).is_ok());
        }
        while let Some(out) = v.poll_transmit() {
            let f = VnFrame::parse(&out).expect("the controller emits valid VN2VN frames");
            assert_eq!(f.src, ME.mac);
        }
        while v.poll_event().is_some() {}
    }
    p.port_mut().link_down();
});
