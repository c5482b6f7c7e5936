//! Slash commands as MCP prompts, through the real binary and rmcp's client: listed,
//! rendered with arguments, overridden from a config directory, and never naming a tool the
//! server does not have.

use std::collections::BTreeSet;

use crate::common::*;
use pretty_assertions::assert_eq;
use rmcp::model::GetPromptRequestParams;
use serde_json::{Value, json};

const COMMANDS: [&str; 14] = [
    "checkpoint",
    "cleanup-task",
    "complete-task",
    "create-task",
    "detach",
    "find-task",
    "list-tasks",
    "restore-checkpoint",
    "resume-task",
    "run-in-background",
    "task-decisions",
    "task-executions",
    "task-history",
    "task-stats",
];

async fn render(client: &Client, name: &str, args: Value) -> String {
    let mut params = GetPromptRequestParams::new(name);
    params.arguments = args.as_object().cloned();
    let result = client.get_prompt(params).await.unwrap();
    let message = serde_json::to_value(&result.messages[0]).unwrap();
    assert_eq!(message["role"], "user");
    message["content"]["text"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_is_a_prompt_and_renders_with_its_arguments() {
    let home = Home::new();
    let client = connect(&home.path(), "prompts-test").await;
    let prompts = client.list_all_prompts().await.unwrap();
    let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, COMMANDS);
    let create = prompts.iter().find(|p| p.name == "create-task").unwrap();
    let args: Vec<(String, Option<bool>)> = create
        .arguments
        .clone()
        .unwrap()
        .into_iter()
        .map(|a| (a.name, a.required))
        .collect();
    assert_eq!(
        args,
        [
            ("name".to_string(), Some(true)),
            ("description".to_string(), Some(false))
        ]
    );

    let text = render(
        &client,
        "create-task",
        json!({ "name": "fix-login", "description": "Fix the form" }),
    )
    .await;
    assert!(
        text.contains("`create_task_sandbox` with `name` \"fix-login\" and `description` \"Fix the form\""),
        "{text}"
    );
    assert!(!text.contains("{{"), "unsubstituted placeholder in {text}");

    // The long-running pattern: background, poll by cursor, answer prompts, kill.
    let text = render(
        &client,
        "run-in-background",
        json!({ "command": "npm run dev", "ready": "Local:" }),
    )
    .await;
    for step in [
        "background: true",
        "execution_output",
        "cursor",
        "send_input",
        "kill_execution",
        "Local:",
    ] {
        assert!(text.contains(step), "run-in-background does not mention {step}: {text}");
    }
    let text = render(&client, "checkpoint", json!({ "label": "tests pass" })).await;
    assert!(
        text.contains("`label` \"tests pass\"") && text.contains("(not given)"),
        "{text}"
    );

    // A missing required argument and an unknown prompt are clear errors.
    let mut params = GetPromptRequestParams::new("find-task");
    params.arguments = Some(serde_json::Map::new());
    let err = client.get_prompt(params).await.unwrap_err().to_string();
    assert!(err.contains("needs `query`"), "{err}");
    let err = client
        .get_prompt(GetPromptRequestParams::new("nope"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("create-task"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_name_only_tools_and_parameters_the_server_has() {
    let home = Home::new();
    let client = connect(&home.path(), "prompts-tools-test").await;
    let tools = client.list_all_tools().await.unwrap();
    let mut known: BTreeSet<String> = BTreeSet::new();
    for tool in &tools {
        known.insert(tool.name.to_string());
        if let Some(props) = tool.input_schema.get("properties").and_then(Value::as_object) {
            known.extend(props.keys().cloned());
        }
    }
    let mut checked = 0;
    for prompt in client.list_all_prompts().await.unwrap() {
        let args: serde_json::Map<String, Value> = prompt
            .arguments
            .unwrap_or_default()
            .into_iter()
            .map(|a| (a.name, json!("x")))
            .collect();
        let text = render(&client, &prompt.name, Value::Object(args)).await;
        // Every `snake_case` name in backticks is a tool or one of their parameters.
        for (i, quoted) in text.split('`').enumerate() {
            if i % 2 == 1 && quoted.contains('_') && quoted.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                assert!(
                    known.contains(quoted),
                    "/{} names `{quoted}`, which the server does not have",
                    prompt.name
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 30,
        "only {checked} tool references found: the check is not looking"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_directory_overrides_and_adds_commands() {
    let home = Home::new();
    let dir = home.path().join("my-commands");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("checkpoint.md"),
        "---\ndescription: Our checkpoint\n---\nCall `create_checkpoint`.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("standup.md"),
        "---\ndescription: Daily summary\n---\nCall `task_stats`.\n",
    )
    .unwrap();
    write_config(&home.path(), &format!("[commands]\ndir = \"{}\"\n", dir.display()));
    let client = connect(&home.path(), "prompts-dir-test").await;
    let prompts = client.list_all_prompts().await.unwrap();
    assert_eq!(prompts.len(), COMMANDS.len() + 1);
    assert_eq!(
        prompts
            .iter()
            .find(|p| p.name == "checkpoint")
            .unwrap()
            .description
            .as_deref(),
        Some("Our checkpoint")
    );
    assert_eq!(render(&client, "standup", json!({})).await, "Call `task_stats`.");
}
