//! Extended link services (FC-LS-3): the payloads of FLOGI/PLOGI, PRLI/PRLO, LOGO, ADISC, RRQ,
//! LS_ACC and LS_RJT.
//!
//! Views borrow the received payload and check its length once in `parse`; accessors never
//! index out of bounds. Builders return the payload bytes (the frame header is separate).

use crate::WireError;

/// ELS command codes (the first payload byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ElsCmd(pub u8);

impl ElsCmd {
    /// Link service reject.
    pub const LS_RJT: Self = Self(0x01);
    /// Link service accept.
    pub const LS_ACC: Self = Self(0x02);
    /// N_Port login.
    pub const PLOGI: Self = Self(0x03);
    /// Fabric login.
    pub const FLOGI: Self = Self(0x04);
    /// Logout.
    pub const LOGO: Self = Self(0x05);
    /// Echo.
    pub const ECHO: Self = Self(0x10);
    /// Reinstate recovery qualifier.
    pub const RRQ: Self = Self(0x12);
    /// Read exchange concise.
    pub const REC: Self = Self(0x13);
    /// Process login.
    pub const PRLI: Self = Self(0x20);
    /// Process logout.
    pub const PRLO: Self = Self(0x21);
    /// Discover address.
    pub const ADISC: Self = Self(0x52);
    /// Registered state change notification.
    pub const RSCN: Self = Self(0x61);
    /// State change registration.
    pub const SCR: Self = Self(0x62);
}

/// LS_RJT reason codes (FC-LS-3 table 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RjtReason(pub u8);

impl RjtReason {
    /// Invalid ELS command code.
    pub const INVALID_CMD: Self = Self(0x01);
    /// Logical error.
    pub const LOGICAL_ERROR: Self = Self(0x03);
    /// Logical busy.
    pub const BUSY: Self = Self(0x05);
    /// Protocol error.
    pub const PROTOCOL_ERROR: Self = Self(0x07);
    /// Unable to perform command request.
    pub const UNABLE: Self = Self(0x09);
    /// Command not supported.
    pub const UNSUPPORTED: Self = Self(0x0b);
}

/// LS_RJT reason explanations (FC-LS-3 table 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RjtExplanation(pub u8);

impl RjtExplanation {
    /// No additional explanation.
    pub const NONE: Self = Self(0x00);
    /// Service parameter error: options.
    pub const SPP_OPTIONS: Self = Self(0x01);
    /// Invalid OX_ID-RX_ID combination.
    pub const OX_RX_ID: Self = Self(0x17);
    /// N_Port login required.
    pub const PLOGI_REQUIRED: Self = Self(0x1e);
    /// Insufficient resources.
    pub const INSUFFICIENT_RESOURCES: Self = Self(0x29);
    /// Invalid payload length.
    pub const INVALID_LENGTH: Self = Self(0x2d);
}

fn need(what: &'static str, b: &[u8], n: usize) -> Result<(), WireError> {
    if b.len() < n { Err(WireError::Truncated { what, need: n, have: b.len() }) } else { Ok(()) }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn be24(b: &[u8], at: usize) -> u32 {
    u32::from(b[at]) << 16 | u32::from(b[at + 1]) << 8 | u32::from(b[at + 2])
}

/// The ELS command code of a request or reply payload.
///
/// # Errors
/// [`WireError::Truncated`] on an empty payload.
pub fn command(payload: &[u8]) -> Result<ElsCmd, WireError> {
    payload.first().map(|&c| ElsCmd(c)).ok_or(WireError::Truncated { what: "ELS command", need: 1, have: 0 })
}

/// Length of a FLOGI/PLOGI payload (and of their LS_ACC).
pub const LOGIN_LEN: usize = 116;

/// Common service parameter features (word 1, bits 31..16), FC-LS-3 table 141.
pub mod features {
    /// PLOGI: continuously increasing relative offset supported.
    pub const CIRO: u16 = 0x8000;
    /// Random relative offset supported.
    pub const RANDOM_OFFSET: u16 = 0x4000;
    /// FLOGI: the sender is an F_Port (always clear here: we are an N_Port).
    pub const F_PORT: u16 = 0x1000;
    /// E_D_TOV resolution is 1 ns instead of 1 ms.
    pub const EDTOV_NS: u16 = 0x0400;
}

/// Class service parameter word 0 bit: the class is supported.
pub const CLASS_VALID: u16 = 0x8000;
/// Class service parameter word 0 bit: sequential delivery requested.
pub const CLASS_SEQ_DELIVERY: u16 = 0x0800;

/// A view of a FLOGI or PLOGI payload or of its LS_ACC (the same layout, FC-LS-3 §6.6):
///
/// ```text
/// 0       command (03h PLOGI, 04h FLOGI, 02h LS_ACC), 3 reserved
/// 4..20   common service parameters: FC-PH version (2), BB credit (2), features (2),
///         BB_SC_N + receive data field size (2, low 12 bits), total concurrent sequences +
///         relative offset by category (4; R_A_TOV in FLOGI), E_D_TOV (4)
/// 20..28  N_Port_Name (WWPN)      28..36  Node_Name (WWNN)
/// 36..52  class 1   52..68 class 2   68..84 class 3 service parameters   84..100 class 4
/// 100..116 vendor version level
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Login<'a>(&'a [u8]);

