//! `snix-castore`: wiring only; the program lives in `snix_castore::cli`.

fn main() -> std::process::ExitCode {
    snix_castore::cli::main()
}
