//! What `scst-target` runs: the devices and targets of a [`ScstConfig`], and the changes a
//! re-read file makes to them while sessions stay logged in.
//!
//! [`Runtime::start`] builds everything a configuration names. [`Runtime::reload`] compares a new
//! configuration with the running one and applies the difference: devices added, LUNs mapped,
//! unmapped or remapped (sessions get REPORTED LUNS DATA HAS CHANGED), security groups added,
//! removed or given new initiators, ALUA states changed, targets added, iSCSI targets removed
//! (their sessions asked to log out) or given new CHAP credentials (for new logins), FILEIO
//! files grown (sessions get CAPACITY DATA HAS CHANGED). What cannot change under live sessions
//! (any other change of a device's definition, a shrink, the removal of a target of another
//! fabric, the port identifiers) is refused, and then nothing of the new file is applied: the
//! whole plan is checked and every new device opened before the first change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use scst::acl::NamePatterns;
use scst::alua::{AluaConfig, PortGroup};
use scst::{Device, Lun, SgvPool, Target};

use crate::scstconf::{DeviceDef, Driver, LunDef, ScstConfig, TargetDef};

/// A running configuration.
pub struct Runtime {
    cfg: ScstConfig,
    devices: BTreeMap<String, Arc<Device>>,
    targets: BTreeMap<String, Arc<Target>>,
    sgv: SgvPool,
    state_dir: Option<PathBuf>,
}

/// The port identity every served iSCSI target shares (one iSCSI server: one portal group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortIds {
    /// Relative target port id and iSCSI portal group tag (`rel_tgt_id`; default 1).
    pub rel_tgt_id: u16,
    /// The ALUA target port group of the port (the `TARGET_GROUP` listing the targets; 1 when
    /// there is none).
    pub tpg: u16,
}

/// A target the caller must hand to its fabric, with its CHAP credentials.
pub struct NewTarget {
    /// The target.
    pub target: Arc<Target>,
    /// Its definition (for `IncomingUser`/`OutgoingUser`).
    pub def: TargetDef,
}

/// What an applied reload asks of the fabrics, and the log of every change.
#[derive(Debug, Default)]
pub struct Applied {
    /// Targets added: hand each to its fabric.
    pub added: Vec<NewTarget>,
    /// iSCSI targets with new CHAP credentials: replace their fabric entries (new logins use
    /// the new credentials; sessions logged in stay).
    pub rechap: Vec<NewTarget>,
    /// iSCSI targets removed or disabled: stop exporting them and log their sessions out.
    pub removed: Vec<String>,
    /// Devices whose capacity changed (their sessions have a unit attention; fabrics without
    /// one, such as virtio-scsi, post an event).
    pub resized: Vec<Arc<Device>>,
    /// One line per change.
    pub log: Vec<String>,
}

/// Whether `new` only grows `old`, a FILEIO device, to a larger `size`: `Some(Ok((file, bytes)))` then,
/// `Some(Err)` for a shrink (which would cut the data of live sessions), `None` for any other
/// change.
fn grown<'a>(old: &DeviceDef, new: &'a DeviceDef) -> Option<Result<(&'a PathBuf, u64), String>> {
    use crate::spec::Backend::Fileio;
    let (Fileio { size: Some(was), .. }, Fileio { path, size: Some(now), .. }) = (&old.spec.backend, &new.spec.backend)
    else {
        return None;
    };
    let mut same = new.clone();
    if let Fileio { size, .. } = &mut same.spec.backend {
        *size = Some(*was);
    }
    if same != *old {
        return None;
    }
    Some(if now > was { Ok((path, *now)) } else { Err(format!("size {now} is below {was}: a device only grows live")) })
}

fn served(cfg: &ScstConfig) -> impl Iterator<Item = &TargetDef> {
    cfg.served()
}

/// The target port group listing target `name` (1 when none does).
fn tpg_of(cfg: &ScstConfig, name: &str) -> u16 {
    cfg.device_groups
        .iter()
        .flat_map(|d| &d.target_groups)
        .find(|g| g.targets.iter().any(|(n, _)| *n == name))
        .map_or(1, |g| g.group_id)
}

/// The port ids of a configuration's served iSCSI targets, which must agree.
///
/// # Errors
/// If served targets differ in `rel_tgt_id` or target port group.
pub fn port_ids(cfg: &ScstConfig) -> Result<PortIds, String> {
    let mut ids: Option<(PortIds, &str)> = None;
    for t in served(cfg).filter(|t| t.driver == Driver::Iscsi) {
        let mine = PortIds { rel_tgt_id: t.rel_tgt_id.unwrap_or(1), tpg: tpg_of(cfg, &t.name) };
        match ids {
            Some((other, name)) if other != mine => {
                return Err(format!(
                    "targets {name} and {} differ in rel_tgt_id or target port group: scst-target serves one portal group",
                    t.name
                ));
            }
            _ => ids = Some((mine, &t.name)),
        }
    }
    Ok(ids.map_or(PortIds { rel_tgt_id: 1, tpg: 1 }, |(i, _)| i))
}

/// The port of a target that is a port of its own (SRP: the RDMA/CM listener; FCoE: a VN_Port;
/// scst_local: a vhost-user socket), unlike iSCSI's targets, which share one portal group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinglePort {
    /// The port's identifier, from the target's name: the SRP port GUID (ib_srp's `id_ext`
    /// and `ioc_guid`) or the FC WWPN; 0 for scst_local.
    pub id: u64,
    /// Relative target port id: `rel_tgt_id`, by default the iSCSI port's plus one (SRP), plus
    /// two (FC), or plus three and up, in file order (scst_local).
    pub rel_tgt_id: u16,
    /// Its ALUA target port group.
    pub tpg: u16,
}

/// The served target of `driver` (`ib_srpt` or `fcst`, which serve one target each) and its
/// port, if there is one.
///
/// # Errors
/// More than one served target of the driver, or relative port ids that collide with
/// another port's.
pub fn single_port(cfg: &ScstConfig, driver: Driver) -> Result<Option<SinglePort>, String> {
    Ok(ports(cfg)?.into_iter().find(|(d, _, _)| *d == driver).map(|(_, _, p)| p))
}

/// The served scst_local targets and their ports, in file order.
///
/// # Errors
/// As [`single_port`].
pub fn local_ports(cfg: &ScstConfig) -> Result<Vec<(String, SinglePort)>, String> {
    Ok(ports(cfg)?.into_iter().filter(|(d, _, _)| *d == Driver::Local).map(|(_, n, p)| (n, p)).collect())
}

