//! The registry is an index: lost or damaged, it is rebuilt from the task files at the next
//! start, and `taskbox doctor` finds and repairs layers that disagree (docs/architecture.md,
//! "Rebuilding the registry").

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

/// Two tasks with executions, a decision and a checkpoint; returns what the tools say about
/// them, to compare after a rebuild.
async fn populate(home: &Path) -> Value {
    let client = connect(home, "rebuild-setup").await;
    create(&client, "alpha").await;
    exec(&client, "alpha", "echo one > /workspace/one").await;
    exec(&client, "alpha", "exit 3").await;
    call(
        &client,
        "record_decision",
        json!({ "task": "alpha", "decision": "use quokka sockets", "rationale": "faster" }),
    )
    .await;
    call(
        &client,
        "create_checkpoint",
        json!({ "task": "alpha", "label": "first" }),
    )
    .await;
    create(&client, "beta").await;
    exec(&client, "beta", "true").await;
    call(&client, "stop_task", json!({ "task": "beta" })).await;
    // Detached now, so that no checkpoint on detach comes after the observation.
    for task in ["alpha", "beta"] {
        call(&client, "detach_agent_from_task", json!({ "task": task })).await;
    }
    let seen = observe(&client).await;
    assert_eq!(seen["executions"].as_array().map(Vec::len), Some(2), "{seen}");
    assert_eq!(seen["decisions"].as_array().map(Vec::len), Some(1), "{seen}");
    client.cancel().await.unwrap();
    seen
}

async fn observe(client: &Client) -> Value {
    let mut tasks = call(client, "list_tasks", json!({})).await["tasks"].clone();
    for task in tasks.as_array_mut().unwrap() {
        // Attachments and the time of the last change are not part of the comparison.
        task.as_object_mut().unwrap().remove("updated_at");
    }
    json!({
        "tasks": tasks,
        "executions": call(client, "task_executions", json!({ "task": "alpha" })).await["items"],
        "checkpoints": call(client, "list_checkpoints", json!({ "task": "alpha" })).await["checkpoints"],
        "decisions": call(client, "task_decisions", json!({ "task": "alpha" })).await["items"],
        "search": call(client, "find_task", json!({ "query": "quokka" })).await["tasks"].as_array().unwrap().len(),
        "stats": call(client, "task_stats", json!({})).await,
    })
}

/// Calls `list_tasks` until the rebuild running in the background lets it through.
async fn wait_for_rebuild(client: &Client) {
    for _ in 0..100 {
        let result = call_raw(client, "list_tasks", json!({})).await;
        if result.is_error != Some(true) {
            return;
        }
        let (kind, message) = tool_error(&result);
        assert_eq!(kind, "registry_rebuilding", "{message}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the registry was still being rebuilt after 10 s");
}

fn remove_registry(home: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(home.join(format!("registry.db{suffix}")));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_registry_is_rebuilt_from_the_task_files() {
    require!(docker);
    let home = Home::new();
    let before = populate(&home.path()).await;
    remove_registry(&home.path());

    let client = connect(&home.path(), "rebuild-after").await;
    wait_for_rebuild(&client).await;
    assert_eq!(observe(&client).await, before);
    // The rebuilt registry serves work: the checkpoint restores, the stopped task resumes.
    call(&client, "restore_checkpoint", json!({ "checkpoint": "alpha:1" })).await;
    call(&client, "resume_task", json!({ "task": "beta" })).await;
    assert_eq!(exec(&client, "beta", "echo ok").await["stdout"], "ok\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_registry_is_kept_aside_and_rebuilt() {
    require!(docker);
    let home = Home::new();
    let before = populate(&home.path()).await;
    remove_registry(&home.path());
    std::fs::write(home.path().join("registry.db"), vec![0x5a; 64 * 1024]).unwrap();

    let client = connect(&home.path(), "rebuild-damaged").await;
    wait_for_rebuild(&client).await;
    assert_eq!(observe(&client).await, before);
    let kept: Vec<String> = std::fs::read_dir(home.path())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|name| name.starts_with("registry.db.damaged-"))
        .collect();
    assert_eq!(kept.len(), 1, "the damaged file is kept aside: {kept:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_layers_that_disagree_and_repair_mends_them() {
    require!(docker);
    let home = Home::new();
    populate(&home.path()).await;
    let (ok, report) = doctor(&home.path(), &[]);
    assert!(ok, "a healthy data directory has no mismatch: {report}");
    assert!(report.contains("2 task(s) checked, 0 mismatch(es)"), "{report}");

    // A lost execution row, and an orphan row whose files are gone.
    let db = rusqlite::Connection::open(home.path().join("registry.db")).unwrap();
    db.execute(
        "DELETE FROM executions WHERE id = (SELECT id FROM executions WHERE command = 'exit 3')",
        [],
    )
    .unwrap();
    let beta: String = db
        .query_row("SELECT id FROM tasks WHERE name = 'beta'", [], |r| r.get(0))
        .unwrap();
    let alpha: String = db
        .query_row("SELECT id FROM tasks WHERE name = 'alpha'", [], |r| r.get(0))
        .unwrap();
    drop(db);
    // A checkpoint's hidden ref gone from the task's repository.
    let repo = home.path().join("tasks").join(&alpha).join("repo.git");
    let hidden = format!("refs/taskbox/{alpha}/checkpoints/1");
    git(&repo, &["update-ref", "-d", &hidden]);
    std::fs::rename(
        home.path().join("tasks").join(&beta),
        home.path().join(format!("moved-{beta}")),
    )
    .unwrap();

    let (ok, report) = doctor(&home.path(), &[]);
    assert!(!ok, "{report}");
    assert!(
        report.contains("finished executions: 2 in the files, 1 in the registry")
            && report.contains("--repair will: restore the task from its files"),
        "{report}"
    );
    assert!(report.contains(&format!("tasks/{beta}/ is gone")), "{report}");
    assert!(report.contains(&format!("{hidden} does not name")), "{report}");
    let (ok, report) = doctor(&home.path(), &["--repair"]);
    assert!(ok, "{report}");
    let (ok, report) = doctor(&home.path(), &[]);
    assert!(ok && report.contains("1 task(s) checked, 0 mismatch(es)"), "{report}");
    assert!(!git(&repo, &["rev-parse", &hidden]).trim().is_empty());
    // beta's container went with its row: nothing of a task that is gone is left in Docker.
    let filter = home.label_filter();
    assert_eq!(docker(&["ps", "-aq", "--filter", &filter]).lines().count(), 1);
}
