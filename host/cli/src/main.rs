//! The `colony` binary: everything lives in the `colony_cli` library.

fn main() -> std::process::ExitCode {
    colony_cli::main()
}
