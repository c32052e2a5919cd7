//! `scst-target` as a process: it serves what its scst.conf says, and SIGHUP applies an edited
//! file to live sessions (or, for a file that cannot be applied, changes nothing).

#[path = "../../scst-transport-iscsi/tests/common/mod.rs"]
#[allow(dead_code, unreachable_pub, clippy::all)]
mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Conn, LoginOpts, TARGET_NAME, pattern};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(conf: &Path) -> (Daemon, SocketAddr) {
    let (d, addr, _) = start_with(conf, &[]);
    (d, addr)
}

/// Starts the daemon with `extra` arguments; returns its portal and, when it serves metrics,
/// the `metrics://` address it printed.
fn start_with(conf: &Path, extra: &[&str]) -> (Daemon, SocketAddr, Option<SocketAddr>) {
    let sock = conf.with_file_name("control.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_scst-target"))
        .args(["--listen", "127.0.0.1:0", "--log", "warn", "-c"])
        .arg(conf)
        .arg("--control")
        .arg(sock)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start scst-target");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("its URL");
    let addr: SocketAddr =
        line.trim().strip_prefix("iscsi://").and_then(|r| r.split('/').next()).expect("URL").parse().expect("portal");
    let mut metrics = None;
    if extra.contains(&"--metrics") {
        // One URL per target, then the metrics address.
        loop {
            line.clear();
            assert!(out.read_line(&mut line).expect("stdout") > 0, "no metrics:// line");
            if let Some(m) = line.trim().strip_prefix("metrics://") {
                metrics = Some(m.trim_end_matches("/metrics").parse().expect("metrics address"));
                break;
            }
        }
    }
    (Daemon(child), addr, metrics)
}

/// One HTTP request `head` to `addr`; the whole answer.
fn http(addr: SocketAddr, head: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).expect("an answer");
    r
}

