//! `scst-target` serving a Ceph RBD image named in its scst.conf (`HANDLER vdisk_rbd`): the bytes
//! an initiator writes are in the image, and a resize of the image reaches live sessions on
//! SIGHUP. Runs on a real single-node cluster (scripts/ceph-cluster.sh) unless
//! `SCST_CEPH_CONF=PATH` names one; builds with the rbd feature only.
#![cfg(feature = "rbd")]

#[path = "../../scst-transport-iscsi/tests/common/mod.rs"]
#[allow(dead_code, unreachable_pub, clippy::all)]
mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Conn, LoginOpts, TARGET_NAME, pattern};

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

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(conf: &Path) -> (Daemon, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scst-target"))
        .args(["--listen", "127.0.0.1:0", "--log", "warn", "-c"])
        .arg(conf)
        .arg("--control")
        .arg(conf.with_file_name("control.sock"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start scst-target");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("its URL");
    let addr =
        line.trim().strip_prefix("iscsi://").and_then(|r| r.split('/').next()).expect("URL").parse().expect("portal");
    (Daemon(child), addr)
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
fn serves_an_rbd_image_from_scst_conf_and_shows_a_resize_on_sighup() {
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

    // Grown behind the target's back: the reload's rescan tells the live session.
    cluster.rbd(&["resize", "--size", "32M", &format!("rbd/{image}")]);
    let pid = nix::unistd::Pid::from_raw(d.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    std::thread::sleep(Duration::from_millis(500));
    c.tur(0).assert_check(0x06, 0x2a, 0x09); // CAPACITY DATA HAS CHANGED
    assert_eq!(read_capacity16(&mut c), ((32 << 20) / 512 - 1, 512));
    c.write(0, (24 << 20) / 512, &data).assert_good();
    drop(c);
    drop(d);
    cluster.rbd(&["rm", "--no-progress", &format!("rbd/{image}")]);
}
