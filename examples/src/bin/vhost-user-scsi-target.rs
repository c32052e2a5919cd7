//! `vhost-user-scsi-target`: a VM's virtio-scsi controller served by scst-rs.
//!
//! ```text
//! vhost-user-scsi-target --socket /tmp/vus.sock --lun 0=ram:1G
//! qemu-system-x86_64 -object memory-backend-memfd,id=mem,size=2G,share=on -numa node,memdev=mem \
//!     -chardev socket,id=vus,path=/tmp/vus.sock -device vhost-user-scsi-pci,chardev=vus ...
//! ```
//!
//! The socket is one I_T nexus. When the VM disconnects, the target waits for the next
//! connection on the same socket (the nexus, its reservations and unit attentions stay). Ctrl-C
//! or SIGTERM flushes every device and exits (with --once, so does the end of the first
//! connection). SIGHUP re-reads --lun-file and hot-adds or removes LUNs; capacity changes are
//! checked every --rescan-interval seconds. The guest learns both from the event queue.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;
use scst::alua::AluaConfig;
use scst::{Lun, SgvConfig, SgvPool, Target};
use scst_examples::spec::{LunSpec, parse_port_group, parse_size};
use scst_local::vhost_user::{VhostScsiConfig, VhostUserScsi};

const LONG_ABOUT: &str = "\
Serves SCSI logical units to a virtual machine over vhost-user-scsi (QEMU's
-device vhost-user-scsi-pci, cloud-hypervisor). The VM's memory must be shared
(memory-backend-memfd or -file with share=on).

LUN specifications (--lun N=SPEC), as for iscsi-target:
  ram:SIZE[,bs=512|4096][,ro][,removable]        in memory, sparse (the default: 0=ram:1G)
  nullio:SIZE[,bs=512|4096][,ro][,removable]     reads zeros, discards writes
  fileio:PATH[,size=SIZE][,thin][,ro][,wt][,direct][,bs=512|4096][,pbs=N][,removable]
  blockio:DEVICE[,thin][,ro][,removable]
SIZE is like 64M, 1G, 1T.

Several --socket: one controller each (its own I_T nexus and target port, relative port ids
1, 2, ... in order) to the same LUNs, i.e. several paths for one guest. ALUA: --port-group
defines target port groups, --tpg puts each socket's port in one (in --socket order).";

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "vhost-user-scsi-target", version, about = "A vhost-user-scsi target (scst-rs)", long_about = LONG_ABOUT)]
struct Args {
    /// A vhost-user Unix socket to listen on (created; a stale file is replaced). Repeatable:
    /// each socket is its own controller, I_T nexus and target port (relative port ids 1, 2,
    /// ... in the order given), all to the same LUNs: two controllers give a guest two paths.
    #[arg(long = "socket", value_name = "PATH", required = true)]
    sockets: Vec<PathBuf>,
    /// A logical unit (repeatable). Default 0=ram:1G.
    #[arg(long = "lun", value_name = "N=SPEC")]
    luns: Vec<String>,
    /// SCSI target name (names the target port and the devices).
    #[arg(long, value_name = "NAME", default_value = "iqn.2026-11.rs.scst:vhost")]
    target: String,
    /// Initiator name of the nexuses (default: vhost-user-scsi:<socket path>, one per socket).
    #[arg(long, value_name = "NAME")]
    initiator: Option<String>,
    /// Request queues offered to the guest (it uses at most one per vCPU).
    #[arg(long, value_name = "N", default_value_t = 4)]
    queues: usize,
    /// A file of further LUNs, one N=SPEC per line (`#` comments); re-read on SIGHUP: LUNs it
    /// gained are hot-added, LUNs it lost hot-removed (the guest is told on the event queue).
    #[arg(long = "lun-file", value_name = "FILE")]
    lun_file: Option<PathBuf>,
    /// Seconds between checks for capacity changes of the LUNs (a grown file or device), which
    /// the guest is told about on the event queue; 0 = never.
    #[arg(long = "rescan-interval", value_name = "SECONDS", default_value_t = 2)]
    rescan_interval: u64,
    /// An ALUA target port group (repeatable): ID=STATE[,pref][,remote=N[+N]], STATE one of
    /// active, nonoptimized, standby, unavailable, offline, transitioning.
    #[arg(long = "port-group", value_name = "ID=STATE[,pref][,remote=N[+N]]")]
    port_groups: Vec<String>,
    /// Allow SET TARGET PORT GROUPS (explicit ALUA).
    #[arg(long = "explicit-alua")]
    explicit_alua: bool,
    /// The ALUA target port group of each socket's port, in --socket order (repeatable; the last
    /// one given also applies to the sockets after it).
    #[arg(long = "tpg", value_name = "ID")]
    tpgs: Vec<u16>,
    /// Serve one connection per socket, then exit (default: wait for the next one).
    #[arg(long)]
    once: bool,
    /// Log level: error, warn, info, debug or trace (or a tracing filter directive).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log: String,
    /// Memory for command buffers (SIZE); beyond it commands get BUSY.
    #[arg(long = "buffer-memory", value_name = "SIZE", default_value = "1G")]
    buffer_memory: String,
}