#[test]
fn metrics_are_served_over_tcp_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scst.conf");
    std::fs::write(&path, conf(dir.path(), "\t\tLUN 0 disk01\n\t\tLUN 1 null0\n")).unwrap();
    let (_d, addr, metrics) = start_with(&path, &["--metrics", "127.0.0.1:0"]);
    let metrics = metrics.expect("metrics address");
    let mut c = Conn::login(addr, &LoginOpts::normal()).expect("login");
    c.clear_ua(0);
    c.clear_ua(1);
    let data = pattern(4096, 3);
    for lba in [0, 8] {
        c.write(0, lba, &data).assert_good();
    }
    for lba in [0, 8, 16] {
        c.read(1, lba, 8).assert_good();
    }
    let r = http(metrics, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = r.split_once("\r\n\r\n").expect("HTTP answer");
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    for want in [
        "scst_device_write_bytes_total{device=\"disk01\"} 8192",
        "scst_device_read_bytes_total{device=\"null0\"} 12288",
        "scst_device_latency_seconds_count{device=\"null0\",class=\"read\"} 3",
        "scst_device_latency_seconds_bucket{device=\"null0\",class=\"read\",le=\"+Inf\"} 3",
        "scst_device_latency_seconds_count{device=\"disk01\",class=\"write\"} 2",
        "scst_device_in_flight{device=\"disk01\"} 0",
        "# TYPE scst_device_latency_seconds histogram",
    ] {
        assert!(body.lines().any(|l| l == want), "missing {want:?} in\n{body}");
    }
    let session = body
        .lines()
        .find(|l| l.starts_with("scst_session_read_bytes_total{target=\""))
        .unwrap_or_else(|| panic!("no session line in\n{body}"));
    assert!(session.contains(&LoginOpts::normal().initiator) && session.ends_with(" 12288"), "{session}");
    // Only GET /metrics.
    assert!(http(metrics, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    assert!(http(metrics, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    assert!(http(metrics, "hello\r\n\r\n").starts_with("HTTP/1.1 400 "));
    // A request head that never ends is cut off at its bound (the server answers or closes; it
    // does not keep reading), and the server still answers the next scraper.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(metrics).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(format!("GET /x HTTP/1.1\r\nX: {}", "a".repeat(1 << 20)).as_bytes());
        let mut r = Vec::new();
        let e = s.read_to_end(&mut r);
        // The server closing with the rest unread resets the connection, which may cut its
        // answer short (a run read "HTTP/1.1 " and then the reset).
        assert!(e.is_ok() || e.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset), "{e:?}");
        let want = b"HTTP/1.1 404 ";
        assert!(r.starts_with(want) || want.starts_with(&r), "{:?}", String::from_utf8_lossy(&r));
    }
    assert!(http(metrics, "GET /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200 OK"));
}

fn conf(dir: &Path, luns: &str) -> String {
    format!(
        "# as scstadmin writes it\nHANDLER vdisk_fileio {{\n\tDEVICE disk01 {{\n\t\tfilename {}\n\t\tsize_mb 8\n\t\tnv_cache 1\n\t}}\n}}\n\
         HANDLER vdisk_nullio {{\n\tDEVICE null0 {{\n\t\tsize_mb 16\n\t}}\n}}\n\
         TARGET_DRIVER iscsi {{\n\tenabled 1\n\tTARGET {TARGET_NAME} {{\n{luns}\t\tenabled 1\n\t}}\n}}\n",
        dir.join("disk01.img").display()
    )
}

fn report_luns(c: &mut Conn) -> Vec<u16> {
    let mut cdb = [0u8; 16];
    cdb[0] = 0xa0;
    cdb[9] = 255;
    let r = c.exec(0, cdb, true, 255, &[]);
    r.assert_good();
    r.data[8..].chunks(8).map(|l| u16::from_be_bytes([l[0] & 0x3f, l[1]])).collect()
}

fn hup(d: &Daemon) {
    let pid = nix::unistd::Pid::from_raw(d.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    // The daemon applies the file and answers nothing; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn serves_the_file_and_applies_an_edit_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scst.conf");
    std::fs::write(&path, conf(dir.path(), "\t\tLUN 0 disk01\n")).unwrap();
    let (d, addr) = start(&path);
    let mut c = Conn::login(addr, &LoginOpts::normal()).expect("login");
    c.clear_ua(0);
    assert_eq!(report_luns(&mut c), [0]);
    let data = pattern(4096, 7);
    c.write(0, 0, &data).assert_good();
    assert!(std::fs::metadata(dir.path().join("disk01.img")).unwrap().len() == 8 << 20, "created with size_mb");

    // Map a second LUN, read-only: the live session sees it after a unit attention.
    std::fs::write(&path, conf(dir.path(), "\t\tLUN 0 disk01\n\t\tLUN 4 null0 {\n\t\t\tread_only 1\n\t\t}\n")).unwrap();
    hup(&d);
    c.tur(0).assert_check(0x06, 0x3f, 0x0e); // REPORTED LUNS DATA HAS CHANGED
    assert_eq!(report_luns(&mut c), [0, 4]);
    c.clear_ua(4);
    c.write(4, 0, &data).assert_check(0x07, 0x27, 0x00); // WRITE PROTECTED
    let r = c.read(0, 0, 8);
    r.assert_good();
    assert_eq!(r.data, data, "LUN 0's data is untouched by the reload");

    // A file that cannot be applied live (a device's definition changed) changes nothing.
    std::fs::write(&path, conf(dir.path(), "\t\tLUN 0 disk01\n").replace("size_mb 16", "size_mb 32")).unwrap();
    hup(&d);
    assert_eq!(report_luns(&mut c), [0, 4]);
    // Nor does one with a syntax error.
    std::fs::write(&path, "HANDLER vdisk_nullio {\n").unwrap();
    hup(&d);
    assert_eq!(report_luns(&mut c), [0, 4]);
    c.tur(0).assert_good();
}

#[test]
fn check_reports_the_first_error_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scst.conf");
    std::fs::write(&path, "HANDLER vdisk_fileio {\n\tDEVICE d {\n\t\tfilename /x\n\t\tbogus 1\n\t}\n}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scst-target")).arg("--check").arg("-c").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scst.conf:4:3: attribute \"bogus\" is not supported"), "{err}");
}

/// The id (first column) of the one line of `scstctl sessions`.
fn out_id(sessions: &str) -> String {
    let mut lines = sessions.lines();
    let id = lines.next().and_then(|l| l.split('\t').next()).expect("a session").to_string();
    assert!(lines.next().is_none(), "one session: {sessions}");
    id
}

