//! `colony:plugin/timers`: one-shot and periodic `on-timer` calls on the host clock (always
//! available to agents; see [`crate::timers`] for where they fire and the limits).

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use super::{Fault, HostResult, answer};
use crate::bindings::timers::{self, Host};
use crate::bindings::types::Error;
use crate::timers::{TimerError, Timers};

/// What the `timers` interface works on: the agent's name and the host's timers, if the
/// store has them.
pub struct TimersCtx<'a> {
    /// The agent whose timers these are.
    pub plugin: &'a Arc<str>,
    /// The host's timers.
    pub timers: Option<&'a Timers>,
}

struct HasTimers;

impl HasData for HasTimers {
    type Data<'a> = TimersCtx<'a>;
}

/// Links `colony:plugin/timers`; `ctx` hands out the store's [`TimersCtx`].
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    ctx: fn(&mut T) -> TimersCtx<'_>,
) -> wasmtime::Result<()> {
    timers::add_to_linker::<T, HasTimers>(linker, ctx)
}

impl From<TimerError> for Fault<Error> {
    fn from(e: TimerError) -> Self {
        Fault::Guest(match e {
            TimerError::Invalid(m) => Error::InvalidArgument(m),
            TimerError::TooMany => Error::LimitExceeded(e.to_string()),
        })
    }
}

impl TimersCtx<'_> {
    fn set_timer(&self, name: &str, after_ms: u64, period_ms: u64) -> HostResult<()> {
        let timers = self
            .timers
            .ok_or_else(|| Fault::unavailable("timers are not available to this plugin"))?;
        Ok(timers.set(self.plugin, name, after_ms, period_ms)?)
    }
}

impl Host for TimersCtx<'_> {
    async fn set(
        &mut self,
        name: String,
        after_ms: u64,
        period_ms: u64,
    ) -> wasmtime::Result<Result<(), Error>> {
        answer(self.set_timer(&name, after_ms, period_ms))
    }

    async fn cancel(&mut self, name: String) -> wasmtime::Result<bool> {
        Ok(self.timers.is_some_and(|t| t.cancel(self.plugin, &name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    #[tokio::test]
    async fn a_timer_is_set_and_cancelled_and_without_timers_none_is() {
        let plugin: Arc<str> = "p".into();
        let timers = Timers::new(Clock::system());
        let mut ctx = TimersCtx {
            plugin: &plugin,
            timers: Some(&timers),
        };
        assert!(ctx.set("t".into(), 1_000, 0).await.unwrap().is_ok());
        let bad = ctx.set(String::new(), 1_000, 0).await.unwrap();
        assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
        assert!(ctx.cancel("t".into()).await.unwrap());
        assert!(!ctx.cancel("t".into()).await.unwrap());

        let mut none = TimersCtx {
            plugin: &plugin,
            timers: None,
        };
        let got = none.set("t".into(), 1_000, 0).await.unwrap();
        assert!(
            matches!(&got, Err(Error::Unavailable(m)) if m == "timers are not available to this plugin"),
            "{got:?}"
        );
        assert!(!none.cancel("t".into()).await.unwrap());
    }
}