impl<'a> Login<'a> {
    /// Offset of the class 3 service parameters.
    pub const CLASS3: usize = 68;

    /// Checks the length (at least the class 3 parameters: some initiators omit classes 4 and
    /// the vendor version, which FC-LS-3 allows on FLOGI/PLOGI of 116 bytes only, but a view
    /// must not panic either way).
    ///
    /// # Errors
    /// [`WireError::Truncated`] below 84 bytes.
    pub fn parse(p: &'a [u8]) -> Result<Self, WireError> {
        need("login service parameters", p, Self::CLASS3 + 16)?;
        Ok(Self(p))
    }
    /// Command code.
    pub fn command(&self) -> ElsCmd {
        ElsCmd(self.0[0])
    }
    /// FC-PH version, highest and lowest (byte 4, byte 5).
    pub fn version(&self) -> (u8, u8) {
        (self.0[4], self.0[5])
    }
    /// Buffer-to-buffer credit.
    pub fn bb_credit(&self) -> u16 {
        be16(self.0, 6)
    }
    /// Common features (see [`features`]).
    pub fn features(&self) -> u16 {
        be16(self.0, 8)
    }
    /// Receive data field size of the common parameters (the largest frame payload the
    /// sender accepts).
    pub fn common_rdfs(&self) -> u16 {
        be16(self.0, 10) & 0x0fff
    }
    /// Word 2 of the common parameters (PLOGI: total concurrent sequences and relative offset
    /// by category; FLOGI: R_A_TOV).
    pub fn common_word2(&self) -> u32 {
        be32(self.0, 12)
    }
    /// E_D_TOV in the unit the features say (ms unless [`features::EDTOV_NS`]).
    pub fn e_d_tov(&self) -> u32 {
        be32(self.0, 16)
    }
    /// N_Port_Name.
    pub fn wwpn(&self) -> u64 {
        be64(self.0, 20)
    }
    /// Node_Name.
    pub fn wwnn(&self) -> u64 {
        be64(self.0, 28)
    }
    /// Class 3 service options (word 0 bits 31..16): [`CLASS_VALID`], [`CLASS_SEQ_DELIVERY`].
    pub fn class3_options(&self) -> u16 {
        be16(self.0, Self::CLASS3)
    }
    /// Class 3 receive data field size.
    pub fn class3_rdfs(&self) -> u16 {
        be16(self.0, Self::CLASS3 + 6)
    }
    /// Class 3 total concurrent sequences.
    pub fn class3_concurrent_seqs(&self) -> u16 {
        be16(self.0, Self::CLASS3 + 8)
    }
    /// Class 3 open sequences per exchange.
    pub fn class3_open_seqs(&self) -> u8 {
        self.0[Self::CLASS3 + 13]
    }
    /// The largest frame payload the sender receives: the smaller of its common and class 3
    /// receive data field sizes (0 when class 3 is not valid).
    pub fn max_payload(&self) -> u16 {
        if self.class3_options() & CLASS_VALID == 0 {
            return 0;
        }
        self.common_rdfs().min(self.class3_rdfs())
    }
}

/// The service parameters this port sends in FLOGI/PLOGI and their LS_ACC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceParams {
    /// N_Port_Name.
    pub wwpn: u64,
    /// Node_Name.
    pub wwnn: u64,
    /// Receive data field size (256..=2112, a multiple of 4).
    pub rdfs: u16,
    /// Buffer-to-buffer credit.
    pub bb_credit: u16,
    /// E_D_TOV in ms.
    pub e_d_tov_ms: u32,
    /// R_A_TOV in ms (sent in FLOGI's word 2).
    pub r_a_tov_ms: u32,
    /// Total concurrent sequences and open sequences per exchange (class 3).
    pub concurrent_seqs: u16,
}

