//! LUN specifications of the command line:
//!
//! ```text
//! SPEC := ram:SIZE[,bs=512|4096][,COMMON]
//!       | nullio:SIZE[,bs=512|4096][,COMMON]
//!       | fileio:PATH[,size=SIZE][,thin][,wt][,direct][,bs=512|4096][,pbs=N][,zerocopy=on|off][,AIO][,COMMON]
//!           (zerocopy: large READs of cached data go from the page cache to the socket; default on)
//!       | blockio:DEVICE[,thin][,AIO][,COMMON]
//!       | rbd:POOL/IMAGE[,conf=PATH][,id=CLIENT][,bs=512|4096][,COMMON]
//!           (a Ceph RBD image; needs a build with the `rbd` feature: librbd, librados)
//!       | sg:NODE[,timeout=SECS][,long_timeout=SECS][,pr=passthrough|emulate][,threads=N][,ro][,group=..]
//!           (SCSI pass-through to /dev/sgN: timeout of READ, WRITE and most commands (30),
//!            of FORMAT, REWIND, SPACE, ... (1800); reservations emulated by the target
//!            (default) or sent to the device; commands in flight to the device (8))
//! COMMON := ro | removable | sanitize_rate=SIZE|0   (bytes per second SANITIZE OVERWRITE
//!           writes at most; 0: unlimited)
//!         | group=NAME[:ro]   (map the LUN in security group NAME instead of the default map,
//!                              read-only there with :ro; repeatable)
//! AIO := aio=auto|uring|threads   (io_uring where available (auto, the default), io_uring or
//!        fail, or worker threads with synchronous calls)
//! SIZE := N[K|M|G|T] (binary multiples)
//!
//! GROUP := NAME:PATTERN[,PATTERN...]        (a security group; see scst::acl)
//! PORT-GROUP := ID=STATE[,pref][,remote=N[+N...]]
//! STATE := active | nonoptimized | standby | unavailable | offline | transitioning
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use scst::acl::NamePatterns;
use scst::alua::{AluaState, PortGroup};

use scst::{Device, DeviceConfig, Disk};
/// The I/O path of a FILEIO or BLOCKIO LUN (`aio=`).
pub use scst_backends::AioMode;
use scst_backends::{
    BlockDevStore, FileOptions, FileStore, NullStore, OpenError, RamStore, SgDevice, SgOptions, SgTimeouts,
};

/// A parse error in a LUN specification.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecError {
    /// `N=SPEC` without `=` or with a bad LUN number.
    #[error("expected N=SPEC with N in 0..=16383: {0:?}")]
    Lun(String),
    /// Unknown backend kind.
    #[error("unknown backend {0:?} (ram, nullio, fileio, blockio, rbd, sg)")]
    Kind(String),
    /// A size that does not parse.
    #[error("bad size {0:?} (e.g. 64M, 1G)")]
    Size(String),
    /// An option the backend does not take, or a bad value.
    #[error("bad option {0:?} for {1}")]
    Option(String, &'static str),
    /// A missing argument.
    #[error("{0} needs {1}")]
    Missing(&'static str, &'static str),
    /// A bad security group or target port group specification.
    #[error("bad {0} {1:?}: {2}")]
    Group(&'static str, String, String),
}

/// What to build for one LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// In-memory store.
    Ram {
        /// Size in bytes.
        size: u64,
    },
    /// Null store.
    Nullio {
        /// Size in bytes.
        size: u64,
    },
    /// File-backed store.
    Fileio {
        /// Path of the file.
        path: PathBuf,
        /// Size to create or extend to.
        size: Option<u64>,
        /// Sparse (thin) file.
        thin: bool,
        /// Write-through.
        write_through: bool,
        /// O_DIRECT.
        direct: bool,
        /// Physical block size to report (0: the logical block size).
        physical_block_size: u32,
        /// Zero-copy READs from the page cache (`sendfile`) on fabrics that can (default on;
        /// `zerocopy=off`).
        zerocopy: bool,
        /// The I/O path (io_uring or worker threads).
        aio: AioMode,
    },
    /// Block device.
    Blockio {
        /// The device node.
        path: PathBuf,
        /// Discard on UNMAP (thin provisioning).
        thin: bool,
        /// The I/O path (io_uring or worker threads).
        aio: AioMode,
    },
    /// A Ceph RBD image.
    Rbd {
        /// The RADOS pool.
        pool: String,
        /// The image.
        image: String,
        /// The cluster's configuration file (librados' default search when `None`).
        conf: Option<PathBuf>,
        /// The client id (`admin` when `None`).
        id: Option<String>,
    },
    /// SCSI pass-through to a SCSI generic node.
    Sg {
        /// The node (`/dev/sgN`).
        path: PathBuf,
        /// Timeout of most commands, in seconds.
        timeout: u64,
        /// Timeout of the long commands (FORMAT, REWIND, ...), in seconds.
        long_timeout: u64,
        /// Send RESERVE/RELEASE and PERSISTENT RESERVE IN/OUT to the device.
        forward_reservations: bool,
        /// Commands in flight to the device (worker threads).
        threads: usize,
    },
}

