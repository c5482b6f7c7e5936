//! Service logic on the fake runtime: what creation leaves behind when a step fails, and
//! how calls on a task in the wrong status are refused. Real Docker is covered in tests/.

use std::sync::Arc;

use pretty_assertions::assert_eq;

use super::*;
use crate::runtime::fake::FakeRuntime;

fn service(fake: Arc<FakeRuntime>) -> (TaskService, tempfile::TempDir) {
    service_with(fake, |_| {})
}

fn service_with(fake: Arc<FakeRuntime>, adjust: impl FnOnce(&mut Config)) -> (TaskService, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        home: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    // The test process runs inside taskbox's own repository: keep tasks out of it.
    config.workspace.allowed_repo_roots = vec![dir.path().to_path_buf()];
    adjust(&mut config);
    (TaskService::open(config, fake).unwrap(), dir)
}

fn request(name: &str) -> CreateTaskRequest {
    CreateTaskRequest {
        name: name.into(),
        ..Default::default()
    }
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[tokio::test]
async fn each_failing_step_of_creation_rolls_back_everything() {
    for step in ["create_network", "create_container", "start_container", "exec"] {
        let fake = Arc::new(FakeRuntime::with_image("taskbox-base"));
        fake.lock().fail.insert(step);
        let (service, dir) = service(fake.clone());
        let err = service.create_task(request("doomed"), no_progress()).await.unwrap_err();
        assert!(err.to_string().contains(step), "{step}: {err}");
        let state = fake.lock();
        assert!(state.containers.is_empty(), "{step}: container left");
        assert!(state.networks.is_empty(), "{step}: network left");
        assert_eq!(
            service.list(&Owner::local(), None, 10, 0).unwrap().total,
            0,
            "{step}: row left"
        );
        assert_eq!(entries(&dir.path().join("tasks")), 0, "{step}: task dir left");
        assert_eq!(entries(&dir.path().join("workspaces")), 0, "{step}: workspace left");
    }
}

#[tokio::test]
async fn creation_builds_a_missing_builtin_image_with_progress() {
    let fake = Arc::new(FakeRuntime::default());
    let (service, _dir) = service(fake.clone());
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    let progress: Progress = Arc::new(move |line: &str| sink.lock().unwrap().push(line.to_string()));
    let task = service.create_task(request("fresh"), progress).await.unwrap().task;
    assert_eq!(task.status, TaskStatus::Running);
    assert_eq!(task.exec_user.as_deref(), Some("agent"));
    assert_eq!(task.shell.as_deref(), Some("bash"));
    assert_eq!(*lines.lock().unwrap(), ["building image taskbox-base", "fake build"]);
}

#[tokio::test]
async fn stopped_tasks_refuse_execution_and_stop_is_checked_before_docker() {
    let fake = Arc::new(FakeRuntime::with_image("taskbox-base"));
    // container-enforcer would resume the task first (see the next test).
    let (service, _dir) = service_with(fake.clone(), |c| c.hooks.container_enforcer.resume_stopped = false);
    let task = service
        .create_task(request("pausing"), no_progress())
        .await
        .unwrap()
        .task;
    service.stop(&task.id, None).await.unwrap();
    let err = service
        .execute(
            &task.id,
            ExecRequest {
                command: "true".into(),
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "task 'pausing' is stopped; call resume_task to start it again"
    );
    let execs_before = fake.lock().execs.len();
    assert!(service.stop(&task.id, None).await.is_err());
    assert_eq!(fake.lock().execs.len(), execs_before);
    let resumed = service.resume(&task.id).await.unwrap();
    assert_eq!(resumed.status, TaskStatus::Running);
    assert_eq!(
        resumed.version, 5,
        "created, repository recorded, started, stopped, resumed"
    );
}

#[tokio::test]
async fn container_enforcer_resumes_a_stopped_task_before_a_command() {
    let fake = Arc::new(FakeRuntime::with_image("taskbox-base"));
    let (service, _dir) = service(fake.clone());
    let task = service
        .create_task(request("napping"), no_progress())
        .await
        .unwrap()
        .task;
    service.stop(&task.id, None).await.unwrap();
    let run = ExecRequest {
        command: "true".into(),
        ..Default::default()
    };
    let warnings = crate::hooks::scope::CallScope::new(crate::mcp::Tool::ExecuteInTask.as_str(), "test");
    crate::hooks::scope::within(warnings.clone(), service.execute(&task.id, run, Default::default()))
        .await
        .unwrap();
    assert_eq!(service.resolve(Some(&task.id)).unwrap().status, TaskStatus::Running);
    assert_eq!(
        warnings.take_warnings(),
        ["container-enforcer: task 'napping' was stopped; it was resumed first"]
    );
}

#[tokio::test]
async fn a_transition_on_a_stale_copy_rereads_and_rechecks() {
    let fake = Arc::new(FakeRuntime::with_image("taskbox-base"));
    let (service, _dir) = service(fake);
    let stale = service.create_task(request("raced"), no_progress()).await.unwrap().task;
    // Another caller stops the task; our stale copy still says running.
    service.stop(&stale.id, None).await.unwrap();
    let err = service
        .transition(stale, LifecycleEvent::Stop, None, |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("already stopped"), "{err}");
}

#[tokio::test]
async fn commands_run_under_the_supervisor_and_old_containers_fall_back() {
    use crate::runtime::supervisor::SUPERVISOR_PATH;
    let run = |background| ExecRequest {
        command: "echo hi".into(),
        background,
        ..Default::default()
    };
    let fake = Arc::new(FakeRuntime::with_image("taskbox-base"));
    let (service, _dir) = service(fake.clone());
    let task = service.create_task(request("new"), no_progress()).await.unwrap().task;
    service.execute(&task.id, run(false), Default::default()).await.unwrap();
    let cmd = fake.lock().execs.last().unwrap().cmd.clone();
    assert_eq!(cmd[..4], [SUPERVISOR_PATH, "run", "--id", cmd[3].as_str()]);
    assert_eq!(cmd[cmd.len() - 3..], ["bash", "-lc", "echo hi"]);
    // The fake's user is a name, which background executions refuse (their files must be
    // handed to a number); root is one.
    let err = service
        .execute(&task.id, run(true), Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("by name"), "{err}");
    let as_root = ExecRequest {
        user: Some("root".into()),
        ..run(true)
    };
    let started = service.execute(&task.id, as_root, Default::default()).await.unwrap();
    assert!(started.background);
    let cmd = fake.lock().execs.last().unwrap().cmd.clone();
    assert!(
        cmd.contains(&format!("/.taskbox/run/{}", started.execution_id)),
        "{cmd:?}"
    );

    // A container made before the supervisor: commands run as before; background is refused.
    fake.lock().without_mounts = true;
    let old = service.create_task(request("old"), no_progress()).await.unwrap().task;
    service.execute(&old.id, run(false), Default::default()).await.unwrap();
    assert_eq!(fake.lock().execs.last().unwrap().cmd, ["bash", "-lc", "echo hi"]);
    let err = service
        .execute(&old.id, run(true), Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_argument");
    assert!(err.to_string().contains("restore"), "{err}");
}
