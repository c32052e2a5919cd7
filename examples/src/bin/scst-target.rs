//! `scst-target`: the target daemon, configured by an scst.conf file.
//!
//! `scst-target -c /etc/scst.conf` serves what the file names: iSCSI targets on the `--listen`
//! portals, and (built with the `rdma` feature) one SRP target over RDMA/CM on `--srp-listen`.
//! It prints each iSCSI target's first LUN as an `iscsi://` URL and the SRP target as
//! `srp:id_ext=G,ioc_guid=G,dest=IP:PORT` (what Linux's ib_srp `add_target` takes); one FCoE
//! VN2VN target on `--fcoe-interface` (printed as `fc:wwpn=...,interface=IF`); and each
//! `scst_local` target as a vhost-user-scsi controller on `--vhost-user-dir`/NAME.sock (printed
//! as `vhost-user-scsi:PATH`, for QEMU's `vhost-user-scsi-pci`). It tells systemd it is ready (`READY=1` on
//! `$NOTIFY_SOCKET`, for `Type=notify`), re-reads the file on SIGHUP and applies the difference
//! while sessions stay logged in (or, if the new file cannot be applied live, logs why and keeps
//! the running configuration), and shuts down on SIGINT/SIGTERM (initiators asked to log out,
//! devices flushed). `--check` parses the file, prints its warnings and exits.
//!
//! Management: a Unix socket (`--control`, default `/run/scst-target.sock`, mode 0600; a peer
//! whose uid is neither root's nor the daemon's is refused) takes one command line per
//! connection, as `scstctl` sends them (see `scst_examples::daemon::COMMANDS`).
//!
//! Statistics: `--metrics ADDR:PORT` (off by default) serves the Prometheus text exposition on
//! `GET /metrics` (see `scst_examples::metrics`) and prints `metrics://ADDR:PORT/metrics` after
//! the `iscsi://` URLs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use parking_lot::Mutex;
use scst::acl::NamePatterns;
use scst::{SgvConfig, SgvPool};
use scst_examples::daemon::{
    Applied, NewTarget, Runtime, check_ports, check_servable, local_ports, port_ids, single_port,
};
use scst_examples::scstconf::{self, Driver, ScstConfig};
use scst_examples::spec::parse_size;
use scst_transport_iscsi::{ChapConfig, ChapCredentials, IscsiConfig, IscsiServer, TargetEntry};

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "scst-target", version, about = "The scst-rs target daemon, configured by scst.conf")]
struct Args {
    /// The configuration file (SCST's scst.conf syntax).
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = "/etc/scst.conf")]
    config: PathBuf,
    /// iSCSI portal to listen on (repeatable). Default 0.0.0.0:3260.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// RDMA/CM address (IPv4) on which the `TARGET_DRIVER ib_srpt` target is served; without it
    /// a configuration that enables one is refused. Needs the `rdma` build feature.
    #[arg(long = "srp-listen", value_name = "IP:PORT")]
    srp_listen: Option<SocketAddrV4>,
    /// Network interface on which the `TARGET_DRIVER fcst` target is served as an FCoE VN2VN
    /// VN_Port (needs CAP_NET_RAW); without it a configuration that enables one is refused.
    #[arg(long = "fcoe-interface", value_name = "IF")]
    fcoe_interface: Option<String>,
    /// Directory of the vhost-user sockets of `TARGET_DRIVER scst_local` targets (one per
    /// target, `DIR/NAME.sock`, for QEMU's `vhost-user-scsi-pci`); without it a configuration
    /// that enables one is refused.
    #[arg(long = "vhost-user-dir", value_name = "DIR")]
    vhost_user_dir: Option<PathBuf>,
    /// Parse the file, print its warnings, and exit (0 if it is valid).
    #[arg(long)]
    check: bool,
    /// Directory for state that survives restarts (persistent reservations with APTPL).
    #[arg(long = "state-dir", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Memory for command buffers (SIZE); beyond it commands get BUSY.
    #[arg(long = "buffer-memory", value_name = "SIZE", default_value = "1G")]
    buffer_memory: String,
    /// Seconds of idleness before the target pings an initiator (NOP-In).
    #[arg(long = "nop-interval", value_name = "SECONDS", default_value_t = 30)]
    nop_interval: u64,
    /// Seconds a ping may stay unanswered before the connection is dropped.
    #[arg(long = "nop-timeout", value_name = "SECONDS", default_value_t = 90)]
    nop_timeout: u64,
    /// Serve Prometheus metrics on `GET /metrics` at this address (off unless given; use a
    /// local address such as 127.0.0.1:9100 unless the network is trusted).
    #[arg(long = "metrics", value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
    /// The management socket (`scstctl --socket`).
    #[arg(long = "control", value_name = "PATH", default_value = "/run/scst-target.sock")]
    control: PathBuf,
    /// Log level: error, warn, info, debug or trace (or a tracing filter directive).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log: String,
}

