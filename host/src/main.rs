//! The `colony` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    colony_host::cli::main()
}
