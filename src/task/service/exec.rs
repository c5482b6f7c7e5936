//! Running commands in a task's container.
//!
//! A command runs under the supervisor (`runtime::supervisor`), a child subreaper, so every
//! process it starts stays its descendant however it forks, `setsid`s or clears its
//! environment; when the command ends, or on timeout or cancellation, the supervisor ends the
//! whole tree. Every execution also carries `TASKBOX_EXEC_ID=<id>` in its environment: the
//! kill then also sweeps every process holding that marker, and in a container made before
//! the supervisor existed that sweep is the only kill. Background executions
//! (`background.rs`) run under the same supervisor, detached.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::TaskService;
use super::container_ops::{
    ContainerOp, KillTree, MARKER_VAR, Output, ReapEscaped, STDERR_KEPT, SignalSupervisors, Stdout, is_root,
};
use crate::domain::Owner;
use crate::domain::lifecycle::LifecycleEvent;
use crate::domain::{Event, EventKind, Execution, ExecutionStatus, Task, TaskStatus, new_execution_id, now};
use crate::error::{Error, Result};
use crate::hooks::{HookContext, HookEvent};
use crate::runtime::supervisor::{self, DropTo, Supervision, SupervisorSignal};
use crate::runtime::{ContainerState, ExecSpec, OutputChunk, RuntimeError};
use crate::task::bounded::{FileSink, Head};
use crate::task::output::{CapturedStream, StreamCapture};
use crate::task::redact::{Redactor, Secret, StreamRedactor};
use crate::task::run_files::{Activity, Cursor, EndedBy, RunFiles, Stream, SupervisorStatus};

/// How long a command taskbox runs for itself (a sync, a file operation) may take.
const INTERNAL_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the kill may take before the container is restarted instead (a fork bomb at the
/// pids limit leaves no room to start the killer).
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to keep reading output after the process tree was killed.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(5);

/// How often a foreground command reports progress (MCP progress notifications: clients
/// that reset their timeout on progress need one well within it; the issue asks for at
/// least every 5 s).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How much of a stream is read from the run files at once.
const READ_CHUNK: usize = 64 * 1024;

/// What a running foreground command reports (`ExecProgress`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecProgressUpdate {
    pub elapsed: Duration,
    /// For people: the elapsed time, the last line printed, a wait for input.
    pub message: String,
}

/// Receives a foreground command's progress, every `PROGRESS_EVERY` while it runs.
pub type ExecProgress = Arc<dyn Fn(ExecProgressUpdate) + Send + Sync>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecRequest {
    pub command: String,
    pub workdir: Option<String>,
    pub env: BTreeMap<String, String>,
    pub timeout_s: Option<u64>,
    pub stdin: Option<String>,
    pub user: Option<String>,
    pub explanation: Option<String>,
    /// Start it detached and return at once (`execution_output` reads it).
    pub background: bool,
    /// Seconds of silence before a wait for input or a stall is reported (default
    /// `execution.stall_s`).
    pub stall_s: Option<u64>,
    /// Foreground: seconds after which a command still running goes on in the background and
    /// the call returns (default `execution.yield_after_s`; 0: never).
    pub yield_after_s: Option<u64>,
}

/// The reply to `execute_in_task`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ExecutionResult {
    pub execution_id: String,
    pub task_id: String,
    /// The command's exit code; `null` when it was killed by a timeout or cancellation.
    pub exit_code: Option<i64>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    /// Whether stdout or stderr was cut in this reply (the whole output is on disk).
    pub truncated: bool,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// Bytes of stdout / stderr past `execution.spill_limit_bytes`, kept neither in the reply
    /// nor in the files (0 when the whole stream is on disk).
    pub stdout_not_kept_bytes: u64,
    pub stderr_not_kept_bytes: u64,
    /// Files holding the whole stdout / stderr, for streams that were cut.
    pub full_output: FullOutput,
    pub duration_ms: u64,
    /// Started in the background, or yielded to it: it is still running; read it with
    /// execution_output.
    pub background: bool,
    /// It ran in the foreground past `yield_after_s` and goes on as a background execution;
    /// `stdout`/`stderr` hold its output so far, and `cursor` is where execution_output
    /// continues.
    pub yielded: bool,
    /// With `yielded`: pass as execution_output's `since` to get what comes after this reply.
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct FullOutput {
    pub stdout: Option<String>,
    pub stderr: Option<String>,
}

/// Bytes per stream past the spill limit, which no file holds.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct NotKept {
    pub stdout: u64,
    pub stderr: u64,
}

/// How an execution's command runs: under the supervisor or not, and what its output loses.
struct Run {
    supervised: bool,
    redactor: Arc<Redactor>,
}

enum Ending {
    Exited,
    /// `yield_after_s` passed: the command goes on in the background.
    Yielded,
    TimedOut,
    Cancelled,
    /// The output stream from Docker broke; the process tree is killed like on a timeout.
    StreamFailed(String),
}

impl TaskService {
    pub async fn execute(
        &self,
        task: &str,
        request: ExecRequest,
        cancel: CancellationToken,
    ) -> Result<ExecutionResult> {
        self.execute_with_progress(task, request, cancel, None).await
    }

    /// `execute`, reporting a foreground command's progress to `progress`.
    pub async fn execute_with_progress(
        &self,
        task: &str,
        request: ExecRequest,
        cancel: CancellationToken,
        progress: Option<ExecProgress>,
    ) -> Result<ExecutionResult> {
        self.refuse_if_shutting_down()?;
        self.in_flight
            .track_future(self.execute_tracked(task, request, cancel, progress))
            .await
    }

