//! Writes the seed corpora of the fuzz targets `pdu_stream`, `login_text`, `prout`,
//! `unmap_xcopy`, `mode_select` and `config` (`gen_corpus` writes those of `cdb`):
//!
//! * `pdu_stream`, `login_text`: the initiator side of every connection of the captures in
//!   `../shared/vectors` (libiscsi and Linux open-iscsi logins, discovery, SCSI commands,
//!   Data-Out, the mutual CHAP login with known secrets; long streams cut after 24 KiB), and
//!   synthetic sessions built with `scst_transport_iscsi::proto::build` (digests on, R2T
//!   sequences, task management, text continuation, CHAP with every algorithm);
//! * the SCSI targets: command sequences that succeed on a fresh rig, for every service
//!   action, TransportID format, copy descriptor and mode page;
//! * `config`: the spellings the unit tests use.
//!
//! Every seed is run through its rig first (the socket driver included), so a seed that breaks
//! a contract stops the generator. Run from the repository root:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds [-- TARGET...]
//! ```
//!
//! It replaces the `seed-*` files of the targets it writes. The captures are read from
//! `$SCST_VECTORS_DIR` (default `../shared/vectors` next to the repository); without them the
//! capture seeds are skipped with a note.

#[path = "../src/iscsi.rs"]
#[allow(dead_code, unreachable_pub)]
mod iscsi;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use iscsi::{CHAP_TARGET, INITIATOR, MOVED_TARGET, TARGET};
use scst_fuzz::scsi::{ModeRig, PrRig, XcopyRig, xcopy_naa};
use scst_transport_iscsi::proto::bhs::{
    BHS_LEN, Bhs, Digests, LogoutReason, Opcode, RESERVED_TAG, TaskAttr, TmfFunction,
};
use scst_transport_iscsi::proto::build::{
    DataOutHeader, InitiatorSn, LoginRequestHeader, LogoutRequestHeader, NopOutHeader, ScsiCommandHeader, SnackHeader,
    TextRequestHeader, TmfRequestHeader, encode_pdu,
};
use scst_transport_iscsi::proto::text::push_pair;

type Seeds = Vec<(String, Vec<u8>)>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all = ["pdu_stream", "login_text", "prout", "unmap_xcopy", "mode_select", "config"];
    let targets: Vec<&str> = if args.is_empty() { all.to_vec() } else { args.iter().map(String::as_str).collect() };
    let captures = read_captures();
    for t in targets {
        let seeds = match t {
            "pdu_stream" => pdu_stream_seeds(&captures),
            "login_text" => login_text_seeds(&captures),
            "prout" => prout_seeds(),
            "unmap_xcopy" => unmap_xcopy_seeds(),
            "mode_select" => mode_select_seeds(),
            "config" => config_seeds(),
            other => panic!("unknown target {other} (one of {all:?})"),
        };
        write(t, &seeds);
    }
}

fn write(target: &str, seeds: &Seeds) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("create corpus directory");
    for e in std::fs::read_dir(&dir).expect("read corpus directory") {
        let p = e.expect("entry").path();
        if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("seed-")) {
            std::fs::remove_file(&p).expect("remove old seed");
        }
    }
    let mut names = std::collections::HashSet::new();
    for (name, bytes) in seeds {
        assert!(names.insert(name.clone()), "seed name {name} twice");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
    println!("{target}: {} seeds in {}", seeds.len(), dir.display());
}

// =============================================================================================
// Captures
// =============================================================================================

/// One captured connection: its name and the initiator's PDUs.
struct Capture {
    name: String,
    pdus: Vec<Vec<u8>>,
}

/// The initiator side of every TCP connection to port 3290 of the three captures.
fn read_captures() -> Vec<Capture> {
    let dir = std::env::var("SCST_VECTORS_DIR")
        .unwrap_or_else(|_| format!("{}/../../shared/vectors", env!("CARGO_MANIFEST_DIR")));
    let mut out = Vec::new();
    for (tag, file) in [
        ("libiscsi", "libiscsi-login-inquiry-rw.pcap"),
        ("openiscsi", "open-iscsi-linux6.1-discovery-login-rw.pcap"),
        ("chap", "libiscsi-chap-mutual-login.pcap"),
    ] {
        let Ok(raw) = std::fs::read(Path::new(&dir).join(file)) else {
            println!("note: {dir}/{file} not found: no capture seeds from it");
            continue;
        };
        for (i, pdus) in initiator_streams(&raw).into_iter().enumerate() {
            out.push(Capture { name: format!("{tag}-conn{i}"), pdus });
        }
    }
    out
}

/// Reassembles the initiator -> port 3290 streams of a pcap (Ethernet, IPv4, TCP) and splits
/// them into PDUs (no digests were negotiated in the captures). Connections in order of
/// their first segment.
fn initiator_streams(raw: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut order: Vec<u16> = Vec::new();
    let mut streams: BTreeMap<u16, (u32, Vec<u8>)> = BTreeMap::new();
    let mut off = 24;
    while off + 16 <= raw.len() {
        let incl = le32(raw, off + 8) as usize;
        let Some(pkt) = raw.get(off + 16..off + 16 + incl) else { break };
        off += 16 + incl;
        if pkt.len() < 34 || pkt[12..14] != [8, 0] || pkt[23] != 6 {
            continue;
        }
        let ip = &pkt[14..];
        let ihl = usize::from(ip[0] & 15) * 4;
        let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        let tcp = &ip[ihl..tot];
        let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
        let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let payload = &tcp[usize::from(tcp[12] >> 4) * 4..];
        if dport != 3290 || payload.is_empty() {
            continue;
        }
        if !streams.contains_key(&sport) {
            order.push(sport);
        }
        let (next, buf) = streams.entry(sport).or_insert((seq, Vec::new()));
        if seq != *next {
            continue; // retransmission
        }
        *next = seq.wrapping_add(payload.len() as u32);
        buf.extend_from_slice(payload);
    }
    order
        .iter()
        .map(|port| {
            let buf = &streams[port].1;
            let mut pdus = Vec::new();
            let mut at = 0;
            while let Ok(b) = Bhs::new_checked(&buf[at..]) {
                let n = b.pdu_len(Digests::default());
                if at + n > buf.len() {
                    break;
                }
                pdus.push(buf[at..at + n].to_vec());
                at += n;
            }
            pdus
        })
        .collect()
}

