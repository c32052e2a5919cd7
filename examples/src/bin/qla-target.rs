//! `qla-target`: a Fibre Channel target on a QLogic ISP24xx/25xx HBA, driven from user space.
//!
//! Opens the PCI function through VFIO (it must be bound to `vfio-pci`: docs/qla2x00t.md),
//! loads the Linux firmware file, initializes the firmware for target mode and serves the
//! LUNs to the initiators that log in. Ctrl-C or SIGTERM stop it and flush the devices.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use clap::Parser;
use scst::Target;
use scst_transport_fc::qla::vfio::VfioBus;
use scst_transport_fc::qla::{Bus, QlaConfig, QlaPort};
use scst_transport_fc::wwn_string;

const LONG_ABOUT: &str = "\
Serves SCSI logical units through a QLogic ISP24xx/25xx FC HBA in target mode, from user space
(VFIO). Bind the PCI function to vfio-pci first (see docs/qla2x00t.md).

LUN specifications (--lun N=SPEC) are iscsi-target's:
  ram:SIZE[,bs=512|4096] | nullio:SIZE[,bs=...] | fileio:PATH[,size=SIZE][,thin][,wt][,direct]
  | blockio:DEVICE[,thin], each with ,ro ,removable (default: 0=ram:1G).

The firmware is Linux's ql2400_fw.bin (ISP24xx) or ql2500_fw.bin (ISP25xx), read from
/lib/firmware unless --firmware names a file. WWNs are written 0x2100001122334455 or
21:00:00:11:22:33:44:55; the default WWNN is the WWPN with its first hex digit set to 1.";

#[derive(Parser, Debug)]
#[command(name = "qla-target", version, about = "A QLogic FC HBA target over VFIO (scst-rs)", long_about = LONG_ABOUT)]
struct Args {
    /// PCI address of the HBA port (lspci -D), e.g. 0000:03:00.0.
    #[arg(long, value_name = "BDF")]
    pci: String,
    /// Our port name.
    #[arg(long, value_name = "WWN", default_value = "0x2100001122334455")]
    wwpn: String,
    /// Our node name.
    #[arg(long, value_name = "WWN")]
    wwnn: Option<String>,
    /// Firmware file (default /lib/firmware/ql2400_fw.bin or ql2500_fw.bin by chip).
    #[arg(long, value_name = "PATH")]
    firmware: Option<PathBuf>,
    /// Frame payload size.
    #[arg(long = "frame-size", default_value_t = 2048)]
    frame_size: u16,
    /// A logical unit (repeatable).
    #[arg(long = "lun", value_name = "N=SPEC")]
    luns: Vec<String>,
    /// SCSI target name (used in VPD and logs).
    #[arg(long, default_value = "qla-target")]
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
    if ![512, 1024, 2048, 2112].contains(&args.frame_size) {
        return Err(format!("--frame-size {}: must be 512, 1024, 2048 or 2112", args.frame_size));
    }
    let sgv = scst_examples::cli::buffer_pool(&args.buffer_memory)?;
    let target = Target::new(args.target.clone(), sgv);
    let luns = if args.luns.is_empty() { vec!["0=ram:1G".to_string()] } else { args.luns.clone() };
    let mut devices = Vec::new();
    for l in &luns {
        devices.push(scst_examples::spec::map_lun(&target, &args.target, l, None, false)?);
    }
    let bus: Arc<dyn Bus> = Arc::new(VfioBus::open(&args.pci).map_err(|e| format!("--pci {}: {e}", args.pci))?);
    let mut cfg = QlaConfig::new(wwpn, wwnn);
    cfg.firmware_path = args.firmware.clone();
    cfg.frame_size = args.frame_size;
    let mut port = QlaPort::start(bus, cfg, target).map_err(|e| format!("--pci {}: {e}", args.pci))?;
    let info = port.info();
    tracing::info!(
        pci = %args.pci,
        firmware = %port.firmware(),
        wwpn = %wwn_string(wwpn),
        wwnn = %wwn_string(wwnn),
        link_up = info.link_up,
        port_id = format_args!("{:06x}", info.port_id),
        "QLogic target running"
    );
    let stop = scst_examples::cli::stop_flag();
    let r = loop {
        if stop.load(Relaxed) {
            break Ok(());
        }
        if let Err(e) = port.poll(Duration::from_millis(100)) {
            break Err(format!("--pci {}: {e}", args.pci));
        }
    };
    port.shutdown();
    scst_examples::cli::flush_devices(&devices);
    r
}

fn main() -> ExitCode {
    scst_examples::cli::main("qla-target", scst_examples::cli::stop_signals(&[]), |a: &Args| &a.log, run)
}