fn run(args: Args) -> Result<(), String> {
    let buffer_memory = parse_size(&args.buffer_memory).map_err(|e| e.to_string())?;
    let sgv = SgvPool::new(SgvConfig {
        mem_limit: usize::try_from(buffer_memory).unwrap_or(usize::MAX),
        ..SgvConfig::default()
    });
    let target = Target::new(args.target.clone(), sgv);
    let luns =
        if args.luns.is_empty() && args.lun_file.is_none() { vec!["0=ram:1G".to_string()] } else { args.luns.clone() };
    for l in &luns {
        map_lun(&target, &args.target, l)?;
    }
    let mut file_luns = BTreeMap::new();
    if let Some(f) = &args.lun_file {
        reload(&target, &args.target, f, &mut file_luns)?;
    }
    if !args.port_groups.is_empty() {
        let groups = args
            .port_groups
            .iter()
            .map(|g| parse_port_group(g).map_err(|e| format!("--port-group: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        target
            .set_alua(Some(AluaConfig { groups, explicit: args.explicit_alua }))
            .map_err(|e| format!("--port-group: {e}"))?;
    } else if args.explicit_alua || !args.tpgs.is_empty() {
        return Err("--explicit-alua and --tpg need --port-group".into());
    }
    if args.tpgs.contains(&0) {
        return Err("--tpg must be 1..65535".into());
    }
    // One controller (I_T nexus, target port) per socket: relative port ids 1, 2, ...
    let mut ctrls = Vec::new();
    for (i, socket) in args.sockets.iter().enumerate() {
        let rel_port_id = u16::try_from(i + 1).map_err(|_| "too many --socket".to_string())?;
        let cfg = VhostScsiConfig {
            initiator_name: args.initiator.clone(),
            request_queues: args.queues,
            rel_port_id,
            tpg_id: args.tpgs.get(i).or(args.tpgs.last()).copied().unwrap_or(1),
            ..VhostScsiConfig::default()
        };
        ctrls
            .push(VhostUserScsi::new(&target, socket, cfg).map_err(|e| format!("--socket {}: {e}", socket.display()))?);
    }
    let live = Arc::new(AtomicUsize::new(ctrls.len()));
    let mut servers = Vec::new();
    for (ctrl, socket) in ctrls.iter().zip(&args.sockets) {
        let ctrl = Arc::clone(ctrl);
        let socket = socket.clone();
        let once = args.once;
        let live = Arc::clone(&live);
        let t = std::thread::Builder::new()
            .name("vhost-user".into())
            .spawn(move || {
                let r = scst_examples::cli::serve_vhost_user(&ctrl, &socket, once);
                // After the last socket's connection (--once), wake the main thread's sigwait:
                // it flushes the devices and exits.
                if live.fetch_sub(1, Ordering::AcqRel) == 1 {
                    let _ = kill(Pid::this(), Signal::SIGTERM);
                }
                r
            })
            .map_err(|e| format!("spawning the vhost-user thread: {e}"))?;
        servers.push(t);
    }
    if args.rescan_interval > 0 {
        let ctrls = ctrls.clone();
        let every = Duration::from_secs(args.rescan_interval);
        std::thread::Builder::new()
            .name("rescan".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    for c in &ctrls {
                        c.rescan();
                    }
                }
            })
            .map_err(|e| format!("spawning the rescan thread: {e}"))?;
    }
    let mut out = std::io::stdout().lock();
    for socket in &args.sockets {
        let _ = writeln!(out, "vhost-user-scsi {}", socket.display());
    }
    let _ = out.flush();
    drop(out);
    let sig = loop {
        let sig = signal_set().wait().map_err(|e| format!("waiting for a signal: {e}"))?;
        if sig != Signal::SIGHUP {
            break sig;
        }
        match &args.lun_file {
            Some(f) => match reload(&target, &args.target, f, &mut file_luns) {
                Ok(()) => {
                    for c in &ctrls {
                        let n = c.rescan();
                        tracing::info!(luns = ?c.session().luns(), events = n, "LUN file reloaded");
                    }
                }
                Err(e) => tracing::error!(error = %e, "--lun-file not reloaded"),
            },
            None => tracing::info!("SIGHUP without --lun-file: nothing to reload"),
        }
    };
    tracing::info!(signal = ?sig, "shutting down");
    for (c, socket) in ctrls.iter().zip(&args.sockets) {
        let chains: Vec<usize> = c.stats().chains.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        tracing::info!(socket = %socket.display(), ?chains, "chains served per queue (control, event, requests...)");
    }
    let mut result = Ok(());
    for t in servers {
        if t.is_finished() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e.to_string()),
                Err(_) => result = Err("a vhost-user thread panicked".into()),
            }
        }
    }
    for d in &target.devices() {
        if let Err(e) = d.flush() {
            tracing::error!(device = d.name(), error = %e, "flush failed");
        }
    }
    result
}

