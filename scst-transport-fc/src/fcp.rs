//! FCP-4 information units: FCP_CMND, FCP_XFER_RDY and FCP_RSP.

use crate::WireError;

/// Length of an FCP_CMND without additional CDB bytes.
pub const CMND_LEN: usize = 32;
/// Length of an FCP_XFER_RDY.
pub const XFER_RDY_LEN: usize = 12;
/// Length of the fixed part of an FCP_RSP.
pub const RSP_LEN: usize = 24;
/// Length of the FCP_RSP_INFO this crate sends (FCP-4 allows 4 or 8).
pub const RSP_INFO_LEN: usize = 8;

/// FCP_CMND task attribute (byte 9, bits 2..0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FcpTaskAttr(pub u8);

impl FcpTaskAttr {
    /// SIMPLE.
    pub const SIMPLE: Self = Self(0);
    /// HEAD OF QUEUE.
    pub const HEAD_OF_QUEUE: Self = Self(1);
    /// ORDERED.
    pub const ORDERED: Self = Self(2);
    /// ACA.
    pub const ACA: Self = Self(4);
}

/// FCP_CMND task management flags (byte 10).
pub mod tm_flags {
    /// CLEAR ACA.
    pub const CLEAR_ACA: u8 = 0x40;
    /// TARGET RESET.
    pub const TARGET_RESET: u8 = 0x20;
    /// LOGICAL UNIT RESET.
    pub const LUN_RESET: u8 = 0x10;
    /// CLEAR TASK SET.
    pub const CLEAR_TASK_SET: u8 = 0x04;
    /// ABORT TASK SET.
    pub const ABORT_TASK_SET: u8 = 0x02;
}

/// FCP_CMND byte 11 bit: read data (the initiator expects Data-In).
pub const RDDATA: u8 = 0x02;
/// FCP_CMND byte 11 bit: write data (the initiator sends Data-Out).
pub const WRDATA: u8 = 0x01;

/// A view of an FCP_CMND IU (FCP-4 §9.2):
///
/// ```text
/// 0..8 FCP_LUN   8 command reference number (CRN)   9 priority (6..3) + task attribute (2..0)
/// 10 task management flags   11 additional CDB length in words (7..2), RDDATA, WRDATA
/// 12..28+4n FCP_CDB (16 + 4n bytes)   then FCP_DL (4)
/// ```
#[derive(Clone, Copy, Debug)]
pub struct FcpCmnd<'a>(&'a [u8]);

impl<'a> FcpCmnd<'a> {
    /// Checks the length against the additional CDB length.
    ///
    /// # Errors
    /// [`WireError::Truncated`] if the IU is shorter than its additional CDB length says.
    pub fn parse(p: &'a [u8]) -> Result<Self, WireError> {
        if p.len() < CMND_LEN {
            return Err(WireError::Truncated { what: "FCP_CMND", need: CMND_LEN, have: p.len() });
        }
        let need = CMND_LEN + 4 * usize::from(p[11] >> 2);
        if p.len() < need {
            return Err(WireError::Truncated { what: "FCP_CMND additional CDB", need, have: p.len() });
        }
        Ok(Self(&p[..need]))
    }
    /// FCP_LUN (SAM LUN bytes).
    pub fn lun(&self) -> [u8; 8] {
        let mut l = [0u8; 8];
        l.copy_from_slice(&self.0[..8]);
        l
    }
    /// Command reference number.
    pub fn crn(&self) -> u8 {
        self.0[8]
    }
    /// Command priority.
    pub fn priority(&self) -> u8 {
        (self.0[9] >> 3) & 0x0f
    }
    /// Task attribute.
    pub fn task_attr(&self) -> FcpTaskAttr {
        FcpTaskAttr(self.0[9] & 0x07)
    }
    /// Task management flags (see [`tm_flags`]); 0 for a SCSI command.
    pub fn tm_flags(&self) -> u8 {
        self.0[10]
    }
    /// Additional CDB length in bytes.
    pub fn additional_cdb_len(&self) -> usize {
        4 * usize::from(self.0[11] >> 2)
    }
    /// RDDATA.
    pub fn read(&self) -> bool {
        self.0[11] & RDDATA != 0
    }
    /// WRDATA.
    pub fn write(&self) -> bool {
        self.0[11] & WRDATA != 0
    }
    /// The CDB (16 bytes plus the additional CDB).
    pub fn cdb(&self) -> &'a [u8] {
        &self.0[12..self.0.len() - 4]
    }
    /// FCP_DL: the expected data length.
    pub fn data_len(&self) -> u32 {
        let n = self.0.len();
        u32::from_be_bytes([self.0[n - 4], self.0[n - 3], self.0[n - 2], self.0[n - 1]])
    }
}

