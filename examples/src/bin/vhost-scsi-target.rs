//! `vhost-scsi-target` (being written).

fn main() -> std::process::ExitCode {
    eprintln!("vhost-scsi-target: not built yet");
    std::process::ExitCode::from(2)
}
