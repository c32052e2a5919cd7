//! A minimal iSCSI initiator for the full feature phase tests, built on the crate's own `proto`
//! builders and views, and an in-process target (a RAM LUN 0 and a FILEIO LUN 1) listening on
//! 127.0.0.1.
//!
//! Every PDU the initiator receives is checked against what RFC 7143 promises an initiator:
//! StatSN in order (responses advance it, R2T and unsolicited NOP-In carry the next one without
//! advancing it), MaxCmdSN never going back, ExpCmdSN never beyond the commands sent, pad bytes
//! zero, digests right, no data segment longer than the MaxRecvDataSegmentLength we declared.
//! Every read has a timeout, so a target that goes silent fails a test instead of hanging it.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use scst::{Device, DeviceConfig, Disk, Lun, SgvConfig, SgvPool, Target};
use scst_backends::{FileOptions, FileStore, RamStore};
use scst_transport_iscsi::proto::bhs::{
    BHS_LEN, Bhs, DIGEST_LEN, Digests, LogoutReason, Opcode, RESERVED_TAG, Stage, TaskAttr, TmfFunction, pad_len,
    padded_len,
};
use scst_transport_iscsi::proto::build::{
    DataOutHeader, InitiatorSn, LoginRequestHeader, LogoutRequestHeader, NopOutHeader, ScsiCommandHeader,
    TextRequestHeader, TmfRequestHeader, encode_pdu,
};
use scst_transport_iscsi::proto::chap::{ChapAlgorithm, ChapSecret};
use scst_transport_iscsi::proto::digest;
use scst_transport_iscsi::proto::text::{decode_binary, encode_hex, parse_pairs, push_pair};
use scst_transport_iscsi::{ChapConfig, IscsiConfig, IscsiServer, TargetEntry};

/// The target every test logs in to.
pub const TARGET_NAME: &str = "iqn.2026-11.rs.scst:ffp";
/// The default initiator name.
pub const INITIATOR: &str = "iqn.2026-11.rs.scst:ffp-initiator";
/// Logical block size of both LUNs.
pub const BS: usize = 512;
/// Blocks per LUN (8 MiB).
pub const BLOCKS: u64 = 16384;
/// The RAM LUN (inline execution on the connection thread).
pub const RAM: u8 = 0;
/// The FILEIO LUN (execution on a device worker).
pub const FILE: u8 = 1;
/// How long any read waits before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// SCSI status GOOD.
pub const GOOD: u8 = 0x00;
/// SCSI status CHECK CONDITION.
pub const CHECK_CONDITION: u8 = 0x02;

/// The wire LUN field (SAM single-level, peripheral addressing) of a LUN below 256.
pub fn lun(n: u8) -> u64 {
    u64::from(n) << 48
}

/// Serial number arithmetic: `a < b`.
pub fn sn_lt(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

fn unique() -> u32 {
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Relaxed)
}

/// A fresh ISID (random qualifier type, unique in the process).
pub fn new_isid() -> [u8; 6] {
    let n = unique();
    let pid = std::process::id();
    [0x80, (pid >> 8) as u8, pid as u8, (n >> 8) as u8, n as u8, 0]
}

// ======================================================================
// The target
// ======================================================================

/// A server configuration for tests: an ephemeral port on 127.0.0.1 and a CmdSN window of
/// `window` (the login advertises the same one).
pub fn config(window: u32) -> IscsiConfig {
    let mut cfg =
        IscsiConfig { portals: vec!["127.0.0.1:0".parse().unwrap()], cmd_window: window, ..Default::default() };
    cfg.limits.cmd_window = window;
    cfg
}

/// An in-process target: LUN 0 on RAM, LUN 1 on a FILEIO tempfile.
pub struct TestTarget {
    pub server: IscsiServer,
    pub addr: SocketAddr,
    pub target: Arc<Target>,
    _file: tempfile::NamedTempFile,
}

impl TestTarget {
    /// A target with the default test configuration (window 32, no CHAP).
    pub fn start() -> Self {
        Self::with(config(32), None)
    }

    /// A target with a given configuration and CHAP requirement.
    pub fn with(cfg: IscsiConfig, chap: Option<ChapConfig>) -> Self {
        let target = Target::new(TARGET_NAME, SgvPool::new(SgvConfig::default()));
        let id = format!("ffp{}-{}", std::process::id(), unique());
        let ram = Disk::new(RamStore::new(BLOCKS * BS as u64, BS as u32).unwrap());
        let dev = Device::new(DeviceConfig::new(format!("{id}-ram")), ram).unwrap();
        target.add_lun(Lun(u16::from(RAM)), dev, false).unwrap();
        // In the target directory, on a disk file system (a tmpfs file would run every command
        // inline, as RAM does).
        let file = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let opts =
            FileOptions { size: Some(BLOCKS * BS as u64), block_size: BS as u32, thin: true, ..Default::default() };
        let store = FileStore::open(file.path(), opts).unwrap();
        let dev = Device::new(DeviceConfig::new(format!("{id}-file")), Disk::new(store)).unwrap();
        target.add_lun(Lun(u16::from(FILE)), dev, false).unwrap();
        let server = IscsiServer::new(cfg);
        server.add_target(TargetEntry { target: target.clone(), alias: None, chap, allow: Default::default() });
        let addr = server.listen().unwrap()[0];
        Self { server, addr, target, _file: file }
    }

