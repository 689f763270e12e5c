//! The `colony` CLI, built inside this package so integration tests can run it via `CARGO_BIN_EXE_colony`.
fn main() -> std::process::ExitCode {
    colony_cli::main()
}
