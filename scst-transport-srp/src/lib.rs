//! SRP (SCSI RDMA Protocol) target transport for scst-rs.
//!
//! - [`iu`]: information units as zero-copy views and builders (no I/O, no SCSI semantics).
pub mod iu;
