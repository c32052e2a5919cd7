//! `iscsi-target`: an iSCSI target in one command.
//!
//! With no arguments it serves a 1 GiB RAM disk as LUN 0 of `iqn.2026-11.rs.scst:default` on
//! 127.0.0.1:3260. Ctrl-C or SIGTERM shuts it down cleanly: initiators are asked to log out
//! (Async Message) and every device is flushed.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use scst::acl::NamePatterns;
use scst::alua::AluaConfig;
use scst::{SgvConfig, SgvPool, Target};
use scst_examples::spec::{map_lun, parse_group, parse_port_group, parse_size};
use scst_transport_iscsi::{ChapConfig, ChapCredentials, IscsiConfig, IscsiServer, TargetEntry, ZeroCopy};

const LONG_ABOUT: &str = "\
Serves SCSI logical units over iSCSI.

LUN specifications (--lun N=SPEC):
  ram:SIZE[,bs=512|4096][,ro][,removable]        in memory, sparse (the default: 0=ram:1G)
  nullio:SIZE[,bs=512|4096][,ro][,removable]     reads zeros, discards writes
  fileio:PATH[,size=SIZE][,thin][,ro][,wt][,direct][,bs=512|4096][,pbs=N][,zerocopy=on|off]
        [,removable]                             a file, created with SIZE if missing;
                                                 thin = sparse + UNMAP, wt = write-through,
                                                 direct = O_DIRECT, pbs = physical block size,
                                                 zerocopy = READs of 64 KiB or more of cached
                                                 data sent from the page cache (on; see
                                                 --zero-copy)
  blockio:DEVICE[,thin][,ro][,removable]         a block device (O_DIRECT; thin = discard)
  fileio and blockio take aio=auto|uring|threads: READ, WRITE and SYNCHRONIZE CACHE go through
  io_uring from the connection's thread (auto, the default, where the kernel allows it), or to
  worker threads with synchronous calls (threads)
  sg:/dev/sgN[,timeout=SECS][,long_timeout=SECS][,pr=passthrough|emulate][,threads=N][,ro]
                                                 SCSI pass-through to a real device of any
                                                 type: commands go to it unchanged; REPORT
                                                 LUNS, unit attentions and (unless
                                                 pr=passthrough) reservations stay the
                                                 target's; timeout of most commands (30) and
                                                 of FORMAT/REWIND/... (1800); threads =
                                                 commands in flight (8)
  rbd:POOL/IMAGE[,conf=PATH][,id=CLIENT][,bs=512|4096][,ro][,removable]
                                                 a Ceph RBD image through librbd (builds with
                                                 the rbd feature only); conf = ceph.conf
                                                 (default: librados' search), id = client name
The disk kinds also take sanitize_rate=SIZE|0: the bytes per second SANITIZE OVERWRITE writes
at most (default 16M; 0 = unlimited); every kind takes group=NAME[:ro] (repeatable): map the LUN in that
security group (read-only there with :ro) instead of the default map.
SIZE is like 64M, 1G, 1T.

Access control (SCST security groups): --group NAME:PATTERN[,PATTERN] defines a group of
initiator names (`*`, `?`; a leading `!` excludes; the last matching pattern decides). An
initiator sees the LUNs of the first group that admits it, else the LUNs given without group=;
with --refuse-unmatched an initiator no group admits cannot log in.

ALUA: --port-group ID=STATE[,pref][,remote=N[+N]] (repeatable) defines target port groups;
STATE is active, nonoptimized, standby, unavailable, offline or transitioning. This target's
port (relative port id = --tpgt, default 1) is in group --tpg (default 1); remote=... lists the
relative port ids of the group's ports on other nodes. --explicit-alua lets initiators change
states with SET TARGET PORT GROUPS.";

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "iscsi-target", version, about = "An iSCSI target (scst-rs)", long_about = LONG_ABOUT)]
struct Args {
    /// Portal to listen on (repeatable). Default 127.0.0.1:3260.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// iSCSI name of the target.
    #[arg(long, value_name = "IQN", default_value = "iqn.2026-11.rs.scst:default")]
    target: String,
    /// A logical unit (repeatable). Default 0=ram:1G.
    #[arg(long = "lun", value_name = "N=SPEC")]
    luns: Vec<String>,
    /// Require CHAP: the initiator's user name and secret (normal and discovery sessions).
    #[arg(long, value_name = "USER:SECRET")]
    chap: Option<String>,
    /// The target's own CHAP user name and secret, for initiators asking for mutual CHAP.
    #[arg(long = "mutual-chap", value_name = "USER:SECRET")]
    mutual_chap: Option<String>,
    /// Only initiators matching a pattern may log in (repeatable; `*`, `?`, leading `!`).
    #[arg(long = "allow", value_name = "INITIATOR-IQN-PATTERN")]
    allow: Vec<String>,
    /// A security group: initiators matching the patterns see the LUNs mapped with
    /// group=NAME (repeatable; checked in order).
    #[arg(long = "group", value_name = "NAME:PATTERN[,PATTERN]")]
    groups: Vec<String>,
    /// Refuse the login of initiators that no security group admits (default: they see the
    /// LUNs mapped without group=).
    #[arg(long = "refuse-unmatched")]
    refuse_unmatched: bool,
    /// Directory for state that survives restarts (persistent reservations with APTPL). Without
    /// it APTPL is refused.
    #[arg(long = "state-dir", value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// An ALUA target port group (repeatable).
    #[arg(long = "port-group", value_name = "ID=STATE[,pref][,remote=N[+N]]")]
    port_groups: Vec<String>,
    /// Allow SET TARGET PORT GROUPS (explicit ALUA).
    #[arg(long = "explicit-alua")]
    explicit_alua: bool,
    /// The ALUA target port group of this target's port.
    #[arg(long = "tpg", value_name = "ID", default_value_t = 1)]
    tpg: u16,
    /// iSCSI TargetPortalGroupTag of the portals, also the SCSI relative target port id (give
    /// each node of a cluster serving one target name its own).
    #[arg(long = "tpgt", value_name = "N", default_value_t = 1)]
    tpgt: u16,
    /// Log level: error, warn, info, debug or trace (or a tracing filter directive).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log: String,
    /// Memory for command buffers (SIZE); beyond it commands get BUSY.
    #[arg(long = "buffer-memory", value_name = "SIZE", default_value = "1G")]
    buffer_memory: String,
    /// Seconds of idleness before the target pings an initiator (NOP-In).
    #[arg(long = "nop-interval", value_name = "SECONDS", default_value_t = 30)]
    nop_interval: u64,
    /// Seconds a ping may stay unanswered before the connection is dropped.
    #[arg(long = "nop-timeout", value_name = "SECONDS", default_value_t = 90)]
    nop_timeout: u64,
    /// Serve Prometheus metrics (per LUN: commands, bytes, errors, latency histograms from the
    /// receipt of a command to its response; per session; the buffer pool) on `GET /metrics`
    /// at this address (off unless given; use a local address unless the network is trusted).
    #[arg(long = "metrics", value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
    /// Which connections send READs of cached FILEIO data with sendfile, without a copy:
    /// auto (those not from this host's loopback, where it costs more than it saves), always
    /// or never. Never with a data digest.
    #[arg(long = "zero-copy", value_name = "WHEN", default_value = "auto", value_parser = parse_zero_copy)]
    zero_copy: ZeroCopy,
    /// Per-command statistics (counters and latency histograms of devices and sessions, what
    /// --metrics shows): on, or off to measure what counting costs (benches/stats-cost.sh).
    #[arg(long = "statistics", value_name = "on|off", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    statistics: bool,
    /// Before a busy connection's receive thread sleeps waiting for the initiator, it polls its
    /// socket for up to this many microseconds (adaptive: only while the initiator keeps
    /// sending again within the bound; 0: never). Trades CPU for fewer wake-ups.
    #[arg(long = "poll-us", value_name = "US", default_value_t = 0)]
    poll_us: u64,
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("on or off".into()),
    }
}

