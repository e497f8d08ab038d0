//! `snix-mount`: wiring only; the program lives in `snix_fuse_mount::cli`.

fn main() -> std::process::ExitCode {
    snix_fuse_mount::cli::main()
}