/// A parsed `N=SPEC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunSpec {
    /// LUN number.
    pub lun: u16,
    /// Backend.
    pub backend: Backend,
    /// Logical block size.
    pub block_size: u32,
    /// Read-only.
    pub read_only: bool,
    /// Removable medium.
    pub removable: bool,
    /// SANITIZE OVERWRITE rate limit in bytes per second (0: none); `None`: the default.
    pub sanitize_rate: Option<u64>,
    /// Security groups whose maps hold the LUN, each with whether it is read-only there;
    /// empty: the default map.
    pub groups: Vec<(String, bool)>,
}

/// Parses `64M`, `1G`, `512`, `2T`.
///
/// # Errors
/// [`SpecError::Size`].
pub fn parse_size(s: &str) -> Result<u64, SpecError> {
    let err = || SpecError::Size(s.to_string());
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(err()),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| err())?;
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(err)
}

impl LunSpec {
    /// Parses `N=SPEC`.
    ///
    /// # Errors
    /// A [`SpecError`] naming what is wrong.
    pub fn parse(s: &str) -> Result<Self, SpecError> {
        let (n, spec) = s.split_once('=').ok_or_else(|| SpecError::Lun(s.to_string()))?;
        let lun: u16 =
            n.trim().parse().ok().filter(|l| *l <= scst::Lun::MAX).ok_or_else(|| SpecError::Lun(s.to_string()))?;
        Self::parse_spec(lun, spec)
    }

