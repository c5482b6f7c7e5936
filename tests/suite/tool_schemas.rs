//! Locks the public tool contract (DESIGN.md §7): names, descriptions, input schemas and
//! annotations, as a real client lists them. A change here is a change to the contract:
//! update the snapshot with `UPDATE_SNAPSHOTS=1 cargo test --test tool_schemas` and note the
//! change in docs/tools.md.

use crate::common::*;
use pretty_assertions::assert_eq;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/tools.json");

#[tokio::test(flavor = "multi_thread")]
async fn tool_list_matches_the_snapshot() {
    let home = Home::new();
    let client = connect(&home.path(), "schema-test").await;
    let mut tools = client.list_all_tools().await.unwrap();
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    let actual = serde_json::to_string_pretty(&tools).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    assert_eq!(expected, actual, "tool contract changed; see the module comment");

    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "add_task_secret",
            "attach_agent_to_task",
            "cleanup_task",
            "complete_task",
            "create_checkpoint",
            "create_task_sandbox",
            "delete_task",
            "detach_agent_from_task",
            "edit_file",
            "execute_in_task",
            "execution_output",
            "expose_port",
            "find_task",
            "get_task_status",
            "kill_execution",
            "list_checkpoints",
            "list_files",
            "list_ports",
            "list_tasks",
            "read_file",
            "record_decision",
            "restore_checkpoint",
            "resume_task",
            "send_input",
            "stop_task",
            "task_decisions",
            "task_diff",
            "task_executions",
            "task_history",
            "task_stats",
            "write_file",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_identifies_itself_and_teaches_the_workflow() {
    let home = Home::new();
    let client = connect(&home.path(), "info-test").await;
    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "taskbox");
    let instructions = info.instructions.clone().unwrap();
    for step in [
        "create_task_sandbox",
        "execute_in_task",
        "stop_task",
        "attach_agent_to_task",
        "background: true",
        "execution_output",
        "send_input",
        "kill_execution",
        "waiting_for_input",
        "yielded: true",
    ] {
        assert!(instructions.contains(step), "instructions do not mention {step}");
    }
    assert!(info.capabilities.tools.is_some());
    assert!(info.capabilities.prompts.is_some());
    #[allow(deprecated)]
    {
        assert!(info.capabilities.logging.is_some());
        // logging/setLevel is answered (the MCP Inspector calls it before anything else).
        client
            .set_level(rmcp::model::SetLevelRequestParams::new(
                rmcp::model::LoggingLevel::Debug,
            ))
            .await
            .unwrap();
    }
}

/// A misspelt argument is refused with the tool's arguments named, so the agent can correct
/// it (the shared parameter types in mcp/tools/params.rs are plain fields for this reason).
#[tokio::test(flavor = "multi_thread")]
async fn unknown_arguments_are_refused_naming_the_known_ones() {
    let home = Home::new();
    let client = connect(&home.path(), "arguments-test").await;
    let result = call_raw(&client, "get_task_status", serde_json::json!({ "tsak": "x" })).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        text(&result).contains("unknown field `tsak`, expected `task`"),
        "{}",
        text(&result)
    );
}