/// Builds an FCP_CMND (an initiator's IU: tests and tools). `cdb` longer than 16 bytes goes
/// into the additional CDB, padded to a word.
pub fn build_cmnd(lun: [u8; 8], attr: FcpTaskAttr, tm: u8, read: bool, write: bool, cdb: &[u8], dl: u32) -> Vec<u8> {
    let extra = cdb.len().saturating_sub(16).div_ceil(4).min(63);
    let mut p = vec![0u8; CMND_LEN + 4 * extra];
    p[..8].copy_from_slice(&lun);
    p[9] = attr.0 & 7;
    p[10] = tm;
    p[11] = (extra as u8) << 2 | if read { RDDATA } else { 0 } | if write { WRDATA } else { 0 };
    let n = cdb.len().min(16 + 4 * extra);
    p[12..12 + n].copy_from_slice(&cdb[..n]);
    let at = p.len() - 4;
    p[at..].copy_from_slice(&dl.to_be_bytes());
    p
}

/// FCP_XFER_RDY: the relative offset and length of the next burst of write data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XferRdy {
    /// FCP_DATA_RO.
    pub offset: u32,
    /// FCP_BURST_LEN.
    pub burst_len: u32,
}

impl XferRdy {
    /// The 12-byte IU (the last word reserved).
    pub fn build(&self) -> [u8; XFER_RDY_LEN] {
        let mut p = [0u8; XFER_RDY_LEN];
        p[..4].copy_from_slice(&self.offset.to_be_bytes());
        p[4..8].copy_from_slice(&self.burst_len.to_be_bytes());
        p
    }

    /// Parses one.
    ///
    /// # Errors
    /// [`WireError::Truncated`] below 12 bytes.
    pub fn parse(p: &[u8]) -> Result<Self, WireError> {
        match p {
            [a, b, c, d, e, f, g, h, _, _, _, _, ..] => Ok(Self {
                offset: u32::from_be_bytes([*a, *b, *c, *d]),
                burst_len: u32::from_be_bytes([*e, *f, *g, *h]),
            }),
            _ => Err(WireError::Truncated { what: "FCP_XFER_RDY", need: XFER_RDY_LEN, have: p.len() }),
        }
    }
}

/// FCP_RSP flags (byte 10).
pub mod rsp_flags {
    /// Confirmation requested.
    pub const CONF_REQ: u8 = 0x10;
    /// FCP_RESID_UNDER: fewer bytes than FCP_DL were transferred.
    pub const RESID_UNDER: u8 = 0x08;
    /// FCP_RESID_OVER: the command wanted more than FCP_DL.
    pub const RESID_OVER: u8 = 0x04;
    /// FCP_SNS_LEN_VALID.
    pub const SNS_LEN_VALID: u8 = 0x02;
    /// FCP_RSP_LEN_VALID.
    pub const RSP_LEN_VALID: u8 = 0x01;
}

/// FCP_RSP_INFO response codes (FCP-4 table 26).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RspCode(pub u8);

