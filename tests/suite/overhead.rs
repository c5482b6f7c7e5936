//! Per-command overhead (issue 15): what a command costs the server beyond Docker's own exec.
//! The container's state before each command comes from Docker's event stream rather than an
//! inspection, and a tool call's event lines are synced to disk once, before its reply.

use serde_json::{Value, json};

use crate::common::docker_proxy::DockerProxy;
use crate::common::*;

/// A server on `home` whose Docker requests pass the returned proxy, which counts them.
async fn through_proxy(home: &Home) -> (DockerProxy, Client) {
    let proxy = DockerProxy::start();
    let client = connect_with_env(&home.path(), "overhead-test", &[("DOCKER_HOST", &proxy.docker_host())]).await;
    (proxy, client)
}

fn warnings(result: &Value) -> String {
    result["hook_warnings"].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_use_the_followed_container_state_until_docker_reports_a_change() {
    require!(docker);
    let home = Home::new();
    let (proxy, client) = through_proxy(&home).await;
    let task = create(&client, "steady").await;
    let container = task["container_id"].as_str().unwrap().to_string();
    let inspection = format!("/containers/{container}/json");
    let inspections = || proxy.requests_with(&["GET ", &inspection]);
    // The first command opens the event stream, which replays the last second (the
    // container's start among it): the state is followed from the next ones on.
    let mut settled = false;
    for _ in 0..10 {
        let seen = inspections();
        exec(&client, "steady", "true").await;
        if inspections() == seen {
            settled = true;
            break;
        }
    }
    assert!(settled, "the state is followed after a few commands");

    let before = inspections();
    for _ in 0..5 {
        assert_eq!(exec(&client, "steady", "echo hi").await["stdout"], "hi\n");
    }
    assert_eq!(
        inspections(),
        before,
        "nothing happened to the container: no inspection before the commands"
    );

    // Stopped behind taskbox's back: Docker's events say so, and the next command inspects it
    // and brings it back.
    docker(&["stop", "-t", "0", &container]);
    let r = exec(&client, "steady", "echo back").await;
    assert_eq!(r["stdout"], "back\n");
    assert!(warnings(&r).contains("started again"), "{r}");
    assert!(inspections() > before, "the change was seen");

    // A change of its limits (`docker update`) is an event too: the next command inspects
    // it again (the isolation check sees the container as it is).
    exec(&client, "steady", "true").await;
    let seen = inspections();
    exec(&client, "steady", "true").await;
    assert_eq!(inspections(), seen, "followed again after the revival");
    docker(&["update", "--pids-limit", "300", &container]);
    let wait = std::time::Instant::now();
    while inspections() == seen && wait.elapsed() < std::time::Duration::from_secs(10) {
        exec(&client, "steady", "true").await;
    }
    assert!(inspections() > seen, "an update drops the followed state");
}

/// A command that is not root takes its exit code from its supervisor's status file, and
/// Docker is not asked again (`GET /exec/<id>/json`); a root command, which can kill its
/// supervisor and forge that file, still gets its exit code (which decides whether what
/// escaped the supervisor is reaped) from Docker.
#[tokio::test(flavor = "multi_thread")]
async fn a_commands_exit_code_comes_from_its_supervisor_unless_it_ran_as_root() {
    require!(docker);
    let home = Home::new();
    let (proxy, client) = through_proxy(&home).await;
    create(&client, "codes").await;
    let exec_inspections = || proxy.requests_with(&["GET ", "/exec/", "/json"]);

    let before = exec_inspections();
    assert_eq!(exec(&client, "codes", "exit 3").await["exit_code"], 3);
    assert_eq!(exec(&client, "codes", "true").await["exit_code"], 0);
    // Ended by a signal: 128 + its number, as Docker reports the supervisor's exit.
    assert_eq!(exec(&client, "codes", "kill -TERM $$").await["exit_code"], 143);
    let r = exec(&client, "codes", "echo out; echo err >&2; exit 7").await;
    assert_eq!(
        (r["exit_code"].as_i64(), r["stdout"].as_str(), r["stderr"].as_str()),
        (Some(7), Some("out\n"), Some("err\n"))
    );
    assert_eq!(
        exec_inspections(),
        before,
        "no exec inspection for the agent's commands"
    );

    let root = |command: &str| json!({ "task": "codes", "command": command, "user": "root" });
    let r = call(&client, "execute_in_task", root("exit 4")).await;
    assert_eq!(r["exit_code"], 4);
    assert!(
        exec_inspections() > before,
        "a root command's exit code comes from Docker"
    );
}
