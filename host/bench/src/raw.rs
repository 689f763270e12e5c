//! The raw-wasmtime baseline's host: a store with a default WASI context and host functions
//! that do nothing (no grant check, no budget, no feed, venue, tools or timers), so that
//! [`crate::run`]'s raw side measures wasmtime alone on the same component.
//!
//! It does not reuse `colony-host`'s per-interface contexts (`LogCtx`, `MessagingCtx`, …):
//! those are the work Colony adds (the grant gate, the log budget and level dispatch), which
//! is what the ratios measure.

use wasmtime::Store;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use colony_host::bindings::{log, market_data, messaging, orders, state, timers, tools, types};

/// The raw baseline's store data: WASI and its resource table, nothing of Colony's.
pub(crate) struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for RawState {}

/// The raw baseline's market data: there is no feed (the bench agent never calls it).
impl market_data::Host for RawState {
    async fn subscribe(
        &mut self,
        _symbol: String,
        _kinds: market_data::Kinds,
    ) -> wasmtime::Result<Result<u64, types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn unsubscribe(&mut self, _id: u64) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn quote(&mut self, _s: String) -> wasmtime::Result<Result<types::Quote, types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn book(
        &mut self,
        _s: String,
        _d: u32,
    ) -> wasmtime::Result<Result<types::Book, types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn candles(
        &mut self,
        _s: String,
        _i: u32,
        _l: u32,
    ) -> wasmtime::Result<Result<Vec<types::Candle>, types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn status(
        &mut self,
        _s: String,
    ) -> wasmtime::Result<Result<market_data::SymbolStatus, types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn symbols(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// The raw baseline has no venue either.
impl orders::Host for RawState {
    async fn place(
        &mut self,
        _o: orders::OrderRequest,
    ) -> wasmtime::Result<Result<orders::OrderAck, types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn cancel(&mut self, _c: String) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn open_orders(&mut self) -> wasmtime::Result<Vec<orders::OpenOrder>> {
        Ok(Vec::new())
    }
    async fn position(
        &mut self,
        _s: String,
    ) -> wasmtime::Result<Result<orders::PositionInfo, types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn balances(&mut self) -> wasmtime::Result<Vec<orders::Balance>> {
        Ok(Vec::new())
    }
}

/// Nor tools.
impl tools::Host for RawState {
    async fn list(&mut self) -> wasmtime::Result<Vec<tools::ToolInfo>> {
        Ok(Vec::new())
    }
    async fn call(
        &mut self,
        _n: String,
        _a: String,
    ) -> wasmtime::Result<Result<String, tools::ToolError>> {
        Ok(Err(tools::ToolError::Unavailable(
            "no tools in the raw baseline".into(),
        )))
    }
    async fn register(
        &mut self,
        _c: Vec<u8>,
    ) -> wasmtime::Result<Result<tools::ToolInfo, tools::ToolError>> {
        Ok(Err(tools::ToolError::Unavailable(
            "no tools in the raw baseline".into(),
        )))
    }
}

impl timers::Host for RawState {
    async fn set(
        &mut self,
        _name: String,
        _after_ms: u64,
        _period_ms: u64,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Err(types::Error::Unavailable(
            "no timers in the raw baseline".into(),
        )))
    }
    async fn cancel(&mut self, _name: String) -> wasmtime::Result<bool> {
        Ok(false)
    }
}

fn no_feed() -> types::Error {
    types::Error::Unavailable("no feed in the raw baseline".into())
}

impl log::Host for RawState {
    fn log(&mut self, _level: log::Level, _message: String) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl messaging::Host for RawState {
    async fn publish(
        &mut self,
        _s: String,
        _p: Vec<u8>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Ok(()))
    }
    async fn publish_with(
        &mut self,
        _s: String,
        _p: Vec<u8>,
        _o: messaging::SendOptions,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Ok(()))
    }
    async fn subscribe(&mut self, _p: String) -> wasmtime::Result<Result<u64, types::Error>> {
        Ok(Ok(0))
    }
    async fn unsubscribe(&mut self, _id: u64) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Ok(()))
    }
    async fn request(
        &mut self,
        _s: String,
        _p: Vec<u8>,
        _t: u32,
    ) -> wasmtime::Result<Result<types::Message, types::Error>> {
        Ok(Err(types::Error::Timeout))
    }
    async fn gather(
        &mut self,
        _s: String,
        _p: Vec<u8>,
        _q: u32,
        _t: u32,
    ) -> wasmtime::Result<Result<Vec<types::Message>, types::Error>> {
        Ok(Ok(Vec::new()))
    }
    async fn reply(
        &mut self,
        _r: String,
        _p: Vec<u8>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Ok(()))
    }
}

impl state::Host for RawState {
    async fn get(
        &mut self,
        _key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, types::Error>> {
        Ok(Ok(None))
    }
    async fn set(
        &mut self,
        _key: String,
        _value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Ok(()))
    }
    async fn delete(&mut self, _key: String) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Ok(()))
    }
    async fn keys(
        &mut self,
        _prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, types::Error>> {
        Ok(Ok(Vec::new()))
    }
}

/// A raw store on `engine`, with all the fuel and epochs it will need.
pub(crate) fn raw_store(engine: &wasmtime::Engine) -> Store<RawState> {
    let mut store = Store::new(
        engine,
        RawState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        },
    );
    // The engine meters fuel and epochs; give raw calls all they need, once.
    let _ = store.set_fuel(u64::MAX);
    store.set_epoch_deadline(u64::MAX / 2);
    store
}
