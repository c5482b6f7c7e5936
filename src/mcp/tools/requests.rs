//! From a tool's parameters to the service request it makes. Each conversion takes the
//! parameters apart field by field, so a parameter added to a tool and forgotten here fails
//! to compile. The task a call is about is resolved separately (`on_task`), and whose tasks
//! they are comes from the session, never from the arguments.

use super::exec::ExecuteParams;
use super::tasks::{CleanupTaskParams, CreateTaskParams, VolumeParam};
use crate::domain::volumes::VolumeRequest;
use crate::domain::{Owner, TaskStatus};
use crate::error::Result;
use crate::task::service::{CleanupRequest, CreateTaskRequest, ExecRequest, RepoRequest, parse_duration};

impl From<ExecuteParams> for ExecRequest {
    fn from(p: ExecuteParams) -> Self {
        let ExecuteParams {
            task: _,
            command,
            workdir,
            env,
            timeout_s,
            stdin,
            user,
            explanation,
            background,
            stall_s,
            yield_after_s,
        } = p;
        Self {
            stall_s,
            yield_after_s,
            background: background.unwrap_or(false),
            command,
            workdir,
            env: env.unwrap_or_default(),
            timeout_s,
            stdin,
            user,
            explanation,
        }
    }
}

impl CreateTaskParams {
    pub(crate) fn into_request(self, owner: Owner) -> CreateTaskRequest {
        let Self {
            name,
            description,
            image,
            network,
            allow,
            memory_mb,
            cpus,
            env,
            repo_path,
            base_ref,
            include_uncommitted,
            from_checkpoint,
            secrets,
            volumes,
        } = self;
        CreateTaskRequest {
            owner,
            name,
            description,
            image,
            network,
            allow: allow.unwrap_or_default(),
            memory_mb,
            cpus,
            env: env.unwrap_or_default(),
            repo: RepoRequest {
                repo_path: repo_path.map(Into::into),
                base_ref,
                include_uncommitted,
            },
            from_checkpoint,
            secrets: secrets.unwrap_or_default(),
            volumes: volumes
                .unwrap_or_default()
                .into_iter()
                .map(|VolumeParam { name, path }| VolumeRequest { name, path })
                .collect(),
        }
    }
}

impl CleanupTaskParams {
    /// Fails on a status or an age that does not parse.
    pub(crate) fn into_request(self, owner: Owner) -> Result<CleanupRequest> {
        let Self {
            task,
            status,
            older_than,
            dry_run,
        } = self;
        Ok(CleanupRequest {
            owner,
            task,
            status: status.as_deref().map(str::parse::<TaskStatus>).transpose()?,
            older_than: older_than.as_deref().map(parse_duration).transpose()?,
            dry_run,
        })
    }
}