// =============================================================================================
// pdu_stream
// =============================================================================================

/// Builds initiator PDUs with correct padding and digests.
struct Stream {
    bytes: Vec<u8>,
    digests: Digests,
    cmd_sn: u32,
    itt: u32,
}

impl Stream {
    fn new(digests: Digests) -> Self {
        Self { bytes: Vec::new(), digests, cmd_sn: 1, itt: 0x10 }
    }

    fn pdu(&mut self, bhs: &[u8; BHS_LEN], ahs: &[u8], data: &[u8]) {
        encode_pdu(&mut self.bytes, bhs, ahs, data, self.digests);
    }

    fn sn(&mut self, immediate: bool) -> InitiatorSn {
        let sn = InitiatorSn { cmd_sn: self.cmd_sn, exp_stat_sn: 0 };
        if !immediate {
            self.cmd_sn = self.cmd_sn.wrapping_add(1);
        }
        sn
    }

    fn next_itt(&mut self) -> u32 {
        self.itt += 1;
        self.itt
    }

    /// A SCSI Command with immediate data; returns its ITT.
    fn cmd(&mut self, lun: u8, cdb: &[u8], read: bool, edtl: u32, imm: &[u8], fin: bool) -> u32 {
        let itt = self.next_itt();
        let mut c16 = [0u8; 16];
        let k = cdb.len().min(16);
        c16[..k].copy_from_slice(&cdb[..k]);
        let mut ahs = Vec::new();
        if cdb.len() > 16 {
            let ext = &cdb[16..];
            ahs.extend_from_slice(&((ext.len() + 1) as u16).to_be_bytes());
            ahs.push(1);
            ahs.push(0);
            ahs.extend_from_slice(ext);
            while ahs.len() % 4 != 0 {
                ahs.push(0);
            }
        }
        let mut h = [0u8; BHS_LEN];
        ScsiCommandHeader {
            immediate: false,
            final_bit: fin,
            read,
            write: !read && edtl > 0,
            attr: TaskAttr::SIMPLE,
            total_ahs_len: ahs.len() as u8,
            data_segment_len: imm.len() as u32,
            lun: u64::from(lun) << 48,
            itt,
            expected_data_transfer_length: edtl,
            sn: self.sn(false),
            cdb: c16,
        }
        .write(&mut h);
        self.pdu(&h, &ahs, imm);
        itt
    }

    #[allow(clippy::too_many_arguments)] // the fields of one Data-Out PDU
    fn data_out(&mut self, lun: u8, itt: u32, ttt: u32, dsn: u32, off: u32, data: &[u8], fin: bool) {
        let mut h = [0u8; BHS_LEN];
        DataOutHeader {
            final_bit: fin,
            data_segment_len: data.len() as u32,
            lun: u64::from(lun) << 48,
            itt,
            ttt,
            exp_stat_sn: 0,
            data_sn: dsn,
            buffer_offset: off,
        }
        .write(&mut h);
        self.pdu(&h, &[], data);
    }

    fn nop(&mut self, data: &[u8]) {
        let itt = self.next_itt();
        let mut h = [0u8; BHS_LEN];
        NopOutHeader {
            immediate: true,
            data_segment_len: data.len() as u32,
            lun: 0,
            itt,
            ttt: RESERVED_TAG,
            sn: self.sn(true),
        }
        .write(&mut h);
        self.pdu(&h, &[], data);
    }

    fn text(&mut self, pairs: &[(&str, &str)], fin: bool, cont: bool, ttt: u32, itt: Option<u32>) -> u32 {
        let mut t = Vec::new();
        for (k, v) in pairs {
            push_pair(&mut t, k, v);
        }
        let itt = itt.unwrap_or_else(|| self.next_itt());
        let mut h = [0u8; BHS_LEN];
        TextRequestHeader {
            immediate: true,
            final_bit: fin,
            continue_bit: cont,
            data_segment_len: t.len() as u32,
            lun: 0,
            itt,
            ttt,
            sn: self.sn(true),
        }
        .write(&mut h);
        self.pdu(&h, &[], &t);
        itt
    }

    fn tmf(&mut self, f: TmfFunction, lun: u8, rtt: u32) {
        let itt = self.next_itt();
        let mut h = [0u8; BHS_LEN];
        TmfRequestHeader {
            immediate: true,
            function: f,
            lun: u64::from(lun) << 48,
            itt,
            referenced_task_tag: rtt,
            sn: self.sn(true),
            ref_cmd_sn: self.cmd_sn.wrapping_sub(1),
            exp_data_sn: 0,
        }
        .write(&mut h);
        self.pdu(&h, &[], &[]);
    }

    fn logout(&mut self) {
        let itt = self.next_itt();
        let mut h = [0u8; BHS_LEN];
        LogoutRequestHeader { immediate: true, reason: LogoutReason::CLOSE_SESSION, itt, cid: 1, sn: self.sn(true) }
            .write(&mut h);
        self.pdu(&h, &[], &[]);
    }
}