/// The drivers whose targets this build can serve: SRP with the `rdma` feature and an address
/// to listen on, FCoE with an interface, scst_local with a socket directory.
fn servable(srp_listen: bool, fcoe: bool, local: bool) -> Vec<Driver> {
    let mut d = vec![Driver::Iscsi];
    if cfg!(feature = "rdma") && srp_listen {
        d.push(Driver::Srpt);
    }
    if fcoe {
        d.push(Driver::Fcst);
    }
    if local {
        d.push(Driver::Local);
    }
    d
}

/// A running FCoE VN_Port: its thread and the flag that stops it.
struct FcPort {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// A served scst_local target: its vhost-user-scsi controller and socket (a thread serves one
/// frontend connection after the other on it).
struct LocalPort {
    ctrl: Arc<scst_local::vhost_user::VhostUserScsi>,
    socket: PathBuf,
}

/// The fabrics the daemon serves targets on.
struct Fabrics {
    iscsi: Arc<IscsiServer>,
    srp_listen: Option<SocketAddrV4>,
    #[cfg(feature = "rdma")]
    srp: Mutex<Option<scst_transport_srp::rdma::SrpRdmaServer>>,
    fcoe_interface: Option<String>,
    fc: Mutex<Option<FcPort>>,
    vhost_user_dir: Option<PathBuf>,
    local: Mutex<Vec<LocalPort>>,
    /// Held from a reload to the end of its `apply` (SIGHUP and `scstctl apply` may come
    /// together): one file's changes reach the fabrics before the next one's.
    applying: Mutex<()>,
}

impl Fabrics {
    fn servable(&self) -> Vec<Driver> {
        servable(self.srp_listen.is_some(), self.fcoe_interface.is_some(), self.vhost_user_dir.is_some())
    }

    /// Serves a new target of `cfg` (the running configuration) on its fabric; returns how an
    /// initiator reaches it, if that is a line of its own (SRP; iSCSI URLs need the portals).
    fn add(&self, t: NewTarget, cfg: &ScstConfig) -> Result<Option<String>, String> {
        match t.def.driver {
            Driver::Iscsi => {
                self.iscsi.add_target(entry(t)?);
                Ok(None)
            }
            Driver::Srpt => self.add_srp(t, cfg),
            Driver::Fcst => self.add_fc(t, cfg),
            Driver::Local => self.add_local(t, cfg),
        }
    }

    fn add_local(&self, t: NewTarget, cfg: &ScstConfig) -> Result<Option<String>, String> {
        use scst_local::vhost_user::{VhostScsiConfig, VhostUserScsi};
        let dir = self.vhost_user_dir.as_ref().ok_or("an scst_local target needs --vhost-user-dir")?;
        let name = t.def.name.clone();
        let (_, ids) = local_ports(cfg)?
            .into_iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| format!("scst_local target {name} is not served"))?;
        // The parser allows only names that are file names of their own.
        let socket = dir.join(format!("{name}.sock"));
        let vcfg = VhostScsiConfig {
            initiator_name: t.def.session_name.clone(),
            rel_port_id: ids.rel_tgt_id,
            tpg_id: ids.tpg,
            ..VhostScsiConfig::default()
        };
        let ctrl = VhostUserScsi::new(&t.target, &socket, vcfg).map_err(|e| format!("target {name}: {e}"))?;
        let (c, path) = (ctrl.clone(), socket.clone());
        std::thread::Builder::new()
            .name("vhost-user".into())
            .spawn(move || {
                let _ = scst_examples::cli::serve_vhost_user(&c, &path, false);
            })
            .map_err(|e| format!("vhost-user thread: {e}"))?;
        // The socket exists once the thread listens; the line printed names it.
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let line = format!("vhost-user-scsi:{}", socket.display());
        self.local.lock().push(LocalPort { ctrl, socket });
        Ok(Some(line))
    }

