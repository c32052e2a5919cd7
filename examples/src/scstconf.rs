//! SCST's configuration file, `/etc/scst.conf`, in the syntax `scstadmin -write_config` writes:
//!
//! ```text
//! HANDLER vdisk_fileio {
//!     DEVICE disk01 {
//!         filename /var/lib/disk01.img
//!         thin_provisioned 1
//!     }
//! }
//! TARGET_DRIVER iscsi {
//!     enabled 1
//!     TARGET iqn.2006-10.net.vlnb:tgt {
//!         LUN 0 disk01
//!         GROUP db {
//!             LUN 0 disk01 { read_only 1 }
//!             INITIATOR iqn.1991-05.com.microsoft:*
//!         }
//!         enabled 1
//!     }
//! }
//! ```
//!
//! `TARGET_DRIVER ib_srpt { TARGET <GUID> { ... } }` names an SRP target the same way (its name is
//! the target port's GUID, `0x` and 16 hex digits, or an IB GID whose low 64 bits are the GUID,
//! as SCST's ib_srpt names its targets; no CHAP there), and `TARGET_DRIVER fcst` an FCoE target
//! (named by its WWPN), and `TARGET_DRIVER scst_local` a local target, served to a guest's
//! virtio-scsi controller on a vhost-user socket named after the target (`session_name` names
//! the initiator of its nexus).
//!
//! [`parse`] reads a whole file into a [`ScstConfig`] or fails with the first error, naming
//! `file:line:column`; nothing is half applied because nothing is applied here at all (building
//! the devices and targets is the caller's, after a successful parse). Every keyword and
//! attribute is either honoured, accepted with a warning ([`ScstConfig::warnings`]: it has no
//! effect here, and says why), or refused with an error; the table is [`KEYWORDS`].
//!
//! Syntax: `#` starts a comment; a line of words is an attribute (`name value...`), a line of
//! words ending in `{` opens a section closed by a `}`; a word may be double-quoted (`"a b"`,
//! with `\"` and `\\`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use scst::alua::AluaState;
use scst_backends::AioMode;

use crate::spec::{Backend, LunSpec, parse_size};

/// A position in the file (1-based).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Line.
    pub line: u32,
    /// Column (in characters).
    pub col: u32,
}

/// The first error of a configuration file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{}:{}: {msg}", pos.line, pos.col)]
pub struct ConfError {
    /// The file's name as given.
    pub file: String,
    /// Where.
    pub pos: Pos,
    /// What is wrong.
    pub msg: String,
}

/// One line of the file: an attribute (`body == None`) or a section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Where its first word is.
    pub pos: Pos,
    /// Its words (the keyword or attribute name first).
    pub words: Vec<String>,
    /// The items of a section.
    pub body: Option<Vec<Self>>,
}

#[derive(Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Open,
    Close,
    Eol,
}

fn lex(text: &str) -> Result<Vec<(Pos, Tok)>, (Pos, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let (mut line, mut col) = (1u32, 1u32);
    while let Some(&c) = chars.peek() {
        let pos = Pos { line, col };
        let mut bump = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let c = chars.next();
            if c == Some('\n') {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
            c
        };
        match c {
            '\n' => {
                bump(&mut chars);
                out.push((pos, Tok::Eol));
            }
            c if c.is_whitespace() => {
                bump(&mut chars);
            }
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    bump(&mut chars);
                }
            }
            '{' => {
                bump(&mut chars);
                out.push((pos, Tok::Open));
            }
            '}' => {
                bump(&mut chars);
                out.push((pos, Tok::Close));
            }
            '"' => {
                bump(&mut chars);
                let mut w = String::new();
                loop {
                    match bump(&mut chars) {
                        None | Some('\n') => return Err((pos, "unterminated quoted word".into())),
                        Some('"') => break,
                        Some('\\') => match bump(&mut chars) {
                            Some(c @ ('"' | '\\')) => w.push(c),
                            _ => return Err((pos, "only \\\" and \\\\ may be escaped in a quoted word".into())),
                        },
                        Some(c) => w.push(c),
                    }
                }
                out.push((pos, Tok::Word(w)));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '{' | '}' | '#' | '"') {
                        break;
                    }
                    w.push(c);
                    bump(&mut chars);
                }
                out.push((pos, Tok::Word(w)));
            }
        }
    }
    Ok(out)
}

/// Parses the syntax of a file into its items, without interpreting any keyword.
///
/// # Errors
/// The position and a description of the first syntax error.
pub fn parse_items(text: &str) -> Result<Vec<Item>, (Pos, String)> {
    let toks = lex(text)?;
    let mut it = toks.into_iter().peekable();
    let items = items(&mut it, None)?;
    Ok(items)
}

fn items(
    it: &mut std::iter::Peekable<std::vec::IntoIter<(Pos, Tok)>>,
    open: Option<Pos>,
) -> Result<Vec<Item>, (Pos, String)> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut first = Pos::default();
    loop {
        let Some((pos, tok)) = it.next() else {
            if let Some(o) = open {
                return Err((o, "section not closed (missing '}')".into()));
            }
            if !words.is_empty() {
                out.push(Item { pos: first, words, body: None });
            }
            return Ok(out);
        };
        match tok {
            Tok::Word(w) => {
                if words.is_empty() {
                    first = pos;
                }
                words.push(w);
            }
            Tok::Eol => {
                if !words.is_empty() {
                    out.push(Item { pos: first, words: std::mem::take(&mut words), body: None });
                }
            }
            Tok::Open => {
                if words.is_empty() {
                    return Err((pos, "'{' without a keyword before it".into()));
                }
                let body = items(it, Some(first))?;
                out.push(Item { pos: first, words: std::mem::take(&mut words), body: Some(body) });
                match it.peek() {
                    None | Some((_, Tok::Eol | Tok::Close)) => {}
                    Some((p, _)) => return Err((*p, "nothing may follow '}' on its line".into())),
                }
            }
            Tok::Close => {
                if open.is_none() {
                    return Err((pos, "'}' without a section to close".into()));
                }
                if !words.is_empty() {
                    out.push(Item { pos: first, words, body: None });
                }
                return Ok(out);
            }
        }
    }
}

/// How this implementation treats a keyword or attribute of scst.conf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// It does what SCST does with it.
    Honoured,
    /// Accepted, without effect here (a warning says so).
    Ignored,
}

