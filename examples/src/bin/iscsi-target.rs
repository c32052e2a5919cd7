//! `iscsi-target`: an iSCSI target in one command.
//!
//! With no arguments it serves a 1 GiB RAM disk as LUN 0 of `iqn.2026-11.rs.scst:default` on
//! 127.0.0.1:3260. Ctrl-C or SIGTERM shuts it down cleanly: initiators are asked to log out
//! (Async Message) and every device is flushed.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use scst::{Lun, SgvConfig, SgvPool, Target};
use scst_examples::spec::{LunSpec, parse_size};
use scst_transport_iscsi::{ChapConfig, ChapCredentials, IscsiConfig, IscsiServer, TargetEntry};

const LONG_ABOUT: &str = "\
Serves SCSI logical units over iSCSI.

LUN specifications (--lun N=SPEC):
  ram:SIZE[,bs=512|4096][,ro][,removable]        in memory, sparse (the default: 0=ram:1G)
  nullio:SIZE[,bs=512|4096][,ro][,removable]     reads zeros, discards writes
  fileio:PATH[,size=SIZE][,thin][,ro][,wt][,direct][,bs=512|4096][,removable]
                                                 a file, created with SIZE if missing;
                                                 thin = sparse, wt = write-through,
                                                 direct = O_DIRECT
  blockio:DEVICE[,ro][,removable]                a block device (O_DIRECT)
SIZE is like 64M, 1G, 1T.";

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
}

fn credentials(s: &str, what: &str) -> Result<ChapCredentials, String> {
    let (user, secret) = s.split_once(':').ok_or_else(|| format!("{what} must be USER:SECRET"))?;
    if user.is_empty() || secret.is_empty() {
        return Err(format!("{what} must be USER:SECRET"));
    }
    Ok(ChapCredentials::new(user, secret.as_bytes().to_vec()))
}

fn run(args: Args) -> Result<(), String> {
    let buffer_memory = parse_size(&args.buffer_memory).map_err(|e| e.to_string())?;
    let sgv = SgvPool::new(SgvConfig {
        mem_limit: usize::try_from(buffer_memory).unwrap_or(usize::MAX),
        ..SgvConfig::default()
    });
    let target = Target::new(args.target.clone(), sgv);
    let luns = if args.luns.is_empty() { vec!["0=ram:1G".to_string()] } else { args.luns.clone() };
    let mut devices = Vec::new();
    for l in &luns {
        let spec = LunSpec::parse(l).map_err(|e| format!("--lun {l}: {e}"))?;
        let dev = spec.build(&format!("{}:{}", args.target, spec.lun)).map_err(|e| format!("--lun {l}: {e}"))?;
        target.add_lun(Lun(spec.lun), dev.clone(), false).map_err(|e| format!("--lun {l}: {e}"))?;
        devices.push(dev);
    }
    let chap = match &args.chap {
        Some(c) => Some(ChapConfig {
            initiator: credentials(c, "--chap")?,
            mutual: args.mutual_chap.as_deref().map(|m| credentials(m, "--mutual-chap")).transpose()?,
        }),
        None if args.mutual_chap.is_some() => return Err("--mutual-chap needs --chap".into()),
        None => None,
    };
    let mut cfg = IscsiConfig {
        discovery_chap: chap.clone(),
        nop_interval: Duration::from_secs(args.nop_interval.max(1)),
        nop_timeout: Duration::from_secs(args.nop_timeout.max(1)),
        ..IscsiConfig::default()
    };
    if !args.listen.is_empty() {
        cfg.portals = args.listen.clone();
    }
    let server = IscsiServer::new(cfg);
    server.add_target(TargetEntry { target: target.clone(), alias: None, chap, allow: args.allow.clone() });
    let portals = server.listen().map_err(|e| format!("listen: {e}"))?;
    let mut out = std::io::stdout().lock();
    for p in &portals {
        let lun = luns.first().and_then(|l| l.split_once('=')).map_or("0", |(n, _)| n);
        let _ = writeln!(out, "iscsi://{p}/{}/{lun}", args.target);
    }
    let _ = out.flush();
    drop(out);
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    let sig = signals.wait().map_err(|e| format!("waiting for a signal: {e}"))?;
    tracing::info!(signal = ?sig, "shutting down");
    server.shutdown(Duration::from_secs(3));
    for d in &devices {
        if let Err(e) = d.flush() {
            tracing::error!(device = d.name(), error = %e, "flush failed");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // Every thread inherits the blocked mask, so the signals wait for `sigwait` in main.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    if let Err(e) = signals.thread_block() {
        eprintln!("iscsi-target: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iscsi-target: {e}");
            ExitCode::FAILURE
        }
    }
}
