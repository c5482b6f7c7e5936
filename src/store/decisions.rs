//! Layer 3: `decisions.md`, the human-readable log of decisions made in a task, appended to
//! (never rewritten) and fsync'd.

use std::io::Write;

use super::{Result, TaskStore, io_err};
use crate::domain::Decision;

impl TaskStore {
    pub fn append_decision(&self, decision: &Decision) -> Result<()> {
        let path = self.task_dir(&decision.task_id).join("decisions.md");
        let new_file = !path.exists();
        let mut text = String::new();
        if new_file {
            text.push_str(&format!("# Decisions of task {}\n", decision.task_id));
        }
        text.push_str(&format!(
            "\n## {} — {}\n\n{}\n",
            decision.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
            decision.agent.as_deref().unwrap_or("unknown agent"),
            decision.decision.trim()
        ));
        if let Some(rationale) = decision.rationale.as_deref().filter(|r| !r.trim().is_empty()) {
            text.push_str(&format!("\n_Why:_ {}\n", rationale.trim()));
        }
        let mut file = super::private_file()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        file.write_all(text.as_bytes()).map_err(io_err(&path))?;
        file.sync_data().map_err(io_err(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now;

    #[test]
    fn decisions_append_as_markdown() {
        let dir = tempfile::tempdir().unwrap();
        let store = TaskStore::new(dir.path().to_path_buf());
        store.create_task_dir("t-1").unwrap();
        for (text, why) in [("Use sqlite", Some("it is embedded")), ("Skip the cache", None)] {
            store
                .append_decision(&Decision {
                    id: 1,
                    task_id: "t-1".into(),
                    decision: text.into(),
                    rationale: why.map(String::from),
                    agent: Some("claude".into()),
                    created_at: now(),
                })
                .unwrap();
        }
        let md = std::fs::read_to_string(dir.path().join("t-1/decisions.md")).unwrap();
        assert!(md.starts_with("# Decisions of task t-1\n"));
        assert_eq!(md.matches("## ").count(), 2);
        assert!(md.contains("Use sqlite\n\n_Why:_ it is embedded\n"));
        assert!(md.trim_end().ends_with("Skip the cache"));
    }
}
