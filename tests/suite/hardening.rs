//! The container a task gets, as Docker reports it: hardened defaults, labels, limits and a
//! network of its own; and a half-way failure leaves nothing behind.

use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn containers_are_hardened_and_labelled() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "hardening-test").await;
    let task = create(&client, "hard").await;
    let id = task["id"].as_str().unwrap();
    let inspect = docker_inspect("container", task["container_id"].as_str().unwrap()).unwrap();
    let host = &inspect["HostConfig"];

    assert_eq!(host["Privileged"], false);
    assert_eq!(host["CapDrop"], json!(["ALL"]));
    assert_eq!(
        host["CapAdd"],
        json!(["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"])
    );
    assert_eq!(host["SecurityOpt"], json!(["no-new-privileges"]));
    assert_eq!(host["Init"], true);
    assert_eq!(host["Memory"], 2048 * 1024 * 1024_i64);
    assert_eq!(host["MemorySwap"], 2048 * 1024 * 1024_i64);
    assert_eq!(host["NanoCpus"], 2_000_000_000_i64);
    assert_eq!(host["PidsLimit"], 512);
    assert_eq!(host["PidMode"], "");
    assert_eq!(host["IpcMode"], "private");
    let network = task["network_name"].as_str().unwrap();
    assert_eq!(host["NetworkMode"], network);
    // The mounts are the workspace, the supervisor (read-only) and the task's run directory.
    let binds: Vec<&str> = host["Binds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    let expected = [
        format!("{}:/workspace", home.path().join("workspaces").join(id).display()),
        format!(
            "{}:/.taskbox/bin/supervise:ro",
            home.path().join("bin/supervise").display()
        ),
        format!(
            "{}:/.taskbox/run",
            home.path().join("tasks").join(id).join("run").display()
        ),
    ];
    assert_eq!(binds, expected.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(inspect["Mounts"].as_array().unwrap().len(), 3);
    // Root in the container can neither change, remove nor remount the supervisor.
    let r = call(
        &client,
        "execute_in_task",
        json!({
            "task": "hard", "user": "root",
            "command": "echo x > /.taskbox/bin/supervise; rm -f /.taskbox/bin/supervise; \
                        mount -o remount,rw /.taskbox/bin/supervise; wc -c < /.taskbox/bin/supervise",
        }),
    )
    .await;
    let host_copy = std::fs::read(home.path().join("bin/supervise")).unwrap();
    assert!(host_copy.starts_with(b"\x7fELF"), "the host's copy was changed");
    assert_eq!(r["stdout"], format!("{}\n", host_copy.len()), "{r}");

    let labels = &inspect["Config"]["Labels"];
    assert_eq!(labels["taskbox.task-id"], id);
    assert_eq!(labels["taskbox.task-name"], "hard");
    assert_eq!(labels["taskbox.home"], home.path().display().to_string());
    let net = docker_inspect("network", network).unwrap();
    assert_eq!(net["Labels"]["taskbox.task-id"], id);
    assert_eq!(net["Driver"], "bridge");

    // Inside: commands run unprivileged, and no-new-privileges holds.
    let r = exec(
        &client,
        "hard",
        "id -u; grep NoNewPrivs /proc/self/status; grep CapEff /proc/self/status",
    )
    .await;
    assert_eq!(r["stdout"], "1000\nNoNewPrivs:\t1\nCapEff:\t0000000000000000\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_cannot_reach_each_other() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "isolation-test").await;
    let a = create(&client, "net-a").await;
    create(&client, "net-b").await;
    let a_inspect = docker_inspect("container", a["container_id"].as_str().unwrap()).unwrap();
    let a_ip = a_inspect["NetworkSettings"]["Networks"][a["network_name"].as_str().unwrap()]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!a_ip.is_empty());
    // A listens on a port (perl-base's IO::Socket is in every Debian image).
    // In the background: a foreground command's leftover processes end with it.
    let listen = "perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die; while ($c = $s->accept) { print $c \"hi\\n\"; close $c }'";
    call(
        &client,
        "execute_in_task",
        serde_json::json!({ "task": "net-a", "command": listen, "background": true }),
    )
    .await;
    let probe = format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{a_ip}/8080 && head -n1 <&3' 2>/dev/null; echo rc=$?");
    // A reaches its own listener (so the probe works; the listener may take a moment to
    // come up on a loaded machine) ...
    let mut r = exec(&client, "net-a", &probe).await;
    for _ in 0..20 {
        if r["stdout"] == "hi\nrc=0\n" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        r = exec(&client, "net-a", &probe).await;
    }
    assert_eq!(r["stdout"], "hi\nrc=0\n");
    // ... and B, on another task's network, cannot.
    let r = exec(&client, "net-b", &probe).await;
    let out = r["stdout"].as_str().unwrap();
    assert!(!out.contains("rc=0") && !out.contains("hi"), "B reached A: {out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_creation_leaves_nothing_behind() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "rollback-test").await;
    // An image that exists but cannot run the keep-alive command: the container is created,
    // then fails to start, after the row, files, workspace and network were made.
    let scratch = std::process::Command::new("sh")
        .args([
            "-c",
            "tar cv --files-from /dev/null | docker import - taskbox-test-empty:latest",
        ])
        .output()
        .unwrap();
    assert!(scratch.status.success());
    let (kind, message) = call_err(
        &client,
        "create_task_sandbox",
        json!({ "name": "broken", "image": "taskbox-test-empty" }),
    )
    .await;
    // The init process starts and then finds no `sleep`: Docker refuses the start, or the
    // container is gone by the time it is prepared, whichever comes first.
    assert!(
        matches!(kind.as_str(), "docker_error" | "container_command_failed"),
        "{kind}: {message}"
    );

    let list = call(&client, "list_tasks", json!({})).await;
    assert_eq!(list["total"], 0, "a registry row was left behind");
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &home.label_filter()]),
        "",
        "a container was left behind"
    );
    assert_eq!(
        docker(&["network", "ls", "-q", "--filter", &home.label_filter()]),
        "",
        "a network was left behind"
    );
    assert_eq!(std::fs::read_dir(home.path().join("workspaces")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(home.path().join("tasks")).unwrap().count(), 0);

    // The name is free again.
    let task = create(&client, "broken").await;
    assert_eq!(task["status"], "running");

    // An image that does not exist fails before anything is made, with a next step.
    let (kind, message) = call_err(
        &client,
        "create_task_sandbox",
        json!({ "name": "ghost", "image": "no-such-image:1" }),
    )
    .await;
    assert_eq!(kind, "docker_error");
    assert!(message.contains("pull or build it first"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn more_egress_tasks_than_dockers_default_pools_hold() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "pool-test").await;
    // Docker's default address pools hold about 31 bridge networks; taskbox carves /28s out
    // of its own pool instead, so this many tasks with a network each must all start.
    let mut subnets = std::collections::BTreeSet::new();
    for i in 0..35 {
        let task = create(&client, &format!("pool-{i}")).await;
        let net = docker_inspect("network", task["network_name"].as_str().unwrap()).unwrap();
        let subnet = net["IPAM"]["Config"][0]["Subnet"].as_str().unwrap().to_string();
        assert!(subnet.starts_with("10.213.") && subnet.ends_with("/28"), "{subnet}");
        subnets.insert(subnet);
    }
    assert_eq!(subnets.len(), 35, "subnets must be distinct");
    let r = exec(&client, "pool-34", "ls /sys/class/net | sort | tr '\\n' ' '").await;
    assert_eq!(r["stdout"], "eth0 lo ");
    for i in 0..35 {
        call(
            &client,
            "delete_task",
            json!({ "task": format!("pool-{i}"), "confirm": true }),
        )
        .await;
    }
    assert_eq!(docker(&["network", "ls", "-q", "--filter", &home.label_filter()]), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn root_can_install_packages_over_egress() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "egress-test").await;
    create(&client, "egress").await;
    // apt drops to its _apt user and chowns its files: the capabilities added back after
    // cap_drop ALL are what make this work, and the task's own network reaches the mirror.
    let r = call(
        &client,
        "execute_in_task",
        json!({
            "command": "apt-get update -qq && apt-get install -y -qq --no-install-recommends jq >/dev/null && jq --version",
            "user": "root",
            "timeout_s": 600, "yield_after_s": 0,
        }),
    )
    .await;
    assert_eq!(r["exit_code"], 0, "{r}");
    assert!(r["stdout"].as_str().unwrap().starts_with("jq-"), "{r}");
    // The unprivileged user cannot.
    let r = exec(&client, "egress", "apt-get install -y jq 2>&1; echo rc=$?").await;
    assert!(r["stdout"].as_str().unwrap().contains("Permission denied"), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn developer_image_has_its_toolchains() {
    require!(docker);
    require!(
        docker_inspect("image", "taskbox-developer"),
        "the taskbox-developer image is not built",
        "taskbox images build developer; scripts/test.sh builds it"
    );
    let home = Home::new();
    let client = connect(&home.path(), "developer-test").await;
    call(
        &client,
        "create_task_sandbox",
        json!({ "name": "dev", "image": "taskbox-developer", "network": "none" }),
    )
    .await;
    let r = exec(
        &client,
        "dev",
        "set -e; for t in gcc make python3 pip3 node npm rg jq git; do command -v $t >/dev/null || echo missing $t; done; \
         python3 -m venv /tmp/venv && echo venv-ok; id -un",
    )
    .await;
    assert_eq!(r["stdout"], "venv-ok\nagent\n", "{r}");
}

/// `[container] runtime = "runsc"` runs tasks under gVisor: commands, files, checkpoints and
/// restores work; the container's kernel is gVisor's, not the host's. Registered as on this
/// machine (`--network=none`, which gVisor's own networking needs here), an egress task is
/// refused with what to do instead.
#[tokio::test(flavor = "multi_thread")]
async fn tasks_run_under_gvisor_when_configured() {
    require!(docker);
    let registered = docker(&["info", "--format", "{{json .Runtimes}}"]).contains("\"runsc\"");
    require!(
        registered.then_some(()),
        "runsc is not registered with dockerd",
        "install the runsc package and run scripts/provision-docker.sh (scripts/test.sh does both)"
    );
    let home = Home::new();
    write_config(&home.path(), "[container]\nruntime = \"runsc\"\n");
    let client = connect(&home.path(), "gvisor").await;

    let (kind, message) = call_err(
        &client,
        "create_task_sandbox",
        json!({ "name": "wants-net", "network": "egress" }),
    )
    .await;
    assert_eq!(kind, "invalid_argument", "{message}");
    assert!(
        message.contains("--network=none") && message.contains("\"none\""),
        "{message}"
    );

    let task = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "sandboxed", "network": "none" }),
    )
    .await["task"]
        .clone();
    let container = task["container_id"].as_str().unwrap();
    let inspect = docker_inspect("container", container).unwrap();
    assert_eq!(inspect["HostConfig"]["Runtime"], "runsc");
    // gVisor's Sentry answers with its own kernel version, never the host's.
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let r = exec(
        &client,
        "sandboxed",
        "uname -r; echo hello > /workspace/f; cat /workspace/f",
    )
    .await;
    let out = r["stdout"].as_str().unwrap();
    assert!(!out.contains(host_kernel.trim()), "{out}");
    assert!(out.ends_with("hello\n"), "{out}");

    // Background executions need runc: refused with what to do instead.
    let (kind, message) = call_err(
        &client,
        "execute_in_task",
        json!({ "task": "sandboxed", "command": "true", "background": true }),
    )
    .await;
    assert_eq!(kind, "invalid_argument", "{message}");
    assert!(message.contains("runc"), "{message}");

    let checkpoint = call(&client, "create_checkpoint", json!({})).await["checkpoint"].clone();
    exec(&client, "sandboxed", "rm /workspace/f").await;
    call(&client, "restore_checkpoint", json!({ "checkpoint": checkpoint["id"] })).await;
    let r = exec(&client, "sandboxed", "cat /workspace/f").await;
    assert_eq!(r["stdout"], "hello\n");
    let restored = call(&client, "get_task_status", json!({})).await["container"]["id"].clone();
    let inspect = docker_inspect("container", restored.as_str().unwrap()).unwrap();
    assert_eq!(
        inspect["HostConfig"]["Runtime"], "runsc",
        "a restored container keeps the runtime"
    );
}
