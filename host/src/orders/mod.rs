//! Order routing (issue 6). Today only the pure part exists: [`risk`], the pre-trade risk
//! engine that every order passes before it may reach a venue. It knows nothing about
//! wasmtime, the bus or any venue, and does no I/O; venues, the order journal and the
//! `orders` host interface will call it.

pub mod risk;
