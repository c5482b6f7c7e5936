//! The floor for the benches: the Docker Engine API itself, over /var/run/docker.sock with
//! bollard, no CLI. What taskbox does in Docker terms, done directly: exec create + start (the
//! output drained) + inspect, and container create + start of the same image (on a network of
//! its own, as a task gets).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use futures_util::StreamExt;

/// Label on everything made here, so cleanup finds it even after a panic.
const LABEL: &str = "taskbox-bench.raw";

/// `LABEL=<this process>`: what this run made, for `Cleanup`.
pub fn label() -> String {
    format!("{LABEL}={}", std::process::id())
}

pub struct RawDocker {
    docker: Docker,
    containers: Vec<String>,
    networks: Vec<String>,
}

impl RawDocker {
    pub fn connect() -> Self {
        Self {
            docker: Docker::connect_with_local_defaults().unwrap(),
            containers: Vec::new(),
            networks: Vec::new(),
        }
    }

    /// `true` in the container as taskbox runs a command: exec create, start attached with the
    /// output read to its end, then inspect for the exit code.
    pub async fn exec_true(&self, container: &str) -> i64 {
        self.exec(container, &["true"]).await
    }

    /// `cmd` the same way: exec create, start attached, read to the end, inspect.
    pub async fn exec(&self, container: &str, cmd: &[&str]) -> i64 {
        let options = CreateExecOptions {
            cmd: Some(cmd.iter().map(|arg| arg.to_string()).collect()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = self.docker.create_exec(container, options).await.unwrap();
        let started = self
            .docker
            .start_exec(&created.id, Some(StartExecOptions::default()))
            .await
            .unwrap();
        if let StartExecResults::Attached { mut output, .. } = started {
            while output.next().await.is_some() {}
        }
        self.docker
            .inspect_exec(&created.id)
            .await
            .unwrap()
            .exit_code
            .unwrap_or(-1)
    }

    /// A container of `image` kept alive like a task's (init, `sleep infinity`), created and
    /// started; on a fresh bridge network of its own when `own_network`.
    pub async fn create_start(&mut self, image: &str, own_network: bool) -> String {
        let labels = std::collections::HashMap::from([(LABEL.to_string(), std::process::id().to_string())]);
        let network_mode = if own_network {
            let name = format!("taskbox-bench-raw-{}-{}", std::process::id(), self.networks.len());
            self.docker
                .create_network(NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                })
                .await
                .unwrap();
            self.networks.push(name.clone());
            Some(name)
        } else {
            None
        };
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(vec!["sleep".into(), "infinity".into()]),
            entrypoint: Some(vec![]),
            labels: Some(labels),
            host_config: Some(HostConfig {
                init: Some(true),
                network_mode,
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self.docker.create_container(None, body).await.unwrap().id;
        self.docker.start_container(&id, None).await.unwrap();
        self.containers.push(id.clone());
        id
    }

    /// Removes every container and network made here.
    pub async fn cleanup(&mut self) {
        let force = RemoveContainerOptionsBuilder::default().force(true).build();
        for id in self.containers.drain(..) {
            let _ = self.docker.remove_container(&id, Some(force.clone())).await;
        }
        for name in self.networks.drain(..) {
            let _ = self.docker.remove_network(&name).await;
        }
    }
}
