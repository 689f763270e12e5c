//! Colony's integration tests: one binary, one module per feature.

mod audit;
mod audit_cli;
mod cli;
mod clock;
mod crash;
mod demo;
mod denials;
mod grants;
mod guests;
mod hot_reload;
mod http;
mod lifecycle;
mod limits;
mod loading;
mod market;
mod messaging;
mod names;
mod nats;
mod orders;
mod python_tools;
mod scaffold;
mod support;
mod tools;
