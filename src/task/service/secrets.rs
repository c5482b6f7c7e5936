//! Secrets by reference (docs/secrets.md): a task names secrets the server's config declares
//! (`[secrets.NAME]`); their values are read when a command starts and given to that
//! command's environment only, never stored. What a command prints is redacted
//! (`task::redact`), and a sync leaves out of its commit files that hold a value.

use std::io::Read;
use std::sync::Arc;

use super::TaskService;
use crate::config::SecretSource;
use crate::domain::{Event, EventKind, Owner, Task};
use crate::error::{Error, Result};
use crate::task::redact::{MIN_SECRET_BYTES, Redactor, Secret};

/// The largest value read from a `file:` secret.
const MAX_SECRET_BYTES: u64 = 64 * 1024;
/// The most secrets one task may name.
const MAX_TASK_SECRETS: usize = 32;

impl TaskService {
    /// `names`, checked for `owner`: each must be declared in the config and open to the
    /// owner. A secret the owner may not use gives the same error as one that does not exist,
    /// so that the config's names are not disclosed. Sorted, without repeats.
    pub(super) fn check_secret_names(
        &self,
        owner: &Owner,
        field: &'static str,
        names: &[String],
    ) -> Result<Vec<String>> {
        let mut checked: Vec<String> = Vec::new();
        for name in names {
            match self.config.secrets.get(name) {
                Some(secret) if secret.allows(owner) => checked.push(name.clone()),
                _ => return Err(unknown_secret(field, name)),
            }
        }
        checked.sort();
        checked.dedup();
        if checked.len() > MAX_TASK_SECRETS {
            return Err(Error::invalid(
                field,
                format!("a task may name at most {MAX_TASK_SECRETS} secrets"),
            ));
        }
        Ok(checked)
    }

    /// The values of the task's secrets, read now (a rotated value is used from the next
    /// command on). Fails, naming the secret and never its value, when one is no longer
    /// declared or open to the task's owner, or cannot be read.
    pub(super) fn resolve_secrets(&self, task: &Task) -> Result<Vec<Secret>> {
        let mut secrets = Vec::with_capacity(task.secrets.len());
        for name in &task.secrets {
            let declared = self
                .config
                .secrets
                .get(name)
                .filter(|s| s.allows(&task.owner))
                .ok_or_else(|| {
                    Error::Config(format!(
                        "the task names the secret {name}, which the server's config no longer declares for its \
                         owner; ask the operator to declare it again ([secrets.{name}]), or create a new task without it"
                    ))
                })?;
            let value = read_value(name, &declared.source()?)?;
            secrets.push(Secret {
                name: name.clone(),
                value,
            });
        }
        Ok(secrets)
    }

    /// The task's secrets and the redactor of their values.
    pub(super) fn task_secrets(&self, task: &Task) -> Result<(Vec<Secret>, Arc<Redactor>)> {
        if task.secrets.is_empty() {
            return Ok((Vec::new(), Arc::new(Redactor::none())));
        }
        let secrets = self.resolve_secrets(task)?;
        let redactor = Redactor::new(&secrets).map_err(Error::Internal)?;
        Ok((secrets, Arc::new(redactor)))
    }

    /// The redactor for what is read back of a task's commands later (background output):
    /// the values as they are now. A secret that cannot be read any more is logged and
    /// skipped; what the supervisor wrote was redacted when it was written.
    pub(super) fn redactor_for(&self, task: &Task) -> Arc<Redactor> {
        match self.task_secrets(task) {
            Ok((_, redactor)) => redactor,
            Err(e) => {
                tracing::warn!(task = %task.id, error = %e, "cannot read the task's secrets to redact its output");
                Arc::new(Redactor::none())
            }
        }
    }

    /// The secrets whose values a sync keeps out of commits (those without
    /// `allow_in_commits`).
    pub(super) fn commit_redactor(&self, task: &Task) -> Result<Redactor> {
        let (secrets, _) = self.task_secrets(task)?;
        let kept_out: Vec<Secret> = secrets
            .into_iter()
            .filter(|s| self.config.secrets.get(&s.name).is_some_and(|c| !c.allow_in_commits))
            .collect();
        Redactor::new(&kept_out).map_err(Error::Internal)
    }

    /// `add_task_secret`: gives the task's commands one more secret, from the next command on.
    pub async fn add_secret(&self, task: &str, name: &str) -> Result<Task> {
        let task = self.resolve(Some(task))?;
        let name = self
            .check_secret_names(&task.owner, "name", &[name.to_string()])?
            .remove(0);
        if task.secrets.contains(&name) {
            return Ok(task);
        }
        let mut names = task.secrets.clone();
        names.push(name.clone());
        let names = self.check_secret_names(&task.owner, "name", &names)?;
        let task = self.update(task, |t| t.secrets = names.clone())?;
        self.record(Event::new(
            &task.id,
            EventKind::Other("secret_added".into()),
            serde_json::json!({ "name": name }),
        ))?;
        Ok(task)
    }
}

fn unknown_secret(field: &'static str, name: &str) -> Error {
    Error::invalid(
        field,
        format!(
            "there is no secret named '{name}' for you; the server's operator declares secrets in its config \
             ([secrets.NAME]) and says who may use them"
        ),
    )
}

/// A secret's value from its source: the variable's value, or the file's content without one
/// trailing newline.
fn read_value(name: &str, source: &SecretSource) -> Result<Vec<u8>> {
    let unreadable = |why: String| Error::Config(format!("the secret {name} cannot be read: {why}"));
    let mut value = match source {
        SecretSource::Env(var) => std::env::var_os(var)
            .map(std::os::unix::ffi::OsStringExt::into_vec)
            .ok_or_else(|| {
                unreadable(format!(
                    "the server's environment has no variable {var}; set it where the server starts and restart it"
                ))
            })?,
        SecretSource::File(path) => {
            let mut bytes = Vec::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(MAX_SECRET_BYTES + 1).read_to_end(&mut bytes))
                .map_err(|e| unreadable(format!("{}: {e}", path.display())))?;
            if bytes.len() as u64 > MAX_SECRET_BYTES {
                return Err(unreadable(format!(
                    "{} is larger than {MAX_SECRET_BYTES} bytes",
                    path.display()
                )));
            }
            if bytes.ends_with(b"\n") {
                bytes.pop();
                if bytes.ends_with(b"\r") {
                    bytes.pop();
                }
            }
            bytes
        }
    };
    if value.contains(&0) {
        return Err(unreadable(
            "its value holds a NUL byte, which no environment variable can".into(),
        ));
    }
    if std::str::from_utf8(&value).is_err() {
        return Err(unreadable(
            "its value is not UTF-8 text, which Docker cannot pass as a variable".into(),
        ));
    }
    if value.len() < MIN_SECRET_BYTES {
        value.clear();
        return Err(unreadable(format!(
            "its value is shorter than {MIN_SECRET_BYTES} bytes, too short to redact from output without mangling it"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_lose_one_trailing_newline_and_short_or_missing_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "file-secret-value\n").unwrap();
        assert_eq!(
            read_value("K", &SecretSource::File(path.clone())).unwrap(),
            b"file-secret-value"
        );
        std::fs::write(&path, "short\n").unwrap();
        let err = read_value("K", &SecretSource::File(path)).unwrap_err().to_string();
        assert!(err.contains("shorter than 8") && !err.contains("short\n"), "{err}");
        let err = read_value("K", &SecretSource::Env("TASKBOX_TEST_NO_SUCH_VAR".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no variable TASKBOX_TEST_NO_SUCH_VAR"), "{err}");
    }
}
