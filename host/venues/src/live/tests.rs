//! What every live venue shares, driven through one venue or the other: the breaker opening,
//! refusing and closing again (and its audit), a refused connection, and secrets kept out of
//! every log line, `Debug` output and error.

use std::sync::Arc;
use std::time::Duration;

use super::fixtures::{
    ALPACA_ORDER, NOW, OKX_ACK_ITEM, SECRETS, TIMEOUT, alpaca, alpaca_creds, limit, okx,
    okx_envelope,
};
use super::{Adapter, LiveVenue, VenueError};
use crate::alpaca::AlpacaEnv;
use crate::breaker::{BreakerConfig, BreakerState};
use crate::http::loopback::{Reply, Server};
use colony_orders::ExecKind;

// ---- breaker --------------------------------------------------------------------------

#[tokio::test]
async fn server_errors_open_the_breaker_which_then_sends_nothing_until_a_trial_succeeds() {
    let ack = okx_envelope("0", "", OKX_ACK_ITEM);
    let server = Server::start(move |n, _| match n {
        0..=2 => Reply::Json(500, r#"{"code":"50026","msg":"System error"}"#.into()),
        _ => Reply::Json(200, ack.clone()),
    })
    .await;
    let cool_down = Duration::from_millis(150);
    let dir = tempfile::tempdir().unwrap();
    let audit = colony_audit::AuditStore::open_sqlite(&dir.path().join("audit.db"))
        .await
        .unwrap();
    let venue = okx(&server, false)
        .with_breaker(BreakerConfig {
            failure_threshold: 3,
            cool_down,
            max_cool_down: Duration::from_secs(1),
        })
        .with_audit(audit.writer());
    let order = limit("BTC-USDT", "b1");
    for _ in 0..3 {
        assert_eq!(
            venue.place(&order, NOW).await,
            Err(VenueError::Unavailable("HTTP 500".into()))
        );
    }
    let status = venue.breaker_status();
    assert_eq!((status.state, status.opened_count), (BreakerState::Open, 1));

    // Open: refused at once, and nothing reaches the server.
    for _ in 0..2 {
        let result = venue.place(&order, NOW).await;
        assert!(
            matches!(result, Err(VenueError::CircuitOpen { retry_after }) if retry_after <= cool_down),
            "{result:?}"
        );
    }
    assert!(matches!(
        venue.query(&order).await,
        Err(VenueError::CircuitOpen { .. })
    ));
    assert_eq!(server.count(), 3);
    assert_eq!(venue.breaker_status().rejected_count, 3);

    // The cool-down is time passing, not an event to await.
    tokio::time::sleep(cool_down).await;
    assert_eq!(venue.breaker_status().state, BreakerState::HalfOpen);
    let report = venue.place(&order, NOW).await.unwrap();
    assert_eq!(report.kind, ExecKind::Accepted);
    assert_eq!(server.count(), 4);
    let status = venue.breaker_status();
    assert_eq!(
        (status.state, status.consecutive_failures),
        (BreakerState::Closed, 0)
    );

    // Both transitions are audited.
    audit.writer().flush().await.unwrap();
    let records = audit
        .query(&colony_audit::AuditFilter {
            kind: Some(colony_audit::AuditKind::Other("breaker".into())),
            ..Default::default()
        })
        .await
        .unwrap();
    let details: Vec<(&str, &str)> = records
        .iter()
        .rev()
        .map(|e| (e.plugin.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert_eq!(details[0].0, "venue:okx");
    assert!(
        details[0]
            .1
            .starts_with("circuit closed -> open (cool-down 150 ms)"),
        "{details:?}"
    );
    assert_eq!(details[1].1, "circuit half-open -> closed");
}

#[tokio::test]
async fn a_refused_connection_counts_against_the_breaker() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let venue = LiveVenue::alpaca(alpaca_creds(), AlpacaEnv::Live, &base_url, TIMEOUT)
        .unwrap()
        .with_breaker(BreakerConfig {
            failure_threshold: 1,
            ..BreakerConfig::default()
        });
    let result = venue.query(&limit("AAPL", "x")).await;
    assert!(
        matches!(&result, Err(VenueError::Unavailable(reason)) if reason.starts_with("cannot connect")),
        "{result:?}"
    );
    assert_eq!(venue.breaker_status().state, BreakerState::Open);
}

// ---- secrets --------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_appear_in_no_log_line_debug_output_or_error() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // tracing caches each callsite's interest globally; while a single dispatcher is
    // registered, a callsite first hit on another test's thread (no subscriber there) is
    // cached as "never", and this thread's events from it would be lost. A second
    // registered dispatcher makes tracing consult every dispatcher instead.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let _guard = tracing::subscriber::set_default(subscriber);

    let ack = okx_envelope("0", "", OKX_ACK_ITEM);
    let okx_server = Server::start(move |n, _| match n {
        0 => Reply::Json(200, ack.clone()),
        1 => Reply::Json(500, "down".into()),
        _ => Reply::Hang,
    })
    .await;
    let okx_venue = okx(&okx_server, true);
    let order = limit("BTC-USDT", "s1");
    let mut outputs = vec![format!("{okx_venue:?}"), format!("{okx_venue:#?}")];
    outputs.push(format!("{:?}", okx_venue.place(&order, NOW).await));
    outputs.push(format!("{:?}", okx_venue.place(&order, NOW).await));
    let timed_out = okx_venue.place(&order, NOW).await.unwrap_err();
    outputs.push(format!("{timed_out} {timed_out:?}"));

    let alpaca_server = Server::start(|n, _| match n {
        0 => Reply::Json(403, r#"{"code":40310000,"message":"no"}"#.into()),
        _ => Reply::Json(200, ALPACA_ORDER.into()),
    })
    .await;
    let alpaca_venue = alpaca(&alpaca_server);
    outputs.push(format!("{alpaca_venue:?}"));
    outputs.push(format!(
        "{:?}",
        alpaca_venue.place(&limit("AAPL", "s2"), NOW).await
    ));
    outputs.push(format!(
        "{:?}",
        alpaca_venue.query(&limit("AAPL", "s2")).await
    ));
    outputs.push(format!("{:?}", okx_venue.breaker_status()));
    let request = okx_venue.adapter.place_request(&order).unwrap();
    let signature = request.header("OK-ACCESS-SIGN").unwrap().to_string();
    outputs.push(format!("{request:?}"));

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The log did record the exchanges, by method, path and status.
    assert!(
        logs.contains("/api/v5/trade/order") && logs.contains("status=200"),
        "{logs}"
    );
    assert!(
        logs.contains("circuit") || logs.contains("venue request failed"),
        "{logs}"
    );
    assert!(
        logs.contains("/v2/orders") && logs.contains("status=403"),
        "{logs}"
    );
    outputs.push(logs);
    for output in &outputs {
        for secret in SECRETS {
            assert!(!output.contains(secret), "{secret} leaked in {output}");
        }
    }
    // The request's Debug shows the (per-request) signature but never the passphrase.
    assert!(outputs.iter().any(|o| o.contains(&signature)));
}
