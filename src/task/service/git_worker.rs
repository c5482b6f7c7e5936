//! Running the git worker (`workspace::host::worker`): the server's own binary, as a child
//! process, for the git work whose memory grows with what the container committed (indexing a
//! sync's pack, a diff). Its reply is read with a cap like anything else derived from a
//! container.

use std::process::Stdio;

use tokio::io::AsyncReadExt;

use super::TaskService;
use crate::error::{Error, Result};
use crate::task::bounded::Head;
use crate::workspace::WorkspaceError;
use crate::workspace::host::worker::{WorkerReply, WorkerRequest};

/// The most of the worker's reply read: 20 000 files and 4 MiB of paths fit well within it.
const REPLY_LIMIT: usize = 16 << 20;
/// The most of its stderr kept (an error message).
const STDERR_LIMIT: usize = 64 * 1024;

impl TaskService {
    pub(super) async fn git_worker(&self, request: &WorkerRequest) -> Result<WorkerReply> {
        let request = serde_json::to_string(request).map_err(|e| Error::Internal(e.to_string()))?;
        // /proc/self/exe: this very binary, even if its file was replaced since it started.
        let mut child = tokio::process::Command::new("/proc/self/exe")
            .arg("git-worker")
            .arg(request)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Internal(format!("cannot start the git worker: {e}")))?;
        let (stdout, stderr, status) = tokio::join!(
            read_capped(child.stdout.take(), REPLY_LIMIT),
            read_capped(child.stderr.take(), STDERR_LIMIT),
            child.wait()
        );
        let status = status.map_err(|e| Error::Internal(format!("the git worker: {e}")))?;
        if !status.success() {
            let message = String::from_utf8_lossy(&stderr.into_bytes()).trim().to_string();
            let message = message.strip_prefix("taskbox: ").unwrap_or(&message).to_string();
            return Err(WorkspaceError::Worker(message).into());
        }
        if stdout.cut() {
            return Err(Error::Internal(format!(
                "the git worker's reply passed {REPLY_LIMIT} bytes"
            )));
        }
        serde_json::from_slice(&stdout.into_bytes())
            .map_err(|e| Error::Internal(format!("the git worker's reply: {e}")))
    }
}

/// The first `limit` bytes of a pipe, read to its end.
async fn read_capped(pipe: Option<impl tokio::io::AsyncRead + Unpin>, limit: usize) -> Head {
    let mut head = Head::new(limit);
    if let Some(mut pipe) = pipe {
        let mut chunk = vec![0u8; 64 * 1024];
        while let Ok(n) = pipe.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            head.push(&chunk[..n]);
        }
    }
    head
}
