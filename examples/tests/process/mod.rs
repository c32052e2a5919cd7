//! Running `iscsi-target` itself for the process-level tests (kill -9, restart).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A running target, killed (SIGKILL) when dropped, also when a test fails.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary on an ephemeral loopback port with `args` after `--listen` and `--target
/// target`; returns it and its portal (read from the URL it prints).
pub(crate) fn start(target: &str, args: &[String]) -> (Running, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iscsi-target"))
        .args(["--listen", "127.0.0.1:0", "--target", target])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start iscsi-target");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("its URL");
    // iscsi://127.0.0.1:PORT/IQN/0
    let addr = line.trim().strip_prefix("iscsi://").and_then(|r| r.split('/').next()).expect("URL");
    (Running(child), addr.parse().expect("portal"))
}
