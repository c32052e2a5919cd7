//! Statistics as text: the `stats` management command's report and the Prometheus text
//! exposition (format 0.0.4) `scst-target --metrics ADDR:PORT` serves on `GET /metrics`.
//!
//! The HTTP side is the least that Prometheus needs: one request per connection, only
//! `GET /metrics` (another path or method is 404, a request that is not HTTP 400; at most
//! [`MAX_REQUEST`] bytes of request head are read and a client gets [`REQUEST_TIMEOUT`] to send
//! them), then the connection is closed. Connections are answered one at a time: a client that
//! stalls delays the next scrape by at most [`REQUEST_TIMEOUT`].

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use scst::stats::{CompletionCounters, ErrorCounters, LATENCY_BUCKETS, LatencySnapshot, OpClass};
use scst::{Device, Session, SgvPool};

/// Bytes of request head (request line and headers) a client may send.
pub const MAX_REQUEST: u64 = 8192;
/// How long a client may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Sense key names (SPC-4 table 28), by key.
pub const SENSE_KEYS: [&str; 16] = [
    "NO_SENSE",
    "RECOVERED_ERROR",
    "NOT_READY",
    "MEDIUM_ERROR",
    "HARDWARE_ERROR",
    "ILLEGAL_REQUEST",
    "UNIT_ATTENTION",
    "DATA_PROTECT",
    "BLANK_CHECK",
    "VENDOR_SPECIFIC",
    "COPY_ABORTED",
    "ABORTED_COMMAND",
    "RESERVED_0C",
    "VOLUME_OVERFLOW",
    "MISCOMPARE",
    "RESERVED_0F",
];