/// Every keyword and attribute accepted, where it may appear, whether it is honoured, and what
/// it does (or why it is ignored). Anything not in this table is refused with an error.
pub const KEYWORDS: &[(&str, &str, Support, &str)] = &[
    (
        "HANDLER",
        "top level",
        Support::Honoured,
        "vdisk_fileio, vdisk_blockio, vdisk_nullio, vdisk_rbd (scst-rs only: a Ceph RBD image, in builds with the rbd feature), and the pass-through dev_disk, dev_tape, dev_changer, dev_cdrom, dev_modisk, dev_processor (and _perf); others are refused",
    ),
    (
        "DEVICE H:C:I:L",
        "dev_* HANDLER",
        Support::Honoured,
        "a local SCSI device through its SCSI generic node (sg:/dev/sgN); no attributes",
    ),
    ("DEVICE", "HANDLER", Support::Honoured, "a device, by a unique name"),
    ("filename", "vdisk_fileio, vdisk_blockio DEVICE", Support::Honoured, "the file or block device (required)"),
    (
        "size",
        "vdisk_fileio, vdisk_nullio DEVICE",
        Support::Honoured,
        "size in bytes (K/M/G/T suffixes too); a missing file is created with it; a larger size on reload grows a FILEIO file live",
    ),
    ("size_mb", "vdisk_fileio, vdisk_nullio DEVICE", Support::Honoured, "size in MiB (as size)"),
    ("blocksize", "vdisk_fileio, vdisk_nullio, vdisk_rbd DEVICE", Support::Honoured, "512 or 4096"),
    ("pool", "vdisk_rbd DEVICE", Support::Honoured, "the RADOS pool of the image (required)"),
    (
        "image",
        "vdisk_rbd DEVICE",
        Support::Honoured,
        "the RBD image (required; it must exist); a resize shows at once (CAPACITY DATA HAS CHANGED)",
    ),
    ("conf", "vdisk_rbd DEVICE", Support::Honoured, "the cluster's ceph.conf (default: librados' search)"),
    ("id", "vdisk_rbd DEVICE", Support::Honoured, "the Ceph client id (default admin)"),
    ("read_only", "DEVICE; LUN", Support::Honoured, "write-protected device, or a read-only mapping"),
    ("removable", "DEVICE", Support::Honoured, "RMB=1 (PREVENT ALLOW MEDIUM REMOVAL, START STOP UNIT LOEJ)"),
    (
        "thin_provisioned",
        "vdisk_fileio, vdisk_blockio DEVICE",
        Support::Honoured,
        "sparse file or discard: UNMAP, WRITE SAME UNMAP, GET LBA STATUS",
    ),
    (
        "write_through",
        "vdisk_fileio DEVICE",
        Support::Honoured,
        "every write reaches stable storage before GOOD (WCE=0)",
    ),
    ("o_direct", "vdisk_fileio DEVICE", Support::Honoured, "O_DIRECT on the file"),
    (
        "zero_copy",
        "vdisk_fileio DEVICE",
        Support::Honoured,
        "0: READs always copy (no sendfile from the page cache; scst-rs only)",
    ),
    ("nv_cache", "DEVICE", Support::Ignored, "SYNCHRONIZE CACHE and FUA always reach the store here"),
    ("rotational", "DEVICE", Support::Ignored, "the medium rotation rate comes from the store"),
    ("t10_vend_id", "DEVICE", Support::Ignored, "INQUIRY data is fixed"),
    ("t10_dev_id", "DEVICE", Support::Ignored, "identifiers derive from the device name"),
    ("prod_id", "DEVICE", Support::Ignored, "INQUIRY data is fixed"),
    ("usn", "DEVICE", Support::Ignored, "the serial number derives from the device name"),
    ("naa_id", "DEVICE", Support::Ignored, "the NAA designator derives from the device name"),
    ("eui64_id", "DEVICE", Support::Ignored, "the NAA designator derives from the device name"),
    ("threads_num", "DEVICE", Support::Ignored, "worker threads are sized by the core"),
    ("threads_pool_type", "DEVICE", Support::Ignored, "worker threads are sized by the core"),
    ("dummy", "vdisk_nullio DEVICE", Support::Ignored, "NULLIO always answers"),
    (
        "TARGET_DRIVER",
        "top level",
        Support::Honoured,
        "iscsi, ib_srpt (SRP over RDMA/CM), fcst (FCoE VN2VN), scst_local (a vhost-user-scsi socket); other drivers are refused",
    ),
    ("enabled", "TARGET_DRIVER; TARGET", Support::Honoured, "0: not served"),
    ("iSNSServer", "TARGET_DRIVER iscsi", Support::Ignored, "no iSNS client"),
    (
        "TARGET",
        "TARGET_DRIVER; TARGET_GROUP",
        Support::Honoured,
        "an iSCSI target by name, an ib_srpt target by its port GUID or GID, an fcst target by its WWPN, an scst_local target by a name that is also its socket's file name; in a TARGET_GROUP, a member port",
    ),
    (
        "session_name",
        "TARGET (scst_local)",
        Support::Honoured,
        "the initiator name of the local nexus (what GROUP INITIATOR patterns match); default vhost-user-scsi:SOCKET",
    ),
    (
        "rel_tgt_id",
        "TARGET",
        Support::Honoured,
        "relative target port id (iSCSI: also the portal group tag; default for ib_srpt iSCSI's + 1, fcst + 2)",
    ),
    ("IncomingUser", "TARGET", Support::Honoured, "\"USER SECRET\": CHAP required (one user; iSCSI only)"),
    ("OutgoingUser", "TARGET", Support::Honoured, "\"USER SECRET\": mutual CHAP (iSCSI only)"),
    ("LUN", "TARGET; GROUP", Support::Honoured, "LUN N DEVICE [{ read_only 1 }]"),
    ("GROUP", "TARGET", Support::Honoured, "a security group: its LUN map and INITIATOR patterns"),
    ("INITIATOR", "GROUP", Support::Honoured, "a name pattern (*, ?, leading !)"),
    ("HeaderDigest", "TARGET", Support::Ignored, "the initiator's offer is answered per RFC 7143 (None and CRC32C)"),
    ("DataDigest", "TARGET", Support::Ignored, "the initiator's offer is answered per RFC 7143 (None and CRC32C)"),
    ("MaxRecvDataSegmentLength", "TARGET", Support::Ignored, "negotiated with built-in limits"),
    ("MaxXmitDataSegmentLength", "TARGET", Support::Ignored, "negotiated with built-in limits"),
    ("FirstBurstLength", "TARGET", Support::Ignored, "negotiated with built-in limits"),
    ("MaxBurstLength", "TARGET", Support::Ignored, "negotiated with built-in limits"),
    ("InitialR2T", "TARGET", Support::Ignored, "negotiated with built-in limits"),
    ("ImmediateData", "TARGET", Support::Ignored, "negotiated with built-in limits"),
    ("MaxOutstandingR2T", "TARGET", Support::Ignored, "negotiated with built-in limits"),
    ("QueuedCommands", "TARGET", Support::Ignored, "the command window is built in"),
    ("NopInInterval", "TARGET", Support::Ignored, "set for the whole server (scst-target --nop-interval)"),
    ("NopInTimeout", "TARGET", Support::Ignored, "set for the whole server (scst-target --nop-timeout)"),
    ("RspTimeout", "TARGET", Support::Ignored, "no response timeout"),
    ("MaxSessions", "TARGET", Support::Ignored, "no session limit"),
    ("per_portal_acl", "TARGET", Support::Ignored, "ACLs are per target"),
    ("allowed_portal", "TARGET", Support::Ignored, "every portal serves every target"),
    ("addr_method", "TARGET; GROUP", Support::Ignored, "LUNs use the peripheral/flat addressing SAM-5 gives"),
    ("io_grouping_type", "TARGET; GROUP", Support::Ignored, "no I/O grouping"),
    ("cpu_mask", "TARGET; GROUP", Support::Ignored, "no CPU pinning"),
    ("DEVICE_GROUP", "top level", Support::Honoured, "ALUA: the devices a set of target port groups serves"),
    ("DEVICE", "DEVICE_GROUP", Support::Honoured, "a member device"),
    ("TARGET_GROUP", "DEVICE_GROUP", Support::Honoured, "a target port group"),
    ("group_id", "TARGET_GROUP", Support::Honoured, "its identifier (1-65535, required)"),
    ("state", "TARGET_GROUP", Support::Honoured, "active, nonoptimized, standby, unavailable, offline, transitioning"),
    ("preferred", "TARGET_GROUP", Support::Honoured, "PREF bit"),
];

/// A device of a `HANDLER` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceDef {
    /// Its name (unique in the file).
    pub name: String,
    /// The handler (`vdisk_fileio`, ...).
    pub handler: String,
    /// What to build (its `lun` field is 0: the LUN comes from each mapping).
    pub spec: LunSpec,
    /// Where it is defined.
    pub pos: Pos,
}

/// A `LUN N DEVICE` mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LunDef {
    /// The LUN.
    pub lun: u16,
    /// The device's name.
    pub device: String,
    /// Read-only in this map.
    pub read_only: bool,
}

/// A security group of a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDef {
    /// Its name.
    pub name: String,
    /// Its LUN map.
    pub luns: Vec<LunDef>,
    /// Initiator name patterns.
    pub initiators: Vec<String>,
}

/// The target drivers (fabrics) a file may name, by SCST's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Driver {
    /// `TARGET_DRIVER iscsi`.
    Iscsi,
    /// `TARGET_DRIVER ib_srpt`: SRP over RDMA.
    Srpt,
    /// `TARGET_DRIVER fcst`: Fibre Channel over Ethernet.
    Fcst,
    /// `TARGET_DRIVER scst_local`: a local initiator; here a guest's virtio-scsi controller
    /// through a vhost-user socket.
    Local,
}

impl Driver {
    /// SCST's name of the driver.
    pub fn name(self) -> &'static str {
        match self {
            Self::Iscsi => "iscsi",
            Self::Srpt => "ib_srpt",
            Self::Fcst => "fcst",
            Self::Local => "scst_local",
        }
    }

    /// Every driver, in the order a written file lists them.
    pub const ALL: [Self; 4] = [Self::Iscsi, Self::Srpt, Self::Fcst, Self::Local];

    fn from_name(n: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == n)
    }

    /// The port identifier a target name of this driver gives (its 64-bit GUID or WWPN), or
    /// `None` when the name is not one; iSCSI and scst_local names are free-form (`None`).
    pub fn port_id(self, name: &str) -> Option<u64> {
        match self {
            Self::Iscsi | Self::Local => None,
            Self::Srpt => srpt_guid(name),
            Self::Fcst => scst_transport_fc::parse_wwn(name),
        }
    }
}

/// The GUID an `ib_srpt` target's name gives: `0x` and 16 hex digits, 16 hex digits, or a GID
/// (eight groups of four hex digits; the low 64 bits are the port GUID).
pub fn srpt_guid(name: &str) -> Option<u64> {
    let hex = |h: &str| {
        (h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit())).then(|| u64::from_str_radix(h, 16).ok())?
    };
    if let Some(h) = name.strip_prefix("0x") {
        return hex(h);
    }
    let groups: Vec<&str> = name.split(':').collect();
    match groups.len() {
        1 => hex(name),
        8 if groups.iter().all(|g| g.len() == 4) => hex(&groups[4..].concat()),
        _ => None,
    }
}

