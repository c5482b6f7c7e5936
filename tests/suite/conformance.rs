//! The official MCP conformance suite (`@modelcontextprotocol/conformance`) against
//! `taskbox serve --http --no-auth`: the server scenarios that apply to a server without the
//! suite's fixture tools. scripts/test.sh installs Node 22 and the suite and passes them in
//! TASKBOX_TEST_NODE and TASKBOX_TEST_CONFORMANCE (and the pre-release with the sessionless
//! 2026-07-28 scenarios in TASKBOX_TEST_CONFORMANCE_2026); under CI=true their absence fails
//! the test.

use std::process::Command;

use crate::common::Home;
use crate::common::http::HttpServer;
use pretty_assertions::assert_eq;

const SCENARIOS: [&str; 7] = [
    "server-initialize",
    "ping",
    "logging-set-level",
    "tools-list",
    "prompts-list",
    "resources-list",
    "dns-rebinding-protection",
];

/// The 2026-07-28 scenarios. `server-stateless` has four checks that need the suite's
/// diagnostic tools (`test_missing_capability`, …), which a real server does not offer: they
/// report themselves untestable, and only those may fail.
const SCENARIOS_2026: [&str; 4] = [
    "server-stateless",
    "http-header-validation",
    "caching",
    "sep-2164-resource-not-found",
];

/// Runs one scenario with `--verbose` and returns (how many checks it reported, the checks
/// that failed for a reason other than a missing fixture tool, its output).
fn run_scenario(
    node: &std::ffi::OsStr,
    suite: &std::ffi::OsStr,
    url: &str,
    scenario: &str,
) -> (usize, Vec<String>, String) {
    let out = Command::new(node)
        .arg(suite)
        .args(["server", "--url", url, "--scenario", scenario, "--verbose"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // The verbose report is a JSON array of checks, pretty-printed: each check starts at an
    // indent of two and its status is at four. (Read as text: some checks nest their details
    // deeper than serde_json's recursion limit.)
    let checks: Vec<&str> = stdout.split("\n  {\n").skip(1).collect();
    let reported = checks.len();
    let failed = checks
        .into_iter()
        .filter(|c| c.contains("\n    \"status\": \"FAILURE\"") && !c.contains("\"untestable\": true"))
        .map(|c| c.lines().next().unwrap_or_default().trim().to_string())
        .collect();
    (reported, failed, stdout)
}

#[test]
fn the_sessionless_2026_07_28_scenarios_pass() {
    let node = require!(env "TASKBOX_TEST_NODE");
    let suite = require!(env "TASKBOX_TEST_CONFORMANCE_2026");
    let home = Home::new();
    let server = HttpServer::start(&home.path(), &["--no-auth"]);
    let mut failures = Vec::new();
    for scenario in SCENARIOS_2026 {
        let (reported, failed, stdout) = run_scenario(&node, &suite, &server.mcp_url(), scenario);
        eprintln!("{scenario}: {reported} checks, {} failed", failed.len());
        if reported == 0 || !failed.is_empty() {
            failures.push(format!("{scenario}: {failed:#?}\n{stdout}"));
        }
    }
    assert_eq!(failures, Vec::<String>::new(), "server log:\n{}", server.log());
}

#[test]
fn conformance_suite_scenarios_pass_over_streamable_http() {
    let node = require!(env "TASKBOX_TEST_NODE");
    let suite = require!(env "TASKBOX_TEST_CONFORMANCE");
    let home = Home::new();
    let server = HttpServer::start(&home.path(), &["--no-auth"]);
    let mut failures = Vec::new();
    for scenario in SCENARIOS {
        let out = Command::new(&node)
            .arg(&suite)
            .args(["server", "--url", &server.mcp_url(), "--scenario", scenario])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary = stdout
            .lines()
            .find(|l| l.starts_with("Passed: "))
            .unwrap_or_default()
            .to_string();
        eprintln!("{scenario}: {summary}");
        if !out.status.success() || !summary.contains(" 0 failed") {
            failures.push(format!(
                "{scenario} ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert_eq!(failures, Vec::<String>::new(), "server log:\n{}", server.log());
}