    async fn execute_tracked(
        &self,
        task: &str,
        request: ExecRequest,
        cancel: CancellationToken,
        progress: Option<ExecProgress>,
    ) -> Result<ExecutionResult> {
        let call_started = Instant::now();
        let task = self.resolve(Some(task))?;
        let exec_config = &self.config.execution;
        // A background execution has no time limit unless it is given one.
        let timeout_s = match (request.background, request.timeout_s) {
            (_, Some(timeout_s)) => timeout_s,
            (true, None) => exec_config.max_timeout_s,
            (false, None) => exec_config.default_timeout_s,
        };
        if timeout_s == 0 || timeout_s > exec_config.max_timeout_s {
            return Err(Error::invalid(
                "timeout_s",
                format!(
                    "{timeout_s} is outside 1..={}; pass a smaller timeout",
                    exec_config.max_timeout_s
                ),
            ));
        }
        if request.command.trim().is_empty() {
            return Err(Error::invalid("command", "it is empty; pass the shell command to run"));
        }
        let requested_user = self.requested_user(request.user.as_deref())?;
        let workdir = resolve_workdir(request.workdir.as_deref())?;
        super::create::validate_env(&request.env)?;
        // Read now, for this command only (docs/secrets.md); a secret that cannot be read
        // refuses the command before anything is recorded.
        let (secrets, redactor) = self.task_secrets(&task)?;
        // What is recorded of the command (the row, the events, hooks, plan.md) never holds a
        // value, even one the agent typed.
        let recorded_command = redactor.redact_text(&request.command);
        let recorded_explanation = request.explanation.as_deref().map(|e| redactor.redact_text(e));
        let arguments = serde_json::json!({
            "operation": "execute", "command": recorded_command, "workdir": request.workdir,
            "user": request.user, "timeout_s": timeout_s, "explanation": recorded_explanation,
            "background": request.background,
        });
        let (task, seen) = self.guard_command_seen(task, arguments.clone()).await?;
        let container = self.require_running(&task)?;
        let supervised = self.has_supervisor(&container, seen).await;
        if let Some(runtime) = self.config.container.runtime.as_deref().filter(|r| *r != "runc")
            && request.background
        {
            return Err(Error::invalid(
                "background",
                format!(
                    "background executions need Docker's default runtime (runc), and this server runs tasks under \
                     '{runtime}' ([container] runtime), whose sandbox does not share the supervisor's stdin pipe \
                     and lock with the host; run the command in the foreground with a timeout_s instead"
                ),
            ));
        }
        if request.background && !supervised {
            return Err(Error::invalid(
                "background",
                "this task's container was made before taskbox had background executions; \
                 restore one of its checkpoints (that makes a new container) or create a new task",
            ));
        }
        let user = requested_user.or_else(|| task.exec_user.clone());
        // The soft timeout counts from the call's start: what ran before the command (a
        // resume, hooks) took the client's time too.
        let yield_after_s = request.yield_after_s.unwrap_or(exec_config.yield_after_s);
        let yield_at =
            (yield_after_s > 0 && yield_after_s < timeout_s).then(|| call_started + Duration::from_secs(yield_after_s));

        let mut execution = Execution {
            id: new_execution_id(),
            task_id: task.id.clone(),
            command: recorded_command,
            workdir: request.workdir.clone(),
            user: user.clone(),
            explanation: recorded_explanation,
            status: ExecutionStatus::Running,
            exit_code: None,
            timed_out: false,
            stdout_bytes: 0,
            stderr_bytes: 0,
            truncated: false,
            started_at: now(),
            finished_at: None,
            duration_ms: None,
            background: request.background,
        };
        if request.background {
            let timeout = request.timeout_s;
            return self
                .start_background(&task, &container, execution, request, timeout, (&secrets, &redactor))
                .await;
        }
        self.registry.insert_execution(&execution, self.lease.id())?;

        // The task's variables reach each command through its exec, never the container's
        // configuration, which checkpoint images would keep (docs/security.md).
        let env = command_env(
            self.network_env(&task).await?,
            &task.env,
            &request.env,
            &secrets,
            &execution.id,
        );
        let shell = task.shell.as_deref().unwrap_or("sh");
        let flag = if shell == "bash" { "-lc" } else { "-c" };
        let mut cmd = vec![shell.to_string(), flag.to_string(), request.command.clone()];
        let mut exec_user = user.clone();
        let files = match supervised {
            true => self.attached_files(&execution),
            false => None,
        };
        let mut stdin = request.stdin.map(String::into_bytes);
        if supervised {
            let drop_to;
            (exec_user, drop_to) = self.supervised_as(user.as_deref(), &env);
            let supervision = match &files {
                Some(_) => Supervision::Attached {
                    cap_bytes: exec_config.spill_limit_bytes.max(exec_config.output_cap_bytes as u64),
                    timeout_s,
                    stall_s: request.stall_s.unwrap_or(exec_config.stall_s),
                    redact: !redactor.is_empty(),
                },
                None => Supervision::Foreground,
            };
            if files.is_some() && !redactor.is_empty() {
                // The supervisor redacts the run files on the host's disk itself: the patterns
                // come first on its stdin, the command's own input after them (docs/secrets.md).
                let mut input = supervisor::redaction_input(redactor.patterns());
                input.extend(stdin.take().unwrap_or_default());
                stdin = Some(input);
            }
            cmd = supervisor::run_argv(&execution.id, &supervision, drop_to, cmd);
        }
        let spec = ExecSpec {
            cmd,
            env,
            workdir: Some(workdir),
            user: exec_user,
            stdin,
            stdin_file: None,
        };

        let started = Instant::now();
        let watch = Watch {
            files: files.as_ref(),
            // Only an execution whose output is in files can go on without its call.
            yield_at: yield_at.filter(|_| files.is_some()),
            owner: &task.owner,
            progress,
        };
        let outcome = self
            .run_execution(
                &container,
                spec,
                &execution,
                Duration::from_secs(timeout_s),
                &cancel,
                Run {
                    supervised,
                    redactor: redactor.clone(),
                },
                watch,
            )
            .await;
        let duration_ms = started.elapsed().as_millis() as u64;
        execution.finished_at = Some(now());
        execution.duration_ms = Some(duration_ms);

        let (ending, exit_code, stdout, stderr) = match outcome {
            // Only an execution with run files yields (`Watch::yield_at`).
            Ok((Ending::Yielded, ..)) if let Some(files) = &files => {
                return self.yielded(&task, execution, files, started, &redactor).await;
            }
            Ok(parts) => parts,
            Err(error) => {
                execution.status = ExecutionStatus::Failed;
                self.registry.finish_execution(&execution)?;
                self.record_execution(&execution, NotKept::default(), Some(&error.to_string()))?;
                return Err(self.explain_exec_failure(&task.id, error).await);
            }
        };
        // The dashboard shows every execution's output; a cut stream is in its spill file
        // already, and one the reply held whole is kept here (at most the reply's cap).
        self.keep_whole_output(&execution, &stdout, &stderr);
        execution.exit_code = exit_code;
        execution.stdout_bytes = stdout.bytes;
        execution.stderr_bytes = stderr.bytes;
        execution.truncated = stdout.truncated || stderr.truncated;
        execution.timed_out = matches!(ending, Ending::TimedOut);
        execution.status = match ending {
            Ending::Exited | Ending::Yielded => ExecutionStatus::Finished,
            Ending::TimedOut => ExecutionStatus::TimedOut,
            Ending::Cancelled => ExecutionStatus::Cancelled,
            Ending::StreamFailed(_) => ExecutionStatus::Failed,
        };
        let stream_error = match &ending {
            Ending::StreamFailed(e) => Some(format!(
                "lost the output stream from Docker ({e}); the command was stopped where Docker allowed"
            )),
            _ => None,
        };
        let not_kept = NotKept {
            stdout: stdout.not_kept,
            stderr: stderr.not_kept,
        };
        self.registry.finish_execution(&execution)?;
        self.record_execution(&execution, not_kept, stream_error.as_deref())?;
        match ending {
            Ending::Cancelled => return Err(Error::Cancelled),
            // The daemon went away (a restart): say so, with what to do, not a raw API error.
            Ending::StreamFailed(_) if self.runtime.ping().await.is_err() => {
                return Err(Error::Runtime(RuntimeError::Unavailable(format!(
                    "it stopped answering while the command ran, which is recorded as failed; its \
                     processes may have ended with the daemon: {}",
                    stream_error.unwrap_or_default()
                ))));
            }
            Ending::StreamFailed(_) => {
                return Err(Error::Runtime(RuntimeError::Api(stream_error.unwrap_or_default())));
            }
            _ => {}
        }
        let finished = serde_json::json!({
            "execution_id": execution.id, "status": execution.status, "exit_code": exit_code,
            "timed_out": execution.timed_out, "duration_ms": duration_ms,
        });
        let after = HookContext::new(HookEvent::AfterExec, Some(task.clone()))
            .with_arguments(arguments)
            .with_data(finished);
        let _ = self.fire(after).await;
        Ok(ExecutionResult {
            execution_id: execution.id,
            task_id: task.id,
            exit_code,
            timed_out: execution.timed_out,
            truncated: execution.truncated,
            stdout_bytes: stdout.bytes,
            stderr_bytes: stderr.bytes,
            stdout_not_kept_bytes: not_kept.stdout,
            stderr_not_kept_bytes: not_kept.stderr,
            full_output: FullOutput {
                stdout: stdout.full_output.map(|p| p.display().to_string()),
                stderr: stderr.full_output.map(|p| p.display().to_string()),
            },
            stdout: stdout.text,
            stderr: stderr.text,
            duration_ms,
            background: false,
            yielded: false,
            cursor: None,
        })
    }

