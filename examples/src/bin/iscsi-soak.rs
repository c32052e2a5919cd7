//! `iscsi-soak`: a verifying load generator for an iSCSI target (used by `scripts/soak.sh`).
//!
//! Opens `--sessions` sessions to one LUN, each keeping `--depth` commands in flight: a mix of
//! READ(10) and WRITE(10) from 4 KiB to 256 KiB (writes above FirstBurstLength go through R2Ts).
//! Each session owns a disjoint region of the LUN, cut into 4 KiB slots; every write puts data
//! derived from (session, slot, version) in its slots and, once answered GOOD, makes that version
//! the slot's expected content; every read of a slot written before is compared with it. No
//! command touches a slot another command of the session has in flight.
//!
//! BUSY and TASK SET FULL (the target's buffer memory is exhausted) are counted and retried
//! with other commands; any other status, a data mismatch, a protocol surprise or a command
//! unanswered for 30 s is an error. Prints progress every `--report` seconds and a summary;
//! exits with status 1 on any error.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use scst_transport_iscsi::proto::bhs::{BHS_LEN, Bhs, DIGEST_LEN, Digests, LogoutReason, Opcode, RESERVED_TAG, Stage};
use scst_transport_iscsi::proto::bhs::{TaskAttr, pad_len};
use scst_transport_iscsi::proto::build::{
    DataOutHeader, InitiatorSn, LoginRequestHeader, LogoutRequestHeader, NopOutHeader, ScsiCommandHeader, encode_pdu,
};
use scst_transport_iscsi::proto::digest;
use scst_transport_iscsi::proto::text::{parse_pairs, push_pair};

const BS: usize = 512;
/// Verification granularity.
const SLOT: usize = 4096;
const SLOT_BLOCKS: u32 = (SLOT / BS) as u32;
/// A command unanswered this long is an error (a hang).
const CMD_TIMEOUT: Duration = Duration::from_secs(30);
const STATUS_BUSY: u8 = 0x08;
const STATUS_TASK_SET_FULL: u8 = 0x28;

/// Verifying iSCSI load generator.
#[derive(Parser, Debug, Clone)]
#[command(version)]
struct Args {
    /// Target portal.
    #[arg(long, default_value = "127.0.0.1:3260")]
    portal: SocketAddr,
    /// Target name.
    #[arg(long, default_value = "iqn.2026-11.rs.scst:default")]
    target: String,
    /// LUN.
    #[arg(long, default_value_t = 0)]
    lun: u8,
    /// Sessions.
    #[arg(long, default_value_t = 64)]
    sessions: u32,
    /// Commands in flight per session.
    #[arg(long, default_value_t = 32)]
    depth: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 10)]
    report: u64,
    /// Percentage of writes.
    #[arg(long, default_value_t = 50)]
    write_pct: u32,
    /// CRC32C header and data digests.
    #[arg(long)]
    digests: bool,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds to stay logged in and idle before the load starts (prints `READY` first).
    #[arg(long, default_value_t = 0)]
    idle: u64,
}

// ======================================================================
// Statistics
// ======================================================================