/// Every served target that is a port of its own, checked: one target per single-target
/// driver, relative ids distinct from each other and from the iSCSI port's.
fn ports(cfg: &ScstConfig) -> Result<Vec<(Driver, String, SinglePort)>, String> {
    let iscsi = port_ids(cfg)?;
    let iscsi_served = served(cfg).any(|t| t.driver == Driver::Iscsi);
    let default_id = |step: u16| iscsi.rel_tgt_id.checked_add(step).unwrap_or(step);
    let mut out: Vec<(Driver, String, SinglePort)> = Vec::new();
    for (driver, step) in [(Driver::Srpt, 1u16), (Driver::Fcst, 2)] {
        let mut of = served(cfg).filter(|t| t.driver == driver);
        let Some(t) = of.next() else { continue };
        if let Some(o) = of.next() {
            return Err(format!(
                "{} targets {} and {}: scst-target serves one target of this driver (one port)",
                driver.name(),
                t.name,
                o.name
            ));
        }
        let id =
            driver.port_id(&t.name).ok_or_else(|| format!("{} target {}: not a port name", driver.name(), t.name))?;
        let rel_tgt_id = t.rel_tgt_id.unwrap_or(default_id(step));
        out.push((driver, t.name.clone(), SinglePort { id, rel_tgt_id, tpg: tpg_of(cfg, &t.name) }));
    }
    // scst_local: numbered among all the file's scst_local targets, so that enabling or
    // disabling one does not renumber the others.
    for (i, t) in cfg.targets.iter().filter(|t| t.driver == Driver::Local).enumerate() {
        if !(t.enabled && cfg.driver_enabled(Driver::Local)) {
            continue;
        }
        let step = u16::try_from(i + 3).unwrap_or(u16::MAX);
        let rel_tgt_id = t.rel_tgt_id.unwrap_or(default_id(step));
        out.push((Driver::Local, t.name.clone(), SinglePort { id: 0, rel_tgt_id, tpg: tpg_of(cfg, &t.name) }));
    }
    for (i, (_, name, p)) in out.iter().enumerate() {
        if iscsi_served && p.rel_tgt_id == iscsi.rel_tgt_id {
            return Err(format!(
                "target {name}: rel_tgt_id {} is the iSCSI port's; each port needs its own",
                p.rel_tgt_id
            ));
        }
        if let Some((_, other, _)) = out[..i].iter().find(|(_, _, q)| q.rel_tgt_id == p.rel_tgt_id) {
            return Err(format!("targets {other} and {name} have the same rel_tgt_id {}", p.rel_tgt_id));
        }
    }
    Ok(out)
}

/// Checks every port id of a configuration: the iSCSI portal group's, and the ports of the
/// other fabrics' targets ([`single_port`], [`local_ports`]).
///
/// # Errors
/// As [`port_ids`] and [`single_port`].
pub fn check_ports(cfg: &ScstConfig) -> Result<(), String> {
    port_ids(cfg)?;
    ports(cfg).map(drop)
}

/// Refuses a configuration that serves targets of a driver this daemon cannot serve.
///
/// # Errors
/// The first such target.
pub fn check_servable(cfg: &ScstConfig, servable: &[Driver]) -> Result<(), String> {
    match served(cfg).find(|t| !servable.contains(&t.driver)) {
        Some(t) => Err(format!("target {}: TARGET_DRIVER {} is not available here", t.name, t.driver.name())),
        None => Ok(()),
    }
}

fn alua_of(cfg: &ScstConfig, t: &TargetDef) -> Option<AluaConfig> {
    let dg = cfg
        .device_groups
        .iter()
        .find(|d| d.target_groups.iter().any(|g| g.targets.iter().any(|(n, _)| *n == t.name)))?;
    let groups = dg
        .target_groups
        .iter()
        .map(|g| PortGroup {
            id: g.group_id,
            state: g.state,
            preferred: g.preferred,
            // Ports of other nodes: members that are not this target, with their rel_tgt_id.
            remote_ports: g.targets.iter().filter(|(n, _)| *n != t.name).filter_map(|(_, r)| *r).collect(),
        })
        .collect();
    Some(AluaConfig { groups, explicit: false })
}

fn lun_map(luns: &[LunDef]) -> BTreeMap<u16, (&str, bool)> {
    luns.iter().map(|l| (l.lun, (l.device.as_str(), l.read_only))).collect()
}

impl std::fmt::Debug for NewTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewTarget").field("target", &self.target.name()).finish()
    }
}

impl Runtime {
    /// Builds every device and served target of `cfg`. Devices keep persistent state in
    /// `state_dir`; all targets share the buffer pool `sgv`.
    ///
    /// # Errors
    /// A device that cannot be opened, or a map or ALUA table the core refuses.
    pub fn start(cfg: ScstConfig, sgv: SgvPool, state_dir: Option<&Path>) -> Result<(Self, Vec<NewTarget>), String> {
        check_ports(&cfg)?;
        let mut rt = Self {
            cfg: ScstConfig::default(),
            devices: BTreeMap::new(),
            targets: BTreeMap::new(),
            sgv,
            state_dir: state_dir.map(Path::to_path_buf),
        };
        for d in &cfg.devices {
            let dev = rt.open(d)?;
            rt.devices.insert(d.name.clone(), dev);
        }
        let mut new = Vec::new();
        for t in served(&cfg) {
            let target = rt.build_target(&cfg, t)?;
            rt.targets.insert(t.name.clone(), target.clone());
            new.push(NewTarget { target, def: t.clone() });
        }
        rt.cfg = cfg;
        Ok((rt, new))
    }

    fn open(&self, d: &DeviceDef) -> Result<Arc<Device>, String> {
        d.spec.build(&d.name, self.state_dir.as_deref()).map_err(|e| format!("device {}: {e}", d.name))
    }

    fn build_target(&self, cfg: &ScstConfig, t: &TargetDef) -> Result<Arc<Target>, String> {
        let target = Target::new(t.name.clone(), self.sgv.clone());
        let err = |e: &dyn std::fmt::Display| format!("target {}: {e}", t.name);
        for g in &t.groups {
            target.add_group(&g.name, NamePatterns::new(&g.initiators).map_err(|e| err(&e))?).map_err(|e| err(&e))?;
        }
        for (group, luns) in
            std::iter::once((None, &t.luns)).chain(t.groups.iter().map(|g| (Some(g.name.as_str()), &g.luns)))
        {
            for l in luns {
                target
                    .add_group_lun(group, Lun(l.lun), self.devices[&l.device].clone(), l.read_only)
                    .map_err(|e| err(&e))?;
            }
        }
        if let Some(alua) = alua_of(cfg, t) {
            target.set_alua(Some(alua)).map_err(|e| err(&e))?;
        }
        Ok(target)
    }

