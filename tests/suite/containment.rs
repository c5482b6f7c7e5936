//! Containment (docs/security.md): what an agent in a task, or another owner over HTTP, must
//! not reach. Each test attacks through the real binary and real Docker, with a control that
//! shows the attack would work if the guarantee were missing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::common::http::*;
use crate::common::*;
use serde_json::{Value, json};

/// `bash` in the task tries a TCP connection; the reply's text says how it went.
async fn connect_from(client: &Client, task: &str, address: &str, port: u16) -> String {
    let probe =
        format!("timeout 5 bash -c 'exec 3<>/dev/tcp/{address}/{port}' 2>&1 && echo CONNECTED || echo \"FAILED $?\"");
    let r = exec(client, task, &probe).await;
    format!(
        "{}{}",
        r["stdout"].as_str().unwrap_or(""),
        r["stderr"].as_str().unwrap_or("")
    )
}

/// The host firewall rules taskbox installs for one subnet pool, deleted when dropped (and at
/// creation, so the server under test must put them back itself). Each test that touches the
/// rules has a pool of its own: the rules are shared by every server on the host, and deleting
/// the default pool's would open the host to other suites' tasks until their servers recheck
/// (a concurrent run once saw "metadata address: CONNECTED" that way).
struct PoolRules {
    pool: String,
}

impl PoolRules {
    /// A /16 no other test uses, varied by process so two suites on one host differ too.
    fn own() -> Self {
        let second = 200 + std::process::id() % 12;
        let rules = PoolRules {
            pool: format!("10.{second}.0.0/16"),
        };
        rules.remove();
        rules
    }

    fn config(&self) -> String {
        format!("[network]\nsubnet_pool = \"{}\"\n", self.pool)
    }

    fn remove(&self) {
        let marker = format!("taskbox {}: ", self.pool);
        for chain in ["INPUT", "DOCKER-USER"] {
            let out = std::process::Command::new("iptables")
                .args(["-w", "-S", chain])
                .output()
                .unwrap();
            for rule in String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(&marker))
            {
                // `-A CHAIN args…` becomes `-D CHAIN args…`, through a shell for the quoted comment
                // (whose `'` iptables prints as `\\'`, which a shell keeps inside double quotes).
                let delete = format!("iptables -w -D {}", rule.trim_start_matches("-A ").replace("\\'", "'"));
                std::process::Command::new("sh").args(["-c", &delete]).status().unwrap();
            }
        }
    }
}