impl RspCode {
    /// Task management function complete (or no failure).
    pub const TMF_COMPLETE: Self = Self(0);
    /// FCP_DATA length different from FCP_BURST_LEN.
    pub const DATA_LEN_INVALID: Self = Self(1);
    /// FCP_CMND fields invalid.
    pub const CMND_FIELDS_INVALID: Self = Self(2);
    /// FCP_DATA parameter value not the same as FCP_DATA_RO.
    pub const DATA_RO_MISMATCH: Self = Self(3);
    /// Task management function rejected (not supported).
    pub const TMF_REJECTED: Self = Self(4);
    /// Task management function failed.
    pub const TMF_FAILED: Self = Self(5);
    /// Task management function: incorrect logical unit number.
    pub const TMF_INCORRECT_LUN: Self = Self(9);
}

/// An FCP_RSP to build (FCP-4 §9.5):
///
/// ```text
/// 0..8 reserved  8..10 retry delay / status qualifier  10 flags  11 SCSI status
/// 12..16 FCP_RESID  16..20 FCP_SNS_LEN  20..24 FCP_RSP_LEN  then FCP_RSP_INFO, then sense
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct FcpRsp<'a> {
    /// SCSI status.
    pub status: u8,
    /// Residual: `(overflow, count)`; a count of 0 sets neither flag.
    pub residual: (bool, u32),
    /// Sense data (empty for none).
    pub sense: &'a [u8],
    /// FCP_RSP_INFO response code, for task management responses and command failures.
    pub rsp_code: Option<RspCode>,
}

impl FcpRsp<'_> {
    /// The IU bytes.
    pub fn build(&self) -> Vec<u8> {
        let info = if self.rsp_code.is_some() { RSP_INFO_LEN } else { 0 };
        let mut p = vec![0u8; RSP_LEN + info + self.sense.len()];
        let mut flags = 0;
        let (over, count) = self.residual;
        if count > 0 {
            flags |= if over { rsp_flags::RESID_OVER } else { rsp_flags::RESID_UNDER };
            p[12..16].copy_from_slice(&count.to_be_bytes());
        }
        if !self.sense.is_empty() {
            flags |= rsp_flags::SNS_LEN_VALID;
            p[16..20].copy_from_slice(&(self.sense.len() as u32).to_be_bytes());
        }
        if let Some(code) = self.rsp_code {
            flags |= rsp_flags::RSP_LEN_VALID;
            p[20..24].copy_from_slice(&(RSP_INFO_LEN as u32).to_be_bytes());
            p[RSP_LEN + 3] = code.0;
        }
        p[10] = flags;
        p[11] = self.status;
        p[RSP_LEN + info..].copy_from_slice(self.sense);
        p
    }
}

/// A view of a received FCP_RSP (initiator side: tests and tools).
#[derive(Clone, Copy, Debug)]
pub struct FcpRspView<'a>(&'a [u8]);