fn cdb10(op: u8, lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![0u8; 10];
    c[0] = op;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// A full feature phase session of the normal target after the rig's own login (mode bit 0):
/// CmdSN starts at 1, digests as `d`.
fn ffp_session(d: Digests, mode: u8) -> Vec<u8> {
    let mut s = Stream::new(d);
    let immediate = mode & 0x20 == 0;
    s.nop(b"ping data");
    // TEST UNIT READY on every LUN consumes the power-on unit attentions.
    for lun in 0..3 {
        s.cmd(lun, &[0; 6], false, 0, &[], true);
    }
    s.cmd(0, &[0x12, 0, 0, 0, 96, 0], true, 96, &[], true);
    s.cmd(0, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], true, 8, &[], true);
    s.cmd(1, &cdb10(0x28, 8, 2), true, 1024, &[], true);
    // WRITE of 4 blocks: immediate data, unsolicited Data-Out, then the rest after the R2T
    // (TTT 1: the driver's first).
    let data: Vec<u8> = (0..2048u32).map(|i| (i * 7) as u8).collect();
    let (imm, fin) = if immediate { (&data[..512], false) } else { (&data[..0], false) };
    let itt = s.cmd(0, &cdb10(0x2a, 16, 4), false, 2048, imm, fin);
    let off = imm.len();
    s.data_out(0, itt, RESERVED_TAG, 0, off as u32, &data[off..off + 512], true);
    s.data_out(0, itt, 1, 0, (off + 512) as u32, &data[off + 512..], true);
    // A 32-byte CDB in an Extended CDB AHS (READ(32) is not supported: a CHECK CONDITION).
    let mut c32 = vec![0x7f, 0, 0, 0, 0, 0, 0, 0x18, 0, 0x09];
    c32.resize(32, 0);
    s.cmd(0, &c32, true, 512, &[], true);
    s.text(&[("SendTargets", ""), ("MaxRecvDataSegmentLength", "4096")], true, false, RESERVED_TAG, None);
    s.tmf(TmfFunction::ABORT_TASK, 0, 0x999);
    s.tmf(TmfFunction::LOGICAL_UNIT_RESET, 2, RESERVED_TAG);
    let mut h = [0u8; BHS_LEN];
    SnackHeader {
        ty: Default::default(),
        lun: 0,
        itt: 0x20,
        ttt_or_snack_tag: RESERVED_TAG,
        exp_stat_sn: 0,
        beg_run: 0,
        run_length: 0,
    }
    .write(&mut h);
    s.pdu(&h, &[], &[]);
    s.cmd(2, &cdb10(0x28, 1, 1), true, 4096, &[], true);
    s.logout();
    s.bytes
}

/// A discovery session after the rig's login: SendTargets with a long answer split by a small
/// MaxRecvDataSegmentLength, continued with the target's TTTs.
fn discovery_session() -> Vec<u8> {
    let mut s = Stream::new(Digests::default());
    let itt = s.text(&[("SendTargets", "All")], true, false, RESERVED_TAG, None);
    s.text(&[], true, false, 1, Some(itt));
    s.text(&[("SendTargets", TARGET)], false, false, RESERVED_TAG, None);
    s.logout();
    s.bytes
}