/// SIGINT and SIGTERM (shut down), SIGHUP (reload --lun-file).
fn signal_set() -> SigSet {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGHUP);
    signals
}

/// Builds the device of one `N=SPEC` and maps it.
fn map_lun(target: &Arc<Target>, name: &str, l: &str) -> Result<(), String> {
    scst_examples::spec::map_lun(target, name, l, None, false).map(drop)
}

/// Applies `file` to the LUNs it mapped before (`mapped`, by LUN and spec line): maps the new
/// lines, unmaps the LUNs whose line went away (a changed line is unmapped, then mapped anew).
fn reload(target: &Arc<Target>, name: &str, file: &Path, mapped: &mut BTreeMap<u16, String>) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("--lun-file {}: {e}", file.display()))?;
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let mut want = BTreeMap::new();
    for l in &lines {
        let spec = LunSpec::parse(l).map_err(|e| format!("--lun-file: {l}: {e}"))?;
        want.insert(spec.lun, (*l).to_string());
    }
    let gone: Vec<u16> = mapped.iter().filter(|(n, l)| want.get(n) != Some(*l)).map(|(n, _)| *n).collect();
    for n in gone {
        mapped.remove(&n);
        if let Ok(dev) = target.remove_lun(Lun(n)) {
            let _ = dev.flush();
        }
    }
    for (n, l) in want {
        if let std::collections::btree_map::Entry::Vacant(e) = mapped.entry(n) {
            map_lun(target, name, &l)?;
            e.insert(l);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    scst_examples::cli::main("vhost-user-scsi-target", signal_set(), |a: &Args| &a.log, run)
}
