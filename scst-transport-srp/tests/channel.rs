//! The sans-IO SRP core against a real target with a RAM disk: hand-built IUs in, IU bytes and
//! moved data out. The initiator's memory is simulated as buffers keyed by rkey.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use scst::{Device, DeviceConfig, Disk, Lun, ProtocolId, SgvConfig, SgvPool, Target};
use scst_backends::RamStore;
use scst_transport_srp::iu::{
    self, CmdBuilder, CredReq, DescFormat, DirectDesc, LoginRej, LoginReq, LoginRsp, RejectReason, RspView, TLogout,
    TskMgmt, buf_fmt, logout_reason, opcode, req_flags, rsp_flag, rsp_flags, tm_rsp, tmf,
};
use scst_transport_srp::{Action, Channel, LoginOutcome, PortConfig, SrpPort, Wake, XferId};

const GUID: u64 = 0x0002_c903_00a1_b2c3;
const IPID: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x02, 0xc9, 0x03, 0, 0xa1, 0xb2, 0xc3];

fn target() -> Arc<Target> {
    let t = Target::new("srp-test", SgvPool::new(SgvConfig::default()));
    let disk = Disk::new(RamStore::new(1 << 20, 512).unwrap());
    t.add_lun(Lun(0), Device::new(DeviceConfig::new("srp-ram0"), disk).unwrap(), false).unwrap();
    t
}

fn port_with(depth: u32) -> Arc<SrpPort> {
    let mut cfg = PortConfig::new(GUID);
    cfg.queue_depth = depth;
    cfg.max_channels = 2;
    SrpPort::new(target(), cfg)
}

fn login_req(ipid: [u8; 16], flags: u8) -> LoginReq {
    let mut tpid = [0u8; 16];
    tpid[..8].copy_from_slice(&GUID.to_be_bytes());
    tpid[8..].copy_from_slice(&GUID.to_be_bytes());
    LoginReq {
        tag: 0x1234,
        req_it_iu_len: 4164,
        req_buf_fmt: buf_fmt::DIRECT | buf_fmt::INDIRECT,
        req_flags: flags,
        imm_data_offset: 0,
        initiator_port_id: ipid,
        target_port_id: tpid,
    }
}

fn reject_reason(o: LoginOutcome) -> RejectReason {
    match o {
        LoginOutcome::Reject(b) => {
            let r = LoginRej::parse(&b).unwrap();
            assert_eq!(r.tag, 0x1234, "the rejection echoes the request's tag");
            assert_eq!(r.sup_buf_fmt, 6);
            r.reason
        }
        LoginOutcome::Accept { .. } => panic!("login accepted"),
    }
}

/// The initiator side: its memory, credits and what it received.
struct Ini {
    ch: Box<Channel>,
    mem: HashMap<u32, (u64, Vec<u8>)>,
    got: Vec<Vec<u8>>,
    credit: u32,
    disconnected: bool,
    woken: Arc<AtomicUsize>,
    /// RDMA READs held back (to abort a command waiting for its data).
    hold_reads: bool,
    held: Vec<(XferId, Vec<DirectDesc>, u32)>,
    next_tag: u64,
}

fn wake_counter() -> (Wake, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let m = n.clone();
    (Arc::new(move || _ = m.fetch_add(1, Relaxed)), n)
}

fn login(port: &Arc<SrpPort>, ipid: [u8; 16], flags: u8) -> (Ini, LoginRsp) {
    login_with(port, login_req(ipid, flags))
}

fn login_with(port: &Arc<SrpPort>, req: LoginReq) -> (Ini, LoginRsp) {
    let (wake, woken) = wake_counter();
    match port.login(&req.build_rdma_cm(), wake) {
        LoginOutcome::Accept { channel, rsp } => {
            let r = LoginRsp::parse(&rsp).unwrap();
            let ini = Ini {
                ch: channel,
                mem: HashMap::new(),
                got: Vec::new(),
                credit: r.req_lim_delta,
                disconnected: false,
                woken,
                hold_reads: false,
                held: Vec::new(),
                next_tag: 1,
            };
            (ini, r)
        }
        LoginOutcome::Reject(b) => panic!("login rejected: {:?}", LoginRej::parse(&b)),
    }
}

impl Ini {
    fn region(&mut self, rkey: u32, va: u64, bytes: Vec<u8>) -> DirectDesc {
        let len = bytes.len() as u32;
        self.mem.insert(rkey, (va, bytes));
        DirectDesc { va, rkey, len }
    }

    fn remote(&mut self, d: &DirectDesc) -> &mut [u8] {
        let (base, buf) = self.mem.get_mut(&d.rkey).expect("registered rkey");
        let off = (d.va - *base) as usize;
        &mut buf[off..off + d.len as usize]
    }

    fn do_read(&mut self, xfer: XferId, remote: &[DirectDesc], len: u32) {
        let mut off = 0;
        let mut data = Vec::new();
        for d in remote {
            data.extend_from_slice(self.remote(d));
        }
        assert_eq!(data.len(), len as usize, "the read covers exactly the length asked for");
        let buf = self.ch.xfer_buf_mut(xfer).expect("command buffer");
        buf.write_at(off, &data);
        off += data.len();
        assert_eq!(off, len as usize);
        self.ch.rdma_done(xfer, true);
    }

    /// The channel was woken, sent SRP_T_LOGOUT with `reason` and disconnected.
    fn expect_t_logout(&mut self, reason: u32) {
        assert!(self.woken.load(Relaxed) > 0, "the channel's driver was woken");
        self.pump();
        let t = TLogout::parse(&self.got[0]).unwrap();
        assert_eq!(t.reason, reason);
        assert!(self.disconnected, "disconnect after the SRP_T_LOGOUT was sent");
    }