    /// The running configuration.
    pub fn config(&self) -> &ScstConfig {
        &self.cfg
    }

    /// Every device, by name.
    pub fn devices(&self) -> &BTreeMap<String, Arc<Device>> {
        &self.devices
    }

    /// Every served target, by name.
    pub fn targets(&self) -> &BTreeMap<String, Arc<Target>> {
        &self.targets
    }

    /// Applies `new` to the running configuration; returns the targets to add to the fabric
    /// and a line per change made.
    ///
    /// # Errors
    /// What cannot change live, or a new device that cannot be opened; nothing is applied then.
    pub fn reload(&mut self, new: ScstConfig) -> Result<Applied, String> {
        // 1. Check the whole plan.
        if port_ids(&new)? != port_ids(&self.cfg)? {
            return Err("rel_tgt_id or the port's target port group changed: restart to apply".into());
        }
        let (was, now) = (ports(&self.cfg)?, ports(&new)?);
        // (A port that is gone altogether is a removed target, checked below.)
        for (d, name, p) in &was {
            if now.iter().any(|(_, n, _)| n == name) && !now.iter().any(|(e, n, q)| e == d && n == name && q == p) {
                return Err(format!(
                    "the {} port of target {name}: rel_tgt_id or target port group changed: restart to apply",
                    d.name()
                ));
            }
        }
        let mut grow = Vec::new();
        for d in &new.devices {
            if let Some(old) = self.cfg.devices.iter().find(|o| o.name == d.name)
                && (old.spec != d.spec || old.handler != d.handler)
            {
                match grown(old, d) {
                    Some(Ok((path, size))) => {
                        // Opened now, extended once every other step has succeeded.
                        let f = std::fs::OpenOptions::new()
                            .write(true)
                            .open(path)
                            .map_err(|e| format!("device {}: cannot grow {}: {e}", d.name, path.display()))?;
                        grow.push((d.name.clone(), path.clone(), f, size));
                    }
                    Some(Err(e)) => return Err(format!("device {}: {e}", d.name)),
                    None => {
                        return Err(format!(
                            "device {} changed its definition: restart to apply (or give it a new name)",
                            d.name
                        ));
                    }
                }
            }
        }
        let mut removed = Vec::new();
        for name in self.targets.keys() {
            let old = served(&self.cfg).find(|t| t.name == *name).expect("a running target has a definition");
            let Some(t) = served(&new).find(|t| t.name == *name) else {
                if old.driver != Driver::Iscsi {
                    return Err(format!(
                        "target {name} is gone or disabled: removing an {} target needs a restart",
                        old.driver.name()
                    ));
                }
                removed.push(name.clone());
                continue;
            };
            if t.driver != old.driver {
                return Err(format!(
                    "target {name} moved from TARGET_DRIVER {} to {}: restart to apply",
                    old.driver.name(),
                    t.driver.name()
                ));
            }
            let (a, b) = (alua_of(&new, t), alua_of(&self.cfg, old));
            let shape = |c: &Option<AluaConfig>| {
                c.as_ref().map(|c| c.groups.iter().map(|g| (g.id, g.remote_ports.clone())).collect::<Vec<_>>())
            };
            if shape(&a) != shape(&b) {
                return Err(format!(
                    "target {name}: target port groups changed: restart to apply (states may change live)"
                ));
            }
        }
        // 2. Open the new devices (dropped again if anything fails).
        let mut opened = BTreeMap::new();
        for d in new.devices.iter().filter(|d| !self.devices.contains_key(&d.name)) {
            opened.insert(d.name.clone(), self.open(d)?);
        }
        let mut devices = self.devices.clone();
        devices.extend(opened);
        // 3. Apply: maps, groups and states of running targets; new targets; then the grown
        // files and any device whose backing store changed size outside (a file or block device
        // grown): sessions see CAPACITY DATA HAS CHANGED.
        let mut log = Vec::new();
        // A copy, not a take: if a step below fails, the running configuration is still known.
        let old_cfg = self.cfg.clone();
        self.devices = devices;
        let mut rechap = Vec::new();
        for (name, target) in self.targets.iter().filter(|(n, _)| !removed.contains(n)) {
            let t = served(&new).find(|t| t.name == *name).expect("checked above");
            let old = served(&old_cfg).find(|t| t.name == *name).expect("checked above");
            self.apply_target(target, old, t, &mut log)?;
            if (&t.incoming_user, &t.outgoing_user) != (&old.incoming_user, &old.outgoing_user) {
                log.push(format!("target {name}: CHAP credentials changed (for new logins)"));
                rechap.push(NewTarget { target: target.clone(), def: t.clone() });
            }
            if let Some(a) = alua_of(&new, t) {
                let was = alua_of(&old_cfg, old);
                for g in a.groups {
                    let before = was.as_ref().and_then(|w| w.groups.iter().find(|x| x.id == g.id)).map(|x| x.state);
                    if before != Some(g.state) {
                        target.set_port_group_state(g.id, g.state).map_err(|e| format!("target {name}: {e}"))?;
                        log.push(format!("target {name}: target port group {} now {:?}", g.id, g.state));
                    }
                }
            }
        }
        let mut added = Vec::new();
        let fresh: Vec<&TargetDef> = served(&new).filter(|t| !self.targets.contains_key(&t.name)).collect();
        for t in fresh {
            let target = self.build_target(&new, t)?;
            self.targets.insert(t.name.clone(), target.clone());
            log.push(format!("target {} added", t.name));
            added.push(NewTarget { target, def: t.clone() });
        }
        for name in &removed {
            self.targets.remove(name);
            log.push(format!("target {name} removed (its sessions are asked to log out)"));
        }
        let mut resized = Vec::new();
        for (name, path, f, size) in grow {
            // An extension of a file opened above; it does not fail short of a full or broken
            // file system, and then the error says which file.
            if f.metadata().map_err(|e| format!("device {name}: {}: {e}", path.display()))?.len() < size {
                f.set_len(size)
                    .map_err(|e| format!("device {name}: growing {} to {size} bytes: {e}", path.display()))?;
            }
        }
        for (name, d) in &self.devices {
            if d.rescan() {
                log.push(format!("device {name}: capacity changed (sessions see CAPACITY DATA HAS CHANGED)"));
                resized.push(d.clone());
            }
        }
        // 4. Devices no longer defined: flushed and dropped (a running command keeps its own
        // reference until it ends).
        let unused: Vec<String> =
            self.devices.keys().filter(|n| !new.devices.iter().any(|d| d.name == **n)).cloned().collect();
        for n in unused {
            if let Some(d) = self.devices.remove(&n) {
                let _ = d.flush();
                log.push(format!("device {n} removed"));
            }
        }
        self.cfg = new;
        Ok(Applied { added, rechap, removed, resized, log })
    }