    /// Parses a `SPEC` for LUN `lun`.
    ///
    /// # Errors
    /// A [`SpecError`] naming what is wrong.
    pub fn parse_spec(lun: u16, spec: &str) -> Result<Self, SpecError> {
        let (kind, rest) = spec.split_once(':').ok_or_else(|| SpecError::Kind(spec.to_string()))?;
        let mut parts = rest.split(',');
        let first = parts.next().filter(|p| !p.is_empty());
        let mut out = Self {
            lun,
            backend: Backend::Ram { size: 0 },
            block_size: 512,
            read_only: false,
            removable: false,
            sanitize_rate: None,
            groups: Vec::new(),
        };
        let (mut size, mut thin, mut wt, mut direct, mut pbs) = (None, false, false, false, 0);
        let mut zerocopy = true;
        let mut aio = AioMode::Auto;
        let defaults = SgTimeouts::default();
        let (mut timeout, mut long_timeout) = (defaults.normal.as_secs(), defaults.long.as_secs());
        let (mut forward_reservations, mut threads) = (false, 8usize);
        let (mut conf, mut id) = (None, None);
        let kind_name: &'static str = match kind {
            "ram" => "ram",
            "nullio" => "nullio",
            "fileio" => "fileio",
            "blockio" => "blockio",
            "rbd" => "rbd",
            "sg" => "sg",
            _ => return Err(SpecError::Kind(kind.to_string())),
        };
        for opt in parts {
            let bad = || SpecError::Option(opt.to_string(), kind_name);
            match (opt.split_once('='), kind_name) {
                (None, _) if opt == "ro" => out.read_only = true,
                (None, k) if opt == "removable" && k != "sg" => out.removable = true,
                (Some(("timeout", v)), "sg") => timeout = v.parse().ok().filter(|t| *t > 0).ok_or_else(bad)?,
                (Some(("long_timeout", v)), "sg") => {
                    long_timeout = v.parse().ok().filter(|t| *t > 0).ok_or_else(bad)?;
                }
                (Some(("pr", v)), "sg") => {
                    forward_reservations = match v {
                        "passthrough" => true,
                        "emulate" => false,
                        _ => return Err(bad()),
                    }
                }
                (Some(("threads", v)), "sg") => {
                    threads = v.parse().ok().filter(|t| (1..=16).contains(t)).ok_or_else(bad)?
                }
                (None, "fileio" | "blockio") if opt == "thin" => thin = true,
                (None, "fileio") if opt == "wt" => wt = true,
                (None, "fileio") if opt == "direct" => direct = true,
                (Some(("zerocopy", v)), "fileio") => {
                    zerocopy = match v {
                        "on" => true,
                        "off" => false,
                        _ => return Err(bad()),
                    }
                }
                (Some(("aio", v)), "fileio" | "blockio") => {
                    aio = match v {
                        "auto" => AioMode::Auto,
                        "uring" => AioMode::Uring,
                        "threads" => AioMode::Threads,
                        _ => return Err(bad()),
                    }
                }
                (Some(("conf", v)), "rbd") if !v.is_empty() => conf = Some(PathBuf::from(v)),
                (Some(("id", v)), "rbd") if !v.is_empty() => id = Some(v.to_string()),
                (Some(("bs", v)), "ram" | "nullio" | "fileio" | "rbd") => {
                    out.block_size = match v {
                        "512" => 512,
                        "4096" => 4096,
                        _ => return Err(bad()),
                    }
                }
                (Some(("size", v)), "fileio") => size = Some(parse_size(v)?),
                (Some(("group", v)), _) => {
                    let (name, ro) = match v.split_once(':') {
                        Some((n, "ro")) => (n, true),
                        Some(_) => return Err(bad()),
                        None => (v, false),
                    };
                    if name.is_empty() {
                        return Err(bad());
                    }
                    out.groups.push((name.to_string(), ro));
                }
                (Some(("sanitize_rate", v)), k) if k != "sg" => {
                    out.sanitize_rate = Some(if v == "0" { 0 } else { parse_size(v)? });
                }
                (Some(("pbs", v)), "fileio") => pbs = v.parse().map_err(|_| bad())?,
                _ => return Err(bad()),
            }
        }
        out.backend = match kind_name {
            "ram" => Backend::Ram { size: parse_size(first.ok_or(SpecError::Missing("ram", "a SIZE"))?)? },
            "nullio" => Backend::Nullio { size: parse_size(first.ok_or(SpecError::Missing("nullio", "a SIZE"))?)? },
            "fileio" => Backend::Fileio {
                path: first.ok_or(SpecError::Missing("fileio", "a PATH"))?.into(),
                size,
                thin,
                write_through: wt,
                direct,
                physical_block_size: pbs,
                zerocopy,
                aio,
            },
            "blockio" => {
                Backend::Blockio { path: first.ok_or(SpecError::Missing("blockio", "a DEVICE"))?.into(), thin, aio }
            }
            "rbd" => {
                let (pool, image) = first
                    .and_then(|f| f.split_once('/'))
                    .filter(|(p, i)| !p.is_empty() && !i.is_empty() && !i.contains('/'))
                    .ok_or(SpecError::Missing("rbd", "POOL/IMAGE"))?;
                Backend::Rbd { pool: pool.to_string(), image: image.to_string(), conf, id }
            }
            _ => Backend::Sg {
                path: first.ok_or(SpecError::Missing("sg", "a NODE"))?.into(),
                timeout,
                long_timeout,
                forward_reservations,
                threads,
            },
        };
        Ok(out)
    }

    /// Opens the backing store and builds the device, named `name` (its serial number and NAA
    /// designator derive from the name), keeping persistent state (APTPL reservations) in
    /// `state_dir` if given.
    ///
    /// # Errors
    /// If the store cannot be opened or the worker threads cannot start.
    pub fn build(&self, name: &str, state_dir: Option<&Path>) -> Result<Arc<Device>, OpenError> {
        let mut cfg = DeviceConfig::new(name);
        cfg.state_dir = state_dir.map(Path::to_path_buf);
        cfg.read_only = self.read_only;
        cfg.removable = self.removable;
        if let Some(rate) = self.sanitize_rate {
            cfg.sanitize_rate = rate;
        }
        let bs = self.block_size;
        let io = |e: std::io::Error| OpenError::Io { path: name.to_string(), source: e };
        let dev = match &self.backend {
            Backend::Ram { size } => Device::new(cfg, Disk::new(RamStore::new(*size, bs)?)),
            Backend::Nullio { size } => Device::new(cfg, Disk::new(NullStore::new(*size, bs)?)),
            Backend::Fileio { path, size, thin, write_through, direct, physical_block_size, zerocopy, aio } => {
                if *write_through {
                    cfg.write_cache = false;
                }
                let opts = FileOptions {
                    size: *size,
                    block_size: bs,
                    thin: *thin,
                    read_only: self.read_only,
                    write_through: *write_through,
                    direct: *direct,
                    physical_block_size: *physical_block_size,
                    zerocopy: *zerocopy,
                    aio: *aio,
                };
                Device::new(cfg, Disk::new(FileStore::open(path, opts)?))
            }
            Backend::Blockio { path, thin, aio } => {
                Device::new(cfg, Disk::new(BlockDevStore::open_with(path, self.read_only, *thin, *aio)?))
            }
            Backend::Rbd { pool, image, conf, id } => Device::new(cfg, open_rbd(pool, image, conf, id, bs)?),
            Backend::Sg { path, timeout, long_timeout, forward_reservations, threads } => {
                cfg.threads = *threads;
                let opts = SgOptions {
                    timeouts: SgTimeouts {
                        normal: Duration::from_secs(*timeout),
                        long: Duration::from_secs(*long_timeout),
                    },
                    forward_reservations: *forward_reservations,
                    synchronous: false,
                };
                Device::new(cfg, Arc::new(SgDevice::open(path, opts)?))
            }
        };
        dev.map_err(io)
    }
}