    /// Runs the channel's actions to quiescence, like a driver with an instant fabric.
    fn pump(&mut self) {
        while let Some(a) = self.ch.poll() {
            match a {
                Action::Send { id, bytes, .. } => {
                    if matches!(bytes[0], opcode::RSP | opcode::CRED_REQ) {
                        self.credit += u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
                    }
                    self.got.push(bytes);
                    self.ch.send_done(id, true);
                }
                Action::RdmaRead { xfer, remote, len } => {
                    if self.hold_reads {
                        self.held.push((xfer, remote, len));
                    } else {
                        self.do_read(xfer, &remote, len);
                    }
                }
                Action::RdmaWrite { xfer, remote, len } => {
                    let mut data = vec![0u8; len as usize];
                    let cmd = self.ch.xfer_cmd(xfer).expect("command");
                    let mut slices = scst::sgv::empty_io_slices();
                    let n = cmd.data_in_slices(0, len as usize, &mut slices);
                    let mut off = 0;
                    for s in &slices[..n] {
                        data[off..off + s.len()].copy_from_slice(s);
                        off += s.len();
                    }
                    let mut off = 0;
                    for d in &remote {
                        let k = d.len as usize;
                        self.remote(d).copy_from_slice(&data[off..off + k]);
                        off += k;
                    }
                    self.ch.rdma_done(xfer, true);
                }
                Action::FetchTable { xfer, remote, len } => {
                    assert_eq!(remote.len, len);
                    let table = self.remote(&remote).to_vec();
                    self.ch.table_buf_mut(xfer).expect("table buffer").copy_from_slice(&table);
                    self.ch.rdma_done(xfer, true);
                }
                Action::Disconnect => self.disconnected = true,
            }
        }
    }

    /// Delivers one IU as the fabric would: receive, repost, run.
    fn send(&mut self, iu: &[u8]) -> Result<(), scst_transport_srp::ChannelError> {
        if matches!(iu[0], opcode::CMD | opcode::TSK_MGMT) {
            assert!(self.credit > 0, "the initiator has a credit to send with");
            self.credit -= 1;
        }
        let r = self.ch.receive(iu);
        self.ch.recv_reposted();
        self.pump();
        r
    }

    fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    /// Sends a command and returns its SRP_RSP.
    fn cmd(&mut self, b: CmdBuilder) -> Vec<u8> {
        let tag = b.tag;
        self.send(&b.build()).unwrap();
        self.take_rsp(tag)
    }

    fn take_rsp(&mut self, tag: u64) -> Vec<u8> {
        let i = self
            .got
            .iter()
            .position(|b| b[0] == opcode::RSP && RspView::parse(b).unwrap().tag() == tag)
            .unwrap_or_else(|| panic!("no SRP_RSP for tag {tag}: {:?}", self.got));
        self.got.remove(i)
    }

    fn simple(&mut self, cdb: &[u8]) -> Vec<u8> {
        let tag = self.tag();
        self.cmd(CmdBuilder { tag, cdb: cdb.to_vec(), ..CmdBuilder::default() })
    }

    fn clear_ua(&mut self) {
        let r = self.simple(&[0; 6]);
        let v = RspView::parse(&r).unwrap();
        assert_eq!(v.status(), 2, "a new nexus starts with a unit attention");
        assert_eq!((v.sense()[2] & 0xf, v.sense()[12], v.sense()[13]), (6, 0x29, 0x00));
        let r = self.simple(&[0; 6]);
        assert_eq!(RspView::parse(&r).unwrap().status(), 0);
    }

    fn write(&mut self, lba: u32, descs: Vec<DirectDesc>, fmt: DescFormat, blocks: u16) -> Vec<u8> {
        let tag = self.tag();
        let l = lba.to_be_bytes();
        let n = blocks.to_be_bytes();
        let cdb = vec![0x2a, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0];
        self.cmd(CmdBuilder { tag, cdb, data_out: Some((fmt, descs)), ..CmdBuilder::default() })
    }

