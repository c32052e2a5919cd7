//! Acknowledged writes survive `kill -9` of `iscsi-target`: four sessions write distinct blocks
//! to a write-through FILEIO LUN (`fileio:PATH,wt`) and, with FUA, to a write-back one, each
//! recording every write the target answered GOOD; the target is killed in the middle; a new
//! target on the same files must return every acknowledged block, and so must the files
//! themselves.
//!
//! `kill -9` loses what the process held, not the kernel's page cache: this checks that no write
//! is acknowledged before it reached the file (a power cut is out of reach of a test).

#[path = "../../scst-transport-iscsi/tests/common/mod.rs"]
#[allow(dead_code, unreachable_pub, clippy::all)]
mod common;

mod process;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BS, Conn, LoginOpts, Next, TARGET_NAME, read10};
use process::Running;
use scst_transport_iscsi::proto::bhs::{BHS_LEN, Opcode, TaskAttr};
use scst_transport_iscsi::proto::build::{InitiatorSn, ScsiCommandHeader};

const SIZE_MB: u64 = 32;
/// Blocks per write.
const WRITE_BLOCKS: u32 = 8;
const WRITERS: u32 = 4;

fn start(dir: &Path) -> (Running, SocketAddr) {
    let wt = format!("0=fileio:{},size={SIZE_MB}M,wt", dir.join("wt.img").display());
    let wb = format!("1=fileio:{},size={SIZE_MB}M", dir.join("wb.img").display());
    process::start(TARGET_NAME, &["--log".into(), "error".into(), "--lun".into(), wt, "--lun".into(), wb])
}

/// One acknowledged write.
#[derive(Clone)]
struct Acked {
    lun: u8,
    lba: u32,
    data: Vec<u8>,
}

/// The data of a write: its identity, then a pattern.
fn block_data(writer: u32, seq: u32) -> Vec<u8> {
    let mut d = common::pattern(WRITE_BLOCKS as usize * BS, (writer * 31 + seq) as u8);
    for b in 0..WRITE_BLOCKS as usize {
        d[b * BS..b * BS + 8].copy_from_slice(&[
            writer as u8,
            0xa5,
            (seq >> 16) as u8,
            (seq >> 8) as u8,
            seq as u8,
            b as u8,
            0x5a,
            0x77,
        ]);
    }
    d
}

/// Sends one WRITE(10) (all data immediate, FUA as asked) and waits for its status without
/// panicking when the target is gone. `Some(true)`: GOOD.
fn write_once(c: &mut Conn, lun: u8, lba: u32, data: &[u8], fua: bool) -> Option<bool> {
    let itt = c.alloc_itt();
    let mut cdb = [0u8; 16];
    cdb[0] = 0x2a;
    cdb[1] = if fua { 0x08 } else { 0 };
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&(WRITE_BLOCKS as u16).to_be_bytes());
    let mut h = [0u8; BHS_LEN];
    ScsiCommandHeader {
        immediate: false,
        final_bit: true,
        read: false,
        write: true,
        attr: TaskAttr::SIMPLE,
        total_ahs_len: 0,
        data_segment_len: data.len() as u32,
        lun: common::lun(lun),
        itt,
        expected_data_transfer_length: data.len() as u32,
        sn: InitiatorSn { cmd_sn: c.cmd_sn, exp_stat_sn: c.exp_stat_sn },
        cdb,
    }
    .write(&mut h);
    c.cmd_sn = c.cmd_sn.wrapping_add(1);
    let bytes = c.wire(&h, data);
    c.send_bytes(&bytes).ok()?;
    match c.next(Duration::from_secs(5)) {
        Next::Pdu(p) => {
            assert_eq!((p.op(), p.bhs().itt()), (Opcode::SCSI_RESPONSE, itt), "{p:?}");
            Some(p.bhs().status() == 0)
        }
        Next::Closed | Next::Silent => None,
    }
}

fn login(addr: SocketAddr) -> Conn {
    let mut c = Conn::login(addr, &LoginOpts::normal()).expect("login");
    c.clear_ua(0);
    c.clear_ua(1);
    c
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (target, addr) = start(dir.path());
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // Each writer owns a quarter of each LU and writes each block once.
    let region = (SIZE_MB << 20) as u32 / BS as u32 / WRITERS;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = login(addr);
                let mut seq = 0u32;
                while !stop.load(Relaxed) && (seq + 1) * WRITE_BLOCKS <= region {
                    let lun = (seq % 2) as u8;
                    let lba = w * region + seq * WRITE_BLOCKS;
                    let data = block_data(w, seq);
                    // LUN 0 is write-through; on the write-back LUN 1 every write is FUA.
                    match write_once(&mut c, lun, lba, &data, lun == 1) {
                        Some(true) => acked.lock().unwrap().push(Acked { lun, lba, data }),
                        Some(false) => panic!("writer {w}: a write failed before the kill"),
                        None => return seq,
                    }
                    seq += 1;
                }
                seq
            })
        })
        .collect();
    // Let them write, then kill the target in the middle of it.
    let t0 = Instant::now();
    while acked.lock().unwrap().len() < 1500 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(target);
    stop.store(true, Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 1500, "only {} writes acknowledged before the kill", acked.len());

    // The same files under a new target, and the files themselves.
    let (_target, addr) = start(dir.path());
    let mut c = login(addr);
    let files = [std::fs::read(dir.path().join("wt.img")).unwrap(), std::fs::read(dir.path().join("wb.img")).unwrap()];
    for a in &acked {
        let r = c.exec(a.lun, read10(a.lba, WRITE_BLOCKS as u16), true, a.data.len() as u32, &[]);
        r.assert_good();
        assert!(
            r.data == a.data,
            "LUN {} LBA {}: an acknowledged write is lost (read through the target)",
            a.lun,
            a.lba
        );
        let off = a.lba as usize * BS;
        assert!(
            files[usize::from(a.lun)][off..off + a.data.len()] == a.data[..],
            "LUN {} LBA {}: an acknowledged write is not in the file",
            a.lun,
            a.lba
        );
    }
    eprintln!("{} acknowledged writes, all on disk after kill -9", acked.len());
}