    /// Logs in a normal session with the default keys and clears the power-on unit attention
    /// on both LUNs.
    pub fn login(&self) -> Conn {
        self.login_with(LoginOpts::normal())
    }

    /// Logs in with `opts` (must succeed) and clears the unit attentions.
    pub fn login_with(&self, opts: LoginOpts) -> Conn {
        let mut c = Conn::login(self.addr, &opts).unwrap_or_else(|f| panic!("login failed: {f:?}"));
        c.clear_ua(RAM);
        c.clear_ua(FILE);
        c
    }
}

impl Drop for TestTarget {
    fn drop(&mut self) {
        self.server.shutdown(Duration::ZERO);
    }
}

// ======================================================================
// PDUs
// ======================================================================

/// A received PDU: its BHS and its data segment (without pad and digest).
#[derive(Clone)]
pub struct Pdu {
    pub hdr: [u8; BHS_LEN],
    pub data: Vec<u8>,
}

impl Pdu {
    /// The header view.
    pub fn bhs(&self) -> Bhs<&[u8]> {
        Bhs::from_array(&self.hdr)
    }

    /// The opcode.
    pub fn op(&self) -> Opcode {
        self.bhs().opcode()
    }

    /// Whether this PDU consumes a StatSN.
    fn advances_stat_sn(&self) -> bool {
        self.bhs().consumes_stat_sn()
    }

    /// Sense data of a SCSI Response (after the SenseLength field).
    pub fn sense(&self) -> Vec<u8> {
        if self.data.len() < 2 {
            return Vec::new();
        }
        let n = usize::from(u16::from_be_bytes([self.data[0], self.data[1]]));
        self.data[2..2 + n].to_vec()
    }
}

impl std::fmt::Debug for Pdu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} data {} bytes", self.bhs(), self.data.len())
    }
}

/// (key, ASC, ASCQ) of fixed or descriptor format sense data.
pub fn sense_code(s: &[u8]) -> (u8, u8, u8) {
    match s.first().map(|b| b & 0x7f) {
        Some(0x70 | 0x71) if s.len() >= 14 => (s[2] & 0xf, s[12], s[13]),
        Some(0x72 | 0x73) if s.len() >= 4 => (s[1] & 0xf, s[2], s[3]),
        _ => panic!("not sense data: {s:02x?}"),
    }
}

/// What the next read produced.
#[derive(Debug)]
pub enum Next {
    Pdu(Pdu),
    /// Nothing arrived in time.
    Silent,
    /// The target closed the connection.
    Closed,
}

// ======================================================================
// Login
// ======================================================================

/// What to log in with.
#[derive(Clone, Debug)]
pub struct LoginOpts {
    pub initiator: String,
    /// None: a discovery session.
    pub target: Option<String>,
    pub isid: [u8; 6],
    pub tsih: u16,
    /// Operational keys, in order.
    pub keys: Vec<(String, String)>,
    /// CHAP user and secret.
    pub chap: Option<(String, Vec<u8>)>,
}

