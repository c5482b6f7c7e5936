//! `TaskboxServer`: session state, the `ServerHandler` glue and the helpers every tool uses
//! to turn a service call into a tool result.

#![allow(deprecated)] // SetLevelRequestParams / logging capability (see logging.rs).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, GetPromptRequestParams, GetPromptResponse,
    Implementation, InitializeRequestParams, InitializeResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
    ServerConfig, SetLevelRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, tool_handler};
use serde::Serialize;
use serde_json::Value;

use super::error::tool_error;
use super::logging::LogLevel;
use super::prompts::{self, Command};
use super::resources;
use super::tools::Tool;
use crate::domain::Owner;
use crate::domain::Task;
use crate::error::{Error, Result};
use crate::hooks::scope::{self, CallScope};
use crate::task::TaskService;

pub const INSTRUCTIONS: &str = "\
taskbox gives you a task sandbox: a hardened Docker container with a git workspace at /workspace. \
Work inside it, not on the host.

Workflow:
1. create_task_sandbox(name, description) once per piece of work; it becomes this session's \
current task, so later calls may omit `task`. To continue an existing task, attach_agent_to_task \
(it returns recent executions to catch up on).
2. execute_in_task(command, explanation) to run shell commands (bash -lc in /workspace). A non-zero \
exit code is a normal result; read stdout/stderr. Long output is cut in the middle and kept on disk. \
Use timeout_s for long commands (default 120 s). Processes a command leaves behind end with it: \
start dev servers, watchers and long builds with background: true, which returns an execution_id at \
once; then call execution_output(execution_id, since: <the previous reply's cursor>, wait_s: 30) until \
its output shows it is ready or its status is no longer running; if it reports waiting_for_input, its \
last_line is the question: answer with send_input or rerun with a non-interactive flag (-y); end it \
with kill_execution. A foreground command still running after yield_after_s (40 s) returns with \
yielded: true, its output so far and a cursor, and goes on in the background: follow it the same way. \
To open a dev server, start it in the background, then expose_port(port): the reply's url reaches \
it from the host, even when it listens only on 127.0.0.1 in the container.
3. stop_task when pausing (files survive), resume_task to continue.
4. detach_agent_from_task when you hand the task to someone else; delete_task(confirm: true) only \
when the work is no longer wanted.

get_task_status shows the container's live state, attachments and the last execution; \
list_tasks shows every task. Errors say what to do next.";

/// One MCP session's view of the server.
#[derive(Clone)]
pub struct TaskboxServer {
    pub(crate) service: Arc<TaskService>,
    pub(crate) session: Arc<Session>,
    commands: Arc<Vec<Command>>,
    tool_router: ToolRouter<Self>,
}

pub(crate) struct Session {
    pub id: String,
    /// Whose tasks this session sees: the token's owner over HTTP, the local owner on stdio.
    pub owner: Owner,
    /// The task tools use when `task` is omitted: set by create and attach.
    pub current_task: Mutex<Option<String>>,
    pub log_level: Arc<LogLevel>,
    /// Over HTTP, the cap on executions the session's token runs at once.
    pub exec_limit: Option<ExecLimit>,
    /// Set by `initialize`: only a session that began ends attachments when it goes away
    /// (the HTTP transport also builds throwaway servers, e.g. to look up a tool's schema).
    started: std::sync::atomic::AtomicBool,
    service: Arc<TaskService>,
}

impl Drop for Session {
    /// A session that goes away (client disconnected, HTTP session closed or expired) leaves
    /// no agent attached; on stdio the transport has done this already and this is a no-op.
    fn drop(&mut self) {
        if self.started.load(std::sync::atomic::Ordering::Relaxed) {
            self.service.end_session_soon(self.id.clone());
        }
    }
}

/// A cap on executions running at once, shared by every session of one HTTP token.
#[derive(Clone)]
pub struct ExecLimit {
    limit: usize,
    slots: Arc<tokio::sync::Semaphore>,
}

impl ExecLimit {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            slots: Arc::new(tokio::sync::Semaphore::new(limit)),
        }
    }

    /// A slot for one execution, held until it is dropped; an error when all are taken.
    pub(crate) fn try_acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::TooManyExecutions { limit: self.limit })
    }
}

/// The slash commands the server offers as prompts: the configured directory's, else the
/// built-in ones.
pub fn load_commands(service: &TaskService) -> Arc<Vec<Command>> {
    let commands = prompts::load(service.commands_dir()).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot load the configured commands; serving the built-in ones");
        prompts::load(None).unwrap_or_default()
    });
    Arc::new(commands)
}

impl TaskboxServer {
    /// A stdio session: the local owner, no execution cap.
    pub fn new(service: Arc<TaskService>) -> Self {
        let commands = load_commands(&service);
        Self::for_owner(service, commands, Owner::local(), None)
    }

