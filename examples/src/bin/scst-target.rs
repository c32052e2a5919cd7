//! `scst-target`: the target daemon, configured by an scst.conf file.
//!
//! `scst-target -c /etc/scst.conf` serves what the file names (iSCSI today), prints each
//! target's first LUN as an `iscsi://` URL, tells systemd it is ready (`READY=1` on
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
use std::net::SocketAddr;
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
use scst_examples::daemon::{NewTarget, Runtime, port_ids};
use scst_examples::scstconf::{self, ScstConfig};
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

/// Serves the management socket: one command line per connection, the reply, close.
fn control(listener: UnixListener, rt: Arc<Mutex<Runtime>>, server: Arc<IscsiServer>, config: PathBuf) {
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
        let reply = rt.lock().command(line.trim(), |p| load(p.map_or(config.as_path(), Path::new)));
        tracing::info!(command = line.trim(), ok = reply.text.starts_with("ok"), "management");
        for t in reply.added {
            match entry(t) {
                Ok(e) => server.add_target(e),
                Err(e) => tracing::error!("{e}"),
            }
        }
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

fn load(path: &Path) -> Result<ScstConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cfg = scstconf::parse(&path.display().to_string(), &text).map_err(|e| e.to_string())?;
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
    let cfg = load(&args.config)?;
    if args.check {
        let mut out = std::io::stdout().lock();
        for w in &cfg.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        port_ids(&cfg)?;
        let _ = writeln!(
            out,
            "{}: {} devices, {} targets ({} served), {} device groups",
            args.config.display(),
            cfg.devices.len(),
            cfg.targets.len(),
            cfg.targets.iter().filter(|t| cfg.iscsi_enabled && t.enabled).count(),
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
    let server = Arc::new(IscsiServer::new(icfg));
    let names: Vec<(String, u16)> =
        targets.iter().map(|t| (t.target.name().to_string(), t.def.luns.first().map_or(0, |l| l.lun))).collect();
    for t in targets {
        server.add_target(entry(t)?);
    }
    let portals = server.listen().map_err(|e| format!("listen: {e}"))?;
    let listener = bind_control(&args.control)?;
    {
        let (rt, server, config) = (rt.clone(), server.clone(), args.config.clone());
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || control(listener, rt, server, config))
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
        match load(&args.config).and_then(|c| rt.lock().reload(c)) {
            Ok((added, log)) => {
                for l in &log {
                    tracing::info!("{l}");
                }
                for t in added {
                    server.add_target(entry(t)?);
                }
                tracing::info!(changes = log.len(), "configuration re-read and applied");
            }
            Err(e) => tracing::error!("configuration not applied, the running one stays: {e}"),
        }
        notify("READY=1");
    }
    server.shutdown(Duration::from_secs(3));
    let _ = std::fs::remove_file(&args.control);
    scst_examples::cli::flush_devices(rt.lock().devices().values());
    Ok(())
}

fn main() -> ExitCode {
    scst_examples::cli::main("scst-target", scst_examples::cli::stop_signals(&[Signal::SIGHUP]), |a: &Args| &a.log, run)
}
