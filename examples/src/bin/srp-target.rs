//! `srp-target` (being written).

fn main() -> std::process::ExitCode {
    eprintln!("srp-target: not built yet");
    std::process::ExitCode::from(2)
}