fn scstctl(sock: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scstctl")).arg("--socket").arg(sock).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn scstctl_shows_applies_and_writes_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scst.conf");
    let sock = dir.path().join("control.sock");
    std::fs::write(&path, conf(dir.path(), "\t\tLUN 0 disk01\n")).unwrap();
    let (_d, addr) = start(&path);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the management socket is the owner's only");
    let mut c = Conn::login(addr, &LoginOpts::normal()).expect("login");
    c.clear_ua(0);

    let (ok, out, _) = scstctl(&sock, &["targets"]);
    assert!(ok);
    assert_eq!(out, format!("{TARGET_NAME}\tluns=1\tgroups=0\tsessions=1\n"));
    let (ok, out, _) = scstctl(&sock, &["sessions"]);
    assert!(ok && out.contains(&format!("\t{TARGET_NAME}\t{}\tluns=1\t", LoginOpts::normal().initiator)), "{out}");
    let (ok, out, _) = scstctl(&sock, &["devices"]);
    assert!(ok && out.starts_with("disk01\tvdisk_fileio\tcommands="), "{out}");
    // One session in detail: what the login negotiated.
    let id = out_id(&scstctl(&sock, &["sessions"]).1);
    let (ok, out, _) = scstctl(&sock, &["session", &id]);
    assert!(ok, "{out}");
    for line in [
        format!("target\t{TARGET_NAME}"),
        "HeaderDigest\tNone".into(),
        "ImmediateData\tYes".into(),
        // The login response carries the target's own MaxRecvDataSegmentLength.
        format!("TargetMaxRecvDataSegmentLength\t{}", c.num("MaxRecvDataSegmentLength")),
        "ErrorRecoveryLevel\t0".into(),
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in\n{out}");
    }
    let (ok, _, err) = scstctl(&sock, &["session", "999999"]);
    assert!(!ok && err.contains("no session 999999"), "{err}");

    // apply FILE (relative to the caller) maps a LUN live.
    let other = dir.path().join("other.conf");
    std::fs::write(&other, conf(dir.path(), "\t\tLUN 0 disk01\n\t\tLUN 2 null0\n")).unwrap();
    let (ok, out, err) = scstctl(&sock, &["apply", other.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("target {TARGET_NAME}: LUN 2 = null0 in the default map\n1 changes\n"));
    c.tur(0).assert_check(0x06, 0x3f, 0x0e);
    assert_eq!(report_luns(&mut c), [0, 2]);

    // write-config: the running state, which applies as no change.
    let (ok, written, _) = scstctl(&sock, &["write-config"]);
    assert!(ok && written.contains("\t\tLUN 2 null0\n"), "{written}");
    std::fs::write(&other, &written).unwrap();
    let (ok, out, _) = scstctl(&sock, &["apply", other.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(out, "0 changes\n");

    // Another user is refused (by the socket's mode, and by the peer credential check).
    if nix::unistd::geteuid().is_root() && Path::new("/usr/bin/setpriv").exists() {
        let out = Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_scstctl"), "--socket"])
            .arg(&sock)
            .arg("targets")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
        assert!(err.starts_with("scstctl: ") && err.to_lowercase().contains("permission denied"), "{err}");
    }

    // Errors: the daemon's message, exit status 1.
    let (ok, _, err) = scstctl(&sock, &["luns", "iqn.nope"]);
    assert!(!ok && err == "scstctl: no target iqn.nope\n", "{err}");
    std::fs::write(&other, "TARGET_DRIVER iscsi {\n\tTARGET x {\n\t\tLUN 0 ghost\n\t}\n}\n").unwrap();
    let (ok, _, err) = scstctl(&sock, &["apply", other.to_str().unwrap()]);
    assert!(!ok && err.contains("other.conf:2:2: target x: LUN 0 names an undefined device \"ghost\""), "{err}");
    assert_eq!(report_luns(&mut c), [0, 2]);
}

#[test]
fn scstctl_apply_removes_a_target_and_changes_chap_under_live_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scst.conf");
    let sock = dir.path().join("control.sock");
    let gone = "iqn.2026-12.rs.scst:gone";
    // conf()'s file with a second target in its iscsi section.
    let both = conf(dir.path(), "\t\tLUN 0 disk01\n").replace(
        "\t\tenabled 1\n\t}\n}\n",
        &format!("\t\tenabled 1\n\t}}\n\tTARGET {gone} {{\n\t\tLUN 0 null0\n\t\tenabled 1\n\t}}\n}}\n"),
    );
    assert!(both.contains(gone));
    std::fs::write(&path, both).unwrap();
    let (_d, addr) = start(&path);
    let mut stays = Conn::login(addr, &LoginOpts::normal()).expect("login");
    stays.clear_ua(0);
    let gone_opts = LoginOpts { target: Some(gone.into()), ..LoginOpts::normal() };
    let mut leaving = Conn::login(addr, &gone_opts).expect("login to the other target");
    leaving.clear_ua(0);

    // The second target goes, and the first now requires CHAP.
    let chap = "\t\tIncomingUser \"joe secret-123456\"\n";
    std::fs::write(&path, conf(dir.path(), &format!("\t\tLUN 0 disk01\n{chap}"))).unwrap();
    let (ok, out, err) = scstctl(&sock, &["apply"]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("target {gone} removed")), "{out}");
    assert!(out.contains("CHAP credentials changed"), "{out}");
    // The removed target's session was asked to log out (Async Message, event 1), then closed.
    let seen = leaving.expect_closed(Duration::from_secs(8));
    assert!(
        seen.iter().any(|p| p.op() == scst_transport_iscsi::proto::bhs::Opcode::ASYNC_MESSAGE),
        "no logout request before the close: {seen:?}"
    );
    // The other session goes on; a new login needs the new secret; the removed target is gone.
    let data = pattern(4096, 3);
    stays.write(0, 0, &data).assert_good();
    assert_eq!(Conn::login(addr, &gone_opts).err().expect("removed target").status, 0x0203);
    assert_eq!(Conn::login(addr, &LoginOpts::normal()).err().expect("CHAP now required").status, 0x0201);
    let joe = LoginOpts { chap: Some(("joe".into(), b"secret-123456".to_vec())), ..LoginOpts::normal() };
    let mut c = Conn::login(addr, &joe).expect("login with the new secret");
    c.clear_ua(0);
    let r = c.read(0, 0, 8);
    r.assert_good();
    assert_eq!(r.data, data);
    // close-session ends one session; the others stay.
    drop(stays);
    std::thread::sleep(Duration::from_millis(300));
    let id = out_id(&scstctl(&sock, &["sessions"]).1);
    let (ok, out, err) = scstctl(&sock, &["close-session", &id]);
    assert!(ok && out == format!("session {id} closing\n"), "{out}{err}");
    assert!(c.expect_closed(Duration::from_secs(5)).is_empty());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(scstctl(&sock, &["sessions"]).1, "");
}

