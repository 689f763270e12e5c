# Colony recipes. `just --list` shows them.

# Run the main job: the demo trading swarm on the embedded data, to its report.
demo:
    cargo run --release -- run

# Run the whole test suite.
test:
    cargo test --workspace
    cargo test --manifest-path plugins/Cargo.toml --target-dir target/plugins

# Measure Colony against raw wasmtime and print the ratios.
bench:
    cargo run --release -- bench

# Build the shipped plugins (plugins/) for wasm32-wasip2 into target/wasm.
plugins:
    cd plugins && cargo build --release --target wasm32-wasip2 --target-dir ../target/wasm

# Check formatting and clippy lints.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# What CI runs.
ci:
    bash .ci/run
