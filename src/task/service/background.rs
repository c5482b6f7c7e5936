//! Background executions: `execute_in_task` with `background: true` starts the command under
//! its supervisor, detached, and returns at once; `execution_output`, `send_input` and
//! `kill_execution` work on it by id. The supervisor keeps the command's output, input and
//! exit status in files (`task::run_files`), so an execution outlives the call, the session
//! and the server: whichever server next looks at it (a tool call, `task_executions`,
//! `get_task_status`, startup) records how it ended. See docs/architecture.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::TaskService;
use super::exec::{ExecRequest, ExecutionResult, FullOutput, NotKept};
use crate::domain::{Execution, ExecutionStatus, Owner, Task, now};
use crate::error::{Error, Result};
use crate::runtime::supervisor::{self, Supervision, SupervisorSignal};
use crate::runtime::{ExecSpec, OutputChunk};
use crate::task::redact::{Redactor, Secret};
use crate::task::run_files::{Activity, Cursor, EndedBy, RunFiles, Stream, SupervisorStatus, whole_chars};

/// The longest `wait_s` of execution_output (clients end calls after a few minutes).
pub const MAX_WAIT_S: u64 = 60;
/// How often a waiting execution_output looks for news.
const POLL: Duration = Duration::from_millis(200);
/// How long starting the supervisor may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long send_input waits for the command to read what it is given.
const INPUT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most send_input takes at once.
const MAX_INPUT: usize = 1024 * 1024;
/// A run directory with no supervisor lock this long after the start never got one.
const NEVER_STARTED: chrono::Duration = chrono::Duration::seconds(60);

/// The reply to `execution_output`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ExecutionOutput {
    pub execution_id: String,
    pub task_id: String,
    /// `running`, then how it ended: finished, timed_out, cancelled, failed, interrupted.
    pub status: ExecutionStatus,
    pub exit_code: Option<i64>,
    /// Output after `since`, at most the server's reply cap per stream; `more` says whether
    /// there is already more to read.
    pub stdout: String,
    pub stderr: String,
    /// Pass as `since` to get what comes after this reply.
    pub cursor: String,
    pub more: bool,
    /// Bytes each stream has written so far, kept or not.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// Output past the per-stream cap (execution.spill_limit_bytes) was counted, not kept.
    pub truncated: bool,
    /// It has printed nothing for its `stall_s` while a process of it blocks reading its
    /// standard input: probably a prompt (see `last_line`).
    pub waiting_for_input: bool,
    /// It has printed nothing for its `stall_s` while every process of it sleeps on
    /// something else (`blocked_on` says on what).
    pub stalled: bool,
    /// Which process waits, and on what (its wait channel), when waiting or stalled.
    pub blocked_on: Option<String>,
    /// What to do about a wait or a stall.
    pub advice: Option<String>,
    /// The last non-empty line of stdout so far.
    pub last_line: Option<String>,
    pub background: bool,
    pub duration_ms: Option<u64>,
}

/// An execution as task_executions and get_task_status list it: the record and, while it
/// runs with its output in files, what execution_output says of its activity (fields left
/// out when there is nothing to say).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ListedExecution {
    #[serde(flatten)]
    pub execution: Execution,
    #[serde(flatten)]
    pub activity: ActivityReport,
}

/// What a running execution is doing after a silence (see `ExecutionOutput`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct ActivityReport {
    /// It has printed nothing for its `stall_s` while a process of it blocks reading its
    /// standard input: probably a prompt (see `last_line`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub waiting_for_input: bool,
    /// Silent for its `stall_s` while every process of it sleeps on something else.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stalled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_on: Option<String>,
    /// The last non-empty line it printed so far (of the stream written last).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct InputSent {
    pub execution_id: String,
    pub bytes: usize,
    /// The command's standard input was closed after the text.
    pub eof: bool,
}

impl TaskService {
    /// `tasks/<id>/run`, mounted in the task's container at `supervisor::RUN_DIR`.
    pub(super) fn run_dir(&self, task_id: &str) -> std::path::PathBuf {
        self.store.task_dir(task_id).join("run")
    }

    pub(super) fn run_files(&self, execution: &Execution) -> RunFiles {
        RunFiles::new(self.run_dir(&execution.task_id).join(&execution.id))
    }