/// A target of a `TARGET_DRIVER` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetDef {
    /// Its name: the iSCSI name, or for `ib_srpt` the port GUID ([`srpt_guid`]).
    pub name: String,
    /// The section it is in.
    pub driver: Driver,
    /// `enabled` (SCST's default for a target is 0; scstadmin writes `enabled 1`).
    pub enabled: bool,
    /// `rel_tgt_id`, if given.
    pub rel_tgt_id: Option<u16>,
    /// The default LUN map.
    pub luns: Vec<LunDef>,
    /// Security groups, in file order.
    pub groups: Vec<GroupDef>,
    /// `IncomingUser`: (user, secret).
    pub incoming_user: Option<(String, String)>,
    /// `OutgoingUser`: (user, secret).
    pub outgoing_user: Option<(String, String)>,
    /// `session_name` (scst_local): the initiator name of the local nexus.
    pub session_name: Option<String>,
    /// Where it is defined.
    pub pos: Pos,
}

/// A target port group of a `DEVICE_GROUP`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetGroupDef {
    /// Its name.
    pub name: String,
    /// `group_id`.
    pub group_id: u16,
    /// `state`.
    pub state: AluaState,
    /// `preferred`.
    pub preferred: bool,
    /// Member ports: target name and `rel_tgt_id` if given there.
    pub targets: Vec<(String, Option<u16>)>,
}

/// An ALUA device group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceGroupDef {
    /// Its name.
    pub name: String,
    /// Member devices.
    pub devices: Vec<String>,
    /// Its target port groups.
    pub target_groups: Vec<TargetGroupDef>,
}

/// A parsed and checked scst.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScstConfig {
    /// Devices, in file order.
    pub devices: Vec<DeviceDef>,
    /// The drivers whose section says `enabled 0` (which turns every target of theirs off).
    pub disabled_drivers: BTreeSet<Driver>,
    /// Targets of every driver, in file order.
    pub targets: Vec<TargetDef>,
    /// ALUA device groups.
    pub device_groups: Vec<DeviceGroupDef>,
    /// `file:line:column: ...` for every accepted but ignored attribute.
    pub warnings: Vec<String>,
}

impl ScstConfig {
    /// Whether a driver's section is enabled (a missing section is).
    pub fn driver_enabled(&self, d: Driver) -> bool {
        !self.disabled_drivers.contains(&d)
    }

    /// The targets to serve: `enabled 1`, in an enabled driver.
    pub fn served(&self) -> impl Iterator<Item = &TargetDef> {
        self.targets.iter().filter(|t| t.enabled && self.driver_enabled(t.driver))
    }
}

struct Ctx<'a> {
    file: &'a str,
    warnings: Vec<String>,
    /// Where sysfs is (`/sys`; a test's fake tree).
    sys: PathBuf,
}

impl Ctx<'_> {
    fn err(&self, pos: Pos, msg: impl Into<String>) -> ConfError {
        ConfError { file: self.file.to_string(), pos, msg: msg.into() }
    }

    fn ignored(&mut self, it: &Item, section: &str) {
        let why =
            KEYWORDS.iter().find(|k| k.0 == it.words[0] && k.2 == Support::Ignored).map_or("no effect here", |k| k.3);
        self.warnings
            .push(format!("{}:{}:{}: {} in {section} ignored: {why}", self.file, it.pos.line, it.pos.col, it.words[0]));
    }

    fn is_ignored(name: &str, place: &str) -> bool {
        KEYWORDS.iter().any(|k| k.0 == name && k.2 == Support::Ignored && k.1.contains(place))
    }

    /// The one value of an attribute.
    fn value<'i>(&self, it: &'i Item) -> Result<&'i str, ConfError> {
        if it.body.is_some() {
            return Err(self.err(it.pos, format!("{} is an attribute, not a section", it.words[0])));
        }
        match it.words.as_slice() {
            [_, v] => Ok(v),
            _ => Err(self.err(it.pos, format!("{} takes one value", it.words[0]))),
        }
    }

    fn flag(&self, it: &Item) -> Result<bool, ConfError> {
        match self.value(it)? {
            "0" => Ok(false),
            "1" => Ok(true),
            v => Err(self.err(it.pos, format!("{}: expected 0 or 1, not {v:?}", it.words[0]))),
        }
    }

    fn number<T: std::str::FromStr>(&self, it: &Item, what: &str) -> Result<T, ConfError> {
        let v = self.value(it)?;
        v.parse().map_err(|_| self.err(it.pos, format!("{}: expected {what}, not {v:?}", it.words[0])))
    }
}

/// Parses and checks a whole scst.conf; `file` names it in errors and warnings.
///
/// # Errors
/// The first syntax or meaning error, with its position.
pub fn parse(file: &str, text: &str) -> Result<ScstConfig, ConfError> {
    parse_with_sysfs(file, text, std::path::Path::new("/sys"))
}

/// [`parse`], resolving pass-through devices (H:C:I:L) in the sysfs tree at `sys`.
///
/// # Errors
/// The first syntax or meaning error, with its position.
pub fn parse_with_sysfs(file: &str, text: &str, sys: &std::path::Path) -> Result<ScstConfig, ConfError> {
    let mut cx = Ctx { file, warnings: Vec::new(), sys: sys.to_path_buf() };
    let items = parse_items(text).map_err(|(pos, msg)| cx.err(pos, msg))?;
    let mut cfg = ScstConfig::default();
    let mut seen = BTreeSet::new();
    for it in &items {
        let Some(body) = &it.body else {
            return Err(cx.err(it.pos, format!("unknown top-level attribute {:?}", it.words[0])));
        };
        match (it.words[0].as_str(), it.words.len()) {
            ("HANDLER", 2) => handler(&mut cx, &it.words[1], body, &mut cfg)?,
            ("TARGET_DRIVER", 2) => {
                let Some(d) = Driver::from_name(&it.words[1]) else {
                    return Err(cx.err(
                        it.pos,
                        format!(
                            "target driver {:?} is not served by scst-target (only iscsi, ib_srpt, fcst and scst_local)",
                            it.words[1]
                        ),
                    ));
                };
                if !seen.insert(d) {
                    return Err(cx.err(it.pos, format!("TARGET_DRIVER {} given twice", d.name())));
                }
                driver(&mut cx, d, body, &mut cfg)?;
            }
            ("DEVICE_GROUP", 2) => device_group(&mut cx, &it.words[1], body, &mut cfg)?,
            ("HANDLER" | "TARGET_DRIVER" | "DEVICE_GROUP", _) => {
                return Err(cx.err(it.pos, format!("{} takes one name", it.words[0])));
            }
            (k, _) => return Err(cx.err(it.pos, format!("unknown section {k:?}"))),
        }
    }
    check(&cx, &cfg)?;
    cfg.warnings = cx.warnings;
    Ok(cfg)
}

/// SCST's pass-through handlers: their devices are named by the SCSI address H:C:I:L of a
/// local SCSI device, served through its SCSI generic node.
pub const PASS_THROUGH_HANDLERS: &[&str] = &[
    "dev_disk",
    "dev_disk_perf",
    "dev_tape",
    "dev_tape_perf",
    "dev_changer",
    "dev_cdrom",
    "dev_modisk",
    "dev_processor",
];

/// The SCSI generic node of the local SCSI device at `hctl` (H:C:I:L), as sysfs under `sys`
/// (`/sys`) shows it.
///
/// # Errors
/// If there is no such device or it has no SCSI generic node.
pub fn sg_node_of(sys: &std::path::Path, hctl: &str) -> Result<PathBuf, String> {
    let parts: Vec<&str> = hctl.split(':').collect();
    if parts.len() != 4 || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("a pass-through device is named H:C:I:L, not {hctl:?}"));
    }
    let dir = sys.join("class/scsi_device").join(hctl).join("device/scsi_generic");
    let node = std::fs::read_dir(&dir)
        .map_err(|e| format!("no SCSI device {hctl} ({}: {e})", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("sg"))
        .ok_or_else(|| format!("SCSI device {hctl} has no SCSI generic node (modprobe sg)"))?;
    Ok(PathBuf::from("/dev").join(node))
}

fn pass_through_device(cx: &Ctx<'_>, name: &str, it: &Item, cfg: &mut ScstConfig) -> Result<(), ConfError> {
    let [k, hctl] = it.words.as_slice() else {
        return Err(cx.err(it.pos, format!("expected DEVICE H:C:I:L in HANDLER {name}")));
    };
    if k != "DEVICE" {
        return Err(cx.err(it.pos, format!("unknown entry {k:?} in HANDLER {name}")));
    }
    if let Some(a) = it.body.iter().flatten().next() {
        return Err(cx.err(a.pos, format!("attribute {:?} is not supported for a {name} device", a.words[0])));
    }
    if cfg.devices.iter().any(|d| d.name == *hctl) {
        return Err(cx.err(it.pos, format!("device {hctl:?} defined twice")));
    }
    let node = sg_node_of(&cx.sys, hctl).map_err(|e| cx.err(it.pos, e))?;
    let spec = LunSpec::parse_spec(0, &format!("sg:{}", node.display())).map_err(|e| cx.err(it.pos, e.to_string()))?;
    cfg.devices.push(DeviceDef { name: hctl.clone(), handler: name.to_string(), spec, pos: it.pos });
    Ok(())
}