impl<'a> FcpRspView<'a> {
    /// Checks the lengths the flags announce.
    ///
    /// # Errors
    /// [`WireError::Truncated`] when the IU is shorter than its response info and sense.
    pub fn parse(p: &'a [u8]) -> Result<Self, WireError> {
        if p.len() < RSP_LEN {
            return Err(WireError::Truncated { what: "FCP_RSP", need: RSP_LEN, have: p.len() });
        }
        let v = Self(p);
        let need = (RSP_LEN as u64) + u64::from(v.rsp_len()) + u64::from(v.sense_len());
        if need > p.len() as u64 {
            return Err(WireError::Truncated { what: "FCP_RSP info and sense", need: need as usize, have: p.len() });
        }
        Ok(v)
    }
    fn be32(&self, at: usize) -> u32 {
        u32::from_be_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }
    /// Flags.
    pub fn flags(&self) -> u8 {
        self.0[10]
    }
    /// SCSI status.
    pub fn status(&self) -> u8 {
        self.0[11]
    }
    /// FCP_RESID (meaningful when a residual flag is set).
    pub fn resid(&self) -> u32 {
        self.be32(12)
    }
    /// Sense length (0 unless FCP_SNS_LEN_VALID).
    pub fn sense_len(&self) -> u32 {
        if self.flags() & rsp_flags::SNS_LEN_VALID != 0 { self.be32(16) } else { 0 }
    }
    /// Response info length (0 unless FCP_RSP_LEN_VALID).
    pub fn rsp_len(&self) -> u32 {
        if self.flags() & rsp_flags::RSP_LEN_VALID != 0 { self.be32(20) } else { 0 }
    }
    /// The response code, when FCP_RSP_INFO is present.
    pub fn rsp_code(&self) -> Option<RspCode> {
        (self.rsp_len() >= 4).then(|| RspCode(self.0[RSP_LEN + 3]))
    }
    /// Sense bytes.
    pub fn sense(&self) -> &'a [u8] {
        let at = RSP_LEN + self.rsp_len() as usize;
        &self.0[at..at + self.sense_len() as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmnd_layout() {
        let cdb = [0x28, 0, 0, 0, 0, 8, 0, 0, 2, 0];
        let p = build_cmnd([0, 1, 0, 0, 0, 0, 0, 0], FcpTaskAttr::ORDERED, 0, true, false, &cdb, 1024);
        assert_eq!(p.len(), 32);
        assert_eq!(&p[8..12], &[0, 2, 0, 0x02]);
        assert_eq!(&p[12..22], &cdb);
        assert_eq!(&p[28..], &[0, 0, 4, 0]);
        let v = FcpCmnd::parse(&p).unwrap();
        assert_eq!(v.lun(), [0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!((v.task_attr(), v.tm_flags(), v.read(), v.write()), (FcpTaskAttr::ORDERED, 0, true, false));
        assert_eq!(v.cdb().len(), 16);
        assert_eq!(&v.cdb()[..10], &cdb);
        assert_eq!(v.data_len(), 1024);
        // A 32-byte CDB: 4 additional words, FCP_DL moves to 44..48.
        let long = [0x7f; 32];
        let p = build_cmnd([0; 8], FcpTaskAttr::SIMPLE, 0, false, true, &long, 7);
        assert_eq!(p.len(), 48);
        assert_eq!(p[11], 4 << 2 | WRDATA);
        let v = FcpCmnd::parse(&p).unwrap();
        assert_eq!((v.cdb(), v.data_len(), v.additional_cdb_len()), (&long[..], 7, 16));
        assert!(FcpCmnd::parse(&p[..47]).is_err());
        assert!(FcpCmnd::parse(&p[..31]).is_err());
    }

    #[test]
    fn xfer_rdy_layout() {
        let x = XferRdy { offset: 0x10000, burst_len: 0x2000 };
        assert_eq!(x.build(), [0, 1, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0]);
        assert_eq!(XferRdy::parse(&x.build()).unwrap(), x);
        assert!(XferRdy::parse(&[0; 11]).is_err());
    }

    #[test]
    fn rsp_layout() {
        let sense = [0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x25, 0, 0, 0, 0, 0];
        let r = FcpRsp { status: 2, residual: (false, 512), sense: &sense, rsp_code: None }.build();
        assert_eq!(r.len(), 24 + 18);
        assert_eq!(&r[10..24], &[0x0a, 2, 0, 0, 2, 0, 0, 0, 0, 18, 0, 0, 0, 0]);
        assert_eq!(&r[24..], &sense);
        let v = FcpRspView::parse(&r).unwrap();
        assert_eq!((v.status(), v.resid(), v.sense(), v.rsp_code()), (2, 512, &sense[..], None));
        let t =
            FcpRsp { rsp_code: Some(RspCode::TMF_INCORRECT_LUN), residual: (true, 4), ..Default::default() }.build();
        assert_eq!(t.len(), 32);
        assert_eq!(t[10], rsp_flags::RSP_LEN_VALID | rsp_flags::RESID_OVER);
        assert_eq!(&t[20..32], &[0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0]);
        assert_eq!(FcpRspView::parse(&t).unwrap().rsp_code(), Some(RspCode::TMF_INCORRECT_LUN));
        let mut lie = t.clone();
        lie[23] = 200;
        assert!(FcpRspView::parse(&lie).is_err());
    }
}
