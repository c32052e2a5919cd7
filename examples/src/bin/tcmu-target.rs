//! `tcmu-target`: one scst-rs LUN as a LIO TCMU backstore, and with `--loopback` as a host
//! `/dev/sdX` through tcm_loop.
//!
//! ```text
//! modprobe -a target_core_user tcm_loop
//! tcmu-target --lun 0=ram:256M --name scst0 --loopback
//! ```
//!
//! It sets configfs up itself (root, configfs mounted at /sys/kernel/config):
//!
//! ```text
//! mkdir   /sys/kernel/config/target/core/user_1/scst0
//! echo dev_config=scst/scst0 > .../scst0/control; echo dev_size=BYTES > .../control
//! echo hw_block_size=512 > .../control; echo 1 > .../scst0/enable      → /dev/uioN appears
//! with --loopback:
//! mkdir   /sys/kernel/config/target/loopback/naa.WWN/tpgt_1
//! echo naa.INITIATOR > .../tpgt_1/nexus        (before the LUN: linking it makes tcm_loop scan)
//! mkdir   .../tpgt_1/lun/lun_0
//! ln -s   /sys/kernel/config/target/core/user_1/scst0 .../lun_0/scst0  → /dev/sdX appears
//! ```
//!
//! The targetcli equivalent (without tcmu-runner: the `user:` backstore needs a handler, which
//! is why this binary writes configfs itself): `/backstores/user:scst create scst0 256M scst0`,
//! `/loopback create`, `/loopback/naa.../luns create /backstores/user:scst/scst0`.
//!
//! Ctrl-C or SIGTERM tears down in reverse order (LUN link, nexus, LUN, TPG, WWN, the user
//! device), flushes the device and exits. What the kernel does instead of our core (REPORT LUNS,
//! PR, ALUA, task management) is in `scst_local::tcmu`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use scst::{Lun, SgvConfig, SgvPool, Target};
use scst_examples::cli;
use scst_examples::spec::LunSpec;
use scst_local::tcmu::{TcmuConfig, TcmuDevice, find_uio};

const CONFIGFS: &str = "/sys/kernel/config/target";

/// Command line.
#[derive(clap::Parser, Debug)]
#[command(
    name = "tcmu-target",
    version,
    about = "A LIO TCMU backstore served by scst-rs (with tcm_loop: a host /dev/sdX)"
)]
struct Args {
    /// The logical unit, as for the other targets: N=SPEC (ram:SIZE, nullio:SIZE, fileio:PATH,
    /// blockio:DEVICE, ...). N is the LUN inside our target; the host's LUN number is tcm_loop's.
    #[arg(long = "lun", value_name = "N=SPEC", default_value = "0=ram:256M")]
    lun: String,
    /// Name of the TCMU device in configfs (core/user_HBA/NAME) and its dev_config.
    #[arg(long, value_name = "NAME", default_value = "scst0")]
    name: String,
    /// The TCMU HBA index (core/user_HBA).
    #[arg(long, value_name = "N", default_value_t = 1)]
    hba: u32,
    /// Also create a tcm_loop target with the device as its LUN 0 and a nexus: the host gets a
    /// SCSI disk.
    #[arg(long)]
    loopback: bool,
    /// tcm_loop target WWN (with --loopback).
    #[arg(long, value_name = "WWN", default_value = "naa.5001405aa0000001")]
    wwn: String,
    /// tcm_loop initiator WWN for the nexus (with --loopback), also our session's initiator name.
    #[arg(long, value_name = "WWN", default_value = "naa.5001405bb0000001")]
    initiator: String,
    /// SCSI target name of our core's target.
    #[arg(long, value_name = "NAME", default_value = "iqn.2026-12.rs.scst:tcmu")]
    target: String,
    /// Pass PERSISTENT RESERVE and the ALUA commands to our core instead of the kernel's
    /// emulation (writes 0 to the device's attrib/pgr_support and attrib/alua_support).
    #[arg(long = "core-pr-alua")]
    core_pr_alua: bool,
    /// Log level: error, warn, info, debug or trace (or a tracing filter directive).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log: String,
}

/// The configfs objects we created, undone in reverse order on drop.
#[derive(Default)]
struct Configfs {
    undo: Vec<Undo>,
}

