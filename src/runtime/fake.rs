//! An in-memory `ContainerRuntime` for unit tests of service logic and, through the
//! `test-support` feature, in-process integration tests of the MCP layer (never used by the
//! binary). Execs answer from a script of canned replies; any operation can be made to fail
//! to exercise rollbacks.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;

use super::{
    ContainerRuntime, ContainerSpec, ContainerState, DuplexExec, ExecHandle, ExecSpec, ImageInfo, Isolation, Labelled,
    MountInfo, ObjectKind, OutputChunk, ResourceSample, Result, RuntimeError, SampleDepth, SubnetPool, VolumeInfo,
};

#[derive(Default)]
pub struct FakeRuntime {
    pub state: Mutex<FakeState>,
}

#[derive(Default)]
pub struct FakeState {
    /// Image → labels.
    pub images: HashMap<String, HashMap<String, String>>,
    pub networks: HashSet<String>,
    /// Container id → running.
    pub containers: HashMap<String, bool>,
    /// Container id → its labels, as created.
    pub container_labels: HashMap<String, HashMap<String, String>>,
    /// Operations that fail: "create_network", "create_container", "start_container", "exec".
    pub fail: HashSet<&'static str>,
    pub execs: Vec<ExecSpec>,
    /// Container id → its mounts besides the workspace, as created.
    pub container_mounts: HashMap<String, Vec<MountInfo>>,
    /// Make containers without those mounts, like a taskbox before the supervisor did.
    pub without_mounts: bool,
    /// Volume name → what Docker would say of it.
    pub volumes: HashMap<String, VolumeInfo>,
    /// Image → path → contents, for `read_image_files` (e.g. `/etc/passwd`).
    pub image_files: HashMap<String, HashMap<String, Vec<u8>>>,
    next_id: u64,
}

impl FakeRuntime {
    pub fn with_image(image: &str) -> Self {
        let fake = Self::default();
        let labels = super::images::builtin(image)
            .map(super::images::labels)
            .unwrap_or_default();
        fake.lock().images.insert(image.to_string(), labels);
        fake
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        // A test that panicked while holding the lock already failed: carry on with its state.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check(&self, op: &'static str) -> Result<()> {
        if self.lock().fail.contains(op) {
            return Err(RuntimeError::Api(format!("{op} failed (fake)")));
        }
        Ok(())
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn image_info(&self, image: &str) -> Result<Option<ImageInfo>> {
        Ok(self.lock().images.get(image).map(|labels| ImageInfo {
            id: format!("sha256:fake-{image}"),
            user: "agent".into(),
            labels: labels.clone(),
            env: Vec::new(),
        }))
    }

    async fn build_image(
        &self,
        tag: &str,
        _: Vec<u8>,
        labels: HashMap<String, String>,
        progress: &(dyn for<'a> Fn(&'a str) + Send + Sync),
    ) -> Result<()> {
        progress("fake build");
        self.lock().images.insert(tag.to_string(), labels);
        Ok(())
    }

    async fn create_network(&self, name: &str, _: HashMap<String, String>, _: &SubnetPool, _: bool) -> Result<()> {
        self.check("create_network")?;
        self.lock().networks.insert(name.to_string());
        Ok(())
    }

    async fn network_info(&self, name: &str) -> Result<Option<super::NetworkInfo>> {
        if !self.lock().networks.contains(name) {
            return Ok(None);
        }
        // The fake has no bridges: loopback, where a test's proxy can listen.
        Ok(Some(super::NetworkInfo {
            subnet: "127.0.0.0/8".parse().map_err(super::RuntimeError::Api)?,
            gateway: std::net::Ipv4Addr::LOCALHOST,
            internal: true,
        }))
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        self.lock().networks.remove(name);
        Ok(())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        self.check("create_container")?;
        let mut state = self.lock();
        state.next_id += 1;
        let id = format!("c{}", state.next_id);
        state.containers.insert(id.clone(), false);
        state.container_labels.insert(id.clone(), spec.labels.clone());
        let mounts = match state.without_mounts {
            true => Vec::new(),
            false => spec
                .mounts
                .iter()
                .map(|m| MountInfo {
                    kind: "bind".into(),
                    source: m.source.display().to_string(),
                    destination: m.target.clone(),
                    volume: None,
                })
                .chain(spec.volumes.iter().map(|v| MountInfo {
                    kind: "volume".into(),
                    source: format!("/var/lib/docker/volumes/{}/_data", v.volume),
                    destination: v.target.clone(),
                    volume: state.volumes.get(&v.volume).cloned(),
                }))
                .collect(),
        };
        state.container_mounts.insert(id.clone(), mounts);
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.check("start_container")?;
        match self.lock().containers.get_mut(id) {
            Some(running) => {
                *running = true;
                Ok(())
            }
            None => Err(RuntimeError::NotFound { what: id.to_string() }),
        }
    }

