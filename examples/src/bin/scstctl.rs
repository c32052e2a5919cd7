//! `scstctl`: the management CLI of `scst-target`.
//!
//! `scstctl apply [FILE]`, `scstctl write-config`, `scstctl targets`, `scstctl luns TARGET`,
//! `scstctl sessions [TARGET]`, `scstctl session ID` (with what its login negotiated),
//! `scstctl close-session ID`, `scstctl devices`, `scstctl stats [DEVICE]`, `scstctl help`. It
//! talks to the daemon's management socket (default `/run/scst-target.sock`), prints the reply,
//! and exits 1 if the daemon answered with an error.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "scstctl", version, about = "Manage a running scst-target", after_help = scst_examples::daemon::COMMANDS)]
struct Args {
    /// The daemon's management socket.
    #[arg(long = "socket", value_name = "PATH", default_value = "/run/scst-target.sock")]
    socket: PathBuf,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut cmd = args.command;
    // A relative FILE means the caller's, not the daemon's, working directory.
    if cmd.first().is_some_and(|c| c == "apply")
        && let Some(f) = cmd.get_mut(1)
        && let Ok(abs) = std::path::absolute(&*f)
    {
        *f = abs.display().to_string();
    }
    if cmd.iter().any(|w| w.contains(char::is_whitespace)) {
        eprintln!("scstctl: arguments may not contain white space");
        return ExitCode::FAILURE;
    }
    let reply = UnixStream::connect(&args.socket).and_then(|mut s| {
        s.write_all(format!("{}\n", cmd.join(" ")).as_bytes())?;
        let mut r = String::new();
        s.read_to_string(&mut r)?;
        Ok(r)
    });
    match reply {
        Ok(r) => match r.strip_prefix("ok\n") {
            Some(body) => {
                print!("{body}");
                ExitCode::SUCCESS
            }
            None => {
                eprint!("scstctl: {}", r.strip_prefix("error: ").unwrap_or(&r));
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("scstctl: {}: {e}", args.socket.display());
            ExitCode::FAILURE
        }
    }
}
