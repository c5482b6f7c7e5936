//! Safety hooks: container-enforcer (commands run only in a running container that carries
//! this home's taskbox labels), isolation-checker (refuse a container that can reach the host)
//! and resource-monitor (memory pressure, OOM kills and pids-limit hits after each execution).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;

use super::host::HookHost;
use super::manager::Hook;
use super::{Decision, HookContext, HookEvent};
use crate::domain::{Task, TaskStatus};
use crate::error::Result;
use crate::runtime::{
    ContainerState, Isolation, LABEL_HOME, LABEL_POOL, LABEL_TASK_ID, MountInfo, ResourceSample, SampleDepth,
    volume_belongs,
};

pub const CONTAINER_ENFORCER: &str = "container-enforcer";

/// The task's container as Docker sees it, inspected once per event for all safety hooks
/// (the service may have filled it in already, on its way through the recovery step).
async fn container<'a>(host: &dyn HookHost, context: &'a HookContext) -> Result<Option<&'a ContainerState>> {
    let Some(id) = context.task.as_ref().and_then(|t| t.container_id.clone()) else {
        return Ok(None);
    };
    context
        .container
        .get_or_try_init(|| async { host.inspect_container(&id).await })
        .await
        .map(Option::as_ref)
}

/// Commands run only in a running container that carries this task's and this home's labels.
/// Bringing a stopped task or container back first is the service's recovery step, which this
/// hook's `resume_stopped` switches (`TaskService::recover_before_command`).
pub struct ContainerEnforcer;

#[async_trait]
impl Hook for ContainerEnforcer {
    fn name(&self) -> &str {
        CONTAINER_ENFORCER
    }

    fn handles(&self, context: &HookContext) -> bool {
        context.event == HookEvent::BeforeExec && context.task.as_ref().is_some_and(|t| t.status == TaskStatus::Running)
    }

    async fn run(&self, host: &dyn HookHost, context: &HookContext) -> Decision {
        let Some(task) = &context.task else {
            return Decision::ALLOW;
        };
        let state = match container(host, context).await {
            Ok(state) => state,
            Err(e) => return Decision::Deny(format!("cannot inspect the task's container: {e}")),
        };
        // A vanished container: the recovery step recreated it or failed the task, and the
        // command itself reports what is left.
        let Some(state) = state else {
            return Decision::ALLOW;
        };
        if let Some(problem) = foreign_labels(state, task, host.home()) {
            return Decision::Deny(format!(
                "the task's container {problem}, so taskbox did not make it for this task; refusing to run in it. \
                 Delete the task and create a new one"
            ));
        }
        if state.running {
            return Decision::ALLOW;
        }
        Decision::Deny(format!(
            "the task's container is {} although the task is running; call stop_task then resume_task",
            state.status
        ))
    }
}

/// Why a container is not this task's (labelled for another task or another data directory).
pub fn foreign_labels(state: &ContainerState, task: &Task, home: &Path) -> Option<String> {
    let label = |key: &str| state.labels.get(key).map(String::as_str).unwrap_or("");
    if label(LABEL_TASK_ID) != task.id {
        return Some(format!(
            "is labelled for task '{}', not '{}'",
            label(LABEL_TASK_ID),
            task.id
        ));
    }
    if Path::new(label(LABEL_HOME)) != home {
        return Some(format!(
            "belongs to taskbox home '{}', not this server's '{}'",
            label(LABEL_HOME),
            home.display()
        ));
    }
    None
}

pub struct IsolationChecker;

#[async_trait]
impl Hook for IsolationChecker {
    fn name(&self) -> &str {
        "isolation-checker"
    }

    fn handles(&self, context: &HookContext) -> bool {
        matches!(context.event, HookEvent::BeforeExec | HookEvent::TaskRestored)
            && context.task.as_ref().is_some_and(|t| t.container_id.is_some())
    }