fn handler(cx: &mut Ctx<'_>, name: &str, body: &[Item], cfg: &mut ScstConfig) -> Result<(), ConfError> {
    let kind = match name {
        "vdisk_fileio" => "fileio",
        "vdisk_blockio" => "blockio",
        "vdisk_nullio" => "nullio",
        "vdisk_rbd" => "rbd",
        n if PASS_THROUGH_HANDLERS.contains(&n) => {
            for it in body {
                pass_through_device(cx, name, it, cfg)?;
            }
            return Ok(());
        }
        _ => {
            let pos = body.first().map_or(Pos::default(), |i| i.pos);
            return Err(cx.err(
                pos,
                format!(
                    "handler {name:?} is not supported (vdisk_fileio, vdisk_blockio, vdisk_nullio, vdisk_rbd, dev_disk, \
                     dev_tape, ...)"
                ),
            ));
        }
    };
    for it in body {
        match (&it.body, it.words.as_slice()) {
            (Some(attrs), [k, dev]) if k == "DEVICE" => {
                if cfg.devices.iter().any(|d| d.name == *dev) {
                    return Err(cx.err(it.pos, format!("device {dev:?} defined twice")));
                }
                let spec = device(cx, kind, attrs, it.pos)?;
                cfg.devices.push(DeviceDef { name: dev.clone(), handler: name.to_string(), spec, pos: it.pos });
            }
            (None, [k, _]) if k == "DEVICE" => return Err(cx.err(it.pos, "DEVICE needs a { ... } section")),
            _ => return Err(cx.err(it.pos, format!("unknown entry {:?} in HANDLER {name}", it.words[0]))),
        }
    }
    Ok(())
}

fn device(cx: &mut Ctx<'_>, kind: &'static str, attrs: &[Item], pos: Pos) -> Result<LunSpec, ConfError> {
    let mut spec = LunSpec {
        lun: 0,
        backend: Backend::Ram { size: 0 },
        block_size: 512,
        read_only: false,
        removable: false,
        sanitize_rate: None,
        groups: Vec::new(),
    };
    let (mut filename, mut size, mut thin, mut wt, mut direct) = (None::<PathBuf>, None::<u64>, false, false, false);
    let mut zerocopy = true;
    let (mut pool, mut image, mut conf, mut id) = (None::<String>, None::<String>, None::<PathBuf>, None::<String>);
    let mut seen = BTreeSet::new();
    for it in attrs {
        let k = it.words[0].as_str();
        if !seen.insert(k) {
            return Err(cx.err(it.pos, format!("{k} given twice")));
        }
        match (k, kind) {
            ("filename", "fileio" | "blockio") => filename = Some(cx.value(it)?.into()),
            ("size", "fileio" | "nullio") => {
                let v = cx.value(it)?;
                size = Some(parse_size(v).map_err(|e| cx.err(it.pos, e.to_string()))?);
            }
            ("size_mb", "fileio" | "nullio") => {
                let mb: u64 = cx.number(it, "a number of MiB")?;
                size = Some(
                    mb.checked_mul(1 << 20).filter(|s| *s > 0).ok_or_else(|| cx.err(it.pos, "size_mb out of range"))?,
                );
            }
            ("pool", "rbd") => pool = Some(cx.value(it)?.to_string()),
            ("image", "rbd") => image = Some(cx.value(it)?.to_string()),
            ("conf", "rbd") => conf = Some(cx.value(it)?.into()),
            ("id", "rbd") => id = Some(cx.value(it)?.to_string()),
            ("blocksize", "fileio" | "nullio" | "rbd") => {
                spec.block_size = match cx.value(it)? {
                    "512" => 512,
                    "4096" => 4096,
                    v => return Err(cx.err(it.pos, format!("blocksize: 512 or 4096, not {v:?}"))),
                }
            }
            ("read_only", _) => spec.read_only = cx.flag(it)?,
            ("removable", _) => spec.removable = cx.flag(it)?,
            ("thin_provisioned", "fileio" | "blockio") => thin = cx.flag(it)?,
            ("write_through", "fileio") => wt = cx.flag(it)?,
            ("o_direct", "fileio") => direct = cx.flag(it)?,
            ("zero_copy", "fileio") => zerocopy = cx.flag(it)?,
            ("dummy", "nullio") => cx.ignored(it, "vdisk_nullio DEVICE"),
            (k, _) if k != "dummy" && Ctx::is_ignored(k, "DEVICE") => {
                cx.value(it)?;
                cx.ignored(it, "DEVICE");
            }
            (k, _) => return Err(cx.err(it.pos, format!("attribute {k:?} is not supported for a vdisk_{kind} device"))),
        }
    }
    spec.backend = match kind {
        "fileio" => Backend::Fileio {
            path: filename.ok_or_else(|| cx.err(pos, "a vdisk_fileio device needs filename"))?,
            size,
            thin,
            write_through: wt,
            direct,
            physical_block_size: 0,
            zerocopy,
            aio: AioMode::Auto,
        },
        "blockio" => Backend::Blockio {
            path: filename.ok_or_else(|| cx.err(pos, "a vdisk_blockio device needs filename"))?,
            thin,
            aio: AioMode::Auto,
        },
        "rbd" => {
            let name = |v: Option<String>, what: &str| {
                v.filter(|v| !v.is_empty() && !v.contains('/'))
                    .ok_or_else(|| cx.err(pos, format!("a vdisk_rbd device needs {what} (a name without '/')")))
            };
            Backend::Rbd { pool: name(pool, "pool")?, image: name(image, "image")?, conf, id }
        }
        _ => Backend::Nullio { size: size.ok_or_else(|| cx.err(pos, "a vdisk_nullio device needs size or size_mb"))? },
    };
    Ok(spec)
}

fn driver(cx: &mut Ctx<'_>, d: Driver, body: &[Item], cfg: &mut ScstConfig) -> Result<(), ConfError> {
    for it in body {
        match (&it.body, it.words[0].as_str()) {
            (None, "enabled") => {
                if cx.flag(it)? {
                    cfg.disabled_drivers.remove(&d);
                } else {
                    cfg.disabled_drivers.insert(d);
                }
            }
            (None, "iSNSServer") if d == Driver::Iscsi => cx.ignored(it, "TARGET_DRIVER iscsi"),
            (Some(b), "TARGET") if it.words.len() == 2 => {
                let name = &it.words[1];
                if cfg.targets.iter().any(|t| t.name == *name) {
                    return Err(cx.err(it.pos, format!("target {name:?} defined twice")));
                }
                if d == Driver::Srpt && srpt_guid(name).is_none() {
                    return Err(cx.err(
                        it.pos,
                        format!("ib_srpt target {name:?}: expected the port GUID (0x and 16 hex digits) or a GID"),
                    ));
                }
                if d == Driver::Fcst && d.port_id(name).is_none() {
                    return Err(cx.err(
                        it.pos,
                        format!("fcst target {name:?}: expected the port's WWPN (20:00:00:11:22:33:44:55 or 0x...)"),
                    ));
                }
                if d == Driver::Local && !local_name_ok(name) {
                    return Err(cx.err(
                        it.pos,
                        format!(
                            "scst_local target {name:?}: its name is its socket's file name (letters, digits, '.', '_', '-', ':'; not starting with '.')"
                        ),
                    ));
                }
                let t = target(cx, d, name, b, it.pos)?;
                cfg.targets.push(t);
            }
            (None, "TARGET") => return Err(cx.err(it.pos, "TARGET needs a name and a { ... } section")),
            (_, k) => return Err(cx.err(it.pos, format!("unknown entry {k:?} in TARGET_DRIVER {}", d.name()))),
        }
    }
    Ok(())
}

/// Whether an `scst_local` target's name can be a file name of its own in a directory.
fn local_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

fn lun(cx: &Ctx<'_>, it: &Item) -> Result<LunDef, ConfError> {
    let [_, n, dev] = it.words.as_slice() else {
        return Err(cx.err(it.pos, "expected LUN N DEVICE"));
    };
    let lun = n
        .parse::<u16>()
        .ok()
        .filter(|l| *l <= scst::Lun::MAX)
        .ok_or_else(|| cx.err(it.pos, format!("LUN {n:?}: expected 0..={}", scst::Lun::MAX)))?;
    let mut read_only = false;
    for a in it.body.iter().flatten() {
        match a.words[0].as_str() {
            "read_only" => read_only = cx.flag(a)?,
            k => return Err(cx.err(a.pos, format!("attribute {k:?} is not supported for a LUN"))),
        }
    }
    Ok(LunDef { lun, device: dev.clone(), read_only })
}

