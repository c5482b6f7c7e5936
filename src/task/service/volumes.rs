//! Named volumes of tasks: the owner's package caches (`[caches]`) and the task's own
//! `volumes`, made with taskbox's labels before the container that mounts them; and the
//! operator's `taskbox volumes ls|rm|prune`.
//!
//! A volume belongs to one data directory and one owner: both are in its Docker name
//! (`domain::volumes::docker_volume_name`) and its labels, and a volume found under that name
//! without those labels is refused rather than mounted. Caches in the user's home are also per
//! uid: files one uid writes there are not another's to change (npm appends to its index files).
//! The uid, gid and home of the image's user are read from the image's `/etc/passwd` before
//! its container exists (the mounts are fixed when it is created), and kept per image id.

use std::collections::HashMap;
use std::sync::Mutex;

use schemars::JsonSchema;
use serde::Serialize;

use super::TaskService;
use crate::domain::volumes::{CacheKind, cache_volume_suffix, docker_volume_name, overlap};
use crate::domain::{Owner, Task, TaskStatus, TaskVolume, VolumeKind};
use crate::error::{Error, Result};
use crate::runtime::{
    ImageInfo, LABEL_HOME, LABEL_OWNER, LABEL_SERVER, LABEL_VOLUME_KIND, LABEL_VOLUME_NAME, VolumeInfo, stable_hash,
};

/// The most of `/etc/passwd` or `/etc/group` read from an image.
const ACCOUNT_FILE_LIMIT: u64 = 1024 * 1024;

/// The image's user as numbers and a home, for the volumes' ownership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VolumeUser {
    pub uid: u32,
    pub gid: u32,
    /// Absolute and normalised; `None` when the account has none taskbox can use.
    pub home: Option<String>,
}

impl VolumeUser {
    /// `uid:gid` for a chown; `None` for root, which owns what it needs already.
    pub fn ids(&self) -> Option<String> {
        (self.uid != 0).then(|| format!("{}:{}", self.uid, self.gid))
    }
}

/// The users found per (image id, image user), for this process's life (an image id names its
/// files for good).
#[derive(Default)]
pub(super) struct VolumeUsers(Mutex<HashMap<(String, String), Option<VolumeUser>>>);

/// One volume of this data directory, for `taskbox volumes ls`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct VolumeEntry {
    /// Docker's name.
    pub volume: String,
    pub owner: String,
    /// `cache` or `named`.
    pub kind: String,
    /// The cache's kind or the name tasks give it.
    pub name: String,
    pub created_at: String,
    /// Ids of the tasks (not archived) that mount it.
    pub used_by: Vec<String>,
}

/// What `taskbox volumes rm` or `prune` did with one volume.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct VolumeRemoval {
    pub volume: String,
    /// False on a dry run, or when it failed (`error`).
    pub removed: bool,
    pub error: Option<String>,
}

impl TaskService {
    /// A short, stable tag of the data directory, in every volume name of it.
    pub(super) fn home_tag(&self) -> String {
        format!("{:08x}", stable_hash(self.home.to_string_lossy().as_bytes()) as u32)
    }