    /// A session acting for `owner` (over HTTP: the owner of the caller's token).
    pub fn for_owner(
        service: Arc<TaskService>,
        commands: Arc<Vec<Command>>,
        owner: Owner,
        exec_limit: Option<ExecLimit>,
    ) -> Self {
        Self {
            commands,
            session: Arc::new(Session {
                id: format!("s-{}", ulid::Ulid::new().to_string().to_lowercase()),
                owner,
                current_task: Mutex::new(None),
                log_level: Arc::new(LogLevel::default()),
                exec_limit,
                started: std::sync::atomic::AtomicBool::new(false),
                service: service.clone(),
            }),
            service,
            tool_router: Self::tool_router(),
        }
    }

    /// Every tool's handler, by area.
    pub(crate) fn tool_router() -> ToolRouter<Self> {
        Self::task_tools()
            + Self::agent_tools()
            + Self::exec_tools()
            + Self::background_tools()
            + Self::port_tools()
            + Self::file_tools()
            + Self::checkpoint_tools()
            + Self::memory_tools()
    }

    /// This MCP session's id, as recorded in attachments.
    pub fn session_id(&self) -> &str {
        &self.session.id
    }

    /// Whose tasks this session sees.
    pub fn owner(&self) -> &Owner {
        &self.session.owner
    }