fn user(cx: &Ctx<'_>, it: &Item) -> Result<(String, String), ConfError> {
    // scstadmin writes `IncomingUser "joe secret"`; two separate words are accepted too.
    let parts: Vec<&str> = it.words[1..].iter().flat_map(|w| w.split_whitespace()).collect();
    match parts.as_slice() {
        [u, s] => Ok((u.to_string(), s.to_string())),
        _ => Err(cx.err(it.pos, format!("{} takes \"USER SECRET\"", it.words[0]))),
    }
}

fn target(cx: &mut Ctx<'_>, d: Driver, name: &str, body: &[Item], pos: Pos) -> Result<TargetDef, ConfError> {
    let mut t = TargetDef {
        name: name.to_string(),
        driver: d,
        enabled: false,
        rel_tgt_id: None,
        luns: Vec::new(),
        groups: Vec::new(),
        incoming_user: None,
        outgoing_user: None,
        session_name: None,
        pos,
    };
    for it in body {
        match (&it.body, it.words[0].as_str()) {
            (_, "LUN") => t.luns.push(lun(cx, it)?),
            (None, "enabled") => t.enabled = cx.flag(it)?,
            (None, "rel_tgt_id") => {
                let id: u16 = cx.number(it, "1..65535")?;
                if id == 0 {
                    return Err(cx.err(it.pos, "rel_tgt_id: expected 1..65535"));
                }
                t.rel_tgt_id = Some(id);
            }
            (None, "IncomingUser" | "OutgoingUser") if d != Driver::Iscsi => {
                return Err(
                    cx.err(it.pos, format!("{} is iSCSI's (CHAP); {} has no login secret", it.words[0], d.name()))
                );
            }
            (None, "IncomingUser") => {
                if t.incoming_user.is_some() {
                    return Err(cx.err(it.pos, "only one IncomingUser per target is supported"));
                }
                t.incoming_user = Some(user(cx, it)?);
            }
            (None, "OutgoingUser") => t.outgoing_user = Some(user(cx, it)?),
            (None, "session_name") if d == Driver::Local => t.session_name = Some(cx.value(it)?.to_string()),
            (Some(b), "GROUP") if it.words.len() == 2 => {
                let g = group(cx, &it.words[1], b)?;
                if t.groups.iter().any(|x| x.name == g.name) {
                    return Err(cx.err(it.pos, format!("group {:?} defined twice", g.name)));
                }
                t.groups.push(g);
            }
            (None, k) if Ctx::is_ignored(k, "TARGET") => cx.ignored(it, "TARGET"),
            (_, k) => return Err(cx.err(it.pos, format!("unknown entry {k:?} in TARGET {name}"))),
        }
    }
    if t.outgoing_user.is_some() && t.incoming_user.is_none() {
        return Err(cx.err(pos, "OutgoingUser (mutual CHAP) needs IncomingUser"));
    }
    Ok(t)
}

fn group(cx: &mut Ctx<'_>, name: &str, body: &[Item]) -> Result<GroupDef, ConfError> {
    let mut g = GroupDef { name: name.to_string(), luns: Vec::new(), initiators: Vec::new() };
    for it in body {
        match (&it.body, it.words[0].as_str()) {
            (_, "LUN") => g.luns.push(lun(cx, it)?),
            (None, "INITIATOR") => {
                let p = cx.value(it)?;
                scst::acl::NamePatterns::new([p]).map_err(|e| cx.err(it.pos, format!("INITIATOR {p:?}: {e}")))?;
                g.initiators.push(p.to_string());
            }
            (None, k) if Ctx::is_ignored(k, "GROUP") => cx.ignored(it, "GROUP"),
            (_, k) => return Err(cx.err(it.pos, format!("unknown entry {k:?} in GROUP {name}"))),
        }
    }
    Ok(g)
}

fn device_group(cx: &mut Ctx<'_>, name: &str, body: &[Item], cfg: &mut ScstConfig) -> Result<(), ConfError> {
    let mut dg = DeviceGroupDef { name: name.to_string(), devices: Vec::new(), target_groups: Vec::new() };
    for it in body {
        match (&it.body, it.words.as_slice()) {
            (None, [k, d]) if k == "DEVICE" => dg.devices.push(d.clone()),
            (Some(b), [k, tg]) if k == "TARGET_GROUP" => {
                let mut g = TargetGroupDef {
                    name: tg.clone(),
                    group_id: 0,
                    state: AluaState::ActiveOptimized,
                    preferred: false,
                    targets: Vec::new(),
                };
                for a in b {
                    match (&a.body, a.words.as_slice()) {
                        (None, [k, _]) if k == "group_id" => g.group_id = cx.number(a, "1..65535")?,
                        (None, [k, s]) if k == "state" => g.state = match s.as_str() {
                            "active" => AluaState::ActiveOptimized,
                            "nonoptimized" => AluaState::ActiveNonOptimized,
                            "standby" => AluaState::Standby,
                            "unavailable" => AluaState::Unavailable,
                            "offline" => AluaState::Offline,
                            "transitioning" => AluaState::Transitioning,
                            _ => return Err(cx.err(
                                a.pos,
                                format!(
                                    "state {s:?}: active, nonoptimized, standby, unavailable, offline or transitioning"
                                ),
                            )),
                        },
                        (None, [k, _]) if k == "preferred" => g.preferred = cx.flag(a)?,
                        (body, [k, t]) if k == "TARGET" => {
                            let mut rel = None;
                            for r in body.iter().flatten() {
                                match r.words[0].as_str() {
                                    "rel_tgt_id" => rel = Some(cx.number(r, "1..65535")?),
                                    k => {
                                        return Err(
                                            cx.err(r.pos, format!("unknown entry {k:?} in a TARGET_GROUP's TARGET"))
                                        );
                                    }
                                }
                            }
                            g.targets.push((t.clone(), rel));
                        }
                        _ => return Err(cx.err(a.pos, format!("unknown entry {:?} in TARGET_GROUP {tg}", a.words[0]))),
                    }
                }
                if g.group_id == 0 {
                    return Err(cx.err(it.pos, format!("TARGET_GROUP {tg} needs group_id 1..65535")));
                }
                dg.target_groups.push(g);
            }
            _ => return Err(cx.err(it.pos, format!("unknown entry {:?} in DEVICE_GROUP {name}", it.words[0]))),
        }
    }
    cfg.device_groups.push(dg);
    Ok(())
}

/// Cross-references: mapped devices exist, LUNs are unique per map, ALUA groups are consistent.
fn check(cx: &Ctx<'_>, cfg: &ScstConfig) -> Result<(), ConfError> {
    let devices: BTreeSet<&str> = cfg.devices.iter().map(|d| d.name.as_str()).collect();
    for t in &cfg.targets {
        let maps = std::iter::once(("the default map".to_string(), &t.luns))
            .chain(t.groups.iter().map(|g| (format!("group {}", g.name), &g.luns)));
        for (what, luns) in maps {
            let mut seen = BTreeMap::new();
            for l in luns {
                if !devices.contains(l.device.as_str()) {
                    return Err(cx.err(
                        t.pos,
                        format!("target {}: LUN {} names an undefined device {:?}", t.name, l.lun, l.device),
                    ));
                }
                if seen.insert(l.lun, ()).is_some() {
                    return Err(cx.err(t.pos, format!("target {}: LUN {} mapped twice in {what}", t.name, l.lun)));
                }
            }
        }
    }
    let mut ids = BTreeSet::new();
    let mut grouped = BTreeSet::new();
    for dg in &cfg.device_groups {
        for d in &dg.devices {
            if !devices.contains(d.as_str()) {
                return Err(cx.err(Pos::default(), format!("DEVICE_GROUP {}: undefined device {d:?}", dg.name)));
            }
            if !grouped.insert(d.as_str()) {
                return Err(cx.err(Pos::default(), format!("device {d:?} is in two device groups")));
            }
        }
        for g in &dg.target_groups {
            if !ids.insert(g.group_id) {
                return Err(cx.err(Pos::default(), format!("group_id {} used twice", g.group_id)));
            }
        }
    }
    Ok(())
}