impl ServiceParams {
    /// The 116-byte payload with command `cmd` (PLOGI, FLOGI or LS_ACC). `fabric_login` selects
    /// FLOGI's word 2 (R_A_TOV) instead of PLOGI's (sequences and relative offset categories).
    pub fn build(&self, cmd: ElsCmd, fabric_login: bool) -> [u8; LOGIN_LEN] {
        let mut p = [0u8; LOGIN_LEN];
        p[0] = cmd.0;
        // FC-PH version 0x20 (FC-PH-3 and later) both ways, as libfc sends.
        p[4] = 0x20;
        p[5] = 0x20;
        p[6..8].copy_from_slice(&self.bb_credit.to_be_bytes());
        let feat = if fabric_login { 0 } else { features::CIRO };
        p[8..10].copy_from_slice(&feat.to_be_bytes());
        p[10..12].copy_from_slice(&(self.rdfs & 0x0fff).to_be_bytes());
        if fabric_login {
            p[12..16].copy_from_slice(&self.r_a_tov_ms.to_be_bytes());
        } else {
            p[12..14].copy_from_slice(&self.concurrent_seqs.to_be_bytes());
            // Relative offset allowed in every information category (as libfc sends).
            p[14..16].copy_from_slice(&0x001fu16.to_be_bytes());
        }
        p[16..20].copy_from_slice(&self.e_d_tov_ms.to_be_bytes());
        p[20..28].copy_from_slice(&self.wwpn.to_be_bytes());
        p[28..36].copy_from_slice(&self.wwnn.to_be_bytes());
        let c3 = Login::CLASS3;
        p[c3..c3 + 2].copy_from_slice(&(CLASS_VALID | CLASS_SEQ_DELIVERY).to_be_bytes());
        p[c3 + 6..c3 + 8].copy_from_slice(&self.rdfs.to_be_bytes());
        p[c3 + 8..c3 + 10].copy_from_slice(&self.concurrent_seqs.to_be_bytes());
        p[c3 + 13] = 1;
        p
    }
}

/// Length of a PRLI/PRLO payload with one service parameter page.
pub const PRLI_LEN: usize = 20;

/// FCP service parameter bits (word 3 of the page, FCP-4 table 10).
pub mod fcp_params {
    /// Task retry identification requested.
    pub const TASK_RETRY_ID: u32 = 0x0200;
    /// Retry (sequence-level error recovery, SRR) supported.
    pub const RETRY: u32 = 0x0100;
    /// Confirmed completion allowed.
    pub const CONFIRMED_COMPLETION: u32 = 0x0080;
    /// Data overlay allowed.
    pub const DATA_OVERLAY: u32 = 0x0040;
    /// Initiator function.
    pub const INITIATOR: u32 = 0x0020;
    /// Target function.
    pub const TARGET: u32 = 0x0010;
    /// FCP_XFER_RDY disabled for reads (always, FCP-4).
    pub const READ_XFER_RDY_DISABLED: u32 = 0x0002;
    /// FCP_XFER_RDY disabled for the first burst of writes.
    pub const WRITE_XFER_RDY_DISABLED: u32 = 0x0001;
}

/// Service parameter page flag: originator process associator valid.
pub const SPP_OPA_VALID: u8 = 0x80;
/// Service parameter page flag: responder process associator valid.
pub const SPP_RPA_VALID: u8 = 0x40;
/// Service parameter page flag: establish image pair.
pub const SPP_ESTABLISH_IMAGE_PAIR: u8 = 0x20;

/// PRLI/PRLO accept response codes (FC-LS-3 table 136), low 4 bits of the page's flags byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrliResponse(pub u8);

impl PrliResponse {
    /// Request executed.
    pub const EXECUTED: Self = Self(1);
    /// No resources available.
    pub const NO_RESOURCES: Self = Self(2);
    /// Initialization not complete.
    pub const INIT_NOT_COMPLETE: Self = Self(3);
    /// Target image does not exist.
    pub const NO_SUCH_IMAGE: Self = Self(4);
    /// Predefined configuration precludes.
    pub const CONFIGURATION_PRECLUDES: Self = Self(5);
    /// Request executed with conditions.
    pub const CONDITIONALLY_EXECUTED: Self = Self(6);
    /// Service parameters invalid.
    pub const INVALID_PARAMS: Self = Self(8);
}