fn pdu_stream_seeds(captures: &[Capture]) -> Seeds {
    let mut seeds = Seeds::new();
    // Capture streams, as captured (their own logins), sans-IO and through the driver.
    for c in captures {
        let mut stream = Vec::new();
        for p in &c.pdus {
            if stream.len() + p.len() > 24 << 10 && !stream.is_empty() {
                break;
            }
            stream.extend_from_slice(p);
        }
        for mode in [0x00u8, 0x80] {
            let mut v = vec![mode, 0x00];
            v.extend_from_slice(&stream);
            seeds.push((format!("{}{}", c.name, if mode & 0x80 != 0 { "-driver" } else { "" }), v));
        }
    }
    // The rig's login with every digest combination, then a session.
    for (hd, dd) in [(false, false), (true, false), (false, true), (true, true)] {
        for driver in [false, true] {
            let mode = 0x01 | if hd { 0x08 } else { 0 } | if dd { 0x10 } else { 0 } | if driver { 0x80 } else { 0 };
            let mut v = vec![mode, 0x0b];
            v.extend_from_slice(&ffp_session(Digests { header: hd, data: dd }, mode));
            let name = format!("session-hd{}-dd{}{}", u8::from(hd), u8::from(dd), if driver { "-driver" } else { "" });
            seeds.push((name, v));
        }
    }
    // Digests to be repaired by the rig (mode bit 1): zero digests in the stream.
    let mut v = vec![0x01 | 0x02 | 0x08 | 0x10 | 0x80, 0x0a];
    let mut s = ffp_session(Digests { header: true, data: true }, 0);
    let mut at = 0;
    while at + BHS_LEN <= s.len() {
        let b = Bhs::new_checked(&s[at..]).expect("bhs");
        let n = b.pdu_len(Digests { header: true, data: true });
        let hd_at = at + BHS_LEN + b.total_ahs_len();
        let has_data = b.data_segment_len() > 0;
        s[hd_at..hd_at + 4].fill(0);
        if has_data {
            s[at + n - 4..at + n].fill(0);
        }
        at += n;
    }
    v.extend_from_slice(&s);
    seeds.push(("session-repair-driver".into(), v));
    // Wrong data digests (header digests right): a NOP-Out, a Text Request, immediate data and
    // a Data-Out, and a command held for a CmdSN gap.
    let d = Digests { header: true, data: true };
    let mut s = Stream::new(d);
    let bad = |s: &mut Stream| {
        let n = s.bytes.len();
        s.bytes[n - 4..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    };
    for lun in 0..3 {
        s.cmd(lun, &[0; 6], false, 0, &[], true);
    }
    s.nop(b"corrupt");
    bad(&mut s);
    s.text(&[("SendTargets", "")], true, false, RESERVED_TAG, None);
    bad(&mut s);
    let data = vec![0x5au8; 1024];
    let itt = s.cmd(0, &cdb10(0x2a, 4, 2), false, 1024, &data[..512], false);
    bad(&mut s);
    s.data_out(0, itt, RESERVED_TAG, 0, 512, &data[512..], true);
    bad(&mut s);
    s.cmd_sn += 1; // a gap: the next command is held until the one before it arrives
    let held = s.cmd(0, &cdb10(0x2a, 8, 1), false, 512, &data[..512], true);
    bad(&mut s);
    s.cmd_sn -= 2;
    s.cmd(0, &[0; 6], false, 0, &[], true);
    let _ = held;
    s.nop(b"good");
    let mut v = vec![0x01 | 0x02 | 0x08 | 0x10 | 0x80, 0x0b];
    v.extend_from_slice(&s.bytes);
    seeds.push(("session-bad-data-digests-driver".into(), v));
    // Strict session parameters: no immediate data, InitialR2T, small bursts and segments.
    for driver in [false, true] {
        let mode = 0x01 | 0x20 | 0x40 | if driver { 0x80 } else { 0 };
        let mut v = vec![mode, 0x01 << 2]; // limits: strict
        v.extend_from_slice(&ffp_session(Digests::default(), mode));
        seeds.push((format!("session-strict{}", if driver { "-driver" } else { "" }), v));
    }
    // Discovery.
    for driver in [false, true] {
        let mut v = vec![0x01 | 0x04 | if driver { 0x80 } else { 0 }, 0x00];
        v.extend_from_slice(&discovery_session());
        seeds.push((format!("discovery{}", if driver { "-driver" } else { "" }), v));
    }
    // A login in two stages with C-bit text, by hand.
    let mut s = Stream::new(Digests::default());
    let mut t = Vec::new();
    push_pair(&mut t, "InitiatorName", INITIATOR);
    push_pair(&mut t, "TargetName", TARGET);
    push_pair(&mut t, "AuthMethod", "None");
    let (a, b) = t.split_at(20);
    for (part, cont, transit) in [(a, true, false), (b, false, true)] {
        let mut h = [0u8; BHS_LEN];
        login_hdr(transit, cont, 0, 1, part.len(), 0x77).write(&mut h);
        s.pdu(&h, &[], part);
    }
    let mut t = Vec::new();
    push_pair(&mut t, "HeaderDigest", "CRC32C,None");
    push_pair(&mut t, "DataDigest", "CRC32C");
    push_pair(&mut t, "MaxRecvDataSegmentLength", "8192");
    let mut h = [0u8; BHS_LEN];
    login_hdr(true, false, 1, 3, t.len(), 0x77).write(&mut h);
    s.pdu(&h, &[], &t);
    s.digests = Digests { header: true, data: true };
    s.cmd(0, &[0; 6], false, 0, &[], true);
    s.nop(b"after a staged login");
    for driver in [false, true] {
        let mut v = vec![if driver { 0x80 } else { 0 }, 0x00];
        v.extend_from_slice(&s.bytes);
        seeds.push((format!("staged-login{}", if driver { "-driver" } else { "" }), v));
    }
    // Logins that fail: unknown target, redirect, CHAP target without CHAP, a non-login PDU.
    for (name, target) in [("unknown", "iqn.2026-11.rs.scst:nope"), ("moved", MOVED_TARGET), ("chap", CHAP_TARGET)] {
        let mut t = Vec::new();
        push_pair(&mut t, "InitiatorName", INITIATOR);
        push_pair(&mut t, "TargetName", target);
        push_pair(&mut t, "AuthMethod", "None");
        let mut h = [0u8; BHS_LEN];
        login_hdr(true, false, 0, 1, t.len(), 5).write(&mut h);
        let mut s = Stream::new(Digests::default());
        s.pdu(&h, &[], &t);
        for driver in [false, true] {
            let mut v = vec![if driver { 0x80 } else { 0 }, 0x00];
            v.extend_from_slice(&s.bytes);
            seeds.push((format!("login-{name}{}", if driver { "-driver" } else { "" }), v));
        }
    }
    let mut s = Stream::new(Digests::default());
    s.nop(b"too early");
    seeds.push(("nop-during-login".into(), [vec![0x80, 0], s.bytes].concat()));
    // Check every seed: the model, and the driver where asked.
    let driver = iscsi::DriverRig::new();
    for (name, bytes) in &seeds {
        let (cfg, stream) = iscsi::decode_stream(bytes);
        let model = iscsi::Model::run(cfg, &stream);
        if cfg.driver() {
            let got = driver.run(&model);
            println!(
                "pdu_stream {name}: {} PDUs framed, login end {:?}, {} bytes back",
                model.pdus.len(),
                model.login_end,
                got.len()
            );
            if std::env::var_os("SEED_TRACE").is_some() {
                trace(&got, &model);
            }
        }
    }
    seeds
}

/// Prints the target's PDUs (`SEED_TRACE=1`).
fn trace(got: &[u8], model: &iscsi::Model) {
    let mut digests = Digests::default();
    let mut at = 0;
    while at + BHS_LEN <= got.len() {
        let b = Bhs::new_checked(&got[at..]).expect("bhs");
        let n = b.pdu_len(digests);
        println!(
            "    {:?} itt {:#x} flags {:#04x} dsl {} status {:#04x} stat_sn {:#x} off {} ttt {:#x}",
            b.opcode(),
            b.itt(),
            b.flags(),
            b.data_segment_len(),
            b.status(),
            b.stat_sn(),
            b.buffer_offset(),
            b.ttt()
        );
        if b.opcode() == Opcode::LOGIN_RESPONSE && b.transit() && b.nsg().0 == 3 {
            digests = model.outcome.as_ref().map(|o| o.params.digests()).unwrap_or_default();
        }
        at += n;
    }
}

fn login_hdr(transit: bool, cont: bool, csg: u8, nsg: u8, len: usize, itt: u32) -> LoginRequestHeader {
    use scst_transport_iscsi::proto::bhs::Stage;
    LoginRequestHeader {
        transit,
        continue_bit: cont,
        csg: Stage(csg),
        nsg: Stage(nsg),
        itt,
        ..iscsi::final_login_request(len, [0x80, 0x11, 0x22, 0x33, 0, 1])
    }
}

// =============================================================================================
// login_text
// =============================================================================================

/// A `login_text` record.
fn rec(out: &mut Vec<u8>, h: u8, pairs: &[(&str, &str)]) {
    let mut t = Vec::new();
    for (k, v) in pairs {
        push_pair(&mut t, k, v);
    }
    out.push(h);
    out.extend_from_slice(&(t.len() as u16).to_le_bytes());
    out.extend_from_slice(&t);
}

/// Login record header: T, C, CSG, NSG.
fn lh(t: bool, c: bool, csg: u8, nsg: u8) -> u8 {
    u8::from(t) << 7 | u8::from(c) << 6 | csg << 4 | nsg << 2
}

/// Text record header: F, C, continue with the target's TTT.
fn th(f: bool, c: bool, cont: bool) -> u8 {
    u8::from(f) << 7 | u8::from(c) << 6 | 0x02 | u8::from(cont)
}

fn login_text_seeds(captures: &[Capture]) -> Seeds {
    let mut seeds = Seeds::new();
    // Captured logins and text requests, each PDU a record.
    for c in captures {
        let chap = c.name.starts_with("chap");
        let mut v = vec![if chap { 0x02 } else { 0x00 }, 1];
        let mut logged_in = false;
        for p in &c.pdus {
            let b = Bhs::new_checked(&p[..]).expect("bhs");
            let data = &p[BHS_LEN..BHS_LEN + b.data_segment_len() as usize];
            let h = match b.opcode() {
                Opcode::LOGIN_REQUEST => {
                    let h = p[1] & 0xc0 | b.csg().0 << 4 | b.nsg().0 << 2;
                    if b.transit() && b.nsg().0 == 3 {
                        logged_in = true;
                    }
                    h
                }
                Opcode::TEXT_REQUEST if logged_in => p[1] & 0xc0 | 0x02 | u8::from(b.ttt() != RESERVED_TAG),
                _ => continue,
            };
            v.push(h);
            v.extend_from_slice(&(data.len() as u16).to_le_bytes());
            v.extend_from_slice(data);
        }
        seeds.push((c.name.clone(), v));
    }
    let leading = [("InitiatorName", INITIATOR), ("TargetName", TARGET), ("SessionType", "Normal")];
    let operational = [
        ("HeaderDigest", "CRC32C,None"),
        ("DataDigest", "None,CRC32C"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "16776192"),
        ("FirstBurstLength", "262144"),
        ("MaxRecvDataSegmentLength", "262144"),
        ("MaxOutstandingR2T", "8"),
        ("MaxConnections", "1"),
        ("ErrorRecoveryLevel", "0"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "20"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
        ("iSCSIProtocolLevel", "1"),
        ("X-com.example.Vendor", "1"),
    ];
    // CHAP with every algorithm, mutual or not, hex or base64 responses.
    for (alg, mutual, b64) in [("5", true, false), ("6", false, true), ("7", true, true), ("7,6,5", false, false)] {
        let mut v = vec![if mutual { 0x02 } else { 0x01 }, 0x42];
        let mut first = leading.to_vec();
        first.push(("AuthMethod", "CHAP,None"));
        rec(&mut v, lh(false, false, 0, 0), &first);
        rec(&mut v, lh(false, false, 0, 0), &[("CHAP_A", alg)]);
        let mut resp = vec![("CHAP_N", "*"), ("CHAP_R", if b64 { "*b" } else { "*" })];
        if mutual {
            resp.push(("CHAP_I", "77"));
            resp.push(("CHAP_C", "0x0123456789abcdef0123456789abcdef"));
        }
        rec(&mut v, lh(true, false, 0, 1), &resp);
        rec(&mut v, lh(true, false, 1, 3), &operational);
        rec(&mut v, th(true, false, false), &[("MaxRecvDataSegmentLength", "512"), ("InitiatorAlias", "seed")]);
        rec(&mut v, th(true, false, false), &[("SendTargets", "")]);
        seeds.push((format!("chap-a{}-mutual{}-b64{}", alg.replace(',', ""), u8::from(mutual), u8::from(b64)), v));
    }
    // Strict limits with Require digests: the target offers keys, the initiator answers.
    let mut v = vec![0x40 | 0x08 | 0x20 | 0x80, 0];
    let mut first = leading.to_vec();
    first.push(("AuthMethod", "None"));
    rec(&mut v, lh(true, false, 0, 1), &first);
    rec(&mut v, lh(true, false, 1, 3), &[("MaxRecvDataSegmentLength", "8192")]);
    rec(
        &mut v,
        lh(true, false, 1, 3),
        &[
            ("HeaderDigest", "CRC32C"),
            ("DataDigest", "CRC32C"),
            ("ImmediateData", "No"),
            ("MaxBurstLength", "8192"),
            ("FirstBurstLength", "4096"),
        ],
    );
    seeds.push(("strict-offers".into(), v));
    // Discovery with SendTargets=All answered in pieces (MaxRecvDataSegmentLength 512).
    let mut v = vec![0x00, 0];
    rec(
        &mut v,
        lh(true, false, 1, 3),
        &[("InitiatorName", INITIATOR), ("SessionType", "Discovery"), ("MaxRecvDataSegmentLength", "512")],
    );
    rec(&mut v, th(true, false, false), &[("SendTargets", "All")]);
    rec(&mut v, th(true, false, true), &[]);
    rec(&mut v, th(false, true, false), &[("SendTargets", CHAP_TARGET)]);
    rec(&mut v, th(true, false, true), &[("InitiatorAlias", "continued")]);
    seeds.push(("discovery-sendtargets".into(), v));
    // Login text split with the C bit; a redirect; an unknown target; a second ISID.
    let mut v = vec![0x80, 0];
    let mut t = Vec::new();
    for (k, val) in leading.iter().chain(operational.iter()) {
        push_pair(&mut t, k, val);
    }
    let (a, b) = t.split_at(100);
    for (part, h) in [(a, lh(false, true, 1, 0)), (b, lh(true, false, 1, 3))] {
        v.push(h);
        v.extend_from_slice(&(part.len() as u16).to_le_bytes());
        v.extend_from_slice(part);
    }
    seeds.push(("continued-text".into(), v));
    let mut v = vec![0x00, 0];
    rec(&mut v, lh(true, false, 1, 3), &[("InitiatorName", INITIATOR), ("TargetName", MOVED_TARGET)]);
    seeds.push(("redirect".into(), v));
    let mut v = vec![0x00, 0];
    rec(
        &mut v,
        lh(true, false, 0, 1),
        &[("InitiatorName", INITIATOR), ("TargetName", CHAP_TARGET), ("AuthMethod", "CHAP")],
    );
    rec(&mut v, lh(false, false, 0, 0) | 1, &[("CHAP_A", "5")]);
    seeds.push(("chap-target-other-isid".into(), v));
    for (name, bytes) in &seeds {
        let out = iscsi::run_login_text(bytes);
        println!(
            "login_text {name}: {}",
            match &out {
                Some(o) => format!("logged in ({:?}, CHAP user {:?})", o.params.session_type, o.chap_user),
                None => "no login".into(),
            }
        );
    }
    seeds
}

// =============================================================================================
// prout
// =============================================================================================

/// A `prout` step.
fn step(out: &mut Vec<u8>, nexus: u8, kind: u8, b1: u8, b2: u8, plen: u16, params: &[u8]) {
    out.extend_from_slice(&[nexus | kind << 2, b1, b2]);
    out.extend_from_slice(&plen.to_le_bytes());
    out.extend_from_slice(&(params.len() as u16).to_le_bytes());
    out.extend_from_slice(params);
}

fn pr_params(key: u64, sa_key: u64, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = flags;
    p
}

/// A PROUT step whose PARAMETER LIST LENGTH is the list's length.
fn prout(out: &mut Vec<u8>, nexus: u8, sa: u8, typ: u8, params: &[u8]) {
    step(out, nexus, 7, sa, typ, 0, params);
}

/// TransportIDs of the formats SPC-4 §7.6.4 defines.
fn tid(kind: &str, name: &str) -> Vec<u8> {
    match kind {
        "iscsi" | "iscsi-port" => {
            let body = if kind == "iscsi" { name.to_string() } else { format!("{name},i,local") };
            let len = (body.len() + 1).max(20).div_ceil(4) * 4;
            let mut t = vec![0u8; 4 + len];
            t[0] = if kind == "iscsi" { 0x05 } else { 0x45 };
            t[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            t[4..4 + body.len()].copy_from_slice(body.as_bytes());
            t
        }
        "fc" => {
            let mut t = vec![0u8; 24];
            t[8..16].copy_from_slice(&0x2100_0024_ff12_3456u64.to_be_bytes());
            t
        }
        "srp" => {
            let mut t = vec![0u8; 24];
            t[0] = 0x04;
            t[8..24].copy_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 2, 0xc9, 3, 0, 1, 2, 3]);
            t
        }
        _ => {
            let mut t = vec![0u8; 24];
            t[0] = 0x06;
            t[4..12].copy_from_slice(&0x5000_c500_1234_5678u64.to_be_bytes());
            t
        }
    }
}

fn prout_seeds() -> Seeds {
    let mut seeds = Seeds::new();
    let (a, b, c) = (0x0a_u64, 0x0b_u64, 0x0c_u64);
    // Every reservation type, held and released; then PRIN of every service action.
    for typ in [1u8, 3, 5, 6, 7, 8] {
        let mut v = Vec::new();
        prout(&mut v, 0, 0, 0, &pr_params(0, a, 0));
        prout(&mut v, 1, 6, 0, &pr_params(0, b, 0));
        prout(&mut v, 0, 1, typ, &pr_params(a, 0, 0));
        for sa in 0..4 {
            step(&mut v, 2, 4, sa, 0, 4096, &[]);
        }
        prout(&mut v, 0, 2, typ, &pr_params(a, 0, 0));
        seeds.push((format!("reserve-release-type{typ}"), v));
    }
    // PREEMPT and PREEMPT AND ABORT of a holder; CLEAR.
    for sa in [4u8, 5] {
        let mut v = Vec::new();
        prout(&mut v, 0, 6, 0, &pr_params(0, a, 0));
        prout(&mut v, 1, 6, 0, &pr_params(0, b, 0));
        prout(&mut v, 2, 6, 0, &pr_params(0, c, 0));
        prout(&mut v, 0, 1, 1, &pr_params(a, 0, 0));
        prout(&mut v, 1, sa, 3, &pr_params(b, a, 0));
        prout(&mut v, 2, sa, 3, &pr_params(c, b, 0));
        prout(&mut v, 2, 3, 0, &pr_params(c, 0, 0));
        seeds.push((format!("preempt-sa{sa}"), v));
    }
    // REGISTER AND MOVE to nexus i.b (and with UNREG).
    for unreg in [false, true] {
        let mut v = Vec::new();
        prout(&mut v, 0, 0, 0, &pr_params(0, a, 0));
        prout(&mut v, 0, 1, 1, &pr_params(a, 0, 0));
        let mut p = pr_params(a, b, 0);
        p[17] = if unreg { 0x02 } else { 0 };
        p[18..20].copy_from_slice(&1u16.to_be_bytes());
        let t = tid("iscsi-port", "i.b");
        p[20..24].copy_from_slice(&(t.len() as u32).to_be_bytes());
        p.extend_from_slice(&t);
        prout(&mut v, 0, 7, 1, &p);
        prout(&mut v, 1, 2, 1, &pr_params(b, 0, 0));
        seeds.push((format!("register-and-move-unreg{}", u8::from(unreg)), v));
    }
    // REGISTER with SPEC_I_PT: every TransportID format.
    for kind in ["iscsi", "iscsi-port", "fc", "srp", "sas"] {
        let mut v = Vec::new();
        let mut p = pr_params(0, a, 0x08);
        let mut tids = tid(kind, "i.c");
        tids.extend_from_slice(&tid("iscsi-port", "i.b"));
        p.extend_from_slice(&(tids.len() as u32).to_be_bytes());
        p.extend_from_slice(&tids);
        prout(&mut v, 0, 0, 0, &p);
        step(&mut v, 0, 4, 3, 0, 8192, &[]);
        seeds.push((format!("spec-i-pt-{kind}"), v));
    }
    // ALL_TG_PT from both ports of i.a; APTPL (refused without a state directory).
    let mut v = Vec::new();
    prout(&mut v, 3, 0, 0, &pr_params(0, a, 0x04));
    prout(&mut v, 0, 1, 5, &pr_params(a, 0, 0));
    prout(&mut v, 3, 2, 5, &pr_params(a, 0, 0));
    prout(&mut v, 1, 0, 0, &pr_params(0, b, 0x01));
    seeds.push(("all-tg-pt-aptpl".into(), v));
    // SPC-2 RESERVE/RELEASE, and a PROUT against it.
    let mut v = Vec::new();
    step(&mut v, 1, 5, 0, 0, 0, &[]);
    prout(&mut v, 0, 0, 0, &pr_params(0, a, 0));
    step(&mut v, 1, 6, 0, 0, 0, &[]);
    prout(&mut v, 0, 0, 0, &pr_params(0, a, 0));
    seeds.push(("spc2".into(), v));
    // Wrong lengths, keys and types.
    let mut v = Vec::new();
    step(&mut v, 0, 0, 0, 0, 23, &pr_params(0, a, 0));
    step(&mut v, 0, 0, 0, 0, 24, &pr_params(0, a, 0)[..20]);
    prout(&mut v, 0, 0, 0, &pr_params(0, a, 0));
    prout(&mut v, 0, 0, 0, &pr_params(a + 1, b, 0));
    prout(&mut v, 0, 1, 0x12, &pr_params(a, 0, 0));
    prout(&mut v, 0, 9, 0, &pr_params(a, 0, 0));
    seeds.push(("errors".into(), v));
    let mut rig = PrRig::new();
    for (_, bytes) in &seeds {
        rig.run(bytes);
    }
    seeds
}

// =============================================================================================
// unmap_xcopy
// =============================================================================================

fn unmap_list(descs: &[(u64, u32)]) -> Vec<u8> {
    let mut l = vec![0u8; 8];
    l[0..2].copy_from_slice(&((6 + 16 * descs.len()) as u16).to_be_bytes());
    l[2..4].copy_from_slice(&((16 * descs.len()) as u16).to_be_bytes());
    for (lba, n) in descs {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&lba.to_be_bytes());
        d[8..12].copy_from_slice(&n.to_be_bytes());
        l.extend_from_slice(&d);
    }
    l
}

