//! Fuzz target `fip`: FIP VN2VN frames, FIP-encapsulated ELS and FCoE decapsulation on raw
//! Ethernet frames, then the VN2VN controller on a stream of them.
//!
//! Input: frames as a 2-byte big-endian length followed by that many bytes; a length of 0
//! advances the clock by 150 ms and runs the timers. Every frame the controller emits must
//! parse as VN2VN and come from its own ENode MAC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scst_transport_fc::fcoe;
use scst_transport_fc::fip::{FipEls, VnFrame, VnIdentity, Vn2Vn};

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
    let mut now = 0u64;
    let mut rest = data;
    while let [a, b, tail @ ..] = rest {
        let n = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let (frame, next) = tail.split_at(n);
        rest = next;
        if n == 0 {
            now += 150;
            v.handle_timeout(now);
        } else {
            let _ = fcoe::decap(frame);
            if let Ok(e) = FipEls::parse(frame) {
                assert!(e.fc.len() > 24 && frame.len() >= e.fc.len());
            }
            let _ = fcoe::ethertype(frame);
            let _ = v.handle_frame(now, frame);
        }
        while let Some(out) = v.poll_transmit() {
            let f = VnFrame::parse(&out).expect("the controller emits valid VN2VN frames");
            assert_eq!(f.src, ME.mac);
        }
        while v.poll_event().is_some() {}
    }
});
