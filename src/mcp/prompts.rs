//! Slash commands as MCP prompts. The files in `commands/` are compiled in; a directory named
//! in the config (`commands.dir`) overrides them by name or adds more. Each file has front
//! matter (description, arguments) and a body in which `{{argument}}` is replaced.

use std::collections::BTreeMap;
use std::path::Path;

use rmcp::model::{GetPromptResult, Prompt, PromptArgument, PromptMessage, Role};

use crate::error::{Error, Result};

/// The commands shipped with taskbox: (name, file content).
pub const BUILTIN_COMMANDS: &[(&str, &str)] = &[
    ("create-task", include_str!("../../commands/create-task.md")),
    ("resume-task", include_str!("../../commands/resume-task.md")),
    ("list-tasks", include_str!("../../commands/list-tasks.md")),
    ("detach", include_str!("../../commands/detach.md")),
    ("complete-task", include_str!("../../commands/complete-task.md")),
    ("cleanup-task", include_str!("../../commands/cleanup-task.md")),
    ("checkpoint", include_str!("../../commands/checkpoint.md")),
    (
        "restore-checkpoint",
        include_str!("../../commands/restore-checkpoint.md"),
    ),
    ("task-history", include_str!("../../commands/task-history.md")),
    ("task-executions", include_str!("../../commands/task-executions.md")),
    ("task-decisions", include_str!("../../commands/task-decisions.md")),
    ("find-task", include_str!("../../commands/find-task.md")),
    ("task-stats", include_str!("../../commands/task-stats.md")),
    ("run-in-background", include_str!("../../commands/run-in-background.md")),
];

#[derive(Debug, Clone, PartialEq)]
pub struct CommandArg {
    pub name: String,
    pub description: String,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub description: String,
    pub arguments: Vec<CommandArg>,
    pub body: String,
}

impl Command {
    /// Parses a command file: `---` front matter (`description:`, `arguments:` with `- name:`,
    /// `description:`, `required:` items), `---`, then the body.
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("command '{name}': {why}"));
        let rest = text
            .strip_prefix("---\n")
            .ok_or_else(|| bad("it must start with a '---' front matter line"))?;
        let (front, body) = rest
            .split_once("\n---\n")
            .ok_or_else(|| bad("the front matter has no closing '---'"))?;
        let mut description = None;
        let mut arguments: Vec<CommandArg> = Vec::new();
        for line in front.lines().filter(|l| !l.trim().is_empty()) {
            let (key, value) = line
                .trim()
                .trim_start_matches("- ")
                .split_once(':')
                .ok_or_else(|| bad(&format!("cannot read front matter line '{line}'")))?;
            let value = value.trim().trim_matches('"').to_string();
            match (key.trim(), line.trim_start().starts_with("- "), arguments.last_mut()) {
                ("description", false, _) if !line.starts_with(' ') => description = Some(value),
                ("arguments", _, _) => {}
                ("name", true, _) => arguments.push(CommandArg {
                    name: value,
                    description: String::new(),
                    required: false,
                }),
                ("description", false, Some(arg)) => arg.description = value,
                ("required", false, Some(arg)) => arg.required = value == "true",
                (other, _, _) => return Err(bad(&format!("unknown front matter key '{other}'"))),
            }
        }
        Ok(Self {
            name: name.to_string(),
            description: description.ok_or_else(|| bad("the front matter has no description"))?,
            arguments,
            body: body.trim().to_string(),
        })
    }

    pub fn to_prompt(&self) -> Prompt {
        let arguments = self
            .arguments
            .iter()
            .map(|a| {
                let mut arg = PromptArgument::new(a.name.clone());
                arg.description = Some(a.description.clone());
                arg.required = Some(a.required);
                arg
            })
            .collect();
        Prompt::new(self.name.clone(), Some(self.description.clone()), Some(arguments))
    }

    /// The body with every `{{argument}}` replaced; a missing optional argument becomes
    /// "(not given)", a missing required one is an error.
    pub fn render(&self, values: &BTreeMap<String, String>) -> Result<GetPromptResult> {
        let mut text = self.body.clone();
        for arg in &self.arguments {
            let value = values.get(&arg.name).map(|v| v.trim()).filter(|v| !v.is_empty());
            let value = match (value, arg.required) {
                (Some(v), _) => v.to_string(),
                (None, true) => {
                    return Err(Error::invalid(
                        "arguments",
                        format!("the /{} command needs `{}`: {}", self.name, arg.name, arg.description),
                    ));
                }
                (None, false) => "(not given)".to_string(),
            };
            text = text.replace(&format!("{{{{{}}}}}", arg.name), &value);
        }
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description(self.description.clone()))
    }
}

/// The built-in commands, overridden or extended by `*.md` files in `dir`.
pub fn load(dir: Option<&Path>) -> Result<Vec<Command>> {
    let mut commands = BTreeMap::new();
    for (name, text) in BUILTIN_COMMANDS {
        commands.insert(name.to_string(), Command::parse(name, text)?);
    }
    if let Some(dir) = dir {
        let entries =
            std::fs::read_dir(dir).map_err(|e| Error::Config(format!("commands.dir {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|_| path.extension().is_some_and(|e| e == "md"))
            else {
                continue;
            };
            if name.eq_ignore_ascii_case("readme") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            commands.insert(name.to_string(), Command::parse(name, &text)?);
        }
    }
    Ok(commands.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn every_builtin_command_parses_with_arguments_used_in_its_body() {
        for command in load(None).unwrap() {
            assert!(!command.description.is_empty(), "{}", command.name);
            for arg in &command.arguments {
                assert!(!arg.description.is_empty(), "{}: {}", command.name, arg.name);
                assert!(
                    command.body.contains(&format!("{{{{{}}}}}", arg.name)),
                    "{}: argument {} is never used",
                    command.name,
                    arg.name
                );
            }
        }
        assert_eq!(load(None).unwrap().len(), BUILTIN_COMMANDS.len());
    }

    #[test]
    fn render_substitutes_and_requires() {
        let command = Command::parse(
            "demo",
            "---\ndescription: Demo\narguments:\n  - name: name\n    description: The name\n    required: true\n  - name: label\n    description: A label\n---\nCreate {{name}} ({{label}}).\n",
        )
        .unwrap();
        let values = BTreeMap::from([("name".to_string(), "x".to_string())]);
        let rendered = command.render(&values).unwrap();
        let text = serde_json::to_value(&rendered.messages[0].content).unwrap();
        assert_eq!(text["text"], "Create x ((not given)).");
        let err = command.render(&BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("needs `name`"), "{err}");
        assert!(Command::parse("bad", "no front matter").is_err());
    }

    #[test]
    fn a_directory_overrides_and_adds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("checkpoint.md"),
            "---\ndescription: Mine\n---\nDo it my way.\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("extra.md"), "---\ndescription: Extra\n---\nMore.\n").unwrap();
        let commands = load(Some(dir.path())).unwrap();
        assert_eq!(commands.len(), BUILTIN_COMMANDS.len() + 1);
        let checkpoint = commands.iter().find(|c| c.name == "checkpoint").unwrap();
        assert_eq!(checkpoint.description, "Mine");
    }
}