#[derive(Default)]
struct Stats {
    reads: AtomicU64,
    writes: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    verified_bytes: AtomicU64,
    unverified_reads: AtomicU64,
    busy: AtomicU64,
    r2ts: AtomicU64,
    errors: AtomicU64,
    max_latency_us: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Stats {
    fn ops(&self) -> u64 {
        self.reads.load(Relaxed) + self.writes.load(Relaxed)
    }
}

// ======================================================================
// Data
// ======================================================================

/// The content of one slot at one version: its identity, then pseudo-random words.
fn fill_slot(out: &mut [u8], session: u32, slot: u32, version: u32) {
    let mut x =
        (u64::from(session) << 48 ^ u64::from(slot) << 20 ^ u64::from(version)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for w in out.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
    out[..4].copy_from_slice(&session.to_be_bytes());
    out[4..8].copy_from_slice(&slot.to_be_bytes());
    out[8..12].copy_from_slice(&version.to_be_bytes());
}

/// A small xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ======================================================================
// Wire
// ======================================================================

fn sn_lt(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

/// Writes one PDU (BHS, digests, data, pad) in one `write_all`.
fn send_pdu(w: &mut impl Write, d: Digests, hdr: &[u8; BHS_LEN], data: &[u8]) -> io::Result<()> {
    let mut v = Vec::with_capacity(BHS_LEN + 8 + data.len() + 3);
    encode_pdu(&mut v, hdr, &[], data, d);
    w.write_all(&v)
}

/// Reads one PDU; digest errors are I/O errors.
fn read_pdu(r: &mut impl Read, d: Digests) -> io::Result<([u8; BHS_LEN], Vec<u8>)> {
    let mut hdr = [0u8; BHS_LEN];
    r.read_exact(&mut hdr)?;
    let b = Bhs::from_array(&hdr);
    if b.total_ahs_len() != 0 {
        return Err(io::Error::other(format!("unexpected AHS in {b:?}")));
    }
    if d.header {
        let mut x = [0u8; DIGEST_LEN];
        r.read_exact(&mut x)?;
        if !digest::verify(&x, digest::header_digest(&hdr, &[])) {
            return Err(io::Error::other("header digest error"));
        }
    }
    let dsl = b.data_segment_len() as usize;
    let mut data = vec![0u8; dsl + pad_len(dsl)];
    r.read_exact(&mut data)?;
    if d.data && dsl > 0 {
        let mut x = [0u8; DIGEST_LEN];
        r.read_exact(&mut x)?;
        if !digest::verify(&x, digest::data_digest_with_pad(&data[..dsl], &data[dsl..])) {
            return Err(io::Error::other("data digest error"));
        }
    }
    data.truncate(dsl);
    Ok((hdr, data))
}

/// A logged-in connection, before it is split into sender and receiver.
struct Login {
    sock: TcpStream,
    digests: Digests,
    cmd_sn: u32,
    exp_stat_sn: u32,
    max_cmd_sn: u32,
    /// The most data the target accepts in one PDU.
    target_mrdsl: u32,
    first_burst: u32,
    immediate_data: bool,
}

fn login(a: &Args, session: u32) -> Result<Login, String> {
    let sock = TcpStream::connect_timeout(&a.portal, Duration::from_secs(10)).map_err(|e| format!("connect: {e}"))?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let mut isid = [0x80, 0, 0, 0, 0, 0];
    isid[1..3].copy_from_slice(&(std::process::id() as u16).to_be_bytes());
    isid[3..5].copy_from_slice(&(session as u16).to_be_bytes());
    let digest = if a.digests { "CRC32C" } else { "None" };
    let mut d = Vec::new();
    push_pair(&mut d, "InitiatorName", &format!("iqn.2026-11.rs.scst:soak-{session}"));
    push_pair(&mut d, "TargetName", &a.target);
    push_pair(&mut d, "SessionType", "Normal");
    for (k, v) in [
        ("HeaderDigest", digest),
        ("DataDigest", digest),
        ("InitialR2T", "Yes"),
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
    ] {
        push_pair(&mut d, k, v);
    }
    let mut keys: HashMap<String, String> = HashMap::new();
    let mut w = &sock;
    let mut r = &sock;
    for _ in 0..4 {
        let mut h = [0u8; BHS_LEN];
        LoginRequestHeader {
            transit: true,
            csg: Stage::OPERATIONAL,
            nsg: Stage::FULL_FEATURE,
            data_segment_len: d.len() as u32,
            isid,
            itt: 1,
            ..Default::default()
        }
        .write(&mut h);
        send_pdu(&mut w, Digests::default(), &h, &d).map_err(|e| format!("login send: {e}"))?;
        let (rh, data) = read_pdu(&mut r, Digests::default()).map_err(|e| format!("login response: {e}"))?;
        let b = Bhs::from_array(&rh);
        if b.opcode() != Opcode::LOGIN_RESPONSE || b.status_class() != 0 {
            return Err(format!("login refused: {b:?} status {:02x}{:02x}", b.status_class(), b.status_detail()));
        }
        for (k, v) in parse_pairs(&data).map_err(|e| format!("login keys: {e:?}"))? {
            keys.insert(k.to_string(), v.to_string());
        }
        if b.transit() && b.nsg() == Stage::FULL_FEATURE {
            let num = |k: &str, dflt: u32| keys.get(k).and_then(|v| v.parse().ok()).unwrap_or(dflt);
            return Ok(Login {
                digests: Digests {
                    header: keys.get("HeaderDigest").is_some_and(|v| v == "CRC32C"),
                    data: keys.get("DataDigest").is_some_and(|v| v == "CRC32C"),
                },
                cmd_sn: b.exp_cmd_sn(),
                exp_stat_sn: b.stat_sn().wrapping_add(1),
                max_cmd_sn: b.max_cmd_sn(),
                target_mrdsl: num("MaxRecvDataSegmentLength", 8192),
                first_burst: num("FirstBurstLength", 65536),
                immediate_data: keys.get("ImmediateData").is_some_and(|v| v == "Yes"),
                sock,
            });
        }
        d.clear();
    }
    Err("the target did not complete the login".into())
}

impl Login {
    /// One command, synchronously (before the load starts): (status, data).
    fn command(&mut self, lun: u8, cdb: [u8; 16], read_len: u32) -> Result<(u8, Vec<u8>), String> {
        let mut h = [0u8; BHS_LEN];
        ScsiCommandHeader {
            final_bit: true,
            read: read_len > 0,
            attr: TaskAttr::SIMPLE,
            lun: u64::from(lun) << 48,
            itt: 7,
            expected_data_transfer_length: read_len,
            sn: InitiatorSn { cmd_sn: self.cmd_sn, exp_stat_sn: self.exp_stat_sn },
            cdb,
            ..Default::default()
        }
        .write(&mut h);
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        send_pdu(&mut &self.sock, self.digests, &h, &[]).map_err(|e| e.to_string())?;
        let mut data = Vec::new();
        loop {
            let (rh, d) = read_pdu(&mut &self.sock, self.digests).map_err(|e| e.to_string())?;
            let b = Bhs::from_array(&rh);
            match b.opcode() {
                Opcode::DATA_IN => {
                    data.extend_from_slice(&d);
                    if b.status_bit() {
                        self.exp_stat_sn = b.stat_sn().wrapping_add(1);
                        self.max_cmd_sn = b.max_cmd_sn();
                        return Ok((b.status(), data));
                    }
                }
                Opcode::SCSI_RESPONSE => {
                    self.exp_stat_sn = b.stat_sn().wrapping_add(1);
                    self.max_cmd_sn = b.max_cmd_sn();
                    return Ok((b.status(), data));
                }
                _ => return Err(format!("unexpected {b:?}")),
            }
        }
    }
}

// ======================================================================
// One session under load
// ======================================================================

struct Op {
    write: bool,
    first_slot: u32,
    nslots: u32,
    /// Writes: the new version of every slot; reads: unused.
    version: u32,
    /// Writes: the data; reads: the Data-In so far.
    data: Vec<u8>,
    lun: u64,
    started: Instant,
}

#[derive(Default)]
struct State {
    inflight: HashMap<u32, Op>,
    /// R2Ts to answer: (ITT, TTT, offset, length).
    r2ts: VecDeque<(u32, u32, u32, u32)>,
    /// Target NOP-In pings to answer: (TTT, LUN).
    pings: VecDeque<(u32, u64)>,
    /// Expected version per slot (0: never written, unknown content).
    versions: Vec<u32>,
    busy: Vec<bool>,
    max_cmd_sn: u32,
    exp_stat_sn: u32,
    stop: bool,
    logged_out: bool,
    failed: Option<String>,
}

struct Session {
    id: u32,
    lun: u8,
    depth: usize,
    write_pct: u32,
    /// The session's region: its first LBA.
    base_lba: u32,
    digests: Digests,
    target_mrdsl: u32,
    first_burst: u32,
    immediate_data: bool,
    st: Mutex<State>,
    cv: Condvar,
    stats: Arc<Stats>,
}

impl Session {
    fn fail(&self, why: String) {
        let mut st = self.st.lock().unwrap();
        if st.failed.is_none() {
            eprintln!("session {}: {why}", self.id);
            self.stats.errors.fetch_add(1, Relaxed);
            st.failed = Some(why);
        }
        self.cv.notify_all();
    }

    /// Picks the next command and registers it; `None` when no free slots were found.
    fn pick(&self, st: &mut State, rng: &mut Rng, next_version: &mut u32, itt: u32) -> Option<(bool, u32, u32)> {
        let nslots_region = st.versions.len() as u32;
        let n = match rng.below(100) {
            0..50 => 1,
            50..75 => 4,
            75..95 => 16,
            _ => 64,
        }
        .min(nslots_region);
        for _ in 0..8 {
            let s = rng.below(u64::from(nslots_region - n + 1)) as u32;
            if st.busy[s as usize..(s + n) as usize].iter().any(|b| *b) {
                continue;
            }
            st.busy[s as usize..(s + n) as usize].fill(true);
            let write = rng.below(100) < u64::from(self.write_pct);
            let (version, data) = if write {
                *next_version += 1;
                let mut d = vec![0u8; n as usize * SLOT];
                for (k, chunk) in d.chunks_exact_mut(SLOT).enumerate() {
                    fill_slot(chunk, self.id, s + k as u32, *next_version);
                }
                (*next_version, d)
            } else {
                (0, Vec::with_capacity(n as usize * SLOT))
            };
            let op = Op {
                write,
                first_slot: s,
                nslots: n,
                version,
                data,
                lun: u64::from(self.lun) << 48,
                started: Instant::now(),
            };
            st.inflight.insert(itt, op);
            return Some((write, s, n));
        }
        None
    }

    /// The sender: issues commands, answers R2Ts and pings, logs out at the end.
    fn send_loop(&self, mut w: TcpStream, mut cmd_sn: u32, seed: u64) {
        let mut rng = Rng(seed | 1);
        let mut next_version = 0u32;
        let mut next_itt = 0x100u32;
        let mut logout_sent = false;
        loop {
            enum Job {
                R2t(u32, u32, u32, Vec<u8>, u64),
                Ping(u32, u64),
                Cmd(u32, bool, u32, u32, Vec<u8>),
                Logout,
                Exit,
            }
            let job = {
                let mut st = self.st.lock().unwrap();
                loop {
                    if st.failed.is_some() || st.logged_out {
                        break Job::Exit;
                    }
                    if let Some((itt, ttt, off, len)) = st.r2ts.pop_front() {
                        let Some(op) = st.inflight.get(&itt) else { continue };
                        let (o, l) = (off as usize, len as usize);
                        if !op.write || o + l > op.data.len() {
                            drop(st);
                            self.fail(format!("an R2T beyond the data: itt {itt:#x} offset {off} length {len}"));
                            return;
                        }
                        break Job::R2t(itt, ttt, off, op.data[o..o + l].to_vec(), op.lun);
                    }
                    if let Some((ttt, lun)) = st.pings.pop_front() {
                        break Job::Ping(ttt, lun);
                    }
                    if st.stop {
                        if st.inflight.is_empty() && !logout_sent {
                            break Job::Logout;
                        }
                    } else if st.inflight.len() < self.depth && !sn_lt(st.max_cmd_sn, cmd_sn) {
                        next_itt = next_itt.wrapping_add(1);
                        if next_itt == RESERVED_TAG {
                            next_itt = 1;
                        }
                        if let Some((write, s, n)) = self.pick(&mut st, &mut rng, &mut next_version, next_itt) {
                            let data = if write { st.inflight[&next_itt].data.clone() } else { Vec::new() };
                            break Job::Cmd(next_itt, write, s, n, data);
                        }
                    }
                    st = self.cv.wait_timeout(st, Duration::from_millis(200)).unwrap().0;
                }
            };
            let exp_stat_sn = self.st.lock().unwrap().exp_stat_sn;
            let r = match job {
                Job::Exit => return,
                Job::R2t(itt, ttt, off, data, lun) => {
                    self.stats.r2ts.fetch_add(1, Relaxed);
                    let seg = self.target_mrdsl as usize;
                    let mut r = Ok(());
                    for (i, part) in data.chunks(seg).enumerate() {
                        let mut h = [0u8; BHS_LEN];
                        DataOutHeader {
                            final_bit: (i + 1) * seg >= data.len(),
                            data_segment_len: part.len() as u32,
                            lun,
                            itt,
                            ttt,
                            exp_stat_sn,
                            data_sn: i as u32,
                            buffer_offset: off + (i * seg) as u32,
                        }
                        .write(&mut h);
                        r = send_pdu(&mut w, self.digests, &h, part);
                        if r.is_err() {
                            break;
                        }
                    }
                    r
                }
                Job::Ping(ttt, lun) => {
                    let mut h = [0u8; BHS_LEN];
                    NopOutHeader {
                        immediate: true,
                        lun,
                        itt: RESERVED_TAG,
                        ttt,
                        sn: InitiatorSn { cmd_sn, exp_stat_sn },
                        ..Default::default()
                    }
                    .write(&mut h);
                    send_pdu(&mut w, self.digests, &h, &[])
                }
                Job::Cmd(itt, write, s, n, data) => {
                    let lba = self.base_lba + s * SLOT_BLOCKS;
                    let blocks = (n * SLOT_BLOCKS) as u16;
                    let len = n as usize * SLOT;
                    let mut cdb = [0u8; 16];
                    cdb[0] = if write { 0x2a } else { 0x28 };
                    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
                    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
                    let imm = if write && self.immediate_data {
                        len.min(self.first_burst as usize).min(self.target_mrdsl as usize)
                    } else {
                        0
                    };
                    let mut h = [0u8; BHS_LEN];
                    ScsiCommandHeader {
                        final_bit: true,
                        read: !write,
                        write,
                        attr: TaskAttr::SIMPLE,
                        data_segment_len: imm as u32,
                        lun: u64::from(self.lun) << 48,
                        itt,
                        expected_data_transfer_length: len as u32,
                        sn: InitiatorSn { cmd_sn, exp_stat_sn },
                        cdb,
                        ..Default::default()
                    }
                    .write(&mut h);
                    cmd_sn = cmd_sn.wrapping_add(1);
                    send_pdu(&mut w, self.digests, &h, &data[..imm])
                }
                Job::Logout => {
                    logout_sent = true;
                    let mut h = [0u8; BHS_LEN];
                    LogoutRequestHeader {
                        immediate: true,
                        reason: LogoutReason::CLOSE_SESSION,
                        itt: 0xffff_0000,
                        cid: 0,
                        sn: InitiatorSn { cmd_sn, exp_stat_sn },
                    }
                    .write(&mut h);
                    send_pdu(&mut w, self.digests, &h, &[])
                }
            };
            if let Err(e) = r {
                self.fail(format!("send: {e}"));
                return;
            }
        }
    }

    /// The receiver: Data-In, R2T, responses, pings; verification.
    fn recv_loop(&self, mut r: TcpStream) {
        let _ = r.set_read_timeout(Some(Duration::from_secs(1)));
        let mut last = Instant::now();
        loop {
            {
                let st = self.st.lock().unwrap();
                if st.failed.is_some() || st.logged_out {
                    return;
                }
                if !st.inflight.is_empty() && last.elapsed() > CMD_TIMEOUT {
                    drop(st);
                    self.fail(format!("nothing received for {CMD_TIMEOUT:?} with commands in flight"));
                    return;
                }
            }
            let (hdr, data) = match read_pdu(&mut r, self.digests) {
                Ok(p) => p,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
                Err(e) => {
                    self.fail(format!("receive: {e}"));
                    return;
                }
            };
            last = Instant::now();
            if let Err(e) = self.on_pdu(&hdr, data) {
                self.fail(e);
                return;
            }
        }
    }

    fn on_pdu(&self, hdr: &[u8; BHS_LEN], data: Vec<u8>) -> Result<(), String> {
        let b = Bhs::from_array(hdr);
        let mut st = self.st.lock().unwrap();
        if sn_lt(st.max_cmd_sn, b.max_cmd_sn()) {
            st.max_cmd_sn = b.max_cmd_sn();
        }
        let itt = b.itt();
        match b.opcode() {
            Opcode::DATA_IN => {
                let op = st.inflight.get_mut(&itt).ok_or_else(|| format!("Data-In for an unknown task: {b:?}"))?;
                if op.write || b.buffer_offset() as usize != op.data.len() {
                    return Err(format!("Data-In out of order: {b:?}"));
                }
                op.data.extend_from_slice(&data);
                if b.status_bit() {
                    st.exp_stat_sn = b.stat_sn().wrapping_add(1);
                    return self.complete(&mut st, itt, b.status(), &[]);
                }
            }
            Opcode::SCSI_RESPONSE => {
                st.exp_stat_sn = b.stat_sn().wrapping_add(1);
                return self.complete(&mut st, itt, b.status(), &data);
            }
            Opcode::R2T => {
                if !st.inflight.contains_key(&itt) {
                    return Err(format!("R2T for an unknown task: {b:?}"));
                }
                st.r2ts.push_back((itt, b.ttt(), b.buffer_offset(), b.desired_data_transfer_length()));
                self.cv.notify_all();
            }
            Opcode::NOP_IN if itt == RESERVED_TAG => {
                if b.ttt() != RESERVED_TAG {
                    st.pings.push_back((b.ttt(), b.lun()));
                    self.cv.notify_all();
                }
            }
            Opcode::LOGOUT_RESPONSE => {
                st.logged_out = true;
                self.cv.notify_all();
                if b.response() != 0 {
                    return Err(format!("logout refused: {b:?}"));
                }
            }
            _ => return Err(format!("unexpected PDU {b:?}")),
        }
        Ok(())
    }

    fn complete(&self, st: &mut State, itt: u32, status: u8, sense: &[u8]) -> Result<(), String> {
        let op = st.inflight.remove(&itt).ok_or_else(|| format!("a status for an unknown task {itt:#x}"))?;
        let (s, n) = (op.first_slot as usize, op.nslots as usize);
        st.busy[s..s + n].fill(false);
        self.cv.notify_all();
        let us = op.started.elapsed().as_micros() as u64;
        self.stats.max_latency_us.fetch_max(us, Relaxed);
        self.stats.latency_sum_us.fetch_add(us, Relaxed);
        match status {
            0 => {}
            STATUS_BUSY | STATUS_TASK_SET_FULL => {
                self.stats.busy.fetch_add(1, Relaxed);
                return Ok(());
            }
            _ => {
                return Err(format!(
                    "{} of slots {s}..{} failed: status {status:#04x} sense {:02x?}",
                    if op.write { "WRITE" } else { "READ" },
                    s + n,
                    sense.get(2..).unwrap_or_default()
                ));
            }
        }
        let len = (n * SLOT) as u64;
        if op.write {
            st.versions[s..s + n].fill(op.version);
            self.stats.writes.fetch_add(1, Relaxed);
            self.stats.bytes_written.fetch_add(len, Relaxed);
            return Ok(());
        }
        self.stats.reads.fetch_add(1, Relaxed);
        self.stats.bytes_read.fetch_add(len, Relaxed);
        if op.data.len() != n * SLOT {
            return Err(format!("READ of slots {s}..{}: {} bytes instead of {}", s + n, op.data.len(), n * SLOT));
        }
        let mut want = [0u8; SLOT];
        for k in 0..n {
            let v = st.versions[s + k];
            if v == 0 {
                self.stats.unverified_reads.fetch_add(1, Relaxed);
                continue;
            }
            fill_slot(&mut want, self.id, (s + k) as u32, v);
            let got = &op.data[k * SLOT..(k + 1) * SLOT];
            if got != want {
                let id = |b: &[u8]| {
                    (
                        u32::from_be_bytes(b[0..4].try_into().unwrap()),
                        u32::from_be_bytes(b[4..8].try_into().unwrap()),
                        u32::from_be_bytes(b[8..12].try_into().unwrap()),
                    )
                };
                return Err(format!(
                    "DATA MISMATCH at slot {} (LBA {}): expected (session, slot, version) {:?}, found {:?}",
                    s + k,
                    self.base_lba + (s + k) as u32 * SLOT_BLOCKS,
                    id(&want),
                    id(got)
                ));
            }
            self.stats.verified_bytes.fetch_add(SLOT as u64, Relaxed);
        }
        Ok(())
    }
}

/// Logs in, clears unit attentions, and returns the LUN's capacity in blocks with the login.
fn prepare(a: &Args, id: u32) -> Result<(Login, u64), String> {
    let mut l = login(a, id)?;
    let mut tur_ok = false;
    for _ in 0..8 {
        let (st, _) = l.command(a.lun, [0; 16], 0)?;
        if st == 0 {
            tur_ok = true;
            break;
        }
    }
    if !tur_ok {
        return Err("TEST UNIT READY never became GOOD".into());
    }
    let mut cdb = [0u8; 16];
    cdb[0] = 0x25;
    let (st, d) = l.command(a.lun, cdb, 8)?;
    if st != 0 || d.len() < 8 {
        return Err(format!("READ CAPACITY failed: status {st:#x}"));
    }
    let last = u32::from_be_bytes(d[0..4].try_into().unwrap());
    let bs = u32::from_be_bytes(d[4..8].try_into().unwrap());
    if bs as usize != BS {
        return Err(format!("block size {bs}: 512 expected"));
    }
    Ok((l, u64::from(last) + 1))
}

fn main() -> ExitCode {
    let a = Args::parse();
    let stats = Arc::new(Stats::default());
    let mut sessions = Vec::new();
    let mut threads = Vec::new();
    let t0 = Instant::now();
    for id in 0..a.sessions {
        let (l, blocks) = match prepare(&a, id) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("iscsi-soak: session {id}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let region_blocks = (blocks / u64::from(a.sessions)) as u32 / SLOT_BLOCKS * SLOT_BLOCKS;
        if region_blocks < 64 * SLOT_BLOCKS {
            eprintln!("iscsi-soak: the LUN is too small for {} sessions", a.sessions);
            return ExitCode::FAILURE;
        }
        let nslots = (region_blocks / SLOT_BLOCKS) as usize;
        let s = Arc::new(Session {
            id,
            lun: a.lun,
            depth: a.depth as usize,
            write_pct: a.write_pct,
            base_lba: id * region_blocks,
            digests: l.digests,
            target_mrdsl: l.target_mrdsl,
            first_burst: l.first_burst,
            immediate_data: l.immediate_data,
            st: Mutex::new(State {
                versions: vec![0; nslots],
                busy: vec![false; nslots],
                max_cmd_sn: l.max_cmd_sn,
                exp_stat_sn: l.exp_stat_sn,
                ..State::default()
            }),
            cv: Condvar::new(),
            stats: stats.clone(),
        });
        sessions.push((s, l));
    }
    eprintln!("iscsi-soak: {} sessions x depth {} logged in after {:?}", a.sessions, a.depth, t0.elapsed());
    if a.idle > 0 {
        println!("READY");
        let _ = io::stdout().flush();
        std::thread::sleep(Duration::from_secs(a.idle));
    }
    let sessions: Vec<Arc<Session>> = sessions
        .into_iter()
        .map(|(s, l)| {
            let r = l.sock.try_clone().expect("clone socket");
            let (s1, s2) = (s.clone(), s.clone());
            let seed = a.seed.wrapping_mul(6364136223846793005).wrapping_add(u64::from(s.id));
            let cmd_sn = l.cmd_sn;
            threads.push(std::thread::spawn(move || s1.send_loop(l.sock, cmd_sn, seed)));
            threads.push(std::thread::spawn(move || s2.recv_loop(r)));
            s
        })
        .collect();
    let start = Instant::now();
    let end = start + Duration::from_secs(a.duration);
    let mut last_ops = 0;
    let mut last_t = start;
    while Instant::now() < end && stats.errors.load(Relaxed) == 0 {
        let step = Duration::from_secs(a.report.max(1)).min(end.saturating_duration_since(Instant::now()));
        let t = Instant::now() + step;
        while Instant::now() < t && stats.errors.load(Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        let ops = stats.ops();
        let dt = last_t.elapsed().as_secs_f64();
        println!(
            "t={:>5.0}s ops/s {:>8.0} verified {:>8} MiB busy {} errors {}",
            start.elapsed().as_secs_f64(),
            (ops - last_ops) as f64 / dt,
            stats.verified_bytes.load(Relaxed) >> 20,
            stats.busy.load(Relaxed),
            stats.errors.load(Relaxed)
        );
        last_ops = ops;
        last_t = Instant::now();
    }
    for s in &sessions {
        s.st.lock().unwrap().stop = true;
        s.cv.notify_all();
    }
    let drain = Instant::now() + CMD_TIMEOUT;
    for s in &sessions {
        loop {
            let st = s.st.lock().unwrap();
            if st.logged_out || st.failed.is_some() {
                break;
            }
            if Instant::now() > drain {
                drop(st);
                s.fail("did not drain and log out in time".into());
                break;
            }
            drop(s.cv.wait_timeout(st, Duration::from_millis(100)).unwrap());
        }
    }
    for t in threads {
        let _ = t.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let ops = stats.ops();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "SUMMARY sessions={} depth={} seconds={:.0} ops={} iops={:.0} reads={} writes={} read_MiB={:.0} \
         written_MiB={:.0} MiB/s={:.1} verified_MiB={:.0} unverified_slot_reads={} r2ts={} busy={} \
         avg_latency_ms={:.2} max_latency_ms={:.1} errors={}",
        a.sessions,
        a.depth,
        secs,
        ops,
        ops as f64 / secs,
        stats.reads.load(Relaxed),
        stats.writes.load(Relaxed),
        mib(stats.bytes_read.load(Relaxed)),
        mib(stats.bytes_written.load(Relaxed)),
        mib(stats.bytes_read.load(Relaxed) + stats.bytes_written.load(Relaxed)) / secs,
        mib(stats.verified_bytes.load(Relaxed)),
        stats.unverified_reads.load(Relaxed),
        stats.r2ts.load(Relaxed),
        stats.busy.load(Relaxed),
        stats.latency_sum_us.load(Relaxed) as f64 / ops.max(1) as f64 / 1000.0,
        stats.max_latency_us.load(Relaxed) as f64 / 1000.0,
        stats.errors.load(Relaxed)
    );
    if stats.errors.load(Relaxed) == 0 && ops > 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
