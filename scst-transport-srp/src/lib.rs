//! SRP (SCSI RDMA Protocol) target transport for scst-rs.
//!
//! - [`iu`]: information units as zero-copy views and builders (no I/O, no SCSI semantics).
//! - [`port`]: the target port: login policy (IU lengths, buffer formats, the target port
//!   identifier Linux's ib_srp sends, access control, single and multichannel logins keyed by
//!   initiator and target port identifiers) and the I_T nexuses.
//! - [`channel`]: one RDMA channel as a sans-IO state machine: received IUs in, sends and
//!   RDMA operations out, commands executed through an [`scst::Session`], credits granted only
//!   for reposted receive buffers.
//!
//! The initiator port identifier is the initiator's name in the core (`0x` and 32 hex digits),
//! which is what access control patterns, persistent reservation TransportIDs (SRP, protocol
//! identifier 4) and VPD pages see.

pub mod channel;
pub mod iu;
pub mod port;

pub use channel::{Action, Channel, ChannelError, ChannelStats, Wake, XferId};
pub use port::{LoginOutcome, PortConfig, SrpPort, initiator_name};

#[cfg(feature = "rdma")]
pub mod rdma;