/// An EXTENDED COPY(LID1) parameter list with identification CSCDs of `luns` and block-to-block
/// segments `(src cscd, dst cscd, blocks, src lba, dst lba)`.
fn xcopy_list(list_id: u8, usage: u8, luns: &[(usize, u32)], segs: &[(u16, u16, u16, u64, u64)]) -> Vec<u8> {
    let mut p = vec![0u8; 16];
    p[0] = list_id;
    p[1] = usage << 3;
    p[2..4].copy_from_slice(&((32 * luns.len()) as u16).to_be_bytes());
    p[8..12].copy_from_slice(&((28 * segs.len()) as u32).to_be_bytes());
    for &(lun, bs) in luns {
        let mut t = [0u8; 32];
        t[0] = 0xe4;
        t[4] = 0x01; // code set binary
        t[5] = 0x03; // designator type NAA
        t[7] = 8;
        t[8..16].copy_from_slice(&xcopy_naa(lun).to_be_bytes());
        t[29..32].copy_from_slice(&bs.to_be_bytes()[1..]);
        p.extend_from_slice(&t);
    }
    for &(s, d, n, sl, dl) in segs {
        let mut x = [0u8; 28];
        x[0] = 0x02;
        x[2..4].copy_from_slice(&24u16.to_be_bytes());
        x[4..6].copy_from_slice(&s.to_be_bytes());
        x[6..8].copy_from_slice(&d.to_be_bytes());
        x[10..12].copy_from_slice(&n.to_be_bytes());
        x[12..20].copy_from_slice(&sl.to_be_bytes());
        x[20..28].copy_from_slice(&dl.to_be_bytes());
        p.extend_from_slice(&x);
    }
    p
}