impl LoginOpts {
    /// A normal session to [`TARGET_NAME`] with libiscsi-like keys: no digests, InitialR2T=No,
    /// ImmediateData=Yes, 256 KiB bursts and segments, MaxOutstandingR2T=1.
    pub fn normal() -> Self {
        let keys = [
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("MaxRecvDataSegmentLength", "262144"),
            ("MaxOutstandingR2T", "1"),
            ("DefaultTime2Wait", "0"),
            ("DefaultTime2Retain", "0"),
            ("ErrorRecoveryLevel", "0"),
            ("MaxConnections", "1"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
        ];
        Self {
            initiator: INITIATOR.into(),
            target: Some(TARGET_NAME.into()),
            isid: new_isid(),
            tsih: 0,
            keys: keys.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            chap: None,
        }
    }

    /// A discovery session.
    pub fn discovery() -> Self {
        let keys = [("HeaderDigest", "None"), ("DataDigest", "None"), ("MaxRecvDataSegmentLength", "65536")];
        Self {
            initiator: INITIATOR.into(),
            target: None,
            isid: new_isid(),
            tsih: 0,
            keys: keys.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            chap: None,
        }
    }

    /// Sets (or adds) an operational key.
    pub fn key(mut self, k: &str, v: impl ToString) -> Self {
        let v = v.to_string();
        match self.keys.iter_mut().find(|(kk, _)| kk == k) {
            Some(e) => e.1 = v,
            None => self.keys.push((k.to_string(), v)),
        }
        self
    }
}

/// A login the target refused (or that broke).
#[derive(Debug)]
pub struct LoginFail {
    /// Status-Class and Status-Detail; 0 when the connection broke.
    pub status: u16,
    pub keys: HashMap<String, String>,
}

/// Text keys and values.
pub type Keys = HashMap<String, String>;

fn text_keys(data: &[u8]) -> Keys {
    parse_pairs(data).unwrap().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

// ======================================================================
// The initiator connection
// ======================================================================

/// A logged-in connection.
pub struct Conn {
    pub sock: TcpStream,
    pub digests: Digests,
    /// The next CmdSN to use.
    pub cmd_sn: u32,
    /// The next StatSN expected.
    pub exp_stat_sn: u32,
    /// The latest ExpCmdSN and MaxCmdSN the target reported.
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    next_itt: u32,
    /// The target's MaxRecvDataSegmentLength: the most we may send in one PDU.
    pub target_mrdsl: u32,
    /// Our MaxRecvDataSegmentLength.
    pub our_mrdsl: u32,
    /// Data segment size this initiator uses for immediate data and Data-Out (≤ target_mrdsl).
    pub chunk: u32,
    /// Keys of the final login response(s).
    pub keys: HashMap<String, String>,
    pub tsih: u16,
    pub isid: [u8; 6],
    /// Check the sequence numbers of received PDUs.
    pub check_sn: bool,
}

/// The outcome of a SCSI command run by [`Conn::exec`].
#[derive(Debug)]
pub struct Resp {
    pub status: u8,
    pub sense: Vec<u8>,
    /// Data-In reassembled by Buffer Offset.
    pub data: Vec<u8>,
    pub overflow: bool,
    pub underflow: bool,
    pub residual: u32,
    /// Every PDU received for the command, in order (Data-In, R2T, the final one).
    pub pdus: Vec<Pdu>,
}

impl Resp {
    /// (key, ASC, ASCQ) of the sense data.
    pub fn sense_code(&self) -> (u8, u8, u8) {
        sense_code(&self.sense)
    }

    /// The Data-In PDUs.
    pub fn data_ins(&self) -> Vec<&Pdu> {
        self.pdus.iter().filter(|p| p.op() == Opcode::DATA_IN).collect()
    }

    /// The R2Ts.
    pub fn r2ts(&self) -> Vec<&Pdu> {
        self.pdus.iter().filter(|p| p.op() == Opcode::R2T).collect()
    }

    /// The PDU that carried the status.
    pub fn last(&self) -> &Pdu {
        self.pdus.last().unwrap()
    }

    #[track_caller]
    pub fn assert_good(&self) {
        assert_eq!(self.status, GOOD, "expected GOOD, sense {:02x?}", self.sense);
    }

    #[track_caller]
    pub fn assert_check(&self, key: u8, asc: u8, ascq: u8) {
        assert_eq!(self.status, CHECK_CONDITION, "expected CHECK CONDITION");
        assert_eq!(self.sense_code(), (key, asc, ascq), "sense {:02x?}", self.sense);
    }
}

/// A SCSI command to send.
#[derive(Clone, Copy, Debug)]
pub struct CmdPdu<'a> {
    pub lun: u8,
    pub cdb: [u8; 16],
    pub read: bool,
    pub write: bool,
    pub edtl: u32,
    /// Immediate data.
    pub data: &'a [u8],
    /// F: no unsolicited Data-Out follows.
    pub final_bit: bool,
    /// I: immediate delivery (CmdSN not advanced).
    pub immediate: bool,
    /// CmdSN to put on the wire instead of the next one (then the counter is left alone).
    pub cmd_sn: Option<u32>,
    pub attr: TaskAttr,
}

impl<'a> CmdPdu<'a> {
    /// A command with no data.
    pub fn new(lun: u8, cdb: [u8; 16]) -> Self {
        Self {
            lun,
            cdb,
            read: false,
            write: false,
            edtl: 0,
            data: &[],
            final_bit: true,
            immediate: false,
            cmd_sn: None,
            attr: TaskAttr::SIMPLE,
        }
    }
}

/// TEST UNIT READY.
pub fn tur_cdb() -> [u8; 16] {
    [0; 16]
}

/// READ(10).
pub fn read10(lba: u32, blocks: u16) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x28;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// WRITE(10).
pub fn write10(lba: u32, blocks: u16) -> [u8; 16] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

/// A recognizable data pattern.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed).wrapping_add((i >> 9) as u8)).collect()
}