    /// The run directory of a foreground execution whose output goes to files
    /// (`Supervision::Attached`), so that it can be yielded to the background; `None` where
    /// background executions cannot run (gVisor, a user recorded by name): the command then
    /// streams its output through the exec as before, and runs until it ends or times out.
    fn attached_files(&self, execution: &Execution) -> Option<RunFiles> {
        if self.config.container.runtime.as_deref().is_some_and(|r| r != "runc") {
            return None;
        }
        let owner = numeric_ids(execution.user.as_deref());
        if owner.is_none() && execution.user.is_some() {
            return None;
        }
        let files = self.run_files(execution);
        match files.create(owner) {
            Ok(()) => Some(files),
            Err(e) => {
                tracing::warn!(execution = %execution.id, error = %e, "cannot make the run directory; the command runs without one");
                None
            }
        }
    }

    /// The foreground execution ran past `yield_after_s`: it goes on as a background one
    /// (its supervisor keeps running; the server stopped waiting), and the reply gives its
    /// output so far and the cursor after it.
    async fn yielded(
        &self,
        task: &Task,
        mut execution: Execution,
        files: &RunFiles,
        started: Instant,
        redactor: &Redactor,
    ) -> Result<ExecutionResult> {
        if let Err(e) = files.mark_detached() {
            tracing::warn!(execution = %execution.id, error = %e, "cannot mark the execution detached");
        }
        self.registry.make_background(&execution.id)?;
        execution.background = true;
        // It may have ended a moment ago: then it is recorded now, like any background one.
        let execution = self.settle(execution).await;
        let output = self.read_output(&execution, Cursor::default(), redactor)?;
        Ok(ExecutionResult {
            execution_id: execution.id.clone(),
            task_id: task.id.clone(),
            exit_code: output.exit_code,
            timed_out: execution.timed_out,
            truncated: output.more,
            stdout_bytes: output.stdout_bytes,
            stderr_bytes: output.stderr_bytes,
            stdout_not_kept_bytes: 0,
            stderr_not_kept_bytes: 0,
            full_output: FullOutput::default(),
            stdout: output.stdout,
            stderr: output.stderr,
            duration_ms: started.elapsed().as_millis() as u64,
            background: true,
            yielded: true,
            cursor: Some(output.cursor),
        })
    }

    /// Whether the owner may hold one more background execution (a yield is one).
    fn background_room(&self, owner: &Owner) -> bool {
        let running = self.registry.owner_running_background(owner).unwrap_or(u64::MAX);
        super::quota::admit_background(owner, &self.config.quotas.for_owner(owner), running).is_ok()
    }

    /// `before_exec` for a command run for the agent (an execution or a file operation):
    /// the safety hooks and external hooks may refuse it, or resume the task first. Returns
    /// the task as it is after them (read again: a hook may have resumed it).
    /// Before a command in the container: the recovery step brings the container back when
    /// configured, then `before_exec` fires (a deny refuses the command). Returns the task as
    /// the command will meet it.
    pub(super) async fn guard_command(&self, task: Task, arguments: serde_json::Value) -> Result<Task> {
        Ok(self.guard_command_seen(task, arguments).await?.0)
    }