    /// The owner's execution and its task. Another owner's execution is not found, exactly
    /// like one that does not exist.
    pub fn execution_for(&self, owner: &Owner, execution_id: &str) -> Result<(Task, Execution)> {
        let not_found = || Error::ExecutionNotFound {
            execution: execution_id.to_string(),
        };
        let execution = self.registry.get_execution(execution_id)?.ok_or_else(not_found)?;
        let task = self.resolve_for(owner, &execution.task_id).map_err(|_| not_found())?;
        Ok((task, execution))
    }

    /// Starts `execution` under a detached supervisor; returns once the supervisor is up.
    pub(super) async fn start_background(
        &self,
        task: &Task,
        container: &str,
        mut execution: Execution,
        request: ExecRequest,
        timeout_s: Option<u64>,
        (secrets, redactor): (&[Secret], &Arc<Redactor>),
    ) -> Result<ExecutionResult> {
        let owner = super::exec::numeric_ids(execution.user.as_deref());
        if owner.is_none() && execution.user.is_some() {
            return Err(Error::invalid(
                "background",
                "this task records its user by name (it was made by an older taskbox), and its background \
                 executions' files must belong to the user's number; create a new task for background executions",
            ));
        }
        // Those that ended since they were last looked at no longer count.
        self.settle_background(None).await;
        let running = self.registry.owner_running_background(&task.owner)?;
        super::quota::admit_background(&task.owner, &self.config.quotas.for_owner(&task.owner), running)?;
        let files = self.run_files(&execution);
        files.create(owner).map_err(|source| crate::store::StoreError::Io {
            path: files.path().to_path_buf(),
            source,
        })?;
        self.registry.insert_execution(&execution, self.lease.id())?;
        let started = Instant::now();

        let env = super::exec::command_env(
            self.network_env(task).await?,
            &task.env,
            &request.env,
            secrets,
            &execution.id,
        );
        let shell = task.shell.as_deref().unwrap_or("sh");
        let flag = if shell == "bash" { "-lc" } else { "-c" };
        let supervision = Supervision::Background {
            cap_bytes: self.config.execution.spill_limit_bytes,
            timeout_s,
            stall_s: request.stall_s.unwrap_or(self.config.execution.stall_s),
            redact: !redactor.is_empty(),
        };
        let command = vec![shell.to_string(), flag.to_string(), request.command.clone()];
        let (exec_user, drop_to) = self.supervised_as(execution.user.as_deref(), &env);
        let spec = ExecSpec {
            cmd: supervisor::run_argv(&execution.id, &supervision, drop_to, command),
            env,
            workdir: Some(super::exec::resolve_workdir(request.workdir.as_deref())?),
            user: exec_user,
            // The supervisor writes the output files on the host's disk (the run directory is
            // a bind mount): it redacts them itself, given the patterns on its stdin, never in
            // its arguments or environment (docs/secrets.md).
            stdin: (!redactor.is_empty()).then(|| supervisor::redaction_input(redactor.patterns())),
            stdin_file: None,
        };
        if let Err(mut message) = self.start_supervisor(container, spec).await {
            if message.contains("unknown option --redact") {
                // The container mounted the supervisor of an older taskbox (it is replaced on
                // the host by rename; a running container keeps the file it mounted).
                message.push_str(
                    "; this task's container runs an older supervisor that cannot redact its secrets from \
                     background output: stop_task then resume_task (the restarted container gets the current \
                     one), or run the command in the foreground",
                );
            }
            execution.status = ExecutionStatus::Failed;
            execution.finished_at = Some(now());
            self.registry.finish_execution(&execution)?;
            self.record_execution(&execution, NotKept::default(), Some(&message))?;
            return Err(Error::InContainer {
                what: "starting the background execution".into(),
                message,
            });
        }
        let mut warnings = None;
        if let Some(stdin) = request.stdin.filter(|s| !s.is_empty())
            && let Err(e) = self.write_input(&files, stdin.into_bytes()).await
        {
            warnings = Some(format!("its stdin could not be written: {e}"));
        }
        Ok(ExecutionResult {
            execution_id: execution.id,
            task_id: task.id.clone(),
            exit_code: None,
            timed_out: false,
            stdout: String::new(),
            stderr: warnings.unwrap_or_default(),
            truncated: false,
            stdout_bytes: 0,
            stderr_bytes: 0,
            stdout_not_kept_bytes: 0,
            stderr_not_kept_bytes: 0,
            full_output: FullOutput::default(),
            duration_ms: started.elapsed().as_millis() as u64,
            background: true,
            yielded: false,
            cursor: None,
        })
    }

