//! Reservations: SPC-4 persistent reservations (PERSISTENT RESERVE IN/OUT) and SPC-2
//! RESERVE/RELEASE, per logical unit.
//!
//! [`PrState`] is the pure state machine: it takes a nexus and a service action and returns
//! the new state's effects (unit attentions to queue, nexuses whose commands to abort, whether to
//! persist). It does no I/O, so every rule of SPC-4 §5.13 is unit-tested here; the device wires it
//! to commands, unit attentions, task management and the APTPL file.

use std::fmt::Write as _;

use crate::wire::cdb::{be16, be32, be64, put16, put32, put64};
use crate::wire::sense::{Sense, SenseCode};

/// Persistent reservation types (SPC-4 table 170).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrType(pub u8);

impl PrType {
    /// Write Exclusive.
    pub const WE: Self = Self(1);
    /// Exclusive Access.
    pub const EA: Self = Self(3);
    /// Write Exclusive – Registrants Only.
    pub const WE_RO: Self = Self(5);
    /// Exclusive Access – Registrants Only.
    pub const EA_RO: Self = Self(6);
    /// Write Exclusive – All Registrants.
    pub const WE_AR: Self = Self(7);
    /// Exclusive Access – All Registrants.
    pub const EA_AR: Self = Self(8);

    fn valid(self) -> bool {
        matches!(self.0, 1 | 3 | 5 | 6 | 7 | 8)
    }

    /// Every registrant is a reservation holder.
    pub fn all_registrants(self) -> bool {
        matches!(self.0, 7 | 8)
    }

    /// Registrants (not only the holder) may access the logical unit.
    fn registrants_access(self) -> bool {
        matches!(self.0, 5..=8)
    }

    /// Reads by others are allowed (the Write Exclusive family).
    fn write_exclusive(self) -> bool {
        matches!(self.0, 1 | 5 | 7)
    }
}

/// An I_T nexus as reservations see it: an initiator port through a target port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Nexus {
    /// Initiator (device) name, e.g. an iSCSI name.
    pub initiator: String,
    /// What distinguishes this port of the initiator (iSCSI: `,i,0x` + ISID), empty if none.
    pub port_suffix: String,
    /// Relative target port identifier.
    pub rel_port: u16,
    /// SCSI transport protocol identifier of the target port (for TransportIDs).
    pub protocol: u8,
}

impl Nexus {
    fn same_port(&self, other: &Self) -> bool {
        self.initiator == other.initiator && self.port_suffix == other.port_suffix && self.rel_port == other.rel_port
    }
}

/// How a command may be affected by reservations (SPC-4 §5.13.1 table 63, SBC-3 table 13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Never conflicts with any reservation: INQUIRY, REPORT LUNS, REQUEST SENSE, PERSISTENT
    /// RESERVE IN, and RESERVE/RELEASE (whose own rules decide).
    Exempt,
    /// Never conflicts with a persistent reservation (INQUIRY, REPORT LUNS, REQUEST SENSE,
    /// PERSISTENT RESERVE IN, READ CAPACITY, TEST UNIT READY, ...).
    Always,
    /// Reads or queries: allowed by the Write Exclusive types, refused by Exclusive Access.
    Read,
    /// Changes the medium or the logical unit: refused to non-holders by every type.
    Write,
}

/// One registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The registered I_T nexus.
    pub nexus: Nexus,
    /// Registered through every target port (ALL_TG_PT).
    pub all_tg_pt: bool,
    /// Reservation key.
    pub key: u64,
}

impl Registration {
    /// Whether this registration and `other` cover a common I_T nexus.
    fn overlaps(&self, other: &Self) -> bool {
        self.nexus.initiator == other.nexus.initiator
            && self.nexus.port_suffix == other.nexus.port_suffix
            && (self.all_tg_pt || other.all_tg_pt || self.nexus.rel_port == other.nexus.rel_port)
    }

    fn matches(&self, n: &Nexus) -> bool {
        self.nexus.initiator == n.initiator
            && self.nexus.port_suffix == n.port_suffix
            && (self.all_tg_pt || self.nexus.rel_port == n.rel_port)
    }
}

/// The persistent reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Type.
    pub typ: PrType,
    /// The holder's nexus (for the All Registrants types: the nexus that reserved).
    pub holder: Nexus,
    /// The holder's key when it reserved (All Registrants types report 0).
    pub key: u64,
}

/// Something a reservation change asks the device to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Queue a unit attention on one nexus (all target ports of it if `rel_port` is 0).
    Ua(Nexus, SenseCode),
    /// Abort every command of this nexus on the logical unit (PREEMPT AND ABORT).
    Abort(Nexus),
}

/// Why a reservation command failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrError {
    /// RESERVATION CONFLICT status.
    Conflict,
    /// CHECK CONDITION.
    Sense(Sense),
}

impl From<Sense> for PrError {
    fn from(s: Sense) -> Self {
        Self::Sense(s)
    }
}

/// Reservation state of one logical unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrState {
    /// PRGENERATION.
    pub generation: u32,
    /// Registrations, in registration order.
    pub regs: Vec<Registration>,
    /// The persistent reservation, if any.
    pub res: Option<Reservation>,
    /// Persist through power loss (APTPL).
    pub aptpl: bool,
    /// The SPC-2 reservation holder, if any.
    pub spc2: Option<Nexus>,
}

/// Most registrations a logical unit keeps.
pub const MAX_REGISTRATIONS: usize = 256;

impl PrState {
    /// Whether nothing is registered or reserved (commands then skip every check).
    pub fn is_idle(&self) -> bool {
        self.regs.is_empty() && self.res.is_none() && self.spc2.is_none()
    }

    fn reg_index(&self, n: &Nexus) -> Option<usize> {
        self.regs.iter().position(|r| r.matches(n))
    }

    /// The registration of `n`, if any.
    pub fn registration(&self, n: &Nexus) -> Option<&Registration> {
        self.reg_index(n).map(|i| &self.regs[i])
    }

    /// Whether `n` holds the persistent reservation.
    pub fn is_holder(&self, n: &Nexus) -> bool {
        match &self.res {
            None => false,
            Some(r) if r.typ.all_registrants() => self.registration(n).is_some(),
            // A registration made with ALL_TG_PT stands for the initiator port through every
            // target port: the reservation it holds is held through each of them.
            Some(r) => {
                r.holder.same_port(n) || self.registration(n).is_some_and(|g| g.all_tg_pt && g.matches(&r.holder))
            }
        }
    }

