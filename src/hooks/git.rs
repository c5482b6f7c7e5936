//! Git hooks. branch-validator runs before every sync: the task branch must be a valid git
//! branch name and the workspace's HEAD must be on it, or the sync would put another branch's
//! work on the task branch. (Making the task branch and checking out submodules are steps of
//! task creation, switched by `[workspace]` in the config: `TaskService::prepare_repo`.)

use async_trait::async_trait;

use super::host::HookHost;
use super::manager::Hook;
use super::{Decision, HookContext, HookEvent};

pub const BRANCH_CREATOR: &str = "branch-creator";
pub const SUBMODULE_CREATOR: &str = "submodule-creator";

pub struct BranchValidator;

#[async_trait]
impl Hook for BranchValidator {
    fn name(&self) -> &str {
        "branch-validator"
    }

    fn handles(&self, context: &HookContext) -> bool {
        context.event == HookEvent::BeforeSync && context.task.as_ref().is_some_and(|t| t.repo.branch.is_some())
    }

    async fn run(&self, host: &dyn HookHost, context: &HookContext) -> Decision {
        let Some(task) = &context.task else {
            return Decision::ALLOW;
        };
        let Some(branch) = task.repo.branch.as_deref() else {
            return Decision::ALLOW;
        };
        if !crate::workspace::is_valid_branch_name(branch) {
            return Decision::Deny(format!("'{branch}' is not a valid git branch name"));
        }
        match host.workspace_head(task).await {
            // No answer (no git in the image, no .git): the sync itself says what is wrong.
            Err(_) | Ok(None) => Decision::ALLOW,
            Ok(Some(head)) => match head.strip_prefix("refs/heads/") {
                Some(on) if on == branch => Decision::ALLOW,
                Some(other) => Decision::Deny(format!(
                    "the workspace is on branch '{other}', not on the task branch '{branch}', so its work would not \
                     reach the task branch. Get back with `git checkout {branch}` in /workspace (to keep the commits of \
                     '{other}', run `git merge {other}` after it), then retry"
                )),
                None => Decision::Deny(format!(
                    "the workspace's HEAD is detached at {head}, not on the task branch '{branch}'. Get back with \
                     `git checkout {branch}` in /workspace (to keep the detached commits, run `git checkout -B {branch}` \
                     instead), then retry"
                )),
            },
        }
    }
}
