//! The warm pool (`[pool]`, issue 15 point 3) through the real binary and real Docker: a
//! creation claims a container that existed before it was asked for, the pool is back to its
//! size afterwards, `taskbox gc` drains it when it shrinks or is turned off, a killed server's
//! orphans go at the next start, two servers on one data directory never claim the same
//! entry, and the isolation checker refuses a pool container no task claimed.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// `taskbox ARGS` on `home`; (success, stdout, stderr).
fn taskbox(home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .env("TASKBOX_HOME", home)
        .env("TASKBOX_CONFIG", home.join("config.toml"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The registry's pool rows: (id, state, container id).
fn pool_rows(home: &Path) -> Vec<(String, String, Option<String>)> {
    let db = rusqlite::Connection::open(home.join("registry.db")).unwrap();
    let Ok(mut stmt) = db.prepare("SELECT id, state, container_id FROM pool_entries ORDER BY id") else {
        return Vec::new(); // not migrated yet
    };
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The containers of ready entries.
fn ready_containers(home: &Path) -> BTreeSet<String> {
    pool_rows(home)
        .into_iter()
        .filter(|(_, state, _)| state == "ready")
        .filter_map(|(_, _, container)| container)
        .collect()
}

/// Full ids of the Docker objects (`ps -a` or `network ls`) carrying this home's pool label.
fn pool_objects(home: &Home, kind: &[&str]) -> BTreeSet<String> {
    let home_filter = home.label_filter();
    let mut args: Vec<&str> = kind.to_vec();
    args.extend([
        "-q",
        "--no-trunc",
        "--filter",
        &home_filter,
        "--filter",
        "label=taskbox.pool",
    ]);
    docker(&args).split_whitespace().map(String::from).collect()
}

/// Containers carrying the pool label that no task claimed (a claimed one keeps the label:
/// Docker fixes labels at creation).
fn pool_containers(home: &Home) -> BTreeSet<String> {
    let db = rusqlite::Connection::open(home.path().join("registry.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT container_id FROM tasks WHERE container_id IS NOT NULL")
        .unwrap();
    let claimed: BTreeSet<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    pool_objects(home, &["ps", "-a"])
        .into_iter()
        .filter(|c| !claimed.iter().any(|t| c.starts_with(t.as_str())))
        .collect()
}

async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the pool holds exactly `size` ready entries, nothing else carries the pool
/// label, and every labelled container is a ready entry's.
async fn wait_for_full_pool(home: &Home, size: usize) -> BTreeSet<String> {
    wait_for(
        &format!("a pool of {size} ready entries"),
        Duration::from_secs(90),
        || {
            let rows = pool_rows(&home.path());
            let ready = ready_containers(&home.path());
            rows.len() == size && ready.len() == size && pool_containers(home) == ready
        },
    )
    .await;
    ready_containers(&home.path())
}

fn full_id(container: &str) -> String {
    docker(&["inspect", "-f", "{{.Id}}", container]).trim().to_string()
}

fn task_created(home: &Path, task_id: &str) -> Value {
    events(home, task_id)
        .into_iter()
        .find(|e| e["type"] == "task_created")
        .unwrap()["data"]
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_creation_claims_a_started_entry_and_the_pool_refills() {
    require!(docker);
    let (home, repos) = home_with_repos();
    let config = std::fs::read_to_string(home.path().join("config.toml")).unwrap();
    write_config(&home.path(), &format!("{config}[pool]\nsize = 2\n"));
    let repo = dev_repo(&repos, "project");
    let client = connect(&home.path(), "pool-agent").await;
    let before = wait_for_full_pool(&home, 2).await;

    // An unclaimed entry: hardened like a task's container, labelled as a pool entry with no
    // task name, mounting only its own empty workspace (no task's), the supervisor and its
    // run directory.
    let entry = before.iter().next().unwrap();
    let inspect = docker_inspect("container", entry).unwrap();
    let labels = &inspect["Config"]["Labels"];
    let entry_id = labels["taskbox.task-id"].as_str().unwrap().to_string();
    assert_eq!(labels["taskbox.pool"], "taskbox-base");
    assert!(labels.get("taskbox.task-name").is_none(), "{labels}");
    assert_eq!(inspect["HostConfig"]["Privileged"], false);
    assert_eq!(inspect["HostConfig"]["CapDrop"], json!(["ALL"]));
    assert_eq!(inspect["State"]["Running"], true);
    let mounts: BTreeSet<(String, String)> = inspect["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["Source"].as_str().unwrap().to_string(),
                m["Destination"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let workspace = home.path().join("workspaces").join(&entry_id);
    let expected: BTreeSet<(String, String)> = [
        (workspace.display().to_string(), "/workspace".to_string()),
        (
            home.path().join("bin/supervise").display().to_string(),
            "/.taskbox/bin/supervise".to_string(),
        ),
        (
            home.path()
                .join("tasks")
                .join(&entry_id)
                .join("run")
                .display()
                .to_string(),
            "/.taskbox/run".to_string(),
        ),
    ]
    .into();
    assert_eq!(mounts, expected);
    assert_eq!(std::fs::read_dir(&workspace).unwrap().count(), 0, "an empty workspace");

    // Without a repository: the task's container existed before it was asked for.
    let task = create(&client, "claimed").await;
    let claimed_container = full_id(task["container_id"].as_str().unwrap());
    assert!(
        before.contains(&claimed_container),
        "{claimed_container} is not one of {before:?}"
    );
    let id = task["id"].as_str().unwrap();
    assert_eq!(task_created(&home.path(), id)["pool"], true);
    // Its files are the agent's and its commands pass every check (isolation-checker on).
    let r = exec(
        &client,
        "claimed",
        "cd /workspace && git log --oneline | wc -l && find /workspace ! -user agent | wc -l && id -un",
    )
    .await;
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(r["stdout"], "1\n0\nagent\n", "{r}");

    // Over a repository: the container from the pool, the clone the rest.
    let task = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "over-repo", "repo_path": repo.display().to_string() }),
    )
    .await["task"]
        .clone();
    let container = full_id(task["container_id"].as_str().unwrap());
    assert!(before.contains(&container), "{container} is not one of {before:?}");
    let r = exec(
        &client,
        "over-repo",
        "cd /workspace && cat a.txt src/lib.rs && git status --porcelain | wc -l && find . ! -user agent | wc -l",
    )
    .await;
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(r["stdout"], "one\npub fn answer() -> u32 { 42 }\n0\n0\n", "{r}");
    // Its work reaches the task branch like any task's.
    exec(
        &client,
        "over-repo",
        "cd /workspace && echo two >> a.txt && git commit -qam more",
    )
    .await;
    call(&client, "create_checkpoint", json!({ "task": "over-repo" })).await;
    assert_eq!(git(&repo, &["show", "taskbox/over-repo:a.txt"]), "one\ntwo");

    // Refilled: two ready entries again, none of them claimed ones.
    let after = wait_for_full_pool(&home, 2).await;
    assert!(after.is_disjoint(&before), "{after:?} {before:?}");

    // A request the pool does not hold (other limits) takes the normal path.
    let other = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "small", "memory_mb": 256 }),
    )
    .await["task"]
        .clone();
    let container = full_id(other["container_id"].as_str().unwrap());
    assert!(!after.contains(&container));
    assert_eq!(ready_containers(&home.path()), after, "the pool was not touched");
    assert_eq!(task_created(&home.path(), other["id"].as_str().unwrap())["pool"], false);

    // A claimed task is deleted like any other: nothing of it stays.
    call(&client, "delete_task", json!({ "task": "claimed", "confirm": true })).await;
    assert!(docker_inspect("container", &claimed_container).is_none());
    assert!(!home.path().join("workspaces").join(id).exists());
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_drains_the_pool_when_it_shrinks_or_is_turned_off() {
    require!(docker);
    let home = Home::new();
    write_config(&home.path(), "[pool]\nsize = 2\n");
    let client = connect(&home.path(), "pool-drain").await;
    let full = wait_for_full_pool(&home, 2).await;
    client.cancel().await.unwrap();
    // The entries outlive the server.
    assert_eq!(pool_containers(&home), full);

    // An entry whose container stopped (a Docker restart stops them all) serves no claim: gc
    // removes it, and the next server fills the pool again.
    let stopped = full.iter().next().unwrap().clone();
    docker(&["stop", "-t", "0", &stopped]);
    let (ok, _, report) = taskbox(&home.path(), &["gc"]);
    assert!(ok, "{report}");
    assert!(report.contains("removed pool_entry"), "{report}");
    assert!(docker_inspect("container", &stopped).is_none(), "{report}");
    assert_eq!(ready_containers(&home.path()).len(), 1);
    let client = connect(&home.path(), "pool-drain").await;
    let full = wait_for_full_pool(&home, 2).await;
    assert!(!full.contains(&stopped));
    client.cancel().await.unwrap();

    write_config(&home.path(), "[pool]\nsize = 1\n");
    let (ok, _, report) = taskbox(&home.path(), &["gc"]);
    assert!(ok, "{report}");
    assert!(report.contains("removed pool_entry"), "{report}");
    let left = pool_containers(&home);
    assert_eq!(left.len(), 1);
    assert_eq!(ready_containers(&home.path()), left);
    assert_eq!(pool_objects(&home, &["network", "ls"]).len(), 1);

    write_config(&home.path(), "");
    let (ok, _, err) = taskbox(&home.path(), &["gc"]);
    assert!(ok, "{err}");
    assert!(pool_containers(&home).is_empty());
    assert!(pool_objects(&home, &["network", "ls"]).is_empty());
    assert!(pool_rows(&home.path()).is_empty());
    assert_eq!(std::fs::read_dir(home.path().join("workspaces")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(home.path().join("tasks")).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_servers_orphans_go_at_the_next_start_and_its_ready_entries_serve() {
    require!(docker);
    let home = Home::new();
    write_config(&home.path(), "[pool]\nsize = 3\n");
    let (client, pid) = connect_with_pid(&home.path(), "pool-crash", &[]).await;
    // Killed mid-refill: some entries ready, one being made.
    wait_for(
        "an entry being made after one is ready",
        Duration::from_secs(90),
        || {
            let rows = pool_rows(&home.path());
            rows.iter().any(|(_, s, _)| s == "ready") && rows.iter().any(|(_, s, _)| s == "filling")
        },
    )
    .await;
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    drop(client);
    let rows = pool_rows(&home.path());
    let orphans: Vec<String> = rows
        .iter()
        .filter(|(_, s, _)| s == "filling")
        .map(|(id, _, _)| id.clone())
        .collect();
    let survivors: BTreeSet<String> = rows
        .iter()
        .filter(|(_, s, _)| s == "ready")
        .filter_map(|(_, _, c)| c.clone())
        .collect();
    assert!(!orphans.is_empty());
    // An entry whose row is gone but whose container stayed (a removal killed half-way).
    let stray = docker(&[
        "run",
        "-d",
        "--label",
        &format!("taskbox.home={}", home.path().display()),
        "--label",
        "taskbox.task-id=t-01STRAYPOOLENTRY0000000000",
        "--label",
        "taskbox.pool=taskbox-base",
        "taskbox-base",
        "sleep",
        "600",
    ])
    .trim()
    .to_string();

    // `taskbox gc --dry-run` names the orphans and removes nothing.
    let (ok, _, report) = taskbox(&home.path(), &["gc", "--dry-run"]);
    assert!(ok, "{report}");
    for orphan in &orphans {
        assert!(report.contains(orphan.as_str()), "{orphan} not in {report}");
    }
    assert!(pool_containers(&home).contains(&stray));

    // The next start removes them, keeps the ready entries and fills up to the size.
    let client = connect(&home.path(), "pool-after-crash").await;
    let full = wait_for_full_pool(&home, 3).await;
    assert!(survivors.is_subset(&full), "{survivors:?} {full:?}");
    assert!(!pool_containers(&home).contains(&stray));
    for orphan in &orphans {
        assert!(!home.path().join("workspaces").join(orphan).exists());
        assert!(!home.path().join("tasks").join(orphan).exists());
        assert!(docker_inspect("network", &format!("taskbox-{orphan}")).is_none());
    }
    // A ready entry of the dead server serves a creation.
    let task = create(&client, "after-crash").await;
    let container = full_id(task["container_id"].as_str().unwrap());
    assert!(full.contains(&container));
    call(
        &client,
        "delete_task",
        json!({ "task": "after-crash", "confirm": true }),
    )
    .await;
    client.cancel().await.unwrap();

    // Nothing is leaked once the pool is off: Docker holds nothing with the pool label.
    write_config(&home.path(), "");
    let (ok, _, err) = taskbox(&home.path(), &["gc"]);
    assert!(ok, "{err}");
    assert!(pool_containers(&home).is_empty());
    assert!(pool_objects(&home, &["network", "ls"]).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_on_one_data_directory_never_claim_the_same_entry() {
    require!(docker);
    let home = Home::new();
    write_config(&home.path(), "[pool]\nsize = 2\n");
    let a = connect(&home.path(), "pool-a").await;
    let b = connect(&home.path(), "pool-b").await;
    // Both keep the pool, and together make it 2, not 4.
    let pooled = wait_for_full_pool(&home, 2).await;
    let creations = (0..3).flat_map(|i| [(&a, format!("a{i}")), (&b, format!("b{i}"))]);
    let created = futures_util::future::join_all(creations.map(|(client, name)| async move {
        let task = create(client, &name).await;
        (name, full_id(task["container_id"].as_str().unwrap()))
    }))
    .await;
    let containers: BTreeSet<&String> = created.iter().map(|(_, c)| c).collect();
    assert_eq!(
        containers.len(),
        6,
        "every task has a container of its own: {created:?}"
    );
    let claimed = created.iter().filter(|(_, c)| pooled.contains(c)).count();
    assert!(
        (1..=2).contains(&claimed),
        "{claimed} claims of a pool of 2: {created:?}"
    );
    for (name, _) in &created {
        let client = if name.starts_with('a') { &a } else { &b };
        let r = exec(client, name, "ls -A /workspace | head -1 && id -un").await;
        assert_eq!(r["exit_code"], 0, "{name}: {r}");
    }
    wait_for_full_pool(&home, 2).await;
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_isolation_checker_accepts_a_pool_container_only_once_claimed() {
    require!(docker);
    let home = Home::new();
    // container-enforcer off: its label check would refuse first; this is the isolation
    // checker's own refusal.
    write_config(
        &home.path(),
        "[pool]\nsize = 1\n[hooks.container-enforcer]\nenabled = false\n",
    );
    let client = connect(&home.path(), "pool-isolation").await;
    let task = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "plain", "memory_mb": 256 }),
    )
    .await["task"]
        .clone();
    let id = task["id"].as_str().unwrap().to_string();
    let entry = wait_for_full_pool(&home, 1).await.into_iter().next().unwrap();
    // The task pointed at an unclaimed entry's container.
    let db = rusqlite::Connection::open(home.path().join("registry.db")).unwrap();
    db.execute("UPDATE tasks SET container_id = ?1 WHERE id = ?2", [&entry, &id])
        .unwrap();
    let (kind, message) = call_err(
        &client,
        "execute_in_task",
        json!({ "task": "plain", "command": "true" }),
    )
    .await;
    assert_eq!(kind, "hook_denied", "{message}");
    assert!(
        message.contains("isolation-checker")
            && message.contains("warm-pool entry")
            && message.contains("did not claim"),
        "{message}"
    );
    db.execute(
        "UPDATE tasks SET container_id = ?1 WHERE id = ?2",
        [task["container_id"].as_str().unwrap(), &id],
    )
    .unwrap();

    // Claimed, the same container passes.
    let claimed = create(&client, "claimed").await;
    assert_eq!(full_id(claimed["container_id"].as_str().unwrap()), entry);
    let r = exec(&client, "claimed", "echo ran").await;
    assert_eq!(r["stdout"], "ran\n", "{r}");
    let runs: Vec<Value> = events(&home.path(), claimed["id"].as_str().unwrap())
        .into_iter()
        .filter(|e| e["type"] == "hook" && e["data"]["hook"] == "isolation-checker")
        .collect();
    assert_eq!(runs.last().unwrap()["data"]["decision"], "allow", "{runs:?}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_fills_behind_the_first_reply_never_before_it() {
    require!(docker);
    let home = Home::new();
    write_config(&home.path(), "[pool]\nsize = 1\n");
    // The start's recovery stalls at its sweep (it lists images): the keeper starts only
    // after it, so nothing of the pool may happen before the recovery is let through.
    let proxy = crate::common::docker_proxy::DockerProxy::start();
    proxy.hold("/images/json");
    let host = proxy.docker_host();
    let client = tokio::time::timeout(
        Duration::from_secs(20),
        connect_with_env(&home.path(), "pool-cold-start", &[("DOCKER_HOST", &host)]),
    )
    .await
    .expect("initialize is answered with the pool on");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(pool_rows(&home.path()).is_empty(), "the pool waits for the recovery");
    assert_eq!(proxy.requests_with(&["POST", "/containers/create"]), 0);
    proxy.release();
    wait_for_full_pool(&home, 1).await;
    client.cancel().await.unwrap();
}