/// The FC-4 type of an FCP service parameter page.
pub const TYPE_FCP: u8 = 0x08;

/// A view of a PRLI or PRLO payload (request or accept) and its first service parameter page:
///
/// ```text
/// 0 command   1 page length (10h)   2..4 payload length
/// page: 4 type (08h FCP)  5 type extension  6 flags (OPA valid, RPA valid, establish image pair;
///       response code in accepts)  8..12 originator PA  12..16 responder PA  16..20 parameters
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Prli<'a>(&'a [u8]);

impl<'a> Prli<'a> {
    /// Checks the lengths: the payload length field, the page length (at least 16) and one page
    /// present.
    ///
    /// # Errors
    /// [`WireError::Truncated`] or [`WireError::Invalid`] for a page length under 16 or a
    /// payload length field that disagrees with the bytes.
    pub fn parse(p: &'a [u8]) -> Result<Self, WireError> {
        need("PRLI header", p, 4)?;
        let page_len = usize::from(p[1]);
        let total = usize::from(be16(p, 2));
        if page_len < 16 {
            return Err(WireError::Invalid { what: "PRLI page length", value: page_len as u32 });
        }
        if total < 4 + page_len || total > p.len() {
            return Err(WireError::Invalid { what: "PRLI payload length", value: total as u32 });
        }
        Ok(Self(&p[..total]))
    }
    /// Command (PRLI, PRLO or LS_ACC).
    pub fn command(&self) -> ElsCmd {
        ElsCmd(self.0[0])
    }
    /// FC-4 type of the first page.
    pub fn fc4_type(&self) -> u8 {
        self.0[4]
    }
    /// Flags byte of the first page.
    pub fn flags(&self) -> u8 {
        self.0[6]
    }
    /// Response code (accepts).
    pub fn response(&self) -> PrliResponse {
        PrliResponse(self.0[6] & 0x0f)
    }
    /// FCP service parameters of the first page.
    pub fn params(&self) -> u32 {
        be32(self.0, 16)
    }
    /// Number of pages.
    pub fn pages(&self) -> usize {
        (self.0.len() - 4) / usize::from(self.0[1])
    }
}

/// Builds a PRLI/PRLO payload or accept with one FCP page.
pub fn build_prli(cmd: ElsCmd, flags: u8, params: u32) -> [u8; PRLI_LEN] {
    let mut p = [0u8; PRLI_LEN];
    p[0] = cmd.0;
    p[1] = 0x10;
    p[2..4].copy_from_slice(&(PRLI_LEN as u16).to_be_bytes());
    p[4] = TYPE_FCP;
    p[6] = flags;
    p[16..20].copy_from_slice(&params.to_be_bytes());
    p
}

/// Length of a LOGO payload.
pub const LOGO_LEN: usize = 16;

/// A view of a LOGO payload: 0 command, 5..8 N_Port ID, 8..16 N_Port_Name.
#[derive(Clone, Copy, Debug)]
pub struct Logo<'a>(&'a [u8]);

impl<'a> Logo<'a> {
    /// Checks the length.
    ///
    /// # Errors
    /// [`WireError::Truncated`] below 16 bytes.
    pub fn parse(p: &'a [u8]) -> Result<Self, WireError> {
        need("LOGO", p, LOGO_LEN)?;
        Ok(Self(p))
    }
    /// The N_Port ID logging out.
    pub fn port_id(&self) -> u32 {
        be24(self.0, 5)
    }
    /// Its N_Port_Name.
    pub fn wwpn(&self) -> u64 {
        be64(self.0, 8)
    }
}

/// Builds a LOGO payload.
pub fn build_logo(port_id: u32, wwpn: u64) -> [u8; LOGO_LEN] {
    let mut p = [0u8; LOGO_LEN];
    p[0] = ElsCmd::LOGO.0;
    p[5..8].copy_from_slice(&port_id.to_be_bytes()[1..]);
    p[8..16].copy_from_slice(&wwpn.to_be_bytes());
    p
}

/// Length of an ADISC payload and its accept.
pub const ADISC_LEN: usize = 28;

/// A view of an ADISC request or accept: 5..8 hard address, 8..16 N_Port_Name, 16..24
/// Node_Name, 25..28 N_Port ID.
#[derive(Clone, Copy, Debug)]
pub struct Adisc<'a>(&'a [u8]);