    async fn run(&self, host: &dyn HookHost, context: &HookContext) -> Decision {
        let Some(task) = &context.task else {
            return Decision::ALLOW;
        };
        let state = match container(host, context).await {
            Ok(Some(state)) => state,
            // container-enforcer (or the execution itself) reports a missing container.
            Ok(None) => return Decision::ALLOW,
            Err(e) => return Decision::Deny(format!("cannot inspect the task's container: {e}")),
        };
        let mut problems = isolation_problems(
            &state.isolation,
            &task.workspace,
            &TaskVolumes {
                home: host.home(),
                owner: task.owner.as_str(),
            },
            host.allowed_capabilities(),
        );
        match pool_problem(host, state, task) {
            Ok(Some(problem)) => problems.push(problem),
            Ok(None) => {}
            Err(e) => return Decision::Deny(format!("cannot tell whether the task's container is claimed: {e}")),
        }
        if problems.is_empty() {
            return Decision::ALLOW;
        }
        Decision::Deny(format!(
            "the task's container is not isolated from the host: {}. taskbox does not create containers like this \
             (an older taskbox shared the cgroup namespace): restore a checkpoint (restore_checkpoint) to get a \
             new, hardened container, or delete the task",
            problems.join("; ")
        ))
    }
}

/// A warm-pool entry's container serves a task only once that task claimed it: the task took
/// the entry's id (so the container is labelled for it and mounts its workspace) and the entry
/// left the pool in the same registry write. Any other pool container is refused.
fn pool_problem(host: &dyn HookHost, state: &ContainerState, task: &Task) -> Result<Option<String>> {
    if !state.labels.contains_key(LABEL_POOL) {
        return Ok(None);
    }
    let entry = state.labels.get(LABEL_TASK_ID).map(String::as_str).unwrap_or("");
    if entry != task.id {
        return Ok(Some(format!(
            "it is the container of warm-pool entry '{entry}', which this task did not claim"
        )));
    }
    if host.is_unclaimed_pool_entry(entry)? {
        return Ok(Some(format!(
            "it is the container of warm-pool entry '{entry}', still unclaimed"
        )));
    }
    Ok(None)
}

/// The mounts taskbox itself gives a task's container: the workspace
/// (`workspaces/<id>` in the data directory), the supervisor, read-only, and the task's run
/// directory (`runtime::supervisor`).
fn taskbox_mounts(workspace: &Path) -> Vec<(std::path::PathBuf, &'static str)> {
    use crate::runtime::supervisor::{RUN_DIR, SUPERVISOR_PATH};
    let mut mounts = vec![(workspace.to_path_buf(), "/workspace")];
    let (Some(task_id), Some(home)) = (workspace.file_name(), workspace.parent().and_then(Path::parent)) else {
        return mounts;
    };
    mounts.extend([
        (home.join("bin").join("supervise"), SUPERVISOR_PATH),
        (home.join("tasks").join(task_id).join("run"), RUN_DIR),
    ]);
    mounts
}

/// Whose volumes a task's container may mount: those taskbox made in data directory `home`
/// for `owner` (`runtime::volume_belongs`).
pub struct TaskVolumes<'a> {
    pub home: &'a Path,
    pub owner: &'a str,
}

/// Why a volume mount is not one taskbox gives a task, if it is not: a volume taskbox made for
/// the task's owner here, or an anonymous one Docker made for the image's own `VOLUME` (a
/// 64-hex name, no labels, plain local: empty when first mounted, and never another's).
fn foreign_volume(mount: &MountInfo, volumes: &TaskVolumes<'_>) -> Option<String> {
    let Some(info) = &mount.volume else {
        return Some(format!(
            "it mounts a volume at {} that Docker no longer knows",
            mount.destination
        ));
    };
    if volume_belongs(info, &volumes.home.to_string_lossy(), volumes.owner) {
        return None;
    }
    let anonymous = info.name.len() == 64
        && info.name.bytes().all(|b| b.is_ascii_hexdigit())
        && info.labels.is_empty()
        && info.driver == "local"
        && info.options.is_empty();
    if anonymous {
        return None;
    }
    Some(format!(
        "it mounts volume {} at {}, which taskbox did not make for this task's owner",
        info.name, mount.destination
    ))
}