    fn add_fc(&self, t: NewTarget, cfg: &ScstConfig) -> Result<Option<String>, String> {
        use scst_transport_fc::afpacket::FcoeDriver;
        use scst_transport_fc::{PortConfig, default_wwnn, wwn_string};
        let ifc = self.fcoe_interface.clone().ok_or("an fcst target needs --fcoe-interface")?;
        let ids = single_port(cfg, Driver::Fcst)?.ok_or("no fcst target is served")?;
        let mut slot = self.fc.lock();
        if slot.is_some() {
            return Err(format!("target {}: the FCoE port serves another target", t.def.name));
        }
        let mut pc = PortConfig::new(ids.id, default_wwnn(ids.id));
        pc.rel_port_id = ids.rel_tgt_id;
        pc.tpg_id = ids.tpg;
        let mut driver = FcoeDriver::open(&ifc, pc, t.target).map_err(|e| format!("--fcoe-interface {ifc}: {e}"))?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let name = ifc.clone();
        let thread = std::thread::Builder::new()
            .name("fcoe".into())
            .spawn(move || {
                if let Err(e) = driver.run(&s) {
                    tracing::error!(interface = %name, error = %e, "FCoE port stopped");
                }
            })
            .map_err(|e| format!("FCoE thread: {e}"))?;
        *slot = Some(FcPort { stop, thread });
        Ok(Some(format!("fc:wwpn={},interface={ifc}", wwn_string(ids.id))))
    }

    #[cfg(feature = "rdma")]
    fn add_srp(&self, t: NewTarget, cfg: &ScstConfig) -> Result<Option<String>, String> {
        use scst_transport_srp::rdma::{RdmaConfig, SrpRdmaServer};
        use scst_transport_srp::{PortConfig, SrpPort};
        let listen = self.srp_listen.ok_or("an ib_srpt target needs --srp-listen")?;
        let ids = single_port(cfg, Driver::Srpt)?.ok_or("no ib_srpt target is served")?;
        let mut slot = self.srp.lock();
        if slot.is_some() {
            return Err(format!("target {}: the SRP listener serves another target", t.def.name));
        }
        let mut pc = PortConfig::new(ids.id);
        pc.rel_port_id = ids.rel_tgt_id;
        pc.tpg_id = ids.tpg;
        let rdma = RdmaConfig::new(listen);
        pc.max_data_len = u32::try_from(rdma.max_transfer).unwrap_or(u32::MAX);
        let server = SrpRdmaServer::start(SrpPort::new(t.target, pc), rdma)
            .map_err(|e| format!("--srp-listen {listen}: {e}"))?;
        *slot = Some(server);
        Ok(Some(format!("srp:id_ext={:016x},ioc_guid={:016x},dest={listen}", ids.id, ids.id)))
    }

    #[cfg(not(feature = "rdma"))]
    fn add_srp(&self, t: NewTarget, _cfg: &ScstConfig) -> Result<Option<String>, String> {
        Err(format!("target {}: this scst-target was built without the rdma feature", t.def.name))
    }

    fn shutdown(&self) {
        // A vhost-user thread blocks in accept or serves a frontend until the process exits;
        // the sockets go now so that a frontend does not connect to a daemon on its way out.
        for l in self.local.lock().iter() {
            let _ = std::fs::remove_file(&l.socket);
        }
        if let Some(fc) = self.fc.lock().take() {
            fc.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = fc.thread.join();
        }
        #[cfg(feature = "rdma")]
        if let Some(mut s) = self.srp.lock().take() {
            s.shutdown();
        }
        self.iscsi.shutdown(Duration::from_secs(3));
    }