    /// Over HTTP, a slot under the token's cap on executions at once (held while it runs).
    pub(crate) fn exec_slot(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>> {
        self.session.exec_limit.as_ref().map(ExecLimit::try_acquire).transpose()
    }

    pub(crate) fn set_current_task(&self, task_id: Option<String>) {
        *self.session.current_task.lock().unwrap_or_else(|p| p.into_inner()) = task_id;
    }

    fn current_task(&self) -> Option<String> {
        self.session
            .current_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The task a call is about: the `task` argument, else the session's current task.
    pub(crate) fn task_ref(&self, task: Option<String>) -> Result<String> {
        task.filter(|t| !t.is_empty())
            .or_else(|| self.current_task())
            .ok_or(Error::NoCurrentTask)
    }

    /// Runs a tool body that acts on one task and records the call in that task's event log.
    /// The body gets the task's id.
    pub(crate) async fn on_task<F, Fut>(
        &self,
        tool: Tool,
        task: impl Into<Option<String>>,
        body: F,
    ) -> Result<CallToolResult>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<CallToolResult>>,
    {
        let started = Instant::now();
        let task_id = self
            .service
            .resolve_for(&self.session.owner, &self.task_ref(task.into())?)?
            .id;
        let result = body(task_id.clone()).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let error = result.as_ref().err().map(ToString::to_string);
        // A deleted task has no log left to write to.
        if tool != Tool::DeleteTask || error.is_some() {
            self.service
                .record_tool_call(&task_id, tool.as_str(), error.is_none(), error.as_deref(), duration_ms);
        }
        result
    }

    pub(crate) fn client_name(context: &RequestContext<RoleServer>) -> String {
        context
            .peer
            .peer_info()
            .map(|info| info.client_info.name.clone())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "agent".to_string())
    }
}

/// A successful tool result: `value` as structured content, `text` for readers of plain text.
pub(crate) fn reply<T: Serialize>(text: impl Into<String>, value: &T) -> Result<CallToolResult> {
    let structured =
        serde_json::to_value(value).map_err(|e| Error::Internal(format!("cannot serialise the result: {e}")))?;
    let mut result = CallToolResult::success(vec![ContentBlock::text(text.into())]);
    result.structured_content = Some(structured);
    Ok(result)
}

impl TaskboxServer {
    /// The task a call is about, for its hooks: the `task` argument, the task of a
    /// `checkpoint` argument, or the session's current task for tools that default to it.
    /// Tools about no task (or all tasks) give none; so does a task that does not exist.
    fn task_of_call(&self, tool: Option<Tool>, arguments: &Value) -> Option<Task> {
        let argument = |key: &str| arguments.get(key).and_then(Value::as_str).filter(|v| !v.is_empty());
        match tool {
            Some(Tool::CreateTaskSandbox | Tool::ListTasks | Tool::FindTask | Tool::CleanupTask) => None,
            Some(Tool::TaskStats) => self.service.resolve_for(self.owner(), argument("task")?).ok(),
            Some(Tool::ExecutionOutput | Tool::SendInput | Tool::KillExecution) => self
                .service
                .execution_for(self.owner(), argument("execution_id")?)
                .ok()
                .map(|(task, _)| task),
            Some(Tool::RestoreCheckpoint) => self
                .service
                .resolve_checkpoint(self.owner(), argument("checkpoint")?, argument("task"))
                .ok()
                .map(|(task, _)| task),
            _ => {
                let task = self.task_ref(argument("task").map(String::from)).ok()?;
                self.service.resolve_for(self.owner(), &task).ok()
            }
        }
    }
}

/// Puts the hooks' warnings into a tool result: a text block for readers, and
/// `hook_warnings` in the structured content for programs.
fn add_hook_warnings(result: &mut CallToolResult, warnings: Vec<String>) {
    if warnings.is_empty() {
        return;
    }
    let text = warnings.iter().map(|w| format!("\n- {w}")).collect::<String>();
    result
        .content
        .push(ContentBlock::text(format!("Warnings from hooks:{text}")));
    if let Some(Value::Object(structured)) = result.structured_content.as_mut() {
        structured.insert("hook_warnings".into(), Value::from(warnings));
    }
}

/// rmcp answers arguments that do not fit a tool's parameters ("failed to deserialize
/// parameters: missing field `task`") with a bare tool error; give it the structured
/// `invalid_argument` kind every other tool error carries, so agents can branch on it.
fn give_argument_errors_a_kind(result: &mut CallToolResult) {
    if result.is_error != Some(true) || result.structured_content.is_some() {
        return;
    }
    let message: String = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n");
    result.structured_content = Some(serde_json::json!({
        "error": { "kind": "invalid_argument", "message": message }
    }));
}

/// The kind of a tool error (every one comes from `Error::kind` or is `invalid_argument`, so
/// the metric's labels are a small known set).
fn error_kind(result: &CallToolResult) -> Option<&str> {
    if result.is_error != Some(true) {
        return None;
    }
    result.structured_content.as_ref()?["error"]["kind"].as_str()
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TaskboxServer {
    /// Every tool call passes here: `before_tool` hooks may refuse it, `after_tool` hooks
    /// see its outcome, and warnings any hook raised during the call join its result.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let tool = request.name.to_string();
        let known = Tool::from_name(&tool);
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        let call = CallScope::new(&tool, &Self::client_name(&context));
        // The call's event lines are synced and indexed once, here, before the reply (one
        // fsync and one registry transaction instead of one per write). The call's future is
        // boxed: each wrapper holding it by value takes its size again from the worker's stack
        // (megabytes in a debug build, past the 2 MiB of a worker on a command's recovery path).
        let (response, synced) = self
            .service
            .recording_once(Box::pin(scope::within(call.clone(), async {
                // The start's recovery runs behind the first reply: no call acts before it is done.
                if let Err(e) = self.service.wait_recovered().await {
                    return Ok(tool_error(&e).into());
                }
                let task = self.task_of_call(known, &arguments);
                if let Err(denied) = self.service.before_tool(&tool, task.clone(), &arguments).await {
                    let mut result = tool_error(&denied);
                    add_hook_warnings(&mut result, call.take_warnings());
                    return Ok(result.into());
                }
                let response = self
                    .tool_router
                    .call(ToolCallContext::new(self, request, context))
                    .await;
                // Only complete results exist here: no tool asks the client for input.
                let is_error = !matches!(&response, Ok(CallToolResponse::Complete(r)) if r.is_error != Some(true));
                // A creation's task exists only now; a deleted task is gone.
                let task = match known {
                    Some(Tool::CreateTaskSandbox) if !is_error => self
                        .task_ref(None)
                        .ok()
                        .and_then(|t| self.service.resolve(Some(&t)).ok()),
                    _ => task.and_then(|t| self.service.resolve(Some(&t.id)).ok()),
                };
                self.service.after_tool(&tool, task, &arguments, is_error).await;
                let mut response = response?;
                if let CallToolResponse::Complete(result) = &mut response {
                    give_argument_errors_a_kind(result);
                    if let Some(kind) = error_kind(result) {
                        self.service.metrics().tool_error(kind);
                    }
                    add_hook_warnings(result, call.take_warnings());
                }
                Ok(response)
            })))
            .await;
        if let Err(e) = synced {
            tracing::error!(tool, error = %e, "cannot sync the call's events to disk");
            return Ok(tool_error(&Error::Store(e)).into());
        }
        response
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .enable_logging()
                .build(),
        )
        .with_server_info(
            Implementation::new("taskbox", env!("CARGO_PKG_VERSION")).with_title("taskbox task sandboxes"),
        )
        .with_instructions(INSTRUCTIONS)
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        context.peer.set_peer_info(request.clone());
        self.session.started.store(true, std::sync::atomic::Ordering::Relaxed);
        self.negotiate_initialize(&request)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(
            self.commands.iter().map(Command::to_prompt).collect(),
        ))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let command = self.commands.iter().find(|c| c.name == request.name).ok_or_else(|| {
            let names: Vec<&str> = self.commands.iter().map(|c| c.name.as_str()).collect();
            McpError::invalid_params(
                format!("no prompt '{}'; the prompts are: {}", request.name, names.join(", ")),
                None,
            )
        })?;
        let values = request
            .arguments
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map(String::from).unwrap_or_else(|| v.to_string())))
            .collect();
        Ok(command.render(&values)?.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.service.wait_recovered().await?;
        let page = self.service.list(&self.session.owner, None, 100, 0)?;
        Ok(ListResourcesResult::with_all_items(resources::listed(&page.tasks)))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(resources::templates()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.service.wait_recovered().await?;
        Ok(resources::read(&self.service, &self.session.owner, &request.uri)?.into())
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.session.log_level.set(request.level);
        Ok(())
    }
}