impl Conn {
    /// Opens a TCP connection with a read timeout.
    pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    /// Logs in (RFC 7143 §6): with CHAP, the security stage first (AuthMethod, CHAP_A, then
    /// CHAP_N/CHAP_R), then the operational keys with a transit to the full feature phase.
    pub fn login(addr: SocketAddr, o: &LoginOpts) -> Result<Self, LoginFail> {
        let sock = Self::connect(addr)
            .map_err(|e| LoginFail { status: 0, keys: HashMap::from([("error".into(), e.to_string())]) })?;
        let mut c = Self {
            sock,
            digests: Digests::default(),
            cmd_sn: 0x1000 + unique() * 7,
            exp_stat_sn: 0,
            exp_cmd_sn: 0,
            max_cmd_sn: 0,
            next_itt: 0x100,
            target_mrdsl: 8192,
            our_mrdsl: 8192,
            chunk: 8192,
            keys: HashMap::new(),
            tsih: 0,
            isid: o.isid,
            check_sn: true,
        };
        let itt = c.alloc_itt();
        let mut leading = Vec::new();
        push_pair(&mut leading, "InitiatorName", &o.initiator);
        match &o.target {
            Some(t) => {
                push_pair(&mut leading, "TargetName", t);
                push_pair(&mut leading, "SessionType", "Normal");
            }
            None => push_pair(&mut leading, "SessionType", "Discovery"),
        }
        let mut first = true;
        if let Some((user, secret)) = &o.chap {
            let mut d = leading.clone();
            push_pair(&mut d, "AuthMethod", "CHAP,None");
            let r = c.login_step(o, itt, &mut first, Stage::SECURITY, Stage::OPERATIONAL, true, &d)?;
            assert_eq!(r.1.get("AuthMethod").map(String::as_str), Some("CHAP"));
            let mut d = Vec::new();
            push_pair(&mut d, "CHAP_A", "5");
            let (_, k) = c.login_step(o, itt, &mut first, Stage::SECURITY, Stage::OPERATIONAL, false, &d)?;
            assert_eq!(k["CHAP_A"], "5");
            let id: u8 = k["CHAP_I"].parse().unwrap();
            let challenge = decode_binary(&k["CHAP_C"], 1024).unwrap();
            let rsp = ChapAlgorithm::MD5.response(id, &ChapSecret::new(secret.clone()), &challenge).unwrap();
            let mut d = Vec::new();
            push_pair(&mut d, "CHAP_N", user);
            push_pair(&mut d, "CHAP_R", &encode_hex(&rsp));
            let (p, _) = c.login_step(o, itt, &mut first, Stage::SECURITY, Stage::OPERATIONAL, true, &d)?;
            let b = p.bhs();
            assert!(b.transit() && b.nsg() == Stage::OPERATIONAL, "CHAP done: transit to the operational stage");
            leading.clear();
        }
        let mut d = leading;
        for (k, v) in &o.keys {
            push_pair(&mut d, k, v);
        }
        let mut keys = HashMap::new();
        for _ in 0..4 {
            let (p, k) = c.login_step(o, itt, &mut first, Stage::OPERATIONAL, Stage::FULL_FEATURE, true, &d)?;
            let b = p.bhs();
            keys.extend(k);
            if b.transit() && b.nsg() == Stage::FULL_FEATURE {
                c.tsih = b.tsih();
                c.exp_cmd_sn = b.exp_cmd_sn();
                c.max_cmd_sn = b.max_cmd_sn();
                c.finish_login(o, keys);
                return Ok(c);
            }
            d.clear();
        }
        panic!("the target did not complete the login");
    }

    /// One login request/response exchange. Returns the response header and keys.
    #[allow(clippy::too_many_arguments)]
    fn login_step(
        &mut self,
        o: &LoginOpts,
        itt: u32,
        first: &mut bool,
        csg: Stage,
        nsg: Stage,
        transit: bool,
        data: &[u8],
    ) -> Result<(Pdu, Keys), LoginFail> {
        let mut hdr = [0u8; BHS_LEN];
        LoginRequestHeader {
            transit,
            continue_bit: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            data_segment_len: data.len() as u32,
            isid: o.isid,
            tsih: o.tsih,
            itt,
            cid: 0,
            sn: InitiatorSn { cmd_sn: self.cmd_sn, exp_stat_sn: self.exp_stat_sn },
        }
        .write(&mut hdr);
        if let Err(e) = self.send_bytes(&self.wire(&hdr, data)) {
            return Err(LoginFail { status: 0, keys: HashMap::from([("error".into(), e.to_string())]) });
        }
        let p = match self.next_raw(TIMEOUT) {
            Next::Pdu(p) => p,
            other => {
                return Err(LoginFail { status: 0, keys: HashMap::from([("error".into(), format!("{other:?}"))]) });
            }
        };
        let b = p.bhs();
        assert_eq!(b.opcode(), Opcode::LOGIN_RESPONSE, "{p:?}");
        assert_eq!(b.itt(), itt);
        assert_eq!(b.isid(), o.isid);
        let keys = text_keys(&p.data);
        let status = u16::from(b.status_class()) << 8 | u16::from(b.status_detail());
        if status != 0 {
            return Err(LoginFail { status, keys });
        }
        if *first {
            *first = false;
        } else {
            assert_eq!(b.stat_sn(), self.exp_stat_sn, "login StatSN in order");
        }
        self.exp_stat_sn = b.stat_sn().wrapping_add(1);
        assert!(!b.continue_bit(), "responses this short are never continued");
        Ok((p, keys))
    }