    /// Whether a command of class `access` from `n` conflicts with a reservation.
    pub fn conflicts(&self, n: &Nexus, access: Access) -> bool {
        if access == Access::Exempt {
            return false;
        }
        if let Some(h) = &self.spc2 {
            return !h.same_port(n);
        }
        let Some(r) = &self.res else { return false };
        if access == Access::Always || self.is_holder(n) {
            return false;
        }
        if r.typ.registrants_access() && self.registration(n).is_some() {
            return false;
        }
        match access {
            Access::Read => !r.typ.write_exclusive(),
            _ => true,
        }
    }

    fn bump(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Releases the reservation and tells the registrants other than `except` when the type's
    /// release is reported (Registrants Only and All Registrants types, SPC-4 §5.13.11.2).
    fn release_reservation(&mut self, except: Option<&Nexus>, fx: &mut Vec<Effect>) {
        if let Some(r) = self.res.take()
            && r.typ.registrants_access()
        {
            for g in &self.regs {
                if except.is_none_or(|e| !g.matches(e)) {
                    fx.push(Effect::Ua(g.nexus.clone(), SenseCode::RESERVATIONS_RELEASED));
                }
            }
        }
    }

    /// Removes registration `i`; the reservation goes with its holder (except All Registrants
    /// reservations while registrants remain).
    fn unregister(&mut self, i: usize, fx: &mut Vec<Effect>) {
        let g = self.regs.remove(i);
        let goes = match &self.res {
            Some(r) if r.typ.all_registrants() => self.regs.is_empty(),
            Some(r) => g.matches(&r.holder),
            None => false,
        };
        if goes {
            self.release_reservation(Some(&g.nexus), fx);
        }
    }

    /// PERSISTENT RESERVE OUT (SPC-4 §6.16). `params` is the parameter list as received;
    /// `plen` the PARAMETER LIST LENGTH of the CDB.
    ///
    /// # Errors
    /// RESERVATION CONFLICT or the CHECK CONDITION SPC-4 prescribes.
    pub fn prout(
        &mut self,
        n: &Nexus,
        sa: u8,
        scope_type: u8,
        params: &[u8],
        plen: u32,
    ) -> Result<Vec<Effect>, PrError> {
        let mut fx = Vec::new();
        if sa == 7 {
            return self.register_and_move(n, scope_type, params, plen).map(|()| fx);
        }
        if sa > 7 {
            return Err(Sense::invalid_cdb(1, Some(4)).into());
        }
        if plen != 24 && !(matches!(sa, 0) && params.len() >= 24 && params[20] & 0x08 != 0) {
            return Err(Sense::new(SenseCode::PARAMETER_LIST_LENGTH_ERROR).into());
        }
        if params.len() < 24 {
            return Err(Sense::new(SenseCode::PARAMETER_LIST_LENGTH_ERROR).into());
        }
        let rk = be64(params, 0);
        let sark = be64(params, 8);
        let (spec_i_pt, all_tg_pt, aptpl) = (params[20] & 0x08 != 0, params[20] & 0x04 != 0, params[20] & 0x01 != 0);
        let (scope, typ) = (scope_type >> 4, PrType(scope_type & 0x0f));
        let mine = self.reg_index(n);
        if matches!(sa, 1 | 2 | 4 | 5) && scope != 0 {
            // Only LU_SCOPE exists (SPC-4 §6.16.3).
            return Err(Sense::invalid_cdb(2, Some(7)).into());
        }
        match sa {
            // REGISTER / REGISTER AND IGNORE EXISTING KEY.
            0 | 6 => {
                if sa == 6 && spec_i_pt {
                    return Err(Sense::invalid_param(20, Some(3)).into());
                }
                match mine {
                    None => {
                        if sa == 0 && rk != 0 {
                            return Err(PrError::Conflict);
                        }
                        if sark == 0 {
                            // Unregistered and registering key 0: nothing to do.
                            if spec_i_pt {
                                return Err(Sense::invalid_param(8, None).into());
                            }
                            return Ok(fx);
                        }
                        let mine = Registration { nexus: n.clone(), all_tg_pt, key: sark };
                        // With ALL_TG_PT the REGISTER acts through every target port (SPC-4
                        // §5.13.7): where the initiator port is registered through another
                        // one, REGISTER (reservation key 0) conflicts with that registration,
                        // REGISTER AND IGNORE EXISTING KEY replaces it. Either way each I_T
                        // nexus keeps one registration.
                        let covered: Vec<usize> =
                            (0..self.regs.len()).filter(|&i| self.regs[i].overlaps(&mine)).collect();
                        if sa == 0 && !covered.is_empty() {
                            return Err(PrError::Conflict);
                        }
                        let mut add = vec![mine];
                        if spec_i_pt {
                            for a in spec_i_pt_registrations(params, plen, n, all_tg_pt, sark)? {
                                // An I_T nexus named twice, or already registered (SPC-4
                                // §6.16.3: RESERVATION CONFLICT).
                                if add.iter().chain(&self.regs).any(|g| g.overlaps(&a)) {
                                    return Err(PrError::Conflict);
                                }
                                add.push(a);
                            }
                        }
                        if self.regs.len() - covered.len() + add.len() > MAX_REGISTRATIONS {
                            return Err(Sense::new(SenseCode::INSUFFICIENT_REGISTRATION_RESOURCES).into());
                        }
                        for &i in covered.iter().rev() {
                            self.regs.remove(i);
                        }
                        self.regs.extend(add);
                    }
                    Some(i) => {
                        if sa == 0 && rk != self.regs[i].key {
                            return Err(PrError::Conflict);
                        }
                        if spec_i_pt {
                            return Err(Sense::invalid_param(20, Some(3)).into());
                        }
                        if sark == 0 {
                            self.unregister(i, &mut fx);
                        } else {
                            self.regs[i].key = sark;
                        }
                    }
                }
                self.aptpl = aptpl;
                self.bump();
                Ok(fx)
            }
            _ => {
                let Some(i) = mine else { return Err(PrError::Conflict) };
                if self.regs[i].key != rk {
                    return Err(PrError::Conflict);
                }
                // APTPL is valid only with REGISTER (and REGISTER AND MOVE) and ignored here
                // (SPC-4 §6.16.4).
                match sa {
                    1 => self.reserve(n, typ, rk).map(|()| fx),
                    2 => self.release(n, typ, &mut fx).map(|()| fx),
                    3 => {
                        for g in &self.regs {
                            if !g.matches(n) {
                                fx.push(Effect::Ua(g.nexus.clone(), SenseCode::RESERVATIONS_PREEMPTED));
                            }
                        }
                        self.regs.clear();
                        self.res = None;
                        self.bump();
                        Ok(fx)
                    }
                    _ => self.preempt(n, typ, rk, sark, sa == 5, &mut fx).map(|()| fx),
                }
            }
        }
    }

    fn reserve(&mut self, n: &Nexus, typ: PrType, key: u64) -> Result<(), PrError> {
        if !typ.valid() {
            return Err(Sense::invalid_cdb(2, Some(3)).into());
        }
        match &self.res {
            None => {
                self.res = Some(Reservation { typ, holder: n.clone(), key });
                Ok(())
            }
            Some(r) if self.is_holder(n) && r.typ == typ => Ok(()),
            Some(_) => Err(PrError::Conflict),
        }
    }

    fn release(&mut self, n: &Nexus, typ: PrType, fx: &mut Vec<Effect>) -> Result<(), PrError> {
        match &self.res {
            None => Ok(()),
            Some(_) if !self.is_holder(n) => Ok(()),
            Some(r) if r.typ != typ => Err(Sense::new(SenseCode::INVALID_RELEASE_OF_PR).into()),
            Some(_) => {
                self.release_reservation(Some(n), fx);
                Ok(())
            }
        }
    }

    fn preempt(
        &mut self,
        n: &Nexus,
        typ: PrType,
        rk: u64,
        sark: u64,
        abort: bool,
        fx: &mut Vec<Effect>,
    ) -> Result<(), PrError> {
        let mut removed: Vec<Nexus> = Vec::new();
        let mut take_keys = |regs: &mut Vec<Registration>, pred: &dyn Fn(&Registration) -> bool| {
            regs.retain(|g| {
                if pred(g) && !g.matches(n) {
                    removed.push(g.nexus.clone());
                    false
                } else {
                    true
                }
            });
        };
        match self.res.clone() {
            None => {
                if sark == 0 {
                    return Err(Sense::invalid_param(8, None).into());
                }
                let before = self.regs.len();
                take_keys(&mut self.regs, &|g| g.key == sark);
                if self.regs.len() == before {
                    return Err(PrError::Conflict);
                }
            }
            Some(r) if r.typ.all_registrants() => {
                if sark == 0 {
                    // Preempt everyone else and take a reservation of the new type.
                    if !typ.valid() {
                        return Err(Sense::invalid_cdb(2, Some(3)).into());
                    }
                    take_keys(&mut self.regs, &|_| true);
                    self.res = Some(Reservation { typ, holder: n.clone(), key: rk });
                } else {
                    let before = self.regs.len();
                    take_keys(&mut self.regs, &|g| g.key == sark);
                    if self.regs.len() == before {
                        return Err(PrError::Conflict);
                    }
                }
            }
            Some(r) => {
                let holder_key = self.registration(&r.holder).map(|g| g.key);
                if holder_key == Some(sark) {
                    if !typ.valid() {
                        return Err(Sense::invalid_cdb(2, Some(3)).into());
                    }
                    take_keys(&mut self.regs, &|g| g.key == sark);
                    let old_type = r.typ;
                    self.res = Some(Reservation { typ, holder: n.clone(), key: rk });
                    if old_type != typ || old_type.registrants_access() {
                        for g in &self.regs {
                            if !g.matches(n) {
                                fx.push(Effect::Ua(g.nexus.clone(), SenseCode::RESERVATIONS_RELEASED));
                            }
                        }
                    }
                } else {
                    if sark == 0 {
                        return Err(Sense::invalid_param(8, None).into());
                    }
                    let before = self.regs.len();
                    take_keys(&mut self.regs, &|g| g.key == sark);
                    if self.regs.len() == before {
                        return Err(PrError::Conflict);
                    }
                }
            }
        }
        for r in removed {
            if abort {
                fx.push(Effect::Abort(r.clone()));
            }
            fx.push(Effect::Ua(r, SenseCode::REGISTRATIONS_PREEMPTED));
        }
        self.bump();
        Ok(())
    }

    fn register_and_move(&mut self, n: &Nexus, scope_type: u8, params: &[u8], plen: u32) -> Result<(), PrError> {
        if params.len() < 24 || (params.len() as u32) < plen {
            return Err(Sense::new(SenseCode::PARAMETER_LIST_LENGTH_ERROR).into());
        }
        let rk = be64(params, 0);
        let sark = be64(params, 8);
        let (unreg, aptpl) = (params[17] & 0x02 != 0, params[17] & 0x01 != 0);
        let rel_port = be16(params, 18);
        let tid_len = be32(params, 20) as usize;
        if 24 + tid_len > params.len() || tid_len < 24 {
            return Err(Sense::new(SenseCode::PARAMETER_LIST_LENGTH_ERROR).into());
        }
        let Some(i) = self.reg_index(n) else { return Err(PrError::Conflict) };
        if self.regs[i].key != rk {
            return Err(PrError::Conflict);
        }
        let Some(r) = self.res.clone() else { return Err(PrError::Conflict) };
        if r.typ.all_registrants() || !self.is_holder(n) {
            return Err(PrError::Conflict);
        }
        if sark == 0 {
            return Err(Sense::invalid_param(8, None).into());
        }
        let ((name, suffix), _) =
            parse_transport_id(&params[24..24 + tid_len], n.protocol).ok_or(Sense::invalid_param(24, None))?;
        let dest = Nexus { initiator: name, port_suffix: suffix, rel_port, protocol: n.protocol };
        if dest.same_port(n) {
            return Err(Sense::invalid_param(24, None).into());
        }
        match self.reg_index(&dest) {
            Some(j) => self.regs[j].key = sark,
            None => self.regs.push(Registration { nexus: dest.clone(), all_tg_pt: false, key: sark }),
        }
        let _ = scope_type;
        self.res = Some(Reservation { typ: r.typ, holder: dest, key: sark });
        if unreg && let Some(i) = self.reg_index(n) {
            self.regs.remove(i);
        }
        self.aptpl = aptpl;
        self.bump();
        Ok(())
    }

    /// PERSISTENT RESERVE IN (SPC-4 §6.15): the parameter data of service action `sa`.
    ///
    /// # Errors
    /// INVALID FIELD IN CDB for an unknown service action.
    pub fn prin(&self, sa: u8) -> Result<Vec<u8>, Sense> {
        let mut d = Vec::new();
        d.extend_from_slice(&self.generation.to_be_bytes());
        match sa {
            0 => {
                d.extend_from_slice(&((self.regs.len() * 8) as u32).to_be_bytes());
                for g in &self.regs {
                    d.extend_from_slice(&g.key.to_be_bytes());
                }
            }
            1 => match &self.res {
                None => d.extend_from_slice(&[0; 4]),
                Some(r) => {
                    d.extend_from_slice(&16u32.to_be_bytes());
                    let key =
                        if r.typ.all_registrants() { 0 } else { self.registration(&r.holder).map_or(r.key, |g| g.key) };
                    d.extend_from_slice(&key.to_be_bytes());
                    d.extend_from_slice(&[0; 4]);
                    d.extend_from_slice(&[0, r.typ.0 & 0x0f, 0, 0]);
                }
            },
            2 => {
                // REPORT CAPABILITIES: length 8; CRH, SIP_C, ATP_C, PTPL_C; TMV, ALLOW COMMANDS
                // 001b, PTPL_A; all six types.
                d.clear();
                let mut c = [0u8; 8];
                put16(&mut c, 0, 8);
                c[2] = 0x10 | 0x08 | 0x04 | 0x01;
                c[3] = 0x80 | 0x10 | u8::from(self.aptpl);
                put16(&mut c, 4, 0xea01);
                d.extend_from_slice(&c);
            }
            3 => {
                // READ FULL STATUS.
                d.extend_from_slice(&[0; 4]);
                for g in &self.regs {
                    let tid = transport_id(&g.nexus);
                    let mut e = [0u8; 24];
                    put64(&mut e, 0, g.key);
                    let holder = self.res.as_ref().is_some_and(|r| r.typ.all_registrants() || g.matches(&r.holder));
                    e[12] = u8::from(g.all_tg_pt) << 1 | u8::from(holder);
                    if holder && let Some(r) = &self.res {
                        e[13] = r.typ.0 & 0x0f;
                    }
                    put16(&mut e, 18, g.nexus.rel_port);
                    put32(&mut e, 20, tid.len() as u32);
                    d.extend_from_slice(&e);
                    d.extend_from_slice(&tid);
                }
                let n = d.len() - 8;
                put32(&mut d, 4, n as u32);
            }
            _ => return Err(Sense::invalid_cdb(1, Some(4))),
        }
        Ok(d)
    }

    /// SPC-2 RESERVE(6/10) from `n` (third-party reservations are not supported).
    ///
    /// # Errors
    /// RESERVATION CONFLICT when another nexus holds it, or when persistent reservations or
    /// registrations exist (SPC-4 §5.13.3).
    pub fn spc2_reserve(&mut self, n: &Nexus) -> Result<(), PrError> {
        if !self.regs.is_empty() || self.res.is_some() {
            return Err(PrError::Conflict);
        }
        match &self.spc2 {
            Some(h) if !h.same_port(n) => Err(PrError::Conflict),
            _ => {
                self.spc2 = Some(n.clone());
                Ok(())
            }
        }
    }

    /// SPC-2 RELEASE(6/10) from `n`: releases its own reservation; from others it is a no-op.
    pub fn spc2_release(&mut self, n: &Nexus) {
        if self.spc2.as_ref().is_some_and(|h| h.same_port(n)) {
            self.spc2 = None;
        }
    }

    /// An I_T nexus ended (logout, connection loss, I_T NEXUS RESET): its SPC-2 reservation
    /// goes; persistent registrations stay.
    pub fn nexus_lost(&mut self, n: &Nexus) {
        self.spc2_release(n);
    }

    /// A logical unit or target reset: SPC-2 reservations go; persistent ones stay.
    pub fn reset(&mut self) {
        self.spc2 = None;
    }

    /// Text form for the APTPL file: one line per item, then a checksum line.
    pub fn serialize(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "scst-pr 1");
        let _ = writeln!(s, "generation {}", self.generation);
        for g in &self.regs {
            let _ = writeln!(
                s,
                "reg {:016x} {} {} {} {} {}",
                g.key,
                u8::from(g.all_tg_pt),
                g.nexus.rel_port,
                g.nexus.protocol,
                escape(&g.nexus.initiator),
                escape(&g.nexus.port_suffix)
            );
        }
        if let Some(r) = &self.res {
            let h = &r.holder;
            let _ = writeln!(
                s,
                "res {} {:016x} {} {} {} {}",
                r.typ.0,
                r.key,
                h.rel_port,
                h.protocol,
                escape(&h.initiator),
                escape(&h.port_suffix)
            );
        }
        let sum = checksum(&s);
        let _ = writeln!(s, "end {sum:016x}");
        s
    }