/// Opens an RBD image as a disk.
#[cfg(feature = "rbd")]
fn open_rbd(
    pool: &str,
    image: &str,
    conf: &Option<PathBuf>,
    id: &Option<String>,
    bs: u32,
) -> Result<Arc<dyn scst::DeviceHandler>, OpenError> {
    use scst_backends::rbd::{RbdOptions, RbdStore};
    let o = RbdOptions { pool: pool.into(), image: image.into(), conf: conf.clone(), id: id.clone(), block_size: bs };
    Ok(Disk::new(RbdStore::open(&o)?))
}

/// This build has no RBD store.
#[cfg(not(feature = "rbd"))]
fn open_rbd(
    pool: &str,
    image: &str,
    _: &Option<PathBuf>,
    _: &Option<String>,
    _: u32,
) -> Result<Arc<dyn scst::DeviceHandler>, OpenError> {
    Err(OpenError::Io {
        path: format!("rbd:{pool}/{image}"),
        source: std::io::Error::new(std::io::ErrorKind::Unsupported, "this build has no RBD support (--features rbd)"),
    })
}

/// Parses `NAME:PATTERN[,PATTERN...]` (a security group).
///
/// # Errors
/// [`SpecError::Group`].
pub fn parse_group(s: &str) -> Result<(String, NamePatterns), SpecError> {
    let err = |why: String| SpecError::Group("security group", s.to_string(), why);
    let (name, list) = s.split_once(':').ok_or_else(|| err("expected NAME:PATTERN[,PATTERN]".into()))?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(err("empty or blank name".into()));
    }
    Ok((name.to_string(), NamePatterns::parse(list).map_err(|e| err(e.to_string()))?))
}

/// Parses `ID=STATE[,pref][,remote=N[+N...]]` (a target port group).
///
/// # Errors
/// [`SpecError::Group`].
pub fn parse_port_group(s: &str) -> Result<PortGroup, SpecError> {
    let err = |why: &str| SpecError::Group("target port group", s.to_string(), why.to_string());
    let (id, rest) = s.split_once('=').ok_or_else(|| err("expected ID=STATE"))?;
    let id: u16 = id.parse().ok().filter(|i| *i > 0).ok_or_else(|| err("ID must be 1..65535"))?;
    let mut parts = rest.split(',');
    let state = parts
        .next()
        .and_then(AluaState::from_name)
        .ok_or_else(|| err("STATE must be active, nonoptimized, standby, unavailable, offline or transitioning"))?;
    let mut g = PortGroup::new(id);
    g.state = state;
    for p in parts {
        match p.split_once('=') {
            None if p == "pref" => g.preferred = true,
            Some(("remote", list)) => {
                for n in list.split('+') {
                    g.remote_ports.push(n.parse().ok().filter(|n| *n > 0).ok_or_else(|| err("bad remote port id"))?);
                }
            }
            _ => return Err(err("options are pref and remote=N[+N]")),
        }
    }
    Ok(g)
}