fn list_step(out: &mut Vec<u8>, sel: u8, b1: u8, plen: u16, list: &[u8]) {
    out.extend_from_slice(&[sel, b1]);
    out.extend_from_slice(&plen.to_le_bytes());
    out.extend_from_slice(&(list.len() as u16).to_le_bytes());
    out.extend_from_slice(list);
}

fn write_step(out: &mut Vec<u8>, lun: u8, lba: u16, blocks: u8, pat: u8) {
    out.push(3 | lun << 3);
    out.extend_from_slice(&lba.to_le_bytes());
    out.extend_from_slice(&[blocks - 1, pat]);
}

fn unmap_xcopy_seeds() -> Seeds {
    let mut seeds = Seeds::new();
    // Writes, an UNMAP of two ranges, GET LBA STATUS.
    let mut v = Vec::new();
    write_step(&mut v, 0, 0, 16, 0x11);
    write_step(&mut v, 0, 100, 8, 0x22);
    let l = unmap_list(&[(4, 8), (100, 2)]);
    list_step(&mut v, 0, 0, l.len() as u16, &l);
    v.extend_from_slice(&[4, 0, 0, 0, 2]);
    v.extend_from_slice(&[5, 5, 0]);
    seeds.push(("unmap".into(), v));
    // UNMAP errors: past the capacity, ANCHOR, short list.
    let mut v = Vec::new();
    write_step(&mut v, 1, 10, 4, 0x33);
    let l = unmap_list(&[(10, 2), (2047, 2)]);
    list_step(&mut v, 1 << 3, 0, l.len() as u16, &l);
    list_step(&mut v, 1 << 3, 1, l.len() as u16, &l);
    list_step(&mut v, 1 << 3, 0, 7, &l[..7]);
    seeds.push(("unmap-errors".into(), v));
    // EXTENDED COPY from LUN 0 to LUN 1, then its results.
    for usage in [0u8, 2] {
        let mut v = Vec::new();
        write_step(&mut v, 0, 0, 16, 0x44);
        let x = xcopy_list(7, usage, &[(0, 512), (1, 512)], &[(0, 1, 16, 0, 32), (0, 1, 4, 8, 0), (1, 1, 8, 32, 40)]);
        list_step(&mut v, 1, 0, 0, &x);
        v.extend_from_slice(&[2, 0, 7, 0, 1]);
        v.extend_from_slice(&[2, 4, 7, 0, 1]);
        v.extend_from_slice(&[2, 3, 0, 0, 1]);
        v.extend_from_slice(&[5 | 1 << 3, 40, 0]);
        seeds.push((format!("xcopy-usage{usage}"), v));
    }
    // Overlapping copies within one LUN, both directions.
    let mut v = Vec::new();
    write_step(&mut v, 0, 0, 16, 0x55);
    let x = xcopy_list(1, 0, &[(0, 512)], &[(0, 0, 16, 0, 4), (0, 0, 10, 8, 2)]);
    list_step(&mut v, 1, 0, 0, &x);
    seeds.push(("xcopy-overlap".into(), v));
    // Failing copies: block size mismatch, out of range, unknown CSCD, bad descriptor types.
    let mut v = Vec::new();
    write_step(&mut v, 0, 0, 8, 0x66);
    let x = xcopy_list(2, 0, &[(0, 512), (2, 4096)], &[(0, 1, 1, 0, 0)]);
    list_step(&mut v, 1, 0, 0, &x);
    let x = xcopy_list(3, 0, &[(0, 512), (1, 512)], &[(0, 1, 4, 0, 0), (0, 1, 8, 2046, 0)]);
    list_step(&mut v, 1, 0, 0, &x);
    v.extend_from_slice(&[2, 4, 3, 0, 1]);
    let x = xcopy_list(4, 0, &[(0, 512)], &[(0, 5, 1, 0, 0)]);
    list_step(&mut v, 1, 0, 0, &x);
    let mut x = xcopy_list(5, 0, &[(0, 512)], &[(0, 0, 1, 0, 1)]);
    x[16] = 0xe5;
    list_step(&mut v, 1, 1, 40, &x);
    seeds.push(("xcopy-errors".into(), v));
    let mut rig = XcopyRig::new();
    for (_, bytes) in &seeds {
        rig.run(bytes);
    }
    seeds
}