fn quote(w: &str) -> String {
    if !w.is_empty() && !w.chars().any(|c| c.is_whitespace() || matches!(c, '"' | '\\' | '{' | '}' | '#')) {
        return w.to_string();
    }
    let mut q = String::from("\"");
    for c in w.chars() {
        if matches!(c, '"' | '\\') {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

fn state_name(s: AluaState) -> &'static str {
    match s {
        AluaState::ActiveOptimized => "active",
        AluaState::ActiveNonOptimized => "nonoptimized",
        AluaState::Standby => "standby",
        AluaState::Unavailable => "unavailable",
        AluaState::Offline => "offline",
        AluaState::Transitioning => "transitioning",
    }
}

fn write_luns(out: &mut String, luns: &[LunDef], indent: &str) {
    for l in luns {
        out.push_str(&format!("{indent}LUN {} {}", l.lun, quote(&l.device)));
        out.push_str(if l.read_only { " {\n" } else { "\n" });
        if l.read_only {
            out.push_str(&format!("{indent}\tread_only 1\n{indent}}}\n"));
        }
    }
}

fn write_targets<'a>(out: &mut String, targets: impl Iterator<Item = &'a TargetDef>) {
    for t in targets {
        out.push_str(&format!("\n\tTARGET {} {{\n", quote(&t.name)));
        if let Some(id) = t.rel_tgt_id {
            out.push_str(&format!("\t\trel_tgt_id {id}\n"));
        }
        if let Some(n) = &t.session_name {
            out.push_str(&format!("\t\tsession_name {}\n", quote(n)));
        }
        for (k, u) in [("IncomingUser", &t.incoming_user), ("OutgoingUser", &t.outgoing_user)] {
            if let Some((user, secret)) = u {
                out.push_str(&format!("\t\t{k} {}\n", quote(&format!("{user} {secret}"))));
            }
        }
        write_luns(out, &t.luns, "\t\t");
        for g in &t.groups {
            out.push_str(&format!("\t\tGROUP {} {{\n", quote(&g.name)));
            write_luns(out, &g.luns, "\t\t\t");
            for p in &g.initiators {
                out.push_str(&format!("\t\t\tINITIATOR {}\n", quote(p)));
            }
            out.push_str("\t\t}\n");
        }
        out.push_str(&format!("\t\tenabled {}\n\t}}\n", u8::from(t.enabled)));
    }
}

/// Writes `cfg` back in scst.conf syntax (what `scstctl write-config` prints): every honoured
/// setting, none of the ignored ones. Parsing the result gives the same configuration.
pub fn write_config(cfg: &ScstConfig) -> String {
    let mut out = String::from("# Written by scst-target (scst-rs)\n");
    let mut i = 0;
    while i < cfg.devices.len() {
        let handler = &cfg.devices[i].handler;
        out.push_str(&format!("\nHANDLER {handler} {{\n"));
        while let Some(d) = cfg.devices.get(i).filter(|d| d.handler == *handler) {
            if matches!(d.spec.backend, Backend::Sg { .. }) {
                out.push_str(&format!("\tDEVICE {}\n", quote(&d.name)));
                i += 1;
                continue;
            }
            out.push_str(&format!("\tDEVICE {} {{\n", quote(&d.name)));
            let s = &d.spec;
            let mut attr = |k: &str, v: String| out.push_str(&format!("\t\t{k} {v}\n"));
            match &s.backend {
                Backend::Fileio { path, size, thin, write_through, direct, zerocopy, .. } => {
                    attr("filename", quote(&path.to_string_lossy()));
                    if let Some(n) = size {
                        attr("size", n.to_string());
                    }
                    if !zerocopy {
                        attr("zero_copy", "0".into());
                    }
                    for (k, on) in [("thin_provisioned", thin), ("write_through", write_through), ("o_direct", direct)]
                    {
                        if *on {
                            attr(k, "1".into());
                        }
                    }
                }
                Backend::Blockio { path, thin, .. } => {
                    attr("filename", quote(&path.to_string_lossy()));
                    if *thin {
                        attr("thin_provisioned", "1".into());
                    }
                }
                Backend::Nullio { size } | Backend::Ram { size } => attr("size", size.to_string()),
                // Written above as its name (H:C:I:L) alone.
                Backend::Sg { .. } => {}
                Backend::Rbd { pool, image, conf, id } => {
                    attr("pool", quote(pool));
                    attr("image", quote(image));
                    if let Some(c) = conf {
                        attr("conf", quote(&c.to_string_lossy()));
                    }
                    if let Some(i) = id {
                        attr("id", quote(i));
                    }
                }
            }
            if s.block_size != 512 {
                attr("blocksize", s.block_size.to_string());
            }
            for (k, on) in [("read_only", s.read_only), ("removable", s.removable)] {
                if on {
                    attr(k, "1".into());
                }
            }
            out.push_str("\t}\n");
            i += 1;
        }
        out.push_str("}\n");
    }
    for d in Driver::ALL {
        let mine = cfg.targets.iter().filter(|t| t.driver == d);
        // iSCSI's section always; another driver's when it has targets or is disabled.
        if d != Driver::Iscsi && mine.clone().next().is_none() && cfg.driver_enabled(d) {
            continue;
        }
        out.push_str(&format!("\nTARGET_DRIVER {} {{\n\tenabled {}\n", d.name(), u8::from(cfg.driver_enabled(d))));
        write_targets(&mut out, mine);
        out.push_str("}\n");
    }
    for dg in &cfg.device_groups {
        out.push_str(&format!("\nDEVICE_GROUP {} {{\n", quote(&dg.name)));
        for d in &dg.devices {
            out.push_str(&format!("\tDEVICE {}\n", quote(d)));
        }
        for g in &dg.target_groups {
            out.push_str(&format!(
                "\tTARGET_GROUP {} {{\n\t\tgroup_id {}\n\t\tstate {}\n",
                quote(&g.name),
                g.group_id,
                state_name(g.state)
            ));
            if g.preferred {
                out.push_str("\t\tpreferred 1\n");
            }
            for (t, rel) in &g.targets {
                match rel {
                    Some(r) => out.push_str(&format!("\t\tTARGET {} {{\n\t\t\trel_tgt_id {r}\n\t\t}}\n", quote(t))),
                    None => out.push_str(&format!("\t\tTARGET {}\n", quote(t))),
                }
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
    }
    out
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Honoured => "honoured",
            Self::Ignored => "ignored (warning)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration as scstadmin writes it (hand-written from SCST's documentation), with
    /// every section kind this implementation takes.
    const FULL: &str = r#"# Automatically generated by SCST Configurator v3.x.

HANDLER vdisk_fileio {
	DEVICE disk01 {
		filename /var/lib/scst/disk01.img
		nv_cache 1
		size_mb 64
		thin_provisioned 1
	}

	DEVICE disk02 {
		filename "/var/lib/scst/disk 02.img"
		blocksize 4096
		write_through 1
		o_direct 1
		t10_dev_id "disk02 0815"
	}
}

HANDLER vdisk_blockio {
	DEVICE bdev {
		filename /dev/loop7
		read_only 1
	}
}

HANDLER vdisk_nullio {
	DEVICE null0 {
		size 1T
		removable 1
	}
}

TARGET_DRIVER iscsi {
	enabled 1
	iSNSServer 10.0.0.1

	TARGET iqn.2006-10.net.vlnb:tgt1 {
		HeaderDigest "CRC32C,None"
		IncomingUser "joe s3cret-pass"
		OutgoingUser "tgt mutual-secret"
		LUN 0 disk01
		LUN 1 null0 {
			read_only 1
		}
		rel_tgt_id 2
		enabled 1

		GROUP db {
			LUN 0 disk02
			LUN 3 bdev
			INITIATOR iqn.1991-05.com.microsoft:db*
			INITIATOR !iqn.1991-05.com.microsoft:db-test
			addr_method PERIPHERAL
		}
	}

	TARGET iqn.2006-10.net.vlnb:tgt2 {
		LUN 0 disk02
	}
}

DEVICE_GROUP dg1 {
	DEVICE disk01
	TARGET_GROUP local {
		group_id 1
		state active
		preferred 1
		TARGET iqn.2006-10.net.vlnb:tgt1
	}
	TARGET_GROUP remote {
		group_id 2
		state standby
		TARGET iqn.2006-10.net.vlnb:tgt1-node2 {
			rel_tgt_id 5
		}
	}
}
"#;

    #[test]
    fn a_full_scstadmin_file_parses_into_what_it_says() {
        let c = parse("scst.conf", FULL).unwrap();
        let names: Vec<_> = c.devices.iter().map(|d| (d.name.as_str(), d.handler.as_str())).collect();
        assert_eq!(
            names,
            [
                ("disk01", "vdisk_fileio"),
                ("disk02", "vdisk_fileio"),
                ("bdev", "vdisk_blockio"),
                ("null0", "vdisk_nullio")
            ]
        );
        assert_eq!(
            c.devices[0].spec.backend,
            Backend::Fileio {
                path: "/var/lib/scst/disk01.img".into(),
                size: Some(64 << 20),
                thin: true,
                write_through: false,
                direct: false,
                physical_block_size: 0,
                zerocopy: true,
                aio: AioMode::Auto,
            }
        );
        let d2 = &c.devices[1].spec;
        assert_eq!(d2.block_size, 4096);
        assert!(
            matches!(&d2.backend, Backend::Fileio { path, write_through: true, direct: true, thin: false, .. } if path.to_str() == Some("/var/lib/scst/disk 02.img"))
        );
        assert_eq!(
            c.devices[2].spec.backend,
            Backend::Blockio { path: "/dev/loop7".into(), thin: false, aio: AioMode::Auto }
        );
        assert!(c.devices[2].spec.read_only);
        assert_eq!(c.devices[3].spec.backend, Backend::Nullio { size: 1 << 40 });
        assert!(c.devices[3].spec.removable);

        assert!(c.driver_enabled(Driver::Iscsi));
        let t = &c.targets[0];
        assert_eq!(t.name, "iqn.2006-10.net.vlnb:tgt1");
        assert!(t.enabled);
        assert_eq!(t.rel_tgt_id, Some(2));
        assert_eq!(t.incoming_user, Some(("joe".into(), "s3cret-pass".into())));
        assert_eq!(t.outgoing_user, Some(("tgt".into(), "mutual-secret".into())));
        assert_eq!(
            t.luns,
            [
                LunDef { lun: 0, device: "disk01".into(), read_only: false },
                LunDef { lun: 1, device: "null0".into(), read_only: true }
            ]
        );
        assert_eq!(t.groups.len(), 1);
        assert_eq!(t.groups[0].name, "db");
        assert_eq!(t.groups[0].initiators, ["iqn.1991-05.com.microsoft:db*", "!iqn.1991-05.com.microsoft:db-test"]);
        assert_eq!(t.groups[0].luns.iter().map(|l| l.lun).collect::<Vec<_>>(), [0, 3]);
        // A target without `enabled 1` is off, as in SCST.
        assert!(!c.targets[1].enabled);

        let dg = &c.device_groups[0];
        assert_eq!(dg.devices, ["disk01"]);
        assert_eq!(dg.target_groups[0].group_id, 1);
        assert!(dg.target_groups[0].preferred);
        assert_eq!(dg.target_groups[1].state, AluaState::Standby);
        assert_eq!(dg.target_groups[1].targets, [("iqn.2006-10.net.vlnb:tgt1-node2".to_string(), Some(5))]);

        // Every ignored attribute is named with its position and the reason.
        let w = c.warnings.join("\n");
        for (what, at) in [
            ("nv_cache", "scst.conf:6:3"),
            ("t10_dev_id", "scst.conf:16:3"),
            ("iSNSServer", "scst.conf:36:2"),
            ("HeaderDigest", "scst.conf:39:3"),
            ("addr_method", "scst.conf:54:4"),
        ] {
            assert!(w.contains(&format!("{at}: {what} in")), "{what} at {at}: {w}");
        }
        assert_eq!(c.warnings.len(), 5, "{w}");
    }

    /// Positions and warnings are the only things a written file does not reproduce.
    fn normalized(mut c: ScstConfig) -> ScstConfig {
        c.warnings.clear();
        for d in &mut c.devices {
            d.pos = Pos::default();
        }
        for t in &mut c.targets {
            t.pos = Pos::default();
        }
        c
    }

    #[test]
    fn write_config_round_trips() {
        let c = parse("scst.conf", FULL).unwrap();
        let text = write_config(&c);
        let again = parse("written", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(again.warnings.is_empty(), "{:?}", again.warnings);
        assert_eq!(normalized(again), normalized(c), "{text}");
        assert!(text.contains("\t\tfilename \"/var/lib/scst/disk 02.img\"\n"), "{text}");
        assert!(text.contains("\t\tIncomingUser \"joe s3cret-pass\"\n"), "{text}");
    }

    #[test]
    fn a_vdisk_rbd_device_names_its_image_and_round_trips() {
        let text = "HANDLER vdisk_rbd {\n\tDEVICE r0 {\n\t\tpool rbd\n\t\timage disk-a\n\t\t\
            conf /etc/ceph/x.conf\n\t\tid gw1\n\t\tblocksize 4096\n\t}\n\tDEVICE r1 {\n\t\tpool p2\n\t\t\
            image b\n\t\tread_only 1\n\t}\n}\n\
            TARGET_DRIVER iscsi {\n\tTARGET iqn.t {\n\t\tLUN 0 r0\n\t\tLUN 1 r1\n\t}\n}\n";
        let c = parse("scst.conf", text).unwrap();
        assert_eq!(
            c.devices[0].spec.backend,
            Backend::Rbd {
                pool: "rbd".into(),
                image: "disk-a".into(),
                conf: Some("/etc/ceph/x.conf".into()),
                id: Some("gw1".into())
            }
        );
        assert_eq!((c.devices[0].spec.block_size, c.devices[0].handler.as_str()), (4096, "vdisk_rbd"));
        assert_eq!(
            c.devices[1].spec.backend,
            Backend::Rbd { pool: "p2".into(), image: "b".into(), conf: None, id: None }
        );
        assert!(c.devices[1].spec.read_only);
        let written = write_config(&c);
        let again = parse("written", &written).unwrap_or_else(|e| panic!("{e}\n{written}"));
        assert_eq!(normalized(again), normalized(c), "{written}");
        for (bad, why) in [
            ("pool rbd", "needs image"),
            ("image a", "needs pool"),
            ("pool a/b\n\t\timage c", "needs pool"),
            ("pool a\n\t\timage c\n\t\tfilename /x", "\"filename\" is not supported"),
        ] {
            let t = format!("HANDLER vdisk_rbd {{\n\tDEVICE r {{\n\t\t{bad}\n\t}}\n}}\n");
            let e = parse("scst.conf", &t).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    const SRPT: &str = "HANDLER vdisk_nullio {\n\tDEVICE n {\n\t\tsize 1G\n\t}\n}\n\
        TARGET_DRIVER iscsi {\n\tTARGET iqn.t {\n\t\tLUN 0 n\n\t\tenabled 1\n\t}\n}\n\
        TARGET_DRIVER ib_srpt {\n\tenabled 1\n\tTARGET fe80:0000:0000:0000:0002:c903:00ab:cdef {\n\t\tLUN 0 n\n\t\t\
        GROUP fast {\n\t\t\tLUN 1 n\n\t\t\tINITIATOR 0xfe80*\n\t\t}\n\t\trel_tgt_id 3\n\t\tenabled 1\n\t}\n}\n";

    #[test]
    fn an_ib_srpt_section_names_srp_targets_by_guid_and_round_trips() {
        let c = parse("scst.conf", SRPT).unwrap();
        let t = &c.targets[1];
        assert_eq!((t.driver, t.name.as_str()), (Driver::Srpt, "fe80:0000:0000:0000:0002:c903:00ab:cdef"));
        assert_eq!(srpt_guid(&t.name), Some(0x0002_c903_00ab_cdef));
        assert_eq!((t.rel_tgt_id, t.groups[0].initiators.as_slice()), (Some(3), &["0xfe80*".to_string()][..]));
        assert_eq!(c.served().map(|t| t.driver).collect::<Vec<_>>(), [Driver::Iscsi, Driver::Srpt]);
        let text = write_config(&c);
        assert!(text.contains("TARGET_DRIVER ib_srpt {\n\tenabled 1\n"), "{text}");
        assert_eq!(normalized(parse("w", &text).unwrap()), normalized(c));
        // A disabled driver turns its targets off, and stays written.
        let off = parse("f", &SRPT.replace("ib_srpt {\n\tenabled 1", "ib_srpt {\n\tenabled 0")).unwrap();
        assert_eq!(off.served().count(), 1);
        assert_eq!(normalized(parse("w", &write_config(&off)).unwrap()), normalized(off));
        // No ib_srpt section: none written.
        assert!(!write_config(&parse("f", "").unwrap()).contains("ib_srpt"));
        for (name, guid) in
            [("0x0002c90300abcdef", Some(0x0002_c903_00ab_cdef)), ("0002c90300ABCDEF", Some(0x0002_c903_00ab_cdef))]
        {
            assert_eq!(srpt_guid(name), guid);
        }
        for bad in ["0x12", "srpt0", "fe80::2:c903:ab:cdef", "0xg002c90300abcdef"] {
            assert_eq!(srpt_guid(bad), None, "{bad}");
        }
    }

    #[test]
    fn ib_srpt_targets_refuse_chap_and_names_that_are_not_guids() {
        assert_eq!(
            err("TARGET_DRIVER ib_srpt {\n TARGET srpt0 {\n }\n}\n"),
            "f:2:2: ib_srpt target \"srpt0\": expected the port GUID (0x and 16 hex digits) or a GID"
        );
        assert_eq!(
            err("TARGET_DRIVER ib_srpt {\n TARGET 0x0002c90300abcdef {\n  IncomingUser \"a b\"\n }\n}\n"),
            "f:3:3: IncomingUser is iSCSI's (CHAP); ib_srpt has no login secret"
        );
        assert_eq!(
            err("TARGET_DRIVER ib_srpt {\n}\nTARGET_DRIVER ib_srpt {\n}\n"),
            "f:3:1: TARGET_DRIVER ib_srpt given twice"
        );
        assert_eq!(
            err("TARGET_DRIVER ib_srpt {\n iSNSServer 1.2.3.4\n}\n"),
            "f:2:2: unknown entry \"iSNSServer\" in TARGET_DRIVER ib_srpt"
        );
        // One name space for the targets of every driver.
        assert_eq!(
            err(
                "TARGET_DRIVER iscsi {\n TARGET 0x0002c90300abcdef {\n }\n}\nTARGET_DRIVER ib_srpt {\n TARGET 0x0002c90300abcdef {\n }\n}\n"
            ),
            "f:6:2: target \"0x0002c90300abcdef\" defined twice"
        );
    }

    #[test]
    fn an_fcst_section_names_fcoe_targets_by_wwpn_and_round_trips() {
        let text = SRPT
            .replace("TARGET_DRIVER ib_srpt", "TARGET_DRIVER fcst")
            .replace("fe80:0000:0000:0000:0002:c903:00ab:cdef", "20:00:00:11:22:33:44:55");
        let c = parse("scst.conf", &text).unwrap();
        let t = &c.targets[1];
        assert_eq!((t.driver, Driver::Fcst.port_id(&t.name)), (Driver::Fcst, Some(0x2000_0011_2233_4455)));
        assert_eq!(c.served().map(|t| t.driver).collect::<Vec<_>>(), [Driver::Iscsi, Driver::Fcst]);
        let written = write_config(&c);
        assert!(
            written.contains("TARGET_DRIVER fcst {\n\tenabled 1\n\n\tTARGET 20:00:00:11:22:33:44:55 {"),
            "{written}"
        );
        assert!(!written.contains("ib_srpt"), "{written}");
        assert_eq!(normalized(parse("w", &written).unwrap()), normalized(c));
        let off = parse("f", &text.replace("fcst {\n\tenabled 1", "fcst {\n\tenabled 0")).unwrap();
        assert_eq!(off.served().count(), 1);
        assert_eq!(
            err("TARGET_DRIVER fcst {\n TARGET fc0 {\n }\n}\n"),
            "f:2:2: fcst target \"fc0\": expected the port's WWPN (20:00:00:11:22:33:44:55 or 0x...)"
        );
        assert_eq!(
            err("TARGET_DRIVER fcst {\n TARGET 0x2000001122334455 {\n  OutgoingUser \"a b\"\n }\n}\n"),
            "f:3:3: OutgoingUser is iSCSI's (CHAP); fcst has no login secret"
        );
    }

    #[test]
    fn an_scst_local_section_names_sessions_and_round_trips() {
        let text = "HANDLER vdisk_nullio {\n\tDEVICE n {\n\t\tsize 1G\n\t}\n}\n\
            TARGET_DRIVER scst_local {\n\tTARGET vm-1.a {\n\t\tsession_name \"guest one\"\n\t\tLUN 0 n\n\t\tenabled 1\n\t}\n}\n";
        let c = parse("scst.conf", text).unwrap();
        let t = &c.targets[0];
        assert_eq!((t.driver, t.session_name.as_deref()), (Driver::Local, Some("guest one")));
        let written = write_config(&c);
        assert!(written.contains("TARGET vm-1.a {\n\t\tsession_name \"guest one\"\n"), "{written}");
        assert_eq!(normalized(parse("w", &written).unwrap()), normalized(c));
        for bad in ["../x", ".hidden", "a/b", "vm 1"] {
            let e = err(&format!("TARGET_DRIVER scst_local {{\n TARGET {bad:?} {{\n }}\n}}\n"));
            assert!(e.starts_with("f:2:2: scst_local target") && e.contains("socket's file name"), "{bad}: {e}");
        }
        assert_eq!(
            err("TARGET_DRIVER iscsi {\n TARGET iqn.t {\n  session_name s\n }\n}\n"),
            "f:3:3: unknown entry \"session_name\" in TARGET iqn.t"
        );
    }

    #[test]
    fn pass_through_devices_resolve_to_their_sg_node() {
        let sys = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(sys.path().join("class/scsi_device/2:0:0:0/device/scsi_generic/sg3")).unwrap();
        let text =
            "HANDLER dev_tape {\n\tDEVICE 2:0:0:0\n}\nTARGET_DRIVER iscsi {\n\tTARGET t {\n\t\tLUN 0 2:0:0:0\n\t}\n}\n";
        let c = parse_with_sysfs("f", text, sys.path()).unwrap();
        assert!(
            matches!(&c.devices[0].spec.backend, Backend::Sg { path, forward_reservations: false, .. } if path.to_str() == Some("/dev/sg3"))
        );
        assert_eq!(c.devices[0].handler, "dev_tape");
        assert_eq!(c.targets[0].luns[0].device, "2:0:0:0");
        let written = write_config(&c);
        assert!(written.contains("HANDLER dev_tape {\n\tDEVICE 2:0:0:0\n}\n"), "{written}");
        assert_eq!(normalized(parse_with_sysfs("w", &written, sys.path()).unwrap()), normalized(c));
        let e = parse_with_sysfs("f", "HANDLER dev_disk {\n\tDEVICE 9:0:0:0\n}\n", sys.path()).unwrap_err();
        assert!(e.to_string().starts_with("f:2:2: no SCSI device 9:0:0:0 ("), "{e}");
        let e = parse_with_sysfs("f", "HANDLER dev_disk {\n\tDEVICE sda\n}\n", sys.path()).unwrap_err();
        assert_eq!(e.to_string(), "f:2:2: a pass-through device is named H:C:I:L, not \"sda\"");
    }

    fn err(text: &str) -> String {
        parse("f", text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_line_and_column() {
        assert_eq!(
            err("HANDLER vdisk_fileio {\n  DEVICE d {\n    filename /x\n"),
            "f:2:3: section not closed (missing '}')"
        );
        assert_eq!(err("}\n"), "f:1:1: '}' without a section to close");
        assert_eq!(
            err("HANDLER vdisk_fileio {\n DEVICE d {\n  filename \"/x\n }\n}\n"),
            "f:3:12: unterminated quoted word"
        );
        assert_eq!(err("  {\n}"), "f:1:3: '{' without a keyword before it");
        assert_eq!(
            err("HANDLER vdisk_fileio {\n DEVICE d {\n  filename /x\n  bogus 1\n }\n}\n"),
            "f:4:3: attribute \"bogus\" is not supported for a vdisk_fileio device"
        );
        assert_eq!(
            err("HANDLER vdisk_rdm {\n DEVICE 1:0:0:0\n}\n"),
            "f:2:2: handler \"vdisk_rdm\" is not supported (vdisk_fileio, vdisk_blockio, vdisk_nullio, vdisk_rbd, dev_disk, dev_tape, ...)"
        );
        assert_eq!(
            err("TARGET_DRIVER qla2x00t {\n}\n"),
            "f:1:1: target driver \"qla2x00t\" is not served by scst-target (only iscsi, ib_srpt, fcst and scst_local)"
        );
        assert_eq!(
            err("HANDLER vdisk_nullio {\n DEVICE n {\n  size 1G\n  read_only 2\n }\n}\n"),
            "f:4:3: read_only: expected 0 or 1, not \"2\""
        );
        assert_eq!(err("HANDLER vdisk_fileio {\n DEVICE d {\n }\n}\n"), "f:2:2: a vdisk_fileio device needs filename");
        assert_eq!(
            err("TARGET_DRIVER iscsi {\n TARGET t {\n  LUN 0 nodev\n }\n}\n"),
            "f:2:2: target t: LUN 0 names an undefined device \"nodev\""
        );
        assert_eq!(
            err(
                "HANDLER vdisk_nullio {\n DEVICE n {\n  size 1G\n }\n}\nTARGET_DRIVER iscsi {\n TARGET t {\n  LUN 0 n\n  LUN 0 n\n }\n}\n"
            ),
            "f:7:2: target t: LUN 0 mapped twice in the default map"
        );
        assert_eq!(
            err("TARGET_DRIVER iscsi {\n TARGET t {\n  LUN 99999 n\n }\n}\n"),
            "f:3:3: LUN \"99999\": expected 0..=16383"
        );
        assert_eq!(err("HANDLER vdisk_fileio {\n} x\n"), "f:2:3: nothing may follow '}' on its line");
        assert_eq!(
            err("DEVICE_GROUP g {\n TARGET_GROUP a {\n  state active\n }\n}\n"),
            "f:2:2: TARGET_GROUP a needs group_id 1..65535"
        );
    }

    #[test]
    fn comments_blank_lines_and_quotes() {
        let c =
            parse("f", "# c\n\nHANDLER vdisk_nullio { # trailing\n DEVICE \"n 1\" {\n  size_mb 1 # one MiB\n }\n}\n")
                .unwrap();
        assert_eq!(c.devices[0].name, "n 1");
        assert_eq!(c.devices[0].spec.backend, Backend::Nullio { size: 1 << 20 });
        assert_eq!(parse_items("a \"b \\\"c\\\\\"\n").unwrap()[0].words, ["a", "b \"c\\"]);
    }

    #[test]
    fn an_empty_file_is_an_empty_configuration() {
        let c = parse("f", "").unwrap();
        assert!(c.devices.is_empty() && c.targets.is_empty() && c.driver_enabled(Driver::Iscsi));
    }

    #[test]
    fn keyword_table_lists_every_ignored_attribute_once_per_place() {
        let mut seen = BTreeSet::new();
        for (k, place, _, what) in KEYWORDS {
            assert!(seen.insert((*k, *place)), "{k} in {place} twice");
            assert!(!what.is_empty());
        }
    }
}
