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
    let mut child = Command::new(env!("CARGO_BIN_EXE_scst-target"))
        .args(["--listen", "127.0.0.1:0", "--log", "warn", "-c"])
        .arg(conf)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start scst-target");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("its URL");
    let addr = line.trim().strip_prefix("iscsi://").and_then(|r| r.split('/').next()).expect("URL");
    (Daemon(child), addr.parse().expect("portal"))
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
