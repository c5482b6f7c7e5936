//! Named volumes: package caches shared by one owner's tasks (and never another owner's), a
//! task's own `volumes`, kept through restore, fork and resume, `taskbox volumes ls|rm|prune`,
//! and isolation-checker's refusal of volumes taskbox did not make.

use std::path::Path;
use std::process::{Command as StdCommand, Output};

use crate::common::http::*;
use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

fn taskbox(home: &Path, args: &[&str]) -> Output {
    StdCommand::new(BIN)
        .args(args)
        .env("TASKBOX_HOME", home)
        .env("TASKBOX_CONFIG", home.join("config.toml"))
        .env("COLUMNS", "200")
        .output()
        .unwrap()
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = taskbox(home, args);
    assert!(
        out.status.success(),
        "taskbox {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `command` in `task` and returns its stdout, asserting it exited 0.
async fn new_task(client: &Client, name: &str) -> Value {
    call(
        client,
        "create_task_sandbox",
        json!({ "name": name, "network": "none" }),
    )
    .await["task"]
        .clone()
}

async fn run(client: &Client, task: &str, command: &str) -> String {
    let result = exec(client, task, command).await;
    assert_eq!(result["exit_code"], 0, "{command}: {result}");
    result["stdout"].as_str().unwrap().to_string()
}

fn volume_labels(name: &str) -> Value {
    docker_inspect("volume", name).expect("the volume exists")["Labels"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn caches_are_shared_by_one_owners_tasks_and_never_with_another_owner() {
    require!(docker);
    let home = Home::new();
    write_config(&home.path(), "[caches]\nenabled = true\n");
    let (alice_token, _) = create_token(&home.path(), "alice");
    let (bob_token, _) = create_token(&home.path(), "bob");
    let server = HttpServer::start(&home.path(), &[]);
    let alice = connect_http(&server, Some(&alice_token), "alice-agent").await;
    let bob = connect_http(&server, Some(&bob_token), "bob-agent").await;

    let first = new_task(&alice, "first").await;
    let caches: Vec<(String, String)> = first["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().into(), v["path"].as_str().unwrap().into()))
        .collect();
    let at = |name: &str, path: &str| (name.to_string(), path.to_string());
    assert_eq!(
        caches,
        vec![
            at("apt", "/var/cache/apt/archives"),
            at("pip", "/home/agent/.cache/pip"),
            at("npm", "/home/agent/.npm"),
            at("cargo", "/home/agent/.cargo/registry"),
        ]
    );
    for volume in first["volumes"].as_array().unwrap() {
        assert_eq!(volume["kind"], "cache");
        let name = volume["volume"].as_str().unwrap();
        assert!(name.contains(".alice.cache-"), "{name}");
        let labels = volume_labels(name);
        assert_eq!(labels["taskbox.owner"], "alice");
        assert_eq!(labels["taskbox.home"], home.path().display().to_string());
        assert_eq!(labels["taskbox.volume-kind"], "cache");
    }
    let first_id = first["id"].as_str().unwrap();
    // The caches and the way down to them are the task user's: it writes there, and next to
    // them (~/.cache is not left to root by Docker's mount points).
    let owners = run(
        &alice,
        first_id,
        "echo from-first > ~/.cache/pip/marker && touch ~/.cache/another-tool ~/.npm/x ~/.cargo/registry/y && \
         stat -c '%U %n' ~ ~/.cache ~/.cache/pip ~/.npm ~/.cargo ~/.cargo/registry",
    )
    .await;
    assert_eq!(
        owners,
        "agent /home/agent\nagent /home/agent/.cache\nagent /home/agent/.cache/pip\nagent /home/agent/.npm\n\
         agent /home/agent/.cargo\nagent /home/agent/.cargo/registry\n"
    );
    // apt keeps what it downloads: a `docker-clean` like Ubuntu's images ship (Debian's no
    // longer do) is moved aside when the container is prepared (here by a restore, which
    // prepares the new container), and apt's own setting is on.
    let planted = call(
        &alice,
        "execute_in_task",
        json!({ "task": first_id, "user": "root", "command": "printf '%s\\n' 'DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb || true\"; };' > /etc/apt/apt.conf.d/docker-clean && apt-config dump | grep -c Post-Invoke" }),
    )
    .await;
    assert_eq!(planted["exit_code"], 0, "apt sees the planted hook: {planted}");
    call(&alice, "create_checkpoint", json!({ "task": first_id })).await;
    call(&alice, "restore_checkpoint", json!({ "checkpoint": "first:1" })).await;
    let apt = run(
        &alice,
        first_id,
        "ls /etc/apt/apt.conf.d/ && apt-config dump | grep -i -e keep-downloaded -e post-invoke; cat ~/.cache/pip/marker",
    )
    .await;
    assert!(
        apt.contains("docker-clean.disabled\n")
            && !apt.contains("docker-clean\n")
            && apt.contains("99taskbox-keep-packages"),
        "{apt}"
    );
    assert!(!apt.to_lowercase().contains("post-invoke"), "{apt}");
    assert!(
        apt.contains("Binary::apt::APT::Keep-Downloaded-Packages \"true\""),
        "{apt}"
    );
    assert!(
        apt.ends_with("from-first\n"),
        "the restored container mounts the caches: {apt}"
    );

    // A fork that asks for a volume of its own where its source has a cache gets its volume
    // there instead of the cache (Docker refuses two mounts at one path).
    let fork = call(
        &alice,
        "create_task_sandbox",
        json!({ "name": "own-apt", "from_checkpoint": "first:1", "volumes": [{ "name": "apt-own", "path": "/var/cache/apt/archives" }] }),
    )
    .await["task"]
        .clone();
    let mounted: Vec<(&str, &str)> = fork["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["path"].as_str().unwrap()))
        .collect();
    assert!(mounted.contains(&("apt-own", "/var/cache/apt/archives")), "{mounted:?}");
    assert!(!mounted.contains(&("apt", "/var/cache/apt/archives")), "{mounted:?}");
    assert_eq!(
        run(&alice, fork["id"].as_str().unwrap(), "cat ~/.cache/pip/marker").await,
        "from-first\n",
        "the other caches stay"
    );

    // Alice's second task sees what the first left in the cache.
    let second = new_task(&alice, "second").await;
    assert_eq!(second["volumes"], first["volumes"]);
    let seen = run(&alice, second["id"].as_str().unwrap(), "cat ~/.cache/pip/marker").await;
    assert_eq!(seen, "from-first\n");

    // Bob's task has caches of its own, empty of Alice's files.
    let bobs = new_task(&bob, "first").await;
    for volume in bobs["volumes"].as_array().unwrap() {
        let name = volume["volume"].as_str().unwrap();
        assert!(name.contains(".bob.cache-"), "{name}");
        assert_eq!(volume_labels(name)["taskbox.owner"], "bob");
    }
    let result = exec(
        &bob,
        bobs["id"].as_str().unwrap(),
        "ls -A ~/.cache/pip ~/.npm; cat ~/.cache/pip/marker",
    )
    .await;
    assert_ne!(result["exit_code"], 0, "{result}");
    assert!(result["stderr"].as_str().unwrap().contains("No such file"), "{result}");
    assert_eq!(
        result["stdout"], "/home/agent/.cache/pip:\n\n/home/agent/.npm:\n",
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn caches_are_off_by_default() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "no-caches").await;
    let task = create(&client, "plain").await;
    assert_eq!(task["volumes"], Value::Null, "{task}");
    let mounts = docker_inspect("container", task["container_id"].as_str().unwrap()).unwrap()["Mounts"].clone();
    assert!(
        mounts.as_array().unwrap().iter().all(|m| m["Type"] != "volume"),
        "{mounts}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tasks_own_volumes_are_shared_by_name_and_kept_through_restore_fork_and_resume() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "volumes-agent").await;

    // Bad volumes are refused before anything is made, each saying what is wrong.
    for (volumes, why) in [
        (json!([{ "name": "Data", "path": "/data" }]), "is not a volume name"),
        (json!([{ "name": "data", "path": "data" }]), "is not absolute"),
        (
            json!([{ "name": "data", "path": "/workspace/x" }]),
            "at or under /workspace",
        ),
        (json!([{ "name": "data", "path": "/etc/app" }]), "at or under /etc"),
        (json!([{ "name": "data", "path": "/" }]), "root of the container"),
        (json!([{ "name": "data", "path": "/var" }]), "would cover /var/run"),
        (json!([{ "name": "data", "path": "/a/../etc" }]), "not normalised"),
        (
            json!([{ "name": "a", "path": "/data" }, { "name": "b", "path": "/data" }]),
            "two volumes at /data",
        ),
    ] {
        let (kind, message) = call_err(
            &client,
            "create_task_sandbox",
            json!({ "name": "bad", "volumes": volumes }),
        )
        .await;
        assert_eq!(kind, "invalid_argument", "{volumes}: {message}");
        assert!(message.contains(why), "{volumes}: {message}");
    }
    assert_eq!(call(&client, "list_tasks", json!({})).await["total"], 0);

    let one = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "one", "network": "none", "volumes": [{ "name": "data", "path": "/data" }] }),
    )
    .await["task"]
        .clone();
    let one_id = one["id"].as_str().unwrap().to_string();
    let volume = one["volumes"][0]["volume"].as_str().unwrap().to_string();
    assert!(volume.ends_with(".local.named-data"), "{volume}");
    assert_eq!(volume_labels(&volume)["taskbox.volume-kind"], "named");
    // Its root is the task user's, who writes there without root.
    assert_eq!(
        run(&client, &one_id, "echo one > /data/f && stat -c %U /data").await,
        "agent\n"
    );

    // A set-id file root leaves in a volume loses its bits on the host, as in the workspace.
    let setuid = call(
        &client,
        "execute_in_task",
        json!({ "task": "one", "user": "root", "command": "cp /bin/true /data/suid && chmod 6755 /data/suid" }),
    )
    .await;
    assert_eq!(setuid["exit_code"], 0, "{setuid}");
    let mountpoint = docker_inspect("volume", &volume).unwrap()["Mountpoint"]
        .as_str()
        .unwrap()
        .to_string();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(Path::new(&mountpoint).join("suid"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o7777, 0o755, "set-id bits cleared from the host: {mode:o}");

    // Another task naming the same volume shares its files, wherever it mounts it.
    let two = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "two", "network": "none", "volumes": [{ "name": "data", "path": "/srv/shared" }] }),
    )
    .await["task"]
        .clone();
    assert_eq!(two["volumes"][0]["volume"], volume.as_str());
    assert_eq!(run(&client, "two", "cat /srv/shared/f").await, "one\n");

    // A restore makes a new container with the same mounts; the volume is no part of the
    // checkpoint, so it keeps what was written after it.
    call(
        &client,
        "create_checkpoint",
        json!({ "task": "one", "label": "before" }),
    )
    .await;
    run(&client, "one", "echo later > /data/g").await;
    let restored = call(&client, "restore_checkpoint", json!({ "checkpoint": "one:1" })).await;
    assert_ne!(restored["task"]["container_id"], one["container_id"], "{restored}");
    assert_eq!(run(&client, "one", "cat /data/f /data/g").await, "one\nlater\n");

    // So does a fork, and a resume.
    let fork = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "fork", "from_checkpoint": "one:1", "volumes": [{ "name": "more", "path": "/more" }] }),
    )
    .await["task"]
        .clone();
    let paths: Vec<&str> = fork["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/data", "/more"]);
    assert_eq!(run(&client, "fork", "cat /data/f && touch /more/x").await, "one\n");
    call(&client, "stop_task", json!({ "task": "one" })).await;
    call(&client, "resume_task", json!({ "task": "one" })).await;
    assert_eq!(run(&client, "one", "cat /data/f").await, "one\n");

    // `taskbox volumes`: ls names the tasks that mount each; rm refuses a volume in use and
    // names that are not this data directory's; prune takes what no task mounts.
    let listed: Value = serde_json::from_str(&ok(&home.path(), &["volumes", "ls", "--json"])).unwrap();
    let data = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["volume"] == volume.as_str())
        .unwrap();
    assert_eq!(
        (data["owner"].as_str(), data["kind"].as_str(), data["name"].as_str()),
        (Some("local"), Some("named"), Some("data"))
    );
    assert_eq!(data["used_by"].as_array().unwrap().len(), 3, "{data}");
    let table = ok(&home.path(), &["volumes", "ls"]);
    assert!(
        table.starts_with("VOLUME") && table.contains(&volume) && table.contains(&one_id),
        "{table}"
    );

    let refused = taskbox(&home.path(), &["volumes", "rm", &volume]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("is mounted by task(s)") && stderr.contains(&one_id),
        "{stderr}"
    );
    let missing = taskbox(&home.path(), &["volumes", "rm", "no-such-volume"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no volume named no-such-volume"));
    let foreign = format!("taskbox-test-not-ours-{}", std::process::id());
    docker(&["volume", "create", &foreign]);
    let not_ours = taskbox(&home.path(), &["volumes", "rm", &foreign]);
    docker(&["volume", "rm", &foreign]);
    assert!(
        String::from_utf8_lossy(&not_ours.stderr).contains("is not a volume of this data directory"),
        "{}",
        String::from_utf8_lossy(&not_ours.stderr)
    );

    for task in ["one", "two", "fork"] {
        call(&client, "delete_task", json!({ "task": task, "confirm": true })).await;
    }
    let dry: Value = serde_json::from_str(&ok(&home.path(), &["volumes", "prune", "--dry-run", "--json"])).unwrap();
    let mut would: Vec<&str> = dry
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["volume"].as_str().unwrap())
        .collect();
    would.sort();
    assert_eq!(would.len(), 2, "{dry}");
    assert!(would.contains(&volume.as_str()), "{dry}");
    assert!(docker_inspect("volume", &volume).is_some(), "a dry run removes nothing");
    let pruned = ok(&home.path(), &["volumes", "prune"]);
    assert!(pruned.contains(&format!("removed {volume}")), "{pruned}");
    assert!(docker_inspect("volume", &volume).is_none());
    assert_eq!(ok(&home.path(), &["volumes", "ls", "--json"]).trim(), "[]");
}

