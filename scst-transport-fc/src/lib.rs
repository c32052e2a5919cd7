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

#[cfg(target_os = "linux")]
pub mod afpacket;
pub mod bls;
pub mod els;
pub mod fcoe;
pub mod fcp;
pub mod fip;
pub mod frame;
pub mod port;
pub mod vn2vn;

pub use port::{FcPort, PortConfig, PortEvent, RemotePortInfo, RxError, parse_wwn, wwn_string};

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
