//! What the web dashboard (`transport/ui/`) asks of the service beyond the calls the MCP
//! tools share: its one-time sign-in codes, whether the token a session came from is still
//! live, a task's events after a position (the live feed), and an execution's kept output
//! for display. Every read here takes a task the caller has resolved for its owner.

use base64::Engine;

use super::TaskService;
use super::tokens::token_hash;
use crate::domain::{Event, Execution, Owner, now};
use crate::error::{Error, Result};
use crate::registry::{ExecutionFilter, UiLogin};
use crate::task::output::CapturedStream;
use crate::task::run_files::{RunFiles, Stream};

/// How long a sign-in link works.
pub const LOGIN_TTL: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Every sign-in code starts with this (recognisable if it leaks).
const CODE_PREFIX: &str = "tbxui_";

/// Most bytes of each stream the dashboard shows of one execution (a page shows 30: with
/// escaping, a few MiB at worst; docs/security.md, "Memory budget").
pub const SHOWN_OUTPUT_BYTES: usize = 16 * 1024;

/// An execution's output as the dashboard shows it: the first bytes of each stream that
/// taskbox kept, and how much there is in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShownOutput {
    pub stdout: String,
    pub stderr: String,
    /// Whether more was kept than is shown.
    pub cut: bool,
    /// Why nothing (or not everything) could be shown, when so.
    pub note: Option<String>,
}

impl TaskService {
    /// A one-time sign-in code for `owner` (valid for [`LOGIN_TTL`]); `token_id` names the
    /// bearer token it was asked for with, whose revocation then ends the session.
    pub fn create_ui_login(&self, owner: &Owner, token_id: Option<&str>) -> Result<String> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| Error::Config(format!("no randomness for a sign-in code: {e}")))?;
        let code = format!(
            "{CODE_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let login = UiLogin {
            owner: owner.clone(),
            token_id: token_id.map(String::from),
        };
        self.registry
            .insert_ui_login(&token_hash(&code), &login, &(now() + LOGIN_TTL))?;
        Ok(code)
    }

    /// Redeems a sign-in code: whom it signs in, once; `None` for an unknown, used or expired
    /// code.
    pub fn redeem_ui_login(&self, code: &str) -> Result<Option<UiLogin>> {
        if !code.starts_with(CODE_PREFIX) || code.len() > 128 {
            return Ok(None);
        }
        Ok(self.registry.take_ui_login(&token_hash(code))?)
    }

    /// Whether the token with this id exists and is not revoked.
    pub fn token_is_live(&self, id: &str) -> Result<bool> {
        Ok(self.registry.get_token(id)?.is_some_and(|t| t.revoked_at.is_none()))
    }

    /// Up to `limit` of the task's events after position `after`, oldest first, with their
    /// positions.
    pub fn events_after(&self, task_id: &str, after: i64, limit: u32) -> Result<Vec<(i64, Event)>> {
        Ok(self.registry.events_after(task_id, after, limit)?)
    }

    /// The task's newest `limit` executions (running ones first), and how many it has.
    pub async fn recent_executions(&self, task_id: &str, limit: u32) -> Result<(Vec<Execution>, u64)> {
        let page = self.executions(task_id, &ExecutionFilter::default(), limit, 0).await?;
        Ok((
            page.items.into_iter().map(|listed| listed.execution).collect(),
            page.total,
        ))
    }

    /// The task's newest `limit` events, newest first, with their positions.
    pub fn recent_events(&self, task_id: &str, limit: u32) -> Result<Vec<(i64, Event)>> {
        Ok(self.registry.recent_events(task_id, limit)?)
    }

    /// Keeps the output of a foreground execution whose reply held it whole, beside the spill
    /// files of cut streams (`outputs/<id>.log`, `.stderr.log`, 0600), so the dashboard can
    /// show every execution's output. At most the reply's cap per stream; empty streams make
    /// no file. A failure to keep it is logged, never the command's failure.
    pub(super) fn keep_whole_output(&self, execution: &Execution, stdout: &CapturedStream, stderr: &CapturedStream) {
        let dir = self.store.outputs_dir(&execution.task_id);
        for (stream, suffix) in [(stdout, ".log"), (stderr, ".stderr.log")] {
            if stream.truncated || stream.bytes == 0 {
                continue;
            }
            let path = dir.join(format!("{}{suffix}", execution.id));
            let written = crate::store::private_file()
                .write(true)
                .create_new(true)
                .open(&path)
                .and_then(|mut file| std::io::Write::write_all(&mut file, stream.text.as_bytes()));
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), error = %e, "cannot keep an execution's output");
            }
        }
    }

    /// What the dashboard shows of an execution's output: a background execution's files, or
    /// a foreground one's kept output (`tasks/<id>/outputs/`), the first
    /// [`SHOWN_OUTPUT_BYTES`] of each stream, as text (invalid UTF-8 replaced).
    pub fn shown_output(&self, execution: &Execution) -> ShownOutput {
        let mut shown = ShownOutput::default();
        let mut found = false;
        let run = RunFiles::new(self.run_dir(&execution.task_id).join(&execution.id));
        let outputs = self.store.outputs_dir(&execution.task_id);
        for (stream, text, total) in [
            (Stream::Stdout, &mut shown.stdout, execution.stdout_bytes),
            (Stream::Stderr, &mut shown.stderr, execution.stderr_bytes),
        ] {
            // Read with a cap, never whole: a kept stream can be 256 MiB. A background
            // execution's files are the container's to write (hostile): `RunFiles` opens them
            // relative to their directory, following no link, regular files only.
            let read = if execution.background {
                run.read(stream, 0, SHOWN_OUTPUT_BYTES)
                    .ok()
                    .filter(|(_, size)| *size > 0)
            } else {
                let name = match stream {
                    Stream::Stdout => format!("{}.log", execution.id),
                    Stream::Stderr => format!("{}.stderr.log", execution.id),
                };
                read_start(&outputs.join(name), SHOWN_OUTPUT_BYTES)
            };
            if let Some((bytes, size)) = read {
                found = true;
                shown.cut |= size > bytes.len() as u64;
                *text = String::from_utf8_lossy(&bytes).into_owned();
            } else if total > 0 {
                shown.cut = true;
            }
        }
        if !found && execution.stdout_bytes + execution.stderr_bytes > 0 {
            shown.note =
                Some("its output was not kept (it ran before taskbox kept every output, or could not be saved)".into());
        }
        shown
    }
}

