//! The `[hooks]` section of the server's config: one table per built-in hook (each can be
//! switched off with `enabled = false`), the external hooks, and the Claude Code hook.

use serde::Deserialize;

use super::HookEvent;
use super::claude_code::ClaudeCodeHookConfig;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HooksConfig {
    /// `taskbox hook claude-code pre-tool-use`.
    #[serde(rename = "claude_code", alias = "claude-code")]
    pub claude_code: ClaudeCodeHookConfig,
    pub container_enforcer: ContainerEnforcerConfig,
    pub isolation_checker: Toggle,
    pub resource_monitor: ResourceMonitorConfig,
    /// Deprecated: `[workspace] create_branch`. Read and moved there by `Config`, with a warning.
    pub branch_creator: Option<Toggle>,
    pub branch_validator: Toggle,
    /// Deprecated: `[workspace] checkout_submodules`. Read and moved there by `Config`.
    pub submodule_creator: Option<Toggle>,
    pub task_resumer: Toggle,
    pub checkpoint_creator: CheckpointCreatorConfig,
    pub plan_file_creator: Toggle,
    pub plan_updater: Toggle,
    pub plan_finalizer: Toggle,
    /// `[[hooks.external]]`: commands run at events, in the order given.
    pub external: Vec<ExternalHookConfig>,
}

/// A built-in hook with nothing to set but whether it runs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Toggle {
    pub enabled: bool,
}

impl Default for Toggle {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ContainerEnforcerConfig {
    pub enabled: bool,
    /// Start a stopped task (or its container stopped behind taskbox's back) before running
    /// a command in it, instead of refusing.
    pub resume_stopped: bool,
}

impl Default for ContainerEnforcerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            resume_stopped: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceMonitorConfig {
    pub enabled: bool,
    /// Warn when an execution leaves the container above this share of its memory limit.
    pub memory_warn_percent: u8,
}

impl Default for ResourceMonitorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            memory_warn_percent: 90,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointCreatorConfig {
    pub enabled: bool,
    /// Take an automatic checkpoint after every this many executions of a task (0: never).
    pub every_executions: u32,
    /// ... but not within this many seconds of the task's newest checkpoint (or its creation):
    /// an agent running commands back to back would otherwise pay a `docker commit` every few
    /// seconds, and the `keep_automatic` kept would span only its last minute (0: no floor).
    pub min_interval_s: u64,
}

impl Default for CheckpointCreatorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            every_executions: 20,
            min_interval_s: 300,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalHookConfig {
    /// How the hook is named in events and errors (default: the command's file name).
    pub name: Option<String>,
    pub event: HookEvent,
    /// The program and its arguments (no shell: use ["sh", "-c", "…"] for one).
    pub command: Vec<String>,
    /// Killed, and counted as failed, after this many seconds.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Only for these tools (empty: every tool, and events outside tool calls).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Only for these tasks, by name or id (empty: every task, and events with no task).
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Deny when the hook fails or times out (default: warn and go on).
    #[serde(default)]
    pub fail_closed: bool,
}

fn default_timeout_s() -> u64 {
    10
}

impl ExternalHookConfig {
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let program = self.command.first().map(String::as_str).unwrap_or("external");
            let file = std::path::Path::new(program)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| program.to_string());
            format!("external:{file}")
        })
    }
}

impl HooksConfig {
    /// Refuses external hooks that could never run.
    pub fn validate(&self) -> Result<()> {
        for (i, hook) in self.external.iter().enumerate() {
            if hook.command.first().is_none_or(|c| c.trim().is_empty()) {
                return Err(Error::Config(format!(
                    "hooks.external[{i}]: `command` is empty; give the program and its arguments, e.g. [\"/usr/local/bin/check\", \"--strict\"]"
                )));
            }
            if !(1..=3600).contains(&hook.timeout_s) {
                return Err(Error::Config(format!(
                    "hooks.external[{i}] ({}): timeout_s must be between 1 and 3600, not {}",
                    hook.name(),
                    hook.timeout_s
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn every_builtin_is_on_by_default_and_can_be_switched_off() {
        let config: HooksConfig = toml::from_str("").unwrap();
        assert!(config.checkpoint_creator.enabled && config.isolation_checker.enabled);
        assert_eq!(config.checkpoint_creator.every_executions, 20);
        let config: HooksConfig =
            toml::from_str("[isolation-checker]\nenabled = false\n[checkpoint-creator]\nevery_executions = 5\n")
                .unwrap();
        assert!(!config.isolation_checker.enabled);
        assert_eq!(config.checkpoint_creator.every_executions, 5);
    }

    #[test]
    fn external_hooks_parse_and_are_validated() {
        let config: HooksConfig = toml::from_str(
            "[[external]]\nevent = \"before_exec\"\ncommand = [\"/bin/check\", \"-q\"]\ntools = [\"execute_in_task\"]\n",
        )
        .unwrap();
        assert_eq!(config.external[0].event, HookEvent::BeforeExec);
        assert_eq!(config.external[0].timeout_s, 10);
        assert_eq!(config.external[0].name(), "external:check");
        config.validate().unwrap();
        let empty: HooksConfig = toml::from_str("[[external]]\nevent = \"after_exec\"\ncommand = []\n").unwrap();
        assert!(empty.validate().unwrap_err().to_string().contains("`command` is empty"));
        let bad = toml::from_str::<HooksConfig>("[[external]]\nevent = \"before_lunch\"\ncommand = [\"x\"]\n");
        assert!(bad.unwrap_err().to_string().contains("before_lunch"));
    }
}
