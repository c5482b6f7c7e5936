//! MCP progress notifications (`notifications/progress`) for calls that take a while, sent
//! only when the client asked for them with a progress token in the request's `_meta`.
//! Clients such as Claude Code and opencode end a call that stays silent for too long, and
//! reset that timer on progress; people see the message.
//!
//! - `execute_in_task`: every `PROGRESS_EVERY` while a foreground command runs, the elapsed
//!   time and the last line it printed (or what it waits for), from the service.
//! - Long internal operations (creation with its first image build, checkpoints, restores,
//!   forks): `ticking` reports the elapsed time every `PROGRESS_EVERY`, and creation also
//!   each line of an image build.
//!
//! Notifications go through a channel to one sending task per call, so they keep their order
//! and a slow client never holds up the work; `progress` (elapsed seconds) only grows.

use std::future::Future;
use std::time::Instant;

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::RequestContext;
use rmcp::{Peer, RoleServer};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use crate::task::service::{ExecProgress, ExecProgressUpdate, PROGRESS_EVERY};

/// One call's progress sender: `(elapsed seconds, message)` in order to the client.
#[derive(Clone)]
pub struct Reporter {
    tx: UnboundedSender<(f64, String)>,
    started: Instant,
}

impl Reporter {
    /// A reporter for this request, when the client sent a progress token.
    pub fn for_request(context: &RequestContext<RoleServer>) -> Option<Self> {
        let token = context.meta.get_progress_token()?;
        Some(Self::new(context.peer.clone(), token))
    }

    fn new(peer: Peer<RoleServer>, token: ProgressToken) -> Self {
        let (tx, mut rx) = unbounded_channel::<(f64, String)>();
        tokio::spawn(async move {
            let mut last = f64::MIN;
            while let Some((elapsed, message)) = rx.recv().await {
                // The spec wants `progress` to increase with each notification.
                let progress = if elapsed > last { elapsed } else { last + 0.001 };
                last = progress;
                let param = ProgressNotificationParam::new(token.clone(), progress).with_message(message);
                if peer.notify_progress(param).await.is_err() {
                    break;
                }
            }
        });
        Self {
            tx,
            started: Instant::now(),
        }
    }

    /// Sends `message` with the time since the call began.
    pub fn report(&self, message: impl Into<String>) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let _ = self.tx.send((round_ms(elapsed), message.into()));
    }
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// The service's progress callback for a foreground command, when the client asked.
pub fn exec_progress(context: &RequestContext<RoleServer>) -> Option<ExecProgress> {
    let reporter = Reporter::for_request(context)?;
    Some(std::sync::Arc::new(move |update: ExecProgressUpdate| {
        let _ = reporter
            .tx
            .send((round_ms(update.elapsed.as_secs_f64()), update.message));
    }))
}

/// Runs `work`, reporting `what` and the elapsed time every `PROGRESS_EVERY` until it ends
/// (nothing when the client sent no progress token).
pub async fn ticking<T>(reporter: Option<Reporter>, what: &str, work: impl Future<Output = T>) -> T {
    let Some(reporter) = reporter else {
        return work.await;
    };
    tokio::pin!(work);
    let start = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval_at(start + PROGRESS_EVERY, PROGRESS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = ticks.tick() => reporter.report(format!("{what}: {} s", start.elapsed().as_secs())),
        }
    }
}
