# Colony recipes. `just --list` shows them.

# Run the main job: the demo trading swarm on the embedded data, to its report.
demo:
    cargo run --release -- run

# Run the whole test suite, then build the book.
test:
    cargo test --workspace
    cargo test --manifest-path plugins/Cargo.toml --target-dir target/plugins
    { mdbook --version 2>/dev/null | grep -qx 'mdbook v0.5.4' || cargo install mdbook --locked --version 0.5.4 --no-default-features --features search; }
    mdbook build docs -d target/book

# Build the book (docs/) into target/book, installing the pinned mdbook first if needed.
book:
    { mdbook --version 2>/dev/null | grep -qx 'mdbook v0.5.4' || cargo install mdbook --locked --version 0.5.4 --no-default-features --features search; }
    mdbook build docs -d target/book

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
