//! iSCSI target transport for scst-rs (RFC 7143).
//!
//! - [`proto`]: the sans-IO protocol core: PDU views and builders, text key negotiation, the
//!   login state machine with CHAP, digests. No I/O.
//! - [`IscsiServer`]: the socket driver. Each connection has one thread that logs it in,
//!   reads its PDUs, submits SCSI commands to the core and sends the responses of commands that
//!   complete inline; device workers send the responses of commands that block.
//!
//! Error recovery level 0 only (a failed connection ends its session; no SNACK, no task
//! reassignment) and one connection per session (no MC/S).
#![deny(unsafe_code)]

mod conn;
pub mod proto;
mod rx;
mod server;
mod tx;

pub use proto::chap::ChapCredentials;
pub use proto::params::TargetLimits;
pub use server::{ChapConfig, IscsiConfig, IscsiServer, TargetEntry, ZeroCopy};
