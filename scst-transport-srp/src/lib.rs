//! SRP (SCSI RDMA Protocol, T10 SRP / SRP-2) target transport for scst-rs.
