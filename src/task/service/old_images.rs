//! Checkpoint images made by taskbox 0.1.0. Its containers had the task's `env` in their
//! configuration and `docker commit` kept it, so such an image carries the task's values
//! (tokens, often) where `docker image inspect` shows them and every container made from it
//! would start with them. Newer checkpoints keep only the image's own variables
//! (runtime/docker.rs, `image_env_only`).
//!
//! Docker cannot edit an image's configuration, and a re-commit would keep the old image as
//! its parent, so these images are not rewritten: `taskbox doctor` names them (variable names,
//! never values), and a container made from one gets those variables set back in its own
//! configuration (`env_set_back`), which a later checkpoint of it keeps.

use std::collections::BTreeMap;

use super::TaskService;
use crate::domain::Task;
use crate::error::Result;
use crate::runtime::LABEL_TASK_ID;

/// A checkpoint image that carries its task's environment.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvCarryingImage {
    pub task_id: String,
    /// `<task>:<seq>`.
    pub checkpoint: String,
    pub image: String,
    /// The variables it carries, by name.
    pub variables: Vec<String>,
}

/// The names of `env`'s variables whose value (not empty) `image_env` holds as is, sorted.
fn carried(image_env: &[String], env: &BTreeMap<String, String>) -> Vec<String> {
    let mut keys: Vec<String> = image_env
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .filter(|(key, value)| !value.is_empty() && env.get(*key).is_some_and(|v| v == value))
        .map(|(key, _)| key.to_string())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// What a container's configuration sets each carried variable to: the value of the image
/// the task started from when it sets one (a task's `env` can override `LANG`), else empty.
/// `PATH` is left as it is without such a value: emptied, the container could not start.
fn set_back(carried: &[String], base_env: &[String]) -> Vec<String> {
    carried
        .iter()
        .filter_map(|key| {
            let base = base_env
                .iter()
                .find(|entry| entry.split_once('=').is_some_and(|(k, _)| k == key));
            match base {
                Some(entry) => Some(entry.clone()),
                None if key == "PATH" => None,
                None => Some(format!("{key}=")),
            }
        })
        .collect()
}

impl TaskService {
    /// `KEY=value` entries for the configuration of `task`'s container made from `image`:
    /// empty unless `image` is a checkpoint image that carries a task's environment (its own
    /// task's, or, for a fork, its source's).
    pub(super) async fn env_set_back(&self, task: &Task, image: &str) -> Result<Vec<String>> {
        // Only checkpoint images can carry a task's env; a task's own image costs no look-up.
        if image == task.image {
            return Ok(Vec::new());
        }
        let Some(info) = self.runtime.image_info(image).await? else {
            return Ok(Vec::new());
        };
        let mut env = task.env.clone();
        let mut base_image = task.image.clone();
        if let Some(maker) = info.labels.get(LABEL_TASK_ID).filter(|id| **id != task.id)
            && let Some(maker) = self.registry.get_task(maker)?
        {
            base_image = maker.image.clone();
            for (key, value) in maker.env {
                env.entry(key).or_insert(value);
            }
        }
        let carried = carried(&info.env, &env);
        if carried.is_empty() {
            return Ok(Vec::new());
        }
        let base_env = self
            .runtime
            .image_info(&base_image)
            .await?
            .map(|i| i.env)
            .unwrap_or_default();
        tracing::info!(
            task = %task.id,
            image,
            variables = %carried.join(","),
            "the checkpoint image carries the task's env (taskbox 0.1.0): set back in the container's configuration"
        );
        Ok(set_back(&carried, &base_env))
    }

    /// Every checkpoint image of every task that carries its task's environment.
    pub async fn env_carrying_images(&self) -> Result<Vec<EnvCarryingImage>> {
        let mut found = Vec::new();
        for id in self.registry.task_ids()? {
            let Some(task) = self.registry.get_task(&id)? else {
                continue;
            };
            if task.env.is_empty() {
                continue;
            }
            for checkpoint in self.registry.list_checkpoints(&task.id)? {
                let Some(image) = checkpoint.image_id else {
                    continue;
                };
                let Some(info) = self.runtime.image_info(&image).await? else {
                    continue;
                };
                let variables = carried(&info.env, &task.env);
                if !variables.is_empty() {
                    found.push(EnvCarryingImage {
                        task_id: task.id.clone(),
                        checkpoint: format!("{}:{}", task.name, checkpoint.seq),
                        image,
                        variables,
                    });
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn only_the_tasks_own_values_count_as_carried() {
        let image = vec![
            "PATH=/usr/bin".to_string(),
            "TOKEN=s3cret".to_string(),
            "LANG=C.UTF-8".to_string(),
            "CLEARED=".to_string(),
        ];
        let task = env(&[
            ("TOKEN", "s3cret"),
            ("LANG", "fr_FR.UTF-8"),
            ("CLEARED", ""),
            ("OTHER", "x"),
        ]);
        assert_eq!(carried(&image, &task), vec!["TOKEN"]);
    }

    #[test]
    fn set_back_restores_the_base_images_value_or_clears_but_never_empties_path() {
        let base = vec!["PATH=/usr/bin".to_string(), "LANG=C.UTF-8".to_string()];
        let keys = vec!["TOKEN".to_string(), "LANG".to_string(), "PATH".to_string()];
        assert_eq!(set_back(&keys, &base), vec!["TOKEN=", "LANG=C.UTF-8", "PATH=/usr/bin"]);
        assert_eq!(set_back(&keys, &[]), vec!["TOKEN=", "LANG="]);
    }
}