impl Drop for PoolRules {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The bridge's address on the host: the network's gateway, or the first address of its subnet
/// when Docker does not report one.
fn gateway_of(network: &Value) -> String {
    let config = &network["IPAM"]["Config"][0];
    if let Some(gateway) = config["Gateway"].as_str() {
        return gateway.to_string();
    }
    let subnet = config["Subnet"].as_str().unwrap();
    let base: std::net::Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
    std::net::Ipv4Addr::from(u32::from(base) + 1).to_string()
}

fn network_of(task: &Value) -> Value {
    let id = task["id"].as_str().unwrap();
    docker_inspect("network", &format!("taskbox-{id}")).unwrap()
}

/// Tasks reach neither the host (a listener on their bridge gateway), nor another task's
/// network, nor link-local metadata addresses. Controls: the host itself reaches the same
/// listener, and the other task reaches its own listener.
#[tokio::test(flavor = "multi_thread")]
async fn task_networks_reach_neither_the_host_nor_other_tasks_nor_metadata() {
    require!(docker);
    let rules = PoolRules::own();
    let home = Home::new();
    write_config(&home.path(), &rules.config());
    let client = connect(&home.path(), "containment-net").await;
    let a = create(&client, "net-a").await;
    let b = create(&client, "net-b").await;

    // A service on the host, on a's gateway address.
    let gateway = gateway_of(&network_of(&a));
    let prefix = rules.pool.trim_end_matches("0.0/16");
    assert!(
        gateway.starts_with(prefix),
        "a's network {gateway} lies in the test's pool {}",
        rules.pool
    );
    let listener = std::net::TcpListener::bind((gateway.as_str(), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    assert!(
        std::net::TcpStream::connect((gateway.as_str(), port)).is_ok(),
        "control: the host reaches it"
    );
    let seen = connect_from(&client, "net-a", &gateway, port).await;
    assert!(
        seen.contains("refused") && !seen.contains("CONNECTED"),
        "the host's gateway answered a task: {seen}"
    );

    // A service in task b, listening for 20 s.
    let b_id = b["id"].as_str().unwrap();
    let b_ip = docker_inspect("container", b["container_id"].as_str().unwrap()).unwrap()["NetworkSettings"]["Networks"]
        [format!("taskbox-{b_id}")]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let listen = "perl -MIO::Socket::INET -e 'alarm 20; my $s = IO::Socket::INET->new(LocalPort => 8080, \
                  Listen => 5, ReuseAddr => 1) or die $!; while (my $c = $s->accept) { print $c \"hi\\n\"; close $c }' \
                  & sleep 1; timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080' && echo SELF-OK; wait";
    let server = {
        let client = connect(&home.path(), "containment-net-b").await;
        tokio::spawn(async move {
            let r = call(
                &client,
                "execute_in_task",
                json!({ "task": "net-b", "command": listen, "timeout_s": 60 }),
            )
            .await;
            client.cancel().await.unwrap();
            r
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = connect_from(&client, "net-a", &b_ip, 8080).await;
    assert!(
        seen.contains("refused") && !seen.contains("CONNECTED"),
        "task a reached task b: {seen}"
    );
    let served = server.await.unwrap();
    assert!(
        served["stdout"].as_str().unwrap().contains("SELF-OK"),
        "control: b's listener ran: {served}"
    );

    // Link-local (the cloud metadata address): refused at once, not left to time out.
    let seen = connect_from(&client, "net-a", "169.254.169.254", 80).await;
    assert!(seen.contains("refused"), "metadata address: {seen}");
}

/// Over HTTP, owner bob cannot start a container from alice's checkpoint image, by its tag or
/// by a prefix of its id, nor from an image that is not on the allowlist; the allowed image by
/// name works.
#[tokio::test(flavor = "multi_thread")]
async fn tenants_cannot_start_other_owners_images() {
    require!(docker);
    let home = Home::new();
    let server = HttpServer::start(&home.path(), &[]);
    let (alice_token, _) = create_token(&home.path(), "alice");
    let (bob_token, _) = create_token(&home.path(), "bob");
    let alice = connect_http(&server, Some(&alice_token), "alice").await;
    let bob = connect_http(&server, Some(&bob_token), "bob").await;
    create(&alice, "secret-work").await;
    exec(&alice, "secret-work", "echo alice-only > /workspace/notes").await;
    let checkpoint = call(&alice, "create_checkpoint", json!({})).await["checkpoint"].clone();
    let image_id = checkpoint["image_id"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let checkpoint_id = checkpoint["id"].as_str().unwrap();

    for image in [
        format!("taskbox-checkpoint:{checkpoint_id}"),
        image_id[..12].to_string(),
        image_id.clone(),
    ] {
        let (kind, message) = call_err(&bob, "create_task_sandbox", json!({ "name": "steal", "image": image })).await;
        assert_eq!(kind, "invalid_argument", "{image}: {message}");
    }
    let (kind, message) = call_err(
        &bob,
        "create_task_sandbox",
        json!({ "name": "steal", "image": "debian:bookworm-slim" }),
    )
    .await;
    assert_eq!(kind, "invalid_argument");
    assert!(
        message.contains("images.allowed") && message.contains("taskbox-base"),
        "{message}"
    );
    let ok = call(
        &bob,
        "create_task_sandbox",
        json!({ "name": "mine", "image": "taskbox-base" }),
    )
    .await;
    assert_eq!(ok["task"]["owner"], "bob");
}

/// Everything taskbox writes in the data directory is private: directories 0700, files 0600.
/// (The workspace's files are the agent's, with the modes git records.)
#[tokio::test(flavor = "multi_thread")]
async fn the_data_directory_is_private() {
    require!(docker);
    let home = Home::new();
    write_config(&home.path(), "[execution]\noutput_cap_bytes = 1024\n");
    let client = connect(&home.path(), "containment-perms").await;
    create(&client, "private").await;
    exec(&client, "private", "head -c 100000 /dev/zero | tr '\\0' x").await;
    call(&client, "record_decision", json!({ "decision": "keep it private" })).await;
    call(&client, "create_checkpoint", json!({})).await;
    call(&client, "stop_task", json!({})).await;

    // Directories taskbox makes are 0700; it does not look inside the repositories and
    // workspaces, whose contents git and the agent make (inside those 0700 directories).
    let mut checked = 0;
    let mut stack = vec![home.path()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            let name = path.strip_prefix(home.path()).unwrap().to_string_lossy().into_owned();
            // The config file is the test's own.
            if name == "config.toml" {
                continue;
            }
            checked += 1;
            // Two exceptions the container's users need, each inside a 0700 directory: the
            // supervisor they run (bin/ is 0700) and the run directory they enter by name
            // (tasks/<id>/ is 0700).
            if name == "bin/supervise" {
                assert_eq!(mode, 0o755, "{name} is {mode:o}");
                continue;
            }
            if meta.is_dir()
                && path.ends_with("run")
                && path
                    .parent()
                    .is_some_and(|p| p.parent() == Some(&home.path().join("tasks")))
            {
                assert_eq!(mode, 0o711, "{name} is {mode:o}");
                continue;
            }
            if meta.is_dir() {
                assert_eq!(mode, 0o700, "{name} is {mode:o}");
                let opaque = path.ends_with("repo.git") || path.parent().is_some_and(|p| p.ends_with("workspaces"));
                if !opaque {
                    stack.push(path);
                }
            } else {
                assert_eq!(mode & 0o077, 0, "{name} is {mode:o}");
            }
        }
    }
    assert!(checked > 10, "only {checked} entries checked");
    assert!(is_private(&home.path().join("registry.db")));
}

fn is_private(path: &Path) -> bool {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o077 == 0
}

/// Root in the container cannot leave a set-id file on the host, whatever it does to the
/// container's tools: a `find` shim, a path deeper than PATH_MAX, `agent` remapped to uid 0 in
/// /etc/passwd, and a root process left in the background that makes one after its command
/// returned. After stop_task no file in the host's workspace has a set-id bit.
#[tokio::test(flavor = "multi_thread")]
async fn set_id_files_never_reach_the_host() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "containment-setid").await;
    let task = create(&client, "setid").await;
    let root = |command: &str| json!({ "task": "setid", "command": command, "user": "root", "timeout_s": 120 });
    // The container's own tools, made to lie.
    call(
        &client,
        "execute_in_task",
        root(
            "printf '#!/bin/sh\\nexit 0\\n' > /usr/local/bin/find && chmod 755 /usr/local/bin/find \
              && cp /bin/bash /workspace/shim && chmod 4755 /workspace/shim",
        ),
    )
    .await;
    call(
        &client,
        "execute_in_task",
        root(
            "cd /workspace && perl -e 'for (1..2100) { mkdir \"d\"; chdir \"d\" or die } \
              system(\"cp /bin/bash deep && chmod 4755 deep\") == 0 or die'",
        ),
    )
    .await;
    call(
        &client,
        "execute_in_task",
        root("sed -i 's/^agent:x:1000:1000:/agent:x:0:0:/' /etc/passwd"),
    )
    .await;
    // The agent's commands still run as 1000, not as whatever the name now says.
    let id = exec(
        &client,
        "setid",
        "id -u; cp /bin/bash /workspace/remap; chmod 4755 /workspace/remap",
    )
    .await;
    assert_eq!(id["stdout"], "1000\n", "{id}");
    call(
        &client,
        "execute_in_task",
        // In the background: a foreground command's leftover processes end with it.
        json!({
            "task": "setid", "user": "root", "background": true,
            "command": "sleep 3; cp /bin/bash /workspace/late; chmod 4755 /workspace/late",
        }),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    call(&client, "stop_task", json!({ "task": "setid" })).await;

    let workspace = home.path().join("workspaces").join(task["id"].as_str().unwrap());
    let mut found = Vec::new();
    let mut checked = 0;
    let mut stack = vec![workspace.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                // Relative reads keep the walk below PATH_MAX: descend by the entry's own path
                // only while it is short, and check the deep file through its directory.
                if entry.path().as_os_str().len() < 3500 {
                    stack.push(entry.path());
                }
            } else if meta.is_file() {
                checked += 1;
                if meta.permissions().mode() & 0o6000 != 0 {
                    found.push(entry.path());
                }
            }
        }
    }
    assert!(found.is_empty(), "set-id files on the host: {found:?}");
    assert!(checked >= 4, "{checked}");
    for name in ["shim", "remap", "late"] {
        let mode = std::fs::metadata(workspace.join(name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755, "{name}");
    }
    // The file at the bottom of the deep tree, reached by relative chdir.
    let deep = std::process::Command::new("perl")
        .current_dir(&workspace)
        .args([
            "-e",
            r#"for (1..2100) { chdir "d" or die } printf "%o", (stat "deep")[2] & 07777"#,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&deep.stdout).trim(), "755");
}

/// A command that prints without end fills the disk no further than the spill limit; the
/// reply says how much was not kept.
#[tokio::test(flavor = "multi_thread")]
async fn spill_files_stop_at_their_limit() {
    require!(docker);
    let home = Home::new();
    write_config(
        &home.path(),
        "[execution]\noutput_cap_bytes = 1024\nspill_limit_bytes = 4096\n",
    );
    let client = connect(&home.path(), "containment-spill").await;
    let task = create(&client, "spill").await;
    let r = exec(&client, "spill", "head -c 100000 /dev/zero | tr '\\0' x").await;
    let stdout = r["stdout"].as_str().unwrap();
    assert!(
        stdout.contains("the last 95904 bytes passed the spill limit"),
        "{stdout}"
    );
    assert_eq!(r["stdout_not_kept_bytes"], 95904);
    assert_eq!(r["stderr_not_kept_bytes"], 0);
    let recorded = events(&home.path(), task["id"].as_str().unwrap())
        .into_iter()
        .find(|e| e["type"] == "execution")
        .expect("an execution event");
    assert_eq!(recorded["data"]["stdout_not_kept_bytes"], 95904, "{recorded}");
    let outputs = home
        .path()
        .join("tasks")
        .join(task["id"].as_str().unwrap())
        .join("outputs");
    let sizes: Vec<u64> = std::fs::read_dir(outputs)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert_eq!(sizes, [4096]);
}

/// The task's `env` reaches every command, but neither the container's configuration nor a
/// checkpoint image, which another owner or a `docker save` could read. (A container made the
/// old way, with the variable in its configuration, is committed without it: the unit test in
/// runtime/docker.rs.)
#[tokio::test(flavor = "multi_thread")]
async fn the_tasks_env_stays_out_of_containers_and_checkpoint_images() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "containment-env").await;
    let task = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "envs", "env": { "API_KEY": "hunter2-value" } }),
    )
    .await["task"]
        .clone();
    let r = exec(&client, "envs", "echo \"key=$API_KEY\"").await;
    assert_eq!(r["stdout"], "key=hunter2-value\n");
    let r = call(
        &client,
        "execute_in_task",
        json!({ "task": "envs", "command": "echo \"key=$API_KEY\"", "env": { "API_KEY": "per-call" } }),
    )
    .await;
    assert_eq!(r["stdout"], "key=per-call\n", "the call's own env wins");

    let container = task["container_id"].as_str().unwrap();
    let config = docker_inspect("container", container).unwrap()["Config"]["Env"].to_string();
    assert!(!config.contains("hunter2"), "container config: {config}");
    let checkpoint = call(&client, "create_checkpoint", json!({})).await["checkpoint"].clone();
    let image = checkpoint["image_id"].as_str().unwrap();
    let image_env = docker_inspect("image", image).unwrap()["Config"]["Env"].to_string();
    assert!(!image_env.contains("hunter2"), "checkpoint image: {image_env}");

    // Restored from that image, commands still get the variable.
    call(&client, "restore_checkpoint", json!({ "checkpoint": checkpoint["id"] })).await;
    let r = exec(&client, "envs", "echo \"key=$API_KEY\"").await;
    assert_eq!(r["stdout"], "key=hunter2-value\n");
}

/// get_task_status says what the task takes on disk: workspace, container layer, checkpoint
/// images, its files in the data directory.
#[tokio::test(flavor = "multi_thread")]
async fn task_status_reports_disk_use() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "containment-disk").await;
    create(&client, "disk").await;
    exec(
        &client,
        "disk",
        "head -c 3000000 /dev/urandom > /workspace/blob && head -c 2000000 /dev/urandom > /tmp/layer",
    )
    .await;
    call(&client, "create_checkpoint", json!({})).await;
    let disk = call(&client, "get_task_status", json!({ "task": "disk" })).await["disk"].clone();
    let bytes = |field: &str| disk[field].as_u64().unwrap_or_else(|| panic!("{field}: {disk}"));
    assert!(bytes("workspace_bytes") >= 3_000_000, "{disk}");
    assert!(bytes("container_layer_bytes") >= 2_000_000, "{disk}");
    assert_eq!(disk["checkpoint_images"], 1, "{disk}");
    assert!(bytes("checkpoint_images_bytes") >= 2_000_000, "{disk}");
    assert!(bytes("task_files_bytes") > 0, "{disk}");
    assert_eq!(disk["errors"], json!([]), "{disk}");
}