#[tokio::test(flavor = "multi_thread")]
async fn isolation_checker_refuses_a_container_with_a_volume_taskbox_did_not_make() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "isolation-volumes").await;
    let task = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "vols", "network": "none", "volumes": [{ "name": "mine", "path": "/mine" }] }),
    )
    .await["task"]
        .clone();
    let id = task["id"].as_str().unwrap();
    run(&client, id, "touch /mine/ok").await;
    let own = task["volumes"][0]["volume"].as_str().unwrap();

    // A container as hardened as taskbox's and labelled as this task's, with the task's own
    // volume and one made outside taskbox: only the foreign volume is wrong with it.
    let foreign = format!("taskbox-test-foreign-{}", std::process::id());
    docker(&["volume", "create", &foreign]);
    let workspace = home.path().join("workspaces").join(id);
    let mut args = vec![
        "run".to_string(),
        "-d".into(),
        "--label".into(),
        format!("taskbox.task-id={id}"),
        "--label".into(),
        format!("taskbox.home={}", home.path().display()),
        "--cap-drop".into(),
        "ALL".into(),
        "--security-opt".into(),
        "no-new-privileges".into(),
        "--cgroupns".into(),
        "private".into(),
        "--ipc".into(),
        "private".into(),
        "-v".into(),
        format!("{}:/workspace", workspace.display()),
        "-v".into(),
        format!("{own}:/mine"),
        "-v".into(),
        format!("{foreign}:/data"),
    ];
    args.extend(["taskbox-base", "sleep", "600"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rogue = docker(&args).trim().to_string();
    docker(&["rm", "-f", task["container_id"].as_str().unwrap()]);
    let db = rusqlite::Connection::open(home.path().join("registry.db")).unwrap();
    db.execute("UPDATE tasks SET container_id = ?1 WHERE id = ?2", [rogue.as_str(), id])
        .unwrap();
    let result = call_raw(&client, "execute_in_task", json!({ "task": id, "command": "echo ran" })).await;
    docker(&["rm", "-f", &rogue]);
    docker(&["volume", "rm", &foreign]);
    let (kind, message) = tool_error(&result);
    assert_eq!(kind, "hook_denied", "{message}");
    assert!(
        message.contains(&format!(
            "it mounts volume {foreign} at /data, which taskbox did not make"
        )) && !message.contains("/mine"),
        "{message}"
    );
}
