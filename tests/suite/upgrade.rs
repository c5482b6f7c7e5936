//! The upgrade from 0.1.0: a data directory written by taskbox 0.1.0 (commit c68ae6c), kept
//! in tests/fixtures/upgrade-0.1.0 (see its README.md), opened by this build.
//!
//! 0.1.0 records absolute paths (the project repository, each workspace), so the fixture is
//! unpacked where it was made, `/tmp/taskbox-upgrade-0.1.0`, under a lock held for the whole
//! test. Docker objects cannot be kept in git: the checkpoint images are made again as 0.1.0
//! made them (`docker commit` of a container whose configuration holds the task's env, with
//! the same labels and tag) from docker.json, and their new ids written where 0.1.0 wrote the
//! old ones (the registry's rows and the manifests). The task containers are gone, as after a
//! reboot that pruned them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output};

use serde_json::{Value, json};

use crate::common::*;

const ROOT: &str = "/tmp/taskbox-upgrade-0.1.0";
/// A value of alpha's `env`, which 0.1.0's checkpoint images carry.
const TOKEN_VALUE: &str = "fixture-env-value-0.1.0";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade-0.1.0")
}

/// The unpacked fixture; on drop, its Docker objects and files are removed (the lock goes
/// with the file).
struct Fixture {
    _lock: File,
}

impl Fixture {
    fn home(&self) -> PathBuf {
        Path::new(ROOT).join("home")
    }

    fn unpack() -> Self {
        let lock = File::create(format!("{ROOT}.lock")).unwrap();
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let fixture = Self { _lock: lock };
        fixture.remove();
        let out = StdCommand::new("tar")
            .args(["-xzf"])
            .arg(fixture_dir().join("data.tar.gz"))
            .args(["-C", "/tmp"])
            .output()
            .unwrap();
        assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
        fixture
    }

    fn remove(&self) {
        let filter = format!("label=taskbox.home={}", self.home().display());
        let containers = docker(&["ps", "-aq", "--filter", &filter]);
        for id in containers.split_whitespace() {
            let _ = StdCommand::new("docker").args(["rm", "-f", id]).output();
        }
        for _ in 0..2 {
            let images = labelled_images(&filter);
            if !images.is_empty() {
                let _ = StdCommand::new("docker").args(["rmi", "-f"]).args(&images).output();
            }
        }
        let _ = std::fs::remove_dir_all(ROOT);
    }