/// The error counters that are not sense keys, with their names.
fn statuses(e: &ErrorCounters) -> [(&'static str, u64); 5] {
    [
        ("BUSY", e.busy.load(Relaxed)),
        ("RESERVATION_CONFLICT", e.reservation_conflict.load(Relaxed)),
        ("TASK_SET_FULL", e.task_set_full.load(Relaxed)),
        ("TASK_ABORTED", e.task_aborted.load(Relaxed)),
        ("OTHER", e.other.load(Relaxed)),
    ]
}

/// `p50`/`p99` estimates as the CLI prints them: the bucket bound in µs, `-` when nothing was
/// counted, `>N` for the open last bucket.
fn quantile(s: &LatencySnapshot, q: f64) -> String {
    match s.quantile_bucket(q) {
        None => "-".into(),
        Some(i) => match LatencySnapshot::upper_bound_us(i) {
            Some(us) => us.to_string(),
            None => format!(">{}", 1u64 << (LATENCY_BUCKETS - 2)),
        },
    }
}

/// The latency and error lines of `c`, indented, for the `stats` command.
pub fn write_report(out: &mut String, c: &CompletionCounters) {
    for class in OpClass::ALL {
        let s = c.latency(class).snapshot();
        let n = s.count();
        let mean = s.sum_ns.checked_div(n).map_or_else(|| "-".to_string(), |ns| (ns / 1000).to_string());
        let _ = writeln!(
            out,
            "  {}\tcount={n}\tp50_us={}\tp99_us={}\tmean_us={mean}",
            class.name(),
            quantile(&s, 0.5),
            quantile(&s, 0.99)
        );
    }
    let mut line = String::new();
    for (k, name) in SENSE_KEYS.iter().enumerate() {
        let n = c.error_kinds.sense_keys[k].load(Relaxed);
        if n > 0 {
            let _ = write!(line, "\t{name}={n}");
        }
    }
    for (name, n) in statuses(&c.error_kinds) {
        if n > 0 {
            let _ = write!(line, "\t{name}={n}");
        }
    }
    let _ = writeln!(out, "  errors\ttotal={}{line}", c.error_kinds.total());
}

/// The SGV pool line of the `stats` command.
pub fn write_sgv(out: &mut String, sgv: &SgvPool) {
    let s = sgv.stats();
    let _ = writeln!(
        out,
        "sgv\tbytes_in_use={}\tbytes_held={}\thits={}\tmisses={}\tlimit_failures={}\tpurged={}",
        s.bytes_in_use, s.bytes_held, s.hits, s.misses, s.limit_failures, s.purged
    );
}

/// A label value escaped as the exposition format wants (`\`, `"`, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One metric family's header.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The Prometheus text exposition of `devices` (name, device), `sessions` (target name,
/// session) and the buffer pool.
pub fn prometheus<'a>(
    devices: impl Iterator<Item = (&'a str, &'a Device)> + Clone,
    sessions: impl Iterator<Item = (&'a str, &'a Session)> + Clone,
    sgv: &SgvPool,
) -> String {
    let mut out = String::new();
    type Get = fn(&Device) -> u64;
    let simple: [(&str, &str, &str, Get); 6] = [
        ("scst_device_commands_total", "counter", "Commands completed.", |d| d.stats().io.completed()),
        ("scst_device_read_bytes_total", "counter", "Bytes read from the medium.", |d| {
            d.stats().read_bytes.load(Relaxed)
        }),
        (
            "scst_device_zero_copy_read_bytes_total",
            "counter",
            "Bytes read sent from the page cache without a copy.",
            |d| d.stats().zero_copy_read_bytes.load(Relaxed),
        ),
        ("scst_device_write_bytes_total", "counter", "Bytes written to the medium.", |d| {
            d.stats().write_bytes.load(Relaxed)
        }),
        ("scst_device_errors_total", "counter", "Commands that ended with an error status.", |d| {
            d.stats().errors_total()
        }),
        ("scst_device_in_flight", "gauge", "Commands received and not completed.", |d| d.stats().in_flight()),
    ];
    for (name, kind, help, get) in simple {
        family(&mut out, name, kind, help);
        for (dev, d) in devices.clone() {
            let _ = writeln!(out, "{name}{{device=\"{}\"}} {}", label(dev), get(d));
        }
    }
    family(&mut out, "scst_device_sense_key_errors_total", "counter", "CHECK CONDITION commands by sense key.");
    for (dev, d) in devices.clone() {
        for (k, key) in SENSE_KEYS.iter().enumerate() {
            let n = d.stats().io.error_kinds.sense_keys[k].load(Relaxed);
            let _ = writeln!(out, "scst_device_sense_key_errors_total{{device=\"{}\",key=\"{key}\"}} {n}", label(dev));
        }
    }
    family(
        &mut out,
        "scst_device_status_errors_total",
        "counter",
        "Commands by error status other than CHECK CONDITION.",
    );
    for (dev, d) in devices.clone() {
        for (status, n) in statuses(&d.stats().io.error_kinds) {
            let _ =
                writeln!(out, "scst_device_status_errors_total{{device=\"{}\",status=\"{status}\"}} {n}", label(dev));
        }
    }
    family(
        &mut out,
        "scst_device_latency_seconds",
        "histogram",
        "Time from the core's receipt of a command to its completion.",
    );
    for (dev, d) in devices {
        for class in OpClass::ALL {
            let s = d.stats().io.latency(class).snapshot();
            let lbl = format!("device=\"{}\",class=\"{}\"", label(dev), class.name());
            let mut cum = 0;
            for (i, n) in s.buckets.iter().enumerate() {
                cum += n;
                match LatencySnapshot::upper_bound_us(i) {
                    Some(us) => {
                        let _ = writeln!(
                            out,
                            "scst_device_latency_seconds_bucket{{{lbl},le=\"{}\"}} {cum}",
                            us as f64 / 1e6
                        );
                    }
                    None => {
                        let _ = writeln!(out, "scst_device_latency_seconds_bucket{{{lbl},le=\"+Inf\"}} {cum}");
                    }
                }
            }
            let _ = writeln!(out, "scst_device_latency_seconds_sum{{{lbl}}} {}", s.sum_ns as f64 / 1e9);
            let _ = writeln!(out, "scst_device_latency_seconds_count{{{lbl}}} {cum}");
        }
    }
    type GetS = fn(&Session) -> u64;
    let per_session: [(&str, &str, &str, GetS); 5] = [
        ("scst_session_commands_total", "counter", "Commands completed.", |s| s.stats().io.completed()),
        ("scst_session_read_bytes_total", "counter", "Data-In bytes of medium reads.", |s| {
            s.stats().read_bytes.load(Relaxed)
        }),
        ("scst_session_write_bytes_total", "counter", "Data-Out bytes of medium writes.", |s| {
            s.stats().write_bytes.load(Relaxed)
        }),
        ("scst_session_errors_total", "counter", "Commands that ended with an error status.", |s| {
            s.stats().io.error_kinds.total()
        }),
        ("scst_session_in_flight", "gauge", "Commands received and not completed.", |s| s.stats().in_flight()),
    ];
    for (name, kind, help, get) in per_session {
        family(&mut out, name, kind, help);
        for (target, s) in sessions.clone() {
            let _ = writeln!(
                out,
                "{name}{{target=\"{}\",initiator=\"{}\",session=\"{}\"}} {}",
                label(target),
                label(&s.config().initiator_port),
                s.id(),
                get(s)
            );
        }
    }
    let p = sgv.stats();
    for (name, kind, help, v) in [
        ("scst_sgv_bytes_in_use", "gauge", "Bytes of buffers handed out.", p.bytes_in_use as u64),
        ("scst_sgv_bytes_held", "gauge", "Bytes held from the system (in use and cached).", p.bytes_held as u64),
        ("scst_sgv_allocation_failures_total", "counter", "Allocations refused by the memory limit.", p.limit_failures),
        ("scst_sgv_misses_total", "counter", "Chunks that came from the system allocator.", p.misses),
    ] {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
    out
}

/// Answers one HTTP connection: `GET /metrics` gets `render()`, anything else 404 (a request
/// that is not HTTP at all, 400).
///
/// # Errors
/// The socket's.
pub fn answer(stream: TcpStream, render: impl FnOnce() -> String) -> std::io::Result<()> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut r = BufReader::new((&stream).take(MAX_REQUEST));
    let mut request = String::new();
    r.read_line(&mut request)?;
    // Read the headers up to the blank line (bounded by MAX_REQUEST in all).
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let mut parts = request.split_whitespace();
    let (method, path, version) = (parts.next(), parts.next(), parts.next());
    let (status, ctype, body) = match (method, path, version) {
        (Some("GET"), Some("/metrics"), Some(v)) if v.starts_with("HTTP/") => {
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render())
        }
        (Some(_), Some(_), Some(v)) if v.starts_with("HTTP/") => ("404 Not Found", "text/plain", "not found\n".into()),
        _ => ("400 Bad Request", "text/plain", "bad request\n".into()),
    };
    let mut w = &stream;
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    w.write_all(body.as_bytes())?;
    w.flush()
}