fn parse_zero_copy(s: &str) -> Result<ZeroCopy, String> {
    match s {
        "auto" => Ok(ZeroCopy::Auto),
        "always" => Ok(ZeroCopy::Always),
        "never" => Ok(ZeroCopy::Never),
        _ => Err("auto, always or never".into()),
    }
}

fn credentials(s: &str, what: &str) -> Result<ChapCredentials, String> {
    let (user, secret) = s.split_once(':').ok_or_else(|| format!("{what} must be USER:SECRET"))?;
    if user.is_empty() || secret.is_empty() {
        return Err(format!("{what} must be USER:SECRET"));
    }
    Ok(ChapCredentials::new(user, secret.as_bytes().to_vec()))
}

/// Serves `GET /metrics` for the target's devices and sessions (`--metrics`); the bound address.
fn serve_metrics(
    addr: SocketAddr,
    target: &Arc<Target>,
    name: &str,
    devices: &[Arc<scst::Device>],
) -> Result<SocketAddr, String> {
    let (target, name, devices) = (target.clone(), name.to_string(), devices.to_vec());
    scst_examples::metrics::spawn(addr, move || {
        let sessions = target.sessions();
        scst_examples::metrics::prometheus(
            devices.iter().map(|d| (d.name(), &**d)),
            sessions.iter().map(|s| (name.as_str(), &**s)),
            target.sgv(),
        )
    })
}