#[test]
fn live_changes_to_other_targets_leave_verified_io_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scst.conf");
    let sock = dir.path().join("control.sock");
    let (b, c) = ("iqn.2026-12.rs.scst:b", "iqn.2026-12.rs.scst:c");
    // conf()'s target (LUN 0 disk01, under load) and more targets in the same iscsi section.
    let file = |more: &str| {
        conf(dir.path(), "\t\tLUN 0 disk01\n")
            .replace("\t\tenabled 1\n\t}\n}\n", &format!("\t\tenabled 1\n\t}}\n{more}}}\n"))
    };
    let target = |name: &str, body: &str| format!("\tTARGET {name} {{\n{body}\t\tenabled 1\n\t}}\n");
    std::fs::write(&path, file(&(target(b, "\t\tLUN 0 null0\n") + &target(c, "\t\tLUN 0 null0\n")))).unwrap();
    let (_d, addr) = start(&path);
    let soak = Command::new(env!("CARGO_BIN_EXE_iscsi-soak"))
        .args(["--portal", &addr.to_string(), "--target", TARGET_NAME, "--sessions", "4", "--depth", "8"])
        .args(["--duration", "6", "--report", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("iscsi-soak");
    std::thread::sleep(Duration::from_secs(1));
    // While it runs: B gains a LUN and a group, C goes away, D comes; then B loses them again.
    let steps = [
        target(
            b,
            "\t\tLUN 0 null0\n\t\tLUN 3 null0\n\t\tGROUP g {\n\t\t\tLUN 0 null0\n\t\t\tINITIATOR iqn.x*\n\t\t}\n",
        ) + &target(c, "\t\tLUN 0 null0\n"),
        target(b, "\t\tLUN 0 null0\n\t\tLUN 3 null0\n"),
        target(b, "\t\tLUN 0 null0\n\t\tLUN 3 null0\n") + &target("iqn.2026-12.rs.scst:d", "\t\tLUN 0 null0\n"),
        target(b, "\t\tLUN 0 null0\n") + &target("iqn.2026-12.rs.scst:d", "\t\tLUN 0 null0\n"),
    ];
    for (i, more) in steps.iter().enumerate() {
        std::fs::write(&path, file(more)).unwrap();
        let (ok, out, err) = scstctl(&sock, &["apply"]);
        assert!(ok && !out.starts_with("ok\n0 changes"), "step {i}: {out}{err}");
        std::thread::sleep(Duration::from_millis(700));
    }
    let out = soak.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "verified I/O on the untouched target failed:\n{stdout}\n{stderr}");
    let verified: f64 = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("verified_MiB="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {stdout}"));
    assert!(stdout.contains(" errors=0") && verified >= 1.0, "{stdout}");
    let (ok, targets, _) = scstctl(&sock, &["targets"]);
    assert!(ok && targets.contains("iqn.2026-12.rs.scst:d") && !targets.contains(c), "{targets}");
}

/// `HANDLER vdisk_rbd` on a real Ceph cluster (scripts/ceph-cluster.sh, unless
/// `SCST_CEPH_CONF=PATH` names one): the bytes an initiator writes are in the image, and a
/// resize of the image reaches live sessions on SIGHUP.
#[cfg(feature = "rbd")]
mod rbd {
    use super::*;
    use std::path::PathBuf;

    fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/ceph-cluster.sh")
    }

    /// The test cluster: started here (and stopped when dropped) unless `SCST_CEPH_CONF` names one.
    struct Cluster {
        conf: PathBuf,
        own: Option<PathBuf>,
    }

    impl Cluster {
        fn get() -> Self {
            if let Some(c) = std::env::var_os("SCST_CEPH_CONF") {
                return Self { conf: c.into(), own: None };
            }
            let dir = std::env::temp_dir().join(format!("scst-daemon-rbd-{}", std::process::id()));
            let start = || Command::new(script()).arg("start").arg(&dir).output().expect("run ceph-cluster.sh");
            let mut out = start();
            if !out.status.success() {
                let _ = Command::new(script()).arg("stop").arg(&dir).status();
                out = start();
            }
            assert!(
                out.status.success(),
                "no Ceph cluster (set SCST_CEPH_CONF or install ceph-mon ceph-osd ceph-common): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Self { conf: String::from_utf8_lossy(&out.stdout).trim().into(), own: Some(dir) }
        }

        fn rbd(&self, args: &[&str]) -> Vec<u8> {
            let out = Command::new("rbd").arg("-c").arg(&self.conf).args(args).output().expect("run rbd");
            assert!(out.status.success(), "rbd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        }
    }

    impl Drop for Cluster {
        fn drop(&mut self) {
            if let Some(dir) = &self.own {
                let _ = Command::new(script()).arg("stop").arg(dir).status();
            }
        }
    }

    fn read_capacity16(c: &mut Conn) -> (u64, u32) {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x9e;
        cdb[1] = 0x10;
        cdb[13] = 32;
        let r = c.exec(0, cdb, true, 32, &[]);
        r.assert_good();
        let last = u64::from_be_bytes(r.data[0..8].try_into().unwrap());
        (last, u32::from_be_bytes(r.data[8..12].try_into().unwrap()))
    }

    #[test]
    fn serves_an_rbd_image_from_scst_conf_and_shows_a_resize_at_once() {
        let cluster = Cluster::get();
        let image = format!("scst-daemon-{}", std::process::id());
        cluster.rbd(&["create", "--size", "16M", &format!("rbd/{image}")]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scst.conf");
        std::fs::write(
            &path,
            format!(
                "HANDLER vdisk_rbd {{\n\tDEVICE r0 {{\n\t\tpool rbd\n\t\timage {image}\n\t\tconf {}\n\t}}\n}}\n\
                 TARGET_DRIVER iscsi {{\n\tTARGET {TARGET_NAME} {{\n\t\tLUN 0 r0\n\t\tenabled 1\n\t}}\n}}\n",
                cluster.conf.display()
            ),
        )
        .unwrap();
        let (d, addr) = start(&path);
        let mut c = Conn::login(addr, &LoginOpts::normal()).expect("login");
        c.clear_ua(0);
        assert_eq!(read_capacity16(&mut c), ((16 << 20) / 512 - 1, 512));
        let data = pattern(8192, 11);
        c.write(0, 8, &data).assert_good();
        let r = c.read(0, 8, 16);
        r.assert_good();
        assert_eq!(r.data, data);
        // The bytes are in the image, as another client of the cluster sees them.
        let out = dir.path().join("export.img");
        cluster.rbd(&["export", &format!("rbd/{image}"), out.to_str().unwrap()]);
        let exported = std::fs::read(&out).unwrap();
        assert_eq!(&exported[8 * 512..8 * 512 + 8192], &data[..], "WRITE in the image");

        // Grown behind the target's back: the LUN's watch on the image header tells the live
        // session, with no reload (SIGHUP would rescan too).
        cluster.rbd(&["resize", "--size", "32M", &format!("rbd/{image}")]);
        let t0 = std::time::Instant::now();
        let tur = loop {
            let r = c.tur(0);
            if r.status != 0 || t0.elapsed() > Duration::from_secs(20) {
                break r;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        tur.assert_check(0x06, 0x2a, 0x09); // CAPACITY DATA HAS CHANGED
        assert_eq!(read_capacity16(&mut c), ((32 << 20) / 512 - 1, 512));
        c.write(0, (24 << 20) / 512, &data).assert_good();
        drop(c);
        drop(d);
        cluster.rbd(&["rm", "--no-progress", &format!("rbd/{image}")]);
    }
}