// =============================================================================================
// mode_select
// =============================================================================================

fn mode_list(six: bool, bd: Option<bool>, pages: &[&[u8]]) -> Vec<u8> {
    let mut l = vec![0u8; if six { 4 } else { 8 }];
    match bd {
        None => {}
        Some(long) => {
            let mut d = vec![0u8; if long { 16 } else { 8 }];
            if long {
                d[0..8].copy_from_slice(&2048u64.to_be_bytes());
                d[12..16].copy_from_slice(&512u32.to_be_bytes());
                l[4] = 1;
            } else {
                d[0..4].copy_from_slice(&2048u32.to_be_bytes());
                d[5..8].copy_from_slice(&512u32.to_be_bytes()[1..]);
            }
            if six {
                l[3] = d.len() as u8;
            } else {
                l[7] = d.len() as u8;
            }
            l.extend_from_slice(&d);
        }
    }
    for p in pages {
        l.extend_from_slice(p);
    }
    l
}

fn mode_seeds_pages() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut caching = vec![0u8; 20];
    caching[0] = 0x08;
    caching[1] = 18;
    let mut control = vec![0u8; 12];
    control[0] = 0x0a;
    control[1] = 10;
    control[2] = 0x04; // D_SENSE
    control[3] = 0x10;
    control[4] = 0x08; // SWP
    control[5] = 0x40; // TAS
    control[8] = 0xff;
    control[9] = 0xff;
    let mut rw = vec![0u8; 12];
    rw[0] = 0x01;
    rw[1] = 10;
    let mut iec = vec![0u8; 12];
    iec[0] = 0x1c;
    iec[1] = 10;
    iec[2] = 0x08;
    (caching, control, rw, iec)
}

