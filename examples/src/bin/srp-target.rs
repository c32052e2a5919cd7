//! `srp-target`: an SRP target over RDMA/CM (InfiniBand, RoCE, soft-RoCE) in one command.
//!
//! Linux's ib_srp logs in with
//! `echo id_ext=G,ioc_guid=G,dest=IP:PORT > /sys/class/infiniband_srp/srp-DEV-PORT/add_target`
//! where G is the `--guid` given here. Ctrl-C or SIGTERM disconnects every channel and flushes
//! the devices.

use std::io::Write;
use std::net::SocketAddrV4;
use std::process::ExitCode;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use scst::{SgvConfig, SgvPool, Target};
use scst_examples::spec::{parse_group, parse_size};
use scst_transport_srp::rdma::{RdmaConfig, SrpRdmaServer};
use scst_transport_srp::{PortConfig, SrpPort};

const LONG_ABOUT: &str = "\
Serves SCSI logical units over SRP (SCSI RDMA Protocol) through RDMA/CM.

The target port identifier is --guid twice (id_ext and ioc_guid); give Linux's ib_srp
  id_ext=GUID,ioc_guid=GUID,dest=IP:PORT
LUN specifications (--lun N=SPEC) are those of iscsi-target:
  ram:SIZE[,bs=512|4096] | nullio:SIZE | fileio:PATH[,size=SIZE][,thin][,wt][,direct]
  | blockio:DEVICE[,thin], each with ,ro ,removable ,group=NAME[:ro]
Initiators are named by their SRP initiator port identifier, 0x and 32 hex digits, in
--group patterns (e.g. 0xfe80*).";

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "srp-target", version, about = "An SRP target (scst-rs)", long_about = LONG_ABOUT)]
struct Args {
    /// RDMA/CM address to listen on (IPv4).
    #[arg(long, value_name = "IP:PORT")]
    listen: SocketAddrV4,
    /// The target's GUID (16 hex digits): the id_ext and ioc_guid initiators give.
    #[arg(long, value_name = "16HEX")]
    guid: String,
    /// A logical unit (repeatable). Default 0=ram:1G.
    #[arg(long = "lun", value_name = "N=SPEC")]
    luns: Vec<String>,
    /// A security group of initiator port identifiers (repeatable; checked in order).
    #[arg(long = "group", value_name = "NAME:PATTERN[,PATTERN]")]
    groups: Vec<String>,
    /// Refuse the login of initiators no security group admits.
    #[arg(long = "refuse-unmatched")]
    refuse_unmatched: bool,
    /// Receive buffers per channel (the credits an initiator gets, plus one).
    #[arg(long = "queue-depth", value_name = "N", default_value_t = 64)]
    queue_depth: u32,
    /// Log level: error, warn, info, debug or trace (or a tracing filter directive).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log: String,
    /// Memory for command buffers (SIZE); beyond it commands get BUSY.
    #[arg(long = "buffer-memory", value_name = "SIZE", default_value = "1G")]
    buffer_memory: String,
}

fn run(args: Args) -> Result<(), String> {
    let hex = args.guid.strip_prefix("0x").unwrap_or(&args.guid);
    if hex.len() != 16 {
        return Err("--guid must be 16 hex digits".into());
    }
    let guid = u64::from_str_radix(hex, 16).map_err(|_| "--guid must be 16 hex digits".to_string())?;
    let buffer_memory = parse_size(&args.buffer_memory).map_err(|e| e.to_string())?;
    let sgv = SgvPool::new(SgvConfig {
        mem_limit: usize::try_from(buffer_memory).unwrap_or(usize::MAX),
        ..SgvConfig::default()
    });
    let name = format!("srp.0x{guid:016x}");
    let target = Target::new(name.clone(), sgv);
    for g in &args.groups {
        let (gname, patterns) = parse_group(g).map_err(|e| format!("--group: {e}"))?;
        target.add_group(&gname, patterns).map_err(|e| format!("--group {g}: {e}"))?;
    }
    target.set_refuse_unmatched(args.refuse_unmatched);
    let luns = if args.luns.is_empty() { vec!["0=ram:1G".to_string()] } else { args.luns.clone() };
    let mut devices = Vec::new();
    for l in &luns {
        devices.push(scst_examples::spec::map_lun(&target, &name, l, None, true)?);
    }
    let mut cfg = PortConfig::new(guid);
    cfg.queue_depth = args.queue_depth.clamp(3, 4096);
    let rdma = RdmaConfig::new(args.listen);
    cfg.max_data_len = u32::try_from(rdma.max_transfer).unwrap_or(u32::MAX);
    let port = SrpPort::new(target, cfg);
    let mut server = SrpRdmaServer::start(port, rdma).map_err(|e| format!("listen {}: {e}", args.listen))?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "id_ext={guid:016x},ioc_guid={guid:016x},dest={}", args.listen);
    let _ = out.flush();
    drop(out);
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    let sig = signals.wait().map_err(|e| format!("waiting for a signal: {e}"))?;
    tracing::info!(signal = ?sig, "shutting down");
    server.shutdown();
    scst_examples::cli::flush_devices(&devices);
    Ok(())
}

fn main() -> ExitCode {
    scst_examples::cli::main("srp-target", scst_examples::cli::stop_signals(&[]), |a: &Args| &a.log, run)
}