/// Parses the `--lun` argument `arg`, builds its device (named `PREFIX:N`, state in
/// `state_dir`) and maps it in `target`: in each security group it names (`group=`), else in
/// the default map. With `groups_allowed` false a `group=` is refused (a binary without
/// security group options). Errors name the argument.
///
/// # Errors
/// A bad spec, a device that cannot be opened, or a mapping the target refuses.
pub fn map_lun(
    target: &scst::Target,
    prefix: &str,
    arg: &str,
    state_dir: Option<&Path>,
    groups_allowed: bool,
) -> Result<Arc<Device>, String> {
    let spec = LunSpec::parse(arg).map_err(|e| format!("--lun {arg}: {e}"))?;
    if !groups_allowed && !spec.groups.is_empty() {
        return Err(format!("--lun {arg}: group= needs security groups, which this target has no options for"));
    }
    let dev = spec.build(&format!("{prefix}:{}", spec.lun), state_dir).map_err(|e| format!("--lun {arg}: {e}"))?;
    if spec.groups.is_empty() {
        target.add_lun(scst::Lun(spec.lun), dev.clone(), false).map_err(|e| format!("--lun {arg}: {e}"))?;
    }
    for (group, ro) in &spec.groups {
        target
            .add_group_lun(Some(group), scst::Lun(spec.lun), dev.clone(), *ro)
            .map_err(|e| format!("--lun {arg}: {e} (define it with --group)"))?;
    }
    Ok(dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn rbd_specs() {
        let s = LunSpec::parse("2=rbd:pool1/disk-a,conf=/etc/ceph/x.conf,id=gw1,bs=4096,ro").unwrap();
        assert_eq!(
            s.backend,
            Backend::Rbd {
                pool: "pool1".into(),
                image: "disk-a".into(),
                conf: Some("/etc/ceph/x.conf".into()),
                id: Some("gw1".into()),
            }
        );
        assert_eq!((s.block_size, s.read_only), (4096, true));
        let s = LunSpec::parse("0=rbd:rbd/img").unwrap();
        assert_eq!(s.backend, Backend::Rbd { pool: "rbd".into(), image: "img".into(), conf: None, id: None });
        for bad in ["0=rbd:img", "0=rbd:/img", "0=rbd:pool/", "0=rbd:a/b/c", "0=rbd:p/i,thin", "0=rbd:p/i,conf="] {
            assert!(LunSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn specs() {
        let s = LunSpec::parse("3=fileio:/tmp/x.img,size=1G,thin,wt,bs=4096").unwrap();
        assert_eq!(s.lun, 3);
        assert_eq!(s.block_size, 4096);
        assert_eq!(
            s.backend,
            Backend::Fileio {
                path: "/tmp/x.img".into(),
                size: Some(1 << 30),
                thin: true,
                write_through: true,
                direct: false,
                physical_block_size: 0,
                zerocopy: true,
                aio: AioMode::Auto,
            }
        );
        let aio = |s: &str| match LunSpec::parse(s).map(|l| l.backend) {
            Ok(Backend::Fileio { aio, .. } | Backend::Blockio { aio, .. }) => Some(aio),
            _ => None,
        };
        assert_eq!(aio("0=fileio:/x,aio=uring"), Some(AioMode::Uring));
        assert_eq!(aio("0=fileio:/x,direct,aio=threads"), Some(AioMode::Threads));
        assert_eq!(aio("0=blockio:/dev/x,aio=auto"), Some(AioMode::Auto));
        assert!(LunSpec::parse("0=fileio:/x,aio=libaio").is_err());
        assert!(LunSpec::parse("0=ram:1M,aio=uring").is_err(), "only disks with I/O take aio=");
        let s = LunSpec::parse("0=ram:64M,removable").unwrap();
        assert!(s.removable && !s.read_only);
        assert_eq!(s.sanitize_rate, None);
        assert_eq!(LunSpec::parse("0=ram:64M,sanitize_rate=4M").unwrap().sanitize_rate, Some(4 << 20));
        assert_eq!(LunSpec::parse("0=fileio:/x,pbs=4096,sanitize_rate=0").unwrap().sanitize_rate, Some(0));
        assert!(LunSpec::parse("0=ram:64M,sanitize_rate=fast").is_err());
        let s = LunSpec::parse("1=ram:1M,group=db,group=web:ro").unwrap();
        assert_eq!(s.groups, vec![("db".to_string(), false), ("web".to_string(), true)]);
        assert!(LunSpec::parse("1=ram:1M,group=").is_err());
        assert!(LunSpec::parse("1=ram:1M,group=db:rw").is_err());
    }

    #[test]
    fn groups_and_port_groups() {
        let (name, p) = parse_group("db:iqn.2026-11.com.example:*,!*:test").unwrap();
        assert_eq!(name, "db");
        assert!(p.admits("iqn.2026-11.com.example:db1") && !p.admits("iqn.2026-11.com.example:test"));
        assert!(parse_group("db").is_err());
        assert!(parse_group(":x").is_err());
        assert!(parse_group("db:a,,b").is_err());
        let g = parse_port_group("2=standby,pref,remote=7+8").unwrap();
        assert_eq!((g.id, g.state, g.preferred, g.remote_ports), (2, AluaState::Standby, true, vec![7, 8]));
        assert_eq!(parse_port_group("1=active").unwrap().state, AluaState::ActiveOptimized);
        assert!(parse_port_group("0=active").is_err());
        assert!(parse_port_group("1=sleepy").is_err());
        assert!(parse_port_group("1=active,remote=x").is_err());
        assert_eq!(
            LunSpec::parse("1=blockio:/dev/loop0,ro").unwrap().backend,
            Backend::Blockio { path: "/dev/loop0".into(), thin: false, aio: AioMode::Auto }
        );
        assert!(LunSpec::parse("0=blockio:/dev/x,bs=512").is_err(), "block size comes from the device");
        assert!(LunSpec::parse("0=ram:64M,thin").is_err());
        assert!(LunSpec::parse("16384=ram:1M").is_err());
        assert!(LunSpec::parse("ram:1M").is_err());
        assert!(LunSpec::parse("0=tape:1M").is_err());
        assert!(LunSpec::parse("0=fileio:").is_err());
    }

    #[test]
    fn sg_specs() {
        let s = LunSpec::parse("0=sg:/dev/sg3").unwrap();
        assert_eq!(
            s.backend,
            Backend::Sg {
                path: "/dev/sg3".into(),
                timeout: 30,
                long_timeout: 1800,
                forward_reservations: false,
                threads: 8
            }
        );
        let s =
            LunSpec::parse("2=sg:/dev/sg0,timeout=5,long_timeout=7200,pr=passthrough,threads=4,ro,group=db").unwrap();
        assert_eq!(
            s.backend,
            Backend::Sg {
                path: "/dev/sg0".into(),
                timeout: 5,
                long_timeout: 7200,
                forward_reservations: true,
                threads: 4
            }
        );
        assert!(s.read_only);
        assert_eq!(s.groups, vec![("db".to_string(), false)]);
        assert!(matches!(
            LunSpec::parse("0=sg:/dev/sg0,pr=emulate").unwrap().backend,
            Backend::Sg { forward_reservations: false, .. }
        ));
        for bad in [
            "0=sg:",
            "0=sg:/dev/sg0,timeout=0",
            "0=sg:/dev/sg0,timeout=x",
            "0=sg:/dev/sg0,pr=maybe",
            "0=sg:/dev/sg0,threads=0",
            "0=sg:/dev/sg0,threads=17",
            "0=sg:/dev/sg0,bs=512",
            "0=sg:/dev/sg0,removable",
            "0=sg:/dev/sg0,thin",
            "0=sg:/dev/sg0,sanitize_rate=1M",
            "0=ram:1M,timeout=5",
            "0=blockio:/dev/x,pr=passthrough",
        ] {
            assert!(LunSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sg_build_reports_a_node_that_is_not_sg() {
        // A regular file is not a SCSI generic device: the build fails with the path named.
        let f = tempfile::NamedTempFile::new().unwrap();
        let spec = LunSpec::parse(&format!("0=sg:{}", f.path().display())).unwrap();
        let e = spec.build("t:0", None).unwrap_err().to_string();
        assert!(e.contains(&f.path().display().to_string()) && e.contains("SCSI generic"), "{e}");
    }
}
