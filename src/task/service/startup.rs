//! A server's start, behind its first reply. Claude Code spawns one stdio server per session
//! and waits for its `initialize` reply, so nothing slow may come before it: the recovery
//! steps of a start (bringing containers back, executions a dead server left running, the
//! event-index check, the reconciliation with Docker, the sweep, which lists every image
//! Docker holds) run on a task of their own once the server is up.
//!
//! Calls that touch tasks wait at the gate (`wait_recovered`) until they are done, so no
//! call of this server acts on a half-recovered state. The steps stay as safe against
//! another server's calls as they always were: every server on a data directory recovers at
//! its own start while the others serve. A kill while they run leaves what any kill leaves
//! (docs/architecture.md, "Write order and repair"), and the next start does them again.

use std::sync::Arc;

use tokio::sync::watch;

use super::TaskService;
use crate::error::Result;

/// Whether the start's recovery is done: calls wait for `true`. A service that never starts
/// a recovery (the CLI's commands, in-process tests) is open from the start.
pub(super) struct RecoveryGate {
    done: watch::Sender<bool>,
}

impl Default for RecoveryGate {
    fn default() -> Self {
        Self {
            done: watch::Sender::new(true),
        }
    }
}

/// Opens the gate when dropped: a recovery that fails, panics or is cancelled at shutdown
/// must never leave calls waiting.
struct OpenOnDrop(watch::Sender<bool>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

impl TaskService {
    /// Closes the gate and runs the start's recovery on a task of its own (after the
    /// registry's rebuild, when the start found it missing or damaged); returns at once.
    /// Shutdown waits for it like any work in flight.
    pub fn start_recovery(self: &Arc<Self>) {
        self.recovery.done.send_replace(false);
        let open = OpenOnDrop(self.recovery.done.clone());
        let service = self.clone();
        self.in_flight.spawn(async move {
            let _open = open;
            if service.is_rebuilding() {
                // Calls that need a task are refused with `registry_rebuilding` meanwhile.
                let rebuilding = service.clone();
                match tokio::task::spawn_blocking(move || rebuilding.finish_rebuild()).await {
                    Ok(Ok(report)) => tracing::warn!(?report, "registry rebuilt from the task files"),
                    Ok(Err(e)) => tracing::error!(error = %e, "the registry rebuild failed"),
                    Err(e) => tracing::error!(error = %e, "the registry rebuild panicked"),
                }
            }
            let started = std::time::Instant::now();
            match service.recover_at_start().await {
                Ok(outcomes) => {
                    for o in outcomes {
                        tracing::warn!(task = %o.task_id, name = %o.name, reason = %o.reason, "task marked {}", o.to);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "startup reconciliation skipped"),
            }
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "start-up recovery done"
            );
            // Calls go on meanwhile: the warm pool fills behind them (`pool.rs`).
            drop(_open);
            service.start_pool_keeper();
        });
    }

    /// Waits until the start's recovery is done. While the registry is being rebuilt the call
    /// is refused with `registry_rebuilding` instead ("retry in a few seconds"): the rebuild
    /// can take long, and the recovery runs only after it.
    pub async fn wait_recovered(&self) -> Result<()> {
        let mut done = self.recovery.done.subscribe();
        self.refuse_while_rebuilding()?;
        // The sender lives as long as the service, so this ends only when the gate opens.
        let _ = done.wait_for(|done| *done).await;
        Ok(())
    }
}