impl<'a> Adisc<'a> {
    /// Checks the length.
    ///
    /// # Errors
    /// [`WireError::Truncated`] below 28 bytes.
    pub fn parse(p: &'a [u8]) -> Result<Self, WireError> {
        need("ADISC", p, ADISC_LEN)?;
        Ok(Self(p))
    }
    /// N_Port_Name.
    pub fn wwpn(&self) -> u64 {
        be64(self.0, 8)
    }
    /// Node_Name.
    pub fn wwnn(&self) -> u64 {
        be64(self.0, 16)
    }
    /// N_Port ID.
    pub fn port_id(&self) -> u32 {
        be24(self.0, 25)
    }
}

/// Builds an ADISC request or accept.
pub fn build_adisc(cmd: ElsCmd, wwpn: u64, wwnn: u64, port_id: u32) -> [u8; ADISC_LEN] {
    let mut p = [0u8; ADISC_LEN];
    p[0] = cmd.0;
    p[8..16].copy_from_slice(&wwpn.to_be_bytes());
    p[16..24].copy_from_slice(&wwnn.to_be_bytes());
    p[25..28].copy_from_slice(&port_id.to_be_bytes()[1..]);
    p
}

/// Length of an RRQ payload.
pub const RRQ_LEN: usize = 12;

/// A view of an RRQ payload: 5..8 the exchange originator's S_ID, 8..10 OX_ID, 10..12 RX_ID.
#[derive(Clone, Copy, Debug)]
pub struct Rrq<'a>(&'a [u8]);

impl<'a> Rrq<'a> {
    /// Checks the length.
    ///
    /// # Errors
    /// [`WireError::Truncated`] below 12 bytes.
    pub fn parse(p: &'a [u8]) -> Result<Self, WireError> {
        need("RRQ", p, RRQ_LEN)?;
        Ok(Self(p))
    }
    /// The exchange originator's port ID.
    pub fn originator(&self) -> u32 {
        be24(self.0, 5)
    }
    /// OX_ID.
    pub fn ox_id(&self) -> u16 {
        be16(self.0, 8)
    }
    /// RX_ID.
    pub fn rx_id(&self) -> u16 {
        be16(self.0, 10)
    }
}

/// Builds an RRQ payload.
pub fn build_rrq(originator: u32, ox_id: u16, rx_id: u16) -> [u8; RRQ_LEN] {
    let mut p = [0u8; RRQ_LEN];
    p[0] = ElsCmd::RRQ.0;
    p[5..8].copy_from_slice(&originator.to_be_bytes()[1..]);
    p[8..10].copy_from_slice(&ox_id.to_be_bytes());
    p[10..12].copy_from_slice(&rx_id.to_be_bytes());
    p
}

/// Length of an LS_RJT payload.
pub const LS_RJT_LEN: usize = 8;

/// Builds an LS_RJT payload: 0 command, 5 reason, 6 explanation, 7 vendor unique.
pub fn build_ls_rjt(reason: RjtReason, explanation: RjtExplanation) -> [u8; LS_RJT_LEN] {
    [ElsCmd::LS_RJT.0, 0, 0, 0, 0, reason.0, explanation.0, 0]
}

/// Parses an LS_RJT payload into its reason and explanation.
///
/// # Errors
/// [`WireError::Truncated`] below 8 bytes, [`WireError::Invalid`] if it is not an LS_RJT.
pub fn parse_ls_rjt(p: &[u8]) -> Result<(RjtReason, RjtExplanation), WireError> {
    need("LS_RJT", p, LS_RJT_LEN)?;
    if p[0] != ElsCmd::LS_RJT.0 {
        return Err(WireError::Invalid { what: "LS_RJT command", value: u32::from(p[0]) });
    }
    Ok((RjtReason(p[5]), RjtExplanation(p[6])))
}

/// The bare LS_ACC payload (command word only), as LOGO and RRQ accepts are.
pub const LS_ACC: [u8; 4] = [ElsCmd::LS_ACC.0, 0, 0, 0];

#[cfg(test)]
mod tests {
    use super::*;

    const SP: ServiceParams = ServiceParams {
        wwpn: 0x2000_0011_2233_4455,
        wwnn: 0x1000_0011_2233_4455,
        rdfs: 2048,
        bb_credit: 10,
        e_d_tov_ms: 2000,
        r_a_tov_ms: 10000,
        concurrent_seqs: 255,
    };

