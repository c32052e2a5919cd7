//! SPC-4 commands of the disk handler: INQUIRY and VPD pages, READ CAPACITY, REQUEST SENSE,
//! START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL, the REPORT SUPPORTED ... commands, REPORT
//! TARGET PORT GROUPS and READ DEFECT DATA.

use super::{Disk, MAX_TRANSFER_BYTES};
use crate::alua::{AluaState, PortGroup};
use crate::cmd::{Cmd, Fail};
use crate::ops::{self, DISK_OPS};
use crate::store::BlockStore;
use crate::wire::cdb::{be16, be32, put16, put32, put64};
use crate::wire::sense::{MAX_SENSE_LEN, Sense, SenseCode};

/// A response built on the stack (no heap allocation), then copied to the command's buffer
/// truncated to the allocation length.
pub(super) struct Resp {
    buf: [u8; 2048],
    len: usize,
}

impl Resp {
    pub(super) fn new() -> Self {
        Self { buf: [0; 2048], len: 0 }
    }

    pub(super) fn put(&mut self, b: &[u8]) -> &mut Self {
        let end = (self.len + b.len()).min(self.buf.len());
        self.buf[self.len..end].copy_from_slice(&b[..end - self.len]);
        self.len = end;
        self
    }

    pub(super) fn zeros(&mut self, n: usize) -> &mut Self {
        self.len = (self.len + n).min(self.buf.len());
        self
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    pub(super) fn send(&self, cmd: &mut Cmd, alloc: usize) -> Result<(), Fail> {
        cmd.respond(&self.buf[..self.len], alloc)
    }
}

/// Writes `s` left-aligned in `n` bytes, space padded, printable ASCII only (SPC-4 §4.4.1).
fn ascii_field(r: &mut Resp, s: &str, n: usize) {
    let mut k = 0;
    for b in s.bytes().take(n) {
        r.put(&[if (0x20..0x7f).contains(&b) { b } else { b'_' }]);
        k += 1;
    }
    for _ in k..n {
        r.put(b" ");
    }
}

pub(super) fn request_sense(cmd: &mut Cmd) -> Result<(), Fail> {
    // Unit attentions were answered by the core. A sanitize in progress reports how far it is;
    // its failure mode reports the failure (SBC-4 §4.11.4); otherwise NO SENSE.
    let desc = cmd.cdb()[1] & 1 != 0;
    let alloc = usize::from(cmd.cdb()[4]);
    let mut b = [0u8; MAX_SENSE_LEN];
    let dev = cmd.device();
    let n = match dev.and_then(|d| d.sanitize_blocked().map(|c| (c, d.sanitize_progress()))) {
        Some((code @ SenseCode::NOT_READY_SANITIZE_IN_PROGRESS, done)) => {
            Sense::new(code).write_progress(desc, done, &mut b)
        }
        Some((code, _)) => Sense::new(code).write(desc, &mut b),
        None => Sense::new(SenseCode::NO_ADDITIONAL_SENSE).write(desc, &mut b),
    };
    cmd.respond(&b[..n], alloc)
}

/// Version descriptors (SPC-4 table 141): SAM-5, the transport's, SPC-4, SBC-3.
const SAM5: u16 = 0x00a0;
const SPC4: u16 = 0x0460;
const SBC3: u16 = 0x04c0;

pub(super) fn inquiry<S: BlockStore>(disk: &Disk<S>, cmd: &mut Cmd) -> Result<(), Fail> {
    let cdb = *cmd.cdb_padded();
    let alloc = usize::from(be16(&cdb, 3));
    if cdb[1] & 1 != 0 {
        return vpd(disk, cmd, cdb[2], alloc);
    }
    let dev = cmd.device().cloned().ok_or(Sense::new(SenseCode::INTERNAL_TARGET_FAILURE))?;
    let port = cmd.session().port().clone();
    // TPGS: implicit ALUA (01b), and explicit too (11b) where SET TARGET PORT GROUPS is allowed.
    let tpgs = if cmd.session().target().alua_explicit() { 0x30 } else { 0x10 };
    let mut r = Resp::new();
    r.put(&[
        0x00,                                          // qualifier 0, direct access block device
        if dev.config().removable { 0x80 } else { 0 }, // RMB
        0x06,                                          // SPC-4
        0x12,                                          // HISUP, response data format 2
        0,                                             // additional length, below
        tpgs | 0x08,                                   // TPGS; 3PC (EXTENDED COPY)
        0x00,
        0x02, // CMDQUE
    ]);
    ascii_field(&mut r, &dev.config().vendor, 8);
    ascii_field(&mut r, disk.store.product(), 16);
    ascii_field(&mut r, &dev.config().revision, 4);
    r.zeros(22); // vendor specific 36..56, byte 56, byte 57
    // Listed without gaps: a port without a transport standard (the loopback) adds none.
    for d in [SAM5, port.version_descriptor, SPC4, SBC3].into_iter().filter(|d| *d != 0) {
        r.put(&d.to_be_bytes());
    }
    r.zeros(96 - r.len());
    let n = r.len();
    r.bytes_mut()[4] = (n - 5) as u8;
    r.send(cmd, alloc)
}

const VPD_PAGES: [u8; 7] = [0x00, 0x80, 0x83, 0x86, 0xb0, 0xb1, 0xb2];

fn vpd<S: BlockStore>(disk: &Disk<S>, cmd: &mut Cmd, page: u8, alloc: usize) -> Result<(), Fail> {
    let dev = cmd.device().cloned().ok_or(Sense::new(SenseCode::INTERNAL_TARGET_FAILURE))?;
    let mut r = Resp::new();
    r.put(&[0x00, page, 0, 0]);
    match page {
        0x00 => {
            r.put(&VPD_PAGES);
        }
        0x80 => {
            r.put(dev.serial().as_bytes());
        }
        0x83 => device_identification(cmd, &dev, &mut r),
        0x86 => {
            // Extended INQUIRY Data: HEADSUP, ORDSUP, SIMPSUP; V_SUP (a volatile cache that
            // SYNCHRONIZE CACHE flushes); maximum sense data length.
            let mut p = [0u8; 60];
            p[1] = 0x07;
            p[2] = 0x01;
            p[9] = MAX_SENSE_LEN as u8;
            r.put(&p);
        }
        0xb0 => {
            // Block Limits (SBC-4 §6.6.4), page length 3Ch; offsets below are from byte 4.
            let bs = disk.block_size;
            let mut p = [0u8; 60];
            // WSNZ 0: WRITE SAME with 0 blocks means "to the end of the medium".
            p[1] = super::atomic::MAX_CAW_BLOCKS; // maximum compare and write length
            put16(&mut p, 2, 1); // optimal transfer length granularity
            put32(&mut p, 4, MAX_TRANSFER_BYTES / bs); // maximum transfer length
            // Optimal transfer length 1 MiB: Linux takes it as the disk's request size limit
            // (max_sectors_kb) and io_opt; 128 KiB there cost a third of 1 MiB throughput.
            put32(&mut p, 8, (super::OPTIMAL_TRANSFER_BYTES / bs).min(MAX_TRANSFER_BYTES / bs));
            put32(&mut p, 12, MAX_TRANSFER_BYTES / bs); // maximum prefetch length
            if disk.thin() {
                put32(&mut p, 16, super::thin::MAX_UNMAP_LBA_COUNT);
                put32(&mut p, 20, super::thin::MAX_UNMAP_DESCRIPTORS);
                // Optimal unmap granularity: a 4 KiB file system block.
                put32(&mut p, 24, (4096 / bs).max(1));
            }
            // Maximum write same length: 0, no limit (large ranges are written in pieces).
            put32(&mut p, 40, super::atomic::max_atomic_blocks(disk)); // maximum atomic transfer length
            put32(&mut p, 44, 1); // atomic alignment
            put32(&mut p, 48, 1); // atomic transfer length granularity
            r.put(&p);
        }
        0xb1 => {
            // Block Device Characteristics.
            let mut p = [0u8; 60];
            put16(&mut p, 0, disk.store.caps().rotation_rate);
            // On a thin LU (the only kind that supports BLOCK ERASE and CRYPTOGRAPHIC ERASE),
            // WABEREQ 01b and WACEREQ 01b: an erased block reads back GOOD (zeros). Elsewhere
            // both 00b: not specified, as neither erase is supported.
            p[3] = if disk.thin() { 0x50 } else { 0 };
            r.put(&p);
        }
        0xb2 => {
            // Logical Block Provisioning (SBC-4 §6.6.6): on a thin LU, UNMAP, WRITE SAME(16)
            // and WRITE SAME(10) with UNMAP (LBPU, LBPWS, LBPWS10), deallocated blocks read
            // zeros (LBPRZ 001b); provisioning type thin. A fully provisioned LU: none of it.
            if disk.thin() {
                r.put(&[0, 0x80 | 0x40 | 0x20 | 0x04, 0x02, 0]);
            } else {
                r.put(&[0, 0, 0, 0]);
            }
        }
        _ => return Err(Sense::invalid_cdb(2, Some(7)).into()),
    }
    let n = r.len();
    put16(r.bytes_mut(), 2, (n - 4) as u16);
    r.send(cmd, alloc)
}

/// VPD 83h (SPC-4 §7.8.6): the LU's NAA and T10 vendor ID designators, then the target port's
/// relative port, port group and SCSI name designators, and the target device's name.
fn device_identification(cmd: &Cmd, dev: &crate::dev::Device, r: &mut Resp) {
    let port = cmd.session().port();
    let proto = port.protocol.0 << 4;
    // NAA, binary, associated with the logical unit.
    r.put(&[0x01, 0x03, 0, 8]).put(&dev.naa().to_be_bytes());
    // T10 vendor ID, ASCII: vendor (8) + serial.
    let t10 = format!("{:<8}{}", dev.config().vendor, dev.serial());
    r.put(&[0x02, 0x01, 0, t10.len() as u8]).put(t10.as_bytes());
    // Relative target port (PIV, target port association).
    r.put(&[proto | 0x01, 0x94, 0, 4, 0, 0]).put(&port.rel_port_id.to_be_bytes());
    // Target port group.
    r.put(&[proto | 0x01, 0x95, 0, 4, 0, 0]).put(&port.tpg_id.to_be_bytes());
    // SCSI name strings (UTF-8, NUL-terminated, padded to a multiple of 4).
    let mut name = |assoc_type: u8, s: &str| {
        if s.is_empty() {
            return;
        }
        let len = (s.len() + 4) & !3;
        r.put(&[proto | 0x03, assoc_type, 0, len as u8]).put(s.as_bytes()).zeros(len - s.len());
    };
    name(0x98, &port.name);
    let target = cmd.session().target().name().to_string();
    name(0xa8, &target);
}

pub(super) fn read_capacity10<S: BlockStore>(disk: &Disk<S>, cmd: &mut Cmd) -> Result<(), Fail> {
    let g = disk.geometry();
    let mut d = [0u8; 8];
    put32(&mut d, 0, u32::try_from(g.blocks - 1).unwrap_or(u32::MAX));
    put32(&mut d, 4, g.block_size);
    cmd.respond(&d, 8)
}

pub(super) fn read_capacity16<S: BlockStore>(disk: &Disk<S>, cmd: &mut Cmd) -> Result<(), Fail> {
    let g = disk.geometry();
    let alloc = be32(cmd.cdb(), 10) as usize;
    let mut d = [0u8; 32];
    put64(&mut d, 0, g.blocks - 1);
    put32(&mut d, 8, g.block_size);
    d[13] = disk.store.caps().lbppbe & 0x0f;
    if disk.thin() {
        // LBPME: logical block provisioning management; LBPRZ: deallocated blocks read zeros.
        d[14] = 0x80 | 0x40;
    }
    cmd.respond(&d, alloc)
}

pub(super) fn start_stop(cmd: &mut Cmd) -> Result<(), Fail> {
    let cdb = *cmd.cdb_padded();
    let dev = cmd.device().cloned().ok_or(Sense::new(SenseCode::INTERNAL_TARGET_FAILURE))?;
    let (power_condition, loej, start) = (cdb[4] >> 4, cdb[4] & 2 != 0, cdb[4] & 1 != 0);
    // A power condition change neither loads nor ejects (SBC-3 §5.25); a virtual device has no
    // power states to leave, and START without LOEJ has nothing to spin up or down.
    if power_condition != 0 || !loej {
        return Ok(());
    }
    if !dev.config().removable {
        return Err(Sense::invalid_cdb(4, Some(1)).into());
    }
    if dev.removal_prevented() {
        return Err(Sense::new(SenseCode::MEDIUM_REMOVAL_PREVENTED).into());
    }
    let was = dev.medium_loaded();
    dev.set_medium_loaded(start);
    if start && !was {
        dev.raise_ua(SenseCode::NOT_READY_TO_READY_CHANGE, Some(cmd.session().id()));
    }
    Ok(())
}

pub(super) fn prevent_allow(cmd: &mut Cmd) -> Result<(), Fail> {
    let prevent = cmd.cdb()[4] & 3;
    if prevent > 1 {
        // 10b and 11b are for medium changers.
        return Err(Sense::invalid_cdb(4, Some(1)).into());
    }
    let dev = cmd.device().cloned().ok_or(Sense::new(SenseCode::INTERNAL_TARGET_FAILURE))?;
    if dev.config().removable {
        dev.set_prevent(cmd.session().id(), prevent == 1);
    }
    Ok(())
}

/// Nominal and recommended timeouts, in seconds, for the command timeouts descriptor.
const TIMEOUT_NOMINAL: u32 = 0;
const TIMEOUT_RECOMMENDED: u32 = 30;

fn timeouts_descriptor(r: &mut Resp) {
    let mut t = [0u8; 12];
    put16(&mut t, 0, 0x0a);
    put32(&mut t, 4, TIMEOUT_NOMINAL);
    put32(&mut t, 8, TIMEOUT_RECOMMENDED);
    r.put(&t);
}

/// REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35).
pub(super) fn report_opcodes(cmd: &mut Cmd) -> Result<(), Fail> {
    let cdb = *cmd.cdb_padded();
    let dev = cmd.device().cloned().ok_or(Sense::new(SenseCode::INTERNAL_TARGET_FAILURE))?;
    let sess = cmd.session().clone();
    let rctd = cdb[2] & 0x80 != 0;
    let (opcode, sa) = (cdb[3], be16(&cdb, 4));
    let alloc = be32(&cdb, 6) as usize;
    let table = DISK_OPS;
    let mut r = Resp::new();
    match cdb[2] & 7 {
        0 => {
            r.zeros(4);
            for o in table.iter().filter(|o| sess.supports(&dev, o)) {
                let mut d = [0u8; 8];
                d[0] = o.opcode;
                put16(&mut d, 2, u16::from(o.service_action.unwrap_or(0)));
                d[5] = u8::from(rctd) << 1 | u8::from(o.service_action.is_some());
                put16(&mut d, 6, o.cdb_len() as u16);
                r.put(&d);
                if rctd {
                    timeouts_descriptor(&mut r);
                }
            }
            let n = r.len();
            put32(r.bytes_mut(), 0, (n - 4) as u32);
        }
        opt @ 1..=3 => {
            let has_sa = ops::has_service_actions(table, opcode);
            // Options 1 (opcode only) and 2 (opcode and service action) must match whether
            // the opcode has service actions; 3 takes either.
            if (opt == 1 && has_sa) || (opt == 2 && !has_sa && table.iter().any(|o| o.opcode == opcode)) {
                return Err(Sense::invalid_cdb(2, Some(2)).into());
            }
            let found = if has_sa {
                u8::try_from(sa).ok().and_then(|sa| ops::find(table, opcode, Some(sa)))
            } else {
                ops::find(table, opcode, None)
            }
            .filter(|o| sess.supports(&dev, o));
            match found {
                Some(o) => {
                    r.put(&[0, u8::from(rctd) << 7 | 0x03]).put(&(o.cdb_len() as u16).to_be_bytes()).put(o.usage);
                    if rctd {
                        timeouts_descriptor(&mut r);
                    }
                }
                // Not supported: SUPPORT 001b and no usage data.
                None => {
                    r.put(&[0, 0x01, 0, 0]);
                }
            }
        }
        _ => return Err(Sense::invalid_cdb(2, Some(2)).into()),
    }
    r.send(cmd, alloc)
}

/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 §6.36).
pub(super) fn report_tmf(cmd: &mut Cmd) -> Result<(), Fail> {
    let repd = cmd.cdb()[2] & 0x80 != 0;
    let alloc = be32(cmd.cdb(), 6) as usize;
    // ATS ATSS CTSS LURS QTS TRS; QAES QTSS ITNRS.
    let mut d = [0u8; 16];
    d[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x04 | 0x02;
    d[1] = 0x04 | 0x02 | 0x01;
    let n = if repd {
        d[3] = 0x0c;
        16
    } else {
        4
    };
    cmd.respond(&d[..n], alloc)
}

/// REPORT TARGET PORT GROUPS (SPC-4 §6.37): the target's ALUA table, or without one a single
/// active/optimized group holding this port.
pub(super) fn report_tpgs(cmd: &mut Cmd) -> Result<(), Fail> {
    let cdb = *cmd.cdb_padded();
    let extended = match cdb[1] >> 5 {
        0 => false,
        1 => true,
        _ => return Err(Sense::invalid_cdb(1, Some(7)).into()),
    };
    let alloc = be32(&cdb, 6) as usize;
    let port = cmd.session().port().clone();
    let table = cmd.session().target().alua_report();
    // Supported states: with a table T_SUP, O_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP (not LBA
    // dependent); without one the group stays active/optimized.
    let supported = if table.is_some() { 0xcf } else { 0x01 };
    let groups = table.unwrap_or_else(|| {
        let mut g = PortGroup::new(port.tpg_id);
        g.remote_ports.push(port.rel_port_id);
        vec![(g, 0)]
    });
    let mut r = Resp::new();
    r.zeros(4);
    if extended {
        // Format type 001b, implicit transition time 0.
        r.put(&[0x10, 0, 0, 0]);
    }
    for (g, status) in &groups {
        let ports = g.remote_ports.len().min(255);
        r.put(&[u8::from(g.preferred) << 7 | g.state as u8, supported]).put(&g.id.to_be_bytes()).put(&[
            0,
            *status,
            0,
            ports as u8,
        ]);
        for p in &g.remote_ports[..ports] {
            r.put(&[0, 0]).put(&p.to_be_bytes());
        }
    }
    let n = r.len();
    put32(r.bytes_mut(), 0, (n - 4) as u32);
    r.send(cmd, alloc)
}

/// SET TARGET PORT GROUPS (SPC-4 §6.50): explicit ALUA transitions, all or none. The other
/// I_T nexuses get ASYMMETRIC ACCESS STATE CHANGED.
pub(super) fn set_tpgs(cmd: &mut Cmd) -> Result<(), Fail> {
    let len = be32(cmd.cdb_padded(), 6) as usize;
    if len == 0 {
        return Ok(());
    }
    let data = cmd.buf().and_then(|b| b.contiguous()).ok_or(Fail::from(SenseCode::PARAMETER_LIST_LENGTH_ERROR))?;
    if data.len() < len || len < 4 || (len - 4) % 4 != 0 {
        return Err(SenseCode::PARAMETER_LIST_LENGTH_ERROR.into());
    }
    let target = cmd.session().target().clone();
    let table = target.alua().ok_or(Fail::from(Sense::invalid_opcode()))?;
    let mut changes = Vec::new();
    for (k, d) in data[4..len].chunks_exact(4).enumerate() {
        let at = (4 + 4 * k) as u16;
        let state =
            AluaState::from_code(d[0] & 0x0f).filter(|s| s.requestable()).ok_or(Sense::invalid_param(at, Some(3)))?;
        let id = be16(d, 2);
        if !table.groups.iter().any(|g| g.id == id) {
            return Err(Sense::invalid_param(at + 2, None).into());
        }
        changes.push((id, state));
    }
    let sid = cmd.session().id();
    target.change_states(&changes, Some(sid)).map_err(|_| Fail::from(Sense::invalid_param(4, None)))
}

/// READ DEFECT DATA(10/12): a virtual device has no defects; both lists are reported empty.
pub(super) fn read_defect_data(cmd: &mut Cmd) -> Result<(), Fail> {
    let cdb = *cmd.cdb_padded();
    let twelve = cdb[0] == 0xb7;
    // The list-request bits and format are in byte 2 of the 10-byte form, byte 1 of the 12.
    let req = if twelve { cdb[1] } else { cdb[2] };
    let flags = req & 0x1f;
    if twelve {
        let alloc = be32(&cdb, 6) as usize;
        cmd.respond(&[0, flags, 0, 0, 0, 0, 0, 0], alloc)
    } else {
        let alloc = usize::from(be16(&cdb, 7));
        cmd.respond(&[0, flags, 0, 0], alloc)
    }
}