    /// Parses [`PrState::serialize`]'s output. `None` if it is truncated or corrupt.
    pub fn deserialize(text: &str) -> Option<Self> {
        let end = text.trim_end_matches('\n').rfind('\n')? + 1;
        let (body, last) = text.split_at(end);
        let sum = u64::from_str_radix(last.trim().strip_prefix("end ")?, 16).ok()?;
        if checksum(body) != sum {
            return None;
        }
        let mut st = Self { aptpl: true, ..Self::default() };
        let mut lines = body.lines();
        if lines.next()? != "scst-pr 1" {
            return None;
        }
        for l in lines {
            let f: Vec<&str> = l.split(' ').collect();
            match f.as_slice() {
                ["generation", g] => st.generation = g.parse().ok()?,
                ["reg", key, atp, port, proto, init, suffix] => st.regs.push(Registration {
                    key: u64::from_str_radix(key, 16).ok()?,
                    all_tg_pt: *atp == "1",
                    nexus: Nexus {
                        initiator: unescape(init)?,
                        port_suffix: unescape(suffix)?,
                        rel_port: port.parse().ok()?,
                        protocol: proto.parse().ok()?,
                    },
                }),
                ["res", typ, key, port, proto, init, suffix] => {
                    st.res = Some(Reservation {
                        typ: PrType(typ.parse().ok()?),
                        key: u64::from_str_radix(key, 16).ok()?,
                        holder: Nexus {
                            initiator: unescape(init)?,
                            port_suffix: unescape(suffix)?,
                            rel_port: port.parse().ok()?,
                            protocol: proto.parse().ok()?,
                        },
                    })
                }
                _ => return None,
            }
        }
        Some(st)
    }
}

