//! Wire formats shared by every transport: sense data, LUNs and CDB fields.

pub mod cdb;
pub mod lun;
pub mod sense;
