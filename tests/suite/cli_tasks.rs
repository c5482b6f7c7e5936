//! The task commands for people, by their output: `taskbox ls`, `show`, `exec`, `diff`,
//! `checkpoint`, `restore`, `stop`, `resume`, `rm` against tasks an agent made.

use std::path::Path;
use std::process::{Command as StdCommand, Output};

use crate::common::*;
use serde_json::Value;

fn taskbox(home: &Path, args: &[&str]) -> Output {
    StdCommand::new(BIN)
        .args(args)
        .env("TASKBOX_HOME", home)
        .env("TASKBOX_CONFIG", home.join("config.toml"))
        .env("COLUMNS", "120")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = taskbox(home, args);
    assert!(
        out.status.success(),
        "taskbox {args:?}: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn people_list_inspect_run_and_remove_tasks_from_the_command_line() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "cli-setup").await;
    create(&client, "cli-one").await;
    client.cancel().await.unwrap();
    let home = home.path();

    let listed: Value = serde_json::from_str(&ok(&home, &["ls", "--json"])).unwrap();
    assert_eq!(listed[0]["name"], "cli-one");
    let table = ok(&home, &["ls"]);
    assert!(
        table.starts_with("NAME") && table.contains("cli-one") && table.contains("running"),
        "{table}"
    );
    assert!(!table.contains('\x1b'), "no colour when not on a terminal: {table:?}");

    let ran = taskbox(
        &home,
        &[
            "exec",
            "cli-one",
            "--",
            "sh",
            "-c",
            "echo 'hi there' > /workspace/f; cat /workspace/f; exit 3",
        ],
    );
    assert_eq!(ran.status.code(), Some(3), "the exit code passes through");
    assert_eq!(stdout(&ran), "hi there\n");

    let shown: Value = serde_json::from_str(&ok(&home, &["show", "cli-one", "--json"])).unwrap();
    assert_eq!(shown["executions"]["total"], 1, "{shown}");
    assert!(ok(&home, &["show", "cli-one"]).contains("status     running"));

    let made = ok(&home, &["checkpoint", "cli-one", "--label", "before"]);
    // "checkpoint cli-one:N (c-…)"
    let reference = made.split_whitespace().nth(1).unwrap().to_string();
    assert!(reference.starts_with("cli-one:"), "{made}");
    assert!(ok(&home, &["diff", "cli-one"]).contains("+hi there"));
    ok(&home, &["exec", "cli-one", "--", "rm", "/workspace/f"]);
    assert!(ok(&home, &["restore", &reference]).contains(&format!("restored {reference}")));
    assert_eq!(
        ok(&home, &["exec", "cli-one", "--", "cat", "/workspace/f"]),
        "hi there\n"
    );

    assert!(ok(&home, &["stop", "cli-one"]).contains("stopped"));
    assert!(ok(&home, &["resume", "cli-one"]).contains("running"));

    let refused = taskbox(&home, &["rm", "cli-one"]);
    assert!(!refused.status.success(), "rm without --yes off a terminal must refuse");
    ok(&home, &["rm", "cli-one", "--yes"]);
    let gone = taskbox(&home, &["show", "cli-one"]);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("no task named"),
        "{gone:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_say_what_to_do_and_exec_keeps_taskboxs_own_exit_codes_apart() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "cli-errors").await;
    create(&client, "cli-codes").await;
    client.cancel().await.unwrap();
    let home = home.path();

    // An unknown task: the next step is a command, not an agent's tool; nothing on stdout.
    for args in [
        &["show", "nope"][..],
        &["diff", "nope"],
        &["restore", "nope:1"],
        &["exec", "nope", "--", "true"],
    ] {
        let out = taskbox(&home, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("no task named or with id 'nope'; `taskbox ls --all` lists your tasks"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("list_tasks"), "{args:?}: {stderr}");
        assert_eq!(stdout(&out), "", "{args:?}");
        // exec's own failures are 125, apart from the command's statuses.
        let expected = if args[0] == "exec" { 125 } else { 1 };
        assert_eq!(out.status.code(), Some(expected), "{args:?}: {stderr}");
    }

    // A command that times out: 124, as timeout(1) says.
    let out = taskbox(&home, &["exec", "cli-codes", "--timeout", "1", "--", "sleep", "30"]);
    assert_eq!(out.status.code(), Some(124), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"));
}