/// FNV-1a over the text.
fn checksum(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Percent-escapes spaces, `%` and control characters (and marks an empty string with `-`).
fn escape(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    if s == "-" {
        return "%2d".into();
    }
    let mut o = String::new();
    for c in s.chars() {
        if c == '%' || c == ' ' || c.is_control() {
            let _ = write!(o, "%{:02x}", c as u32 & 0xff);
        } else {
            o.push(c);
        }
    }
    o
}

fn unescape(s: &str) -> Option<String> {
    if s == "-" {
        return Some(String::new());
    }
    let mut o = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '%' {
            let h: String = it.by_ref().take(2).collect();
            o.push(char::from(u8::from_str_radix(&h, 16).ok()?));
        } else {
            o.push(c);
        }
    }
    Some(o)
}

/// The TransportID of a nexus's initiator port (SPC-4 §7.6.4), in the format of the target
/// port's protocol. Initiator names follow the conventions the transports use for them:
/// - iSCSI (and the loopback, which has no format of its own): format 01b with the ISID when
///   the port has one, the name-only form otherwise; length a multiple of 4, at least 24.
/// - Fibre Channel: the N_PORT_NAME, written `21:00:00:24:ff:31:4c:2a` (24 bytes).
/// - SRP: the 16-byte INITIATOR PORT IDENTIFIER, written `0x` and 32 hex digits (40 bytes).
/// - SAS: the SAS address, written `0x` and 16 hex digits (24 bytes).
///
/// A name that does not parse in its protocol's form gets the iSCSI layout.
pub fn transport_id(n: &Nexus) -> Vec<u8> {
    let fixed = |len: usize, at: usize, id: &[u8]| {
        let mut t = vec![0u8; len];
        t[0] = n.protocol & 0x0f;
        t[at..at + id.len()].copy_from_slice(id);
        t
    };
    match n.protocol {
        0x0 => {
            if let Some(id) = parse_hex_id::<8>(&n.initiator) {
                return fixed(24, 8, &id);
            }
        }
        0x4 => {
            if let Some(id) = parse_hex_id::<16>(&n.initiator) {
                return fixed(40, 8, &id);
            }
        }
        0x6 => {
            if let Some(id) = parse_hex_id::<8>(&n.initiator) {
                return fixed(24, 4, &id);
            }
        }
        _ => {}
    }
    let with_isid = !n.port_suffix.is_empty();
    let name = format!("{}{}", n.initiator, n.port_suffix);
    let body = name.len() + 1;
    let len = body.max(20).div_ceil(4) * 4;
    let mut t = vec![0u8; 4 + len];
    t[0] = if with_isid { 0x40 } else { 0 } | (n.protocol & 0x0f);
    put16(&mut t, 2, len as u16);
    t[4..4 + name.len()].copy_from_slice(name.as_bytes());
    t
}