    async fn stop_container(&self, id: &str, _: i32) -> Result<()> {
        if let Some(running) = self.lock().containers.get_mut(id) {
            *running = false;
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.lock().containers.remove(id);
        Ok(())
    }

    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerState>> {
        let state = self.lock();
        Ok(state.containers.get(id).map(|running| ContainerState {
            running: *running,
            status: if *running { "running" } else { "exited" }.into(),
            exit_code: Some(0),
            oom_killed: false,
            error: None,
            labels: state.container_labels.get(id).cloned().unwrap_or_default(),
            isolation: Isolation {
                mounts: state.container_mounts.get(id).cloned().unwrap_or_default(),
                cap_drop: vec!["ALL".into()],
                security_opt: vec!["no-new-privileges".into()],
                ..Default::default()
            },
        }))
    }

    async fn resource_sample(&self, _: &str, _: SampleDepth) -> Result<Option<ResourceSample>> {
        Ok(None)
    }

    async fn runtime_args(&self, _: &str) -> Result<Option<Vec<String>>> {
        Ok(None)
    }

    async fn container_layer_bytes(&self, _: &str) -> Result<Option<u64>> {
        Ok(None)
    }

    async fn image_layer_bytes(&self, _: &str) -> Result<Option<u64>> {
        Ok(None)
    }

    async fn commit_container(&self, id: &str, tag: &str, labels: HashMap<String, String>) -> Result<String> {
        self.check("commit_container")?;
        let image = format!("sha256:{id}-{tag}");
        self.lock().images.insert(image.clone(), labels);
        Ok(image)
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        self.lock().images.remove(image);
        Ok(())
    }

    async fn list_labelled(&self, kind: ObjectKind, home: &str) -> Result<Vec<Labelled>> {
        let state = self.lock();
        let ours = |labels: &HashMap<String, String>| labels.get(super::LABEL_HOME).map(String::as_str) == Some(home);
        let labelled = |(id, labels): (&String, &HashMap<String, String>)| Labelled {
            id: id.clone(),
            name: id.clone(),
            task_id: labels.get(super::LABEL_TASK_ID).cloned(),
            server: labels.get(super::LABEL_SERVER).cloned(),
        };
        Ok(match kind {
            // The fake keeps no labels on networks.
            ObjectKind::Network => Vec::new(),
            ObjectKind::Container => state
                .container_labels
                .iter()
                .filter(|(id, l)| ours(l) && state.containers.contains_key(*id))
                .map(labelled)
                .collect(),
            ObjectKind::Image => state.images.iter().filter(|(_, l)| ours(l)).map(labelled).collect(),
        })
    }

    async fn create_volume(&self, name: &str, labels: HashMap<String, String>) -> Result<VolumeInfo> {
        self.check("create_volume")?;
        let mut state = self.lock();
        let volume = state.volumes.entry(name.to_string()).or_insert_with(|| VolumeInfo {
            name: name.to_string(),
            driver: "local".into(),
            labels,
            mountpoint: format!("/var/lib/docker/volumes/{name}/_data"),
            ..Default::default()
        });
        Ok(volume.clone())
    }

    async fn inspect_volume(&self, name: &str) -> Result<Option<VolumeInfo>> {
        Ok(self.lock().volumes.get(name).cloned())
    }

    async fn list_volumes(&self, home: &str) -> Result<Vec<VolumeInfo>> {
        Ok(self
            .lock()
            .volumes
            .values()
            .filter(|v| v.labels.get(super::LABEL_HOME).map(String::as_str) == Some(home))
            .cloned()
            .collect())
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.lock().volumes.remove(name);
        Ok(())
    }

    async fn read_image_files(
        &self,
        image: &str,
        paths: &[&str],
        limit: u64,
        _: HashMap<String, String>,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let state = self.lock();
        let files = state.image_files.get(image);
        Ok(paths
            .iter()
            .map(|path| {
                files
                    .and_then(|f| f.get(*path))
                    .filter(|bytes| bytes.len() as u64 <= limit)
                    .cloned()
            })
            .collect())
    }

    async fn exec(&self, _: &str, spec: ExecSpec) -> Result<ExecHandle> {
        self.check("exec")?;
        // The container-preparation exec answers with the shell; others echo their command.
        let reply = if spec.cmd.iter().any(|a| a.contains("chown")) {
            "bash\n".to_string()
        } else {
            spec.cmd.last().cloned().unwrap_or_default()
        };
        self.lock().execs.push(spec);
        let output = futures_util::stream::iter([Ok(OutputChunk::Stdout(Bytes::from(reply)))]).boxed();
        Ok(ExecHandle {
            exec_id: "x".into(),
            output,
        })
    }

    /// Echoes its input back as stdout (a relay to a server that repeats what it is sent).
    async fn exec_duplex(&self, _: &str, spec: ExecSpec) -> Result<DuplexExec> {
        use tokio::io::AsyncReadExt;
        self.check("exec")?;
        self.lock().execs.push(spec);
        let (input, echo) = tokio::io::duplex(64 * 1024);
        let output = futures_util::stream::unfold(echo, |mut echo| async move {
            let mut buf = vec![0u8; 8192];
            match echo.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(OutputChunk::Stdout(Bytes::from(buf))), echo))
                }
            }
        })
        .boxed();
        Ok(DuplexExec {
            exec_id: "x".into(),
            output,
            input: Box::pin(input),
        })
    }

    async fn exec_exit_code(&self, _: &str) -> Result<Option<i64>> {
        Ok(Some(0))
    }
}
