//! Big-endian field access for CDBs and parameter data.
//!
//! CDBs reach the core through [`Cdb`], a view that is only built once the CDB is at least as
//! long as its opcode's length (checked against the opcode table), so the accessors index within
//! bounds by construction.

/// Reads a big-endian u16 at `off`.
#[inline]
pub fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Reads a big-endian 24-bit value at `off`.
#[inline]
pub fn be24(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([0, b[off], b[off + 1], b[off + 2]])
}

/// Reads a big-endian u32 at `off`.
#[inline]
pub fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads a big-endian u64 at `off`.
#[inline]
pub fn be64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

/// Writes a big-endian u16 at `off`.
#[inline]
pub fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian u32 at `off`.
#[inline]
pub fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian u64 at `off`.
#[inline]
pub fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_be_bytes());
}

/// Maximum CDB length the core accepts (iSCSI carries up to 16 bytes in the BHS and more in an
/// extended-CDB AHS; SPC variable-length CDBs can be longer but none this target implements is).
pub const MAX_CDB_LEN: usize = 32;

/// The CDB length implied by the opcode's group code (SPC-4 §4.2.5.1), or `None` for the
/// reserved and vendor-specific groups and for variable-length CDBs (7Fh), whose length is in
/// byte 7.
pub fn group_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}