/// A shared server bounds what one owner holds: tasks, running tasks, memory and CPUs in their
/// limits, checkpoint images; each refusal names its quota and how to free room, and other
/// owners, with their own quotas, are not affected.
#[tokio::test(flavor = "multi_thread")]
async fn quotas_bound_what_one_owner_holds() {
    require!(docker);
    let home = Home::new();
    write_config(
        &home.path(),
        "[quotas.default]\ntasks = 2\nrunning_tasks = 1\nmemory_mb = 1024\ncheckpoint_images = 1\n\
         [quotas.owners.alice]\nrunning_tasks = 3\n",
    );
    let server = HttpServer::start(&home.path(), &[]);
    let (bob_token, _) = create_token(&home.path(), "bob");
    let (alice_token, _) = create_token(&home.path(), "alice");
    let bob = connect_http(&server, Some(&bob_token), "bob").await;
    let alice = connect_http(&server, Some(&alice_token), "alice").await;
    let refused = |(kind, message): (String, String), quota: &str, remedy: &str| {
        assert_eq!(kind, "quota_exceeded", "{message}");
        assert!(
            message.contains(&format!("quotas.{quota}")) && message.contains(remedy),
            "{message}"
        );
    };

    let create_args = |name: &str, memory_mb: u64| json!({ "name": name, "memory_mb": memory_mb });
    call(&bob, "create_task_sandbox", create_args("one", 512)).await;
    refused(
        call_err(&bob, "create_task_sandbox", create_args("two", 512)).await,
        "running_tasks",
        "stop_task",
    );
    call(&bob, "create_checkpoint", json!({ "task": "one" })).await;
    refused(
        call_err(&bob, "create_checkpoint", json!({ "task": "one" })).await,
        "checkpoint_images",
        "delete_task",
    );
    call(&bob, "stop_task", json!({ "task": "one" })).await;
    refused(
        call_err(&bob, "create_task_sandbox", create_args("two", 2048)).await,
        "memory_mb",
        "stop_task",
    );
    call(&bob, "create_task_sandbox", create_args("two", 512)).await;
    refused(
        call_err(&bob, "resume_task", json!({ "task": "one" })).await,
        "running_tasks",
        "stop_task",
    );
    call(&bob, "stop_task", json!({ "task": "two" })).await;
    refused(
        call_err(&bob, "create_task_sandbox", create_args("three", 512)).await,
        "tasks",
        "delete_task",
    );
    // Nothing half-made is left by the refusals: bob holds exactly his two tasks.
    let listed = call(&bob, "list_tasks", json!({})).await;
    assert_eq!(listed["total"], 2, "{listed}");

    // alice's own quota lets her run two at once.
    call(&alice, "create_task_sandbox", create_args("a1", 256)).await;
    call(&alice, "create_task_sandbox", create_args("a2", 256)).await;
}
