//! Networks whose TLS passes a re-signing proxy (this build machine's does): an egress task
//! trusts the host's certificates, so HTTPS package managers work in it as they do on the
//! host (docs/security.md, "Egress"). Needs the package registries this machine reaches.

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn pip_and_npm_install_over_https_in_an_egress_task() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "tls-trust").await;
    call(
        &client,
        "create_task_sandbox",
        json!({ "name": "installs", "image": "taskbox-developer", "network": "egress" }),
    )
    .await;
    let run = |command: &'static str| {
        let client = &client;
        async move {
            let r = call(
                client,
                "execute_in_task",
                json!({ "task": "installs", "command": command, "timeout_s": 600, "yield_after_s": 0 }),
            )
            .await;
            assert_eq!(r["exit_code"], 0, "{command}: {r}");
            r
        }
    };
    run("python3 -m venv /tmp/venv && /tmp/venv/bin/pip install --no-cache-dir six").await;
    let r = run("/tmp/venv/bin/python -c 'import six; print(six.__version__)'").await;
    assert!(!r["stdout"].as_str().unwrap().trim().is_empty());
    run("mkdir -p /tmp/n && cd /tmp/n && npm install --no-audit --no-fund is-number").await;
    run("test -f /tmp/n/node_modules/is-number/package.json").await;

    // The trust comes from taskbox: the same image in a plain container (no certificates
    // added) cannot install, on a machine behind a re-signing proxy such as this one.
    let plain = std::process::Command::new("docker")
        .args(["run", "--rm", "taskbox-developer", "sh", "-c"])
        .arg("python3 -m venv /tmp/v && /tmp/v/bin/pip install --no-cache-dir --retries 0 --timeout 20 idna")
        .output()
        .unwrap();
    if plain.status.success() {
        // A network without a re-signing proxy: the installs above pass either way.
        eprintln!("tls_trust: pip works in a plain container here, so the control shows nothing on this machine");
    }
}
