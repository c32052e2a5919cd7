//! `fc-target`: a Fibre Channel over Ethernet target in one command.
//!
//! Serves its LUNs as a VN2VN VN_Port (FC-BB-6, no FCoE switch) on a network interface: it
//! claims an N_Port ID with FIP, beacons, and accepts FLOGI/PLOGI/PRLI from FCoE initiators on
//! the same Ethernet segment (Linux's `fcoe` in `vn2vn` mode). Needs `CAP_NET_RAW`. Ctrl-C or
//! SIGTERM stop it and flush the devices.

use std::process::ExitCode;

use clap::Parser;
use scst::Target;
use scst_transport_fc::afpacket::FcoeDriver;
use scst_transport_fc::{PortConfig, wwn_string};

const LONG_ABOUT: &str = "\
Serves SCSI logical units over FCoE (VN2VN mode) on a network interface.

LUN specifications (--lun N=SPEC) are iscsi-target's:
  ram:SIZE[,bs=512|4096] | nullio:SIZE[,bs=...] | fileio:PATH[,size=SIZE][,thin][,wt][,direct]
  | blockio:DEVICE[,thin], each with ,ro ,removable (default: 0=ram:1G).

The interface MTU sets the FC frame size: an MTU of 2158 or more carries full 2112-byte FC
payloads (use 2500 or jumbo frames); with 1500 frames carry at most 1452 bytes of data.
WWNs are written 0x2000001122334455 or 20:00:00:11:22:33:44:55; the default WWNN is the WWPN
with its first hex digit set to 1.";

#[derive(Parser, Debug)]
#[command(name = "fc-target", version, about = "An FCoE VN2VN target (scst-rs)", long_about = LONG_ABOUT)]
struct Args {
    /// Network interface to serve on.
    #[arg(long = "interface", alias = "iface", value_name = "IF")]
    interface: String,
    /// Our N_Port_Name.
    #[arg(long, value_name = "WWN", default_value = "0x2000001122334455")]
    wwpn: String,
    /// Our Node_Name.
    #[arg(long, value_name = "WWN")]
    wwnn: Option<String>,
    /// A logical unit (repeatable).
    #[arg(long = "lun", value_name = "N=SPEC")]
    luns: Vec<String>,
    /// SCSI target name (used in VPD and logs).
    #[arg(long, default_value = "fc-target")]
    target: String,
    /// Log filter (tracing env-filter syntax).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log: String,
    /// Memory for command buffers.
    #[arg(long = "buffer-memory", value_name = "SIZE", default_value = "1G")]
    buffer_memory: String,
}

fn run(args: Args) -> Result<(), String> {
    let (wwpn, wwnn) = scst_examples::cli::fc_names(&args.wwpn, args.wwnn.as_deref())?;
    let sgv = scst_examples::cli::buffer_pool(&args.buffer_memory)?;
    let target = Target::new(args.target.clone(), sgv);
    let luns = if args.luns.is_empty() { vec!["0=ram:1G".to_string()] } else { args.luns.clone() };
    let mut devices = Vec::new();
    for l in &luns {
        devices.push(scst_examples::spec::map_lun(&target, &args.target, l, None, false)?);
    }
    let cfg = PortConfig::new(wwpn, wwnn);
    let mut driver =
        FcoeDriver::open(&args.interface, cfg, target).map_err(|e| format!("--interface {}: {e}", args.interface))?;
    let ifc = *driver.interface();
    tracing::info!(
        interface = %args.interface,
        mtu = ifc.mtu,
        max_payload = driver.port().port().config().max_payload,
        wwpn = %wwn_string(wwpn),
        wwnn = %wwn_string(wwnn),
        "FCoE VN2VN target starting"
    );
    let stop = scst_examples::cli::stop_flag();
    driver.run(&stop).map_err(|e| format!("{}: {e}", args.interface))?;
    scst_examples::cli::flush_devices(&devices);
    Ok(())
}

fn main() -> ExitCode {
    scst_examples::cli::main("fc-target", scst_examples::cli::stop_signals(&[]), |a: &Args| &a.log, run)
}
