//! LUN specifications of the command line:
//!
//! ```text
//! SPEC := ram:SIZE[,bs=512|4096][,ro][,removable]
//!       | nullio:SIZE[,bs=512|4096][,ro][,removable]
//!       | fileio:PATH[,size=SIZE][,thin][,ro][,wt][,direct][,bs=512|4096][,removable]
//!       | blockio:DEVICE[,ro][,removable]
//! SIZE := N[K|M|G|T] (binary multiples)
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use scst::{Device, DeviceConfig, Disk};
use scst_backends::{BlockDevStore, FileOptions, FileStore, NullStore, OpenError, RamStore};

/// A parse error in a LUN specification.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecError {
    /// `N=SPEC` without `=` or with a bad LUN number.
    #[error("expected N=SPEC with N in 0..=16383: {0:?}")]
    Lun(String),
    /// Unknown backend kind.
    #[error("unknown backend {0:?} (ram, nullio, fileio, blockio)")]
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
    },
    /// Block device.
    Blockio {
        /// The device node.
        path: PathBuf,
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
        let mut out =
            Self { lun, backend: Backend::Ram { size: 0 }, block_size: 512, read_only: false, removable: false };
        let (mut size, mut thin, mut wt, mut direct) = (None, false, false, false);
        let kind_name: &'static str = match kind {
            "ram" => "ram",
            "nullio" => "nullio",
            "fileio" => "fileio",
            "blockio" => "blockio",
            _ => return Err(SpecError::Kind(kind.to_string())),
        };
        for opt in parts {
            let bad = || SpecError::Option(opt.to_string(), kind_name);
            match (opt.split_once('='), kind_name) {
                (None, _) if opt == "ro" => out.read_only = true,
                (None, _) if opt == "removable" => out.removable = true,
                (None, "fileio") if opt == "thin" => thin = true,
                (None, "fileio") if opt == "wt" => wt = true,
                (None, "fileio") if opt == "direct" => direct = true,
                (Some(("bs", v)), "ram" | "nullio" | "fileio") => {
                    out.block_size = match v {
                        "512" => 512,
                        "4096" => 4096,
                        _ => return Err(bad()),
                    }
                }
                (Some(("size", v)), "fileio") => size = Some(parse_size(v)?),
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
            },
            _ => Backend::Blockio { path: first.ok_or(SpecError::Missing("blockio", "a DEVICE"))?.into() },
        };
        Ok(out)
    }

    /// Opens the backing store and builds the device, named `name` (its serial number and NAA
    /// designator derive from the name).
    ///
    /// # Errors
    /// If the store cannot be opened or the worker threads cannot start.
    pub fn build(&self, name: &str) -> Result<Arc<Device>, OpenError> {
        let mut cfg = DeviceConfig::new(name);
        cfg.read_only = self.read_only;
        cfg.removable = self.removable;
        let bs = self.block_size;
        let io = |e: std::io::Error| OpenError::Io { path: name.to_string(), source: e };
        let dev = match &self.backend {
            Backend::Ram { size } => Device::new(cfg, Disk::new(RamStore::new(*size, bs)?)),
            Backend::Nullio { size } => Device::new(cfg, Disk::new(NullStore::new(*size, bs)?)),
            Backend::Fileio { path, size, thin, write_through, direct } => {
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
                };
                Device::new(cfg, Disk::new(FileStore::open(path, opts)?))
            }
            Backend::Blockio { path } => Device::new(cfg, Disk::new(BlockDevStore::open(path, self.read_only)?)),
        };
        dev.map_err(io)
    }
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
                direct: false
            }
        );
        let s = LunSpec::parse("0=ram:64M,removable").unwrap();
        assert!(s.removable && !s.read_only);
        assert_eq!(
            LunSpec::parse("1=blockio:/dev/loop0,ro").unwrap().backend,
            Backend::Blockio { path: "/dev/loop0".into() }
        );
        assert!(LunSpec::parse("0=blockio:/dev/x,bs=512").is_err(), "block size comes from the device");
        assert!(LunSpec::parse("0=ram:64M,thin").is_err());
        assert!(LunSpec::parse("16384=ram:1M").is_err());
        assert!(LunSpec::parse("ram:1M").is_err());
        assert!(LunSpec::parse("0=tape:1M").is_err());
        assert!(LunSpec::parse("0=fileio:").is_err());
    }
}
