//! An FCoE VN2VN target port, sans-IO: Ethernet frames in, Ethernet frames out.
//!
//! [`Vn2VnPort`] joins the FIP controller ([`Vn2Vn`]) and the FC port ([`FcPort`]): the claimed
//! N_Port ID becomes the port's address, a peer that starts beaconing gets a FLOGI (Linux's libfc
//! then has the side with the higher WWPN send PLOGI, see [`FcPort`]), a peer whose beacons stop
//! loses its login. FC frames travel FCoE-encapsulated from our VN_Port MAC
//! (`0E:FD:00` + N_Port ID) to the peer's MAC: the source address of its last FCoE frame, else
//! the VN_Port MAC it claimed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use scst::Target;

use crate::fcoe::{self, ETH_P_FCOE, ETH_P_FIP, FcoeError};
use crate::fip::{self, FipEls, FipError, Vn2Vn, Vn2VnEvent, VnIdentity, vn_mac};
use crate::frame::{FrameHeader, HEADER_LEN, RCtl};
use crate::port::{FcPort, PortConfig, RxError};

/// Why a received Ethernet frame was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Neither FCoE nor FIP.
    #[error("ethertype {0:#06x}")]
    Ethertype(u16),
    /// FCoE framing (CRC, delimiters, length).
    #[error(transparent)]
    Fcoe(#[from] FcoeError),
    /// FIP.
    #[error(transparent)]
    Fip(#[from] FipError),
    /// The FC frame inside.
    #[error(transparent)]
    Fc(#[from] RxError),
    /// FCoE before we claimed an N_Port ID, or to another MAC.
    #[error("FCoE frame not for this VN_Port")]
    NotForUs,
}

/// A VN2VN FCoE target port on one Ethernet interface.
pub struct Vn2VnPort {
    fip: Vn2Vn,
    port: FcPort,
    enode_mac: [u8; 6],
    peer_macs: HashMap<u32, [u8; 6]>,
    /// ELS requests that came FIP-encapsulated, by (S_ID, OX_ID): their replies go back the
    /// same way (descriptor type, the requester's Ethernet address).
    fip_els: HashMap<(u32, u16), (u8, [u8; 6])>,
    out: VecDeque<Vec<u8>>,
}

impl std::fmt::Debug for Vn2VnPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vn2VnPort").field("fip", &self.fip).field("port", &self.port).finish()
    }
}

impl Vn2VnPort {
    /// A port with ENode MAC `mac` on an interface of `mtu`, serving `target`; probing starts at
    /// `now` (ms). `cfg.max_payload` is capped by what the MTU carries.
    pub fn new(mut cfg: PortConfig, target: Arc<Target>, mac: [u8; 6], mtu: usize, now: u64) -> Self {
        cfg.max_payload = cfg.max_payload.min(fcoe::max_fc_payload(mtu));
        cfg.port_id = 0;
        let me = VnIdentity {
            mac,
            wwpn: cfg.wwpn,
            wwnn: cfg.wwnn,
            fcoe_size: (usize::from(cfg.max_payload) + HEADER_LEN + fcoe::FCOE_OVERHEAD) as u16,
            target: true,
            initiator: false,
        };
        Self {
            fip: Vn2Vn::new(me, now),
            port: FcPort::new(cfg, target),
            enode_mac: mac,
            peer_macs: HashMap::new(),
            fip_els: HashMap::new(),
            out: VecDeque::new(),
        }
    }

    /// The FC port.
    pub fn port(&self) -> &FcPort {
        &self.port
    }

    /// The FC port, mutably (for its waker, say).
    pub fn port_mut(&mut self) -> &mut FcPort {
        &mut self.port
    }

    /// The FIP controller.
    pub fn fip(&self) -> &Vn2Vn {
        &self.fip
    }

    /// Handles one received Ethernet frame (without FCS).
    ///
    /// # Errors
    /// Why the frame was not used; the port carries on either way.
    pub fn handle_ethernet(&mut self, now: u64, eth: &[u8]) -> Result<(), LinkError> {
        let r = self.rx(now, eth);
        self.pump();
        r
    }

