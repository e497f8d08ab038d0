//! `nix-daemon`: wiring only; the program lives in `snix_worker_protocol::cli`.

fn main() -> std::process::ExitCode {
    snix_worker_protocol::cli::main()
}