/// `N` bytes written as hex digits, with an optional `0x` and `:` separators.
fn parse_hex_id<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits: Vec<u8> = s.strip_prefix("0x").unwrap_or(s).bytes().filter(|&b| b != b':').collect();
    if digits.len() != 2 * N {
        return None;
    }
    let mut id = [0u8; N];
    for (i, pair) in digits.chunks(2).enumerate() {
        id[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(id)
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses the TransportID at the start of `t` for a target port of protocol `port_protocol`:
/// ((name, port suffix), bytes it takes). `None` when it is malformed, names nobody, or is of a
/// protocol no initiator of this target port can use (the loopback port accepts the iSCSI form).
fn parse_transport_id(t: &[u8], port_protocol: u8) -> Option<((String, String), usize)> {
    let proto = *t.first()? & 0x0f;
    let format = t[0] >> 6;
    let name_based = proto == 0x5 || proto == 0xf;
    if proto != port_protocol && !(port_protocol == 0xf && name_based) {
        return None;
    }
    let fixed = |len: usize| -> Option<&[u8]> { if format == 0 { t.get(..len) } else { None } };
    match proto {
        0x0 => Some(((fixed(24)?[8..16].chunks(1).map(hex).collect::<Vec<_>>().join(":"), String::new()), 24)),
        0x4 => Some(((format!("0x{}", hex(&fixed(40)?[8..24])), String::new()), 40)),
        0x6 => Some(((format!("0x{}", hex(&fixed(24)?[4..12])), String::new()), 24)),
        _ => {
            let len = usize::from(u16::from_be_bytes([*t.get(2)?, *t.get(3)?]));
            let body = t.get(4..4 + len)?;
            let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
            let s = std::str::from_utf8(&body[..end]).ok()?;
            let (name, suffix) = match format {
                0 => (s.to_string(), String::new()),
                1 => {
                    let i = s.find(",i,")?;
                    (s[..i].to_string(), s[i..].to_string())
                }
                _ => return None,
            };
            // SPC-4 §7.6.4.6: the name is what identifies the initiator; an empty one names
            // nobody.
            (!name.is_empty()).then_some(((name, suffix), 4 + len))
        }
    }
}

/// The extra registrations of a REGISTER with SPEC_I_PT.
fn spec_i_pt_registrations(
    params: &[u8],
    plen: u32,
    n: &Nexus,
    all_tg_pt: bool,
    key: u64,
) -> Result<Vec<Registration>, PrError> {
    if params.len() < 28 {
        return Err(Sense::new(SenseCode::PARAMETER_LIST_LENGTH_ERROR).into());
    }
    let total = be32(params, 24) as usize;
    if 28 + total != plen as usize || params.len() < 28 + total {
        return Err(Sense::new(SenseCode::PARAMETER_LIST_LENGTH_ERROR).into());
    }
    let mut out = Vec::new();
    let mut off = 28;
    while off < 28 + total {
        let t = &params[off..28 + total];
        if t.len() < 4 {
            return Err(Sense::invalid_param(off as u16, None).into());
        }
        let ((name, suffix), len) = parse_transport_id(t, n.protocol).ok_or(Sense::invalid_param(off as u16, None))?;
        out.push(Registration {
            nexus: Nexus { initiator: name, port_suffix: suffix, rel_port: n.rel_port, protocol: n.protocol },
            all_tg_pt,
            key,
        });
        off += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nx(name: &str, isid: &str) -> Nexus {
        Nexus { initiator: name.into(), port_suffix: format!(",i,0x{isid}"), rel_port: 1, protocol: 5 }
    }

    fn params(rk: u64, sark: u64, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 24];
        put64(&mut p, 0, rk);
        put64(&mut p, 8, sark);
        p[20] = flags;
        p
    }

    fn out(st: &mut PrState, n: &Nexus, sa: u8, typ: u8, rk: u64, sark: u64) -> Result<Vec<Effect>, PrError> {
        st.prout(n, sa, typ, &params(rk, sark, 0), 24)
    }

    #[test]
    fn register_rules_and_generation() {
        let (a, b) = (nx("iqn.a", "01"), nx("iqn.b", "02"));
        let mut st = PrState::default();
        assert_eq!(out(&mut st, &a, 0, 0, 5, 7), Err(PrError::Conflict), "unregistered with a non-zero key");
        out(&mut st, &a, 0, 0, 0, 7).unwrap();
        assert_eq!(st.generation, 1);
        assert_eq!(out(&mut st, &a, 0, 0, 0, 8), Err(PrError::Conflict), "registered, wrong key");
        out(&mut st, &a, 0, 0, 7, 9).unwrap();
        assert_eq!(st.regs[0].key, 9);
        out(&mut st, &b, 6, 0, 1234, 3).unwrap();
        assert_eq!(st.generation, 3);
        let keys = st.prin(0).unwrap();
        assert_eq!(&keys[..8], &[0, 0, 0, 3, 0, 0, 0, 16]);
        // RESERVE and RELEASE do not change the generation.
        out(&mut st, &a, 1, 3, 9, 0).unwrap();
        out(&mut st, &a, 2, 3, 9, 0).unwrap();
        assert_eq!(st.generation, 3);
        // Unregister.
        out(&mut st, &a, 0, 0, 9, 0).unwrap();
        assert_eq!(st.regs.len(), 1);
    }

    #[test]
    fn access_per_type() {
        let (h, r, u) = (nx("iqn.h", "1"), nx("iqn.r", "2"), nx("iqn.u", "3"));
        // (type, registrant read, registrant write, unregistered read, unregistered write) allowed?
        let table = [
            (3u8, false, false, false, false),
            (1, true, false, true, false),
            (6, true, true, false, false),
            (5, true, true, true, false),
            (8, true, true, false, false),
            (7, true, true, true, false),
        ];
        for (t, rr, rw, ur, uw) in table {
            let mut st = PrState::default();
            out(&mut st, &h, 6, 0, 0, 1).unwrap();
            out(&mut st, &r, 6, 0, 0, 2).unwrap();
            out(&mut st, &h, 1, t, 1, 0).unwrap();
            assert!(!st.conflicts(&h, Access::Write), "holder, type {t}");
            assert_eq!(!st.conflicts(&r, Access::Read), rr, "registrant read, type {t}");
            assert_eq!(!st.conflicts(&r, Access::Write), rw, "registrant write, type {t}");
            assert_eq!(!st.conflicts(&u, Access::Read), ur, "unregistered read, type {t}");
            assert_eq!(!st.conflicts(&u, Access::Write), uw, "unregistered write, type {t}");
            assert!(!st.conflicts(&u, Access::Always));
        }
    }

    #[test]
    fn holder_unregistering() {
        let (a, b) = (nx("iqn.a", "1"), nx("iqn.b", "2"));
        // Registrants Only: the reservation goes and the other registrant is told.
        let mut st = PrState::default();
        out(&mut st, &a, 6, 0, 0, 1).unwrap();
        out(&mut st, &b, 6, 0, 0, 2).unwrap();
        out(&mut st, &a, 1, 5, 1, 0).unwrap();
        let fx = out(&mut st, &a, 0, 0, 1, 0).unwrap();
        assert!(st.res.is_none());
        assert_eq!(fx, vec![Effect::Ua(b.clone(), SenseCode::RESERVATIONS_RELEASED)]);
        // All Registrants: it stays, reported with key 0, and the other registrant may release.
        let mut st = PrState::default();
        out(&mut st, &a, 6, 0, 0, 1).unwrap();
        out(&mut st, &b, 6, 0, 0, 2).unwrap();
        out(&mut st, &a, 1, 8, 1, 0).unwrap();
        out(&mut st, &a, 0, 0, 1, 0).unwrap();
        let rr = st.prin(1).unwrap();
        assert_eq!(&rr[4..8], &[0, 0, 0, 16]);
        assert_eq!(&rr[8..16], &[0; 8], "All Registrants report key 0");
        assert_eq!(rr[21], 8);
        out(&mut st, &b, 2, 8, 2, 0).unwrap();
        assert!(st.res.is_none());
    }

    #[test]
    fn release_and_reserve_conflicts() {
        let (a, b) = (nx("iqn.a", "1"), nx("iqn.b", "2"));
        let mut st = PrState::default();
        out(&mut st, &a, 6, 0, 0, 1).unwrap();
        out(&mut st, &b, 6, 0, 0, 2).unwrap();
        out(&mut st, &a, 1, 1, 1, 0).unwrap();
        assert_eq!(out(&mut st, &a, 1, 3, 1, 0), Err(PrError::Conflict), "holder, other type");
        assert_eq!(out(&mut st, &b, 1, 1, 2, 0), Err(PrError::Conflict), "not the holder");
        out(&mut st, &b, 2, 1, 2, 0).unwrap(); // non-holder release: no-op
        assert!(st.res.is_some());
        assert_eq!(out(&mut st, &a, 2, 3, 1, 0), Err(PrError::Sense(Sense::new(SenseCode::INVALID_RELEASE_OF_PR))));
        assert_eq!(out(&mut st, &a, 1, 2, 1, 0), Err(PrError::Sense(Sense::invalid_cdb(2, Some(3)))));
    }

    #[test]
    fn clear_and_preempt() {
        let (a, b, c) = (nx("iqn.a", "1"), nx("iqn.b", "2"), nx("iqn.c", "3"));
        let mut st = PrState::default();
        out(&mut st, &a, 6, 0, 0, 1).unwrap();
        out(&mut st, &b, 6, 0, 0, 2).unwrap();
        let g = st.generation;
        // Preempt without a reservation removes the registration of the given key.
        let fx = out(&mut st, &b, 4, 3, 2, 1).unwrap();
        assert_eq!(fx, vec![Effect::Ua(a.clone(), SenseCode::REGISTRATIONS_PREEMPTED)]);
        assert_eq!(st.generation, g + 1);
        assert_eq!(st.regs.len(), 1);
        // Preempting the holder takes over its reservation; PREEMPT AND ABORT aborts its tasks.
        out(&mut st, &a, 6, 0, 0, 1).unwrap();
        out(&mut st, &a, 1, 1, 1, 0).unwrap();
        let fx = out(&mut st, &b, 5, 3, 2, 1).unwrap();
        assert!(fx.contains(&Effect::Abort(a.clone())));
        assert_eq!(st.res.as_ref().map(|r| (r.typ, r.holder.clone())), Some((PrType::EA, b.clone())));
        // A key nobody has: conflict. Key 0 without a reservation of the holder: invalid.
        out(&mut st, &c, 6, 0, 0, 3).unwrap();
        assert_eq!(out(&mut st, &c, 4, 3, 3, 99), Err(PrError::Conflict));
        // CLEAR removes everything and tells the others.
        let fx = out(&mut st, &c, 3, 0, 3, 0).unwrap();
        assert_eq!(fx, vec![Effect::Ua(b.clone(), SenseCode::RESERVATIONS_PREEMPTED)]);
        assert!(st.regs.is_empty() && st.res.is_none());
    }

    #[test]
    fn spc2_against_persistent() {
        let (a, b) = (nx("iqn.a", "1"), nx("iqn.b", "2"));
        let mut st = PrState::default();
        st.spc2_reserve(&a).unwrap();
        st.spc2_reserve(&a).unwrap();
        assert_eq!(st.spc2_reserve(&b), Err(PrError::Conflict));
        assert!(st.conflicts(&b, Access::Read) && !st.conflicts(&a, Access::Write));
        st.spc2_release(&b);
        assert!(st.spc2.is_some(), "RELEASE from a non-holder is a no-op");
        st.nexus_lost(&a);
        assert!(st.spc2.is_none());
        out(&mut st, &a, 6, 0, 0, 1).unwrap();
        assert_eq!(st.spc2_reserve(&b), Err(PrError::Conflict), "registrations block RESERVE(6)");
    }

    #[test]
    fn full_status_and_transport_ids() {
        let a = nx("iqn.a", "023d00000001");
        let mut st = PrState::default();
        out(&mut st, &a, 6, 0, 0, 0x11).unwrap();
        out(&mut st, &a, 1, 3, 0x11, 0).unwrap();
        let d = st.prin(3).unwrap();
        let tid = transport_id(&a);
        assert_eq!(tid.len() % 4, 0);
        assert_eq!(tid[0], 0x45);
        assert_eq!(&d[8..16], &0x11u64.to_be_bytes());
        assert_eq!(d[20], 1, "R_HOLDER");
        assert_eq!(d[21], 3);
        assert_eq!(be32(&d, 4) as usize, d.len() - 8);
        assert_eq!(parse_transport_id(&tid, 5), Some((("iqn.a".into(), ",i,0x023d00000001".into()), tid.len())));
    }

    #[test]
    fn transport_ids_of_each_protocol() {
        let port = |proto: u8, name: &str| Nexus {
            initiator: name.into(),
            port_suffix: String::new(),
            rel_port: 1,
            protocol: proto,
        };
        for (proto, name, len) in [
            (0x0, "21:00:00:24:ff:31:4c:2a", 24),
            (0x4, "0xfe800000000000000002c90300a1b2c3", 40),
            (0x6, "0x5000c50012345678", 24),
        ] {
            let tid = transport_id(&port(proto, name));
            assert_eq!(tid.len(), len, "{name}");
            assert_eq!(tid[0], proto);
            assert_eq!(parse_transport_id(&tid, proto), Some(((name.into(), String::new()), len)));
            // Not through an iSCSI port, nor (not being name-based) through the loopback.
            assert_eq!(parse_transport_id(&tid, 5), None);
            assert_eq!(parse_transport_id(&tid, 0xf), None);
        }
        // iSCSI: an empty name, a truncated body, format 01b without an ISID are refused.
        assert_eq!(parse_transport_id(&[0x05, 0, 0, 0], 5), None);
        assert_eq!(parse_transport_id(&[0x05, 0, 0, 20, b'i'], 5), None);
        let mut t = vec![0x45, 0, 0, 20];
        t.extend_from_slice(b"iqn.x\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(parse_transport_id(&t, 5), None);
        t[0] = 0x05;
        assert_eq!(parse_transport_id(&t, 5), Some((("iqn.x".into(), String::new()), 24)));
        assert_eq!(parse_transport_id(&t, 0xf), Some((("iqn.x".into(), String::new()), 24)));
    }

    #[test]
    fn all_tg_pt_registrations_cover_every_port() {
        let a1 = nx("iqn.a", "01");
        let a2 = Nexus { rel_port: 2, ..a1.clone() };
        let mut st = PrState::default();
        out(&mut st, &a1, 0, 0, 0, 0xa).unwrap();
        let mut p = params(0, 0xb, 0x04);
        assert_eq!(st.prout(&a2, 0, 0, &p, 24), Err(PrError::Conflict), "a1 is registered already");
        p = params(0, 0xb, 0x04);
        st.prout(&a2, 6, 0, &p, 24).unwrap();
        assert_eq!(st.regs.len(), 1, "REGISTER AND IGNORE replaced a1's registration");
        assert_eq!(st.registration(&a1).map(|g| g.key), Some(0xb));
        // Reserved through port 1, held through port 2 as well.
        out(&mut st, &a1, 1, 1, 0xb, 0).unwrap();
        assert!(st.is_holder(&a2) && !st.conflicts(&a2, Access::Write));
        let d = st.prin(3).unwrap();
        assert_eq!(d[20], 0x03, "ALL_TG_PT and R_HOLDER");
    }

    #[test]
    fn persistence_round_trip_and_corruption() {
        let (a, b) = (nx("iqn.a", "1"), nx("iqn with space", "2"));
        let mut st = PrState::default();
        st.prout(&a, 6, 0, &params(0, 5, 1), 24).unwrap();
        st.prout(&b, 6, 0, &params(0, 6, 1), 24).unwrap();
        out(&mut st, &a, 1, 5, 5, 0).unwrap();
        let text = st.serialize();
        let back = PrState::deserialize(&text).unwrap();
        assert_eq!(back.regs, st.regs);
        assert_eq!(back.res, st.res);
        assert_eq!(back.generation, st.generation);
        assert!(PrState::deserialize(&text[..text.len() - 10]).is_none(), "truncated");
        let corrupt = text.replace("reg 0000000000000005", "reg 0000000000000007");
        assert!(PrState::deserialize(&corrupt).is_none(), "checksum mismatch");
    }
}

/// Where a device's persistent reservations live when APTPL is set: `<dir>/<name>.pr`, with the
/// previous good copy in `<name>.pr.prev`.
///
/// Writes are atomic: the new state goes to a temporary file which is fsynced, the current file
/// becomes the previous copy (a hard link, so some complete copy exists at every instant), the
/// temporary file is renamed over the current one and the directory is fsynced.
#[derive(Clone, Debug)]
pub struct PrFile {
    path: std::path::PathBuf,
}

/// What [`PrFile::load`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum PrLoad {
    /// No state was saved.
    Empty,
    /// The current copy.
    Current(PrState),
    /// The current copy was corrupt or truncated; the previous one was used.
    Previous(PrState),
    /// Both copies are unreadable: the state is lost and the device starts without
    /// reservations (reported, never silent).
    Corrupt,
}

impl PrFile {
    /// The file for device `name` in `dir` (the name is sanitized into a file name).
    pub fn new(dir: &std::path::Path, name: &str) -> Self {
        let safe: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
            .collect();
        let tag = checksum(name) & 0xffff_ffff;
        Self { path: dir.join(format!("{safe}.{tag:08x}.pr")) }
    }

    /// The current file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn prev(&self) -> std::path::PathBuf {
        self.path.with_extension("pr.prev")
    }

    /// Loads the saved state.
    pub fn load(&self) -> PrLoad {
        let read = |p: &std::path::Path| std::fs::read_to_string(p).ok();
        match read(&self.path) {
            None if !self.path.exists() && !self.prev().exists() => PrLoad::Empty,
            Some(t) if let Some(st) = PrState::deserialize(&t) => PrLoad::Current(st),
            _ => match read(&self.prev()).and_then(|t| PrState::deserialize(&t)) {
                Some(st) => PrLoad::Previous(st),
                None => PrLoad::Corrupt,
            },
        }
    }

    /// Saves `st` (an empty state when APTPL is off: nothing survives a restart).
    ///
    /// # Errors
    /// The file system's error; the previous file is then still intact.
    pub fn save(&self, st: &PrState) -> std::io::Result<()> {
        use std::io::Write as _;
        let text = if st.aptpl { st.serialize() } else { PrState::default().serialize() };
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("pr.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        if self.path.exists() {
            let plink = self.path.with_extension("pr.prev.tmp");
            let _ = std::fs::remove_file(&plink);
            std::fs::hard_link(&self.path, &plink)?;
            std::fs::rename(&plink, self.prev())?;
        }
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn save_load_and_fall_back() {
        let dir = std::env::temp_dir().join(format!("scst-pr-test-{}", std::process::id()));
        let f = PrFile::new(&dir, "iqn.x:dev/0");
        assert_eq!(f.load(), PrLoad::Empty);
        let n = Nexus { initiator: "iqn.a".into(), port_suffix: ",i,0x1".into(), rel_port: 1, protocol: 5 };
        let mut st = PrState::default();
        let mut p = vec![0u8; 24];
        put64(&mut p, 8, 0xabc);
        p[20] = 1; // APTPL
        st.prout(&n, 6, 0, &p, 24).unwrap();
        f.save(&st).unwrap();
        assert_eq!(f.load(), PrLoad::Current(st.clone()));
        let mut st2 = st.clone();
        st2.prout(
            &n,
            1,
            3,
            &{
                let mut q = vec![0u8; 24];
                put64(&mut q, 0, 0xabc);
                q
            },
            24,
        )
        .unwrap();
        f.save(&st2).unwrap();
        // A torn current file: the previous copy is used, and reported as such.
        let text = std::fs::read_to_string(f.path()).unwrap();
        std::fs::write(f.path(), &text[..text.len() / 2]).unwrap();
        assert_eq!(f.load(), PrLoad::Previous(st));
        std::fs::write(f.prev(), "garbage").unwrap();
        assert_eq!(f.load(), PrLoad::Corrupt);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Commands: PERSISTENT RESERVE IN/OUT and SPC-2 RESERVE/RELEASE on a command's device, from
/// its session's nexus.
pub(crate) mod exec {
    use super::{Effect, PrError};
    use crate::cmd::{Cmd, Fail};
    use crate::wire::cdb::{be16, be32};
    use crate::wire::sense::{Sense, SenseCode};

    /// Largest PERSISTENT RESERVE OUT parameter list (SPEC_I_PT lists included).
    const MAX_PARAMS: usize = 64 << 10;

    impl From<PrError> for Fail {
        fn from(e: PrError) -> Self {
            match e {
                PrError::Conflict => Self::RESERVATION_CONFLICT,
                PrError::Sense(s) => Self::Check(s),
            }
        }
    }

    fn dev(cmd: &Cmd) -> Result<std::sync::Arc<crate::dev::Device>, Fail> {
        cmd.device().cloned().ok_or(Fail::from(SenseCode::INTERNAL_TARGET_FAILURE))
    }

    pub(crate) fn prin(cmd: &mut Cmd) -> Result<(), Fail> {
        let dev = dev(cmd)?;
        let (sa, alloc) = (cmd.cdb()[1] & 0x1f, usize::from(be16(cmd.cdb(), 7)));
        let mut d = dev.pr_state().prin(sa)?;
        if sa == 2 && !dev.pr_persistent() {
            // No state directory: APTPL cannot be honoured (PTPL_C = 0).
            d[2] &= !0x01;
        }
        cmd.respond(&d, alloc)
    }

    pub(crate) fn prout(cmd: &mut Cmd) -> Result<(), Fail> {
        let dev = dev(cmd)?;
        let cdb = *cmd.cdb_padded();
        let (sa, scope_type, plen) = (cdb[1] & 0x1f, cdb[2], be32(&cdb, 5));
        let have = cmd.buf().map_or(0, |b| b.len());
        if plen as usize > MAX_PARAMS || have < plen as usize {
            return Err(SenseCode::PARAMETER_LIST_LENGTH_ERROR.into());
        }
        let mut params = vec![0u8; have];
        if let Some(b) = cmd.buf() {
            b.read_at(0, &mut params);
        }
        if params.len() > 20 && params[20] & 0x01 != 0 && sa != 7 && !dev.pr_persistent() {
            // APTPL requested, but nothing can persist.
            return Err(Sense::invalid_param(20, Some(0)).into());
        }
        let sess = cmd.session().clone();
        let nexus = sess.nexus().clone();
        let fx = dev.pr_update(|st| st.prout(&nexus, sa, scope_type, &params, plen))?;
        for e in fx {
            match e {
                Effect::Ua(n, code) => dev.ua.raise_for(code, n),
                Effect::Abort(n) => sess.abort_nexus(&dev, &n),
            }
        }
        Ok(())
    }

    pub(crate) fn reserve(cmd: &mut Cmd) -> Result<(), Fail> {
        let dev = dev(cmd)?;
        let nexus = cmd.session().nexus().clone();
        dev.pr_update(|st| st.spc2_reserve(&nexus)).map_err(Fail::from)
    }

    pub(crate) fn release(cmd: &mut Cmd) -> Result<(), Fail> {
        let dev = dev(cmd)?;
        let nexus = cmd.session().nexus().clone();
        dev.pr_update(|st| {
            st.spc2_release(&nexus);
            Ok(())
        })
        .map_err(Fail::from)
    }
}