    fn read(&mut self, lba: u32, descs: Vec<DirectDesc>, fmt: DescFormat, blocks: u16) -> Vec<u8> {
        let tag = self.tag();
        let l = lba.to_be_bytes();
        let n = blocks.to_be_bytes();
        let cdb = vec![0x28, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0];
        self.cmd(CmdBuilder { tag, cdb, data_in: Some((fmt, descs)), ..CmdBuilder::default() })
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn good(r: &[u8]) -> RspView<'_> {
    let v = RspView::parse(r).unwrap();
    assert_eq!(v.status(), 0, "status GOOD, sense {:02x?}", v.sense());
    v
}

#[test]
fn login_accepts_both_layouts_and_names_the_initiator() {
    let port = port_with(16);
    let (ini, rsp) = login(&port, IPID, req_flags::IMMED_REQUESTED);
    assert_eq!(rsp.tag, 0x1234);
    assert_eq!(rsp.req_lim_delta, 15, "credits for every receive buffer but one");
    assert_eq!(rsp.max_it_iu_len, 4164, "the initiator's IU length, accepted");
    assert_eq!(rsp.sup_buf_fmt, buf_fmt::DIRECT | buf_fmt::INDIRECT);
    assert_eq!(rsp.rsp_flags, rsp_flags::NO_CHANNEL, "no immediate data without a usable offset");
    let s = ini.ch.session();
    assert_eq!(s.config().initiator_name, "0xfe800000000000000002c90300a1b2c3");
    assert_eq!(s.port().protocol, ProtocolId::SRP);
    assert_eq!(s.port().version_descriptor, 0x0940);
    // The standard 64-byte layout is accepted too (a new single-channel login of the same
    // nexus: the first channel is terminated).
    let (wake, _) = wake_counter();
    match port.login(&login_req(IPID, 0).build(), wake) {
        LoginOutcome::Accept { rsp, .. } => assert_eq!(LoginRsp::parse(&rsp).unwrap().rsp_flags, rsp_flags::TERMINATED),
        LoginOutcome::Reject(_) => panic!("rejected"),
    }
}

#[test]
fn login_rejections() {
    let port = port_with(16);
    let login = |r: LoginReq| {
        let (wake, _) = wake_counter();
        reject_reason(port.login(&r.build_rdma_cm(), wake))
    };
    let mut r = login_req(IPID, 0);
    r.target_port_id[15] ^= 1;
    assert_eq!(login(r), RejectReason::UNABLE_TO_ASSOCIATE, "ioc_guid mismatch");
    let mut r = login_req(IPID, 0);
    r.target_port_id[0] ^= 1;
    assert_eq!(login(r), RejectReason::UNABLE_TO_ASSOCIATE, "id_ext mismatch");
    let mut r = login_req(IPID, 0);
    r.req_it_iu_len = 8277;
    assert_eq!(login(r), RejectReason::IU_LENGTH_TOO_LARGE);
    let mut r = login_req(IPID, 0);
    r.req_it_iu_len = 63;
    assert_eq!(login(r), RejectReason::UNABLE_TO_ESTABLISH);
    let mut r = login_req(IPID, 0);
    r.req_buf_fmt = 0;
    assert_eq!(login(r), RejectReason::UNSUPPORTED_DESCRIPTOR_FORMAT);
    let mut r = login_req(IPID, 0);
    r.req_buf_fmt = 0x8 | buf_fmt::DIRECT;
    assert_eq!(login(r), RejectReason::UNSUPPORTED_DESCRIPTOR_FORMAT);
    // Access control: an initiator no group admits, with unmatched initiators refused.
    port.target().set_refuse_unmatched(true);
    assert_eq!(login(login_req(IPID, 0)), RejectReason::UNABLE_TO_ESTABLISH);
    port.target().set_refuse_unmatched(false);
    // Garbage private data: rejected, never a panic.
    for len in [0, 1, 8, 55] {
        let (wake, _) = wake_counter();
        match port.login(&vec![0x5a; len], wake) {
            LoginOutcome::Reject(b) => {
                assert_eq!(LoginRej::parse(&b).unwrap().reason, RejectReason::UNABLE_TO_ESTABLISH)
            }
            LoginOutcome::Accept { .. } => panic!("accepted garbage"),
        }
    }
    assert_eq!(port.nexus_count(), 0);
}

#[test]
fn a_management_close_logs_out_every_channel_of_the_nexus() {
    let port = port_with(8);
    let (mut a, _) = login(&port, IPID, 0);
    let (mut b, _) = login(&port, IPID, req_flags::MULTI);
    let mut other = IPID;
    other[0] = 0;
    let (mut o, _) = login(&port, other, 0);
    let s = a.ch.session().clone();
    assert_eq!(s.parameters(), [("Channels".to_string(), "2".to_string())]);
    assert!(s.request_close());
    for ini in [&mut a, &mut b] {
        ini.expect_t_logout(logout_reason::NO_REASON);
    }
    o.pump();
    assert!(o.got.is_empty() && !o.disconnected, "the other nexus saw nothing");
}

#[test]
fn multichannel_and_single_channel_logins() {
    let port = port_with(8);
    let (mut a, ra) = login(&port, IPID, 0);
    assert_eq!(ra.rsp_flags, rsp_flags::NO_CHANNEL);
    let (mut b, rb) = login(&port, IPID, req_flags::MULTI);
    assert_eq!(rb.rsp_flags, rsp_flags::MAINTAINED);
    assert_eq!(a.ch.session().id(), b.ch.session().id(), "one I_T nexus, two channels");
    // max_channels is 2.
    let (wake, _) = wake_counter();
    assert_eq!(
        reject_reason(port.login(&login_req(IPID, req_flags::MULTI).build_rdma_cm(), wake)),
        RejectReason::CHANNEL_LIMIT_REACHED
    );
    // Another initiator port is another nexus.
    let mut other = IPID;
    other[0] = 0;
    let (o, ro) = login(&port, other, req_flags::MULTI);
    assert_eq!(ro.rsp_flags, rsp_flags::NO_CHANNEL);
    assert_ne!(o.ch.session().id(), a.ch.session().id());
    // A single-channel login of the first nexus terminates both of its channels.
    let (c, rc) = login(&port, IPID, 0);
    assert_eq!(rc.rsp_flags, rsp_flags::TERMINATED);
    assert_ne!(c.ch.session().id(), a.ch.session().id());
    assert!(a.ch.session().is_closed());
    for ini in [&mut a, &mut b] {
        ini.expect_t_logout(logout_reason::MULTICHANNEL_ACTION);
    }
    assert_eq!(port.nexus_count(), 2);
    drop(o);
    assert_eq!(port.nexus_count(), 1);
}

#[test]
fn write_and_read_with_direct_descriptors() {
    let port = port_with(16);
    let (mut ini, _) = login(&port, IPID, 0);
    ini.clear_ua();
    let data = pattern(4096, 7);
    let src = ini.region(1, 0x10_0000, data.clone());
    let r = ini.write(16, vec![src], DescFormat::Direct, 8);
    let v = good(&r);
    assert_eq!(v.flags(), 0, "no residual");
    let dst = ini.region(2, 0x20_0000, vec![0; 4096]);
    let r = ini.read(16, vec![dst], DescFormat::Direct, 8);
    let v = good(&r);
    assert_eq!(v.flags(), 0);
    assert_eq!(ini.mem[&2].1, data, "READ returns what WRITE stored");
}

#[test]
fn write_and_read_with_indirect_descriptors() {
    let port = port_with(16);
    let (mut ini, _) = login(&port, IPID, 0);
    ini.clear_ua();
    let data = pattern(3 * 1024, 3);
    // Three pieces in two memory regions, one at an offset inside its region.
    let mut region = vec![0u8; 8192];
    region[100..100 + 1024].copy_from_slice(&data[..1024]);
    region[4000..4000 + 512].copy_from_slice(&data[1024..1536]);
    ini.region(5, 0x5000, region);
    ini.region(6, 0x9_0000, data[1536..].to_vec());
    let descs = vec![
        DirectDesc { va: 0x5000 + 100, rkey: 5, len: 1024 },
        DirectDesc { va: 0x5000 + 4000, rkey: 5, len: 512 },
        DirectDesc { va: 0x9_0000, rkey: 6, len: 1536 },
    ];
    good(&ini.write(40, descs, DescFormat::Indirect, 6));
    // Read back through four descriptors of other sizes.
    let sizes = [100u32, 924, 1536, 512];
    let mut descs = Vec::new();
    for (i, s) in sizes.iter().enumerate() {
        descs.push(ini.region(10 + i as u32, 0x100_0000 * (i as u64 + 1), vec![0; *s as usize]));
    }
    good(&ini.read(40, descs, DescFormat::Indirect, 6));
    let mut back = Vec::new();
    for i in 0..4 {
        back.extend_from_slice(&ini.mem[&(10 + i)].1);
    }
    assert_eq!(back, data);
    let st = ini.ch.stats();
    assert_eq!((st.indirect, st.rdma_reads, st.rdma_writes), (2, 1, 1));
}

/// An indirect descriptor whose table did not fit in the SRP_CMD (ib_srp's allow_ext_sg): the
/// IU carries a partial table and the table descriptor points at the whole list.
fn external(
    ini: &mut Ini,
    rkey: u32,
    descs: &[DirectDesc],
    partial: usize,
    dir_out: bool,
    cdb: Vec<u8>,
    tag: u64,
) -> Vec<u8> {
    let mut table = Vec::new();
    for d in descs {
        table.extend_from_slice(&d.to_bytes());
    }
    let tdesc = ini.region(rkey, 0xabc0_0000, table);
    let part = descs[..partial].to_vec();
    let b = if dir_out {
        CmdBuilder { tag, cdb, data_out: Some((DescFormat::Indirect, part)), ..CmdBuilder::default() }
    } else {
        CmdBuilder { tag, cdb, data_in: Some((DescFormat::Indirect, part)), ..CmdBuilder::default() }
    };
    let mut b = b.build();
    b[48..64].copy_from_slice(&tdesc.to_bytes());
    let total: u32 = descs.iter().map(|d| d.len).sum();
    b[64..68].copy_from_slice(&total.to_be_bytes());
    b
}

#[test]
fn external_descriptor_tables_are_fetched() {
    let port = port_with(16);
    let (mut ini, _) = login(&port, IPID, 0);
    ini.clear_ua();
    let data = pattern(5 * 512, 77);
    let descs: Vec<DirectDesc> = (0..5)
        .map(|i| ini.region(100 + i, 0x40_0000 + u64::from(i) * 0x1000, data[i as usize * 512..][..512].to_vec()))
        .collect();
    let b = external(&mut ini, 99, &descs, 1, true, vec![0x2a, 0, 0, 0, 0, 50, 0, 0, 5, 0], 200);
    ini.send(&b).unwrap();
    good(&ini.take_rsp(200));
    let dst: Vec<DirectDesc> =
        (0..5).map(|i| ini.region(200 + i, 0x80_0000 + u64::from(i) * 0x1000, vec![0; 512])).collect();
    // No descriptor at all in the IU: the whole list is external.
    let b = external(&mut ini, 98, &dst, 0, false, vec![0x28, 0, 0, 0, 0, 50, 0, 0, 5, 0], 201);
    ini.send(&b).unwrap();
    good(&ini.take_rsp(201));
    let mut back = Vec::new();
    for i in 0..5 {
        back.extend_from_slice(&ini.mem[&(200 + i)].1);
    }
    assert_eq!(back, data);
    let st = ini.ch.stats();
    assert_eq!((st.external_tables, st.indirect), (2, 2));
    // A fetched table whose lengths disagree with the total: CHECK CONDITION, nothing read.
    let mut b = external(&mut ini, 97, &dst, 1, false, vec![0x28, 0, 0, 0, 0, 50, 0, 0, 5, 0], 202);
    b[64..68].copy_from_slice(&(4u32 * 512).to_be_bytes());
    ini.send(&b).unwrap();
    let r = ini.take_rsp(202);
    assert_eq!((RspView::parse(&r).unwrap().status(), RspView::parse(&r).unwrap().sense()[12]), (2, 0x0e));
    // A table length that is not a whole number of descriptors: refused at once.
    let mut b = external(&mut ini, 96, &dst, 1, false, vec![0x28, 0, 0, 0, 0, 50, 0, 0, 5, 0], 203);
    b[60..64].copy_from_slice(&33u32.to_be_bytes());
    assert!(ini.send(&b).is_err());
    assert_eq!(RspView::parse(&ini.take_rsp(203)).unwrap().status(), 2);
    // The table read fails: the channel disconnects, nothing is left behind.
    let b = external(&mut ini, 95, &dst, 1, false, vec![0x28, 0, 0, 0, 0, 50, 0, 0, 5, 0], 204);
    ini.credit -= 1;
    ini.ch.receive(&b).unwrap();
    ini.ch.recv_reposted();
    let mut fetch = None;
    while let Some(a) = ini.ch.poll() {
        if let Action::FetchTable { xfer, .. } = a {
            fetch = Some(xfer);
        }
    }
    ini.ch.rdma_done(fetch.expect("a table fetch"), false);
    ini.pump();
    assert!(ini.disconnected);
    assert_eq!(ini.ch.outstanding(), 0);
}

#[test]
fn residuals_sense_and_task_set_errors() {
    let port = port_with(16);
    let (mut ini, _) = login(&port, IPID, 0);
    ini.clear_ua();
    // READ of one block into a 1024-byte buffer: 512 bytes under.
    let d = ini.region(1, 0, vec![0xee; 1024]);
    let r = ini.read(0, vec![d], DescFormat::Direct, 1);
    let v = good(&r);
    assert_eq!(v.flags(), rsp_flag::DIUNDER);
    assert_eq!(v.data_in_res(), 512);
    assert_eq!(&ini.mem[&1].1[512..], &[0xee; 512][..], "nothing written past the data");
    // READ of two blocks into a 512-byte buffer: 512 over, the buffer filled.
    let d = ini.region(2, 0, vec![0xee; 512]);
    let v2 = ini.read(0, vec![d], DescFormat::Direct, 2);
    let v = RspView::parse(&v2).unwrap();
    assert_eq!((v.flags(), v.data_in_res()), (rsp_flag::DIOVER, 512));
    assert_eq!(ini.mem[&2].1, vec![0; 512]);
    // WRITE of one block from a 1024-byte buffer: 512 under.
    let d = ini.region(3, 0, vec![1; 1024]);
    let r = ini.write(0, vec![d], DescFormat::Direct, 1);
    let v = good(&r);
    assert_eq!((v.flags(), v.data_out_res()), (rsp_flag::DOUNDER, 512));
    // A LUN that does not exist.
    let tag = ini.tag();
    let r = ini.cmd(CmdBuilder { tag, lun: [0, 7, 0, 0, 0, 0, 0, 0], cdb: vec![0; 6], ..CmdBuilder::default() });
    let v = RspView::parse(&r).unwrap();
    assert_eq!(v.status(), 2);
    assert_eq!(v.flags(), rsp_flag::SNSVALID);
    assert_eq!((v.sense()[2] & 0xf, v.sense()[12]), (5, 0x25), "LOGICAL UNIT NOT SUPPORTED");
    // An opcode the disk does not know.
    let r = ini.simple(&[0xd9, 0, 0, 0, 0, 0]);
    let v = RspView::parse(&r).unwrap();
    assert_eq!((v.status(), v.sense()[2] & 0xf, v.sense()[12]), (2, 5, 0x20), "INVALID COMMAND OPERATION CODE");
    // A READ beyond the end: LBA OUT OF RANGE, and no data moved (data-in under by all).
    let d = ini.region(4, 0, vec![0xcc; 512]);
    let r = ini.read(2048, vec![d], DescFormat::Direct, 1);
    let v = RspView::parse(&r).unwrap();
    assert_eq!((v.status(), v.sense()[12]), (2, 0x21));
    assert_eq!((v.flags() & !rsp_flag::SNSVALID, v.data_in_res()), (rsp_flag::DIUNDER, 512));
    assert_eq!(ini.mem[&4].1, vec![0xcc; 512]);
    // A WRITE whose initiator described a data-in buffer only: refused, nothing read.
    let d = ini.region(7, 0, vec![9; 512]);
    let tag = ini.tag();
    let r = ini.cmd(CmdBuilder {
        tag,
        cdb: vec![0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        data_in: Some((DescFormat::Direct, vec![d])),
        ..CmdBuilder::default()
    });
    assert_eq!(RspView::parse(&r).unwrap().status(), 2);
}

/// Found by the `srp_iu` fuzz target: a READ whose initiator described only a data-out
/// buffer must not RDMA-write anything (there is no data-in buffer to write to).
#[test]
fn data_in_without_a_data_in_buffer_moves_nothing() {
    let port = port_with(16);
    let (mut ini, _) = login(&port, IPID, 0);
    ini.clear_ua();
    let d = ini.region(1, 0, vec![0x33; 512]);
    let b = CmdBuilder {
        tag: 70,
        cdb: vec![0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        data_out: Some((DescFormat::Direct, vec![d])),
        ..CmdBuilder::default()
    }
    .build();
    ini.ch.receive(&b).unwrap();
    ini.ch.recv_reposted();
    let mut rsp = None;
    while let Some(a) = ini.ch.poll() {
        match a {
            Action::Send { id, bytes, .. } => {
                ini.ch.send_done(id, true);
                rsp = Some(bytes);
            }
            other => panic!("no data transfer expected, got {other:?}"),
        }
    }
    let r = rsp.expect("a response");
    let v = RspView::parse(&r).unwrap();
    assert_eq!(v.status(), 0);
    assert_eq!(v.flags(), rsp_flag::DIOVER | rsp_flag::DOUNDER);
    assert_eq!((v.data_in_res(), v.data_out_res()), (512, 512));
    assert_eq!(ini.mem[&1].1, vec![0x33; 512], "the data-out buffer untouched");
}

#[test]
fn immediate_data_writes_without_rdma_read() {
    let port = port_with(16);
    let mut req = login_req(IPID, req_flags::IMMED_REQUESTED);
    req.req_it_iu_len = 8276;
    req.imm_data_offset = 80;
    let (mut ini, rsp) = login_with(&port, req);
    assert_eq!(rsp.rsp_flags, rsp_flags::IMMED_SUPPORTED, "immediate data offered");
    assert_eq!(rsp.max_it_iu_len, 8276);
    ini.clear_ua();
    let data = pattern(8192, 9);
    let wr = |tag, lba: u8, data: Vec<u8>| CmdBuilder {
        tag,
        cdb: vec![0x2a, 0, 0, 0, 0, lba, 0, 0, (data.len() / 512) as u8, 0],
        data_out: Some((DescFormat::Immediate, vec![])),
        immediate: Some((80, data)),
        ..CmdBuilder::default()
    };
    let b = wr(80, 20, data.clone()).build();
    assert_eq!(b.len(), 80 + 8192);
    assert_eq!(b[5], 0x30);
    good(&ini.cmd(wr(80, 20, data.clone())));
    assert_eq!(ini.ch.stats().rdma_reads, 0, "the data came in the SRP_CMD");
    let d = ini.region(1, 0, vec![0; 8192]);
    good(&ini.read(20, vec![d], DescFormat::Direct, 16));
    assert_eq!(ini.mem[&1].1, data);
    // Immediate data announced longer than the IU: refused, nothing written.
    let mut b = wr(81, 40, pattern(1024, 1)).build();
    b.truncate(80 + 1000);
    ini.credit -= 1;
    assert!(ini.ch.receive(&b).is_err());
    ini.ch.recv_reposted();
    ini.pump();
    let r = ini.take_rsp(81);
    assert_eq!((RspView::parse(&r).unwrap().status(), RspView::parse(&r).unwrap().sense()[12]), (2, 0x0e));
    let d = ini.region(2, 0, vec![0xff; 1024]);
    good(&ini.read(40, vec![d], DescFormat::Direct, 2));
    assert_eq!(ini.mem[&2].1, vec![0; 1024]);
    // Without negotiation (or with the port's offer switched off) immediate data is refused.
    let mut cfg = PortConfig::new(GUID);
    cfg.immediate_data = false;
    let off = SrpPort::new(port.target().clone(), cfg);
    let (mut ini, rsp) = login_with(&off, req);
    assert_eq!(rsp.rsp_flags & rsp_flags::IMMED_SUPPORTED, 0);
    ini.clear_ua();
    ini.credit -= 1;
    assert!(ini.ch.receive(&wr(82, 60, pattern(512, 2)).build()).is_err());
    ini.ch.recv_reposted();
    ini.pump();
    assert_eq!(RspView::parse(&ini.take_rsp(82)).unwrap().status(), 2);
}

#[test]
fn solicited_notification_follows_the_command_flags() {
    let port = port_with(16);
    let (mut ini, _) = login(&port, IPID, 0);
    ini.clear_ua();
    for (sol_not, opc, want) in [(0x02u8, 0x00u8, true), (0x04, 0x00, false), (0x04, 0xd9, true), (0, 0xd9, false)] {
        let mut b = CmdBuilder { tag: 99, cdb: vec![opc, 0, 0, 0, 0, 0], ..CmdBuilder::default() }.build();
        b[1] = sol_not;
        ini.credit -= 1;
        ini.ch.receive(&b).unwrap();
        ini.ch.recv_reposted();
        let mut seen = None;
        while let Some(a) = ini.ch.poll() {
            if let Action::Send { id, bytes, solicited } = a {
                ini.credit += u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
                assert_eq!(bytes[1] & 1 == 1, solicited, "SOLNT matches the send flag");
                seen = Some(solicited);
                ini.ch.send_done(id, true);
            }
        }
        assert_eq!(seen, Some(want), "sol_not {sol_not:#x}, opcode {opc:#x}");
    }
}

#[test]
fn credits_come_back_only_for_reposted_buffers() {
    let port = port_with(4);
    let (mut ini, rsp) = login(&port, IPID, 0);
    assert_eq!(rsp.req_lim_delta, 3);
    let tur = |tag| CmdBuilder { tag, cdb: vec![0; 6], ..CmdBuilder::default() }.build();
    // Two commands whose receive buffers the driver has not reposted yet: no credit back.
    for tag in [1, 2] {
        ini.ch.receive(&tur(tag)).unwrap();
        ini.credit -= 1;
    }
    ini.pump();
    assert_eq!(ini.got.len(), 2);
    for r in &ini.got {
        assert_eq!(RspView::parse(r).unwrap().req_lim_delta(), 0);
    }
    assert_eq!((ini.credit, ini.ch.initiator_credit()), (1, 1));
    // Reposting them lets the channel grant them again: with no response due, an
    // SRP_CRED_REQ carries them (ib_srp sends no command on its last credit).
    ini.ch.recv_reposted();
    ini.ch.recv_reposted();
    ini.got.clear();
    ini.pump();
    assert_eq!(ini.got.len(), 1);
    let c = CredReq::parse(&ini.got[0]).unwrap();
    assert_eq!(c.req_lim_delta, 2);
    assert_eq!(ini.credit, 3);
    // The SRP_CRED_RSP costs the initiator no credit and earns it none.
    ini.send(&iu::build_short_rsp(opcode::CRED_RSP, c.tag)).unwrap();
    assert!(!ini.disconnected);
    assert_eq!(ini.ch.initiator_credit(), 3);
    ini.got.clear();
    // Normal operation: each response returns the credit of its own command.
    for tag in 10..20 {
        ini.send(&tur(tag)).unwrap();
        assert_eq!(RspView::parse(&ini.take_rsp(tag)).unwrap().req_lim_delta(), 1);
    }
    assert_eq!(ini.credit, 3);
    assert_eq!(ini.ch.stats().credit_overruns, 0);
    // A CRED_RSP nobody asked for is a protocol error: SRP_T_LOGOUT, then disconnect.
    ini.send(&iu::build_short_rsp(opcode::CRED_RSP, 777)).unwrap_err();
    assert_eq!(TLogout::parse(ini.got.last().unwrap()).unwrap().reason, logout_reason::UNEXPECTED_RESPONSE);
    assert!(ini.disconnected);
}

fn tmf_rsp(r: &[u8]) -> u8 {
    let v = RspView::parse(r).unwrap();
    assert_eq!(v.flags() & rsp_flag::RSPVALID, rsp_flag::RSPVALID);
    assert_eq!(v.resp_data().len(), 4);
    v.resp_data()[3]
}

#[test]
fn abort_task_of_a_write_waiting_for_its_data() {
    let port = port_with(16);
    let (mut ini, _) = login(&port, IPID, 0);
    ini.clear_ua();
    let d = ini.region(1, 0, vec![0x77; 512]);
    ini.hold_reads = true;
    let wtag = ini.tag();
    ini.send(
        &CmdBuilder {
            tag: wtag,
            cdb: vec![0x2a, 0, 0, 0, 0, 3, 0, 0, 1, 0],
            data_out: Some((DescFormat::Direct, vec![d])),
            ..CmdBuilder::default()
        }
        .build(),
    )
    .unwrap();
    assert_eq!(ini.held.len(), 1, "the WRITE's data is being read");
    ini.send(&TskMgmt::build(500, [0; 8], tmf::ABORT_TASK, wtag)).unwrap();
    assert!(ini.got.is_empty(), "no TMF response while the aborted command's RDMA READ may still write its buffer");
    let woken = ini.woken.load(Relaxed);
    let (x, remote, len) = ini.held.pop().unwrap();
    ini.do_read(x, &remote, len);
    assert!(ini.woken.load(Relaxed) > woken, "the TMF completion woke the driver");
    ini.pump();
    assert_eq!(ini.got.len(), 1, "the TMF response, and none for the aborted WRITE: {:?}", ini.got);
    assert_eq!(RspView::parse(&ini.got[0]).unwrap().tag(), 500);
    assert_eq!(tmf_rsp(&ini.got[0]), tm_rsp::COMPLETE);
    ini.got.clear();
    ini.hold_reads = false;
    // The aborted WRITE never reached the medium.
    let d = ini.region(2, 0, vec![0xff; 512]);
    good(&ini.read(3, vec![d], DescFormat::Direct, 1));
    assert_eq!(ini.mem[&2].1, vec![0; 512]);
    assert_eq!(ini.ch.outstanding(), 0);
    // ABORT TASK of a tag that is not there (already answered): complete.
    ini.send(&TskMgmt::build(501, [0; 8], tmf::ABORT_TASK, 4242)).unwrap();
    assert_eq!(tmf_rsp(&ini.take_rsp(501)), tm_rsp::COMPLETE);
    // CLEAR ACA: not supported (NormACA is 0); a LUN that does not exist: failed.
    ini.send(&TskMgmt::build(502, [0; 8], tmf::CLEAR_ACA, 0)).unwrap();
    assert_eq!(tmf_rsp(&ini.take_rsp(502)), tm_rsp::NOT_SUPPORTED);
    ini.send(&TskMgmt::build(503, [0, 9, 0, 0, 0, 0, 0, 0], tmf::ABORT_TASK_SET, 0)).unwrap();
    assert_eq!(tmf_rsp(&ini.take_rsp(503)), tm_rsp::FAILED);
    ini.send(&TskMgmt::build(504, [0; 8], 0x20, 0)).unwrap();
    assert_eq!(tmf_rsp(&ini.take_rsp(504)), tm_rsp::NOT_SUPPORTED);
}

#[test]
fn lun_reset_waits_for_the_command_and_raises_a_unit_attention() {
    let port = port_with(16);
    let (mut ini, _) = login(&port, IPID, 0);
    ini.clear_ua();
    let d = ini.region(1, 0, vec![0x42; 1024]);
    ini.hold_reads = true;
    let wtag = ini.tag();
    ini.send(
        &CmdBuilder {
            tag: wtag,
            cdb: vec![0x2a, 0, 0, 0, 0, 8, 0, 0, 2, 0],
            data_out: Some((DescFormat::Direct, vec![d])),
            ..CmdBuilder::default()
        }
        .build(),
    )
    .unwrap();
    ini.send(&TskMgmt::build(600, [0; 8], tmf::LUN_RESET, 0)).unwrap();
    assert!(ini.got.is_empty());
    let (x, remote, len) = ini.held.pop().unwrap();
    ini.do_read(x, &remote, len);
    ini.pump();
    assert_eq!(ini.got.len(), 1);
    assert_eq!(tmf_rsp(&ini.take_rsp(600)), tm_rsp::COMPLETE);
    ini.hold_reads = false;
    let r = ini.simple(&[0; 6]);
    let v = RspView::parse(&r).unwrap();
    assert_eq!((v.status(), v.sense()[2] & 0xf, v.sense()[12], v.sense()[13]), (2, 6, 0x29, 0x03));
    let d = ini.region(2, 0, vec![0xff; 1024]);
    good(&ini.read(8, vec![d], DescFormat::Direct, 2));
    assert_eq!(ini.mem[&2].1, vec![0; 1024], "the reset WRITE did not reach the medium");
}

#[test]
fn malformed_ius_get_clean_answers() {
    let port = port_with(16);
    let (mut ini, _) = login(&port, IPID, 0);
    ini.clear_ua();
    let refused = |ini: &mut Ini, b: &[u8], tag: u64| {
        ini.credit -= 1;
        assert!(ini.ch.receive(b).is_err());
        ini.ch.recv_reposted();
        ini.pump();
        let r = ini.take_rsp(tag);
        let v = RspView::parse(&r).unwrap();
        assert_eq!((v.status(), v.sense()[2] & 0xf, v.sense()[12], v.sense()[13]), (2, 5, 0x0e, 0x03));
        assert!(!ini.disconnected);
    };
    // Truncated SRP_CMD with its tag: CHECK CONDITION, INVALID FIELD IN COMMAND IU.
    let full = CmdBuilder { tag: 31, cdb: vec![0; 6], ..CmdBuilder::default() }.build();
    refused(&mut ini, &full[..20], 31);
    // A descriptor count the IU does not hold.
    let d = DirectDesc { va: 0, rkey: 1, len: 512 };
    let mut b = CmdBuilder {
        tag: 32,
        cdb: vec![0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        data_in: Some((DescFormat::Indirect, vec![d])),
        ..CmdBuilder::default()
    }
    .build();
    b[7] = 5;
    refused(&mut ini, &b, 32);
    // Immediate data format (not offered at login), an unknown format.
    let mut b = CmdBuilder { tag: 33, cdb: vec![0; 6], ..CmdBuilder::default() }.build();
    b[5] = 0x30;
    refused(&mut ini, &b, 33);
    // Both directions at once.
    let b = CmdBuilder {
        tag: 34,
        cdb: vec![0; 6],
        data_out: Some((DescFormat::Direct, vec![d])),
        data_in: Some((DescFormat::Direct, vec![d])),
        ..CmdBuilder::default()
    }
    .build();
    refused(&mut ini, &b, 34);
    // An indirect total length that disagrees with the descriptors.
    let b = CmdBuilder {
        tag: 35,
        cdb: vec![0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        data_in: Some((DescFormat::Indirect, vec![d])),
        total_override: Some(4096),
        ..CmdBuilder::default()
    }
    .build();
    refused(&mut ini, &b, 35);
    // An external descriptor table longer than the 4096 descriptors accepted.
    let mut b = CmdBuilder {
        tag: 36,
        cdb: vec![0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        data_in: Some((DescFormat::Indirect, vec![d])),
        ..CmdBuilder::default()
    }
    .build();
    b[48 + 12..48 + 16].copy_from_slice(&(4097u32 * 16).to_be_bytes());
    refused(&mut ini, &b, 36);
    // A data buffer beyond the port's maximum transfer (1 MiB): refused, nothing moved.
    let big = DirectDesc { va: 0, rkey: 1, len: (1 << 20) + 512 };
    let b = CmdBuilder {
        tag: 38,
        cdb: vec![0x28, 0, 0, 0, 0, 0, 0, 0x08, 0x01, 0],
        data_in: Some((DescFormat::Direct, vec![big])),
        ..CmdBuilder::default()
    }
    .build();
    refused(&mut ini, &b, 38);
    // A truncated TSK_MGMT: REQUEST FIELDS INVALID.
    ini.credit -= 1;
    let t = TskMgmt::build(37, [0; 8], tmf::ABORT_TASK, 1);
    assert!(ini.ch.receive(&t[..30]).is_err());
    ini.ch.recv_reposted();
    ini.pump();
    assert_eq!(tmf_rsp(&ini.take_rsp(37)), tm_rsp::FIELDS_INVALID);
    assert!(ini.got.is_empty());
    // The channel still works.
    good(&ini.simple(&[0; 6]));
    // An opcode an initiator never sends: SRP_T_LOGOUT (invalid IU type), then disconnect.
    assert!(ini.send(&[opcode::RSP; 40]).is_err());
    assert_eq!(TLogout::parse(&ini.got[0]).unwrap().reason, logout_reason::INVALID_IU_TYPE);
    assert!(ini.disconnected);
    assert!(ini.ch.is_closed());
    ini.ch.close();
    assert_eq!(port.nexus_count(), 0);
}

#[test]
fn an_empty_or_oversized_iu_logs_the_channel_out() {
    let port = port_with(16);
    let (mut ini, _) = login(&port, IPID, 0);
    assert!(ini.ch.receive(&[]).is_err());
    ini.ch.recv_reposted();
    ini.pump();
    assert_eq!(TLogout::parse(&ini.got[0]).unwrap().reason, logout_reason::INVALID_IU_LENGTH);
    assert!(ini.disconnected);
    let (mut ini, _) = login(&port, IPID, 0);
    let mut big = CmdBuilder { tag: 1, cdb: vec![0; 6], ..CmdBuilder::default() }.build();
    big.resize(4165, 0);
    assert!(ini.send(&big).is_err());
    assert_eq!(TLogout::parse(&ini.got[0]).unwrap().reason, logout_reason::INVALID_IU_LENGTH);
}

#[test]
fn disconnect_mid_transfer_frees_everything() {
    let port = port_with(16);
    let (mut ini, _) = login(&port, IPID, 0);
    ini.clear_ua();
    let session = ini.ch.session().clone();
    let d = ini.region(1, 0, vec![1; 4096]);
    ini.hold_reads = true;
    let tag = ini.tag();
    ini.send(
        &CmdBuilder {
            tag,
            cdb: vec![0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0],
            data_out: Some((DescFormat::Direct, vec![d])),
            ..CmdBuilder::default()
        }
        .build(),
    )
    .unwrap();
    assert_eq!(session.outstanding(), 1);
    // The QP is gone (its flushed completions drained): close, like a disconnect.
    ini.ch.close();
    assert_eq!(session.outstanding(), 0, "the command went back to the pool");
    assert!(session.is_closed());
    assert_eq!(port.nexus_count(), 0);
    // Late completions and IUs are ignored.
    let (x, _, _) = ini.held.pop().unwrap();
    ini.ch.rdma_done(x, false);
    assert!(ini.ch.receive(&iu::build_i_logout(1)).is_err());
    assert!(ini.ch.poll().is_none());
}

#[test]
fn rdma_failure_disconnects_and_initiator_logout_too() {
    let port = port_with(16);
    let (mut ini, _) = login(&port, IPID, 0);
    ini.clear_ua();
    let d = ini.region(1, 0, vec![1; 512]);
    ini.hold_reads = true;
    let tag = ini.tag();
    ini.send(
        &CmdBuilder {
            tag,
            cdb: vec![0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            data_out: Some((DescFormat::Direct, vec![d])),
            ..CmdBuilder::default()
        }
        .build(),
    )
    .unwrap();
    let (x, _, _) = ini.held.pop().unwrap();
    ini.ch.rdma_done(x, false);
    ini.pump();
    assert!(ini.disconnected);
    assert!(ini.got.iter().all(|b| b[0] != opcode::RSP), "no response for a command whose data never came");
    assert_eq!(ini.ch.outstanding(), 0);
    ini.ch.close();
    let (mut ini, _) = login(&port, IPID, 0);
    ini.send(&iu::build_i_logout(9)).unwrap();
    assert!(ini.disconnected);
    assert!(ini.got.is_empty());
}

/// Random and mutated IUs through the channel: answers or errors, never a panic, and the
/// credit accounting never grants more than the posted buffers.
#[test]
fn random_ius_never_panic() {
    let port = port_with(8);
    let (mut ini, _) = login(&port, IPID, 0);
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let base = CmdBuilder {
        tag: 1,
        cdb: vec![0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        data_in: Some((DescFormat::Indirect, vec![DirectDesc { va: 0, rkey: 1, len: 512 }; 2])),
        ..CmdBuilder::default()
    }
    .build();
    ini.region(1, 0, vec![0; 1024]);
    for i in 0..3000 {
        if ini.ch.is_closed() {
            ini.ch.close();
            ini = login(&port, IPID, 0).0;
            ini.region(1, 0, vec![0; 1024]);
        }
        let mut b = if i % 2 == 0 { base.clone() } else { vec![0u8; (next() % 120) as usize] };
        for _ in 0..(next() % 6) {
            if !b.is_empty() {
                let at = (next() % b.len() as u64) as usize;
                b[at] = next() as u8;
            }
        }
        if i % 5 == 0 && !b.is_empty() {
            b[0] = [opcode::CMD, opcode::TSK_MGMT, opcode::CRED_RSP, opcode::AER_RSP][(next() % 4) as usize];
        }
        let _ = ini.ch.receive(&b);
        ini.ch.recv_reposted();
        // Out-of-range descriptors point at memory the simulated initiator lacks: fail them
        // like a remote access error would.
        while let Some(a) = ini.ch.poll() {
            match a {
                Action::Send { id, .. } => ini.ch.send_done(id, true),
                Action::RdmaRead { xfer, .. } | Action::RdmaWrite { xfer, .. } | Action::FetchTable { xfer, .. } => {
                    ini.ch.rdma_done(xfer, false)
                }
                Action::Disconnect => {}
            }
        }
        assert!(ini.ch.initiator_credit() <= 7, "never more credit than posted buffers less one");
    }
}