    /// Runs `supervise run --dir …`: its first process exits once the detached supervisor is
    /// set up (0), or says why it could not (125 and a message).
    async fn start_supervisor(&self, container: &str, spec: ExecSpec) -> std::result::Result<(), String> {
        let start = async {
            let mut handle = self.runtime.exec(container, spec).await.map_err(|e| e.to_string())?;
            let mut said = Vec::new();
            while let Some(chunk) = futures_util::StreamExt::next(&mut handle.output).await {
                match chunk.map_err(|e| e.to_string())? {
                    OutputChunk::Stdout(b) | OutputChunk::Stderr(b) if said.len() < 4096 => said.extend_from_slice(&b),
                    _ => {}
                }
            }
            match self
                .runtime
                .exec_exit_code(&handle.exec_id)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(0) => Ok(()),
                code => Err(format!(
                    "the supervisor exited with {code:?}: {}",
                    String::from_utf8_lossy(&said).trim()
                )),
            }
        };
        match tokio::time::timeout(START_TIMEOUT, start).await {
            Ok(result) => result,
            Err(_) => Err(format!("the supervisor did not start within {START_TIMEOUT:?}")),
        }
    }

    async fn write_input(&self, files: &RunFiles, bytes: Vec<u8>) -> Result<()> {
        let files = files.clone();
        tokio::task::spawn_blocking(move || files.write_input(&bytes, INPUT_TIMEOUT))
            .await
            .map_err(|e| Error::Internal(format!("the input writer failed: {e}")))?
            .map_err(|e| Error::InContainer {
                what: "writing to the command's standard input".into(),
                message: e.to_string(),
            })
    }

    /// `execution_output`: the execution's state and its output after `since`, waiting up to
    /// `wait_s` for news while it runs.
    pub async fn read_execution_output(
        &self,
        owner: &Owner,
        execution_id: &str,
        since: Option<&str>,
        wait_s: Option<u64>,
        cancel: CancellationToken,
    ) -> Result<ExecutionOutput> {
        let (task, mut execution) = self.execution_for(owner, execution_id)?;
        // The supervisor redacted the files as it wrote them; this is the second layer, for
        // anything else that wrote there (the agent can write its execution's directory).
        let redactor = self.redactor_for(&task);
        let cursor = match since.filter(|s| !s.is_empty()) {
            None => Cursor::default(),
            Some(text) => Cursor::decode(text).ok_or_else(|| {
                Error::invalid(
                    "since",
                    "it is not a cursor from execution_output; pass the `cursor` of the previous reply, or omit it to read from the start",
                )
            })?,
        };
        let wait_s = wait_s.unwrap_or(0);
        if wait_s > MAX_WAIT_S {
            return Err(Error::invalid(
                "wait_s",
                format!("{wait_s} is more than {MAX_WAIT_S}; wait at most {MAX_WAIT_S} s per call and call again"),
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(wait_s);
        loop {
            execution = self.settle(execution).await;
            let output = self.read_output(&execution, cursor, &redactor)?;
            let news = !output.stdout.is_empty() || !output.stderr.is_empty() || output.more;
            if news || execution.status != ExecutionStatus::Running || Instant::now() >= deadline {
                return Ok(output);
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = cancel.cancelled() => return Err(Error::Cancelled),
                () = self.shutting_down.cancelled() => return Err(Error::ShuttingDown),
            }
        }
    }

    pub(super) fn read_output(
        &self,
        execution: &Execution,
        cursor: Cursor,
        redactor: &Redactor,
    ) -> Result<ExecutionOutput> {
        let mut output = ExecutionOutput {
            execution_id: execution.id.clone(),
            task_id: execution.task_id.clone(),
            status: execution.status,
            exit_code: execution.exit_code,
            stdout: String::new(),
            stderr: String::new(),
            cursor: cursor.encode(),
            more: false,
            stdout_bytes: execution.stdout_bytes,
            stderr_bytes: execution.stderr_bytes,
            truncated: execution.truncated,
            waiting_for_input: false,
            stalled: false,
            blocked_on: None,
            advice: None,
            last_line: None,
            background: execution.background,
            duration_ms: execution.duration_ms,
        };
        // A foreground execution's output is in its call's reply; here only its state.
        if !execution.background {
            return Ok(output);
        }
        let files = self.run_files(execution);
        let ended = execution.status != ExecutionStatus::Running;
        let cap = self.config.execution.output_cap_bytes;
        // (text, bytes taken, stream size, whether the reply's cap cut the read)
        let read = |stream: Stream, from: u64| -> Result<(String, u64, u64, bool)> {
            let (bytes, size) = files.read(stream, from, cap).map_err(|e| Error::InContainer {
                what: "reading the execution's output".into(),
                message: e.to_string(),
            })?;
            let read_to = from + bytes.len() as u64;
            let all = ended && read_to >= size;
            let mut take = whole_chars(&bytes, all);
            // A possible start of a secret's value waits for the next read, like a cut
            // character, so that a value split across two reads is still replaced.
            if !all {
                take -= redactor.held_back(&bytes[..take]);
            }
            let text = String::from_utf8_lossy(&redactor.redact(&bytes[..take])).into_owned();
            Ok((text, take as u64, size, read_to < size))
        };
        let (stdout, out_taken, out_size, out_cut) = read(Stream::Stdout, cursor.stdout)?;
        let (stderr, err_taken, err_size, err_cut) = read(Stream::Stderr, cursor.stderr)?;
        let next = Cursor {
            stdout: cursor.stdout + out_taken,
            stderr: cursor.stderr + err_taken,
        };
        // A character still being written is held back, but is not "more": a reader told
        // to call again at once would spin until it completes.
        output.more = out_cut || err_cut;
        output.cursor = next.encode();
        output.stdout = stdout;
        output.stderr = stderr;
        if ended {
            output.last_line = files.last_line().map(|line| redactor.redact_text(&line));
        } else {
            output.stdout_bytes = out_size;
            output.stderr_bytes = err_size;
            let report = activity_report(&files, redactor);
            output.waiting_for_input = report.waiting_for_input;
            output.stalled = report.stalled;
            output.blocked_on = report.blocked_on;
            output.advice = report.advice;
            output.last_line = report.last_line;
        }
        Ok(output)
    }

    /// The execution as it is now: a background one that ended since it was last looked at
    /// is recorded (once, whichever server sees it first); a foreground one is read again.
    pub(super) async fn settle(&self, execution: Execution) -> Execution {
        if execution.status != ExecutionStatus::Running {
            return execution;
        }
        if !execution.background {
            return self
                .registry
                .get_execution(&execution.id)
                .ok()
                .flatten()
                .unwrap_or(execution);
        }
        let files = self.run_files(&execution);
        let ending = match files.status() {
            Ok(Some(status)) => Ok(status),
            Ok(None) => match files.supervisor_alive() {
                Some(true) => return execution,
                // It may have written its status just before it let go of the lock.
                Some(false) => match files.status() {
                    Ok(Some(status)) => Ok(status),
                    _ => Err(
                        "its supervisor ended without recording how the command ended (the container stopped, or the supervisor was killed)"
                            .to_string(),
                    ),
                },
                None if now() - execution.started_at < NEVER_STARTED => return execution,
                None => Err("its supervisor never started".to_string()),
            },
            Err(e) => Err(e),
        };
        self.finish_background(execution, ending)
    }

    /// Records how a background execution ended (`Err`: it ended without a status, why).
    fn finish_background(
        &self,
        mut execution: Execution,
        ending: std::result::Result<SupervisorStatus, String>,
    ) -> Execution {
        let files = self.run_files(&execution);
        let mut reason = None;
        let mut not_kept = NotKept::default();
        match ending {
            Ok(status) => {
                execution.status = match status.ended_by {
                    EndedBy::Exited => ExecutionStatus::Finished,
                    EndedBy::Timeout => ExecutionStatus::TimedOut,
                    EndedBy::Signal => ExecutionStatus::Cancelled,
                };
                execution.timed_out = status.ended_by == EndedBy::Timeout;
                // Shells report a command a signal ended as 128 + the signal.
                execution.exit_code = status.exit_code.or_else(|| {
                    (status.ended_by == EndedBy::Exited)
                        .then(|| status.signal.map(|s| 128 + s))
                        .flatten()
                });
                execution.stdout_bytes = status.stdout_bytes;
                execution.stderr_bytes = status.stderr_bytes;
                execution.truncated =
                    status.stdout_kept < status.stdout_bytes || status.stderr_kept < status.stderr_bytes;
                not_kept = NotKept {
                    stdout: status.stdout_bytes.saturating_sub(status.stdout_kept),
                    stderr: status.stderr_bytes.saturating_sub(status.stderr_kept),
                };
                let finished = chrono::DateTime::from_timestamp_millis(status.finished_unix_ms)
                    .filter(|at| *at >= execution.started_at && *at <= now());
                execution.finished_at = Some(finished.unwrap_or_else(now));
            }
            Err(why) => {
                execution.status = ExecutionStatus::Interrupted;
                execution.stdout_bytes = files.read(Stream::Stdout, 0, 0).map(|r| r.1).unwrap_or(0);
                execution.stderr_bytes = files.read(Stream::Stderr, 0, 0).map(|r| r.1).unwrap_or(0);
                execution.finished_at = Some(now());
                reason = Some(why);
            }
        }
        execution.duration_ms = execution
            .finished_at
            .map(|at| (at - execution.started_at).num_milliseconds().max(0) as u64);
        match self.registry.finish_running_execution(&execution) {
            Ok(true) => {
                if let Err(e) = self.record_execution(&execution, not_kept, reason.as_deref()) {
                    tracing::warn!(execution = %execution.id, error = %e, "cannot record the end of a background execution");
                }
                execution
            }
            // Another server recorded it first: take its record.
            Ok(false) => self
                .registry
                .get_execution(&execution.id)
                .ok()
                .flatten()
                .unwrap_or(execution),
            Err(e) => {
                tracing::warn!(execution = %execution.id, error = %e, "cannot record the end of a background execution");
                execution
            }
        }
    }

    /// Executions of `task` as listings show them: each running background one with its
    /// activity (its last line redacted like its output).
    pub(super) fn listed(&self, task: &Task, executions: Vec<Execution>) -> Vec<ListedExecution> {
        let mut redactor = None;
        executions
            .into_iter()
            .map(|execution| {
                let activity = match execution.status == ExecutionStatus::Running && execution.background {
                    true => {
                        let redactor = redactor.get_or_insert_with(|| self.redactor_for(task));
                        activity_report(&self.run_files(&execution), redactor)
                    }
                    false => ActivityReport::default(),
                };
                ListedExecution { execution, activity }
            })
            .collect()
    }

    /// Records the end of every background execution of the task (or of all tasks) that ended.
    pub(super) async fn settle_background(&self, task_id: Option<&str>) {
        let running = match self.registry.running_background(task_id) {
            Ok(running) => running,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list background executions");
                return;
            }
        };
        for execution in running {
            self.settle(execution).await;
        }
    }

    /// Ends the task's background executions (stop, restore, delete) and records them:
    /// cancelled when their supervisors recorded the kill, interrupted otherwise.
    pub(super) async fn end_background(&self, task: &Task, why: &str) {
        let running = match self.registry.running_background(Some(&task.id)) {
            Ok(running) if !running.is_empty() => running,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(task = %task.id, error = %e, "cannot list background executions");
                return;
            }
        };
        if let Some(container) = &task.container_id {
            let ids: Vec<&str> = running.iter().map(|e| e.id.as_str()).collect();
            self.signal_supervisors(container, SupervisorSignal::Kill, &ids).await;
        }
        for execution in running {
            let execution = self.settle(execution).await;
            if execution.status == ExecutionStatus::Running {
                self.finish_background(
                    execution,
                    Err(format!("{why}, and its supervisor could not be reached")),
                );
            }
        }
    }

    /// `send_input`: writes `text` to a running background execution's standard input, then
    /// closes it when `eof`.
    pub async fn send_input(&self, owner: &Owner, execution_id: &str, text: &str, eof: bool) -> Result<InputSent> {
        let (task, execution) = self.execution_for(owner, execution_id)?;
        if !execution.background {
            return Err(Error::invalid(
                "execution_id",
                "it runs in the foreground, where input is given with execute_in_task's `stdin`; start the command with background: true to talk to it",
            ));
        }
        let execution = self.settle(execution).await;
        if execution.status != ExecutionStatus::Running {
            return Err(Error::invalid(
                "execution_id",
                format!(
                    "it has ended ({}); start it again to give it input",
                    execution.status.as_str()
                ),
            ));
        }
        if text.len() > MAX_INPUT {
            return Err(Error::invalid(
                "text",
                format!("it is {} bytes; send at most {MAX_INPUT} bytes per call", text.len()),
            ));
        }
        if !text.is_empty() {
            self.write_input(&self.run_files(&execution), text.as_bytes().to_vec())
                .await?;
        }
        if eof {
            let container = self.require_running(&task)?;
            self.signal_supervisors(&container, SupervisorSignal::Eof, &[&execution.id])
                .await;
        }
        Ok(InputSent {
            execution_id: execution.id,
            bytes: text.len(),
            eof,
        })
    }

    /// `kill_execution`: `signal` (TERM by default) to the execution's whole process tree,
    /// KILL after the grace period; returns the execution as it is afterwards.
    pub async fn kill_by_id(&self, owner: &Owner, execution_id: &str, signal: Option<&str>) -> Result<Execution> {
        let signal = match signal.filter(|s| !s.trim().is_empty()) {
            None => SupervisorSignal::Term,
            Some(name) => SupervisorSignal::parse(name).ok_or_else(|| {
                Error::invalid("signal", format!("'{name}' is not one of TERM, INT, HUP, QUIT, KILL"))
            })?,
        };
        let (task, execution) = self.execution_for(owner, execution_id)?;
        let execution = self.settle(execution).await;
        if execution.status != ExecutionStatus::Running {
            return Ok(execution);
        }
        let container = self.require_running(&task)?;
        if self.has_supervisor(&container, None).await {
            self.signal_supervisors(&container, signal, &[&execution.id]).await;
        } else {
            self.kill_execution(&container, &execution.id, execution.user.as_deref())
                .await;
        }
        // A foreground execution is recorded by its own call, a moment later.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut execution = self.settle(execution).await;
        while execution.status == ExecutionStatus::Running && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
            execution = self.settle(execution).await;
        }
        Ok(execution)
    }
}