    #[test]
    fn plogi_layout_matches_fc_ls() {
        let p = SP.build(ElsCmd::PLOGI, false);
        assert_eq!(p.len(), 116);
        assert_eq!(&p[..12], &[0x03, 0, 0, 0, 0x20, 0x20, 0, 10, 0x80, 0, 0x08, 0x00]);
        assert_eq!(&p[16..20], &2000u32.to_be_bytes());
        assert_eq!(&p[20..28], &[0x20, 0, 0, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(&p[28..36], &[0x10, 0, 0, 0x11, 0x22, 0x33, 0x44, 0x55]);
        // Class 3 valid + sequential delivery, rdfs 2048 at bytes 74..76.
        assert_eq!(&p[68..70], &[0x88, 0x00]);
        assert_eq!(&p[74..76], &[0x08, 0x00]);
        // Classes 1, 2 not valid.
        assert_eq!(p[36] & 0x80, 0);
        assert_eq!(p[52] & 0x80, 0);
        let v = Login::parse(&p).unwrap();
        assert_eq!(v.command(), ElsCmd::PLOGI);
        assert_eq!((v.wwpn(), v.wwnn()), (SP.wwpn, SP.wwnn));
        assert_eq!((v.common_rdfs(), v.class3_rdfs(), v.max_payload()), (2048, 2048, 2048));
        assert_eq!(v.e_d_tov(), 2000);
        assert_eq!(v.bb_credit(), 10);
        assert_eq!(v.features(), features::CIRO);
        let f = SP.build(ElsCmd::FLOGI, true);
        assert_eq!(Login::parse(&f).unwrap().common_word2(), 10000);
    }

    #[test]
    fn login_max_payload_is_the_smaller_and_zero_without_class3() {
        let mut p = SP.build(ElsCmd::PLOGI, false);
        p[74..76].copy_from_slice(&1024u16.to_be_bytes());
        assert_eq!(Login::parse(&p).unwrap().max_payload(), 1024);
        p[68] = 0;
        assert_eq!(Login::parse(&p).unwrap().max_payload(), 0);
        assert!(Login::parse(&p[..83]).is_err());
    }

    #[test]
    fn prli_layout_and_checks() {
        let p = build_prli(ElsCmd::PRLI, SPP_ESTABLISH_IMAGE_PAIR, fcp_params::INITIATOR | 0x2);
        assert_eq!(p, [0x20, 0x10, 0, 20, 0x08, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x22]);
        let v = Prli::parse(&p).unwrap();
        assert_eq!((v.command(), v.fc4_type(), v.flags(), v.params(), v.pages()), (ElsCmd::PRLI, 8, 0x20, 0x22, 1));
        let mut bad = p;
        bad[1] = 8;
        assert!(matches!(Prli::parse(&bad), Err(WireError::Invalid { .. })));
        bad = p;
        bad[3] = 40;
        assert!(Prli::parse(&bad).is_err());
        assert!(Prli::parse(&p[..3]).is_err());
    }

    #[test]
    fn small_payloads_round_trip() {
        let l = build_logo(0x010203, 7);
        assert_eq!(&l[..8], &[5, 0, 0, 0, 0, 1, 2, 3]);
        let v = Logo::parse(&l).unwrap();
        assert_eq!((v.port_id(), v.wwpn()), (0x010203, 7));
        let a = build_adisc(ElsCmd::ADISC, 1, 2, 0xabcdef);
        let v = Adisc::parse(&a).unwrap();
        assert_eq!((v.wwpn(), v.wwnn(), v.port_id()), (1, 2, 0xabcdef));
        let r = build_rrq(0x0a0b0c, 0x1234, 0x5678);
        assert_eq!(r, [0x12, 0, 0, 0, 0, 0x0a, 0x0b, 0x0c, 0x12, 0x34, 0x56, 0x78]);
        let v = Rrq::parse(&r).unwrap();
        assert_eq!((v.originator(), v.ox_id(), v.rx_id()), (0x0a0b0c, 0x1234, 0x5678));
        let j = build_ls_rjt(RjtReason::UNABLE, RjtExplanation::PLOGI_REQUIRED);
        assert_eq!(j, [1, 0, 0, 0, 0, 0x09, 0x1e, 0]);
        assert_eq!(parse_ls_rjt(&j).unwrap(), (RjtReason::UNABLE, RjtExplanation::PLOGI_REQUIRED));
        assert!(parse_ls_rjt(&LS_ACC).is_err());
        assert!(Logo::parse(&l[..15]).is_err() && Adisc::parse(&a[..27]).is_err() && Rrq::parse(&r[..11]).is_err());
        assert!(command(&[]).is_err());
    }
}
