//! SRP (SCSI RDMA Protocol) target transport for scst-rs.