/// Serves `GET /metrics` on `listener`, one connection at a time (a scraper does not need more),
/// until the listener fails.
pub fn serve(listener: &TcpListener, render: impl Fn() -> String) {
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                if let Err(e) = answer(s, &render) {
                    tracing::debug!("metrics request: {e}");
                }
            }
            Err(e) => tracing::warn!("metrics accept: {e}"),
        }
    }
}

/// Binds `addr` (`--metrics`) and serves `GET /metrics` from a thread named `metrics`; the
/// bound address.
pub fn spawn(
    addr: std::net::SocketAddr,
    render: impl Fn() -> String + Send + 'static,
) -> Result<std::net::SocketAddr, String> {
    let l = TcpListener::bind(addr).map_err(|e| format!("--metrics {addr}: {e}"))?;
    let bound = l.local_addr().map_err(|e| format!("--metrics {addr}: {e}"))?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || serve(&l, render))
        .map_err(|e| format!("metrics thread: {e}"))?;
    tracing::info!(%bound, "serving metrics on GET /metrics");
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_text() {
        let mut s = LatencySnapshot::default();
        assert_eq!(quantile(&s, 0.5), "-");
        s.buckets[3] = 10;
        assert_eq!(quantile(&s, 0.5), "8");
        s.buckets[LATENCY_BUCKETS - 1] = 90;
        assert_eq!(quantile(&s, 0.99), format!(">{}", 1u64 << (LATENCY_BUCKETS - 2)));
    }
}