    fn rx(&mut self, now: u64, eth: &[u8]) -> Result<(), LinkError> {
        match fcoe::ethertype(eth) {
            Some((ETH_P_FIP, at)) if eth.get(at + 2..at + 4) == Some(&fip::OP_LS.to_be_bytes()[..]) => {
                let e = FipEls::parse(eth)?;
                let id = self.port.port_id();
                let Some(h) = e.fc.first_chunk::<HEADER_LEN>().map(FrameHeader::new) else {
                    return Err(LinkError::NotForUs);
                };
                if id == 0 || h.d_id() != id {
                    return Err(LinkError::NotForUs);
                }
                if e.subcode == fip::LS_REQUEST {
                    if self.fip_els.len() >= 1024 {
                        self.fip_els.clear();
                    }
                    self.fip_els.insert((h.s_id(), h.ox_id()), (e.dtype, e.src));
                }
                if e.src[0] & 1 == 0 {
                    self.peer_macs.entry(h.s_id()).or_insert(e.src);
                }
                Ok(self.port.handle_frame(now, e.fc)?)
            }
            Some((ETH_P_FIP, _)) => Ok(self.fip.handle_frame(now, eth)?),
            Some((ETH_P_FCOE, _)) => {
                let f = fcoe::decap(eth)?;
                let id = self.port.port_id();
                // Our VN_Port MAC, the FPMA form with the fabric FC-MAP, or the ENode MAC.
                let mine = id != 0 && (f.dst == vn_mac(id) || f.dst == fpma(0x0efc00, id) || f.dst == self.enode_mac);
                if !mine {
                    return Err(LinkError::NotForUs);
                }
                if let Some(h) = f.fc.first_chunk::<HEADER_LEN>() {
                    let s_id = FrameHeader::new(h).s_id();
                    if f.src[0] & 1 == 0 {
                        self.peer_macs.insert(s_id, f.src);
                    }
                }
                Ok(self.port.handle_frame(now, f.fc)?)
            }
            Some((t, _)) => Err(LinkError::Ethertype(t)),
            None => Err(LinkError::Fcoe(FcoeError::Truncated(eth.len()))),
        }
    }

    /// Runs the FIP and FC timers due at `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        self.fip.handle_timeout(now);
        self.port.handle_timeout(now);
        self.pump();
    }

    /// When [`Vn2VnPort::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> u64 {
        let f = self.fip.poll_timeout();
        self.port.poll_timeout().map_or(f, |p| p.min(f))
    }

    /// The next Ethernet frame to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            self.pump();
        }
        self.out.pop_front()
    }

    /// Moves events between the controller and the port and encapsulates the port's frames.
    fn pump(&mut self) {
        while let Some(e) = self.fip.poll_event() {
            match e {
                Vn2VnEvent::PortId(id) => {
                    tracing::info!(port_id = format_args!("{id:06x}"), "VN2VN N_Port ID claimed");
                    self.port.set_port_id(id);
                }
                Vn2VnEvent::PortIdLost => {
                    self.port.link_down();
                    self.peer_macs.clear();
                }
                Vn2VnEvent::PeerUp(p) => {
                    tracing::info!(port_id = format_args!("{:06x}", p.port_id), wwpn = %crate::wwn_string(p.wwpn), "VN2VN peer up");
                    self.peer_macs.entry(p.port_id).or_insert(p.vn_mac);
                    self.port.originate_flogi(p.port_id);
                }
                Vn2VnEvent::PeerDown(id) => {
                    self.port.forget_remote_port(id);
                    self.peer_macs.remove(&id);
                }
            }
        }
        // The FC port's events only inform here (logins follow the peers FIP reports).
        while let Some(e) = self.port.poll_event() {
            tracing::info!(event = ?e, "FC port");
        }
        while let Some(f) = self.fip.poll_transmit() {
            self.out.push_back(f);
        }
        let src = vn_mac(self.port.port_id());
        while let Some(fc) = self.port.poll_transmit() {
            let Some(h) = fc.first_chunk::<HEADER_LEN>() else { continue };
            let h = FrameHeader::new(h);
            let d_id = h.d_id();
            if h.r_ctl() == RCtl::ELS_REP {
                if let Some((dtype, to)) = self.fip_els.remove(&(d_id, h.ox_id())) {
                    // As libfcoe answers: an LS_ACC carries our VN_Port MAC, an LS_RJT none.
                    let acc = fc.get(HEADER_LEN) == Some(&crate::els::ElsCmd::LS_ACC.0);
                    let mac = acc.then_some(src);
                    self.out.push_back(fip::build_els(self.enode_mac, to, fip::LS_REPLY, dtype, &fc, mac));
                    continue;
                }
            }
            let dst = self.peer_macs.get(&d_id).copied().unwrap_or_else(|| vn_mac(d_id));
            let mut e = Vec::new();
            fcoe::encap(dst, src, &fc, &mut e);
            self.out.push_back(e);
        }
    }
}

/// A fabric-provided MAC address: FC-MAP then N_Port ID.
fn fpma(fc_map: u32, port_id: u32) -> [u8; 6] {
    let m = fc_map.to_be_bytes();
    let p = port_id.to_be_bytes();
    [m[1], m[2], m[3], p[1], p[2], p[3]]
}
