//! Fibre Channel target transport for scst-rs.
