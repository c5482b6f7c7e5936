//! The tool call in progress, for hooks that fire deep inside an operation: which tool and
//! agent it is, and where hook warnings go so that they reach that call's result. Held in a
//! tokio task-local, so service methods need no extra parameters; work spawned onto another
//! task carries the scope over with `within`.

use std::future::Future;
use std::sync::{Arc, Mutex};

tokio::task_local! {
    static CALL: Arc<CallScope>;
}

#[derive(Debug, Default)]
pub struct CallScope {
    pub tool: Option<String>,
    pub agent: Option<String>,
    warnings: Mutex<Vec<String>>,
}

impl CallScope {
    pub fn new(tool: &str, agent: &str) -> Arc<Self> {
        Arc::new(Self {
            tool: Some(tool.to_string()),
            agent: Some(agent.to_string()),
            warnings: Mutex::default(),
        })
    }

    /// The warnings hooks added so far, in order, without repeats.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Runs `future` inside `scope`.
pub async fn within<F: Future>(scope: Arc<CallScope>, future: F) -> F::Output {
    CALL.scope(scope, future).await
}

/// The scope of the current call, to carry into spawned work.
pub fn current() -> Option<Arc<CallScope>> {
    CALL.try_with(Arc::clone).ok()
}

/// Runs `future` in the current call's scope, if any (for `tokio::spawn`ed work).
pub async fn carry<F: Future>(scope: Option<Arc<CallScope>>, future: F) -> F::Output {
    match scope {
        Some(scope) => within(scope, future).await,
        None => future.await,
    }
}

/// Adds a warning to the current call's result; outside a call it is only logged.
pub fn warn(message: String) {
    let added = CALL.try_with(|call| {
        let mut warnings = call.warnings.lock().unwrap_or_else(|p| p.into_inner());
        if !warnings.contains(&message) {
            warnings.push(message.clone());
        }
    });
    if added.is_err() {
        tracing::warn!(%message, "hook warning outside a tool call");
    }
}

pub(super) fn tool_and_agent() -> (Option<String>, Option<String>) {
    CALL.try_with(|call| (call.tool.clone(), call.agent.clone()))
        .unwrap_or_default()
}
