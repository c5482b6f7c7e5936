//! The official MCP conformance suite (`@modelcontextprotocol/conformance`) against
//! `taskbox serve --http --no-auth`: the server scenarios that apply to a server without the
//! suite's fixture tools. scripts/test.sh installs Node 22 and the suite and passes them in
//! TASKBOX_TEST_NODE and TASKBOX_TEST_CONFORMANCE; under CI=true their absence fails the test.

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
