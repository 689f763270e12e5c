//! The venue's own instrument list: asked for at start, before any agent runs, and again every
//! hour, so that `risk.unknown-instrument` knows what a live venue trades without a feed or an
//! `[orders] instruments` line. What the list gives is only added: an instrument the venue
//! delists stays known until the next start (the venue refuses its orders then).

use super::*;

/// How often a venue's instrument list is asked for again after it was given.
const REFRESH_EVERY: Duration = Duration::from_secs(3_600);
/// The first wait before asking again after a failure; it doubles up to [`RETRY_AT_MOST`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between two attempts after failures.
const RETRY_AT_MOST: Duration = Duration::from_secs(60);

/// What the venue's instrument list gave the router, as `colony status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum VenueInstruments {
    /// The venue keeps no list (the paper exchange trades what the feed shows).
    #[default]
    NotListed,
    /// Asked for; no answer yet.
    Asking,
    /// The last answer listed `count` instruments that take orders; all of them are known.
    Listed {
        /// Instruments in the last answer.
        count: usize,
    },
    /// The last attempt failed; the router keeps asking in the background.
    Failed {
        /// Why.
        error: String,
    },
}

impl OrderService {
    /// Asks the venue for the instruments it trades and learns every one of them (see
    /// [`Venue::instruments`]). `Ok(None)` when the venue keeps no list.
    pub async fn learn_venue_instruments(&self) -> Result<Option<usize>, VenueError> {
        let Some(pending) = Arc::clone(&self.venue).instruments() else {
            self.lock().venue_instruments = VenueInstruments::NotListed;
            return Ok(None);
        };
        self.lock().venue_instruments = VenueInstruments::Asking;
        match pending.await {
            Ok(symbols) => {
                let mut core = self.lock();
                for symbol in &symbols {
                    core.risk.learn_instrument(&Arc::from(symbol.as_str()));
                }
                core.venue_instruments = VenueInstruments::Listed {
                    count: symbols.len(),
                };
                Ok(Some(symbols.len()))
            }
            Err(error) => {
                self.lock().venue_instruments = VenueInstruments::Failed {
                    error: error.to_string(),
                };
                Err(error)
            }
        }
    }

    /// At start, before any agent runs: learns the venue's instruments now, then keeps the
    /// list fresh in the background (again every hour; after a failure, again after 0.5 s,
    /// doubling up to a minute). Without an answer orders are still checked against what the
    /// feed and the configuration define, so a venue that does not answer at start refuses
    /// orders rather than letting unknown ones through.
    pub async fn start_instruments(self: &Arc<Self>) {
        let mut wait = match self.learn_venue_instruments().await {
            Ok(None) => return,
            Ok(Some(count)) => {
                tracing::info!(venue = %self.name, count, "venue instruments learned");
                REFRESH_EVERY
            }
            Err(error) => {
                tracing::warn!(venue = %self.name, %error,
                    "venue instruments not listed; orders for instruments no feed or configuration defines are refused until the venue answers");
                RETRY_FIRST
            }
        };
        let me = Arc::downgrade(self);
        spawn(async move {
            loop {
                tokio::time::sleep(wait).await;
                let Some(svc) = me.upgrade() else { return };
                wait = match svc.learn_venue_instruments().await {
                    Ok(_) => REFRESH_EVERY,
                    Err(error) => {
                        tracing::debug!(venue = %svc.name, %error, "venue instruments not listed");
                        if wait >= REFRESH_EVERY {
                            RETRY_FIRST
                        } else {
                            (wait * 2).min(RETRY_AT_MOST)
                        }
                    }
                };
            }
        });
    }
}