enum Undo {
    Rmdir(PathBuf),
    Unlink(PathBuf),
    Write(PathBuf, &'static str),
}

impl Configfs {
    fn mkdir(&mut self, p: &Path) -> Result<(), String> {
        std::fs::create_dir(p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
        self.undo.push(Undo::Rmdir(p.to_path_buf()));
        Ok(())
    }

    fn mkdirs(&mut self, base: &Path, rel: &[&str]) -> Result<PathBuf, String> {
        let mut p = base.to_path_buf();
        for r in rel {
            p.push(r);
            if !p.exists() {
                self.mkdir(&p)?;
            }
        }
        Ok(p)
    }

    fn symlink(&mut self, target: &Path, link: &Path) -> Result<(), String> {
        std::os::unix::fs::symlink(target, link).map_err(|e| format!("ln -s {}: {e}", link.display()))?;
        self.undo.push(Undo::Unlink(link.to_path_buf()));
        Ok(())
    }

    fn set(&mut self, p: &Path, v: &str, undo: Option<&'static str>) -> Result<(), String> {
        write(p, v)?;
        if let Some(u) = undo {
            self.undo.push(Undo::Write(p.to_path_buf(), u));
        }
        Ok(())
    }

    fn tear_down(&mut self) {
        while let Some(u) = self.undo.pop() {
            let r = match &u {
                Undo::Rmdir(p) => std::fs::remove_dir(p).map_err(|e| (p.clone(), e)),
                Undo::Unlink(p) => std::fs::remove_file(p).map_err(|e| (p.clone(), e)),
                Undo::Write(p, v) => std::fs::write(p, v).map_err(|e| (p.clone(), e)),
            };
            if let Err((p, e)) = r {
                tracing::error!(path = %p.display(), error = %e, "configfs tear-down step failed");
            }
        }
    }
}

impl Drop for Configfs {
    fn drop(&mut self) {
        self.tear_down();
    }
}

fn write(p: &Path, v: &str) -> Result<(), String> {
    std::fs::write(p, v).map_err(|e| format!("echo {v} > {}: {e}", p.display()))
}

fn run(args: Args) -> Result<(), String> {
    let spec = LunSpec::parse(&args.lun).map_err(|e| format!("--lun {}: {e}", args.lun))?;
    let target = Target::new(args.target.clone(), SgvPool::new(SgvConfig::default()));
    let dev = spec.build(&format!("{}:{}", args.target, spec.lun), None).map_err(|e| format!("--lun: {e}"))?;
    let geo = dev
        .handler()
        .block_access()
        .map(|b| b.block_geometry())
        .ok_or_else(|| "--lun: TCMU needs a block device LUN".to_string())?;
    target.add_lun(Lun(spec.lun), dev.clone(), false).map_err(|e| format!("--lun: {e}"))?;

    let mut cfs = Configfs::default();
    let core = Path::new(CONFIGFS).join("core");
    if !core.exists() {
        return Err(format!("{} missing: modprobe target_core_user (and mount configfs)", core.display()));
    }
    let udev = cfs.mkdirs(&core, &[&format!("user_{}", args.hba), &args.name])?;
    let control = udev.join("control");
    cfs.set(&control, &format!("dev_config=scst/{}", args.name), None)?;
    cfs.set(&control, &format!("dev_size={}", geo.blocks * u64::from(geo.block_size)), None)?;
    cfs.set(&control, &format!("hw_block_size={}", geo.block_size), None)?;
    cfs.set(&udev.join("enable"), "1", None)?;
    if args.core_pr_alua {
        cfs.set(&udev.join("attrib/pgr_support"), "0", None)?;
        cfs.set(&udev.join("attrib/alua_support"), "0", None)?;
    }

    let deadline = Instant::now() + Duration::from_secs(5);
    let (uio, size) = loop {
        match find_uio(&args.name) {
            Ok(v) => break v,
            Err(e) if Instant::now() > deadline => return Err(e.to_string()),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let cfg = TcmuConfig { initiator_name: args.initiator.clone(), lun: spec.lun, ..TcmuConfig::default() };
    let tcmu = TcmuDevice::open(&target, &uio, size, cfg).map_err(|e| e.to_string())?;
    tracing::info!(uio = %uio.display(), map = size, name = %args.name, "serving the TCMU ring");
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let (tcmu, stop) = (tcmu.clone(), stop.clone());
        std::thread::Builder::new()
            .name("tcmu-ring".into())
            .spawn(move || tcmu.serve(&stop))
            .map_err(|e| format!("spawn: {e}"))?
    };

    if args.loopback {
        let loopback = Path::new(CONFIGFS).join("loopback");
        if !loopback.exists() {
            cfs.mkdir(&loopback)?;
        }
        let tpg = cfs.mkdirs(&loopback, &[&args.wwn, "tpgt_1"])?;
        // The nexus first: linking the LUN makes tcm_loop scan it, which needs the nexus.
        cfs.set(&tpg.join("nexus"), &args.initiator, Some("NULL"))?;
        let lun = cfs.mkdirs(&tpg, &["lun", "lun_0"])?;
        cfs.symlink(&udev, &lun.join(&args.name))?;
        tracing::info!(wwn = %args.wwn, initiator = %args.initiator, "tcm_loop nexus up");
    }
    println!("READY {}", uio.display());

    let sig = cli::stop_signals(&[]).wait().map_err(|e| format!("waiting for a signal: {e}"))?;
    tracing::info!(signal = ?sig, "stopping");
    // The LUN and nexus go first (the SCSI disk is removed while we still serve the ring).
    let mut keep = Vec::new();
    while let Some(u) = cfs.undo.pop() {
        if matches!(&u, Undo::Rmdir(p) if p == &udev) {
            keep.push(u);
            break;
        }
        let mut one = Configfs { undo: vec![u] };
        one.tear_down();
    }
    stop.store(true, Ordering::Relaxed);
    let served = server.join().map_err(|_| "ring thread panicked".to_string())?;
    let stats = tcmu.stats();
    tracing::info!(
        commands = stats.commands.load(Ordering::Relaxed),
        bad_entries = stats.bad_entries.load(Ordering::Relaxed),
        async_completions = stats.async_completions.load(Ordering::Relaxed),
        "ring stopped"
    );
    drop(tcmu);
    cli::flush_devices([&dev]);
    cfs.undo.extend(keep);
    cfs.tear_down();
    served.map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    cli::main("tcmu-target", cli::stop_signals(&[]), |a: &Args| &a.log, run)
}
