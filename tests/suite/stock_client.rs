//! A stock MCP client, the Python `mcp` package, drives the real binary: create a task, run
//! `uname -a`, delete it. scripts/test.sh provides the interpreter in TASKBOX_TEST_PYTHON;
//! under CI=true a missing interpreter fails the test rather than skipping it.

use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::Value;

#[test]
fn python_mcp_client_creates_runs_uname_and_deletes() {
    require!(docker);
    let python = require!(env "TASKBOX_TEST_PYTHON");
    let home = Home::new();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/python_smoke.py");
    let out = std::process::Command::new(python)
        .args([script, BIN, "py-smoke"])
        .current_dir(home.path())
        .env("TASKBOX_HOME", home.path())
        .env("TASKBOX_CONFIG", home.path().join("config.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["initialize", "list_tools", "create", "uname", "delete"]);
    assert_eq!(steps[0]["server"], "taskbox");
    assert_eq!(steps[2]["status"], "running");
    assert_eq!(steps[3]["exit_code"], 0);
    assert!(
        steps[3]["stdout"].as_str().unwrap().starts_with("Linux "),
        "{}",
        steps[3]
    );
    assert!(steps[4]["deleted"].as_str().unwrap().starts_with("t-"));
    assert_eq!(docker(&["ps", "-aq", "--filter", &home.label_filter()]), "");
}
