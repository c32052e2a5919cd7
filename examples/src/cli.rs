//! What every example binary does around its own work: block the stop signals before any thread
//! starts (every thread inherits the mask, so the signals wait for `sigwait` in main), parse the
//! command line, set up logging to stderr, report an error as `NAME: error` with exit status 1,
//! and flush the devices on the way out.

use std::process::ExitCode;
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal};

/// SIGINT and SIGTERM, plus `extra`.
pub fn stop_signals(extra: &[Signal]) -> SigSet {
    let mut s = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM].iter().chain(extra) {
        s.add(*sig);
    }
    s
}

/// Runs a binary named `name`: blocks `signals` in this (and so every later) thread, parses
/// `A`, logs at the level `log` picks from it (a tracing filter; `info` if it does not parse),
/// and runs `run`.
pub fn main<A: clap::Parser>(
    name: &str,
    signals: SigSet,
    log: impl Fn(&A) -> &str,
    run: impl FnOnce(A) -> Result<(), String>,
) -> ExitCode {
    if let Err(e) = signals.thread_block() {
        eprintln!("{name}: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let args = A::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(log(&args))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Flushes every device, logging (not failing on) errors.
pub fn flush_devices<'a>(devices: impl IntoIterator<Item = &'a Arc<scst::Device>>) {
    for d in devices {
        if let Err(e) = d.flush() {
            tracing::error!(device = d.name(), error = %e, "flush failed");
        }
    }
}

/// Serves vhost-user frontends on `socket`, one connection after the other (logging each), or
/// only the first with `once`; returns that connection's outcome then, else never. A socket
/// that cannot be set up is retried every second rather than in a spin.
///
/// # Errors
/// With `once`, the connection's [`scst_local::vhost_user::VhostError`].
pub fn serve_vhost_user(
    ctrl: &Arc<scst_local::vhost_user::VhostUserScsi>,
    socket: &std::path::Path,
    once: bool,
) -> Result<(), scst_local::vhost_user::VhostError> {
    loop {
        tracing::info!(socket = %socket.display(), "waiting for a vhost-user frontend");
        let r = ctrl.serve(socket);
        match &r {
            Ok(()) => tracing::info!(socket = %socket.display(), "frontend disconnected"),
            Err(e) => tracing::error!(socket = %socket.display(), error = %e, "vhost-user connection failed"),
        }
        if once {
            return r;
        }
        if r.is_err() {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

/// The port and node names of an FC port from `--wwpn` and `--wwnn` (default: derived from the
/// port name).
///
/// # Errors
/// A name that is not a WWN, as a message naming the option.
pub fn fc_names(wwpn: &str, wwnn: Option<&str>) -> Result<(u64, u64), String> {
    use scst_transport_fc::parse_wwn;
    let p = parse_wwn(wwpn).ok_or_else(|| format!("--wwpn {wwpn}: not a WWN"))?;
    let n = match wwnn {
        Some(w) => parse_wwn(w).ok_or_else(|| format!("--wwnn {w}: not a WWN"))?,
        None => scst_transport_fc::default_wwnn(p),
    };
    Ok((p, n))
}

/// A buffer pool holding at most `--buffer-memory SIZE` (like `1G`).
///
/// # Errors
/// A size that does not parse.
pub fn buffer_pool(size: &str) -> Result<scst::SgvPool, String> {
    let bytes = crate::spec::parse_size(size).map_err(|e| e.to_string())?;
    Ok(scst::SgvPool::new(scst::SgvConfig {
        mem_limit: usize::try_from(bytes).unwrap_or(usize::MAX),
        ..scst::SgvConfig::default()
    }))
}

/// A flag that turns true when SIGINT or SIGTERM arrives (a thread waits for them; they must be
/// blocked, as [`main`] does with [`stop_signals`]), for drivers whose loop polls a stop flag.
pub fn stop_flag() -> Arc<std::sync::atomic::AtomicBool> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        if let Ok(sig) = stop_signals(&[]).wait() {
            tracing::info!(signal = ?sig, "shutting down");
        }
        s.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    stop
}
