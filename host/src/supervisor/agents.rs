//! Reaching the host's agents: delivering and broadcasting events, sleep, wake, release,
//! pause and resume.

use super::{Host, Running};
use crate::agent::{AgentHandle, Event};
use crate::store::CallError;
use std::sync::Arc;

impl Host {
    /// Delivers an event to one agent and waits for the outcome.
    pub async fn deliver(&self, agent: &str, event: Event) -> Result<(), CallError> {
        let handle = self.agent(agent).await?;
        handle.deliver(event).await
    }

    /// Queues an event for every agent without waiting (a full mailbox refuses it).
    pub async fn broadcast(&self, event: Event) {
        let handles: Vec<AgentHandle> = {
            let reg = self.registry.read().await;
            reg.by_name
                .values()
                .filter_map(|e| match &e.running {
                    Running::Agent(h) => Some(h.clone()),
                    Running::Tool(..) => None,
                })
                .collect()
        };
        for h in handles {
            if let Err(e) = h.post(event.clone()) {
                tracing::warn!(error = %e, "event not queued");
            }
        }
    }

    /// Agents' timers.
    pub fn timers(&self) -> &Arc<crate::timers::Timers> {
        &self.timers
    }

    /// Every running agent's handle.
    async fn agent_handles(&self) -> Vec<AgentHandle> {
        let reg = self.registry.read().await;
        reg.by_name
            .values()
            .filter_map(|e| match &e.running {
                Running::Agent(h) => Some(h.clone()),
                Running::Tool(..) => None,
            })
            .collect()
    }

    /// Puts agent `name` to sleep (after what is queued for it); whether it went to sleep.
    pub async fn sleep_agent(&self, name: &str) -> Result<bool, CallError> {
        self.agent(name).await?.sleep().await
    }

    /// Puts every agent to sleep; how many went to sleep.
    pub async fn sleep_all(&self) -> usize {
        let mut n = 0;
        for h in self.agent_handles().await {
            if matches!(h.sleep().await, Ok(true)) {
                n += 1;
            }
        }
        n
    }

    /// Wakes agent `name` (makes its instance) if it sleeps.
    pub async fn wake_agent(&self, name: &str) -> Result<(), CallError> {
        self.agent(name).await?.wake().await
    }

    /// Releases agent `name` from quarantine, audited as `actor`; whether it was quarantined.
    pub async fn release_agent(&self, name: &str, actor: &str) -> Result<bool, CallError> {
        self.agent(name).await?.release(actor).await
    }

    /// Pauses agent `name`, audited as `actor`: it handles no event until resumed (see the
    /// runtime's `agent/pause.rs` for what happens to what arrives); whether it was paused now.
    pub async fn pause_agent(&self, name: &str, actor: &str) -> Result<bool, CallError> {
        self.agent(name).await?.pause(actor).await
    }

    /// Resumes paused agent `name`, audited as `actor`; whether it was paused.
    pub async fn resume_agent(&self, name: &str, actor: &str) -> Result<bool, CallError> {
        self.agent(name).await?.resume(actor).await
    }

    pub(super) async fn agent(&self, name: &str) -> Result<AgentHandle, CallError> {
        let reg = self.registry.read().await;
        match reg.by_name.get(name).map(|e| &e.running) {
            Some(Running::Agent(h)) => Ok(h.clone()),
            _ => Err(CallError::Unavailable {
                plugin: Arc::from(name),
                reason: "no such agent is loaded".into(),
            }),
        }
    }
}