    /// Each checkpoint image as 0.1.0 committed it: a container of taskbox-base with the
    /// task's env and the checkpoint's labels in its configuration, committed under the
    /// checkpoint's tag. The registry and the manifests then name the new image.
    fn recreate_checkpoint_images(&self) {
        let recorded: Value =
            serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("docker.json")).unwrap()).unwrap();
        let registry = rusqlite::Connection::open(self.home().join("registry.db")).unwrap();
        for image in recorded["checkpoint_images"].as_array().unwrap() {
            let labels = image["labels"].as_object().unwrap();
            let mut args = vec![
                "create".to_string(),
                "--user".into(),
                "0".into(),
                "--entrypoint=".into(),
            ];
            for (key, value) in labels {
                args.extend(["--label".into(), format!("{key}={}", value.as_str().unwrap())]);
            }
            for entry in image["env"].as_array().unwrap() {
                args.extend(["-e".into(), entry.as_str().unwrap().to_string()]);
            }
            args.extend(["taskbox-base".into(), "sleep".into(), "infinity".into()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let container = docker(&args).trim().to_string();
            let id = docker(&["commit", &container, image["tags"][0].as_str().unwrap()])
                .trim()
                .to_string();
            docker(&["rm", &container]);
            let checkpoint = labels["taskbox.checkpoint"].as_str().unwrap();
            let (task_id, seq): (String, i64) = registry
                .query_row(
                    "UPDATE checkpoints SET image_id = ?1 WHERE id = ?2 RETURNING task_id, seq",
                    rusqlite::params![id, checkpoint],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .unwrap();
            let manifest = self.home().join(format!("tasks/{task_id}/checkpoints/{seq}.json"));
            let mut written: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
            written["checkpoint"]["image_id"] = json!(id);
            std::fs::write(&manifest, serde_json::to_vec_pretty(&written).unwrap()).unwrap();
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.remove();
    }
}

fn taskbox(home: &Path, args: &[&str]) -> Output {
    StdCommand::new(BIN)
        .args(args)
        .current_dir(Path::new(ROOT).join("project"))
        .env("TASKBOX_HOME", home)
        .env("TASKBOX_CONFIG", home.join("config.toml"))
        .output()
        .unwrap()
}

/// The configured environment of a task's current container.
fn container_env(home: &Path, task: &str) -> Vec<String> {
    let out = taskbox(home, &["show", task, "--json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let container = shown["task"]["container_id"].as_str().unwrap().to_string();
    let inspect = docker_inspect("container", &container).unwrap();
    serde_json::from_value(inspect["Config"]["Env"].clone()).unwrap()
}

fn image_env(image: &str) -> Vec<String> {
    serde_json::from_value(docker_inspect("image", image).unwrap()["Config"]["Env"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_directory_of_0_1_0_opens_and_works_and_its_env_carrying_images_are_reported() {
    require!(docker);
    let fixture = Fixture::unpack();
    let home = fixture.home();
    let out = taskbox(&home, &["images", "build", "base"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    fixture.recreate_checkpoint_images();

    // `taskbox doctor` first, as a person upgrading would: the registry migrates, and the two
    // checkpoint images of alpha that carry its env are named with the variables, never their
    // values; beta's and gamma's (no env) are not.
    let (_, said) = doctor(&home, &[]);
    assert!(
        said.contains("checkpoint images that carry their task's env (made by taskbox 0.1.0): 2"),
        "{said}"
    );
    for reference in ["alpha:1", "alpha:2"] {
        assert!(
            said.lines()
                .any(|l| l.contains(reference) && l.contains("FIXTURE_TOKEN, GREETING")),
            "{said}"
        );
    }
    assert!(!said.contains(TOKEN_VALUE), "doctor never prints a value: {said}");
    assert!(!said.contains("beta:") && !said.contains("gamma:"), "{said}");

    // The server opens it: its start recovers alpha (running when 0.1.0 stopped) from its
    // newest checkpoint, an image that carries the env.
    let client = connect(&home, "upgrade").await;
    let listed = call(&client, "list_tasks", json!({})).await;
    let status = |name: &str| {
        listed["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status("alpha").as_deref(), Some("running"), "{listed}");
    assert_eq!(status("beta").as_deref(), Some("stopped"), "{listed}");
    assert_eq!(status("gamma").as_deref(), Some("completed"), "{listed}");

    // Its history from 0.1.0 reads back.
    let executions = call(&client, "task_executions", json!({"task": "alpha"})).await;
    let executions = executions["items"].as_array().unwrap().clone();
    let exit_codes: Vec<i64> = executions.iter().map(|e| e["exit_code"].as_i64().unwrap()).collect();
    assert_eq!(exit_codes.len(), 3, "{executions:?}");
    assert!(exit_codes.contains(&3) && exit_codes.contains(&0), "{executions:?}");
    let history = call(&client, "task_history", json!({"task": "alpha"})).await;
    let kinds: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"task_created") && kinds.contains(&"checkpoint_created"),
        "{history}"
    );
    let decisions = call(&client, "task_decisions", json!({"task": "alpha"})).await;
    assert!(
        decisions.to_string().contains("Keep the greeting in a file"),
        "{decisions}"
    );
    let checkpoints = call(&client, "list_checkpoints", json!({"task": "alpha"})).await;
    assert_eq!(checkpoints["checkpoints"].as_array().unwrap().len(), 2, "{checkpoints}");

    // The diff of its branch in the project repository 0.1.0 wrote to.
    let diff = call(&client, "task_diff", json!({"task": "alpha"})).await;
    let diff = diff.to_string();
    assert!(diff.contains("greeting.txt") && diff.contains("second.txt"), "{diff}");

    // Commands get the env; the recovered container's configuration does not hold it.
    let ran = exec(&client, "alpha", "echo \"$GREETING $FIXTURE_TOKEN\"; cat greeting.txt").await;
    assert_eq!(
        ran["stdout"].as_str().unwrap(),
        format!("hello-from-0.1.0 {TOKEN_VALUE}\nhello-from-0.1.0\n"),
        "{ran}"
    );
    let env = container_env(&home, "alpha");
    assert!(!env.iter().any(|e| e.contains(TOKEN_VALUE)), "{env:?}");
    assert!(env.contains(&"FIXTURE_TOKEN=".to_string()), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=/")), "{env:?}");

    // A restore of the older checkpoint: its workspace, and again no env in the container.
    call(&client, "restore_checkpoint", json!({"checkpoint": "alpha:1"})).await;
    let ran = exec(&client, "alpha", "cat greeting.txt; ls").await;
    let listing = ran["stdout"].as_str().unwrap();
    assert!(
        listing.contains("hello-from-0.1.0") && !listing.contains("second.txt"),
        "{ran}"
    );
    assert!(!container_env(&home, "alpha").iter().any(|e| e.contains(TOKEN_VALUE)));

    // A checkpoint taken now keeps the variables cleared.
    let made = call(&client, "create_checkpoint", json!({"task": "alpha", "label": "after"})).await;
    let image = made["checkpoint"]["image_id"].as_str().unwrap().to_string();
    let env = image_env(&image);
    assert!(!env.iter().any(|e| e.contains(TOKEN_VALUE)), "{env:?}");

    // The stopped task resumes in a new container with its workspace.
    call(&client, "resume_task", json!({"task": "beta"})).await;
    let ran = exec(&client, "beta", "cat src/main.rs").await;
    assert_eq!(ran["stdout"], "fn main() {}\n", "{ran}");
    client.cancel().await.unwrap();

    // The CLI lists the old tasks.
    let out = taskbox(&home, &["ls", "--all", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["alpha", "beta", "gamma"], "{listed}");

    // doctor still names the two old images (not the new ones, which carry nothing), until
    // their task is deleted, as it says; then Docker holds none of them.
    let (_, said) = doctor(&home, &[]);
    assert!(said.contains("(made by taskbox 0.1.0): 2"), "{said}");
    assert!(!said.contains("alpha:3") && !said.contains("alpha:4"), "{said}");
    let out = taskbox(&home, &["rm", "alpha", "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, said) = doctor(&home, &[]);
    assert!(!said.contains("carry their task's env"), "{said}");
    let filter = format!("label=taskbox.task-id={}", listed_id(&listed, "alpha"));
    assert!(
        labelled_images(&filter).is_empty(),
        "alpha's checkpoint images are removed"
    );
}

fn listed_id(listed: &Value, name: &str) -> String {
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .and_then(|t| t["id"].as_str())
        .unwrap()
        .to_string()
}
