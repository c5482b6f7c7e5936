//! The table of tools: every tool the server offers, with its wire name spelled once.
//! rmcp's `#[tool]` names a tool after its handler fn; code that needs a name as data
//! (the dispatcher, hook scopes, the event log, the plan hooks, file operations) takes it from
//! here. It lives at the bottom so that every layer can; `mcp::tools::table` checks that the
//! table and the router list the same tools.

macro_rules! tools {
    ($($variant:ident => $name:literal,)*) => {
        /// A tool of the server.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Tool {
            $($variant,)*
        }

        impl Tool {
            pub const ALL: &[Tool] = &[$(Tool::$variant,)*];

            /// The name clients call the tool by.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Tool::$variant => $name,)*
                }
            }
        }
    };
}

tools! {
    CreateTaskSandbox => "create_task_sandbox",
    ListTasks => "list_tasks",
    GetTaskStatus => "get_task_status",
    StopTask => "stop_task",
    CompleteTask => "complete_task",
    CleanupTask => "cleanup_task",
    ResumeTask => "resume_task",
    DeleteTask => "delete_task",
    AddTaskSecret => "add_task_secret",
    AttachAgentToTask => "attach_agent_to_task",
    DetachAgentFromTask => "detach_agent_from_task",
    ExecuteInTask => "execute_in_task",
    ExecutionOutput => "execution_output",
    SendInput => "send_input",
    KillExecution => "kill_execution",
    ExposePort => "expose_port",
    ListPorts => "list_ports",
    ReadFile => "read_file",
    WriteFile => "write_file",
    EditFile => "edit_file",
    ListFiles => "list_files",
    CreateCheckpoint => "create_checkpoint",
    ListCheckpoints => "list_checkpoints",
    RestoreCheckpoint => "restore_checkpoint",
    TaskDiff => "task_diff",
    TaskHistory => "task_history",
    TaskExecutions => "task_executions",
    RecordDecision => "record_decision",
    TaskDecisions => "task_decisions",
    FindTask => "find_task",
    TaskStats => "task_stats",
}

impl Tool {
    /// The tool a client's call names; `None` for a name the server does not have.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|tool| tool.as_str() == name)
    }
}