/// The first `cap` bytes of a regular file and its size; `None` when it cannot be opened.
/// `outputs/` is the server's own, but no link is followed there either.
fn read_start(path: &std::path::Path, cap: usize) -> Option<(Vec<u8>, u64)> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32 | rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut bytes = Vec::with_capacity(cap.min(meta.len() as usize));
    file.take(cap as u64).read_to_end(&mut bytes).ok()?;
    Some((bytes, meta.len()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::runtime::fake::FakeRuntime;

    fn service(dir: &std::path::Path) -> TaskService {
        let config = Config {
            home: Some(dir.to_path_buf()),
            ..Config::default()
        };
        TaskService::open(config, Arc::new(FakeRuntime::default())).unwrap()
    }

    #[test]
    fn sign_in_codes_are_random_hashed_and_redeemed_once() {
        let dir = tempfile::tempdir().unwrap();
        let service = service(dir.path());
        let alice = Owner::new("alice").unwrap();
        let code = service.create_ui_login(&alice, Some("tok-1")).unwrap();
        let other = service.create_ui_login(&alice, None).unwrap();
        assert_ne!(code, other);
        assert!(
            code.starts_with(CODE_PREFIX) && code.len() == CODE_PREFIX.len() + 43,
            "{code}"
        );
        for file in ["registry.db", "registry.db-wal"] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
            assert!(!bytes.windows(code.len()).any(|w| w == code.as_bytes()), "{file}");
        }
        let login = service.redeem_ui_login(&code).unwrap().unwrap();
        assert_eq!((login.owner, login.token_id.as_deref()), (alice, Some("tok-1")));
        assert_eq!(service.redeem_ui_login(&code).unwrap(), None);
        assert_eq!(service.redeem_ui_login("tbxui_nope").unwrap(), None);
        assert_eq!(service.redeem_ui_login(&other[1..]).unwrap(), None);
    }

    #[test]
    fn shown_output_is_capped_and_follows_no_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, vec![b'x'; 100]).unwrap();
        assert_eq!(read_start(&path, 10).map(|(b, s)| (b.len(), s)), Some((10, 100)));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read_start(&link, 10), None);
        assert_eq!(read_start(dir.path(), 10), None);
    }
}
