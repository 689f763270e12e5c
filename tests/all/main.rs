//! Colony's integration tests: one binary, one module per feature.

mod cli;
mod guests;
mod hot_reload;
mod limits;
mod loading;
mod scaffold;
