//! `colony:plugin/timers`: one-shot and periodic `on-timer` calls on the host clock (always
//! available to agents; see [`crate::timers`] for where they fire and the limits).

use crate::bindings::timers::Host;
use crate::bindings::types::Error;
use crate::store::StoreState;
use crate::timers::TimerError;

impl Host for StoreState {
    async fn set(
        &mut self,
        name: String,
        after_ms: u64,
        period_ms: u64,
    ) -> wasmtime::Result<Result<(), Error>> {
        let Some(timers) = &self.timers else {
            return Ok(Err(Error::Unavailable(
                "timers are not available to this plugin".into(),
            )));
        };
        Ok(timers
            .set(&self.plugin, &name, after_ms, period_ms)
            .map_err(|e| match e {
                TimerError::Invalid(m) => Error::InvalidArgument(m),
                TimerError::TooMany => Error::LimitExceeded(e.to_string()),
            }))
    }

    async fn cancel(&mut self, name: String) -> wasmtime::Result<bool> {
        Ok(self
            .timers
            .as_ref()
            .is_some_and(|t| t.cancel(&self.plugin, &name)))
    }
}