    /// `guard_command`, also returning the container's state when the recovery step
    /// inspected it (`None`: not inspected).
    pub(super) async fn guard_command_seen(
        &self,
        task: Task,
        arguments: serde_json::Value,
    ) -> Result<(Task, Option<Option<ContainerState>>)> {
        let (task, container) = self.recover_before_command(task).await?;
        let before = HookContext::new(HookEvent::BeforeExec, Some(task.clone()))
            .with_arguments(arguments)
            .with_container(container.clone());
        self.fire(before).await?;
        Ok((self.resolve(Some(&task.id))?, container))
    }

    /// Whether the container has the supervisor mounted (containers made before it did not),
    /// from the state already inspected when there is one.
    pub(super) async fn has_supervisor(&self, container: &str, seen: Option<Option<ContainerState>>) -> bool {
        let state = match seen {
            Some(state) => state,
            None => self.runtime.inspect_container(container).await.ok().flatten(),
        };
        state.is_some_and(|s| {
            s.isolation
                .mounts
                .iter()
                .any(|m| m.destination == supervisor::SUPERVISOR_PATH)
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_execution(
        &self,
        container: &str,
        spec: ExecSpec,
        execution: &Execution,
        timeout: Duration,
        cancel: &CancellationToken,
        Run { supervised, redactor }: Run,
        watch: Watch<'_>,
    ) -> Result<(Ending, Option<i64>, CapturedStream, CapturedStream)> {
        let (exec_id, task_id) = (execution.id.as_str(), execution.task_id.as_str());
        // The marker sweep runs as the command's user: root without CAP_SYS_PTRACE cannot
        // read another user's /proc/<pid>/environ.
        let user = execution.user.clone();
        let cap = self.config.execution.output_cap_bytes;
        let outputs = self.store.outputs_dir(task_id);
        let limit = self.config.execution.spill_limit_bytes;
        let stdout = StreamCapture::new(cap, outputs.join(format!("{exec_id}.log"))).with_spill_limit(limit);
        let stderr = StreamCapture::new(cap, outputs.join(format!("{exec_id}.stderr.log"))).with_spill_limit(limit);
        // Secret values are replaced before anything is kept: the reply, the spill files (a
        // second layer over the supervisor's for run files, which the agent can write too).
        let mut stdout = Redacted::new(stdout, &redactor);
        let mut stderr = Redacted::new(stderr, &redactor);
        // With run files, the exec's own streams carry only the supervisor's errors.
        let mut said = Head::new(4096);

        let started = Instant::now();
        let mut handle = self.runtime.exec(container, spec).await?;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut yield_at = watch.yield_at;
        let yield_deadline = tokio::time::sleep_until(yield_at.unwrap_or_else(Instant::now).into());
        tokio::pin!(yield_deadline);
        let mut ticks = tokio::time::interval_at((started + PROGRESS_EVERY).into(), PROGRESS_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ending = Ending::Exited;
        loop {
            tokio::select! {
                chunk = handle.output.next() => match chunk {
                    Some(Ok(OutputChunk::Stdout(bytes) | OutputChunk::Stderr(bytes))) if watch.files.is_some() => said.push(&bytes),
                    Some(Ok(OutputChunk::Stdout(bytes))) => stdout.push(&bytes),
                    Some(Ok(OutputChunk::Stderr(bytes))) => stderr.push(&bytes),
                    Some(Err(e)) => {
                        ending = Ending::StreamFailed(e.to_string());
                        break;
                    }
                    None => break,
                },
                () = &mut deadline => {
                    ending = Ending::TimedOut;
                    break;
                }
                () = &mut yield_deadline, if yield_at.is_some() => {
                    if self.background_room(watch.owner) {
                        ending = Ending::Yielded;
                        break;
                    }
                    // The owner's quota of background executions is full: it stays in the
                    // foreground, up to its timeout.
                    tracing::info!(execution = exec_id, "not yielded: the owner's background quota is full");
                    yield_at = None;
                }
                _ = ticks.tick(), if watch.progress.is_some() => {
                    if let Some(progress) = &watch.progress {
                        progress(progress_update(started.elapsed(), watch.files, &redactor, (&stdout.capture, &stderr.capture)));
                    }
                }
                () = cancel.cancelled() => {
                    ending = Ending::Cancelled;
                    break;
                }
                () = self.shutting_down.cancelled() => {
                    ending = Ending::Cancelled;
                    break;
                }
            }
        }
        if matches!(ending, Ending::Yielded) {
            // The supervisor goes on alone; dropping the exec's stream leaves it running.
            let (stdout, stderr) = (stdout.into_inner(), stderr.into_inner());
            return Ok((ending, None, stdout.finish("stdout"), stderr.finish("stderr")));
        }
        if !matches!(ending, Ending::Exited) {
            if supervised {
                self.signal_supervisors(container, SupervisorSignal::Kill, &[exec_id])
                    .await;
            }
            self.kill_execution(container, exec_id, user.as_deref()).await;
            // Collect what the tree printed before it died; give up on a stream that some
            // escaped process still holds open.
            let drain = async {
                while let Some(chunk) = handle.output.next().await {
                    match chunk {
                        Ok(OutputChunk::Stdout(bytes) | OutputChunk::Stderr(bytes)) if watch.files.is_some() => {
                            said.push(&bytes)
                        }
                        Ok(OutputChunk::Stdout(bytes)) => stdout.push(&bytes),
                        Ok(OutputChunk::Stderr(bytes)) => stderr.push(&bytes),
                        Err(_) => break,
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_AFTER_KILL, drain).await;
        }
        // Written by the supervisor just before it exits, which ends the stream.
        let status = watch.files.and_then(|files| files.status().ok().flatten());
        // It says how the command ended as Docker would, one round trip sooner
        // (docs/performance.md). The agent's command can write its run directory: a command
        // that is not root could at worst forge its own exit code; a root command can kill its
        // supervisor and leave a status of its own making, and whether it cut the supervisor
        // short decides the reaping below: Docker's word then.
        let reported = status
            .as_ref()
            .filter(|_| user.as_deref().is_some_and(|u| !is_root(u)))
            .and_then(SupervisorStatus::exit_status);
        let mut exit_code = match ending {
            Ending::Exited if reported.is_some() => reported,
            Ending::Exited => match self.runtime.exec_exit_code(&handle.exec_id).await {
                Ok(code) => code,
                // The stream ended because the daemon went away (a restart cuts it cleanly):
                // the command did not finish as far as anyone can tell.
                Err(e @ RuntimeError::Unavailable(_)) => {
                    ending = Ending::StreamFailed(e.to_string());
                    None
                }
                // The command ran; losing its output over a failed inspect would be worse
                // than reporting no exit code.
                Err(e) => {
                    tracing::warn!(exec_id, error = %e, "cannot read the exit code");
                    None
                }
            },
            _ => None,
        };
        if let Some(files) = watch.files {
            if status.is_none() && exit_code == Some(supervisor::SETUP_FAILED) {
                let mut said = String::from_utf8_lossy(&said.into_bytes()).trim().to_string();
                if said.contains("unknown option") {
                    // The container mounted the supervisor of an older taskbox (it is replaced
                    // on the host by rename; a running container keeps the file it mounted).
                    said.push_str(
                        "; this task's container runs an older supervisor: stop_task then resume_task (the \
                         restarted container gets the current one)",
                    );
                }
                self.remove_run_dir(files);
                return Err(Error::InContainer {
                    what: "starting the command's supervisor".into(),
                    message: said,
                });
            }
            // The supervisor's own timeout (the same as ours) may have come first.
            if status.as_ref().is_some_and(|s| s.ended_by == EndedBy::Timeout) && matches!(ending, Ending::Exited) {
                ending = Ending::TimedOut;
                exit_code = None;
            }
            // No more than the supervisor says it kept, and never past its cap: a process the
            // command left behind may still be appending to the files (the agent can write them).
            let cap = self
                .config
                .execution
                .spill_limit_bytes
                .max(self.config.execution.output_cap_bytes as u64);
            let limits = match &status {
                Some(s) => (s.stdout_kept.min(cap), s.stderr_kept.min(cap)),
                None => (cap, cap),
            };
            let read = read_run_files(files, limits, &mut stdout, &mut stderr);
            if let Err(e) = read {
                tracing::warn!(exec_id, error = %e, "cannot read the execution's output files");
            }
            if let Some(status) = &status {
                stdout
                    .capture
                    .count_not_kept(status.stdout_bytes.saturating_sub(status.stdout_kept));
                stderr
                    .capture
                    .count_not_kept(status.stderr_bytes.saturating_sub(status.stderr_kept));
            }
            self.remove_run_dir(files);
        }
        if user.as_deref().is_none_or(is_root) {
            // A root command can kill its supervisor (a dying supervisor exits 128 + signal,
            // and one stopped waits for the timeout): what it left under PID 1 goes too.
            let cut_short = !matches!(ending, Ending::Exited) || exit_code.is_some_and(|c| c >= 128);
            if supervised && cut_short {
                self.reap_escaped(container, task_id).await;
            }
            self.clear_setid_bits(task_id).await;
        }
        let (stdout, stderr) = (stdout.into_inner(), stderr.into_inner());
        Ok((ending, exit_code, stdout.finish("stdout"), stderr.finish("stderr")))
    }

    /// Who runs a supervised command (docs/architecture.md, "Executions and their
    /// supervisor"): a user given by number other than root gets a root supervisor that drops
    /// to it, so the command can neither signal nor trace its supervisor; that needs SETUID,
    /// SETGID and KILL (to end another user's tree) kept in the container (`security.cap_add`). Otherwise (root, a user
    /// recorded by name, those capabilities dropped) the supervisor runs as the user itself.
    /// Returns the exec's user and the `--user` of the supervisor.
    pub(super) fn supervised_as(&self, user: Option<&str>, env: &[String]) -> (Option<String>, Option<DropTo>) {
        let caps = &self.config.security.cap_add;
        let kept = |cap: &str| {
            caps.iter()
                .any(|c| c.strip_prefix("CAP_").unwrap_or(c).eq_ignore_ascii_case(cap))
        };
        match numeric_ids(user) {
            Some((uid, gid)) if uid != 0 && ["SETUID", "SETGID", "KILL"].into_iter().all(kept) => {
                let set_home = !env.iter().any(|var| var.starts_with("HOME="));
                (Some("0:0".into()), Some(DropTo { uid, gid, set_home }))
            }
            _ => (user.map(String::from), None),
        }
    }

    /// `ReapEscaped` for a task's container, keeping its running background executions.
    async fn reap_escaped(&self, container: &str, task_id: &str) {
        let running = match self.registry.running_background(Some(task_id)) {
            Ok(running) => running,
            Err(e) => {
                tracing::warn!(task = task_id, error = %e, "cannot list background executions; not reaping");
                return;
            }
        };
        let keep: Vec<&str> = running.iter().map(|e| e.id.as_str()).collect();
        match tokio::time::timeout(KILL_TIMEOUT, self.run_op(container, ReapEscaped { keep: &keep })).await {
            Ok(Ok(Ok(0))) => {}
            Ok(Ok(Ok(killed))) => tracing::warn!(task = task_id, killed, "killed processes that escaped to PID 1"),
            Ok(Ok(Err(failed))) => {
                tracing::warn!(task = task_id, code = ?failed.code, stderr = %failed.stderr, "cannot reap")
            }
            Ok(Err(e)) => tracing::warn!(task = task_id, error = %e, "cannot reap"),
            Err(_) => tracing::warn!(task = task_id, "reaping did not finish in time"),
        }
    }

    /// Removes a foreground execution's run directory once its output is read, off the
    /// reply's path (a command may have left many files in it).
    fn remove_run_dir(&self, files: &RunFiles) {
        let dir = files.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a run directory");
            }
        });
    }

    /// Asks the supervisors of these executions to signal their trees (`supervise signal`,
    /// as root, so whatever user they run as) and waits up to the grace period and a bit for
    /// them to end. Returns whether none is left.
    pub(super) async fn signal_supervisors(
        &self,
        container: &str,
        signal: SupervisorSignal,
        exec_ids: &[&str],
    ) -> bool {
        if exec_ids.is_empty() {
            return true;
        }
        let wait_s = match signal {
            SupervisorSignal::Kill | SupervisorSignal::Eof => 5,
            _ => supervisor::GRACE_S + 5,
        };
        let op = SignalSupervisors {
            signal,
            wait_s,
            exec_ids,
        };
        let limit = Duration::from_secs(wait_s + 10);
        match tokio::time::timeout(limit, self.run_op(container, op)).await {
            Ok(Ok(Ok(gone))) => gone,
            Ok(Ok(Err(failed))) => {
                tracing::warn!(?exec_ids, code = ?failed.code, stderr = %failed.stderr, "cannot signal the supervisors");
                false
            }
            Ok(Err(e)) => {
                tracing::warn!(?exec_ids, error = %e, "cannot signal the supervisors");
                false
            }
            Err(_) => false,
        }
    }

    pub(super) async fn kill_execution(&self, container: &str, exec_id: &str, user: Option<&str>) {
        let Err(error) = self.kill_tree(container, exec_id, user).await else {
            return;
        };
        // Last resort: restarting the container ends every process in it; the files stay.
        tracing::warn!(exec_id, %error, "cannot kill the execution's processes; restarting the container");
        let restarted = async {
            self.runtime.stop_container(container, 0).await?;
            self.runtime.start_container(container).await
        };
        if let Err(e) = restarted.await {
            tracing::error!(exec_id, error = %e, "cannot restart the container after a failed kill");
        }
    }

    /// Kills the process tree of execution `exec_id` (`KillTree`) within `KILL_TIMEOUT`;
    /// returns how many processes it killed, or why it could not.
    pub(super) async fn kill_tree(
        &self,
        container: &str,
        exec_id: &str,
        user: Option<&str>,
    ) -> std::result::Result<usize, String> {
        let kill = KillTree { exec_id, user };
        match tokio::time::timeout(KILL_TIMEOUT, self.run_op(container, kill)).await {
            Ok(Ok(Ok(killed))) => Ok(killed),
            Ok(Ok(Err(failed))) => Err(format!(
                "the kill command exited with {:?}: {}",
                failed.code, failed.stderr
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("the kill command did not finish within {KILL_TIMEOUT:?}")),
        }
    }

    /// Clears set-id bits in the task's workspace, from the host (`workspace::setid`: nothing
    /// in the container is trusted to do it); run after root commands and once a task's
    /// container has stopped.
    pub(super) async fn clear_setid_bits(&self, task_id: &str) {
        let mut roots = vec![("the workspace".to_string(), self.workspace_dir(task_id))];
        // The task's volumes too, where this process can reach Docker's data root (as root):
        // no set-id file made in a task lies on the host for long (docs/security.md).
        if let Ok(Some(task)) = self.registry.get_task(task_id) {
            for volume in &task.volumes {
                if let Ok(Some(info)) = self.runtime.inspect_volume(&volume.volume).await
                    && self.volume_is_owners(&info, &task.owner)
                    && !info.mountpoint.is_empty()
                {
                    roots.push((format!("volume {}", volume.volume), info.mountpoint.into()));
                }
            }
        }
        for (what, root) in roots {
            let exists = root.is_dir();
            let swept = tokio::task::spawn_blocking(move || crate::workspace::setid::clear_setid_bits(&root)).await;
            match swept {
                Ok(Ok(sweep)) if sweep.cleared > 0 => {
                    tracing::warn!(task = task_id, cleared = sweep.cleared, examples = ?sweep.examples, "cleared set-id bits in {what}");
                }
                Ok(Ok(_)) => {}
                // A volume's files are out of reach of a server that is not root.
                Ok(Err(_)) if !exists && what != "the workspace" => {}
                Ok(Err(e)) => tracing::warn!(task = task_id, error = %e, "cannot clear set-id bits in {what}"),
                Err(e) => tracing::warn!(task = task_id, error = %e, "the set-id sweep failed"),
            }
        }
    }

    /// Runs one of taskbox's own commands in the container (see `container_ops`) to
    /// completion and returns what it means.
    pub(super) async fn run_op<O: ContainerOp>(&self, container: &str, op: O) -> Result<O::Outcome> {
        let stdout = op.stdout();
        let output = self.run_captured(container, op.into_spec(), stdout).await?;
        Ok(O::outcome(output))
    }

    /// Runs an internal command to completion, with a marker of its own so that it can be
    /// killed like an execution. Internal commands get `INTERNAL_TIMEOUT`: something the agent
    /// put in the workspace (a git filter that sleeps, a pipe) must not hang a checkpoint or a
    /// stop forever. Its output is bounded while it is read (`Stdout`, `STDERR_KEPT`): a git
    /// filter that floods stderr costs time, never memory.
    async fn run_captured(&self, container: &str, mut spec: ExecSpec, stdout: Stdout) -> Result<Output> {
        let marker = new_execution_id();
        spec.env.push(format!("{MARKER_VAR}={marker}"));
        let user = spec.user.clone();
        let mut sink = match stdout {
            Stdout::Memory(limit) => OpStdout::Memory(Head::new(limit)),
            Stdout::File { path, limit } => OpStdout::File(FileSink::create(&path, limit).map_err(|source| {
                Error::Store(crate::store::StoreError::Io {
                    path: path.clone(),
                    source,
                })
            })?),
        };
        let mut handle = self.runtime.exec(container, spec).await?;
        let mut stderr = Head::new(STDERR_KEPT);
        let mut stdout_bytes = 0u64;
        let collect = async {
            while let Some(chunk) = handle.output.next().await {
                match chunk? {
                    OutputChunk::Stdout(b) => {
                        stdout_bytes += b.len() as u64;
                        if !sink.push(&b)? {
                            return Ok(Collected::Overflowed);
                        }
                    }
                    OutputChunk::Stderr(b) => stderr.push(&b),
                }
            }
            Ok::<_, Error>(Collected::Ended)
        };
        let collected = tokio::time::timeout(INTERNAL_TIMEOUT, collect).await;
        let overflowed = match collected {
            Ok(Ok(Collected::Ended)) => false,
            Ok(Ok(Collected::Overflowed)) => {
                // Past a file's limit: nothing more is wanted, so the command ends here.
                Box::pin(self.kill_execution(container, &marker, user.as_deref())).await;
                true
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                // Boxed: killing runs an internal command itself.
                Box::pin(self.kill_execution(container, &marker, user.as_deref())).await;
                return Err(Error::InContainer {
                    what: "an internal command".into(),
                    message: format!(
                        "it did not finish within {INTERNAL_TIMEOUT:?} and was killed (check the workspace's \
                         .git/config for filters or hooks that hang)"
                    ),
                });
            }
        };
        let stdout_cut = overflowed || sink.cut();
        let stdout = sink.finish()?;
        // A command killed for its output has no exit code of its own.
        let code = match overflowed {
            true => None,
            false => self.runtime.exec_exit_code(&handle.exec_id).await?,
        };
        Ok(Output {
            code,
            stdout: stdout.unwrap_or_default(),
            stderr: stderr.into_bytes(),
            stdout_bytes,
            stdout_cut,
        })
    }

    fn requested_user(&self, user: Option<&str>) -> Result<Option<String>> {
        match user {
            None | Some("") => Ok(None),
            Some("root") if self.config.security.allow_root_exec => Ok(Some("root".into())),
            Some("root") => Err(Error::invalid(
                "user",
                "running as root is disabled by the server's config (security.allow_root_exec); omit `user`",
            )),
            Some(other) => Err(Error::invalid(
                "user",
                format!("'{other}' is not allowed; omit `user` to run as the image's user, or pass \"root\""),
            )),
        }
    }

    pub(super) fn record_execution(&self, execution: &Execution, not_kept: NotKept, error: Option<&str>) -> Result<()> {
        let data = execution_data(execution, not_kept, error);
        self.record(Event::new(&execution.task_id, EventKind::Execution, data))
    }

    /// The `execution` event of an execution that ended without its server: the whole row,
    /// and why (`reason`).
    pub(super) fn record_ended_execution(&self, execution: &Execution, reason: &str) -> Result<()> {
        let mut data = execution_data(execution, NotKept::default(), Some(reason));
        data["reason"] = serde_json::json!(reason);
        self.record(Event::new(&execution.task_id, EventKind::Execution, data))
    }
}

/// An `execution` event's data: everything the registry's row holds, so a rebuild from the
/// files restores it.
fn execution_data(execution: &Execution, not_kept: NotKept, error: Option<&str>) -> serde_json::Value {
    {
        serde_json::json!({
            "execution_id": execution.id,
            "command": execution.command,
            "workdir": execution.workdir,
            "user": execution.user,
            "explanation": execution.explanation,
            "started_at": execution.started_at,
            "finished_at": execution.finished_at,
            "status": execution.status,
            "exit_code": execution.exit_code,
            "timed_out": execution.timed_out,
            "duration_ms": execution.duration_ms,
            "stdout_bytes": execution.stdout_bytes,
            "stderr_bytes": execution.stderr_bytes,
            "truncated": execution.truncated,
            "stdout_not_kept_bytes": not_kept.stdout,
            "stderr_not_kept_bytes": not_kept.stderr,
            "background": execution.background,
            "error": error,
        })
    }
}

impl TaskService {
    /// An exec that failed because the container is gone or stopped means the task died:
    /// record that, and tell the agent what happened instead of a raw Docker error.
    async fn explain_exec_failure(&self, task_id: &str, error: Error) -> Error {
        if !matches!(
            error,
            Error::Runtime(RuntimeError::NotFound { .. } | RuntimeError::Api(_))
        ) {
            return error;
        }
        let Ok(task) = self.resolve(Some(task_id)) else {
            return error;
        };
        // Someone stopped the task while this call was starting: that is not a death.
        if task.status != TaskStatus::Running {
            return Error::WrongStatus {
                task: task.name,
                status: task.status.to_string(),
                hint: super::status_hint(task.status).into(),
            };
        }
        let Some(container) = task.container_id.clone() else {
            return error;
        };
        let reason = match self.runtime.inspect_container(&container).await {
            Ok(None) => format!("its container {container} no longer exists"),
            Ok(Some(state)) if !state.running => describe_exit(&state),
            _ => return error,
        };
        match self.transition(task, LifecycleEvent::ContainerDied, Some(reason.clone()), |_| {}) {
            Ok(task) => Error::WrongStatus {
                task: task.name,
                status: task.status.to_string(),
                hint: format!("{reason}; delete it and create a new task"),
            },
            Err(_) => error,
        }
    }
}

pub(super) fn describe_exit(state: &crate::runtime::ContainerState) -> String {
    let mut reason = format!("its container {}", state.status);
    if let Some(code) = state.exit_code {
        reason.push_str(&format!(" with exit code {code}"));
    }
    if state.oom_killed {
        reason.push_str(" (killed for running out of memory)");
    }
    if let Some(error) = &state.error {
        reason.push_str(&format!(": {error}"));
    }
    reason
}

/// What a foreground execution's wait watches besides its end: its run files (when its
/// output goes there), the soft timeout, and whom to tell about its progress.
struct Watch<'a> {
    files: Option<&'a RunFiles>,
    yield_at: Option<Instant>,
    owner: &'a Owner,
    progress: Option<ExecProgress>,
}

/// Copies the output the supervisor kept in the run files into the reply's captures (which
/// keep head and tail, and spill to `outputs/` past the reply's cap, as for a streamed
/// command). Reads are bounded per chunk and in total (`limits`, bytes per stream); the files
/// are hostile input (`RunFiles`).
fn read_run_files(
    files: &RunFiles,
    (stdout_limit, stderr_limit): (u64, u64),
    stdout: &mut Redacted,
    stderr: &mut Redacted,
) -> std::io::Result<()> {
    for (stream, limit, capture) in [
        (Stream::Stdout, stdout_limit, stdout),
        (Stream::Stderr, stderr_limit, stderr),
    ] {
        let mut offset = 0;
        while offset < limit {
            let chunk = READ_CHUNK.min((limit - offset) as usize);
            let (bytes, _) = files.read(stream, offset, chunk)?;
            if bytes.is_empty() {
                break;
            }
            offset += bytes.len() as u64;
            capture.push(&bytes);
        }
    }
    Ok(())
}

/// A progress report: the elapsed time, and the last line printed (from the run files, or
/// from what the stream brought so far, redacted already), or what it waits for.
fn progress_update(
    elapsed: Duration,
    files: Option<&RunFiles>,
    redactor: &Redactor,
    (stdout, stderr): (&StreamCapture, &StreamCapture),
) -> ExecProgressUpdate {
    let (last_line, activity) = match files {
        Some(files) => (
            files.last_line().map(|line| redactor.redact_text(&line)),
            files.activity(),
        ),
        None => (stdout.last_line().or_else(|| stderr.last_line()), Activity::Active),
    };
    let mut message = format!("running for {} s", elapsed.as_secs());
    match activity {
        Activity::Active => {}
        Activity::WaitingForInput { what } => message.push_str(&format!("; waiting for input ({what})")),
        Activity::Stalled { what } => message.push_str(&format!("; silent: {what}")),
    }
    if let Some(line) = last_line {
        message.push_str(&format!("; last line: {line}"));
    }
    ExecProgressUpdate { elapsed, message }
}

/// How reading an internal command's stdout ended.
enum Collected {
    /// The stream closed: the command ended.
    Ended,
    /// A `Stdout::File` limit was reached; the command is still running.
    Overflowed,
}

/// An internal command's stdout while it is read.
enum OpStdout {
    Memory(Head),
    File(FileSink),
}

impl OpStdout {
    /// `Ok(false)` once a file's limit was passed (memory just stops keeping).
    fn push(&mut self, chunk: &[u8]) -> Result<bool> {
        match self {
            Self::Memory(head) => {
                head.push(chunk);
                Ok(true)
            }
            Self::File(file) => file.push(chunk).map_err(|source| {
                Error::Store(crate::store::StoreError::Io {
                    path: file.path().to_path_buf(),
                    source,
                })
            }),
        }
    }

    fn cut(&self) -> bool {
        match self {
            Self::Memory(head) => head.cut(),
            Self::File(_) => false,
        }
    }

    /// The kept bytes for memory; `None` for a file, flushed.
    fn finish(self) -> Result<Option<Vec<u8>>> {
        match self {
            Self::Memory(head) => Ok(Some(head.into_bytes())),
            Self::File(file) => {
                let path = file.path().to_path_buf();
                file.finish()
                    .map_err(|source| Error::Store(crate::store::StoreError::Io { path, source }))?;
                Ok(None)
            }
        }
    }
}

/// Defaults that keep tools from stopping at a prompt or a pager nobody can answer; the
/// network's, the task's and the call's own values win.
const QUIET_DEFAULTS: &[(&str, &str)] = &[
    ("DEBIAN_FRONTEND", "noninteractive"),
    ("GIT_TERMINAL_PROMPT", "0"),
    ("PAGER", "cat"),
    ("GIT_PAGER", "cat"),
];

/// A stream's capture behind its redactor: every piece goes through the redactor first, and
/// what it held back is flushed when the capture is taken out.
struct Redacted {
    capture: StreamCapture,
    stream: StreamRedactor,
}

impl Redacted {
    fn new(capture: StreamCapture, redactor: &Arc<Redactor>) -> Self {
        Self {
            capture,
            stream: StreamRedactor::new(redactor.clone()),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let redacted = self.stream.push(bytes);
        self.capture.push(&redacted);
    }

    fn into_inner(mut self) -> StreamCapture {
        let rest = self.stream.finish();
        self.capture.push(&rest);
        self.capture
    }
}

/// A command's environment: the non-interactive defaults, the network's (`network_env`), the
/// task's variables, the call's own, then the task's secrets (later ones win); and the kill
/// marker.
pub(super) fn command_env(
    network_env: BTreeMap<String, String>,
    task_env: &BTreeMap<String, String>,
    call_env: &BTreeMap<String, String>,
    secrets: &[Secret],
    exec_id: &str,
) -> Vec<String> {
    let mut merged: BTreeMap<String, String> = QUIET_DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    merged.extend(network_env);
    merged.extend(task_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged.extend(call_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    // Values are checked to be UTF-8 when read (`secrets::read_value`), so this is lossless.
    merged.extend(
        secrets
            .iter()
            .map(|s| (s.name.clone(), String::from_utf8_lossy(&s.value).into_owned())),
    );
    let mut vars: Vec<String> = merged.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    vars.push(format!("{MARKER_VAR}={exec_id}"));
    vars
}

/// `uid:gid` (or `uid`) as numbers; `root` is 0:0; a name is `None` (tasks made before users
/// were fixed by number at creation record the name).
pub(super) fn numeric_ids(user: Option<&str>) -> Option<(u32, u32)> {
    match user {
        None => None,
        Some(u) if is_root(u) => Some((0, 0)),
        Some(u) => {
            let (uid, gid) = u.split_once(':').unwrap_or((u, u));
            Some((uid.parse().ok()?, gid.parse().ok()?))
        }
    }
}

/// Relative workdirs are relative to /workspace; absolute ones are used as given (the file
/// tools confine paths; a command can `cd` anywhere anyway).
pub(super) fn resolve_workdir(workdir: Option<&str>) -> Result<String> {
    match workdir {
        None | Some("") => Ok("/workspace".into()),
        Some(dir) if dir.contains('\0') => Err(Error::invalid("workdir", "it contains a NUL byte")),
        Some(dir) if dir.starts_with('/') => Ok(dir.to_string()),
        Some(dir) => Ok(format!("/workspace/{dir}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process left behind may go on appending to the files: the read stops at its limits.
    #[test]
    fn run_files_are_read_up_to_their_limits_whatever_the_files_hold() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stdout"), vec![b'x'; 300_000]).unwrap();
        std::fs::write(dir.path().join("stderr"), b"err\n").unwrap();
        let files = RunFiles::new(dir.path().to_path_buf());
        let redactor = Arc::new(Redactor::none());
        let capture = |name: &str| Redacted::new(StreamCapture::new(1 << 20, dir.path().join(name)), &redactor);
        let (mut stdout, mut stderr) = (capture("out.log"), capture("err.log"));
        read_run_files(&files, (100_000, 2), &mut stdout, &mut stderr).unwrap();
        let out = stdout.into_inner().finish("stdout");
        let err = stderr.into_inner().finish("stderr");
        assert_eq!(out.bytes, 100_000);
        assert_eq!(err.text, "er");
    }
}
