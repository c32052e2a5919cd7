//! Zero-copy READs: on a connection without a data digest, a large READ of cached FILEIO data
//! goes out with `sendfile` straight from the page cache (here on loopback, with
//! `ZeroCopy::Always`; by default loopback connections copy). The initiator sees the same bytes and
//! the same PDUs as from a copying READ, however slowly it reads; a COMPARE AND WRITE stays
//! all-or-nothing to such a READ still on its way; a data digest keeps the copy.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use scst::{Device, Lun};
use scst_transport_iscsi::proto::bhs::{Opcode, TaskAttr};
use scst_transport_iscsi::{IscsiConfig, ZeroCopy};

const MIB: usize = 1 << 20;
/// Blocks per MiB.
const MIB_BLOCKS: u16 = (MIB / BS) as u16;

/// A test target that sends from files on loopback connections too.
fn start() -> TestTarget {
    TestTarget::with(IscsiConfig { zero_copy: ZeroCopy::Always, ..config(32) }, None)
}

fn file_dev(t: &TestTarget) -> std::sync::Arc<Device> {
    t.target.luns()[&Lun(u16::from(FILE))].dev.clone()
}

fn zero_copy_bytes(t: &TestTarget) -> u64 {
    file_dev(t).stats().zero_copy_read_bytes.load(Relaxed)
}

/// The whole FILEIO LUN, written (so cached) with a pattern, 1 MiB per WRITE.
fn fill(c: &mut Conn, seed: u8) -> Vec<u8> {
    let all = pattern(BLOCKS as usize * BS, seed);
    for (i, chunk) in all.chunks(MIB).enumerate() {
        c.write(FILE, (i * MIB / BS) as u32, chunk).assert_good();
    }
    all
}

#[test]
fn large_cached_reads_go_out_from_the_file() {
    let t = start();
    let mut c = t.login();
    let all = fill(&mut c, 0x31);
    let before = zero_copy_bytes(&t);
    // 1 MiB from an odd LBA: four bursts of four 64 KiB... segments of 256 KiB (normal keys).
    let r = c.read(FILE, 3, MIB_BLOCKS);
    r.assert_good();
    assert!(r.data == all[3 * BS..3 * BS + MIB], "the READ's bytes are the file's");
    assert_eq!(r.data_ins().len(), 4);
    assert!(r.data_ins().last().unwrap().bhs().status_bit(), "status collapsed into the last Data-In");
    assert_eq!(zero_copy_bytes(&t) - before, MIB as u64, "sent from the page cache");

    // Below the threshold a copy is cheaper: 32 KiB is copied.
    let r = c.read(FILE, 0, 64);
    r.assert_good();
    assert!(r.data == all[..64 * BS]);
    assert_eq!(zero_copy_bytes(&t) - before, MIB as u64);

    // An expected length shorter than the transfer: the first bytes, and the overflow.
    let edtl = (MIB / 2 + 100) as u32;
    let r = c.exec(FILE, read10(8, MIB_BLOCKS), true, edtl, &[]);
    r.assert_good();
    assert!(r.data == all[8 * BS..8 * BS + edtl as usize]);
    assert!(r.overflow && r.residual == MIB as u32 - edtl);
    c.assert_usable();
}

#[test]
fn loopback_connections_copy_by_default() {
    let t = TestTarget::start();
    let mut c = t.login();
    let all = fill(&mut c, 0x44);
    let r = c.read(FILE, 0, MIB_BLOCKS);
    r.assert_good();
    assert!(r.data == all[..MIB]);
    assert_eq!(zero_copy_bytes(&t), 0, "ZeroCopy::Auto copies for a loopback initiator");
}

#[test]
fn data_digest_keeps_the_copy() {
    let t = start();
    let mut c = t.login_with(LoginOpts::normal().key("DataDigest", "CRC32C"));
    assert!(c.digests.data);
    let all = fill(&mut c, 0x52);
    let before = zero_copy_bytes(&t);
    // The connection checks every data digest.
    let r = c.read(FILE, 0, MIB_BLOCKS);
    r.assert_good();
    assert!(r.data == all[..MIB]);
    assert_eq!(zero_copy_bytes(&t), before, "sendfile cannot digest: the READ copies");
}

