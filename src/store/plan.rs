//! `plan.md`, the task's plan: written by the plan hooks, read back by agents that attach.
//! It is a markdown file of `## ` sections; an update appends lines at the end of one section.
//! Updates take an exclusive lock on the file, because several server processes may update
//! one plan at once and a read-modify-write must not lose another's lines.

use std::io::Write;
use std::path::PathBuf;

use super::{Result, TaskStore, atomic_write, io_err};

impl TaskStore {
    pub fn plan_path(&self, task_id: &str) -> PathBuf {
        self.task_dir(task_id).join("plan.md")
    }

    /// The plan, or `None` when the task has none.
    pub fn read_plan(&self, task_id: &str) -> Result<Option<String>> {
        let path = self.plan_path(task_id);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub fn write_plan(&self, task_id: &str, text: &str) -> Result<()> {
        let _lock = self.lock_plan(task_id)?;
        atomic_write(&self.plan_path(task_id), |f| f.write_all(text.as_bytes()))
    }

    /// Appends `lines` at the end of section `## <section>` (made at the end when missing).
    /// A task without a plan gets none: the plan hooks may have been off when it was made.
    pub fn append_to_plan(&self, task_id: &str, section: &str, lines: &str) -> Result<bool> {
        let _lock = self.lock_plan(task_id)?;
        let Some(text) = self.read_plan(task_id)? else {
            return Ok(false);
        };
        let updated = insert_in_section(&text, section, lines);
        atomic_write(&self.plan_path(task_id), |f| f.write_all(updated.as_bytes()))?;
        Ok(true)
    }

    /// Replaces the body of section `## <section>` (the plan's result, say).
    pub fn replace_plan_section(&self, task_id: &str, section: &str, body: &str) -> Result<bool> {
        let _lock = self.lock_plan(task_id)?;
        let Some(text) = self.read_plan(task_id)? else {
            return Ok(false);
        };
        let (before, _, after) = split_section(&text, section);
        let updated = format!("{before}## {section}\n\n{}\n{after}", body.trim_end());
        atomic_write(&self.plan_path(task_id), |f| f.write_all(updated.as_bytes()))?;
        Ok(true)
    }

    /// Held until dropped; a separate lock file, since the plan itself is replaced by rename.
    fn lock_plan(&self, task_id: &str) -> Result<std::fs::File> {
        let path = self.task_dir(task_id).join(".plan.lock");
        let file = super::lock::open_lock_file(&path)?;
        file.lock().map_err(io_err(&path))?;
        Ok(file)
    }
}

/// (text before the section's heading, the section's body, the text from the next heading).
fn split_section<'a>(text: &'a str, section: &str) -> (&'a str, &'a str, &'a str) {
    let heading = format!("## {section}\n");
    let Some(start) = text
        .match_indices(&heading)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || text[..i].ends_with('\n'))
    else {
        return (text, "", "");
    };
    let body_start = start + heading.len();
    let end = text[body_start..]
        .find("\n## ")
        .map(|i| body_start + i + 1)
        .unwrap_or(text.len());
    (&text[..start], &text[body_start..end], &text[end..])
}

fn insert_in_section(text: &str, section: &str, lines: &str) -> String {
    let (before, body, after) = split_section(text, section);
    let mut body = body.trim_end().to_string();
    let before = if body.is_empty() && after.is_empty() && !text.contains(&format!("## {section}\n")) {
        format!("{}\n\n", text.trim_end())
    } else {
        before.to_string()
    };
    // A placeholder line (in italics) gives way to the first real entry.
    if body.trim_start().starts_with('_') && !body.contains("\n-") {
        body.clear();
    }
    let sep = if body.is_empty() { "" } else { "\n" };
    let after = if after.is_empty() {
        String::new()
    } else {
        format!("\n{after}")
    };
    format!(
        "{before}## {section}\n\n{}{sep}{}\n{after}",
        body.trim_start_matches('\n'),
        lines.trim_end()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    const PLAN: &str =
        "# Plan\n\n## Goal\n\nFix it.\n\n## Progress\n\n_Nothing yet._\n\n## Result\n\n_Not finished._\n";

    #[test]
    fn appends_at_the_end_of_a_section_and_replaces_placeholders() {
        let once = insert_in_section(PLAN, "Progress", "- one");
        let twice = insert_in_section(&once, "Progress", "- two");
        assert_eq!(
            twice,
            "# Plan\n\n## Goal\n\nFix it.\n\n## Progress\n\n- one\n- two\n\n## Result\n\n_Not finished._\n"
        );
        let added = insert_in_section(PLAN, "Decisions", "- d");
        assert!(added.ends_with("_Not finished._\n\n## Decisions\n\n- d\n"), "{added}");
    }

    #[test]
    fn updates_through_the_store_survive_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = TaskStore::new(dir.path().to_path_buf());
        store.create_task_dir("t-1").unwrap();
        assert!(!store.append_to_plan("t-1", "Progress", "- x").unwrap());
        store.write_plan("t-1", PLAN).unwrap();
        std::thread::scope(|s| {
            for i in 0..8 {
                let store = &store;
                s.spawn(move || store.append_to_plan("t-1", "Progress", &format!("- step {i}")).unwrap());
            }
        });
        store.replace_plan_section("t-1", "Result", "Done.").unwrap();
        let plan = store.read_plan("t-1").unwrap().unwrap();
        assert_eq!(plan.matches("- step ").count(), 8, "{plan}");
        assert!(plan.ends_with("## Result\n\nDone.\n"), "{plan}");
    }
}