    fn finish_login(&mut self, o: &LoginOpts, keys: HashMap<String, String>) {
        let ours = |k: &str| o.keys.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
        self.digests = Digests {
            header: keys.get("HeaderDigest").is_some_and(|v| v == "CRC32C"),
            data: keys.get("DataDigest").is_some_and(|v| v == "CRC32C"),
        };
        self.target_mrdsl = keys.get("MaxRecvDataSegmentLength").map_or(8192, |v| v.parse().unwrap());
        self.our_mrdsl = ours("MaxRecvDataSegmentLength").map_or(8192, |v| v.parse().unwrap());
        self.chunk = self.target_mrdsl;
        self.keys = keys;
    }

    /// A negotiated numeric key (from the login response).
    pub fn num(&self, k: &str) -> u32 {
        self.keys.get(k).unwrap_or_else(|| panic!("{k} not in the login response")).parse().unwrap()
    }

    /// A negotiated boolean key.
    pub fn yes(&self, k: &str) -> bool {
        match self.keys.get(k).map(String::as_str) {
            Some("Yes") => true,
            Some("No") => false,
            v => panic!("{k}: {v:?}"),
        }
    }

    /// A new Initiator Task Tag.
    pub fn alloc_itt(&mut self) -> u32 {
        self.next_itt += 1;
        self.next_itt
    }

    // ----- sending ---------------------------------------------------------------------

    /// The wire bytes of a PDU: BHS, header digest, data, pad, data digest.
    pub fn wire(&self, hdr: &[u8; BHS_LEN], data: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(BHS_LEN + 8 + padded_len(data.len()));
        encode_pdu(&mut v, hdr, &[], data, self.digests);
        v
    }

    /// Sends a PDU.
    #[track_caller]
    pub fn send(&mut self, hdr: &[u8; BHS_LEN], data: &[u8]) {
        let w = self.wire(hdr, data);
        self.sock.write_all(&w).expect("send");
    }