/// What a running execution's supervisor last saw it do, with the last line it printed and
/// advice for a wait or a stall (send_input reaches an execution started in the background;
/// a yielded one kept its call's input).
fn activity_report(files: &RunFiles, redactor: &Redactor) -> ActivityReport {
    let has_input = files.has_input();
    let mut report = ActivityReport {
        last_line: files.last_line().map(|line| redactor.redact_text(&line)),
        ..Default::default()
    };
    match files.activity() {
        Activity::Active => {}
        Activity::WaitingForInput { what } => {
            report.waiting_for_input = true;
            report.blocked_on = Some(what);
            let after = report
                .last_line
                .as_deref()
                .map(|l| format!(" after printing {l:?}"))
                .unwrap_or_default();
            report.advice = Some(match has_input {
                true => format!(
                    "it waits for input{after}: answer with send_input (end the answer with \"\\n\"), or kill it and \
                     run the command with a non-interactive flag (such as -y, --yes or --no-input)"
                ),
                false => format!(
                    "it waits for input{after}, which it cannot get (it started in the foreground): kill it and run \
                     the command with a non-interactive flag (such as -y, --yes or --no-input), or in the background"
                ),
            });
        }
        Activity::Stalled { what } => {
            report.stalled = true;
            report.blocked_on = Some(what);
            report.advice = Some(
                "it has printed nothing for a while and is not running: wait with execution_output's wait_s if that \
                 is expected, else kill_execution"
                    .into(),
            );
        }
    }
    report
}