/// Reads PDUs until every command of `itts` has its status: the Data-In of each (by offset) and
/// its status.
fn collect_all(c: &mut Conn, itts: &[u32]) -> HashMap<u32, (Vec<u8>, u8)> {
    let mut got: HashMap<u32, (Vec<u8>, u8)> = HashMap::new();
    let mut done = 0;
    while done < itts.len() {
        let p = c.recv();
        let b = p.bhs();
        assert!(itts.contains(&b.itt()), "a PDU of no task: {p:?}");
        let e = got.entry(b.itt()).or_insert((Vec::new(), 0xff));
        match b.opcode() {
            Opcode::DATA_IN => {
                assert_eq!(b.buffer_offset() as usize, e.0.len(), "Data-In in order");
                e.0.extend_from_slice(&p.data);
                if b.status_bit() {
                    e.1 = b.status();
                    done += 1;
                }
            }
            Opcode::SCSI_RESPONSE => {
                e.1 = b.status();
                done += 1;
            }
            op => panic!("unexpected {op:?}: {p:?}"),
        }
    }
    got
}

/// What overlaps the last READ while its bytes wait in the target.
#[derive(Clone, Copy)]
enum Overlap {
    /// COMPARE AND WRITE of the last block: all-or-nothing to the READ.
    CompareAndWrite,
    /// An ORDERED WRITE of the last block: it may start once the READs have left the task set
    /// (their bytes are in the socket), but must not change what they send.
    OrderedWrite,
}

/// Eight 1 MiB READs to an initiator that does not read for a while, then `overlap` on the last
/// block (which the last READ, not sent yet, covers): the READ must show the block as it was,
/// the write must land after.
fn slow_reader(overlap: Overlap) {
    let t = start();
    let mut c = t.login();
    let all = fill(&mut c, 0x73);
    let before = zero_copy_bytes(&t);
    // A small receive buffer: most of the 8 MiB below waits in the target while we do not read.
    socket2::SockRef::from(&c.sock).set_recv_buffer_size(32 << 10).unwrap();
    let mut itts = Vec::new();
    for i in 0..8u32 {
        let cdb = read10(i * u32::from(MIB_BLOCKS), MIB_BLOCKS);
        itts.push(c.send_cmd(&CmdPdu { read: true, edtl: MIB as u32, ..CmdPdu::new(FILE, cdb) }));
    }
    std::thread::sleep(Duration::from_millis(300));
    // Commands still flow in while the target waits to send (the receive side is not stuck).
    let tur = c.send_cmd(&CmdPdu::new(FILE, tur_cdb()));
    let last = BLOCKS as usize - 1;
    let new = pattern(BS, 0xee);
    let w = match overlap {
        Overlap::CompareAndWrite => {
            let mut data = all[last * BS..].to_vec();
            data.extend_from_slice(&new);
            let mut cdb = [0u8; 16];
            cdb[0] = 0x89;
            cdb[2..10].copy_from_slice(&(last as u64).to_be_bytes());
            cdb[13] = 1;
            c.send_cmd(&CmdPdu { write: true, edtl: 2 * BS as u32, data: &data, ..CmdPdu::new(FILE, cdb) })
        }
        Overlap::OrderedWrite => c.send_cmd(&CmdPdu {
            write: true,
            edtl: BS as u32,
            data: &new,
            attr: TaskAttr::ORDERED,
            ..CmdPdu::new(FILE, write10(last as u32, 1))
        }),
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut wait = itts.clone();
    wait.extend([tur, w]);
    let got = collect_all(&mut c, &wait);
    for (i, itt) in itts.iter().enumerate() {
        let (data, status) = &got[itt];
        assert_eq!(*status, GOOD);
        if let Some(k) = data.iter().zip(&all[i * MIB..]).position(|(a, b)| a != b) {
            panic!("READ {i}: the bytes differ from byte {k} of {}", data.len());
        }
        assert_eq!(data.len(), MIB);
    }
    assert_eq!(got[&tur].1, GOOD);
    assert_eq!(got[&w].1, GOOD, "the write (COMPARE AND WRITE compared against the old block)");
    let r = c.read(FILE, last as u32, 1);
    assert!(r.data == new, "the write landed");
    assert_eq!(zero_copy_bytes(&t) - before, 8 * MIB as u64);
    c.assert_usable();
}

#[test]
fn a_slow_reader_gets_every_byte_and_compare_and_write_waits_for_the_read() {
    slow_reader(Overlap::CompareAndWrite);
}

#[test]
fn an_ordered_write_waits_for_the_bytes_of_the_read_before_it() {
    slow_reader(Overlap::OrderedWrite);
}