/// Everything about a container that lets it reach the host; empty when it is as hardened as
/// taskbox makes it.
pub fn isolation_problems(
    isolation: &Isolation,
    workspace: &Path,
    volumes: &TaskVolumes<'_>,
    allowed_caps: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    if isolation.privileged {
        problems.push("it is privileged".to_string());
    }
    let namespaces = [
        ("network", &isolation.network_mode),
        ("pid", &isolation.pid_mode),
        ("ipc", &isolation.ipc_mode),
        ("uts", &isolation.uts_mode),
        ("user", &isolation.userns_mode),
        ("cgroup", &isolation.cgroupns_mode),
    ];
    for (namespace, mode) in namespaces {
        if mode == "host" {
            problems.push(format!("it shares the host's {namespace} namespace"));
        } else if let Some(other) = mode.strip_prefix("container:") {
            problems.push(format!("it shares the {namespace} namespace of container {other}"));
        }
    }
    for mount in &isolation.mounts {
        if mount.source.contains("docker.sock") || mount.destination.contains("docker.sock") {
            problems.push(format!("it mounts the Docker socket ({})", mount.source));
        } else if mount.kind == "volume" {
            problems.extend(foreign_volume(mount, volumes));
        } else if mount.kind != "bind" {
            // tmpfs is no host path.
            continue;
        } else if !taskbox_mounts(workspace)
            .iter()
            .any(|(source, destination)| mount.destination == *destination && Path::new(&mount.source) == source)
        {
            problems.push(format!(
                "it mounts {} ({}) at {}; only the task's workspace may be mounted",
                mount.source, mount.kind, mount.destination
            ));
        }
    }
    if !isolation.devices.is_empty() {
        problems.push(format!("it has host devices: {}", isolation.devices.join(", ")));
    }
    let normalize = |cap: &str| cap.trim_start_matches("CAP_").to_ascii_uppercase();
    if !isolation.cap_drop.iter().any(|c| normalize(c) == "ALL") {
        problems.push("it does not drop all capabilities".to_string());
    }
    let extra: Vec<String> = isolation
        .cap_add
        .iter()
        .map(|c| normalize(c))
        .filter(|c| !allowed_caps.iter().any(|a| normalize(a) == *c))
        .collect();
    if !extra.is_empty() {
        problems.push(format!(
            "it has capabilities beyond the allowed set: {}",
            extra.join(", ")
        ));
    }
    let no_new_privileges = isolation.security_opt.iter().any(|o| {
        matches!(
            o.as_str(),
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true"
        )
    });
    if !no_new_privileges {
        problems.push("it lacks no-new-privileges".to_string());
    }
    problems
}

/// Samples the container around each execution. The baseline is taken before the command so
/// that OOM kills and pids-limit hits are attributed to the execution that caused them.
pub struct ResourceMonitor {
    memory_warn_percent: u8,
    baselines: Mutex<HashMap<String, ResourceSample>>,
}

impl ResourceMonitor {
    pub fn new(memory_warn_percent: u8) -> Self {
        Self {
            memory_warn_percent,
            baselines: Mutex::default(),
        }
    }
}

#[async_trait]
impl Hook for ResourceMonitor {
    fn name(&self) -> &str {
        "resource-monitor"
    }

    fn handles(&self, context: &HookContext) -> bool {
        matches!(context.event, HookEvent::BeforeExec | HookEvent::AfterExec)
            && context.is_execution()
            && context.task.as_ref().is_some_and(|t| t.container_id.is_some())
    }

    async fn run(&self, host: &dyn HookHost, context: &HookContext) -> Decision {
        let Some(container) = context.task.as_ref().and_then(|t| t.container_id.clone()) else {
            return Decision::ALLOW;
        };
        // The baseline needs only the counters the report compares against.
        let depth = match context.event {
            HookEvent::BeforeExec => SampleDepth::LimitHits,
            _ => SampleDepth::Full,
        };
        let sample = match host.resource_sample(&container, depth).await {
            Ok(Some(sample)) => sample,
            Ok(None) => return Decision::ALLOW,
            Err(e) => return Decision::Warn(format!("cannot read the container's resource use: {e}")),
        };
        let mut baselines = self.baselines.lock().unwrap_or_else(|p| p.into_inner());
        let before = baselines.insert(container, sample.clone());
        if context.event == HookEvent::BeforeExec {
            return Decision::ALLOW;
        }
        let findings = resource_findings(before.as_ref(), &sample, self.memory_warn_percent);
        if findings.is_empty() {
            Decision::done(describe_use(&sample))
        } else {
            Decision::Warn(findings.join("; "))
        }
    }
}

