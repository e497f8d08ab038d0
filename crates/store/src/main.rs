//! `snix-store`: wiring only; the program lives in `snix_store::cli`.

fn main() -> std::process::ExitCode {
    snix_store::cli::main()
}