fn mode_select_seeds() -> Seeds {
    let mut seeds = Seeds::new();
    let (caching, control, rw, iec) = mode_seeds_pages();
    for (six, bd) in [(true, None), (true, Some(false)), (false, Some(false)), (false, Some(true)), (false, None)] {
        let mut v = Vec::new();
        let l = mode_list(six, bd, &[&caching, &control, &rw, &iec]);
        list_step(&mut v, u8::from(!six), 0x10, l.len() as u16, &l);
        v.push(4); // WRITE probe: SWP is on now
        v.push(5); // sense format: descriptor
        // MODE SENSE(6) and (10) of every page, every page control.
        for pc in 0..3u8 {
            v.extend_from_slice(&[2, 0, pc << 6 | 0x3f, 0, 255, 0]);
            v.extend_from_slice(&[3, 0x10, pc << 6 | 0x0a, 0, 0, 2]);
        }
        seeds.push((format!("select{}-bd{}", if six { 6 } else { 10 }, bd.map_or(0, |l| if l { 16 } else { 8 })), v));
    }
    // Errors: SP, a non-changeable bit, a wrong page length, an unknown page, a short list.
    let mut v = Vec::new();
    let mut bad = control.clone();
    bad[3] = 0x00;
    let short = &caching[..10];
    for (b1, l) in [
        (0x11, mode_list(false, None, &[&caching])),
        (0x10, mode_list(false, None, &[&bad])),
        (0x10, mode_list(false, None, &[short])),
        (0x10, mode_list(false, None, &[&[0x19, 2, 0, 0]])),
        (0x10, mode_list(false, Some(false), &[])[..10].to_vec()),
    ] {
        list_step(&mut v, 1, b1, l.len() as u16, &l);
    }
    v.push(6);
    seeds.push(("select-errors".into(), v));
    // The 4 KiB LUN, and a list longer than the CDB says.
    let mut v = Vec::new();
    let l = mode_list(false, None, &[&control, &caching]);
    list_step(&mut v, 1 | 1 << 3, 0x10, 12 + 8, &l);
    v.extend_from_slice(&[3 | 1 << 3, 0x00, 0x3f, 0xff, 0, 4]);
    seeds.push(("select-4k-short-cdb".into(), v));
    let mut rig = ModeRig::new();
    for (_, bytes) in &seeds {
        rig.run(bytes);
    }
    seeds
}

// =============================================================================================
// config
// =============================================================================================

fn config_seeds() -> Seeds {
    let cases: &[(u8, &str, &str)] = &[
        (0, "lun-fileio", "3=fileio:/tmp/x.img,size=1G,thin,wt,bs=4096"),
        (0, "lun-ram", "0=ram:64M,removable,sanitize_rate=4M,group=db,group=web:ro"),
        (0, "lun-nullio", "1=nullio:1T,bs=4096,ro"),
        (0, "lun-fileio-pbs", "0=fileio:/x,pbs=4096,sanitize_rate=0,direct"),
        (0, "lun-blockio", "16383=blockio:/dev/loop0,thin,ro"),
        (0, "lun-bad", "0=tape:1M,bs=512"),
        (1, "size-m", "64M"),
        (1, "size-t", "2t"),
        (1, "size-plain", "4096"),
        (1, "size-overflow", "99999999999T"),
        (2, "group", "db:iqn.2026-11.com.example:*,!*:test-*"),
        (2, "group-bad", "db:a,,b"),
        (3, "port-group", "2=standby,pref,remote=7+8"),
        (3, "port-group-active", "1=active/optimized"),
        (3, "port-group-bad", "1=sleepy"),
        (4, "patterns", "iqn.2026-11.com.example:*,!*:test-*\nIQN.2026-11.COM.EXAMPLE:DB1"),
        (4, "patterns-star-name", "iqn.2026-11.com.example:*,!*:test-*\niqn.2026-11.com.example:test-*x"),
        (4, "patterns-exclude-first", "!*:bad,*\niqn.x:bad"),
        (5, "glob", "*a*a*a*b\0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac"),
        (5, "glob-star-name", "*#\0*#!!#"),
    ];
    cases
        .iter()
        .map(|(sel, name, text)| {
            let mut v = vec![*sel];
            v.extend_from_slice(text.as_bytes());
            ((*name).to_string(), v)
        })
        .collect()
}
