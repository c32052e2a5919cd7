//! # scst-transport-fc: a Fibre Channel target transport for scst-rs
//!
//! A sans-IO FC core in the style of the iSCSI one: frames in, frames and events out, time
//! passed in by the caller; no sockets, no threads of its own.
//!
//! * [`frame`]: the FC-2 frame header (zero-copy view and builder).
//! * [`els`]: extended link service payloads (FLOGI/PLOGI service parameters, PRLI/PRLO with
//!   the FCP service parameter page, LOGO, ADISC, RRQ, LS_ACC, LS_RJT).
//! * [`bls`]: basic link services (ABTS, BA_ACC, BA_RJT).
//! * [`fcp`]: FCP-4 information units (FCP_CMND, FCP_XFER_RDY, FCP_RSP).
//! * [`fcoe`]: FCoE encapsulation (ethertype 8906h, SOF/EOF, the FC CRC).
//! * [`fip`]: FIP VN2VN (ethertype 8914h): probe, claim and beacons of a VN_Port, peers learned
//!   and aged out.
//! * [`port`]: [`FcPort`], the target port: remote port logins (FLOGI/PLOGI/PRLI/PRLO/LOGO),
//!   the exchange manager (OX_ID/RX_ID, sequences, ABTS, RRQ, timers) and FCP command
//!   execution through an [`scst::Session`] per logged-in initiator.
//! * [`vn2vn`]: [`vn2vn::Vn2VnPort`], the FCoE VN2VN target port: FIP and the FC port behind
//!   one Ethernet interface, still without I/O.
//! * [`afpacket`]: the I/O: an `AF_PACKET` socket on a Linux interface driving a `Vn2VnPort`.
//!
//! Every parser borrows its input, checks lengths once and returns a [`WireError`] on bad
//! input; none panics on any byte string.
//!
//! A port logging an initiator in (this runs as a doc test):
//!
//! ```
//! use scst::{Device, DeviceConfig, Disk, Lun, SgvConfig, SgvPool, Target};
//! use scst_backends::RamStore;
//! use scst_transport_fc::els::{ElsCmd, Login, ServiceParams};
//! use scst_transport_fc::frame::{FCtl, FcType, Frame, HeaderBuilder, RCtl};
//! use scst_transport_fc::{FcPort, PortConfig, PortEvent};
//!
//! let target = Target::new("fc-doc", SgvPool::new(SgvConfig::default()));
//! let disk = Disk::new(RamStore::new(1 << 20, 512).unwrap());
//! target.add_lun(Lun(0), Device::new(DeviceConfig::new("ram0"), disk).unwrap(), false).unwrap();
//! let mut cfg = PortConfig::new(0x2000_0011_2233_4455, 0x1000_0011_2233_4455);
//! cfg.port_id = 0x0a0001;
//! let mut port = FcPort::new(cfg, target);
//!
//! let initiator = ServiceParams {
//!     wwpn: 0x2100_0024_ff31_4c2a,
//!     wwnn: 0x2000_0024_ff31_4c2a,
//!     rdfs: 2048,
//!     bb_credit: 10,
//!     e_d_tov_ms: 2000,
//!     r_a_tov_ms: 10000,
//!     concurrent_seqs: 255,
//! };
//! let plogi = HeaderBuilder {
//!     r_ctl: RCtl::ELS_REQ.0,
//!     d_id: 0x0a0001,
//!     s_id: 0x0a0002,
//!     fc_type: FcType::ELS.0,
//!     f_ctl: FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT,
//!     ox_id: 1,
//!     rx_id: 0xffff,
//!     ..Default::default()
//! }
//! .frame(&initiator.build(ElsCmd::PLOGI, false));
//! port.handle_frame(0, &plogi).unwrap();
//! let reply = port.poll_transmit().unwrap();
//! let acc = Login::parse(Frame::parse(&reply).unwrap().payload()).unwrap();
//! assert_eq!((acc.command(), acc.wwpn()), (ElsCmd::LS_ACC, 0x2000_0011_2233_4455));
//! assert_eq!(port.poll_event(), Some(PortEvent::LoggedIn { port_id: 0x0a0002, wwpn: initiator.wwpn }));
//! ```

#[cfg(target_os = "linux")]
pub mod afpacket;
pub mod bls;
pub mod els;
pub mod fcoe;
pub mod fcp;
pub mod fip;
pub mod frame;
pub mod port;
/// QLogic ISP24xx/25xx target-mode driver (qla2x00t) over VFIO.
pub mod qla;
pub mod vn2vn;

pub use port::{FcPort, PortConfig, PortEvent, RemotePortInfo, RxError, default_wwnn, parse_wwn, wwn_string};

/// Why received bytes could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the structure needs.
    #[error("{what}: need {need} bytes, have {have}")]
    Truncated {
        /// The structure.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A field holds a value the structure cannot have.
    #[error("{what}: invalid value {value:#x}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Its value.
        value: u32,
    },
}