fn run(args: Args) -> Result<(), String> {
    scst::stats::set_enabled(args.statistics);
    let buffer_memory = parse_size(&args.buffer_memory).map_err(|e| e.to_string())?;
    let sgv = SgvPool::new(SgvConfig {
        mem_limit: usize::try_from(buffer_memory).unwrap_or(usize::MAX),
        ..SgvConfig::default()
    });
    let target = Target::new(args.target.clone(), sgv);
    for g in &args.groups {
        let (name, patterns) = parse_group(g).map_err(|e| format!("--group: {e}"))?;
        target.add_group(&name, patterns).map_err(|e| format!("--group {g}: {e}"))?;
    }
    target.set_refuse_unmatched(args.refuse_unmatched);
    if let Some(dir) = &args.state_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("--state-dir {}: {e}", dir.display()))?;
    }
    let luns = if args.luns.is_empty() { vec!["0=ram:1G".to_string()] } else { args.luns.clone() };
    let mut devices = Vec::new();
    for l in &luns {
        devices.push(map_lun(&target, &args.target, l, args.state_dir.as_deref(), true)?);
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
    } else if args.explicit_alua {
        return Err("--explicit-alua needs --port-group".into());
    }
    let chap = match &args.chap {
        Some(c) => Some(ChapConfig {
            initiator: credentials(c, "--chap")?,
            mutual: args.mutual_chap.as_deref().map(|m| credentials(m, "--mutual-chap")).transpose()?,
        }),
        None if args.mutual_chap.is_some() => return Err("--mutual-chap needs --chap".into()),
        None => None,
    };
    if args.tpg == 0 || args.tpgt == 0 {
        return Err("--tpg and --tpgt must be 1..65535".into());
    }
    let allow = NamePatterns::new(&args.allow).map_err(|e| format!("--allow: {e}"))?;
    let mut cfg = IscsiConfig {
        portal_group_tag: args.tpgt,
        alua_group: args.tpg,
        discovery_chap: chap.clone(),
        nop_interval: Duration::from_secs(args.nop_interval.max(1)),
        nop_timeout: Duration::from_secs(args.nop_timeout.max(1)),
        zero_copy: args.zero_copy,
        rx_poll: Duration::from_micros(args.poll_us),
        ..IscsiConfig::default()
    };
    if !args.listen.is_empty() {
        cfg.portals = args.listen.clone();
    }
    let server = IscsiServer::new(cfg);
    server.add_target(TargetEntry { target: target.clone(), alias: None, chap, allow });
    let portals = server.listen().map_err(|e| format!("listen: {e}"))?;
    let metrics = match args.metrics {
        Some(addr) => Some(serve_metrics(addr, &target, &args.target, &devices)?),
        None => None,
    };
    let mut out = std::io::stdout().lock();
    for p in &portals {
        let lun = luns.first().and_then(|l| l.split_once('=')).map_or("0", |(n, _)| n);
        let _ = writeln!(out, "iscsi://{p}/{}/{lun}", args.target);
    }
    if let Some(m) = metrics {
        let _ = writeln!(out, "metrics://{m}/metrics");
    }
    let _ = out.flush();
    drop(out);
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    let sig = signals.wait().map_err(|e| format!("waiting for a signal: {e}"))?;
    tracing::info!(signal = ?sig, "shutting down");
    server.shutdown(Duration::from_secs(3));
    scst_examples::cli::flush_devices(&devices);
    Ok(())
}

fn main() -> ExitCode {
    scst_examples::cli::main("iscsi-target", scst_examples::cli::stop_signals(&[]), |a: &Args| &a.log, run)
}