    /// Sends raw bytes (no digest added).
    pub fn send_bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.sock.write_all(b)
    }

    /// Sends a SCSI Command PDU; returns its ITT.
    pub fn send_cmd(&mut self, c: &CmdPdu<'_>) -> u32 {
        let itt = self.alloc_itt();
        self.send_cmd_itt(c, itt);
        itt
    }

    /// Sends a SCSI Command PDU with a given ITT.
    pub fn send_cmd_itt(&mut self, c: &CmdPdu<'_>, itt: u32) {
        let cmd_sn = c.cmd_sn.unwrap_or(self.cmd_sn);
        let mut hdr = [0u8; BHS_LEN];
        ScsiCommandHeader {
            immediate: c.immediate,
            final_bit: c.final_bit,
            read: c.read,
            write: c.write,
            attr: c.attr,
            total_ahs_len: 0,
            data_segment_len: c.data.len() as u32,
            lun: lun(c.lun),
            itt,
            expected_data_transfer_length: c.edtl,
            sn: InitiatorSn { cmd_sn, exp_stat_sn: self.exp_stat_sn },
            cdb: c.cdb,
        }
        .write(&mut hdr);
        if !c.immediate && c.cmd_sn.is_none() {
            self.cmd_sn = self.cmd_sn.wrapping_add(1);
        }
        self.send(&hdr, c.data);
    }

    /// A Data-Out PDU header.
    #[allow(clippy::too_many_arguments)]
    pub fn data_out_hdr(
        &self,
        lun_: u8,
        itt: u32,
        ttt: u32,
        data_sn: u32,
        offset: u32,
        len: usize,
        fin: bool,
    ) -> [u8; 48] {
        let mut hdr = [0u8; BHS_LEN];
        DataOutHeader {
            final_bit: fin,
            data_segment_len: len as u32,
            lun: lun(lun_),
            itt,
            ttt,
            exp_stat_sn: self.exp_stat_sn,
            data_sn,
            buffer_offset: offset,
        }
        .write(&mut hdr);
        hdr
    }

    /// Sends one Data-Out PDU.
    #[allow(clippy::too_many_arguments)]
    pub fn send_data_out(&mut self, lun_: u8, itt: u32, ttt: u32, data_sn: u32, offset: u32, data: &[u8], fin: bool) {
        let hdr = self.data_out_hdr(lun_, itt, ttt, data_sn, offset, data.len(), fin);
        self.send(&hdr, data);
    }

    /// Sends `data` (the bytes at `offset..`) as one sequence of Data-Out PDUs of at most
    /// `self.chunk` bytes, DataSN from 0, F on the last.
    pub fn send_sequence(&mut self, lun_: u8, itt: u32, ttt: u32, offset: u32, data: &[u8]) {
        let chunk = self.chunk.min(self.target_mrdsl) as usize;
        let n = data.len().div_ceil(chunk);
        for (i, part) in data.chunks(chunk).enumerate() {
            self.send_data_out(lun_, itt, ttt, i as u32, offset + (i * chunk) as u32, part, i + 1 == n);
        }
    }

    /// Sends a NOP-Out.
    pub fn send_nop_out(&mut self, itt: u32, ttt: u32, immediate: bool, data: &[u8]) {
        let mut hdr = [0u8; BHS_LEN];
        NopOutHeader {
            immediate,
            data_segment_len: data.len() as u32,
            lun: 0,
            itt,
            ttt,
            sn: InitiatorSn { cmd_sn: self.cmd_sn, exp_stat_sn: self.exp_stat_sn },
        }
        .write(&mut hdr);
        if !immediate {
            self.cmd_sn = self.cmd_sn.wrapping_add(1);
        }
        self.send(&hdr, data);
    }

    /// Sends a Task Management Function Request (immediate); returns its ITT.
    pub fn send_tmf(&mut self, function: u8, lun_: u8, rtt: u32, ref_cmd_sn: u32) -> u32 {
        let itt = self.alloc_itt();
        let mut hdr = [0u8; BHS_LEN];
        TmfRequestHeader {
            immediate: true,
            function: TmfFunction(function),
            lun: lun(lun_),
            itt,
            referenced_task_tag: rtt,
            sn: InitiatorSn { cmd_sn: self.cmd_sn, exp_stat_sn: self.exp_stat_sn },
            ref_cmd_sn,
            exp_data_sn: 0,
        }
        .write(&mut hdr);
        self.send(&hdr, &[]);
        itt
    }

    /// Runs a TMF and returns the TMF Response.
    pub fn tmf(&mut self, function: u8, lun_: u8, rtt: u32, ref_cmd_sn: u32) -> Pdu {
        let itt = self.send_tmf(function, lun_, rtt, ref_cmd_sn);
        let p = self.recv();
        assert_eq!(p.op(), Opcode::TASK_MGMT_RESPONSE, "{p:?}");
        assert_eq!(p.bhs().itt(), itt);
        p
    }

    /// Sends a Logout Request (immediate); returns its ITT.
    pub fn send_logout(&mut self, reason: LogoutReason) -> u32 {
        let itt = self.alloc_itt();
        let mut hdr = [0u8; BHS_LEN];
        LogoutRequestHeader {
            immediate: true,
            reason,
            itt,
            cid: 0,
            sn: InitiatorSn { cmd_sn: self.cmd_sn, exp_stat_sn: self.exp_stat_sn },
        }
        .write(&mut hdr);
        self.send(&hdr, &[]);
        itt
    }

    /// A Text Request/Response exchange (one PDU each way).
    pub fn text(&mut self, pairs: &[(&str, &str)]) -> Pdu {
        let mut d = Vec::new();
        for (k, v) in pairs {
            push_pair(&mut d, k, v);
        }
        let itt = self.alloc_itt();
        let mut hdr = [0u8; BHS_LEN];
        TextRequestHeader {
            immediate: false,
            final_bit: true,
            continue_bit: false,
            data_segment_len: d.len() as u32,
            lun: 0,
            itt,
            ttt: RESERVED_TAG,
            sn: InitiatorSn { cmd_sn: self.cmd_sn, exp_stat_sn: self.exp_stat_sn },
        }
        .write(&mut hdr);
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.send(&hdr, &d);
        let p = self.recv();
        assert_eq!(p.op(), Opcode::TEXT_RESPONSE, "{p:?}");
        assert_eq!(p.bhs().itt(), itt);
        p
    }

    // ----- receiving -------------------------------------------------------------------

    /// Reads one PDU (no sequence number checks), waiting at most `wait` for it to start.
    pub fn next_raw(&mut self, wait: Duration) -> Next {
        self.sock.set_read_timeout(Some(wait.max(Duration::from_millis(1)))).unwrap();
        let mut one = [0u8; 1];
        let r = self.sock.peek(&mut one);
        self.sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        match r {
            Ok(0) => return Next::Closed,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Next::Silent,
            Err(_) => return Next::Closed,
        }
        match self.read_pdu() {
            Ok(p) => Next::Pdu(p),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                panic!("a PDU started but did not complete within {TIMEOUT:?}")
            }
            Err(_) => Next::Closed,
        }
    }

    fn read_pdu(&mut self) -> io::Result<Pdu> {
        let mut hdr = [0u8; BHS_LEN];
        self.sock.read_exact(&mut hdr)?;
        let b = Bhs::from_array(&hdr);
        assert_eq!(b.total_ahs_len(), 0, "target PDUs carry no AHS: {b:?}");
        if self.digests.header {
            let mut d = [0u8; DIGEST_LEN];
            self.sock.read_exact(&mut d)?;
            assert_eq!(d, digest::header_digest(&hdr, &[]), "header digest of {b:?}");
        }
        let dsl = b.data_segment_len() as usize;
        let mut data = vec![0u8; padded_len(dsl)];
        self.sock.read_exact(&mut data)?;
        assert!(data[dsl..].iter().all(|x| *x == 0), "pad bytes are zero");
        if self.digests.data && dsl > 0 {
            let mut d = [0u8; DIGEST_LEN];
            self.sock.read_exact(&mut d)?;
            assert_eq!(d, digest::data_digest([&data[..dsl]], pad_len(dsl)), "data digest of {b:?}");
        }
        data.truncate(dsl);
        Ok(Pdu { hdr, data })
    }

    /// Checks and records the sequence numbers of a received full-feature-phase PDU.
    #[track_caller]
    fn track(&mut self, p: &Pdu) {
        let b = p.bhs();
        assert!(
            p.data.len() <= self.our_mrdsl as usize,
            "{p:?}: data segment longer than our MaxRecvDataSegmentLength {}",
            self.our_mrdsl
        );
        if !self.check_sn {
            return;
        }
        let (exp, max) = (b.exp_cmd_sn(), b.max_cmd_sn());
        assert!(!sn_lt(max, exp.wrapping_sub(1)), "{p:?}: MaxCmdSN {max:#x} < ExpCmdSN {exp:#x} - 1");
        assert!(!sn_lt(max, self.max_cmd_sn), "{p:?}: MaxCmdSN went back from {:#x} to {max:#x}", self.max_cmd_sn);
        assert!(!sn_lt(exp, self.exp_cmd_sn), "{p:?}: ExpCmdSN went back from {:#x} to {exp:#x}", self.exp_cmd_sn);
        assert!(!sn_lt(self.cmd_sn, exp), "{p:?}: ExpCmdSN {exp:#x} beyond the next CmdSN {:#x}", self.cmd_sn);
        self.exp_cmd_sn = exp;
        self.max_cmd_sn = max;
        match b.opcode() {
            Opcode::R2T | Opcode::NOP_IN | Opcode::DATA_IN if !p.advances_stat_sn() => {
                if b.opcode() != Opcode::DATA_IN {
                    assert_eq!(b.stat_sn(), self.exp_stat_sn, "{p:?}: carries the next StatSN");
                }
            }
            _ if p.advances_stat_sn() => {
                assert_eq!(b.stat_sn(), self.exp_stat_sn, "{p:?}: StatSN in order");
                self.exp_stat_sn = self.exp_stat_sn.wrapping_add(1);
            }
            op => panic!("unexpected opcode {op:?} in the full feature phase"),
        }
    }

    /// The next PDU, or what happened instead, within `wait`.
    #[track_caller]
    pub fn next(&mut self, wait: Duration) -> Next {
        let n = self.next_raw(wait);
        if let Next::Pdu(p) = &n {
            self.track(p);
        }
        n
    }

    /// The next PDU (fails the test after [`TIMEOUT`] or on a closed connection).
    #[track_caller]
    pub fn recv(&mut self) -> Pdu {
        match self.next(TIMEOUT) {
            Next::Pdu(p) => p,
            other => panic!("expected a PDU, got {other:?}"),
        }
    }

    /// Asserts that nothing arrives for `d`.
    #[track_caller]
    pub fn expect_silence(&mut self, d: Duration) {
        match self.next(d) {
            Next::Silent => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// Reads until the target closes the connection (within `within`); returns the PDUs that
    /// came first.
    #[track_caller]
    pub fn expect_closed(&mut self, within: Duration) -> Vec<Pdu> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_raw(left) {
                Next::Closed => return seen,
                Next::Pdu(p) => seen.push(p),
                Next::Silent => panic!("connection still open after {within:?}; received {seen:?}"),
            }
        }
    }

    // ----- SCSI commands -----------------------------------------------------------------

    /// Collects the PDUs of command `itt` until its status: Data-In (checked: DataSN from 0,
    /// contiguous offsets, F at the end of each burst is left to the caller), answering R2Ts
    /// from `out` (the whole write buffer) when given.
    #[track_caller]
    pub fn collect(&mut self, lun_: u8, itt: u32, out: Option<&[u8]>) -> Resp {
        let mut r = Resp {
            status: 0xff,
            sense: vec![],
            data: vec![],
            overflow: false,
            underflow: false,
            residual: 0,
            pdus: vec![],
        };
        let mut next_data_sn = 0u32;
        let mut r2t_sn = 0u32;
        loop {
            let p = self.recv();
            let b = p.bhs();
            assert_eq!(b.itt(), itt, "a PDU of another task: {p:?}");
            match b.opcode() {
                Opcode::DATA_IN => {
                    assert!(!p.data.is_empty(), "empty Data-In: {p:?}");
                    assert_eq!(b.data_sn(), next_data_sn, "DataSN in order");
                    next_data_sn += 1;
                    let off = b.buffer_offset() as usize;
                    assert_eq!(off, r.data.len(), "Data-In in order");
                    r.data.extend_from_slice(&p.data);
                    assert_eq!(b.ttt(), RESERVED_TAG);
                    assert_eq!(b.lun(), lun(lun_));
                    if b.status_bit() {
                        assert!(b.final_bit(), "S without F: {p:?}");
                        r.status = b.status();
                        r.overflow = b.overflow_bit();
                        r.underflow = b.underflow_bit();
                        r.residual = b.residual_count();
                        r.pdus.push(p);
                        return r;
                    }
                    r.pdus.push(p);
                }
                Opcode::R2T => {
                    let out = out.unwrap_or_else(|| panic!("R2T for a command without data: {p:?}"));
                    assert_eq!(b.r2t_sn(), r2t_sn, "R2TSN in order");
                    r2t_sn += 1;
                    assert_ne!(b.ttt(), RESERVED_TAG);
                    assert_eq!(b.lun(), lun(lun_));
                    let (off, len) = (b.buffer_offset() as usize, b.desired_data_transfer_length() as usize);
                    assert!(len > 0 && off + len <= out.len(), "R2T beyond the data: {p:?}");
                    let ttt = b.ttt();
                    r.pdus.push(p);
                    self.send_sequence(lun_, itt, ttt, off as u32, &out[off..off + len]);
                }
                Opcode::SCSI_RESPONSE => {
                    assert!(b.final_bit());
                    assert_eq!(b.response(), 0, "command completed at target");
                    r.status = b.status();
                    r.sense = p.sense();
                    r.overflow = b.overflow_bit();
                    r.underflow = b.underflow_bit();
                    r.residual = b.residual_count();
                    assert!(!(r.overflow && r.underflow));
                    if !r.overflow && !r.underflow {
                        assert_eq!(r.residual, 0, "residual count without O/U");
                    }
                    assert_eq!(b.exp_data_sn(), next_data_sn, "ExpDataSN = Data-In PDUs sent");
                    r.pdus.push(p);
                    return r;
                }
                op => panic!("unexpected {op:?} for task {itt:#x}: {p:?}"),
            }
        }
    }

    /// Runs a command to completion the way a libiscsi-like initiator would: immediate data
    /// (ImmediateData=Yes) up to FirstBurstLength, unsolicited Data-Out (InitialR2T=No) up to
    /// FirstBurstLength, then whatever the R2Ts ask for.
    #[track_caller]
    pub fn exec(&mut self, lun_: u8, cdb: [u8; 16], read: bool, edtl: u32, out: &[u8]) -> Resp {
        let write = !out.is_empty();
        // Irrelevant with InitialR2T=Yes and ImmediateData=No (RFC 7143 §13.14).
        let first_burst = self.keys.get("FirstBurstLength").and_then(|v| v.parse().ok()).unwrap_or(0usize);
        let chunk = self.chunk.min(self.target_mrdsl) as usize;
        let imm = if write && self.yes("ImmediateData") { out.len().min(first_burst).min(chunk) } else { 0 };
        let unsol_end = if write && !self.yes("InitialR2T") { out.len().min(first_burst) } else { imm };
        let c = CmdPdu { read, write, edtl, data: &out[..imm], final_bit: unsol_end == imm, ..CmdPdu::new(lun_, cdb) };
        let itt = self.send_cmd(&c);
        if unsol_end > imm {
            self.send_sequence(lun_, itt, RESERVED_TAG, imm as u32, &out[imm..unsol_end]);
        }
        self.collect(lun_, itt, write.then_some(out))
    }

    /// TEST UNIT READY.
    #[track_caller]
    pub fn tur(&mut self, lun_: u8) -> Resp {
        self.exec(lun_, tur_cdb(), false, 0, &[])
    }

    /// READ(10) of `blocks` blocks, EDTL matching.
    #[track_caller]
    pub fn read(&mut self, lun_: u8, lba: u32, blocks: u16) -> Resp {
        self.exec(lun_, read10(lba, blocks), true, u32::from(blocks) * BS as u32, &[])
    }

    /// WRITE(10) of `data` (whole blocks).
    #[track_caller]
    pub fn write(&mut self, lun_: u8, lba: u32, data: &[u8]) -> Resp {
        assert_eq!(data.len() % BS, 0);
        self.exec(lun_, write10(lba, (data.len() / BS) as u16), false, data.len() as u32, data)
    }

    /// Sends TEST UNIT READY until it is GOOD (unit attentions are reported once each).
    #[track_caller]
    pub fn clear_ua(&mut self, lun_: u8) {
        for _ in 0..8 {
            let r = self.tur(lun_);
            if r.status == GOOD {
                return;
            }
            assert_eq!(r.sense_code().0, 6, "only unit attentions expected: {:02x?}", r.sense);
        }
        panic!("TEST UNIT READY never became GOOD");
    }

    /// Asserts the connection still runs commands: TEST UNIT READY is GOOD.
    #[track_caller]
    pub fn assert_usable(&mut self) {
        self.tur(RAM).assert_good();
    }
}
