//! An agent that probes what WASI gives it: environment, arguments, files, directories, stdin
//! and the network. The host links WASI deny-by-default, so on-timer finds nothing and returns
//! `Ok`; anything it does find is returned as `error::denied` listing it.

use std::io::Read;

use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

struct Agent;

fn probe() -> Vec<String> {
    let mut found = Vec::new();
    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    if !vars.is_empty() {
        found.push(format!("environment variables {vars:?}"));
    }
    if std::env::args().count() > 0 {
        found.push("arguments".into());
    }
    for dir in ["/", ".", "/tmp"] {
        if std::fs::read_dir(dir).is_ok() {
            found.push(format!("directory {dir}"));
        }
    }
    for file in ["/etc/passwd", "Cargo.toml"] {
        if std::fs::File::open(file).is_ok() {
            found.push(format!("file {file}"));
        }
    }
    if std::fs::write("/tmp/colony-probe", b"x").is_ok() {
        found.push("writable /tmp".into());
    }
    let mut buf = [0u8; 16];
    if matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {
        found.push("stdin data".into());
    }
    for addr in ["127.0.0.1:4222", "127.0.0.1:5432"] {
        if std::net::TcpStream::connect(addr).is_ok() {
            found.push(format!("tcp connect to {addr}"));
        }
    }
    if std::net::UdpSocket::bind("127.0.0.1:0").is_ok_and(|s| s.send_to(b"x", "127.0.0.1:9").is_ok()) {
        found.push("udp send".into());
    }
    found
}

impl Guest for Agent {
    fn init(_config: String) -> Result<(), Error> {
        Ok(())
    }

    fn on_message(_msg: Message) -> Result<(), Error> {
        Ok(())
    }

    fn on_market(_event: MarketEvent) -> Result<(), Error> {
        Ok(())
    }

    fn on_order(_event: OrderEvent) -> Result<(), Error> {
        Ok(())
    }

    fn on_timer(_now: Timestamp) -> Result<(), Error> {
        let found = probe();
        if found.is_empty() {
            Ok(())
        } else {
            Err(Error::Denied(format!("WASI gave access to: {}", found.join(", "))))
        }
    }

    fn snapshot() -> Vec<u8> {
        Vec::new()
    }

    fn restore(_snapshot: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }
}

export!(Agent);