fn mib(bytes: u64) -> u64 {
    bytes / (1024 * 1024)
}

fn describe_use(sample: &ResourceSample) -> String {
    format!(
        "memory {} MiB of {}, {} processes",
        mib(sample.memory_bytes),
        sample
            .memory_limit
            .map(|l| format!("{} MiB", mib(l)))
            .unwrap_or("no limit".into()),
        sample.pids
    )
}

/// What an execution ran into, comparing the samples before and after it.
pub fn resource_findings(before: Option<&ResourceSample>, after: &ResourceSample, warn_percent: u8) -> Vec<String> {
    let mut findings = Vec::new();
    let oom = after.oom_kills.saturating_sub(before.map_or(0, |b| b.oom_kills));
    if oom > 0 {
        findings.push(format!(
            "OUT OF MEMORY: the kernel killed {oom} process(es) in the container during this execution because it \
             reached its memory limit of {} MiB; use less memory, or create the task with a larger memory_mb",
            after.memory_limit.map(mib).unwrap_or(0)
        ));
    }
    let pid_hits = after
        .pids_limit_hits
        .saturating_sub(before.map_or(0, |b| b.pids_limit_hits));
    if pid_hits > 0 {
        findings.push(format!(
            "PROCESS LIMIT: {pid_hits} fork(s) failed during this execution because the container reached its limit of {} \
             processes; look for runaway processes (ps aux) and kill them",
            after.pids_limit.map(|l| l.to_string()).unwrap_or_else(|| "?".into())
        ));
    }
    if let Some(limit) = after.memory_limit.filter(|l| *l > 0)
        && after.memory_bytes.saturating_mul(100) >= limit.saturating_mul(u64::from(warn_percent))
    {
        findings.push(format!(
            "memory use is {} MiB, {}% of the container's {} MiB limit",
            mib(after.memory_bytes),
            after.memory_bytes * 100 / limit,
            mib(limit)
        ));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::MountInfo;
    use pretty_assertions::assert_eq;

    fn hardened() -> Isolation {
        Isolation {
            network_mode: "taskbox-t-1".into(),
            mounts: vec![MountInfo {
                kind: "bind".into(),
                source: "/data/workspaces/t-1".into(),
                destination: "/workspace".into(),
                volume: None,
            }],
            cap_add: vec!["CHOWN".into(), "CAP_KILL".into()],
            cap_drop: vec!["ALL".into()],
            security_opt: vec!["no-new-privileges".into()],
            ..Default::default()
        }
    }

    fn problems(isolation: &Isolation) -> Vec<String> {
        isolation_problems(
            isolation,
            Path::new("/data/workspaces/t-1"),
            &TaskVolumes {
                home: Path::new("/data"),
                owner: "alice",
            },
            &["CHOWN".to_string(), "KILL".to_string()],
        )
    }

    #[test]
    fn the_supervisor_and_the_tasks_run_directory_are_taskboxs_own_mounts() {
        let mut with_supervisor = hardened();
        let mount = |source: &str, destination: &str| MountInfo {
            kind: "bind".into(),
            source: source.into(),
            destination: destination.into(),
            volume: None,
        };
        with_supervisor
            .mounts
            .push(mount("/data/bin/supervise", "/.taskbox/bin/supervise"));
        with_supervisor
            .mounts
            .push(mount("/data/tasks/t-1/run", "/.taskbox/run"));
        assert_eq!(problems(&with_supervisor), Vec::<String>::new());
        // The same places from anywhere else, or another task's run directory, are not.
        for (source, destination) in [
            ("/etc", "/.taskbox/bin/supervise"),
            ("/data/tasks/t-2/run", "/.taskbox/run"),
            ("/data/bin/supervise", "/.taskbox/run"),
        ] {
            let mut other = hardened();
            other.mounts.push(mount(source, destination));
            assert_eq!(problems(&other).len(), 1, "{source} at {destination}");
        }
    }

    #[test]
    fn a_hardened_container_passes_and_each_weakness_is_named() {
        assert_eq!(problems(&hardened()), Vec::<String>::new());
        let mut weak = hardened();
        weak.privileged = true;
        weak.pid_mode = "host".into();
        weak.mounts.push(MountInfo {
            kind: "bind".into(),
            source: "/var/run/docker.sock".into(),
            destination: "/var/run/docker.sock".into(),
            volume: None,
        });
        weak.mounts.push(MountInfo {
            kind: "bind".into(),
            source: "/etc".into(),
            destination: "/host-etc".into(),
            volume: None,
        });
        weak.cap_add.push("SYS_ADMIN".into());
        weak.security_opt.clear();
        let found = problems(&weak);
        assert_eq!(found.len(), 6, "{found:?}");
        assert!(found[0].contains("privileged") && found[1].contains("pid namespace"));
        assert!(found[2].contains("Docker socket") && found[3].contains("/etc"));
        assert!(found[4].contains("SYS_ADMIN") && found[5].contains("no-new-privileges"));
    }

    #[test]
    fn the_workspace_must_be_this_tasks_and_volumes_taskboxs_for_its_owner() {
        use crate::runtime::{LABEL_OWNER, VolumeInfo};
        let mut other = hardened();
        other.mounts[0].source = "/data/workspaces/t-2".into();
        assert_eq!(problems(&other).len(), 1);
        let volume = |name: &str, labels: &[(&str, &str)], options: &[(&str, &str)]| MountInfo {
            kind: "volume".into(),
            source: format!("/var/lib/docker/volumes/{name}/_data"),
            destination: "/data".into(),
            volume: Some(VolumeInfo {
                name: name.into(),
                driver: "local".into(),
                labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Default::default()
            }),
        };
        let with = |mount: MountInfo| {
            let mut isolation = hardened();
            isolation.mounts.push(mount);
            problems(&isolation)
        };
        let alices = [(LABEL_HOME, "/data"), (LABEL_OWNER, "alice")];
        assert_eq!(
            with(volume("taskbox-1.alice.named-db", &alices, &[])),
            Vec::<String>::new()
        );
        // An image's own VOLUME: Docker's anonymous volume.
        assert_eq!(with(volume(&"ab12".repeat(16), &[], &[])), Vec::<String>::new());
        for (mount, what) in [
            (
                volume(
                    "taskbox-1.bob.named-db",
                    &[(LABEL_HOME, "/data"), (LABEL_OWNER, "bob")],
                    &[],
                ),
                "another owner's",
            ),
            (
                volume(
                    "taskbox-1.alice.named-db",
                    &[(LABEL_HOME, "/other"), (LABEL_OWNER, "alice")],
                    &[],
                ),
                "another home's",
            ),
            (volume("mydata", &[], &[]), "made outside taskbox"),
            (
                volume(&"ab12".repeat(16), &[], &[("device", "/etc"), ("o", "bind")]),
                "a bind in disguise",
            ),
            (
                volume("taskbox-1.alice.named-db", &alices, &[("device", "/"), ("o", "bind")]),
                "a labelled bind",
            ),
            (
                MountInfo {
                    volume: None,
                    ..volume("gone", &[], &[])
                },
                "one Docker no longer knows",
            ),
        ] {
            let found = with(mount);
            assert_eq!(found.len(), 1, "{what}: {found:?}");
            assert!(found[0].contains("/data"), "{what}: {found:?}");
        }
    }

    #[test]
    fn oom_kills_and_pid_hits_during_an_execution_are_reported() {
        let before = ResourceSample {
            memory_bytes: 10 << 20,
            memory_limit: Some(100 << 20),
            oom_kills: 1,
            pids_limit_hits: 2,
            ..Default::default()
        };
        assert_eq!(resource_findings(Some(&before), &before, 90), Vec::<String>::new());
        let after = ResourceSample {
            memory_bytes: 95 << 20,
            oom_kills: 2,
            pids_limit_hits: 5,
            pids_limit: Some(64),
            ..before.clone()
        };
        let found = resource_findings(Some(&before), &after, 90);
        assert!(
            found[0].starts_with("OUT OF MEMORY: the kernel killed 1 process"),
            "{found:?}"
        );
        assert!(
            found[1].contains("3 fork(s) failed") && found[1].contains("64"),
            "{found:?}"
        );
        assert!(found[2].contains("95%"), "{found:?}");
    }
}