    /// Carries out what a reload or `apply` asks of the fabrics: removed iSCSI targets stop
    /// being exported (their sessions asked to log out, closed after 3 s), targets with new
    /// CHAP credentials get a new entry, new targets are served (logging what cannot be); then
    /// each guest of an scst_local target is told what changed in its LUNs (virtio-scsi has no
    /// unit attention it would act on: hot-plug and parameter-change events instead).
    fn apply(&self, mut applied: Applied, rt: &Mutex<Runtime>) {
        for name in &applied.removed {
            if self.iscsi.remove_target(name, Duration::from_secs(3)).is_none() {
                tracing::warn!(target = %name, "removed target was not exported");
            }
        }
        for t in std::mem::take(&mut applied.rechap) {
            match entry(t) {
                Ok(e) => self.iscsi.add_target(e),
                Err(e) => tracing::error!("{e}"),
            }
        }
        for t in std::mem::take(&mut applied.added) {
            let cfg = rt.lock().config().clone();
            match self.add(t, &cfg) {
                Ok(Some(line)) => tracing::info!("serving {line}"),
                Ok(None) => {}
                Err(e) => tracing::error!("{e}"),
            }
        }
        for l in self.local.lock().iter() {
            // The reload's rescan saw the capacity changes first: tell the guest here.
            let events = l.ctrl.capacity_changed(&applied.resized) + l.ctrl.rescan();
            if events > 0 {
                tracing::info!(socket = %l.socket.display(), events, "LUN changes posted to the guest");
            }
        }
    }
}

/// Serves the management socket: one command line per connection, the reply, close.
fn control(listener: UnixListener, rt: Arc<Mutex<Runtime>>, fabrics: Arc<Fabrics>, config: PathBuf) {
    let me = nix::unistd::geteuid().as_raw();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let peer = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials);
        if !peer.is_ok_and(|c| c.uid() == 0 || c.uid() == me) {
            let _ = stream.write_all(b"error: permission denied\n");
            continue;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut line = String::new();
        if BufReader::new((&stream).take(4096)).read_line(&mut line).is_err() {
            continue;
        }
        let servable = fabrics.servable();
        let _applying = fabrics.applying.lock();
        let reply = rt.lock().command(line.trim(), |p| load(p.map_or(config.as_path(), Path::new), &servable));
        tracing::info!(command = line.trim(), ok = reply.text.starts_with("ok"), "management");
        fabrics.apply(reply.applied, &rt);
        let _ = stream.write_all(reply.text.as_bytes());
    }
}

