//! `fc-target` (being written).

fn main() -> std::process::ExitCode {
    eprintln!("fc-target: not built yet");
    std::process::ExitCode::from(2)
}