    fn volume_labels(&self, owner: &Owner, volume: &TaskVolume) -> HashMap<String, String> {
        [
            (LABEL_HOME, self.home.to_string_lossy().into_owned()),
            (LABEL_OWNER, owner.as_str().to_string()),
            (LABEL_VOLUME_KIND, volume.kind.as_str().to_string()),
            (LABEL_VOLUME_NAME, volume.name.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Whether Docker's volume is one taskbox made in this data directory for `owner`, and a
    /// plain local one (a `local` volume with driver options can bind any host path).
    pub(super) fn volume_is_owners(&self, info: &VolumeInfo, owner: &Owner) -> bool {
        crate::runtime::volume_belongs(info, &self.home.to_string_lossy(), owner.as_str())
    }

    /// The package caches a new task gets: one volume per kind for its owner (per uid for those
    /// in the home), except where one of the task's own volumes sits at, above or under it.
    pub(super) async fn cache_volumes(&self, task: &Task, user: Option<&VolumeUser>) -> Result<Vec<TaskVolume>> {
        let mut caches = Vec::new();
        for kind in self.config.caches.kinds()? {
            let (path, suffix) = match (kind.in_home(), user) {
                (false, _) => (kind.path(""), cache_volume_suffix(kind, 0)),
                (
                    true,
                    Some(VolumeUser {
                        uid, home: Some(home), ..
                    }),
                ) => (kind.path(home), cache_volume_suffix(kind, *uid)),
                (true, _) => {
                    tracing::info!(task = %task.id, cache = %kind, "no home for the image's user: no {kind} cache");
                    continue;
                }
            };
            if task.volumes.iter().any(|v| overlap(&path, &v.path)) {
                continue;
            }
            caches.push(TaskVolume {
                kind: VolumeKind::Cache,
                name: kind.as_str().to_string(),
                volume: docker_volume_name(&self.home_tag(), &task.owner, &suffix),
                path,
            });
        }
        Ok(caches)
    }

    /// Makes the task's volumes that do not exist yet, with taskbox's labels; one that exists
    /// must carry them for this data directory and the task's owner.
    pub(super) async fn ensure_volumes(&self, task: &Task) -> Result<()> {
        for volume in &task.volumes {
            let info = self
                .runtime
                .create_volume(&volume.volume, self.volume_labels(&task.owner, volume))
                .await?;
            if !self.volume_is_owners(&info, &task.owner) {
                return Err(Error::invalid(
                    "volumes",
                    format!(
                        "Docker already has a volume named {} that taskbox did not make for this owner here; \
                         choose another name (or have the operator remove that volume)",
                        volume.volume
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The uid, gid and home of `image_user` in the image (`None` when it cannot be told:
    /// a name the image's `/etc/passwd` lacks). Read once per image id and user.
    pub(super) async fn volume_user(&self, image: &ImageInfo, image_ref: &str) -> Result<Option<VolumeUser>> {
        let key = (image.id.clone(), image.user.clone());
        if let Some(known) = self.volume_users.0.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(known.clone());
        }
        let mut labels = HashMap::new();
        labels.insert(LABEL_HOME.to_string(), self.home.to_string_lossy().into_owned());
        labels.insert(LABEL_SERVER.to_string(), self.lease.id().to_string());
        let files = self
            .runtime
            .read_image_files(image_ref, &["/etc/passwd", "/etc/group"], ACCOUNT_FILE_LIMIT, labels)
            .await?;
        let text = |i: usize| {
            files
                .get(i)
                .and_then(|f| f.as_deref())
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let user = resolve_user(&image.user, &text(0), &text(1));
        self.volume_users
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, user.clone());
        Ok(user)
    }

    /// Every volume of this data directory, with the tasks that mount it.
    pub async fn list_volumes(&self) -> Result<Vec<VolumeEntry>> {
        let users = self.volume_users_by_task()?;
        let mut entries: Vec<VolumeEntry> = self
            .runtime
            .list_volumes(&self.home.to_string_lossy())
            .await?
            .into_iter()
            .map(|info| {
                let label = |key: &str| info.labels.get(key).cloned().unwrap_or_default();
                VolumeEntry {
                    used_by: users.get(&info.name).cloned().unwrap_or_default(),
                    owner: label(LABEL_OWNER),
                    kind: label(LABEL_VOLUME_KIND),
                    name: label(LABEL_VOLUME_NAME),
                    created_at: info.created_at,
                    volume: info.name,
                }
            })
            .collect();
        entries.sort_by(|a, b| (&a.owner, &a.kind, &a.name).cmp(&(&b.owner, &b.kind, &b.name)));
        Ok(entries)
    }

    /// Removes volumes of this data directory by Docker name; refuses one a task (not archived)
    /// mounts, and a name this data directory did not make.
    pub async fn remove_volumes(&self, names: &[String]) -> Result<Vec<VolumeRemoval>> {
        let users = self.volume_users_by_task()?;
        let home = self.home.to_string_lossy().into_owned();
        let mut removals = Vec::new();
        for name in names {
            let info = self.runtime.inspect_volume(name).await?;
            let error = match info {
                None => Some(format!(
                    "no volume named {name}; `taskbox volumes ls` lists this data directory's volumes"
                )),
                Some(info) if info.labels.get(LABEL_HOME) != Some(&home) => Some(format!(
                    "{name} is not a volume of this data directory ({home}); remove it with docker volume rm if it is yours"
                )),
                Some(_) => match users.get(name) {
                    Some(tasks) if !tasks.is_empty() => Some(format!(
                        "{name} is mounted by task(s) {}; delete or archive them first",
                        tasks.join(", ")
                    )),
                    _ => self.runtime.remove_volume(name).await.err().map(|e| e.to_string()),
                },
            };
            removals.push(VolumeRemoval {
                volume: name.clone(),
                removed: error.is_none(),
                error,
            });
        }
        Ok(removals)
    }

    /// Removes (or, on a dry run, lists) the volumes of this data directory no task (not
    /// archived) mounts.
    pub async fn prune_volumes(&self, dry_run: bool) -> Result<Vec<VolumeRemoval>> {
        let mut removals = Vec::new();
        for entry in self.list_volumes().await? {
            if !entry.used_by.is_empty() {
                continue;
            }
            // Asked again just before the removal: a task created since the list may mount it
            // by now (Docker itself refuses only once a container of it exists).
            if !dry_run && self.volume_users_by_task()?.contains_key(&entry.volume) {
                continue;
            }
            let error = if dry_run {
                None
            } else {
                self.runtime
                    .remove_volume(&entry.volume)
                    .await
                    .err()
                    .map(|e| e.to_string())
            };
            removals.push(VolumeRemoval {
                volume: entry.volume,
                removed: !dry_run && error.is_none(),
                error,
            });
        }
        Ok(removals)
    }

    /// Docker volume name → ids of the tasks (not archived) that mount it.
    fn volume_users_by_task(&self) -> Result<HashMap<String, Vec<String>>> {
        let mut users: HashMap<String, Vec<String>> = HashMap::new();
        for task in self.registry.list_tasks(None, u32::MAX, 0)?.tasks {
            if task.status == TaskStatus::Archived {
                continue;
            }
            for volume in &task.volumes {
                users.entry(volume.volume.clone()).or_default().push(task.id.clone());
            }
        }
        Ok(users)
    }
}

/// The directories a task's volumes need to be its user's: each named volume's root, and for
/// each cache in the home the path from the home down to it (Docker makes missing mount points
/// as root-owned directories, which would keep the user out of `~/.cache`).
pub(super) fn directories_to_own(volumes: &[TaskVolume]) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    let mut push = |dir: String| {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    };
    for volume in volumes {
        match volume.kind {
            VolumeKind::Named => push(volume.path.clone()),
            VolumeKind::Cache => {
                let Ok(kind) = volume.name.parse::<CacheKind>() else {
                    continue;
                };
                if !kind.in_home() {
                    continue;
                }
                let tail = kind.path("");
                let Some(home) = volume.path.strip_suffix(&tail) else {
                    continue;
                };
                let mut dir = home.to_string();
                if !home.is_empty() {
                    push(dir.clone());
                }
                for part in tail.split('/').filter(|p| !p.is_empty()) {
                    dir = format!("{dir}/{part}");
                    push(dir.clone());
                }
            }
        }
    }
    dirs
}

/// The uid, gid and home of an image's `USER` (`name`, `uid`, `name:group`, `uid:gid`; empty is
/// root) from the image's passwd and group files. A name the files lack: `None`.
fn resolve_user(user: &str, passwd: &str, group: &str) -> Option<VolumeUser> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "root" } else { user_part };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => entries.iter().find(|f| f[2].parse() == Ok(uid)),
        Err(_) => entries.iter().find(|f| f[0] == user_part),
    };
    let uid = match (user_part.parse::<u32>(), entry) {
        (Ok(uid), _) => uid,
        (Err(_), Some(f)) => f[2].parse().ok()?,
        (Err(_), None) if user_part == "root" => 0,
        (Err(_), None) => return None,
    };
    let gid = match group_part {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())?,
        },
        None => entry.and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let home = entry
        .map(|f| f[5].to_string())
        .or_else(|| (uid == 0).then(|| "/root".to_string()))
        .filter(|h| usable_home(h));
    Some(VolumeUser { uid, gid, home })
}

/// A home caches can be mounted under: absolute, normalised, plain, not `/`, and not where a
/// volume may never go.
fn usable_home(home: &str) -> bool {
    home != "/" && crate::domain::volumes::validate_volume_path(home).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        agent:x:1000:1000::/home/agent:/bin/bash\n\
        odd:x:1001:1001::/:/bin/sh\n\
        broken line\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\n";

    fn user(uid: u32, gid: u32, home: Option<&str>) -> Option<VolumeUser> {
        Some(VolumeUser {
            uid,
            gid,
            home: home.map(String::from),
        })
    }

    #[test]
    fn an_images_user_is_found_by_name_or_number() {
        assert_eq!(
            resolve_user("agent", PASSWD, GROUP),
            user(1000, 1000, Some("/home/agent"))
        );
        assert_eq!(
            resolve_user("1000", PASSWD, GROUP),
            user(1000, 1000, Some("/home/agent"))
        );
        assert_eq!(
            resolve_user("agent:staff", PASSWD, GROUP),
            user(1000, 50, Some("/home/agent"))
        );
        assert_eq!(
            resolve_user("1000:7", PASSWD, GROUP),
            user(1000, 7, Some("/home/agent"))
        );
        assert_eq!(resolve_user("", PASSWD, GROUP), user(0, 0, Some("/root")));
        assert_eq!(resolve_user("root", "", ""), user(0, 0, Some("/root")));
        // A number the image does not know: its own gid 0 and no home, as Docker runs it.
        assert_eq!(resolve_user("4242", PASSWD, GROUP), user(4242, 0, None));
        // Homes caches cannot go under.
        assert_eq!(resolve_user("odd", PASSWD, GROUP), user(1001, 1001, None));
        assert_eq!(resolve_user("daemon", PASSWD, GROUP), user(1, 1, None));
        // Names the image lacks.
        assert_eq!(resolve_user("nobody-here", PASSWD, GROUP), None);
        assert_eq!(resolve_user("agent:nogroup", PASSWD, GROUP), None);
    }

    #[test]
    fn the_user_gets_its_volumes_and_the_way_down_to_its_caches() {
        let volume = |kind, name: &str, path: &str| TaskVolume {
            kind,
            name: name.into(),
            volume: format!("v-{name}"),
            path: path.into(),
        };
        let volumes = vec![
            volume(VolumeKind::Cache, "apt", "/var/cache/apt/archives"),
            volume(VolumeKind::Cache, "pip", "/home/agent/.cache/pip"),
            volume(VolumeKind::Cache, "npm", "/home/agent/.npm"),
            volume(VolumeKind::Named, "data", "/data"),
        ];
        assert_eq!(
            directories_to_own(&volumes),
            vec![
                "/home/agent",
                "/home/agent/.cache",
                "/home/agent/.cache/pip",
                "/home/agent/.npm",
                "/data"
            ]
        );
    }
}