fn bind_control(path: &Path) -> Result<UnixListener, String> {
    // A socket left by a daemon that died: nothing answers on it.
    if path.exists() && UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(|e| format!("--control {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("--control {}: {e}", path.display()))?;
    Ok(l)
}

/// Reads and checks a configuration, refusing targets of drivers not in `servable`.
fn load(path: &Path, servable: &[Driver]) -> Result<ScstConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cfg = scstconf::parse(&path.display().to_string(), &text).map_err(|e| e.to_string())?;
    check_servable(&cfg, servable)?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    Ok(cfg)
}

fn entry(t: NewTarget) -> Result<TargetEntry, String> {
    let creds = |(u, s): &(String, String)| ChapCredentials::new(u, s.as_bytes().to_vec());
    let chap = t
        .def
        .incoming_user
        .as_ref()
        .map(|i| ChapConfig { initiator: creds(i), mutual: t.def.outgoing_user.as_ref().map(creds) });
    Ok(TargetEntry {
        target: t.target,
        alias: None,
        chap,
        allow: NamePatterns::new::<[&str; 0], _>([]).map_err(|e| e.to_string())?,
    })
}

/// Tells systemd (`Type=notify`) the daemon's state, if it started us with a notify socket.
fn notify(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(abs) => UnixAddr::from_abstract_name(abs.as_bytes()),
        None => UnixAddr::from_pathname(&path),
    };
    let sent = UnixDatagram::unbound().and_then(|s| addr.and_then(|a| s.send_to_addr(state.as_bytes(), &a)));
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

fn run(args: Args) -> Result<(), String> {
    // --check: what this build could serve, whatever the addresses.
    let cfg = load(
        &args.config,
        &servable(
            args.check || args.srp_listen.is_some(),
            args.check || args.fcoe_interface.is_some(),
            args.check || args.vhost_user_dir.is_some(),
        ),
    )?;
    if args.check {
        let mut out = std::io::stdout().lock();
        for w in &cfg.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        check_ports(&cfg)?;
        let _ = writeln!(
            out,
            "{}: {} devices, {} targets ({} served), {} device groups",
            args.config.display(),
            cfg.devices.len(),
            cfg.targets.len(),
            cfg.served().count(),
            cfg.device_groups.len()
        );
        return Ok(());
    }
    let buffer_memory = parse_size(&args.buffer_memory).map_err(|e| e.to_string())?;
    let sgv = SgvPool::new(SgvConfig {
        mem_limit: usize::try_from(buffer_memory).unwrap_or(usize::MAX),
        ..SgvConfig::default()
    });
    if let Some(dir) = &args.state_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("--state-dir {}: {e}", dir.display()))?;
    }
    let ids = port_ids(&cfg)?;
    let (rt, targets) = Runtime::start(cfg, sgv, args.state_dir.as_deref())?;
    let rt = Arc::new(Mutex::new(rt));
    let mut icfg = IscsiConfig {
        portal_group_tag: ids.rel_tgt_id,
        alua_group: ids.tpg,
        nop_interval: Duration::from_secs(args.nop_interval.max(1)),
        nop_timeout: Duration::from_secs(args.nop_timeout.max(1)),
        ..IscsiConfig::default()
    };
    icfg.portals = if args.listen.is_empty() {
        vec!["0.0.0.0:3260".parse().expect("a socket address")]
    } else {
        args.listen.clone()
    };
    let fabrics = Arc::new(Fabrics {
        iscsi: Arc::new(IscsiServer::new(icfg)),
        srp_listen: args.srp_listen,
        #[cfg(feature = "rdma")]
        srp: Mutex::new(None),
        fcoe_interface: args.fcoe_interface.clone(),
        fc: Mutex::new(None),
        vhost_user_dir: args.vhost_user_dir.clone(),
        local: Mutex::new(Vec::new()),
        applying: Mutex::new(()),
    });
    let names: Vec<(String, u16)> = targets
        .iter()
        .filter(|t| t.def.driver == Driver::Iscsi)
        .map(|t| (t.target.name().to_string(), t.def.luns.first().map_or(0, |l| l.lun)))
        .collect();
    let mut lines = Vec::new();
    let running = rt.lock().config().clone();
    for t in targets {
        lines.extend(fabrics.add(t, &running)?);
    }
    let portals = fabrics.iscsi.listen().map_err(|e| format!("listen: {e}"))?;
    let listener = bind_control(&args.control)?;
    {
        let (rt, fabrics, config) = (rt.clone(), fabrics.clone(), args.config.clone());
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || control(listener, rt, fabrics, config))
            .map_err(|e| format!("control thread: {e}"))?;
    }
    let mut metrics = None;
    if let Some(addr) = args.metrics {
        let rt = rt.clone();
        metrics = Some(scst_examples::metrics::spawn(addr, move || rt.lock().metrics())?);
    }
    let mut out = std::io::stdout().lock();
    for p in &portals {
        for (name, lun) in &names {
            let _ = writeln!(out, "iscsi://{p}/{name}/{lun}");
        }
    }
    for l in &lines {
        let _ = writeln!(out, "{l}");
    }
    if let Some(m) = metrics {
        let _ = writeln!(out, "metrics://{m}/metrics");
    }
    let _ = out.flush();
    drop(out);
    notify("READY=1");
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    loop {
        let sig = signals.wait().map_err(|e| format!("waiting for a signal: {e}"))?;
        if sig != Signal::SIGHUP {
            tracing::info!(signal = ?sig, "shutting down");
            notify("STOPPING=1");
            break;
        }
        notify("RELOADING=1");
        let _applying = fabrics.applying.lock();
        match load(&args.config, &fabrics.servable()).and_then(|c| rt.lock().reload(c)) {
            Ok(applied) => {
                for l in &applied.log {
                    tracing::info!("{l}");
                }
                let changes = applied.log.len();
                fabrics.apply(applied, &rt);
                tracing::info!(changes, "configuration re-read and applied");
            }
            Err(e) => tracing::error!("configuration not applied, the running one stays: {e}"),
        }
        notify("READY=1");
    }
    fabrics.shutdown();
    let _ = std::fs::remove_file(&args.control);
    scst_examples::cli::flush_devices(rt.lock().devices().values());
    Ok(())
}

fn main() -> ExitCode {
    scst_examples::cli::main("scst-target", scst_examples::cli::stop_signals(&[Signal::SIGHUP]), |a: &Args| &a.log, run)
}
