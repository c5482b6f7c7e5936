//! MCP logging: `logging/setLevel` and `notifications/message` for long operations (image
//! builds), forwarded in order through a channel so a synchronous progress callback can feed
//! an async peer.

#![allow(deprecated)] // LoggingLevel: logging is deprecated in the newest MCP revision, not in the ones clients speak.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};
use rmcp::{Peer, RoleServer};

use crate::task::service::Progress;

/// The session's minimum level, as a rank (0 = debug … 7 = emergency).
#[derive(Debug)]
pub struct LogLevel(AtomicU8);

impl Default for LogLevel {
    fn default() -> Self {
        Self(AtomicU8::new(rank(LoggingLevel::Info)))
    }
}

impl LogLevel {
    pub fn set(&self, level: LoggingLevel) {
        self.0.store(rank(level), Ordering::Relaxed);
    }

    pub fn enabled(&self, level: LoggingLevel) -> bool {
        rank(level) >= self.0.load(Ordering::Relaxed)
    }
}

fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// A progress sink that logs each line to stderr and, when the session's level lets info
/// through, sends it to the client as a log message.
pub fn progress_to_client(peer: Peer<RoleServer>, level: Arc<LogLevel>, logger: &'static str) -> Progress {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if level.enabled(LoggingLevel::Info) {
                let param = LoggingMessageNotificationParam::new(LoggingLevel::Info, serde_json::Value::String(line))
                    .with_logger(logger);
                if peer.notify_logging_message(param).await.is_err() {
                    break;
                }
            }
        }
    });
    Arc::new(move |line: &str| {
        tracing::info!(target: "taskbox::progress", "{line}");
        let _ = tx.send(line.to_string());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_filter_by_rank() {
        let level = LogLevel::default();
        assert!(level.enabled(LoggingLevel::Info));
        assert!(!level.enabled(LoggingLevel::Debug));
        level.set(LoggingLevel::Error);
        assert!(!level.enabled(LoggingLevel::Warning));
        assert!(level.enabled(LoggingLevel::Critical));
    }
}