    fn apply_target(
        &self,
        target: &Target,
        old: &TargetDef,
        new: &TargetDef,
        log: &mut Vec<String>,
    ) -> Result<(), String> {
        let name = &new.name;
        let err = |e: &dyn std::fmt::Display| format!("target {name}: {e}");
        // Groups first, so that their maps exist. A group's order matters (the first match
        // wins): groups that moved are re-created in the new order.
        let old_names: Vec<&str> = old.groups.iter().map(|g| g.name.as_str()).collect();
        let new_names: Vec<&str> = new.groups.iter().map(|g| g.name.as_str()).collect();
        let keep = old_names.iter().zip(&new_names).take_while(|(a, b)| a == b).count();
        for g in &old.groups[keep..] {
            target.remove_group(&g.name).map_err(|e| err(&e))?;
            log.push(format!("target {name}: group {} removed", g.name));
        }
        for g in &new.groups[keep..] {
            target.add_group(&g.name, NamePatterns::new(&g.initiators).map_err(|e| err(&e))?).map_err(|e| err(&e))?;
            for l in &g.luns {
                target
                    .add_group_lun(Some(&g.name), Lun(l.lun), self.devices[&l.device].clone(), l.read_only)
                    .map_err(|e| err(&e))?;
            }
            log.push(format!("target {name}: group {} added", g.name));
        }
        let mut maps = vec![(None, &old.luns, &new.luns)];
        for (o, n) in old.groups[..keep].iter().zip(&new.groups[..keep]) {
            if o.initiators != n.initiators {
                target
                    .set_group_initiators(&n.name, NamePatterns::new(&n.initiators).map_err(|e| err(&e))?)
                    .map_err(|e| err(&e))?;
                log.push(format!("target {name}: group {} has new initiators", n.name));
            }
            maps.push((Some(n.name.as_str()), &o.luns, &n.luns));
        }
        for (group, o, n) in maps {
            let (o, n) = (lun_map(o), lun_map(n));
            let place = group.map_or("default map".to_string(), |g| format!("group {g}"));
            for (lun, was) in &o {
                if n.get(lun) != Some(was) {
                    target.remove_group_lun(group, Lun(*lun)).map_err(|e| err(&e))?;
                    log.push(format!("target {name}: LUN {lun} unmapped from the {place}"));
                }
            }
            for (lun, (dev, ro)) in &n {
                if o.get(lun) != Some(&(*dev, *ro)) {
                    target.add_group_lun(group, Lun(*lun), self.devices[*dev].clone(), *ro).map_err(|e| err(&e))?;
                    log.push(format!(
                        "target {name}: LUN {lun} = {dev}{} in the {place}",
                        if *ro { " (read-only)" } else { "" }
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What a management command asks of the fabric besides its reply.
#[derive(Debug, Default)]
pub struct Reply {
    /// The text to send back (`ok` or `error: ...` first, then the body).
    pub text: String,
    /// What a successful `apply` asks of the fabrics.
    pub applied: Applied,
}

/// The management commands `scstctl` sends, one line each.
pub const COMMANDS: &str = "\
apply [FILE]        re-read the configuration file (or FILE) and apply the difference live
write-config        the running configuration in scst.conf syntax
targets             served targets: LUNs, groups, sessions
luns TARGET         a target's LUN maps (default map and groups)
sessions [TARGET]   I_T nexuses: id, initiator, LUNs, commands, in flight, completed, bytes, errors
session ID          one session: target, initiator, port, the parameters its fabric negotiated
close-session ID    end a session from the target side (the initiator may log in again)
devices             devices: handler, commands, bytes read/written, errors, all errors, in flight
stats [DEVICE]      latency per op class (count, p50, p99, mean in µs), errors by sense key and
                    status, for every device (or DEVICE); the buffer pool
help                this list";

impl Runtime {
    /// The Prometheus text exposition of the running devices, sessions and buffer pool (what
    /// `GET /metrics` answers).
    pub fn metrics(&self) -> String {
        let devices: Vec<(&str, &Device)> = self
            .cfg
            .devices
            .iter()
            .filter_map(|d| self.devices.get(&d.name).map(|dev| (d.name.as_str(), &**dev)))
            .collect();
        let sessions: Vec<(&str, Arc<scst::Session>)> =
            self.targets.iter().flat_map(|(n, t)| t.sessions().into_iter().map(move |s| (n.as_str(), s))).collect();
        crate::metrics::prometheus(devices.iter().copied(), sessions.iter().map(|(n, s)| (*n, &**s)), &self.sgv)
    }

    /// Runs one management command line. `load(None)` reads the configuration file,
    /// `load(Some(path))` another one.
    pub fn command(&mut self, line: &str, load: impl Fn(Option<&str>) -> Result<ScstConfig, String>) -> Reply {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut body = String::new();
        let mut applied = Applied::default();
        let r: Result<(), String> = match words.as_slice() {
            ["apply", rest @ ..] if rest.len() <= 1 => {
                load(rest.first().copied()).and_then(|c| self.reload(c)).map(|a| {
                    for l in &a.log {
                        let _ = writeln!(body, "{l}");
                    }
                    let _ = writeln!(body, "{} changes", a.log.len());
                    applied = a;
                })
            }
            ["write-config"] => {
                body = crate::scstconf::write_config(&self.cfg);
                Ok(())
            }
            ["targets"] => {
                for (name, t) in &self.targets {
                    let _ = writeln!(
                        body,
                        "{name}\tluns={}\tgroups={}\tsessions={}",
                        t.luns().len(),
                        t.groups().len(),
                        t.sessions().len()
                    );
                }
                Ok(())
            }
            ["luns", name] => match (self.targets.get(*name), served(&self.cfg).find(|t| t.name == *name)) {
                (Some(t), Some(def)) => {
                    // The default map as the core has it; each group's map as applied from the file.
                    for (lun, l) in t.luns() {
                        let _ = writeln!(
                            body,
                            "(default)\t{}\t{}{}",
                            lun.0,
                            l.dev.name(),
                            if l.read_only { "\tro" } else { "" }
                        );
                    }
                    for g in &def.groups {
                        for l in &g.luns {
                            let _ = writeln!(
                                body,
                                "{}\t{}\t{}{}",
                                g.name,
                                l.lun,
                                l.device,
                                if l.read_only { "\tro" } else { "" }
                            );
                        }
                    }
                    Ok(())
                }
                _ => Err(format!("no target {name}")),
            },
            ["sessions", rest @ ..] if rest.len() <= 1 => {
                for (name, t) in self.targets.iter().filter(|(n, _)| rest.first().is_none_or(|w| *w == n.as_str())) {
                    for s in t.sessions() {
                        let _ = writeln!(
                            body,
                            "{}\t{name}\t{}\tluns={}\tcommands={}\tin_flight={}\tcompleted={}\tread_bytes={}\twrite_bytes={}\terrors={}\tall_errors={}\tqueue_full={}",
                            s.id(),
                            s.config().initiator_name,
                            s.luns().len(),
                            s.stats().commands.load(Relaxed),
                            s.outstanding(),
                            s.stats().io.completed(),
                            s.stats().read_bytes.load(Relaxed),
                            s.stats().write_bytes.load(Relaxed),
                            s.stats().errors.load(Relaxed),
                            s.stats().io.error_kinds.total(),
                            s.stats().queue_full.load(Relaxed),
                        );
                    }
                }
                Ok(())
            }
            ["session", id] | ["close-session", id] => {
                let found = id.parse::<u64>().ok().and_then(|id| {
                    self.targets
                        .iter()
                        .find_map(|(n, t)| t.sessions().into_iter().find(|s| s.id() == id).map(|s| (n, s)))
                });
                match found {
                    None => Err(format!("no session {id}")),
                    Some((name, s)) if words[0] == "session" => {
                        let c = s.config();
                        let _ = writeln!(
                            body,
                            "target\t{name}\ninitiator\t{}\ninitiator_port\t{}",
                            c.initiator_name, c.initiator_port
                        );
                        let _ = writeln!(body, "relative_target_port\t{}", c.port.rel_port_id);
                        for (k, v) in s.parameters() {
                            let _ = writeln!(body, "{k}\t{v}");
                        }
                        Ok(())
                    }
                    Some((_, s)) if s.request_close() => {
                        let _ = writeln!(body, "session {id} closing");
                        Ok(())
                    }
                    Some(_) => Err(format!("session {id}: its fabric cannot close one session")),
                }
            }
            ["devices"] => {
                for d in &self.cfg.devices {
                    if let Some(dev) = self.devices.get(&d.name) {
                        let st = dev.stats();
                        let _ = writeln!(
                            body,
                            "{}\t{}\tcommands={}\tread_bytes={}\twrite_bytes={}\terrors={}\tall_errors={}\tin_flight={}",
                            d.name,
                            d.handler,
                            st.commands.load(Relaxed),
                            st.read_bytes.load(Relaxed),
                            st.write_bytes.load(Relaxed),
                            st.errors.load(Relaxed),
                            st.errors_total(),
                            st.in_flight(),
                        );
                    }
                }
                Ok(())
            }
            ["stats", rest @ ..] if rest.len() <= 1 => {
                let want = rest.first().copied();
                if let Some(w) = want
                    && !self.devices.contains_key(w)
                {
                    Err(format!("no device {w}"))
                } else {
                    for d in self.cfg.devices.iter().filter(|d| want.is_none_or(|w| w == d.name)) {
                        if let Some(dev) = self.devices.get(&d.name) {
                            let st = dev.stats();
                            let _ = writeln!(
                                body,
                                "{}\tcommands={}\tin_flight={}",
                                d.name,
                                st.commands.load(Relaxed),
                                st.in_flight()
                            );
                            crate::metrics::write_report(&mut body, &st.io);
                        }
                    }
                    if want.is_none() {
                        crate::metrics::write_sgv(&mut body, &self.sgv);
                    }
                    Ok(())
                }
            }
            ["help"] => {
                body = format!("{COMMANDS}\n");
                Ok(())
            }
            _ => Err(format!("unknown command {line:?}; try help")),
        };
        let text = match r {
            Ok(()) => format!("ok\n{body}"),
            Err(e) => format!("error: {e}\n"),
        };
        Reply { text, applied }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scstconf::parse;
    use scst::SgvConfig;

    fn conf(luns: &str, groups: &str) -> ScstConfig {
        let text = format!(
            "HANDLER vdisk_nullio {{\n DEVICE a {{\n  size 1M\n }}\n DEVICE b {{\n  size 2M\n }}\n}}\n\
             TARGET_DRIVER iscsi {{\n TARGET iqn.t {{\n  enabled 1\n{luns}{groups} }}\n}}\n"
        );
        parse("t", &text).unwrap()
    }

    fn names(m: &BTreeMap<Lun, scst::MappedLun>) -> Vec<(u16, String, bool)> {
        m.iter().map(|(l, m)| (l.0, m.dev.name().to_string(), m.read_only)).collect()
    }

    #[test]
    fn reload_maps_unmaps_and_regroups_live() {
        let sgv = SgvPool::new(SgvConfig::default());
        let (mut rt, new) = Runtime::start(conf("  LUN 0 a\n", ""), sgv, None).unwrap();
        assert_eq!(new.len(), 1);
        let t = rt.targets()["iqn.t"].clone();
        assert_eq!(names(&t.luns()), [(0, "a".into(), false)]);

        let Applied { added, log, .. } = rt
            .reload(conf(
                "  LUN 0 b\n  LUN 1 a { read_only 1 }\n",
                "  GROUP g {\n   LUN 5 a\n   INITIATOR iqn.x*\n  }\n",
            ))
            .unwrap();
        assert!(added.is_empty());
        assert_eq!(names(&t.luns()), [(0, "b".into(), false), (1, "a".into(), true)], "{log:?}");
        assert_eq!(t.group_of("iqn.xyz").as_deref(), Some("g"));
        assert_eq!(names(&t.lun_map_for("iqn.xyz")), [(5, "a".into(), false)]);

        let Applied { log, .. } =
            rt.reload(conf("  LUN 1 a { read_only 1 }\n", "  GROUP g {\n   INITIATOR iqn.y*\n  }\n")).unwrap();
        assert_eq!(names(&t.luns()), [(1, "a".into(), true)], "{log:?}");
        assert_eq!(t.group_of("iqn.xyz"), None);
        assert!(t.lun_map_for("iqn.yes").is_empty());
    }

    #[test]
    fn a_refused_reload_changes_nothing() {
        let sgv = SgvPool::new(SgvConfig::default());
        let (mut rt, _) = Runtime::start(conf("  LUN 0 a\n", ""), sgv, None).unwrap();
        let t = rt.targets()["iqn.t"].clone();
        // A device's definition cannot change live.
        let mut c = conf("  LUN 0 b\n", "");
        c.devices[0].spec.read_only = true;
        assert!(rt.reload(c).unwrap_err().contains("device a changed"));
        assert_eq!(names(&t.luns()), [(0, "a".into(), false)]);
        // A new device that cannot be opened: nothing applied either.
        let mut c = conf("  LUN 0 b\n", "");
        c.targets[0].luns[0].device = "c".into();
        let mut bad = c.devices[0].clone();
        bad.name = "c".into();
        bad.spec.backend = crate::spec::Backend::Blockio {
            path: "/nonexistent/dev".into(),
            thin: false,
            aio: scst_backends::AioMode::Auto,
        };
        c.devices.push(bad);
        assert!(rt.reload(c).unwrap_err().contains("device c"));
        assert_eq!(names(&t.luns()), [(0, "a".into(), false)]);
        assert!(!rt.devices().contains_key("c"));
    }

    #[test]
    fn management_commands_show_and_apply() {
        let sgv = SgvPool::new(SgvConfig::default());
        let (mut rt, _) =
            Runtime::start(conf("  LUN 0 a\n", "  GROUP g {\n   LUN 2 b { read_only 1 }\n  }\n"), sgv, None).unwrap();
        let r = rt.command("targets", |_| unreachable!());
        assert_eq!(r.text, "ok\niqn.t\tluns=1\tgroups=1\tsessions=0\n");
        let r = rt.command("luns iqn.t", |_| unreachable!());
        assert_eq!(r.text, "ok\n(default)\t0\ta\ng\t2\tb\tro\n");
        let r = rt.command("devices", |_| unreachable!());
        assert!(r.text.starts_with("ok\na\tvdisk_nullio\tcommands=0\t"), "{}", r.text);
        assert_eq!(rt.command("luns nope", |_| unreachable!()).text, "error: no target nope\n");
        assert!(rt.command("frobnicate", |_| unreachable!()).text.starts_with("error: unknown command"));
        // write-config gives back a file that applies as no change at all.
        let written = rt.command("write-config", |_| unreachable!()).text;
        let file = written.strip_prefix("ok\n").unwrap().to_string();
        let r = rt.command("apply", |p| {
            assert_eq!(p, None);
            parse("w", &file).map_err(|e| e.to_string())
        });
        assert_eq!(r.text, "ok\n0 changes\n");
        let r = rt.command("apply /x", |p| {
            assert_eq!(p, Some("/x"));
            Ok(conf("  LUN 0 a\n  LUN 1 b\n", "  GROUP g {\n   LUN 2 b { read_only 1 }\n  }\n"))
        });
        assert_eq!(r.text, "ok\ntarget iqn.t: LUN 1 = b in the default map\n1 changes\n");
    }

    #[test]
    fn stats_devices_sessions_and_metrics_show_what_commands_did() {
        let sgv = SgvPool::new(SgvConfig::default());
        let (mut rt, _) = Runtime::start(conf("  LUN 0 a\n  LUN 1 b\n", ""), sgv, None).unwrap();
        let t = rt.targets()["iqn.t"].clone();
        let i = scst_local::LocalInitiator::connect(&t, "iqn.2026-12.rs.scst:stats");
        assert!(i.clear_unit_attentions(0).is_good());
        let before = rt.command("stats a", |_| unreachable!()).text;
        let cleared: u64 = before
            .lines()
            .find_map(|l| l.strip_prefix("a\tcommands="))
            .unwrap()
            .split('\t')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        // Three READ(10)s of 8 blocks and one out of range (ILLEGAL REQUEST).
        let mut buf = vec![0u8; 8 * 512];
        for k in 0..3u8 {
            assert!(i.execute(0, &[0x28, 0, 0, 0, 0, k * 8, 0, 0, 8, 0], &[], &mut buf).is_good());
        }
        let o = i.execute(0, &[0x28, 0, 0, 0x10, 0, 0, 0, 0, 8, 0], &[], &mut buf);
        assert_eq!(o.sense_code().map(|c| c.key.0), Some(5));

        let text = rt.command("stats a", |_| unreachable!()).text;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ok");
        assert_eq!(lines[1], format!("a\tcommands={}\tin_flight=0", cleared + 4), "{text}");
        assert!(lines[2].starts_with("  read\tcount=4\tp50_us="), "{text}");
        assert!(!lines[2].contains("p99_us=-"), "{text}");
        assert!(lines[3].starts_with("  write\tcount=0\tp50_us=-\tp99_us=-\tmean_us=-"), "{text}");
        assert!(lines[4].starts_with("  other\tcount="), "{text}");
        // The unit attentions the login cleared are sense key 6.
        assert_eq!(
            lines[5],
            format!("  errors\ttotal={}\tILLEGAL_REQUEST=1\tUNIT_ATTENTION={}", cleared, cleared - 1),
            "{text}"
        );
        assert_eq!(lines.len(), 6, "one device, no pool line: {text}");
        let all = rt.command("stats", |_| unreachable!()).text;
        assert!(all.contains("\nb\tcommands=0\tin_flight=0\n"), "{all}");
        assert!(all.lines().last().unwrap().starts_with("sgv\tbytes_in_use=0\t"), "{all}");
        assert_eq!(rt.command("stats nope", |_| unreachable!()).text, "error: no device nope\n");

        let devices = rt.command("devices", |_| unreachable!()).text;
        assert!(
            devices.contains(&format!(
                "\na\tvdisk_nullio\tcommands={}\tread_bytes={}\twrite_bytes=0\terrors={}\tall_errors={}\tin_flight=0\n",
                cleared + 4,
                3 * 8 * 512,
                cleared,
                cleared
            )),
            "{devices}"
        );
        let sessions = rt.command("sessions", |_| unreachable!()).text;
        let want = format!(
            "\tcompleted={}\tread_bytes={}\twrite_bytes=0\terrors={cleared}\tall_errors={cleared}\tqueue_full=0\n",
            cleared + 4,
            3 * 8 * 512
        );
        assert!(
            sessions.contains(&format!(
                "\tiqn.t\tiqn.2026-12.rs.scst:stats\tluns=2\tcommands={}\tin_flight=0{want}",
                cleared + 4
            )),
            "{sessions}"
        );

        let m = rt.metrics();
        for line in [
            format!("scst_device_commands_total{{device=\"a\"}} {}", cleared + 4),
            "scst_device_read_bytes_total{device=\"a\"} 12288".to_string(),
            "scst_device_sense_key_errors_total{device=\"a\",key=\"ILLEGAL_REQUEST\"} 1".to_string(),
            "scst_device_latency_seconds_bucket{device=\"a\",class=\"read\",le=\"+Inf\"} 4".to_string(),
            "scst_device_latency_seconds_count{device=\"a\",class=\"read\"} 4".to_string(),
            "scst_device_latency_seconds_count{device=\"b\",class=\"read\"} 0".to_string(),
            "# TYPE scst_device_latency_seconds histogram".to_string(),
            "scst_sgv_allocation_failures_total 0".to_string(),
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        // Buckets are cumulative: never decreasing, ending at the count.
        let read: Vec<u64> = m
            .lines()
            .filter(|l| l.starts_with("scst_device_latency_seconds_bucket{device=\"a\",class=\"read\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(read.len(), scst::stats::LATENCY_BUCKETS);
        assert!(read.windows(2).all(|w| w[0] <= w[1]) && read.last() == Some(&4), "{read:?}");
    }

    #[test]
    fn targets_must_share_one_port() {
        let mut c = conf("", "");
        let mut t2 = c.targets[0].clone();
        t2.name = "iqn.t2".into();
        t2.rel_tgt_id = Some(7);
        c.targets.push(t2);
        assert!(port_ids(&c).unwrap_err().contains("one portal group"));
    }

    fn srpt(c: &mut ScstConfig, name: &str, rel: Option<u16>) {
        let mut t = c.targets[0].clone();
        t.driver = Driver::Srpt;
        t.name = name.into();
        t.rel_tgt_id = rel;
        c.targets.push(t);
    }

    #[test]
    fn one_srp_port_beside_the_iscsi_port_with_its_own_relative_id() {
        let mut c = conf("  LUN 0 a\n", "");
        assert_eq!(single_port(&c, Driver::Srpt).unwrap(), None);
        srpt(&mut c, "0x0002c90300abcdef", None);
        // iSCSI's port is 1: the SRP port defaults to 2.
        assert_eq!(
            single_port(&c, Driver::Srpt).unwrap(),
            Some(SinglePort { id: 0x0002_c903_00ab_cdef, rel_tgt_id: 2, tpg: 1 })
        );
        assert_eq!(
            check_servable(&c, &[Driver::Iscsi]).unwrap_err(),
            "target 0x0002c90300abcdef: TARGET_DRIVER ib_srpt is not available here"
        );
        check_servable(&c, &[Driver::Iscsi, Driver::Srpt]).unwrap();
        // Both served targets share device a, each through its own port.
        let (rt, new) = Runtime::start(c.clone(), SgvPool::new(SgvConfig::default()), None).unwrap();
        assert_eq!(new.iter().map(|t| t.def.driver).collect::<Vec<_>>(), [Driver::Iscsi, Driver::Srpt]);
        assert!(Arc::ptr_eq(
            &rt.targets()["iqn.t"].luns()[&Lun(0)].dev,
            &rt.targets()["0x0002c90300abcdef"].luns()[&Lun(0)].dev
        ));
        let mut same = c.clone();
        same.targets[1].rel_tgt_id = Some(1);
        assert!(single_port(&same, Driver::Srpt).unwrap_err().contains("is the iSCSI port's"));
        let mut two = c.clone();
        srpt(&mut two, "0x0002c90300abcd00", Some(9));
        assert!(single_port(&two, Driver::Srpt).unwrap_err().contains("one target of this driver"));
        assert!(Runtime::start(two, SgvPool::new(SgvConfig::default()), None).is_err());
        // Disabled, the SRP target is not served (nor checked).
        let mut off = c.clone();
        off.disabled_drivers.insert(Driver::Srpt);
        assert_eq!(single_port(&off, Driver::Srpt).unwrap(), None);
        check_servable(&off, &[Driver::Iscsi]).unwrap();
    }

    #[test]
    fn srp_and_fc_ports_get_their_own_relative_ids() {
        let mut c = conf("  LUN 0 a\n", "");
        srpt(&mut c, "0x0002c90300abcdef", None);
        srpt(&mut c, "20:00:00:11:22:33:44:55", None);
        c.targets[2].driver = Driver::Fcst;
        assert_eq!(
            single_port(&c, Driver::Fcst).unwrap(),
            Some(SinglePort { id: 0x2000_0011_2233_4455, rel_tgt_id: 3, tpg: 1 })
        );
        c.targets[2].rel_tgt_id = Some(2);
        assert_eq!(
            single_port(&c, Driver::Fcst).unwrap_err(),
            "targets 0x0002c90300abcdef and 20:00:00:11:22:33:44:55 have the same rel_tgt_id 2"
        );
    }

    #[test]
    fn each_scst_local_target_is_a_port_numbered_in_file_order() {
        let mut c = conf("  LUN 0 a\n", "");
        for name in ["vm1", "vm2", "vm3"] {
            srpt(&mut c, name, None);
            c.targets.last_mut().unwrap().driver = Driver::Local;
        }
        let ids = |c: &ScstConfig| -> Vec<(String, u16)> {
            local_ports(c).unwrap().into_iter().map(|(n, p)| (n, p.rel_tgt_id)).collect()
        };
        // iSCSI's port is 1; SRP and FC would take 2 and 3; the local ones 4, 5, 6.
        assert_eq!(ids(&c), [("vm1".to_string(), 4), ("vm2".to_string(), 5), ("vm3".to_string(), 6)]);
        // Disabling one does not renumber the others.
        c.targets[2].enabled = false;
        assert_eq!(ids(&c), [("vm1".to_string(), 4), ("vm3".to_string(), 6)]);
        assert_eq!(single_port(&c, Driver::Local).unwrap().map(|p| p.rel_tgt_id), Some(4));
        c.targets[3].rel_tgt_id = Some(4);
        assert_eq!(local_ports(&c).unwrap_err(), "targets vm1 and vm3 have the same rel_tgt_id 4");
        check_servable(&c, &[Driver::Iscsi]).unwrap_err();
        // Every served target gets a core target of its own, sharing the devices.
        c.targets[3].rel_tgt_id = None;
        let (rt, new) = Runtime::start(c, SgvPool::new(SgvConfig::default()), None).unwrap();
        assert_eq!(new.iter().map(|t| t.def.name.as_str()).collect::<Vec<_>>(), ["iqn.t", "vm1", "vm3"]);
        assert!(Arc::ptr_eq(&rt.devices()["a"], &new[1].target.lun_map_for("x")[&Lun(0)].dev));
    }

    #[test]
    fn a_reload_may_add_the_srp_target_but_not_move_its_port() {
        let c = conf("  LUN 0 a\n", "");
        let (mut rt, _) = Runtime::start(c.clone(), SgvPool::new(SgvConfig::default()), None).unwrap();
        let mut with = c.clone();
        srpt(&mut with, "0x0002c90300abcdef", None);
        let Applied { added, .. } = rt.reload(with.clone()).unwrap();
        assert_eq!(
            added.iter().map(|t| (t.def.driver, t.def.name.as_str())).collect::<Vec<_>>(),
            [(Driver::Srpt, "0x0002c90300abcdef")]
        );
        let mut moved = with.clone();
        moved.targets[1].rel_tgt_id = Some(5);
        assert!(rt.reload(moved).unwrap_err().contains("ib_srpt port"));
        assert_eq!(rt.config(), &with, "the refused file changed nothing");
        // Nor can it go away (the RDMA/CM listener has no live removal).
        let mut off = with.clone();
        off.targets[1].enabled = false;
        assert_eq!(
            rt.reload(off).unwrap_err(),
            "target 0x0002c90300abcdef is gone or disabled: removing an ib_srpt target needs a restart"
        );
        assert_eq!(rt.config(), &with);
    }

    #[test]
    fn a_fileio_device_grows_live_and_sessions_see_the_capacity_change() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("f.img");
        let text = |mb: u32| {
            format!(
                "HANDLER vdisk_fileio {{\n DEVICE f {{\n  filename {}\n  size_mb {mb}\n }}\n}}\n\
                 TARGET_DRIVER iscsi {{\n TARGET iqn.t {{\n  LUN 0 f\n  enabled 1\n }}\n}}\n",
                img.display()
            )
        };
        let (mut rt, new) =
            Runtime::start(parse("t", &text(8)).unwrap(), SgvPool::new(SgvConfig::default()), None).unwrap();
        let dev = rt.devices()["f"].clone();
        assert_eq!(std::fs::metadata(&img).unwrap().len(), 8 << 20);
        let ini = scst_local::LocalInitiator::connect(&new[0].target, "iqn.i");
        ini.clear_unit_attentions(0);
        let a = rt.reload(parse("t", &text(16)).unwrap()).unwrap();
        assert_eq!(std::fs::metadata(&img).unwrap().len(), 16 << 20, "{:?}", a.log);
        assert!(Arc::ptr_eq(&dev, &rt.devices()["f"]), "the same device, not a new one");
        assert_eq!(a.log, ["device f: capacity changed (sessions see CAPACITY DATA HAS CHANGED)"]);
        assert_eq!(a.resized.len(), 1);
        assert!(Arc::ptr_eq(&a.resized[0], &dev));
        let tur = ini.execute(0, &[0; 6], &[], &mut []);
        assert_eq!(tur.sense_code(), Some(scst::SenseCode::CAPACITY_DATA_HAS_CHANGED));
        let mut cap = [0u8; 8];
        assert!(ini.execute(0, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], &mut cap).is_good());
        assert_eq!(u32::from_be_bytes(cap[..4].try_into().unwrap()), (16 << 11) - 1, "READ CAPACITY: the last LBA");
        // Shrinking would cut data under live sessions: refused, nothing changes.
        let e = rt.reload(parse("t", &text(4)).unwrap()).unwrap_err();
        assert_eq!(e, "device f: size 4194304 is below 16777216: a device only grows live");
        assert_eq!(std::fs::metadata(&img).unwrap().len(), 16 << 20);
        // A file grown outside is noticed by the next apply.
        std::fs::OpenOptions::new().write(true).open(&img).unwrap().set_len(20 << 20).unwrap();
        let a = rt.reload(parse("t", &text(16)).unwrap()).unwrap();
        assert_eq!(a.log.len(), 1, "{:?}", a.log);
    }

    #[test]
    fn iscsi_targets_may_go_away_or_change_chap_live() {
        let mut c = conf("  LUN 0 a\n", "");
        let mut second = c.targets[0].clone();
        second.name = "iqn.u".into();
        c.targets.push(second);
        let (mut rt, _) = Runtime::start(c.clone(), SgvPool::new(SgvConfig::default()), None).unwrap();
        let kept = rt.targets()["iqn.t"].clone();
        let mut next = c.clone();
        next.targets[1].enabled = false;
        next.targets[0].incoming_user = Some(("joe".into(), "secret-123456".into()));
        next.targets[0].luns.push(LunDef { lun: 1, device: "b".into(), read_only: false });
        let a = rt.reload(next.clone()).unwrap();
        assert_eq!(a.removed, ["iqn.u"]);
        assert_eq!(
            a.rechap.iter().map(|t| t.def.incoming_user.clone()).collect::<Vec<_>>(),
            [next.targets[0].incoming_user.clone()]
        );
        assert!(Arc::ptr_eq(&a.rechap[0].target, &kept), "the same core target: its sessions stay");
        assert!(a.added.is_empty());
        assert!(a.log.contains(&"target iqn.u removed (its sessions are asked to log out)".to_string()), "{:?}", a.log);
        assert_eq!(rt.targets().keys().collect::<Vec<_>>(), ["iqn.t"]);
        assert_eq!(names(&kept.luns()), [(0, "a".into(), false), (1, "b".into(), false)]);
        // A target moved to another driver is not a CHAP change: refused.
        let mut moved = next.clone();
        moved.targets[0].driver = Driver::Local;
        moved.targets[0].incoming_user = None;
        assert_eq!(
            rt.reload(moved).unwrap_err(),
            "target iqn.t moved from TARGET_DRIVER iscsi to scst_local: restart to apply"
        );
        assert_eq!(rt.config(), &next, "the refused file changed nothing");
        // Enabled again: a new target of that name.
        let a = rt.reload(c).unwrap();
        assert_eq!(a.added.iter().map(|t| t.def.name.as_str()).collect::<Vec<_>>(), ["iqn.u"]);
        assert_eq!(a.rechap.len(), 1, "CHAP back to none");
    }
}
