//! What an egress task's commands need to reach the network the host reaches: the host's
//! trusted certificates (networks whose TLS passes a re-signing proxy; installed into the
//! container's trust store when it is prepared) and the host's proxy settings.
//! docs/security.md, "Egress".

use std::collections::BTreeMap;
use std::io::Read;

use super::TaskService;
use super::container_ops::{CA_BUNDLE_ENV, CA_BUNDLE_PATH};
use crate::domain::{NetworkMode, Task};

/// The largest certificate bundle passed into a container (the host's is about 200 KiB).
const MAX_BUNDLE_BYTES: u64 = 8 * 1024 * 1024;

const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

impl TaskService {
    /// The bundle to add to a new container's trust store, read now (`None`: none is
    /// configured or it cannot be read, which is logged).
    pub(super) fn certificates_to_trust(&self) -> Option<Vec<u8>> {
        let path = self.ca_bundle.as_ref()?;
        let mut bytes = Vec::new();
        let read = std::fs::File::open(path).and_then(|f| f.take(MAX_BUNDLE_BYTES).read_to_end(&mut bytes));
        match read {
            Ok(_) if bytes.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => Some(bytes),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "network.ca_certificates holds no PEM certificate; not installed");
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read network.ca_certificates");
                None
            }
        }
    }

    /// Variables for a networked task's commands: where the trusted bundle is; for an egress
    /// task the host's proxy settings when `network.pass_proxy_env`, for an allowlist task
    /// its own proxy (listening in this server from now on).
    pub(super) async fn network_env(&self, task: &Task) -> crate::error::Result<BTreeMap<String, String>> {
        let mut env = BTreeMap::new();
        if task.network == NetworkMode::None {
            return Ok(env);
        }
        if self.ca_bundle.is_some() {
            for var in CA_BUNDLE_ENV {
                env.insert(var.to_string(), CA_BUNDLE_PATH.to_string());
            }
        }
        if task.network == NetworkMode::Allowlist {
            env.extend(self.proxy_env(task).await?);
            return Ok(env);
        }
        if self.config.network.pass_proxy_env {
            for var in PROXY_VARS {
                if let Ok(value) = std::env::var(var) {
                    env.insert(var.to_string(), value);
                }
            }
        }
        Ok(env)
    }
}
